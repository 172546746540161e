/* Tests for the pipeline (include/rill/pipeline.h): event order across
 * handlers in both directions, skip masks, adding/removing/replacing from
 * inside callbacks without losing or reordering events, added()/removed(),
 * added() failure, one handler table in two pipelines, what the tail does
 * with unhandled messages and exceptions. Run through the embedded channel
 * and the test transport (tt.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rill/channel.h"
#include "rill/embedded.h"
#include "rill/log.h"
#include "rill/pipeline.h"
#include "tests/channel/tt.h"
#include "util/testutil.h"

TestSuite(pipeline, .timeout = 30, .fini = rill_test_no_leaks);

static struct rill_embedded *emb(const struct rill_embedded_handler *hs, size_t n)
{
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, n, &e), 0);
    return e;
}

static void finish_clean(struct rill_embedded *e)
{
    size_t left = 99;
    cr_assert_eq(rill_embedded_finish(e, &left), 0);
    cr_assert_eq(left, 0, "%zu messages left over", left);
    rill_embedded_free(e);
}

/* ---- order ---- */

Test(pipeline, inbound_events_go_head_to_tail)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "a", &rec_handler, "A" },
                                          { "b", &rec_handler, "B" },
                                          { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 3);
    cr_assert_str_eq(tt_trace, "A:added B:added C:added A:registered B:registered C:registered "
                               "A:active B:active C:active");
    tt_trace_reset();
    cr_assert_eq(rill_embedded_write_inbound(e, tt_msg("x")), 1);
    cr_assert_str_eq(tt_trace, "A:read(x) B:read(x) C:read(x) A:read_complete B:read_complete "
                               "C:read_complete");
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert(tt_msg_is(m, "x"));
    rill_msg_release(m);

    tt_trace_reset();
    struct rill_event ev = { .type = RILL_EVENT_USER + 1 };
    rill_pipeline_fire_user_event(rill_embedded_pipeline(e), &ev);
    rill_pipeline_fire_exception(rill_embedded_pipeline(e), RILL_EPROTO, "bad");
    cr_assert_str_eq(tt_trace, "A:event(1001) B:event(1001) C:event(1001) "
                               "A:exception(RILL_EPROTO,bad) B:exception(RILL_EPROTO,bad) "
                               "C:exception(RILL_EPROTO,bad)");
    const char *why = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EPROTO);
    cr_assert_str_eq(why, "bad");

    tt_trace_reset();
    rill_embedded_close(e);
    cr_assert_str_eq(tt_trace, "C:close B:close A:close A:inactive B:inactive C:inactive "
                               "A:unregistered B:unregistered C:unregistered C:removed "
                               "B:removed A:removed");
    finish_clean(e);
}

Test(pipeline, outbound_operations_go_tail_to_head)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "a", &rec_handler, "A" },
                                          { "b", &rec_handler, "B" },
                                          { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 3);
    tt_trace_reset();
    cr_assert_eq(rill_embedded_write_outbound(e, tt_msg("y")), 1);
    cr_assert_str_eq(tt_trace, "C:write(y) B:write(y) A:write(y) C:flush B:flush A:flush");
    struct rill_msg *m = rill_embedded_read_outbound(e);
    cr_assert(tt_msg_is(m, "y"));
    rill_msg_release(m);
    finish_clean(e);
}

/* A handler that writes from its own context starts at the next context
 * toward the head, skipping the handlers after it. */
static void write_from_b(struct rill_ctx *ctx, struct rill_msg *msg)
{
    tt_log("B:read");
    rill_ctx_write_and_flush(ctx, msg, NULL);
}
static const struct rill_handler echo_b = { .name = "echo", .read = write_from_b };

