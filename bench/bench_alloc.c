/* Allocation cost of rill's pooled allocator against glibc malloc, jemalloc
 * (mallocx/sdallocx on its default arena) and rill_buf on top of rill_alloc.
 *
 * Build Release and run pinned to one CPU:
 *   cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
 *   ninja -C build/release bench_alloc
 *   taskset -c 0 build/release/bench/bench_alloc [repetitions]
 *
 * Patterns, per size (64 B .. 64 KiB and a log-uniform mix of 64 B .. 64 KiB):
 *   pair   allocate one block, touch it, free it; repeated
 *   batch  allocate 1000 blocks, touch each, then free the 1000 in order
 * Each cell is the median over the repetitions of ns per allocate+free; the
 * allocators alternate within a repetition so drift hits them alike. Ratios
 * are rill's time over the other's: below 1 means rill is faster.
 *
 * librill links jemalloc, which also replaces malloc() in this process, so
 * the glibc column calls __libc_malloc/__libc_free looked up in libc.so.6
 * itself (the header line shows where each symbol was resolved). */
#include <dlfcn.h>
#include <jemalloc/jemalloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rill/alloc.h"
#include "rill/buf.h"

#define BATCH     1000
#define MIX_LEN   4096
#define MAX_REPS  31
#define PAIR_OPS  400000
#define BATCH_OPS 200 /* batches per run */

enum { A_RILL, A_GLIBC, A_JE, A_BUF, NALLOC };
static const char *const alloc_name[NALLOC] = { "rill", "glibc", "jemalloc", "rill_buf" };

static void *(*libc_malloc)(size_t);
static void (*libc_free)(void *);
static size_t mix[MIX_LEN];
static void *slots[BATCH];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Keep the compiler from dropping a block it thinks is unused. */
static inline void touch(void *p, size_t i)
{
    *(volatile uint8_t *)p = (uint8_t)i;
    __asm__ volatile("" ::"r"(p) : "memory");
}

static inline void *do_alloc(int a, size_t size)
{
    struct rill_buf *b;
    switch (a) {
    case A_RILL:
        return rill_alloc(size, NULL);
    case A_GLIBC:
        return libc_malloc(size);
    case A_JE:
        return mallocx(size, 0);
    default:
        return rill_buf_alloc(size, &b) == 0 ? b : NULL;
    }
}

static inline void do_free(int a, void *p, size_t size)
{
    switch (a) {
    case A_RILL:
        rill_free(p, size);
        break;
    case A_GLIBC:
        libc_free(p);
        break;
    case A_JE:
        sdallocx(p, size, 0);
        break;
    default:
        rill_buf_release(p);
    }
}

/* Memory a block of the rill_buf column can be touched through. */
static inline void *mem(int a, void *p)
{
    size_t len;
    return a == A_BUF ? rill_buf_write_ptr(p, 1, &len) : p;
}

static inline size_t size_at(size_t size, size_t i)
{
    return size ? size : mix[i % MIX_LEN];
}

/* One run; returns ns per allocate+free. @size 0 means the mix. */
static double run(int a, size_t size, int batch)
{
    uint64_t t0 = now_ns(), ops;
    if (!batch) {
        ops = PAIR_OPS;
        for (size_t i = 0; i < ops; i++) {
            size_t sz = size_at(size, i);
            void *p = do_alloc(a, sz);
            if (!p)
                abort();
            touch(mem(a, p), i);
            do_free(a, p, sz);
        }
    } else {
        ops = (uint64_t)BATCH_OPS * BATCH;
        for (size_t r = 0; r < BATCH_OPS; r++) {
            for (size_t i = 0; i < BATCH; i++) {
                if (!(slots[i] = do_alloc(a, size_at(size, r + i))))
                    abort();
                touch(mem(a, slots[i]), i);
            }
            for (size_t i = 0; i < BATCH; i++)
                do_free(a, slots[i], size_at(size, r + i));
        }
    }
    return (double)(now_ns() - t0) / (double)ops;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static const char *where(void *fn)
{
    Dl_info info;
    return dladdr(fn, &info) && info.dli_fname ? info.dli_fname : "?";
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: %s [repetitions 1..%d]\n", argv[0], MAX_REPS);
        return 2;
    }
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    libc_malloc = libc ? (void *(*)(size_t))dlsym(libc, "__libc_malloc") : NULL;
    libc_free = libc ? (void (*)(void *))dlsym(libc, "__libc_free") : NULL;
    if (!libc_malloc || !libc_free) {
        fprintf(stderr, "cannot find glibc's __libc_malloc/__libc_free\n");
        return 1;
    }
    printf("malloc() resolves to %s; glibc column uses %s\n", where((void *)malloc),
           where((void *)libc_malloc));

    /* Log-uniform sizes: as many 64..128 B requests as 32..64 KiB ones. */
    uint64_t s = 42;
    for (size_t i = 0; i < MIX_LEN; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t lo = (size_t)64 << ((s >> 33) % 10); /* a power of two, 64 .. 32 KiB */
        mix[i] = lo + (size_t)((s >> 13) % lo);
    }

    static const size_t sizes[] = { 64, 256, 1024, 4096, 16384, 65536, 0 };
    printf("ns per allocate+free, median of %d runs; ratio = rill time / other time\n", reps);
    printf("%-6s %6s | %8s %8s %8s %8s | %11s %11s %11s\n", "", "size", alloc_name[0],
           alloc_name[1], alloc_name[2], alloc_name[3], "rill/glibc", "rill/jemal", "buf/glibc");
    for (int batch = 0; batch < 2; batch++) {
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            double t[NALLOC][MAX_REPS], med[NALLOC];
            for (int a = 0; a < NALLOC; a++)
                run(a, sizes[k], batch); /* warm the caches */
            for (int r = 0; r < reps; r++)
                for (int a = 0; a < NALLOC; a++)
                    t[a][r] = run(a, sizes[k], batch);
            for (int a = 0; a < NALLOC; a++) {
                qsort(t[a], (size_t)reps, sizeof(double), cmp_double);
                med[a] = t[a][reps / 2];
            }
            char label[24];
            if (sizes[k])
                snprintf(label, sizeof(label), "%zu", sizes[k]);
            else
                snprintf(label, sizeof(label), "mix");
            printf("%-6s %6s | %8.1f %8.1f %8.1f %8.1f | %11.2f %11.2f %11.2f\n",
                   batch ? "batch" : "pair", label, med[A_RILL], med[A_GLIBC], med[A_JE],
                   med[A_BUF], med[A_RILL] / med[A_GLIBC], med[A_RILL] / med[A_JE],
                   med[A_BUF] / med[A_GLIBC]);
        }
    }
    return 0;
}
