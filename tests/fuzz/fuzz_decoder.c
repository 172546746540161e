/* libFuzzer target for the decoder base itself (rill/decoder.h), through a
 * toy length-prefixed protocol defined here. Input:
 *
 *   byte 0   options: bit 0 single_decode, bit 1 keep_open_on_error,
 *            bit 2 max_cumulation 64 (else the default), bit 3 no
 *            decode_last, bit 4 decode_last fails
 *   byte 1   how the harness cuts the rest into reads (fuzz.h)
 *   rest     frames: op (1 byte), length (u16 big-endian), payload
 *
 * Ops: 'E' fails the stream; 'Z' emits without consuming (a decoder bug
 * the base must report); 'N' consumes the 3 header bytes only; 'R' skips
 * the frame and raises a recoverable error; 'D' emits header and payload
 * as two messages; 'S' is a frame after which the next handler replaces the
 * decoder (a protocol switch); anything else is a frame emitted whole.
 * decode_last emits what is left as one message.
 *
 * Oracle, besides the sanitizers and the leak check: the bytes the decoder
 * consumes, followed by the bytes the handler that replaced it receives,
 * are always a prefix of the input, and all of it when nothing failed; the
 * messages the next handler receives are exactly those emitted, in order. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/decoder.h"
#include "rill/error.h"
#include "rill/msg.h"
#include "rill/pipeline.h"

enum {
    OPT_SINGLE = 1,
    OPT_KEEP_OPEN = 2,
    OPT_SMALL_MAX = 4,
    OPT_NO_LAST = 8,
    OPT_LAST_FAILS = 16,
};

struct log {
    uint8_t *v;
    size_t n, cap;
};

static struct {
    const uint8_t *stream;
    size_t len;
    unsigned opts;
    struct log consumed; /* by the decoder, in order */
    struct log emitted;  /* bytes of the messages the decoder emitted */
    struct log received; /* bytes of the messages the next handler got */
    struct log rest;     /* bytes the replacing handler got */
    size_t checked_consumed, checked_rest;
    const char *dec_name;
    const struct rill_msg *switch_msg;
    bool switched, switched_inactive, clean;
} g;

static void die(const char *what)
{
    fprintf(stderr,
            "fuzz_decoder: %s (consumed %zu, rest %zu, emitted %zu, received %zu, "
            "input %zu, options 0x%x)\n",
            what, g.consumed.n, g.rest.n, g.emitted.n, g.received.n, g.len, g.opts);
    abort();
}

static void log_add(struct log *l, const struct rill_buf *b, size_t index, size_t n)
{
    if (l->n + n > l->cap)
        die("log overflow: more bytes than the input could explain");
    if (rill_buf_get_bytes(b, index, l->v + l->n, n) != 0)
        die("rill_buf_get_bytes failed on a readable range");
    l->n += n;
}

static void log_msg(struct log *l, struct rill_msg *m)
{
    struct rill_buf *b = rill_buf_from_msg(m);
    if (!b)
        die("a non-buffer message reached the next handler");
    log_add(l, b, rill_buf_reader_index(b), rill_buf_readable(b));
}

/* consumed ++ rest must be a prefix of the input. Both logs only grow (and
 * consumed no more once rest starts), so only new bytes are compared. */
static void check_prefix(void)
{
    if (g.consumed.n + g.rest.n > g.len ||
        memcmp(g.consumed.v + g.checked_consumed, g.stream + g.checked_consumed,
               g.consumed.n - g.checked_consumed) != 0 ||
        memcmp(g.rest.v + g.checked_rest, g.stream + g.consumed.n + g.checked_rest,
               g.rest.n - g.checked_rest) != 0)
        die("bytes lost, duplicated or reordered");
    if (g.rest.n && g.checked_consumed != g.consumed.n)
        die("the decoder consumed bytes after handing the rest over");
    g.checked_consumed = g.consumed.n;
    g.checked_rest = g.rest.n;
}

/* ---- the toy decoder ---- */

static void emit(struct rill_decoder *d, struct rill_buf *frame)
{
    log_add(&g.emitted, frame, rill_buf_reader_index(frame), rill_buf_readable(frame));
    rill_decoder_emit(d, &frame->msg);
}

static int cut(struct rill_decoder *d, struct rill_buf *in, size_t n, struct rill_buf **out)
{
    log_add(&g.consumed, in, rill_buf_reader_index(in), n);
    check_prefix();
    return rill_buf_read_slice(in, n, out);
}

