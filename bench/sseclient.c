/* Server-sent events load client: STREAMS concurrent streams on one epoll loop, every event read and counted.
 *
 * All streams are opened at once (non-blocking connect, the request sent as soon as the socket is connected) and
 * then read until the end of the run: WARMUP seconds not counted, then a measured window of DURATION seconds, then
 * every socket is closed (the server sees the client go away). Each stream's time to first byte runs from its
 * connect() to the first byte of the response, and to its first whole event. Events are counted as "\n\n"
 * separators in the response body after de-chunking (so a separator split across reads, or across chunks, counts
 * once); a close-delimited body is counted as it comes.
 *
 * A stream fails when it cannot connect, gets a non-2xx status or a head it cannot parse, or its response ends
 * (connection closed or last chunk) before the end of the run; failed streams are not reopened. A stream that has
 * not received a byte by the end counts as failed with its whole wait as its time to first byte.
 *
 * stdout: "start" when the measured window opens and "end" when it closes (the suite samples the server's CPU time
 * and RSS between them), then one JSON object. Loopback only; bounded by WARMUP + DURATION.
 *
 * usage: bench-sseclient PORT PATH STREAMS WARMUP DURATION
 * bench builds it on first use: cc -O2 -o bench/.venv-peers/bin/bench-sseclient bench/sseclient.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADMAX 8192
#define RBUF 65536

enum { S_CONNECTING, S_HEAD, S_BODY, S_DONE, S_FAILED };
enum { C_SIZE, C_EXT, C_DATA, C_DATA_END, C_LAST };
enum { F_CONNECT = 1, F_STATUS, F_HEAD, F_ENDED, F_RESET, F_NORESPONSE };

typedef struct {
    int fd;
    int state;
    int fail;
    double t_open, t_byte, t_event;
    size_t head_len;
    char head[HEADMAX];
    int chunked;
    int cstate;
    unsigned long long crem;
    int prev_nl;
    long long events, events_window;
} stream_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static stream_t *st;
static int nst, ep, port;
static char req[2048];
static size_t req_len;
static int measuring;
static long long window_events, total_bytes;
static char rbuf[RBUF];

static void fail(stream_t *s, int why) {
    if (s->state == S_FAILED || s->state == S_DONE) return;
    s->state = S_FAILED;
    s->fail = why;
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
}

static void count_data(stream_t *s, const char *p, size_t n, double t) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') { s->prev_nl = 0; continue; }
        if (!s->prev_nl) { s->prev_nl = 1; continue; }
        s->prev_nl = 0;
        s->events++;
        if (s->events == 1) s->t_event = t;
        if (measuring) { s->events_window++; window_events++; }
    }
}

/* The body: de-chunk when chunked, else count as is. Returns 1 when the response has ended. */
static int body(stream_t *s, const char *p, size_t n, double t) {
    if (!s->chunked) { count_data(s, p, n, t); return 0; }
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        switch (s->cstate) {
        case C_SIZE:
            if (c == '\n') {
                if (s->crem == 0) return 1; /* last chunk: the response is complete */
                s->cstate = C_DATA;
            } else if (c == ';') {
                s->cstate = C_EXT;
            } else if (c != '\r' && c != ' ') {
                int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                      : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
                if (v < 0 || s->crem > (1ULL << 40)) { fail(s, F_HEAD); return 0; }
                s->crem = s->crem * 16 + (unsigned)v;
            }
            i++;
            break;
        case C_EXT:
            if (c == '\n') { if (s->crem == 0) return 1; s->cstate = C_DATA; }
            i++;
            break;
        case C_DATA: {
            size_t take = n - i < s->crem ? n - i : (size_t)s->crem;
            count_data(s, p + i, take, t);
            s->crem -= take;
            i += take;
            if (s->crem == 0) s->cstate = C_DATA_END;
            break;
        }
        case C_DATA_END: /* the CRLF after a chunk's data */
            if (c == '\n') { s->cstate = C_SIZE; s->crem = 0; }
            i++;
            break;
        default:
            i++;
        }
    }
    return 0;
}

