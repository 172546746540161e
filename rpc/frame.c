/* RPC frames: the message object, its wire size, and encoding (with the
 * per-connection name interning). The byte layout is docs/rpc-wire.md. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/encoder.h"
#include "rill/error.h"
#include "rpc/rpc_internal.h"

static void frame_destroy(struct rill_msg *m)
{
    struct rill_rpc_frame *f = (struct rill_rpc_frame *)m;
    free(f->service);
    free(f->method);
    free(f->status_msg);
    for (uint16_t i = 0; i < f->nmd; i++)
        free((void *)f->md[i].key); /* key and value share one block */
    free(f->md);
    if (f->payload)
        rill_buf_release(f->payload);
    free(f);
}

int rill_rpc_frame_new(enum rill_rpc_frame_type type, uint64_t id, struct rill_rpc_frame **out)
{
    if (type < RILL_RPC_REQUEST || type > RILL_RPC_GOAWAY)
        return -EINVAL;
    struct rill_rpc_frame *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    rill_msg_init(&f->msg, RILL_MSG_RPC_FRAME, frame_destroy);
    f->type = (uint8_t)type;
    f->id = id;
    *out = f;
    return 0;
}

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= RILL_RPC_NAME_MAX;
}

int rill_rpc_frame_set_names(struct rill_rpc_frame *f, const char *service, const char *method)
{
    if (!name_ok(service) || !name_ok(method))
        return -EINVAL;
    char *s = strdup(service), *m = strdup(method);
    if (!s || !m) {
        free(s);
        free(m);
        return -ENOMEM;
    }
    free(f->service);
    free(f->method);
    f->service = s;
    f->method = m;
    return 0;
}

int rill_rpc_frame_set_status(struct rill_rpc_frame *f, int status, const char *msg)
{
    if (status < 0 || status > 65535)
        return -EINVAL;
    char *copy = NULL;
    if (msg && *msg) {
        size_t n = strnlen(msg, 65535);
        copy = malloc(n + 1);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, msg, n);
        copy[n] = '\0';
    }
    free(f->status_msg);
    f->status_msg = copy;
    f->status = (uint16_t)status;
    return 0;
}

int rill_rpc_frame_add_md(struct rill_rpc_frame *f, const char *key, const void *val,
                          uint32_t val_len)
{
    size_t kl = key ? strlen(key) : 0;
    if (kl == 0 || kl > 65535 || f->nmd == 65535 || (val_len && !val))
        return -EINVAL;
    struct rill_rpc_md *v = realloc(f->md, (f->nmd + 1u) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    f->md = v;
    char *blk = malloc(kl + 1 + (size_t)val_len + 1);
    if (!blk)
        return -ENOMEM;
    memcpy(blk, key, kl + 1);
    if (val_len)
        memcpy(blk + kl + 1, val, val_len);
    blk[kl + 1 + val_len] = '\0';
    v[f->nmd++] = (struct rill_rpc_md){ .key = blk,
                                        .key_len = (uint16_t)kl,
                                        .val = (const uint8_t *)blk + kl + 1,
                                        .val_len = val_len };
    return 0;
}

const struct rill_rpc_md *rill_rpc_frame_md(const struct rill_rpc_frame *f, const char *key)
{
    for (uint16_t i = 0; i < f->nmd; i++)
        if (strcmp(f->md[i].key, key) == 0)
            return &f->md[i];
    return NULL;
}

void rill_rpc_frame_set_payload(struct rill_rpc_frame *f, struct rill_buf *payload)
{
    if (f->payload)
        rill_buf_release(f->payload);
    f->payload = payload;
}

struct rill_buf *rill_rpc_frame_take_payload(struct rill_rpc_frame *f)
{
    struct rill_buf *b = f->payload;
    f->payload = NULL;
    return b;
}

const char *rill_rpc_frame_type_name(int type)
{
    static const char *const names[] = { "?",    "REQUEST", "RESPONSE", "CANCEL",
                                         "PING", "PONG",    "GOAWAY" };
    return type >= 1 && type <= RILL_RPC_GOAWAY ? names[type] : names[0];
}

static size_t md_size(const struct rill_rpc_frame *f)
{
    size_t n = 2;
    for (uint16_t i = 0; i < f->nmd; i++)
        n += 2 + f->md[i].key_len + 4 + f->md[i].val_len;
    return n;
}

static size_t payload_size(const struct rill_rpc_frame *f)
{
    return f->payload ? rill_buf_readable(f->payload) : 0;
}

static size_t status_msg_len(const struct rill_rpc_frame *f)
{
    return f->status_msg ? strlen(f->status_msg) : 0;
}

/* Bytes after the length field, names in full when @with_names. */
size_t rill__rpc_wire_size(const struct rill_rpc_frame *f, bool with_names)
{
    size_t n = RILL_RPC_HEADER_LEN - 4;
    switch (f->type) {
    case RILL_RPC_REQUEST:
        n += 4 + 8;
        if (with_names)
            n += 2 + strlen(f->service) + strlen(f->method);
        break;
    case RILL_RPC_RESPONSE:
    case RILL_RPC_GOAWAY:
        n += 4 + status_msg_len(f);
        break;
    default:
        break;
    }
    if ((f->type == RILL_RPC_REQUEST || f->type == RILL_RPC_RESPONSE) && f->nmd)
        n += md_size(f);
    if (f->type != RILL_RPC_CANCEL && f->type != RILL_RPC_GOAWAY)
        n += payload_size(f);
    return n;
}

size_t rill_rpc_frame_wire_size(const struct rill_rpc_frame *f)
{
    return rill__rpc_wire_size(f, f->type == RILL_RPC_REQUEST && f->service && f->method);
}

/* ---- interning ---- */

static uint32_t pair_hash(const char *s, const char *m)
{
    uint32_t h = 2166136261u; /* FNV-1a over "service\0method" */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ 0) * 16777619u;
    for (; *m; m++)
        h = (h ^ (uint8_t)*m) * 16777619u;
    return h;
}

