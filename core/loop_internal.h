/* Private to the loop, its timers and futures. */
#ifndef RILL_LOOP_INTERNAL_H
#define RILL_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rill/list.h"
#include "rill/loop.h"
#include "rill/timer.h"

/* ThreadSanitizer cannot see the ordering liburcu's queue provides (its
 * atomics are inline assembly), so posting and running a task are
 * annotated as a release/acquire pair on the task. */
#if defined(__SANITIZE_THREAD__)
#define RILL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RILL_TSAN 1
#endif
#endif
#ifdef RILL_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define rill__tsan_acquire(p) __tsan_acquire(p)
#define rill__tsan_release(p) __tsan_release(p)
#else
#define rill__tsan_acquire(p) ((void)(p))
#define rill__tsan_release(p) ((void)(p))
#endif

enum loop_state {
    LOOP_NEW = 0,
    LOOP_RUNNING = 1,
    LOOP_SHUTTING_DOWN = 2,
    LOOP_TERMINATED = 3,
};

/* Timer heap: a binary min-heap on (deadline, seq); each timer knows its
 * slot so cancellation is O(log n). Loop thread only. */
struct rill_timer_heap {
    struct rill_timer **v;
    size_t n, cap;
    uint64_t seq;
};

/* submit_gate, one word so a post costs two atomic adds on one line:
 *   bits 32-63  tasks posted so far (wraps off the top harmlessly)
 *   bit 31      the loop has terminated: posts are refused
 *   bits 0-30   posters between their check and their enqueue; termination
 *               waits for them so no task is enqueued after the final drain */
#define LOOP_GATE_POSTED   (1ull << 32)
#define LOOP_GATE_CLOSED   (1ull << 31)
#define LOOP_GATE_INFLIGHT (LOOP_GATE_CLOSED - 1)

struct rill_loop {
    /* Written by posting threads. */
    struct __cds_wfcq_head qhead;
    struct cds_wfcq_tail qtail;
    _Atomic uint64_t submit_gate;
    _Atomic int wake_armed; /* 1 while the loop sleeps or is about to */
    _Atomic uint64_t ran;

    /* Loop thread. */
    int epfd, evfd;
    struct epoll_event *events;
    int max_events;
    int ev_cur, ev_n; /* dispatch position, for rill_io_stop invalidation */
    _Atomic uint64_t now;
    bool manual_clock;
    struct rill_timer_heap timers;
    uint64_t last_task_ns; /* real time the loop last ran a task (quiet period) */
    bool timers_cancelled;

    /* Lifecycle. */
    _Atomic int state;
    _Atomic int in_run; /* a thread is inside run / run_once */
    _Atomic uint64_t quiet_ns, deadline_ns;
    pthread_t thread;
    bool has_thread, joined;
    int cpu;
    struct rill_promise *termination;
    struct rill_list shutdown_hooks; /* struct rill__loop_hook */
    enum rill_busy_poll busy_poll;
    struct rill_list pollers; /* struct rill__loop_poller: run every iteration */
    struct rill__loop_ext {
        void *data;
        void (*free)(void *data); /* at rill_loop_free, on the freeing thread */
    } ext[2];
    char name[32];
};

/* Run when the loop's graceful shutdown begins, on the loop thread (the
 * channel core closes every channel registered on the loop this way, as
 * Netty's closeAll does). The hook is unlinked before fn runs. */
struct rill__loop_hook {
    struct rill_list link;
    void (*fn)(struct rill__loop_hook *h);
};

/* Thread: loop thread only. Add @h and return true; false when shutdown
 * has already begun (the hook is not added: act on it yourself). Remove is
 * harmless for a hook that already ran or was never added (add, the run
 * and a false return all leave the node self-linked). */
bool rill__loop_add_shutdown_hook(struct rill_loop *loop, struct rill__loop_hook *h);
void rill__loop_remove_shutdown_hook(struct rill__loop_hook *h);

/* Run every iteration right after the I/O callbacks while added; while
 * any is added the loop never sleeps (busy polling). fn returns how much
 * work it did (counted as callbacks run). */
struct rill__loop_poller {
    struct rill_list link;
    int (*fn)(struct rill__loop_poller *p);
};

/* Thread: loop thread only. Add / remove a poller (remove is harmless for
 * one not added; a poller may remove itself from inside fn). */
void rill__loop_add_poller(struct rill_loop *loop, struct rill__loop_poller *p);
void rill__loop_remove_poller(struct rill__loop_poller *p);

/* Per-loop state of a transport, created on first use and freed with the
 * loop (after it terminated: every channel is closed by then). */
enum { RILL__LOOP_EXT_RDMA = 0 };
/* Thread: loop thread (or before the loop runs). */
static inline void *rill__loop_ext(struct rill_loop *loop, int slot)
{
    return loop->ext[slot].data;
}
static inline void rill__loop_set_ext(struct rill_loop *loop, int slot, void *data,
                                      void (*free_fn)(void *data))
{
    loop->ext[slot].data = data;
    loop->ext[slot].free = free_fn;
}

/* loop.c: the busy-poll mode RILL_BUSY_POLL names (off when unset). */
enum rill_busy_poll rill__busy_poll_default(void);

/* timer.c */
void rill__timers_init(struct rill_timer_heap *h);
void rill__timers_free(struct rill_timer_heap *h);
/* Nanoseconds until the earliest deadline (0 if due), or -1 if none. */
int64_t rill__timers_next(struct rill_loop *loop);
/* The earliest deadline (loop clock), or -1 when no timer is pending. */
int64_t rill__timers_next_deadline(struct rill_loop *loop);
/* Run every timer due at loop->now; returns how many ran. */
int rill__timers_run(struct rill_loop *loop);
/* Cancel every pending timer (termination). */
void rill__timers_cancel_all(struct rill_loop *loop);

/* loop.c */
int rill__loop_post(struct rill_loop *loop, struct rill_task *t);
/* Act as @loop's thread until rill__loop_leave (the embedded channel drives
 * a loop that no thread runs). Returns 0 (call leave with *saved), 1 when
 * the caller already is the loop's thread (don't call leave), or
 * RILL_ENOTLOOP when another thread runs the loop. */
int rill__loop_enter(struct rill_loop *loop, struct rill_loop **saved);
void rill__loop_leave(struct rill_loop *loop, struct rill_loop *saved);
static inline uint64_t rill__loop_now(const struct rill_loop *loop)
{
    return atomic_load_explicit(&((struct rill_loop *)loop)->now, memory_order_relaxed);
}

#endif /* RILL_LOOP_INTERNAL_H */
