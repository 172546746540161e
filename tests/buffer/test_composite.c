/* Composite buffers: ownership on add, component moves, growth by writes,
 * discard, consolidate, iovec export, and random operation sequences
 * checked against a flat reference model (a byte array and two indices). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rill/buf.h"
#include "rill/composite.h"
#include "util/testutil.h"

TestSuite(composite, .timeout = 30, .fini = rill_test_no_leaks);

static int frees;
static void count_free(void *mem, void *arg)
{
    (void)arg;
    frees++;
    free(mem);
}

static struct rill_buf *pooled(const void *p, size_t n)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(p, n, &b), 0);
    return b;
}

static struct rill_buf *wrapped(const void *p, size_t n)
{
    void *m = malloc(n + 1);
    memcpy(m, p, n);
    struct rill_buf *b;
    cr_assert_eq(rill_buf_wrap(m, n, n, count_free, NULL, &b), 0);
    return b;
}

static struct rill_buf *composite(void)
{
    struct rill_buf *c;
    cr_assert_eq(rill_buf_composite_new(&c), 0);
    cr_assert_eq(rill_buf_kind(c), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_capacity(c), 0);
    return c;
}

/* ---- deterministic cases ---- */

Test(composite, add_takes_ownership_on_every_path)
{
    struct rill_buf *c = composite(), *ro, *flat = pooled("flat", 4);
    cr_assert_eq(rill_buf_composite_add(c, pooled("", 0)), 0, "empty: released at once");
    cr_assert_eq(rill_buf_composite_count(c), 0);
    cr_assert_eq(rill_buf_composite_add(flat, pooled("x", 1)), -EINVAL, "not a composite");
    cr_assert_eq(rill_buf_composite_add(c, wrapped("abc", 3)), 0);
    cr_assert_eq(rill_buf_composite_add(c, pooled("d", 1)), 0);
    cr_assert_eq(rill_buf_readonly(c, &ro), 0);
    cr_assert_eq(rill_buf_kind(ro), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_composite_add(ro, wrapped("x", 1)), -EROFS);
    cr_assert_eq(frees, 1, "released on failure");
    cr_assert_eq(rill_buf_set_max_capacity(c, 6), 0);
    cr_assert_eq(rill_buf_composite_add(c, pooled("xyz", 3)), -ENOBUFS);
    cr_assert_eq(rill_buf_composite_add(c, pooled("xy", 2)), 0);
    cr_assert_eq(rill_buf_writer_index(c), 6);
    cr_assert(rill_buf_equal_bytes(c, 0, "abcdxy", 6));
    cr_assert_eq(rill_buf_composite_add(c, rill_buf_retain(c)), -EINVAL);
    rill_buf_release(ro);
    rill_buf_release(flat);
    rill_buf_release(c);
    cr_assert_eq(frees, 2);
}

Test(composite, add_reads_only_readable_bytes_and_moves_components)
{
    struct rill_buf *a = composite(), *b = composite(), *p = pooled("..xyz", 5);
    cr_assert_eq(rill_buf_skip(p, 2), 0);
    cr_assert_eq(rill_buf_composite_add(a, p), 0);
    cr_assert(rill_buf_equal_bytes(a, 0, "xyz", 3));
    cr_assert_eq(rill_buf_composite_add(b, pooled("12", 2)), 0);
    cr_assert_eq(rill_buf_composite_add(b, wrapped("345", 3)), 0);
    cr_assert_eq(rill_buf_composite_add(b, pooled("678", 3)), 0);
    cr_assert_eq(rill_buf_skip(b, 1), 0);
    cr_assert_eq(rill_buf_set_writer_index(b, 7), 0); /* readable: 234567 */
    struct rill_buf *inner = rill_buf_composite_component(b, 1);
    cr_assert_eq(rill_buf_composite_add(a, b), 0);
    cr_assert_eq(rill_buf_composite_count(a), 4, "components moved in, no nesting");
    cr_assert_eq(rill_buf_composite_component(a, 2), inner);
    for (unsigned i = 0; i < rill_buf_composite_count(a); i++)
        cr_assert_neq(rill_buf_kind(rill_buf_composite_component(a, i)), RILL_BUF_COMPOSITE);
    cr_assert_null(rill_buf_composite_component(a, 4));
    cr_assert_eq(rill_buf_writer_index(a), 9);
    cr_assert(rill_buf_equal_bytes(a, 0, "xyz234567", 9));
    cr_assert_eq(frees, 0);
    rill_buf_release(a);
    cr_assert_eq(frees, 1);
}

