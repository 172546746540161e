/* The outbound queue: write appends, flush marks, the transport takes
 * gathered iovecs and reports what the kernel accepted; promises complete
 * in write order as their last byte goes out.
 *
 * Entries come from the rill allocator (per-thread caches, no lock), so
 * the steady-state write path allocates nothing from the system.
 *
 * Writability: pending bytes above the high watermark make the channel
 * unwritable, below the low one writable again (Netty's strict
 * comparisons). The state bit changes at once; the writability_changed
 * event comes from a task, so it never fires inside a transport's write
 * or inside the handler call that crossed the mark. If the state flipped
 * more than once before the task ran, the task fires the two last
 * transitions (a handler that saw "unwritable" always hears "writable"). */
#include "channel/channel_priv.h"

#include <errno.h>
#include <inttypes.h>

#include "channel/pipeline_internal.h"
#include "rill/alloc.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/msg.h"

struct rill__out_entry {
    struct rill__out_entry *next;
    struct rill_msg *msg;
    struct rill_promise *promise;
    size_t bytes;   /* size when written */
    size_t written; /* bytes already handed to the transport */
};

static void complete(struct rill_promise *p, int err)
{
    if (!p)
        return;
    if (err)
        rill_promise_fail(p, err);
    else
        rill_promise_succeed(p, NULL, NULL);
    rill_promise_release(p);
}

/* ---- writability ---- */

static void writability_task(void *arg)
{
    struct rill_channel *ch = arg;
    unsigned flips = ch->wr_flips;
    ch->wr_flips = 0;
    ch->wr_task_queued = false;
    if (!ch->closing && flips) {
        bool now = rill_channel_is_writable(ch);
        if (flips % 2 == 0)
            rill__pipeline_fire_writability(ch->pipeline, !now);
        if (!ch->closing)
            rill__pipeline_fire_writability(ch->pipeline, now);
    }
    rill_channel_release(ch);
}

static void set_writable(struct rill_channel *ch, bool w)
{
    if (w)
        atomic_fetch_or(&ch->state, RILL__CH_WRITABLE);
    else
        atomic_fetch_and(&ch->state, ~RILL__CH_WRITABLE);
    ch->wr_flips++;
    if (!ch->wr_task_queued) {
        ch->wr_task_queued = true;
        if (!rill__channel_post(ch, &ch->wr_task, writability_task))
            ch->wr_task_queued = false;
    }
}

static void check_high(struct rill_channel *ch)
{
    if (ch->out.pending > (size_t)rill__channel_opt(ch, RILL_OPT_WRITE_HIGH_WATER) &&
        rill_channel_is_writable(ch) && !ch->closing)
        set_writable(ch, false);
}

static void check_low(struct rill_channel *ch)
{
    if (ch->out.pending < (size_t)rill__channel_opt(ch, RILL_OPT_WRITE_LOW_WATER) &&
        !ch->out.transport_full && !rill_channel_is_writable(ch) && !ch->closing)
        set_writable(ch, true);
}

void rill__outbound_set_transport_full(struct rill_channel *ch, bool full)
{
    if (ch->out.transport_full == full)
        return;
    ch->out.transport_full = full;
    if (full && rill_channel_is_writable(ch) && !ch->closing)
        set_writable(ch, false);
    else if (!full)
        check_low(ch);
}

void rill__outbound_check_watermarks(struct rill_channel *ch)
{
    check_high(ch);
    check_low(ch);
}

size_t rill_channel_pending_bytes(const struct rill_channel *ch)
{
    return ch->out.pending;
}

/* ---- write and flush ---- */

void rill__outbound_add(struct rill_channel *ch, struct rill_msg *msg, struct rill_promise *p)
{
    int err = 0;
    int64_t size = 0;
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (ch->closing)
        err = RILL_ECLOSED;
    else if (ch->output_shutdown)
        err = -EPIPE;
    else if (b)
        size = (int64_t)rill_buf_readable(b);
    else if (ch->ops->msg_size)
        size = ch->ops->msg_size(ch, msg);
    else
        size = -EINVAL;
    if (!err && size < 0)
        err = (int)size;
    struct rill__out_entry *e = NULL;
    if (!err && !(e = rill_alloc(sizeof(*e), NULL)))
        err = -ENOMEM;
    if (err) {
        rill_msg_release(msg);
        if (p)
            rill_promise_fail(p, err);
        return;
    }
    rill_msg_touch(msg, "outbound queue");
    e->next = NULL;
    e->msg = msg;
    e->promise = p ? rill_promise_retain(p) : NULL;
    e->bytes = (size_t)size;
    e->written = 0;
    struct rill__outbound *q = &ch->out;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    if (!q->unflushed)
        q->unflushed = e;
    q->entries++;
    q->pending += e->bytes;
    check_high(ch);
}

