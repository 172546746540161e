/* One shard's keyspace: an open-addressing hash table (linear probing,
 * backward-shift deletion, no tombstones) of items that hold the key and a
 * small value inline, so a GET costs one probe and one memcpy into the
 * reply. Expiry is lazy (an expired key is deleted when touched) plus an
 * active sweep of part of the table on a timer. Only the shard's loop
 * thread calls these. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "rill/buf.h"
#include "rill/clock.h"
#include "rill/loop.h"

#define INITIAL_CAP 1024u

/* A wyhash-style mix: fast on the short keys a cache sees. */
static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t kv_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix(h ^ w, 0xa0761d6478bd642full);
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)s[i] << (8 * i);
    h = mix(h ^ w, 0xe7037ed1a0b428dbull);
    return mix(h, 0x8ebc6af09c88c6e3ull);
}

int kv_table_init(struct kv_table *t)
{
    t->slots = calloc(INITIAL_CAP, sizeof(*t->slots));
    if (!t->slots)
        return -ENOMEM;
    t->mask = INITIAL_CAP - 1;
    t->count = t->expires = 0;
    return 0;
}

static void item_free(struct kv_item *it)
{
    if (it->big)
        rill_buf_release(it->big);
    free(it);
}

void kv_table_free(struct kv_table *t)
{
    if (!t->slots)
        return;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slots[i].item)
            item_free(t->slots[i].item);
    free(t->slots);
    t->slots = NULL;
}

int64_t kv_now_ms(struct kv_shard *sh)
{
    return (int64_t)(rill_loop_now(sh->loop) / RILL_NS_PER_MS);
}

static void publish(struct kv_shard *sh)
{
    atomic_store_explicit(&sh->nkeys, sh->t.count, memory_order_relaxed);
    atomic_store_explicit(&sh->nexp, sh->t.expires, memory_order_relaxed);
}

static int grow(struct kv_table *t)
{
    size_t cap = (t->mask + 1) * 2;
    struct kv_slot *s = calloc(cap, sizeof(*s));
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i <= t->mask; i++) {
        struct kv_slot *o = &t->slots[i];
        if (!o->item)
            continue;
        size_t j = o->hash & (cap - 1);
        while (s[j].item)
            j = (j + 1) & (cap - 1);
        s[j] = *o;
    }
    free(t->slots);
    t->slots = s;
    t->mask = cap - 1;
    return 0;
}

/* The slot holding @key, or the empty slot where it would go. */
static size_t probe(const struct kv_table *t, const char *key, size_t klen, uint64_t h)
{
    size_t i = h & t->mask;
    for (;;) {
        const struct kv_slot *s = &t->slots[i];
        if (!s->item)
            return i;
        if (s->hash == h && s->item->klen == klen && memcmp(s->item->data, key, klen) == 0)
            return i;
        i = (i + 1) & t->mask;
    }
}

/* Remove slot @i, shifting later members of its cluster back. */
static void remove_at(struct kv_shard *sh, size_t i)
{
    struct kv_table *t = &sh->t;
    struct kv_item *it = t->slots[i].item;
    if (it->expire_ms)
        t->expires--;
    t->count--;
    item_free(it);
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (!t->slots[j].item)
            break;
        size_t home = t->slots[j].hash & t->mask;
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].item = NULL;
    t->slots[i].hash = 0;
    publish(sh);
}

static bool expired(struct kv_shard *sh, const struct kv_item *it)
{
    return it->expire_ms && it->expire_ms <= kv_now_ms(sh);
}

struct kv_item *kv_get(struct kv_shard *sh, const char *key, size_t klen, uint64_t h)
{
    size_t i = probe(&sh->t, key, klen, h);
    struct kv_item *it = sh->t.slots[i].item;
    if (it && expired(sh, it)) {
        remove_at(sh, i);
        return NULL;
    }
    return it;
}

static struct kv_item *item_new(const char *key, size_t klen, const char *val, size_t vlen,
                                struct rill_buf *big)
{
    size_t vcap = big ? 0 : vlen;
    struct kv_item *it = malloc(sizeof(*it) + klen + vcap);
    if (!it)
        return NULL;
    it->expire_ms = 0;
    it->klen = (uint32_t)klen;
    it->vlen = (uint32_t)vlen;
    it->vcap = (uint32_t)vcap;
    it->big = big;
    memcpy(it->data, key, klen);
    if (!big && vlen)
        memcpy(it->data + klen, val, vlen);
    return it;
}

