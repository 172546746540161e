/* Redis RESP2 and RESP3: a value model, a decoder on the decoder base, a
 * tree encoder, and reply helpers that write straight into a buffer.
 *
 * Values. A decoded value is one message (struct rill_resp, type tag
 * RILL_MSG_RESP) holding its whole tree as an array of nodes in pre-order:
 * vals[0] is the root, an aggregate's children follow it, each subtree is
 * contiguous (an aggregate's `span` counts the nodes of its subtree). Strings
 * are (ptr, len) views of the bytes that were read: the message keeps one
 * reference to the input storage, nothing is copied. A command (an array of
 * bulk strings, the hot case) therefore costs one allocation and one
 * retained reference; rill_resp_arg() reads argument i in O(1).
 *
 *     *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n
 *     vals: [ARRAY n=3 span=4] [BULK "SET"] [BULK "k"] [BULK "v"]
 *
 * Nulls (RESP2 "$-1" and "*-1", RESP3 "_") are RILL_RESP_NULL; the flags say
 * which form arrived so a proxy can re-encode it as it came. A RESP3
 * attribute ("|") is a node of type RILL_RESP_ATTR wrapping the value it
 * annotates: its children are the key/value pairs followed by that value
 * (rill_resp_unwrap skips it); inside an aggregate it takes the place of
 * that one element.
 *
 * Ownership follows msg.h: a decoded message is a new reference passed down
 * the pipeline; release it with rill_resp_release() (or rill_msg_release).
 * Node pointers and string pointers are borrowed from the message: valid
 * while you hold a reference. rill_resp_buf() gives a string as a rill_buf
 * that keeps the message alive on its own.
 *
 * Thread: a message belongs to one thread at a time (msg.h); the functions
 * that only read a value or write into a buffer the caller owns are
 * "Thread: any". The codec handler's functions are loop thread only. */
#ifndef RILL_RESP_H
#define RILL_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/decoder.h"
#include "rill/msg.h"

struct rill_buf;
struct rill_ctx;
struct rill_handler;

/* The type byte of each RESP type. */
enum rill_resp_type {
    RILL_RESP_SIMPLE = '+',     /* simple string */
    RILL_RESP_ERROR = '-',      /* simple error */
    RILL_RESP_INT = ':',        /* 64-bit integer */
    RILL_RESP_BULK = '$',       /* bulk string */
    RILL_RESP_ARRAY = '*',      /* array */
    RILL_RESP_NULL = '_',       /* RESP3 null, RESP2 null bulk and null array */
    RILL_RESP_BOOL = '#',       /* RESP3 boolean: i is 0 or 1 */
    RILL_RESP_DOUBLE = ',',     /* RESP3 double: d (inf, -inf, nan included) */
    RILL_RESP_BIGNUM = '(',     /* RESP3 big number: the digits as a string */
    RILL_RESP_BLOB_ERROR = '!', /* RESP3 bulk error */
    RILL_RESP_VERBATIM = '=',   /* RESP3 verbatim string: fmt + content */
    RILL_RESP_MAP = '%',        /* RESP3 map: n = 2 x pairs (key, value, ...) */
    RILL_RESP_SET = '~',        /* RESP3 set */
    RILL_RESP_ATTR = '|',       /* RESP3 attribute: pairs, then the value it annotates */
    RILL_RESP_PUSH = '>',       /* RESP3 push */
};

/* Node flags. */
#define RILL_RESP_F_NULL_BULK  0x01u /* a NULL that arrived as RESP2 "$-1" */
#define RILL_RESP_F_NULL_ARRAY 0x02u /* a NULL that arrived as RESP2 "*-1" */
#define RILL_RESP_F_FLAT       0x04u /* aggregate whose children are all scalars: at(i) is O(1) */
#define RILL_RESP_F_INLINE     0x08u /* root of a command that arrived as an inline line */

/* One value. Read-only for users of decoded messages; builders fill them
 * (see rill_resp_new). */
struct rill_resp_val {
    uint8_t type;  /* enum rill_resp_type */
    uint8_t flags; /* RILL_RESP_F_* */
    uint16_t _pad;
    union {
        uint32_t n;  /* aggregates: number of child values (maps: 2 per pair; attributes:
                        2 per pair + 1 for the annotated value) */
        char fmt[4]; /* verbatim strings: the format ("txt", "mkd"), NUL-terminated */
    };
    size_t len; /* strings: byte count; aggregates: span (nodes in the subtree, self
                   included) */
    union {
        const char *str; /* SIMPLE, ERROR, BULK, BIGNUM, BLOB_ERROR, VERBATIM (content) */
        int64_t i;       /* INT, BOOL */
        double d;        /* DOUBLE */
    };
};

