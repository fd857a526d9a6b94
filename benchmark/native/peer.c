/*
 * The C reference for benchmark/run.mjs: the same scenarios as the Node peers, written the way a C
 * programmer would, with one blocking sendmsg or recvmsg per message over an AF_UNIX socketpair
 * between two processes (fork). Received descriptors are closed, as the Node side does.
 *
 *   peer oneway  <stream|seqpacket|dgram> <payload bytes> <fds per message> <messages> [warm-up]
 *   peer roundtrip <stream|seqpacket|dgram> <payload bytes> <fds per request> <round trips> [warm-up]
 *
 * Prints one JSON line: {"messages":N,"seconds":S}. Timed as the Node peers are: an untimed warm-up
 * of `warm-up` messages or round trips first (C has no compiler to wait for, but the same run
 * shape keeps the comparison symmetric: caches, page faults, the scheduler's view of both
 * processes), then from the child's "warmed up" byte on a pipe (theirs is a message) until it has
 * received everything. If either process dies, the other fails instead of waiting for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC 0
#endif

#define MAX_FDS 253

/* In the parent, the child: stopped when the parent fails or is told to stop (SIGTERM, as
   benchmark/run.mjs's time limit does), since a datagram child would otherwise wait forever. */
static pid_t child_pid = 0;

static void die(const char *what) {
  perror(what);
  if (child_pid > 0) kill(child_pid, SIGKILL);
  exit(1);
}

static void fail(const char *what) {
  fprintf(stderr, "%s\n", what);
  if (child_pid > 0) kill(child_pid, SIGKILL);
  exit(1);
}

static void on_sigterm(int sig) {
  (void)sig;
  if (child_pid > 0) kill(child_pid, SIGKILL);
  _exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int sock_type(const char *name) {
  if (!strcmp(name, "stream")) return SOCK_STREAM;
  if (!strcmp(name, "seqpacket")) return SOCK_SEQPACKET;
  if (!strcmp(name, "dgram")) return SOCK_DGRAM;
  fprintf(stderr, "unknown socket type %s\n", name);
  exit(2);
}

static union {
  char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct cmsghdr align;
} control_out, control_in;

/* Sends one message of `size` bytes with `nfds` copies of `fd`. */
static void send_one(int s, const char *data, size_t size, int fd, int nfds) {
  struct iovec iov = {(void *)data, size};
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
    int *fds = (int *)CMSG_DATA(cmsg);
    for (int i = 0; i < nfds; i++) fds[i] = fd;
  }
  for (size_t sent = 0; sent < size || (size == 0 && sent == 0);) {
    ssize_t n = sendmsg(s, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("sendmsg");
    }
    sent += n;
    if (size == 0) break;
    iov.iov_base = (char *)data + sent;
    iov.iov_len = size - sent;
    msg.msg_control = NULL;
    msg.msg_controllen = 0;
  }
}

/* Receives once into buf; closes every received descriptor. Returns bytes and adds fds to *fds. */
static ssize_t recv_one(int s, char *buf, size_t size, long *fds) {
  struct iovec iov = {buf, size};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control_in.buf;
  msg.msg_controllen = sizeof(control_in.buf);
  ssize_t n;
  do n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) die("recvmsg");
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int *received = (int *)CMSG_DATA(c);
      for (int i = 0; i < count; i++) close(received[i]);
      *fds += count;
    }
  }
  return n;
}

/* Receives exactly `size` bytes (one round-trip message); the peer closing the socket is fatal
   here: counting its end-of-file (0) as a message would spin. */
static void recv_full(int s, char *buf, size_t size, long *fds) {
  size_t got = 0;
  do {
    ssize_t n = recv_one(s, buf + got, size - got, fds);
    if (n == 0 && size > 0) fail("recvmsg: the peer closed the socket");
    got += n;
  } while (got < size);
}

