/* The RPC server end to end between two embedded channels (client codec +
 * client handler, and the installed server stack), bytes pumped between
 * them: every status path, pool dispatch and saturation, deadlines and
 * cancels before running, asynchronous answers in reverse order, answers
 * for closed connections, live (un)registration, auth, connection cap,
 * idle close, metrics, PING answered by PONG, invalid failure statuses,
 * and shutdown with calls still queued.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/future.h"
#include "rill/rpc_client.h"
#include "rill/rpc_server.h"
#include "rpc/server_internal.h"
#include "tests/rpc/rpc_test.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(rpc_server, .timeout = 30, .fini = rill_test_no_leaks);

struct pair {
    struct rill_embedded *cli, *srv;
};

static struct pair pair_new(struct rill_rpc_server *rs, const char *token)
{
    struct pair p;
    struct rill_rpc_codec_opts co;
    rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_CLIENT);
    if (token) {
        co.auth = token;
        co.auth_len = strlen(token);
    }
    struct rill_rpc_client_opts clo;
    rill_rpc_client_opts_init(&clo);
    struct rill_embedded_handler h[2] = { { "rpc-codec", &rill_rpc_codec_handler, &co },
                                          { "rpc-client", &rill_rpc_client_handler, &clo } };
    cr_assert_eq(rill_embedded_new(h, 2, &p.cli), 0);
    struct rill_embedded_handler sh[3] = { { "rpc-bytes", &rill_rpc_bytes_handler, rs },
                                           { "rpc-codec", &rill_rpc_codec_handler, NULL },
                                           { "rpc-server", &rill_rpc_server_handler, rs } };
    struct rill_rpc_codec_opts so;
    rill_rpc_codec_opts_init(&so, RILL_RPC_ROLE_SERVER);
    sh[1].arg = &so;
    cr_assert_eq(rill_embedded_new(sh, 3, &p.srv), 0);
    return p;
}

/* Move bytes both ways and run tasks; returns the messages moved. */
static size_t pump_once(struct pair *p)
{
    size_t moved = 0;
    struct rill_embedded *from[2] = { p->cli, p->srv }, *to[2] = { p->srv, p->cli };
    for (int d = 0; d < 2; d++) {
        rill_embedded_run_pending(from[d]);
        struct rill_msg *m;
        while ((m = rill_embedded_read_outbound(from[d])) != NULL) {
            moved++;
            if (rill_embedded_is_open(to[d]))
                rill_embedded_write_inbound(to[d], m);
            else
                rill_msg_release(m);
        }
    }
    return moved;
}

static void pump(struct pair *p)
{
    for (int i = 0; i < 100 && pump_once(p); i++)
        ;
}

/* Pump until the call ends (answers may come from handler threads). */
static void pump_until_done(struct pair *p, struct rill_rpc_call *c)
{
    uint64_t dl = rill_test_deadline_ms(5000);
    while (!rill_promise_is_done(rill_rpc_call_future(c)) && rill_test_before(dl)) {
        if (!pump_once(p))
            usleep(200);
    }
    cr_assert(rill_promise_is_done(rill_rpc_call_future(c)), "the call ended in time");
}

static void pair_free(struct pair *p)
{
    rill_embedded_free(p->cli);
    rill_embedded_free(p->srv);
}

static struct rill_rpc_call *call(struct pair *p, const char *svc, const char *method,
                                  const char *body, uint64_t timeout)
{
    struct rill_rpc_call_opts o;
    rill_rpc_call_opts_init(&o);
    o.timeout_ns = timeout;
    struct rill_rpc_call *c;
    cr_assert_eq(rill_rpc_call_start(rill_embedded_channel(p->cli), svc, method,
                                     body ? rt_buf(body) : NULL, &o, &c),
                 0);
    pump(p);
    return c;
}

static void check(struct rill_rpc_call *c, int status, const char *body_or_msg)
{
    cr_assert_eq(rill_rpc_call_status(c), status, "status %s (%s), expected %s",
                 rill_rpc_status_name(rill_rpc_call_status(c)),
                 rill_rpc_call_status_msg(c) ? rill_rpc_call_status_msg(c) : "",
                 rill_rpc_status_name(status));
    if (status == RILL_RPC_OK) {
        struct rill_buf *r = rill_rpc_call_response(c);
        cr_assert(rt_buf_is(r, body_or_msg), "response body");
        if (r)
            rill_buf_release(r);
    } else if (body_or_msg) {
        const char *m = rill_rpc_call_status_msg(c);
        cr_assert(m && strstr(m, body_or_msg), "\"%s\" lacks \"%s\"", m ? m : "", body_or_msg);
    }
    rill_rpc_call_release(c);
}

