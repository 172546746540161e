/* RDMA devices and completion queues.
 *
 * One protection domain per device for the whole process: a pooled buffer
 * may be written on one loop and sent on another (a handler pool, a shard
 * hand-off), and memory registered with one PD cannot be used by queue
 * pairs of another. Every chunk of the rill allocator is registered with
 * it once, through the allocator's hook, so any pooled buffer is sendable
 * and receivable without a copy.
 *
 * Per loop and device: one CQ shared by the loop's channels, its
 * completion channel in the loop's epoll. Event mode: get the events, ack
 * them in batches, poll in batches of 32, re-arm, poll once more (a
 * completion that arrived between the last poll and the re-arm is not
 * lost). Busy-poll mode polls every loop iteration; adaptive polls while
 * completions keep coming and re-arms after a run of empty polls. */
#include "transport/rdma/rdma_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rill/alloc.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/log.h"

#define CQ_MIN            1024
#define POLL_BATCH        32
#define ACK_BATCH         64
#define ADAPTIVE_IDLE_MAX 256 /* empty polls before going back to events */
#define TOMB              ((struct rdma_ch *)1)

/* ---- hello ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void rill__rdma_hello_encode(const struct rdma_hello *h, uint8_t out[RDMA_HELLO_SIZE])
{
    put32(out, h->magic);
    out[4] = h->version;
    out[5] = h->flags;
    out[6] = out[7] = 0;
    put32(out + 8, h->recv_depth);
    put32(out + 12, h->recv_size);
}

int rill__rdma_hello_decode(const void *p, size_t len, struct rdma_hello *h, const char **why)
{
    const uint8_t *b = p;
    if (!p || len < RDMA_HELLO_SIZE) {
        *why = "no rill hello in the connect private data";
        return -EPROTO;
    }
    h->magic = get32(b);
    h->version = b[4];
    h->flags = b[5];
    h->recv_depth = get32(b + 8);
    h->recv_size = get32(b + 12);
    if (h->magic != RDMA_MAGIC) {
        *why = "bad magic in the connect private data (not a rill peer)";
        return -EPROTO;
    }
    if (h->version != RDMA_VERSION) {
        *why = "unsupported rill RDMA protocol version";
        return -EPROTO;
    }
    if (h->recv_depth < 2 || h->recv_depth > 65535) {
        *why = "receive depth out of range (2..65535)";
        return -EPROTO;
    }
    if (h->recv_size < 64 || h->recv_size > (1u << 30)) {
        *why = "receive size out of range (64 B..1 GiB)";
        return -EPROTO;
    }
    return 0;
}

/* ---- devices ---- */

static pthread_mutex_t dev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rdma_dev *devs;

void rill__rdma_dev_lock(void)
{
    pthread_mutex_lock(&dev_lock);
}

void rill__rdma_dev_unlock(void)
{
    pthread_mutex_unlock(&dev_lock);
}

/* A chunk the device cannot register (the device went away, the pinned
 * memory limit) still serves allocations: its buffers are not zero-copy on
 * that device (sends copy, receives fail), instead of every allocation in
 * the process failing. */
static int chunk_reg(void *arg, void *base, size_t len, void **handle)
{
    struct rdma_dev *d = arg;
    struct ibv_mr *mr = ibv_reg_mr(d->pd, base, len, IBV_ACCESS_LOCAL_WRITE);
    if (!mr) {
        static _Atomic bool warned;
        if (!atomic_exchange(&warned, true))
            RILL_WARN("rdma: cannot register %zu bytes of I/O memory with %s: %s", len,
                      ibv_get_device_name(d->verbs->device), rill_strerror(-errno));
    }
    *handle = mr;
    return 0;
}

static void chunk_dereg(void *arg, void *base, size_t len, void *handle)
{
    (void)arg, (void)base, (void)len;
    if (handle)
        ibv_dereg_mr(handle);
}

/* A detached thread running fn(arg): 0 or -errno. */
static int spawn_detached(void *(*fn)(void *), void *arg)
{
    pthread_attr_t at;
    pthread_t t;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &at, fn, arg);
    pthread_attr_destroy(&at);
    return -err;
}

/* ---- the anchor: an id of rill's own on each device, and its watcher ---- */

static struct rdma_event_channel *watch_ec; /* dev_lock */

