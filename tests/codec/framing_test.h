/* Helpers shared by the framing codec tests (tests/codec/test_length_field.c,
 * test_line.c, test_delimiter.c, test_fixed_length.c, test_varint.c,
 * test_string_codec.c): a decoder in an embedded channel with an exception
 * recorder behind it, input fed whole, split at every byte, cut at every
 * pair of offsets and byte by byte, and frames checked byte for byte and
 * for being views of the input rather than copies; a prepender passing
 * other messages on; a payload of many MiB that costs no memory. */
#ifndef RILL_TEST_FRAMING_TEST_H
#define RILL_TEST_FRAMING_TEST_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/composite.h"
#include "rill/embedded.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "rill/string_codec.h"
#include "util/feed.h"

struct frame {
    const char *p;
    size_t len;
};
#define F(lit)                                                                                     \
    {                                                                                              \
        (lit), sizeof(lit) - 1                                                                     \
    }

/* Every exception on its way to the tail (the embedded channel keeps only
 * the last one). */
struct catcher {
    int n, err;
    char why[256];
};

static inline void catch_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct catcher *c = rill_ctx_arg(ctx);
    c->n++;
    c->err = err;
    snprintf(c->why, sizeof(c->why), "%s", why ? why : "");
    rill_ctx_fire_exception(ctx, err, why);
}

static const struct rill_handler catcher
    __attribute__((unused)) = { .name = "catcher", .exception = catch_exception };

static inline struct rill_embedded *emb(const struct rill_handler *h, const void *cfg,
                                        struct catcher *c)
{
    memset(c, 0, sizeof(*c));
    struct rill_embedded_handler hs[] = { { "dec", h, (void *)cfg }, { "catcher", &catcher, c } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 2, &e), 0);
    return e;
}

static inline int add_rc(const struct rill_handler *h, const void *cfg)
{
    struct rill_embedded_handler hs[] = { { "dec", h, (void *)cfg } };
    struct rill_embedded *e = NULL;
    int rc = rill_embedded_new(hs, 1, &e);
    rill_embedded_free(e);
    return rc;
}

/* Pop the frames at the tail and compare them with @want byte for byte;
 * each must be a view of the input (a slice, or a composite of slices when
 * it spans reads), never a pooled copy. */
static inline void expect_frames(struct rill_embedded *e, const struct frame *want, size_t n,
                                 const char *how)
{
    for (size_t i = 0; i < n; i++) {
        struct rill_msg *m = rill_embedded_read_inbound(e);
        cr_assert_not_null(m, "%s: frame %zu is missing", how, i);
        struct rill_buf *b = rill_buf_from_msg(m);
        cr_assert_not_null(b, "%s: frame %zu is not a buffer", how, i);
        cr_assert_neq(rill_buf_kind(b), RILL_BUF_POOLED, "%s: frame %zu is a copy", how, i);
        cr_assert_eq(rill_buf_readable(b), want[i].len, "%s: frame %zu has %zu bytes, want %zu",
                     how, i, rill_buf_readable(b), want[i].len);
        cr_assert(rill_buf_equal_bytes(b, rill_buf_reader_index(b), want[i].p, want[i].len),
                  "%s: frame %zu differs", how, i);
        rill_msg_release(m);
    }
    struct rill_msg *extra = rill_embedded_read_inbound(e);
    if (extra)
        rill_msg_release(extra);
    cr_assert_null(extra, "%s: more than %zu frames", how, n);
}

/* What one input must produce, however it is cut. */
struct expect {
    const struct frame *frames;
    size_t n;
    int nerr;        /* exceptions */
    int err;         /* the last one's code */
    const char *why; /* and text */
    bool open;       /* channel open at the end */
};

static inline void finish(struct rill_embedded *e)
{
    rill_embedded_take_exception(e, NULL);
    size_t left = 1;
    rill_embedded_finish(e, &left);
    cr_assert_eq(left, 0, "messages left at finish");
    rill_embedded_free(e);
}

enum cut { WHOLE, SPLIT, PAIR, BYTES };

