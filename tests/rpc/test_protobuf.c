/* protobuf-c typed stubs over loopback TCP: a generated service
 * (tests/rpc/proto/pbtest.proto: nested messages, repeated fields, strings,
 * bytes) served by rill and called through the generated helpers on
 * asynchronous and blocking stubs; unknown services and methods, malformed
 * request and response bytes, handler errors, answers from other threads.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "rill/rpc_client.h"
#include "rill/rpc_protobuf.h"
#include "rill/rpc_server.h"
#include "tests/rpc/rpc_test.h"
#include "tests/transport/tx.h"
#include "util/testutil.h"

/* The generated code, compiled into this test (committed; proto/regen.sh). */
#include "proto/pbtest.pb-c.c"

TestSuite(rpc_protobuf, .timeout = 30, .fini = rill_test_no_leaks);

/* ---- the server's implementation of rilltest.Store ---- */

static void st_echo(Rilltest__Store_Service *svc, const Rilltest__Item *in,
                    Rilltest__Item_Closure closure, void *data)
{
    /* Fields point into the input: the closure packs before we return. */
    char name[300];
    snprintf(name, sizeof(name), "echo:%s", in->name);
    Rilltest__Item out = RILLTEST__ITEM__INIT;
    out.name = name;
    out.data = in->data;
    out.n_tags = in->n_tags;
    out.tags = in->tags;
    out.meta = in->meta;
    closure(&out, data);
}

static void st_summarize(Rilltest__Store_Service *svc, const Rilltest__Batch *in,
                         Rilltest__Summary_Closure closure, void *data)
{
    Rilltest__Summary out = RILLTEST__SUMMARY__INIT;
    size_t names_len = 1, data_len = 0;
    for (size_t i = 0; i < in->n_items; i++) {
        names_len += strlen(in->items[i]->name) + 1;
        data_len += in->items[i]->data.len;
    }
    char *names = calloc(1, names_len);
    uint8_t *bytes = malloc(data_len + 1);
    Rilltest__Item__Meta **metas = calloc(in->n_items + 1, sizeof(*metas));
    for (size_t i = 0; i < in->n_items; i++) {
        const Rilltest__Item *it = in->items[i];
        if (i)
            strcat(names, ",");
        strcat(names, it->name);
        if (it->data.len) /* an empty bytes field has no pointer */
            memcpy(bytes + out.data.len, it->data.data, it->data.len);
        out.data.len += it->data.len;
        for (size_t t = 0; t < it->n_tags; t++)
            out.tag_sum += it->tags[t];
        if (it->meta)
            metas[out.n_metas++] = it->meta;
    }
    out.count = (uint32_t)in->n_items;
    out.names = names;
    out.data.data = bytes;
    out.metas = metas;
    closure(&out, data);
    free(names);
    free(bytes);
    free(metas);
}

static void st_fail(Rilltest__Store_Service *svc, const Rilltest__FailRequest *in,
                    Rilltest__Empty_Closure closure, void *data)
{
    if (in->wrong_type) {
        Rilltest__Item item = RILLTEST__ITEM__INIT;
        closure((const Rilltest__Empty *)&item, data);
    } else if (in->status == 0) {
        closure(NULL, data);
    } else {
        cr_assert_not_null(rill_rpc_pb_server_call(data));
        rill_rpc_pb_fail(data, (int)in->status, in->message);
    }
}

/* Later: answered after the method returned, from a thread of its own. */
struct later {
    Rilltest__Item_Closure closure;
    void *data;
    char *name;
};

static pthread_mutex_t later_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t later_threads[64];
static int later_n;

