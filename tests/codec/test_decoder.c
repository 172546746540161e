/* Contract tests for the decoder base (include/rill/decoder.h), black box,
 * through a toy protocol defined here:
 *
 *   '0'..'9'  a frame: that many payload bytes follow; the payload is emitted
 *   'L'       a frame with a 4-digit decimal length ("L0100" + 100 bytes)
 *   '!'       fails the stream (rill_decoder_fail)
 *   '?'       emits a message without consuming (a decoder bug)
 *   '^'       skips itself and raises a recoverable error
 *   'W'       a frame that never ends (always needs more bytes)
 *
 * decode_last emits whatever is left as one frame. Each decode call
 * records what the cumulation looked like, so the tests can check that the
 * base copies only small data: cumulation, the decode loop, errors, the
 * cumulation limit, end of input, pass-through, single decode, hand-over
 * on removal and protocol switches, and auto-read. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/composite.h"
#include "rill/decoder.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(decoder, .timeout = 30, .fini = rill_test_no_leaks);

/* ---- the toy decoder ---- */

struct obs {
    const struct rill_buf *buf; /* identity only: never dereferenced later */
    int kind;
    unsigned count;
    size_t readable;
    struct iovec iov[4];
    int niov;
};

static struct {
    int decode_calls, last_calls;
    size_t last_readable;
    struct obs obs[64];
    int nobs;
    char trace[1024];
    int read_requests;
} S;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    size_t len = strlen(S.trace);
    if (len && len < sizeof(S.trace) - 1)
        S.trace[len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(S.trace + len, sizeof(S.trace) - len, fmt, ap);
    va_end(ap);
}

static void observe(struct rill_buf *in)
{
    if (S.nobs == 64)
        return;
    struct obs *o = &S.obs[S.nobs++];
    o->buf = in;
    o->kind = rill_buf_kind(in);
    o->count = rill_buf_composite_count(in);
    o->readable = rill_buf_readable(in);
    o->niov = rill_buf_iovec(in, rill_buf_reader_index(in), o->readable, o->iov, 4, NULL);
}

static int emit_slice(struct rill_decoder *d, struct rill_buf *in, size_t n)
{
    struct rill_buf *f;
    int rc = rill_buf_read_slice(in, n, &f);
    if (rc == 0)
        rill_decoder_emit(d, rill_buf_msg(f));
    return rc;
}

static int toy_decode(struct rill_decoder *d, struct rill_buf *in)
{
    S.decode_calls++;
    observe(in);
    size_t rd = rill_buf_reader_index(in), n = rill_buf_readable(in);
    uint8_t op;
    cr_assert_gt(n, 0, "decode is called with bytes to decode");
    cr_assert_eq(rill_buf_get_u8(in, rd, &op), 0);
    if (op >= '0' && op <= '9') {
        size_t len = op - '0';
        if (n < 1 + len)
            return 0;
        rill_buf_skip(in, 1);
        return emit_slice(d, in, len);
    }
    switch (op) {
    case 'L': {
        char digits[5] = { 0 };
        if (n < 5)
            return 0;
        rill_buf_get_bytes(in, rd + 1, digits, 4);
        size_t len = strtoul(digits, NULL, 10);
        if (n < 5 + len)
            return 0;
        rill_buf_skip(in, 5);
        return emit_slice(d, in, len);
    }
    case '!':
        return rill_decoder_fail(d, RILL_EPROTO, "toy: bad byte '!' after %d calls",
                                 S.decode_calls - 1);
    case '?': {
        struct rill_buf *c;
        cr_assert_eq(rill_buf_copy(in, rd, 1, &c), 0);
        rill_decoder_emit(d, rill_buf_msg(c));
        return 0;
    }
    case 'W':
        return 0;
    case '^':
        rill_buf_skip(in, 1);
        return rill_decoder_raise(d, RILL_ETOOLARGE, "toy: skipped a bad byte");
    default:
        return rill_decoder_fail(d, RILL_EPROTO, "toy: unknown op 0x%02x", op);
    }
}

