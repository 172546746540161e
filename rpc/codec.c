/* The RPC frame codec: preamble (sent by clients, checked by servers),
 * frame decoding on the decoder base (payloads are slices of the input),
 * frame encoding on the encoder base (payloads appended without copying),
 * and name interning per connection and direction. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/decoder.h"
#include "rill/encoder.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/pipeline.h"
#include "rill/rpc_status.h"
#include "rpc/rpc_internal.h"

struct codec {
    struct rill_decoder dec; /* first: the decoder base finds it here */
    struct rill_rpc_codec_opts o;
    uint8_t auth[RILL_RPC_AUTH_MAX];
    bool preamble_done; /* server: checked; client: sent */
    bool frame_seen;    /* a frame was decoded (client: HTTP detection) */
    struct rill__rpc_intern enc;
    uint64_t bytes_in, bytes_out; /* decoded and written by the codec */
    struct {
        char *service, *method;
    } * dec_names;
    uint32_t ndec, adec;
};

void rill_rpc_codec_opts_init(struct rill_rpc_codec_opts *o, enum rill_rpc_role role)
{
    *o = (struct rill_rpc_codec_opts){ .role = role,
                                       .max_frame = RILL_RPC_MAX_FRAME_DEFAULT,
                                       .version = RILL_RPC_VERSION };
}

static struct codec *codec_of(struct rill_ctx *ctx)
{
    return rill_ctx_state(ctx);
}

/* The codec publishes itself on its channel so that the handlers after it
 * can ask what it will send (rpc_internal.h). */
static const struct rill_attr_key codec_key = { "rpc-codec", NULL };

int rill__rpc_codec_interned(struct rill_channel *ch, const char *service, const char *method)
{
    struct codec *c = rill_channel_attr_get(ch, &codec_key);
    if (!c)
        return -ENOENT;
    return rill__rpc_intern_find(&c->enc, service, method) != 0;
}

int rill__rpc_codec_bytes(struct rill_channel *ch, uint64_t *in, uint64_t *out)
{
    struct codec *c = rill_channel_attr_get(ch, &codec_key);
    if (!c)
        return -ENOENT;
    *in = c->bytes_in;
    *out = c->bytes_out;
    return 0;
}

/* Write @b from the codec's context toward the head, counted. */
static void write_counted(struct codec *c, struct rill_ctx *ctx, struct rill_buf *b)
{
    c->bytes_out += rill_buf_readable(b);
    rill_ctx_write_and_flush(ctx, &b->msg, NULL);
}

/* ---- goaway ---- */

struct close_after {
    struct rill_channel *ch;
    int reason;
};

static void close_after_write(struct rill_promise *p, void *arg)
{
    struct close_after *ca = arg;
    rill_channel_close_with(ca->ch, ca->reason, NULL);
    rill_channel_release(ca->ch);
    free(ca);
}

void rill_rpc_goaway_and_close(struct rill_ctx *ctx, int status, const char *msg, int reason)
{
    struct rill_channel *ch = rill_ctx_channel(ctx);
    struct rill_rpc_frame *f;
    struct rill_promise *p = NULL;
    struct close_after *ca = malloc(sizeof(*ca));
    if (!ca || rill_promise_new(rill_channel_loop(ch), &p) != 0) {
        free(ca);
        rill_channel_close_with(ch, reason, NULL);
        return;
    }
    *ca = (struct close_after){ .ch = rill_channel_retain(ch), .reason = reason };
    if (rill_promise_add_listener(p, close_after_write, ca) != 0) {
        rill_channel_release(ch);
        free(ca);
        rill_promise_release(p);
        rill_channel_close_with(ch, reason, NULL);
        return;
    }
    if (rill_rpc_frame_new(RILL_RPC_GOAWAY, 0, &f) == 0) {
        rill_rpc_frame_set_status(f, status, msg);
        rill_ctx_write_and_flush(ctx, &f->msg, p);
    } else {
        rill_promise_fail(p, -ENOMEM);
    }
    rill_promise_release(p);
}

/* Write raw bytes toward the head from the codec (the decode step's answer
 * to a bad preamble); the base closes the channel right after, and a flush
 * hands the bytes to the kernel at once, so they go out first. */
