/* The pooled allocator: size classes, thread caches, statistics, chunk
 * registration hooks and lookup, and a multi-threaded stress run.
 * rill-test-labels: threaded */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rill/alloc.h"
#include "util/testutil.h"

TestSuite(alloc, .timeout = 30, .fini = rill_test_no_leaks);

static struct rill_alloc_stats stats(void)
{
    struct rill_alloc_stats s;
    rill_alloc_get_stats(&s);
    return s;
}

/* Index of the class that serves @size. */
static unsigned class_of(const struct rill_alloc_stats *s, size_t size)
{
    for (unsigned c = 0; c < s->nclasses; c++)
        if (s->classes[c].size >= size)
            return c;
    cr_assert_fail("no class for %zu", size);
    return 0;
}

/* Fill and check a block with a pattern derived from @seed. */
static void fill(void *p, size_t len, uint32_t seed)
{
    uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

static int intact(const void *p, size_t len, uint32_t seed)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != (uint8_t)(seed + i * 7 + (i >> 8)))
            return 0;
    return 1;
}

/* ---- size classes ---- */

Test(alloc, usable_sizes_are_classes)
{
    struct rill_alloc_stats s = stats();
    cr_assert_gt(s.nclasses, 10);
    cr_assert_leq(s.nclasses, RILL_ALLOC_MAX_CLASSES);
    cr_assert_eq(s.classes[s.nclasses - 1].size, RILL_ALLOC_MAX_POOLED);
    cr_assert_eq(rill_alloc_usable(0), rill_alloc_usable(1));
    size_t prev = 0;
    for (size_t sz = 1; sz <= RILL_ALLOC_MAX_POOLED; sz++) {
        size_t u = rill_alloc_usable(sz);
        cr_assert_geq(u, sz, "usable(%zu) = %zu", sz, u);
        cr_assert_geq(u, prev, "usable is monotonic at %zu", sz);
        cr_assert_eq(u, s.classes[class_of(&s, sz)].size, "usable(%zu) is the smallest class", sz);
        /* Waste bound: 25% above 256 bytes. */
        if (sz > 256)
            cr_assert_leq(u - sz, sz / 4, "waste at %zu", sz);
        prev = u;
    }
    /* The rill_buf header (~120 bytes) plus small payloads. */
    cr_expect_eq(rill_alloc_usable(150), 192);
    cr_expect_eq(rill_alloc_usable(300), 320);
    cr_assert_gt(rill_alloc_usable(RILL_ALLOC_MAX_POOLED + 1), RILL_ALLOC_MAX_POOLED);
}

static void check_block(size_t size)
{
    size_t usable = 0;
    uint8_t *p = rill_alloc(size, &usable);
    cr_assert_not_null(p, "alloc %zu", size);
    cr_assert_eq(usable, rill_alloc_usable(size), "size %zu", size);
    cr_assert_geq(usable, size);
    uintptr_t align = usable >= 64 ? 64 : 16;
    cr_assert_eq((uintptr_t)p % align, 0, "block of %zu at %p not %zu-aligned", size, (void *)p,
                 (size_t)align);
    memset(p, 0xa5, usable); /* the whole usable block is ours (ASan checks) */
    cr_assert_eq(p[usable - 1], 0xa5);
    rill_free(p, size);
}

Test(alloc, every_class_and_large_sizes_usable_and_aligned)
{
    struct rill_alloc_stats s = stats();
    for (unsigned c = 0; c < s.nclasses; c++) {
        size_t cs = s.classes[c].size;
        check_block(cs);
        check_block(cs - (cs > 16 ? 15 : 0));
    }
    const size_t large[] = { RILL_ALLOC_MAX_POOLED + 1, 100000, 200 * 1024, 1u << 20,
                             RILL_ALLOC_CHUNK_ALIGN + 1 };
    for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++)
        check_block(large[i]);
    /* Freeing with the usable size is the same as with the asked size. */
    size_t u;
    void *p = rill_alloc(100000, &u);
    cr_assert_not_null(p);
    rill_free(p, u);
    rill_free(NULL, 10);
}

