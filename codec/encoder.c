/* The message-to-byte encoder base. See rill/encoder.h. */
#include "rill/encoder.h"

#include <errno.h>
#include <stdio.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/composite.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/pipeline.h"

#define DEFAULT_SIZE_HINT 256
/* A copy of a few hundred bytes is cheaper than one more iovec (and
 * component) on the way to writev. */
#define APPEND_COPY_MAX RILL_ENCODER_APPEND_COPY_MAX

static void fail_write(struct rill_ctx *ctx, struct rill_promise *p, int err)
{
    RILL_DEBUGF("channel %llu: encoder %s failed: %s",
                (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)), rill_ctx_name(ctx),
                rill_strerror(err));
    if (p) {
        rill_promise_fail(p, err);
        return;
    }
    /* Nobody listens to this write: tell the pipeline, as Netty does for
     * a void promise, or the failure would go unnoticed. */
    char why[96];
    snprintf(why, sizeof(why), "encoder %s could not encode a message: %s", rill_ctx_name(ctx),
             rill_strerror(err));
    rill_pipeline_fire_exception(rill_ctx_pipeline(ctx), err, why);
}

void rill_encoder_write(struct rill_ctx *ctx, const struct rill_encoder_ops *ops,
                        struct rill_msg *msg, struct rill_promise *p)
{
    if (ops->match && !ops->match(ctx, msg)) {
        rill_ctx_write(ctx, msg, p);
        return;
    }
    size_t hint = ops->size_hint ? ops->size_hint(ctx, msg) : 0;
    struct rill_buf *out;
    int rc = rill_buf_alloc(hint ? hint : DEFAULT_SIZE_HINT, &out);
    if (rc) {
        rill_msg_release(msg);
        fail_write(ctx, p, rc);
        return;
    }
    rc = ops->encode(ctx, msg, &out);
    rill_msg_release(msg);
    if (rc) {
        rill_buf_release(out);
        fail_write(ctx, p, rc);
        return;
    }
    rill_ctx_write(ctx, &out->msg, p);
}

int rill_encoder_append(struct rill_buf **out, struct rill_buf *b)
{
    size_t n = rill_buf_readable(b);
    int rc = 0;
    if (n == 0) {
        rill_buf_release(b);
        return 0;
    }
    if (n <= APPEND_COPY_MAX) {
        /* Copy without moving @b's reader index: the caller may share @b
         * (a retained message buffer), and the large path leaves it too. */
        size_t rd = rill_buf_reader_index(b);
        rc = rill_buf_write_buf(*out, b, n);
        rill_buf_set_reader_index(b, rd);
        rill_buf_release(b);
        return rc;
    }
    if (rill_buf_kind(*out) == RILL_BUF_COMPOSITE)
        return rill_buf_composite_add(*out, b);
    struct rill_buf *c;
    rc = rill_buf_composite_new(&c);
    if (rc) {
        rill_buf_release(b);
        return rc;
    }
    if (rill_buf_readable(*out) > 0) {
        /* The composite takes a reference of its own, so *out is still
         * ours, unchanged, if this fails. */
        rc = rill_buf_composite_add(c, rill_buf_retain(*out));
        if (rc) {
            rill_buf_release(c);
            rill_buf_release(b);
            return rc;
        }
    }
    rc = rill_buf_composite_add(c, b);
    if (rc) {
        rill_buf_release(c);
        return rc;
    }
    rill_buf_release(*out);
    *out = c;
    return 0;
}

static int encoder_added(struct rill_ctx *ctx)
{
    const struct rill_encoder_ops *ops = rill_ctx_arg(ctx);
    return ops && ops->encode ? 0 : -EINVAL;
}

static void encoder_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill_encoder_write(ctx, rill_ctx_arg(ctx), msg, p);
}

const struct rill_handler rill_encoder_handler = {
    .name = "encoder",
    .added = encoder_added,
    .write = encoder_write,
};
