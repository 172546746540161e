/* The connection pool over loopback TCP: one connection reused by many
 * calls, several per address on request, reconnect after the server
 * closes, heartbeats (pongs keep a connection, silence closes it), and
 * retries of idempotent calls with backoff, bounded by attempts and by the
 * deadline.
 *
 * rill-test-labels: threaded
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rpc/pool_internal.h"
#include "tests/rpc/pool_test.h"
#include "util/testutil.h"

TestSuite(rpc_pool, .timeout = 60, .fini = rill_test_no_leaks);

Test(rpc_pool, one_connection_serves_many_calls_from_many_threads)
{
    struct pt_srv s;
    pt_srv_up(&s, "A");
    struct rill_loop_group *g = tx_group("pool", 2);
    struct rill_rpc_pool *p = pt_pool(g, NULL);
    char ans[16];
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(pt_call(p, s.uri, "who", false, ans, sizeof(ans), NULL), 0);
        cr_assert_str_eq(ans, "A");
    }
    /* Concurrent calls from this thread while the connection exists. */
    struct rill_rpc_pool_call *c[40];
    for (int i = 0; i < 40; i++)
        cr_assert_eq(rill_rpc_pool_call_start(p, s.uri, "t", "who", rt_buf("x"), NULL, &c[i]), 0);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(rill_rpc_pool_call_wait(c[i], TX_WAIT_NS), 0);
        cr_assert_eq(rill_rpc_pool_call_attempts(c[i]), 1);
        cr_assert_str_eq(rill_rpc_pool_call_endpoint(c[i]), s.uri);
        rill_rpc_pool_call_release(c[i]);
    }
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(s.rs, &st);
    cr_assert_eq(st.connections_total, 1, "calls share one connection (got %llu)",
                 (unsigned long long)st.connections_total);
    cr_assert_eq(atomic_load(&s.who_calls), 90);
    struct rill_rpc_pool_stats ps;
    rill_rpc_pool_stats(p, &ps);
    cr_assert_eq(ps.connects, 1);
    struct rill_rpc_endpoint_info ei;
    cr_assert_eq(rill_rpc_pool_endpoint_info(p, s.uri, &ei), 0);
    cr_assert(ei.up);
    cr_assert_eq(ei.connections, 1);
    cr_assert_eq(ei.calls, 90);
    cr_assert_eq(ei.in_flight, 0);
    cr_assert_eq(rill_rpc_pool_endpoint_info(p, "tcp://127.0.0.1:1", &ei), -ENOENT);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s);
}

Test(rpc_pool, several_connections_per_address)
{
    struct pt_srv s;
    pt_srv_up(&s, "A");
    struct rill_loop_group *g = tx_group("pool", 2);
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    o.conns_per_endpoint = 3;
    struct rill_rpc_pool *p = pt_pool(g, &o);
    for (int i = 0; i < 30; i++)
        cr_assert_eq(pt_call(p, s.uri, "who", false, NULL, 0, NULL), 0);
    /* The pool's connects complete when the kernel finishes the handshake;
     * the server counts a connection when its worker loop takes it, which a
     * loaded machine can delay past the last call. */
    struct rill_rpc_server_stats st;
    cr_assert(TX_EVENTUALLY((rill_rpc_server_stats(s.rs, &st), st.connections_total == 3)),
              "server saw %llu connections", (unsigned long long)st.connections_total);
    struct rill_rpc_endpoint_info ei;
    cr_assert_eq(rill_rpc_pool_endpoint_info(p, s.uri, &ei), 0);
    cr_assert_eq(ei.connections, 3);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s);
}

Test(rpc_pool, reconnects_after_the_server_closes)
{
    struct pt_srv s;
    pt_srv_up(&s, "A");
    struct rill_loop_group *g = tx_group("pool", 1);
    struct rill_rpc_pool *p = pt_pool(g, NULL);
    cr_assert_eq(pt_call(p, s.uri, "who", false, NULL, 0, NULL), 0);
    pt_srv_stop(&s);
    struct rill_rpc_pool_stats ps;
    cr_assert(TX_EVENTUALLY((rill_rpc_pool_stats(p, &ps), ps.closes == 1)),
              "the pool saw the close");
    /* Nobody listens: the call fails UNAVAILABLE, it does not hang. */
    int rc = pt_call(p, s.uri, "who", false, NULL, 0, NULL);
    cr_assert_eq(rc, RILL_EUNAVAILABLE, "got %s", rill_strerror(rc));
    pt_srv_restart(&s);
    char ans[16];
    cr_assert_eq(pt_call(p, s.uri, "who", false, ans, sizeof(ans), NULL), 0);
    cr_assert_str_eq(ans, "A");
    rill_rpc_pool_stats(p, &ps);
    cr_assert_eq(ps.connects, 2);
    cr_assert_geq(ps.connect_failures, 1);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s);
}

