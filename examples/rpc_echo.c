/* rpc_echo: an RPC echo service, server and client in one program.
 *
 *   rpc_echo server [--port N] [--seconds S]   serve echo.Echo/say (inline) and
 *                                             echo.Echo/say_pool (handler threads)
 *   rpc_echo client --port N [--calls N] [--pool]   N concurrent calls, then metrics
 *   rpc_echo demo                              both in one process on a free port
 *
 * The server prints "ready port=<port>" and, on exit (SIGINT, SIGTERM or
 * after --seconds), its metrics: calls and latency percentiles per method,
 * connections, bytes in and out. */
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
#include "rill/pipeline.h"
#include "rill/rpc_client.h"
#include "rill/rpc_server.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void say(struct rill_rpc_server_call *c, void *arg)
{
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    rill_rpc_server_call_reply(c, p ? rill_buf_retain(p) : NULL);
}

static int child_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_server_install(arg, rill_channel_pipeline(ch));
}

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

struct server {
    struct rill_loop_group *group;
    struct rill_rpc_server *rs;
    struct rill_server *srv;
    int port;
};

static int server_up(struct server *s, int port)
{
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 2;
    int rc = rill_loop_group_new(&go, &s->group);
    if (rc)
        return rc;
    if ((rc = rill_rpc_server_new(NULL, &s->rs)) != 0)
        return rc;
    rill_rpc_server_register(s->rs, "echo.Echo", "say", say, NULL, RILL_RPC_INLINE);
    rill_rpc_server_register(s->rs, "echo.Echo", "say_pool", say, NULL, RILL_RPC_POOL);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = s->group;
    so.child_init = child_init;
    so.child_arg = s->rs;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    if ((rc = rill_server_bind(&so, uri, &s->srv)) != 0)
        return rc;
    rill_promise_wait(rill_server_bound(s->srv), -1);
    s->port = rill_addr_port(rill_server_local_addr(s->srv));
    return 0;
}

static void print_metrics(struct rill_rpc_server *rs)
{
    const char *methods[] = { "say", "say_pool" };
    for (int i = 0; i < 2; i++) {
        struct rill_rpc_method_stats ms;
        if (rill_rpc_server_method_stats(rs, "echo.Echo", methods[i], &ms) == 0)
            printf("method echo.Echo/%s calls=%llu errors=%llu busy=%llu p50=%.1fus "
                   "p99=%.1fus max=%.1fus\n",
                   methods[i], (unsigned long long)ms.calls, (unsigned long long)ms.errors,
                   (unsigned long long)ms.busy, ms.p50_ns / 1e3, ms.p99_ns / 1e3, ms.max_ns / 1e3);
    }
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(rs, &st);
    printf("server connections=%llu total=%llu calls=%llu unimplemented=%llu in_flight=%llu "
           "queue=%llu bytes_in=%llu bytes_out=%llu\n",
           (unsigned long long)st.connections, (unsigned long long)st.connections_total,
           (unsigned long long)st.calls, (unsigned long long)st.unimplemented,
           (unsigned long long)st.in_flight, (unsigned long long)st.queue_len,
           (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
}

static void server_down(struct server *s)
{
    if (s->srv) {
        rill_promise_wait(rill_server_close(s->srv, true), -1);
        rill_server_free(s->srv);
    }
    if (s->rs)
        print_metrics(s->rs);
    if (s->group)
        rill_loop_group_free(s->group);
    rill_rpc_server_free(s->rs);
}

static int run_client(int port, int calls, bool pool)
{
    struct rill_loop_group *g;
    int rc = rill_loop_group_new(NULL, &g);
    if (rc)
        return rc;
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    struct rill_promise *f;
    if ((rc = rill_client_connect(&co, uri, &f)) == 0)
        rc = rill_promise_wait(f, 10 * (int64_t)RILL_NS_PER_S);
    struct rill_channel *ch = rc ? NULL : rill_client_channel(f);
    if (rc == 0)
        rill_promise_release(f);
    if (!ch) {
        fprintf(stderr, "connect %s: %s\n", uri, rill_strerror(rc));
        rill_loop_group_free(g);
        return rc ? rc : -1;
    }
    struct rill_rpc_call **v = calloc((size_t)calls, sizeof(*v));
    uint64_t t0 = rill_clock_now_ns();
    for (int i = 0; i < calls; i++) {
        char body[32];
        snprintf(body, sizeof(body), "hello %d", i);
        struct rill_buf *b;
        rill_buf_copy_from(body, strlen(body), &b);
        struct rill_rpc_call_opts o;
        rill_rpc_call_opts_init(&o);
        o.timeout_ns = 10 * RILL_NS_PER_S;
        rill_rpc_call_start(ch, "echo.Echo", pool ? "say_pool" : "say", b, &o, &v[i]);
    }
    int ok = 0, failed = 0;
    for (int i = 0; i < calls; i++) {
        if (rill_rpc_call_wait(v[i], -1) == 0)
            ok++;
        else if (failed++ < 3)
            fprintf(stderr, "call %d: %s %s\n", i, rill_rpc_status_name(rill_rpc_call_status(v[i])),
                    rill_rpc_call_status_msg(v[i]) ? rill_rpc_call_status_msg(v[i]) : "");
        rill_rpc_call_release(v[i]);
    }
    double ms = (rill_clock_now_ns() - t0) / 1e6;
    printf("client calls=%d ok=%d failed=%d in %.1f ms\n", calls, ok, failed, ms);
    free(v);
    rill_channel_close(ch, NULL);
    rill_channel_release(ch);
    rill_loop_group_free(g);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "demo";
    int port = 0, seconds = 0, calls = 1000;
    bool pool = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pool"))
            pool = true;
        else {
            fprintf(stderr, "usage: rpc_echo server|client|demo [--port N] [--seconds S] "
                            "[--calls N] [--pool]\n");
            return 2;
        }
    }
    if (calls < 1)
        calls = 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct server s = { 0 };
    if (!strcmp(mode, "client"))
        return run_client(port, calls, pool) ? 1 : 0;
    int rc = server_up(&s, port);
    if (rc) {
        fprintf(stderr, "server: %s\n", rill_strerror(rc));
        server_down(&s);
        return 1;
    }
    printf("ready port=%d\n", s.port);
    fflush(stdout);
    if (!strcmp(mode, "demo")) {
        rc = run_client(s.port, calls, false) || run_client(s.port, calls, true);
    } else {
        uint64_t end = rill_clock_now_ns() + (uint64_t)seconds * RILL_NS_PER_S;
        while (!stop && (!seconds || rill_clock_now_ns() < end))
            usleep(50000);
    }
    server_down(&s);
    return rc ? 1 : 0;
}
