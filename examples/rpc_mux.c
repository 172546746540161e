/* rpc_mux: HTTP and RPC on one port (port unification).
 *
 *   rpc_mux [--port N] [--workers N]
 *
 * Each connection starts with one handler, the sniffer (rill/sniff.h). The
 * first bytes pick its pipeline:
 *
 *   "RILL"             the RPC preamble magic: the RPC server's handlers
 *                      (rpc-bytes, rpc-codec, rpc-server), serving
 *                      echo.Echo/say (inline), echo.Echo/say_pool (handler
 *                      threads) and echo.Echo/fail (always INVALID_ARGUMENT)
 *   "GET ", "POST "... an HTTP method: the HTTP server codec, the aggregator
 *                      and the routes below
 *   anything else      refused: the connection closes (RILL_EPROTO)
 *
 *   GET /health        200 "ok\n"
 *   GET /metrics       200, the RPC server's metrics as text (Prometheus'
 *                      exposition format): calls, errors by status and
 *                      latency percentiles per method, connections, bytes
 *                      in and out, and the connections per protocol
 *   anything else      404 (405 for another method on those two paths)
 *
 * Port 0 picks a free port. Once listening it prints one line,
 * "rpc_mux: listening on 127.0.0.1:PORT", and flushes stdout. SIGINT or
 * SIGTERM closes the listener and every connection, stops the loops and the
 * RPC server's handler threads, and exits 0 with every buffer released.
 * --workers N (default 2) is the size of the loop group that accepts and
 * serves. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/http.h"
#include "rill/log.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rpc_server.h"
#include "rill/sniff.h"

#define SERVICE "echo.Echo"

static const char *const METHODS[] = { "say", "say_pool", "fail" };
#define NMETHODS (sizeof(METHODS) / sizeof(METHODS[0]))

/* Shared by every connection, on every worker loop: the counters are
 * atomics, the rest is read-only while serving. */
struct app {
    struct rill_rpc_server *rs;
    atomic_ullong rpc_conns, http_conns, refused_conns, http_requests;
};

/* ---- the RPC methods ---- */

static void say(struct rill_rpc_server_call *c, void *arg)
{
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    rill_rpc_server_call_reply(c, p ? rill_buf_retain(p) : NULL);
}

static void fail(struct rill_rpc_server_call *c, void *arg)
{
    rill_rpc_server_call_fail(c, RILL_RPC_INVALID_ARGUMENT, "echo.Echo/fail always fails");
}

/* ---- /metrics ---- */

static void method_metrics(FILE *f, struct rill_rpc_server *rs, const char *method)
{
    struct rill_rpc_method_stats ms;
    if (rill_rpc_server_method_stats(rs, SERVICE, method, &ms) != 0)
        return;
    const char *m = method;
    fprintf(f, "rpc_method_calls_total{method=\"%s/%s\"} %llu\n", SERVICE, m,
            (unsigned long long)ms.calls);
    fprintf(f, "rpc_method_errors_total{method=\"%s/%s\"} %llu\n", SERVICE, m,
            (unsigned long long)ms.errors);
    for (int s = 0; s < RILL_RPC_STATUS_COUNT; s++)
        if (ms.by_status[s])
            fprintf(f, "rpc_method_status_total{method=\"%s/%s\",status=\"%s\"} %llu\n", SERVICE, m,
                    rill_rpc_status_name(s), (unsigned long long)ms.by_status[s]);
    if (ms.other_status)
        fprintf(f, "rpc_method_status_total{method=\"%s/%s\",status=\"USER\"} %llu\n", SERVICE, m,
                (unsigned long long)ms.other_status);
    fprintf(f, "rpc_method_busy_total{method=\"%s/%s\"} %llu\n", SERVICE, m,
            (unsigned long long)ms.busy);
    fprintf(f, "rpc_method_expired_total{method=\"%s/%s\"} %llu\n", SERVICE, m,
            (unsigned long long)ms.expired);
    fprintf(f, "rpc_method_cancelled_total{method=\"%s/%s\"} %llu\n", SERVICE, m,
            (unsigned long long)ms.cancelled);
    fprintf(f, "rpc_method_latency_seconds{method=\"%s/%s\",quantile=\"0.5\"} %.9f\n", SERVICE, m,
            ms.p50_ns / 1e9);
    fprintf(f, "rpc_method_latency_seconds{method=\"%s/%s\",quantile=\"0.99\"} %.9f\n", SERVICE, m,
            ms.p99_ns / 1e9);
    fprintf(f, "rpc_method_latency_seconds{method=\"%s/%s\",quantile=\"1\"} %.9f\n", SERVICE, m,
            ms.max_ns / 1e9);
}