Test(pipeline, outbound_from_a_context_starts_there)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "a", &rec_handler, "A" },
                                          { "b", &echo_b, NULL },
                                          { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 3);
    tt_trace_reset();
    cr_assert_eq(rill_embedded_write_inbound(e, tt_msg("z")), 0);
    cr_assert_str_eq(tt_trace, "A:read(z) B:read A:write(z) A:flush A:read_complete "
                               "C:read_complete");
    struct rill_msg *m = rill_embedded_read_outbound(e);
    cr_assert(tt_msg_is(m, "z"));
    rill_msg_release(m);
    finish_clean(e);
}

/* ---- masks ---- */

static int only_read_calls;
static void only_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    only_read_calls++;
    tt_log("R:read");
    rill_ctx_fire_read(ctx, msg);
}
static const struct rill_handler only_read_handler = { .name = "only-read", .read = only_read };
static const struct rill_handler empty_handler = { .name = "empty" };

Test(pipeline, handlers_see_only_their_slots)
{
    tt_trace_reset();
    only_read_calls = 0;
    struct rill_embedded_handler hs[] = { { "e1", &empty_handler, NULL },
                                          { "r", &only_read_handler, NULL },
                                          { "e2", &empty_handler, NULL },
                                          { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 4);
    cr_assert_str_eq(tt_trace, "C:added C:registered C:active");
    tt_trace_reset();
    rill_embedded_write_inbound(e, tt_msg("1"));
    rill_embedded_write_outbound(e, tt_msg("2"));
    rill_embedded_close(e);
    cr_assert_eq(only_read_calls, 1);
    cr_assert_str_eq(tt_trace, "R:read C:read(1) C:read_complete C:write(2) C:flush C:close "
                               "C:inactive C:unregistered C:removed");
    size_t left = 0;
    rill_embedded_finish(e, &left);
    cr_assert_eq(left, 2);
    rill_embedded_free(e);
}

/* ---- dynamic changes inside callbacks ---- */

static void remove_self_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    tt_log("S:read");
    cr_assert_eq(rill_pipeline_remove_ctx(ctx), 0);
    cr_assert(rill_ctx_is_removed(ctx));
    cr_assert_eq(rill_pipeline_remove_ctx(ctx), -ENOENT);
    /* The state is still ours until the callback returns (ASan checks). */
    memset(rill_ctx_state(ctx), 0xab, 32);
    rill_ctx_fire_read(ctx, msg);
}
static void remove_self_removed(struct rill_ctx *ctx)
{
    tt_log("S:removed");
    (void)ctx;
}
static const struct rill_handler remove_self = {
    .name = "once", .ctx_size = 32, .read = remove_self_read, .removed = remove_self_removed
};

Test(pipeline, handler_removing_itself_loses_nothing)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "s", &remove_self, NULL }, { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 2);
    tt_trace_reset();
    struct rill_msg *two[] = { tt_msg("1"), tt_msg("2") };
    cr_assert_eq(rill_embedded_write_inbound_n(e, two, 2), 2);
    cr_assert_str_eq(tt_trace, "S:read S:removed C:read(1) C:read(2) C:read_complete");
    const char *names[4];
    cr_assert_eq(rill_pipeline_names(rill_embedded_pipeline(e), names, 4), 1);
    cr_assert_str_eq(names[0], "c");
    for (int i = 1; i <= 2; i++) {
        struct rill_msg *m = rill_embedded_read_inbound(e);
        char want[2] = { (char)('0' + i), 0 };
        cr_assert(tt_msg_is(m, want));
        rill_msg_release(m);
    }
    finish_clean(e);
}

/* Removes the next handler, then forwards: the event skips it. */
static void remove_next_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    cr_assert_eq(rill_pipeline_remove(rill_ctx_pipeline(ctx), "b"), 0);
    rill_ctx_fire_read(ctx, msg);
}
static const struct rill_handler remove_next = { .name = "rm", .read = remove_next_read };

Test(pipeline, removing_the_next_handler_during_an_event)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "a", &remove_next, NULL },
                                          { "b", &rec_handler, "B" },
                                          { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 3);
    tt_trace_reset();
    rill_embedded_write_inbound(e, tt_msg("m"));
    cr_assert_str_eq(tt_trace, "B:removed C:read(m) C:read_complete");
    struct rill_msg *m = rill_embedded_read_inbound(e);
    rill_msg_release(m);
    finish_clean(e);
}