/* ---- methods ---- */

static void m_echo(struct rill_rpc_server_call *c, void *arg)
{
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    rill_rpc_server_call_add_md(c, "method", "echo", 4);
    rill_rpc_server_call_reply(c, p ? rill_buf_retain(p) : NULL);
}

static void m_fail(struct rill_rpc_server_call *c, void *arg)
{
    rill_rpc_server_call_fail(c, RILL_RPC_INVALID_ARGUMENT, "division by zero");
}

static atomic_int gate_open, gate_ran;

static void m_gated(struct rill_rpc_server_call *c, void *arg)
{
    atomic_fetch_add(&gate_ran, 1);
    uint64_t dl = rill_test_deadline_ms(10000);
    while (!atomic_load(&gate_open) && rill_test_before(dl))
        usleep(200);
    rill_rpc_server_call_reply(c, rt_buf("gated"));
}

static struct rill_rpc_server *server(int threads, size_t qcap)
{
    struct rill_rpc_server_opts o;
    rill_rpc_server_opts_init(&o);
    o.handler_threads = threads;
    o.queue_capacity = qcap;
    struct rill_rpc_server *rs;
    cr_assert_eq(rill_rpc_server_new(&o, &rs), 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "pecho", m_echo, NULL, RILL_RPC_POOL), 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "fail", m_fail, NULL, RILL_RPC_INLINE), 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "gated", m_gated, NULL, RILL_RPC_POOL), 0);
    return rs;
}

Test(rpc_server, ok_error_and_unimplemented)
{
    struct rill_rpc_server *rs = server(2, 16);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), -EEXIST);
    struct pair p = pair_new(rs, NULL);
    struct rill_rpc_call *c = call(&p, "t", "echo", "hello", 0);
    cr_assert(rill_promise_is_done(rill_rpc_call_future(c)), "inline: answered in the pump");
    cr_assert_not_null(rill_rpc_call_response_md(c, "method"));
    check(c, RILL_RPC_OK, "hello");
    check(call(&p, "t", "fail", "1 0", 0), RILL_RPC_INVALID_ARGUMENT, "division by zero");
    check(call(&p, "t", "nope", NULL, 0), RILL_RPC_UNIMPLEMENTED, "unknown method t/nope");
    check(call(&p, "x", "echo", NULL, 0), RILL_RPC_UNIMPLEMENTED, "unknown method x/echo");
    c = call(&p, "t", "pecho", "pool", 0);
    pump_until_done(&p, c);
    check(c, RILL_RPC_OK, "pool");

    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(rs, &st);
    cr_assert_eq(st.calls, 5);
    cr_assert_eq(st.unimplemented, 2);
    cr_assert_eq(st.in_flight, 0);
    cr_assert_eq(st.connections, 1);
    cr_assert_gt(st.bytes_in, 0);
    cr_assert_gt(st.bytes_out, 0);
    struct rill_rpc_method_stats ms;
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "echo", &ms), 0);
    cr_assert_eq(ms.calls, 1);
    cr_assert_eq(ms.by_status[RILL_RPC_OK], 1);
    cr_assert_gt(ms.max_ns, 0);
    cr_assert_leq(ms.p50_ns, ms.max_ns);
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "fail", &ms), 0);
    cr_assert_eq(ms.errors, 1);
    cr_assert_eq(ms.by_status[RILL_RPC_INVALID_ARGUMENT], 1);
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "nope", &ms), -ENOENT);
    pair_free(&p);
    rill_rpc_server_stats(rs, &st);
    cr_assert_eq(st.connections, 0);
    rill_rpc_server_free(rs);
}

Test(rpc_server, full_queue_answers_busy)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_ran, 0);
    struct rill_rpc_server *rs = server(1, 2);
    struct pair p = pair_new(rs, NULL);
    struct rill_rpc_call *c[4];
    c[0] = call(&p, "t", "gated", NULL, 0);
    uint64_t dl = rill_test_deadline_ms(5000);
    while (atomic_load(&gate_ran) == 0 && rill_test_before(dl))
        usleep(200);
    c[1] = call(&p, "t", "gated", NULL, 0);
    c[2] = call(&p, "t", "gated", NULL, 0);
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(rs, &st);
    cr_assert_eq(st.queue_len, 2);
    c[3] = call(&p, "t", "gated", NULL, 0);
    cr_assert(rill_promise_is_done(rill_rpc_call_future(c[3])), "BUSY comes at once");
    check(c[3], RILL_RPC_BUSY, "queue full");
    atomic_store(&gate_open, 1);
    for (int i = 0; i < 3; i++) {
        pump_until_done(&p, c[i]);
        check(c[i], RILL_RPC_OK, "gated");
    }
    struct rill_rpc_method_stats ms;
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "gated", &ms), 0);
    cr_assert_eq(ms.busy, 1);
    cr_assert_eq(ms.by_status[RILL_RPC_BUSY], 1);
    pair_free(&p);
    rill_rpc_server_free(rs);
}

