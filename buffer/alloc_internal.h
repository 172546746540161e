/* Shared between the allocator's two files: alloc.c (size classes, thread
 * caches, statistics) and alloc_chunk.c (the dedicated jemalloc arena, its
 * extent hooks, the chunk registry and the registration hooks). */
#ifndef RILL_ALLOC_INTERNAL_H
#define RILL_ALLOC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

/* Sanitizer switches: gcc defines __SANITIZE_*__, clang has __has_feature. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RILL__ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(RILL__ASAN)
#define RILL__ASAN 1
#endif

#ifdef RILL__ASAN
#include <sanitizer/asan_interface.h>
#define rill__poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define rill__unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define rill__poison(p, n)   ((void)(p), (void)(n))
#define rill__unpoison(p, n) ((void)(p), (void)(n))
#endif

/* ThreadSanitizer does not see the synchronisation inside jemalloc (not
 * instrumented) or the per-thread caches' hand-offs through the arena, so a
 * block freed on one thread and reused on another looks like a race between
 * the old owner's accesses and the new owner's. A release at free and an
 * acquire at allocation, on the block's address, give it the edge. */
#if defined(__SANITIZE_THREAD__)
#define RILL__TSAN_ALLOC 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RILL__TSAN_ALLOC 1
#endif
#endif
#ifdef RILL__TSAN_ALLOC
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define rill__tsan_alloc(p) ((p) ? __tsan_acquire(p) : (void)0)
#define rill__tsan_free(p)  __tsan_release(p)
#else
#define rill__tsan_alloc(p) ((void)(p))
#define rill__tsan_free(p)  ((void)(p))
#endif

/* The index of rill's jemalloc arena, created on first use. Returns 0 or a
 * -errno from arena creation (retried on the next call). */
int rill__alloc_arena(unsigned *arena);

/* True when @p lies in a chunk of rill's arena (lock-free). */
bool rill__alloc_owns(const void *p);

/* Chunks mapped so far and their total length. */
void rill__alloc_chunk_stats(uint64_t *bytes_mapped, uint64_t *chunks);

#endif /* RILL_ALLOC_INTERNAL_H */
