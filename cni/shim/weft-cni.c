/*
 * weft-cni: the binary a container runtime execs for every CNI call. Node needs ~60-100 ms just to
 * start, so this C shim forwards the call (CNI_* env + stdin) over a unix socket to the long-lived
 * weft CNI daemon (`weft cni serve`), which runs the plugin in-process, and relays its answer.
 * When no daemon answers, or the daemon runs in another network namespace than this process (the
 * plugin's `ip` work must happen in the caller's namespace), it execs the bundled Node plugin
 * `weft-cni.mjs` beside this binary with the same env and stdin: slower, same result.
 *
 * Wire format: cni/daemon/protocol.ts (keep the constants below in step with it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/weft/cni.sock"
#define FALLBACK_NAME "weft-cni.mjs"
#define MAX_STDIN (7 << 20)  /* stays under the daemon's 8 MiB request limit with env and netns */
#define MAX_REPLY (16 << 20)
#define CONNECT_TIMEOUT_S 2
#ifndef REPLY_TIMEOUT_MS
#define REPLY_TIMEOUT_MS 120000 /* kubelet gives a whole sandbox setup 2 minutes */
#endif

enum { KIND_REQUEST = 1, KIND_ACCEPTED = 2, KIND_REFUSED = 3 };
enum { TAG_END = 0, TAG_NETNS = 1, TAG_ENV = 2, TAG_STDIN = 3, TAG_EXIT = 4, TAG_STDOUT = 5, TAG_STDERR = 6, TAG_REASON = 7 };
static const unsigned char magic[4] = { 'W', 'C', 'N', 'I' };
#define PROTOCOL_VERSION 1
#define HEADER_LEN 6

extern char **environ;

struct buf {
    unsigned char *data;
    size_t len, cap;
};

/* The config's cniVersion, echoed in errors this shim reports itself; empty if not found. */
static char cni_version[32];

static void json_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

/* Prints a CNI error object on stdout (where runtimes look for it) and exits 1. */
static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fputc('{', stdout);
    if (cni_version[0]) {
        fputs("\"cniVersion\":\"", stdout);
        json_escaped(stdout, cni_version);
        fputs("\",", stdout);
    }
    printf("\"code\":%d,\"msg\":\"", code);
    json_escaped(stdout, msg);
    fputs("\"}\n", stdout);
    exit(1);
}

static void put(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d) die(5, "weft-cni: out of memory");
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_field(struct buf *b, int tag, const void *p, size_t n)
{
    unsigned char head[5] = { (unsigned char)tag, (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n };
    put(b, head, sizeof head);
    put(b, p, n);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void read_stdin(struct buf *in)
{
    unsigned char chunk[65536];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n == 0) return;
        if (n < 0) {
            if (errno == EINTR) continue;
            die(5, "weft-cni: failed to read the network configuration from stdin: %s", strerror(errno));
        }
        if (in->len + (size_t)n > MAX_STDIN) die(5, "weft-cni: network configuration on stdin is larger than %d bytes", MAX_STDIN);
        put(in, chunk, (size_t)n);
    }
}

/*
 * The string value of the first `"key": "value"` in the JSON text, into out. Enough JSON for the
 * two keys the shim needs (daemonSocket, cniVersion), whose values are plain paths and versions:
 * a value with escapes other than \" \\ \/ counts as absent.
 */
static int json_string(const struct buf *in, const char *key, char *out, size_t outsz)
{
    char quoted[64];
    int klen = snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const unsigned char *end = in->data + in->len;
    const unsigned char *p = in->data;
    while (p < end) {
        const unsigned char *hit = memmem(p, (size_t)(end - p), quoted, (size_t)klen);
        if (!hit) return -1;
        p = hit + klen;
        if (hit > in->data && hit[-1] == '\\') continue;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p >= end || *p != ':') continue;
        p++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p >= end || *p != '"') return -1;
        p++;
        size_t o = 0;
        while (p < end && *p != '"') {
            unsigned char c = *p++;
            if (c == '\\') {
                if (p >= end || (*p != '"' && *p != '\\' && *p != '/')) return -1;
                c = *p++;
            }
            if (o + 1 >= outsz) return -1;
            out[o++] = (char)c;
        }
        if (p >= end) return -1;
        out[o] = '\0';
        return 0;
    }
    return -1;
}

/* Replaces this process with the bundled Node plugin beside the shim, stdin replayed. */
static void exec_fallback(const struct buf *in) __attribute__((noreturn));
static void exec_fallback(const struct buf *in)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - sizeof FALLBACK_NAME - 1);
    if (n < 0) die(11, "weft-cni: failed to locate the fallback plugin: readlink /proc/self/exe: %s", strerror(errno));
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, FALLBACK_NAME);

    /* A memfd holds stdin of any size without a writer process (a pipe would block past 64 KiB). */
    int fd = memfd_create("weft-cni-stdin", 0);
    if (fd < 0) die(11, "weft-cni: failed to run fallback plugin %s: memfd_create: %s", path, strerror(errno));
    if (write_all(fd, in->data, in->len) < 0 || lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0)
        die(11, "weft-cni: failed to run fallback plugin %s: replaying stdin: %s", path, strerror(errno));
    close(fd);
    char *argv[] = { path, NULL };
    execv(path, argv);
    die(11, "weft-cni: daemon unavailable and failed to run fallback plugin %s: %s", path, strerror(errno));
}