Test(rpc_server, expired_and_cancelled_calls_do_not_run)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_ran, 0);
    struct rill_rpc_server *rs = server(1, 8);
    struct pair p = pair_new(rs, NULL);
    struct rill_rpc_call *blocker = call(&p, "t", "gated", NULL, 0);
    uint64_t dl = rill_test_deadline_ms(5000);
    while (atomic_load(&gate_ran) == 0 && rill_test_before(dl))
        usleep(200);
    /* The client's clock is manual: only the server sees this deadline pass. */
    struct rill_rpc_call *late = call(&p, "t", "gated", NULL, 5 * RILL_NS_PER_MS);
    struct rill_rpc_call *gone = call(&p, "t", "gated", NULL, 0);
    cr_assert_eq(rill_rpc_call_cancel(gone), 0);
    pump(&p); /* the CANCEL frame reaches the server */
    check(gone, RILL_RPC_CANCELLED, "cancelled");
    usleep(10000);
    atomic_store(&gate_open, 1);
    pump_until_done(&p, blocker);
    check(blocker, RILL_RPC_OK, "gated");
    pump_until_done(&p, late);
    check(late, RILL_RPC_DEADLINE_EXCEEDED, "before the call ran");
    struct rill_rpc_method_stats ms;
    dl = rill_test_deadline_ms(5000);
    do {
        pump(&p);
        cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "gated", &ms), 0);
    } while (ms.calls < 3 && rill_test_before(dl));
    cr_assert_eq(ms.expired, 1);
    cr_assert_eq(ms.cancelled, 1);
    cr_assert_eq(atomic_load(&gate_ran), 1, "only the first call ran");
    pair_free(&p);
    rill_rpc_server_free(rs);
}

/* Asynchronous method: keeps its calls, answered later by the test. */
static struct rill_rpc_server_call *kept[8];
static atomic_int nkept;

static void m_keep(struct rill_rpc_server_call *c, void *arg)
{
    kept[atomic_fetch_add(&nkept, 1)] = c;
}

static void *answer_reversed(void *arg)
{
    for (int i = atomic_load(&nkept) - 1; i >= 0; i--) {
        char body[16];
        snprintf(body, sizeof(body), "r%d", i);
        rill_rpc_server_call_reply(kept[i], rt_buf(body));
    }
    return NULL;
}

Test(rpc_server, async_answers_in_reverse_order_from_another_thread)
{
    atomic_store(&nkept, 0);
    struct rill_rpc_server *rs = server(1, 8);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "keep", m_keep, NULL, RILL_RPC_INLINE), 0);
    struct pair p = pair_new(rs, NULL);
    struct rill_rpc_call *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = call(&p, "t", "keep", "q", 0);
    cr_assert_eq(atomic_load(&nkept), 3);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, answer_reversed, NULL), 0);
    pthread_join(th, NULL);
    for (int i = 2; i >= 0; i--) {
        pump_until_done(&p, c[i]);
        char body[16];
        snprintf(body, sizeof(body), "r%d", i);
        check(c[i], RILL_RPC_OK, body);
    }
    pair_free(&p);
    rill_rpc_server_free(rs);
}

Test(rpc_server, answer_for_a_closed_connection_is_dropped)
{
    atomic_store(&nkept, 0);
    struct rill_rpc_server *rs = server(1, 8);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "keep", m_keep, NULL, RILL_RPC_INLINE), 0);
    struct pair p = pair_new(rs, NULL);
    struct rill_rpc_call *c = call(&p, "t", "keep", "q", 0);
    cr_assert_eq(atomic_load(&nkept), 1);
    rill_embedded_close(p.srv);
    cr_assert(rill_rpc_server_call_is_cancelled(kept[0]), "the handler can tell");
    rill_rpc_server_call_reply(kept[0], rt_buf("too late"));
    rill_embedded_run_pending(p.srv); /* the answer hops to the loop */
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(rs, &st);
    cr_assert_eq(st.dropped_responses, 1);
    cr_assert_eq(st.in_flight, 0);
    rill_embedded_close(p.cli);
    check(c, RILL_RPC_UNAVAILABLE, NULL);
    pair_free(&p);
    rill_rpc_server_free(rs);
}

