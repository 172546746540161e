/* The RPC connection pool (rpc_pool.h): endpoints made on first use and
 * kept until the pool is freed (so a call may hold one without a
 * reference), slots of connections per endpoint, the heartbeat stage,
 * calls with retries, and the RCU-published set that balanced calls read.
 *
 * Locks: pool->lock guards the endpoint list and the set's writers;
 * ep->lock (recursive: a listener added to a completed promise runs at
 * once, possibly back into the endpoint) guards its slots and recovery.
 * Listeners are added after the lock is dropped wherever they may call
 * back into the pool. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <urcu.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/idle.h"
#include "rill/log.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rpc_status.h"
#include "rill/timer.h"
#include "rpc/pool_internal.h"
#include "rpc/rpc_internal.h"

#define MAX_CONNS    64
#define FREE_WAIT_NS (30 * RILL_NS_PER_S)

struct slot {
    struct rill_channel *ch;         /* connected (may have closed since) */
    struct rill_promise *connecting; /* connect under way */
};

struct rill__rpc_endpoint {
    struct rill__rpc_endpoint *next;
    struct rill_rpc_pool *pool;
    char uri[RILL_ADDR_STRLEN];
    struct rill_addr addr;
    pthread_mutex_t lock;
    struct slot slots[MAX_CONNS];
    unsigned rr;
    _Atomic bool up;
    _Atomic bool in_set;
    _Atomic uint64_t in_flight, calls;
    /* Recovery (ep->lock). */
    bool recovering;
    uint64_t backoff_ns;
    struct rill_timer *timer;
};

struct epset {
    size_t n;
    struct rill__rpc_endpoint *v[];
};

struct rill_rpc_pool {
    struct rill_rpc_pool_opts o;
    struct rill_rpc_codec_opts codec;
    struct rill_rpc_client_opts client;
    pthread_mutex_t lock;
    struct rill__rpc_endpoint *eps;
    struct epset *set; /* RCU */
    int rcu_sync;      /* TSan: orders readers before reclamation */
    _Atomic uint64_t seq;
    _Atomic bool closing;
    _Atomic long pending;    /* connects, recovery timers */
    _Atomic long calls_live; /* pool calls not yet ended */
    _Atomic long live_conns; /* pipelines with the heartbeat stage */
    struct {
        _Atomic uint64_t connects, connect_failures, closes, heartbeat_closes, pings_sent, pongs,
            attempts, retries, marked_down, marked_up;
    } st;
};

struct rill_rpc_pool_call {
    _Atomic int refs;
    struct rill_rpc_pool *pool;
    struct rill__rpc_endpoint *target; /* fixed endpoint, or NULL: balanced */
    struct rill__rpc_endpoint *cur_ep; /* the attempt's (counted in its in_flight) */
    struct rill__rpc_endpoint *last_ep;
    char *service, *method;
    struct rill_buf *req; /* kept for retries: each attempt sends a slice */
    struct rill_rpc_call_opts opts;
    struct rill_rpc_md *md; /* deep copy of opts.md */
    uint64_t deadline;      /* rill_clock_now_ns() based; 0: none */
    int attempts;
    struct rill_rpc_call *cur;
    struct rill_promise *done;
    /* Outcome, written once before done completes. */
    int status;
    char msg[224];
    struct rill_buf *resp;
    char endpoint[RILL_ADDR_STRLEN];
};

static void start_recovery(struct rill__rpc_endpoint *ep);

void rill_rpc_pool_opts_init(struct rill_rpc_pool_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->conns_per_endpoint = 1;
    o->lb = RILL_RPC_LB_ROUND_ROBIN;
    o->connect_timeout_ns = 5 * RILL_NS_PER_S;
    o->ping_idle_ns = 30 * RILL_NS_PER_S;
    o->max_missed_pongs = 3;
    o->max_attempts = 3;
    o->backoff_initial_ns = 50 * RILL_NS_PER_MS;
    o->backoff_max_ns = 2 * RILL_NS_PER_S;
    o->reconnect_initial_ns = 100 * RILL_NS_PER_MS;
    o->reconnect_max_ns = 5 * RILL_NS_PER_S;
}

