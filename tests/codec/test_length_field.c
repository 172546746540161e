/* Tests for the length-field decoder and prepender (include/rill/framing.h):
 * Netty's documented layouts, every field size and byte order, every way
 * of splitting the input into reads, zero-copy frames, each error with its
 * code and text, discarding of frames over the limit (fail-fast or not,
 * closing or keeping the channel), and the prepender's output byte for
 * byte, its limits and its zero-copy payload. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/composite.h"
#include "rill/decoder.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/future.h"
#include "rill/pipeline.h"
#include "rill/string_codec.h"
#include "util/feed.h"
#include "util/testutil.h"

#include "framing_test.h"

TestSuite(length_field, .timeout = 30, .fini = rill_test_no_leaks);

/* ---- decoder: layouts (the examples of Netty's javadoc) ---- */

Test(length_field, null_config_is_a_4_byte_big_endian_length_kept_in_the_frame)
{
    static const char in[] = "\0\0\0\3abc\0\0\0\0\0\0\0\1z";
    struct frame want[] = { F("\0\0\0\3abc"), F("\0\0\0\0"), F("\0\0\0\1z") };
    run_ok(&rill_length_field_decoder, NULL, in, sizeof(in) - 1, want, 3);
}

Test(length_field, two_byte_length_header_kept)
{
    struct rill_length_field_config c = { .length_field_size = 2 };
    static const char in[] = "\x00\x0cHELLO, WORLD\x00\x02hi";
    struct frame want[] = { F("\x00\x0cHELLO, WORLD"), F("\x00\x02hi") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 2);
}

Test(length_field, two_byte_length_header_stripped)
{
    struct rill_length_field_config c = { .length_field_size = 2, .initial_bytes_to_strip = 2 };
    static const char in[] = "\x00\x0cHELLO, WORLD\x00\x00\x00\x02hi";
    struct frame want[] = { F("HELLO, WORLD"), F(""), F("hi") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 3);
}

Test(length_field, length_counts_the_whole_frame)
{
    struct rill_length_field_config c = { .length_field_size = 2, .length_adjustment = -2 };
    static const char in[] = "\x00\x0eHELLO, WORLD\x00\x02";
    struct frame want[] = { F("\x00\x0eHELLO, WORLD"), F("\x00\x02") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 2);
}

Test(length_field, three_byte_length_at_the_end_of_a_five_byte_header)
{
    struct rill_length_field_config c = { .length_field_offset = 2, .length_field_size = 3 };
    static const char in[] = "\xca\xfe\x00\x00\x0cHELLO, WORLD";
    struct frame want[] = { F("\xca\xfe\x00\x00\x0cHELLO, WORLD") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 1);
}

Test(length_field, three_byte_length_at_the_start_of_a_five_byte_header)
{
    struct rill_length_field_config c = { .length_field_size = 3, .length_adjustment = 2 };
    static const char in[] = "\x00\x00\x0c\xca\xfeHELLO, WORLD";
    struct frame want[] = { F("\x00\x00\x0c\xca\xfeHELLO, WORLD") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 1);
}

Test(length_field, offset_adjustment_and_strip_together)
{
    struct rill_length_field_config c = { .length_field_offset = 1,
                                          .length_field_size = 2,
                                          .length_adjustment = 1,
                                          .initial_bytes_to_strip = 3 };
    static const char in[] = "\xca\x00\x0c\xfeHELLO, WORLD\x01\x00\x00\x02";
    struct frame want[] = { F("\xfeHELLO, WORLD"), F("\x02") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 2);
}

Test(length_field, length_counting_the_whole_frame_with_a_header_before_it)
{
    struct rill_length_field_config c = { .length_field_offset = 1,
                                          .length_field_size = 2,
                                          .length_adjustment = -3,
                                          .initial_bytes_to_strip = 3 };
    static const char in[] = "\xca\x00\x10\xfeHELLO, WORLD";
    struct frame want[] = { F("\xfeHELLO, WORLD") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 1);
}

