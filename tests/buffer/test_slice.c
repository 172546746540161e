/* Slices and read-only views: slices of slices reference the root storage,
 * parents may go first, slices of composites (within one component and
 * across several), read_slice, and read-only views of every kind. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/composite.h"
#include "util/testutil.h"

TestSuite(slice, .timeout = 30, .fini = rill_test_no_leaks);

static unsigned refs(struct rill_buf *b)
{
    return rill_msg_refcnt(rill_buf_msg(b));
}

static struct rill_buf *pooled(const char *s)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(s, strlen(s), &b), 0);
    return b;
}

static void expect_str(const struct rill_buf *b, const char *s)
{
    size_t n = strlen(s);
    cr_assert_eq(rill_buf_readable(b), n, "readable %zu, want %zu (%s)", rill_buf_readable(b), n,
                 s);
    cr_assert(rill_buf_equal_bytes(b, rill_buf_reader_index(b), s, n), "bytes differ from %s", s);
}

static int frees;
static void count_free(void *mem, void *arg)
{
    (void)arg;
    frees++;
    free(mem);
}

Test(slice, indices_and_shared_bytes)
{
    struct rill_buf *p = pooled("hello, slice world"), *s;
    cr_assert_eq(rill_buf_skip(p, 2), 0);
    cr_assert_eq(rill_buf_slice(p, 7, 5, &s), 0);
    cr_assert_eq(rill_buf_kind(s), RILL_BUF_SLICE);
    cr_assert_eq(rill_buf_reader_index(s), 0);
    cr_assert_eq(rill_buf_writer_index(s), 5);
    cr_assert_eq(rill_buf_capacity(s), 5);
    cr_assert_eq(rill_buf_reader_index(p), 2, "parent indices don't move");
    expect_str(s, "slice");
    /* Writes through either side change the shared bytes. */
    cr_assert_eq(rill_buf_set_u8(s, 0, 'S'), 0);
    cr_assert(rill_buf_equal_bytes(p, 7, "Slice", 5));
    cr_assert_eq(rill_buf_set_u8(p, 11, 'E'), 0);
    expect_str(s, "SlicE");
    /* Bounds: the range must lie below the writer index. */
    struct rill_buf *bad = (struct rill_buf *)0x1;
    cr_assert_eq(rill_buf_slice(p, 17, 2, &bad), -ERANGE);
    cr_assert_eq(rill_buf_slice(p, 19, 0, &bad), -ERANGE);
    cr_assert_eq(bad, (struct rill_buf *)0x1, "out untouched on failure");
    struct rill_buf *empty;
    cr_assert_eq(rill_buf_slice(p, 18, 0, &empty), 0);
    cr_assert_eq(rill_buf_readable(empty), 0);
    rill_buf_release(empty);
    rill_buf_release(s);
    rill_buf_release(p);
}

Test(slice, slice_of_slice_references_root)
{
    struct rill_buf *p = pooled("0123456789abcdefghij"), *s1, *s2;
    cr_assert_eq(rill_buf_slice(p, 4, 12, &s1), 0); /* 456789abcdef */
    cr_assert_eq(rill_buf_slice(s1, 3, 6, &s2), 0); /* 789abc */
    expect_str(s2, "789abc");
    cr_assert_eq(refs(p), 3, "both slices hold the root");
    cr_assert_eq(refs(s1), 1, "the middle slice is not referenced");
    rill_buf_release(s1);
    cr_assert_eq(refs(p), 2);
    rill_buf_release(p); /* parent released before the slice */
    expect_str(s2, "789abc");
    cr_assert_eq(rill_buf_set_u8(s2, 5, 'C'), 0);
    expect_str(s2, "789abC");
    rill_buf_release(s2);
}

Test(slice, parents_released_first)
{
    char *mem = strdup("wrapped user memory");
    struct rill_buf *w, *s, *ss;
    cr_assert_eq(rill_buf_wrap(mem, strlen(mem), strlen(mem), count_free, NULL, &w), 0);
    cr_assert_eq(rill_buf_slice(w, 8, 4, &s), 0);
    cr_assert_eq(rill_buf_slice(s, 1, 2, &ss), 0);
    rill_buf_release(w);
    rill_buf_release(s);
    cr_assert_eq(frees, 0, "the innermost slice keeps the memory");
    expect_str(ss, "se");
    rill_buf_release(ss);
    cr_assert_eq(frees, 1);
}

