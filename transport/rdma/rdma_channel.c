/* RDMA channels: one RC queue pair each, an in-order byte stream to the
 * pipeline (the wire protocol is in rdma_internal.h).
 *
 * Connection management: every channel has its own rdma_cm event channel
 * in its loop's epoll (an accepted child's id is moved to its own at once),
 * so every CM event of a channel is handled on the channel's loop.
 *
 * Receiving: a ring of recv_depth buffers from the rill allocator (all of
 * its memory is registered), each posted once. A DATA completion hands its
 * buffer to the pipeline as it is (no copy) and posts a fresh one in its
 * place when it is delivered; the pool's thread cache makes that the same
 * memory again once the handler released it. So receives never run dry
 * whatever the application holds, and a reader that stops reading (auto-read
 * off) stops the reposting, hence the credits, hence the sender.
 *
 * Sending: the flushed bytes are cut into SENDs of at most the peer's
 * receive size; each SGE points at the outbound buffer itself when it is
 * registered, else the pieces are copied into one registered buffer; small
 * sends go inline. Work requests are posted in chains with only the last
 * one signalled; a completion finishes every request before it, and the
 * outbound queue is advanced (promises completed, buffers released) only
 * then. A buffer of at least rndv_min bytes goes by rendezvous instead:
 * registered for remote read, offered in an RNDV message, READ by the peer,
 * released at the peer's RNDV_DONE. Up to RNDV_MAX offers are in flight
 * (a peer whose hello says it queues them); the peer READs them in order,
 * and stream bytes behind an offer wait until it is done. */
#include "transport/rdma/rdma_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "rill/alloc.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/msg.h"
#include "rill/pipeline.h"

#define CM_TIMEOUT_MS 5000
#define MAX_SGE       16
#define CHAIN_MAX     16
#define SQ_EXTRA      32 /* send-queue room beyond the credits: one-sided ops, control */

static _Atomic uint32_t next_gen = 1;

/* ---- creation ---- */

static int ch_alloc(struct rill_loop *loop, struct rill_channel *parent, struct rdma_ch **out)
{
    struct rdma_ch *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int err = rill__channel_init(&c->base, &rill__rdma_ops, loop, parent);
    if (err) {
        free(c);
        return err;
    }
    c->gen = atomic_fetch_add(&next_gen, 1);
    c->rndv_out_max = 1;
    rill_list_init(&c->dirty);
    rill_list_init(&c->ops);
    c->local.scheme = c->remote.scheme = RILL_ADDR_RDMA;
    c->base.local_addr = &c->local;
    c->base.remote_addr = &c->remote;
    *out = c;
    return 0;
}

int rill__rdma_channel_new(struct rill_loop *loop, struct rill_channel **out)
{
    int err = rill_rdma_available();
    if (err)
        return err;
    struct rdma_ch *c;
    err = ch_alloc(loop, NULL, &c);
    if (err)
        return err;
    err = rill__rdma_ec_open(&c->ec);
    if (!err && rdma_create_id(c->ec, &c->id, c, RDMA_PS_TCP) != 0)
        err = errno ? -errno : -ENOMEM;
    if (err) {
        rill_channel_release(&c->base); /* never registered: close + destroy */
        return err;
    }
    *out = &c->base;
    return 0;
}

static void set_addrs(struct rdma_ch *c)
{
    rill__rdma_addr_of(rdma_get_local_addr(c->id), &c->local);
    rill__rdma_addr_of(rdma_get_peer_addr(c->id), &c->remote);
}

int rill__rdma_child_new(struct rill_channel *server, struct rill_loop *loop, struct rdma_cm_id *id,
                         const struct rdma_hello *hello, struct rill_channel **out)
{
    struct rdma_ch *c;
    int err = ch_alloc(loop, server, &c);
    if (err)
        return err;
    c->is_child = true;
    c->peer_depth = hello->recv_depth;
    c->peer_rsize = hello->recv_size;
    c->rndv_out_max = hello->flags & RDMA_HELLO_RNDV_QUEUE ? RNDV_MAX : 1;
    err = rill__rdma_dev_get(id, &c->dev);
    if (!err)
        err = rill__rdma_ec_open(&c->ec);
    if (!err && rdma_migrate_id(id, c->ec) != 0)
        err = errno ? -errno : -EIO;
    if (err) {
        rill_channel_release(&c->base);
        return err;
    }
    id->context = c;
    c->id = id;
    set_addrs(c);
    rill__channel_mark_active(&c->base);
    *out = &c->base;
    return 0;
}

/* ---- receive ring ---- */

static int post_recv_buf(struct rdma_ch *c, uint32_t slot, struct rill_buf *b)
{
    size_t len;
    uint8_t *p = rill_buf_write_ptr(b, c->rsize, &len);
    uint32_t lkey;
    if (!p || !rill__rdma_lkey(c->dev, p, c->rsize, &lkey)) {
        rill_buf_release(b);
        return -EFAULT;
    }
    struct ibv_sge sge = { .addr = (uintptr_t)p, .length = c->rsize, .lkey = lkey };
    struct ibv_recv_wr wr = { .wr_id = WR_ID(c, 1, slot), .sg_list = &sge, .num_sge = 1 };
    struct ibv_recv_wr *bad;
    int err = ibv_post_recv(c->qp, &wr, &bad);
    if (err) {
        rill_buf_release(b);
        return -err;
    }
    c->rbuf[slot] = b;
    return 0;
}

/* A fresh buffer in @slot (the old one went to the pipeline). */
static int refill(struct rdma_ch *c, uint32_t slot)
{
    struct rill_buf *b;
    if (rill_buf_alloc(c->rsize, &b) != 0)
        return -ENOMEM;
    return post_recv_buf(c, slot, b);
}

/* Post the buffer still in @slot again (its content was consumed here). */
static int repost(struct rdma_ch *c, uint32_t slot)
{
    struct rill_buf *b = c->rbuf[slot];
    c->rbuf[slot] = NULL;
    rill_buf_clear(b);
    return post_recv_buf(c, slot, b);
}

