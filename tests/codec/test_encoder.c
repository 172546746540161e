/* Contract tests for the encoder base (include/rill/encoder.h), black box:
 * match, size hint and encode; the write's promise; messages that do not
 * match pass untouched; an encode error fails the promise and releases the
 * message; rill_encoder_append copies small buffers and appends large ones
 * as components without copying; the handler checks its ops. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/composite.h"
#include "rill/embedded.h"
#include "rill/encoder.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(encoder, .timeout = 30, .fini = rill_test_no_leaks);

/* ---- a message type to encode: a number ---- */

#define NOTE_TYPE (RILL_MSG_USER + 9)

struct note {
    struct rill_msg msg;
    int value;
};

static int notes_destroyed;

static void note_destroy(struct rill_msg *m)
{
    notes_destroyed++;
    free(m);
}

static struct rill_msg *note(int value)
{
    struct note *n = calloc(1, sizeof(*n));
    cr_assert_not_null(n);
    rill_msg_init(&n->msg, NOTE_TYPE, note_destroy);
    n->value = value;
    return &n->msg;
}

static struct {
    int match_calls, hint_calls, encode_calls;
    size_t hint;          /* what size_hint returns */
    size_t cap_seen;      /* capacity of the buffer encode got */
    int kind_seen;        /* its kind */
    size_t readable_seen; /* readable bytes in it (0: a fresh buffer) */
} S;

static bool note_match(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    S.match_calls++;
    return msg->type == NOTE_TYPE;
}

static size_t note_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    S.hint_calls++;
    return S.hint;
}

/* "N<value>"; a negative value is an encode error (-EDOM). */
static int note_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    S.encode_calls++;
    S.cap_seen = rill_buf_capacity(*out);
    S.kind_seen = rill_buf_kind(*out);
    S.readable_seen = rill_buf_readable(*out);
    struct note *n = (struct note *)msg;
    if (n->value < 0)
        return -EDOM;
    char text[32];
    int len = snprintf(text, sizeof(text), "N%d", n->value);
    return rill_buf_write_bytes(*out, text, (size_t)len);
}

static const struct rill_encoder_ops note_ops = {
    .match = note_match,
    .size_hint = note_hint,
    .encode = note_encode,
};

static const struct rill_encoder_ops note_ops_no_hint = {
    .match = note_match,
    .encode = note_encode,
};

/* ---- a framer: u32 length + the buffer itself, appended ---- */

static int frame_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    S.encode_calls++;
    struct rill_buf *b = rill_buf_from_msg(msg);
    int rc = rill_buf_write_u32_be(*out, (uint32_t)rill_buf_readable(b));
    return rc ? rc : rill_encoder_append(out, rill_buf_retain(b));
}

static const struct rill_encoder_ops frame_ops = { .encode = frame_encode };

/* ---- helpers ---- */

static struct rill_embedded *emb(const struct rill_encoder_ops *ops)
{
    memset(&S, 0, sizeof(S));
    notes_destroyed = 0;
    struct rill_embedded_handler hs[] = { { "enc", &rill_encoder_handler, (void *)ops } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 1, &e), 0);
    return e;
}

static struct rill_buf *pop_buf(struct rill_embedded *e)
{
    struct rill_msg *m = rill_embedded_read_outbound(e);
    cr_assert_not_null(m, "nothing reached the head");
    struct rill_buf *b = rill_buf_from_msg(m);
    cr_assert_not_null(b, "the head got something that is not a buffer");
    return b;
}

static void expect_bytes(struct rill_buf *b, const void *want, size_t len)
{
    cr_assert_eq(rill_buf_readable(b), len, "%zu bytes, want %zu", rill_buf_readable(b), len);
    cr_assert(rill_buf_equal_bytes(b, rill_buf_reader_index(b), want, len));
}

static struct rill_buf *wrap(void *mem, size_t len)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, len, len, NULL, NULL, &b), 0);
    return b;
}

