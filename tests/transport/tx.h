/* Helpers shared by the epoll transport's integration tests: loop groups,
 * a server and a client made with the bootstraps, and small handlers
 * (echo, a collector that records what arrives and what happens).
 *
 * Everything here runs on real sockets on 127.0.0.1 / ::1 / Unix paths;
 * every wait is bounded (TX_WAIT_NS). Handlers run on loop threads; the
 * test thread reads a collector's fields after waiting on its promises or
 * through its atomics.
 *
 * Suites on slower transports use these helpers too (tests/rdma/rdma_test.h
 * defines a longer TX_WAIT_NS before including this file). */
#ifndef RILL_TESTS_TX_H
#define RILL_TESTS_TX_H

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"

/* Longest wait for one step (a bind, a connect, a close); an includer may
 * define its own first. */
#ifndef TX_WAIT_NS
#define TX_WAIT_NS (20 * RILL_NS_PER_S)
#endif

/* A group of @n loops named @name, with the other options from @opts
 * (NULL: the defaults). */
static inline struct rill_loop_group *tx_group_from(const struct rill_loop_group_opts *opts,
                                                    const char *name, int n)
{
    struct rill_loop_group_opts o;
    if (opts)
        o = *opts;
    else
        rill_loop_group_opts_init(&o);
    o.nloops = n;
    o.name = name;
    struct rill_loop_group *g = NULL;
    cr_assert_eq(rill_loop_group_new(&o, &g), 0);
    return g;
}

static inline struct rill_loop_group *tx_group(const char *name, int n)
{
    return tx_group_from(NULL, name, n);
}

static inline void tx_group_free(struct rill_loop_group *g)
{
    if (!g)
        return;
    struct rill_promise *t = rill_loop_group_shutdown(g, 0, 5 * RILL_NS_PER_S);
    cr_assert_eq(rill_promise_wait(t, TX_WAIT_NS), 0, "the loop group shut down");
    rill_loop_group_free(g);
}

static inline struct rill_promise *tx_promise(struct rill_loop *loop)
{
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(loop, &p), 0);
    return p;
}

/* Wait for @p (bounded) and give it back; returns its outcome. */
static inline int tx_wait_release(struct rill_promise *p)
{
    int r = rill_promise_wait(p, TX_WAIT_NS);
    rill_promise_release(p);
    return r;
}

static inline struct rill_buf *tx_buf(const void *data, size_t len)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(data, len, &b), 0);
    return b;
}

/* Poll @cond every millisecond until it holds or @ns pass; returns it. */
#define TX_WITHIN(ns, cond)                                                                        \
    __extension__({                                                                                \
        uint64_t tx__end = rill_clock_now_ns() + (ns);                                             \
        while (!(cond) && rill_clock_now_ns() < tx__end)                                           \
            usleep(1000);                                                                          \
        (cond);                                                                                    \
    })

/* Poll @cond until it holds or the wait ends; returns it. */
#define TX_EVENTUALLY(cond) TX_WITHIN(TX_WAIT_NS, cond)

/* ---- echo: write back what arrives, flush at read_complete ---- */

static void tx_echo_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    rill_ctx_write(ctx, msg, NULL);
}

static void tx_echo_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx);
    rill_ctx_fire_read_complete(ctx);
}

__attribute__((unused)) static const struct rill_handler tx_echo_handler = {
    .name = "echo",
    .read = tx_echo_read,
    .read_complete = tx_echo_read_complete,
};

static inline int tx_echo_init(struct rill_channel *ch, void *arg)
{
    (void)arg;
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "echo", &tx_echo_handler, NULL);
}

/* ---- collector: records bytes and events of one channel ---- */

struct tx_collector {
    pthread_mutex_t lock;
    uint8_t *data; /* what arrived, up to cap */
    size_t cap;
    _Atomic size_t got; /* bytes that arrived */
    _Atomic int active, inactive, input_shutdown, output_shutdown, exceptions, last_error;
    _Atomic int writability_changes, unwritable_seen;
    _Atomic int reads;
    bool release_reads; /* false: keep nothing, just count */
};

static inline struct tx_collector *tx_collector_new(size_t cap)
{
    struct tx_collector *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    pthread_mutex_init(&c->lock, NULL);
    c->cap = cap;
    c->data = cap ? malloc(cap) : NULL;
    cr_assert(!cap || c->data);
    return c;
}

static inline void tx_collector_free(struct tx_collector *c)
{
    pthread_mutex_destroy(&c->lock);
    free(c->data);
    free(c);
}

/* Forget what arrived (between exchanges, while nothing is in flight). */
static inline void tx_collector_reset(struct tx_collector *c)
{
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->got, 0);
    atomic_store(&c->reads, 0);
    pthread_mutex_unlock(&c->lock);
}

static void tx_col_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct tx_collector *c = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (b) {
        size_t n = rill_buf_readable(b);
        pthread_mutex_lock(&c->lock);
        size_t at = atomic_load(&c->got);
        if (c->data && at < c->cap)
            rill_buf_get_bytes(b, rill_buf_reader_index(b), c->data + at,
                               n < c->cap - at ? n : c->cap - at);
        /* reads first: a test that sees the bytes must see the read too */
        atomic_fetch_add(&c->reads, 1);
        atomic_store(&c->got, at + n);
        pthread_mutex_unlock(&c->lock);
    } else {
        atomic_fetch_add(&c->reads, 1);
    }
    rill_msg_release(msg);
}