static void fail(struct rdma_ch *c, int err)
{
    if (!c->fail)
        c->fail = err;
}

/* ---- queue pair ---- */

static int qp_setup(struct rdma_ch *c)
{
    struct rill_channel *ch = &c->base;
    int err;
    c->rl = rill__rdma_loop(ch->loop);
    if (!c->rl)
        return -ENOMEM;
    struct ibv_device_attr *da = &c->dev->attr;
    c->depth = (uint32_t)rill__channel_opt(ch, RILL_OPT_RDMA_RECV_DEPTH);
    if (c->depth > (uint32_t)da->max_qp_wr)
        c->depth = (uint32_t)da->max_qp_wr;
    c->rsize = (uint32_t)rill__channel_opt(ch, RILL_OPT_RDMA_RECV_SIZE);
    c->rndv_min = (size_t)rill__channel_opt(ch, RILL_OPT_RDMA_RNDV);
    uint32_t want_sq = (c->depth > 64 ? c->depth : 64) + SQ_EXTRA;
    if (c->peer_depth && c->peer_depth + SQ_EXTRA > want_sq)
        want_sq = c->peer_depth + SQ_EXTRA;
    c->sq_depth = want_sq < (uint32_t)da->max_qp_wr ? want_sq : (uint32_t)da->max_qp_wr;
    c->max_sge = da->max_sge < MAX_SGE ? (uint32_t)da->max_sge : MAX_SGE;
    c->cq_entries = (int)(c->depth + c->sq_depth);
    err = rill__rdma_cq_reserve(c->rl, c->dev, c->cq_entries, &c->cq);
    if (err) {
        c->cq_entries = 0;
        return err;
    }
    struct ibv_qp_init_attr qa = {
        .send_cq = c->cq->cq,
        .recv_cq = c->cq->cq,
        .cap = { .max_send_wr = c->sq_depth,
                 .max_recv_wr = c->depth,
                 .max_send_sge = c->max_sge,
                 .max_recv_sge = 1,
                 .max_inline_data = (uint32_t)rill__channel_opt(ch, RILL_OPT_RDMA_INLINE) },
        .qp_type = IBV_QPT_RC,
        .sq_sig_all = 0,
    };
    if (rdma_create_qp(c->id, c->dev->pd, &qa) != 0) {
        qa.cap.max_inline_data = 0; /* a device without inline sends */
        if (rdma_create_qp(c->id, c->dev->pd, &qa) != 0)
            return errno ? -errno : -ENOMEM;
    }
    c->qp = c->id->qp;
    c->qpn = c->qp->qp_num;
    /* The provider may grant more inline room than asked: the option is the
     * limit the user set. */
    uint32_t want_inline = (uint32_t)rill__channel_opt(ch, RILL_OPT_RDMA_INLINE);
    c->max_inline = qa.cap.max_inline_data < want_inline ? qa.cap.max_inline_data : want_inline;
    rill__rdma_qp_add(c->rl, c);
    c->rbuf = calloc(c->depth, sizeof(*c->rbuf));
    c->inq_cap = c->depth + 4;
    c->inq = calloc(c->inq_cap, sizeof(*c->inq));
    c->swr = calloc(c->sq_depth, sizeof(*c->swr));
    if (!c->rbuf || !c->inq || !c->swr)
        return -ENOMEM;
    for (uint32_t i = 0; i < c->depth; i++) {
        err = refill(c, i);
        if (err)
            return err;
    }
    return 0;
}

static void conn_param(struct rdma_ch *c, struct rdma_conn_param *p, uint8_t *pd)
{
    struct rdma_hello h = { .magic = RDMA_MAGIC,
                            .version = RDMA_VERSION,
                            .flags = RDMA_HELLO_RNDV_QUEUE,
                            .recv_depth = c->depth,
                            .recv_size = c->rsize };
    rill__rdma_hello_encode(&h, pd);
    memset(p, 0, sizeof(*p));
    p->private_data = pd;
    p->private_data_len = RDMA_HELLO_SIZE;
    int rd = c->dev->attr.max_qp_rd_atom < 16 ? c->dev->attr.max_qp_rd_atom : 16;
    int init = c->dev->attr.max_qp_init_rd_atom < 16 ? c->dev->attr.max_qp_init_rd_atom : 16;
    p->responder_resources = (uint8_t)rd;
    p->initiator_depth = (uint8_t)init;
    p->retry_count = 7;
    p->rnr_retry_count = 7; /* credits keep receivers ready; this is a safety net */
}

static void established(struct rdma_ch *c)
{
    c->established = true;
    c->credits = (int32_t)c->peer_depth;
}

/* ---- transport operations ---- */

static void on_cm(struct rill_io *io, uint32_t events);

static int ch_do_register(struct rill_channel *ch)
{
    struct rdma_ch *c = rdma_ch(ch);
    rill_io_init(&c->ec_io, c->ec->fd, on_cm, c);
    int err = rill_io_start(ch->loop, &c->ec_io, EPOLLIN);
    if (err || !c->is_child)
        return err;
    /* A child: make the queue pair here, on its loop, and accept. */
    err = qp_setup(c);
    if (!err) {
        struct rdma_conn_param p;
        uint8_t pd[RDMA_HELLO_SIZE];
        conn_param(c, &p, pd);
        if (rdma_accept(c->id, &p) != 0)
            err = errno ? -errno : -EIO;
    }
    if (err) {
        RILL_WARN("rdma: cannot accept a connection: %s", rill_strerror(err));
        return err; /* the core closes the channel: ops->close rejects */
    }
    established(c);
    return 0;
}

