/* The HTTP server codec through the embedded channel: request decoding
 * (every byte boundary, coalesced pipelines, guard pages), bodies in all
 * framings, response encoding, keep-alive and close, pipelined answers in
 * order and in one flush, 100-continue, and every error with its status,
 * error code and text. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/http.h"
#include "rill/pipeline.h"
#include "tests/codec/test_http_util.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(http_server, .timeout = 60, .fini = rill_test_no_leaks);

/* ---- test handlers ---- */

/* Counts flushes on their way to the head. */
static int flushes;

static void count_flush(struct rill_ctx *ctx)
{
    flushes++;
    rill_ctx_flush(ctx);
}

static const struct rill_handler flush_counter = { .name = "flushes", .flush = count_flush };

/* Answers every complete request with 200 "ok <target>" (or the body of a
 * POST), writing in read and flushing in read_complete, as users should.
 * With hold set it keeps requests instead (the test answers them). */
struct responder {
    bool hold;
    bool interim_100; /* answer 100 Continue to the head first */
    struct rill_msg *held[16];
    int nheld, answered;
    char target[256];
    struct rill_buf *body; /* of a streamed request */
};

static void answer(struct rill_ctx *ctx, struct responder *r, struct rill_http_request *req,
                   struct rill_buf *body)
{
    struct rill_http_response *resp;
    cr_assert_eq(rill_http_response_new(200, &resp), 0);
    cr_assert_eq(rill_http_headers_add(&resp->http.headers, "Content-Type", "text/plain"), 0);
    if (body && rill_buf_readable(body)) {
        rill_http_message_set_body(&resp->http, rill_buf_retain(body));
    } else {
        char text[300];
        snprintf(text, sizeof(text), "ok %s", req ? req->target : r->target);
        cr_assert_eq(rill_http_message_set_body_copy(&resp->http, text, strlen(text)), 0);
    }
    r->answered++;
    rill_ctx_write(ctx, &resp->http.msg, NULL);
}

static void responder_read(struct rill_ctx *ctx, struct rill_msg *m)
{
    struct responder *r = rill_ctx_arg(ctx);
    if (r->hold) {
        cr_assert_lt(r->nheld, 16);
        r->held[r->nheld++] = m;
        return;
    }
    struct rill_http_request *req = rill_http_request_from_msg(m);
    struct rill_http_content *c = rill_http_content_from_msg(m);
    if (req && rill_http_is_full(m)) {
        answer(ctx, r, req, req->http.body);
    } else if (req) {
        snprintf(r->target, sizeof(r->target), "%s", req->target);
        if (r->interim_100) {
            struct rill_http_response *cont;
            cr_assert_eq(rill_http_response_new(100, &cont), 0);
            rill_ctx_write_and_flush(ctx, &cont->http.msg, NULL);
        }
    } else if (c) {
        if (c->data) {
            if (!r->body)
                cr_assert_eq(rill_buf_alloc(64, &r->body), 0);
            cr_assert_eq(rill_buf_write_buf(r->body, c->data, rill_buf_readable(c->data)), 0);
        }
        if (m->type == RILL_MSG_HTTP_LAST_CONTENT) {
            answer(ctx, r, NULL, r->body);
            if (r->body)
                rill_buf_release(r->body);
            r->body = NULL;
        }
    }
    rill_msg_release(m);
}

static void responder_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx);
}

static const struct rill_handler responder_handler = {
    .name = "responder",
    .read = responder_read,
    .read_complete = responder_read_complete,
};

static void responder_release(struct responder *r)
{
    for (int i = 0; i < r->nheld; i++)
        rill_msg_release(r->held[i]);
    r->nheld = 0;
    if (r->body)
        rill_buf_release(r->body);
    r->body = NULL;
}

static struct rill_embedded *server(const struct rill_http_server_config *cfg, struct responder *r)
{
    flushes = 0;
    struct rill_embedded_handler hs[3] = {
        { "flushes", &flush_counter, NULL },
        { "http", &rill_http_server_codec, (void *)cfg },
        { "app", &responder_handler, r },
    };
    return hemb(hs, r ? 3 : 2);
}

#define GET_A "GET / HTTP/1.1\r\nHost: a\r\n\r\n"

static int feed_str(struct rill_embedded *e, const char *s)
{
    return rill_test_feed(e, s, strlen(s));
}

static void finish(struct rill_embedded *e)
{
    rill_embedded_take_exception(e, NULL);
    size_t left = 0;
    rill_embedded_finish(e, &left);
    rill_embedded_free(e);
}

/* Feed @in whole, describe what reaches the tail. */
static char *decode_desc(const char *in, size_t len, const size_t *cuts, size_t ncuts)
{
    struct rill_embedded *e = server(NULL, NULL);
    if (ncuts == (size_t)-1)
        rill_test_feed_bytes(e, in, len);
    else
        rill_test_feed_cuts(e, in, len, cuts, ncuts);
    struct hdesc d = { 0 };
    hdesc_drain(&d, e);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0, "no error expected");
    cr_assert(rill_embedded_is_open(e));
    char *out = out_str(e);
    cr_assert_str_eq(out, "", "nothing is written without a response");
    free(out);
    finish(e);
    return hdesc_take(&d);
}

/* ---- decoding ---- */

