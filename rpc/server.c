/* The RPC server handler: preamble and auth, connection cap, idle close,
 * request dispatch (inline on the loop or through the bounded call queue
 * to the handler threads), cancel marking, answers from any thread sent
 * back through the connection's loop, and responses for closed
 * connections dropped.
 *
 * Flushes are consolidated per read batch (Netty's
 * FlushConsolidationHandler, done here): a frame written between the first
 * read and read_complete is only written, and read_complete flushes once,
 * so N pipelined requests answered inline leave in one send. Frames written
 * outside a batch (answers arriving from handler threads as tasks, idle
 * GOAWAYs) flush at once. A close, an exception or the handler's removal
 * inside a batch flushes first, so nothing written waits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/log.h"
#include "rill/loop.h"
#include "rill/pipeline.h"
#include "rill/timer.h"
#include "rpc/rpc_internal.h"
#include "rpc/server_internal.h"

/* One connection, shared by its handler context and its calls (which may
 * outlive the context on handler threads). */
struct conn {
    atomic_uint refs;
    struct rill_rpc_server *srv;
    struct rill_channel *ch;
    struct rill_loop *loop;
    /* Loop-only below. */
    struct rill_ctx *ctx; /* NULL once closed */
    bool counted, refused;
    bool in_batch, flush_pending;          /* inside a read batch; a write there awaits its flush */
    struct rill_rpc_server_call **buckets; /* calls in flight by id */
    uint32_t nbuckets, count;
    struct rill_timer *idle;
    uint64_t last_active;
    struct rill_list link; /* in srv->open_conns while listed (under srv->conns_lock) */
    bool listed;
    struct rill_task goaway_task; /* posted once, by rill_rpc_server_free */
};

struct rill_rpc_server_call {
    struct conn *conn;          /* reference */
    struct rill__rpc_method *m; /* reference */
    struct rill_rpc_frame *req; /* names, metadata, payload */
    uint64_t id;
    uint64_t start_ns, deadline_at; /* monotonic; deadline 0: none */
    atomic_bool cancelled, answered;
    /* The answer: set once, by the answering thread, before the hop. */
    int status;
    char *msg;
    struct rill_buf *resp;
    struct rill_rpc_frame *resp_md; /* metadata added before answering */
    bool in_table;
    struct rill_rpc_server_call *hnext;
    struct rill_list qnode;
    struct rill_task task;
};

struct server_ctx {
    struct conn *c;
};

static uint64_t now_ns(void)
{
    return rill_clock_now_ns();
}

/* ---- server object ---- */

void rill_rpc_server_opts_init(struct rill_rpc_server_opts *o)
{
    *o = (struct rill_rpc_server_opts){ .handler_threads = 4,
                                        .queue_capacity = 1024,
                                        .max_frame = RILL_RPC_MAX_FRAME_DEFAULT };
}

void rill__rpc_server_retain(struct rill_rpc_server *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void rill__rpc_server_release(struct rill_rpc_server *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    rill__rpc_registry_destroy(s);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->conns_lock);
    free(s->threads);
    free(s);
}

static void *handler_thread(void *arg);

int rill_rpc_server_new(const struct rill_rpc_server_opts *o, struct rill_rpc_server **out)
{
    struct rill_rpc_server_opts d;
    if (!o) {
        rill_rpc_server_opts_init(&d);
        o = &d;
    }
    if (o->handler_threads < 0 || o->handler_threads > 1024 ||
        (o->max_frame && (o->max_frame < RILL_RPC_MAX_FRAME_MIN || o->max_frame > UINT32_MAX)))
        return -EINVAL;
    struct rill_rpc_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->o = *o;
    if (!s->o.handler_threads)
        s->o.handler_threads = 4;
    if (!s->o.queue_capacity)
        s->o.queue_capacity = 1024;
    if (!s->o.max_frame)
        s->o.max_frame = RILL_RPC_MAX_FRAME_DEFAULT;
    atomic_init(&s->refs, 1);
    rill_list_init(&s->queue);
    rill_list_init(&s->open_conns);
    pthread_mutex_init(&s->qlock, NULL);
    pthread_mutex_init(&s->conns_lock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    int rc = rill__rpc_registry_init(s);
    s->threads = calloc((size_t)s->o.handler_threads, sizeof(pthread_t));
    if (rc || !s->threads) {
        rill__rpc_server_release(s);
        return rc ? rc : -ENOMEM;
    }
    for (int i = 0; i < s->o.handler_threads; i++) {
        rc = -pthread_create(&s->threads[i], NULL, handler_thread, s);
        if (rc) {
            rill_rpc_server_free(s);
            return rc;
        }
        s->nthreads++;
    }
    *out = s;
    return 0;
}

/* ---- answering ---- */

static void conn_release(struct conn *c);

static void call_free(struct rill_rpc_server_call *call)
{
    if (call->req)
        rill_rpc_frame_release(call->req);
    if (call->resp)
        rill_buf_release(call->resp);
    if (call->resp_md)
        rill_rpc_frame_release(call->resp_md);
    free(call->msg);
    rill__rpc_method_put(call->m);
    conn_release(call->conn);
    free(call);
}

static uint32_t slot(const struct conn *c, uint64_t id)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (c->nbuckets - 1);
}

