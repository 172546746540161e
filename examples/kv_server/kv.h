/* kv_server internals shared by its files: the keyspace shards (store.c),
 * the commands (commands.c), connections with their reply slots and the
 * cross-loop fan-out (conn.c), and the program (main.c).
 *
 * Threading: the keyspace is split into one shard per worker loop; a shard
 * is touched only by its loop's thread, so it has no locks. A command is
 * run on the loop of the shard that owns its key: inline when that is the
 * connection's own loop, else batched with the other commands for that
 * shard into one task there, whose replies come back as one task. The counters read by INFO from
 * any loop are atomics. */
#ifndef KV_H
#define KV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rill_buf;
struct rill_loop;
struct rill_resp;
struct rill_timer;

/* ---- store.c: one shard's hash table ---- */

/* Values up to this size live inside the item; larger ones in a rill_buf
 * that GET replies reference without copying. */
#define KV_BIG_VALUE  (16u * 1024u)
#define KV_MAX_SHARDS 64

struct kv_item {
    int64_t expire_ms; /* absolute, on the loop clock; 0: no expiry */
    uint32_t klen, vlen, vcap;
    struct rill_buf *big; /* the value when large, else NULL */
    char data[];          /* key, then the value (vcap bytes) when small */
};

struct kv_slot {
    uint64_t hash;
    struct kv_item *item; /* NULL: empty */
};

struct kv_table {
    struct kv_slot *slots;
    size_t mask; /* capacity - 1 (a power of two) */
    size_t count, expires;
};

struct kv_server;
struct kv_batch;

struct kv_shard {
    int idx;
    struct rill_loop *loop;
    struct kv_server *srv;
    struct kv_table t;
    size_t cursor;                /* active expiry's place in the table */
    struct rill_timer *expirer;   /* periodic active expiry */
    _Atomic uint64_t nkeys, nexp; /* mirrors of t.count/t.expires for INFO */
    _Atomic uint64_t ncmds;       /* commands received on this loop (one writer) */
    /* Commands of this loop's connections for other shards, collected
     * during read batches and posted as one task per target shard at
     * read_complete (conn.c). This loop only. */
    struct kv_batch *outgoing[KV_MAX_SHARDS];
};

uint64_t kv_hash(const void *p, size_t n);

int kv_table_init(struct kv_table *t);
void kv_table_free(struct kv_table *t);

/* Find a live item (expired ones are deleted on the way: lazy expiry).
 * Borrowed: valid until the shard changes. */
struct kv_item *kv_get(struct kv_shard *sh, const char *key, size_t klen, uint64_t h);
/* Set @key to the @vlen bytes at @val (or to @big, whose reference is
 * taken, when not NULL). The TTL is cleared unless @keep_ttl. Returns 0 or
 * -ENOMEM. */
int kv_set(struct kv_shard *sh, const char *key, size_t klen, uint64_t h, const char *val,
           size_t vlen, struct rill_buf *big, bool keep_ttl, int64_t expire_ms);
/* Delete; true when the key existed (and was live). */
bool kv_del(struct kv_shard *sh, const char *key, size_t klen, uint64_t h);
/* Set or clear an item's expiry, keeping the counters right. */
void kv_set_expire(struct kv_shard *sh, struct kv_item *it, int64_t expire_ms);
void kv_flush(struct kv_shard *sh);
/* Active expiry: look at up to @budget slots from the cursor. */
void kv_expire_step(struct kv_shard *sh, size_t budget);
/* Call fn for every live key matching @pat (Redis glob). */
void kv_keys(struct kv_shard *sh, const char *pat, size_t plen,
             void (*fn)(void *arg, const char *key, size_t klen), void *arg);
/* The value bytes of an item (small values only; big ones: it->big). */
static inline const char *kv_value(const struct kv_item *it)
{
    return it->data + it->klen;
}
int64_t kv_now_ms(struct kv_shard *sh);

/* Redis's stringmatchlen (glob: * ? [abc] [^a] [a-z] \x). */
bool kv_glob(const char *pat, size_t plen, const char *s, size_t slen);