static int ch_connect(struct rill_channel *ch, const struct rill_addr *remote,
                      const struct rill_addr *local)
{
    struct rdma_ch *c = rdma_ch(ch);
    if (remote->scheme != RILL_ADDR_RDMA && remote->scheme != RILL_ADDR_RDMA_TCP)
        return -EAFNOSUPPORT;
    c->remote = *remote;
    c->remote.scheme = RILL_ADDR_RDMA;
    c->connecting = true;
    if (rdma_resolve_addr(c->id, local ? (struct sockaddr *)&local->sa : NULL,
                          (struct sockaddr *)&remote->sa, CM_TIMEOUT_MS) != 0)
        return errno ? -errno : -EHOSTUNREACH;
    return -EINPROGRESS;
}

static void connect_failed(struct rdma_ch *c, int err, const char *why)
{
    char a[RILL_ADDR_STRLEN];
    rill_addr_format(&c->remote, a, sizeof(a));
    RILL_DEBUGF("rdma: connect to %s failed: %s (%s)", a, why, rill_strerror(err));
    c->connecting = false;
    rill__channel_connect_done(&c->base, err);
}

static void peer_disconnected(struct rdma_ch *c);

static void on_cm_event(struct rdma_ch *c, enum rdma_cm_event_type type, int status,
                        const void *pdata, uint8_t plen)
{
    struct rill_channel *ch = &c->base;
    uint8_t pd[RDMA_HELLO_SIZE];
    struct rdma_conn_param p;
    int err;
    switch (type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        /* The id is on a device now: hold it (removal waits for us). */
        err = c->dev ? 0 : rill__rdma_dev_get(c->id, &c->dev);
        if (err)
            connect_failed(c, err, "the RDMA device cannot be used");
        else if (rdma_resolve_route(c->id, CM_TIMEOUT_MS) != 0)
            connect_failed(c, -errno, "route resolution did not start");
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        err = qp_setup(c);
        if (err) {
            connect_failed(c, err, "cannot set up the queue pair");
            break;
        }
        conn_param(c, &p, pd);
        if (rdma_connect(c->id, &p) != 0)
            connect_failed(c, errno ? -errno : -EIO, "rdma_connect failed");
        break;
    case RDMA_CM_EVENT_ESTABLISHED:
        if (!c->connecting) {
            c->established = true; /* a child: running since the accept */
            break;
        }
        {
            struct rdma_hello h;
            const char *why = NULL;
            err = rill__rdma_hello_decode(pdata, plen, &h, &why);
            if (err) {
                connect_failed(c, err, why);
                break;
            }
            c->peer_depth = h.recv_depth;
            c->peer_rsize = h.recv_size;
            c->rndv_out_max = h.flags & RDMA_HELLO_RNDV_QUEUE ? RNDV_MAX : 1;
        }
        set_addrs(c);
        established(c);
        c->connecting = false;
        rill__channel_connect_done(ch, 0);
        break;
    case RDMA_CM_EVENT_REJECTED: {
        /* Copied out: private data has no alignment to rely on. */
        struct rdma_reject rj, *r = &rj;
        if (plen >= sizeof(rj))
            memcpy(&rj, pdata, sizeof(rj));
        if (plen >= sizeof(rj) && ntohl(r->magic) == RDMA_MAGIC) {
            char why[RDMA_REJECT_TEXT + 1];
            memcpy(why, r->why, RDMA_REJECT_TEXT);
            why[RDMA_REJECT_TEXT] = '\0';
            char a[RILL_ADDR_STRLEN];
            rill_addr_format(&c->remote, a, sizeof(a));
            RILL_WARN("rdma: %s rejected the connection: %s", a, why);
            err = (int32_t)ntohl((uint32_t)r->err);
            connect_failed(c, err < 0 ? err : -ECONNREFUSED, why);
        } else {
            connect_failed(c, -ECONNREFUSED, "rejected (no listener on that port?)");
        }
        break;
    }
    case RDMA_CM_EVENT_ADDR_ERROR:
        connect_failed(c, status ? status : -EHOSTUNREACH, "address resolution failed");
        break;
    case RDMA_CM_EVENT_ROUTE_ERROR:
        connect_failed(c, status ? status : -ENETUNREACH, "route resolution failed");
        break;
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_CONNECT_ERROR:
        if (c->connecting)
            connect_failed(c, -ECONNREFUSED, "peer unreachable");
        else
            rill__channel_close(ch, -ECONNRESET);
        break;
    case RDMA_CM_EVENT_DISCONNECTED:
        if (c->connecting)
            connect_failed(c, -ECONNRESET, "disconnected while connecting");
        else
            peer_disconnected(c);
        break;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        RILL_WARN("rdma: channel %" PRIu64 ": the RDMA device was removed", ch->id);
        if (c->dev)
            rill__rdma_dev_removed(c->dev);
        if (c->connecting)
            connect_failed(c, -ENODEV, "device removed");
        else
            rill__channel_close(ch, -ENODEV);
        break;
    default:
        break; /* TIMEWAIT_EXIT, ADDR_CHANGE ... */
    }
}

static void on_cm(struct rill_io *io, uint32_t events)
{
    (void)events;
    struct rdma_ch *c = io->data;
    struct rdma_ev ev;
    while (!c->closed && rill__rdma_ev_take(c->ec, &ev))
        on_cm_event(c, ev.type, ev.status, ev.plen ? ev.pdata : NULL, ev.plen);
}

/* The peer disconnected: what it sent before is in our CQ or queue; act
 * on it first, then the channel sees end of input and closes. */
static void peer_disconnected(struct rdma_ch *c)
{
    c->peer_gone = true;
    if (c->cq)
        rill__rdma_cq_poll(c->cq); /* what arrived before the disconnect first */
    rill__rdma_ch_service(c);
}

static void read_task(void *arg);

static void ch_begin_read(struct rill_channel *ch)
{
    struct rdma_ch *c = rdma_ch(ch);
    if (c->want_read)
        return;
    c->want_read = true;
    if (c->inq_len && !c->in_dispatch && !c->closed && !c->read_queued) {
        c->read_queued = true;
        rill_channel_retain(ch);
        rill_task_init(&c->read_task, read_task, c);
        if (rill_loop_post(ch->loop, &c->read_task) != 0) {
            c->read_queued = false;
            rill_channel_release(ch);
        }
    }
}

