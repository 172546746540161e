/* rdma_bench: rill over rdma:// measured the way perftest measures the
 * device (bench/rdma/run.sh runs both in one Soft-RoCE guest and prints
 * the ratios; README.md beside this file).
 *
 *   rdma_bench server [--uri U] [--busy-poll off|on|adaptive]
 *   rdma_bench client [--uri U] --test pingpong|stream|read --size BYTES
 *                     [--iters N] [--warmup N] [--busy-poll off|on|adaptive]
 *                     [--high-water BYTES] [--no-sort]
 *
 * Tests (the client says which in a 16-byte header; the server answers
 * "go" or a descriptor, then):
 *   pingpong  the client sends SIZE bytes, the server echoes them (raw echo,
 *             flushed at read_complete), the client sends the next once all
 *             are back. Reported: one-way latency = round trip / 2, as
 *             ib_send_lat reports it (p50, avg, p99).
 *   stream    the client writes ITERS buffers of SIZE bytes (slices of one
 *             pooled buffer: zero-copy, large ones by rendezvous) as fast as
 *             writability allows; the server counts and answers once it has
 *             them all. Reported: MiB/s (perftest's MB) from the first write to
 *             the answer, as ib_send_bw's "BW average".
 *   read      the server exposes SIZE bytes (rill_rdma_expose REMOTE_READ),
 *             the client rill_rdma_reads them, one outstanding, issuing the
 *             next from the previous one's completion on the loop. Reported:
 *             latency of one READ (not halved), as ib_read_lat reports it.
 *
 * The server runs its loop on the main thread and serves connections until
 * SIGINT/SIGTERM; "ready port=<p> pid=<pid>" once it accepts. The client
 * prints one "result ..." line of key=value pairs. Both may run under
 * callgrind (run.sh derives instructions per round trip from two runs of
 * different lengths). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rdma.h"

#define HDR_SIZE  16
#define DESC_MSG  (1 + RILL_RDMA_DESC_SIZE)
#define MAX_SIZE  (64u * 1024 * 1024)
#define TIMEOUT_S 300

enum { T_PING = 'P', T_STREAM = 'S', T_READ = 'R' };

static enum rill_busy_poll parse_poll(const char *s)
{
    if (strcmp(s, "on") == 0)
        return RILL_BUSY_POLL_ON;
    if (strcmp(s, "adaptive") == 0)
        return RILL_BUSY_POLL_ADAPTIVE;
    return RILL_BUSY_POLL_OFF;
}

static const char *poll_name(enum rill_busy_poll p)
{
    return p == RILL_BUSY_POLL_ON ? "busy" : p == RILL_BUSY_POLL_ADAPTIVE ? "adaptive" : "event";
}

static void send_bytes(struct rill_ctx *ctx, const void *p, size_t n)
{
    struct rill_buf *b;
    if (rill_buf_copy_from(p, n, &b) != 0) {
        rill_ctx_close(ctx, NULL);
        return;
    }
    rill_ctx_write_and_flush(ctx, rill_buf_msg(b), NULL);
}

/* ================================ server ================================ */

struct srv_conn {
    uint8_t hdr[HDR_SIZE];
    size_t got;
    int test;
    uint32_t size;
    uint64_t total, received;
    void *mem;
    struct rill_rdma_region *region;
};

static void srv_start(struct rill_ctx *ctx, struct srv_conn *c)
{
    c->test = c->hdr[0];
    c->size = (uint32_t)c->hdr[4] << 24 | (uint32_t)c->hdr[5] << 16 | (uint32_t)c->hdr[6] << 8 |
              c->hdr[7];
    c->total = 0;
    for (int i = 8; i < 16; i++)
        c->total = c->total << 8 | c->hdr[i];
    if (c->test == T_READ) {
        uint8_t msg[DESC_MSG] = { 'D' };
        struct rill_rdma_desc d;
        int err = -ENOMEM;
        if (c->size > 0 && c->size <= MAX_SIZE &&
            (c->mem = aligned_alloc(4096, (c->size + 4095) & ~4095u)) != NULL) {
            memset(c->mem, 'r', c->size);
            err = rill_rdma_expose(rill_ctx_channel(ctx), c->mem, c->size, RILL_RDMA_REMOTE_READ,
                                   &c->region);
        }
        if (err) {
            fprintf(stderr, "rdma_bench server: expose: %s\n", rill_strerror(err));
            rill_channel_close_with(rill_ctx_channel(ctx), err, NULL);
            return;
        }
        rill_rdma_region_desc(c->region, &d);
        rill_rdma_desc_encode(&d, msg + 1);
        send_bytes(ctx, msg, sizeof(msg));
    } else if (c->test == T_PING || c->test == T_STREAM) {
        send_bytes(ctx, "G", 1);
    } else {
        rill_channel_close_with(rill_ctx_channel(ctx), RILL_EPROTO, NULL);
    }
}

