/* Private to the pool (rpc/pool.c) and its balancer (rpc/balancer.c). */
#ifndef RILL_RPC_POOL_INTERNAL_H
#define RILL_RPC_POOL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rpc_pool.h"

struct rill__rpc_endpoint;

/* What a balancer sees of an endpoint: its state and load. */
struct rill__rpc_lb_view {
    struct rill__rpc_endpoint *ep;
    bool up;
    uint64_t in_flight;
};

/* Pick among @n endpoints (@n > 0) by @lb, skipping the ones that are
 * down, and @avoid when another one is up. @seq is a ticket taken from a
 * shared counter: round robin starts there, least-outstanding breaks ties
 * from there so equal loads rotate. Returns an index, or -1 when none is
 * up. Pure: Thread: any. */
int rill__rpc_lb_pick(enum rill_rpc_lb lb, const struct rill__rpc_lb_view *v, size_t n,
                      const struct rill__rpc_endpoint *avoid, uint64_t seq);

/* The backoff before attempt @attempt (>= 2): min(max, initial *
 * 2^(attempt-2)) with full jitter in [b/2, b]. @rnd: a random 64-bit
 * value. Thread: any. */
uint64_t rill__rpc_backoff_ns(uint64_t initial, uint64_t max, int attempt, uint64_t rnd);

#endif /* RILL_RPC_POOL_INTERNAL_H */
