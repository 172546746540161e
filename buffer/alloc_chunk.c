/* rill's jemalloc arena and the chunks of I/O memory under it.
 *
 * The arena's extent hooks map memory in chunks: each call of the alloc
 * hook maps one new chunk (a mapping whose start is aligned to
 * RILL_ALLOC_CHUNK_ALIGN), records it and has every registration hook
 * register it. Chunks are never unmapped, decommitted or purged (those
 * hooks opt out), so a registration stays valid for the life of the
 * process, and extents never merge across two chunks, so every block lies
 * inside exactly one registration (one buffer = one lkey).
 *
 * Pointer -> chunk is a two-level radix table indexed by address >> chunk
 * shift, like jemalloc's rtree: leaves are allocated on demand and never
 * freed; entries are written with release stores under the chunk lock and
 * read with acquire loads and no lock. A chunk is aligned to the slot size,
 * so no two chunks share a slot; a chunk longer than a slot fills several.
 *
 * The allocator is process-wide (like malloc itself), hence the file-level
 * state below: one arena, one chunk registry, one hook table. */
#include "buffer/alloc_internal.h"
#include "rill/alloc.h"
#include "rill/common.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK_SHIFT 22
_Static_assert(RILL_ALLOC_CHUNK_ALIGN == 1u << CHUNK_SHIFT, "chunk shift matches alloc.h");
#define VA_BITS   48 /* user addresses on x86-64 and arm64 without 5-level hints */
#define LEAF_BITS 13
#define ROOT_BITS (VA_BITS - CHUNK_SHIFT - LEAF_BITS)

struct chunk {
    void *base;
    size_t len;
    _Atomic(void *) handle[RILL_ALLOC_MAX_HOOKS]; /* per hook slot; read by lookup */
    struct chunk *next;                           /* registry list, under the lock */
};

struct leaf {
    _Atomic(struct chunk *) slot[1u << LEAF_BITS];
};

static _Atomic(struct leaf *) radix_root[1u << ROOT_BITS];

static struct {
    pthread_mutex_t lock; /* chunk list, counters, hook table, radix writes */
    struct chunk *chunks;
    uint64_t nchunks, mapped;
    struct rill_mem_hook hooks[RILL_ALLOC_MAX_HOOKS];
    bool used[RILL_ALLOC_MAX_HOOKS];
    _Atomic bool active[RILL_ALLOC_MAX_HOOKS]; /* handles are valid; read by lookup */
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Arena creation is retried after a failure (a registration hook may
 * refuse jemalloc's first chunk), so this is a flag and a lock rather than
 * pthread_once. */
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool arena_ready;
static unsigned arena_index;

/* ---- radix table ---- */

static struct chunk *chunk_of(const void *p)
{
    uintptr_t key = (uintptr_t)p >> CHUNK_SHIFT;
    if (key >> (ROOT_BITS + LEAF_BITS))
        return NULL;
    struct leaf *l = atomic_load_explicit(&radix_root[key >> LEAF_BITS], memory_order_acquire);
    if (!l)
        return NULL;
    struct chunk *c =
        atomic_load_explicit(&l->slot[key & ((1u << LEAF_BITS) - 1)], memory_order_acquire);
    /* The slot may extend past the chunk's end (chunks are page-sized,
     * not slot-sized); memory there belongs to someone else. */
    if (!c || (uintptr_t)p - (uintptr_t)c->base >= c->len)
        return NULL;
    return c;
}

/* Make sure the leaves for [base, base + len) exist. Lock held. */
static int radix_prepare(uintptr_t base, size_t len)
{
    for (uintptr_t k = base >> CHUNK_SHIFT; k <= (base + len - 1) >> CHUNK_SHIFT; k++) {
        _Atomic(struct leaf *) *rp = &radix_root[k >> LEAF_BITS];
        if (atomic_load_explicit(rp, memory_order_relaxed))
            continue;
        /* Leaves are never freed: lock-free readers may hold them. */
        struct leaf *l =
            mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (l == MAP_FAILED)
            return -ENOMEM;
        atomic_store_explicit(rp, l, memory_order_release);
    }
    return 0;
}

/* Publish @c in every slot it covers. Lock held, leaves prepared. */
static void radix_set(struct chunk *c)
{
    uintptr_t base = (uintptr_t)c->base;
    for (uintptr_t k = base >> CHUNK_SHIFT; k <= (base + c->len - 1) >> CHUNK_SHIFT; k++) {
        struct leaf *l = atomic_load_explicit(&radix_root[k >> LEAF_BITS], memory_order_relaxed);
        atomic_store_explicit(&l->slot[k & ((1u << LEAF_BITS) - 1)], c, memory_order_release);
    }
}

/* ---- chunks ---- */

/* Map @len bytes starting at a multiple of @align, below 2^VA_BITS. */
static void *map_aligned(size_t len, size_t align)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = len + align - page;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    if (raw + span > p + len)
        munmap(p + len, (size_t)(raw + span - (p + len)));
    if (((uintptr_t)p + len - 1) >> VA_BITS) {
        munmap(p, len);
        return NULL;
    }
    return p;
}

/* Undo the registrations of @c for the hooks in slots [0, upto). */
static void dereg_upto(struct chunk *c, int upto)
{
    for (int i = 0; i < upto; i++) {
        if (!atomic_load_explicit(&reg.active[i], memory_order_relaxed))
            continue;
        if (reg.hooks[i].dereg)
            reg.hooks[i].dereg(reg.hooks[i].arg, c->base, c->len,
                               atomic_load_explicit(&c->handle[i], memory_order_relaxed));
        atomic_store_explicit(&c->handle[i], NULL, memory_order_relaxed);
    }
}

/* Record a new mapping and register it with every hook. Lock held. */
static int chunk_publish(void *base, size_t len)
{
    int err = radix_prepare((uintptr_t)base, len);
    if (err)
        return err;
    struct chunk *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->base = base;
    c->len = len;
    for (int i = 0; i < RILL_ALLOC_MAX_HOOKS; i++) {
        if (!atomic_load_explicit(&reg.active[i], memory_order_relaxed))
            continue;
        void *h = NULL;
        err = reg.hooks[i].reg(reg.hooks[i].arg, base, len, &h);
        if (err) {
            dereg_upto(c, i);
            free(c);
            return err < 0 ? err : -EIO;
        }
        atomic_store_explicit(&c->handle[i], h, memory_order_relaxed);
    }
    radix_set(c); /* release: the handles above are visible with the chunk */
    c->next = reg.chunks;
    reg.chunks = c;
    reg.nchunks++;
    reg.mapped += len;
    return 0;
}

/* ---- extent hooks (jemalloc's convention: false = success) ---- */

static void *ext_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t align, bool *zero,
                       bool *commit, unsigned arena)
{
    /* A fixed address is only asked for to grow an extent in place; a
     * fresh mapping could not honour it. */
    if (new_addr)
        return NULL;
    void *p = map_aligned(size, align > RILL_ALLOC_CHUNK_ALIGN ? align : RILL_ALLOC_CHUNK_ALIGN);
    if (!p)
        return NULL;
    pthread_mutex_lock(&reg.lock);
    int err = chunk_publish(p, size);
    pthread_mutex_unlock(&reg.lock);
    if (err) {
        munmap(p, size);
        return NULL;
    }
    *zero = true; /* fresh anonymous pages */
    *commit = true;
    return p;
}

