/* RESP value messages: allocation (one block: header, nodes, storage),
 * builders, and strings as rill_bufs. See rill/resp.h. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "codec/resp/resp_internal.h"
#include "rill/alloc.h"
#include "rill/buf.h"
#include "rill/resp.h"

#define MAX_VALS (UINT32_MAX / 2)

static size_t block_size(size_t nvals, size_t nbytes)
{
    return sizeof(struct rill_resp) + nvals * sizeof(struct rill_resp_val) + nbytes;
}

static void resp_destroy(struct rill_msg *m)
{
    struct rill_resp *r = (struct rill_resp *)m;
    if (r->_hold)
        rill_buf_release(r->_hold);
    rill_free(r, block_size(r->nvals, r->_cap));
}

int rill__resp_alloc(size_t nvals, size_t nbytes, struct rill_resp **out)
{
    if (nvals == 0 || nvals > MAX_VALS || nbytes > UINT32_MAX)
        return -EINVAL;
    struct rill_resp *r = rill_alloc(block_size(nvals, nbytes), NULL);
    if (!r)
        return -ENOMEM;
    r->_hold = NULL;
    r->nvals = (uint32_t)nvals;
    r->_cap = (uint32_t)nbytes;
    rill_msg_init(&r->msg, RILL_MSG_RESP, resp_destroy);
    *out = r;
    return 0;
}

int rill_resp_new(size_t nvals, size_t nbytes, struct rill_resp **out)
{
    int rc = rill__resp_alloc(nvals, nbytes, out);
    if (rc == 0)
        memset((*out)->vals, 0, nvals * sizeof(struct rill_resp_val) + nbytes);
    return rc;
}

char *rill_resp_storage(struct rill_resp *r)
{
    return (char *)(r->vals + r->nvals);
}

int rill__resp_agg_check(const struct rill_resp_val *v)
{
    switch (v->type) {
    case RILL_RESP_MAP:
        return v->n % 2 ? -EINVAL : 0;
    case RILL_RESP_ATTR:
        return v->n % 2 == 0 ? -EINVAL : 0;
    case RILL_RESP_ARRAY:
    case RILL_RESP_SET:
    case RILL_RESP_PUSH:
        return 0;
    default:
        return -EINVAL;
    }
}

/* Check the subtree at vals[*i] and compute spans; advances *i past it. */
static int seal_at(struct rill_resp *r, uint32_t *i, unsigned depth)
{
    if (*i >= r->nvals || depth > 1000)
        return -EINVAL;
    uint32_t at = (*i)++;
    struct rill_resp_val *v = &r->vals[at];
    if (rill_resp_is_string(v)) {
        if (v->len && !v->str)
            return -EINVAL;
        return 0;
    }
    switch (v->type) {
    case RILL_RESP_INT:
    case RILL_RESP_BOOL:
    case RILL_RESP_DOUBLE:
    case RILL_RESP_NULL:
        return 0;
    default:
        break;
    }
    int rc = rill__resp_agg_check(v);
    if (rc)
        return rc;
    for (uint32_t k = 0; k < v->n; k++) {
        rc = seal_at(r, i, depth + 1);
        if (rc)
            return rc;
    }
    v->len = *i - at;
    v->flags = (uint8_t)((v->flags & ~RILL_RESP_F_FLAT) |
                         (v->len == (size_t)v->n + 1 ? RILL_RESP_F_FLAT : 0));
    return 0;
}

int rill_resp_seal(struct rill_resp *r)
{
    uint32_t i = 0;
    int rc = seal_at(r, &i, 0);
    return rc ? rc : i == r->nvals ? 0 : -EINVAL;
}

int rill_resp_command(size_t argc, const char *const *argv, const size_t *lens,
                      struct rill_resp **out)
{
    if (argc == 0 || argc >= MAX_VALS)
        return -EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < argc; i++)
        total += lens ? lens[i] : strlen(argv[i]);
    struct rill_resp *r;
    int rc = rill_resp_new(argc + 1, total, &r);
    if (rc)
        return rc;
    char *p = rill_resp_storage(r);
    r->vals[0] = (struct rill_resp_val){
        .type = RILL_RESP_ARRAY, .flags = RILL_RESP_F_FLAT, .n = (uint32_t)argc, .len = argc + 1
    };
    for (size_t i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        memcpy(p, argv[i], n);
        r->vals[i + 1] = (struct rill_resp_val){ .type = RILL_RESP_BULK, .len = n, .str = p };
        p += n;
    }
    *out = r;
    return 0;
}

static void release_resp(void *mem, void *arg)
{
    (void)mem;
    rill_resp_release(arg);
}

int rill_resp_buf(struct rill_resp *r, const struct rill_resp_val *v, struct rill_buf **out)
{
    if (!rill_resp_is_string(v) || v < r->vals || v >= r->vals + r->nvals)
        return -EINVAL;
    /* A wrap needs a pointer even for no bytes. */
    void *mem = v->len ? (void *)v->str : (void *)r->vals;
    struct rill_buf *w;
    int rc = rill_buf_wrap(mem, v->len, v->len, release_resp, r, &w);
    if (rc)
        return rc;
    rill_msg_retain(&r->msg); /* given back by release_resp when the wrap goes */
    rc = rill_buf_readonly(w, out);
    rill_buf_release(w); /* the read-only view keeps it */
    return rc;
}
