/* Open-loop HTTP/1.1 load generator (what wrk2 does; Debian ships no wrk2).
 *
 * Request i is due at t0 + i/rate whatever the server does. A due request takes an idle keep-alive connection or
 * waits in a FIFO for the next one to free up; its latency is measured from its *scheduled* time, so a stalled
 * server is charged for every request it delayed (coordinated omission corrected). Bounded: the schedule ends after
 * warmup + duration seconds, stragglers get `drain` seconds, then whatever is unanswered counts as a timeout with a
 * latency of at least its wait. Loopback only. Prints one JSON object (the same fields as bench/loadgen.py).
 *
 * usage: bench-loadgen PORT PATH RATE DURATION WARMUP CONNECTIONS DRAIN [BODY]   (with BODY: POST application/json)
 * bench builds it on first use: cc -O2 -o bench/.venv-peers/bin/bench-loadgen bench/loadgen.c
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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ 65536

typedef struct {
    int fd;
    int busy;
    double sched;
    size_t len;
    char buf[BUFSZ];
} conn_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char req[8192];
static size_t req_len;
static int port, ep;
static conn_t *conns;
static int nconns;
static int *idle_stack, idle_n;
static double *pending;
static long pend_head, pend_tail;
static double *lat;
static long nlat, lat_cap;
static double measure_from;
static long errors, non2xx, timeouts;

static int open_conn(int idx) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)idx};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    conns[idx].fd = fd;
    conns[idx].busy = 0;
    conns[idx].len = 0;
    return fd;
}

static void record(double sched, double t) {
    if (sched >= measure_from && nlat < lat_cap) lat[nlat++] = t - sched;
}

static void send_on(int idx, double sched) {
    conn_t *c = &conns[idx];
    c->busy = 1;
    c->sched = sched;
    ssize_t n = send(c->fd, req, req_len, MSG_NOSIGNAL);
    if (n != (ssize_t)req_len) { /* a fresh keep-alive socket takes a small request whole */
        errors++;
        c->busy = 0;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        if (open_conn(idx) >= 0) idle_stack[idle_n++] = idx;
    }
}

static void dispatch(double sched) {
    if (idle_n > 0) send_on(idle_stack[--idle_n], sched);
    else pending[pend_tail++] = sched;
}

static void freed(int idx) {
    if (pend_head < pend_tail) send_on(idx, pending[pend_head++]);
    else idle_stack[idle_n++] = idx;
}

