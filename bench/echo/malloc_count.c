/* libecho_malloc_count.so: counts a process's malloc-family calls.
 *
 *   ECHO_MALLOC_COUNT_FILE=/tmp/x.mc LD_PRELOAD=.../libecho_malloc_count.so server ...
 *   echo_loadgen ... --malloc-stats /tmp/x.mc
 *
 * Interposes malloc, calloc, realloc, reallocarray, free, posix_memalign,
 * aligned_alloc and memalign, forwards each to the next definition (glibc, or
 * jemalloc when the program links it) and counts the call in a struct
 * malloc_count mapped from the file (MAP_SHARED), so another process reads
 * the counters while the server runs. Without the variable the counters stay
 * private. Allocations made through other entry points (jemalloc's mallocx,
 * mmap) are not seen: this shows calls to the system allocator, which is what
 * "no allocation per message" is about.
 *
 * The counters are updated with relaxed atomics (a locked add each): cheap
 * but not free, so run.sh uses the library only when asked (--allocs). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "malloc_count.h"

static struct malloc_count local = { .magic = MALLOC_COUNT_MAGIC };
static struct malloc_count *mc = &local;

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

/* dlsym may allocate before the real functions are known: serve it from here. */
static _Alignas(16) char boot[16384];
static size_t boot_used;
static int resolving;

static void *boot_alloc(size_t n)
{
    void *p;

    n = (n + 15) & ~(size_t)15;
    if (n > sizeof(boot) - boot_used)
        return NULL;
    p = boot + boot_used;
    boot_used += n;
    return p;
}

static int is_boot(const void *p)
{
    return (const char *)p >= boot && (const char *)p < boot + sizeof(boot);
}

static void resolve(void)
{
    if (real_malloc || resolving)
        return;
    resolving = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

static inline void count(uint64_t *field, size_t bytes)
{
    __atomic_fetch_add(field, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&mc->bytes, bytes, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void malloc_count_init(void)
{
    const char *path = getenv("ECHO_MALLOC_COUNT_FILE");
    struct malloc_count *m;
    int fd;

    resolve();
    if (!path || !*path)
        return;
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (ftruncate(fd, sizeof(*m)) == 0) {
        m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            memcpy(m, &local, sizeof(*m));
            m->pid = (uint64_t)getpid();
            mc = m;
        }
    }
    close(fd);
}

void *malloc(size_t n)
{
    if (!real_malloc) {
        if (resolving)
            return boot_alloc(n);
        resolve();
    }
    count(&mc->malloc, n);
    return real_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    if (!real_calloc) {
        if (resolving)
            return boot_alloc(k * n); /* static storage: already zero */
        resolve();
    }
    count(&mc->calloc, k * n);
    return real_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    if (is_boot(p)) { /* rare: move a bootstrap block to the real heap */
        void *q = malloc(n);
        if (q)
            memcpy(q, p,
                   n < (size_t)(boot + sizeof(boot) - (char *)p)
                       ? n
                       : (size_t)(boot + sizeof(boot) - (char *)p));
        return q;
    }
    if (!real_realloc)
        resolve();
    count(&mc->realloc, n);
    return real_realloc(p, n);
}

void *reallocarray(void *p, size_t k, size_t n)
{
    size_t total;

    if (__builtin_mul_overflow(k, n, &total))
        return NULL;
    return realloc(p, total);
}

void free(void *p)
{
    if (!p || is_boot(p))
        return;
    if (!real_free)
        resolve();
    __atomic_fetch_add(&mc->free, 1, __ATOMIC_RELAXED);
    real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (!real_posix_memalign)
        resolve();
    count(&mc->memalign, n);
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    if (!real_aligned_alloc)
        resolve();
    count(&mc->memalign, n);
    return real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    if (!real_memalign)
        resolve();
    count(&mc->memalign, n);
    return real_memalign(align, n);
}
