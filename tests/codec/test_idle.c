/* Tests for the idle-state handler and the read and write timeouts
 * (include/rill/idle.h): through the embedded channel and its manual
 * clock (each kind fires at its time and not before, repeats, first and
 * later events, activity postpones, observe_output, no timer or event left
 * after close or removal, the timeouts, config checks), plus one reader-
 * idle event over a real loopback connection.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/idle.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "util/testutil.h"

TestSuite(idle, .timeout = 30, .fini = rill_test_no_leaks);

#define MS RILL_NS_PER_MS

/* ---- a recorder after the handler under test ---- */

struct seen {
    int type;
    bool first;
    uint64_t at; /* loop clock */
};

static struct seen seen[64];
static int nseen;
static int exceptions;
static int last_err;
static char last_why[128];
/* What the recorder does on an idle event: 0 nothing, 1 remove the idle
 * handler, 2 close the channel. */
static int on_event_action;

static void rec_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    if (ev->type >= RILL_EVENT_IDLE_READER && ev->type <= RILL_EVENT_IDLE_ALL) {
        const struct rill_idle_event *ie = ev->data;
        cr_assert_eq(ie->type, ev->type);
        if (nseen < 64)
            seen[nseen++] =
                (struct seen){ .type = ev->type,
                               .first = ie->first,
                               .at = rill_loop_now(rill_channel_loop(rill_ctx_channel(ctx))) };
        if (on_event_action == 1)
            cr_assert_eq(rill_pipeline_remove(rill_ctx_pipeline(ctx), "idle"), 0);
        else if (on_event_action == 2)
            rill_channel_close(rill_ctx_channel(ctx), NULL);
    }
    rill_ctx_fire_user_event(ctx, ev);
}

static void rec_exception(struct rill_ctx *ctx, int err, const char *why)
{
    exceptions++;
    last_err = err;
    snprintf(last_why, sizeof(last_why), "%s", why ? why : "");
    rill_ctx_fire_exception(ctx, err, why);
}

static const struct rill_handler recorder = {
    .name = "recorder",
    .user_event = rec_user_event,
    .exception = rec_exception,
};

static struct rill_embedded *with(const struct rill_handler *h, const void *cfg)
{
    struct rill_embedded_handler hs[] = {
        { "idle", h, (void *)cfg },
        { "recorder", &recorder, NULL },
    };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 2, &e), 0);
    return e;
}

static struct rill_embedded *idle_emb(uint64_t r, uint64_t w, uint64_t a, bool observe)
{
    struct rill_idle_config cfg = {
        .reader_idle_ns = r, .writer_idle_ns = w, .all_idle_ns = a, .observe_output = observe
    };
    return with(&rill_idle_handler, &cfg); /* a temporary: added() copies it */
}

static struct rill_msg *bytes(const char *s)
{
    struct rill_buf *b = NULL;
    cr_assert_eq(rill_buf_copy_from(s, strlen(s), &b), 0);
    return rill_buf_msg(b);
}

static void drain_outbound(struct rill_embedded *e)
{
    struct rill_msg *m;
    while ((m = rill_embedded_read_outbound(e)))
        rill_msg_release(m);
}

static void drain_inbound(struct rill_embedded *e)
{
    struct rill_msg *m;
    while ((m = rill_embedded_read_inbound(e)))
        rill_msg_release(m);
}

/* A read as the transport makes one: read then read_complete. */
static void read_some(struct rill_embedded *e)
{
    cr_assert_geq(rill_embedded_write_inbound(e, bytes("in")), 1);
    drain_inbound(e);
}

/* A write that completes at once (written and flushed to the head). */
static void write_some(struct rill_embedded *e)
{
    cr_assert_geq(rill_embedded_write_outbound(e, bytes("out")), 1);
    drain_outbound(e);
}

static void expect_seen(int i, int type, bool first, uint64_t at)
{
    cr_assert_gt(nseen, i, "event %d has not fired (%d seen)", i, nseen);
    cr_expect_eq(seen[i].type, type, "event %d: type %d, expected %d", i, seen[i].type, type);
    cr_expect_eq(seen[i].first, first, "event %d: first %d, expected %d", i, seen[i].first, first);
    cr_expect_eq(seen[i].at, at, "event %d at %llu ms, expected %llu ms", i,
                 (unsigned long long)(seen[i].at / MS), (unsigned long long)(at / MS));
}

