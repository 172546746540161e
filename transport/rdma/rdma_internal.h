/* Private to the RDMA transport and the bootstraps that create its channels.
 *
 * Pieces (one file each):
 *   rdma_dev.c      devices: one protection domain per device per process,
 *                   every chunk of the rill allocator registered with it
 *                   (allocator hook); per loop and device a completion queue
 *                   with its completion channel in the loop's epoll (or
 *                   polled: busy-poll); the loop's table qp_num -> channel
 *   rdma_channel.c  RC channels: connection management (rdma_cm), the receive
 *                   ring, sends with credits, fragmentation and rendezvous
 *   rdma_server.c   listening channels (rdma_cm listen, connect requests)
 *   rdma_onesided.c exposed regions, RDMA READ / WRITE for users
 *
 * Wire protocol: every message is a SEND (or WRITE) with immediate data:
 *   bits 28-31  type (MSG_*)
 *   bits 0-15   receive credits returned to the peer (DATA, CREDIT, RNDV,
 *               RNDV_DONE, FIN); bits 0-23 the user's value for USER_IMM
 * DATA carries stream bytes (at most the peer's receive size), RNDV a
 * descriptor of a registered buffer the peer READs, then RNDV_DONE goes
 * back; FIN ends our output (the peer sees end of input); CREDIT carries
 * only credits. Each message consumes one posted receive at the peer: a
 * sender never posts more than its credits; the last credit only goes on a
 * message that also returns credits, so the two sides can always unblock
 * each other (the Sockets Direct Protocol rule).
 *
 * The connect exchange carries struct rdma_hello (private data) both ways;
 * a mismatch is rejected with struct rdma_reject. */
#ifndef RILL_RDMA_INTERNAL_H
#define RILL_RDMA_INTERNAL_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "channel/channel_internal.h"
#include "rill/addr.h"
#include "rill/list.h"
#include "rill/rdma.h"

#define RDMA_MAGIC   0x52494c52u /* "RILR" */
#define RDMA_VERSION 1

enum {
    RMSG_DATA = 0,
    RMSG_CREDIT = 1,
    RMSG_RNDV = 2,
    RMSG_RNDV_DONE = 3,
    RMSG_FIN = 4,
    RMSG_USER_IMM = 5,
};
#define IMM_TYPE(imm)    ((imm) >> 28)
#define IMM_CREDITS(imm) ((imm)&0xffffu)
#define IMM_MAKE(t, c)   (((uint32_t)(t) << 28) | ((c)&0xffffu))

/* Private data of connect and accept (big-endian on the wire). */
#define RDMA_HELLO_RNDV_QUEUE 0x1 /* queues up to RNDV_MAX offers (else one at a time) */
#define RNDV_MAX              4   /* rendezvous offers in flight per direction */
struct rdma_hello {
    uint32_t magic;
    uint8_t version;
    uint8_t flags; /* RDMA_HELLO_* */
    uint16_t reserved;
    uint32_t recv_depth; /* receives posted: the credits the peer starts with */
    uint32_t recv_size;  /* bytes per receive: the largest SEND the peer may post */
};
#define RDMA_HELLO_SIZE 16

/* Private data of a reject: why, for the other side's log. */
#define RDMA_REJECT_TEXT 64
struct rdma_reject {
    uint32_t magic;
    int32_t err; /* -errno */
    char why[RDMA_REJECT_TEXT];
};

void rill__rdma_hello_encode(const struct rdma_hello *h, uint8_t out[RDMA_HELLO_SIZE]);
/* 0, or -EPROTO with *why set when @p is not a compatible hello. */
int rill__rdma_hello_decode(const void *p, size_t len, struct rdma_hello *h, const char **why);

/* ---- devices (rdma_dev.c) ---- */

/* One per device per process, made when the first of our rdma_cm ids lands
 * on the device (a listener bound to its address, a connecting or accepted
 * channel), with the PD and the allocator's registrations (hook), which
 * then live as long as the device does.
 *
 * Removal (DEVICE_REMOVAL on any of our ids, the anchor among them) makes
 * it dead: no new users;
 * each loop destroys its CQ of the device once its channels have closed;
 * when no CQ and no id is left, the registrations, the exposed regions and
 * the PD are released and the verbs context is given back so the kernel
 * can finish the removal (rdma_dev.c, "removal"). The struct itself is
 * never freed: closed channels and regions may still point at it. */
