/* Server and client bootstraps.
 *
 * The bootstraps are the one part of channel/ that knows the transports:
 * they turn an address into a transport's channel, so they sit above
 * transport/ (the composition root), while the channel core below never
 * includes a transport.
 *
 * Server: the listening sockets are made, bound and listening before
 * rill_server_bind returns (errors and the real port are synchronous);
 * registration and the bind operation through each listener's pipeline
 * then run on its boss loop. A shared, reference-counted configuration
 * (struct srv_cfg) is what the acceptor runs with: each listener keeps it
 * as a channel attribute, and each child keeps its parent listener, so the
 * configuration outlives every child init that may still be queued on a
 * worker loop, whatever the order in which the user frees things.
 *
 * Live children are tracked (a list under a mutex, touched once per
 * connection) so rill_server_close can close them. */
#include "rill/bootstrap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "channel/channel_internal.h"
#include "rill/addr.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/list.h"
#include "rill/log.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "transport/epoll/epoll_internal.h"
#ifdef RILL_HAVE_RDMA
#include "transport/rdma/rdma_internal.h"
#else
#include "rill/rdma.h"
#endif

_Static_assert(RILL_OPT__COUNT <= 64, "rill_channel_opts.set has one bit per option");

/* ---- options ---- */

int rill_channel_opts_apply(const struct rill_channel_opts *o, struct rill_channel *ch)
{
    if (!o || !o->set)
        return 0;
    uint64_t set = o->set;
    const uint64_t hi = 1ull << RILL_OPT_WRITE_HIGH_WATER, lo = 1ull << RILL_OPT_WRITE_LOW_WATER;
    if (set & (hi | lo)) {
        int64_t h, l;
        rill_channel_get_option(ch, RILL_OPT_WRITE_HIGH_WATER, &h);
        rill_channel_get_option(ch, RILL_OPT_WRITE_LOW_WATER, &l);
        if (set & hi)
            h = o->value[RILL_OPT_WRITE_HIGH_WATER];
        if (set & lo)
            l = o->value[RILL_OPT_WRITE_LOW_WATER];
        if (h < 0 || l < 0)
            return -EINVAL;
        int err = rill_channel_set_watermarks(ch, (size_t)l, (size_t)h);
        if (err)
            return err;
        set &= ~(hi | lo);
    }
    /* The receive sizes depend on each other: set them so every step is
     * valid (max first when growing, min first when shrinking). */
    static const enum rill_option order[] = {
        RILL_OPT_RECV_BUF_MAX,  RILL_OPT_RECV_BUF_INIT, RILL_OPT_RECV_BUF_MIN,
        RILL_OPT_RECV_BUF_INIT, RILL_OPT_RECV_BUF_MAX,
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(order); i++) {
        enum rill_option opt = order[i];
        if ((set & (1ull << opt)) && rill_channel_set_option(ch, opt, o->value[opt]) == 0)
            set &= ~(1ull << opt);
    }
    for (int opt = 1; opt < RILL_OPT__COUNT; opt++) {
        if (!(set & (1ull << opt)))
            continue;
        int err = rill_channel_set_option(ch, (enum rill_option)opt, o->value[opt]);
        if (err)
            return err;
    }
    return 0;
}

/* ---- server: the shared configuration ---- */

struct srv_cfg {
    _Atomic unsigned refs;
    struct rill_loop_group *workers; /* or, when NULL: */
    struct rill_loop *worker_loop;
    rill_channel_init_fn *child_init;
    void *child_arg;
    rill_channel_init_fn *server_init;
    void *server_arg;
    struct rill_channel_opts child_opts;

    pthread_mutex_t lock; /* guards what follows */
    struct rill_list children;
    size_t nchildren;
    bool refuse_children; /* close(true) ran: new children are refused */
};

struct child_node {
    struct rill_list link;
    struct rill_channel *ch; /* a reference */
    struct srv_cfg *cfg;     /* a reference */
};

