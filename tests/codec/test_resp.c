/* RESP decoder through the embedded channel (include/rill/resp.h): every
 * RESP2 and RESP3 type, round trips split at every byte boundary and
 * coalesced, input right before an unreadable page, commands and inline
 * commands, zero-copy arguments, limits and every error path (code, text,
 * the "-ERR Protocol error" reply, the close) with no leaked message. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/composite.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/pipeline.h"
#include "rill/resp.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(resp, .timeout = 60, .fini = rill_test_no_leaks);

static struct rill_embedded *codec(const struct rill_resp_config *cfg)
{
    struct rill_embedded_handler h = { "resp", &rill_resp_codec, (void *)cfg };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(&h, 1, &e), 0);
    return e;
}

static const struct rill_resp_config any_cfg = { .mode = RILL_RESP_MODE_ANY };
static const struct rill_resp_config cmd_cfg = { .mode = RILL_RESP_MODE_COMMANDS };

static struct rill_resp *next_value(struct rill_embedded *e)
{
    struct rill_msg *m = rill_embedded_read_inbound(e);
    if (!m)
        return NULL;
    struct rill_resp *r = rill_resp_from_msg(m);
    cr_assert_not_null(r, "a RESP message reaches the tail (type %u)", m->type);
    return r;
}

/* Append the encoding of every value that reached the tail to *out. */
static size_t encode_all(struct rill_embedded *e, int proto, struct rill_buf **out)
{
    size_t n = 0;
    struct rill_resp *r;
    while ((r = next_value(e))) {
        cr_assert_eq(rill_resp_encode(out, r, rill_resp_root(r), proto), 0);
        rill_resp_release(r);
        n++;
    }
    return n;
}

static bool buf_equals(const struct rill_buf *b, const void *p, size_t len)
{
    return rill_buf_readable(b) == len && rill_buf_equal_bytes(b, rill_buf_reader_index(b), p, len);
}

/* Feed @in cut at @cut (0: whole; SIZE_MAX: byte by byte), decode in ANY
 * mode, re-encode in @proto: canonical input comes back byte for byte. */
static void roundtrip_once(const char *in, size_t len, size_t cut, int proto, size_t nvalues)
{
    struct rill_embedded *e = codec(&any_cfg);
    struct rill_buf *out;
    cr_assert_eq(rill_buf_alloc(len, &out), 0);
    if (cut == SIZE_MAX) {
        for (size_t i = 0; i < len; i++) {
            rill_test_feed(e, in + i, 1);
            encode_all(e, proto, &out);
        }
    } else {
        rill_test_feed_split(e, in, len, cut);
    }
    encode_all(e, proto, &out);
    char *got = rill_test_buf_str(out);
    cr_assert(buf_equals(out, in, len), "cut %zu: re-encoded\n%s\ninstead of\n%.*s", cut, got,
              (int)len, in);
    free(got);
    rill_buf_release(out);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    cr_assert(rill_embedded_is_open(e));
    cr_assert_eq(
        rill_decoder_pending(rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e), "resp"))),
        0);
    rill_embedded_free(e);
    (void)nvalues;
}

static void roundtrip(const char *in, int proto)
{
    size_t len = strlen(in);
    for (size_t cut = 0; cut <= len; cut++)
        roundtrip_once(in, len, cut, proto, 0);
    roundtrip_once(in, len, SIZE_MAX, proto, 0);
}

static const char resp3_all[] =
    "+OK\r\n"
    "-ERR something bad\r\n"
    ":0\r\n:-42\r\n:9223372036854775807\r\n:-9223372036854775808\r\n"
    "$5\r\nhello\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"
    "*3\r\n:1\r\n$1\r\nx\r\n+y\r\n*0\r\n"
    "_\r\n#t\r\n#f\r\n"
    ",1.5\r\n,inf\r\n,-inf\r\n,nan\r\n,-0.25\r\n,1e+300\r\n"
    "(3492890328409238509324850943850943825024385\r\n(-12\r\n"
    "=15\r\ntxt:Some string\r\n=4\r\nmkd:\r\n"
    "!21\r\nSYNTAX invalid syntax\r\n"
    "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n%0\r\n"
    "~3\r\n+a\r\n+b\r\n:3\r\n"
    ">3\r\n+message\r\n+chan\r\n$3\r\nmsg\r\n"
    "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n"
    "*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n:7\r\n"
    "*2\r\n*2\r\n%1\r\n+k\r\n~1\r\n_\r\n*1\r\n*0\r\n>1\r\n#t\r\n";