Test(composite, add_after_unwritten_room_appends_at_writer_index)
{
    struct rill_buf *c = composite();
    cr_assert_eq(rill_buf_composite_add(c, wrapped("abc", 3)), 0);
    cr_assert_eq(rill_buf_ensure_writable(c, 100), 0);
    cr_assert_geq(rill_buf_capacity(c), 103);
    cr_assert_eq(rill_buf_write_u8(c, 'd'), 0);
    cr_assert_eq(rill_buf_composite_add(c, pooled("ef", 2)), 0);
    cr_assert_eq(rill_buf_writer_index(c), 6);
    cr_assert_eq(rill_buf_capacity(c), 6, "the unwritten room was dropped");
    cr_assert(rill_buf_equal_bytes(c, 0, "abcdef", 6));
    rill_buf_release(c);
}

Test(composite, writes_fill_spare_room_then_grow_in_chunks)
{
    struct rill_buf *c = composite(), *p;
    cr_assert_eq(rill_buf_alloc(256, &p), 0);
    cr_assert_eq(rill_buf_write_bytes(p, "head", 4), 0);
    cr_assert_eq(rill_buf_composite_add(c, p), 0);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(rill_buf_write_u8(c, (uint8_t)i), 0);
    cr_assert_eq(rill_buf_composite_count(c), 1, "exclusively owned pooled: spare room used");
    for (int i = 200; i < 20000; i++)
        cr_assert_eq(rill_buf_write_u8(c, (uint8_t)i), 0);
    cr_assert_leq(rill_buf_composite_count(c), 8, "growth, not byte by byte: %u",
                  rill_buf_composite_count(c));
    cr_assert(rill_buf_equal_bytes(c, 0, "head", 4));
    for (int i = 0; i < 20000; i += 97) {
        uint8_t v;
        cr_assert_eq(rill_buf_get_u8(c, 4 + i, &v), 0);
        cr_assert_eq(v, (uint8_t)i);
    }
    rill_buf_release(c);

    /* A shared pooled component's spare room is not the composite's. */
    c = composite();
    cr_assert_eq(rill_buf_alloc(256, &p), 0);
    cr_assert_eq(rill_buf_write_bytes(p, "head", 4), 0);
    cr_assert_eq(rill_buf_set_bytes(p, 4, "KEEP", 4), 0);
    cr_assert_eq(rill_buf_composite_add(c, rill_buf_retain(p)), 0);
    cr_assert_eq(rill_buf_write_u32_be(c, 0), 0);
    cr_assert_eq(rill_buf_composite_count(c), 2);
    cr_assert_eq(memcmp(rill_buf_read_ptr(p, &(size_t){ 0 }) + 4, "KEEP", 4), 0);
    rill_buf_release(p);
    rill_buf_release(c);
}

Test(composite, discard_read_releases_read_components)
{
    struct rill_buf *c = composite();
    cr_assert_eq(rill_buf_composite_add(c, wrapped("aaaa", 4)), 0);
    cr_assert_eq(rill_buf_composite_add(c, wrapped("bbbb", 4)), 0);
    cr_assert_eq(rill_buf_composite_add(c, wrapped("cccc", 4)), 0);
    cr_assert_eq(rill_buf_skip(c, 6), 0);
    cr_assert_eq(rill_buf_discard_read(c), 0);
    cr_assert_eq(frees, 1, "the fully read component went back");
    cr_assert_eq(rill_buf_composite_count(c), 2);
    cr_assert_eq(rill_buf_reader_index(c), 0);
    cr_assert_eq(rill_buf_writer_index(c), 6);
    cr_assert(rill_buf_equal_bytes(c, 0, "bbcccc", 6));
    cr_assert_eq(rill_buf_skip(c, 6), 0);
    cr_assert_eq(rill_buf_discard_read(c), 0);
    cr_assert_eq(frees, 3);
    cr_assert_eq(rill_buf_composite_count(c), 0);
    cr_assert_eq(rill_buf_capacity(c), 0);
    cr_assert_eq(rill_buf_write_u16_le(c, 0x4241), 0);
    cr_assert(rill_buf_equal_bytes(c, 0, "AB", 2));
    rill_buf_release(c);
}

