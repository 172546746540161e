/* Idle-state detection (Netty's IdleStateHandler): one one-shot timer per
 * enabled kind (reader, writer, all). Activity only records a time; a
 * timer that fires early re-arms itself for what is left of the idle time,
 * so busy channels cost no timer operation per read or write. The tracker
 * is also the engine of the read timeout (codec/timeout.c). */
#include "codec/idle_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "rill/channel.h"
#include "rill/error.h"
#include "rill/log.h"
#include "rill/loop.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "rill/timer.h"

/* Netty's states: timers never started, running, stopped for good (a
 * channel that went inactive does not come back). */
enum { ST_NONE, ST_RUNNING, ST_STOPPED };

static const int event_type[RILL__IDLE_KINDS] = {
    RILL_EVENT_IDLE_READER,
    RILL_EVENT_IDLE_WRITER,
    RILL_EVENT_IDLE_ALL,
};

void rill__idle_fmt_ms(char *out, size_t size, uint64_t ns)
{
    if (ns % 1000000 == 0)
        snprintf(out, size, "%llu ms", (unsigned long long)(ns / 1000000));
    else
        snprintf(out, size, "%.3f ms", (double)ns / 1e6);
}

/* ---- the tracker ---- */

static struct rill__idle *idle_get(struct rill__idle *idle)
{
    idle->refs++;
    return idle;
}

static void idle_put(struct rill__idle *idle)
{
    if (--idle->refs == 0)
        free(idle);
}

int rill__idle_new(struct rill_ctx *ctx, const struct rill_idle_config *cfg, rill__idle_fn *on_idle,
                   const char *who, struct rill__idle **out)
{
    if (!cfg) {
        RILL_WARN("%s: no config (pass a struct rill_idle_config *)", who);
        return -EINVAL;
    }
    if (!cfg->reader_idle_ns && !cfg->writer_idle_ns && !cfg->all_idle_ns) {
        RILL_WARN("%s: every idle time is 0: nothing to detect", who);
        return -EINVAL;
    }
    if (cfg->reader_idle_ns > RILL_IDLE_MAX_NS || cfg->writer_idle_ns > RILL_IDLE_MAX_NS ||
        cfg->all_idle_ns > RILL_IDLE_MAX_NS) {
        RILL_WARN("%s: an idle time exceeds RILL_IDLE_MAX_NS (2^62 ns)", who);
        return -EINVAL;
    }
    struct rill__idle *idle = calloc(1, sizeof(*idle));
    if (!idle)
        return -ENOMEM;
    idle->refs = 1;
    idle->ctx = ctx;
    idle->loop = rill_channel_loop(rill_ctx_channel(ctx));
    idle->on_idle = on_idle;
    idle->cfg = *cfg;
    idle->idle_ns[RILL__IDLE_R] = cfg->reader_idle_ns;
    idle->idle_ns[RILL__IDLE_W] = cfg->writer_idle_ns;
    idle->idle_ns[RILL__IDLE_A] = cfg->all_idle_ns;
    for (int k = 0; k < RILL__IDLE_KINDS; k++)
        idle->first[k] = true;
    *out = idle;
    return 0;
}

static rill_timer_fn tick_reader, tick_writer, tick_all;
static rill_timer_fn *const tick_fn[RILL__IDLE_KINDS] = { tick_reader, tick_writer, tick_all };

static void arm(struct rill__idle *idle, int k, uint64_t delay)
{
    int rc = rill_timer_schedule(idle->loop, delay, 0, RILL_TIMER_ONCE, tick_fn[k], idle,
                                 &idle->timer[k]);
    if (rc == 0)
        return;
    idle->timer[k] = NULL;
    /* A loop that is shutting down refuses timers: the channel closes soon. */
    if (rc != RILL_EREJECTED)
        RILL_WARN("idle: channel %llu: cannot arm the %s idle timer (%s); it stays off",
                  (unsigned long long)rill_channel_id(rill_ctx_channel(idle->ctx)),
                  k == RILL__IDLE_R   ? "reader"
                  : k == RILL__IDLE_W ? "writer"
                                      : "all",
                  rill_strerror(rc));
}

void rill__idle_start(struct rill__idle *idle)
{
    if (idle->state != ST_NONE || !rill_channel_is_active(rill_ctx_channel(idle->ctx)))
        return;
    idle->state = ST_RUNNING;
    uint64_t now = rill_loop_now(idle->loop);
    idle->last_read = idle->last_write = idle->last_check = now;
    if (idle->cfg.observe_output)
        idle->last_pending = rill_channel_pending_bytes(rill_ctx_channel(idle->ctx));
    for (int k = 0; k < RILL__IDLE_KINDS; k++)
        if (idle->idle_ns[k])
            arm(idle, k, idle->idle_ns[k]);
}