static int toy_decode_last(struct rill_decoder *d, struct rill_buf *in)
{
    S.last_calls++;
    S.last_readable = rill_buf_readable(in);
    return S.last_readable ? emit_slice(d, in, S.last_readable) : 0;
}

static const struct rill_decoder_ops toy_ops = { .decode = toy_decode,
                                                 .decode_last = toy_decode_last };

static int toy_added(struct rill_ctx *ctx)
{
    return rill_decoder_init(rill_ctx_state(ctx), ctx, &toy_ops, rill_ctx_arg(ctx));
}

static const struct rill_handler toy = {
    .name = "toy",
    .ctx_size = sizeof(struct rill_decoder),
    .added = toy_added,
    RILL_DECODER_CALLBACKS,
};

/* ---- handlers around it ---- */

static char *str_of(struct rill_msg *m)
{
    struct rill_buf *b = rill_buf_from_msg(m);
    return b ? rill_test_buf_str(b) : strdup("<msg>");
}

/* After the decoder: traces reads ("R:abc"), exceptions ("X:RILL_EPROTO")
 * and end of input, and forwards everything. */
static void tr_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    char *s = str_of(msg);
    trace("R:%s", s);
    free(s);
    rill_ctx_fire_read(ctx, msg);
}

static void tr_exception(struct rill_ctx *ctx, int err, const char *why)
{
    trace("X:%s", rill_errname(err));
    rill_ctx_fire_exception(ctx, err, why);
}

static void tr_inactive(struct rill_ctx *ctx)
{
    trace("inactive");
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler tracer = {
    .name = "tracer",
    .read = tr_read,
    .exception = tr_exception,
    .inactive = tr_inactive,
};

/* Before the decoder: counts read requests on their way to the head. */
static void rq_read_request(struct rill_ctx *ctx)
{
    S.read_requests++;
    rill_ctx_read_request(ctx);
}

static const struct rill_handler requests = { .name = "requests", .read_request = rq_read_request };

static struct rill_embedded *emb_opts(const struct rill_decoder_options *o)
{
    memset(&S, 0, sizeof(S));
    struct rill_embedded_handler hs[] = {
        { "requests", &requests, NULL },
        { "dec", &toy, (void *)o },
        { "tracer", &tracer, NULL },
    };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 3, &e), 0);
    return e;
}

static struct rill_embedded *emb(void)
{
    return emb_opts(NULL);
}

static struct rill_decoder *dec_of(struct rill_embedded *e)
{
    struct rill_ctx *ctx = rill_pipeline_get(rill_embedded_pipeline(e), "dec");
    cr_assert_not_null(ctx);
    return rill_ctx_state(ctx);
}

/* A buffer wrapping @mem (not copied, not freed): identity checks. */
static struct rill_buf *wrap(void *mem, size_t len)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, len, len, NULL, NULL, &b), 0);
    return b;
}

static int push(struct rill_embedded *e, const char *s)
{
    return rill_test_feed(e, s, strlen(s));
}

/* Pop the next message at the tail and compare it with @want. */
static void expect_next(struct rill_embedded *e, const char *want)
{
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_not_null(m, "expected \"%s\" at the tail, got nothing", want);
    char *s = str_of(m);
    cr_assert_str_eq(s, want);
    free(s);
    rill_msg_release(m);
}

static void expect_none(struct rill_embedded *e)
{
    struct rill_msg *m = rill_embedded_read_inbound(e);
    char *s = m ? str_of(m) : NULL;
    cr_assert_null(m, "unexpected \"%s\" at the tail", s);
}

static void finish(struct rill_embedded *e)
{
    size_t left;
    rill_embedded_finish(e, &left);
    rill_embedded_free(e);
}

/* ---- cumulation ---- */

Test(decoder, the_first_buffer_is_decoded_in_place)
{
    static char mem[] = "L0010abc";
    struct rill_embedded *e = emb();
    struct rill_buf *b = wrap(mem, 8);
    rill_embedded_write_inbound(e, rill_buf_msg(b));
    cr_assert_eq(S.nobs, 1);
    cr_assert_eq(S.obs[0].buf, b, "the buffer read is the cumulation itself");
    cr_assert_eq(S.obs[0].kind, RILL_BUF_WRAPPED);
    cr_assert_eq(S.obs[0].iov[0].iov_base, (void *)mem, "not copied");
    cr_assert_eq(rill_decoder_pending(dec_of(e)), 8);
    finish(e);
}

