/* A loop group: N loops, each on its own named thread, handed out round
 * robin. Servers use two: a boss group that accepts connections and a
 * worker group that runs them (one group may play both roles). */
#ifndef RILL_LOOP_GROUP_H
#define RILL_LOOP_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "rill/loop.h"

struct rill_loop;
struct rill_loop_group;
struct rill_promise;

enum rill_loop_role {
    RILL_ROLE_WORKER = 0, /* runs channels */
    RILL_ROLE_BOSS = 1,   /* runs server (accepting) channels */
};

struct rill_loop_group_opts {
    int nloops; /* 0: one per online CPU */
    enum rill_loop_role role;
    const char *name; /* thread name prefix; default "boss"/"worker" */
    bool pin;         /* pin loop i to cpus[i % ncpus], or CPU i % nproc */
    const int *cpus;  /* optional CPU list for pinning (borrowed) */
    int ncpus;
    int max_events; /* per-loop epoll batch; 0: default */
    enum rill_busy_poll
        busy_poll; /* for every loop (rill_loop_opts); default off or RILL_BUSY_POLL */
};

/* Thread: any. Defaults: one loop per CPU, worker role, no pinning. */
void rill_loop_group_opts_init(struct rill_loop_group_opts *opts);

/* Thread: any. Create the group and start its threads. @opts may be NULL.
 * Returns 0 and the group (owned by the caller) in *out, or -errno. */
int rill_loop_group_new(const struct rill_loop_group_opts *opts, struct rill_loop_group **out);

/* Thread: any. The next loop, round robin. Borrowed, valid until
 * rill_loop_group_free(). */
struct rill_loop *rill_loop_group_next(struct rill_loop_group *g);

/* Thread: any. Loop @i (0 <= i < size), borrowed. */
struct rill_loop *rill_loop_group_at(struct rill_loop_group *g, int i);
int rill_loop_group_size(const struct rill_loop_group *g);
enum rill_loop_role rill_loop_group_role(const struct rill_loop_group *g);

/* Thread: any. True when @loop belongs to @g. */
bool rill_loop_group_contains(const struct rill_loop_group *g, const struct rill_loop *loop);

/* Thread: any. Shut every loop down gracefully (see rill_loop_shutdown).
 * Returns the group's termination future, completed when every loop has
 * terminated; borrowed, valid until rill_loop_group_free(). */
struct rill_promise *rill_loop_group_shutdown(struct rill_loop_group *g, uint64_t quiet_ns,
                                              uint64_t timeout_ns);

/* Thread: any. The termination future (borrowed) without starting shutdown. */
struct rill_promise *rill_loop_group_termination(struct rill_loop_group *g);

/* Thread: any thread that is not one of the group's loops. Shuts the group
 * down if needed (no quiet period, no timeout on queued work), waits for
 * every loop to terminate, joins the threads and frees everything. */
void rill_loop_group_free(struct rill_loop_group *g);

#endif /* RILL_LOOP_GROUP_H */
