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
 * so every wait here is bounded but generous (TX_WAIT_NS is three times
 * tests/transport's), and every loop is bounded in count and time.
 *
 * Loop groups, bootstraps, promises, echo and the collector come from
 * tests/transport/tx.h (tx_*); this file adds what RDMA needs on top.
 *
 * Handlers run on loop threads; the test thread reads their state through
 * atomics, or after waiting on a promise they complete. */
#ifndef RILL_TESTS_RDMA_TEST_H
#define RILL_TESTS_RDMA_TEST_H

/* Longest wait for one step (a connect, a close, one echo), for every
 * tx_* helper too. */
#define TX_WAIT_NS (60 * RILL_NS_PER_S)

#include "tests/transport/tx.h"

#include "rill/alloc.h"
#include "rill/rdma.h"
#include "util/testutil.h"

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

/* ---- test data ---- */

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

/* ---- bootstraps ---- */

/* The port @s listens on (bound on port 0: the one it got). */
static inline int rt_server_port(struct rill_server *s)
{
    int port = rill_addr_port(rill_server_local_addr(s));
    cr_assert_gt(port, 0, "the server's real port is known");
    return port;
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
    struct rt_on_loop t = { .fn = fn, .ch = ch, .arg = arg, .done = tx_promise(NULL) };
    cr_assert_eq(rill_loop_execute(rill_channel_loop(ch), rt_on_loop_task, &t), 0);
    cr_assert_eq(rill_promise_wait(t.done, TX_WAIT_NS), 0, "the task ran on the channel's loop");
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
    sum->rndv_queued += s->rndv_queued;
    sum->credit_stalls += s->credit_stalls;
    sum->reads += s->reads;
    sum->writes += s->writes;
}

static inline void rt_stats_print(const char *who, const struct rill_rdma_stats *s)
{
    fprintf(stderr,
            "%s: sends %llu (zero-copy %llu, inline %llu), copied %llu B, recvs %llu, credit msgs "
            "%llu, credit stalls %llu, rndv sent %llu read %llu (queued %llu), reads %llu, writes "
            "%llu\n",
            who, (unsigned long long)s->sends, (unsigned long long)s->sends_zero_copy,
            (unsigned long long)s->sends_inline, (unsigned long long)s->bytes_copied,
            (unsigned long long)s->recvs, (unsigned long long)s->credit_msgs,
            (unsigned long long)s->credit_stalls, (unsigned long long)s->rndv_sent,
            (unsigned long long)s->rndv_read, (unsigned long long)s->rndv_queued,
            (unsigned long long)s->reads, (unsigned long long)s->writes);
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
