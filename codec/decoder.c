/* The byte-to-message decoder base: cumulation, the decode loop, emission,
 * errors, end of input and hand-over on removal. See rill/decoder.h. */
#include "rill/decoder.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/composite.h"
#include "rill/error.h"
#include "rill/log.h"
#include "rill/pipeline.h"

enum {
    DEC_READY = 1u << 0,    /* rill_decoder_init ran */
    DEC_IN_READ = 1u << 1,  /* on_read (or end of input) is decoding: don't free under it */
    DEC_REMOVED = 1u << 2,  /* removed while decoding: on_read hands over and cleans up */
    DEC_FAILED = 1u << 3,   /* a fatal error (or a raise that closed): drop all input */
    DEC_EMITTED = 1u << 4,  /* something was emitted since the last read_complete */
    DEC_SINGLE = 1u << 5,   /* one message per read */
    DEC_ENDED = 1u << 6,    /* decode_last ran */
    DEC_DESTROYED = 1u << 7 /* cumulation and protocol state released */
};

#define DEFAULT_MAX_CUMULATION RILL_DECODER_DEFAULT_MAX_CUMULATION
/* A read of at most this many bytes is copied behind leftovers instead of
 * making the cumulation a composite: copying a few hundred bytes costs less
 * than walking component boundaries in every later access. */
#define MERGE_MAX 1024
/* Leftovers this small are moved to a buffer of their own, so the large
 * receive buffer they sat in goes back to the pool (frames already cut from
 * it keep it alive only as long as they live). */
#define LEFTOVER_COPY_MAX     1024
#define LEFTOVER_COPY_MIN_CAP (16 * 1024)

int rill_decoder_init(struct rill_decoder *d, struct rill_ctx *ctx,
                      const struct rill_decoder_ops *ops, const struct rill_decoder_options *opt)
{
    if (!d || !ctx || !ops || !ops->decode)
        return -EINVAL;
    *d = (struct rill_decoder){ ._ops = ops, ._ctx = ctx, ._flags = DEC_READY };
    if (opt)
        d->_opt = *opt;
    if (d->_opt.max_cumulation == 0)
        d->_opt.max_cumulation = DEFAULT_MAX_CUMULATION;
    if (d->_opt.single_decode)
        d->_flags |= DEC_SINGLE;
    return 0;
}

void rill_decoder_emit(struct rill_decoder *d, struct rill_msg *msg)
{
    if (d->_nout == d->_aout) {
        uint32_t n = d->_aout ? d->_aout * 2 : 8;
        struct rill_msg **v = realloc(d->_out, n * sizeof(*v));
        if (!v) {
            /* Nothing sensible can be done with the message; fail the
             * stream after this step (the error wins over progress). */
            rill_msg_release(msg);
            d->_err = -ENOMEM;
            return;
        }
        d->_out = v;
        d->_aout = n;
    }
    d->_out[d->_nout++] = msg;
}

static void set_why(struct rill_decoder *d, const char *fmt, va_list ap)
{
    vsnprintf(d->_why, sizeof(d->_why), fmt, ap);
}

int rill_decoder_fail(struct rill_decoder *d, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_why(d, fmt, ap);
    va_end(ap);
    return err;
}

size_t rill_decoder_pending(const struct rill_decoder *d)
{
    return d->_cum ? rill_buf_readable(d->_cum) : 0;
}

int rill_decoder_error(const struct rill_decoder *d)
{
    return (d->_flags & DEC_FAILED) ? d->_err : 0;
}

void rill_decoder_set_single(struct rill_decoder *d, bool single)
{
    if (single)
        d->_flags |= DEC_SINGLE;
    else
        d->_flags &= ~DEC_SINGLE;
}

const struct rill_decoder_options *rill_decoder_options(const struct rill_decoder *d)
{
    return &d->_opt;
}

static struct rill_decoder *dec_of(struct rill_ctx *ctx)
{
    return rill_ctx_state(ctx);
}

