/* The RPC client handler: request ids, a loop-local table of calls in
 * flight, deadlines on loop timers, cancel frames, and failing every call
 * when the connection goes. Calls from other threads hop to the loop as
 * tasks embedded in the call (no allocation per hop).
 *
 * Flushes are consolidated per read batch, as on the server: frames
 * written while the handler is inside a read batch (calls started from
 * completions of the responses it read, PONGs) are flushed once at
 * read_complete; frames written outside one (calls from other threads or
 * timers, CANCELs from deadlines) flush at once. A close, an exception or
 * the handler's removal inside a batch flushes first. */
#include "rill/rpc_client.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/pipeline.h"
#include "rill/rpc_status.h"
#include "rill/timer.h"
#include "rpc/rpc_internal.h"

struct client;

struct rill_rpc_call {
    atomic_uint refs;
    struct rill_channel *ch;    /* owned reference */
    struct rill_promise *p;     /* owned reference */
    struct rill_rpc_frame *req; /* until written */
    uint64_t timeout_ns;
    void *user;
    bool idempotent;
    /* Loop-only state. */
    uint64_t id;
    struct client *cl; /* while in the table */
    struct rill_rpc_call *hnext;
    struct rill_timer *timer;
    uint64_t start_ns; /* loop clock when the handler took it */
    /* Outcome: written on the loop before the future completes. */
    int status;
    char *status_msg;
    struct rill_rpc_frame *resp; /* metadata of the response */
    struct rill_task start_task, cancel_task;
    atomic_bool cancel_posted;
};

struct client {
    struct rill_rpc_client_opts o;
    struct rill_ctx *ctx;
    struct rill_rpc_call **buckets;
    uint32_t nbuckets, count;
    uint64_t next_id;
    bool closed;
    bool in_batch, flush_pending; /* inside a read batch; a write there awaits its flush */
    int goaway_status;
    char goaway_msg[160];
    /* Metrics, loop-only (the histogram's atomics are not needed here). */
    uint64_t started, completed, other_status;
    uint64_t by_status[RILL_RPC_STATUS_COUNT];
    struct rill__rpc_hist lat;
};

static const struct rill_attr_key client_key = { "rpc-client", NULL };

void rill_rpc_call_opts_init(struct rill_rpc_call_opts *o)
{
    *o = (struct rill_rpc_call_opts){ 0 };
}

void rill_rpc_client_opts_init(struct rill_rpc_client_opts *o)
{
    *o = (struct rill_rpc_client_opts){ .max_frame = RILL_RPC_MAX_FRAME_DEFAULT };
}

/* ---- the call object ---- */

struct rill_rpc_call *rill_rpc_call_retain(struct rill_rpc_call *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void rill_rpc_call_release(struct rill_rpc_call *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->req)
        rill_rpc_frame_release(c->req);
    if (c->resp)
        rill_rpc_frame_release(c->resp);
    free(c->status_msg);
    rill_promise_release(c->p);
    rill_channel_release(c->ch);
    free(c);
}

struct rill_promise *rill_rpc_call_future(struct rill_rpc_call *c)
{
    return c->p;
}

int rill_rpc_call_wait(struct rill_rpc_call *c, int64_t timeout_ns)
{
    return rill_promise_wait(c->p, timeout_ns);
}

int rill_rpc_call_status(const struct rill_rpc_call *c)
{
    return rill_promise_is_done(c->p) ? c->status : -EINPROGRESS;
}

const char *rill_rpc_call_status_msg(const struct rill_rpc_call *c)
{
    return rill_promise_is_done(c->p) ? c->status_msg : NULL;
}

struct rill_buf *rill_rpc_call_response(struct rill_rpc_call *c)
{
    void *v = NULL;
    if (rill_promise_result(c->p, &v) != 0 || !v)
        return NULL;
    return rill_buf_retain(v);
}

const struct rill_rpc_md *rill_rpc_call_response_md(const struct rill_rpc_call *c, const char *key)
{
    if (!rill_promise_is_done(c->p) || !c->resp)
        return NULL;
    return rill_rpc_frame_md(c->resp, key);
}

uint64_t rill_rpc_call_id(const struct rill_rpc_call *c)
{
    return c->id;
}

void *rill_rpc_call_user(const struct rill_rpc_call *c)
{
    return c->user;
}

struct rill_channel *rill_rpc_call_channel(const struct rill_rpc_call *c)
{
    return c->ch;
}

/* ---- the table of calls in flight (loop-local) ---- */

