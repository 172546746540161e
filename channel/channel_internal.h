/* The transport contract: what the channel core gives a transport (epoll,
 * rdma, embedded) and what a transport gives the core. Private to rill.
 *
 * A transport channel embeds `struct rill_channel base;` as its first
 * member, allocates itself, and then:
 *
 *   rill__channel_init(&t->base, &my_ops, loop, parent);  // refcount 1: the creator's
 *   ...set up the fd, point base.local_addr/remote_addr at its own storage...
 *   rill__channel_mark_active(&t->base);   // only if already connected (accepted child)
 *   rill__channel_register(&t->base, init, arg, promise);  // any thread: a task on @loop
 *   rill_channel_release(&t->base);        // when the creator no longer needs it
 *
 * The loop holds its own reference from rill__channel_register until the
 * channel has been unregistered; ops->destroy frees the memory at the last
 * reference.
 *
 * Everything below is "Thread: loop thread only" (the channel's loop) unless
 * it says otherwise; ops are always called on the channel's loop, except
 * destroy (see there).
 *
 * Inbound, a transport calls:
 *   rill__channel_fire_read(ch, msg)      once per message (takes ownership)
 *   rill__channel_fire_read_complete(ch)  once at the end of each read batch;
 *                                         with auto-read on it asks for the
 *                                         next read (ops->begin_read) itself
 *   rill__channel_input_shutdown(ch)      read EOF / EPOLLRDHUP
 *   rill__channel_fire_exception(ch, err, why)
 *   rill__channel_close(ch, reason)       fatal errors (ECONNRESET, QP error)
 * After each of these the channel may be closed (a handler closed it): stop
 * touching the socket when !rill_channel_is_open(ch). The memory stays
 * valid until the current loop callback returns: the core frees nothing
 * under a running callback (unregistration is a task).
 *
 * Outbound, the core calls ops->write(ch) when something was flushed. The
 * transport sends what rill__outbound_iov() describes (or, for a message
 * that is not a buffer, what rill__outbound_current() shows), reports what
 * the kernel took with rill__outbound_advance(), and repeats up to
 * rill__channel_opt(ch, RILL_OPT_WRITE_SPIN) times. When the kernel is full
 * it waits for EPOLLOUT and then calls rill__channel_flush_now(ch); when the
 * spin limit is hit with data left it calls rill__channel_flush_later(ch) so
 * other channels get the loop. Write promises complete inside
 * rill__outbound_advance: their listeners may write, flush or close, so
 * re-check rill_channel_is_open() after each advance. ops->write is never
 * re-entered for one channel: a flush during it is picked up by the loop
 * that is running (the transport keeps going while
 * rill__outbound_has_flushed() is true).
 */
#ifndef RILL_CHANNEL_INTERNAL_H
#define RILL_CHANNEL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/loop_internal.h"
#include "rill/channel.h"
#include "rill/loop.h"
#include "rill/pipeline.h"

struct rill_addr;
struct rill_msg;
struct rill_promise;
struct rill_timer;

/* ---- the transport's operations ---- */

/* ops->flags */
#define RILL_TRANSPORT_F_SERVER 0x1u /* a listening channel: bind makes it active, reads accept */

struct rill_transport_ops {
    const char *name; /* "tcp", "unix", "rdma", "embedded": rill_channel_transport() */
    unsigned flags;

    /* Start watching the channel's fds on ch->loop (first thing on the
     * loop after the init callback). 0 or -errno: on failure the channel
     * closes without ever firing registered. May be NULL. */
    int (*do_register)(struct rill_channel *ch);
    /* Stop watching (called once, in the unregistration task after close;
     * the fds are closed by then). May be NULL. */
    void (*do_deregister)(struct rill_channel *ch);

    /* Bind to @local (borrowed). Synchronous: 0 or -errno. A server channel
     * also listens here (backlog: rill__channel_opt(ch, RILL_OPT_BACKLOG));
     * the core then makes it active (active fires as a task after the bind
     * promise completed) and, with auto-read, calls begin_read to accept.
     * The transport points ch->local_addr at the bound address. May be NULL
     * (-EOPNOTSUPP). */
    int (*bind)(struct rill_channel *ch, const struct rill_addr *local);