static void ch_stop_read(struct rill_channel *ch)
{
    rdma_ch(ch)->want_read = false;
}

static void ch_write(struct rill_channel *ch)
{
    rill__rdma_ch_send(rdma_ch(ch));
}

static int ch_shutdown_output(struct rill_channel *ch)
{
    struct rdma_ch *c = rdma_ch(ch);
    if (!c->established)
        return -ENOTCONN;
    c->fin_pending = true;
    rill__rdma_ch_send(c);
    return 0;
}

/* Sends the device finished before the close succeed, not fail with it. */
static void ch_drain(struct rill_channel *ch)
{
    struct rdma_ch *c = rdma_ch(ch);
    if (!c->qp || !c->cq)
        return;
    rill__rdma_cq_take_own(c->cq, c);
    if (c->done_bytes) {
        size_t n = c->done_bytes;
        c->done_bytes = 0;
        rill__outbound_advance(ch, n);
    }
}

static void fail_promises_task(void *arg)
{
    struct rill_promise **v = arg;
    for (size_t i = 0; v[i]; i++) {
        rill_promise_fail(v[i], RILL_ECLOSED);
        rill_promise_release(v[i]);
    }
    free(v);
}

static void ch_close(struct rill_channel *ch)
{
    struct rdma_ch *c = rdma_ch(ch);
    if (c->closed)
        return;
    c->closed = true;
    if (rill_io_active(&c->ec_io))
        rill_io_stop(&c->ec_io);
    if (c->dirty_linked) {
        rill_list_remove(&c->dirty);
        c->dirty_linked = false;
    }
    if (c->id && c->is_child && !c->qp)
        rdma_reject(c->id, NULL, 0); /* never accepted */
    if (c->qp) {
        rdma_disconnect(c->id);
        rill__rdma_qp_del(c->rl, c);
        rdma_destroy_qp(c->id); /* the device no longer touches our buffers */
        c->qp = NULL;
    }
    if (c->cq_entries) {
        rill__rdma_cq_unreserve(c->cq, c->cq_entries);
        c->cq_entries = 0;
    }
    for (uint32_t i = 0; c->rbuf && i < c->depth; i++)
        if (c->rbuf[i])
            rill_buf_release(c->rbuf[i]);
    for (uint32_t n = 0; n < c->inq_len; n++) {
        struct rdma_in *e = &c->inq[(c->inq_head + n) % c->inq_cap];
        if (e->buf)
            rill_buf_release(e->buf);
    }
    c->inq_len = 0;
    if (c->rndv_in) {
        rill_buf_release(c->rndv_in);
        c->rndv_in = NULL;
    }
    for (; c->rndv_out_n; c->rndv_out_n--, c->rndv_out_head = (c->rndv_out_head + 1) % RNDV_MAX)
        ibv_dereg_mr(c->rndv_out[c->rndv_out_head].mr);
    /* Promises of one-sided operations fail from a task: their listeners
     * must not run inside the core's close. */
    size_t np = rill__rdma_ops_count(c);
    for (uint64_t s = c->sq_done; c->swr && s < c->sq_posted; s++)
        np += c->swr[s % c->sq_depth].done != NULL;
    struct rill_promise **v = np ? calloc(np + 1, sizeof(*v)) : NULL;
    size_t k = 0;
    for (uint64_t s = c->sq_done; c->swr && s < c->sq_posted; s++) {
        struct rdma_swr *e = &c->swr[s % c->sq_depth];
        if (e->bounce)
            rill_free(e->bounce, e->bounce_size);
        if (e->done) {
            if (v)
                v[k++] = e->done;
            else
                rill_promise_release(e->done);
        }
        memset(e, 0, sizeof(*e));
    }
    c->sq_done = c->sq_posted;
    k = rill__rdma_ops_take(c, v, k);
    if (v && rill_loop_execute(ch->loop, fail_promises_task, v) != 0)
        fail_promises_task(v);
    if (c->id) {
        rdma_destroy_id(c->id);
        c->id = NULL;
    }
    if (c->ec) {
        rdma_destroy_event_channel(c->ec);
        c->ec = NULL;
    }
    if (c->dev)
        rill__rdma_dev_put(c->dev); /* c->dev stays readable: never freed */
}

static void ch_destroy(struct rill_channel *ch)
{
    struct rdma_ch *c = rdma_ch(ch);
    free(c->rbuf);
    free(c->inq);
    free(c->swr);
    free(c);
}

static int ch_set_option(struct rill_channel *ch, enum rill_option opt, int64_t value)
{
    (void)value;
    struct rdma_ch *c = rdma_ch(ch);
    switch (opt) {
    case RILL_OPT_RDMA_RECV_DEPTH:
    case RILL_OPT_RDMA_RECV_SIZE:
    case RILL_OPT_RDMA_INLINE:
        return c->qp ? -EBUSY : 0; /* fixed with the queue pair */
    case RILL_OPT_RDMA_RNDV:
        c->rndv_min = (size_t)value;
        return 0;
    default:
        return 0; /* socket options mean nothing here */
    }
}

const struct rill_transport_ops rill__rdma_ops = {
    .name = "rdma",
    .do_register = ch_do_register,
    .connect = ch_connect,
    .begin_read = ch_begin_read,
    .stop_read = ch_stop_read,
    .write = ch_write,
    .shutdown_output = ch_shutdown_output,
    .drain = ch_drain,
    .close = ch_close,
    .destroy = ch_destroy,
    .set_option = ch_set_option,
};

bool rill_channel_is_rdma(const struct rill_channel *ch)
{
    return ch && ch->ops == &rill__rdma_ops;
}

void rill_rdma_channel_stats(const struct rill_channel *ch, struct rill_rdma_stats *out)
{
    if (rill_channel_is_rdma(ch))
        *out = ((const struct rdma_ch *)ch)->st;
    else
        memset(out, 0, sizeof(*out));
}

/* ---- completions ---- */

