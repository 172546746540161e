/* The message-to-byte encoder base (Netty's MessageToByteEncoder).
 *
 * An encoder turns the messages it matches into one rill_buf each and
 * writes that on toward the head with the original promise; other messages
 * pass untouched. The base hands the encode step a pooled buffer sized by
 * the size hint; the step writes into it, or builds a composite that
 * carries the message's own buffers without copying through
 * rill_encoder_append() (a length prefix in front of a large payload costs
 * no copy of the payload).
 *
 *     static int frame_encode(struct rill_ctx *ctx, struct rill_msg *m,
 *                             struct rill_buf **out) {
 *         struct rill_buf *b = rill_buf_from_msg(m);
 *         int rc = rill_buf_write_u32_be(*out, rill_buf_readable(b));
 *         return rc ? rc : rill_encoder_append(out, rill_buf_retain(b));
 *     }
 *     static const struct rill_encoder_ops frame_ops = {.encode = frame_encode};
 *     rill_pipeline_add_last(pl, "framer", &rill_encoder_handler, (void *)&frame_ops);
 *
 * A codec that needs state or also decodes calls rill_encoder_write() from
 * its own write callback instead of using rill_encoder_handler.
 *
 * Errors: when the encode step fails, the message is released, nothing is
 * written, and the write's promise fails with the step's error; a write
 * without a promise fires an exception event from the head instead, so the
 * failure is never silent.
 *
 * Thread: loop thread only (the channel's), like every handler callback. */
#ifndef RILL_ENCODER_H
#define RILL_ENCODER_H

#include <stdbool.h>
#include <stddef.h>

struct rill_buf;
struct rill_ctx;
struct rill_handler;
struct rill_msg;
struct rill_promise;

struct rill_encoder_ops {
    /* Optional. True when this encoder encodes @msg (borrowed); others are
     * written on untouched. NULL: every message. */
    bool (*match)(struct rill_ctx *ctx, const struct rill_msg *msg);
    /* Optional. Bytes to reserve in the output buffer (a guess is fine: it
     * grows). NULL or 0: 256. */
    size_t (*size_hint)(struct rill_ctx *ctx, const struct rill_msg *msg);
    /* Required. Encode @msg (borrowed: the base releases it afterwards;
     * retain what you append) into *@out, a pooled buffer that the step
     * owns through *@out and may replace. Returns 0 or < 0. */
    int (*encode)(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out);
};

/* Loop thread. Encode @msg with @ops when it matches and write the result
 * on from @ctx, else write @msg on as it is. Takes ownership of @msg;
 * @p (may be NULL) completes with the write of the encoded bytes, or fails
 * with the encode error. */
void rill_encoder_write(struct rill_ctx *ctx, const struct rill_encoder_ops *ops,
                        struct rill_msg *msg, struct rill_promise *p);

/* Appended buffers up to this many bytes are copied (size hints may count
 * them); larger ones become composite components. */
#define RILL_ENCODER_APPEND_COPY_MAX 512

/* Loop thread. Append the readable bytes of @b to *@out; takes ownership
 * of @b on every path; @b's indices don't move (it may be shared). Small buffers (up to 512 bytes)
 * are copied into
 * *@out; larger ones are added without copying, turning *@out into a
 * composite of what it held and @b. Returns 0 or -ENOMEM (then *@out is
 * unchanged and @b released). */
int rill_encoder_append(struct rill_buf **out, struct rill_buf *b);

/* A stateless encoder handler: add it with a `const struct
 * rill_encoder_ops *` as its arg (which must outlive the pipeline). */
extern const struct rill_handler rill_encoder_handler;

#endif /* RILL_ENCODER_H */