    /* Start connecting to @remote (from @local when not NULL; both
     * borrowed). Returns 0 when connected at once, -EINPROGRESS when the
     * transport will call rill__channel_connect_done() later, or -errno
     * (the connect fails and the channel closes). The core owns the connect
     * timeout (RILL_OPT_CONNECT_TIMEOUT_MS): on expiry it fails the connect
     * with -ETIMEDOUT and closes the channel, which calls ops->close; the
     * transport aborts the attempt there. May be NULL (-EOPNOTSUPP). */
    int (*connect)(struct rill_channel *ch, const struct rill_addr *remote,
                   const struct rill_addr *local);

    /* Read (or accept) what is available now and keep reading while
     * auto-read is on (rill__channel_auto_read). With auto-read off, read
     * one batch per begin_read and then stop watching for input. Called
     * after active fires (auto-read), after each read_complete (auto-read)
     * and on every read request. May be NULL. */
    void (*begin_read)(struct rill_channel *ch);
    /* Auto-read was switched off: stop watching for input after the
     * current batch. May be NULL (the transport checks auto-read after each
     * batch instead). */
    void (*stop_read)(struct rill_channel *ch);

    /* Send what is flushed in the outbound queue (see the top of this
     * file). The channel is active. May be NULL (writes fail -EOPNOTSUPP:
     * server channels). */
    void (*write)(struct rill_channel *ch);

    /* shutdown(SHUT_WR) or the transport's equivalent, called once the
     * flushed data before it has been written. 0 or -errno. May be NULL
     * (-EOPNOTSUPP). */
    int (*shutdown_output)(struct rill_channel *ch);

    /* The channel starts closing (it is no longer open; new writes fail):
     * report with rill__outbound_advance what the transport has already
     * finished but not yet reported (completions not yet polled), so those
     * writes succeed rather than fail with the close. Write listeners may
     * run. Called once, before close, for registered channels. May be NULL. */
    void (*drain)(struct rill_channel *ch);

    /* Close the connection now and release the fd / QP; stop every
     * watcher and abort a connect in progress. Synchronous, called exactly
     * once (also for a channel that was never registered or never
     * connected). Must not call back into the channel core. For a channel
     * dropped before it was registered it runs at destroy, on the thread
     * that dropped the last reference. */
    void (*close)(struct rill_channel *ch);

    /* Free the transport's memory (the embedding struct) at the last
     * reference, after the core has released what it holds. Called on the
     * thread that dropped the last reference, which may be any thread:
     * touch no loop state here. Required. */
    void (*destroy)(struct rill_channel *ch);

    /* Apply a socket option (TCP_NODELAY, SO_KEEPALIVE, SO_RCVBUF,
     * SO_SNDBUF, SO_REUSEADDR, SO_REUSEPORT, EDGE_TRIGGERED ...). Called
     * by rill_channel_set_option on any thread after the value was
     * validated, and by rill__channel_apply_options; a live fd takes it at
     * once (setsockopt is thread-safe), an fd not yet created takes the
     * stored values when it is (rill__channel_opt). Returns 0, or -errno
     * (the option keeps its old value). Options the transport does not know
     * must return 0 (they are just stored). May be NULL. */
    int (*set_option)(struct rill_channel *ch, enum rill_option opt, int64_t value);

    /* Bytes a non-buffer message will occupy in the outbound queue
     * (rill_file_region_remaining for a file region), or -EINVAL when the
     * transport cannot write such a message (the write then fails with that
     * error and the message is released). Buffers are sized by the core
     * (readable bytes). May be NULL: only buffers are accepted. */
    int64_t (*msg_size)(struct rill_channel *ch, struct rill_msg *msg);

    /* Optional overrides of the tail (the embedded channel keeps what
     * reaches the tail for the test): a message that no handler consumed
     * (takes ownership), an exception that no handler handled (@why
     * borrowed). NULL: release with a debug log / log a warning with the
     * channel id. */
    void (*unhandled_read)(struct rill_channel *ch, struct rill_msg *msg);
    void (*unhandled_exception)(struct rill_channel *ch, int err, const char *why);
};

