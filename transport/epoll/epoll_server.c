/* Server channels on epoll: a listening TCP or Unix socket that accepts
 * children onto the loops its acceptor picks.
 *
 * Accepting: the listener is watched level-triggered (EPOLLIN while
 * accepting is wanted); each wake-up accepts at most RILL_OPT_MAX_READS
 * connections with accept4, and the rest of the backlog wakes the loop
 * again after the other channels had their turn.
 *
 * Running out of descriptors (EMFILE, ENFILE) or kernel memory: retrying at
 * once would spin, since the listener stays readable. Instead the
 * listener stops watching for a pause (50 ms, doubling to 1 s while the
 * shortage lasts, back to 50 ms after the next successful accept), as
 * Netty's acceptor (1 s) and nginx (accept_mutex_delay) do; connections
 * wait in the backlog meanwhile. Once the pause has reached its maximum,
 * each further shortage sheds what waits in the backlog with the reserved
 * descriptor (libev/libuv's trick): close the spare fd, accept, close the
 * connection, reopen the spare, so those clients see their connection
 * closed instead of hanging. The first shortage of a streak is logged and
 * raised as an exception on the server pipeline. */
#include "transport/epoll/epoll_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <unistd.h>

#include "rill/error.h"
#include "rill/log.h"
#include "rill/timer.h"
#include "transport/epoll/sock.h"

#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 1000u
#define SHED_MAX       64 /* connections shed per shortage */

static const struct rill_transport_ops tcp_server_ops, unix_server_ops;

static inline struct rill_epoll_server *srv(struct rill_channel *ch)
{
    return (struct rill_epoll_server *)ch;
}

bool rill__epoll_is_server(const struct rill_channel *ch)
{
    return ch->ops == &tcp_server_ops || ch->ops == &unix_server_ops;
}

uint64_t rill__epoll_server_accepted(const struct rill_channel *ch)
{
    return atomic_load_explicit(&((struct rill_epoll_server *)ch)->accepted, memory_order_relaxed);
}

uint64_t rill__epoll_server_shed(const struct rill_channel *ch)
{
    return atomic_load_explicit(&((struct rill_epoll_server *)ch)->shed, memory_order_relaxed);
}

static void update_events(struct rill_epoll_server *s)
{
    if (!s->armed || s->closed)
        return;
    uint32_t ev = s->want_read && !s->paused ? EPOLLIN : 0;
    int err = rill_io_modify(&s->io, ev);
    if (err)
        rill__channel_close(&s->base, err);
}

/* ---- running out of descriptors ---- */

static void resume_accepting(struct rill_timer *timer, void *arg)
{
    struct rill_epoll_server *s = arg;
    if (s->resume_timer == timer) {
        rill_timer_release(timer);
        s->resume_timer = NULL;
        if (!s->closed) {
            s->paused = false;
            update_events(s); /* level-triggered: a waiting backlog wakes us at once */
        }
    }
    rill_channel_release(&s->base); /* the timer's reference */
}

static void exhausted(struct rill_epoll_server *s, int err)
{
    bool first = s->backoff_ms == 0;
    s->backoff_ms = first ? BACKOFF_MIN_MS : s->backoff_ms * 2;
    if (s->backoff_ms >= BACKOFF_MAX_MS) {
        s->backoff_ms = BACKOFF_MAX_MS;
        int n = rill__sock_shed(s->fd, &s->reserve_fd, SHED_MAX);
        if (n > 0) {
            atomic_fetch_add_explicit(&s->shed, (uint64_t)n, memory_order_relaxed);
            RILL_WARN("server channel %llu: %s; closed %d waiting connection(s)",
                      (unsigned long long)s->base.id, rill_strerror(err), n);
        }
        if (s->reserve_fd < 0)
            s->reserve_fd = rill__sock_reserve_fd(); /* may fail again: try next time */
    }
    s->paused = true;
    update_events(s);
    if (!s->resume_timer) {
        rill_channel_retain(&s->base);
        if (rill_timer_schedule(s->base.loop, (uint64_t)s->backoff_ms * 1000000u, 0,
                                RILL_TIMER_ONCE, resume_accepting, s, &s->resume_timer) != 0) {
            s->resume_timer = NULL;
            rill_channel_release(&s->base);
            s->paused = false; /* no timer: keep the listener armed rather than stall */
            update_events(s);
        }
    }
    if (first) {
        RILL_WARN("server channel %llu: accept failed: %s; pausing accepts for %u ms",
                  (unsigned long long)s->base.id, rill_strerror(err), s->backoff_ms);
        rill__channel_fire_exception(&s->base, err, "accept: out of descriptors or memory");
    }
}

