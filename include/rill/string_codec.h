/* String messages and their codec (Netty's StringDecoder, StringEncoder
 * and LineEncoder).
 *
 * A string message (type RILL_MSG_STRING) holds a byte string and its
 * length in one allocation, always followed by a NUL so it can be used as
 * a C string (it may hold NULs itself when made from bytes). It is a
 * rill_msg: a new one has one reference, owned by its creator; release it
 * with rill_string_release() or rill_msg_release().
 *
 * The string decoder turns each inbound rill_buf (a frame: put a framing
 * decoder in front of it) into one string message; the string encoder
 * turns each outbound string message into a rill_buf, optionally followed
 * by a line separator. Other messages pass through both.
 *
 *     rill_pipeline_add_last(pl, "lines", &rill_line_decoder, NULL);
 *     rill_pipeline_add_last(pl, "text-in", &rill_string_decoder, NULL);
 *     struct rill_string_encoder_config crlf = { .line_sep = RILL_LINE_SEP_CRLF };
 *     rill_pipeline_add_last(pl, "text-out", &rill_string_encoder, &crlf);
 *     ... in a handler: rill_string_printf(&s, "+OK %d", n);
 *                       rill_ctx_write_and_flush(ctx, rill_string_msg(s), NULL);
 *
 * Thread: the functions on string messages run on any thread (as for any
 * rill_msg: one thread at a time uses a message); the handlers run on
 * their channel's loop thread. */
#ifndef RILL_STRING_CODEC_H
#define RILL_STRING_CODEC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "rill/msg.h"

struct rill_handler;

/* All fields are private: use the functions below (the struct is public
 * only so the accessors can be inline). */
struct rill_string {
    struct rill_msg msg; /* first: a string is a rill_msg */
    size_t _len;
    char _data[]; /* _len bytes, then a NUL */
};

/* Thread: any. A string message holding a copy of the C string @s.
 * Returns a new reference in *@out; 0, -EINVAL (NULL @s) or -ENOMEM. */
int rill_string_new(const char *s, struct rill_string **out);

/* Thread: any. A string message holding a copy of @len bytes at @bytes
 * (@bytes may be NULL when @len is 0). Returns a new reference in *@out;
 * 0, -EINVAL or -ENOMEM. */
int rill_string_from_bytes(const void *bytes, size_t len, struct rill_string **out);

/* Thread: any. A string message holding the printf-style formatting of
 * @fmt. Returns a new reference in *@out; 0, -EINVAL (a format error) or
 * -ENOMEM. */
int rill_string_printf(struct rill_string **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int rill_string_vprintf(struct rill_string **out, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Thread: any. The string behind a message, or NULL when @m is not a
 * string message. Borrowed (same reference as @m). */
static inline struct rill_string *rill_string_from_msg(struct rill_msg *m)
{
    return m && m->type == RILL_MSG_STRING ? (struct rill_string *)m : NULL;
}

/* Thread: any. The message header of @s. Borrowed (same reference): pass
 * it to rill_ctx_write and the like to hand the string over. */
static inline struct rill_msg *rill_string_msg(struct rill_string *s)
{
    return &s->msg;
}

/* Thread: any. The bytes, NUL-terminated. Borrowed: valid while @s is. */
static inline const char *rill_string_data(const struct rill_string *s)
{
    return s->_data;
}

/* Thread: any. The length in bytes (without the terminating NUL). */
static inline size_t rill_string_len(const struct rill_string *s)
{
    return s->_len;
}

/* Thread: any. Give back one reference; true when that destroyed @s. */
static inline bool rill_string_release(struct rill_string *s)
{
    return rill_msg_release(&s->msg);
}

/* ---- the handlers ---- */

/* The handlers' configs are copied when they are added, so they may be
 * temporaries (living until rill_pipeline_add_* returns); NULL means all
 * defaults. */

enum rill_line_sep {
    RILL_LINE_SEP_NONE = 0, /* strings are written as they are */
    RILL_LINE_SEP_CRLF = 1, /* each followed by "\r\n" */
    RILL_LINE_SEP_LF = 2,   /* each followed by "\n" */
};

struct rill_string_encoder_config {
    enum rill_line_sep line_sep;
};

/* Writes each outbound string message as a rill_buf of its bytes (plus the
 * separator); other messages pass through. Handler arg: const struct
 * rill_string_encoder_config * (NULL: no separator). -EINVAL for an
 * unknown separator. */
extern const struct rill_handler rill_string_encoder;

struct rill_string_decoder_config {
    /* Reject a buffer that is not valid UTF-8 (overlong forms, surrogates
     * and code points over U+10FFFF are invalid): it is dropped and an
     * exception RILL_EDECODE names the offset of the first bad byte. */
    bool validate_utf8;
    /* After such an error keep the channel open and go on with the next
     * buffer. Default: close the channel, drop later input. */
    bool keep_open_on_error;
};

/* Turns each inbound rill_buf into one string message holding its
 * readable bytes (an empty buffer gives an empty string); other messages
 * pass through. Handler arg: const struct rill_string_decoder_config *
 * (NULL: no validation). */
extern const struct rill_handler rill_string_decoder;

#endif /* RILL_STRING_CODEC_H */