static int table_put(struct conn *c, struct rill_rpc_server_call *call)
{
    if (c->count + 1 > c->nbuckets) {
        uint32_t nb = c->nbuckets ? c->nbuckets * 2 : 32;
        struct rill_rpc_server_call **b = calloc(nb, sizeof(*b));
        if (!b)
            return -ENOMEM;
        struct rill_rpc_server_call **old = c->buckets;
        uint32_t on = c->nbuckets;
        c->buckets = b;
        c->nbuckets = nb;
        for (uint32_t i = 0; i < on; i++) {
            for (struct rill_rpc_server_call *x = old[i], *next; x; x = next) {
                next = x->hnext;
                uint32_t s = slot(c, x->id);
                x->hnext = b[s];
                b[s] = x;
            }
        }
        free(old);
    }
    uint32_t s = slot(c, call->id);
    call->hnext = c->buckets[s];
    c->buckets[s] = call;
    call->in_table = true;
    c->count++;
    return 0;
}

static struct rill_rpc_server_call *table_find(struct conn *c, uint64_t id)
{
    if (!c->nbuckets)
        return NULL;
    for (struct rill_rpc_server_call *x = c->buckets[slot(c, id)]; x; x = x->hnext)
        if (x->id == id)
            return x;
    return NULL;
}

static void table_remove(struct conn *c, struct rill_rpc_server_call *call)
{
    if (!call->in_table)
        return;
    for (struct rill_rpc_server_call **pp = &c->buckets[slot(c, call->id)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == call) {
            *pp = call->hnext;
            call->in_table = false;
            c->count--;
            return;
        }
    }
}

static void touch(struct conn *c)
{
    c->last_active = rill_loop_now(c->loop);
}

/* Write @msg from the connection's context: flushed at once, or at the end
 * of the read batch it was written in. */
static void conn_write(struct conn *c, struct rill_msg *msg)
{
    if (c->in_batch) {
        c->flush_pending = true;
        rill_ctx_write(c->ctx, msg, NULL);
    } else {
        rill_ctx_write_and_flush(c->ctx, msg, NULL);
    }
}

/* Flush what the running read batch wrote, if anything. */
static void conn_flush_pending(struct conn *c)
{
    if (c->flush_pending) {
        c->flush_pending = false;
        if (c->ctx)
            rill_ctx_flush(c->ctx);
    }
}

/* Write a response for request @id from the connection's context. */
static void send_response(struct conn *c, uint64_t id, int status, const char *msg,
                          struct rill_buf *payload, struct rill_rpc_frame *md_from)
{
    struct rill_rpc_frame *f;
    if (rill_rpc_frame_new(RILL_RPC_RESPONSE, id, &f) != 0) {
        if (payload)
            rill_buf_release(payload);
        return;
    }
    rill_rpc_frame_set_status(f, status, msg);
    if (md_from) {
        f->md = md_from->md;
        f->nmd = md_from->nmd;
        md_from->md = NULL;
        md_from->nmd = 0;
    }
    rill_rpc_frame_set_payload(f, payload);
    size_t size = rill_rpc_frame_wire_size(f);
    if (size > c->srv->o.max_frame) {
        char why[128];
        snprintf(why, sizeof(why), "response of %zu bytes exceeds the frame limit of %zu", size,
                 c->srv->o.max_frame);
        rill_rpc_frame_set_payload(f, NULL);
        rill_rpc_frame_set_status(f, RILL_RPC_RESOURCE_EXHAUSTED, why);
    }
    touch(c);
    conn_write(c, &f->msg);
}

