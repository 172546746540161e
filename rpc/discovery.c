/* The registry front (rpc_discovery.h), the static backend, and the glue
 * that feeds a pool's endpoint set from a watch. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/log.h"
#include "rill/rpc_discovery.h"
#include "rill/rpc_pool.h"

static int check_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n == 0 || n > 128 || strchr(s, '/') ? -EINVAL : 0;
}

int rill_rpc_discovery_check(const char *service, const char *version, const char *endpoint)
{
    if (check_name(service) || check_name(version))
        return -EINVAL;
    if (!endpoint)
        return 0;
    const char *colon = strrchr(endpoint, ':');
    if (check_name(endpoint) || !colon || colon == endpoint || !colon[1])
        return -EINVAL;
    for (const char *c = colon + 1; *c; c++)
        if (*c < '0' || *c > '9')
            return -EINVAL;
    return 0;
}

int rill_rpc_registry_register(struct rill_rpc_registry *r, const char *service,
                               const char *version, const char *endpoint)
{
    if (!r || rill_rpc_discovery_check(service, version, endpoint) || !endpoint)
        return -EINVAL;
    return r->ops->register_endpoint(r, service, version, endpoint);
}

int rill_rpc_registry_unregister(struct rill_rpc_registry *r, const char *service,
                                 const char *version, const char *endpoint)
{
    if (!r || rill_rpc_discovery_check(service, version, endpoint) || !endpoint)
        return -EINVAL;
    return r->ops->unregister_endpoint(r, service, version, endpoint);
}

int rill_rpc_registry_watch(struct rill_rpc_registry *r, const char *service, const char *version,
                            rill_rpc_endpoints_fn *fn, void *arg, struct rill_rpc_watch **out)
{
    if (!r || !fn || rill_rpc_discovery_check(service, version, NULL))
        return -EINVAL;
    return r->ops->watch(r, service, version, fn, arg, out);
}

void rill_rpc_registry_unwatch(struct rill_rpc_registry *r, struct rill_rpc_watch *w)
{
    if (r && w)
        r->ops->unwatch(r, w);
}

void rill_rpc_registry_free(struct rill_rpc_registry *r)
{
    if (r)
        r->ops->free(r);
}

/* ---- static backend ---- */

struct sentry {
    struct sentry *next;
    char key[260]; /* service/version */
    char ep[130];
};

struct rill_rpc_watch {
    struct rill_rpc_watch *next;
    char key[260];
    rill_rpc_endpoints_fn *fn;
    void *arg;
};

struct sreg {
    struct rill_rpc_registry base;
    pthread_mutex_t lock; /* held while watchers run: unwatch waits for them */
    struct sentry *entries;
    struct rill_rpc_watch *watches;
};

/* lock held. */
static void s_notify(struct sreg *r, const char *key, struct rill_rpc_watch *only)
{
    size_t n = 0;
    for (struct sentry *e = r->entries; e; e = e->next)
        n += !strcmp(e->key, key);
    const char **v = calloc(n ? n : 1, sizeof(*v));
    if (!v) {
        RILL_WARN("discovery: no memory to notify watchers of %s", key);
        return;
    }
    n = 0;
    for (struct sentry *e = r->entries; e; e = e->next)
        if (!strcmp(e->key, key))
            v[n++] = e->ep;
    for (struct rill_rpc_watch *w = r->watches; w; w = w->next)
        if ((!only || w == only) && !strcmp(w->key, key))
            w->fn(w->arg, v, n);
    free(v);
}

