/* Service discovery: a registry where servers announce their endpoints
 * and clients watch a service's endpoint list, with two backends.
 *
 *   static   an in-process list (tests, fixed deployments): register and
 *            unregister tell the watchers at once, on the calling thread.
 *   zookeeper  servers create ephemeral nodes /rill/{service}/{version}/
 *            {host:port} (parents are made persistent); a server that dies
 *            loses its node when its session times out. Watchers get the
 *            children of /rill/{service}/{version} whenever they change, on
 *            the ZooKeeper client's completion thread. Built only with the
 *            ZooKeeper C client (RILL_ZOOKEEPER); otherwise the constructor
 *            returns -ENOTSUP.
 *
 * rill_rpc_pool_watch connects a watch to a pool (rpc_pool.h): every list
 * becomes the pool's endpoint set (published with RCU, so calls are never
 * blocked by an update).
 *
 *   struct rill_rpc_registry *reg;
 *   rill_rpc_registry_zookeeper_new("127.0.0.1:2181", 4000, &reg);
 *   rill_rpc_registry_register(reg, "echo", "v1", "127.0.0.1:7000");   // server
 *   struct rill_rpc_watch *w;
 *   rill_rpc_pool_watch(pool, reg, "echo", "v1", &w);                 // client
 *   ...
 *   rill_rpc_registry_unwatch(reg, w);
 *   rill_rpc_registry_free(reg);
 *
 * Names: service and version are 1..128 bytes without '/'; an endpoint is
 * "host:port" (numeric host; IPv6 in brackets). */
#ifndef RILL_RPC_DISCOVERY_H
#define RILL_RPC_DISCOVERY_H

#include <stddef.h>

struct rill_rpc_pool;
struct rill_rpc_registry;
struct rill_rpc_watch;

/* Receives a service's current endpoints ("host:port", borrowed for the
 * call). Called once soon after the watch starts and after every change;
 * never after rill_rpc_registry_unwatch returns. Runs on a registry's
 * thread (see above): keep it short and do not call back into the
 * registry from it. */
typedef void rill_rpc_endpoints_fn(void *arg, const char *const *endpoints, size_t n);

/* A backend. */
struct rill_rpc_registry_ops {
    const char *name;
    int (*register_endpoint)(struct rill_rpc_registry *r, const char *service, const char *version,
                             const char *endpoint);
    int (*unregister_endpoint)(struct rill_rpc_registry *r, const char *service,
                               const char *version, const char *endpoint);
    int (*watch)(struct rill_rpc_registry *r, const char *service, const char *version,
                 rill_rpc_endpoints_fn *fn, void *arg, struct rill_rpc_watch **out);
    void (*unwatch)(struct rill_rpc_registry *r, struct rill_rpc_watch *w);
    void (*free)(struct rill_rpc_registry *r);
};

struct rill_rpc_registry {
    const struct rill_rpc_registry_ops *ops;
};

/* Thread: any. An empty in-process registry. Returns 0 or -ENOMEM. */
int rill_rpc_registry_static_new(struct rill_rpc_registry **out);

/* Thread: any (blocks until the session is up, at most 10 s). Connect to
 * ZooKeeper at @hosts ("h1:p1,h2:p2") with a session timeout (ms; the
 * server may bound it). Returns 0, -ETIMEDOUT (no session), -EINVAL,
 * -ENOMEM, or -ENOTSUP when built without ZooKeeper. */
int rill_rpc_registry_zookeeper_new(const char *hosts, int session_timeout_ms,
                                    struct rill_rpc_registry **out);

/* Thread: any. Announce / withdraw @endpoint for @service/@version.
 * Returns 0, -EINVAL (bad names), -EEXIST / -ENOENT (static backend),
 * -EIO with the backend's reason logged, -ENOMEM. */
int rill_rpc_registry_register(struct rill_rpc_registry *r, const char *service,
                               const char *version, const char *endpoint);
int rill_rpc_registry_unregister(struct rill_rpc_registry *r, const char *service,
                                 const char *version, const char *endpoint);

/* Thread: any. Watch @service/@version. Returns 0 and the watch in *@out,
 * or -EINVAL, -ENOMEM, -EIO. */
int rill_rpc_registry_watch(struct rill_rpc_registry *r, const char *service, const char *version,
                            rill_rpc_endpoints_fn *fn, void *arg, struct rill_rpc_watch **out);

/* Thread: any but the registry's callback thread. Stop a watch: no call of
 * its function runs after this returns. */
void rill_rpc_registry_unwatch(struct rill_rpc_registry *r, struct rill_rpc_watch *w);

/* Thread: any but the registry's callback thread. Unwatch everything and
 * free; the ZooKeeper backend closes its session (its ephemeral nodes go
 * at once). NULL is ignored. */
void rill_rpc_registry_free(struct rill_rpc_registry *r);

/* Thread: any. Feed @pool's endpoint set from a watch of @service/@version
 * (each "host:port" becomes "tcp://host:port"). The pool must outlive the
 * watch: unwatch before rill_rpc_pool_free. Returns as
 * rill_rpc_registry_watch. */
int rill_rpc_pool_watch(struct rill_rpc_pool *pool, struct rill_rpc_registry *r,
                        const char *service, const char *version, struct rill_rpc_watch **out);

/* Thread: any. Check a service or version name (1..128 bytes, no '/') and
 * an endpoint ("host:port"). Return 0 or -EINVAL. */
int rill_rpc_discovery_check(const char *service, const char *version, const char *endpoint);

#endif /* RILL_RPC_DISCOVERY_H */
