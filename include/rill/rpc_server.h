/* The RPC server: a method registry shared by every connection, a handler
 * that dispatches requests from a server-role codec, and a pool of handler
 * threads with a bounded call queue (Hadoop IPC's Handler threads).
 *
 *   struct rill_rpc_server *rs;
 *   rill_rpc_server_new(NULL, &rs);
 *   rill_rpc_server_register(rs, "calc", "add", calc_add, NULL, RILL_RPC_INLINE);
 *   ...child_init: rill_rpc_server_install(rs, rill_channel_pipeline(ch));
 *
 *   static void calc_add(struct rill_rpc_server_call *call, void *arg) {
 *       ...rill_rpc_server_call_payload(call)...
 *       rill_rpc_server_call_reply(call, result);   // now, or later from any thread
 *   }
 *
 * Dispatch: RILL_RPC_INLINE runs the method on the connection's I/O loop
 * (for short, non-blocking work); RILL_RPC_POOL queues the call for the
 * handler threads (blocking work). A full queue answers BUSY at once.
 *
 * Answers: every call is answered exactly once, by reply or fail, from any
 * thread, during the method or later (asynchronous methods keep the call).
 * The answer frees the call. Responses always go out through the
 * connection's loop; an answer for a connection that has closed is dropped
 * (and counted). Unknown service or method: UNIMPLEMENTED. A call whose
 * deadline has passed when its turn comes is answered DEADLINE_EXCEEDED
 * without running; one the client cancelled is answered CANCELLED without
 * running; one already running sees rill_rpc_server_call_is_cancelled().
 *
 * Registry (liburcu RCU hash): lookups take no lock; register and
 * unregister may run while serving. A call dispatched before unregister
 * completes normally; later requests get UNIMPLEMENTED.
 *
 *   operation                          thread
 *   new / free                         any thread that is not a loop of the
 *                                      server's connections (free joins threads)
 *   register / unregister / stats      any
 *   install / the handlers             the channel's loop
 *   server_call accessors              the thread that holds the call
 *   reply / fail                       any (once) */
#ifndef RILL_RPC_SERVER_H
#define RILL_RPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rpc_frame.h"
#include "rill/rpc_status.h"

struct rill_buf;
struct rill_channel;
struct rill_pipeline;
struct rill_rpc_server;
struct rill_rpc_server_call;

enum rill_rpc_dispatch {
    RILL_RPC_INLINE = 0, /* on the connection's I/O loop */
    RILL_RPC_POOL = 1,   /* on a handler thread, through the call queue */
};

/* A method. Owns the call's answer: reply or fail it exactly once. */
typedef void rill_rpc_method_fn(struct rill_rpc_server_call *call, void *arg);

/* Auth hook, run on the connection's loop when the preamble arrives.
 * @pre (borrowed) carries the client's auth token. Return RILL_RPC_OK to
 * accept, or a status (UNAUTHENTICATED, PERMISSION_DENIED, ...) after
 * writing a reason into @reason (@reason_size bytes); the client then gets
 * a GOAWAY with both and the connection closes. */
typedef int rill_rpc_auth_fn(struct rill_channel *ch, const struct rill_rpc_preamble *pre,
                             void *arg, char *reason, size_t reason_size);

struct rill_rpc_server_opts {
    int handler_threads;      /* pool threads; 0: 4 */
    size_t queue_capacity;    /* calls queued for the pool; 0: 1024 */
    size_t max_frame;         /* frame limit of the installed codec; 0: default */
    uint64_t idle_timeout_ns; /* close connections idle this long with no call
                                 in flight; 0: never */
    size_t max_connections;   /* refuse more (GOAWAY UNAVAILABLE); 0: no cap */
    rill_rpc_auth_fn *auth;   /* NULL: accept every preamble */
    void *auth_arg;
};

/* Thread: any. Defaults above. */
void rill_rpc_server_opts_init(struct rill_rpc_server_opts *o);

/* Thread: any. Create a server and start its handler threads. @o may be
 * NULL. Returns 0, -EINVAL, -ENOMEM or a pthread error (< 0). */
int rill_rpc_server_new(const struct rill_rpc_server_opts *o, struct rill_rpc_server **out);

/* Thread: any thread that is not a loop of its connections and not a
 * handler thread. Stop serving: new requests get UNAVAILABLE, queued calls
 * are answered UNAVAILABLE, the handler threads finish their current call
 * and are joined, then every open connection is sent GOAWAY (UNAVAILABLE,
 * "server shutting down") after those answers and closed once it is
 * written (connections that become active later get the same), and the
 * methods are unregistered. The memory goes once the last connection has
 * closed (connections keep the server alive). Calls still held by
 * asynchronous methods may be answered later: their responses are dropped
 * (or go out if the connection has not closed yet). */
void rill_rpc_server_free(struct rill_rpc_server *s);

/* Thread: any. Register @fn for @service/@method (copied; 1..255 bytes
 * each). @arg is borrowed until the method is unregistered and its calls
 * are answered. Returns 0, -EEXIST, -EINVAL, -ENOMEM, or RILL_ECLOSED after
 * free began. */
int rill_rpc_server_register(struct rill_rpc_server *s, const char *service, const char *method,
                             rill_rpc_method_fn *fn, void *arg, enum rill_rpc_dispatch mode);

