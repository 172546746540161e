/* Tests for promises and futures (include/rill/future.h): complete once,
 * value ownership, listener placement and order, blocking waits.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "util/testutil.h"

TestSuite(future, .timeout = 30, .fini = rill_test_no_leaks);

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 4
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SCALE 4
#endif
#endif
#ifndef SCALE
#define SCALE 1
#endif

#define S(x)  ((uint64_t)(x)*RILL_NS_PER_S)
#define MS(x) ((uint64_t)(x)*RILL_NS_PER_MS)

/* ---- helpers ---- */

static struct rill_loop *started_loop(void)
{
    struct rill_loop_opts o;
    rill_loop_opts_init(&o);
    o.name = "future-loop";
    struct rill_loop *loop;
    cr_assert_eq(rill_loop_new(&o, &loop), 0);
    cr_assert_eq(rill_loop_start(loop), 0);
    return loop;
}

static void stop_loop(struct rill_loop *loop)
{
    rill_loop_shutdown(loop, 0, S(5));
    cr_assert_eq(rill_promise_wait(rill_loop_termination(loop), (int64_t)S(10)), 0);
    rill_loop_free(loop);
}

static struct rill_promise *new_promise(struct rill_loop *loop)
{
    struct rill_promise *p = NULL;
    cr_assert_eq(rill_promise_new(loop, &p), 0);
    cr_assert_not_null(p);
    return p;
}

static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000u);
}

/* A value whose free function counts its calls. */
static atomic_int value_frees;

static void value_free(void *v)
{
    atomic_fetch_add(&value_frees, 1);
    free(v);
}

static void *new_value(int x)
{
    int *v = malloc(sizeof(*v));
    *v = x;
    return v;
}

/* Run fn(arg) on another thread and join it. */
static void on_thread(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fn, arg), 0);
    pthread_join(th, NULL);
}

/* ---- complete once ---- */

Test(future, succeed_once)
{
    atomic_store(&value_frees, 0);
    struct rill_promise *p = new_promise(NULL);
    cr_assert_null(rill_promise_loop(p));
    cr_assert_not(rill_promise_is_done(p));
    cr_assert_not(rill_promise_is_cancelled(p));
    void *v = (void *)0x1;
    cr_assert_eq(rill_promise_result(p, &v), -EINPROGRESS);

    cr_assert_eq(rill_promise_succeed(p, new_value(42), value_free), 0);
    cr_assert(rill_promise_is_done(p));
    cr_assert_not(rill_promise_is_cancelled(p));
    cr_assert_eq(rill_promise_result(p, &v), 0);
    cr_assert_eq(*(int *)v, 42);
    cr_assert_eq(rill_promise_result(p, NULL), 0);

    /* A second completion fails; its value is freed at once. */
    cr_assert_eq(rill_promise_succeed(p, new_value(7), value_free), -EALREADY);
    cr_assert_eq(atomic_load(&value_frees), 1);
    cr_assert_eq(rill_promise_fail(p, -EIO), -EALREADY);
    cr_assert_eq(rill_promise_cancel(p), -EALREADY);
    cr_assert_eq(rill_promise_result(p, &v), 0);
    cr_assert_eq(*(int *)v, 42);
    cr_assert_eq(rill_promise_wait(p, 0), 0);

    rill_promise_release(p);
    cr_assert_eq(atomic_load(&value_frees), 2, "the kept value is freed with the promise");
}

Test(future, succeed_without_value_or_free_function)
{
    struct rill_promise *p = new_promise(NULL);
    static int not_owned = 5;
    cr_assert_eq(rill_promise_succeed(p, &not_owned, NULL), 0);
    void *v = NULL;
    cr_assert_eq(rill_promise_result(p, &v), 0);
    cr_assert_eq(v, &not_owned);
    cr_assert_eq(rill_promise_succeed(p, NULL, NULL), -EALREADY);
    rill_promise_release(p);
}