static uint64_t rnd64(void)
{
    static _Thread_local uint64_t s;
    if (!s)
        s = rill_clock_now_ns() ^ (uint64_t)(uintptr_t)&s ^ 0x9e3779b97f4a7c15ull;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

/* ---- the heartbeat stage (one per pooled connection) ---- */

struct hb {
    int missed;
    uint64_t seq;
};

static int hb_added(struct rill_ctx *ctx)
{
    struct rill__rpc_endpoint *ep = rill_ctx_arg(ctx);
    atomic_fetch_add(&ep->pool->live_conns, 1);
    return 0;
}

static void hb_removed(struct rill_ctx *ctx)
{
    struct rill__rpc_endpoint *ep = rill_ctx_arg(ctx);
    atomic_fetch_sub(&ep->pool->live_conns, 1);
}

static void mark_up(struct rill__rpc_endpoint *ep)
{
    if (!atomic_exchange(&ep->up, true))
        atomic_fetch_add(&ep->pool->st.marked_up, 1);
}

static void mark_down(struct rill__rpc_endpoint *ep)
{
    if (atomic_exchange(&ep->up, false))
        atomic_fetch_add(&ep->pool->st.marked_down, 1);
    if (atomic_load(&ep->in_set) && !atomic_load(&ep->pool->closing))
        start_recovery(ep);
}

static void hb_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct rill__rpc_endpoint *ep = rill_ctx_arg(ctx);
    struct rill_rpc_pool *p = ep->pool;
    struct hb *h = rill_ctx_state(ctx);
    if (ev->type == RILL_EVENT_IDLE_READER && p->o.ping_idle_ns) {
        const struct rill_idle_event *ie = ev->data;
        if (ie->first)
            h->missed = 0;
        if (h->missed >= p->o.max_missed_pongs) {
            RILL_WARN("rpc pool: %s missed %d pongs, closing the connection", ep->uri, h->missed);
            atomic_fetch_add(&p->st.heartbeat_closes, 1);
            rill_channel_close_with(rill_ctx_channel(ctx), RILL_EUNAVAILABLE, NULL);
            return;
        }
        struct rill_rpc_frame *ping;
        if (rill_rpc_frame_new(RILL_RPC_PING, ++h->seq, &ping) == 0) {
            h->missed++;
            atomic_fetch_add(&p->st.pings_sent, 1);
            rill_ctx_write_and_flush(ctx, &ping->msg, NULL);
        }
    }
    rill_ctx_fire_user_event(ctx, ev);
}

static void hb_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill__rpc_endpoint *ep = rill_ctx_arg(ctx);
    struct rill_rpc_frame *f = rill_rpc_frame_from_msg(msg);
    if (f && f->type == RILL_RPC_PONG) {
        struct hb *h = rill_ctx_state(ctx);
        h->missed = 0;
        atomic_fetch_add(&ep->pool->st.pongs, 1);
        rill_rpc_frame_release(f);
        return;
    }
    rill_ctx_fire_read(ctx, msg);
}

static void hb_inactive(struct rill_ctx *ctx)
{
    struct rill__rpc_endpoint *ep = rill_ctx_arg(ctx);
    atomic_fetch_add(&ep->pool->st.closes, 1);
    if (!atomic_load(&ep->pool->closing))
        mark_down(ep);
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler hb_handler = {
    .name = "rpc-heartbeat",
    .ctx_size = sizeof(struct hb),
    .added = hb_added,
    .removed = hb_removed,
    .user_event = hb_user_event,
    .read = hb_read,
    .inactive = hb_inactive,
};

/* Installs a pooled connection's pipeline: [idle] codec client heartbeat. */
static int conn_init(struct rill_channel *ch, void *arg)
{
    struct rill__rpc_endpoint *ep = arg;
    struct rill_rpc_pool *p = ep->pool;
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    int rc;
    if (p->o.ping_idle_ns) {
        struct rill_idle_config ic = { .reader_idle_ns = p->o.ping_idle_ns };
        if ((rc = rill_pipeline_add_first(pl, "rpc-idle", &rill_idle_handler, &ic)) != 0)
            return rc;
    }
    if ((rc = rill_rpc_client_install(pl, &p->codec, &p->client)) != 0)
        return rc;
    return rill_pipeline_add_last(pl, "rpc-heartbeat", &hb_handler, ep);
}

/* ---- endpoints and their connections ---- */

static int endpoint_get(struct rill_rpc_pool *p, const char *uri, bool create,
                        struct rill__rpc_endpoint **out)
{
    struct rill_addr a;
    char canon[RILL_ADDR_STRLEN];
    int rc = rill_addr_parse(uri, &a);
    if (rc)
        return rc;
    if ((rc = rill_addr_format(&a, canon, sizeof(canon))) < 0)
        return rc;
    pthread_mutex_lock(&p->lock);
    struct rill__rpc_endpoint *ep;
    for (ep = p->eps; ep; ep = ep->next)
        if (!strcmp(ep->uri, canon))
            break;
    if (!ep && create) {
        ep = calloc(1, sizeof(*ep));
        if (!ep) {
            pthread_mutex_unlock(&p->lock);
            return -ENOMEM;
        }
        ep->pool = p;
        ep->addr = a;
        snprintf(ep->uri, sizeof(ep->uri), "%s", canon);
        pthread_mutexattr_t ma;
        pthread_mutexattr_init(&ma);
        pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&ep->lock, &ma);
        pthread_mutexattr_destroy(&ma);
        atomic_init(&ep->up, true); /* optimistic until a connect fails */
        ep->next = p->eps;
        p->eps = ep;
    }
    pthread_mutex_unlock(&p->lock);
    *out = ep;
    return ep ? 0 : -ENOENT;
}

/* ep->lock held. Collect a finished connect into its slot; drop a channel
 * that has closed. */
