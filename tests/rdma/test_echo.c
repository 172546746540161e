/* Echo over rdma:// with the handlers a TCP server uses, unchanged: a raw
 * echo (write back what arrives) and a framed echo (4-byte length field
 * decoder and prepender, framing.h). The identical body runs over
 * tcp://127.0.0.1 and rdma://$RXE_VM_IP and the two runs must agree byte for
 * byte.
 *
 * Message sizes: every size from 1 to 64 bytes, then each power of two from
 * 128 B to 8 MiB and the sizes one below and one above it. That crosses the
 * 16 KiB receive buffer (a message spans several receives), the 64 B
 * inline limit and the 256 KiB rendezvous threshold (the peer RDMA-READs
 * the buffer). Buffers come in three kinds in turn: pooled (registered,
 * zero-copy), wrapped malloc memory (copied into registered memory) and
 * composites of three pieces. Then a burst of 100 messages written without
 * waiting checks that the stream stays in order.
 *
 * rill-test-labels: guest
 */
#include "tests/rdma/rdma_test.h"

#include "rill/composite.h"
#include "rill/framing.h"

TestSuite(echo, .timeout = 240, .fini = rill_test_no_leaks);

#define MAX_MSG   ((size_t)8 << 20)
#define MAX_SIZES 128
#define BURST     100

/* Every size to send: 1..64, then 2^k - 1, 2^k, 2^k + 1 for 2^k in 128 .. 8 MiB. */
static size_t sizes(size_t *out)
{
    size_t n = 0;
    for (size_t s = 1; s <= 64; s++)
        out[n++] = s;
    for (size_t p = 128; p <= MAX_MSG; p <<= 1) {
        out[n++] = p - 1;
        out[n++] = p;
        if (p + 1 <= MAX_MSG + 1)
            out[n++] = p + 1;
    }
    cr_assert_leq(n, MAX_SIZES);
    return n;
}

/* A digest of what arrived, eight bytes at a time (per-byte work is slow
 * in the emulated guest). */
