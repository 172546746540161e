/* Tests for the embedded channel (include/rill/embedded.h): inbound and
 * outbound queues, write without flush, pending tasks, the manual clock
 * and timers, exceptions, close, leftovers at finish, and calls from
 * another thread becoming tasks.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/pipeline.h"
#include "rill/timer.h"
#include "tests/channel/tt.h"
#include "util/testutil.h"

TestSuite(embedded, .timeout = 30, .fini = rill_test_no_leaks);

static struct rill_embedded *emb(const struct rill_embedded_handler *hs, size_t n)
{
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, n, &e), 0);
    return e;
}

Test(embedded, a_bare_channel_passes_messages_through)
{
    struct rill_embedded *e = emb(NULL, 0);
    struct rill_channel *ch = rill_embedded_channel(e);
    cr_assert_str_eq(rill_channel_transport(ch), "embedded");
    cr_assert(rill_channel_is_open(ch));
    cr_assert(rill_channel_is_registered(ch));
    cr_assert(rill_channel_is_active(ch));
    cr_assert(rill_channel_is_writable(ch));
    cr_assert(rill_embedded_is_open(e));
    cr_assert_eq(rill_channel_pipeline(ch), rill_embedded_pipeline(e));
    cr_assert_eq(rill_channel_loop(ch), rill_embedded_loop(e));
    cr_assert_gt(rill_channel_id(ch), 0);

    cr_assert_eq(rill_embedded_write_inbound(e, tt_msg("in1")), 1);
    cr_assert_eq(rill_embedded_write_inbound(e, tt_msg("in2")), 2);
    cr_assert_eq(rill_embedded_inbound_count(e), 2);
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert(tt_msg_is(m, "in1"));
    rill_msg_release(m);
    m = rill_embedded_read_inbound(e);
    cr_assert(tt_msg_is(m, "in2"));
    rill_msg_release(m);
    cr_assert_null(rill_embedded_read_inbound(e));

    cr_assert_eq(rill_embedded_write_outbound(e, tt_msg("out")), 1);
    cr_assert_eq(rill_embedded_outbound_count(e), 1);
    m = rill_embedded_read_outbound(e);
    cr_assert(tt_msg_is(m, "out"));
    rill_msg_release(m);
    cr_assert_null(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_channel_pending_bytes(ch), 0);

    size_t left = 7;
    cr_assert_eq(rill_embedded_finish(e, &left), 0);
    cr_assert_eq(left, 0);
    cr_assert_not(rill_embedded_is_open(e));
    rill_embedded_free(e);
}

Test(embedded, write_without_flush_waits_for_flush)
{
    struct rill_embedded *e = emb(NULL, 0);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, tt_msg("abc"), p);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    cr_assert_eq(rill_channel_pending_bytes(rill_embedded_channel(e)), 3);
    cr_assert_eq(rill_promise_result(p, NULL), -EINPROGRESS);
    rill_embedded_flush(e);
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    cr_assert_eq(rill_embedded_outbound_count(e), 1);
    cr_assert_eq(rill_channel_pending_bytes(rill_embedded_channel(e)), 0);
    rill_promise_release(p);
    size_t left;
    rill_embedded_finish(e, &left);
    cr_assert_eq(left, 1);
    rill_embedded_free(e);
}

/* Messages of any type pass both ways (decoded messages, file regions). */
struct note {
    struct rill_msg msg;
    int value;
};
static void note_destroy(struct rill_msg *m)
{
    free(m);
}
static struct rill_msg *note(int value)
{
    struct note *n = calloc(1, sizeof(*n));
    rill_msg_init(&n->msg, RILL_MSG_USER + 1, note_destroy);
    n->value = value;
    return &n->msg;
}

Test(embedded, messages_that_are_not_buffers)
{
    struct rill_embedded *e = emb(NULL, 0);
    cr_assert_eq(rill_embedded_write_inbound(e, note(1)), 1);
    cr_assert_eq(rill_embedded_write_outbound(e, note(2)), 1);
    cr_assert_eq(rill_channel_pending_bytes(rill_embedded_channel(e)), 0);
    struct rill_msg *in = rill_embedded_read_inbound(e), *out = rill_embedded_read_outbound(e);
    cr_assert_eq(((struct note *)in)->value, 1);
    cr_assert_eq(((struct note *)out)->value, 2);
    rill_msg_release(in);
    rill_msg_release(out);
    rill_embedded_free(e);
}