static void slot_settle(struct slot *s)
{
    if (s->connecting && rill_promise_is_done(s->connecting)) {
        if (rill_promise_result(s->connecting, NULL) == 0) {
            struct rill_channel *ch = rill_client_channel(s->connecting);
            if (s->ch)
                rill_channel_release(s->ch);
            s->ch = ch;
        }
        rill_promise_release(s->connecting);
        s->connecting = NULL;
    }
    if (s->ch && !rill_channel_is_open(s->ch)) {
        rill_channel_release(s->ch);
        s->ch = NULL;
    }
}

static void connect_done(struct rill_promise *f, void *arg)
{
    struct rill__rpc_endpoint *ep = arg;
    struct rill_rpc_pool *p = ep->pool;
    int rc = rill_promise_result(f, NULL);
    struct rill_channel *stray = NULL;
    pthread_mutex_lock(&ep->lock);
    for (int i = 0; i < p->o.conns_per_endpoint; i++) {
        if (ep->slots[i].connecting == f) {
            slot_settle(&ep->slots[i]);
            if (atomic_load(&p->closing) && ep->slots[i].ch) {
                stray = ep->slots[i].ch;
                ep->slots[i].ch = NULL;
            }
        }
    }
    if (rc == 0)
        ep->backoff_ns = 0;
    pthread_mutex_unlock(&ep->lock);
    if (rc == 0) {
        atomic_fetch_add(&p->st.connects, 1);
        mark_up(ep);
    } else {
        RILL_DEBUGF("rpc pool: connect to %s failed: %s", ep->uri, rill_strerror(rc));
        atomic_fetch_add(&p->st.connect_failures, 1);
        if (!atomic_load(&p->closing))
            mark_down(ep);
    }
    if (stray) {
        rill_channel_close(stray, NULL);
        rill_channel_release(stray);
    }
    atomic_fetch_sub(&p->pending, 1);
}

/* ep->lock held. Start a connect in slot @i; the caller adds connect_done
 * to the returned promise (a new reference) once it has dropped the lock. */
static int slot_connect(struct rill__rpc_endpoint *ep, int i, struct rill_promise **started)
{
    struct rill_rpc_pool *p = ep->pool;
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = p->o.group;
    co.init = conn_init;
    co.arg = ep;
    rill_channel_opts_set(
        &co.opts, RILL_OPT_CONNECT_TIMEOUT_MS,
        (int64_t)((p->o.connect_timeout_ns + RILL_NS_PER_MS - 1) / RILL_NS_PER_MS));
    struct rill_promise *f;
    int rc = rill_client_connect_addr(&co, &ep->addr, &f);
    if (rc)
        return rc;
    atomic_fetch_add(&p->pending, 1);
    ep->slots[i].connecting = f;
    *started = rill_promise_retain(f);
    return 0;
}

/* A channel to @ep: 1 and a new reference in *@ch; 0 and a connect to wait
 * for in *@wait (a new reference); or < 0. */
static int endpoint_channel(struct rill__rpc_endpoint *ep, struct rill_channel **ch,
                            struct rill_promise **wait)
{
    struct rill_rpc_pool *p = ep->pool;
    struct rill_promise *started = NULL;
    int n = p->o.conns_per_endpoint, rc = 0;
    *ch = NULL;
    *wait = NULL;
    pthread_mutex_lock(&ep->lock);
    int i = (int)(ep->rr++ % (unsigned)n);
    for (int k = 0; k < n; k++)
        slot_settle(&ep->slots[k]);
    for (int k = 0; k < n && !*ch; k++) {
        struct slot *s = &ep->slots[(i + k) % n];
        if (s->ch && rill_channel_is_active(s->ch))
            *ch = rill_channel_retain(s->ch);
    }
    /* Fill the slot whose turn it is, so several connections come up. */
    if (!ep->slots[i].ch && !ep->slots[i].connecting)
        rc = slot_connect(ep, i, &started);
    if (!*ch && rc == 0)
        *wait = rill_promise_retain(ep->slots[i].connecting);
    pthread_mutex_unlock(&ep->lock);
    if (started) {
        if (rill_promise_add_listener(started, connect_done, ep) != 0)
            RILL_WARN("rpc pool: no memory for a connect listener (%s)", ep->uri);
        rill_promise_release(started);
    }
    if (*ch)
        return 1;
    return rc;
}

/* ---- recovery: background reconnect with backoff ---- */

static void probe_done(struct rill_promise *f, void *arg)
{
    struct rill__rpc_endpoint *ep = arg;
    int rc = rill_promise_result(f, NULL);
    pthread_mutex_lock(&ep->lock);
    ep->recovering = false;
    pthread_mutex_unlock(&ep->lock);
    if (rc == 0)
        mark_up(ep);
    else if (atomic_load(&ep->in_set) && !atomic_load(&ep->pool->closing))
        start_recovery(ep);
    atomic_fetch_sub(&ep->pool->pending, 1);
}

