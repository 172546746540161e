/* rill_buf accessors: integers of every width and byte order, and byte
 * ranges. These run per byte in codecs, so the flat path is only a bounds
 * check, a memcpy of constant size and a byte swap; composites (and the
 * rare error paths) go out of line. A composite with exactly one component
 * has _data set and takes the flat path too. */
#include "buffer/buf_internal.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

/* A composite's bytes [index, index + n) when they lie in the component
 * used last (sequential reads mostly do), else NULL. */
static inline const uint8_t *comp_hit(const struct rill_buf *b, size_t index, size_t n)
{
    size_t rel = index - b->_u.comp.cur_off;
    return rill__in_range(rel, n, b->_u.comp.cur_len) ? b->_u.comp.cur_ptr + rel : NULL;
}

static inline int get_n(const struct rill_buf *b, size_t index, void *v, size_t n)
{
    if (RILL_UNLIKELY(!rill__in_range(index, n, b->_wr)))
        return -ERANGE;
    const uint8_t *p;
    if (RILL_LIKELY(b->_data != NULL))
        memcpy(v, b->_data + index, n);
    else if ((p = comp_hit(b, index, n)) != NULL)
        memcpy(v, p, n);
    else
        rill__comp_get(b, index, v, n);
    return 0;
}

static inline int read_n(struct rill_buf *b, void *v, size_t n)
{
    if (RILL_UNLIKELY(b->_wr - b->_rd < n))
        return -ERANGE;
    const uint8_t *p;
    if (RILL_LIKELY(b->_data != NULL))
        memcpy(v, b->_data + b->_rd, n);
    else if ((p = comp_hit(b, b->_rd, n)) != NULL)
        memcpy(v, p, n);
    else
        rill__comp_get(b, b->_rd, v, n);
    b->_rd += n;
    return 0;
}

static int set_slow(struct rill_buf *b, size_t index, const void *v, size_t n)
{
    if (b->_flags & RILL_BUF_F_READONLY)
        return -EROFS;
    if (!rill__in_range(index, n, b->_cap))
        return -ERANGE;
    if (b->_kind == RILL_BUF_COMPOSITE || !b->_data)
        return rill__comp_set(b, index, v, n);
    memcpy(b->_data + index, v, n);
    return 0;
}

static inline int set_n(struct rill_buf *b, size_t index, const void *v, size_t n)
{
    if (RILL_UNLIKELY(!b->_data || (b->_flags & (RILL_BUF_F_READONLY | RILL__BUF_F_ROPART)) ||
                      !rill__in_range(index, n, b->_cap)))
        return set_slow(b, index, v, n);
    memcpy(b->_data + index, v, n);
    return 0;
}

static int write_slow(struct rill_buf *b, const void *v, size_t n)
{
    int rc = rill_buf_ensure_writable(b, n);
    if (rc == 0)
        rc = set_slow(b, b->_wr, v, n);
    if (rc == 0)
        b->_wr += n;
    return rc;
}

static inline int write_n(struct rill_buf *b, const void *v, size_t n)
{
    if (RILL_UNLIKELY(!b->_data || (b->_flags & (RILL_BUF_F_READONLY | RILL__BUF_F_ROPART)) ||
                      b->_cap - b->_wr < n))
        return write_slow(b, v, n);
    memcpy(b->_data + b->_wr, v, n);
    b->_wr += n;
    return 0;
}

/* ---- get ---- */

int rill_buf_get_u8(const struct rill_buf *b, size_t index, uint8_t *v)
{
    RILL__BUF_LIVE(b);
    return get_n(b, index, v, 1);
}

