/* The event loop: epoll + eventfd + a wait-free MPSC task queue + timers.
 *
 * Wake-ups: before sleeping the loop sets wake_armed and re-checks the
 * queue; a poster enqueues, then swaps wake_armed to 0 and writes the
 * eventfd only if it was 1. Both sides store then load (seq_cst), so either
 * the loop sees the task or the poster sees the flag: no lost wake-up, and
 * at most one eventfd write per sleep however many tasks arrive. */
#if !defined(__SANITIZE_THREAD__)
#define _LGPL_SOURCE /* inline liburcu's queue; TSan builds call the library */
#endif
#include "core/loop_internal.h"

#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"

static __thread struct rill_loop *tls_loop;

/* RILL_BUSY_POLL=on|adaptive|off sets the default, so a deployment (or a
 * benchmark) can pick the mode without a rebuild. */
enum rill_busy_poll rill__busy_poll_default(void)
{
    const char *v = getenv("RILL_BUSY_POLL");
    if (!v)
        return RILL_BUSY_POLL_OFF;
    if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0)
        return RILL_BUSY_POLL_ON;
    if (strcmp(v, "adaptive") == 0)
        return RILL_BUSY_POLL_ADAPTIVE;
    return RILL_BUSY_POLL_OFF;
}

void rill_loop_opts_init(struct rill_loop_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->name = "rill-loop";
    opts->cpu = -1;
    opts->max_events = 256;
    opts->busy_poll = rill__busy_poll_default();
}

void rill_task_init(struct rill_task *t, rill_task_fn *fn, void *arg)
{
    cds_wfcq_node_init(&t->_node);
    t->fn = fn;
    t->arg = arg;
}

int rill_loop_new(const struct rill_loop_opts *opts, struct rill_loop **out)
{
    struct rill_loop_opts def;
    if (!opts) {
        rill_loop_opts_init(&def);
        opts = &def;
    }
    struct rill_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return -ENOMEM;
    __cds_wfcq_init(&loop->qhead, &loop->qtail);
    loop->max_events = opts->max_events > 0 ? opts->max_events : 256;
    loop->cpu = opts->cpu;
    loop->manual_clock = opts->manual_clock;
    snprintf(loop->name, sizeof(loop->name), "%s", opts->name ? opts->name : "rill-loop");
    rill__timers_init(&loop->timers);
    rill_list_init(&loop->shutdown_hooks);
    rill_list_init(&loop->pollers);
    loop->busy_poll = opts->busy_poll;
    atomic_init(&loop->now, opts->manual_clock ? 0 : rill_clock_now_ns());
    atomic_init(&loop->quiet_ns, UINT64_MAX);
    loop->epfd = loop->evfd = -1;

    int err = -ENOMEM;
    loop->events = calloc((size_t)loop->max_events, sizeof(*loop->events));
    if (!loop->events)
        goto fail;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        err = -errno;
        goto fail;
    }
    loop->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->evfd < 0) {
        err = -errno;
        goto fail;
    }
    /* data.ptr == NULL marks the wake-up fd. */
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->evfd, &ev) < 0) {
        err = -errno;
        goto fail;
    }
    err = rill_promise_new(NULL, &loop->termination);
    if (err)
        goto fail;
    *out = loop;
    return 0;
fail:
    if (loop->evfd >= 0)
        close(loop->evfd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->events);
    rill__timers_free(&loop->timers);
    free(loop);
    return err;
}

bool rill_loop_in_thread(const struct rill_loop *loop)
{
    return tls_loop == loop;
}

struct rill_loop *rill_loop_current(void)
{
    return tls_loop;
}

enum rill_busy_poll rill_loop_busy_poll(const struct rill_loop *loop)
{
    return loop->busy_poll;
}

const char *rill_loop_name(const struct rill_loop *loop)
{
    return loop->name;
}

uint64_t rill_loop_now(const struct rill_loop *loop)
{
    return rill__loop_now(loop);
}