static void finish(struct rill_embedded *e)
{
    size_t left = 0;
    rill_embedded_finish(e, &left);
    rill_embedded_free(e);
}

/* ---- each kind fires at its time, then every idle time ---- */

static void fires_on_time(uint64_t r, uint64_t w, uint64_t a, int type)
{
    struct rill_embedded *e = idle_emb(r, w, a, false);
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(nseen, 0, "nothing before the idle time");
    rill_embedded_advance_clock(e, 1 * MS);
    cr_assert_eq(nseen, 1);
    expect_seen(0, type, true, 100 * MS);
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(nseen, 1);
    rill_embedded_advance_clock(e, 1 * MS);
    expect_seen(1, type, false, 200 * MS);
    rill_embedded_advance_clock(e, 300 * MS);
    cr_assert_eq(nseen, 5);
    for (int i = 2; i < 5; i++)
        expect_seen(i, type, false, (uint64_t)(i + 1) * 100 * MS);
    finish(e);
}

Test(idle, reader_idle_fires_at_its_time_and_repeats)
{
    fires_on_time(100 * MS, 0, 0, RILL_EVENT_IDLE_READER);
}

Test(idle, writer_idle_fires_at_its_time_and_repeats)
{
    fires_on_time(0, 100 * MS, 0, RILL_EVENT_IDLE_WRITER);
}

Test(idle, all_idle_fires_at_its_time_and_repeats)
{
    fires_on_time(0, 0, 100 * MS, RILL_EVENT_IDLE_ALL);
}

Test(idle, kinds_with_different_times_fire_independently)
{
    struct rill_embedded *e = idle_emb(100 * MS, 150 * MS, 250 * MS, false);
    rill_embedded_advance_clock(e, 300 * MS);
    /* reader 100, 200, 300; writer 150, 300; all 250 (ties in arming order). */
    cr_assert_eq(nseen, 6);
    expect_seen(0, RILL_EVENT_IDLE_READER, true, 100 * MS);
    expect_seen(1, RILL_EVENT_IDLE_WRITER, true, 150 * MS);
    expect_seen(2, RILL_EVENT_IDLE_READER, false, 200 * MS);
    expect_seen(3, RILL_EVENT_IDLE_ALL, true, 250 * MS);
    int r = 0, w = 0;
    for (int i = 4; i < 6; i++) {
        cr_expect_eq(seen[i].at, 300 * MS);
        r += seen[i].type == RILL_EVENT_IDLE_READER;
        w += seen[i].type == RILL_EVENT_IDLE_WRITER;
    }
    cr_assert(r == 1 && w == 1);
    finish(e);
}

/* ---- activity ---- */

Test(idle, a_read_postpones_reader_idle_without_touching_the_timer)
{
    struct rill_embedded *e = idle_emb(100 * MS, 0, 0, false);
    rill_embedded_advance_clock(e, 60 * MS);
    for (int i = 0; i < 100; i++)
        read_some(e);
    /* The timer still fires at 100 ms, finds the read and re-arms itself
     * for the 60 ms left: reads do not reschedule it. */
    cr_assert_eq(rill_embedded_advance_clock(e, 40 * MS), 1);
    cr_assert_eq(nseen, 0);
    rill_embedded_advance_clock(e, 59 * MS);
    cr_assert_eq(nseen, 0, "idle 99 ms after the read: not yet");
    rill_embedded_advance_clock(e, 1 * MS);
    cr_assert_eq(nseen, 1);
    expect_seen(0, RILL_EVENT_IDLE_READER, true, 160 * MS);
    finish(e);
}

Test(idle, activity_makes_the_next_event_first_again)
{
    struct rill_embedded *e = idle_emb(100 * MS, 0, 0, false);
    rill_embedded_advance_clock(e, 200 * MS);
    expect_seen(0, RILL_EVENT_IDLE_READER, true, 100 * MS);
    expect_seen(1, RILL_EVENT_IDLE_READER, false, 200 * MS);
    rill_embedded_advance_clock(e, 50 * MS);
    read_some(e); /* at 250 */
    rill_embedded_advance_clock(e, 250 * MS);
    cr_assert_eq(nseen, 4);
    expect_seen(2, RILL_EVENT_IDLE_READER, true, 350 * MS);
    expect_seen(3, RILL_EVENT_IDLE_READER, false, 450 * MS);
    finish(e);
}

