/* String messages, the string decoder and the string (line) encoder. See
 * include/rill/string_codec.h. */
#include "rill/string_codec.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/encoder.h"
#include "rill/error.h"
#include "rill/log.h"
#include "rill/pipeline.h"

/* ---- string messages ---- */

static void string_destroy(struct rill_msg *m)
{
    free(m);
}

/* A string of @len bytes (uninitialised but for the NUL after them). */
static int string_alloc(size_t len, struct rill_string **out)
{
    if (len > SIZE_MAX - sizeof(struct rill_string) - 1)
        return -ENOMEM;
    struct rill_string *s = malloc(sizeof(*s) + len + 1);
    if (!s)
        return -ENOMEM;
    rill_msg_init(&s->msg, RILL_MSG_STRING, string_destroy);
    s->_len = len;
    s->_data[len] = '\0';
    *out = s;
    return 0;
}

int rill_string_from_bytes(const void *bytes, size_t len, struct rill_string **out)
{
    if (!bytes && len)
        return -EINVAL;
    int rc = string_alloc(len, out);
    if (rc == 0 && len)
        memcpy((*out)->_data, bytes, len);
    return rc;
}

int rill_string_new(const char *s, struct rill_string **out)
{
    if (!s)
        return -EINVAL;
    return rill_string_from_bytes(s, strlen(s), out);
}

int rill_string_vprintf(struct rill_string **out, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    int rc = string_alloc((size_t)n, out);
    if (rc == 0)
        vsnprintf((*out)->_data, (size_t)n + 1, fmt, ap);
    return rc;
}

int rill_string_printf(struct rill_string **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = rill_string_vprintf(out, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- UTF-8 ---- */

/* Offset of the first byte of the first sequence that is not valid UTF-8
 * (RFC 3629: no overlong forms, no surrogates, nothing over U+10FFFF,
 * nothing truncated), or -1 when all @n bytes are valid. */
static ssize_t utf8_invalid_at(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII runs, eight bytes at a time. */
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* Sequence length and the range of its second byte (Table 3-7 of
         * the Unicode standard). */
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* over U+10FFFF */
        } else {
            return (ssize_t)i;
        }
        if (n - i <= need || p[i + 1] < lo || p[i + 1] > hi)
            return (ssize_t)i;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return (ssize_t)i;
        i += need + 1;
    }
    return -1;
}

/* ---- decoder ---- */

struct sd_state {
    bool validate, keep_open;
    bool failed; /* an error closed the channel: drop what still comes */
};

static int sd_added(struct rill_ctx *ctx)
{
    struct sd_state *s = rill_ctx_state(ctx);
    const struct rill_string_decoder_config *c = rill_ctx_arg(ctx);
    if (c) {
        s->validate = c->validate_utf8;
        s->keep_open = c->keep_open_on_error;
    }
    return 0;
}

static void sd_error(struct rill_ctx *ctx, int err, const char *why)
{
    struct sd_state *s = rill_ctx_state(ctx);
    rill_ctx_fire_exception(ctx, err, why);
    if (!s->keep_open) {
        s->failed = true;
        rill_channel_close_with(rill_ctx_channel(ctx), err, NULL);
    }
}

static void sd_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct sd_state *s = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (!b) {
        rill_ctx_fire_read(ctx, msg);
        return;
    }
    if (s->failed) {
        rill_buf_release(b);
        return;
    }
    size_t n = rill_buf_readable(b);
    struct rill_string *str = NULL;
    int rc = string_alloc(n, &str);
    if (rc == 0 && n)
        rc = rill_buf_get_bytes(b, rill_buf_reader_index(b), str->_data, n);
    rill_buf_release(b);
    if (rc != 0) {
        char why[96];
        if (str)
            rill_string_release(str);
        snprintf(why, sizeof(why), "cannot make a string of %zu bytes", n);
        sd_error(ctx, rc, why);
        return;
    }
    if (s->validate) {
        ssize_t bad = utf8_invalid_at((const uint8_t *)str->_data, n);
        if (bad >= 0) {
            char why[128];
            snprintf(why, sizeof(why), "invalid UTF-8 at byte %zd of %zu (0x%02x): string dropped",
                     bad, n, (unsigned)(uint8_t)str->_data[bad]);
            rill_string_release(str);
            sd_error(ctx, RILL_EDECODE, why);
            return;
        }
    }
    rill_ctx_fire_read(ctx, &str->msg);
}

const struct rill_handler rill_string_decoder = {
    .name = "string-decoder",
    .ctx_size = sizeof(struct sd_state),
    .added = sd_added,
    .read = sd_read,
};

/* ---- encoder ---- */

/* Strings up to this size are copied into the output buffer; larger ones
 * are wrapped and appended as a component (no copy). Matches the copy
 * threshold of rill_encoder_append (encoder.h). */
#define SE_COPY_MAX RILL_ENCODER_APPEND_COPY_MAX

struct se_state {
    uint8_t seplen;
    char sep[2];
};

static bool se_match(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    return msg->type == RILL_MSG_STRING;
}

static size_t se_size_hint(struct rill_ctx *ctx, const struct rill_msg *msg)
{
    const struct se_state *s = rill_ctx_state(ctx);
    size_t n = ((const struct rill_string *)msg)->_len;
    return (n <= SE_COPY_MAX ? n : 0) + s->seplen + 1;
}

static void se_unwrap(void *mem, void *arg)
{
    (void)mem;
    rill_string_release(arg);
}

static int se_encode(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_buf **out)
{
    const struct se_state *s = rill_ctx_state(ctx);
    struct rill_string *str = rill_string_from_msg(msg);
    int rc;
    if (str->_len <= SE_COPY_MAX) {
        rc = rill_buf_write_bytes(*out, str->_data, str->_len);
    } else {
        /* The wrapped buffer keeps the string alive. */
        struct rill_buf *w;
        rill_msg_retain(&str->msg);
        rc = rill_buf_wrap(str->_data, str->_len, str->_len, se_unwrap, str, &w);
        if (rc != 0) {
            rill_string_release(str);
            return rc;
        }
        rc = rill_encoder_append(out, w);
    }
    if (rc == 0 && s->seplen)
        rc = rill_buf_write_bytes(*out, s->sep, s->seplen);
    return rc;
}

static const struct rill_encoder_ops se_ops = {
    .match = se_match,
    .size_hint = se_size_hint,
    .encode = se_encode,
};

static int se_added(struct rill_ctx *ctx)
{
    struct se_state *s = rill_ctx_state(ctx);
    const struct rill_string_encoder_config *c = rill_ctx_arg(ctx);
    switch (c ? c->line_sep : RILL_LINE_SEP_NONE) {
    case RILL_LINE_SEP_NONE:
        return 0;
    case RILL_LINE_SEP_CRLF:
        memcpy(s->sep, "\r\n", 2);
        s->seplen = 2;
        return 0;
    case RILL_LINE_SEP_LF:
        s->sep[0] = '\n';
        s->seplen = 1;
        return 0;
    }
    return -EINVAL;
}

static void se_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill_encoder_write(ctx, &se_ops, msg, p);
}

const struct rill_handler rill_string_encoder = {
    .name = "string-encoder",
    .ctx_size = sizeof(struct se_state),
    .added = se_added,
    .write = se_write,
};
