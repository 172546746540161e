/* The RPC connection pool: connections per remote endpoint made on first
 * use and reused by later calls (Hadoop IPC's ClientCache), heartbeats on
 * idle connections, retries of idempotent calls with exponential backoff,
 * load balancing over a set of endpoints with failover and background
 * recovery.
 *
 *   struct rill_rpc_pool_opts o;
 *   rill_rpc_pool_opts_init(&o);
 *   o.group = workers;                         // connections run there
 *   struct rill_rpc_pool *pool;
 *   rill_rpc_pool_new(&o, &pool);
 *   const char *eps[] = { "tcp://10.0.0.1:7000", "tcp://10.0.0.2:7000" };
 *   rill_rpc_pool_set_endpoints(pool, eps, 2);
 *   struct rill_rpc_pool_call *c;
 *   rill_rpc_pool_call_start(pool, NULL, "echo.Echo", "say", req, &co, &c);
 *   if (rill_rpc_pool_call_wait(c, -1) == 0) ... rill_rpc_pool_call_response(c) ...
 *   rill_rpc_pool_call_release(c);
 *
 * Endpoints: an endpoint is a URI (tcp://host:port with a numeric host).
 * The pool keeps @conns_per_endpoint connections to each one it has used
 * and picks among them round robin. A connection that closes is replaced
 * on the next call. A connect failure or a lost connection marks the
 * endpoint down: balanced calls skip it, and a background reconnect with
 * exponential backoff (reconnect_*_ns) marks it up again once a
 * connection succeeds.
 *
 * Heartbeats: with ping_idle_ns > 0 every pooled connection carries the
 * idle-state handler (idle.h) and a heartbeat stage: after ping_idle_ns
 * without a read, a PING frame is sent; each further idle period without
 * a read counts a missed pong; after max_missed_pongs the connection is
 * closed with RILL_EUNAVAILABLE (its calls fail UNAVAILABLE, the endpoint
 * goes down). Any read (a PONG or a response) starts over.
 *
 * Retries: a call whose options say idempotent is tried again when an
 * attempt fails with UNAVAILABLE or BUSY, at most max_attempts times in
 * all, after a backoff of min(backoff_max, backoff_initial * 2^(n-1))
 * with full jitter in [b/2, b], and never past the call's deadline (the
 * timeout in its options covers every attempt and backoff; each attempt
 * gets what is left). A balanced retry prefers another endpoint. Other
 * calls get one attempt.
 *
 * Endpoint lists are published with RCU (liburcu): calls read the current
 * list without a lock while rill_rpc_pool_set_endpoints (a discovery
 * watcher, rpc_discovery.h) replaces it.
 *
 * Thread: every function is "any thread" unless it says otherwise;
 * completions run on a connection's loop. */
#ifndef RILL_RPC_POOL_H
#define RILL_RPC_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rpc_client.h"

struct rill_buf;
struct rill_loop_group;
struct rill_promise;
struct rill_rpc_pool;
struct rill_rpc_pool_call;

enum rill_rpc_lb {
    RILL_RPC_LB_ROUND_ROBIN = 0,       /* each call to the next endpoint that is up */
    RILL_RPC_LB_LEAST_OUTSTANDING = 1, /* the endpoint with the fewest calls in flight */
};

struct rill_rpc_pool_opts {
    struct rill_loop_group *group; /* required: runs the connections and timers; borrowed,
                                      must outlive the pool */
    int conns_per_endpoint;        /* 1..64; default 1 */
    enum rill_rpc_lb lb;           /* default round robin */
    uint64_t connect_timeout_ns;   /* default 5 s */
    /* Heartbeats: 0 = off (default 30 s). */
    uint64_t ping_idle_ns;
    int max_missed_pongs; /* default 3 */
    /* Retries of idempotent calls. */
    int max_attempts;            /* 1..16, counting the first; default 3 */
    uint64_t backoff_initial_ns; /* default 50 ms */
    uint64_t backoff_max_ns;     /* default 2 s */
    /* Recovery of an endpoint that is down. */
    uint64_t reconnect_initial_ns; /* default 100 ms */
    uint64_t reconnect_max_ns;     /* default 5 s */
    /* Per-connection handler options (copied; NULL: defaults). */
    const struct rill_rpc_codec_opts *codec;
    const struct rill_rpc_client_opts *client;
};

/* Defaults as listed above. */
void rill_rpc_pool_opts_init(struct rill_rpc_pool_opts *o);

/* Create a pool. Returns 0 and the pool in *@out, or -EINVAL (no group,
 * an option out of range), -ENOMEM. */
int rill_rpc_pool_new(const struct rill_rpc_pool_opts *o, struct rill_rpc_pool **out);

