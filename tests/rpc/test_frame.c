/* The RPC frame codec (rpc/codec.c, rpc/frame.c): round trips of every
 * frame type, interning, splits at every byte boundary, guard pages,
 * zero-copy payloads, malformed preambles and frames with their errors,
 * oversize frames on both sides, and no leaks. */
#include <criterion/criterion.h>
#include <errno.h>

#include "rill/composite.h"
#include "rill/rpc_frame.h"
#include "tests/rpc/rpc_test.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(rpc_frame, .timeout = 30, .fini = rill_test_no_leaks);

/* A frame of each type, with names, deadline, status, metadata and payloads. */
static size_t make_frames(struct rill_rpc_frame **v)
{
    size_t n = 0;
    struct rill_rpc_frame *f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_REQUEST, 1, &f), 0);
    cr_assert_eq(rill_rpc_frame_set_names(f, "calc", "add"), 0);
    f->deadline_ns = 1500000000ull;
    cr_assert_eq(rill_rpc_frame_add_md(f, "trace-id", "abc123", 6), 0);
    cr_assert_eq(rill_rpc_frame_add_md(f, "empty", NULL, 0), 0);
    rill_rpc_frame_set_payload(f, rt_buf("1 2"));
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_REQUEST, 2, &f), 0); /* same names: interned */
    cr_assert_eq(rill_rpc_frame_set_names(f, "calc", "add"), 0);
    rill_rpc_frame_set_payload(f, rt_pattern_buf(3000, 7)); /* appended, not copied */
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_REQUEST, UINT64_MAX, &f), 0);
    cr_assert_eq(rill_rpc_frame_set_names(f, "echo.Echo", "say"), 0);
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_RESPONSE, 1, &f), 0);
    rill_rpc_frame_set_payload(f, rt_buf("3"));
    cr_assert_eq(rill_rpc_frame_add_md(f, "server", "rill", 4), 0);
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_RESPONSE, 2, &f), 0);
    cr_assert_eq(rill_rpc_frame_set_status(f, RILL_RPC_INVALID_ARGUMENT, "division by zero"), 0);
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_CANCEL, 7, &f), 0);
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_PING, 8, &f), 0);
    rill_rpc_frame_set_payload(f, rt_buf("12345678"));
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_PONG, 8, &f), 0);
    rill_rpc_frame_set_payload(f, rt_buf("12345678"));
    v[n++] = f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_GOAWAY, 42, &f), 0);
    cr_assert_eq(rill_rpc_frame_set_status(f, RILL_RPC_UNAVAILABLE, "shutting down"), 0);
    v[n++] = f;
    return n;
}

static void assert_same(const struct rill_rpc_frame *a, const struct rill_rpc_frame *b)
{
    cr_assert_eq(a->type, b->type);
    cr_assert_eq(a->id, b->id, "id %llu vs %llu", (unsigned long long)a->id,
                 (unsigned long long)b->id);
    if (a->type == RILL_RPC_REQUEST) {
        cr_assert_str_eq(a->service, b->service);
        cr_assert_str_eq(a->method, b->method);
        cr_assert_eq(a->deadline_ns, b->deadline_ns);
    }
    cr_assert_eq(a->status, b->status);
    cr_assert_str_eq(a->status_msg ? a->status_msg : "", b->status_msg ? b->status_msg : "");
    cr_assert_eq(a->nmd, b->nmd);
    for (uint16_t i = 0; i < a->nmd; i++) {
        cr_assert_str_eq(a->md[i].key, b->md[i].key);
        cr_assert_eq(a->md[i].val_len, b->md[i].val_len);
        cr_assert_eq(memcmp(a->md[i].val, b->md[i].val, a->md[i].val_len), 0);
    }
    size_t la = a->payload ? rill_buf_readable(a->payload) : 0;
    size_t lb = b->payload ? rill_buf_readable(b->payload) : 0;
    cr_assert_eq(la, lb, "payload %zu vs %zu bytes", la, lb);
    if (la)
        cr_assert(rill_buf_equal(a->payload, b->payload));
}

/* Encode the frames of make_frames through a client-role codec: the
 * preamble, then the frames; @keep gets the frames (one reference each). */