static const char resp2_all[] = "+OK\r\n-WRONGTYPE Operation\r\n:123\r\n$-1\r\n*-1\r\n"
                                "$3\r\nfoo\r\n*2\r\n$-1\r\n*2\r\n:1\r\n*-1\r\n"
                                "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";

Test(resp, resp3_every_type_round_trips_at_every_split)
{
    roundtrip(resp3_all, 3);
}

Test(resp, resp2_every_type_round_trips_at_every_split)
{
    roundtrip(resp2_all, 2);
}

Test(resp, coalesced_values_in_one_read)
{
    struct rill_embedded *e = codec(&any_cfg);
    cr_assert_eq(rill_test_feed(e, resp3_all, strlen(resp3_all)), 32);
    struct rill_buf *out;
    cr_assert_eq(rill_buf_alloc(64, &out), 0);
    cr_assert_eq(encode_all(e, 3, &out), 32);
    cr_assert(buf_equals(out, resp3_all, strlen(resp3_all)));
    rill_buf_release(out);
    rill_embedded_free(e);
}

/* Decode one value from @in (whole, ANY mode); the caller releases it. */
static struct rill_resp *one(struct rill_embedded **ep, const char *in)
{
    *ep = codec(&any_cfg);
    cr_assert_eq(rill_test_feed(*ep, in, strlen(in)), 1, "one value from %s", in);
    return next_value(*ep);
}

static void done(struct rill_embedded *e, struct rill_resp *r)
{
    rill_resp_release(r);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    rill_embedded_free(e);
}

static bool str_is(const struct rill_resp_val *v, const char *s)
{
    return v->len == strlen(s) && memcmp(v->str, s, v->len) == 0;
}

