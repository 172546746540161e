/* Header fields: entries (offsets) into one text block of "name\0value\0"
 * pairs. Growth copies only the live fields into a block twice the size,
 * so removed fields' text goes then; the first block (inline in the
 * message) is never freed here, because a message keeps its start line
 * there. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http/http_internal.h"

#define HEAP_ENT  1u
#define HEAP_TEXT 2u

/* Field values are at most this long (they are offsets in uint32_t, and a
 * longer one is surely a mistake). */
#define MAX_FIELD (64u * 1024u)

const uint8_t rill__http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,         ['&'] = 1,         ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,         ['^'] = 1,         ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

const uint8_t rill__http_vchar[256] = {
    ['\t'] = 1,
    [0x20 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

void rill__http_headers_init_inline(struct rill_http_headers *h, struct rill__http_hent *ent,
                                    uint32_t ent_cap, char *text, uint32_t text_cap)
{
    h->_ent = ent;
    h->_text = text;
    h->_n = 0;
    h->_ent_cap = ent_cap;
    h->_len = 0;
    h->_text_cap = text_cap;
    h->_heap = 0;
}

void rill_http_headers_init(struct rill_http_headers *h)
{
    rill__http_headers_init_inline(h, NULL, 0, NULL, 0);
}

void rill_http_headers_fini(struct rill_http_headers *h)
{
    if (h->_heap & HEAP_ENT)
        free(h->_ent);
    if (h->_heap & HEAP_TEXT)
        free(h->_text);
    rill_http_headers_init(h);
}

void rill__http_headers_push(struct rill_http_headers *h, uint32_t name, uint32_t name_len,
                             uint32_t value, uint32_t value_len)
{
    h->_ent[h->_n++] = (struct rill__http_hent){
        .name = name, .value = value, .name_len = name_len, .value_len = value_len
    };
}

int rill_http_headers_at(const struct rill_http_headers *h, size_t i, struct rill_http_field *f)
{
    if (i >= h->_n)
        return -ERANGE;
    const struct rill__http_hent *e = &h->_ent[i];
    f->name = h->_text + e->name;
    f->name_len = e->name_len;
    f->value = h->_text + e->value;
    f->value_len = e->value_len;
    return 0;
}

static bool name_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rill__http_lower(a[i]) != rill__http_lower(b[i]))
            return false;
    return true;
}

static ssize_t findn(const struct rill_http_headers *h, const char *name, size_t nlen, size_t from)
{
    for (size_t i = from; i < h->_n; i++) {
        const struct rill__http_hent *e = &h->_ent[i];
        if (e->name_len == nlen && name_eq(h->_text + e->name, name, nlen))
            return (ssize_t)i;
    }
    return -ENOENT;
}

const char *rill_http_headers_getn(const struct rill_http_headers *h, const char *name, size_t nlen,
                                   size_t *len)
{
    ssize_t i = findn(h, name, nlen, 0);
    if (i < 0)
        return NULL;
    if (len)
        *len = h->_ent[i].value_len;
    return h->_text + h->_ent[i].value;
}

const char *rill_http_headers_get(const struct rill_http_headers *h, const char *name, size_t *len)
{
    return rill_http_headers_getn(h, name, strlen(name), len);
}

ssize_t rill_http_headers_find(const struct rill_http_headers *h, const char *name, size_t from)
{
    return findn(h, name, strlen(name), from);
}

bool rill__http_each_token(const char *v, size_t n,
                           bool (*fn)(void *arg, const char *t, size_t len), void *arg)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && !fn(arg, v + s, e - s))
            return false;
    }
    return true;
}

struct token_match {
    const char *token;
    size_t len;
};

static bool token_differs(void *arg, const char *t, size_t len)
{
    const struct token_match *m = arg;
    return !(len == m->len && name_eq(t, m->token, len));
}

bool rill_http_headers_has_token(const struct rill_http_headers *h, const char *name,
                                 const char *token)
{
    struct token_match m = { token, strlen(token) };
    size_t nlen = strlen(name);
    for (ssize_t i = findn(h, name, nlen, 0); i >= 0; i = findn(h, name, nlen, (size_t)i + 1)) {
        const struct rill__http_hent *e = &h->_ent[i];
        if (!rill__http_each_token(h->_text + e->value, e->value_len, token_differs, &m))
            return true;
    }
    return false;
}