static uint8_t *encode_frames(size_t *len, size_t *nframes, struct rill_rpc_frame **keep)
{
    struct rill_rpc_frame *v[16];
    size_t n = make_frames(v);
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    uint8_t *bytes = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        keep[i] = v[i];
        rill_msg_retain(&v[i]->msg);
        cr_assert_geq(rill_embedded_write_outbound(e, &v[i]->msg), 0);
    }
    rt_drain_bytes(e, &bytes, len);
    cr_assert_eq(rill_embedded_finish(e, NULL), 0);
    rill_embedded_free(e);
    *nframes = n;
    return bytes;
}

static void release_all(struct rill_rpc_frame **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rill_rpc_frame_release(v[i]);
}

/* Read what reached the tail of a server-role codec: the preamble first,
 * then frames compared with @want. */
static void expect_decoded(struct rill_embedded *e, struct rill_rpc_frame **want, size_t n)
{
    struct rill_msg *m = rill_embedded_read_inbound(e);
    struct rill_rpc_preamble *p = rill_rpc_preamble_from_msg(m);
    cr_assert_not_null(p, "the preamble comes first");
    cr_assert_eq(p->version, RILL_RPC_VERSION);
    cr_assert_eq(p->auth_len, 0);
    rill_msg_release(m);
    for (size_t i = 0; i < n; i++) {
        m = rill_embedded_read_inbound(e);
        struct rill_rpc_frame *f = rill_rpc_frame_from_msg(m);
        cr_assert_not_null(f, "frame %zu missing", i);
        assert_same(want[i], f);
        rill_msg_release(m);
    }
    cr_assert_null(rill_embedded_read_inbound(e));
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    cr_assert(rill_embedded_is_open(e));
}

Test(rpc_frame, every_type_round_trips)
{
    struct rill_rpc_frame *v[16];
    size_t len, n;
    uint8_t *bytes = encode_frames(&len, &n, v);
    cr_assert_eq(memcmp(bytes, "RILL\x01\x00\x00\x00", 8), 0, "preamble first");
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
    cr_assert_geq(rill_test_feed(e, bytes, len), 0);
    expect_decoded(e, v, n);
    rill_embedded_free(e);
    release_all(v, n);
    free(bytes);
}

Test(rpc_frame, names_are_sent_once_per_connection)
{
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    size_t sizes[3];
    for (int i = 0; i < 3; i++) {
        struct rill_rpc_frame *f;
        cr_assert_eq(rill_rpc_frame_new(RILL_RPC_REQUEST, (uint64_t)i + 1, &f), 0);
        cr_assert_eq(rill_rpc_frame_set_names(f, "svc", i == 2 ? "other" : "method"), 0);
        cr_assert_geq(rill_embedded_write_outbound(e, &f->msg), 0);
        uint8_t *b = NULL;
        size_t len = 0;
        rt_drain_bytes(e, &b, &len);
        sizes[i] = len - (i == 0 ? RILL_RPC_PREAMBLE_LEN : 0);
        uint8_t flags = b[(i == 0 ? RILL_RPC_PREAMBLE_LEN : 0) + 5];
        cr_assert_eq(flags & RILL_RPC_F_NAMES, i == 1 ? 0 : RILL_RPC_F_NAMES, "frame %d", i);
        free(b);
    }
    cr_assert_eq(sizes[0], sizes[1] + 2 + strlen("svc") + strlen("method"));
    cr_assert_eq(rill_embedded_finish(e, NULL), 0);
    rill_embedded_free(e);
}

Test(rpc_frame, split_at_every_byte_boundary)
{
    struct rill_rpc_frame *v[16];
    size_t len, n;
    uint8_t *bytes = encode_frames(&len, &n, v);
    for (size_t at = 1; at < len; at++) {
        struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
        cr_assert_geq(rill_test_feed_split(e, bytes, len, at), 0, "split at %zu", at);
        expect_decoded(e, v, n);
        rill_embedded_free(e);
    }
    release_all(v, n);
    free(bytes);
}

Test(rpc_frame, one_byte_at_a_time_and_three_way_splits)
{
    struct rill_rpc_frame *v[16];
    size_t len, n;
    uint8_t *bytes = encode_frames(&len, &n, v);
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
    cr_assert_geq(rill_test_feed_bytes(e, bytes, len), 0);
    expect_decoded(e, v, n);
    rill_embedded_free(e);
    for (size_t a = 1; a < len; a += 97) {
        for (size_t b = a + 1; b < len; b += 13) {
            size_t cuts[2] = { a, b };
            e = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
            cr_assert_geq(rill_test_feed_cuts(e, bytes, len, cuts, 2), 0);
            expect_decoded(e, v, n);
            rill_embedded_free(e);
        }
    }
    release_all(v, n);
    free(bytes);
}