/* Keep chunks mapped: jemalloc then retains the extent for reuse. */
static bool ext_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned arena)
{
    return true;
}

/* Only on arena destruction, which rill never does. */
static void ext_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned arena)
{
}

/* Chunks are always committed, so commit is a no-op that succeeds. */
static bool ext_commit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                       unsigned arena)
{
    return false;
}

/* Refuse decommit and purge: registered (pinned) pages must keep their
 * physical backing, or the NIC and the CPU would see different pages. */
static bool ext_refuse(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
                       unsigned arena)
{
    return true;
}

static bool ext_split(extent_hooks_t *h, void *addr, size_t size, size_t size_a, size_t size_b,
                      bool committed, unsigned arena)
{
    return false;
}

/* Merge only inside one chunk: an extent must never span two
 * registrations, even when the kernel placed two chunks side by side.
 * (jemalloc 5.3 itself never merges across extents that came from separate
 * alloc calls; this keeps the rule from depending on that.) */
static bool ext_merge(extent_hooks_t *h, void *addr_a, size_t size_a, void *addr_b, size_t size_b,
                      bool committed, unsigned arena)
{
    struct chunk *a = chunk_of(addr_a);
    return a == NULL || a != chunk_of(addr_b);
}

static extent_hooks_t ext_hooks = {
    .alloc = ext_alloc,
    .dalloc = ext_dalloc,
    .destroy = ext_destroy,
    .commit = ext_commit,
    .decommit = ext_refuse,
    .purge_lazy = ext_refuse,
    .purge_forced = ext_refuse,
    .split = ext_split,
    .merge = ext_merge,
};

static int arena_set(unsigned arena, const char *what, void *val, size_t len)
{
    char name[64];
    snprintf(name, sizeof(name), "arena.%u.%s", arena, what);
    return mallctl(name, NULL, NULL, val, len);
}

