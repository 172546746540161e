/* The pooled allocator for I/O memory, on jemalloc.
 *
 * Blocks come in size classes up to RILL_ALLOC_MAX_POOLED bytes; each thread
 * keeps a bounded cache of free blocks per class, so allocating and freeing
 * on one thread takes no lock. Larger requests go straight to jemalloc.
 * All memory (pooled and large) comes from a dedicated jemalloc arena whose
 * extent hooks map it in chunks that are never returned to the system while
 * the process runs, so a chunk can be registered with an RDMA protection
 * domain exactly once (the registration hooks below) and the registration of
 * any pointer into it found in O(1).
 *
 * Every function here: Thread: any. */
#ifndef RILL_ALLOC_H
#define RILL_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define RILL_ALLOC_MAX_POOLED  (64u * 1024u) /* largest size served from the class caches */
#define RILL_ALLOC_MAX_CLASSES 48
#define RILL_ALLOC_MAX_HOOKS   8
/* Every chunk of I/O memory starts at a multiple of this, and the arena grows
 * by at most this much at a time: a chunk is this long (less for the
 * allocator's first, metadata-sized chunks) unless one large block needs more. */
#define RILL_ALLOC_CHUNK_ALIGN (4u * 1024u * 1024u)

/* Allocate at least @size bytes of I/O memory (size 0 is treated as 1).
 * When @usable is not NULL it receives the real size of the block, which
 * the caller may use in full. Returns NULL when out of memory. The block is
 * 16-byte aligned (64 for sizes >= 64). */
void *rill_alloc(size_t size, size_t *usable);

/* Free a block from rill_alloc. @size is the size asked for or the usable
 * size reported (both name the same class). The block may be freed on any
 * thread; it joins that thread's cache. */
void rill_free(void *p, size_t size);

/* The usable size rill_alloc(@size) would return. */
size_t rill_alloc_usable(size_t size);

/* Return this thread's cached blocks to jemalloc (also done at thread exit). */
void rill_alloc_flush_thread_cache(void);

/* ---- registration hooks (for the RDMA transport) ---- */

/* A hook is told about every chunk of I/O memory exactly once: chunks that
 * exist when it is added, and each new chunk as it is mapped. reg() returns
 * 0 and an opaque handle (an ibv_mr, say) kept with the chunk, or -errno
 * (the allocation that needed the chunk then fails). dereg() is called for
 * every chunk when the hook is removed. Both run with the allocator's chunk
 * lock held: they must not allocate from rill. */
struct rill_mem_hook {
    int (*reg)(void *arg, void *base, size_t len, void **handle);
    void (*dereg)(void *arg, void *base, size_t len, void *handle);
    void *arg;
};

/* Add a hook (copied); its slot number goes to *slot. Returns 0, -ENOSPC
 * when RILL_ALLOC_MAX_HOOKS are in use, or the first reg() error (the hook
 * is then not added and chunks registered so far are deregistered). */
int rill_alloc_hook_add(const struct rill_mem_hook *hook, int *slot);

/* Remove the hook in @slot, calling dereg() for every chunk. The caller
 * must make sure no one uses those handles any more. Returns 0 or -ENOENT. */
int rill_alloc_hook_remove(int slot);

struct rill_mem_region {
    void *base; /* the chunk holding the pointer */
    size_t len;
    void *handle; /* what the hook's reg() returned for this chunk */
};

/* Find the chunk holding @ptr and the handle hook @slot registered for it,
 * in O(1) and without locks. Returns 0, or -ENOENT when @ptr is not rill I/O
 * memory or the slot has no hook. */
int rill_alloc_lookup(const void *ptr, int slot, struct rill_mem_region *out);

/* ---- statistics ---- */

struct rill_alloc_class_stats {
    size_t size;            /* block size of the class */
    uint64_t in_use;        /* blocks handed out and not freed */
    uint64_t cached;        /* blocks held in thread caches */
    uint64_t allocs, frees; /* cumulative */
};

struct rill_alloc_stats {
    uint64_t bytes_in_use; /* usable bytes handed out (pooled + large) */
    uint64_t bytes_mapped; /* bytes of chunks mapped from the system */
    uint64_t chunks;       /* chunks mapped */
    uint64_t large_in_use; /* large blocks handed out */
    uint64_t large_bytes;  /* their usable bytes */
    unsigned nclasses;
    struct rill_alloc_class_stats classes[RILL_ALLOC_MAX_CLASSES];
};

/* Fill @out with a snapshot (sums of per-thread counters; consistent per
 * counter, not across counters while other threads allocate). */
void rill_alloc_get_stats(struct rill_alloc_stats *out);

#endif /* RILL_ALLOC_H */
