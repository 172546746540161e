/* Helpers shared by the RDMA transport's suites (tests/rdma/test_*.c).
 *
 * The guest suites run inside the Soft-RoCE guest (scripts/rxe-vm/run.sh),
 * where RXE_VM_IP names the address of the rxe device: rt_ip() fails the
 * test with a clear message when it is missing, so a guest suite run on a
 * machine without the device fails loudly instead of skipping. 127.0.0.1
 * is not an RDMA address: every rdma:// URI uses RXE_VM_IP.
 *
 * The guest is an emulator (TCG) and Soft-RoCE runs in its kernel: a round
 * trip costs tens of microseconds at best and throughput is tens of MB/s,
 * so every wait here is bounded but generous (RT_WAIT_NS), and every loop
 * is bounded in count and time.
 *
 * Handlers run on loop threads; the test thread reads their state through
 * atomics, or after waiting on a promise they complete. */
#ifndef RILL_TESTS_RDMA_TEST_H
#define RILL_TESTS_RDMA_TEST_H

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/alloc.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rdma.h"
#include "util/testutil.h"

/* Longest wait for one step (a connect, a close, one echo). */
#define RT_WAIT_NS (60 * RILL_NS_PER_S)

/* ---- the guest's address ---- */

/* The address of the guest's RDMA device (RXE_VM_IP), or a failed test. */
static inline const char *rt_ip(void)
{
    const char *ip = getenv("RXE_VM_IP");
    if (!ip || !*ip)
        cr_assert_fail("RXE_VM_IP is not set: this suite needs an RDMA device; run it in the "
                       "Soft-RoCE guest: scripts/rxe-vm/run.sh ctest --test-dir BUILD_DIR -L "
                       "guest (or scripts/rdma-check.sh BUILD_DIR -- ctest --test-dir BUILD_DIR "
                       "-L rdma)");
    return ip;
}

/* True inside the guest (RXE_VM_IP set), without failing. */
static inline bool rt_in_guest(void)
{
    const char *ip = getenv("RXE_VM_IP");
    return ip && *ip;
}

/* "@scheme://@ip:@port" into @buf. */
static inline void rt_uri(char *buf, size_t size, const char *scheme, const char *ip, int port)
{
    snprintf(buf, size, "%s://%s:%d", scheme, ip, port);
}

/* ---- loops, promises, buffers ---- */

static inline struct rill_loop_group *rt_group_poll(const char *name, int n, enum rill_busy_poll bp)
{
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = n;
    o.name = name;
    o.busy_poll = bp;
    struct rill_loop_group *g = NULL;
    cr_assert_eq(rill_loop_group_new(&o, &g), 0);
    return g;
}

static inline struct rill_loop_group *rt_group(const char *name, int n)
{
    return rt_group_poll(name, n, RILL_BUSY_POLL_OFF);
}

static inline void rt_group_free(struct rill_loop_group *g)
{
    if (!g)
        return;
    struct rill_promise *t = rill_loop_group_shutdown(g, 0, 10 * RILL_NS_PER_S);
    cr_assert_eq(rill_promise_wait(t, RT_WAIT_NS), 0, "the loop group shut down");
    rill_loop_group_free(g);
}

static inline struct rill_promise *rt_promise(void)
{
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(NULL, &p), 0);
    return p;
}

/* Wait for @p (bounded) and give it back; returns its outcome. */
static inline int rt_wait_release(struct rill_promise *p)
{
    int r = rill_promise_wait(p, RT_WAIT_NS);
    rill_promise_release(p);
    return r;
}

/* Test data: the stream with seed @seed has at offset @i the byte
 * table[(i + seed * 7919) % RT_PERIOD] of a fixed pseudo-random table. The
 * period is a prime near 1 MiB, so a piece of the stream that arrives at
 * the wrong offset (reordered, repeated, dropped) does not match, and
 * filling and checking are memcpy and memcmp: per-byte loops are slow in
 * the emulated guest, more so under ASan. */
#define RT_PERIOD 1048573u