Test(rpc_pool, pongs_keep_an_idle_connection)
{
    struct pt_srv s;
    pt_srv_up(&s, "A");
    struct rill_loop_group *g = tx_group("pool", 1);
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    o.ping_idle_ns = 50 * RILL_NS_PER_MS;
    /* Generous, so a loaded machine's stall does not look like silence. */
    o.max_missed_pongs = 5;
    struct rill_rpc_pool *p = pt_pool(g, &o);
    cr_assert_eq(pt_call(p, s.uri, "who", false, NULL, 0, NULL), 0);
    struct rill_rpc_pool_stats ps;
    cr_assert(TX_EVENTUALLY((rill_rpc_pool_stats(p, &ps), ps.pongs >= 5)), "pongs came back");
    rill_rpc_pool_stats(p, &ps);
    cr_assert_eq(ps.heartbeat_closes, 0);
    cr_assert_eq(ps.closes, 0);
    cr_assert_geq(ps.pings_sent, ps.pongs);
    cr_assert_eq(pt_call(p, s.uri, "who", false, NULL, 0, NULL), 0);
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(s.rs, &st);
    cr_assert_eq(st.connections_total, 1);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s);
}

Test(rpc_pool, missed_pongs_close_the_connection)
{
    /* A listener that never accepts: the kernel completes the handshake
     * and buffers what we send, nobody ever answers. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t sl = sizeof(sin);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", ntohs(sin.sin_port));

    struct rill_loop_group *g = tx_group("pool", 1);
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    o.ping_idle_ns = 60 * RILL_NS_PER_MS;
    o.max_missed_pongs = 2;
    struct rill_rpc_pool *p = pt_pool(g, &o);
    struct rill_rpc_pool_call *c;
    cr_assert_eq(rill_rpc_pool_call_start(p, uri, "t", "who", rt_buf("x"), NULL, &c), 0);
    int rc = rill_rpc_pool_call_wait(c, TX_WAIT_NS);
    cr_assert_eq(rc, RILL_EUNAVAILABLE, "got %s", rill_strerror(rc));
    cr_assert_eq(rill_rpc_pool_call_status(c), RILL_RPC_UNAVAILABLE);
    rill_rpc_pool_call_release(c);
    struct rill_rpc_pool_stats ps;
    rill_rpc_pool_stats(p, &ps);
    cr_assert_eq(ps.heartbeat_closes, 1);
    cr_assert_eq(ps.pings_sent, 2, "two pings, then the close (sent %llu)",
                 (unsigned long long)ps.pings_sent);
    cr_assert_eq(ps.pongs, 0);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    close(fd);
}

static struct rill_rpc_pool *retry_pool(struct rill_loop_group *g, int attempts, uint64_t b0,
                                        uint64_t bmax)
{
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    o.max_attempts = attempts;
    o.backoff_initial_ns = b0;
    o.backoff_max_ns = bmax;
    return pt_pool(g, &o);
}

Test(rpc_pool, idempotent_calls_retry_busy_with_backoff)
{
    struct pt_srv s;
    pt_srv_up(&s, "A");
    struct rill_loop_group *g = tx_group("pool", 1);
    struct rill_rpc_pool *p = retry_pool(g, 4, 20 * RILL_NS_PER_MS, 100 * RILL_NS_PER_MS);
    atomic_store(&s.busy_left, 2);
    char ans[16];
    int attempts = 0;
    uint64_t t0 = rill_clock_now_ns();
    cr_assert_eq(pt_call(p, s.uri, "busy", true, ans, sizeof(ans), &attempts), 0);
    uint64_t took = rill_clock_now_ns() - t0;
    cr_assert_str_eq(ans, "A");
    cr_assert_eq(attempts, 3);
    cr_assert_eq(atomic_load(&s.busy_calls), 3);
    /* Two backoffs of at least half their nominal 20 and 40 ms. */
    cr_assert_geq(took, 30 * RILL_NS_PER_MS, "backed off (%llu ns)", (unsigned long long)took);
    struct rill_rpc_pool_stats ps;
    rill_rpc_pool_stats(p, &ps);
    cr_assert_eq(ps.retries, 2);

    /* Not idempotent: one attempt, the server's BUSY comes back. */
    atomic_store(&s.busy_calls, 0);
    atomic_store(&s.busy_left, 2);
    cr_assert_eq(pt_call(p, s.uri, "busy", false, NULL, 0, &attempts), RILL_EBUSY);
    cr_assert_eq(attempts, 1);
    cr_assert_eq(atomic_load(&s.busy_calls), 1);

    /* Attempts are capped. */
    atomic_store(&s.busy_calls, 0);
    atomic_store(&s.busy_left, 100);
    cr_assert_eq(pt_call(p, s.uri, "busy", true, NULL, 0, &attempts), RILL_EBUSY);
    cr_assert_eq(attempts, 4);
    cr_assert_eq(atomic_load(&s.busy_calls), 4);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s);
}

