/* Load balancing and backoff: pure functions over a snapshot of the
 * endpoints, so the policies are tested without sockets and the pool keeps
 * the locking. */
#include "rpc/pool_internal.h"

int rill__rpc_lb_pick(enum rill_rpc_lb lb, const struct rill__rpc_lb_view *v, size_t n,
                      const struct rill__rpc_endpoint *avoid, uint64_t seq)
{
    if (n == 0)
        return -1;
    size_t start = (size_t)(seq % n);
    int best = -1, fallback = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (!v[i].up)
            continue;
        if (avoid && v[i].ep == avoid) {
            /* Only when nothing else is up: a retry prefers another one. */
            if (fallback < 0)
                fallback = (int)i;
            continue;
        }
        if (lb == RILL_RPC_LB_ROUND_ROBIN)
            return (int)i;
        if (best < 0 || v[i].in_flight < v[best].in_flight)
            best = (int)i;
    }
    return best >= 0 ? best : fallback;
}

uint64_t rill__rpc_backoff_ns(uint64_t initial, uint64_t max, int attempt, uint64_t rnd)
{
    uint64_t b = initial;
    for (int i = 2; i < attempt && b < max; i++)
        b = b > UINT64_MAX / 2 ? UINT64_MAX : b * 2;
    if (b > max)
        b = max;
    /* Full jitter over the upper half: spreads synchronized clients while
     * keeping the growth visible. */
    uint64_t half = b / 2;
    return half + (half ? rnd % (half + 1) : 0);
}
