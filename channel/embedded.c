/* The embedded channel: a transport with no I/O, driven by the caller's
 * thread. Its tail keeps what arrives instead of releasing it, its write
 * hands flushed messages to the test, and each call "enters" the channel's
 * manual-clock loop so the pipeline runs as it would on a loop thread. */
#include "rill/embedded.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "channel/channel_priv.h"
#include "core/loop_internal.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/loop.h"
#include "rill/msg.h"

/* A FIFO of messages (a growable ring). */
struct msgq {
    struct rill_msg **v;
    size_t head, n, cap;
};

static int msgq_push(struct msgq *q, struct rill_msg *m)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        struct rill_msg **v = malloc(cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        for (size_t i = 0; i < q->n; i++)
            v[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = v;
        q->head = 0;
        q->cap = cap;
    }
    q->v[(q->head + q->n) % q->cap] = m;
    q->n++;
    return 0;
}

static struct rill_msg *msgq_pop(struct msgq *q)
{
    if (!q->n)
        return NULL;
    struct rill_msg *m = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    return m;
}

static size_t msgq_drain(struct msgq *q)
{
    size_t n = 0;
    struct rill_msg *m;
    while ((m = msgq_pop(q)) != NULL) {
        rill_msg_release(m);
        n++;
    }
    return n;
}

struct emb_channel {
    struct rill_channel base; /* first: the transport contract */
    struct rill_embedded *e;  /* NULL once the embedded handle is freed */
};

struct rill_embedded {
    struct rill_loop *loop;
    struct emb_channel *ch;
    struct msgq inbound, outbound;
    int exc_err;
    bool exc_has_why, finished;
    char exc_why[256];
};

/* ---- the transport ---- */

static struct rill_embedded *emb_of(struct rill_channel *ch)
{
    return ((struct emb_channel *)ch)->e;
}

static void emb_write(struct rill_channel *ch)
{
    struct rill_embedded *e = emb_of(ch);
    size_t written;
    struct rill_msg *m;
    while ((m = rill__outbound_current(ch, &written)) != NULL) {
        struct rill_buf *b = rill_buf_from_msg(m);
        size_t rem = b ? rill_buf_readable(b) - written : 0;
        rill_msg_retain(m);
        if (!e || msgq_push(&e->outbound, m) != 0)
            rill_msg_release(m);
        rill__outbound_advance(ch, rem);
        if (!rill_channel_is_open(ch))
            break;
    }
}

static int emb_shutdown_output(struct rill_channel *ch)
{
    (void)ch;
    return 0;
}

static void emb_close(struct rill_channel *ch)
{
    (void)ch;
}

static void emb_destroy(struct rill_channel *ch)
{
    free(ch);
}

static int64_t emb_msg_size(struct rill_channel *ch, struct rill_msg *msg)
{
    (void)ch;
    (void)msg;
    return 0; /* any message may be written; only buffers count bytes */
}

static void emb_unhandled_read(struct rill_channel *ch, struct rill_msg *msg)
{
    struct rill_embedded *e = emb_of(ch);
    if (!e || msgq_push(&e->inbound, msg) != 0)
        rill_msg_release(msg);
}

static void emb_unhandled_exception(struct rill_channel *ch, int err, const char *why)
{
    struct rill_embedded *e = emb_of(ch);
    if (!e)
        return;
    e->exc_err = err;
    e->exc_has_why = why != NULL;
    snprintf(e->exc_why, sizeof(e->exc_why), "%s", why ? why : "");
}

static const struct rill_transport_ops emb_ops = {
    .name = "embedded",
    .write = emb_write,
    .shutdown_output = emb_shutdown_output,
    .close = emb_close,
    .destroy = emb_destroy,
    .msg_size = emb_msg_size,
    .unhandled_read = emb_unhandled_read,
    .unhandled_exception = emb_unhandled_exception,
};

/* ---- acting as the loop ---- */

