/* rill_buf: every accessor on every kind (pooled, wrapped, slice, read-only,
 * composite), bounds, growth, discard, copies, retired memory, the wrapped
 * free callback and the debug contract checks. Search, compare and export
 * are in test_buf_search.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/composite.h"
#include "util/testutil.h"

#include "test_buf_kinds.h"

TestSuite(buf, .timeout = 30, .fini = rill_test_no_leaks);

/* ---- integers ---- */

Test(buf, known_byte_patterns)
{
    static const uint8_t bytes[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, bytes, 8);
        uint16_t v16;
        uint32_t v32;
        uint64_t v64;
        cr_assert_eq(rill_buf_get_u16_be(b, 0, &v16), 0);
        cr_assert_eq(v16, 0x0102, "%s", kname[k]);
        cr_assert_eq(rill_buf_get_u16_le(b, 0, &v16), 0);
        cr_assert_eq(v16, 0x0201, "%s", kname[k]);
        cr_assert_eq(rill_buf_get_u32_be(b, 4, &v32), 0);
        cr_assert_eq(v32, 0x05060708u, "%s", kname[k]);
        cr_assert_eq(rill_buf_get_u32_le(b, 4, &v32), 0);
        cr_assert_eq(v32, 0x08070605u, "%s", kname[k]);
        cr_assert_eq(rill_buf_get_u64_be(b, 0, &v64), 0);
        cr_assert_eq(v64, 0x0102030405060708ull, "%s", kname[k]);
        cr_assert_eq(rill_buf_get_u64_le(b, 0, &v64), 0);
        cr_assert_eq(v64, 0x0807060504030201ull, "%s", kname[k]);
        rill_buf_release(b);
    }
}

Test(buf, get_every_kind_every_index)
{
    uint8_t src[40];
    pattern(src, sizeof(src), 3);
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src));
        for (size_t i = 0; i <= sizeof(src) + 1; i++) {
            for (int f = 0; f < NFORMS; f++) {
                int w = widths[f];
                uint64_t v;
                int rc = get_any(b, i, f, &v);
                if (i + w <= sizeof(src)) {
                    uint64_t want = bigend[f] ? from_be(src + i, w) : from_le(src + i, w);
                    cr_assert_eq(rc, 0, "%s get w%d at %zu", kname[k], w, i);
                    cr_assert_eq(v, want, "%s get w%d %s at %zu: %llx want %llx", kname[k], w,
                                 bigend[f] ? "be" : "le", i, (unsigned long long)v,
                                 (unsigned long long)want);
                } else {
                    cr_assert_eq(rc, -ERANGE, "%s get w%d at %zu", kname[k], w, i);
                    cr_assert_eq(v, 0xAAAAAAAAAAAAAAAAull & mask_of(w), "output changed");
                }
            }
        }
        cr_assert_eq(rill_buf_get_u8(b, SIZE_MAX, &(uint8_t){ 0 }), -ERANGE);
        cr_assert_eq(rill_buf_get_u64_be(b, SIZE_MAX - 3, &(uint64_t){ 0 }), -ERANGE);
        rill_buf_release(b);
    }
}

Test(buf, set_every_kind_every_index)
{
    uint8_t src[40], want[40];
    pattern(src, sizeof(src), 5);
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src));
        memcpy(want, src, sizeof(want));
        for (size_t i = 0; i + 8 <= sizeof(src); i += 3) {
            for (int f = 0; f < NFORMS; f++) {
                int w = widths[f];
                uint64_t v = 0x1122334455667788ull * (i + f + 1);
                int rc = set_any(b, i, f, v);
                if (k == K_READONLY) {
                    cr_assert_eq(rc, -EROFS, "readonly set");
                    continue;
                }
                cr_assert_eq(rc, 0, "%s set w%d at %zu", kname[k], w, i);
                for (int j = 0; j < w; j++) {
                    int shift = bigend[f] ? 8 * (w - 1 - j) : 8 * j;
                    want[i + j] = (uint8_t)(v >> shift);
                }
                expect_bytes(b, want, sizeof(want), kname[k]);
            }
        }
        /* Past the capacity: -ERANGE and nothing written. */
        size_t cap = rill_buf_capacity(b);
        for (int f = 0; f < NFORMS; f++) {
            int rc = set_any(b, cap - widths[f] + 1, f, ~0ull);
            cr_assert_eq(rc, k == K_READONLY ? -EROFS : -ERANGE, "%s set past cap", kname[k]);
            rc = set_any(b, SIZE_MAX - 1, f, ~0ull);
            cr_assert_eq(rc, k == K_READONLY ? -EROFS : -ERANGE);
        }
        expect_bytes(b, want, sizeof(want), kname[k]);
        cr_assert_eq(rill_buf_reader_index(b), 0);
        rill_buf_release(b);
    }
}

