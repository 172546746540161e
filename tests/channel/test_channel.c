/* Tests for the channel (include/rill/channel.h and the transport contract
 * in channel/channel_internal.h), through the test transport in tt.h:
 * lifecycle events in order and exactly once, close from inside callbacks
 * and from another thread, writes from other threads, writes after close,
 * registration failures, connect (done, failed, timed out), server bind
 * and accepted children on another loop, auto-read, half-close,
 * writability and watermarks, options, attributes, receive sizing.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/pipeline.h"
#include "tests/channel/tt.h"
#include "util/testutil.h"

TestSuite(channel, .timeout = 30, .fini = rill_test_no_leaks);

#define WAIT_NS (10 * RILL_NS_PER_S)

static struct rill_promise *promise(struct rill_loop *loop)
{
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(loop, &p), 0);
    return p;
}

static int init_rec(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "r", &rec_handler,
                                  arg ? arg : (void *)"R");
}

static void log_closed(struct rill_promise *p, void *arg)
{
    (void)p;
    (void)arg;
    tt_log("close-future");
}

static struct rill_loop *started_loop(void);
static void stop_loop_keep(struct rill_loop *l);

/* A manual loop driven by the test thread, and a tt channel on it. */
static struct rill_loop *loop;

static struct tt *start(bool connected, rill__channel_init_fn *init)
{
    tt_trace_reset();
    loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *t = tt_new(loop);
    if (connected)
        rill__channel_mark_active(&t->base);
    rill__channel_register(&t->base, init, NULL, NULL);
    return t;
}

static void stop(struct tt *t)
{
    rill_channel_close(&t->base, NULL);
    tt_run_pending(loop);
    rill_channel_release(&t->base);
    tt_leave(loop);
    rill_loop_free(loop);
}

/* ---- lifecycle ---- */

Test(channel, lifecycle_events_in_order_exactly_once)
{
    struct tt *t = start(false, init_rec);
    struct rill_channel *ch = &t->base;
    int destroyed = 0;
    t->destroyed = &destroyed;
    cr_assert_str_eq(tt_trace, "R:added R:registered");
    cr_assert(rill_channel_is_registered(ch));
    cr_assert_not(rill_channel_is_active(ch));
    cr_assert_eq(t->registers, 1);
    rill_promise_add_listener(rill_channel_close_future(ch), log_closed, NULL);

    t->connect_result = -EINPROGRESS;
    struct rill_promise *cp = promise(loop);
    rill_channel_connect(ch, NULL, NULL, cp);
    cr_assert_eq(t->connects, 1);
    cr_assert_eq(rill_promise_result(cp, NULL), -EINPROGRESS);
    rill__channel_connect_done(ch, 0);
    cr_assert_eq(rill_promise_result(cp, NULL), 0);
    rill_promise_release(cp);
    cr_assert(rill_channel_is_active(ch));
    cr_assert_eq(t->begin_reads, 1, "auto-read asks for the first read");

    rill__channel_fire_read(ch, tt_msg("x"));
    rill__channel_fire_read_complete(ch);
    cr_assert_eq(t->begin_reads, 2, "and for more after each batch");

    rill_channel_close(ch, NULL);
    rill_channel_close(ch, NULL); /* passes through the handlers again, closes nothing */
    cr_assert_str_eq(tt_trace,
                     "R:added R:registered R:active R:read(x) R:read_complete R:close R:close",
                     "inactive waits for the task");
    cr_assert_not(rill_channel_is_open(ch));
    cr_assert_eq(t->closes, 1);
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace, "R:added R:registered R:active R:read(x) R:read_complete R:close "
                               "R:close R:inactive close-future R:unregistered R:removed");
    cr_assert_eq(t->closes, 1);
    cr_assert_eq(t->deregisters, 1);
    rill_channel_close(ch, NULL);
    rill__channel_close(ch, -EIO);
    tt_run_pending(loop);
    cr_assert_eq(rill_channel_close_reason(ch), 0, "the first close decides the reason");
    cr_assert_eq(destroyed, 0, "the creator's reference keeps it");
    rill_channel_release(ch);
    cr_assert_eq(destroyed, 1);
    tt_leave(loop);
    rill_loop_free(loop);
}

Test(channel, a_channel_that_never_connected_gets_no_inactive)
{
    struct tt *t = start(false, init_rec);
    rill_channel_close(&t->base, NULL);
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace, "R:added R:registered R:close R:unregistered R:removed");
    stop(t);
}

Test(channel, registration_and_unregistration_promises)
{
    tt_trace_reset();
    loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *t = tt_new(loop);
    struct rill_promise *p = promise(loop), *again = promise(loop), *closed = promise(loop);
    rill__channel_register(&t->base, init_rec, NULL, p);
    rill__channel_register(&t->base, init_rec, NULL, again);
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    cr_assert_eq(rill_promise_result(again, NULL), -EALREADY);
    rill_channel_close(&t->base, closed);
    cr_assert_eq(rill_promise_result(closed, NULL), -EINPROGRESS);
    tt_run_pending(loop);
    cr_assert_eq(rill_promise_result(closed, NULL), 0);
    rill_promise_release(p);
    rill_promise_release(again);
    rill_promise_release(closed);
    stop(t);
}

