/* Closed-loop echo load generator: one thread, epoll, non-blocking sockets,
 * loopback only.
 *
 *   echo_loadgen -p PORT [-c CONNS] [-s SIZE] [-d DEPTH] [-t SECONDS] [-w SECONDS]
 *                [-m raw|framed] [--server-pid PID] [--malloc-stats FILE]
 *                [--label NAME] [-q]
 *
 * Every connection keeps DEPTH requests of SIZE payload bytes outstanding: a
 * new request is sent as soon as a response completes, and the requests a
 * read makes due go out in one writev. raw sends SIZE bytes and counts a
 * response when SIZE bytes came back; framed sends a 4-byte big-endian length
 * plus SIZE bytes and parses the framed responses.
 *
 * Verification: request n of connection c is the window of a random pattern
 * that starts at offset (7*c + 13*n) mod 509, so consecutive requests differ
 * and every response byte is compared (memcmp) with what was sent. A response
 * with any wrong byte (or a wrong frame length) is one error. A server that
 * sends more bytes than it received, closes, or sends an absurd frame length
 * fails that connection (failed_conns); the run goes on with the others.
 *
 * Latency: from the writev that carries a request's first byte to the read
 * that carries its response's last byte (CLOCK_MONOTONIC, ns), into a
 * log-linear histogram with 128 sub-buckets per power of two (< 0.8 % error).
 *
 * Phases: connect everything, warm up for -w seconds (counted for errors
 * only), then measure for -t seconds. At the end every socket is closed at
 * once; responses still in flight are not waited for.
 *
 * Output: the human summary goes to stderr, one machine-readable line to
 * stdout:
 *   result label=.. mode=.. conns=.. depth=.. size=.. seconds=.. requests=..
 *          req_s=.. mb_s=.. p50_us=.. p99_us=.. p999_us=.. max_us=.. mean_us=..
 *          errors=.. failed_conns=.. srv_cpu_us_req=.. srv_cpu_pct=..
 *          cli_cpu_us_req=.. srv_allocs_req=..
 * mb_s is payload echoed per second in one direction (requests * SIZE / s /
 * 1e6; the framing header is not counted). srv_* need --server-pid (CPU time
 * of the whole server process, utime+stime from /proc/PID/stat, 10 ms ticks)
 * and --malloc-stats (the counters libecho_malloc_count.so keeps for a server
 * run under LD_PRELOAD); they read "na" otherwise.
 *
 * Exit status: 0 clean run; 1 wrong responses, failed connections or no
 * response at all during the measurement; 2 usage or connect failure. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "malloc_count.h"

#define PATTERN_SPAN 509 /* prime: 509 consecutive requests start at distinct offsets */
#define RBUF_SIZE    (256 * 1024)
#define MAX_IOV      1024
#define MAX_EVENTS   256
#define SIZE_MAX_ARG (16u * 1024 * 1024)

/* ---- histogram: log-linear, HdrHistogram-like, values in ns ---- */
#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
    uint64_t count, max, sum;
    uint64_t b[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned s = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
    return s * HIST_SUB + (unsigned)(v >> s);
}

/* The middle of bucket i. */
static double hist_value(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned s = i / HIST_SUB - 1;
    uint64_t lo = (uint64_t)(i - s * HIST_SUB) << s;
    return (double)lo + (double)((1ull << s) - 1) / 2.0;
}