#if defined(__SANITIZE_ADDRESS__)
/* Freed blocks waiting in a thread cache are poisoned: reading one in a
 * child process must end it with an ASan report (exit status 1, or SIGABRT
 * with abort_on_error=1) rather than let it carry on. */
static void expect_asan_catches_read_after_free(size_t size)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        volatile uint8_t *p = rill_alloc(size, NULL);
        if (!p)
            _exit(3);
        rill_free((void *)p, size);
        (void)p[size - 1];
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 0),
              "ASan missed a read of a freed %zu-byte block", size);
    cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 3));
}

Test(alloc, use_after_free_of_cached_block_is_caught)
{
    cr_log_info("two ASan reports follow: they are expected");
    expect_asan_catches_read_after_free(300);
    expect_asan_catches_read_after_free(100000);
}
#endif

#if RILL_DEBUG
/* Contract checks of debug builds: rill_free refuses what would corrupt a
 * cache. */
Test(alloc, free_of_foreign_memory_aborts, .signal = SIGABRT)
{
    static uint8_t not_rill[64];
    rill_free(not_rill, sizeof(not_rill));
}

Test(alloc, free_with_another_class_size_aborts, .signal = SIGABRT)
{
    void *p = rill_alloc(100, NULL);
    cr_assert_not_null(p);
    rill_free(p, 1000);
}

Test(alloc, free_of_large_block_with_wrong_size_aborts, .signal = SIGABRT)
{
    void *p = rill_alloc(100000, NULL);
    cr_assert_not_null(p);
    rill_free(p, 300000);
}
#endif

/* ---- statistics ---- */

Test(alloc, stats_exact_on_one_thread)
{
    struct rill_alloc_stats a = stats();
    unsigned c320 = class_of(&a, 300), c64 = class_of(&a, 64);
    void *small[50], *big[3];
    for (int i = 0; i < 50; i++)
        cr_assert_not_null(small[i] = rill_alloc(i < 20 ? 300 : 64, NULL));
    size_t big_usable = 0;
    for (int i = 0; i < 3; i++) {
        size_t u;
        cr_assert_not_null(big[i] = rill_alloc(100000, &u));
        big_usable += u;
    }
    struct rill_alloc_stats b = stats();
    cr_assert_eq(b.classes[c320].in_use, a.classes[c320].in_use + 20);
    cr_assert_eq(b.classes[c64].in_use, a.classes[c64].in_use + 30);
    cr_assert_eq(b.classes[c320].allocs, a.classes[c320].allocs + 20);
    cr_assert_eq(b.large_in_use, a.large_in_use + 3);
    cr_assert_eq(b.large_bytes, a.large_bytes + big_usable);
    cr_assert_eq(b.bytes_in_use, a.bytes_in_use + 20 * 320 + 30 * 64 + big_usable);
    cr_assert_geq(b.bytes_mapped, b.bytes_in_use);
    cr_assert_geq(b.chunks, 1);

    for (int i = 0; i < 50; i++)
        rill_free(small[i], i < 20 ? 300 : 64);
    for (int i = 0; i < 3; i++)
        rill_free(big[i], 100000);
    struct rill_alloc_stats e = stats();
    cr_assert_eq(e.bytes_in_use, a.bytes_in_use);
    cr_assert_eq(e.large_in_use, a.large_in_use);
    cr_assert_eq(e.classes[c320].frees, a.classes[c320].frees + 20);
    for (unsigned c = 0; c < e.nclasses; c++)
        cr_assert_eq(e.classes[c].in_use, a.classes[c].in_use, "class %u", c);
    /* Freed blocks wait in this thread's cache. */
    cr_assert_gt(e.classes[c64].cached, 0);
}