Test(buf, write_read_every_kind)
{
    uint8_t src[40];
    pattern(src, sizeof(src), 9);
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src));
        rill_buf_clear(b); /* writes go into the existing bytes first (slices can't grow) */
        uint64_t vals[NFORMS];
        for (int f = 0; f < NFORMS; f++) {
            vals[f] = 0x0123456789ABCDEFull ^ (0x1111111111111111ull * f);
            int rc = write_any(b, f, vals[f]);
            cr_assert_eq(rc, k == K_READONLY ? -EROFS : 0, "%s write form %d", kname[k], f);
        }
        if (k == K_READONLY) {
            cr_assert_eq(rill_buf_writer_index(b), 0);
            rill_buf_release(b);
            continue;
        }
        cr_assert_eq(rill_buf_writer_index(b), 29);
        for (int f = 0; f < NFORMS; f++) {
            uint64_t v;
            size_t rd = rill_buf_reader_index(b);
            cr_assert_eq(read_any(b, f, &v), 0);
            cr_assert_eq(v, vals[f] & mask_of(widths[f]), "%s read form %d", kname[k], f);
            cr_assert_eq(rill_buf_reader_index(b), rd + widths[f]);
        }
        for (int f = 0; f < NFORMS; f++) {
            uint64_t v = 7;
            cr_assert_eq(read_any(b, f, &v), -ERANGE);
            cr_assert_eq(v, 0, "output untouched");
        }
        cr_assert_eq(rill_buf_reader_index(b), 29, "failed reads don't move the index");
        rill_buf_release(b);
    }
}

Test(buf, write_grows_pooled_wrapped_composite)
{
    uint8_t src[3] = { 1, 2, 3 };
    for (int k = 0; k < K_COUNT; k++) {
        if (k == K_SLICE || k == K_READONLY)
            continue;
        struct rill_buf *b = make(k, src, 3);
        uint8_t want[400];
        memcpy(want, src, 3);
        size_t n = 3;
        for (int i = 0; n + 8 <= sizeof(want); i++) {
            int f = i % NFORMS, w = widths[f];
            uint64_t v = 0x8877665544332211ull + i;
            cr_assert_eq(write_any(b, f, v), 0, "%s write %d", kname[k], i);
            for (int j = 0; j < w; j++)
                want[n + j] = (uint8_t)(v >> (bigend[f] ? 8 * (w - 1 - j) : 8 * j));
            n += w;
        }
        expect_bytes(b, want, n, kname[k]);
        rill_buf_release(b);
    }
    cr_assert_eq(wrapped_frees, 1, "wrapped memory handed back once (moved or destroyed)");
}

