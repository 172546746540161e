/* RESP encoding (include/rill/resp.h): every reply helper in RESP2 and
 * RESP3, zero-copy bulk strings, built values (rill_resp_new, seal,
 * command), the codec's write path with a per-connection protocol, and the
 * reply buffer that turns a read batch's replies into one write. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/pipeline.h"
#include "rill/resp.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(resp_encode, .timeout = 30, .fini = rill_test_no_leaks);

static struct rill_buf *newbuf(void)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(16, &b), 0);
    return b;
}

static void expect_buf(struct rill_buf *b, const char *want, size_t len)
{
    char *got = rill_test_buf_str(b);
    cr_assert(rill_buf_readable(b) == len && memcmp(got, want, len) == 0, "got %s, want %s", got,
              want);
    free(got);
}

#define EXPECT(b, lit) expect_buf((b), (lit), sizeof(lit) - 1)

Test(resp_encode, helpers_in_both_protocols)
{
    for (int proto = 2; proto <= 3; proto++) {
        struct rill_buf *b = newbuf();
        cr_assert_eq(rill_resp_put_simple(b, "OK", 2), 0);
        cr_assert_eq(rill_resp_put_error(b, "ERR a\r\nb", 8), 0);
        cr_assert_eq(rill_resp_put_errorf(b, "ERR unknown command '%s'", "x"), 0);
        cr_assert_eq(rill_resp_put_int(b, INT64_MIN), 0);
        cr_assert_eq(rill_resp_put_int(b, 0), 0);
        cr_assert_eq(rill_resp_put_bulk(b, "hello", 5), 0);
        cr_assert_eq(rill_resp_put_bulk(b, NULL, 0), 0);
        cr_assert_eq(rill_resp_put_bulk_header(b, 3), 0);
        cr_assert_eq(rill_buf_write_bytes(b, "abc", 3), 0);
        cr_assert_eq(rill_resp_put_crlf(b), 0);
        cr_assert_eq(rill_resp_put_null(b, proto), 0);
        cr_assert_eq(rill_resp_put_null_array(b, proto), 0);
        cr_assert_eq(rill_resp_put_agg(b, proto, RILL_RESP_ARRAY, 2), 0);
        cr_assert_eq(rill_resp_put_agg(b, proto, RILL_RESP_MAP, 2), 0);
        cr_assert_eq(rill_resp_put_agg(b, proto, RILL_RESP_SET, 1), 0);
        cr_assert_eq(rill_resp_put_agg(b, proto, RILL_RESP_PUSH, 3), 0);
        cr_assert_eq(rill_resp_put_bool(b, proto, true), 0);
        cr_assert_eq(rill_resp_put_double(b, proto, 1.5), 0);
        cr_assert_eq(rill_resp_put_double(b, proto, -INFINITY), 0);
        cr_assert_eq(rill_resp_put_double(b, proto, 0.1), 0);
        cr_assert_eq(rill_resp_put_bignum(b, proto, "123", 3), 0);
        cr_assert_eq(rill_resp_put_verbatim(b, proto, "txt", "hi", 2), 0);
        cr_assert_eq(rill_resp_put_blob_error(b, proto, "E x\ny", 5), 0);
        if (proto == 2) {
            cr_assert_eq(rill_resp_put_agg(b, proto, RILL_RESP_ATTR, 1), -EINVAL);
            EXPECT(b, "+OK\r\n-ERR a  b\r\n-ERR unknown command 'x'\r\n:-9223372036854775808\r\n"
                      ":0\r\n$5\r\nhello\r\n$0\r\n\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n*4\r\n"
                      "*1\r\n*3\r\n:1\r\n$3\r\n1.5\r\n$4\r\n-inf\r\n$3\r\n0.1\r\n$3\r\n123\r\n"
                      "$2\r\nhi\r\n-E x y\r\n");
        } else {
            cr_assert_eq(rill_resp_put_agg(b, proto, RILL_RESP_ATTR, 1), 0);
            EXPECT(b, "+OK\r\n-ERR a  b\r\n-ERR unknown command 'x'\r\n:-9223372036854775808\r\n"
                      ":0\r\n$5\r\nhello\r\n$0\r\n\r\n$3\r\nabc\r\n_\r\n_\r\n*2\r\n%2\r\n"
                      "~1\r\n>3\r\n#t\r\n,1.5\r\n,-inf\r\n,0.1\r\n(123\r\n=6\r\ntxt:hi\r\n"
                      "!5\r\nE x\ny\r\n|1\r\n");
        }
        cr_assert_eq(rill_resp_put_agg(b, proto, RILL_RESP_INT, 1), -EINVAL);
        rill_buf_release(b);
    }
}

Test(resp_encode, long_error_text_is_not_cut)
{
    char msg[1000];
    memset(msg, 'e', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    struct rill_buf *b = newbuf();
    cr_assert_eq(rill_resp_put_errorf(b, "ERR %s", msg), 0);
    cr_assert_eq(rill_buf_readable(b), 4 + 999 + 3);
    rill_buf_release(b);
}

Test(resp_encode, large_bulk_buffers_are_not_copied)
{
    size_t n = RILL_RESP_ZERO_COPY_MIN + 5;
    char *data = malloc(n);
    memset(data, 'v', n);
    struct rill_buf *val;
    cr_assert_eq(rill_buf_copy_from(data, n, &val), 0);
    struct rill_buf *out = newbuf();
    cr_assert_eq(rill_resp_put_int(out, 1), 0);
    cr_assert_eq(rill_resp_put_bulk_buf(&out, rill_buf_retain(val)), 0);
    cr_assert_eq(rill_resp_put_int(out, 2), 0);
    cr_assert_eq(rill_buf_kind(out), RILL_BUF_COMPOSITE);
    cr_assert_geq(rill_msg_refcnt(&val->msg), 2, "the reply references the value");
    char head[32];
    int h = snprintf(head, sizeof(head), ":1\r\n$%zu\r\n", n);
    cr_assert_eq(rill_buf_readable(out), (size_t)h + n + 2 + 4);
    cr_assert(rill_buf_equal_bytes(out, 0, head, (size_t)h));
    cr_assert(rill_buf_equal_bytes(out, (size_t)h, data, n));
    cr_assert(rill_buf_equal_bytes(out, (size_t)h + n, "\r\n:2\r\n", 6));
    cr_assert(rill_buf_equal_bytes(val, 0, data, n), "the value is unchanged");
    rill_buf_release(out);
    rill_buf_release(val);

    /* Small ones are copied. */
    out = newbuf();
    cr_assert_eq(rill_buf_copy_from("abc", 3, &val), 0);
    cr_assert_eq(rill_resp_put_bulk_buf(&out, val), 0);
    cr_assert_neq(rill_buf_kind(out), RILL_BUF_COMPOSITE);
    EXPECT(out, "$3\r\nabc\r\n");
    rill_buf_release(out);
    free(data);
}