/* Thread: any thread but the group's loops (it waits for them). Close
 * every connection, stop the reconnect timers and free the pool. Calls
 * still in flight fail UNAVAILABLE; the caller must not start new ones
 * and still releases the call objects it holds. */
void rill_rpc_pool_free(struct rill_rpc_pool *p);

/* Replace the set balanced calls go to (URIs copied). Endpoints that leave
 * the set have their connections closed. Readers are never blocked; the
 * old list is freed after an RCU grace period, so this waits for calls
 * that are reading it: not from an RCU read-side section. Returns 0,
 * -EINVAL (a URI that does not parse), -ENOMEM. */
int rill_rpc_pool_set_endpoints(struct rill_rpc_pool *p, const char *const *uris, size_t n);

/* Start a call. @target: an endpoint URI to call (made on first use), or
 * NULL to balance over the set. @req: ownership taken on every path (NULL:
 * empty). @opts may be NULL (copied; the timeout is the whole call's).
 * Returns 0 and a new reference in *@out, or -EINVAL (bad names), the
 * errors of rill_addr_parse (bad target), -ENOMEM. Every later failure is the call's outcome. */
int rill_rpc_pool_call_start(struct rill_rpc_pool *p, const char *target, const char *service,
                             const char *method, struct rill_buf *req,
                             const struct rill_rpc_call_opts *opts,
                             struct rill_rpc_pool_call **out);

/* Start and wait (at most @wait_ns, < 0: no limit beyond the call's
 * timeout). Thread: not one of the group's loops. Returns the outcome (as
 * rill_rpc_pool_call_wait) and the call in *@out (release it), or the
 * start errors (nothing in *@out). */
int rill_rpc_pool_call_sync(struct rill_rpc_pool *p, const char *target, const char *service,
                            const char *method, struct rill_buf *req,
                            const struct rill_rpc_call_opts *opts, int64_t wait_ns,
                            struct rill_rpc_pool_call **out);

/* References. */
struct rill_rpc_pool_call *rill_rpc_pool_call_retain(struct rill_rpc_pool_call *c);
void rill_rpc_pool_call_release(struct rill_rpc_pool_call *c);

/* The call's future (borrowed while you hold the call): succeeds with no
 * value, or fails with rill_rpc_status_to_err(status). Listeners run on
 * the loop of the last attempt's connection (or the thread that ended it). */
struct rill_promise *rill_rpc_pool_call_future(struct rill_rpc_pool_call *c);

/* Thread: not one of the group's loops. Wait for the end or @timeout_ns
 * (< 0: no limit). Returns 0, the status's error, or -ETIMEDOUT (the call
 * goes on). */
int rill_rpc_pool_call_wait(struct rill_rpc_pool_call *c, int64_t timeout_ns);

/* Once ended (before: -EINPROGRESS / NULL / 0): the final status and its
 * message (borrowed), the response as a new reference (or NULL), the
 * attempts made, and the endpoint of the last attempt (borrowed, "" when
 * none was reached). */
int rill_rpc_pool_call_status(const struct rill_rpc_pool_call *c);
const char *rill_rpc_pool_call_status_msg(const struct rill_rpc_pool_call *c);
struct rill_buf *rill_rpc_pool_call_response(struct rill_rpc_pool_call *c);
int rill_rpc_pool_call_attempts(const struct rill_rpc_pool_call *c);
const char *rill_rpc_pool_call_endpoint(const struct rill_rpc_pool_call *c);

/* Counters of the whole pool (monotonic, read without a lock). */
struct rill_rpc_pool_stats {
    uint64_t connects; /* connections established */
    uint64_t connect_failures;
    uint64_t closes;           /* pooled connections that went inactive */
    uint64_t heartbeat_closes; /* of which closed for missed pongs */
    uint64_t pings_sent;
    uint64_t pongs;
    uint64_t attempts; /* call attempts sent */
    uint64_t retries;  /* attempts after the first */
    uint64_t marked_down, marked_up;
};
void rill_rpc_pool_stats(const struct rill_rpc_pool *p, struct rill_rpc_pool_stats *out);

/* State of one endpoint (known to the pool: used or in the set). Returns
 * 0, or -ENOENT. */
struct rill_rpc_endpoint_info {
    bool up;
    int connections; /* open and active */
    uint64_t in_flight;
    uint64_t calls; /* attempts sent to it */
};
int rill_rpc_pool_endpoint_info(struct rill_rpc_pool *p, const char *uri,
                                struct rill_rpc_endpoint_info *out);

/* The URIs of the current set, written as NUL-separated strings into @buf
 * (at most @size bytes). Returns how many there are (a snapshot). */
size_t rill_rpc_pool_endpoints(struct rill_rpc_pool *p, char *buf, size_t size);

#endif /* RILL_RPC_POOL_H */