/* On the connection's loop: the call has its answer. */
static void finish_on_loop(void *arg)
{
    struct rill_rpc_server_call *call = arg;
    struct conn *c = call->conn;
    struct rill_rpc_server *s = c->srv;
    table_remove(c, call);
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    rill__rpc_mstats_record(&call->m->st, call->status, now_ns() - call->start_ns);
    if (!c->ctx) { /* closed: Hadoop's purge */
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    } else {
        struct rill_buf *resp = call->resp;
        call->resp = NULL;
        send_response(c, call->id, call->status, call->msg, resp, call->resp_md);
    }
    call_free(call);
}

static int answer(struct rill_rpc_server_call *call, int status, const char *msg,
                  struct rill_buf *resp)
{
    if (atomic_exchange(&call->answered, true)) {
        if (resp)
            rill_buf_release(resp);
        return -EALREADY;
    }
    call->status = status;
    call->msg = msg && *msg ? strdup(msg) : NULL;
    call->resp = resp;
    struct rill_loop *loop = call->conn->loop;
    if (rill_loop_in_thread(loop)) {
        finish_on_loop(call);
        return 0;
    }
    rill_task_init(&call->task, finish_on_loop, call);
    if (rill_loop_post(loop, &call->task) != 0) {
        /* The loop is gone and the connection with it. */
        atomic_fetch_sub_explicit(&call->conn->srv->in_flight, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&call->conn->srv->dropped, 1, memory_order_relaxed);
        call_free(call);
    }
    return 0;
}

int rill_rpc_server_call_reply(struct rill_rpc_server_call *c, struct rill_buf *resp)
{
    return answer(c, RILL_RPC_OK, NULL, resp);
}

int rill_rpc_server_call_fail(struct rill_rpc_server_call *c, int status, const char *msg)
{
    if (status <= 0 || status > 65535) {
        char why[64];
        snprintf(why, sizeof(why), "method answered with an invalid status %d", status);
        answer(c, RILL_RPC_INTERNAL, why, NULL);
        return -EINVAL;
    }
    return answer(c, status, msg, NULL);
}

int rill_rpc_server_call_add_md(struct rill_rpc_server_call *c, const char *key, const void *val,
                                uint32_t val_len)
{
    if (!c->resp_md) {
        int rc = rill_rpc_frame_new(RILL_RPC_RESPONSE, c->id, &c->resp_md);
        if (rc)
            return rc;
    }
    return rill_rpc_frame_add_md(c->resp_md, key, val, val_len);
}

/* ---- accessors ---- */

const char *rill_rpc_server_call_service(const struct rill_rpc_server_call *c)
{
    return c->req->service;
}

const char *rill_rpc_server_call_method(const struct rill_rpc_server_call *c)
{
    return c->req->method;
}

uint64_t rill_rpc_server_call_id(const struct rill_rpc_server_call *c)
{
    return c->id;
}

struct rill_buf *rill_rpc_server_call_payload(struct rill_rpc_server_call *c)
{
    return c->req->payload;
}

const struct rill_rpc_md *rill_rpc_server_call_md(const struct rill_rpc_server_call *c,
                                                  const char *key)
{
    return rill_rpc_frame_md(c->req, key);
}

struct rill_channel *rill_rpc_server_call_channel(const struct rill_rpc_server_call *c)
{
    return c->conn->ch;
}

bool rill_rpc_server_call_is_cancelled(const struct rill_rpc_server_call *c)
{
    return atomic_load_explicit(&c->cancelled, memory_order_acquire);
}

int64_t rill_rpc_server_call_remaining_ns(const struct rill_rpc_server_call *c)
{
    if (!c->deadline_at)
        return INT64_MAX;
    return (int64_t)(c->deadline_at - now_ns());
}

/* ---- running a call ---- */

/* Run @call's method unless its turn came too late. */
static void run_call(struct rill_rpc_server_call *call)
{
    struct rill__rpc_method *m = call->m;
    if (atomic_load_explicit(&call->cancelled, memory_order_acquire)) {
        atomic_fetch_add_explicit(&m->st.cancelled, 1, memory_order_relaxed);
        answer(call, RILL_RPC_CANCELLED, "cancelled by the client before it ran", NULL);
        return;
    }
    if (call->deadline_at && now_ns() >= call->deadline_at) {
        atomic_fetch_add_explicit(&m->st.expired, 1, memory_order_relaxed);
        answer(call, RILL_RPC_DEADLINE_EXCEEDED, "deadline passed before the call ran", NULL);
        return;
    }
    m->fn(call, m->arg);
}