Test(future, fail_once)
{
    atomic_store(&value_frees, 0);
    struct rill_promise *p = new_promise(NULL);
    cr_assert_eq(rill_promise_fail(p, 0), -EINVAL);
    cr_assert_eq(rill_promise_fail(p, 5), -EINVAL);
    cr_assert_not(rill_promise_is_done(p), "an invalid fail must not complete the promise");
    cr_assert_eq(rill_promise_fail(p, -EPIPE), 0);
    cr_assert(rill_promise_is_done(p));
    cr_assert_not(rill_promise_is_cancelled(p));
    void *v = (void *)0x1;
    cr_assert_eq(rill_promise_result(p, &v), -EPIPE);
    cr_assert_null(v, "no value on failure");
    cr_assert_eq(rill_promise_fail(p, RILL_ECLOSED), -EALREADY);
    cr_assert_eq(rill_promise_cancel(p), -EALREADY);
    cr_assert_eq(rill_promise_succeed(p, new_value(1), value_free), -EALREADY);
    cr_assert_eq(atomic_load(&value_frees), 1);
    cr_assert_eq(rill_promise_result(p, NULL), -EPIPE);
    cr_assert_eq(rill_promise_wait(p, -1), -EPIPE);
    rill_promise_release(p);
    cr_assert_eq(atomic_load(&value_frees), 1);
}

Test(future, fail_with_a_rill_code)
{
    struct rill_promise *p = new_promise(NULL);
    cr_assert_eq(rill_promise_fail(p, RILL_EDEADLINE), 0);
    cr_assert_eq(rill_promise_result(p, NULL), RILL_EDEADLINE);
    rill_promise_release(p);
}

Test(future, cancel_once)
{
    struct rill_promise *p = new_promise(NULL);
    cr_assert_eq(rill_promise_cancel(p), 0);
    cr_assert(rill_promise_is_done(p));
    cr_assert(rill_promise_is_cancelled(p));
    cr_assert_eq(rill_promise_result(p, NULL), -ECANCELED);
    cr_assert_eq(rill_promise_cancel(p), -EALREADY);
    cr_assert_eq(rill_promise_fail(p, -EIO), -EALREADY);
    cr_assert_eq(rill_promise_wait(p, 0), -ECANCELED);
    cr_assert(rill_promise_is_cancelled(p));
    rill_promise_release(p);
}

/* A promise failed with -ECANCELED counts as cancelled, as in Netty. */
Test(future, failing_with_ecanceled_is_cancelling)
{
    struct rill_promise *p = new_promise(NULL);
    int rc = rill_promise_fail(p, -ECANCELED);
    int result = rill_promise_result(p, NULL);
    bool cancelled = rill_promise_is_cancelled(p);
    rill_promise_release(p);
    cr_assert_eq(rc, 0);
    cr_assert_eq(result, -ECANCELED);
    cr_assert(cancelled, "failed with -ECANCELED but is_cancelled() is false");
}

Test(future, retain_and_release)
{
    atomic_store(&value_frees, 0);
    struct rill_promise *p = new_promise(NULL);
    cr_assert_eq(rill_promise_retain(p), p);
    cr_assert_eq(rill_promise_succeed(p, new_value(3), value_free), 0);
    rill_promise_release(p);
    cr_assert_eq(atomic_load(&value_frees), 0, "freed while a reference remains");
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    rill_promise_release(p);
    cr_assert_eq(atomic_load(&value_frees), 1);
    rill_promise_release(NULL);
}

/* value_free is called exactly once on every path, including a race of
 * several completers. */
struct racer {
    struct rill_promise *p;
    int rc;
    int kind;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    switch (r->kind) {
    case 0:
        r->rc = rill_promise_succeed(r->p, new_value(1), value_free);
        break;
    case 1:
        r->rc = rill_promise_fail(r->p, -EIO);
        break;
    default:
        r->rc = rill_promise_cancel(r->p);
        break;
    }
    return NULL;
}

