/* Tests for the line decoder (include/rill/framing.h): "\n" and "\r\n"
 * line ends, stripped or kept, every way of splitting the input, the limit
 * (a line of exactly the limit passes, also when its "\r" arrives alone),
 * lines over it discarded up to their end and reported with their exact
 * length (fail-fast or not, closing or keeping the channel), frames that
 * are views of the input, and leftovers at the end of input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/decoder.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/pipeline.h"
#include "util/feed.h"
#include "util/testutil.h"

#include "framing_test.h"

TestSuite(line, .timeout = 30, .fini = rill_test_no_leaks);

static const struct rill_handler *const L = &rill_line_decoder;

Test(line, lf_and_crlf_lines_are_stripped_by_default)
{
    static const char in[] = "a\nbb\r\nccc\n\n\r\nx\ry\n";
    struct frame want[] = { F("a"), F("bb"), F("ccc"), F(""), F(""), F("x\ry") };
    run_ok(L, NULL, in, sizeof(in) - 1, want, 6);
}

Test(line, line_ends_kept_on_request)
{
    struct rill_line_config c = { .keep_delimiter = true };
    static const char in[] = "a\nbb\r\nccc\n\n\r\nx\ry\n";
    struct frame want[] = { F("a\n"), F("bb\r\n"), F("ccc\n"), F("\n"), F("\r\n"), F("x\ry\n") };
    run_ok(L, &c, in, sizeof(in) - 1, want, 6);
}

Test(line, frames_are_views_of_the_bytes_read)
{
    static char mem[] = "one\r\ntwo\n";
    const struct frame want[] = { { mem, 3 }, { mem + 5, 3 } };
    expect_slices(L, NULL, mem, sizeof(mem) - 1, want, 2);
}

/* A line as long as the limit passes, "\r\n" or "\n", however it is cut
 * (the "\r" alone at the end of a read is not counted against it). */
Test(line, a_line_of_exactly_the_limit_passes)
{
    struct rill_line_config c = { .max_length = 5 };
    static const char in[] = "12345\r\n12345\nabc\n";
    struct frame want[] = { F("12345"), F("12345"), F("abc") };
    run_ok(L, &c, in, sizeof(in) - 1, want, 3);
    c.keep_delimiter = true;
    struct frame kept[] = { F("12345\r\n"), F("12345\n"), F("abc\n") };
    run_ok(L, &c, in, sizeof(in) - 1, kept, 3);
}

Test(line, a_long_line_in_many_reads)
{
    size_t n = 100000;
    char *in = malloc(n + 2);
    memset(in, 'l', n);
    memcpy(in + n, "\r\n", 2);
    struct rill_line_config c = { .max_length = n };
    struct catcher cat;
    struct rill_embedded *e = emb(L, &c, &cat);
    for (size_t off = 0; off < n + 2; off += 999)
        rill_test_feed(e, in + off, n + 2 - off < 999 ? n + 2 - off : 999);
    struct frame want[] = { { in, n } };
    expect_frames(e, want, 1, "long line");
    cr_assert_eq(cat.n, 0);
    finish(e);
    free(in);
}

/* Not fail-fast: a line over the limit is reported with its exact length
 * once its end went by; the lines before it are delivered, the channel
 * closes, nothing after it is decoded. */
Test(line, line_over_the_limit_closes_after_it_was_discarded)
{
    struct rill_line_config c = { .max_length = 8 };
    static const char in[] = "ok\r\n0123456789ab\r\nnext\n";
    struct frame want[] = { F("ok") };
    struct expect x = { .frames = want,
                        .n = 1,
                        .nerr = 1,
                        .err = RILL_ETOOLARGE,
                        .why = "line of 12 bytes exceeds the limit of 8; discarded" };
    run_every_split(L, &c, in, sizeof(in) - 1, &x);
}

/* Kept open: the lines after it decode, and the reported length is exact
 * however the input is cut (a "\r" at the end of a read included). */
Test(line, line_over_the_limit_is_skipped_when_kept_open)
{
    struct rill_line_config c = { .max_length = 8, .dec.keep_open_on_error = true };
    static const char in[] = "ok\r\n0123456789ab\r\nnext\n123456789\nlast\r\n";
    struct frame want[] = { F("ok"), F("next"), F("last") };
    struct expect x = { .frames = want,
                        .n = 3,
                        .nerr = 2,
                        .err = RILL_ETOOLARGE,
                        .why = "line of 9 bytes exceeds the limit of 8; discarded",
                        .open = true };
    run_every_split(L, &c, in, sizeof(in) - 1, &x);
}

/* Fail-fast: reported as soon as more than the limit arrived without a
 * line end, once; the rest of that line is skipped. */
