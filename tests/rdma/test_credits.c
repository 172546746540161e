/* Credit flow control: a sender never has more messages in flight than the
 * receiver has buffers posted, so a slow reader makes the writer
 * unwritable instead of failing (RNR) or queueing without bound.
 *
 * The slow reader is a server child with auto-read off and 16 receive
 * buffers that asks for one read batch per 25 ms timer tick. The client writes 64 KiB buffers like
 * a well-behaved application: while the channel is writable, resuming on writability_changed. The
 * test checks the data (byte for byte, in order), that the client went unwritable, that its pending
 * bytes stayed under the high watermark plus one write, that no error happened, and that the
 * transport counted credit stalls and credit messages.
 *
 * The same with every write going by rendezvous (8 KiB writes, threshold
 * 4 KiB, 4 receives): an offer holds its receive until its data is
 * delivered, so credits hold back large writes as well, and the reader's
 * undelivered buffers stay bounded.
 *
 * Then the smallest receive settings (4 buffers of 256 B) still carry a
 * few MiB of mixed sizes correctly.
 *
 * rill-test-labels: guest
 */
#include "tests/rdma/rdma_test.h"

#include "rill/timer.h"

TestSuite(credits, .timeout = 300, .fini = rill_test_no_leaks);

#define CHUNK      ((size_t)64 << 10)
#define HIGH_WATER ((size_t)256 << 10)
#define LOW_WATER  ((size_t)128 << 10)
#define SEED       5

/* ---- the slow reader (server child, auto-read off) ---- */

struct reader {
    uint64_t tick_ns;
    _Atomic uint64_t received;
    _Atomic int64_t bad_at; /* stream offset of the first wrong byte, or -1 */
    _Atomic int batches, exceptions, last_error, inactive;
    _Atomic(struct rill_channel *) child; /* a reference, for the stats */
};

struct reader_state {
    struct rill_timer *timer;
    struct rill_channel *ch;
};

static void tick(struct rill_timer *t, void *arg)
{
    struct reader_state *st = arg;
    rill_channel_read(st->ch); /* one batch */
}

static void reader_active(struct rill_ctx *ctx)
{
    struct reader *r = rill_ctx_arg(ctx);
    struct reader_state *st = rill_ctx_state(ctx);
    st->ch = rill_ctx_channel(ctx);
    atomic_store(&r->child, rill_channel_retain(st->ch));
    int rc = rill_timer_schedule(rill_channel_loop(st->ch), r->tick_ns, r->tick_ns,
                                 RILL_TIMER_FIXED_RATE, tick, st, &st->timer);
    if (rc) { /* no assertions off the test thread: the test sees the error */
        atomic_store(&r->last_error, rc);
        atomic_fetch_add(&r->exceptions, 1);
    }
    rill_ctx_fire_active(ctx);
}

static void reader_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct reader *r = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (b) {
        size_t n = rill_buf_readable(b);
        uint64_t off = atomic_load(&r->received);
        uint8_t tmp[4096];
        for (size_t done = 0; done < n;) {
            size_t k = n - done < sizeof(tmp) ? n - done : sizeof(tmp);
            rill_buf_get_bytes(b, rill_buf_reader_index(b) + done, tmp, k);
            ssize_t bad = rt_check(tmp, k, off + done, SEED);
            if (bad >= 0 && atomic_load(&r->bad_at) < 0)
                atomic_store(&r->bad_at, (int64_t)(off + done + (size_t)bad));
            done += k;
        }
        atomic_store(&r->received, off + n);
    }
    rill_msg_release(msg);
}

static void reader_read_complete(struct rill_ctx *ctx)
{
    struct reader *r = rill_ctx_arg(ctx);
    atomic_fetch_add(&r->batches, 1);
    rill_ctx_fire_read_complete(ctx);
}

static void reader_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct reader *r = rill_ctx_arg(ctx);
    fprintf(stderr, "slow reader: exception %s (%s)\n", rill_strerror(err), why ? why : "");
    atomic_store(&r->last_error, err);
    atomic_fetch_add(&r->exceptions, 1);
}

