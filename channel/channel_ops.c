/* The channel's public operations. On the loop thread they start at the
 * tail of the pipeline at once; from any other thread they become tasks on
 * the channel's loop, in call order per calling thread (Netty's rule).
 * A task owns what the call handed over (the message, a reference to the
 * promise and the channel), so nothing leaks when the loop refuses it. */
#include "channel/channel_priv.h"

#include <errno.h>
#include <sched.h>

#include "channel/pipeline_internal.h"
#include "core/loop_internal.h"
#include "rill/alloc.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/msg.h"

enum op {
    OP_WRITE,
    OP_FLUSH,
    OP_WRITE_FLUSH,
    OP_CLOSE,
    OP_SHUTDOWN_OUTPUT,
    OP_READ,
};

struct op_task {
    struct rill_task task;
    struct rill_channel *ch;
    enum op op;
    int reason;
    struct rill_msg *msg;
    struct rill_promise *p;
};

static void run_op(struct rill_channel *ch, enum op op, int reason, struct rill_msg *msg,
                   struct rill_promise *p)
{
    struct rill_ctx *tail = ch->pipeline->tail;
    switch (op) {
    case OP_WRITE:
        rill_ctx_write(tail, msg, p);
        break;
    case OP_FLUSH:
        rill_ctx_flush(tail);
        break;
    case OP_WRITE_FLUSH:
        rill_ctx_write(tail, msg, p);
        rill_ctx_flush(tail);
        break;
    case OP_CLOSE:
        if (!ch->closing && reason < 0 && ch->close_reason == 0)
            ch->close_reason = reason; /* the head closes with it */
        rill_ctx_close(tail, p);
        break;
    case OP_SHUTDOWN_OUTPUT:
        rill__channel_shutdown_output(ch, p);
        break;
    case OP_READ:
        rill_ctx_read_request(tail);
        break;
    }
}

static void op_task_run(void *arg)
{
    struct op_task *t = arg;
    struct rill_channel *ch = t->ch;
    run_op(ch, t->op, t->reason, t->msg, t->p);
    if (t->p)
        rill_promise_release(t->p);
    rill_free(t, sizeof(*t));
    rill_channel_release(ch);
}

/* The loop is gone (or no memory): settle what the call handed over. */
static void refuse(struct rill_channel *ch, enum op op, struct rill_msg *msg,
                   struct rill_promise *p, int err)
{
    if (msg)
        rill_msg_release(msg);
    if (!p)
        return;
    if (op == OP_CLOSE && !rill_channel_is_open(ch))
        rill_promise_succeed(p, NULL, NULL);
    else
        rill_promise_fail(p, err);
}

/* Become the thread of a loop that has terminated. Its thread may still be
 * on its way out of rill_loop_run (termination is announced just before),
 * so wait a little for it. */
static bool enter_terminated(struct rill_loop *loop, struct rill_loop **saved)
{
    if (!rill_loop_is_terminated(loop))
        return false;
    for (int i = 0; i < 100000; i++) {
        int r = rill__loop_enter(loop, saved);
        if (r == 0)
            return true;
        if (r != RILL_ENOTLOOP)
            return false;
        sched_yield();
    }
    return false;
}

static void dispatch(struct rill_channel *ch, enum op op, int reason, struct rill_msg *msg,
                     struct rill_promise *p)
{
    if (rill_loop_in_thread(ch->loop)) {
        run_op(ch, op, reason, msg, p);
        return;
    }
    struct op_task *t = rill_alloc(sizeof(*t), NULL);
    if (!t) {
        refuse(ch, op, msg, p, -ENOMEM);
        return;
    }
    t->ch = rill_channel_retain(ch);
    t->op = op;
    t->reason = reason;
    t->msg = msg;
    t->p = p ? rill_promise_retain(p) : NULL;
    if (msg)
        rill_msg_touch(msg, "write from another thread");
    rill_task_init(&t->task, op_task_run, t);
    if (rill_loop_post(ch->loop, &t->task) != 0) {
        struct rill_loop *saved;
        if (op == OP_CLOSE && enter_terminated(ch->loop, &saved)) {
            /* A channel left open when its loop ended: nothing runs there
             * any more, so act as the loop's thread and close it here (the
             * alternative is an fd and a reference that never go). */
            run_op(ch, op, reason, NULL, p);
            rill__loop_leave(ch->loop, saved);
            rill_promise_release(p);
            rill_free(t, sizeof(*t));
            rill_channel_release(ch);
            return;
        }
        refuse(ch, op, msg, p, RILL_ECLOSED);
        if (p)
            rill_promise_release(p);
        rill_free(t, sizeof(*t));
        rill_channel_release(ch);
    }
}

void rill_channel_write(struct rill_channel *ch, struct rill_msg *msg, struct rill_promise *p)
{
    dispatch(ch, OP_WRITE, 0, msg, p);
}

void rill_channel_flush(struct rill_channel *ch)
{
    dispatch(ch, OP_FLUSH, 0, NULL, NULL);
}

void rill_channel_write_and_flush(struct rill_channel *ch, struct rill_msg *msg,
                                  struct rill_promise *p)
{
    dispatch(ch, OP_WRITE_FLUSH, 0, msg, p);
}

void rill_channel_close(struct rill_channel *ch, struct rill_promise *p)
{
    dispatch(ch, OP_CLOSE, 0, NULL, p);
}

void rill_channel_close_with(struct rill_channel *ch, int reason, struct rill_promise *p)
{
    dispatch(ch, OP_CLOSE, reason < 0 ? reason : 0, NULL, p);
}

void rill_channel_shutdown_output(struct rill_channel *ch, struct rill_promise *p)
{
    dispatch(ch, OP_SHUTDOWN_OUTPUT, 0, NULL, p);
}

void rill_channel_read(struct rill_channel *ch)
{
    dispatch(ch, OP_READ, 0, NULL, NULL);
}

void rill_channel_bind(struct rill_channel *ch, const struct rill_addr *local,
                       struct rill_promise *p)
{
    rill__assert_loop_or_idle(ch->loop);
    rill_ctx_bind(ch->pipeline->tail, local, p);
}

void rill_channel_connect(struct rill_channel *ch, const struct rill_addr *remote,
                          const struct rill_addr *local, struct rill_promise *p)
{
    rill__assert_loop_or_idle(ch->loop);
    rill_ctx_connect(ch->pipeline->tail, remote, local, p);
}