Test(buf, bytes_every_kind)
{
    uint8_t src[40], got[48];
    pattern(src, sizeof(src), 11);
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src));
        for (size_t i = 0; i <= 40; i += 5)
            for (size_t n = 0; i + n <= 40; n += 3) {
                memset(got, 0xEE, sizeof(got));
                cr_assert_eq(rill_buf_get_bytes(b, i, got, n), 0);
                cr_assert_eq(memcmp(got, src + i, n), 0, "%s get_bytes %zu+%zu", kname[k], i, n);
                cr_assert_eq(got[n], 0xEE);
            }
        cr_assert_eq(rill_buf_get_bytes(b, 35, got, 6), -ERANGE);
        cr_assert_eq(rill_buf_get_bytes(b, 41, got, 0), -ERANGE);
        cr_assert_eq(rill_buf_get_bytes(b, 40, got, 0), 0);
        cr_assert_eq(rill_buf_read_bytes(b, got, 41), -ERANGE);
        cr_assert_eq(rill_buf_read_bytes(b, got, 13), 0);
        cr_assert_eq(memcmp(got, src, 13), 0);
        cr_assert_eq(rill_buf_read_bytes(b, got, 27), 0);
        cr_assert_eq(memcmp(got, src + 13, 27), 0);
        cr_assert_eq(rill_buf_read_bytes(b, got, 1), -ERANGE);
        cr_assert_eq(rill_buf_read_bytes(b, got, 0), 0);

        static const uint8_t ins[9] = "ABCDEFGHI";
        uint8_t want[40];
        memcpy(want, src, 40);
        int rc = rill_buf_set_bytes(b, 4, ins, 9);
        if (k == K_READONLY) {
            cr_assert_eq(rc, -EROFS);
            cr_assert_eq(rill_buf_write_bytes(b, ins, 1), -EROFS);
            cr_assert_eq(rill_buf_write_bytes(b, ins, 0), -EROFS);
            cr_assert_eq(rill_buf_set_bytes(b, 0, ins, 0), -EROFS);
        } else {
            cr_assert_eq(rc, 0);
            memcpy(want + 4, ins, 9);
            cr_assert_eq(rill_buf_set_bytes(b, rill_buf_capacity(b) - 3, ins, 4), -ERANGE);
        }
        expect_bytes(b, want, 40, kname[k]);
        rill_buf_release(b);
    }
}

Test(buf, readonly_refuses_every_write)
{
    uint8_t src[16];
    pattern(src, sizeof(src), 1);
    struct rill_buf *ro = make(K_READONLY, src, 16), *other = pooled_copy(src, 16);
    cr_assert(rill_buf_is_readonly(ro));
    cr_assert_eq(rill_buf_writable(ro), 0);
    for (int f = 0; f < NFORMS; f++) {
        cr_assert_eq(set_any(ro, 0, f, 1), -EROFS);
        cr_assert_eq(write_any(ro, f, 1), -EROFS);
    }
    cr_assert_eq(rill_buf_ensure_writable(ro, 1), -EROFS);
    cr_assert_eq(rill_buf_ensure_writable(ro, 0), 0);
    size_t len = 99;
    cr_assert_null(rill_buf_write_ptr(ro, 1, &len));
    cr_assert_eq(len, 0);
    cr_assert_eq(rill_buf_advance_writer(ro, 0), -EROFS);
    cr_assert_eq(rill_buf_write_buf(ro, other, 4), -EROFS);
    cr_assert_eq(rill_buf_readable(other), 16, "source untouched");
    /* Index moves are not writes. */
    cr_assert_eq(rill_buf_set_reader_index(ro, 3), 0);
    cr_assert_eq(rill_buf_discard_read(ro), 0);
    expect_bytes(other, src, 16, "other");
    /* A slice of a read-only view is read-only, and so is its slice. */
    struct rill_buf *s, *s2;
    cr_assert_eq(rill_buf_slice(ro, 2, 5, &s), 0);
    cr_assert(rill_buf_is_readonly(s));
    cr_assert_eq(rill_buf_set_u8(s, 0, 1), -EROFS);
    cr_assert_eq(rill_buf_slice(s, 1, 2, &s2), 0);
    cr_assert(rill_buf_is_readonly(s2));
    cr_assert_eq(rill_buf_get_u8(s2, 0, &(uint8_t){ 0 }), 0);
    rill_buf_release(s2);
    rill_buf_release(s);
    rill_buf_release(ro);
    rill_buf_release(other);
}

/* ---- indices, growth, discard ---- */

