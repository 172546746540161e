/* Connections: the handler after the RESP codec. It routes each command to
 * the shard that owns its key and keeps replies in request order.
 *
 * The hot path (the key lives on this loop, nothing is waiting) runs the
 * command right here and writes the reply into the codec's reply buffer,
 * which goes out in one write when the read batch ends.
 *
 * Otherwise replies go through slots, one per command still waiting, in
 * request order: a command for another loop's shard joins this loop's
 * batch for that shard, posted as one task at read_complete (or when
 * full); the shard's loop runs the whole batch and sends it back as one
 * task, which fills the slots and drains each connection once; replies of local commands made
 * while slots wait collect in one local slot at the tail. When the head
 * slot is done, slots are drained into the reply buffer in order and
 * flushed. Multi-key commands split their keys by shard, run one part per
 * shard (the local one inline) and gather the parts on this loop.
 *
 * Every slot holds a reference to the connection's state, so a reply that
 * arrives after the connection closed finds it (and drops the reply). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/encoder.h"
#include "rill/log.h"
#include "rill/loop.h"
#include "rill/pipeline.h"
#include "rill/resp.h"

struct kv_req {
    struct rill_task task;
    struct kv_req *next;
    struct kv_conn *conn;
    struct rill_resp *cmd; /* owned until it has run */
    const struct kv_cmd *def;
    struct kv_shard *sh;
    struct rill_buf *reply;
    uint64_t h;
    int proto;
    bool done, local;
};

struct kv_conn {
    unsigned refs; /* the handler's + one per slot; this loop only */
    struct kv_server *srv;
    struct kv_shard *home; /* the shard of this connection's loop */
    struct rill_ctx *ctx, *codec;
    struct kv_req *head, *tail;
    uint64_t id;
    int proto;
    bool closed, quit;
    bool batched; /* listed by the batch_done running now */
    uint8_t namelen;
    char name[64];
};

/* ---- connection state used by keyless commands ---- */

void kv_conn_set_proto(struct kv_conn *c, int proto)
{
    c->proto = proto;
    rill_resp_set_proto(c->codec, proto);
}

int kv_conn_proto(const struct kv_conn *c)
{
    return c->proto;
}

uint64_t kv_conn_id(const struct kv_conn *c)
{
    return c->id;
}

void kv_conn_quit(struct kv_conn *c)
{
    c->quit = true;
}

int kv_conn_set_name(struct kv_conn *c, const char *name, size_t len)
{
    if (len >= sizeof(c->name))
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if (name[i] < '!' || name[i] > '~')
            return -EINVAL;
    memcpy(c->name, name, len);
    c->namelen = (uint8_t)len;
    return 0;
}

const char *kv_conn_name(const struct kv_conn *c, size_t *len)
{
    *len = c->namelen;
    return c->name;
}

struct kv_server *kv_conn_server(const struct kv_conn *c)
{
    return c->srv;
}

/* ---- slots ---- */

static void conn_unref(struct kv_conn *c)
{
    if (--c->refs == 0)
        free(c);
}

static struct kv_req *slot_new(struct kv_conn *c, bool local)
{
    struct kv_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->conn = c;
    r->proto = c->proto;
    r->local = local;
    r->done = local;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->refs++;
    return r;
}

/* Where the reply of a command made now goes. */
static struct rill_buf **dest(struct kv_conn *c)
{
    if (!c->head)
        return rill_resp_out(c->codec);
    struct kv_req *t = c->tail;
    if (!(t->local && t->done)) {
        t = slot_new(c, true);
        if (!t)
            return NULL;
    }
    if (!t->reply && rill_buf_alloc(256, &t->reply) != 0)
        return NULL;
    return &t->reply;
}

static void maybe_quit(struct kv_conn *c)
{
    if (c->quit && !c->head && !c->closed) {
        rill_resp_flush(c->codec);
        rill_channel_close(rill_ctx_channel(c->ctx), NULL);
    }
}