static void write_raw(struct codec *c, const void *data, size_t len)
{
    struct rill_buf *b;
    if (rill_buf_copy_from(data, len, &b) == 0)
        write_counted(c, rill_decoder_ctx(&c->dec), b);
}

/* Encode a GOAWAY directly (the codec's own write slot is not on the path
 * of a write made from its context). */
static void write_goaway(struct codec *c, int status, const char *msg)
{
    struct rill_rpc_frame *f;
    if (rill_rpc_frame_new(RILL_RPC_GOAWAY, 0, &f) != 0)
        return;
    rill_rpc_frame_set_status(f, status, msg);
    struct rill_buf *b;
    if (rill_buf_alloc(64 + (msg ? strlen(msg) : 0), &b) == 0) {
        if (rill__rpc_encode(f, &c->enc, SIZE_MAX, &b) == 0)
            write_counted(c, rill_decoder_ctx(&c->dec), b);
        else
            rill_buf_release(b);
    }
    rill_rpc_frame_release(f);
}

/* Fail the stream: tell the peer why (GOAWAY), then let the base close. */
static int fail(struct codec *c, int err, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct codec *c, int err, int status, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    write_goaway(c, status, why);
    return rill_decoder_fail(&c->dec, err, "%s", why);
}

/* ---- preamble ---- */

static bool looks_like_http(const uint8_t m[4])
{
    static const char *const starts[] = { "GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI",
                                          "PATC", "TRAC", "CONN", "HTTP", "PRI " };
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
        if (memcmp(m, starts[i], 4) == 0)
            return true;
    return false;
}

static const char http_400[] = "HTTP/1.1 400 Bad Request\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 40\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "This port speaks rill RPC, not HTTP/1.1\n";

static void preamble_destroy(struct rill_msg *m)
{
    free(m);
}

static int decode_preamble(struct codec *c, struct rill_buf *in)
{
    size_t rd = rill_buf_reader_index(in), avail = rill_buf_readable(in);
    uint8_t h[RILL_RPC_PREAMBLE_LEN];
    if (avail < 4)
        return 0;
    rill_buf_get_bytes(in, rd, h, 4);
    if (memcmp(h, RILL_RPC_MAGIC, 4) != 0) {
        if (looks_like_http(h)) {
            write_raw(c, http_400, sizeof(http_400) - 1);
            return rill_decoder_fail(&c->dec, RILL_EPROTO,
                                     "HTTP request on the RPC port (first bytes \"%.4s\")",
                                     (const char *)h);
        }
        return fail(c, RILL_EPROTO, RILL_RPC_INVALID_ARGUMENT,
                    "bad preamble: magic %02x %02x %02x %02x, expected \"RILL\"", h[0], h[1], h[2],
                    h[3]);
    }
    if (avail < RILL_RPC_PREAMBLE_LEN)
        return 0;
    rill_buf_get_bytes(in, rd, h, sizeof(h));
    if (h[4] != RILL_RPC_VERSION)
        return fail(c, RILL_EBADVERSION, RILL_RPC_UNIMPLEMENTED,
                    "bad preamble: protocol version %u, this server speaks %u", h[4],
                    RILL_RPC_VERSION);
    if (h[5] != 0)
        return fail(c, RILL_EPROTO, RILL_RPC_INVALID_ARGUMENT,
                    "bad preamble: unknown option flags 0x%02x", h[5]);
    uint16_t alen = (uint16_t)(h[6] << 8 | h[7]);
    if (alen > RILL_RPC_AUTH_MAX)
        return fail(c, RILL_ETOOLARGE, RILL_RPC_INVALID_ARGUMENT,
                    "bad preamble: auth token of %u bytes exceeds %u", alen, RILL_RPC_AUTH_MAX);
    if (avail < RILL_RPC_PREAMBLE_LEN + (size_t)alen)
        return 0;
    struct rill_rpc_preamble *p = malloc(sizeof(*p) + alen + 1);
    if (!p)
        return -ENOMEM;
    rill_msg_init(&p->msg, RILL_MSG_RPC_PREAMBLE, preamble_destroy);
    p->version = h[4];
    p->flags = h[5];
    p->auth_len = alen;
    rill_buf_get_bytes(in, rd + RILL_RPC_PREAMBLE_LEN, p->auth, alen);
    p->auth[alen] = '\0';
    rill_buf_skip(in, RILL_RPC_PREAMBLE_LEN + (size_t)alen);
    c->bytes_in += RILL_RPC_PREAMBLE_LEN + (size_t)alen;
    c->preamble_done = true;
    rill_decoder_emit(&c->dec, &p->msg);
    return 0;
}