static int wc_error(enum ibv_wc_status s)
{
    switch (s) {
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
    case IBV_WC_REM_ABORT_ERR:
        return -ECONNRESET;
    case IBV_WC_REM_ACCESS_ERR:
    case IBV_WC_REM_INV_REQ_ERR:
    case IBV_WC_REM_OP_ERR:
        return -EREMOTEIO;
    case IBV_WC_LOC_PROT_ERR:
    case IBV_WC_LOC_ACCESS_ERR:
        return -EFAULT;
    case IBV_WC_LOC_LEN_ERR:
        return -EMSGSIZE;
    default:
        return -EIO;
    }
}

static bool inq_push(struct rdma_ch *c, struct rdma_in e)
{
    if (c->inq_len == c->inq_cap)
        return false;
    c->inq[(c->inq_head + c->inq_len) % c->inq_cap] = e;
    c->inq_len++;
    return true;
}

static void rndv_start(struct rdma_ch *c, const uint8_t *p, size_t len, uint32_t slot);
static void rndv_next(struct rdma_ch *c);

static void on_recv(struct rdma_ch *c, const struct ibv_wc *wc, uint32_t slot)
{
    struct rill_buf *b = slot < c->depth ? c->rbuf[slot] : NULL;
    if (!b) {
        fail(c, -EPROTO);
        return;
    }
    c->st.recvs++;
    if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        uint32_t imm = ntohl(wc->imm_data);
        if (IMM_TYPE(imm) != RMSG_USER_IMM) {
            fail(c, -EPROTO);
            return;
        }
        /* The buffer stays posted in its slot; reposted at delivery. */
        if (!inq_push(c, (struct rdma_in){
                             .slot = slot, .imm = imm & RILL_RDMA_IMM_MAX, .len = wc->byte_len }))
            fail(c, -EPROTO);
        return;
    }
    uint32_t imm = (wc->wc_flags & IBV_WC_WITH_IMM) ? ntohl(wc->imm_data) : 0;
    c->credits += (int32_t)IMM_CREDITS(imm);
    int err = 0;
    switch (IMM_TYPE(imm)) {
    case RMSG_DATA:
        if (wc->byte_len == 0) {
            err = repost(c, slot);
            c->to_return++;
            break;
        }
        rill_buf_advance_writer(b, wc->byte_len);
        c->rbuf[slot] = NULL;
        if (!inq_push(c, (struct rdma_in){ .buf = b, .slot = slot }))
            err = -EPROTO;
        break;
    case RMSG_CREDIT:
        err = repost(c, slot);
        c->to_return++;
        break;
    case RMSG_RNDV: {
        size_t len;
        const uint8_t *p = rill_buf_write_ptr(b, 0, &len);
        (void)len;
        /* The offer's receive is held until its data is delivered, as a
         * DATA message's is: credits then hold back a sender of large
         * writes to a slow reader too. */
        rndv_start(c, p, wc->byte_len, slot);
        break;
    }
    case RMSG_RNDV_DONE:
        if (!c->rndv_out_n) {
            err = -EPROTO;
            break;
        }
        ibv_dereg_mr(c->rndv_out[c->rndv_out_head].mr);
        c->done_bytes += c->rndv_out[c->rndv_out_head].bytes;
        c->rndv_out_head = (c->rndv_out_head + 1) % RNDV_MAX;
        c->rndv_out_n--;
        err = repost(c, slot);
        c->to_return++;
        break;
    case RMSG_FIN:
        err = repost(c, slot);
        c->to_return++;
        if (!err && !inq_push(c, (struct rdma_in){ .fin = true, .slot = UINT32_MAX }))
            err = -EPROTO;
        break;
    default:
        RILL_WARN("rdma: channel %" PRIu64 ": unknown message type %u from the peer", c->base.id,
                  IMM_TYPE(imm));
        err = -EPROTO;
    }
    if (err)
        fail(c, err);
}

/* The send-queue entries up to @seq (inclusive) are complete. */
static void sends_done(struct rdma_ch *c, uint64_t seq, int err)
{
    while (c->sq_done <= seq && c->sq_done < c->sq_posted) {
        struct rdma_swr *e = &c->swr[c->sq_done % c->sq_depth];
        c->done_bytes += e->bytes;
        if (e->bounce)
            rill_free(e->bounce, e->bounce_size);
        struct rill_promise *p = e->done;
        bool rndv_read = e->kind == SWR_RNDV_READ;
        memset(e, 0, sizeof(*e));
        c->sq_done++;
        if (p) {
            /* One-sided operation: its listeners run here, on the loop,
             * after the queue bookkeeping. */
            if (err && c->sq_done == seq + 1)
                rill_promise_fail(p, err);
            else
                rill_promise_succeed(p, NULL, NULL);
            rill_promise_release(p);
        }
        if (rndv_read && !err && c->rndv_in && --c->rndv_reads_left == 0) {
            struct rill_buf *b = c->rndv_in;
            c->rndv_in = NULL;
            if (!inq_push(c, (struct rdma_in){ .buf = b, .slot = c->rndv_slot, .keep = true })) {
                rill_buf_release(b);
                fail(c, -EPROTO);
            }
            c->st.rndv_read++;
            c->send_done_owed++;
            rndv_next(c);
        }
    }
}

void rill__rdma_ch_completion(struct rdma_ch *c, const struct ibv_wc *wc)
{
    bool recv = (wc->wr_id & WR_RECV) != 0;
    uint32_t idx = (uint32_t)(wc->wr_id & (WR_RECV - 1));
    if (wc->status != IBV_WC_SUCCESS) {
        if (wc->status == IBV_WC_WR_FLUSH_ERR)
            return; /* follows the error that matters, or our own close */
        int err = wc_error(wc->status);
        RILL_WARN("rdma: channel %" PRIu64 ": %s work request failed: %s", c->base.id,
                  recv ? "receive" : "send", ibv_wc_status_str(wc->status));
        if (!recv) {
            uint64_t seq = c->sq_done + ((idx - (uint32_t)c->sq_done) & (WR_RECV - 1));
            sends_done(c, seq, err);
        }
        fail(c, err);
        return;
    }
    if (recv) {
        on_recv(c, wc, idx);
    } else {
        uint64_t seq = c->sq_done + ((idx - (uint32_t)c->sq_done) & (WR_RECV - 1));
        sends_done(c, seq, 0);
    }
}