/* ---- accepting ---- */

static bool is_wildcard(const struct rill_addr *a)
{
    if (a->sa.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->sa.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr);
    return false;
}

static void accept_batch(struct rill_epoll_server *s)
{
    struct rill_channel *ch = &s->base;
    int max = (int)rill__channel_opt(ch, RILL_OPT_MAX_READS);
    bool requested = !rill__channel_auto_read(ch);
    /* A child's local address is the listener's unless that is a wildcard. */
    const struct rill_addr *local = is_wildcard(&s->local) ? NULL : &s->local;
    int accepted = 0;

    for (int i = 0; i < max && !s->closed; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        int fd = rill__sock_accept(s->fd, &ss, &len);
        if (fd < 0) {
            if (fd == -EAGAIN)
                break;
            if (rill__sock_accept_exhausted(fd)) {
                exhausted(s, fd);
            } else {
                RILL_WARN("server channel %llu: accept failed: %s", (unsigned long long)ch->id,
                          rill_strerror(fd));
                rill__channel_fire_exception(ch, fd, "accept");
            }
            break;
        }
        s->backoff_ms = 0;
        atomic_fetch_add_explicit(&s->accepted, 1, memory_order_relaxed);
        accepted++;
        struct rill_addr peer, *peerp = NULL;
        if (rill_addr_from_sockaddr((struct sockaddr *)&ss, len, &peer) == 0)
            peerp = &peer;
        struct rill_channel *child;
        int err = rill__epoll_channel_accepted(ch, rill__channel_child_loop(ch), fd, peerp, local,
                                               &child);
        if (err) {
            RILL_WARN("server channel %llu: cannot set up an accepted connection: %s",
                      (unsigned long long)ch->id, rill_strerror(err));
            continue;
        }
        rill__channel_accepted(ch, child);
        if (requested)
            break;
    }
    if (s->closed)
        return;
    if (requested && accepted) {
        s->want_read = false;
        update_events(s);
    }
    if (accepted)
        rill__channel_fire_read_complete(ch);
}

static void on_io(struct rill_io *io, uint32_t events)
{
    struct rill_epoll_server *s = io->data;
    if (events & EPOLLERR) {
        int err = rill__sock_error(s->fd);
        if (err)
            rill__channel_fire_exception(&s->base, err, "listening socket");
    }
    if ((events & EPOLLIN) && s->want_read && !s->paused)
        accept_batch(s);
}

/* ---- operations ---- */

int rill__epoll_server_listen(struct rill_channel *ch, const struct rill_addr *addr)
{
    struct rill_epoll_server *s = srv(ch);
    if (s->closed || s->fd < 0)
        return RILL_ECLOSED;
    if (s->listening)
        return -EALREADY;
    if (rill__epoll_family(addr) != s->family)
        return -EAFNOSUPPORT;
    int err = rill__channel_apply_options(ch);
    if (err)
        return err;
    int backlog = (int)rill__channel_opt(ch, RILL_OPT_BACKLOG);
    err = rill__sock_listen(s->fd, addr, backlog);
    if (err)
        return err;
    err = rill__sock_local_addr(s->fd, &s->local);
    if (err)
        return err;
    ch->local_addr = &s->local;
    s->listening = true;
    if (s->family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&s->local.sa;
        s->unlink_path =
            s->local.len > offsetof(struct sockaddr_un, sun_path) + 1 && sun->sun_path[0] != '\0';
    }
    return 0;
}