static void hist_record(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static double hist_quantile(const struct hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            double v = hist_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ---- state ---- */
enum mode { MODE_RAW, MODE_FRAMED };

struct conn {
    int fd, id;
    bool want_out, dead;
    uint64_t tx_next;  /* first request not completely written */
    size_t tx_off;     /* bytes of request tx_next already written */
    uint64_t tx_limit; /* requests issued so far: [rx_seq, tx_limit) are outstanding */
    uint64_t rx_seq;   /* request whose response is being read */
    size_t rx_off;     /* bytes of that response read (framed: header included) */
    uint32_t rx_len;   /* framed: payload length announced by the response */
    bool rx_bad;
    uint8_t rx_hdr[4];
    uint64_t tx_bytes, rx_bytes;
    uint64_t *sent_ns; /* ring of depth send times */
};

struct lg {
    const char *host, *label, *malloc_file;
    int port, conns, depth, server_pid;
    size_t size, req_bytes; /* req_bytes: size, plus 4 when framed */
    double duration, warmup;
    enum mode mode;
    bool quiet, measuring;
    uint8_t *pattern, hdr[4], *rbuf;
    struct conn *c;
    int ep, alive;
    struct hist hist;
    uint64_t requests, errors_total, failed;
    const struct malloc_count *mc;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const uint8_t *req_payload(const struct lg *g, const struct conn *c, uint64_t seq)
{
    return g->pattern + (7u * (uint64_t)c->id + 13u * seq) % PATTERN_SPAN;
}

static void conn_fail(struct lg *g, struct conn *c, const char *why)
{
    if (c->dead)
        return;
    if (!g->quiet)
        fprintf(stderr, "loadgen: connection %d failed after %llu responses: %s\n", c->id,
                (unsigned long long)c->rx_seq, why);
    close(c->fd);
    c->dead = true;
    g->failed++;
    g->alive--;
}

static void set_out(struct lg *g, struct conn *c, bool on)
{
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };

    if (c->want_out == on)
        return;
    c->want_out = on;
    if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        conn_fail(g, c, strerror(errno));
}

/* Sends what is due: requests [tx_next, tx_limit), from tx_off on. */
static void conn_flush(struct lg *g, struct conn *c)
{
    struct iovec iov[MAX_IOV];

    while (!c->dead && c->tx_next < c->tx_limit) {
        int n = 0;
        size_t total = 0, off = c->tx_off;
        for (uint64_t s = c->tx_next; s < c->tx_limit && n + 2 <= MAX_IOV; s++, off = 0) {
            const uint8_t *p = req_payload(g, c, s);
            if (g->mode == MODE_FRAMED) {
                if (off < 4)
                    iov[n++] = (struct iovec){ g->hdr + off, 4 - off };
                size_t po = off < 4 ? 0 : off - 4;
                if (g->size > po)
                    iov[n++] = (struct iovec){ (void *)(p + po), g->size - po };
            } else {
                iov[n++] = (struct iovec){ (void *)(p + off), g->size - off };
            }
            total += g->req_bytes - off;
        }
        uint64_t t = now_ns();
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                set_out(g, c, true);
                return;
            }
            conn_fail(g, c, strerror(errno));
            return;
        }
        c->tx_bytes += (uint64_t)w;
        for (size_t rem = (size_t)w; rem > 0;) {
            size_t left = g->req_bytes - c->tx_off;
            if (c->tx_off == 0)
                c->sent_ns[c->tx_next % (uint64_t)g->depth] = t;
            if (rem >= left) {
                rem -= left;
                c->tx_next++;
                c->tx_off = 0;
            } else {
                c->tx_off += rem;
                rem = 0;
            }
        }
        if ((size_t)w < total) {
            set_out(g, c, true);
            return;
        }
    }
    if (!c->dead)
        set_out(g, c, false);
}

static void complete(struct lg *g, struct conn *c, uint64_t t)
{
    if (c->rx_bad)
        g->errors_total++;
    if (g->measuring) {
        hist_record(&g->hist, t - c->sent_ns[c->rx_seq % (uint64_t)g->depth]);
        g->requests++;
    }
    c->rx_seq++;
    c->rx_off = 0;
    c->rx_bad = false;
    c->tx_limit++;
}

/* Consumes n received bytes; returns false when the connection failed. */
static bool conn_consume(struct lg *g, struct conn *c, const uint8_t *p, size_t n, uint64_t t)
{
    while (n > 0) {
        if (g->mode == MODE_FRAMED && c->rx_off < 4) {
            size_t take = 4 - c->rx_off < n ? 4 - c->rx_off : n;
            memcpy(c->rx_hdr + c->rx_off, p, take);
            c->rx_off += take;
            p += take;
            n -= take;
            if (c->rx_off < 4)
                break;
            c->rx_len = (uint32_t)c->rx_hdr[0] << 24 | (uint32_t)c->rx_hdr[1] << 16 |
                        (uint32_t)c->rx_hdr[2] << 8 | c->rx_hdr[3];
            if (c->rx_len != g->size) {
                c->rx_bad = true;
                if (c->rx_len > SIZE_MAX_ARG) {
                    conn_fail(g, c, "absurd frame length in response");
                    return false;
                }
            }
            if (c->rx_len == 0)
                complete(g, c, t);
            continue;
        }
        size_t len = g->mode == MODE_FRAMED ? c->rx_len : g->size;
        size_t pos = g->mode == MODE_FRAMED ? c->rx_off - 4 : c->rx_off;
        size_t take = len - pos < n ? len - pos : n;
        if (!c->rx_bad &&
            (len != g->size || memcmp(p, req_payload(g, c, c->rx_seq) + pos, take) != 0))
            c->rx_bad = true;
        c->rx_off += take;
        p += take;
        n -= take;
        if (pos + take == len)
            complete(g, c, t);
    }
    return true;
}