static int init_fails(struct rill_channel *ch, void *arg)
{
    (void)arg;
    init_rec(ch, NULL);
    return -EPERM;
}

Test(channel, failed_registration_closes_without_events)
{
    tt_trace_reset();
    loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *t = tt_new(loop);
    rill__channel_mark_active(&t->base);
    struct rill_promise *p = promise(loop);
    rill_log_set_level(RILL_LOG_ERROR); /* the warnings are expected */
    rill__channel_register(&t->base, init_fails, NULL, p);
    cr_assert_eq(rill_promise_result(p, NULL), -EPERM);
    cr_assert_not(rill_channel_is_open(&t->base));
    cr_assert(rill_promise_is_done(rill_channel_close_future(&t->base)));
    cr_assert_eq(rill_channel_close_reason(&t->base), -EPERM);
    cr_assert_eq(t->registers, 0);
    cr_assert_eq(t->closes, 1);
    cr_assert_str_eq(tt_trace, "R:added");
    rill_promise_release(p);
    rill_channel_release(&t->base); /* the handler goes with the channel */
    cr_assert_str_eq(tt_trace, "R:added R:removed");

    /* The transport refusing registration does the same. */
    t = tt_new(loop);
    t->register_result = -EMFILE;
    p = promise(loop);
    rill__channel_register(&t->base, NULL, NULL, p);
    cr_assert_eq(rill_promise_result(p, NULL), -EMFILE);
    cr_assert_not(rill_channel_is_open(&t->base));
    rill_promise_release(p);
    rill_channel_release(&t->base);
    rill_log_set_level(RILL_LOG_WARN);
    tt_leave(loop);
    rill_loop_free(loop);
}

Test(channel, registering_on_a_terminated_loop_fails)
{
    struct rill_loop *l = started_loop();
    stop_loop_keep(l);
    struct tt *t = tt_new(l);
    struct rill_promise *p = promise(NULL);
    rill__channel_register(&t->base, init_rec, NULL, p);
    cr_assert_eq(rill_promise_result(p, NULL), RILL_EREJECTED);
    cr_assert_not(rill_channel_is_open(&t->base));
    cr_assert_eq(rill_channel_close_reason(&t->base), RILL_EREJECTED);
    cr_assert(rill_promise_is_done(rill_channel_close_future(&t->base)));
    cr_assert_eq(t->closes, 1);
    rill_promise_release(p);
    rill_channel_release(&t->base);
    rill_loop_free(l);
}

Test(channel, loop_shutdown_closes_its_channels)
{
    tt_trace_reset();
    struct rill_loop *l = started_loop();
    struct tt *t = tt_new(l);
    int destroyed = 0;
    t->destroyed = &destroyed;
    rill__channel_mark_active(&t->base);
    struct rill_promise *reg = promise(NULL), *closed = promise(NULL);
    rill__channel_register(&t->base, init_rec, NULL, reg);
    cr_assert_eq(rill_promise_wait(reg, WAIT_NS), 0);
    /* Shutdown closes the channel from the transport side, as Netty's
     * closeAll does (no outbound close event through the pipeline). */
    stop_loop_keep(l);
    cr_assert_not(rill_channel_is_open(&t->base));
    cr_assert(rill_promise_is_done(rill_channel_close_future(&t->base)));
    cr_assert_eq(rill_channel_close_reason(&t->base), 0);
    cr_assert_str_eq(tt_trace, "R:added R:registered R:active R:inactive R:unregistered R:removed");
    /* A close after the loop ended completes at once. */
    rill_channel_close(&t->base, closed);
    cr_assert_eq(rill_promise_result(closed, NULL), 0);
    rill_channel_release(&t->base);
    cr_assert_eq(destroyed, 1, "the loop's reference went too");
    rill_promise_release(reg);
    rill_promise_release(closed);
    rill_loop_free(l);
}

Test(channel, dropping_an_unregistered_channel_closes_the_transport)
{
    loop = tt_manual_loop();
    struct tt *t = tt_new(loop);
    int destroyed = 0, closes_seen;
    t->destroyed = &destroyed;
    rill_channel_write(&t->base, tt_msg("queued"), NULL); /* a task: never runs */
    rill_loop_free(loop); /* runs it: the message waits in the queue */
    closes_seen = t->closes;
    cr_assert_eq(closes_seen, 0);
    loop = NULL;
    rill_channel_release(&t->base);
    cr_assert_eq(destroyed, 1);
}

/* ---- closing from inside callbacks ---- */

