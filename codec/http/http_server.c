/* The server codec: a request decoder (on the decoder base) and a response
 * encoder in one handler, like Netty's HttpServerCodec, so the two halves
 * share what they must: which requests are waiting for an answer (their
 * method, version, keep-alive, expectation), in order.
 *
 * The decoder pushes an entry per request head onto a ring; the encoder
 * pops one per final response. An error found while decoding becomes an
 * entry too, answered by the codec itself when its turn comes (after the
 * answers to the requests before it), so pipelined answers never
 * reorder. A connection that must end (close requested, HTTP/1.0 without
 * keep-alive, a response whose body ends with the connection, an error)
 * stops decoding, shuts its output down once its last response is written
 * (a listener on that write) and closes when the peer does or after
 * linger_ms, so the peer reads the whole answer instead of a reset. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http/http_internal.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/decoder.h"
#include "rill/encoder.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/pipeline.h"
#include "rill/timer.h"

enum {
    DS_HEAD,    /* waiting for a request head */
    DS_BODY,    /* in the body of the last request decoded */
    DS_DISCARD, /* the connection ends: input is dropped */
};

/* A request waiting for its answer. */
#define P_HEAD       0x01u /* HEAD: the answer has no body */
#define P_KEEP_ALIVE 0x02u
#define P_V10        0x04u
#define P_EXPECT     0x08u /* expects 100-continue */
#define P_CONT_SENT  0x10u /* 100 Continue was written */
#define P_ERROR      0x20u /* not a request: the codec answers with status */

struct pend {
    uint16_t flags;
    uint16_t status;
};

#define RING_INLINE 8

struct srv;

/* The last write of a closing connection; its listener starts lingering. */
struct closer {
    struct srv *s;             /* NULL once the codec is removed */
    struct rill_promise *user; /* the writer's promise, completed with ours */
};

struct srv {
    struct rill__http_codec co; /* first: the decoder base and the encoder ops find it here */
    struct rill_http_server_config cfg;
    struct rill__http_limits lim;
    struct rill_ctx *ctx;

    uint8_t st;
    bool stopping;     /* decode no more requests */
    bool closing;      /* the last response is written: refuse more */
    bool lingering;    /* output shut down, waiting for the peer's close */
    bool failed_by_us; /* the decoder failed through srv_fail */
    struct rill__http_scan scan;
    struct rill__http_body body;

    /* Requests not yet answered: seq in [answered, decoded) at ring[seq & (cap - 1)]. */
    struct pend *ring;
    uint32_t ring_cap;
    uint64_t decoded, answered;
    struct pend ring_inline[RING_INLINE];

    /* The response being written (its body framing is co.enc). */
    bool resp_close; /* it ends the connection */
    bool opaque;     /* a piece of unknown size passed (a file region) */

    struct closer *closer;
    struct rill_timer *linger;
    char why[sizeof(((struct rill__http_err *)0)->why)];
};

static void srv_config_defaults(struct rill_http_server_config *c)
{
    if (!c->max_line)
        c->max_line = 8192;
    if (!c->max_header_size)
        c->max_header_size = 16384;
    if (!c->max_headers)
        c->max_headers = 100;
    if (!c->max_pipelined)
        c->max_pipelined = 256;
}

void rill_http_server_config_init(struct rill_http_server_config *c)
{
    memset(c, 0, sizeof(*c));
    srv_config_defaults(c);
    c->linger_ms = 2000;
}

/* ---- the ring of requests waiting for answers ---- */

static struct pend *front(struct srv *s)
{
    return s->answered < s->decoded ? &s->ring[s->answered & (s->ring_cap - 1)] : NULL;
}

