/* rill_buf search, compare and iovec export on every kind, and a
 * guard-page check that no read or search accessor reads past the last
 * byte (buffers placed right before a PROT_NONE page). */
#include <criterion/criterion.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/testutil.h"

#include "test_buf_kinds.h"

TestSuite(buf_search, .timeout = 30, .fini = rill_test_no_leaks);

Test(buf_search, search_every_kind)
{
    uint8_t src[40];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)("abcabdabcabcxyz"[i % 15]);
    src[39] = 'Q';
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src));
        for (size_t from = 0; from <= 40; from++)
            for (size_t to = from; to <= 40; to++) {
                for (const char *c = "abzQ!"; *c; c++) {
                    const uint8_t *p = from < to ? memchr(src + from, *c, to - from) : NULL;
                    ssize_t want = p ? p - src : -ENOENT;
                    cr_assert_eq(rill_buf_index_of(b, from, to, (uint8_t)*c), want,
                                 "%s index_of %c in [%zu,%zu)", kname[k], *c, from, to);
                }
                static const char *needles[] = {
                    "abc", "cabc", "abd", "xyzQ", "zQ", "Q", "abcabdabcabcxyzabcabdab"
                };
                for (unsigned j = 0; j < RILL_ARRAY_SIZE(needles); j++) {
                    size_t nl = strlen(needles[j]);
                    ssize_t want = naive_find(src, from, to, (const uint8_t *)needles[j], nl);
                    cr_assert_eq(rill_buf_find(b, from, to, needles[j], nl), want,
                                 "%s find %s in [%zu,%zu)", kname[k], needles[j], from, to);
                }
                cr_assert_eq(rill_buf_find(b, from, to, "", 0), (ssize_t)from, "empty needle");
            }
        /* Needle longer than the range, and past the end. */
        cr_assert_eq(rill_buf_find(b, 36, 40, "xyzQQ", 5), -ENOENT);
        cr_assert_eq(rill_buf_find(b, 0, 40, src, 40), 0);
        cr_assert_eq(rill_buf_find(b, 1, 40, src + 1, 39), 1);
        cr_assert_eq(rill_buf_find(b, 0, 39, src, 40), -ENOENT);
        cr_assert_eq(rill_buf_index_of(b, 0, 41, 'a'), -ERANGE);
        cr_assert_eq(rill_buf_index_of(b, 5, 4, 'a'), -ERANGE);
        cr_assert_eq(rill_buf_find(b, 0, 41, "a", 1), -ERANGE);
        cr_assert_eq(rill_buf_find(b, 5, 4, "", 0), -ERANGE);
        rill_buf_release(b);
    }
}

Test(buf_search, equal_every_kind)
{
    uint8_t src[40];
    pattern(src, sizeof(src), 31);
    struct rill_buf *b[K_COUNT];
    for (int k = 0; k < K_COUNT; k++) {
        b[k] = make(k, src, sizeof(src));
        for (size_t i = 0; i <= 40; i += 3)
            for (size_t n = 0; i + n <= 40; n += 4) {
                cr_assert(rill_buf_equal_bytes(b[k], i, src + i, n), "%s", kname[k]);
                if (n) {
                    uint8_t tmp[40];
                    memcpy(tmp, src + i, n);
                    tmp[n - 1] ^= 1;
                    cr_assert_not(rill_buf_equal_bytes(b[k], i, tmp, n));
                }
            }
        cr_assert_not(rill_buf_equal_bytes(b[k], 39, src + 39, 2), "past the writer index");
        cr_assert_not(rill_buf_equal_bytes(b[k], 41, src, 0));
    }
    for (int i = 0; i < K_COUNT; i++)
        for (int j = 0; j < K_COUNT; j++)
            cr_assert(rill_buf_equal(b[i], b[j]), "%s vs %s", kname[i], kname[j]);
    /* Different reader indices, same readable bytes. */
    struct rill_buf *tail = pooled_copy(src + 7, 33);
    cr_assert_eq(rill_buf_skip(b[K_COMPOSITE], 7), 0);
    cr_assert(rill_buf_equal(tail, b[K_COMPOSITE]));
    cr_assert(rill_buf_equal(b[K_COMPOSITE], tail));
    cr_assert_not(rill_buf_equal(b[K_POOLED], b[K_COMPOSITE]));
    cr_assert_eq(rill_buf_skip(b[K_SLICE], 7), 0);
    cr_assert(rill_buf_equal(b[K_SLICE], b[K_COMPOSITE]));
    cr_assert_eq(rill_buf_set_u8(b[K_SLICE], 39, 0), 0);
    cr_assert_not(rill_buf_equal(b[K_SLICE], b[K_COMPOSITE]));
    rill_buf_release(tail);
    for (int k = 0; k < K_COUNT; k++)
        rill_buf_release(b[k]);
}

