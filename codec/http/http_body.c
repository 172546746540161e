/* Bodies on the way in: Content-Length, chunked (extensions ignored,
 * trailers kept) and until-close. Every piece of data is a slice of the
 * bytes read, never a copy; one content message per decode call. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http/http_internal.h"
#include "rill/buf.h"
#include "rill/decoder.h"
#include "rill/error.h"

static int emit_data(struct rill__http_body *b, struct rill_decoder *d, struct rill_buf *in,
                     size_t k, bool last, struct rill__http_err *e)
{
    struct rill_buf *data = NULL;
    if (k && rill_buf_read_slice(in, k, &data) != 0)
        return rill__http_errf(e, -ENOMEM, 0, "no memory for a body slice");
    struct rill_http_content *c;
    if (rill_http_content_new(data, last, &c) != 0)
        return rill__http_errf(e, -ENOMEM, 0, "no memory for a content message");
    rill_decoder_emit(d, &c->msg);
    if (last)
        b->st = RILL__BODY_NONE;
    return last ? 1 : 0;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A chunk-size line without its '\n': size [BWS] [; extensions] [CR]. */
static int chunk_size(const uint8_t *p, size_t n, uint64_t *size, struct rill__http_err *e)
{
    if (n && p[n - 1] == '\r')
        n--;
    size_t i = 0;
    uint64_t v = 0;
    int h;
    while (i < n && (h = hexval(p[i])) >= 0) {
        if (v > (UINT64_MAX >> 4))
            return rill__http_errf(e, RILL_EPROTO, 400, "chunk size too large");
        v = (v << 4) | (uint64_t)h;
        i++;
    }
    if (i == 0)
        return rill__http_errf(e, RILL_EPROTO, 400, "malformed chunk size");
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i < n && p[i] != ';')
        return rill__http_errf(e, RILL_EPROTO, 400, "malformed chunk size");
    for (; i < n; i++) /* extensions: ignored, but no control bytes */
        if (!rill__http_vchar[p[i]])
            return rill__http_errf(e, RILL_EPROTO, 400, "%s in a chunk extension",
                                   p[i] == '\r' ? "bare CR" : "bad byte");
    *size = v;
    return 0;
}

static int chunk_line(struct rill__http_body *b, struct rill_buf *in,
                      const struct rill__http_limits *lim, struct rill__http_err *e)
{
    size_t n, rd = rill_buf_reader_index(in);
    const uint8_t *p = rill_buf_read_ptr(in, &n);
    if (!p)
        n = rill_buf_readable(in);
    ssize_t nl = -1;
    if (b->scan.search < n) {
        if (p) {
            const uint8_t *q = memchr(p + b->scan.search, '\n', n - b->scan.search);
            nl = q ? q - p : -1;
        } else {
            nl = rill_buf_index_of(in, rd + b->scan.search, rd + n, '\n');
            if (nl >= 0)
                nl -= (ssize_t)rd;
        }
    }
    if (nl < 0) {
        b->scan.search = n;
        if (n > lim->max_line + 1)
            return rill__http_errf(e, RILL_EPROTO, 400, "chunk-size line longer than %zu bytes",
                                   lim->max_line);
        return 0;
    }
    if ((size_t)nl > lim->max_line + 1)
        return rill__http_errf(e, RILL_EPROTO, 400, "chunk-size line longer than %zu bytes",
                               lim->max_line);
    uint8_t *copy = NULL;
    if (!p) { /* the line spans components: look at a copy */
        copy = malloc((size_t)nl + 1);
        if (!copy)
            return rill__http_errf(e, -ENOMEM, 0, "no memory for a chunk-size line");
        rill_buf_get_bytes(in, rd, copy, (size_t)nl);
        p = copy;
    }
    uint64_t size;
    int err = chunk_size(p, (size_t)nl, &size, e);
    free(copy);
    if (err)
        return err;
    rill_buf_skip(in, (size_t)nl + 1);
    b->scan = (struct rill__http_scan){ 0 };
    if (size == 0) {
        b->st = RILL__BODY_TRAILERS;
    } else {
        b->st = RILL__BODY_CHUNK_DATA;
        b->remaining = size;
    }
    return 0;
}

