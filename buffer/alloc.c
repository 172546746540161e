/* The pooled allocator: size classes, per-thread caches, statistics.
 *
 * Requests up to RILL_ALLOC_MAX_POOLED bytes are rounded to a size class
 * and served from the calling thread's cache: one stack of free blocks per
 * class, popped and pushed with no lock and no atomic read-modify-write
 * (the counters are relaxed atomics written only by their thread, which
 * compile to plain loads and stores but keep the stats reader race-free).
 * The stacks are arrays of pointers rather than lists linked through the
 * blocks, so filling and flushing never touch the (cold) blocks themselves.
 * An empty stack is refilled with a small batch from jemalloc; a full one
 * gives its older half back. Larger requests go straight to jemalloc.
 * Everything comes from rill's own arena (alloc_chunk.c).
 *
 * jemalloc's automatic thread cache is not used for the arena: it is shared
 * by all arenas, so mallocx(MALLOCX_ARENA(ours)) could hand out a block that
 * plain malloc() freed, memory that is not registered. Each thread instead
 * creates an explicit jemalloc tcache used only with rill's arena (falling
 * back to none when jemalloc has run out of explicit tcaches).
 *
 * Thread caches sit in a registry (taken only at thread start and exit and
 * by rill_alloc_get_stats) so statistics can sum them; an exiting thread
 * flushes its cache and folds its counters into the totals of exited
 * threads. */
#include "rill/alloc.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "buffer/alloc_internal.h"
#include "rill/common.h"
#include "rill/log.h"

/* ---- size classes ----
 * 16, 32, 48, then multiples of 64 so every block >= 64 bytes is 64-byte
 * aligned by jemalloc's own layout (all are jemalloc classes too, so no
 * hidden rounding): 64, 128, 192, 256, then four per doubling up to 64 KiB
 * (320, 384, 448, 512, 640, ...), at most 25% internal waste above 256. */
#define NSMALL    7 /* classes up to 256 */
#define CLS(g, m) ((256u << (g)) + ((m) + 1) * (64u << (g)))
#define CLS4(g)   CLS(g, 0), CLS(g, 1), CLS(g, 2), CLS(g, 3)
static const uint32_t class_size[] = {
    16,      32,      48,      64,      128,     192,     256,     CLS4(0),
    CLS4(1), CLS4(2), CLS4(3), CLS4(4), CLS4(5), CLS4(6), CLS4(7),
};
#define NCLASSES ((unsigned)RILL_ARRAY_SIZE(class_size))
_Static_assert(RILL_ARRAY_SIZE(class_size) <= RILL_ALLOC_MAX_CLASSES, "too many classes");
_Static_assert(CLS(7, 3) == RILL_ALLOC_MAX_POOLED, "last class is RILL_ALLOC_MAX_POOLED");

/* @size in 1 .. RILL_ALLOC_MAX_POOLED (0 maps like 1). */
static inline unsigned size_class(size_t size)
{
    if (size <= 64)
        return size ? (unsigned)((size + 15) >> 4) - 1 : 0;
    if (size <= 256)
        return (unsigned)((size + 63) >> 6) + 2;
    size_t x = size - 1;
    unsigned lg = 63u - (unsigned)__builtin_clzl(x); /* 8 .. 15 */
    return NSMALL + (lg - 8) * 4 + (unsigned)((x >> (lg - 2)) & 3);
}

/* ---- per-thread caches ---- */

/* A thread caches at most about this many bytes per class (between
 * CACHE_MIN and CACHE_MAX blocks), so big classes cache fewer blocks: at
 * most 4.8 MiB per thread over all classes, and 70 KiB of pointer stacks.
 * 1024 small blocks let a burst of a thousand small messages recycle
 * without touching jemalloc. */
#define CACHE_CLASS_BYTES (128u * 1024u)
#define CACHE_MIN         4u
#define CACHE_MAX         1024u
#define FILL_MAX          64u /* blocks fetched at once on a miss */

/* Large blocks cost a trip through jemalloc's extent code (about 1 us), so
 * a thread also keeps a few recently freed ones, matched by exact jemalloc
 * size (a 64 KiB buffer plus its header is the common case). */
#define LCACHE_SLOTS     8
#define LCACHE_BYTES     (1024u * 1024u) /* per thread */
#define LCACHE_MAX_BLOCK (256u * 1024u)

/* The tcache bits of mallocx flags (jemalloc keeps its mask private). */
#define TCACHE_MASK (0xfffu << 8)