static void *handler_thread(void *arg)
{
    struct rill_rpc_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->qlock);
        while (rill_list_empty(&s->queue) && !s->stop)
            pthread_cond_wait(&s->qcond, &s->qlock);
        if (s->stop) {
            pthread_mutex_unlock(&s->qlock);
            return NULL;
        }
        struct rill_list *n = s->queue.next;
        rill_list_remove(n);
        pthread_mutex_unlock(&s->qlock);
        atomic_fetch_sub_explicit(&s->qlen, 1, memory_order_relaxed);
        run_call(rill_container_of(n, struct rill_rpc_server_call, qnode));
    }
}

/* Queue @call for the pool; false when the queue is full. */
static bool enqueue(struct rill_rpc_server *s, struct rill_rpc_server_call *call)
{
    pthread_mutex_lock(&s->qlock);
    bool ok = !s->stop && atomic_load(&s->qlen) < s->o.queue_capacity;
    if (ok) {
        atomic_fetch_add_explicit(&s->qlen, 1, memory_order_relaxed);
        rill_list_push_back(&s->queue, &call->qnode);
        pthread_cond_signal(&s->qcond);
    }
    pthread_mutex_unlock(&s->qlock);
    return ok;
}

/* ---- the connection ---- */

static void conn_release(struct conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(c->buckets);
    rill_channel_release(c->ch);
    rill__rpc_server_release(c->srv);
    free(c);
}

static void dispatch(struct conn *c, struct rill_rpc_frame *f)
{
    struct rill_rpc_server *s = c->srv;
    atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
    if (atomic_load(&s->shut)) {
        send_response(c, f->id, RILL_RPC_UNAVAILABLE, "server shutting down", NULL, NULL);
        rill_rpc_frame_release(f);
        return;
    }
    struct rill__rpc_method *m = rill__rpc_method_get(s, f->service, f->method);
    if (!m) {
        char why[RILL_RPC_NAME_MAX * 2 + 64];
        snprintf(why, sizeof(why), "unknown method %s/%s", f->service, f->method);
        atomic_fetch_add_explicit(&s->unimpl, 1, memory_order_relaxed);
        send_response(c, f->id,
                      atomic_load(&s->shut) ? RILL_RPC_UNAVAILABLE : RILL_RPC_UNIMPLEMENTED, why,
                      NULL, NULL);
        rill_rpc_frame_release(f);
        return;
    }
    struct rill_rpc_server_call *call = calloc(1, sizeof(*call));
    if (call) {
        call->id = f->id;
        if (table_put(c, call) != 0) {
            free(call);
            call = NULL;
        }
    }
    if (!call) {
        rill__rpc_method_put(m);
        send_response(c, f->id, RILL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, NULL);
        rill_rpc_frame_release(f);
        return;
    }
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    call->conn = c;
    call->m = m;
    call->req = f;
    call->start_ns = now_ns();
    if (f->deadline_ns)
        call->deadline_at = call->start_ns + f->deadline_ns;
    atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
    if (m->mode == RILL_RPC_INLINE) {
        run_call(call);
        return;
    }
    if (!enqueue(s, call)) {
        char why[64];
        snprintf(why, sizeof(why), "call queue full (%zu calls)", s->o.queue_capacity);
        atomic_fetch_add_explicit(&m->st.busy, 1, memory_order_relaxed);
        answer(call, RILL_RPC_BUSY, why, NULL);
    }
}

static void cancel(struct conn *c, uint64_t id)
{
    struct rill_rpc_server_call *call = table_find(c, id);
    if (call)
        atomic_store_explicit(&call->cancelled, true, memory_order_release);
}

static void idle_check(struct rill_timer *t, void *arg)
{
    struct conn *c = arg;
    if (!c->ctx || c->count)
        return;
    uint64_t idle = rill_loop_now(c->loop) - c->last_active;
    if (idle >= c->srv->o.idle_timeout_ns) {
        char why[80];
        snprintf(why, sizeof(why), "idle for %llu ms", (unsigned long long)(idle / 1000000));
        rill_rpc_goaway_and_close(c->ctx, RILL_RPC_UNAVAILABLE, why, RILL_ECLOSED);
    }
}