/* Every field size in both byte orders: two frames of 3 and 0 bytes. */
Test(length_field, every_field_size_in_both_byte_orders)
{
    unsigned sizes[] = { 1, 2, 3, 4, 8 };
    for (size_t k = 0; k < RILL_ARRAY_SIZE(sizes); k++) {
        for (int le = 0; le <= 1; le++) {
            unsigned n = sizes[k];
            uint8_t in[2 * 8 + 3] = { 0 };
            /* value 3 then value 0 */
            in[le ? 0 : n - 1] = 3;
            memcpy(in + n, "xyz", 3);
            size_t len = 2 * n + 3;
            struct rill_length_field_config c = { .length_field_size = n,
                                                  .little_endian = le,
                                                  .initial_bytes_to_strip = n };
            struct frame want[] = { F("xyz"), F("") };
            run_ok(&rill_length_field_decoder, &c, in, len, want, 2);
        }
    }
}

/* The value is read with all its bytes in the right order (not just the
 * low one): 0x010203 in 3 bytes. */
Test(length_field, multi_byte_values_in_both_byte_orders)
{
    size_t body = 0x010203;
    uint8_t *in = calloc(1, body + 3);
    cr_assert_not_null(in);
    for (int le = 0; le <= 1; le++) {
        memcpy(in, le ? "\x03\x02\x01" : "\x01\x02\x03", 3);
        in[3] = 'a';
        in[body + 2] = 'z';
        struct rill_length_field_config c = { .length_field_size = 3,
                                              .little_endian = le,
                                              .initial_bytes_to_strip = 3,
                                              .max_frame_length = body + 3 };
        struct catcher cat;
        struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
        rill_test_feed_split(e, in, body + 3, 1000);
        struct frame want[] = { { (const char *)in + 3, body } };
        expect_frames(e, want, 1, le ? "little-endian" : "big-endian");
        cr_assert_eq(cat.n, 0);
        finish(e);
    }
    free(in);
}

Test(length_field, zero_field_size_means_four)
{
    struct rill_length_field_config c = { .initial_bytes_to_strip = 4 };
    static const char in[] = "\0\0\0\2hi";
    struct frame want[] = { F("hi") };
    run_ok(&rill_length_field_decoder, &c, in, sizeof(in) - 1, want, 1);
}

/* A frame inside one read is a view of that read's own memory. */
Test(length_field, frames_are_views_of_the_bytes_read)
{
    static char mem[] = "\0\3abc\0\2de\0\0";
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, sizeof(mem) - 1, sizeof(mem) - 1, NULL, NULL, &b), 0);
    struct rill_length_field_config c = { .length_field_size = 2, .initial_bytes_to_strip = 2 };
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
    cr_assert_eq(rill_embedded_write_inbound(e, rill_buf_msg(b)), 3);
    const size_t at[] = { 2, 7, 11 };
    for (size_t i = 0; i < 3; i++) {
        struct rill_buf *f = rill_buf_from_msg(rill_embedded_read_inbound(e));
        cr_assert_eq(rill_buf_kind(f), RILL_BUF_SLICE);
        size_t n;
        const uint8_t *p = rill_buf_read_ptr(f, &n);
        if (n)
            cr_assert_eq(p, (uint8_t *)mem + at[i], "frame %zu is not a view of the input", i);
        rill_buf_release(f);
    }
    finish(e);
}

/* ---- decoder: errors ---- */

static void run_err(const struct rill_length_field_config *c, const void *in, size_t len,
                    const struct frame *frames, size_t n, int err, const char *why)
{
    struct expect x = { .frames = frames, .n = n, .nerr = 1, .err = err, .why = why };
    run_every_split(&rill_length_field_decoder, c, in, len, &x);
}

Test(length_field, eight_byte_value_over_int64_max_fails)
{
    struct rill_length_field_config c = { .length_field_size = 8, .initial_bytes_to_strip = 8 };
    static const char in[] = "\0\0\0\0\0\0\0\1x\x80\0\0\0\0\0\0\0abc";
    struct frame want[] = { F("x") };
    run_err(&c, in, sizeof(in) - 1, want, 1, RILL_EDECODE,
            "length field value 9223372036854775808 with adjustment 0 overflows");
}