Test(http_server, get_becomes_one_full_request)
{
    struct rill_embedded *e = server(NULL, NULL);
    const char *in = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A:  1 \r\nx-a: 2\r\nAccept:\r\n\r\n";
    cr_assert_eq(rill_test_feed(e, in, strlen(in)), 1);
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_HTTP_FULL_REQUEST);
    struct rill_http_request *req = rill_http_request_from_msg(m);
    cr_assert_not_null(req);
    cr_assert_null(rill_http_response_from_msg(m));
    cr_assert(rill_http_is_last(m));
    cr_assert_str_eq(req->method, "GET");
    cr_assert_eq(req->method_len, 3);
    cr_assert_eq(req->method_id, RILL_HTTP_GET);
    cr_assert_str_eq(req->target, "/a?b=1");
    cr_assert_eq(req->target_len, 6);
    cr_assert_eq(req->http.version, RILL_HTTP_11);
    cr_assert_eq(req->http.flags, RILL_HTTP_F_KEEP_ALIVE);
    cr_assert_null(req->http.body);
    cr_assert_eq(rill_http_message_body_len(&req->http), 0);
    struct rill_http_headers *h = &req->http.headers;
    cr_assert_eq(rill_http_headers_count(h), 4);
    size_t len;
    cr_assert_str_eq(rill_http_headers_get(h, "HOST", &len), "x");
    cr_assert_eq(len, 1);
    cr_assert_str_eq(rill_http_headers_get(h, "x-a", NULL), "1", "whitespace around values goes");
    ssize_t i = rill_http_headers_find(h, "X-A", 0);
    cr_assert_eq(i, 1);
    i = rill_http_headers_find(h, "X-A", (size_t)i + 1);
    cr_assert_eq(i, 2);
    struct rill_http_field f;
    cr_assert_eq(rill_http_headers_at(h, (size_t)i, &f), 0);
    cr_assert_str_eq(f.name, "x-a", "names keep their case");
    cr_assert_str_eq(f.value, "2");
    cr_assert_str_eq(rill_http_headers_get(h, "accept", &len), "");
    cr_assert_eq(len, 0);
    cr_assert_null(rill_http_headers_get(h, "missing", NULL));
    rill_msg_release(m);
    finish(e);
}

Test(http_server, methods_and_versions)
{
    struct {
        const char *line;
        enum rill_http_method id;
        int version;
        uint16_t flags;
    } cases[] = {
        { "HEAD / HTTP/1.1", RILL_HTTP_HEAD, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "DELETE /x HTTP/1.1", RILL_HTTP_DELETE, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "OPTIONS * HTTP/1.1", RILL_HTTP_OPTIONS, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "PATCH /p HTTP/1.1", RILL_HTTP_PATCH, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "TRACE / HTTP/1.1", RILL_HTTP_TRACE, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "CONNECT h:1 HTTP/1.1", RILL_HTTP_CONNECT, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "PUT /u HTTP/1.1", RILL_HTTP_PUT, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "PURGE /c HTTP/1.1", RILL_HTTP_OTHER, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "get / HTTP/1.1", RILL_HTTP_OTHER, 11, RILL_HTTP_F_KEEP_ALIVE },
        { "GET / HTTP/1.0", RILL_HTTP_GET, 10, 0 },
        { "GET / HTTP/1.9", RILL_HTTP_GET, 11, RILL_HTTP_F_KEEP_ALIVE },
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        struct rill_embedded *e = server(NULL, NULL);
        char in[128];
        int n = snprintf(in, sizeof(in), "%s\r\nHost: h\r\n\r\n", cases[i].line);
        cr_assert_eq(rill_test_feed(e, in, (size_t)n), 1, "%s", cases[i].line);
        struct rill_msg *m = rill_embedded_read_inbound(e);
        struct rill_http_request *req = rill_http_request_from_msg(m);
        cr_assert_not_null(req);
        cr_assert_eq(req->method_id, cases[i].id, "%s", cases[i].line);
        cr_assert_eq(req->http.version, cases[i].version, "%s", cases[i].line);
        cr_assert_eq(req->http.flags, cases[i].flags, "%s", cases[i].line);
        cr_assert_eq(strncmp(cases[i].line, req->method, req->method_len), 0);
        rill_msg_release(m);
        finish(e);
    }
}

/* Several pipelined requests of every framing, coalesced in one string. */
static const char pipeline[] =
    "\r\n" /* an empty line before a request line is skipped */
    "GET /one HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
    "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
    "PUT /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;name=value\r\nhello\r\n1\r\n \r\n000a\r\n0123456789\r\n0\r\nX-Sum: 9\r\nX-Two: 2\r\n\r\n"
    "HEAD /four HTTP/1.1\r\nHost: a\r\n\r\n"
    "POST /five HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    "3\r\nabc\r\n0\r\n\r\n"
    "GET /six HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    "POST /seven HTTP/1.1\nHost: a\nContent-Length: 5, 5\n\n12345"
    "GET /eight HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

Test(http_server, pipelined_requests_of_every_framing)
{
    char *d = decode_desc(pipeline, sizeof(pipeline) - 1, NULL, 0);
    const char *expect =
        "REQ GET /one 11 f=1 Host=a Accept=*/*; body[] trailers[]\n"
        "REQ POST /two 11 f=3 cl=11 Host=a Content-Length=11; body[hello world] trailers[]\n"
        "REQ PUT /three 11 f=5 Host=a Transfer-Encoding=chunked; body[hello 0123456789] "
        "trailers[ X-Sum=9 X-Two=2]\n"
        "REQ HEAD /four 11 f=1 Host=a; body[] trailers[]\n"
        "REQ POST /five 11 f=5 Host=a Transfer-Encoding=gzip, chunked; body[abc] trailers[]\n"
        "REQ GET /six 10 f=1 Connection=Keep-Alive; body[] trailers[]\n"
        "REQ POST /seven 11 f=3 cl=5 Host=a Content-Length=5, 5; body[12345] trailers[]\n"
        "REQ GET /eight 11 f=0 Host=a Connection=close; body[] trailers[]\n";
    cr_assert_str_eq(d, expect);
    free(d);
}

