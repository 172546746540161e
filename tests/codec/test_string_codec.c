/* Tests for string messages and the string codec
 * (include/rill/string_codec.h): constructors and accessors, the decoder
 * (buffers of every kind to strings, UTF-8 validation at every boundary
 * of the standard's table, the error's code and text, closing or keeping
 * the channel), the encoder (bytes, line separators, large strings
 * appended without a copy), and a line protocol pipeline end to end. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/composite.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/pipeline.h"
#include "rill/string_codec.h"
#include "util/feed.h"
#include "util/testutil.h"

#include "framing_test.h"

TestSuite(string_codec, .timeout = 30, .fini = rill_test_no_leaks);

/* ---- string messages ---- */

Test(string_codec, string_from_a_c_string)
{
    struct rill_string *s;
    cr_assert_eq(rill_string_new("hello", &s), 0);
    cr_assert_eq(rill_string_msg(s)->type, RILL_MSG_STRING);
    cr_assert_eq(rill_string_len(s), 5);
    cr_assert_str_eq(rill_string_data(s), "hello");
    cr_assert_eq(rill_string_from_msg(rill_string_msg(s)), s);
    cr_assert(rill_string_release(s));

    cr_assert_eq(rill_string_new("", &s), 0);
    cr_assert_eq(rill_string_len(s), 0);
    cr_assert_str_eq(rill_string_data(s), "");
    rill_string_release(s);
    cr_assert_eq(rill_string_new(NULL, &s), -EINVAL);
}

Test(string_codec, string_from_bytes_keeps_nuls_and_adds_one)
{
    struct rill_string *s;
    cr_assert_eq(rill_string_from_bytes("a\0b", 3, &s), 0);
    cr_assert_eq(rill_string_len(s), 3);
    cr_assert_eq(memcmp(rill_string_data(s), "a\0b\0", 4), 0);
    rill_string_release(s);
    cr_assert_eq(rill_string_from_bytes(NULL, 0, &s), 0);
    cr_assert_eq(rill_string_len(s), 0);
    cr_assert_eq(rill_string_data(s)[0], '\0');
    rill_string_release(s);
    cr_assert_eq(rill_string_from_bytes(NULL, 1, &s), -EINVAL);
}

static int vp(struct rill_string **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = rill_string_vprintf(out, fmt, ap);
    va_end(ap);
    return rc;
}

Test(string_codec, string_printf)
{
    struct rill_string *s;
    cr_assert_eq(rill_string_printf(&s, "+%s %d %05.1f", "OK", -42, 3.14159), 0);
    cr_assert_str_eq(rill_string_data(s), "+OK -42 003.1");
    cr_assert_eq(rill_string_len(s), strlen("+OK -42 003.1"));
    rill_string_release(s);

    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(vp(&s, "[%s]", big), 0);
    cr_assert_eq(rill_string_len(s), sizeof(big) + 1);
    cr_assert_eq(rill_string_data(s)[0], '[');
    cr_assert_eq(rill_string_data(s)[sizeof(big)], ']');
    cr_assert_eq(rill_string_data(s)[sizeof(big) + 1], '\0');
    rill_string_release(s);
}

Test(string_codec, from_msg_refuses_other_messages)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from("x", 1, &b), 0);
    cr_assert_null(rill_string_from_msg(rill_buf_msg(b)));
    cr_assert_null(rill_string_from_msg(NULL));
    rill_buf_release(b);
}

/* ---- decoder ---- */

static struct rill_embedded *dec(const struct rill_string_decoder_config *c, struct catcher *cat)
{
    return emb(&rill_string_decoder, c, cat);
}

/* Pop one message and check it is a string holding exactly @p, @n. */
static void expect_string(struct rill_embedded *e, const void *p, size_t n)
{
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_not_null(m, "no message");
    struct rill_string *s = rill_string_from_msg(m);
    cr_assert_not_null(s, "not a string (type %u)", m->type);
    cr_assert_eq(rill_string_len(s), n, "length %zu, want %zu", rill_string_len(s), n);
    cr_assert_eq(memcmp(rill_string_data(s), p, n), 0);
    cr_assert_eq(rill_string_data(s)[n], '\0');
    rill_string_release(s);
}

Test(string_codec, decoder_turns_each_buffer_into_a_string)
{
    struct catcher cat;
    struct rill_embedded *e = dec(NULL, &cat);
    rill_test_feed(e, "first", 5);
    rill_embedded_write_inbound(e, rill_buf_msg(rill_test_guard_buf("", 0)));
    rill_test_feed(e, "with\0nul", 8);
    expect_string(e, "first", 5);
    expect_string(e, "", 0);
    expect_string(e, "with\0nul", 8);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    cr_assert_eq(cat.n, 0);
    finish(e);
}