void rill__idle_stop(struct rill__idle *idle)
{
    idle->state = ST_STOPPED;
    for (int k = 0; k < RILL__IDLE_KINDS; k++) {
        if (idle->timer[k]) {
            rill_timer_cancel(idle->timer[k]);
            rill_timer_release(idle->timer[k]);
            idle->timer[k] = NULL;
        }
    }
}

void rill__idle_removed(struct rill__idle *idle)
{
    rill__idle_stop(idle);
    idle->ctx = NULL;
    idle_put(idle);
}

/* Netty's hasOutputChanged: with observe_output, a write that completed
 * since the last check or a change in the bytes still queued is activity.
 * The first event of a period only records the state. */
static bool output_changed(struct rill__idle *idle, bool first)
{
    if (!idle->cfg.observe_output)
        return false;
    bool changed = false;
    if (idle->last_check != idle->last_write) {
        idle->last_check = idle->last_write;
        changed = !first;
    }
    size_t pending = rill_channel_pending_bytes(rill_ctx_channel(idle->ctx));
    if (pending != idle->last_pending) {
        idle->last_pending = pending;
        changed = changed || !first;
    }
    return changed;
}

/* Nanoseconds left before kind @k is idle (0: idle now). A read in
 * progress keeps reader and all from going idle. */
static uint64_t remaining(const struct rill__idle *idle, int k, uint64_t now)
{
    uint64_t full = idle->idle_ns[k], last;
    switch (k) {
    case RILL__IDLE_R:
        if (idle->reading)
            return full;
        last = idle->last_read;
        break;
    case RILL__IDLE_W:
        last = idle->last_write;
        break;
    default:
        if (idle->reading)
            return full;
        last = idle->last_read > idle->last_write ? idle->last_read : idle->last_write;
        break;
    }
    uint64_t since = now > last ? now - last : 0;
    return since >= full ? 0 : full - since;
}

static void tick(struct rill__idle *idle, int k)
{
    rill_timer_release(idle->timer[k]);
    idle->timer[k] = NULL;
    /* A channel closing (inactive is on its way) is not idle any more. */
    if (idle->state != ST_RUNNING || !rill_channel_is_active(rill_ctx_channel(idle->ctx)))
        return;
    uint64_t left = remaining(idle, k, rill_loop_now(idle->loop));
    if (left) {
        arm(idle, k, left);
        return;
    }
    /* Re-arm before telling anyone: whatever the callee does (remove the
     * handler, close) finds the timer in place and cancels it. */
    arm(idle, k, idle->idle_ns[k]);
    bool first = idle->first[k];
    idle->first[k] = false;
    if (k != RILL__IDLE_R && output_changed(idle, first))
        return;
    idle_get(idle);
    idle->on_idle(idle, event_type[k], first);
    idle_put(idle);
}

static void tick_reader(struct rill_timer *t, void *arg)
{
    tick(arg, RILL__IDLE_R);
}

static void tick_writer(struct rill_timer *t, void *arg)
{
    tick(arg, RILL__IDLE_W);
}

static void tick_all(struct rill_timer *t, void *arg)
{
    tick(arg, RILL__IDLE_A);
}

/* ---- watching writes ---- */

/* A promise of another loop (or of none) may run its listeners on
 * another thread; the write then carries a promise of our loop, chained
 * to the user's. */
struct chain {
    rill_future_fn *fn;
    void *arg;
    struct rill_promise *user;
};

static void chain_done(struct rill_promise *p, void *arg)
{
    struct chain *c = arg;
    c->fn(p, c->arg);
    void *value = NULL;
    int rc = rill_promise_result(p, &value);
    if (rc == 0)
        rill_promise_succeed(c->user, NULL, NULL); /* writes carry no value */
    else
        rill_promise_fail(c->user, rc);
    rill_promise_release(c->user);
    free(c);
}

/* Any thread: the user cancelled the write. */
static void user_done(struct rill_promise *user, void *arg)
{
    struct rill_promise *ours = arg;
    if (rill_promise_is_cancelled(user))
        rill_promise_cancel(ours);
    rill_promise_release(ours);
}

