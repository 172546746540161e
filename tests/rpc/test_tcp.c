/* RPC over loopback TCP: 10,000 concurrent calls on one connection,
 * non-rill peers (HTTP, bad magic, oversize frame) refused with a clear
 * answer while a healthy connection goes on, live (un)registration under
 * load, and flushes consolidated per read batch (pipelined requests read at
 * once are answered with one flush; pool answers still go out at once).
 * Every loop is bounded in count and time.
 *
 * rill-test-labels: threaded
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/clock.h"
#include "rill/rpc_client.h"
#include "rill/rpc_server.h"
#include "tests/rpc/rpc_test.h"
#include "tests/transport/tx.h"
#include "util/testutil.h"

TestSuite(rpc_tcp, .timeout = 60, .fini = rill_test_no_leaks);

/* What a counting stage next to the transport saw (written on the
 * server's loop, read by the test thread). */
struct counts {
    atomic_uint writes, flushes, batches;
};

struct world {
    struct rill_loop_group *boss, *workers;
    struct rill_rpc_server *rs;
    struct rill_server *srv;
    char uri[RILL_ADDR_STRLEN];
    struct counts *counts; /* set: the counting stage goes before the codec */
};

static void count_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    atomic_fetch_add(&((struct counts *)rill_ctx_arg(ctx))->writes, 1);
    rill_ctx_write(ctx, msg, p);
}

static void count_flush(struct rill_ctx *ctx)
{
    atomic_fetch_add(&((struct counts *)rill_ctx_arg(ctx))->flushes, 1);
    rill_ctx_flush(ctx);
}

static void count_read_complete(struct rill_ctx *ctx)
{
    atomic_fetch_add(&((struct counts *)rill_ctx_arg(ctx))->batches, 1);
    rill_ctx_fire_read_complete(ctx);
}

static const struct rill_handler count_handler = {
    .name = "count",
    .write = count_write,
    .flush = count_flush,
    .read_complete = count_read_complete,
};

static int child_init(struct rill_channel *ch, void *arg)
{
    struct world *w = arg;
    int rc = rill_rpc_server_install(w->rs, rill_channel_pipeline(ch));
    if (rc == 0 && w->counts)
        rc = rill_pipeline_add_first(rill_channel_pipeline(ch), "count", &count_handler, w->counts);
    return rc;
}

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

static void m_echo(struct rill_rpc_server_call *c, void *arg)
{
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    rill_rpc_server_call_reply(c, p ? rill_buf_retain(p) : NULL);
}

static void world_up_counted(struct world *w, size_t max_frame, struct counts *counts)
{
    w->counts = counts;
    w->boss = tx_group("boss", 1);
    w->workers = tx_group("work", 2);
    struct rill_rpc_server_opts o;
    rill_rpc_server_opts_init(&o);
    o.handler_threads = 2;
    o.queue_capacity = 20000;
    if (max_frame)
        o.max_frame = max_frame;
    cr_assert_eq(rill_rpc_server_new(&o, &w->rs), 0);
    cr_assert_eq(rill_rpc_server_register(w->rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), 0);
    cr_assert_eq(rill_rpc_server_register(w->rs, "t", "pecho", m_echo, NULL, RILL_RPC_POOL), 0);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = w->boss;
    so.workers = w->workers;
    so.child_init = child_init;
    so.child_arg = w;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &w->srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(w->srv), TX_WAIT_NS), 0);
    tx_server_uri(w->srv, w->uri, sizeof(w->uri));
}

static void world_up(struct world *w, size_t max_frame)
{
    world_up_counted(w, max_frame, NULL);
}

static void world_down(struct world *w)
{
    tx_server_free(w->srv, true);
    tx_group_free(w->workers);
    tx_group_free(w->boss);
    rill_rpc_server_free(w->rs);
}

static struct rill_channel *rpc_connect(struct world *w)
{
    return tx_connect(w->workers, w->uri, client_init, NULL);
}

static int echo_once(struct rill_channel *ch, const char *body)
{
    struct rill_rpc_call *c;
    int rc = rill_rpc_call_sync(ch, "t", "echo", rt_buf(body), NULL, TX_WAIT_NS, &c);
    if (rc == 0) {
        struct rill_buf *r = rill_rpc_call_response(c);
        if (!rt_buf_is(r, body))
            rc = -EBADMSG;
        if (r)
            rill_buf_release(r);
    }
    rill_rpc_call_release(c);
    return rc;
}