static int sv_bind(struct rill_channel *ch, const struct rill_addr *local)
{
    struct rill_epoll_server *s = srv(ch);
    if (!s->listening) {
        if (!local)
            return -EINVAL;
        int err = rill__epoll_server_listen(ch, local);
        if (err)
            return err;
    } else if (local && !rill_addr_equal(local, &s->local) && rill_addr_port(local) != 0) {
        return -EINVAL; /* listening already, elsewhere */
    }
    if (s->armed)
        return 0;
    rill_io_init(&s->io, s->fd, on_io, s);
    int err = rill_io_start(ch->loop, &s->io, s->want_read && !s->paused ? EPOLLIN : 0);
    if (err)
        return err;
    s->armed = true;
    return 0;
}

static void sv_begin_read(struct rill_channel *ch)
{
    struct rill_epoll_server *s = srv(ch);
    s->want_read = true;
    update_events(s);
}

static void sv_stop_read(struct rill_channel *ch)
{
    struct rill_epoll_server *s = srv(ch);
    s->want_read = false;
    update_events(s);
}

static void sv_close(struct rill_channel *ch)
{
    struct rill_epoll_server *s = srv(ch);
    if (s->closed)
        return;
    s->closed = true;
    if (s->armed) {
        rill_io_stop(&s->io);
        s->armed = false;
    }
    if (s->fd >= 0) {
        if (s->unlink_path)
            unlink(((const struct sockaddr_un *)&s->local.sa)->sun_path);
        close(s->fd);
        s->fd = -1;
    }
    if (s->reserve_fd >= 0) {
        close(s->reserve_fd);
        s->reserve_fd = -1;
    }
    /* A resume timer still pending is cancelled in do_deregister: giving
     * back its channel reference is a core call, not allowed here. */
}

static void sv_do_deregister(struct rill_channel *ch)
{
    struct rill_epoll_server *s = srv(ch);
    struct rill_timer *t = s->resume_timer;
    if (!t)
        return;
    s->resume_timer = NULL;
    int r = rill_timer_cancel(t);
    rill_timer_release(t);
    if (r == 0) /* it will never run: its reference is ours to give back */
        rill_channel_release(ch);
}

static void sv_destroy(struct rill_channel *ch)
{
    free(srv(ch));
}

static int sv_set_option(struct rill_channel *ch, enum rill_option opt, int64_t value)
{
    struct rill_epoll_server *s = srv(ch);
    if (s->fd < 0 || s->closed)
        return 0;
    return rill__sock_apply_option(s->fd, s->family, opt, value);
}

#define SERVER_OPS(transport_name)                                                                 \
    {                                                                                              \
        .name = transport_name, .flags = RILL_TRANSPORT_F_SERVER,                                  \
        .do_deregister = sv_do_deregister, .bind = sv_bind, .begin_read = sv_begin_read,           \
        .stop_read = sv_stop_read, .close = sv_close, .destroy = sv_destroy,                       \
        .set_option = sv_set_option,                                                               \
    }

static const struct rill_transport_ops tcp_server_ops = SERVER_OPS("tcp");
static const struct rill_transport_ops unix_server_ops = SERVER_OPS("unix");

int rill__epoll_server_new(struct rill_loop *loop, int family, struct rill_channel **out)
{
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
        return -EAFNOSUPPORT;
    int fd = rill__sock_open(family);
    if (fd < 0)
        return fd;
    struct rill_epoll_server *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    int err = rill__channel_init(&s->base, family == AF_UNIX ? &unix_server_ops : &tcp_server_ops,
                                 loop, NULL);
    if (err) {
        close(fd);
        free(s);
        return err;
    }
    s->fd = fd;
    s->family = family;
    s->reserve_fd = rill__sock_reserve_fd();
    if (s->reserve_fd < 0)
        s->reserve_fd = -1; /* without a spare the server still pauses on EMFILE */
    *out = &s->base;
    return 0;
}