/* Move the done slots at the head into the reply buffer, in order. */
static void drain(struct kv_conn *c)
{
    bool wrote = false;
    while (c->head && c->head->done) {
        struct kv_req *r = c->head;
        c->head = r->next;
        if (!c->head)
            c->tail = NULL;
        struct rill_buf **out = c->closed ? NULL : rill_resp_out(c->codec);
        if (out && r->reply) {
            rill_encoder_append(out, r->reply);
            wrote = true;
        } else if (out) {
            rill_resp_put_error(*out, "ERR out of memory", 17);
            wrote = true;
        } else if (r->reply) {
            rill_buf_release(r->reply);
        }
        free(r);
        c->refs--; /* the handler's own reference keeps c while not closed */
    }
    if (wrote)
        rill_resp_flush(c->codec);
    maybe_quit(c);
}

static void settle(struct kv_conn *c)
{
    struct kv_server *s = c->srv;
    atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
    drain(c);
    if (c->closed && c->refs == 0)
        free(c);
}

/* Single-key commands for another loop's shard travel in batches: one task
 * there runs them all, then the same task goes back with their replies. */
#define KV_BATCH 128

struct kv_batch {
    struct rill_task task;
    struct kv_shard *from, *to;
    uint32_t n;
    struct kv_req *reqs[KV_BATCH];
};

/* On the origin loop: the replies are in; mark the slots done, then drain
 * each connection once. */
static void batch_done(void *arg)
{
    struct kv_batch *b = arg;
    struct kv_conn *conns[KV_BATCH];
    uint32_t m = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        struct kv_req *r = b->reqs[i];
        struct kv_conn *c = r->conn;
        r->done = true;
        if (!c->batched) {
            c->batched = true;
            c->refs++; /* keeps c while its slots are drained */
            conns[m++] = c;
        }
    }
    atomic_fetch_sub_explicit(&b->from->srv->inflight, b->n, memory_order_relaxed);
    free(b);
    for (uint32_t i = 0; i < m; i++) {
        struct kv_conn *c = conns[i];
        c->batched = false;
        drain(c);
        conn_unref(c);
    }
}

/* On the target loop: run the commands, send the replies back. */
static void batch_run(void *arg)
{
    struct kv_batch *b = arg;
    for (uint32_t i = 0; i < b->n; i++) {
        struct kv_req *r = b->reqs[i];
        if (rill_buf_alloc(64, &r->reply) == 0) {
            struct kv_exec x = { .sh = r->sh, .out = &r->reply, .proto = r->proto, .h = r->h };
            r->def->run(&x, r->cmd);
        } else {
            r->reply = NULL;
        }
        rill_resp_release(r->cmd);
        r->cmd = NULL;
    }
    rill_task_init(&b->task, batch_done, b);
    if (rill_loop_post(b->from->loop, &b->task) != 0) {
        /* The origin loop has ended (shutdown): nobody will read the
         * replies. Drop what this thread can drop safely. */
        for (uint32_t i = 0; i < b->n; i++) {
            if (b->reqs[i]->reply)
                rill_buf_release(b->reqs[i]->reply);
            b->reqs[i]->reply = NULL;
        }
        free(b);
    }
}

static void batch_post(struct kv_batch *b)
{
    b->from->outgoing[b->to->idx] = NULL;
    rill_task_init(&b->task, batch_run, b);
    if (rill_loop_post(b->to->loop, &b->task) != 0) {
        for (uint32_t i = 0; i < b->n; i++) {
            struct kv_req *r = b->reqs[i];
            rill_resp_release(r->cmd);
            r->cmd = NULL;
            if (rill_buf_alloc(64, &r->reply) == 0)
                rill_resp_put_error(r->reply, "ERR server is shutting down", 27);
        }
        batch_done(b);
    }
}

/* Post this loop's collected batches (at read_complete). */
static void batch_flush(struct kv_shard *home)
{
    int n = home->srv->nshards;
    for (int i = 0; i < n; i++)
        if (home->outgoing[i])
            batch_post(home->outgoing[i]);
}