Test(buf, indices)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(64, &b), 0);
    cr_assert_geq(rill_buf_capacity(b), 64);
    cr_assert_eq(rill_buf_kind(b), RILL_BUF_POOLED);
    cr_assert_eq(rill_buf_set_writer_index(b, 10), 0);
    cr_assert_eq(rill_buf_set_reader_index(b, 11), -ERANGE);
    cr_assert_eq(rill_buf_set_reader_index(b, 4), 0);
    cr_assert_eq(rill_buf_set_writer_index(b, 3), -ERANGE);
    cr_assert_eq(rill_buf_set_writer_index(b, rill_buf_capacity(b) + 1), -ERANGE);
    cr_assert_eq(rill_buf_set_index(b, 5, 4), -ERANGE);
    cr_assert_eq(rill_buf_set_index(b, 0, rill_buf_capacity(b) + 1), -ERANGE);
    cr_assert_eq(rill_buf_reader_index(b), 4);
    cr_assert_eq(rill_buf_writer_index(b), 10);
    cr_assert_eq(rill_buf_skip(b, 7), -ERANGE);
    cr_assert_eq(rill_buf_skip(b, 6), 0);
    cr_assert_eq(rill_buf_readable(b), 0);
    rill_buf_clear(b);
    cr_assert_eq(rill_buf_reader_index(b) + rill_buf_writer_index(b), 0);
    cr_assert_eq(rill_buf_set_index(b, 2, 9), 0);
    cr_assert_eq(rill_buf_readable(b), 7);
    rill_buf_release(b);
}

Test(buf, growth_bounded_by_max_capacity)
{
    for (int k = 0; k < K_COUNT; k++) {
        if (k == K_SLICE || k == K_READONLY)
            continue;
        uint8_t src[8] = { 0 };
        struct rill_buf *b = make(k, src, 8);
        cr_assert_eq(rill_buf_set_max_capacity(b, rill_buf_capacity(b) - 1), -EINVAL);
        cr_assert_eq(rill_buf_set_max_capacity(b, 300), 0);
        cr_assert_eq(rill_buf_max_capacity(b), 300);
        cr_assert_eq(rill_buf_ensure_writable(b, 293), -ENOBUFS, "%s", kname[k]);
        cr_assert_eq(rill_buf_writer_index(b), 8);
        cr_assert_eq(rill_buf_ensure_writable(b, 292), 0, "%s", kname[k]);
        cr_assert_leq(rill_buf_capacity(b), 300);
        uint8_t fill[292];
        memset(fill, 0x5A, sizeof(fill));
        cr_assert_eq(rill_buf_write_bytes(b, fill, sizeof(fill)), 0);
        cr_assert_eq(rill_buf_write_u8(b, 1), -ENOBUFS, "%s", kname[k]);
        cr_assert_eq(rill_buf_write_u64_be(b, 1), -ENOBUFS);
        cr_assert_eq(rill_buf_writer_index(b), 300);
        cr_assert(rill_buf_equal_bytes(b, 8, fill, sizeof(fill)));
        rill_buf_release(b);
    }
    /* A slice never grows. */
    uint8_t src[8] = { 0 };
    struct rill_buf *s = make(K_SLICE, src, 8);
    cr_assert_eq(rill_buf_ensure_writable(s, 1), -ENOBUFS);
    cr_assert_eq(rill_buf_write_u8(s, 1), -ENOBUFS);
    rill_buf_clear(s);
    cr_assert_eq(rill_buf_ensure_writable(s, 8), 0);
    rill_buf_release(s);
}