/* While closed, Later's threads wait before answering. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_closed;

static void later_gate(bool closed)
{
    pthread_mutex_lock(&gate_mu);
    gate_closed = closed;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static void *later_main(void *arg)
{
    struct later *l = arg;
    pthread_mutex_lock(&gate_mu);
    while (gate_closed)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    Rilltest__Item out = RILLTEST__ITEM__INIT;
    char name[300];
    snprintf(name, sizeof(name), "later:%s", l->name);
    out.name = name;
    l->closure(&out, l->data);
    free(l->name);
    free(l);
    return NULL;
}

static void st_later(Rilltest__Store_Service *svc, const Rilltest__Item *in,
                     Rilltest__Item_Closure closure, void *data)
{
    struct later *l = malloc(sizeof(*l));
    l->closure = closure;
    l->data = data;
    l->name = strdup(in->name); /* the input goes when we return */
    pthread_mutex_lock(&later_mu);
    cr_assert_lt(later_n, 64);
    cr_assert_eq(pthread_create(&later_threads[later_n++], NULL, later_main, l), 0);
    pthread_mutex_unlock(&later_mu);
}

static void later_join(void)
{
    pthread_mutex_lock(&later_mu);
    for (int i = 0; i < later_n; i++)
        pthread_join(later_threads[i], NULL);
    later_n = 0;
    pthread_mutex_unlock(&later_mu);
}

/* "missing" stays NULL: it must be refused, not called. */
#define st_missing NULL
static Rilltest__Store_Service store_impl = RILLTEST__STORE__INIT(st_);

/* ---- world ---- */

struct world {
    struct rill_loop_group *boss, *workers;
    struct rill_rpc_server *rs;
    struct rill_server *srv;
    struct rill_channel *ch;
    char uri[RILL_ADDR_STRLEN];
};

static int child_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_server_install(arg, rill_channel_pipeline(ch));
}

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

static void world_up(struct world *w, enum rill_rpc_dispatch mode)
{
    memset(w, 0, sizeof(*w));
    w->boss = tx_group("boss", 1);
    w->workers = tx_group("work", 2);
    struct rill_rpc_server_opts o;
    rill_rpc_server_opts_init(&o);
    o.handler_threads = 2;
    cr_assert_eq(rill_rpc_server_new(&o, &w->rs), 0);
    cr_assert_eq(rill_rpc_pb_serve(w->rs, &store_impl.base, mode), 0);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = w->boss;
    so.workers = w->workers;
    so.child_init = child_init;
    so.child_arg = w->rs;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &w->srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(w->srv), TX_WAIT_NS), 0);
    tx_server_uri(w->srv, w->uri, sizeof(w->uri));
    w->ch = tx_connect(w->workers, w->uri, client_init, NULL);
}

static void world_down(struct world *w)
{
    tx_close(w->ch);
    later_join();
    tx_server_free(w->srv, true);
    tx_group_free(w->workers);
    tx_group_free(w->boss);
    rill_rpc_server_free(w->rs);
}

static ProtobufCService *stub(struct world *w, const ProtobufCServiceDescriptor *d, bool blocking)
{
    struct rill_rpc_pb_client_opts o;
    rill_rpc_pb_client_opts_init(&o);
    o.blocking = blocking;
    o.timeout_ns = 20 * RILL_NS_PER_S;
    ProtobufCService *s = NULL;
    cr_assert_eq(rill_rpc_pb_client_new(w->ch, d, &o, &s), 0);
    return s;
}

/* ---- what a client closure saw, checked on the test thread ---- */

struct seen {
    struct rill_promise *done; /* succeeded by the closure */
    struct rill_loop *loop;    /* where the closure is expected to run */
    pthread_t caller;          /* or this thread, for blocking stubs */
    bool on_loop, on_caller, got;
    int status;
    char msg[256];
    uint8_t *packed; /* the response, repacked */
    size_t packed_len;
};

static void seen_init(struct seen *s, struct world *w)
{
    memset(s, 0, sizeof(*s));
    cr_assert_eq(rill_promise_new(NULL, &s->done), 0);
    s->loop = rill_channel_loop(w->ch);
    s->caller = pthread_self();
}