Test(decoder, a_small_read_is_copied_behind_small_leftovers)
{
    static char m1[] = "L0010abc", m2[] = "defg";
    struct rill_embedded *e = emb();
    rill_embedded_write_inbound(e, rill_buf_msg(wrap(m1, 8)));
    rill_embedded_write_inbound(e, rill_buf_msg(wrap(m2, 4)));
    cr_assert_eq(S.nobs, 2);
    struct obs *o = &S.obs[1];
    cr_assert_neq(o->kind, RILL_BUF_COMPOSITE, "small data stays in one flat buffer");
    cr_assert_eq(o->readable, 12);
    cr_assert_eq(o->niov, 1);
    cr_assert_neq((char *)o->iov[0].iov_base + 8, m2, "the small read was copied");
    cr_assert_eq(memcmp(o->iov[0].iov_base, "L0010abcdefg", 12), 0);
    push(e, "hij");
    expect_next(e, "abcdefghij");
    expect_none(e);
    finish(e);
}

Test(decoder, a_large_read_is_appended_as_a_component)
{
    static char head[] = "L3000xyz", big[2997];
    memset(big, 'B', sizeof(big));
    struct rill_embedded *e = emb();
    rill_embedded_write_inbound(e, rill_buf_msg(wrap(head, 8)));
    rill_embedded_write_inbound(e, rill_buf_msg(wrap(big, sizeof(big))));
    cr_assert_eq(S.nobs, 2);
    struct obs *o = &S.obs[1];
    cr_assert_eq(o->kind, RILL_BUF_COMPOSITE);
    cr_assert_eq(o->count, 2);
    cr_assert_eq(o->niov, 2);
    cr_assert_eq(o->iov[0].iov_base, (void *)head, "the first read is not copied either");
    cr_assert_eq(o->iov[1].iov_base, (void *)big, "the large read is a component, not a copy");
    cr_assert_eq(o->iov[1].iov_len, sizeof(big));
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_not_null(m);
    struct rill_buf *f = rill_buf_from_msg(m);
    cr_assert_eq(rill_buf_readable(f), 3000);
    struct iovec iov[4];
    cr_assert_eq(rill_buf_iovec(f, rill_buf_reader_index(f), 3000, iov, 4, NULL), 2);
    cr_assert_eq(iov[0].iov_base, (void *)(head + 5), "the frame is a view of both reads");
    cr_assert_eq(iov[1].iov_base, (void *)big);
    rill_msg_release(m);
    finish(e);
}

Test(decoder, frames_inside_one_read_are_views_of_it)
{
    static char mem[] = "3abc2de";
    struct rill_embedded *e = emb();
    rill_embedded_write_inbound(e, rill_buf_msg(wrap(mem, 7)));
    for (int i = 0; i < 2; i++) {
        struct rill_buf *f = rill_buf_from_msg(rill_embedded_read_inbound(e));
        cr_assert_not_null(f);
        cr_assert_eq(rill_buf_kind(f), RILL_BUF_SLICE);
        size_t n;
        cr_assert_eq(rill_buf_read_ptr(f, &n), (const uint8_t *)mem + (i ? 5 : 1));
        rill_buf_release(f);
    }
    finish(e);
}

Test(decoder, frames_survive_every_split)
{
    static const char in[] = "3abc0L0012hello world!9123456789";
    for (size_t at = 0; at <= sizeof(in) - 1; at++) {
        struct rill_embedded *e = emb();
        rill_test_feed_split(e, in, sizeof(in) - 1, at);
        expect_next(e, "abc");
        expect_next(e, "");
        expect_next(e, "hello world!");
        expect_next(e, "123456789");
        expect_none(e);
        cr_assert_eq(rill_decoder_pending(dec_of(e)), 0);
        finish(e);
    }
    struct rill_embedded *e = emb();
    rill_test_feed_bytes(e, in, sizeof(in) - 1);
    expect_next(e, "abc");
    expect_next(e, "");
    expect_next(e, "hello world!");
    expect_next(e, "123456789");
    expect_none(e);
    finish(e);
}