Test(buf, growth_keeps_bytes_set_past_the_writer_index)
{
    uint8_t src[4] = { 1, 2, 3, 4 };
    for (int k = K_POOLED; k <= K_WRAPPED; k++) {
        struct rill_buf *b = make(k, src, 4);
        size_t cap = rill_buf_capacity(b);
        cr_assert_eq(rill_buf_set_u32_be(b, cap - 4, 0xDEADBEEF), 0);
        cr_assert_eq(rill_buf_ensure_writable(b, cap * 4), 0);
        cr_assert_gt(rill_buf_capacity(b), cap);
        cr_assert_eq(rill_buf_set_writer_index(b, cap), 0);
        uint32_t v;
        cr_assert_eq(rill_buf_get_u32_be(b, cap - 4, &v), 0);
        cr_assert_eq(v, 0xDEADBEEF, "%s", kname[k]);
        cr_assert(rill_buf_equal_bytes(b, 0, src, 4));
        rill_buf_release(b);
    }
}

Test(buf, large_growth_keeps_bytes)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(16, &b), 0);
    static uint8_t big[1 << 20];
    pattern(big, sizeof(big), 77);
    for (size_t off = 0; off < sizeof(big); off += 4099) {
        size_t n = sizeof(big) - off < 4099 ? sizeof(big) - off : 4099;
        cr_assert_eq(rill_buf_write_bytes(b, big + off, n), 0);
    }
    cr_assert_eq(rill_buf_readable(b), sizeof(big));
    cr_assert(rill_buf_equal_bytes(b, 0, big, sizeof(big)));
    rill_buf_release(b);
}

Test(buf, discard_read_unshared_moves_bytes)
{
    uint8_t src[100];
    pattern(src, sizeof(src), 21);
    struct rill_buf *b = pooled_copy(src, 100);
    size_t cap = rill_buf_capacity(b);
    size_t n;
    const uint8_t *base = rill_buf_read_ptr(b, &n);
    cr_assert_eq(rill_buf_skip(b, 40), 0);
    cr_assert_eq(rill_buf_discard_read(b), 0);
    cr_assert_eq(rill_buf_reader_index(b), 0);
    expect_bytes(b, src + 40, 60, "pooled after discard");
    cr_assert_eq(rill_buf_read_ptr(b, &n), base, "moved to the front");
    cr_assert_eq(rill_buf_capacity(b), cap);
    rill_buf_release(b);

    /* Wrapped: the user's memory itself is compacted. */
    uint8_t *mem = malloc(128);
    memcpy(mem, src, 100);
    cr_assert_eq(rill_buf_wrap(mem, 128, 100, count_free, NULL, &b), 0);
    cr_assert_eq(rill_buf_skip(b, 30), 0);
    cr_assert_eq(rill_buf_discard_read(b), 0);
    cr_assert_eq(memcmp(mem, src + 30, 70), 0);
    cr_assert_eq(rill_buf_capacity(b), 128);
    expect_bytes(b, src + 30, 70, "wrapped after discard");
    /* Everything read: only the indices reset. */
    cr_assert_eq(rill_buf_skip(b, 70), 0);
    cr_assert_eq(rill_buf_discard_read(b), 0);
    cr_assert_eq(rill_buf_writer_index(b), 0);
    cr_assert_eq(rill_buf_discard_read(b), 0);
    rill_buf_release(b);
    cr_assert_eq(wrapped_frees, 1);
}

Test(buf, discard_read_shared_narrows)
{
    uint8_t src[100];
    pattern(src, sizeof(src), 23);
    struct rill_buf *b = pooled_copy(src, 100), *s;
    size_t cap = rill_buf_capacity(b), n;
    cr_assert_eq(rill_buf_slice(b, 10, 50, &s), 0);
    cr_assert_eq(rill_buf_skip(b, 40), 0);
    const uint8_t *before = rill_buf_read_ptr(b, &n);
    cr_assert_eq(rill_buf_discard_read(b), 0);
    cr_assert_eq(rill_buf_read_ptr(b, &n), before, "shared bytes never move");
    cr_assert_eq(rill_buf_capacity(b), cap - 40);
    expect_bytes(b, src + 40, 60, "narrowed");
    expect_bytes(s, src + 10, 50, "slice unchanged");
    /* Once unshared, a discard compacts to the front and regains capacity. */
    rill_buf_release(s);
    cr_assert_eq(rill_buf_skip(b, 10), 0);
    cr_assert_eq(rill_buf_discard_read(b), 0);
    cr_assert_eq(rill_buf_capacity(b), cap);
    expect_bytes(b, src + 50, 50, "compacted");
    /* A slice narrows too. */
    cr_assert_eq(rill_buf_slice(b, 0, 50, &s), 0);
    cr_assert_eq(rill_buf_skip(s, 20), 0);
    cr_assert_eq(rill_buf_discard_read(s), 0);
    cr_assert_eq(rill_buf_capacity(s), 30);
    expect_bytes(s, src + 70, 30, "slice narrowed");
    expect_bytes(b, src + 50, 50, "parent unchanged");
    rill_buf_release(s);
    rill_buf_release(b);
}

