/* Heads and chunks on the way out. A head is written into the encoder's
 * pooled buffer in one go (sized beforehand); a body follows: copied when
 * small, carried as a component of a composite when large. A large
 * chunk's CRLF is written in front of the next chunk-size line, so it
 * costs no buffer after its data. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codec/http/http_internal.h"
#include "rill/buf.h"
#include "rill/encoder.h"
#include "rill/pipeline.h"

#define S(lit) lit, sizeof(lit) - 1

/* Append the readable bytes of @b (borrowed) to *@out: small ones copied
 * without moving @b's reader index (the message may be written again, or
 * still be read by its owner), large ones carried by reference. */
static int append_body(struct rill_buf **out, struct rill_buf *b)
{
    size_t n = rill_buf_readable(b);
    if (n == 0)
        return 0;
    if (n > 512)
        return rill_encoder_append(out, rill_buf_retain(b));
    size_t avail;
    uint8_t *w = rill_buf_write_ptr(*out, n, &avail);
    if (!w)
        return -ENOMEM;
    int err = rill_buf_get_bytes(b, rill_buf_reader_index(b), w, n);
    return err ? err : rill_buf_advance_writer(*out, n);
}

static bool is_request(const struct rill_msg *m)
{
    return m->type == RILL_MSG_HTTP_REQUEST || m->type == RILL_MSG_HTTP_FULL_REQUEST;
}

static bool te_last(void *arg, const char *t, size_t len)
{
    size_t n = 0;
    while (n < len && t[n] != ';' && t[n] != ' ' && t[n] != '\t')
        n++;
    *(bool *)arg = rill__http_name_is(t, n, "chunked", 7);
    return true;
}

static bool conn_token(void *arg, const char *t, size_t len)
{
    struct rill__http_user_framing *u = arg;
    if (rill__http_name_is(t, len, "close", 5))
        u->close = true;
    else if (rill__http_name_is(t, len, "keep-alive", 10))
        u->keep_alive = true;
    return true;
}

void rill__http_user_framing(const struct rill_http_headers *h, struct rill__http_user_framing *u)
{
    memset(u, 0, sizeof(*u));
    for (uint32_t i = 0; i < h->_n; i++) {
        const struct rill__http_hent *e = &h->_ent[i];
        const char *n = h->_text + e->name, *v = h->_text + e->value;
        switch (e->name_len) {
        case 10:
            if (rill__http_name_is(n, 10, "connection", 10))
                rill__http_each_token(v, e->value_len, conn_token, u);
            break;
        case 14:
            if (rill__http_name_is(n, 14, "content-length", 14)) {
                uint64_t x = 0;
                bool ok = e->value_len > 0 && e->value_len <= 18;
                for (uint32_t k = 0; ok && k < e->value_len; k++) {
                    ok = v[k] >= '0' && v[k] <= '9';
                    x = x * 10 + (uint64_t)(v[k] - '0');
                }
                if (!ok || (u->has_length && x != u->length))
                    u->length_bad = true;
                u->has_length = true;
                u->length = x;
            }
            break;
        case 17:
            if (rill__http_name_is(n, 17, "transfer-encoding", 17)) {
                u->has_te = true;
                rill__http_each_token(v, e->value_len, te_last, &u->te_chunked);
            }
            break;
        }
    }
}

size_t rill__http_head_size(const struct rill_http_message *m, const struct rill__http_plan *plan)
{
    /* An upper bound: the text block holds every name and value with a
     * NUL after each (and for decoded heads the start line too). */
    size_t n = 64 + m->headers._len + 2u * m->headers._n;
    if (is_request(&m->msg)) {
        const struct rill_http_request *r = (const struct rill_http_request *)m;
        n += r->method_len + r->target_len;
    } else {
        const struct rill_http_response *r = (const struct rill_http_response *)m;
        n += r->reason ? r->reason_len : strlen(rill_http_reason(r->status));
    }
    if (plan->add_length)
        n += 40;
    if (plan->add_chunked)
        n += 30;
    if (plan->add_close || plan->add_keep_alive)
        n += 30;
    if (plan->with_body && m->body && rill_buf_readable(m->body) <= 512)
        n += rill_buf_readable(m->body);
    return n;
}

