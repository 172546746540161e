/* The server bootstrap: several listeners with SO_REUSEPORT on several boss
 * loops, shutdown with live connections (every child closes, every write
 * promise completes, nothing leaks), closing the listeners while children
 * live on, a child init that refuses the connection, the listener's own
 * pipeline, and a stale Unix socket file left by a dead server.
 *
 * rill-test-labels: threaded
 */
#include "tests/transport/tx.h"

#include <sys/socket.h>
#include <sys/un.h>

#include "transport/epoll/epoll_internal.h"
#include "util/testutil.h"

TestSuite(server, .timeout = 60, .fini = rill_test_no_leaks);

Test(server, reuseport_listeners_share_the_port)
{
    struct rill_loop_group *boss = tx_group("boss", 2), *workers = tx_group("work", 2);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = boss;
    so.workers = workers;
    so.child_init = tx_echo_init;
    so.nlisteners = 2;
    struct rill_server *srv;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(srv), TX_WAIT_NS), 0);
    cr_assert_eq(rill_server_listener_count(srv), 2);
    struct rill_channel *l0 = rill_server_listener(srv, 0), *l1 = rill_server_listener(srv, 1);
    cr_assert_neq(rill_channel_loop(l0), rill_channel_loop(l1), "one listener per boss loop");
    cr_assert_neq(rill_addr_port(rill_server_local_addr(srv)), 0);
    cr_assert(rill_addr_equal(rill_channel_local_addr(l0), rill_channel_local_addr(l1)));
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));

    struct rill_channel *ch[64];
    for (int i = 0; i < 64; i++)
        ch[i] = tx_connect(workers, uri, NULL, NULL);
    cr_assert(TX_EVENTUALLY(rill_server_accepted(srv) == 64));
    cr_assert_gt(rill__epoll_server_accepted(l0), 0, "the kernel spread the connections");
    cr_assert_gt(rill__epoll_server_accepted(l1), 0);
    for (int i = 0; i < 64; i++)
        tx_close(ch[i]);
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
}

/* ---- shutdown with live connections ---- */

struct tally {
    _Atomic int ok, failed;
};

static void tally_done(struct rill_promise *p, void *arg)
{
    struct tally *t = arg;
    if (rill_promise_result(p, NULL) == 0)
        atomic_fetch_add(&t->ok, 1);
    else
        atomic_fetch_add(&t->failed, 1);
}

Test(server, shutdown_with_live_connections)
{
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct rill_loop_group *clients = tx_group("cli", 2);
    struct rill_server *srv = tx_server(boss, workers, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));

    enum { N = 40 };
    struct tx_collector *c[N];
    struct rill_channel *ch[N];
    struct tally t = { 0 };
    static uint8_t big[256 * 1024];
    for (int i = 0; i < N; i++) {
        c[i] = tx_collector_new(0);
        ch[i] = tx_connect(clients, uri, tx_collector_init, c[i]);
    }
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == N));
    /* Traffic in flight when the server goes away. */
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 8; k++) {
            struct rill_promise *p = tx_promise(NULL);
            rill_promise_add_listener(p, tally_done, &t);
            rill_channel_write_and_flush(ch[i], rill_buf_msg(tx_buf(big, sizeof(big))), p);
            rill_promise_release(p);
        }
    }
    struct rill_promise *closed = rill_server_close(srv, true);
    cr_assert_eq(rill_promise_wait(closed, TX_WAIT_NS), 0);
    cr_assert_eq(rill_server_child_count(srv), 0);
    /* The clients see their connections end, every write settles. */
    for (int i = 0; i < N; i++)
        cr_assert(TX_EVENTUALLY(atomic_load(&c[i]->inactive) == 1), "client %d", i);
    cr_assert(TX_EVENTUALLY(atomic_load(&t.ok) + atomic_load(&t.failed) == N * 8));
    /* New connections are refused. */
    int err;
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = clients;
    cr_assert_null(tx_connect_opts(&co, uri, &err));
    cr_assert_eq(err, -ECONNREFUSED);

    rill_server_free(srv);
    for (int i = 0; i < N; i++) {
        rill_channel_release(ch[i]);
        tx_collector_free(c[i]);
    }
    tx_group_free(clients);
    tx_group_free(workers);
    tx_group_free(boss);
}

Test(server, closing_the_listeners_leaves_the_children)
{
    struct rill_loop_group *g = tx_group("loop", 2);
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    struct tx_collector *c = tx_collector_new(64);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);
    cr_assert_eq(rill_promise_wait(rill_server_close(srv, false), TX_WAIT_NS), 0);
    rill_server_free(srv); /* children outlive the server object */
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf("still", 5)), NULL);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == 5));
    tx_close(ch);
    tx_group_free(g);
    tx_collector_free(c);
}

static int refuse_init(struct rill_channel *ch, void *arg)
{
    (void)ch;
    (void)arg;
    return -EACCES;
}