static inline void run_case(const struct rill_handler *h, const void *cfg, const void *in,
                            size_t len, enum cut mode, size_t i, size_t j, const struct expect *x)
{
    char how[64];
    struct catcher c;
    struct rill_embedded *e = emb(h, cfg, &c);
    size_t cuts[2] = { i, j };
    switch (mode) {
    case WHOLE:
        snprintf(how, sizeof(how), "whole");
        rill_test_feed(e, in, len);
        break;
    case SPLIT:
        snprintf(how, sizeof(how), "split at %zu", i);
        rill_test_feed_split(e, in, len, i);
        break;
    case PAIR:
        snprintf(how, sizeof(how), "cut at %zu and %zu", i, j);
        rill_test_feed_cuts(e, in, len, cuts, 2);
        break;
    case BYTES:
        snprintf(how, sizeof(how), "byte by byte");
        rill_test_feed_bytes(e, in, len);
        break;
    }
    expect_frames(e, x->frames, x->n, how);
    cr_assert_eq(c.n, x->nerr, "%s: %d exceptions, want %d (last: %s)", how, c.n, x->nerr, c.why);
    if (x->nerr) {
        cr_assert_eq(c.err, x->err, "%s: error %d, want %d", how, c.err, x->err);
        cr_assert_str_eq(c.why, x->why, "%s: text \"%s\"", how, c.why);
    }
    cr_assert_eq(rill_embedded_is_open(e), x->open, "%s: channel %s", how,
                 x->open ? "closed" : "open");
    finish(e);
}

/* Whole, split at every byte, cut at every pair of offsets (short inputs),
 * and byte by byte. */
static inline void run_every_split(const struct rill_handler *h, const void *cfg, const void *in,
                                   size_t len, const struct expect *x)
{
    run_case(h, cfg, in, len, WHOLE, 0, 0, x);
    for (size_t i = 1; i < len; i++) {
        run_case(h, cfg, in, len, SPLIT, i, 0, x);
        for (size_t j = i + 1; len <= 64 && j < len; j++)
            run_case(h, cfg, in, len, PAIR, i, j, x);
    }
    run_case(h, cfg, in, len, BYTES, 0, 0, x);
}

static inline void run_ok(const struct rill_handler *h, const void *cfg, const void *in, size_t len,
                          const struct frame *frames, size_t n)
{
    struct expect x = { .frames = frames, .n = n, .open = true };
    run_every_split(h, cfg, in, len, &x);
}

/* A channel with the encoder @h (config @cfg) alone. */
static inline struct rill_embedded *enc(const struct rill_handler *h, const void *cfg)
{
    struct rill_embedded_handler hs[] = { { "enc", h, (void *)cfg } };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, 1, &e), 0);
    return e;
}

/* A pooled buffer holding a copy of @n bytes at @p. */
static inline struct rill_msg *bufmsg(const void *p, size_t n)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(p, n, &b), 0);
    return rill_buf_msg(b);
}

/* Write the @len bytes at @mem into the decoder @h (config @cfg), wrapped
 * rather than copied, and expect the frames @want: each a slice whose
 * bytes are want[i].p, a pointer into @mem. */
static inline void expect_slices(const struct rill_handler *h, const void *cfg, char *mem,
                                 size_t len, const struct frame *want, size_t n)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(mem, len, len, NULL, NULL, &b), 0);
    struct catcher cat;
    struct rill_embedded *e = emb(h, cfg, &cat);
    cr_assert_eq(rill_embedded_write_inbound(e, rill_buf_msg(b)), (int)n);
    for (size_t i = 0; i < n; i++) {
        struct rill_buf *f = rill_buf_from_msg(rill_embedded_read_inbound(e));
        cr_assert_eq(rill_buf_kind(f), RILL_BUF_SLICE);
        size_t got;
        cr_assert_eq(rill_buf_read_ptr(f, &got), (const uint8_t *)want[i].p);
        cr_assert_eq(got, want[i].len);
        rill_buf_release(f);
    }
    finish(e);
}

/* The encoder @h (config @cfg) writes a message that is not a buffer on
 * as it is. */
static inline void expect_passes_other(const struct rill_handler *h, const void *cfg)
{
    struct rill_embedded *e = enc(h, cfg);
    struct rill_string *s;
    cr_assert_eq(rill_string_new("as is", &s), 0);
    cr_assert_eq(rill_embedded_write_outbound(e, rill_string_msg(s)), 1);
    struct rill_msg *m = rill_embedded_read_outbound(e);
    cr_assert_eq(m, rill_string_msg(s));
    rill_msg_release(m);
    finish(e);
}

/* A composite of @n references to one 1 MiB wrapped buffer: a payload of
 * @n MiB that costs no memory. */
static inline struct rill_msg *huge(size_t n)
{
    static char mib[1 << 20];
    struct rill_buf *one, *c;
    cr_assert_eq(rill_buf_wrap(mib, sizeof(mib), sizeof(mib), NULL, NULL, &one), 0);
    cr_assert_eq(rill_buf_composite_new(&c), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(rill_buf_composite_add(c, rill_buf_retain(one)), 0);
    rill_buf_release(one);
    return rill_buf_msg(c);
}

#endif
