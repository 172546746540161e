/* Many RDMA channels on one loop: 64 clients and their 64 server children
 * all run on a single worker loop (so they share its completion queue)
 * and echo concurrently, every byte checked per channel. Once with
 * completions through epoll, then busy-polling and adaptive with 32 (the
 * connection handshakes dominate the time in the emulated guest).
 *
 * rill-test-labels: guest
 */
#include "tests/rdma/rdma_test.h"

TestSuite(many, .timeout = 240, .fini = rill_test_no_leaks);

#define NCH    64 /* at most */
#define ROUNDS 4

/* Bytes channel @i sends in round @r: 1 B .. 40 KiB, different per channel. */
static size_t size_of(int i, int r)
{
    static const size_t base[ROUNDS] = { 1, 1000, 17000, 40000 };
    return base[r] + (size_t)i * 37;
}

static void many_echo(enum rill_busy_poll bp, int nch)
{
    const char *ip = rt_ip();
    uint64_t t0 = rill_clock_now_ns();
    struct rill_loop_group *boss = tx_group("boss", 1);
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.busy_poll = bp;
    struct rill_loop_group *one = tx_group_from(&go, "one", 1);
    cr_assert_eq(rill_loop_busy_poll(rill_loop_group_at(one, 0)), bp);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(boss, one, uri, tx_echo_init, NULL);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));

    size_t total = 0;
    for (int r = 0; r < ROUNDS; r++)
        total += size_of(nch - 1, r);
    struct tx_collector *c[NCH];
    struct rill_channel *ch[NCH];
    struct rill_promise *f[NCH];
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = one;
    co.init = tx_collector_init;
    for (int i = 0; i < nch; i++) {
        c[i] = tx_collector_new(total);
        co.arg = c[i];
        cr_assert_eq(rill_client_connect(&co, uri, &f[i]), 0);
    }
    for (int i = 0; i < nch; i++) {
        int rc = rill_promise_wait(f[i], TX_WAIT_NS);
        cr_assert_eq(rc, 0, "connection %d: %s", i, rill_strerror(rc));
        ch[i] = rill_client_channel(f[i]);
        rill_promise_release(f[i]);
        cr_assert(rill_channel_is_rdma(ch[i]));
        cr_assert_eq(rill_channel_loop(ch[i]), rill_loop_group_at(one, 0));
    }
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == (size_t)nch));
    double t_connect = (double)(rill_clock_now_ns() - t0) / 1e9;

    /* All channels send each round before anything is awaited. */
    size_t want[NCH] = { 0 };
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < nch; i++) {
            size_t n = size_of(i, r);
            rill_channel_write_and_flush(ch[i], rill_buf_msg(rt_pattern(n, want[i], (unsigned)i)),
                                         NULL);
            want[i] += n;
        }
    for (int i = 0; i < nch; i++) {
        cr_assert(TX_EVENTUALLY(atomic_load(&c[i]->got) >= want[i]),
                  "channel %d: %zu of %zu B came back", i, atomic_load(&c[i]->got), want[i]);
        cr_assert_eq(atomic_load(&c[i]->got), want[i]);
        pthread_mutex_lock(&c[i]->lock);
        ssize_t bad = rt_check(c[i]->data, want[i], 0, (unsigned)i);
        pthread_mutex_unlock(&c[i]->lock);
        cr_assert_eq(bad, -1, "channel %d: byte %zd differs", i, bad);
        cr_assert_eq(atomic_load(&c[i]->exceptions), 0);
    }
    fprintf(stderr, "many (busy poll %d): %d channels connected in %.1f s, echoed in %.1f s\n",
            (int)bp, nch, t_connect, (double)(rill_clock_now_ns() - t0) / 1e9 - t_connect);
    for (int i = 0; i < nch; i++)
        tx_close(ch[i]);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    cr_assert_eq(rill_server_accepted(srv), (uint64_t)nch);
    tx_server_free(srv, true);
    tx_group_free(one);
    tx_group_free(boss);
    for (int i = 0; i < nch; i++)
        tx_collector_free(c[i]);
    rt_no_regions();
}

Test(many, sixty_four_channels_on_one_loop)
{
    many_echo(RILL_BUSY_POLL_OFF, 64);
}

Test(many, thirty_two_channels_busy_polling)
{
    many_echo(RILL_BUSY_POLL_ON, 32);
}

Test(many, thirty_two_channels_adaptive_polling)
{
    many_echo(RILL_BUSY_POLL_ADAPTIVE, 32);
}