static int chunk_end(struct rill__http_body *b, struct rill_buf *in, struct rill__http_err *e)
{
    size_t n = rill_buf_readable(in), rd = rill_buf_reader_index(in);
    uint8_t c0 = 0, c1 = 0;
    if (n == 0)
        return 0;
    rill_buf_get_u8(in, rd, &c0);
    if (c0 == '\n') {
        rill_buf_skip(in, 1);
    } else if (c0 == '\r') {
        if (n < 2)
            return 0;
        rill_buf_get_u8(in, rd + 1, &c1);
        if (c1 != '\n')
            return rill__http_errf(e, RILL_EPROTO, 400, "bare CR after chunk data");
        rill_buf_skip(in, 2);
    } else {
        return rill__http_errf(e, RILL_EPROTO, 400, "chunk data longer than its size");
    }
    b->st = RILL__BODY_CHUNK_SIZE;
    return 0;
}

static int trailers(struct rill__http_body *b, struct rill_decoder *d, struct rill_buf *in,
                    const struct rill__http_limits *lim, struct rill__http_err *e)
{
    int r = rill__http_scan(&b->scan, in, lim, false, true, e);
    if (r <= 0)
        return r;
    size_t hlen = b->scan.pos;
    struct rill_http_content *c;
    if (b->scan.lines == 0) { /* no trailer fields: the common end */
        rill_buf_skip(in, hlen);
        b->scan = (struct rill__http_scan){ 0 };
        return emit_data(b, d, in, 0, true, e);
    }
    char *t;
    c = rill__http_last_alloc(b->scan.lines, hlen + 1, &t);
    if (!c)
        return rill__http_errf(e, -ENOMEM, 0, "no memory for trailers");
    rill__http_copy_head(in, hlen, t);
    c->trailers._len = (uint32_t)(hlen + 1);
    int err = rill__http_parse_fields(t, t, hlen, &c->trailers, NULL, e);
    if (err) {
        rill_msg_release(&c->msg);
        return err;
    }
    rill_buf_skip(in, hlen);
    b->scan = (struct rill__http_scan){ 0 };
    b->st = RILL__BODY_NONE;
    rill_decoder_emit(d, &c->msg);
    return 1;
}

int rill__http_body_decode(struct rill__http_body *b, struct rill_decoder *d, struct rill_buf *in,
                           const struct rill__http_limits *lim, struct rill__http_err *e)
{
    size_t n = rill_buf_readable(in);
    switch (b->st) {
    case RILL__BODY_LENGTH: {
        if (n == 0)
            return 0;
        size_t k = n < b->remaining ? n : (size_t)b->remaining;
        b->remaining -= k;
        return emit_data(b, d, in, k, b->remaining == 0, e);
    }
    case RILL__BODY_UNTIL_CLOSE:
        return n ? emit_data(b, d, in, n, false, e) : 0;
    case RILL__BODY_CHUNK_SIZE:
        return chunk_line(b, in, lim, e);
    case RILL__BODY_CHUNK_DATA: {
        if (n == 0)
            return 0;
        size_t k = n < b->remaining ? n : (size_t)b->remaining;
        b->remaining -= k;
        if (b->remaining == 0)
            b->st = RILL__BODY_CHUNK_END;
        return emit_data(b, d, in, k, false, e);
    }
    case RILL__BODY_CHUNK_END:
        return chunk_end(b, in, e);
    case RILL__BODY_TRAILERS:
        return trailers(b, d, in, lim, e);
    default:
        return 0;
    }
}

int rill__http_body_finish(struct rill__http_body *b, struct rill_decoder *d)
{
    struct rill_http_content *c;
    if (rill_http_content_new(NULL, true, &c) != 0)
        return -ENOMEM;
    b->st = RILL__BODY_NONE;
    rill_decoder_emit(d, &c->msg);
    return 0;
}