static void preamble(struct conn *c, struct rill_rpc_preamble *p)
{
    struct rill_rpc_server *s = c->srv;
    if (!s->o.auth)
        return;
    char reason[160] = "";
    int st = s->o.auth(c->ch, p, s->o.auth_arg, reason, sizeof(reason));
    if (st == RILL_RPC_OK)
        return;
    c->refused = true;
    atomic_fetch_add_explicit(&s->conns_refused, 1, memory_order_relaxed);
    if (st < 0 || st > 65535)
        st = RILL_RPC_UNAUTHENTICATED;
    rill_rpc_goaway_and_close(c->ctx, st, reason[0] ? reason : "refused by the auth hook", -EACCES);
}

static void server_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct conn *c = ((struct server_ctx *)rill_ctx_state(ctx))->c;
    if (c->refused || !c->ctx) {
        rill_msg_release(msg);
        return;
    }
    c->in_batch = true;
    struct rill_rpc_preamble *p = rill_rpc_preamble_from_msg(msg);
    if (p) {
        touch(c);
        preamble(c, p);
        rill_msg_release(msg);
        return;
    }
    struct rill_rpc_frame *f = rill_rpc_frame_from_msg(msg);
    if (!f) {
        rill_ctx_fire_read(ctx, msg);
        return;
    }
    touch(c);
    switch (f->type) {
    case RILL_RPC_REQUEST:
        dispatch(c, f);
        return;
    case RILL_RPC_CANCEL:
        cancel(c, f->id);
        break;
    case RILL_RPC_PING: {
        struct rill_rpc_frame *pong;
        if (rill_rpc_frame_new(RILL_RPC_PONG, f->id, &pong) == 0) {
            rill_rpc_frame_set_payload(pong, rill_rpc_frame_take_payload(f));
            conn_write(c, &pong->msg);
        }
        break;
    }
    case RILL_RPC_GOAWAY:
        rill_channel_close(c->ch, NULL); /* through server_close: flushes first */
        break;
    default: /* RESPONSE, PONG: nothing a server waits for */
        break;
    }
    rill_rpc_frame_release(f);
}

/* The end of a read batch: one flush for every frame it wrote, before the
 * handlers after this one hear of it (what they write goes out by itself). */
static void server_read_complete(struct rill_ctx *ctx)
{
    struct conn *c = ((struct server_ctx *)rill_ctx_state(ctx))->c;
    if (c) {
        c->in_batch = false;
        conn_flush_pending(c);
    }
    rill_ctx_fire_read_complete(ctx);
}

/* A close (from any handler or rill_channel_close, a GOAWAY received or a
 * decoder failure) would fail what is written but not flushed: flush it. */
static void server_close(struct rill_ctx *ctx, struct rill_promise *p)
{
    struct conn *c = ((struct server_ctx *)rill_ctx_state(ctx))->c;
    if (c)
        conn_flush_pending(c);
    rill_ctx_close(ctx, p);
}

static void server_disconnect(struct rill_ctx *ctx, struct rill_promise *p)
{
    struct conn *c = ((struct server_ctx *)rill_ctx_state(ctx))->c;
    if (c)
        conn_flush_pending(c);
    rill_ctx_disconnect(ctx, p);
}

static void server_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct conn *c = ((struct server_ctx *)rill_ctx_state(ctx))->c;
    if (c)
        conn_flush_pending(c);
    rill_ctx_fire_exception(ctx, err, why);
}

static int server_added(struct rill_ctx *ctx)
{
    struct rill_rpc_server *s = rill_ctx_arg(ctx);
    if (!s)
        return -EINVAL;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    atomic_init(&c->refs, 1);
    rill__rpc_server_retain(s);
    c->srv = s;
    c->ch = rill_channel_retain(rill_ctx_channel(ctx));
    c->loop = rill_channel_loop(c->ch);
    c->ctx = ctx;
    ((struct server_ctx *)rill_ctx_state(ctx))->c = c;
    return 0;
}

/* The connection is over for this handler: answers to come are dropped,
 * running calls see themselves cancelled. */
