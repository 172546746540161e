/* The RPC method registry: a liburcu RCU hash (cds_lfht) keyed by
 * "service\0method". Lookups run under rcu_read_lock with no other lock;
 * register and unregister may run meanwhile. An unregistered entry is
 * kept for its stats (until the pair is unregistered again or the server
 * is freed), then freed after the last call that holds it. Also: RCU
 * reader registration for threads rill does not own, and method metrics. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rill/error.h"
#include "rpc/rpc_internal.h"
#include "rpc/server_internal.h"

/* ---- RCU reader registration ----
 * Loop threads belong to core; they become RCU readers on their first
 * lookup and leave at thread exit through a key destructor (what liburcu's
 * bulletproof flavour does), so synchronize_rcu never waits on a dead
 * thread. */
static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static _Thread_local bool rcu_registered;

static void rcu_thread_exit(void *v)
{
    (void)v;
    rcu_unregister_thread();
}

static void rcu_make_key(void)
{
    pthread_key_create(&rcu_key, rcu_thread_exit);
}

void rill__rpc_rcu_register(void)
{
    if (rcu_registered)
        return;
    pthread_once(&rcu_once, rcu_make_key);
    rcu_register_thread();
    pthread_setspecific(rcu_key, (void *)1);
    rcu_registered = true;
}

/* ---- entries ---- */

struct key {
    const char *service, *method;
};

static unsigned long key_hash(const char *s, const char *m)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (; *m; m++)
        h = (h ^ (uint8_t)*m) * 1099511628211ull;
    return (unsigned long)h;
}

static int key_match(struct cds_lfht_node *node, const void *key)
{
    struct rill__rpc_method *m = caa_container_of(node, struct rill__rpc_method, node);
    const struct key *k = key;
    rill__rpc_tsan_acquire(m);
    return strcmp(m->service, k->service) == 0 && strcmp(m->method, k->method) == 0;
}

void rill__rpc_method_put(struct rill__rpc_method *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(m->service);
    free(m->method);
    free(m);
}

struct rill__rpc_method *rill__rpc_method_get(struct rill_rpc_server *s, const char *service,
                                              const char *method)
{
    rill__rpc_rcu_register();
    struct key k = { service, method };
    struct rill__rpc_method *found = NULL;
    rcu_read_lock();
    if (!atomic_load(&s->shut)) {
        struct cds_lfht_iter it;
        cds_lfht_lookup(s->ht, key_hash(service, method), key_match, &k, &it);
        struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
        if (node) {
            struct rill__rpc_method *m = caa_container_of(node, struct rill__rpc_method, node);
            rill__rpc_tsan_acquire(m);
            /* Unless it is being reclaimed (count already at 0). */
            unsigned r = atomic_load(&m->refs);
            while (r && !atomic_compare_exchange_weak(&m->refs, &r, r + 1))
                ;
            if (r)
                found = m;
        }
    }
    rill__rpc_tsan_release(&s->rcu_sync);
    rcu_read_unlock();
    return found;
}

int rill_rpc_server_register(struct rill_rpc_server *s, const char *service, const char *method,
                             rill_rpc_method_fn *fn, void *arg, enum rill_rpc_dispatch mode)
{
    size_t sl = service ? strlen(service) : 0, ml = method ? strlen(method) : 0;
    if (!sl || sl > RILL_RPC_NAME_MAX || !ml || ml > RILL_RPC_NAME_MAX || !fn ||
        (mode != RILL_RPC_INLINE && mode != RILL_RPC_POOL))
        return -EINVAL;
    if (atomic_load(&s->shut))
        return RILL_ECLOSED;
    struct rill__rpc_method *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->service = strdup(service);
    m->method = strdup(method);
    if (!m->service || !m->method) {
        free(m->service);
        free(m->method);
        free(m);
        return -ENOMEM;
    }
    atomic_init(&m->refs, 1);
    m->srv = s;
    m->fn = fn;
    m->arg = arg;
    m->mode = mode;
    m->hash = key_hash(service, method);
    cds_lfht_node_init(&m->node);
    struct key k = { service, method };
    rill__rpc_rcu_register();
    rill__rpc_tsan_release(m);
    rcu_read_lock();
    struct cds_lfht_node *old = cds_lfht_add_unique(s->ht, m->hash, key_match, &k, &m->node);
    rcu_read_unlock();
    if (old != &m->node) {
        rill__rpc_method_put(m);
        return -EEXIST;
    }
    return 0;
}

/* Keep @m (with the hash's reference) so that its stats stay readable,
 * replacing an entry retired earlier for the same pair. */
static void retire(struct rill_rpc_server *s, struct rill__rpc_method *m)
{
    struct rill__rpc_method *old = NULL;
    pthread_mutex_lock(&s->retired_lock);
    for (struct rill__rpc_method **pp = &s->retired; *pp; pp = &(*pp)->retired_next) {
        if (strcmp((*pp)->service, m->service) == 0 && strcmp((*pp)->method, m->method) == 0) {
            old = *pp;
            *pp = old->retired_next;
            break;
        }
    }
    m->retired_next = s->retired;
    s->retired = m;
    pthread_mutex_unlock(&s->retired_lock);
    if (old)
        rill__rpc_method_put(old);
}