void rill__rpc_intern_free(struct rill__rpc_intern *t)
{
    for (uint32_t i = 0; i < t->n; i++) {
        free(t->v[i].service);
        free(t->v[i].method);
    }
    free(t->v);
    free(t->slots);
    *t = (struct rill__rpc_intern){ 0 };
}

uint32_t rill__rpc_intern_find(const struct rill__rpc_intern *t, const char *service,
                               const char *method)
{
    if (!t->nslots)
        return 0;
    uint32_t h = pair_hash(service, method), mask = t->nslots - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t s = t->slots[i];
        if (s == 0)
            return 0;
        const struct rill__rpc_name *e = &t->v[s - 1];
        if (e->hash == h && strcmp(e->service, service) == 0 && strcmp(e->method, method) == 0)
            return s;
    }
}

static void slot_put(uint32_t *slots, uint32_t nslots, uint32_t hash, uint32_t idx1)
{
    uint32_t mask = nslots - 1;
    uint32_t i = hash & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = idx1;
}

int rill__rpc_intern_add(struct rill__rpc_intern *t, const char *service, const char *method)
{
    if (t->n >= RILL_RPC_INTERN_MAX)
        return RILL_ETOOLARGE;
    if (t->n == t->alloc) {
        uint32_t na = t->alloc ? t->alloc * 2 : 8;
        struct rill__rpc_name *v = realloc(t->v, na * sizeof(*v));
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->alloc = na;
    }
    if ((t->n + 1) * 2 > t->nslots) {
        uint32_t ns = t->nslots ? t->nslots * 2 : 16;
        uint32_t *slots = calloc(ns, sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        for (uint32_t i = 0; i < t->n; i++)
            slot_put(slots, ns, t->v[i].hash, i + 1);
        free(t->slots);
        t->slots = slots;
        t->nslots = ns;
    }
    char *s = strdup(service), *m = strdup(method);
    if (!s || !m) {
        free(s);
        free(m);
        return -ENOMEM;
    }
    uint32_t h = pair_hash(service, method);
    t->v[t->n] = (struct rill__rpc_name){ .service = s, .method = m, .hash = h };
    t->n++;
    slot_put(t->slots, t->nslots, h, t->n);
    return (int)t->n;
}

/* ---- encoding ---- */

/* Append @p's readable bytes without moving its indices (the frame may be
 * encoded again, by a retry say): small contiguous ones are copied, others
 * go in as a view, without copying. rill_encoder_append alone would advance
 * the reader index of a small buffer it copies but not of a large one. */
static int append_payload(struct rill_buf **out, struct rill_buf *p)
{
    size_t n;
    const uint8_t *ptr = rill_buf_read_ptr(p, &n);
    if (ptr && n <= 512)
        return rill_buf_write_bytes(*out, ptr, n);
    struct rill_buf *view;
    int rc = rill_buf_slice(p, rill_buf_reader_index(p), rill_buf_readable(p), &view);
    return rc ? rc : rill_encoder_append(out, view);
}

static int put_str16(struct rill_buf *b, const char *s, size_t n)
{
    int rc = rill_buf_write_u16_be(b, (uint16_t)n);
    return rc ? rc : (n ? rill_buf_write_bytes(b, s, n) : 0);
}

int rill__rpc_encode(const struct rill_rpc_frame *f, struct rill__rpc_intern *names,
                     size_t max_frame, struct rill_buf **out)
{
    if (f->type < RILL_RPC_REQUEST || f->type > RILL_RPC_GOAWAY)
        return -EINVAL;
    uint32_t ref = 0;
    bool define = false;
    if (f->type == RILL_RPC_REQUEST) {
        if (!name_ok(f->service) || !name_ok(f->method))
            return -EINVAL;
        ref = rill__rpc_intern_find(names, f->service, f->method);
        define = ref == 0;
    }
    size_t len = rill__rpc_wire_size(f, define);
    if (len > max_frame || len > UINT32_MAX)
        return RILL_ETOOLARGE;
    if (define) {
        int rc = rill__rpc_intern_add(names, f->service, f->method);
        if (rc < 0)
            return rc;
        ref = (uint32_t)rc;
    }
    struct rill_buf *b = *out;
    uint8_t flags = define ? RILL_RPC_F_NAMES : 0;
    bool has_md = (f->type == RILL_RPC_REQUEST || f->type == RILL_RPC_RESPONSE) && f->nmd;
    if (has_md)
        flags |= RILL_RPC_F_METADATA;
    int rc = rill_buf_write_u32_be(b, (uint32_t)len);
    rc = rc ? rc : rill_buf_write_u8(b, f->type);
    rc = rc ? rc : rill_buf_write_u8(b, flags);
    rc = rc ? rc : rill_buf_write_u64_be(b, f->id);
    if (rc)
        return rc;
    switch (f->type) {
    case RILL_RPC_REQUEST:
        rc = rill_buf_write_u32_be(b, ref);
        if (!rc && define) {
            size_t sl = strlen(f->service), ml = strlen(f->method);
            rc = rill_buf_write_u8(b, (uint8_t)sl);
            rc = rc ? rc : rill_buf_write_bytes(b, f->service, sl);
            rc = rc ? rc : rill_buf_write_u8(b, (uint8_t)ml);
            rc = rc ? rc : rill_buf_write_bytes(b, f->method, ml);
        }
        rc = rc ? rc : rill_buf_write_u64_be(b, f->deadline_ns);
        break;
    case RILL_RPC_RESPONSE:
    case RILL_RPC_GOAWAY:
        rc = rill_buf_write_u16_be(b, f->status);
        rc = rc ? rc : put_str16(b, f->status_msg, status_msg_len(f));
        break;
    default:
        break;
    }
    if (!rc && has_md) {
        rc = rill_buf_write_u16_be(b, f->nmd);
        for (uint16_t i = 0; !rc && i < f->nmd; i++) {
            rc = put_str16(b, f->md[i].key, f->md[i].key_len);
            rc = rc ? rc : rill_buf_write_u32_be(b, f->md[i].val_len);
            if (!rc && f->md[i].val_len)
                rc = rill_buf_write_bytes(b, f->md[i].val, f->md[i].val_len);
        }
    }
    if (rc)
        return rc;
    if (f->payload && f->type != RILL_RPC_CANCEL && f->type != RILL_RPC_GOAWAY &&
        rill_buf_readable(f->payload))
        rc = append_payload(out, f->payload);
    return rc;
}
