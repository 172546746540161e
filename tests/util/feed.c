#include "util/feed.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "rill/buf.h"
#include "rill/embedded.h"
#include "rill/error.h"

struct guard {
    void *map;
    size_t size;
};

static void guard_free(void *mem, void *arg)
{
    (void)mem;
    struct guard *g = arg;
    munmap(g->map, g->size);
    free(g);
}

struct rill_buf *rill_test_guard_buf(const void *data, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;
    if (data_pages == 0)
        data_pages = 1;
    struct guard *g = malloc(sizeof(*g));
    cr_assert_not_null(g);
    g->size = (data_pages + 1) * page;
    g->map = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(g->map, MAP_FAILED, "mmap for a guard buffer failed");
    uint8_t *end = (uint8_t *)g->map + data_pages * page;
    cr_assert_eq(mprotect(end, page, PROT_NONE), 0);
    uint8_t *mem = end - len;
    if (len)
        memcpy(mem, data, len);
    struct rill_buf *b;
    /* A wrap of 0 bytes still needs a non-NULL pointer. */
    cr_assert_eq(rill_buf_wrap(len ? mem : end - 1, len, len, guard_free, g, &b), 0);
    return b;
}

int rill_test_feed_cuts(struct rill_embedded *e, const void *data, size_t len, const size_t *cuts,
                        size_t ncuts)
{
    const uint8_t *p = data;
    size_t from = 0;
    int rc = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        if (to <= from || to > len)
            continue;
        rc = rill_embedded_write_inbound(e, &rill_test_guard_buf(p + from, to - from)->msg);
        if (rc == RILL_ECLOSED)
            return rc;
        from = to;
    }
    return rc;
}

int rill_test_feed_split(struct rill_embedded *e, const void *data, size_t len, size_t at)
{
    return rill_test_feed_cuts(e, data, len, &at, 1);
}

int rill_test_feed_bytes(struct rill_embedded *e, const void *data, size_t len)
{
    const uint8_t *p = data;
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        rc = rill_embedded_write_inbound(e, &rill_test_guard_buf(p + i, 1)->msg);
        if (rc == RILL_ECLOSED)
            return rc;
    }
    return rc;
}

int rill_test_feed(struct rill_embedded *e, const void *data, size_t len)
{
    return rill_test_feed_cuts(e, data, len, NULL, 0);
}

char *rill_test_buf_str(const struct rill_buf *b)
{
    size_t n = rill_buf_readable(b);
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(rill_buf_get_bytes(b, rill_buf_reader_index(b), s, n), 0);
    s[n] = '\0';
    return s;
}
