/* The byte-to-message decoder base (Netty's ByteToMessageDecoder): every
 * rill decoder (framing, HTTP, RESP, RPC) is built on it, and so can yours.
 *
 * The base cumulates inbound rill_bufs, calls the protocol's decode step
 * until it makes no progress, and passes the messages it emits down the
 * pipeline. Cumulation copies only small data: the first buffer is kept as
 * it is; a small one arriving behind small leftovers is copied into the
 * cumulation, anything larger is appended to a composite without copying.
 * Frames cut with rill_buf_read_slice() are therefore views of the bytes
 * the transport read, not copies.
 *
 * A decoder is a handler whose per-context state begins with a struct
 * rill_decoder:
 *
 *     struct line_state { struct rill_decoder dec; size_t max; };
 *
 *     static int line_decode(struct rill_decoder *d, struct rill_buf *in) {
 *         ... find a frame at in's reader index; if complete:
 *         rill_buf_read_slice(in, n, &frame); rill_decoder_emit(d, &frame->msg);
 *         return 0;   (also when more bytes are needed)
 *     }
 *     static const struct rill_decoder_ops line_ops = {.decode = line_decode};
 *     static int line_added(struct rill_ctx *ctx) {
 *         struct line_state *s = rill_ctx_state(ctx);
 *         s->max = ...from rill_ctx_arg(ctx)...;
 *         return rill_decoder_init(&s->dec, ctx, &line_ops, NULL);
 *     }
 *     const struct rill_handler line_handler = {
 *         .name = "line", .ctx_size = sizeof(struct line_state),
 *         .added = line_added, RILL_DECODER_CALLBACKS,
 *     };
 *
 * The decode step sees the cumulation at its reader index. It consumes by
 * moving the reader index (rill_buf_read_slice, rill_buf_skip, reads) and
 * emits zero or more messages. "No progress" (nothing consumed, nothing
 * emitted) means it needs more bytes; emitting without consuming is a bug
 * reported as RILL_EDECODE. Returning an error (< 0, best made with
 * rill_decoder_fail for a clear text) stops decoding for good: the
 * cumulation is released, later input is dropped, an exception event with
 * the error and the text travels down the pipeline, and the channel is
 * closed unless the options say otherwise.
 *
 * Errors the stream survives (a frame over its limit that the decoder
 * skipped) are raised with rill_decoder_raise instead: the exception event
 * fires, the channel closes unless keep_open_on_error is set, and the
 * decoder goes on otherwise.
 *
 * Messages that are not rill_bufs pass through untouched. When the channel
 * goes inactive, or the peer shuts its output down, what is left is decoded
 * once more and then given to decode_last once. When the decoder is
 * removed (or replaced: a protocol switch) the bytes it holds undecoded are
 * fired to the next handler as one rill_buf, so nothing is lost.
 *
 * Thread: everything here runs on the channel's loop thread (the handler's
 * callbacks, and the functions called from the decode step). */
#ifndef RILL_DECODER_H
#define RILL_DECODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/common.h"

struct rill_buf;
struct rill_ctx;
struct rill_event;
struct rill_msg;
struct rill_decoder;

struct rill_decoder_ops {
    /* Required. Decode from @in (borrowed: the cumulation, readable from
     * its reader index). Returns 0 (progress or "need more"), or < 0 to
     * fail the stream. */
    int (*decode)(struct rill_decoder *d, struct rill_buf *in);
    /* Optional. Called once when the input ends (inactive or input
     * shutdown) after decode has run out of progress; @in holds what is
     * left (possibly nothing). Returns 0 or < 0 as decode. A NULL
     * decode_last drops leftovers silently. */
    int (*decode_last)(struct rill_decoder *d, struct rill_buf *in);
    /* Optional. Release the protocol's own state (the context is being
     * removed); the base releases the cumulation itself. */
    void (*destroy)(struct rill_decoder *d);
    /* Optional. The stream failed for good (@err < 0 with its text, whether
     * the decode step returned it or the base found it: cumulation limit,
     * no memory, emit without consuming). Called before the exception event
     * and the close, so a protocol can write its last answer (an HTTP 400,
     * a RESP -ERR, a GOAWAY) and flush it: it goes out before the close.
     * Must not emit. */
    void (*failed)(struct rill_decoder *d, int err, const char *why);
};

/* The cumulation limit when the options leave it 0. */
#define RILL_DECODER_DEFAULT_MAX_CUMULATION ((size_t)1 << 20)

