/* The RPC client handler through the embedded channel (frames in and out,
 * no codec): responses in any order, server statuses, deadlines on the
 * manual clock with their CANCEL frames, explicit cancel, GOAWAY, the
 * connection closing with calls in flight, oversize requests, pings, and
 * calls started from another thread.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/future.h"
#include "rill/rpc_client.h"
#include "tests/rpc/rpc_test.h"
#include "util/testutil.h"

TestSuite(rpc_client, .timeout = 30, .fini = rill_test_no_leaks);

static struct rill_embedded *client(const struct rill_rpc_client_opts *o)
{
    struct rill_embedded_handler h = { "rpc-client", &rill_rpc_client_handler, (void *)o };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(&h, 1, &e), 0);
    return e;
}

static struct rill_rpc_call *start(struct rill_embedded *e, const char *method, const char *body,
                                   uint64_t timeout_ns)
{
    struct rill_rpc_call_opts o;
    rill_rpc_call_opts_init(&o);
    o.timeout_ns = timeout_ns;
    struct rill_rpc_call *c;
    cr_assert_eq(rill_rpc_call_start(rill_embedded_channel(e), "svc", method,
                                     body ? rt_buf(body) : NULL, &o, &c),
                 0);
    rill_embedded_run_pending(e);
    return c;
}

/* The next frame written by the handler (one reference). */
static struct rill_rpc_frame *sent(struct rill_embedded *e)
{
    struct rill_msg *m = rill_embedded_read_outbound(e);
    struct rill_rpc_frame *f = rill_rpc_frame_from_msg(m);
    cr_assert_not_null(f, "a frame was written");
    return f;
}

static void respond(struct rill_embedded *e, uint64_t id, int status, const char *msg,
                    const char *body)
{
    struct rill_rpc_frame *f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_RESPONSE, id, &f), 0);
    cr_assert_eq(rill_rpc_frame_set_status(f, status, msg), 0);
    if (body)
        rill_rpc_frame_set_payload(f, rt_buf(body));
    rill_embedded_write_inbound(e, &f->msg);
}

static void expect_ok(struct rill_rpc_call *c, const char *body)
{
    cr_assert(rill_promise_is_done(rill_rpc_call_future(c)));
    cr_assert_eq(rill_rpc_call_wait(c, 0), 0);
    cr_assert_eq(rill_rpc_call_status(c), RILL_RPC_OK);
    struct rill_buf *r = rill_rpc_call_response(c);
    cr_assert(rt_buf_is(r, body), "response body");
    if (r)
        rill_buf_release(r);
}

static void expect_status(struct rill_rpc_call *c, int status, const char *needle)
{
    cr_assert(rill_promise_is_done(rill_rpc_call_future(c)), "the call ended");
    cr_assert_eq(rill_rpc_call_wait(c, 0), rill_rpc_status_to_err(status));
    cr_assert_eq(rill_rpc_call_status(c), status, "status %s, expected %s",
                 rill_rpc_status_name(rill_rpc_call_status(c)), rill_rpc_status_name(status));
    const char *m = rill_rpc_call_status_msg(c);
    cr_assert(m && strstr(m, needle), "message \"%s\" lacks \"%s\"", m ? m : "", needle);
    cr_assert_null(rill_rpc_call_response(c));
}