Test(resp, scalar_values)
{
    struct rill_embedded *e;
    struct rill_resp *r = one(&e, ":-9223372036854775808\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_INT);
    cr_assert_eq(rill_resp_root(r)->i, INT64_MIN);
    done(e, r);

    r = one(&e, ",-inf\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_DOUBLE);
    cr_assert(isinf(rill_resp_root(r)->d) && rill_resp_root(r)->d < 0);
    done(e, r);
    r = one(&e, ",nan\r\n");
    cr_assert(isnan(rill_resp_root(r)->d));
    done(e, r);
    r = one(&e, ",3.25e2\r\n");
    cr_assert_eq(rill_resp_root(r)->d, 325.0);
    done(e, r);

    r = one(&e, "#t\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_BOOL);
    cr_assert_eq(rill_resp_root(r)->i, 1);
    done(e, r);

    r = one(&e, "=8\r\nmkd:# hi\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_VERBATIM);
    cr_assert_str_eq(rill_resp_root(r)->fmt, "mkd");
    cr_assert(str_is(rill_resp_root(r), "# hi"));
    done(e, r);

    r = one(&e, "!10\r\nERR a\r\nb c\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_BLOB_ERROR);
    cr_assert(str_is(rill_resp_root(r), "ERR a\r\nb c"));
    done(e, r);

    r = one(&e, "(-123456789012345678901234567890\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_BIGNUM);
    cr_assert(str_is(rill_resp_root(r), "-123456789012345678901234567890"));
    done(e, r);

    r = one(&e, "$-1\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_NULL);
    cr_assert_eq(rill_resp_root(r)->flags, RILL_RESP_F_NULL_BULK);
    done(e, r);
    r = one(&e, "*-1\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_NULL);
    cr_assert_eq(rill_resp_root(r)->flags, RILL_RESP_F_NULL_ARRAY);
    done(e, r);
    r = one(&e, "_\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_NULL);
    cr_assert_eq(rill_resp_root(r)->flags, 0);
    done(e, r);

    r = one(&e, "+\r\n");
    cr_assert_eq(rill_resp_root(r)->type, RILL_RESP_SIMPLE);
    cr_assert_eq(rill_resp_root(r)->len, 0);
    cr_assert_not_null(rill_resp_root(r)->str);
    done(e, r);
}

Test(resp, aggregates_nested_maps_and_attributes)
{
    struct rill_embedded *e;
    struct rill_resp *r = one(&e, "*4\r\n%2\r\n+a\r\n:1\r\n+b\r\n*2\r\n:2\r\n:3\r\n$1\r\nz\r\n"
                                  "|1\r\n+ttl\r\n:9\r\n~2\r\n#f\r\n_\r\n>0\r\n");
    const struct rill_resp_val *root = rill_resp_root(r);
    cr_assert_eq(root->type, RILL_RESP_ARRAY);
    cr_assert_eq(root->n, 4);
    cr_assert_eq(root->len, r->nvals);
    cr_assert_eq(root->flags & RILL_RESP_F_FLAT, 0);
    const struct rill_resp_val *map = rill_resp_at(root, 0);
    cr_assert_eq(map->type, RILL_RESP_MAP);
    cr_assert_eq(map->n, 4);
    cr_assert(str_is(rill_resp_at(map, 2), "b"));
    const struct rill_resp_val *inner = rill_resp_at(map, 3);
    cr_assert_eq(inner->type, RILL_RESP_ARRAY);
    cr_assert(inner->flags & RILL_RESP_F_FLAT);
    cr_assert_eq(rill_resp_at(inner, 1)->i, 3);
    cr_assert(str_is(rill_resp_at(root, 1), "z"));
    const struct rill_resp_val *attr = rill_resp_at(root, 2);
    cr_assert_eq(attr->type, RILL_RESP_ATTR);
    cr_assert_eq(attr->n, 3);
    cr_assert(str_is(rill_resp_at(attr, 0), "ttl"));
    const struct rill_resp_val *set = rill_resp_unwrap(attr);
    cr_assert_eq(set->type, RILL_RESP_SET);
    cr_assert_eq(rill_resp_at(set, 0)->i, 0);
    cr_assert_eq(rill_resp_at(set, 1)->type, RILL_RESP_NULL);
    const struct rill_resp_val *push = rill_resp_at(root, 3);
    cr_assert_eq(push->type, RILL_RESP_PUSH);
    cr_assert_eq(push->n, 0);
    cr_assert_eq(rill_resp_next(push), r->vals + r->nvals);
    done(e, r);
}

Test(resp, resp2_degrades_resp3_values_as_redis_does)
{
    struct rill_embedded *e = codec(&any_cfg);
    const char *in = "%1\r\n+k\r\n,2.5\r\n~2\r\n#t\r\n#f\r\n>1\r\n(12\r\n"
                     "=7\r\ntxt:abc\r\n!4\r\nE\r\nx\r\n_\r\n|1\r\n+a\r\n+b\r\n:5\r\n";
    rill_test_feed(e, in, strlen(in));
    struct rill_buf *out;
    cr_assert_eq(rill_buf_alloc(64, &out), 0);
    cr_assert_eq(encode_all(e, 2, &out), 7);
    const char *want = "*2\r\n+k\r\n$3\r\n2.5\r\n*2\r\n:1\r\n:0\r\n*1\r\n$2\r\n12\r\n"
                       "$3\r\nabc\r\n-E  x\r\n$-1\r\n:5\r\n";
    char *got = rill_test_buf_str(out);
    cr_assert_str_eq(got, want);
    free(got);
    rill_buf_release(out);
    rill_embedded_free(e);
}

/* ---- commands ---- */

static struct rill_embedded *cmd_feed(const char *in, size_t len)
{
    struct rill_embedded *e = codec(&cmd_cfg);
    rill_test_feed(e, in, len);
    return e;
}

static void expect_args(struct rill_resp *r, int argc, ...)
{
    cr_assert_eq(rill_resp_argc(r), (size_t)argc);
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        const char *want = va_arg(ap, const char *);
        size_t len;
        const char *a = rill_resp_arg(r, (size_t)i, &len);
        cr_assert(len == strlen(want) && memcmp(a, want, len) == 0, "arg %d: %.*s, not %s", i,
                  (int)len, a, want);
    }
    va_end(ap);
}

Test(resp, commands_are_arrays_of_bulk_strings_read_in_place)
{
    const char *in = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*1\r\n$4\r\nPING\r\n";
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(in, strlen(in), &b), 0);
    size_t n;
    const uint8_t *base = rill_buf_read_ptr(b, &n);
    struct rill_embedded *e = codec(&cmd_cfg);
    rill_buf_retain(b);
    cr_assert_eq(rill_embedded_write_inbound(e, &b->msg), 2);
    struct rill_resp *r = next_value(e);
    expect_args(r, 3, "SET", "key", "value");
    cr_assert(rill_resp_root(r)->flags & RILL_RESP_F_FLAT);
    cr_assert_eq(r->nvals, 4);
    size_t len;
    const char *v = rill_resp_arg(r, 2, &len);
    cr_assert((const uint8_t *)v >= base && (const uint8_t *)v + len <= base + n,
              "arguments point into the buffer that was read");
    cr_assert_geq(rill_msg_refcnt(&b->msg), 2, "the message holds the input");

    /* On demand, an argument as a read-only buffer that outlives the message. */
    struct rill_buf *arg;
    cr_assert_eq(rill_resp_buf(r, rill_resp_at(rill_resp_root(r), 1), &arg), 0);
    cr_assert_eq(rill_resp_buf(r, rill_resp_root(r), &arg), -EINVAL);
    rill_resp_release(r);
    r = next_value(e);
    expect_args(r, 1, "PING");
    rill_resp_release(r);
    rill_buf_release(b);
    cr_assert(buf_equals(arg, "key", 3));
    cr_assert(rill_buf_is_readonly(arg));
    cr_assert_eq(rill_buf_write_u8(arg, 1), -EROFS);
    rill_buf_release(arg);
    rill_embedded_free(e);
}

Test(resp, pipelined_commands_at_every_split)
{
    char in[2048];
    size_t len = 0;
    for (int i = 0; i < 12; i++)
        len += (size_t)snprintf(in + len, sizeof(in) - len,
                                "*3\r\n$3\r\nSET\r\n$%d\r\nkey:%d\r\n$%d\r\n%0*d\r\n",
                                i < 10 ? 5 : 6, i, i + 1, i + 1, i);
    len += (size_t)snprintf(in + len, sizeof(in) - len, "GET \"key:1\"\r\n*0\r\nPING\n");
    for (size_t cut = 0; cut <= len + 1; cut++) {
        struct rill_embedded *e = codec(&cmd_cfg);
        if (cut == len + 1)
            rill_test_feed_bytes(e, in, len);
        else
            rill_test_feed_split(e, in, len, cut);
        cr_assert_eq(rill_embedded_inbound_count(e), 14, "cut %zu", cut);
        for (int i = 0; i < 12; i++) {
            struct rill_resp *r = next_value(e);
            char key[16], val[16];
            snprintf(key, sizeof(key), "key:%d", i);
            snprintf(val, sizeof(val), "%0*d", i + 1, i);
            expect_args(r, 3, "SET", key, val);
            rill_resp_release(r);
        }
        struct rill_resp *r = next_value(e);
        expect_args(r, 2, "GET", "key:1");
        cr_assert(rill_resp_root(r)->flags & RILL_RESP_F_INLINE);
        rill_resp_release(r);
        r = next_value(e);
        expect_args(r, 1, "PING");
        rill_resp_release(r);
        cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
        rill_embedded_free(e);
    }
}

Test(resp, inline_commands_split_like_redis)
{
    const char *in = "  set  k   v \r\n"
                     "\r\n"
                     "   \n"
                     "echo \"a b\\x41\\n\\\"\" 'it\\'s' \"\"\r\n"
                     "x\t'\"' \"'\"\n";
    struct rill_embedded *e = cmd_feed(in, strlen(in));
    cr_assert_eq(rill_embedded_inbound_count(e), 3, "empty lines are skipped");
    struct rill_resp *r = next_value(e);
    expect_args(r, 3, "set", "k", "v");
    rill_resp_release(r);
    r = next_value(e);
    expect_args(r, 4, "echo", "a bA\n\"", "it's", "");
    rill_resp_release(r);
    r = next_value(e);
    expect_args(r, 3, "x", "\"", "'");
    rill_resp_release(r);
    cr_assert(rill_embedded_is_open(e));
    rill_embedded_free(e);
}

/* Feed @in; the stream must fail with @err and @why, reply "-ERR why"
 * first in commands mode, and close; messages before it come out. */
static void expect_failure(const struct rill_resp_config *cfg, const char *in, size_t len, int err,
                           const char *why, size_t before)
{
    struct rill_embedded *e = codec(cfg);
    rill_test_feed(e, in, len);
    cr_assert_eq(rill_embedded_inbound_count(e), before, "%s", why);
    struct rill_msg *m;
    while ((m = rill_embedded_read_inbound(e)))
        rill_msg_release(m);
    const char *got = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &got), err, "error %s for %s",
                 rill_errname(rill_embedded_take_exception(e, NULL)), why);
    cr_assert_str_eq(got, why);
    cr_assert_not(rill_embedded_is_open(e), "the channel closes on bad input");
    struct rill_msg *o = rill_embedded_read_outbound(e);
    if (cfg->mode == RILL_RESP_MODE_COMMANDS && !cfg->no_error_reply) {
        cr_assert_not_null(o, "an error reply goes out first");
        char *s = rill_test_buf_str(rill_buf_from_msg(o));
        char want[200];
        snprintf(want, sizeof(want), "-ERR %s\r\n", why);
        cr_assert_str_eq(s, want);
        free(s);
        rill_msg_release(o);
    } else {
        cr_assert_null(o);
    }
    rill_embedded_free(e);
}

#define FAIL_CMD(in, err, why, before)                                                             \
    expect_failure(&cmd_cfg, in, sizeof(in) - 1, err, why, before)
#define FAIL_ANY(in, err, why, before)                                                             \
    expect_failure(&any_cfg, in, sizeof(in) - 1, err, why, before)

Test(resp, command_errors_match_redis)
{
    FAIL_CMD("*1\r\n:1\r\n", RILL_EDECODE, "Protocol error: expected '$', got ':'", 0);
    FAIL_CMD("*2\r\n$1\r\na\r\n*1\r\n", RILL_EDECODE, "Protocol error: expected '$', got '*'", 0);
    FAIL_CMD("*1\r\n$-1\r\n", RILL_EDECODE, "Protocol error: invalid bulk length", 0);
    FAIL_CMD("*1\r\n$x\r\n", RILL_EDECODE, "Protocol error: invalid bulk length", 0);
    FAIL_CMD("*1\r\n$01\r\n", RILL_EDECODE, "Protocol error: invalid bulk length", 0);
    FAIL_CMD("*x\r\n", RILL_EDECODE, "Protocol error: invalid multibulk length", 0);
    FAIL_CMD("*1\r\n$1\r\nab\r\n", RILL_EDECODE,
             "Protocol error: bulk string not terminated by CRLF", 0);
    FAIL_CMD("*1\r\n$3\r\nGET\r\nset \"a\"b\r\n", RILL_EDECODE,
             "Protocol error: unbalanced quotes in request", 1);
    FAIL_CMD("PING\r\nset 'a\r\n", RILL_EDECODE, "Protocol error: unbalanced quotes in request", 1);
    FAIL_CMD("*1\n", RILL_EDECODE, "Protocol error: line not terminated by CRLF", 0);
    FAIL_CMD("*1\r\n$\x01\r\n", RILL_EDECODE, "Protocol error: invalid bulk length", 0);
    FAIL_CMD("*1\r\n\x01", RILL_EDECODE, "Protocol error: expected '$', got '\\x01'", 0);
}

Test(resp, limits_match_redis)
{
    struct rill_resp_config small = cmd_cfg;
    small.max_bulk = 10;
    small.max_elements = 3;
    small.max_line = 100;
    expect_failure(&small, "*1\r\n$11\r\n", 9, RILL_ETOOLARGE,
                   "Protocol error: invalid bulk length", 0);
    expect_failure(&small, "*4\r\n", 4, RILL_ETOOLARGE, "Protocol error: invalid multibulk length",
                   0);
    char big[300];
    memset(big, 'a', sizeof(big));
    expect_failure(&small, big, sizeof(big), RILL_ETOOLARGE,
                   "Protocol error: too big inline request", 0);
    big[0] = '*';
    expect_failure(&small, big, sizeof(big), RILL_ETOOLARGE,
                   "Protocol error: too big mbulk count string", 0);
    memcpy(big, "*1\r\n$", 5);
    expect_failure(&small, big, sizeof(big), RILL_ETOOLARGE,
                   "Protocol error: too big bulk count string", 0);
    /* At the limits exactly: accepted. */
    struct rill_embedded *e = codec(&small);
    const char *ok = "*3\r\n$10\r\n0123456789\r\n$0\r\n\r\n$1\r\nx\r\n";
    cr_assert_eq(rill_test_feed(e, ok, strlen(ok)), 1);
    struct rill_resp *r = next_value(e);
    expect_args(r, 3, "0123456789", "", "x");
    rill_resp_release(r);
    rill_embedded_free(e);
    /* Default: Redis's 512 MiB. */
    FAIL_CMD("*1\r\n$536870913\r\n", RILL_ETOOLARGE, "Protocol error: invalid bulk length", 0);
}

Test(resp, depth_limit)
{
    char in[200] = "";
    for (int i = 0; i < 33; i++)
        strcat(in, "*1\r\n");
    strcat(in, ":1\r\n");
    expect_failure(&any_cfg, in, strlen(in), RILL_ETOOLARGE,
                   "Protocol error: nesting deeper than 32 levels", 0);
    struct rill_embedded *e = codec(&any_cfg);
    cr_assert_eq(rill_test_feed(e, in + 4, strlen(in + 4)), 1, "32 levels are fine");
    struct rill_resp *r = next_value(e);
    cr_assert_eq(r->nvals, 33);
    cr_assert_eq(rill_resp_root(r)->len, 33);
    cr_assert_eq(rill_resp_unwrap(rill_resp_at(rill_resp_at(rill_resp_root(r), 0), 0))->n, 1);
    rill_resp_release(r);
    rill_embedded_free(e);
    struct rill_resp_config deep = any_cfg;
    deep.max_depth = 2;
    expect_failure(&deep, "*1\r\n%1\r\n~1\r\n:1\r\n", 16, RILL_ETOOLARGE,
                   "Protocol error: nesting deeper than 2 levels", 0);
}

Test(resp, value_errors)
{
    FAIL_ANY(":1\r\n?x\r\n", RILL_EDECODE, "Protocol error: unknown type byte '?'", 1);
    FAIL_ANY(":12a\r\n", RILL_EDECODE, "Protocol error: invalid integer", 0);
    FAIL_ANY(":9223372036854775808\r\n", RILL_EDECODE, "Protocol error: invalid integer", 0);
    FAIL_ANY(":\r\n", RILL_EDECODE, "Protocol error: invalid integer", 0);
    FAIL_ANY(",1.5x\r\n", RILL_EDECODE, "Protocol error: invalid double", 0);
    FAIL_ANY(",0x10\r\n", RILL_EDECODE, "Protocol error: invalid double", 0);
    FAIL_ANY(",infinity\r\n", RILL_EDECODE, "Protocol error: invalid double", 0);
    FAIL_ANY("#x\r\n", RILL_EDECODE, "Protocol error: invalid boolean", 0);
    FAIL_ANY("_x\r\n", RILL_EDECODE, "Protocol error: invalid null", 0);
    FAIL_ANY("(12a\r\n", RILL_EDECODE, "Protocol error: invalid big number", 0);
    FAIL_ANY("=3\r\ntxt\r\n", RILL_EDECODE, "Protocol error: invalid verbatim string", 0);
    FAIL_ANY("=5\r\ntxt-a\r\n", RILL_EDECODE, "Protocol error: invalid verbatim string", 0);
    FAIL_ANY("$-2\r\n", RILL_EDECODE, "Protocol error: invalid bulk length", 0);
    FAIL_ANY("$?\r\n", RILL_EDECODE, "Protocol error: streamed strings are not supported", 0);
    FAIL_ANY("*?\r\n", RILL_EDECODE, "Protocol error: streamed aggregates are not supported", 0);
    FAIL_ANY("%-1\r\n", RILL_EDECODE, "Protocol error: invalid aggregate length", 0);
    FAIL_ANY("*-2\r\n", RILL_EDECODE, "Protocol error: invalid multibulk length", 0);
    FAIL_ANY("+OK\n", RILL_EDECODE, "Protocol error: line not terminated by CRLF", 0);
    FAIL_ANY("*2\r\n:1\r\n\xff", RILL_EDECODE, "Protocol error: unknown type byte '\\xff'", 0);
    FAIL_ANY("*1\r\n$3\r\nabcd\r\n", RILL_EDECODE,
             "Protocol error: bulk string not terminated by CRLF", 0);
}

Test(resp, no_error_reply_option_and_any_mode_write_nothing)
{
    struct rill_resp_config quiet = cmd_cfg;
    quiet.no_error_reply = true;
    expect_failure(&quiet, "*x\r\n", 4, RILL_EDECODE, "Protocol error: invalid multibulk length",
                   0);
}

Test(resp, input_after_a_failure_is_dropped)
{
    struct rill_embedded *e = codec(&any_cfg);
    rill_test_feed(e, "?\r\n", 3);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_EDECODE);
    cr_assert_eq(rill_test_feed(e, ":1\r\n", 4), RILL_ECLOSED);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    rill_embedded_free(e);
}

Test(resp, large_bulk_over_many_reads)
{
    const size_t n = 3u << 20;
    char *in = malloc(n + 64);
    int h = snprintf(in, 64, "*2\r\n$3\r\nSET\r\n$%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        in[h + i] = (char)('a' + i % 26);
    memcpy(in + h + n, "\r\n", 2);
    size_t len = (size_t)h + n + 2;
    struct rill_embedded *e = codec(&cmd_cfg);
    for (size_t off = 0; off < len; off += 65536) {
        size_t k = len - off < 65536 ? len - off : 65536;
        struct rill_buf *b;
        cr_assert_eq(rill_buf_copy_from(in + off, k, &b), 0);
        rill_embedded_write_inbound(e, &b->msg);
        if (off + k < len)
            cr_assert_eq(rill_embedded_inbound_count(e), 0);
    }
    cr_assert_eq(rill_embedded_inbound_count(e), 1);
    struct rill_resp *r = next_value(e);
    size_t alen;
    const char *a = rill_resp_arg(r, 1, &alen);
    cr_assert_eq(alen, n);
    cr_assert_eq(memcmp(a, in + h, n), 0);
    /* And as a buffer, then re-encoded without a copy. */
    struct rill_buf *out;
    cr_assert_eq(rill_buf_alloc(64, &out), 0);
    cr_assert_eq(rill_resp_encode(&out, r, rill_resp_root(r), 2), 0);
    cr_assert_eq(rill_buf_kind(out), RILL_BUF_COMPOSITE, "a large bulk is not copied");
    rill_resp_release(r);
    cr_assert(buf_equals(out, in, len));
    rill_buf_release(out);
    free(in);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    rill_embedded_free(e);
}

Test(resp, frame_spanning_a_composite_is_copied_once)
{
    /* Two large reads: the frame spans both components of the cumulation. */
    char a[2000], b[2000];
    memset(a, 'x', sizeof(a));
    memset(b, 'y', sizeof(b));
    memcpy(a, "*1\r\n$3000\r\n", 11);
    memcpy(b + 1011, "\r\n+tail\r\n", 9);
    struct rill_embedded *e = codec(&any_cfg);
    struct rill_buf *ba, *bb;
    cr_assert_eq(rill_buf_copy_from(a, sizeof(a), &ba), 0);
    cr_assert_eq(rill_buf_copy_from(b, 1020, &bb), 0);
    rill_embedded_write_inbound(e, &ba->msg);
    cr_assert_eq(rill_embedded_write_inbound(e, &bb->msg), 2);
    struct rill_resp *r = next_value(e);
    const struct rill_resp_val *v = rill_resp_at(rill_resp_root(r), 0);
    cr_assert_eq(v->len, 3000);
    cr_assert_eq(v->str[0], 'x');
    cr_assert_eq(v->str[1988], 'x');
    cr_assert_eq(v->str[1989], 'y');
    cr_assert_eq(v->str[2999], 'y');
    rill_resp_release(r);
    r = next_value(e);
    cr_assert(str_is(rill_resp_root(r), "tail"));
    rill_resp_release(r);
    rill_embedded_free(e);
}

Test(resp, incomplete_value_at_close_is_dropped)
{
    struct rill_embedded *e = codec(&cmd_cfg);
    const char *in = "*2\r\n$3\r\nGET\r\n$5\r\nab";
    rill_test_feed(e, in, strlen(in));
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    rill_embedded_close(e);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    rill_embedded_free(e);
}

Test(resp, removing_the_codec_hands_over_undecoded_bytes)
{
    struct rill_embedded *e = codec(&cmd_cfg);
    const char *in = "PING\r\n*1\r\n$4\r\nPI";
    rill_test_feed(e, in, strlen(in));
    struct rill_resp *r = next_value(e);
    expect_args(r, 1, "PING");
    rill_resp_release(r);
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "resp"), 0);
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_not_null(m);
    char *s = rill_test_buf_str(rill_buf_from_msg(m));
    cr_assert_str_eq(s, "*1\r\n$4\r\nPI");
    free(s);
    rill_msg_release(m);
    rill_embedded_free(e);
}
