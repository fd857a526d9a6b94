// The C contender of the UDP rows of run.mjs: one-way 1,200-byte datagrams on loopback, in the same
// three modes and with the same protocol as the Node peers (udp-peer.mjs):
//
//   udp-peer recv <mode>                        prints {"port":N}, then {"received":N,"seconds":S}
//   udp-peer send <mode> <port> <warm> <count>  warm-up datagrams (first byte 0), then <count>
//                                               measured ones (first byte 1), then end markers
//                                               (first byte 2) until killed
//
// Flow control, so that the figures are what each side can carry rather than how much a sender
// too fast for its receiver drops: the receiver acknowledges every ACK_EVERY datagrams (a 4-byte
// count), and the sender keeps at most WINDOW unacknowledged; an acknowledgement that does not
// come within 20 ms counts what is outstanding as lost.
//
// Modes: "plain" (send / recvmsg per datagram), "batch" (sendmmsg / recvmmsg, up to 64 per call),
// "gso" (sendmmsg of 32-segment UDP_SEGMENT buffers / recvmmsg with UDP_GRO).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define SIZE 1200
#define BATCH 64
#define SEGMENTS 32
#define SLOT 65536

// The same for every mode and contender: the receive buffer (4 MiB asked, the most
// net.core.rmem_max allows by default on many systems) holds a whole window.
#define WINDOW 2048
#define ACK_EVERY 256
#define RECV_BUFFER (4 << 20)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int receiver(const char *mode) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr)) die("bind");
  socklen_t len = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &len);
  int size = RECV_BUFFER;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size)) die("SO_RCVBUF");
  int gro = strcmp(mode, "gso") == 0;
  if (gro) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one)) die("UDP_GRO");
  }
  printf("{\"port\":%d}\n", ntohs(addr.sin_port));
  fflush(stdout);
  int batch = strcmp(mode, "plain") == 0 ? 1 : BATCH;
  long every = ACK_EVERY;
  static char data[BATCH][SLOT];
  static char control[BATCH][64];
  struct sockaddr_in from[BATCH];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  long received = 0, total = 0, acked = 0;
  double start = 0;
  for (;;) {
    for (int i = 0; i < batch; i++) {
      iov[i] = (struct iovec){data[i], gro ? SLOT : SIZE};
      msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1,
                                        .msg_control = gro ? control[i] : NULL, .msg_controllen = gro ? 64 : 0};
    }
    int n;
    if (batch == 1) {
      ssize_t got = recvmsg(fd, &msgs[0].msg_hdr, 0);
      if (got < 0) die("recvmsg");
      msgs[0].msg_len = got;
      n = 1;
    } else {
      n = recvmmsg(fd, msgs, batch, MSG_WAITFORONE, NULL);
      if (n < 0) die("recvmmsg");
    }
    for (int i = 0; i < n; i++) {
      int stride = msgs[i].msg_len;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
        if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) memcpy(&stride, CMSG_DATA(c), sizeof stride);
      }
      long segments = (msgs[i].msg_len + stride - 1) / stride;
      char kind = data[i][0];
      if (kind == 2) {
        printf("{\"received\":%ld,\"seconds\":%.6f}\n", received, now() - start);
        return 0;
      }
      if (kind == 1) {
        if (received == 0) start = now();
        received += segments;
      }
      total += segments;
      if (total - acked >= every) {
        acked = total;
        uint32_t count = (uint32_t)total;
        sendto(fd, &count, sizeof count, 0, (struct sockaddr *)&from[i], sizeof from[i]);
      }
    }
  }
}

struct flow {
  int fd;
  long sent, acked, window;
};

/** Waits until the window has room: acknowledgements, or 20 ms of silence (the rest was lost). */
static void wait_for_room(struct flow *f, long needed) {
  while (f->sent - f->acked + needed > f->window) {
    struct pollfd p = {f->fd, POLLIN, 0};
    if (poll(&p, 1, 20) == 0) {
      f->acked = f->sent;
      return;
    }
    uint32_t count;
    while (recv(f->fd, &count, sizeof count, MSG_DONTWAIT) == sizeof count) {
      if ((long)count > f->acked) f->acked = count;
    }
  }
}

static void send_all(struct flow *f, const char *mode, char kind, long count) {
  static char buffer[SIZE * SEGMENTS];
  memset(buffer, kind, sizeof buffer);
  if (strcmp(mode, "plain") == 0) {
    for (long i = 0; i < count; i++) {
      wait_for_room(f, 1);
      while (send(f->fd, buffer, SIZE, 0) < 0) {
        if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) die("send");
      }
      f->sent++;
    }
    return;
  }
  int gso = strcmp(mode, "gso") == 0;
  long per_message = gso ? SEGMENTS : 1;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  char control[BATCH][CMSG_SPACE(sizeof(uint16_t))];
  for (long done = 0; done < count;) {
    // As many as the window allows, at most BATCH messages.
    long room = f->window - (f->sent - f->acked);
    if (room < per_message) {
      wait_for_room(f, per_message);
      continue;
    }
    int n = 0;
    long planned = 0;
    for (; n < BATCH && done + planned < count && planned + per_message <= room; n++) {
      long left = count - done - planned;
      long segments = left < per_message ? left : per_message;
      iov[n] = (struct iovec){buffer, (size_t)(segments * SIZE)};
      msgs[n].msg_hdr = (struct msghdr){.msg_iov = &iov[n], .msg_iovlen = 1};
      if (gso) {
        msgs[n].msg_hdr.msg_control = control[n];
        msgs[n].msg_hdr.msg_controllen = sizeof control[n];
        struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[n].msg_hdr);
        c->cmsg_level = IPPROTO_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = SIZE;
        memcpy(CMSG_DATA(c), &size, sizeof size);
      }
      planned += segments;
    }
    int sent = sendmmsg(f->fd, msgs, n, 0);
    if (sent < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) continue;
      die("sendmmsg");
    }
    for (int i = 0; i < sent; i++) {
      long segments = iov[i].iov_len / SIZE;
      done += segments;
      f->sent += segments;
    }
  }
}

static int sender(const char *mode, int port, long warm, long count) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) die("connect");
  struct flow f = {fd, 0, 0, WINDOW};
  send_all(&f, mode, 0, warm);
  send_all(&f, mode, 1, count);
  for (;;) {
    char end = 2;
    send(fd, &end, 1, 0);
    usleep(10000);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receiver(argv[2]);
  if (argc == 6 && strcmp(argv[1], "send") == 0) return sender(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]));
  fprintf(stderr, "usage: udp-peer recv <mode> | send <mode> <port> <warm> <count>\n");
  return 2;
}
