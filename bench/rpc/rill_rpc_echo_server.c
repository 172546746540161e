/* rill RPC echo server for bench/rpc: one loop (accepts and serves), the
 * echo inline on it. Serves the same echo twice:
 *   bench.Raw/Say   the payload bytes back (the RPC core alone)
 *   bench.Echo/Say  the protobuf-c service from echo.proto (rpc_protobuf.h)
 * Prints "ready port=N"; runs until SIGTERM/SIGINT.
 *
 *   rill_rpc_echo_server [port] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rpc_protobuf.h"
#include "rill/rpc_server.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static void raw_say(struct rill_rpc_server_call *c, void *arg)
{
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    rill_rpc_server_call_reply(c, p ? rill_buf_retain(p) : NULL);
}

static void pb_say(Bench__Echo_Service *svc, const Bench__Msg *in, Bench__Msg_Closure closure,
                   void *data)
{
    Bench__Msg out = BENCH__MSG__INIT;
    out.payload = in->payload; /* borrowed: packed before we return */
    closure(&out, data);
}

#define echo_say pb_say
static Bench__Echo_Service echo_impl = BENCH__ECHO__INIT(echo_);

static int child_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_server_install(arg, rill_channel_pipeline(ch));
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "rpc-echo";
    struct rill_loop_group *g = NULL;
    struct rill_rpc_server *rs = NULL;
    struct rill_server *srv = NULL;
    struct rill_rpc_server_opts ro;
    rill_rpc_server_opts_init(&ro);
    ro.handler_threads = 1; /* idle: every method here is inline */
    int rc = rill_loop_group_new(&go, &g);
    if (rc == 0)
        rc = rill_rpc_server_new(&ro, &rs);
    if (rc == 0)
        rc = rill_rpc_server_register(rs, "bench.Raw", "Say", raw_say, NULL, RILL_RPC_INLINE);
    if (rc == 0)
        rc = rill_rpc_pb_serve(rs, &echo_impl.base, RILL_RPC_INLINE);
    if (rc == 0) {
        struct rill_server_opts so;
        char uri[64];
        rill_server_opts_init(&so);
        so.boss = g;
        so.child_init = child_init;
        so.child_arg = rs;
        snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
        rc = rill_server_bind(&so, uri, &srv);
        if (rc == 0)
            rc = rill_promise_wait(rill_server_bound(srv), -1);
    }
    if (rc != 0) {
        fprintf(stderr, "rill_rpc_echo_server: %s\n", rill_strerror(rc));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("ready port=%d\n", rill_addr_port(rill_server_local_addr(srv)));
    fflush(stdout);
    while (!stop)
        usleep(50000);
    rill_promise_wait(rill_server_close(srv, true), -1);
    rill_server_free(srv);
    rill_loop_group_free(g);
    rill_rpc_server_free(rs);
    return 0;
}