static void srv_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct srv_conn *c = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (!b) {
        rill_msg_release(msg);
        return;
    }
    if (c->got < HDR_SIZE) {
        size_t n =
            rill_buf_readable(b) < HDR_SIZE - c->got ? rill_buf_readable(b) : HDR_SIZE - c->got;
        rill_buf_read_bytes(b, c->hdr + c->got, n);
        c->got += n;
        if (c->got == HDR_SIZE)
            srv_start(ctx, c);
        if (rill_buf_readable(b) == 0) {
            rill_buf_release(b);
            return;
        }
    }
    if (c->test == T_PING) {
        rill_ctx_write(ctx, msg, NULL); /* echo; flushed at read_complete */
        return;
    }
    c->received += rill_buf_readable(b);
    rill_buf_release(b);
    if (c->test == T_STREAM && c->received >= c->total && c->total) {
        c->total = 0;
        send_bytes(ctx, "A", 1);
    }
}

static void srv_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx);
}

static void srv_cleanup(struct srv_conn *c)
{
    if (c->region)
        rill_rdma_revoke(c->region);
    c->region = NULL;
    free(c->mem);
    c->mem = NULL;
}

static void srv_inactive(struct rill_ctx *ctx)
{
    srv_cleanup(rill_ctx_state(ctx));
    rill_ctx_fire_inactive(ctx);
}

static void srv_removed(struct rill_ctx *ctx)
{
    srv_cleanup(rill_ctx_state(ctx));
}

static const struct rill_handler srv_handler = {
    .name = "bench-server",
    .ctx_size = sizeof(struct srv_conn),
    .removed = srv_removed,
    .read = srv_read,
    .read_complete = srv_read_complete,
    .inactive = srv_inactive,
};

static int srv_child_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "bench", &srv_handler, NULL);
}

struct srv_app {
    struct rill_loop *loop;
    struct rill_server *srv;
    int sfd;
    struct rill_io sig_io;
};

static void srv_closed(struct rill_promise *p, void *arg)
{
    struct srv_app *a = arg;
    if (rill_io_active(&a->sig_io))
        rill_io_stop(&a->sig_io);
    rill_loop_shutdown(a->loop, 0, 0);
}

