/* Remote memory descriptors: the wire form of (address, length, rkey),
 * built with or without the RDMA transport (a descriptor may travel
 * through any channel). */
#include <errno.h>

#include "rill/rdma.h"

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

void rill_rdma_desc_encode(const struct rill_rdma_desc *d, uint8_t out[RILL_RDMA_DESC_SIZE])
{
    put64(out, d->addr);
    put64(out + 8, d->len);
    out[16] = (uint8_t)(d->rkey >> 24);
    out[17] = (uint8_t)(d->rkey >> 16);
    out[18] = (uint8_t)(d->rkey >> 8);
    out[19] = (uint8_t)d->rkey;
}

int rill_rdma_desc_decode(const uint8_t *in, size_t len, struct rill_rdma_desc *d)
{
    if (!in || len < RILL_RDMA_DESC_SIZE)
        return -EINVAL;
    d->addr = get64(in);
    d->len = get64(in + 8);
    d->rkey = (uint32_t)in[16] << 24 | (uint32_t)in[17] << 16 | (uint32_t)in[18] << 8 | in[19];
    if (d->addr + d->len < d->addr)
        return -EINVAL;
    return 0;
}