Test(buf, write_ptr_and_advance)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(16, &b), 0);
    size_t len;
    uint8_t *p = rill_buf_write_ptr(b, 1000, &len);
    cr_assert_not_null(p);
    cr_assert_geq(len, 1000);
    memset(p, 0x42, 1000);
    cr_assert_eq(rill_buf_advance_writer(b, len + 1), -ERANGE);
    cr_assert_eq(rill_buf_advance_writer(b, 1000), 0);
    cr_assert_eq(rill_buf_readable(b), 1000);
    uint8_t v;
    cr_assert_eq(rill_buf_get_u8(b, 999, &v), 0);
    cr_assert_eq(v, 0x42);
    cr_assert_eq(rill_buf_set_max_capacity(b, rill_buf_capacity(b)), 0);
    p = rill_buf_write_ptr(b, rill_buf_capacity(b) - 999, &len);
    cr_assert_null(p, "past the max capacity");
    cr_assert_eq(len, 0);
    rill_buf_release(b);
}

Test(buf, read_ptr)
{
    uint8_t src[40];
    pattern(src, sizeof(src), 43);
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src));
        size_t n;
        const uint8_t *p = rill_buf_read_ptr(b, &n);
        cr_assert_eq(n, 40);
        if (k == K_COMPOSITE) {
            cr_assert_null(p, "spans components");
            cr_assert_eq(rill_buf_skip(b, 9), 0); /* components 3,1,5 | 7 */
            cr_assert_eq(rill_buf_set_writer_index(b, 14), 0);
            p = rill_buf_read_ptr(b, &n);
            cr_assert_not_null(p);
            cr_assert_eq(n, 5);
            cr_assert_eq(memcmp(p, src + 9, 5), 0);
        } else {
            cr_assert_eq(memcmp(p, src, 40), 0, "%s", kname[k]);
        }
        rill_buf_release(b);
    }
}

/* ---- copies and views ---- */

Test(buf, copy_and_unshare)
{
    uint8_t src[40];
    pattern(src, sizeof(src), 51);
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src)), *c;
        cr_assert_eq(rill_buf_copy(b, 3, 30, &c), 0);
        cr_assert_eq(rill_buf_kind(c), RILL_BUF_POOLED);
        expect_bytes(c, src + 3, 30, "copy");
        cr_assert_eq(rill_buf_set_u8(c, 0, 0), 0);
        cr_assert(rill_buf_equal_bytes(b, 3, src + 3, 30), "the copy is independent");
        cr_assert_eq(rill_buf_copy(b, 11, 30, &c), -ERANGE);
        rill_buf_release(c);

        cr_assert_eq(rill_buf_skip(b, 5), 0);
        struct rill_buf *old = b;
        cr_assert_eq(rill_buf_unshare(&b), 0);
        bool shared = k == K_SLICE || k == K_READONLY || k == K_COMPOSITE;
        cr_assert_eq(b != old, shared, "%s unshare replaced=%d", kname[k], b != old);
        if (shared) {
            cr_assert_eq(rill_buf_kind(b), RILL_BUF_POOLED);
            expect_bytes(b, src + 5, 35, "unshared copy");
        }
        cr_assert_not(rill_buf_is_readonly(b));
        cr_assert_eq(rill_buf_set_u8(b, 0, 1), 0);
        rill_buf_release(b);
    }
    /* A pooled buffer with a second reference is shared. */
    struct rill_buf *b = pooled_copy(src, 40), *keep = rill_buf_retain(b);
    cr_assert_eq(rill_buf_unshare(&b), 0);
    cr_assert_neq(b, keep);
    cr_assert_eq(rill_buf_set_u8(b, 0, 0), 0);
    cr_assert(rill_buf_equal_bytes(keep, 0, src, 40));
    rill_buf_release(b);
    rill_buf_release(keep);
}