/* Fire what the last decode step emitted, in order. */
static void fire_out(struct rill_decoder *d)
{
    uint32_t n = d->_nout;
    if (n == 0)
        return;
    d->_nout = 0;
    d->_flags |= DEC_EMITTED;
    for (uint32_t i = 0; i < n; i++)
        rill_ctx_fire_read(d->_ctx, d->_out[i]);
}

static void drop_cumulation(struct rill_decoder *d)
{
    if (d->_cum) {
        rill_buf_release(d->_cum);
        d->_cum = NULL;
    }
}

static void drop_out(struct rill_decoder *d)
{
    for (uint32_t i = 0; i < d->_nout; i++)
        rill_msg_release(d->_out[i]);
    d->_nout = 0;
}

/* The stream is over for this decoder: tell the pipeline, close unless the
 * user asked to keep the channel. */
static void fail_stream(struct rill_decoder *d, int err)
{
    if (d->_flags & DEC_FAILED)
        return;
    d->_flags |= DEC_FAILED;
    d->_err = err;
    drop_out(d);
    drop_cumulation(d);
    const char *why = d->_why[0] ? d->_why : rill_strerror(err);
    struct rill_channel *ch = rill_ctx_channel(d->_ctx);
    RILL_DEBUGF("channel %llu: decoder %s failed: %s (%s)", (unsigned long long)rill_channel_id(ch),
                rill_ctx_name(d->_ctx), why, rill_errname(err));
    if (d->_ops->failed)
        d->_ops->failed(d, err, why);
    rill_ctx_fire_exception(d->_ctx, err, why);
    if (!d->_opt.keep_open_on_error)
        rill_channel_close_with(ch, err, NULL);
}

int rill_decoder_raise(struct rill_decoder *d, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_why(d, fmt, ap);
    va_end(ap);
    /* Messages emitted before the error go first. */
    fire_out(d);
    if (!d->_opt.keep_open_on_error) {
        /* Closing: later bytes are of no use; the decode loop stops once
         * the running step returns (the cumulation is freed there). */
        d->_flags |= DEC_FAILED;
        d->_err = err;
        struct rill_channel *ch = rill_ctx_channel(d->_ctx);
        rill_ctx_fire_exception(d->_ctx, err, d->_why);
        rill_channel_close_with(ch, err, NULL);
    } else {
        rill_ctx_fire_exception(d->_ctx, err, d->_why);
    }
    d->_why[0] = '\0';
    return 0;
}

/* Add @in (owned) to the cumulation. */
static int cumulate(struct rill_decoder *d, struct rill_buf *in)
{
    struct rill_buf *cum = d->_cum;
    if (!cum) {
        d->_cum = in;
        return 0;
    }
    size_t n = rill_buf_readable(in);
    if (n == 0) {
        rill_buf_release(in);
        return 0;
    }
    enum rill_buf_kind k = rill_buf_kind(cum);
    bool flat_growable =
        (k == RILL_BUF_POOLED || k == RILL_BUF_WRAPPED) && !rill_buf_is_readonly(cum);
    if (n <= MERGE_MAX && (k == RILL_BUF_COMPOSITE || flat_growable) &&
        (rill_buf_writable(cum) >= n || rill_buf_readable(cum) <= MERGE_MAX)) {
        if (k != RILL_BUF_COMPOSITE && rill_buf_writable(cum) < n)
            rill_buf_discard_read(cum); /* don't carry consumed bytes into the growth */
        int rc = rill_buf_write_buf(cum, in, n);
        rill_buf_release(in);
        return rc;
    }
    if (k != RILL_BUF_COMPOSITE) {
        struct rill_buf *c;
        int rc = rill_buf_composite_new(&c);
        if (rc) {
            rill_buf_release(in);
            return rc;
        }
        rc = rill_buf_composite_add(c, cum); /* takes cum on every path */
        d->_cum = c;
        if (rc) {
            rill_buf_release(in);
            return rc;
        }
    }
    return rill_buf_composite_add(d->_cum, in);
}

/* After decoding: give back what was consumed, keep small leftovers in a
 * small buffer. */