static uint64_t digest(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 1099511628211ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ---- server side: what the children saw ---- */

struct side {
    _Atomic int children, rdma_children, tcp_children;
};

static void note_child(struct side *s, struct rill_channel *ch)
{
    if (rill_channel_is_rdma(ch) && strcmp(rill_channel_transport(ch), "rdma") == 0)
        atomic_fetch_add(&s->rdma_children, 1);
    if (!rill_channel_is_rdma(ch) && strcmp(rill_channel_transport(ch), "tcp") == 0)
        atomic_fetch_add(&s->tcp_children, 1);
    atomic_fetch_add(&s->children, 1); /* last: the test waits on it */
}

static const struct rill_length_field_config framer = {
    .length_field_size = 4,
    .initial_bytes_to_strip = 4,
    .max_frame_length = MAX_MSG + 1 + 4,
};

static int add_framing(struct rill_pipeline *pl)
{
    int rc = rill_pipeline_add_last(pl, "framer", &rill_length_field_decoder, (void *)&framer);
    if (rc == 0)
        rc = rill_pipeline_add_last(pl, "prepender", &rill_length_field_prepender, NULL);
    return rc;
}

static int raw_child_init(struct rill_channel *ch, void *arg)
{
    note_child(arg, ch);
    return tx_echo_init(ch, NULL);
}

static int framed_child_init(struct rill_channel *ch, void *arg)
{
    note_child(arg, ch);
    int rc = add_framing(rill_channel_pipeline(ch));
    return rc ? rc : tx_echo_init(ch, NULL);
}

static int framed_client_init(struct rill_channel *ch, void *arg)
{
    int rc = add_framing(rill_channel_pipeline(ch));
    return rc ? rc : tx_collector_init(ch, arg);
}

/* ---- messages ---- */

static void free_malloced(void *mem, void *arg)
{
    (void)arg;
    free(mem);
}

/* A message of @n pattern bytes (offset @off, @seed) of kind @kind:
 * 0 pooled, 1 wrapped malloc memory, 2 a composite of three pieces. */
static struct rill_buf *message(size_t n, uint64_t off, unsigned seed, int kind)
{
    if (kind == 1) {
        uint8_t *mem = malloc(n);
        cr_assert_not_null(mem);
        rt_fill(mem, n, off, seed);
        struct rill_buf *b;
        cr_assert_eq(rill_buf_wrap(mem, n, n, free_malloced, NULL, &b), 0);
        return b;
    }
    if (kind == 2 && n >= 3) {
        struct rill_buf *c;
        cr_assert_eq(rill_buf_composite_new(&c), 0);
        size_t a = n / 3, b = n / 2;
        cr_assert_eq(rill_buf_composite_add(c, rt_pattern(a, off, seed)), 0);
        cr_assert_eq(rill_buf_composite_add(c, rt_pattern(b - a, off + a, seed)), 0);
        cr_assert_eq(rill_buf_composite_add(c, rt_pattern(n - b, off + b, seed)), 0);
        return c;
    }
    return rt_pattern(n, off, seed);
}

/* ---- the body, identical for every transport ---- */

struct run {
    size_t n;                   /* sizes sent */
    uint64_t digest[MAX_SIZES]; /* of each echoed message */
    uint64_t burst_digest;
    double seconds;
};

static void echo_body(const char *scheme, const char *ip, bool framed, struct run *out)
{
    uint64_t t0 = rill_clock_now_ns();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct side side = { 0 };
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), scheme, ip, 0);
    struct rill_server *srv =
        tx_server(boss, workers, uri, framed ? framed_child_init : raw_child_init, &side);
    rt_uri(uri, sizeof(uri), scheme, ip, rt_server_port(srv));

    struct tx_collector *c = tx_collector_new(MAX_MSG + 1);
    struct rill_channel *ch =
        tx_connect(workers, uri, framed ? framed_client_init : tx_collector_init, c);
    bool rdma = strcmp(scheme, "rdma") == 0;
    cr_assert_str_eq(rill_channel_transport(ch), rdma ? "rdma" : "tcp");
    cr_assert_eq(rill_channel_is_rdma(ch), rdma);
    cr_assert(TX_EVENTUALLY(atomic_load(&side.children) == 1));
    cr_assert_eq(atomic_load(rdma ? &side.rdma_children : &side.tcp_children), 1,
                 "the accepted channel is %s", rdma ? "rdma" : "tcp");

    size_t sz[MAX_SIZES];
    out->n = sizes(sz);
    for (size_t k = 0; k < out->n; k++) {
        size_t n = sz[k];
        unsigned seed = (unsigned)k;
        tx_collector_reset(c);
        struct rill_promise *p = tx_promise(NULL);
        rill_channel_write_and_flush(ch, rill_buf_msg(message(n, 0, seed, (int)(k % 3))), p);
        cr_assert(TX_EVENTUALLY(atomic_load(&c->got) >= n), "%s: %zu B message: %zu B came back",
                  uri, n, atomic_load(&c->got));
        int rc = tx_wait_release(p);
        cr_assert_eq(rc, 0, "%s: the write of %zu B: %s", uri, n, rill_strerror(rc));
        /* Nothing more may come. */
        usleep(n > 65536 ? 2000 : 200);
        cr_assert_eq(atomic_load(&c->got), n, "%s: %zu B sent, %zu B came back", uri, n,
                     atomic_load(&c->got));
        if (framed)
            cr_assert_eq(atomic_load(&c->reads), 1, "%s: %zu B arrived as %d frames", uri, n,
                         atomic_load(&c->reads));
        pthread_mutex_lock(&c->lock);
        ssize_t bad = rt_check(c->data, n, 0, seed);
        out->digest[k] = digest(c->data, n);
        pthread_mutex_unlock(&c->lock);
        cr_assert_eq(bad, -1, "%s: %zu B message differs at byte %zd", uri, n, bad);
        cr_assert(rill_channel_is_active(ch));
    }

    /* A burst written without waiting: one stream, in order. */
    tx_collector_reset(c);
    size_t total = 0;
    struct rill_promise *last = NULL;
    for (int i = 0; i < BURST; i++) {
        size_t n = (size_t)(i * 7919) % 70000 + 1;
        if (i == BURST - 1)
            last = tx_promise(NULL);
        rill_channel_write(ch, rill_buf_msg(message(n, total, 99, i % 3)), last);
        if (i % 10 == 9)
            rill_channel_flush(ch);
        total += n;
    }
    rill_channel_flush(ch);
    cr_assert_leq(total, MAX_MSG + 1);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) >= total), "%s: burst: %zu of %zu B", uri,
              atomic_load(&c->got), total);
    cr_assert_eq(tx_wait_release(last), 0);
    cr_assert_eq(atomic_load(&c->got), total);
    if (framed)
        cr_assert_eq(atomic_load(&c->reads), BURST);
    pthread_mutex_lock(&c->lock);
    ssize_t bad = rt_check(c->data, total, 0, 99);
    out->burst_digest = digest(c->data, total);
    pthread_mutex_unlock(&c->lock);
    cr_assert_eq(bad, -1, "%s: the burst differs at byte %zd", uri, bad);
    cr_assert_eq(atomic_load(&c->exceptions), 0, "%s: error %s", uri,
                 rill_strerror(atomic_load(&c->last_error)));

    tx_close(ch);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->inactive) == 1));
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0),
              "%s: the peer's close closes the child", uri);
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    tx_collector_free(c);
    rt_no_regions();
    out->seconds = (double)(rill_clock_now_ns() - t0) / 1e9;
}

