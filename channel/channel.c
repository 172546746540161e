/* The channel core: references, registration, the lifecycle events, close,
 * the head and tail of the pipeline, connect (with its timeout) and bind.
 * The outbound queue is in outbound.c, options and attributes in
 * channel_opts.c, calls from other threads in channel_ops.c.
 *
 * Lifecycle: registered and active fire on the loop once each; close
 * marks the channel closed, closes the transport and fails the queue at
 * once, then inactive, the close future and unregistered follow from one
 * task, so they never run inside the callback that closed (a decoder
 * whose read is on the stack does not see inactive under its feet). */
#include "channel/channel_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "channel/channel_priv.h"
#include "channel/pipeline_internal.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/msg.h"
#include "rill/timer.h"

static _Atomic uint64_t next_id = 1;

/* ---- head and tail ---- */

static struct rill_channel *ctx_ch(struct rill_ctx *ctx)
{
    return ctx->pl->ch;
}

static void head_bind(struct rill_ctx *ctx, const struct rill_addr *local, struct rill_promise *p)
{
    rill__channel_bind(ctx_ch(ctx), local, p);
}

static void head_connect(struct rill_ctx *ctx, const struct rill_addr *remote,
                         const struct rill_addr *local, struct rill_promise *p)
{
    rill__channel_connect(ctx_ch(ctx), remote, local, p);
}

static void head_close(struct rill_ctx *ctx, struct rill_promise *p)
{
    struct rill_channel *ch = ctx_ch(ctx);
    rill__channel_close_p(ch, ch->close_reason, p);
}

static void head_read_request(struct rill_ctx *ctx)
{
    struct rill_channel *ch = ctx_ch(ctx);
    unsigned s = atomic_load_explicit(&ch->state, memory_order_relaxed);
    if (!ch->closing && (s & RILL__CH_ACTIVE) && !ch->input_shutdown && ch->ops->begin_read)
        ch->ops->begin_read(ch);
}

static void head_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill__outbound_add(ctx_ch(ctx), msg, p);
}

static void head_flush(struct rill_ctx *ctx)
{
    rill__outbound_flush(ctx_ch(ctx));
}

static const struct rill_handler head_handler = {
    .name = "head",
    .bind = head_bind,
    .connect = head_connect,
    .disconnect = head_close, /* stream transports: disconnect is close (Netty) */
    .close = head_close,
    .read_request = head_read_request,
    .write = head_write,
    .flush = head_flush,
};

static void tail_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_channel *ch = ctx_ch(ctx);
    if (ch->ops->unhandled_read) {
        ch->ops->unhandled_read(ch, msg);
        return;
    }
    RILL_DEBUGF("channel %" PRIu64 ": a message (type %u) reached the tail of the pipeline and "
                "was released; add a handler that consumes it",
                ch->id, (unsigned)msg->type);
    rill_msg_release(msg);
}

static void tail_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct rill_channel *ch = ctx_ch(ctx);
    if (ch->ops->unhandled_exception) {
        ch->ops->unhandled_exception(ch, err, why);
        return;
    }
    RILL_WARN("channel %" PRIu64
              ": exception reached the tail of the pipeline unhandled: %s (%s)%s%s",
              ch->id, rill_errname(err), rill_strerror(err), why ? ": " : "", why ? why : "");
}

static const struct rill_handler tail_handler = {
    .name = "tail",
    .read = tail_read,
    .exception = tail_exception,
};

/* ---- construction and references ---- */

int rill__channel_init(struct rill_channel *ch, const struct rill_transport_ops *ops,
                       struct rill_loop *loop, struct rill_channel *parent)
{
    *ch = (struct rill_channel){ 0 };
    ch->ops = ops;
    ch->loop = loop;
    ch->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    atomic_init(&ch->refcnt, 1);
    atomic_init(&ch->state, RILL__CH_OPEN | RILL__CH_WRITABLE);
    atomic_init(&ch->register_called, false);
    rill_list_init(&ch->shutdown_hook.link);
    rill__channel_opts_init(ch);
    int err = rill_promise_new(loop, &ch->close_future);
    if (err)
        return err;
    err = rill__pipeline_new(ch, &head_handler, &tail_handler, &ch->pipeline);
    if (err) {
        rill_promise_release(ch->close_future);
        return err;
    }
    if (parent)
        ch->parent = rill_channel_retain(parent);
    return 0;
}