/* A RESP value message. */
struct rill_resp {
    struct rill_msg msg;    /* first: a rill_resp is a rill_msg (type RILL_MSG_RESP) */
    struct rill_buf *_hold; /* private: the storage the strings point into, or NULL */
    uint32_t nvals;         /* nodes in vals */
    uint32_t _cap;          /* private: bytes of builder storage after vals */
    struct rill_resp_val vals[];
};

/* ---- reading values (Thread: any, for each function in this section) ---- */

/* The value behind a message, or NULL when @m is not a RESP message.
 * Borrowed (same reference as @m). */
static inline struct rill_resp *rill_resp_from_msg(struct rill_msg *m)
{
    return m && m->type == RILL_MSG_RESP ? (struct rill_resp *)m : NULL;
}

/* Give back one reference (NULL is a no-op). */
static inline void rill_resp_release(struct rill_resp *r)
{
    if (r)
        rill_msg_release(&r->msg);
}

/* The root value. Borrowed, valid while @r is referenced. */
static inline const struct rill_resp_val *rill_resp_root(const struct rill_resp *r)
{
    return &r->vals[0];
}

static inline bool rill_resp_is_aggregate(const struct rill_resp_val *v)
{
    switch (v->type) {
    case RILL_RESP_ARRAY:
    case RILL_RESP_MAP:
    case RILL_RESP_SET:
    case RILL_RESP_ATTR:
    case RILL_RESP_PUSH:
        return true;
    default:
        return false;
    }
}

static inline bool rill_resp_is_string(const struct rill_resp_val *v)
{
    switch (v->type) {
    case RILL_RESP_SIMPLE:
    case RILL_RESP_ERROR:
    case RILL_RESP_BULK:
    case RILL_RESP_BIGNUM:
    case RILL_RESP_BLOB_ERROR:
    case RILL_RESP_VERBATIM:
        return true;
    default:
        return false;
    }
}

/* The value after @v's subtree (its next sibling when @v is not the last
 * child). Borrowed. */
static inline const struct rill_resp_val *rill_resp_next(const struct rill_resp_val *v)
{
    return v + (rill_resp_is_aggregate(v) ? v->len : 1);
}

/* Child @i of aggregate @v (i < v->n): O(1) when the children are scalars
 * (RILL_RESP_F_FLAT), else a walk over the earlier siblings. Borrowed. */
static inline const struct rill_resp_val *rill_resp_at(const struct rill_resp_val *v, size_t i)
{
    const struct rill_resp_val *c = v + 1;
    if (v->flags & RILL_RESP_F_FLAT)
        return c + i;
    while (i--)
        c = rill_resp_next(c);
    return c;
}

/* The value an attribute annotates (the value itself when it has none). */
static inline const struct rill_resp_val *rill_resp_unwrap(const struct rill_resp_val *v)
{
    while (v->type == RILL_RESP_ATTR)
        v = rill_resp_at(v, v->n - 1);
    return v;
}

/* Commands: the number of arguments of a root array (0 for anything
 * else), and argument @i (< argc) as bytes and length. A command decoded
 * in command mode is always an array of bulk strings (RILL_RESP_F_FLAT).
 * Borrowed, valid while @r is referenced; not NUL-terminated. */
static inline size_t rill_resp_argc(const struct rill_resp *r)
{
    return r->vals[0].type == RILL_RESP_ARRAY ? r->vals[0].n : 0;
}
static inline const char *rill_resp_arg(const struct rill_resp *r, size_t i, size_t *len)
{
    const struct rill_resp_val *v = rill_resp_at(&r->vals[0], i);
    *len = v->len;
    return v->str;
}

/* Thread: any. The @len bytes at @s as a 64-bit integer, by Redis's rules
 * (string2ll): an optional '-', then digits without leading zeros; no
 * spaces, no '+'. Returns 0 with *@out set, or -EINVAL when @s is not
 * such a number or does not fit (*@out is left alone). */