void rill__outbound_flush(struct rill_channel *ch)
{
    struct rill__outbound *q = &ch->out;
    bool dropped = false;
    for (struct rill__out_entry *e = q->unflushed; e; e = e->next) {
        if (e->promise && rill_promise_is_cancelled(e->promise)) {
            /* Cancelled before the flush: never sent (Netty). The entry
             * stays, empty, and goes when the queue reaches it. */
            q->pending -= e->bytes - e->written;
            e->bytes = e->written;
            rill_msg_release(e->msg);
            e->msg = NULL;
            dropped = true;
        }
        q->flushed_bytes += e->bytes - e->written;
    }
    q->unflushed = NULL;
    if (dropped)
        check_low(ch);
    rill__channel_flush_now(ch);
}

void rill__channel_flush_now(struct rill_channel *ch)
{
    if (ch->in_flush || ch->closing || !rill__outbound_has_flushed(ch))
        return;
    if (!rill_channel_is_active(ch)) {
        rill__outbound_fail_flushed(ch, -ENOTCONN);
        return;
    }
    if (!ch->ops->write) {
        rill__outbound_fail_flushed(ch, -EOPNOTSUPP);
        return;
    }
    ch->in_flush = true;
    ch->ops->write(ch);
    ch->in_flush = false;
}

static void flush_task(void *arg)
{
    struct rill_channel *ch = arg;
    ch->flush_task_queued = false;
    rill__channel_flush_now(ch);
    rill_channel_release(ch);
}

void rill__channel_flush_later(struct rill_channel *ch)
{
    if (ch->flush_task_queued || ch->closing)
        return;
    ch->flush_task_queued = true;
    if (!rill__channel_post(ch, &ch->flush_task, flush_task))
        ch->flush_task_queued = false;
}

/* ---- for ops->write ---- */

bool rill__outbound_has_flushed(const struct rill_channel *ch)
{
    return ch->out.head && ch->out.head != ch->out.unflushed;
}

size_t rill__outbound_flushed_bytes(const struct rill_channel *ch)
{
    return ch->out.flushed_bytes;
}

/* The unwritten bytes of the flushed entries from @e on, skipping @off of
 * @e's own, as iovecs. */
static int iov_from(struct rill_channel *ch, struct rill__out_entry *e, size_t off,
                    struct iovec *iov, int max, size_t *bytes)
{
    int n = 0;
    size_t total = 0;
    for (; e && e != ch->out.unflushed && n < max; e = e->next, off = 0) {
        if (!e->msg) /* cancelled */
            continue;
        struct rill_buf *b = rill_buf_from_msg(e->msg);
        if (!b)
            break;
        size_t rem = e->bytes - e->written - off;
        if (rem == 0)
            continue;
        size_t covered = 0;
        int k = rill_buf_iovec(b, rill_buf_reader_index(b) + e->written + off, rem, iov + n,
                               max - n, &covered);
        if (k < 0) {
            /* The buffer shrank after it was written: a handler broke the
             * ownership rule. Send what precedes it. */
            RILL_ERROR("channel %" PRIu64 ": a queued buffer changed after it was written", ch->id);
            break;
        }
        n += k;
        total += covered;
        if (covered < rem)
            break;
    }
    *bytes = total;
    return n;
}

int rill__outbound_iov(struct rill_channel *ch, struct iovec *iov, int max, size_t *bytes)
{
    return iov_from(ch, ch->out.head, 0, iov, max, bytes);
}

int rill__outbound_iov_unposted(struct rill_channel *ch, struct iovec *iov, int max, size_t *bytes)
{
    struct rill__outbound *q = &ch->out;
    if (q->posted == 0)
        return iov_from(ch, q->head, 0, iov, max, bytes);
    return iov_from(ch, q->pcur, q->pcur_off, iov, max, bytes);
}

void rill__outbound_posted(struct rill_channel *ch, size_t n)
{
    struct rill__outbound *q = &ch->out;
    if (q->posted == 0) {
        q->pcur = q->head;
        q->pcur_off = 0;
    }
    q->posted += n;
    struct rill__out_entry *e = q->pcur;
    size_t off = q->pcur_off;
    while (e && e != q->unflushed) {
        size_t rem = e->bytes - e->written - off;
        if (rem > n) {
            off += n;
            n = 0;
            break;
        }
        n -= rem;
        if (!e->next || e->next == q->unflushed) {
            off += rem; /* stay on the last flushed entry, at its end */
            break;
        }
        e = e->next;
        off = 0;
    }
    q->pcur = e;
    q->pcur_off = off;
}