static void close_then_forward(struct rill_ctx *ctx, struct rill_msg *msg)
{
    tt_log("C:read");
    rill_channel_close(rill_ctx_channel(ctx), NULL);
    cr_assert_not(rill_channel_is_open(rill_ctx_channel(ctx)));
    rill_ctx_fire_read(ctx, msg); /* still delivered: ownership stays simple */
    tt_log("C:read-done");
}
static void close_in_active(struct rill_ctx *ctx)
{
    tt_log("C:active");
    rill_ctx_close(ctx, NULL);
    rill_ctx_fire_active(ctx);
}
static const struct rill_handler closer = { .name = "closer", .read = close_then_forward };
static const struct rill_handler active_closer = { .name = "closer", .active = close_in_active };

static int init_closer(struct rill_channel *ch, void *arg)
{
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    rill_pipeline_add_last(pl, "c", arg, NULL);
    return rill_pipeline_add_last(pl, "r", &rec_handler, "R");
}

Test(channel, close_inside_a_read_callback)
{
    tt_trace_reset();
    loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *t = tt_new(loop);
    rill__channel_mark_active(&t->base);
    rill__channel_register(&t->base, init_closer, (void *)&closer, NULL);
    rill__channel_fire_read(&t->base, tt_msg("1"));
    rill__channel_fire_read(&t->base, tt_msg("2")); /* the transport was slow to notice */
    rill__channel_fire_read_complete(&t->base);
    cr_assert_str_eq(tt_trace,
                     "R:added R:registered R:active C:read R:close R:read(1) "
                     "C:read-done",
                     "the second read and the read_complete are dropped");
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace, "R:added R:registered R:active C:read R:close R:read(1) "
                               "C:read-done R:inactive R:unregistered R:removed");
    cr_assert_eq(t->closes, 1);
    stop(t);
}

Test(channel, close_inside_the_active_callback)
{
    tt_trace_reset();
    loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *t = tt_new(loop);
    rill__channel_mark_active(&t->base);
    rill__channel_register(&t->base, init_closer, (void *)&active_closer, NULL);
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace,
                     "R:added R:registered C:active R:active R:inactive "
                     "R:unregistered R:removed",
                     "a close from C starts at C: R (after it) never sees it");
    cr_assert_eq(t->begin_reads, 0, "no read for a closed channel");
    stop(t);
}

/* ---- other threads ---- */

static struct rill_loop *started_loop(void)
{
    struct rill_loop *l = NULL;
    cr_assert_eq(rill_loop_new(NULL, &l), 0);
    cr_assert_eq(rill_loop_start(l), 0);
    return l;
}

static void stop_loop_keep(struct rill_loop *l)
{
    rill_loop_shutdown(l, 0, WAIT_NS);
    cr_assert_eq(rill_promise_wait(rill_loop_termination(l), WAIT_NS), 0);
}

static void stop_loop(struct rill_loop *l)
{
    stop_loop_keep(l);
    rill_loop_free(l);
}

Test(channel, close_from_another_thread)
{
    tt_trace_reset();
    struct rill_loop *l = started_loop();
    struct tt *t = tt_new(l);
    rill__channel_mark_active(&t->base);
    struct rill_promise *reg = promise(l), *closed = promise(l), *late = promise(l);
    rill__channel_register(&t->base, init_rec, NULL, reg);
    cr_assert_eq(rill_promise_wait(reg, WAIT_NS), 0);
    rill_channel_close(&t->base, closed);
    cr_assert_eq(rill_promise_wait(closed, WAIT_NS), 0);
    cr_assert_eq(rill_promise_wait(rill_channel_close_future(&t->base), WAIT_NS), 0);
    cr_assert_not(rill_channel_is_open(&t->base));
    rill_channel_write_and_flush(&t->base, tt_msg("late"), late);
    cr_assert_eq(rill_promise_wait(late, WAIT_NS), RILL_ECLOSED);
    stop_loop(l); /* joins the loop thread: its writes to the trace are visible */
    cr_assert_str_eq(tt_trace,
                     "R:added R:registered R:active R:close R:inactive R:unregistered R:removed");
    rill_promise_release(reg);
    rill_promise_release(closed);
    rill_promise_release(late);
    rill_channel_release(&t->base);
}

struct writer {
    struct rill_channel *ch;
    char tag;
    struct rill_promise *last;
};

enum { PER_WRITER = 300 };

static void *writer_thread(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < PER_WRITER; i++) {
        char s[8];
        snprintf(s, sizeof(s), "%c%03d", w->tag, i);
        if (i == PER_WRITER - 1)
            rill_channel_write_and_flush(w->ch, tt_msg(s), w->last);
        else if (i % 7 == 0)
            rill_channel_write_and_flush(w->ch, tt_msg(s), NULL);
        else
            rill_channel_write(w->ch, tt_msg(s), NULL);
    }
    return NULL;
}

