/* HTTP/1.1 (Netty's codec-http): messages, the server and client codecs,
 * and the aggregator. See docs/http.md for the whole picture.
 *
 * Messages (all rill_msgs, type tags RILL_MSG_HTTP + 0..5):
 *
 *   REQUEST, RESPONSE        a head: start line and headers; content follows
 *   CONTENT                  a piece of the body: a slice of the bytes read
 *                            (never a copy), or what the user writes
 *   LAST_CONTENT             the end of the body, maybe with data and trailers
 *   FULL_REQUEST, FULL_...   head and whole body in one message
 *
 * A message travels as FULL, or as a head, zero or more CONTENTs and one
 * LAST_CONTENT. The decoders emit FULL when the body is empty or already
 * read whole (a GET, a small POST that arrived in one read), the sequence
 * otherwise, so a large body never has to fit in memory; the aggregator
 * turns every sequence into a FULL message. A FULL message is a head and a
 * last content at once: rill_http_request_from_msg() accepts both REQUEST
 * and FULL_REQUEST, rill_http_is_last() is true for LAST_CONTENT and FULL.
 *
 * Handlers:
 *
 *   rill_http_server_codec   request decoder + response encoder
 *   rill_http_client_codec   request encoder + response decoder
 *   rill_http_aggregator     head + contents -> FULL, up to a byte limit
 *
 *   pipeline: head <-> server codec <-> aggregator <-> your handler
 *
 * Ownership follows msg.h: a message read is owned, written is given away.
 * Getters return borrowed pointers valid while the message is referenced
 * (for headers, until they change).
 *
 * Thread: handlers run on the channel's loop thread. Messages belong to
 * one thread at a time (hand them over, don't share them); the functions
 * on messages below are Thread: any (the thread that owns the message). */
#ifndef RILL_HTTP_H
#define RILL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/http_headers.h"
#include "rill/msg.h"

struct rill_buf;
struct rill_handler;

enum {
    RILL_MSG_HTTP_REQUEST = RILL_MSG_HTTP + 0,
    RILL_MSG_HTTP_RESPONSE = RILL_MSG_HTTP + 1,
    RILL_MSG_HTTP_CONTENT = RILL_MSG_HTTP + 2,
    RILL_MSG_HTTP_LAST_CONTENT = RILL_MSG_HTTP + 3,
    RILL_MSG_HTTP_FULL_REQUEST = RILL_MSG_HTTP + 4,
    RILL_MSG_HTTP_FULL_RESPONSE = RILL_MSG_HTTP + 5,
};

enum rill_http_version {
    RILL_HTTP_10 = 10,
    RILL_HTTP_11 = 11,
};

enum rill_http_method {
    RILL_HTTP_OTHER = 0, /* an extension method: see the method string */
    RILL_HTTP_GET,
    RILL_HTTP_HEAD,
    RILL_HTTP_POST,
    RILL_HTTP_PUT,
    RILL_HTTP_DELETE,
    RILL_HTTP_OPTIONS,
    RILL_HTTP_PATCH,
    RILL_HTTP_CONNECT,
    RILL_HTTP_TRACE,
};

/* Facts a decoder found in a head (struct rill_http_message.flags). */
#define RILL_HTTP_F_KEEP_ALIVE      0x01u /* the connection persists after this exchange */
#define RILL_HTTP_F_LENGTH          0x02u /* Content-Length was given: content_length */
#define RILL_HTTP_F_CHUNKED         0x04u /* the body is chunked */
#define RILL_HTTP_F_EXPECT_CONTINUE 0x08u /* request: Expect: 100-continue */
#define RILL_HTTP_F_EXPECT_OTHER    0x10u /* request: an Expect the server cannot meet (417) */
#define RILL_HTTP_F_UNTIL_CLOSE     0x20u /* response: the body ends when the connection does */
#define RILL_HTTP_F_NO_BODY         0x40u /* response: none follows (to HEAD; 1xx, 204, 304) */

/* What requests and responses share. Fields are read-only unless said. */
struct rill_http_message {
    struct rill_msg msg;
    uint8_t version; /* enum rill_http_version; writable (default 1.1) */
    uint8_t _kind;
    uint16_t flags;                    /* RILL_HTTP_F_* (decoded messages) */
    uint64_t content_length;           /* declared length when RILL_HTTP_F_LENGTH */
    struct rill_http_headers headers;  /* writable through rill_http_headers_* */
    struct rill_http_headers trailers; /* FULL messages: trailer fields (usually none) */
    struct rill_buf *body;             /* FULL messages: owned; NULL when empty.
                                          Replace with rill_http_message_set_body */
};

struct rill_http_request {
    struct rill_http_message http;
    const char *method; /* NUL-terminated, valid for the message's life */
    const char *target; /* the request-target as sent: "/path?query", "*", ... */
    uint32_t method_len, target_len;
    enum rill_http_method method_id;
};

struct rill_http_response {
    struct rill_http_message http;
    unsigned status;    /* writable */
    const char *reason; /* decoded: as received; new: NULL (the standard phrase is sent) */
    uint32_t reason_len;
};

