/* Bootstraps: the short way to a listening server or a connected client
 * (Netty's ServerBootstrap and Bootstrap). The address URI picks the
 * transport: tcp://host:port (IPv4 or IPv6) and unix:///path run on epoll.
 *
 * Server:
 *
 *   struct rill_server_opts so;
 *   rill_server_opts_init(&so);
 *   so.boss = boss; so.workers = workers;
 *   so.child_init = install_pipeline;            // runs on the child's loop
 *   struct rill_server *srv;
 *   int err = rill_server_bind(&so, "tcp://0.0.0.0:0", &srv);   // port 0: any free port
 *   rill_promise_wait(rill_server_bound(srv), -1);               // accepting now
 *   printf("port %d\n", rill_addr_port(rill_server_local_addr(srv)));
 *   ...
 *   rill_promise_wait(rill_server_close(srv, true), -1);
 *   rill_server_free(srv);
 *
 * The boss group runs the listening channels: for each accepted connection
 * it picks a worker loop with rill_loop_group_next(), registers the child
 * there and calls child_init on that loop before the child's registered
 * and active events. With nlisteners > 1 every listener is its own socket
 * bound with SO_REUSEPORT to the same address on its own boss loop, and the
 * kernel spreads incoming connections over them.
 *
 * Client:
 *
 *   struct rill_client_opts co;
 *   rill_client_opts_init(&co);
 *   co.group = workers; co.init = install_pipeline;
 *   struct rill_promise *f;
 *   rill_client_connect(&co, "tcp://127.0.0.1:7000", &f);
 *   if (rill_promise_wait(f, -1) == 0) {
 *       struct rill_channel *ch = rill_client_channel(f);       // a new reference
 *       ...
 *   }
 *   rill_promise_release(f);
 *
 * The connect is non-blocking; the future fails with -ECONNREFUSED,
 * -ETIMEDOUT (RILL_OPT_CONNECT_TIMEOUT_MS, default 30 s), -ENETUNREACH, ...
 * and the channel is then closed. Host names are resolved on the calling
 * thread (getaddrinfo may block): resolve on the loop only with numeric
 * hosts, or pass a struct rill_addr resolved earlier.
 *
 * Shutdown: rill_server_close(srv, true) stops accepting and closes the
 * children still open; then shut the loop groups down. Shutting a group
 * down also closes every channel registered on its loops (listeners,
 * children, clients). Free the server before the groups it ran on
 * (rill_loop_group_free): it refers to its listeners' loops. */
#ifndef RILL_BOOTSTRAP_H
#define RILL_BOOTSTRAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/channel.h"

struct rill_addr;
struct rill_channel;
struct rill_loop;
struct rill_loop_group;
struct rill_promise;
struct rill_server;

/* Installs a channel's pipeline (and may set options or attributes). Runs
 * on the channel's loop before its registered event. Return 0, or -errno
 * to refuse the channel (it is closed; a client's connect future fails with
 * that error). */
typedef int rill_channel_init_fn(struct rill_channel *ch, void *arg);

/* A set of channel options to apply to new channels. */
struct rill_channel_opts {
    uint64_t set; /* bit (1 << opt) for each option given */
    int64_t value[RILL_OPT__COUNT];
};

/* Thread: any. No option given: channels keep the defaults (channel.h). */
static inline void rill_channel_opts_init(struct rill_channel_opts *o)
{
    o->set = 0;
}

/* Thread: any. Give @opt the value @v (checked when applied). */
static inline void rill_channel_opts_set(struct rill_channel_opts *o, enum rill_option opt,
                                         int64_t v)
{
    if ((int)opt > 0 && opt < RILL_OPT__COUNT) {
        o->set |= 1ull << opt;
        o->value[opt] = v;
    }
}

/* Thread: any. Apply every option in @o to @ch (rill_channel_set_option;
 * the watermarks together). Returns 0 or the first error. */
int rill_channel_opts_apply(const struct rill_channel_opts *o, struct rill_channel *ch);

/* ---- server ---- */

struct rill_server_opts {
    struct rill_loop_group *boss;    /* runs the listening channels (or boss_loop) */
    struct rill_loop_group *workers; /* runs the children; NULL: worker_loop, else the boss */
    /* Single loops instead of groups (a loop the caller runs on its own
     * thread with rill_loop_run, say): used when the group is NULL. */
    struct rill_loop *boss_loop;
    struct rill_loop *worker_loop;
    rill_channel_init_fn *child_init; /* required: installs each child's pipeline */
    void *child_arg;                  /* borrowed; must outlive the server and its children */
    /* Optional: installs handlers on each listening channel (they see its
     * lifecycle and the exception raised when accepting runs out of
     * descriptors). */
    rill_channel_init_fn *server_init;
    void *server_arg;
    struct rill_channel_opts child_opts;  /* for every accepted channel */
    struct rill_channel_opts server_opts; /* for the listening channels: backlog,
                                             SO_REUSEADDR (default on), SO_RCVBUF
                                             (inherited by the children) ... */
    int nlisteners; /* listening sockets (each on its own boss loop, SO_REUSEPORT
                       when > 1); default 1 */
};