Test(channel, writes_from_other_threads_keep_each_threads_order)
{
    struct rill_loop *l = started_loop();
    struct tt *t = tt_new(l);
    rill__channel_mark_active(&t->base);
    struct rill_promise *reg = promise(l);
    rill__channel_register(&t->base, NULL, NULL, reg);
    cr_assert_eq(rill_promise_wait(reg, WAIT_NS), 0);
    struct writer w[2] = { { &t->base, 'a', promise(l) }, { &t->base, 'b', promise(l) } };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, writer_thread, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(rill_promise_wait(w[i].last, WAIT_NS), 0);
        rill_promise_release(w[i].last);
    }
    /* The last promise of each thread completed on the loop after all its
     * earlier writes went out. */
    cr_assert_eq(t->sunk, 2 * PER_WRITER * 4);
    int next[2] = { 0, 0 };
    for (size_t off = 0; off < t->sunk; off += 4) {
        int k = t->sink[off] == 'a' ? 0 : 1;
        char want[8];
        snprintf(want, sizeof(want), "%c%03d", k ? 'b' : 'a', next[k]++);
        cr_assert_eq(memcmp(t->sink + off, want, 4), 0, "at %zu", off);
    }
    rill_channel_close(&t->base, NULL);
    stop_loop(l);
    rill_promise_release(reg);
    rill_channel_release(&t->base);
}

/* ---- connect ---- */

Test(channel, connect_failures_close_the_channel)
{
    struct tt *t = start(false, init_rec);
    struct rill_channel *ch = &t->base;
    t->connect_result = -ECONNREFUSED;
    struct rill_promise *p = promise(loop);
    rill_channel_connect(ch, NULL, NULL, p);
    cr_assert_eq(rill_promise_result(p, NULL), -ECONNREFUSED);
    cr_assert_not(rill_channel_is_open(ch));
    cr_assert_eq(rill_channel_close_reason(ch), -ECONNREFUSED);
    rill_promise_release(p);
    p = promise(loop);
    rill_channel_connect(ch, NULL, NULL, p);
    cr_assert_eq(rill_promise_result(p, NULL), RILL_ECLOSED);
    rill_promise_release(p);
    stop(t);
}

Test(channel, connect_times_out_on_the_loop_clock)
{
    struct tt *t = start(false, init_rec);
    struct rill_channel *ch = &t->base;
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_CONNECT_TIMEOUT_MS, 250), 0);
    t->connect_result = -EINPROGRESS;
    struct rill_promise *p = promise(loop), *second = promise(loop);
    rill_channel_connect(ch, NULL, NULL, p);
    rill_channel_connect(ch, NULL, NULL, second);
    cr_assert_eq(rill_promise_result(second, NULL), -EALREADY);
    rill_loop_advance_clock(loop, 249 * RILL_NS_PER_MS);
    cr_assert_eq(rill_promise_result(p, NULL), -EINPROGRESS);
    rill_loop_advance_clock(loop, 1 * RILL_NS_PER_MS);
    cr_assert_eq(rill_promise_result(p, NULL), -ETIMEDOUT);
    cr_assert_not(rill_channel_is_open(ch));
    cr_assert_eq(t->closes, 1, "the transport aborts the attempt in close");
    rill__channel_connect_done(ch, 0); /* too late: ignored */
    cr_assert_not(rill_channel_is_active(ch));
    rill_promise_release(p);
    rill_promise_release(second);
    stop(t);
}

Test(channel, connect_in_time_cancels_the_timer)
{
    struct tt *t = start(false, init_rec);
    struct rill_channel *ch = &t->base;
    t->connect_result = -EINPROGRESS;
    struct rill_promise *p = promise(loop), *again = promise(loop);
    rill_channel_connect(ch, NULL, NULL, p);
    rill_loop_advance_clock(loop, 100 * RILL_NS_PER_MS);
    rill__channel_connect_done(ch, 0);
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    rill_loop_advance_clock(loop, 60 * RILL_NS_PER_S);
    cr_assert(rill_channel_is_active(ch));
    rill_channel_connect(ch, NULL, NULL, again);
    cr_assert_eq(rill_promise_result(again, NULL), -EISCONN);
    rill_promise_release(p);
    rill_promise_release(again);
    stop(t);
}

Test(channel, connect_completing_at_once)
{
    struct tt *t = start(false, init_rec);
    struct rill_promise *p = promise(loop);
    rill_channel_connect(&t->base, NULL, NULL, p); /* connect_result 0: done */
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    cr_assert_str_eq(tt_trace, "R:added R:registered R:active");
    rill_promise_release(p);
    stop(t);
}

/* ---- flush before connect ---- */

Test(channel, flush_before_active_fails_with_enotconn)
{
    struct tt *t = start(false, NULL);
    struct rill_promise *p = promise(loop), *unflushed = promise(loop);
    rill_channel_write_and_flush(&t->base, tt_msg("early"), p);
    cr_assert_eq(rill_promise_result(p, NULL), -ENOTCONN);
    rill_channel_write(&t->base, tt_msg("kept"), unflushed);
    cr_assert_eq(rill_promise_result(unflushed, NULL), -EINPROGRESS);
    rill_channel_connect(&t->base, NULL, NULL, NULL);
    rill_channel_flush(&t->base);
    cr_assert_eq(rill_promise_result(unflushed, NULL), 0);
    cr_assert_eq(t->sunk, 4);
    rill_promise_release(p);
    rill_promise_release(unflushed);
    stop(t);
}