struct rill_http_content {
    struct rill_msg msg;               /* RILL_MSG_HTTP_CONTENT or _LAST_CONTENT */
    struct rill_buf *data;             /* owned; NULL or empty for a last content without data */
    struct rill_http_headers trailers; /* last content: trailer fields */
};

/* ---- looking at a message (Thread: any; borrowed results, same reference) ---- */

/* The request of a REQUEST or FULL_REQUEST message, else NULL. */
static inline struct rill_http_request *rill_http_request_from_msg(struct rill_msg *m)
{
    return m && (m->type == RILL_MSG_HTTP_REQUEST || m->type == RILL_MSG_HTTP_FULL_REQUEST)
               ? (struct rill_http_request *)m
               : NULL;
}

/* The response of a RESPONSE or FULL_RESPONSE message, else NULL. */
static inline struct rill_http_response *rill_http_response_from_msg(struct rill_msg *m)
{
    return m && (m->type == RILL_MSG_HTTP_RESPONSE || m->type == RILL_MSG_HTTP_FULL_RESPONSE)
               ? (struct rill_http_response *)m
               : NULL;
}

/* The common part of any request or response (head or full), else NULL. */
static inline struct rill_http_message *rill_http_message_from_msg(struct rill_msg *m)
{
    return m && (m->type == RILL_MSG_HTTP_REQUEST || m->type == RILL_MSG_HTTP_RESPONSE ||
                 m->type == RILL_MSG_HTTP_FULL_REQUEST || m->type == RILL_MSG_HTTP_FULL_RESPONSE)
               ? (struct rill_http_message *)m
               : NULL;
}

/* The content of a CONTENT or LAST_CONTENT message, else NULL. */
static inline struct rill_http_content *rill_http_content_from_msg(struct rill_msg *m)
{
    return m && (m->type == RILL_MSG_HTTP_CONTENT || m->type == RILL_MSG_HTTP_LAST_CONTENT)
               ? (struct rill_http_content *)m
               : NULL;
}

/* True for FULL_REQUEST and FULL_RESPONSE. */
static inline bool rill_http_is_full(const struct rill_msg *m)
{
    return m && (m->type == RILL_MSG_HTTP_FULL_REQUEST || m->type == RILL_MSG_HTTP_FULL_RESPONSE);
}

/* True when @m ends a message: LAST_CONTENT, FULL_REQUEST, FULL_RESPONSE. */
static inline bool rill_http_is_last(const struct rill_msg *m)
{
    return m && (m->type == RILL_MSG_HTTP_LAST_CONTENT || rill_http_is_full(m));
}

/* Bytes of the body of a FULL message (0 for heads and empty bodies). */
size_t rill_http_message_body_len(const struct rill_http_message *m);

/* ---- making messages (Thread: any) ---- */

/* A FULL request (HTTP/1.1, no fields, no body) for @method and @target
 * (copied; @method must be a token, @target visible ASCII without spaces).
 * Returns a new reference in *@out; 0, -EINVAL or -ENOMEM. */
int rill_http_request_new(const char *method, const char *target, struct rill_http_request **out);
/* As rill_http_request_new, a REQUEST head: contents and a last content
 * follow (chunked unless a Content-Length field is set). */
int rill_http_request_new_head(const char *method, const char *target,
                               struct rill_http_request **out);

/* A FULL response (HTTP/1.1, no fields, no body) with @status (100..999).
 * The encoder adds Content-Length for the body unless set. Returns a new
 * reference in *@out; 0, -EINVAL or -ENOMEM. */
int rill_http_response_new(unsigned status, struct rill_http_response **out);
/* As rill_http_response_new, a RESPONSE head: contents and a last content
 * follow (chunked unless a Content-Length field is set, or the request was
 * HTTP/1.0: then the body ends with the connection). */
int rill_http_response_new_head(unsigned status, struct rill_http_response **out);

/* A content (@last false) or last content (true) carrying @data; takes
 * ownership of @data (may be NULL: no data) on every path. Trailers go
 * into the last content's trailers field. Returns a new reference in
 * *@out; 0 or -ENOMEM. */
int rill_http_content_new(struct rill_buf *data, bool last, struct rill_http_content **out);

/* Replace the body of a FULL message with @body (takes ownership, may be
 * NULL); the old one is released. */
void rill_http_message_set_body(struct rill_http_message *m, struct rill_buf *body);
/* Replace the body with a copy of @len bytes at @data (a pooled buffer).
 * Returns 0 or -ENOMEM (the old body stays then). */
int rill_http_message_set_body_copy(struct rill_http_message *m, const void *data, size_t len);

/* ---- names (Thread: any; static strings) ---- */

/* The standard reason phrase of @status ("Not Found"), or "" when unknown. */
const char *rill_http_reason(unsigned status);
/* The method's name ("GET"), or "" for RILL_HTTP_OTHER. */
const char *rill_http_method_name(enum rill_http_method m);