static void *watch_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct rdma_cm_event *e;
        if (rdma_get_cm_event(watch_ec, &e) != 0) {
            if (errno == EINTR)
                continue;
            RILL_ERROR("rdma: the device watcher stops: %s", rill_strerror(-errno));
            return NULL;
        }
        enum rdma_cm_event_type type = e->event;
        struct rdma_dev *d = e->id->context;
        rdma_ack_cm_event(e); /* first: destroying the anchor waits for it */
        if (type == RDMA_CM_EVENT_DEVICE_REMOVAL) {
            RILL_WARN("rdma: device %s was removed", ibv_get_device_name(d->device));
            rill__rdma_dev_removed(d);
        }
    }
}

/* dev_lock held. Bound to @local (port 0) on @verbs, watched; NULL (and a
 * warning) when that cannot be done. */
static struct rdma_cm_id *anchor_new(struct rdma_dev *d, struct ibv_context *verbs,
                                     const struct sockaddr *local)
{
    const char *why = "no local address";
    struct rdma_cm_id *a = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (local && local->sa_family == AF_INET) {
        memcpy(&ss, local, sizeof(struct sockaddr_in));
        ((struct sockaddr_in *)&ss)->sin_port = 0;
    } else if (local && local->sa_family == AF_INET6) {
        memcpy(&ss, local, sizeof(struct sockaddr_in6));
        ((struct sockaddr_in6 *)&ss)->sin6_port = 0;
    } else {
        goto fail;
    }
    why = "no event channel";
    if (!watch_ec) {
        watch_ec = rdma_create_event_channel();
        if (!watch_ec)
            goto fail;
        if (spawn_detached(watch_main, NULL) != 0) {
            rdma_destroy_event_channel(watch_ec);
            watch_ec = NULL;
            why = "no thread";
            goto fail;
        }
    }
    why = "cannot bind an id to the device's address";
    if (rdma_create_id(watch_ec, &a, d, RDMA_PS_TCP) != 0) {
        a = NULL;
        goto fail;
    }
    if (rdma_bind_addr(a, (struct sockaddr *)&ss) != 0 || a->verbs != verbs)
        goto fail;
    return a;
fail:
    if (a)
        rdma_destroy_id(a);
    RILL_WARN("rdma: %s: %s; its removal is seen only while a channel is on it",
              ibv_get_device_name(verbs->device), why);
    return NULL;
}

/* dev_lock held. A new entry for @verbs: PD, allocator hook, anchor. */
static int dev_open(struct ibv_context *verbs, const struct sockaddr *local, struct rdma_dev **out)
{
    struct rdma_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->verbs = verbs;
    d->hook_slot = -1;
    int err = 0;
    if (ibv_query_device(verbs, &d->attr) != 0) {
        err = errno ? -errno : -EIO;
        goto fail;
    }
    struct ibv_port_attr pa;
    d->max_msg = ibv_query_port(verbs, 1, &pa) == 0 ? pa.max_msg_sz : (1u << 30);
    d->device = verbs->device;
    d->cmd_fd = verbs->cmd_fd;
    d->async_fd = verbs->async_fd;
    struct stat st;
    if (fstat(d->cmd_fd, &st) == 0)
        d->cmd_rdev = st.st_rdev;
    d->pd = ibv_alloc_pd(verbs);
    if (!d->pd) {
        err = errno ? -errno : -ENOMEM;
        goto fail;
    }
    struct rill_mem_hook hook = { .reg = chunk_reg, .dereg = chunk_dereg, .arg = d };
    err = rill_alloc_hook_add(&hook, &d->hook_slot);
    if (err) {
        RILL_ERROR("rdma: cannot register the buffer pool with %s: %s",
                   ibv_get_device_name(verbs->device), rill_strerror(err));
        ibv_dealloc_pd(d->pd);
        goto fail;
    }
    d->anchor = anchor_new(d, verbs, local);
    RILL_DEBUGF("rdma: device %s ready (max_sge %d, max_qp_wr %d, max_msg %u)",
                ibv_get_device_name(verbs->device), d->attr.max_sge, d->attr.max_qp_wr, d->max_msg);
    *out = d;
    return 0;
fail:
    free(d);
    return err;
}