void rill__channel_mark_active(struct rill_channel *ch)
{
    ch->active_on_register = true;
}

struct rill_channel *rill_channel_retain(struct rill_channel *ch)
{
    atomic_fetch_add_explicit(&ch->refcnt, 1, memory_order_relaxed);
    return ch;
}

static void destroy(struct rill_channel *ch)
{
    if (!ch->closing) {
        /* Never registered (or the creator gave up on it): close the
         * transport here; no events fire for a channel that never
         * registered. */
        ch->closing = true;
        atomic_fetch_and(&ch->state, ~(RILL__CH_OPEN | RILL__CH_ACTIVE | RILL__CH_WRITABLE));
        ch->ops->close(ch);
        rill__outbound_fail_all(ch, RILL_ECLOSED);
        rill_promise_succeed(ch->close_future, NULL, NULL);
    }
    if (ch->connect_promise) {
        rill_promise_fail(ch->connect_promise, RILL_ECLOSED);
        rill_promise_release(ch->connect_promise);
    }
    rill__pipeline_free(ch->pipeline);
    rill__channel_attrs_free(ch);
    free(ch->acceptor);
    rill_promise_release(ch->close_future);
    struct rill_channel *parent = ch->parent;
    ch->ops->destroy(ch);
    if (parent)
        rill_channel_release(parent);
}

void rill_channel_release(struct rill_channel *ch)
{
    if (ch && atomic_fetch_sub_explicit(&ch->refcnt, 1, memory_order_acq_rel) == 1)
        destroy(ch);
}

/* ---- identity and state ---- */

uint64_t rill_channel_id(const struct rill_channel *ch)
{
    return ch->id;
}

struct rill_loop *rill_channel_loop(const struct rill_channel *ch)
{
    return ch->loop;
}

struct rill_pipeline *rill_channel_pipeline(struct rill_channel *ch)
{
    return ch->pipeline;
}

const char *rill_channel_transport(const struct rill_channel *ch)
{
    return ch->ops->name;
}

static unsigned state_of(const struct rill_channel *ch)
{
    return atomic_load_explicit(&((struct rill_channel *)ch)->state, memory_order_acquire);
}

bool rill_channel_is_open(const struct rill_channel *ch)
{
    return state_of(ch) & RILL__CH_OPEN;
}

bool rill_channel_is_active(const struct rill_channel *ch)
{
    return state_of(ch) & RILL__CH_ACTIVE;
}

bool rill_channel_is_registered(const struct rill_channel *ch)
{
    return state_of(ch) & RILL__CH_REGISTERED;
}

bool rill_channel_is_writable(const struct rill_channel *ch)
{
    return state_of(ch) & RILL__CH_WRITABLE;
}

const struct rill_addr *rill_channel_local_addr(const struct rill_channel *ch)
{
    return ch->local_addr;
}

const struct rill_addr *rill_channel_remote_addr(const struct rill_channel *ch)
{
    return ch->remote_addr;
}

int rill_channel_close_reason(const struct rill_channel *ch)
{
    return ch->close_reason;
}

struct rill_promise *rill_channel_close_future(struct rill_channel *ch)
{
    return ch->close_future;
}

struct rill_channel *rill_channel_parent(const struct rill_channel *ch)
{
    return ch->parent;
}

bool rill__channel_is_input_shutdown(const struct rill_channel *ch)
{
    return ch->input_shutdown;
}

/* ---- registration ---- */

struct reg_task {
    struct rill_task task;
    struct rill_channel *ch;
    rill__channel_init_fn *init;
    void *arg;
    struct rill_promise *p;
};