static uint8_t *rt__table;
static pthread_once_t rt__table_once = PTHREAD_ONCE_INIT;

static void rt__table_init(void)
{
    rt__table = malloc(RT_PERIOD);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i < RT_PERIOD; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        rt__table[i] = (uint8_t)(x >> 24);
    }
}

static inline const uint8_t *rt_table(void)
{
    pthread_once(&rt__table_once, rt__table_init);
    return rt__table;
}

static inline uint32_t rt__start(uint64_t off, unsigned seed)
{
    return (uint32_t)((off + (uint64_t)seed * 7919u) % RT_PERIOD);
}

/* The byte at offset @i of the stream with seed @seed. */
static inline uint8_t rt_pat(uint64_t i, unsigned seed)
{
    return rt_table()[rt__start(i, seed)];
}

/* @n bytes of the stream @seed from offset @off into @p. */
static inline void rt_fill(uint8_t *p, size_t n, uint64_t off, unsigned seed)
{
    const uint8_t *t = rt_table();
    uint32_t at = rt__start(off, seed);
    while (n) {
        size_t k = RT_PERIOD - at < n ? RT_PERIOD - at : n;
        memcpy(p, t + at, k);
        p += k, n -= k, at = 0;
    }
}

/* Offset of the first byte of @p (stream offset @off) that differs from
 * the pattern, or -1. */
static inline ssize_t rt_check(const uint8_t *p, size_t n, uint64_t off, unsigned seed)
{
    const uint8_t *t = rt_table();
    uint32_t at = rt__start(off, seed);
    size_t done = 0;
    while (done < n) {
        size_t k = RT_PERIOD - at < n - done ? RT_PERIOD - at : n - done;
        if (memcmp(p + done, t + at, k) != 0)
            for (size_t i = 0; i < k; i++)
                if (p[done + i] != t[at + i])
                    return (ssize_t)(done + i);
        done += k, at = 0;
    }
    return -1;
}

/* A pooled buffer with @n pattern bytes (stream offset @off). */
static inline struct rill_buf *rt_pattern(size_t n, uint64_t off, unsigned seed)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_alloc(n ? n : 1, &b), 0);
    if (n) {
        size_t len;
        uint8_t *w = rill_buf_write_ptr(b, n, &len);
        cr_assert_not_null(w);
        rt_fill(w, n, off, seed);
        cr_assert_eq(rill_buf_advance_writer(b, n), 0);
    }
    return b;
}

static inline struct rill_buf *rt_copy(const void *data, size_t len)
{
    struct rill_buf *b;
    cr_assert_eq(rill_buf_copy_from(data, len, &b), 0);
    return b;
}

/* Poll @cond every millisecond until it holds or @ms pass; returns it. */
#define RT_WITHIN(ms, cond)                                                                        \
    __extension__({                                                                                \
        uint64_t rt__end = rill_test_deadline_ms(ms);                                              \
        while (!(cond) && rill_test_before(rt__end))                                               \
            usleep(1000);                                                                          \
        (cond);                                                                                    \
    })

#define RT_EVENTUALLY(cond) RT_WITHIN(RT_WAIT_NS / RILL_NS_PER_MS, cond)

/* ---- echo: write back what arrives, flush at read_complete ---- */

static void rt_echo_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    rill_ctx_write(ctx, msg, NULL);
}

static void rt_echo_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx);
    rill_ctx_fire_read_complete(ctx);
}

__attribute__((unused)) static const struct rill_handler rt_echo_handler = {
    .name = "echo",
    .read = rt_echo_read,
    .read_complete = rt_echo_read_complete,
};

static inline int rt_echo_init(struct rill_channel *ch, void *arg)
{
    (void)arg;
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "echo", &rt_echo_handler, NULL);
}

/* ---- collector: records the bytes and events of one channel ---- */

struct rt_collector {
    pthread_mutex_t lock;
    uint8_t *data; /* what arrived, up to cap (malloc) */
    size_t cap;
    _Atomic size_t got; /* bytes that arrived */
    _Atomic int reads, active, inactive, exceptions, last_error;
    _Atomic int writability_changes, unwritable_seen;
};

