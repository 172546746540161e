/* The RESP decode step: an incremental parser over the cumulation.
 *
 * A value is parsed into nodes (pre-order, see rill/resp.h) as its bytes
 * arrive; the state (nodes so far, open aggregates, where the current line
 * or bulk payload ends) survives between reads, so a large command that
 * arrives in many reads is scanned once. Strings are kept as offsets from
 * the frame's start until the frame is complete; then the message takes
 * one reference to the storage the frame lies in (the cumulation itself
 * when it is one flat buffer, a slice of the component it lies in, or, for
 * a frame that spans components, one copy) and the offsets become
 * pointers. The reader index moves only when a frame is complete.
 *
 * Errors carry Redis's texts (networking.c: processMultibulkBuffer and
 * processInlineBuffer) so clients see what they would see from Redis. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "codec/resp/resp_internal.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/pipeline.h"

enum { P_VALUE = 0, P_BULK = 1 };
enum { NEED_MORE = 0, FRAME_DONE = 1, CONSUMED = 2 };

/* The bytes after the reader index: one contiguous span when possible
 * (the hot case), else read through the buffer API (composites). */
struct src {
    const uint8_t *p;
    size_t n;
    const struct rill_buf *b;
    size_t rd;
};

static ssize_t find_nl(const struct src *s, size_t from, size_t to)
{
    if (to > s->n)
        to = s->n;
    if (from >= to)
        return -1;
    if (s->p) {
        const uint8_t *q = memchr(s->p + from, '\n', to - from);
        return q ? q - s->p : -1;
    }
    ssize_t r = rill_buf_index_of(s->b, s->rd + from, s->rd + to, '\n');
    return r < 0 ? -1 : r - (ssize_t)s->rd;
}

static uint8_t at(const struct src *s, size_t off)
{
    if (s->p)
        return s->p[off];
    uint8_t v = 0;
    rill_buf_get_u8(s->b, s->rd + off, &v);
    return v;
}

static void copy_out(const struct src *s, size_t off, size_t len, void *dst)
{
    if (len == 0)
        return; /* dst may be NULL (an empty inline line) */
    if (s->p)
        memcpy(dst, s->p + off, len);
    else
        rill_buf_get_bytes(s->b, s->rd + off, dst, len);
}

/* ---- errors ---- */

/* Fail the stream with @err and a Redis-style text; in commands mode the
 * client first gets "-ERR <text>" after the replies before it, as from
 * Redis. */
static int perr(struct rill__resp_codec *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(struct rill__resp_codec *c, int err, const char *fmt, ...)
{
    char why[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (c->cfg.mode == RILL_RESP_MODE_COMMANDS && !c->cfg.no_error_reply) {
        struct rill_buf **out = rill_resp_out(c->dec._ctx);
        if (out && rill_resp_put_errorf(*out, "ERR %s", why) == 0)
            rill__resp_write_out(c, true);
    }
    return rill_decoder_fail(&c->dec, err, "%s", why);
}

static const char *byte_name(uint8_t b, char *tmp)
{
    if (b >= 0x21 && b < 0x7f)
        snprintf(tmp, 8, "%c", b);
    else
        snprintf(tmp, 8, "\\x%02x", b);
    return tmp;
}

/* ---- numbers ---- */

int rill_resp_parse_i64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return -EINVAL;
    size_t i = 0;
    bool neg = s[0] == '-';
    if (neg && len == 1)
        return -EINVAL;
    i = neg;
    if (s[i] == '0' && len - i > 1)
        return -EINVAL;
    uint64_t v = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return -EINVAL;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return -EINVAL;
        *out = (int64_t)v;
    }
    return 0;
}

static bool parse_ll(const struct src *s, size_t off, size_t len, int64_t *out)
{
    char b[24];
    if (len == 0 || len > 20)
        return false;
    copy_out(s, off, len, b);
    return rill_resp_parse_i64(b, len, out) == 0;
}