Test(rpc_frame, payload_is_a_view_of_the_input)
{
    struct rill_rpc_frame *v[16];
    size_t len, n;
    uint8_t *bytes = encode_frames(&len, &n, v);
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
    cr_assert_geq(rill_test_feed(e, bytes, len), 0);
    rill_msg_release(rill_embedded_read_inbound(e));    /* preamble */
    rill_msg_release(rill_embedded_read_inbound(e));    /* request 1 */
    struct rill_msg *m = rill_embedded_read_inbound(e); /* request 2: 3000 bytes */
    struct rill_rpc_frame *f = rill_rpc_frame_from_msg(m);
    cr_assert_not_null(f);
    cr_assert_eq(rill_buf_readable(f->payload), 3000);
    cr_assert_eq(rill_buf_kind(f->payload), RILL_BUF_SLICE, "a slice, not a copy");
    rill_msg_release(m);
    while ((m = rill_embedded_read_inbound(e)) != NULL)
        rill_msg_release(m);
    rill_embedded_free(e);
    release_all(v, n);
    free(bytes);
}

Test(rpc_frame, encoding_leaves_the_payload_unread)
{
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    for (size_t size = 10; size <= 5000; size *= 10) {
        struct rill_rpc_frame *f;
        cr_assert_eq(rill_rpc_frame_new(RILL_RPC_PING, 1, &f), 0);
        rill_rpc_frame_set_payload(f, rt_pattern_buf(size, 1));
        rill_msg_retain(&f->msg);
        cr_assert_geq(rill_embedded_write_outbound(e, &f->msg), 0);
        cr_assert_eq(rill_buf_readable(f->payload), size, "the frame can be encoded again");
        rill_rpc_frame_release(f);
    }
    cr_assert_eq(rill_embedded_finish(e, NULL), 2 - 2);
    rill_embedded_free(e);
}

/* ---- malformed input ---- */

/* Feed @bytes to a fresh server-role codec; expect the error @err with a
 * text containing @needle, the channel closed, and the GOAWAY (or HTTP
 * answer) starting with @answer_prefix written first. */
static void expect_rejected(const void *bytes, size_t len, int err, const char *needle,
                            int goaway_status)
{
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
    rill_test_feed(e, bytes, len);
    const char *why = NULL;
    int got = rill_embedded_take_exception(e, &why);
    cr_assert_eq(got, err, "error %s (%s), expected %s", rill_errname(got), why ? why : "",
                 rill_errname(err));
    cr_assert_not_null(why);
    cr_assert(strstr(why, needle), "\"%s\" does not mention \"%s\"", why, needle);
    cr_assert_not(rill_embedded_is_open(e), "the connection is closed");
    uint8_t *out = NULL;
    size_t olen = 0;
    rt_drain_bytes(e, &out, &olen);
    if (goaway_status >= 0) {
        /* Decode the GOAWAY with a client-role codec. */
        struct rill_embedded *c = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
        cr_assert_gt(olen, 0, "a GOAWAY was written");
        rill_test_feed(c, out, olen);
        struct rill_msg *m = rill_embedded_read_inbound(c);
        struct rill_rpc_frame *f = rill_rpc_frame_from_msg(m);
        cr_assert_not_null(f);
        cr_assert_eq(f->type, RILL_RPC_GOAWAY);
        cr_assert_eq(f->status, goaway_status, "status %s", rill_rpc_status_name(f->status));
        cr_assert(f->status_msg && strstr(f->status_msg, needle));
        rill_msg_release(m);
        rill_embedded_free(c);
    }
    /* At most the preamble got through; later input is dropped. */
    struct rill_msg *m;
    while ((m = rill_embedded_read_inbound(e)) != NULL) {
        cr_assert_not_null(rill_rpc_preamble_from_msg(m), "only the preamble was passed on");
        rill_msg_release(m);
    }
    rill_test_feed(e, "RILL", 4);
    cr_assert_null(rill_embedded_read_inbound(e));
    free(out);
    rill_embedded_free(e);
}

