/* Cross-thread task throughput and ping-pong latency: a rill loop against
 * the classic mutex + condition variable queue consumed by one thread.
 *
 * Build Release; run it once pinned to one CPU and once unpinned:
 *   cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
 *   ninja -C build/release bench_tasks
 *   taskset -c 0 build/release/bench/bench_tasks
 *   build/release/bench/bench_tasks
 * Pinned, producers and consumer share one CPU: the figures are the whole
 * cost of a hand-off (both sides together), with no cross-CPU wake-ups;
 * they still move by 10-40 % between invocations because how long each
 * side runs before the scheduler switches decides the batch sizes.
 * Unpinned, on a 2-vCPU machine, the threads race on two vCPUs whose speed
 * depends on the host's load and waking the other vCPU costs tens of
 * microseconds; expect spreads of tens of percent, more with 2 producers.
 * Compare ratios from one invocation, on an otherwise idle machine, and
 * repeat the invocation; the runs within one alternate A B A B.
 * Options: -n tasks per throughput run (default 2000000), -r runs per cell
 * (default 5, median reported), -p producer counts (default "1,2"),
 * -l ping-pong round trips per run (default 20000).
 *
 * Throughput: P producer threads post N tasks in total to one consumer.
 *   rill post     rill_loop_post with intrusive tasks, reused from a ring of
 *                 4096 per producer once the consumer ran them (so they stay
 *                 in cache, as tasks embedded in live objects do)
 *   rill execute  rill_loop_execute (rill allocates each task)
 *   condvar       producer locks, appends a node from the same kind of ring,
 *                 signals only if the consumer sleeps; the consumer takes the
 *                 whole list under the lock and runs it unlocked (batches)
 *   condvar+alloc the same with a malloc'd node per task (compares with
 *                 rill execute)
 * Clock: from the moment the producers are released until the consumer ran
 * the last task. CPU: process user+sys time per task over the same span.
 *
 * Latency (round trip, per iteration, p50/p99 and mean):
 *   rill post->promise  a thread posts a task to a loop; the task completes
 *                       a fresh promise the thread waits on (futex)
 *   condvar req->reply  a thread pushes to the consumer's queue; the task
 *                       sets a flag under a second mutex and signals
 *   rill loop<->loop    one intrusive task bounced between two loops
 *   condvar thr<->thr   one node bounced between two consumer threads
 *
 * Every run is bounded by count and by wall time (10 s); rill and the
 * baseline alternate within each repetition (A B A B) so drift hits both. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rill/clock.h"
#include "rill/future.h"
#include "rill/loop.h"

#define MAX_PROD 8
#define MAX_RUNS 31
#define WALL_NS  (10 * RILL_NS_PER_S)

static uint64_t now_ns(void)
{
    return rill_clock_now_ns();
}

static uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * RILL_NS_PER_S +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_tasks: %s: %d (%s)\n", what, err, strerror(err < 0 ? -err : err));
    exit(1);
}

/* ---- the baseline: mutex + condvar queue, one consumer thread ---- */

struct bnode {
    struct bnode *next;
    void (*fn)(void *);
    void *arg;
};

struct bq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct bnode *head, **tail;
    bool waiting, stop;
    pthread_t th;
};

static void bq_push(struct bq *q, struct bnode *n)
{
    n->next = NULL;
    pthread_mutex_lock(&q->mu);
    *q->tail = n;
    q->tail = &n->next;
    bool wake = q->waiting;
    pthread_mutex_unlock(&q->mu);
    if (wake)
        pthread_cond_signal(&q->cv);
}

static void *bq_consumer(void *arg)
{
    struct bq *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->head && !q->stop) {
            q->waiting = true;
            pthread_cond_wait(&q->cv, &q->mu);
        }
        q->waiting = false;
        struct bnode *batch = q->head;
        bool stop = q->stop && !batch;
        q->head = NULL;
        q->tail = &q->head;
        pthread_mutex_unlock(&q->mu);
        if (stop)
            return NULL;
        while (batch) {
            struct bnode *next = batch->next; /* fn may free or reuse the node */
            batch->fn(batch->arg);
            batch = next;
        }
    }
}

static void bq_start(struct bq *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->head = NULL;
    q->tail = &q->head;
    q->waiting = q->stop = false;
    int err = pthread_create(&q->th, NULL, bq_consumer, q);
    if (err)
        die("pthread_create", err);
}

