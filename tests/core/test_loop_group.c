/* Tests for loop groups (include/rill/loop_group.h): named threads, round
 * robin, lookup, pinning, group termination, graceful shutdown, free.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "util/testutil.h"

TestSuite(loop_group, .timeout = 30, .fini = rill_test_no_leaks);

#define S(x)  ((uint64_t)(x)*RILL_NS_PER_S)
#define MS(x) ((uint64_t)(x)*RILL_NS_PER_MS)

/* ---- helpers ---- */

static struct rill_loop_group *new_group(int n, enum rill_loop_role role, const char *name)
{
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = n;
    o.role = role;
    o.name = name;
    struct rill_loop_group *g = NULL;
    cr_assert_eq(rill_loop_group_new(&o, &g), 0);
    cr_assert_not_null(g);
    return g;
}

struct call {
    void (*fn)(void *);
    void *arg;
    struct rill_promise *done;
};

static void call_task(void *a)
{
    struct call *c = a;
    struct rill_promise *done = c->done;
    c->fn(c->arg);
    rill_promise_succeed(done, NULL, NULL);
    rill_promise_release(done);
}

/* Run fn(arg) on @loop's thread and wait for it. */
static void run_on_loop(struct rill_loop *loop, void (*fn)(void *), void *arg)
{
    struct call c = { fn, arg, NULL };
    cr_assert_eq(rill_promise_new(NULL, &c.done), 0);
    struct rill_promise *done = rill_promise_retain(c.done);
    cr_assert_eq(rill_loop_execute(loop, call_task, &c), 0);
    cr_assert_eq(rill_promise_wait(done, (int64_t)S(10)), 0);
    rill_promise_release(done);
}

struct thread_info {
    char name[32];
    struct rill_loop *current;
    int cpu;
};

static void info_task(void *arg)
{
    struct thread_info *t = arg;
    pthread_getname_np(pthread_self(), t->name, sizeof(t->name));
    t->current = rill_loop_current();
    t->cpu = sched_getcpu();
}