size_t rill__outbound_unposted_bytes(const struct rill_channel *ch)
{
    return ch->out.flushed_bytes - ch->out.posted;
}

static struct rill__out_entry *pop_head(struct rill_channel *ch, bool flushed);
static void finish_entry(struct rill__out_entry *e, int err);

struct rill_msg *rill__outbound_current(struct rill_channel *ch, size_t *written)
{
    struct rill__out_entry *e;
    /* Cancelled entries are empty: drop them here so the transport only
     * ever sees a message. Their promises completed already. */
    bool popped = false;
    while ((e = ch->out.head) && e != ch->out.unflushed && !e->msg) {
        finish_entry(pop_head(ch, true), 0);
        popped = true;
    }
    if (!e || e == ch->out.unflushed) {
        if (popped)
            rill__channel_flushed_drained(ch);
        return NULL;
    }
    if (written)
        *written = e->written;
    return e->msg;
}

/* Unlink the first entry and give back its accounting. */
static struct rill__out_entry *pop_head(struct rill_channel *ch, bool flushed)
{
    struct rill__outbound *q = &ch->out;
    struct rill__out_entry *e = q->head;
    size_t rem = e->bytes - e->written;
    q->head = e->next;
    if (!q->head)
        q->tail = NULL;
    if (q->unflushed == e)
        q->unflushed = e->next;
    q->entries--;
    q->pending -= rem;
    if (flushed)
        q->flushed_bytes -= rem;
    return e;
}

static void finish_entry(struct rill__out_entry *e, int err)
{
    struct rill_msg *msg = e->msg;
    struct rill_promise *p = e->promise;
    rill_free(e, sizeof(*e));
    rill_msg_release_safe(msg); /* NULL: cancelled, released at the flush */
    complete(p, err);           /* listeners may write, flush or close: nothing is held */
}

void rill__outbound_advance(struct rill_channel *ch, size_t n)
{
    struct rill__outbound *q = &ch->out;
    struct rill__out_entry *e;
    if (q->posted) {
        /* Completing posted bytes: the cursor entry keeps its offset
         * relative to the unwritten bytes, which shrink from the front. */
        size_t done = n < q->posted ? n : q->posted;
        q->posted -= done;
        size_t left = done;
        for (e = q->head; e && e != q->pcur && left; e = e->next) {
            size_t rem = e->bytes - e->written;
            left -= rem < left ? rem : left;
        }
        if (e == q->pcur && q->posted)
            q->pcur_off -= left;
    }
    while ((e = q->head) && e != q->unflushed) {
        size_t rem = e->bytes - e->written;
        if (rem > n) {
            e->written += n;
            q->flushed_bytes -= n;
            q->pending -= n;
            n = 0;
            break;
        }
        n -= rem;
        finish_entry(pop_head(ch, true), 0);
        check_low(ch);
    }
    if (n && !ch->closing)
        RILL_ERROR("channel %" PRIu64 ": transport reported %zu bytes more than was flushed",
                   ch->id, n);
    check_low(ch);
    if (!rill__outbound_has_flushed(ch))
        rill__channel_flushed_drained(ch);
}

/* ---- failing ---- */

void rill__outbound_fail_flushed(struct rill_channel *ch, int err)
{
    ch->out.posted = 0;
    while (rill__outbound_has_flushed(ch))
        finish_entry(pop_head(ch, true), err);
    check_low(ch);
}

void rill__outbound_fail_all(struct rill_channel *ch, int err)
{
    /* Called with the channel closing: a listener's new write fails at
     * once and adds nothing, so this loop ends. */
    ch->out.posted = 0;
    while (ch->out.head)
        finish_entry(pop_head(ch, ch->out.head != ch->out.unflushed), err);
}

void rill__outbound_fail_unflushed(struct rill_channel *ch, int err)
{
    struct rill__outbound *q = &ch->out;
    while (q->unflushed) {
        /* Cut the unflushed tail off, then fail it entry by entry. */
        struct rill__out_entry *first = q->unflushed, *prev = NULL;
        for (struct rill__out_entry *e = q->head; e != first; e = e->next)
            prev = e;
        if (prev)
            prev->next = NULL;
        else
            q->head = NULL;
        q->tail = prev;
        q->unflushed = NULL;
        while (first) {
            struct rill__out_entry *next = first->next;
            q->entries--;
            q->pending -= first->bytes - first->written;
            finish_entry(first, err);
            first = next;
        }
    }
    check_low(ch);
}