static uint32_t slot(const struct client *cl, uint64_t id)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (cl->nbuckets - 1);
}

static int table_put(struct client *cl, struct rill_rpc_call *c)
{
    if (cl->count + 1 > cl->nbuckets) {
        uint32_t nb = cl->nbuckets ? cl->nbuckets * 2 : 64;
        struct rill_rpc_call **b = calloc(nb, sizeof(*b));
        if (!b)
            return -ENOMEM;
        struct rill_rpc_call **old = cl->buckets;
        uint32_t on = cl->nbuckets;
        cl->buckets = b;
        cl->nbuckets = nb;
        for (uint32_t i = 0; i < on; i++) {
            for (struct rill_rpc_call *x = old[i], *next; x; x = next) {
                next = x->hnext;
                uint32_t s = slot(cl, x->id);
                x->hnext = b[s];
                b[s] = x;
            }
        }
        free(old);
    }
    uint32_t s = slot(cl, c->id);
    c->hnext = cl->buckets[s];
    cl->buckets[s] = c;
    c->cl = cl;
    cl->count++;
    return 0;
}

static struct rill_rpc_call *table_take(struct client *cl, uint64_t id)
{
    if (!cl->nbuckets)
        return NULL;
    for (struct rill_rpc_call **pp = &cl->buckets[slot(cl, id)]; *pp; pp = &(*pp)->hnext) {
        struct rill_rpc_call *c = *pp;
        if (c->id == id) {
            *pp = c->hnext;
            c->hnext = NULL;
            c->cl = NULL;
            cl->count--;
            return c;
        }
    }
    return NULL;
}

/* ---- completion (loop) ---- */

static void free_payload(void *v)
{
    rill_buf_release(v);
}

/* End @c with @status: set the outcome, complete the future, count it in
 * @cl's metrics (NULL: the call never reached a client handler). Takes
 * ownership of @resp (may be NULL). The call must be out of the table;
 * the caller still drops the table's reference. */
static void complete(struct client *cl, struct rill_rpc_call *c, int status, const char *msg,
                     struct rill_rpc_frame *resp)
{
    if (cl) {
        cl->completed++;
        if (status >= 0 && status < RILL_RPC_STATUS_COUNT)
            cl->by_status[status]++;
        else
            cl->other_status++;
        rill__rpc_hist_record(&cl->lat, rill_loop_now(rill_channel_loop(c->ch)) - c->start_ns);
    }
    if (c->timer) {
        rill_timer_cancel(c->timer);
        rill_timer_release(c->timer);
        c->timer = NULL;
    }
    c->status = status;
    if (msg && *msg)
        c->status_msg = strdup(msg);
    struct rill_buf *payload = resp ? rill_rpc_frame_take_payload(resp) : NULL;
    c->resp = resp;
    if (status == RILL_RPC_OK) {
        rill_promise_succeed(c->p, payload, payload ? free_payload : NULL);
    } else {
        if (payload)
            rill_buf_release(payload);
        rill_promise_fail(c->p, rill_rpc_status_to_err(status));
    }
}

/* Write @msg: flushed at once, or at the end of the running read batch. */
static void client_write(struct client *cl, struct rill_msg *msg)
{
    if (cl->in_batch) {
        cl->flush_pending = true;
        rill_ctx_write(cl->ctx, msg, NULL);
    } else {
        rill_ctx_write_and_flush(cl->ctx, msg, NULL);
    }
}

static void client_flush_pending(struct client *cl)
{
    if (cl->flush_pending) {
        cl->flush_pending = false;
        rill_ctx_flush(cl->ctx);
    }
}

static void fail_now(struct client *cl, struct rill_rpc_call *c, int status, const char *msg)
{
    complete(cl, c, status, msg, NULL);
}

static void send_cancel(struct client *cl, uint64_t id)
{
    struct rill_rpc_frame *f;
    if (!cl->closed && rill_rpc_frame_new(RILL_RPC_CANCEL, id, &f) == 0)
        client_write(cl, &f->msg);
}

static void fail_all(struct client *cl, int status, const char *msg)
{
    for (uint32_t i = 0; i < cl->nbuckets; i++) {
        struct rill_rpc_call *c;
        while ((c = cl->buckets[i]) != NULL) {
            table_take(cl, c->id);
            fail_now(cl, c, status, msg);
            rill_rpc_call_release(c); /* the table's reference */
        }
    }
}