Test(length_field, adjustment_that_overflows_fails)
{
    struct rill_length_field_config c = { .length_field_size = 8, .length_adjustment = 1 };
    static const char in[] = "\x7f\xff\xff\xff\xff\xff\xff\xff";
    run_err(&c, in, sizeof(in) - 1, NULL, 0, RILL_EDECODE,
            "length field value 9223372036854775807 with adjustment 1 overflows");
}

Test(length_field, length_below_the_header_fails)
{
    struct rill_length_field_config c = { .length_field_offset = 1,
                                          .length_field_size = 2,
                                          .length_adjustment = -6 };
    static const char in[] = "h\0\5";
    run_err(&c, in, sizeof(in) - 1, NULL, 0, RILL_EDECODE,
            "frame length 2 (length field 5, adjustment -6) is less than the length field's end "
            "offset 3");
}

Test(length_field, frame_shorter_than_the_bytes_to_strip_fails)
{
    struct rill_length_field_config c = { .length_field_size = 1, .initial_bytes_to_strip = 4 };
    static const char in[] = "\3abc\2de";
    struct frame want[] = { F("") };
    run_err(&c, in, sizeof(in) - 1, want, 1, RILL_EDECODE,
            "frame length 3 is less than the initial bytes to strip (4)");
}

/* Not fail-fast: the raise comes once the whole frame went by, and the
 * frames before it are delivered first. */
Test(length_field, frame_over_the_limit_closes_after_it_was_discarded)
{
    struct rill_length_field_config c = { .length_field_size = 1,
                                          .initial_bytes_to_strip = 1,
                                          .max_frame_length = 8 };
    static const char in[] = "\2ok\n0123456789\1z";
    struct frame want[] = { F("ok") };
    run_err(&c, in, sizeof(in) - 1, want, 1, RILL_ETOOLARGE,
            "frame of 11 bytes exceeds the limit of 8; discarded");

    /* Nothing is reported while the frame is still arriving. */
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
    rill_test_feed(e, in, 8);
    cr_assert_eq(cat.n, 0);
    cr_assert(rill_embedded_is_open(e));
    rill_test_feed(e, in + 8, 6);
    cr_assert_eq(cat.n, 1);
    cr_assert_not(rill_embedded_is_open(e));
    expect_frames(e, want, 1, "pieces");
    finish(e);
}

Test(length_field, frame_over_the_limit_fails_fast)
{
    struct rill_length_field_config c = { .length_field_size = 1,
                                          .initial_bytes_to_strip = 1,
                                          .max_frame_length = 8,
                                          .fail_fast = true };
    static const char in[] = "\2ok\n0123456789\1z";
    struct frame want[] = { F("ok") };
    /* The text depends on whether the frame had arrived whole when its
     * length was read: check the two cases apart. */
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
    rill_test_feed(e, in, 4);
    cr_assert_eq(cat.n, 1);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    cr_assert_str_eq(cat.why, "frame of 11 bytes exceeds the limit of 8; discarding it");
    cr_assert_not(rill_embedded_is_open(e));
    expect_frames(e, want, 1, "fail fast");
    finish(e);

    struct expect x = { .frames = want,
                        .n = 1,
                        .nerr = 1,
                        .err = RILL_ETOOLARGE,
                        .why = "frame of 11 bytes exceeds the limit of 8; discarded" };
    run_case(&rill_length_field_decoder, &c, in, sizeof(in) - 1, WHOLE, 0, 0, &x);
}

/* Kept open: decoding goes on after the discarded frame, one exception per
 * bad frame, however the input is cut. */