Test(rpc_client, responses_in_any_order)
{
    struct rill_embedded *e = client(NULL);
    struct rill_rpc_call *c[3];
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        char body[8];
        snprintf(body, sizeof(body), "q%d", i);
        c[i] = start(e, "m", body, 0);
        struct rill_rpc_frame *f = sent(e);
        cr_assert_eq(f->type, RILL_RPC_REQUEST);
        cr_assert_str_eq(f->service, "svc");
        cr_assert(rt_buf_is(f->payload, body));
        ids[i] = f->id;
        cr_assert_eq(rill_rpc_call_id(c[i]), f->id);
        rill_rpc_frame_release(f);
    }
    cr_assert_neq(ids[0], ids[1]);
    cr_assert_eq(rill_rpc_client_in_flight(rill_embedded_channel(e)), 3);
    respond(e, ids[2], RILL_RPC_OK, NULL, "r2");
    respond(e, ids[0], RILL_RPC_OK, NULL, "r0");
    cr_assert_not(rill_promise_is_done(rill_rpc_call_future(c[1])));
    respond(e, ids[1], RILL_RPC_OK, NULL, NULL);
    expect_ok(c[0], "r0");
    expect_ok(c[1], "");
    expect_ok(c[2], "r2");
    cr_assert_eq(rill_rpc_client_in_flight(rill_embedded_channel(e)), 0);
    /* A response for an id nobody waits for is dropped. */
    respond(e, 999, RILL_RPC_OK, NULL, "stray");
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    for (int i = 0; i < 3; i++)
        rill_rpc_call_release(c[i]);
    rill_embedded_free(e);
}

Test(rpc_client, server_status_and_metadata)
{
    struct rill_embedded *e = client(NULL);
    struct rill_rpc_call *c = start(e, "div", "1 0", 0);
    struct rill_rpc_frame *f = sent(e);
    struct rill_rpc_frame *r;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_RESPONSE, f->id, &r), 0);
    cr_assert_eq(rill_rpc_frame_set_status(r, RILL_RPC_INVALID_ARGUMENT, "division by zero"), 0);
    cr_assert_eq(rill_rpc_frame_add_md(r, "where", "calc", 4), 0);
    rill_embedded_write_inbound(e, &r->msg);
    rill_rpc_frame_release(f);
    expect_status(c, RILL_RPC_INVALID_ARGUMENT, "division by zero");
    const struct rill_rpc_md *md = rill_rpc_call_response_md(c, "where");
    cr_assert_not_null(md);
    cr_assert_eq(md->val_len, 4);
    rill_rpc_call_release(c);
    rill_embedded_free(e);
}

Test(rpc_client, deadline_fails_the_call_and_sends_cancel)
{
    struct rill_embedded *e = client(NULL);
    struct rill_rpc_call *c = start(e, "slow", "x", 100 * RILL_NS_PER_MS);
    struct rill_rpc_frame *f = sent(e);
    cr_assert_eq(f->deadline_ns, 100 * RILL_NS_PER_MS, "the remaining time travels");
    uint64_t id = f->id;
    rill_rpc_frame_release(f);
    rill_embedded_advance_clock(e, 99 * RILL_NS_PER_MS);
    cr_assert_not(rill_promise_is_done(rill_rpc_call_future(c)));
    rill_embedded_advance_clock(e, 1 * RILL_NS_PER_MS);
    expect_status(c, RILL_RPC_DEADLINE_EXCEEDED, "deadline");
    f = sent(e);
    cr_assert_eq(f->type, RILL_RPC_CANCEL);
    cr_assert_eq(f->id, id);
    rill_rpc_frame_release(f);
    respond(e, id, RILL_RPC_OK, NULL, "late"); /* dropped */
    cr_assert_eq(rill_rpc_call_status(c), RILL_RPC_DEADLINE_EXCEEDED);
    rill_rpc_call_release(c);
    rill_embedded_free(e);
}

Test(rpc_client, default_timeout_from_the_handler_options)
{
    struct rill_rpc_client_opts o;
    rill_rpc_client_opts_init(&o);
    o.default_timeout_ns = 5 * RILL_NS_PER_MS;
    struct rill_embedded *e = client(&o);
    struct rill_rpc_call *c = start(e, "m", NULL, 0);
    rill_rpc_frame_release(sent(e));
    rill_embedded_advance_clock(e, 5 * RILL_NS_PER_MS);
    expect_status(c, RILL_RPC_DEADLINE_EXCEEDED, "deadline");
    rill_rpc_frame_release(sent(e));
    rill_rpc_call_release(c);
    rill_embedded_free(e);
}

