/* rill built without RDMA (RILL_RDMA=OFF): the public RDMA calls answer
 * that the transport is not there. */
#include <errno.h>
#include <string.h>

#include "rill/future.h"
#include "rill/rdma.h"

int rill_rdma_available(void)
{
    return -EPROTONOSUPPORT;
}

bool rill_channel_is_rdma(const struct rill_channel *ch)
{
    (void)ch;
    return false;
}

int rill_rdma_expose(struct rill_channel *ch, void *addr, size_t len, unsigned access,
                     struct rill_rdma_region **out)
{
    (void)ch, (void)addr, (void)len, (void)access, (void)out;
    return -ENOTSUP;
}

void rill_rdma_region_desc(const struct rill_rdma_region *r, struct rill_rdma_desc *out)
{
    (void)r;
    memset(out, 0, sizeof(*out));
}

void rill_rdma_revoke(struct rill_rdma_region *r)
{
    (void)r;
}

size_t rill_rdma_region_count(void)
{
    return 0;
}

static void unsupported(struct rill_promise *p)
{
    if (p)
        rill_promise_fail(p, -ENOTSUP);
}

void rill_rdma_read(struct rill_channel *ch, const struct rill_rdma_desc *remote, uint64_t roff,
                    void *local, size_t len, struct rill_promise *p)
{
    (void)ch, (void)remote, (void)roff, (void)local, (void)len;
    unsupported(p);
}

void rill_rdma_write(struct rill_channel *ch, const struct rill_rdma_desc *remote, uint64_t roff,
                     const void *local, size_t len, struct rill_promise *p)
{
    (void)ch, (void)remote, (void)roff, (void)local, (void)len;
    unsupported(p);
}

void rill_rdma_write_imm(struct rill_channel *ch, const struct rill_rdma_desc *remote,
                         uint64_t roff, const void *local, size_t len, uint32_t imm,
                         struct rill_promise *p)
{
    (void)ch, (void)remote, (void)roff, (void)local, (void)len, (void)imm;
    unsupported(p);
}

void rill_rdma_channel_stats(const struct rill_channel *ch, struct rill_rdma_stats *out)
{
    (void)ch;
    memset(out, 0, sizeof(*out));
}
