/* Length-field framing: the decoder (Netty's LengthFieldBasedFrameDecoder)
 * and the prepender (LengthFieldPrepender). See include/rill/framing.h. */
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

static bool field_size_ok(unsigned n)
{
    return n == 1 || n == 2 || n == 3 || n == 4 || n == 8;
}

static uint64_t load_uint(const uint8_t *p, unsigned n, bool le)
{
    uint64_t v = 0;
    if (le)
        for (unsigned i = n; i-- > 0;)
            v = v << 8 | p[i];
    else
        for (unsigned i = 0; i < n; i++)
            v = v << 8 | p[i];
    return v;
}

static void store_uint(uint8_t *p, unsigned n, bool le, uint64_t v)
{
    for (unsigned i = 0; i < n; i++, v >>= 8)
        p[le ? i : n - 1 - i] = (uint8_t)v;
}

/* ---- decoder ---- */

struct lf_state {
    struct rill_decoder dec; /* first: the base finds it here */
    size_t max;
    size_t offset, end; /* the length field: [offset, end) from the frame start */
    size_t strip;
    int64_t adjust;
    unsigned size;
    bool le, fail_fast;
    bool have_len;    /* frame_len is the frame at the reader index */
    size_t frame_len; /* whole frame, header included */
    struct rill__discard discard;
};

static int lf_too_long(struct lf_state *s, struct rill_buf *in, uint64_t frame)
{
    return rill__discard_start(&s->discard, &s->dec, in, frame, "frame", s->max, s->fail_fast);
}

/* Read the length field of the frame at the reader index (readable >=
 * end) and check the frame length it gives. */
static int lf_read_length(struct lf_state *s, struct rill_buf *in)
{
    uint8_t tmp[8];
    size_t n;
    const uint8_t *p = rill_buf_read_ptr(in, &n);
    if (p) {
        p += s->offset;
    } else {
        rill_buf_get_bytes(in, rill_buf_reader_index(in) + s->offset, tmp, s->size);
        p = tmp;
    }
    uint64_t v = load_uint(p, s->size, s->le);
    int64_t total;
    if (v > INT64_MAX || __builtin_add_overflow((int64_t)v, s->adjust, &total) ||
        __builtin_add_overflow(total, (int64_t)s->end, &total))
        return rill_decoder_fail(
            &s->dec, RILL_EDECODE,
            "length field value %" PRIu64 " with adjustment %" PRId64 " overflows", v, s->adjust);
    if (total < (int64_t)s->end)
        return rill_decoder_fail(&s->dec, RILL_EDECODE,
                                 "frame length %" PRId64 " (length field %" PRIu64
                                 ", adjustment %" PRId64
                                 ") is less than the length field's end offset %zu",
                                 total, v, s->adjust, s->end);
    if ((uint64_t)total > s->max)
        return lf_too_long(s, in, (uint64_t)total);
    if ((uint64_t)total < s->strip)
        return rill_decoder_fail(&s->dec, RILL_EDECODE,
                                 "frame length %" PRId64
                                 " is less than the initial bytes to strip (%zu)",
                                 total, s->strip);
    s->frame_len = (size_t)total;
    s->have_len = true;
    return 0;
}

static int lf_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct lf_state *s = (struct lf_state *)d;
    if (s->discard.on)
        return rill__discard_more(&s->discard, d, in, "frame", s->max, s->fail_fast);
    size_t readable = rill_buf_readable(in);
    if (!s->have_len) {
        if (readable < s->end)
            return 0;
        int rc = lf_read_length(s, in);
        if (rc != 0 || !s->have_len)
            return rc;
    }
    if (readable < s->frame_len)
        return 0;
    s->have_len = false;
    rill_buf_skip(in, s->strip);
    return rill__frame_emit(d, in, s->frame_len - s->strip);
}

static const struct rill_decoder_ops lf_ops = { .decode = lf_decode };

