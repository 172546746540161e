/* libFuzzer target for the HTTP server codec (rill/http.h), optionally
 * with the aggregator and a handler that answers every request. Input:
 *
 *   byte 0   bit 0 aggregator, bit 1 answer each request, bit 2 small
 *            limits (line 64, fields 128 bytes / 4, 4 pipelined, body 32),
 *            bit 3 linger 0
 *   byte 1   how the harness cuts the rest into reads (fuzz.h)
 *   rest     the bytes a client sends
 *
 * Oracle (http_oracle.h): the stream is run twice, once in one read and once cut as byte
 * 1 says. What reaches the end of the pipeline (heads, joined bodies,
 * trailers, exception codes) and the bytes written (the answers, without
 * 100 Continue lines, whose presence depends on whether the body came with
 * its head) must be the same up to the first exception. Every exception
 * must carry a text, every answer must start with a status line. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http_oracle.h"
#include "rill/buf.h"
#include "rill/http.h"
#include "rill/msg.h"
#include "rill/pipeline.h"

/* Per run: what reached the tail, what was written, and the handler's body. */
static struct run {
    struct hz_log seen, wrote;
    struct hz_log body; /* of the request being answered */
    char method[32];    /* of the request being answered */
    bool answer;
} run;

/* ---- at the head: records written bytes ---- */

static void tap_write(struct rill_ctx *ctx, struct rill_msg *m, struct rill_promise *p)
{
    struct rill_buf *b = rill_buf_from_msg(m);
    if (b)
        hz_put_buf(&run.wrote, b);
    else
        hz_putf(&run.wrote, "<msg %u>", m->type);
    rill_ctx_write(ctx, m, p);
}

static const struct rill_handler tap = { .name = "tap", .write = tap_write };

/* ---- at the tail: records and answers ---- */

static void answer(struct rill_ctx *ctx)
{
    struct rill_http_response *r;
    if (rill_http_response_new(200, &r) != 0)
        abort();
    char text[64];
    int n = snprintf(text, sizeof(text), "%s %zu", run.method, run.body.n);
    if (rill_http_message_set_body_copy(&r->http, text, (size_t)n) != 0)
        abort();
    rill_ctx_write(ctx, &r->http.msg, NULL);
}

static void sink_read(struct rill_ctx *ctx, struct rill_msg *m)
{
    struct rill_http_request *req = rill_http_request_from_msg(m);
    struct rill_http_content *c = rill_http_content_from_msg(m);
    if (req) {
        if (!req->method_len || strlen(req->method) != req->method_len ||
            strlen(req->target) != req->target_len) {
            fprintf(stderr, "fuzz: request line is not proper strings\n");
            abort();
        }
        hz_putf(&run.seen, "REQ %s %s %d %x", req->method, req->target, req->http.version,
                req->http.flags);
        if (req->http.flags & RILL_HTTP_F_LENGTH)
            hz_putf(&run.seen, " cl=%llu", (unsigned long long)req->http.content_length);
        hz_put_fields(&run.seen, &req->http.headers);
        run.body.n = 0;
        snprintf(run.method, sizeof(run.method), "%s", req->method);
        if (req->http.body)
            hz_put_buf(&run.body, req->http.body);
    }
    if (c && c->data)
        hz_put_buf(&run.body, c->data);
    if (rill_http_is_last(m)) {
        hz_put_end(&run.seen, &run.body, req ? &req->http.trailers : &c->trailers);
        if (run.answer)
            answer(ctx);
        run.body.n = 0;
    } else if (!req && !c) {
        hz_putf(&run.seen, "OTHER %u\n", m->type);
    }
    rill_msg_release(m);
}

static void sink_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx);
}

static void sink_exception(struct rill_ctx *ctx, int err, const char *why)
{
    hz_exception(&run.seen, err, why);
    run.wrote.cut = true;
}

static const struct rill_handler sink = {
    .name = "sink",
    .read = sink_read,
    .read_complete = sink_read_complete,
    .exception = sink_exception,
};

/* Remove "HTTP/1.1 100 Continue\r\n\r\n" from @l. */
static void strip_continue(struct hz_log *l)
{
    static const char c100[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t k = sizeof(c100) - 1;
    char *p;
    while (l->v && (p = memmem(l->v, l->n, c100, k))) {
        memmove(p, p + k, l->n - (size_t)(p - l->v) - k);
        l->n -= k;
    }
}

static void one_run(uint8_t flags, const uint8_t *data, size_t size, struct hz_log *seen,
                    struct hz_log *wrote)
{
    struct rill_http_server_config sc;
    rill_http_server_config_init(&sc);
    struct rill_http_aggregator_config ac;
    rill_http_aggregator_config_init(&ac);
    if (flags & 4) {
        sc.max_line = 64;
        sc.max_header_size = 128;
        sc.max_headers = 4;
        sc.max_pipelined = 4;
        ac.max_content = 32;
    }
    if (flags & 8)
        sc.linger_ms = 0;
    const struct rill_handler *h[4] = { &tap, &rill_http_server_codec };
    void *args[4] = { NULL, &sc };
    size_t n = 2;
    if (flags & 1) {
        h[n] = &rill_http_aggregator;
        args[n++] = &ac;
    }
    h[n] = &sink;
    args[n++] = NULL;
    run = (struct run){ .answer = flags & 2 };
    rill_fuzz_run(h, args, n, data, size);
    free(run.body.v);
    strip_continue(&run.wrote);
    *seen = run.seen;
    *wrote = run.wrote;
}

static void check_answers(const struct hz_log *w)
{
    /* Every answer starts with a status line: the stream does. */
    if (w->n && memcmp(w->v, "HTTP/1.", 7) != 0) {
        fprintf(stderr, "fuzz: output does not start with a status line: %.40s\n", w->v);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    struct hz_log seen1, wrote1, seen2, wrote2;
    uint8_t *whole = hz_whole(data, size);
    one_run(flags, whole, size - 1, &seen1, &wrote1);
    free(whole);
    check_answers(&wrote1);
    if (data[1] & 3) {
        one_run(flags, data + 1, size - 1, &seen2, &wrote2);
        check_answers(&wrote2);
        hz_expect_same(&seen1, &seen2, "decoded");
        hz_expect_same(&wrote1, &wrote2, "answered");
        free(seen2.v);
        free(wrote2.v);
    }
    free(seen1.v);
    free(wrote1.v);
    return 0;
}