static uint8_t *put(uint8_t *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

static uint8_t *put_u64(uint8_t *w, uint64_t v)
{
    char tmp[24];
    int i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put(w, tmp + i, sizeof(tmp) - (size_t)i);
}

static uint8_t *put_version(uint8_t *w, uint8_t version)
{
    return put(w, version == RILL_HTTP_10 ? "HTTP/1.0" : "HTTP/1.1", 8);
}

int rill__http_encode_head(struct rill_buf **out, struct rill_msg *msg,
                           const struct rill__http_plan *plan, struct rill__http_enc *enc)
{
    struct rill_http_message *m = (struct rill_http_message *)msg;
    size_t need = rill__http_head_size(m, plan), avail;
    uint8_t *w0 = rill_buf_write_ptr(*out, need, &avail);
    if (!w0)
        return -ENOMEM;
    uint8_t *w = w0;
    if (is_request(msg)) {
        const struct rill_http_request *r = (const struct rill_http_request *)m;
        w = put(w, r->method, r->method_len);
        *w++ = ' ';
        w = put(w, r->target, r->target_len);
        *w++ = ' ';
        w = put_version(w, m->version);
    } else {
        const struct rill_http_response *r = (const struct rill_http_response *)m;
        w = put_version(w, m->version);
        *w++ = ' ';
        *w++ = (uint8_t)('0' + r->status / 100);
        *w++ = (uint8_t)('0' + r->status / 10 % 10);
        *w++ = (uint8_t)('0' + r->status % 10);
        *w++ = ' ';
        if (r->reason)
            w = put(w, r->reason, r->reason_len);
        else {
            const char *reason = rill_http_reason(r->status);
            w = put(w, reason, strlen(reason));
        }
    }
    *w++ = '\r';
    *w++ = '\n';
    const struct rill_http_headers *h = &m->headers;
    for (uint32_t i = 0; i < h->_n; i++) {
        const struct rill__http_hent *e = &h->_ent[i];
        if ((plan->add_close || plan->add_keep_alive) && e->name_len == 10 &&
            rill__http_name_is(h->_text + e->name, 10, "connection", 10))
            continue; /* replaced by the codec's own Connection field */
        w = put(w, h->_text + e->name, e->name_len);
        *w++ = ':';
        *w++ = ' ';
        w = put(w, h->_text + e->value, e->value_len);
        *w++ = '\r';
        *w++ = '\n';
    }
    if (plan->add_length) {
        w = put(w, S("Content-Length: "));
        w = put_u64(w, plan->length);
        w = put(w, S("\r\n"));
    }
    if (plan->add_chunked)
        w = put(w, S("Transfer-Encoding: chunked\r\n"));
    if (plan->add_close)
        w = put(w, S("Connection: close\r\n"));
    else if (plan->add_keep_alive)
        w = put(w, S("Connection: keep-alive\r\n"));
    *w++ = '\r';
    *w++ = '\n';
    int err = rill_buf_advance_writer(*out, (size_t)(w - w0));
    if (err || !plan->with_body)
        return err;
    if (plan->body_as_chunks) {
        enc->need_crlf = false;
        return rill__http_encode_chunk(out, enc, m->body, true, &m->trailers);
    }
    return m->body ? append_body(out, m->body) : 0;
}

int rill__http_chunk_prefix(struct rill_buf *out, struct rill__http_enc *enc, uint64_t n)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "%s%" PRIx64 "\r\n", enc->need_crlf ? "\r\n" : "", n);
    enc->need_crlf = true; /* the data follows; its CRLF goes before the next line */
    return rill_buf_write_bytes(out, line, (size_t)len);
}

int rill__http_encode_chunk(struct rill_buf **out, struct rill__http_enc *enc,
                            struct rill_buf *data, bool last,
                            const struct rill_http_headers *trailers)
{
    size_t n = data ? rill_buf_readable(data) : 0;
    int err = 0;
    if (n) {
        err = rill__http_chunk_prefix(*out, enc, n);
        if (!err)
            err = append_body(out, data);
        /* A small chunk was copied: its CRLF costs nothing now, and a
         * client that waits for it sees the chunk at once. A large one is
         * carried by reference: its CRLF goes before the next size line
         * instead of into a buffer of its own. */
        if (!err && n <= 512) {
            err = rill_buf_write_bytes(*out, S("\r\n"));
            enc->need_crlf = false;
        }
        if (err)
            return err;
    }
    if (!last)
        return 0;
    err = enc->need_crlf ? rill_buf_write_bytes(*out, S("\r\n0\r\n"))
                         : rill_buf_write_bytes(*out, S("0\r\n"));
    enc->need_crlf = false;
    for (uint32_t i = 0; !err && trailers && i < trailers->_n; i++) {
        const struct rill__http_hent *e = &trailers->_ent[i];
        err = rill_buf_write_bytes(*out, trailers->_text + e->name, e->name_len);
        if (!err)
            err = rill_buf_write_bytes(*out, S(": "));
        if (!err)
            err = rill_buf_write_bytes(*out, trailers->_text + e->value, e->value_len);
        if (!err)
            err = rill_buf_write_bytes(*out, S("\r\n"));
    }
    return err ? err : rill_buf_write_bytes(*out, S("\r\n"));
}

/* ---- the encoder ops of both codecs ---- */

static size_t head_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    struct rill__http_codec *co = rill_ctx_state(ctx);
    return rill__http_head_size((const struct rill_http_message *)msg, &co->enc.plan);
}

static int head_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    struct rill__http_codec *co = rill_ctx_state(ctx);
    return rill__http_encode_head(out, msg, &co->enc.plan, &co->enc);
}

const struct rill_encoder_ops rill__http_head_ops = {
    .size_hint = head_hint,
    .encode = head_encode,
};

static size_t chunk_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    struct rill_http_content *c = rill_http_content_from_msg((struct rill_msg *)msg);
    const struct rill_buf *b = c ? c->data : (const struct rill_buf *)msg;
    size_t n = b ? rill_buf_readable(b) : 0;
    return 64 + (n <= 512 ? n : 0) + (c ? c->trailers._len + 4u * c->trailers._n : 0);
}

static int chunk_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    struct rill__http_codec *co = rill_ctx_state(ctx);
    struct rill_http_content *c = rill_http_content_from_msg(msg);
    if (!c)
        return rill__http_encode_chunk(out, &co->enc, (struct rill_buf *)msg, false, NULL);
    return rill__http_encode_chunk(out, &co->enc, c->data, msg->type == RILL_MSG_HTTP_LAST_CONTENT,
                                   &c->trailers);
}

const struct rill_encoder_ops rill__http_chunk_ops = {
    .size_hint = chunk_hint,
    .encode = chunk_encode,
};
