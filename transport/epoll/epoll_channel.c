/* Stream channels on epoll: TCP over IPv4/IPv6 and Unix stream sockets.
 *
 * Trigger mode (RILL_OPT_EDGE_TRIGGERED, fixed when the watcher starts):
 *   edge   EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET registered once; epoll_ctl
 *          is never called again for the channel. An event only says "look
 *          again": in_ready remembers that input may be waiting, out_wait
 *          that a write is waiting for room.
 *   level  EPOLLIN|EPOLLRDHUP while reading is wanted, EPOLLOUT only while
 *          a write waits for room or a connect is in progress (one
 *          epoll_ctl per change).
 *
 * Reads: one batch per readiness event, at most RILL_OPT_MAX_READS reads,
 * each into a pooled buffer of the adaptive size; read fires once per
 * buffer and read_complete once per batch. A read that does not fill its
 * buffer means the socket is drained (no read that would only say EAGAIN),
 * unless the peer's FIN was seen, then the batch reads on to EOF. When a
 * batch stops at the limit with input left, a task continues it after the
 * loop's other work (edge mode gets no new event for that input).
 *
 * Writes: gathered with sendmsg over up to IOV_MAX iovecs (buffers and
 * composite components), at most RILL_OPT_WRITE_SPIN calls per flush; a
 * flush writes at once when the socket has room (no loop round trip). A
 * partial write or EAGAIN means the kernel is full: the channel waits for
 * EPOLLOUT. File regions go out with sendfile. MSG_NOSIGNAL everywhere, so
 * a dead peer is an EPIPE error, never a SIGPIPE. */
#include "transport/epoll/epoll_internal.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rill/alloc.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/file_region.h"
#include "rill/log.h"
#include "transport/epoll/sock.h"

/* iovecs per sendmsg (the kernel takes at most IOV_MAX). */
#define IOV_BATCH IOV_MAX

/* A pooled buffer's header shares the allocator block with its bytes: a
 * read of up to this many bytes stays within the largest pooled class. */
#define BUF_HDR         ((sizeof(struct rill_buf) + 15) & ~(size_t)15)
#define POOLED_READ_MAX (RILL_ALLOC_MAX_POOLED - BUF_HDR)

static const struct rill_transport_ops tcp_ops, unix_ops;

/* The hot system calls go through syscall(2) rather than libc's wrappers:
 * read, send and sendmsg are cancellation points, and in a process with
 * more than one thread every call pays two atomic updates of the thread's
 * cancellation state around the system call. Loop threads are never
 * cancelled, so that bookkeeping is pure cost (measured: a quarter of the
 * transport's own instructions per echoed message). */
static inline ssize_t sys_read(int fd, void *buf, size_t len)
{
    return syscall(SYS_read, fd, buf, len);
}

static inline ssize_t sys_sendto(int fd, const void *buf, size_t len, int flags)
{
    return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}

static inline ssize_t sys_sendmsg(int fd, const struct msghdr *mh, int flags)
{
    return syscall(SYS_sendmsg, fd, mh, flags);
}

static inline struct rill_epoll_channel *ep(struct rill_channel *ch)
{
    return (struct rill_epoll_channel *)ch;
}

bool rill__epoll_is_stream(const struct rill_channel *ch)
{
    return ch->ops == &tcp_ops || ch->ops == &unix_ops;
}

int rill__epoll_family(const struct rill_addr *addr)
{
    if (addr->scheme != RILL_ADDR_TCP && addr->scheme != RILL_ADDR_UNIX)
        return -EAFNOSUPPORT;
    int f = rill_addr_family(addr);
    return f == AF_INET || f == AF_INET6 || f == AF_UNIX ? f : -EAFNOSUPPORT;
}

/* ---- the watcher ---- */

static uint32_t wanted_events(const struct rill_epoll_channel *t)
{
    if (t->edge)
        return EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    uint32_t ev = 0;
    if (t->want_read && !t->input_done && !t->connecting)
        ev |= EPOLLIN | EPOLLRDHUP;
    if (t->out_wait || t->connecting)
        ev |= EPOLLOUT;
    return ev;
}