static void conn_read(struct lg *g, struct conn *c)
{
    ssize_t n = read(c->fd, g->rbuf, RBUF_SIZE);

    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_fail(g, c, n == 0 ? "server closed the connection" : strerror(errno));
        return;
    }
    c->rx_bytes += (uint64_t)n;
    if (c->rx_bytes > c->tx_bytes) {
        conn_fail(g, c, "server sent more bytes than it received");
        return;
    }
    uint64_t before = c->tx_limit;
    if (!conn_consume(g, c, g->rbuf, (size_t)n, now_ns()))
        return;
    if (c->tx_limit != before && !c->want_out)
        conn_flush(g, c);
}

/* ---- server-side figures ---- */
static bool proc_cpu_ticks(int pid, uint64_t *ticks)
{
    char path[64], buf[1024];
    unsigned long long ut, st;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14)
     * stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return false;
    *ticks = ut + st;
    return true;
}

static uint64_t self_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

/* The one CPU this process is pinned to, or -1. */
static int pinned_cpu(void)
{
    cpu_set_t set;
    int cpu = -1;

    if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) != 1)
        return -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpu = i;
    return cpu;
}

/* From /proc/stat: busy and steal ticks of one CPU, and the busy ticks of
 * all the other CPUs together (a loaded sibling vCPU slows ours down too). */
struct cpu_sample {
    uint64_t busy, steal, rest_busy;
    int rest_n;
};

static bool cpu_ticks(int cpu, struct cpu_sample *cs)
{
    char line[512];
    unsigned long long v[8];
    int id, n;
    bool ok = false;
    FILE *f = fopen("/proc/stat", "re");

    if (!f)
        return false;
    *cs = (struct cpu_sample){ 0 };
    while (fgets(line, sizeof(line), f)) {
        /* cpuN user nice system idle iowait irq softirq steal ... ("cpu " is the sum) */
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9')
            continue;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu%n", &id, &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &n) != 9)
            continue;
        uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6];
        if (id == cpu) {
            cs->busy = busy;
            cs->steal = v[7];
            ok = true;
        } else {
            cs->rest_busy += busy;
            cs->rest_n++;
        }
    }
    fclose(f);
    return ok;
}

static uint64_t mc_allocs(const struct malloc_count *mc)
{
    return __atomic_load_n(&mc->malloc, __ATOMIC_RELAXED) +
           __atomic_load_n(&mc->calloc, __ATOMIC_RELAXED) +
           __atomic_load_n(&mc->realloc, __ATOMIC_RELAXED) +
           __atomic_load_n(&mc->memalign, __ATOMIC_RELAXED);
}

static const struct malloc_count *mc_open(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    void *p;

    if (fd < 0) {
        fprintf(stderr, "loadgen: --malloc-stats %s: %s\n", path, strerror(errno));
        exit(2);
    }
    p = mmap(NULL, sizeof(struct malloc_count), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED || ((const struct malloc_count *)p)->magic != MALLOC_COUNT_MAGIC) {
        fprintf(stderr, "loadgen: --malloc-stats %s: not a malloc counter file\n", path);
        exit(2);
    }
    return p;
}

/* ---- set-up ---- */
static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s -p PORT [options]\n"
            "  -H, --host ADDR        IPv4 loopback address (default 127.0.0.1)\n"
            "  -p, --port PORT        server port (required)\n"
            "  -c, --conns N          connections (default 50)\n"
            "  -s, --size BYTES       payload bytes per request (default 64)\n"
            "  -d, --depth N          requests in flight per connection (default 16)\n"
            "  -t, --duration SECONDS measured time (default 5)\n"
            "  -w, --warmup SECONDS   unmeasured load first (default 1)\n"
            "  -m, --mode raw|framed  framed: 4-byte big-endian length + payload (default raw)\n"
            "      --server-pid PID   report the server's CPU time per request\n"
            "      --malloc-stats F   report the server's allocations per request\n"
            "      --label NAME       copied into the result line\n"
            "  -q, --quiet            only the result line\n",
            argv0);
    exit(2);
}

