/* Private to codec/http: character classes, message allocation, head
 * scanning and parsing, body decoding and encoding shared by the server
 * and client codecs. */
#ifndef RILL_CODEC_HTTP_INTERNAL_H
#define RILL_CODEC_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/decoder.h"
#include "rill/http.h"

struct rill_buf;
struct rill_encoder_ops;

/* ---- character classes (RFC 9110 5.6.2 tchar; field-value bytes) ---- */

extern const uint8_t rill__http_tchar[256]; /* 1 for token characters */
extern const uint8_t rill__http_vchar[256]; /* 1 for HTAB, SP, VCHAR, obs-text */

static inline char rill__http_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* The first byte in [p, end) that may not appear in a field value (a
 * control byte other than HTAB, or DEL), or @end. Eight bytes at a time
 * while none is below 0x20 or DEL; byte by byte from a word that may hold
 * one. */
static inline const char *rill__http_value_end(const char *p, const char *end)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x;
        __builtin_memcpy(&x, p, 8);
        uint64_t del = x ^ (0x7f * ones);
        if (((x - 0x20 * ones) & ~x & high) | ((del - ones) & ~del & high))
            break;
        p += 8;
    }
    while (p < end && rill__http_vchar[(uint8_t)*p])
        p++;
    return p;
}

/* Case-insensitive equality of @n bytes of @a with the lower-case @lit. */
static inline bool rill__http_name_is(const char *a, size_t n, const char *lit, size_t litn)
{
    if (n != litn)
        return false;
    for (size_t i = 0; i < n; i++)
        if (rill__http_lower(a[i]) != lit[i])
            return false;
    return true;
}

/* Calls `fn(arg, element, len)` for each element of a comma-separated
 * list, trimmed of SP/HTAB, empty elements skipped. Stops when fn returns
 * false; returns false then. */
bool rill__http_each_token(const char *v, size_t n,
                           bool (*fn)(void *arg, const char *t, size_t len), void *arg);

/* ---- errors with the status the server answers ---- */

struct rill__http_err {
    int err;         /* RILL_E* */
    unsigned status; /* 400, 414, 431, 505; 0: no answer */
    char why[120];
};

