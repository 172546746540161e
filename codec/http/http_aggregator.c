/* The aggregator (Netty's HttpObjectAggregator): head + contents become
 * one FULL message. The head message is kept and completed in place (its
 * type changes), its body is the contents' data joined in a composite
 * without copying, up to max_content bytes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec/http/http_internal.h"
#include "rill/buf.h"
#include "rill/composite.h"
#include "rill/error.h"
#include "rill/pipeline.h"

struct agg {
    struct rill_http_aggregator_config cfg;
    struct rill_http_message *cur; /* the head being completed (owned), or NULL */
    size_t len;
    bool discarding; /* drop contents until the last one */
};

void rill_http_aggregator_config_init(struct rill_http_aggregator_config *c)
{
    c->max_content = (size_t)1 << 20;
}

static bool is_request(const struct rill_msg *m)
{
    return m->type == RILL_MSG_HTTP_REQUEST || m->type == RILL_MSG_HTTP_FULL_REQUEST;
}

/* Write an answer of our own: an interim one (100), or a final one with a
 * text that closes the connection. */
static void answer(struct rill_ctx *ctx, unsigned status, const char *text)
{
    struct rill_http_response *r;
    if (rill_http_response_new(status, &r) != 0) {
        rill_ctx_close(ctx, NULL);
        return;
    }
    if (text) {
        rill_http_headers_add(&r->http.headers, "Content-Type", "text/plain; charset=utf-8");
        rill_http_headers_add(&r->http.headers, "Connection", "close");
        char body[160];
        int n = snprintf(body, sizeof(body), "%s\n", text);
        if (rill_http_message_set_body_copy(&r->http, body, (size_t)n) != 0) {
            rill_msg_release(&r->http.msg);
            rill_ctx_close(ctx, NULL);
            return;
        }
    }
    rill_ctx_write_and_flush(ctx, &r->http.msg, NULL);
}

/* Give up on the message: answer a request (and close), or fail a
 * response's channel; drop the rest of its contents. */
static void refuse(struct rill_ctx *ctx, struct agg *a, bool request, unsigned status, int err,
                   const char *why, bool more)
{
    if (request)
        answer(ctx, status, why);
    rill_ctx_fire_exception(ctx, err, why);
    if (!request)
        rill_ctx_close(ctx, NULL);
    a->discarding = more;
}

/* @len: the body's length when known (declared, or a full message's),
 * else 0: the text must not depend on how the body was cut into reads. */
static void too_large(struct rill_ctx *ctx, struct agg *a, bool request, uint64_t len, bool more)
{
    char why[120];
    if (len)
        snprintf(why, sizeof(why), "%s body of %llu bytes exceeds the limit of %zu bytes",
                 request ? "request" : "response", (unsigned long long)len, a->cfg.max_content);
    else
        snprintf(why, sizeof(why), "%s body exceeds the limit of %zu bytes",
                 request ? "request" : "response", a->cfg.max_content);
    refuse(ctx, a, request, 413, RILL_ETOOLARGE, why, more);
}

static int append(struct rill_http_message *m, struct rill_buf *data)
{
    if (!m->body) {
        m->body = data;
        return 0;
    }
    if (rill_buf_kind(m->body) != RILL_BUF_COMPOSITE) {
        struct rill_buf *c;
        int err = rill_buf_composite_new(&c);
        if (err) {
            rill_buf_release(data);
            return err;
        }
        err = rill_buf_composite_add(c, m->body); /* takes the old body on every path */
        m->body = c;
        if (err) {
            rill_buf_release(data);
            return err;
        }
    }
    return rill_buf_composite_add(m->body, data);
}