/* Thread: any. Defaults: no groups, no callbacks, one listener. */
void rill_server_opts_init(struct rill_server_opts *o);

/* Thread: any (not a loop of the boss group: nothing blocks, but the
 * bound future then completes only after the caller returns to its loop).
 * Create the listening sockets, bind and listen at once (so address errors
 * come back here and the real port of "port 0" is known at return), then
 * register them with the boss loops, where they start accepting. Returns
 * 0 and the server in *out, or -EINVAL (no boss group or loop, no child_init, bad
 * option), the errors of rill_addr_parse, -EAFNOSUPPORT (a scheme this
 * build cannot serve), -EADDRINUSE, -EACCES, -ENOMEM, ... */
int rill_server_bind(const struct rill_server_opts *o, const char *uri, struct rill_server **out);

/* As rill_server_bind, with an address resolved earlier (copied). */
int rill_server_bind_addr(const struct rill_server_opts *o, const struct rill_addr *addr,
                          struct rill_server **out);

/* Thread: any. Completes when every listener accepts (or fails with the
 * first registration or bind error). Borrowed: valid until
 * rill_server_free(). */
struct rill_promise *rill_server_bound(struct rill_server *s);

/* Thread: any. The bound address, with the real port. Borrowed: valid
 * until rill_server_free(). */
const struct rill_addr *rill_server_local_addr(const struct rill_server *s);

/* Thread: any. Listener @i (0 <= i < count), borrowed: valid until
 * rill_server_free(). */
int rill_server_listener_count(const struct rill_server *s);
struct rill_channel *rill_server_listener(struct rill_server *s, int i);

/* Thread: any. Children accepted and not yet closed (racy snapshot). */
size_t rill_server_child_count(const struct rill_server *s);
/* Thread: any. Connections accepted since the server started (all
 * listeners), and connections shed because the process ran out of file
 * descriptors (racy snapshots). */
uint64_t rill_server_accepted(const struct rill_server *s);
uint64_t rill_server_shed(const struct rill_server *s);

/* Thread: any. Stop accepting: close every listener, and with
 * @close_children every child still open too. Returns a future completed
 * when all of them have closed (borrowed: valid until rill_server_free).
 * Later calls return the same future (a later call with @close_children
 * still closes the children). Without @close_children the children live
 * on, as in Netty, until they close or their loops shut down. */
struct rill_promise *rill_server_close(struct rill_server *s, bool close_children);

/* Thread: any thread that is not a loop of the server's groups. Close
 * (without closing children) if that was not done, wait until the
 * listeners have closed, and free the server. The children do not need
 * the server object: they may outlive it. Call it before the server's loop
 * groups are freed (after their shutdown is fine). */
void rill_server_free(struct rill_server *s);

/* ---- client ---- */

struct rill_client_opts {
    struct rill_loop *loop;        /* the channel's loop, or */
    struct rill_loop_group *group; /* a group to pick one from (next()) */
    rill_channel_init_fn *init;    /* installs the pipeline; may be NULL */
    void *arg;                     /* borrowed; must outlive the channel */
    struct rill_channel_opts opts; /* CONNECT_TIMEOUT_MS, TCP_NODELAY, ... */
    const struct rill_addr *local; /* bind to this first (borrowed; copied); NULL: any */
};

/* Thread: any. Defaults: no loop, no init, no options, no local address. */
void rill_client_opts_init(struct rill_client_opts *o);

/* Thread: any. Connect to @uri: create the channel on its loop, run @init
 * there, register, connect without blocking. *out gets a new reference to
 * a future (release it) that completes when the channel is connected, or
 * fails with the error (the channel is then closed). Returns 0, or
 * -EINVAL (no loop or group), the errors of rill_addr_parse,
 * -EAFNOSUPPORT, -ENOMEM, -EMFILE... (nothing to release then). */
int rill_client_connect(const struct rill_client_opts *o, const char *uri,
                        struct rill_promise **out);

/* As rill_client_connect, with an address resolved earlier (copied). */
int rill_client_connect_addr(const struct rill_client_opts *o, const struct rill_addr *addr,
                             struct rill_promise **out);

/* Thread: any. The connected channel of a future from rill_client_connect,
 * as a new reference (release it), or NULL while pending or after failure. */
struct rill_channel *rill_client_channel(struct rill_promise *f);

#endif /* RILL_BOOTSTRAP_H */
