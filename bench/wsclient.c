/* WebSocket echo load client: CONNS connections on one epoll loop, one message in flight on each.
 *
 * Every connection does the opening handshake (RFC 6455, a fixed Sec-WebSocket-Key whose expected
 * Sec-WebSocket-Accept is checked; no Sec-WebSocket-Extensions, so no server compresses), then sends one binary
 * message of SIZE bytes (a single masked frame, a fresh mask key per frame) and waits for the whole echo (any
 * fragmentation the server chooses) before sending the next. The round trip of a message runs from just before its
 * first write() to the read that completes its echo.
 *
 * Timeline: all connections are opened at once; WARMUP seconds not counted; then a measured window of DURATION
 * seconds (messages whose echo completes in it are counted and their round trips kept); then a close frame is sent
 * on every connection and the sockets are closed.
 *
 * A connection fails when it cannot connect, the handshake does not answer 101 with the right accept value, the
 * server closes it (close frame, EOF or reset) or an echo has the wrong length; failed connections are not reopened.
 * A connection still in its handshake at the end of the run counts as failed too.
 *
 * stdout: "start" when the window opens and "end" when it closes (the suite samples the server's CPU time and RSS
 * between them), then one JSON object. Loopback only; bounded by WARMUP + DURATION.
 *
 * usage: bench-wsclient PORT PATH CONNS SIZE WARMUP DURATION
 * bench builds it on first use: cc -O2 -o bench/.venv-peers/bin/bench-wsclient bench/wsclient.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADMAX 4096
#define RBUF (256 * 1024)
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 section 1.3's example for KEY */

enum { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_FAILED, S_CLOSED };
enum { F_CONNECT = 1, F_HANDSHAKE, F_CLOSED, F_PROTOCOL, F_SIZE, F_NOHANDSHAKE };

typedef struct {
    int fd, state, fail, want_out;
    double t_open, t_ready, t_sent;
    size_t head_len;
    char head[HEADMAX];
    unsigned char *out;
    size_t out_len, out_off;
    unsigned char hdr[14];
    int hdr_len, hdr_need, in_payload, opcode, fin;
    unsigned long long rem, msg_bytes;
    long long msgs_window;
} conn_t;

static conn_t *cs;
static int ncs, ep, port;
static size_t msg_size;
static unsigned char *payload;
static char req[2048];
static size_t req_len;
static int measuring;
static long long window_msgs, total_msgs;
static double *rtts;
static size_t nrtt, caprtt;
static unsigned char rbuf[RBUF];
static uint32_t rng = 2463534242u;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t xorshift(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void set_events(conn_t *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (c->want_out != out) {
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = out;
    }
}

static void fail(conn_t *c, int why) {
    if (c->state == S_FAILED || c->state == S_CLOSED) return;
    c->state = S_FAILED;
    c->fail = why;
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

/* Write what is pending; 0 when all of it went, 1 when the socket is full, -1 on error. */
static int flush_out(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return 1;
        }
        fail(c, F_CLOSED);
        return -1;
    }
    set_events(c, 0);
    return 0;
}

/* One masked binary frame of msg_size bytes, then write it. */
static void send_message(conn_t *c) {
    size_t h = 0;
    unsigned char *o = c->out;
    o[h++] = 0x82; /* FIN + binary */
    if (msg_size < 126) {
        o[h++] = 0x80 | (unsigned char)msg_size;
    } else if (msg_size < 65536) {
        o[h++] = 0x80 | 126;
        o[h++] = (unsigned char)(msg_size >> 8);
        o[h++] = (unsigned char)msg_size;
    } else {
        o[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) o[h++] = (unsigned char)((unsigned long long)msg_size >> (8 * i));
    }
    uint32_t key = xorshift();
    unsigned char mk[4];
    memcpy(mk, &key, 4);
    memcpy(o + h, mk, 4);
    h += 4;
    uint64_t k8;
    unsigned char k8b[8] = {mk[0], mk[1], mk[2], mk[3], mk[0], mk[1], mk[2], mk[3]};
    memcpy(&k8, k8b, 8);
    size_t i = 0;
    for (; i + 8 <= msg_size; i += 8) {
        uint64_t w;
        memcpy(&w, payload + i, 8);
        w ^= k8;
        memcpy(o + h + i, &w, 8);
    }
    for (; i < msg_size; i++) o[h + i] = payload[i] ^ mk[i & 3];
    c->out_len = h + msg_size;
    c->out_off = 0;
    c->msg_bytes = 0;
    c->t_sent = now_s();
    flush_out(c);
}