/* ---- the channel ---- */

struct rill__out_entry;

/* The outbound queue: entries in write order; the first @nflushed are
 * flushed (handed to the transport), the rest wait for the next flush. */
struct rill__outbound {
    struct rill__out_entry *head, *tail;
    struct rill__out_entry *unflushed; /* first entry not yet flushed, or NULL */
    size_t pending;                    /* unwritten bytes of every entry */
    size_t flushed_bytes;              /* unwritten bytes of the flushed entries */
    size_t entries;
    /* Transports that complete sends later (RDMA): bytes handed to the
     * device and not yet completed, and where the next unposted byte is
     * (entry + offset into its unwritten bytes; valid while posted > 0). */
    size_t posted;
    struct rill__out_entry *pcur;
    size_t pcur_off;
    bool transport_full; /* the transport cannot take more (credits, send queue) */
};

/* Adaptive receive sizing (Netty's AdaptiveRecvByteBufAllocator): the
 * size of the next read buffer grows at once when a batch filled what it
 * was given, and shrinks after two batches in a row used less than half. */
struct rill__recv_sizer {
    size_t guess;
    bool shrink_armed;
};

struct rill__attr;
struct rill__acceptor;

/* Layout shared by the core and the transports. Transports set
 * local_addr/remote_addr and read loop, ops, parent and id; every other
 * field belongs to the core (use the functions below). */
struct rill_channel {
    const struct rill_transport_ops *ops;
    struct rill_loop *loop;
    struct rill_channel *parent; /* the server channel that accepted this one (a reference) */
    uint64_t id;
    /* Point at storage the transport owns, valid for the channel's life. */
    const struct rill_addr *local_addr, *remote_addr;

    /* ---- core-private from here on ---- */
    _Atomic unsigned refcnt;
    _Atomic unsigned state; /* RILL__CH_* bits: snapshots for other threads */
    struct rill_pipeline *pipeline;
    _Atomic int64_t opt[RILL_OPT__COUNT];
    _Atomic int close_reason; /* read by rill_channel_close_reason on any thread */
    struct rill_promise *close_future;
    struct rill__loop_hook shutdown_hook; /* closes the channel when its loop shuts down */

    /* Loop thread. */
    bool registered, closing, in_flush, input_shutdown, output_shutdown, shutdown_pending;
    bool unregistering, active_on_register, inactive_fired;
    bool was_active, connect_pending, activate_queued;
    _Atomic bool register_called;
    struct rill__outbound out;
    struct rill__recv_sizer recv;
    struct rill__attr *attrs;
    struct rill_promise *connect_promise, *shutdown_promise;
    struct rill_timer *connect_timer;
    /* Writability events are fired from a task, so they never run inside a
     * transport's write or a handler's write call. */
    unsigned wr_flips;   /* writability changes since the last event */
    bool wr_task_queued; /* wr_task posted */
    bool flush_task_queued;
    struct rill_task wr_task, flush_task, close_task, shutdown_task, activate_task;

    /* Server channels: what to do with accepted children. */
    struct rill__acceptor *acceptor;
};

/* rill_channel.state bits */
#define RILL__CH_OPEN       0x1u
#define RILL__CH_REGISTERED 0x2u
#define RILL__CH_ACTIVE     0x4u
#define RILL__CH_WRITABLE   0x8u

/* Thread: any (pure initialisation). Initialise @ch for @ops on @loop
 * with one reference (the caller's), the default options, an empty
 * pipeline, open, not registered, not active. @parent (may be NULL) is
 * retained until the channel is destroyed. Returns 0 or -ENOMEM (nothing
 * to undo then; the caller frees its memory itself). */
int rill__channel_init(struct rill_channel *ch, const struct rill_transport_ops *ops,
                       struct rill_loop *loop, struct rill_channel *parent);

/* Thread: any, before rill__channel_register. The channel is connected
 * already (an accepted child, the embedded channel): active fires right
 * after registered. */