Test(rpc_frame, bad_magic_gets_goaway_and_close)
{
    expect_rejected("XRPC\x01\x00\x00\x00", 8, RILL_EPROTO, "magic", RILL_RPC_INVALID_ARGUMENT);
    expect_rejected("hrpc\x09\x00\x00\x00", 8, RILL_EPROTO, "magic", RILL_RPC_INVALID_ARGUMENT);
}

Test(rpc_frame, http_request_gets_400)
{
    const char *reqs[] = { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /rpc HTTP/1.1\r\n\r\n",
                           "HTTP/1.1 200 OK\r\n\r\n" };
    for (size_t i = 0; i < 3; i++) {
        struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
        rill_test_feed(e, reqs[i], strlen(reqs[i]));
        const char *why = NULL;
        cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EPROTO);
        cr_assert(strstr(why, "HTTP"), "%s", why);
        cr_assert_not(rill_embedded_is_open(e));
        uint8_t *out = NULL;
        size_t olen = 0;
        rt_drain_bytes(e, &out, &olen);
        out[olen] = 0;
        cr_assert(strncmp((char *)out, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "%s", out);
        cr_assert(strstr((char *)out, "Connection: close"));
        /* Content-Length matches the body. */
        char *body = strstr((char *)out, "\r\n\r\n") + 4;
        cr_assert_eq(strlen(body), 40);
        free(out);
        rill_embedded_free(e);
    }
}

Test(rpc_frame, wrong_version_flags_and_auth_length)
{
    expect_rejected("RILL\x02\x00\x00\x00", 8, RILL_EBADVERSION, "version 2",
                    RILL_RPC_UNIMPLEMENTED);
    expect_rejected("RILL\x01\x80\x00\x00", 8, RILL_EPROTO, "flags 0x80",
                    RILL_RPC_INVALID_ARGUMENT);
    expect_rejected("RILL\x01\x00\xff\xff", 8, RILL_ETOOLARGE, "auth token",
                    RILL_RPC_INVALID_ARGUMENT);
}

Test(rpc_frame, preamble_carries_the_auth_token)
{
    struct rill_rpc_codec_opts co;
    rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_CLIENT);
    co.auth = "secret-token";
    co.auth_len = 12;
    struct rill_embedded *c = rt_codec(RILL_RPC_ROLE_CLIENT, &co);
    uint8_t *out = NULL;
    size_t olen = 0;
    rt_drain_bytes(c, &out, &olen);
    cr_assert_eq(olen, RILL_RPC_PREAMBLE_LEN + 12, "sent when active, before any frame");
    struct rill_embedded *s = rt_codec(RILL_RPC_ROLE_SERVER, NULL);
    rill_test_feed_bytes(s, out, olen);
    struct rill_msg *m = rill_embedded_read_inbound(s);
    struct rill_rpc_preamble *p = rill_rpc_preamble_from_msg(m);
    cr_assert_not_null(p);
    cr_assert_eq(p->auth_len, 12);
    cr_assert_str_eq((char *)p->auth, "secret-token");
    rill_msg_release(m);
    free(out);
    rill_embedded_free(s);
    rill_embedded_free(c);
}

/* The preamble, then @frame (its own length field included). */
static void reject_frame(const uint8_t *frame, size_t len, int err, const char *needle)
{
    uint8_t buf[256];
    memcpy(buf, "RILL\x01\x00\x00\x00", 8);
    memcpy(buf + 8, frame, len);
    expect_rejected(buf, len + 8, err, needle,
                    err == RILL_ETOOLARGE ? RILL_RPC_RESOURCE_EXHAUSTED : RILL_RPC_INTERNAL);
}

