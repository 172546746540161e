/* One-sided operations in the DISNI style: the server exposes a registered
 * region (rill_alloc memory, REMOTE_READ | REMOTE_WRITE) and sends its
 * descriptor in an ordinary (length-framed) message; the client decodes it
 * and
 *   - RDMA-READs the region in growing pieces (1 B, 2 B, 4 B, ... as
 *     DISNI's ReadClient does), then 64 reads at once into a rill_buf,
 *     checking every byte;
 *   - RDMA-WRITEs a new pattern and asks the server, by message, to check
 *     it (a SEND after a WRITE arrives after the written bytes are placed);
 *   - RDMA-WRITEs with immediate data: the server's pipeline gets
 *     RILL_EVENT_RDMA_IMM with the value and the length, the bytes in place;
 *   - gets -EINVAL for reads outside the region, a local buffer that is
 *     not registered and an immediate value over 24 bits;
 *   - after the server revokes the region, gets -EREMOTEIO for a read.
 * Exposed regions are counted back to 0.
 *
 * rill-test-labels: guest
 */
#include "tests/rdma/rdma_test.h"

#include "rill/framing.h"

TestSuite(onesided, .timeout = 240, .fini = rill_test_no_leaks);

#define REGION  ((size_t)1 << 20)
#define NIMM    5
#define IMM_TAG 0x5a0000u

/* ---- the server: exposes a region, answers commands ---- */

struct server_side {
    _Atomic int expose_error; /* rill_rdma_expose's result, 1 until it ran */
    _Atomic int imm_events, imm_bad;
    _Atomic uint32_t imm[NIMM], imm_len[NIMM];
    _Atomic int inactive;
};

struct exposer {
    uint8_t *mem;
    struct rill_rdma_region *region;
};

static void send_frame(struct rill_ctx *ctx, const void *data, size_t len)
{
    rill_ctx_write_and_flush(ctx, rill_buf_msg(tx_buf(data, len)), NULL);
}

static void exposer_active(struct rill_ctx *ctx)
{
    struct server_side *s = rill_ctx_arg(ctx);
    struct exposer *e = rill_ctx_state(ctx);
    size_t usable;
    e->mem = rill_alloc(REGION, &usable);
    int rc = -ENOMEM;
    if (e->mem) {
        rt_fill(e->mem, REGION, 0, 1);
        rc = rill_rdma_expose(rill_ctx_channel(ctx), e->mem, REGION,
                              RILL_RDMA_REMOTE_READ | RILL_RDMA_REMOTE_WRITE, &e->region);
    }
    atomic_store(&s->expose_error, rc);
    rill_ctx_fire_active(ctx);
    if (rc == 0) {
        struct rill_rdma_desc d;
        rill_rdma_region_desc(e->region, &d);
        uint8_t wire[RILL_RDMA_DESC_SIZE];
        rill_rdma_desc_encode(&d, wire);
        send_frame(ctx, wire, sizeof(wire));
    }
}

/* Commands: "check SEED OFF LEN" (region bytes against the pattern),
 * "revoke". Answers "ok", "bad AT", "revoked". */
static void exposer_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct exposer *e = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    char cmd[128] = { 0 };
    size_t n = b ? rill_buf_readable(b) : 0;
    if (b && n < sizeof(cmd))
        rill_buf_get_bytes(b, rill_buf_reader_index(b), cmd, n);
    rill_msg_release(msg);
    unsigned seed;
    size_t off, len;
    char out[64];
    if (sscanf(cmd, "check %u %zu %zu", &seed, &off, &len) == 3 && e->region &&
        off + len <= REGION) {
        ssize_t bad = rt_check(e->mem + off, len, off, seed);
        snprintf(out, sizeof(out), bad < 0 ? "ok" : "bad %zd", bad);
    } else if (strcmp(cmd, "revoke") == 0 && e->region) {
        rill_rdma_revoke(e->region);
        e->region = NULL;
        snprintf(out, sizeof(out), "revoked");
    } else {
        snprintf(out, sizeof(out), "what? %.40s", cmd);
    }
    send_frame(ctx, out, strlen(out));
}