static void seen_closure(const ProtobufCMessage *m, void *arg)
{
    struct seen *s = arg;
    s->on_loop = rill_loop_in_thread(s->loop);
    s->on_caller = pthread_equal(pthread_self(), s->caller);
    s->got = m != NULL;
    s->status = rill_rpc_pb_status();
    snprintf(s->msg, sizeof(s->msg), "%s",
             rill_rpc_pb_status_msg() ? rill_rpc_pb_status_msg() : "");
    if (m) {
        s->packed_len = protobuf_c_message_get_packed_size(m);
        s->packed = malloc(s->packed_len + 1);
        protobuf_c_message_pack(m, s->packed);
    }
    /* Our own reference: the test thread may wake and release its one while
     * succeed is still inside the promise. */
    struct rill_promise *done = rill_promise_retain(s->done);
    rill_promise_succeed(done, NULL, NULL);
    rill_promise_release(done);
}

static void seen_wait(struct seen *s)
{
    cr_assert_eq(rill_promise_wait(s->done, TX_WAIT_NS), 0, "the closure ran");
}

static ProtobufCMessage *seen_unpack(struct seen *s, const ProtobufCMessageDescriptor *d)
{
    cr_assert(s->got, "a response came (status %s: %s)", rill_rpc_status_name(s->status), s->msg);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, s->packed_len, s->packed);
    cr_assert_not_null(m);
    return m;
}

static void seen_fini(struct seen *s)
{
    rill_promise_release(s->done);
    free(s->packed);
}

/* ---- requests ---- */

static const uint8_t blob[] = { 0, 1, 2, 0xff, 0, 'x' };
static int32_t tags3[] = { 7, -3, 100000 };
static char *labels2[] = { "alpha", "" };

static void item_fill(Rilltest__Item *it, Rilltest__Item__Meta *meta, const char *name)
{
    rilltest__item__init(it);
    rilltest__item__meta__init(meta);
    meta->id = -1234567890123LL;
    meta->n_labels = 2;
    meta->labels = labels2;
    it->name = (char *)name;
    it->data.data = (uint8_t *)blob;
    it->data.len = sizeof(blob);
    it->n_tags = 3;
    it->tags = tags3;
    it->meta = meta;
}

static void check_echoed_item(const Rilltest__Item *r, const char *name)
{
    char want[300];
    snprintf(want, sizeof(want), "echo:%s", name);
    cr_assert_str_eq(r->name, want);
    cr_assert_eq(r->data.len, sizeof(blob));
    cr_assert_arr_eq(r->data.data, blob, sizeof(blob));
    cr_assert_eq(r->n_tags, 3);
    cr_assert_arr_eq(r->tags, tags3, sizeof(tags3));
    cr_assert_not_null(r->meta);
    cr_assert_eq(r->meta->id, -1234567890123LL);
    cr_assert_eq(r->meta->n_labels, 2);
    cr_assert_str_eq(r->meta->labels[0], "alpha");
    cr_assert_str_eq(r->meta->labels[1], "");
}

/* ---- tests ---- */

Test(rpc_protobuf, async_stub_round_trips_every_message_shape)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);

    Rilltest__Item item;
    Rilltest__Item__Meta meta;
    item_fill(&item, &meta, "first");
    struct seen s1;
    seen_init(&s1, &w);
    rilltest__store__echo(store, &item, (Rilltest__Item_Closure)seen_closure, &s1);

    /* A batch: three items, one without meta, one all defaults. */
    Rilltest__Item items[3];
    Rilltest__Item__Meta metas[3];
    item_fill(&items[0], &metas[0], "a");
    item_fill(&items[1], &metas[1], "bb");
    items[1].meta = NULL;
    rilltest__item__init(&items[2]);
    Rilltest__Item *ptrs[3] = { &items[0], &items[1], &items[2] };
    Rilltest__Batch batch = RILLTEST__BATCH__INIT;
    batch.n_items = 3;
    batch.items = ptrs;
    struct seen s2;
    seen_init(&s2, &w);
    rilltest__store__summarize(store, &batch, (Rilltest__Summary_Closure)seen_closure, &s2);

    seen_wait(&s1);
    seen_wait(&s2);
    cr_assert(s1.on_loop, "an asynchronous closure runs on the channel's loop");
    cr_assert_eq(s1.status, RILL_RPC_OK);
    Rilltest__Item *r1 = (Rilltest__Item *)seen_unpack(&s1, &rilltest__item__descriptor);
    check_echoed_item(r1, "first");
    rilltest__item__free_unpacked(r1, NULL);

    cr_assert(s2.on_loop);
    Rilltest__Summary *r2 = (Rilltest__Summary *)seen_unpack(&s2, &rilltest__summary__descriptor);
    cr_assert_eq(r2->count, 3);
    cr_assert_eq(r2->tag_sum, 2 * (7 - 3 + 100000));
    cr_assert_str_eq(r2->names, "a,bb,");
    cr_assert_eq(r2->data.len, 2 * sizeof(blob));
    cr_assert_arr_eq(r2->data.data + sizeof(blob), blob, sizeof(blob));
    cr_assert_eq(r2->n_metas, 1);
    cr_assert_eq(r2->metas[0]->id, -1234567890123LL);
    rilltest__summary__free_unpacked(r2, NULL);

    seen_fini(&s1);
    seen_fini(&s2);
    protobuf_c_service_destroy(store);
    world_down(&w);
}