Test(composite, consolidate)
{
    struct rill_buf *c = composite();
    cr_assert_eq(rill_buf_consolidate(c), 0);
    cr_assert_eq(rill_buf_composite_add(c, wrapped("hello ", 6)), 0);
    cr_assert_eq(rill_buf_composite_add(c, pooled("composite ", 10)), 0);
    cr_assert_eq(rill_buf_composite_add(c, wrapped("world", 5)), 0);
    cr_assert_eq(rill_buf_skip(c, 3), 0);
    size_t n;
    cr_assert_null(rill_buf_read_ptr(c, &n));
    cr_assert_eq(rill_buf_consolidate(c), 0);
    cr_assert_eq(frees, 2);
    cr_assert_eq(rill_buf_composite_count(c), 1);
    cr_assert_eq(rill_buf_kind(rill_buf_composite_component(c, 0)), RILL_BUF_POOLED);
    cr_assert_eq(rill_buf_reader_index(c), 3, "indices don't move");
    cr_assert_eq(rill_buf_writer_index(c), 21);
    const uint8_t *p = rill_buf_read_ptr(c, &n);
    cr_assert_not_null(p);
    cr_assert_eq(n, 18);
    cr_assert_eq(memcmp(p, "lo composite world", 18), 0);
    cr_assert(rill_buf_equal_bytes(c, 0, "hel", 3));
    cr_assert_eq(rill_buf_write_bytes(c, "!!", 2), 0);
    cr_assert_eq(rill_buf_composite_count(c), 1, "grows in place");
    cr_assert(rill_buf_equal_bytes(c, 0, "hello composite world!!", 23));
    rill_buf_release(c);
}

Test(composite, iovec_export_for_writev)
{
    struct rill_buf *c = composite();
    cr_assert_eq(rill_buf_composite_add(c, pooled("GET / ", 6)), 0);
    cr_assert_eq(rill_buf_composite_add(c, wrapped("HTTP/1.1", 8)), 0);
    cr_assert_eq(rill_buf_composite_add(c, pooled("\r\n\r\n", 4)), 0);
    struct iovec iov[8];
    size_t covered;
    int n = rill_buf_iovec(c, 2, 15, iov, 8, &covered);
    cr_assert_eq(n, 3);
    cr_assert_eq(covered, 15);
    cr_assert_eq(iov[0].iov_len, 4);
    cr_assert_eq(iov[2].iov_len, 3);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(writev(fds[1], iov, n), 15);
    char got[16] = { 0 };
    cr_assert_eq(read(fds[0], got, 15), 15);
    cr_assert_str_eq(got, "T / HTTP/1.1\r\n\r");
    close(fds[0]);
    close(fds[1]);
    n = rill_buf_iovec(c, 0, 18, iov, 2, &covered);
    cr_assert_eq(n, 2);
    cr_assert_eq(covered, 14, "max ran out");
    rill_buf_release(c);
}

Test(composite, write_ptr_gives_contiguous_room)
{
    struct rill_buf *c = composite(), *p;
    cr_assert_eq(rill_buf_alloc(64, &p), 0);
    cr_assert_eq(rill_buf_write_bytes(p, "x", 1), 0);
    cr_assert_eq(rill_buf_composite_add(c, p), 0);
    size_t spare = rill_buf_capacity(p) - 1, len;
    uint8_t *w = rill_buf_write_ptr(c, spare + 10, &len);
    cr_assert_not_null(w);
    cr_assert_geq(len, spare + 10);
    memset(w, 'y', spare + 10);
    cr_assert_eq(rill_buf_advance_writer(c, spare + 10), 0);
    cr_assert_eq(rill_buf_readable(c), spare + 11);
    uint8_t v;
    cr_assert_eq(rill_buf_get_u8(c, 0, &v), 0);
    cr_assert_eq(v, 'x');
    cr_assert_eq(rill_buf_get_u8(c, spare + 10, &v), 0);
    cr_assert_eq(v, 'y');
    cr_assert_eq(rill_buf_set_max_capacity(c, rill_buf_capacity(c) + 5), 0);
    cr_assert_null(rill_buf_write_ptr(c, rill_buf_writable(c) + 6, &len));
    cr_assert_eq(len, 0);
    rill_buf_release(c);
}

/* ---- random operation sequences against a flat model ---- */

struct model {
    uint8_t *b;
    bool *ro; /* byte sits in a read-only component */
    size_t rd, wr, alloc;
};

struct view { /* a slice kept across operations, with the bytes it must show */
    struct rill_buf *buf;
    uint8_t *want;
    size_t len;
};

struct held { /* a pooled component also referenced here, with spare room */
    struct rill_buf *buf;
    size_t used;
};

