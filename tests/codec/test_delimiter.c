/* Tests for the delimiter decoder (include/rill/framing.h): one and many
 * delimiters, the shortest frame winning (ties to the one listed first),
 * multi-byte and binary delimiters split across reads at every byte,
 * stripped or kept, the limit (a frame of exactly the limit followed by a
 * partial delimiter passes), frames over it discarded and reported with
 * their exact length, fail-fast, closing or keeping the channel, views of
 * the input, and config validation. */
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

TestSuite(delimiter, .timeout = 30, .fini = rill_test_no_leaks);

static const struct rill_handler *const D = &rill_delimiter_decoder;

Test(delimiter, one_byte_delimiter)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER(";") } };
    static const char in[] = "a;bc;;def;";
    struct frame want[] = { F("a"), F("bc"), F(""), F("def") };
    run_ok(D, &c, in, sizeof(in) - 1, want, 4);
}

/* A four-byte delimiter whose bytes also occur alone in the frames. */
Test(delimiter, multi_byte_delimiter_split_at_every_byte)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("\r\n\r\n") } };
    static const char in[] = "GET /\r\nHost: x\r\n\r\n\r\n\r\nr\r\n\r\r\n\r\n";
    struct frame want[] = { F("GET /\r\nHost: x"), F(""), F("r\r\n\r") };
    run_ok(D, &c, in, sizeof(in) - 1, want, 3);
    c.keep_delimiter = true;
    struct frame kept[] = { F("GET /\r\nHost: x\r\n\r\n"), F("\r\n\r\n"), F("r\r\n\r\r\n\r\n") };
    run_ok(D, &c, in, sizeof(in) - 1, kept, 3);
}

Test(delimiter, binary_delimiter_with_nul_bytes)
{
    struct rill_delimiter_config c = { .delimiters = { { "\0\xff\0", 3 } } };
    static const char in[] = "ab\0\xff\0\0\0\xff\xff\0\xff\0";
    struct frame want[] = { F("ab"), { "\0\0\xff\xff", 4 } };
    run_ok(D, &c, in, sizeof(in) - 1, want, 2);
}

/* "\r\n" before "\n" or after it in the list: the shorter frame wins. */
Test(delimiter, line_delimiters_in_either_order)
{
    static const char in[] = "ab\r\ncd\ne\r\r\n";
    struct frame want[] = { F("ab"), F("cd"), F("e\r") };
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("\r\n"),
                                                       RILL_DELIMITER("\n") } };
    run_ok(D, &c, in, sizeof(in) - 1, want, 3);
    struct rill_delimiter_config r = { .delimiters = { RILL_DELIMITER("\n"),
                                                       RILL_DELIMITER("\r\n") } };
    run_ok(D, &r, in, sizeof(in) - 1, want, 3);
}

/* The delimiter found first in the input wins even when listed last, and
 * a delimiter found later never replaces one found earlier. */
Test(delimiter, shortest_frame_wins)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("END"), RILL_DELIMITER("|"),
                                                       RILL_DELIMITER("STOP") } };
    static const char in[] = "aSTOPb|cENDd|STOP";
    struct frame want[] = { F("a"), F("b"), F("c"), F("d"), F("") };
    run_ok(D, &c, in, sizeof(in) - 1, want, 5);
    c.keep_delimiter = true;
    struct frame kept[] = { F("aSTOP"), F("b|"), F("cEND"), F("d|"), F("STOP") };
    run_ok(D, &c, in, sizeof(in) - 1, kept, 5);
}

/* Two delimiters matching at the same place: the one listed first. A
 * frame is only cut when no delimiter that would win can still complete
 * with the next bytes, so the frames never depend on how the input was
 * cut into reads. */
Test(delimiter, ties_go_to_the_delimiter_listed_first)
{
    static const char in[] = "a##b#c##";
    struct rill_delimiter_config longer = { .delimiters = { RILL_DELIMITER("##"),
                                                            RILL_DELIMITER("#") } };
    struct frame want1[] = { F("a"), F("b"), F("c") };
    run_ok(D, &longer, in, sizeof(in) - 1, want1, 3);
    struct rill_delimiter_config shorter = { .delimiters = { RILL_DELIMITER("#"),
                                                             RILL_DELIMITER("##") } };
    struct frame want2[] = { F("a"), F(""), F("b"), F("c"), F("") };
    run_ok(D, &shorter, in, sizeof(in) - 1, want2, 5);
}

