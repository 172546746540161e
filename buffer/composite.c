/* Composite buffers: an array of components (pointer, length, cumulative
 * offset, owning reference) presented as one buffer. Components cover the
 * composite's bytes [0, capacity) in order, none empty. Byte @i is found by
 * trying the component used last, then its successor (sequential reads),
 * then a binary search. A composite with exactly one component publishes
 * its pointer in _data, so the flat fast paths of buf_access.c and
 * buf_search.c serve it. */
#include "buffer/buf_internal.h"

#include <errno.h>
#include <string.h>

#include "rill/alloc.h"
#include "rill/composite.h"

/* Components kept in the header block before the array moves out. */
#define INLINE_COMPS 4
/* Size bounds for components added by writes (growth, not byte by byte). */
#define GROW_MIN 256u
#define GROW_MAX RILL_ALLOC_MAX_POOLED

static inline struct rill_buf_comp *comps(const struct rill_buf *c)
{
    return c->_u.comp.v;
}

/* Refresh the one-component shortcut after any change of the array. */
static void sync_flat(struct rill_buf *c)
{
    c->_flags &= ~RILL__BUF_F_ROPART;
    if (c->_u.comp.n == 1) {
        c->_data = comps(c)[0].ptr;
        if (comps(c)[0].buf->_flags & RILL_BUF_F_READONLY)
            c->_flags |= RILL__BUF_F_ROPART;
    } else {
        c->_data = NULL;
    }
    c->_u.comp.last = 0;
    c->_u.comp.cur_len = 0; /* the cursor may name a changed or released component */
}

/* Remember component @i as the one to try first (const: only the cache). */
static inline uint32_t set_last(const struct rill_buf *c, uint32_t i)
{
    struct rill_buf *m = (struct rill_buf *)c;
    const struct rill_buf_comp *v = &comps(c)[i];
    m->_u.comp.last = i;
    m->_u.comp.cur_ptr = v->ptr;
    m->_u.comp.cur_off = v->off;
    m->_u.comp.cur_len = v->len;
    return i;
}

static void free_array(struct rill_buf *c)
{
    if (!(c->_flags & RILL__BUF_F_INLINE_V))
        rill_free(c->_u.comp.v, c->_u.comp.alloc * sizeof(struct rill_buf_comp));
}

void rill__comp_destroy(struct rill_buf *c)
{
    for (uint32_t i = 0; i < c->_u.comp.n; i++)
        rill_buf_release(comps(c)[i].buf);
    free_array(c);
}

/* Room for @extra more components. */
static int reserve(struct rill_buf *c, size_t extra)
{
    size_t need = (size_t)c->_u.comp.n + extra;
    if (need <= c->_u.comp.alloc)
        return 0;
    if (need > UINT32_MAX / 2)
        return -ENOMEM;
    size_t want = (size_t)c->_u.comp.alloc * 2;
    if (want < need)
        want = need;
    size_t usable;
    struct rill_buf_comp *v = rill_alloc(want * sizeof(*v), &usable);
    if (!v)
        return -ENOMEM;
    memcpy(v, c->_u.comp.v, c->_u.comp.n * sizeof(*v));
    free_array(c);
    c->_flags &= ~RILL__BUF_F_INLINE_V;
    c->_u.comp.v = v;
    c->_u.comp.alloc = (uint32_t)(usable / sizeof(*v));
    return 0;
}

/* Append a component; the caller reserved room and checked @len > 0. */
static void push(struct rill_buf *c, struct rill_buf *owner, uint8_t *ptr, size_t len)
{
    comps(c)[c->_u.comp.n++] = (struct rill_buf_comp){ owner, ptr, len, c->_cap };
    c->_cap += len;
}

int rill_buf_composite_new(struct rill_buf **out)
{
    size_t avail;
    struct rill_buf *c =
        rill__buf_hdr_new(RILL_BUF_COMPOSITE, INLINE_COMPS * sizeof(struct rill_buf_comp), &avail);
    if (!c)
        return -ENOMEM;
    c->_flags = RILL__BUF_F_INLINE_V;
    c->_u.comp.v = (struct rill_buf_comp *)((uint8_t *)c + RILL__BUF_HDR);
    c->_u.comp.alloc = (uint32_t)(avail / sizeof(struct rill_buf_comp));
    *out = c;
    return 0;
}

