/* Per-channel chain of handlers (Netty's ChannelPipeline).
 *
 *   head (transport) <-> ctx <-> ctx <-> ... <-> tail
 *
 * Inbound events travel head to tail; outbound operations travel from the
 * calling context toward the head, where the transport carries them out.
 * A handler is a const table of callbacks plus per-context state; a NULL
 * callback passes the event on, and the pipeline skips such contexts without
 * calling them (each context keeps a mask of the callbacks it has).
 *
 * Ownership: a read or write callback that receives a message owns one
 * reference and must forward it, release it, or keep it and release it
 * later. rill_ctx_fire_read and rill_ctx_write take ownership of the message
 * on every path. A message that reaches the tail is released (debug log);
 * an exception that reaches the tail is logged with the channel id.
 *
 * Changes while events run: see "building the pipeline" below; a context
 * removed inside a callback stays valid until that callback returns.
 *
 * Thread: every function here is loop thread only (the channel's loop),
 * unless it says otherwise; a loop that no thread runs (the embedded
 * channel's, between its calls) may be driven by any one thread. Callbacks
 * run on the loop's thread. */
#ifndef RILL_PIPELINE_H
#define RILL_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rill_addr;
struct rill_channel;
struct rill_ctx;
struct rill_msg;
struct rill_pipeline;
struct rill_promise;

/* A user event (Netty's userEventTriggered argument). @type picks the
 * meaning of @data; rill's own types are below RILL_EVENT_USER. The event
 * is borrowed: valid during the callback only. */
struct rill_event {
    int type;
    void *data;
};

enum rill_event_type {
    RILL_EVENT_INPUT_SHUTDOWN = 1,  /* the peer shut down its output (read EOF / EPOLLRDHUP) */
    RILL_EVENT_OUTPUT_SHUTDOWN = 2, /* our output was shut down */
    RILL_EVENT_IDLE_READER = 3,
    RILL_EVENT_IDLE_WRITER = 4,
    RILL_EVENT_IDLE_ALL = 5,
    RILL_EVENT_USER = 1000,
};

struct rill_handler {
    const char *name; /* the handler's kind, for logs */
    size_t ctx_size;  /* bytes of zeroed state per context: rill_ctx_state() */

    /* Lifecycle of the context. added() may fail (0 or -errno): the add is
     * then undone and its error returned. removed() releases what the
     * state holds. */
    int (*added)(struct rill_ctx *ctx);
    void (*removed)(struct rill_ctx *ctx);

    /* Inbound. */
    void (*registered)(struct rill_ctx *ctx);
    void (*active)(struct rill_ctx *ctx);
    void (*read)(struct rill_ctx *ctx, struct rill_msg *msg); /* owns msg */
    void (*read_complete)(struct rill_ctx *ctx);
    void (*writability_changed)(struct rill_ctx *ctx, bool writable);
    void (*user_event)(struct rill_ctx *ctx, const struct rill_event *ev);
    /* err < 0 names what went wrong; @why is a borrowed message (may be NULL). */
    void (*exception)(struct rill_ctx *ctx, int err, const char *why);
    void (*inactive)(struct rill_ctx *ctx);
    void (*unregistered)(struct rill_ctx *ctx);

    /* Outbound. Promises may be NULL ("don't care"); a callback that
     * forwards the operation forwards the promise with it. */
    void (*bind)(struct rill_ctx *ctx, const struct rill_addr *local, struct rill_promise *p);
    void (*connect)(struct rill_ctx *ctx, const struct rill_addr *remote,
                    const struct rill_addr *local, struct rill_promise *p);
    void (*disconnect)(struct rill_ctx *ctx, struct rill_promise *p);
    void (*close)(struct rill_ctx *ctx, struct rill_promise *p);
    void (*read_request)(struct rill_ctx *ctx); /* Netty's read(): ask for more input */
    void (*write)(struct rill_ctx *ctx, struct rill_msg *msg,
                  struct rill_promise *p); /* owns msg */
    void (*flush)(struct rill_ctx *ctx);
};

/* ---- building the pipeline ----
 * Names are unique per pipeline (-EEXIST); a NULL name gets a generated
 * one ("<handler name>#<n>"). @h must outlive every pipeline
 * it is in; @arg is borrowed and reachable through rill_ctx_arg(). Changes
 * are allowed inside callbacks of the same pipeline: an event already on its
 * way continues along the neighbours the context had, none is lost or
 * reordered, and a removed context's memory lives until the event dispatch
 * that is running returns. Returns 0, -EEXIST, -ENOENT (no such @base),
 * -ENOMEM, or the error of the handler's added(). */
