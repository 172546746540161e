/* Echo over real sockets through the bootstraps: TCP over IPv4 and IPv6,
 * Unix paths and abstract names, edge- and level-triggered channels,
 * composite buffers gathered into one write, large transfers that fill the
 * socket (partial writes resumed on EPOLLOUT), and 1,000 concurrent
 * loopback connections.
 *
 * rill-test-labels: threaded
 */
#include "tests/transport/tx.h"

#include <netinet/in.h>
#include <sys/resource.h>

#include "rill/composite.h"
#include "util/testutil.h"

TestSuite(echo, .timeout = 60, .fini = rill_test_no_leaks);

static uint8_t pat(size_t i)
{
    return (uint8_t)(i * 7 + (i >> 10));
}

/* Send @total bytes in @chunk pieces from the test thread, expect them back. */
static void echo_roundtrip(const char *uri, size_t total, size_t chunk,
                           const struct rill_channel_opts *child_opts,
                           const struct rill_channel_opts *client_opts)
{
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = boss;
    so.workers = workers;
    so.child_init = tx_echo_init;
    if (child_opts)
        so.child_opts = *child_opts;
    struct rill_server *srv;
    cr_assert_eq(rill_server_bind(&so, uri, &srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(srv), TX_WAIT_NS), 0);
    char real[RILL_ADDR_STRLEN];
    tx_server_uri(srv, real, sizeof(real));

    struct tx_collector *c = tx_collector_new(total);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = workers;
    co.init = tx_collector_init;
    co.arg = c;
    if (client_opts)
        co.opts = *client_opts;
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, real, &err);
    cr_assert_not_null(ch, "connect %s: %s", real, rill_strerror(err));
    cr_assert(rill_channel_is_active(ch));
    cr_assert_not_null(rill_channel_remote_addr(ch));

    uint8_t *src = malloc(chunk);
    for (size_t off = 0; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk;
        for (size_t i = 0; i < n; i++)
            src[i] = pat(off + i);
        rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf(src, n)), NULL);
    }
    free(src);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) >= total), "got %zu of %zu", atomic_load(&c->got),
              total);
    cr_assert_eq(atomic_load(&c->got), total);
    for (size_t i = 0; i < total; i++)
        if (c->data[i] != pat(i))
            cr_assert_fail("byte %zu differs", i);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 1));

    tx_close(ch);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->inactive) == 1));
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0), "the peer's EOF closes the child");
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    tx_collector_free(c);
}

Test(echo, tcp_ipv4)
{
    echo_roundtrip("tcp://127.0.0.1:0", 100000, 1000, NULL, NULL);
}

Test(echo, tcp_ipv6)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok)
        cr_skip_test("no IPv6 loopback on this machine");
    echo_roundtrip("tcp://[::1]:0", 100000, 999, NULL, NULL);
}

Test(echo, unix_path)
{
    char uri[64];
    snprintf(uri, sizeof(uri), "unix:///tmp/rill-echo-%d.sock", (int)getpid());
    echo_roundtrip(uri, 100000, 1000, NULL, NULL);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/rill-echo-%d.sock", (int)getpid());
    cr_assert_eq(access(path, F_OK), -1, "the socket file is removed at close");
}

Test(echo, unix_abstract)
{
    char uri[64];
    snprintf(uri, sizeof(uri), "unix://@rill-echo-%d", (int)getpid());
    echo_roundtrip(uri, 50000, 500, NULL, NULL);
}

Test(echo, large_transfer_fills_the_socket)
{
    /* 8 MiB in 256 KiB writes with small socket buffers: writes go partial
     * and resume on EPOLLOUT, reads grow to the largest buffer size. */
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_SO_SNDBUF, 16384);
    rill_channel_opts_set(&o, RILL_OPT_WRITE_HIGH_WATER, 1 << 20);
    echo_roundtrip("tcp://127.0.0.1:0", 8u << 20, 256u << 10, &o, &o);
}

Test(echo, level_triggered)
{
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_EDGE_TRIGGERED, 0);
    rill_channel_opts_set(&o, RILL_OPT_SO_SNDBUF, 16384);
    echo_roundtrip("tcp://127.0.0.1:0", 4u << 20, 100000, &o, &o);
}

Test(echo, tiny_reads_many_batches)
{
    /* 64-byte read buffers and 2 reads per wake-up: batches stop at the
     * limit with input left, and a task continues them. */
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_RECV_BUF_MAX, 64);
    rill_channel_opts_set(&o, RILL_OPT_RECV_BUF_INIT, 64);
    rill_channel_opts_set(&o, RILL_OPT_MAX_READS, 2);
    echo_roundtrip("tcp://127.0.0.1:0", 200000, 5000, &o, &o);
}