/* ---- the decode loop ---- */

Test(decoder, decodes_until_no_progress)
{
    struct rill_embedded *e = emb();
    cr_assert_eq(push(e, "3abc2de1f4gh"), 3);
    cr_assert_eq(S.decode_calls, 4, "three frames, then one call that needs more bytes");
    cr_assert_str_eq(S.trace, "R:abc R:de R:f");
    cr_assert_eq(rill_decoder_pending(dec_of(e)), 3);
    push(e, "ij");
    cr_assert_str_eq(S.trace, "R:abc R:de R:f R:ghij");
    cr_assert_eq(rill_decoder_pending(dec_of(e)), 0);
    finish(e);
}

Test(decoder, emitting_without_consuming_is_reported)
{
    struct rill_embedded *e = emb();
    push(e, "1a?1b");
    const char *why = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EDECODE);
    cr_assert_not_null(why);
    cr_assert(strstr(why, "without consuming"), "why: %s", why);
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_channel_close_reason(rill_embedded_channel(e)), RILL_EDECODE);
    cr_assert(strstr(S.trace, "R:b") == NULL, "nothing is decoded after the bug");
    finish(e);
}

/* ---- errors ---- */

Test(decoder, fail_fires_the_text_closes_and_drops_later_input)
{
    struct rill_embedded *e = emb();
    push(e, "3abc!3def");
    cr_assert_str_eq(S.trace, "R:abc X:RILL_EPROTO inactive");
    const char *why = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_EPROTO);
    cr_assert_str_eq(why, "toy: bad byte '!' after 1 calls");
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_channel_close_reason(rill_embedded_channel(e)), RILL_EPROTO);
    cr_assert_eq(S.last_calls, 0, "a failed stream is not decoded at its end");
    cr_assert_eq(push(e, "3xyz"), RILL_ECLOSED);
    expect_next(e, "abc");
    expect_none(e);
    finish(e);
}

Test(decoder, fail_with_keep_open_drops_later_input)
{
    struct rill_decoder_options o = { .keep_open_on_error = true };
    struct rill_embedded *e = emb_opts(&o);
    push(e, "3abc!3def");
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_EPROTO);
    cr_assert(rill_embedded_is_open(e));
    cr_assert_eq(rill_decoder_error(dec_of(e)), RILL_EPROTO);
    cr_assert_eq(rill_decoder_pending(dec_of(e)), 0, "the cumulation is released");
    int calls = S.decode_calls;
    push(e, "3xyz");
    cr_assert_eq(S.decode_calls, calls, "decode never runs again");
    expect_next(e, "abc");
    expect_none(e);
    rill_embedded_close(e);
    cr_assert_eq(S.last_calls, 0);
    cr_assert_str_eq(S.trace, "R:abc X:RILL_EPROTO inactive");
    finish(e);
}

Test(decoder, raise_fires_after_earlier_frames_and_closes_by_default)
{
    struct rill_embedded *e = emb();
    push(e, "3abc^3def");
    cr_assert_str_eq(S.trace, "R:abc X:RILL_ETOOLARGE inactive");
    const char *why = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert_str_eq(why, "toy: skipped a bad byte");
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_channel_close_reason(rill_embedded_channel(e)), RILL_ETOOLARGE);
    expect_next(e, "abc");
    expect_none(e);
    finish(e);
}

Test(decoder, raise_with_keep_open_goes_on_decoding)
{
    struct rill_decoder_options o = { .keep_open_on_error = true };
    struct rill_embedded *e = emb_opts(&o);
    push(e, "3abc^3def^");
    push(e, "2gh");
    cr_assert_str_eq(S.trace, "R:abc X:RILL_ETOOLARGE R:def X:RILL_ETOOLARGE R:gh");
    cr_assert(rill_embedded_is_open(e));
    cr_assert_eq(rill_decoder_error(dec_of(e)), 0, "a raise does not stop the decoder");
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_ETOOLARGE);
    expect_next(e, "abc");
    expect_next(e, "def");
    expect_next(e, "gh");
    finish(e);
}

