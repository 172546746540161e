/* RESP encoding: reply helpers that write one element straight into a
 * buffer, and the tree encoder built on them. See rill/resp.h. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/resp/resp_internal.h"
#include "rill/buf.h"
#include "rill/encoder.h"
#include "rill/resp.h"

/* Room for @n bytes at the writer index; NULL with *err set on failure. */
static inline uint8_t *reserve(struct rill_buf *out, size_t n, int *err)
{
    size_t avail;
    uint8_t *p = rill_buf_write_ptr(out, n, &avail);
    if (!p) {
        *err = rill_buf_ensure_writable(out, n);
        if (*err == 0)
            *err = -ENOMEM;
    }
    return p;
}

static inline size_t fmt_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

static inline size_t fmt_i64(char *dst, int64_t v)
{
    if (v < 0) {
        dst[0] = '-';
        return 1 + fmt_u64(dst + 1, (uint64_t)0 - (uint64_t)v);
    }
    return fmt_u64(dst, (uint64_t)v);
}

/* "<t><number>\r\n" */
static int put_num_line(struct rill_buf *out, char t, int64_t v)
{
    int err;
    uint8_t *p = reserve(out, 24, &err);
    if (!p)
        return err;
    char *q = (char *)p;
    *q++ = t;
    q += fmt_i64(q, v);
    *q++ = '\r';
    *q++ = '\n';
    return rill_buf_advance_writer(out, (size_t)(q - (char *)p));
}

static int put_raw(struct rill_buf *out, const char *s, size_t len)
{
    return rill_buf_write_bytes(out, s, len);
}

/* "<t><s>\r\n" with CR and LF in @s turned into spaces. */
static int put_line(struct rill_buf *out, char t, const char *s, size_t len)
{
    int err;
    uint8_t *p = reserve(out, len + 3, &err);
    if (!p)
        return err;
    p[0] = (uint8_t)t;
    if (len)
        memcpy(p + 1, s, len);
    for (size_t i = 1; i <= len; i++)
        if (p[i] == '\r' || p[i] == '\n')
            p[i] = ' ';
    p[len + 1] = '\r';
    p[len + 2] = '\n';
    return rill_buf_advance_writer(out, len + 3);
}

int rill_resp_put_simple(struct rill_buf *out, const char *s, size_t len)
{
    return put_line(out, '+', s, len);
}

int rill_resp_put_error(struct rill_buf *out, const char *s, size_t len)
{
    return put_line(out, '-', s, len);
}

int rill_resp_put_errorf(struct rill_buf *out, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(small))
        return put_line(out, '-', small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = put_line(out, '-', big, (size_t)n);
    free(big);
    return rc;
}

int rill_resp_put_int(struct rill_buf *out, int64_t v)
{
    return put_num_line(out, ':', v);
}

static int put_blob(struct rill_buf *out, char t, const void *s, size_t len)
{
    int err;
    uint8_t *p = reserve(out, len + 26, &err);
    if (!p)
        return err;
    char *q = (char *)p;
    *q++ = t;
    q += fmt_u64(q, len);
    *q++ = '\r';
    *q++ = '\n';
    if (len)
        memcpy(q, s, len);
    q += len;
    *q++ = '\r';
    *q++ = '\n';
    return rill_buf_advance_writer(out, (size_t)(q - (char *)p));
}

int rill_resp_put_bulk(struct rill_buf *out, const void *p, size_t len)
{
    return put_blob(out, '$', p, len);
}

int rill_resp_put_bulk_header(struct rill_buf *out, size_t len)
{
    return put_num_line(out, '$', (int64_t)len);
}

int rill_resp_put_crlf(struct rill_buf *out)
{
    return put_raw(out, "\r\n", 2);
}

int rill_resp_put_bulk_buf(struct rill_buf **out, struct rill_buf *b)
{
    size_t n = rill_buf_readable(b);
    int rc = rill_resp_put_bulk_header(*out, n);
    if (rc == 0) {
        if (n >= RILL_RESP_ZERO_COPY_MIN)
            return (rc = rill_encoder_append(out, b)) ? rc : rill_resp_put_crlf(*out);
        rc = rill_buf_write_buf(*out, b, n);
    }
    rill_buf_release(b);
    return rc ? rc : rill_resp_put_crlf(*out);
}

int rill_resp_put_null(struct rill_buf *out, int proto)
{
    return proto == 3 ? put_raw(out, "_\r\n", 3) : put_raw(out, "$-1\r\n", 5);
}

int rill_resp_put_null_array(struct rill_buf *out, int proto)
{
    return proto == 3 ? put_raw(out, "_\r\n", 3) : put_raw(out, "*-1\r\n", 5);
}

int rill_resp_put_agg(struct rill_buf *out, int proto, enum rill_resp_type t, size_t n)
{
    switch (t) {
    case RILL_RESP_ARRAY:
        return put_num_line(out, '*', (int64_t)n);
    case RILL_RESP_SET:
    case RILL_RESP_PUSH:
        return put_num_line(out, proto == 3 ? (char)t : '*', (int64_t)n);
    case RILL_RESP_MAP:
        return proto == 3 ? put_num_line(out, '%', (int64_t)n)
                          : put_num_line(out, '*', (int64_t)(2 * n));
    case RILL_RESP_ATTR:
        return proto == 3 ? put_num_line(out, '|', (int64_t)n) : -EINVAL;
    default:
        return -EINVAL;
    }
}

