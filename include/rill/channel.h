/* A channel: one connection (or listening socket) bound to one loop for
 * its whole life, with a handler pipeline and an outbound queue.
 *
 * Reference counting: the loop holds a reference while the channel is
 * registered and every callback runs with the channel referenced, so
 * closing from inside any callback is safe (the memory goes after the last
 * reference, never under a running callback). Code that keeps the channel
 * pointer past a callback, or hands it to another thread, takes a reference.
 *
 * Lifecycle events, in order and exactly once each: registered, active,
 * (reads), inactive, unregistered. Closing marks the channel closed, closes
 * the transport and fails queued writes at once; inactive, the close future
 * and unregistered then follow from a task on the loop, never inside the
 * callback that closed. After unregistered the handlers are removed (tail
 * first). A channel that never became active gets no inactive.
 *
 * Writes: write() appends to the outbound queue, flush() hands what is
 * queued to the transport; a write's promise completes when its bytes are
 * handed to the kernel (or the device), or fails when the channel closes
 * first. Pending bytes above the high watermark make the channel not
 * writable (writability_changed fires); below the low one, writable again.
 *
 * Thread: functions marked "any" may be called from any thread: off the
 * loop they become tasks on the channel's loop, in call order. */
#ifndef RILL_CHANNEL_H
#define RILL_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rill_addr;
struct rill_channel;
struct rill_loop;
struct rill_msg;
struct rill_pipeline;
struct rill_promise;

/* ---- options ---- */
enum rill_option {
    RILL_OPT_TCP_NODELAY = 1,         /* bool, default 1 */
    RILL_OPT_SO_KEEPALIVE = 2,        /* bool, default 0 */
    RILL_OPT_SO_RCVBUF = 3,           /* bytes, default: kernel's */
    RILL_OPT_SO_SNDBUF = 4,           /* bytes, default: kernel's */
    RILL_OPT_SO_REUSEADDR = 5,        /* bool, default 1 for servers */
    RILL_OPT_SO_REUSEPORT = 6,        /* bool, default 0 */
    RILL_OPT_BACKLOG = 7,             /* listen backlog, default 1024 */
    RILL_OPT_CONNECT_TIMEOUT_MS = 8,  /* default 30000; 0 = none */
    RILL_OPT_WRITE_HIGH_WATER = 9,    /* bytes, default 64 KiB */
    RILL_OPT_WRITE_LOW_WATER = 10,    /* bytes, default 32 KiB */
    RILL_OPT_AUTO_READ = 11,          /* bool, default 1 */
    RILL_OPT_RECV_BUF_MIN = 12,       /* adaptive receive sizing: smallest read buffer (64) */
    RILL_OPT_RECV_BUF_INIT = 13,      /* first read buffer (2048) */
    RILL_OPT_RECV_BUF_MAX = 14,       /* largest read buffer (65536) */
    RILL_OPT_WRITE_SPIN = 15,         /* write syscalls per flush before yielding the loop (16) */
    RILL_OPT_EDGE_TRIGGERED = 16,     /* bool, default 1: EPOLLET for epoll channels */
    RILL_OPT_ALLOW_HALF_CLOSURE = 17, /* bool, default 0: the peer's EOF closes the channel;
                                         1: it fires RILL_EVENT_INPUT_SHUTDOWN instead */
    RILL_OPT_MAX_READS = 18,          /* reads per readiness event before yielding the loop (16) */
    /* RDMA channels (rill/rdma.h); fixed once the queue pair exists (set
     * them in the client options or the server's child options). */
    RILL_OPT_RDMA_RECV_DEPTH = 19, /* receive buffers posted per channel (64): the peer's credits */
    RILL_OPT_RDMA_RECV_SIZE = 20,  /* bytes per receive buffer (16 KiB): largest SEND */
    RILL_OPT_RDMA_RNDV = 21,       /* buffers of at least this many bytes go by rendezvous
                                      (the peer RDMA-READs them) (256 KiB); 0: never */
    RILL_OPT_RDMA_INLINE = 22,     /* sends up to this size go inline (64; capped by the device) */
    RILL_OPT__COUNT
};

/* Thread: any. Set or read an option. Socket options apply at once on a
 * live socket. Returns 0, -EINVAL (bad option or value) or -errno from the
 * socket call. */
int rill_channel_set_option(struct rill_channel *ch, enum rill_option opt, int64_t value);
int rill_channel_get_option(struct rill_channel *ch, enum rill_option opt, int64_t *value);
/* Thread: any. Set both write watermarks at once (setting them one by one
 * must keep low <= high at every step). Returns 0 or -EINVAL (low > high). */
int rill_channel_set_watermarks(struct rill_channel *ch, size_t low, size_t high);

/* ---- references and identity ---- */

/* Thread: any. */
struct rill_channel *rill_channel_retain(struct rill_channel *ch);
void rill_channel_release(struct rill_channel *ch);