Test(rpc_protobuf, blocking_stub_runs_the_closure_before_returning)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, true);
    Rilltest__Item item;
    Rilltest__Item__Meta meta;
    item_fill(&item, &meta, "blocking");
    struct seen s;
    seen_init(&s, &w);
    rilltest__store__echo(store, &item, (Rilltest__Item_Closure)seen_closure, &s);
    cr_assert(rill_promise_is_done(s.done), "the closure ran inside invoke");
    cr_assert(s.on_caller, "on the calling thread");
    Rilltest__Item *r = (Rilltest__Item *)seen_unpack(&s, &rilltest__item__descriptor);
    check_echoed_item(r, "blocking");
    rilltest__item__free_unpacked(r, NULL);
    seen_fini(&s);

    /* An empty message both ways: the Empty payload is zero bytes. */
    Rilltest__FailRequest fr = RILLTEST__FAIL_REQUEST__INIT;
    fr.status = RILL_RPC_NOT_FOUND;
    fr.message = "no such key";
    seen_init(&s, &w);
    rilltest__store__fail(store, &fr, (Rilltest__Empty_Closure)seen_closure, &s);
    cr_assert(rill_promise_is_done(s.done));
    cr_assert_not(s.got);
    cr_assert_eq(s.status, RILL_RPC_NOT_FOUND);
    cr_assert_str_eq(s.msg, "no such key");
    seen_fini(&s);
    protobuf_c_service_destroy(store);
    world_down(&w);
}

Test(rpc_protobuf, call_sync_returns_the_message_and_status)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);
    Rilltest__Item items[2];
    Rilltest__Item__Meta metas[2];
    item_fill(&items[0], &metas[0], "x");
    item_fill(&items[1], &metas[1], "yz");
    Rilltest__Item *ptrs[2] = { &items[0], &items[1] };
    Rilltest__Batch batch = RILLTEST__BATCH__INIT;
    batch.n_items = 2;
    batch.items = ptrs;
    ProtobufCMessage *out;
    int status = -1;
    struct rill_rpc_call *call;
    cr_assert_eq(rill_rpc_pb_call_sync(store, 1, &batch.base, &out, &status, &call), 0);
    cr_assert_eq(status, RILL_RPC_OK);
    cr_assert_not_null(call);
    cr_assert_eq(rill_rpc_call_status(call), RILL_RPC_OK);
    rill_rpc_call_release(call);
    Rilltest__Summary *r = (Rilltest__Summary *)out;
    cr_assert_eq(r->base.descriptor, &rilltest__summary__descriptor);
    cr_assert_eq(r->count, 2);
    cr_assert_str_eq(r->names, "x,yz");
    cr_assert_eq(r->n_metas, 2);
    cr_assert_eq(r->metas[1]->n_labels, 2);
    cr_assert_str_eq(r->metas[1]->labels[0], "alpha");
    protobuf_c_message_free_unpacked(out, NULL);

    /* Failures: the error, the status, no message. */
    Rilltest__FailRequest fr = RILLTEST__FAIL_REQUEST__INIT;
    fr.status = RILL_RPC_USER + 7;
    fr.message = "application says no";
    cr_assert_eq(rill_rpc_pb_call_sync(store, 2, &fr.base, &out, &status, &call), -EIO);
    cr_assert_null(out);
    cr_assert_eq(status, RILL_RPC_USER + 7);
    cr_assert_str_eq(rill_rpc_call_status_msg(call), "application says no");
    rill_rpc_call_release(call);
    /* A bad index or an input of the wrong type never reaches the wire. */
    cr_assert_eq(rill_rpc_pb_call_sync(store, 99, &fr.base, &out, &status, NULL), -EINVAL);
    cr_assert_eq(rill_rpc_pb_call_sync(store, 0, &fr.base, &out, &status, &call), -EINVAL);
    cr_assert_eq(status, RILL_RPC_INVALID_ARGUMENT);
    cr_assert_null(call);
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(w.rs, &st);
    cr_assert_eq(st.calls, 2);
    protobuf_c_service_destroy(store);
    world_down(&w);
}

