/* Timers: a binary min-heap on (deadline, seq) per loop. Scheduling and
 * cancelling from other threads become tasks on the loop; the timer's state
 * word settles the races between the loop firing it and a user cancelling
 * it (PENDING -> RUNNING by the loop, PENDING/RUNNING -> CANCELLED by the
 * user). */
#include "core/loop_internal.h"

#include <errno.h>
#include <stdlib.h>

#include "rill/clock.h"
#include "rill/error.h"
#include "rill/log.h"

enum timer_state {
    T_PENDING = 0,
    T_RUNNING = 1,
    T_DONE = 2,
    T_CANCELLED = 3,
};

#define NOT_IN_HEAP SIZE_MAX

struct rill_timer {
    _Atomic unsigned refcnt;
    _Atomic int state;
    struct rill_loop *loop;
    uint64_t deadline, period, seq;
    enum rill_timer_mode mode;
    rill_timer_fn *fn;
    void *arg;
    size_t slot;
    struct rill_task add_task, cancel_task;
};

static void timer_release(struct rill_timer *t)
{
    if (atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) == 1)
        free(t);
}

void rill_timer_release(struct rill_timer *t)
{
    if (t)
        timer_release(t);
}

bool rill_timer_is_cancelled(const struct rill_timer *t)
{
    return atomic_load(&((struct rill_timer *)t)->state) == T_CANCELLED;
}

/* ---- heap ---- */

void rill__timers_init(struct rill_timer_heap *h)
{
    h->v = NULL;
    h->n = h->cap = 0;
    h->seq = 0;
}

void rill__timers_free(struct rill_timer_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

static bool before(const struct rill_timer *a, const struct rill_timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void place(struct rill_timer_heap *h, size_t i, struct rill_timer *t)
{
    h->v[i] = t;
    t->slot = i;
}

static void sift_up(struct rill_timer_heap *h, size_t i)
{
    struct rill_timer *t = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, h->v[parent]))
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct rill_timer_heap *h, size_t i)
{
    struct rill_timer *t = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(h->v[c + 1], h->v[c]))
            c++;
        if (!before(h->v[c], t))
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

static int heap_push(struct rill_timer_heap *h, struct rill_timer *t)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct rill_timer **v = realloc(h->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    t->seq = h->seq++;
    place(h, h->n++, t);
    sift_up(h, h->n - 1);
    return 0;
}