static void finish(struct rill_embedded *e)
{
    size_t left;
    rill_embedded_finish(e, &left);
    rill_embedded_free(e);
}

/* ---- match, size hint, encode ---- */

Test(encoder, a_matching_message_is_encoded_into_a_pooled_buffer_of_the_hinted_size)
{
    struct rill_embedded *e = emb(&note_ops);
    S.hint = 3000;
    cr_assert_eq(rill_embedded_write_outbound(e, note(42)), 1);
    cr_assert_eq(S.match_calls, 1);
    cr_assert_eq(S.hint_calls, 1);
    cr_assert_eq(S.encode_calls, 1);
    cr_assert_geq(S.cap_seen, 3000, "capacity %zu for a hint of 3000", S.cap_seen);
    cr_assert_eq(S.kind_seen, RILL_BUF_POOLED);
    cr_assert_eq(S.readable_seen, 0, "encode gets an empty buffer");
    cr_assert_eq(notes_destroyed, 1, "the base releases the message after encoding");
    struct rill_buf *b = pop_buf(e);
    expect_bytes(b, "N42", 3);
    rill_buf_release(b);
    finish(e);
}

Test(encoder, no_size_hint_means_256)
{
    struct rill_embedded *e = emb(&note_ops_no_hint);
    rill_embedded_write_outbound(e, note(1));
    cr_assert_geq(S.cap_seen, 256);
    struct rill_buf *b = pop_buf(e);
    expect_bytes(b, "N1", 2);
    rill_buf_release(b);
    finish(e);

    e = emb(&note_ops);
    S.hint = 0; /* a hint of 0 is the default too */
    rill_embedded_write_outbound(e, note(2));
    cr_assert_eq(S.hint_calls, 1);
    cr_assert_geq(S.cap_seen, 256);
    b = pop_buf(e);
    expect_bytes(b, "N2", 2);
    rill_buf_release(b);
    finish(e);
}

Test(encoder, the_output_grows_past_a_small_hint)
{
    struct rill_embedded *e = emb(&note_ops);
    S.hint = 1;
    rill_embedded_write_outbound(e, note(123456789));
    struct rill_buf *b = pop_buf(e);
    expect_bytes(b, "N123456789", 10);
    rill_buf_release(b);
    finish(e);
}

Test(encoder, messages_that_do_not_match_pass_untouched)
{
    struct rill_embedded *e = emb(&note_ops);
    struct rill_buf *raw;
    cr_assert_eq(rill_buf_copy_from("raw", 3, &raw), 0);
    cr_assert_eq(rill_embedded_write_outbound(e, rill_buf_msg(raw)), 1);
    cr_assert_eq(S.match_calls, 1);
    cr_assert_eq(S.hint_calls + S.encode_calls, 0, "no hint, no encode for it");
    struct rill_buf *b = pop_buf(e);
    cr_assert_eq(b, raw, "the same buffer, not a copy");
    expect_bytes(b, "raw", 3);
    rill_buf_release(b);
    finish(e);
}

Test(encoder, order_is_kept_between_encoded_and_passed_messages)
{
    struct rill_embedded *e = emb(&note_ops);
    struct rill_buf *raw;
    cr_assert_eq(rill_buf_copy_from("raw", 3, &raw), 0);
    rill_embedded_write(e, note(1), NULL);
    rill_embedded_write(e, rill_buf_msg(raw), NULL);
    rill_embedded_write(e, note(2), NULL);
    rill_embedded_flush(e);
    const char *want[] = { "N1", "raw", "N2" };
    for (int i = 0; i < 3; i++) {
        struct rill_buf *b = pop_buf(e);
        expect_bytes(b, want[i], strlen(want[i]));
        rill_buf_release(b);
    }
    finish(e);
}

/* ---- promises ---- */

