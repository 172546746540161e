/* Read and write timeouts (Netty's ReadTimeoutHandler and
 * WriteTimeoutHandler). The read timeout is the idle tracker's reader kind
 * with a different ending; the write timeout arms one timer per write and
 * disarms it when the write's promise completes. Either ends the same way,
 * once: an exception event RILL_EDEADLINE toward the tail, then a close
 * whose reason is RILL_EDEADLINE. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec/idle_internal.h"
#include "rill/channel.h"
#include "rill/common.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/list.h"
#include "rill/log.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "rill/timer.h"

/* Fire the exception from @ctx, then close. @ctx may be removed by what
 * the exception triggers, so only the channel (referenced) is used after. */
static void timed_out(struct rill_ctx *ctx, const char *what, uint64_t ns)
{
    char ms[32], why[64];
    rill__idle_fmt_ms(ms, sizeof(ms), ns);
    snprintf(why, sizeof(why), "%s timed out after %s", what, ms);
    struct rill_channel *ch = rill_channel_retain(rill_ctx_channel(ctx));
    rill_ctx_fire_exception(ctx, RILL_EDEADLINE, why);
    rill_channel_close_with(ch, RILL_EDEADLINE, NULL);
    rill_channel_release(ch);
}

static int check_timeout(const struct rill_timeout_config *cfg, const char *who)
{
    if (!cfg) {
        RILL_WARN("%s: no config (pass a struct rill_timeout_config *)", who);
        return -EINVAL;
    }
    if (cfg->timeout_ns == 0 || cfg->timeout_ns > RILL_IDLE_MAX_NS) {
        RILL_WARN("%s: timeout_ns must be in 1..2^62, not %llu", who,
                  (unsigned long long)cfg->timeout_ns);
        return -EINVAL;
    }
    return 0;
}

/* ---- read timeout ---- */

static void read_timed_out(struct rill__idle *idle, int type, bool first)
{
    if (idle->fired)
        return;
    idle->fired = true;
    rill__idle_stop(idle);
    timed_out(idle->ctx, "read", idle->cfg.reader_idle_ns);
}

static int read_timeout_added(struct rill_ctx *ctx)
{
    const struct rill_timeout_config *cfg = rill_ctx_arg(ctx);
    int rc = check_timeout(cfg, "read timeout handler");
    if (rc)
        return rc;
    struct rill_idle_config icfg = { .reader_idle_ns = cfg->timeout_ns };
    return rill__idle_on_added(ctx, &icfg, read_timed_out, "read timeout handler");
}

const struct rill_handler rill_read_timeout_handler = {
    .name = "read_timeout",
    .ctx_size = sizeof(struct rill__idle *),
    .added = read_timeout_added,
    .removed = rill__idle_on_removed,
    .active = rill__idle_on_active,
    .read = rill__idle_on_read,
    .read_complete = rill__idle_on_read_complete,
    .inactive = rill__idle_on_inactive,
};

/* ---- write timeout ---- */

struct wt_state {
    uint64_t timeout_ns;
    bool fired;
    struct rill_list writes; /* struct wt_write.link, oldest first */
};

/* One write under way. Freed by its promise's listener; the context's
 * removal cancels the timer and orphans it (state NULL). */
struct wt_write {
    struct rill_list link;
    struct wt_state *state;
    struct rill_ctx *ctx;
    struct rill_timer *timer;
    struct rill_promise *p; /* what the write carries; referenced */
    bool watching;          /* inside rill__write_watch: the listener defers to it */
    bool completed;         /* the listener ran while watching */
};

static void wt_expired(struct rill_timer *t, void *arg)
{
    struct wt_write *w = arg;
    rill_timer_release(w->timer);
    w->timer = NULL;
    /* Completed, but its listener is still on the way (posted). */
    if (rill_promise_is_done(w->p) || w->state->fired)
        return;
    w->state->fired = true;
    /* The close below fails this write: its listener frees @w. */
    timed_out(w->ctx, "write", w->state->timeout_ns);
}

static void wt_free(struct wt_write *w)
{
    if (w->timer) {
        rill_timer_cancel(w->timer);
        rill_timer_release(w->timer);
    }
    if (w->state)
        rill_list_remove(&w->link);
    rill_promise_release(w->p);
    free(w);
}

static void wt_done(struct rill_promise *p, void *arg)
{
    struct wt_write *w = arg;
    if (w->watching)
        w->completed = true; /* a promise done before the write: see wt_write */
    else
        wt_free(w);
}

static int wt_added(struct rill_ctx *ctx)
{
    const struct rill_timeout_config *cfg = rill_ctx_arg(ctx);
    int rc = check_timeout(cfg, "write timeout handler");
    if (rc)
        return rc;
    struct wt_state *s = rill_ctx_state(ctx);
    s->timeout_ns = cfg->timeout_ns;
    rill_list_init(&s->writes);
    return 0;
}

static void wt_removed(struct rill_ctx *ctx)
{
    struct wt_state *s = rill_ctx_state(ctx);
    struct rill_list *it;
    while ((it = rill_list_pop_front(&s->writes))) {
        struct wt_write *w = rill_container_of(it, struct wt_write, link);
        if (w->timer) {
            rill_timer_cancel(w->timer);
            rill_timer_release(w->timer);
            w->timer = NULL;
        }
        w->state = NULL;
    }
}

static void wt_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct wt_state *s = rill_ctx_state(ctx);
    struct rill_loop *loop = rill_channel_loop(rill_ctx_channel(ctx));
    struct rill_promise *down = NULL;
    struct wt_write *w = calloc(1, sizeof(*w));
    if (!w)
        goto untimed;
    w->ctx = ctx;
    if (rill_timer_schedule(loop, s->timeout_ns, 0, RILL_TIMER_ONCE, wt_expired, w, &w->timer)) {
        free(w);
        goto untimed;
    }
    w->watching = true;
    int rc = rill__write_watch(loop, p, wt_done, w, &down);
    w->watching = false;
    if (rc != 0 || w->completed) {
        /* No listener will come, or it came already: nothing to time. */
        wt_free(w);
        if (rc != 0)
            goto untimed_down;
    } else {
        w->state = s;
        w->p = rill_promise_retain(down);
        rill_list_push_back(&s->writes, &w->link);
    }
    rill_ctx_write(ctx, msg, down);
    rill_promise_release(down);
    return;
untimed:
    down = p ? rill_promise_retain(p) : NULL;
untimed_down:
    RILL_WARN("write timeout: channel %llu: out of memory; a write is not timed",
              (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)));
    rill_ctx_write(ctx, msg, down);
    rill_promise_release(down);
}

const struct rill_handler rill_write_timeout_handler = {
    .name = "write_timeout",
    .ctx_size = sizeof(struct wt_state),
    .added = wt_added,
    .removed = wt_removed,
    .write = wt_write,
};
