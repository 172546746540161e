/* The oracle shared by the HTTP codec fuzz targets (fuzz_http_server.c,
 * fuzz_http_client.c).
 *
 * A target records what reaches the tail of its pipeline (heads with their
 * fields, joined bodies, trailers, exception codes) as text in a log, runs
 * the input twice (whole, and cut into reads as fuzz.h says) and requires
 * the two logs to be equal. An exception cuts a log: what a failing
 * pipeline still delivers is not part of the contract, so nothing after it
 * is compared. Besides, every field must be a proper string and every
 * exception must carry a text. */
#ifndef RILL_FUZZ_HTTP_ORACLE_H
#define RILL_FUZZ_HTTP_ORACLE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/http.h"

/* NUL-terminated text. */
struct hz_log {
    char *v;
    size_t n, cap;
    bool cut; /* an exception was logged: nothing more is compared */
};

static inline void hz_put(struct hz_log *l, const void *p, size_t n)
{
    if (l->cut)
        return;
    if (l->n + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        while (cap < l->n + n + 1)
            cap *= 2;
        l->v = realloc(l->v, cap);
        if (!l->v)
            abort();
        l->cap = cap;
    }
    memcpy(l->v + l->n, p, n);
    l->n += n;
    l->v[l->n] = '\0';
}

static inline void hz_putf(struct hz_log *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void hz_putf(struct hz_log *l, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    hz_put(l, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* The readable bytes of @b. */
static inline void hz_put_buf(struct hz_log *l, const struct rill_buf *b)
{
    for (size_t i = rill_buf_reader_index(b); b && i < rill_buf_writer_index(b); i++) {
        uint8_t c;
        rill_buf_get_u8(b, i, &c);
        hz_put(l, &c, 1);
    }
}

static inline void hz_put_fields(struct hz_log *l, const struct rill_http_headers *h)
{
    struct rill_http_field f;
    for (size_t i = 0; rill_http_headers_at(h, i, &f) == 0; i++) {
        if (strlen(f.name) != f.name_len || strlen(f.value) != f.value_len || !f.name_len) {
            fprintf(stderr, "fuzz: field %zu is not a proper string\n", i);
            abort();
        }
        hz_putf(l, "|%s=%s", f.name, f.value);
    }
}

/* The end of a message: its joined @body and its @trailers. */
static inline void hz_put_end(struct hz_log *l, const struct hz_log *body,
                              const struct rill_http_headers *trailers)
{
    hz_put(l, " body[", 6);
    hz_put(l, body->v ? body->v : "", body->n);
    hz_put(l, "]", 1);
    hz_put_fields(l, trailers);
    hz_put(l, "\n", 1);
}

/* An exception reached the tail: log its code and cut @l. */
static inline void hz_exception(struct hz_log *l, int err, const char *why)
{
    if (!why || !*why) {
        fprintf(stderr, "fuzz: exception %d without a text\n", err);
        abort();
    }
    hz_putf(l, "EXC %d\n", err);
    l->cut = true;
}

/* Abort unless the whole run's log @a equals the cut run's @b. @what: what
 * the codec did differently ("decoded", "answered"). */
static inline void hz_expect_same(const struct hz_log *a, const struct hz_log *b, const char *what)
{
    if (a->n != b->n || (a->n && memcmp(a->v, b->v, a->n) != 0)) {
        fprintf(stderr, "fuzz: %s differently when cut:\n--- whole\n%s\n--- cut\n%s\n", what,
                a->v ? a->v : "", b->v ? b->v : "");
        abort();
    }
}

/* A copy of the input after its first byte, with the split byte set to 0:
 * the stream in one read. The caller frees it. */
static inline uint8_t *hz_whole(const uint8_t *data, size_t size)
{
    uint8_t *whole = malloc(size - 1);
    if (!whole)
        abort();
    memcpy(whole, data + 1, size - 1);
    whole[0] = 0;
    return whole;
}

#endif