/* Drop the writable room past the writer index, so what is appended next
 * follows the written bytes directly. */
static void trim_tail(struct rill_buf *c)
{
    size_t wr = c->_wr;
    if (wr == c->_cap)
        return;
    uint32_t n = c->_u.comp.n;
    while (n > 0 && comps(c)[n - 1].off >= wr)
        rill_buf_release(comps(c)[--n].buf);
    if (n > 0)
        comps(c)[n - 1].len = wr - comps(c)[n - 1].off;
    c->_u.comp.n = n;
    c->_cap = wr;
    sync_flat(c);
}

int rill_buf_composite_add(struct rill_buf *c, struct rill_buf *component)
{
    RILL__BUF_LIVE(c);
    RILL__BUF_LIVE(component);
    int rc = 0;
    size_t len = component->_wr - component->_rd;
    if (c->_kind != RILL_BUF_COMPOSITE || c == component)
        rc = -EINVAL;
    else if (c->_flags & RILL_BUF_F_READONLY)
        rc = -EROFS;
    else if (len > c->_max_cap - c->_wr)
        rc = -ENOBUFS;
    if (rc || len == 0) {
        rill_buf_release(component);
        return rc;
    }
    trim_tail(c);
    if (component->_kind != RILL_BUF_COMPOSITE) {
        rc = reserve(c, 1);
        if (rc == 0)
            push(c, component, component->_data + component->_rd, len);
    } else {
        /* No nesting: reference the touched components directly. */
        size_t rd = component->_rd, wr = component->_wr;
        uint32_t i0 = rill__comp_find(component, rd), i1 = rill__comp_find(component, wr - 1);
        rc = reserve(c, i1 - i0 + 1);
        for (uint32_t i = i0; rc == 0 && i <= i1; i++) {
            const struct rill_buf_comp *v = &comps(component)[i];
            size_t start = v->off > rd ? v->off : rd;
            size_t end = v->off + v->len < wr ? v->off + v->len : wr;
            push(c, rill_buf_retain(v->buf), v->ptr + (start - v->off), end - start);
        }
        rill_buf_release(component);
    }
    c->_wr = c->_cap;
    sync_flat(c);
    if (rc && component->_kind != RILL_BUF_COMPOSITE)
        rill_buf_release(component);
    return rc;
}

unsigned rill_buf_composite_count(const struct rill_buf *c)
{
    RILL__BUF_LIVE(c);
    return c->_kind == RILL_BUF_COMPOSITE ? c->_u.comp.n : 0;
}

struct rill_buf *rill_buf_composite_component(const struct rill_buf *c, unsigned i)
{
    RILL__BUF_LIVE(c);
    if (c->_kind != RILL_BUF_COMPOSITE || i >= c->_u.comp.n)
        return NULL;
    return comps(c)[i].buf;
}

int rill_buf_consolidate(struct rill_buf *c)
{
    RILL__BUF_LIVE(c);
    if (c->_kind != RILL_BUF_COMPOSITE || c->_u.comp.n <= 1)
        return 0;
    size_t wr = c->_wr;
    struct rill_buf *nb = NULL;
    if (wr) {
        int rc = rill_buf_alloc(wr, &nb);
        if (rc)
            return rc;
        rill__comp_get(c, 0, nb->_data, wr);
        nb->_wr = wr;
    }
    for (uint32_t i = 0; i < c->_u.comp.n; i++)
        rill_buf_release(comps(c)[i].buf);
    c->_u.comp.n = 0;
    c->_cap = 0;
    if (nb)
        push(c, nb, nb->_data, wr); /* the array always has room for one */
    sync_flat(c);
    return 0;
}

/* ---- internals for the accessors ---- */