static void post_remote(struct kv_conn *c, const struct kv_cmd *def, struct rill_resp *cmd,
                        struct kv_shard *sh, uint64_t h)
{
    struct kv_batch *b = c->home->outgoing[sh->idx];
    if (!b) {
        b = malloc(sizeof(*b));
        if (b) {
            b->from = c->home;
            b->to = sh;
            b->n = 0;
            c->home->outgoing[sh->idx] = b;
        }
    }
    struct kv_req *r = b ? slot_new(c, false) : NULL;
    if (!r) {
        rill_resp_release(cmd);
        rill_channel_close(rill_ctx_channel(c->ctx), NULL);
        return;
    }
    r->cmd = cmd;
    r->def = def;
    r->sh = sh;
    r->h = h;
    atomic_fetch_add_explicit(&c->srv->inflight, 1, memory_order_relaxed);
    b->reqs[b->n++] = r;
    if (b->n == KV_BATCH)
        batch_post(b);
}

/* ---- multi-key commands ---- */

struct kv_gather;

struct kv_gpart {
    struct rill_task task;
    struct kv_gather *g;
    struct kv_part p;
};

struct kv_gather {
    struct kv_req *slot;
    struct rill_resp *cmd;
    const struct kv_cmd *def;
    int proto, nparts, left;
    struct kv_gpart parts[];
};

static void free_parts(struct kv_part *p, int n)
{
    for (int i = 0; i < n; i++)
        if (p[i].out)
            rill_buf_release(p[i].out);
}

static void gather_part_done(void *arg)
{
    struct kv_gpart *gp = arg;
    struct kv_gather *g = gp->g;
    struct kv_conn *c = g->slot->conn;
    if (--g->left > 0) {
        atomic_fetch_sub_explicit(&c->srv->inflight, 1, memory_order_relaxed);
        return;
    }
    struct kv_part parts[KV_MAX_SHARDS];
    for (int i = 0; i < g->nparts; i++)
        parts[i] = g->parts[i].p;
    struct kv_req *r = g->slot;
    if (rill_buf_alloc(256, &r->reply) == 0)
        kv_multi_reply(g->def, g->cmd, parts, g->nparts, &r->reply, g->proto);
    else
        r->reply = NULL;
    free_parts(parts, g->nparts);
    rill_resp_release(g->cmd);
    free(g);
    r->done = true;
    settle(c);
}

static void gather_part_run(void *arg)
{
    struct kv_gpart *gp = arg;
    struct kv_gather *g = gp->g;
    g->def->part(&gp->p, g->cmd, g->proto);
    rill_task_init(&gp->task, gather_part_done, gp);
    if (rill_loop_post(g->slot->conn->home->loop, &gp->task) != 0 && gp->p.out) {
        rill_buf_release(gp->p.out); /* shutdown: see batch_run */
        gp->p.out = NULL;
    }
}