static void conn_closed(struct conn *c)
{
    if (!c->ctx)
        return;
    c->ctx = NULL;
    if (c->listed) {
        pthread_mutex_lock(&c->srv->conns_lock);
        rill_list_remove(&c->link);
        c->listed = false;
        pthread_mutex_unlock(&c->srv->conns_lock);
    }
    for (uint32_t i = 0; i < c->nbuckets; i++)
        for (struct rill_rpc_server_call *x = c->buckets[i]; x; x = x->hnext)
            atomic_store_explicit(&x->cancelled, true, memory_order_release);
    if (c->idle) {
        rill_timer_cancel(c->idle);
        rill_timer_release(c->idle);
        c->idle = NULL;
        conn_release(c); /* the timer's */
    }
    if (c->counted) {
        c->counted = false;
        atomic_fetch_sub_explicit(&c->srv->conns, 1, memory_order_relaxed);
    }
}

static void server_active(struct rill_ctx *ctx)
{
    struct conn *c = ((struct server_ctx *)rill_ctx_state(ctx))->c;
    struct rill_rpc_server *s = c->srv;
    atomic_fetch_add_explicit(&s->conns_total, 1, memory_order_relaxed);
    uint64_t n = atomic_fetch_add_explicit(&s->conns, 1, memory_order_relaxed) + 1;
    c->counted = true;
    touch(c);
    bool over = s->o.max_connections && n > s->o.max_connections;
    pthread_mutex_lock(&s->conns_lock);
    bool shut = atomic_load(&s->shut);
    if (!over && !shut) {
        rill_list_push_back(&s->open_conns, &c->link);
        c->listed = true;
    }
    pthread_mutex_unlock(&s->conns_lock);
    if (over || shut) {
        char why[96];
        if (shut)
            snprintf(why, sizeof(why), "server shutting down");
        else
            snprintf(why, sizeof(why), "server at its limit of %zu connections",
                     s->o.max_connections);
        c->refused = true;
        atomic_fetch_add_explicit(&s->conns_refused, 1, memory_order_relaxed);
        rill_rpc_goaway_and_close(ctx, RILL_RPC_UNAVAILABLE, why, shut ? RILL_ECLOSED : RILL_EBUSY);
    } else if (s->o.idle_timeout_ns) {
        uint64_t period = s->o.idle_timeout_ns / 4;
        if (period < RILL_NS_PER_MS)
            period = RILL_NS_PER_MS;
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        if (rill_timer_schedule(c->loop, period, period, RILL_TIMER_FIXED_RATE, idle_check, c,
                                &c->idle) != 0) {
            c->idle = NULL;
            conn_release(c);
        }
    }
    rill_ctx_fire_active(ctx);
}

static void server_inactive(struct rill_ctx *ctx)
{
    struct conn *c = ((struct server_ctx *)rill_ctx_state(ctx))->c;
    c->in_batch = c->flush_pending = false;
    conn_closed(c);
    rill_ctx_fire_inactive(ctx);
}

static void server_removed(struct rill_ctx *ctx)
{
    struct server_ctx *sc = rill_ctx_state(ctx);
    if (!sc->c)
        return;
    /* Removed inside a batch: its read_complete will not come here. */
    sc->c->in_batch = false;
    conn_flush_pending(sc->c);
    conn_closed(sc->c);
    conn_release(sc->c);
    sc->c = NULL;
}

const struct rill_handler rill_rpc_server_handler = {
    .name = "rpc-server",
    .ctx_size = sizeof(struct server_ctx),
    .added = server_added,
    .removed = server_removed,
    .active = server_active,
    .read = server_read,
    .read_complete = server_read_complete,
    .exception = server_exception,
    .inactive = server_inactive,
    .disconnect = server_disconnect,
    .close = server_close,
};

/* ---- bytes on the wire ---- */

static int bytes_added(struct rill_ctx *ctx)
{
    struct rill_rpc_server *s = rill_ctx_arg(ctx);
    if (!s)
        return -EINVAL;
    rill__rpc_server_retain(s);
    *(struct rill_rpc_server **)rill_ctx_state(ctx) = s;
    return 0;
}

static void bytes_removed(struct rill_ctx *ctx)
{
    struct rill_rpc_server **sp = rill_ctx_state(ctx);
    if (*sp)
        rill__rpc_server_release(*sp);
    *sp = NULL;
}

static void bytes_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_rpc_server *s = *(struct rill_rpc_server **)rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (b)
        atomic_fetch_add_explicit(&s->bytes_in, rill_buf_readable(b), memory_order_relaxed);
    rill_ctx_fire_read(ctx, msg);
}

