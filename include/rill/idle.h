/* Idle detection and I/O timeouts (Netty's IdleStateHandler,
 * ReadTimeoutHandler and WriteTimeoutHandler).
 *
 * rill_idle_handler fires a user event when the channel has seen no read,
 * no completed write, or neither, for a configured time:
 *
 *     struct rill_idle_config cfg = { .reader_idle_ns = 30 * RILL_NS_PER_S };
 *     rill_pipeline_add_first(pl, "idle", &rill_idle_handler, &cfg);
 *     ...
 *     static void on_event(struct rill_ctx *ctx, const struct rill_event *ev) {
 *         if (ev->type == RILL_EVENT_IDLE_READER) {
 *             const struct rill_idle_event *ie = ev->data;
 *             ... ie->first: first idle period since the last read ...
 *         }
 *     }
 *
 * Activity: a read is a read event followed by its read_complete (the
 * clock is taken at read_complete, and a read still in progress is never
 * idle); a write is a write that passed through the handler and completed
 * (its promise succeeded or failed). Writes started by handlers between
 * the idle handler and the head are not seen: put it near the head.
 *
 * Timers run on the channel's loop from the moment the channel is active
 * (or from added() when it already is) until it goes inactive or the
 * handler is removed; after either, no event fires and no timer is left.
 * A read does not touch the timer: the handler records when it happened,
 * and the timer, when it fires early, re-arms itself for the rest.
 *
 * rill_read_timeout_handler closes the channel when no read happened for
 * the timeout; rill_write_timeout_handler closes it when one write has not
 * completed within the timeout. Both fire an exception event with
 * RILL_EDEADLINE and a text ("read timed out after 30000 ms") toward the
 * tail first, once, then close the channel with RILL_EDEADLINE as its
 * close reason (rill_channel_close_with: queued writes fail with it).
 *
 * Configs are copied by added(): the caller may pass a temporary. added()
 * fails with -EINVAL for a bad config (NULL, all times 0, a time above
 * RILL_IDLE_MAX_NS), and the add is undone.
 *
 * Thread: loop thread only (the handlers run on the channel's loop; add
 * them from it or before the channel is registered). */
#ifndef RILL_IDLE_H
#define RILL_IDLE_H

#include <stdbool.h>
#include <stdint.h>

struct rill_handler;

/* Longest accepted time: about 146 years, far from overflowing the clock. */
#define RILL_IDLE_MAX_NS (UINT64_C(1) << 62)

struct rill_idle_config {
    uint64_t reader_idle_ns; /* no read for this long: RILL_EVENT_IDLE_READER; 0 = off */
    uint64_t writer_idle_ns; /* no write completed: RILL_EVENT_IDLE_WRITER; 0 = off */
    uint64_t all_idle_ns;    /* neither: RILL_EVENT_IDLE_ALL; 0 = off */
    /* Count output that is still draining as write activity (Netty's
     * observeOutput): when the bytes queued and not yet handed to the
     * transport changed since the last check, a slow peer that keeps
     * taking data does not make the channel writer- or all-idle. The first
     * idle event of a period always fires. */
    bool observe_output;
};

/* The data of an idle user event (struct rill_event.data), borrowed for
 * the callback. */
struct rill_idle_event {
    int type; /* RILL_EVENT_IDLE_READER, _WRITER or _ALL, as the event's */
    /* True for the first event of an idle period (Netty's
     * FIRST_READER_IDLE_STATE), false for the ones that follow every
     * further idle time while the channel stays idle. Activity starts a
     * new period. */
    bool first;
};

/* Arg: const struct rill_idle_config * (copied). Fires RILL_EVENT_IDLE_*
 * user events toward the tail; passes every event and operation on. */
extern const struct rill_handler rill_idle_handler;

struct rill_timeout_config {
    uint64_t timeout_ns; /* > 0 and at most RILL_IDLE_MAX_NS */
};

/* Arg: const struct rill_timeout_config * (copied). No read for the
 * timeout: exception RILL_EDEADLINE "read timed out after N ms", then
 * close. */
extern const struct rill_handler rill_read_timeout_handler;

/* Arg: const struct rill_timeout_config * (copied). A write that passed
 * through the handler and has not completed within the timeout: exception
 * RILL_EDEADLINE "write timed out after N ms", then close (which fails
 * the queued writes). */
extern const struct rill_handler rill_write_timeout_handler;

#endif /* RILL_IDLE_H */
