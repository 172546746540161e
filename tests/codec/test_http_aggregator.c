/* The HTTP aggregator behind the server and client codecs: bodies joined
 * without copying, trailers kept, the limit (413 for requests, an error
 * for responses), 100-continue and 417. Also the header-field API. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/clock.h"
#include "rill/composite.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/http.h"
#include "tests/codec/test_http_util.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(http_aggregator, .timeout = 60, .fini = rill_test_no_leaks);

static struct rill_embedded *server_agg(size_t max)
{
    struct rill_http_aggregator_config ac;
    rill_http_aggregator_config_init(&ac);
    if (max)
        ac.max_content = max;
    /* The config is copied when the handler is added. */
    struct rill_embedded_handler hs[2] = {
        { "http", &rill_http_server_codec, NULL },
        { "agg", &rill_http_aggregator, &ac },
    };
    return hemb(hs, 2);
}

static void finish(struct rill_embedded *e)
{
    rill_embedded_take_exception(e, NULL);
    rill_embedded_finish(e, NULL);
    rill_embedded_free(e);
}

static struct rill_msg *one_inbound(struct rill_embedded *e)
{
    cr_assert_eq(rill_embedded_inbound_count(e), 1);
    return rill_embedded_read_inbound(e);
}

Test(http_aggregator, chunked_body_becomes_one_full_request)
{
    const char *in = "POST /agg HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
    size_t len = strlen(in);
    for (size_t at = 1; at < len; at++) {
        struct rill_embedded *e = server_agg(0);
        rill_test_feed_split(e, in, len, at);
        struct rill_msg *m = one_inbound(e);
        cr_assert_eq(m->type, RILL_MSG_HTTP_FULL_REQUEST, "split at %zu", at);
        struct rill_http_request *req = rill_http_request_from_msg(m);
        cr_assert_str_eq(req->target, "/agg");
        char *body = rill_test_buf_str(req->http.body);
        cr_assert_str_eq(body, "wikipedia", "split at %zu", at);
        free(body);
        cr_assert_str_eq(rill_http_headers_get(&req->http.trailers, "x-t", NULL), "1");
        rill_msg_release(m);
        finish(e);
    }
}

Test(http_aggregator, large_bodies_are_joined_without_copies)
{
    struct rill_embedded *e = server_agg(0);
    const char *head = "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n";
    rill_test_feed(e, head, strlen(head));
    char *piece = malloc(30000);
    for (int i = 0; i < 10; i++) {
        memset(piece, 'a' + i, 30000);
        rill_test_feed(e, piece, 30000);
    }
    free(piece);
    struct rill_msg *m = one_inbound(e);
    struct rill_http_request *req = rill_http_request_from_msg(m);
    cr_assert_eq(rill_buf_readable(req->http.body), 300000);
    cr_assert_eq(rill_buf_kind(req->http.body), RILL_BUF_COMPOSITE);
    cr_assert_geq(rill_buf_composite_count(req->http.body), 10);
    uint8_t c;
    rill_buf_get_u8(req->http.body, rill_buf_reader_index(req->http.body) + 299999, &c);
    cr_assert_eq(c, 'j');
    rill_msg_release(m);
    finish(e);
}

Test(http_aggregator, full_messages_and_others_pass)
{
    struct rill_embedded *e = server_agg(0);
    rill_test_feed(e, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27);
    struct rill_msg *m = one_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_HTTP_FULL_REQUEST);
    rill_msg_release(m);
    /* After the codec is gone, raw buffers pass the aggregator. */
    rill_pipeline_remove(rill_embedded_pipeline(e), "http");
    rill_test_feed(e, "raw", 3);
    m = one_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_BUF);
    rill_msg_release(m);
    finish(e);
}

