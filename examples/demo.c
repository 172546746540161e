/* demo: the foundation at work. A worker group of two loops receives tasks
 * from the main thread; each task frames a message into pooled buffers,
 * gathers header and body into a composite without copying, parses it back
 * across the component boundary and completes a promise the main thread
 * waits on. A periodic timer ticks on one loop meanwhile, and the group
 * shuts down gracefully at the end. Allocator statistics and the leak
 * detector's count are printed last (run with RILL_LEAK=paranoid to see
 * the detector at work). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/alloc.h"
#include "rill/buf.h"
#include "rill/clock.h"
#include "rill/composite.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/leak.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/timer.h"

#define NJOBS 8

struct job {
    int id;
    struct rill_promise *done; /* completed with the decoded length */
};

/* Build "length-prefixed header + body" as a composite of two pooled
 * buffers, then decode it the way a codec would. */
static int frame_and_parse(int id, size_t *body_len)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "hello from job %d on %s", id,
                     rill_loop_name(rill_loop_current()));
    struct rill_buf *hdr, *body, *frame;
    int err = rill_buf_alloc(8, &hdr);
    if (err)
        return err;
    if ((err = rill_buf_write_u32_be(hdr, (uint32_t)n)) ||
        (err = rill_buf_copy_from(text, (size_t)n, &body))) {
        rill_buf_release(hdr);
        return err;
    }
    if ((err = rill_buf_composite_new(&frame))) {
        rill_buf_release(hdr);
        rill_buf_release(body);
        return err;
    }
    rill_buf_composite_add(frame, hdr); /* ownership moves into the composite */
    rill_buf_composite_add(frame, body);

    uint32_t len = 0;
    char out[64] = { 0 };
    err = rill_buf_read_u32_be(frame, &len);
    if (!err)
        err = rill_buf_read_bytes(frame, out, len);
    if (!err)
        printf("  [%s] decoded %u bytes from %u components: \"%s\"\n",
               rill_loop_name(rill_loop_current()), len, rill_buf_composite_count(frame), out);
    rill_buf_release(frame);
    *body_len = len;
    return err;
}

static void run_job(void *arg)
{
    struct job *j = arg;
    size_t len = 0;
    int err = frame_and_parse(j->id, &len);
    if (err)
        rill_promise_fail(j->done, err);
    else
        rill_promise_succeed(j->done, (void *)(uintptr_t)len, NULL);
}

static void tick(struct rill_timer *t, void *arg)
{
    int *ticks = arg;
    (*ticks)++;
}

int main(void)
{
    struct rill_loop_group_opts opts;
    rill_loop_group_opts_init(&opts);
    opts.nloops = 2;
    struct rill_loop_group *workers;
    int err = rill_loop_group_new(&opts, &workers);
    if (err) {
        fprintf(stderr, "demo: cannot start loops: %s\n", rill_strerror(err));
        return 1;
    }
    printf("demo: started %d worker loops\n", rill_loop_group_size(workers));

    int ticks = 0;
    struct rill_timer *timer;
    rill_timer_schedule(rill_loop_group_at(workers, 0), 0, 5 * RILL_NS_PER_MS,
                        RILL_TIMER_FIXED_RATE, tick, &ticks, &timer);

    struct job jobs[NJOBS];
    for (int i = 0; i < NJOBS; i++) {
        struct rill_loop *loop = rill_loop_group_next(workers);
        jobs[i].id = i;
        rill_promise_new(loop, &jobs[i].done);
        rill_loop_execute(loop, run_job, &jobs[i]);
    }
    int ok = 0;
    for (int i = 0; i < NJOBS; i++) {
        void *v;
        if (rill_promise_wait(jobs[i].done, 5 * (int64_t)RILL_NS_PER_S) == 0 &&
            rill_promise_result(jobs[i].done, &v) == 0)
            ok++;
        rill_promise_release(jobs[i].done);
    }
    printf("demo: %d/%d jobs completed\n", ok, NJOBS);
    usleep(30 * 1000); /* let the 5 ms timer tick a few times */

    struct rill_promise *term =
        rill_loop_group_shutdown(workers, 20 * RILL_NS_PER_MS, 2 * RILL_NS_PER_S);
    rill_promise_wait(term, -1);
    printf("demo: group terminated; the timer ticked %d times and was %s at shutdown\n", ticks,
           rill_timer_is_cancelled(timer) ? "cancelled" : "not cancelled");
    rill_timer_release(timer);
    rill_loop_group_free(workers);

    struct rill_alloc_stats st;
    rill_alloc_get_stats(&st);
    printf("demo: allocator: %llu bytes in use, %llu bytes mapped in %llu chunks\n",
           (unsigned long long)st.bytes_in_use, (unsigned long long)st.bytes_mapped,
           (unsigned long long)st.chunks);
    printf("demo: leak detector (%s): %zu live messages\n",
           rill_leak_mode() == RILL_LEAK_PARANOID ? "paranoid"
           : rill_leak_mode() == RILL_LEAK_SIMPLE ? "simple"
                                                  : "off",
           rill_leak_live());
    return ok == NJOBS ? 0 : 1;
}