/* Level mode: bring the watched events in line with the state. */
static void update_events(struct rill_epoll_channel *t)
{
    if (t->edge || !t->armed || t->closed)
        return;
    int err = rill_io_modify(&t->io, wanted_events(t));
    if (err) {
        RILL_WARN("channel %llu: epoll_ctl failed: %s", (unsigned long long)t->base.id,
                  rill_strerror(err));
        rill__channel_close(&t->base, err);
    }
}

static void on_io(struct rill_io *io, uint32_t events);

static int arm(struct rill_epoll_channel *t)
{
    if (t->armed)
        return 0;
    t->edge = rill__channel_opt(&t->base, RILL_OPT_EDGE_TRIGGERED) != 0;
    rill_io_init(&t->io, t->fd, on_io, t);
    int err = rill_io_start(t->base.loop, &t->io, wanted_events(t));
    if (!err)
        t->armed = true;
    return err;
}

/* ---- reading ---- */

static void read_task(void *arg);

/* Continue reading from a task: a batch stopped at its limit, or reading
 * was requested while input waits (edge mode sends no new event). */
static void schedule_read(struct rill_epoll_channel *t)
{
    if (t->read_queued || t->closed)
        return;
    t->read_queued = true;
    rill_channel_retain(&t->base);
    rill_task_init(&t->read_task, read_task, t);
    if (rill_loop_post(t->base.loop, &t->read_task) != 0) {
        t->read_queued = false;
        rill_channel_release(&t->base);
    }
}

static size_t read_size(struct rill_channel *ch)
{
    size_t want = rill__channel_recv_size(ch);
    if (want > POOLED_READ_MAX && want <= RILL_ALLOC_MAX_POOLED)
        want = POOLED_READ_MAX;
    return want;
}

/* One read batch. */
static void do_read(struct rill_epoll_channel *t)
{
    struct rill_channel *ch = &t->base;
    int max = (int)rill__channel_opt(ch, RILL_OPT_MAX_READS);
    bool requested = !rill__channel_auto_read(ch);
    size_t total = 0;
    bool filled = false, eof = false;
    int err = 0;

    /* With auto-read off this batch serves one read request; a request
     * made by a handler during the batch sets want_read again. */
    if (requested)
        t->want_read = false;
    t->in_read = true;
    for (int i = 0; i < max; i++) {
        struct rill_buf *b;
        if (rill_buf_alloc(read_size(ch), &b) != 0) {
            err = -ENOMEM;
            break;
        }
        size_t cap;
        uint8_t *p = rill_buf_write_ptr(b, 1, &cap);
        ssize_t n = sys_read(t->fd, p, cap);
        int rerr = n < 0 ? errno : 0; /* before the release below can touch errno */
        if (n > 0) {
            rill_buf_advance_writer(b, (size_t)n);
            total += (size_t)n;
            filled = (size_t)n == cap;
            rill__channel_fire_read(ch, rill_buf_msg(b));
            if (t->closed)
                break;
            if (!filled && !t->rdhup) {
                t->in_ready = false; /* a short read: the socket is drained */
                break;
            }
            if (requested || !rill__channel_auto_read(ch))
                break; /* one buffer per read request (Netty), or reading was switched off */
            continue;
        }
        rill_buf_release(b);
        if (n == 0) {
            eof = true;
            t->in_ready = false;
        } else if (rerr == EINTR) {
            continue;
        } else if (rerr == EAGAIN || rerr == EWOULDBLOCK) {
            t->in_ready = false;
        } else {
            err = -rerr;
        }
        break;
    }
    t->in_read = false;
    if (total)
        rill__channel_recv_record(ch, total, filled);
    if (t->closed)
        return;
    if (requested && !total && !eof && !err)
        t->want_read = true; /* nothing came: the request still stands */
    if (total)
        rill__channel_fire_read_complete(ch);
    if (t->closed)
        return;
    if (err) {
        rill__channel_close(ch, err);
        return;
    }
    if (eof) {
        t->input_done = true;
        rill__channel_input_shutdown(ch);
        if (t->closed)
            return;
    }
    if (t->edge) {
        if (t->want_read && t->in_ready && !t->input_done)
            schedule_read(t);
    } else {
        update_events(t);
    }
}