static int push(struct srv *s, struct pend p)
{
    if (s->decoded - s->answered == s->ring_cap) {
        uint32_t cap = s->ring_cap * 2;
        struct pend *r = malloc(cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        for (uint64_t q = s->answered; q < s->decoded; q++)
            r[q & (cap - 1)] = s->ring[q & (s->ring_cap - 1)];
        if (s->ring != s->ring_inline)
            free(s->ring);
        s->ring = r;
        s->ring_cap = cap;
    }
    s->ring[s->decoded++ & (s->ring_cap - 1)] = p;
    return 0;
}

/* ---- ending the connection ---- */

static void linger_done(struct rill_timer *t, void *arg)
{
    struct srv *s = arg;
    rill_timer_release(t);
    s->linger = NULL;
    rill_ctx_close(s->ctx, NULL);
}

/* The last response is written: shut the output down and wait for the
 * peer's close, bounded by linger_ms. */
static void start_linger(struct srv *s)
{
    struct rill_channel *ch = rill_ctx_channel(s->ctx);
    if (s->lingering || !rill_channel_is_open(ch))
        return;
    s->lingering = true;
    if (s->cfg.linger_ms == 0) {
        rill_ctx_close(s->ctx, NULL);
        return;
    }
    rill_channel_shutdown_output(ch, NULL);
    if (rill_timer_schedule(rill_channel_loop(ch), (uint64_t)s->cfg.linger_ms * RILL_NS_PER_MS, 0,
                            RILL_TIMER_ONCE, linger_done, s, &s->linger) != 0)
        rill_ctx_close(s->ctx, NULL);
}

static void closing_written(struct rill_promise *p, void *arg)
{
    struct closer *c = arg;
    if (c->user) {
        int r = rill_promise_result(p, NULL);
        if (r)
            rill_promise_fail(c->user, r);
        else
            rill_promise_succeed(c->user, NULL, NULL);
        rill_promise_release(c->user);
    }
    struct srv *s = c->s;
    free(c);
    if (s) {
        s->closer = NULL;
        start_linger(s);
    }
}

/* A promise for the connection's last write, completing @user (may be
 * NULL) with it. The caller writes with it and releases it. NULL when
 * memory ran out: the caller then closes at once. */
static struct rill_promise *closing_promise(struct srv *s, struct rill_promise *user)
{
    struct closer *c = malloc(sizeof(*c));
    struct rill_promise *wp = NULL;
    if (!c || rill_promise_new(rill_channel_loop(rill_ctx_channel(s->ctx)), &wp) != 0) {
        free(c);
        return NULL;
    }
    c->s = s;
    c->user = user ? rill_promise_retain(user) : NULL;
    if (rill_promise_add_listener(wp, closing_written, c) != 0) {
        if (c->user)
            rill_promise_release(c->user);
        free(c);
        rill_promise_release(wp);
        return NULL;
    }
    s->closer = c;
    return wp;
}

/* Write @m (raw bytes, or NULL: an empty buffer) as the connection's last
 * write, flush, and linger once it is out. Takes ownership of @m. */
static void write_last(struct srv *s, struct rill_msg *m, struct rill_promise *user)
{
    s->closing = s->stopping = true;
    if (!m) {
        struct rill_buf *b;
        if (rill_buf_alloc(0, &b) != 0) {
            rill_ctx_close(s->ctx, NULL);
            return;
        }
        m = rill_buf_msg(b);
    }
    struct rill_promise *wp = closing_promise(s, user);
    rill_ctx_write(s->ctx, m, wp ? wp : user);
    rill_ctx_flush(s->ctx);
    if (wp)
        rill_promise_release(wp);
    else
        rill_ctx_close(s->ctx, NULL);
}

/* Answer the error at the front of the ring, if it is there. */
static void maybe_answer_error(struct srv *s)
{
    struct pend *f = front(s);
    if (!f || !(f->flags & P_ERROR) || s->co.enc.mode != RILL__ENC_NONE || s->closing)
        return;
    unsigned status = f->status;
    s->answered++;
    char head[256];
    size_t blen = strlen(s->why) + 1;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %u %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, rill_http_reason(status), blen);
    struct rill_buf *b;
    if (rill_buf_alloc((size_t)n + blen, &b) != 0) {
        rill_ctx_close(s->ctx, NULL);
        return;
    }
    rill_buf_write_bytes(b, head, (size_t)n);
    rill_buf_write_bytes(b, s->why, blen - 1);
    rill_buf_write_u8(b, '\n');
    write_last(s, rill_buf_msg(b), NULL);
}

