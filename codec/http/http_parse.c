/* Heads: finding their end across reads, then parsing them in one pass.
 *
 * Scanning looks only for line ends (memchr over the contiguous bytes, or
 * the buffer's own search on a composite) and resumes where it stopped, so
 * bytes are searched once however the head is split. It enforces the size
 * limits as it goes, so an endless line fails as soon as it passes its
 * limit. A complete head is copied once into its message's own block and
 * parsed there in place: separators become NULs, the fields become
 * offsets, the syntax is checked byte by byte. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/http/http_internal.h"
#include "rill/buf.h"
#include "rill/error.h"

int rill__http_errf(struct rill__http_err *e, int err, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->why, sizeof(e->why), fmt, ap);
    va_end(ap);
    e->err = err;
    e->status = status;
    return err;
}

static uint8_t byte_at(const uint8_t *p, const struct rill_buf *in, size_t i)
{
    uint8_t c = 0;
    if (p)
        return p[i];
    rill_buf_get_u8(in, rill_buf_reader_index(in) + i, &c);
    return c;
}

int rill__http_scan(struct rill__http_scan *sc, const struct rill_buf *in,
                    const struct rill__http_limits *lim, bool start, bool request,
                    struct rill__http_err *e)
{
    size_t n;
    const uint8_t *p = rill_buf_read_ptr(in, &n);
    if (!p)
        n = rill_buf_readable(in);
    size_t rd = rill_buf_reader_index(in);
    for (;;) {
        bool first = start && sc->lines == 0;
        size_t nl = SIZE_MAX;
        if (sc->search < n) {
            if (p) {
                const uint8_t *q = memchr(p + sc->search, '\n', n - sc->search);
                if (q)
                    nl = (size_t)(q - p);
            } else {
                ssize_t i = rill_buf_index_of(in, rd + sc->search, rd + n, '\n');
                if (i >= 0)
                    nl = (size_t)i - rd;
            }
        }
        if (nl == SIZE_MAX) {
            /* Incomplete line: fail now if it is already too long (one
             * more byte may be the CR of its CRLF). */
            sc->search = n;
            if (first && n - sc->pos > lim->max_line + 1)
                goto line_too_long;
            if (!first && n - sc->first > lim->max_header_size + 1)
                goto section_too_large;
            return 0;
        }
        size_t end = nl;
        if (end > sc->pos && byte_at(p, in, end - 1) == '\r')
            end--;
        if (first) {
            if (end - sc->pos > lim->max_line)
                goto line_too_long;
            sc->first = nl + 1;
        } else if (end == sc->pos) {
            sc->pos = sc->search = nl + 1;
            return 1; /* the empty line: the head is complete */
        } else {
            if (nl + 1 - sc->first > lim->max_header_size)
                goto section_too_large;
            if (sc->lines - (start ? 1u : 0u) >= lim->max_headers)
                return rill__http_errf(e, RILL_ETOOLARGE, request ? 431 : 0,
                                       "more than %u %s fields", lim->max_headers,
                                       start ? "header" : "trailer");
        }
        sc->lines++;
        sc->pos = sc->search = nl + 1;
    }

line_too_long:
    return rill__http_errf(e, RILL_ETOOLARGE, request ? 414 : 0, "%s line longer than %zu bytes",
                           request ? "request" : "status", lim->max_line);
section_too_large:
    return rill__http_errf(e, RILL_ETOOLARGE, request ? 431 : 0, "%s section larger than %zu bytes",
                           start ? "header" : "trailer", lim->max_header_size);
}

/* ---- framing fields ---- */

static bool parse_u64(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0 || n > 18) /* up to 10^18: no overflow, and far beyond any body */
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *v = x;
    return true;
}

static bool length_element(void *arg, const char *t, size_t len)
{
    struct rill__http_framing *fr = arg;
    uint64_t v = 0;
    fr->length_n++;
    if (!parse_u64(t, len, &v))
        fr->length_bad = 1;
    else if (fr->has_length && v != fr->length)
        fr->length_differs = 1;
    fr->has_length = 1;
    fr->length = v;
    return true;
}

static bool te_element(void *arg, const char *t, size_t len)
{
    struct rill__http_framing *fr = arg;
    size_t n = 0;
    while (n < len && t[n] != ';' && t[n] != ' ' && t[n] != '\t')
        n++;
    bool chunked = rill__http_name_is(t, n, "chunked", 7);
    fr->te_chunked_last = chunked;
    if (chunked && fr->te_chunked_count < 2)
        fr->te_chunked_count++;
    return true;
}

static bool connection_element(void *arg, const char *t, size_t len)
{
    struct rill__http_framing *fr = arg;
    if (rill__http_name_is(t, len, "close", 5))
        fr->close = 1;
    else if (rill__http_name_is(t, len, "keep-alive", 10))
        fr->keep_alive = 1;
    else if (rill__http_name_is(t, len, "upgrade", 7))
        fr->upgrade = 1;
    return true;
}