static void exposer_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct server_side *s = rill_ctx_arg(ctx);
    struct exposer *e = rill_ctx_state(ctx);
    if (ev->type == RILL_EVENT_RDMA_IMM) {
        const struct rill_rdma_imm *im = ev->data;
        uint32_t k = im->imm & 0xffu;
        int i = atomic_fetch_add(&s->imm_events, 1);
        if (i < NIMM) {
            atomic_store(&s->imm[i], im->imm);
            atomic_store(&s->imm_len[i], im->len);
        }
        /* Write k went to offset k * 128 KiB with seed 40 + k. */
        if (k >= NIMM || !e->mem || (size_t)k * (128u << 10) + im->len > REGION ||
            rt_check(e->mem + (size_t)k * (128u << 10), im->len, 0, 40 + k) >= 0)
            atomic_fetch_add(&s->imm_bad, 1);
        return;
    }
    rill_ctx_fire_user_event(ctx, ev);
}

static void exposer_inactive(struct rill_ctx *ctx)
{
    struct server_side *s = rill_ctx_arg(ctx);
    atomic_fetch_add(&s->inactive, 1);
    rill_ctx_fire_inactive(ctx);
}

static void exposer_removed(struct rill_ctx *ctx)
{
    struct exposer *e = rill_ctx_state(ctx);
    if (e->region)
        rill_rdma_revoke(e->region);
    e->region = NULL;
    if (e->mem)
        rill_free(e->mem, REGION);
    e->mem = NULL;
}

static const struct rill_handler exposer_handler = {
    .name = "exposer",
    .ctx_size = sizeof(struct exposer),
    .active = exposer_active,
    .read = exposer_read,
    .user_event = exposer_user_event,
    .inactive = exposer_inactive,
    .removed = exposer_removed,
};

static const struct rill_length_field_config framer = {
    .length_field_size = 4,
    .initial_bytes_to_strip = 4,
};

static int add_framing(struct rill_pipeline *pl)
{
    int rc = rill_pipeline_add_last(pl, "framer", &rill_length_field_decoder, (void *)&framer);
    if (rc == 0)
        rc = rill_pipeline_add_last(pl, "prepender", &rill_length_field_prepender, NULL);
    return rc;
}

static int server_init(struct rill_channel *ch, void *arg)
{
    int rc = add_framing(rill_channel_pipeline(ch));
    return rc ? rc
              : rill_pipeline_add_last(rill_channel_pipeline(ch), "exposer", &exposer_handler, arg);
}

/* ---- the client: frames into an inbox ---- */

#define INBOX 32

struct inbox {
    pthread_mutex_t lock;
    char *frame[INBOX];
    size_t len[INBOX];
    _Atomic int n, inactive;
};

static void inbox_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct inbox *in = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    pthread_mutex_lock(&in->lock);
    int i = atomic_load(&in->n);
    if (b && i < INBOX) {
        size_t n = rill_buf_readable(b);
        in->frame[i] = calloc(1, n + 1);
        rill_buf_get_bytes(b, rill_buf_reader_index(b), in->frame[i], n);
        in->len[i] = n;
        atomic_store(&in->n, i + 1);
    }
    pthread_mutex_unlock(&in->lock);
    rill_msg_release(msg);
}

static void inbox_inactive(struct rill_ctx *ctx)
{
    struct inbox *in = rill_ctx_arg(ctx);
    atomic_fetch_add(&in->inactive, 1);
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler inbox_handler = {
    .name = "inbox",
    .read = inbox_read,
    .inactive = inbox_inactive,
};

static int client_init(struct rill_channel *ch, void *arg)
{
    int rc = add_framing(rill_channel_pipeline(ch));
    return rc ? rc
              : rill_pipeline_add_last(rill_channel_pipeline(ch), "inbox", &inbox_handler, arg);
}

/* Frame @i (without its length field), waiting for it. */
static const char *frame_at(struct inbox *in, int i, size_t *len)
{
    cr_assert(TX_EVENTUALLY(atomic_load(&in->n) > i), "frame %d never came", i);
    pthread_mutex_lock(&in->lock);
    const char *f = in->frame[i];
    size_t n = in->len[i];
    pthread_mutex_unlock(&in->lock);
    if (len)
        *len = n;
    return f;
}

static void command(struct rill_channel *ch, struct inbox *in, const char *cmd, const char *expect)
{
    int i = atomic_load(&in->n);
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf(cmd, strlen(cmd))), NULL);
    const char *a = frame_at(in, i, NULL);
    cr_assert_str_eq(a, expect, "\"%s\" was answered \"%s\"", cmd, a);
}

