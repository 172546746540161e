/* Tests for the outbound queue (channel/outbound.c) through the transport
 * contract: iovec gathering over flat and composite buffers, partial
 * advances across entries and inside a composite, the IOV_MAX limit,
 * messages that are not buffers, promises completed in write order, and
 * failure on close releasing everything. The test plays the transport:
 * ops->write does nothing and the test calls rill__outbound_iov/advance. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "rill/channel.h"
#include "rill/composite.h"
#include "rill/error.h"
#include "rill/future.h"
#include "tests/channel/tt.h"
#include "util/testutil.h"

TestSuite(outbound, .timeout = 30, .fini = rill_test_no_leaks);

static struct rill_loop *loop;
static struct tt *t;
static struct rill_channel *ch;

static void start_ops(const struct rill_transport_ops *ops)
{
    loop = tt_manual_loop();
    tt_enter(loop);
    t = tt_new_ops(loop, ops, NULL);
    t->manual_write = true;
    ch = &t->base;
    rill__channel_mark_active(ch);
    rill__channel_register(ch, NULL, NULL, NULL);
    cr_assert(rill_channel_is_active(ch));
}

static void start(void)
{
    start_ops(&tt_ops);
}

static void stop(void)
{
    rill_channel_close(ch, NULL);
    tt_run_pending(loop);
    rill_channel_release(ch);
    tt_leave(loop);
    rill_loop_free(loop);
}

static struct rill_promise *promise(void)
{
    struct rill_promise *p;
    cr_assert_eq(rill_promise_new(loop, &p), 0);
    return p;
}

/* Concatenate @n iovecs into @out (NUL-terminated). */
static const char *iov_str(const struct iovec *iov, int n, char *out, size_t size)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        cr_assert_lt(len + iov[i].iov_len, size);
        memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    out[len] = '\0';
    return out;
}

static struct rill_msg *composite(const char *const *parts, int n)
{
    struct rill_buf *c;
    cr_assert_eq(rill_buf_composite_new(&c), 0);
    for (int i = 0; i < n; i++)
        cr_assert_eq(rill_buf_composite_add(c, rill_buf_from_msg(tt_msg(parts[i]))), 0);
    return rill_buf_msg(c);
}

Test(outbound, flat_buffers_gather_in_write_order)
{
    start();
    struct rill_promise *p[3] = { promise(), promise(), promise() };
    struct rill_msg *m[3] = { tt_msg("aaa"), tt_msg("bb"), tt_msg("c") };
    for (int i = 0; i < 3; i++)
        rill_channel_write(ch, m[i], p[i]);
    struct iovec iov[8];
    size_t bytes = 99;
    cr_assert_eq(rill__outbound_iov(ch, iov, 8, &bytes), 0, "nothing flushed yet");
    cr_assert_eq(bytes, 0);
    cr_assert_not(rill__outbound_has_flushed(ch));
    cr_assert_eq(rill_channel_pending_bytes(ch), 6);

    rill_channel_flush(ch);
    cr_assert_eq(t->writes, 1);
    cr_assert(rill__outbound_has_flushed(ch));
    cr_assert_eq(rill__outbound_flushed_bytes(ch), 6);
    cr_assert_eq(rill__outbound_iov(ch, iov, 8, &bytes), 3);
    cr_assert_eq(bytes, 6);
    for (int i = 0; i < 3; i++) {
        size_t len;
        const uint8_t *ptr = rill_buf_read_ptr(rill_buf_from_msg(m[i]), &len);
        cr_assert_eq(iov[i].iov_base, ptr, "no copy: the iovec points into the buffer");
        cr_assert_eq(iov[i].iov_len, len);
    }
    rill__outbound_advance(ch, 6);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rill_promise_result(p[i], NULL), 0);
        rill_promise_release(p[i]);
    }
    cr_assert_not(rill__outbound_has_flushed(ch));
    cr_assert_eq(rill_channel_pending_bytes(ch), 0);
    stop();
}

Test(outbound, composites_expand_to_their_components)
{
    start();
    const char *parts[] = { "11", "222", "3333" };
    rill_channel_write(ch, composite(parts, 3), NULL);
    rill_channel_write_and_flush(ch, tt_msg("x"), NULL);
    struct iovec iov[8];
    size_t bytes;
    char s[64];
    cr_assert_eq(rill__outbound_iov(ch, iov, 8, &bytes), 4);
    cr_assert_eq(bytes, 10);
    cr_assert_str_eq(iov_str(iov, 4, s, sizeof(s)), "112223333x");
    /* Fewer iovecs than components: stop inside the composite. */
    cr_assert_eq(rill__outbound_iov(ch, iov, 2, &bytes), 2);
    cr_assert_eq(bytes, 5);
    cr_assert_str_eq(iov_str(iov, 2, s, sizeof(s)), "11222");
    rill__outbound_advance(ch, 10);
    stop();
}