Test(buf_search, iovec_every_kind)
{
    uint8_t src[40], cat[40];
    pattern(src, sizeof(src), 41);
    for (int k = 0; k < K_COUNT; k++) {
        struct rill_buf *b = make(k, src, sizeof(src));
        for (size_t i = 0; i <= 40; i++)
            for (size_t n = 0; i + n <= 40; n++) {
                struct iovec iov[16];
                size_t covered = 99;
                int cnt = rill_buf_iovec(b, i, n, iov, 16, &covered);
                cr_assert_geq(cnt, 0);
                cr_assert_eq(covered, n);
                if (k != K_COMPOSITE)
                    cr_assert_eq(cnt, n ? 1 : 0);
                size_t at = 0;
                for (int j = 0; j < cnt; j++) {
                    cr_assert_gt(iov[j].iov_len, 0);
                    memcpy(cat + at, iov[j].iov_base, iov[j].iov_len);
                    at += iov[j].iov_len;
                }
                cr_assert_eq(at, n);
                cr_assert_eq(memcmp(cat, src + i, n), 0, "%s iovec %zu+%zu", kname[k], i, n);
            }
        struct iovec one;
        size_t covered;
        cr_assert_eq(rill_buf_iovec(b, 0, 40, &one, 1, &covered), 1);
        cr_assert_eq(covered, k == K_COMPOSITE ? 3 : 40, "max ran out");
        cr_assert_eq(rill_buf_iovec(b, 0, 40, &one, 0, &covered), 0);
        cr_assert_eq(covered, 0);
        cr_assert_eq(rill_buf_iovec(b, 1, 40, &one, 1, NULL), -ERANGE);
        rill_buf_release(b);
    }
}

/* ---- guard page: no accessor reads past the last byte ---- */

struct guarded {
    uint8_t *map;
    size_t page;
};

/* @len bytes of @src placed right before a PROT_NONE page. */
static uint8_t *guarded_copy(struct guarded *g, const uint8_t *src, size_t len)
{
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    g->map = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(g->map, MAP_FAILED);
    cr_assert_eq(mprotect(g->map + g->page, g->page, PROT_NONE), 0);
    uint8_t *p = g->map + g->page - len;
    memcpy(p, src, len);
    return p;
}

static void exercise_reads(struct rill_buf *b, const uint8_t *src, size_t len)
{
    for (size_t i = 0; i <= len; i++)
        for (int f = 0; f < NFORMS; f++) {
            uint64_t v;
            int rc = get_any(b, i, f, &v);
            cr_assert_eq(rc, i + widths[f] <= len ? 0 : -ERANGE);
        }
    uint8_t tmp[4096];
    for (size_t i = 0; i <= len; i++) {
        cr_assert_eq(rill_buf_get_bytes(b, i, tmp, len - i), 0);
        cr_assert(rill_buf_equal_bytes(b, i, src + i, len - i));
        cr_assert_eq(rill_buf_index_of(b, i, len, 0xFF), -ENOENT); /* scans to the end */
        cr_assert_eq(rill_buf_find(b, i, len, "\xFF\xFE\xFD", 3), -ENOENT);
        if (len - i >= 3)
            cr_assert_eq(rill_buf_find(b, i, len, src + len - 3, 3),
                         naive_find(src, i, len, src + len - 3, 3));
        cr_assert_eq(rill_buf_find(b, i, len, src + i, len - i), (ssize_t)i);
    }
    struct iovec iov[64];
    cr_assert_geq(rill_buf_iovec(b, 0, len, iov, 64, NULL), 0);
    struct rill_buf *c, *s;
    cr_assert_eq(rill_buf_copy(b, 0, len, &c), 0);
    cr_assert(rill_buf_equal(b, c));
    rill_buf_release(c);
    cr_assert_eq(rill_buf_slice(b, len / 2, len - len / 2, &s), 0);
    cr_assert_eq(rill_buf_index_of(s, 0, rill_buf_readable(s), 0xFF), -ENOENT);
    rill_buf_release(s);
    for (int f = 0; f < NFORMS; f++) {
        rill_buf_set_reader_index(b, 0);
        uint64_t v;
        while (read_any(b, f, &v) == 0)
            ;
        cr_assert_lt(rill_buf_readable(b), (size_t)widths[f]);
    }
    rill_buf_set_reader_index(b, 0);
    cr_assert_eq(rill_buf_read_bytes(b, tmp, len), 0);
    rill_buf_set_reader_index(b, 0);
}

Test(buf_search, guard_page_no_over_read)
{
    static const size_t lens[] = { 1, 3, 7, 8, 9, 31, 64, 100, 1000 };
    for (unsigned t = 0; t < RILL_ARRAY_SIZE(lens); t++) {
        size_t len = lens[t];
        uint8_t src[1000];
        for (size_t i = 0; i < len; i++)
            src[i] = (uint8_t)(i * 7 % 200); /* never 0xFF..0xFD */
        struct guarded g;
        uint8_t *mem = guarded_copy(&g, src, len);
        struct rill_buf *b, *ro;
        cr_assert_eq(rill_buf_wrap(mem, len, len, NULL, NULL, &b), 0);
        exercise_reads(b, src, len);
        cr_assert_eq(rill_buf_readonly(b, &ro), 0);
        exercise_reads(ro, src, len);
        rill_buf_release(ro);

        /* A composite whose every component ends at a guard page. */
        struct guarded parts[4];
        struct rill_buf *c;
        cr_assert_eq(rill_buf_composite_new(&c), 0);
        size_t off = 0;
        for (int i = 0; i < 4; i++) {
            size_t n = i == 3 ? len - off : len / 4;
            if (n == 0) {
                parts[i].map = NULL;
                continue;
            }
            uint8_t *pm = guarded_copy(&parts[i], src + off, n);
            struct rill_buf *w;
            cr_assert_eq(rill_buf_wrap(pm, n, n, NULL, NULL, &w), 0);
            cr_assert_eq(rill_buf_composite_add(c, w), 0);
            off += n;
        }
        exercise_reads(c, src, len);
        rill_buf_release(c);
        rill_buf_release(b);
        for (int i = 0; i < 4; i++)
            if (parts[i].map)
                munmap(parts[i].map, 2 * parts[i].page);
        munmap(g.map, 2 * g.page);
    }
}