/* ---- the server ---- */

struct kv_server {
    int nshards;
    struct kv_shard *shards;
    _Atomic int port; /* set once the listener is bound (loops may already run) */
    uint64_t start_ns;
    _Atomic uint64_t clients, connections, commands;
    _Atomic uint64_t next_client_id;
    _Atomic uint64_t inflight; /* requests and parts between loops (shutdown waits for them) */
};

static inline struct kv_shard *kv_shard_of(struct kv_server *s, uint64_t h)
{
    return &s->shards[s->nshards == 1 ? 0 : (uint32_t)(h >> 32) % (uint32_t)s->nshards];
}

/* ---- commands.c ---- */

enum kv_kind {
    KV_KEYLESS, /* runs on the connection's loop (PING, INFO, HELLO, ...) */
    KV_ONEKEY,  /* runs on the loop of the shard of argument 1 */
    KV_MULTI,   /* fans out to the shards of its keys and gathers (MGET, DEL, ...) */
};

struct kv_conn;
struct kv_cmd;

/* What a command runs with: the shard (NULL for keyless ones), where the
 * reply goes, the protocol, and the connection (keyless commands only:
 * others may run on another loop). */
struct kv_exec {
    struct kv_shard *sh;
    struct rill_buf **out;
    int proto;
    struct kv_conn *conn;
    uint64_t h; /* hash of argument 1 (single-key commands) */
};

typedef void kv_cmd_fn(struct kv_exec *x, struct rill_resp *cmd);

/* One shard's part of a multi-key command. */
struct kv_part {
    struct kv_shard *sh;
    uint32_t *keys; /* argument indices of this shard's keys (first argument of each key) */
    uint32_t nkeys;
    int64_t count;        /* DEL, EXISTS, KEYS, DBSIZE: the part's count */
    struct rill_buf *out; /* MGET, KEYS: the part's encoded elements */
    uint32_t *ends;       /* MGET: end offset in out of each key's element */
};

typedef void kv_part_fn(struct kv_part *p, struct rill_resp *cmd, int proto);

struct kv_cmd {
    const char *name; /* lowercase, as in Redis's errors */
    int arity;        /* Redis's: n exactly, or -n at least n */
    enum kv_kind kind;
    kv_cmd_fn *run;   /* KEYLESS, ONEKEY */
    kv_part_fn *part; /* MULTI: one shard's share */
    int first, step;  /* MULTI: first key argument and the step between keys (0: all shards) */
    /* MULTI: argument checks made before any part runs; false after
     * writing the error reply. NULL: none. */
    bool (*check)(struct rill_buf *out, struct rill_resp *cmd);
};

const struct kv_cmd *kv_cmd_find(const char *name, size_t len);
size_t kv_cmd_count(void);
const struct kv_cmd *kv_cmd_at(size_t i);
/* Write the reply of a whole multi-key command from its parts (in shard
 * order for unordered ones; MGET by key). */
void kv_multi_reply(const struct kv_cmd *c, struct rill_resp *cmd, struct kv_part *parts,
                    int nparts, struct rill_buf **out, int proto);
/* Arity and unknown-command errors in Redis's words. */
void kv_reply_arity(struct rill_buf *out, const struct kv_cmd *c);
void kv_reply_unknown(struct rill_buf *out, struct rill_resp *cmd);

/* ---- conn.c ---- */

/* The handler installed after the RESP codec (named "resp"); its arg is
 * the struct kv_server. */
extern const struct rill_handler kv_handler;

/* Connection state a keyless command may change (conn.c). */
void kv_conn_set_proto(struct kv_conn *c, int proto);
int kv_conn_proto(const struct kv_conn *c);
uint64_t kv_conn_id(const struct kv_conn *c);
void kv_conn_quit(struct kv_conn *c);
/* Name (CLIENT SETNAME/GETNAME); len 0: none. */
int kv_conn_set_name(struct kv_conn *c, const char *name, size_t len);
const char *kv_conn_name(const struct kv_conn *c, size_t *len);
struct kv_server *kv_conn_server(const struct kv_conn *c);

#endif