uint32_t rill__comp_find(const struct rill_buf *c, size_t index)
{
    const struct rill_buf_comp *v = comps(c);
    uint32_t n = c->_u.comp.n, last = c->_u.comp.last;
    /* Unsigned wrap makes each test also reject index < off. */
    if (last < n && index - v[last].off < v[last].len)
        return set_last(c, last);
    if (last + 1 < n && index - v[last + 1].off < v[last + 1].len)
        return set_last(c, last + 1);
    uint32_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid].off <= index)
            lo = mid;
        else
            hi = mid;
    }
    return set_last(c, lo);
}

void rill__comp_get(const struct rill_buf *c, size_t index, void *dst, size_t len)
{
    if (!len)
        return;
    const struct rill_buf_comp *v = comps(c);
    uint32_t i = rill__comp_find(c, index);
    uint8_t *d = dst;
    for (;;) {
        size_t skip = index - v[i].off, n = v[i].len - skip;
        if (n >= len) {
            memcpy(d, v[i].ptr + skip, len);
            break;
        }
        memcpy(d, v[i].ptr + skip, n);
        d += n;
        index += n;
        len -= n;
        i++;
    }
    set_last(c, i);
}

int rill__comp_set(struct rill_buf *c, size_t index, const void *src, size_t len)
{
    if (!len)
        return 0;
    struct rill__span_it it;
    struct rill__span s;
    rill__span_init(&it, c, index, len);
    while (rill__span_next(&it, &s))
        if (s.owner->_flags & RILL_BUF_F_READONLY)
            return -EROFS;
    const uint8_t *p = src;
    rill__span_init(&it, c, index, len);
    while (rill__span_next(&it, &s)) {
        memcpy(s.p, p, s.len);
        p += s.len;
    }
    return 0;
}

/* Bytes the composite may append to component @v in place: only when it is
 * a pooled buffer nobody else references (no slice, no other composite),
 * so the bytes past it are nobody's. */
static size_t spare_room(const struct rill_buf_comp *v)
{
    const struct rill_buf *b = v->buf;
    if (b->_kind != RILL_BUF_POOLED || (b->_flags & RILL_BUF_F_READONLY) ||
        rill__buf_refcnt(b) != 1)
        return 0;
    uint8_t *end = v->ptr + v->len;
    if (end < b->_data || end > b->_data + b->_cap)
        return 0; /* points into memory the buffer has since replaced */
    return (size_t)(b->_data + b->_cap - end);
}

/* Append a new pooled component of at least @need bytes (the caller made
 * sure @need fits under the max capacity), sized by growth: the current
 * capacity, within [GROW_MIN, GROW_MAX]. */
static int add_room(struct rill_buf *c, size_t need)
{
    size_t room = c->_max_cap - c->_cap;
    size_t size = c->_cap < GROW_MIN ? GROW_MIN : c->_cap > GROW_MAX ? GROW_MAX : c->_cap;
    if (size < need)
        size = need;
    if (size > room)
        size = room;
    int rc = reserve(c, 1);
    struct rill_buf *nb;
    if (rc == 0)
        rc = rill_buf_alloc(size, &nb);
    if (rc)
        return rc;
    push(c, nb, nb->_data, nb->_cap < room ? nb->_cap : room);
    sync_flat(c);
    return 0;
}

/* True when some of the room past the writer index is read-only (the
 * writer index was moved back into a read-only component). */
static bool room_readonly(const struct rill_buf *c)
{
    if (c->_wr == c->_cap)
        return false;
    for (uint32_t i = rill__comp_find(c, c->_wr); i < c->_u.comp.n; i++)
        if (comps(c)[i].buf->_flags & RILL_BUF_F_READONLY)
            return true;
    return false;
}

int rill__comp_ensure_writable(struct rill_buf *c, size_t n)
{
    if (RILL_UNLIKELY(room_readonly(c)))
        trim_tail(c); /* writes append; they never fail on a read-only component */
    if (c->_cap - c->_wr >= n)
        return 0;
    if (n > c->_max_cap - c->_wr)
        return -ENOBUFS;
    uint32_t cnt = c->_u.comp.n;
    if (cnt) {
        struct rill_buf_comp *last = &comps(c)[cnt - 1];
        size_t spare = spare_room(last), room = c->_max_cap - c->_cap;
        if (spare > room)
            spare = room;
        last->len += spare;
        c->_cap += spare;
    }
    if (c->_cap - c->_wr >= n)
        return 0;
    return add_room(c, n - (c->_cap - c->_wr));
}

