/* Load balancing over several servers on loopback: the pick policies on
 * their own, round-robin and least-outstanding distribution counted per
 * server, failover when a server stops (idempotent calls retry elsewhere,
 * the endpoint is marked down) and recovery when it comes back on the
 * same port (background reconnect marks it up, calls reach it again).
 *
 * rill-test-labels: threaded
 */
#include "rpc/pool_internal.h"
#include "tests/rpc/pool_test.h"
#include "util/testutil.h"

TestSuite(rpc_balancer, .timeout = 60, .fini = rill_test_no_leaks);

#define EP(i) ((struct rill__rpc_endpoint *)(uintptr_t)(0x100 + (i)))

Test(rpc_balancer, pick_policies)
{
    struct rill__rpc_lb_view v[3] = { { EP(0), true, 5 }, { EP(1), true, 1 }, { EP(2), true, 3 } };
    for (uint64_t s = 0; s < 6; s++)
        cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_ROUND_ROBIN, v, 3, NULL, s), (int)(s % 3));
    for (uint64_t s = 0; s < 6; s++)
        cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_LEAST_OUTSTANDING, v, 3, NULL, s), 1);
    /* Down endpoints are skipped; the one to avoid only when alone. */
    v[1].up = false;
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_ROUND_ROBIN, v, 3, NULL, 1), 2);
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_LEAST_OUTSTANDING, v, 3, NULL, 0), 2);
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_LEAST_OUTSTANDING, v, 3, EP(2), 0), 0);
    v[0].up = false;
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_ROUND_ROBIN, v, 3, EP(2), 0), 2);
    v[2].up = false;
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_ROUND_ROBIN, v, 3, NULL, 0), -1);
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_LEAST_OUTSTANDING, v, 0, NULL, 0), -1);
    /* Ties rotate. */
    struct rill__rpc_lb_view t[2] = { { EP(0), true, 2 }, { EP(1), true, 2 } };
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_LEAST_OUTSTANDING, t, 2, NULL, 0), 0);
    cr_assert_eq(rill__rpc_lb_pick(RILL_RPC_LB_LEAST_OUTSTANDING, t, 2, NULL, 1), 1);
}

static void set_eps(struct rill_rpc_pool *p, struct pt_srv *s, int n)
{
    const char *u[4];
    for (int i = 0; i < n; i++)
        u[i] = s[i].uri;
    cr_assert_eq(rill_rpc_pool_set_endpoints(p, u, (size_t)n), 0);
}

Test(rpc_balancer, round_robin_spreads_calls_evenly)
{
    struct pt_srv s[3];
    pt_srv_up(&s[0], "A");
    pt_srv_up(&s[1], "B");
    pt_srv_up(&s[2], "C");
    struct rill_loop_group *g = tx_group("pool", 2);
    struct rill_rpc_pool *p = pt_pool(g, NULL);
    set_eps(p, s, 3);
    char buf[3 * RILL_ADDR_STRLEN];
    cr_assert_eq(rill_rpc_pool_endpoints(p, buf, sizeof(buf)), 3);
    cr_assert_str_eq(buf, s[0].uri);
    for (int i = 0; i < 30; i++)
        cr_assert_eq(pt_call(p, NULL, "who", false, NULL, 0, NULL), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(atomic_load(&s[i].who_calls), 10, "server %s got %d", s[i].id,
                     atomic_load(&s[i].who_calls));
    rill_rpc_pool_free(p);
    tx_group_free(g);
    for (int i = 0; i < 3; i++)
        pt_srv_down(&s[i]);
}

Test(rpc_balancer, least_outstanding_avoids_the_busy_server)
{
    struct pt_srv s[2];
    pt_srv_up(&s[0], "A");
    pt_srv_up(&s[1], "B");
    struct rill_loop_group *g = tx_group("pool", 2);
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    o.lb = RILL_RPC_LB_LEAST_OUTSTANDING;
    struct rill_rpc_pool *p = pt_pool(g, &o);
    set_eps(p, s, 2);
    /* The first call (tie, first ticket) lands on A and stays there. */
    struct rill_rpc_pool_call *held;
    cr_assert_eq(rill_rpc_pool_call_start(p, NULL, "t", "hold", NULL, NULL, &held), 0);
    cr_assert(TX_EVENTUALLY(atomic_load(&s[0].held) != NULL), "the held call reached A");
    for (int i = 0; i < 10; i++)
        cr_assert_eq(pt_call(p, NULL, "who", false, NULL, 0, NULL), 0);
    cr_assert_eq(atomic_load(&s[0].who_calls), 0);
    cr_assert_eq(atomic_load(&s[1].who_calls), 10);
    struct rill_rpc_endpoint_info ei;
    cr_assert_eq(rill_rpc_pool_endpoint_info(p, s[0].uri, &ei), 0);
    cr_assert_eq(ei.in_flight, 1);
    pt_release_held(&s[0]);
    cr_assert_eq(rill_rpc_pool_call_wait(held, TX_WAIT_NS), 0);
    rill_rpc_pool_call_release(held);
    /* Equal loads again: the calls alternate. */
    for (int i = 0; i < 10; i++)
        cr_assert_eq(pt_call(p, NULL, "who", false, NULL, 0, NULL), 0);
    cr_assert_eq(atomic_load(&s[0].who_calls), 5);
    cr_assert_eq(atomic_load(&s[1].who_calls), 15);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s[0]);
    pt_srv_down(&s[1]);
}