Test(rpc_tcp, ten_thousand_concurrent_calls_on_one_connection)
{
    struct world w;
    world_up(&w, 0);
    struct rill_channel *ch = rpc_connect(&w);
    enum { N = 10000 };
    struct rill_rpc_call **calls = calloc(N, sizeof(*calls));
    for (int i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof(body), "call-%d", i);
        struct rill_rpc_call_opts o;
        rill_rpc_call_opts_init(&o);
        o.timeout_ns = 30 * RILL_NS_PER_S;
        cr_assert_eq(
            rill_rpc_call_start(ch, "t", i % 2 ? "echo" : "pecho", rt_buf(body), &o, &calls[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rill_rpc_call_wait(calls[i], TX_WAIT_NS), 0, "call %d: %s", i,
                     rill_rpc_call_status_msg(calls[i]) ? rill_rpc_call_status_msg(calls[i]) : "?");
        char body[32];
        snprintf(body, sizeof(body), "call-%d", i);
        struct rill_buf *r = rill_rpc_call_response(calls[i]);
        cr_assert(rt_buf_is(r, body), "call %d got the wrong response", i);
        rill_buf_release(r);
        rill_rpc_call_release(calls[i]);
    }
    free(calls);
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(w.rs, &st);
    cr_assert_eq(st.calls, N);
    cr_assert_eq(st.connections_total, 1);
    struct rill_rpc_method_stats ms;
    cr_assert_eq(rill_rpc_server_method_stats(w.rs, "t", "pecho", &ms), 0);
    cr_assert_eq(ms.calls, N / 2);
    tx_close(ch);
    world_down(&w);
}

/* A raw socket to the server: send @data, read the answer until EOF. */
static size_t raw_exchange(struct world *w, const void *data, size_t len, char *out, size_t cap)
{
    const struct rill_addr *a = rill_server_local_addr(w->srv);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(rill_addr_port(a)) };
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    size_t got = 0;
    for (int i = 0; i < 1000 && got < cap - 1; i++) {
        ssize_t n = read(fd, out + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = 0;
    close(fd);
    return got;
}

Test(rpc_tcp, non_rill_peers_are_refused_and_others_go_on)
{
    struct world w;
    world_up(&w, 1024);
    struct rill_channel *ch = rpc_connect(&w);
    cr_assert_eq(echo_once(ch, "before"), 0);
    char out[512];
    const char *http = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    size_t n = raw_exchange(&w, http, strlen(http), out, sizeof(out));
    cr_assert_gt(n, 0);
    cr_assert(strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "%s", out);
    cr_assert_eq(echo_once(ch, "after http"), 0);

    n = raw_exchange(&w, "hrpc\x09\x00\x00\x00", 8, out, sizeof(out));
    cr_assert_gt(n, RILL_RPC_HEADER_LEN, "a GOAWAY frame came back");
    cr_assert_eq(out[4], RILL_RPC_GOAWAY);
    cr_assert(memmem(out, n, "magic", 5), "the reason names the magic");
    cr_assert_eq(echo_once(ch, "after bad magic"), 0);

    /* A frame announcing 2000 bytes on a server limited to 1024. */
    n = raw_exchange(&w, "RILL\x01\x00\x00\x00\x00\x00\x07\xd0", 12, out, sizeof(out));
    cr_assert_gt(n, RILL_RPC_HEADER_LEN);
    cr_assert_eq(out[4], RILL_RPC_GOAWAY);
    cr_assert(memmem(out, n, "exceeds the limit", 17));
    cr_assert_eq(echo_once(ch, "after oversize"), 0);

    /* Our own client sends a request over the server's limit last: the
     * server refuses it with GOAWAY RESOURCE_EXHAUSTED and closes. */
    struct rill_rpc_call *c;
    char big[2048];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    int rc = rill_rpc_call_sync(ch, "t", "echo", rt_buf(big), NULL, TX_WAIT_NS, &c);
    cr_assert_eq(rc, RILL_ETOOLARGE);
    cr_assert_eq(rill_rpc_call_status(c), RILL_RPC_RESOURCE_EXHAUSTED);
    rill_rpc_call_release(c);
    tx_close(ch);
    world_down(&w);
}

struct churn {
    struct rill_rpc_server *rs;
    atomic_bool stop;
    int rounds;
};

static void *churner(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < 2000 && !atomic_load(&c->stop); i++) {
        if (rill_rpc_server_register(c->rs, "t", "live", m_echo, NULL,
                                     i % 2 ? RILL_RPC_POOL : RILL_RPC_INLINE) == 0) {
            usleep(100);
            rill_rpc_server_unregister(c->rs, "t", "live");
            c->rounds++;
        }
    }
    return NULL;
}

Test(rpc_tcp, live_registration_under_load)
{
    struct world w;
    world_up(&w, 0);
    struct rill_channel *ch = rpc_connect(&w);
    struct churn c = { .rs = w.rs };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, churner, &c), 0);
    int ok = 0, unimpl = 0;
    uint64_t dl = rill_test_deadline_ms(10000);
    for (int i = 0; i < 3000 && rill_test_before(dl); i++) {
        struct rill_rpc_call *call;
        int rc = rill_rpc_call_sync(ch, "t", i % 3 ? "live" : "echo", rt_buf("x"), NULL, TX_WAIT_NS,
                                    &call);
        int st = rill_rpc_call_status(call);
        if (rc == 0)
            ok++;
        else if (st == RILL_RPC_UNIMPLEMENTED)
            unimpl++;
        else
            cr_assert_fail("call %d: %s %s", i, rill_rpc_status_name(st),
                           rill_rpc_call_status_msg(call));
        rill_rpc_call_release(call);
    }
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    cr_assert_gt(ok, 0);
    cr_assert_gt(c.rounds, 0);
    tx_close(ch);
    world_down(&w);
}