static void read_task(void *arg)
{
    struct rill_epoll_channel *t = arg;
    t->read_queued = false;
    if (!t->closed && t->want_read && t->in_ready && !t->input_done)
        do_read(t);
    rill_channel_release(&t->base);
}

static void ep_begin_read(struct rill_channel *ch)
{
    struct rill_epoll_channel *t = ep(ch);
    if (t->closed || t->input_done)
        return;
    t->want_read = true;
    if (!t->edge) {
        if (t->hup_parked) {
            t->hup_parked = false;
            int err = arm(t);
            if (err) {
                rill__channel_close(ch, err);
                return;
            }
        }
        update_events(t); /* level: epoll reports waiting input by itself */
        return;
    }
    /* Never read inside the caller's stack (a handler asking for more from
     * its own callback): waiting input is read from a task. */
    if (t->in_ready && !t->in_read)
        schedule_read(t);
}

static void ep_stop_read(struct rill_channel *ch)
{
    struct rill_epoll_channel *t = ep(ch);
    t->want_read = false;
    update_events(t);
}

/* ---- writing ---- */

static void wait_for_room(struct rill_epoll_channel *t)
{
    t->out_wait = true;
    update_events(t);
}

/* Send the head file region. Returns 1 to go on, 0 to stop. */
static int write_region(struct rill_epoll_channel *t, struct rill_file_region *r)
{
    struct rill_channel *ch = &t->base;
    uint64_t left = rill_file_region_remaining(r);
    int64_t n = left ? rill_file_region_transfer(r, t->fd, left) : 0;
    if (n >= 0) {
        /* A short transfer is not proof of a full socket (the fallback
         * moves 64 KiB at a time): the next call tells. */
        rill__outbound_advance(ch, (size_t)n);
        return !t->closed;
    }
    if (n == -EAGAIN) {
        wait_for_room(t);
        return 0;
    }
    /* The stream cannot go on past a region that failed halfway. */
    rill__channel_close(ch, (int)n);
    return 0;
}

static void ep_write(struct rill_channel *ch)
{
    struct rill_epoll_channel *t = ep(ch);
    if (t->out_wait || t->closed)
        return; /* EPOLLOUT will call back */
    int spin = (int)rill__channel_opt(ch, RILL_OPT_WRITE_SPIN);
    struct iovec iov[IOV_BATCH];

    while (rill__outbound_has_flushed(ch)) {
        if (spin-- <= 0) {
            rill__channel_flush_later(ch); /* let the loop's other channels run */
            break;
        }
        size_t bytes;
        int n = rill__outbound_iov(ch, iov, IOV_BATCH, &bytes);
        if (n == 0) {
            struct rill_msg *head = rill__outbound_current(ch, NULL);
            struct rill_file_region *r = rill_file_region_from_msg(head);
            if (r) {
                if (!write_region(t, r))
                    return;
                continue;
            }
            rill__outbound_advance(ch, 0); /* drops empty entries */
            if (t->closed)
                return;
            if (head && rill__outbound_current(ch, NULL) == head &&
                rill__outbound_iov(ch, iov, 1, &bytes) == 0) {
                /* No progress: a buffer that describes no bytes any more
                 * (it changed after it was written). The stream cannot go
                 * on, and retrying would spin. */
                rill__channel_close(ch, -EINVAL);
                return;
            }
            continue;
        }
        ssize_t w;
        if (n == 1) {
            w = sys_sendto(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
            w = sys_sendmsg(t->fd, &mh, MSG_NOSIGNAL);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_for_room(t);
                return;
            }
            rill__channel_close(ch, -errno);
            return;
        }
        rill__outbound_advance(ch, (size_t)w); /* promises complete here */
        if (t->closed)
            return;
        if ((size_t)w < bytes) {
            wait_for_room(t);
            return;
        }
    }
}