/* ---- servers and accepted children ---- */

static struct rill_loop *worker;
static _Atomic int child_init_on_worker;
static struct rill_promise *child_active;

static int child_init(struct rill_channel *ch, void *arg)
{
    (void)arg;
    atomic_store(&child_init_on_worker, rill_loop_in_thread(worker) &&
                                            rill_channel_loop(ch) == worker &&
                                            !rill_channel_is_registered(ch));
    return init_rec(ch, "K");
}

static void child_active_cb(struct rill_ctx *ctx)
{
    rill_promise_succeed(child_active, rill_channel_retain(rill_ctx_channel(ctx)), NULL);
    rill_ctx_fire_active(ctx);
}
static const struct rill_handler child_watch = { .name = "watch", .active = child_active_cb };

static int child_init_watch(struct rill_channel *ch, void *arg)
{
    int err = child_init(ch, arg);
    return err ? err : rill_pipeline_add_first(rill_channel_pipeline(ch), "w", &child_watch, NULL);
}

static struct rill_loop *pick_worker(void *arg)
{
    (void)arg;
    return worker;
}

Test(channel, server_bind_activates_and_children_register_on_their_loop)
{
    tt_trace_reset();
    loop = tt_manual_loop();
    worker = started_loop();
    child_active = promise(NULL);
    tt_enter(loop);
    struct tt *srv = tt_new_ops(loop, &tt_server_ops, NULL);
    int64_t v;
    rill_channel_get_option(&srv->base, RILL_OPT_SO_REUSEADDR, &v);
    cr_assert_eq(v, 1, "servers reuse addresses by default");
    struct rill__acceptor acc = { .pick_loop = pick_worker, .init = child_init_watch };
    cr_assert_eq(rill__channel_set_acceptor(&srv->base, &acc), 0);
    rill__channel_register(&srv->base, NULL, NULL, NULL);
    struct rill_promise *bound = promise(loop);
    rill_channel_bind(&srv->base, NULL, bound);
    cr_assert_eq(rill_promise_result(bound, NULL), 0);
    cr_assert_not(rill_channel_is_active(&srv->base), "active comes after the bind promise");
    tt_run_pending(loop);
    cr_assert(rill_channel_is_active(&srv->base));
    cr_assert_eq(srv->begin_reads, 1, "auto-read starts accepting");

    /* "Accept" a connection. */
    cr_assert_eq(rill__channel_child_loop(&srv->base), worker);
    struct tt *kid = tt_new_ops(worker, &tt_ops, &srv->base);
    rill__channel_mark_active(&kid->base);
    rill__channel_accepted(&srv->base, &kid->base); /* takes the creator's reference */
    cr_assert_eq(rill_promise_wait(child_active, WAIT_NS), 0);
    void *v2 = NULL;
    rill_promise_result(child_active, &v2);
    struct rill_channel *child = v2;
    cr_assert_eq(child, &kid->base);
    cr_assert(atomic_load(&child_init_on_worker));
    cr_assert_eq(rill_channel_parent(child), &srv->base);
    struct rill_promise *closed = promise(NULL);
    rill_channel_close(child, closed);
    cr_assert_eq(rill_promise_wait(closed, WAIT_NS), 0);
    rill_promise_release(closed);
    rill_channel_release(child);
    rill_promise_release(child_active);
    rill_promise_release(bound);
    stop_loop(worker); /* the child's last reference goes with its task */
    cr_assert_str_eq(tt_trace, "K:added K:registered K:active K:close K:inactive K:unregistered "
                               "K:removed");
    stop(srv);
}

Test(channel, writes_to_a_server_channel_fail)
{
    loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *srv = tt_new_ops(loop, &tt_server_ops, NULL);
    rill__channel_mark_active(&srv->base);
    rill__channel_register(&srv->base, NULL, NULL, NULL);
    struct rill_promise *p = promise(loop);
    rill_channel_write_and_flush(&srv->base, tt_msg("no"), p);
    cr_assert_eq(rill_promise_result(p, NULL), -EOPNOTSUPP);
    rill_promise_release(p);
    p = promise(loop);
    rill_channel_connect(&srv->base, NULL, NULL, p);
    cr_assert_eq(rill_promise_result(p, NULL), -EISCONN);
    rill_promise_release(p);
    stop(srv);
}

Test(channel, accepted_child_without_acceptor_is_dropped)
{
    loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *srv = tt_new_ops(loop, &tt_server_ops, NULL);
    rill__channel_register(&srv->base, NULL, NULL, NULL);
    struct tt *kid = tt_new_ops(loop, &tt_ops, &srv->base);
    int destroyed = 0;
    kid->destroyed = &destroyed;
    rill_log_set_level(RILL_LOG_ERROR); /* the warning is expected */
    rill__channel_accepted(&srv->base, &kid->base);
    rill_log_set_level(RILL_LOG_WARN);
    cr_assert_eq(destroyed, 1);
    stop(srv);
}