/* ---- composites: one gathered write ---- */

Test(echo, composite_components_are_gathered)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    struct tx_collector *c = tx_collector_new(4096);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);

    /* 300 components of 10 bytes plus 3 flat buffers, one flush. */
    struct rill_buf *comp;
    cr_assert_eq(rill_buf_composite_new(&comp), 0);
    char expect[4096];
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        char piece[10];
        memset(piece, 'a' + i % 26, sizeof(piece));
        memcpy(expect + n, piece, sizeof(piece));
        n += sizeof(piece);
        cr_assert_eq(rill_buf_composite_add(comp, tx_buf(piece, sizeof(piece))), 0);
    }
    rill_channel_write(ch, rill_buf_msg(comp), NULL);
    for (int i = 0; i < 3; i++) {
        memcpy(expect + n, "XYZ", 3);
        n += 3;
        rill_channel_write(ch, rill_buf_msg(tx_buf("XYZ", 3)), NULL);
    }
    struct rill_promise *p = tx_promise(NULL);
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf("!", 1)), p);
    expect[n++] = '!';
    cr_assert_eq(tx_wait_release(p), 0, "the last write's promise completes");
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == n));
    cr_assert_eq(memcmp(c->data, expect, n), 0);

    tx_close(ch);
    tx_server_free(srv, true);
    tx_group_free(g);
    tx_collector_free(c);
}

/* ---- many connections ---- */

#define NCONN 1000

struct many {
    _Atomic size_t echoed;
};

static void many_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct many *m = rill_ctx_arg(ctx);
    atomic_fetch_add(&m->echoed, rill_buf_readable(rill_buf_from_msg(msg)));
    rill_msg_release(msg);
}

static const struct rill_handler many_handler = { .name = "count", .read = many_read };

static int many_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "count", &many_handler, arg);
}

Test(echo, thousand_concurrent_connections)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * NCONN + 100) {
        rl.rlim_cur = rl.rlim_max < 2 * NCONN + 100 ? rl.rlim_max : 2 * NCONN + 100;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < 2 * NCONN + 100)
            cr_skip_test("RLIMIT_NOFILE too low for %d connections", NCONN);
    }
    uint64_t t0 = rill_clock_now_ns();
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct rill_loop_group *clients = tx_group("cli", 2);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = boss;
    so.workers = workers;
    so.child_init = tx_echo_init;
    so.nlisteners = 1;
    struct rill_server *srv;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(srv), TX_WAIT_NS), 0);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));

    struct many m = { 0 };
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = clients;
    co.init = many_init;
    co.arg = &m;
    struct rill_promise **f = calloc(NCONN, sizeof(*f));
    struct rill_channel **ch = calloc(NCONN, sizeof(*ch));
    for (int i = 0; i < NCONN; i++)
        cr_assert_eq(rill_client_connect(&co, uri, &f[i]), 0);
    for (int i = 0; i < NCONN; i++) {
        int r = rill_promise_wait(f[i], TX_WAIT_NS);
        cr_assert_eq(r, 0, "connection %d: %s", i, rill_strerror(r));
        ch[i] = rill_client_channel(f[i]);
        rill_promise_release(f[i]);
    }
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == NCONN));

    /* Ten rounds: every connection sends 100 bytes, all are echoed. */
    char msg[100];
    memset(msg, 'm', sizeof(msg));
    for (int round = 1; round <= 10; round++) {
        for (int i = 0; i < NCONN; i++)
            rill_channel_write_and_flush(ch[i], rill_buf_msg(tx_buf(msg, sizeof(msg))), NULL);
        size_t want = (size_t)round * NCONN * sizeof(msg);
        cr_assert(TX_EVENTUALLY(atomic_load(&m.echoed) == want), "round %d: %zu of %zu", round,
                  atomic_load(&m.echoed), want);
    }
    for (int i = 0; i < NCONN; i++)
        tx_close(ch[i]);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    cr_assert_eq(rill_server_accepted(srv), NCONN);
    tx_server_free(srv, true);
    tx_group_free(clients);
    tx_group_free(workers);
    tx_group_free(boss);
    free(f);
    free(ch);
    uint64_t secs = (rill_clock_now_ns() - t0) / RILL_NS_PER_S;
    cr_assert_lt(secs, 50, "1,000 connections took %llu s", (unsigned long long)secs);
}
