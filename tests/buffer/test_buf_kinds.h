/* Shared by the rill_buf suites: buffers of every kind holding given
 * bytes, and dispatchers over the seven integer forms. Static functions
 * only; each suite includes it once. */
#ifndef RILL_TEST_BUF_KINDS_H
#define RILL_TEST_BUF_KINDS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "rill/buf.h"
#include "rill/composite.h"

enum tkind { K_POOLED, K_WRAPPED, K_SLICE, K_READONLY, K_COMPOSITE, K_COUNT };
static const char *const kname[] = { "pooled", "wrapped", "slice", "readonly", "composite" };

static int wrapped_frees; /* calls of count_free in this test */
static inline void count_free(void *mem, void *arg)
{
    (void)arg;
    wrapped_frees++;
    free(mem);
}

static inline struct rill_buf *wrapped_copy(const uint8_t *src, size_t len, size_t extra)
{
    uint8_t *m = malloc(len + extra + 1);
    cr_assert_not_null(m);
    memcpy(m, src, len);
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(m, len + extra, len, count_free, NULL, &b), 0);
    return b;
}

static inline struct rill_buf *pooled_copy(const uint8_t *src, size_t len)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(src, len, &b), 0);
    return b;
}

/* A slice whose parent has other bytes around it (then is released). */
static inline struct rill_buf *slice_copy(const uint8_t *src, size_t len)
{
    struct rill_buf *p, *s;
    cr_assert_eq(rill_buf_alloc(len + 10, &p), 0);
    cr_assert_eq(rill_buf_write_bytes(p, "JUNK!", 5), 0);
    cr_assert_eq(rill_buf_write_bytes(p, src, len), 0);
    cr_assert_eq(rill_buf_write_bytes(p, "junk!", 5), 0);
    cr_assert_eq(rill_buf_slice(p, 5, len, &s), 0);
    rill_buf_release(p);
    return s;
}

/* Components of odd sizes (and an empty one) so values straddle them. */
static inline struct rill_buf *composite_copy(const uint8_t *src, size_t len)
{
    static const size_t sizes[] = { 3, 1, 5, 0, 7, 2, 11, 4 };
    struct rill_buf *c;
    cr_assert_eq(rill_buf_composite_new(&c), 0);
    size_t off = 0;
    for (unsigned i = 0; off < len; i++) {
        size_t n = sizes[i % RILL_ARRAY_SIZE(sizes)];
        if (n > len - off)
            n = len - off;
        struct rill_buf *part = i % 3 == 0   ? pooled_copy(src + off, n)
                                : i % 3 == 1 ? wrapped_copy(src + off, n, 0)
                                             : slice_copy(src + off, n);
        cr_assert_eq(rill_buf_composite_add(c, part), 0);
        off += n;
    }
    return c;
}

/* A buffer of kind @k whose readable bytes are @src, indices [0, len). */
static inline struct rill_buf *make(enum tkind k, const uint8_t *src, size_t len)
{
    struct rill_buf *b = NULL, *p;
    switch (k) {
    case K_POOLED:
        b = pooled_copy(src, len);
        break;
    case K_WRAPPED:
        b = wrapped_copy(src, len, 16);
        break;
    case K_SLICE:
        b = slice_copy(src, len);
        break;
    case K_READONLY:
        p = pooled_copy(src, len);
        cr_assert_eq(rill_buf_readonly(p, &b), 0);
        rill_buf_release(p);
        break;
    case K_COMPOSITE:
        b = composite_copy(src, len);
        break;
    default:
        cr_assert_fail();
    }
    cr_assert_eq(rill_buf_reader_index(b), 0);
    cr_assert_eq(rill_buf_writer_index(b), len, "%s", kname[k]);
    return b;
}

static inline void pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 37 + (i >> 3));
}

static inline uint64_t from_be(const uint8_t *p, int w)
{
    uint64_t v = 0;
    for (int i = 0; i < w; i++)
        v = v << 8 | p[i];
    return v;
}