static void framing_field(struct rill__http_framing *fr, const char *n, size_t nlen, const char *v,
                          size_t vlen)
{
    switch (nlen) {
    case 4:
        if (rill__http_name_is(n, nlen, "host", 4) && fr->hosts < 2)
            fr->hosts++;
        break;
    case 6:
        if (rill__http_name_is(n, nlen, "expect", 6)) {
            if (rill__http_name_is(v, vlen, "100-continue", 12))
                fr->expect_continue = 1;
            else
                fr->expect_other = 1;
        }
        break;
    case 10:
        if (rill__http_name_is(n, nlen, "connection", 10))
            rill__http_each_token(v, vlen, connection_element, fr);
        break;
    case 14:
        if (rill__http_name_is(n, nlen, "content-length", 14)) {
            uint32_t before = fr->length_n;
            rill__http_each_token(v, vlen, length_element, fr);
            if (fr->length_n == before) /* an empty value */
                fr->length_bad = 1;
            fr->has_length = 1;
        }
        break;
    case 17:
        if (rill__http_name_is(n, nlen, "transfer-encoding", 17)) {
            fr->te = 1;
            fr->te_chunked_last = 0; /* an empty field ends the list with nothing */
            rill__http_each_token(v, vlen, te_element, fr);
        }
        break;
    }
}

int rill__http_parse_fields(char *base, char *t, size_t len, struct rill_http_headers *h,
                            struct rill__http_framing *fr, struct rill__http_err *e)
{
    char *p = t, *lim = t + len;
    for (;;) {
        char *nl = memchr(p, '\n', (size_t)(lim - p));
        if (!nl) /* the scan found the empty line: cannot happen */
            return rill__http_errf(e, RILL_EDECODE, 400, "header section without an end");
        char *end = nl;
        if (end > p && end[-1] == '\r')
            end--;
        if (end == p)
            return 0;
        if (*p == ' ' || *p == '\t')
            return rill__http_errf(e, RILL_EPROTO, 400, "obsolete line folding in a field");
        char *q = p;
        while (q < end && rill__http_tchar[(uint8_t)*q])
            q++;
        if (q == end || *q != ':') {
            if (!memchr(q, ':', (size_t)(end - q)))
                return rill__http_errf(e, RILL_EPROTO, 400, "field line without a colon");
            char *w = q;
            while (w < end && (*w == ' ' || *w == '\t'))
                w++;
            if (w > q && *w == ':')
                return rill__http_errf(e, RILL_EPROTO, 400,
                                       "whitespace before the colon of a field");
            if (*q == '\r')
                return rill__http_errf(e, RILL_EPROTO, 400, "bare CR in a field name");
            return rill__http_errf(e, RILL_EPROTO, 400, "bad byte 0x%02x in a field name",
                                   (uint8_t)*q);
        }
        if (q == p)
            return rill__http_errf(e, RILL_EPROTO, 400, "empty field name");
        char *v = q + 1;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        char *ve = (char *)rill__http_value_end(v, end);
        if (ve != end) {
            if (*ve == '\r')
                return rill__http_errf(e, RILL_EPROTO, 400, "bare CR in a field value");
            return rill__http_errf(e, RILL_EPROTO, 400, "bad byte 0x%02x in a field value",
                                   (uint8_t)*ve);
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        *q = '\0';
        *ve = '\0';
        if (h->_n == h->_ent_cap)
            return rill__http_errf(e, RILL_EDECODE, 400, "more fields than lines");
        rill__http_headers_push(h, (uint32_t)(p - base), (uint32_t)(q - p), (uint32_t)(v - base),
                                (uint32_t)(ve - v));
        if (fr)
            framing_field(fr, p, (size_t)(q - p), v, (size_t)(ve - v));
        p = nl + 1;
    }
}

/* ---- start lines ---- */

/* "HTTP/x.y" at @v (8 bytes). */
static int parse_version(const char *v, size_t n, uint8_t *version, bool request,
                         struct rill__http_err *e)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return rill__http_errf(e, RILL_EPROTO, 400, "malformed HTTP version");
    if (v[5] != '1')
        return rill__http_errf(e, RILL_EBADVERSION, request ? 505 : 0,
                               "HTTP/%c.%c is not supported", v[5], v[7]);
    *version = v[7] == '0' ? RILL_HTTP_10 : RILL_HTTP_11;
    return 0;
}

void rill__http_copy_head(const struct rill_buf *in, size_t hlen, char *t)
{
    size_t n;
    const uint8_t *p = rill_buf_read_ptr(in, &n);
    if (p)
        memcpy(t, p, hlen);
    else
        rill_buf_get_bytes(in, rill_buf_reader_index(in), t, hlen);
    t[hlen] = '\0';
}