/* "c" completes before "abcd" does, yet "abcd" starts first: the frame is
 * "x" whether "d" comes in the same read or later. */
Test(delimiter, a_longer_delimiter_starting_first_is_waited_for)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("abcd"),
                                                       RILL_DELIMITER("c") } };
    static const char in[] = "xabcdyczabcabcd";
    struct frame want[] = { F("x"), F("y"), F("zab"), F("") };
    run_ok(D, &c, in, sizeof(in) - 1, want, 4);
}

/* At the end of input nothing can complete any more: what a delimiter
 * ends is delivered, the rest dropped. */
Test(delimiter, end_of_input_cuts_what_is_decidable)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("##"),
                                                       RILL_DELIMITER("#") } };
    struct catcher cat;
    struct rill_embedded *e = emb(D, &c, &cat);
    rill_test_feed(e, "x#y#", 4);
    struct frame want[] = { F("x"), F("y") };
    expect_frames(e, want, 1, "open");
    rill_embedded_close(e);
    expect_frames(e, want + 1, 1, "closed");
    cr_assert_eq(cat.n, 0);
    finish(e);
}

Test(delimiter, eight_delimiters)
{
    struct rill_delimiter_config c = {
        .delimiters = { RILL_DELIMITER("1"), RILL_DELIMITER("22"), RILL_DELIMITER("333"),
                        RILL_DELIMITER("4444"), RILL_DELIMITER("55555"), RILL_DELIMITER("6"),
                        RILL_DELIMITER("77"), RILL_DELIMITER("ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvu") },
    };
    static const char in[] = "a1b22c333d4444e55555f6g77hZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvu";
    struct frame want[] = { F("a"), F("b"), F("c"), F("d"), F("e"), F("f"), F("g"), F("h") };
    run_ok(D, &c, in, sizeof(in) - 1, want, 8);
}

Test(delimiter, frames_are_views_of_the_bytes_read)
{
    static char mem[] = "one<>two<>";
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("<>") } };
    const struct frame want[] = { { mem, 3 }, { mem + 5, 3 } };
    expect_slices(D, &c, mem, sizeof(mem) - 1, want, 2);
}

/* A frame of exactly the limit passes, also when the start of its
 * delimiter arrives in an earlier read than the rest. */
Test(delimiter, a_frame_of_exactly_the_limit_passes)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("\r\n\r\n") },
                                       .max_frame_length = 6 };
    static const char in[] = "123456\r\n\r\nabcdef\r\n\r\n";
    struct frame want[] = { F("123456"), F("abcdef") };
    run_ok(D, &c, in, sizeof(in) - 1, want, 2);
}

/* Not fail-fast and closing: reported with the frame's exact length once
 * its delimiter went by; frames after it are not decoded. */
Test(delimiter, frame_over_the_limit_closes_after_it_was_discarded)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("<END>") },
                                       .max_frame_length = 6 };
    static const char in[] = "ok<END>0123456789<END>next<END>";
    struct frame want[] = { F("ok") };
    struct expect x = {
        .frames = want,
        .n = 1,
        .nerr = 1,
        .err = RILL_ETOOLARGE,
        .why = "frame of 10 bytes before its delimiter exceeds the limit of 6; discarded",
    };
    run_every_split(D, &c, in, sizeof(in) - 1, &x);
}

/* Kept open: the exact length however the input is cut (the start of the
 * delimiter in one read, its end in the next), and decoding goes on. */
Test(delimiter, frame_over_the_limit_is_skipped_when_kept_open)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("<END>"),
                                                       RILL_DELIMITER("|") },
                                       .max_frame_length = 6,
                                       .dec.keep_open_on_error = true };
    static const char in[] = "ok<END>0123456789<END>next|<E<EN<END123456789|last<END>";
    struct frame want[] = { F("ok"), F("next"), F("last") };
    struct expect x = {
        .frames = want,
        .n = 3,
        .nerr = 2,
        .err = RILL_ETOOLARGE,
        .why = "frame of 18 bytes before its delimiter exceeds the limit of 6; discarded",
        .open = true,
    };
    run_every_split(D, &c, in, sizeof(in) - 1, &x);
}