Test(rpc_server, unregister_while_a_call_runs)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_ran, 0);
    struct rill_rpc_server *rs = server(1, 8);
    struct pair p = pair_new(rs, NULL);
    struct rill_rpc_call *c = call(&p, "t", "gated", NULL, 0);
    uint64_t dl = rill_test_deadline_ms(5000);
    while (atomic_load(&gate_ran) == 0 && rill_test_before(dl))
        usleep(200);
    cr_assert_eq(rill_rpc_server_unregister(rs, "t", "gated"), 0);
    cr_assert_eq(rill_rpc_server_unregister(rs, "t", "gated"), -ENOENT);
    check(call(&p, "t", "gated", NULL, 0), RILL_RPC_UNIMPLEMENTED, "unknown method");
    atomic_store(&gate_open, 1);
    pump_until_done(&p, c);
    check(c, RILL_RPC_OK, "gated");
    /* The stats outlive the registration and count the call that ended
     * after it. */
    struct rill_rpc_method_stats ms;
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "gated", &ms), 0);
    cr_assert_eq(ms.calls, 1);
    cr_assert_eq(ms.by_status[RILL_RPC_OK], 1);
    cr_assert_gt(ms.max_ns, 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "gated", m_gated, NULL, RILL_RPC_POOL), 0);
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "gated", &ms), 0);
    cr_assert_eq(ms.calls, 0, "a new registration starts from zero");
    c = call(&p, "t", "gated", NULL, 0);
    pump_until_done(&p, c);
    check(c, RILL_RPC_OK, "gated");
    pair_free(&p);
    rill_rpc_server_free(rs);
}

static int auth(struct rill_channel *ch, const struct rill_rpc_preamble *pre, void *arg,
                char *reason, size_t size)
{
    if (pre->auth_len == 6 && memcmp(pre->auth, "letmein", 6) == 0)
        return RILL_RPC_OK;
    snprintf(reason, size, "bad token \"%s\"", (const char *)pre->auth);
    return RILL_RPC_UNAUTHENTICATED;
}

Test(rpc_server, auth_hook_and_connection_cap)
{
    struct rill_rpc_server_opts o;
    rill_rpc_server_opts_init(&o);
    o.auth = auth;
    o.max_connections = 1;
    struct rill_rpc_server *rs;
    cr_assert_eq(rill_rpc_server_new(&o, &rs), 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), 0);
    struct pair ok = pair_new(rs, "letmei"); /* 6 bytes of "letmein" */
    check(call(&ok, "t", "echo", "x", 0), RILL_RPC_OK, "x");
    struct pair over = pair_new(rs, "letmei");
    struct rill_rpc_call *c = call(&over, "t", "echo", "x", 0);
    check(c, RILL_RPC_UNAVAILABLE, "limit of 1 connections");
    cr_assert_not(rill_embedded_is_open(over.cli));
    pair_free(&over);
    pair_free(&ok);
    struct pair bad = pair_new(rs, "guess");
    c = call(&bad, "t", "echo", "x", 0);
    check(c, RILL_RPC_UNAUTHENTICATED, "bad token \"guess\"");
    cr_assert_not(rill_embedded_is_open(bad.srv));
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(rs, &st);
    cr_assert_eq(st.connections_refused, 2);
    pair_free(&bad);
    rill_rpc_server_free(rs);
}

Test(rpc_server, idle_connections_are_closed)
{
    struct rill_rpc_server_opts o;
    rill_rpc_server_opts_init(&o);
    o.idle_timeout_ns = 100 * RILL_NS_PER_MS;
    struct rill_rpc_server *rs;
    cr_assert_eq(rill_rpc_server_new(&o, &rs), 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), 0);
    struct pair p = pair_new(rs, NULL);
    check(call(&p, "t", "echo", "x", 0), RILL_RPC_OK, "x");
    rill_embedded_advance_clock(p.srv, 50 * RILL_NS_PER_MS);
    cr_assert(rill_embedded_is_open(p.srv), "not idle long enough");
    rill_embedded_advance_clock(p.srv, 100 * RILL_NS_PER_MS);
    pump(&p);
    cr_assert_not(rill_embedded_is_open(p.srv), "closed when idle");
    cr_assert_not(rill_embedded_is_open(p.cli), "the client got GOAWAY");
    pair_free(&p);
    rill_rpc_server_free(rs);
}