Test(length_field, frame_over_the_limit_is_skipped_when_kept_open)
{
    for (int ff = 0; ff <= 1; ff++) {
        struct rill_length_field_config c = { .dec.keep_open_on_error = true,
                                              .length_field_size = 1,
                                              .initial_bytes_to_strip = 1,
                                              .max_frame_length = 8,
                                              .fail_fast = ff };
        static const char in[] = "\2ok\n0123456789\1z\tabcdefghi\3end";
        struct frame want[] = { F("ok"), F("z"), F("end") };
        for (size_t at = 0; at <= sizeof(in) - 1; at++) {
            struct catcher cat;
            struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
            rill_test_feed_split(e, in, sizeof(in) - 1, at);
            expect_frames(e, want, 3, "kept open");
            cr_assert_eq(cat.n, 2, "split %zu: %d exceptions", at, cat.n);
            cr_assert_eq(cat.err, RILL_ETOOLARGE);
            cr_assert(strstr(cat.why, "frame of 10 bytes exceeds the limit of 8"), "%s", cat.why);
            cr_assert(rill_embedded_is_open(e));
            finish(e);
        }
    }
}

/* Discarded bytes are skipped as they arrive, never held. */
Test(length_field, discarded_frames_are_not_cumulated)
{
    struct rill_length_field_config c = { .dec.keep_open_on_error = true,
                                          .length_field_size = 4,
                                          .initial_bytes_to_strip = 4,
                                          .max_frame_length = 1024 };
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
    struct rill_decoder *d = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e), "dec"));
    static const char hdr[] = "\0\1\0\0"; /* 65536 */
    rill_test_feed(e, hdr, 4);
    static char chunk[4096];
    for (int i = 0; i < 16; i++) {
        rill_test_feed(e, chunk, sizeof(chunk));
        cr_assert_eq(rill_decoder_pending(d), 0);
    }
    cr_assert_eq(cat.n, 1);
    cr_assert_str_eq(cat.why, "frame of 65540 bytes exceeds the limit of 1024; discarded");
    rill_test_feed(e, "\0\0\0\2ok", 6);
    struct frame want[] = { F("ok") };
    expect_frames(e, want, 1, "after discarding");
    finish(e);
}

/* The cumulation limit follows a frame limit above the base's default. */
Test(length_field, frames_above_one_mebibyte_fit_by_default)
{
    size_t body = (size_t)3 << 19; /* 1.5 MiB */
    uint8_t *in = malloc(body + 4);
    cr_assert_not_null(in);
    memcpy(in, "\0\x18\0\0", 4);
    memset(in + 4, 'q', body);
    struct rill_length_field_config c = { .max_frame_length = 2 << 20,
                                          .initial_bytes_to_strip = 4 };
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
    for (size_t off = 0; off < body + 4; off += 65536) {
        size_t n = body + 4 - off < 65536 ? body + 4 - off : 65536;
        rill_test_feed(e, in + off, n);
    }
    struct frame want[] = { { (const char *)in + 4, body } };
    expect_frames(e, want, 1, "1.5 MiB");
    cr_assert_eq(cat.n, 0);

    /* An explicit limit is kept: the same frame overflows it. */
    struct rill_length_field_config c2 = c;
    c2.dec.max_cumulation = 1 << 20;
    struct rill_embedded *e2 = emb(&rill_length_field_decoder, &c2, &cat);
    for (size_t off = 0; off < body + 4; off += 65536)
        rill_test_feed(e2, in + off, body + 4 - off < 65536 ? body + 4 - off : 65536);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    cr_assert_not(rill_embedded_is_open(e2));
    finish(e2);
    finish(e);
    free(in);
}

Test(length_field, leftovers_at_the_end_are_dropped_quietly)
{
    struct rill_length_field_config c = { .length_field_size = 2 };
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
    rill_test_feed(e, "\0\5abc", 5);
    rill_embedded_close(e);
    cr_assert_eq(rill_embedded_inbound_count(e), 0);
    cr_assert_eq(cat.n, 0);
    finish(e);
}

Test(length_field, messages_that_are_not_buffers_pass)
{
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, NULL, &cat);
    struct rill_string *s;
    cr_assert_eq(rill_string_new("note", &s), 0);
    cr_assert_eq(rill_embedded_write_inbound(e, rill_string_msg(s)), 1);
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_eq(m, rill_string_msg(s));
    rill_msg_release(m);
    finish(e);
}