static long arg_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "loadgen: %s must be an integer in [%ld, %ld]\n", opt, lo, hi);
        exit(2);
    }
    return v;
}

static double arg_seconds(const char *opt, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= 0) || v > 86400) {
        fprintf(stderr, "loadgen: %s must be a number of seconds\n", opt);
        exit(2);
    }
    return v;
}

static void parse(struct lg *g, int argc, char **argv)
{
    static const struct option opts[] = {
        { "host", required_argument, NULL, 'H' },
        { "port", required_argument, NULL, 'p' },
        { "conns", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 's' },
        { "depth", required_argument, NULL, 'd' },
        { "duration", required_argument, NULL, 't' },
        { "warmup", required_argument, NULL, 'w' },
        { "mode", required_argument, NULL, 'm' },
        { "server-pid", required_argument, NULL, 'P' },
        { "malloc-stats", required_argument, NULL, 'M' },
        { "label", required_argument, NULL, 'L' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int o;

    *g = (struct lg){ .host = "127.0.0.1",
                      .label = "-",
                      .conns = 50,
                      .depth = 16,
                      .size = 64,
                      .duration = 5,
                      .warmup = 1,
                      .mode = MODE_RAW };
    while ((o = getopt_long(argc, argv, "H:p:c:s:d:t:w:m:qh", opts, NULL)) != -1) {
        switch (o) {
        case 'H':
            g->host = optarg;
            break;
        case 'p':
            g->port = (int)arg_long("--port", optarg, 1, 65535);
            break;
        case 'c':
            g->conns = (int)arg_long("--conns", optarg, 1, 10000);
            break;
        case 's':
            g->size = (size_t)arg_long("--size", optarg, 0, SIZE_MAX_ARG);
            break;
        case 'd':
            g->depth = (int)arg_long("--depth", optarg, 1, 4096);
            break;
        case 't':
            g->duration = arg_seconds("--duration", optarg);
            break;
        case 'w':
            g->warmup = arg_seconds("--warmup", optarg);
            break;
        case 'm':
            if (strcmp(optarg, "raw") == 0)
                g->mode = MODE_RAW;
            else if (strcmp(optarg, "framed") == 0)
                g->mode = MODE_FRAMED;
            else
                usage(argv[0]);
            break;
        case 'P':
            g->server_pid = (int)arg_long("--server-pid", optarg, 1, INT_MAX);
            break;
        case 'M':
            g->malloc_file = optarg;
            break;
        case 'L':
            g->label = optarg;
            break;
        case 'q':
            g->quiet = true;
            break;
        default:
            usage(argv[0]);
        }
    }
    if (optind != argc || g->port == 0)
        usage(argv[0]);
    if (g->mode == MODE_RAW && g->size == 0) {
        fprintf(stderr, "loadgen: raw mode needs --size >= 1\n");
        exit(2);
    }
    if (g->duration <= 0) {
        fprintf(stderr, "loadgen: --duration must be > 0\n");
        exit(2);
    }
    g->req_bytes = g->size + (g->mode == MODE_FRAMED ? 4 : 0);
}

static void connect_all(struct lg *g)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g->port) };
    struct timeval tmo = { .tv_sec = 5 };

    if (inet_pton(AF_INET, g->host, &sin.sin_addr) != 1 ||
        (ntohl(sin.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: --host %s: only IPv4 loopback addresses (127.x.x.x)\n", g->host);
        exit(2);
    }
    for (int i = 0; i < g->conns; i++) {
        struct conn *c = &g->c[i];
        int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fprintf(stderr, "loadgen: socket (connection %d of %d): %s\n", i + 1, g->conns,
                    strerror(errno));
            exit(2);
        }
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo)); /* bounds connect() */
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
            fprintf(stderr, "loadgen: connect to %s:%d (connection %d of %d) failed: %s\n", g->host,
                    g->port, i + 1, g->conns, errno == EINPROGRESS ? "timed out" : strerror(errno));
            exit(2);
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        c->fd = fd;
        c->id = i;
        c->tx_limit = (uint64_t)g->depth;
        c->sent_ns = calloc((size_t)g->depth, sizeof(uint64_t));
        if (!c->sent_ns) {
            fprintf(stderr, "loadgen: out of memory\n");
            exit(2);
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            fprintf(stderr, "loadgen: epoll_ctl: %s\n", strerror(errno));
            exit(2);
        }
    }
    g->alive = g->conns;
}