Test(alloc, large_blocks_are_cached_by_size)
{
    size_t u;
    void *p = rill_alloc(100000, &u);
    cr_assert_not_null(p);
    rill_free(p, 100000);
    cr_assert_eq(rill_alloc(u, NULL), p, "a freed large block is reused for its size");
    void *q = rill_alloc(70000, NULL); /* another jemalloc size class */
    cr_assert_neq(q, p);
    rill_free(q, 70000);
    rill_free(p, u);
    struct rill_alloc_stats s = stats();
    cr_assert_eq(s.large_in_use, 0);
    cr_assert_geq(s.large_cached_bytes, u + rill_alloc_usable(70000));
    /* The cache is bounded (1 MiB per thread); flush empties it. */
    void *big[8];
    for (int i = 0; i < 8; i++)
        cr_assert_not_null(big[i] = rill_alloc(250000, NULL));
    for (int i = 0; i < 8; i++)
        rill_free(big[i], 250000);
    s = stats();
    cr_assert_gt(s.large_cached_bytes, 0);
    cr_assert_leq(s.large_cached_bytes, 1024 * 1024);
    rill_alloc_flush_thread_cache();
    cr_assert_eq(stats().large_cached_bytes, 0);
}

Test(alloc, flush_empties_the_thread_cache)
{
    void *p[40];
    for (int i = 0; i < 40; i++)
        cr_assert_not_null(p[i] = rill_alloc(1000, NULL));
    for (int i = 0; i < 40; i++)
        rill_free(p[i], 1000);
    struct rill_alloc_stats a = stats();
    cr_assert_gt(a.classes[class_of(&a, 1000)].cached, 0);
    rill_alloc_flush_thread_cache();
    struct rill_alloc_stats b = stats();
    for (unsigned c = 0; c < b.nclasses; c++)
        cr_assert_eq(b.classes[c].cached, 0, "class %u", c);
    cr_assert_eq(b.bytes_in_use, a.bytes_in_use);
    /* The cache refills on demand. */
    void *q = rill_alloc(1000, NULL);
    cr_assert_not_null(q);
    rill_free(q, 1000);
}

struct handoff {
    void *p;
    size_t size;
    uint32_t seed;
    int ok;
};

static void *free_elsewhere(void *arg)
{
    struct handoff *h = arg;
    h->ok = intact(h->p, h->size, h->seed);
    rill_free(h->p, h->size);
    return NULL;
}

Test(alloc, free_on_another_thread)
{
    const size_t sizes[] = { 100, 4000, 70000 };
    struct handoff h[3];
    size_t bytes = 0;
    for (int i = 0; i < 3; i++) {
        h[i] = (struct handoff){ .size = sizes[i], .seed = 11u * (unsigned)i };
        cr_assert_not_null(h[i].p = rill_alloc(h[i].size, NULL));
        fill(h[i].p, h[i].size, h[i].seed);
        bytes += rill_alloc_usable(sizes[i]);
    }
    struct rill_alloc_stats a = stats();
    for (int i = 0; i < 3; i++) {
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, free_elsewhere, &h[i]), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
        cr_assert(h[i].ok, "contents seen by the other thread");
    }
    struct rill_alloc_stats b = stats();
    cr_assert_eq(b.bytes_in_use, a.bytes_in_use - bytes);
    cr_assert_eq(b.large_in_use, a.large_in_use - 1);
    unsigned c100 = class_of(&b, 100), c4000 = class_of(&b, 4000);
    cr_assert_eq(b.classes[c100].in_use, a.classes[c100].in_use - 1);
    cr_assert_eq(b.classes[c4000].in_use, a.classes[c4000].in_use - 1);
    cr_assert_eq(b.classes[c100].frees, a.classes[c100].frees + 1);
    /* Each exited thread's cache went back to jemalloc; ours is untouched. */
    for (unsigned c = 0; c < b.nclasses; c++)
        cr_assert_eq(b.classes[c].cached, a.classes[c].cached, "class %u", c);
}

static int noop_reg(void *arg, void *base, size_t len, void **handle)
{
    *handle = arg;
    return 0;
}