Test(rpc_pool, retries_stop_at_the_deadline)
{
    struct pt_srv s;
    pt_srv_up(&s, "A");
    struct rill_loop_group *g = tx_group("pool", 1);
    struct rill_rpc_pool *p = retry_pool(g, 16, 100 * RILL_NS_PER_MS, 400 * RILL_NS_PER_MS);
    atomic_store(&s.busy_left, 1000);
    struct rill_rpc_call_opts o;
    rill_rpc_call_opts_init(&o);
    o.idempotent = true;
    o.timeout_ns = 300 * RILL_NS_PER_MS;
    struct rill_rpc_pool_call *c;
    int rc = rill_rpc_pool_call_sync(p, s.uri, "t", "busy", NULL, &o, TX_WAIT_NS, &c);
    cr_assert(rc == RILL_EBUSY || rc == RILL_EDEADLINE, "got %s", rill_strerror(rc));
    /* 100 ms nominal backoff, then 200: a third one cannot fit in 300 ms. */
    cr_assert_lt(rill_rpc_pool_call_attempts(c), 4, "%d attempts", rill_rpc_pool_call_attempts(c));
    cr_assert_geq(rill_rpc_pool_call_attempts(c), 2);
    cr_assert_eq(atomic_load(&s.busy_calls), rill_rpc_pool_call_attempts(c));
    rill_rpc_pool_call_release(c);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s);
}

Test(rpc_pool, backoff_grows_to_the_cap_with_jitter)
{
    const uint64_t b0 = 50, cap = 1000;
    uint64_t nominal[] = { 0, 0, 50, 100, 200, 400, 800, 1000, 1000, 1000 };
    for (int a = 2; a < 10; a++) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint64_t r = 0; r < 2000; r += 7) {
            uint64_t b = rill__rpc_backoff_ns(b0, cap, a, r * 2654435761u);
            lo = b < lo ? b : lo;
            hi = b > hi ? b : hi;
        }
        cr_assert_geq(lo, nominal[a] / 2, "attempt %d", a);
        cr_assert_leq(hi, nominal[a], "attempt %d", a);
        cr_assert_lt(lo, hi, "attempt %d has jitter", a);
    }
}

Test(rpc_pool, bad_options_and_arguments)
{
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    struct rill_rpc_pool *p = NULL;
    cr_assert_eq(rill_rpc_pool_new(&o, &p), -EINVAL, "no group");
    struct rill_loop_group *g = tx_group("pool", 1);
    o.group = g;
    o.conns_per_endpoint = 0;
    cr_assert_eq(rill_rpc_pool_new(&o, &p), -EINVAL);
    o.conns_per_endpoint = 1;
    o.max_attempts = 0;
    cr_assert_eq(rill_rpc_pool_new(&o, &p), -EINVAL);
    o.max_attempts = 3;
    cr_assert_eq(rill_rpc_pool_new(&o, &p), 0);
    struct rill_rpc_pool_call *c = NULL;
    cr_assert_lt(rill_rpc_pool_call_start(p, "nonsense://x", "t", "who", rt_buf("x"), NULL, &c), 0);
    cr_assert_eq(rill_rpc_pool_call_start(p, NULL, "", "who", rt_buf("x"), NULL, &c), -EINVAL);
    cr_assert_null(c);
    /* Balanced with an empty set: UNAVAILABLE, not a hang. */
    cr_assert_eq(rill_rpc_pool_call_sync(p, NULL, "t", "who", NULL, NULL, TX_WAIT_NS, &c),
                 RILL_EUNAVAILABLE);
    cr_assert_str_eq(rill_rpc_pool_call_status_msg(c), "no endpoint is up");
    rill_rpc_pool_call_release(c);
    rill_rpc_pool_free(p);
    tx_group_free(g);
}
