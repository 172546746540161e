/* Helpers shared by the HTTP codec tests (tests/codec/test_http_*.c): an
 * embedded channel with the codecs, the bytes that reached the head as a
 * string, and a canonical description of the HTTP messages that reached
 * the tail, so the same input cut in different places can be compared
 * (bodies joined however they were cut into contents). */
#ifndef RILL_TEST_HTTP_UTIL_H
#define RILL_TEST_HTTP_UTIL_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/http.h"
#include "rill/msg.h"
#include "rill/pipeline.h"
#include "util/feed.h"

/* A growable string. */
struct hstr {
    char *s;
    size_t len, cap;
};

static inline void hs_addn(struct hstr *h, const char *p, size_t n)
{
    if (h->len + n + 1 > h->cap) {
        h->cap = (h->len + n + 1) * 2;
        h->s = realloc(h->s, h->cap);
        cr_assert_not_null(h->s);
    }
    memcpy(h->s + h->len, p, n);
    h->len += n;
    h->s[h->len] = '\0';
}

static inline void hs_add(struct hstr *h, const char *s)
{
    hs_addn(h, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static inline void hs_addf(struct hstr *h, const char *fmt,
                                                                 ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    hs_addn(h, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static inline void hs_add_buf(struct hstr *h, const struct rill_buf *b)
{
    if (!b)
        return;
    char *s = rill_test_buf_str(b);
    hs_addn(h, s, rill_buf_readable(b));
    free(s);
}

static inline char *hs_take(struct hstr *h)
{
    if (!h->s)
        hs_add(h, "");
    char *s = h->s;
    *h = (struct hstr){ 0 };
    return s;
}

/* An embedded channel with @n handlers. */
static inline struct rill_embedded *hemb(const struct rill_embedded_handler *hs, size_t n)
{
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(hs, n, &e), 0);
    return e;
}

/* Everything that reached the head so far, as one string (malloc'd). Non
 * buffer messages (file regions) show as "<region>". */
static inline char *out_str(struct rill_embedded *e)
{
    struct hstr h = { 0 };
    struct rill_msg *m;
    while ((m = rill_embedded_read_outbound(e))) {
        struct rill_buf *b = rill_buf_from_msg(m);
        if (b)
            hs_add_buf(&h, b);
        else
            hs_addf(&h, "<msg %u>", m->type);
        rill_msg_release(m);
    }
    return hs_take(&h);
}

static inline void describe_fields(struct hstr *h, const struct rill_http_headers *hd)
{
    struct rill_http_field f;
    for (size_t i = 0; rill_http_headers_at(hd, i, &f) == 0; i++) {
        cr_assert_eq(strlen(f.name), f.name_len);
        cr_assert_eq(strlen(f.value), f.value_len);
        hs_addf(h, " %s=%s", f.name, f.value);
    }
}

/* Describe the messages that reached the tail, appending to @h; bodies
 * are joined into one "body[...]" per message. Releases them. */
struct hdesc {
    struct hstr h;
    struct hstr body; /* the body of the message being described */
    int heads, lasts, contents;
};

static inline void hdesc_msg(struct hdesc *d, struct rill_msg *m)
{
    struct rill_http_request *req = rill_http_request_from_msg(m);
    struct rill_http_response *resp = rill_http_response_from_msg(m);
    struct rill_http_message *hm = rill_http_message_from_msg(m);
    struct rill_http_content *c = rill_http_content_from_msg(m);
    if (req)
        hs_addf(&d->h, "REQ %s %s %d", req->method, req->target, req->http.version);
    if (resp)
        hs_addf(&d->h, "RESP %u %s %d", resp->status, resp->reason ? resp->reason : "-",
                resp->http.version);
    if (hm) {
        d->heads++;
        hs_addf(&d->h, " f=%x", hm->flags);
        if (hm->flags & RILL_HTTP_F_LENGTH)
            hs_addf(&d->h, " cl=%llu", (unsigned long long)hm->content_length);
        describe_fields(&d->h, &hm->headers);
        hs_add(&d->h, ";");
    }
    if (rill_http_is_full(m)) {
        hs_add_buf(&d->body, hm->body);
        hs_add(&d->h, " body[");
        hs_add(&d->h, d->body.s ? d->body.s : "");
        hs_add(&d->h, "] trailers[");
        describe_fields(&d->h, &hm->trailers);
        hs_add(&d->h, "]\n");
        d->body.len = 0;
        if (d->body.s)
            d->body.s[0] = '\0';
        d->lasts++;
    } else if (c) {
        d->contents++;
        hs_add_buf(&d->body, c->data);
        if (m->type == RILL_MSG_HTTP_LAST_CONTENT) {
            hs_add(&d->h, " body[");
            hs_add(&d->h, d->body.s ? d->body.s : "");
            hs_add(&d->h, "] trailers[");
            describe_fields(&d->h, &c->trailers);
            hs_add(&d->h, "]\n");
            d->body.len = 0;
            if (d->body.s)
                d->body.s[0] = '\0';
            d->lasts++;
        }
    } else if (!hm) {
        struct rill_buf *b = rill_buf_from_msg(m);
        hs_add(&d->h, "RAW[");
        hs_add_buf(&d->h, b);
        hs_add(&d->h, "]\n");
    }
    rill_msg_release(m);
}

static inline void hdesc_drain(struct hdesc *d, struct rill_embedded *e)
{
    struct rill_msg *m;
    while ((m = rill_embedded_read_inbound(e)))
        hdesc_msg(d, m);
}

static inline char *hdesc_take(struct hdesc *d)
{
    free(d->body.s);
    d->body = (struct hstr){ 0 };
    return hs_take(&d->h);
}

/* Does @hay contain @needle? */
static inline bool has(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* Occurrences of @needle in @hay. */
static inline int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

#endif