/* End of the start line's content (before CR LF or LF). */
static size_t line_end(const char *t, size_t first)
{
    size_t end = first - 1; /* the '\n' */
    if (end > 0 && t[end - 1] == '\r')
        end--;
    return end;
}

static int parse_request_line(char *t, size_t first, struct rill_http_request *r,
                              struct rill__http_err *e)
{
    size_t end = line_end(t, first), i = 0;
    while (i < end && rill__http_tchar[(uint8_t)t[i]])
        i++;
    if (i == 0 || i == end || t[i] != ' ')
        return rill__http_errf(e, RILL_EPROTO, 400, "malformed request line: bad method");
    r->method = t;
    r->method_len = (uint32_t)i;
    r->method_id = rill__http_method_id(t, i);
    t[i++] = '\0';
    size_t ts = i;
    while (i < end && (uint8_t)t[i] > 0x20 && (uint8_t)t[i] != 0x7f)
        i++;
    if (i == ts || i == end || t[i] != ' ')
        return rill__http_errf(e, RILL_EPROTO, 400, "malformed request line: bad request target");
    r->target = t + ts;
    r->target_len = (uint32_t)(i - ts);
    t[i++] = '\0';
    int err = parse_version(t + i, end - i, &r->http.version, true, e);
    t[end] = '\0';
    return err;
}

static int parse_status_line(char *t, size_t first, struct rill_http_response *r,
                             struct rill__http_err *e)
{
    size_t end = line_end(t, first);
    if (end < 12 || t[8] != ' ')
        return rill__http_errf(e, RILL_EPROTO, 0, "malformed status line");
    int err = parse_version(t, 8, &r->http.version, false, e);
    if (err)
        return err;
    unsigned status = 0;
    for (int i = 9; i < 12; i++) {
        if (t[i] < '0' || t[i] > '9')
            return rill__http_errf(e, RILL_EPROTO, 0, "malformed status code");
        status = status * 10 + (unsigned)(t[i] - '0');
    }
    if (status < 100)
        return rill__http_errf(e, RILL_EPROTO, 0, "status code %u out of range", status);
    r->status = status;
    size_t rs = 12;
    if (rs < end) {
        if (t[rs] != ' ')
            return rill__http_errf(e, RILL_EPROTO, 0, "malformed status line");
        rs++;
    }
    for (size_t i = rs; i < end; i++)
        if (!rill__http_vchar[(uint8_t)t[i]])
            return rill__http_errf(e, RILL_EPROTO, 0, "bad byte 0x%02x in the reason phrase",
                                   (uint8_t)t[i]);
    r->reason = t + rs;
    r->reason_len = (uint32_t)(end - rs);
    t[end] = '\0';
    return 0;
}

/* Decode the head @sc found into a new request (*@req) or response
 * (*@resp): one of the two is NULL. Neither is written on failure. */
static int decode_head(const struct rill_buf *in, const struct rill__http_scan *sc,
                       struct rill_http_request **req, struct rill_http_response **resp,
                       struct rill__http_framing *fr, struct rill__http_err *e)
{
    size_t hlen = sc->pos;
    uint32_t nent = sc->lines ? sc->lines - 1 : 0;
    char *t;
    struct rill_http_request *rq = NULL;
    struct rill_http_response *rs = NULL;
    if (req)
        rq = rill__http_request_alloc(RILL_MSG_HTTP_REQUEST, nent, hlen + 1, &t);
    else
        rs = rill__http_response_alloc(RILL_MSG_HTTP_RESPONSE, nent, hlen + 1, &t);
    struct rill_http_message *m = rq ? &rq->http : rs ? &rs->http : NULL;
    if (!m)
        return rill__http_errf(e, -ENOMEM, 0, "no memory for a %s head",
                               req ? "request" : "response");
    rill__http_copy_head(in, hlen, t);
    m->headers._len = (uint32_t)(hlen + 1);
    memset(fr, 0, sizeof(*fr));
    int err = rq ? parse_request_line(t, sc->first, rq, e) : parse_status_line(t, sc->first, rs, e);
    if (!err)
        err = rill__http_parse_fields(t, t + sc->first, hlen - sc->first, &m->headers, fr, e);
    if (err) {
        rill_msg_release(&m->msg);
        return err;
    }
    if (rq)
        *req = rq;
    else
        *resp = rs;
    return 0;
}

int rill__http_decode_request(const struct rill_buf *in, const struct rill__http_scan *sc,
                              struct rill_http_request **out, struct rill__http_framing *fr,
                              struct rill__http_err *e)
{
    return decode_head(in, sc, out, NULL, fr, e);
}

int rill__http_decode_response(const struct rill_buf *in, const struct rill__http_scan *sc,
                               struct rill_http_response **out, struct rill__http_framing *fr,
                               struct rill__http_err *e)
{
    return decode_head(in, sc, NULL, out, fr, e);
}
