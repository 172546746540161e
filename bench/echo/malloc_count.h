/* Counters kept by libecho_malloc_count.so (malloc_count.c) in a shared file
 * so that echo_loadgen --malloc-stats can read a running server's allocation
 * calls over exactly its measurement window. */
#ifndef ECHO_MALLOC_COUNT_H
#define ECHO_MALLOC_COUNT_H

#include <stdint.h>

#define MALLOC_COUNT_MAGIC 0x6563686f6d616c6cull /* "echomall" */

struct malloc_count {
    uint64_t magic;
    uint64_t pid;
    uint64_t malloc, calloc, realloc, memalign, free; /* calls, updated with relaxed atomics */
    uint64_t bytes; /* bytes asked of malloc/calloc/realloc/memalign */
};

#endif /* ECHO_MALLOC_COUNT_H */