static struct srv_cfg *cfg_retain(struct srv_cfg *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

static void cfg_release(struct srv_cfg *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void cfg_attr_free(void *v)
{
    cfg_release(v);
}

static const struct rill_attr_key cfg_key = { "rill.bootstrap.server", cfg_attr_free };

static struct rill_loop *pick_worker(void *arg)
{
    struct srv_cfg *c = arg;
    return c->workers ? rill_loop_group_next(c->workers) : c->worker_loop;
}

static void child_closed(struct rill_promise *p, void *arg)
{
    struct child_node *n = arg;
    struct srv_cfg *c = n->cfg;
    (void)p;
    pthread_mutex_lock(&c->lock);
    rill_list_remove(&n->link);
    c->nchildren--;
    pthread_mutex_unlock(&c->lock);
    rill_channel_release(n->ch);
    free(n);
    cfg_release(c);
}

/* Runs on the child's loop before its registered event. */
static int child_init(struct rill_channel *ch, void *arg)
{
    struct srv_cfg *c = arg;
    struct child_node *n = malloc(sizeof(*n));
    if (!n)
        return -ENOMEM;
    pthread_mutex_lock(&c->lock);
    if (c->refuse_children) {
        pthread_mutex_unlock(&c->lock);
        free(n);
        return RILL_ECLOSED;
    }
    n->ch = rill_channel_retain(ch);
    n->cfg = cfg_retain(c);
    rill_list_push_back(&c->children, &n->link);
    c->nchildren++;
    pthread_mutex_unlock(&c->lock);
    if (rill_promise_add_listener(rill_channel_close_future(ch), child_closed, n) != 0) {
        child_closed(NULL, n);
        return -ENOMEM;
    }
    int err = rill_channel_opts_apply(&c->child_opts, ch);
    if (err)
        return err;
    return c->child_init(ch, c->child_arg);
}

/* Runs on the listener's loop before its registered event. */
static int listener_init(struct rill_channel *ch, void *arg)
{
    struct srv_cfg *c = arg;
    int err = rill_channel_attr_set(ch, &cfg_key, cfg_retain(c));
    if (err) {
        cfg_release(c);
        return err;
    }
    return c->server_init ? c->server_init(ch, c->server_arg) : 0;
}

/* ---- server ---- */

struct rill_server {
    struct srv_cfg *cfg;
    struct rill_addr addr;
    int n;
    struct rill_channel **listeners; /* references */
    struct rill_promise *bound;      /* owned */
    _Atomic int bound_left;          /* binds not yet settled */
    _Atomic int bound_err;           /* the first bind error */

    pthread_mutex_t lock;        /* guards closed */
    struct rill_promise *closed; /* owned; made by the first close */
    _Atomic int close_left;
};

void rill_server_opts_init(struct rill_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->nlisteners = 1;
}

struct bind_job {
    struct rill_server *s;
    struct rill_channel *ch; /* a reference */
    struct rill_promise *p;
};

/* Every bind settles here; the last one completes the bound future, so
 * once it is complete no bind_done can touch the server again. */
static void bind_settled(struct rill_server *s, int err)
{
    if (err) {
        int none = 0;
        atomic_compare_exchange_strong(&s->bound_err, &none, err);
    }
    if (atomic_fetch_sub(&s->bound_left, 1) != 1)
        return;
    /* Hold a reference while completing: a waiter may free the server
     * (and its reference) as soon as the state changes. */
    struct rill_promise *bound = rill_promise_retain(s->bound);
    err = atomic_load(&s->bound_err);
    if (err)
        rill_promise_fail(bound, err);
    else
        rill_promise_succeed(bound, NULL, NULL);
    rill_promise_release(bound);
}

static void bind_done(struct rill_promise *p, void *arg)
{
    int err = rill_promise_result(p, NULL);
    rill_promise_release(p);
    bind_settled(arg, err);
}

static void bind_task(void *arg)
{
    struct bind_job *j = arg;
    if (!rill_channel_is_registered(j->ch)) {
        int why = rill_channel_close_reason(j->ch);
        rill_promise_fail(j->p, why ? why : RILL_ECLOSED);
    } else {
        rill_channel_bind(j->ch, rill_channel_local_addr(j->ch), j->p); /* through the pipeline */
    }
    rill_channel_release(j->ch);
    free(j);
}

static void server_free_partial(struct rill_server *s)
{
    for (int i = 0; s->listeners && i < s->n; i++)
        if (s->listeners[i])
            rill_channel_release(s->listeners[i]); /* never registered: closes its socket */
    free(s->listeners);
    if (s->bound)
        rill_promise_release(s->bound);
    if (s->cfg)
        cfg_release(s->cfg);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Which listeners an address needs: @ntcp epoll ones (0 for rdma://), and
 * an RDMA one. rdma+tcp:// listens on both, TCP only (with a warning)
 * where there is no RDMA device. */
static int listen_plan(const struct rill_addr *addr, int *ntcp, bool *rdma)
{
    if (addr->scheme != RILL_ADDR_RDMA && addr->scheme != RILL_ADDR_RDMA_TCP) {
        int family = rill__epoll_family(addr);
        return family < 0 ? family : 0;
    }
    int avail = rill_rdma_available();
    if (addr->scheme == RILL_ADDR_RDMA) {
        if (avail)
            return avail;
        *ntcp = 0;
        *rdma = true;
        return 0;
    }
    if (avail) {
        char a[RILL_ADDR_STRLEN];
        rill_addr_format(addr, a, sizeof(a));
        RILL_WARN("%s: no RDMA device (%s): listening on TCP only", a, rill_strerror(avail));
        return 0;
    }
    *rdma = true;
    return 0;
}

/* An epoll listener for the TCP side of @addr, or an RDMA one. */
static int listener_new(struct rill_loop *loop, const struct rill_addr *addr, bool rdma,
                        struct rill_channel **out)
{
#ifdef RILL_HAVE_RDMA
    if (rdma)
        return rill__rdma_server_new(loop, out);
#else
    if (rdma)
        return -EPROTONOSUPPORT;
#endif
    struct rill_addr a = *addr;
    if (a.scheme == RILL_ADDR_RDMA_TCP)
        a.scheme = RILL_ADDR_TCP;
    int family = rill__epoll_family(&a);
    return family < 0 ? family : rill__epoll_server_new(loop, family, out);
}

static int listener_listen(struct rill_channel *ch, const struct rill_addr *addr, bool rdma)
{
    struct rill_addr a = *addr;
#ifdef RILL_HAVE_RDMA
    if (rdma)
        return rill__rdma_server_listen(ch, &a);
#else
    (void)rdma;
#endif
    if (a.scheme == RILL_ADDR_RDMA_TCP)
        a.scheme = RILL_ADDR_TCP;
    return rill__epoll_server_listen(ch, &a);
}

static uint64_t listener_accepted(const struct rill_channel *ch)
{
#ifdef RILL_HAVE_RDMA
    if (rill__rdma_is_server(ch))
        return rill__rdma_server_accepted(ch);
#endif
    return rill__epoll_server_accepted(ch);
}

int rill_server_bind_addr(const struct rill_server_opts *o, const struct rill_addr *addr,
                          struct rill_server **out)
{
    if (!o || !addr || !out || (!o->boss && !o->boss_loop) || !o->child_init || o->nlisteners < 0)
        return -EINVAL;
    int ntcp = o->nlisteners > 0 ? o->nlisteners : 1;
    bool rdma = false;
    int err = listen_plan(addr, &ntcp, &rdma);
    if (err)
        return err;
    int n = ntcp + (rdma ? 1 : 0);

    struct rill_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->addr = *addr;
    s->listeners = calloc((size_t)n, sizeof(*s->listeners));
    struct srv_cfg *c = calloc(1, sizeof(*c));
    if (c) {
        atomic_init(&c->refs, 1);
        pthread_mutex_init(&c->lock, NULL);
        rill_list_init(&c->children);
        if (o->workers || o->worker_loop) {
            c->workers = o->workers;
            c->worker_loop = o->worker_loop;
        } else {
            c->workers = o->boss;
            c->worker_loop = o->boss_loop;
        }
        c->child_init = o->child_init;
        c->child_arg = o->child_arg;
        c->server_init = o->server_init;
        c->server_arg = o->server_arg;
        c->child_opts = o->child_opts;
    }
    s->cfg = c;
    s->n = n;
    err = (!s->listeners || !c) ? -ENOMEM : 0;
    if (!err)
        err = rill_promise_new(NULL, &s->bound);
    if (err) {
        server_free_partial(s);
        return err;
    }
    atomic_init(&s->bound_left, n);

    /* Make every listener now: socket, options, bind, listen. */
    struct rill__acceptor acc = { .pick_loop = pick_worker, .init = child_init, .arg = c };
    for (int i = 0; i < n && !err; i++) {
        struct rill_loop *loop = o->boss ? rill_loop_group_next(o->boss) : o->boss_loop;
        bool is_rdma = rdma && i == ntcp; /* the TCP ones first: they fix a port 0 */
        err = listener_new(loop, &s->addr, is_rdma, &s->listeners[i]);
        if (err)
            break;
        struct rill_channel *ch = s->listeners[i];
        err = rill_channel_opts_apply(&o->server_opts, ch);
        if (!err && ntcp > 1 && !is_rdma)
            err = rill_channel_set_option(ch, RILL_OPT_SO_REUSEPORT, 1);
        if (!err)
            err = rill__channel_set_acceptor(ch, &acc);
        if (!err)
            err = listener_listen(ch, &s->addr, is_rdma);
        if (!err && i == 0) {
            /* Port 0: the others join the port the first one got. */
            enum rill_addr_scheme scheme = s->addr.scheme;
            s->addr = *rill_channel_local_addr(ch);
            s->addr.scheme = scheme;
        }
    }
    if (err) {
        server_free_partial(s);
        return err;
    }

    /* Register each on its loop, then bind through its pipeline there. */
    for (int i = 0; i < n; i++) {
        struct rill_channel *ch = s->listeners[i];
        rill__channel_register(ch, listener_init, c, NULL);
        struct bind_job *j = malloc(sizeof(*j));
        struct rill_promise *p = NULL;
        if (!j || rill_promise_new(ch->loop, &p) != 0 ||
            rill_promise_add_listener(p, bind_done, s) != 0) {
            free(j);
            if (p)
                rill_promise_release(p);
            bind_settled(s, -ENOMEM);
            continue;
        }
        j->s = s;
        j->ch = rill_channel_retain(ch);
        j->p = p; /* bind_done gives it back */
        int perr = rill_loop_execute(ch->loop, bind_task, j);
        if (perr) {
            rill_channel_release(ch);
            free(j);
            rill_promise_fail(p, perr);
        }
    }
    *out = s;
    return 0;
}

int rill_server_bind(const struct rill_server_opts *o, const char *uri, struct rill_server **out)
{
    struct rill_addr a;
    int err = rill_addr_parse(uri, &a);
    return err ? err : rill_server_bind_addr(o, &a, out);
}

struct rill_promise *rill_server_bound(struct rill_server *s)
{
    return s->bound;
}

const struct rill_addr *rill_server_local_addr(const struct rill_server *s)
{
    return &s->addr;
}

int rill_server_listener_count(const struct rill_server *s)
{
    return s->n;
}

struct rill_channel *rill_server_listener(struct rill_server *s, int i)
{
    return i >= 0 && i < s->n ? s->listeners[i] : NULL;
}

size_t rill_server_child_count(const struct rill_server *s)
{
    struct srv_cfg *c = s->cfg;
    pthread_mutex_lock(&c->lock);
    size_t n = c->nchildren;
    pthread_mutex_unlock(&c->lock);
    return n;
}

uint64_t rill_server_accepted(const struct rill_server *s)
{
    uint64_t n = 0;
    for (int i = 0; i < s->n; i++)
        n += listener_accepted(s->listeners[i]);
    return n;
}

uint64_t rill_server_shed(const struct rill_server *s)
{
    uint64_t n = 0;
    for (int i = 0; i < s->n; i++)
        if (rill__epoll_is_server(s->listeners[i]))
            n += rill__epoll_server_shed(s->listeners[i]);
    return n;
}

static void close_step(struct rill_promise *p, void *arg)
{
    struct rill_server *s = arg;
    (void)p;
    if (atomic_fetch_sub(&s->close_left, 1) != 1)
        return;
    /* As in bind_settled: the waiter may free s at once. */
    struct rill_promise *closed = rill_promise_retain(s->closed);
    rill_promise_succeed(closed, NULL, NULL);
    rill_promise_release(closed);
}

struct rill_promise *rill_server_close(struct rill_server *s, bool close_children)
{
    struct srv_cfg *c = s->cfg;
    pthread_mutex_lock(&s->lock);
    bool first = s->closed == NULL;
    if (first) {
        if (rill_promise_new(NULL, &s->closed) != 0) {
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        /* One count per listener and child to wait for, plus a guard held
         * until every listener is in place. */
        atomic_init(&s->close_left, 1 + s->n);
    }

    /* Take the children out under the lock (refusing new ones), close
     * them outside it: a close can complete inline and its listener takes
     * the lock. */
    struct rill_channel **kids = NULL;
    size_t nkids = 0;
    pthread_mutex_lock(&c->lock);
    if (close_children && !c->refuse_children) {
        c->refuse_children = true;
        kids = c->nchildren ? malloc(c->nchildren * sizeof(*kids)) : NULL;
        if (kids) {
            struct rill_list *it;
            rill_list_foreach(it, &c->children)
            {
                kids[nkids++] =
                    rill_channel_retain(rill_container_of(it, struct child_node, link)->ch);
            }
        } else if (c->nchildren) {
            RILL_WARN("rill_server_close: no memory to close %zu children", c->nchildren);
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (first)
        atomic_fetch_add(&s->close_left, (int)nkids);
    for (size_t i = 0; i < nkids; i++) {
        if (first &&
            rill_promise_add_listener(rill_channel_close_future(kids[i]), close_step, s) != 0)
            close_step(NULL, s);
        if (rill_channel_is_open(kids[i]))
            rill_channel_close(kids[i], NULL);
        rill_channel_release(kids[i]);
    }
    free(kids);

    if (first) {
        for (int i = 0; i < s->n; i++) {
            struct rill_channel *ch = s->listeners[i];
            if (rill_channel_is_open(ch)) /* closed already when its loop shut down */
                rill_channel_close(ch, NULL);
            if (rill_promise_add_listener(rill_channel_close_future(ch), close_step, s) != 0)
                close_step(NULL, s);
        }
        close_step(NULL, s); /* the guard */
    }
    pthread_mutex_unlock(&s->lock);
    return s->closed;
}

void rill_server_free(struct rill_server *s)
{
    if (!s)
        return;
    struct rill_promise *closed = rill_server_close(s, false);
    if (closed)
        rill_promise_wait(closed, -1);
    /* bind_done may still be queued on a loop that terminated early: it
     * holds no reference to s once bound is complete, so wait for that. */
    rill_promise_wait(s->bound, -1);
    for (int i = 0; i < s->n; i++)
        rill_channel_release(s->listeners[i]);
    free(s->listeners);
    rill_promise_release(s->bound);
    if (s->closed)
        rill_promise_release(s->closed);
    cfg_release(s->cfg);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---- client ---- */

void rill_client_opts_init(struct rill_client_opts *o)
{
    memset(o, 0, sizeof(*o));
}

struct connect_job {
    struct rill_channel *ch; /* a reference, until the connect completes */
    struct rill_promise *f;  /* the user's future (a reference) */
    rill_channel_init_fn *init;
    void *arg;
    int init_err;
    bool has_local;
    bool fallback; /* rdma+tcp:// over RDMA: on failure, try TCP */
    struct rill_addr remote, local;
    struct rill_channel_opts opts;
};

static int start_connect(struct connect_job *j, struct rill_loop *loop);

static void job_free(struct connect_job *j)
{
    rill_channel_release(j->ch);
    rill_promise_release(j->f);
    free(j);
}

static void release_channel(void *v)
{
    rill_channel_release(v);
}

static int client_init(struct rill_channel *ch, void *arg)
{
    struct connect_job *j = arg;
    int err = j->init ? j->init(ch, j->arg) : 0;
    j->init_err = err;
    return err;
}

static void succeed_task(void *arg)
{
    struct connect_job *j = arg;
    rill_promise_succeed(j->f, rill_channel_retain(j->ch), release_channel);
    job_free(j);
}

static void connected(struct rill_promise *p, void *arg)
{
    struct connect_job *j = arg;
    int err = rill_promise_result(p, NULL);
    rill_promise_release(p);
    if (err && j->fallback && err != j->init_err) {
        char a[RILL_ADDR_STRLEN];
        rill_addr_format(&j->remote, a, sizeof(a));
        RILL_INFO("%s: RDMA connect failed (%s): falling back to TCP", a, rill_strerror(err));
        j->fallback = false;
        j->remote.scheme = RILL_ADDR_TCP;
        struct rill_loop *loop = j->ch->loop;
        rill_channel_release(j->ch);
        j->ch = NULL;
        err = start_connect(j, loop);
        if (!err)
            return;
    }
    if (err) {
        rill_promise_fail(j->f, err);
        job_free(j);
        return;
    }
    /* The core fires active right after the connect promise: complete the
     * user's future after that, so it sees an active channel. */
    if (rill_loop_execute(j->ch->loop, succeed_task, j) != 0)
        succeed_task(j);
}

static void connect_task(void *arg)
{
    struct connect_job *j = arg;
    if (!rill_channel_is_registered(j->ch) || !rill_channel_is_open(j->ch)) {
        int err = j->init_err ? j->init_err : rill_channel_close_reason(j->ch);
        rill_promise_fail(j->f, err < 0 ? err : RILL_ECLOSED);
        job_free(j);
        return;
    }
    struct rill_promise *p;
    if (rill_promise_new(j->ch->loop, &p) != 0) {
        rill_promise_fail(j->f, -ENOMEM);
        rill_channel_close(j->ch, NULL);
        job_free(j);
        return;
    }
    if (rill_promise_add_listener(p, connected, j) != 0) {
        rill_promise_release(p);
        rill_promise_fail(j->f, -ENOMEM);
        rill_channel_close(j->ch, NULL);
        job_free(j);
        return;
    }
    rill_channel_connect(j->ch, &j->remote, j->has_local ? &j->local : NULL, p);
}

/* Make the channel for j->remote on @loop, register it and start the
 * connect. On failure j->ch is NULL and nothing was started. */
static int start_connect(struct connect_job *j, struct rill_loop *loop)
{
    int err;
    j->init_err = 0;
    if (j->remote.scheme == RILL_ADDR_RDMA || j->remote.scheme == RILL_ADDR_RDMA_TCP) {
#ifdef RILL_HAVE_RDMA
        err = rill__rdma_channel_new(loop, &j->ch);
#else
        err = -EPROTONOSUPPORT;
#endif
    } else {
        int family = rill__epoll_family(&j->remote);
        err = family < 0 ? family : rill__epoll_channel_new(loop, family, &j->ch);
    }
    if (err) {
        j->ch = NULL;
        return err;
    }
    err = rill_channel_opts_apply(&j->opts, j->ch);
    if (err) {
        rill_channel_release(j->ch);
        j->ch = NULL;
        return err;
    }
    /* Registration and then the connect, in this order on the loop (tasks
     * from one thread run in order; on the loop itself registration is
     * immediate). */
    rill__channel_register(j->ch, client_init, j, NULL);
    err = rill_loop_execute(loop, connect_task, j);
    if (err) {
        rill_channel_close(j->ch, NULL);
        rill_channel_release(j->ch);
        j->ch = NULL;
    }
    return err;
}

int rill_client_connect_addr(const struct rill_client_opts *o, const struct rill_addr *addr,
                             struct rill_promise **out)
{
    if (!o || !addr || !out || (!o->loop && !o->group))
        return -EINVAL;
    struct rill_addr remote = *addr;
    bool fallback = false;
    if (remote.scheme == RILL_ADDR_RDMA || remote.scheme == RILL_ADDR_RDMA_TCP) {
        int avail = rill_rdma_available();
        if (remote.scheme == RILL_ADDR_RDMA && avail)
            return avail;
        if (avail) {
            remote.scheme = RILL_ADDR_TCP; /* rdma+tcp:// without a device */
        } else {
            fallback = remote.scheme == RILL_ADDR_RDMA_TCP;
            remote.scheme = RILL_ADDR_RDMA;
        }
    } else {
        int family = rill__epoll_family(addr);
        if (family < 0)
            return family;
    }
    struct rill_loop *loop = o->loop ? o->loop : rill_loop_group_next(o->group);

    struct connect_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    int err = rill_promise_new(loop, &j->f);
    if (err) {
        free(j);
        return err;
    }
    j->init = o->init;
    j->arg = o->arg;
    j->remote = remote;
    j->fallback = fallback;
    j->opts = o->opts;
    if (o->local) {
        j->local = *o->local;
        j->has_local = true;
    }
    /* The job may finish (and free itself) as soon as the connect starts:
     * take the caller's reference first. */
    struct rill_promise *f = rill_promise_retain(j->f);
    err = start_connect(j, loop);
    if (err) {
        rill_promise_release(f);
        rill_promise_release(j->f);
        free(j);
        return err;
    }
    *out = f;
    return 0;
}

int rill_client_connect(const struct rill_client_opts *o, const char *uri,
                        struct rill_promise **out)
{
    struct rill_addr a;
    int err = rill_addr_parse(uri, &a);
    return err ? err : rill_client_connect_addr(o, &a, out);
}

struct rill_channel *rill_client_channel(struct rill_promise *f)
{
    void *v = NULL;
    if (rill_promise_result(f, &v) != 0 || !v)
        return NULL;
    return rill_channel_retain(v);
}