/* Every kind of buffer: a slice, a composite whose bytes span components,
 * a buffer with consumed bytes before its reader index. */
Test(string_codec, decoder_reads_any_kind_of_buffer)
{
    struct catcher cat;
    struct rill_embedded *e = dec(NULL, &cat);
    struct rill_buf *a, *b, *c, *s;
    cr_assert_eq(rill_buf_copy_from("xxhello", 7, &a), 0);
    cr_assert_eq(rill_buf_skip(a, 2), 0);
    rill_embedded_write_inbound(e, rill_buf_msg(a));
    cr_assert_eq(rill_buf_copy_from("0123456789", 10, &a), 0);
    cr_assert_eq(rill_buf_slice(a, 3, 4, &s), 0);
    rill_buf_release(a);
    rill_embedded_write_inbound(e, rill_buf_msg(s));
    cr_assert_eq(rill_buf_composite_new(&c), 0);
    cr_assert_eq(rill_buf_copy_from("spl", 3, &a), 0);
    cr_assert_eq(rill_buf_copy_from("it", 2, &b), 0);
    cr_assert_eq(rill_buf_composite_add(c, a), 0);
    cr_assert_eq(rill_buf_composite_add(c, b), 0);
    rill_embedded_write_inbound(e, rill_buf_msg(c));
    expect_string(e, "hello", 5);
    expect_string(e, "3456", 4);
    expect_string(e, "split", 5);
    finish(e);
}

Test(string_codec, decoder_passes_other_messages)
{
    struct catcher cat;
    struct rill_embedded *e = dec(NULL, &cat);
    struct rill_string *s;
    cr_assert_eq(rill_string_new("already", &s), 0);
    rill_embedded_write_inbound(e, rill_string_msg(s));
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_eq(m, rill_string_msg(s));
    rill_msg_release(m);
    finish(e);
}

/* Valid UTF-8 at the edges of every row of the standard's table 3-7:
 * U+0000..U+007F, U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF,
 * U+10000, U+10FFFF, and ASCII runs long enough for the 8-byte path. */
Test(string_codec, decoder_accepts_valid_utf8)
{
    static const char *valid[] = {
        "",
        "plain ascii, long enough for the eight-byte path",
        "\x7f",
        "\xc2\x80",
        "\xdf\xbf",
        "\xe0\xa0\x80",
        "\xe1\x80\x80",
        "\xec\xbf\xbf",
        "\xed\x80\x80",
        "\xed\x9f\xbf",
        "\xee\x80\x80",
        "\xef\xbf\xbf",
        "\xf0\x90\x80\x80",
        "\xf1\x80\x80\x80",
        "\xf3\xbf\xbf\xbf",
        "\xf4\x80\x80\x80",
        "\xf4\x8f\xbf\xbf",
        ("Gr\xc3\xbc\xc3\x9f"
         "e, \xe4\xb8\x96\xe7\x95\x8c, \xf0\x9f\x98\x80 and 12345678"),
    };
    struct rill_string_decoder_config c = { .validate_utf8 = true };
    struct catcher cat;
    struct rill_embedded *e = dec(&c, &cat);
    for (size_t i = 0; i < RILL_ARRAY_SIZE(valid); i++) {
        rill_embedded_write_inbound(e,
                                    rill_buf_msg(rill_test_guard_buf(valid[i], strlen(valid[i]))));
        expect_string(e, valid[i], strlen(valid[i]));
    }
    cr_assert_eq(cat.n, 0);
    cr_assert(rill_embedded_is_open(e));
    finish(e);
}

struct bad {
    const char *s;
    size_t at; /* offset of the first bad sequence */
};

/* Invalid forms: stray continuation bytes, bytes that never occur, overlong
 * forms, surrogates, code points over U+10FFFF, truncated sequences. */