Test(rpc_server, oversize_response_becomes_resource_exhausted)
{
    struct rill_rpc_server_opts o;
    rill_rpc_server_opts_init(&o);
    o.max_frame = 200;
    struct rill_rpc_server *rs;
    cr_assert_eq(rill_rpc_server_new(&o, &rs), 0);
    cr_assert_eq(rill_rpc_server_register(rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), 0);
    struct pair p = pair_new(rs, NULL);
    char big[181];
    memset(big, 'a', 180);
    big[180] = 0;
    check(call(&p, "t", "echo", big, 0), RILL_RPC_RESOURCE_EXHAUSTED, "exceeds the frame limit");
    check(call(&p, "t", "echo", "small", 0), RILL_RPC_OK, "small");
    pair_free(&p);
    rill_rpc_server_free(rs);
}

static void *free_server(void *arg)
{
    rill_rpc_server_free(arg);
    return NULL;
}

/* The pool was told to stop (free is past that point). */
static bool pool_stopping(struct rill_rpc_server *rs)
{
    pthread_mutex_lock(&rs->qlock);
    bool stop = rs->stop;
    pthread_mutex_unlock(&rs->qlock);
    return stop;
}

Test(rpc_server, free_answers_queued_pool_calls_unavailable)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_ran, 0);
    struct rill_rpc_server *rs = server(1, 8);
    struct pair p = pair_new(rs, NULL);
    struct rill_rpc_call *blocker = call(&p, "t", "gated", NULL, 0);
    uint64_t dl = rill_test_deadline_ms(5000);
    while (atomic_load(&gate_ran) == 0 && rill_test_before(dl))
        usleep(200);
    struct rill_rpc_call *queued[2] = { call(&p, "t", "gated", NULL, 0),
                                        call(&p, "t", "pecho", "q", 0) };
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(rs, &st);
    cr_assert_eq(st.queue_len, 2);
    /* free joins the handler thread, which is inside the blocker: let the
     * blocker end only once the pool has been told to stop, so the thread
     * leaves without taking the queued calls. */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, free_server, rs), 0);
    dl = rill_test_deadline_ms(5000);
    while (!pool_stopping(rs) && rill_test_before(dl))
        usleep(200);
    cr_assert(pool_stopping(rs), "free stopped the pool");
    atomic_store(&gate_open, 1);
    pthread_join(th, NULL);
    pump_until_done(&p, blocker);
    check(blocker, RILL_RPC_OK, "gated");
    for (int i = 0; i < 2; i++) {
        pump_until_done(&p, queued[i]);
        cr_assert_eq(rill_rpc_call_status(queued[i]), RILL_RPC_UNAVAILABLE);
        /* The call's own answer (the GOAWAY after it says "server sent GOAWAY"). */
        cr_assert_str_eq(rill_rpc_call_status_msg(queued[i]), "server shutting down");
        rill_rpc_call_release(queued[i]);
    }
    cr_assert_eq(atomic_load(&gate_ran), 1, "the queued calls never ran");
    pump(&p);
    cr_assert_not(rill_embedded_is_open(p.cli), "the GOAWAY came after the answers");
    pair_free(&p);
}

static uint64_t be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

Test(rpc_server, ping_is_answered_with_pong)
{
    struct rill_rpc_server *rs = server(1, 8);
    struct pair p = pair_new(rs, NULL);
    /* Raw bytes into the server stack: preamble, PING id 0x0102030405060708
     * with "beat", then PING id 9 with no payload. */
    /* clang-format off */
    static const uint8_t in[] = {
        'R', 'I', 'L', 'L', 1, 0, 0, 0,                          /* preamble */
        0, 0, 0, 14, RILL_RPC_PING, 0, 1, 2, 3, 4, 5, 6, 7, 8,  /* len, type, flags, id */
        'b', 'e', 'a', 't',                                      /* payload */
        0, 0, 0, 10, RILL_RPC_PING, 0, 0, 0, 0, 0, 0, 0, 0, 9,  /* empty PING */
    };
    /* clang-format on */
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(in, sizeof(in), &b), 0);
    rill_embedded_write_inbound(p.srv, &b->msg);
    rill_embedded_run_pending(p.srv);
    uint8_t *out = NULL;
    size_t len = 0;
    rt_drain_bytes(p.srv, &out, &len);
    cr_assert_eq(len, 18 + 14, "two PONG frames, %zu bytes", len);
    cr_assert_eq(memcmp(out, "\0\0\0\x0e", 4), 0, "length 14");
    cr_assert_eq(out[4], RILL_RPC_PONG);
    cr_assert_eq(out[5], 0, "no flags");
    cr_assert_eq(be64(out + 6), 0x0102030405060708ull, "the PING's id");
    cr_assert_eq(memcmp(out + 14, "beat", 4), 0, "the PING's payload");
    const uint8_t *e = out + 18;
    cr_assert_eq(memcmp(e, "\0\0\0\x0a", 4), 0, "an empty PONG");
    cr_assert_eq(e[4], RILL_RPC_PONG);
    cr_assert_eq(be64(e + 6), 9);
    free(out);
    cr_assert(rill_embedded_is_open(p.srv));
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(rs, &st);
    cr_assert_eq(st.calls, 0, "a PING is not a call");
    pair_free(&p);
    rill_rpc_server_free(rs);
}