Test(buf, views_survive_parent_growth)
{
    uint8_t src[32], junk[8192];
    pattern(src, sizeof(src), 61);
    memset(junk, 0xEE, sizeof(junk));
    struct rill_buf *b = pooled_copy(src, 32), *s1, *s2, *s3;
    cr_assert_eq(rill_buf_slice(b, 0, 32, &s1), 0);      /* inline memory */
    cr_assert_eq(rill_buf_write_bytes(b, junk, 100), 0); /* grows: separate block */
    cr_assert_eq(rill_buf_set_u8(b, 0, 0xFF), 0);
    cr_assert_eq(rill_buf_slice(b, 0, 32, &s2), 0);       /* the first data block */
    cr_assert_eq(rill_buf_write_bytes(b, junk, 1000), 0); /* retires it */
    cr_assert_eq(rill_buf_slice(b, 1, 31, &s3), 0);
    cr_assert_eq(rill_buf_write_bytes(b, junk, 8000), 0); /* retires the second */
    /* Reuse freed memory of those sizes, to catch a view of freed bytes. */
    struct rill_buf *noise[8];
    for (int i = 0; i < 8; i++)
        noise[i] = pooled_copy(junk, (size_t)64 << i);
    cr_assert(rill_buf_equal_bytes(s1, 0, src, 32));
    cr_assert_eq(rill_buf_get_u8(s2, 0, &(uint8_t){ 0 }), 0);
    uint8_t want[32];
    memcpy(want, src, 32);
    want[0] = 0xFF;
    cr_assert(rill_buf_equal_bytes(s2, 0, want, 32));
    cr_assert(rill_buf_equal_bytes(s3, 0, want + 1, 31));
    cr_assert(rill_buf_equal_bytes(b, 0, want, 32));
    for (int i = 0; i < 8; i++)
        rill_buf_release(noise[i]);
    rill_buf_release(b); /* views keep the storage alive */
    cr_assert(rill_buf_equal_bytes(s3, 0, want + 1, 31));
    rill_buf_release(s1);
    rill_buf_release(s2);
    rill_buf_release(s3);
}

Test(buf, wrapped_free_callback_once)
{
    uint8_t src[16] = "0123456789abcdef";
    /* No growth: at destroy. */
    struct rill_buf *b = wrapped_copy(src, 16, 0), *s;
    struct rill_buf *r = rill_buf_retain(b);
    rill_buf_release(b);
    cr_assert_eq(wrapped_frees, 0);
    rill_buf_release(r);
    cr_assert_eq(wrapped_frees, 1);

    /* Growth while unshared: handed back at once, not again at destroy. */
    b = wrapped_copy(src, 16, 0);
    cr_assert_eq(rill_buf_write_u8(b, 'g'), 0);
    cr_assert_eq(wrapped_frees, 2);
    cr_assert_eq(rill_buf_kind(b), RILL_BUF_WRAPPED);
    cr_assert(rill_buf_equal_bytes(b, 0, "0123456789abcdefg", 17));
    rill_buf_release(b);
    cr_assert_eq(wrapped_frees, 2);

    /* Growth while a slice shares it: kept until the buffer is destroyed. */
    b = wrapped_copy(src, 16, 0);
    cr_assert_eq(rill_buf_slice(b, 4, 8, &s), 0);
    cr_assert_eq(rill_buf_ensure_writable(b, 100), 0);
    cr_assert_eq(wrapped_frees, 2);
    rill_buf_release(b);
    cr_assert_eq(wrapped_frees, 2, "the slice still holds the storage");
    cr_assert(rill_buf_equal_bytes(s, 0, "456789ab", 8));
    rill_buf_release(s);
    cr_assert_eq(wrapped_frees, 3);

    /* Failure: the callback is not called; NULL free_fn is allowed. */
    cr_assert_eq(rill_buf_wrap(src, 4, 5, count_free, NULL, &b), -EINVAL);
    cr_assert_eq(rill_buf_wrap(NULL, 4, 0, count_free, NULL, &b), -EINVAL);
    cr_assert_eq(rill_buf_wrap(src, 16, 16, NULL, NULL, &b), 0);
    cr_assert_eq(rill_buf_write_u8(b, 1), 0);
    rill_buf_release(b);
    cr_assert_eq(rill_buf_wrap(NULL, 0, 0, NULL, NULL, &b), 0);
    cr_assert_eq(rill_buf_get_bytes(b, 0, src, 0), 0);
    cr_assert_eq(rill_buf_index_of(b, 0, 0, 'a'), -ENOENT);
    cr_assert(rill_buf_equal_bytes(b, 0, "", 0));
    cr_assert_eq(rill_buf_write_u8(b, 7), 0);
    rill_buf_release(b);
    cr_assert_eq(wrapped_frees, 3);
}