/* ---- auto-read ---- */

static void hold_read_request(struct rill_ctx *ctx)
{
    tt_log("H:read_request");
}
static const struct rill_handler holder = { .name = "hold", .read_request = hold_read_request };

Test(channel, auto_read_on_and_off)
{
    struct tt *t = start(true, NULL);
    struct rill_channel *ch = &t->base;
    cr_assert_eq(t->begin_reads, 1);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_AUTO_READ, 0), 0);
    cr_assert_eq(t->stop_reads, 1);
    rill__channel_fire_read(ch, tt_msg("x"));
    rill__channel_fire_read_complete(ch);
    cr_assert_eq(t->begin_reads, 1, "no read after the batch");
    rill_channel_read(ch);
    cr_assert_eq(t->begin_reads, 2, "one read on request");
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_AUTO_READ, 1), 0);
    cr_assert_eq(t->begin_reads, 3);

    /* A handler can hold read requests back (flow control). */
    rill_pipeline_add_last(rill_channel_pipeline(ch), "h", &holder, NULL);
    tt_trace_reset();
    rill__channel_fire_read_complete(ch);
    cr_assert_str_eq(tt_trace, "H:read_request");
    cr_assert_eq(t->begin_reads, 3);
    stop(t);
}

/* ---- half-close ---- */

Test(channel, peer_eof_closes_by_default)
{
    struct tt *t = start(true, init_rec);
    rill__channel_input_shutdown(&t->base);
    cr_assert_not(rill_channel_is_open(&t->base));
    cr_assert_eq(rill_channel_close_reason(&t->base), 0);
    stop(t);
}

Test(channel, peer_eof_with_half_closure_is_an_event)
{
    struct tt *t = start(false, init_rec);
    struct rill_channel *ch = &t->base;
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_ALLOW_HALF_CLOSURE, 1), 0);
    rill_channel_connect(ch, NULL, NULL, NULL);
    tt_trace_reset();
    rill__channel_input_shutdown(ch);
    rill__channel_input_shutdown(ch);
    cr_assert_str_eq(tt_trace, "R:event(1)");
    cr_assert(rill__channel_is_input_shutdown(ch));
    cr_assert(rill_channel_is_open(ch));
    int reads = t->begin_reads;
    rill_channel_read(ch);
    cr_assert_eq(t->begin_reads, reads, "no reads after the input shut down");
    rill_channel_write_and_flush(ch, tt_msg("still"), NULL);
    cr_assert_eq(t->sunk, 5, "output still works");
    stop(t);
}

Test(channel, shutdown_output_sends_flushed_data_first)
{
    struct tt *t = start(true, init_rec);
    struct rill_channel *ch = &t->base;
    t->budget = 2; /* a slow peer */
    struct rill_promise *flushed = promise(loop), *unflushed = promise(loop);
    struct rill_promise *sd = promise(loop), *again = promise(loop), *after = promise(loop);
    rill_channel_write_and_flush(ch, tt_msg("abcdef"), flushed);
    rill_channel_write(ch, tt_msg("never"), unflushed);
    tt_trace_reset();
    rill_channel_shutdown_output(ch, sd);
    rill_channel_shutdown_output(ch, again);
    cr_assert_eq(rill_promise_result(again, NULL), -EALREADY);
    cr_assert_eq(rill_promise_result(unflushed, NULL), -EPIPE);
    cr_assert_eq(rill_promise_result(sd, NULL), -EINPROGRESS);
    cr_assert_eq(t->shutdowns, 0);
    rill_channel_write(ch, tt_msg("after"), after);
    cr_assert_eq(rill_promise_result(after, NULL), -EPIPE);

    t->budget = SIZE_MAX;
    tt_epollout(t);
    cr_assert_eq(rill_promise_result(flushed, NULL), 0);
    tt_run_pending(loop);
    cr_assert_eq(t->shutdowns, 1);
    cr_assert_eq(rill_promise_result(sd, NULL), 0);
    cr_assert_str_eq(tt_trace, "R:write(after) R:event(2)");
    cr_assert(rill_channel_is_open(ch));
    cr_assert_eq(memcmp(t->sink, "abcdef", 6), 0);
    struct rill_promise *ps[] = { flushed, unflushed, sd, again, after };
    for (int i = 0; i < 5; i++)
        rill_promise_release(ps[i]);
    stop(t);
}

/* ---- writability ---- */