Test(rpc_protobuf, many_concurrent_calls_on_one_connection)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);
    enum { N = 400 };
    struct seen *s = calloc(N, sizeof(*s));
    char names[N][16];
    for (int i = 0; i < N; i++) {
        Rilltest__Item item;
        Rilltest__Item__Meta meta;
        snprintf(names[i], sizeof(names[i]), "n%d", i);
        item_fill(&item, &meta, names[i]);
        seen_init(&s[i], &w);
        rilltest__store__echo(store, &item, (Rilltest__Item_Closure)seen_closure, &s[i]);
    }
    for (int i = 0; i < N; i++) {
        seen_wait(&s[i]);
        Rilltest__Item *r = (Rilltest__Item *)seen_unpack(&s[i], &rilltest__item__descriptor);
        check_echoed_item(r, names[i]);
        rilltest__item__free_unpacked(r, NULL);
        seen_fini(&s[i]);
    }
    free(s);
    protobuf_c_service_destroy(store);
    world_down(&w);
}

Test(rpc_protobuf, unknown_services_and_methods_are_unimplemented)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    /* A method the descriptor has but the implementation left NULL. */
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, true);
    Rilltest__Empty e = RILLTEST__EMPTY__INIT;
    struct seen s;
    seen_init(&s, &w);
    rilltest__store__missing(store, &e, (Rilltest__Empty_Closure)seen_closure, &s);
    cr_assert_not(s.got);
    cr_assert_eq(s.status, RILL_RPC_UNIMPLEMENTED, "%s", rill_rpc_status_name(s.status));
    seen_fini(&s);
    /* A service nobody serves. */
    ProtobufCService *other = stub(&w, &rilltest__other__descriptor, true);
    seen_init(&s, &w);
    rilltest__other__ping(other, &e, (Rilltest__Empty_Closure)seen_closure, &s);
    cr_assert_not(s.got);
    cr_assert_eq(s.status, RILL_RPC_UNIMPLEMENTED);
    seen_fini(&s);
    /* A method name the descriptor does not have, sent raw. */
    struct rill_rpc_call *c;
    cr_assert_eq(rill_rpc_call_sync(w.ch, "rilltest.Store", "Nope", NULL, NULL, TX_WAIT_NS, &c),
                 -ENOSYS);
    cr_assert_eq(rill_rpc_call_status(c), RILL_RPC_UNIMPLEMENTED);
    rill_rpc_call_release(c);
    /* Unserved: every method goes; serving twice is refused. */
    cr_assert_eq(rill_rpc_pb_serve(w.rs, &store_impl.base, RILL_RPC_INLINE), -EEXIST);
    cr_assert_eq(rill_rpc_pb_unserve(w.rs, &store_impl.base), 0);
    cr_assert_eq(rill_rpc_pb_unserve(w.rs, &store_impl.base), -ENOENT);
    Rilltest__Item item;
    Rilltest__Item__Meta meta;
    item_fill(&item, &meta, "gone");
    seen_init(&s, &w);
    rilltest__store__echo(store, &item, (Rilltest__Item_Closure)seen_closure, &s);
    cr_assert_eq(s.status, RILL_RPC_UNIMPLEMENTED);
    seen_fini(&s);
    protobuf_c_service_destroy(store);
    protobuf_c_service_destroy(other);
    world_down(&w);
}