Test(outbound, partial_advance_across_entries)
{
    start();
    struct rill_promise *p[3] = { promise(), promise(), promise() };
    const char *data[] = { "aaaa", "bbbb", "cccc" };
    for (int i = 0; i < 3; i++)
        rill_channel_write(ch, tt_msg(data[i]), p[i]);
    rill_channel_flush(ch);
    rill__outbound_advance(ch, 6);
    cr_assert_eq(rill_promise_result(p[0], NULL), 0);
    cr_assert_eq(rill_promise_result(p[1], NULL), -EINPROGRESS);
    cr_assert_eq(rill_channel_pending_bytes(ch), 6);
    cr_assert_eq(rill__outbound_flushed_bytes(ch), 6);
    size_t written;
    struct rill_msg *cur = rill__outbound_current(ch, &written);
    cr_assert(tt_msg_is(cur, "bbbb"));
    cr_assert_eq(written, 2);

    struct iovec iov[8];
    size_t bytes;
    char s[64];
    cr_assert_eq(rill__outbound_iov(ch, iov, 8, &bytes), 2);
    cr_assert_eq(bytes, 6);
    cr_assert_str_eq(iov_str(iov, 2, s, sizeof(s)), "bbcccc");
    rill__outbound_advance(ch, 1);
    cr_assert_eq(rill__outbound_iov(ch, iov, 8, &bytes), 2);
    cr_assert_str_eq(iov_str(iov, 2, s, sizeof(s)), "bcccc");
    rill__outbound_advance(ch, 5);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rill_promise_result(p[i], NULL), 0);
        rill_promise_release(p[i]);
    }
    cr_assert_null(rill__outbound_current(ch, NULL));
    stop();
}

Test(outbound, partial_advance_inside_a_composite)
{
    start();
    const char *parts[] = { "11", "222", "3333" };
    struct rill_promise *p = promise();
    rill_channel_write_and_flush(ch, composite(parts, 3), p);
    rill__outbound_advance(ch, 3);
    struct iovec iov[8];
    size_t bytes;
    char s[64];
    cr_assert_eq(rill__outbound_iov(ch, iov, 8, &bytes), 2);
    cr_assert_eq(bytes, 6);
    cr_assert_str_eq(iov_str(iov, 2, s, sizeof(s)), "223333");
    rill__outbound_advance(ch, 4);
    cr_assert_eq(rill__outbound_iov(ch, iov, 8, &bytes), 1);
    cr_assert_str_eq(iov_str(iov, 1, s, sizeof(s)), "33");
    cr_assert_eq(rill_promise_result(p, NULL), -EINPROGRESS);
    rill__outbound_advance(ch, 2);
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    rill_promise_release(p);
    stop();
}

Test(outbound, iov_max_limits_one_call)
{
    start();
    enum { N = 1500 };
    for (int i = 0; i < N; i++)
        rill_channel_write(ch, tt_msg("z"), NULL);
    rill_channel_flush(ch);
    static struct iovec iov[IOV_MAX + 8];
    size_t bytes;
    cr_assert_eq(rill__outbound_iov(ch, iov, IOV_MAX, &bytes), IOV_MAX);
    cr_assert_eq(bytes, IOV_MAX);
    rill__outbound_advance(ch, bytes);
    cr_assert_eq(rill__outbound_iov(ch, iov, IOV_MAX, &bytes), N - IOV_MAX);
    cr_assert_eq(bytes, N - IOV_MAX);
    rill__outbound_advance(ch, bytes);
    cr_assert_eq(rill_channel_pending_bytes(ch), 0);
    stop();
}

Test(outbound, buffers_read_partly_before_the_write_send_their_readable_bytes)
{
    start();
    struct rill_msg *m = tt_msg("skip-send");
    rill_buf_skip(rill_buf_from_msg(m), 5);
    struct rill_msg *empty = tt_msg("");
    rill_channel_write(ch, empty, NULL);
    rill_channel_write_and_flush(ch, m, NULL);
    cr_assert_eq(rill_channel_pending_bytes(ch), 4);
    struct iovec iov[4];
    size_t bytes;
    char s[16];
    cr_assert_eq(rill__outbound_iov(ch, iov, 4, &bytes), 1, "the empty buffer gives no iovec");
    cr_assert_str_eq(iov_str(iov, 1, s, sizeof(s)), "send");
    rill__outbound_advance(ch, 4);
    cr_assert_not(rill__outbound_has_flushed(ch), "empty entries go with the ones after them");
    stop();
}

/* ---- messages that are not buffers ---- */