Test(channel, watermarks_drive_writability_events)
{
    struct tt *t = start(true, init_rec);
    struct rill_channel *ch = &t->base;
    cr_assert_eq(rill_channel_set_watermarks(ch, 4, 8), 0);
    t->budget = 0; /* the socket is full */
    tt_trace_reset();
    rill_channel_write_and_flush(ch, tt_msg("12345678"), NULL);
    cr_assert(rill_channel_is_writable(ch), "8 is not above the high mark");
    rill_channel_write(ch, tt_msg("9"), NULL);
    cr_assert_not(rill_channel_is_writable(ch));
    cr_assert_str_eq(tt_trace, "R:write(12345678) R:flush R:write(9)", "the event waits");
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace, "R:write(12345678) R:flush R:write(9) R:writable(0)");

    tt_trace_reset();
    t->budget = 5;
    tt_epollout(t); /* 5 of 9 go: 4 left, not below 4 */
    cr_assert_eq(rill_channel_pending_bytes(ch), 4);
    cr_assert_not(rill_channel_is_writable(ch));
    t->budget = 1;
    tt_epollout(t); /* 3 left: below the low mark */
    cr_assert(rill_channel_is_writable(ch));
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace, "R:writable(1)");

    /* Up and down before the task runs: both transitions arrive. */
    tt_trace_reset();
    t->budget = 0;
    rill_channel_write_and_flush(ch, tt_msg("abcdefgh"), NULL);
    cr_assert_not(rill_channel_is_writable(ch));
    t->budget = SIZE_MAX;
    tt_epollout(t);
    cr_assert(rill_channel_is_writable(ch));
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace, "R:write(abcdefgh) R:flush R:writable(0) R:writable(1)");

    /* Lowering the high mark below what is pending flips it too. */
    tt_trace_reset();
    t->budget = 0;
    rill_channel_write_and_flush(ch, tt_msg("xyz"), NULL);
    cr_assert_eq(rill_channel_set_watermarks(ch, 1, 2), 0);
    cr_assert_not(rill_channel_is_writable(ch));
    tt_run_pending(loop);
    cr_assert_str_eq(tt_trace, "R:write(xyz) R:flush R:writable(0)");
    stop(t);
}

Test(channel, write_spin_limit_yields_the_loop)
{
    struct tt *t = start(true, NULL);
    struct rill_channel *ch = &t->base;
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_WRITE_SPIN, 2), 0);
    t->budget = SIZE_MAX;
    /* One iovec per write call: IOV_MAX buffers need several rounds. */
    for (int i = 0; i < 3 * IOV_MAX; i++)
        rill_channel_write(ch, tt_msg("q"), NULL);
    rill_channel_flush(ch);
    cr_assert_eq(t->sunk, 2 * IOV_MAX, "two writev calls, then the loop gets a turn");
    tt_run_pending(loop);
    cr_assert_eq(t->sunk, 3 * IOV_MAX);
    stop(t);
}

/* ---- options ---- */

Test(channel, options_defaults_and_validation)
{
    struct tt *t = start(true, NULL);
    struct rill_channel *ch = &t->base;
    struct {
        enum rill_option o;
        int64_t v;
    } defaults[] = {
        { RILL_OPT_TCP_NODELAY, 1 },
        { RILL_OPT_SO_KEEPALIVE, 0 },
        { RILL_OPT_SO_REUSEADDR, 0 },
        { RILL_OPT_BACKLOG, 1024 },
        { RILL_OPT_CONNECT_TIMEOUT_MS, 30000 },
        { RILL_OPT_WRITE_HIGH_WATER, 65536 },
        { RILL_OPT_WRITE_LOW_WATER, 32768 },
        { RILL_OPT_AUTO_READ, 1 },
        { RILL_OPT_RECV_BUF_INIT, 2048 },
        { RILL_OPT_WRITE_SPIN, 16 },
        { RILL_OPT_ALLOW_HALF_CLOSURE, 0 },
        { RILL_OPT_MAX_READS, 16 },
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        int64_t v = -1;
        cr_assert_eq(rill_channel_get_option(ch, defaults[i].o, &v), 0);
        cr_assert_eq(v, defaults[i].v, "option %d", defaults[i].o);
    }
    int64_t v;
    cr_assert_eq(rill_channel_get_option(ch, RILL_OPT__COUNT, &v), -EINVAL);
    cr_assert_eq(rill_channel_get_option(ch, 0, &v), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT__COUNT, 1), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_TCP_NODELAY, 2), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_SO_RCVBUF, 0), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_BACKLOG, -1), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_CONNECT_TIMEOUT_MS, -1), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_WRITE_HIGH_WATER, 1000), -EINVAL,
                 "below the low mark");
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_WRITE_LOW_WATER, 100000), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_RECV_BUF_MIN, 4096), -EINVAL);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_WRITE_SPIN, 0), -EINVAL);
    cr_assert_eq(rill_channel_set_watermarks(ch, 10, 5), -EINVAL);
    cr_assert_eq(t->options, 0, "invalid values never reach the transport");

    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_SO_SNDBUF, 1 << 20), 0);
    cr_assert_eq(t->options, 1);
    rill_channel_get_option(ch, RILL_OPT_SO_SNDBUF, &v);
    cr_assert_eq(v, 1 << 20);
    t->option_result = -ENOPROTOOPT;
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_SO_KEEPALIVE, 1), -ENOPROTOOPT);
    rill_channel_get_option(ch, RILL_OPT_SO_KEEPALIVE, &v);
    cr_assert_eq(v, 0, "a refused option keeps its old value");
    t->option_result = 0;
    cr_assert_eq(rill_channel_set_watermarks(ch, 100, 200), 0);
    cr_assert_eq(rill_channel_set_watermarks(ch, 300, 400), 0);
    rill_channel_get_option(ch, RILL_OPT_WRITE_LOW_WATER, &v);
    cr_assert_eq(v, 300);
    t->options = 0;
    cr_assert_eq(rill__channel_apply_options(ch), 0);
    cr_assert_eq(t->options, 5, "every socket option but the default receive buffer");
    stop(t);
}