Test(encoder, the_promise_completes_with_the_write_of_the_encoded_bytes)
{
    struct rill_embedded *e = emb(&note_ops);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, note(7), p);
    cr_assert_eq(rill_promise_result(p, NULL), -EINPROGRESS, "not before the flush");
    cr_assert_eq(rill_channel_pending_bytes(rill_embedded_channel(e)), 2,
                 "the encoded bytes are what is queued");
    rill_embedded_flush(e);
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    struct rill_buf *b = pop_buf(e);
    expect_bytes(b, "N7", 2);
    rill_buf_release(b);
    rill_promise_release(p);
    finish(e);
}

Test(encoder, an_encode_error_fails_the_promise_and_releases_the_message)
{
    struct rill_embedded *e = emb(&note_ops);
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    rill_embedded_write(e, note(-1), p);
    cr_assert_eq(rill_promise_result(p, NULL), -EDOM);
    cr_assert_eq(notes_destroyed, 1);
    rill_embedded_flush(e);
    cr_assert_eq(rill_embedded_outbound_count(e), 0, "nothing is written");
    cr_assert_eq(rill_channel_pending_bytes(rill_embedded_channel(e)), 0);
    cr_assert(rill_embedded_is_open(e), "an encode error does not close the channel");
    rill_promise_release(p);

    /* Without a promise the error has nowhere to go but the log: still no
     * leak, and the next message is encoded. */
    rill_embedded_write(e, note(-2), NULL);
    cr_assert_eq(notes_destroyed, 2);
    cr_assert_eq(rill_embedded_write_outbound(e, note(5)), 1);
    struct rill_buf *b = pop_buf(e);
    expect_bytes(b, "N5", 2);
    rill_buf_release(b);
    finish(e);
}

Test(encoder, write_outbound_reports_the_encode_error)
{
    struct rill_embedded *e = emb(&note_ops);
    cr_assert_eq(rill_embedded_write_outbound(e, note(-1)), -EDOM);
    finish(e);
}

/* ---- appending the message's own buffers ---- */

Test(encoder, a_large_payload_is_appended_without_a_copy)
{
    static char payload[4096];
    memset(payload, 'p', sizeof(payload));
    struct rill_embedded *e = emb(&frame_ops);
    rill_embedded_write_outbound(e, rill_buf_msg(wrap(payload, sizeof(payload))));
    struct rill_buf *b = pop_buf(e);
    cr_assert_eq(rill_buf_kind(b), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_composite_count(b), 2, "the header and the payload");
    cr_assert_eq(rill_buf_readable(b), 4 + sizeof(payload));
    struct iovec iov[4];
    cr_assert_eq(rill_buf_iovec(b, rill_buf_reader_index(b), rill_buf_readable(b), iov, 4, NULL),
                 2);
    cr_assert_eq(iov[0].iov_len, 4);
    cr_assert(memcmp(iov[0].iov_base, "\0\0\x10\0", 4) == 0, "u32 length 4096");
    cr_assert_eq(iov[1].iov_base, (void *)payload, "the payload's own memory");
    cr_assert_eq(iov[1].iov_len, sizeof(payload));
    rill_buf_release(b);
    finish(e);
}

Test(encoder, a_small_payload_is_copied)
{
    static char payload[100];
    memset(payload, 's', sizeof(payload));
    struct rill_embedded *e = emb(&frame_ops);
    rill_embedded_write_outbound(e, rill_buf_msg(wrap(payload, sizeof(payload))));
    struct rill_buf *b = pop_buf(e);
    cr_assert_neq(rill_buf_kind(b), RILL_BUF_COMPOSITE, "one flat buffer");
    cr_assert_eq(rill_buf_readable(b), 104);
    size_t n;
    const uint8_t *p = rill_buf_read_ptr(b, &n);
    cr_assert_eq(n, 104);
    cr_assert(memcmp(p, "\0\0\0\x64", 4) == 0);
    cr_assert(p + 4 != (const uint8_t *)payload, "copied");
    cr_assert(memcmp(p + 4, payload, 100) == 0);
    rill_buf_release(b);
    finish(e);
}