/* ---- decoding ---- */

/* A decode error: queue its answer in the request's place and stop. */
static int srv_fail(struct srv *s, struct rill__http_err *e)
{
    bool in_body = s->st == DS_BODY;
    s->st = DS_DISCARD;
    s->stopping = true;
    s->failed_by_us = true;
    if (e->status) {
        uint64_t seq = in_body ? s->decoded - 1 : s->decoded;
        if (in_body &&
            (seq < s->answered || (seq == s->answered && s->co.enc.mode != RILL__ENC_NONE)))
            e->status = 0; /* answered already, or its answer is under way */
        else if (in_body)
            s->ring[seq & (s->ring_cap - 1)] = (struct pend){ P_ERROR, (uint16_t)e->status };
        else if (push(s, (struct pend){ P_ERROR, (uint16_t)e->status }) != 0)
            e->status = 0;
    }
    if (e->status) {
        memcpy(s->why, e->why, sizeof(s->why));
        maybe_answer_error(s);
    } else if (!s->closing) {
        write_last(s, NULL, NULL); /* what was written goes out, then the close */
    }
    return rill_decoder_fail(&s->co.dec, e->err, "%s", e->why);
}

static void request_done(struct srv *s)
{
    s->st = s->stopping ? DS_DISCARD : DS_HEAD;
}

/* Skip empty lines before a request line (RFC 9112 2.2). Returns the
 * bytes to skip. */
static size_t leading_empty_lines(const struct rill_buf *in)
{
    size_t n = rill_buf_readable(in), rd = rill_buf_reader_index(in), k = 0;
    uint8_t c = 0, c1 = 0;
    while (k < n) {
        rill_buf_get_u8(in, rd + k, &c);
        if (c == '\n') {
            k++;
        } else if (c == '\r' && k + 1 < n) {
            rill_buf_get_u8(in, rd + k + 1, &c1);
            if (c1 != '\n')
                break;
            k += 2;
        } else {
            break;
        }
    }
    return k;
}