Test(decoder, cumulation_over_its_limit_fails_with_etoolarge)
{
    struct rill_decoder_options o = { .max_cumulation = 16 };
    struct rill_embedded *e = emb_opts(&o);
    push(e, "W0000");
    push(e, "0123456789a"); /* 16 held: at the limit, fine */
    cr_assert(rill_embedded_is_open(e));
    cr_assert_eq(rill_decoder_pending(dec_of(e)), 16);
    push(e, "b");
    const char *why = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &why), RILL_ETOOLARGE);
    cr_assert_not_null(why);
    cr_assert(strstr(why, "17") && strstr(why, "16"), "why names the size and limit: %s", why);
    cr_assert_not(rill_embedded_is_open(e));
    cr_assert_eq(rill_channel_close_reason(rill_embedded_channel(e)), RILL_ETOOLARGE);
    finish(e);
}

Test(decoder, the_default_limit_is_one_mebibyte)
{
    struct rill_embedded *e = emb();
    cr_assert_eq(rill_decoder_options(dec_of(e))->max_cumulation, (size_t)1 << 20);
    size_t n = ((size_t)1 << 20) - 5;
    char *big = malloc(n);
    memset(big, 'W', n);
    rill_test_feed(e, big, n); /* 1 MiB - 5 held */
    rill_test_feed(e, big, 5); /* exactly 1 MiB */
    cr_assert(rill_embedded_is_open(e));
    cr_assert_eq(rill_decoder_pending(dec_of(e)), (size_t)1 << 20);
    rill_test_feed(e, big, 1);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_ETOOLARGE);
    cr_assert_not(rill_embedded_is_open(e));
    free(big);
    finish(e);
}

/* ---- end of input ---- */

Test(decoder, decode_last_runs_once_when_the_channel_goes_inactive)
{
    struct rill_embedded *e = emb();
    push(e, "3abc5de");
    cr_assert_eq(S.last_calls, 0);
    rill_embedded_close(e);
    cr_assert_eq(S.last_calls, 1);
    cr_assert_eq(S.last_readable, 3);
    cr_assert_str_eq(S.trace, "R:abc R:5de inactive", "the leftover frame goes before inactive");
    expect_next(e, "abc");
    expect_next(e, "5de");
    finish(e);
}

Test(decoder, decode_last_runs_with_nothing_left)
{
    struct rill_embedded *e = emb();
    push(e, "3abc");
    rill_embedded_close(e);
    cr_assert_eq(S.last_calls, 1);
    cr_assert_eq(S.last_readable, 0);
    expect_next(e, "abc");
    expect_none(e);
    finish(e);
}

Test(decoder, decode_last_runs_once_at_input_shutdown)
{
    struct rill_embedded *e = emb();
    push(e, "2ab4cd");
    struct rill_event ev = { .type = RILL_EVENT_INPUT_SHUTDOWN };
    rill_pipeline_fire_user_event(rill_embedded_pipeline(e), &ev);
    cr_assert_eq(S.last_calls, 1);
    cr_assert_eq(S.last_readable, 3);
    cr_assert(rill_embedded_is_open(e), "half-closed: the channel stays");
    rill_pipeline_fire_user_event(rill_embedded_pipeline(e), &ev);
    rill_embedded_close(e);
    cr_assert_eq(S.last_calls, 1, "not again at a second shutdown or at inactive");
    expect_next(e, "ab");
    expect_next(e, "4cd");
    expect_none(e);
    finish(e);
}

/* ---- other messages, single decode ---- */

struct note {
    struct rill_msg msg;
    int value;
};

static void note_destroy(struct rill_msg *m)
{
    free(m);
}

static struct rill_msg *note(int value)
{
    struct note *n = calloc(1, sizeof(*n));
    rill_msg_init(&n->msg, RILL_MSG_USER + 7, note_destroy);
    n->value = value;
    return &n->msg;
}

static struct rill_msg *bytes(const char *s)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(s, strlen(s), &b), 0);
    return rill_buf_msg(b);
}