static int connect_daemon(const char *socket_path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(socket_path) >= sizeof sa.sun_path) return -1;
    strcpy(sa.sun_path, socket_path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    /* A unix connect only blocks while the daemon's backlog is full; bound that wait. */
    struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_S };
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0 || fcntl(s, F_SETFL, O_NONBLOCK) < 0) {
        close(s);
        return -1;
    }
    return s;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends the request, half-closes, collects the reply until EOF. Returns 0, or -1 on timeout. */
static int exchange(int s, const struct buf *req, struct buf *reply)
{
    long long deadline = now_ms() + REPLY_TIMEOUT_MS;
    size_t sent = 0;
    int writing = 1;
    unsigned char chunk[65536];
    for (;;) {
        if (writing && sent == req->len) {
            shutdown(s, SHUT_WR);
            writing = 0;
        }
        long long left = deadline - now_ms();
        if (left <= 0) return -1;
        struct pollfd p = { .fd = s, .events = (short)(POLLIN | (writing ? POLLOUT : 0)) };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno != EINTR) return 0;
        if (r <= 0) continue;
        if (writing && (p.revents & POLLOUT)) {
            ssize_t w = send(s, req->data + sent, req->len - sent, MSG_NOSIGNAL);
            if (w > 0) sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) writing = 0; /* the reply says why */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(s, chunk, sizeof chunk);
            if (n == 0) return 0;
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                return 0; /* reset: judged by what arrived */
            }
            if (reply->len + (size_t)n > MAX_REPLY) return 0;
            put(reply, chunk, (size_t)n);
        }
    }
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Relays a complete ACCEPTED reply and exits with the plugin's code; returns if it is incomplete. */
static void relay(const struct buf *reply)
{
    const unsigned char *out = NULL, *err = NULL;
    size_t out_len = 0, err_len = 0;
    int code = -1;
    size_t at = HEADER_LEN;
    for (;;) {
        if (at + 5 > reply->len) return;
        int tag = reply->data[at];
        size_t len = be32(reply->data + at + 1);
        at += 5;
        if (len > reply->len - at) return;
        const unsigned char *body = reply->data + at;
        at += len;
        if (tag == TAG_END) break;
        if (tag == TAG_EXIT && len == 4) code = (int)be32(body);
        else if (tag == TAG_STDOUT) out = body, out_len = len;
        else if (tag == TAG_STDERR) err = body, err_len = len;
        else return;
    }
    if (code < 0 || !out || !err || at != reply->len) return;
    write_all(1, out, out_len);
    write_all(2, err, err_len);
    exit(code > 255 ? 1 : code);
}

int main(void)
{
    struct buf in = { 0 };
    read_stdin(&in);
    json_string(&in, "cniVersion", cni_version, sizeof cni_version);
    char socket_path[sizeof ((struct sockaddr_un *)0)->sun_path];
    if (json_string(&in, "daemonSocket", socket_path, sizeof socket_path) < 0) strcpy(socket_path, DEFAULT_SOCKET);

    int s = connect_daemon(socket_path);
    if (s < 0) exec_fallback(&in);

    char netns[256];
    ssize_t nl = readlink("/proc/self/ns/net", netns, sizeof netns);
    struct buf req = { 0 };
    put(&req, magic, sizeof magic);
    put(&req, (unsigned char[]){ PROTOCOL_VERSION, KIND_REQUEST }, 2);
    put_field(&req, TAG_NETNS, netns, nl > 0 ? (size_t)nl : 0);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "CNI_", 4) == 0 || strncmp(*e, "WEFT_", 5) == 0) put_field(&req, TAG_ENV, *e, strlen(*e));
    put_field(&req, TAG_STDIN, in.data, in.len);
    put_field(&req, TAG_END, "", 0);

    struct buf reply = { 0 };
    if (exchange(s, &req, &reply) < 0)
        die(11, "weft-cni: the CNI daemon at %s accepted the request but did not answer within %d s", socket_path, REPLY_TIMEOUT_MS / 1000);
    close(s);

    /* No reply byte: the daemon closed before accepting, so the verb never ran there. */
    if (reply.len == 0) exec_fallback(&in);
    if (reply.len >= HEADER_LEN && memcmp(reply.data, magic, 4) == 0) {
        if (reply.data[5] == KIND_REFUSED) {
            /* Worth a line in the runtime's log: a refused daemon means every call pays Node's start. */
            size_t len = reply.len >= HEADER_LEN + 5 ? be32(reply.data + HEADER_LEN + 1) : 0;
            if (len > reply.len - HEADER_LEN - 5) len = 0;
            fprintf(stderr, "weft-cni: the CNI daemon at %s refused the request (%.*s); running %s instead\n",
                    socket_path, (int)len, (const char *)reply.data + HEADER_LEN + 5, FALLBACK_NAME);
            exec_fallback(&in);
        }
        if (reply.data[4] == PROTOCOL_VERSION && reply.data[5] == KIND_ACCEPTED) relay(&reply);
    }
    die(11, "weft-cni: the connection to the CNI daemon at %s broke before its answer was complete", socket_path);
}