static void complete_p(struct rill_promise *p, int err)
{
    if (!p)
        return;
    if (err)
        rill_promise_fail(p, err);
    else
        rill_promise_succeed(p, NULL, NULL);
}

static void close_on_shutdown(struct rill__loop_hook *h)
{
    struct rill_channel *ch = rill_container_of(h, struct rill_channel, shutdown_hook);
    if (!ch->closing)
        rill__channel_close_p(ch, 0, NULL);
}

static void register_now(struct rill_channel *ch, rill__channel_init_fn *init, void *arg,
                         struct rill_promise *p)
{
    int err = ch->closing ? RILL_ECLOSED : 0;
    if (!err && init)
        err = init(ch, arg);
    if (!err && ch->closing) /* init closed it */
        err = RILL_ECLOSED;
    if (!err && ch->ops->do_register)
        err = ch->ops->do_register(ch);
    if (err) {
        if (err > 0)
            err = -EINVAL;
        if (err != RILL_ECLOSED)
            RILL_WARN("channel %" PRIu64 ": registration failed: %s", ch->id, rill_strerror(err));
        complete_p(p, err);
        rill__channel_close_p(ch, err == RILL_ECLOSED ? 0 : err, NULL);
        rill_channel_release(ch); /* the loop's reference */
        return;
    }
    ch->registered = true;
    atomic_fetch_or(&ch->state, RILL__CH_REGISTERED);
    complete_p(p, 0);
    rill__pipeline_fire_registered(ch->pipeline);
    if (ch->active_on_register && !ch->closing)
        rill__channel_activate(ch);
    /* A loop that shuts down closes its channels (Netty's closeAll); one
     * registered after shutdown began is closed at once. */
    ch->shutdown_hook.fn = close_on_shutdown;
    if (!rill__loop_add_shutdown_hook(ch->loop, &ch->shutdown_hook) && !ch->closing)
        rill__channel_close_p(ch, 0, NULL);
}

static void register_task(void *arg)
{
    struct reg_task *rt = arg;
    register_now(rt->ch, rt->init, rt->arg, rt->p);
    if (rt->p)
        rill_promise_release(rt->p);
    free(rt);
}

void rill__channel_register(struct rill_channel *ch, rill__channel_init_fn *init, void *arg,
                            struct rill_promise *p)
{
    if (atomic_exchange(&ch->register_called, true)) {
        complete_p(p, -EALREADY);
        return;
    }
    rill_channel_retain(ch); /* the loop's reference, until unregistered */
    if (rill_loop_in_thread(ch->loop)) {
        register_now(ch, init, arg, p);
        return;
    }
    struct reg_task *rt = malloc(sizeof(*rt));
    if (rt) {
        rt->ch = ch;
        rt->init = init;
        rt->arg = arg;
        rt->p = p ? rill_promise_retain(p) : NULL;
        rill_task_init(&rt->task, register_task, rt);
        if (rill_loop_post(ch->loop, &rt->task) == 0)
            return;
        if (p)
            rill_promise_release(p);
        free(rt);
    }
    /* No task (no memory, or the loop has terminated): the channel can
     * never run there; nothing else touches it yet, so close it here. */
    int err = rt ? RILL_EREJECTED : -ENOMEM;
    complete_p(p, err);
    rill__channel_close_p(ch, err, NULL);
    rill_channel_release(ch);
}

void rill__channel_activate(struct rill_channel *ch)
{
    unsigned s = atomic_load_explicit(&ch->state, memory_order_relaxed);
    if (ch->closing || (s & RILL__CH_ACTIVE))
        return;
    atomic_fetch_or(&ch->state, RILL__CH_ACTIVE);
    ch->was_active = true;
    rill__pipeline_fire_active(ch->pipeline);
    if (!ch->closing && rill__channel_auto_read(ch))
        rill_ctx_read_request(ch->pipeline->tail);
}