static void raw_garbage(struct rill_rpc_server_call *c, void *arg)
{
    rill_rpc_server_call_reply(c, rt_buf("\x0a\x05"
                                         "ab"));
}

Test(rpc_protobuf, malformed_bytes_are_refused_both_ways)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    /* Request: field 1 announces 5 bytes and 2 follow. */
    struct rill_rpc_call *c;
    cr_assert_eq(rill_rpc_call_sync(w.ch, "rilltest.Store", "Echo",
                                    rt_buf("\x0a\x05"
                                           "ab"),
                                    NULL, TX_WAIT_NS, &c),
                 -EINVAL);
    cr_assert_eq(rill_rpc_call_status(c), RILL_RPC_INVALID_ARGUMENT);
    cr_assert(strstr(rill_rpc_call_status_msg(c), "rilltest.Item"), "%s",
              rill_rpc_call_status_msg(c));
    rill_rpc_call_release(c);
    /* A wire type protobuf does not have (7). */
    cr_assert_eq(rill_rpc_call_sync(w.ch, "rilltest.Store", "Summarize", rt_buf("\x0f\x01"), NULL,
                                    TX_WAIT_NS, &c),
                 -EINVAL);
    rill_rpc_call_release(c);

    /* Response: a raw method answers bytes that are no rilltest.Item. */
    cr_assert_eq(rill_rpc_server_register(w.rs, "rilltest.Other", "Garbage", raw_garbage, NULL,
                                          RILL_RPC_INLINE),
                 0);
    ProtobufCService *other = stub(&w, &rilltest__other__descriptor, false);
    Rilltest__Empty e = RILLTEST__EMPTY__INIT;
    ProtobufCMessage *out;
    int status;
    cr_assert_eq(rill_rpc_pb_call_sync(other, 1, &e.base, &out, &status, NULL), RILL_EPROTO);
    cr_assert_null(out);
    cr_assert_eq(status, RILL_RPC_INTERNAL);
    struct seen s;
    seen_init(&s, &w);
    rilltest__other__garbage(other, &e, (Rilltest__Item_Closure)seen_closure, &s);
    seen_wait(&s);
    cr_assert_not(s.got);
    cr_assert_eq(s.status, RILL_RPC_INTERNAL);
    cr_assert(strstr(s.msg, "malformed response"), "%s", s.msg);
    seen_fini(&s);

    /* The connection is fine afterwards. */
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);
    Rilltest__Item item;
    Rilltest__Item__Meta meta;
    item_fill(&item, &meta, "after");
    cr_assert_eq(rill_rpc_pb_call_sync(store, 0, &item.base, &out, &status, NULL), 0);
    check_echoed_item((Rilltest__Item *)out, "after");
    protobuf_c_message_free_unpacked(out, NULL);
    protobuf_c_service_destroy(store);
    protobuf_c_service_destroy(other);
    world_down(&w);
}