/* Adds a handler right after itself, then forwards: the new handler gets
 * this very event. */
static void add_after_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    if (!rill_pipeline_get(rill_ctx_pipeline(ctx), "new"))
        cr_assert_eq(rill_pipeline_add_after(rill_ctx_pipeline(ctx), rill_ctx_name(ctx), "new",
                                             &rec_handler, "N"),
                     0);
    rill_ctx_fire_read(ctx, msg);
}
static const struct rill_handler add_after = { .name = "adder", .read = add_after_read };

Test(pipeline, adding_after_the_current_handler_during_an_event)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "a", &add_after, NULL }, { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 2);
    tt_trace_reset();
    rill_embedded_write_inbound(e, tt_msg("1"));
    rill_embedded_write_inbound(e, tt_msg("2"));
    cr_assert_str_eq(tt_trace, "N:added N:read(1) C:read(1) N:read_complete C:read_complete "
                               "N:read(2) C:read(2) N:read_complete C:read_complete");
    const char *names[4];
    cr_assert_eq(rill_pipeline_names(rill_embedded_pipeline(e), names, 4), 3);
    cr_assert_str_eq(names[1], "new");
    size_t left;
    rill_embedded_finish(e, &left);
    cr_assert_eq(left, 2);
    rill_embedded_free(e);
}

/* A protocol switch: the first handler buffers the first message, and on
 * the second replaces itself; its removed() hands the buffered message on,
 * then the second is forwarded. The new handler sees both, in order. */
struct switcher {
    struct rill_msg *held;
};
static void switch_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct switcher *s = rill_ctx_state(ctx);
    if (!s->held) {
        s->held = msg;
        return;
    }
    cr_assert_eq(
        rill_pipeline_replace(rill_ctx_pipeline(ctx), rill_ctx_name(ctx), NULL, &rec_handler, "X"),
        0);
    cr_assert(rill_ctx_is_removed(ctx));
    rill_ctx_fire_read(ctx, msg);
}
static void switch_removed(struct rill_ctx *ctx)
{
    struct switcher *s = rill_ctx_state(ctx);
    tt_log("S:removed");
    if (s->held)
        rill_ctx_fire_read(ctx, s->held);
    s->held = NULL;
}
static const struct rill_handler switcher = { .name = "switch",
                                              .ctx_size = sizeof(struct switcher),
                                              .read = switch_read,
                                              .removed = switch_removed };

Test(pipeline, replace_inside_a_callback_keeps_order)
{
    tt_trace_reset();
    struct rill_embedded_handler hs[] = { { "proto", &switcher, NULL },
                                          { "c", &rec_handler, "C" } };
    struct rill_embedded *e = emb(hs, 2);
    tt_trace_reset();
    struct rill_msg *in[] = { tt_msg("1"), tt_msg("2"), tt_msg("3") };
    cr_assert_eq(rill_embedded_write_inbound_n(e, in, 3), 3);
    cr_assert_str_eq(tt_trace, "X:added S:removed X:read(1) C:read(1) X:read(2) C:read(2) "
                               "X:read(3) C:read(3) X:read_complete C:read_complete");
    const char *names[4];
    cr_assert_eq(rill_pipeline_names(rill_embedded_pipeline(e), names, 4), 2);
    cr_assert_str_eq(names[0], "proto"); /* NULL name kept the old one */
    size_t left;
    rill_embedded_finish(e, &left);
    cr_assert_eq(left, 3);
    rill_embedded_free(e);
}

/* ---- building ---- */

static int fail_added(struct rill_ctx *ctx)
{
    (void)ctx;
    tt_log("F:added");
    return -EPERM;
}
static void fail_removed(struct rill_ctx *ctx)
{
    (void)ctx;
    tt_log("F:removed");
}
static const struct rill_handler failing = {
    .name = "fail", .added = fail_added, .removed = fail_removed, .read = only_read
};