int rill__write_watch(struct rill_loop *loop, struct rill_promise *user, rill_future_fn *fn,
                      void *arg, struct rill_promise **down)
{
    *down = user ? rill_promise_retain(user) : NULL;
    if (user && rill_promise_loop(user) == loop)
        return rill_promise_add_listener(user, fn, arg);

    struct rill_promise *ours;
    struct chain *c = NULL;
    if (user && !(c = malloc(sizeof(*c))))
        return -ENOMEM;
    if (rill_promise_new(loop, &ours) != 0) {
        free(c);
        return -ENOMEM;
    }
    if (!user) {
        if (rill_promise_add_listener(ours, fn, arg) != 0) {
            rill_promise_release(ours);
            return -ENOMEM;
        }
        *down = ours;
        return 0;
    }
    *c = (struct chain){ .fn = fn, .arg = arg, .user = user }; /* takes *down's reference */
    rill_promise_retain(ours);
    /* ours has no listener yet, so the first one needs no allocation. */
    rill_promise_add_listener(ours, chain_done, c);
    if (rill_promise_add_listener(user, user_done, ours) != 0)
        rill_promise_release(ours); /* cancelling the user's promise is then not seen */
    *down = ours;
    return 0;
}

/* ---- handler callbacks ---- */

struct idle_state {
    struct rill__idle *idle;
};

static struct rill__idle *idle_of(struct rill_ctx *ctx)
{
    return ((struct idle_state *)rill_ctx_state(ctx))->idle;
}

int rill__idle_on_added(struct rill_ctx *ctx, const struct rill_idle_config *cfg,
                        rill__idle_fn *on_idle, const char *who)
{
    struct idle_state *s = rill_ctx_state(ctx);
    int rc = rill__idle_new(ctx, cfg, on_idle, who, &s->idle);
    if (rc == 0)
        rill__idle_start(s->idle);
    return rc;
}

void rill__idle_on_removed(struct rill_ctx *ctx)
{
    struct idle_state *s = rill_ctx_state(ctx);
    if (s->idle)
        rill__idle_removed(s->idle);
    s->idle = NULL;
}

void rill__idle_on_active(struct rill_ctx *ctx)
{
    rill__idle_start(idle_of(ctx));
    rill_ctx_fire_active(ctx);
}

void rill__idle_on_inactive(struct rill_ctx *ctx)
{
    rill__idle_stop(idle_of(ctx));
    rill_ctx_fire_inactive(ctx);
}

void rill__idle_on_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill__idle *idle = idle_of(ctx);
    if (idle->idle_ns[RILL__IDLE_R] || idle->idle_ns[RILL__IDLE_A]) {
        idle->reading = true;
        idle->first[RILL__IDLE_R] = idle->first[RILL__IDLE_A] = true;
    }
    rill_ctx_fire_read(ctx, msg);
}

void rill__idle_on_read_complete(struct rill_ctx *ctx)
{
    struct rill__idle *idle = idle_of(ctx);
    if (idle->reading) {
        idle->last_read = rill_loop_now(idle->loop);
        idle->reading = false;
    }
    rill_ctx_fire_read_complete(ctx);
}

static void write_done(struct rill_promise *p, void *arg)
{
    struct rill__idle *idle = arg;
    if (idle->ctx && idle->state != ST_STOPPED) {
        idle->last_write = rill_loop_now(idle->loop);
        idle->first[RILL__IDLE_W] = idle->first[RILL__IDLE_A] = true;
    }
    idle_put(idle);
}

void rill__idle_on_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct rill__idle *idle = idle_of(ctx);
    if ((!idle->idle_ns[RILL__IDLE_W] && !idle->idle_ns[RILL__IDLE_A]) ||
        idle->state == ST_STOPPED) {
        rill_ctx_write(ctx, msg, p);
        return;
    }
    struct rill_promise *down;
    idle_get(idle);
    if (rill__write_watch(idle->loop, p, write_done, idle, &down) != 0) {
        idle_put(idle);
        RILL_WARN("idle: channel %llu: out of memory watching a write; its completion is "
                  "not seen as activity",
                  (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)));
    }
    rill_ctx_write(ctx, msg, down);
    rill_promise_release(down);
}

/* ---- rill_idle_handler ---- */

static void fire_idle(struct rill__idle *idle, int type, bool first)
{
    struct rill_idle_event ie = { .type = type, .first = first };
    struct rill_event ev = { .type = type, .data = &ie };
    rill_ctx_fire_user_event(idle->ctx, &ev);
}

static int idle_added(struct rill_ctx *ctx)
{
    return rill__idle_on_added(ctx, rill_ctx_arg(ctx), fire_idle, "idle handler");
}

const struct rill_handler rill_idle_handler = {
    .name = "idle",
    .ctx_size = sizeof(struct idle_state),
    .added = idle_added,
    .removed = rill__idle_on_removed,
    .active = rill__idle_on_active,
    .read = rill__idle_on_read,
    .read_complete = rill__idle_on_read_complete,
    .inactive = rill__idle_on_inactive,
    .write = rill__idle_on_write,
};