static void activate_task(void *arg)
{
    struct rill_channel *ch = arg;
    ch->activate_queued = false;
    rill__channel_activate(ch);
    rill_channel_release(ch);
}

/* Post fn(ch) with a reference held for the task; false when the loop is
 * gone (the reference is given back). */
bool rill__channel_post(struct rill_channel *ch, struct rill_task *t, rill_task_fn *fn)
{
    rill_channel_retain(ch);
    rill_task_init(t, fn, ch);
    if (rill_loop_post(ch->loop, t) == 0)
        return true;
    rill_channel_release(ch);
    return false;
}

/* ---- close ---- */

static void forward_close(struct rill_promise *f, void *arg)
{
    struct rill_promise *p = arg;
    (void)f;
    rill_promise_succeed(p, NULL, NULL);
    rill_promise_release(p);
}

static void chain_to_close_future(struct rill_channel *ch, struct rill_promise *p)
{
    if (!p)
        return;
    rill_promise_retain(p);
    if (rill_promise_add_listener(ch->close_future, forward_close, p) != 0) {
        rill_promise_succeed(p, NULL, NULL); /* no memory for a listener: the close is under way */
        rill_promise_release(p);
    }
}

/* inactive, the close future, deregistration, unregistered, pipeline
 * teardown, then the loop's reference goes. */
static void close_task(void *arg)
{
    struct rill_channel *ch = arg;
    if (ch->was_active && !ch->inactive_fired) {
        ch->inactive_fired = true;
        rill__pipeline_fire_inactive(ch->pipeline);
    }
    rill_promise_succeed(ch->close_future, NULL, NULL);
    rill__loop_remove_shutdown_hook(&ch->shutdown_hook);
    if (ch->ops->do_deregister)
        ch->ops->do_deregister(ch);
    ch->registered = false;
    atomic_fetch_and(&ch->state, ~RILL__CH_REGISTERED);
    rill__pipeline_fire_unregistered(ch->pipeline);
    rill__pipeline_remove_all(ch->pipeline);
    rill_channel_release(ch); /* the loop's reference */
}

void rill__channel_close_p(struct rill_channel *ch, int reason, struct rill_promise *p)
{
    if (ch->closing) {
        chain_to_close_future(ch, p);
        return;
    }
    ch->closing = true;
    ch->close_reason = reason < 0 ? reason : 0;
    atomic_fetch_and(&ch->state, ~(RILL__CH_OPEN | RILL__CH_ACTIVE | RILL__CH_WRITABLE));
    if (reason < 0)
        RILL_DEBUGF("channel %" PRIu64 ": closing: %s", ch->id, rill_strerror(reason));
    int fail = reason < 0 ? reason : RILL_ECLOSED;
    rill__channel_connect_abort(ch, fail);
    if (ch->ops->drain && ch->registered)
        ch->ops->drain(ch);
    ch->ops->close(ch);
    rill__outbound_fail_all(ch, fail);
    if (ch->shutdown_promise) {
        rill_promise_fail(ch->shutdown_promise, fail);
        rill_promise_release(ch->shutdown_promise);
        ch->shutdown_promise = NULL;
    }
    chain_to_close_future(ch, p);
    if (!ch->registered) {
        rill_promise_succeed(ch->close_future, NULL, NULL);
        return;
    }
    /* The loop's reference moves to the task; a terminated loop cannot
     * take it, so then it runs here (on the loop's thread). */
    rill_task_init(&ch->close_task, close_task, ch);
    if (rill_loop_post(ch->loop, &ch->close_task) != 0)
        close_task(ch);
}

void rill__channel_close(struct rill_channel *ch, int reason)
{
    RILL_ASSERT_IN_LOOP(ch->loop);
    rill__channel_close_p(ch, reason, NULL);
}

/* ---- inbound from the transport ---- */

void rill__channel_fire_read(struct rill_channel *ch, struct rill_msg *msg)
{
    if (ch->closing) {
        rill_msg_release(msg);
        return;
    }
    rill_pipeline_fire_read(ch->pipeline, msg);
}