static char *fmt_or_na(char *buf, size_t len, bool ok, double v, int prec)
{
    if (ok)
        snprintf(buf, len, "%.*f", prec, v);
    else
        snprintf(buf, len, "na");
    return buf;
}

int main(int argc, char **argv)
{
    struct lg g;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t t_begin, t_measure = 0, t_end, deadline;
    uint64_t srv0 = 0, srv1 = 0, cli0 = 0, cli1, mc0 = 0, mc1 = 0;
    struct cpu_sample cs0 = { 0 }, cs1 = { 0 };
    bool srv_ok = false, mc_ok = false, cpu_ok = false;
    int cpu = pinned_cpu();
    uint64_t x = 0x9e3779b97f4a7c15ull;

    parse(&g, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (g.malloc_file)
        g.mc = mc_open(g.malloc_file);
    g.pattern = malloc(g.size + PATTERN_SPAN);
    g.rbuf = malloc(RBUF_SIZE);
    g.c = calloc((size_t)g.conns, sizeof(struct conn));
    if (!g.pattern || !g.rbuf || !g.c) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 2;
    }
    for (size_t i = 0; i < g.size + PATTERN_SPAN; i++) { /* xorshift64 */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        g.pattern[i] = (uint8_t)(x >> 32);
    }
    g.hdr[0] = (uint8_t)(g.size >> 24);
    g.hdr[1] = (uint8_t)(g.size >> 16);
    g.hdr[2] = (uint8_t)(g.size >> 8);
    g.hdr[3] = (uint8_t)g.size;
    if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        perror("loadgen: epoll_create1");
        return 2;
    }
    connect_all(&g);
    if (!g.quiet)
        fprintf(stderr,
                "loadgen: %s:%d %s, %d conns x depth %d x %zu B, %.1f s measured after %.1f s "
                "warm-up\n",
                g.host, g.port, g.mode == MODE_RAW ? "raw" : "framed", g.conns, g.depth, g.size,
                g.duration, g.warmup);

    t_begin = now_ns();
    for (int i = 0; i < g.conns; i++)
        conn_flush(&g, &g.c[i]);
    deadline = t_begin + (uint64_t)(g.warmup * 1e9);
    for (;;) {
        uint64_t t = now_ns();
        if (t >= deadline) {
            if (g.measuring) {
                t_end = t;
                break;
            }
            /* warm-up over: start measuring from here */
            g.measuring = true;
            t_measure = t;
            deadline = t + (uint64_t)(g.duration * 1e9);
            if (g.server_pid)
                srv_ok = proc_cpu_ticks(g.server_pid, &srv0);
            if (g.mc) {
                mc0 = mc_allocs(g.mc);
                mc_ok = true;
            }
            if (cpu >= 0)
                cpu_ok = cpu_ticks(cpu, &cs0);
            cli0 = self_cpu_ns();
            continue;
        }
        if (g.alive == 0) {
            t_end = t;
            break;
        }
        int timeout = (int)((deadline - t + 999999) / 1000000);
        int n = epoll_wait(g.ep, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            return 2;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->dead)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(&g, c);
            if (!c->dead && (evs[i].events & EPOLLOUT))
                conn_flush(&g, c);
        }
    }
    if (g.measuring) {
        cli1 = self_cpu_ns();
        if (srv_ok)
            srv_ok = proc_cpu_ticks(g.server_pid, &srv1);
        if (mc_ok)
            mc1 = mc_allocs(g.mc);
        if (cpu_ok)
            cpu_ok = cpu_ticks(cpu, &cs1);
    } else {
        cli1 = cli0 = self_cpu_ns();
        t_measure = t_end;
    }
    for (int i = 0; i < g.conns; i++) {
        if (!g.c[i].dead)
            close(g.c[i].fd);
        free(g.c[i].sent_ns);
    }
    close(g.ep);

    double secs = (double)(t_end - t_measure) / 1e9;
    double rps = secs > 0 ? (double)g.requests / secs : 0;
    double mbs = rps * (double)g.size / 1e6;
    double p50 = hist_quantile(&g.hist, 0.50) / 1e3, p99 = hist_quantile(&g.hist, 0.99) / 1e3;
    double p999 = hist_quantile(&g.hist, 0.999) / 1e3, max = (double)g.hist.max / 1e3;
    double mean = g.hist.count ? (double)g.hist.sum / (double)g.hist.count / 1e3 : 0;
    double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
    double srv_us = (double)(srv1 - srv0) * tick_us;
    bool per_req = g.requests > 0;
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32];
    /* What else ran on our CPU: its busy time minus the server's and ours.
     * Ticks are sampled, so a few percent either way is noise. */
    double busy_us = (double)(cs1.busy - cs0.busy) * tick_us;
    double steal_pct = (double)(cs1.steal - cs0.steal) * tick_us / 1e4 / secs;
    double rest_pct =
        cs1.rest_n ? (double)(cs1.rest_busy - cs0.rest_busy) * tick_us / 1e4 / secs / cs1.rest_n
                   : 0;
    double others_us = busy_us - (double)(cli1 - cli0) / 1e3 - (srv_ok ? srv_us : 0);
    if (others_us < 0)
        others_us = 0;

    printf("result label=%s mode=%s conns=%d depth=%d size=%zu seconds=%.3f requests=%llu "
           "req_s=%.0f mb_s=%.2f p50_us=%.2f p99_us=%.2f p999_us=%.2f max_us=%.2f mean_us=%.2f "
           "errors=%llu failed_conns=%llu srv_cpu_us_req=%s srv_cpu_pct=%s cli_cpu_us_req=%s "
           "srv_allocs_req=%s cpu=%d others_pct=%s steal_pct=%s other_cpus_pct=%s\n",
           g.label, g.mode == MODE_RAW ? "raw" : "framed", g.conns, g.depth, g.size, secs,
           (unsigned long long)g.requests, rps, mbs, p50, p99, p999, max, mean,
           (unsigned long long)g.errors_total, (unsigned long long)g.failed,
           fmt_or_na(b1, sizeof(b1), srv_ok && per_req, srv_us / (double)g.requests, 3),
           fmt_or_na(b2, sizeof(b2), srv_ok && secs > 0, srv_us / 1e4 / secs, 1),
           fmt_or_na(b3, sizeof(b3), per_req, (double)(cli1 - cli0) / 1e3 / (double)g.requests, 3),
           fmt_or_na(b4, sizeof(b4), mc_ok && per_req, (double)(mc1 - mc0) / (double)g.requests, 4),
           cpu, fmt_or_na(b5, sizeof(b5), cpu_ok && srv_ok && secs > 0, others_us / 1e4 / secs, 1),
           fmt_or_na(b6, sizeof(b6), cpu_ok && secs > 0, steal_pct, 1),
           fmt_or_na(b7, sizeof(b7), cpu_ok && secs > 0, rest_pct, 1));
    fflush(stdout);
    if (!g.quiet) {
        fprintf(stderr,
                "  %llu requests in %.3f s: %.0f req/s, %.2f MB/s payload echoed (one "
                "direction)\n",
                (unsigned long long)g.requests, secs, rps, mbs);
        fprintf(stderr, "  latency us: p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f\n", p50,
                p99, p999, max, mean);
        fprintf(stderr,
                "  errors %llu (wrong responses, warm-up included), failed connections "
                "%llu\n",
                (unsigned long long)g.errors_total, (unsigned long long)g.failed);
        if (srv_ok && per_req)
            fprintf(stderr, "  server CPU %.3f us/request (%.1f %% of one CPU)\n",
                    srv_us / (double)g.requests, srv_us / 1e4 / secs);
        if (per_req)
            fprintf(stderr, "  client CPU %.3f us/request\n",
                    (double)(cli1 - cli0) / 1e3 / (double)g.requests);
        if (cpu_ok && srv_ok)
            fprintf(stderr,
                    "  cpu%d: %.1f %% taken by other processes, %.1f %% stolen by the host; "
                    "the other CPUs %.1f %% busy\n",
                    cpu, others_us / 1e4 / secs, steal_pct, rest_pct);
        if (mc_ok && per_req)
            fprintf(stderr, "  server allocations %.4f per request (%llu in the run)\n",
                    (double)(mc1 - mc0) / (double)g.requests, (unsigned long long)(mc1 - mc0));
    }
    if (g.requests == 0)
        fprintf(stderr, "loadgen: no response completed during the measurement\n");
    free(g.pattern);
    free(g.rbuf);
    free(g.c);
    return g.errors_total || g.failed || g.requests == 0 ? 1 : 0;
}