static const struct bad bad_utf8[] = {
    { "\x80", 0 },
    { "ab\xbf", 2 },
    { "\xc0\xaf", 0 },
    { "\xc1\xbf", 0 },
    { "\xe0\x9f\xbf", 0 },
    { "\xf0\x8f\xbf\xbf", 0 },
    { "\xed\xa0\x80", 0 },
    { "\xed\xbf\xbf", 0 },
    { "\xf4\x90\x80\x80", 0 },
    { "\xf5\x80\x80\x80", 0 },
    { "\xff", 0 },
    { "\xfe", 0 },
    { "\xe2\x82", 0 },
    { "ok \xf0\x9f\x98", 3 },
    { "\xc3", 0 },
    { "\xe2\x28\xa1", 0 },
    { "\xc3\xbc\xc3(", 2 },
    { "0123456789abcdef\x80", 16 },
    { "0123456\xff"
      "89abcdef",
      7 },
    { "\x80"
      "1234567",
      0 },
    { "01234567\xf0\x90\x80\x41", 8 },
};

Test(string_codec, decoder_rejects_invalid_utf8_and_closes)
{
    struct rill_string_decoder_config c = { .validate_utf8 = true };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(bad_utf8); i++) {
        const struct bad *b = &bad_utf8[i];
        size_t n = strlen(b->s);
        struct catcher cat;
        struct rill_embedded *e = dec(&c, &cat);
        rill_test_feed(e, "before", 6);
        rill_test_feed(e, b->s, n);
        cr_assert_eq(cat.n, 1, "case %zu", i);
        cr_assert_eq(cat.err, RILL_EDECODE);
        char want[128];
        snprintf(want, sizeof(want), "invalid UTF-8 at byte %zu of %zu (0x%02x): string dropped",
                 b->at, n, (unsigned)(uint8_t)b->s[b->at]);
        cr_assert_str_eq(cat.why, want, "case %zu: \"%s\"", i, cat.why);
        cr_assert_not(rill_embedded_is_open(e), "case %zu: still open", i);
        cr_assert_eq(rill_test_feed(e, "after", 5), RILL_ECLOSED);
        expect_string(e, "before", 6);
        cr_assert_eq(rill_embedded_inbound_count(e), 0, "case %zu: the bad string went on", i);
        finish(e);
    }
}

/* Later input in the same batch of reads is dropped once the channel is
 * closing. */
Test(string_codec, decoder_drops_input_after_an_error)
{
    struct rill_string_decoder_config c = { .validate_utf8 = true };
    struct catcher cat;
    struct rill_embedded *e = dec(&c, &cat);
    struct rill_msg *v[3] = { bufmsg("ok", 2), bufmsg("\xff", 1), bufmsg("late", 4) };
    rill_embedded_write_inbound_n(e, v, 3);
    cr_assert_eq(cat.n, 1);
    expect_string(e, "ok", 2);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    finish(e);
}

Test(string_codec, decoder_keeps_going_when_kept_open)
{
    struct rill_string_decoder_config c = { .validate_utf8 = true, .keep_open_on_error = true };
    struct catcher cat;
    struct rill_embedded *e = dec(&c, &cat);
    for (size_t i = 0; i < RILL_ARRAY_SIZE(bad_utf8); i++)
        rill_test_feed(e, bad_utf8[i].s, strlen(bad_utf8[i].s));
    rill_test_feed(e, "fine", 4);
    cr_assert_eq(cat.n, (int)RILL_ARRAY_SIZE(bad_utf8));
    cr_assert(rill_embedded_is_open(e));
    expect_string(e, "fine", 4);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    finish(e);
}

Test(string_codec, decoder_without_validation_takes_any_bytes)
{
    struct catcher cat;
    struct rill_embedded *e = dec(NULL, &cat);
    rill_test_feed(e, "\xff\xfe\xc0\xaf", 4);
    expect_string(e, "\xff\xfe\xc0\xaf", 4);
    cr_assert_eq(cat.n, 0);
    finish(e);
}

/* ---- encoder ---- */

static struct rill_msg *str(const char *s)
{
    struct rill_string *m;
    cr_assert_eq(rill_string_new(s, &m), 0);
    return rill_string_msg(m);
}

static void expect_out(struct rill_embedded *e, const void *p, size_t n)
{
    struct rill_buf *b = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_not_null(b, "no buffer written");
    cr_assert_eq(rill_buf_readable(b), n, "%zu bytes, want %zu", rill_buf_readable(b), n);
    cr_assert(rill_buf_equal_bytes(b, rill_buf_reader_index(b), p, n));
    rill_buf_release(b);
}

Test(string_codec, encoder_writes_the_bytes)
{
    struct rill_embedded *e = enc(&rill_string_encoder, NULL);
    cr_assert_eq(rill_embedded_write_outbound(e, str("text")), 1);
    cr_assert_eq(rill_embedded_write_outbound(e, str("")), 2);
    expect_out(e, "text", 4);
    expect_out(e, "", 0);
    finish(e);
}