Test(rpc_frame, malformed_frames_name_the_problem)
{
    /* unknown type 9 */
    reject_frame((const uint8_t *)"\0\0\0\x0a\x09\0\0\0\0\0\0\0\0\x01", 14, RILL_EPROTO,
                 "unknown type 9");
    /* length shorter than the header */
    reject_frame((const uint8_t *)"\0\0\0\x05\x03\0\0\0\0", 9, RILL_EPROTO, "shorter");
    /* CANCEL with the NAMES flag */
    reject_frame((const uint8_t *)"\0\0\0\x0a\x03\x02\0\0\0\0\0\0\0\x01", 14, RILL_EPROTO,
                 "unknown flags 0x02");
    /* CANCEL with trailing bytes */
    reject_frame((const uint8_t *)"\0\0\0\x0c\x03\0\0\0\0\0\0\0\0\x01zz", 16, RILL_EPROTO,
                 "2 unexpected bytes");
    /* REQUEST using ref 1 before defining it */
    reject_frame((const uint8_t *)"\0\0\0\x16\x01\0\0\0\0\0\0\0\0\x01"
                                  "\0\0\0\x01"
                                  "\0\0\0\0\0\0\0\0",
                 26, RILL_EPROTO, "used before its names");
    /* REQUEST defining ref 2 first */
    reject_frame((const uint8_t *)"\0\0\0\x1a\x01\x02\0\0\0\0\0\0\0\x01"
                                  "\0\0\0\x02"
                                  "\x01s\x01m"
                                  "\0\0\0\0\0\0\0\0",
                 30, RILL_EPROTO, "out of order");
    /* REQUEST whose service name runs past the frame */
    reject_frame((const uint8_t *)"\0\0\0\x10\x01\x02\0\0\0\0\0\0\0\x01"
                                  "\0\0\0\x01"
                                  "\x40s",
                 20, RILL_EPROTO, "run past");
    /* REQUEST with an empty method name */
    reject_frame((const uint8_t *)"\0\0\0\x19\x01\x02\0\0\0\0\0\0\0\x01"
                                  "\0\0\0\x01"
                                  "\x01s\x00"
                                  "\0\0\0\0\0\0\0\0",
                 29, RILL_EPROTO, "empty service or method");
    /* RESPONSE whose metadata key is empty */
    reject_frame((const uint8_t *)"\0\0\0\x12\x02\x01\0\0\0\0\0\0\0\x01"
                                  "\0\0\0\0"
                                  "\0\x01\0\0",
                 22, RILL_EPROTO, "empty key");
    /* RESPONSE whose status message runs past the frame */
    reject_frame((const uint8_t *)"\0\0\0\x0e\x02\0\0\0\0\0\0\0\0\x01"
                                  "\0\0\0\x09",
                 18, RILL_EPROTO, "run past");
}

Test(rpc_frame, oversize_frame_fails_fast)
{
    /* Only the length field has arrived: the limit is known already. */
    reject_frame((const uint8_t *)"\x01\0\0\x01", 4, RILL_ETOOLARGE, "exceeds the limit");
    struct rill_rpc_codec_opts so;
    rill_rpc_codec_opts_init(&so, RILL_RPC_ROLE_SERVER);
    so.max_frame = 100;
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_SERVER, &so);
    rill_test_feed(e, "RILL\x01\x00\x00\x00\x00\x00\x00\x65", 12); /* 101 bytes */
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert(strstr(why, "101 bytes exceeds the limit of 100"), "%s", why);
    cr_assert_not(rill_embedded_is_open(e));
    rill_embedded_free(e);
}

Test(rpc_frame, encoder_refuses_oversize_frames)
{
    struct rill_rpc_codec_opts co;
    rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_CLIENT);
    co.max_frame = 1000;
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_CLIENT, &co);
    uint8_t *out = NULL;
    size_t olen = 0;
    rt_drain_bytes(e, &out, &olen); /* the preamble */
    struct rill_rpc_frame *f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_PING, 1, &f), 0);
    rill_rpc_frame_set_payload(f, rt_pattern_buf(1000 - 10 + 1, 3));
    cr_assert_eq(rill_embedded_write_outbound(e, &f->msg), RILL_ETOOLARGE);
    cr_assert_eq(rill_embedded_outbound_count(e), 0, "nothing written");
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_PING, 2, &f), 0);
    rill_rpc_frame_set_payload(f, rt_pattern_buf(1000 - 10, 3));
    cr_assert_eq(rill_embedded_write_outbound(e, &f->msg), 1, "exactly the limit is fine");
    cr_assert(rill_embedded_is_open(e));
    free(out);
    rill_embedded_free(e);
}

Test(rpc_frame, client_detects_an_http_peer)
{
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    const char *resp = "HTTP/1.1 400 Bad Request\r\n\r\n";
    rill_test_feed(e, resp, strlen(resp));
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EPROTO);
    cr_assert(strstr(why, "not a rill RPC server"), "%s", why);
    cr_assert_not(rill_embedded_is_open(e));
    rill_embedded_free(e);
}