/* Thread: any. Waits one RCU grace period (until every lookup that may
 * have seen the entry is over: micro- to milliseconds), so prefer calling
 * it off the I/O loops. Returns 0 or -ENOENT. Calls already dispatched
 * complete (they hold the entry). Its stats stay readable through
 * rill_rpc_server_method_stats, counting those calls too, until the
 * server is freed or the pair is unregistered again (then the newer
 * registration's are kept). */
int rill_rpc_server_unregister(struct rill_rpc_server *s, const char *service, const char *method);

/* The handlers, for hand-built pipelines (install does this):
 *   rpc-bytes   counts bytes in and out (arg: the server), before the codec
 *   rpc-codec   rill_rpc_codec_handler with a server-role options struct
 *   rpc-server  rill_rpc_server_handler (arg: the server), after the codec */
extern const struct rill_handler rill_rpc_server_handler;
extern const struct rill_handler rill_rpc_bytes_handler;

/* Thread: loop thread only (child_init). Add the three handlers above at the
 * end of @pl. Returns 0 or the pipeline's error (nothing is left behind). */
int rill_rpc_server_install(struct rill_rpc_server *s, struct rill_pipeline *pl);

/* ---- the call, in a method ---- */

/* Names, id and payload of the request. Borrowed: valid until answered. */
const char *rill_rpc_server_call_service(const struct rill_rpc_server_call *c);
const char *rill_rpc_server_call_method(const struct rill_rpc_server_call *c);
uint64_t rill_rpc_server_call_id(const struct rill_rpc_server_call *c);
/* The request payload, borrowed (NULL when empty). It is a view of the
 * bytes read: retain it to keep it past the answer. */
struct rill_buf *rill_rpc_server_call_payload(struct rill_rpc_server_call *c);
/* A request metadata entry, or NULL. Borrowed: valid until answered. */
const struct rill_rpc_md *rill_rpc_server_call_md(const struct rill_rpc_server_call *c,
                                                  const char *key);
/* The connection (borrowed: valid until answered). */
struct rill_channel *rill_rpc_server_call_channel(const struct rill_rpc_server_call *c);
/* Thread: any. True once the client cancelled the call or the connection
 * closed: its answer will be dropped, stop early. */
bool rill_rpc_server_call_is_cancelled(const struct rill_rpc_server_call *c);
/* Thread: any. Nanoseconds left before the client's deadline (< 0 when
 * passed), or INT64_MAX without one. */
int64_t rill_rpc_server_call_remaining_ns(const struct rill_rpc_server_call *c);

/* Add response metadata (copied) before answering. 0, -EINVAL, -ENOMEM. */
int rill_rpc_server_call_add_md(struct rill_rpc_server_call *c, const char *key, const void *val,
                                uint32_t val_len);

/* Thread: any. Answer OK with @resp (ownership taken; may be NULL for an
 * empty payload). Frees the call: don't touch it afterwards. Returns 0.
 * A response over the frame limit is replaced by RESOURCE_EXHAUSTED. */
int rill_rpc_server_call_reply(struct rill_rpc_server_call *c, struct rill_buf *resp);

/* Thread: any. Answer with @status (not OK) and a message (copied, may be
 * NULL). Frees the call. Returns 0, or -EINVAL for a status <= 0 or
 * > 65535: then it answers INTERNAL "method answered with an invalid status
 * N" instead (the call is gone either way). */
int rill_rpc_server_call_fail(struct rill_rpc_server_call *c, int status, const char *msg);

/* ---- metrics ---- */

struct rill_rpc_method_stats {
    uint64_t calls;                            /* answered calls */
    uint64_t by_status[RILL_RPC_STATUS_COUNT]; /* answers per rill status */
    uint64_t other_status;                     /* application statuses */
    uint64_t errors;                           /* answers that were not OK */
    uint64_t busy, expired, cancelled;         /* answered without running */
    uint64_t p50_ns, p99_ns, max_ns;           /* latency, receive to answer;
                                                  percentiles are bucket upper
                                                  bounds (at most 25% high) */
};

struct rill_rpc_server_stats {
    uint64_t connections;         /* open now */
    uint64_t connections_total;   /* accepted since start */
    uint64_t connections_refused; /* over the cap, or refused by auth */
    uint64_t in_flight;           /* calls received and not answered */
    uint64_t queue_len;           /* calls waiting for a handler thread */
    uint64_t calls;               /* requests received */
    uint64_t unimplemented;       /* requests for unknown methods */
    uint64_t dropped_responses;   /* answers for closed connections */
    uint64_t bytes_in, bytes_out; /* on the wire (rpc-bytes) */
};

/* Thread: any. Racy snapshots. */
void rill_rpc_server_stats(const struct rill_rpc_server *s, struct rill_rpc_server_stats *out);
/* Thread: any. The registered method's stats or, when the pair is not
 * registered, those of its last registration (kept by unregister until
 * free). -ENOENT when the pair was never registered. */
int rill_rpc_server_method_stats(struct rill_rpc_server *s, const char *service, const char *method,
                                 struct rill_rpc_method_stats *out);

#endif /* RILL_RPC_SERVER_H */
