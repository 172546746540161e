/* Varint32 framing (Netty's ProtobufVarint32FrameDecoder and
 * ProtobufVarint32LengthFieldPrepender). See include/rill/framing.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>

#include "codec/framing_internal.h"
#include "rill/buf.h"
#include "rill/encoder.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/log.h"
#include "rill/msg.h"
#include "rill/pipeline.h"

#define VARINT32_MAX_BYTES 5

/* ---- decoder ---- */

struct varint_state {
    struct rill_decoder dec; /* first: the base finds it here */
    size_t max;
    bool fail_fast;
    struct rill__discard discard;
};

static int varint_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct varint_state *s = (struct varint_state *)d;
    if (s->discard.on)
        return rill__discard_more(&s->discard, d, in, "varint frame", s->max, s->fail_fast);
    size_t n;
    const uint8_t *p = rill_buf_read_ptr(in, &n);
    n = rill_buf_readable(in);
    uint8_t tmp[VARINT32_MAX_BYTES];
    size_t look = n < VARINT32_MAX_BYTES ? n : VARINT32_MAX_BYTES;
    if (!p) {
        rill_buf_get_bytes(in, rill_buf_reader_index(in), tmp, look);
        p = tmp;
    }
    uint64_t v = 0;
    size_t hdr = 0;
    for (size_t i = 0; i < look; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            hdr = i + 1;
            break;
        }
    }
    if (hdr == 0) {
        if (look < VARINT32_MAX_BYTES)
            return 0;
        return rill_decoder_fail(d, RILL_EDECODE, "malformed varint32 length: more than %d bytes",
                                 VARINT32_MAX_BYTES);
    }
    if (v > INT32_MAX)
        return rill_decoder_fail(d, RILL_EDECODE,
                                 "varint32 frame length %" PRIu64 " exceeds INT32_MAX", v);
    if (v > s->max) {
        rill_buf_skip(in, hdr);
        return rill__discard_start(&s->discard, d, in, v, "varint frame", s->max, s->fail_fast);
    }
    if (n - hdr < v)
        return 0;
    rill_buf_skip(in, hdr);
    return rill__frame_emit(d, in, (size_t)v);
}

static const struct rill_decoder_ops varint_ops = { .decode = varint_decode };

static int varint_added(struct rill_ctx *ctx)
{
    struct varint_state *s = rill_ctx_state(ctx);
    const struct rill_varint_config *c = rill_ctx_arg(ctx);
    static const struct rill_varint_config defaults;
    if (!c)
        c = &defaults;
    s->max = c->max_frame_length ? c->max_frame_length : RILL_FRAME_DEFAULT_MAX;
    s->fail_fast = c->fail_fast;
    /* Larger frames can't be described by a varint32 anyway. */
    if (s->max > INT32_MAX)
        s->max = INT32_MAX;
    struct rill_decoder_options opt;
    rill__frame_options(&opt, &c->dec, s->max + VARINT32_MAX_BYTES);
    return rill_decoder_init(&s->dec, ctx, &varint_ops, &opt);
}

const struct rill_handler rill_varint_decoder = {
    .name = "varint-decoder",
    .ctx_size = sizeof(struct varint_state),
    .added = varint_added,
    RILL_DECODER_CALLBACKS,
};

/* ---- prepender ---- */

/* Payloads up to this size are copied behind the header by
 * rill_encoder_append (encoder.h), larger ones become a component. */
#define APPEND_COPY_MAX RILL_ENCODER_APPEND_COPY_MAX

static bool vp_match(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    return msg->type == RILL_MSG_BUF;
}

static size_t vp_size_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    size_t n = rill_buf_readable((const struct rill_buf *)msg);
    return VARINT32_MAX_BYTES + (n <= APPEND_COPY_MAX ? n : 0);
}

static int vp_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    struct rill_buf *b = rill_buf_from_msg(msg);
    size_t n = rill_buf_readable(b);
    if (n > INT32_MAX) {
        RILL_DEBUGF("varint prepender: a %zu-byte payload exceeds INT32_MAX", n);
        return RILL_ETOOLARGE;
    }
    uint8_t hdr[VARINT32_MAX_BYTES];
    size_t len = 0;
    uint32_t v = (uint32_t)n;
    do {
        hdr[len++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    int rc = rill_buf_write_bytes(*out, hdr, len);
    if (rc == 0 && n)
        rc = rill_encoder_append(out, rill_buf_retain(b));
    return rc;
}

static const struct rill_encoder_ops vp_ops = {
    .match = vp_match,
    .size_hint = vp_size_hint,
    .encode = vp_encode,
};

static void vp_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill_encoder_write(ctx, &vp_ops, msg, p);
}

const struct rill_handler rill_varint_prepender = {
    .name = "varint-prepender",
    .write = vp_write,
};