static void heap_remove(struct rill_timer_heap *h, struct rill_timer *t)
{
    size_t i = t->slot;
    if (i == NOT_IN_HEAP)
        return;
    t->slot = NOT_IN_HEAP;
    struct rill_timer *last = h->v[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    if (i > 0 && before(last, h->v[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

int64_t rill__timers_next(struct rill_loop *loop)
{
    struct rill_timer_heap *h = &loop->timers;
    if (h->n == 0)
        return -1;
    if (loop->manual_clock) /* only rill_loop_advance_clock moves time */
        return h->v[0]->deadline <= rill__loop_now(loop) ? 0 : -1;
    uint64_t now = rill_clock_now_ns();
    return h->v[0]->deadline <= now ? 0 : (int64_t)(h->v[0]->deadline - now);
}

int64_t rill__timers_next_deadline(struct rill_loop *loop)
{
    struct rill_timer_heap *h = &loop->timers;
    return h->n ? (int64_t)h->v[0]->deadline : -1;
}

int rill__timers_run(struct rill_loop *loop)
{
    struct rill_timer_heap *h = &loop->timers;
    uint64_t now = rill__loop_now(loop);
    int ran = 0;
    /* Timers re-armed by this round wait for the next one, so a zero
     * period cannot spin here forever. */
    uint64_t round_seq = h->seq;
    while (h->n > 0 && h->v[0]->deadline <= now && h->v[0]->seq < round_seq) {
        struct rill_timer *t = h->v[0];
        heap_remove(h, t);
        int expect = T_PENDING;
        if (!atomic_compare_exchange_strong(&t->state, &expect, T_RUNNING)) {
            timer_release(t); /* cancelled: the heap's reference */
            continue;
        }
        t->fn(t, t->arg);
        ran++;
        expect = T_RUNNING;
        if (t->mode == RILL_TIMER_ONCE) {
            atomic_compare_exchange_strong(&t->state, &expect, T_DONE);
            timer_release(t);
            continue;
        }
        /* Periodic: re-arm unless cancelled while running. */
        if (!atomic_compare_exchange_strong(&t->state, &expect, T_PENDING)) {
            timer_release(t);
            continue;
        }
        if (t->mode == RILL_TIMER_FIXED_RATE)
            t->deadline += t->period;
        else
            t->deadline =
                (loop->manual_clock ? rill__loop_now(loop) : rill_clock_now_ns()) + t->period;
        if (heap_push(h, t) < 0) {
            RILL_ERROR("loop %s: out of memory re-arming a timer; it is cancelled", loop->name);
            atomic_store(&t->state, T_CANCELLED);
            timer_release(t);
        }
    }
    return ran;
}

void rill__timers_cancel_all(struct rill_loop *loop)
{
    struct rill_timer_heap *h = &loop->timers;
    while (h->n > 0) {
        struct rill_timer *t = h->v[h->n - 1];
        heap_remove(h, t);
        atomic_store(&t->state, T_CANCELLED);
        timer_release(t);
    }
}

/* ---- scheduling ---- */

static void add_on_loop(void *arg)
{
    struct rill_timer *t = arg;
    struct rill_loop *loop = t->loop;
    if (atomic_load(&t->state) != T_PENDING || loop->timers_cancelled) {
        atomic_store(&t->state, T_CANCELLED);
        timer_release(t);
        return;
    }
    if (heap_push(&loop->timers, t) < 0) {
        RILL_ERROR("loop %s: out of memory scheduling a timer; it is cancelled", loop->name);
        atomic_store(&t->state, T_CANCELLED);
        timer_release(t);
    }
}

static void remove_on_loop(void *arg)
{
    struct rill_timer *t = arg;
    if (t->slot != NOT_IN_HEAP) {
        heap_remove(&t->loop->timers, t);
        timer_release(t); /* the heap's reference */
    }
    timer_release(t); /* the task's reference */
}

int rill_timer_schedule(struct rill_loop *loop, uint64_t delay_ns, uint64_t period_ns,
                        enum rill_timer_mode mode, rill_timer_fn *fn, void *arg,
                        struct rill_timer **out)
{
    if (!fn || (mode != RILL_TIMER_ONCE && period_ns == 0) || mode > RILL_TIMER_FIXED_DELAY)
        return -EINVAL;
    if (rill_loop_is_shutting_down(loop))
        return RILL_EREJECTED;
    struct rill_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    /* One reference for the heap (or the add task), one for the caller. */
    atomic_init(&t->refcnt, out ? 2 : 1);
    atomic_init(&t->state, T_PENDING);
    t->loop = loop;
    t->period = period_ns;
    t->mode = mode;
    t->fn = fn;
    t->arg = arg;
    t->slot = NOT_IN_HEAP;
    uint64_t now = loop->manual_clock ? rill__loop_now(loop) : rill_clock_now_ns();
    t->deadline = now + delay_ns;
    if (t->deadline < now)
        t->deadline = UINT64_MAX;

    int err;
    if (rill_loop_in_thread(loop)) {
        err = heap_push(&loop->timers, t);
    } else {
        rill_task_init(&t->add_task, add_on_loop, t);
        err = rill__loop_post(loop, &t->add_task);
    }
    if (err) {
        free(t);
        return err;
    }
    if (out)
        *out = t;
    return 0;
}

int rill_timer_cancel(struct rill_timer *t)
{
    int s = atomic_load(&t->state);
    for (;;) {
        if (s == T_DONE || s == T_CANCELLED)
            return -EALREADY;
        if (atomic_compare_exchange_weak(&t->state, &s, T_CANCELLED))
            break;
    }
    struct rill_loop *loop = t->loop;
    if (rill_loop_in_thread(loop)) {
        if (t->slot != NOT_IN_HEAP) {
            heap_remove(&loop->timers, t);
            timer_release(t);
        }
        /* From inside fn (s == RUNNING) the run loop drops its reference. */
        return 0;
    }
    if (s == T_PENDING) {
        /* Take it out of the heap now rather than at its deadline, so a
         * long timer cancelled early does not hold memory. */
        atomic_fetch_add(&t->refcnt, 1);
        rill_task_init(&t->cancel_task, remove_on_loop, t);
        if (rill__loop_post(loop, &t->cancel_task) != 0)
            timer_release(t); /* the loop has terminated and dropped it already */
    }
    return s == T_RUNNING ? -EINPROGRESS : 0;
}
