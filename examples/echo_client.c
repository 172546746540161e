/* echo_client: a client bootstrap and a request/response handler.
 *
 *   echo_client [--uri tcp://127.0.0.1:7000] [--count N] [--size BYTES]
 *
 * Connects to an echo server (examples/echo_server in raw mode), sends
 * BYTES, waits until they have all come back, sends the next message, N
 * times, and prints the round-trip times. It shows:
 *   - rill_client_connect: a future that completes with the connected
 *     channel or the error (connection refused, timeout)
 *   - a handler that drives the conversation from its callbacks (active
 *     sends the first message, read counts the echo and sends the next)
 *   - a promise the main thread waits on, completed from the loop
 *   - timing on the loop's cached clock */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"

struct session {
    int count, size;
    int sent;        /* messages sent so far */
    size_t echoed;   /* bytes of the current message back so far */
    uint64_t t_send; /* when the current message left */
    uint64_t *rtt;   /* one per message, in ns */
    struct rill_promise *done;
};

static void send_next(struct rill_ctx *ctx, struct session *s)
{
    struct rill_buf *b;
    if (rill_buf_alloc((size_t)s->size, &b) != 0) {
        rill_ctx_close(ctx, NULL);
        return;
    }
    size_t len;
    uint8_t *p = rill_buf_write_ptr(b, (size_t)s->size, &len);
    memset(p, 'a' + s->sent % 26, (size_t)s->size);
    rill_buf_advance_writer(b, (size_t)s->size);
    s->t_send = rill_clock_now_ns();
    s->echoed = 0;
    s->sent++;
    rill_ctx_write_and_flush(ctx, rill_buf_msg(b), NULL);
}

static void client_active(struct rill_ctx *ctx)
{
    send_next(ctx, rill_ctx_arg(ctx));
    rill_ctx_fire_active(ctx);
}

static void client_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct session *s = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    s->echoed += b ? rill_buf_readable(b) : 0;
    rill_msg_release(msg); /* we own what we receive: release it */
    if (s->echoed < (size_t)s->size)
        return;
    s->rtt[s->sent - 1] = rill_clock_now_ns() - s->t_send;
    if (s->sent < s->count) {
        send_next(ctx, s);
        return;
    }
    rill_promise_succeed(s->done, NULL, NULL);
    rill_ctx_close(ctx, NULL);
}

static void client_inactive(struct rill_ctx *ctx)
{
    struct session *s = rill_ctx_arg(ctx);
    rill_promise_fail(s->done, RILL_ECLOSED); /* no-op when already complete */
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler client_handler = {
    .name = "echo-client",
    .active = client_active,
    .read = client_read,
    .inactive = client_inactive,
};

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "client", &client_handler, arg);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *uri = "tcp://127.0.0.1:7000";
    struct session s = { .count = 1000, .size = 64 };
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--uri") == 0)
            uri = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0)
            s.count = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            s.size = atoi(argv[i + 1]);
    }
    if (s.count < 1 || s.size < 1) {
        fprintf(stderr, "usage: %s [--uri URI] [--count N] [--size BYTES]\n", argv[0]);
        return 2;
    }
    s.rtt = calloc((size_t)s.count, sizeof(*s.rtt));

    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "client";
    struct rill_loop_group *g;
    if (rill_loop_group_new(&go, &g) != 0 || rill_promise_new(NULL, &s.done) != 0)
        return 1;

    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    co.arg = &s;
    rill_channel_opts_set(&co.opts, RILL_OPT_CONNECT_TIMEOUT_MS, 3000);
    struct rill_promise *connected = NULL;
    int err = rill_client_connect(&co, uri, &connected);
    if (!err)
        err = rill_promise_wait(connected, -1);
    if (err) {
        fprintf(stderr, "echo_client: connect %s: %s\n", uri, rill_strerror(err));
    } else {
        err = rill_promise_wait(s.done, 60 * (int64_t)RILL_NS_PER_S);
        if (err)
            fprintf(stderr, "echo_client: stopped after %d message(s): %s\n", s.sent,
                    rill_strerror(err));
    }
    if (!err) {
        qsort(s.rtt, (size_t)s.count, sizeof(*s.rtt), cmp_u64);
        printf("%d x %d bytes: rtt min %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n", s.count,
               s.size, s.rtt[0] / 1e3, s.rtt[s.count / 2] / 1e3, s.rtt[s.count * 99 / 100] / 1e3,
               s.rtt[s.count - 1] / 1e3);
    }
    if (connected)
        rill_promise_release(connected);
    rill_promise_wait(rill_loop_group_shutdown(g, 0, RILL_NS_PER_S), -1);
    rill_loop_group_free(g);
    rill_promise_release(s.done);
    free(s.rtt);
    return err ? 1 : 0;
}