int rill_pipeline_add_first(struct rill_pipeline *pl, const char *name,
                            const struct rill_handler *h, void *arg);
int rill_pipeline_add_last(struct rill_pipeline *pl, const char *name, const struct rill_handler *h,
                           void *arg);
int rill_pipeline_add_before(struct rill_pipeline *pl, const char *base, const char *name,
                             const struct rill_handler *h, void *arg);
int rill_pipeline_add_after(struct rill_pipeline *pl, const char *base, const char *name,
                            const struct rill_handler *h, void *arg);
/* Remove by name; -ENOENT if absent. The handler's removed() runs before
 * this returns; events it forwards from there still reach its old
 * neighbours. */
int rill_pipeline_remove(struct rill_pipeline *pl, const char *name);
/* Remove @ctx itself (a handler removing itself); -ENOENT when it was
 * removed already or is not a handler's context. */
int rill_pipeline_remove_ctx(struct rill_ctx *ctx);
/* Replace @old with a new context (@name, @h, @arg; a NULL @name keeps
 * the old name) at the same place: the new handler's added() runs first,
 * then the old one's removed(), so what the old one forwards while being
 * removed reaches the new one. On failure @old stays in place. */
int rill_pipeline_replace(struct rill_pipeline *pl, const char *old, const char *name,
                          const struct rill_handler *h, void *arg);

/* The context named @name, or NULL. Borrowed: valid until it is removed. */
struct rill_ctx *rill_pipeline_get(struct rill_pipeline *pl, const char *name);
/* Names of the user contexts head to tail, into @names (up to @max).
 * Returns the count. Borrowed strings. */
int rill_pipeline_names(struct rill_pipeline *pl, const char **names, int max);
struct rill_channel *rill_pipeline_channel(struct rill_pipeline *pl);

/* Fire an inbound event from the head, as if the transport had (tests,
 * handlers that re-inject). read takes ownership of @msg. Transports use
 * the channel core's entry points instead, which also drive auto-read. */
void rill_pipeline_fire_read(struct rill_pipeline *pl, struct rill_msg *msg);
void rill_pipeline_fire_read_complete(struct rill_pipeline *pl);
void rill_pipeline_fire_user_event(struct rill_pipeline *pl, const struct rill_event *ev);
void rill_pipeline_fire_exception(struct rill_pipeline *pl, int err, const char *why);

/* ---- inside a handler: the context ---- */

/* Per-context state (ctx_size zeroed bytes), the handler's @arg, the
 * channel, the pipeline, and the context's name. Borrowed. */
void *rill_ctx_state(struct rill_ctx *ctx);
void *rill_ctx_arg(struct rill_ctx *ctx);
struct rill_channel *rill_ctx_channel(struct rill_ctx *ctx);
struct rill_pipeline *rill_ctx_pipeline(struct rill_ctx *ctx);
const char *rill_ctx_name(struct rill_ctx *ctx);
/* True once the context has been removed from its pipeline. */
bool rill_ctx_is_removed(struct rill_ctx *ctx);

/* Pass an inbound event to the next context toward the tail. */
void rill_ctx_fire_registered(struct rill_ctx *ctx);
void rill_ctx_fire_active(struct rill_ctx *ctx);
void rill_ctx_fire_read(struct rill_ctx *ctx, struct rill_msg *msg); /* takes ownership */
void rill_ctx_fire_read_complete(struct rill_ctx *ctx);
void rill_ctx_fire_writability_changed(struct rill_ctx *ctx, bool writable);
void rill_ctx_fire_user_event(struct rill_ctx *ctx, const struct rill_event *ev);
void rill_ctx_fire_exception(struct rill_ctx *ctx, int err, const char *why);
void rill_ctx_fire_inactive(struct rill_ctx *ctx);
void rill_ctx_fire_unregistered(struct rill_ctx *ctx);

/* Start an outbound operation at the next context toward the head. */
void rill_ctx_bind(struct rill_ctx *ctx, const struct rill_addr *local, struct rill_promise *p);
void rill_ctx_connect(struct rill_ctx *ctx, const struct rill_addr *remote,
                      const struct rill_addr *local, struct rill_promise *p);
void rill_ctx_disconnect(struct rill_ctx *ctx, struct rill_promise *p);
void rill_ctx_close(struct rill_ctx *ctx, struct rill_promise *p);
void rill_ctx_read_request(struct rill_ctx *ctx);
/* Takes ownership of @msg even on failure (then released, @p failed). */
void rill_ctx_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p);
void rill_ctx_flush(struct rill_ctx *ctx);
void rill_ctx_write_and_flush(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p);

#endif /* RILL_PIPELINE_H */
