/* rpc_discover: echo servers that register in ZooKeeper and a client that
 * finds them there and keeps calling, surviving servers that die.
 *
 *   rpc_discover server --zk HOST:PORT [--port N] [--session-ms MS]
 *       serve echo.Echo/say (answer "<port>: <payload>"), register
 *       /rill/echo.Echo/v1/127.0.0.1:<port> (ephemeral), print
 *       "ready port=<port>", run until SIGINT/SIGTERM
 *   rpc_discover client --zk HOST:PORT [--calls N] [--interval-ms MS]
 *       watch the list, make N idempotent calls through a pool (round
 *       robin, retries on another endpoint), print which endpoint
 *       answered each one
 *
 * Kill one server with -9: its node disappears when its session times
 * out, the client's list shrinks, and calls keep succeeding meanwhile
 * (a call that meets the dead server is retried on another). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop_group.h"
#include "rill/rpc_discovery.h"
#include "rill/rpc_pool.h"
#include "rill/rpc_server.h"

#define SERVICE "echo.Echo"
#define VERSION "v1"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int g_port;

static void say(struct rill_rpc_server_call *c, void *arg)
{
    (void)arg;
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    char out[256];
    int n = snprintf(out, sizeof(out), "%d: ", g_port);
    size_t len = p ? rill_buf_readable(p) : 0;
    if (len > sizeof(out) - (size_t)n - 1)
        len = sizeof(out) - (size_t)n - 1;
    if (len)
        rill_buf_get_bytes(p, rill_buf_reader_index(p), out + n, len);
    struct rill_buf *r = NULL;
    if (rill_buf_copy_from(out, (size_t)n + len, &r) != 0) {
        rill_rpc_server_call_fail(c, RILL_RPC_RESOURCE_EXHAUSTED, "no memory");
        return;
    }
    rill_rpc_server_call_reply(c, r);
}

static int child_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_server_install(arg, rill_channel_pipeline(ch));
}

static struct rill_loop_group *group(const char *name)
{
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = 1;
    o.name = name;
    struct rill_loop_group *g = NULL;
    return rill_loop_group_new(&o, &g) == 0 ? g : NULL;
}

static int serve(const char *zk, int port, int session_ms)
{
    struct rill_loop_group *boss = group("boss"), *work = group("work");
    struct rill_rpc_server *rs = NULL;
    struct rill_server *srv = NULL;
    struct rill_rpc_registry *reg = NULL;
    int rc = -ENOMEM;
    if (!boss || !work || (rc = rill_rpc_server_new(NULL, &rs)) != 0)
        goto out;
    if ((rc = rill_rpc_server_register(rs, SERVICE, "say", say, NULL, RILL_RPC_INLINE)) != 0)
        goto out;
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = boss;
    so.workers = work;
    so.child_init = child_init;
    so.child_arg = rs;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    if ((rc = rill_server_bind(&so, uri, &srv)) != 0 ||
        (rc = rill_promise_wait(rill_server_bound(srv), 10 * RILL_NS_PER_S)) != 0)
        goto out;
    g_port = rill_addr_port(rill_server_local_addr(srv));
    if ((rc = rill_rpc_registry_zookeeper_new(zk, session_ms, &reg)) != 0)
        goto out;
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", g_port);
    if ((rc = rill_rpc_registry_register(reg, SERVICE, VERSION, ep)) != 0)
        goto out;
    printf("ready port=%d\n", g_port);
    fflush(stdout);
    while (!stop)
        pause();
out:
    if (rc)
        fprintf(stderr, "rpc_discover server: %s\n", rill_strerror(rc));
    rill_rpc_registry_free(reg); /* the ephemeral node goes with the session */
    if (srv) {
        rill_promise_wait(rill_server_close(srv, true), 10 * RILL_NS_PER_S);
        rill_server_free(srv);
    }
    if (work)
        rill_promise_wait(rill_loop_group_shutdown(work, 0, RILL_NS_PER_S), 10 * RILL_NS_PER_S);
    if (boss)
        rill_promise_wait(rill_loop_group_shutdown(boss, 0, RILL_NS_PER_S), 10 * RILL_NS_PER_S);
    rill_loop_group_free(work);
    rill_loop_group_free(boss);
    rill_rpc_server_free(rs);
    return rc ? 1 : 0;
}