static void reader_inactive(struct rill_ctx *ctx)
{
    struct reader *r = rill_ctx_arg(ctx);
    struct reader_state *st = rill_ctx_state(ctx);
    if (st->timer) {
        rill_timer_cancel(st->timer);
        rill_timer_release(st->timer);
        st->timer = NULL;
    }
    atomic_fetch_add(&r->inactive, 1);
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler reader_handler = {
    .name = "slow-reader",
    .ctx_size = sizeof(struct reader_state),
    .active = reader_active,
    .read = reader_read,
    .read_complete = reader_read_complete,
    .exception = reader_exception,
    .inactive = reader_inactive,
};

static int reader_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "reader", &reader_handler, arg);
}

/* ---- the well-behaved writer (client) ---- */

struct pump {
    uint64_t total;
    size_t chunk;
    uint64_t sent; /* loop thread only */
    struct rill_promise *last;
    _Atomic size_t max_pending;
    _Atomic int unwritable, writable, exceptions, last_error, pumps;
};

static void pump(struct rill_ctx *ctx)
{
    struct pump *p = rill_ctx_arg(ctx);
    struct rill_channel *ch = rill_ctx_channel(ctx);
    atomic_fetch_add(&p->pumps, 1);
    bool wrote = false;
    while (p->sent < p->total && rill_channel_is_writable(ch)) {
        size_t n = p->total - p->sent < p->chunk ? (size_t)(p->total - p->sent) : p->chunk;
        struct rill_buf *b = rt_pattern(n, p->sent, SEED);
        p->sent += n;
        rill_ctx_write(ctx, rill_buf_msg(b), p->sent == p->total ? p->last : NULL);
        wrote = true;
        size_t pend = rill_channel_pending_bytes(ch);
        if (pend > atomic_load(&p->max_pending))
            atomic_store(&p->max_pending, pend);
        /* Hand over a few at a time, not just at the watermark. */
        if (p->sent % (4 * p->chunk) == 0)
            rill_ctx_flush(ctx);
    }
    if (wrote)
        rill_ctx_flush(ctx);
    size_t pend = rill_channel_pending_bytes(ch);
    if (pend > atomic_load(&p->max_pending))
        atomic_store(&p->max_pending, pend);
}

static void pump_active(struct rill_ctx *ctx)
{
    rill_ctx_fire_active(ctx);
    pump(ctx);
}

static void pump_writability(struct rill_ctx *ctx, bool writable)
{
    struct pump *p = rill_ctx_arg(ctx);
    atomic_fetch_add(writable ? &p->writable : &p->unwritable, 1);
    rill_ctx_fire_writability_changed(ctx, writable);
    if (writable)
        pump(ctx);
}

static void pump_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct pump *p = rill_ctx_arg(ctx);
    fprintf(stderr, "writer: exception %s (%s)\n", rill_strerror(err), why ? why : "");
    atomic_store(&p->last_error, err);
    atomic_fetch_add(&p->exceptions, 1);
}

static void pump_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    rill_msg_release(msg);
}

static const struct rill_handler pump_handler = {
    .name = "pump",
    .active = pump_active,
    .read = pump_read,
    .writability_changed = pump_writability,
    .exception = pump_exception,
};

static int pump_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "pump", &pump_handler, arg);
}

/* A slow reader (@depth receives, one read batch per @tick_ms) against a
 * writer of @total bytes in @chunk byte writes; @rndv is the writer's
 * rendezvous threshold (0: the default). */
