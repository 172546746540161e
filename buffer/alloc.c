/* The pooled I/O-memory allocator (first cut: straight jemalloc; the
 * dedicated arena, thread caches and registration hooks follow). */
#include "rill/alloc.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <string.h>

static size_t round_up(size_t size)
{
    if (size == 0)
        size = 1;
    if (size < 64)
        return (size + 15) & ~(size_t)15;
    return (size + 63) & ~(size_t)63;
}

static int align_flags(size_t size)
{
    return size >= 64 ? MALLOCX_ALIGN(64) : 0;
}

void *rill_alloc(size_t size, size_t *usable)
{
    size_t sz = round_up(size);
    void *p = mallocx(sz, align_flags(sz));
    if (p && usable)
        *usable = sz;
    return p;
}

void rill_free(void *p, size_t size)
{
    if (p) {
        size_t sz = round_up(size);
        sdallocx(p, sz, align_flags(sz));
    }
}

size_t rill_alloc_usable(size_t size)
{
    return round_up(size);
}

void rill_alloc_flush_thread_cache(void) {}

int rill_alloc_hook_add(const struct rill_mem_hook *hook, int *slot)
{
    return -ENOSYS;
}

int rill_alloc_hook_remove(int slot)
{
    return -ENOENT;
}

int rill_alloc_lookup(const void *ptr, int slot, struct rill_mem_region *out)
{
    return -ENOENT;
}

void rill_alloc_get_stats(struct rill_alloc_stats *out)
{
    memset(out, 0, sizeof(*out));
}