/* ---- events ---- */

static void connect_event(struct rill_epoll_channel *t, uint32_t events)
{
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return;
    int err = rill__sock_error(t->fd);
    if (!err && (events & EPOLLHUP) && !(events & EPOLLOUT))
        err = -ECONNREFUSED;
    t->connecting = false;
    if (!err) {
        t->connected = true;
        if (rill__sock_local_addr(t->fd, &t->local) == 0)
            t->base.local_addr = &t->local;
        if (events & (EPOLLIN | EPOLLRDHUP))
            t->in_ready = true;
        if (events & EPOLLRDHUP)
            t->rdhup = true;
        update_events(t);
    }
    rill__channel_connect_done(&t->base, err);
}

static void on_io(struct rill_io *io, uint32_t events)
{
    struct rill_epoll_channel *t = io->data;
    struct rill_channel *ch = &t->base;

    if (t->connecting) {
        connect_event(t, events);
        return;
    }
    if ((events & EPOLLOUT) && t->out_wait) {
        t->out_wait = false;
        rill__channel_flush_now(ch);
        if (t->closed)
            return;
        if (!t->out_wait)
            update_events(t);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        t->in_ready = true;
        if (events & (EPOLLRDHUP | EPOLLHUP))
            t->rdhup = true;
        if (t->want_read && !t->input_done)
            do_read(t);
        if (t->closed)
            return;
    }
    if (!t->edge && (events & EPOLLHUP) && !t->want_read && !(events & EPOLLERR) &&
        !t->input_done) {
        /* Level mode with reading paused: a hang-up would be reported
         * again and again. Stop watching until reading resumes. */
        rill_io_stop(&t->io);
        t->armed = false;
        t->hup_parked = true;
        return;
    }
    if (events & EPOLLERR) {
        /* An error nobody read (reads are off, or there was no data). */
        int err = rill__sock_error(t->fd);
        rill__channel_close(ch, err ? err : -EIO);
        return;
    }
    if ((events & EPOLLHUP) && t->input_done) {
        /* Both directions are gone: nothing more can happen here, and a
         * level-triggered HUP would repeat for ever. */
        rill__channel_close(ch, 0);
    }
}

/* ---- operations ---- */

static int ep_do_register(struct rill_channel *ch)
{
    struct rill_epoll_channel *t = ep(ch);
    /* An unconnected socket polls as HUP: a client starts watching when it
     * connects. */
    return t->connected ? arm(t) : 0;
}

static int ep_connect(struct rill_channel *ch, const struct rill_addr *remote,
                      const struct rill_addr *local)
{
    struct rill_epoll_channel *t = ep(ch);
    if (t->fd < 0 || t->closed)
        return RILL_ECLOSED;
    if (t->connected || t->connecting)
        return -EISCONN;
    if (rill__epoll_family(remote) != t->family)
        return -EAFNOSUPPORT;
    if (local) {
        if (rill__epoll_family(local) != t->family)
            return -EAFNOSUPPORT;
        if (bind(t->fd, (const struct sockaddr *)&local->sa, local->len) < 0)
            return -errno;
    }
    t->remote = *remote;
    ch->remote_addr = &t->remote;
    int err = rill__sock_connect(t->fd, remote);
    if (err == 0) {
        t->connected = true;
    } else if (err == -EINPROGRESS) {
        t->connecting = true;
    } else {
        return err;
    }
    int aerr = arm(t);
    if (aerr) {
        t->connecting = false;
        return aerr;
    }
    if (t->connected && rill__sock_local_addr(t->fd, &t->local) == 0)
        ch->local_addr = &t->local;
    return err;
}