static int op_wait(struct rill_promise *p)
{
    return tx_wait_release(p);
}

Test(onesided, read_write_write_imm_and_revoke)
{
    const char *ip = rt_ip();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct server_side side = { 0 };
    atomic_store(&side.expose_error, 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(boss, workers, uri, server_init, &side);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));
    struct inbox in = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct rill_channel *ch = tx_connect(workers, uri, client_init, &in);

    /* The descriptor. */
    size_t dlen;
    const char *wire = frame_at(&in, 0, &dlen);
    cr_assert_eq(atomic_load(&side.expose_error), 0, "expose: %s",
                 rill_strerror(atomic_load(&side.expose_error)));
    cr_assert_eq(dlen, RILL_RDMA_DESC_SIZE);
    struct rill_rdma_desc d;
    cr_assert_eq(rill_rdma_desc_decode((const uint8_t *)wire, dlen, &d), 0);
    cr_assert_eq(d.len, REGION);
    cr_assert_eq(rill_rdma_desc_decode((const uint8_t *)wire, dlen - 1, &d), -EINVAL);
    cr_assert_eq(rill_rdma_region_count(), 1, "the server's region");

    size_t usable;
    uint8_t *local = rill_alloc(REGION, &usable);
    cr_assert_not_null(local);
    memset(local, 0, REGION);

    /* READ in growing pieces. */
    int pieces = 0;
    for (size_t off = 0, piece = 1; off < REGION; off += piece, piece *= 2, pieces++) {
        if (piece > REGION - off)
            piece = REGION - off;
        struct rill_promise *p = tx_promise(NULL);
        rill_rdma_read(ch, &d, off, local + off, piece, p);
        int rc = op_wait(p);
        cr_assert_eq(rc, 0, "read of %zu B at %zu: %s", piece, off, rill_strerror(rc));
    }
    ssize_t bad = rt_check(local, REGION, 0, 1);
    cr_assert_eq(bad, -1, "read in %d pieces: byte %zd differs", pieces, bad);

    /* 64 reads of 4 KiB at once, into a pooled rill_buf's bytes. */
    struct rill_buf *rb;
    cr_assert_eq(rill_buf_alloc(256u << 10, &rb), 0);
    size_t wlen;
    uint8_t *w = rill_buf_write_ptr(rb, 256u << 10, &wlen);
    cr_assert_not_null(w);
    memset(w, 0, 256u << 10);
    struct rill_promise *ps[64];
    for (int i = 0; i < 64; i++) {
        ps[i] = tx_promise(NULL);
        /* Piece i comes from region offset (63 - i) * 4 KiB + 1000. */
        rill_rdma_read(ch, &d, (uint64_t)(63 - i) * 4096 + 1000, w + (size_t)i * 4096, 4096, ps[i]);
    }
    for (int i = 0; i < 64; i++) {
        int rc = op_wait(ps[i]);
        cr_assert_eq(rc, 0, "concurrent read %d: %s", i, rill_strerror(rc));
    }
    for (int i = 0; i < 64; i++)
        cr_assert_eq(rt_check(w + (size_t)i * 4096, 4096, (uint64_t)(63 - i) * 4096 + 1000, 1), -1,
                     "concurrent read %d", i);
    rill_buf_release(rb);

    /* WRITE a new pattern in three pieces, then ask the server. */
    rt_fill(local, REGION, 0, 2);
    const size_t cut[] = { 0, 1000, 300000, REGION };
    for (int i = 0; i < 3; i++) {
        struct rill_promise *p = tx_promise(NULL);
        rill_rdma_write(ch, &d, cut[i], local + cut[i], cut[i + 1] - cut[i], p);
        int rc = op_wait(p);
        cr_assert_eq(rc, 0, "write %d: %s", i, rill_strerror(rc));
    }
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "check 2 0 %zu", REGION);
    command(ch, &in, cmd, "ok");

    /* WRITE with immediate data: k goes to offset k * 128 KiB, seed 40 + k. */
    const size_t ilen[NIMM] = { 1, 100, 4096, 20000, 65536 };
    for (uint32_t k = 0; k < NIMM; k++) {
        uint8_t *src = local + (size_t)k * (128u << 10);
        rt_fill(src, ilen[k], 0, 40 + k);
        struct rill_promise *p = tx_promise(NULL);
        rill_rdma_write_imm(ch, &d, (uint64_t)k * (128u << 10), src, ilen[k], IMM_TAG | k, p);
        int rc = op_wait(p);
        cr_assert_eq(rc, 0, "write_imm %u: %s", k, rill_strerror(rc));
    }
    cr_assert(TX_EVENTUALLY(atomic_load(&side.imm_events) == NIMM), "%d of %d immediate events",
              atomic_load(&side.imm_events), NIMM);
    cr_assert_eq(atomic_load(&side.imm_bad), 0, "the bytes were in place at each event");
    for (int k = 0; k < NIMM; k++) {
        cr_assert_eq(atomic_load(&side.imm[k]), IMM_TAG | (uint32_t)k, "imm %d: %#x", k,
                     atomic_load(&side.imm[k]));
        cr_assert_eq(atomic_load(&side.imm_len[k]), ilen[k], "imm %d length", k);
    }
    /* The untouched bytes between the immediate writes are still pattern 2. */
    snprintf(cmd, sizeof(cmd), "check 2 %u %u", 200000u, 20000u);
    command(ch, &in, cmd, "ok");

    /* Errors that fail the operation, not the channel. */
    struct rill_promise *p = tx_promise(NULL);
    rill_rdma_read(ch, &d, REGION - 10, local, 100, p);
    cr_assert_eq(op_wait(p), -EINVAL, "a read past the region's end");
    p = tx_promise(NULL);
    rill_rdma_read(ch, &d, REGION + 1, local, 1, p);
    cr_assert_eq(op_wait(p), -EINVAL, "a read after the region");
    p = tx_promise(NULL);
    rill_rdma_write(ch, &d, UINT64_MAX - 5, local, 10, p);
    cr_assert_eq(op_wait(p), -EINVAL, "an offset that wraps");
    uint8_t *plain = malloc(4096);
    p = tx_promise(NULL);
    rill_rdma_read(ch, &d, 0, plain, 4096, p);
    cr_assert_eq(op_wait(p), -EINVAL, "a local buffer that is not registered");
    free(plain);
    p = tx_promise(NULL);
    rill_rdma_write_imm(ch, &d, 0, local, 16, RILL_RDMA_IMM_MAX + 1, p);
    cr_assert_eq(op_wait(p), -EINVAL, "an immediate value over 24 bits");
    cr_assert(rill_channel_is_active(ch), "argument errors leave the channel open");
    /* Still works. */
    p = tx_promise(NULL);
    rill_rdma_read(ch, &d, 0, local, 4096, p);
    cr_assert_eq(op_wait(p), 0);
    cr_assert_eq(local[0], rt_pat(0, 40), "byte 0 is the first immediate write's");
    cr_assert_eq(rt_check(local + 1, 4095, 1, 2), -1);

    /* A region of the client's own, for local use: counted, revoked. */
    struct rill_rdma_region *mine;
    cr_assert_eq(rill_rdma_expose(ch, local, 4096, 0, &mine), 0);
    cr_assert_eq(rill_rdma_region_count(), 2);
    cr_assert_eq(rill_rdma_expose(ch, NULL, 4096, 0, &mine), -EINVAL);
    cr_assert_eq(rill_rdma_expose(ch, local, 0, 0, &mine), -EINVAL);
    rill_rdma_revoke(mine);
    cr_assert_eq(rill_rdma_region_count(), 1);

    /* Revoked: the old descriptor no longer works. */
    command(ch, &in, "revoke", "revoked");
    cr_assert_eq(rill_rdma_region_count(), 0);
    p = tx_promise(NULL);
    rill_rdma_read(ch, &d, 0, local, 4096, p);
    int rc = op_wait(p);
    cr_assert_eq(rc, -EREMOTEIO, "a read of a revoked region: %s", rill_strerror(rc));
    /* The channel may close now (its queue pair is in error); either way
     * closing it is clean. */
    tx_close(ch);
    cr_assert(TX_EVENTUALLY(atomic_load(&side.inactive) == 1));
    rill_free(local, REGION);
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    for (int i = 0; i < atomic_load(&in.n); i++)
        free(in.frame[i]);
    rt_no_regions();
}

