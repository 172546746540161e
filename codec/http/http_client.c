/* The client codec: a request encoder and a response decoder in one
 * handler (Netty's HttpClientCodec). The encoder remembers each request's
 * method in a ring, so the decoder knows which responses have no body
 * (HEAD, a successful CONNECT); 1xx responses pass before the final one
 * without taking a request off the ring. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http/http_internal.h"
#include "rill/buf.h"
#include "rill/decoder.h"
#include "rill/encoder.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/pipeline.h"

enum {
    CS_HEAD,     /* waiting for a response head */
    CS_BODY,     /* in a response body */
    CS_UPGRADED, /* after 101 or a successful CONNECT: bytes pass raw */
};

#define Q_HEAD    0x01u
#define Q_CONNECT 0x02u

#define RING_INLINE 16
#define RING_MAX    65536u /* requests in flight */

struct cli {
    /* First: the decoder base and the encoder ops find it here; co.enc is
     * the request being written. */
    struct rill__http_codec co;
    struct rill_http_client_config cfg;
    struct rill__http_limits lim;
    struct rill_ctx *ctx;
    uint8_t st;
    struct rill__http_scan scan;
    struct rill__http_body body;
    /* Requests sent and not yet answered: seq in [answered, sent). */
    uint8_t *ring;
    uint32_t ring_cap;
    uint64_t sent, answered;
    uint8_t ring_inline[RING_INLINE];
};

static void cli_config_defaults(struct rill_http_client_config *c)
{
    if (!c->max_line)
        c->max_line = 8192;
    if (!c->max_header_size)
        c->max_header_size = 16384;
    if (!c->max_headers)
        c->max_headers = 100;
}

void rill_http_client_config_init(struct rill_http_client_config *c)
{
    memset(c, 0, sizeof(*c));
    cli_config_defaults(c);
}

static int push(struct cli *c, uint8_t flags)
{
    if (c->sent - c->answered == c->ring_cap) {
        if (c->ring_cap >= RING_MAX)
            return -ENOBUFS;
        uint32_t cap = c->ring_cap * 2;
        uint8_t *r = malloc(cap);
        if (!r)
            return -ENOMEM;
        for (uint64_t q = c->answered; q < c->sent; q++)
            r[q & (cap - 1)] = c->ring[q & (c->ring_cap - 1)];
        if (c->ring != c->ring_inline)
            free(c->ring);
        c->ring = r;
        c->ring_cap = cap;
    }
    c->ring[c->sent++ & (c->ring_cap - 1)] = flags;
    return 0;
}

/* ---- decoding ---- */

static int cli_fail(struct cli *c, struct rill__http_err *e)
{
    return rill_decoder_fail(&c->co.dec, e->err, "%s", e->why);
}

static int cli_head(struct cli *c, struct rill_buf *in)
{
    struct rill__http_err e;
    int r = rill__http_scan(&c->scan, in, &c->lim, true, false, &e);
    if (r <= 0)
        return r ? cli_fail(c, &e) : 0;
    struct rill_http_response *resp;
    struct rill__http_framing fr;
    r = rill__http_decode_response(in, &c->scan, &resp, &fr, &e);
    size_t hlen = c->scan.pos;
    c->scan = (struct rill__http_scan){ 0 };
    if (r)
        return cli_fail(c, &e);
    struct rill_http_message *m = &resp->http;
    unsigned status = resp->status;
    if (fr.te && fr.has_length)
        r = rill__http_errf(&e, RILL_EPROTO, 0, "Content-Length together with Transfer-Encoding");
    else if (fr.has_length && (fr.length_bad || fr.length_differs))
        r = rill__http_errf(&e, RILL_EPROTO, 0, "invalid Content-Length");
    if (r) {
        rill_msg_release(&m->msg);
        return cli_fail(c, &e);
    }
    rill_buf_skip(in, hlen);
    m->msg.type = RILL_MSG_HTTP_FULL_RESPONSE;
    if (status < 200 && status != 101) { /* interim: the final answer follows */
        m->flags |= RILL_HTTP_F_NO_BODY;
        rill_decoder_emit(&c->co.dec, &m->msg);
        return 0;
    }
    uint8_t q = c->answered < c->sent ? c->ring[c->answered++ & (c->ring_cap - 1)] : 0;
    bool keep_alive = m->version == RILL_HTTP_11 ? !fr.close : fr.keep_alive && !fr.close;
    bool upgraded = status == 101 || ((q & Q_CONNECT) && status < 300);
    if (upgraded || (q & Q_HEAD) || status == 204 || status == 304) {
        m->flags |= RILL_HTTP_F_NO_BODY;
        if (fr.has_length) {
            m->flags |= RILL_HTTP_F_LENGTH;
            m->content_length = fr.length;
        }
        if (upgraded)
            c->st = CS_UPGRADED;
    } else if (fr.te && fr.te_chunked_last && fr.te_chunked_count == 1) {
        m->flags |= RILL_HTTP_F_CHUNKED;
        m->msg.type = RILL_MSG_HTTP_RESPONSE;
        c->body.st = RILL__BODY_CHUNK_SIZE;
        c->st = CS_BODY;
    } else if (fr.has_length && !fr.te) {
        m->flags |= RILL_HTTP_F_LENGTH;
        m->content_length = fr.length;
        if (fr.length > 0 && rill_buf_readable(in) >= fr.length) {
            if (rill_buf_read_slice(in, (size_t)fr.length, &m->body) != 0) {
                rill_msg_release(&m->msg);
                return rill_decoder_fail(&c->co.dec, -ENOMEM, "no memory for a body slice");
            }
        } else if (fr.length > 0) {
            m->msg.type = RILL_MSG_HTTP_RESPONSE;
            c->body.st = RILL__BODY_LENGTH;
            c->body.remaining = fr.length;
            c->st = CS_BODY;
        }
    } else { /* no length, or a coding other than chunked last: until the close */
        m->flags |= RILL_HTTP_F_UNTIL_CLOSE;
        keep_alive = false;
        m->msg.type = RILL_MSG_HTTP_RESPONSE;
        c->body.st = RILL__BODY_UNTIL_CLOSE;
        c->st = CS_BODY;
    }
    if (keep_alive)
        m->flags |= RILL_HTTP_F_KEEP_ALIVE;
    rill_decoder_emit(&c->co.dec, &m->msg);
    return 0;
}