Test(future, racing_completers_one_wins_values_freed_once)
{
    atomic_store(&value_frees, 0);
    int succeeded_values = 0;
    const int rounds = 300 / SCALE;
    for (int round = 0; round < rounds; round++) {
        struct rill_promise *p = new_promise(NULL);
        struct racer r[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            r[i] = (struct racer){ .p = p, .kind = (i + round) % 3 };
            succeeded_values += r[i].kind == 0;
            cr_assert_eq(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
        }
        int wins = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            cr_assert(r[i].rc == 0 || r[i].rc == -EALREADY);
            wins += r[i].rc == 0;
        }
        cr_assert_eq(wins, 1, "round %d: %d completers won", round, wins);
        rill_promise_release(p);
    }
    cr_assert_eq(atomic_load(&value_frees), succeeded_values);
}

/* ---- listeners ---- */

#define MAXL 64
struct lrec {
    struct rill_loop *loop; /* the loop they should run on, or NULL */
    pthread_t thread;       /* else the thread they should run on */
    bool any_thread;        /* don't check; just record in seen */
    pthread_t seen;
    atomic_int n;
    int order[MAXL];
    int wrong_place;
    int not_done;
};

struct larg {
    struct lrec *r;
    int id;
};

static void listener(struct rill_promise *p, void *arg)
{
    struct larg *a = arg;
    struct lrec *r = a->r;
    r->seen = pthread_self();
    if (r->loop ? !rill_loop_in_thread(r->loop)
                : !r->any_thread && !pthread_equal(r->thread, pthread_self()))
        r->wrong_place++;
    if (!rill_promise_is_done(p))
        r->not_done++;
    int i = atomic_load(&r->n);
    if (i < MAXL)
        r->order[i] = a->id;
    atomic_store(&r->n, i + 1); /* listeners of one promise never overlap */
}

static bool wait_n(atomic_int *n, int want)
{
    uint64_t dl = rill_test_deadline_ms(10000);
    while (atomic_load(n) < want && rill_test_before(dl))
        usleep(200);
    return atomic_load(n) >= want;
}

struct completer {
    struct rill_promise *p;
    pthread_t self;
    unsigned delay_ms;
    int err; /* 0: succeed */
    int rc;
};

static void *completer_main(void *arg)
{
    struct completer *c = arg;
    c->self = pthread_self();
    if (c->delay_ms)
        sleep_ms(c->delay_ms);
    c->rc = c->err ? rill_promise_fail(c->p, c->err) : rill_promise_succeed(c->p, NULL, NULL);
    return NULL;
}