/* ---- frames ---- */

/* Reads within one frame: every read is checked against the frame's end. */
struct cur {
    struct rill_buf *b;
    size_t end;
    bool short_read;
};

static size_t cur_left(const struct cur *k)
{
    return k->end - rill_buf_reader_index(k->b);
}

static bool cur_has(struct cur *k, size_t n)
{
    if (cur_left(k) < n)
        k->short_read = true;
    return !k->short_read;
}

static uint8_t cur_u8(struct cur *k)
{
    uint8_t v = 0;
    if (cur_has(k, 1))
        rill_buf_read_u8(k->b, &v);
    return v;
}

static uint16_t cur_u16(struct cur *k)
{
    uint16_t v = 0;
    if (cur_has(k, 2))
        rill_buf_read_u16_be(k->b, &v);
    return v;
}

static uint32_t cur_u32(struct cur *k)
{
    uint32_t v = 0;
    if (cur_has(k, 4))
        rill_buf_read_u32_be(k->b, &v);
    return v;
}

static uint64_t cur_u64(struct cur *k)
{
    uint64_t v = 0;
    if (cur_has(k, 8))
        rill_buf_read_u64_be(k->b, &v);
    return v;
}

/* A NUL-terminated copy of the next @n bytes, or NULL (short or no memory). */
static char *cur_str(struct cur *k, size_t n, int *err)
{
    if (!cur_has(k, n))
        return NULL;
    char *s = malloc(n + 1);
    if (!s) {
        *err = -ENOMEM;
        return NULL;
    }
    rill_buf_read_bytes(k->b, s, n);
    s[n] = '\0';
    return s;
}

static int decode_md(struct codec *c, struct cur *k, struct rill_rpc_frame *f)
{
    uint16_t n = cur_u16(k);
    if (k->short_read)
        return 0;
    f->md = calloc(n ? n : 1, sizeof(*f->md));
    if (!f->md)
        return -ENOMEM;
    for (uint16_t i = 0; i < n; i++) {
        uint16_t kl = cur_u16(k);
        if (k->short_read)
            return 0;
        if (kl == 0)
            return fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                        "malformed %s frame %llu: metadata entry %u has an empty key",
                        rill_rpc_frame_type_name(f->type), (unsigned long long)f->id, i);
        if (!cur_has(k, kl + 4u))
            return 0;
        size_t key_at = rill_buf_reader_index(k->b);
        rill_buf_skip(k->b, kl);
        uint32_t vl = cur_u32(k);
        if (!cur_has(k, vl))
            return 0;
        char *blk = malloc((size_t)kl + 1 + vl + 1);
        if (!blk)
            return -ENOMEM;
        rill_buf_get_bytes(k->b, key_at, blk, kl);
        blk[kl] = '\0';
        rill_buf_read_bytes(k->b, blk + kl + 1, vl);
        blk[kl + 1 + vl] = '\0';
        f->md[f->nmd++] = (struct rill_rpc_md){
            .key = blk, .key_len = kl, .val = (uint8_t *)blk + kl + 1, .val_len = vl
        };
    }
    return 0;
}