Test(rpc_balancer, failover_and_recovery)
{
    struct pt_srv s[2];
    pt_srv_up(&s[0], "A");
    pt_srv_up(&s[1], "B");
    struct rill_loop_group *g = tx_group("pool", 2);
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    o.reconnect_initial_ns = 20 * RILL_NS_PER_MS;
    o.reconnect_max_ns = 200 * RILL_NS_PER_MS;
    o.backoff_initial_ns = 5 * RILL_NS_PER_MS;
    o.backoff_max_ns = 50 * RILL_NS_PER_MS;
    struct rill_rpc_pool *p = pt_pool(g, &o);
    set_eps(p, s, 2);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(pt_call(p, NULL, "who", true, NULL, 0, NULL), 0);
    cr_assert_eq(atomic_load(&s[0].who_calls), 5);
    cr_assert_eq(atomic_load(&s[1].who_calls), 5);

    /* A in-flight call on A fails over to B when A goes away. */
    struct rill_rpc_call_opts co;
    rill_rpc_call_opts_init(&co);
    co.idempotent = true;
    struct rill_rpc_pool_call *held;
    cr_assert_eq(rill_rpc_pool_call_start(p, s[0].uri, "t", "hold", NULL, &co, &held), 0);
    cr_assert(TX_EVENTUALLY(atomic_load(&s[0].held) != NULL));
    pt_srv_stop(&s[0]);
    /* Targeted at A: its retries find nobody there. */
    cr_assert_eq(rill_rpc_pool_call_wait(held, TX_WAIT_NS), RILL_EUNAVAILABLE);
    cr_assert_eq(rill_rpc_pool_call_attempts(held), 3);
    rill_rpc_pool_call_release(held);
    struct rill_rpc_server_call *orphan = atomic_exchange(&s[0].held, NULL);
    rill_rpc_server_call_fail(orphan, RILL_RPC_CANCELLED, "gone"); /* dropped: no connection */

    struct rill_rpc_endpoint_info ei;
    cr_assert(TX_EVENTUALLY((rill_rpc_pool_endpoint_info(p, s[0].uri, &ei), !ei.up)),
              "A is marked down");
    atomic_store(&s[1].who_calls, 0);
    for (int i = 0; i < 20; i++) {
        char ans[16];
        cr_assert_eq(pt_call(p, NULL, "who", true, ans, sizeof(ans), NULL), 0, "call %d", i);
        cr_assert_str_eq(ans, "B");
    }
    cr_assert_eq(atomic_load(&s[1].who_calls), 20);

    pt_srv_restart(&s[0]);
    cr_assert(TX_EVENTUALLY((rill_rpc_pool_endpoint_info(p, s[0].uri, &ei), ei.up)),
              "A is marked up again");
    struct rill_rpc_pool_stats ps;
    rill_rpc_pool_stats(p, &ps);
    cr_assert_geq(ps.marked_down, 1);
    cr_assert_geq(ps.marked_up, 1);
    atomic_store(&s[0].who_calls, 0);
    atomic_store(&s[1].who_calls, 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(pt_call(p, NULL, "who", true, NULL, 0, NULL), 0);
    cr_assert_eq(atomic_load(&s[0].who_calls), 5, "A serves again");
    cr_assert_eq(atomic_load(&s[1].who_calls), 5);

    /* Leaving the set closes the endpoint's connections. */
    set_eps(p, &s[1], 1);
    cr_assert(TX_EVENTUALLY((rill_rpc_pool_endpoint_info(p, s[0].uri, &ei), ei.connections == 0)));
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s[0]);
    pt_srv_down(&s[1]);
}