Test(rpc_protobuf, handler_errors_reach_the_caller)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);
    struct {
        uint32_t status;
        bool wrong_type;
        int want;
        const char *msg_part;
    } cases[] = {
        { RILL_RPC_NOT_FOUND, false, RILL_RPC_NOT_FOUND, "key k1" },
        { RILL_RPC_PERMISSION_DENIED, false, RILL_RPC_PERMISSION_DENIED, "key k1" },
        { RILL_RPC_USER + 1, false, RILL_RPC_USER + 1, "key k1" },
        { 0, false, RILL_RPC_UNKNOWN, "NULL" },           /* closure(NULL) */
        { 0, true, RILL_RPC_INTERNAL, "rilltest.Empty" }, /* an Item for an Empty */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Rilltest__FailRequest fr = RILLTEST__FAIL_REQUEST__INIT;
        fr.status = cases[i].status;
        fr.message = "key k1";
        fr.wrong_type = cases[i].wrong_type;
        struct seen s;
        seen_init(&s, &w);
        rilltest__store__fail(store, &fr, (Rilltest__Empty_Closure)seen_closure, &s);
        seen_wait(&s);
        cr_assert_not(s.got, "case %zu", i);
        cr_assert_eq(s.status, cases[i].want, "case %zu: %s", i, rill_rpc_status_name(s.status));
        cr_assert(strstr(s.msg, cases[i].msg_part), "case %zu: %s", i, s.msg);
        seen_fini(&s);
    }
    struct rill_rpc_method_stats ms;
    cr_assert_eq(rill_rpc_server_method_stats(w.rs, "rilltest.Store", "Fail", &ms), 0);
    cr_assert_eq(ms.errors, 5);
    protobuf_c_service_destroy(store);
    world_down(&w);
}

Test(rpc_protobuf, pool_dispatch_and_answers_from_other_threads)
{
    struct world w;
    world_up(&w, RILL_RPC_POOL);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);
    enum { N = 16 };
    struct seen s[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        Rilltest__Item item;
        Rilltest__Item__Meta meta;
        snprintf(names[i], sizeof(names[i]), "p%d", i);
        item_fill(&item, &meta, names[i]);
        seen_init(&s[i], &w);
        if (i % 2)
            rilltest__store__later(store, &item, (Rilltest__Item_Closure)seen_closure, &s[i]);
        else
            rilltest__store__echo(store, &item, (Rilltest__Item_Closure)seen_closure, &s[i]);
    }
    for (int i = 0; i < N; i++) {
        seen_wait(&s[i]);
        Rilltest__Item *r = (Rilltest__Item *)seen_unpack(&s[i], &rilltest__item__descriptor);
        if (i % 2) {
            char want[32];
            snprintf(want, sizeof(want), "later:%s", names[i]);
            cr_assert_str_eq(r->name, want);
            cr_assert_eq(r->n_tags, 0);
        } else {
            check_echoed_item(r, names[i]);
        }
        rilltest__item__free_unpacked(r, NULL);
        seen_fini(&s[i]);
    }
    protobuf_c_service_destroy(store);
    world_down(&w);
}

/* On the channel's loop a blocking stub would wait forever: it refuses. */
struct on_loop {
    ProtobufCService *store;
    struct seen *s;
};

static void on_loop_task(void *arg)
{
    struct on_loop *ol = arg;
    Rilltest__Empty e = RILLTEST__EMPTY__INIT;
    rilltest__store__missing(ol->store, &e, (Rilltest__Empty_Closure)seen_closure, ol->s);
}

Test(rpc_protobuf, wrong_input_and_blocking_on_the_loop_fail_at_once)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);
    /* An input of the wrong type: the closure runs at once, on this thread. */
    Rilltest__Batch batch = RILLTEST__BATCH__INIT;
    struct seen s;
    seen_init(&s, &w);
    store->invoke(store, 0, &batch.base, seen_closure, &s);
    cr_assert(rill_promise_is_done(s.done));
    cr_assert(s.on_caller);
    cr_assert_not(s.got);
    cr_assert_eq(s.status, RILL_RPC_INVALID_ARGUMENT);
    seen_fini(&s);
    cr_assert_eq(rill_rpc_pb_status(), RILL_RPC_OK, "outside a closure the status is OK");
    cr_assert_null(rill_rpc_pb_status_msg());

    ProtobufCService *blocking = stub(&w, &rilltest__store__descriptor, true);
    seen_init(&s, &w);
    struct on_loop ol = { blocking, &s };
    cr_assert_eq(rill_loop_execute(rill_channel_loop(w.ch), on_loop_task, &ol), 0);
    seen_wait(&s);
    cr_assert(s.on_loop);
    cr_assert_not(s.got);
    cr_assert_neq(s.status, RILL_RPC_OK);
    seen_fini(&s);
    struct rill_rpc_server_stats st;
    rill_rpc_server_stats(w.rs, &st);
    cr_assert_eq(st.calls, 0, "nothing reached the server");
    protobuf_c_service_destroy(blocking);
    protobuf_c_service_destroy(store);
    world_down(&w);
}