static void message_done(conn_t *c, double t) {
    if (c->msg_bytes != msg_size) {
        fail(c, F_SIZE);
        return;
    }
    total_msgs++;
    if (measuring) {
        window_msgs++;
        c->msgs_window++;
        if (nrtt == caprtt) {
            caprtt = caprtt ? caprtt * 2 : 65536;
            rtts = realloc(rtts, caprtt * sizeof *rtts);
            if (!rtts) {
                perror("realloc");
                exit(1);
            }
        }
        rtts[nrtt++] = (t - c->t_sent) * 1e3;
    }
    send_message(c);
}

/* Feed server bytes to the frame parser. */
static void feed(conn_t *c, const unsigned char *p, size_t n, double t) {
    while (n > 0 && c->state == S_OPEN) {
        if (!c->in_payload) {
            c->hdr[c->hdr_len++] = *p++;
            n--;
            if (c->hdr_len == 2) {
                if (c->hdr[1] & 0x80) { /* servers never mask */
                    fail(c, F_PROTOCOL);
                    return;
                }
                int l = c->hdr[1] & 0x7f;
                c->hdr_need = l == 126 ? 4 : l == 127 ? 10 : 2;
            }
            if (c->hdr_len < 2 || c->hdr_len < c->hdr_need) continue;
            int l = c->hdr[1] & 0x7f;
            unsigned long long len = (unsigned long long)l;
            if (l == 126) len = ((unsigned long long)c->hdr[2] << 8) | c->hdr[3];
            if (l == 127) {
                len = 0;
                for (int i = 2; i < 10; i++) len = (len << 8) | c->hdr[i];
            }
            c->opcode = c->hdr[0] & 0x0f;
            c->fin = c->hdr[0] & 0x80;
            c->rem = len;
            c->hdr_len = 0;
            c->hdr_need = 2;
            if (c->opcode == 8) { /* close from the server */
                fail(c, F_CLOSED);
                return;
            }
            c->in_payload = 1;
        }
        size_t take = c->rem < n ? (size_t)c->rem : n;
        if (c->opcode <= 2) c->msg_bytes += take;
        c->rem -= take;
        p += take;
        n -= take;
        if (c->rem == 0) {
            c->in_payload = 0;
            if (c->opcode <= 2 && c->fin) message_done(c, t); /* pings/pongs are skipped */
        }
    }
}

static void on_handshake(conn_t *c, double t) {
    for (;;) {
        ssize_t n = read(c->fd, c->head + c->head_len, sizeof c->head - 1 - c->head_len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            fail(c, F_HANDSHAKE);
            return;
        }
        c->head_len += (size_t)n;
        c->head[c->head_len] = 0;
        char *end = strstr(c->head, "\r\n\r\n");
        if (!end) {
            if (c->head_len >= sizeof c->head - 1) fail(c, F_HANDSHAKE);
            continue;
        }
        if (strncmp(c->head, "HTTP/1.1 101", 12) != 0 || !strstr(c->head, ACCEPT)) {
            fail(c, F_HANDSHAKE);
            return;
        }
        c->state = S_OPEN;
        c->t_ready = t;
        size_t used = (size_t)(end + 4 - c->head);
        send_message(c);
        if (c->state == S_OPEN && c->head_len > used)
            feed(c, (unsigned char *)c->head + used, c->head_len - used, t);
        return;
    }
}