/* Create the arena (jemalloc maps its first chunk, for metadata, here). */
static int arena_create(unsigned *arena)
{
    extent_hooks_t *hp = &ext_hooks;
    size_t sz = sizeof(*arena);
    int err = mallctl("arenas.create", arena, &sz, &hp, sizeof(hp));
    if (err)
        return -err;
    /* Grow by at most one chunk at a time (instead of jemalloc's
     * geometric growth), so each registration stays small; requests larger
     * than that still get a chunk of their own size. */
    size_t grow = RILL_ALLOC_CHUNK_ALIGN;
    /* Decay at once. The purge hooks refuse, so a freed extent moves
     * straight from the dirty set to the retained set, still mapped and
     * registered. That matters: jemalloc never carves a small request out
     * of a dirty extent more than 64 times its size, so with decay off the
     * freed extents of a chunk merge into one big dirty extent that no small
     * request may use, and the arena grows without bound. Retained extents
     * have no such limit. */
    ssize_t now = 0;
    if ((err = arena_set(*arena, "retain_grow_limit", &grow, sizeof(grow))) ||
        (err = arena_set(*arena, "dirty_decay_ms", &now, sizeof(now))) ||
        (err = arena_set(*arena, "muzzy_decay_ms", &now, sizeof(now))))
        return -err; /* the arena exists but is unusable: leave it */
    return 0;
}

int rill__alloc_arena(unsigned *arena)
{
    if (RILL_LIKELY(atomic_load_explicit(&arena_ready, memory_order_acquire))) {
        *arena = arena_index;
        return 0;
    }
    pthread_mutex_lock(&arena_lock);
    int err = 0;
    if (!atomic_load_explicit(&arena_ready, memory_order_relaxed)) {
        err = arena_create(&arena_index);
        if (!err)
            atomic_store_explicit(&arena_ready, true, memory_order_release);
    }
    pthread_mutex_unlock(&arena_lock);
    *arena = arena_index;
    return err;
}

bool rill__alloc_owns(const void *p)
{
    return chunk_of(p) != NULL;
}

void rill__alloc_chunk_stats(uint64_t *bytes_mapped, uint64_t *chunks)
{
    pthread_mutex_lock(&reg.lock);
    *bytes_mapped = reg.mapped;
    *chunks = reg.nchunks;
    pthread_mutex_unlock(&reg.lock);
}

/* ---- registration hooks ---- */

int rill_alloc_hook_add(const struct rill_mem_hook *hook, int *slot)
{
    if (!hook || !hook->reg || !slot)
        return -EINVAL;
    pthread_mutex_lock(&reg.lock);
    int s = 0;
    while (s < RILL_ALLOC_MAX_HOOKS && reg.used[s])
        s++;
    if (s == RILL_ALLOC_MAX_HOOKS) {
        pthread_mutex_unlock(&reg.lock);
        return -ENOSPC;
    }
    int err = 0;
    struct chunk *c;
    for (c = reg.chunks; c; c = c->next) {
        void *h = NULL;
        err = hook->reg(hook->arg, c->base, c->len, &h);
        if (err)
            break;
        atomic_store_explicit(&c->handle[s], h, memory_order_relaxed);
    }
    if (err) {
        /* Deregister the chunks before the one that failed. */
        for (struct chunk *d = reg.chunks; d != c; d = d->next) {
            if (hook->dereg)
                hook->dereg(hook->arg, d->base, d->len,
                            atomic_load_explicit(&d->handle[s], memory_order_relaxed));
            atomic_store_explicit(&d->handle[s], NULL, memory_order_relaxed);
        }
        pthread_mutex_unlock(&reg.lock);
        return err < 0 ? err : -EIO;
    }
    reg.hooks[s] = *hook;
    reg.used[s] = true;
    /* Release: a lookup that sees the slot active sees every handle. */
    atomic_store_explicit(&reg.active[s], true, memory_order_release);
    pthread_mutex_unlock(&reg.lock);
    *slot = s;
    return 0;
}

int rill_alloc_hook_remove(int slot)
{
    if (slot < 0 || slot >= RILL_ALLOC_MAX_HOOKS)
        return -ENOENT;
    pthread_mutex_lock(&reg.lock);
    if (!reg.used[slot]) {
        pthread_mutex_unlock(&reg.lock);
        return -ENOENT;
    }
    atomic_store_explicit(&reg.active[slot], false, memory_order_release);
    struct rill_mem_hook *hk = &reg.hooks[slot];
    for (struct chunk *c = reg.chunks; c; c = c->next) {
        if (hk->dereg)
            hk->dereg(hk->arg, c->base, c->len,
                      atomic_load_explicit(&c->handle[slot], memory_order_relaxed));
        atomic_store_explicit(&c->handle[slot], NULL, memory_order_relaxed);
    }
    reg.used[slot] = false;
    pthread_mutex_unlock(&reg.lock);
    return 0;
}

int rill_alloc_lookup(const void *ptr, int slot, struct rill_mem_region *out)
{
    if (slot < 0 || slot >= RILL_ALLOC_MAX_HOOKS ||
        !atomic_load_explicit(&reg.active[slot], memory_order_acquire))
        return -ENOENT;
    struct chunk *c = chunk_of(ptr);
    if (!c)
        return -ENOENT;
    out->base = c->base;
    out->len = c->len;
    out->handle = atomic_load_explicit(&c->handle[slot], memory_order_relaxed);
    return 0;
}