/* Keeps its call unanswered until the test answers it. */
static struct rill_rpc_server_call *_Atomic held;

static void m_hold(struct rill_rpc_server_call *c, void *arg)
{
    atomic_store(&held, c);
}

Test(rpc_tcp, server_free_sends_goaway_to_open_connections)
{
    struct world w;
    world_up(&w, 0);
    atomic_store(&held, NULL);
    cr_assert_eq(rill_rpc_server_register(w.rs, "t", "hold", m_hold, NULL, RILL_RPC_INLINE), 0);
    struct rill_channel *ch = rpc_connect(&w);
    cr_assert_eq(echo_once(ch, "warm"), 0);
    struct rill_rpc_call *c;
    cr_assert_eq(rill_rpc_call_start(ch, "t", "hold", rt_buf("x"), NULL, &c), 0);
    uint64_t dl = rill_test_deadline_ms(10000);
    while (!atomic_load(&held) && rill_test_before(dl))
        usleep(200);
    cr_assert_not_null(atomic_load(&held), "the method has the call");

    rill_rpc_server_free(w.rs); /* the listener and the connection stay open */
    cr_assert_eq(rill_rpc_call_wait(c, TX_WAIT_NS), RILL_EUNAVAILABLE);
    cr_assert_eq(rill_rpc_call_status(c), RILL_RPC_UNAVAILABLE);
    const char *m = rill_rpc_call_status_msg(c);
    cr_assert(m && strstr(m, "GOAWAY") && strstr(m, "server shutting down"), "message \"%s\"",
              m ? m : "");
    rill_rpc_call_release(c);
    cr_assert_eq(rill_promise_wait(rill_channel_close_future(ch), TX_WAIT_NS), 0,
                 "the connection closed after the GOAWAY");
    /* The held call's answer comes too late: dropped, nothing breaks. */
    rill_rpc_server_call_reply(atomic_load(&held), rt_buf("late"));
    rill_channel_release(ch);
    tx_server_free(w.srv, true);
    tx_group_free(w.workers);
    tx_group_free(w.boss);
}

/* A raw connection to the server (receive timeout 10 s). */
static int raw_connect(struct world *w)
{
    const struct rill_addr *a = rill_server_local_addr(w->srv);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(rill_addr_port(a)) };
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* The bytes of the preamble (when @preamble) and requests ids @first ..
 * @first + @n - 1 for @method, payload "x", as a rill client sends them. */