#define MAX_VIEWS 8
#define MAX_HELD  8
#define SPARE     32

static struct {
    uint64_t rng;
    unsigned seed;
    int op;
    const char *what;
    struct rill_buf *c;
    struct model m;
    struct view views[MAX_VIEWS];
    int nviews;
    struct held held[MAX_HELD];
    int nheld;
} t;

#define CHECK(cond, fmt, ...)                                                                      \
    cr_assert(cond, "seed %u op %d (%s): " fmt, t.seed, t.op, t.what, ##__VA_ARGS__)

static uint64_t rnd(void)
{
    t.rng ^= t.rng << 13;
    t.rng ^= t.rng >> 7;
    t.rng ^= t.rng << 17;
    return t.rng;
}

static size_t below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static void fill_random(uint8_t *p, size_t n)
{
    /* A small alphabet, so searches find real matches. */
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)("abcab\0\xff"[below(7)]);
}

static void model_reserve(size_t n)
{
    if (n <= t.m.alloc)
        return;
    size_t a = t.m.alloc ? t.m.alloc : 256;
    while (a < n)
        a *= 2;
    t.m.b = realloc(t.m.b, a);
    t.m.ro = realloc(t.m.ro, a * sizeof(bool));
    t.m.alloc = a;
}

static void model_append(const uint8_t *p, size_t n, bool ro)
{
    model_reserve(t.m.wr + n);
    memcpy(t.m.b + t.m.wr, p, n);
    memset(t.m.ro + t.m.wr, ro, n);
    t.m.wr += n;
}

static bool model_ro(size_t i, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (t.m.ro[i + j])
            return true;
    return false;
}

static void drop_views(void)
{
    for (int i = 0; i < t.nviews; i++) {
        rill_buf_release(t.views[i].buf);
        free(t.views[i].want);
    }
    t.nviews = 0;
}

static void check_all(void)
{
    CHECK(rill_buf_reader_index(t.c) == t.m.rd, "reader %zu want %zu", rill_buf_reader_index(t.c),
          t.m.rd);
    CHECK(rill_buf_writer_index(t.c) == t.m.wr, "writer %zu want %zu", rill_buf_writer_index(t.c),
          t.m.wr);
    CHECK(rill_buf_capacity(t.c) >= t.m.wr, "capacity below writer");
    if (t.m.wr)
        CHECK(rill_buf_equal_bytes(t.c, 0, t.m.b, t.m.wr), "bytes differ from the model");
    for (int i = 0; i < t.nviews; i++)
        CHECK(rill_buf_equal_bytes(t.views[i].buf, 0, t.views[i].want, t.views[i].len),
              "view %d changed", i);
    for (int i = 0; i < t.nheld; i++) {
        uint8_t spare[SPARE], want[SPARE];
        memset(want, 0xCC, SPARE);
        size_t n;
        const uint8_t *p = rill_buf_read_ptr(t.held[i].buf, &n);
        memcpy(spare, p + t.held[i].used, SPARE);
        CHECK(memcmp(spare, want, SPARE) == 0, "spare room of a shared component was written");
    }
}

/* A new component of a random kind holding @n random bytes (appended to
 * the model); *ro says whether its bytes are read-only. */