int rill_resp_parse_i64(const char *s, size_t len, int64_t *out);

/* Thread: any. String value @v of @r as a read-only rill_buf without a
 * copy: the buffer keeps @r alive (it takes a reference of its own).
 * Returns a new reference in *@out; 0, -EINVAL (@v holds no string) or
 * -ENOMEM. */
int rill_resp_buf(struct rill_resp *r, const struct rill_resp_val *v, struct rill_buf **out);

/* ---- building values (Thread: any) ---- */

/* A message with @nvals zeroed nodes and @nbytes of storage of its own
 * (rill_resp_storage), one allocation. Fill the nodes in pre-order (type,
 * n for aggregates, str/len, i or d) and seal it. New reference in *@out;
 * 0, -EINVAL (nvals 0 or too many) or -ENOMEM. */
int rill_resp_new(size_t nvals, size_t nbytes, struct rill_resp **out);
/* The @nbytes of storage of a message from rill_resp_new. Borrowed. */
char *rill_resp_storage(struct rill_resp *r);
/* Check the shape (children counts use up exactly nvals nodes, maps and
 * attributes have whole pairs, strings have a pointer when len > 0) and
 * compute spans and flags. Returns 0 or -EINVAL. */
int rill_resp_seal(struct rill_resp *r);
/* A command: an array of @argc bulk strings copied from @argv (@lens may
 * be NULL for NUL-terminated strings). New reference; 0, -EINVAL, -ENOMEM. */
int rill_resp_command(size_t argc, const char *const *argv, const size_t *lens,
                      struct rill_resp **out);

/* ---- encoding ---- */

/* Thread: any (the caller owns *@out). Append value @v of @r in protocol
 * @proto (2 or 3) to *@out. RESP2 degrades as Redis does: maps and
 * attributes' pairs flatten (maps to arrays of 2n, attributes are
 * dropped), sets and pushes become arrays, booleans integers, doubles,
 * big numbers and verbatim strings bulk strings, blob errors simple
 * errors, nulls "$-1" (or "*-1" when the null came as one). Bulk strings of
 * RILL_RESP_ZERO_COPY_MIN bytes or more are added without copying
 * (rill_resp_buf: *@out may become a composite and retain @r). Returns 0,
 * -EINVAL (bad @proto or node) or -ENOMEM. */
int rill_resp_encode(struct rill_buf **out, struct rill_resp *r, const struct rill_resp_val *v,
                     int proto);
#define RILL_RESP_ZERO_COPY_MIN (16u * 1024u)

/* Reply helpers: write one RESP element into @out (grown as needed) without
 * building a tree. Thread: any (the caller owns @out). Each returns 0 or
 * the error of the buffer write (-ENOMEM, -ENOBUFS). Helpers that take
 * @proto write the RESP2 form for proto 2 and the RESP3 form for 3.
 * Strings given to simple strings and errors must not hold CR or LF (they
 * are replaced by spaces, as Redis does for errors). */