struct rdma_dev {
    struct ibv_context *verbs; /* NULL once given back */
    struct ibv_pd *pd;         /* NULL once released */
    int hook_slot;             /* allocator hook: chunk -> ibv_mr on pd; -1 */
    struct ibv_device_attr attr;
    uint32_t max_msg;
    /* Under the device lock (rill__rdma_dev_lock): */
    int refs;            /* our ids on the device */
    int ncq;             /* CQs of loops on the device, linked by dev_next */
    struct rdma_cq *cqs; /* " */
    _Atomic bool dead;   /* removed (read without the lock) */
    bool released;       /* PD and registrations gone */
    /* rill's own id bound to the device's address, watched by a thread:
     * it sees the removal even when no channel is on the device, and it
     * keeps librdmacm from closing the context until rill is done. */
    struct rdma_cm_id *anchor;
    /* What giving the context back checks (the fds are librdmacm's). */
    struct ibv_device *device;
    int cmd_fd, async_fd;
    dev_t cmd_rdev;
    struct rdma_dev *next;
};

/* Thread: any. The device entry of @id's device (id->verbs), created on
 * first use (PD, allocator hook, the anchor id on @id's local address),
 * with a hold for @id: give it back with rill__rdma_dev_put once @id is
 * destroyed. 0 or -errno (-ENODEV: the device is being removed). */
int rill__rdma_dev_get(struct rdma_cm_id *id, struct rdma_dev **out);
/* Thread: any. Drop a hold of rill__rdma_dev_get. */
void rill__rdma_dev_put(struct rdma_dev *dev);
/* Thread: any (the loop of the id that saw RDMA_CM_EVENT_DEVICE_REMOVAL).
 * Start tearing @dev down; the caller then closes its channel. */
void rill__rdma_dev_removed(struct rdma_dev *dev);
/* Thread: any. The device lock, for registering memory with dev->pd
 * outside a channel's lifetime (regions): with it held, a dev whose pd is
 * not NULL stays usable. Do not take it inside rill__rdma_region_lkey's
 * lock. */
void rill__rdma_dev_lock(void);
void rill__rdma_dev_unlock(void);

/* Thread: any. lkey covering [p, p + len) for @dev: rill I/O memory (the
 * allocator hook) or an exposed region; false when none. */
bool rill__rdma_lkey(struct rdma_dev *dev, const void *p, size_t len, uint32_t *lkey);
/* Thread: any. The exposed-region half of rill__rdma_lkey (rdma_onesided.c). */
bool rill__rdma_region_lkey(struct rdma_dev *dev, const void *p, size_t len, uint32_t *lkey);
/* Thread: any, the device lock held. Deregister every region exposed on
 * @dev (removal): the regions stay, revoked, for their owners to free. */
void rill__rdma_regions_drop(struct rdma_dev *dev);

/* ---- connection-manager plumbing shared by channels and listeners ---- */

/* Thread: any. Make @fd non-blocking: 0 or -errno. */
int rill__rdma_nonblock(int fd);
/* Thread: any. A new non-blocking rdma_cm event channel in *out: 0 or
 * -errno (-ENODEV without rdma_cm). */
int rill__rdma_ec_open(struct rdma_event_channel **out);

/* A CM event copied out of librdmacm's, so the event can be acked at once
 * (an id cannot be destroyed or migrated while an event of it is unacked). */
struct rdma_ev {
    enum rdma_cm_event_type type;
    int status; /* < 0 or 0 */
    struct rdma_cm_id *id;
    uint8_t plen;
    uint8_t pdata[256];
};
/* Thread: the loop watching @ec. Take the next event: true and *out, or
 * false when none is waiting. */
bool rill__rdma_ev_take(struct rdma_event_channel *ec, struct rdma_ev *out);

/* Thread: any. @sa (as rdma_cm gives it) as an rdma:// address. */
void rill__rdma_addr_of(const struct sockaddr *sa, struct rill_addr *out);

struct rdma_ch;

/* Per loop and device: the CQ its channels share. */
struct rdma_cq {
    struct rdma_loop *rl;
    struct rdma_dev *dev;
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq;
    int cqe;             /* size */
    int used;            /* entries reserved by live queue pairs */
    struct rill_io io;   /* cc->fd */
    unsigned unacked;    /* events to ack before destroying the CQ */
    bool armed;          /* ibv_req_notify_cq done, waiting for an event */
    bool polling;        /* the poller is added */
    unsigned idle_polls; /* adaptive mode: empty polls in a row */
    struct rill__loop_poller poller;
    /* Completions of other queue pairs taken off while one channel closed
     * (rill__rdma_cq_take_own): acted on at the next poll, from a task. */
    struct ibv_wc *stash;
    unsigned nstash, capstash;
    bool stash_queued;
    struct rill_task stash_task;
    struct rdma_cq *next;     /* the loop's CQs */
    struct rdma_cq *dev_next; /* the device's CQs (device lock) */
};