static void count_task(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* ---- construction, names, lookup ---- */

Test(loop_group, opts_defaults)
{
    struct rill_loop_group_opts o;
    memset(&o, 0x5a, sizeof(o));
    rill_loop_group_opts_init(&o);
    cr_assert_eq(o.nloops, 0);
    cr_assert_eq(o.role, RILL_ROLE_WORKER);
    cr_assert_null(o.name);
    cr_assert_not(o.pin);
    cr_assert_null(o.cpus);
    cr_assert_eq(o.max_events, 0);
}

Test(loop_group, worker_threads_are_named_and_found)
{
    struct rill_loop_group *g = new_group(3, RILL_ROLE_WORKER, NULL);
    cr_assert_eq(rill_loop_group_size(g), 3);
    cr_assert_eq(rill_loop_group_role(g), RILL_ROLE_WORKER);
    for (int i = 0; i < 3; i++) {
        struct rill_loop *loop = rill_loop_group_at(g, i);
        cr_assert_not_null(loop);
        cr_assert(rill_loop_group_contains(g, loop));
        struct thread_info t = { 0 };
        run_on_loop(loop, info_task, &t);
        char want[32];
        snprintf(want, sizeof(want), "worker-%d", i);
        cr_assert_str_eq(t.name, want);
        cr_assert_str_eq(rill_loop_name(loop), want);
        cr_assert_eq(t.current, loop);
    }
    cr_assert_null(rill_loop_group_at(g, -1));
    cr_assert_null(rill_loop_group_at(g, 3));
    rill_loop_group_free(g);
}

Test(loop_group, boss_and_custom_prefixes)
{
    struct rill_loop_group *boss = new_group(1, RILL_ROLE_BOSS, NULL);
    struct rill_loop_group *io = new_group(2, RILL_ROLE_WORKER, "io");
    cr_assert_eq(rill_loop_group_role(boss), RILL_ROLE_BOSS);
    struct thread_info t = { 0 };
    run_on_loop(rill_loop_group_at(boss, 0), info_task, &t);
    cr_assert_str_eq(t.name, "boss-0");
    run_on_loop(rill_loop_group_at(io, 1), info_task, &t);
    cr_assert_str_eq(t.name, "io-1");
    /* contains() tells the groups apart. */
    cr_assert_not(rill_loop_group_contains(boss, rill_loop_group_at(io, 0)));
    cr_assert_not(rill_loop_group_contains(io, rill_loop_group_at(boss, 0)));
    struct rill_loop *lone;
    cr_assert_eq(rill_loop_new(NULL, &lone), 0);
    cr_assert_not(rill_loop_group_contains(io, lone));
    rill_loop_free(lone);
    rill_loop_group_free(boss);
    rill_loop_group_free(io);
}

Test(loop_group, default_size_is_one_loop_per_cpu)
{
    struct rill_loop_group *g = NULL;
    cr_assert_eq(rill_loop_group_new(NULL, &g), 0);
    cr_assert_eq(rill_loop_group_size(g), (int)sysconf(_SC_NPROCESSORS_ONLN));
    cr_assert_eq(rill_loop_group_role(g), RILL_ROLE_WORKER);
    rill_loop_group_free(g);
}

/* ---- round robin ---- */

Test(loop_group, next_is_round_robin)
{
    struct rill_loop_group *g = new_group(3, RILL_ROLE_WORKER, NULL);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(rill_loop_group_next(g), rill_loop_group_at(g, i % 3), "pick %d", i);
    rill_loop_group_free(g);
}

struct picker {
    struct rill_loop_group *g;
    int counts[4];
};

static void *picker_main(void *arg)
{
    struct picker *p = arg;
    for (int i = 0; i < 3000; i++) {
        struct rill_loop *l = rill_loop_group_next(p->g);
        for (int k = 0; k < 4; k++)
            if (l == rill_loop_group_at(p->g, k))
                p->counts[k]++;
    }
    return NULL;
}

Test(loop_group, next_from_many_threads_stays_balanced)
{
    struct rill_loop_group *g = new_group(4, RILL_ROLE_WORKER, NULL);
    struct picker p[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (struct picker){ .g = g };
        cr_assert_eq(pthread_create(&th[i], NULL, picker_main, &p[i]), 0);
    }
    int total[4] = { 0 };
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        for (int k = 0; k < 4; k++)
            total[k] += p[i].counts[k];
    }
    for (int k = 0; k < 4; k++)
        cr_assert_eq(total[k], 3000, "loop %d picked %d times of 12000", k, total[k]);
    rill_loop_group_free(g);
}

/* ---- pinning ---- */

static int allowed_cpus(cpu_set_t *set)
{
    CPU_ZERO(set);
    cr_assert_eq(sched_getaffinity(0, sizeof(*set), set), 0);
    return CPU_COUNT(set);
}

static void affinity_task(void *arg)
{
    cpu_set_t *set = arg;
    CPU_ZERO(set);
    pthread_getaffinity_np(pthread_self(), sizeof(*set), set);
}

Test(loop_group, pinned_to_a_cpu_list)
{
    cpu_set_t allowed;
    if (allowed_cpus(&allowed) < 2 || !CPU_ISSET(0, &allowed) || !CPU_ISSET(1, &allowed))
        cr_skip_test("needs CPUs 0 and 1");
    const int cpus[] = { 1, 0 };
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = 3;
    o.pin = true;
    o.cpus = cpus;
    o.ncpus = 2;
    struct rill_loop_group *g;
    cr_assert_eq(rill_loop_group_new(&o, &g), 0);
    for (int i = 0; i < 3; i++) {
        cpu_set_t set;
        run_on_loop(rill_loop_group_at(g, i), affinity_task, &set);
        cr_assert_eq(CPU_COUNT(&set), 1, "loop %d not pinned", i);
        cr_assert(CPU_ISSET(cpus[i % 2], &set), "loop %d not on CPU %d", i, cpus[i % 2]);
        struct thread_info t;
        run_on_loop(rill_loop_group_at(g, i), info_task, &t);
        cr_assert_eq(t.cpu, cpus[i % 2]);
    }
    rill_loop_group_free(g);
}