static int compact(struct rill_decoder *d)
{
    struct rill_buf *cum = d->_cum;
    size_t left = rill_buf_readable(cum);
    if (left == 0) {
        drop_cumulation(d);
        return 0;
    }
    if (rill_buf_reader_index(cum) == 0)
        return 0;
    if (rill_buf_kind(cum) == RILL_BUF_COMPOSITE) {
        rill_buf_discard_read(cum);
        if (left <= LEFTOVER_COPY_MAX && rill_buf_composite_count(cum) > 1)
            return rill_buf_consolidate(cum);
        return 0;
    }
    if (left <= LEFTOVER_COPY_MAX && rill_buf_capacity(cum) >= LEFTOVER_COPY_MIN_CAP) {
        struct rill_buf *small;
        int rc = rill_buf_alloc(left + MERGE_MAX, &small);
        if (rc)
            return rc;
        rc = rill_buf_write_buf(small, cum, left);
        if (rc) {
            rill_buf_release(small);
            return rc;
        }
        rill_buf_release(cum);
        d->_cum = small;
    }
    return 0;
}

/* Run the decode step until it makes no progress. Returns 0 or the error
 * that failed the stream. */
static int decode_loop(struct rill_decoder *d)
{
    while (d->_cum && !(d->_flags & (DEC_FAILED | DEC_REMOVED))) {
        struct rill_buf *in = d->_cum;
        size_t before = rill_buf_readable(in);
        if (before == 0)
            break;
        d->_why[0] = '\0';
        int rc = d->_ops->decode(d, in);
        bool emitted = d->_nout > 0;
        if (rc == 0 && d->_err == -ENOMEM && !(d->_flags & DEC_FAILED))
            rc = -ENOMEM;
        if (rc < 0) {
            fail_stream(d, rc);
            return rc;
        }
        fire_out(d);
        if (d->_flags & (DEC_FAILED | DEC_REMOVED))
            break;
        in = d->_cum; /* a re-entrant read may have turned it into a composite */
        size_t after = rill_buf_readable(in);
        if (!emitted) {
            if (after == before)
                break; /* needs more bytes */
            continue;
        }
        if (after == before) {
            fail_stream(d, rill_decoder_fail(d, RILL_EDECODE,
                                             "decoder %s emitted a message without consuming input",
                                             rill_ctx_name(d->_ctx)));
            return RILL_EDECODE;
        }
        if (d->_flags & DEC_SINGLE)
            break;
    }
    if (d->_flags & DEC_FAILED) {
        drop_cumulation(d);
        return d->_err;
    }
    return 0;
}

static void destroy(struct rill_decoder *d)
{
    if (d->_flags & DEC_DESTROYED)
        return;
    d->_flags |= DEC_DESTROYED;
    drop_out(d);
    drop_cumulation(d);
    if (d->_ops->destroy)
        d->_ops->destroy(d);
    free(d->_out);
    d->_out = NULL;
    d->_aout = 0;
}

/* The decoder left the pipeline: pass undecoded bytes on, free the rest. */
static void hand_over(struct rill_decoder *d)
{
    struct rill_buf *rest = d->_cum;
    d->_cum = NULL;
    struct rill_channel *ch = rill_ctx_channel(d->_ctx);
    /* Until unregistered the handlers after this one are still there (a
     * switch during the last decode at inactive hands over too, as Netty). */
    if (rest && rill_buf_readable(rest) > 0 && !(d->_flags & DEC_FAILED) &&
        rill_channel_is_registered(ch)) {
        rill_ctx_fire_read(d->_ctx, &rest->msg);
        rill_ctx_fire_read_complete(d->_ctx);
    } else if (rest) {
        rill_buf_release(rest);
    }
    destroy(d);
}

static void run(struct rill_decoder *d);

void rill_decoder_on_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_decoder *d = dec_of(ctx);
    struct rill_buf *in = rill_buf_from_msg(msg);
    if (!in) {
        rill_ctx_fire_read(ctx, msg);
        return;
    }
    if (d->_flags & (DEC_FAILED | DEC_DESTROYED)) {
        rill_buf_release(in);
        return;
    }
    int rc = cumulate(d, in);
    if (rc) {
        fail_stream(d, rill_decoder_fail(d, rc, "decoder %s could not cumulate input: %s",
                                         rill_ctx_name(ctx), rill_strerror(rc)));
        return;
    }
    if (d->_flags & DEC_IN_READ)
        return; /* re-entered from a message we fired: the running loop sees the bytes */
    run(d);
}