/* The metrics text in a malloc'd string (*@len bytes), or NULL. */
static char *metrics_text(struct app *a, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(a->rs, &st);
    fprintf(f, "# rpc_mux: connections per protocol picked by the first bytes\n");
    fprintf(f, "mux_connections_total{protocol=\"rpc\"} %llu\n", atomic_load(&a->rpc_conns));
    fprintf(f, "mux_connections_total{protocol=\"http\"} %llu\n", atomic_load(&a->http_conns));
    fprintf(f, "mux_connections_total{protocol=\"refused\"} %llu\n",
            atomic_load(&a->refused_conns));
    fprintf(f, "mux_http_requests_total %llu\n", atomic_load(&a->http_requests));
    fprintf(f, "# the RPC server (rill_rpc_server_stats)\n");
    fprintf(f, "rpc_connections %llu\n", (unsigned long long)st.connections);
    fprintf(f, "rpc_connections_total %llu\n", (unsigned long long)st.connections_total);
    fprintf(f, "rpc_connections_refused_total %llu\n", (unsigned long long)st.connections_refused);
    fprintf(f, "rpc_calls_total %llu\n", (unsigned long long)st.calls);
    fprintf(f, "rpc_calls_in_flight %llu\n", (unsigned long long)st.in_flight);
    fprintf(f, "rpc_queue_length %llu\n", (unsigned long long)st.queue_len);
    fprintf(f, "rpc_unimplemented_total %llu\n", (unsigned long long)st.unimplemented);
    fprintf(f, "rpc_dropped_responses_total %llu\n", (unsigned long long)st.dropped_responses);
    fprintf(f, "rpc_bytes_in_total %llu\n", (unsigned long long)st.bytes_in);
    fprintf(f, "rpc_bytes_out_total %llu\n", (unsigned long long)st.bytes_out);
    fprintf(f, "# per method (rill_rpc_server_method_stats); latency: receive to answer\n");
    for (size_t i = 0; i < NMETHODS; i++)
        method_metrics(f, a->rs, METHODS[i]);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- the HTTP routes (after the server codec and the aggregator) ---- */

static void reply(struct rill_ctx *ctx, unsigned status, const char *text, size_t len)
{
    struct rill_http_response *r;
    if (rill_http_response_new(status, &r) != 0) {
        rill_ctx_close(ctx, NULL);
        return;
    }
    rill_http_headers_add(&r->http.headers, "Content-Type", "text/plain; charset=utf-8");
    if (rill_http_message_set_body_copy(&r->http, text, len) != 0) {
        rill_msg_release(&r->http.msg);
        rill_ctx_close(ctx, NULL);
        return;
    }
    rill_ctx_write(ctx, &r->http.msg, NULL);
}

static bool path_is(const char *path, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(path, lit, len) == 0;
}

static void http_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct app *a = rill_ctx_arg(ctx);
    struct rill_http_request *req = rill_http_request_from_msg(msg);
    if (!req || !rill_http_is_full(msg)) { /* the aggregator lets nothing else through */
        rill_msg_release(msg);
        return;
    }
    atomic_fetch_add(&a->http_requests, 1);
    const char *q = memchr(req->target, '?', req->target_len);
    size_t plen = q ? (size_t)(q - req->target) : req->target_len;
    bool get = req->method_id == RILL_HTTP_GET || req->method_id == RILL_HTTP_HEAD;
    bool health = path_is(req->target, plen, "/health");
    bool metrics = path_is(req->target, plen, "/metrics");
    if ((health || metrics) && !get) {
        reply(ctx, 405, "method not allowed\n", 19);
    } else if (health) {
        reply(ctx, 200, "ok\n", 3);
    } else if (metrics) {
        size_t len = 0;
        char *text = metrics_text(a, &len);
        if (text)
            reply(ctx, 200, text, len);
        else
            reply(ctx, 500, "no memory\n", 10);
        free(text);
    } else {
        reply(ctx, 404, "not found\n", 10);
    }
    rill_msg_release(msg);
}

static void http_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx); /* the answers to every request of one read in one writev */
}

static void http_exception(struct rill_ctx *ctx, int err, const char *why)
{
    RILL_DEBUGF("rpc_mux: channel %llu: %s: %s",
                (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)), rill_errname(err),
                why ? why : "");
}

static const struct rill_handler mux_http_handler = {
    .name = "mux-http",
    .read = http_read,
    .read_complete = http_read_complete,
    .exception = http_exception,
};

/* ---- picking the protocol ---- */

/* Request methods as the first bytes of a request line. */
static const char *const HTTP_STARTS[] = { "GET ",   "HEAD ",  "POST ",    "PUT ",    "DELETE ",
                                           "PATCH ", "TRACE ", "OPTIONS ", "CONNECT " };
#define NSTARTS (sizeof(HTTP_STARTS) / sizeof(HTTP_STARTS[0]))