static inline uint64_t from_le(const uint8_t *p, int w)
{
    uint64_t v = 0;
    for (int i = w - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- dispatch over the 7 widths/orders of each accessor family ---- */

static const int widths[] = { 1, 2, 2, 4, 4, 8, 8 };
static const bool bigend[] = { true, true, false, true, false, true, false };
#define NFORMS 7

static inline int get_any(const struct rill_buf *b, size_t i, int f, uint64_t *out)
{
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    int rc;
    switch (f) {
    case 0:
        v8 = 0xAA;
        rc = rill_buf_get_u8(b, i, &v8);
        *out = v8;
        return rc;
    case 1:
    case 2:
        v16 = 0xAAAA;
        rc = f == 1 ? rill_buf_get_u16_be(b, i, &v16) : rill_buf_get_u16_le(b, i, &v16);
        *out = v16;
        return rc;
    case 3:
    case 4:
        v32 = 0xAAAAAAAA;
        rc = f == 3 ? rill_buf_get_u32_be(b, i, &v32) : rill_buf_get_u32_le(b, i, &v32);
        *out = v32;
        return rc;
    default:
        v64 = 0xAAAAAAAAAAAAAAAAull;
        rc = f == 5 ? rill_buf_get_u64_be(b, i, &v64) : rill_buf_get_u64_le(b, i, &v64);
        *out = v64;
        return rc;
    }
}

static inline int read_any(struct rill_buf *b, int f, uint64_t *out)
{
    uint8_t v8 = 0;
    uint16_t v16 = 0;
    uint32_t v32 = 0;
    uint64_t v64 = 0;
    int rc;
    switch (f) {
    case 0:
        rc = rill_buf_read_u8(b, &v8);
        *out = v8;
        return rc;
    case 1:
    case 2:
        rc = f == 1 ? rill_buf_read_u16_be(b, &v16) : rill_buf_read_u16_le(b, &v16);
        *out = v16;
        return rc;
    case 3:
    case 4:
        rc = f == 3 ? rill_buf_read_u32_be(b, &v32) : rill_buf_read_u32_le(b, &v32);
        *out = v32;
        return rc;
    default:
        rc = f == 5 ? rill_buf_read_u64_be(b, &v64) : rill_buf_read_u64_le(b, &v64);
        *out = v64;
        return rc;
    }
}

static inline int set_any(struct rill_buf *b, size_t i, int f, uint64_t v)
{
    switch (f) {
    case 0:
        return rill_buf_set_u8(b, i, (uint8_t)v);
    case 1:
        return rill_buf_set_u16_be(b, i, (uint16_t)v);
    case 2:
        return rill_buf_set_u16_le(b, i, (uint16_t)v);
    case 3:
        return rill_buf_set_u32_be(b, i, (uint32_t)v);
    case 4:
        return rill_buf_set_u32_le(b, i, (uint32_t)v);
    case 5:
        return rill_buf_set_u64_be(b, i, v);
    default:
        return rill_buf_set_u64_le(b, i, v);
    }
}

static inline int write_any(struct rill_buf *b, int f, uint64_t v)
{
    switch (f) {
    case 0:
        return rill_buf_write_u8(b, (uint8_t)v);
    case 1:
        return rill_buf_write_u16_be(b, (uint16_t)v);
    case 2:
        return rill_buf_write_u16_le(b, (uint16_t)v);
    case 3:
        return rill_buf_write_u32_be(b, (uint32_t)v);
    case 4:
        return rill_buf_write_u32_le(b, (uint32_t)v);
    case 5:
        return rill_buf_write_u64_be(b, v);
    default:
        return rill_buf_write_u64_le(b, v);
    }
}

static inline uint64_t mask_of(int w)
{
    return w == 8 ? ~0ull : (1ull << (8 * w)) - 1;
}

/* The buffer's bytes [0, writer index) equal @want. */
static inline void expect_bytes(const struct rill_buf *b, const uint8_t *want, size_t len,
                                const char *what)
{
    cr_assert_eq(rill_buf_writer_index(b), len, "%s: writer index", what);
    uint8_t got[512];
    cr_assert(len <= sizeof(got));
    cr_assert_eq(rill_buf_get_bytes(b, 0, got, len), 0, "%s", what);
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(got[i], want[i], "%s: byte %zu is %02x, want %02x", what, i, got[i], want[i]);
}

static inline ssize_t naive_find(const uint8_t *h, size_t from, size_t to, const uint8_t *n,
                                 size_t nlen)
{
    if (nlen == 0)
        return (ssize_t)from;
    for (size_t i = from; i + nlen <= to; i++)
        if (memcmp(h + i, n, nlen) == 0)
            return (ssize_t)i;
    return -ENOENT;
}

#endif