void rill__channel_mark_active(struct rill_channel *ch);

/* Runs on the channel's loop before registration: install handlers, set
 * options. Non-zero fails the registration (the channel closes with that
 * reason, registered never fires). */
typedef int rill__channel_init_fn(struct rill_channel *ch, void *arg);

/* Thread: any. Register @ch with its loop: on the loop's thread (at once
 * when called there, else as a task) run @init(ch, @arg) (may be NULL),
 * then ops->do_register, then complete @p (may be NULL), fire registered,
 * and active if the channel is already active. The loop's reference is
 * taken here, synchronously. Failures (init or do_register error, a
 * channel closed meanwhile: RILL_ECLOSED, a terminated loop:
 * RILL_EREJECTED) fail @p and close the channel. Calling it twice fails
 * @p with -EALREADY. */
void rill__channel_register(struct rill_channel *ch, rill__channel_init_fn *init, void *arg,
                            struct rill_promise *p);

/* Mark the channel active and fire active now; with auto-read, request
 * the first read. For transports that become active outside bind/connect
 * (none today). Idempotent. */
void rill__channel_activate(struct rill_channel *ch);

/* The connect started by ops->connect finished: 0, or -errno (the connect
 * promise fails and the channel closes with that reason). Ignored when no
 * connect is pending (it timed out or the channel closed). On success:
 * the connect promise completes, then active fires, then auto-read. */
void rill__channel_connect_done(struct rill_channel *ch, int err);

/* ---- inbound, from the transport ---- */

/* Fire read at the first handler; takes ownership of @msg on every path. */
void rill__channel_fire_read(struct rill_channel *ch, struct rill_msg *msg);
/* Fire read_complete; then, with auto-read on and the channel open, a read
 * request travels from the tail (handlers may hold it back) to begin_read. */
void rill__channel_fire_read_complete(struct rill_channel *ch);
/* Fire exception (err < 0; @why borrowed, may be NULL). */
void rill__channel_fire_exception(struct rill_channel *ch, int err, const char *why);
/* The peer shut its output (read EOF or EPOLLRDHUP; at most once is
 * acted on). With RILL_OPT_ALLOW_HALF_CLOSURE the user event
 * RILL_EVENT_INPUT_SHUTDOWN fires and the channel stays open for writing;
 * otherwise the channel closes (Netty's default). The transport stops
 * reading either way. */
void rill__channel_input_shutdown(struct rill_channel *ch);
/* True after rill__channel_input_shutdown. */
bool rill__channel_is_input_shutdown(const struct rill_channel *ch);

/* Close now, bypassing the pipeline (transport errors): the same sequence
 * as rill_channel_close_with (@reason 0 or < 0). */
void rill__channel_close(struct rill_channel *ch, int reason);

/* ---- outbound queue, for ops->write ---- */

/* Fill up to @max iovecs (at most IOV_MAX are useful) with the unwritten
 * bytes of the flushed entries, in order: a flat buffer gives one iovec, a
 * composite one per component (skipping what was written already). Stops
 * at @max, at the first message that is not a buffer, or at the end of
 * the flushed entries. *bytes gets the bytes covered. Returns the number
 * of iovecs (0 when the first flushed entry is not a buffer, or nothing is
 * flushed). The iov_base pointers are borrowed: valid until the next
 * advance. */
int rill__outbound_iov(struct rill_channel *ch, struct iovec *iov, int max, size_t *bytes);

/* The first flushed entry's message (borrowed, valid until the next
 * advance), with *written set to the bytes of it already reported; NULL
 * when nothing is flushed. For messages the transport writes itself (file
 * regions): write, then advance by what was written. */
struct rill_msg *rill__outbound_current(struct rill_channel *ch, size_t *written);

/* The transport handed @n more bytes to the kernel. Fully written entries
 * are removed in order: the message released, the promise completed with
 * 0 (its listeners may run here); a partly written one remembers how far
 * it got. Zero-byte entries at the front are removed too. Updates the
 * pending bytes and writability. */
void rill__outbound_advance(struct rill_channel *ch, size_t n);

