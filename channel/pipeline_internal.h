/* Pipeline internals shared by pipeline.c and channel.c. Private to the
 * channel core: transports use channel_internal.h only. */
#ifndef RILL_PIPELINE_INTERNAL_H
#define RILL_PIPELINE_INTERNAL_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/loop_internal.h"
#include "rill/log.h"
#include "rill/pipeline.h"

/* Debug check for loop-thread-only calls that also admits a thread
 * driving a loop nobody runs (the embedded channel's between calls, or a
 * loop not started yet), as rill_loop_run_once allows. */
static inline void rill__assert_loop_or_idle(struct rill_loop *loop)
{
#if RILL_DEBUG
    if (!rill_loop_in_thread(loop) && atomic_load(&loop->in_run))
        RILL_PANIC("loop-thread-only channel call made from another thread (loop %s)",
                   rill_loop_name(loop));
#else
    (void)loop;
#endif
}

/* One bit per callback slot: a context's mask says which slots it has, so
 * a walk skips contexts without calling them (Netty's executionMask). */
enum {
    RILL__EV_REGISTERED = 1u << 0,
    RILL__EV_ACTIVE = 1u << 1,
    RILL__EV_READ = 1u << 2,
    RILL__EV_READ_COMPLETE = 1u << 3,
    RILL__EV_WRITABILITY = 1u << 4,
    RILL__EV_USER_EVENT = 1u << 5,
    RILL__EV_EXCEPTION = 1u << 6,
    RILL__EV_INACTIVE = 1u << 7,
    RILL__EV_UNREGISTERED = 1u << 8,
    RILL__EV_BIND = 1u << 9,
    RILL__EV_CONNECT = 1u << 10,
    RILL__EV_DISCONNECT = 1u << 11,
    RILL__EV_CLOSE = 1u << 12,
    RILL__EV_READ_REQUEST = 1u << 13,
    RILL__EV_WRITE = 1u << 14,
    RILL__EV_FLUSH = 1u << 15,
    RILL__EV_INBOUND = (1u << 9) - 1,
    RILL__EV_OUTBOUND = ((1u << 16) - 1) & ~((1u << 9) - 1),
};

struct rill_ctx {
    /* A removed context keeps the neighbours it had, so an event that is
     * passing through it when it goes still reaches them. */
    struct rill_ctx *prev, *next;
    struct rill_pipeline *pl;
    const struct rill_handler *h;
    void *arg;
    unsigned mask; /* RILL__EV_* slots the handler has; 0 once removed */
    bool removed;
    bool user;                   /* not the head or the tail */
    struct rill_ctx *grave_next; /* removed, waiting for the dispatch depth to reach 0 */
    const char *name;            /* stored after the state */
    alignas(16) unsigned char state[];
};

struct rill_pipeline {
    struct rill_channel *ch;
    struct rill_ctx *head, *tail;
    unsigned depth;             /* callbacks of this pipeline on the stack */
    struct rill_ctx *graveyard; /* removed contexts freed when depth returns to 0 */
    unsigned name_seq;
};

/* Thread: any (construction). The head performs outbound operations (its
 * handler has every outbound slot), the tail ends inbound events (every
 * inbound slot). Returns 0 or -ENOMEM. */
int rill__pipeline_new(struct rill_channel *ch, const struct rill_handler *head,
                       const struct rill_handler *tail, struct rill_pipeline **out);
/* Remove every user context, tail first, calling removed() (Netty's
 * pipeline destruction after unregistration). */
void rill__pipeline_remove_all(struct rill_pipeline *pl);
/* Free the pipeline (after remove_all; depth must be 0). */
void rill__pipeline_free(struct rill_pipeline *pl);

/* Lifecycle events fired from the head by the channel core. */
void rill__pipeline_fire_registered(struct rill_pipeline *pl);
void rill__pipeline_fire_active(struct rill_pipeline *pl);
void rill__pipeline_fire_inactive(struct rill_pipeline *pl);
void rill__pipeline_fire_unregistered(struct rill_pipeline *pl);
void rill__pipeline_fire_writability(struct rill_pipeline *pl, bool writable);

#endif /* RILL_PIPELINE_INTERNAL_H */