Test(resp_encode, built_values_seal_and_encode)
{
    struct rill_resp *r;
    cr_assert_eq(rill_resp_new(7, 8, &r), 0);
    char *s = rill_resp_storage(r);
    memcpy(s, "keyvalue", 8);
    r->vals[0] = (struct rill_resp_val){ .type = RILL_RESP_MAP, .n = 4 };
    r->vals[1] = (struct rill_resp_val){ .type = RILL_RESP_SIMPLE, .str = s, .len = 3 };
    r->vals[2] = (struct rill_resp_val){ .type = RILL_RESP_BULK, .str = s + 3, .len = 5 };
    r->vals[3] = (struct rill_resp_val){ .type = RILL_RESP_INT, .i = 7 };
    r->vals[4] = (struct rill_resp_val){ .type = RILL_RESP_ARRAY, .n = 2 };
    r->vals[5] = (struct rill_resp_val){ .type = RILL_RESP_DOUBLE, .d = 2.5 };
    r->vals[6] = (struct rill_resp_val){ .type = RILL_RESP_NULL };
    cr_assert_eq(rill_resp_seal(r), 0);
    cr_assert_eq(r->vals[0].len, 7);
    cr_assert(r->vals[4].flags & RILL_RESP_F_FLAT);
    cr_assert_eq(r->vals[0].flags & RILL_RESP_F_FLAT, 0);
    struct rill_buf *out = newbuf();
    cr_assert_eq(rill_resp_encode(&out, r, rill_resp_root(r), 3), 0);
    EXPECT(out, "%2\r\n+key\r\n$5\r\nvalue\r\n:7\r\n*2\r\n,2.5\r\n_\r\n");
    rill_buf_clear(out);
    cr_assert_eq(rill_resp_encode(&out, r, rill_resp_root(r), 2), 0);
    EXPECT(out, "*4\r\n+key\r\n$5\r\nvalue\r\n:7\r\n*2\r\n$3\r\n2.5\r\n$-1\r\n");
    cr_assert_eq(rill_resp_encode(&out, r, rill_resp_root(r), 4), -EINVAL);
    /* Shapes that don't add up. */
    r->vals[0].n = 3;
    cr_assert_eq(rill_resp_seal(r), -EINVAL, "a map needs whole pairs");
    r->vals[0].n = 2;
    cr_assert_eq(rill_resp_seal(r), -EINVAL, "nodes left over");
    r->vals[0].n = 6;
    cr_assert_eq(rill_resp_seal(r), -EINVAL, "too few nodes");
    r->vals[0].n = 4;
    r->vals[6].type = 'Z';
    cr_assert_eq(rill_resp_seal(r), -EINVAL, "unknown type");
    rill_buf_release(out);
    rill_resp_release(r);
    cr_assert_eq(rill_resp_new(0, 0, &r), -EINVAL);
}