void rill_decoder_decode_again(struct rill_decoder *d)
{
    if (d->_flags & (DEC_IN_READ | DEC_FAILED | DEC_DESTROYED | DEC_ENDED) || !d->_cum)
        return;
    run(d);
}

/* Decode what is held, then hand over, compact or fail as the result says. */
static void run(struct rill_decoder *d)
{
    struct rill_ctx *ctx = d->_ctx;
    d->_flags |= DEC_IN_READ;
    int rc = decode_loop(d);
    d->_flags &= ~DEC_IN_READ;
    if (d->_flags & DEC_REMOVED) {
        hand_over(d);
        return;
    }
    if (rc || !d->_cum)
        return;
    rc = compact(d);
    if (rc == 0 && d->_cum && rill_buf_readable(d->_cum) > d->_opt.max_cumulation)
        rc = rill_decoder_fail(
            d, RILL_ETOOLARGE, "decoder %s holds %zu undecoded bytes, more than its limit of %zu",
            rill_ctx_name(ctx), rill_buf_readable(d->_cum), d->_opt.max_cumulation);
    if (rc)
        fail_stream(d, rc);
}

void rill_decoder_on_read_complete(struct rill_ctx *ctx)
{
    struct rill_decoder *d = dec_of(ctx);
    bool emitted = d->_flags & DEC_EMITTED;
    d->_flags &= ~DEC_EMITTED;
    if (!emitted && !(d->_flags & DEC_FAILED)) {
        /* The next handler got nothing to act on, so it will not ask for
         * more: ask for it, or a channel without auto-read stalls. */
        int64_t auto_read = 1;
        rill_channel_get_option(rill_ctx_channel(ctx), RILL_OPT_AUTO_READ, &auto_read);
        if (!auto_read)
            rill_ctx_read_request(ctx);
    }
    rill_ctx_fire_read_complete(ctx);
}

/* End of input: decode what is left, then decode_last once. */
static void input_ended(struct rill_decoder *d)
{
    if (d->_flags & (DEC_ENDED | DEC_FAILED | DEC_DESTROYED))
        return;
    d->_flags |= DEC_ENDED | DEC_IN_READ;
    int rc = decode_loop(d);
    if (rc == 0 && !(d->_flags & (DEC_FAILED | DEC_REMOVED)) && d->_ops->decode_last) {
        if (!d->_cum)
            rc = rill_buf_alloc(0, &d->_cum);
        if (rc == 0) {
            d->_why[0] = '\0';
            rc = d->_ops->decode_last(d, d->_cum);
            if (rc == 0 && d->_err == -ENOMEM)
                rc = -ENOMEM;
        }
        if (rc < 0)
            fail_stream(d, rc);
        else
            fire_out(d);
    }
    d->_flags &= ~DEC_IN_READ;
    if (d->_flags & DEC_REMOVED) {
        hand_over(d);
        return;
    }
    drop_cumulation(d);
}

void rill_decoder_on_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct rill_decoder *d = dec_of(ctx);
    if (ev->type == RILL_EVENT_INPUT_SHUTDOWN)
        input_ended(d);
    rill_ctx_fire_user_event(ctx, ev);
}

void rill_decoder_on_inactive(struct rill_ctx *ctx)
{
    input_ended(dec_of(ctx));
    rill_ctx_fire_inactive(ctx);
}

void rill_decoder_on_removed(struct rill_ctx *ctx)
{
    struct rill_decoder *d = dec_of(ctx);
    if (!(d->_flags & DEC_READY))
        return;
    if (d->_flags & DEC_IN_READ) {
        d->_flags |= DEC_REMOVED; /* the running loop stops and hands over */
        return;
    }
    hand_over(d);
}