static int cli_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct cli *c = (struct cli *)d;
    switch (c->st) {
    case CS_HEAD:
        return cli_head(c, in);
    case CS_BODY: {
        struct rill__http_err e;
        int r = rill__http_body_decode(&c->body, d, in, &c->lim, &e);
        if (r < 0)
            return cli_fail(c, &e);
        if (r == 1)
            c->st = CS_HEAD;
        return 0;
    }
    default: { /* upgraded: the bytes as they are */
        struct rill_buf *b;
        size_t n = rill_buf_readable(in);
        if (rill_buf_read_slice(in, n, &b) != 0)
            return rill_decoder_fail(d, -ENOMEM, "no memory for a slice");
        rill_decoder_emit(d, rill_buf_msg(b));
        return 0;
    }
    }
}

static int cli_decode_last(struct rill_decoder *d, struct rill_buf *in)
{
    struct cli *c = (struct cli *)d;
    if (c->st == CS_BODY && c->body.st == RILL__BODY_UNTIL_CLOSE) {
        c->st = CS_HEAD;
        return rill__http_body_finish(&c->body, d);
    }
    if (c->st == CS_BODY)
        return rill_decoder_fail(d, RILL_EPROTO, "the connection ended inside a response body");
    if (c->st == CS_HEAD && rill_buf_readable(in) > 0)
        return rill_decoder_fail(d, RILL_EPROTO, "the connection ended inside a response head");
    return 0;
}

static void cli_destroy(struct rill_decoder *d)
{
    struct cli *c = (struct cli *)d;
    if (c->ring != c->ring_inline)
        free(c->ring);
    c->ring = NULL;
}

static const struct rill_decoder_ops cli_ops = {
    .decode = cli_decode,
    .decode_last = cli_decode_last,
    .destroy = cli_destroy,
};

/* ---- encoding ---- */

static void refuse(struct rill_msg *m, struct rill_promise *p, int err, const char *why)
{
    RILL_DEBUGF("http client codec: write refused: %s (%s)", why, rill_strerror(err));
    rill_msg_release(m);
    if (p)
        rill_promise_fail(p, err);
}

