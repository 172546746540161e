/* rill_buf search, comparison and iovec export. Flat buffers use memchr,
 * memmem and memcmp directly; composites are walked span by span, and a
 * needle that straddles a component boundary is checked at the few start
 * positions where it can. */
#include "buffer/buf_internal.h"

#include <errno.h>
#include <string.h>

/* Compare bytes [index, index + len) (in range) with @mem. */
static bool equal_at(const struct rill_buf *b, size_t index, const uint8_t *mem, size_t len)
{
    if (b->_data)
        return len == 0 || memcmp(b->_data + index, mem, len) == 0;
    struct rill__span_it it;
    struct rill__span s;
    rill__span_init(&it, b, index, len);
    while (rill__span_next(&it, &s)) {
        if (memcmp(s.p, mem, s.len) != 0)
            return false;
        mem += s.len;
    }
    return true;
}

ssize_t rill_buf_index_of(const struct rill_buf *b, size_t from, size_t to, uint8_t byte)
{
    RILL__BUF_LIVE(b);
    if (from > to || to > b->_wr)
        return -ERANGE;
    if (from == to)
        return -ENOENT;
    if (b->_data) {
        const uint8_t *p = memchr(b->_data + from, byte, to - from);
        return p ? p - b->_data : -ENOENT;
    }
    struct rill__span_it it;
    struct rill__span s;
    rill__span_init(&it, b, from, to - from);
    while (rill__span_next(&it, &s)) {
        const uint8_t *p = memchr(s.p, byte, s.len);
        if (p)
            return (ssize_t)(s.pos + (size_t)(p - s.p));
    }
    return -ENOENT;
}

ssize_t rill_buf_find(const struct rill_buf *b, size_t from, size_t to, const void *needle,
                      size_t nlen)
{
    RILL__BUF_LIVE(b);
    if (from > to || to > b->_wr)
        return -ERANGE;
    if (nlen == 0)
        return (ssize_t)from;
    if (nlen > to - from)
        return -ENOENT;
    const uint8_t *nd = needle;
    if (b->_data) {
        const uint8_t *p = memmem(b->_data + from, to - from, nd, nlen);
        return p ? p - b->_data : -ENOENT;
    }
    struct rill__span_it it;
    struct rill__span s;
    rill__span_init(&it, b, from, to - from);
    while (rill__span_next(&it, &s)) {
        /* A match that ends inside this span starts before any that
         * straddles its end. */
        const uint8_t *p = memmem(s.p, s.len, nd, nlen);
        if (p)
            return (ssize_t)(s.pos + (size_t)(p - s.p));
        size_t end = s.pos + s.len;
        size_t lo = s.len >= nlen ? end - nlen + 1 : s.pos;
        size_t hi = to - nlen + 1; /* starts must leave room for the needle */
        if (hi > end)
            hi = end;
        for (size_t q = lo; q < hi; q++) {
            p = memchr(s.p + (q - s.pos), nd[0], hi - q);
            if (!p)
                break;
            q = s.pos + (size_t)(p - s.p);
            if (equal_at(b, q + 1, nd + 1, nlen - 1))
                return (ssize_t)q;
        }
    }
    return -ENOENT;
}

bool rill_buf_equal_bytes(const struct rill_buf *b, size_t index, const void *mem, size_t len)
{
    RILL__BUF_LIVE(b);
    return rill__in_range(index, len, b->_wr) && equal_at(b, index, mem, len);
}

bool rill_buf_equal(const struct rill_buf *a, const struct rill_buf *b)
{
    RILL__BUF_LIVE(a);
    RILL__BUF_LIVE(b);
    size_t n = a->_wr - a->_rd;
    if (n != b->_wr - b->_rd)
        return false;
    if (!a->_data) {
        const struct rill_buf *t = a;
        a = b;
        b = t;
    }
    if (a->_data)
        return equal_at(b, b->_rd, a->_data + a->_rd, n);
    struct rill__span_it it;
    struct rill__span s;
    rill__span_init(&it, a, a->_rd, n);
    while (rill__span_next(&it, &s))
        if (!equal_at(b, b->_rd + (s.pos - a->_rd), s.p, s.len))
            return false;
    return true;
}

int rill_buf_iovec(const struct rill_buf *b, size_t index, size_t len, struct iovec *iov, int max,
                   size_t *covered)
{
    RILL__BUF_LIVE(b);
    if (!rill__in_range(index, len, b->_wr))
        return -ERANGE;
    struct rill__span_it it;
    struct rill__span s;
    int n = 0;
    size_t done = 0;
    rill__span_init(&it, b, index, len);
    while (n < max && rill__span_next(&it, &s)) {
        iov[n].iov_base = s.p;
        iov[n].iov_len = s.len;
        n++;
        done += s.len;
    }
    if (covered)
        *covered = done;
    return n;
}