static atomic_int fail_rc;

static void m_bad_status(struct rill_rpc_server_call *c, void *arg)
{
    atomic_store(&fail_rc, rill_rpc_server_call_fail(c, (int)(intptr_t)arg, "should not be seen"));
}

Test(rpc_server, fail_with_an_invalid_status_answers_internal)
{
    struct rill_rpc_server *rs = server(1, 8);
    static const int bad[] = { 0, -3, 65536 };
    char name[16], why[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(name, sizeof(name), "bad%zu", i);
        cr_assert_eq(rill_rpc_server_register(rs, "t", name, m_bad_status, (void *)(intptr_t)bad[i],
                                              RILL_RPC_INLINE),
                     0);
    }
    struct pair p = pair_new(rs, NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        atomic_store(&fail_rc, 1);
        snprintf(name, sizeof(name), "bad%zu", i);
        snprintf(why, sizeof(why), "method answered with an invalid status %d", bad[i]);
        struct rill_rpc_call *c = call(&p, "t", name, NULL, 0);
        cr_assert_eq(atomic_load(&fail_rc), -EINVAL);
        cr_assert_str_eq(rill_rpc_call_status_msg(c), why);
        check(c, RILL_RPC_INTERNAL, why);
        struct rill_rpc_method_stats ms;
        cr_assert_eq(rill_rpc_server_method_stats(rs, "t", name, &ms), 0);
        cr_assert_eq(ms.calls, 1, "answered once");
        cr_assert_eq(ms.by_status[RILL_RPC_INTERNAL], 1);
    }
    check(call(&p, "t", "echo", "still", 0), RILL_RPC_OK, "still");
    pair_free(&p);
    rill_rpc_server_free(rs);
}

Test(rpc_server, stats_stay_readable_after_unregister)
{
    struct rill_rpc_server *rs = server(1, 8);
    struct pair p = pair_new(rs, NULL);
    check(call(&p, "t", "echo", "a", 0), RILL_RPC_OK, "a");
    check(call(&p, "t", "echo", "b", 0), RILL_RPC_OK, "b");
    check(call(&p, "t", "fail", NULL, 0), RILL_RPC_INVALID_ARGUMENT, NULL);
    cr_assert_eq(rill_rpc_server_unregister(rs, "t", "echo"), 0);
    cr_assert_eq(rill_rpc_server_unregister(rs, "t", "fail"), 0);
    check(call(&p, "t", "echo", "c", 0), RILL_RPC_UNIMPLEMENTED, NULL);
    struct rill_rpc_method_stats ms;
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "echo", &ms), 0);
    cr_assert_eq(ms.calls, 2, "UNIMPLEMENTED requests are not the method's");
    cr_assert_eq(ms.by_status[RILL_RPC_OK], 2);
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "fail", &ms), 0);
    cr_assert_eq(ms.errors, 1);
    /* A second registration's stats replace the first's once it goes too. */
    cr_assert_eq(rill_rpc_server_register(rs, "t", "echo", m_echo, NULL, RILL_RPC_INLINE), 0);
    check(call(&p, "t", "echo", "d", 0), RILL_RPC_OK, "d");
    cr_assert_eq(rill_rpc_server_unregister(rs, "t", "echo"), 0);
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "echo", &ms), 0);
    cr_assert_eq(ms.calls, 1);
    cr_assert_eq(rill_rpc_server_method_stats(rs, "t", "never", &ms), -ENOENT);
    pair_free(&p);
    rill_rpc_server_free(rs);
}