struct rill_promise *rill_loop_termination(struct rill_loop *loop)
{
    return loop->termination;
}

bool rill_loop_is_shutting_down(const struct rill_loop *loop)
{
    return atomic_load(&((struct rill_loop *)loop)->state) >= LOOP_SHUTTING_DOWN;
}

bool rill_loop_is_terminated(const struct rill_loop *loop)
{
    return atomic_load(&((struct rill_loop *)loop)->state) == LOOP_TERMINATED;
}

uint64_t rill_loop_pending_tasks(const struct rill_loop *loop)
{
    struct rill_loop *l = (struct rill_loop *)loop;
    uint64_t gate = atomic_load_explicit(&l->submit_gate, memory_order_relaxed);
    uint32_t posted = (uint32_t)(gate >> 32); /* both count modulo 2^32 */
    uint32_t ran = (uint32_t)atomic_load_explicit(&l->ran, memory_order_relaxed);
    return (uint32_t)(posted - ran);
}

/* ---- tasks ---- */

static void wake(struct rill_loop *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake. */
    while (write(loop->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

int rill__loop_post(struct rill_loop *loop, struct rill_task *t)
{
    uint64_t gate = atomic_fetch_add(&loop->submit_gate, LOOP_GATE_POSTED + 1);
    if (RILL_UNLIKELY(gate & LOOP_GATE_CLOSED)) {
        atomic_fetch_sub(&loop->submit_gate, LOOP_GATE_POSTED + 1);
        return RILL_EREJECTED;
    }
    rill__tsan_release(t);
    cds_wfcq_enqueue(&loop->qhead, &loop->qtail, &t->_node);
    if (tls_loop != loop && atomic_load(&loop->wake_armed) && atomic_exchange(&loop->wake_armed, 0))
        wake(loop);
    atomic_fetch_sub(&loop->submit_gate, 1);
    return 0;
}

int rill_loop_post(struct rill_loop *loop, struct rill_task *t)
{
    cds_wfcq_node_init(&t->_node);
    return rill__loop_post(loop, t);
}

struct exec_task {
    struct rill_task task;
    rill_task_fn *fn;
    void *arg;
};

static void exec_task_run(void *arg)
{
    struct exec_task *et = arg;
    rill_task_fn *fn = et->fn;
    void *farg = et->arg;
    free(et);
    fn(farg);
}

int rill_loop_execute(struct rill_loop *loop, rill_task_fn *fn, void *arg)
{
    struct exec_task *et = malloc(sizeof(*et));
    if (!et)
        return -ENOMEM;
    et->fn = fn;
    et->arg = arg;
    rill_task_init(&et->task, exec_task_run, et);
    int err = rill__loop_post(loop, &et->task);
    if (err)
        free(et);
    return err;
}

/* Run every task queued now; tasks they post wait for the next round so a
 * task that re-posts itself cannot starve I/O. */
static int run_tasks(struct rill_loop *loop)
{
    struct __cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    if (cds_wfcq_empty(&loop->qhead, &loop->qtail))
        return 0;
    __cds_wfcq_init(&head, &tail);
    __cds_wfcq_splice_blocking(&head, &tail, &loop->qhead, &loop->qtail);
    int n = 0;
    struct cds_wfcq_node *node;
    while ((node = __cds_wfcq_dequeue_blocking(&head, &tail)) != NULL) {
        struct rill_task *t = rill_container_of(node, struct rill_task, _node);
        rill__tsan_acquire(t);
        n++;
        t->fn(t->arg); /* may free or re-post t */
    }
    /* One add per round: this line is shared with the posters. */
    if (n)
        atomic_fetch_add_explicit(&loop->ran, (uint64_t)n, memory_order_relaxed);
    if (n && atomic_load_explicit(&loop->state, memory_order_relaxed) == LOOP_SHUTTING_DOWN)
        loop->last_task_ns = rill_clock_now_ns();
    return n;
}

/* ---- fd watching ---- */

void rill_io_init(struct rill_io *io, int fd, rill_io_fn *cb, void *data)
{
    io->fd = fd;
    io->events = 0;
    io->cb = cb;
    io->data = data;
    io->_loop = NULL;
}

int rill_io_start(struct rill_loop *loop, struct rill_io *io, uint32_t events)
{
    RILL_ASSERT_IN_LOOP(loop);
    if (io->_loop)
        return -EEXIST;
    struct epoll_event ev = { .events = events, .data.ptr = io };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return -errno;
    io->events = events;
    io->_loop = loop;
    return 0;
}

int rill_io_modify(struct rill_io *io, uint32_t events)
{
    if (!io->_loop)
        return -ENOENT;
    RILL_ASSERT_IN_LOOP(io->_loop);
    if (events == io->events)
        return 0;
    struct epoll_event ev = { .events = events, .data.ptr = io };
    if (epoll_ctl(io->_loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    io->events = events;
    return 0;
}

int rill_io_stop(struct rill_io *io)
{
    struct rill_loop *loop = io->_loop;
    if (!loop)
        return -ENOENT;
    RILL_ASSERT_IN_LOOP(loop);
    int err = 0;
    /* EBADF/ENOENT: the fd was closed first; the watcher stops all the same. */
    if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0 && errno != EBADF && errno != ENOENT)
        err = -errno;
    /* Forget events already collected for this watcher (libuv does the same). */
    for (int i = loop->ev_cur + 1; i < loop->ev_n; i++)
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = loop; /* loop pointer = skip */
    io->_loop = NULL;
    io->events = 0;
    return err;
}

/* ---- one iteration ---- */

static int wait_events(struct rill_loop *loop, int64_t timeout_ns)
{
    int n;
    if (timeout_ns < 0) {
        n = epoll_wait(loop->epfd, loop->events, loop->max_events, -1);
    } else {
        struct timespec ts = { .tv_sec = timeout_ns / (int64_t)RILL_NS_PER_S,
                               .tv_nsec = timeout_ns % (int64_t)RILL_NS_PER_S };
        n = epoll_pwait2(loop->epfd, loop->events, loop->max_events, &ts, NULL);
        if (n < 0 && errno == ENOSYS) /* kernels before 5.11: round up to ms */
            n = epoll_wait(loop->epfd, loop->events, loop->max_events,
                           (int)((timeout_ns + RILL_NS_PER_MS - 1) / RILL_NS_PER_MS));
    }
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    return n;
}

static int64_t shutdown_wait_ns(struct rill_loop *loop, uint64_t real_now);

void rill__loop_add_poller(struct rill_loop *loop, struct rill__loop_poller *p)
{
    if (rill_list_empty(&p->link))
        rill_list_push_back(&loop->pollers, &p->link);
}

void rill__loop_remove_poller(struct rill__loop_poller *p)
{
    rill_list_remove(&p->link);
}

/* A poller may remove itself from inside fn (not another one). */
static int run_pollers(struct rill_loop *loop)
{
    int ran = 0;
    struct rill_list *it, *tmp;
    rill_list_foreach_safe(it, tmp, &loop->pollers)
    {
        struct rill__loop_poller *p =
            (struct rill__loop_poller *)((char *)it - offsetof(struct rill__loop_poller, link));
        ran += p->fn(p);
    }
    return ran;
}

static int iterate(struct rill_loop *loop, int64_t max_wait_ns)
{
    int64_t timeout = max_wait_ns;
    int64_t t = rill__timers_next(loop);
    if (t >= 0 && (timeout < 0 || t < timeout))
        timeout = t;
    if (atomic_load_explicit(&loop->state, memory_order_relaxed) == LOOP_SHUTTING_DOWN) {
        int64_t s = shutdown_wait_ns(loop, rill_clock_now_ns());
        if (timeout < 0 || s < timeout)
            timeout = s;
    }
    if (!rill_list_empty(&loop->pollers))
        timeout = 0;
    if (timeout != 0) {
        atomic_store(&loop->wake_armed, 1);
        /* The queue check below uses plain loads: order them after the
         * store (a no-op on x86, needed on weaker machines). */
        atomic_thread_fence(memory_order_seq_cst);
        if (!cds_wfcq_empty(&loop->qhead, &loop->qtail))
            timeout = 0;
    }
    int n = wait_events(loop, timeout);
    atomic_store(&loop->wake_armed, 0);
    if (n < 0)
        return n;
    if (!loop->manual_clock)
        atomic_store_explicit(&loop->now, rill_clock_now_ns(), memory_order_relaxed);

    int ran = 0;
    loop->ev_n = n;
    for (loop->ev_cur = 0; loop->ev_cur < n; loop->ev_cur++) {
        struct epoll_event *ev = &loop->events[loop->ev_cur];
        if (ev->data.ptr == NULL) {
            uint64_t v;
            while (read(loop->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
                ;
            continue;
        }
        if (ev->data.ptr == loop) /* stopped during this round */
            continue;
        struct rill_io *io = ev->data.ptr;
        io->cb(io, ev->events);
        ran++;
    }
    loop->ev_n = loop->ev_cur = 0;
    ran += run_pollers(loop);
    ran += rill__timers_run(loop);
    ran += run_tasks(loop);
    return ran;
}

/* ---- lifecycle and shutdown ---- */

void rill_loop_shutdown(struct rill_loop *loop, uint64_t quiet_ns, uint64_t timeout_ns)
{
    uint64_t now = rill_clock_now_ns();
    uint64_t deadline = now + timeout_ns;
    if (deadline < now)
        deadline = UINT64_MAX;
    /* A second call may only bring the deadline closer. */
    uint64_t old = atomic_load(&loop->deadline_ns);
    while ((old == 0 || deadline < old) &&
           !atomic_compare_exchange_weak(&loop->deadline_ns, &old, deadline))
        ;
    uint64_t q = atomic_load(&loop->quiet_ns); /* UINT64_MAX until the first call */
    while (quiet_ns < q && !atomic_compare_exchange_weak(&loop->quiet_ns, &q, quiet_ns))
        ;
    int s = atomic_load(&loop->state);
    while (s < LOOP_SHUTTING_DOWN &&
           !atomic_compare_exchange_weak(&loop->state, &s, LOOP_SHUTTING_DOWN))
        ;
    if (tls_loop != loop) {
        atomic_store(&loop->wake_armed, 0);
        wake(loop);
    }
}

/* How long the loop may sleep while shutting down; 0 when it is time. */
static int64_t shutdown_wait_ns(struct rill_loop *loop, uint64_t real_now)
{
    uint64_t deadline = atomic_load(&loop->deadline_ns);
    uint64_t quiet = atomic_load(&loop->quiet_ns);
    if (real_now >= deadline)
        return 0;
    uint64_t quiet_end = loop->last_task_ns + quiet;
    if (real_now >= quiet_end)
        return 0;
    uint64_t until = quiet_end < deadline ? quiet_end : deadline;
    return (int64_t)(until - real_now);
}

static void terminate(struct rill_loop *loop)
{
    /* Close the gate, wait for posters already past it, then drain: no
     * task can be enqueued after the last drain. */
    atomic_fetch_or(&loop->submit_gate, LOOP_GATE_CLOSED);
    while ((atomic_load(&loop->submit_gate) & LOOP_GATE_INFLIGHT) != 0)
        sched_yield();
    while (run_tasks(loop) > 0)
        ;
    rill__timers_cancel_all(loop);
    atomic_store(&loop->state, LOOP_TERMINATED);
    RILL_DEBUGF("loop %s terminated", loop->name);
    rill_promise_succeed(loop->termination, NULL, NULL);
}

static void run_shutdown_hooks(struct rill_loop *loop)
{
    struct rill_list *n;
    while ((n = rill_list_pop_front(&loop->shutdown_hooks)) != NULL) {
        struct rill__loop_hook *h = rill_container_of(n, struct rill__loop_hook, link);
        h->fn(h);
    }
}

bool rill__loop_add_shutdown_hook(struct rill_loop *loop, struct rill__loop_hook *h)
{
    RILL_ASSERT_IN_LOOP(loop);
    if (loop->timers_cancelled) {
        rill_list_init(&h->link);
        return false;
    }
    rill_list_push_back(&loop->shutdown_hooks, &h->link);
    return true;
}

void rill__loop_remove_shutdown_hook(struct rill__loop_hook *h)
{
    rill_list_remove(&h->link);
}

/* Advance the shutdown state machine after an iteration; true when done. */
static bool check_shutdown(struct rill_loop *loop)
{
    if (atomic_load_explicit(&loop->state, memory_order_relaxed) != LOOP_SHUTTING_DOWN)
        return false;
    uint64_t real_now = rill_clock_now_ns();
    if (!loop->timers_cancelled) {
        /* Timers are cancelled when shutdown begins (as Netty does); new
         * ones are refused from then on. */
        loop->timers_cancelled = true;
        rill__timers_cancel_all(loop);
        run_shutdown_hooks(loop);
        loop->last_task_ns = real_now;
    }
    if (shutdown_wait_ns(loop, real_now) > 0)
        return false;
    terminate(loop);
    return true;
}

/* Become the loop's thread for a while. @claimed: rill_loop_start already
 * took the loop for the thread it spawned. */
static int enter(struct rill_loop *loop, struct rill_loop **saved, bool claimed)
{
    if (tls_loop == loop)
        return -EDEADLK; /* nested run from one of this loop's callbacks */
    int expect = 0;
    if (!claimed && !atomic_compare_exchange_strong(&loop->in_run, &expect, 1))
        return -EALREADY;
    *saved = tls_loop;
    tls_loop = loop;
    return 0;
}

static void leave(struct rill_loop *loop, struct rill_loop *saved)
{
    tls_loop = saved;
    atomic_store(&loop->in_run, 0);
}

/* For the embedded channel: let the calling thread act as the thread of a
 * loop that no thread runs, for the span of one call, so loop-only
 * functions (pipeline callbacks, RILL_ASSERT_IN_LOOP) work there. */
int rill__loop_enter(struct rill_loop *loop, struct rill_loop **saved)
{
    if (tls_loop == loop)
        return 1;
    int err = enter(loop, saved, false);
    return err == -EALREADY ? RILL_ENOTLOOP : err;
}

void rill__loop_leave(struct rill_loop *loop, struct rill_loop *saved)
{
    leave(loop, saved);
}

int rill_loop_run_once(struct rill_loop *loop, int64_t timeout_ns)
{
    if (rill_loop_is_terminated(loop))
        return RILL_ECLOSED;
    struct rill_loop *saved;
    int err = enter(loop, &saved, false);
    if (err)
        return err;
    int s = LOOP_NEW;
    atomic_compare_exchange_strong(&loop->state, &s, LOOP_RUNNING);
    int n = iterate(loop, timeout_ns);
    check_shutdown(loop);
    leave(loop, saved);
    return n;
}

static int run(struct rill_loop *loop, bool claimed)
{
    struct rill_loop *saved;
    int err = enter(loop, &saved, claimed);
    if (err)
        return err;
    int s = LOOP_NEW;
    atomic_compare_exchange_strong(&loop->state, &s, LOOP_RUNNING);
    for (;;) {
        int n = iterate(loop, -1);
        if (n < 0) {
            RILL_ERROR("loop %s: epoll_wait failed: %s", loop->name, rill_strerror(n));
            err = n;
            rill_loop_shutdown(loop, 0, 0);
        }
        if (check_shutdown(loop))
            break;
    }
    leave(loop, saved);
    return err;
}

int rill_loop_run(struct rill_loop *loop)
{
    if (rill_loop_is_terminated(loop))
        return RILL_ECLOSED;
    return run(loop, false);
}

static void *loop_thread(void *arg)
{
    struct rill_loop *loop = arg;
    pthread_setname_np(pthread_self(), loop->name);
    if (loop->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(loop->cpu, &set);
        int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (err)
            RILL_WARN("loop %s: cannot pin to CPU %d: %s", loop->name, loop->cpu,
                      rill_strerror(-err));
    }
    run(loop, true);
    return NULL;
}

int rill_loop_start(struct rill_loop *loop)
{
    if (rill_loop_is_terminated(loop))
        return RILL_ECLOSED;
    /* Claim the loop here, not in the new thread, so no run_once from
     * another thread can slip in before the thread gets going. */
    int expect = 0;
    if (loop->has_thread || !atomic_compare_exchange_strong(&loop->in_run, &expect, 1))
        return -EALREADY;
    loop->name[15] = '\0'; /* thread names are 15 bytes: keep the name users see */
    int err = pthread_create(&loop->thread, NULL, loop_thread, loop);
    if (err) {
        atomic_store(&loop->in_run, 0);
        return -err;
    }
    loop->has_thread = true;
    return 0;
}

void rill_loop_free(struct rill_loop *loop)
{
    if (!loop)
        return;
    if (tls_loop == loop)
        RILL_PANIC("rill_loop_free called on loop %s's own thread", loop->name);
    if (loop->has_thread) {
        if (!rill_loop_is_shutting_down(loop))
            RILL_PANIC("rill_loop_free: loop %s is still running; shut it down first", loop->name);
        pthread_join(loop->thread, NULL);
    } else if (rill_loop_is_terminated(loop)) {
        /* Run on a user thread: it may still be returning from run(). */
        while (atomic_load(&loop->in_run))
            sched_yield();
    } else {
        /* Never ran (or ran only run_once): run what is queued, here. */
        struct rill_loop *saved;
        if (enter(loop, &saved, false) == 0) {
            terminate(loop);
            leave(loop, saved);
        }
    }
    for (size_t i = 0; i < sizeof(loop->ext) / sizeof(loop->ext[0]); i++)
        if (loop->ext[i].free)
            loop->ext[i].free(loop->ext[i].data);
    close(loop->evfd);
    close(loop->epfd);
    free(loop->events);
    rill__timers_free(&loop->timers);
    rill_promise_release(loop->termination);
    free(loop);
}

int rill_loop_advance_clock(struct rill_loop *loop, uint64_t ns)
{
    if (!loop->manual_clock)
        return -EINVAL;
    struct rill_loop *saved = NULL;
    bool entered = false;
    if (tls_loop != loop) {
        int err = enter(loop, &saved, false); /* a loop nobody runs: act as its thread */
        if (err)
            return err == -EALREADY ? RILL_ENOTLOOP : err;
        entered = true;
    }
    /* Timers scheduled from other threads arrive as tasks: take them in
     * first. Then step the clock from deadline to deadline so every timer
     * (periodic ones once per period) fires in order and sees its own
     * deadline as the time. */
    run_tasks(loop);
    uint64_t target = rill__loop_now(loop) + ns;
    int n = 0;
    for (;;) {
        int64_t d = rill__timers_next_deadline(loop);
        if (d < 0 || (uint64_t)d > target)
            break;
        if ((uint64_t)d > rill__loop_now(loop))
            atomic_store_explicit(&loop->now, (uint64_t)d, memory_order_relaxed);
        n += rill__timers_run(loop);
    }
    atomic_store_explicit(&loop->now, target, memory_order_relaxed);
    if (entered)
        leave(loop, saved);
    return n;
}
