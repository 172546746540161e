/* The RESP codec handler: the decoder base running the RESP decode step,
 * an encoder for RESP messages written through it, and the per-connection
 * reply buffer that keeps a read batch's replies in one write. */
#include <errno.h>
#include <stdint.h>

#include "codec/resp/resp_internal.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/encoder.h"
#include "rill/pipeline.h"
#include "rill/resp.h"

#define DEFAULT_MAX_DEPTH    32u
#define DEFAULT_MAX_ELEMENTS (1024u * 1024u)
#define DEFAULT_MAX_BULK     (512ull * 1024 * 1024)
#define DEFAULT_MAX_LINE     (64u * 1024u)
#define OUT_INITIAL          4096u

static struct rill__resp_codec *codec_of(struct rill_ctx *ctx)
{
    struct rill__resp_codec *c = ctx ? rill_ctx_state(ctx) : NULL;
    return c && c->magic == RILL__RESP_MAGIC ? c : NULL;
}

/* Write the pending replies toward the head (from the codec's place, so
 * handlers before it, like TLS, see them) and flush when asked. */
void rill__resp_write_out(struct rill__resp_codec *c, bool flush)
{
    struct rill_ctx *ctx = c->dec._ctx;
    struct rill_buf *b = c->out;
    if (b && rill_buf_readable(b) > 0) {
        c->out = NULL;
        rill_ctx_write(ctx, &b->msg, NULL);
    }
    if (flush)
        rill_ctx_flush(ctx);
}

static void codec_destroy(struct rill_decoder *d)
{
    struct rill__resp_codec *c = (struct rill__resp_codec *)d;
    rill__resp_parser_free(&c->ps);
    if (c->out) {
        /* Removed from a live channel (a protocol switch): the replies
         * still go out; otherwise there is no one to send them to. */
        if (rill_buf_readable(c->out) > 0 && rill_channel_is_active(rill_ctx_channel(d->_ctx))) {
            rill__resp_write_out(c, true);
        } else {
            rill_buf_release(c->out);
            c->out = NULL;
        }
    }
    c->magic = 0;
}

static const struct rill_decoder_ops resp_dec_ops = {
    .decode = rill__resp_decode,
    .destroy = codec_destroy,
};

static int codec_added(struct rill_ctx *ctx)
{
    struct rill__resp_codec *c = rill_ctx_state(ctx);
    const struct rill_resp_config *cfg = rill_ctx_arg(ctx);
    if (cfg)
        c->cfg = *cfg;
    struct rill_resp_config *k = &c->cfg;
    if (k->mode != RILL_RESP_MODE_ANY && k->mode != RILL_RESP_MODE_COMMANDS)
        return -EINVAL;
    if (k->proto == 0)
        k->proto = 2;
    if (k->proto != 2 && k->proto != 3)
        return -EINVAL;
    if (!k->max_depth)
        k->max_depth = DEFAULT_MAX_DEPTH;
    if (!k->max_elements)
        k->max_elements = DEFAULT_MAX_ELEMENTS;
    if (!k->max_bulk)
        k->max_bulk = DEFAULT_MAX_BULK;
    if (!k->max_line)
        k->max_line = DEFAULT_MAX_LINE;
    struct rill_decoder_options o = k->dec;
    if (!o.max_cumulation)
        o.max_cumulation =
            k->max_bulk > SIZE_MAX - (2u << 20) ? SIZE_MAX : (size_t)k->max_bulk + (1u << 20);
    o.keep_open_on_error = false;
    c->proto = k->proto;
    c->magic = RILL__RESP_MAGIC;
    return rill_decoder_init(&c->dec, ctx, &resp_dec_ops, &o);
}

static void codec_read_complete(struct rill_ctx *ctx)
{
    rill_decoder_on_read_complete(ctx);
    /* The batch is over for every handler after us: its replies go out
     * in one write. */
    struct rill__resp_codec *c = codec_of(ctx);
    if (c && !rill_ctx_is_removed(ctx) && c->out && rill_buf_readable(c->out) > 0)
        rill__resp_write_out(c, true);
}

static bool enc_match(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    return msg->type == RILL_MSG_RESP;
}

static size_t enc_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    const struct rill_resp *r = (const struct rill_resp *)msg;
    return 64 + (size_t)r->nvals * 16;
}

static int enc_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    struct rill__resp_codec *c = rill_ctx_state(ctx);
    struct rill_resp *r = (struct rill_resp *)msg;
    return rill_resp_encode(out, r, rill_resp_root(r), c->proto);
}

static const struct rill_encoder_ops resp_enc_ops = {
    .match = enc_match,
    .size_hint = enc_hint,
    .encode = enc_encode,
};

static void codec_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct rill__resp_codec *c = rill_ctx_state(ctx);
    if (c->out && rill_buf_readable(c->out) > 0)
        rill__resp_write_out(c, false); /* earlier replies first */
    rill_encoder_write(ctx, &resp_enc_ops, msg, p);
}

static void codec_flush(struct rill_ctx *ctx)
{
    struct rill__resp_codec *c = rill_ctx_state(ctx);
    if (c->magic == RILL__RESP_MAGIC && c->out && rill_buf_readable(c->out) > 0)
        rill__resp_write_out(c, false);
    rill_ctx_flush(ctx);
}

const struct rill_handler rill_resp_codec = {
    .name = "resp",
    .ctx_size = sizeof(struct rill__resp_codec),
    .added = codec_added,
    .read = rill_decoder_on_read,
    .read_complete = codec_read_complete,
    .user_event = rill_decoder_on_user_event,
    .inactive = rill_decoder_on_inactive,
    .removed = rill_decoder_on_removed,
    .write = codec_write,
    .flush = codec_flush,
};

int rill_resp_set_proto(struct rill_ctx *codec_ctx, int proto)
{
    struct rill__resp_codec *c = codec_of(codec_ctx);
    if (!c || (proto != 2 && proto != 3))
        return -EINVAL;
    c->proto = proto;
    return 0;
}

int rill_resp_get_proto(struct rill_ctx *codec_ctx)
{
    struct rill__resp_codec *c = codec_of(codec_ctx);
    return c ? c->proto : -EINVAL;
}

struct rill_buf **rill_resp_out(struct rill_ctx *codec_ctx)
{
    struct rill__resp_codec *c = codec_of(codec_ctx);
    if (!c)
        return NULL;
    if (!c->out && rill_buf_alloc(OUT_INITIAL, &c->out) != 0) {
        c->out = NULL;
        return NULL;
    }
    return &c->out;
}

void rill_resp_flush(struct rill_ctx *codec_ctx)
{
    struct rill__resp_codec *c = codec_of(codec_ctx);
    if (c)
        rill__resp_write_out(c, true);
}