static void srv_signal(struct rill_io *io, uint32_t events)
{
    struct srv_app *a = io->data;
    struct signalfd_siginfo si;
    if (read(a->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        rill_promise_add_listener(rill_server_close(a->srv, true), srv_closed, a);
}

static void srv_watch(void *arg)
{
    struct srv_app *a = arg;
    rill_io_init(&a->sig_io, a->sfd, srv_signal, a);
    rill_io_start(a->loop, &a->sig_io, EPOLLIN);
}

static void srv_bound(struct rill_promise *p, void *arg)
{
    struct srv_app *a = arg;
    int err = rill_promise_result(p, NULL);
    if (err) {
        fprintf(stderr, "rdma_bench server: %s\n", rill_strerror(err));
        srv_closed(p, a);
        return;
    }
    printf("ready port=%d pid=%d\n", rill_addr_port(rill_server_local_addr(a->srv)), (int)getpid());
    fflush(stdout);
}

static int run_server(const char *uri, enum rill_busy_poll poll)
{
    struct srv_app a = { .sfd = -1 };
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    a.sfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    struct rill_loop_opts lo;
    rill_loop_opts_init(&lo);
    lo.name = "bench-server";
    lo.busy_poll = poll;
    int err = a.sfd < 0 ? -errno : rill_loop_new(&lo, &a.loop);
    if (err) {
        fprintf(stderr, "rdma_bench server: %s\n", rill_strerror(err));
        return 1;
    }
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss_loop = a.loop;
    so.child_init = srv_child_init;
    if ((err = rill_server_bind(&so, uri, &a.srv)) != 0) {
        fprintf(stderr, "rdma_bench server: %s: %s\n", uri, rill_strerror(err));
        return 1;
    }
    rill_promise_add_listener(rill_server_bound(a.srv), srv_bound, &a);
    rill_loop_execute(a.loop, srv_watch, &a);
    rill_loop_run(a.loop);
    rill_server_free(a.srv);
    rill_loop_free(a.loop);
    close(a.sfd);
    return 0;
}

/* ================================ client ================================ */

struct cli {
    int test;
    size_t size;
    int iters, warmup;
    struct rill_ctx *ctx; /* borrowed while the channel is open */
    uint8_t ctl[DESC_MSG];
    size_t ctl_got, ctl_want;
    bool running;
    /* pingpong and read */
    int done; /* operations completed, warmup included */
    size_t echoed;
    uint64_t t0;
    uint64_t *lat; /* ns per measured operation */
    /* stream */
    struct rill_buf *src;
    int sent;
    uint64_t t_start, t_end;
    /* read */
    struct rill_rdma_desc desc;
    struct rill_buf *local;
    int err;
    struct rill_promise *finished;
    bool have_stats;
    struct rill_rdma_stats stats; /* taken on the loop when the test ends */
};

static void cli_finish(struct cli *c, int err)
{
    if (err && !c->err)
        c->err = err;
    if (c->ctx && !c->have_stats) {
        rill_rdma_channel_stats(rill_ctx_channel(c->ctx), &c->stats);
        c->have_stats = true;
    }
    rill_promise_succeed(c->finished, NULL, NULL);
}

static void ping_send(struct rill_ctx *ctx, struct cli *c)
{
    struct rill_buf *b;
    size_t room;
    if (rill_buf_alloc(c->size, &b) != 0) {
        cli_finish(c, -ENOMEM);
        return;
    }
    memset(rill_buf_write_ptr(b, c->size, &room), 'p', c->size);
    rill_buf_advance_writer(b, c->size);
    c->echoed = 0;
    c->t0 = rill_clock_now_ns();
    rill_ctx_write_and_flush(ctx, rill_buf_msg(b), NULL);
}

static void stream_pump(struct rill_ctx *ctx, struct cli *c)
{
    while (c->sent < c->iters && rill_channel_is_writable(rill_ctx_channel(ctx))) {
        struct rill_buf *s;
        if (rill_buf_slice(c->src, 0, c->size, &s) != 0) {
            cli_finish(c, -ENOMEM);
            return;
        }
        c->sent++;
        rill_ctx_write_and_flush(ctx, rill_buf_msg(s), NULL);
    }
}

static void read_next(struct cli *c);

static void read_done(struct rill_promise *p, void *arg)
{
    struct cli *c = arg;
    int err = rill_promise_result(p, NULL);
    uint64_t now = rill_clock_now_ns();
    rill_promise_release(p); /* the transport holds its own until it returns */
    if (err) {
        cli_finish(c, err);
        return;
    }
    if (c->done >= c->warmup)
        c->lat[c->done - c->warmup] = now - c->t0;
    if (++c->done == c->warmup + c->iters) {
        cli_finish(c, 0);
        return;
    }
    read_next(c);
}

static void read_next(struct cli *c)
{
    struct rill_promise *p;
    size_t room;
    if (rill_promise_new(NULL, &p) != 0 || rill_promise_add_listener(p, read_done, c) != 0) {
        cli_finish(c, -ENOMEM);
        return;
    }
    c->t0 = rill_clock_now_ns();
    rill_rdma_read(rill_ctx_channel(c->ctx), &c->desc, 0,
                   rill_buf_write_ptr(c->local, c->size, &room), c->size, p);
}

static void cli_active(struct rill_ctx *ctx)
{
    struct cli *c = rill_ctx_arg(ctx);
    uint8_t h[HDR_SIZE] = { (uint8_t)c->test };
    uint64_t total = (uint64_t)c->size * (uint64_t)c->iters;
    c->ctx = ctx;
    for (int i = 0; i < 4; i++)
        h[4 + i] = (uint8_t)(c->size >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        h[8 + i] = (uint8_t)(total >> (56 - 8 * i));
    c->ctl_want = c->test == T_READ ? DESC_MSG : 1;
    send_bytes(ctx, h, sizeof(h));
    rill_ctx_fire_active(ctx);
}

static void cli_go(struct rill_ctx *ctx, struct cli *c)
{
    c->running = true;
    if (c->test == T_PING) {
        ping_send(ctx, c);
    } else if (c->test == T_STREAM) {
        c->t_start = rill_clock_now_ns();
        stream_pump(ctx, c);
    } else {
        if (c->ctl[0] != 'D' || rill_rdma_desc_decode(c->ctl + 1, RILL_RDMA_DESC_SIZE, &c->desc)) {
            cli_finish(c, RILL_EPROTO);
            return;
        }
        if (rill_buf_alloc(c->size, &c->local) != 0) {
            cli_finish(c, -ENOMEM);
            return;
        }
        read_next(c);
    }
}

static void cli_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct cli *c = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    size_t n = b ? rill_buf_readable(b) : 0;
    if (!c->running) {
        size_t k = n < c->ctl_want - c->ctl_got ? n : c->ctl_want - c->ctl_got;
        if (k)
            rill_buf_read_bytes(b, c->ctl + c->ctl_got, k);
        c->ctl_got += k;
        n -= k;
        if (c->ctl_got == c->ctl_want)
            cli_go(ctx, c);
    }
    rill_msg_release(msg);
    if (n == 0 || !c->running)
        return;
    if (c->test == T_PING) {
        c->echoed += n;
        if (c->echoed < c->size)
            return;
        uint64_t now = rill_clock_now_ns();
        if (c->done >= c->warmup)
            c->lat[c->done - c->warmup] = (now - c->t0) / 2;
        if (++c->done == c->warmup + c->iters)
            cli_finish(c, 0);
        else
            ping_send(ctx, c);
    } else if (c->test == T_STREAM) {
        c->t_end = rill_clock_now_ns(); /* the server's answer: it has every byte */
        cli_finish(c, c->sent == c->iters ? 0 : RILL_EPROTO);
    }
}

static void cli_writability(struct rill_ctx *ctx, bool writable)
{
    struct cli *c = rill_ctx_arg(ctx);
    if (writable && c->running && c->test == T_STREAM)
        stream_pump(ctx, c);
    rill_ctx_fire_writability_changed(ctx, writable);
}

static void cli_inactive(struct rill_ctx *ctx)
{
    struct cli *c = rill_ctx_arg(ctx);
    c->ctx = NULL;
    cli_finish(c, RILL_ECLOSED); /* no-op once finished */
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler cli_handler = {
    .name = "bench-client",
    .active = cli_active,
    .read = cli_read,
    .writability_changed = cli_writability,
    .inactive = cli_inactive,
};

static int cli_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "bench", &cli_handler, arg);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_client(const char *uri, struct cli *c, enum rill_busy_poll poll, size_t high_water,
                      bool no_sort)
{
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "bench-client";
    go.busy_poll = poll;
    struct rill_loop_group *g;
    int err = rill_loop_group_new(&go, &g);
    if (err || (err = rill_promise_new(NULL, &c->finished)) != 0) {
        fprintf(stderr, "rdma_bench client: %s\n", rill_strerror(err));
        return 1;
    }
    c->lat = calloc((size_t)c->iters, sizeof(*c->lat));
    if (c->test == T_STREAM) {
        size_t room;
        if (rill_buf_alloc(c->size, &c->src) != 0)
            return 1;
        memset(rill_buf_write_ptr(c->src, c->size, &room), 's', c->size);
        rill_buf_advance_writer(c->src, c->size);
    }
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = cli_init;
    co.arg = c;
    rill_channel_opts_set(&co.opts, RILL_OPT_CONNECT_TIMEOUT_MS, 10000);
    rill_channel_opts_set(&co.opts, RILL_OPT_WRITE_HIGH_WATER, (int64_t)high_water);
    rill_channel_opts_set(&co.opts, RILL_OPT_WRITE_LOW_WATER, (int64_t)high_water / 2);
    struct rill_promise *connected = NULL;
    struct rill_channel *ch = NULL;
    err = rill_client_connect(&co, uri, &connected);
    if (!err)
        err = rill_promise_wait(connected, 30 * (int64_t)RILL_NS_PER_S);
    if (!err) {
        ch = rill_client_channel(connected);
        err = rill_promise_wait(c->finished, TIMEOUT_S * (int64_t)RILL_NS_PER_S);
        if (!err)
            err = c->err;
    }
    if (err) {
        fprintf(stderr, "rdma_bench client: %s %s: %s (after %d operations)\n", uri,
                c->test == T_PING     ? "pingpong"
                : c->test == T_STREAM ? "stream"
                                      : "read",
                rill_strerror(err), c->done);
    } else if (c->test == T_STREAM) {
        double s = (double)(c->t_end - c->t_start) / 1e9;
        double bytes = (double)c->size * c->iters;
        printf("result test=stream size=%zu mode=%s iters=%d secs=%.4f MiBps=%.2f Gbps=%.3f\n",
               c->size, poll_name(poll), c->iters, s, bytes / s / 1048576.0, bytes * 8 / s / 1e9);
    } else {
        uint64_t sum = 0;
        int n = c->iters;
        /* Under callgrind (--no-sort) the sort would add its own cost per
         * operation to the count; the percentiles are wrong then. */
        if (!no_sort)
            qsort(c->lat, (size_t)n, sizeof(*c->lat), cmp_u64);
        for (int i = 0; i < n; i++)
            sum += c->lat[i];
        printf("result test=%s size=%zu mode=%s iters=%d min_us=%.2f p50_us=%.2f avg_us=%.2f "
               "p99_us=%.2f max_us=%.2f\n",
               c->test == T_PING ? "pingpong" : "read", c->size, poll_name(poll), n,
               c->lat[0] / 1e3, c->lat[n / 2] / 1e3, (double)sum / n / 1e3,
               c->lat[(size_t)n * 99 / 100] / 1e3, c->lat[n - 1] / 1e3);
    }
    if (c->have_stats && getenv("RDMA_BENCH_STATS")) {
        const struct rill_rdma_stats *st = &c->stats;
        fprintf(stderr,
                "stats sends=%" PRIu64 " zero_copy=%" PRIu64 " inline=%" PRIu64 " copied=%" PRIu64
                " recvs=%" PRIu64 " credit_msgs=%" PRIu64 " rndv_sent=%" PRIu64
                " credit_stalls=%" PRIu64 " reads=%" PRIu64 "\n",
                st->sends, st->sends_zero_copy, st->sends_inline, st->bytes_copied, st->recvs,
                st->credit_msgs, st->rndv_sent, st->credit_stalls, st->reads);
    }
    if (ch) {
        struct rill_promise *closed;
        if (rill_promise_new(NULL, &closed) == 0) {
            rill_channel_close(ch, closed);
            rill_promise_wait(closed, 10 * (int64_t)RILL_NS_PER_S);
            rill_promise_release(closed);
        }
        rill_channel_release(ch);
    }
    if (connected)
        rill_promise_release(connected);
    rill_promise_wait(rill_loop_group_shutdown(g, 0, RILL_NS_PER_S), -1);
    rill_loop_group_free(g);
    if (c->src)
        rill_buf_release(c->src);
    if (c->local)
        rill_buf_release(c->local);
    rill_promise_release(c->finished);
    free(c->lat);
    return err ? 1 : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: rdma_bench server [--uri U] [--busy-poll off|on|adaptive]\n"
                    "       rdma_bench client [--uri U] --test pingpong|stream|read --size BYTES\n"
                    "                         [--iters N] [--warmup N] [--busy-poll MODE]\n"
                    "                         [--high-water BYTES] [--no-sort]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *uri = "rdma://192.0.2.1:7471";
    enum rill_busy_poll poll = RILL_BUSY_POLL_OFF;
    struct cli c = { .iters = 1000, .warmup = 100, .size = 64 };
    size_t high_water = 4u * 1024 * 1024;
    bool no_sort = false;
    for (int i = 2; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(k, "--no-sort") == 0) {
            no_sort = true;
            i--;
            continue;
        }
        if (!v)
            usage();
        if (strcmp(k, "--uri") == 0)
            uri = v;
        else if (strcmp(k, "--busy-poll") == 0)
            poll = parse_poll(v);
        else if (strcmp(k, "--test") == 0)
            c.test = strcmp(v, "pingpong") == 0 ? T_PING
                     : strcmp(v, "stream") == 0 ? T_STREAM
                     : strcmp(v, "read") == 0   ? T_READ
                                                : 0;
        else if (strcmp(k, "--size") == 0)
            c.size = (size_t)atol(v);
        else if (strcmp(k, "--iters") == 0)
            c.iters = atoi(v);
        else if (strcmp(k, "--warmup") == 0)
            c.warmup = atoi(v);
        else if (strcmp(k, "--high-water") == 0)
            high_water = (size_t)atol(v);
        else
            usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "server") == 0)
        return run_server(uri, poll);
    if (strcmp(argv[1], "client") != 0 || !c.test || c.size < 1 || c.size > MAX_SIZE ||
        c.iters < 1 || c.warmup < 0 || high_water < 1)
        usage();
    if (c.test == T_STREAM)
        c.warmup = 0;
    return run_client(uri, &c, poll, high_water, no_sort);
}