Test(future, listeners_run_in_order_on_the_owning_loop)
{
    struct rill_loop *loop = started_loop();
    struct rill_promise *p = new_promise(loop);
    cr_assert_eq(rill_promise_loop(p), loop);
    struct lrec r = { .loop = loop };
    struct larg a[20];
    for (int i = 0; i < 20; i++) {
        a[i] = (struct larg){ &r, i };
        cr_assert_eq(rill_promise_add_listener(p, listener, &a[i]), 0);
    }
    struct completer c = { .p = p };
    on_thread(completer_main, &c); /* completed from a thread that is not the loop's */
    cr_assert_eq(c.rc, 0);
    cr_assert(wait_n(&r.n, 20));
    cr_assert_eq(r.wrong_place, 0, "listeners ran off the owning loop");
    cr_assert_eq(r.not_done, 0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(r.order[i], i);
    rill_promise_release(p);
    stop_loop(loop);
}

/* The completer drops its reference right away: the posted notification
 * keeps the promise alive until the listeners ran (ASan checks). */
struct fire_and_forget {
    struct rill_promise *p;
};

static void *complete_and_release(void *arg)
{
    struct fire_and_forget *f = arg;
    rill_promise_fail(f->p, -ETIMEDOUT);
    rill_promise_release(f->p);
    return NULL;
}

static atomic_int ff_result_ok;

static void ff_listener(struct rill_promise *p, void *arg)
{
    (void)arg;
    if (rill_promise_result(p, NULL) == -ETIMEDOUT)
        atomic_fetch_add(&ff_result_ok, 1);
}

Test(future, completer_may_drop_the_last_reference_before_listeners_run)
{
    struct rill_loop *loop = started_loop();
    atomic_store(&ff_result_ok, 0);
    for (int i = 0; i < 50; i++) {
        struct rill_promise *p = new_promise(loop);
        cr_assert_eq(rill_promise_add_listener(p, ff_listener, NULL), 0);
        cr_assert_eq(rill_promise_add_listener(p, ff_listener, NULL), 0);
        struct fire_and_forget f = { p };
        on_thread(complete_and_release, &f);
    }
    cr_assert(wait_n(&ff_result_ok, 100));
    stop_loop(loop);
}

struct inline_check {
    struct rill_loop *loop;
    struct rill_promise *p;
    struct lrec r;
    struct larg a[3];
    int ran_before_return;
};

static void complete_on_loop(void *arg)
{
    struct inline_check *c = arg;
    rill_promise_succeed(c->p, NULL, NULL);
    c->ran_before_return = atomic_load(&c->r.n);
}

Test(future, completed_on_the_owning_loop_runs_listeners_inline)
{
    struct rill_loop *loop = started_loop();
    struct inline_check c = { .loop = loop };
    c.p = new_promise(loop);
    c.r.loop = loop;
    for (int i = 0; i < 3; i++) {
        c.a[i] = (struct larg){ &c.r, i };
        cr_assert_eq(rill_promise_add_listener(c.p, listener, &c.a[i]), 0);
    }
    cr_assert_eq(rill_loop_execute(loop, complete_on_loop, &c), 0);
    cr_assert_eq(rill_promise_wait(c.p, (int64_t)S(10)), 0);
    stop_loop(loop); /* the task has finished */
    cr_assert_eq(c.ran_before_return, 3, "listeners did not run inside succeed()");
    cr_assert_eq(c.r.wrong_place, 0);
    rill_promise_release(c.p);
}

Test(future, listener_added_after_completion_runs_at_once_on_the_caller)
{
    struct rill_loop *loop = started_loop();
    struct rill_promise *p = new_promise(loop);
    cr_assert_eq(rill_promise_succeed(p, NULL, NULL), 0);
    struct lrec r = { .thread = pthread_self() };
    struct larg a = { &r, 0 };
    cr_assert_eq(rill_promise_add_listener(p, listener, &a), 0);
    cr_assert_eq(atomic_load(&r.n), 1, "did not run before add_listener returned");
    cr_assert_eq(r.wrong_place, 0);
    /* Same for a promise without a loop, and after a failure. */
    struct rill_promise *q = new_promise(NULL);
    rill_promise_fail(q, -EIO);
    cr_assert_eq(rill_promise_add_listener(q, listener, &a), 0);
    cr_assert_eq(atomic_load(&r.n), 2);
    rill_promise_release(q);
    rill_promise_release(p);
    stop_loop(loop);
}

Test(future, promise_without_a_loop_runs_listeners_on_the_completing_thread)
{
    struct rill_promise *p = new_promise(NULL);
    struct lrec r = { .any_thread = true };
    struct larg a[5];
    for (int i = 0; i < 5; i++) {
        a[i] = (struct larg){ &r, i };
        cr_assert_eq(rill_promise_add_listener(p, listener, &a[i]), 0);
    }
    struct completer c = { .p = p, .err = -EIO };
    on_thread(completer_main, &c);
    cr_assert_eq(c.rc, 0);
    cr_assert(pthread_equal(r.seen, c.self), "listeners ran on another thread");
    cr_assert_eq(atomic_load(&r.n), 5, "listeners did not run before fail() returned");
    cr_assert_eq(r.wrong_place, 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(r.order[i], i);
    rill_promise_release(p);
}

Test(future, promise_of_a_terminated_loop_runs_listeners_on_the_completing_thread)
{
    struct rill_loop *loop = started_loop();
    struct rill_promise *p = new_promise(loop);
    struct lrec r = { .thread = pthread_self() };
    struct larg a = { &r, 0 };
    cr_assert_eq(rill_promise_add_listener(p, listener, &a), 0);
    rill_loop_shutdown(loop, 0, 0);
    cr_assert_eq(rill_promise_wait(rill_loop_termination(loop), (int64_t)S(10)), 0);
    cr_assert_eq(rill_promise_succeed(p, NULL, NULL), 0);
    cr_assert_eq(atomic_load(&r.n), 1, "listener lost when the owning loop is gone");
    cr_assert_eq(r.wrong_place, 0);
    rill_promise_release(p);
    rill_loop_free(loop);
}

static atomic_int never_ran;

static void never(struct rill_promise *p, void *arg)
{
    (void)p;
    (void)arg;
    atomic_fetch_add(&never_ran, 1);
}

Test(future, release_before_completion_drops_listeners)
{
    struct rill_promise *p = new_promise(NULL);
    for (int i = 0; i < 5; i++) /* first one inline, the rest allocated: ASan checks */
        cr_assert_eq(rill_promise_add_listener(p, never, NULL), 0);
    rill_promise_release(p);
    cr_assert_eq(atomic_load(&never_ran), 0);
}

/* Listeners added from several threads while another completes: each runs
 * exactly once, whichever side wins. */
struct adder {
    struct rill_promise *p;
    atomic_int *count;
    atomic_int *go;
};

static void count_listener(struct rill_promise *p, void *arg)
{
    (void)p;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void *adder_main(void *arg)
{
    struct adder *a = arg;
    while (!atomic_load(a->go))
        ;
    for (int i = 0; i < 4; i++)
        rill_promise_add_listener(a->p, count_listener, a->count);
    return NULL;
}

Test(future, listeners_added_while_completing_run_exactly_once)
{
    const int rounds = 400 / SCALE;
    for (int round = 0; round < rounds; round++) {
        struct rill_promise *p = new_promise(NULL);
        atomic_int count = 0, go = 0;
        struct adder a = { p, &count, &go };
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, adder_main, &a), 0);
        atomic_store(&go, 1);
        rill_promise_succeed(p, NULL, NULL);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        cr_assert_eq(atomic_load(&count), 8, "round %d: %d listener calls", round,
                     atomic_load(&count));
        rill_promise_release(p);
    }
}

/* A listener may add another listener (runs at once: already complete) and
 * may release a reference it was given. */
static struct rill_promise *nested_p;
static int nested_order[4], nested_n;

static void nested_inner(struct rill_promise *p, void *arg)
{
    (void)p;
    nested_order[nested_n++] = (int)(intptr_t)arg;
}

static void nested_outer(struct rill_promise *p, void *arg)
{
    nested_order[nested_n++] = (int)(intptr_t)arg;
    rill_promise_add_listener(p, nested_inner, (void *)2);
    rill_promise_release(p); /* the reference this listener was handed */
}

Test(future, listener_adds_a_listener_and_releases_its_reference)
{
    nested_n = 0;
    nested_p = new_promise(NULL);
    rill_promise_retain(nested_p); /* for the listener */
    cr_assert_eq(rill_promise_add_listener(nested_p, nested_outer, (void *)1), 0);
    cr_assert_eq(rill_promise_add_listener(nested_p, nested_inner, (void *)3), 0);
    rill_promise_succeed(nested_p, NULL, NULL);
    cr_assert_eq(nested_n, 3);
    cr_assert_eq(nested_order[0], 1);
    cr_assert_eq(nested_order[1], 2, "the nested listener runs at once");
    cr_assert_eq(nested_order[2], 3);
    rill_promise_release(nested_p);
}

/* ---- waiting ---- */

Test(future, wait_times_out)
{
    struct rill_promise *p = new_promise(NULL);
    uint64_t t0 = rill_clock_now_ns();
    cr_assert_eq(rill_promise_wait(p, 0), -ETIMEDOUT);
    cr_assert_eq(rill_promise_wait(p, (int64_t)MS(30)), -ETIMEDOUT);
    uint64_t el = rill_clock_now_ns() - t0;
    cr_assert_geq(el, MS(30), "returned after %llu us", (unsigned long long)(el / 1000));
    cr_assert_lt(el, S(5));
    cr_assert_not(rill_promise_is_done(p));
    rill_promise_release(p);
}

Test(future, wait_for_a_completion_from_another_thread)
{
    struct rill_promise *p = new_promise(NULL);
    struct completer c = { .p = p, .delay_ms = 30, .err = -ECONNRESET };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, completer_main, &c), 0);
    uint64_t t0 = rill_clock_now_ns();
    cr_assert_eq(rill_promise_wait(p, -1), -ECONNRESET);
    cr_assert_lt(rill_clock_now_ns() - t0, S(5));
    pthread_join(th, NULL);
    cr_assert_eq(rill_promise_wait(p, (int64_t)MS(1)), -ECONNRESET);
    rill_promise_release(p);

    p = new_promise(NULL);
    c = (struct completer){ .p = p, .delay_ms = 10 };
    cr_assert_eq(pthread_create(&th, NULL, completer_main, &c), 0);
    cr_assert_eq(rill_promise_wait(p, (int64_t)S(10)), 0);
    pthread_join(th, NULL);
    rill_promise_release(p);
}

