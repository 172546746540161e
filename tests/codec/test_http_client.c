/* The HTTP client codec through the embedded channel: request encoding
 * (full, streamed with a length or chunked), response decoding at every
 * byte boundary (lengths, chunked with trailers, until close, HEAD, 1xx,
 * 204/304, upgrades), and its errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/http.h"
#include "tests/codec/test_http_util.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(http_client, .timeout = 60, .fini = rill_test_no_leaks);

static struct rill_embedded *client(const struct rill_http_client_config *cfg)
{
    struct rill_embedded_handler hs[1] = { { "http", &rill_http_client_codec, (void *)cfg } };
    return hemb(hs, 1);
}

static void finish(struct rill_embedded *e)
{
    rill_embedded_take_exception(e, NULL);
    rill_embedded_finish(e, NULL);
    rill_embedded_free(e);
}

/* Write a request of @method to @target (full, no body) and drop its bytes. */
static void send_req(struct rill_embedded *e, const char *method, const char *target)
{
    struct rill_http_request *r;
    cr_assert_eq(rill_http_request_new(method, target, &r), 0);
    cr_assert_eq(rill_http_headers_add(&r->http.headers, "Host", "h"), 0);
    cr_assert_gt(rill_embedded_write_outbound(e, &r->http.msg), 0);
    free(out_str(e));
}

/* ---- encoding ---- */