static void slow_reader(uint32_t depth, uint64_t tick_ms, size_t chunk, size_t rndv, uint64_t total)
{
    const char *ip = rt_ip();
    uint64_t t0 = rill_clock_now_ns();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct reader r = { .tick_ns = tick_ms * RILL_NS_PER_MS };
    atomic_store(&r.bad_at, -1);
    struct rill_channel_opts child;
    rill_channel_opts_init(&child);
    rill_channel_opts_set(&child, RILL_OPT_AUTO_READ, 0);
    rill_channel_opts_set(&child, RILL_OPT_RDMA_RECV_DEPTH, depth);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server_opts(boss, workers, uri, reader_init, &r, &child);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));

    struct pump p = { .total = total, .chunk = chunk, .last = tx_promise(NULL) };
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = workers;
    co.init = pump_init;
    co.arg = &p;
    rill_channel_opts_set(&co.opts, RILL_OPT_WRITE_HIGH_WATER, (int64_t)HIGH_WATER);
    rill_channel_opts_set(&co.opts, RILL_OPT_WRITE_LOW_WATER, (int64_t)LOW_WATER);
    if (rndv)
        rill_channel_opts_set(&co.opts, RILL_OPT_RDMA_RNDV, (int64_t)rndv);
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    cr_assert_not_null(ch, "connect %s: %s", uri, rill_strerror(err));
    cr_assert(rill_channel_is_rdma(ch));

    /* Bounded: at the emulator's pace, with progress checks. */
    uint64_t dl = rill_test_deadline_ms(180000), last_progress = rill_clock_now_ns();
    uint64_t seen = 0;
    while (atomic_load(&r.received) < p.total && rill_test_before(dl)) {
        usleep(10000);
        uint64_t now = atomic_load(&r.received);
        if (now != seen) {
            seen = now;
            last_progress = rill_clock_now_ns();
        }
        cr_assert_lt(rill_clock_now_ns() - last_progress, 30 * RILL_NS_PER_S,
                     "no progress for 30 s at %llu of %llu B (client active %d, server inactive "
                     "%d, server error %s)",
                     (unsigned long long)now, (unsigned long long)p.total,
                     rill_channel_is_active(ch), atomic_load(&r.inactive),
                     rill_strerror(atomic_load(&r.last_error)));
    }
    cr_assert_eq(atomic_load(&r.received), p.total, "%llu of %llu B arrived",
                 (unsigned long long)atomic_load(&r.received), (unsigned long long)p.total);
    cr_assert_eq(atomic_load(&r.bad_at), -1, "the stream differs at byte %lld",
                 (long long)atomic_load(&r.bad_at));
    int rc = tx_wait_release(p.last);
    cr_assert_eq(rc, 0, "the last write: %s", rill_strerror(rc));
    double secs = (double)(rill_clock_now_ns() - t0) / 1e9;

    /* No error, no close: credits held the writer back. */
    cr_assert(rill_channel_is_active(ch), "the client channel is still open");
    cr_assert_eq(atomic_load(&p.exceptions), 0, "client error %s",
                 rill_strerror(atomic_load(&p.last_error)));
    cr_assert_eq(atomic_load(&r.exceptions), 0, "server error %s",
                 rill_strerror(atomic_load(&r.last_error)));
    cr_assert_eq(atomic_load(&r.inactive), 0, "the server child is still open");
    cr_assert_gt(atomic_load(&p.unwritable), 0, "the writer became unwritable");
    cr_assert_gt(atomic_load(&p.writable), 0, "and writable again");
    size_t maxp = atomic_load(&p.max_pending);
    cr_assert_leq(maxp, HIGH_WATER + chunk,
                  "pending bytes reached %zu (high watermark %zu + one %zu B write)", maxp,
                  HIGH_WATER, chunk);

    struct rill_rdma_stats cs, ss, sum = { 0 };
    rt_stats(ch, &cs);
    struct rill_channel *child_ch = atomic_load(&r.child);
    cr_assert_not_null(child_ch);
    rt_stats(child_ch, &ss);
    rt_stats_print("writer", &cs);
    rt_stats_print("slow reader", &ss);
    fprintf(stderr,
            "credits: %llu B in %zu B writes in %.1f s, %d read batches, %d unwritable events, "
            "max pending %zu B\n",
            (unsigned long long)total, chunk, secs, atomic_load(&r.batches),
            atomic_load(&p.unwritable), maxp);
    rt_stats_add(&sum, &cs);
    rt_stats_add(&sum, &ss);
    cr_assert_gt(cs.credit_stalls, 0, "the writer ran out of credits");
    if (rndv && chunk >= rndv) {
        cr_assert_eq(cs.rndv_sent, (total + chunk - 1) / chunk, "every write went by rendezvous");
        cr_assert_eq(ss.rndv_read, cs.rndv_sent);
        cr_assert_gt(ss.rndv_queued, 0, "offers came while another was being read (pipelined)");
    } else {
        cr_assert_gt(sum.credit_msgs, 0, "credits went back in explicit credit messages");
        cr_assert_geq(ss.recvs, (p.total + (16u << 10) - 1) / (16u << 10) / 2);
    }

    tx_close(ch);
    cr_assert(TX_EVENTUALLY(atomic_load(&r.inactive) == 1), "the child saw the close");
    rill_channel_release(child_ch);
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    rt_no_regions();
}