int kv_set(struct kv_shard *sh, const char *key, size_t klen, uint64_t h, const char *val,
           size_t vlen, struct rill_buf *big, bool keep_ttl, int64_t expire_ms)
{
    struct kv_table *t = &sh->t;
    size_t i = probe(t, key, klen, h);
    struct kv_item *it = t->slots[i].item;
    if (it && expired(sh, it)) {
        remove_at(sh, i);
        i = probe(t, key, klen, h);
        it = NULL;
    }
    if (it) {
        int64_t old_exp = it->expire_ms;
        if (!big && !it->big && vlen <= it->vcap) {
            /* Overwrite in place: no allocation on the common SET. */
            memcpy(it->data + it->klen, val, vlen);
            it->vlen = (uint32_t)vlen;
        } else {
            struct kv_item *n = item_new(key, klen, val, vlen, big);
            if (!n)
                return -ENOMEM;
            n->expire_ms = old_exp;
            item_free(it);
            t->slots[i].item = it = n;
        }
        if (!keep_ttl)
            kv_set_expire(sh, it, expire_ms);
        publish(sh);
        return 0;
    }
    if ((t->count + 1) * 4 > (t->mask + 1) * 3) {
        if (grow(t) != 0)
            return -ENOMEM;
        i = probe(t, key, klen, h);
    }
    it = item_new(key, klen, val, vlen, big);
    if (!it)
        return -ENOMEM;
    t->slots[i].hash = h;
    t->slots[i].item = it;
    t->count++;
    kv_set_expire(sh, it, expire_ms);
    publish(sh);
    return 0;
}

void kv_set_expire(struct kv_shard *sh, struct kv_item *it, int64_t expire_ms)
{
    if (!it->expire_ms && expire_ms)
        sh->t.expires++;
    else if (it->expire_ms && !expire_ms)
        sh->t.expires--;
    it->expire_ms = expire_ms;
    publish(sh);
}

bool kv_del(struct kv_shard *sh, const char *key, size_t klen, uint64_t h)
{
    size_t i = probe(&sh->t, key, klen, h);
    struct kv_item *it = sh->t.slots[i].item;
    if (!it)
        return false;
    bool live = !expired(sh, it);
    remove_at(sh, i);
    return live;
}

void kv_flush(struct kv_shard *sh)
{
    struct kv_table *t = &sh->t;
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->slots[i].item) {
            item_free(t->slots[i].item);
            t->slots[i].item = NULL;
        }
    }
    t->count = t->expires = 0;
    sh->cursor = 0;
    publish(sh);
}

void kv_expire_step(struct kv_shard *sh, size_t budget)
{
    struct kv_table *t = &sh->t;
    if (t->expires == 0)
        return;
    int64_t now = kv_now_ms(sh);
    if (budget > t->mask + 1)
        budget = t->mask + 1;
    while (budget--) {
        size_t i = sh->cursor & t->mask;
        struct kv_item *it = t->slots[i].item;
        if (it && it->expire_ms && it->expire_ms <= now) {
            remove_at(sh, i); /* a later key may shift into i: look at it again */
            continue;
        }
        sh->cursor = i + 1;
    }
}

void kv_keys(struct kv_shard *sh, const char *pat, size_t plen,
             void (*fn)(void *arg, const char *key, size_t klen), void *arg)
{
    struct kv_table *t = &sh->t;
    bool all = plen == 1 && pat[0] == '*';
    int64_t now = kv_now_ms(sh);
    for (size_t i = 0; i <= t->mask; i++) {
        struct kv_item *it = t->slots[i].item;
        if (!it || (it->expire_ms && it->expire_ms <= now))
            continue;
        if (all || kv_glob(pat, plen, it->data, it->klen))
            fn(arg, it->data, it->klen);
    }
}

/* Redis's stringmatchlen, without the nocase flag. */
static bool glob_at(const char *p, size_t plen, const char *s, size_t slen, int depth)
{
    if (depth > 1000)
        return false;
    while (plen && slen) {
        switch (p[0]) {
        case '*':
            while (plen > 1 && p[1] == '*') {
                p++;
                plen--;
            }
            if (plen == 1)
                return true;
            while (slen) {
                if (glob_at(p + 1, plen - 1, s, slen, depth + 1))
                    return true;
                s++;
                slen--;
            }
            return false;
        case '?':
            s++;
            slen--;
            break;
        case '[': {
            p++;
            plen--;
            bool not = plen && p[0] == '^';
            if (not ) {
                p++;
                plen--;
            }
            bool match = false;
            for (;;) {
                if (plen == 0) {
                    /* An unterminated class: Redis steps back to its last char. */
                    p--;
                    plen++;
                    break;
                }
                if (p[0] == '\\' && plen >= 2) {
                    p++;
                    plen--;
                    if (p[0] == s[0])
                        match = true;
                } else if (p[0] == ']') {
                    break;
                } else if (plen >= 3 && p[1] == '-') {
                    int a = (unsigned char)p[0], b = (unsigned char)p[2], c = (unsigned char)s[0];
                    if (a > b) {
                        int x = a;
                        a = b;
                        b = x;
                    }
                    p += 2;
                    plen -= 2;
                    if (c >= a && c <= b)
                        match = true;
                } else if (p[0] == s[0]) {
                    match = true;
                }
                p++;
                plen--;
            }
            if (not )
                match = !match;
            if (!match)
                return false;
            s++;
            slen--;
            break;
        }
        case '\\':
            if (plen >= 2) {
                p++;
                plen--;
            }
            /* fall through */
        default:
            if (p[0] != s[0])
                return false;
            s++;
            slen--;
            break;
        }
        p++;
        plen--;
        if (slen == 0) {
            while (plen && *p == '*') {
                p++;
                plen--;
            }
            break;
        }
    }
    return plen == 0 && slen == 0;
}

bool kv_glob(const char *pat, size_t plen, const char *s, size_t slen)
{
    return glob_at(pat, plen, s, slen, 0);
}