struct rill_decoder_options {
    /* Largest cumulation in bytes (undecoded bytes held between reads);
     * more fails the stream with RILL_ETOOLARGE. 0: the default, 1 MiB.
     * Protocols with their own frame limits check those in decode. */
    size_t max_cumulation;
    /* Decode at most one message per read (for protocol switches: the
     * handler after the decoder may replace it before the next one). */
    bool single_decode;
    /* Keep the channel open after an error: a failed decoder drops all
     * later input, a raised (recoverable) error lets decoding go on.
     * Default false: close on any decode error. */
    bool keep_open_on_error;
};

/* The base's state, first member of the decoder's context state. The
 * fields are private: use the functions below. */
struct rill_decoder {
    const struct rill_decoder_ops *_ops;
    struct rill_ctx *_ctx;
    struct rill_buf *_cum;
    struct rill_msg **_out; /* messages emitted by the running decode step */
    uint32_t _nout, _aout;
    struct rill_decoder_options _opt;
    uint32_t _flags;
    int _err;
    char _why[160];
};

/* Loop thread. Set up @d (inside the context state of @ctx) for @ops,
 * which must outlive the context. @opt may be NULL (defaults); it is
 * copied. Call it from the handler's added(). Returns 0 or -EINVAL. */
int rill_decoder_init(struct rill_decoder *d, struct rill_ctx *ctx,
                      const struct rill_decoder_ops *ops, const struct rill_decoder_options *opt);

/* Loop thread (decode step). Emit @msg downstream; takes ownership. The
 * messages emitted by one decode call are fired in order after it
 * returns. */
void rill_decoder_emit(struct rill_decoder *d, struct rill_msg *msg);

/* Loop thread (decode step). Record why decoding failed and return @err,
 * so a decode step can end with `return rill_decoder_fail(d, RILL_ETOOLARGE,
 * "line of %zu bytes exceeds %zu", n, max);`. The text (printf format,
 * truncated to 159 bytes) travels with the exception event. */
int rill_decoder_fail(struct rill_decoder *d, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Loop thread (decode step). Report a recoverable error (Netty's
 * TooLongFrameException after the frame was discarded): the exception event
 * (@err, the text) fires after the messages emitted before it, and the
 * channel is closed unless the options keep it open; decoding goes on
 * while it is open. Returns 0, so a decode step can `return
 * rill_decoder_raise(...)` after skipping the bad bytes. */
int rill_decoder_raise(struct rill_decoder *d, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Loop thread. The options in force (copied at init). */
const struct rill_decoder_options *rill_decoder_options(const struct rill_decoder *d);

/* The context the decoder runs in (borrowed). */
static inline struct rill_ctx *rill_decoder_ctx(const struct rill_decoder *d)
{
    return d->_ctx;
}

/* Loop thread. Undecoded bytes currently held (0 when none). */
size_t rill_decoder_pending(const struct rill_decoder *d);

/* Loop thread. The error that stopped the decoder, or 0 while it runs. */
int rill_decoder_error(const struct rill_decoder *d);

/* Loop thread. Run the decode step again over the bytes held, as if input
 * had arrived: for a protocol whose step returned "no progress" because of
 * outside state (a pause, a pending upgrade) that has now changed. Does
 * nothing inside the decoder's own callbacks, after a failure or the end of
 * input, or when nothing is held. */
void rill_decoder_decode_again(struct rill_decoder *d);

/* Loop thread. Change single-decode mode at run time (for a handler that
 * switches protocols after the first message). */
void rill_decoder_set_single(struct rill_decoder *d, bool single);

/* Handler callbacks of the base; they find the struct rill_decoder at the
 * start of the context state. Put RILL_DECODER_CALLBACKS in the handler
 * table; a codec that needs its own version of one of them calls the base's
 * from it. */
void rill_decoder_on_read(struct rill_ctx *ctx, struct rill_msg *msg);
void rill_decoder_on_read_complete(struct rill_ctx *ctx);
void rill_decoder_on_user_event(struct rill_ctx *ctx, const struct rill_event *ev);
void rill_decoder_on_inactive(struct rill_ctx *ctx);
void rill_decoder_on_removed(struct rill_ctx *ctx);

#define RILL_DECODER_CALLBACKS                                                                     \
    .read = rill_decoder_on_read, .read_complete = rill_decoder_on_read_complete,                  \
    .user_event = rill_decoder_on_user_event, .inactive = rill_decoder_on_inactive,                \
    .removed = rill_decoder_on_removed

#endif /* RILL_DECODER_H */