/* ---- the server codec ----
 *
 * Decodes requests and encodes responses. Responses must be written in
 * the order of their requests; pipelined requests are decoded in order
 * (the codec remembers each one's method, version and keep-alive until its
 * response has been written).
 *
 * Responses: the codec adds Content-Length to FULL responses without one,
 * Transfer-Encoding: chunked to HTTP/1.1 heads without a length, and the
 * Connection field the exchange needs. Responses to HEAD, 1xx, 204 and
 * 304 carry no body, whatever was written as one (contents are dropped,
 * their promises succeed). 1xx responses (100 Continue) are interim: the
 * final response follows. After a response that ends the connection (the
 * request said close, HTTP/1.0 without keep-alive, the response says
 * close, or its body ends with the connection) the codec ignores further
 * requests, shuts the output down once the response is written and closes
 * when the peer does, or after linger_ms.
 *
 * Flushing: the codec writes but does not flush user responses. Write in
 * read(), flush in read_complete(): the responses to all the requests of
 * one read (pipelining) leave in one writev.
 *
 * Bad requests: the codec answers them itself (after the responses to the
 * requests before), closes as above, and fires an exception event with
 * the error and a text naming the problem:
 *
 *   request line longer than max_line          414  RILL_ETOOLARGE
 *   header section over max_header_size,
 *     or more than max_headers fields          431  RILL_ETOOLARGE
 *   malformed request line, header or chunk,
 *     bare CR, obs-fold, missing/repeated Host 400  RILL_EPROTO
 *   Content-Length with Transfer-Encoding,
 *     differing or invalid Content-Length,
 *     Transfer-Encoding not ending in chunked  400  RILL_EPROTO
 *   HTTP/2.0 and later request lines           505  RILL_EBADVERSION
 *
 * Add it with a `const struct rill_http_server_config *` as arg (copied in
 * added()), or NULL for the defaults. */
struct rill_http_server_config {
    size_t max_line;        /* request line and chunk-size lines, bytes (8 KiB) */
    size_t max_header_size; /* header section without the request line, bytes (16 KiB);
                               also the trailer section */
    unsigned max_headers;   /* header fields (100); also trailer fields */
    unsigned max_pipelined; /* requests decoded and not yet answered (256); more fails
                               the connection with RILL_ETOOLARGE, without an answer */
    unsigned linger_ms;     /* wait for the peer's close after the last response (2000);
                               0: close as soon as it is written */
};

/* Thread: any. Fill @c with the defaults above. */
void rill_http_server_config_init(struct rill_http_server_config *c);

extern const struct rill_handler rill_http_server_codec;

/* ---- the client codec ----
 *
 * Encodes requests (FULL, or head + contents: Content-Length or chunked as
 * for responses) and decodes responses: it remembers which requests were
 * HEAD (their responses have no body), passes 1xx responses on as FULL
 * responses without a body before the final one, reads bodies delimited by
 * Content-Length, chunked (trailers included) or the connection's end
 * (the last content is emitted when the channel goes inactive or its
 * input shuts down). After 101 Switching Protocols or a successful CONNECT
 * the bytes pass on as rill_bufs. Bad responses fail the channel
 * (exception event with RILL_EPROTO, RILL_ETOOLARGE or RILL_EBADVERSION and
 * a text, then close), as do responses cut off by the connection's end.
 *
 * Add it with a `const struct rill_http_client_config *` as arg (copied),
 * or NULL for the defaults. */
struct rill_http_client_config {
    size_t max_line;        /* status line and chunk-size lines (8 KiB) */
    size_t max_header_size; /* header (and trailer) section (16 KiB) */
    unsigned max_headers;   /* header (and trailer) fields (100) */
};

/* Thread: any. Fill @c with the defaults above. */
void rill_http_client_config_init(struct rill_http_client_config *c);

extern const struct rill_handler rill_http_client_codec;

/* ---- the aggregator ----
 *
 * Turns head + contents into one FULL message whose body holds the
 * contents without copying them (a composite of the slices read), up to
 * max_content bytes. FULL messages pass (checked against the limit), and
 * so does everything else. The head message itself becomes the FULL
 * message (its type changes), with the trailers of the last content.
 *
 * Requests: one that expects 100-continue gets "100 Continue" when its
 * declared length fits, 413 at once when it doesn't; an unknown
 * expectation gets 417. A body over the limit gets 413. Both 413 and 417
 * close the connection after they are written; their request's contents
 * are dropped, and an exception event (RILL_ETOOLARGE, RILL_EPROTO) tells
 * the handlers after. These answers are written at once: with pipelined
 * requests they assume the handler answers in order as they arrive.
 *
 * Responses over the limit fire an exception event with RILL_ETOOLARGE and
 * close the channel.
 *
 * Add it after a codec, with a `const struct rill_http_aggregator_config *`
 * as arg (copied), or NULL for the defaults. */
struct rill_http_aggregator_config {
    size_t max_content; /* body bytes (1 MiB) */
};

/* Thread: any. Fill @c with the defaults above. */
void rill_http_aggregator_config_init(struct rill_http_aggregator_config *c);

extern const struct rill_handler rill_http_aggregator;

#endif /* RILL_HTTP_H */