static void probe(struct rill_timer *t, void *arg)
{
    struct rill__rpc_endpoint *ep = arg;
    struct rill_rpc_pool *p = ep->pool;
    struct rill_promise *wait = NULL;
    struct rill_channel *ch = NULL;
    pthread_mutex_lock(&ep->lock);
    if (ep->timer == t) {
        rill_timer_release(t);
        ep->timer = NULL;
    }
    if (atomic_load(&p->closing) || !atomic_load(&ep->in_set)) {
        ep->recovering = false;
        pthread_mutex_unlock(&ep->lock);
        atomic_fetch_sub(&p->pending, 1);
        return;
    }
    int rc = endpoint_channel(ep, &ch, &wait);
    if (rc != 0)
        ep->recovering = false;
    pthread_mutex_unlock(&ep->lock);
    if (rc == 1) {
        rill_channel_release(ch);
        mark_up(ep);
    } else if (rc == 0) {
        rill_promise_add_listener(wait, probe_done, ep); /* keeps the pending unit */
        rill_promise_release(wait);
        return;
    } else {
        RILL_DEBUGF("rpc pool: reconnect to %s: %s", ep->uri, rill_strerror(rc));
        start_recovery(ep);
    }
    atomic_fetch_sub(&p->pending, 1);
}

static void start_recovery(struct rill__rpc_endpoint *ep)
{
    struct rill_rpc_pool *p = ep->pool;
    pthread_mutex_lock(&ep->lock);
    if (ep->recovering || atomic_load(&p->closing)) {
        pthread_mutex_unlock(&ep->lock);
        return;
    }
    uint64_t b = ep->backoff_ns ? ep->backoff_ns * 2 : p->o.reconnect_initial_ns;
    if (b > p->o.reconnect_max_ns)
        b = p->o.reconnect_max_ns;
    ep->backoff_ns = b;
    ep->recovering = true;
    atomic_fetch_add(&p->pending, 1);
    /* Scheduled under the lock: probe() takes it first, so it sees the
     * timer reference stored. */
    if (rill_timer_schedule(rill_loop_group_next(p->o.group), b, 0, RILL_TIMER_ONCE, probe, ep,
                            &ep->timer) != 0) {
        ep->recovering = false;
        ep->timer = NULL;
        atomic_fetch_sub(&p->pending, 1);
    }
    pthread_mutex_unlock(&ep->lock);
}

/* ---- the endpoint set (RCU) ---- */

static struct rill__rpc_endpoint *pick(struct rill_rpc_pool *p,
                                       const struct rill__rpc_endpoint *avoid)
{
    struct rill__rpc_lb_view small[32], *v = small;
    struct rill__rpc_endpoint *ep = NULL;
    uint64_t seq = atomic_fetch_add(&p->seq, 1);
    rill__rpc_rcu_register();
    rcu_read_lock();
    struct epset *s = rcu_dereference(p->set);
    if (s) {
        rill__rpc_tsan_acquire(s);
        if (s->n > 32)
            v = malloc(s->n * sizeof(*v));
        if (v) {
            for (size_t i = 0; i < s->n; i++) {
                v[i].ep = s->v[i];
                v[i].up = atomic_load(&s->v[i]->up);
                v[i].in_flight = atomic_load(&s->v[i]->in_flight);
            }
            int k = rill__rpc_lb_pick(p->o.lb, v, s->n, avoid, seq);
            if (k >= 0)
                ep = s->v[k];
            if (v != small)
                free(v);
        }
    }
    rill__rpc_tsan_release(&p->rcu_sync);
    rcu_read_unlock();
    return ep;
}