Test(length_field, invalid_configs_are_refused)
{
    struct rill_length_field_config c = { .length_field_size = 5 };
    cr_assert_eq(add_rc(&rill_length_field_decoder, &c), -EINVAL);
    c = (struct rill_length_field_config){ .length_field_size = 9 };
    cr_assert_eq(add_rc(&rill_length_field_decoder, &c), -EINVAL);
    c = (struct rill_length_field_config){ .length_field_offset = 7, .max_frame_length = 10 };
    cr_assert_eq(add_rc(&rill_length_field_decoder, &c), -EINVAL);
    c = (struct rill_length_field_config){ .length_field_offset = 6, .max_frame_length = 10 };
    cr_assert_eq(add_rc(&rill_length_field_decoder, &c), 0);
    c = (struct rill_length_field_config){ .length_field_size = 8, .max_frame_length = 4 };
    cr_assert_eq(add_rc(&rill_length_field_decoder, &c), -EINVAL);
    c = (struct rill_length_field_config){ .initial_bytes_to_strip = 11, .max_frame_length = 10 };
    cr_assert_eq(add_rc(&rill_length_field_decoder, &c), -EINVAL);
    c = (struct rill_length_field_config){ .max_frame_length = (size_t)INT64_MAX + 1 };
    cr_assert_eq(add_rc(&rill_length_field_decoder, &c), -EINVAL);
}

/* The config is copied: a temporary may go away after the add. */
Test(length_field, config_is_copied_when_added)
{
    struct rill_length_field_config *c = malloc(sizeof(*c));
    *c = (struct rill_length_field_config){ .length_field_size = 1, .initial_bytes_to_strip = 1 };
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, c, &cat);
    memset(c, 0xff, sizeof(*c));
    free(c);
    rill_test_feed(e, "\2hi", 3);
    struct frame want[] = { F("hi") };
    expect_frames(e, want, 1, "after free");
    finish(e);
}

/* ---- prepender ---- */

/* Write @n bytes through a prepender with @cfg and compare the output. */
static void expect_prepended(const void *cfg, const void *payload, size_t n, const void *want,
                             size_t wlen)
{
    struct rill_embedded *e = enc(&rill_length_field_prepender, cfg);
    cr_assert_eq(rill_embedded_write_outbound(e, bufmsg(payload, n)), 1);
    struct rill_buf *out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_not_null(out);
    cr_assert_eq(rill_buf_readable(out), wlen, "%zu bytes, want %zu", rill_buf_readable(out), wlen);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), want, wlen));
    rill_buf_release(out);
    finish(e);
}

Test(length_field, prepender_null_config_is_a_4_byte_big_endian_payload_length)
{
    expect_prepended(NULL, "abc", 3, "\0\0\0\3abc", 7);
    expect_prepended(NULL, "", 0, "\0\0\0\0", 4);
}

Test(length_field, prepender_every_field_size_and_byte_order)
{
    struct {
        unsigned size;
        bool le;
        const char *want;
        size_t wlen;
    } cases[] = {
        { 1, false, "\x05hello", 6 },
        { 2, false, "\x00\x05hello", 7 },
        { 2, true, "\x05\x00hello", 7 },
        { 3, false, "\x00\x00\x05hello", 8 },
        { 3, true, "\x05\x00\x00hello", 8 },
        { 4, true, "\x05\x00\x00\x00hello", 9 },
        { 8, false, "\x00\x00\x00\x00\x00\x00\x00\x05hello", 13 },
        { 8, true, "\x05\x00\x00\x00\x00\x00\x00\x00hello", 13 },
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        struct rill_length_prepender_config c = { .length_field_size = cases[i].size,
                                                  .little_endian = cases[i].le };
        expect_prepended(&c, "hello", 5, cases[i].want, cases[i].wlen);
    }
}