/* The framing of a request: the smuggling guards. Returns 0 or < 0 (400). */
static int request_framing(struct rill_http_request *req, const struct rill__http_framing *fr,
                           struct rill__http_err *e)
{
    struct rill_http_message *m = &req->http;
    if (fr->hosts == 0 && m->version == RILL_HTTP_11)
        return rill__http_errf(e, RILL_EPROTO, 400, "HTTP/1.1 request without a Host field");
    if (fr->hosts > 1)
        return rill__http_errf(e, RILL_EPROTO, 400, "more than one Host field");
    if (fr->te) {
        if (fr->has_length)
            return rill__http_errf(e, RILL_EPROTO, 400,
                                   "Content-Length together with Transfer-Encoding");
        if (m->version == RILL_HTTP_10)
            return rill__http_errf(e, RILL_EPROTO, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (!fr->te_chunked_last || fr->te_chunked_count != 1)
            return rill__http_errf(e, RILL_EPROTO, 400,
                                   "Transfer-Encoding does not end with one chunked");
        m->flags |= RILL_HTTP_F_CHUNKED;
    } else if (fr->has_length) {
        if (fr->length_bad)
            return rill__http_errf(e, RILL_EPROTO, 400, "invalid Content-Length");
        if (fr->length_differs)
            return rill__http_errf(e, RILL_EPROTO, 400, "differing Content-Length values");
        m->flags |= RILL_HTTP_F_LENGTH;
        m->content_length = fr->length;
    }
    bool keep_alive = m->version == RILL_HTTP_11 ? !fr->close : fr->keep_alive && !fr->close;
    if (keep_alive)
        m->flags |= RILL_HTTP_F_KEEP_ALIVE;
    if (fr->expect_continue && m->version == RILL_HTTP_11)
        m->flags |= RILL_HTTP_F_EXPECT_CONTINUE;
    else if (fr->expect_other)
        m->flags |= RILL_HTTP_F_EXPECT_OTHER;
    return 0;
}

static int srv_head(struct srv *s, struct rill_buf *in)
{
    if (s->scan.lines == 0 && s->scan.pos == 0) {
        size_t k = leading_empty_lines(in);
        if (k) {
            s->scan.search = 0;
            return rill_buf_skip(in, k);
        }
    }
    struct rill__http_err e;
    int r = rill__http_scan(&s->scan, in, &s->lim, true, true, &e);
    if (r <= 0)
        return r ? srv_fail(s, &e) : 0;
    struct rill_http_request *req;
    struct rill__http_framing fr;
    r = rill__http_decode_request(in, &s->scan, &req, &fr, &e);
    size_t hlen = s->scan.pos;
    s->scan = (struct rill__http_scan){ 0 };
    if (r)
        return srv_fail(s, &e);
    rill_buf_skip(in, hlen);
    r = request_framing(req, &fr, &e);
    if (!r && s->decoded - s->answered >= s->cfg.max_pipelined)
        r = rill__http_errf(&e, RILL_ETOOLARGE, 0, "more than %u requests waiting for answers",
                            s->cfg.max_pipelined);
    uint16_t flags = req->http.flags;
    struct pend p = {
        .flags = (req->method_id == RILL_HTTP_HEAD ? P_HEAD : 0) |
                 (flags & RILL_HTTP_F_KEEP_ALIVE ? P_KEEP_ALIVE : 0) |
                 (req->http.version == RILL_HTTP_10 ? P_V10 : 0) |
                 (flags & RILL_HTTP_F_EXPECT_CONTINUE ? P_EXPECT : 0),
    };
    if (!r && push(s, p) != 0)
        r = rill__http_errf(&e, -ENOMEM, 0, "no memory for the pipeline of requests");
    if (r) {
        rill_msg_release(&req->http.msg);
        return srv_fail(s, &e);
    }
    if (!(flags & RILL_HTTP_F_KEEP_ALIVE))
        s->stopping = true;

    if (flags & RILL_HTTP_F_CHUNKED) {
        s->body.st = RILL__BODY_CHUNK_SIZE;
        s->st = DS_BODY;
    } else if ((flags & RILL_HTTP_F_LENGTH) && req->http.content_length > 0) {
        uint64_t len = req->http.content_length;
        if (rill_buf_readable(in) >= len) { /* here whole: one message */
            if (rill_buf_read_slice(in, (size_t)len, &req->http.body) != 0) {
                rill_msg_release(&req->http.msg);
                rill__http_errf(&e, -ENOMEM, 0, "no memory for a body slice");
                return srv_fail(s, &e);
            }
            req->http.msg.type = RILL_MSG_HTTP_FULL_REQUEST;
            request_done(s);
        } else {
            s->body.st = RILL__BODY_LENGTH;
            s->body.remaining = len;
            s->st = DS_BODY;
        }
    } else {
        req->http.msg.type = RILL_MSG_HTTP_FULL_REQUEST;
        request_done(s);
    }
    rill_decoder_emit(&s->co.dec, &req->http.msg);
    return 0;
}

static int srv_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct srv *s = (struct srv *)d;
    if (s->st == DS_HEAD && s->stopping)
        s->st = DS_DISCARD;
    switch (s->st) {
    case DS_HEAD:
        return srv_head(s, in);
    case DS_BODY: {
        struct rill__http_err e;
        int r = rill__http_body_decode(&s->body, d, in, &s->lim, &e);
        if (r < 0)
            return srv_fail(s, &e);
        if (r == 1)
            request_done(s);
        return 0;
    }
    default:
        return rill_buf_skip(in, rill_buf_readable(in));
    }
}