/* Per loop: the CQs and the qp_num -> channel table. */
struct rdma_loop {
    struct rill_loop *loop;
    struct rdma_cq *cqs;
    struct rdma_ch **qps; /* open addressing, key qpn; NULL empty, TOMB deleted */
    unsigned qcap, qlen, qtomb;
    struct rill_list dirty; /* channels with completions to act on */
    /* Destroys the CQs of removed devices once unused (never from inside a
     * poll). */
    struct rill_task reap_task;
    _Atomic bool reap_queued;
};

/* Thread: loop thread. The loop's RDMA state, created on first use. */
struct rdma_loop *rill__rdma_loop(struct rill_loop *loop);
/* Thread: loop thread. The loop's CQ for @dev, created on first use and
 * grown so that @entries more fit. 0 or -errno (-ENODEV: @dev is being
 * removed). */
int rill__rdma_cq_reserve(struct rdma_loop *rl, struct rdma_dev *dev, int entries,
                          struct rdma_cq **out);
/* Thread: loop thread. Give back what rill__rdma_cq_reserve took (the
 * queue pair is destroyed); the last user of a removed device's CQ lets
 * the loop destroy it. */
void rill__rdma_cq_unreserve(struct rdma_cq *cq, int entries);
/* Thread: loop thread. Poll @cq dry and act on what came (the CQ's event
 * or poller does this; a channel calls it when it must see every
 * completion so far, as at the peer's disconnect). Returns completions. */
int rill__rdma_cq_poll(struct rdma_cq *cq);
/* Thread: loop thread. Take @c's completions off @cq now (a closing
 * channel), keeping the others' for the next poll. */
void rill__rdma_cq_take_own(struct rdma_cq *cq, struct rdma_ch *c);

void rill__rdma_qp_add(struct rdma_loop *rl, struct rdma_ch *c);
void rill__rdma_qp_del(struct rdma_loop *rl, struct rdma_ch *c);
struct rdma_ch *rill__rdma_qp_find(struct rdma_loop *rl, uint32_t qpn);

/* ---- channels (rdma_channel.c) ---- */

/* A send work request in flight: what its completion finishes. */
struct rdma_swr {
    size_t bytes; /* outbound stream bytes it completes */
    void *bounce; /* copy buffer to free (rill_alloc), or NULL */
    size_t bounce_size;
    struct rill_promise *done; /* one-sided operation, or NULL */
    uint32_t kind;             /* IBV_WC_* expected, for errors */
};

/* Received and not yet delivered (auto-read off, or within a batch). */
struct rdma_in {
    struct rill_buf *buf; /* data, or NULL for an event */
    uint32_t slot;        /* receive slot to refill at delivery, or UINT32_MAX */
    uint32_t imm, len;    /* USER_IMM event */
    bool keep;            /* the slot kept its buffer: repost it, do not refill */
    bool fin;
};

struct rdma_op; /* queued one-sided operation (rdma_onesided.c) */

struct rdma_ch {
    struct rill_channel base; /* first: the core's part */
    struct rdma_event_channel *ec;
    struct rill_io ec_io;
    struct rdma_cm_id *id;
    struct rdma_dev *dev;
    struct rdma_loop *rl;
    struct rdma_cq *cq;
    struct ibv_qp *qp;
    uint32_t qpn, gen;
    int cq_entries;

    /* Parameters: ours and the peer's. */
    uint32_t depth, rsize;           /* our receive ring */
    uint32_t peer_depth, peer_rsize; /* the peer's */
    uint32_t sq_depth, max_sge, max_inline;
    size_t rndv_min;

    /* Receive ring: slot i holds the buffer posted there (NULL: empty). */
    struct rill_buf **rbuf;
    struct rdma_in *inq; /* ring of received, undelivered */
    uint32_t inq_cap, inq_head, inq_len;
    uint32_t to_return; /* receives reposted, not yet advertised */
    bool want_read;     /* deliver (auto-read, or one begin_read) */

    /* Sends. */
    int32_t credits; /* receives the peer has posted for us */
    struct rdma_swr *swr;
    uint64_t sq_posted, sq_done; /* work requests posted / completed */
    uint32_t unsignaled;
    size_t done_bytes; /* completed, to advance in the dirty pass */
    /* Our buffers offered by rendezvous, oldest first: the peer READs them
     * in order and answers each with RNDV_DONE. */
    struct {
        struct ibv_mr *mr;
        size_t bytes;
    } rndv_out[RNDV_MAX];
    uint32_t rndv_out_head, rndv_out_n;
    uint32_t rndv_out_max;      /* offers the peer queues (1, or RNDV_MAX) */
    uint32_t send_done_owed;    /* RNDV_DONEs to send */
    bool fin_pending, fin_sent; /* shutdown_output asked / done */
    /* The peer's offers: the one being READ, then the queued ones, each
     * holding the receive it came in until its data is delivered. */
    struct rill_buf *rndv_in; /* the buffer being READ into */
    uint32_t rndv_slot;
    struct {
        struct rill_rdma_desc desc;
        uint32_t slot;
    } rndv_q[RNDV_MAX];
    uint32_t rndv_q_head, rndv_q_n;
    struct rill_rdma_desc rndv_desc;
    uint64_t rndv_off;        /* bytes of it with a READ posted */
    uint32_t rndv_reads_left; /* READ work requests of it not done */