/* ---- delivery ---- */

static void deliver(struct rdma_ch *c)
{
    struct rill_channel *ch = &c->base;
    if (!c->want_read || !c->inq_len || c->input_done)
        return;
    unsigned n = 0;
    bool fin = false;
    uint32_t batch = c->inq_len; /* what arrived before this batch began */
    while (batch-- && c->inq_len && rill_channel_is_open(ch)) {
        struct rdma_in e = c->inq[c->inq_head];
        c->inq_head = (c->inq_head + 1) % c->inq_cap;
        c->inq_len--;
        if (e.fin) {
            fin = true;
            break;
        }
        int err = 0;
        if (e.buf) {
            if (e.slot != UINT32_MAX) {
                err = e.keep ? repost(c, e.slot) : refill(c, e.slot);
                c->to_return++;
            }
            n++;
            rill__channel_fire_read(ch, rill_buf_msg(e.buf));
        } else {
            err = repost(c, e.slot);
            c->to_return++;
            struct rill_rdma_imm imm = { .imm = e.imm, .len = e.len };
            struct rill_event ev = { .type = RILL_EVENT_RDMA_IMM, .data = &imm };
            rill_pipeline_fire_user_event(rill_channel_pipeline(ch), &ev);
            n++;
        }
        if (err) {
            fail(c, err);
            break;
        }
    }
    if (!rill__channel_auto_read(ch))
        c->want_read = false; /* one batch per read request */
    if (n && rill_channel_is_open(ch))
        rill__channel_fire_read_complete(ch);
    if (fin && rill_channel_is_open(ch)) {
        c->input_done = true;
        rill__channel_input_shutdown(ch);
    }
}

static void read_task(void *arg)
{
    struct rdma_ch *c = arg;
    c->read_queued = false;
    if (!c->closed)
        rill__rdma_ch_service(c);
    rill_channel_release(&c->base);
}

void rill__rdma_ch_service(struct rdma_ch *c)
{
    struct rill_channel *ch = &c->base;
    if (c->closed || c->in_dispatch)
        return;
    c->in_dispatch = true;
    if (c->done_bytes) {
        size_t n = c->done_bytes;
        c->done_bytes = 0;
        rill__outbound_advance(ch, n);
    }
    /* RNDV_DONE and credits go out before the handlers run: one that closes
     * the channel on what it got must not strand the sender. */
    if (!c->closed && !c->fail && c->send_done_owed)
        rill__rdma_ch_send(c);
    if (!c->closed && !c->fail)
        deliver(c);
    if (!c->closed && !c->fail)
        rill__rdma_ch_send(c);
    c->in_dispatch = false;
    if (c->closed)
        return;
    if (c->fail) {
        rill__channel_close(ch, c->fail);
        return;
    }
    if (c->peer_gone && (c->inq_len == 0 || c->input_done)) {
        /* Everything the peer sent is delivered. A peer that went away
         * with our data still in flight (posted and not acknowledged, or
         * queued) did not close in order: a reset, as TCP's. Otherwise end
         * of input, and as the queue pair is gone both ways, a close. */
        bool lost =
            c->sq_posted != c->sq_done || c->rndv_out_n || rill__outbound_flushed_bytes(ch) > 0;
        if (lost) {
            rill__channel_close(ch, -ECONNRESET);
            return;
        }
        if (!c->input_done) {
            c->input_done = true;
            rill__channel_input_shutdown(ch);
        }
        if (!c->closed)
            rill__channel_close(ch, 0);
    }
}

/* ---- sending ---- */

/* May a message that consumes one of the peer's receives go now? The last
 * credit only goes with credits to return (so the peer can answer). */
static bool can_send(const struct rdma_ch *c)
{
    return rill__rdma_sq_room(c) > 0 && (c->credits > 1 || (c->credits == 1 && c->to_return > 0));
}

struct chain {
    struct ibv_send_wr wr[CHAIN_MAX];
    struct ibv_sge sge[CHAIN_MAX][MAX_SGE];
    int n;
};

/* Take the next send-queue slot for wr[n] of @k. */
static struct ibv_send_wr *chain_add(struct rdma_ch *c, struct chain *k, uint32_t type,
                                     uint32_t imm_low, size_t bytes, void *bounce,
                                     size_t bounce_size)
{
    struct ibv_send_wr *wr = &k->wr[k->n];
    uint64_t seq = c->sq_posted++;
    struct rdma_swr *e = &c->swr[seq % c->sq_depth];
    e->bytes = bytes;
    e->bounce = bounce;
    e->bounce_size = bounce_size;
    e->kind = IBV_WC_SEND;
    memset(wr, 0, sizeof(*wr));
    wr->wr_id = WR_ID(c, 0, seq & (WR_RECV - 1));
    wr->sg_list = k->sge[k->n];
    wr->opcode = IBV_WR_SEND_WITH_IMM;
    uint32_t ret = type == RMSG_USER_IMM ? 0 : (c->to_return > 0xffff ? 0xffff : c->to_return);
    c->to_return -= ret;
    wr->imm_data = htonl(IMM_MAKE(type, ret) | imm_low);
    c->credits--;
    c->st.sends++;
    k->n++;
    return wr;
}

static int chain_post(struct rdma_ch *c, struct chain *k)
{
    if (!k->n)
        return 0;
    for (int i = 0; i < k->n; i++)
        k->wr[i].next = i + 1 < k->n ? &k->wr[i + 1] : NULL;
    k->wr[k->n - 1].send_flags |= IBV_SEND_SIGNALED;
    struct ibv_send_wr *bad;
    int err = ibv_post_send(c->qp, k->wr, &bad);
    k->n = 0;
    if (err) {
        RILL_WARN("rdma: channel %" PRIu64 ": ibv_post_send failed: %s", c->base.id,
                  rill_strerror(-err));
        fail(c, -err);
        return -err;
    }
    return 0;
}