Test(http_aggregator, over_the_limit_gets_413_and_closes)
{
    /* Streamed past the limit. */
    struct rill_embedded *e = server_agg(10);
    const char *in = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"
                     "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    rill_test_feed_bytes(e, in, strlen(in));
    cr_assert_eq(rill_embedded_inbound_count(e), 0, "the oversized request is dropped");
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert(has(why, "exceeds the limit of 10 bytes"), "%s", why);
    char *out = out_str(e);
    cr_assert(has(out, "HTTP/1.1 413 Content Too Large\r\n"), "%s", out);
    cr_assert(has(out, "Connection: close\r\n"), "%s", out);
    cr_assert_eq(count_of(out, "HTTP/1.1"), 1, "nothing after: %s", out);
    free(out);
    rill_embedded_advance_clock(e, 3 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    finish(e);

    /* Declared past the limit: answered at the head. */
    e = server_agg(10);
    const char *head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    rill_test_feed(e, head, strlen(head));
    out = out_str(e);
    cr_assert(has(out, "HTTP/1.1 413 "), "%s", out);
    free(out);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_ETOOLARGE);
    rill_test_feed(e, "hello world", 11);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    finish(e);

    /* A full request past the limit (the body arrived with its head). */
    e = server_agg(4);
    const char *full = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    rill_test_feed(e, full, strlen(full));
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    out = out_str(e);
    cr_assert(has(out, "HTTP/1.1 413 "), "%s", out);
    free(out);
    finish(e);

    /* Exactly at the limit passes. */
    e = server_agg(5);
    rill_test_feed(e, full, strlen(full));
    struct rill_msg *m = one_inbound(e);
    rill_msg_release(m);
    finish(e);
}

Test(http_aggregator, continue_and_expectation_failed)
{
    struct rill_embedded *e = server_agg(100);
    const char *head =
        "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    rill_test_feed(e, head, strlen(head));
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 100 Continue\r\n\r\n");
    free(out);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    rill_test_feed(e, "data", 4);
    struct rill_msg *m = one_inbound(e);
    cr_assert_eq(rill_http_message_body_len(rill_http_message_from_msg(m)), 4);
    rill_msg_release(m);
    cr_assert(rill_embedded_is_open(e));
    finish(e);

    e = server_agg(100);
    head = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n";
    rill_test_feed(e, head, strlen(head));
    out = out_str(e);
    cr_assert(has(out, "HTTP/1.1 413 "), "%s", out);
    cr_assert_not(has(out, "100 Continue"), "%s", out);
    free(out);
    finish(e);

    e = server_agg(100);
    head = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: telepathy\r\nContent-Length: 1\r\n\r\nx";
    rill_test_feed(e, head, strlen(head));
    out = out_str(e);
    cr_assert(has(out, "HTTP/1.1 417 Expectation Failed\r\n"), "%s", out);
    cr_assert(has(out, "Connection: close"), "%s", out);
    free(out);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_EPROTO);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    rill_embedded_advance_clock(e, 3 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    finish(e);
}

/* Records the first exception that passes. */
static int first_err;
static char first_why[160];

static void record_exception(struct rill_ctx *ctx, int err, const char *why)
{
    if (!first_err) {
        first_err = err;
        snprintf(first_why, sizeof(first_why), "%s", why ? why : "");
    }
    rill_ctx_fire_exception(ctx, err, why);
}

static const struct rill_handler recorder = { .name = "rec", .exception = record_exception };

static struct rill_embedded *client_agg(size_t max)
{
    struct rill_http_aggregator_config ac = { .max_content = max };
    struct rill_embedded_handler hs[3] = {
        { "http", &rill_http_client_codec, NULL },
        { "agg", &rill_http_aggregator, &ac },
        { "rec", &recorder, NULL },
    };
    first_err = 0;
    return hemb(hs, 3);
}

