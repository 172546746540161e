/* An event loop: one thread, one epoll instance, an eventfd for wake-ups, a
 * wait-free MPSC task queue (liburcu cds_wfcq) and a timer heap.
 *
 * Everything registered on a loop runs on the loop's thread, so the code it
 * runs needs no locks. Other threads talk to a loop only by posting tasks
 * (rill_loop_post / rill_loop_execute); wake-ups coalesce: however many tasks
 * are posted while the loop is awake, it is woken at most once per sleep.
 *
 *   operation                 thread
 *   rill_loop_post/execute    any
 *   rill_timer_* (timer.h)    any
 *   rill_loop_shutdown        any
 *   rill_io_* (fd watching)   loop thread only
 *   rill_loop_now             loop thread only (any thread may read it, racily)
 */
#ifndef RILL_LOOP_H
#define RILL_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <urcu/wfcqueue.h>

#include "rill/common.h"
#include "rill/log.h"

struct rill_loop;
struct rill_promise;

struct rill_loop_opts {
    const char *name;  /* thread name (first 15 bytes used); default "rill-loop" */
    int cpu;           /* CPU to pin the loop thread to, or -1 (default) for none */
    int max_events;    /* epoll_wait batch size; default 256 */
    bool manual_clock; /* time moves only through rill_loop_advance_clock (tests) */
    /* Completion-queue transports (RDMA): how the loop learns about
     * completions. The default is off, or what the environment variable
     * RILL_BUSY_POLL says (on, adaptive, off). */
    enum rill_busy_poll {
        RILL_BUSY_POLL_OFF = 0,      /* completion events through epoll (default) */
        RILL_BUSY_POLL_ON = 1,       /* poll every iteration, never sleep: lowest latency */
        RILL_BUSY_POLL_ADAPTIVE = 2, /* poll while completions keep coming, sleep when idle */
    } busy_poll;
};

/* Initialise @opts with the defaults above. Thread: any. */
void rill_loop_opts_init(struct rill_loop_opts *opts);

/* Thread: any. Create a loop that is not running yet. @opts may be NULL.
 * Returns 0 and a loop owned by the caller in *out, or -errno. */
int rill_loop_new(const struct rill_loop_opts *opts, struct rill_loop **out);

/* Thread: any. The busy-poll mode the loop was created with. */
enum rill_busy_poll rill_loop_busy_poll(const struct rill_loop *loop);

/* Thread: any. Start a dedicated thread running the loop until it
 * terminates. Returns 0, -EALREADY if already started, or -errno. */
int rill_loop_start(struct rill_loop *loop);

/* Thread: the caller's thread becomes the loop thread until the loop
 * terminates (after rill_loop_shutdown). Returns 0, or -EALREADY when the
 * loop already runs elsewhere. */
int rill_loop_run(struct rill_loop *loop);

/* Thread: loop thread, or any thread when the loop has no running thread
 * (the caller then acts as the loop thread for this call). Runs one
 * iteration: waits for I/O at most @timeout_ns (0 polls, <0 waits until
 * something happens), then runs I/O callbacks, due timers and queued tasks.
 * Returns the number of callbacks and tasks run, or -errno. */
int rill_loop_run_once(struct rill_loop *loop, int64_t timeout_ns);

/* Thread: any. Begin a graceful shutdown: the loop keeps running until no
 * task was posted for @quiet_ns, or @timeout_ns passed since this call,
 * whichever comes first; then it runs the tasks still queued, cancels its
 * timers, refuses new tasks (RILL_EREJECTED) and terminates. Idempotent: a
 * second call can only shorten the timeout. */
void rill_loop_shutdown(struct rill_loop *loop, uint64_t quiet_ns, uint64_t timeout_ns);

/* Thread: any. True once shutdown was requested. */
bool rill_loop_is_shutting_down(const struct rill_loop *loop);

/* Thread: any. True once the loop has terminated. */
bool rill_loop_is_terminated(const struct rill_loop *loop);

/* Thread: any. A future completed (with success) when the loop terminates.
 * Borrowed: valid until rill_loop_free(). */
struct rill_promise *rill_loop_termination(struct rill_loop *loop);

/* Thread: any thread except the loop's own. Frees the loop. If its thread
 * was started, the loop must have been shut down; this joins the thread.
 * A loop that never ran may be freed at once; its queued tasks are run on
 * the caller's thread first so none is lost. */
void rill_loop_free(struct rill_loop *loop);

