/* The RPC stack (rpc_client.h, rpc_server.h) over rdma://, installed as it
 * is over TCP: unary calls with payloads from 0 B to 1 MiB (inline, several
 * receive buffers, rendezvous), 1,000 concurrent calls on one connection
 * (inline and pool methods), and a deadline that passes while the server
 * holds the call, after which the connection goes on serving.
 *
 * rill-test-labels: guest
 */
#include "tests/rdma/rdma_test.h"

#include "rill/rpc_client.h"
#include "rill/rpc_server.h"
#include "rill/rpc_status.h"

TestSuite(rpc, .timeout = 240, .fini = rill_test_no_leaks);

struct world {
    struct rill_loop_group *boss, *workers;
    struct rill_rpc_server *rs;
    struct rill_server *srv;
    char uri[RILL_ADDR_STRLEN];
    _Atomic int rdma_children;
};

/* The call "hold" keeps, unanswered, until the test answers it. */
static struct rill_rpc_server_call *_Atomic held;

static void m_echo(struct rill_rpc_server_call *c, void *arg)
{
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    rill_rpc_server_call_reply(c, p ? rill_buf_retain(p) : NULL);
}

static void m_hold(struct rill_rpc_server_call *c, void *arg)
{
    atomic_store(&held, c);
}

static int child_init(struct rill_channel *ch, void *arg)
{
    struct world *w = arg;
    if (rill_channel_is_rdma(ch))
        atomic_fetch_add(&w->rdma_children, 1);
    return rill_rpc_server_install(w->rs, rill_channel_pipeline(ch));
}

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

static void world_up(struct world *w)
{
    memset(w, 0, sizeof(*w));
    const char *ip = rt_ip();
    atomic_store(&held, NULL);
    w->boss = tx_group("boss", 1);
    w->workers = tx_group("work", 2);
    struct rill_rpc_server_opts o;
    rill_rpc_server_opts_init(&o);
    o.handler_threads = 2;
    o.queue_capacity = 4096;
    cr_assert_eq(rill_rpc_server_new(&o, &w->rs), 0);
    cr_assert_eq(rill_rpc_server_register(w->rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), 0);
    cr_assert_eq(rill_rpc_server_register(w->rs, "t", "pecho", m_echo, NULL, RILL_RPC_POOL), 0);
    cr_assert_eq(rill_rpc_server_register(w->rs, "t", "hold", m_hold, NULL, RILL_RPC_INLINE), 0);
    rt_uri(w->uri, sizeof(w->uri), "rdma", ip, 0);
    w->srv = tx_server(w->boss, w->workers, w->uri, child_init, w);
    rt_uri(w->uri, sizeof(w->uri), "rdma", ip, rt_server_port(w->srv));
}

static void world_down(struct world *w)
{
    tx_server_free(w->srv, true);
    tx_group_free(w->workers);
    tx_group_free(w->boss);
    rill_rpc_server_free(w->rs);
    rt_no_regions();
}

static struct rill_channel *rpc_connect(struct world *w)
{
    struct rill_channel *ch = tx_connect(w->workers, w->uri, client_init, NULL);
    cr_assert_str_eq(rill_channel_transport(ch), "rdma");
    cr_assert(rill_channel_is_rdma(ch));
    return ch;
}

/* One call of @method with @n pattern bytes (@seed); checks the answer. */
static void call_pattern(struct rill_channel *ch, const char *method, size_t n, unsigned seed)
{
    struct rill_rpc_call *c;
    int rc = rill_rpc_call_sync(ch, "t", method, n ? rt_pattern(n, 0, seed) : NULL, NULL,
                                TX_WAIT_NS, &c);
    cr_assert_eq(rc, 0, "%s with %zu B: %s (%s)", method, n, rill_strerror(rc),
                 rill_rpc_call_status_msg(c) ? rill_rpc_call_status_msg(c) : "");
    struct rill_buf *r = rill_rpc_call_response(c);
    if (n == 0) {
        cr_assert(!r || rill_buf_readable(r) == 0, "an empty call gets an empty answer");
    } else {
        cr_assert_not_null(r, "%zu B call: no payload came back", n);
        cr_assert_eq(rill_buf_readable(r), n, "%zu B call: %zu B came back", n,
                     rill_buf_readable(r));
        uint8_t *got = malloc(n);
        cr_assert_eq(rill_buf_get_bytes(r, rill_buf_reader_index(r), got, n), 0);
        ssize_t bad = rt_check(got, n, 0, seed);
        free(got);
        cr_assert_eq(bad, -1, "%zu B call: the answer differs at byte %zd", n, bad);
    }
    if (r)
        rill_buf_release(r);
    rill_rpc_call_release(c);
}