typedef _Atomic uint64_t counter;

/* Owner-only counter update: a relaxed load and store, not an atomic RMW. */
static inline void bump(counter *c, uint64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline uint64_t get(const counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

struct bin {
    void **slots;   /* free blocks, slots[0 .. count), newest on top */
    counter count;  /* blocks cached (read by stats) */
    counter allocs; /* cumulative, this thread */
    counter frees;
};

struct totals {
    uint64_t allocs[NCLASSES], frees[NCLASSES];
    uint64_t large_allocs, large_frees, large_bytes_alloc, large_bytes_freed;
};

struct lcache {
    void *block[LCACHE_SLOTS]; /* oldest first */
    size_t size[LCACHE_SLOTS]; /* jemalloc's usable size */
    unsigned n;
    counter bytes; /* read by stats */
};

struct tcache {
    struct bin bins[NCLASSES];
    struct lcache large;
    counter large_allocs, large_frees, large_bytes_alloc, large_bytes_freed;
    unsigned flags; /* mallocx flags: rill's arena + this thread's jemalloc tcache */
    int je_tcache;  /* explicit jemalloc tcache id, or -1 */
    struct tcache *prev, *next;
};

enum { TC_NONE = 0, TC_LIVE = 1, TC_DEAD = 2 };

static __thread struct tcache *tls_tc __attribute__((tls_model("initial-exec")));
static __thread unsigned char tls_state __attribute__((tls_model("initial-exec")));

/* Registry of live caches and the counters of exited threads. The
 * allocator is process-wide, like malloc, hence file-level state. */
static struct {
    pthread_mutex_t lock;
    struct tcache *live;
    struct totals exited; /* also counts uncached operations */
    pthread_key_t key;
    int key_err;
} threads = { .lock = PTHREAD_MUTEX_INITIALIZER };
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static uint32_t class_limit[NCLASSES];
static size_t slots_total; /* sum of class_limit */

static void tcache_exit(void *arg);

static void key_create(void)
{
    threads.key_err = -pthread_key_create(&threads.key, tcache_exit);
    for (unsigned c = 0; c < NCLASSES; c++) {
        uint32_t n = CACHE_CLASS_BYTES / class_size[c];
        class_limit[c] = n < CACHE_MIN ? CACHE_MIN : n > CACHE_MAX ? CACHE_MAX : n;
        slots_total += class_limit[c];
    }
}

/* Flags for calls that bypass any cache (no thread cache, or a dead one). */
static int uncached_flags(unsigned *flags)
{
    unsigned arena;
    int err = rill__alloc_arena(&arena);
    *flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
    return err;
}

/* The calling thread's cache, created on first use; NULL when the thread
 * is exiting (its cache is gone) or on failure. */
static struct tcache *tcache_get(void)
{
    if (tls_state != TC_NONE)
        return tls_tc;
    unsigned flags;
    if (uncached_flags(&flags) || pthread_once(&key_once, key_create) || threads.key_err)
        return NULL;
    /* One allocation: the cache, then every class's stack. */
    struct tcache *tc = calloc(1, sizeof(*tc) + slots_total * sizeof(void *));
    if (!tc)
        return NULL;
    void **slot = (void **)(tc + 1);
    for (unsigned c = 0; c < NCLASSES; c++) {
        tc->bins[c].slots = slot;
        slot += class_limit[c];
    }
    unsigned id;
    size_t sz = sizeof(id);
    tc->je_tcache = -1;
    tc->flags = flags;
    if (mallctl("tcache.create", &id, &sz, NULL, 0) == 0) {
        tc->je_tcache = (int)id;
        tc->flags = (flags & ~TCACHE_MASK) | MALLOCX_TCACHE(id);
    }
    if (pthread_setspecific(threads.key, tc)) {
        if (tc->je_tcache >= 0)
            mallctl("tcache.destroy", NULL, NULL, &id, sizeof(id));
        free(tc);
        return NULL;
    }
    pthread_mutex_lock(&threads.lock);
    tc->next = threads.live;
    if (tc->next)
        tc->next->prev = tc;
    threads.live = tc;
    pthread_mutex_unlock(&threads.lock);
    tls_tc = tc;
    tls_state = TC_LIVE;
    return tc;
}

/* Give the @n oldest blocks of class @c back to jemalloc (they stay
 * poisoned there under ASan) and slide the rest down. */
static void bin_release(struct tcache *tc, struct bin *b, unsigned c, uint64_t n)
{
    uint64_t count = get(&b->count);
    for (uint64_t i = 0; i < n; i++)
        sdallocx(b->slots[i], class_size[c], (int)tc->flags);
    memmove(b->slots, b->slots + n, (count - n) * sizeof(void *));
    atomic_store_explicit(&b->count, count - n, memory_order_relaxed);
}

/* Give the oldest cached large block back to jemalloc. */
static void lcache_evict(struct tcache *tc)
{
    struct lcache *lc = &tc->large;
    sdallocx(lc->block[0], lc->size[0], (int)tc->flags);
    bump(&lc->bytes, -(uint64_t)lc->size[0]);
    lc->n--;
    memmove(lc->block, lc->block + 1, lc->n * sizeof(lc->block[0]));
    memmove(lc->size, lc->size + 1, lc->n * sizeof(lc->size[0]));
}

static void tcache_flush(struct tcache *tc)
{
    for (unsigned c = 0; c < NCLASSES; c++)
        bin_release(tc, &tc->bins[c], c, get(&tc->bins[c].count));
    while (tc->large.n)
        lcache_evict(tc);
}

static void tcache_exit(void *arg)
{
    struct tcache *tc = arg;
    tcache_flush(tc);
    if (tc->je_tcache >= 0) {
        unsigned id = (unsigned)tc->je_tcache;
        mallctl("tcache.destroy", NULL, NULL, &id, sizeof(id));
    }
    pthread_mutex_lock(&threads.lock);
    struct totals *t = &threads.exited;
    for (unsigned c = 0; c < NCLASSES; c++) {
        t->allocs[c] += get(&tc->bins[c].allocs);
        t->frees[c] += get(&tc->bins[c].frees);
    }
    t->large_allocs += get(&tc->large_allocs);
    t->large_frees += get(&tc->large_frees);
    t->large_bytes_alloc += get(&tc->large_bytes_alloc);
    t->large_bytes_freed += get(&tc->large_bytes_freed);
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        threads.live = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    pthread_mutex_unlock(&threads.lock);
    free(tc);
    /* Later calls on this thread (other destructors) bypass the cache. */
    tls_tc = NULL;
    tls_state = TC_DEAD;
}

/* Count an operation of a thread without a cache. */
static void count_uncached(int c, int is_alloc, uint64_t large_bytes)
{
    pthread_mutex_lock(&threads.lock);
    struct totals *t = &threads.exited;
    if (c >= 0)
        (is_alloc ? t->allocs : t->frees)[c]++;
    else if (is_alloc)
        t->large_allocs++, t->large_bytes_alloc += large_bytes;
    else
        t->large_frees++, t->large_bytes_freed += large_bytes;
    pthread_mutex_unlock(&threads.lock);
}

/* ---- allocation ---- */

/* mallocx on rill's arena. jemalloc silently serves arena 0 instead while
 * the thread is "reentrant" (inside an extent hook, or after jemalloc's own
 * thread-exit cleanup ran): such a block is not I/O memory, so refuse it. */
static void *je_alloc(size_t size, unsigned flags)
{
    void *p = mallocx(size, (int)flags);
    if (RILL_UNLIKELY(p != NULL && !rill__alloc_owns(p))) {
        dallocx(p, MALLOCX_TCACHE_NONE);
        return NULL;
    }
    return p;
}

static __attribute__((noinline)) void *alloc_slow(unsigned c, size_t *usable)
{
    size_t size = class_size[c];
    struct tcache *tc = tcache_get();
    void *p;
    if (!tc) {
        unsigned flags;
        if (uncached_flags(&flags) || !(p = je_alloc(size, flags)))
            return NULL;
        count_uncached((int)c, 1, 0);
    } else {
        /* Refill: one block for the caller, a quarter of the cache more. */
        struct bin *b = &tc->bins[c];
        if (!(p = je_alloc(size, tc->flags)))
            return NULL;
        uint64_t n = 0; /* the stack is empty */
        uint32_t want = class_limit[c] / 4 < FILL_MAX ? class_limit[c] / 4 : FILL_MAX;
        for (; n < want; n++) {
            void *q = je_alloc(size, tc->flags);
            if (!q)
                break;
            rill__poison(q, size);
            b->slots[n] = q;
        }
        atomic_store_explicit(&b->count, n, memory_order_relaxed);
        bump(&b->allocs, 1);
    }
    rill__unpoison(p, size);
    if (usable)
        *usable = size;
    return p;
}

static __attribute__((noinline)) void *alloc_large(size_t size, size_t *usable)
{
    struct tcache *tc = tcache_get();
    unsigned flags;
    if (tc)
        flags = tc->flags;
    else if (uncached_flags(&flags))
        return NULL;
    size_t real = nallocx(size, (int)flags);
    void *p = NULL;
    if (tc && real <= LCACHE_MAX_BLOCK) {
        struct lcache *lc = &tc->large;
        for (unsigned i = lc->n; i-- > 0;) { /* newest first */
            if (lc->size[i] == real) {
                p = lc->block[i];
                bump(&lc->bytes, -(uint64_t)real);
                lc->n--;
                memmove(lc->block + i, lc->block + i + 1, (lc->n - i) * sizeof(lc->block[0]));
                memmove(lc->size + i, lc->size + i + 1, (lc->n - i) * sizeof(lc->size[0]));
                break;
            }
        }
    }
    if (!p && (!real || !(p = je_alloc(size, flags))))
        return NULL;
    rill__unpoison(p, real);
    if (tc) {
        bump(&tc->large_allocs, 1);
        bump(&tc->large_bytes_alloc, real);
    } else {
        count_uncached(-1, 1, real);
    }
    if (usable)
        *usable = real;
    return p;
}

static inline void *alloc_block(size_t size, size_t *usable)
{
    if (RILL_UNLIKELY(size > RILL_ALLOC_MAX_POOLED))
        return alloc_large(size, usable);
    unsigned c = size_class(size);
    struct tcache *tc = tls_tc;
    if (RILL_LIKELY(tc != NULL)) {
        struct bin *b = &tc->bins[c];
        uint64_t n = get(&b->count);
        if (RILL_LIKELY(n > 0)) {
            void *p = b->slots[n - 1];
            rill__unpoison(p, class_size[c]);
            atomic_store_explicit(&b->count, n - 1, memory_order_relaxed);
            bump(&b->allocs, 1);
            if (usable)
                *usable = class_size[c];
            return p;
        }
    }
    return alloc_slow(c, usable);
}

void *rill_alloc(size_t size, size_t *usable)
{
    void *p = alloc_block(size, usable);
    rill__tsan_alloc(p);
    return p;
}

/* ---- free ---- */

static __attribute__((noinline)) void free_slow(void *p, unsigned c)
{
    struct tcache *tc = tcache_get();
    if (!tc) {
        unsigned flags;
        uncached_flags(&flags); /* the arena exists: @p came from it */
        rill__poison(p, class_size[c]);
        sdallocx(p, class_size[c], (int)flags);
        count_uncached((int)c, 0, 0);
        return;
    }
    /* Full: give the older half back, keep the recently used blocks. */
    struct bin *b = &tc->bins[c];
    uint64_t n = get(&b->count);
    if (n >= class_limit[c])
        bin_release(tc, b, c, n - class_limit[c] / 2);
    rill__poison(p, class_size[c]);
    n = get(&b->count);
    b->slots[n] = p;
    atomic_store_explicit(&b->count, n + 1, memory_order_relaxed);
    bump(&b->frees, 1);
}

static __attribute__((noinline)) void free_large(void *p, size_t size)
{
    struct tcache *tc = tcache_get();
    unsigned flags;
    if (tc)
        flags = tc->flags;
    else
        uncached_flags(&flags);
    size_t real = nallocx(size, (int)flags);
    rill__poison(p, real);
    if (tc && real <= LCACHE_MAX_BLOCK) {
        struct lcache *lc = &tc->large;
        while (lc->n && (lc->n == LCACHE_SLOTS || get(&lc->bytes) + real > LCACHE_BYTES))
            lcache_evict(tc);
        lc->block[lc->n] = p;
        lc->size[lc->n++] = real;
        bump(&lc->bytes, real);
    } else {
        sdallocx(p, size, (int)flags);
    }
    if (tc) {
        bump(&tc->large_frees, 1);
        bump(&tc->large_bytes_freed, real);
    } else {
        count_uncached(-1, 0, real);
    }
}

void rill_free(void *p, size_t size)
{
    if (RILL_UNLIKELY(p == NULL))
        return;
    rill__tsan_free(p);
#if RILL_DEBUG
    if (RILL_UNLIKELY(!rill__alloc_owns(p)))
        RILL_PANIC("rill_free(%p, %zu): not memory from rill_alloc", p, size);
#endif
#if RILL_DEBUG
    /* sallocx is jemalloc's own size of the block: a size naming another
     * class would put the block in the wrong cache (or corrupt jemalloc). */
    size_t want = rill_alloc_usable(size);
    if (RILL_UNLIKELY(sallocx(p, 0) != want))
        RILL_PANIC("rill_free(%p, %zu): block has %zu bytes, the size names %zu", p, size,
                   sallocx(p, 0), want);
#endif
    if (RILL_UNLIKELY(size > RILL_ALLOC_MAX_POOLED)) {
        free_large(p, size);
        return;
    }
    unsigned c = size_class(size);
    struct tcache *tc = tls_tc;
    if (RILL_LIKELY(tc != NULL)) {
        struct bin *b = &tc->bins[c];
        uint64_t n = get(&b->count);
        if (RILL_LIKELY(n < class_limit[c])) {
            rill__poison(p, class_size[c]);
            b->slots[n] = p;
            atomic_store_explicit(&b->count, n + 1, memory_order_relaxed);
            bump(&b->frees, 1);
            return;
        }
    }
    free_slow(p, c);
}

size_t rill_alloc_usable(size_t size)
{
    if (size <= RILL_ALLOC_MAX_POOLED)
        return class_size[size_class(size)];
    return nallocx(size, 0); /* 0 when too large */
}

void rill_alloc_flush_thread_cache(void)
{
    struct tcache *tc = tls_tc;
    if (!tc)
        return;
    tcache_flush(tc);
    /* jemalloc cannot flush an explicit tcache: replace it. */
    if (tc->je_tcache >= 0) {
        unsigned id = (unsigned)tc->je_tcache;
        size_t sz = sizeof(id);
        mallctl("tcache.destroy", NULL, NULL, &id, sizeof(id));
        tc->je_tcache = -1;
        tc->flags = (tc->flags & ~TCACHE_MASK) | MALLOCX_TCACHE_NONE;
        if (mallctl("tcache.create", &id, &sz, NULL, 0) == 0) {
            tc->je_tcache = (int)id;
            tc->flags = (tc->flags & ~TCACHE_MASK) | MALLOCX_TCACHE(id);
        }
    }
}

/* ---- statistics ---- */

static void add_cache(struct rill_alloc_stats *out, uint64_t *large, struct tcache *tc)
{
    for (unsigned c = 0; c < NCLASSES; c++) {
        struct rill_alloc_class_stats *cs = &out->classes[c];
        cs->allocs += get(&tc->bins[c].allocs);
        cs->frees += get(&tc->bins[c].frees);
        cs->cached += get(&tc->bins[c].count);
    }
    large[0] += get(&tc->large_allocs);
    large[1] += get(&tc->large_frees);
    large[2] += get(&tc->large_bytes_alloc);
    large[3] += get(&tc->large_bytes_freed);
    out->large_cached_bytes += get(&tc->large.bytes);
}

void rill_alloc_get_stats(struct rill_alloc_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->nclasses = NCLASSES;
    uint64_t large[4] = { 0 };
    pthread_mutex_lock(&threads.lock);
    struct totals *t = &threads.exited;
    for (unsigned c = 0; c < NCLASSES; c++) {
        out->classes[c].allocs = t->allocs[c];
        out->classes[c].frees = t->frees[c];
    }
    large[0] = t->large_allocs;
    large[1] = t->large_frees;
    large[2] = t->large_bytes_alloc;
    large[3] = t->large_bytes_freed;
    for (struct tcache *tc = threads.live; tc; tc = tc->next)
        add_cache(out, large, tc);
    pthread_mutex_unlock(&threads.lock);

    /* Sums of independently read counters: while other threads run, a free
     * may be counted before its allocation; clamp instead of wrapping. */
    for (unsigned c = 0; c < NCLASSES; c++) {
        struct rill_alloc_class_stats *cs = &out->classes[c];
        cs->size = class_size[c];
        cs->in_use = cs->allocs > cs->frees ? cs->allocs - cs->frees : 0;
        out->bytes_in_use += cs->in_use * cs->size;
    }
    out->large_in_use = large[0] > large[1] ? large[0] - large[1] : 0;
    out->large_bytes = large[2] > large[3] ? large[2] - large[3] : 0;
    out->bytes_in_use += out->large_bytes;
    rill__alloc_chunk_stats(&out->bytes_mapped, &out->chunks);
}