/* Thread: any. True when called from @loop's thread. */
bool rill_loop_in_thread(const struct rill_loop *loop);

/* Thread: any. The loop running on the calling thread, or NULL. */
struct rill_loop *rill_loop_current(void);

/* Thread: any. The loop's name. Borrowed, valid until rill_loop_free(). */
const char *rill_loop_name(const struct rill_loop *loop);

/* Thread: loop thread only. The loop's clock in ns (monotonic, or the
 * manual clock), cached at the start of each iteration. */
uint64_t rill_loop_now(const struct rill_loop *loop);

/* Thread: loop thread, or any thread when no thread runs the loop.
 * Manual-clock loops only. Runs the tasks queued so far (so timers scheduled
 * from other threads are in place), then moves the clock forward by @ns,
 * stepping from deadline to deadline: every timer due by then fires in
 * deadline order, a periodic one once per period, and each callback sees
 * its own deadline as rill_loop_now(). Returns the number of timer
 * callbacks run, -EINVAL for a loop with a real clock, or RILL_ENOTLOOP when
 * another thread is running the loop. */
int rill_loop_advance_clock(struct rill_loop *loop, uint64_t ns);

/* Abort with a clear message unless on @loop's thread (debug builds only). */
#if RILL_DEBUG
#define RILL_ASSERT_IN_LOOP(loop)                                                                  \
    do {                                                                                           \
        if (!rill_loop_in_thread(loop))                                                            \
            RILL_PANIC("loop-thread-only call made from another thread (loop %s)",                 \
                       rill_loop_name(loop));                                                      \
    } while (0)
#else
#define RILL_ASSERT_IN_LOOP(loop) ((void)(loop))
#endif

/* ---- tasks ---- */

typedef void rill_task_fn(void *arg);

/* An intrusive task: embed it in your own object to post work without an
 * allocation. The fields are private once posted. */
struct rill_task {
    struct cds_wfcq_node _node;
    rill_task_fn *fn;
    void *arg;
};

/* Thread: any. Initialise @t to run fn(arg). */
void rill_task_init(struct rill_task *t, rill_task_fn *fn, void *arg);

/* Thread: any. Queue @t to run once on @loop's thread. Tasks posted by one
 * thread run in the order they were posted. The loop does not touch @t after
 * calling t->fn, so fn may free or re-post it. @t must stay valid until
 * then. Returns 0, or RILL_EREJECTED when the loop has terminated (the task
 * will never run and the caller still owns it). */
int rill_loop_post(struct rill_loop *loop, struct rill_task *t);

/* Thread: any. Like rill_loop_post with a task allocated by rill. Returns 0,
 * -ENOMEM, or RILL_EREJECTED (fn is then not called). */
int rill_loop_execute(struct rill_loop *loop, rill_task_fn *fn, void *arg);

/* Thread: any. Tasks queued and not yet run (approximate). */
uint64_t rill_loop_pending_tasks(const struct rill_loop *loop);

/* ---- fd watching (for transports) ---- */

struct rill_io;
/* Called on the loop thread with the ready epoll events. */
typedef void rill_io_fn(struct rill_io *io, uint32_t events);

struct rill_io {
    int fd;
    uint32_t events; /* read-only: the events last armed */
    rill_io_fn *cb;
    void *data; /* user data */
    struct rill_loop *_loop;
};

/* Thread: any (the watcher is not armed yet). */
void rill_io_init(struct rill_io *io, int fd, rill_io_fn *cb, void *data);

/* Thread: loop thread only. Watch io->fd for @events (EPOLLIN, EPOLLOUT,
 * EPOLLRDHUP, EPOLLET for edge triggering, ...). @io must stay valid until
 * rill_io_stop(). Returns 0, -EEXIST if already started, or -errno. */
int rill_io_start(struct rill_loop *loop, struct rill_io *io, uint32_t events);

/* Thread: loop thread only. Change the watched events. */
int rill_io_modify(struct rill_io *io, uint32_t events);

/* Thread: loop thread only. Stop watching; events already collected for
 * this watcher in the current iteration are dropped, so @io may be freed as
 * soon as this returns. Does not close the fd. Returns 0 or -ENOENT. */
int rill_io_stop(struct rill_io *io);

/* Thread: any. True between rill_io_start and rill_io_stop. */
static inline bool rill_io_active(const struct rill_io *io)
{
    return io->_loop != NULL;
}

#endif /* RILL_LOOP_H */