static void deadline_passed(struct rill_timer *t, void *arg)
{
    struct rill_rpc_call *c = arg;
    struct client *cl = c->cl;
    if (!cl)
        return;
    table_take(cl, c->id);
    send_cancel(cl, c->id);
    char msg[96];
    snprintf(msg, sizeof(msg), "deadline of %llu us exceeded",
             (unsigned long long)(c->timeout_ns / 1000));
    fail_now(cl, c, RILL_RPC_DEADLINE_EXCEEDED, msg);
    rill_rpc_call_release(c);
}

/* ---- starting (loop) ---- */

static void start_on_loop(void *arg)
{
    struct rill_rpc_call *c = arg; /* holds the task's reference */
    struct client *cl = rill_channel_attr_get(c->ch, &client_key);
    if (cl) {
        cl->started++;
        c->start_ns = rill_loop_now(rill_channel_loop(c->ch));
    }
    if (!cl || cl->closed) {
        fail_now(cl, c, RILL_RPC_UNAVAILABLE,
                 cl ? "connection closed" : "the channel has no rpc client handler");
        rill_rpc_call_release(c);
        return;
    }
    if (atomic_load_explicit(&c->cancel_posted, memory_order_acquire)) {
        fail_now(cl, c, RILL_RPC_CANCELLED, "cancelled before it was sent");
        rill_rpc_call_release(c);
        return;
    }
    /* Exact: the names count only when the codec will send them (the pair
     * is not interned yet); with no rpc codec found they always count. */
    int interned = rill__rpc_codec_interned(c->ch, c->req->service, c->req->method);
    size_t size = rill__rpc_wire_size(c->req, interned != 1);
    if (size > cl->o.max_frame) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request of %zu bytes exceeds the frame limit of %zu", size,
                 cl->o.max_frame);
        fail_now(cl, c, RILL_RPC_RESOURCE_EXHAUSTED, msg);
        rill_rpc_call_release(c);
        return;
    }
    c->id = cl->next_id++;
    c->req->id = c->id;
    uint64_t timeout = c->timeout_ns ? c->timeout_ns : cl->o.default_timeout_ns;
    c->timeout_ns = timeout;
    c->req->deadline_ns = timeout;
    if (table_put(cl, c) != 0) {
        fail_now(cl, c, RILL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        rill_rpc_call_release(c);
        return;
    }
    /* The task's reference is now the table's. */
    if (timeout && rill_timer_schedule(rill_channel_loop(c->ch), timeout, 0, RILL_TIMER_ONCE,
                                       deadline_passed, c, &c->timer) != 0)
        c->timer = NULL; /* the loop is terminating: the connection goes with it */
    struct rill_rpc_frame *f = c->req;
    c->req = NULL;
    client_write(cl, &f->msg);
}

static void cancel_on_loop(void *arg)
{
    struct rill_rpc_call *c = arg;
    struct client *cl = c->cl;
    if (cl && table_take(cl, c->id) == c) {
        send_cancel(cl, c->id);
        fail_now(cl, c, RILL_RPC_CANCELLED, "cancelled by the caller");
        rill_rpc_call_release(c); /* the table's */
    }
    rill_rpc_call_release(c); /* the task's */
}

int rill_rpc_call_cancel(struct rill_rpc_call *c)
{
    if (rill_promise_is_done(c->p) || atomic_exchange(&c->cancel_posted, true))
        return -EALREADY;
    struct rill_loop *loop = rill_channel_loop(c->ch);
    rill_rpc_call_retain(c);
    if (rill_loop_in_thread(loop)) {
        cancel_on_loop(c);
        return 0;
    }
    rill_task_init(&c->cancel_task, cancel_on_loop, c);
    if (rill_loop_post(loop, &c->cancel_task) != 0)
        rill_rpc_call_release(c);
    return 0;
}