/* ---- tasks and timers ---- */

static int task_runs;
static void count_task(void *arg)
{
    (void)arg;
    task_runs++;
}
static void repost_task(void *arg)
{
    task_runs++;
    rill_loop_execute(arg, count_task, NULL);
}

Test(embedded, run_pending_runs_queued_tasks_and_their_tasks)
{
    struct rill_embedded *e = emb(NULL, 0);
    task_runs = 0;
    rill_loop_execute(rill_embedded_loop(e), count_task, NULL);
    rill_loop_execute(rill_embedded_loop(e), repost_task, rill_embedded_loop(e));
    cr_assert_eq(task_runs, 0, "nothing runs until the channel is driven");
    cr_assert_eq(rill_embedded_run_pending(e), 3);
    cr_assert_eq(task_runs, 3);
    cr_assert_eq(rill_embedded_run_pending(e), 0);
    rill_embedded_free(e);
}

/* A handler that, once active, writes "tick" every 100 ms of loop time. */
struct ticker {
    struct rill_timer *timer;
    struct rill_ctx *ctx;
};
static void tick(struct rill_timer *t, void *arg)
{
    struct ticker *tk = arg;
    (void)t;
    rill_ctx_write_and_flush(tk->ctx, tt_msg("tick"), NULL);
}
static void ticker_active(struct rill_ctx *ctx)
{
    struct ticker *tk = rill_ctx_state(ctx);
    tk->ctx = ctx;
    cr_assert_eq(rill_timer_schedule(rill_channel_loop(rill_ctx_channel(ctx)), 100 * RILL_NS_PER_MS,
                                     100 * RILL_NS_PER_MS, RILL_TIMER_FIXED_RATE, tick, tk,
                                     &tk->timer),
                 0);
    rill_ctx_fire_active(ctx);
}
static void ticker_removed(struct rill_ctx *ctx)
{
    struct ticker *tk = rill_ctx_state(ctx);
    if (tk->timer) {
        rill_timer_cancel(tk->timer);
        rill_timer_release(tk->timer);
    }
}
static const struct rill_handler ticker = { .name = "ticker",
                                            .ctx_size = sizeof(struct ticker),
                                            .active = ticker_active,
                                            .removed = ticker_removed };

Test(embedded, advance_clock_fires_timers)
{
    struct rill_embedded_handler hs[] = { { "t", &ticker, NULL } };
    struct rill_embedded *e = emb(hs, 1);
    cr_assert_eq(rill_embedded_now(e), 0);
    cr_assert_eq(rill_embedded_advance_clock(e, 99 * RILL_NS_PER_MS), 0);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    cr_assert_eq(rill_embedded_advance_clock(e, 1 * RILL_NS_PER_MS), 1);
    cr_assert_eq(rill_embedded_outbound_count(e), 1);
    cr_assert_eq(rill_embedded_advance_clock(e, 350 * RILL_NS_PER_MS), 3);
    cr_assert_eq(rill_embedded_outbound_count(e), 4);
    cr_assert_eq(rill_embedded_now(e), 450 * RILL_NS_PER_MS);
    size_t left;
    rill_embedded_finish(e, &left);
    cr_assert_eq(left, 4);
    /* The handler was removed at unregistration: its timer is gone. */
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0);
    rill_embedded_free(e);
}

/* ---- exceptions ---- */

static void throw_on_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    rill_msg_release(msg);
    rill_ctx_fire_exception(ctx, RILL_EDECODE, "bad frame");
}
static const struct rill_handler thrower = { .name = "thrower", .read = throw_on_read };

Test(embedded, exceptions_reaching_the_tail_are_kept)
{
    struct rill_embedded_handler hs[] = { { "t", &thrower, NULL } };
    struct rill_embedded *e = emb(hs, 1);
    const char *why = "x";
    cr_assert_eq(rill_embedded_take_exception(e, &why), 0);
    cr_assert_null(why);
    rill_embedded_write_inbound(e, tt_msg("?"));
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EDECODE);
    cr_assert_str_eq(why, "bad frame");
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0, "taking clears it");
    rill_embedded_write_inbound(e, tt_msg("?"));
    size_t left;
    cr_assert_eq(rill_embedded_finish(e, &left), RILL_EDECODE, "finish reports an untaken one");
    rill_embedded_free(e);
}