static int lf_added(struct rill_ctx *ctx)
{
    struct lf_state *s = rill_ctx_state(ctx);
    const struct rill_length_field_config *c = rill_ctx_arg(ctx);
    static const struct rill_length_field_config defaults;
    if (!c)
        c = &defaults;
    s->size = c->length_field_size ? c->length_field_size : 4;
    s->max = c->max_frame_length ? c->max_frame_length : RILL_FRAME_DEFAULT_MAX;
    s->offset = c->length_field_offset;
    s->le = c->little_endian;
    s->adjust = c->length_adjustment;
    s->strip = c->initial_bytes_to_strip;
    s->fail_fast = c->fail_fast;
    if (!field_size_ok(s->size) || s->max > INT64_MAX || s->max < s->size ||
        s->offset > s->max - s->size || s->strip > s->max)
        return -EINVAL;
    s->end = s->offset + s->size;
    struct rill_decoder_options opt;
    rill__frame_options(&opt, &c->dec, s->max);
    return rill_decoder_init(&s->dec, ctx, &lf_ops, &opt);
}

const struct rill_handler rill_length_field_decoder = {
    .name = "length-field-decoder",
    .ctx_size = sizeof(struct lf_state),
    .added = lf_added,
    RILL_DECODER_CALLBACKS,
};

/* ---- prepender ---- */

struct lp_state {
    unsigned size;
    bool le, includes;
    int64_t adjust;
};

/* Payloads up to this size are copied behind the header by
 * rill_encoder_append (encoder.h), larger ones become a component. */
#define APPEND_COPY_MAX RILL_ENCODER_APPEND_COPY_MAX

static bool lp_match(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    return msg->type == RILL_MSG_BUF;
}

static size_t lp_size_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    const struct lp_state *s = rill_ctx_state(ctx);
    size_t n = rill_buf_readable((const struct rill_buf *)msg);
    return s->size + (n <= APPEND_COPY_MAX ? n : 0);
}

static int lp_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    const struct lp_state *s = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    size_t n = rill_buf_readable(b);
    int64_t len;
    bool over = n > INT64_MAX || __builtin_add_overflow((int64_t)n, s->adjust, &len) ||
                (s->includes && __builtin_add_overflow(len, (int64_t)s->size, &len));
    if (!over && len < 0) {
        RILL_DEBUGF("length-field prepender: length %" PRId64 " of a %zu-byte payload is negative",
                    len, n);
        return -ERANGE;
    }
    if (over || (s->size < 8 && (uint64_t)len >> (8 * s->size) != 0)) {
        RILL_DEBUGF("length-field prepender: the length of a %zu-byte payload does not fit a "
                    "%u-byte field",
                    n, s->size);
        return RILL_ETOOLARGE;
    }
    uint8_t hdr[8];
    store_uint(hdr, s->size, s->le, (uint64_t)len);
    int rc = rill_buf_write_bytes(*out, hdr, s->size);
    if (rc == 0 && n)
        rc = rill_encoder_append(out, rill_buf_retain(b));
    return rc;
}

static const struct rill_encoder_ops lp_ops = {
    .match = lp_match,
    .size_hint = lp_size_hint,
    .encode = lp_encode,
};

static int lp_added(struct rill_ctx *ctx)
{
    struct lp_state *s = rill_ctx_state(ctx);
    const struct rill_length_prepender_config *c = rill_ctx_arg(ctx);
    static const struct rill_length_prepender_config defaults;
    if (!c)
        c = &defaults;
    s->size = c->length_field_size ? c->length_field_size : 4;
    s->le = c->little_endian;
    s->includes = c->length_includes_field;
    s->adjust = c->length_adjustment;
    return field_size_ok(s->size) ? 0 : -EINVAL;
}

static void lp_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill_encoder_write(ctx, &lp_ops, msg, p);
}

const struct rill_handler rill_length_field_prepender = {
    .name = "length-field-prepender",
    .ctx_size = sizeof(struct lp_state),
    .added = lp_added,
    .write = lp_write,
};
