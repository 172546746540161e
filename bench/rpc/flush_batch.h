/* A pipeline stage for the benchmark (Netty's FlushConsolidationHandler in
 * its simplest form): flushes requested while the transport delivers a read
 * batch are held and issued once at read_complete, so N answers written
 * during one read leave in one send instead of N. Flushes from outside a
 * read (tasks, other threads) pass at once, so nothing waits longer than
 * the batch being processed.
 *
 * The RPC server and client handlers flush every frame they write; this
 * stage measures what batching those flushes would gain (run.sh's
 * "rill+batch" peer). Add it first in the pipeline (next to the transport).
 * Thread: loop thread only, like every handler. */
#ifndef RILL_BENCH_RPC_FLUSH_BATCH_H
#define RILL_BENCH_RPC_FLUSH_BATCH_H

#include <stdbool.h>

#include "rill/pipeline.h"

struct flush_batch {
    bool in_read, pending;
};

static void flush_batch_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    ((struct flush_batch *)rill_ctx_state(ctx))->in_read = true;
    rill_ctx_fire_read(ctx, msg);
}

static void flush_batch_read_complete(struct rill_ctx *ctx)
{
    struct flush_batch *st = rill_ctx_state(ctx);
    st->in_read = false;
    rill_ctx_fire_read_complete(ctx);
    if (st->pending) {
        st->pending = false;
        rill_ctx_flush(ctx);
    }
}

static void flush_batch_flush(struct rill_ctx *ctx)
{
    struct flush_batch *st = rill_ctx_state(ctx);
    if (st->in_read)
        st->pending = true;
    else
        rill_ctx_flush(ctx);
}

static void flush_batch_inactive(struct rill_ctx *ctx)
{
    struct flush_batch *st = rill_ctx_state(ctx);
    st->in_read = st->pending = false;
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler flush_batch_handler = {
    .name = "flush-batch",
    .ctx_size = sizeof(struct flush_batch),
    .read = flush_batch_read,
    .read_complete = flush_batch_read_complete,
    .inactive = flush_batch_inactive,
    .flush = flush_batch_flush,
};

#endif /* RILL_BENCH_RPC_FLUSH_BATCH_H */