struct region {
    struct rill_msg msg;
    int64_t size;
};
static void region_destroy(struct rill_msg *m)
{
    free(m);
}
static struct rill_msg *region(int64_t size)
{
    struct region *r = calloc(1, sizeof(*r));
    rill_msg_init(&r->msg, RILL_MSG_USER + 7, region_destroy);
    r->size = size;
    return &r->msg;
}
static int64_t region_size(struct rill_channel *c, struct rill_msg *m)
{
    (void)c;
    return m->type == RILL_MSG_USER + 7 ? ((struct region *)m)->size : -EINVAL;
}
static struct rill_transport_ops region_ops;

Test(outbound, a_message_that_is_not_a_buffer_stops_the_gather)
{
    region_ops = tt_ops;
    region_ops.msg_size = region_size;
    start_ops(&region_ops);
    struct rill_promise *p = promise();
    rill_channel_write(ch, tt_msg("aa"), NULL);
    rill_channel_write(ch, region(5), p);
    rill_channel_write_and_flush(ch, tt_msg("bb"), NULL);
    cr_assert_eq(rill_channel_pending_bytes(ch), 9);
    struct iovec iov[4];
    size_t bytes, written;
    cr_assert_eq(rill__outbound_iov(ch, iov, 4, &bytes), 1);
    cr_assert_eq(bytes, 2);
    rill__outbound_advance(ch, 2);
    cr_assert_eq(rill__outbound_iov(ch, iov, 4, &bytes), 0);
    struct rill_msg *cur = rill__outbound_current(ch, &written);
    cr_assert_eq(cur->type, RILL_MSG_USER + 7);
    cr_assert_eq(written, 0);
    rill__outbound_advance(ch, 3); /* "sendfile" moved 3 */
    cr_assert_eq(rill__outbound_current(ch, &written), cur);
    cr_assert_eq(written, 3);
    cr_assert_eq(rill_promise_result(p, NULL), -EINPROGRESS);
    rill__outbound_advance(ch, 2);
    cr_assert_eq(rill_promise_result(p, NULL), 0);
    cr_assert_eq(rill__outbound_iov(ch, iov, 4, &bytes), 1);
    rill__outbound_advance(ch, 2);
    rill_promise_release(p);

    /* A message the transport cannot size is refused and released. */
    p = promise();
    struct rill_msg *bad = region(1);
    bad->type = RILL_MSG_USER + 8;
    rill_channel_write(ch, bad, p);
    cr_assert_eq(rill_promise_result(p, NULL), -EINVAL);
    rill_promise_release(p);
    stop();
}

Test(outbound, transports_without_msg_size_refuse_other_messages)
{
    start();
    struct rill_promise *p = promise();
    rill_channel_write(ch, region(4), p);
    cr_assert_eq(rill_promise_result(p, NULL), -EINVAL);
    cr_assert_eq(rill_channel_pending_bytes(ch), 0);
    rill_promise_release(p);
    stop();
}

/* ---- promise order, re-entrancy ---- */

static int order[16], norder;
static void record(struct rill_promise *p, void *arg)
{
    (void)p;
    order[norder++] = (int)(intptr_t)arg;
}

/* Completing the second promise writes and flushes a fifth message. */
static void write_more(struct rill_promise *p, void *arg)
{
    (void)p;
    (void)arg;
    order[norder++] = 100;
    struct rill_promise *q = promise();
    rill_promise_add_listener(q, record, (void *)(intptr_t)5);
    rill_channel_write_and_flush(ch, tt_msg("5"), q);
    rill_promise_release(q);
}

Test(outbound, promises_complete_in_write_order)
{
    start();
    t->manual_write = false; /* tt_write advances from inside ops->write, as transports do */
    norder = 0;
    for (int i = 1; i <= 4; i++) {
        struct rill_promise *p = promise();
        rill_promise_add_listener(p, record, (void *)(intptr_t)i);
        if (i == 2)
            rill_promise_add_listener(p, write_more, NULL);
        rill_channel_write(ch, tt_msg("x"), p);
        rill_promise_release(p); /* the queue keeps its own reference */
    }
    rill_channel_flush(ch);
    cr_assert_eq(t->writes, 1, "ops->write is not re-entered from a listener's flush");
    int want[] = { 1, 2, 100, 3, 4, 5 };
    cr_assert_eq(norder, 6, "the running write took the listener's flush");
    for (int i = 0; i < 6; i++)
        cr_assert_eq(order[i], want[i]);
    cr_assert_eq(t->sunk, 5);
    cr_assert_eq(rill_channel_pending_bytes(ch), 0);
    stop();
}

static void close_in_listener(struct rill_promise *p, void *arg)
{
    (void)p;
    (void)arg;
    rill_channel_close(ch, NULL);
}

