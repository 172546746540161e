/* Helpers for the pool, balancer and discovery suites: RPC servers on
 * loopback that count their calls and can be stopped and restarted on the
 * same port, and a pool on its own loop group. */
#ifndef RILL_TESTS_RPC_POOL_TEST_H
#define RILL_TESTS_RPC_POOL_TEST_H

#include <stdatomic.h>

#include "rill/rpc_client.h"
#include "rill/rpc_pool.h"
#include "rill/rpc_server.h"
#include "tests/rpc/rpc_test.h"
#include "tests/transport/tx.h"

struct pt_srv {
    struct rill_loop_group *boss, *workers;
    struct rill_rpc_server *rs;
    struct rill_server *srv;
    char uri[RILL_ADDR_STRLEN];
    int port;
    char id[16];
    _Atomic int who_calls, busy_calls, busy_left;
    struct rill_rpc_server_call *_Atomic held;
};

static inline int pt_child_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_server_install(arg, rill_channel_pipeline(ch));
}

/* Answers the server's id. */
static inline void pt_who(struct rill_rpc_server_call *c, void *arg)
{
    struct pt_srv *s = arg;
    atomic_fetch_add(&s->who_calls, 1);
    rill_rpc_server_call_reply(c, rt_buf(s->id));
}

/* BUSY while busy_left > 0, then the id. */
static inline void pt_busy(struct rill_rpc_server_call *c, void *arg)
{
    struct pt_srv *s = arg;
    atomic_fetch_add(&s->busy_calls, 1);
    if (atomic_fetch_sub(&s->busy_left, 1) > 0)
        rill_rpc_server_call_fail(c, RILL_RPC_BUSY, "try later");
    else
        rill_rpc_server_call_reply(c, rt_buf(s->id));
}

/* Keeps the call unanswered until pt_release_held. */
static inline void pt_hold(struct rill_rpc_server_call *c, void *arg)
{
    struct pt_srv *s = arg;
    atomic_store(&s->held, c);
}

static inline void pt_listen(struct pt_srv *s)
{
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", s->port);
    s->srv = tx_server(s->boss, s->workers, uri, pt_child_init, s->rs);
    tx_server_uri(s->srv, s->uri, sizeof(s->uri));
    s->port = rill_addr_port(rill_server_local_addr(s->srv));
}

static inline void pt_srv_up(struct pt_srv *s, const char *id)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->boss = tx_group("boss", 1);
    s->workers = tx_group("work", 1);
    cr_assert_eq(rill_rpc_server_new(NULL, &s->rs), 0);
    cr_assert_eq(rill_rpc_server_register(s->rs, "t", "who", pt_who, s, RILL_RPC_INLINE), 0);
    cr_assert_eq(rill_rpc_server_register(s->rs, "t", "busy", pt_busy, s, RILL_RPC_INLINE), 0);
    cr_assert_eq(rill_rpc_server_register(s->rs, "t", "hold", pt_hold, s, RILL_RPC_INLINE), 0);
    pt_listen(s);
}

/* Stop listening and close every connection (the port can be reused). */
static inline void pt_srv_stop(struct pt_srv *s)
{
    if (s->srv)
        tx_server_free(s->srv, true);
    s->srv = NULL;
}

static inline void pt_srv_restart(struct pt_srv *s)
{
    pt_listen(s);
}

static inline void pt_release_held(struct pt_srv *s)
{
    cr_assert(TX_EVENTUALLY(atomic_load(&s->held) != NULL), "no held call arrived");
    rill_rpc_server_call_reply(atomic_exchange(&s->held, NULL), rt_buf("held"));
}

static inline void pt_srv_down(struct pt_srv *s)
{
    pt_srv_stop(s);
    tx_group_free(s->workers);
    tx_group_free(s->boss);
    rill_rpc_server_free(s->rs);
}

static inline struct rill_rpc_pool *pt_pool(struct rill_loop_group *g, struct rill_rpc_pool_opts *o)
{
    struct rill_rpc_pool_opts d;
    if (!o) {
        rill_rpc_pool_opts_init(&d);
        o = &d;
    }
    o->group = g;
    struct rill_rpc_pool *p = NULL;
    cr_assert_eq(rill_rpc_pool_new(o, &p), 0);
    return p;
}

/* One call (sync); returns its outcome and copies the answer into @ans. */
static inline int pt_call(struct rill_rpc_pool *p, const char *target, const char *method,
                          bool idem, char *ans, size_t cap, int *attempts)
{
    struct rill_rpc_call_opts o;
    rill_rpc_call_opts_init(&o);
    o.idempotent = idem;
    o.timeout_ns = 10 * RILL_NS_PER_S;
    struct rill_rpc_pool_call *c;
    int rc = rill_rpc_pool_call_sync(p, target, "t", method, rt_buf("q"), &o, TX_WAIT_NS, &c);
    cr_assert_neq(rc, -ETIMEDOUT, "the call did not end");
    if (ans) {
        ans[0] = 0;
        struct rill_buf *r = rill_rpc_pool_call_response(c);
        if (r) {
            size_t n = rill_buf_readable(r) < cap - 1 ? rill_buf_readable(r) : cap - 1;
            rill_buf_get_bytes(r, rill_buf_reader_index(r), ans, n);
            ans[n] = 0;
            rill_buf_release(r);
        }
    }
    if (attempts)
        *attempts = rill_rpc_pool_call_attempts(c);
    rill_rpc_pool_call_release(c);
    return rc;
}

#endif