static inline struct rt_collector *rt_collector_new(size_t cap)
{
    struct rt_collector *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    pthread_mutex_init(&c->lock, NULL);
    c->cap = cap;
    c->data = cap ? malloc(cap) : NULL;
    cr_assert(!cap || c->data);
    return c;
}

static inline void rt_collector_free(struct rt_collector *c)
{
    pthread_mutex_destroy(&c->lock);
    free(c->data);
    free(c);
}

/* Forget what arrived (between exchanges, while nothing is in flight). */
static inline void rt_collector_reset(struct rt_collector *c)
{
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->got, 0);
    atomic_store(&c->reads, 0);
    pthread_mutex_unlock(&c->lock);
}

static void rt_col_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rt_collector *c = rill_ctx_arg(ctx);
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

static void rt_col_active(struct rill_ctx *ctx)
{
    struct rt_collector *c = rill_ctx_arg(ctx);
    atomic_fetch_add(&c->active, 1);
    rill_ctx_fire_active(ctx);
}

static void rt_col_inactive(struct rill_ctx *ctx)
{
    struct rt_collector *c = rill_ctx_arg(ctx);
    atomic_fetch_add(&c->inactive, 1);
    rill_ctx_fire_inactive(ctx);
}

static void rt_col_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct rt_collector *c = rill_ctx_arg(ctx);
    (void)why;
    atomic_store(&c->last_error, err);
    atomic_fetch_add(&c->exceptions, 1);
}

static void rt_col_writability(struct rill_ctx *ctx, bool writable)
{
    struct rt_collector *c = rill_ctx_arg(ctx);
    atomic_fetch_add(&c->writability_changes, 1);
    if (!writable)
        atomic_store(&c->unwritable_seen, 1);
    rill_ctx_fire_writability_changed(ctx, writable);
}

__attribute__((unused)) static const struct rill_handler rt_collector_handler = {
    .name = "collector",
    .read = rt_col_read,
    .active = rt_col_active,
    .inactive = rt_col_inactive,
    .exception = rt_col_exception,
    .writability_changed = rt_col_writability,
};

static inline int rt_collector_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "collector", &rt_collector_handler,
                                  arg);
}

/* ---- bootstraps ---- */

/* Bind a server on @uri (port 0: any) and wait until it accepts. @child_opts
 * may be NULL. */
static inline struct rill_server *rt_server_opts(struct rill_loop_group *boss,
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
    err = rill_promise_wait(rill_server_bound(s), RT_WAIT_NS);
    cr_assert_eq(err, 0, "listen %s: %s", uri, rill_strerror(err));
    cr_assert_gt(rill_addr_port(rill_server_local_addr(s)), 0, "%s: the real port is known", uri);
    return s;
}

static inline struct rill_server *rt_server(struct rill_loop_group *boss,
                                            struct rill_loop_group *workers, const char *uri,
                                            rill_channel_init_fn *init, void *arg)
{
    return rt_server_opts(boss, workers, uri, init, arg, NULL);
}

static inline int rt_server_port(struct rill_server *s)
{
    return rill_addr_port(rill_server_local_addr(s));
}

static inline void rt_server_free(struct rill_server *s)
{
    struct rill_promise *closed = rill_server_close(s, true);
    cr_assert_eq(rill_promise_wait(closed, RT_WAIT_NS), 0, "the server closed");
    rill_server_free(s);
}

/* Connect and wait; returns a new channel reference, or NULL with *err. */
static inline struct rill_channel *rt_connect_opts(const struct rill_client_opts *o,
                                                   const char *uri, int *err)
{
    struct rill_promise *f;
    int e = rill_client_connect(o, uri, &f);
    if (e) {
        if (err)
            *err = e;
        return NULL;
    }
    e = rill_promise_wait(f, RT_WAIT_NS);
    struct rill_channel *ch = e ? NULL : rill_client_channel(f);
    rill_promise_release(f);
    if (err)
        *err = e;
    return ch;
}