/* A destructor that runs after the allocator's own (keys run in creation
 * order): allocation bypasses the gone cache. It may fail (jemalloc's own
 * thread cleanup ran earlier and it no longer honours rill's arena) but
 * must never return memory that is not rill's. */
static pthread_key_t late_key;
static int late_slot;
static void late_dtor(void *arg)
{
    int *res = arg;
    void *p = rill_alloc(500, NULL);
    struct rill_mem_region mr;
    res[0] = p != NULL;
    res[1] = !p || rill_alloc_lookup(p, late_slot, &mr) == 0;
    if (p) {
        memset(p, 1, 500);
        rill_free(p, 500);
    }
}

static void *late_thread(void *arg)
{
    rill_free(rill_alloc(64, NULL), 64); /* creates this thread's cache */
    pthread_setspecific(late_key, arg);
    return NULL;
}

Test(alloc, alloc_after_thread_cache_exit)
{
    rill_free(rill_alloc(64, NULL), 64); /* the allocator's key exists first */
    cr_assert_eq(pthread_key_create(&late_key, late_dtor), 0);
    struct rill_mem_hook hk = { noop_reg, NULL, NULL };
    cr_assert_eq(rill_alloc_hook_add(&hk, &late_slot), 0);
    struct rill_alloc_stats a = stats();
    int res[2] = { -1, -1 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, late_thread, res), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(res[1], 1, "late allocation is rill memory or NULL");
    struct rill_alloc_stats b = stats();
    unsigned c = class_of(&b, 500);
    cr_assert_eq(b.classes[c].allocs, a.classes[c].allocs + (uint64_t)res[0]);
    cr_assert_eq(b.bytes_in_use, a.bytes_in_use);
    pthread_key_delete(late_key);
    cr_assert_eq(rill_alloc_hook_remove(late_slot), 0);
}

/* ---- registration hooks and lookup ---- */

#define MAX_REC 256
struct rec {
    void *base;
    size_t len;
    void *handle;
    int regs, deregs;
    int bad_handle;
};
struct recorder {
    struct rec r[MAX_REC];
    int n;
    int fail_at; /* reg() calls from this one on (counting from 0) fail; -1: none */
    int calls;
};

static struct rec *rec_find(struct recorder *h, void *base)
{
    for (int i = 0; i < h->n; i++)
        if (h->r[i].base == base)
            return &h->r[i];
    return NULL;
}

static int rec_reg(void *arg, void *base, size_t len, void **handle)
{
    struct recorder *h = arg;
    int n = h->calls++;
    if (h->fail_at >= 0 && n >= h->fail_at)
        return -EFAULT;
    struct rec *r = rec_find(h, base);
    if (!r) {
        if (h->n == MAX_REC)
            return -ENOSPC;
        r = &h->r[h->n++];
        r->base = base;
        r->len = len;
    }
    r->regs++;
    r->handle = (void *)(uintptr_t)(0x1000 + 16 * (r - h->r));
    *handle = r->handle;
    return 0;
}

static void rec_dereg(void *arg, void *base, size_t len, void *handle)
{
    struct rec *r = rec_find(arg, base);
    cr_assert_not_null(r, "dereg of a chunk never registered");
    r->deregs++;
    r->bad_handle |= handle != r->handle || len != r->len;
}

static int live_regs(struct recorder *h)
{
    int n = 0;
    for (int i = 0; i < h->n; i++) {
        cr_assert_leq(h->r[i].regs, 1, "chunk %p registered %d times", h->r[i].base, h->r[i].regs);
        n += h->r[i].regs - h->r[i].deregs;
    }
    return n;
}

static struct recorder rec;

