/* The RDMA transport (rdma-core: libibverbs + librdmacm).
 *
 * A channel made from an rdma:// address is an RC queue pair under the same
 * pipeline as a TCP channel: the bootstraps take "rdma://host:port" where
 * they take "tcp://host:port", and every codec, handler and the RPC stack
 * run unchanged over it, because the channel is an in-order byte stream:
 *
 *   rill_server_bind(&so, "rdma://192.0.2.1:7471", &srv);
 *   rill_client_connect(&co, "rdma://192.0.2.1:7471", &f);
 *
 * rill_channel_transport() says "rdma". Inbound messages are rill_bufs that
 * point into the registered buffer the data arrived in (no copy); outbound
 * buffers from the rill allocator go out without a copy too (all of its
 * memory is registered once per device), anything else is copied into
 * registered memory first, small writes go inline. Buffers of at least
 * RILL_OPT_RDMA_RNDV bytes go by rendezvous: the peer RDMA-READs them
 * straight from the sender's memory. A sender never has more messages in
 * flight than the receiver has buffers posted (credits): a slow reader
 * makes the writer unwritable instead of exhausting memory.
 *
 * "rdma+tcp://host:port" asks for a fallback: a client that cannot reach the
 * peer over RDMA (no device, route or CM failure, rejection) connects over
 * TCP to the same host and port, and a server listens on both (TCP only,
 * with a warning, when the machine has no RDMA device). Plain rdma://
 * fails instead, with -ENODEV when there is no RDMA device.
 *
 * Threads: completions are processed by the loop that runs the channel
 * (rill_loop_opts.busy_poll picks events, polling, or adaptive); connection
 * requests by the boss loop.
 *
 * One-sided operations, in the spirit of DISNI: expose a buffer to the peer
 * as a descriptor (address, length, rkey) that travels in any message, and
 * RDMA READ or WRITE (with or without immediate data) against a descriptor
 * the peer sent, with a promise completed on the channel's loop. A WRITE
 * with immediate data reaches the peer's pipeline as the user event
 * RILL_EVENT_RDMA_IMM after the written bytes are in place. */
#ifndef RILL_RDMA_H
#define RILL_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rill_channel;
struct rill_promise;

/* ---- availability ---- */

/* Thread: any. 0 when this machine has an RDMA device, -ENODEV when it
 * has none, -EPROTONOSUPPORT when rill was built without RDMA. The answer
 * is kept for a second (and dropped when a device is removed), so it is
 * cheap and still sees devices come and go. */
int rill_rdma_available(void);

/* Thread: any. True when @ch is an RDMA channel (rdma:// or an rdma+tcp://
 * connection that did not fall back). */
bool rill_channel_is_rdma(const struct rill_channel *ch);

/* ---- remote memory descriptors ---- */

struct rill_rdma_desc {
    uint64_t addr; /* the peer's virtual address */
    uint64_t len;
    uint32_t rkey;
};

/* Wire form: addr (8) len (8) rkey (4), big-endian. */
#define RILL_RDMA_DESC_SIZE 20

/* Thread: any. Write @d's wire form into @out. */
void rill_rdma_desc_encode(const struct rill_rdma_desc *d, uint8_t out[RILL_RDMA_DESC_SIZE]);
/* Thread: any. Read a descriptor from @in (@len bytes). Returns 0, or
 * -EINVAL when @len is shorter than RILL_RDMA_DESC_SIZE or the descriptor
 * wraps the address space. */
int rill_rdma_desc_decode(const uint8_t *in, size_t len, struct rill_rdma_desc *d);

/* ---- exposing memory ---- */

#define RILL_RDMA_REMOTE_READ  0x1u /* the peer may RDMA-READ the region */
#define RILL_RDMA_REMOTE_WRITE 0x2u /* the peer may RDMA-WRITE into it */

struct rill_rdma_region;

/* Thread: any. Register [@addr, @addr + @len) with the device of RDMA
 * channel @ch for the peer's access (@access: RILL_RDMA_REMOTE_* bits; 0
 * registers it for local use only, as the local side of read/write). The
 * memory is the caller's and must stay valid until rill_rdma_revoke. The
 * region may be used with every channel on the same device. Returns 0 and
 * the region (owned by the caller) in *out, or -EINVAL (bad arguments),
 * -ENOTSUP (@ch is not an RDMA channel or has no queue pair yet), -ENODEV
 * (the device was removed), or the registration's -errno. When the device
 * is removed, its regions are deregistered with everything else rill holds
 * on it; the region objects stay the caller's, to revoke as usual. */
