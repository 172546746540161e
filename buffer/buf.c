/* rill_buf: creation, destruction, views, indices, growth and compaction of
 * the flat kinds (pooled, wrapped, slice). The accessors live in
 * buf_access.c and buf_search.c, composites in composite.c. */
#include "buffer/buf_internal.h"

#include <errno.h>
#include <string.h>

#include "rill/alloc.h"
#include "rill/composite.h"
#include "rill/log.h"

/* Old data memory kept alive for views after growth (see ensure_writable).
 * The node is a separate block: the retired bytes themselves are still
 * visible through slices, so they can't hold the link. */
struct rill_buf_retired {
    struct rill_buf_retired *next;
    void *mem;
    size_t size;
};

/* Above this, grow in steps instead of doubling (Netty's threshold). */
#define GROW_STEP ((size_t)4 << 20)

void rill__buf_panic_released(const struct rill_buf *b, const char *fn)
{
    /* Don't read the freed header: say only what the caller did. */
    RILL_PANIC("use after release: %s() on rill_buf %p after its last reference was released "
               "(retain it while you use it)",
               fn, (const void *)b);
}

static void free_retired(struct rill_buf *b)
{
    struct rill_buf_retired *r = b->_u.flat.retired;
    while (r) {
        struct rill_buf_retired *next = r->next;
        rill_free(r->mem, r->size);
        rill_free(r, sizeof(*r));
        r = next;
    }
    b->_u.flat.retired = NULL;
}

static void hand_back_user_mem(struct rill_buf *b)
{
    if (b->_flags & RILL__BUF_F_USERMEM) {
        b->_flags &= ~RILL__BUF_F_USERMEM;
        b->_u.flat.free_fn(b->_u.flat.mem, b->_u.flat.arg);
    }
}

static void buf_destroy(struct rill_msg *m)
{
    struct rill_buf *b = (struct rill_buf *)m;
    switch (b->_kind) {
    case RILL_BUF_POOLED:
    case RILL_BUF_WRAPPED:
        free_retired(b);
        if (b->_u.flat.data_block)
            rill_free(b->_u.flat.data_block, b->_u.flat.data_size);
        hand_back_user_mem(b);
        break;
    case RILL_BUF_SLICE:
        rill_buf_release(b->_u.slice.storage);
        break;
    case RILL_BUF_COMPOSITE:
        rill__comp_destroy(b);
        break;
    }
    rill_free((uint8_t *)b - RILL__BUF_PAD, b->_block_size);
}

struct rill_buf *rill__buf_hdr_new(enum rill_buf_kind kind, size_t extra, size_t *avail)
{
    size_t usable;
    uint8_t *blk = rill_alloc(RILL__BUF_PAD + RILL__BUF_HDR + extra, &usable);
    if (!blk)
        return NULL;
    struct rill_buf *b = (struct rill_buf *)(blk + RILL__BUF_PAD);
    memset(b, 0, sizeof(*b));
    b->_block_size = usable;
    b->_kind = (uint8_t)kind;
    b->_max_cap = RILL__BUF_MAX_CAP;
    rill_msg_init(&b->msg, RILL_MSG_BUF, buf_destroy);
    if (avail)
        *avail = usable - RILL__BUF_PAD - RILL__BUF_HDR;
    return b;
}

int rill_buf_alloc(size_t cap, struct rill_buf **out)
{
    if (cap > RILL__BUF_MAX_CAP - RILL__BUF_HDR)
        return -ENOMEM;
    size_t avail;
    struct rill_buf *b = rill__buf_hdr_new(RILL_BUF_POOLED, cap, &avail);
    if (!b)
        return -ENOMEM;
    b->_u.flat.base = (uint8_t *)b + RILL__BUF_HDR;
    b->_u.flat.base_cap = avail;
    b->_data = b->_u.flat.base;
    b->_cap = b->_u.flat.base_cap;
    *out = b;
    return 0;
}

int rill_buf_copy_from(const void *src, size_t len, struct rill_buf **out)
{
    struct rill_buf *b;
    int rc = rill_buf_alloc(len, &b);
    if (rc)
        return rc;
    if (len)
        memcpy(b->_data, src, len);
    b->_wr = len;
    *out = b;
    return 0;
}

int rill_buf_wrap(void *mem, size_t cap, size_t len, rill_buf_free_fn *free_fn, void *arg,
                  struct rill_buf **out)
{
    if (len > cap || (!mem && cap) || cap > RILL__BUF_MAX_CAP)
        return -EINVAL;
    struct rill_buf *b = rill__buf_hdr_new(RILL_BUF_WRAPPED, 0, NULL);
    if (!b)
        return -ENOMEM;
    b->_u.flat.base = mem;
    b->_u.flat.base_cap = cap;
    b->_u.flat.free_fn = free_fn;
    b->_u.flat.arg = arg;
    b->_u.flat.mem = mem;
    if (free_fn)
        b->_flags |= RILL__BUF_F_USERMEM;
    b->_data = mem;
    b->_cap = cap;
    b->_wr = len;
    *out = b;
    return 0;
}

