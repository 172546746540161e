/* RPC frames and the frame codec: the wire protocol of rill RPC as pipeline
 * messages (docs/rpc-wire.md has the exact byte layout).
 *
 * A client opens a connection with a preamble ("RILL", version, flags, an
 * optional auth token); after it both sides exchange length-prefixed
 * frames. The codec handler (rill_rpc_codec_handler) turns bytes into
 * struct rill_rpc_frame messages and back, and interns service/method names
 * per connection: the first request for a pair carries the names, later
 * ones a small integer. Put it where a framing codec goes:
 *
 *   struct rill_rpc_codec_opts co;       // must outlive the pipeline
 *   rill_rpc_codec_opts_init(&co, RILL_RPC_ROLE_CLIENT);
 *   rill_pipeline_add_last(pl, "rpc-codec", &rill_rpc_codec_handler, &co);
 *   rill_pipeline_add_last(pl, "rpc-client", &rill_rpc_client_handler, NULL);
 *
 * The client role sends the preamble when the channel becomes active (or
 * in front of the first frame, whichever comes first). The server role
 * checks it: a wrong magic, version or flags get a GOAWAY frame naming the
 * problem, an HTTP request gets "HTTP/1.1 400 Bad Request", and the
 * connection is closed once that answer is written. A good preamble is
 * passed on as a struct rill_rpc_preamble message (for the server's auth
 * hook).
 *
 * Decoding errors (malformed frame, frame over the limit: RILL_EPROTO,
 * RILL_ETOOLARGE, RILL_EBADVERSION) fire an exception with a text naming
 * the problem, answer GOAWAY, and close the connection; other connections
 * are not affected. Payloads are slices of the bytes read (no copy);
 * encoding appends payloads without copying them (encoder.h). A frame
 * larger than max_frame fails its write with RILL_ETOOLARGE.
 *
 * Thread: frames are messages (msg.h: one owner at a time, any thread);
 * the codec runs on the channel's loop thread like every handler. */
#ifndef RILL_RPC_FRAME_H
#define RILL_RPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/msg.h"

struct rill_buf;
struct rill_handler;

#define RILL_RPC_MAGIC             "RILL"
#define RILL_RPC_VERSION           1
#define RILL_RPC_PREAMBLE_LEN      8    /* magic, version, flags, auth length */
#define RILL_RPC_AUTH_MAX          1024 /* largest auth token in a preamble */
#define RILL_RPC_HEADER_LEN        14   /* length(4) type(1) flags(1) id(8) */
#define RILL_RPC_NAME_MAX          255  /* service and method names, bytes */
#define RILL_RPC_MAX_FRAME_DEFAULT ((size_t)16 << 20)
#define RILL_RPC_MAX_FRAME_MIN     64
#define RILL_RPC_INTERN_MAX        4096 /* method names one connection may define */

/* Message type tags (msg.h gives rpc RILL_MSG_RPC .. +7). */
enum {
    RILL_MSG_RPC_FRAME = RILL_MSG_RPC,        /* struct rill_rpc_frame */
    RILL_MSG_RPC_PREAMBLE = RILL_MSG_RPC + 1, /* struct rill_rpc_preamble */
};

enum rill_rpc_frame_type {
    RILL_RPC_REQUEST = 1,
    RILL_RPC_RESPONSE = 2,
    RILL_RPC_CANCEL = 3,
    RILL_RPC_PING = 4,
    RILL_RPC_PONG = 5,
    RILL_RPC_GOAWAY = 6,
};

/* Wire flags of a frame. NAMES is the codec's business (interning). */
enum {
    RILL_RPC_F_METADATA = 0x01,
    RILL_RPC_F_NAMES = 0x02,
};

/* One metadata entry: a key (text, 1..65535 bytes) and a value (bytes). */
struct rill_rpc_md {
    const char *key; /* NUL-terminated too */
    uint16_t key_len;
    const uint8_t *val;
    uint32_t val_len;
};

/* A frame. Fields are public for reading; build frames with the functions
 * below so that the frame owns what it points to. */
struct rill_rpc_frame {
    struct rill_msg msg; /* first: a frame is a message */
    uint8_t type;        /* enum rill_rpc_frame_type */
    uint64_t id;         /* request id (GOAWAY: last request id seen) */
    /* REQUEST: names (owned, NUL-terminated) and the time left until the
     * deadline in ns, relative so the clocks need not agree (0: none). */
    char *service;
    char *method;
    uint64_t deadline_ns;
    /* RESPONSE and GOAWAY: status (rpc_status.h) and its message (owned,
     * NULL when empty). */
    uint16_t status;
    char *status_msg;
    /* REQUEST and RESPONSE: metadata (owned). */
    struct rill_rpc_md *md;
    uint16_t nmd;
    /* REQUEST, RESPONSE, PING, PONG: the payload, owned; NULL when empty. */
    struct rill_buf *payload;
};

