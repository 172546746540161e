/* Promises: complete once, notify listeners on the owning loop, let
 * non-loop threads block on a futex until completion. A tiny spin lock
 * orders listener registration against completion; its critical sections
 * are a few stores long. */
#include "rill/future.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/loop_internal.h"
#include "rill/clock.h"
#include "rill/loop.h"

enum { P_PENDING = 0, P_DONE = 1 };

struct listener {
    rill_future_fn *fn;
    void *arg;
    struct listener *next;
};

struct rill_promise {
    _Atomic unsigned refcnt;
    _Atomic int state; /* futex word */
    _Atomic int waiters;
    atomic_flag lock;
    bool cancelled;
    int result;
    void *value;
    rill_value_free_fn *value_free;
    struct rill_loop *loop;
    struct listener first; /* most promises have one listener: no allocation */
    struct listener *head, **tail;
    struct rill_task notify;
};

static void lock(struct rill_promise *p)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&p->lock, memory_order_acquire))
        if (++spins % 64 == 0)
            sched_yield();
}

static void unlock(struct rill_promise *p)
{
    atomic_flag_clear_explicit(&p->lock, memory_order_release);
}

int rill_promise_new(struct rill_loop *loop, struct rill_promise **out)
{
    struct rill_promise *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    atomic_init(&p->refcnt, 1);
    atomic_init(&p->state, P_PENDING);
    atomic_flag_clear(&p->lock);
    p->loop = loop;
    p->tail = &p->head;
    *out = p;
    return 0;
}

struct rill_promise *rill_promise_retain(struct rill_promise *p)
{
    atomic_fetch_add_explicit(&p->refcnt, 1, memory_order_relaxed);
    return p;
}

static void free_listeners(struct rill_promise *p, struct listener *l)
{
    while (l) {
        struct listener *next = l->next;
        if (l != &p->first)
            free(l);
        l = next;
    }
}

void rill_promise_release(struct rill_promise *p)
{
    if (!p || atomic_fetch_sub_explicit(&p->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    free_listeners(p, p->head);
    if (p->value_free)
        p->value_free(p->value);
    free(p);
}

static void run_listeners(struct rill_promise *p, struct listener *l)
{
    while (l) {
        struct listener *next = l->next;
        l->fn(p, l->arg);
        if (l != &p->first)
            free(l);
        l = next;
    }
}

static void notify_task(void *arg)
{
    struct rill_promise *p = arg;
    lock(p);
    struct listener *l = p->head;
    p->head = NULL;
    p->tail = &p->head;
    unlock(p);
    run_listeners(p, l);
    rill_promise_release(p);
}

static int complete(struct rill_promise *p, int result, void *value, rill_value_free_fn *vfree,
                    bool cancelled)
{
    lock(p);
    if (atomic_load_explicit(&p->state, memory_order_relaxed) != P_PENDING) {
        unlock(p);
        if (vfree)
            vfree(value);
        return -EALREADY;
    }
    p->result = result;
    p->value = value;
    p->value_free = vfree;
    p->cancelled = cancelled;
    atomic_store_explicit(&p->state, P_DONE, memory_order_seq_cst);
    bool has_listeners = p->head != NULL;
    struct listener *l = NULL;
    bool inline_run = !p->loop || rill_loop_in_thread(p->loop);
    if (has_listeners && inline_run) {
        l = p->head;
        p->head = NULL;
        p->tail = &p->head;
    }
    unlock(p);

    if (atomic_load_explicit(&p->waiters, memory_order_seq_cst) > 0)
        syscall(SYS_futex, &p->state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    if (!has_listeners)
        return 0;
    if (inline_run) {
        run_listeners(p, l);
        return 0;
    }
    rill_promise_retain(p);
    rill_task_init(&p->notify, notify_task, p);
    if (rill__loop_post(p->loop, &p->notify) != 0)
        notify_task(p); /* the loop is gone: better here than never */
    return 0;
}

int rill_promise_succeed(struct rill_promise *p, void *value, rill_value_free_fn *value_free)
{
    return complete(p, 0, value, value_free, false);
}

int rill_promise_fail(struct rill_promise *p, int err)
{
    if (err >= 0)
        return -EINVAL;
    return complete(p, err, NULL, NULL, err == -ECANCELED);
}

int rill_promise_cancel(struct rill_promise *p)
{
    return complete(p, -ECANCELED, NULL, NULL, true);
}

bool rill_promise_is_done(const struct rill_promise *p)
{
    return atomic_load_explicit(&((struct rill_promise *)p)->state, memory_order_acquire) == P_DONE;
}

bool rill_promise_is_cancelled(const struct rill_promise *p)
{
    return rill_promise_is_done(p) && p->cancelled;
}

int rill_promise_result(const struct rill_promise *p, void **value)
{
    if (!rill_promise_is_done(p))
        return -EINPROGRESS;
    if (value)
        *value = p->result == 0 ? p->value : NULL;
    return p->result;
}

struct rill_loop *rill_promise_loop(const struct rill_promise *p)
{
    return p->loop;
}

int rill_promise_add_listener(struct rill_promise *p, rill_future_fn *fn, void *arg)
{
    lock(p);
    if (atomic_load_explicit(&p->state, memory_order_relaxed) == P_DONE) {
        unlock(p);
        fn(p, arg);
        return 0;
    }
    struct listener *l;
    if (!p->first.fn) {
        l = &p->first;
    } else {
        unlock(p);
        l = malloc(sizeof(*l));
        if (!l)
            return -ENOMEM;
        lock(p);
        if (atomic_load_explicit(&p->state, memory_order_relaxed) == P_DONE) {
            unlock(p);
            free(l);
            fn(p, arg);
            return 0;
        }
    }
    l->fn = fn;
    l->arg = arg;
    l->next = NULL;
    *p->tail = l;
    p->tail = &l->next;
    unlock(p);
    return 0;
}

int rill_promise_wait(struct rill_promise *p, int64_t timeout_ns)
{
    if (rill_promise_is_done(p))
        return rill_promise_result(p, NULL);
    if (p->loop && rill_loop_in_thread(p->loop))
        return -EDEADLK;
    uint64_t deadline = timeout_ns >= 0 ? rill_clock_now_ns() + (uint64_t)timeout_ns : 0;
    atomic_fetch_add(&p->waiters, 1);
    int err = 0;
    while (atomic_load(&p->state) == P_PENDING) {
        struct timespec ts, *tsp = NULL;
        if (timeout_ns >= 0) {
            uint64_t now = rill_clock_now_ns();
            if (now >= deadline) {
                err = -ETIMEDOUT;
                break;
            }
            uint64_t left = deadline - now;
            ts.tv_sec = (time_t)(left / RILL_NS_PER_S);
            ts.tv_nsec = (long)(left % RILL_NS_PER_S);
            tsp = &ts;
        }
        syscall(SYS_futex, &p->state, FUTEX_WAIT_PRIVATE, P_PENDING, tsp, NULL, 0);
    }
    atomic_fetch_sub(&p->waiters, 1);
    return err ? err : rill_promise_result(p, NULL);
}