static int srv_decode_last(struct rill_decoder *d, struct rill_buf *in)
{
    struct srv *s = (struct srv *)d;
    if (s->st == DS_BODY && !s->closing) /* after our last answer, nobody waits for it */
        return rill_decoder_fail(d, RILL_EPROTO, "the connection ended inside a request body");
    return 0;
}

static void srv_destroy(struct rill_decoder *d)
{
    struct srv *s = (struct srv *)d;
    if (s->linger) {
        rill_timer_cancel(s->linger);
        rill_timer_release(s->linger);
        s->linger = NULL;
    }
    if (s->closer)
        s->closer->s = NULL;
    if (s->ring != s->ring_inline)
        free(s->ring);
    s->ring = NULL;
}

static const struct rill_decoder_ops srv_ops = {
    .decode = srv_decode,
    .decode_last = srv_decode_last,
    .destroy = srv_destroy,
};

/* ---- encoding ---- */

static void refuse(struct rill_msg *m, struct rill_promise *p, int err, const char *why)
{
    RILL_DEBUGF("http server codec: write refused: %s (%s)", why, rill_strerror(err));
    rill_msg_release(m);
    if (p)
        rill_promise_fail(p, err);
}

static void succeed_dropped(struct rill_msg *m, struct rill_promise *p)
{
    rill_msg_release(m);
    if (p)
        rill_promise_succeed(p, NULL, NULL);
}

/* A final response is complete: its request is answered. */
static void response_done(struct srv *s)
{
    if (front(s))
        s->answered++;
    maybe_answer_error(s);
}

static void write_response(struct srv *s, struct rill_msg *msg, struct rill_promise *p)
{
    struct rill_http_response *r = (struct rill_http_response *)msg;
    if (s->co.enc.mode != RILL__ENC_NONE)
        return refuse(msg, p, -EINVAL, "a response inside another response's body");
    if (s->closing)
        return refuse(msg, p, RILL_ECLOSED, "the connection's last response was written");
    if (r->status < 100 || r->status > 999)
        return refuse(msg, p, -EINVAL, "status out of range");
    struct pend none = { P_KEEP_ALIVE, 0 }, *f = front(s);
    if (!f)
        f = &none;
    bool v10 = f->flags & P_V10;
    s->co.enc = (struct rill__http_enc){ 0 };
    s->opaque = false;

    if (r->status < 200 && r->status != 101) { /* interim: the final answer follows */
        if (v10)
            return succeed_dropped(msg, p); /* HTTP/1.0 has no interim responses */
        if (r->status == 100)
            f->flags |= P_CONT_SENT;
        rill_encoder_write(s->ctx, &rill__http_head_ops, msg, p);
        return;
    }

    struct rill__http_user_framing u;
    rill__http_user_framing(&r->http.headers, &u);
    if (u.length_bad)
        return refuse(msg, p, -EINVAL, "invalid Content-Length field");
    bool full = msg->type == RILL_MSG_HTTP_FULL_RESPONSE;
    bool bodiless = r->status < 200 || r->status == 204 || r->status == 304;
    bool no_body = (f->flags & P_HEAD) || bodiless;
    bool close = !(f->flags & P_KEEP_ALIVE) || u.close;
    /* 100-continue never sent and the body not read: the client may or
     * may not send it now, so the connection cannot carry on. */
    if ((f->flags & (P_EXPECT | P_CONT_SENT)) == P_EXPECT && s->st == DS_BODY &&
        s->decoded - 1 == s->answered)
        close = true;
    struct rill__http_plan *plan = &s->co.enc.plan;
    uint8_t mode = RILL__ENC_NONE;
    if (full) {
        size_t blen = rill_http_message_body_len(&r->http);
        if (u.has_te && !no_body) {
            if (!u.te_chunked)
                return refuse(msg, p, -EINVAL, "Transfer-Encoding of a full response not chunked");
            plan->body_as_chunks = true;
        } else if (u.has_length) {
            if (!no_body && u.length != blen)
                return refuse(msg, p, -EINVAL, "Content-Length differs from the body's length");
        } else if (!bodiless && (blen || !(f->flags & P_HEAD))) {
            plan->add_length = true;
            plan->length = blen;
        }
        plan->with_body = !no_body;
    } else if (no_body) {
        mode = RILL__ENC_DROP;
    } else if (u.has_length) {
        mode = RILL__ENC_LENGTH;
        s->co.enc.remaining = u.length;
    } else if (u.has_te) {
        mode = u.te_chunked ? RILL__ENC_CHUNKED : RILL__ENC_RAW;
    } else if (!v10) {
        plan->add_chunked = true;
        mode = RILL__ENC_CHUNKED;
    } else {
        mode = RILL__ENC_RAW;
    }
    if (mode == RILL__ENC_RAW)
        close = true; /* the body ends with the connection */
    if (close)
        plan->add_close = !u.close;
    else if (v10 && !u.keep_alive)
        plan->add_keep_alive = true;

    if (!full) {
        s->co.enc.mode = mode;
        s->resp_close = close;
        rill_encoder_write(s->ctx, &rill__http_head_ops, msg, p);
        return;
    }
    if (!close) {
        rill_encoder_write(s->ctx, &rill__http_head_ops, msg, p);
        response_done(s);
        return;
    }
    s->closing = s->stopping = true;
    if (f != &none)
        s->answered++;
    struct rill_promise *wp = closing_promise(s, p);
    rill_encoder_write(s->ctx, &rill__http_head_ops, msg, wp ? wp : p);
    if (wp)
        rill_promise_release(wp);
    else
        rill_ctx_close(s->ctx, NULL);
}