Test(onesided, operations_on_a_tcp_channel_are_not_supported)
{
    rt_ip();
    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "tcp", "127.0.0.1", rt_server_port(srv));
    struct rill_channel *ch = tx_connect(g, uri, NULL, NULL);
    cr_assert_not(rill_channel_is_rdma(ch));
    size_t usable;
    uint8_t *mem = rill_alloc(4096, &usable);
    struct rill_rdma_region *r = NULL;
    cr_assert_eq(rill_rdma_expose(ch, mem, 4096, RILL_RDMA_REMOTE_READ, &r), -ENOTSUP);
    struct rill_rdma_desc d = { .addr = 0x1000, .len = 4096, .rkey = 1 };
    struct rill_promise *p = tx_promise(NULL);
    rill_rdma_read(ch, &d, 0, mem, 16, p);
    cr_assert_eq(op_wait(p), -ENOTSUP);
    p = tx_promise(NULL);
    rill_rdma_write_imm(ch, &d, 0, mem, 16, 1, p);
    cr_assert_eq(op_wait(p), -ENOTSUP);
    struct rill_rdma_stats s;
    rt_stats(ch, &s);
    cr_assert_eq(s.sends + s.recvs + s.reads + s.writes, 0, "zeros for a TCP channel");
    rill_free(mem, 4096);
    tx_close(ch);
    tx_server_free(srv, true);
    tx_group_free(g);
    rt_no_regions();
}