uint8_t *rill__comp_write_ptr(struct rill_buf *c, size_t min, size_t *len)
{
    int rc = rill_buf_ensure_writable(c, min);
    if (rc == 0) {
        struct rill_buf_comp *v = &comps(c)[rill__comp_find(c, c->_wr)];
        size_t avail = v->off + v->len - c->_wr;
        if (avail < min) {
            /* The room is split (or not ours to write): make one piece. */
            trim_tail(c);
            size_t cnt = c->_u.comp.n;
            struct rill_buf_comp *last = cnt ? &comps(c)[cnt - 1] : NULL;
            if (last && spare_room(last) >= min) {
                last->len += min;
                c->_cap += min;
            } else {
                rc = add_room(c, min);
            }
            if (rc == 0)
                v = &comps(c)[rill__comp_find(c, c->_wr)];
        }
        if (rc == 0) {
            *len = v->off + v->len - c->_wr;
            return v->ptr + (c->_wr - v->off);
        }
    }
    *len = 0;
    return NULL;
}

void rill__comp_discard_read(struct rill_buf *c)
{
    size_t rd = c->_rd;
    struct rill_buf_comp *v = comps(c);
    uint32_t n = c->_u.comp.n, k = 0;
    while (k < n && v[k].off + v[k].len <= rd)
        rill_buf_release(v[k++].buf);
    if (k < n && v[k].off < rd) {
        size_t d = rd - v[k].off;
        v[k].ptr += d;
        v[k].len -= d;
        v[k].off = rd;
    }
    memmove(v, v + k, (n - k) * sizeof(*v));
    n -= k;
    for (uint32_t i = 0; i < n; i++)
        v[i].off -= rd;
    c->_u.comp.n = n;
    c->_u.comp.last = 0;
    c->_cap -= rd;
    c->_wr -= rd;
    c->_rd = 0;
    sync_flat(c);
}

int rill__comp_slice(struct rill_buf *c, size_t index, size_t len, bool readonly,
                     struct rill_buf **out)
{
    int rc;
    if (len == 0) {
        rc = rill_buf_composite_new(out);
        if (rc == 0 && readonly)
            (*out)->_flags |= RILL_BUF_F_READONLY;
        return rc;
    }
    struct rill__span_it it;
    struct rill__span s = { 0 };
    rill__span_init(&it, c, index, len);
    rill__span_next(&it, &s);
    if (s.len == len) /* within one component: a flat slice of its storage */
        return rill__buf_slice_flat(rill__buf_root((struct rill_buf *)s.owner), s.p, len,
                                    readonly || (s.owner->_flags & RILL_BUF_F_READONLY), out);
    struct rill_buf *nc;
    rc = rill_buf_composite_new(&nc);
    if (rc)
        return rc;
    rill__span_init(&it, c, index, len);
    while (rc == 0 && rill__span_next(&it, &s)) {
        struct rill_buf *piece;
        rc = reserve(nc, 1);
        if (rc == 0)
            rc = rill__buf_slice_flat(rill__buf_root((struct rill_buf *)s.owner), s.p, s.len,
                                      readonly || (s.owner->_flags & RILL_BUF_F_READONLY), &piece);
        if (rc == 0)
            push(nc, piece, s.p, s.len);
    }
    if (rc) {
        rill_buf_release(nc);
        return rc;
    }
    nc->_wr = nc->_cap;
    if (readonly)
        nc->_flags |= RILL_BUF_F_READONLY;
    sync_flat(nc);
    *out = nc;
    return 0;
}

const uint8_t *rill__comp_read_ptr(const struct rill_buf *c, size_t *len)
{
    size_t n = c->_wr - c->_rd;
    *len = n;
    if (n == 0)
        return (const uint8_t *)"";
    const struct rill_buf_comp *v = &comps(c)[rill__comp_find(c, c->_rd)];
    size_t skip = c->_rd - v->off;
    return v->len - skip >= n ? v->ptr + skip : NULL;
}