/* A 1 MiB bytes field arrives in many reads: the payload may be a composite
 * and is decoded from a flat copy then. The blocking stub's wait limit
 * cancels a call that takes too long. */
Test(rpc_protobuf, large_messages_and_wait_limits)
{
    struct world w;
    world_up(&w, RILL_RPC_INLINE);
    ProtobufCService *store = stub(&w, &rilltest__store__descriptor, false);
    enum { BIG = 1 << 20 };
    uint8_t *big = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 12));
    Rilltest__Item item;
    Rilltest__Item__Meta meta;
    item_fill(&item, &meta, "big");
    item.data.data = big;
    item.data.len = BIG;
    ProtobufCMessage *out;
    int status;
    cr_assert_eq(rill_rpc_pb_call_sync(store, 0, &item.base, &out, &status, NULL), 0);
    Rilltest__Item *r = (Rilltest__Item *)out;
    cr_assert_str_eq(r->name, "echo:big");
    cr_assert_eq(r->data.len, BIG);
    cr_assert(memcmp(r->data.data, big, BIG) == 0, "1 MiB came back intact");
    protobuf_c_message_free_unpacked(out, NULL);
    free(big);
    protobuf_c_service_destroy(store);

    /* Later's answer held back: a 50 ms wait limit cancels the call, the
     * closure gets NULL with CANCELLED, and the answer that comes after is
     * dropped. */
    struct rill_rpc_pb_client_opts o;
    rill_rpc_pb_client_opts_init(&o);
    o.blocking = true;
    o.wait_ns = 50 * 1000 * 1000;
    cr_assert_eq(rill_rpc_pb_client_new(w.ch, &rilltest__store__descriptor, &o, &store), 0);
    later_gate(true);
    struct seen s;
    seen_init(&s, &w);
    item_fill(&item, &meta, "slow");
    rilltest__store__later(store, &item, (Rilltest__Item_Closure)seen_closure, &s);
    cr_assert(rill_promise_is_done(s.done));
    cr_assert_not(s.got);
    cr_assert_eq(s.status, RILL_RPC_CANCELLED, "%s", rill_rpc_status_name(s.status));
    seen_fini(&s);
    later_gate(false);
    /* The connection goes on. */
    item_fill(&item, &meta, "fast");
    seen_init(&s, &w);
    rilltest__store__echo(store, &item, (Rilltest__Item_Closure)seen_closure, &s);
    r = (Rilltest__Item *)seen_unpack(&s, &rilltest__item__descriptor);
    check_echoed_item(r, "fast");
    rilltest__item__free_unpacked(r, NULL);
    seen_fini(&s);
    protobuf_c_service_destroy(store);
    world_down(&w);
}

/* examples/rpc_protobuf in demo mode: its server and its client (blocking
 * and asynchronous stubs) in one process, under this build's sanitizers and
 * leak detector (the environment passes on). */
Test(rpc_protobuf, example_demo_runs_clean)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/rpc_protobuf demo 2>&1", RILL_EXAMPLES_DIR);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    int st = pclose(p);
    cr_assert_eq(st, 0, "exit status %d; output:\n%s", st, out);
    const char *want[] = {
        "put fruit/apple: replaced",      "put  failed: INVALID_ARGUMENT empty key",
        "get fruit/apple: green",         "get fruit/cherry: NOT_FOUND (no key 'fruit/cherry')",
        "list 'fruit/': 2 entries",       "  fruit/banana = yellow",
        "100 async puts: done, 0 failed", "get n/042: 1764"
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(strstr(out, want[i]), "missing \"%s\" in:\n%s", want[i], out);
}