Test(alloc, hook_sees_every_chunk_exactly_once)
{
    rec.fail_at = -1;
    void *early = rill_alloc(5000, NULL); /* chunks exist before the hook */
    cr_assert_not_null(early);
    struct rill_mem_hook hk = { rec_reg, rec_dereg, &rec };
    int slot = -1;
    cr_assert_eq(rill_alloc_hook_add(&hk, &slot), 0);
    cr_assert(slot >= 0 && slot < RILL_ALLOC_MAX_HOOKS);
    struct rill_alloc_stats s = stats();
    cr_assert_geq(s.chunks, 1);
    cr_assert_eq(live_regs(&rec), (int)s.chunks);

    /* Blocks bigger than a chunk can only come from new chunks. */
    void *big[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null(big[i] = rill_alloc(2 * (size_t)RILL_ALLOC_CHUNK_ALIGN, NULL));
        struct rill_alloc_stats t = stats();
        cr_assert_gt(t.chunks, s.chunks, "a new chunk for big block %d", i);
        cr_assert_eq(live_regs(&rec), (int)t.chunks);
        s = t;
    }
    uint64_t mapped = 0;
    for (int i = 0; i < rec.n; i++)
        mapped += rec.r[i].len;
    cr_assert_eq(mapped, s.bytes_mapped);

    cr_assert_eq(rill_alloc_hook_remove(slot), 0);
    for (int i = 0; i < rec.n; i++) {
        cr_assert_eq(rec.r[i].regs, 1);
        cr_assert_eq(rec.r[i].deregs, 1, "chunk %d deregistered once", i);
        cr_assert_not(rec.r[i].bad_handle, "dereg got the handle reg returned");
    }
    cr_assert_eq(rill_alloc_hook_remove(slot), -ENOENT);
    struct rill_mem_region mr;
    cr_assert_eq(rill_alloc_lookup(early, slot, &mr), -ENOENT);
    for (int i = 0; i < 3; i++)
        rill_free(big[i], 2 * (size_t)RILL_ALLOC_CHUNK_ALIGN);
    rill_free(early, 5000);
}

Test(alloc, hook_add_fails_and_undoes)
{
    /* Two chunks at least, so the failure comes after one success. */
    void *big = rill_alloc(RILL_ALLOC_CHUNK_ALIGN + 1, NULL);
    cr_assert_not_null(big);
    cr_assert_geq(stats().chunks, 2);
    rec.fail_at = 1;
    struct rill_mem_hook hk = { rec_reg, rec_dereg, &rec };
    int slot = -1;
    cr_assert_eq(rill_alloc_hook_add(&hk, &slot), -EFAULT);
    cr_assert_eq(slot, -1);
    cr_assert_eq(rec.n, 1);
    cr_assert_eq(rec.r[0].deregs, 1, "the chunk registered before the failure is undone");
    cr_assert_not(rec.r[0].bad_handle);
    struct rill_mem_region mr;
    for (int s = 0; s < RILL_ALLOC_MAX_HOOKS; s++)
        cr_assert_eq(rill_alloc_lookup(big, s, &mr), -ENOENT);
    rill_free(big, RILL_ALLOC_CHUNK_ALIGN + 1);
}

Test(alloc, failing_reg_fails_the_allocation_that_needs_a_chunk)
{
    rill_free(rill_alloc(64, NULL), 64); /* the arena exists */
    rec.fail_at = -1;
    struct rill_mem_hook hk = { rec_reg, rec_dereg, &rec };
    int slot;
    cr_assert_eq(rill_alloc_hook_add(&hk, &slot), 0);
    int existing = live_regs(&rec);
    rec.fail_at = rec.calls; /* the next reg() fails */
    struct rill_alloc_stats a = stats();
    void *p = rill_alloc(3 * (size_t)RILL_ALLOC_CHUNK_ALIGN, NULL);
    cr_assert_null(p, "no chunk, no block");
    struct rill_alloc_stats b = stats();
    cr_assert_eq(b.chunks, a.chunks, "the refused chunk is not recorded");
    cr_assert_eq(b.large_in_use, a.large_in_use);
    /* Once reg() works again, so does the allocation. */
    rec.fail_at = -1;
    cr_assert_not_null(p = rill_alloc(3 * (size_t)RILL_ALLOC_CHUNK_ALIGN, NULL));
    cr_assert_eq(live_regs(&rec), (int)stats().chunks);
    cr_assert_gt(live_regs(&rec), existing);
    rill_free(p, 3 * (size_t)RILL_ALLOC_CHUNK_ALIGN);
    cr_assert_eq(rill_alloc_hook_remove(slot), 0);
    cr_assert_eq(live_regs(&rec), 0);
}