static int install_http(struct rill_pipeline *pl, struct app *a)
{
    struct rill_http_aggregator_config agg;
    rill_http_aggregator_config_init(&agg);
    agg.max_content = 64 * 1024; /* the routes take no body */
    int err = rill_pipeline_add_last(pl, "http", &rill_http_server_codec, NULL);
    if (!err)
        err = rill_pipeline_add_last(pl, "aggregator", &rill_http_aggregator, &agg);
    if (!err)
        err = rill_pipeline_add_last(pl, "mux-http", &mux_http_handler, a);
    return err;
}

/* The sniffer's select (on the connection's loop): the sniffer is the last
 * handler, so the protocols' handlers go at the end, after it. Called with
 * 1 byte first, then with as many as it asks for. */
static int select_protocol(struct rill_pipeline *pl, const uint8_t *head, size_t len, void *arg)
{
    struct app *a = arg;
    if (len >= 4 && memcmp(head, "RILL", 4) == 0) {
        int err = rill_rpc_server_install(a->rs, pl);
        if (!err)
            atomic_fetch_add(&a->rpc_conns, 1);
        return err;
    }
    if (len < 4 && memcmp(head, "RILL", len) == 0)
        return 4;
    bool maybe = false;
    for (size_t i = 0; i < NSTARTS; i++) {
        size_t n = strlen(HTTP_STARTS[i]);
        if (len >= n && memcmp(head, HTTP_STARTS[i], n) == 0) {
            int err = install_http(pl, a);
            if (!err)
                atomic_fetch_add(&a->http_conns, 1);
            return err;
        }
        maybe |= len < n && memcmp(head, HTTP_STARTS[i], len) == 0;
    }
    if (maybe)
        return (int)len + 1; /* a method so far: one more byte */
    atomic_fetch_add(&a->refused_conns, 1);
    return RILL_EPROTO;
}

static int child_init(struct rill_channel *ch, void *arg)
{
    struct rill_sniff_config sc = { .select = select_protocol, .arg = arg, .bytes = 1 };
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "sniff", &rill_sniff_handler, &sc);
}

/* ---- main ---- */

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--port N] [--workers N]\n", prog);
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 8090, workers = 2;
    for (int i = 1; i < argc; i += 2) {
        const char *opt = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage(argv[0]);
        if (strcmp(opt, "--port") == 0)
            port = atoi(v);
        else if (strcmp(opt, "--workers") == 0)
            workers = atoi(v);
        else
            usage(argv[0]);
    }
    if (port < 0 || port > 65535 || workers < 1)
        usage(argv[0]);

    /* Signals are read by this thread only: block them before any loop or
     * handler thread starts (they inherit the mask). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    static struct app a;
    struct rill_rpc_server_opts ro;
    rill_rpc_server_opts_init(&ro);
    ro.handler_threads = 2;
    int err = rill_rpc_server_new(&ro, &a.rs);
    if (err) {
        fprintf(stderr, "rpc_mux: rpc server: %s\n", rill_strerror(err));
        return 1;
    }
    static rill_rpc_method_fn *const fns[] = { say, say, fail };
    static const enum rill_rpc_dispatch modes[] = { RILL_RPC_INLINE, RILL_RPC_POOL,
                                                    RILL_RPC_INLINE };
    for (size_t i = 0; i < NMETHODS && !err; i++)
        err = rill_rpc_server_register(a.rs, SERVICE, METHODS[i], fns[i], NULL, modes[i]);

    struct rill_loop_group *group = NULL;
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = workers;
    go.name = "mux";
    if (!err)
        err = rill_loop_group_new(&go, &group);
    struct rill_server *srv = NULL;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    if (!err) {
        struct rill_server_opts so;
        rill_server_opts_init(&so);
        so.boss = group;
        so.workers = group;
        so.child_init = child_init;
        so.child_arg = &a;
        err = rill_server_bind(&so, uri, &srv);
        if (!err)
            err = rill_promise_wait(rill_server_bound(srv), 10 * (int64_t)RILL_NS_PER_S);
    }
    int rc = 0;
    if (err) {
        fprintf(stderr, "rpc_mux: %s: %s\n", uri, rill_strerror(err));
        rc = 1;
    } else {
        printf("rpc_mux: listening on 127.0.0.1:%d\n", rill_addr_port(rill_server_local_addr(srv)));
        fflush(stdout);
        int sig;
        sigwait(&stop, &sig);
    }

    /* Graceful stop: the listener and every connection first, then the
     * loops, then the RPC server (its handler threads; nothing is left to
     * answer). */
    if (srv) {
        rill_promise_wait(rill_server_close(srv, true), 10 * (int64_t)RILL_NS_PER_S);
        rill_server_free(srv);
    }
    if (group) {
        rill_promise_wait(rill_loop_group_shutdown(group, 0, 5 * RILL_NS_PER_S), -1);
        rill_loop_group_free(group);
    }
    rill_rpc_server_free(a.rs);
    return rc;
}
