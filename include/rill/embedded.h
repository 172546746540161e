/* The embedded channel: a channel with no I/O whose pipeline runs on the
 * caller's thread (Netty's EmbeddedChannel). Tests push inbound messages
 * and pop what reaches the tail, write outbound messages and pop what
 * reaches the head, run pending tasks, and move a manual clock so timers
 * fire. Every handler and codec in rill is unit-tested through it.
 *
 * The channel lives on a loop of its own with a manual clock that no
 * thread runs: during each call below the calling thread acts as that
 * loop's thread, so handlers run right there, and each call that fires
 * events runs the tasks they queued before returning (as Netty does).
 * Between calls, loop-only functions (rill_pipeline_add_last, attributes)
 * may be called directly: a loop that no thread runs may be driven by any
 * one thread. Other threads' calls (rill_channel_write from elsewhere)
 * become tasks that run at the next call.
 *
 * Ownership: messages pushed in are consumed; messages popped out are the
 * caller's (one reference each). Exceptions that reach the tail are kept
 * (the last one) instead of logged.
 *
 * Thread: every function here runs on the caller's thread; use one
 * embedded channel from one thread at a time. */
#ifndef RILL_EMBEDDED_H
#define RILL_EMBEDDED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rill_channel;
struct rill_handler;
struct rill_loop;
struct rill_msg;
struct rill_pipeline;
struct rill_promise;
struct rill_embedded;

/* A handler to install at creation (add_last order). */
struct rill_embedded_handler {
    const char *name; /* NULL: generated */
    const struct rill_handler *h;
    void *arg;
};

/* Create an embedded channel, add @n handlers (may be 0), register it and
 * make it active (added, registered and active fire, in that order).
 * Returns 0, -ENOMEM, or a handler's added() error (then nothing is left
 * behind). The channel id and transport name ("embedded") work as usual. */
int rill_embedded_new(const struct rill_embedded_handler *handlers, size_t n,
                      struct rill_embedded **out);

/* The channel, its pipeline and its loop. Borrowed: valid until
 * rill_embedded_free (take a channel reference to keep it longer). */
struct rill_channel *rill_embedded_channel(struct rill_embedded *e);
struct rill_pipeline *rill_embedded_pipeline(struct rill_embedded *e);
struct rill_loop *rill_embedded_loop(struct rill_embedded *e);

/* ---- inbound ---- */

/* Fire read(@msg) then read_complete from the head. Takes ownership of
 * @msg (released when the channel is closed). Returns the number of
 * messages waiting at the tail, or RILL_ECLOSED. */
int rill_embedded_write_inbound(struct rill_embedded *e, struct rill_msg *msg);
/* Fire read for each of @n messages, then one read_complete. Takes
 * ownership of all. Returns as rill_embedded_write_inbound. */
int rill_embedded_write_inbound_n(struct rill_embedded *e, struct rill_msg *const *msgs, size_t n);
/* Fire read_complete alone. */
void rill_embedded_read_complete(struct rill_embedded *e);
/* The oldest message that reached the tail, or NULL. The caller owns it. */
struct rill_msg *rill_embedded_read_inbound(struct rill_embedded *e);
size_t rill_embedded_inbound_count(const struct rill_embedded *e);

/* ---- outbound ---- */

/* Write @msg from the tail and flush. Takes ownership. Returns the number
 * of messages waiting at the head, or the write's error when it failed
 * right away (RILL_ECLOSED after close, a handler's failure). */
int rill_embedded_write_outbound(struct rill_embedded *e, struct rill_msg *msg);
/* Write without flushing (@p may be NULL; the caller keeps its reference).
 * Takes ownership of @msg. */
void rill_embedded_write(struct rill_embedded *e, struct rill_msg *msg, struct rill_promise *p);
/* Flush from the tail. */
void rill_embedded_flush(struct rill_embedded *e);
/* The oldest message flushed to the head, or NULL. The caller owns it. */
struct rill_msg *rill_embedded_read_outbound(struct rill_embedded *e);
size_t rill_embedded_outbound_count(const struct rill_embedded *e);

/* ---- tasks, time, exceptions ---- */

/* Run queued tasks until none is left (tasks they queue too). Returns how
 * many ran. */
int rill_embedded_run_pending(struct rill_embedded *e);
/* Move the manual clock forward by @ns: every timer due by then fires, in
 * deadline order; then pending tasks run. Returns the timers run. */
int rill_embedded_advance_clock(struct rill_embedded *e, uint64_t ns);
/* The manual clock (starts at 0). */
uint64_t rill_embedded_now(const struct rill_embedded *e);
/* Run fn(channel, arg) as the loop's thread, then pending tasks. */
void rill_embedded_run(struct rill_embedded *e, void (*fn)(struct rill_channel *ch, void *arg),
                       void *arg);

/* The last exception that reached the tail since the previous call: its
 * error (< 0), or 0 when none; *why (may be NULL) gets its text, or NULL
 * (valid until the next call on @e). Clears it. */
int rill_embedded_take_exception(struct rill_embedded *e, const char **why);

/* ---- closing ---- */

bool rill_embedded_is_open(const struct rill_embedded *e);
/* Close through the pipeline (tail to head), then run pending tasks:
 * inactive and unregistered have fired when this returns. */
void rill_embedded_close(struct rill_embedded *e);
/* Close, run pending tasks, release every message still waiting at the
 * tail or the head and count them in *@leftover (may be NULL). Returns the
 * exception left untaken (as take_exception), else 0. */
int rill_embedded_finish(struct rill_embedded *e, size_t *leftover);
/* Finish if not done, drop the channel reference and free the loop. Give
 * back channel references you took first. NULL is a no-op. */
void rill_embedded_free(struct rill_embedded *e);

#endif /* RILL_EMBEDDED_H */