Test(rpc_client, cancel_sends_cancel_frame)
{
    struct rill_embedded *e = client(NULL);
    struct rill_rpc_call *c = start(e, "m", "x", 0);
    struct rill_rpc_frame *f = sent(e);
    uint64_t id = f->id;
    rill_rpc_frame_release(f);
    cr_assert_eq(rill_rpc_call_cancel(c), 0);
    rill_embedded_run_pending(e);
    expect_status(c, RILL_RPC_CANCELLED, "cancelled");
    f = sent(e);
    cr_assert_eq(f->type, RILL_RPC_CANCEL);
    cr_assert_eq(f->id, id);
    rill_rpc_frame_release(f);
    cr_assert_eq(rill_rpc_call_cancel(c), -EALREADY);
    respond(e, id, RILL_RPC_OK, NULL, "late");
    rill_rpc_call_release(c);
    rill_embedded_free(e);
}

Test(rpc_client, close_fails_every_call_unavailable)
{
    struct rill_embedded *e = client(NULL);
    struct rill_rpc_call *c[50];
    for (int i = 0; i < 50; i++)
        c[i] = start(e, "m", "payload", i % 2 ? 1000 * RILL_NS_PER_MS : 0);
    rill_embedded_close(e);
    for (int i = 0; i < 50; i++) {
        expect_status(c[i], RILL_RPC_UNAVAILABLE, "connection closed");
        rill_rpc_call_release(c[i]);
    }
    /* Calls on a closed channel fail at once. */
    struct rill_rpc_call *late = start(e, "m", "x", 0);
    expect_status(late, RILL_RPC_UNAVAILABLE, "");
    rill_rpc_call_release(late);
    rill_embedded_free(e);
}

Test(rpc_client, goaway_fails_calls_with_its_status)
{
    struct rill_embedded *e = client(NULL);
    struct rill_rpc_call *c = start(e, "m", "x", 0);
    struct rill_rpc_frame *g;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_GOAWAY, 0, &g), 0);
    cr_assert_eq(rill_rpc_frame_set_status(g, RILL_RPC_UNAUTHENTICATED, "bad token"), 0);
    rill_embedded_write_inbound(e, &g->msg);
    expect_status(c, RILL_RPC_UNAUTHENTICATED, "bad token");
    cr_assert_not(rill_embedded_is_open(e));
    rill_rpc_call_release(c);
    rill_embedded_free(e);
}

Test(rpc_client, no_handler_and_oversize_requests)
{
    struct rill_embedded *bare = NULL;
    cr_assert_eq(rill_embedded_new(NULL, 0, &bare), 0);
    struct rill_rpc_call *c = start(bare, "m", "x", 0);
    expect_status(c, RILL_RPC_UNAVAILABLE, "no rpc client handler");
    rill_rpc_call_release(c);
    rill_embedded_free(bare);

    struct rill_rpc_client_opts o;
    rill_rpc_client_opts_init(&o);
    o.max_frame = 100;
    struct rill_embedded *e = client(&o);
    struct rill_rpc_call_opts co;
    rill_rpc_call_opts_init(&co);
    cr_assert_eq(
        rill_rpc_call_start(rill_embedded_channel(e), "svc", "m", rt_pattern_buf(200, 1), &co, &c),
        0);
    rill_embedded_run_pending(e);
    expect_status(c, RILL_RPC_RESOURCE_EXHAUSTED, "exceeds the frame limit of 100");
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    rill_rpc_call_release(c);
    cr_assert_eq(rill_rpc_call_start(rill_embedded_channel(e), "", "m", NULL, NULL, &c), -EINVAL);
    rill_embedded_free(e);
}