void rill__channel_fire_read_complete(struct rill_channel *ch)
{
    if (ch->closing)
        return;
    rill_pipeline_fire_read_complete(ch->pipeline);
    /* Netty's head: with auto-read, ask for more; the request travels
     * through the handlers, so a flow-control handler can hold it. */
    if (!ch->closing && rill__channel_auto_read(ch))
        rill_ctx_read_request(ch->pipeline->tail);
}

void rill__channel_fire_exception(struct rill_channel *ch, int err, const char *why)
{
    rill_pipeline_fire_exception(ch->pipeline, err, why);
}

void rill__channel_input_shutdown(struct rill_channel *ch)
{
    if (ch->input_shutdown || ch->closing)
        return;
    ch->input_shutdown = true;
    if (rill__channel_opt(ch, RILL_OPT_ALLOW_HALF_CLOSURE)) {
        struct rill_event ev = { .type = RILL_EVENT_INPUT_SHUTDOWN, .data = NULL };
        rill_pipeline_fire_user_event(ch->pipeline, &ev);
    } else {
        rill__channel_close_p(ch, 0, NULL);
    }
}

/* ---- bind and connect ---- */

void rill__channel_bind(struct rill_channel *ch, const struct rill_addr *local,
                        struct rill_promise *p)
{
    int err = 0;
    if (ch->closing)
        err = RILL_ECLOSED;
    else if (!ch->ops->bind)
        err = -EOPNOTSUPP;
    else
        err = ch->ops->bind(ch, local);
    if (err > 0)
        err = -EINVAL;
    complete_p(p, err);
    /* A listening channel is active once bound; Netty fires that later,
     * after the bind promise's listeners. */
    if (!err && (ch->ops->flags & RILL_TRANSPORT_F_SERVER) && !ch->activate_queued &&
        !ch->closing) {
        ch->activate_queued = true;
        if (!rill__channel_post(ch, &ch->activate_task, activate_task))
            ch->activate_queued = false;
    }
}

static void connect_timeout(struct rill_timer *t, void *arg)
{
    struct rill_channel *ch = arg;
    if (ch->connect_timer == t) {
        rill_timer_release(t);
        ch->connect_timer = NULL;
        if (ch->connect_pending)
            rill__channel_connect_done(ch, -ETIMEDOUT);
    }
    rill_channel_release(ch); /* the timer's reference */
}

static void stop_connect_timer(struct rill_channel *ch)
{
    struct rill_timer *t = ch->connect_timer;
    if (!t)
        return;
    ch->connect_timer = NULL;
    int r = rill_timer_cancel(t);
    rill_timer_release(t);
    if (r == 0) /* it will never run: give back its reference */
        rill_channel_release(ch);
}

void rill__channel_connect_abort(struct rill_channel *ch, int err)
{
    stop_connect_timer(ch);
    if (!ch->connect_pending)
        return;
    ch->connect_pending = false;
    struct rill_promise *p = ch->connect_promise;
    ch->connect_promise = NULL;
    if (p) {
        rill_promise_fail(p, err);
        rill_promise_release(p);
    }
}

void rill__channel_connect(struct rill_channel *ch, const struct rill_addr *remote,
                           const struct rill_addr *local, struct rill_promise *p)
{
    int err = 0;
    if (ch->closing)
        err = RILL_ECLOSED;
    else if (rill_channel_is_active(ch))
        err = -EISCONN;
    else if (ch->connect_pending)
        err = -EALREADY;
    else if (!ch->ops->connect)
        err = -EOPNOTSUPP;
    if (err) {
        complete_p(p, err);
        return;
    }
    ch->connect_pending = true;
    ch->connect_promise = p ? rill_promise_retain(p) : NULL;
    err = ch->ops->connect(ch, remote, local);
    if (err == -EINPROGRESS) {
        int64_t ms = rill__channel_opt(ch, RILL_OPT_CONNECT_TIMEOUT_MS);
        if (ms > 0 && ch->connect_pending) {
            rill_channel_retain(ch);
            if (rill_timer_schedule(ch->loop, (uint64_t)ms * 1000000u, 0, RILL_TIMER_ONCE,
                                    connect_timeout, ch, &ch->connect_timer) != 0) {
                ch->connect_timer = NULL;
                rill_channel_release(ch);
            }
        }
        return;
    }
    rill__channel_connect_done(ch, err > 0 ? -EINVAL : err);
}