Test(rpc_frame, bad_arguments)
{
    struct rill_rpc_frame *f;
    cr_assert_eq(rill_rpc_frame_new(0, 1, &f), -EINVAL);
    cr_assert_eq(rill_rpc_frame_new(7, 1, &f), -EINVAL);
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_REQUEST, 1, &f), 0);
    cr_assert_eq(rill_rpc_frame_set_names(f, "", "m"), -EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[299] = 0;
    cr_assert_eq(rill_rpc_frame_set_names(f, "s", longname), -EINVAL);
    cr_assert_eq(rill_rpc_frame_set_status(f, 70000, NULL), -EINVAL);
    cr_assert_eq(rill_rpc_frame_add_md(f, "", "x", 1), -EINVAL);
    /* A request without names cannot be encoded. */
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    cr_assert_eq(rill_embedded_write_outbound(e, &f->msg), -EINVAL);
    struct rill_rpc_codec_opts co;
    rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_CLIENT);
    co.max_frame = 10;
    struct rill_embedded_handler h = { "c", &rill_rpc_codec_handler, &co };
    struct rill_embedded *bad = NULL;
    cr_assert_eq(rill_embedded_new(&h, 1, &bad), -EINVAL);
    rill_embedded_free(e);
}

Test(rpc_frame, status_mapping)
{
    for (int s = 0; s < RILL_RPC_STATUS_COUNT; s++)
        cr_assert_eq(rill_rpc_status_from_err(rill_rpc_status_to_err(s)), s, "%s",
                     rill_rpc_status_name(s));
    cr_assert_eq(rill_rpc_status_to_err(RILL_RPC_BUSY), RILL_EBUSY);
    cr_assert_eq(rill_rpc_status_to_err(RILL_RPC_DEADLINE_EXCEEDED), RILL_EDEADLINE);
    cr_assert_eq(rill_rpc_status_to_err(RILL_RPC_UNAVAILABLE), RILL_EUNAVAILABLE);
    cr_assert_eq(rill_rpc_status_to_err(RILL_RPC_USER + 5), -EIO);
    cr_assert_eq(rill_rpc_status_from_err(RILL_ECLOSED), RILL_RPC_UNAVAILABLE);
    cr_assert_str_eq(rill_rpc_status_name(RILL_RPC_USER + 1), "USER");
}

/* The example in docs/rpc-wire.md, byte for byte. */
Test(rpc_frame, wire_example_of_the_docs)
{
    static const uint8_t want[] = { 'R', 'I', 'L', 'L',  1,    0,    0,   0,   0,   0,   0,   0x22,
                                    1,   2,   0,   0,    0,    0,    0,   0,   0,   1,   0,   0,
                                    0,   1,   4,   'c',  'a',  'l',  'c', 3,   'a', 'd', 'd', 0,
                                    0,   0,   0,   0x3b, 0x9a, 0xca, 0,   '1', ' ', '2' };
    struct rill_embedded *e = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    struct rill_rpc_frame *f;
    cr_assert_eq(rill_rpc_frame_new(RILL_RPC_REQUEST, 1, &f), 0);
    cr_assert_eq(rill_rpc_frame_set_names(f, "calc", "add"), 0);
    f->deadline_ns = 1000000000ull;
    rill_rpc_frame_set_payload(f, rt_buf("1 2"));
    cr_assert_geq(rill_embedded_write_outbound(e, &f->msg), 0);
    uint8_t *out = NULL;
    size_t len = 0;
    rt_drain_bytes(e, &out, &len);
    cr_assert_eq(len, sizeof(want));
    cr_assert_eq(memcmp(out, want, len), 0);
    free(out);
    static const uint8_t resp[] = { 0, 0, 0, 0x0f, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, '3' };
    struct rill_embedded *c = rt_codec(RILL_RPC_ROLE_CLIENT, NULL);
    rill_test_feed(c, resp, sizeof(resp));
    struct rill_msg *m = rill_embedded_read_inbound(c);
    f = rill_rpc_frame_from_msg(m);
    cr_assert_not_null(f);
    cr_assert_eq(f->type, RILL_RPC_RESPONSE);
    cr_assert_eq(f->status, RILL_RPC_OK);
    cr_assert(rt_buf_is(f->payload, "3"));
    rill_msg_release(m);
    rill_embedded_free(c);
    rill_embedded_free(e);
}