Test(alloc, hook_slots_run_out)
{
    struct rill_mem_hook hk = { noop_reg, NULL, NULL };
    int slots[RILL_ALLOC_MAX_HOOKS], s;
    for (int i = 0; i < RILL_ALLOC_MAX_HOOKS; i++)
        cr_assert_eq(rill_alloc_hook_add(&hk, &slots[i]), 0);
    cr_assert_eq(rill_alloc_hook_add(&hk, &s), -ENOSPC);
    for (int i = 0; i < RILL_ALLOC_MAX_HOOKS; i++)
        cr_assert_eq(rill_alloc_hook_remove(slots[i]), 0);
    cr_assert_eq(rill_alloc_hook_remove(-1), -ENOENT);
    cr_assert_eq(rill_alloc_hook_remove(RILL_ALLOC_MAX_HOOKS), -ENOENT);
    struct rill_mem_hook bad = { NULL, NULL, NULL };
    cr_assert_eq(rill_alloc_hook_add(&bad, &s), -EINVAL);
}

/* Chunks mapped one after another usually sit side by side. Once their
 * blocks are freed, a bigger block must still come from one chunk, never
 * from free space merged across two registrations (the merge hook refuses;
 * jemalloc 5.3 also never merges across separately mapped extents). */
Test(alloc, no_block_spans_two_chunks)
{
    struct rill_mem_hook hk = { noop_reg, NULL, NULL };
    int slot;
    cr_assert_eq(rill_alloc_hook_add(&hk, &slot), 0);
    enum { NSMALL_BLOCKS = 32, NBIG = 4 };
    const size_t small = 1u << 20, big = 6u << 20;
    void *p[NSMALL_BLOCKS], *q[NBIG];
    for (int i = 0; i < NSMALL_BLOCKS; i++)
        cr_assert_not_null(p[i] = rill_alloc(small, NULL));
    for (int i = 0; i < NSMALL_BLOCKS; i++)
        rill_free(p[i], small);
    for (int i = 0; i < NBIG; i++) {
        size_t u;
        cr_assert_not_null(q[i] = rill_alloc(big, &u));
        struct rill_mem_region first, last;
        cr_assert_eq(rill_alloc_lookup(q[i], slot, &first), 0);
        cr_assert_eq(rill_alloc_lookup((uint8_t *)q[i] + u - 1, slot, &last), 0);
        cr_assert_eq(first.base, last.base, "block %p of %zu bytes spans chunks %p and %p", q[i], u,
                     first.base, last.base);
    }
    for (int i = 0; i < NBIG; i++)
        rill_free(q[i], big);
    cr_assert_eq(rill_alloc_hook_remove(slot), 0);
}

static void check_lookup(int slot, const uint8_t *p, size_t len)
{
    const uint8_t *at[3] = { p, p + len / 2, p + len - 1 };
    struct rill_mem_region first = { 0 };
    for (int i = 0; i < 3; i++) {
        struct rill_mem_region mr;
        cr_assert_eq(rill_alloc_lookup(at[i], slot, &mr), 0, "lookup %p (block %p + %zu)",
                     (void *)at[i], (void *)p, (size_t)(at[i] - p));
        cr_assert((uintptr_t)mr.base <= (uintptr_t)at[i] &&
                  (uintptr_t)at[i] < (uintptr_t)mr.base + mr.len);
        struct rec *r = rec_find(&rec, mr.base);
        cr_assert_not_null(r, "region is a registered chunk");
        cr_assert_eq(r->len, mr.len);
        cr_assert_eq(mr.handle, r->handle);
        if (i == 0)
            first = mr;
        /* One block, one registration. */
        cr_assert_eq(mr.base, first.base);
    }
}