/* For transports whose sends complete later (RDMA): the bytes stay queued
 * (and their buffers alive) until rill__outbound_advance reports them
 * complete, while the transport keeps handing more to the device.
 * rill__outbound_iov_unposted is rill__outbound_iov starting after the
 * bytes already posted; rill__outbound_posted(ch, n) records that @n more
 * were handed over. advance() then completes posted bytes in order. */
int rill__outbound_iov_unposted(struct rill_channel *ch, struct iovec *iov, int max, size_t *bytes);
void rill__outbound_posted(struct rill_channel *ch, size_t n);
/* Flushed bytes not yet posted. */
size_t rill__outbound_unposted_bytes(const struct rill_channel *ch);

/* The transport is (or is no longer) out of room for more sends: credits
 * or send-queue slots. While full the channel is not writable, whatever the
 * queued bytes; once not full it becomes writable again under the low
 * watermark (the same events as for the watermarks). */
void rill__outbound_set_transport_full(struct rill_channel *ch, bool full);

/* True while flushed entries remain. */
bool rill__outbound_has_flushed(const struct rill_channel *ch);
/* Unwritten bytes of the flushed entries. */
size_t rill__outbound_flushed_bytes(const struct rill_channel *ch);

/* Call ops->write now (EPOLLOUT arrived), unless it is running already.
 * Flushed entries fail with -ENOTCONN when the channel is not active. */
void rill__channel_flush_now(struct rill_channel *ch);
/* Call ops->write from a task (the write-spin limit was hit). Coalesced:
 * at most one such task is queued per channel. */
void rill__channel_flush_later(struct rill_channel *ch);

/* ---- options and receive sizing ---- */

/* Thread: any. The stored value of @opt (defaults until set). */
static inline int64_t rill__channel_opt(const struct rill_channel *ch, enum rill_option opt)
{
    return atomic_load_explicit(&((struct rill_channel *)ch)->opt[opt], memory_order_relaxed);
}

/* Thread: any. Whether auto-read is on. */
static inline bool rill__channel_auto_read(const struct rill_channel *ch)
{
    return rill__channel_opt(ch, RILL_OPT_AUTO_READ) != 0;
}

/* Call ops->set_option for every option that was set explicitly or whose
 * default the transport must apply (TCP_NODELAY): for a transport that
 * creates its fd after rill__channel_init. Returns 0 or the first error. */
int rill__channel_apply_options(struct rill_channel *ch);

/* Size for the next read buffer (between RILL_OPT_RECV_BUF_MIN and _MAX). */
size_t rill__channel_recv_size(struct rill_channel *ch);
/* Record the bytes one read batch (one begin_read / readiness event)
 * produced, with @filled true when the last read filled its buffer: feeds
 * the adaptive sizing. */
void rill__channel_recv_record(struct rill_channel *ch, size_t batch_bytes, bool filled);

/* ---- server channels: accepted children ---- */

/* Set on a server channel (by the bootstrap) before it binds. @pick_loop
 * chooses each child's loop (it runs on the server's loop; NULL: the
 * server's own loop); @init installs the child's pipeline on the child's
 * loop before registered fires (as rill__channel_register's init). @arg
 * is borrowed: it must outlive the server channel. */
struct rill__acceptor {
    struct rill_loop *(*pick_loop)(void *arg);
    rill__channel_init_fn *init;
    void *arg;
};

/* Thread: any, before bind. Copies @a. Returns 0 or -ENOMEM. */
int rill__channel_set_acceptor(struct rill_channel *server, const struct rill__acceptor *a);

/* The loop for the next accepted child of @server. */
struct rill_loop *rill__channel_child_loop(struct rill_channel *server);

/* Hand over an accepted child: @child was set up with
 * rill__channel_init(child, ops, rill__channel_child_loop(server), server)
 * and rill__channel_mark_active; this takes over the creator's reference,
 * registers the child on its loop (a task when that is another loop) with
 * the acceptor's init. Without an acceptor the child is closed. */
void rill__channel_accepted(struct rill_channel *server, struct rill_channel *child);

#endif /* RILL_CHANNEL_INTERNAL_H */