Test(line, line_over_the_limit_fails_fast)
{
    struct rill_line_config c = { .max_length = 8,
                                  .fail_fast = true,
                                  .dec.keep_open_on_error = true };
    struct catcher cat;
    struct rill_embedded *e = emb(L, &c, &cat);
    struct rill_decoder *d = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e), "dec"));
    rill_test_feed(e, "ok\n12345678", 11);
    cr_assert_eq(cat.n, 0);
    rill_test_feed(e, "9", 1);
    cr_assert_eq(cat.n, 1);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    cr_assert_str_eq(cat.why, "line of over 9 bytes exceeds the limit of 8; discarding it");
    cr_assert_eq(rill_decoder_pending(d), 0, "discarded bytes are held");
    rill_test_feed(e, "more and more\r", 14);
    cr_assert_eq(rill_decoder_pending(d), 1, "only the \\r may be held");
    rill_test_feed(e, "\nnext\n", 6);
    cr_assert_eq(cat.n, 1);
    struct frame want[] = { F("ok"), F("next") };
    expect_frames(e, want, 2, "fail fast");
    cr_assert(rill_embedded_is_open(e));
    finish(e);

    /* A whole line over the limit in one read is reported once, with its
     * length, fail-fast or not. */
    struct expect x = { .frames = want,
                        .n = 2,
                        .nerr = 1,
                        .err = RILL_ETOOLARGE,
                        .why = "line of 9 bytes exceeds the limit of 8; discarded",
                        .open = true };
    run_case(L, &c, "ok\n123456789\nnext\n", 18, WHOLE, 0, 0, &x);

    /* Closing by default. */
    c.dec.keep_open_on_error = false;
    e = emb(L, &c, &cat);
    rill_test_feed(e, "ok\n123456789", 12);
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_test_feed(e, "more\n", 5), RILL_ECLOSED);
    cr_assert_eq(cat.n, 1);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    expect_frames(e, want, 1, "closed");
    finish(e);
}

Test(line, discarding_holds_nothing)
{
    struct rill_line_config c = { .max_length = 100, .dec.keep_open_on_error = true };
    struct catcher cat;
    struct rill_embedded *e = emb(L, &c, &cat);
    struct rill_decoder *d = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e), "dec"));
    static char chunk[4096];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 32; i++) {
        rill_test_feed(e, chunk, sizeof(chunk));
        cr_assert_eq(rill_decoder_pending(d), 0);
    }
    cr_assert_eq(cat.n, 0);
    rill_test_feed(e, "\nok\n", 4);
    cr_assert_eq(cat.n, 1);
    cr_assert_str_eq(cat.why, "line of 131072 bytes exceeds the limit of 100; discarded");
    struct frame want[] = { F("ok") };
    expect_frames(e, want, 1, "after");
    finish(e);
}

Test(line, default_limit_is_8192)
{
    static char in[8194];
    memset(in, 'd', sizeof(in));
    in[8192] = '\n';
    struct catcher cat;
    struct rill_embedded *e = emb(L, NULL, &cat);
    rill_test_feed(e, in, 8193);
    struct frame want[] = { { in, 8192 } };
    expect_frames(e, want, 1, "8192");
    finish(e);
    in[8192] = 'd';
    in[8193] = '\n';
    e = emb(L, NULL, &cat);
    rill_test_feed(e, in, 8194);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    cr_assert_str_eq(cat.why, "line of 8193 bytes exceeds the limit of 8192; discarded");
    finish(e);
}

Test(line, leftovers_at_the_end_are_dropped_quietly)
{
    struct catcher cat;
    struct rill_embedded *e = emb(L, NULL, &cat);
    rill_test_feed(e, "done\nnot done", 13);
    rill_embedded_close(e);
    struct frame want[] = { F("done") };
    expect_frames(e, want, 1, "end");
    cr_assert_eq(cat.n, 0);
    finish(e);
}

Test(line, config_is_copied_when_added)
{
    struct rill_line_config *c = malloc(sizeof(*c));
    *c = (struct rill_line_config){ .keep_delimiter = true };
    struct catcher cat;
    struct rill_embedded *e = emb(L, c, &cat);
    memset(c, 0, sizeof(*c));
    free(c);
    rill_test_feed(e, "k\n", 2);
    struct frame want[] = { F("k\n") };
    expect_frames(e, want, 1, "copied");
    finish(e);
}

/* single_decode: one line per read, the rest waits for the next read (a
 * handler may switch protocols in between). */
Test(line, single_decode_emits_one_line_per_read)
{
    struct rill_line_config c = { .dec.single_decode = true };
    struct catcher cat;
    struct rill_embedded *e = emb(L, &c, &cat);
    rill_test_feed(e, "a\nb\nc", 5);
    struct frame want[] = { F("a"), F("b"), F("c") };
    expect_frames(e, want, 1, "first read");
    rill_test_feed(e, "\n", 1);
    expect_frames(e, want + 1, 1, "second read");
    rill_test_feed(e, "d", 1);
    expect_frames(e, want + 2, 1, "third read");
    finish(e);
}