struct deadlock_check {
    struct rill_promise *own, *other, *done_own;
    int rc_own, rc_done, rc_other;
    atomic_int finished;
};

static void wait_on_loop(void *arg)
{
    struct deadlock_check *d = arg;
    d->rc_own = rill_promise_wait(d->own, -1);                  /* would never complete */
    d->rc_done = rill_promise_wait(d->done_own, -1);            /* complete: fine */
    d->rc_other = rill_promise_wait(d->other, (int64_t)MS(10)); /* another loop's: may block */
    atomic_store(&d->finished, 1);
}

Test(future, wait_on_the_owning_loop_thread_says_edeadlk)
{
    struct rill_loop *loop = started_loop();
    struct deadlock_check d = { 0 };
    d.own = new_promise(loop);
    d.done_own = new_promise(loop);
    d.other = new_promise(NULL);
    rill_promise_fail(d.done_own, -EIO);
    cr_assert_eq(rill_loop_execute(loop, wait_on_loop, &d), 0);
    cr_assert(wait_n(&d.finished, 1), "wait on the owning loop's thread blocked");
    cr_assert_eq(d.rc_own, -EDEADLK);
    cr_assert_eq(d.rc_done, -EIO);
    cr_assert_eq(d.rc_other, -ETIMEDOUT);
    cr_assert_not(rill_promise_is_done(d.own));
    stop_loop(loop);
    rill_promise_release(d.own);
    rill_promise_release(d.done_own);
    rill_promise_release(d.other);
}