int rill__buf_slice_flat(struct rill_buf *storage, uint8_t *data, size_t len, bool readonly,
                         struct rill_buf **out)
{
    struct rill_buf *s = rill__buf_hdr_new(RILL_BUF_SLICE, 0, NULL);
    if (!s)
        return -ENOMEM;
    s->_u.slice.storage = rill_buf_retain(storage);
    s->_data = data;
    s->_cap = len;
    s->_wr = len;
    s->_max_cap = len;
    if (readonly)
        s->_flags |= RILL_BUF_F_READONLY;
    *out = s;
    return 0;
}

static int make_view(struct rill_buf *b, size_t index, size_t len, bool readonly,
                     struct rill_buf **out)
{
    RILL__BUF_LIVE(b);
    if (!rill__in_range(index, len, b->_wr))
        return -ERANGE;
    readonly = readonly || (b->_flags & RILL_BUF_F_READONLY);
    if (b->_kind == RILL_BUF_COMPOSITE)
        return rill__comp_slice(b, index, len, readonly, out);
    return rill__buf_slice_flat(rill__buf_root(b), b->_data + index, len, readonly, out);
}

int rill_buf_slice(struct rill_buf *b, size_t index, size_t len, struct rill_buf **out)
{
    return make_view(b, index, len, false, out);
}

int rill_buf_read_slice(struct rill_buf *b, size_t len, struct rill_buf **out)
{
    int rc = make_view(b, b->_rd, len, false, out);
    if (rc == 0)
        b->_rd += len;
    return rc;
}

int rill_buf_readonly(struct rill_buf *b, struct rill_buf **out)
{
    return make_view(b, b->_rd, b->_wr - b->_rd, true, out);
}

int rill_buf_copy(const struct rill_buf *b, size_t index, size_t len, struct rill_buf **out)
{
    RILL__BUF_LIVE(b);
    if (!rill__in_range(index, len, b->_wr))
        return -ERANGE;
    struct rill_buf *c;
    int rc = rill_buf_alloc(len, &c);
    if (rc)
        return rc;
    rill_buf_get_bytes(b, index, c->_data, len);
    c->_wr = len;
    *out = c;
    return 0;
}

/* True when writing into @b could change bytes someone else sees. */
static bool is_shared(const struct rill_buf *b)
{
    return b->_kind == RILL_BUF_SLICE || b->_kind == RILL_BUF_COMPOSITE ||
           (b->_flags & RILL_BUF_F_READONLY) || rill__buf_refcnt(b) > 1;
}

int rill_buf_unshare(struct rill_buf **bp)
{
    struct rill_buf *b = *bp;
    RILL__BUF_LIVE(b);
    if (!is_shared(b))
        return 0;
    struct rill_buf *c;
    int rc = rill_buf_copy(b, b->_rd, b->_wr - b->_rd, &c);
    if (rc)
        return rc;
    rill_buf_release(b);
    *bp = c;
    return 0;
}

/* ---- indices ---- */

size_t rill_buf_max_capacity(const struct rill_buf *b)
{
    RILL__BUF_LIVE(b);
    return b->_max_cap;
}

int rill_buf_set_max_capacity(struct rill_buf *b, size_t max_cap)
{
    RILL__BUF_LIVE(b);
    if (max_cap < b->_cap || max_cap > RILL__BUF_MAX_CAP)
        return -EINVAL;
    b->_max_cap = max_cap;
    return 0;
}

int rill_buf_set_reader_index(struct rill_buf *b, size_t index)
{
    RILL__BUF_LIVE(b);
    if (index > b->_wr)
        return -ERANGE;
    b->_rd = index;
    return 0;
}

int rill_buf_set_writer_index(struct rill_buf *b, size_t index)
{
    RILL__BUF_LIVE(b);
    if (index < b->_rd || index > b->_cap)
        return -ERANGE;
    b->_wr = index;
    return 0;
}

int rill_buf_set_index(struct rill_buf *b, size_t reader, size_t writer)
{
    RILL__BUF_LIVE(b);
    if (reader > writer || writer > b->_cap)
        return -ERANGE;
    b->_rd = reader;
    b->_wr = writer;
    return 0;
}

void rill_buf_clear(struct rill_buf *b)
{
    RILL__BUF_LIVE(b);
    b->_rd = b->_wr = 0;
}

int rill_buf_skip(struct rill_buf *b, size_t n)
{
    RILL__BUF_LIVE(b);
    if (b->_wr - b->_rd < n)
        return -ERANGE;
    b->_rd += n;
    return 0;
}

const uint8_t *rill_buf_read_ptr(const struct rill_buf *b, size_t *len)
{
    RILL__BUF_LIVE(b);
    if (b->_kind == RILL_BUF_COMPOSITE)
        return rill__comp_read_ptr(b, len);
    *len = b->_wr - b->_rd;
    return b->_data ? b->_data + b->_rd : (const uint8_t *)"";
}