/* A piece of the body being written: a content, a raw buffer or a file
 * region (@last for a last content). */
static void write_body(struct srv *s, struct rill_msg *msg, struct rill_promise *p, bool last)
{
    struct rill_http_content *c = rill_http_content_from_msg(msg);
    struct rill_buf *b = rill_buf_from_msg(msg);
    bool sized = c || b; /* a file region's size is not known here */
    size_t n = c ? (c->data ? rill_buf_readable(c->data) : 0) : b ? rill_buf_readable(b) : 0;
    bool close = s->resp_close, chunked = false;
    struct rill_msg *out = NULL; /* what goes on as it is */

    switch (s->co.enc.mode) {
    case RILL__ENC_DROP:
        break;
    case RILL__ENC_LENGTH:
        if (sized && n > s->co.enc.remaining) {
            refuse(msg, p, -EINVAL, "body longer than its Content-Length");
            s->co.enc.mode = RILL__ENC_NONE;
            write_last(s, NULL, NULL); /* the stream cannot be repaired */
            return;
        }
        s->co.enc.remaining -= sized ? n : 0;
        s->opaque |= !sized;
        if (last && s->co.enc.remaining && !s->opaque)
            close = true; /* cut short: only the close can tell the peer */
        /* fall through */
    case RILL__ENC_RAW:
        if (!c) {
            out = msg;
            msg = NULL;
        } else if (n) {
            out = rill_buf_msg(c->data);
            c->data = NULL;
        }
        break;
    case RILL__ENC_CHUNKED:
        if (!sized)
            return refuse(msg, p, -EINVAL, "a file region in a chunked body");
        chunked = true;
        break;
    }

    if (!last) {
        if (chunked)
            rill_encoder_write(s->ctx, &rill__http_chunk_ops, msg, p);
        else if (out)
            rill_ctx_write(s->ctx, out, p);
        else if (p)
            rill_promise_succeed(p, NULL, NULL);
        if (msg && !chunked)
            rill_msg_release(msg);
        return;
    }

    s->co.enc.mode = RILL__ENC_NONE;
    if (close) {
        s->closing = s->stopping = true;
        if (front(s))
            s->answered++;
        if (chunked) {
            struct rill_promise *wp = closing_promise(s, p);
            rill_encoder_write(s->ctx, &rill__http_chunk_ops, msg, wp ? wp : p);
            if (wp)
                rill_promise_release(wp);
            else
                rill_ctx_close(s->ctx, NULL);
        } else {
            if (msg)
                rill_msg_release(msg);
            write_last(s, out, p);
        }
        return;
    }
    if (chunked) {
        rill_encoder_write(s->ctx, &rill__http_chunk_ops, msg, p);
    } else {
        if (msg)
            rill_msg_release(msg);
        if (!out && p) { /* an empty write, so @p follows the bytes before it */
            struct rill_buf *e;
            if (rill_buf_alloc(0, &e) == 0)
                out = rill_buf_msg(e);
            else
                rill_promise_succeed(p, NULL, NULL);
        }
        if (out)
            rill_ctx_write(s->ctx, out, p);
    }
    response_done(s);
}