Test(resp_encode, command_builder)
{
    const char *argv[] = { "SET", "k", "v a" };
    struct rill_resp *r;
    cr_assert_eq(rill_resp_command(3, argv, NULL, &r), 0);
    struct rill_buf *out = newbuf();
    cr_assert_eq(rill_resp_encode(&out, r, rill_resp_root(r), 2), 0);
    EXPECT(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv a\r\n");
    size_t len;
    cr_assert_eq(memcmp(rill_resp_arg(r, 2, &len), "v a", 3), 0);
    cr_assert_eq(len, 3);
    rill_buf_release(out);
    rill_resp_release(r);
    size_t lens[] = { 1, 0 };
    cr_assert_eq(rill_resp_command(2, (const char *const[]){ "x\0", "" }, lens, &r), 0);
    cr_assert_eq(rill_resp_argc(r), 2);
    rill_resp_release(r);
    cr_assert_eq(rill_resp_command(0, argv, NULL, &r), -EINVAL);
}

/* ---- through the codec ---- */

static struct rill_embedded *codec_and(const struct rill_handler *h)
{
    static const struct rill_resp_config cfg = { .mode = RILL_RESP_MODE_COMMANDS };
    struct rill_embedded_handler hs[2] = { { "resp", &rill_resp_codec, (void *)&cfg },
                                           { "app", h, NULL } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, h ? 2 : 1, &e), 0);
    return e;
}

static char *pop_out(struct rill_embedded *e)
{
    struct rill_msg *m = rill_embedded_read_outbound(e);
    cr_assert_not_null(m);
    char *s = rill_test_buf_str(rill_buf_from_msg(m));
    rill_msg_release(m);
    return s;
}

Test(resp_encode, codec_encodes_written_values_in_the_connection_protocol)
{
    struct rill_embedded *e = codec_and(NULL);
    struct rill_ctx *cc = rill_pipeline_get(rill_embedded_pipeline(e), "resp");
    cr_assert_eq(rill_resp_get_proto(cc), 2);
    struct rill_resp *r;
    cr_assert_eq(rill_resp_new(1, 0, &r), 0);
    r->vals[0].type = RILL_RESP_NULL;
    cr_assert_eq(rill_resp_seal(r), 0);
    rill_msg_retain(&r->msg);
    cr_assert_eq(rill_embedded_write_outbound(e, &r->msg), 1);
    char *s = pop_out(e);
    cr_assert_str_eq(s, "$-1\r\n");
    free(s);
    cr_assert_eq(rill_resp_set_proto(cc, 3), 0);
    cr_assert_eq(rill_resp_set_proto(cc, 4), -EINVAL);
    cr_assert_eq(rill_resp_get_proto(cc), 3);
    cr_assert_eq(rill_embedded_write_outbound(e, &r->msg), 1);
    s = pop_out(e);
    cr_assert_str_eq(s, "_\r\n");
    free(s);
    /* Buffers pass through untouched. */
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from("raw", 3, &b), 0);
    cr_assert_eq(rill_embedded_write_outbound(e, &b->msg), 1);
    s = pop_out(e);
    cr_assert_str_eq(s, "raw");
    free(s);
    rill_embedded_free(e);
}

Test(resp_encode, bad_config_is_refused)
{
    struct rill_resp_config bad = { .proto = 5 };
    struct rill_embedded_handler h = { "resp", &rill_resp_codec, &bad };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(&h, 1, &e), -EINVAL);
    bad.proto = 3;
    bad.mode = 7;
    cr_assert_eq(rill_embedded_new(&h, 1, &e), -EINVAL);
}