static uint8_t *encode_requests(struct rill_embedded *enc, uint64_t first, int n,
                                const char *method, size_t *len)
{
    for (int i = 0; i < n; i++) {
        struct rill_rpc_frame *f;
        cr_assert_eq(rill_rpc_frame_new(RILL_RPC_REQUEST, first + (uint64_t)i, &f), 0);
        cr_assert_eq(rill_rpc_frame_set_names(f, "t", method), 0);
        rill_rpc_frame_set_payload(f, rt_buf("x"));
        cr_assert_geq(rill_embedded_write_outbound(enc, &f->msg), 0);
    }
    uint8_t *bytes = NULL;
    *len = 0;
    rt_drain_bytes(enc, &bytes, len);
    return bytes;
}

/* Read from @fd into the response decoder @dec until @n responses with
 * status OK have come (or the read times out). Returns how many came. */
static int read_responses(int fd, struct rill_embedded *dec, int n)
{
    int got = 0;
    while (got < n) {
        uint8_t in[4096];
        ssize_t r = read(fd, in, sizeof(in));
        if (r <= 0)
            break;
        struct rill_buf *b;
        cr_assert_eq(rill_buf_copy_from(in, (size_t)r, &b), 0);
        rill_embedded_write_inbound(dec, &b->msg);
        struct rill_msg *m;
        while ((m = rill_embedded_read_inbound(dec)) != NULL) {
            struct rill_rpc_frame *f = rill_rpc_frame_from_msg(m);
            cr_assert_not_null(f);
            cr_assert_eq(f->type, RILL_RPC_RESPONSE);
            cr_assert_eq(f->status, RILL_RPC_OK, "%s", f->status_msg ? f->status_msg : "");
            got++;
            rill_msg_release(m);
        }
    }
    return got;
}

Test(rpc_tcp, pipelined_requests_read_at_once_are_answered_with_one_flush)
{
    struct world w;
    struct counts counts = { 0 };
    world_up_counted(&w, 0, &counts);
    int fd = raw_connect(&w);
    struct rill_embedded *enc = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    struct rill_embedded *dec = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);

    /* 50 inline requests in one send (about 1 KB: one read on loopback). */
    enum { N = 50 };
    size_t len;
    uint8_t *bytes = encode_requests(enc, 1, N, "echo", &len);
    cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
    free(bytes);
    cr_assert_eq(read_responses(fd, dec, N), N);
    unsigned writes = atomic_load(&counts.writes), flushes = atomic_load(&counts.flushes);
    unsigned batches = atomic_load(&counts.batches);
    cr_assert_eq(writes, N, "one write per answer");
    cr_assert_geq(batches, 1);
    cr_assert_leq(flushes, batches, "%u flushes for %u read batches", flushes, batches);
    cr_assert_leq(flushes, 2, "%u flushes for %d answers", flushes, N);

    /* A pool answer arrives as a task after its batch ended: it is flushed
     * at once, not left for a read that may never come. */
    bytes = encode_requests(enc, N + 1, 1, "pecho", &len);
    cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
    free(bytes);
    uint64_t t0 = rill_clock_now_ns();
    cr_assert_eq(read_responses(fd, dec, 1), 1, "the pool answer came");
    cr_assert_lt(rill_clock_now_ns() - t0, 5 * RILL_NS_PER_S);
    cr_assert_eq(atomic_load(&counts.writes), N + 1);
    cr_assert_eq(atomic_load(&counts.flushes), flushes + 1, "flushed on its own");

    /* Mixed: inline answers flushed with their batch, pool answers alone;
     * every one arrives. */
    bytes = encode_requests(enc, N + 2, N, "echo", &len);
    uint8_t *more;
    size_t more_len;
    more = encode_requests(enc, 2 * N + 2, N, "pecho", &more_len);
    bytes = realloc(bytes, len + more_len);
    memcpy(bytes + len, more, more_len);
    free(more);
    cr_assert_eq(write(fd, bytes, len + more_len), (ssize_t)(len + more_len));
    free(bytes);
    cr_assert_eq(read_responses(fd, dec, 2 * N), 2 * N);

    close(fd);
    cr_assert_eq(rill_embedded_finish(enc, NULL), 0);
    rill_embedded_free(enc);
    uint8_t *sent = NULL;
    size_t sent_len = 0;
    rt_drain_bytes(dec, &sent, &sent_len); /* its own preamble */
    free(sent);
    rill_embedded_free(dec);
    world_down(&w);
}