int rill_rpc_pool_set_endpoints(struct rill_rpc_pool *p, const char *const *uris, size_t n)
{
    struct epset *s = calloc(1, sizeof(*s) + n * sizeof(s->v[0]));
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct rill__rpc_endpoint *ep;
        int rc = endpoint_get(p, uris[i], true, &ep);
        if (rc) {
            free(s);
            return rc;
        }
        bool dup = false;
        for (size_t j = 0; j < s->n; j++)
            dup |= s->v[j] == ep;
        if (!dup)
            s->v[s->n++] = ep;
    }
    pthread_mutex_lock(&p->lock);
    struct epset *old = p->set;
    for (struct rill__rpc_endpoint *ep = p->eps; ep; ep = ep->next) {
        bool in = false;
        for (size_t j = 0; j < s->n; j++)
            in |= s->v[j] == ep;
        bool was = atomic_exchange(&ep->in_set, in);
        if (in && !was)
            atomic_store(&ep->up, true); /* a newcomer gets a chance */
    }
    rill__rpc_tsan_release(s);
    rcu_assign_pointer(p->set, s);
    pthread_mutex_unlock(&p->lock);
    synchronize_rcu();
    rill__rpc_tsan_acquire(&p->rcu_sync);
    free(old);
    /* Close what left the set: its calls end UNAVAILABLE (and retry). */
    pthread_mutex_lock(&p->lock);
    for (struct rill__rpc_endpoint *ep = p->eps; ep; ep = ep->next) {
        if (atomic_load(&ep->in_set))
            continue;
        pthread_mutex_lock(&ep->lock);
        for (int i = 0; i < p->o.conns_per_endpoint; i++) {
            if (ep->slots[i].ch) {
                rill_channel_close(ep->slots[i].ch, NULL);
                rill_channel_release(ep->slots[i].ch);
                ep->slots[i].ch = NULL;
            }
        }
        pthread_mutex_unlock(&ep->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

size_t rill_rpc_pool_endpoints(struct rill_rpc_pool *p, char *buf, size_t size)
{
    size_t n = 0, at = 0;
    rill__rpc_rcu_register();
    rcu_read_lock();
    struct epset *s = rcu_dereference(p->set);
    if (s) {
        rill__rpc_tsan_acquire(s);
        n = s->n;
        for (size_t i = 0; i < s->n; i++) {
            size_t l = strlen(s->v[i]->uri) + 1;
            if (buf && at + l <= size)
                memcpy(buf + at, s->v[i]->uri, l);
            at += l;
        }
    }
    rill__rpc_tsan_release(&p->rcu_sync);
    rcu_read_unlock();
    return n;
}

/* ---- pool ---- */

int rill_rpc_pool_new(const struct rill_rpc_pool_opts *o, struct rill_rpc_pool **out)
{
    if (!o || !o->group || o->conns_per_endpoint < 1 || o->conns_per_endpoint > MAX_CONNS ||
        o->max_attempts < 1 || o->max_attempts > 16 || o->max_missed_pongs < 1 ||
        o->lb > RILL_RPC_LB_LEAST_OUTSTANDING || o->ping_idle_ns > RILL_IDLE_MAX_NS ||
        o->backoff_initial_ns == 0 || o->backoff_max_ns < o->backoff_initial_ns ||
        o->reconnect_initial_ns == 0 || o->reconnect_max_ns < o->reconnect_initial_ns)
        return -EINVAL;
    struct rill_rpc_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->o = *o;
    if (o->codec)
        p->codec = *o->codec;
    else
        rill_rpc_codec_opts_init(&p->codec, RILL_RPC_ROLE_CLIENT);
    p->codec.role = RILL_RPC_ROLE_CLIENT;
    if (o->client)
        p->client = *o->client;
    else
        rill_rpc_client_opts_init(&p->client);
    p->o.codec = NULL;
    p->o.client = NULL;
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return 0;
}

static bool wait_zero(_Atomic long *v, uint64_t until)
{
    while (atomic_load(v) > 0) {
        if (rill_clock_now_ns() > until)
            return false;
        usleep(1000);
    }
    return true;
}

void rill_rpc_pool_free(struct rill_rpc_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->closing, true);
    uint64_t until = rill_clock_now_ns() + FREE_WAIT_NS;
    for (struct rill__rpc_endpoint *ep = p->eps; ep; ep = ep->next) {
        pthread_mutex_lock(&ep->lock);
        struct rill_timer *t = ep->timer;
        ep->timer = NULL;
        if (t && rill_timer_cancel(t) == 0) {
            ep->recovering = false;
            atomic_fetch_sub(&p->pending, 1);
        }
        if (t)
            rill_timer_release(t);
        for (int i = 0; i < p->o.conns_per_endpoint; i++) {
            struct slot *s = &ep->slots[i];
            if (s->ch) {
                rill_channel_close(s->ch, NULL);
                rill_channel_release(s->ch);
                s->ch = NULL;
            }
        }
        pthread_mutex_unlock(&ep->lock);
    }
    /* Connects finish (connect_done closes what they bring), calls fail on
     * the closed channels, then the last pipelines go. */
    bool ok = wait_zero(&p->pending, until) && wait_zero(&p->calls_live, until);
    for (struct rill__rpc_endpoint *ep = p->eps; ep; ep = ep->next) {
        pthread_mutex_lock(&ep->lock);
        for (int i = 0; i < p->o.conns_per_endpoint; i++) {
            slot_settle(&ep->slots[i]);
            if (ep->slots[i].ch) {
                rill_channel_close(ep->slots[i].ch, NULL);
                rill_channel_release(ep->slots[i].ch);
                ep->slots[i].ch = NULL;
            }
        }
        pthread_mutex_unlock(&ep->lock);
    }
    ok = ok && wait_zero(&p->live_conns, until);
    if (!ok) {
        /* Something still refers to the pool: leaking it beats a use after
         * free. */
        RILL_WARN("rpc pool: still busy after 30 s (pending %ld, calls %ld, connections %ld); "
                  "not freed",
                  atomic_load(&p->pending), atomic_load(&p->calls_live),
                  atomic_load(&p->live_conns));
        return;
    }
    synchronize_rcu();
    free(p->set);
    while (p->eps) {
        struct rill__rpc_endpoint *ep = p->eps;
        p->eps = ep->next;
        pthread_mutex_destroy(&ep->lock);
        free(ep);
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void rill_rpc_pool_stats(const struct rill_rpc_pool *p, struct rill_rpc_pool_stats *out)
{
    struct rill_rpc_pool *q = (struct rill_rpc_pool *)p;
    out->connects = atomic_load(&q->st.connects);
    out->connect_failures = atomic_load(&q->st.connect_failures);
    out->closes = atomic_load(&q->st.closes);
    out->heartbeat_closes = atomic_load(&q->st.heartbeat_closes);
    out->pings_sent = atomic_load(&q->st.pings_sent);
    out->pongs = atomic_load(&q->st.pongs);
    out->attempts = atomic_load(&q->st.attempts);
    out->retries = atomic_load(&q->st.retries);
    out->marked_down = atomic_load(&q->st.marked_down);
    out->marked_up = atomic_load(&q->st.marked_up);
}

int rill_rpc_pool_endpoint_info(struct rill_rpc_pool *p, const char *uri,
                                struct rill_rpc_endpoint_info *out)
{
    struct rill__rpc_endpoint *ep;
    int rc = endpoint_get(p, uri, false, &ep);
    if (rc)
        return rc;
    out->up = atomic_load(&ep->up);
    out->in_flight = atomic_load(&ep->in_flight);
    out->calls = atomic_load(&ep->calls);
    out->connections = 0;
    pthread_mutex_lock(&ep->lock);
    for (int i = 0; i < p->o.conns_per_endpoint; i++) {
        slot_settle(&ep->slots[i]);
        if (ep->slots[i].ch && rill_channel_is_active(ep->slots[i].ch))
            out->connections++;
    }
    pthread_mutex_unlock(&ep->lock);
    return 0;
}

/* ---- calls ---- */

static void attempt(struct rill_rpc_pool_call *pc);

struct rill_rpc_pool_call *rill_rpc_pool_call_retain(struct rill_rpc_pool_call *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void rill_rpc_pool_call_release(struct rill_rpc_pool_call *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->req)
        rill_buf_release(c->req);
    if (c->resp)
        rill_buf_release(c->resp);
    if (c->cur)
        rill_rpc_call_release(c->cur);
    rill_promise_release(c->done);
    free(c->service);
    free(c->method);
    free(c->md);
    free(c);
}

static void finish(struct rill_rpc_pool_call *pc, int status, const char *msg,
                   struct rill_buf *resp)
{
    pc->status = status;
    snprintf(pc->msg, sizeof(pc->msg), "%s", msg ? msg : "");
    pc->resp = resp;
    if (pc->req) {
        rill_buf_release(pc->req);
        pc->req = NULL;
    }
    if (pc->last_ep)
        snprintf(pc->endpoint, sizeof(pc->endpoint), "%s", pc->last_ep->uri);
    struct rill_rpc_pool *p = pc->pool;
    if (status == RILL_RPC_OK)
        rill_promise_succeed(pc->done, NULL, NULL);
    else
        rill_promise_fail(pc->done, rill_rpc_status_to_err(status));
    atomic_fetch_sub(&p->calls_live, 1);
}

static bool retryable(int status)
{
    return status == RILL_RPC_UNAVAILABLE || status == RILL_RPC_BUSY;
}

static void retry_timer(struct rill_timer *t, void *arg)
{
    struct rill_rpc_pool_call *pc = arg;
    if (rill_timer_is_cancelled(t)) /* the loop is going away */
        finish(pc, RILL_RPC_UNAVAILABLE, "the pool's loop shut down", NULL);
    else
        attempt(pc);
    rill_rpc_pool_call_release(pc);
}

/* The attempt failed with @status. @sent: the request may have reached the
 * server (only idempotent calls are sent again then). */
static void attempt_failed(struct rill_rpc_pool_call *pc, int status, const char *msg, bool sent)
{
    struct rill_rpc_pool *p = pc->pool;
    if (pc->cur_ep) {
        atomic_fetch_sub(&pc->cur_ep->in_flight, 1);
        pc->last_ep = pc->cur_ep;
        pc->cur_ep = NULL;
    }
    if (!retryable(status) || (sent && !pc->opts.idempotent) || pc->attempts >= p->o.max_attempts ||
        atomic_load(&p->closing)) {
        finish(pc, status, msg, NULL);
        return;
    }
    uint64_t b = rill__rpc_backoff_ns(p->o.backoff_initial_ns, p->o.backoff_max_ns,
                                      pc->attempts + 1, rnd64());
    if (pc->deadline && rill_clock_now_ns() + b >= pc->deadline) {
        finish(pc, status, msg, NULL); /* no time left for another try */
        return;
    }
    RILL_DEBUGF("rpc pool: %s/%s attempt %d failed (%s: %s), retrying in %llu us", pc->service,
                pc->method, pc->attempts, rill_rpc_status_name(status), msg,
                (unsigned long long)(b / 1000));
    rill_rpc_pool_call_retain(pc);
    if (rill_timer_schedule(rill_loop_group_next(p->o.group), b, 0, RILL_TIMER_ONCE, retry_timer,
                            pc, NULL) != 0) {
        rill_rpc_pool_call_release(pc);
        finish(pc, status, msg, NULL);
    }
}

static void attempt_done(struct rill_promise *f, void *arg)
{
    struct rill_rpc_pool_call *pc = arg;
    struct rill_rpc_call *c = pc->cur;
    pc->cur = NULL;
    int status = rill_rpc_call_status(c);
    if (status == RILL_RPC_OK) {
        struct rill_buf *resp = rill_rpc_call_response(c);
        atomic_fetch_sub(&pc->cur_ep->in_flight, 1);
        pc->last_ep = pc->cur_ep;
        pc->cur_ep = NULL;
        finish(pc, RILL_RPC_OK, NULL, resp);
    } else {
        char msg[200];
        const char *m = rill_rpc_call_status_msg(c);
        snprintf(msg, sizeof(msg), "%s: %s", pc->cur_ep->uri, m ? m : rill_rpc_status_name(status));
        attempt_failed(pc, status, msg, true);
    }
    rill_rpc_call_release(c);
    rill_rpc_pool_call_release(pc);
}

static void send_on(struct rill_rpc_pool_call *pc, struct rill_channel *ch)
{
    struct rill_rpc_pool *p = pc->pool;
    struct rill__rpc_endpoint *ep = pc->cur_ep;
    if (atomic_load(&p->closing)) {
        attempt_failed(pc, RILL_RPC_UNAVAILABLE, "the pool is closing", false);
        return;
    }
    struct rill_rpc_call_opts o = pc->opts;
    if (pc->deadline) {
        uint64_t now = rill_clock_now_ns();
        if (now >= pc->deadline) {
            attempt_failed(pc, RILL_RPC_DEADLINE_EXCEEDED, "deadline passed", false);
            return;
        }
        o.timeout_ns = pc->deadline - now;
    }
    struct rill_buf *req = NULL;
    if (pc->req) {
        int rc = rill_buf_slice(pc->req, rill_buf_reader_index(pc->req), rill_buf_readable(pc->req),
                                &req);
        if (rc) {
            attempt_failed(pc, RILL_RPC_RESOURCE_EXHAUSTED, "no memory for the request", false);
            return;
        }
    }
    atomic_fetch_add(&p->st.attempts, 1);
    if (pc->attempts > 1)
        atomic_fetch_add(&p->st.retries, 1);
    atomic_fetch_add(&ep->calls, 1);
    struct rill_rpc_call *c;
    int rc = rill_rpc_call_start(ch, pc->service, pc->method, req, &o, &c);
    if (rc) {
        atomic_fetch_sub(&ep->in_flight, 1);
        pc->last_ep = ep;
        pc->cur_ep = NULL;
        finish(pc, rill_rpc_status_from_err(rc), rill_strerror(rc), NULL);
        return;
    }
    pc->cur = c;
    rill_rpc_pool_call_retain(pc);
    if (rill_promise_add_listener(rill_rpc_call_future(c), attempt_done, pc) != 0) {
        /* Cannot learn the outcome: give up on it. */
        rill_rpc_call_cancel(c);
        pc->cur = NULL;
        rill_rpc_call_release(c);
        rill_rpc_pool_call_release(pc);
        attempt_failed(pc, RILL_RPC_RESOURCE_EXHAUSTED, "no memory for a listener", true);
    }
}

static void attempt_connected(struct rill_promise *f, void *arg)
{
    struct rill_rpc_pool_call *pc = arg;
    int rc = rill_promise_result(f, NULL);
    if (rc == 0) {
        struct rill_channel *ch = rill_client_channel(f);
        send_on(pc, ch);
        rill_channel_release(ch);
    } else {
        char msg[200];
        snprintf(msg, sizeof(msg), "connect to %s failed: %s", pc->cur_ep->uri, rill_strerror(rc));
        attempt_failed(pc, RILL_RPC_UNAVAILABLE, msg, false);
    }
    rill_rpc_pool_call_release(pc);
}

static void attempt(struct rill_rpc_pool_call *pc)
{
    struct rill_rpc_pool *p = pc->pool;
    if (atomic_load(&p->closing)) {
        finish(pc, RILL_RPC_UNAVAILABLE, "the pool is closing", NULL);
        return;
    }
    if (pc->deadline && rill_clock_now_ns() >= pc->deadline) {
        finish(pc, RILL_RPC_DEADLINE_EXCEEDED, "deadline passed between attempts", NULL);
        return;
    }
    pc->attempts++;
    struct rill__rpc_endpoint *ep = pc->target ? pc->target : pick(p, pc->last_ep);
    if (!ep) {
        attempt_failed(pc, RILL_RPC_UNAVAILABLE, "no endpoint is up", false);
        return;
    }
    pc->cur_ep = ep;
    atomic_fetch_add(&ep->in_flight, 1);
    struct rill_channel *ch;
    struct rill_promise *wait;
    int rc = endpoint_channel(ep, &ch, &wait);
    if (rc == 1) {
        send_on(pc, ch);
        rill_channel_release(ch);
    } else if (rc == 0) {
        rill_rpc_pool_call_retain(pc);
        if (rill_promise_add_listener(wait, attempt_connected, pc) != 0) {
            rill_rpc_pool_call_release(pc);
            attempt_failed(pc, RILL_RPC_RESOURCE_EXHAUSTED, "no memory for a listener", false);
        }
        rill_promise_release(wait);
    } else {
        char msg[200];
        snprintf(msg, sizeof(msg), "cannot connect to %s: %s", ep->uri, rill_strerror(rc));
        attempt_failed(pc, RILL_RPC_UNAVAILABLE, msg, false);
    }
}

int rill_rpc_pool_call_start(struct rill_rpc_pool *p, const char *target, const char *service,
                             const char *method, struct rill_buf *req,
                             const struct rill_rpc_call_opts *opts, struct rill_rpc_pool_call **out)
{
    int rc = -EINVAL;
    struct rill_rpc_pool_call *pc = NULL;
    if (!p || !service || !method || !*service || !*method || strlen(service) > RILL_RPC_NAME_MAX ||
        strlen(method) > RILL_RPC_NAME_MAX)
        goto fail;
    rc = -ENOMEM;
    if (!(pc = calloc(1, sizeof(*pc))))
        goto fail;
    atomic_init(&pc->refs, 1);
    pc->pool = p;
    pc->status = -EINPROGRESS;
    if (opts)
        pc->opts = *opts;
    else
        rill_rpc_call_opts_init(&pc->opts);
    /* Deep copy of the metadata: attempts start after the caller returns. */
    if (pc->opts.nmd) {
        size_t bytes = pc->opts.nmd * sizeof(struct rill_rpc_md);
        for (uint16_t i = 0; i < pc->opts.nmd; i++)
            bytes += (size_t)pc->opts.md[i].key_len + 1 + pc->opts.md[i].val_len;
        if (!(pc->md = malloc(bytes)))
            goto fail;
        char *at = (char *)(pc->md + pc->opts.nmd);
        for (uint16_t i = 0; i < pc->opts.nmd; i++) {
            pc->md[i] = pc->opts.md[i];
            memcpy(at, pc->opts.md[i].key, pc->opts.md[i].key_len);
            at[pc->opts.md[i].key_len] = 0;
            pc->md[i].key = at;
            at += pc->opts.md[i].key_len + 1;
            if (pc->opts.md[i].val_len)
                memcpy(at, pc->opts.md[i].val, pc->opts.md[i].val_len);
            pc->md[i].val = (const uint8_t *)at;
            at += pc->opts.md[i].val_len;
        }
        pc->opts.md = pc->md;
    }
    if (pc->opts.timeout_ns)
        pc->deadline = rill_clock_now_ns() + pc->opts.timeout_ns;
    if (!(pc->service = strdup(service)) || !(pc->method = strdup(method)))
        goto fail;
    if ((rc = rill_promise_new(NULL, &pc->done)) != 0)
        goto fail;
    if (target && (rc = endpoint_get(p, target, true, &pc->target)) != 0)
        goto fail;
    pc->req = req;
    req = NULL;
    atomic_fetch_add(&p->calls_live, 1);
    *out = rill_rpc_pool_call_retain(pc);
    attempt(pc);
    rill_rpc_pool_call_release(pc);
    return 0;
fail:
    if (req)
        rill_buf_release(req);
    if (pc) {
        free(pc->service);
        free(pc->method);
        free(pc->md);
        if (pc->done)
            rill_promise_release(pc->done);
        free(pc);
    }
    return rc;
}

int rill_rpc_pool_call_sync(struct rill_rpc_pool *p, const char *target, const char *service,
                            const char *method, struct rill_buf *req,
                            const struct rill_rpc_call_opts *opts, int64_t wait_ns,
                            struct rill_rpc_pool_call **out)
{
    int rc = rill_rpc_pool_call_start(p, target, service, method, req, opts, out);
    if (rc)
        return rc;
    return rill_rpc_pool_call_wait(*out, wait_ns);
}

struct rill_promise *rill_rpc_pool_call_future(struct rill_rpc_pool_call *c)
{
    return c->done;
}

int rill_rpc_pool_call_wait(struct rill_rpc_pool_call *c, int64_t timeout_ns)
{
    return rill_promise_wait(c->done, timeout_ns);
}

int rill_rpc_pool_call_status(const struct rill_rpc_pool_call *c)
{
    return rill_promise_is_done(c->done) ? c->status : -EINPROGRESS;
}

const char *rill_rpc_pool_call_status_msg(const struct rill_rpc_pool_call *c)
{
    return rill_promise_is_done(c->done) && c->msg[0] ? c->msg : NULL;
}

struct rill_buf *rill_rpc_pool_call_response(struct rill_rpc_pool_call *c)
{
    return rill_promise_is_done(c->done) && c->resp ? rill_buf_retain(c->resp) : NULL;
}

int rill_rpc_pool_call_attempts(const struct rill_rpc_pool_call *c)
{
    return rill_promise_is_done(c->done) ? c->attempts : 0;
}

const char *rill_rpc_pool_call_endpoint(const struct rill_rpc_pool_call *c)
{
    return rill_promise_is_done(c->done) ? c->endpoint : "";
}