Test(length_field, prepender_adjustment_and_field_inclusion)
{
    struct rill_length_prepender_config c = { .length_field_size = 2,
                                              .length_includes_field = true };
    expect_prepended(&c, "hello", 5, "\x00\x07hello", 7);
    c.length_adjustment = 3;
    expect_prepended(&c, "hello", 5, "\x00\x0ahello", 7);
    c = (struct rill_length_prepender_config){ .length_field_size = 2, .length_adjustment = -5 };
    expect_prepended(&c, "hello", 5, "\x00\x00hello", 7);
}

Test(length_field, prepender_multi_byte_lengths)
{
    size_t n = 0x010203;
    uint8_t *p = calloc(1, n);
    struct rill_length_prepender_config c = { .length_field_size = 3 };
    struct rill_embedded *e = enc(&rill_length_field_prepender, &c);
    cr_assert_eq(rill_embedded_write_outbound(e, bufmsg(p, n)), 1);
    struct rill_buf *out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_readable(out), n + 3);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), "\x01\x02\x03", 3));
    rill_buf_release(out);
    finish(e);
    free(p);
}

/* Write @n bytes and expect the write to fail with @err, nothing written. */
static void expect_write_fails(const void *cfg, struct rill_msg *m, int err)
{
    struct rill_embedded *e = enc(&rill_length_field_prepender, cfg);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, m, p);
    rill_embedded_flush(e);
    cr_assert_eq(rill_promise_result(p, NULL), err, "write result %d, want %d",
                 rill_promise_result(p, NULL), err);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    rill_promise_release(p);
    finish(e);
}

Test(length_field, prepender_length_that_does_not_fit_fails_the_write)
{
    static char zero[70000], want[70000];
    /* The largest lengths that fit, then one more. */
    struct rill_length_prepender_config c = { .length_field_size = 1 };
    want[0] = (char)0xff;
    expect_prepended(&c, zero, 255, want, 256);
    expect_write_fails(&c, bufmsg(zero, 256), RILL_ETOOLARGE);
    c.length_includes_field = true;
    expect_prepended(&c, zero, 254, want, 255);
    expect_write_fails(&c, bufmsg(zero, 255), RILL_ETOOLARGE);
    c = (struct rill_length_prepender_config){ .length_field_size = 2, .length_adjustment = 1 };
    want[1] = (char)0xff;
    expect_prepended(&c, zero, 65534, want, 65536);
    expect_write_fails(&c, bufmsg(zero, 65535), RILL_ETOOLARGE);
}

/* Without a promise the failure is an exception event, not silence. */
Test(length_field, prepender_failure_without_a_promise_is_an_exception)
{
    struct rill_length_prepender_config c = { .length_field_size = 1 };
    struct rill_embedded *e = enc(&rill_length_field_prepender, &c);
    static char zero[300];
    rill_embedded_write(e, bufmsg(zero, sizeof(zero)), NULL);
    rill_embedded_flush(e);
    const char *why = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert_not_null(why);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    finish(e);
}

Test(length_field, prepender_negative_length_fails_the_write)
{
    struct rill_length_prepender_config c = { .length_field_size = 2, .length_adjustment = -4 };
    expect_write_fails(&c, bufmsg("abc", 3), -ERANGE);
}

/* 4 GiB does not fit a 4-byte field; 4 GiB - 1 MiB does, without a copy. */
Test(length_field, prepender_four_byte_field_limit)
{
    expect_write_fails(NULL, huge(4096), RILL_ETOOLARGE);
    struct rill_embedded *e = enc(&rill_length_field_prepender, NULL);
    cr_assert_eq(rill_embedded_write_outbound(e, huge(4095)), 1);
    struct rill_buf *out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_readable(out), ((size_t)4095 << 20) + 4);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), "\xff\xf0\x00\x00", 4));
    rill_buf_release(out);
    finish(e);
}

/* A large payload is appended as a component: the output's bytes after the
 * header are the payload's own memory. Small ones are copied behind the
 * header (one flat buffer). */