/* The retired entry for the pair with a new reference, or NULL. */
static struct rill__rpc_method *retired_get(struct rill_rpc_server *s, const char *service,
                                            const char *method)
{
    struct rill__rpc_method *found = NULL;
    pthread_mutex_lock(&s->retired_lock);
    for (struct rill__rpc_method *m = s->retired; m; m = m->retired_next) {
        if (strcmp(m->service, service) == 0 && strcmp(m->method, method) == 0) {
            atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
            found = m;
            break;
        }
    }
    pthread_mutex_unlock(&s->retired_lock);
    return found;
}

static void retired_drop_all(struct rill_rpc_server *s)
{
    pthread_mutex_lock(&s->retired_lock);
    struct rill__rpc_method *m = s->retired;
    s->retired = NULL;
    pthread_mutex_unlock(&s->retired_lock);
    while (m) {
        struct rill__rpc_method *next = m->retired_next;
        rill__rpc_method_put(m);
        m = next;
    }
}

/* After a grace period no reader holds @m without a reference of its own:
 * drop the hash's. */
static void reclaim(struct rill_rpc_server *s, struct rill__rpc_method *m)
{
    rill__rpc_tsan_acquire(&s->rcu_sync);
    rill__rpc_method_put(m);
}

int rill_rpc_server_unregister(struct rill_rpc_server *s, const char *service, const char *method)
{
    if (!service || !method)
        return -ENOENT;
    struct key k = { service, method };
    rill__rpc_rcu_register();
    rcu_read_lock();
    struct cds_lfht_iter it;
    cds_lfht_lookup(s->ht, key_hash(service, method), key_match, &k, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    struct rill__rpc_method *m = NULL;
    if (node && cds_lfht_del(s->ht, node) == 0)
        m = caa_container_of(node, struct rill__rpc_method, node);
    rcu_read_unlock();
    if (!m)
        return -ENOENT;
    /* Waiting here (rather than call_rcu) keeps liburcu's callback thread,
     * and its exit-time leftovers, out of the process. */
    synchronize_rcu();
    rill__rpc_tsan_acquire(&s->rcu_sync);
    retire(s, m); /* the hash's reference goes with it */
    return 0;
}

int rill__rpc_registry_init(struct rill_rpc_server *s)
{
    pthread_mutex_init(&s->retired_lock, NULL);
    s->ht = cds_lfht_new(256, 256, 0, 0, NULL);
    return s->ht ? 0 : -ENOMEM;
}

/* Stop lookups and drop every entry (the caller set s->shut). */
void rill__rpc_registry_shutdown(struct rill_rpc_server *s)
{
    rill__rpc_rcu_register();
    /* Readers that saw shut == false are inside a read-side section:
     * after this none is, and none will look again. */
    synchronize_rcu();
    rill__rpc_tsan_acquire(&s->rcu_sync);
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    rcu_read_lock();
    cds_lfht_for_each(s->ht, &it, node)
    {
        if (cds_lfht_del(s->ht, node) == 0)
            reclaim(s, caa_container_of(node, struct rill__rpc_method, node));
    }
    rcu_read_unlock();
    retired_drop_all(s);
}

void rill__rpc_registry_destroy(struct rill_rpc_server *s)
{
    retired_drop_all(s);
    pthread_mutex_destroy(&s->retired_lock);
    if (s->ht) {
        rill__rpc_rcu_register();
        cds_lfht_destroy(s->ht, NULL);
        s->ht = NULL;
    }
}

/* ---- metrics ---- */

void rill__rpc_mstats_record(struct rill__rpc_mstats *st, int status, uint64_t latency_ns)
{
    atomic_fetch_add_explicit(&st->calls, 1, memory_order_relaxed);
    if (status >= 0 && status < RILL_RPC_STATUS_COUNT)
        atomic_fetch_add_explicit(&st->by_status[status], 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&st->other, 1, memory_order_relaxed);
    rill__rpc_hist_record(&st->lat, latency_ns);
}

int rill_rpc_server_method_stats(struct rill_rpc_server *s, const char *service, const char *method,
                                 struct rill_rpc_method_stats *out)
{
    if (!service || !method)
        return -ENOENT;
    struct rill__rpc_method *m = rill__rpc_method_get(s, service, method);
    if (!m)
        m = retired_get(s, service, method);
    if (!m)
        return -ENOENT;
    struct rill__rpc_mstats *st = &m->st;
    *out = (struct rill_rpc_method_stats){ 0 };
    out->calls = atomic_load(&st->calls);
    for (int i = 0; i < RILL_RPC_STATUS_COUNT; i++)
        out->by_status[i] = atomic_load(&st->by_status[i]);
    out->other_status = atomic_load(&st->other);
    out->errors = out->calls - out->by_status[RILL_RPC_OK];
    out->busy = atomic_load(&st->busy);
    out->expired = atomic_load(&st->expired);
    out->cancelled = atomic_load(&st->cancelled);
    rill__rpc_hist_read(&st->lat, &out->p50_ns, &out->p99_ns, &out->max_ns);
    rill__rpc_method_put(m);
    return 0;
}