Test(alloc, lookup_finds_chunk_and_handle)
{
    rec.fail_at = -1;
    struct rill_mem_hook hk = { rec_reg, rec_dereg, &rec };
    int slot;
    void *pre = rill_alloc(256, NULL); /* allocated before the hook */
    cr_assert_not_null(pre);
    cr_assert_eq(rill_alloc_hook_add(&hk, &slot), 0);
    const size_t sizes[] = { 16, 192, 320, 4096, 65536, 100000, 2 * RILL_ALLOC_CHUNK_ALIGN };
    void *p[7];
    for (int i = 0; i < 7; i++) {
        cr_assert_not_null(p[i] = rill_alloc(sizes[i], NULL));
        check_lookup(slot, p[i], rill_alloc_usable(sizes[i]));
    }
    check_lookup(slot, pre, 256);

    struct rill_mem_region mr;
    int local = 0;
    void *heap = malloc(100);
    cr_assert_eq(rill_alloc_lookup(&local, slot, &mr), -ENOENT);
    cr_assert_eq(rill_alloc_lookup(heap, slot, &mr), -ENOENT);
    cr_assert_eq(rill_alloc_lookup(NULL, slot, &mr), -ENOENT);
    cr_assert_eq(rill_alloc_lookup((void *)UINTPTR_MAX, slot, &mr), -ENOENT);
    cr_assert_eq(rill_alloc_lookup(pre, (slot + 1) % RILL_ALLOC_MAX_HOOKS, &mr), -ENOENT);
    cr_assert_eq(rill_alloc_lookup(pre, -1, &mr), -ENOENT);
    free(heap);

    cr_assert_eq(rill_alloc_hook_remove(slot), 0);
    for (int i = 0; i < 7; i++)
        rill_free(p[i], sizes[i]);
    rill_free(pre, 256);
}

/* ---- stress: 4 threads, random sizes, cross-thread handoff ---- */

#define STRESS_THREADS 4
#define STRESS_OPS     3000
#define STRESS_LIVE    48
#define QUEUE_LEN      16

struct blk {
    void *p;
    size_t size;
    uint32_t seed;
};

static struct {
    pthread_mutex_t lock;
    struct blk q[QUEUE_LEN];
    int n;
    int corrupt;
} xq = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* A hook added while the workers run: they look up every new block. */
static atomic_int stress_slot = -1;
static atomic_int stress_done, stress_bad_lookups, stress_regs, stress_deregs;

static int count_reg(void *arg, void *base, size_t len, void **handle)
{
    atomic_fetch_add(&stress_regs, 1);
    *handle = base;
    return 0;
}

static void count_dereg(void *arg, void *base, size_t len, void *handle)
{
    atomic_fetch_add(&stress_deregs, 1);
}

static void check_registered(const struct blk *b)
{
    int slot = atomic_load(&stress_slot);
    struct rill_mem_region mr;
    const uint8_t *last = (const uint8_t *)b->p + b->size - 1;
    if (slot >= 0 &&
        (rill_alloc_lookup(last, slot, &mr) != 0 || mr.handle != mr.base ||
         (uintptr_t)b->p < (uintptr_t)mr.base || (uintptr_t)last >= (uintptr_t)mr.base + mr.len))
        atomic_fetch_add(&stress_bad_lookups, 1);
}

static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static size_t rnd_size(uint64_t *s)
{
    uint32_t r = rnd(s) % 10;
    if (r < 5)
        return 1 + rnd(s) % 4096;
    if (r < 8)
        return 1 + rnd(s) % RILL_ALLOC_MAX_POOLED;
    return 1 + rnd(s) % (200 * 1024);
}

static void release(struct blk *b)
{
    if (!intact(b->p, b->size, b->seed)) {
        pthread_mutex_lock(&xq.lock);
        xq.corrupt++;
        pthread_mutex_unlock(&xq.lock);
    }
    rill_free(b->p, b->size);
}