Test(pipeline, names_positions_and_errors)
{
    tt_trace_reset();
    struct rill_embedded *e = emb(NULL, 0);
    struct rill_pipeline *pl = rill_embedded_pipeline(e);
    cr_assert_eq(rill_pipeline_add_last(pl, "b", &empty_handler, NULL), 0);
    cr_assert_eq(rill_pipeline_add_first(pl, "a", &empty_handler, NULL), 0);
    cr_assert_eq(rill_pipeline_add_last(pl, "d", &empty_handler, NULL), 0);
    cr_assert_eq(rill_pipeline_add_before(pl, "d", "c", &empty_handler, NULL), 0);
    cr_assert_eq(rill_pipeline_add_after(pl, "d", "e", &empty_handler, NULL), 0);
    cr_assert_eq(rill_pipeline_add_last(pl, "a", &empty_handler, NULL), -EEXIST);
    cr_assert_eq(rill_pipeline_add_before(pl, "nope", "x", &empty_handler, NULL), -ENOENT);
    cr_assert_eq(rill_pipeline_add_after(pl, "nope", "x", &empty_handler, NULL), -ENOENT);
    cr_assert_eq(rill_pipeline_remove(pl, "nope"), -ENOENT);
    cr_assert_eq(rill_pipeline_replace(pl, "nope", "x", &empty_handler, NULL), -ENOENT);
    cr_assert_eq(rill_pipeline_replace(pl, "a", "b", &empty_handler, NULL), -EEXIST);
    cr_assert_eq(rill_pipeline_add_last(pl, NULL, &empty_handler, NULL), 0);
    cr_assert_eq(rill_pipeline_add_last(pl, "z", NULL, NULL), -EINVAL);

    const char *names[8];
    int n = rill_pipeline_names(pl, names, 8);
    cr_assert_eq(n, 6);
    const char *want[] = { "a", "b", "c", "d", "e" };
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(names[i], want[i]);
    cr_assert_str_eq(names[5], "empty#0");
    cr_assert_eq(rill_pipeline_names(pl, names, 2), 6, "the count is the full count");

    struct rill_ctx *c = rill_pipeline_get(pl, "c");
    cr_assert_not_null(c);
    cr_assert_str_eq(rill_ctx_name(c), "c");
    cr_assert_eq(rill_ctx_pipeline(c), pl);
    cr_assert_eq(rill_ctx_channel(c), rill_embedded_channel(e));
    cr_assert_eq(rill_pipeline_channel(pl), rill_embedded_channel(e));
    cr_assert_null(rill_pipeline_get(pl, "head"));
    cr_assert_null(rill_pipeline_get(pl, "tail"));

    /* added() failing undoes the add; removed() is not called. */
    cr_assert_eq(rill_pipeline_add_after(pl, "a", "f", &failing, NULL), -EPERM);
    cr_assert_null(rill_pipeline_get(pl, "f"));
    cr_assert_eq(rill_pipeline_replace(pl, "c", "f", &failing, NULL), -EPERM);
    cr_assert_not_null(rill_pipeline_get(pl, "c"), "a failed replace keeps the old handler");
    cr_assert_eq(rill_pipeline_names(pl, names, 8), 6);
    cr_assert_str_eq(tt_trace, "F:added F:added");
    finish_clean(e);
}

/* ---- sharing one handler table ---- */

struct counter {
    int reads;
};
static void count_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct counter *c = rill_ctx_state(ctx);
    c->reads++;
    rill_msg_release(msg);
}
static const struct rill_handler counting = { .name = "count",
                                              .ctx_size = sizeof(struct counter),
                                              .read = count_read };