static void compare(const struct run *tcp, const struct run *rdma)
{
    cr_assert_eq(tcp->n, rdma->n);
    for (size_t k = 0; k < tcp->n; k++)
        cr_assert_eq(tcp->digest[k], rdma->digest[k], "message %zu differs between tcp and rdma",
                     k);
    cr_assert_eq(tcp->burst_digest, rdma->burst_digest);
    fprintf(stderr, "echo: tcp %.1f s, rdma %.1f s\n", tcp->seconds, rdma->seconds);
}

Test(echo, raw_same_over_tcp_and_rdma)
{
    const char *ip = rt_ip();
    struct run *tcp = calloc(1, sizeof(*tcp)), *rdma = calloc(1, sizeof(*rdma));
    echo_body("tcp", "127.0.0.1", false, tcp);
    echo_body("rdma", ip, false, rdma);
    compare(tcp, rdma);
    free(tcp);
    free(rdma);
}

Test(echo, framed_same_over_tcp_and_rdma)
{
    const char *ip = rt_ip();
    struct run *tcp = calloc(1, sizeof(*tcp)), *rdma = calloc(1, sizeof(*rdma));
    echo_body("tcp", "127.0.0.1", true, tcp);
    echo_body("rdma", ip, true, rdma);
    compare(tcp, rdma);
    free(tcp);
    free(rdma);
}

/* The transport's counters show the paths the sizes above must take. */
static int stats_child_init(struct rill_channel *ch, void *arg)
{
    return tx_echo_init(ch, NULL);
}

Test(echo, paths_inline_fragmented_and_rendezvous)
{
    const char *ip = rt_ip();
    struct rill_loop_group *g = tx_group("loop", 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(g, NULL, uri, stats_child_init, NULL);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));
    struct tx_collector *c = tx_collector_new(1 << 20);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);

    struct rill_rdma_stats s0, s1;
    rt_stats(ch, &s0);
    /* Small (inline), 40 KiB pooled (several receive buffers), 40 KiB
     * malloc (copied), 1 MiB pooled (rendezvous). */
    const size_t n[] = { 16, 40 << 10, 40 << 10, 1 << 20 };
    for (int i = 0; i < 4; i++) {
        tx_collector_reset(c);
        rill_channel_write_and_flush(ch, rill_buf_msg(message(n[i], 0, (unsigned)i, i == 2)), NULL);
        cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == n[i]), "%zu B: %zu came back", n[i],
                  atomic_load(&c->got));
        pthread_mutex_lock(&c->lock);
        ssize_t bad = rt_check(c->data, n[i], 0, (unsigned)i);
        pthread_mutex_unlock(&c->lock);
        cr_assert_eq(bad, -1, "%zu B message differs at %zd", n[i], bad);
    }
    rt_stats(ch, &s1);
    rt_stats_print("client", &s1);
    cr_assert_gt(s1.sends, s0.sends);
    cr_assert_gt(s1.sends_inline, s0.sends_inline, "16 B went inline");
    cr_assert_gt(s1.sends_zero_copy, s0.sends_zero_copy, "pooled buffers went without a copy");
    cr_assert_geq(s1.bytes_copied - s0.bytes_copied, 40 << 10, "malloc memory was copied");
    cr_assert_geq(s1.rndv_sent - s0.rndv_sent, 1, "1 MiB went by rendezvous");
    cr_assert_geq(s1.rndv_read - s0.rndv_read, 1, "the 1 MiB echo came back by rendezvous");
    cr_assert_gt(s1.recvs, s0.recvs);

    tx_close(ch);
    tx_server_free(srv, true);
    tx_group_free(g);
    tx_collector_free(c);
    rt_no_regions();
}

/* RILL_OPT_RDMA_INLINE is the largest inline send ("capped by the
 * device"): a larger device limit must not raise it. */
static void inline_cap(int64_t limit, size_t small, size_t above)
{
    const char *ip = rt_ip();
    struct rill_loop_group *g = tx_group("loop", 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(g, NULL, uri, stats_child_init, NULL);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));
    struct tx_collector *c = tx_collector_new(4096);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = tx_collector_init;
    co.arg = c;
    rill_channel_opts_set(&co.opts, RILL_OPT_RDMA_INLINE, limit);
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    cr_assert_not_null(ch, "connect %s: %s", uri, rill_strerror(err));

    struct rill_rdma_stats s0, s1, s2;
    rt_stats(ch, &s0);
    size_t got = 0;
    if (small) {
        rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(small, 0, 1)), NULL);
        got += small;
        cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == got));
    }
    rt_stats(ch, &s1);
    rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(above, 0, 1)), NULL);
    got += above;
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == got));
    rt_stats(ch, &s2);
    rt_stats_print("inline", &s2);
    /* Expectations: the channel is closed cleanly whatever they find. */
    if (small)
        cr_expect_eq(s1.sends_inline - s0.sends_inline, 1, "%zu B went inline (limit %lld)", small,
                     (long long)limit);
    cr_expect_eq(s2.sends_inline, s1.sends_inline,
                 "%zu B went inline although RILL_OPT_RDMA_INLINE is %lld", above,
                 (long long)limit);
    cr_expect_eq(s2.sends_zero_copy - s1.sends_zero_copy, 1);

    tx_close(ch);
    tx_server_free(srv, true);
    tx_group_free(g);
    tx_collector_free(c);
    rt_no_regions();
}