struct scope {
    struct rill_loop *saved;
    int entered; /* 0: entered (leave on exit); 1: already the loop thread */
};

static void enter(struct rill_embedded *e, struct scope *s)
{
    s->entered = rill__loop_enter(e->loop, &s->saved);
    if (s->entered < 0)
        RILL_PANIC("embedded channel used while another thread runs its loop");
}

/* Leave, then run what the call queued, unless we are nested inside one
 * of this channel's own callbacks (the outer call runs them). */
static void leave(struct rill_embedded *e, struct scope *s)
{
    if (s->entered == 0) {
        rill__loop_leave(e->loop, s->saved);
        rill_embedded_run_pending(e);
    }
}

int rill_embedded_run_pending(struct rill_embedded *e)
{
    if (rill_loop_in_thread(e->loop))
        return 0; /* inside a callback: the outermost call runs them */
    int total = 0;
    /* Tasks queued by tasks run too; a task that re-posts itself forever
     * would spin, so stop after a generous number of rounds. */
    for (int round = 0; round < 100000; round++) {
        int n = rill_loop_run_once(e->loop, 0);
        if (n <= 0)
            return total;
        total += n;
    }
    RILL_WARN("embedded channel: tasks keep queueing more tasks; stopped running them");
    return total;
}

/* ---- construction ---- */

int rill_embedded_new(const struct rill_embedded_handler *handlers, size_t n,
                      struct rill_embedded **out)
{
    struct rill_embedded *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    struct rill_loop_opts o;
    rill_loop_opts_init(&o);
    o.name = "embedded";
    o.manual_clock = true;
    int err = rill_loop_new(&o, &e->loop);
    if (err) {
        free(e);
        return err;
    }
    e->ch = calloc(1, sizeof(*e->ch));
    if (!e->ch || (err = rill__channel_init(&e->ch->base, &emb_ops, e->loop, NULL)) != 0) {
        free(e->ch);
        rill_loop_free(e->loop);
        free(e);
        return err ? err : -ENOMEM;
    }
    e->ch->e = e;
    struct rill_channel *ch = &e->ch->base;
    rill__channel_mark_active(ch);
    struct scope s;
    enter(e, &s);
    for (size_t i = 0; i < n && !err; i++)
        err =
            rill_pipeline_add_last(ch->pipeline, handlers[i].name, handlers[i].h, handlers[i].arg);
    if (!err)
        rill__channel_register(ch, NULL, NULL, NULL);
    leave(e, &s);
    if (err) {
        e->ch->e = NULL;
        rill_channel_release(ch); /* never registered: removed() runs, memory goes */
        rill_loop_free(e->loop);
        free(e);
        return err;
    }
    *out = e;
    return 0;
}

struct rill_channel *rill_embedded_channel(struct rill_embedded *e)
{
    return &e->ch->base;
}

struct rill_pipeline *rill_embedded_pipeline(struct rill_embedded *e)
{
    return e->ch->base.pipeline;
}

struct rill_loop *rill_embedded_loop(struct rill_embedded *e)
{
    return e->loop;
}

/* ---- inbound ---- */

int rill_embedded_write_inbound_n(struct rill_embedded *e, struct rill_msg *const *msgs, size_t n)
{
    struct rill_channel *ch = &e->ch->base;
    struct scope s;
    enter(e, &s);
    bool open = rill_channel_is_open(ch);
    for (size_t i = 0; i < n; i++) {
        if (open)
            rill__channel_fire_read(ch, msgs[i]); /* released there once closed */
        else
            rill_msg_release(msgs[i]);
    }
    if (open)
        rill__channel_fire_read_complete(ch);
    leave(e, &s);
    return open ? (int)e->inbound.n : RILL_ECLOSED;
}

int rill_embedded_write_inbound(struct rill_embedded *e, struct rill_msg *msg)
{
    return rill_embedded_write_inbound_n(e, &msg, 1);
}