Test(idle, a_read_in_progress_is_never_reader_idle)
{
    struct rill_embedded *e = idle_emb(100 * MS, 0, 100 * MS, false);
    rill_embedded_advance_clock(e, 10 * MS);
    /* read without its read_complete: the read is still going on. */
    rill_pipeline_fire_read(rill_embedded_pipeline(e), bytes("x"));
    rill_embedded_advance_clock(e, 500 * MS);
    cr_assert_eq(nseen, 0, "no reader or all event during a read");
    rill_embedded_read_complete(e); /* at 510: the read ends */
    drain_inbound(e);
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(nseen, 0);
    rill_embedded_advance_clock(e, 1 * MS);
    cr_assert_eq(nseen, 2);
    expect_seen(0, RILL_EVENT_IDLE_READER, true, 610 * MS);
    expect_seen(1, RILL_EVENT_IDLE_ALL, true, 610 * MS);
    finish(e);
}

Test(idle, a_completed_write_postpones_writer_idle_a_read_does_not)
{
    struct rill_embedded *e = idle_emb(0, 100 * MS, 0, false);
    rill_embedded_advance_clock(e, 70 * MS);
    read_some(e);
    write_some(e); /* completes at 70 */
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(nseen, 0);
    rill_embedded_advance_clock(e, 1 * MS);
    expect_seen(0, RILL_EVENT_IDLE_WRITER, true, 170 * MS);
    rill_embedded_advance_clock(e, 30 * MS);
    read_some(e); /* reads never count for the writer */
    rill_embedded_advance_clock(e, 70 * MS);
    expect_seen(1, RILL_EVENT_IDLE_WRITER, false, 270 * MS);
    finish(e);
}

Test(idle, a_write_that_has_not_completed_is_not_activity)
{
    struct rill_embedded *e = idle_emb(0, 100 * MS, 0, false);
    rill_embedded_advance_clock(e, 50 * MS);
    rill_embedded_write(e, bytes("queued"), NULL); /* not flushed: not complete */
    rill_embedded_advance_clock(e, 50 * MS);
    expect_seen(0, RILL_EVENT_IDLE_WRITER, true, 100 * MS);
    rill_embedded_flush(e); /* completes at 100 */
    drain_outbound(e);
    rill_embedded_advance_clock(e, 100 * MS);
    cr_assert_eq(nseen, 2);
    expect_seen(1, RILL_EVENT_IDLE_WRITER, true, 200 * MS);
    finish(e);
}

Test(idle, all_idle_is_postponed_by_reads_and_by_writes)
{
    struct rill_embedded *e = idle_emb(0, 0, 100 * MS, false);
    rill_embedded_advance_clock(e, 80 * MS);
    read_some(e);
    rill_embedded_advance_clock(e, 80 * MS); /* 160 */
    write_some(e);
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(nseen, 0);
    rill_embedded_advance_clock(e, 1 * MS);
    expect_seen(0, RILL_EVENT_IDLE_ALL, true, 260 * MS);
    finish(e);
}

/* Writes carrying the caller's promise: of the channel's loop (watched
 * directly), of no loop (chained through a promise of the loop). Both
 * complete, both count as activity, and cancelling still reaches the
 * outbound queue. */
