/* rdma+tcp:// and the answers of a machine without an RDMA device. This
 * suite runs in both places (label "rdma" only, not "guest"):
 *
 * On a machine without a device (RXE_VM_IP unset): rill_rdma_available()
 * is -ENODEV, rdma:// fails with -ENODEV at once (connect and bind), a
 * server on rdma+tcp://127.0.0.1:0 listens on TCP only, and an rdma+tcp://
 * client falls back to TCP: the echo works over "tcp".
 *
 * In the Soft-RoCE guest (RXE_VM_IP set): rill_rdma_available() is 0,
 * rdma+tcp:// picks RDMA ("rdma") when the server offers it, the same
 * server takes plain tcp:// clients too, and an rdma+tcp:// client of a
 * TCP-only server falls back to TCP. */
#include "tests/rdma/rdma_test.h"

TestSuite(fallback, .timeout = 120, .fini = rill_test_no_leaks);

/* The address to use here: the device's in the guest, loopback outside. */
static const char *host_ip(void)
{
    return rt_in_guest() ? getenv("RXE_VM_IP") : "127.0.0.1";
}

struct side {
    _Atomic int children, rdma_children;
    char transport[16];
};

static int child_init(struct rill_channel *ch, void *arg)
{
    struct side *s = arg;
    if (rill_channel_is_rdma(ch))
        atomic_fetch_add(&s->rdma_children, 1);
    snprintf(s->transport, sizeof(s->transport), "%s", rill_channel_transport(ch));
    atomic_fetch_add(&s->children, 1);
    return tx_echo_init(ch, NULL);
}

/* Echo @n bytes over a new connection to @uri; returns the transport the
 * client's channel ended up on ("tcp" or "rdma"). */
static const char *echo_over(struct rill_loop_group *g, const char *uri, size_t n, bool *is_rdma)
{
    struct tx_collector *c = tx_collector_new(n);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);
    const char *t = rill_channel_transport(ch);
    *is_rdma = rill_channel_is_rdma(ch);
    rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(n, 0, 6)), NULL);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == n), "%s: %zu of %zu B came back", uri,
              atomic_load(&c->got), n);
    cr_assert_eq(rt_check(c->data, n, 0, 6), -1, "%s: the echo differs", uri);
    tx_close(ch);
    tx_collector_free(c);
    return t; /* a static string */
}

Test(fallback, availability)
{
    int rc = rill_rdma_available();
    if (rt_in_guest())
        cr_assert_eq(rc, 0, "the guest has rxe0: %s", rill_strerror(rc));
    else
        cr_assert_eq(rc, -ENODEV, "no RDMA device here: %s", rill_strerror(rc));
    cr_assert_eq(rill_rdma_available(), rc, "the same answer again");
}

Test(fallback, plain_rdma_without_a_device_fails_with_enodev)
{
    if (rt_in_guest())
        cr_skip_test("the guest has an RDMA device (covered by the guest suites)");
    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    uint64_t t0 = rill_clock_now_ns();
    struct rill_promise *f = NULL;
    int rc = rill_client_connect(&co, "rdma://127.0.0.1:7471", &f);
    if (rc == 0) {
        rc = rill_promise_wait(f, TX_WAIT_NS);
        cr_assert_null(rill_client_channel(f));
        rill_promise_release(f);
    }
    uint64_t ms = (rill_clock_now_ns() - t0) / RILL_NS_PER_MS;
    cr_assert_eq(rc, -ENODEV, "connect: %s", rill_strerror(rc));
    cr_assert_lt(ms, 2000, "no waiting for a device that is not there (%llu ms)",
                 (unsigned long long)ms);

    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = g;
    so.child_init = tx_echo_init;
    struct rill_server *s = NULL;
    rc = rill_server_bind(&so, "rdma://127.0.0.1:0", &s);
    if (rc == 0) {
        rc = rill_promise_wait(rill_server_bound(s), TX_WAIT_NS);
        rill_server_free(s);
    }
    cr_assert_eq(rc, -ENODEV, "bind: %s", rill_strerror(rc));
    tx_group_free(g);
    rt_no_regions();
}

Test(fallback, rdma_tcp_server_and_client)
{
    const char *ip = host_ip();
    bool guest = rt_in_guest();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct side side = { 0 };
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma+tcp", ip, 0);
    struct rill_server *srv = tx_server(boss, workers, uri, child_init, &side);
    int port = rt_server_port(srv);

    /* rdma+tcp:// client: RDMA in the guest, TCP without a device. */
    rt_uri(uri, sizeof(uri), "rdma+tcp", ip, port);
    bool rdma;
    const char *t = echo_over(workers, uri, 300000, &rdma);
    cr_assert_str_eq(t, guest ? "rdma" : "tcp", "%s went over %s", uri, t);
    cr_assert_eq(rdma, guest);
    cr_assert(TX_EVENTUALLY(atomic_load(&side.children) == 1));
    cr_assert_str_eq(side.transport, guest ? "rdma" : "tcp");
    cr_assert_eq(atomic_load(&side.rdma_children), guest ? 1 : 0);

    /* A plain tcp:// client of the same server. */
    rt_uri(uri, sizeof(uri), "tcp", ip, port);
    t = echo_over(workers, uri, 100000, &rdma);
    cr_assert_str_eq(t, "tcp");
    cr_assert_not(rdma);
    cr_assert(TX_EVENTUALLY(atomic_load(&side.children) == 2));
    cr_assert_str_eq(side.transport, "tcp");

    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    rt_no_regions();
}

Test(fallback, rdma_tcp_client_of_a_tcp_only_server_falls_back)
{
    const char *ip = host_ip();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct side side = { 0 };
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "tcp", ip, 0);
    struct rill_server *srv = tx_server(boss, workers, uri, child_init, &side);
    rt_uri(uri, sizeof(uri), "rdma+tcp", ip, rt_server_port(srv));
    uint64_t t0 = rill_clock_now_ns();
    bool rdma;
    const char *t = echo_over(workers, uri, 200000, &rdma);
    cr_assert_str_eq(t, "tcp", "%s went over %s", uri, t);
    cr_assert_not(rdma);
    cr_assert_str_eq(side.transport, "tcp");
    fprintf(stderr, "fallback: %s connected over tcp and echoed in %.2f s\n", uri,
            (double)(rill_clock_now_ns() - t0) / 1e9);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    rt_no_regions();
}