Test(http_server, every_split_decodes_the_same)
{
    size_t len = sizeof(pipeline) - 1;
    char *whole = decode_desc(pipeline, len, NULL, 0);
    for (size_t at = 1; at < len; at++) {
        char *d = decode_desc(pipeline, len, &at, 1);
        cr_assert_str_eq(d, whole, "split at %zu", at);
        free(d);
    }
    char *bytes = decode_desc(pipeline, len, NULL, (size_t)-1);
    cr_assert_str_eq(bytes, whole, "byte by byte");
    free(bytes);
    /* Three cuts at a time, over a stride of positions. */
    for (size_t a = 1; a < len; a += 7)
        for (size_t b = a + 1; b < len; b += 23) {
            size_t cuts[3] = { a, b, (b + len) / 2 };
            char *d = decode_desc(pipeline, len, cuts, 3);
            cr_assert_str_eq(d, whole, "cuts %zu %zu %zu", a, b, cuts[2]);
            free(d);
        }
    free(whole);
}

Test(http_server, bodies_are_slices_of_the_input)
{
    /* A body that arrives whole comes inside the request; one that does
     * not comes as contents. Either way, views of the bytes read. */
    struct rill_embedded *e = server(NULL, NULL);
    const char *in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
    cr_assert_eq(rill_test_feed(e, in, strlen(in)), 1);
    struct rill_msg *m = rill_embedded_read_inbound(e);
    struct rill_http_request *req = rill_http_request_from_msg(m);
    cr_assert_eq(m->type, RILL_MSG_HTTP_FULL_REQUEST);
    cr_assert_eq(rill_buf_kind(req->http.body), RILL_BUF_SLICE);
    cr_assert(
        rill_buf_equal_bytes(req->http.body, rill_buf_reader_index(req->http.body), "body", 4));
    rill_msg_release(m);

    const char *head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234";
    cr_assert_eq(rill_test_feed(e, head, strlen(head)), 2);
    m = rill_embedded_read_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_HTTP_REQUEST);
    cr_assert_eq(rill_http_request_from_msg(m)->http.content_length, 10);
    rill_msg_release(m);
    m = rill_embedded_read_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_HTTP_CONTENT);
    struct rill_http_content *c = rill_http_content_from_msg(m);
    cr_assert_eq(rill_buf_kind(c->data), RILL_BUF_SLICE);
    cr_assert_eq(rill_buf_readable(c->data), 5);
    rill_msg_release(m);
    cr_assert_eq(rill_test_feed(e, "56789", 5), 1);
    m = rill_embedded_read_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_HTTP_LAST_CONTENT);
    cr_assert(rill_http_is_last(m));
    cr_assert_eq(rill_buf_readable(rill_http_content_from_msg(m)->data), 5);
    rill_msg_release(m);
    finish(e);
}

Test(http_server, large_body_streams_in_pieces)
{
    /* 1 MiB in 16 KiB reads: nothing waits for the whole body. */
    struct rill_embedded *e = server(NULL, NULL);
    const char *head = "PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n";
    rill_test_feed(e, head, strlen(head));
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_eq(m->type, RILL_MSG_HTTP_REQUEST);
    rill_msg_release(m);
    char *piece = malloc(16384);
    memset(piece, 'z', 16384);
    size_t got = 0;
    int lasts = 0;
    for (int i = 0; i < 64; i++) {
        rill_test_feed(e, piece, 16384);
        while ((m = rill_embedded_read_inbound(e))) {
            struct rill_http_content *c = rill_http_content_from_msg(m);
            cr_assert_not_null(c);
            got += rill_buf_readable(c->data);
            lasts += m->type == RILL_MSG_HTTP_LAST_CONTENT;
            rill_msg_release(m);
        }
        cr_assert_eq(got, (size_t)(i + 1) * 16384, "each read is passed on at once");
    }
    cr_assert_eq(lasts, 1);
    free(piece);
    finish(e);
}

Test(http_server, composite_input_decodes)
{
    /* A head split over a small read and a large one makes the decoder's
     * cumulation a composite: scanning and copying work across it. */
    size_t big = 4000;
    char *in = malloc(big + 200);
    int n = snprintf(in, 200, "GET /c HTTP/1.1\r\nHost: a\r\nX-Pad: ");
    memset(in + n, 'p', big);
    memcpy(in + n + big, "\r\n\r\n", 4);
    size_t len = (size_t)n + big + 4;
    for (size_t at = 3; at < (size_t)n + 20; at += 5) {
        struct rill_embedded *e = server(NULL, NULL);
        rill_test_feed_split(e, in, len, at);
        struct rill_msg *m = rill_embedded_read_inbound(e);
        cr_assert_not_null(m, "split at %zu", at);
        struct rill_http_request *req = rill_http_request_from_msg(m);
        size_t vlen;
        cr_assert_not_null(rill_http_headers_get(&req->http.headers, "x-pad", &vlen));
        cr_assert_eq(vlen, big);
        rill_msg_release(m);
        finish(e);
    }
    free(in);
}