static void write_with_promise(bool of_the_loop)
{
    struct rill_embedded *e = idle_emb(0, 100 * MS, 0, false);
    struct rill_loop *loop = of_the_loop ? rill_embedded_loop(e) : NULL;
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(loop, &p), 0);
    rill_embedded_advance_clock(e, 50 * MS);
    rill_embedded_write(e, bytes("a"), p);
    cr_assert_eq(rill_promise_result(p, NULL), -EINPROGRESS);
    rill_embedded_flush(e);
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    drain_outbound(e);
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(nseen, 0, "the write completed at 50 ms");
    rill_embedded_advance_clock(e, 1 * MS);
    expect_seen(0, RILL_EVENT_IDLE_WRITER, true, 150 * MS);
    rill_promise_release(p);

    cr_assert_eq(rill_promise_new(loop, &p), 0);
    rill_embedded_write(e, bytes("b"), p);
    cr_assert_eq(rill_promise_cancel(p), 0);
    rill_embedded_run_pending(e);
    rill_embedded_flush(e);
    cr_assert_eq(rill_embedded_outbound_count(e), 0, "a cancelled write is not written");
    cr_assert(rill_promise_is_cancelled(p));
    rill_promise_release(p);
    finish(e);
}

Test(idle, write_promise_of_the_channel_loop)
{
    write_with_promise(true);
}

Test(idle, write_promise_of_no_loop_is_chained)
{
    write_with_promise(false);
}

Test(idle, failed_writes_complete_their_promise_through_the_handler)
{
    struct rill_embedded *e = idle_emb(0, 100 * MS, 0, false);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, bytes("never"), p);
    rill_embedded_close(e); /* queued writes fail */
    cr_assert_lt(rill_promise_result(p, NULL), 0);
    rill_promise_release(p);
    finish(e);
}

/* ---- observe_output ---- */

static void slow_output(bool observe)
{
    struct rill_embedded *e = idle_emb(0, 100 * MS, 0, observe);
    rill_embedded_write(e, bytes("abc"), NULL); /* queued, never completes */
    rill_embedded_advance_clock(e, 100 * MS);
    /* The first event of a period always fires. */
    cr_assert_eq(nseen, 1);
    expect_seen(0, RILL_EVENT_IDLE_WRITER, true, 100 * MS);
    /* The queue changes (output moving): activity when observed. */
    rill_embedded_write(e, bytes("defg"), NULL);
    rill_embedded_advance_clock(e, 100 * MS);
    cr_assert_eq(nseen, observe ? 1 : 2);
    /* No change for a whole period: idle again, a later event. */
    rill_embedded_advance_clock(e, 100 * MS);
    cr_assert_eq(nseen, observe ? 2 : 3);
    expect_seen(nseen - 1, RILL_EVENT_IDLE_WRITER, false, 300 * MS);
    finish(e);
}

Test(idle, observe_output_counts_a_changing_queue_as_activity)
{
    slow_output(true);
}

Test(idle, without_observe_output_a_changing_queue_is_idle)
{
    slow_output(false);
}

Test(idle, observe_output_applies_to_all_idle_not_reader_idle)
{
    struct rill_embedded *e = idle_emb(100 * MS, 0, 100 * MS, true);
    rill_embedded_write(e, bytes("abc"), NULL);
    rill_embedded_advance_clock(e, 100 * MS);
    cr_assert_eq(nseen, 2);
    rill_embedded_write(e, bytes("more"), NULL);
    rill_embedded_advance_clock(e, 100 * MS);
    cr_assert_eq(nseen, 3, "reader idle fires, all idle sees the output move");
    expect_seen(2, RILL_EVENT_IDLE_READER, false, 200 * MS);
    finish(e);
}

/* ---- lifecycle: no timer and no event after close or removal ---- */

Test(idle, close_cancels_every_timer)
{
    struct rill_embedded *e = idle_emb(100 * MS, 100 * MS, 100 * MS, false);
    rill_embedded_advance_clock(e, 50 * MS);
    rill_embedded_close(e);
    cr_assert_eq(rill_embedded_advance_clock(e, 10 * RILL_NS_PER_S), 0, "no timer runs");
    cr_assert_eq(nseen, 0);
    finish(e);
}

Test(idle, removal_cancels_every_timer)
{
    struct rill_embedded *e = idle_emb(100 * MS, 100 * MS, 100 * MS, false);
    rill_embedded_advance_clock(e, 150 * MS);
    cr_assert_eq(nseen, 3);
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "idle"), 0);
    cr_assert_eq(rill_embedded_advance_clock(e, 10 * RILL_NS_PER_S), 0, "no timer runs");
    cr_assert_eq(nseen, 3);
    read_some(e);
    write_some(e);
    finish(e);
}