static void head(stream_t *s, const char *p, size_t n, double t) {
    size_t room = HEADMAX - 1 - s->head_len;
    size_t take = n < room ? n : room;
    memcpy(s->head + s->head_len, p, take);
    s->head_len += take;
    s->head[s->head_len] = 0;
    char *end = memmem(s->head, s->head_len, "\r\n\r\n", 4);
    if (!end) {
        if (s->head_len >= HEADMAX - 1) fail(s, F_HEAD);
        return;
    }
    if (strncmp(s->head, "HTTP/1.", 7) != 0 || s->head_len < 12) { fail(s, F_HEAD); return; }
    if (s->head[9] != '2') { fail(s, F_STATUS); return; }
    *end = 0;
    for (char *q = s->head; (q = strchr(q, '\n')) != NULL; q++) {
        if (strncasecmp(q + 1, "transfer-encoding:", 18) == 0) {
            char *eol = strchr(q + 1, '\r');
            if (eol) *eol = 0;
            s->chunked = strcasestr(q + 1, "chunked") != NULL;
            if (eol) *eol = '\r';
        }
    }
    s->state = S_BODY;
    size_t used = (size_t)(end - s->head) + 4;            /* head bytes within s->head */
    size_t consumed_before = s->head_len - take;          /* head bytes from earlier reads */
    size_t rest_off = used - consumed_before;             /* where the body starts within p */
    if (rest_off < n && body(s, p + rest_off, n - rest_off, t)) fail(s, F_ENDED);
}

static void on_readable(stream_t *s, double t) {
    for (;;) {
        ssize_t n = recv(s->fd, rbuf, sizeof rbuf, 0);
        if (n > 0) {
            total_bytes += n;
            if (s->t_byte == 0) s->t_byte = t;
            if (s->state == S_HEAD) head(s, rbuf, (size_t)n, t);
            else if (s->state == S_BODY && body(s, rbuf, (size_t)n, t)) fail(s, F_ENDED);
            if (s->state != S_HEAD && s->state != S_BODY) return;
            if ((size_t)n < sizeof rbuf) return; /* level-triggered: the rest is reported next time */
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0 && errno == EINTR) continue;
        fail(s, n == 0 ? F_ENDED : F_RESET); /* the response ended (or broke) before the end of the run */
        return;
    }
}

static void send_request(stream_t *s) {
    ssize_t n = send(s->fd, req, req_len, MSG_NOSIGNAL);
    if (n != (ssize_t)req_len) { fail(s, F_CONNECT); return; }
    s->state = S_HEAD;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)(s - st)};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static void open_stream(stream_t *s) {
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    s->t_open = now_s();
    if (s->fd < 0) { s->state = S_FAILED; s->fail = F_CONNECT; return; }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (unsigned)(s - st)};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    if (connect(s->fd, (struct sockaddr *)&a, sizeof a) == 0) send_request(s);
    else if (errno != EINPROGRESS) fail(s, F_CONNECT);
}