    struct rill_list ops; /* struct rdma_op waiting for send-queue room */

    /* State. */
    bool connecting, established, closed, peer_gone, input_done;
    bool dirty_linked, in_dispatch;
    bool is_child;
    int fail; /* a fatal completion error, acted on in the dirty pass */
    struct rill_list dirty;
    struct rill_task read_task; /* delivers for a read request (begin_read) */
    bool read_queued;
    struct rill_addr local, remote;
    struct rill_rdma_stats st;
};

static inline struct rdma_ch *rdma_ch(struct rill_channel *ch)
{
    return (struct rdma_ch *)ch;
}

extern const struct rill_transport_ops rill__rdma_ops;

/* Thread: any. A client channel on @loop, to be connected with
 * rill_channel_connect (rdma_cm resolves, connects, and the connect
 * promise completes at ESTABLISHED). 0 or -errno (-ENODEV without RDMA). */
int rill__rdma_channel_new(struct rill_loop *loop, struct rill_channel **out);

/* Thread: the server's loop. A child for the connect request on @id (its
 * event already acked; the id is moved to the child's own event channel
 * here) with the peer's @hello, on @loop. The queue pair is made and the
 * request accepted when the child registers on @loop. 0 or -errno (the
 * caller rejects the request then). */
int rill__rdma_child_new(struct rill_channel *server, struct rill_loop *loop, struct rdma_cm_id *id,
                         const struct rdma_hello *hello, struct rill_channel **out);

/* Thread: the channel's loop. Act on everything the completions of a poll
 * batch left: deliver, advance, send, return credits. */
void rill__rdma_ch_service(struct rdma_ch *c);
/* Thread: the channel's loop. One work completion of this channel. */
void rill__rdma_ch_completion(struct rdma_ch *c, const struct ibv_wc *wc);
/* Post what can be posted now: queued one-sided ops, stream data, control. */
void rill__rdma_ch_send(struct rdma_ch *c);

/* wr_id: generation (32) | recv flag (1) | index (31). */
#define WR_RECV             (1ull << 31)
#define WR_ID(c, recv, idx) (((uint64_t)(c)->gen << 32) | ((recv) ? WR_RECV : 0) | (uint64_t)(idx))

/* ---- one-sided (rdma_onesided.c) ---- */

/* Thread: the channel's loop. Post queued ops while the send queue has
 * room. */
void rill__rdma_ops_post(struct rdma_ch *c);
/* Thread: the channel's loop (close). Free every queued op; its promise
 * goes to v[k++] (the caller fails them later) or, when @v is NULL, is
 * released. Returns the new k. */
size_t rill__rdma_ops_take(struct rdma_ch *c, struct rill_promise **v, size_t k);
/* Queued ops (close sizes its array with it). */
size_t rill__rdma_ops_count(const struct rdma_ch *c);
/* Free slots in the send queue. */
static inline uint32_t rill__rdma_sq_room(const struct rdma_ch *c)
{
    return c->sq_depth - (uint32_t)(c->sq_posted - c->sq_done);
}
/* rdma_swr.kind of a rendezvous READ (not a user's operation). */
#define SWR_RNDV_READ 0x10000u
/* Thread: the channel's loop. Post one work request (signalled) into the
 * send ring with @done (may be NULL) to complete and @kind recorded. 0 or
 * -errno (the channel then fails). */
int rill__rdma_post_signaled(struct rdma_ch *c, struct ibv_send_wr *wr, struct rill_promise *done,
                             uint32_t kind);

/* ---- server (rdma_server.c) ---- */

/* Thread: any. A listening channel on @loop; listen at once with
 * rill__rdma_server_listen (errors and the real port known then). */
int rill__rdma_server_new(struct rill_loop *loop, struct rill_channel **out);
int rill__rdma_server_listen(struct rill_channel *server, const struct rill_addr *addr);
bool rill__rdma_is_server(const struct rill_channel *ch);
uint64_t rill__rdma_server_accepted(const struct rill_channel *server);

/* The socket address family of an rdma:// address (AF_INET, AF_INET6) or
 * -EAFNOSUPPORT. */
int rill__rdma_family(const struct rill_addr *addr);

#endif /* RILL_RDMA_INTERNAL_H */