static void on_readable(int idx) {
    conn_t *c = &conns[idx];
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, BUFSZ - 1 - c->len, 0);
        if (n > 0) { c->len += (size_t)n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        /* closed or failed: the request in flight is an error; reconnect */
        if (c->busy) errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->len = 0;
        int was_busy = c->busy;
        c->busy = 0;
        if (open_conn(idx) >= 0) { if (was_busy) freed(idx); else idle_stack[idle_n++] = idx; }
        return;
    }
    for (;;) {
        c->buf[c->len] = 0;
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return;
        size_t head = (size_t)(end - c->buf) + 4;
        long clen = -1;
        for (char *p = c->buf; p < end; p++) {
            if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0) { clen = atol(p + 16); break; }
        }
        if (clen < 0) { errors++; clen = 0; }
        if (c->len < head + (size_t)clen) return;
        if (strncmp(c->buf, "HTTP/1.1 2", 10) != 0 && strncmp(c->buf, "HTTP/1.0 2", 10) != 0) non2xx++;
        memmove(c->buf, c->buf + head + clen, c->len - head - clen);
        c->len -= head + clen;
        if (c->busy) {
            c->busy = 0;
            record(c->sched, now_s());
            freed(idx);
        }
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) {
    if (nlat == 0) return 0;
    long k = (long)(p / 100.0 * nlat + 0.5) - 1;
    if (k < 0) k = 0;
    if (k >= nlat) k = nlat - 1;
    return lat[k] * 1000;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s PORT PATH RATE DURATION WARMUP CONNECTIONS DRAIN [BODY]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    const char *path = argv[2];
    double rate = atof(argv[3]), duration = atof(argv[4]), warmup = atof(argv[5]);
    nconns = atoi(argv[6]);
    double drain = atof(argv[7]);
    const char *body = argc > 8 ? argv[8] : NULL;
    if (rate <= 0 || duration <= 0 || nconns <= 0 || duration > 3600 || rate > 1e7) return 2;
    if (body)
        req_len = (size_t)snprintf(req, sizeof req,
                                   "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                                   "Content-Length: %zu\r\n\r\n%s", path, port, strlen(body), body);
    else
        req_len = (size_t)snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    if (req_len >= sizeof req) return 2;

    long total = (long)((warmup + duration) * rate);
    ep = epoll_create1(0);
    conns = calloc((size_t)nconns, sizeof *conns);
    idle_stack = calloc((size_t)nconns, sizeof *idle_stack);
    pending = calloc((size_t)total + 1, sizeof *pending);
    lat_cap = total + nconns + 1;
    lat = calloc((size_t)lat_cap, sizeof *lat);
    if (!conns || !idle_stack || !pending || !lat) return 3;
    for (int i = 0; i < nconns; i++) {
        if (open_conn(i) < 0) { fprintf(stderr, "connect failed\n"); return 1; }
        idle_stack[idle_n++] = i;
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double interval = 1.0 / rate;
    double t0 = now_s() + 0.05;
    measure_from = t0 + warmup;
    long i = 0;
    double max_lag = 0;
    struct epoll_event evs[256];
    /* Sleep until the next send on an absolute timerfd (no spinning: a spinning generator loses its core to any
     * other runnable task for whole scheduler slices, and that lag would be charged to the server). */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = 0xFFFFFFFFu};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    double end_sched = t0 + total * interval;
    for (;;) {
        double t = now_s();
        if (i < total && t >= t0) {
            long due = (long)((t - t0) / interval) + 1;
            if (due > total) due = total;
            if (due > i + 1) {
                double lag = t - (t0 + i * interval);
                if (lag > max_lag) max_lag = lag;
            }
            for (; i < due; i++) dispatch(t0 + i * interval);
        }
        int outstanding = (pend_head < pend_tail);
        for (int k = 0; k < nconns && !outstanding; k++) outstanding = conns[k].busy;
        if (i >= total && (!outstanding || t > end_sched + drain)) break;
        int timeout = 5;
        if (i < total) {
            double next = t0 + i * interval, floor_ = now_s() + 20e-6;
            if (next < floor_) next = floor_;
            struct itimerspec its;
            memset(&its, 0, sizeof its);
            its.it_value.tv_sec = (time_t)next;
            its.it_value.tv_nsec = (long)((next - (double)(time_t)next) * 1e9);
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            timeout = 1000;
        }
        int n = epoll_wait(ep, evs, 256, timeout);
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u32 == 0xFFFFFFFFu) {
                unsigned long long ticks;
                if (read(tfd, &ticks, sizeof ticks) < 0) { /* nothing to clear */ }
            } else {
                on_readable((int)evs[k].data.u32);
            }
        }
    }
    double t_end = now_s();
    for (long k = pend_head; k < pend_tail; k++) {
        if (pending[k] >= measure_from) { record(pending[k], t_end); timeouts++; }
    }
    for (int k = 0; k < nconns; k++) {
        if (conns[k].busy && conns[k].sched >= measure_from) { record(conns[k].sched, t_end); timeouts++; }
        close(conns[k].fd);
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    qsort(lat, (size_t)nlat, sizeof *lat, cmp);
    printf("{\"offered_rps\": %.1f, \"achieved_rps\": %.1f, \"requests\": %ld, \"timeouts\": %ld, \"errors\": %ld, "
           "\"non_2xx\": %ld, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, "
           "\"max_ms\": %.3f, \"generator_max_lag_ms\": %.3f, \"generator_cpu_pct\": %.0f, \"generator\": \"c\"}\n",
           rate, (nlat - timeouts) / duration, nlat, timeouts, errors, non2xx, pct(50), pct(90), pct(99), pct(99.9),
           nlat ? lat[nlat - 1] * 1000 : 0.0, max_lag * 1000, cpu / (t_end - t0) * 100);
    return 0;
}
