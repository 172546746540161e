/* The routes of http_hello. The handler sits after the server codec and
 * the aggregator, so every request arrives as one FULL request. It writes
 * its answers in read() and flushes once in read_complete(): the answers
 * to all the requests of one read (a pipelining client) leave in one
 * writev. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hello.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/error.h"
#include "rill/http.h"
#include "rill/log.h"
#include "rill/pipeline.h"

/* The Date field, formatted once a second per thread. */
static const char *http_date(void)
{
    static __thread time_t last;
    static __thread char text[40];
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return text;
}

static struct rill_http_response *response(struct rill_ctx *ctx, unsigned status)
{
    struct rill_http_response *r;
    if (rill_http_response_new(status, &r) != 0) {
        rill_ctx_close(ctx, NULL);
        return NULL;
    }
    rill_http_headers_add(&r->http.headers, "Server", "rill");
    rill_http_headers_add(&r->http.headers, "Date", http_date());
    return r;
}

void hello_reply_text(struct rill_ctx *ctx, unsigned status, const char *text)
{
    struct rill_http_response *r = response(ctx, status);
    if (!r)
        return;
    rill_http_headers_add(&r->http.headers, "Content-Type", "text/plain");
    if (rill_http_message_set_body_copy(&r->http, text, strlen(text)) != 0) {
        rill_msg_release(&r->http.msg);
        rill_ctx_close(ctx, NULL);
        return;
    }
    rill_ctx_write(ctx, &r->http.msg, NULL);
}

/* POST /echo: the request's body back, without a copy. */
static void echo(struct rill_ctx *ctx, struct rill_http_request *req)
{
    struct rill_http_response *r = response(ctx, 200);
    if (!r)
        return;
    size_t len;
    const char *type = rill_http_headers_get(&req->http.headers, "Content-Type", &len);
    if (type)
        rill_http_headers_addn(&r->http.headers, "Content-Type", 12, type, len);
    else
        rill_http_headers_add(&r->http.headers, "Content-Type", "application/octet-stream");
    if (req->http.body)
        rill_http_message_set_body(&r->http, rill_buf_retain(req->http.body));
    rill_ctx_write(ctx, &r->http.msg, NULL);
}

static bool path_is(const char *path, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(path, lit, len) == 0;
}

static void hello_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    const struct hello_config *cfg = rill_ctx_arg(ctx);
    struct rill_http_request *req = rill_http_request_from_msg(msg);
    if (!req || !rill_http_is_full(msg)) { /* the aggregator lets nothing else through */
        rill_msg_release(msg);
        return;
    }
    const char *q = memchr(req->target, '?', req->target_len);
    size_t plen = q ? (size_t)(q - req->target) : req->target_len;
    bool get = req->method_id == RILL_HTTP_GET || req->method_id == RILL_HTTP_HEAD;
    if (path_is(req->target, plen, "/echo") && req->method_id == RILL_HTTP_POST) {
        echo(ctx, req);
    } else if (cfg->root_fd >= 0 && plen >= 8 && memcmp(req->target, "/static/", 8) == 0) {
        hello_static(ctx, req, req->target + 8, plen - 8, cfg->root_fd);
    } else if (cfg->root_fd >= 0 && !path_is(req->target, plen, "/")) {
        hello_reply_text(ctx, 404, "not found\n");
    } else if (get) {
        hello_reply_text(ctx, 200, "hello");
    } else {
        hello_reply_text(ctx, 405, "method not allowed\n");
    }
    rill_msg_release(msg);
}

static void hello_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx);
}

/* Bad requests are answered by the codec (or the aggregator) and the
 * connection closes: worth a debug line, not a warning per bad client. */
static void hello_exception(struct rill_ctx *ctx, int err, const char *why)
{
    RILL_DEBUGF("http_hello: channel %llu: %s: %s",
                (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)), rill_errname(err),
                why ? why : "");
}

const struct rill_handler hello_handler = {
    .name = "hello",
    .read = hello_read,
    .read_complete = hello_read_complete,
    .exception = hello_exception,
};