#define NWAITERS 8
struct waiter {
    struct rill_promise *p;
    atomic_int *started;
    int rc;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    atomic_fetch_add(w->started, 1);
    w->rc = rill_promise_wait(w->p, (int64_t)S(10));
    return NULL;
}

Test(future, many_threads_waiting_at_once)
{
    const int rounds = 60 / SCALE;
    uint64_t dl = rill_test_deadline_ms(15000);
    for (int round = 0; round < rounds && rill_test_before(dl); round++) {
        struct rill_promise *p = new_promise(NULL);
        atomic_int started = 0;
        struct waiter w[NWAITERS];
        pthread_t th[NWAITERS];
        for (int i = 0; i < NWAITERS; i++) {
            w[i] = (struct waiter){ p, &started, 1 };
            cr_assert_eq(pthread_create(&th[i], NULL, waiter_main, &w[i]), 0);
        }
        /* Complete while they block, or while some are still arriving. */
        if (round % 2 == 0) {
            while (atomic_load(&started) < NWAITERS)
                sched_yield();
            sleep_ms(1);
        }
        cr_assert_eq(rill_promise_succeed(p, NULL, NULL), 0);
        for (int i = 0; i < NWAITERS; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(w[i].rc, 0, "round %d waiter %d: %d", round, i, w[i].rc);
        }
        rill_promise_release(p);
    }
}