Test(buf, write_buf_between_kinds)
{
    uint8_t src[40];
    pattern(src, sizeof(src), 71);
    for (int from = 0; from < K_COUNT; from++)
        for (int to = 0; to < K_COUNT; to++) {
            struct rill_buf *s = make(from, src, 40), *d = make(to, src, 3);
            cr_assert_eq(rill_buf_skip(s, 2), 0);
            int rc = rill_buf_write_buf(d, s, 30);
            if (to == K_READONLY) {
                cr_assert_eq(rc, -EROFS);
            } else if (to == K_SLICE) {
                cr_assert_eq(rc, -ENOBUFS);
            } else {
                cr_assert_eq(rc, 0, "%s -> %s", kname[from], kname[to]);
                cr_assert_eq(rill_buf_reader_index(s), 32);
                cr_assert(rill_buf_equal_bytes(d, 3, src + 2, 30));
                cr_assert(rill_buf_equal_bytes(d, 0, src, 3));
                cr_assert_eq(rill_buf_write_buf(d, s, 9), -ERANGE);
            }
            rill_buf_release(s);
            rill_buf_release(d);
        }
}

/* ---- debug contract checks ---- */

/* Under ASan the pool poisons freed blocks, so ASan reports retain and
 * release of a freed message itself (its report names the access);
 * make that report end in SIGABRT like rill's own check. */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "abort_on_error=1";
}
#endif

/* Skipped (disabled) when the contract checks are compiled out: a test
 * that expects a signal can't be skipped from inside. */
#define DEBUG_ONLY .disabled = !RILL_DEBUG

Test(buf, retain_after_release_aborts, .signal = SIGABRT, DEBUG_ONLY)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(8, &b), 0);
    rill_buf_release(b);
    rill_buf_retain(b);
}

Test(buf, double_release_aborts, .signal = SIGABRT, DEBUG_ONLY)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(8, &b), 0);
    rill_buf_release(b);
    rill_buf_release(b);
}

Test(buf, accessor_after_release_aborts, .signal = SIGABRT, DEBUG_ONLY)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(8, &b), 0);
    cr_assert_eq(rill_buf_write_u32_be(b, 1), 0);
    rill_buf_release(b);
    uint32_t v;
    rill_buf_get_u32_be(b, 0, &v);
}

Test(buf, slice_release_twice_aborts, .signal = SIGABRT, DEBUG_ONLY)
{
    struct rill_buf *b, *s;
    cr_assert_eq(rill_buf_alloc(8, &b), 0);
    cr_assert_eq(rill_buf_write_u32_be(b, 1), 0);
    cr_assert_eq(rill_buf_slice(b, 0, 4, &s), 0);
    rill_buf_release(s);
    rill_buf_release(s);
}