static void write_request(struct cli *c, struct rill_msg *msg, struct rill_promise *p)
{
    struct rill_http_request *r = (struct rill_http_request *)msg;
    if (c->co.enc.mode != RILL__ENC_NONE)
        return refuse(msg, p, -EINVAL, "a request inside another request's body");
    struct rill__http_user_framing u;
    rill__http_user_framing(&r->http.headers, &u);
    if (u.length_bad)
        return refuse(msg, p, -EINVAL, "invalid Content-Length field");
    c->co.enc = (struct rill__http_enc){ 0 };
    struct rill__http_plan *plan = &c->co.enc.plan;
    if (msg->type == RILL_MSG_HTTP_FULL_REQUEST) {
        size_t blen = rill_http_message_body_len(&r->http);
        if (u.has_te) {
            if (!u.te_chunked)
                return refuse(msg, p, -EINVAL, "Transfer-Encoding of a full request not chunked");
            plan->body_as_chunks = true;
        } else if (u.has_length) {
            if (u.length != blen)
                return refuse(msg, p, -EINVAL, "Content-Length differs from the body's length");
        } else if (blen || r->method_id == RILL_HTTP_POST || r->method_id == RILL_HTTP_PUT ||
                   r->method_id == RILL_HTTP_PATCH) {
            plan->add_length = true;
            plan->length = blen;
        }
        plan->with_body = true;
    } else if (u.has_length) {
        c->co.enc.mode = RILL__ENC_LENGTH;
        c->co.enc.remaining = u.length;
    } else if (u.has_te) {
        if (!u.te_chunked)
            return refuse(msg, p, -EINVAL, "Transfer-Encoding of a request not chunked");
        c->co.enc.mode = RILL__ENC_CHUNKED;
    } else if (r->http.version == RILL_HTTP_11) {
        plan->add_chunked = true;
        c->co.enc.mode = RILL__ENC_CHUNKED;
    } else {
        return refuse(msg, p, -EINVAL, "HTTP/1.0 request head without Content-Length");
    }
    uint8_t q = (r->method_id == RILL_HTTP_HEAD ? Q_HEAD : 0) |
                (r->method_id == RILL_HTTP_CONNECT ? Q_CONNECT : 0);
    int err = push(c, q);
    if (err) {
        c->co.enc.mode = RILL__ENC_NONE;
        return refuse(msg, p, err, "too many requests in flight");
    }
    rill_encoder_write(c->ctx, &rill__http_head_ops, msg, p);
}

static void write_body(struct cli *c, struct rill_msg *msg, struct rill_promise *p, bool last)
{
    struct rill_http_content *ct = rill_http_content_from_msg(msg);
    struct rill_buf *b = rill_buf_from_msg(msg);
    bool sized = ct || b;
    size_t n = ct ? (ct->data ? rill_buf_readable(ct->data) : 0) : b ? rill_buf_readable(b) : 0;
    if (c->co.enc.mode == RILL__ENC_CHUNKED) {
        if (!sized)
            return refuse(msg, p, -EINVAL, "a file region in a chunked body");
        if (last)
            c->co.enc.mode = RILL__ENC_NONE;
        rill_encoder_write(c->ctx, &rill__http_chunk_ops, msg, p);
        return;
    }
    if (sized && n > c->co.enc.remaining)
        return refuse(msg, p, -EINVAL, "body longer than its Content-Length");
    c->co.enc.remaining -= sized ? n : 0;
    if (last)
        c->co.enc.mode = RILL__ENC_NONE;
    struct rill_msg *out = msg;
    if (ct) {
        out = NULL;
        if (n) {
            out = rill_buf_msg(ct->data);
            ct->data = NULL;
        } else if (p) { /* an empty write, so @p follows the bytes before it */
            struct rill_buf *e;
            if (rill_buf_alloc(0, &e) == 0)
                out = rill_buf_msg(e);
        }
        rill_msg_release(msg);
    }
    if (out)
        rill_ctx_write(c->ctx, out, p);
    else if (p)
        rill_promise_succeed(p, NULL, NULL);
}

static void cli_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct cli *c = rill_ctx_state(ctx);
    switch (msg->type) {
    case RILL_MSG_HTTP_REQUEST:
    case RILL_MSG_HTTP_FULL_REQUEST:
        write_request(c, msg, p);
        return;
    case RILL_MSG_HTTP_CONTENT:
    case RILL_MSG_HTTP_LAST_CONTENT:
        if (c->co.enc.mode == RILL__ENC_NONE)
            return refuse(msg, p, -EINVAL, "content without a request head");
        write_body(c, msg, p, msg->type == RILL_MSG_HTTP_LAST_CONTENT);
        return;
    case RILL_MSG_BUF:
    case RILL_MSG_FILE_REGION:
        if (c->co.enc.mode != RILL__ENC_NONE) {
            write_body(c, msg, p, false);
            return;
        }
        break;
    }
    rill_ctx_write(ctx, msg, p);
}

static int cli_added(struct rill_ctx *ctx)
{
    struct cli *c = rill_ctx_state(ctx);
    const struct rill_http_client_config *cfg = rill_ctx_arg(ctx);
    if (cfg)
        c->cfg = *cfg;
    cli_config_defaults(&c->cfg);
    c->lim =
        (struct rill__http_limits){ c->cfg.max_line, c->cfg.max_header_size, c->cfg.max_headers };
    c->ctx = ctx;
    c->ring = c->ring_inline;
    c->ring_cap = RING_INLINE;
    return rill_decoder_init(&c->co.dec, ctx, &cli_ops, NULL);
}

const struct rill_handler rill_http_client_codec = {
    .name = "http-client-codec",
    .ctx_size = sizeof(struct cli),
    .added = cli_added,
    RILL_DECODER_CALLBACKS,
    .write = cli_write,
};