Test(pipeline, one_handler_table_in_two_pipelines)
{
    struct rill_embedded_handler hs[] = { { "n", &counting, NULL } };
    struct rill_embedded *e1 = emb(hs, 1), *e2 = emb(hs, 1);
    struct rill_embedded_handler two[] = { { "n1", &counting, NULL }, { "n2", &counting, NULL } };
    struct rill_embedded *e3 = emb(two, 2);
    for (int i = 0; i < 3; i++)
        rill_embedded_write_inbound(e1, tt_msg("a"));
    rill_embedded_write_inbound(e2, tt_msg("b"));
    rill_embedded_write_inbound(e3, tt_msg("c"));
    struct counter *c1 = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e1), "n"));
    struct counter *c2 = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e2), "n"));
    struct counter *c3 = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e3), "n1"));
    struct counter *c4 = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e3), "n2"));
    cr_assert_eq(c1->reads, 3);
    cr_assert_eq(c2->reads, 1);
    cr_assert_eq(c3->reads, 1);
    cr_assert_eq(c4->reads, 0, "the first consumed the message");
    finish_clean(e1);
    finish_clean(e2);
    finish_clean(e3);
}

/* ---- the tail ---- */

struct captured {
    char msg[512];
    int level;
    int count;
};
static struct captured cap;

static void capture_sink(void *arg, enum rill_log_level level, const char *file, int line,
                         const char *msg)
{
    (void)arg;
    (void)file;
    (void)line;
    if (!strstr(msg, "tail"))
        return;
    snprintf(cap.msg, sizeof(cap.msg), "%s", msg);
    cap.level = level;
    cap.count++;
}

static int tt_init_rec(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "r", &rec_handler, arg);
}

Test(pipeline, tail_releases_messages_and_logs_exceptions_with_the_channel_id)
{
    struct rill_loop *loop = tt_manual_loop();
    tt_enter(loop);
    struct tt *t = tt_new(loop);
    struct rill_channel *ch = &t->base;
    rill__channel_mark_active(ch);
    rill__channel_register(ch, tt_init_rec, "R", NULL);

    memset(&cap, 0, sizeof(cap));
    rill_log_set_sink(capture_sink, NULL);
    rill_log_set_level(RILL_LOG_DEBUG);
    /* The leak detector (paranoid in ctest) fails the test if the tail
     * did not release this. */
    rill__channel_fire_read(ch, tt_msg("unhandled"));
    cr_assert_eq(cap.count, 1);
    cr_assert_eq(cap.level, RILL_LOG_DEBUG);
    cr_assert(strstr(cap.msg, "released"));

    char id[32];
    snprintf(id, sizeof(id), "channel %" PRIu64, rill_channel_id(ch));
    rill__channel_fire_exception(ch, -ECONNRESET, "peer went away");
    cr_assert_eq(cap.count, 2);
    cr_assert_eq(cap.level, RILL_LOG_WARN);
    cr_assert(strstr(cap.msg, id), "%s", cap.msg);
    cr_assert(strstr(cap.msg, "ECONNRESET"), "%s", cap.msg);
    cr_assert(strstr(cap.msg, "peer went away"), "%s", cap.msg);
    rill_log_set_sink(NULL, NULL);
    rill_log_set_level(RILL_LOG_WARN);

    rill_channel_close(ch, NULL);
    tt_run_pending(loop);
    rill_channel_release(ch);
    tt_leave(loop);
    rill_loop_free(loop);
}

/* A handler that drops what it receives must release it: the leak
 * detector catches one that does not (checked by hand); here every path
 * releases. */
static void release_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    (void)ctx;
    rill_msg_release(msg);
}
static void fail_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    (void)ctx;
    rill_msg_release(msg);
    if (p)
        rill_promise_fail(p, -EPERM);
}
static const struct rill_handler sink_handler = { .name = "sink",
                                                  .read = release_read,
                                                  .write = fail_write };

Test(pipeline, handler_failing_a_write)
{
    struct rill_embedded_handler hs[] = { { "s", &sink_handler, NULL } };
    struct rill_embedded *e = emb(hs, 1);
    cr_assert_eq(rill_embedded_write_inbound(e, tt_msg("gone")), 0);
    cr_assert_eq(rill_embedded_write_outbound(e, tt_msg("refused")), -EPERM);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    finish_clean(e);
}
