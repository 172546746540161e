/* Tests for the fixed-length decoder (include/rill/framing.h): frames
 * under every way of splitting the input, views of the input, frames over
 * the base's default cumulation limit, leftovers at the end of input, and
 * config validation. */
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
#include "rill/string_codec.h"
#include "util/feed.h"
#include "util/testutil.h"

#include "framing_test.h"

TestSuite(fixed_length, .timeout = 30, .fini = rill_test_no_leaks);

static const struct rill_handler *const X = &rill_fixed_length_decoder;

Test(fixed_length, frames_under_every_split)
{
    struct rill_fixed_length_config c = { .frame_length = 3 };
    static const char in[] = "abcdefghi\0\0\0xyz";
    struct frame want[] = { F("abc"), F("def"), F("ghi"), { "\0\0\0", 3 }, F("xyz") };
    run_ok(X, &c, in, sizeof(in) - 1, want, 5);
}

Test(fixed_length, one_byte_frames)
{
    struct rill_fixed_length_config c = { .frame_length = 1 };
    static const char in[] = "xyz";
    struct frame want[] = { F("x"), F("y"), F("z") };
    run_ok(X, &c, in, sizeof(in) - 1, want, 3);
}

Test(fixed_length, frames_are_views_of_the_bytes_read)
{
    static char mem[] = "aaaabbbbcc";
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, sizeof(mem) - 1, sizeof(mem) - 1, NULL, NULL, &b), 0);
    struct rill_fixed_length_config c = { .frame_length = 4 };
    struct catcher cat;
    struct rill_embedded *e = emb(X, &c, &cat);
    cr_assert_eq(rill_embedded_write_inbound(e, rill_buf_msg(b)), 2);
    for (size_t i = 0; i < 2; i++) {
        struct rill_buf *f = rill_buf_from_msg(rill_embedded_read_inbound(e));
        cr_assert_eq(rill_buf_kind(f), RILL_BUF_SLICE);
        size_t n;
        cr_assert_eq(rill_buf_read_ptr(f, &n), (uint8_t *)mem + 4 * i);
        cr_assert_eq(n, 4);
        rill_buf_release(f);
    }
    finish(e);
}

/* A frame spanning reads is a composite of views of those reads when they
 * are large (the base does not copy them). */
Test(fixed_length, frames_spanning_large_reads_are_not_copied)
{
    static char a[4096], b[4096];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    struct rill_fixed_length_config c = { .frame_length = 6000 };
    struct catcher cat;
    struct rill_embedded *e = emb(X, &c, &cat);
    struct rill_buf *ba, *bb;
    cr_assert_eq(rill_buf_wrap(a, sizeof(a), sizeof(a), NULL, NULL, &ba), 0);
    cr_assert_eq(rill_buf_wrap(b, sizeof(b), sizeof(b), NULL, NULL, &bb), 0);
    rill_embedded_write_inbound(e, rill_buf_msg(ba));
    rill_embedded_write_inbound(e, rill_buf_msg(bb));
    struct rill_buf *f = rill_buf_from_msg(rill_embedded_read_inbound(e));
    cr_assert_not_null(f);
    cr_assert_eq(rill_buf_readable(f), 6000);
    struct iovec iov[4];
    int n = rill_buf_iovec(f, rill_buf_reader_index(f), 6000, iov, 4, NULL);
    cr_assert_eq(n, 2);
    cr_assert_eq(iov[0].iov_base, (void *)a);
    cr_assert_eq(iov[0].iov_len, 4096);
    cr_assert_eq(iov[1].iov_base, (void *)b);
    cr_assert_eq(iov[1].iov_len, 6000 - 4096);
    rill_buf_release(f);
    finish(e);
}

/* The cumulation limit follows a frame length above the base's default. */
Test(fixed_length, frames_above_one_mebibyte_fit_by_default)
{
    size_t len = (size_t)3 << 19;
    char *in = malloc(2 * len);
    for (size_t i = 0; i < 2 * len; i++)
        in[i] = (char)(i * 7);
    struct rill_fixed_length_config c = { .frame_length = len };
    struct catcher cat;
    struct rill_embedded *e = emb(X, &c, &cat);
    for (size_t off = 0; off < 2 * len; off += 100000)
        rill_test_feed(e, in + off, 2 * len - off < 100000 ? 2 * len - off : 100000);
    struct frame want[] = { { in, len }, { in + len, len } };
    expect_frames(e, want, 2, "1.5 MiB");
    cr_assert_eq(cat.n, 0);
    finish(e);
    free(in);
}

/* An explicit cumulation limit is kept: a frame that needs more fails the
 * stream (the base's error). */
Test(fixed_length, explicit_cumulation_limit_is_kept)
{
    struct rill_fixed_length_config c = { .frame_length = 100, .dec.max_cumulation = 50 };
    struct catcher cat;
    struct rill_embedded *e = emb(X, &c, &cat);
    static char in[60];
    rill_test_feed(e, in, sizeof(in));
    cr_assert_eq(cat.n, 1);
    cr_assert_eq(cat.err, RILL_ETOOLARGE);
    cr_assert_not(rill_embedded_is_open(e));
    finish(e);
}

Test(fixed_length, leftovers_at_the_end_are_dropped_quietly)
{
    struct rill_fixed_length_config c = { .frame_length = 4 };
    struct catcher cat;
    struct rill_embedded *e = emb(X, &c, &cat);
    rill_test_feed(e, "12345", 5);
    rill_embedded_close(e);
    struct frame want[] = { F("1234") };
    expect_frames(e, want, 1, "end");
    cr_assert_eq(cat.n, 0);
    finish(e);
}

Test(fixed_length, messages_that_are_not_buffers_pass)
{
    struct rill_fixed_length_config c = { .frame_length = 4 };
    struct catcher cat;
    struct rill_embedded *e = emb(X, &c, &cat);
    rill_test_feed(e, "12", 2);
    struct rill_string *s;
    cr_assert_eq(rill_string_new("between", &s), 0);
    rill_embedded_write_inbound(e, rill_string_msg(s));
    rill_test_feed(e, "34", 2);
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_eq(m, rill_string_msg(s));
    rill_msg_release(m);
    struct frame want[] = { F("1234") };
    expect_frames(e, want, 1, "after");
    finish(e);
}

Test(fixed_length, invalid_configs_are_refused)
{
    cr_assert_eq(add_rc(X, NULL), -EINVAL);
    struct rill_fixed_length_config c = { .frame_length = 0 };
    cr_assert_eq(add_rc(X, &c), -EINVAL);
}
