/* libFuzzer target for the HTTP client codec (rill/http.h), optionally
 * with the aggregator. Input:
 *
 *   byte 0   bits 0-1, 2-3, 4-5: the methods of the three requests sent
 *            before any response arrives (GET, HEAD, POST with a body,
 *            CONNECT); bit 6 aggregator (64 bytes); bit 7 small limits
 *            (line 64, fields 128 bytes / 4)
 *   byte 1   how the harness cuts the rest into reads (fuzz.h)
 *   rest     the bytes a server sends
 *
 * Oracle (http_oracle.h): the stream is run twice, in one read and cut as byte 1 says;
 * what reaches the end of the pipeline (response heads, joined bodies,
 * trailers, raw bytes after an upgrade, exception codes) must be the same
 * up to the first exception, and every exception must carry a text. The
 * requests must encode to well-formed bytes. */
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

static struct run {
    struct hz_log seen, wrote, body;
    uint8_t flags;
} run;

static void tap_write(struct rill_ctx *ctx, struct rill_msg *m, struct rill_promise *p)
{
    struct rill_buf *b = rill_buf_from_msg(m);
    if (b)
        hz_put_buf(&run.wrote, b);
    rill_ctx_write(ctx, m, p);
}

static const struct rill_handler tap = { .name = "tap", .write = tap_write };

static void send_requests(struct rill_ctx *ctx)
{
    static const char *const methods[] = { "GET", "HEAD", "POST", "CONNECT" };
    for (int i = 0; i < 3; i++) {
        int k = (run.flags >> (2 * i)) & 3;
        struct rill_http_request *r;
        if (rill_http_request_new(methods[k], k == 3 ? "h:443" : "/p", &r) != 0 ||
            rill_http_headers_add(&r->http.headers, "Host", "h") != 0)
            abort();
        if (k == 2 && rill_http_message_set_body_copy(&r->http, "body", 4) != 0)
            abort();
        rill_ctx_write(ctx, &r->http.msg, NULL);
    }
    rill_ctx_flush(ctx);
}

static void sink_active(struct rill_ctx *ctx)
{
    send_requests(ctx);
    rill_ctx_fire_active(ctx);
}

static void sink_read(struct rill_ctx *ctx, struct rill_msg *m)
{
    struct rill_http_response *resp = rill_http_response_from_msg(m);
    struct rill_http_content *c = rill_http_content_from_msg(m);
    struct rill_buf *raw = rill_buf_from_msg(m);
    if (resp) {
        if (resp->reason && strlen(resp->reason) != resp->reason_len)
            abort();
        hz_putf(&run.seen, "RESP %u %d %x", resp->status, resp->http.version, resp->http.flags);
        if (resp->http.flags & RILL_HTTP_F_LENGTH)
            hz_putf(&run.seen, " cl=%llu", (unsigned long long)resp->http.content_length);
        hz_put_fields(&run.seen, &resp->http.headers);
        run.body.n = 0;
        if (resp->http.body)
            hz_put_buf(&run.body, resp->http.body);
    }
    if (c && c->data)
        hz_put_buf(&run.body, c->data);
    if (raw) {
        hz_put_buf(&run.body, raw);
    } else if (rill_http_is_last(m)) {
        hz_put_end(&run.seen, &run.body, resp ? &resp->http.trailers : &c->trailers);
        run.body.n = 0;
    } else if (!resp && !c) {
        hz_putf(&run.seen, "OTHER %u\n", m->type);
    }
    rill_msg_release(m);
}

static void sink_exception(struct rill_ctx *ctx, int err, const char *why)
{
    hz_exception(&run.seen, err, why);
}

static const struct rill_handler sink = {
    .name = "sink",
    .active = sink_active,
    .read = sink_read,
    .exception = sink_exception,
};

static void one_run(uint8_t flags, const uint8_t *data, size_t size, struct hz_log *seen)
{
    struct rill_http_client_config cc;
    rill_http_client_config_init(&cc);
    struct rill_http_aggregator_config ac = { .max_content = 64 };
    if (flags & 0x80) {
        cc.max_line = 64;
        cc.max_header_size = 128;
        cc.max_headers = 4;
    }
    const struct rill_handler *h[4] = { &tap, &rill_http_client_codec };
    void *args[4] = { NULL, &cc };
    size_t n = 2;
    if (flags & 0x40) {
        h[n] = &rill_http_aggregator;
        args[n++] = &ac;
    }
    h[n] = &sink;
    args[n++] = NULL;
    run = (struct run){ .flags = flags };
    rill_fuzz_run(h, args, n, data, size);
    /* Raw bytes after an upgrade count as one body at the end. */
    if (run.body.n) {
        hz_put(&run.seen, "RAW[", 4);
        hz_put(&run.seen, run.body.v, run.body.n);
        hz_put(&run.seen, "]\n", 2);
    }
    free(run.body.v);
    static const char *const starts[] = { "GET /p ", "HEAD /p ", "POST /p ", "CONNECT h:443 " };
    const char *first = starts[flags & 3];
    int lines = 0;
    for (char *p = run.wrote.v; p && (p = strstr(p, " HTTP/1.1\r\n")); p++)
        lines++;
    if (!run.wrote.v || strncmp(run.wrote.v, first, strlen(first)) != 0 || lines != 3) {
        fprintf(stderr, "fuzz: requests encoded badly: %s\n", run.wrote.v ? run.wrote.v : "");
        abort();
    }
    free(run.wrote.v);
    *seen = run.seen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    struct hz_log seen1, seen2;
    uint8_t *whole = hz_whole(data, size);
    one_run(flags, whole, size - 1, &seen1);
    free(whole);
    if (data[1] & 3) {
        one_run(flags, data + 1, size - 1, &seen2);
        hz_expect_same(&seen1, &seen2, "decoded");
        free(seen2.v);
    }
    free(seen1.v);
    return 0;
}