Test(rpc_client, request_metadata_and_ping)
{
    struct rill_embedded *e = client(NULL);
    struct rill_rpc_md md[1] = {
        { .key = "k", .key_len = 1, .val = (const uint8_t *)"v", .val_len = 1 }
    };
    struct rill_rpc_call_opts o;
    rill_rpc_call_opts_init(&o);
    o.md = md;
    o.nmd = 1;
    struct rill_rpc_call *c;
    cr_assert_eq(rill_rpc_call_start(rill_embedded_channel(e), "s", "m", NULL, &o, &c), 0);
    rill_embedded_run_pending(e);
    struct rill_rpc_frame *f = sent(e);
    cr_assert_eq(f->nmd, 1);
    cr_assert_not_null(rill_rpc_frame_md(f, "k"));
    respond(e, f->id, RILL_RPC_OK, NULL, "ok");
    rill_rpc_frame_release(f);
    expect_ok(c, "ok");
    rill_rpc_call_release(c);

    struct rill_rpc_frame *ping;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_PING, 77, &ping), 0);
    rill_rpc_frame_set_payload(ping, rt_buf("hb"));
    rill_embedded_write_inbound(e, &ping->msg);
    f = sent(e);
    cr_assert_eq(f->type, RILL_RPC_PONG);
    cr_assert_eq(f->id, 77);
    cr_assert(rt_buf_is(f->payload, "hb"));
    rill_rpc_frame_release(f);
    rill_embedded_free(e);
}

struct thread_arg {
    struct rill_channel *ch;
    struct rill_rpc_call *calls[100];
};

static void *starter(void *arg)
{
    struct thread_arg *t = arg;
    for (int i = 0; i < 100; i++)
        if (rill_rpc_call_start(t->ch, "svc", "m", rt_buf("x"), NULL, &t->calls[i]) != 0)
            return (void *)1;
    return NULL;
}

Test(rpc_client, calls_from_another_thread_hop_to_the_loop)
{
    struct rill_embedded *e = client(NULL);
    struct thread_arg t = { .ch = rill_embedded_channel(e) };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, starter, &t), 0);
    void *ret;
    pthread_join(th, &ret);
    cr_assert_null(ret);
    cr_assert_eq(rill_embedded_outbound_count(e), 0, "nothing ran off the loop");
    rill_embedded_run_pending(e);
    cr_assert_eq(rill_embedded_outbound_count(e), 100);
    struct rill_msg *m;
    while ((m = rill_embedded_read_outbound(e)) != NULL) {
        struct rill_rpc_frame *f = rill_rpc_frame_from_msg(m);
        respond(e, f->id, RILL_RPC_OK, NULL, "y");
        rill_msg_release(m);
    }
    for (int i = 0; i < 100; i++) {
        expect_ok(t.calls[i], "y");
        rill_rpc_call_release(t.calls[i]);
    }
    rill_embedded_free(e);
}

/* A client-role codec and the client handler, both limited to @max_frame. */
static struct rill_embedded *coded_client(size_t max_frame)
{
    static struct rill_rpc_codec_opts co;
    static struct rill_rpc_client_opts clo;
    rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_CLIENT);
    co.max_frame = max_frame;
    rill_rpc_client_opts_init(&clo);
    clo.max_frame = max_frame;
    struct rill_embedded_handler h[2] = { { "rpc-codec", &rill_rpc_codec_handler, &co },
                                          { "rpc-client", &rill_rpc_client_handler, &clo } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(h, 2, &e), 0);
    return e;
}

/* Start svc/m with @n payload bytes; returns the call after the loop ran. */
static struct rill_rpc_call *start_sized(struct rill_embedded *e, size_t n)
{
    struct rill_rpc_call *c;
    cr_assert_eq(
        rill_rpc_call_start(rill_embedded_channel(e), "svc", "m", rt_pattern_buf(n, 3), NULL, &c),
        0);
    rill_embedded_run_pending(e);
    return c;
}