Test(delimiter, frame_over_the_limit_fails_fast)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("<END>") },
                                       .max_frame_length = 6,
                                       .fail_fast = true,
                                       .dec.keep_open_on_error = true };
    struct catcher cat;
    struct rill_embedded *e = emb(D, &c, &cat);
    struct rill_decoder *d = rill_ctx_state(rill_pipeline_get(rill_embedded_pipeline(e), "dec"));
    /* 6 bytes and 4 that may start a delimiter: not known to be too long. */
    rill_test_feed(e, "ok<END>123456<END", 17);
    cr_assert_eq(cat.n, 0);
    rill_test_feed(e, "x", 1);
    cr_assert_eq(cat.n, 1);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    cr_assert_str_eq(
        cat.why,
        "frame of over 7 bytes before its delimiter exceeds the limit of 6; discarding it");
    cr_assert_leq(rill_decoder_pending(d), 4, "discarded bytes are held");
    static char chunk[4096];
    for (int i = 0; i < 8; i++) {
        rill_test_feed(e, chunk, sizeof(chunk));
        cr_assert_leq(rill_decoder_pending(d), 4);
    }
    rill_test_feed(e, "<END>next<END>", 14);
    cr_assert_eq(cat.n, 1);
    struct frame want[] = { F("ok"), F("next") };
    expect_frames(e, want, 2, "fail fast");
    finish(e);

    /* Closing by default, at once. */
    c.dec.keep_open_on_error = false;
    e = emb(D, &c, &cat);
    rill_test_feed(e, "ok<END>12345678901", 18);
    cr_assert_eq(cat.n, 1);
    cr_assert_not(rill_embedded_is_open(e));
    expect_frames(e, want, 1, "closed");
    finish(e);
}

Test(delimiter, default_limit_is_8192)
{
    static char in[8194];
    memset(in, 'd', sizeof(in));
    in[8192] = ';';
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER(";") } };
    struct catcher cat;
    struct rill_embedded *e = emb(D, &c, &cat);
    rill_test_feed(e, in, 8193);
    struct frame want[] = { { in, 8192 } };
    expect_frames(e, want, 1, "8192");
    finish(e);
    in[8192] = 'd';
    in[8193] = ';';
    e = emb(D, &c, &cat);
    rill_test_feed(e, in, 8194);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    cr_assert_str_eq(
        cat.why, "frame of 8193 bytes before its delimiter exceeds the limit of 8192; discarded");
    finish(e);
}

Test(delimiter, leftovers_at_the_end_are_dropped_quietly)
{
    struct rill_delimiter_config c = { .delimiters = { RILL_DELIMITER("||") } };
    struct catcher cat;
    struct rill_embedded *e = emb(D, &c, &cat);
    rill_test_feed(e, "done||not done|", 15);
    rill_embedded_close(e);
    struct frame want[] = { F("done") };
    expect_frames(e, want, 1, "end");
    cr_assert_eq(cat.n, 0);
    finish(e);
}

/* The delimiters are copied: the caller's bytes may change afterwards. */
Test(delimiter, config_and_delimiters_are_copied_when_added)
{
    char *bytes = strdup("<>");
    struct rill_delimiter_config *c = calloc(1, sizeof(*c));
    c->delimiters[0] = (struct rill_delimiter){ bytes, 2 };
    struct catcher cat;
    struct rill_embedded *e = emb(D, c, &cat);
    memset(bytes, 'x', 2);
    free(bytes);
    free(c);
    rill_test_feed(e, "a<>xx", 5);
    struct frame want[] = { F("a") };
    expect_frames(e, want, 1, "copied");
    finish(e);
}

Test(delimiter, invalid_configs_are_refused)
{
    cr_assert_eq(add_rc(D, NULL), -EINVAL);
    struct rill_delimiter_config c = { 0 };
    cr_assert_eq(add_rc(D, &c), -EINVAL);
    c.delimiters[0] = (struct rill_delimiter){ NULL, 1 };
    cr_assert_eq(add_rc(D, &c), -EINVAL);
    static const char long_one[RILL_DELIMITER_MAX_LEN + 1] = { 0 };
    c.delimiters[0] = (struct rill_delimiter){ long_one, RILL_DELIMITER_MAX_LEN + 1 };
    cr_assert_eq(add_rc(D, &c), -EINVAL);
    c.delimiters[0] = (struct rill_delimiter){ long_one, RILL_DELIMITER_MAX_LEN };
    cr_assert_eq(add_rc(D, &c), 0);
    /* The list ends at the first empty entry: what follows is not looked at. */
    c.delimiters[0] = (struct rill_delimiter){ ";", 1 };
    c.delimiters[2] = (struct rill_delimiter){ NULL, 5 };
    cr_assert_eq(add_rc(D, &c), 0);
}