Test(http_client, full_requests)
{
    struct rill_embedded *e = client(NULL);
    struct rill_http_request *r;
    cr_assert_eq(rill_http_request_new("GET", "/x?y=1", &r), 0);
    cr_assert_eq(r->method_id, RILL_HTTP_GET);
    rill_http_headers_add(&r->http.headers, "Host", "example.com");
    rill_embedded_write_outbound(e, &r->http.msg);
    char *out = out_str(e);
    cr_assert_str_eq(out, "GET /x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    free(out);

    cr_assert_eq(rill_http_request_new("POST", "/p", &r), 0);
    rill_http_message_set_body_copy(&r->http, "data", 4);
    rill_embedded_write_outbound(e, &r->http.msg);
    out = out_str(e);
    cr_assert_str_eq(out, "POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\ndata");
    free(out);

    cr_assert_eq(rill_http_request_new("PUT", "/empty", &r), 0);
    r->http.version = RILL_HTTP_10;
    rill_embedded_write_outbound(e, &r->http.msg);
    out = out_str(e);
    cr_assert_str_eq(out, "PUT /empty HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    free(out);

    /* A large body goes out without a copy. */
    cr_assert_eq(rill_http_request_new("POST", "/big", &r), 0);
    char big[2000];
    memset(big, 'q', sizeof(big));
    rill_http_message_set_body_copy(&r->http, big, sizeof(big));
    rill_embedded_write_outbound(e, &r->http.msg);
    struct rill_msg *m = rill_embedded_read_outbound(e);
    cr_assert_eq(rill_buf_kind(rill_buf_from_msg(m)), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_readable(rill_buf_from_msg(m)),
                 strlen("POST /big HTTP/1.1\r\nContent-Length: 2000\r\n\r\n") + 2000);
    rill_msg_release(m);

    /* Bad constructor arguments. */
    cr_assert_eq(rill_http_request_new("G T", "/", &r), -EINVAL);
    cr_assert_eq(rill_http_request_new("GET", "/a b", &r), -EINVAL);
    cr_assert_eq(rill_http_request_new("GET", "", &r), -EINVAL);
    cr_assert_eq(rill_http_request_new("", "/", &r), -EINVAL);
    finish(e);
}

Test(http_client, streamed_requests)
{
    struct rill_embedded *e = client(NULL);
    struct rill_http_request *r;
    cr_assert_eq(rill_http_request_new_head("POST", "/up", &r), 0);
    rill_embedded_write_outbound(e, &r->http.msg);
    struct rill_buf *b;
    struct rill_http_content *c;
    rill_buf_copy_from("abc", 3, &b);
    rill_http_content_new(b, false, &c);
    rill_embedded_write_outbound(e, &c->msg);
    rill_buf_copy_from("defgh", 5, &b);
    rill_http_content_new(b, true, &c);
    rill_embedded_write_outbound(e, &c->msg);
    char *out = out_str(e);
    cr_assert_str_eq(out, "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n");
    free(out);

    cr_assert_eq(rill_http_request_new_head("PUT", "/len", &r), 0);
    rill_http_headers_add(&r->http.headers, "Content-Length", "4");
    rill_embedded_write_outbound(e, &r->http.msg);
    rill_buf_copy_from("wxyz", 4, &b);
    rill_http_content_new(b, true, &c);
    rill_embedded_write_outbound(e, &c->msg);
    out = out_str(e);
    cr_assert_str_eq(out, "PUT /len HTTP/1.1\r\nContent-Length: 4\r\n\r\nwxyz");
    free(out);

    /* Too long, a head inside a body, a 1.0 head of unknown length. */
    cr_assert_eq(rill_http_request_new_head("PUT", "/len", &r), 0);
    rill_http_headers_add(&r->http.headers, "Content-Length", "1");
    rill_embedded_write_outbound(e, &r->http.msg);
    rill_buf_copy_from("wxyz", 4, &b);
    rill_http_content_new(b, false, &c);
    cr_assert_eq(rill_embedded_write_outbound(e, &c->msg), -EINVAL);
    cr_assert_eq(rill_http_request_new("GET", "/", &r), 0);
    cr_assert_eq(rill_embedded_write_outbound(e, &r->http.msg), -EINVAL);
    rill_http_content_new(NULL, true, &c);
    rill_embedded_write_outbound(e, &c->msg);
    cr_assert_eq(rill_http_request_new_head("POST", "/", &r), 0);
    r->http.version = RILL_HTTP_10;
    cr_assert_eq(rill_embedded_write_outbound(e, &r->http.msg), -EINVAL);
    free(out_str(e));
    finish(e);
}

/* ---- decoding ---- */

static const char responses[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello"   /* GET */
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"                   /* HEAD: no body */
    "HTTP/1.1 100 Continue\r\n\r\n"                                    /* interim */
    "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"               /* interim */
    "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"       /* POST */
    "3;x=y\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"                        /* */
    "HTTP/1.1 204 No Content\r\n\r\n"                                  /* GET */
    "HTTP/1.0 304 Not Modified\r\nContent-Length: 7\r\n\r\n"           /* GET */
    "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"                        /* GET */
    "HTTP/1.1 500 Internal Error\nConnection: close\n\nuntil the end"; /* GET */

static char *decode_desc(const size_t *cuts, size_t ncuts)
{
    struct rill_embedded *e = client(NULL);
    send_req(e, "GET", "/1");
    send_req(e, "HEAD", "/2");
    send_req(e, "POST", "/3");
    send_req(e, "GET", "/4");
    send_req(e, "GET", "/5");
    send_req(e, "GET", "/6");
    send_req(e, "GET", "/7");
    size_t len = sizeof(responses) - 1;
    if (ncuts == (size_t)-1)
        rill_test_feed_bytes(e, responses, len);
    else
        rill_test_feed_cuts(e, responses, len, cuts, ncuts);
    struct hdesc d = { 0 };
    hdesc_drain(&d, e);
    rill_embedded_close(e); /* ends the last body */
    hdesc_drain(&d, e);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    finish(e);
    return hdesc_take(&d);
}

Test(http_client, responses_of_every_kind)
{
    char *d = decode_desc(NULL, 0);
    const char *expect =
        "RESP 200 OK 11 f=3 cl=5 Content-Length=5 Server=t; body[hello] trailers[]\n"
        "RESP 200 OK 11 f=43 cl=100 Content-Length=100; body[] trailers[]\n"
        "RESP 100 Continue 11 f=40; body[] trailers[]\n"
        "RESP 103 Early Hints 11 f=40 Link=</s.css>; body[] trailers[]\n"
        "RESP 201 Created 11 f=5 Transfer-Encoding=chunked; body[abc] trailers[ X-Trailer=t]\n"
        "RESP 204 No Content 11 f=41; body[] trailers[]\n"
        "RESP 304 Not Modified 10 f=42 cl=7 Content-Length=7; body[] trailers[]\n"
        "RESP 200  11 f=3 cl=0 Content-Length=0; body[] trailers[]\n"
        "RESP 500 Internal Error 11 f=20 Connection=close; body[until the end] trailers[]\n";
    cr_assert_str_eq(d, expect);
    free(d);
}

Test(http_client, every_split_decodes_the_same)
{
    size_t len = sizeof(responses) - 1;
    char *whole = decode_desc(NULL, 0);
    for (size_t at = 1; at < len; at++) {
        char *d = decode_desc(&at, 1);
        cr_assert_str_eq(d, whole, "split at %zu", at);
        free(d);
    }
    char *bytes = decode_desc(NULL, (size_t)-1);
    cr_assert_str_eq(bytes, whole, "byte by byte");
    free(bytes);
    free(whole);
}

Test(http_client, upgrade_passes_bytes_raw)
{
    struct rill_embedded *e = client(NULL);
    send_req(e, "GET", "/ws");
    const char *in = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
                     "\x81\x02hi";
    rill_test_feed(e, in, strlen(in));
    struct hdesc d = { 0 };
    hdesc_drain(&d, e);
    rill_test_feed(e, "more", 4);
    hdesc_drain(&d, e);
    char *s = hdesc_take(&d);
    cr_assert(has(s, "RESP 101 Switching Protocols 11 f=41"), "%s", s);
    cr_assert(has(s, "RAW[\x81\x02hi]\nRAW[more]\n"), "%s", s);
    free(s);
    finish(e);
}

Test(http_client, unsolicited_response_is_decoded)
{
    struct rill_embedded *e = client(NULL);
    const char *in = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 2\r\n\r\nto";
    rill_test_feed(e, in, strlen(in));
    struct rill_msg *m = rill_embedded_read_inbound(e);
    struct rill_http_response *r = rill_http_response_from_msg(m);
    cr_assert_not_null(r);
    cr_assert_eq(r->status, 408);
    cr_assert_eq(rill_http_message_body_len(&r->http), 2);
    rill_msg_release(m);
    finish(e);
}

struct bad {
    const char *in;
    int err;
    const char *why;
};

Test(http_client, bad_responses_fail_the_channel)
{
    const struct bad cases[] = {
        { "HTTP/1.1 20 OK\r\n\r\n", RILL_EPROTO, "malformed status" },
        { "HTTP/1.1 2x0 OK\r\n\r\n", RILL_EPROTO, "malformed status code" },
        { "HTTP/1.1 099 Low\r\n\r\n", RILL_EPROTO, "out of range" },
        { "HTTP/1.1 200OK\r\n\r\n", RILL_EPROTO, "malformed status line" },
        { "HTTX/1.1 200 OK\r\n\r\n", RILL_EPROTO, "HTTP version" },
        { "HTTP/2.0 200 OK\r\n\r\n", RILL_EBADVERSION, "not supported" },
        { "HTTP/1.1 200 O\x01K\r\n\r\n", RILL_EPROTO, "reason phrase" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", RILL_EPROTO,
          "together with" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", RILL_EPROTO,
          "invalid Content-Length" },
        { "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", RILL_EPROTO, "invalid Content-Length" },
        { "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", RILL_EPROTO, "folding" },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n", RILL_EPROTO,
          "malformed chunk size" },
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        struct rill_embedded *e = client(NULL);
        send_req(e, "GET", "/");
        rill_test_feed(e, cases[i].in, strlen(cases[i].in));
        const char *why;
        int err = rill_embedded_take_exception(e, &why);
        cr_assert_eq(err, cases[i].err, "%s: %s", cases[i].in, rill_errname(err));
        cr_assert(has(why, cases[i].why), "%s: '%s'", cases[i].in, why);
        rill_embedded_run_pending(e);
        cr_assert_not(rill_embedded_is_open(e), "%s", cases[i].in);
        struct hdesc d = { 0 };
        hdesc_drain(&d, e);
        free(hdesc_take(&d));
        finish(e);
    }
}

Test(http_client, limits)
{
    struct rill_http_client_config cfg;
    rill_http_client_config_init(&cfg);
    cfg.max_line = 32;
    cfg.max_headers = 1;
    struct rill_embedded *e = client(&cfg);
    const char *in = "HTTP/1.1 200 A reason phrase that is too long\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert(has(why, "status line longer than 32 bytes"), "%s", why);
    finish(e);
    e = client(&cfg);
    in = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert(has(why, "more than 1 header fields"), "%s", why);
    finish(e);
}

Test(http_client, cut_off_responses)
{
    const char *cases[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Le",
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        struct rill_embedded *e = client(NULL);
        send_req(e, "GET", "/");
        rill_test_feed(e, cases[i], strlen(cases[i]));
        struct hdesc d = { 0 };
        hdesc_drain(&d, e);
        rill_embedded_close(e);
        hdesc_drain(&d, e);
        free(hdesc_take(&d));
        const char *why;
        cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EPROTO, "%s", cases[i]);
        cr_assert(has(why, "the connection ended inside a response"), "%s", why);
        finish(e);
    }
}

Test(http_client, keep_alive_flag)
{
    struct {
        const char *in;
        bool keep_alive;
    } cases[] = {
        { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true },
        { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false },
        { "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false },
        { "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", true },
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        struct rill_embedded *e = client(NULL);
        send_req(e, "GET", "/");
        rill_test_feed(e, cases[i].in, strlen(cases[i].in));
        struct rill_msg *m = rill_embedded_read_inbound(e);
        struct rill_http_message *hm = rill_http_message_from_msg(m);
        cr_assert_not_null(hm);
        cr_assert_eq(!!(hm->flags & RILL_HTTP_F_KEEP_ALIVE), cases[i].keep_alive, "%s",
                     cases[i].in);
        rill_msg_release(m);
        finish(e);
    }
}

/* ---- the two codecs against each other ---- */

static void add_content(struct rill_embedded *e, const char *data, size_t n, bool last)
{
    struct rill_buf *b = NULL;
    if (n)
        cr_assert_eq(rill_buf_copy_from(data, n, &b), 0);
    struct rill_http_content *c;
    cr_assert_eq(rill_http_content_new(b, last, &c), 0);
    if (last)
        rill_http_headers_add(&c->trailers, "X-Sum", "ok");
    rill_embedded_write_outbound(e, &c->msg);
}

Test(http_client, streamed_bodies_round_trip)
{
    static const size_t sizes[] = { 1, 600, 5, 3000, 512, 513, 0 };
    char *data = malloc(8192);
    for (size_t i = 0; i < 8192; i++)
        data[i] = (char)('a' + i % 26);
    struct hstr want = { 0 };

    /* A client streams a chunked request: the server decodes it. */
    struct rill_embedded *c = client(NULL);
    struct rill_http_request *req;
    rill_http_request_new_head("POST", "/up", &req);
    rill_http_headers_add(&req->http.headers, "Host", "h");
    rill_embedded_write_outbound(c, &req->http.msg);
    size_t off = 0;
    for (size_t i = 0; i < RILL_ARRAY_SIZE(sizes); i++) {
        add_content(c, data + off, sizes[i], i + 1 == RILL_ARRAY_SIZE(sizes));
        hs_addn(&want, data + off, sizes[i]);
        off += sizes[i];
    }
    char *wire = out_str(c);
    struct rill_embedded_handler sh[1] = { { "http", &rill_http_server_codec, NULL } };
    struct rill_embedded *s = hemb(sh, 1);
    rill_test_feed_bytes(s, wire, strlen(wire));
    struct hdesc d = { 0 };
    hdesc_drain(&d, s);
    char *got = hdesc_take(&d);
    struct hstr expect = { 0 };
    hs_add(&expect, "REQ POST /up 11 f=5 Host=h Transfer-Encoding=chunked; body[");
    hs_add(&expect, want.s);
    hs_add(&expect, "] trailers[ X-Sum=ok]\n");
    cr_assert_str_eq(got, expect.s);
    free(got);
    free(wire);

    /* The server streams a chunked response: the client decodes it. */
    struct rill_http_response *resp;
    rill_http_response_new_head(200, &resp);
    rill_embedded_write_outbound(s, &resp->http.msg);
    off = 0;
    for (size_t i = 0; i < RILL_ARRAY_SIZE(sizes); i++) {
        add_content(s, data + off, sizes[i], i + 1 == RILL_ARRAY_SIZE(sizes));
        off += sizes[i];
    }
    wire = out_str(s);
    for (size_t at = 1; at < strlen(wire); at += 97) {
        struct rill_embedded *c2 = client(NULL);
        send_req(c2, "POST", "/up");
        rill_test_feed_split(c2, wire, strlen(wire), at);
        d = (struct hdesc){ 0 };
        hdesc_drain(&d, c2);
        got = hdesc_take(&d);
        cr_assert(has(got, "RESP 200 OK 11 f=5 Transfer-Encoding=chunked; body["), "%s", got);
        cr_assert(has(got, want.s), "split at %zu", at);
        cr_assert(has(got, "] trailers[ X-Sum=ok]\n"), "%s", got);
        free(got);
        finish(c2);
    }
    free(wire);
    free(want.s);
    free(expect.s);
    free(data);
    finish(s);
    finish(c);
}
