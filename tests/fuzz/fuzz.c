#include "fuzz.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rill/buf.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/leak.h"
#include "rill/msg.h"
#include "rill/pipeline.h"

struct guard {
    struct guard *next; /* in the free list of its size */
    void *map;
    size_t pages; /* data pages; one PROT_NONE page follows */
};

/* Mappings are reused: mmap + mprotect + munmap per read made the targets
 * slow (a few hundred runs per second with byte-by-byte splits). */
#define POOL_MAX_PAGES 16
static struct guard *pool[POOL_MAX_PAGES + 1];

static void guard_free(void *mem, void *arg)
{
    (void)mem;
    struct guard *g = arg;
    if (g->pages <= POOL_MAX_PAGES) {
        g->next = pool[g->pages];
        pool[g->pages] = g;
        return;
    }
    munmap(g->map, (g->pages + 1) * (size_t)sysconf(_SC_PAGESIZE));
    free(g);
}

/* @len bytes right before a PROT_NONE page, so an over-read faults. */
static struct rill_buf *guard_buf(const uint8_t *data, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = len ? (len + page - 1) / page : 1;
    struct guard *g = pages <= POOL_MAX_PAGES ? pool[pages] : NULL;
    if (g) {
        pool[pages] = g->next;
    } else {
        g = malloc(sizeof(*g));
        if (!g)
            abort();
        g->pages = pages;
        g->map = mmap(NULL, (pages + 1) * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
        if (g->map == MAP_FAILED)
            abort();
        if (mprotect((uint8_t *)g->map + pages * page, page, PROT_NONE) != 0)
            abort();
    }
    uint8_t *end = (uint8_t *)g->map + pages * page;
    memcpy(end - len, data, len);
    struct rill_buf *b;
    if (rill_buf_wrap(len ? end - len : end - 1, len, len, guard_free, g, &b) != 0)
        abort();
    return b;
}

static void drain(struct rill_embedded *e)
{
    struct rill_msg *m;
    while ((m = rill_embedded_read_inbound(e)))
        rill_msg_release(m);
    while ((m = rill_embedded_read_outbound(e)))
        rill_msg_release(m);
}

void rill_fuzz_run(const struct rill_handler *const *h, void *const *args, size_t n,
                   const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        rill_leak_set_mode(RILL_LEAK_SIMPLE);
        init = true;
    }
    struct rill_embedded_handler hs[8];
    if (n > 8)
        abort();
    for (size_t i = 0; i < n; i++)
        hs[i] = (struct rill_embedded_handler){ .name = NULL, .h = h[i], .arg = args[i] };
    struct rill_embedded *e;
    if (rill_embedded_new(hs, n, &e) != 0)
        abort();

    uint8_t mode = size ? data[0] : 0;
    if (size) {
        data++;
        size--;
    }
    size_t off = 0;
    while (off < size && rill_embedded_is_open(e)) {
        size_t piece;
        switch (mode & 3) {
        case 0:
            piece = size;
            break;
        case 1:
            piece = off == 0 ? (size_t)(mode >> 2) * size / 64 : size - off;
            break;
        case 2:
            piece = 1;
            break;
        default:
            piece = 1 + (data[off] + off) % 16;
            break;
        }
        if (piece == 0)
            piece = 1;
        if (piece > size - off)
            piece = size - off;
        rill_embedded_write_inbound(e, &guard_buf(data + off, piece)->msg);
        off += piece;
        drain(e);
    }
    rill_embedded_take_exception(e, NULL);
    rill_embedded_finish(e, NULL);
    drain(e);
    rill_embedded_free(e);
    if (rill_leak_live() != 0) {
        fprintf(stderr, "fuzz: %zu rill messages alive after the input\n", rill_leak_live());
        rill_leak_report(stderr);
        abort();
    }
}

void rill_fuzz_run1(const struct rill_handler *h, void *arg, const uint8_t *data, size_t size)
{
    rill_fuzz_run(&h, &arg, 1, data, size);
}