uint8_t *rill_buf_write_ptr(struct rill_buf *b, size_t min, size_t *len)
{
    RILL__BUF_LIVE(b);
    if (min == 0)
        min = 1;
    if (b->_kind == RILL_BUF_COMPOSITE)
        return rill__comp_write_ptr(b, min, len);
    if (rill_buf_ensure_writable(b, min) != 0) {
        *len = 0;
        return NULL;
    }
    *len = b->_cap - b->_wr;
    return b->_data + b->_wr;
}

int rill_buf_advance_writer(struct rill_buf *b, size_t n)
{
    RILL__BUF_LIVE(b);
    if (b->_flags & RILL_BUF_F_READONLY)
        return -EROFS;
    if (b->_cap - b->_wr < n)
        return -ERANGE;
    b->_wr += n;
    return 0;
}

/* ---- growth ---- */

/* The capacity to allocate for at least @need bytes: doubling from 64 up
 * to GROW_STEP, then whole steps; never past @max. */
static size_t grow_target(size_t need, size_t max)
{
    size_t n;
    if (need > GROW_STEP) {
        n = need / GROW_STEP * GROW_STEP;
        n = n > max - GROW_STEP ? max : n + GROW_STEP;
    } else {
        n = 64;
        while (n < need)
            n <<= 1;
    }
    return n < max ? n : max;
}

/* Move a pooled or wrapped buffer's bytes [0, capacity) to a new data block
 * of capacity >= @need. The old memory stays valid while views may see it
 * (count > 1); otherwise it goes back at once. */
static int flat_grow(struct rill_buf *b, size_t need)
{
    size_t want = grow_target(need, b->_max_cap), usable;
    uint8_t *blk = rill_alloc(want, &usable);
    if (!blk)
        return -ENOMEM;
    bool shared = rill__buf_refcnt(b) > 1;
    struct rill_buf_retired *node = NULL;
    if (shared && b->_u.flat.data_block) {
        node = rill_alloc(sizeof(*node), NULL);
        if (!node) {
            rill_free(blk, usable);
            return -ENOMEM;
        }
    }
    if (b->_cap) /* set_* may have written past the writer index: keep it all */
        memcpy(blk, b->_data, b->_cap);
    if (node) {
        *node = (struct rill_buf_retired){ b->_u.flat.retired, b->_u.flat.data_block,
                                           b->_u.flat.data_size };
        b->_u.flat.retired = node;
    } else if (b->_u.flat.data_block) {
        rill_free(b->_u.flat.data_block, b->_u.flat.data_size);
    }
    if (!shared) {
        /* No view exists any more: nothing can see old memory. */
        free_retired(b);
        hand_back_user_mem(b);
    }
    b->_u.flat.data_block = blk;
    b->_u.flat.data_size = usable;
    b->_u.flat.base = blk;
    b->_u.flat.base_cap = usable < b->_max_cap ? usable : b->_max_cap;
    b->_data = blk;
    b->_cap = b->_u.flat.base_cap;
    return 0;
}

int rill_buf_ensure_writable(struct rill_buf *b, size_t n)
{
    RILL__BUF_LIVE(b);
    if (b->_flags & RILL_BUF_F_READONLY)
        return n ? -EROFS : 0;
    if (b->_kind == RILL_BUF_COMPOSITE)
        return rill__comp_ensure_writable(b, n);
    if (RILL_LIKELY(b->_cap - b->_wr >= n))
        return 0;
    switch (b->_kind) {
    case RILL_BUF_SLICE:
        return -ENOBUFS;
    default:
        if (n > b->_max_cap - b->_wr)
            return -ENOBUFS;
        return flat_grow(b, b->_wr + n);
    }
}

int rill_buf_discard_read(struct rill_buf *b)
{
    RILL__BUF_LIVE(b);
    size_t rd = b->_rd;
    if (rd == 0)
        return 0;
    if (b->_kind == RILL_BUF_COMPOSITE) {
        rill__comp_discard_read(b);
        return 0;
    }
    if (b->_kind == RILL_BUF_SLICE || rill__buf_refcnt(b) > 1) {
        /* Views may see these bytes: narrow instead of moving them. */
        b->_data += rd;
        b->_cap -= rd;
        b->_wr -= rd;
        b->_rd = 0;
        return 0;
    }
    size_t n = b->_wr - rd;
    uint8_t *base = b->_u.flat.base;
    if (n)
        memmove(base, b->_data + rd, n);
    b->_data = base;
    b->_cap = b->_u.flat.base_cap < b->_max_cap ? b->_u.flat.base_cap : b->_max_cap;
    b->_rd = 0;
    b->_wr = n;
    free_retired(b);
    if (b->_u.flat.data_block)
        hand_back_user_mem(b); /* moved earlier while shared; nobody sees it now */
    return 0;
}