Test(echo, inline_option_caps_inline_sends)
{
    inline_cap(64, 64, 200);
}

Test(echo, inline_option_zero_sends_nothing_inline)
{
    inline_cap(0, 0, 16);
}

/* ---- half-close: the client shuts its output, the server answers ---- */

struct tally {
    uint64_t bytes; /* loop thread only */
};

static void tally_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct tally *t = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (b)
        t->bytes += rill_buf_readable(b);
    rill_msg_release(msg);
}

/* The answer is out: the server closes its side too. */
static void tally_written(struct rill_promise *p, void *arg)
{
    struct rill_channel *ch = arg;
    rill_channel_close(ch, NULL);
    rill_channel_release(ch);
}

static void tally_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct tally *t = rill_ctx_state(ctx);
    if (ev->type == RILL_EVENT_INPUT_SHUTDOWN) {
        char out[32];
        int n = snprintf(out, sizeof(out), "%llu", (unsigned long long)t->bytes);
        struct rill_channel *ch = rill_ctx_channel(ctx);
        struct rill_promise *p;
        if (rill_promise_new(rill_channel_loop(ch), &p) == 0) {
            rill_promise_add_listener(p, tally_written, rill_channel_retain(ch));
            rill_ctx_write_and_flush(ctx, rill_buf_msg(tx_buf(out, (size_t)n)), p);
            rill_promise_release(p);
        }
        return;
    }
    rill_ctx_fire_user_event(ctx, ev);
}

static const struct rill_handler tally_handler = {
    .name = "tally",
    .ctx_size = sizeof(struct tally),
    .read = tally_read,
    .user_event = tally_user_event,
};

static int tally_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "tally", &tally_handler, NULL);
}

static void half_close(const char *scheme, const char *ip)
{
    struct rill_loop_group *g = tx_group("loop", 2);
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_ALLOW_HALF_CLOSURE, 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), scheme, ip, 0);
    struct rill_server *srv = tx_server_opts(g, NULL, uri, tally_init, NULL, &o);
    rt_uri(uri, sizeof(uri), scheme, ip, rt_server_port(srv));
    struct tx_collector *c = tx_collector_new(64);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);
    cr_assert_eq(rill_addr_port(rill_channel_remote_addr(ch)), rt_server_port(srv));
    cr_assert_not_null(rill_channel_local_addr(ch));

    const size_t n = 300000; /* SENDs and a rendezvous before the FIN */
    rill_channel_write(ch, rill_buf_msg(rt_pattern(1000, 0, 1)), NULL);
    rill_channel_write(ch, rill_buf_msg(rt_pattern(n - 1000, 1000, 1)), NULL);
    rill_channel_flush(ch);
    struct rill_promise *p = tx_promise(NULL);
    rill_channel_shutdown_output(ch, p);
    int rc = tx_wait_release(p);
    cr_assert_eq(rc, 0, "%s: shutdown_output: %s", scheme, rill_strerror(rc));
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == 6), "%s: the answer came (%zu B)", scheme,
              atomic_load(&c->got));
    cr_assert_eq(memcmp(c->data, "300000", 6), 0, "%s: the server counted %.6s B", scheme,
                 (const char *)c->data);
    p = tx_promise(NULL);
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf("late", 4)), p);
    rc = tx_wait_release(p);
    /* -EPIPE, or RILL_ECLOSED when the server's close came first. */
    cr_assert(rc == -EPIPE || rc == RILL_ECLOSED, "%s: a write after shutdown_output: %s", scheme,
              rill_strerror(rc));
    /* The server closed after its answer: the client's channel closes. */
    cr_assert(TX_EVENTUALLY(atomic_load(&c->inactive) == 1), "%s: the server's close arrived",
              scheme);
    cr_assert_eq(rill_channel_close_reason(ch), 0, "%s: an orderly close is no error: %s", scheme,
                 rill_strerror(rill_channel_close_reason(ch)));
    tx_close(ch);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    tx_server_free(srv, true);
    tx_group_free(g);
    tx_collector_free(c);
    rt_no_regions();
}

Test(echo, half_close_over_tcp_and_rdma)
{
    const char *ip = rt_ip();
    half_close("tcp", "127.0.0.1");
    half_close("rdma", ip);
}