/* ---- close and leftovers ---- */

Test(embedded, close_fires_inactive_and_unregistered_and_refuses_more)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "r", &rec_handler, "R" } };
    struct rill_embedded *e = emb(hs, 1);
    struct rill_channel *ch = rill_embedded_channel(e);
    struct rill_promise *cf = rill_channel_close_future(ch);
    cr_assert_not(rill_promise_is_done(cf));
    tt_trace_reset();
    rill_embedded_close(e);
    cr_assert_str_eq(tt_trace, "R:close R:inactive R:unregistered R:removed");
    cr_assert(rill_promise_is_done(cf));
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_not(rill_channel_is_active(ch));
    cr_assert_not(rill_channel_is_registered(ch));

    cr_assert_eq(rill_embedded_write_inbound(e, tt_msg("late")), RILL_ECLOSED);
    cr_assert_eq(rill_embedded_write_outbound(e, tt_msg("late")), RILL_ECLOSED);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    rill_embedded_close(e); /* again: harmless */
    rill_embedded_free(e);
}

Test(embedded, finish_reports_and_releases_leftovers)
{
    struct rill_embedded *e = emb(NULL, 0);
    rill_embedded_write_inbound(e, tt_msg("1"));
    rill_embedded_write_inbound(e, tt_msg("2"));
    rill_embedded_write_outbound(e, tt_msg("3"));
    size_t left = 0;
    cr_assert_eq(rill_embedded_finish(e, &left), 0);
    cr_assert_eq(left, 3);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    rill_embedded_free(e);
}

Test(embedded, free_without_finish_releases_everything)
{
    struct rill_embedded *e = emb(NULL, 0);
    rill_embedded_write_inbound(e, tt_msg("1"));
    rill_embedded_write_outbound(e, tt_msg("2"));
    rill_embedded_write(e, tt_msg("unflushed"), NULL);
    rill_embedded_free(e);
    rill_embedded_free(NULL);
}

static int fail_added(struct rill_ctx *ctx)
{
    (void)ctx;
    return -EPERM;
}
static const struct rill_handler failing = { .name = "failing", .added = fail_added };

Test(embedded, new_fails_when_a_handler_refuses)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "r", &rec_handler, "R" }, { "f", &failing, NULL } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 2, &e), -EPERM);
    cr_assert_null(e);
    cr_assert_str_eq(tt_trace, "R:added R:removed", "no events for a channel never registered");
}

/* ---- other threads ---- */

static void *write_from_thread(void *arg)
{
    struct rill_channel *ch = arg;
    rill_channel_write_and_flush(ch, tt_msg("from-thread"), NULL);
    rill_channel_release(ch);
    return NULL;
}

Test(embedded, calls_from_another_thread_run_at_the_next_call)
{
    struct rill_embedded *e = emb(NULL, 0);
    pthread_t th;
    cr_assert_eq(
        pthread_create(&th, NULL, write_from_thread, rill_channel_retain(rill_embedded_channel(e))),
        0);
    pthread_join(th, NULL);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    rill_embedded_run_pending(e);
    cr_assert_eq(rill_embedded_outbound_count(e), 1);
    struct rill_msg *m = rill_embedded_read_outbound(e);
    cr_assert(tt_msg_is(m, "from-thread"));
    rill_msg_release(m);
    rill_embedded_free(e);
}

/* rill_embedded_run: loop-only code from the test thread. */
static const struct rill_attr_key run_key = { "run", NULL };
static void set_attr(struct rill_channel *ch, void *arg)
{
    cr_assert(rill_loop_in_thread(rill_channel_loop(ch)));
    rill_channel_attr_set(ch, &run_key, arg);
    rill_channel_write_and_flush(ch, tt_msg("inline"), NULL);
}

Test(embedded, run_executes_as_the_loop_thread)
{
    struct rill_embedded *e = emb(NULL, 0);
    int x;
    rill_embedded_run(e, set_attr, &x);
    cr_assert_eq(rill_channel_attr_get(rill_embedded_channel(e), &run_key), &x);
    cr_assert_eq(rill_embedded_outbound_count(e), 1);
    size_t left;
    rill_embedded_finish(e, &left);
    cr_assert_eq(left, 1);
    rill_embedded_free(e);
}
