/* HTTP messages: one allocation each, holding the message, its header
 * entries and their text (a decoded head is copied there whole; a new
 * message gets room for a few fields). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http/http_internal.h"
#include "rill/buf.h"

/* Room a new message gets for fields before its headers grow. */
#define NEW_ENTRIES 8
#define NEW_TEXT    256

static void message_fini(struct rill_http_message *m)
{
    if (m->body)
        rill_buf_release(m->body);
    rill_http_headers_fini(&m->headers);
    rill_http_headers_fini(&m->trailers);
}

static void request_destroy(struct rill_msg *msg)
{
    struct rill_http_request *r = (struct rill_http_request *)msg;
    message_fini(&r->http);
    free(r);
}

static void response_destroy(struct rill_msg *msg)
{
    struct rill_http_response *r = (struct rill_http_response *)msg;
    message_fini(&r->http);
    free(r);
}

static void content_destroy(struct rill_msg *msg)
{
    struct rill_http_content *c = (struct rill_http_content *)msg;
    if (c->data)
        rill_buf_release(c->data);
    rill_http_headers_fini(&c->trailers);
    free(c);
}

/* The message's memory: @head bytes of struct, then the entries, then the
 * text. */
static void *alloc_msg(size_t head, uint32_t nent, size_t text, struct rill__http_hent **ent,
                       char **t)
{
    char *p = malloc(head + nent * sizeof(struct rill__http_hent) + text);
    if (!p)
        return NULL;
    memset(p, 0, head);
    *ent = (struct rill__http_hent *)(p + head);
    *t = (char *)(*ent + nent);
    return p;
}

static void message_init(struct rill_http_message *m, uint16_t type, rill_msg_destroy_fn *destroy,
                         struct rill__http_hent *ent, uint32_t nent, char *text, size_t text_cap)
{
    m->version = RILL_HTTP_11;
    rill__http_headers_init_inline(&m->headers, ent, nent, text, (uint32_t)text_cap);
    rill_http_headers_init(&m->trailers);
    rill_msg_init(&m->msg, type, destroy);
}

struct rill_http_request *rill__http_request_alloc(uint16_t type, uint32_t nent, size_t text,
                                                   char **text_out)
{
    struct rill__http_hent *ent;
    struct rill_http_request *r = alloc_msg(sizeof(*r), nent, text, &ent, text_out);
    if (r)
        message_init(&r->http, type, request_destroy, ent, nent, *text_out, text);
    return r;
}

struct rill_http_response *rill__http_response_alloc(uint16_t type, uint32_t nent, size_t text,
                                                     char **text_out)
{
    struct rill__http_hent *ent;
    struct rill_http_response *r = alloc_msg(sizeof(*r), nent, text, &ent, text_out);
    if (r)
        message_init(&r->http, type, response_destroy, ent, nent, *text_out, text);
    return r;
}

struct rill_http_content *rill__http_last_alloc(uint32_t nent, size_t text, char **text_out)
{
    struct rill__http_hent *ent;
    struct rill_http_content *c = alloc_msg(sizeof(*c), nent, text, &ent, text_out);
    if (!c)
        return NULL;
    rill__http_headers_init_inline(&c->trailers, ent, nent, *text_out, (uint32_t)text);
    rill_msg_init(&c->msg, RILL_MSG_HTTP_LAST_CONTENT, content_destroy);
    return c;
}

enum rill_http_method rill__http_method_id(const char *m, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return RILL_HTTP_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return RILL_HTTP_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0)
            return RILL_HTTP_HEAD;
        if (memcmp(m, "POST", 4) == 0)
            return RILL_HTTP_POST;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return RILL_HTTP_PATCH;
        if (memcmp(m, "TRACE", 5) == 0)
            return RILL_HTTP_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return RILL_HTTP_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return RILL_HTTP_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0)
            return RILL_HTTP_CONNECT;
        break;
    }
    return RILL_HTTP_OTHER;
}