Test(credits, slow_reader_makes_the_writer_unwritable)
{
    /* At most 16 receive buffers (256 KiB) per 25 ms tick: about 10 MB/s,
     * slower than the device even in the emulated guest, so the writer
     * must wait for credits every tick. */
    slow_reader(16, 25, CHUNK, 0, (uint64_t)32 << 20);
}

Test(credits, slow_reader_holds_back_rendezvous_writes)
{
    /* Every 8 KiB write by rendezvous (threshold 4 KiB), 4 receives, one
     * batch per 100 ms: an offer holds its receive until its data is
     * delivered, so the writer waits for credits here too, and the reader
     * never holds more than 4 undelivered buffers. */
    slow_reader(4, 100, 8192, 4096, (uint64_t)2 << 20);
}

/* ---- 4 receive buffers of 256 B ---- */

Test(credits, tiny_receive_depth_and_size_carry_mebibytes)
{
    const char *ip = rt_ip();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_RDMA_RECV_DEPTH, 4);
    rill_channel_opts_set(&o, RILL_OPT_RDMA_RECV_SIZE, 256);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server_opts(boss, workers, uri, tx_echo_init, NULL, &o);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));

    const size_t total_max = (size_t)3 << 20;
    struct tx_collector *c = tx_collector_new(total_max);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = workers;
    co.init = tx_collector_init;
    co.arg = c;
    co.opts = o;
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    cr_assert_not_null(ch, "connect %s: %s", uri, rill_strerror(err));
    int64_t v = 0;
    cr_assert_eq(rill_channel_get_option(ch, RILL_OPT_RDMA_RECV_DEPTH, &v), 0);
    cr_assert_eq(v, 4);
    cr_assert_lt(rill_channel_set_option(ch, RILL_OPT_RDMA_RECV_DEPTH, 8), 0,
                 "fixed once the queue pair exists");
    cr_assert_eq(rill_channel_get_option(ch, RILL_OPT_RDMA_RECV_DEPTH, &v), 0);
    cr_assert_eq(v, 4);

    /* Mixed sizes: inline, one receive, many receives, rendezvous. */
    const size_t sizes[] = { 1, 255, 256, 257, 1000, 4096, 65536, 100000, 300000, 700000 };
    size_t total = 0;
    uint64_t t0 = rill_clock_now_ns();
    struct rill_promise *last = NULL;
    for (int round = 0; round < 3 && total < total_max; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            size_t n = sizes[i];
            if (total + n > total_max)
                break;
            if (last)
                rill_promise_release(last);
            last = tx_promise(NULL);
            rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(n, total, SEED)), last);
            total += n;
        }
    }
    cr_assert_geq(total, (size_t)2 << 20);
    uint64_t dl = rill_test_deadline_ms(120000);
    while (atomic_load(&c->got) < total && rill_test_before(dl) && rill_channel_is_active(ch))
        usleep(5000);
    cr_assert_eq(atomic_load(&c->got), total, "%zu of %zu B came back (channel %s, error %s)",
                 atomic_load(&c->got), total, rill_channel_is_active(ch) ? "open" : "closed",
                 rill_strerror(atomic_load(&c->last_error)));
    cr_assert_eq(tx_wait_release(last), 0);
    pthread_mutex_lock(&c->lock);
    ssize_t bad = rt_check(c->data, total, 0, SEED);
    pthread_mutex_unlock(&c->lock);
    cr_assert_eq(bad, -1, "the echo differs at byte %zd", bad);
    cr_assert_eq(atomic_load(&c->exceptions), 0);
    struct rill_rdma_stats s;
    rt_stats(ch, &s);
    rt_stats_print("tiny receives, client", &s);
    fprintf(stderr, "tiny receives: %zu B echoed in %.1f s\n", total,
            (double)(rill_clock_now_ns() - t0) / 1e9);
    cr_assert_gt(s.recvs, 1000, "256 B receives: many of them");

    tx_close(ch);
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    tx_collector_free(c);
    rt_no_regions();
}
