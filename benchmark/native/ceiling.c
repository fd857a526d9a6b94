/*
 * The "ceiling" contender of benchmark/run.mjs: the least any event-loop design in Node can do per
 * message, as a Node-API addon with nothing else in it. benchmark/lib/build.mjs compiles it at run
 * time into benchmark/.build/ceiling.node, against the headers of the Node that runs the benchmark.
 *
 * Per readable event: libuv's poll watcher wakes up, one non-blocking recvmsg(2) runs, received
 * descriptors are closed here (the count goes to JavaScript), and one JavaScript callback gets
 * plain numbers through napi_make_callback (so that process.nextTick and promise jobs run after it,
 * as they must for any real design). A reply is one direct sendmsg(2) from JavaScript. No objects,
 * no buffers, no queue: whatever a package adds on top of this is its own cost.
 *
 *   watch(fd, callback(bytes, fds)) -> watcher   bytes: > 0 data, 0 end-of-file, < 0 -errno
 *   unwatch(watcher)
 *   send(fd, bytes, passedFd, fdCount) -> bytes  blocks (poll(2)) while the socket is full
 *   socketpair(type) -> [fd, fd]                 type: 'stream', 'dgram' or 'seqpacket' (close-on-exec)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC 0
#endif

#define MAX_FDS 253
#define BUFFER_SIZE 65536

/* One process runs one benchmark at a time on the JS thread: static buffers are enough. */
static char in_data[BUFFER_SIZE];
static char out_data[BUFFER_SIZE];
static union {
  char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct cmsghdr align;
} control_in, control_out;

typedef struct {
  uv_poll_t poll; /* first, so that a uv_handle_t* is a watcher_t* */
  int fd;
  napi_env env;
  napi_ref callback;
  napi_ref resource;
  napi_async_context context;
} watcher_t;

/* A Node-API failure is a bug in this file: stop loudly rather than measure something else. */
#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) napi_fatal_error(#call, NAPI_AUTO_LENGTH, "failed", NAPI_AUTO_LENGTH); \
  } while (0)

static void on_readable(uv_poll_t *poll, int status, int events) {
  (void)events;
  watcher_t *w = (watcher_t *)poll;
  ssize_t n;
  int fds = 0;
  if (status < 0) {
    n = status;
  } else {
    struct iovec iov = {in_data, sizeof in_data};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control_in.buf;
    msg.msg_controllen = sizeof control_in.buf;
    do n = recvmsg(w->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return; /* a spurious wakeup */
    if (n < 0) n = -errno;
    if (n >= 0) {
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int received[MAX_FDS];
        memcpy(received, CMSG_DATA(c), sizeof(int) * count); /* CMSG_DATA may be unaligned */
        for (int i = 0; i < count; i++) close(received[i]);
        fds += count;
      }
    }
  }
  napi_env env = w->env;
  napi_handle_scope scope;
  CHECK(napi_open_handle_scope(env, &scope));
  napi_value callback, receiver, argv[2], result;
  CHECK(napi_get_reference_value(env, w->callback, &callback));
  CHECK(napi_get_global(env, &receiver)); /* MakeCallback wants an object */
  CHECK(napi_create_int32(env, (int32_t)n, &argv[0]));
  CHECK(napi_create_int32(env, fds, &argv[1]));
  if (napi_make_callback(env, w->context, receiver, callback, 2, argv, &result) != napi_ok) {
    /* The callback threw: make it the process's uncaught exception, as Node does for its own. */
    napi_value error;
    if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
  }
  CHECK(napi_close_handle_scope(env, scope));
}