Test(loop_group, pinned_without_a_list_uses_cpu_i)
{
    cpu_set_t allowed;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (allowed_cpus(&allowed) != n)
        cr_skip_test("this process may not use every online CPU");
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = (int)n + 1;
    o.pin = true;
    struct rill_loop_group *g;
    cr_assert_eq(rill_loop_group_new(&o, &g), 0);
    for (int i = 0; i < o.nloops; i++) {
        cpu_set_t set;
        run_on_loop(rill_loop_group_at(g, i), affinity_task, &set);
        cr_assert_eq(CPU_COUNT(&set), 1);
        cr_assert(CPU_ISSET(i % n, &set), "loop %d not on CPU %ld", i, i % n);
    }
    rill_loop_group_free(g);
}

/* ---- shutdown ---- */

static struct rill_loop_group *term_group;
static atomic_int term_all_terminated = -1;

static void group_terminated(struct rill_promise *p, void *arg)
{
    (void)p;
    (void)arg;
    int all = 1;
    for (int i = 0; i < rill_loop_group_size(term_group); i++)
        all &= rill_loop_is_terminated(rill_loop_group_at(term_group, i));
    atomic_store(&term_all_terminated, all);
}

Test(loop_group, shutdown_future_completes_after_every_loop_terminated)
{
    term_group = new_group(3, RILL_ROLE_WORKER, NULL);
    struct rill_promise *term = rill_loop_group_termination(term_group);
    cr_assert_not_null(term);
    cr_assert_not(rill_promise_is_done(term));
    cr_assert_eq(rill_promise_add_listener(term, group_terminated, NULL), 0);
    struct rill_promise *f = rill_loop_group_shutdown(term_group, MS(50), S(5));
    cr_assert_eq(f, term);
    for (int i = 0; i < 3; i++)
        cr_assert(rill_loop_is_shutting_down(rill_loop_group_at(term_group, i)));
    cr_assert_eq(rill_promise_wait(f, (int64_t)S(10)), 0);
    /* Listeners run after waiters are woken: wait for ours. */
    uint64_t dl = rill_test_deadline_ms(5000);
    while (atomic_load(&term_all_terminated) < 0 && rill_test_before(dl))
        usleep(200);
    cr_assert_eq(atomic_load(&term_all_terminated), 1,
                 "group future completed before every loop terminated");
    for (int i = 0; i < 3; i++)
        cr_assert(rill_loop_is_terminated(rill_loop_group_at(term_group, i)));
    /* A second shutdown is harmless and returns the same future. */
    cr_assert_eq(rill_loop_group_shutdown(term_group, 0, 0), f);
    rill_loop_group_free(term_group);
}

static atomic_int gate_go, gate_blocked;

static void block_task(void *arg)
{
    (void)arg;
    atomic_fetch_add(&gate_blocked, 1);
    uint64_t dl = rill_test_deadline_ms(10000);
    while (!atomic_load(&gate_go) && rill_test_before(dl))
        usleep(100);
}

Test(loop_group, graceful_shutdown_runs_queued_tasks)
{
    struct rill_loop_group *g = new_group(2, RILL_ROLE_WORKER, NULL);
    atomic_int ran = 0;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(rill_loop_execute(rill_loop_group_at(g, i), block_task, NULL), 0);
    uint64_t dl = rill_test_deadline_ms(5000);
    while (atomic_load(&gate_blocked) < 2 && rill_test_before(dl))
        usleep(200);
    cr_assert_eq(atomic_load(&gate_blocked), 2);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(rill_loop_execute(rill_loop_group_next(g), count_task, &ran), 0);
    struct rill_promise *f = rill_loop_group_shutdown(g, 0, 0);
    atomic_store(&gate_go, 1);
    cr_assert_eq(rill_promise_wait(f, (int64_t)S(10)), 0);
    cr_assert_eq(atomic_load(&ran), 1000);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(rill_loop_execute(rill_loop_group_at(g, i), count_task, &ran), RILL_EREJECTED);
    rill_loop_group_free(g);
    cr_assert_eq(atomic_load(&ran), 1000);
}