Test(decoder, other_messages_pass_through_in_order)
{
    struct rill_embedded *e = emb();
    struct rill_msg *n1 = note(1), *n2 = note(2);
    struct rill_msg *in[] = { bytes("3abc"), n1, bytes("2de1"), n2, bytes("f") };
    rill_embedded_write_inbound_n(e, in, 5);
    cr_assert_str_eq(S.trace, "R:abc R:<msg> R:de R:<msg> R:f");
    expect_next(e, "abc");
    struct rill_msg *m = rill_embedded_read_inbound(e);
    cr_assert_eq(m, n1, "the same message, untouched");
    rill_msg_release(m);
    expect_next(e, "de");
    m = rill_embedded_read_inbound(e);
    cr_assert_eq(m, n2);
    rill_msg_release(m);
    expect_next(e, "f");
    finish(e);
}

Test(decoder, single_decode_emits_one_message_per_read)
{
    struct rill_decoder_options o = { .single_decode = true };
    struct rill_embedded *e = emb_opts(&o);
    cr_assert_eq(push(e, "1a1b1c"), 1);
    cr_assert_str_eq(S.trace, "R:a");
    cr_assert_eq(rill_decoder_pending(dec_of(e)), 4);
    push(e, "1d");
    cr_assert_str_eq(S.trace, "R:a R:b");
    rill_decoder_set_single(dec_of(e), false);
    push(e, "1e");
    cr_assert_str_eq(S.trace, "R:a R:b R:c R:d R:e");
    finish(e);
}

Test(decoder, decode_again_decodes_what_is_held_without_new_input)
{
    struct rill_decoder_options o = { .single_decode = true };
    struct rill_embedded *e = emb_opts(&o);
    push(e, "1a1b1c");
    cr_assert_str_eq(S.trace, "R:a");
    /* Outside state changed: decode again, no new bytes needed. */
    rill_decoder_set_single(dec_of(e), false);
    rill_decoder_decode_again(dec_of(e));
    cr_assert_str_eq(S.trace, "R:a R:b R:c");
    cr_assert_eq(rill_decoder_pending(dec_of(e)), 0);
    /* Nothing held: nothing happens. */
    int calls = S.decode_calls;
    rill_decoder_decode_again(dec_of(e));
    cr_assert_eq(S.decode_calls, calls);
    finish(e);
}

/* ---- removal: leftovers go to the next handler ---- */

Test(decoder, removal_hands_leftover_bytes_to_the_next_handler)
{
    struct rill_embedded *e = emb();
    push(e, "3abc4de");
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "dec"), 0);
    cr_assert_str_eq(S.trace, "R:abc R:4de");
    push(e, "fg");
    cr_assert_str_eq(S.trace, "R:abc R:4de R:fg", "later input flows past");
    expect_next(e, "abc");
    expect_next(e, "4de");
    expect_next(e, "fg");
    finish(e);
}

Test(decoder, removal_with_nothing_held_fires_nothing)
{
    struct rill_embedded *e = emb();
    push(e, "3abc");
    cr_assert_eq(rill_pipeline_remove(rill_embedded_pipeline(e), "dec"), 0);
    cr_assert_str_eq(S.trace, "R:abc");
    expect_next(e, "abc");
    expect_none(e);
    finish(e);
}

/* A protocol switch: a handler after the decoder replaces it, from inside
 * the read of a frame the decoder emitted, with a handler that must get
 * the rest of the stream, in order. */
static void raw_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    char *s = str_of(msg);
    trace("raw:%s", s);
    free(s);
    rill_ctx_fire_read(ctx, msg);
}

static const struct rill_handler raw = { .name = "raw", .read = raw_read };

static void sw_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_buf *b = rill_buf_from_msg(msg);
    bool upgrade = b && rill_buf_readable(b) == 7 &&
                   rill_buf_equal_bytes(b, rill_buf_reader_index(b), "UPGRADE", 7);
    rill_ctx_fire_read(ctx, msg);
    if (upgrade) {
        int how = *(int *)rill_ctx_arg(ctx);
        struct rill_pipeline *pl = rill_ctx_pipeline(ctx);
        if (how == 0)
            cr_assert_eq(rill_pipeline_replace(pl, "dec", "raw", &raw, NULL), 0);
        else
            cr_assert_eq(rill_pipeline_remove(pl, "dec"), 0);
    }
}