Test(slice, read_slice)
{
    struct rill_buf *p = pooled("HDRpayload-tail"), *h, *pl;
    cr_assert_eq(rill_buf_read_slice(p, 3, &h), 0);
    cr_assert_eq(rill_buf_reader_index(p), 3);
    cr_assert_eq(rill_buf_read_slice(p, 7, &pl), 0);
    cr_assert_eq(rill_buf_reader_index(p), 10);
    expect_str(h, "HDR");
    expect_str(pl, "payload");
    struct rill_buf *x;
    cr_assert_eq(rill_buf_read_slice(p, 6, &x), -ERANGE);
    cr_assert_eq(rill_buf_reader_index(p), 10, "failure leaves the index");
    cr_assert_eq(rill_buf_read_slice(p, 5, &x), 0);
    expect_str(x, "-tail");
    rill_buf_release(x);
    rill_buf_release(p);
    /* Slices survive the parent and read like any buffer. */
    uint8_t c;
    cr_assert_eq(rill_buf_read_u8(pl, &c), 0);
    cr_assert_eq(c, 'p');
    rill_buf_release(pl);
    rill_buf_release(h);
}

/* A composite of "abc" | "defgh" | "ij" from a pooled, a wrapped and a
 * slice component. */
static struct rill_buf *abc_composite(void)
{
    struct rill_buf *c, *w, *big, *s;
    cr_assert_eq(rill_buf_composite_new(&c), 0);
    cr_assert_eq(rill_buf_composite_add(c, pooled("abc")), 0);
    char *mem = strdup("defgh");
    cr_assert_eq(rill_buf_wrap(mem, 5, 5, count_free, NULL, &w), 0);
    cr_assert_eq(rill_buf_composite_add(c, w), 0);
    big = pooled("xxijxx");
    cr_assert_eq(rill_buf_slice(big, 2, 2, &s), 0);
    rill_buf_release(big);
    cr_assert_eq(rill_buf_composite_add(c, s), 0);
    cr_assert_eq(rill_buf_composite_count(c), 3);
    return c;
}

Test(slice, of_composite_within_one_component_is_flat)
{
    struct rill_buf *c = abc_composite(), *s;
    struct rill_buf *w = rill_buf_composite_component(c, 1);
    cr_assert_eq(rill_buf_kind(w), RILL_BUF_WRAPPED);
    cr_assert_eq(rill_buf_slice(c, 4, 3, &s), 0);
    cr_assert_eq(rill_buf_kind(s), RILL_BUF_SLICE);
    cr_assert_eq(refs(w), 2, "the slice retains the component's storage");
    expect_str(s, "efg");
    /* The composite's slice component: a slice of it references the root. */
    struct rill_buf *s2, *root_slice = rill_buf_composite_component(c, 2);
    cr_assert_eq(rill_buf_slice(c, 8, 2, &s2), 0);
    cr_assert_eq(refs(root_slice), 1, "not the intermediate slice");
    expect_str(s2, "ij");
    rill_buf_release(c);
    cr_assert_eq(frees, 0);
    expect_str(s, "efg");
    rill_buf_release(s);
    cr_assert_eq(frees, 1);
    rill_buf_release(s2);
}

Test(slice, of_composite_across_components_is_composite)
{
    struct rill_buf *c = abc_composite(), *s, *ss;
    cr_assert_eq(rill_buf_skip(c, 1), 0);
    cr_assert_eq(rill_buf_slice(c, 2, 7, &s), 0); /* c|defgh|i */
    cr_assert_eq(rill_buf_kind(s), RILL_BUF_COMPOSITE);
    cr_assert_eq(rill_buf_composite_count(s), 3);
    cr_assert_eq(rill_buf_reader_index(c), 1);
    expect_str(s, "cdefghi");
    /* A slice of that slice, again across and within components. */
    cr_assert_eq(rill_buf_slice(s, 0, 2, &ss), 0);
    expect_str(ss, "cd");
    rill_buf_release(ss);
    cr_assert_eq(rill_buf_slice(s, 2, 3, &ss), 0);
    cr_assert_eq(rill_buf_kind(ss), RILL_BUF_SLICE);
    expect_str(ss, "efg");
    rill_buf_release(ss);
    /* Writes through the slice reach the shared bytes. */
    cr_assert_eq(rill_buf_set_u16_be(s, 0, ('C' << 8) | 'D'), 0);
    cr_assert(rill_buf_equal_bytes(c, 2, "CD", 2));
    rill_buf_release(c);
    expect_str(s, "CDefghi");
    cr_assert_eq(frees, 0);
    rill_buf_release(s);
    cr_assert_eq(frees, 1);
    /* An empty slice of a composite is an empty buffer. */
    c = abc_composite();
    cr_assert_eq(rill_buf_slice(c, 10, 0, &s), 0);
    cr_assert_eq(rill_buf_readable(s), 0);
    rill_buf_release(s);
    rill_buf_release(c);
}

