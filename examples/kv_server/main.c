/* kv_server: a Redis-compatible in-memory key-value server on rill.
 *
 *   kv_server [--host 127.0.0.1] [--port 6379] [--workers N]
 *
 * Speaks RESP2 and RESP3 (HELLO 3) to redis-cli, redis-benchmark and any
 * Redis client: PING ECHO GET SET(EX PX EXAT PXAT NX XX GET KEEPTTL) DEL
 * EXISTS INCR DECR INCRBY DECRBY MGET MSET EXPIRE PEXPIRE TTL PTTL KEYS
 * DBSIZE FLUSHALL INFO QUIT CLIENT(SETNAME GETNAME ID) HELLO SELECT 0
 * CONFIG GET COMMAND(COUNT DOCS INFO).
 *
 * N worker loops (default 1) accept and serve connections; the keyspace is
 * split into one shard per loop, each touched only by its loop's thread
 * (see conn.c for the routing and ordering, docs/resp.md for the design).
 * Port 0 picks a free port. Once listening it prints exactly one line,
 * "kv_server: listening on HOST:PORT", to stdout; SIGINT or SIGTERM shut
 * it down gracefully (connections closed, every buffer released). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"
#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/resp.h"
#include "rill/timer.h"

#define EXPIRE_PERIOD_NS (100 * RILL_NS_PER_MS)
#define EXPIRE_BUDGET    4096 /* table slots looked at per shard and period */

static const struct rill_resp_config codec_cfg = { .mode = RILL_RESP_MODE_COMMANDS };

static int child_init(struct rill_channel *ch, void *arg)
{
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    int rc = rill_pipeline_add_last(pl, "resp", &rill_resp_codec, (void *)&codec_cfg);
    return rc ? rc : rill_pipeline_add_last(pl, "kv", &kv_handler, arg);
}

static void expire_tick(struct rill_timer *t, void *arg)
{
    kv_expire_step(arg, EXPIRE_BUDGET);
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--host 127.0.0.1] [--port 6379] [--workers N]\n", prog);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 6379, workers = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!v)
            usage(argv[0]);
        if (strcmp(a, "--host") == 0) {
            host = v;
        } else if (strcmp(a, "--port") == 0) {
            port = (int)strtol(v, &end, 10);
        } else if (strcmp(a, "--workers") == 0) {
            workers = (int)strtol(v, &end, 10);
        } else {
            usage(argv[0]);
        }
        if (end && *end)
            usage(argv[0]);
        i++;
    }
    if (port < 0 || port > 65535 || workers < 1 || workers > KV_MAX_SHARDS)
        usage(argv[0]);

    /* Signals go to this thread only (loop threads inherit the mask). A
     * shell starts background jobs with SIGINT ignored, and an ignored
     * signal never reaches sigwait: take the default disposition back. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = workers;
    go.name = "kv";
    struct rill_loop_group *group;
    int err = rill_loop_group_new(&go, &group);
    if (err) {
        fprintf(stderr, "kv_server: loop group: %s\n", rill_strerror(err));
        return 1;
    }

    struct kv_server srv = { .nshards = workers, .start_ns = rill_clock_now_ns() };
    srv.shards = calloc((size_t)workers, sizeof(*srv.shards));
    if (!srv.shards) {
        fprintf(stderr, "kv_server: out of memory\n");
        return 1;
    }
    for (int i = 0; i < workers; i++) {
        struct kv_shard *sh = &srv.shards[i];
        sh->idx = i;
        sh->srv = &srv;
        sh->loop = rill_loop_group_at(group, i);
        err = kv_table_init(&sh->t);
        if (!err)
            err = rill_timer_schedule(sh->loop, EXPIRE_PERIOD_NS, EXPIRE_PERIOD_NS,
                                      RILL_TIMER_FIXED_RATE, expire_tick, sh, &sh->expirer);
        if (err) {
            fprintf(stderr, "kv_server: shard %d: %s\n", i, rill_strerror(err));
            return 1;
        }
    }

    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = group;
    so.workers = group;
    so.child_init = child_init;
    so.child_arg = &srv;
    char uri[300];
    snprintf(uri, sizeof(uri), strchr(host, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d", host, port);
    struct rill_server *server;
    err = rill_server_bind(&so, uri, &server);
    if (!err)
        err = rill_promise_wait(rill_server_bound(server), 10 * (int64_t)RILL_NS_PER_S);
    if (err) {
        fprintf(stderr, "kv_server: %s: %s\n", uri, rill_strerror(err));
        return 1;
    }
    srv.port = rill_addr_port(rill_server_local_addr(server));
    printf("kv_server: listening on %s:%d\n", host, srv.port);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);

    /* Close the listener and every connection; let replies on their way
     * between loops land; stop the expiry timers; then the loops. */
    rill_promise_wait(rill_server_close(server, true), 10 * (int64_t)RILL_NS_PER_S);
    uint64_t deadline = rill_clock_now_ns() + 2 * RILL_NS_PER_S;
    while (atomic_load(&srv.inflight) && rill_clock_now_ns() < deadline)
        usleep(1000);
    for (int i = 0; i < workers; i++) {
        rill_timer_cancel(srv.shards[i].expirer);
        rill_timer_release(srv.shards[i].expirer);
    }
    fprintf(stderr, "kv_server: %s, %llu connection(s) served, exiting\n", strsignal(sig),
            (unsigned long long)rill_server_accepted(server));
    rill_server_free(server);
    rill_promise_wait(rill_loop_group_shutdown(group, 0, 5 * RILL_NS_PER_S), -1);
    rill_loop_group_free(group);
    for (int i = 0; i < workers; i++)
        kv_table_free(&srv.shards[i].t);
    free(srv.shards);
    return 0;
}