void rill__channel_connect_done(struct rill_channel *ch, int err)
{
    if (!ch->connect_pending)
        return;
    if (err) {
        rill__channel_connect_abort(ch, err);
        rill__channel_close_p(ch, err, NULL);
        return;
    }
    stop_connect_timer(ch);
    ch->connect_pending = false;
    struct rill_promise *p = ch->connect_promise;
    ch->connect_promise = NULL;
    if (p) {
        rill_promise_succeed(p, NULL, NULL);
        rill_promise_release(p);
    }
    if (!ch->closing) /* a listener may have closed it */
        rill__channel_activate(ch);
}

/* ---- shutdown output ---- */

static void do_shutdown_output(struct rill_channel *ch)
{
    ch->shutdown_pending = false;
    int err = ch->ops->shutdown_output(ch);
    struct rill_promise *p = ch->shutdown_promise;
    ch->shutdown_promise = NULL;
    if (p) {
        complete_p(p, err > 0 ? -EINVAL : err);
        rill_promise_release(p);
    }
    if (!err && !ch->closing) {
        struct rill_event ev = { .type = RILL_EVENT_OUTPUT_SHUTDOWN, .data = NULL };
        rill_pipeline_fire_user_event(ch->pipeline, &ev);
    }
}

static void shutdown_task(void *arg)
{
    struct rill_channel *ch = arg;
    if (ch->shutdown_pending && !ch->closing && !rill__outbound_has_flushed(ch))
        do_shutdown_output(ch);
    rill_channel_release(ch);
}

void rill__channel_flushed_drained(struct rill_channel *ch)
{
    if (ch->shutdown_pending && !ch->closing)
        rill__channel_post(ch, &ch->shutdown_task, shutdown_task);
}

void rill__channel_shutdown_output(struct rill_channel *ch, struct rill_promise *p)
{
    int err = 0;
    if (ch->closing)
        err = RILL_ECLOSED;
    else if (ch->output_shutdown)
        err = -EALREADY;
    else if (!ch->ops->shutdown_output)
        err = -EOPNOTSUPP;
    if (err) {
        complete_p(p, err);
        return;
    }
    /* Flushed data goes out first; what was written but not flushed can
     * never be sent now. */
    ch->output_shutdown = true;
    ch->shutdown_promise = p ? rill_promise_retain(p) : NULL;
    rill__outbound_fail_unflushed(ch, -EPIPE);
    if (rill__outbound_has_flushed(ch) && rill_channel_is_active(ch))
        ch->shutdown_pending = true;
    else
        do_shutdown_output(ch);
}

/* ---- acceptor ---- */

int rill__channel_set_acceptor(struct rill_channel *server, const struct rill__acceptor *a)
{
    struct rill__acceptor *c = malloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = *a;
    free(server->acceptor);
    server->acceptor = c;
    return 0;
}

struct rill_loop *rill__channel_child_loop(struct rill_channel *server)
{
    struct rill__acceptor *a = server->acceptor;
    struct rill_loop *l = a && a->pick_loop ? a->pick_loop(a->arg) : NULL;
    return l ? l : server->loop;
}

void rill__channel_accepted(struct rill_channel *server, struct rill_channel *child)
{
    struct rill__acceptor *a = server->acceptor;
    if (!a) {
        RILL_WARN("channel %" PRIu64 ": accepted a connection but has no acceptor; closing it",
                  server->id);
        rill_channel_release(child); /* never registered: destroy closes it */
        return;
    }
    rill__channel_register(child, a->init, a->arg, NULL);
    rill_channel_release(child);
}