Test(length_field, prepender_appends_large_payloads_without_copying)
{
    static char mem[8192];
    memset(mem, 'p', sizeof(mem));
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, sizeof(mem), sizeof(mem), NULL, NULL, &b), 0);
    struct rill_length_prepender_config c = { .length_field_size = 2 };
    struct rill_embedded *e = enc(&rill_length_field_prepender, &c);
    cr_assert_eq(rill_embedded_write_outbound(e, rill_buf_msg(b)), 1);
    struct rill_buf *out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_kind(out), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_readable(out), sizeof(mem) + 2);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), "\x20\x00", 2));
    struct iovec iov[4];
    size_t covered;
    int n =
        rill_buf_iovec(out, rill_buf_reader_index(out), rill_buf_readable(out), iov, 4, &covered);
    cr_assert_eq(n, 2);
    cr_assert_eq(iov[0].iov_len, 2);
    cr_assert_eq(iov[1].iov_base, (void *)mem, "the payload was copied");
    cr_assert_eq(iov[1].iov_len, sizeof(mem));
    rill_buf_release(out);

    cr_assert_eq(rill_embedded_write_outbound(e, bufmsg("small", 5)), 1);
    out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_kind(out), RILL_BUF_POOLED);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), "\x00\x05small", 7));
    rill_buf_release(out);
    finish(e);
}

Test(length_field, prepender_passes_other_messages)
{
    expect_passes_other(&rill_length_field_prepender, NULL);
}

Test(length_field, prepender_invalid_configs_are_refused)
{
    unsigned bad[] = { 5, 6, 7, 9, 16 };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(bad); i++) {
        struct rill_length_prepender_config c = { .length_field_size = bad[i] };
        cr_assert_eq(add_rc(&rill_length_field_prepender, &c), -EINVAL);
    }
}

/* What the prepender writes, the decoder reads back: every size, both
 * orders, with the field counted or not. */
Test(length_field, prepender_output_decodes_back)
{
    unsigned sizes[] = { 1, 2, 3, 4, 8 };
    static char big[3000];
    memset(big, 'b', sizeof(big));
    for (size_t k = 0; k < RILL_ARRAY_SIZE(sizes); k++) {
        for (int v = 0; v < 4; v++) {
            bool le = v & 1, incl = v & 2;
            unsigned n = sizes[k];
            struct rill_length_prepender_config pc = { .length_field_size = n,
                                                       .little_endian = le,
                                                       .length_includes_field = incl };
            struct rill_length_field_config dc = { .length_field_size = n,
                                                   .little_endian = le,
                                                   .length_adjustment = incl ? -(int64_t)n : 0,
                                                   .initial_bytes_to_strip = n };
            struct frame msgs[] = { F("one"), F(""), { big, n == 1 ? 200 : sizeof(big) } };
            struct rill_embedded *pe = enc(&rill_length_field_prepender, &pc);
            struct catcher cat;
            struct rill_embedded *de = emb(&rill_length_field_decoder, &dc, &cat);
            for (size_t i = 0; i < 3; i++) {
                cr_assert_eq(rill_embedded_write_outbound(pe, bufmsg(msgs[i].p, msgs[i].len)), 1);
                rill_embedded_write_inbound(de, rill_embedded_read_outbound(pe));
            }
            expect_frames(de, msgs, 3, "round trip");
            cr_assert_eq(cat.n, 0);
            finish(pe);
            finish(de);
        }
    }
}

/* single_decode: one frame per read. */
Test(length_field, single_decode_emits_one_frame_per_read)
{
    struct rill_length_field_config c = { .dec.single_decode = true,
                                          .length_field_size = 1,
                                          .initial_bytes_to_strip = 1 };
    struct catcher cat;
    struct rill_embedded *e = emb(&rill_length_field_decoder, &c, &cat);
    rill_test_feed(e, "\1a\1b\2c", 6);
    struct frame want[] = { F("a"), F("b"), F("cd"), F("e") };
    expect_frames(e, want, 1, "first read");
    rill_test_feed(e, "d", 1);
    expect_frames(e, want + 1, 1, "second read");
    rill_test_feed(e, "\1e", 2);
    expect_frames(e, want + 2, 1, "third read");
    /* What is left is decoded when the input ends. */
    rill_embedded_close(e);
    expect_frames(e, want + 3, 1, "end of input");
    finish(e);
}