/* Room for one more entry and @text more bytes of text. */
static int reserve(struct rill_http_headers *h, size_t text)
{
    if (h->_n == h->_ent_cap) {
        uint32_t cap = h->_ent_cap ? h->_ent_cap * 2 : 8;
        struct rill__http_hent *e = malloc(cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        if (h->_n)
            memcpy(e, h->_ent, h->_n * sizeof(*e));
        if (h->_heap & HEAP_ENT)
            free(h->_ent);
        h->_ent = e;
        h->_ent_cap = cap;
        h->_heap |= HEAP_ENT;
    }
    if (h->_len + text <= h->_text_cap)
        return 0;
    /* A new block holding only the live fields (removed ones' text goes). */
    size_t live = 0;
    for (uint32_t i = 0; i < h->_n; i++)
        live += h->_ent[i].name_len + h->_ent[i].value_len + 2;
    size_t cap = 2 * (live + text);
    if (cap < 256)
        cap = 256;
    if (cap > UINT32_MAX)
        return -ENOMEM;
    char *t = malloc(cap);
    if (!t)
        return -ENOMEM;
    uint32_t at = 0;
    for (uint32_t i = 0; i < h->_n; i++) {
        struct rill__http_hent *e = &h->_ent[i];
        memcpy(t + at, h->_text + e->name, e->name_len + 1);
        e->name = at;
        at += e->name_len + 1;
        memcpy(t + at, h->_text + e->value, e->value_len + 1);
        e->value = at;
        at += e->value_len + 1;
    }
    if (h->_heap & HEAP_TEXT)
        free(h->_text);
    h->_text = t;
    h->_text_cap = (uint32_t)cap;
    h->_len = at;
    h->_heap |= HEAP_TEXT;
    return 0;
}

int rill_http_headers_addn(struct rill_http_headers *h, const char *name, size_t nlen,
                           const char *value, size_t vlen)
{
    while (vlen && (value[0] == ' ' || value[0] == '\t')) {
        value++;
        vlen--;
    }
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        vlen--;
    if (nlen == 0 || nlen > MAX_FIELD || vlen > MAX_FIELD)
        return -EINVAL;
    int err = reserve(h, nlen + vlen + 2);
    if (err)
        return err;
    /* Copy and check in one pass, without a branch per byte; nothing is
     * committed until both are known good. */
    uint32_t at = h->_len;
    char *t = h->_text + at;
    uint8_t ok = 1;
    for (size_t i = 0; i < nlen; i++) {
        uint8_t c = (uint8_t)name[i];
        ok &= rill__http_tchar[c];
        t[i] = (char)c;
    }
    t[nlen] = '\0';
    char *v = t + nlen + 1;
    ok &= rill__http_value_end(value, value + vlen) == value + vlen;
    memcpy(v, value, vlen);
    v[vlen] = '\0';
    if (!ok)
        return -EINVAL;
    h->_len = at + (uint32_t)(nlen + vlen + 2);
    rill__http_headers_push(h, at, (uint32_t)nlen, at + (uint32_t)nlen + 1, (uint32_t)vlen);
    return 0;
}

int rill_http_headers_add(struct rill_http_headers *h, const char *name, const char *value)
{
    return rill_http_headers_addn(h, name, strlen(name), value, strlen(value));
}

int rill_http_headers_add_u64(struct rill_http_headers *h, const char *name, uint64_t value)
{
    char v[24];
    int n = snprintf(v, sizeof(v), "%" PRIu64, value);
    return rill_http_headers_addn(h, name, strlen(name), v, (size_t)n);
}

int rill_http_headers_remove(struct rill_http_headers *h, const char *name)
{
    size_t nlen = strlen(name);
    uint32_t w = 0;
    int removed = 0;
    for (uint32_t i = 0; i < h->_n; i++) {
        const struct rill__http_hent *e = &h->_ent[i];
        if (e->name_len == nlen && name_eq(h->_text + e->name, name, nlen))
            removed++;
        else
            h->_ent[w++] = *e;
    }
    h->_n = w;
    return removed;
}

int rill_http_headers_set(struct rill_http_headers *h, const char *name, const char *value)
{
    /* Validate before removing, so a bad value leaves the old field. */
    size_t nlen = strlen(name), vlen = strlen(value);
    if (rill__http_value_end(value, value + vlen) != value + vlen)
        return -EINVAL;
    rill_http_headers_remove(h, name);
    return rill_http_headers_addn(h, name, nlen, value, vlen);
}

int rill_http_headers_set_u64(struct rill_http_headers *h, const char *name, uint64_t value)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRIu64, value);
    return rill_http_headers_set(h, name, v);
}

void rill_http_headers_clear(struct rill_http_headers *h)
{
    h->_n = 0;
}

int rill_http_headers_copy(struct rill_http_headers *dst, const struct rill_http_headers *src)
{
    for (uint32_t i = 0; i < src->_n; i++) {
        const struct rill__http_hent *e = &src->_ent[i];
        int err = rill_http_headers_addn(dst, src->_text + e->name, e->name_len,
                                         src->_text + e->value, e->value_len);
        if (err)
            return err;
    }
    return 0;
}