/* The length field of the one frame written since the last drain (after
 * the 8-byte preamble when @preamble). */
static uint32_t written_frame_len(struct rill_embedded *e, bool preamble)
{
    uint8_t *b = NULL;
    size_t len = 0;
    rt_drain_bytes(e, &b, &len);
    size_t at = preamble ? RILL_RPC_PREAMBLE_LEN : 0;
    cr_assert_geq(len, at + 4, "a frame was written");
    uint32_t n =
        (uint32_t)b[at] << 24 | (uint32_t)b[at + 1] << 16 | (uint32_t)b[at + 2] << 8 | b[at + 3];
    cr_assert_eq(len, at + 4 + n, "exactly one frame");
    free(b);
    return n;
}

Test(rpc_client, size_check_counts_names_only_when_sent)
{
    /* Request body: ref 4, deadline 8, payload; the first request for
     * svc/m adds 1 + 3 + 1 + 1 bytes of names. Header after the length: 10. */
    enum { LIMIT = 100, BARE = 10 + 4 + 8, NAMES = 1 + 3 + 1 + 1 };
    struct rill_embedded *e = coded_client(LIMIT);
    struct rill_rpc_call *c = start_sized(e, LIMIT - BARE - NAMES + 1);
    expect_status(c, RILL_RPC_RESOURCE_EXHAUSTED, "of 101 bytes exceeds the frame limit of 100");
    rill_rpc_call_release(c);
    c = start_sized(e, LIMIT - BARE - NAMES);
    cr_assert_not(rill_promise_is_done(rill_rpc_call_future(c)), "sent with its names");
    cr_assert_eq(written_frame_len(e, true), LIMIT);
    respond(e, rill_rpc_call_id(c), RILL_RPC_OK, NULL, NULL);
    rill_rpc_call_release(c);
    /* Interned now: the id alone goes out, so 6 more payload bytes fit. */
    c = start_sized(e, LIMIT - BARE);
    cr_assert_not(rill_promise_is_done(rill_rpc_call_future(c)), "sent by id");
    cr_assert_eq(written_frame_len(e, false), LIMIT);
    rill_rpc_call_release(c);
    c = start_sized(e, LIMIT - BARE + 1);
    expect_status(c, RILL_RPC_RESOURCE_EXHAUSTED, "of 101 bytes exceeds the frame limit of 100");
    cr_assert_eq(rill_embedded_outbound_count(e), 0, "nothing written");
    rill_rpc_call_release(c);
    rill_embedded_free(e);
}

/* Answer the next request written by @e with @status after @wait_ns. */
static void answer_next(struct rill_embedded *e, uint64_t wait_ns, int status)
{
    struct rill_rpc_frame *f = sent(e);
    cr_assert_eq(f->type, RILL_RPC_REQUEST);
    rill_embedded_advance_clock(e, wait_ns);
    respond(e, f->id, status, status ? "no" : NULL, NULL);
    rill_rpc_frame_release(f);
}

