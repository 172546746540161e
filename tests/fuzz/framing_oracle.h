/* The oracle shared by the framing fuzz targets (fuzz_length_field.c,
 * fuzz_line.c, fuzz_delimiter.c, fuzz_fixed_length.c, fuzz_varint.c).
 *
 * A sink handler after the decoder records what it receives: frames (their
 * bytes), strings (from the string decoder) and exceptions (their codes).
 * Each target also runs a naive reference decoder over the whole stream at
 * once and records what it should have seen. The two must be equal however
 * the harness cut the input into reads (fuzz.h). When errors close the
 * channel, only the events up to the first exception are compared: what a
 * closing pipeline still delivers from the read in progress is not part of
 * the contract. Besides, every frame must be a view of the input (never a
 * pooled copy) and every exception must carry a text. */
#ifndef RILL_FUZZ_FRAMING_ORACLE_H
#define RILL_FUZZ_FRAMING_ORACLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "rill/string_codec.h"

/* Events, serialised: 'F' or 'S', a 4-byte length and the bytes; 'X' and
 * the 4-byte error code. */
struct fz_log {
    uint8_t *v;
    size_t n, cap;
};

static inline void fz_put(struct fz_log *l, const void *p, size_t n)
{
    if (l->n + n > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        while (cap < l->n + n)
            cap *= 2;
        l->v = realloc(l->v, cap);
        if (!l->v)
            abort();
        l->cap = cap;
    }
    memcpy(l->v + l->n, p, n);
    l->n += n;
}

static inline void fz_frame(struct fz_log *l, char kind, const void *p, size_t n)
{
    uint32_t len = (uint32_t)n;
    fz_put(l, &kind, 1);
    fz_put(l, &len, 4);
    fz_put(l, p, n);
}

static inline void fz_error(struct fz_log *l, int err)
{
    int32_t e = err;
    fz_put(l, "X", 1);
    fz_put(l, &e, 4);
}

/* Length of the log up to and including its first exception. */
static inline size_t fz_upto_error(const struct fz_log *l)
{
    size_t i = 0;
    while (i < l->n) {
        char kind = (char)l->v[i];
        uint32_t len;
        if (kind == 'X')
            return i + 5;
        memcpy(&len, l->v + i + 1, 4);
        i += 5 + len;
    }
    return l->n;
}

/* What the pipeline delivered, and what it should have. */
static struct {
    struct fz_log got, want;
} fz;

static void fz_sink_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_buf *b = rill_buf_from_msg(msg);
    struct rill_string *s = rill_string_from_msg(msg);
    if (b) {
        if (rill_buf_kind(b) == RILL_BUF_POOLED) {
            fprintf(stderr, "framing oracle: a frame is a pooled copy, not a view\n");
            abort();
        }
        size_t n = rill_buf_readable(b);
        uint8_t *tmp = malloc(n ? n : 1);
        if (!tmp || rill_buf_get_bytes(b, rill_buf_reader_index(b), tmp, n) != 0)
            abort();
        fz_frame(&fz.got, 'F', tmp, n);
        free(tmp);
    } else if (s) {
        fz_frame(&fz.got, 'S', rill_string_data(s), rill_string_len(s));
    } else {
        fprintf(stderr, "framing oracle: unexpected message type %u\n", msg->type);
        abort();
    }
    rill_msg_release(msg);
}

static void fz_sink_exception(struct rill_ctx *ctx, int err, const char *why)
{
    if (err >= 0 || !why || !why[0]) {
        fprintf(stderr, "framing oracle: exception %d without a text\n", err);
        abort();
    }
    fz_error(&fz.got, err);
}

static const struct rill_handler fz_sink = {
    .name = "sink",
    .read = fz_sink_read,
    .exception = fz_sink_exception,
};

static inline void fz_reset(void)
{
    fz.got.n = 0;
    fz.want.n = 0;
}

/* Compare (everything, or up to the first exception when errors close the
 * channel) and abort with both logs on a difference. */
static inline void fz_check(const char *target, bool closes_on_error)
{
    size_t ng = fz.got.n, nw = fz.want.n;
    if (closes_on_error) {
        ng = fz_upto_error(&fz.got);
        nw = fz_upto_error(&fz.want);
    }
    if (ng == nw && (ng == 0 || memcmp(fz.got.v, fz.want.v, ng) == 0))
        return;
    fprintf(stderr, "%s: the decoder's events differ from the reference's\n  got: ", target);
    for (size_t i = 0; i < ng; i++)
        fprintf(stderr, "%02x", fz.got.v[i]);
    fprintf(stderr, "\n want: ");
    for (size_t i = 0; i < nw; i++)
        fprintf(stderr, "%02x", fz.want.v[i]);
    fprintf(stderr, "\n");
    abort();
}

#endif /* RILL_FUZZ_FRAMING_ORACLE_H */