static struct rill_buf *random_component(size_t n, bool *ro)
{
    uint8_t *src = malloc(n + 1);
    fill_random(src, n);
    struct rill_buf *b = NULL, *p;
    *ro = false;
    switch (below(8)) {
    case 0: /* pooled, exactly sized */
        b = pooled(src, n);
        break;
    case 1: /* pooled with spare room and a read prefix */
        cr_assert_eq(rill_buf_alloc(n + 100, &b), 0);
        cr_assert_eq(rill_buf_write_bytes(b, "prefix", 6), 0);
        cr_assert_eq(rill_buf_write_bytes(b, src, n), 0);
        cr_assert_eq(rill_buf_skip(b, 6), 0);
        break;
    case 2:
        b = wrapped(src, n);
        break;
    case 3: /* slice of a larger buffer */
        cr_assert_eq(rill_buf_alloc(n + 20, &p), 0);
        cr_assert_eq(rill_buf_write_bytes(p, "0123456789", 10), 0);
        cr_assert_eq(rill_buf_write_bytes(p, src, n), 0);
        cr_assert_eq(rill_buf_write_bytes(p, "0123456789", 10), 0);
        cr_assert_eq(rill_buf_slice(p, 10, n, &b), 0);
        rill_buf_release(p);
        break;
    case 4: /* read-only view */
        p = pooled(src, n);
        cr_assert_eq(rill_buf_readonly(p, &b), 0);
        rill_buf_release(p);
        *ro = true;
        break;
    case 5: /* shared pooled buffer whose spare room must stay untouched */
        if (t.nheld < MAX_HELD) {
            cr_assert_eq(rill_buf_alloc(n + SPARE, &b), 0);
            cr_assert_eq(rill_buf_write_bytes(b, src, n), 0);
            uint8_t cc[SPARE];
            memset(cc, 0xCC, SPARE);
            cr_assert_eq(rill_buf_set_bytes(b, n, cc, SPARE), 0);
            t.held[t.nheld++] = (struct held){ rill_buf_retain(b), n };
        } else {
            b = pooled(src, n);
        }
        break;
    default: { /* a composite of up to three pieces, partly read */
        b = composite();
        size_t pre = below(3);
        uint8_t junk[3] = { 'J', 'J', 'J' };
        cr_assert_eq(rill_buf_composite_add(b, pooled(junk, pre)), 0);
        size_t a = below(n + 1), c2 = below(n - a + 1);
        cr_assert_eq(rill_buf_composite_add(b, wrapped(src, a)), 0);
        cr_assert_eq(rill_buf_composite_add(b, pooled(src + a, c2)), 0);
        cr_assert_eq(rill_buf_composite_add(b, pooled(src + a + c2, n - a - c2)), 0);
        cr_assert_eq(rill_buf_skip(b, pre), 0);
        break;
    }
    }
    model_append(src, n, *ro);
    free(src);
    return b;
}

static const int widths[] = { 1, 2, 2, 4, 4, 8, 8 };

static uint64_t model_int(size_t i, int f)
{
    int w = widths[f];
    uint64_t v = 0;
    for (int j = 0; j < w; j++) {
        int k = (f == 0 || f % 2 == 1) ? j : w - 1 - j; /* be forms are 1, 3, 5 */
        v = v << 8 | t.m.b[i + k];
    }
    return v;
}

static int get_form(size_t i, int f, uint64_t *out)
{
    uint8_t a;
    uint16_t b;
    uint32_t c;
    uint64_t d;
    int rc;
    switch (f) {
    case 0:
        rc = rill_buf_get_u8(t.c, i, &a), *out = a;
        break;
    case 1:
        rc = rill_buf_get_u16_be(t.c, i, &b), *out = b;
        break;
    case 2:
        rc = rill_buf_get_u16_le(t.c, i, &b), *out = b;
        break;
    case 3:
        rc = rill_buf_get_u32_be(t.c, i, &c), *out = c;
        break;
    case 4:
        rc = rill_buf_get_u32_le(t.c, i, &c), *out = c;
        break;
    case 5:
        rc = rill_buf_get_u64_be(t.c, i, &d), *out = d;
        break;
    default:
        rc = rill_buf_get_u64_le(t.c, i, &d), *out = d;
        break;
    }
    return rc;
}

static int read_form(int f, uint64_t *out)
{
    uint8_t a = 0;
    uint16_t b = 0;
    uint32_t c = 0;
    uint64_t d = 0;
    int rc;
    switch (f) {
    case 0:
        rc = rill_buf_read_u8(t.c, &a), *out = a;
        break;
    case 1:
        rc = rill_buf_read_u16_be(t.c, &b), *out = b;
        break;
    case 2:
        rc = rill_buf_read_u16_le(t.c, &b), *out = b;
        break;
    case 3:
        rc = rill_buf_read_u32_be(t.c, &c), *out = c;
        break;
    case 4:
        rc = rill_buf_read_u32_le(t.c, &c), *out = c;
        break;
    case 5:
        rc = rill_buf_read_u64_be(t.c, &d), *out = d;
        break;
    default:
        rc = rill_buf_read_u64_le(t.c, &d), *out = d;
        break;
    }
    return rc;
}

static int set_form(size_t i, int f, uint64_t v)
{
    switch (f) {
    case 0:
        return rill_buf_set_u8(t.c, i, (uint8_t)v);
    case 1:
        return rill_buf_set_u16_be(t.c, i, (uint16_t)v);
    case 2:
        return rill_buf_set_u16_le(t.c, i, (uint16_t)v);
    case 3:
        return rill_buf_set_u32_be(t.c, i, (uint32_t)v);
    case 4:
        return rill_buf_set_u32_le(t.c, i, (uint32_t)v);
    case 5:
        return rill_buf_set_u64_be(t.c, i, v);
    default:
        return rill_buf_set_u64_le(t.c, i, v);
    }
}