static napi_value watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "watch(fd, callback)");
    return NULL;
  }
  watcher_t *w = calloc(1, sizeof *w);
  if (w == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  w->fd = fd;
  w->env = env;
  napi_value resource, name, external;
  CHECK(napi_create_reference(env, argv[1], 1, &w->callback));
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_create_reference(env, resource, 1, &w->resource));
  CHECK(napi_create_string_utf8(env, "ceiling.watch", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, resource, name, &w->context));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  /* uv_poll_init makes the descriptor non-blocking; send() below copes with that. */
  int err = uv_poll_init(loop, &w->poll, fd);
  if (err == 0) err = uv_poll_start(&w->poll, UV_READABLE, on_readable);
  if (err != 0) {
    napi_throw_error(env, NULL, uv_strerror(err));
    return NULL;
  }
  CHECK(napi_create_external(env, w, NULL, NULL, &external));
  return external;
}

static void on_closed(uv_handle_t *handle) {
  watcher_t *w = (watcher_t *)handle;
  napi_async_destroy(w->env, w->context);
  napi_delete_reference(w->env, w->callback);
  napi_delete_reference(w->env, w->resource);
  free(w);
}

static napi_value unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  watcher_t *w;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&w) != napi_ok) {
    napi_throw_type_error(env, NULL, "unwatch(watcher)");
    return NULL;
  }
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, on_closed);
  return NULL;
}

static napi_value send_message(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, size, passed, nfds;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &size) != napi_ok ||
      napi_get_value_int32(env, argv[2], &passed) != napi_ok || napi_get_value_int32(env, argv[3], &nfds) != napi_ok ||
      size < 0 || size > BUFFER_SIZE || nfds < 0 || nfds > MAX_FDS) {
    napi_throw_type_error(env, NULL, "send(fd, bytes, passedFd, fdCount)");
    return NULL;
  }
  struct iovec iov = {out_data, (size_t)size};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    msg.msg_control = control_out.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    int fds[MAX_FDS];
    for (int i = 0; i < nfds; i++) fds[i] = passed;
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  size_t sent = 0;
  do {
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        /* Full: wait as a blocking sender would (the one-way sender's side is not what is measured). */
        struct pollfd p = {fd, POLLOUT, 0};
        poll(&p, 1, -1);
        continue;
      }
      napi_throw_error(env, NULL, strerror(errno));
      return NULL;
    }
    sent += (size_t)n;
    /* A stream may take part of it: the rest goes without the descriptors, which went with the first part. */
    iov.iov_base = out_data + sent;
    iov.iov_len = (size_t)size - sent;
    msg.msg_control = NULL;
    msg.msg_controllen = 0;
  } while (sent < (size_t)size);
  napi_value result;
  CHECK(napi_create_int32(env, (int32_t)sent, &result));
  return result;
}

static napi_value make_socketpair(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[16] = "";
  if (argc >= 1) napi_get_value_string_utf8(env, argv[0], name, sizeof name, NULL);
  int type = !strcmp(name, "stream") ? SOCK_STREAM : !strcmp(name, "dgram") ? SOCK_DGRAM : !strcmp(name, "seqpacket") ? SOCK_SEQPACKET : -1;
  if (type < 0) {
    napi_throw_type_error(env, NULL, "socketpair('stream' | 'dgram' | 'seqpacket')");
    return NULL;
  }
  int sv[2];
  /* Close-on-exec, or a child would hold our end open too; spawn's stdio mapping gives it its own. */
#ifdef SOCK_CLOEXEC
  int failed = socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0;
#else
  int failed = socketpair(AF_UNIX, type, 0, sv) < 0 || fcntl(sv[0], F_SETFD, FD_CLOEXEC) < 0 || fcntl(sv[1], F_SETFD, FD_CLOEXEC) < 0;
#endif
  if (failed) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value pair, end;
  CHECK(napi_create_array_with_length(env, 2, &pair));
  for (uint32_t i = 0; i < 2; i++) {
    CHECK(napi_create_int32(env, sv[i], &end));
    CHECK(napi_set_element(env, pair, i, end));
  }
  return pair;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"watch", NULL, watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unwatch", NULL, unwatch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"send", NULL, send_message, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketpair", NULL, make_socketpair, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}