/* A tiny server: replies to each command into the codec's reply buffer. */
static void app_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_resp *r = rill_resp_from_msg(msg);
    struct rill_ctx *cc = rill_pipeline_get(rill_ctx_pipeline(ctx), "resp");
    struct rill_buf **out = rill_resp_out(cc);
    cr_assert_not_null(out);
    size_t len;
    const char *a = rill_resp_arg(r, 0, &len);
    if (len == 4 && memcmp(a, "PING", 4) == 0) {
        rill_resp_put_simple(*out, "PONG", 4);
    } else if (len == 5 && memcmp(a, "HELLO", 5) == 0) {
        rill_resp_set_proto(cc, 3);
        rill_resp_put_null(*out, rill_resp_get_proto(cc));
    } else if (len == 3 && memcmp(a, "RAW", 3) == 0) {
        /* A plain write after buffered replies keeps its place. */
        struct rill_buf *b;
        rill_buf_copy_from("+raw\r\n", 6, &b);
        rill_ctx_write(ctx, &b->msg, NULL);
    } else {
        rill_resp_put_bulk(*out, a, len);
    }
    rill_resp_release(r);
}

static const struct rill_handler app = { .name = "app", .read = app_read };

Test(resp_encode, replies_of_one_read_go_out_in_one_write)
{
    struct rill_embedded *e = codec_and(&app);
    const char *in = "PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$1\r\nx\r\n";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(rill_embedded_outbound_count(e), 1, "one buffer for the batch");
    char *s = pop_out(e);
    cr_assert_str_eq(s, "+PONG\r\n+PONG\r\n$1\r\nx\r\n");
    free(s);
    /* A batch split over two reads: one write per read. */
    rill_test_feed_split(e, in, strlen(in), 10);
    cr_assert_eq(rill_embedded_outbound_count(e), 2);
    s = pop_out(e);
    cr_assert_str_eq(s, "+PONG\r\n");
    free(s);
    s = pop_out(e);
    cr_assert_str_eq(s, "+PONG\r\n$1\r\nx\r\n");
    free(s);
    /* Order with a plain write in the middle, and with a protocol switch. */
    const char *in2 = "PING\r\nRAW\r\nHELLO\r\n";
    rill_test_feed(e, in2, strlen(in2));
    cr_assert_eq(rill_embedded_outbound_count(e), 3);
    s = pop_out(e);
    cr_assert_str_eq(s, "+PONG\r\n");
    free(s);
    s = pop_out(e);
    cr_assert_str_eq(s, "+raw\r\n");
    free(s);
    s = pop_out(e);
    cr_assert_str_eq(s, "_\r\n");
    free(s);
    rill_embedded_free(e);
}

Test(resp_encode, protocol_error_reply_follows_earlier_replies)
{
    struct rill_embedded *e = codec_and(&app);
    const char *in = "PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n:1\r\n";
    rill_test_feed(e, in, strlen(in));
    const char *why;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EDECODE);
    cr_assert_str_eq(why, "Protocol error: expected '$', got ':'");
    cr_assert_eq(rill_embedded_outbound_count(e), 1);
    char *s = pop_out(e);
    cr_assert_str_eq(s, "+PONG\r\n+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n");
    free(s);
    cr_assert_not(rill_embedded_is_open(e));
    rill_embedded_free(e);
}

Test(resp_encode, reply_buffer_of_a_non_codec_is_null)
{
    cr_assert_null(rill_resp_out(NULL));
    cr_assert_eq(rill_resp_get_proto(NULL), -EINVAL);
    struct rill_embedded *e = codec_and(&app);
    struct rill_ctx *cc = rill_pipeline_get(rill_embedded_pipeline(e), "resp");
    struct rill_buf **out = rill_resp_out(cc);
    cr_assert_eq(rill_resp_put_simple(*out, "LATE", 4), 0);
    rill_resp_flush(cc);
    char *s = pop_out(e);
    cr_assert_str_eq(s, "+LATE\r\n");
    free(s);
    /* Left in the buffer at close: released with the channel. */
    out = rill_resp_out(cc);
    cr_assert_eq(rill_resp_put_simple(*out, "LOST", 4), 0);
    rill_embedded_free(e);
}