const char *rill_http_method_name(enum rill_http_method m)
{
    static const char *const names[] = {
        [RILL_HTTP_GET] = "GET",       [RILL_HTTP_HEAD] = "HEAD",
        [RILL_HTTP_POST] = "POST",     [RILL_HTTP_PUT] = "PUT",
        [RILL_HTTP_DELETE] = "DELETE", [RILL_HTTP_OPTIONS] = "OPTIONS",
        [RILL_HTTP_PATCH] = "PATCH",   [RILL_HTTP_CONNECT] = "CONNECT",
        [RILL_HTTP_TRACE] = "TRACE",
    };
    return (unsigned)m < RILL_ARRAY_SIZE(names) && names[m] ? names[m] : "";
}

const char *rill_http_reason(unsigned status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "";
    }
}

/* ---- public constructors ---- */

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!rill__http_tchar[(uint8_t)s[i]])
            return false;
    return true;
}

static bool is_target(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] <= 0x20 || (uint8_t)s[i] == 0x7f)
            return false;
    return true;
}

static int request_new(uint16_t type, const char *method, const char *target,
                       struct rill_http_request **out)
{
    size_t ml = method ? strlen(method) : 0, tl = target ? strlen(target) : 0;
    if (!is_token(method, ml) || !is_target(target, tl) || tl > UINT32_MAX / 2)
        return -EINVAL;
    /* The start line lives at the front of the inline text block, which
     * is never freed before the message: method and target stay valid. */
    size_t text = ml + tl + 2 + NEW_TEXT;
    char *t;
    struct rill_http_request *r = rill__http_request_alloc(type, NEW_ENTRIES, text, &t);
    if (!r)
        return -ENOMEM;
    memcpy(t, method, ml + 1);
    memcpy(t + ml + 1, target, tl + 1);
    r->method = t;
    r->method_len = (uint32_t)ml;
    r->target = t + ml + 1;
    r->target_len = (uint32_t)tl;
    r->method_id = rill__http_method_id(method, ml);
    r->http.headers._len = (uint32_t)(ml + tl + 2);
    *out = r;
    return 0;
}

int rill_http_request_new(const char *method, const char *target, struct rill_http_request **out)
{
    return request_new(RILL_MSG_HTTP_FULL_REQUEST, method, target, out);
}

int rill_http_request_new_head(const char *method, const char *target,
                               struct rill_http_request **out)
{
    return request_new(RILL_MSG_HTTP_REQUEST, method, target, out);
}

static int response_new(uint16_t type, unsigned status, struct rill_http_response **out)
{
    if (status < 100 || status > 999)
        return -EINVAL;
    char *t;
    struct rill_http_response *r = rill__http_response_alloc(type, NEW_ENTRIES, NEW_TEXT, &t);
    if (!r)
        return -ENOMEM;
    r->status = status;
    *out = r;
    return 0;
}

int rill_http_response_new(unsigned status, struct rill_http_response **out)
{
    return response_new(RILL_MSG_HTTP_FULL_RESPONSE, status, out);
}

int rill_http_response_new_head(unsigned status, struct rill_http_response **out)
{
    return response_new(RILL_MSG_HTTP_RESPONSE, status, out);
}

int rill_http_content_new(struct rill_buf *data, bool last, struct rill_http_content **out)
{
    struct rill_http_content *c = malloc(sizeof(*c));
    if (!c) {
        if (data)
            rill_buf_release(data);
        return -ENOMEM;
    }
    c->data = data;
    rill_http_headers_init(&c->trailers);
    rill_msg_init(&c->msg, last ? RILL_MSG_HTTP_LAST_CONTENT : RILL_MSG_HTTP_CONTENT,
                  content_destroy);
    *out = c;
    return 0;
}

size_t rill_http_message_body_len(const struct rill_http_message *m)
{
    return m->body ? rill_buf_readable(m->body) : 0;
}

void rill_http_message_set_body(struct rill_http_message *m, struct rill_buf *body)
{
    if (m->body)
        rill_buf_release(m->body);
    m->body = body;
}

int rill_http_message_set_body_copy(struct rill_http_message *m, const void *data, size_t len)
{
    struct rill_buf *b;
    int err = rill_buf_copy_from(data, len, &b);
    if (err)
        return err;
    rill_http_message_set_body(m, b);
    return 0;
}
