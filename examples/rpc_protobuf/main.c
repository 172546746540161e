/* rpc_protobuf: a key-value store (kv.proto) served by rill and called
 * through the protobuf-c generated stubs, as if it were a local object.
 *
 *   rpc_protobuf server [--port N]   serve kv.Store; prints "ready port=N"
 *   rpc_protobuf client --port N     put, get, list, a missing key (blocking
 *                                    stub), then 100 puts in flight (async)
 *   rpc_protobuf demo                both in one process on a free port
 *
 * The server's methods run inline on the connection's loop; the store is
 * shared by every connection (each on its own worker loop), hence the lock. */
#if __has_include(<protobuf-c/protobuf-c.h>)
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen/kv.pb-c.c"
#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rpc_client.h"
#include "rill/rpc_protobuf.h"
#include "rill/rpc_server.h"
#include "rill/rpc_status.h"

/* ---- the store: a small array is plenty for an example ---- */

struct entry {
    char *key;
    uint8_t *value;
    size_t len;
};

static struct {
    pthread_mutex_t mu;
    struct entry *v;
    size_t n, cap;
} store = { .mu = PTHREAD_MUTEX_INITIALIZER };

static struct entry *find(const char *key)
{
    for (size_t i = 0; i < store.n; i++)
        if (!strcmp(store.v[i].key, key))
            return &store.v[i];
    return NULL;
}

