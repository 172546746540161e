/* Tests for the varint32 decoder and prepender (include/rill/framing.h):
 * lengths of one to five bytes (also non-minimal forms) under every way of
 * splitting the input, malformed lengths (six bytes, over INT32_MAX) with
 * their codes and texts, payloads over the limit discarded (fail-fast or
 * not, closing or keeping the channel), views of the input, and the
 * prepender's output byte for byte, its zero-copy payload, its limit and
 * the round trip. */
#include <criterion/criterion.h>
#include <errno.h>
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

TestSuite(varint, .timeout = 30, .fini = rill_test_no_leaks);

static const struct rill_handler *const V = &rill_varint_decoder;

Test(varint, one_byte_lengths_under_every_split)
{
    static const char in[] = "\x03"
                             "abc"
                             "\x00"
                             "\x01"
                             "z"
                             "\x7f";
    /* The last length announces 127 bytes that never come. */
    struct frame want[] = { F("abc"), F(""), F("z") };
    run_ok(V, NULL, in, sizeof(in) - 1, want, 3);
}

/* 300 = 0xac 0x02, the protobuf documentation's example. */
Test(varint, two_byte_lengths)
{
    static char in[2 + 300 + 2 + 128];
    memcpy(in, "\xac\x02", 2);
    memset(in + 2, 'p', 300);
    memcpy(in + 302, "\x80\x01", 2);
    memset(in + 304, 'q', 128);
    struct frame want[] = { { in + 2, 300 }, { in + 304, 128 } };
    run_ok(V, NULL, in, sizeof(in), want, 2);
}

/* Larger lengths: three bytes (16384 and 2097151), four (2097152), and
 * non-minimal forms of small values, which protobuf accepts. */
Test(varint, longer_and_non_minimal_lengths)
{
    struct {
        const char *hdr;
        size_t hlen, len;
    } cases[] = {
        { "\x80\x80\x01", 3, 16384 },       { "\xff\xff\x7f", 3, 2097151 },
        { "\x80\x80\x80\x01", 4, 2097152 }, { "\x83\x00", 2, 3 },
        { "\x83\x80\x80\x80\x00", 5, 3 },   { "\x80\x00", 2, 0 },
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(cases); i++) {
        size_t total = cases[i].hlen + cases[i].len;
        char *in = malloc(total);
        memcpy(in, cases[i].hdr, cases[i].hlen);
        memset(in + cases[i].hlen, 'v', cases[i].len);
        struct rill_varint_config c = { .max_frame_length = 4 << 20 };
        struct catcher cat;
        struct rill_embedded *e = emb(V, &c, &cat);
        size_t cuts[] = { 1, cases[i].hlen - 1, cases[i].hlen, total / 2 };
        rill_test_feed_cuts(e, in, total, cuts, 4);
        struct frame want[] = { { in + cases[i].hlen, cases[i].len } };
        expect_frames(e, want, 1, cases[i].hdr);
        cr_assert_eq(cat.n, 0);
        finish(e);
        free(in);
    }
    /* Short ones under every split. */
    static const char in[] = "\x83\x80\x80\x80\x00"
                             "abc"
                             "\x80\x00"
                             "\x81\x00"
                             "z";
    struct frame want[] = { F("abc"), F(""), F("z") };
    run_ok(V, NULL, in, sizeof(in) - 1, want, 3);
}

Test(varint, frames_are_views_of_the_bytes_read)
{
    static char mem[] = "\x02hi\x03you";
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, sizeof(mem) - 1, sizeof(mem) - 1, NULL, NULL, &b), 0);
    struct catcher cat;
    struct rill_embedded *e = emb(V, NULL, &cat);
    cr_assert_eq(rill_embedded_write_inbound(e, rill_buf_msg(b)), 2);
    const size_t at[] = { 1, 4 };
    for (size_t i = 0; i < 2; i++) {
        struct rill_buf *f = rill_buf_from_msg(rill_embedded_read_inbound(e));
        cr_assert_eq(rill_buf_kind(f), RILL_BUF_SLICE);
        size_t n;
        cr_assert_eq(rill_buf_read_ptr(f, &n), (uint8_t *)mem + at[i]);
        rill_buf_release(f);
    }
    finish(e);
}