static void bytes_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct rill_rpc_server *s = *(struct rill_rpc_server **)rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (b)
        atomic_fetch_add_explicit(&s->bytes_out, rill_buf_readable(b), memory_order_relaxed);
    rill_ctx_write(ctx, msg, p);
}

const struct rill_handler rill_rpc_bytes_handler = {
    .name = "rpc-bytes",
    .ctx_size = sizeof(struct rill_rpc_server *),
    .added = bytes_added,
    .removed = bytes_removed,
    .read = bytes_read,
    .write = bytes_write,
};

int rill_rpc_server_install(struct rill_rpc_server *s, struct rill_pipeline *pl)
{
    struct rill_rpc_codec_opts co;
    rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_SERVER);
    co.max_frame = s->o.max_frame;
    int rc = rill_pipeline_add_last(pl, "rpc-bytes", &rill_rpc_bytes_handler, s);
    if (rc)
        return rc;
    rc = rill_pipeline_add_last(pl, "rpc-codec", &rill_rpc_codec_handler, &co);
    if (rc == 0) {
        rc = rill_pipeline_add_last(pl, "rpc-server", &rill_rpc_server_handler, s);
        if (rc)
            rill_pipeline_remove(pl, "rpc-codec");
    }
    if (rc)
        rill_pipeline_remove(pl, "rpc-bytes");
    return rc;
}

/* ---- stats and shutdown ---- */

void rill_rpc_server_stats(const struct rill_rpc_server *s, struct rill_rpc_server_stats *out)
{
    struct rill_rpc_server *w = (struct rill_rpc_server *)s; /* atomics: loads only */
    *out = (struct rill_rpc_server_stats){
        .connections = atomic_load(&w->conns),
        .connections_total = atomic_load(&w->conns_total),
        .connections_refused = atomic_load(&w->conns_refused),
        .in_flight = atomic_load(&w->in_flight),
        .queue_len = atomic_load(&w->qlen),
        .calls = atomic_load(&w->calls),
        .unimplemented = atomic_load(&w->unimpl),
        .dropped_responses = atomic_load(&w->dropped),
        .bytes_in = atomic_load(&w->bytes_in),
        .bytes_out = atomic_load(&w->bytes_out),
    };
}

/* On the connection's loop, at shutdown: GOAWAY, then close once written. */
static void goaway_on_loop(void *arg)
{
    struct conn *c = arg;
    if (c->ctx)
        rill_rpc_goaway_and_close(c->ctx, RILL_RPC_UNAVAILABLE, "server shutting down",
                                  RILL_ECLOSED);
    conn_release(c); /* the task's */
}

/* Tell every open connection GOAWAY. A listed connection has not run
 * conn_closed, so its context still holds a reference: the release after a
 * failed post is never the last one (and never re-enters conns_lock). */
static void goaway_all(struct rill_rpc_server *s)
{
    pthread_mutex_lock(&s->conns_lock);
    for (struct rill_list *n = s->open_conns.next; n != &s->open_conns; n = n->next) {
        struct conn *c = rill_container_of(n, struct conn, link);
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        rill_task_init(&c->goaway_task, goaway_on_loop, c);
        if (rill_loop_post(c->loop, &c->goaway_task) != 0)
            conn_release(c);
    }
    pthread_mutex_unlock(&s->conns_lock);
}

void rill_rpc_server_free(struct rill_rpc_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->conns_lock);
    atomic_store(&s->shut, true);
    pthread_mutex_unlock(&s->conns_lock);
    pthread_mutex_lock(&s->qlock);
    s->stop = true;
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    /* Calls still queued: nobody will run them. */
    for (;;) {
        pthread_mutex_lock(&s->qlock);
        struct rill_list *n = rill_list_empty(&s->queue) ? NULL : s->queue.next;
        if (n)
            rill_list_remove(n);
        pthread_mutex_unlock(&s->qlock);
        if (!n)
            break;
        atomic_fetch_sub_explicit(&s->qlen, 1, memory_order_relaxed);
        answer(rill_container_of(n, struct rill_rpc_server_call, qnode), RILL_RPC_UNAVAILABLE,
               "server shutting down", NULL);
    }
    /* After the answers above: tasks posted by one thread run in order, so
     * each connection writes them before its GOAWAY. */
    goaway_all(s);
    rill__rpc_registry_shutdown(s);
    rill__rpc_server_release(s);
}