Test(encoder, append_at_the_512_byte_boundary)
{
    static char at[512], over[513];
    struct rill_buf *out;
    cr_assert_eq(rill_buf_alloc(16, &out), 0);
    cr_assert_eq(rill_encoder_append(&out, wrap(at, sizeof(at))), 0);
    cr_assert_neq(rill_buf_kind(out), RILL_BUF_COMPOSITE, "512 bytes are copied");
    cr_assert_eq(rill_buf_readable(out), 512);
    cr_assert_eq(rill_encoder_append(&out, wrap(over, sizeof(over))), 0);
    cr_assert_eq(rill_buf_kind(out), RILL_BUF_COMPOSITE, "513 bytes are appended");
    cr_assert_eq(rill_buf_composite_count(out), 2);
    cr_assert_eq(rill_buf_readable(out), 1025);
    rill_buf_release(out);
}

Test(encoder, append_to_a_composite_and_of_empty_buffers)
{
    static char a[1000], b[2000];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    struct rill_buf *out;
    cr_assert_eq(rill_buf_alloc(16, &out), 0);
    /* An empty output takes a large buffer as its only component. */
    cr_assert_eq(rill_encoder_append(&out, wrap(a, sizeof(a))), 0);
    cr_assert_eq(rill_buf_readable(out), 1000);
    cr_assert_eq(rill_encoder_append(&out, wrap(b, sizeof(b))), 0);
    cr_assert_eq(rill_buf_kind(out), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_readable(out), 3000);
    struct iovec iov[4];
    int n = rill_buf_iovec(out, rill_buf_reader_index(out), 3000, iov, 4, NULL);
    cr_assert_geq(n, 2);
    cr_assert_eq(iov[n - 2].iov_base, (void *)a);
    cr_assert_eq(iov[n - 1].iov_base, (void *)b);
    struct rill_buf *empty;
    cr_assert_eq(rill_buf_alloc(8, &empty), 0);
    unsigned count = rill_buf_composite_count(out);
    cr_assert_eq(rill_encoder_append(&out, empty), 0);
    cr_assert_eq(rill_buf_readable(out), 3000, "an empty buffer adds nothing");
    cr_assert_eq(rill_buf_composite_count(out), count);
    struct rill_buf *small;
    cr_assert_eq(rill_buf_copy_from("tail", 4, &small), 0);
    cr_assert_eq(rill_encoder_append(&out, small), 0);
    cr_assert_eq(rill_buf_readable(out), 3004);
    cr_assert(rill_buf_equal_bytes(out, rill_buf_reader_index(out) + 3000, "tail", 4));
    rill_buf_release(out);
}

/* ---- from a codec's own write callback ---- */

static void codec_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill_encoder_write(ctx, &note_ops, msg, p);
}

static const struct rill_handler codec = { .name = "codec", .write = codec_write };

Test(encoder, rill_encoder_write_from_a_codec)
{
    memset(&S, 0, sizeof(S));
    notes_destroyed = 0;
    struct rill_embedded_handler hs[] = { { "codec", &codec, NULL } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 1, &e), 0);
    rill_embedded_write_outbound(e, note(9));
    struct rill_buf *b = pop_buf(e);
    expect_bytes(b, "N9", 2);
    rill_buf_release(b);
    finish(e);
}

/* ---- the handler ---- */

Test(encoder, the_handler_needs_ops_with_encode)
{
    static const struct rill_encoder_ops no_encode = { .match = note_match };
    struct rill_embedded_handler hs[] = { { "enc", &rill_encoder_handler, NULL } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 1, &e), -EINVAL);
    hs[0].arg = (void *)&no_encode;
    cr_assert_eq(rill_embedded_new(hs, 1, &e), -EINVAL);
}