Test(string_codec, encoder_line_separators)
{
    struct rill_string_encoder_config crlf = { .line_sep = RILL_LINE_SEP_CRLF };
    struct rill_embedded *e = enc(&rill_string_encoder, &crlf);
    rill_embedded_write_outbound(e, str("+OK"));
    rill_embedded_write_outbound(e, str(""));
    expect_out(e, "+OK\r\n", 5);
    expect_out(e, "\r\n", 2);
    finish(e);
    struct rill_string_encoder_config lf = { .line_sep = RILL_LINE_SEP_LF };
    e = enc(&rill_string_encoder, &lf);
    rill_embedded_write_outbound(e, str("line"));
    expect_out(e, "line\n", 5);
    finish(e);
}

/* A large string goes out as a component over the string's own bytes
 * (the buffer keeps the string alive), then the separator. */
Test(string_codec, encoder_appends_large_strings_without_copying)
{
    char *big = malloc(10001);
    memset(big, 's', 10000);
    big[10000] = '\0';
    struct rill_string *s;
    cr_assert_eq(rill_string_new(big, &s), 0);
    struct rill_string_encoder_config crlf = { .line_sep = RILL_LINE_SEP_CRLF };
    struct rill_embedded *e = enc(&rill_string_encoder, &crlf);
    cr_assert_eq(rill_embedded_write_outbound(e, rill_string_msg(s)), 1);
    struct rill_buf *b = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_kind(b), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_readable(b), 10002);
    struct iovec iov[4];
    int n = rill_buf_iovec(b, rill_buf_reader_index(b), 10002, iov, 4, NULL);
    cr_assert_eq(n, 2);
    cr_assert_eq(iov[0].iov_base, (void *)rill_string_data(s), "the string was copied");
    cr_assert_eq(iov[0].iov_len, 10000);
    cr_assert(rill_buf_equal_bytes(b, rill_buf_reader_index(b) + 10000, "\r\n", 2));
    rill_buf_release(b); /* releases the string too */
    finish(e);
    free(big);
}

Test(string_codec, encoder_passes_other_messages)
{
    struct rill_embedded *e = enc(&rill_string_encoder, NULL);
    struct rill_msg *m = bufmsg("raw", 3);
    cr_assert_eq(rill_embedded_write_outbound(e, m), 1);
    cr_assert_eq(rill_embedded_read_outbound(e), m);
    rill_msg_release(m);
    finish(e);
}

Test(string_codec, encoder_refuses_an_unknown_separator)
{
    struct rill_string_encoder_config c = { .line_sep = (enum rill_line_sep)3 };
    cr_assert_eq(add_rc(&rill_string_encoder, &c), -EINVAL);
}

/* ---- a line protocol: line decoder, string decoder, string encoder ---- */

/* Answers each line with its length. */
static void answer(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_string *s = rill_string_from_msg(msg);
    cr_assert_not_null(s);
    struct rill_string *r;
    cr_assert_eq(rill_string_printf(&r, "%zu:%s", rill_string_len(s), rill_string_data(s)), 0);
    rill_string_release(s);
    rill_ctx_write_and_flush(ctx, rill_string_msg(r), NULL);
}

static const struct rill_handler answerer = { .name = "answerer", .read = answer };

Test(string_codec, line_protocol_end_to_end)
{
    struct rill_string_encoder_config crlf = { .line_sep = RILL_LINE_SEP_CRLF };
    struct rill_string_decoder_config utf8 = { .validate_utf8 = true };
    struct rill_embedded_handler hs[] = {
        { "lines", &rill_line_decoder, NULL },
        { "text-in", &rill_string_decoder, &utf8 },
        { "text-out", &rill_string_encoder, &crlf },
        { "app", &answerer, NULL },
    };
    struct rill_embedded *e;
    cr_assert_eq(rill_embedded_new(hs, 4, &e), 0);
    static const char in[] = "hello\r\nw\xc3\xb6rld\n\r\n";
    for (size_t at = 0; at <= sizeof(in) - 1; at++) {
        rill_test_feed_split(e, in, sizeof(in) - 1, at);
        expect_out(e, "5:hello\r\n", 9);
        expect_out(e, "6:w\xc3\xb6rld\r\n", 10);
        expect_out(e, "0:\r\n", 4);
        cr_assert_eq(rill_embedded_outbound_count(e), 0);
    }
    finish(e);
}