int rill__rdma_dev_get(struct rdma_cm_id *id, struct rdma_dev **out)
{
    struct ibv_context *verbs = id->verbs;
    if (!verbs)
        return -ENODEV;
    pthread_mutex_lock(&dev_lock);
    struct rdma_dev *d;
    for (d = devs; d; d = d->next)
        if (d->verbs == verbs)
            break;
    int err = 0;
    if (d && atomic_load(&d->dead)) {
        err = -ENODEV; /* an id that has not seen the removal yet */
    } else if (!d) {
        err = dev_open(verbs, rdma_get_local_addr(id), &d);
        if (!err) {
            d->next = devs;
            devs = d;
        }
    }
    if (!err)
        d->refs++;
    pthread_mutex_unlock(&dev_lock);
    *out = err ? NULL : d;
    return err;
}

/* ---- removal ----
 *
 * The kernel finishes removing a device only when every user-space context
 * on it is closed, and the context is librdmacm's. librdmacm closes it only
 * when none of its ids uses the device and it has re-read the device list
 * (rdma_get_devices, which also opens every other device, so rill does not
 * call it), and with no device left at all it cannot re-read (rdma-core 44
 * gives up on an empty list). So once all of rill's objects on the device
 * are gone and the device has left the list, a short-lived thread destroys
 * the anchor and then points the context's two descriptors at /dev/null:
 * that drops the kernel's files, and the numbers stay valid for librdmacm
 * to close whenever it re-reads the list. The anchor keeps librdmacm from
 * closing the context before that (its count on the device stays above
 * zero), so the descriptors are still the context's when they are
 * replaced. */

#define RELEASE_POLL_NS (20 * RILL_NS_PER_MS)
#define RELEASE_TRIES   500 /* 10 s */

static _Atomic int64_t avail_until; /* rill_rdma_available's cache, ns */

static bool device_listed(struct ibv_device *dev)
{
    int n = 0;
    struct ibv_device **l = ibv_get_device_list(&n);
    bool listed = false;
    for (int i = 0; l && i < n; i++)
        listed |= l[i] == dev;
    if (l)
        ibv_free_device_list(l);
    return listed;
}

/* Whether @fd is still the context's event file (an anonymous inode: only
 * its name tells it from an epoll or an eventfd). */
static bool is_async_file(int fd)
{
    char path[64], name[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, name, sizeof(name) - 1);
    if (n <= 0)
        return false;
    name[n] = '\0';
    return strcmp(name, "anon_inode:[infinibandevent]") == 0;
}