static void on_content(struct rill_ctx *ctx, struct agg *a, struct rill_http_content *c)
{
    bool last = c->msg.type == RILL_MSG_HTTP_LAST_CONTENT;
    if (a->discarding || !a->cur) {
        if (a->discarding) {
            a->discarding = !last;
            rill_msg_release(&c->msg);
        } else {
            rill_ctx_fire_read(ctx, &c->msg); /* not part of a message we know */
        }
        return;
    }
    struct rill_http_message *m = a->cur;
    bool request = is_request(&m->msg);
    size_t n = c->data ? rill_buf_readable(c->data) : 0;
    if (n > a->cfg.max_content - a->len) {
        a->cur = NULL;
        rill_msg_release(&m->msg);
        rill_msg_release(&c->msg);
        too_large(ctx, a, request, 0, !last);
        return;
    }
    if (n) {
        struct rill_buf *data = c->data;
        c->data = NULL;
        int err = append(m, data);
        if (err) {
            a->cur = NULL;
            rill_msg_release(&m->msg);
            rill_msg_release(&c->msg);
            refuse(ctx, a, false, 0, err, "no memory to aggregate a body", !last);
            return;
        }
        a->len += n;
    }
    if (last && rill_http_headers_count(&c->trailers) &&
        rill_http_headers_copy(&m->trailers, &c->trailers) != 0) {
        a->cur = NULL;
        rill_msg_release(&m->msg);
        rill_msg_release(&c->msg);
        refuse(ctx, a, false, 0, -ENOMEM, "no memory for trailers", false);
        return;
    }
    rill_msg_release(&c->msg);
    if (last) {
        a->cur = NULL;
        m->msg.type = request ? RILL_MSG_HTTP_FULL_REQUEST : RILL_MSG_HTTP_FULL_RESPONSE;
        rill_ctx_fire_read(ctx, &m->msg);
    }
}

static void on_head(struct rill_ctx *ctx, struct agg *a, struct rill_http_message *m)
{
    bool request = is_request(&m->msg);
    a->discarding = false;
    if (a->cur) { /* the previous message never ended: drop it */
        rill_msg_release(&a->cur->msg);
        a->cur = NULL;
    }
    uint16_t f = m->flags;
    bool full = rill_http_is_full(&m->msg);
    if (request && (f & RILL_HTTP_F_EXPECT_OTHER)) {
        rill_msg_release(&m->msg);
        refuse(ctx, a, true, 417, RILL_EPROTO, "unsupported expectation", !full);
        return;
    }
    if (full) {
        size_t n = rill_http_message_body_len(m);
        if (n > a->cfg.max_content) {
            rill_msg_release(&m->msg);
            too_large(ctx, a, request, n, false);
            return;
        }
        rill_ctx_fire_read(ctx, &m->msg);
        return;
    }
    if ((f & RILL_HTTP_F_LENGTH) && m->content_length > a->cfg.max_content) {
        uint64_t len = m->content_length;
        rill_msg_release(&m->msg);
        too_large(ctx, a, request, len, true);
        return;
    }
    if (request && (f & RILL_HTTP_F_EXPECT_CONTINUE))
        answer(ctx, 100, NULL);
    a->cur = m;
    a->len = 0;
}

static void agg_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct agg *a = rill_ctx_state(ctx);
    struct rill_http_content *c = rill_http_content_from_msg(msg);
    if (c) {
        on_content(ctx, a, c);
        return;
    }
    struct rill_http_message *m = rill_http_message_from_msg(msg);
    if (m) {
        on_head(ctx, a, m);
        return;
    }
    rill_ctx_fire_read(ctx, msg);
}

static int agg_added(struct rill_ctx *ctx)
{
    struct agg *a = rill_ctx_state(ctx);
    const struct rill_http_aggregator_config *c = rill_ctx_arg(ctx);
    if (c)
        a->cfg = *c;
    else
        rill_http_aggregator_config_init(&a->cfg);
    if (!a->cfg.max_content)
        rill_http_aggregator_config_init(&a->cfg);
    return 0;
}

static void agg_removed(struct rill_ctx *ctx)
{
    struct agg *a = rill_ctx_state(ctx);
    if (a->cur)
        rill_msg_release(&a->cur->msg);
    a->cur = NULL;
}

const struct rill_handler rill_http_aggregator = {
    .name = "http-aggregator",
    .ctx_size = sizeof(struct agg),
    .added = agg_added,
    .removed = agg_removed,
    .read = agg_read,
};