static void on_writable(stream_t *s) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) { fail(s, F_CONNECT); return; }
    send_request(s);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double p) {
    if (n == 0) return 0;
    long k = (long)(p / 100.0 * n + 0.5) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k] * 1000;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s PORT PATH STREAMS WARMUP DURATION\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    const char *path = argv[2];
    nst = atoi(argv[3]);
    double warmup = atof(argv[4]), duration = atof(argv[5]);
    if (port <= 0 || nst <= 0 || nst > 100000 || warmup < 0 || duration <= 0 || warmup + duration > 3600) return 2;
    req_len = (size_t)snprintf(req, sizeof req,
                               "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\n\r\n", path, port);
    if (req_len >= sizeof req) return 2;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nst + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)nst + 64 ? rl.rlim_max : (rlim_t)nst + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    st = calloc((size_t)nst, sizeof *st);
    double *ttfb = calloc((size_t)nst, sizeof *ttfb), *ttfe = calloc((size_t)nst, sizeof *ttfe);
    long long *per = calloc((size_t)nst, sizeof *per);
    if (!st || !ttfb || !ttfe || !per) return 3;
    ep = epoll_create1(0);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    for (int i = 0; i < nst; i++) open_stream(&st[i]);
    double t_start = t0 + warmup, t_end = t_start + duration, w0 = 0, w1 = 0;
    struct epoll_event evs[512];
    for (;;) {
        double t = now_s();
        if (!measuring && t >= t_start) {
            measuring = 1;
            w0 = t;
            printf("start\n");
            fflush(stdout);
        }
        if (t >= t_end) break;
        double next = measuring ? t_end : t_start;
        int timeout = (int)((next - t) * 1000) + 1;
        int n = epoll_wait(ep, evs, 512, timeout);
        t = now_s();
        for (int k = 0; k < n; k++) {
            stream_t *s = &st[evs[k].data.u32];
            if (s->state == S_CONNECTING) {
                if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(s);
            } else if (s->state == S_HEAD || s->state == S_BODY) {
                on_readable(s, t);
            }
        }
    }
    w1 = now_s();
    measuring = 0;
    printf("end\n");
    fflush(stdout);
    getrusage(RUSAGE_SELF, &ru1);

    long connect_f = 0, status_f = 0, head_f = 0, ended_f = 0, reset_f = 0, noresp_f = 0, open_n = 0;
    long nb = 0, ne = 0;
    for (int i = 0; i < nst; i++) {
        stream_t *s = &st[i];
        if (s->state == S_HEAD || s->state == S_CONNECTING) fail(s, s->t_byte == 0 ? F_NORESPONSE : F_HEAD);
        switch (s->fail) {
        case F_CONNECT: connect_f++; break;
        case F_STATUS: status_f++; break;
        case F_HEAD: head_f++; break;
        case F_ENDED: ended_f++; break;
        case F_RESET: reset_f++; break;
        case F_NORESPONSE: noresp_f++; break;
        default: break;
        }
        if (s->t_byte > 0) ttfb[nb++] = s->t_byte - s->t_open;
        else if (s->fail == F_NORESPONSE) ttfb[nb++] = w1 - s->t_open; /* censored: its whole wait */
        if (s->t_event > 0) ttfe[ne++] = s->t_event - s->t_open;
        if (s->state == S_BODY) per[open_n++] = s->events_window;
        if (s->fd >= 0) close(s->fd);
    }
    qsort(ttfb, (size_t)nb, sizeof *ttfb, cmp);
    qsort(ttfe, (size_t)ne, sizeof *ttfe, cmp);
    long long pmin = 0, pmax = 0;
    for (long i = 0; i < open_n; i++) {
        if (i == 0 || per[i] < pmin) pmin = per[i];
        if (per[i] > pmax) pmax = per[i];
    }
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    long failures = connect_f + status_f + head_f + ended_f + reset_f + noresp_f;
    double window = w1 - w0;
    printf("{\"streams\": %d, \"streams_open_at_end\": %ld, \"window_s\": %.3f, \"events\": %lld, "
           "\"events_per_s\": %.1f, \"ttfb_p50_ms\": %.3f, \"ttfb_p99_ms\": %.3f, \"ttfb_max_ms\": %.3f, "
           "\"first_event_p50_ms\": %.3f, \"first_event_p99_ms\": %.3f, \"stream_events_min\": %lld, "
           "\"stream_events_max\": %lld, \"failures\": %ld, \"connect_failed\": %ld, \"non_2xx\": %ld, "
           "\"bad_head\": %ld, \"ended_early\": %ld, \"reset\": %ld, \"no_response\": %ld, \"bytes\": %lld, "
           "\"client_cpu_pct\": %.0f}\n",
           nst, open_n, window, window_events, window > 0 ? window_events / window : 0.0, pct(ttfb, nb, 50),
           pct(ttfb, nb, 99), nb ? ttfb[nb - 1] * 1000 : 0.0, pct(ttfe, ne, 50), pct(ttfe, ne, 99), pmin, pmax,
           failures, connect_f, status_f, head_f, ended_f, reset_f, noresp_f, total_bytes,
           cpu / (w1 - t0) * 100);
    return 0;
}