static void context_release(struct rdma_dev *d)
{
    if (d->anchor)
        rdma_destroy_id(d->anchor);
    d->anchor = NULL;
    struct stat st;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return;
    if (fstat(d->cmd_fd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == d->cmd_rdev) {
        dup3(null, d->cmd_fd, O_CLOEXEC);
        if (is_async_file(d->async_fd))
            dup3(null, d->async_fd, O_CLOEXEC);
    }
    close(null);
}

static void *release_main(void *arg)
{
    struct rdma_dev *d = arg;
    const char *name = ibv_get_device_name(d->device);
    char dn[IBV_SYSFS_NAME_MAX];
    snprintf(dn, sizeof(dn), "%s", name ? name : "?");
    int tries = 0;
    struct timespec ts = { 0, RELEASE_POLL_NS };
    while (device_listed(d->device) && ++tries < RELEASE_TRIES)
        nanosleep(&ts, NULL);
    if (tries == RELEASE_TRIES) {
        RILL_WARN("rdma: %s is still listed %d s after its removal; its context stays open", dn,
                  RELEASE_TRIES * (int)(RELEASE_POLL_NS / RILL_NS_PER_MS) / 1000);
    } else {
        context_release(d);
        RILL_INFO("rdma: %s removed; its resources are released", dn);
    }
    pthread_mutex_lock(&dev_lock);
    d->verbs = NULL; /* a new context may get the same address */
    pthread_mutex_unlock(&dev_lock);
    return NULL;
}

/* dev_lock held. Release what we hold on a removed device once nothing
 * uses it, then give its context back. */
static void dev_maybe_release(struct rdma_dev *d)
{
    if (!atomic_load(&d->dead) || d->released || d->ncq || d->refs)
        return;
    d->released = true;
    if (d->hook_slot >= 0)
        rill_alloc_hook_remove(d->hook_slot);
    d->hook_slot = -1;
    rill__rdma_regions_drop(d);
    if (d->pd && ibv_dealloc_pd(d->pd) != 0)
        RILL_ERROR("rdma: cannot free the protection domain of a removed device: %s",
                   rill_strerror(-errno));
    d->pd = NULL;
    if (spawn_detached(release_main, d) != 0)
        RILL_ERROR("rdma: no thread to release a removed device's context");
}

static void reap_post(struct rdma_loop *rl);

void rill__rdma_dev_removed(struct rdma_dev *d)
{
    pthread_mutex_lock(&dev_lock);
    if (!atomic_exchange(&d->dead, true)) {
        atomic_store(&avail_until, 0);
        for (struct rdma_cq *q = d->cqs; q; q = q->dev_next)
            reap_post(q->rl);
    }
    dev_maybe_release(d);
    pthread_mutex_unlock(&dev_lock);
}

void rill__rdma_dev_put(struct rdma_dev *d)
{
    pthread_mutex_lock(&dev_lock);
    d->refs--;
    dev_maybe_release(d);
    pthread_mutex_unlock(&dev_lock);
}

bool rill__rdma_lkey(struct rdma_dev *dev, const void *p, size_t len, uint32_t *lkey)
{
    struct rill_mem_region r;
    if (rill_alloc_lookup(p, dev->hook_slot, &r) == 0 && r.handle &&
        (const char *)p + len <= (const char *)r.base + r.len) {
        *lkey = ((struct ibv_mr *)r.handle)->lkey;
        return true;
    }
    return rill__rdma_region_lkey(dev, p, len, lkey);
}

/* ---- connection-manager plumbing ---- */

int rill__rdma_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int rill__rdma_ec_open(struct rdma_event_channel **out)
{
    struct rdma_event_channel *ec = rdma_create_event_channel();
    if (!ec)
        return errno ? -errno : -ENODEV;
    int err = rill__rdma_nonblock(ec->fd);
    if (err) {
        rdma_destroy_event_channel(ec);
        return err;
    }
    *out = ec;
    return 0;
}

bool rill__rdma_ev_take(struct rdma_event_channel *ec, struct rdma_ev *out)
{
    struct rdma_cm_event *ev;
    if (rdma_get_cm_event(ec, &ev) != 0)
        return false;
    out->type = ev->event;
    out->status = ev->status < 0 ? ev->status : -ev->status;
    out->id = ev->id;
    out->plen = ev->param.conn.private_data ? ev->param.conn.private_data_len : 0;
    if (out->plen)
        memcpy(out->pdata, ev->param.conn.private_data, out->plen);
    rdma_ack_cm_event(ev);
    return true;
}

void rill__rdma_addr_of(const struct sockaddr *sa, struct rill_addr *out)
{
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (rill_addr_from_sockaddr(sa, len, out) == 0)
        out->scheme = RILL_ADDR_RDMA;
}

/* Asks libibverbs, which does not open the devices: a context librdmacm
 * opened would keep a device we never use from being removed. Kept for a
 * second (and dropped when a device is removed), so devices that come and
 * go are seen. */
static _Atomic int avail_result;

int rill_rdma_available(void)
{
    int64_t now = (int64_t)rill_clock_now_ns();
    if (now < atomic_load_explicit(&avail_until, memory_order_acquire))
        return atomic_load_explicit(&avail_result, memory_order_relaxed);
    int n = 0;
    struct ibv_device **l = ibv_get_device_list(&n);
    if (l)
        ibv_free_device_list(l);
    int r = l && n > 0 ? 0 : -ENODEV;
    atomic_store_explicit(&avail_result, r, memory_order_relaxed);
    atomic_store_explicit(&avail_until, now + (int64_t)RILL_NS_PER_S, memory_order_release);
    return r;
}

/* ---- the qp_num -> channel table ---- */

static unsigned qslot(uint32_t qpn, unsigned cap)
{
    return (qpn * 2654435761u) & (cap - 1);
}

static int qtable_grow(struct rdma_loop *rl)
{
    unsigned cap = rl->qcap ? rl->qcap * 2 : 64;
    if (rl->qlen * 4 < rl->qcap)
        cap = rl->qcap; /* mostly tombstones: rebuild in place */
    struct rdma_ch **t = calloc(cap, sizeof(*t));
    if (!t)
        return -ENOMEM;
    for (unsigned i = 0; i < rl->qcap; i++) {
        struct rdma_ch *c = rl->qps[i];
        if (!c || c == TOMB)
            continue;
        unsigned j = qslot(c->qpn, cap);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = c;
    }
    free(rl->qps);
    rl->qps = t;
    rl->qcap = cap;
    rl->qtomb = 0;
    return 0;
}

void rill__rdma_qp_add(struct rdma_loop *rl, struct rdma_ch *c)
{
    if ((rl->qlen + rl->qtomb + 1) * 2 > rl->qcap && qtable_grow(rl) != 0)
        RILL_PANIC("rdma: out of memory for the queue-pair table");
    unsigned j = qslot(c->qpn, rl->qcap);
    while (rl->qps[j] && rl->qps[j] != TOMB)
        j = (j + 1) & (rl->qcap - 1);
    if (rl->qps[j] == TOMB)
        rl->qtomb--;
    rl->qps[j] = c;
    rl->qlen++;
}

struct rdma_ch *rill__rdma_qp_find(struct rdma_loop *rl, uint32_t qpn)
{
    if (!rl->qcap)
        return NULL;
    for (unsigned j = qslot(qpn, rl->qcap);; j = (j + 1) & (rl->qcap - 1)) {
        struct rdma_ch *c = rl->qps[j];
        if (!c)
            return NULL;
        if (c != TOMB && c->qpn == qpn)
            return c;
    }
}

void rill__rdma_qp_del(struct rdma_loop *rl, struct rdma_ch *c)
{
    if (!rl->qcap)
        return;
    for (unsigned j = qslot(c->qpn, rl->qcap);; j = (j + 1) & (rl->qcap - 1)) {
        struct rdma_ch *e = rl->qps[j];
        if (!e)
            return;
        if (e == c) {
            rl->qps[j] = TOMB;
            rl->qlen--;
            rl->qtomb++;
            return;
        }
    }
}

/* ---- completion queues ---- */

static void dispatch(struct rdma_loop *rl, const struct ibv_wc *wc, int n)
{
    for (int i = 0; i < n; i++) {
        struct rdma_ch *c = rill__rdma_qp_find(rl, wc[i].qp_num);
        if (!c || (uint32_t)(wc[i].wr_id >> 32) != c->gen)
            continue; /* a queue pair closed meanwhile: its buffers are gone */
        rill__rdma_ch_completion(c, &wc[i]);
        if (!c->dirty_linked && !c->closed) {
            c->dirty_linked = true;
            rill_list_push_back(&rl->dirty, &c->dirty);
        }
    }
}

/* Poll @q dry, then act on every channel that got completions. */
int rill__rdma_cq_poll(struct rdma_cq *q)
{
    struct rdma_loop *rl = q->rl;
    struct ibv_wc wc[POLL_BATCH];
    int total = 0;
    if (q->nstash) {
        struct ibv_wc *v = q->stash;
        unsigned n = q->nstash;
        q->stash = NULL;
        q->nstash = q->capstash = 0;
        dispatch(rl, v, (int)n);
        free(v);
        total += (int)n;
    }
    for (;;) {
        int n = ibv_poll_cq(q->cq, POLL_BATCH, wc);
        if (n < 0) {
            RILL_ERROR("rdma: ibv_poll_cq failed: %d", n);
            break;
        }
        dispatch(rl, wc, n);
        total += n;
        if (n < POLL_BATCH)
            break;
    }
    struct rill_list *it;
    while ((it = rill_list_pop_front(&rl->dirty))) {
        struct rdma_ch *c = (struct rdma_ch *)((char *)it - offsetof(struct rdma_ch, dirty));
        c->dirty_linked = false;
        rill__rdma_ch_service(c);
    }
    return total;
}

static void stash_task(void *arg)
{
    struct rdma_cq *q = arg;
    q->stash_queued = false;
    rill__rdma_cq_poll(q);
}

void rill__rdma_cq_take_own(struct rdma_cq *q, struct rdma_ch *c)
{
    struct ibv_wc wc[POLL_BATCH];
    for (;;) {
        int n = ibv_poll_cq(q->cq, POLL_BATCH, wc);
        for (int i = 0; i < n; i++) {
            if (wc[i].qp_num == c->qpn && (uint32_t)(wc[i].wr_id >> 32) == c->gen) {
                rill__rdma_ch_completion(c, &wc[i]);
                continue;
            }
            if (q->nstash == q->capstash) {
                unsigned cap = q->capstash ? q->capstash * 2 : 64;
                struct ibv_wc *v = realloc(q->stash, cap * sizeof(*v));
                if (!v) {
                    RILL_ERROR("rdma: out of memory keeping completions: one is lost");
                    continue;
                }
                q->stash = v;
                q->capstash = cap;
            }
            q->stash[q->nstash++] = wc[i];
        }
        if (n < POLL_BATCH)
            break;
    }
    if (q->nstash && !q->stash_queued) {
        q->stash_queued = true;
        rill_task_init(&q->stash_task, stash_task, q);
        if (rill_loop_post(q->rl->loop, &q->stash_task) != 0)
            q->stash_queued = false;
    }
}

static void cq_arm(struct rdma_cq *q)
{
    if (ibv_req_notify_cq(q->cq, 0) != 0)
        RILL_ERROR("rdma: ibv_req_notify_cq failed: %s", rill_strerror(-errno));
    q->armed = true;
}

static int cq_poller(struct rill__loop_poller *p)
{
    struct rdma_cq *q = (struct rdma_cq *)((char *)p - offsetof(struct rdma_cq, poller));
    int n = rill__rdma_cq_poll(q);
    if (n > 0) {
        q->idle_polls = 0;
        return n;
    }
    if (rill_loop_busy_poll(q->rl->loop) == RILL_BUSY_POLL_ADAPTIVE &&
        ++q->idle_polls >= ADAPTIVE_IDLE_MAX) {
        q->idle_polls = 0;
        q->polling = false;
        rill__loop_remove_poller(&q->poller);
        cq_arm(q);
        return rill__rdma_cq_poll(q);
    }
    return 0;
}

static void cq_on_event(struct rill_io *io, uint32_t events)
{
    (void)events;
    struct rdma_cq *q = io->data;
    struct ibv_cq *ev_cq;
    void *ev_ctx;
    while (ibv_get_cq_event(q->cc, &ev_cq, &ev_ctx) == 0) {
        q->unacked++;
        q->armed = false;
    }
    if (q->unacked >= ACK_BATCH) {
        ibv_ack_cq_events(q->cq, q->unacked);
        q->unacked = 0;
    }
    if (q->polling)
        return; /* the poller runs this iteration anyway */
    if (rill_loop_busy_poll(q->rl->loop) == RILL_BUSY_POLL_ADAPTIVE) {
        q->polling = true;
        q->idle_polls = 0;
        rill__loop_add_poller(q->rl->loop, &q->poller);
        rill__rdma_cq_poll(q);
        return;
    }
    rill__rdma_cq_poll(q);
    cq_arm(q);
    rill__rdma_cq_poll(q);
}

static int cq_new(struct rdma_loop *rl, struct rdma_dev *dev, int cqe, struct rdma_cq **out)
{
    struct rdma_cq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->rl = rl;
    q->dev = dev;
    rill_list_init(&q->poller.link);
    q->poller.fn = cq_poller;
    int err = 0;
    q->cc = ibv_create_comp_channel(dev->verbs);
    if (!q->cc) {
        err = errno ? -errno : -ENOMEM;
        goto fail;
    }
    err = rill__rdma_nonblock(q->cc->fd);
    if (err)
        goto fail;
    if (cqe > dev->attr.max_cqe)
        cqe = dev->attr.max_cqe;
    q->cq = ibv_create_cq(dev->verbs, cqe, q, q->cc, 0);
    if (!q->cq) {
        err = errno ? -errno : -ENOMEM;
        goto fail;
    }
    q->cqe = q->cq->cqe;
    rill_io_init(&q->io, q->cc->fd, cq_on_event, q);
    err = rill_io_start(rl->loop, &q->io, EPOLLIN);
    if (err)
        goto fail;
    if (rill_loop_busy_poll(rl->loop) == RILL_BUSY_POLL_ON) {
        q->polling = true;
        rill__loop_add_poller(rl->loop, &q->poller);
    } else {
        cq_arm(q);
    }
    *out = q;
    return 0;
fail:
    if (q->cq)
        ibv_destroy_cq(q->cq);
    if (q->cc)
        ibv_destroy_comp_channel(q->cc);
    free(q);
    return err;
}

int rill__rdma_cq_reserve(struct rdma_loop *rl, struct rdma_dev *dev, int entries,
                          struct rdma_cq **out)
{
    if (atomic_load(&dev->dead))
        return -ENODEV;
    struct rdma_cq *q;
    for (q = rl->cqs; q; q = q->next)
        if (q->dev == dev)
            break;
    if (!q) {
        int cqe = entries > CQ_MIN ? entries * 2 : CQ_MIN;
        int err = cq_new(rl, dev, cqe, &q);
        if (err)
            return err;
        q->next = rl->cqs;
        rl->cqs = q;
        pthread_mutex_lock(&dev_lock);
        q->dev_next = dev->cqs;
        dev->cqs = q;
        dev->ncq++;
        if (atomic_load(&dev->dead))
            reap_post(rl); /* removed meanwhile: it goes once unused */
        pthread_mutex_unlock(&dev_lock);
    }
    if (q->used + entries > q->cqe) {
        int want = (q->used + entries) * 2;
        if (want > dev->attr.max_cqe)
            want = dev->attr.max_cqe;
        if (want < q->used + entries || ibv_resize_cq(q->cq, want) != 0) {
            RILL_WARN("rdma: the loop's completion queue cannot grow to %d entries",
                      q->used + entries);
            return -ENOSPC;
        }
        q->cqe = q->cq->cqe;
    }
    q->used += entries;
    *out = q;
    return 0;
}

void rill__rdma_cq_unreserve(struct rdma_cq *cq, int entries)
{
    cq->used -= entries;
    if (cq->used == 0 && atomic_load(&cq->dev->dead))
        reap_post(cq->rl);
}

/* Destroy @q (off its loop's list, its io stopped) and let its device go
 * when it was the last. */
static void cq_free(struct rdma_cq *q)
{
    if (q->unacked)
        ibv_ack_cq_events(q->cq, q->unacked);
    free(q->stash);
    ibv_destroy_cq(q->cq);
    ibv_destroy_comp_channel(q->cc);
    struct rdma_dev *d = q->dev;
    pthread_mutex_lock(&dev_lock);
    for (struct rdma_cq **pp = &d->cqs; *pp; pp = &(*pp)->dev_next) {
        if (*pp == q) {
            *pp = q->dev_next;
            d->ncq--;
            break;
        }
    }
    dev_maybe_release(d);
    pthread_mutex_unlock(&dev_lock);
    free(q);
}

/* Loop thread, from a task (never inside a poll of the CQ). */
static void reap_task(void *arg)
{
    struct rdma_loop *rl = arg;
    atomic_store(&rl->reap_queued, false);
    for (struct rdma_cq **pp = &rl->cqs; *pp;) {
        struct rdma_cq *q = *pp;
        if (q->used || !atomic_load(&q->dev->dead)) {
            pp = &q->next;
            continue;
        }
        if (q->stash_queued) { /* its task holds it: after that one */
            reap_post(rl);
            pp = &q->next;
            continue;
        }
        *pp = q->next;
        if (q->polling)
            rill__loop_remove_poller(&q->poller);
        rill_io_stop(&q->io);
        cq_free(q);
    }
}

/* Thread: any; the loop is alive (its CQ is on a device's list, or this is
 * its thread). */
static void reap_post(struct rdma_loop *rl)
{
    if (atomic_exchange(&rl->reap_queued, true))
        return;
    rill_task_init(&rl->reap_task, reap_task, rl);
    if (rill_loop_post(rl->loop, &rl->reap_task) != 0)
        atomic_store(&rl->reap_queued, false); /* terminated: loop_free reaps */
}

/* ---- per-loop state ---- */

static void loop_free(void *data)
{
    struct rdma_loop *rl = data;
    struct rdma_cq *q = rl->cqs;
    while (q) {
        struct rdma_cq *next = q->next;
        cq_free(q);
        q = next;
    }
    free(rl->qps);
    free(rl);
}

struct rdma_loop *rill__rdma_loop(struct rill_loop *loop)
{
    struct rdma_loop *rl = rill__loop_ext(loop, RILL__LOOP_EXT_RDMA);
    if (rl)
        return rl;
    rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->loop = loop;
    rill_list_init(&rl->dirty);
    rill__loop_set_ext(loop, RILL__LOOP_EXT_RDMA, rl, loop_free);
    return rl;
}