Test(outbound, closing_from_a_listener_fails_the_rest)
{
    start();
    struct rill_promise *p[3] = { promise(), promise(), promise() };
    rill_promise_add_listener(p[0], close_in_listener, NULL);
    for (int i = 0; i < 3; i++)
        rill_channel_write(ch, tt_msg("abc"), p[i]);
    rill_channel_flush(ch);
    rill__outbound_advance(ch, 9); /* the kernel took all; the close stops the rest */
    cr_assert_eq(rill_promise_result(p[0], NULL), 0);
    cr_assert_eq(rill_promise_result(p[1], NULL), RILL_ECLOSED);
    cr_assert_eq(rill_promise_result(p[2], NULL), RILL_ECLOSED);
    for (int i = 0; i < 3; i++)
        rill_promise_release(p[i]);
    cr_assert_eq(rill_channel_pending_bytes(ch), 0);
    stop();
}

/* ---- failure on close ---- */

Test(outbound, close_fails_every_write_and_releases_every_message)
{
    start();
    struct rill_promise *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = promise();
    const char *parts[] = { "co", "mp" };
    rill_channel_write(ch, tt_msg("flushed"), p[0]);
    rill_channel_write(ch, composite(parts, 2), p[1]);
    rill_channel_flush(ch);
    rill__outbound_advance(ch, 3); /* partly written */
    rill_channel_write(ch, tt_msg("unflushed"), p[2]);
    cr_assert_gt(rill_channel_pending_bytes(ch), 0);

    rill_channel_close_with(ch, -ECONNRESET, p[3]);
    cr_assert_not(rill_channel_is_open(ch));
    cr_assert_not(rill_channel_is_writable(ch));
    cr_assert_eq(rill_channel_close_reason(ch), -ECONNRESET);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rill_promise_result(p[i], NULL), -ECONNRESET, "write %d", i);
    cr_assert_eq(rill_channel_pending_bytes(ch), 0);
    cr_assert_eq(rill__outbound_flushed_bytes(ch), 0);
    cr_assert_eq(t->closes, 1);
    cr_assert_eq(rill_promise_result(p[3], NULL), -EINPROGRESS, "done after inactive");
    tt_run_pending(loop);
    cr_assert_eq(rill_promise_result(p[3], NULL), 0);

    /* After close: released at once, promise failed. */
    struct rill_promise *late = promise();
    rill_channel_write_and_flush(ch, tt_msg("late"), late);
    cr_assert_eq(rill_promise_result(late, NULL), RILL_ECLOSED);
    rill_promise_release(late);
    for (int i = 0; i < 4; i++)
        rill_promise_release(p[i]);
    stop();
}

Test(outbound, plain_close_fails_writes_with_eclosed)
{
    start();
    struct rill_promise *p = promise();
    rill_channel_write(ch, tt_msg("pending"), p);
    rill_channel_close(ch, NULL);
    cr_assert_eq(rill_promise_result(p, NULL), RILL_ECLOSED);
    cr_assert_eq(rill_channel_close_reason(ch), 0);
    rill_promise_release(p);
    stop();
}

Test(outbound, writes_cancelled_before_the_flush_are_dropped)
{
    start();
    struct rill_promise *p[3] = { promise(), promise(), promise() };
    rill_channel_write(ch, tt_msg("keep1"), p[0]);
    rill_channel_write(ch, tt_msg("drop"), p[1]);
    rill_channel_write(ch, tt_msg("keep2"), p[2]);
    cr_assert_eq(rill_promise_cancel(p[1]), 0);
    cr_assert_eq(rill_channel_pending_bytes(ch), 14);
    rill_channel_flush(ch);
    cr_assert_eq(rill_channel_pending_bytes(ch), 10);
    cr_assert_eq(rill__outbound_flushed_bytes(ch), 10);
    struct iovec iov[4];
    size_t bytes;
    char s[32];
    cr_assert_eq(rill__outbound_iov(ch, iov, 4, &bytes), 2);
    cr_assert_str_eq(iov_str(iov, 2, s, sizeof(s)), "keep1keep2");
    rill__outbound_advance(ch, 5);
    size_t written;
    cr_assert(tt_msg_is(rill__outbound_current(ch, &written), "keep2"),
              "the cancelled entry is skipped");
    rill__outbound_advance(ch, 5);
    cr_assert_eq(rill_promise_result(p[0], NULL), 0);
    cr_assert_eq(rill_promise_result(p[1], NULL), -ECANCELED);
    cr_assert_eq(rill_promise_result(p[2], NULL), 0);
    cr_assert_not(rill__outbound_has_flushed(ch));
    for (int i = 0; i < 3; i++)
        rill_promise_release(p[i]);
    stop();
}