/* Operations still under way when the channel closes: every promise
 * completes (done or failed), none hangs, nothing leaks. */
Test(onesided, close_with_operations_in_flight)
{
    const char *ip = rt_ip();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct server_side side = { 0 };
    atomic_store(&side.expose_error, 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(boss, workers, uri, server_init, &side);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));
    struct inbox in = { .lock = PTHREAD_MUTEX_INITIALIZER };
    struct rill_channel *ch = tx_connect(workers, uri, client_init, &in);
    size_t dlen;
    const char *wire = frame_at(&in, 0, &dlen);
    struct rill_rdma_desc d;
    cr_assert_eq(rill_rdma_desc_decode((const uint8_t *)wire, dlen, &d), 0);
    size_t usable;
    uint8_t *local = rill_alloc(REGION, &usable);
    cr_assert_not_null(local);

    enum { NOPS = 48 };
    struct rill_promise *ps[NOPS];
    for (int i = 0; i < NOPS; i++) {
        ps[i] = tx_promise(NULL);
        size_t off = (size_t)(i % 16) * (64u << 10);
        if (i % 3 == 2)
            rill_rdma_write_imm(ch, &d, off, local + off, 64u << 10, (uint32_t)i, ps[i]);
        else if (i % 3 == 1)
            rill_rdma_write(ch, &d, off, local + off, 64u << 10, ps[i]);
        else
            rill_rdma_read(ch, &d, off, local + off, 64u << 10, ps[i]);
    }
    struct rill_promise *c = tx_promise(NULL);
    rill_channel_close(ch, c);
    cr_assert_eq(tx_wait_release(c), 0);
    int ok = 0, failed = 0;
    for (int i = 0; i < NOPS; i++) {
        int rc = rill_promise_wait(ps[i], TX_WAIT_NS);
        cr_assert_neq(rc, -ETIMEDOUT, "operation %d never completed", i);
        if (rc == 0)
            ok++;
        else
            failed++;
        rill_promise_release(ps[i]);
    }
    fprintf(stderr, "onesided: close with %d operations in flight: %d done, %d failed\n", NOPS, ok,
            failed);
    /* After the close nothing more may be started. */
    struct rill_promise *p = tx_promise(NULL);
    rill_rdma_read(ch, &d, 0, local, 16, p);
    int rc = op_wait(p);
    cr_assert(rc == RILL_ECLOSED || rc == -ECONNRESET, "a read after the close: %s",
              rill_strerror(rc));
    rill_channel_release(ch);
    cr_assert(TX_EVENTUALLY(atomic_load(&side.inactive) == 1));
    rill_free(local, REGION);
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    for (int i = 0; i < atomic_load(&in.n); i++)
        free(in.frame[i]);
    rt_no_regions();
}