static void run_err(const void *cfg, const void *in, size_t len, const struct frame *frames,
                    size_t n, int err, const char *why)
{
    struct expect x = { .frames = frames, .n = n, .nerr = 1, .err = err, .why = why };
    run_every_split(V, cfg, in, len, &x);
}

Test(varint, six_byte_length_fails)
{
    static const char in[] = "\x01"
                             "a"
                             "\x80\x80\x80\x80\x80\x01"
                             "b";
    struct frame want[] = { F("a") };
    run_err(NULL, in, sizeof(in) - 1, want, 1, RILL_EDECODE,
            "malformed varint32 length: more than 5 bytes");
}

/* Five bytes can say up to 2^35 - 1: above INT32_MAX is malformed. */
Test(varint, length_over_int32_max_fails)
{
    static const char in[] = "\x01"
                             "a"
                             "\x80\x80\x80\x80\x08";
    struct frame want[] = { F("a") };
    run_err(NULL, in, sizeof(in) - 1, want, 1, RILL_EDECODE,
            "varint32 frame length 2147483648 exceeds INT32_MAX");
    static const char in2[] = "\xff\xff\xff\xff\x7f";
    run_err(NULL, in2, sizeof(in2) - 1, NULL, 0, RILL_EDECODE,
            "varint32 frame length 34359738367 exceeds INT32_MAX");
}

/* INT32_MAX itself is well-formed, only over the limit. */
Test(varint, int32_max_is_over_the_default_limit)
{
    struct rill_varint_config c = { .fail_fast = true };
    static const char in[] = "\x01"
                             "a"
                             "\xff\xff\xff\xff\x07"
                             "xyz";
    struct frame want[] = { F("a") };
    run_err(&c, in, sizeof(in) - 1, want, 1, RILL_ETOOLARGE,
            "varint frame of 2147483647 bytes exceeds the limit of 1048576; discarding it");
}

Test(varint, payload_over_the_limit_closes_after_it_was_discarded)
{
    struct rill_varint_config c = { .max_frame_length = 4 };
    static const char in[] = "\x02ok\x05"
                             "12345"
                             "\x01z";
    struct frame want[] = { F("ok") };
    run_err(&c, in, sizeof(in) - 1, want, 1, RILL_ETOOLARGE,
            "varint frame of 5 bytes exceeds the limit of 4; discarded");
}

Test(varint, payload_over_the_limit_is_skipped_when_kept_open)
{
    for (int ff = 0; ff <= 1; ff++) {
        struct rill_varint_config c = { .max_frame_length = 4,
                                        .fail_fast = ff,
                                        .dec.keep_open_on_error = true };
        static const char in[] = "\x02ok\x05"
                                 "12345"
                                 "\x01z\x10"
                                 "sixteen bytes!!!"
                                 "\x03"
                                 "end";
        struct frame want[] = { F("ok"), F("z"), F("end") };
        for (size_t at = 0; at <= sizeof(in) - 1; at++) {
            struct catcher cat;
            struct rill_embedded *e = emb(V, &c, &cat);
            rill_test_feed_split(e, in, sizeof(in) - 1, at);
            expect_frames(e, want, 3, "kept open");
            cr_assert_eq(cat.n, 2, "split %zu: %d exceptions", at, cat.n);
            cr_assert_eq(cat.err, RILL_ETOOLARGE);
            cr_assert(strstr(cat.why, "varint frame of 16 bytes exceeds the limit of 4"), "%s",
                      cat.why);
            cr_assert(rill_embedded_is_open(e));
            finish(e);
        }
    }
}

Test(varint, discarded_payloads_are_not_cumulated)
{
    struct rill_varint_config c = { .max_frame_length = 100,
                                    .fail_fast = true,
                                    .dec.keep_open_on_error = true };
    struct catcher cat;
    struct rill_embedded *e = emb(V, &c, &cat);
    struct rill_decoder *d = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e), "dec"));
    rill_test_feed(e, "\x80\x80\x04", 3); /* 65536 */
    cr_assert_eq(cat.n, 1);
    cr_assert_str_eq(cat.why,
                     "varint frame of 65536 bytes exceeds the limit of 100; discarding it");
    static char chunk[4096];
    for (int i = 0; i < 16; i++) {
        rill_test_feed(e, chunk, sizeof(chunk));
        cr_assert_eq(rill_decoder_pending(d), 0);
    }
    rill_test_feed(e, "\x02ok", 3);
    struct frame want[] = { F("ok") };
    expect_frames(e, want, 1, "after");
    cr_assert_eq(cat.n, 1);
    cr_assert(rill_embedded_is_open(e));
    finish(e);
}

