/* Timers on a loop: once, at a fixed rate, or with a fixed delay. Callbacks
 * run on the loop's thread in deadline order (ties in scheduling order). */
#ifndef RILL_TIMER_H
#define RILL_TIMER_H

#include <stdbool.h>
#include <stdint.h>

struct rill_loop;
struct rill_timer;

enum rill_timer_mode {
    RILL_TIMER_ONCE,        /* run once after the delay */
    RILL_TIMER_FIXED_RATE,  /* deadlines delay, delay+period, delay+2*period, ... */
    RILL_TIMER_FIXED_DELAY, /* next deadline = end of the previous run + period */
};

typedef void rill_timer_fn(struct rill_timer *t, void *arg);

/* Thread: any. Schedule fn(t, arg) on @loop after @delay_ns (loop clock),
 * then every @period_ns for the periodic modes (period must be > 0 there).
 * If @out is not NULL it receives a new reference to the timer, to pass to
 * rill_timer_cancel() and to give back with rill_timer_release(). Returns 0,
 * -EINVAL, -ENOMEM, or RILL_EREJECTED when the loop has terminated. */
int rill_timer_schedule(struct rill_loop *loop, uint64_t delay_ns, uint64_t period_ns,
                        enum rill_timer_mode mode, rill_timer_fn *fn, void *arg,
                        struct rill_timer **out);

/* Thread: any. Stop the timer. Returns 0 when fn will never run again and is
 * not running; -EINPROGRESS when fn was running on the loop thread at that
 * moment (it finishes; a periodic timer is not rescheduled); -EALREADY when
 * the timer had already completed or been cancelled. Called from fn itself,
 * it stops a periodic timer and returns 0. */
int rill_timer_cancel(struct rill_timer *t);

/* Thread: any. True once the timer has been cancelled (by the user or by
 * the loop's termination). */
bool rill_timer_is_cancelled(const struct rill_timer *t);

/* Thread: any. Give back the reference from rill_timer_schedule(). Does
 * not cancel the timer. */
void rill_timer_release(struct rill_timer *t);

#endif /* RILL_TIMER_H */