void rill_embedded_read_complete(struct rill_embedded *e)
{
    struct scope s;
    enter(e, &s);
    rill__channel_fire_read_complete(&e->ch->base);
    leave(e, &s);
}

struct rill_msg *rill_embedded_read_inbound(struct rill_embedded *e)
{
    return msgq_pop(&e->inbound);
}

size_t rill_embedded_inbound_count(const struct rill_embedded *e)
{
    return e->inbound.n;
}

/* ---- outbound ---- */

int rill_embedded_write_outbound(struct rill_embedded *e, struct rill_msg *msg)
{
    struct rill_promise *p = NULL;
    if (rill_promise_new(e->loop, &p) != 0)
        p = NULL;
    struct scope s;
    enter(e, &s);
    rill_channel_write_and_flush(&e->ch->base, msg, p);
    leave(e, &s);
    int r = p ? rill_promise_result(p, NULL) : 0;
    rill_promise_release(p);
    return r < 0 && r != -EINPROGRESS ? r : (int)e->outbound.n;
}

void rill_embedded_write(struct rill_embedded *e, struct rill_msg *msg, struct rill_promise *p)
{
    struct scope s;
    enter(e, &s);
    rill_channel_write(&e->ch->base, msg, p);
    leave(e, &s);
}

void rill_embedded_flush(struct rill_embedded *e)
{
    struct scope s;
    enter(e, &s);
    rill_channel_flush(&e->ch->base);
    leave(e, &s);
}

struct rill_msg *rill_embedded_read_outbound(struct rill_embedded *e)
{
    return msgq_pop(&e->outbound);
}

size_t rill_embedded_outbound_count(const struct rill_embedded *e)
{
    return e->outbound.n;
}

/* ---- time, exceptions, running code ---- */

int rill_embedded_advance_clock(struct rill_embedded *e, uint64_t ns)
{
    int n = rill_loop_advance_clock(e->loop, ns);
    rill_embedded_run_pending(e);
    return n;
}

uint64_t rill_embedded_now(const struct rill_embedded *e)
{
    return rill_loop_now(e->loop);
}

void rill_embedded_run(struct rill_embedded *e, void (*fn)(struct rill_channel *ch, void *arg),
                       void *arg)
{
    struct scope s;
    enter(e, &s);
    fn(&e->ch->base, arg);
    leave(e, &s);
}

int rill_embedded_take_exception(struct rill_embedded *e, const char **why)
{
    int err = e->exc_err;
    if (why)
        *why = err && e->exc_has_why ? e->exc_why : NULL;
    e->exc_err = 0;
    return err;
}

/* ---- closing ---- */

bool rill_embedded_is_open(const struct rill_embedded *e)
{
    return rill_channel_is_open(&e->ch->base);
}

void rill_embedded_close(struct rill_embedded *e)
{
    struct scope s;
    enter(e, &s);
    rill_channel_close(&e->ch->base, NULL);
    leave(e, &s);
}

int rill_embedded_finish(struct rill_embedded *e, size_t *leftover)
{
    rill_embedded_close(e);
    rill_embedded_run_pending(e);
    size_t n = msgq_drain(&e->inbound) + msgq_drain(&e->outbound);
    if (leftover)
        *leftover = n;
    e->finished = true;
    return rill_embedded_take_exception(e, NULL);
}

void rill_embedded_free(struct rill_embedded *e)
{
    if (!e)
        return;
    if (!e->finished)
        rill_embedded_finish(e, NULL);
    struct rill_channel *ch = &e->ch->base;
    e->ch->e = NULL; /* messages arriving later are released, not queued */
    rill_channel_release(ch);
    rill_loop_free(e->loop); /* runs what is still queued */
    msgq_drain(&e->inbound);
    msgq_drain(&e->outbound);
    free(e->inbound.v);
    free(e->outbound.v);
    free(e);
}
