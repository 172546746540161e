/* The pooled allocator for I/O memory, on jemalloc.
 *
 * Blocks come in size classes up to RILL_ALLOC_MAX_POOLED bytes; each thread
 * keeps a bounded cache of free blocks per class, so allocating and freeing
 * on one thread takes no lock. Larger requests go to jemalloc (each thread
 * also keeps up to 1 MiB of freed large blocks of up to 256 KiB for reuse).
 * All memory (pooled and large) comes from a dedicated jemalloc arena whose
 * extent hooks map it in chunks that are never returned to the system while
 * the process runs, so a chunk can be registered with an RDMA protection
 * domain exactly once (the registration hooks below) and the registration of
 * any pointer into it found in O(1). No block spans two chunks.
 *
 * The allocator is process-wide, like malloc: all I/O memory must come from
 * the one registered pool for a buffer to be sendable without a copy.
 *
 * jemalloc ignores the requested arena in "reentrant" contexts: inside its
 * own hooks (so inside a registration hook's reg()), and in thread-specific
 * data destructors that run after jemalloc's own. rill_alloc() then returns
 * NULL rather than memory that is not registered.
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

/* Thread: any. Allocate at least @size bytes of I/O memory (size 0 is
 * treated as 1); the caller owns the block until rill_free(). When @usable
 * is not NULL it receives the real size of the block, which the caller may
 * use in full. Returns NULL when out of memory (or see above). The block is
 * 16-byte aligned (64 for sizes >= 64). */
void *rill_alloc(size_t size, size_t *usable);

/* Thread: any. Free a block from rill_alloc (takes ownership; NULL is a
 * no-op). @size is the size asked for or the usable size reported (both
 * name the same class); debug builds abort on memory that is not rill's or
 * a size of another class. The block may be freed on any thread; it joins
 * that thread's cache. */
void rill_free(void *p, size_t size);

/* Thread: any. The usable size rill_alloc(@size) would return (0 when
 * @size is too large for any block). */
size_t rill_alloc_usable(size_t size);

/* Thread: any (acts on the caller's cache). Return this thread's cached
 * blocks to jemalloc; also done at thread exit. */
void rill_alloc_flush_thread_cache(void);

/* ---- registration hooks (for the RDMA transport) ---- */

/* A hook is told about every chunk of I/O memory exactly once: chunks that
 * exist when it is added, and each new chunk as it is mapped. reg() returns
 * 0 and an opaque handle (an ibv_mr, say) kept with the chunk, or -errno
 * (the allocation that needed the chunk then fails). dereg() is called for
 * every chunk when the hook is removed (dereg may be NULL). Both run with
 * the allocator's chunk lock held, reg() possibly from inside jemalloc's
 * extent hook with arena locks held: they must not allocate from rill or
 * call back into this API (malloc is fine). @arg is borrowed and must stay
 * valid until the hook is removed. */
struct rill_mem_hook {
    int (*reg)(void *arg, void *base, size_t len, void **handle);
    void (*dereg)(void *arg, void *base, size_t len, void *handle);
    void *arg;
};

/* Thread: any. Add a hook (copied); its slot number goes to *slot.
 * Returns 0, -EINVAL (no reg), -ENOSPC when RILL_ALLOC_MAX_HOOKS are in
 * use, or the first reg() error (the hook is then not added and chunks
 * registered so far are deregistered). */
int rill_alloc_hook_add(const struct rill_mem_hook *hook, int *slot);

/* Thread: any. Remove the hook in @slot, calling dereg() for every chunk.
 * The caller must make sure no one uses those handles any more (lookups
 * that raced with the removal may have returned them). Returns 0 or
 * -ENOENT. */
int rill_alloc_hook_remove(int slot);

struct rill_mem_region {
    void *base; /* the chunk holding the pointer */
    size_t len;
    void *handle; /* what the hook's reg() returned for this chunk */
};

/* Thread: any; lock-free. Find the chunk holding @ptr and the handle hook
 * @slot registered for it, in O(1) (two dependent loads). Fills @out (the
 * handle is borrowed: valid until the hook is removed). Returns 0, or
 * -ENOENT when @ptr is not rill I/O memory or the slot has no hook. */
int rill_alloc_lookup(const void *ptr, int slot, struct rill_mem_region *out);

/* ---- statistics ---- */

struct rill_alloc_class_stats {
    size_t size;            /* block size of the class */
    uint64_t in_use;        /* blocks handed out and not freed */
    uint64_t cached;        /* blocks held in thread caches */
    uint64_t allocs, frees; /* cumulative */
};

struct rill_alloc_stats {
    uint64_t bytes_in_use;       /* usable bytes handed out (pooled + large) */
    uint64_t bytes_mapped;       /* bytes of chunks mapped from the system */
    uint64_t chunks;             /* chunks mapped */
    uint64_t large_in_use;       /* large blocks handed out */
    uint64_t large_bytes;        /* their usable bytes */
    uint64_t large_cached_bytes; /* freed large blocks kept in thread caches for reuse */
    unsigned nclasses;
    struct rill_alloc_class_stats classes[RILL_ALLOC_MAX_CLASSES];
};

/* Thread: any. Fill @out with a snapshot (sums of per-thread counters;
 * exact when no other thread allocates, otherwise consistent per counter
 * only). Takes the allocator's thread-registry lock. */
void rill_alloc_get_stats(struct rill_alloc_stats *out);

#endif /* RILL_ALLOC_H */