int rill_resp_put_simple(struct rill_buf *out, const char *s, size_t len); /* "+s" */
int rill_resp_put_error(struct rill_buf *out, const char *s, size_t len);  /* "-s" */
int rill_resp_put_errorf(struct rill_buf *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int rill_resp_put_int(struct rill_buf *out, int64_t v);
int rill_resp_put_bulk(struct rill_buf *out, const void *p, size_t len);
/* "$len\r\n" only: the caller writes the @len bytes and then "\r\n"
 * (rill_resp_put_crlf), e.g. straight from a file or a value store. */
int rill_resp_put_bulk_header(struct rill_buf *out, size_t len);
int rill_resp_put_crlf(struct rill_buf *out);
/* A bulk string holding the readable bytes of @b; takes ownership of @b.
 * Large ones (RILL_RESP_ZERO_COPY_MIN and up) are not copied: *@out becomes
 * a composite that references @b (rill_encoder_append). */
int rill_resp_put_bulk_buf(struct rill_buf **out, struct rill_buf *b);
int rill_resp_put_null(struct rill_buf *out, int proto);       /* "$-1" / "_" */
int rill_resp_put_null_array(struct rill_buf *out, int proto); /* "*-1" / "_" */
/* The header of an aggregate of @n elements (@t: ARRAY, SET, PUSH, MAP or
 * ATTR; for MAP and ATTR @n counts pairs). RESP2: maps become arrays of 2n,
 * sets and pushes arrays; an attribute header returns -EINVAL (RESP2 has
 * none). */
int rill_resp_put_agg(struct rill_buf *out, int proto, enum rill_resp_type t, size_t n);
int rill_resp_put_bool(struct rill_buf *out, int proto, bool v);     /* "#t" / ":1" */
int rill_resp_put_double(struct rill_buf *out, int proto, double v); /* "," / bulk */
int rill_resp_put_bignum(struct rill_buf *out, int proto, const char *digits, size_t len);
int rill_resp_put_verbatim(struct rill_buf *out, int proto, const char fmt[3], const void *p,
                           size_t len);
int rill_resp_put_blob_error(struct rill_buf *out, int proto, const void *p, size_t len);

/* ---- the codec handler ---- */

enum rill_resp_mode {
    /* Any RESP2/RESP3 value (a client reading replies, a proxy). */
    RILL_RESP_MODE_ANY = 0,
    /* A server reading commands, as Redis does: arrays of bulk strings, or
     * inline commands (a line of space-separated words, quotes as
     * redis-cli); "*0" and empty lines are skipped. */
    RILL_RESP_MODE_COMMANDS = 1,
};

struct rill_resp_config {
    enum rill_resp_mode mode;
    int proto;             /* protocol of RESP messages written through the codec: 2
                              (default) or 3; change it with rill_resp_set_proto */
    uint32_t max_depth;    /* nesting limit; 0: 32 (RILL_ETOOLARGE beyond) */
    uint32_t max_elements; /* elements per aggregate; 0: 1 Mi (RILL_ETOOLARGE) */
    uint64_t max_bulk;     /* bulk string bytes; 0: 512 MiB, redis's proto-max-bulk-len */
    uint32_t max_line;     /* line bytes (headers, simple strings, inline commands);
                              0: 64 KiB, redis's PROTO_INLINE_MAX_SIZE */
    /* Commands mode: don't write "-ERR Protocol error: ..." before closing
     * on bad input (Redis writes it; so does the codec by default). */
    bool no_error_reply;
    /* Base options; max_cumulation 0 means max_bulk + 1 MiB (a whole bulk
     * string must fit). keep_open_on_error is ignored: a RESP stream
     * cannot resynchronise after bad input. */
    struct rill_decoder_options dec;
};

/* The RESP codec: decodes inbound bytes into struct rill_resp messages and
 * encodes RESP messages written through it (other messages, such as
 * rill_bufs from the reply helpers, pass untouched). Add it with a `const
 * struct rill_resp_config *` arg (copied in added(); NULL: defaults).
 * Bad input fails the stream with RILL_EDECODE (malformed) or
 * RILL_ETOOLARGE (a limit), with Redis's text ("Protocol error: invalid
 * bulk length"), and the channel closes. */
extern const struct rill_handler rill_resp_codec;

/* Thread: loop thread only. Switch the protocol RESP messages are encoded
 * in (HELLO 3); @codec_ctx is the codec's context (rill_pipeline_get; the
 * functions taking one check a mark in its state, so pass no other
 * handler's context). Returns 0 or -EINVAL (bad proto, not a codec). */
int rill_resp_set_proto(struct rill_ctx *codec_ctx, int proto);
/* Thread: loop thread only. The protocol in force, or -EINVAL. */
int rill_resp_get_proto(struct rill_ctx *codec_ctx);

/* Thread: loop thread only. The connection's reply buffer, for the reply
 * helpers: a server appends every reply of one read batch here and the
 * codec writes them as one buffer and flushes when the batch ends
 * (read_complete), before anything else written through it, and before the
 * "-ERR Protocol error" reply of bad input, so replies keep request order.
 * The buffer may be replaced (rill_resp_put_bulk_buf), hence the pointer to
 * the slot. Borrowed: valid until the codec writes it (the end of the
 * batch, a write or flush through the codec, rill_resp_flush). NULL when
 * out of memory or @codec_ctx is not a RESP codec. */
struct rill_buf **rill_resp_out(struct rill_ctx *codec_ctx);
/* Thread: loop thread only. Write what rill_resp_out holds and flush the
 * channel (replies completed outside a read batch, e.g. by another loop). */
void rill_resp_flush(struct rill_ctx *codec_ctx);

#endif /* RILL_RESP_H */