Test(server, child_init_error_closes_the_child)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", refuse_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    struct tx_collector *c = tx_collector_new(0);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);
    cr_assert(TX_EVENTUALLY(!rill_channel_is_open(ch)), "the refused connection ends");
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    rill_channel_release(ch);
    tx_server_free(srv, true);
    tx_group_free(g);
    tx_collector_free(c);
}

Test(server, listener_pipeline_sees_its_lifecycle)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    struct tx_collector *lc = tx_collector_new(0);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = g;
    so.child_init = tx_echo_init;
    so.server_init = tx_collector_init;
    so.server_arg = lc;
    rill_channel_opts_set(&so.server_opts, RILL_OPT_BACKLOG, 16);
    struct rill_server *srv;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(srv), TX_WAIT_NS), 0);
    cr_assert(TX_EVENTUALLY(atomic_load(&lc->active) == 1));
    struct rill_channel *l = rill_server_listener(srv, 0);
    cr_assert(rill_channel_is_active(l));
    cr_assert_str_eq(rill_channel_transport(l), "tcp");
    tx_server_free(srv, true);
    cr_assert_eq(atomic_load(&lc->inactive), 1);
    tx_group_free(g);
    tx_collector_free(lc);
}

Test(server, unix_replaces_a_stale_socket_file)
{
    char uri[96], path[64];
    snprintf(path, sizeof(path), "/tmp/rill-stale-%d.sock", (int)getpid());
    snprintf(uri, sizeof(uri), "unix://%s", path);
    /* A dead server's socket file. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    strcpy(sun.sun_path, path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    cr_assert_eq(access(path, F_OK), 0);

    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_server *srv = tx_server(g, NULL, uri, tx_echo_init, NULL);
    struct tx_collector *c = tx_collector_new(16);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);
    cr_assert_str_eq(rill_channel_transport(ch), "unix");
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf("u", 1)), NULL);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == 1));

    /* A live server's file is not taken over. */
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = g;
    so.child_init = tx_echo_init;
    struct rill_server *other;
    cr_assert_eq(rill_server_bind(&so, uri, &other), -EADDRINUSE);

    tx_close(ch);
    tx_server_free(srv, true);
    cr_assert_eq(access(path, F_OK), -1);
    tx_group_free(g);
    tx_collector_free(c);
}

Test(server, single_loops_instead_of_groups)
{
    struct rill_loop_opts lo;
    rill_loop_opts_init(&lo);
    struct rill_loop *loop;
    cr_assert_eq(rill_loop_new(&lo, &loop), 0);
    cr_assert_eq(rill_loop_start(loop), 0);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss_loop = loop;
    so.child_init = tx_echo_init;
    struct rill_server *srv;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(srv), TX_WAIT_NS), 0);
    cr_assert_eq(rill_channel_loop(rill_server_listener(srv, 0)), loop);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));

    struct tx_collector *c = tx_collector_new(16);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.loop = loop;
    co.init = tx_collector_init;
    co.arg = c;
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    cr_assert_not_null(ch);
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf("one", 3)), NULL);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == 3));
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 1));
    tx_close(ch);
    tx_server_free(srv, true);
    rill_loop_shutdown(loop, 0, RILL_NS_PER_S);
    cr_assert_eq(rill_promise_wait(rill_loop_termination(loop), TX_WAIT_NS), 0);
    rill_loop_free(loop);
    tx_collector_free(c);
}

Test(server, group_shutdown_closes_live_connections)
{
    /* No close calls at all: shutting the loops down closes every channel
     * registered on them (listeners, children, clients) and releases what
     * their queues held. */
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct rill_loop_group *clients = tx_group("cli", 1);
    struct rill_server *srv = tx_server(boss, workers, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    enum { N = 10 };
    struct tx_collector *c[N];
    struct rill_channel *ch[N];
    static uint8_t big[128 * 1024];
    for (int i = 0; i < N; i++) {
        c[i] = tx_collector_new(0);
        ch[i] = tx_connect(clients, uri, tx_collector_init, c[i]);
        for (int k = 0; k < 4; k++)
            rill_channel_write_and_flush(ch[i], rill_buf_msg(tx_buf(big, sizeof(big))), NULL);
    }
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == N));

    struct rill_loop_group *groups[] = { workers, clients, boss };
    for (int i = 0; i < 3; i++)
        cr_assert_eq(
            rill_promise_wait(rill_loop_group_shutdown(groups[i], 0, RILL_NS_PER_S), TX_WAIT_NS),
            0);
    cr_assert_eq(rill_server_child_count(srv), 0, "the children closed");
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&c[i]->inactive), 1, "client %d saw the end", i);
    rill_server_free(srv); /* its listeners closed with the boss loop */
    for (int i = 0; i < 3; i++)
        rill_loop_group_free(groups[i]);
    for (int i = 0; i < N; i++) {
        cr_assert_not(rill_channel_is_open(ch[i]));
        rill_channel_release(ch[i]);
        tx_collector_free(c[i]);
    }
}