int rill_rpc_call_start(struct rill_channel *ch, const char *service, const char *method,
                        struct rill_buf *req, const struct rill_rpc_call_opts *opts,
                        struct rill_rpc_call **out)
{
    struct rill_rpc_call_opts defaults;
    if (!opts) {
        rill_rpc_call_opts_init(&defaults);
        opts = &defaults;
    }
    struct rill_rpc_call *c = calloc(1, sizeof(*c));
    struct rill_rpc_frame *f = NULL;
    int rc = c ? rill_rpc_frame_new(RILL_RPC_REQUEST, 0, &f) : -ENOMEM;
    rc = rc ? rc : rill_rpc_frame_set_names(f, service, method);
    for (uint16_t i = 0; rc == 0 && i < opts->nmd; i++)
        rc = rill_rpc_frame_add_md(f, opts->md[i].key, opts->md[i].val, opts->md[i].val_len);
    if (rc == 0)
        rc = rill_promise_new(rill_channel_loop(ch), &c->p);
    if (rc) {
        if (f)
            rill_rpc_frame_release(f);
        if (req)
            rill_buf_release(req);
        free(c);
        return rc;
    }
    rill_rpc_frame_set_payload(f, req);
    atomic_init(&c->refs, 2); /* the caller's and the start task's */
    c->ch = rill_channel_retain(ch);
    c->req = f;
    c->timeout_ns = opts->timeout_ns;
    c->user = opts->user;
    c->idempotent = opts->idempotent;
    *out = c;
    struct rill_loop *loop = rill_channel_loop(ch);
    if (rill_loop_in_thread(loop)) {
        start_on_loop(c);
        return 0;
    }
    rill_task_init(&c->start_task, start_on_loop, c);
    if (rill_loop_post(loop, &c->start_task) != 0) {
        c->status = RILL_RPC_UNAVAILABLE;
        c->status_msg = strdup("the channel's loop has terminated");
        rill_promise_fail(c->p, RILL_EUNAVAILABLE);
        rill_rpc_call_release(c);
    }
    return 0;
}

int rill_rpc_call_sync(struct rill_channel *ch, const char *service, const char *method,
                       struct rill_buf *req, const struct rill_rpc_call_opts *opts, int64_t wait_ns,
                       struct rill_rpc_call **out)
{
    if (rill_loop_in_thread(rill_channel_loop(ch))) {
        if (req)
            rill_buf_release(req);
        return -EDEADLK;
    }
    int rc = rill_rpc_call_start(ch, service, method, req, opts, out);
    return rc ? rc : rill_rpc_call_wait(*out, wait_ns);
}

size_t rill_rpc_client_in_flight(struct rill_channel *ch)
{
    struct client *cl = rill_channel_attr_get(ch, &client_key);
    return cl ? cl->count : 0;
}

int rill_rpc_client_stats(struct rill_channel *ch, struct rill_rpc_client_stats *out)
{
    struct client *cl = rill_channel_attr_get(ch, &client_key);
    if (!cl)
        return -ENOENT;
    *out = (struct rill_rpc_client_stats){
        .started = cl->started,
        .completed = cl->completed,
        .other_status = cl->other_status,
        .errors = cl->completed - cl->by_status[RILL_RPC_OK],
        .in_flight = cl->count,
    };
    memcpy(out->by_status, cl->by_status, sizeof(out->by_status));
    rill__rpc_hist_read(&cl->lat, &out->p50_ns, &out->p99_ns, &out->max_ns);
    if (rill__rpc_codec_bytes(ch, &out->bytes_in, &out->bytes_out) != 0)
        out->bytes_in = out->bytes_out = 0;
    return 0;
}

/* ---- the handler ---- */

static int client_added(struct rill_ctx *ctx)
{
    struct client *cl = rill_ctx_state(ctx);
    const struct rill_rpc_client_opts *o = rill_ctx_arg(ctx);
    if (o)
        cl->o = *o;
    else
        rill_rpc_client_opts_init(&cl->o);
    if (cl->o.max_frame == 0)
        cl->o.max_frame = RILL_RPC_MAX_FRAME_DEFAULT;
    cl->ctx = ctx;
    cl->next_id = 1;
    struct rill_channel *ch = rill_ctx_channel(ctx);
    if (rill_channel_attr_get(ch, &client_key))
        return -EEXIST; /* one client handler per channel */
    return rill_channel_attr_set(ch, &client_key, cl);
}

static const char *closed_msg(struct client *cl)
{
    return cl->goaway_msg[0] ? cl->goaway_msg : "connection closed";
}

static void client_removed(struct rill_ctx *ctx)
{
    struct client *cl = rill_ctx_state(ctx);
    /* Removed inside a batch: its read_complete will not come here. */
    cl->in_batch = false;
    if (!cl->closed)
        client_flush_pending(cl);
    bool was_closed = cl->closed;
    cl->closed = true;
    fail_all(cl, was_closed && cl->goaway_status ? cl->goaway_status : RILL_RPC_UNAVAILABLE,
             was_closed ? closed_msg(cl) : "the rpc client handler was removed");
    free(cl->buckets);
    cl->buckets = NULL;
    cl->nbuckets = 0;
    struct rill_channel *ch = rill_ctx_channel(ctx);
    if (rill_channel_attr_get(ch, &client_key) == cl)
        rill_channel_attr_remove(ch, &client_key);
}