static int decode_request(struct codec *c, struct cur *k, struct rill_rpc_frame *f, uint8_t flags)
{
    uint32_t ref = cur_u32(k);
    int err = 0;
    if (k->short_read)
        return 0;
    if (flags & RILL_RPC_F_NAMES) {
        if (ref != c->ndec + 1)
            return fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                        "malformed REQUEST %llu: method ref %u defined out of order (next is %u)",
                        (unsigned long long)f->id, ref, c->ndec + 1);
        if (c->ndec >= RILL_RPC_INTERN_MAX)
            return fail(c, RILL_EPROTO, RILL_RPC_RESOURCE_EXHAUSTED,
                        "REQUEST %llu defines more than %u methods on one connection",
                        (unsigned long long)f->id, RILL_RPC_INTERN_MAX);
        uint8_t sl = cur_u8(k);
        char *s = cur_str(k, sl, &err);
        uint8_t ml = cur_u8(k);
        char *m = cur_str(k, ml, &err);
        if (!s || !m || !sl || !ml) {
            free(s);
            free(m);
            if (err)
                return err;
            if (k->short_read)
                return 0;
            return fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                        "malformed REQUEST %llu: empty service or method name",
                        (unsigned long long)f->id);
        }
        if (c->ndec == c->adec) {
            uint32_t na = c->adec ? c->adec * 2 : 8;
            void *v = realloc(c->dec_names, na * sizeof(*c->dec_names));
            if (!v) {
                free(s);
                free(m);
                return -ENOMEM;
            }
            c->dec_names = v;
            c->adec = na;
        }
        c->dec_names[c->ndec].service = s;
        c->dec_names[c->ndec].method = m;
        c->ndec++;
    } else if (ref == 0 || ref > c->ndec) {
        return fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                    "malformed REQUEST %llu: method ref %u used before its names were sent",
                    (unsigned long long)f->id, ref);
    }
    f->service = strdup(c->dec_names[ref - 1].service);
    f->method = strdup(c->dec_names[ref - 1].method);
    if (!f->service || !f->method)
        return -ENOMEM;
    f->deadline_ns = cur_u64(k);
    return 0;
}

static int decode_frame(struct codec *c, struct rill_buf *in)
{
    size_t rd = rill_buf_reader_index(in), avail = rill_buf_readable(in);
    if (avail < 4)
        return 0;
    uint32_t len;
    rill_buf_get_u32_be(in, rd, &len);
    if (c->o.role == RILL_RPC_ROLE_CLIENT && !c->frame_seen) {
        uint8_t m[4];
        rill_buf_get_bytes(in, rd, m, 4);
        if (memcmp(m, "HTTP", 4) == 0)
            return rill_decoder_fail(&c->dec, RILL_EPROTO,
                                     "the peer answered in HTTP: not a rill RPC server");
    }
    if (len > c->o.max_frame)
        return fail(c, RILL_ETOOLARGE, RILL_RPC_RESOURCE_EXHAUSTED,
                    "frame of %u bytes exceeds the limit of %zu", len, c->o.max_frame);
    if (len < RILL_RPC_HEADER_LEN - 4)
        return fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                    "malformed frame: length %u is shorter than the %d-byte header", len,
                    RILL_RPC_HEADER_LEN - 4);
    if (avail < 4 + (size_t)len)
        return 0;
    uint8_t type, flags;
    uint64_t id;
    rill_buf_get_u8(in, rd + 4, &type);
    rill_buf_get_u8(in, rd + 5, &flags);
    rill_buf_get_u64_be(in, rd + 6, &id);
    if (type < RILL_RPC_REQUEST || type > RILL_RPC_GOAWAY)
        return fail(c, RILL_EPROTO, RILL_RPC_INTERNAL, "malformed frame: unknown type %u", type);
    uint8_t allowed = 0;
    if (type == RILL_RPC_REQUEST)
        allowed = RILL_RPC_F_METADATA | RILL_RPC_F_NAMES;
    else if (type == RILL_RPC_RESPONSE)
        allowed = RILL_RPC_F_METADATA;
    if (flags & ~allowed)
        return fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                    "malformed %s frame %llu: unknown flags 0x%02x", rill_rpc_frame_type_name(type),
                    (unsigned long long)id, flags & ~allowed);
    struct rill_rpc_frame *f;
    int rc = rill_rpc_frame_new(type, id, &f);
    if (rc)
        return rc;
    struct cur k = { .b = in, .end = rd + 4 + len };
    rill_buf_skip(in, RILL_RPC_HEADER_LEN);
    switch (type) {
    case RILL_RPC_REQUEST:
        rc = decode_request(c, &k, f, flags);
        break;
    case RILL_RPC_RESPONSE:
    case RILL_RPC_GOAWAY: {
        f->status = cur_u16(&k);
        uint16_t ml = cur_u16(&k);
        if (ml)
            f->status_msg = cur_str(&k, ml, &rc);
        break;
    }
    default:
        break;
    }
    if (rc == 0 && !k.short_read && (flags & RILL_RPC_F_METADATA))
        rc = decode_md(c, &k, f);
    if (rc == 0 && k.short_read)
        rc = fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                  "malformed %s frame %llu: fields run past the frame's %u bytes",
                  rill_rpc_frame_type_name(type), (unsigned long long)id, len);
    size_t rest = rc == 0 ? cur_left(&k) : 0;
    if (rc == 0 && rest && (type == RILL_RPC_CANCEL || type == RILL_RPC_GOAWAY))
        rc = fail(c, RILL_EPROTO, RILL_RPC_INTERNAL,
                  "malformed %s frame %llu: %zu unexpected bytes after its fields",
                  rill_rpc_frame_type_name(type), (unsigned long long)id, rest);
    if (rc == 0 && rest)
        rc = rill_buf_read_slice(in, rest, &f->payload); /* a view, never a copy */
    if (rc) {
        rill_rpc_frame_release(f);
        return rc;
    }
    c->frame_seen = true;
    c->bytes_in += 4 + (size_t)len;
    rill_decoder_emit(&c->dec, &f->msg);
    return 0;
}

