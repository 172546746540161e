/* The RPC client handler and calls. Many calls share one connection: each
 * gets a request id, and responses may come back in any order. A call
 * returns a future (future.h) completed on the channel's loop.
 *
 *   rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL); // in the init callback
 *   ...
 *   struct rill_rpc_call *call;
 *   rill_rpc_call_start(ch, "calc", "add", payload, NULL, &call);   // any thread
 *   if (rill_rpc_call_wait(call, -1) == 0) {                       // not on ch's loop
 *       struct rill_buf *resp = rill_rpc_call_response(call);       // new reference or NULL
 *       ...
 *   }
 *   rill_rpc_call_release(call);
 *
 * Outcomes: the future succeeds (value: the response payload, a struct
 * rill_buf * borrowed from the future, or NULL when empty) when the server
 * answered OK; otherwise it fails with rill_rpc_status_to_err(status) and the
 * call keeps the exact status and message:
 *   - the server's status (UNIMPLEMENTED, BUSY, an application code, ...);
 *   - DEADLINE_EXCEEDED when the call's timeout passes first (a CANCEL frame
 *     tells the server);
 *   - CANCELLED after rill_rpc_call_cancel (a CANCEL frame is sent);
 *   - UNAVAILABLE when the connection closes (or the server sends GOAWAY,
 *     whose status is used then) with the call in flight, or when the
 *     channel has no client handler or is closed already;
 *   - RESOURCE_EXHAUSTED when the request frame is over the frame limit.
 * A response that arrives after the call ended is dropped.
 *
 * The handler is one pipeline stage: a connection pool (later) keeps one
 * per channel and starts calls on the channel it picks. */
#ifndef RILL_RPC_CLIENT_H
#define RILL_RPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/rpc_frame.h"
#include "rill/rpc_status.h"

struct rill_buf;
struct rill_channel;
struct rill_pipeline;
struct rill_promise;
struct rill_rpc_call;

/* Per-call options. Everything is copied at start. */
struct rill_rpc_call_opts {
    uint64_t timeout_ns;          /* 0: the handler's default (none unless configured) */
    const struct rill_rpc_md *md; /* request metadata (key, value) entries */
    uint16_t nmd;
    bool idempotent; /* safe to send twice: lets a retry policy (pool) resend it */
    void *user;      /* the caller's, see rill_rpc_call_user */
};

/* Thread: any. No timeout, no metadata, not idempotent. */
void rill_rpc_call_opts_init(struct rill_rpc_call_opts *o);

/* Options of the client handler (copied when it is added). */
struct rill_rpc_client_opts {
    uint64_t default_timeout_ns; /* for calls without their own; 0: none */
    size_t max_frame;            /* request limit checked before sending, against the
                                    frame as the rpc codec on the channel will
                                    encode it (names only while not interned);
                                    default RILL_RPC_MAX_FRAME_DEFAULT (match the
                                    codec's) */
};

/* Thread: any. */
void rill_rpc_client_opts_init(struct rill_rpc_client_opts *o);

/* The handler: add it after a client-role codec with a `struct
 * rill_rpc_client_opts *` (or NULL) as its arg. One per channel. */
extern const struct rill_handler rill_rpc_client_handler;

/* Thread: loop thread only (a bootstrap init callback). Add a client-role
 * codec ("rpc-codec") and the client handler ("rpc-client") at the end of
 * @pl. Both option structs may be NULL (defaults) and are copied. Returns 0
 * or the pipeline's error. */
int rill_rpc_client_install(struct rill_pipeline *pl, const struct rill_rpc_codec_opts *codec,
                            const struct rill_rpc_client_opts *client);

/* Thread: any. Start a call of @service/@method on @ch with the payload
 * @req (ownership taken on every path; may be NULL for an empty one).
 * @opts may be NULL. Off the channel's loop the call becomes a task there.
 * Returns 0 and a new reference to the call in *@out (release it), or
 * -EINVAL (names empty or over 255 bytes), -ENOMEM. Errors after that are
 * reported through the future. */
int rill_rpc_call_start(struct rill_channel *ch, const char *service, const char *method,
                        struct rill_buf *req, const struct rill_rpc_call_opts *opts,
                        struct rill_rpc_call **out);