int rill_buf_get_u16_be(const struct rill_buf *b, size_t index, uint16_t *v)
{
    RILL__BUF_LIVE(b);
    uint16_t x;
    int rc = get_n(b, index, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = be16toh(x);
    return rc;
}

int rill_buf_get_u16_le(const struct rill_buf *b, size_t index, uint16_t *v)
{
    RILL__BUF_LIVE(b);
    uint16_t x;
    int rc = get_n(b, index, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = le16toh(x);
    return rc;
}

int rill_buf_get_u32_be(const struct rill_buf *b, size_t index, uint32_t *v)
{
    RILL__BUF_LIVE(b);
    uint32_t x;
    int rc = get_n(b, index, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = be32toh(x);
    return rc;
}

int rill_buf_get_u32_le(const struct rill_buf *b, size_t index, uint32_t *v)
{
    RILL__BUF_LIVE(b);
    uint32_t x;
    int rc = get_n(b, index, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = le32toh(x);
    return rc;
}

int rill_buf_get_u64_be(const struct rill_buf *b, size_t index, uint64_t *v)
{
    RILL__BUF_LIVE(b);
    uint64_t x;
    int rc = get_n(b, index, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = be64toh(x);
    return rc;
}

int rill_buf_get_u64_le(const struct rill_buf *b, size_t index, uint64_t *v)
{
    RILL__BUF_LIVE(b);
    uint64_t x;
    int rc = get_n(b, index, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = le64toh(x);
    return rc;
}

/* ---- set ---- */

int rill_buf_set_u8(struct rill_buf *b, size_t index, uint8_t v)
{
    RILL__BUF_LIVE(b);
    return set_n(b, index, &v, 1);
}

int rill_buf_set_u16_be(struct rill_buf *b, size_t index, uint16_t v)
{
    RILL__BUF_LIVE(b);
    uint16_t x = htobe16(v);
    return set_n(b, index, &x, sizeof(x));
}

int rill_buf_set_u16_le(struct rill_buf *b, size_t index, uint16_t v)
{
    RILL__BUF_LIVE(b);
    uint16_t x = htole16(v);
    return set_n(b, index, &x, sizeof(x));
}

int rill_buf_set_u32_be(struct rill_buf *b, size_t index, uint32_t v)
{
    RILL__BUF_LIVE(b);
    uint32_t x = htobe32(v);
    return set_n(b, index, &x, sizeof(x));
}

int rill_buf_set_u32_le(struct rill_buf *b, size_t index, uint32_t v)
{
    RILL__BUF_LIVE(b);
    uint32_t x = htole32(v);
    return set_n(b, index, &x, sizeof(x));
}

int rill_buf_set_u64_be(struct rill_buf *b, size_t index, uint64_t v)
{
    RILL__BUF_LIVE(b);
    uint64_t x = htobe64(v);
    return set_n(b, index, &x, sizeof(x));
}

int rill_buf_set_u64_le(struct rill_buf *b, size_t index, uint64_t v)
{
    RILL__BUF_LIVE(b);
    uint64_t x = htole64(v);
    return set_n(b, index, &x, sizeof(x));
}

/* ---- read ---- */

int rill_buf_read_u8(struct rill_buf *b, uint8_t *v)
{
    RILL__BUF_LIVE(b);
    return read_n(b, v, 1);
}

int rill_buf_read_u16_be(struct rill_buf *b, uint16_t *v)
{
    RILL__BUF_LIVE(b);
    uint16_t x;
    int rc = read_n(b, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = be16toh(x);
    return rc;
}

int rill_buf_read_u16_le(struct rill_buf *b, uint16_t *v)
{
    RILL__BUF_LIVE(b);
    uint16_t x;
    int rc = read_n(b, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = le16toh(x);
    return rc;
}

int rill_buf_read_u32_be(struct rill_buf *b, uint32_t *v)
{
    RILL__BUF_LIVE(b);
    uint32_t x;
    int rc = read_n(b, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = be32toh(x);
    return rc;
}

int rill_buf_read_u32_le(struct rill_buf *b, uint32_t *v)
{
    RILL__BUF_LIVE(b);
    uint32_t x;
    int rc = read_n(b, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = le32toh(x);
    return rc;
}

int rill_buf_read_u64_be(struct rill_buf *b, uint64_t *v)
{
    RILL__BUF_LIVE(b);
    uint64_t x;
    int rc = read_n(b, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = be64toh(x);
    return rc;
}

int rill_buf_read_u64_le(struct rill_buf *b, uint64_t *v)
{
    RILL__BUF_LIVE(b);
    uint64_t x;
    int rc = read_n(b, &x, sizeof(x));
    if (RILL_LIKELY(rc == 0))
        *v = le64toh(x);
    return rc;
}

/* ---- write ---- */

int rill_buf_write_u8(struct rill_buf *b, uint8_t v)
{
    RILL__BUF_LIVE(b);
    return write_n(b, &v, 1);
}

int rill_buf_write_u16_be(struct rill_buf *b, uint16_t v)
{
    RILL__BUF_LIVE(b);
    uint16_t x = htobe16(v);
    return write_n(b, &x, sizeof(x));
}

int rill_buf_write_u16_le(struct rill_buf *b, uint16_t v)
{
    RILL__BUF_LIVE(b);
    uint16_t x = htole16(v);
    return write_n(b, &x, sizeof(x));
}

int rill_buf_write_u32_be(struct rill_buf *b, uint32_t v)
{
    RILL__BUF_LIVE(b);
    uint32_t x = htobe32(v);
    return write_n(b, &x, sizeof(x));
}

int rill_buf_write_u32_le(struct rill_buf *b, uint32_t v)
{
    RILL__BUF_LIVE(b);
    uint32_t x = htole32(v);
    return write_n(b, &x, sizeof(x));
}

int rill_buf_write_u64_be(struct rill_buf *b, uint64_t v)
{
    RILL__BUF_LIVE(b);
    uint64_t x = htobe64(v);
    return write_n(b, &x, sizeof(x));
}

int rill_buf_write_u64_le(struct rill_buf *b, uint64_t v)
{
    RILL__BUF_LIVE(b);
    uint64_t x = htole64(v);
    return write_n(b, &x, sizeof(x));
}

/* ---- byte ranges ---- */

int rill_buf_get_bytes(const struct rill_buf *b, size_t index, void *dst, size_t len)
{
    RILL__BUF_LIVE(b);
    if (!rill__in_range(index, len, b->_wr))
        return -ERANGE;
    if (b->_data && len)
        memcpy(dst, b->_data + index, len);
    else
        rill__comp_get(b, index, dst, len);
    return 0;
}

int rill_buf_set_bytes(struct rill_buf *b, size_t index, const void *src, size_t len)
{
    RILL__BUF_LIVE(b);
    if (b->_flags & RILL_BUF_F_READONLY)
        return -EROFS;
    if (!rill__in_range(index, len, b->_cap))
        return -ERANGE;
    if (!len)
        return 0;
    return set_slow(b, index, src, len);
}

int rill_buf_read_bytes(struct rill_buf *b, void *dst, size_t len)
{
    RILL__BUF_LIVE(b);
    int rc = rill_buf_get_bytes(b, b->_rd, dst, len);
    if (rc == 0)
        b->_rd += len;
    return rc;
}

int rill_buf_write_bytes(struct rill_buf *b, const void *src, size_t len)
{
    RILL__BUF_LIVE(b);
    if (b->_flags & RILL_BUF_F_READONLY)
        return -EROFS;
    if (!len)
        return 0;
    return write_slow(b, src, len);
}

int rill_buf_write_buf(struct rill_buf *dst, struct rill_buf *src, size_t len)
{
    RILL__BUF_LIVE(dst);
    RILL__BUF_LIVE(src);
    if (dst->_flags & RILL_BUF_F_READONLY)
        return -EROFS;
    if (src->_wr - src->_rd < len)
        return -ERANGE;
    int rc = rill_buf_ensure_writable(dst, len);
    if (rc)
        return rc;
    /* Check every destination byte first, so a read-only component leaves
     * both buffers untouched. */
    struct rill__span_it it;
    struct rill__span s;
    if (dst->_kind == RILL_BUF_COMPOSITE) {
        rill__span_init(&it, dst, dst->_wr, len);
        while (rill__span_next(&it, &s))
            if (s.owner->_flags & RILL_BUF_F_READONLY)
                return -EROFS;
    }
    rill__span_init(&it, src, src->_rd, len);
    size_t at = dst->_wr;
    while (rill__span_next(&it, &s)) {
        set_slow(dst, at, s.p, s.len);
        at += s.len;
    }
    dst->_wr += len;
    src->_rd += len;
    return 0;
}