static void on_event(conn_t *c, uint32_t events) {
    double t = now_s();
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            fail(c, F_CONNECT);
            return;
        }
        if (write(c->fd, req, req_len) != (ssize_t)req_len) {
            fail(c, F_CONNECT);
            return;
        }
        c->state = S_HANDSHAKE;
        set_events(c, 0);
        return;
    }
    if (c->state == S_HANDSHAKE) {
        on_handshake(c, t);
        return;
    }
    if (c->state != S_OPEN) return;
    if ((events & EPOLLOUT) && flush_out(c) < 0) return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (;;) {
            ssize_t n = read(c->fd, rbuf, sizeof rbuf);
            if (n > 0) {
                feed(c, rbuf, (size_t)n, t);
                if (c->state != S_OPEN || (size_t)n < sizeof rbuf) return;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            fail(c, F_CLOSED);
            return;
        }
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
    if (n == 0) return -1;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s PORT PATH CONNS SIZE WARMUP DURATION\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    const char *path = argv[2];
    ncs = atoi(argv[3]);
    msg_size = (size_t)atol(argv[4]);
    double warmup = atof(argv[5]), duration = atof(argv[6]);
    if (ncs <= 0 || duration <= 0) return 2;
    req_len = (size_t)snprintf(req, sizeof req,
                               "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n",
                               path, port);
    payload = malloc(msg_size + 8);
    for (size_t i = 0; i < msg_size; i++) payload[i] = (unsigned char)('a' + i % 26);
    cs = calloc((size_t)ncs, sizeof *cs);
    ep = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    double t0 = now_s();
    for (int i = 0; i < ncs; i++) {
        conn_t *c = &cs[i];
        c->hdr_need = 2;
        c->out = malloc(msg_size + 14);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->t_open = now_s();
        c->state = S_CONNECTING;
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
            fail(c, F_CONNECT);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        c->want_out = 1;
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    struct rusage ru0, ru1;
    double t_start = t0 + warmup, t_end = t_start + duration, w0 = 0, w1 = 0;
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        if (!measuring && w0 == 0 && t >= t_start) {
            measuring = 1;
            w0 = t;
            getrusage(RUSAGE_SELF, &ru0);
            printf("start\n");
            fflush(stdout);
        }
        if (t >= t_end) break;
        double until = measuring ? t_end : t_start;
        int ms = (int)((until - t) * 1e3) + 1;
        int n = epoll_wait(ep, evs, 256, ms);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }
    measuring = 0;
    w1 = now_s();
    getrusage(RUSAGE_SELF, &ru1);
    printf("end\n");
    fflush(stdout);
    /* Say goodbye: a masked close frame (1000) where the socket takes it, then close. */
    unsigned char bye[8] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    long open_end = 0, fails[8] = {0};
    long long mn = -1, mx = 0;
    double *hs = malloc(sizeof(double) * (size_t)ncs);
    size_t nhs = 0;
    for (int i = 0; i < ncs; i++) {
        conn_t *c = &cs[i];
        if (c->state == S_CONNECTING || c->state == S_HANDSHAKE) fail(c, F_NOHANDSHAKE);
        if (c->t_ready > 0) hs[nhs++] = (c->t_ready - c->t_open) * 1e3;
        if (c->state == S_OPEN) {
            open_end++;
            if (write(c->fd, bye, sizeof bye) < 0) { /* best effort */
            }
            close(c->fd);
            c->fd = -1;
            c->state = S_CLOSED;
        } else if (c->state == S_FAILED) {
            fails[c->fail]++;
        }
        if (mn < 0 || c->msgs_window < mn) mn = c->msgs_window;
        if (c->msgs_window > mx) mx = c->msgs_window;
    }
    double window = w1 - w0;
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    qsort(rtts, nrtt, sizeof *rtts, cmp);
    qsort(hs, nhs, sizeof *hs, cmp);
    long failures = 0;
    for (int i = 1; i < 8; i++) failures += fails[i];
    printf("{\"connections\": %d, \"message_bytes\": %zu, \"open_at_end\": %ld, \"window_s\": %.3f, "
           "\"messages\": %lld, \"msgs_per_s\": %.1f, \"rtt_p50_ms\": %.3f, \"rtt_p99_ms\": %.3f, "
           "\"rtt_max_ms\": %.3f, \"handshake_p50_ms\": %.3f, \"handshake_max_ms\": %.3f, \"failures\": %ld, "
           "\"failed_by\": {\"connect\": %ld, \"handshake\": %ld, \"closed\": %ld, \"protocol\": %ld, "
           "\"wrong_size\": %ld, \"no_handshake_by_end\": %ld}, \"fewest_msgs_per_conn\": %lld, "
           "\"most_msgs_per_conn\": %lld, \"client_cpu_pct\": %.1f, \"messages_total\": %lld}\n",
           ncs, msg_size, open_end, window, window_msgs, window_msgs / window, pct(rtts, nrtt, 0.5),
           pct(rtts, nrtt, 0.99), nrtt ? rtts[nrtt - 1] : -1.0, pct(hs, nhs, 0.5), nhs ? hs[nhs - 1] : -1.0,
           failures, fails[F_CONNECT], fails[F_HANDSHAKE], fails[F_CLOSED], fails[F_PROTOCOL], fails[F_SIZE],
           fails[F_NOHANDSHAKE], mn < 0 ? 0 : mn, mx, cpu / window * 100, total_msgs);
    return 0;
}