Test(slice, readonly_views)
{
    struct rill_buf *p = pooled("read only please"), *ro, *ros;
    cr_assert_eq(rill_buf_skip(p, 5), 0);
    cr_assert_eq(rill_buf_readonly(p, &ro), 0);
    cr_assert(rill_buf_is_readonly(ro));
    cr_assert_not(rill_buf_is_readonly(p));
    expect_str(ro, "only please");
    /* A view, not a copy: the owner's changes show. */
    cr_assert_eq(rill_buf_set_u8(p, 5, 'O'), 0);
    expect_str(ro, "Only please");
    cr_assert_eq(rill_buf_set_u8(ro, 0, 'x'), -EROFS);
    cr_assert_eq(rill_buf_write_u8(ro, 'x'), -EROFS);
    cr_assert_eq(rill_buf_read_slice(ro, 4, &ros), 0);
    cr_assert(rill_buf_is_readonly(ros));
    cr_assert_eq(rill_buf_set_u8(ros, 0, 'x'), -EROFS);
    expect_str(ros, "Only");
    rill_buf_release(ros);
    /* Unshare gives a private writable copy. */
    cr_assert_eq(rill_buf_unshare(&ro), 0);
    cr_assert_not(rill_buf_is_readonly(ro));
    cr_assert_eq(rill_buf_set_u8(ro, 0, '!'), 0);
    expect_str(ro, "!please");
    cr_assert(rill_buf_equal_bytes(p, 9, " please", 7));
    rill_buf_release(ro);
    rill_buf_release(p);
}

Test(slice, readonly_composite)
{
    struct rill_buf *c = abc_composite(), *ro, *s;
    cr_assert_eq(rill_buf_skip(c, 2), 0);
    cr_assert_eq(rill_buf_readonly(c, &ro), 0);
    cr_assert(rill_buf_is_readonly(ro));
    expect_str(ro, "cdefghij");
    cr_assert_eq(rill_buf_set_u32_be(ro, 0, 0), -EROFS);
    cr_assert_eq(rill_buf_write_u32_be(ro, 0), -EROFS);
    cr_assert_eq(rill_buf_composite_add(ro, pooled("zz")), -EROFS);
    expect_str(ro, "cdefghij");
    /* Its slices, flat or not, are read-only too. */
    cr_assert_eq(rill_buf_slice(ro, 1, 3, &s), 0);
    cr_assert_eq(rill_buf_kind(s), RILL_BUF_SLICE);
    cr_assert(rill_buf_is_readonly(s));
    rill_buf_release(s);
    cr_assert_eq(rill_buf_slice(ro, 0, 8, &s), 0);
    cr_assert_eq(rill_buf_kind(s), RILL_BUF_COMPOSITE);
    cr_assert(rill_buf_is_readonly(s));
    cr_assert_eq(rill_buf_set_u8(s, 7, 0), -EROFS);
    rill_buf_release(s);
    /* A read-only view added to a writable composite stays read-only
     * there: writes that touch it fail and change nothing. */
    struct rill_buf *w;
    cr_assert_eq(rill_buf_composite_new(&w), 0);
    cr_assert_eq(rill_buf_composite_add(w, pooled("12")), 0);
    cr_assert_eq(rill_buf_composite_add(w, rill_buf_retain(ro)), 0);
    cr_assert_eq(rill_buf_set_u16_be(w, 1, 0), -EROFS);
    cr_assert_eq(rill_buf_set_u8(w, 1, '#'), 0);
    expect_str(w, "1#cdefghij");
    cr_assert_eq(rill_buf_write_u8(w, '!'), 0, "appending is fine");
    expect_str(w, "1#cdefghij!");
    rill_buf_release(w);
    rill_buf_release(ro);
    rill_buf_release(c);
}

Test(slice, unshare_slice_releases_it)
{
    struct rill_buf *p = pooled("0123456789"), *s;
    cr_assert_eq(rill_buf_slice(p, 2, 5, &s), 0);
    cr_assert_eq(refs(p), 2);
    cr_assert_eq(rill_buf_unshare(&s), 0);
    cr_assert_eq(rill_buf_kind(s), RILL_BUF_POOLED);
    cr_assert_eq(refs(p), 1, "the old slice was released");
    cr_assert_eq(rill_buf_write_u8(s, '!'), 0);
    expect_str(s, "23456!");
    expect_str(p, "0123456789");
    rill_buf_release(s);
    rill_buf_release(p);
}