/* ---- prepender ---- */

static void expect_prepended(size_t n, const char *hdr, size_t hlen)
{
    char *p = malloc(n ? n : 1);
    memset(p, 'w', n);
    struct rill_embedded *e = enc(&rill_varint_prepender, NULL);
    cr_assert_eq(rill_embedded_write_outbound(e, bufmsg(p, n)), 1);
    struct rill_buf *out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_readable(out), hlen + n);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), hdr, hlen), "header of %zu", n);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out) + hlen, p, n));
    rill_buf_release(out);
    finish(e);
    free(p);
}

Test(varint, prepender_writes_minimal_lengths)
{
    expect_prepended(0, "\x00", 1);
    expect_prepended(1, "\x01", 1);
    expect_prepended(127, "\x7f", 1);
    expect_prepended(128, "\x80\x01", 2);
    expect_prepended(300, "\xac\x02", 2);
    expect_prepended(16383, "\xff\x7f", 2);
    expect_prepended(16384, "\x80\x80\x01", 3);
    expect_prepended(2097152, "\x80\x80\x80\x01", 4);
}

/* 2 GiB is over INT32_MAX: the write fails, nothing is written; 2 GiB - 1
 * MiB gets a five-byte length, without copying the payload. */
Test(varint, prepender_limit_and_five_byte_lengths)
{
    struct rill_embedded *e = enc(&rill_varint_prepender, NULL);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, huge(2048), p);
    rill_embedded_flush(e);
    cr_assert_eq(rill_promise_result(p, NULL), RILL_ETOOLARGE);
    cr_assert_eq(rill_embedded_outbound_count(e), 0);
    rill_promise_release(p);

    cr_assert_eq(rill_embedded_write_outbound(e, huge(2047)), 1);
    struct rill_buf *out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_readable(out), ((size_t)2047 << 20) + 5);
    /* 2047 << 20 = 0x7ff00000 */
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), "\x80\x80\xc0\xff\x07", 5));
    rill_buf_release(out);
    finish(e);
}

Test(varint, prepender_appends_large_payloads_without_copying)
{
    static char mem[4096];
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, sizeof(mem), sizeof(mem), NULL, NULL, &b), 0);
    struct rill_embedded *e = enc(&rill_varint_prepender, NULL);
    cr_assert_eq(rill_embedded_write_outbound(e, rill_buf_msg(b)), 1);
    struct rill_buf *out = rill_buf_from_msg(rill_embedded_read_outbound(e));
    cr_assert_eq(rill_buf_kind(out), RILL_BUF_COMPOSITE);
    struct iovec iov[4];
    int n = rill_buf_iovec(out, rill_buf_reader_index(out), rill_buf_readable(out), iov, 4, NULL);
    cr_assert_eq(n, 2);
    cr_assert_eq(iov[0].iov_len, 2);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out), "\x80\x20", 2));
    cr_assert_eq(iov[1].iov_base, (void *)mem, "the payload was copied");
    rill_buf_release(out);
    finish(e);
}

Test(varint, prepender_passes_other_messages)
{
    expect_passes_other(&rill_varint_prepender, NULL);
}

Test(varint, prepender_output_decodes_back)
{
    static char big[20000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 31);
    struct frame msgs[] = { F("one"), F(""), { big, 127 }, { big, 128 }, { big, sizeof(big) } };
    struct rill_embedded *pe = enc(&rill_varint_prepender, NULL);
    struct catcher cat;
    struct rill_embedded *de = emb(V, NULL, &cat);
    for (size_t i = 0; i < RILL_ARRAY_SIZE(msgs); i++) {
        cr_assert_eq(rill_embedded_write_outbound(pe, bufmsg(msgs[i].p, msgs[i].len)), 1);
        rill_embedded_write_inbound(de, rill_embedded_read_outbound(pe));
    }
    expect_frames(de, msgs, RILL_ARRAY_SIZE(msgs), "round trip");
    cr_assert_eq(cat.n, 0);
    finish(pe);
    finish(de);
}