static void run_multi(struct kv_conn *c, const struct kv_cmd *def, struct rill_resp *cmd)
{
    struct kv_server *s = c->srv;
    uint32_t argc = (uint32_t)rill_resp_argc(cmd);
    uint32_t nkeys = def->step ? (argc - 1) / (uint32_t)def->step : 0;
    uint32_t count[KV_MAX_SHARDS] = { 0 };
    int nparts = 0, pidx[KV_MAX_SHARDS];
    bool all = def->step == 0;
    /* Which shards the keys live on. */
    uint8_t small_sh[64];
    uint8_t *shard_of = nkeys <= 64 ? small_sh : malloc(nkeys ? nkeys : 1);
    if (!shard_of) {
        rill_resp_release(cmd);
        return;
    }
    for (uint32_t j = 0; j < nkeys; j++) {
        size_t klen;
        const char *k = rill_resp_arg(cmd, 1 + j * (uint32_t)def->step, &klen);
        int si = kv_shard_of(s, kv_hash(k, klen))->idx;
        shard_of[j] = (uint8_t)si;
        count[si]++;
    }
    for (int i = 0; i < s->nshards; i++) {
        pidx[i] = -1;
        if (all || count[i])
            pidx[i] = nparts++;
    }
    bool local_only = nparts == 1 && (all ? s->nshards == 1 : count[c->home->idx] == nkeys);
    size_t keys_bytes = (size_t)nkeys * 2 * sizeof(uint32_t);
    struct kv_gather *g = NULL;
    struct kv_part local[1];
    uint32_t small_keys[128];
    uint32_t *kbuf;
    if (local_only) {
        kbuf = keys_bytes <= sizeof(small_keys) ? small_keys : malloc(keys_bytes);
    } else {
        g = calloc(1, sizeof(*g) + (size_t)nparts * sizeof(struct kv_gpart) + keys_bytes);
        kbuf = g ? (uint32_t *)(g->parts + nparts) : NULL;
    }
    if (!kbuf) {
        if (shard_of != small_sh)
            free(shard_of);
        rill_resp_release(cmd);
        rill_channel_close(rill_ctx_channel(c->ctx), NULL);
        return;
    }
    /* Keys grouped by part, in argument order; ends after them (MGET). */
    struct kv_part *parts = local_only ? local : NULL;
    uint32_t off = 0;
    for (int i = 0; i < s->nshards; i++) {
        if (pidx[i] < 0)
            continue;
        struct kv_part *p = local_only ? &local[0] : &g->parts[pidx[i]].p;
        memset(p, 0, sizeof(*p));
        p->sh = &s->shards[i];
        p->keys = kbuf + off;
        p->ends = kbuf + nkeys + off;
        for (uint32_t j = 0; j < nkeys; j++)
            if (shard_of[j] == i)
                p->keys[p->nkeys++] = 1 + j * (uint32_t)def->step;
        off += p->nkeys;
    }
    if (shard_of != small_sh)
        free(shard_of);

    if (local_only) {
        def->part(parts, cmd, c->proto);
        struct rill_buf **out = dest(c);
        if (out)
            kv_multi_reply(def, cmd, parts, 1, out, c->proto);
        free_parts(parts, 1);
        if (kbuf != small_keys)
            free(kbuf);
        rill_resp_release(cmd);
        return;
    }
    struct kv_req *r = slot_new(c, false);
    if (!r) {
        free(g);
        rill_resp_release(cmd);
        rill_channel_close(rill_ctx_channel(c->ctx), NULL);
        return;
    }
    g->slot = r;
    g->cmd = cmd;
    g->def = def;
    g->proto = c->proto;
    g->nparts = g->left = nparts;
    /* Remote parts first, so they start while the local one runs here;
     * after the batches collected so far, so each shard sees its commands
     * in request order. */
    batch_flush(c->home);
    struct kv_gpart *mine = NULL;
    for (int i = 0; i < nparts; i++) {
        struct kv_gpart *gp = &g->parts[i];
        gp->g = g;
        atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
        if (gp->p.sh == c->home) {
            mine = gp;
            continue;
        }
        rill_task_init(&gp->task, gather_part_run, gp);
        if (rill_loop_post(gp->p.sh->loop, &gp->task) != 0) {
            gp->p.count = -1; /* shutting down: report it as a failed part */
            gather_part_done(gp);
        }
    }
    if (mine) {
        def->part(&mine->p, cmd, g->proto);
        gather_part_done(mine);
    }
}

/* ---- the handler ---- */

static int kv_added(struct rill_ctx *ctx)
{
    struct kv_server *s = rill_ctx_arg(ctx);
    struct kv_conn **st = rill_ctx_state(ctx);
    struct kv_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->refs = 1;
    c->srv = s;
    c->ctx = ctx;
    c->codec = rill_pipeline_get(rill_ctx_pipeline(ctx), "resp");
    c->proto = 2;
    c->id = atomic_fetch_add(&s->next_client_id, 1) + 1;
    struct rill_loop *loop = rill_channel_loop(rill_ctx_channel(ctx));
    c->home = &s->shards[0];
    for (int i = 0; i < s->nshards; i++)
        if (s->shards[i].loop == loop)
            c->home = &s->shards[i];
    if (!c->codec) {
        free(c);
        return -EINVAL;
    }
    atomic_fetch_add_explicit(&s->clients, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->connections, 1, memory_order_relaxed);
    *st = c;
    return 0;
}