static int write_form(int f, uint64_t v)
{
    switch (f) {
    case 0:
        return rill_buf_write_u8(t.c, (uint8_t)v);
    case 1:
        return rill_buf_write_u16_be(t.c, (uint16_t)v);
    case 2:
        return rill_buf_write_u16_le(t.c, (uint16_t)v);
    case 3:
        return rill_buf_write_u32_be(t.c, (uint32_t)v);
    case 4:
        return rill_buf_write_u32_le(t.c, (uint32_t)v);
    case 5:
        return rill_buf_write_u64_be(t.c, v);
    default:
        return rill_buf_write_u64_le(t.c, v);
    }
}

/* The bytes of @v in form @f, as they sit in memory. */
static void encode(uint64_t v, int f, uint8_t *out)
{
    int w = widths[f];
    for (int j = 0; j < w; j++) {
        int k = (f == 0 || f % 2 == 1) ? w - 1 - j : j;
        out[j] = (uint8_t)(v >> (8 * k));
    }
}

static ssize_t model_find(size_t from, size_t to, const uint8_t *n, size_t nl)
{
    if (nl == 0)
        return (ssize_t)from;
    for (size_t i = from; i + nl <= to; i++)
        if (memcmp(t.m.b + i, n, nl) == 0)
            return (ssize_t)i;
    return -ENOENT;
}

/* A random index around the writer index (some past it). */
static size_t rand_index(void)
{
    return below(t.m.wr + 10);
}

/* Weights of the cases of op_once (same order); consolidate is rare so
 * composites get many components. A big model stops the growing ops. */
static const unsigned weights[] = { 8, 6, 6, 10, 15, 10, 10, 10, 5, 4, 5, 10, 1, 5, 5, 3, 5, 5 };
static const bool grows[] = { 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1 };

static int pick_op(bool big)
{
    unsigned total = 0;
    for (unsigned i = 0; i < RILL_ARRAY_SIZE(weights); i++)
        total += big && grows[i] ? 0 : weights[i];
    unsigned r = (unsigned)below(total);
    for (unsigned i = 0;; i++) {
        unsigned w = big && grows[i] ? 0 : weights[i];
        if (r < w)
            return (int)i;
        r -= w;
    }
}