static void *stress_thread(void *arg)
{
    uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    struct blk live[STRESS_LIVE];
    int n = 0;
    for (int op = 0; op < STRESS_OPS; op++) {
        uint32_t r = rnd(&seed) % 100;
        if (r < 10 && n > 0) { /* hand a block to whichever thread takes it */
            int i = (int)(rnd(&seed) % (unsigned)n);
            pthread_mutex_lock(&xq.lock);
            if (xq.n < QUEUE_LEN) {
                xq.q[xq.n++] = live[i];
                live[i] = live[--n];
            }
            pthread_mutex_unlock(&xq.lock);
        } else if (r < 20 && n < STRESS_LIVE) { /* take one handed over */
            pthread_mutex_lock(&xq.lock);
            if (xq.n > 0)
                live[n++] = xq.q[--xq.n];
            pthread_mutex_unlock(&xq.lock);
        } else if (r < 55 || n == STRESS_LIVE) {
            if (n > 0) {
                int i = (int)(rnd(&seed) % (unsigned)n);
                release(&live[i]);
                live[i] = live[--n];
            }
        } else {
            struct blk b = { .size = rnd_size(&seed), .seed = rnd(&seed) };
            b.p = rill_alloc(b.size, NULL);
            if (!b.p)
                return (void *)1;
            fill(b.p, b.size, b.seed);
            check_registered(&b);
            live[n++] = b;
        }
    }
    while (n > 0)
        release(&live[--n]);
    atomic_fetch_add(&stress_done, 1);
    return NULL;
}

Test(alloc, stress_threads_with_handoff)
{
    struct rill_alloc_stats a = stats();
    pthread_t t[STRESS_THREADS];
    for (uintptr_t i = 0; i < STRESS_THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, stress_thread, (void *)i), 0);
    /* While they run: register the chunks, and read the statistics. */
    struct rill_mem_hook hk = { count_reg, count_dereg, NULL };
    int slot;
    cr_assert_eq(rill_alloc_hook_add(&hk, &slot), 0);
    atomic_store(&stress_slot, slot);
    uint64_t deadline = rill_test_deadline_ms(20000);
    for (int polls = 0;
         atomic_load(&stress_done) < STRESS_THREADS && polls < 100000 && rill_test_before(deadline);
         polls++) {
        struct rill_alloc_stats mid = stats();
        cr_assert_eq(mid.nclasses, a.nclasses);
        usleep(100);
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        void *ret;
        cr_assert_eq(pthread_join(t[i], &ret), 0);
        cr_assert_null(ret, "thread %d ran out of memory", i);
    }
    while (xq.n > 0)
        release(&xq.q[--xq.n]);
    cr_assert_eq(xq.corrupt, 0, "%d blocks lost their contents", xq.corrupt);
    struct rill_alloc_stats b = stats();
    cr_assert_eq(b.bytes_in_use, a.bytes_in_use);
    cr_assert_eq(b.large_in_use, a.large_in_use);
    uint64_t allocs = 0;
    for (unsigned c = 0; c < b.nclasses; c++) {
        cr_assert_eq(b.classes[c].in_use, a.classes[c].in_use, "class %u", c);
        cr_assert_eq(b.classes[c].allocs - a.classes[c].allocs,
                     b.classes[c].frees - a.classes[c].frees);
        allocs += b.classes[c].allocs - a.classes[c].allocs;
    }
    cr_assert_gt(allocs, STRESS_THREADS * STRESS_OPS / 10, "the pooled path was exercised");
    cr_assert_eq(atomic_load(&stress_bad_lookups), 0, "every block lies in one registered chunk");
    cr_assert_eq(atomic_load(&stress_regs), (int)b.chunks);
    cr_assert_eq(rill_alloc_hook_remove(slot), 0);
    cr_assert_eq(atomic_load(&stress_deregs), (int)b.chunks);
}