static int client(const char *zk, int calls, int interval_ms, int session_ms)
{
    struct rill_loop_group *g = group("pool");
    struct rill_rpc_pool *pool = NULL;
    struct rill_rpc_registry *reg = NULL;
    struct rill_rpc_watch *w = NULL;
    int rc = -ENOMEM, failed = 0;
    if (!g)
        goto out;
    struct rill_rpc_pool_opts po;
    rill_rpc_pool_opts_init(&po);
    po.group = g;
    po.max_attempts = 4;
    po.ping_idle_ns = RILL_NS_PER_S;
    if ((rc = rill_rpc_pool_new(&po, &pool)) != 0 ||
        (rc = rill_rpc_registry_zookeeper_new(zk, session_ms, &reg)) != 0 ||
        (rc = rill_rpc_pool_watch(pool, reg, SERVICE, VERSION, &w)) != 0)
        goto out;
    for (int i = 0; i < calls && !stop; i++) {
        char body[32];
        int n = snprintf(body, sizeof(body), "call %d", i);
        struct rill_buf *req = NULL;
        if (rill_buf_copy_from(body, (size_t)n, &req) != 0)
            break;
        struct rill_rpc_call_opts co;
        rill_rpc_call_opts_init(&co);
        co.idempotent = true;
        co.timeout_ns = 5 * RILL_NS_PER_S;
        struct rill_rpc_pool_call *c = NULL;
        int r = rill_rpc_pool_call_sync(pool, NULL, SERVICE, "say", req, &co, -1, &c);
        if (r == 0) {
            char ans[256] = "";
            struct rill_buf *resp = rill_rpc_pool_call_response(c);
            if (resp) {
                size_t len = rill_buf_readable(resp) < 255 ? rill_buf_readable(resp) : 255;
                rill_buf_get_bytes(resp, rill_buf_reader_index(resp), ans, len);
                ans[len] = 0;
                rill_buf_release(resp);
            }
            printf("ok %s answered \"%s\" (attempts %d, endpoints %zu)\n",
                   rill_rpc_pool_call_endpoint(c), ans, rill_rpc_pool_call_attempts(c),
                   rill_rpc_pool_endpoints(pool, NULL, 0));
        } else {
            failed++;
            printf("failed %s: %s\n", rill_strerror(r),
                   c && rill_rpc_pool_call_status_msg(c) ? rill_rpc_pool_call_status_msg(c) : "");
        }
        fflush(stdout);
        rill_rpc_pool_call_release(c);
        if (interval_ms)
            usleep((useconds_t)interval_ms * 1000);
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "rpc_discover client: %s\n", rill_strerror(rc));
    if (w)
        rill_rpc_registry_unwatch(reg, w);
    rill_rpc_registry_free(reg);
    rill_rpc_pool_free(pool);
    if (g) {
        rill_promise_wait(rill_loop_group_shutdown(g, 0, RILL_NS_PER_S), 10 * RILL_NS_PER_S);
        rill_loop_group_free(g);
    }
    return rc || failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "", *zk = NULL;
    int port = 0, calls = 100, interval_ms = 100, session_ms = 3000;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--zk") && i + 1 < argc)
            zk = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
            interval_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--session-ms") && i + 1 < argc)
            session_ms = atoi(argv[++i]);
        else
            zk = NULL, mode = "";
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (zk && !strcmp(mode, "server"))
        return serve(zk, port, session_ms);
    if (zk && !strcmp(mode, "client"))
        return client(zk, calls, interval_ms, session_ms);
    fprintf(stderr, "usage: rpc_discover server|client --zk HOST:PORT [--port N] [--calls N] "
                    "[--interval-ms MS] [--session-ms MS]\n");
    return 2;
}