static void tx_col_active(struct rill_ctx *ctx)
{
    struct tx_collector *c = rill_ctx_arg(ctx);
    atomic_fetch_add(&c->active, 1);
    rill_ctx_fire_active(ctx);
}

static void tx_col_inactive(struct rill_ctx *ctx)
{
    struct tx_collector *c = rill_ctx_arg(ctx);
    atomic_fetch_add(&c->inactive, 1);
    rill_ctx_fire_inactive(ctx);
}

static void tx_col_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct tx_collector *c = rill_ctx_arg(ctx);
    if (ev->type == RILL_EVENT_INPUT_SHUTDOWN)
        atomic_fetch_add(&c->input_shutdown, 1);
    if (ev->type == RILL_EVENT_OUTPUT_SHUTDOWN)
        atomic_fetch_add(&c->output_shutdown, 1);
    rill_ctx_fire_user_event(ctx, ev);
}

static void tx_col_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct tx_collector *c = rill_ctx_arg(ctx);
    (void)why;
    atomic_store(&c->last_error, err);
    atomic_fetch_add(&c->exceptions, 1);
}

static void tx_col_writability(struct rill_ctx *ctx, bool writable)
{
    struct tx_collector *c = rill_ctx_arg(ctx);
    atomic_fetch_add(&c->writability_changes, 1);
    if (!writable)
        atomic_store(&c->unwritable_seen, 1);
    rill_ctx_fire_writability_changed(ctx, writable);
}

__attribute__((unused)) static const struct rill_handler tx_collector_handler = {
    .name = "collector",
    .read = tx_col_read,
    .active = tx_col_active,
    .inactive = tx_col_inactive,
    .user_event = tx_col_user_event,
    .exception = tx_col_exception,
    .writability_changed = tx_col_writability,
};

static inline int tx_collector_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "collector", &tx_collector_handler,
                                  arg);
}

/* ---- bootstraps ---- */

/* Bind a server on @uri and wait until it accepts. @child_opts may be
 * NULL. */
static inline struct rill_server *tx_server_opts(struct rill_loop_group *boss,
                                                 struct rill_loop_group *workers, const char *uri,
                                                 rill_channel_init_fn *init, void *arg,
                                                 const struct rill_channel_opts *child_opts)
{
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = boss;
    so.workers = workers;
    so.child_init = init;
    so.child_arg = arg;
    if (child_opts)
        so.child_opts = *child_opts;
    struct rill_server *s = NULL;
    int err = rill_server_bind(&so, uri, &s);
    cr_assert_eq(err, 0, "bind %s: %s", uri, rill_strerror(err));
    err = rill_promise_wait(rill_server_bound(s), TX_WAIT_NS);
    cr_assert_eq(err, 0, "listen %s: %s", uri, rill_strerror(err));
    return s;
}

static inline struct rill_server *tx_server(struct rill_loop_group *boss,
                                            struct rill_loop_group *workers, const char *uri,
                                            rill_channel_init_fn *init, void *arg)
{
    return tx_server_opts(boss, workers, uri, init, arg, NULL);
}

static inline void tx_server_free(struct rill_server *s, bool close_children)
{
    struct rill_promise *closed = rill_server_close(s, close_children);
    cr_assert_eq(rill_promise_wait(closed, TX_WAIT_NS), 0, "the server closed");
    rill_server_free(s);
}

/* The server's address as a URI (for clients). */
static inline void tx_server_uri(struct rill_server *s, char *buf, size_t size)
{
    rill_addr_format(rill_server_local_addr(s), buf, size);
}

/* Connect and wait; returns a new channel reference, or NULL with *err. */
static inline struct rill_channel *tx_connect_opts(const struct rill_client_opts *o,
                                                   const char *uri, int *err)
{
    struct rill_promise *f;
    int e = rill_client_connect(o, uri, &f);
    if (e) {
        if (err)
            *err = e;
        return NULL;
    }
    e = rill_promise_wait(f, TX_WAIT_NS);
    struct rill_channel *ch = e ? NULL : rill_client_channel(f);
    rill_promise_release(f);
    if (err)
        *err = e;
    return ch;
}

static inline struct rill_channel *tx_connect(struct rill_loop_group *g, const char *uri,
                                              rill_channel_init_fn *init, void *arg)
{
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = init;
    co.arg = arg;
    int err = 0;
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    cr_assert_not_null(ch, "connect %s: %s", uri, rill_strerror(err));
    return ch;
}

/* Close @ch, wait for it, give back the reference. */
static inline void tx_close(struct rill_channel *ch)
{
    struct rill_promise *p = tx_promise(NULL);
    rill_channel_close(ch, p);
    cr_assert_eq(tx_wait_release(p), 0, "the channel closed");
    rill_channel_release(ch);
}

#endif /* RILL_TESTS_TX_H */
