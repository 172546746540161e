/* A group of loops on named threads, handed out round robin, with one
 * termination future for the whole group. */
#include "rill/loop_group.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/loop_internal.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/log.h"
#include "rill/loop.h"

struct rill_loop_group {
    int n;
    enum rill_loop_role role;
    _Atomic unsigned next;
    _Atomic int remaining; /* loops not yet terminated */
    struct rill_promise *termination;
    struct rill_loop **loops;
};

void rill_loop_group_opts_init(struct rill_loop_group_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->role = RILL_ROLE_WORKER;
    opts->busy_poll = rill__busy_poll_default();
}

static void loop_terminated(struct rill_promise *p, void *arg)
{
    struct rill_loop_group *g = arg;
    (void)p;
    if (atomic_fetch_sub(&g->remaining, 1) == 1)
        rill_promise_succeed(g->termination, NULL, NULL);
}

int rill_loop_group_new(const struct rill_loop_group_opts *opts, struct rill_loop_group **out)
{
    struct rill_loop_group_opts def;
    if (!opts) {
        rill_loop_group_opts_init(&def);
        opts = &def;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    int n = opts->nloops > 0 ? opts->nloops : (int)ncpu;
    const char *prefix = opts->name ? opts->name : opts->role == RILL_ROLE_BOSS ? "boss" : "worker";

    struct rill_loop_group *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->loops = calloc((size_t)n, sizeof(*g->loops));
    int err = g->loops ? rill_promise_new(NULL, &g->termination) : -ENOMEM;
    if (err) {
        free(g->loops);
        free(g);
        return err;
    }
    g->role = opts->role;
    atomic_init(&g->remaining, n);

    for (int i = 0; i < n; i++) {
        struct rill_loop_opts lo;
        rill_loop_opts_init(&lo);
        char name[16];
        snprintf(name, sizeof(name), "%s-%d", prefix, i);
        lo.name = name;
        if (opts->max_events > 0)
            lo.max_events = opts->max_events;
        lo.busy_poll = opts->busy_poll;
        if (opts->pin)
            lo.cpu = opts->cpus && opts->ncpus > 0 ? opts->cpus[i % opts->ncpus] : (int)(i % ncpu);
        err = rill_loop_new(&lo, &g->loops[i]);
        if (err)
            break;
        g->n = i + 1;
        rill_promise_add_listener(rill_loop_termination(g->loops[i]), loop_terminated, g);
        err = rill_loop_start(g->loops[i]);
        if (err)
            break;
    }
    if (err) {
        RILL_ERROR("loop group %s: cannot start loop %d: %s", prefix, g->n, rill_strerror(err));
        /* Loops never created count as terminated. */
        if (atomic_fetch_sub(&g->remaining, n - g->n) == n - g->n)
            rill_promise_succeed(g->termination, NULL, NULL);
        rill_loop_group_free(g);
        return err;
    }
    *out = g;
    return 0;
}

struct rill_loop *rill_loop_group_next(struct rill_loop_group *g)
{
    unsigned i = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed);
    return g->loops[i % (unsigned)g->n];
}

struct rill_loop *rill_loop_group_at(struct rill_loop_group *g, int i)
{
    return i >= 0 && i < g->n ? g->loops[i] : NULL;
}

int rill_loop_group_size(const struct rill_loop_group *g)
{
    return g->n;
}

enum rill_loop_role rill_loop_group_role(const struct rill_loop_group *g)
{
    return g->role;
}

bool rill_loop_group_contains(const struct rill_loop_group *g, const struct rill_loop *loop)
{
    for (int i = 0; i < g->n; i++)
        if (g->loops[i] == loop)
            return true;
    return false;
}

struct rill_promise *rill_loop_group_shutdown(struct rill_loop_group *g, uint64_t quiet_ns,
                                              uint64_t timeout_ns)
{
    for (int i = 0; i < g->n; i++)
        rill_loop_shutdown(g->loops[i], quiet_ns, timeout_ns);
    return g->termination;
}

struct rill_promise *rill_loop_group_termination(struct rill_loop_group *g)
{
    return g->termination;
}

void rill_loop_group_free(struct rill_loop_group *g)
{
    if (!g)
        return;
    struct rill_loop *cur = rill_loop_current();
    if (cur && rill_loop_group_contains(g, cur))
        RILL_PANIC("rill_loop_group_free called from one of the group's own loops");
    for (int i = 0; i < g->n; i++)
        if (!rill_loop_is_shutting_down(g->loops[i]))
            rill_loop_shutdown(g->loops[i], 0, UINT64_MAX);
    /* Loops that failed to start never run: free terminates them inline. */
    for (int i = 0; i < g->n; i++)
        rill_loop_free(g->loops[i]);
    rill_promise_wait(g->termination, -1);
    rill_promise_release(g->termination);
    free(g->loops);
    free(g);
}
