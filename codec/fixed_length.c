/* Fixed-length framing (Netty's FixedLengthFrameDecoder). See
 * include/rill/framing.h. */
#include <errno.h>

#include "codec/framing_internal.h"
#include "rill/buf.h"
#include "rill/framing.h"
#include "rill/pipeline.h"

struct fixed_state {
    struct rill_decoder dec; /* first: the base finds it here */
    size_t len;
};

static int fixed_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct fixed_state *s = (struct fixed_state *)d;
    if (rill_buf_readable(in) < s->len)
        return 0;
    return rill__frame_emit(d, in, s->len);
}

static const struct rill_decoder_ops fixed_ops = { .decode = fixed_decode };

static int fixed_added(struct rill_ctx *ctx)
{
    struct fixed_state *s = rill_ctx_state(ctx);
    const struct rill_fixed_length_config *c = rill_ctx_arg(ctx);
    if (!c || c->frame_length == 0)
        return -EINVAL;
    s->len = c->frame_length;
    struct rill_decoder_options opt;
    rill__frame_options(&opt, &c->dec, s->len);
    return rill_decoder_init(&s->dec, ctx, &fixed_ops, &opt);
}

const struct rill_handler rill_fixed_length_decoder = {
    .name = "fixed-length-decoder",
    .ctx_size = sizeof(struct fixed_state),
    .added = fixed_added,
    RILL_DECODER_CALLBACKS,
};