static int codec_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct codec *c = (struct codec *)d;
    if (c->o.role == RILL_RPC_ROLE_SERVER && !c->preamble_done)
        return decode_preamble(c, in);
    return decode_frame(c, in);
}

static int codec_decode_last(struct rill_decoder *d, struct rill_buf *in)
{
    /* A partial frame at the end of input is the peer's loss, not an
     * error worth an exception: the connection is going anyway. */
    if (rill_buf_readable(in))
        RILL_DEBUGF("rpc codec: %zu bytes of an incomplete frame dropped at end of input",
                    rill_buf_readable(in));
    return 0;
}

static void codec_destroy(struct rill_decoder *d)
{
    struct codec *c = (struct codec *)d;
    rill__rpc_intern_free(&c->enc);
    for (uint32_t i = 0; i < c->ndec; i++) {
        free(c->dec_names[i].service);
        free(c->dec_names[i].method);
    }
    free(c->dec_names);
    c->dec_names = NULL;
    c->ndec = c->adec = 0;
}

static const struct rill_decoder_ops codec_dec_ops = {
    .decode = codec_decode,
    .decode_last = codec_decode_last,
    .destroy = codec_destroy,
};

/* ---- encoding ---- */

static int put_preamble(struct codec *c, struct rill_buf *b)
{
    int rc = rill_buf_write_bytes(b, RILL_RPC_MAGIC, 4);
    rc = rc ? rc : rill_buf_write_u8(b, c->o.version);
    rc = rc ? rc : rill_buf_write_u8(b, c->o.flags);
    rc = rc ? rc : rill_buf_write_u16_be(b, (uint16_t)c->o.auth_len);
    if (!rc && c->o.auth_len)
        rc = rill_buf_write_bytes(b, c->auth, c->o.auth_len);
    return rc;
}

static bool codec_match(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    return msg->type == RILL_MSG_RPC_FRAME;
}

static size_t codec_size_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    const struct rill_rpc_frame *f = (const struct rill_rpc_frame *)msg;
    size_t n = rill_rpc_frame_wire_size(f) + 4;
    size_t pl = f->payload ? rill_buf_readable(f->payload) : 0;
    /* Large payloads are appended, not copied: reserve the header only. */
    return (pl > 512 ? n - pl : n) + RILL_RPC_PREAMBLE_LEN + RILL_RPC_AUTH_MAX / 8;
}