static const struct rill_handler switcher = { .name = "switcher", .read = sw_read };

static struct rill_embedded *switch_emb(int *how, const struct rill_decoder_options *o)
{
    memset(&S, 0, sizeof(S));
    struct rill_embedded_handler hs[] = {
        { "dec", &toy, (void *)o },
        { "switcher", &switcher, how },
        { "tracer", &tracer, NULL },
    };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 3, &e), 0);
    return e;
}

static void protocol_switch(int how, const struct rill_decoder_options *o, const char *want_trace,
                            const char *const *want, int nwant)
{
    struct rill_embedded *e = switch_emb(&how, o);
    push(e, "3abc7UPGRADE3def2gh");
    push(e, "more");
    cr_assert_str_eq(S.trace, want_trace);
    cr_assert_null(rill_pipeline_get(rill_embedded_pipeline(e), "dec"));
    for (int i = 0; i < nwant; i++)
        expect_next(e, want[i]);
    expect_none(e);
    finish(e);
}

Test(decoder, a_protocol_switch_hands_the_rest_to_the_new_handler)
{
    const char *want[] = { "abc", "UPGRADE", "3def2gh", "more" };
    protocol_switch(0, NULL, "R:abc R:UPGRADE raw:3def2gh R:3def2gh raw:more R:more", want, 4);
}

Test(decoder, a_protocol_switch_in_single_decode_mode)
{
    /* One frame per read: UPGRADE comes with the second read, whose bytes
     * are in the cumulation by then and go to the new handler with the
     * rest. */
    struct rill_decoder_options o = { .single_decode = true };
    const char *want[] = { "abc", "UPGRADE", "3def2ghmore" };
    protocol_switch(0, &o, "R:abc R:UPGRADE raw:3def2ghmore R:3def2ghmore", want, 3);
}

Test(decoder, removal_from_a_downstream_read_hands_the_rest_on)
{
    const char *want[] = { "abc", "UPGRADE", "3def2gh", "more" };
    protocol_switch(1, NULL, "R:abc R:UPGRADE R:3def2gh R:more", want, 4);
}

Test(decoder, a_protocol_switch_in_a_later_read)
{
    int how = 0;
    struct rill_embedded *e = switch_emb(&how, NULL);
    push(e, "3abc7UPG");
    push(e, "RADE1x");
    cr_assert_str_eq(S.trace, "R:abc R:UPGRADE raw:1x R:1x");
    finish(e);
}

/* ---- auto-read ---- */

Test(decoder, without_auto_read_a_read_that_emits_nothing_asks_for_more)
{
    struct rill_embedded *e = emb();
    cr_assert_eq(rill_channel_set_option(rill_embedded_channel(e), RILL_OPT_AUTO_READ, 0), 0);
    int base = S.read_requests; /* the channel's own, at activation */
    push(e, "3a");
    cr_assert_eq(S.read_requests - base, 1, "nothing emitted: the decoder asks for the next read");
    push(e, "bc");
    cr_assert_eq(S.read_requests - base, 1, "a frame went on: asking is the next handlers' call");
    expect_next(e, "abc");
    finish(e);
}

Test(decoder, with_auto_read_only_the_channel_asks)
{
    struct rill_embedded *e = emb();
    int base = S.read_requests;
    push(e, "3a");
    cr_assert_eq(S.read_requests - base, 1, "one request per read, the channel's (auto-read)");
    finish(e);
}

/* ---- init ---- */

Test(decoder, init_checks_its_arguments)
{
    struct rill_decoder d;
    static const struct rill_decoder_ops no_decode = { .decode = NULL };
    struct rill_embedded *e = emb();
    struct rill_ctx *ctx = rill_pipeline_get(rill_embedded_pipeline(e), "tracer");
    cr_assert_eq(rill_decoder_init(&d, ctx, &no_decode, NULL), -EINVAL);
    cr_assert_eq(rill_decoder_init(&d, ctx, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_decoder_init(&d, NULL, &toy_ops, NULL), -EINVAL);
    finish(e);
}
