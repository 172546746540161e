/* Private to rpc/: the server's registry entries, metrics and pool, shared
 * by registry.c (RCU hash, metrics) and server.c (handler, calls, pool). */
#ifndef RILL_RPC_SERVER_INTERNAL_H
#define RILL_RPC_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#include "rill/list.h"
#include "rill/rpc_server.h"
#include "rpc/rpc_internal.h"

struct rill__rpc_mstats {
    atomic_uint_fast64_t calls, other, busy, expired, cancelled;
    atomic_uint_fast64_t by_status[RILL_RPC_STATUS_COUNT];
    struct rill__rpc_hist lat;
};

struct rill__rpc_method {
    struct cds_lfht_node node;
    atomic_uint refs; /* the hash's, plus one per call dispatched */
    struct rill_rpc_server *srv;
    char *service, *method;
    unsigned long hash;
    rill_rpc_method_fn *fn;
    void *arg;
    enum rill_rpc_dispatch mode;
    struct rill__rpc_mstats st;
    struct rill__rpc_method *retired_next; /* in srv->retired */
};

struct rill_rpc_server {
    atomic_uint refs; /* the owner's, plus one per connection */
    struct rill_rpc_server_opts o;
    struct cds_lfht *ht;
    atomic_bool shut;
    int rcu_sync; /* TSan: readers release here, reclaimers acquire */
    /* Unregistered methods kept for their stats (the latest per pair, each
     * with the reference the hash had), until free. */
    pthread_mutex_t retired_lock;
    struct rill__rpc_method *retired;
    /* the pool */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    struct rill_list queue;
    bool stop;
    pthread_t *threads;
    int nthreads;
    /* open connections, told GOAWAY at shutdown (the lock also orders shut
     * against server_active, so a connection is listed or refused) */
    pthread_mutex_t conns_lock;
    struct rill_list open_conns;
    /* stats */
    atomic_uint_fast64_t conns, conns_total, conns_refused, in_flight, qlen, calls, unimpl, dropped,
        bytes_in, bytes_out;
};

/* Look up a method and take a reference, or NULL (also after shutdown).
 * Registers the calling thread as an RCU reader on first use. */
struct rill__rpc_method *rill__rpc_method_get(struct rill_rpc_server *s, const char *service,
                                              const char *method);
void rill__rpc_method_put(struct rill__rpc_method *m);
/* Record an answer in @m's metrics. */
void rill__rpc_mstats_record(struct rill__rpc_mstats *st, int status, uint64_t latency_ns);
/* Create / tear down the hash (server_new / server_free). */
int rill__rpc_registry_init(struct rill_rpc_server *s);
void rill__rpc_registry_shutdown(struct rill_rpc_server *s);
void rill__rpc_registry_destroy(struct rill_rpc_server *s);

void rill__rpc_server_retain(struct rill_rpc_server *s);
void rill__rpc_server_release(struct rill_rpc_server *s);

#endif /* RILL_RPC_SERVER_INTERNAL_H */
