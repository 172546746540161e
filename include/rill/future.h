/* Promises (the completing side) and futures (the observing side) are one
 * reference-counted object, struct rill_promise. A promise completes exactly
 * once: with success and a value, or with an error code (< 0). Cancelling is
 * failing with -ECANCELED.
 *
 * Listeners run on the loop that owns the promise: inline when it completes
 * on that loop's thread, else as a task posted there. A listener added to a
 * promise that is already complete runs at once on the caller's thread. A
 * promise without a loop runs its listeners on the completing thread.
 *
 * Every function here: Thread: any. */
#ifndef RILL_FUTURE_H
#define RILL_FUTURE_H

#include <stdbool.h>
#include <stdint.h>

struct rill_loop;
struct rill_promise;

typedef void rill_future_fn(struct rill_promise *p, void *arg);
typedef void rill_value_free_fn(void *value);

/* Create a pending promise owned by @loop (may be NULL). Returns 0 and a new
 * reference in *out, or -ENOMEM. */
int rill_promise_new(struct rill_loop *loop, struct rill_promise **out);

/* Returns @p with one more reference. */
struct rill_promise *rill_promise_retain(struct rill_promise *p);
/* Give back one reference; the last one frees the promise (and its value,
 * through the value's free function). Pending listeners of a promise freed
 * before completion never run. */
void rill_promise_release(struct rill_promise *p);

/* Complete with success. @value_free (may be NULL) is called on @value
 * when the promise is freed; the promise owns @value from this call on, even
 * when this returns -EALREADY (then @value is freed at once). */
int rill_promise_succeed(struct rill_promise *p, void *value, rill_value_free_fn *value_free);

/* Complete with an error; @err must be < 0. Returns 0, or -EALREADY when
 * already complete, -EINVAL when @err >= 0. */
int rill_promise_fail(struct rill_promise *p, int err);

/* Fail with -ECANCELED (failing with -ECANCELED is cancelling too).
 * Returns 0 or -EALREADY. */
int rill_promise_cancel(struct rill_promise *p);

bool rill_promise_is_done(const struct rill_promise *p);
bool rill_promise_is_cancelled(const struct rill_promise *p);

/* The outcome: -EINPROGRESS while pending, 0 on success (with *value set
 * when @value is not NULL; borrowed, valid while you hold a reference to
 * @p), or the error. */
int rill_promise_result(const struct rill_promise *p, void **value);

/* The loop that owns @p (borrowed), or NULL. */
struct rill_loop *rill_promise_loop(const struct rill_promise *p);

/* Run fn(p, arg) once @p completes (see the top of this file for where).
 * Listeners run in the order they were added. Returns 0 or -ENOMEM. */
int rill_promise_add_listener(struct rill_promise *p, rill_future_fn *fn, void *arg);

/* Block until @p completes or @timeout_ns passes (< 0: no limit). Waiters
 * wake as soon as the outcome is set, possibly before listeners have run.
 * Returns
 * the outcome as rill_promise_result, -ETIMEDOUT, or -EDEADLK when called on
 * the thread of the loop that owns @p (it could never complete). */
int rill_promise_wait(struct rill_promise *p, int64_t timeout_ns);

#endif /* RILL_FUTURE_H */