Test(rpc, unary_payloads_from_empty_to_one_mebibyte)
{
    struct world w;
    world_up(&w);
    struct rill_channel *ch = rpc_connect(&w);
    unsigned seed = 0;
    for (size_t n = 0; n <= 64; n++)
        call_pattern(ch, n % 2 ? "echo" : "pecho", n, seed++);
    for (size_t p = 128; p <= ((size_t)1 << 20); p <<= 1)
        for (size_t n = p - 1; n <= p + 1; n++)
            call_pattern(ch, n % 2 ? "echo" : "pecho", n, seed++);
    cr_assert_eq(atomic_load(&w.rdma_children), 1);
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(w.rs, &st);
    cr_assert_eq(st.calls, seed);
    tx_close(ch);
    world_down(&w);
}

Test(rpc, thousand_concurrent_calls_on_one_connection)
{
    struct world w;
    world_up(&w);
    struct rill_channel *ch = rpc_connect(&w);
    enum { N = 1000 };
    struct rill_rpc_call **calls = calloc(N, sizeof(*calls));
    uint64_t t0 = rill_clock_now_ns();
    for (int i = 0; i < N; i++) {
        /* Every tenth carries 20 KiB (more than one receive buffer). */
        size_t n = i % 10 == 0 ? 20000 : (size_t)(16 + i % 200);
        struct rill_rpc_call_opts o;
        rill_rpc_call_opts_init(&o);
        o.timeout_ns = 120 * RILL_NS_PER_S;
        cr_assert_eq(rill_rpc_call_start(ch, "t", i % 2 ? "echo" : "pecho",
                                         rt_pattern(n, 0, (unsigned)i), &o, &calls[i]),
                     0);
    }
    for (int i = 0; i < N; i++) {
        int rc = rill_rpc_call_wait(calls[i], TX_WAIT_NS);
        cr_assert_eq(rc, 0, "call %d: %s %s", i, rill_strerror(rc),
                     rill_rpc_call_status_msg(calls[i]) ? rill_rpc_call_status_msg(calls[i]) : "");
        size_t n = i % 10 == 0 ? 20000 : (size_t)(16 + i % 200);
        struct rill_buf *r = rill_rpc_call_response(calls[i]);
        cr_assert_not_null(r);
        cr_assert_eq(rill_buf_readable(r), n, "call %d", i);
        uint8_t got[20000];
        cr_assert_eq(rill_buf_get_bytes(r, rill_buf_reader_index(r), got, n), 0);
        cr_assert_eq(rt_check(got, n, 0, (unsigned)i), -1, "call %d got another answer", i);
        rill_buf_release(r);
        rill_rpc_call_release(calls[i]);
    }
    free(calls);
    fprintf(stderr, "rpc: 1000 concurrent calls in %.2f s\n",
            (double)(rill_clock_now_ns() - t0) / 1e9);
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(w.rs, &st);
    cr_assert_eq(st.calls, N);
    cr_assert_eq(st.connections_total, 1);
    tx_close(ch);
    world_down(&w);
}

Test(rpc, deadline_exceeded_and_the_connection_goes_on)
{
    struct world w;
    world_up(&w);
    struct rill_channel *ch = rpc_connect(&w);
    call_pattern(ch, "echo", 100, 1);

    struct rill_rpc_call_opts o;
    rill_rpc_call_opts_init(&o);
    o.timeout_ns = 300 * RILL_NS_PER_MS;
    struct rill_rpc_call *c;
    uint64_t t0 = rill_clock_now_ns();
    cr_assert_eq(rill_rpc_call_start(ch, "t", "hold", rt_pattern(10, 0, 2), &o, &c), 0);
    int rc = rill_rpc_call_wait(c, TX_WAIT_NS);
    uint64_t ms = (rill_clock_now_ns() - t0) / RILL_NS_PER_MS;
    cr_assert_eq(rc, RILL_EDEADLINE, "got %s", rill_strerror(rc));
    cr_assert_eq(rill_rpc_call_status(c), RILL_RPC_DEADLINE_EXCEEDED);
    cr_assert_geq(ms, 250);
    cr_assert_lt(ms, 20000, "the deadline fired after %llu ms", (unsigned long long)ms);
    rill_rpc_call_release(c);
    cr_assert(TX_EVENTUALLY(atomic_load(&held) != NULL), "the server got the held call");

    /* The connection is fine: more calls, large and small. */
    call_pattern(ch, "echo", 300000, 3);
    call_pattern(ch, "pecho", 5, 4);
    /* The late answer is dropped by the client. */
    rill_rpc_server_call_reply(atomic_load(&held), rt_pattern(10, 0, 2));
    call_pattern(ch, "echo", 1000, 5);
    cr_assert(rill_channel_is_active(ch));
    tx_close(ch);
    world_down(&w);
}