static void op_once(void)
{
    size_t wr = t.m.wr, rd = t.m.rd;
    int f = (int)below(7), w = widths[f];
    uint64_t v = rnd();
    int rc;
    bool big = wr > 48 * 1024; /* keep the model small: stop growing */
    switch (pick_op(big)) {
    case 0:
    case 1:
    case 2: {
        t.what = "add";
        size_t n = below(8) == 0 ? below(3000) : below(40);
        bool ro;
        struct rill_buf *b = random_component(n, &ro);
        CHECK(rill_buf_composite_add(t.c, b) == 0, "add failed");
        break;
    }
    case 3:
        t.what = "write int";
        CHECK(write_form(f, v) == 0, "write form %d", f);
        uint8_t enc[8];
        encode(v, f, enc);
        model_append(enc, w, false);
        break;
    case 4: {
        t.what = "get int";
        size_t i = rand_index();
        uint64_t got = 0x5A5A;
        rc = get_form(i, f, &got);
        if (i + w <= wr) {
            CHECK(rc == 0, "get form %d at %zu", f, i);
            CHECK(got == model_int(i, f), "get form %d at %zu: %llx want %llx", f, i,
                  (unsigned long long)got, (unsigned long long)model_int(i, f));
        } else {
            CHECK(rc == -ERANGE, "get past the end: %d", rc);
        }
        break;
    }
    case 5: {
        t.what = "read int";
        uint64_t got = 0;
        rc = read_form(f, &got);
        if (rd + w <= wr) {
            CHECK(rc == 0 && got == model_int(rd, f), "read form %d at %zu", f, rd);
            t.m.rd += w;
        } else {
            CHECK(rc == -ERANGE, "read past the end");
        }
        break;
    }
    case 6: {
        t.what = "set int";
        if (wr < (size_t)w)
            break;
        size_t i = below(wr - w + 1);
        rc = set_form(i, f, v);
        if (model_ro(i, w)) {
            CHECK(rc == -EROFS, "set over read-only bytes: %d", rc);
        } else {
            CHECK(rc == 0, "set form %d at %zu: %d", f, i, rc);
            encode(v, f, t.m.b + i);
            drop_views(); /* they share these bytes */
        }
        break;
    }
    case 7: {
        t.what = "read/get bytes";
        size_t n = below(wr - rd + 20);
        uint8_t *tmp = malloc(n + 1);
        if (below(2)) {
            rc = rill_buf_read_bytes(t.c, tmp, n);
            CHECK(rc == (rd + n <= wr ? 0 : -ERANGE), "read_bytes %zu", n);
            if (rc == 0) {
                CHECK(memcmp(tmp, t.m.b + rd, n) == 0, "read_bytes content");
                t.m.rd += n;
            }
        } else {
            size_t i = rand_index();
            rc = rill_buf_get_bytes(t.c, i, tmp, n);
            CHECK(rc == (i + n <= wr ? 0 : -ERANGE), "get_bytes %zu+%zu", i, n);
            if (rc == 0)
                CHECK(memcmp(tmp, t.m.b + i, n) == 0, "get_bytes content");
        }
        free(tmp);
        break;
    }
    case 8: {
        t.what = "skip";
        size_t n = below(wr - rd + 3);
        rc = rill_buf_skip(t.c, n);
        CHECK(rc == (rd + n <= wr ? 0 : -ERANGE), "skip %zu", n);
        if (rc == 0)
            t.m.rd += n;
        break;
    }
    case 9:
        t.what = "discard_read";
        CHECK(rill_buf_discard_read(t.c) == 0, "discard");
        memmove(t.m.b, t.m.b + rd, wr - rd);
        memmove(t.m.ro, t.m.ro + rd, (wr - rd) * sizeof(bool));
        t.m.wr -= rd;
        t.m.rd = 0;
        break;
    case 10: {
        t.what = "slice";
        size_t i = below(wr + 1), n = below(wr - i + 1);
        struct rill_buf *s;
        CHECK(rill_buf_slice(t.c, i, n, &s) == 0, "slice %zu+%zu", i, n);
        CHECK(rill_buf_readable(s) == n && rill_buf_equal_bytes(s, 0, t.m.b + i, n),
              "slice %zu+%zu bytes", i, n);
        if (n >= 8) {
            uint64_t x;
            CHECK(rill_buf_get_u64_be(s, n - 8, &x) == 0 && x == model_int(i + n - 8, 5),
                  "slice get");
        }
        if (t.nviews < MAX_VIEWS) {
            uint8_t *want = malloc(n + 1);
            memcpy(want, t.m.b + i, n);
            t.views[t.nviews++] = (struct view){ s, want, n };
        } else {
            rill_buf_release(s);
        }
        break;
    }
    case 11: {
        t.what = "find";
        size_t from = below(wr + 1), to = from + below(wr - from + 1);
        uint8_t needle[12] = { 0 };
        size_t nl = below(sizeof(needle) + 1);
        if (below(3) && wr >= nl) { /* a needle that occurs, maybe across components */
            memcpy(needle, t.m.b + below(wr - nl + 1), nl);
        } else {
            fill_random(needle, nl);
        }
        ssize_t got = rill_buf_find(t.c, from, to, needle, nl);
        ssize_t want = model_find(from, to, needle, nl);
        CHECK(got == want, "find len %zu in [%zu,%zu): %zd want %zd", nl, from, to, got, want);
        uint8_t byte = needle[0];
        const uint8_t *p = from < to ? memchr(t.m.b + from, byte, to - from) : NULL;
        got = rill_buf_index_of(t.c, from, to, byte);
        CHECK(got == (p ? p - t.m.b : -ENOENT), "index_of in [%zu,%zu)", from, to);
        CHECK(rill_buf_find(t.c, from, wr + 1, needle, nl) == -ERANGE, "find past the end");
        break;
    }
    case 12:
        t.what = "consolidate";
        rc = rill_buf_composite_count(t.c) > 1; /* one component: already flat, kept */
        CHECK(rill_buf_consolidate(t.c) == 0, "consolidate");
        CHECK(rill_buf_composite_count(t.c) <= 1, "one component left");
        if (rc)
            memset(t.m.ro, 0, t.m.wr * sizeof(bool));
        break;
    case 13: {
        t.what = "iovec";
        size_t i = below(wr + 1), n = below(wr - i + 1);
        struct iovec iov[16];
        size_t covered;
        int cnt = rill_buf_iovec(t.c, i, n, iov, 16, &covered);
        CHECK(cnt >= 0 && cnt <= 16 && covered <= n, "iovec");
        CHECK(covered == n || cnt == 16, "iovec stopped early");
        size_t at = i;
        for (int k = 0; k < cnt; k++) {
            CHECK(memcmp(iov[k].iov_base, t.m.b + at, iov[k].iov_len) == 0, "iovec %d", k);
            at += iov[k].iov_len;
        }
        CHECK(at == i + covered, "iovec lengths");
        break;
    }
    case 14: {
        t.what = "equal";
        struct rill_buf *flat = pooled(t.m.b + rd, wr - rd);
        CHECK(rill_buf_equal(t.c, flat) && rill_buf_equal(flat, t.c), "equal");
        if (wr > rd) {
            size_t k = rd + below(wr - rd);
            CHECK(rill_buf_set_u8(flat, k - rd, t.m.b[k] ^ 1) == 0, "set");
            CHECK(!rill_buf_equal(t.c, flat), "not equal");
        }
        rill_buf_release(flat);
        size_t i = rand_index(), n = below(30);
        static const uint8_t zeros[30];
        if (i + n <= wr)
            CHECK(rill_buf_equal_bytes(t.c, i, t.m.b + i, n), "equal_bytes %zu+%zu", i, n);
        else
            CHECK(!rill_buf_equal_bytes(t.c, i, zeros, n), "equal_bytes past the end");
        break;
    }
    case 15:
        t.what = "truncate";
        if (wr > rd) {
            size_t nw = rd + below(wr - rd + 1);
            CHECK(rill_buf_set_writer_index(t.c, nw) == 0, "set_writer_index");
            t.m.wr = nw;
            drop_views(); /* later writes may reuse the bytes they show */
        }
        break;
    case 16: {
        t.what = "write_ptr/ensure_writable";
        size_t min = below(3000) + 1;
        if (below(2)) {
            CHECK(rill_buf_ensure_writable(t.c, min) == 0, "ensure_writable %zu", min);
            CHECK(rill_buf_writable(t.c) >= min, "writable after ensure");
            break;
        }
        size_t len;
        uint8_t *p = rill_buf_write_ptr(t.c, min, &len);
        CHECK(p != NULL && len >= min, "write_ptr %zu", min);
        size_t n = below(min + 1);
        fill_random(p, n);
        uint8_t *copy = malloc(n + 1);
        memcpy(copy, p, n);
        CHECK(rill_buf_advance_writer(t.c, n) == 0, "advance");
        model_append(copy, n, false);
        free(copy);
        break;
    }
    default: {
        t.what = "write_bytes/write_buf";
        size_t n = below(200);
        uint8_t *src = malloc(n + 1);
        fill_random(src, n);
        if (below(2)) {
            CHECK(rill_buf_write_bytes(t.c, src, n) == 0, "write_bytes");
        } else {
            struct rill_buf *s = composite();
            cr_assert_eq(rill_buf_composite_add(s, pooled(src, n / 2)), 0);
            cr_assert_eq(rill_buf_composite_add(s, wrapped(src + n / 2, n - n / 2)), 0);
            CHECK(rill_buf_write_buf(t.c, s, n) == 0, "write_buf");
            CHECK(rill_buf_readable(s) == 0, "source advanced");
            rill_buf_release(s);
        }
        model_append(src, n, false);
        free(src);
        break;
    }
    }
}

ParameterizedTestParameters(composite, random_ops)
{
    static unsigned seeds[20];
    for (unsigned i = 0; i < 20; i++)
        seeds[i] = 0x9E3779B9u * (i + 1);
    return cr_make_param_array(unsigned, seeds, 20);
}

ParameterizedTest(unsigned *seed, composite, random_ops)
{
    t.seed = *seed;
    t.rng = 0x2545F4914F6CDD1Dull ^ *seed;
    t.c = composite();
    model_reserve(256);
    for (t.op = 0; t.op < 2000; t.op++) {
        op_once();
        t.what = "invariants";
        CHECK(rill_buf_reader_index(t.c) == t.m.rd && rill_buf_writer_index(t.c) == t.m.wr,
              "indices %zu/%zu want %zu/%zu", rill_buf_reader_index(t.c),
              rill_buf_writer_index(t.c), t.m.rd, t.m.wr);
        if (t.op % 50 == 0)
            check_all();
    }
    check_all();
    drop_views();
    for (int i = 0; i < t.nheld; i++)
        rill_buf_release(t.held[i].buf);
    rill_buf_release(t.c);
    free(t.m.b);
    free(t.m.ro);
}
