/* One-sided RDMA for users: exposed regions and READ / WRITE against a
 * peer's descriptor, with promises completed on the channel's loop.
 *
 * Operations are handed to the channel's loop (a task unless the caller is
 * there), queued on the channel while its send queue is full, and posted
 * signalled: their completion completes the promise. A WRITE with
 * immediate data consumes one of the peer's receives, so it also waits for
 * a credit. */
#include "transport/rdma/rdma_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"

/* ---- regions ---- */

struct rill_rdma_region {
    struct ibv_mr *mr; /* NULL once its device was removed */
    struct rdma_dev *dev;
    struct rill_rdma_desc desc;
    struct rill_rdma_region *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rill_rdma_region *regions;
static size_t nregions;

bool rill__rdma_region_lkey(struct rdma_dev *dev, const void *p, size_t len, uint32_t *lkey)
{
    bool found = false;
    pthread_mutex_lock(&reg_lock);
    for (struct rill_rdma_region *r = regions; r; r = r->next) {
        const char *b = (const char *)(uintptr_t)r->desc.addr;
        if (r->dev == dev && r->mr && (const char *)p >= b &&
            (const char *)p + len <= b + r->desc.len) {
            *lkey = r->mr->lkey;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return found;
}

void rill__rdma_regions_drop(struct rdma_dev *dev)
{
    pthread_mutex_lock(&reg_lock);
    for (struct rill_rdma_region *r = regions; r; r = r->next) {
        if (r->dev == dev && r->mr) {
            ibv_dereg_mr(r->mr);
            r->mr = NULL;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

int rill_rdma_expose(struct rill_channel *ch, void *addr, size_t len, unsigned access,
                     struct rill_rdma_region **out)
{
    if (!ch || !addr || !len || !out ||
        (access & ~(RILL_RDMA_REMOTE_READ | RILL_RDMA_REMOTE_WRITE)))
        return -EINVAL;
    if (!rill_channel_is_rdma(ch) || !rdma_ch(ch)->dev)
        return -ENOTSUP;
    struct rdma_dev *dev = rdma_ch(ch)->dev;
    int flags = IBV_ACCESS_LOCAL_WRITE;
    if (access & RILL_RDMA_REMOTE_READ)
        flags |= IBV_ACCESS_REMOTE_READ;
    if (access & RILL_RDMA_REMOTE_WRITE)
        flags |= IBV_ACCESS_REMOTE_WRITE;
    struct rill_rdma_region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    /* Under the device lock, so a removal releases this region too. */
    rill__rdma_dev_lock();
    int err = 0;
    if (!dev->pd || atomic_load(&dev->dead))
        err = -ENODEV;
    else if (!(r->mr = ibv_reg_mr(dev->pd, addr, len, flags)))
        err = errno ? -errno : -ENOMEM;
    if (!err) {
        r->dev = dev;
        r->desc = (struct rill_rdma_desc){ .addr = (uintptr_t)r->mr->addr,
                                           .len = r->mr->length,
                                           .rkey = r->mr->rkey };
        pthread_mutex_lock(&reg_lock);
        r->next = regions;
        regions = r;
        nregions++;
        pthread_mutex_unlock(&reg_lock);
    }
    rill__rdma_dev_unlock();
    if (err) {
        free(r);
        return err;
    }
    *out = r;
    return 0;
}

void rill_rdma_region_desc(const struct rill_rdma_region *r, struct rill_rdma_desc *out)
{
    *out = r->desc;
}

void rill_rdma_revoke(struct rill_rdma_region *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&reg_lock);
    for (struct rill_rdma_region **pp = &regions; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            nregions--;
            break;
        }
    }
    if (r->mr)
        ibv_dereg_mr(r->mr);
    pthread_mutex_unlock(&reg_lock);
    free(r);
}

size_t rill_rdma_region_count(void)
{
    pthread_mutex_lock(&reg_lock);
    size_t n = nregions;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

/* ---- operations ---- */

struct rdma_op {
    struct rill_list link;
    struct rill_channel *ch; /* a reference while handed to the loop */
    enum ibv_wr_opcode opcode;
    struct rill_rdma_desc remote;
    uint64_t roff;
    void *local;
    size_t len;
    uint32_t imm;
    struct rill_promise *p; /* a reference, or NULL */
};

static void op_finish(struct rdma_op *op, int err)
{
    if (op->p) {
        if (err)
            rill_promise_fail(op->p, err);
        else
            rill_promise_succeed(op->p, NULL, NULL);
        rill_promise_release(op->p);
    }
    free(op);
}

size_t rill__rdma_ops_count(const struct rdma_ch *c)
{
    size_t n = 0;
    struct rill_list *it;
    rill_list_foreach(it, &c->ops) n++;
    return n;
}

size_t rill__rdma_ops_take(struct rdma_ch *c, struct rill_promise **v, size_t k)
{
    struct rill_list *it;
    while ((it = rill_list_pop_front(&c->ops))) {
        struct rdma_op *op = (struct rdma_op *)it;
        if (op->p) {
            if (v)
                v[k++] = op->p;
            else
                rill_promise_release(op->p);
        }
        free(op);
    }
    return k;
}

void rill__rdma_ops_post(struct rdma_ch *c)
{
    struct rill_list *it;
    while ((it = c->ops.next) != &c->ops && rill__rdma_sq_room(c) > 0) {
        struct rdma_op *op = (struct rdma_op *)it;
        bool imm = op->opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
        if (imm && !(c->credits > 1 || (c->credits == 1 && c->to_return > 0)))
            return; /* waits for a credit */
        rill_list_remove(it);
        uint32_t lkey = 0;
        struct ibv_sge sge = { .addr = (uintptr_t)op->local, .length = (uint32_t)op->len };
        if (op->len && !rill__rdma_lkey(c->dev, op->local, op->len, &lkey)) {
            op_finish(op, -EINVAL);
            continue;
        }
        sge.lkey = lkey;
        struct ibv_send_wr wr = { .sg_list = &sge,
                                  .num_sge = op->len ? 1 : 0,
                                  .opcode = op->opcode };
        wr.wr.rdma.remote_addr = op->remote.addr + op->roff;
        wr.wr.rdma.rkey = op->remote.rkey;
        if (imm) {
            wr.imm_data = htonl(((uint32_t)RMSG_USER_IMM << 28) | op->imm);
            c->credits--;
        }
        if (op->opcode == IBV_WR_RDMA_READ)
            c->st.reads++;
        else
            c->st.writes++;
        struct rill_promise *p = op->p;
        op->p = NULL;
        if (rill__rdma_post_signaled(c, &wr, p, op->opcode) != 0) {
            op->p = p;
            op_finish(op, -EIO);
            return;
        }
        free(op);
    }
}

static void op_run(void *arg)
{
    struct rdma_op *op = arg;
    struct rill_channel *ch = op->ch;
    struct rdma_ch *c = rdma_ch(ch);
    op->ch = NULL;
    if (!rill_channel_is_active(ch) || c->closed || !c->qp) {
        op_finish(op, RILL_ECLOSED);
    } else {
        rill_list_push_back(&c->ops, &op->link);
        rill__rdma_ch_send(c);
    }
    rill_channel_release(ch);
}

static void submit(struct rill_channel *ch, enum ibv_wr_opcode opcode,
                   const struct rill_rdma_desc *remote, uint64_t roff, void *local, size_t len,
                   uint32_t imm, struct rill_promise *p)
{
    int err = 0;
    if (!ch || !remote || (!local && len))
        err = -EINVAL;
    else if (!rill_channel_is_rdma(ch))
        err = -ENOTSUP;
    else if (roff > remote->len || len > remote->len - roff || len > UINT32_MAX ||
             imm > RILL_RDMA_IMM_MAX)
        err = -EINVAL;
    struct rdma_op *op = err ? NULL : calloc(1, sizeof(*op));
    if (!err && !op)
        err = -ENOMEM;
    if (err) {
        if (p)
            rill_promise_fail(p, err);
        return;
    }
    rill_list_init(&op->link);
    op->opcode = opcode;
    op->remote = *remote;
    op->roff = roff;
    op->local = local;
    op->len = len;
    op->imm = imm;
    op->p = p ? rill_promise_retain(p) : NULL;
    op->ch = rill_channel_retain(ch);
    if (rill_loop_in_thread(ch->loop)) {
        op_run(op);
        return;
    }
    err = rill_loop_execute(ch->loop, op_run, op);
    if (err) {
        rill_channel_release(ch);
        op_finish(op, err);
    }
}

void rill_rdma_read(struct rill_channel *ch, const struct rill_rdma_desc *remote, uint64_t roff,
                    void *local, size_t len, struct rill_promise *p)
{
    submit(ch, IBV_WR_RDMA_READ, remote, roff, local, len, 0, p);
}

void rill_rdma_write(struct rill_channel *ch, const struct rill_rdma_desc *remote, uint64_t roff,
                     const void *local, size_t len, struct rill_promise *p)
{
    submit(ch, IBV_WR_RDMA_WRITE, remote, roff, (void *)local, len, 0, p);
}

void rill_rdma_write_imm(struct rill_channel *ch, const struct rill_rdma_desc *remote,
                         uint64_t roff, const void *local, size_t len, uint32_t imm,
                         struct rill_promise *p)
{
    submit(ch, IBV_WR_RDMA_WRITE_WITH_IMM, remote, roff, (void *)local, len, imm, p);
}