/* Thread: any thread but @ch's loop. Start a call and wait for it (at most
 * @wait_ns, < 0: no limit beyond the call's own timeout). Returns the
 * outcome (0, the status's error, -ETIMEDOUT for @wait_ns) and the call
 * in *@out for its response and status (release it). */
int rill_rpc_call_sync(struct rill_channel *ch, const char *service, const char *method,
                       struct rill_buf *req, const struct rill_rpc_call_opts *opts, int64_t wait_ns,
                       struct rill_rpc_call **out);

/* Thread: any. References. */
struct rill_rpc_call *rill_rpc_call_retain(struct rill_rpc_call *c);
void rill_rpc_call_release(struct rill_rpc_call *c);

/* Thread: any. The call's future, borrowed: valid while you hold the call.
 * Listeners run on the channel's loop. */
struct rill_promise *rill_rpc_call_future(struct rill_rpc_call *c);

/* Thread: any thread but the channel's loop. Wait until the call ends or
 * @timeout_ns passes (< 0: no limit). Returns its outcome as the future's
 * (0 or < 0), or -ETIMEDOUT (the call goes on), -EDEADLK on the loop. */
int rill_rpc_call_wait(struct rill_rpc_call *c, int64_t timeout_ns);

/* Thread: any. Cancel: the call fails with CANCELLED and a CANCEL frame is
 * sent, unless it has ended already. Returns 0, or -EALREADY when it had
 * ended (or was being cancelled). */
int rill_rpc_call_cancel(struct rill_rpc_call *c);

/* Thread: any, once the call has ended (future done; before that these
 * return -EINPROGRESS / NULL). The status (rpc_status.h) and its message
 * (borrowed, NULL when none, valid while you hold the call). */
int rill_rpc_call_status(const struct rill_rpc_call *c);
const char *rill_rpc_call_status_msg(const struct rill_rpc_call *c);

/* Thread: any, once ended. The response payload as a new reference
 * (release it), or NULL (empty, or the call failed). */
struct rill_buf *rill_rpc_call_response(struct rill_rpc_call *c);

/* Thread: any, once ended. A response metadata entry, or NULL. Borrowed:
 * valid while you hold the call. */
const struct rill_rpc_md *rill_rpc_call_response_md(const struct rill_rpc_call *c, const char *key);

/* Thread: any. The request id on the wire (0 before the call reached the
 * loop), the user pointer from the options, and the channel (borrowed). */
uint64_t rill_rpc_call_id(const struct rill_rpc_call *c);
void *rill_rpc_call_user(const struct rill_rpc_call *c);
struct rill_channel *rill_rpc_call_channel(const struct rill_rpc_call *c);

/* Thread: loop thread only. Calls in flight on @ch's client handler (0
 * when it has none). */
size_t rill_rpc_client_in_flight(struct rill_channel *ch);

/* ---- metrics ---- */

/* One client handler's (one channel's) calls since it was added; started =
 * completed + in_flight. Latency runs on the loop's clock (cached per loop
 * iteration) from the handler taking the call to its end, whatever the
 * outcome; the histogram is the server's (rpc_server.h). */
struct rill_rpc_client_stats {
    uint64_t started;                          /* calls the handler took */
    uint64_t completed;                        /* calls that ended, any outcome */
    uint64_t by_status[RILL_RPC_STATUS_COUNT]; /* ends per rill status (local ones
                                                  too: DEADLINE_EXCEEDED, ...) */
    uint64_t other_status;                     /* application statuses */
    uint64_t errors;                           /* ends that were not OK */
    uint64_t in_flight;                        /* sent, not ended */
    uint64_t p50_ns, p99_ns, max_ns;           /* latency; percentiles are bucket
                                                  upper bounds (at most 25% high) */
    uint64_t bytes_in, bytes_out;              /* on the wire, as counted by the
                                                  channel's rpc codec (frames and
                                                  preamble; 0 without a codec) */
};

/* Thread: loop thread only (run a task on the channel's loop to read them
 * from elsewhere). A snapshot of @ch's client handler. Returns 0, or
 * -ENOENT when @ch has no client handler (the stats go with the handler). */
int rill_rpc_client_stats(struct rill_channel *ch, struct rill_rpc_client_stats *out);

#endif /* RILL_RPC_CLIENT_H */