/* Thread: any. A process-unique id, stable for the channel's life (logs). */
uint64_t rill_channel_id(const struct rill_channel *ch);
/* Thread: any. The loop the channel is bound to (borrowed). */
struct rill_loop *rill_channel_loop(const struct rill_channel *ch);
/* Thread: loop thread only. The pipeline (borrowed, lives as the channel). */
struct rill_pipeline *rill_channel_pipeline(struct rill_channel *ch);
/* Thread: any. Transport name: "tcp", "unix", "rdma", "embedded", ... */
const char *rill_channel_transport(const struct rill_channel *ch);
/* Thread: any (racy snapshot off the loop). Open until close begins;
 * registered between registered and unregistered; active between active
 * and close; writable while the pending bytes have not crossed the high
 * watermark (false once closed). */
bool rill_channel_is_open(const struct rill_channel *ch);
bool rill_channel_is_registered(const struct rill_channel *ch);
bool rill_channel_is_active(const struct rill_channel *ch);
bool rill_channel_is_writable(const struct rill_channel *ch);
/* Thread: any. The server channel that accepted this one, or NULL.
 * Borrowed, valid while @ch is referenced. */
struct rill_channel *rill_channel_parent(const struct rill_channel *ch);
/* Thread: loop thread only. Bytes queued and not yet handed to the kernel. */
size_t rill_channel_pending_bytes(const struct rill_channel *ch);
/* Thread: any. Addresses (NULL when unknown). Borrowed, valid while referenced. */
const struct rill_addr *rill_channel_local_addr(const struct rill_channel *ch);
const struct rill_addr *rill_channel_remote_addr(const struct rill_channel *ch);

/* ---- operations (start at the tail of the pipeline) ---- */

/* Promises: @p may be NULL everywhere; the caller keeps its reference
 * (rill takes its own while the operation is under way). */

/* Thread: loop thread only (bootstraps call these from the channel's
 * loop). Bind to @local / connect to @remote (from @local when not NULL),
 * through the pipeline. The addresses are borrowed for the call. @p
 * completes when bound / connected, or fails: RILL_ECLOSED, -EISCONN,
 * -EALREADY (a connect is pending), -EOPNOTSUPP, -ETIMEDOUT (after
 * RILL_OPT_CONNECT_TIMEOUT_MS), or the transport's -errno. A failed
 * connect closes the channel. */
void rill_channel_bind(struct rill_channel *ch, const struct rill_addr *local,
                       struct rill_promise *p);
void rill_channel_connect(struct rill_channel *ch, const struct rill_addr *remote,
                          const struct rill_addr *local, struct rill_promise *p);

/* Thread: any. Takes ownership of @msg on every path; @p may be NULL. */
void rill_channel_write(struct rill_channel *ch, struct rill_msg *msg, struct rill_promise *p);
void rill_channel_flush(struct rill_channel *ch);
void rill_channel_write_and_flush(struct rill_channel *ch, struct rill_msg *msg,
                                  struct rill_promise *p);
/* Thread: any. Close, through the pipeline from the tail; @p completes
 * with the close future (after inactive). Queued writes fail with
 * RILL_ECLOSED, their messages are released; later writes fail at once.
 * Idempotent: later calls complete their promise when the first close
 * finishes. */
void rill_channel_close(struct rill_channel *ch, struct rill_promise *p);
/* Thread: any. Close and record why (@reason < 0; logged at debug level,
 * seen by rill_channel_close_reason; queued writes fail with it). */
void rill_channel_close_with(struct rill_channel *ch, int reason, struct rill_promise *p);
/* Thread: any. The error that closed the channel: 0 for a plain close or
 * the peer's EOF, the close_with reason, a transport error (-ECONNRESET),
 * a failed connect's error, or a failed registration's. */
int rill_channel_close_reason(const struct rill_channel *ch);
/* Thread: any. A future completed when the channel has closed (borrowed,
 * valid while the channel is referenced). */
struct rill_promise *rill_channel_close_future(struct rill_channel *ch);
/* Thread: any. Shut down the output side (half-close): flushed data is
 * sent first, writes not yet flushed fail with -EPIPE, and so do later
 * ones. @p completes when the output is shut (-EALREADY for a second call);
 * then the user event RILL_EVENT_OUTPUT_SHUTDOWN fires. */
void rill_channel_shutdown_output(struct rill_channel *ch, struct rill_promise *p);
/* Thread: any. Request a read when auto-read is off (Netty's read()): it
 * travels from the tail through the handlers' read_request slots. */
void rill_channel_read(struct rill_channel *ch);

/* ---- attributes (typed keys) ----
 * A key is a static object; its address is the identity. @free (may be
 * NULL) runs on the value when it is replaced, removed, or the channel is
 * destroyed (on the thread that drops the last reference). Thread: loop
 * thread only. set returns 0, -EINVAL (NULL key) or -ENOMEM (the caller
 * then still owns @value). */
struct rill_attr_key {
    const char *name;
    void (*free)(void *value);
};
int rill_channel_attr_set(struct rill_channel *ch, const struct rill_attr_key *key, void *value);
/* Borrowed value, or NULL. */
void *rill_channel_attr_get(struct rill_channel *ch, const struct rill_attr_key *key);
/* Remove and free; -ENOENT if absent. */
int rill_channel_attr_remove(struct rill_channel *ch, const struct rill_attr_key *key);

#endif /* RILL_CHANNEL_H */
