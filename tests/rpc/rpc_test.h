/* Helpers shared by the RPC suites: embedded channels with the codec,
 * collecting encoded bytes, building frames. */
#ifndef RILL_TESTS_RPC_TEST_H
#define RILL_TESTS_RPC_TEST_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/pipeline.h"
#include "rill/rpc_frame.h"
#include "rill/rpc_status.h"

/* Pop everything flushed to the head and append its bytes to @out/@len
 * (grown with realloc). Returns how many messages were popped. */
static inline size_t rt_drain_bytes(struct rill_embedded *e, uint8_t **out, size_t *len)
{
    size_t n = 0;
    struct rill_msg *m;
    while ((m = rill_embedded_read_outbound(e)) != NULL) {
        struct rill_buf *b = rill_buf_from_msg(m);
        cr_assert_not_null(b, "outbound message of type %u is not a buffer", m->type);
        size_t r = rill_buf_readable(b);
        *out = realloc(*out, *len + r + 1);
        cr_assert_eq(rill_buf_get_bytes(b, rill_buf_reader_index(b), *out + *len, r), 0);
        *len += r;
        rill_msg_release(m);
        n++;
    }
    return n;
}

static inline struct rill_embedded *rt_codec(enum rill_rpc_role role,
                                             const struct rill_rpc_codec_opts *opts)
{
    static struct rill_rpc_codec_opts defaults[2];
    rill_rpc_codec_opts_init(&defaults[role], role);
    struct rill_embedded_handler h = { "rpc-codec", &rill_rpc_codec_handler,
                                       (void *)(opts ? opts : &defaults[role]) };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(&h, 1, &e), 0);
    return e;
}

static inline struct rill_buf *rt_buf(const char *s)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(s, strlen(s), &b), 0);
    return b;
}

static inline struct rill_buf *rt_pattern_buf(size_t n, unsigned seed)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(n, &b), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(rill_buf_write_u8(b, (uint8_t)(i * 31 + seed)), 0);
    return b;
}

/* Bytes of @b's readable range equal @s. */
static inline int rt_buf_is(const struct rill_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (!b)
        return n == 0;
    return rill_buf_readable(b) == n && rill_buf_equal_bytes(b, rill_buf_reader_index(b), s, n);
}

#endif
