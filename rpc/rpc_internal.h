/* Private to rpc/: frame encoding, connection-local name interning, RCU
 * thread registration, ThreadSanitizer annotations. */
#ifndef RILL_RPC_INTERNAL_H
#define RILL_RPC_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rpc_frame.h"

struct rill_buf;
struct rill_channel;

/* ThreadSanitizer cannot see the ordering liburcu's hash table provides
 * (its atomics are inline assembly in an uninstrumented library), so
 * publication and reclamation are annotated as release/acquire pairs. */
#if defined(__SANITIZE_THREAD__)
#define RILL_RPC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RILL_RPC_TSAN 1
#endif
#endif
#ifdef RILL_RPC_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define rill__rpc_tsan_acquire(p) __tsan_acquire(p)
#define rill__rpc_tsan_release(p) __tsan_release(p)
#else
#define rill__rpc_tsan_acquire(p) ((void)(p))
#define rill__rpc_tsan_release(p) ((void)(p))
#endif

/* Encoder-side interning: (service, method) -> small id, per connection. */
struct rill__rpc_intern {
    struct rill__rpc_name {
        char *service, *method;
        uint32_t hash;
    } * v;
    uint32_t n, alloc;
    uint32_t *slots; /* open addressing: index + 1, 0 = empty */
    uint32_t nslots;
};

void rill__rpc_intern_free(struct rill__rpc_intern *t);
/* The id (>= 1) of the pair, or 0 when not yet defined. */
uint32_t rill__rpc_intern_find(const struct rill__rpc_intern *t, const char *service,
                               const char *method);
/* Define the pair; returns its id (n + 1) or -ENOMEM / RILL_ETOOLARGE. */
int rill__rpc_intern_add(struct rill__rpc_intern *t, const char *service, const char *method);

/* Encode @f into *@out (the encoder base's buffer): length, header, body,
 * then the payload appended without copying. Request names come from
 * @names (defined there on first use). Returns 0, RILL_ETOOLARGE (over
 * @max_frame; nothing is defined then), -EINVAL or -ENOMEM. */
int rill__rpc_encode(const struct rill_rpc_frame *f, struct rill__rpc_intern *names,
                     size_t max_frame, struct rill_buf **out);

/* The bytes after the length field @f takes on the wire, with the request's
 * names (@with_names) or with its interned id only. */
size_t rill__rpc_wire_size(const struct rill_rpc_frame *f, bool with_names);

/* Thread: loop thread only. What the rpc codec on @ch (found through a
 * channel attribute it sets while in the pipeline) will send: 1 when the
 * pair is interned (its next request carries the id alone), 0 when the
 * next request carries the names; -ENOENT when @ch has no rpc codec. */
int rill__rpc_codec_interned(struct rill_channel *ch, const char *service, const char *method);
/* Thread: loop thread only. Bytes the codec on @ch decoded (preamble and
 * whole frames) and wrote; -ENOENT when @ch has no rpc codec. */
int rill__rpc_codec_bytes(struct rill_channel *ch, uint64_t *in, uint64_t *out);

/* Latency histogram (latency.c), shared by method and client metrics:
 * log-linear, 4 buckets per power of two of ns. Thread: any (atomics). */
#define RILL__RPC_HIST_BUCKETS 256
struct rill__rpc_hist {
    atomic_uint_fast64_t b[RILL__RPC_HIST_BUCKETS];
    atomic_uint_fast64_t max_ns;
};
void rill__rpc_hist_record(struct rill__rpc_hist *h, uint64_t ns);
/* p50 and p99 are bucket upper bounds (at most 25% high), capped at max. */
void rill__rpc_hist_read(struct rill__rpc_hist *h, uint64_t *p50, uint64_t *p99, uint64_t *max);

/* Make the calling thread an RCU reader (once per thread; undone when the
 * thread exits). */
void rill__rpc_rcu_register(void);

#endif /* RILL_RPC_INTERNAL_H */
