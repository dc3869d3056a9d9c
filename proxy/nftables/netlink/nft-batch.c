/*
 * weft-nft-batch: sends nf_tables netlink batches that weft encoded, and reports the kernel's answer.
 *
 *   weft-nft-batch [--netns NAME] < batches
 *
 * Node has no AF_NETLINK socket, so this is the one piece weft cannot write in TypeScript; it knows
 * nothing about nf_tables beyond the framing. stdin holds one or more batches, each a run of
 * netlink messages from NFNL_MSG_BATCH_BEGIN to NFNL_MSG_BATCH_END. Each batch is sent with one
 * send() (the kernel applies it as one transaction) as soon as it has been read, so encoding the
 * next batch can overlap the kernel applying this one. Per batch, one JSON line on stdout:
 *   {"batch":N,"errors":[{"seq":S,"errno":E},...],"acked":A,"expected":E}
 * and on a failure outside the kernel's answers {"error":"..."}. Exit status 0 when every batch
 * was acknowledged without error; it stops after the first batch with an error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* No answer for this long after a batch means the kernel will not send more. */
#define ACK_TIMEOUT_MS 30000

static int fail(const char *what, const char *object) {
  printf("{\"error\":\"failed to %s %s: %s\"}\n", what, object, strerror(errno));
  fflush(stdout);
  return 1;
}

/* Reads exactly n bytes; returns 0 at a clean end of input before the first byte, -1 on a short read. */
static int read_full(unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(0, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return got == 0 ? 0 : -1;
    got += (size_t)r;
  }
  return 1;
}

int main(int argc, char **argv) {
  const char *netns = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--netns") == 0 && i + 1 < argc) netns = argv[++i];
    else {
      fprintf(stderr, "usage: weft-nft-batch [--netns NAME] < batches\n");
      return 2;
    }
  }
  if (netns) {
    char path[512];
    snprintf(path, sizeof path, "/run/netns/%s", netns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("open netns", path);
    if (setns(fd, CLONE_NEWNET) < 0) return fail("enter netns", path);
    close(fd);
  }
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (sock < 0) return fail("open", "a NETLINK_NETFILTER socket");
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (bind(sock, (struct sockaddr *)&local, sizeof local) < 0) return fail("bind", "the netlink socket");
  int one = 1;
  /* Acks of failed messages carry only their header, not the whole (up to 64 KiB) message. */
  setsockopt(sock, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  int rcvbuf = 8 << 20;
  if (setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);

  size_t cap = 1 << 20, len = 0;
  unsigned char *buf = malloc(cap);
  uint32_t *seqs = NULL;
  size_t seq_cap = 0;
  unsigned char ack[8192];
  if (!buf) return fail("allocate", "the batch buffer");
  for (int batch = 1;; batch++) {
    /* Read one batch: messages up to and including NFNL_MSG_BATCH_END; remember which ask for an ack. */
    size_t expected = 0;
    len = 0;
    for (;;) {
      struct nlmsghdr h;
      int r = read_full((unsigned char *)&h, sizeof h);
      if (r == 0 && len == 0) return 0;
      if (r <= 0 || h.nlmsg_len < sizeof h) {
        errno = EPROTO;
        return fail("read", "a netlink message header from stdin");
      }
      size_t size = NLMSG_ALIGN(h.nlmsg_len);
      while (len + size > cap) {
        cap *= 2;
        if (!(buf = realloc(buf, cap))) return fail("allocate", "the batch buffer");
      }
      memcpy(buf + len, &h, sizeof h);
      if (size > sizeof h && read_full(buf + len + sizeof h, size - sizeof h) <= 0) {
        errno = EPROTO;
        return fail("read", "a netlink message body from stdin");
      }
      len += size;
      if (h.nlmsg_flags & NLM_F_ACK) {
        if (expected == seq_cap) {
          seq_cap = seq_cap ? seq_cap * 2 : 256;
          if (!(seqs = realloc(seqs, seq_cap * sizeof *seqs))) return fail("allocate", "the ack list");
        }
        seqs[expected++] = h.nlmsg_seq;
      }
      if (h.nlmsg_type == NFNL_MSG_BATCH_END) break;
    }
    int sndbuf = (int)len + 65536;
    if (setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0) setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(sock, buf, len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return fail("send", "a netlink batch");

    /* Every message with NLM_F_ACK gets an ack or an error; a failing batch may add errors for others. */
    size_t pending = expected, nerr = 0;
    printf("{\"batch\":%d,\"errors\":[", batch);
    while (pending > 0) {
      struct pollfd p = {.fd = sock, .events = POLLIN};
      int ready = poll(&p, 1, nerr ? 200 : ACK_TIMEOUT_MS);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      ssize_t n = recv(sock, ack, sizeof ack, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        printf("],\"acked\":%zu}\n", expected - pending);
        return fail("receive", "netlink acks");
      }
      for (struct nlmsghdr *h = (struct nlmsghdr *)ack; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type != NLMSG_ERROR) continue;
        const struct nlmsgerr *e = NLMSG_DATA(h);
        for (size_t i = 0; i < pending; i++) {
          if (seqs[i] == h->nlmsg_seq) {
            seqs[i] = seqs[--pending];
            break;
          }
        }
        if (e->error != 0) printf("%s{\"seq\":%u,\"errno\":%d}", nerr++ ? "," : "", h->nlmsg_seq, -e->error);
      }
    }
    printf("],\"acked\":%zu,\"expected\":%zu}\n", expected - pending, expected);
    fflush(stdout);
    if (nerr > 0 || pending > 0) return 1;
  }
}