Test(idle, removal_with_a_write_under_way)
{
    struct rill_embedded *e = idle_emb(0, 100 * MS, 0, false);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, bytes("pending"), p);
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "idle"), 0);
    rill_embedded_flush(e); /* its listener runs after the handler is gone */
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0);
    cr_assert_eq(nseen, 0);
    rill_promise_release(p);
    drain_outbound(e);
    finish(e);
}

Test(idle, the_event_handler_may_remove_the_idle_handler)
{
    struct rill_embedded *e = idle_emb(100 * MS, 0, 0, false);
    on_event_action = 1;
    rill_embedded_advance_clock(e, 100 * MS);
    cr_assert_eq(nseen, 1);
    cr_assert_null(rill_pipeline_get(rill_embedded_pipeline(e), "idle"));
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0, "its re-armed timer is gone");
    cr_assert_eq(nseen, 1);
    finish(e);
}

Test(idle, the_event_handler_may_close_the_channel)
{
    struct rill_embedded *e = idle_emb(100 * MS, 0, 100 * MS, false);
    on_event_action = 2;
    rill_embedded_advance_clock(e, 100 * MS);
    cr_assert_eq(nseen, 1, "the close stops the all-idle event due at the same time");
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0);
    finish(e);
}

Test(idle, added_to_an_active_channel_starts_at_once)
{
    struct rill_embedded_handler hs[] = { { "recorder", &recorder, NULL } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 1, &e), 0);
    rill_embedded_advance_clock(e, 1000 * MS);
    struct rill_idle_config cfg = { .reader_idle_ns = 100 * MS };
    cr_assert_eq(
        rill_pipeline_add_first(rill_embedded_pipeline(e), "idle", &rill_idle_handler, &cfg), 0);
    cfg.reader_idle_ns = 1 * MS; /* the handler took a copy */
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(nseen, 0);
    rill_embedded_advance_clock(e, 1 * MS);
    cr_assert_eq(nseen, 1);
    expect_seen(0, RILL_EVENT_IDLE_READER, true, 1100 * MS);
    finish(e);
}

Test(idle, config_is_checked)
{
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(NULL, 0, &e), 0);
    struct rill_pipeline *pl = rill_embedded_pipeline(e);
    struct rill_idle_config none = { 0 }, huge = { .writer_idle_ns = RILL_IDLE_MAX_NS + 1 };
    struct rill_idle_config max = { .all_idle_ns = RILL_IDLE_MAX_NS };
    cr_assert_eq(rill_pipeline_add_last(pl, "a", &rill_idle_handler, NULL), -EINVAL);
    cr_assert_eq(rill_pipeline_add_last(pl, "b", &rill_idle_handler, &none), -EINVAL);
    cr_assert_eq(rill_pipeline_add_last(pl, "c", &rill_idle_handler, &huge), -EINVAL);
    struct rill_timeout_config zero = { 0 }, big = { RILL_IDLE_MAX_NS + 1 };
    cr_assert_eq(rill_pipeline_add_last(pl, "d", &rill_read_timeout_handler, NULL), -EINVAL);
    cr_assert_eq(rill_pipeline_add_last(pl, "e", &rill_read_timeout_handler, &zero), -EINVAL);
    cr_assert_eq(rill_pipeline_add_last(pl, "f", &rill_write_timeout_handler, &big), -EINVAL);
    cr_assert_eq(rill_pipeline_add_last(pl, "g", &rill_write_timeout_handler, NULL), -EINVAL);
    const char *names[4];
    cr_assert_eq(rill_pipeline_names(pl, names, 4), 0, "failed adds leave nothing behind");
    cr_assert_eq(rill_pipeline_add_last(pl, "h", &rill_idle_handler, &max), 0);
    finish(e);
}

/* ---- read timeout ---- */

static struct rill_embedded *timeout_emb(const struct rill_handler *h, uint64_t ns)
{
    struct rill_timeout_config cfg = { .timeout_ns = ns };
    return with(h, &cfg);
}