Test(channel, adaptive_receive_sizing)
{
    struct tt *t = start(true, NULL);
    struct rill_channel *ch = &t->base;
    cr_assert_eq(rill__channel_recv_size(ch), 2048);
    rill__channel_recv_record(ch, 2048, true);
    cr_assert_eq(rill__channel_recv_size(ch), 4096, "a full buffer grows at once");
    for (int i = 0; i < 10; i++)
        rill__channel_recv_record(ch, 1 << 20, true);
    cr_assert_eq(rill__channel_recv_size(ch), 65536, "up to the max");
    rill__channel_recv_record(ch, 10, false);
    cr_assert_eq(rill__channel_recv_size(ch), 65536, "one small batch does not shrink");
    rill__channel_recv_record(ch, 10, false);
    cr_assert_eq(rill__channel_recv_size(ch), 32768, "the second does");
    rill__channel_recv_record(ch, 20000, false);
    rill__channel_recv_record(ch, 10, false);
    cr_assert_eq(rill__channel_recv_size(ch), 32768, "not two in a row");
    for (int i = 0; i < 40; i++)
        rill__channel_recv_record(ch, 0, false);
    cr_assert_eq(rill__channel_recv_size(ch), 64, "down to the min");
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_RECV_BUF_INIT, 128), 0);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_RECV_BUF_MIN, 128), 0);
    cr_assert_eq(rill__channel_recv_size(ch), 128, "clamped to a new min");
    stop(t);
}

/* ---- attributes ---- */

static int freed_values;
static void free_value(void *v)
{
    freed_values++;
    free(v);
}
static const struct rill_attr_key key_a = { "a", free_value };
static const struct rill_attr_key key_b = { "b", free_value };
static const struct rill_attr_key key_plain = { "plain", NULL };

Test(channel, attributes_and_their_free_functions)
{
    struct tt *t = start(true, NULL);
    struct rill_channel *ch = &t->base;
    freed_values = 0;
    cr_assert_null(rill_channel_attr_get(ch, &key_a));
    cr_assert_eq(rill_channel_attr_remove(ch, &key_a), -ENOENT);
    cr_assert_eq(rill_channel_attr_set(ch, NULL, NULL), -EINVAL);
    int *a1 = malloc(sizeof(int)), *a2 = malloc(sizeof(int)), *b = malloc(sizeof(int));
    int plain = 5;
    cr_assert_eq(rill_channel_attr_set(ch, &key_a, a1), 0);
    cr_assert_eq(rill_channel_attr_set(ch, &key_b, b), 0);
    cr_assert_eq(rill_channel_attr_set(ch, &key_plain, &plain), 0);
    cr_assert_eq(rill_channel_attr_get(ch, &key_a), a1);
    cr_assert_eq(rill_channel_attr_set(ch, &key_a, a2), 0);
    cr_assert_eq(freed_values, 1, "replacing frees the old value");
    cr_assert_eq(rill_channel_attr_get(ch, &key_a), a2);
    cr_assert_eq(rill_channel_attr_remove(ch, &key_a), 0);
    cr_assert_eq(freed_values, 2);
    cr_assert_null(rill_channel_attr_get(ch, &key_a));
    cr_assert_eq(rill_channel_attr_get(ch, &key_plain), &plain);
    stop(t);
    cr_assert_eq(freed_values, 3, "the rest go with the channel");
}

/* ---- exceptions and events from the transport ---- */

Test(channel, transport_events_reach_the_handlers)
{
    struct tt *t = start(true, init_rec);
    tt_trace_reset();
    rill_log_set_level(RILL_LOG_ERROR); /* the tail's warning is expected */
    rill__channel_fire_exception(&t->base, -ECONNRESET, "reset");
    struct rill_event ev = { .type = RILL_EVENT_USER + 5 };
    rill_pipeline_fire_user_event(rill_channel_pipeline(&t->base), &ev);
    cr_assert_str_eq(tt_trace, "R:exception(ECONNRESET,reset) R:event(1005)");
    rill__channel_close(&t->base, -ECONNRESET);
    rill_log_set_level(RILL_LOG_WARN);
    cr_assert_eq(rill_channel_close_reason(&t->base), -ECONNRESET);
    cr_assert_str_eq(rill_channel_transport(&t->base), "tt");
    stop(t);
}