Test(http_aggregator, responses)
{
    struct rill_embedded *e = client_agg(16);
    struct rill_http_request *r;
    rill_http_request_new("GET", "/", &r);
    rill_embedded_write_outbound(e, &r->http.msg);
    free(out_str(e));
    const char *in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    rill_test_feed_bytes(e, in, strlen(in));
    struct rill_msg *m = one_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_HTTP_FULL_RESPONSE);
    char *body = rill_test_buf_str(rill_http_message_from_msg(m)->body);
    cr_assert_str_eq(body, "abc");
    free(body);
    rill_msg_release(m);
    finish(e);

    e = client_agg(16);
    rill_http_request_new("GET", "/", &r);
    rill_embedded_write_outbound(e, &r->http.msg);
    free(out_str(e));
    in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n01234567890123456\r\n";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(first_err, RILL_ETOOLARGE);
    cr_assert(has(first_why, "response body"), "%s", first_why);
    rill_embedded_run_pending(e);
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    finish(e);
}

/* ---- header fields ---- */

Test(http_aggregator, headers_api)
{
    struct rill_http_headers h;
    rill_http_headers_init(&h);
    cr_assert_eq(rill_http_headers_count(&h), 0);
    cr_assert_null(rill_http_headers_get(&h, "a", NULL));
    cr_assert_eq(rill_http_headers_add(&h, "Set-Cookie", "a=1"), 0);
    cr_assert_eq(rill_http_headers_add(&h, "Content-Type", "  text/plain\t"), 0);
    cr_assert_eq(rill_http_headers_add(&h, "set-cookie", "b=2"), 0);
    cr_assert_eq(rill_http_headers_count(&h), 3);
    size_t len;
    cr_assert_str_eq(rill_http_headers_get(&h, "content-type", &len), "text/plain");
    cr_assert_eq(len, 10);
    cr_assert_eq(rill_http_headers_find(&h, "SET-COOKIE", 0), 0);
    cr_assert_eq(rill_http_headers_find(&h, "SET-COOKIE", 1), 2);
    cr_assert_eq(rill_http_headers_find(&h, "SET-COOKIE", 3), -ENOENT);
    cr_assert_eq(rill_http_headers_remove(&h, "Set-Cookie"), 2);
    cr_assert_eq(rill_http_headers_count(&h), 1);
    cr_assert_eq(rill_http_headers_set(&h, "Content-Type", "text/html"), 0);
    cr_assert_eq(rill_http_headers_set_u64(&h, "Content-Length", 12345), 0);
    cr_assert_str_eq(rill_http_headers_get(&h, "content-length", NULL), "12345");
    cr_assert_eq(rill_http_headers_count(&h), 2);
    struct rill_http_field f;
    cr_assert_eq(rill_http_headers_at(&h, 0, &f), 0);
    cr_assert_str_eq(f.name, "Content-Type");
    cr_assert_str_eq(f.value, "text/html");
    cr_assert_eq(rill_http_headers_at(&h, 2, &f), -ERANGE);

    /* Injection and bad names are refused. */
    cr_assert_eq(rill_http_headers_add(&h, "X", "a\r\nEvil: 1"), -EINVAL);
    cr_assert_eq(rill_http_headers_add(&h, "X", "a\nb"), -EINVAL);
    cr_assert_eq(rill_http_headers_add(&h, "X Y", "1"), -EINVAL);
    cr_assert_eq(rill_http_headers_add(&h, "X:", "1"), -EINVAL);
    cr_assert_eq(rill_http_headers_add(&h, "", "1"), -EINVAL);
    cr_assert_eq(rill_http_headers_set(&h, "Content-Type", "bad\r\n"), -EINVAL);
    cr_assert_str_eq(rill_http_headers_get(&h, "content-type", NULL), "text/html",
                     "a refused set leaves the old field");

    /* Every byte at every place of a value longer than a word: only HTAB,
     * visible ASCII, space and bytes from 0x80 are allowed. */
    for (int c = 0; c < 256; c++) {
        bool allowed = c == '\t' || (c >= 0x20 && c != 0x7f);
        for (size_t k = 1; k < 19; k++) {
            char v[20] = "0123456789abcdefghi";
            v[k] = (char)c;
            int rc = rill_http_headers_addn(&h, "X-Byte", 6, v, sizeof(v) - 1);
            cr_assert_eq(rc, allowed ? 0 : -EINVAL, "byte 0x%02x at %zu", c, k);
        }
    }
    cr_assert_eq(rill_http_headers_remove(&h, "x-byte"), 224 * 18);

    /* Tokens in lists. */
    rill_http_headers_add(&h, "Connection", "keep-alive, Upgrade");
    rill_http_headers_add(&h, "Connection", " close ");
    cr_assert(rill_http_headers_has_token(&h, "connection", "upgrade"));
    cr_assert(rill_http_headers_has_token(&h, "connection", "CLOSE"));
    cr_assert_not(rill_http_headers_has_token(&h, "connection", "clos"));
    cr_assert_not(rill_http_headers_has_token(&h, "missing", "x"));

    /* Growth keeps every field, in order. */
    for (int i = 0; i < 500; i++) {
        char n[16], v[64];
        snprintf(n, sizeof(n), "X-%d", i);
        snprintf(v, sizeof(v), "value number %d", i);
        cr_assert_eq(rill_http_headers_add(&h, n, v), 0);
        if (i % 3 == 0)
            rill_http_headers_remove(&h, n);
    }
    for (int i = 0; i < 500; i++) {
        char n[16], v[64];
        snprintf(n, sizeof(n), "x-%d", i);
        snprintf(v, sizeof(v), "value number %d", i);
        const char *got = rill_http_headers_get(&h, n, NULL);
        if (i % 3 == 0)
            cr_assert_null(got);
        else
            cr_assert_str_eq(got, v);
    }
    struct rill_http_headers copy;
    rill_http_headers_init(&copy);
    cr_assert_eq(rill_http_headers_copy(&copy, &h), 0);
    cr_assert_eq(rill_http_headers_count(&copy), rill_http_headers_count(&h));
    rill_http_headers_clear(&h);
    cr_assert_eq(rill_http_headers_count(&h), 0);
    rill_http_headers_fini(&copy);
    rill_http_headers_fini(&h);
}