Test(rpc_client, stats_count_calls_by_outcome)
{
    struct rill_embedded *e = client(NULL);
    struct rill_channel *ch = rill_embedded_channel(e);
    struct rill_rpc_client_stats st;
    cr_assert_eq(rill_rpc_client_stats(ch, &st), 0);
    cr_assert_eq(st.started, 0);
    cr_assert_eq(st.max_ns, 0);
    struct rill_rpc_call *c[5];
    c[0] = start(e, "ok", "a", 0);
    answer_next(e, 2 * RILL_NS_PER_MS, RILL_RPC_OK);
    c[1] = start(e, "missing", "b", 0);
    answer_next(e, 4 * RILL_NS_PER_MS, RILL_RPC_NOT_FOUND);
    c[2] = start(e, "slow", "c", 10 * RILL_NS_PER_MS);
    rill_rpc_frame_release(sent(e));
    rill_embedded_advance_clock(e, 10 * RILL_NS_PER_MS);
    rill_rpc_frame_release(sent(e)); /* its CANCEL */
    c[3] = start(e, "app", "d", 0);
    answer_next(e, 0, RILL_RPC_USER + 1);
    c[4] = start(e, "pending", "e", 0);
    rill_rpc_frame_release(sent(e));
    expect_ok(c[0], "");
    expect_status(c[1], RILL_RPC_NOT_FOUND, "no");
    expect_status(c[2], RILL_RPC_DEADLINE_EXCEEDED, "deadline");
    cr_assert_eq(rill_rpc_call_status(c[3]), RILL_RPC_USER + 1);

    cr_assert_eq(rill_rpc_client_stats(ch, &st), 0);
    cr_assert_eq(st.started, 5);
    cr_assert_eq(st.completed, 4);
    cr_assert_eq(st.in_flight, 1);
    cr_assert_eq(st.by_status[RILL_RPC_OK], 1);
    cr_assert_eq(st.by_status[RILL_RPC_NOT_FOUND], 1);
    cr_assert_eq(st.by_status[RILL_RPC_DEADLINE_EXCEEDED], 1);
    cr_assert_eq(st.other_status, 1);
    cr_assert_eq(st.errors, 3);
    /* Latencies on the manual clock: 0, 2, 4 and 10 ms. */
    cr_assert_eq(st.max_ns, 10 * RILL_NS_PER_MS);
    cr_assert_eq(st.p99_ns, 10 * RILL_NS_PER_MS, "the slowest, capped at max");
    cr_assert_geq(st.p50_ns, 2 * RILL_NS_PER_MS);
    cr_assert_leq(st.p50_ns, 2 * RILL_NS_PER_MS + RILL_NS_PER_MS / 2, "within the 25%% bucket");
    cr_assert_eq(st.bytes_in, 0, "no codec: no bytes");

    rill_embedded_close(e);
    expect_status(c[4], RILL_RPC_UNAVAILABLE, "connection closed");
    for (int i = 0; i < 5; i++)
        rill_rpc_call_release(c[i]);
    rill_embedded_free(e);

    struct rill_embedded *bare = NULL;
    cr_assert_eq(rill_embedded_new(NULL, 0, &bare), 0);
    cr_assert_eq(rill_rpc_client_stats(rill_embedded_channel(bare), &st), -ENOENT);
    rill_embedded_free(bare);
}

Test(rpc_client, stats_count_bytes_through_the_codec)
{
    struct rill_embedded *e = coded_client(RILL_RPC_MAX_FRAME_DEFAULT);
    struct rill_rpc_call *c = start_sized(e, 10);
    uint32_t len = written_frame_len(e, true);
    cr_assert_eq(len, 10 + 4 + 6 + 8 + 10);
    struct rill_rpc_client_stats st;
    cr_assert_eq(rill_rpc_client_stats(rill_embedded_channel(e), &st), 0);
    cr_assert_eq(st.bytes_out, RILL_RPC_PREAMBLE_LEN + 4 + len);
    cr_assert_eq(st.bytes_in, 0);
    /* RESPONSE for id 1, OK, no message, payload "hi": 4 + 16 bytes. */
    static const uint8_t resp[] = {
        0, 0, 0, 16, RILL_RPC_RESPONSE, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 'h', 'i'
    };
    cr_assert_eq(rill_rpc_call_id(c), 1);
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(resp, sizeof(resp), &b), 0);
    rill_embedded_write_inbound(e, &b->msg);
    expect_ok(c, "hi");
    cr_assert_eq(rill_rpc_client_stats(rill_embedded_channel(e), &st), 0);
    cr_assert_eq(st.bytes_in, sizeof(resp));
    cr_assert_eq(st.by_status[RILL_RPC_OK], 1);
    rill_rpc_call_release(c);
    rill_embedded_free(e);
}