static int ep_shutdown_output(struct rill_channel *ch)
{
    struct rill_epoll_channel *t = ep(ch);
    if (t->fd < 0 || t->closed)
        return RILL_ECLOSED;
    return shutdown(t->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void ep_close(struct rill_channel *ch)
{
    struct rill_epoll_channel *t = ep(ch);
    if (t->closed)
        return;
    t->closed = true;
    if (t->armed) {
        rill_io_stop(&t->io);
        t->armed = false;
    }
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

static void ep_destroy(struct rill_channel *ch)
{
    free(ep(ch));
}

static int ep_set_option(struct rill_channel *ch, enum rill_option opt, int64_t value)
{
    struct rill_epoll_channel *t = ep(ch);
    if (opt == RILL_OPT_EDGE_TRIGGERED)
        return t->armed && (value != 0) != t->edge ? -EBUSY : 0;
    if (t->fd < 0 || t->closed)
        return 0;
    return rill__sock_apply_option(t->fd, t->family, opt, value);
}

static int64_t ep_msg_size(struct rill_channel *ch, struct rill_msg *msg)
{
    struct rill_file_region *r = rill_file_region_from_msg(msg);
    if (!r)
        return -EINVAL;
    uint64_t left = rill_file_region_remaining(r);
    return left > (uint64_t)INT64_MAX ? -EINVAL : (int64_t)left;
}

#define STREAM_OPS(transport_name)                                                                 \
    {                                                                                              \
        .name = transport_name, .flags = 0, .do_register = ep_do_register, .connect = ep_connect,  \
        .begin_read = ep_begin_read, .stop_read = ep_stop_read, .write = ep_write,                 \
        .shutdown_output = ep_shutdown_output, .close = ep_close, .destroy = ep_destroy,           \
        .set_option = ep_set_option, .msg_size = ep_msg_size,                                      \
    }

static const struct rill_transport_ops tcp_ops = STREAM_OPS("tcp");
static const struct rill_transport_ops unix_ops = STREAM_OPS("unix");

/* ---- construction ---- */

static int make(struct rill_loop *loop, int family, int fd, struct rill_channel *parent,
                struct rill_epoll_channel **out)
{
    struct rill_epoll_channel *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    int err = rill__channel_init(&t->base, family == AF_UNIX ? &unix_ops : &tcp_ops, loop, parent);
    if (err) {
        free(t);
        return err;
    }
    t->fd = fd;
    t->family = family;
    *out = t;
    return 0;
}

/* TCP_NODELAY is on by default: the one option a new socket must be told. */
static void apply_nodelay(struct rill_epoll_channel *t)
{
    if (t->family != AF_UNIX && rill__channel_opt(&t->base, RILL_OPT_TCP_NODELAY))
        rill__sock_set_int(t->fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

int rill__epoll_channel_new(struct rill_loop *loop, int family, struct rill_channel **out)
{
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
        return -EAFNOSUPPORT;
    int fd = rill__sock_open(family);
    if (fd < 0)
        return fd;
    struct rill_epoll_channel *t;
    int err = make(loop, family, fd, NULL, &t);
    if (err) {
        close(fd);
        return err;
    }
    apply_nodelay(t);
    *out = &t->base;
    return 0;
}

int rill__epoll_channel_accepted(struct rill_channel *server, struct rill_loop *loop, int fd,
                                 const struct rill_addr *peer, const struct rill_addr *local,
                                 struct rill_channel **out)
{
    int family = local ? rill_addr_family(local) : AF_UNSPEC;
    if (family == AF_UNSPEC) {
        struct rill_addr a;
        int err = rill__sock_local_addr(fd, &a);
        if (err) {
            close(fd);
            return err;
        }
        family = rill_addr_family(&a);
    }
    struct rill_epoll_channel *t;
    int err = make(loop, family, fd, server, &t);
    if (err) {
        close(fd);
        return err;
    }
    t->connected = true;
    if (peer) {
        t->remote = *peer;
        t->base.remote_addr = &t->remote;
    }
    if (local) {
        t->local = *local;
        t->base.local_addr = &t->local;
    } else if (rill__sock_local_addr(fd, &t->local) == 0) {
        t->base.local_addr = &t->local;
    }
    apply_nodelay(t);
    rill__channel_mark_active(&t->base);
    *out = &t->base;
    return 0;
}