Test(http_aggregator, headers_of_a_decoded_request_can_change)
{
    /* A decoded head's fields live in its own block: adding grows them
     * elsewhere, and the start line stays valid. */
    struct rill_embedded *e = server_agg(0);
    const char *in = "GET /path HTTP/1.1\r\nHost: a\r\nX-One: 1\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    struct rill_msg *m = one_inbound(e);
    struct rill_http_request *req = rill_http_request_from_msg(m);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(rill_http_headers_add_u64(&req->http.headers, "X-Added", (uint64_t)i), 0);
    rill_http_headers_remove(&req->http.headers, "X-One");
    cr_assert_str_eq(req->method, "GET");
    cr_assert_str_eq(req->target, "/path");
    cr_assert_str_eq(rill_http_headers_get(&req->http.headers, "host", NULL), "a");
    cr_assert_null(rill_http_headers_get(&req->http.headers, "x-one", NULL));
    cr_assert_eq(rill_http_headers_count(&req->http.headers), 51);
    rill_msg_release(m);
    finish(e);
}

Test(http_aggregator, names)
{
    cr_assert_str_eq(rill_http_reason(404), "Not Found");
    cr_assert_str_eq(rill_http_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(rill_http_reason(999), "");
    cr_assert_str_eq(rill_http_method_name(RILL_HTTP_OPTIONS), "OPTIONS");
    cr_assert_str_eq(rill_http_method_name(RILL_HTTP_OTHER), "");
    struct rill_http_response *r;
    cr_assert_eq(rill_http_response_new(99, &r), -EINVAL);
    cr_assert_eq(rill_http_response_new(1000, &r), -EINVAL);
}