/* One way: receives `count` messages (on a stream, `count` * `payload` bytes: boundaries are not kept). */
static void receive_messages(int s, int type, size_t payload, long count, char *buf, size_t size, long *fds) {
  if (type == SOCK_STREAM) {
    long want = (long)payload * count;
    for (long bytes = 0; bytes < want;) {
      ssize_t n = recv_one(s, buf, size, fds);
      if (n == 0) fail("recvmsg: the sender closed the socket early");
      bytes += n;
    }
  } else {
    for (long messages = 0; messages < count; messages++) {
      if (recv_one(s, buf, size, fds) == 0 && payload > 0) fail("recvmsg: the sender closed the socket early");
    }
  }
}

/* One byte from the child over the pipe; end-of-file means it died. */
static void await_child(int fd, const char *what) {
  char x;
  ssize_t n;
  do n = read(fd, &x, 1);
  while (n < 0 && errno == EINTR);
  if (n < 0) die("read");
  if (n == 0) fail(what);
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: %s oneway|roundtrip <type> <payload> <fds> <count> [warm-up]\n", argv[0]);
    return 2;
  }
  int roundtrip = !strcmp(argv[1], "roundtrip");
  int type = sock_type(argv[2]);
  size_t payload = strtoul(argv[3], NULL, 10);
  int nfds = atoi(argv[4]);
  long count = atol(argv[5]);
  long warmup = argc == 7 ? atol(argv[6]) : 0;
  int sv[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  int passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
  char *out = calloc(1, payload + 1);
  size_t in_size = 65536;
  char *in = malloc(in_size);
  /* The child writes one byte when it is ready, one when it has received the warm-up (one way) and
     one when it has received everything. */
  int status_pipe[2];
  if (pipe(status_pipe) < 0) die("pipe");

  signal(SIGTERM, on_sigterm);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    /* Receiver (one-way) or responder (round trips). */
    close(sv[0]);
    close(status_pipe[0]);
    if (write(status_pipe[1], "r", 1) != 1) die("write");
    long fds = 0;
    if (roundtrip) {
      for (long i = 0; i < warmup + count; i++) {
        recv_full(sv[1], in, payload, &fds);
        send_one(sv[1], out, payload, -1, 0);
      }
    } else {
      /* The sender waits for the "warmed up" byte before it sends more, so no read crosses it. */
      receive_messages(sv[1], type, payload, warmup, in, in_size, &fds);
      if (write(status_pipe[1], "w", 1) != 1) die("write");
      receive_messages(sv[1], type, payload, count, in, in_size, &fds);
    }
    if (write(status_pipe[1], "x", 1) != 1) die("write");
    _exit(0);
  }
  child_pid = child;
  /* Only the child holds the write end now: if it dies, the reads below see end-of-file. */
  close(sv[1]);
  close(status_pipe[1]);
  await_child(status_pipe[0], "the child exited before it was ready");
  long fds = 0;
  if (roundtrip) {
    for (long i = 0; i < warmup; i++) {
      send_one(sv[0], out, payload, passed, nfds);
      recv_full(sv[0], in, payload, &fds);
    }
  } else {
    for (long i = 0; i < warmup; i++) send_one(sv[0], out, payload, passed, nfds);
    await_child(status_pipe[0], "the child exited before it received the warm-up");
  }
  double start = now();
  if (roundtrip) {
    for (long i = 0; i < count; i++) {
      send_one(sv[0], out, payload, passed, nfds);
      recv_full(sv[0], in, payload, &fds);
    }
  } else {
    for (long i = 0; i < count; i++) send_one(sv[0], out, payload, passed, nfds);
  }
  await_child(status_pipe[0], "the child exited before it received everything");
  double seconds = now() - start;
  int status;
  if (waitpid(child, &status, 0) < 0) die("waitpid");
  child_pid = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("the child failed");
  printf("{\"messages\":%ld,\"seconds\":%.6f}\n", count, seconds);
  return 0;
}