static void client_inactive(struct rill_ctx *ctx)
{
    struct client *cl = rill_ctx_state(ctx);
    cl->in_batch = cl->flush_pending = false;
    cl->closed = true;
    fail_all(cl, cl->goaway_status ? cl->goaway_status : RILL_RPC_UNAVAILABLE, closed_msg(cl));
    rill_ctx_fire_inactive(ctx);
}

static void client_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct client *cl = rill_ctx_state(ctx);
    cl->in_batch = true;
    struct rill_rpc_frame *f = rill_rpc_frame_from_msg(msg);
    if (!f) {
        rill_ctx_fire_read(ctx, msg);
        return;
    }
    switch (f->type) {
    case RILL_RPC_RESPONSE: {
        struct rill_rpc_call *c = table_take(cl, f->id);
        if (!c) { /* ended already (deadline, cancel): drop */
            rill_rpc_frame_release(f);
            return;
        }
        complete(cl, c, f->status, f->status_msg, f);
        rill_rpc_call_release(c);
        return;
    }
    case RILL_RPC_GOAWAY:
        cl->goaway_status = f->status ? f->status : RILL_RPC_UNAVAILABLE;
        snprintf(cl->goaway_msg, sizeof(cl->goaway_msg), "server sent GOAWAY (%s): %s",
                 rill_rpc_status_name(f->status), f->status_msg ? f->status_msg : "");
        cl->closed = true;
        fail_all(cl, cl->goaway_status, cl->goaway_msg);
        rill_rpc_frame_release(f);
        rill_channel_close(rill_ctx_channel(ctx), NULL); /* through client_close */
        return;
    case RILL_RPC_PING: {
        struct rill_rpc_frame *pong;
        if (rill_rpc_frame_new(RILL_RPC_PONG, f->id, &pong) == 0) {
            rill_rpc_frame_set_payload(pong, rill_rpc_frame_take_payload(f));
            client_write(cl, &pong->msg);
        }
        rill_rpc_frame_release(f);
        return;
    }
    default: /* PONG (a heartbeat handler's), requests from a peer that serves */
        rill_ctx_fire_read(ctx, msg);
        return;
    }
}

/* The end of a read batch: one flush for every frame it wrote, before the
 * handlers after this one hear of it (what they write goes out by itself). */
static void client_read_complete(struct rill_ctx *ctx)
{
    struct client *cl = rill_ctx_state(ctx);
    cl->in_batch = false;
    client_flush_pending(cl);
    rill_ctx_fire_read_complete(ctx);
}

/* A close would fail what is written but not flushed: flush it first. */
static void client_close(struct rill_ctx *ctx, struct rill_promise *p)
{
    client_flush_pending(rill_ctx_state(ctx));
    rill_ctx_close(ctx, p);
}

static void client_disconnect(struct rill_ctx *ctx, struct rill_promise *p)
{
    client_flush_pending(rill_ctx_state(ctx));
    rill_ctx_disconnect(ctx, p);
}

static void client_exception(struct rill_ctx *ctx, int err, const char *why)
{
    client_flush_pending(rill_ctx_state(ctx));
    rill_ctx_fire_exception(ctx, err, why);
}

const struct rill_handler rill_rpc_client_handler = {
    .name = "rpc-client",
    .ctx_size = sizeof(struct client),
    .added = client_added,
    .removed = client_removed,
    .read = client_read,
    .read_complete = client_read_complete,
    .exception = client_exception,
    .inactive = client_inactive,
    .disconnect = client_disconnect,
    .close = client_close,
};

int rill_rpc_client_install(struct rill_pipeline *pl, const struct rill_rpc_codec_opts *codec,
                            const struct rill_rpc_client_opts *client)
{
    struct rill_rpc_codec_opts co;
    if (!codec) {
        rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_CLIENT);
        codec = &co;
    }
    int rc = rill_pipeline_add_last(pl, "rpc-codec", &rill_rpc_codec_handler, (void *)codec);
    if (rc)
        return rc;
    rc = rill_pipeline_add_last(pl, "rpc-client", &rill_rpc_client_handler, (void *)client);
    if (rc)
        rill_pipeline_remove(pl, "rpc-codec");
    return rc;
}
