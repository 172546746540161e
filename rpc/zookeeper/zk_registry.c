/* The ZooKeeper registry backend (rpc_discovery.h): ephemeral nodes under
 * /rill/{service}/{version}/{host:port}, children watches re-armed on
 * every change. Watches use the asynchronous API only: a synchronous call
 * from the client's completion thread would wait for that same thread. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef THREADED
#define THREADED 1 /* the synchronous API of libzookeeper_mt */
#endif
#include <zookeeper/zookeeper.h>

#include "rill/log.h"
#include "rill/rpc_discovery.h"

struct rill_rpc_watch {
    struct rill_rpc_watch *next;
    struct zkreg *reg;
    char path[300];
    rill_rpc_endpoints_fn *fn;
    void *arg;
    bool active; /* reg->lock */
};

struct zkreg {
    struct rill_rpc_registry base;
    zhandle_t *zh;
    pthread_mutex_t lock; /* held while a watcher runs: unwatch waits for it */
    pthread_cond_t cond;
    int state;
    struct rill_rpc_watch *watches; /* freed after zookeeper_close */
};

static void session_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    struct zkreg *r = ctx;
    if (type != ZOO_SESSION_EVENT)
        return;
    pthread_mutex_lock(&r->lock);
    r->state = state;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (state == ZOO_EXPIRED_SESSION_STATE)
        RILL_WARN("discovery: ZooKeeper session expired; registrations are gone");
}

static int zerr(int rc)
{
    switch (rc) {
    case ZOK:
        return 0;
    case ZNODEEXISTS:
        return -EEXIST;
    case ZNONODE:
        return -ENOENT;
    case ZOPERATIONTIMEOUT:
        return -ETIMEDOUT;
    default:
        return -EIO;
    }
}

/* Create each missing persistent ancestor of @path and @path itself. */
static int make_parents(zhandle_t *zh, const char *path)
{
    char buf[300];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *s = strchr(buf + 1, '/');; s = strchr(s + 1, '/')) {
        if (s)
            *s = 0;
        int rc = zoo_create(zh, buf, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
        if (rc != ZOK && rc != ZNODEEXISTS) {
            RILL_WARN("discovery: create %s: %s", buf, zerror(rc));
            return zerr(rc);
        }
        if (!s)
            return 0;
        *s = '/';
    }
}

static int z_register(struct rill_rpc_registry *base, const char *service, const char *version,
                      const char *endpoint)
{
    struct zkreg *r = (struct zkreg *)base;
    char parent[300], node[450];
    snprintf(parent, sizeof(parent), "/rill/%s/%s", service, version);
    snprintf(node, sizeof(node), "%s/%s", parent, endpoint);
    int rc = make_parents(r->zh, parent);
    if (rc)
        return rc;
    rc = zoo_create(r->zh, node, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0);
    if (rc == ZNODEEXISTS) {
        /* Left by an earlier session of ours that has not expired yet:
         * take it over so that it lives as long as this session. */
        zoo_delete(r->zh, node, -1);
        rc = zoo_create(r->zh, node, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0);
    }
    if (rc != ZOK)
        RILL_WARN("discovery: create %s: %s", node, zerror(rc));
    return zerr(rc);
}

static int z_unregister(struct rill_rpc_registry *base, const char *service, const char *version,
                        const char *endpoint)
{
    struct zkreg *r = (struct zkreg *)base;
    char node[450];
    snprintf(node, sizeof(node), "/rill/%s/%s/%s", service, version, endpoint);
    return zerr(zoo_delete(r->zh, node, -1));
}

static void arm(struct rill_rpc_watch *w);

static void children_done(int rc, const struct String_vector *sv, const void *data)
{
    struct rill_rpc_watch *w = (struct rill_rpc_watch *)data;
    if (rc != ZOK) {
        RILL_DEBUGF("discovery: children of %s: %s", w->path, zerror(rc));
        return;
    }
    pthread_mutex_lock(&w->reg->lock);
    if (w->active)
        w->fn(w->arg, (const char *const *)sv->data, (size_t)sv->count);
    pthread_mutex_unlock(&w->reg->lock);
}

static void child_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    struct rill_rpc_watch *w = ctx;
    /* A children watch fires once: read again and re-arm. Session events
     * keep the watch (the client library re-registers it). */
    if (type == ZOO_CHILD_EVENT || type == ZOO_DELETED_EVENT || type == ZOO_CREATED_EVENT)
        arm(w);
}

static void arm(struct rill_rpc_watch *w)
{
    pthread_mutex_lock(&w->reg->lock);
    bool active = w->active;
    pthread_mutex_unlock(&w->reg->lock);
    if (!active)
        return;
    int rc = zoo_awget_children(w->reg->zh, w->path, child_watcher, w, children_done, w);
    if (rc != ZOK)
        RILL_WARN("discovery: watch %s: %s", w->path, zerror(rc));
}

static int z_watch(struct rill_rpc_registry *base, const char *service, const char *version,
                   rill_rpc_endpoints_fn *fn, void *arg, struct rill_rpc_watch **out)
{
    struct zkreg *r = (struct zkreg *)base;
    struct rill_rpc_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->reg = r;
    snprintf(w->path, sizeof(w->path), "/rill/%s/%s", service, version);
    w->fn = fn;
    w->arg = arg;
    w->active = true;
    int rc = make_parents(r->zh, w->path);
    if (rc) {
        free(w);
        return rc;
    }
    pthread_mutex_lock(&r->lock);
    w->next = r->watches;
    r->watches = w;
    pthread_mutex_unlock(&r->lock);
    arm(w);
    *out = w;
    return 0;
}

static void z_unwatch(struct rill_rpc_registry *base, struct rill_rpc_watch *w)
{
    struct zkreg *r = (struct zkreg *)base;
    pthread_mutex_lock(&r->lock);
    w->active = false; /* kept until zookeeper_close: callbacks may still name it */
    pthread_mutex_unlock(&r->lock);
}

static void z_free(struct rill_rpc_registry *base)
{
    struct zkreg *r = (struct zkreg *)base;
    pthread_mutex_lock(&r->lock);
    for (struct rill_rpc_watch *w = r->watches; w; w = w->next)
        w->active = false;
    pthread_mutex_unlock(&r->lock);
    zookeeper_close(r->zh);
    while (r->watches) {
        struct rill_rpc_watch *w = r->watches;
        r->watches = w->next;
        free(w);
    }
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static const struct rill_rpc_registry_ops zk_ops = {
    .name = "zookeeper",
    .register_endpoint = z_register,
    .unregister_endpoint = z_unregister,
    .watch = z_watch,
    .unwatch = z_unwatch,
    .free = z_free,
};

int rill_rpc_registry_zookeeper_new(const char *hosts, int session_timeout_ms,
                                    struct rill_rpc_registry **out)
{
    if (!hosts || !*hosts || session_timeout_ms <= 0)
        return -EINVAL;
    struct zkreg *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->base.ops = &zk_ops;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
    r->zh = zookeeper_init(hosts, session_watcher, session_timeout_ms, NULL, r, 0);
    if (!r->zh) {
        int e = errno ? -errno : -EIO;
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return e;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&r->lock);
    while (r->state != ZOO_CONNECTED_STATE)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &until) == ETIMEDOUT)
            break;
    bool up = r->state == ZOO_CONNECTED_STATE;
    pthread_mutex_unlock(&r->lock);
    if (!up) {
        RILL_WARN("discovery: no ZooKeeper session with %s within 10 s", hosts);
        z_free(&r->base);
        return -ETIMEDOUT;
    }
    *out = &r->base;
    return 0;
}