/* A control message without payload (CREDIT, RNDV_DONE, FIN). */
static void add_control(struct rdma_ch *c, struct chain *k, uint32_t type)
{
    struct ibv_send_wr *wr = chain_add(c, k, type, 0, 0, NULL, 0);
    wr->num_sge = 0;
    if (k->n == CHAIN_MAX)
        chain_post(c, k);
}

/* Offer the buffer at @iov by rendezvous. */
static int add_rndv(struct rdma_ch *c, struct chain *k, const struct iovec *iov)
{
    struct ibv_mr *mr = ibv_reg_mr(c->dev->pd, iov->iov_base, iov->iov_len,
                                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
    if (!mr)
        return errno ? -errno : -ENOMEM;
    void *bounce = rill_alloc(RILL_RDMA_DESC_SIZE, NULL);
    if (!bounce) {
        ibv_dereg_mr(mr);
        return -ENOMEM;
    }
    struct rill_rdma_desc d = { .addr = (uintptr_t)iov->iov_base,
                                .len = iov->iov_len,
                                .rkey = mr->rkey };
    rill_rdma_desc_encode(&d, bounce);
    uint32_t lkey = 0;
    rill__rdma_lkey(c->dev, bounce, RILL_RDMA_DESC_SIZE, &lkey);
    struct ibv_send_wr *wr = chain_add(c, k, RMSG_RNDV, 0, 0, bounce, RILL_RDMA_DESC_SIZE);
    wr->sg_list[0] =
        (struct ibv_sge){ .addr = (uintptr_t)bounce, .length = RILL_RDMA_DESC_SIZE, .lkey = lkey };
    wr->num_sge = 1;
    uint32_t at = (c->rndv_out_head + c->rndv_out_n++) % RNDV_MAX;
    c->rndv_out[at].mr = mr;
    c->rndv_out[at].bytes = iov->iov_len;
    c->st.rndv_sent++;
    rill__outbound_posted(&c->base, iov->iov_len);
    return 0;
}

/* One DATA message from the front of the unposted bytes. Returns the
 * bytes it took (0: nothing to send or a rendezvous went instead). */
static size_t add_data(struct rdma_ch *c, struct chain *k, int *err)
{
    struct iovec iov[MAX_SGE];
    size_t avail;
    int n = rill__outbound_iov_unposted(&c->base, iov, (int)c->max_sge, &avail);
    if (n <= 0 || avail == 0)
        return 0;
    bool rndv = c->rndv_min && iov[0].iov_len >= c->rndv_min;
    /* Behind an offer the peer has not read yet, only further offers may
     * go (the peer queues them and READs in order): bytes sent now would
     * overtake it. */
    if (c->rndv_out_n && (!rndv || c->rndv_out_n >= c->rndv_out_max))
        return 0;
    if (rndv) {
        *err = add_rndv(c, k, &iov[0]);
        return 0;
    }
    /* Up to the peer's receive size, stopping before a rendezvous buffer. */
    size_t total = 0;
    int nsge = 0;
    bool registered = true;
    uint32_t lkeys[MAX_SGE];
    for (int i = 0; i < n && total < c->peer_rsize; i++) {
        if (c->rndv_min && iov[i].iov_len >= c->rndv_min && i > 0)
            break;
        size_t take = iov[i].iov_len;
        if (take > c->peer_rsize - total)
            take = c->peer_rsize - total;
        iov[i].iov_len = take;
        total += take;
        nsge++;
    }
    /* Inline sends need no keys; others look them up once. */
    for (int i = 0; total > c->max_inline && i < nsge && registered; i++)
        registered = rill__rdma_lkey(c->dev, iov[i].iov_base, iov[i].iov_len, &lkeys[i]);
    struct ibv_send_wr *wr;
    if (total && total <= c->max_inline) {
        wr = chain_add(c, k, RMSG_DATA, 0, total, NULL, 0);
        for (int i = 0; i < nsge; i++)
            wr->sg_list[i] = (struct ibv_sge){ .addr = (uintptr_t)iov[i].iov_base,
                                               .length = (uint32_t)iov[i].iov_len };
        wr->num_sge = nsge;
        wr->send_flags = IBV_SEND_INLINE;
        c->st.sends_inline++;
    } else if (registered) {
        wr = chain_add(c, k, RMSG_DATA, 0, total, NULL, 0);
        for (int i = 0; i < nsge; i++)
            wr->sg_list[i] = (struct ibv_sge){ .addr = (uintptr_t)iov[i].iov_base,
                                               .length = (uint32_t)iov[i].iov_len,
                                               .lkey = lkeys[i] };
        wr->num_sge = nsge;
        c->st.sends_zero_copy++;
    } else {
        size_t bsize;
        uint8_t *bounce = rill_alloc(total, &bsize);
        uint32_t lkey;
        if (!bounce) {
            *err = -ENOMEM;
            return 0;
        }
        if (!rill__rdma_lkey(c->dev, bounce, total, &lkey)) {
            rill_free(bounce, bsize);
            *err = -EFAULT;
            return 0;
        }
        size_t off = 0;
        for (int i = 0; i < nsge; i++) {
            memcpy(bounce + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        wr = chain_add(c, k, RMSG_DATA, 0, total, bounce, bsize);
        wr->sg_list[0] =
            (struct ibv_sge){ .addr = (uintptr_t)bounce, .length = (uint32_t)total, .lkey = lkey };
        wr->num_sge = 1;
        c->st.bytes_copied += total;
    }
    rill__outbound_posted(&c->base, total);
    return total;
}

static void rndv_post_read(struct rdma_ch *c);

void rill__rdma_ch_send(struct rdma_ch *c)
{
    struct rill_channel *ch = &c->base;
    if (!c->established || c->closed || c->fail || !c->qp)
        return;
    uint32_t want = c->depth / 4 ? c->depth / 4 : 1;
    if (rill_list_empty(&c->ops) && !c->rndv_in && !c->send_done_owed && !c->fin_pending &&
        c->to_return < want && rill__outbound_unposted_bytes(ch) == 0) {
        rill__outbound_set_transport_full(ch, false);
        return; /* nothing to post (the common call after a completion) */
    }
    rill__rdma_ops_post(c);
    rndv_post_read(c);
    struct chain k;
    k.n = 0;
    int err = 0;
    while (c->send_done_owed && can_send(c)) {
        c->send_done_owed--;
        add_control(c, &k, RMSG_RNDV_DONE);
    }
    bool stalled = false;
    while (!err && !c->fin_sent && rill__outbound_unposted_bytes(ch) > 0) {
        if (!can_send(c)) {
            stalled = true;
            break;
        }
        uint32_t offers = c->rndv_out_n;
        if (add_data(c, &k, &err) == 0 && c->rndv_out_n == offers)
            break;
        if (k.n == CHAIN_MAX && chain_post(c, &k) != 0)
            return;
    }
    if (stalled && c->credits <= 1)
        c->st.credit_stalls++;
    if (!err && c->fin_pending && !c->fin_sent && !c->rndv_out_n &&
        rill__outbound_unposted_bytes(ch) == 0 && can_send(c)) {
        c->fin_sent = true;
        add_control(c, &k, RMSG_FIN);
    }
    /* Credits to give back and nothing to carry them: say so alone. */
    if (!err && c->to_return >= want && c->credits >= 1 && rill__rdma_sq_room(c) > 0) {
        c->st.credit_msgs++;
        add_control(c, &k, RMSG_CREDIT);
    }
    if (err) {
        fail(c, err);
        return;
    }
    if (chain_post(c, &k) != 0)
        return;
    rill__outbound_set_transport_full(ch, stalled);
}

/* ---- rendezvous, receiving side ---- */

/* Begin READing the offer @d (its receive in @slot). */
static void rndv_begin(struct rdma_ch *c, const struct rill_rdma_desc *d, uint32_t slot)
{
    struct rill_buf *b;
    if (rill_buf_alloc((size_t)d->len, &b) != 0) {
        fail(c, -ENOMEM);
        return;
    }
    c->rndv_in = b;
    c->rndv_slot = slot;
    c->rndv_reads_left = 0;
    c->rndv_desc = *d;
    c->rndv_off = 0;
}

static void rndv_start(struct rdma_ch *c, const uint8_t *p, size_t len, uint32_t slot)
{
    struct rill_rdma_desc d;
    if (rill_rdma_desc_decode(p, len, &d) != 0 || d.len == 0 || d.len > (uint64_t)1 << 40 ||
        c->rndv_q_n == RNDV_MAX) {
        RILL_WARN("rdma: channel %" PRIu64 ": bad rendezvous offer from the peer", c->base.id);
        fail(c, -EPROTO);
        return;
    }
    if (!c->rndv_in) {
        rndv_begin(c, &d, slot);
        return;
    }
    uint32_t at = (c->rndv_q_head + c->rndv_q_n++) % RNDV_MAX;
    c->st.rndv_queued++;
    c->rndv_q[at].desc = d;
    c->rndv_q[at].slot = slot;
}

/* The offer being READ is done: begin the next queued one. */
static void rndv_next(struct rdma_ch *c)
{
    if (!c->rndv_q_n)
        return;
    uint32_t at = c->rndv_q_head;
    c->rndv_q_head = (c->rndv_q_head + 1) % RNDV_MAX;
    c->rndv_q_n--;
    rndv_begin(c, &c->rndv_q[at].desc, c->rndv_q[at].slot);
}

/* Post the READs of the offered buffer while the send queue has room. */
static void rndv_post_read(struct rdma_ch *c)
{
    if (!c->rndv_in || c->rndv_off >= c->rndv_desc.len)
        return;
    size_t cap;
    uint8_t *base = rill_buf_write_ptr(c->rndv_in, 0, &cap);
    uint32_t lkey;
    if (!rill__rdma_lkey(c->dev, base, (size_t)c->rndv_desc.len, &lkey)) {
        fail(c, -EFAULT);
        return;
    }
    uint64_t piece = c->dev->max_msg ? c->dev->max_msg : (1u << 30);
    while (c->rndv_off < c->rndv_desc.len && rill__rdma_sq_room(c) > 0) {
        uint64_t n = c->rndv_desc.len - c->rndv_off;
        if (n > piece)
            n = piece;
        struct ibv_sge sge = { .addr = (uintptr_t)(base + c->rndv_off),
                               .length = (uint32_t)n,
                               .lkey = lkey };
        struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_READ };
        wr.wr.rdma.remote_addr = c->rndv_desc.addr + c->rndv_off;
        wr.wr.rdma.rkey = c->rndv_desc.rkey;
        c->rndv_off += n;
        if (c->rndv_off == c->rndv_desc.len)
            rill_buf_advance_writer(c->rndv_in, (size_t)c->rndv_desc.len);
        c->rndv_reads_left++;
        if (rill__rdma_post_signaled(c, &wr, NULL, SWR_RNDV_READ) != 0)
            return;
    }
}

int rill__rdma_post_signaled(struct rdma_ch *c, struct ibv_send_wr *wr, struct rill_promise *done,
                             uint32_t kind)
{
    uint64_t seq = c->sq_posted;
    struct rdma_swr *e = &c->swr[seq % c->sq_depth];
    memset(e, 0, sizeof(*e));
    e->done = done;
    e->kind = kind;
    wr->wr_id = WR_ID(c, 0, seq & (WR_RECV - 1));
    wr->send_flags |= IBV_SEND_SIGNALED;
    wr->next = NULL;
    struct ibv_send_wr *bad;
    int err = ibv_post_send(c->qp, wr, &bad);
    if (err) {
        e->done = NULL;
        fail(c, -err);
        return -err;
    }
    c->sq_posted++;
    return 0;
}