static int s_register(struct rill_rpc_registry *base, const char *service, const char *version,
                      const char *endpoint)
{
    struct sreg *r = (struct sreg *)base;
    char key[260];
    snprintf(key, sizeof(key), "%s/%s", service, version);
    pthread_mutex_lock(&r->lock);
    for (struct sentry *e = r->entries; e; e = e->next) {
        if (!strcmp(e->key, key) && !strcmp(e->ep, endpoint)) {
            pthread_mutex_unlock(&r->lock);
            return -EEXIST;
        }
    }
    struct sentry *e = calloc(1, sizeof(*e));
    if (!e) {
        pthread_mutex_unlock(&r->lock);
        return -ENOMEM;
    }
    snprintf(e->key, sizeof(e->key), "%s", key);
    snprintf(e->ep, sizeof(e->ep), "%s", endpoint);
    /* Appended: watchers see endpoints in registration order. */
    struct sentry **at = &r->entries;
    while (*at)
        at = &(*at)->next;
    *at = e;
    s_notify(r, key, NULL);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static int s_unregister(struct rill_rpc_registry *base, const char *service, const char *version,
                        const char *endpoint)
{
    struct sreg *r = (struct sreg *)base;
    char key[260];
    snprintf(key, sizeof(key), "%s/%s", service, version);
    pthread_mutex_lock(&r->lock);
    for (struct sentry **at = &r->entries; *at; at = &(*at)->next) {
        struct sentry *e = *at;
        if (!strcmp(e->key, key) && !strcmp(e->ep, endpoint)) {
            *at = e->next;
            free(e);
            s_notify(r, key, NULL);
            pthread_mutex_unlock(&r->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return -ENOENT;
}

static int s_watch(struct rill_rpc_registry *base, const char *service, const char *version,
                   rill_rpc_endpoints_fn *fn, void *arg, struct rill_rpc_watch **out)
{
    struct sreg *r = (struct sreg *)base;
    struct rill_rpc_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    snprintf(w->key, sizeof(w->key), "%s/%s", service, version);
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_lock(&r->lock);
    w->next = r->watches;
    r->watches = w;
    s_notify(r, w->key, w);
    pthread_mutex_unlock(&r->lock);
    *out = w;
    return 0;
}

static void s_unwatch(struct rill_rpc_registry *base, struct rill_rpc_watch *w)
{
    struct sreg *r = (struct sreg *)base;
    pthread_mutex_lock(&r->lock);
    for (struct rill_rpc_watch **at = &r->watches; *at; at = &(*at)->next) {
        if (*at == w) {
            *at = w->next;
            free(w);
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

static void s_free(struct rill_rpc_registry *base)
{
    struct sreg *r = (struct sreg *)base;
    while (r->entries) {
        struct sentry *e = r->entries;
        r->entries = e->next;
        free(e);
    }
    while (r->watches) {
        struct rill_rpc_watch *w = r->watches;
        r->watches = w->next;
        free(w);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static const struct rill_rpc_registry_ops static_ops = {
    .name = "static",
    .register_endpoint = s_register,
    .unregister_endpoint = s_unregister,
    .watch = s_watch,
    .unwatch = s_unwatch,
    .free = s_free,
};

int rill_rpc_registry_static_new(struct rill_rpc_registry **out)
{
    struct sreg *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->base.ops = &static_ops;
    pthread_mutex_init(&r->lock, NULL);
    *out = &r->base;
    return 0;
}

#ifndef RILL_HAVE_ZOOKEEPER
int rill_rpc_registry_zookeeper_new(const char *hosts, int session_timeout_ms,
                                    struct rill_rpc_registry **out)
{
    (void)hosts;
    (void)session_timeout_ms;
    (void)out;
    return -ENOTSUP;
}
#endif

/* ---- feeding a pool ---- */

static void pool_feed(void *arg, const char *const *eps, size_t n)
{
    struct rill_rpc_pool *pool = arg;
    char **uris = calloc(n ? n : 1, sizeof(*uris));
    size_t k = 0;
    if (!uris)
        goto nomem;
    for (; k < n; k++) {
        size_t l = strlen(eps[k]) + 7;
        if (!(uris[k] = malloc(l)))
            goto nomem;
        snprintf(uris[k], l, "tcp://%s", eps[k]);
    }
    int rc = rill_rpc_pool_set_endpoints(pool, (const char *const *)uris, n);
    if (rc)
        RILL_WARN("discovery: endpoint list of %zu refused by the pool: %d", n, rc);
    else
        RILL_DEBUGF("discovery: %zu endpoints", n);
    goto out;
nomem:
    RILL_WARN("discovery: no memory for an endpoint list of %zu", n);
out:
    for (size_t i = 0; uris && i < k; i++)
        free(uris[i]);
    free(uris);
}

int rill_rpc_pool_watch(struct rill_rpc_pool *pool, struct rill_rpc_registry *r,
                        const char *service, const char *version, struct rill_rpc_watch **out)
{
    if (!pool)
        return -EINVAL;
    return rill_rpc_registry_watch(r, service, version, pool_feed, pool, out);
}