Test(idle, read_timeout_raises_and_closes_once)
{
    struct rill_embedded *e = timeout_emb(&rill_read_timeout_handler, 100 * MS);
    rill_embedded_advance_clock(e, 60 * MS);
    read_some(e);
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(exceptions, 0);
    cr_assert(rill_embedded_is_open(e));
    rill_embedded_advance_clock(e, 1 * MS);
    cr_assert_eq(exceptions, 1);
    cr_assert_eq(last_err, RILL_EDEADLINE);
    cr_assert_str_eq(last_why, "read timed out after 100 ms");
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_channel_close_reason(rill_embedded_channel(e)), RILL_EDEADLINE);
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EDEADLINE);
    cr_assert_eq(rill_embedded_advance_clock(e, 10 * RILL_NS_PER_S), 0);
    cr_assert_eq(exceptions, 1);
    finish(e);
}

Test(idle, read_timeout_text_below_a_millisecond)
{
    struct rill_embedded *e = timeout_emb(&rill_read_timeout_handler, 1500 * RILL_NS_PER_US);
    rill_embedded_advance_clock(e, 2 * MS);
    cr_assert_str_eq(last_why, "read timed out after 1.500 ms");
    rill_embedded_take_exception(e, NULL);
    finish(e);
}

Test(idle, read_timeout_removed_leaves_no_timer)
{
    struct rill_embedded *e = timeout_emb(&rill_read_timeout_handler, 100 * MS);
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "idle"), 0);
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0);
    cr_assert(rill_embedded_is_open(e));
    cr_assert_eq(exceptions, 0);
    finish(e);
}

/* ---- write timeout ---- */

Test(idle, write_timeout_raises_closes_and_fails_the_write)
{
    struct rill_embedded *e = timeout_emb(&rill_write_timeout_handler, 100 * MS);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_advance_clock(e, 10 * MS);
    rill_embedded_write(e, bytes("stuck"), p); /* never flushed */
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(exceptions, 0);
    rill_embedded_advance_clock(e, 1 * MS);
    cr_assert_eq(exceptions, 1);
    cr_assert_eq(last_err, RILL_EDEADLINE);
    cr_assert_str_eq(last_why, "write timed out after 100 ms");
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_promise_result(p, NULL), RILL_EDEADLINE,
                 "queued writes fail with the reason");
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_EDEADLINE);
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0);
    rill_promise_release(p);
    finish(e);
}

Test(idle, write_timeout_quiet_when_writes_complete)
{
    struct rill_embedded *e = timeout_emb(&rill_write_timeout_handler, 100 * MS);
    for (int i = 0; i < 20; i++) {
        write_some(e);
        rill_embedded_advance_clock(e, 60 * MS);
    }
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(rill_embedded_loop(e), &p), 0);
    rill_embedded_write(e, bytes("late"), p);
    rill_embedded_advance_clock(e, 99 * MS);
    rill_embedded_flush(e); /* just in time */
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    rill_promise_release(p);
    drain_outbound(e);
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0, "every write's timer is gone");
    cr_assert_eq(exceptions, 0);
    cr_assert(rill_embedded_is_open(e));
    finish(e);
}

Test(idle, write_timeout_times_each_write)
{
    struct rill_embedded *e = timeout_emb(&rill_write_timeout_handler, 100 * MS);
    rill_embedded_write(e, bytes("first"), NULL);
    rill_embedded_flush(e);
    drain_outbound(e);
    rill_embedded_advance_clock(e, 50 * MS);
    rill_embedded_write(e, bytes("second"), NULL); /* at 50, not flushed */
    rill_embedded_advance_clock(e, 99 * MS);
    cr_assert_eq(exceptions, 0, "the first write completed; the second has 1 ms left");
    rill_embedded_advance_clock(e, 1 * MS);
    cr_assert_eq(exceptions, 1);
    rill_embedded_take_exception(e, NULL);
    finish(e);
}

Test(idle, write_timeout_removed_with_writes_under_way)
{
    struct rill_embedded *e = timeout_emb(&rill_write_timeout_handler, 100 * MS);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, bytes("a"), p);
    rill_embedded_write(e, bytes("b"), NULL);
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "idle"), 0);
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0, "timers cancelled");
    cr_assert_eq(exceptions, 0);
    rill_embedded_flush(e); /* the writes' listeners run after the handler left */
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    cr_assert_eq(rill_embedded_outbound_count(e), 2);
    drain_outbound(e);
    rill_promise_release(p);
    finish(e);
}