static void bq_stop(struct bq *q)
{
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_mutex_unlock(&q->mu);
    pthread_cond_signal(&q->cv);
    pthread_join(q->th, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/* ---- throughput ---- */

enum impl { I_RILL_POST, I_RILL_EXEC, I_COND, I_COND_ALLOC, NIMPL };
static const char *const impl_name[NIMPL] = { "rill post", "rill execute", "condvar",
                                              "condvar+alloc" };

#define RING 4096 /* reusable intrusive tasks per producer: stays in cache */

struct run {
    /* Read-only while the run lasts. */
    enum impl impl;
    int nprod;
    uint64_t per_prod, target;
    struct rill_promise *done;
    struct rill_loop *loop;
    atomic_int go;
    atomic_int aborted;
    /* Producers and the consumer. */
    _Alignas(64) struct bq q;
    /* Consumer only. */
    _Alignas(64) uint64_t count;
    uint64_t end_ns;
};

struct producer;

struct ptask { /* one reusable unit of work, either kind of node */
    struct rill_task task;
    struct bnode node;
    struct producer *p;
};

struct producer {
    /* Consumer-written: tasks of this producer that ran (ring slots free). */
    _Alignas(64) _Atomic uint64_t ran;
    _Alignas(64) pthread_t th;
    struct run *r;
    struct ptask *ring;
    uint64_t posted;
};

static void consume(struct run *r)
{
    if (++r->count == r->target) {
        r->end_ns = now_ns();
        rill_promise_succeed(r->done, NULL, NULL);
    }
}

static void consume_ring(void *arg)
{
    struct ptask *t = arg;
    struct producer *p = t->p;
    struct run *r = p->r;
    atomic_store_explicit(&p->ran, atomic_load_explicit(&p->ran, memory_order_relaxed) + 1,
                          memory_order_release); /* single writer */
    consume(r);
}

static void consume_run(void *arg)
{
    consume(arg);
}

/* condvar+alloc: the node is malloc'd; the consumer frees it. */
struct anode {
    struct bnode node;
    struct run *r;
};

static void consume_anode(void *arg)
{
    struct anode *a = arg;
    struct run *r = a->r;
    free(a);
    consume(r);
}

/* Before reusing ring slots, wait until the consumer ran what used them. */
static bool ring_wait(struct producer *p, uint64_t i, uint64_t deadline)
{
    if (i < RING || i % (RING / 2) != 0)
        return true;
    while (atomic_load_explicit(&p->ran, memory_order_acquire) < i - RING / 2) {
        if (now_ns() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct run *r = p->r;
    const enum impl impl = r->impl;
    struct rill_loop *const loop = r->loop;
    struct bq *const q = &r->q;
    const uint64_t n = r->per_prod;
    const bool ring = impl == I_RILL_POST || impl == I_COND;
    while (!atomic_load_explicit(&r->go, memory_order_acquire))
        sched_yield();
    uint64_t deadline = now_ns() + WALL_NS;
    for (uint64_t i = 0; i < n; i++) {
        if (((i & 4095) == 0 && now_ns() > deadline) || (ring && !ring_wait(p, i, deadline))) {
            atomic_store(&r->aborted, 1);
            break;
        }
        struct ptask *t = &p->ring[i % RING];
        int err = 0;
        switch (impl) {
        case I_RILL_POST:
            rill_task_init(&t->task, consume_ring, t);
            err = rill_loop_post(loop, &t->task);
            break;
        case I_RILL_EXEC:
            err = rill_loop_execute(loop, consume_run, r);
            break;
        case I_COND:
            t->node.fn = consume_ring;
            t->node.arg = t;
            bq_push(q, &t->node);
            break;
        case I_COND_ALLOC: {
            struct anode *a = malloc(sizeof(*a));
            if (!a) {
                err = -ENOMEM;
                break;
            }
            a->node.fn = consume_anode;
            a->node.arg = a;
            a->r = r;
            bq_push(q, &a->node);
            break;
        }
        default:
            break;
        }
        if (err)
            die("post", err);
        p->posted++;
    }
    return NULL;
}

struct result {
    double tasks_per_s;
    double cpu_ns_per_task;
    bool aborted;
};

static struct result run_throughput(enum impl impl, int nprod, uint64_t total)
{
    static struct run r; /* aligned members: keep it off the stack */
    memset(&r, 0, sizeof(r));
    r.impl = impl;
    r.nprod = nprod;
    r.per_prod = total / (uint64_t)nprod;
    r.target = r.per_prod * (uint64_t)nprod;
    int err = rill_promise_new(NULL, &r.done);
    if (err)
        die("rill_promise_new", err);
    if (impl == I_RILL_POST || impl == I_RILL_EXEC) {
        struct rill_loop_opts o;
        rill_loop_opts_init(&o);
        o.name = "bench-loop";
        if ((err = rill_loop_new(&o, &r.loop)) || (err = rill_loop_start(r.loop)))
            die("loop", err);
    } else {
        bq_start(&r.q);
    }
    static struct producer prod[MAX_PROD];
    for (int i = 0; i < nprod; i++) {
        memset(&prod[i], 0, sizeof(prod[i]));
        prod[i].r = &r;
        prod[i].ring = calloc(RING, sizeof(struct ptask));
        if (!prod[i].ring)
            die("calloc", ENOMEM);
        for (int k = 0; k < RING; k++)
            prod[i].ring[k].p = &prod[i];
        if ((err = pthread_create(&prod[i].th, NULL, producer_main, &prod[i])))
            die("pthread_create", err);
    }
    usleep(1000);
    uint64_t c0 = cpu_ns();
    uint64_t t0 = now_ns();
    atomic_store_explicit(&r.go, 1, memory_order_release);
    for (int i = 0; i < nprod; i++)
        pthread_join(prod[i].th, NULL);
    struct result res = { 0 };
    res.aborted = atomic_load(&r.aborted);
    int rc = res.aborted ? -ETIMEDOUT : rill_promise_wait(r.done, (int64_t)WALL_NS);
    uint64_t c1 = cpu_ns();
    if (rc == 0) {
        res.tasks_per_s = (double)r.target * 1e9 / (double)(r.end_ns - t0);
        res.cpu_ns_per_task = (double)(c1 - c0) / (double)r.target;
    } else {
        res.aborted = true;
    }
    if (r.loop) {
        rill_loop_shutdown(r.loop, 0, 0);
        rill_promise_wait(rill_loop_termination(r.loop), -1);
        rill_loop_free(r.loop);
    } else {
        bq_stop(&r.q);
    }
    for (int i = 0; i < nprod; i++)
        free(prod[i].ring);
    rill_promise_release(r.done);
    return res;
}

/* ---- latency ---- */

struct lat {
    double p50_us, p99_us, mean_us;
    bool aborted;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static struct lat summarize(uint64_t *v, uint64_t n, uint64_t total_ns, bool aborted)
{
    struct lat l = { 0 };
    l.aborted = aborted || n == 0;
    if (n == 0)
        return l;
    qsort(v, n, sizeof(*v), cmp_u64);
    l.p50_us = (double)v[n / 2] / 1e3;
    l.p99_us = (double)v[(n * 99) / 100] / 1e3;
    l.mean_us = (double)total_ns / (double)n / 1e3;
    return l;
}

/* rill: thread -> loop task -> promise -> thread */
static struct rill_promise *pp_promise;

/* The task owns a reference: the waiter may release its own as soon as it
 * sees the promise complete, while succeed() is still running here. */
static void pp_complete(void *arg)
{
    struct rill_promise *p = arg;
    rill_promise_succeed(p, NULL, NULL);
    rill_promise_release(p);
}

static struct lat lat_rill_promise(uint64_t iters, uint64_t *samples)
{
    struct rill_loop *loop;
    struct rill_loop_opts o;
    rill_loop_opts_init(&o);
    o.name = "bench-pp";
    int err;
    if ((err = rill_loop_new(&o, &loop)) || (err = rill_loop_start(loop)))
        die("loop", err);
    struct rill_task t;
    uint64_t n = 0, start = now_ns(), deadline = start + WALL_NS;
    bool aborted = false;
    for (; n < iters; n++) {
        if (now_ns() > deadline) {
            aborted = true;
            break;
        }
        uint64_t a = now_ns();
        if ((err = rill_promise_new(NULL, &pp_promise)))
            die("promise", err);
        rill_task_init(&t, pp_complete, rill_promise_retain(pp_promise));
        if ((err = rill_loop_post(loop, &t)))
            die("post", err);
        if ((err = rill_promise_wait(pp_promise, (int64_t)WALL_NS)))
            die("wait", err);
        rill_promise_release(pp_promise);
        samples[n] = now_ns() - a;
    }
    uint64_t total = now_ns() - start;
    rill_loop_shutdown(loop, 0, 0);
    rill_promise_wait(rill_loop_termination(loop), -1);
    rill_loop_free(loop);
    return summarize(samples, n, total, aborted);
}

/* baseline: thread -> consumer thread -> flag + condvar -> thread */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, waiting;
} reply = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false };

static void reply_task(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reply.mu);
    reply.ready = true;
    bool wake = reply.waiting;
    pthread_mutex_unlock(&reply.mu);
    if (wake)
        pthread_cond_signal(&reply.cv);
}

static struct lat lat_cond_reply(uint64_t iters, uint64_t *samples)
{
    struct bq q;
    bq_start(&q);
    struct bnode node;
    uint64_t n = 0, start = now_ns(), deadline = start + WALL_NS;
    bool aborted = false;
    for (; n < iters; n++) {
        if (now_ns() > deadline) {
            aborted = true;
            break;
        }
        uint64_t a = now_ns();
        node.fn = reply_task;
        node.arg = NULL;
        bq_push(&q, &node);
        pthread_mutex_lock(&reply.mu);
        while (!reply.ready) {
            reply.waiting = true;
            pthread_cond_wait(&reply.cv, &reply.mu);
        }
        reply.waiting = false;
        reply.ready = false;
        pthread_mutex_unlock(&reply.mu);
        samples[n] = now_ns() - a;
    }
    uint64_t total = now_ns() - start;
    bq_stop(&q);
    return summarize(samples, n, total, aborted);
}

/* Bouncing one task between two executors; round trip = two hops. */
struct bounce {
    struct rill_loop *loops[2];
    struct bq *qs[2];
    struct rill_task task;
    struct bnode node;
    uint64_t hops, max_hops;
    uint64_t deadline;
    uint64_t end_ns;
    struct rill_promise *done;
};

static void bounce_rill(void *arg)
{
    struct bounce *b = arg;
    if (++b->hops >= b->max_hops || ((b->hops & 1023) == 0 && now_ns() > b->deadline)) {
        b->end_ns = now_ns();
        rill_promise_succeed(b->done, NULL, NULL);
        return;
    }
    int err = rill_loop_post(b->loops[b->hops & 1], &b->task);
    if (err)
        die("post", err);
}

static void bounce_cond(void *arg)
{
    struct bounce *b = arg;
    if (++b->hops >= b->max_hops || ((b->hops & 1023) == 0 && now_ns() > b->deadline)) {
        b->end_ns = now_ns();
        rill_promise_succeed(b->done, NULL, NULL);
        return;
    }
    bq_push(b->qs[b->hops & 1], &b->node);
}

static struct lat lat_bounce(bool rill, uint64_t round_trips)
{
    struct bounce b;
    memset(&b, 0, sizeof(b));
    b.max_hops = 2 * round_trips;
    int err = rill_promise_new(NULL, &b.done);
    if (err)
        die("promise", err);
    struct bq qs[2];
    for (int i = 0; i < 2; i++) {
        if (rill) {
            struct rill_loop_opts o;
            rill_loop_opts_init(&o);
            o.name = i ? "bench-pong" : "bench-ping";
            if ((err = rill_loop_new(&o, &b.loops[i])) || (err = rill_loop_start(b.loops[i])))
                die("loop", err);
        } else {
            bq_start(&qs[i]);
            b.qs[i] = &qs[i];
        }
    }
    usleep(1000);
    uint64_t t0 = now_ns();
    b.deadline = t0 + WALL_NS;
    if (rill) {
        rill_task_init(&b.task, bounce_rill, &b);
        err = rill_loop_post(b.loops[0], &b.task);
        if (err)
            die("post", err);
    } else {
        b.node.fn = bounce_cond;
        b.node.arg = &b;
        bq_push(b.qs[0], &b.node);
    }
    rill_promise_wait(b.done, -1);
    struct lat l = { 0 };
    l.aborted = b.hops < b.max_hops;
    l.mean_us = (double)(b.end_ns - t0) / ((double)b.hops / 2.0) / 1e3;
    for (int i = 0; i < 2; i++) {
        if (rill) {
            rill_loop_shutdown(b.loops[i], 0, 0);
            rill_promise_wait(rill_loop_termination(b.loops[i]), -1);
            rill_loop_free(b.loops[i]);
        } else {
            bq_stop(&qs[i]);
        }
    }
    rill_promise_release(b.done);
    return l;
}

/* ---- driver ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_tasks [-n tasks] [-r runs] [-p 1,2] [-l round-trips]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t total = 2000000, iters = 20000;
    int runs = 5;
    int prods[MAX_PROD], nprods = 0;
    const char *plist = "1,2";
    int opt;
    while ((opt = getopt(argc, argv, "n:r:p:l:h")) != -1) {
        switch (opt) {
        case 'n':
            total = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'p':
            plist = optarg;
            break;
        case 'l':
            iters = strtoull(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (runs < 1 || runs > MAX_RUNS || total < 1 || iters < 1)
        usage();
    for (const char *s = plist; *s && nprods < MAX_PROD;) {
        int p = atoi(s);
        if (p < 1 || p > MAX_PROD)
            usage();
        prods[nprods++] = p;
        s = strchr(s, ',');
        if (!s)
            break;
        s++;
    }

    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof(set), &set);
    printf("bench_tasks: %llu tasks per run, %d runs per cell (median), %d CPU(s) allowed, "
           "%llu round trips per latency run\n\n",
           (unsigned long long)total, runs, CPU_COUNT(&set), (unsigned long long)iters);

    /* Throughput */
    printf("| producers | queue | Mtasks/s | CPU ns/task | ratio rill/condvar |\n");
    printf("| --- | --- | --- | --- | --- |\n");
    for (int pi = 0; pi < nprods; pi++) {
        double tps[NIMPL][MAX_RUNS], cpu[NIMPL][MAX_RUNS];
        int aborted[NIMPL] = { 0 };
        for (int run = 0; run < runs; run++)
            for (int k = 0; k < NIMPL; k++) { /* alternate: A B C D A B C D */
                struct result res = run_throughput((enum impl)k, prods[pi], total);
                tps[k][run] = res.tasks_per_s;
                cpu[k][run] = res.cpu_ns_per_task;
                aborted[k] += res.aborted;
            }
        double med[NIMPL], medcpu[NIMPL];
        for (int k = 0; k < NIMPL; k++) {
            med[k] = median(tps[k], runs);
            medcpu[k] = median(cpu[k], runs);
        }
        for (int k = 0; k < NIMPL; k++) {
            char ratio[32] = "";
            if (k == I_RILL_POST)
                snprintf(ratio, sizeof(ratio), "%.2f (vs condvar)", med[k] / med[I_COND]);
            else if (k == I_RILL_EXEC)
                snprintf(ratio, sizeof(ratio), "%.2f (vs condvar+alloc)",
                         med[k] / med[I_COND_ALLOC]);
            printf("| %d | %s | %.2f | %.0f | %s |%s\n", prods[pi], impl_name[k], med[k] / 1e6,
                   medcpu[k], ratio, aborted[k] ? " (some runs hit the 10 s bound)" : "");
        }
        fflush(stdout);
    }

    /* Latency */
    uint64_t *samples = malloc(iters * sizeof(*samples));
    if (!samples)
        die("malloc", ENOMEM);
    double rp50[MAX_RUNS], rp99[MAX_RUNS], rmean[MAX_RUNS];
    double cp50[MAX_RUNS], cp99[MAX_RUNS], cmean[MAX_RUNS];
    double rb[MAX_RUNS], cb[MAX_RUNS];
    for (int run = 0; run < runs; run++) {
        struct lat a = lat_rill_promise(iters, samples);
        struct lat b = lat_cond_reply(iters, samples);
        struct lat c = lat_bounce(true, iters);
        struct lat d = lat_bounce(false, iters);
        rp50[run] = a.p50_us;
        rp99[run] = a.p99_us;
        rmean[run] = a.mean_us;
        cp50[run] = b.p50_us;
        cp99[run] = b.p99_us;
        cmean[run] = b.mean_us;
        rb[run] = c.mean_us;
        cb[run] = d.mean_us;
    }
    double r50 = median(rp50, runs), r99 = median(rp99, runs), rm = median(rmean, runs);
    double c50 = median(cp50, runs), c99 = median(cp99, runs), cm = median(cmean, runs);
    double rbm = median(rb, runs), cbm = median(cb, runs);
    printf("\n| round trip | p50 us | p99 us | mean us | ratio rill/condvar (mean) |\n");
    printf("| --- | --- | --- | --- | --- |\n");
    printf("| rill post->promise | %.2f | %.2f | %.2f | %.2f |\n", r50, r99, rm, rm / cm);
    printf("| condvar req->reply | %.2f | %.2f | %.2f | |\n", c50, c99, cm);
    printf("| rill loop<->loop | | | %.2f | %.2f |\n", rbm, rbm / cbm);
    printf("| condvar thr<->thr | | | %.2f | |\n", cbm);
    free(samples);
    return 0;
}