/* Thread: any. A new frame of @type for request @id with no names, status,
 * metadata or payload. Returns a new reference in *@out; 0, -EINVAL (bad
 * type) or -ENOMEM. */
int rill_rpc_frame_new(enum rill_rpc_frame_type type, uint64_t id, struct rill_rpc_frame **out);

/* Thread: any. Copy the service and method names into @f. Returns 0,
 * -EINVAL (empty, longer than RILL_RPC_NAME_MAX) or -ENOMEM. */
int rill_rpc_frame_set_names(struct rill_rpc_frame *f, const char *service, const char *method);

/* Thread: any. Set the status and copy its message (@msg may be NULL;
 * at most 65535 bytes are kept). Returns 0, -EINVAL (status > 65535) or
 * -ENOMEM. */
int rill_rpc_frame_set_status(struct rill_rpc_frame *f, int status, const char *msg);

/* Thread: any. Append a metadata entry (copies @key and @val). Returns 0,
 * -EINVAL (empty or long key, more than 65535 entries) or -ENOMEM. */
int rill_rpc_frame_add_md(struct rill_rpc_frame *f, const char *key, const void *val,
                          uint32_t val_len);

/* Thread: any. The first value for @key, or NULL (borrowed from @f). */
const struct rill_rpc_md *rill_rpc_frame_md(const struct rill_rpc_frame *f, const char *key);

/* Thread: any. Set the payload: takes ownership of @payload (may be NULL)
 * and releases the one @f had. */
void rill_rpc_frame_set_payload(struct rill_rpc_frame *f, struct rill_buf *payload);

/* Thread: any. Take the payload out of @f: returns the frame's reference
 * (the caller owns it; may be NULL) and leaves @f without one. */
struct rill_buf *rill_rpc_frame_take_payload(struct rill_rpc_frame *f);

/* Thread: any. The frame behind a message, or NULL when @m is not one.
 * Borrowed (same reference). */
static inline struct rill_rpc_frame *rill_rpc_frame_from_msg(struct rill_msg *m)
{
    return m && m->type == RILL_MSG_RPC_FRAME ? (struct rill_rpc_frame *)m : NULL;
}

/* Thread: any. Release helper. */
static inline void rill_rpc_frame_release(struct rill_rpc_frame *f)
{
    rill_msg_release(&f->msg);
}

/* Thread: any. The bytes after the length field this frame takes on the
 * wire when its names are sent in full (the largest form; the codec's
 * limit applies to the actual form, which is never larger). */
size_t rill_rpc_frame_wire_size(const struct rill_rpc_frame *f);

/* Thread: any. "REQUEST", "RESPONSE", ... or "?". */
const char *rill_rpc_frame_type_name(int type);

/* The preamble a server-role codec passes on once it has checked it. */
struct rill_rpc_preamble {
    struct rill_msg msg;
    uint8_t version;
    uint8_t flags;
    uint16_t auth_len;
    uint8_t auth[]; /* auth_len bytes, then a NUL */
};

/* Thread: any. The preamble behind a message, or NULL. Borrowed. */
static inline struct rill_rpc_preamble *rill_rpc_preamble_from_msg(struct rill_msg *m)
{
    return m && m->type == RILL_MSG_RPC_PREAMBLE ? (struct rill_rpc_preamble *)m : NULL;
}

/* ---- the codec handler ---- */

enum rill_rpc_role {
    RILL_RPC_ROLE_CLIENT = 0, /* sends the preamble */
    RILL_RPC_ROLE_SERVER = 1, /* expects and checks it */
};

struct rill_rpc_codec_opts {
    enum rill_rpc_role role;
    size_t max_frame; /* largest frame in either direction (bytes after the
                         length field); default RILL_RPC_MAX_FRAME_DEFAULT */
    const void *auth; /* client: token sent in the preamble (copied at add) */
    size_t auth_len;  /* <= RILL_RPC_AUTH_MAX */
    uint8_t version;  /* client: version to announce (tests); default 1 */
    uint8_t flags;    /* client: preamble flags; none are defined in v1 */
};

/* Thread: any. Defaults for @role. */
void rill_rpc_codec_opts_init(struct rill_rpc_codec_opts *o, enum rill_rpc_role role);

/* The codec: add it with a `struct rill_rpc_codec_opts *` as its arg (read
 * and copied when added; NULL: client defaults). added() fails with -EINVAL
 * for options out of range. */
extern const struct rill_handler rill_rpc_codec_handler;

/* Thread: loop thread only. Build the GOAWAY frame a codec or handler sends
 * before closing (status and message) and write it from @ctx toward the
 * head; the channel is closed with @reason (< 0) once the write is done
 * (or has failed). Used by the codec and the server handler. */
struct rill_ctx;
void rill_rpc_goaway_and_close(struct rill_ctx *ctx, int status, const char *msg, int reason);

#endif /* RILL_RPC_FRAME_H */