int rill_resp_put_bool(struct rill_buf *out, int proto, bool v)
{
    if (proto == 3)
        return put_raw(out, v ? "#t\r\n" : "#f\r\n", 4);
    return put_raw(out, v ? ":1\r\n" : ":0\r\n", 4);
}

/* The shortest text that reads back as @d (Redis's inf, -inf, nan). */
static size_t fmt_double(char *buf, size_t size, double d)
{
    if (isinf(d))
        return (size_t)snprintf(buf, size, "%s", d > 0 ? "inf" : "-inf");
    if (isnan(d))
        return (size_t)snprintf(buf, size, "nan");
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return (size_t)n;
}

int rill_resp_put_double(struct rill_buf *out, int proto, double v)
{
    char b[40];
    size_t n = fmt_double(b, sizeof(b), v);
    return proto == 3 ? put_line(out, ',', b, n) : put_blob(out, '$', b, n);
}

int rill_resp_put_bignum(struct rill_buf *out, int proto, const char *digits, size_t len)
{
    return proto == 3 ? put_line(out, '(', digits, len) : put_blob(out, '$', digits, len);
}

int rill_resp_put_verbatim(struct rill_buf *out, int proto, const char fmt[3], const void *p,
                           size_t len)
{
    if (proto != 3)
        return put_blob(out, '$', p, len);
    int rc = put_num_line(out, '=', (int64_t)len + 4);
    if (rc == 0)
        rc = put_raw(out, fmt, 3);
    if (rc == 0)
        rc = put_raw(out, ":", 1);
    if (rc == 0 && len)
        rc = put_raw(out, p, len);
    return rc ? rc : rill_resp_put_crlf(out);
}

int rill_resp_put_blob_error(struct rill_buf *out, int proto, const void *p, size_t len)
{
    return proto == 3 ? put_blob(out, '!', p, len) : put_line(out, '-', p, len);
}

/* ---- the tree encoder ---- */

static int enc(struct rill_buf **out, struct rill_resp *r, const struct rill_resp_val *v, int proto)
{
    int rc;
    switch (v->type) {
    case RILL_RESP_SIMPLE:
        return put_line(*out, '+', v->str, v->len);
    case RILL_RESP_ERROR:
        return put_line(*out, '-', v->str, v->len);
    case RILL_RESP_INT:
        return put_num_line(*out, ':', v->i);
    case RILL_RESP_BULK:
        if (v->len >= RILL_RESP_ZERO_COPY_MIN && r) {
            struct rill_buf *b;
            if ((rc = rill_resp_buf(r, v, &b)) != 0)
                return rc;
            return rill_resp_put_bulk_buf(out, b);
        }
        return put_blob(*out, '$', v->str, v->len);
    case RILL_RESP_NULL:
        if (proto == 3)
            return put_raw(*out, "_\r\n", 3);
        return (v->flags & RILL_RESP_F_NULL_ARRAY) ? put_raw(*out, "*-1\r\n", 5)
                                                   : put_raw(*out, "$-1\r\n", 5);
    case RILL_RESP_BOOL:
        return rill_resp_put_bool(*out, proto, v->i != 0);
    case RILL_RESP_DOUBLE:
        return rill_resp_put_double(*out, proto, v->d);
    case RILL_RESP_BIGNUM:
        return rill_resp_put_bignum(*out, proto, v->str, v->len);
    case RILL_RESP_BLOB_ERROR:
        return rill_resp_put_blob_error(*out, proto, v->str, v->len);
    case RILL_RESP_VERBATIM:
        return rill_resp_put_verbatim(*out, proto, v->fmt, v->str, v->len);
    default:
        break;
    }
    if ((rc = rill__resp_agg_check(v)) != 0)
        return rc;
    if (v->type == RILL_RESP_ATTR && proto != 3) /* RESP2 has no attributes: the value alone */
        return enc(out, r, rill_resp_at(v, v->n - 1), proto);
    /* Aggregates. An attribute's header counts its pairs; the annotated
     * value follows them. */
    size_t n = v->type == RILL_RESP_MAP || v->type == RILL_RESP_ATTR ? v->n / 2 : v->n;
    if ((rc = rill_resp_put_agg(*out, proto, (enum rill_resp_type)v->type, n)) != 0)
        return rc;
    const struct rill_resp_val *c = v + 1;
    for (uint32_t i = 0; i < v->n; i++, c = rill_resp_next(c))
        if ((rc = enc(out, r, c, proto)) != 0)
            return rc;
    return 0;
}

int rill_resp_encode(struct rill_buf **out, struct rill_resp *r, const struct rill_resp_val *v,
                     int proto)
{
    if (proto != 2 && proto != 3)
        return -EINVAL;
    return enc(out, r, v, proto);
}