static inline struct rill_channel *rt_connect(struct rill_loop_group *g, const char *uri,
                                              rill_channel_init_fn *init, void *arg)
{
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = init;
    co.arg = arg;
    int err = 0;
    struct rill_channel *ch = rt_connect_opts(&co, uri, &err);
    cr_assert_not_null(ch, "connect %s: %s", uri, rill_strerror(err));
    return ch;
}

/* Close @ch, wait for it, give back the reference. */
static inline void rt_close(struct rill_channel *ch)
{
    struct rill_promise *p = rt_promise();
    rill_channel_close(ch, p);
    cr_assert_eq(rt_wait_release(p), 0, "the channel closed");
    rill_channel_release(ch);
}

/* ---- running code on a channel's loop ---- */

struct rt_on_loop {
    void (*fn)(struct rill_channel *ch, void *arg);
    struct rill_channel *ch;
    void *arg;
    struct rill_promise *done;
};

static void rt_on_loop_task(void *arg)
{
    struct rt_on_loop *t = arg;
    t->fn(t->ch, t->arg);
    rill_promise_succeed(t->done, NULL, NULL);
}

/* Run fn(@ch, @arg) on @ch's loop and wait for it (bounded). */
static inline void rt_run_on_loop(struct rill_channel *ch,
                                  void (*fn)(struct rill_channel *ch, void *arg), void *arg)
{
    struct rt_on_loop t = { .fn = fn, .ch = ch, .arg = arg, .done = rt_promise() };
    cr_assert_eq(rill_loop_execute(rill_channel_loop(ch), rt_on_loop_task, &t), 0);
    cr_assert_eq(rill_promise_wait(t.done, RT_WAIT_NS), 0, "the task ran on the channel's loop");
    rill_promise_release(t.done);
}

static void rt_stats_fn(struct rill_channel *ch, void *arg)
{
    rill_rdma_channel_stats(ch, arg);
}

/* The RDMA counters of @ch, read on its loop. */
static inline void rt_stats(struct rill_channel *ch, struct rill_rdma_stats *out)
{
    memset(out, 0, sizeof(*out));
    rt_run_on_loop(ch, rt_stats_fn, out);
}

static inline void rt_stats_add(struct rill_rdma_stats *sum, const struct rill_rdma_stats *s)
{
    sum->sends += s->sends;
    sum->sends_zero_copy += s->sends_zero_copy;
    sum->sends_inline += s->sends_inline;
    sum->bytes_copied += s->bytes_copied;
    sum->recvs += s->recvs;
    sum->credit_msgs += s->credit_msgs;
    sum->rndv_sent += s->rndv_sent;
    sum->rndv_read += s->rndv_read;
    sum->credit_stalls += s->credit_stalls;
    sum->reads += s->reads;
    sum->writes += s->writes;
}

static inline void rt_stats_print(const char *who, const struct rill_rdma_stats *s)
{
    fprintf(stderr,
            "%s: sends %llu (zero-copy %llu, inline %llu), copied %llu B, recvs %llu, credit msgs "
            "%llu, credit stalls %llu, rndv sent %llu read %llu, reads %llu, writes %llu\n",
            who, (unsigned long long)s->sends, (unsigned long long)s->sends_zero_copy,
            (unsigned long long)s->sends_inline, (unsigned long long)s->bytes_copied,
            (unsigned long long)s->recvs, (unsigned long long)s->credit_msgs,
            (unsigned long long)s->credit_stalls, (unsigned long long)s->rndv_sent,
            (unsigned long long)s->rndv_read, (unsigned long long)s->reads,
            (unsigned long long)s->writes);
}

/* ---- the end of every test ---- */

/* No exposed region may outlive its test (the leak detector checks the
 * buffers after .fini). */
static inline void rt_no_regions(void)
{
    cr_assert_eq(rill_rdma_region_count(), 0, "%zu exposed regions were never revoked",
                 rill_rdma_region_count());
}

#endif /* RILL_TESTS_RDMA_TEST_H */