int rill_rdma_expose(struct rill_channel *ch, void *addr, size_t len, unsigned access,
                     struct rill_rdma_region **out);

/* Thread: any. The descriptor the peer needs (whole region). */
void rill_rdma_region_desc(const struct rill_rdma_region *r, struct rill_rdma_desc *out);

/* Thread: any. Deregister: from now on the peer's READ or WRITE with the
 * old descriptor fails (its queue pair goes to error, so its channel
 * closes). The caller must not revoke a region its own operations still
 * use. Frees @r. */
void rill_rdma_revoke(struct rill_rdma_region *r);

/* Thread: any. Regions exposed and not yet revoked, process-wide (leak
 * checks). */
size_t rill_rdma_region_count(void);

/* ---- one-sided operations ---- */

/* Thread: any (the work is posted to the channel's loop). Read @len bytes
 * at offset @roff of the peer's region @remote into @local. @local must be
 * rill I/O memory (rill_alloc, a pooled rill_buf's bytes) or inside a
 * region from rill_rdma_expose; it is borrowed until @p completes. @p
 * (may be NULL; completed on the channel's loop) succeeds when the data is
 * in place, or fails: -EINVAL (outside @remote, @local not registered),
 * -ENOTSUP (not an RDMA channel), RILL_ECLOSED / -ECONNRESET (the channel
 * closed first), -EREMOTEIO (the peer refused: bad rkey, revoked region). */
void rill_rdma_read(struct rill_channel *ch, const struct rill_rdma_desc *remote, uint64_t roff,
                    void *local, size_t len, struct rill_promise *p);

/* Thread: any. Write @len bytes from @local to offset @roff of the peer's
 * region @remote; as rill_rdma_read otherwise. */
void rill_rdma_write(struct rill_channel *ch, const struct rill_rdma_desc *remote, uint64_t roff,
                     const void *local, size_t len, struct rill_promise *p);

/* Thread: any. As rill_rdma_write, then the peer's pipeline gets the user
 * event RILL_EVENT_RDMA_IMM with @imm (24 bits: the top 8 must be 0) and
 * @len, after the bytes are in place. Uses one of the peer's receive
 * buffers, like a send (credit flow control applies). */
void rill_rdma_write_imm(struct rill_channel *ch, const struct rill_rdma_desc *remote,
                         uint64_t roff, const void *local, size_t len, uint32_t imm,
                         struct rill_promise *p);

/* The user event a WRITE with immediate data fires (rill_event.type), with
 * a const struct rill_rdma_imm * as its data. */
#define RILL_EVENT_RDMA_IMM 100
#define RILL_RDMA_IMM_MAX   0xffffffu

struct rill_rdma_imm {
    uint32_t imm; /* the sender's 24-bit value */
    uint32_t len; /* bytes it wrote */
};

/* ---- statistics ---- */

struct rill_rdma_stats {
    uint64_t sends;           /* SEND work requests posted */
    uint64_t sends_zero_copy; /* ... whose payload went straight from the caller's buffers */
    uint64_t sends_inline;    /* ... that went inline */
    uint64_t bytes_copied;    /* outbound bytes copied into registered memory */
    uint64_t recvs;           /* receive completions */
    uint64_t credit_msgs;     /* explicit credit messages sent */
    uint64_t rndv_sent;       /* buffers offered by rendezvous */
    uint64_t rndv_read;       /* rendezvous buffers this side READ */
    uint64_t rndv_queued;     /* ... of them offered while another was being READ */
    uint64_t credit_stalls;   /* times the sender ran out of credits */
    uint64_t reads, writes;   /* one-sided operations posted */
};

/* Thread: the channel's loop. Counters of RDMA channel @ch (zeros for other
 * channels). */
void rill_rdma_channel_stats(const struct rill_channel *ch, struct rill_rdma_stats *out);

#endif /* RILL_RDMA_H */