/* ---- answering ---- */

Test(http_server, pipelined_answers_leave_in_order_in_one_flush)
{
    struct responder r = { 0 };
    struct rill_embedded *e = server(NULL, &r);
    const char *in = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                     "POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\necho";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(r.answered, 3);
    cr_assert_eq(flushes, 1, "one flush for the whole read");
    cr_assert_eq(rill_embedded_outbound_count(e), 3);
    char *out = out_str(e);
    const char *expect =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nok /1"
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nok /2"
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\necho";
    cr_assert_str_eq(out, expect);
    free(out);
    cr_assert(rill_embedded_is_open(e));
    finish(e);
}

Test(http_server, answers_to_a_streamed_request)
{
    struct responder r = { 0 };
    struct rill_embedded *e = server(NULL, &r);
    const char *in = "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n";
    rill_test_feed_bytes(e, in, strlen(in));
    char *out = out_str(e);
    cr_assert(has(out, "Content-Length: 9\r\n\r\nwikipedia"), "%s", out);
    free(out);
    responder_release(&r);
    finish(e);
}

Test(http_server, head_answers_carry_no_body)
{
    struct responder r = { 0 };
    struct rill_embedded *e = server(NULL, &r);
    const char *in = "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                          "ok /g");
    free(out);
    finish(e);
}

Test(http_server, head_answer_streamed_drops_the_contents)
{
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    const char *in = "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    struct rill_http_response *resp;
    cr_assert_eq(rill_http_response_new_head(200, &resp), 0);
    rill_http_headers_add_u64(&resp->http.headers, "Content-Length", 3);
    rill_embedded_write_outbound(e, &resp->http.msg);
    struct rill_buf *b;
    rill_buf_copy_from("abc", 3, &b);
    struct rill_http_content *c;
    cr_assert_eq(rill_http_content_new(b, true, &c), 0);
    struct rill_promise *p;
    rill_promise_new(NULL, &p);
    rill_embedded_write(e, &c->msg, p);
    rill_embedded_flush(e);
    cr_assert_eq(rill_promise_result(p, NULL), 0, "a dropped content's write succeeds");
    rill_promise_release(p);
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
    free(out);
    responder_release(&r);
    finish(e);
}

Test(http_server, streamed_response_is_chunked_with_trailers)
{
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    feed_str(e, GET_A);
    struct rill_http_response *resp;
    cr_assert_eq(rill_http_response_new_head(200, &resp), 0);
    rill_embedded_write_outbound(e, &resp->http.msg);
    struct rill_buf *b;
    struct rill_http_content *c;
    rill_buf_copy_from("hello ", 6, &b);
    rill_http_content_new(b, false, &c);
    rill_embedded_write_outbound(e, &c->msg);
    /* A large piece goes out without a copy. */
    char *big = malloc(3000);
    memset(big, 'B', 3000);
    rill_buf_copy_from(big, 3000, &b);
    rill_http_content_new(b, false, &c);
    rill_embedded_write_outbound(e, &c->msg);
    struct rill_msg *o;
    int composites = 0;
    while (rill_embedded_outbound_count(e) > 0 && (o = rill_embedded_read_outbound(e))) {
        composites += rill_buf_kind(rill_buf_from_msg(o)) == RILL_BUF_COMPOSITE;
        rill_msg_release(o);
    }
    cr_assert_eq(composites, 1, "the large chunk is carried, not copied");
    rill_buf_copy_from("end", 3, &b);
    rill_http_content_new(b, true, &c);
    rill_http_headers_add(&c->trailers, "X-Checksum", "42");
    rill_embedded_write_outbound(e, &c->msg);
    char *out = out_str(e);
    cr_assert_str_eq(out, "\r\n3\r\nend\r\n0\r\nX-Checksum: 42\r\n\r\n");
    free(out);
    free(big);

    /* The head alone, checked on a second response. */
    feed_str(e, GET_A);
    cr_assert_eq(rill_http_response_new_head(200, &resp), 0);
    rill_embedded_write_outbound(e, &resp->http.msg);
    rill_http_content_new(NULL, true, &c);
    rill_embedded_write_outbound(e, &c->msg);
    out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    free(out);
    responder_release(&r);
    finish(e);
}