Test(idle, write_timeout_with_an_already_cancelled_promise)
{
    struct rill_embedded *e = timeout_emb(&rill_write_timeout_handler, 100 * MS);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(rill_embedded_loop(e), &p), 0);
    rill_promise_cancel(p);
    rill_embedded_write(e, bytes("x"), p);
    rill_embedded_flush(e);
    cr_assert_eq(rill_embedded_advance_clock(e, RILL_NS_PER_S), 0);
    cr_assert_eq(exceptions, 0);
    drain_outbound(e);
    rill_promise_release(p);
    finish(e);
}

/* ---- a real connection: reader idle on a loopback TCP server ---- */

struct live {
    _Atomic int events, firsts, later;
    _Atomic uint64_t first_at;
};

static void live_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct live *l = rill_ctx_arg(ctx);
    if (ev->type == RILL_EVENT_IDLE_READER) {
        const struct rill_idle_event *ie = ev->data;
        if (atomic_fetch_add(&l->events, 1) == 0)
            atomic_store(&l->first_at, rill_clock_now_ns());
        atomic_fetch_add(ie->first ? &l->firsts : &l->later, 1);
        if (atomic_load(&l->events) == 2)
            rill_channel_close(rill_ctx_channel(ctx), NULL);
    }
    rill_ctx_fire_user_event(ctx, ev);
}

static const struct rill_handler live_handler = { .name = "live", .user_event = live_event };

static int live_init(struct rill_channel *ch, void *arg)
{
    struct rill_idle_config cfg = { .reader_idle_ns = 50 * MS };
    int rc = rill_pipeline_add_last(rill_channel_pipeline(ch), "idle", &rill_idle_handler, &cfg);
    return rc ? rc : rill_pipeline_add_last(rill_channel_pipeline(ch), "live", &live_handler, arg);
}

static struct rill_loop_group *group(const char *name)
{
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = 1;
    o.name = name;
    struct rill_loop_group *g = NULL;
    cr_assert_eq(rill_loop_group_new(&o, &g), 0);
    return g;
}

Test(idle, reader_idle_on_a_loopback_connection)
{
    const int64_t wait = 20 * (int64_t)RILL_NS_PER_S;
    struct rill_loop_group *boss = group("boss"), *work = group("work");
    struct live l = { 0 };
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = boss;
    so.workers = work;
    so.child_init = live_init;
    so.child_arg = &l;
    struct rill_server *srv;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(srv), wait), 0);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", rill_addr_port(rill_server_local_addr(srv)));

    uint64_t start = rill_clock_now_ns();
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = work;
    struct rill_promise *f;
    cr_assert_eq(rill_client_connect(&co, uri, &f), 0);
    cr_assert_eq(rill_promise_wait(f, wait), 0);
    struct rill_channel *ch = rill_client_channel(f);
    rill_promise_release(f);

    /* The client sends nothing: the server's child goes reader-idle twice,
     * then closes itself. */
    uint64_t deadline = rill_test_deadline_ms(20000);
    while (atomic_load(&l.events) < 2 && rill_test_before(deadline))
        usleep(1000);
    cr_assert_eq(atomic_load(&l.events), 2);
    cr_assert_eq(atomic_load(&l.firsts), 1);
    cr_assert_eq(atomic_load(&l.later), 1);
    cr_assert_geq(atomic_load(&l.first_at) - start, 50 * MS, "not before the idle time");
    cr_assert_eq(rill_promise_wait(rill_channel_close_future(ch), wait), 0,
                 "the server closed the idle connection");
    rill_channel_release(ch);

    cr_assert_eq(rill_promise_wait(rill_server_close(srv, true), wait), 0);
    rill_server_free(srv);
    cr_assert_eq(rill_promise_wait(rill_loop_group_shutdown(work, 0, RILL_NS_PER_S), wait), 0);
    cr_assert_eq(rill_promise_wait(rill_loop_group_shutdown(boss, 0, RILL_NS_PER_S), wait), 0);
    rill_loop_group_free(work);
    rill_loop_group_free(boss);
}