int rill__http_errf(struct rill__http_err *e, int err, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct rill__http_limits {
    size_t max_line;
    size_t max_header_size;
    unsigned max_headers;
};

/* ---- messages ---- */

/* Headers over inline storage (nothing malloc'd yet). */
void rill__http_headers_init_inline(struct rill_http_headers *h, struct rill__http_hent *ent,
                                    uint32_t ent_cap, char *text, uint32_t text_cap);
/* Append an entry whose name and value already sit in the text block. */
void rill__http_headers_push(struct rill_http_headers *h, uint32_t name, uint32_t name_len,
                             uint32_t value, uint32_t value_len);

/* A decoded request or response: one allocation holding the message, room
 * for @nent entries and @text bytes (the head, copied by the caller at
 * *text_out). Type @type; refcount 1. NULL on ENOMEM. */
struct rill_http_request *rill__http_request_alloc(uint16_t type, uint32_t nent, size_t text,
                                                   char **text_out);
struct rill_http_response *rill__http_response_alloc(uint16_t type, uint32_t nent, size_t text,
                                                     char **text_out);
/* A last content with room for @nent trailer entries and @text bytes. */
struct rill_http_content *rill__http_last_alloc(uint32_t nent, size_t text, char **text_out);

/* enum rill_http_method of a method token. */
enum rill_http_method rill__http_method_id(const char *m, size_t n);

/* ---- scanning a head (start line + fields, or a trailer section) ----
 *
 * Finds the end of a head incrementally: each call resumes where the last
 * one stopped, so no byte is searched twice across reads. Offsets are from
 * the buffer's reader index. */
struct rill__http_scan {
    size_t pos;     /* where the next line starts */
    size_t search;  /* where the search for its '\n' resumes */
    size_t first;   /* length of the start line (0 for trailers) */
    uint32_t lines; /* complete lines so far, start line included */
};

/* Returns 1 when the head is complete (sc->pos is its length, sc->lines
 * its line count without the empty line), 0 when more bytes are needed,
 * or < 0 with @e filled when a limit is crossed (414 for the start line
 * when @request, 431 for the field section). @start: a start line comes
 * first. */
int rill__http_scan(struct rill__http_scan *sc, const struct rill_buf *in,
                    const struct rill__http_limits *lim, bool start, bool request,
                    struct rill__http_err *e);

/* What the framing fields of a head said. */
struct rill__http_framing {
    uint64_t length;
    uint32_t length_n; /* Content-Length list elements seen */
    uint8_t has_length, length_bad, length_differs;
    uint8_t te, te_chunked_last, te_chunked_count;
    uint8_t close, keep_alive, upgrade;
    uint8_t expect_continue, expect_other;
    uint8_t hosts;
};

/* Parse the field lines at @t (@len bytes, ending with the empty line) in
 * place into @h (entries must have room for one per line); offsets are
 * taken from @base, the start of @h's text block. @fr (may be NULL)
 * collects the framing fields. Returns 0 or < 0 with @e filled (400). */
int rill__http_parse_fields(char *base, char *t, size_t len, struct rill_http_headers *h,
                            struct rill__http_framing *fr, struct rill__http_err *e);

/* Copy the first @hlen readable bytes of @in into @t and NUL-terminate
 * them (@t has room for @hlen + 1); @in's indices don't move. */
void rill__http_copy_head(const struct rill_buf *in, size_t hlen, char *t);

/* Decode the complete request head that @sc found at @in's reader index
 * into a new REQUEST message (the bytes are not consumed from @in).
 * Returns 0 and *@out, or < 0 with @e filled. */
int rill__http_decode_request(const struct rill_buf *in, const struct rill__http_scan *sc,
                              struct rill_http_request **out, struct rill__http_framing *fr,
                              struct rill__http_err *e);
/* The same for a response head. */
int rill__http_decode_response(const struct rill_buf *in, const struct rill__http_scan *sc,
                               struct rill_http_response **out, struct rill__http_framing *fr,
                               struct rill__http_err *e);

/* ---- decoding a body ---- */

enum {
    RILL__BODY_NONE = 0,
    RILL__BODY_LENGTH,
    RILL__BODY_CHUNK_SIZE,
    RILL__BODY_CHUNK_DATA,
    RILL__BODY_CHUNK_END,
    RILL__BODY_TRAILERS,
    RILL__BODY_UNTIL_CLOSE,
};

struct rill__http_body {
    uint8_t st;
    uint64_t remaining; /* LENGTH: body bytes left; CHUNK_DATA: chunk bytes left */
    struct rill__http_scan scan;
};

/* Decode from @in: emits at most one content or last content through @d
 * per call. Returns 1 when the last content was emitted (the body is
 * done, st is NONE), 0 after progress or when more bytes are needed, or
 * < 0 with @e filled (400 for bad chunk framing, 431 for trailers). */
int rill__http_body_decode(struct rill__http_body *b, struct rill_decoder *d, struct rill_buf *in,
                           const struct rill__http_limits *lim, struct rill__http_err *e);

/* Emit the end of an UNTIL_CLOSE body (at the input's end). 0 or -ENOMEM. */
int rill__http_body_finish(struct rill__http_body *b, struct rill_decoder *d);

/* ---- encoding ---- */

enum {
    RILL__ENC_NONE = 0, /* no message body being written */
    RILL__ENC_LENGTH,   /* Content-Length: count what passes */
    RILL__ENC_CHUNKED,  /* frame every piece as a chunk */
    RILL__ENC_RAW,      /* until the connection closes */
    RILL__ENC_DROP,     /* no body allowed: drop contents */
};

/* How the head being encoded is written (decided by the codec). */
struct rill__http_plan {
    uint64_t length;     /* Content-Length to add when add_length */
    bool add_length;     /* no Content-Length from the user: add one */
    bool add_chunked;    /* add Transfer-Encoding: chunked */
    bool add_close;      /* add Connection: close (the user's Connection fields are left out) */
    bool add_keep_alive; /* add Connection: keep-alive */
    bool with_body;      /* FULL: the body follows the head */
    bool body_as_chunks; /* FULL with the user's Transfer-Encoding: chunked */
};

/* The body framing state of the message being written. */
struct rill__http_enc {
    uint8_t mode;
    bool need_crlf; /* CHUNKED: the previous chunk's data still needs its CRLF */
    uint64_t remaining;
    struct rill__http_plan plan;
};

/* What the user put in a head's framing fields. */
struct rill__http_user_framing {
    bool has_length, length_bad, has_te, te_chunked, close, keep_alive;
    uint64_t length;
};
void rill__http_user_framing(const struct rill_http_headers *h, struct rill__http_user_framing *u);

/* Bytes the head of @m needs at most (a size hint). */
size_t rill__http_head_size(const struct rill_http_message *m, const struct rill__http_plan *plan);

/* Encode the head of @m (and for plan->with_body its body, through
 * rill_encoder_append) into *@out. @enc gets the chunk state when the body
 * goes out as chunks. Returns 0 or < 0. */
int rill__http_encode_head(struct rill_buf **out, struct rill_msg *m,
                           const struct rill__http_plan *plan, struct rill__http_enc *enc);

/* Encode @data (borrowed; may be NULL) as the next chunk into *@out and,
 * when @last, the last chunk with @trailers (may be NULL). 0 or < 0. */
int rill__http_encode_chunk(struct rill_buf **out, struct rill__http_enc *enc,
                            struct rill_buf *data, bool last,
                            const struct rill_http_headers *trailers);

/* Write the "[CRLF] size CRLF" line for @n bytes into *@out. */
int rill__http_chunk_prefix(struct rill_buf *out, struct rill__http_enc *enc, uint64_t n);

/* ---- the start of both codecs' state ---- */

/* The decoder base first (it finds itself at the start of the handler
 * state), then the body framing of the message being written, where the
 * shared encoder ops below find it. */
struct rill__http_codec {
    struct rill_decoder dec;
    struct rill__http_enc enc;
};

/* Encoder ops for a handler whose state starts with struct
 * rill__http_codec, written through rill_encoder_write(). head: a request
 * or response head by enc.plan (and, for plan.with_body, the body of a
 * full message). chunk: a content or a raw buffer as the next chunk, the
 * last one for a last content. */
extern const struct rill_encoder_ops rill__http_head_ops;
extern const struct rill_encoder_ops rill__http_chunk_ops;

#endif /* RILL_CODEC_HTTP_INTERNAL_H */