static void srv_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct srv *s = rill_ctx_state(ctx);
    switch (msg->type) {
    case RILL_MSG_HTTP_RESPONSE:
    case RILL_MSG_HTTP_FULL_RESPONSE:
        write_response(s, msg, p);
        return;
    case RILL_MSG_HTTP_CONTENT:
    case RILL_MSG_HTTP_LAST_CONTENT:
        if (s->co.enc.mode == RILL__ENC_NONE)
            return refuse(msg, p, s->closing ? RILL_ECLOSED : -EINVAL,
                          "content without a response head");
        write_body(s, msg, p, msg->type == RILL_MSG_HTTP_LAST_CONTENT);
        return;
    case RILL_MSG_BUF:
    case RILL_MSG_FILE_REGION:
        if (s->co.enc.mode != RILL__ENC_NONE) {
            write_body(s, msg, p, false);
            return;
        }
        break;
    }
    rill_ctx_write(ctx, msg, p); /* raw bytes outside a response pass as they are */
}

/* ---- the handler ---- */

static void srv_read_complete(struct rill_ctx *ctx)
{
    struct srv *s = rill_ctx_state(ctx);
    rill_decoder_on_read_complete(ctx);
    /* The base failed on its own (a limit of its own, no memory): close. */
    if (rill_decoder_error(&s->co.dec) && !s->failed_by_us && !s->closing) {
        s->failed_by_us = true;
        write_last(s, NULL, NULL);
    }
}

static void srv_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct srv *s = rill_ctx_state(ctx);
    rill_decoder_on_user_event(ctx, ev);
    if (ev->type == RILL_EVENT_INPUT_SHUTDOWN && s->lingering)
        rill_ctx_close(ctx, NULL); /* the peer has read our last answer */
}

static int srv_added(struct rill_ctx *ctx)
{
    struct srv *s = rill_ctx_state(ctx);
    const struct rill_http_server_config *c = rill_ctx_arg(ctx);
    if (c)
        s->cfg = *c;
    else
        rill_http_server_config_init(&s->cfg);
    srv_config_defaults(&s->cfg);
    s->lim =
        (struct rill__http_limits){ s->cfg.max_line, s->cfg.max_header_size, s->cfg.max_headers };
    s->ctx = ctx;
    s->ring = s->ring_inline;
    s->ring_cap = RING_INLINE;
    /* The codec answers bad requests and closes itself, after the answer. */
    struct rill_decoder_options o = { .keep_open_on_error = true };
    return rill_decoder_init(&s->co.dec, ctx, &srv_ops, &o);
}

const struct rill_handler rill_http_server_codec = {
    .name = "http-server-codec",
    .ctx_size = sizeof(struct srv),
    .added = srv_added,
    .removed = rill_decoder_on_removed,
    .read = rill_decoder_on_read,
    .read_complete = srv_read_complete,
    .user_event = srv_user_event,
    .inactive = rill_decoder_on_inactive,
    .write = srv_write,
};