static int toy_decode(struct rill_decoder *d, struct rill_buf *in)
{
    size_t n = rill_buf_readable(in), rd = rill_buf_reader_index(in);
    uint8_t op;
    uint16_t len;
    struct rill_buf *f, *f2;
    if (n < 3)
        return 0;
    if (rill_buf_get_u8(in, rd, &op) || rill_buf_get_u16_be(in, rd + 1, &len))
        die("header read failed inside the readable range");
    switch (op) {
    case 'E':
        return rill_decoder_fail(d, RILL_EPROTO, "toy: error frame (length %u)", len);
    case 'Z':
        if (rill_buf_copy(in, rd, 3, &f))
            return -ENOMEM;
        emit(d, f); /* without consuming: the base must fail the stream */
        return 0;
    case 'N':
        log_add(&g.consumed, in, rd, 3);
        check_prefix();
        return rill_buf_skip(in, 3);
    }
    size_t total = 3 + (size_t)len;
    if (n < total)
        return 0;
    if (op == 'R') {
        log_add(&g.consumed, in, rd, total);
        check_prefix();
        if (rill_buf_skip(in, total))
            die("skip failed inside the readable range");
        return rill_decoder_raise(d, RILL_ETOOLARGE, "toy: frame of %zu bytes skipped", total);
    }
    if (op == 'D') {
        int rc = cut(d, in, 3, &f);
        if (rc)
            return rc;
        emit(d, f);
        if (len == 0)
            return 0;
        if ((rc = rill_buf_read_slice(in, len, &f2)) != 0)
            return rc;
        /* read_slice moved past the payload: log it as consumed too. */
        log_add(&g.consumed, f2, rill_buf_reader_index(f2), len);
        check_prefix();
        emit(d, f2);
        return 0;
    }
    int rc = cut(d, in, total, &f);
    if (rc)
        return rc;
    if (op == 'S')
        g.switch_msg = &f->msg;
    emit(d, f);
    return 0;
}

static int toy_decode_last(struct rill_decoder *d, struct rill_buf *in)
{
    if (g.opts & OPT_LAST_FAILS)
        return rill_decoder_fail(d, RILL_EPROTO, "toy: %zu bytes truncated", rill_buf_readable(in));
    size_t n = rill_buf_readable(in);
    if (n == 0)
        return 0;
    struct rill_buf *f;
    int rc = cut(d, in, n, &f);
    if (rc == 0)
        emit(d, f);
    return rc;
}

static const struct rill_decoder_ops toy_ops = { .decode = toy_decode,
                                                 .decode_last = toy_decode_last };
static const struct rill_decoder_ops toy_ops_no_last = { .decode = toy_decode };

static int toy_added(struct rill_ctx *ctx)
{
    struct rill_decoder_options o = {
        .single_decode = g.opts & OPT_SINGLE,
        .keep_open_on_error = g.opts & OPT_KEEP_OPEN,
        .max_cumulation = (g.opts & OPT_SMALL_MAX) ? 64 : 0,
    };
    g.dec_name = rill_ctx_name(ctx);
    return rill_decoder_init(rill_ctx_state(ctx), ctx,
                             (g.opts & OPT_NO_LAST) ? &toy_ops_no_last : &toy_ops, &o);
}

static const struct rill_handler toy_handler = {
    .name = "toy",
    .ctx_size = sizeof(struct rill_decoder),
    .added = toy_added,
    RILL_DECODER_CALLBACKS,
};

/* ---- after the switch: takes the rest of the stream ---- */

static void rest_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    log_msg(&g.rest, msg);
    check_prefix();
    rill_msg_release(msg);
}

static const struct rill_handler rest_handler = { .name = "rest", .read = rest_read };

/* ---- the next handler: checks what arrives, switches protocols ---- */

static void sink_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    size_t at = g.received.n;
    log_msg(&g.received, msg);
    if (g.received.n > g.emitted.n ||
        memcmp(g.received.v + at, g.emitted.v + at, g.received.n - at) != 0)
        die("messages reached the next handler out of order or unemitted");
    bool do_switch = msg == g.switch_msg;
    rill_msg_release(msg);
    if (do_switch && !g.switched) {
        g.switched = true;
        /* decoder.h: undecoded bytes are handed over while the channel is
         * active; a switch during the end-of-input decode may drop them. */
        g.switched_inactive = !rill_channel_is_active(rill_ctx_channel(ctx));
        if (rill_pipeline_replace(rill_ctx_pipeline(ctx), g.dec_name, "rest", &rest_handler,
                                  NULL) != 0)
            die("replacing the decoder failed");
    }
}

static void sink_exception(struct rill_ctx *ctx, int err, const char *why)
{
    if (!why || !why[0])
        die("a decoder exception without a text");
    if (!(err == RILL_ETOOLARGE && (g.opts & OPT_KEEP_OPEN) && strstr(why, "skipped")))
        g.clean = false;
}

static const struct rill_handler sink_handler = {
    .name = "sink",
    .read = sink_read,
    .exception = sink_exception,
};

static void log_init(struct log *l, size_t cap)
{
    l->v = malloc(cap ? cap : 1);
    l->n = 0;
    l->cap = cap;
    if (!l->v)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    memset(&g, 0, sizeof(g));
    g.opts = data[0];
    g.stream = data + 2;
    g.len = size - 2;
    g.clean = true;
    log_init(&g.consumed, g.len);
    log_init(&g.rest, g.len);
    /* A 'Z' message is emitted without being consumed: one header more. */
    log_init(&g.emitted, g.len + 3);
    log_init(&g.received, g.len + 3);

    const struct rill_handler *hs[] = { &toy_handler, &sink_handler };
    void *args[] = { NULL, NULL };
    rill_fuzz_run(hs, args, 2, data + 1, size - 1);

    check_prefix();
    if (g.received.n != g.emitted.n && g.clean)
        die("emitted messages never reached the next handler");
    bool all_decoded =
        g.switched ? !g.switched_inactive : !(g.opts & (OPT_NO_LAST | OPT_LAST_FAILS));
    if (g.clean && all_decoded && g.consumed.n + g.rest.n != g.len)
        die("the stream ended cleanly but not every byte was decoded or handed over");
    free(g.consumed.v);
    free(g.rest.v);
    free(g.emitted.v);
    free(g.received.v);
    return 0;
}
