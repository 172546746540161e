/* The latency histogram of the RPC metrics (server methods and client
 * handlers): log-linear, 4 buckets per power of two of nanoseconds, so a
 * percentile read as its bucket's upper bound is at most 25% high. */
#include "rpc/rpc_internal.h"

static unsigned bucket_of(uint64_t ns)
{
    if (ns < 4)
        return (unsigned)ns;
    unsigned lg = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (lg - 2)) & 3u;
    unsigned b = lg * 4 + sub;
    return b < RILL__RPC_HIST_BUCKETS ? b : RILL__RPC_HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(unsigned b)
{
    if (b < 4)
        return b;
    unsigned lg = b / 4, sub = b % 4;
    return ((4ull + sub + 1) << (lg - 2)) - 1;
}

void rill__rpc_hist_record(struct rill__rpc_hist *h, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->b[bucket_of(ns)], 1, memory_order_relaxed);
    uint64_t mx = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
    while (ns > mx && !atomic_compare_exchange_weak(&h->max_ns, &mx, ns))
        ;
}

static uint64_t percentile(const uint64_t *h, uint64_t total, double p)
{
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total + 0.999999), seen = 0;
    for (unsigned b = 0; b < RILL__RPC_HIST_BUCKETS; b++) {
        seen += h[b];
        if (seen >= want)
            return bucket_upper(b);
    }
    return bucket_upper(RILL__RPC_HIST_BUCKETS - 1);
}

void rill__rpc_hist_read(struct rill__rpc_hist *h, uint64_t *p50, uint64_t *p99, uint64_t *max)
{
    uint64_t v[RILL__RPC_HIST_BUCKETS], total = 0;
    for (unsigned b = 0; b < RILL__RPC_HIST_BUCKETS; b++)
        total += v[b] = atomic_load_explicit(&h->b[b], memory_order_relaxed);
    *max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
    *p50 = percentile(v, total, 0.50);
    *p99 = percentile(v, total, 0.99);
    if (*p99 > *max)
        *p99 = *max;
    if (*p50 > *max)
        *p50 = *max;
}