Test(http_server, streamed_response_with_length)
{
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    feed_str(e, GET_A);
    struct rill_http_response *resp;
    cr_assert_eq(rill_http_response_new_head(200, &resp), 0);
    rill_http_headers_set_u64(&resp->http.headers, "content-length", 6);
    rill_embedded_write_outbound(e, &resp->http.msg);
    struct rill_buf *b;
    struct rill_http_content *c;
    rill_buf_copy_from("abc", 3, &b);
    rill_http_content_new(b, false, &c);
    rill_embedded_write_outbound(e, &c->msg);
    rill_buf_copy_from("def", 3, &b); /* a plain buffer counts as content too */
    rill_embedded_write_outbound(e, rill_buf_msg(b));
    rill_http_content_new(NULL, true, &c);
    rill_embedded_write_outbound(e, &c->msg);
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabcdef");
    free(out);
    cr_assert(rill_embedded_is_open(e));

    /* More than the length: refused, and the connection ends. */
    feed_str(e, GET_A);
    cr_assert_eq(rill_http_response_new_head(200, &resp), 0);
    rill_http_headers_set_u64(&resp->http.headers, "content-length", 2);
    rill_embedded_write_outbound(e, &resp->http.msg);
    rill_buf_copy_from("abc", 3, &b);
    rill_http_content_new(b, false, &c);
    cr_assert_eq(rill_embedded_write_outbound(e, &c->msg), -EINVAL);
    rill_embedded_advance_clock(e, 3 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    free(out_str(e));
    responder_release(&r);
    finish(e);
}

Test(http_server, full_response_checks)
{
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    feed_str(e, GET_A);
    struct rill_http_response *resp;
    /* A Content-Length that contradicts the body is refused. */
    cr_assert_eq(rill_http_response_new(200, &resp), 0);
    rill_http_headers_add(&resp->http.headers, "Content-Length", "9");
    rill_http_message_set_body_copy(&resp->http, "abc", 3);
    cr_assert_eq(rill_embedded_write_outbound(e, &resp->http.msg), -EINVAL);
    cr_assert_eq(rill_http_response_new(200, &resp), 0);
    rill_http_headers_add(&resp->http.headers, "Content-Length", "x");
    cr_assert_eq(rill_embedded_write_outbound(e, &resp->http.msg), -EINVAL);
    /* Content outside a response is refused. */
    struct rill_http_content *c;
    rill_http_content_new(NULL, true, &c);
    cr_assert_eq(rill_embedded_write_outbound(e, &c->msg), -EINVAL);
    /* 204: no body, no length. */
    cr_assert_eq(rill_http_response_new(204, &resp), 0);
    rill_http_message_set_body_copy(&resp->http, "abc", 3);
    rill_embedded_write_outbound(e, &resp->http.msg);
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 204 No Content\r\n\r\n");
    free(out);
    /* A full response with the user's chunked encoding. */
    feed_str(e, GET_A);
    cr_assert_eq(rill_http_response_new(299, &resp), 0);
    rill_http_headers_add(&resp->http.headers, "Transfer-Encoding", "chunked");
    rill_http_message_set_body_copy(&resp->http, "abc", 3);
    rill_embedded_write_outbound(e, &resp->http.msg);
    out = out_str(e);
    cr_assert_str_eq(out,
                     "HTTP/1.1 299 \r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    free(out);
    /* Raw bytes outside responses pass as they are. */
    struct rill_buf *b;
    rill_buf_copy_from("raw", 3, &b);
    rill_embedded_write_outbound(e, rill_buf_msg(b));
    out = out_str(e);
    cr_assert_str_eq(out, "raw");
    free(out);
    responder_release(&r);
    finish(e);
}

/* ---- keep-alive and closing ---- */

Test(http_server, connection_close_answers_then_closes)
{
    struct responder r = { 0 };
    struct rill_embedded *e = server(NULL, &r);
    const char *in = "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                     "GET /ignored HTTP/1.1\r\nHost: a\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(r.answered, 1, "requests after close are not decoded");
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                          "Connection: close\r\n\r\nok /a");
    free(out);
    /* Lingering: open until the peer closes or the time is up. */
    cr_assert(rill_embedded_is_open(e));
    rill_embedded_advance_clock(e, 1 * RILL_NS_PER_S);
    cr_assert(rill_embedded_is_open(e));
    rill_embedded_advance_clock(e, 1 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    finish(e);
}

Test(http_server, linger_zero_closes_when_written)
{
    struct rill_http_server_config cfg;
    rill_http_server_config_init(&cfg);
    cfg.linger_ms = 0;
    struct responder r = { 0 };
    struct rill_embedded *e = server(&cfg, &r);
    const char *in = "GET /a HTTP/1.0\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    char *out = out_str(e);
    cr_assert(has(out, "Connection: close\r\n"), "%s", out);
    free(out);
    rill_embedded_run_pending(e);
    cr_assert_not(rill_embedded_is_open(e));
    finish(e);
}

Test(http_server, keep_alive_by_version_and_field)
{
    struct {
        const char *req;
        const char *conn; /* expected Connection line in the answer, or NULL */
        bool open;
    } cases[] = {
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, true },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", NULL, true },
        { "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n", "close", false },
        { "GET / HTTP/1.0\r\n\r\n", "close", false },
        { "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive", true },
        { "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "close", false },
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        struct responder r = { 0 };
        struct rill_embedded *e = server(NULL, &r);
        rill_test_feed(e, cases[i].req, strlen(cases[i].req));
        char *out = out_str(e);
        if (cases[i].conn) {
            char line[64];
            snprintf(line, sizeof(line), "\r\nConnection: %s\r\n", cases[i].conn);
            cr_assert(has(out, line), "case %zu: %s", i, out);
        } else {
            cr_assert_not(has(out, "Connection"), "case %zu: %s", i, out);
        }
        rill_embedded_advance_clock(e, 5 * RILL_NS_PER_S);
        cr_assert_eq(rill_embedded_is_open(e), cases[i].open, "case %zu", i);
        free(out);
        finish(e);
    }
}

Test(http_server, user_close_and_http10_streaming)
{
    /* The user's Connection: close ends the connection. */
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    feed_str(e, GET_A "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    struct rill_http_response *resp;
    rill_http_response_new(200, &resp);
    rill_http_headers_add(&resp->http.headers, "Connection", "close");
    rill_embedded_write_outbound(e, &resp->http.msg);
    rill_http_response_new(200, &resp);
    cr_assert_eq(rill_embedded_write_outbound(e, &resp->http.msg), RILL_ECLOSED,
                 "nothing after the last response");
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    free(out);
    rill_embedded_advance_clock(e, 3 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    responder_release(&r);
    finish(e);

    /* HTTP/1.0 keep-alive with a streamed body of unknown length: the body
     * ends with the connection. */
    r = (struct responder){ .hold = true };
    e = server(NULL, &r);
    const char *in = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    rill_http_response_new_head(200, &resp);
    rill_embedded_write_outbound(e, &resp->http.msg);
    struct rill_buf *b;
    struct rill_http_content *c;
    rill_buf_copy_from("data", 4, &b);
    rill_http_content_new(b, true, &c);
    rill_embedded_write_outbound(e, &c->msg);
    out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata");
    free(out);
    rill_embedded_advance_clock(e, 3 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    responder_release(&r);
    finish(e);
}

/* ---- 100-continue ---- */

Test(http_server, expect_continue_is_surfaced_and_answered)
{
    struct responder r = { .interim_100 = true };
    struct rill_embedded *e = server(NULL, &r);
    const char *head = "PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
                       "Content-Length: 3\r\n\r\n";
    rill_test_feed(e, head, strlen(head));
    char *out = out_str(e);
    cr_assert_str_eq(out, "HTTP/1.1 100 Continue\r\n\r\n");
    free(out);
    rill_test_feed(e, "abc", 3);
    out = out_str(e);
    cr_assert_str_eq(out,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc");
    free(out);
    cr_assert(rill_embedded_is_open(e));
    finish(e);

    /* The flags, and an HTTP/1.0 client never sees an interim answer. */
    r = (struct responder){ .hold = true };
    e = server(NULL, &r);
    rill_test_feed(e, head, strlen(head));
    cr_assert_eq(r.nheld, 1);
    struct rill_http_request *req = rill_http_request_from_msg(r.held[0]);
    cr_assert(req->http.flags & RILL_HTTP_F_EXPECT_CONTINUE);
    responder_release(&r);
    finish(e);

    r = (struct responder){ .interim_100 = true };
    e = server(NULL, &r);
    const char *h10 = "PUT /up HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    rill_test_feed(e, h10, strlen(h10));
    out = out_str(e);
    cr_assert_str_eq(out, "");
    free(out);
    finish(e);
}

Test(http_server, final_answer_without_continue_closes)
{
    /* The client waits for 100 Continue; the server answers at once
     * instead: the body may or may not follow, so the connection ends. */
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    const char *head = "PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                       "Content-Length: 100\r\n\r\n";
    rill_test_feed(e, head, strlen(head));
    struct rill_http_response *resp;
    rill_http_response_new(401, &resp);
    rill_embedded_write_outbound(e, &resp->http.msg);
    char *out = out_str(e);
    cr_assert_str_eq(out,
                     "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    free(out);
    responder_release(&r);
    finish(e);
}

/* ---- errors ---- */

struct bad {
    const char *in;
    unsigned status;
    int err;
    const char *why; /* part of the text */
};

static void check_bad(const struct bad *b, size_t len, bool bytewise)
{
    struct responder r = { 0 };
    struct rill_embedded *e = server(NULL, &r);
    if (bytewise)
        rill_test_feed_bytes(e, b->in, len);
    else
        rill_test_feed(e, b->in, len);
    const char *why = NULL;
    int err = rill_embedded_take_exception(e, &why);
    cr_assert_eq(err, b->err, "%.60s: error %s, expected %s", b->in, rill_errname(err),
                 rill_errname(b->err));
    cr_assert_not_null(why);
    cr_assert(has(why, b->why), "%.60s: text '%s' should say '%s'", b->in, why, b->why);
    char *out = out_str(e);
    char status[32];
    snprintf(status, sizeof(status), "HTTP/1.1 %u ", b->status);
    cr_assert_eq(strncmp(out, status, strlen(status)), 0, "%.60s: answered %.40s", b->in, out);
    cr_assert(has(out, "\r\nConnection: close\r\n"));
    cr_assert(has(out, why), "the answer names the problem");
    cr_assert_eq(count_of(out, "Content-Length: "), 1, "%s", out);
    free(out);
    cr_assert_eq(r.answered, 0, "the handler never answers the bad request");
    cr_assert(rill_embedded_is_open(e), "open while the answer lingers");
    rill_embedded_advance_clock(e, 3 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    responder_release(&r);
    finish(e);
}

static char *repeat(const char *prefix, char c, size_t n, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + n + sl + 1);
    memcpy(s, prefix, pl);
    memset(s + pl, c, n);
    memcpy(s + pl + n, suffix, sl + 1);
    return s;
}

Test(http_server, bad_requests_get_their_status)
{
    static const char nul_in_value[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    const struct bad cases[] = {
        { "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "bad method" },
        { " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "bad method" },
        { "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "request target" },
        { "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "request target" },
        { "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "HTTP version" },
        { "GET / http/1.1\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "HTTP version" },
        { "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "HTTP version" },
        { "GET /\r\n\r\n", 400, RILL_EPROTO, "request target" },
        { "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, RILL_EBADVERSION, "HTTP/2.0" },
        { "GET / HTTP/0.9\r\n\r\n", 505, RILL_EBADVERSION, "not supported" },
        { "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, RILL_EPROTO,
          "bad byte 0x20 in a field name" },
        { "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, RILL_EPROTO, "whitespace before the colon" },
        { "GET / HTTP/1.1\r\nHo\"st: a\r\n\r\n", 400, RILL_EPROTO, "field name" },
        { "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "empty field name" },
        { "GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, RILL_EPROTO, "without a colon" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, RILL_EPROTO, "folding" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, RILL_EPROTO, "bare CR" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", 400, RILL_EPROTO, "bare CR" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", 400, RILL_EPROTO, "bad byte 0x01" },
        { "GET /\rx HTTP/1.1\r\nHost: a\r\n\r\n", 400, RILL_EPROTO, "request target" },
        { "GET / HTTP/1.1\r\n\r\n", 400, RILL_EPROTO, "without a Host" },
        { "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, RILL_EPROTO, "more than one Host" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
          400, RILL_EPROTO, "Content-Length together with Transfer-Encoding" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
          400, RILL_EPROTO, "Content-Length together with Transfer-Encoding" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
          RILL_EPROTO, "differing Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400, RILL_EPROTO,
          "differing Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400, RILL_EPROTO,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, RILL_EPROTO,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400, RILL_EPROTO,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, RILL_EPROTO,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400, RILL_EPROTO,
          "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
          RILL_EPROTO, "invalid Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, RILL_EPROTO,
          "does not end with one chunked" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
          RILL_EPROTO, "does not end with one chunked" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
          "Transfer-Encoding: chunked\r\n\r\n",
          400, RILL_EPROTO, "does not end with one chunked" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400, RILL_EPROTO,
          "does not end with one chunked" },
        { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, RILL_EPROTO,
          "HTTP/1.0 request" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
          RILL_EPROTO, "malformed chunk size" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400, RILL_EPROTO,
          "malformed chunk size" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\n", 400,
          RILL_EPROTO, "malformed chunk size" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\n", 400,
          RILL_EPROTO, "bare CR in a chunk extension" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
          "11111111111111111\r\n",
          400, RILL_EPROTO, "chunk size too large" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400,
          RILL_EPROTO, "longer than its size" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rx", 400,
          RILL_EPROTO, "bare CR after chunk data" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX : y\r\n\r\n", 400,
          RILL_EPROTO, "whitespace before the colon" },
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        check_bad(&cases[i], strlen(cases[i].in), false);
        check_bad(&cases[i], strlen(cases[i].in), true);
    }
    struct bad nul = { nul_in_value, 400, RILL_EPROTO, "bad byte 0x00" };
    check_bad(&nul, sizeof(nul_in_value) - 1, false);
}

Test(http_server, limits_get_414_and_431)
{
    /* A request line of 8192 bytes passes, one more fails, and an endless
     * one fails as soon as it passes the limit, without its end. */
    char *ok = repeat("GET /", 'a', 8192 - 14, " HTTP/1.1\r\nHost: a\r\n\r\n");
    struct rill_embedded *e = server(NULL, NULL);
    rill_test_feed(e, ok, strlen(ok));
    cr_assert_eq(rill_embedded_inbound_count(e), 1, "8192 bytes are allowed");
    finish(e);
    free(ok);

    char *line = repeat("GET /", 'a', 8192 - 13, " HTTP/1.1\r\nHost: a\r\n\r\n");
    struct bad b = { line, 414, RILL_ETOOLARGE, "request line longer than 8192 bytes" };
    check_bad(&b, strlen(line), false);
    free(line);
    char *endless = repeat("GET /", 'a', 9000, "");
    b = (struct bad){ endless, 414, RILL_ETOOLARGE, "request line longer" };
    check_bad(&b, strlen(endless), false);
    free(endless);

    char *big = repeat("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 'b', 16384, "\r\n\r\n");
    b = (struct bad){ big, 431, RILL_ETOOLARGE, "header section larger than 16384 bytes" };
    check_bad(&b, strlen(big), false);
    free(big);
    char *endless_field = repeat("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 'b', 20000, "");
    b = (struct bad){ endless_field, 431, RILL_ETOOLARGE, "header section larger" };
    check_bad(&b, strlen(endless_field), false);
    free(endless_field);

    struct hstr many = { 0 };
    hs_add(&many, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 99; i++)
        hs_addf(&many, "X-%d: %d\r\n", i, i);
    hs_add(&many, "\r\n");
    e = server(NULL, NULL);
    rill_test_feed(e, many.s, many.len);
    cr_assert_eq(rill_embedded_inbound_count(e), 1, "100 fields are allowed");
    finish(e);
    many.len -= 2;
    hs_add(&many, "X-Last: 1\r\n\r\n");
    b = (struct bad){ many.s, 431, RILL_ETOOLARGE, "more than 100 header fields" };
    check_bad(&b, many.len, false);
    free(many.s);

    char *chunk_line = repeat("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;",
                              'e', 9000, "\r\n");
    b = (struct bad){ chunk_line, 400, RILL_EPROTO, "chunk-size line longer than 8192" };
    check_bad(&b, strlen(chunk_line), false);
    free(chunk_line);

    struct hstr trailers = { 0 };
    hs_add(&trailers, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i < 101; i++)
        hs_addf(&trailers, "T-%d: %d\r\n", i, i);
    hs_add(&trailers, "\r\n");
    b = (struct bad){ trailers.s, 431, RILL_ETOOLARGE, "more than 100 trailer fields" };
    check_bad(&b, trailers.len, false);
    free(trailers.s);
}

Test(http_server, configured_limits)
{
    struct rill_http_server_config cfg;
    rill_http_server_config_init(&cfg);
    cfg.max_line = 20;
    cfg.max_header_size = 30;
    cfg.max_headers = 2;
    struct rill_embedded *e = server(&cfg, NULL);
    const char *ok = "GET /123456 HTTP/1.1\r\nHost: a\r\nX: 12345678901234\r\n\r\n";
    rill_test_feed(e, ok, strlen(ok));
    cr_assert_eq(rill_embedded_inbound_count(e), 1);
    finish(e);
    e = server(&cfg, NULL);
    const char *three = "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n";
    rill_test_feed(e, three, strlen(three));
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_ETOOLARGE);
    char *out = out_str(e);
    cr_assert(has(out, "HTTP/1.1 431 "));
    free(out);
    finish(e);
}

Test(http_server, error_after_pipelined_requests_waits_its_turn)
{
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    const char *in = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /3 HTTP/1.1\r\nHost: a\r\nBad Field: x\r\n\r\n"
                     "GET /4 HTTP/1.1\r\nHost: a\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(r.nheld, 2, "the good requests before the bad one are decoded");
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_EPROTO);
    char *out = out_str(e);
    cr_assert_str_eq(out, "", "the error waits for the answers before it");
    free(out);
    for (int i = 0; i < 2; i++) {
        struct rill_http_response *resp;
        rill_http_response_new(200, &resp);
        rill_http_message_set_body_copy(&resp->http, i ? "2" : "1", 1);
        rill_embedded_write_outbound(e, &resp->http.msg);
    }
    out = out_str(e);
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n";
    cr_assert_eq(strncmp(out, ok, strlen(ok)), 0);
    char *second = strstr(out + 1, "HTTP/1.1 ");
    cr_assert_not_null(second);
    cr_assert_eq(strncmp(second, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", strlen(ok) + 1),
                 0);
    char *third = strstr(second + 1, "HTTP/1.1 ");
    cr_assert_not_null(third);
    cr_assert_eq(strncmp(third, "HTTP/1.1 400 Bad Request\r\n", 26), 0, "%s", out);
    cr_assert_null(strstr(third + 1, "HTTP/1.1 "), "the request after the bad one is dropped");
    free(out);
    rill_embedded_advance_clock(e, 3 * RILL_NS_PER_S);
    cr_assert_not(rill_embedded_is_open(e));
    responder_release(&r);
    finish(e);
}

Test(http_server, error_in_a_body_answers_that_request)
{
    /* The head reached the handler, the body breaks before its answer:
     * the 400 is the answer to that request. */
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    const char *in =
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nq\r\n";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_EPROTO);
    char *out = out_str(e);
    cr_assert(has(out, "HTTP/1.1 400 Bad Request\r\n"), "%s", out);
    cr_assert_eq(count_of(out, "HTTP/1.1"), 1);
    free(out);
    /* The handler's late answer is refused: the connection is over. */
    struct rill_http_response *resp;
    rill_http_response_new(200, &resp);
    cr_assert_eq(rill_embedded_write_outbound(e, &resp->http.msg), RILL_ECLOSED);
    responder_release(&r);
    finish(e);
}

Test(http_server, too_many_pipelined_requests_end_the_connection)
{
    struct rill_http_server_config cfg;
    rill_http_server_config_init(&cfg);
    cfg.max_pipelined = 2;
    cfg.linger_ms = 0;
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(&cfg, &r);
    const char *in = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                     "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(r.nheld, 2);
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert(has(why, "more than 2 requests"), "%s", why);
    rill_embedded_run_pending(e);
    cr_assert_not(rill_embedded_is_open(e));
    free(out_str(e));
    responder_release(&r);
    finish(e);
}

Test(http_server, end_of_input_inside_a_body)
{
    struct rill_embedded *e = server(NULL, NULL);
    const char *in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc";
    rill_test_feed(e, in, strlen(in));
    struct hdesc d = { 0 };
    hdesc_drain(&d, e);
    free(hdesc_take(&d));
    rill_embedded_close(e);
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EPROTO);
    cr_assert(has(why, "inside a request body"), "%s", why);
    finish(e);

    /* A partial head at the end: nothing to say. */
    e = server(NULL, NULL);
    rill_test_feed(e, "GET / HT", 8);
    rill_embedded_close(e);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    finish(e);
}

Test(http_server, removal_hands_over_undecoded_bytes)
{
    struct rill_embedded *e = server(NULL, NULL);
    rill_test_feed(e, "GET / HTTP/1.1\r\nHo", 18);
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "http"), 0);
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_not_null(m);
    char *s = rill_test_buf_str(rill_buf_from_msg(m));
    cr_assert_str_eq(s, "GET / HTTP/1.1\r\nHo");
    free(s);
    rill_msg_release(m);
    finish(e);
}

Test(http_server, writing_leaves_the_message_as_it_was)
{
    /* Encoding does not consume the body: a response kept (retained) and
     * written again sends the same bytes. */
    struct responder r = { .hold = true };
    struct rill_embedded *e = server(NULL, &r);
    feed_str(e, GET_A GET_A);
    struct rill_http_response *resp;
    rill_http_response_new(200, &resp);
    rill_http_message_set_body_copy(&resp->http, "same", 4);
    rill_msg_retain(&resp->http.msg);
    rill_embedded_write_outbound(e, &resp->http.msg);
    char *first = out_str(e);
    cr_assert_eq(rill_http_message_body_len(&resp->http), 4);
    rill_embedded_write_outbound(e, &resp->http.msg);
    char *second = out_str(e);
    cr_assert_str_eq(first, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsame");
    cr_assert_str_eq(second, first);
    free(first);
    free(second);
    responder_release(&r);
    finish(e);
}