static int codec_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    struct codec *c = codec_of(ctx);
    const struct rill_rpc_frame *f = (const struct rill_rpc_frame *)msg;
    size_t before = rill_buf_readable(*out);
    if (c->o.role == RILL_RPC_ROLE_CLIENT && !c->preamble_done) {
        int rc = put_preamble(c, *out);
        if (rc)
            return rc;
        c->preamble_done = true;
    }
    int rc = rill__rpc_encode(f, &c->enc, c->o.max_frame, out);
    if (rc == 0)
        c->bytes_out += rill_buf_readable(*out) - before;
    return rc;
}

static const struct rill_encoder_ops codec_enc_ops = {
    .match = codec_match,
    .size_hint = codec_size_hint,
    .encode = codec_encode,
};

static void send_preamble(struct rill_ctx *ctx)
{
    struct codec *c = codec_of(ctx);
    if (c->o.role != RILL_RPC_ROLE_CLIENT || c->preamble_done)
        return;
    struct rill_buf *b;
    if (rill_buf_alloc(RILL_RPC_PREAMBLE_LEN + c->o.auth_len, &b) != 0)
        return; /* the first frame carries it then */
    if (put_preamble(c, b) != 0) {
        rill_buf_release(b);
        return;
    }
    c->preamble_done = true;
    write_counted(c, ctx, b);
}

static int codec_added(struct rill_ctx *ctx)
{
    struct codec *c = codec_of(ctx);
    const struct rill_rpc_codec_opts *o = rill_ctx_arg(ctx);
    if (o)
        c->o = *o;
    else
        rill_rpc_codec_opts_init(&c->o, RILL_RPC_ROLE_CLIENT);
    if (c->o.max_frame == 0)
        c->o.max_frame = RILL_RPC_MAX_FRAME_DEFAULT;
    if (c->o.version == 0)
        c->o.version = RILL_RPC_VERSION;
    if (c->o.max_frame < RILL_RPC_MAX_FRAME_MIN || c->o.max_frame > UINT32_MAX ||
        c->o.auth_len > RILL_RPC_AUTH_MAX || (c->o.auth_len && !c->o.auth) ||
        (c->o.role != RILL_RPC_ROLE_CLIENT && c->o.role != RILL_RPC_ROLE_SERVER))
        return -EINVAL;
    if (c->o.auth_len)
        memcpy(c->auth, c->o.auth, c->o.auth_len);
    c->o.auth = NULL;
    /* Room for one whole frame plus the start of the next. */
    struct rill_decoder_options dopt = {
        .max_cumulation = c->o.max_frame + 8 + RILL_RPC_PREAMBLE_LEN + RILL_RPC_AUTH_MAX
    };
    int rc = rill_decoder_init(&c->dec, ctx, &codec_dec_ops, &dopt);
    if (rc)
        return rc;
    /* Without the attribute the client's size check only counts names in
     * full: stricter, never wrong. */
    if (!rill_channel_attr_get(rill_ctx_channel(ctx), &codec_key))
        (void)rill_channel_attr_set(rill_ctx_channel(ctx), &codec_key, c);
    if (rill_channel_is_active(rill_ctx_channel(ctx)))
        send_preamble(ctx);
    return 0;
}

static void codec_active(struct rill_ctx *ctx)
{
    send_preamble(ctx);
    rill_ctx_fire_active(ctx);
}

static void codec_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill_encoder_write(ctx, &codec_enc_ops, msg, p);
}

static void codec_removed(struct rill_ctx *ctx)
{
    struct rill_channel *ch = rill_ctx_channel(ctx);
    if (rill_channel_attr_get(ch, &codec_key) == codec_of(ctx))
        rill_channel_attr_remove(ch, &codec_key);
    rill_decoder_on_removed(ctx);
}

const struct rill_handler rill_rpc_codec_handler = {
    .name = "rpc-codec",
    .ctx_size = sizeof(struct codec),
    .added = codec_added,
    .active = codec_active,
    .write = codec_write,
    .read = rill_decoder_on_read,
    .read_complete = rill_decoder_on_read_complete,
    .user_event = rill_decoder_on_user_event,
    .inactive = rill_decoder_on_inactive,
    .removed = codec_removed,
};
