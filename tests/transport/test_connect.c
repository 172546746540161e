/* Client connects through the bootstrap: success with the channel in the
 * future, refused (TCP and Unix), timeout against a listener whose backlog
 * is full, a failing init callback, binding the local side first, and
 * address errors that come back synchronously.
 *
 * rill-test-labels: threaded
 */
#include "tests/transport/tx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rill/rdma.h"
#include "util/testutil.h"

TestSuite(connect, .timeout = 60, .fini = rill_test_no_leaks);

/* A port nobody listens on: bind one, read it, close it. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int connect_error(struct rill_loop_group *g, const char *uri, int64_t timeout_ms,
                         rill_channel_init_fn *init, void *arg)
{
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = init;
    co.arg = arg;
    if (timeout_ms >= 0)
        rill_channel_opts_set(&co.opts, RILL_OPT_CONNECT_TIMEOUT_MS, timeout_ms);
    int err = 0;
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    if (ch)
        tx_close(ch);
    return err;
}

Test(connect, succeeds_with_an_active_channel)
{
    struct rill_loop_group *g = tx_group("loop", 2);
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    struct tx_collector *c = tx_collector_new(16);
    struct rill_channel *ch = tx_connect(g, uri, tx_collector_init, c);
    cr_assert(rill_channel_is_active(ch));
    cr_assert_eq(atomic_load(&c->active), 1, "active fired before the future completed");
    cr_assert_str_eq(rill_channel_transport(ch), "tcp");
    cr_assert(rill_addr_equal(rill_channel_remote_addr(ch), rill_server_local_addr(srv)));
    cr_assert_not_null(rill_channel_local_addr(ch));
    cr_assert_neq(rill_addr_port(rill_channel_local_addr(ch)), 0);
    tx_close(ch);
    cr_assert_eq(atomic_load(&c->inactive), 1);
    tx_server_free(srv, true);
    tx_group_free(g);
    tx_collector_free(c);
}

Test(connect, refused_tcp)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", free_port());
    cr_assert_eq(connect_error(g, uri, -1, NULL, NULL), -ECONNREFUSED);
    tx_group_free(g);
}

Test(connect, refused_unix)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    char uri[64];
    snprintf(uri, sizeof(uri), "unix:///tmp/rill-nobody-%d.sock", (int)getpid());
    cr_assert_eq(connect_error(g, uri, -1, NULL, NULL), -ENOENT);
    /* A socket file nobody listens on. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse(uri, &a), 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a.sa, a.len), 0);
    cr_assert_eq(connect_error(g, uri, -1, NULL, NULL), -ECONNREFUSED);
    close(fd);
    unlink(uri + strlen("unix://"));
    tx_group_free(g);
}

Test(connect, times_out_against_a_full_backlog)
{
    /* A listener that never accepts, backlog 0: once its queue is full the
     * kernel drops further SYNs and a connect hangs. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(lfd, 0), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(100 * 1000);

    struct rill_loop_group *g = tx_group("loop", 1);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    struct tx_collector *c = tx_collector_new(0);
    uint64_t t0 = rill_clock_now_ns();
    cr_assert_eq(connect_error(g, uri, 300, tx_collector_init, c), -ETIMEDOUT);
    uint64_t ms = (rill_clock_now_ns() - t0) / RILL_NS_PER_MS;
    cr_assert_geq(ms, 290);
    cr_assert_lt(ms, 5000);
    cr_assert_eq(atomic_load(&c->active), 0);
    tx_group_free(g);
    tx_collector_free(c);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

static int failing_init(struct rill_channel *ch, void *arg)
{
    (void)ch;
    (void)arg;
    return -EPERM;
}

Test(connect, init_error_fails_the_future)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    cr_assert_eq(connect_error(g, uri, -1, failing_init, NULL), -EPERM);
    tx_server_free(srv, true);
    tx_group_free(g);
}

Test(connect, binds_the_local_side_first)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    struct rill_addr local;
    char luri[64];
    int port = free_port();
    snprintf(luri, sizeof(luri), "tcp://127.0.0.1:%d", port);
    cr_assert_eq(rill_addr_parse(luri, &local), 0);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.loop = rill_loop_group_at(g, 0);
    co.local = &local;
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    cr_assert_not_null(ch, "%s", rill_strerror(err));
    cr_assert_eq(rill_addr_port(rill_channel_local_addr(ch)), port);
    tx_close(ch);
    tx_server_free(srv, true);
    tx_group_free(g);
}

Test(connect, synchronous_errors)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    struct rill_promise *f;
    cr_assert_eq(rill_client_connect(&co, "tcp://127.0.0.1:1", &f), -EINVAL, "no loop");
    co.group = g;
    cr_assert_eq(rill_client_connect(&co, "tcp://127.0.0.1", &f), -EINVAL);
    cr_assert_eq(rill_client_connect(&co, "local://x", &f), -EAFNOSUPPORT);
    /* This machine has no RDMA device (or the build has no RDMA). */
    cr_assert_neq(rill_rdma_available(), 0);
    cr_assert_eq(rill_client_connect(&co, "rdma://127.0.0.1:1", &f), rill_rdma_available());
    rill_channel_opts_set(&co.opts, RILL_OPT_SO_RCVBUF, -5);
    cr_assert_eq(rill_client_connect(&co, "tcp://127.0.0.1:1", &f), -EINVAL, "bad option");

    struct rill_server_opts so;
    rill_server_opts_init(&so);
    struct rill_server *s;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &s), -EINVAL, "no groups");
    so.boss = g;
    so.child_init = tx_echo_init;
    struct rill_server *srv = tx_server(g, NULL, "tcp://127.0.0.1:0", tx_echo_init, NULL);
    char uri[RILL_ADDR_STRLEN];
    tx_server_uri(srv, uri, sizeof(uri));
    cr_assert_eq(rill_server_bind(&so, uri, &s), -EADDRINUSE);
    tx_server_free(srv, true);
    tx_group_free(g);
}
