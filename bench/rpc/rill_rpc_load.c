/* rill RPC echo load client for bench/rpc, the counterpart of
 * grpc_echo_client: DEPTH calls kept in flight on ONE connection, each
 * answer starting the next call on the channel's loop. Warm-up, then a
 * measured window: calls/s, latency p50/p99 from every sample, and the
 * server's CPU time per call (/proc/PID/stat).
 *
 *   rill_rpc_load --port N [--payload B] [--depth D] [--seconds S]
 *                 [--warmup S] [--server-pid PID] [--pb]
 *
 * Default: raw payload calls (bench.Raw/Say). --pb: the protobuf-c stub
 * (bench.Echo/Say through bench__echo__say on an rpc_protobuf.h client). */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "echo.pb-c.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rpc_client.h"
#include "rill/rpc_protobuf.h"

struct load;

struct slot {
    struct load *l;
    struct rill_rpc_call *call;
    uint64_t t0;
};

/* Everything below is touched on the channel's loop only, except `done`. */
struct load {
    struct rill_channel *ch;
    ProtobufCService *stub; /* --pb */
    uint8_t *payload;
    size_t len;
    int server_pid, in_flight;
    uint64_t t_measure, t_end, m0, m1, cpu0, cpu1, calls, errors;
    bool measuring, ended;
    struct brpc_samples samples;
    struct slot *slots;
    int depth;
    struct rill_promise *done; /* when the last call is in */
};

static void issue(struct slot *s);

/* One answer: account it, then the next call or, past the window, none. */
static void answered(struct slot *s, bool good)
{
    struct load *l = s->l;
    uint64_t now = brpc_now_ns();
    if (!l->measuring && now >= l->t_measure) {
        l->measuring = true;
        l->m0 = now;
        l->cpu0 = brpc_proc_cpu_ns(l->server_pid);
    }
    if (!l->ended && now >= l->t_end) {
        l->ended = true;
        l->m1 = now;
        l->cpu1 = brpc_proc_cpu_ns(l->server_pid);
    }
    if (l->measuring && !l->ended) {
        l->calls++;
        brpc_add(&l->samples, now - s->t0);
    }
    if (!l->ended && good) {
        issue(s);
        return;
    }
    if (!good) { /* a failed call is not repeated (its slot retires) */
        if (l->errors++ < 3)
            fprintf(stderr, "call failed\n");
    }
    if (--l->in_flight == 0) {
        if (!l->ended) { /* every slot failed before the window's end */
            l->ended = true;
            l->m1 = now;
            l->cpu1 = brpc_proc_cpu_ns(l->server_pid);
        }
        rill_promise_succeed(l->done, NULL, NULL);
    }
}

static void raw_done(struct rill_promise *p, void *arg)
{
    struct slot *s = arg;
    void *v = NULL;
    bool good = rill_promise_result(p, &v) == 0 && v &&
                rill_buf_readable((struct rill_buf *)v) == s->l->len;
    rill_rpc_call_release(s->call);
    s->call = NULL;
    answered(s, good);
}

static void pb_done(const ProtobufCMessage *m, void *arg)
{
    struct slot *s = arg;
    answered(s, m && ((const Bench__Msg *)m)->payload.len == s->l->len);
}

static void issue(struct slot *s)
{
    struct load *l = s->l;
    s->t0 = brpc_now_ns();
    if (l->stub) {
        Bench__Msg req = BENCH__MSG__INIT;
        req.payload.data = l->payload;
        req.payload.len = l->len;
        bench__echo__say(l->stub, &req, (Bench__Msg_Closure)pb_done, s);
        return;
    }
    struct rill_buf *b;
    if (rill_buf_copy_from(l->payload, l->len, &b) != 0 ||
        rill_rpc_call_start(l->ch, "bench.Raw", "Say", b, NULL, &s->call) != 0 ||
        rill_promise_add_listener(rill_rpc_call_future(s->call), raw_done, s) != 0) {
        fprintf(stderr, "cannot start a call\n");
        abort();
    }
}

static void start_all(void *arg)
{
    struct load *l = arg;
    for (int i = 0; i < l->depth; i++)
        issue(&l->slots[i]);
}

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

int main(int argc, char **argv)
{
    struct load l = { .depth = 1, .len = 64 };
    int port = 0;
    bool pb = false;
    double seconds = 5, warmup = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--pb")) {
            pb = true;
            continue;
        }
        i++;
        if (!strcmp(a, "--port"))
            port = atoi(v);
        else if (!strcmp(a, "--payload"))
            l.len = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--depth"))
            l.depth = atoi(v);
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atof(v);
        else if (!strcmp(a, "--server-pid"))
            l.server_pid = atoi(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (port <= 0 || l.depth < 1) {
        fprintf(stderr, "usage: rill_rpc_load --port N [--payload B] [--depth D] ... [--pb]\n");
        return 2;
    }
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "rpc-load";
    struct rill_loop_group *g;
    if (rill_loop_group_new(&go, &g) != 0)
        return 1;
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    struct rill_promise *f;
    int rc = rill_client_connect(&co, uri, &f);
    if (rc == 0) {
        rc = rill_promise_wait(f, 10 * (int64_t)RILL_NS_PER_S);
        l.ch = rc == 0 ? rill_client_channel(f) : NULL; /* a new reference */
        rill_promise_release(f);
    }
    if (rc != 0) {
        fprintf(stderr, "rill_rpc_load: connect %s: %s\n", uri, rill_strerror(rc));
        rill_loop_group_free(g);
        return 1;
    }
    if (pb && rill_rpc_pb_client_new(l.ch, &bench__echo__descriptor, NULL, &l.stub) != 0)
        return 1;
    l.payload = malloc(l.len + 1);
    memset(l.payload, 'x', l.len);
    l.samples.cap = 50u << 20;
    l.samples.v = malloc(l.samples.cap * sizeof(uint32_t));
    l.slots = calloc((size_t)l.depth, sizeof(*l.slots));
    for (int i = 0; i < l.depth; i++)
        l.slots[i].l = &l;
    l.in_flight = l.depth;
    rill_promise_new(NULL, &l.done);
    uint64_t start = brpc_now_ns();
    l.t_measure = start + (uint64_t)(warmup * 1e9);
    l.t_end = l.t_measure + (uint64_t)(seconds * 1e9);
    rill_loop_execute(rill_channel_loop(l.ch), start_all, &l);
    rill_promise_wait(l.done, -1);
    brpc_report(pb ? "rill-pb" : "rill", l.len, l.depth, l.calls, l.errors, l.m1 - l.m0, &l.samples,
                l.cpu1 - l.cpu0);
    rill_promise_release(l.done);
    if (l.stub)
        protobuf_c_service_destroy(l.stub);
    rill_channel_close(l.ch, NULL);
    rill_channel_release(l.ch);
    rill_loop_group_free(g);
    free(l.slots);
    free(l.samples.v);
    free(l.payload);
    return l.errors ? 1 : 0;
}