static void kv_put(Kv__Store_Service *svc, const Kv__PutRequest *in, Kv__PutReply_Closure closure,
                   void *data)
{
    if (!in->key[0]) {
        rill_rpc_pb_fail(data, RILL_RPC_INVALID_ARGUMENT, "empty key");
        return;
    }
    Kv__PutReply out = KV__PUT_REPLY__INIT;
    uint8_t *copy = malloc(in->value.len + 1);
    if (!copy) {
        rill_rpc_pb_fail(data, RILL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (in->value.len)
        memcpy(copy, in->value.data, in->value.len);
    pthread_mutex_lock(&store.mu);
    struct entry *e = find(in->key);
    if (e) {
        out.replaced = 1;
        free(e->value);
    } else {
        if (store.n == store.cap) {
            size_t cap = store.cap ? 2 * store.cap : 16;
            struct entry *v = realloc(store.v, cap * sizeof(*v));
            if (!v) {
                pthread_mutex_unlock(&store.mu);
                free(copy);
                rill_rpc_pb_fail(data, RILL_RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
            }
            store.v = v;
            store.cap = cap;
        }
        e = &store.v[store.n++];
        e->key = strdup(in->key);
    }
    e->value = copy;
    e->len = in->value.len;
    pthread_mutex_unlock(&store.mu);
    closure(&out, data);
}

static void kv_get(Kv__Store_Service *svc, const Kv__GetRequest *in, Kv__GetReply_Closure closure,
                   void *data)
{
    Kv__GetReply out = KV__GET_REPLY__INIT;
    pthread_mutex_lock(&store.mu);
    struct entry *e = find(in->key);
    if (e) {
        out.value.data = e->value;
        out.value.len = e->len;
        closure(&out, data); /* packs now, under the lock */
    }
    pthread_mutex_unlock(&store.mu);
    if (!e) {
        char why[300];
        snprintf(why, sizeof(why), "no key '%s'", in->key);
        rill_rpc_pb_fail(data, RILL_RPC_NOT_FOUND, why);
    }
}

static void kv_list(Kv__Store_Service *svc, const Kv__ListRequest *in,
                    Kv__ListReply_Closure closure, void *data)
{
    Kv__ListReply out = KV__LIST_REPLY__INIT;
    size_t plen = strlen(in->prefix);
    pthread_mutex_lock(&store.mu);
    Kv__Entry *ents = calloc(store.n + 1, sizeof(*ents));
    Kv__Entry **ptrs = calloc(store.n + 1, sizeof(*ptrs));
    if (!ents || !ptrs) {
        pthread_mutex_unlock(&store.mu);
        free(ents);
        free(ptrs);
        rill_rpc_pb_fail(data, RILL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < store.n; i++) {
        if (strncmp(store.v[i].key, in->prefix, plen))
            continue;
        kv__entry__init(&ents[out.n_entries]);
        ents[out.n_entries].key = store.v[i].key;
        ents[out.n_entries].value.data = store.v[i].value;
        ents[out.n_entries].value.len = store.v[i].len;
        ptrs[out.n_entries] = &ents[out.n_entries];
        out.n_entries++;
    }
    out.entries = ptrs;
    closure(&out, data);
    pthread_mutex_unlock(&store.mu);
    free(ents);
    free(ptrs);
}

static Kv__Store_Service kv_impl = KV__STORE__INIT(kv_);

static void store_clear(void)
{
    for (size_t i = 0; i < store.n; i++) {
        free(store.v[i].key);
        free(store.v[i].value);
    }
    free(store.v);
}

/* ---- server ---- */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static int child_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_server_install(arg, rill_channel_pipeline(ch));
}

struct server {
    struct rill_loop_group *boss, *workers;
    struct rill_rpc_server *rs;
    struct rill_server *srv;
    int port;
};

static int server_up(struct server *s, int port)
{
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    int rc = rill_loop_group_new(&go, &s->boss);
    if (rc == 0) {
        go.nloops = 2;
        rc = rill_loop_group_new(&go, &s->workers);
    }
    if (rc == 0)
        rc = rill_rpc_server_new(NULL, &s->rs);
    if (rc == 0)
        rc = rill_rpc_pb_serve(s->rs, &kv_impl.base, RILL_RPC_INLINE);
    if (rc != 0)
        return rc;
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = s->boss;
    so.workers = s->workers;
    so.child_init = child_init;
    so.child_arg = s->rs;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    if ((rc = rill_server_bind(&so, uri, &s->srv)) != 0)
        return rc;
    if ((rc = rill_promise_wait(rill_server_bound(s->srv), -1)) != 0)
        return rc;
    s->port = rill_addr_port(rill_server_local_addr(s->srv));
    return 0;
}

static void server_down(struct server *s)
{
    if (s->srv) {
        rill_promise_wait(rill_server_close(s->srv, true), -1);
        rill_server_free(s->srv);
    }
    if (s->workers)
        rill_loop_group_free(s->workers);
    if (s->boss)
        rill_loop_group_free(s->boss);
    if (s->rs)
        rill_rpc_server_free(s->rs);
}

/* ---- client ---- */

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

/* Closures of the blocking stub run before the call returns, on this thread. */
static void on_put(const Kv__PutReply *r, void *arg)
{
    if (r)
        printf("put %s: %s\n", (const char *)arg, r->replaced ? "replaced" : "new");
    else
        printf("put %s failed: %s %s\n", (const char *)arg,
               rill_rpc_status_name(rill_rpc_pb_status()),
               rill_rpc_pb_status_msg() ? rill_rpc_pb_status_msg() : "");
}

static void on_get(const Kv__GetReply *r, void *arg)
{
    if (r)
        printf("get %s: %.*s\n", (const char *)arg, (int)r->value.len, (const char *)r->value.data);
    else
        printf("get %s: %s (%s)\n", (const char *)arg, rill_rpc_status_name(rill_rpc_pb_status()),
               rill_rpc_pb_status_msg() ? rill_rpc_pb_status_msg() : "");
}

static void on_list(const Kv__ListReply *r, void *arg)
{
    if (!r) {
        printf("list failed: %s\n", rill_rpc_status_name(rill_rpc_pb_status()));
        return;
    }
    printf("list '%s': %zu entries\n", (const char *)arg, r->n_entries);
    for (size_t i = 0; i < r->n_entries; i++)
        printf("  %s = %.*s\n", r->entries[i]->key, (int)r->entries[i]->value.len,
               (const char *)r->entries[i]->value.data);
}

/* Asynchronous puts: closures run on the channel's loop. */
struct batch {
    atomic_int left, failed;
    struct rill_promise *done;
};

static void on_async_put(const Kv__PutReply *r, void *arg)
{
    struct batch *b = arg;
    if (!r)
        atomic_fetch_add(&b->failed, 1);
    if (atomic_fetch_sub(&b->left, 1) == 1)
        rill_promise_succeed(b->done, NULL, NULL);
}

static void put(ProtobufCService *kv, const char *key, const char *value)
{
    Kv__PutRequest req = KV__PUT_REQUEST__INIT;
    req.key = (char *)key;
    req.value.data = (uint8_t *)value;
    req.value.len = strlen(value);
    kv__store__put(kv, &req, on_put, (void *)key);
}

static void get(ProtobufCService *kv, const char *key)
{
    Kv__GetRequest req = KV__GET_REQUEST__INIT;
    req.key = (char *)key;
    kv__store__get(kv, &req, on_get, (void *)key);
}

static int run_client(int port)
{
    struct rill_loop_group *g;
    int rc = rill_loop_group_new(NULL, &g);
    if (rc)
        return rc;
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    struct rill_promise *f;
    struct rill_channel *ch = NULL;
    if ((rc = rill_client_connect(&co, uri, &f)) == 0) {
        if ((rc = rill_promise_wait(f, 10 * (int64_t)1000000000)) == 0)
            ch = rill_client_channel(f);
        rill_promise_release(f);
    }
    if (!ch) {
        fprintf(stderr, "connect %s: %s\n", uri, rill_strerror(rc));
        rill_loop_group_free(g);
        return 1;
    }

    /* Blocking stub: each kv__store__*() returns after its closure ran. */
    struct rill_rpc_pb_client_opts o;
    rill_rpc_pb_client_opts_init(&o);
    o.blocking = true;
    o.timeout_ns = 5 * (uint64_t)1000000000;
    ProtobufCService *kv;
    if ((rc = rill_rpc_pb_client_new(ch, &kv__store__descriptor, &o, &kv)) == 0) {
        put(kv, "fruit/apple", "red");
        put(kv, "fruit/banana", "yellow");
        put(kv, "fruit/apple", "green");
        put(kv, "", "nothing");
        get(kv, "fruit/apple");
        get(kv, "fruit/cherry");
        Kv__ListRequest lr = KV__LIST_REQUEST__INIT;
        lr.prefix = "fruit/";
        kv__store__list(kv, &lr, on_list, lr.prefix);
        protobuf_c_service_destroy(kv);
    }

    /* Asynchronous stub: 100 puts in flight on the one connection. */
    struct batch b = { 100, 0, NULL };
    if (rc == 0 && (rc = rill_promise_new(NULL, &b.done)) == 0 &&
        (rc = rill_rpc_pb_client_new(ch, &kv__store__descriptor, NULL, &kv)) == 0) {
        for (int i = 0; i < 100; i++) {
            char key[32], val[32];
            snprintf(key, sizeof(key), "n/%03d", i);
            snprintf(val, sizeof(val), "%d", i * i);
            Kv__PutRequest req = KV__PUT_REQUEST__INIT;
            req.key = key; /* packed during the call: stack memory is fine */
            req.value.data = (uint8_t *)val;
            req.value.len = strlen(val);
            kv__store__put(kv, &req, on_async_put, &b);
        }
        rc = rill_promise_wait(b.done, 10 * (int64_t)1000000000);
        printf("100 async puts: %s, %d failed\n", rc ? rill_strerror(rc) : "done",
               atomic_load(&b.failed));
        protobuf_c_service_destroy(kv);
        o.blocking = true;
        if (rill_rpc_pb_client_new(ch, &kv__store__descriptor, &o, &kv) == 0) {
            get(kv, "n/042");
            protobuf_c_service_destroy(kv);
        }
    }
    if (b.done)
        rill_promise_release(b.done);
    rill_channel_close(ch, NULL);
    rill_channel_release(ch);
    rill_loop_group_free(g);
    return rc || atomic_load(&b.failed) ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "demo";
    int port = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: rpc_protobuf server|client|demo [--port N]\n");
            return 2;
        }
    }
    if (!strcmp(mode, "client"))
        return run_client(port);
    if (strcmp(mode, "server") && strcmp(mode, "demo")) {
        fprintf(stderr, "usage: rpc_protobuf server|client|demo [--port N]\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct server s = { 0 };
    int rc = server_up(&s, port);
    if (rc) {
        fprintf(stderr, "server: %s\n", rill_strerror(rc));
        server_down(&s);
        return 1;
    }
    printf("ready port=%d\n", s.port);
    fflush(stdout);
    if (!strcmp(mode, "demo"))
        rc = run_client(s.port);
    else
        while (!stop)
            usleep(50000);
    server_down(&s);
    store_clear();
    return rc ? 1 : 0;
}
#else
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "rpc_protobuf: built without protobuf-c (apt-get install "
                    "libprotobuf-c-dev protobuf-c-compiler)\n");
    return 1;
}
#endif