static void kv_removed(struct rill_ctx *ctx)
{
    struct kv_conn **st = rill_ctx_state(ctx);
    struct kv_conn *c = *st;
    if (!c)
        return;
    *st = NULL;
    atomic_fetch_sub_explicit(&c->srv->clients, 1, memory_order_relaxed);
    c->closed = true;
    c->ctx = NULL;
    batch_flush(c->home); /* its read batch may end without read_complete */
    /* Local slots hold nothing that needs a loop: drop them with the
     * done ones at the head; remote ones come back and are dropped then. */
    drain(c);
    conn_unref(c);
}

static void kv_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct kv_conn *c = *(struct kv_conn **)rill_ctx_state(ctx);
    struct rill_resp *cmd = rill_resp_from_msg(msg);
    if (!cmd || c->quit || rill_resp_argc(cmd) == 0) {
        rill_msg_release(msg);
        return;
    }
    struct kv_shard *home = c->home;
    atomic_store_explicit(&home->ncmds,
                          atomic_load_explicit(&home->ncmds, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    size_t nlen;
    const char *name = rill_resp_arg(cmd, 0, &nlen);
    const struct kv_cmd *def = nlen ? kv_cmd_find(name, nlen) : NULL;
    size_t argc = rill_resp_argc(cmd);
    if (!def || (def->arity > 0 ? argc != (size_t)def->arity : argc < (size_t)-def->arity)) {
        struct rill_buf **out = dest(c);
        if (out && def)
            kv_reply_arity(*out, def);
        else if (out)
            kv_reply_unknown(*out, cmd);
        rill_resp_release(cmd);
        return;
    }
    if (def->kind == KV_ONEKEY) {
        size_t klen;
        const char *k = rill_resp_arg(cmd, 1, &klen);
        uint64_t h = kv_hash(k, klen);
        struct kv_shard *sh = kv_shard_of(c->srv, h);
        if (sh != home) {
            post_remote(c, def, cmd, sh, h);
            return;
        }
        struct rill_buf **out = dest(c);
        if (out) {
            struct kv_exec x = { .sh = sh, .out = out, .proto = c->proto, .h = h };
            def->run(&x, cmd);
        }
        rill_resp_release(cmd);
        return;
    }
    if (def->kind == KV_MULTI) {
        if (def->check) {
            struct rill_buf **out = dest(c);
            if (!out || !def->check(*out, cmd)) {
                rill_resp_release(cmd);
                return;
            }
        }
        run_multi(c, def, cmd);
        return;
    }
    struct rill_buf **out = dest(c);
    if (out) {
        struct kv_exec x = { .sh = home, .out = out, .proto = c->proto, .conn = c };
        def->run(&x, cmd);
    }
    rill_resp_release(cmd);
    maybe_quit(c);
}

static void kv_read_complete(struct rill_ctx *ctx)
{
    struct kv_conn *c = *(struct kv_conn **)rill_ctx_state(ctx);
    if (c)
        batch_flush(c->home);
    rill_ctx_fire_read_complete(ctx);
}

/* Bad input: the codec has sent Redis's "-ERR Protocol error" reply and
 * closes the connection; nothing to add, so it is not logged as a fault. */
static void kv_exception(struct rill_ctx *ctx, int err, const char *why)
{
    RILL_DEBUGF("kv_server: connection %llu: %s",
                (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)), why ? why : "");
}

const struct rill_handler kv_handler = {
    .name = "kv",
    .ctx_size = sizeof(struct kv_conn *),
    .added = kv_added,
    .removed = kv_removed,
    .read = kv_read,
    .read_complete = kv_read_complete,
    .exception = kv_exception,
};