Test(loop_group, free_without_shutdown_runs_queued_tasks)
{
    struct rill_loop_group *g = new_group(2, RILL_ROLE_WORKER, NULL);
    atomic_int ran = 0;
    for (int i = 0; i < 500; i++)
        cr_assert_eq(rill_loop_execute(rill_loop_group_next(g), count_task, &ran), 0);
    rill_loop_group_free(g);
    cr_assert_eq(atomic_load(&ran), 500);
}

Test(loop_group, free_right_after_new)
{
    for (int i = 0; i < 10; i++)
        rill_loop_group_free(new_group(2, RILL_ROLE_BOSS, NULL));
    rill_loop_group_free(NULL);
}

static void free_group_task(void *arg)
{
    rill_loop_group_free(arg);
}

Test(loop_group, free_from_one_of_its_loops_aborts, .signal = SIGABRT)
{
    struct rill_loop_group *g = new_group(1, RILL_ROLE_WORKER, NULL);
    cr_assert_eq(rill_loop_execute(rill_loop_group_at(g, 0), free_group_task, g), 0);
    sleep(10);
}

/* ---- failure while creating ---- */

struct group_new_call {
    int nloops;
    int rc;
    struct rill_loop_group *g;
    atomic_int done;
};

static void *group_new_main(void *arg)
{
    struct group_new_call *c = arg;
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = c->nloops;
    c->rc = rill_loop_group_new(&o, &c->g);
    atomic_store(&c->done, 1);
    return NULL;
}

/* Allow @extra more file descriptors than are open now. */
static rlim_t limit_fds(int extra, struct rlimit *saved)
{
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, saved), 0);
    int lowest = dup(0);
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit rl = *saved;
    rl.rlim_cur = (rlim_t)(lowest + extra);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    return rl.rlim_cur;
}

/* Each loop needs two descriptors (epoll, eventfd). With room for one loop
 * only, creating a group of two fails cleanly. */
Test(loop_group, creation_fails_cleanly_when_a_later_loop_cannot_be_made)
{
    struct rlimit saved;
    limit_fds(2, &saved);
    static struct group_new_call c; /* may outlive this function if it hangs */
    c = (struct group_new_call){ .nloops = 2 };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, group_new_main, &c), 0);
    uint64_t dl = rill_test_deadline_ms(5000);
    while (!atomic_load(&c.done) && rill_test_before(dl))
        usleep(1000);
    setrlimit(RLIMIT_NOFILE, &saved);
    cr_assert(atomic_load(&c.done), "rill_loop_group_new hung after a failure");
    pthread_join(th, NULL);
    cr_assert_eq(c.rc, -EMFILE);
}

/* A group whose first loop cannot be made fails cleanly instead of
 * waiting forever for a termination that cannot come. */
Test(loop_group, creation_fails_cleanly_when_the_first_loop_cannot_be_made)
{
    struct rlimit saved;
    limit_fds(0, &saved);
    static struct group_new_call c; /* may outlive this function if it hangs */
    c = (struct group_new_call){ .nloops = 2 };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, group_new_main, &c), 0);
    uint64_t dl = rill_test_deadline_ms(3000);
    while (!atomic_load(&c.done) && rill_test_before(dl))
        usleep(1000);
    setrlimit(RLIMIT_NOFILE, &saved);
    cr_assert(atomic_load(&c.done), "rill_loop_group_new hung after its first loop failed");
    pthread_join(th, NULL);
    cr_assert_eq(c.rc, -EMFILE);
}