static bool parse_double(const struct src *s, size_t off, size_t len, double *out)
{
    char b[320];
    if (len == 0 || len >= sizeof(b))
        return false;
    copy_out(s, off, len, b);
    b[len] = '\0';
    if (strcmp(b, "inf") == 0 || strcmp(b, "+inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(b, "-inf") == 0) {
        *out = -INFINITY;
        return true;
    }
    if (strcmp(b, "nan") == 0 || strcmp(b, "-nan") == 0) {
        *out = NAN;
        return true;
    }
    for (size_t i = 0; i < len; i++)
        if (!strchr("0123456789+-.eE", b[i]))
            return false; /* no hex, no spaces, no "infinity" */
    char *end;
    *out = strtod(b, &end);
    return end == b + len;
}

static bool all_digits(const struct src *s, size_t off, size_t len)
{
    size_t i = 0;
    if (len && (at(s, off) == '-' || at(s, off) == '+'))
        i = 1;
    if (i == len)
        return false;
    for (; i < len; i++) {
        uint8_t ch = at(s, off + i);
        if (ch < '0' || ch > '9')
            return false;
    }
    return true;
}

/* ---- nodes ---- */

static struct rill_resp_val *push_val(struct rill__resp_parser *ps)
{
    if (ps->nvals == ps->avals) {
        uint32_t n = ps->avals ? ps->avals * 2 : 16;
        if (n <= ps->avals)
            return NULL;
        struct rill_resp_val *v = realloc(ps->vals, (size_t)n * sizeof(*v));
        if (!v)
            return NULL;
        ps->vals = v;
        ps->avals = n;
    }
    struct rill_resp_val *v = &ps->vals[ps->nvals++];
    memset(v, 0, sizeof(*v));
    return v;
}

/* A value was finished: count it in the open aggregates, closing those it
 * completes. True when the root is complete. */
static bool value_done(struct rill__resp_parser *ps)
{
    while (ps->depth) {
        struct rill__resp_frame *f = &ps->stack[ps->depth - 1];
        if (--f->left)
            return false;
        struct rill_resp_val *v = &ps->vals[f->idx];
        v->len = ps->nvals - f->idx;
        if (v->len == (size_t)v->n + 1)
            v->flags |= RILL_RESP_F_FLAT;
        ps->depth--;
    }
    return true;
}

static void reset(struct rill__resp_parser *ps)
{
    ps->nvals = 0;
    ps->depth = 0;
    ps->off = 0;
    ps->scan = 0;
    ps->need = 0;
    ps->state = P_VALUE;
    ps->strings = false;
}

void rill__resp_parser_free(struct rill__resp_parser *ps)
{
    free(ps->vals);
    free(ps->stack);
    free(ps->line);
    *ps = (struct rill__resp_parser){ 0 };
}

/* ---- inline commands ---- */

static bool is_space(int ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Split @line as Redis's sdssplitargs does (a NUL ends the line, "..."
 * with \n \r \t \b \a \\ \" \xHH escapes, '...' with \' ; a closing quote
 * must be followed by a space or the end). Counts into *argc and *bytes;
 * with @r, writes the arguments into its nodes and storage. Returns false
 * for unbalanced quotes. */
static bool split_args(const char *line, size_t len, struct rill_resp *r, size_t *argc,
                       size_t *bytes)
{
    size_t i = 0, nargs = 0, nbytes = 0;
    char *dst = r ? rill_resp_storage(r) : NULL;
#define CH(k) ((k) < len ? line[k] : '\0')
    for (;;) {
        while (i < len && CH(i) && is_space(CH(i)))
            i++;
        if (i >= len || !CH(i))
            break;
        char quote = 0; /* '"' or '\'' inside quotes */
        bool done = false;
        size_t start = nbytes;
        while (!done) {
            char ch = CH(i), out = 0;
            bool emit = false;
            if (quote) {
                if (quote == '"' && ch == '\\' && CH(i + 1) == 'x' && hexval(CH(i + 2)) >= 0 &&
                    hexval(CH(i + 3)) >= 0) {
                    out = (char)(hexval(CH(i + 2)) * 16 + hexval(CH(i + 3)));
                    emit = true;
                    i += 3;
                } else if (quote == '"' && ch == '\\' && CH(i + 1)) {
                    i++;
                    switch (CH(i)) {
                    case 'n':
                        out = '\n';
                        break;
                    case 'r':
                        out = '\r';
                        break;
                    case 't':
                        out = '\t';
                        break;
                    case 'b':
                        out = '\b';
                        break;
                    case 'a':
                        out = '\a';
                        break;
                    default:
                        out = CH(i);
                        break;
                    }
                    emit = true;
                } else if (quote == '\'' && ch == '\\' && CH(i + 1) == '\'') {
                    i++;
                    out = '\'';
                    emit = true;
                } else if (ch == quote) {
                    if (CH(i + 1) && !is_space(CH(i + 1)))
                        return false;
                    done = true;
                } else if (!ch) {
                    return false;
                } else {
                    out = ch;
                    emit = true;
                }
            } else {
                switch (ch) {
                case ' ':
                case '\n':
                case '\r':
                case '\t':
                case '\0':
                    done = true;
                    break;
                case '"':
                case '\'':
                    quote = ch;
                    break;
                default:
                    out = ch;
                    emit = true;
                    break;
                }
            }
            if (emit) {
                if (dst)
                    dst[nbytes] = out;
                nbytes++;
            }
            if (CH(i))
                i++;
        }
        if (r) {
            r->vals[nargs + 1] = (struct rill_resp_val){ .type = RILL_RESP_BULK,
                                                         .len = nbytes - start,
                                                         .str = dst + start };
        }
        nargs++;
    }
#undef CH
    *argc = nargs;
    *bytes = nbytes;
    return true;
}

static int parse_inline(struct rill__resp_codec *c, const struct src *s, struct rill_buf *in)
{
    struct rill__resp_parser *ps = &c->ps;
    size_t max = c->cfg.max_line;
    ssize_t nl = find_nl(s, ps->scan, max + 1);
    if (nl < 0) {
        if (s->n > max)
            return perr(c, RILL_ETOOLARGE, "Protocol error: too big inline request");
        ps->scan = s->n;
        return NEED_MORE;
    }
    size_t len = (size_t)nl;
    if (len && at(s, len - 1) == '\r')
        len--;
    if (len > ps->aline) {
        char *l = realloc(ps->line, len);
        if (!l)
            return -ENOMEM;
        ps->line = l;
        ps->aline = len;
    }
    copy_out(s, 0, len, ps->line);
    size_t argc, bytes;
    if (!split_args(ps->line, len, NULL, &argc, &bytes))
        return perr(c, RILL_EDECODE, "Protocol error: unbalanced quotes in request");
    if (argc > c->cfg.max_elements)
        return perr(c, RILL_ETOOLARGE, "Protocol error: invalid multibulk length");
    struct rill_resp *r = NULL;
    if (argc) {
        int rc = rill__resp_alloc(argc + 1, bytes, &r);
        if (rc)
            return rc;
        r->vals[0] = (struct rill_resp_val){ .type = RILL_RESP_ARRAY,
                                             .flags = RILL_RESP_F_FLAT | RILL_RESP_F_INLINE,
                                             .n = (uint32_t)argc,
                                             .len = argc + 1 };
        split_args(ps->line, len, r, &argc, &bytes);
    }
    rill_buf_skip(in, (size_t)nl + 1);
    reset(ps);
    if (r)
        rill_decoder_emit(&c->dec, &r->msg);
    return CONSUMED; /* an empty line is consumed without a message, as in Redis */
}

/* ---- values ---- */

static const char *too_big_line(uint8_t t)
{
    switch (t) {
    case '*':
        return "Protocol error: too big mbulk count string";
    case '$':
        return "Protocol error: too big bulk count string";
    default:
        return "Protocol error: too big line";
    }
}

static int push_frame(struct rill__resp_codec *c, uint32_t idx, uint32_t children)
{
    struct rill__resp_parser *ps = &c->ps;
    if (ps->depth >= c->cfg.max_depth)
        return perr(c, RILL_ETOOLARGE, "Protocol error: nesting deeper than %u levels",
                    c->cfg.max_depth);
    if (ps->depth == ps->astack) {
        uint32_t n = ps->astack ? ps->astack * 2 : 8;
        struct rill__resp_frame *f = realloc(ps->stack, (size_t)n * sizeof(*f));
        if (!f)
            return -ENOMEM;
        ps->stack = f;
        ps->astack = n;
    }
    ps->stack[ps->depth++] = (struct rill__resp_frame){ idx, children };
    return 0;
}

/* Parse from the saved state. Returns FRAME_DONE (ps->off bytes hold a
 * whole value in ps->vals), CONSUMED (bytes consumed, nothing to emit, or
 * an inline command emitted), NEED_MORE, or an error. */
static int parse(struct rill__resp_codec *c, const struct src *s, struct rill_buf *in)
{
    struct rill__resp_parser *ps = &c->ps;
    const bool commands = c->cfg.mode == RILL_RESP_MODE_COMMANDS;
    char tmp[8];
    for (;;) {
        if (ps->state == P_BULK) {
            if (s->n < ps->need)
                return NEED_MORE;
            if (at(s, ps->need - 2) != '\r' || at(s, ps->need - 1) != '\n')
                return perr(c, RILL_EDECODE, "Protocol error: bulk string not terminated by CRLF");
            struct rill_resp_val *v = &ps->vals[ps->nvals - 1];
            if (v->type == RILL_RESP_VERBATIM) {
                size_t o = (size_t)(uintptr_t)v->str;
                char f[4];
                copy_out(s, o, 4, f);
                if (f[3] != ':')
                    return perr(c, RILL_EDECODE, "Protocol error: invalid verbatim string");
                memcpy(v->fmt, f, 3);
                v->fmt[3] = '\0';
                v->str = (const char *)(uintptr_t)(o + 4);
                v->len -= 4;
            }
            ps->off = ps->need;
            ps->state = P_VALUE;
            if (value_done(ps))
                return FRAME_DONE;
            continue;
        }
        size_t off = ps->off;
        if (off >= s->n)
            return NEED_MORE;
        uint8_t t = at(s, off);
        if (commands) {
            if (ps->depth == 0 && t != '*')
                return parse_inline(c, s, in);
            if (ps->depth > 0 && t != '$')
                return perr(c, RILL_EDECODE, "Protocol error: expected '$', got '%s'",
                            byte_name(t, tmp));
        }
        if (!memchr("+-:$*_#,(!=%~|>", t, 15) || t == 0)
            return perr(c, RILL_EDECODE, "Protocol error: unknown type byte '%s'",
                        byte_name(t, tmp));
        /* The line: content of up to max_line bytes, then CRLF. */
        size_t lim = off + 1 + (size_t)c->cfg.max_line + 2;
        size_t from = ps->scan > off + 1 ? ps->scan : off + 1;
        ssize_t nl = find_nl(s, from, lim);
        if (nl < 0) {
            if (s->n >= lim)
                return perr(c, RILL_ETOOLARGE, "%s", too_big_line(t));
            ps->scan = s->n;
            return NEED_MORE;
        }
        ps->scan = 0;
        if ((size_t)nl < off + 2 || at(s, (size_t)nl - 1) != '\r')
            return perr(c, RILL_EDECODE, "Protocol error: line not terminated by CRLF");
        size_t cs = off + 1, clen = (size_t)nl - 1 - cs, next = (size_t)nl + 1;
        int64_t ll = 0;
        struct rill_resp_val *v;
        switch (t) {
        case '+':
        case '-':
        case '(':
            if (t == '(' && !all_digits(s, cs, clen))
                return perr(c, RILL_EDECODE, "Protocol error: invalid big number");
            if (!(v = push_val(ps)))
                return -ENOMEM;
            v->type = t;
            v->len = clen;
            v->str = (const char *)(uintptr_t)cs;
            ps->strings |= clen > 0;
            break;
        case ':':
            if (!parse_ll(s, cs, clen, &ll))
                return perr(c, RILL_EDECODE, "Protocol error: invalid integer");
            if (!(v = push_val(ps)))
                return -ENOMEM;
            v->type = RILL_RESP_INT;
            v->i = ll;
            break;
        case '_':
            if (clen != 0)
                return perr(c, RILL_EDECODE, "Protocol error: invalid null");
            if (!(v = push_val(ps)))
                return -ENOMEM;
            v->type = RILL_RESP_NULL;
            break;
        case '#': {
            uint8_t b = clen == 1 ? at(s, cs) : 0;
            if (b != 't' && b != 'f')
                return perr(c, RILL_EDECODE, "Protocol error: invalid boolean");
            if (!(v = push_val(ps)))
                return -ENOMEM;
            v->type = RILL_RESP_BOOL;
            v->i = b == 't';
            break;
        }
        case ',': {
            double d;
            if (!parse_double(s, cs, clen, &d))
                return perr(c, RILL_EDECODE, "Protocol error: invalid double");
            if (!(v = push_val(ps)))
                return -ENOMEM;
            v->type = RILL_RESP_DOUBLE;
            v->d = d;
            break;
        }
        case '$':
        case '=':
        case '!':
            if (!parse_ll(s, cs, clen, &ll)) {
                if (clen == 1 && at(s, cs) == '?')
                    return perr(c, RILL_EDECODE,
                                "Protocol error: streamed strings are not supported");
                return perr(c, RILL_EDECODE, "Protocol error: invalid bulk length");
            }
            if (ll == -1 && t == '$' && !commands) {
                if (!(v = push_val(ps)))
                    return -ENOMEM;
                v->type = RILL_RESP_NULL;
                v->flags = RILL_RESP_F_NULL_BULK;
                break;
            }
            if (ll < 0)
                return perr(c, RILL_EDECODE, "Protocol error: invalid bulk length");
            if ((uint64_t)ll > c->cfg.max_bulk)
                return perr(c, RILL_ETOOLARGE, "Protocol error: invalid bulk length");
            if (t == '=' && ll < 4)
                return perr(c, RILL_EDECODE, "Protocol error: invalid verbatim string");
            if (!(v = push_val(ps)))
                return -ENOMEM;
            v->type = t;
            v->len = (size_t)ll;
            v->str = (const char *)(uintptr_t)next;
            ps->strings |= ll > 0;
            ps->need = next + (size_t)ll + 2;
            ps->state = P_BULK;
            ps->off = next;
            continue;
        case '*':
        case '%':
        case '~':
        case '|':
        case '>': {
            const char *bad = t == '*' ? "Protocol error: invalid multibulk length"
                                       : "Protocol error: invalid aggregate length";
            if (!parse_ll(s, cs, clen, &ll)) {
                if (clen == 1 && at(s, cs) == '?')
                    return perr(c, RILL_EDECODE,
                                "Protocol error: streamed aggregates are not supported");
                return perr(c, RILL_EDECODE, "%s", bad);
            }
            if (commands && ps->depth == 0 && ll <= 0) {
                /* "*0" and "*-1" carry no command: Redis skips them. */
                rill_buf_skip(in, next);
                reset(ps);
                return CONSUMED;
            }
            if (ll == -1 && t == '*') {
                if (!(v = push_val(ps)))
                    return -ENOMEM;
                v->type = RILL_RESP_NULL;
                v->flags = RILL_RESP_F_NULL_ARRAY;
                break;
            }
            if (ll < 0)
                return perr(c, RILL_EDECODE, "%s", bad);
            if ((uint64_t)ll > c->cfg.max_elements)
                return perr(c, RILL_ETOOLARGE, "%s", bad);
            uint64_t kids = (uint64_t)ll * (t == '%' || t == '|' ? 2 : 1) + (t == '|');
            uint32_t idx = ps->nvals;
            if (!(v = push_val(ps)))
                return -ENOMEM;
            v->type = t;
            v->n = (uint32_t)kids;
            if (kids) {
                int rc = push_frame(c, idx, (uint32_t)kids);
                if (rc)
                    return rc;
                ps->off = next;
                continue;
            }
            v->len = 1;
            v->flags = RILL_RESP_F_FLAT;
            break;
        }
        default:
            return -EINVAL; /* unreachable: checked above */
        }
        ps->off = next;
        if (value_done(ps))
            return FRAME_DONE;
    }
}

/* The frame in ps->vals is complete: make the message and consume it. */
static int finish(struct rill__resp_codec *c, const struct src *s, struct rill_buf *in)
{
    struct rill__resp_parser *ps = &c->ps;
    size_t len = ps->off;
    const char *base = NULL;
    struct rill_buf *hold = NULL;
    int rc = 0;
    if (ps->strings) {
        if (s->p && rill_buf_kind(in) != RILL_BUF_COMPOSITE) {
            /* The cumulation is one buffer: keep it (its bytes never move
             * while shared, see rill_buf_discard_read). */
            base = (const char *)s->p;
            hold = rill_buf_retain(in);
        } else {
            struct iovec iov;
            size_t covered = 0;
            rill_buf_iovec(in, s->rd, len, &iov, 1, &covered);
            if (covered == len) { /* inside one component: a view of it */
                rc = rill_buf_slice(in, s->rd, len, &hold);
                base = iov.iov_base;
            } else { /* across reads: one copy of the frame */
                rc = rill_buf_copy(in, s->rd, len, &hold);
                if (rc == 0) {
                    size_t n;
                    base = (const char *)rill_buf_read_ptr(hold, &n);
                }
            }
            if (rc)
                return rc;
        }
    }
    struct rill_resp *r;
    rc = rill__resp_alloc(ps->nvals, 0, &r);
    if (rc) {
        if (hold)
            rill_buf_release(hold);
        return rc;
    }
    memcpy(r->vals, ps->vals, (size_t)ps->nvals * sizeof(*r->vals));
    for (uint32_t i = 0; i < ps->nvals; i++) {
        struct rill_resp_val *v = &r->vals[i];
        if (rill_resp_is_string(v))
            v->str = v->len ? base + (uintptr_t)v->str : "";
    }
    r->_hold = hold;
    rill_buf_skip(in, len);
    reset(ps);
    rill_decoder_emit(&c->dec, &r->msg);
    return 0;
}

int rill__resp_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct rill__resp_codec *c = (struct rill__resp_codec *)d;
    struct src s;
    size_t n = 0;
    s.p = rill_buf_read_ptr(in, &n);
    s.n = rill_buf_readable(in);
    s.b = in;
    s.rd = rill_buf_reader_index(in);
    int rc = parse(c, &s, in);
    if (rc == FRAME_DONE)
        return finish(c, &s, in);
    return rc < 0 ? rc : 0;
}
