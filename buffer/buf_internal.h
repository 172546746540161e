/* Private helpers shared by the rill_buf sources (buf.c, buf_access.c,
 * buf_search.c, composite.c). Not installed. */
#ifndef RILL_BUF_INTERNAL_H
#define RILL_BUF_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rill/buf.h"
#include "rill/common.h"

/* Private flags next to the public RILL_BUF_F_READONLY. */
#define RILL__BUF_F_USERMEM  0x2u /* wrapped: free_fn not called yet */
#define RILL__BUF_F_INLINE_V 0x4u /* composite: component array inside the header block */
#define RILL__BUF_F_ROPART   0x8u /* composite with _data set: its component is read-only */

/* Header size rounded so inline data starts 16-byte aligned. */
#define RILL__BUF_HDR ((sizeof(struct rill_buf) + 15) & ~(size_t)15)
/* Indices must fit ssize_t (index_of and find return them). */
#define RILL__BUF_MAX_CAP ((size_t)SSIZE_MAX)

/* Acquire: "count is 1, so nobody else sees these bytes" must order this
 * thread's next writes after the other owners' accesses, which their release
 * (acq_rel decrement) published. A plain load on x86 either way. */
static inline unsigned rill__buf_refcnt(const struct rill_buf *b)
{
    return atomic_load_explicit((atomic_uint *)&b->msg._refcnt, memory_order_acquire);
}

_Noreturn void rill__buf_panic_released(const struct rill_buf *b, const char *fn);

#if defined(__SANITIZE_ADDRESS__)
#define RILL__BUF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RILL__BUF_ASAN 1
#endif
#endif
#ifdef RILL__BUF_ASAN
#include <sanitizer/asan_interface.h>
/* The pool poisons freed blocks: say what happened before ASan trips. */
#define RILL__BUF_DEAD(b) (__asan_address_is_poisoned(&(b)->msg) || rill__buf_refcnt(b) == 0)
#else
#define RILL__BUF_DEAD(b) (rill__buf_refcnt(b) == 0)
#endif

/* Debug builds: a relaxed load and a compare per accessor. */
#if RILL_DEBUG
#define RILL__BUF_LIVE(b)                                                                          \
    do {                                                                                           \
        if (RILL_UNLIKELY(RILL__BUF_DEAD(b)))                                                      \
            rill__buf_panic_released((b), __func__);                                               \
    } while (0)
#else
#define RILL__BUF_LIVE(b) ((void)0)
#endif

/* True when [index, index + len) lies below @limit, without overflow. */
static inline bool rill__in_range(size_t index, size_t len, size_t limit)
{
    return index <= limit && limit - index >= len;
}

/* The buffer that owns the bytes a flat buffer shows. */
static inline struct rill_buf *rill__buf_root(struct rill_buf *b)
{
    return b->_kind == RILL_BUF_SLICE ? b->_u.slice.storage : b;
}

/* Debug builds start the header 16 bytes into its block: the allocator
 * links a freed block through its first word, which would otherwise
 * overwrite the count of 0 that the use-after-release checks look for. */
#define RILL__BUF_PAD (RILL_DEBUG ? (size_t)16 : (size_t)0)

/* A new header of @kind with count 1, indices 0 and the default max
 * capacity, followed in the same block by *@avail >= @extra bytes (which
 * start at (uint8_t *)b + RILL__BUF_HDR). NULL when out of memory. */
struct rill_buf *rill__buf_hdr_new(enum rill_buf_kind kind, size_t extra, size_t *avail);

/* A new flat view of @len bytes at @data inside @storage (pooled or
 * wrapped), retaining it. */
int rill__buf_slice_flat(struct rill_buf *storage, uint8_t *data, size_t len, bool readonly,
                         struct rill_buf **out);

/* ---- composite internals (composite.c) ---- */

void rill__comp_destroy(struct rill_buf *c);
/* Index of the component holding byte @index (< capacity). */
uint32_t rill__comp_find(const struct rill_buf *c, size_t index);
/* Copy out / in; the caller checked the range. set returns -EROFS when a
 * touched component is read-only (nothing written then). Both also accept
 * a flat buffer without memory and len 0. */
void rill__comp_get(const struct rill_buf *c, size_t index, void *dst, size_t len);
int rill__comp_set(struct rill_buf *c, size_t index, const void *src, size_t len);
int rill__comp_ensure_writable(struct rill_buf *c, size_t n);
uint8_t *rill__comp_write_ptr(struct rill_buf *c, size_t min, size_t *len);
void rill__comp_discard_read(struct rill_buf *c);
int rill__comp_slice(struct rill_buf *c, size_t index, size_t len, bool readonly,
                     struct rill_buf **out);
const uint8_t *rill__comp_read_ptr(const struct rill_buf *c, size_t *len);

/* ---- walking any buffer as contiguous spans ---- */

struct rill__span {
    uint8_t *p;
    size_t len;
    size_t pos;                   /* absolute index of p[0] */
    const struct rill_buf *owner; /* the component's buffer, or the flat buffer */
};

struct rill__span_it {
    const struct rill_buf *b;
    uint32_t i;
    size_t pos, end;
};

/* Walk bytes [index, index + len) of @b; the caller checked the range. */
static inline void rill__span_init(struct rill__span_it *it, const struct rill_buf *b, size_t index,
                                   size_t len)
{
    it->b = b;
    it->pos = index;
    it->end = index + len;
    it->i = (b->_kind == RILL_BUF_COMPOSITE && len) ? rill__comp_find(b, index) : 0;
}

static inline bool rill__span_next(struct rill__span_it *it, struct rill__span *s)
{
    if (it->pos >= it->end)
        return false;
    const struct rill_buf *b = it->b;
    if (b->_kind != RILL_BUF_COMPOSITE) {
        *s = (struct rill__span){ b->_data + it->pos, it->end - it->pos, it->pos, b };
    } else {
        const struct rill_buf_comp *c = &b->_u.comp.v[it->i++];
        size_t skip = it->pos - c->off;
        size_t n = c->len - skip;
        if (n > it->end - it->pos)
            n = it->end - it->pos;
        *s = (struct rill__span){ c->ptr + skip, n, it->pos, c->buf };
    }
    it->pos += s->len;
    return true;
}

#endif /* RILL_BUF_INTERNAL_H */
