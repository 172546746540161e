/* discard: the discard protocol (RFC 863) in both roles, to show flow
 * control.
 *
 *   discard [--port N] [--seconds S]           server: drop what arrives,
 *                                              print the rate every second
 *   discard --connect URI [--seconds S]        client: send as fast as the
 *                                              connection takes it
 *
 * The server shows a handler that consumes messages (releasing each one)
 * and a periodic timer on the channel's loop. The client shows writing
 * driven by writability, the way to send a stream without unbounded
 * memory: write while rill_channel_is_writable(), stop when the pending
 * bytes cross the high watermark, and continue in writability_changed when
 * the kernel has taken enough (or when the last write of a batch is done,
 * via its promise). One buffer of data is sent again and again through
 * read-only views, so nothing is copied. */
#include <signal.h>
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
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/timer.h"

#define CHUNK (64 * 1024 - 256) /* fits the allocator's largest pooled block */

/* ---- server: count and release ---- */

static _Atomic uint64_t received;

static void discard_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (b)
        atomic_fetch_add_explicit(&received, rill_buf_readable(b), memory_order_relaxed);
    rill_msg_release(msg); /* discarded: the buffer goes back to the pool */
}

static const struct rill_handler discard_handler = { .name = "discard", .read = discard_read };

static int server_child_init(struct rill_channel *ch, void *arg)
{
    (void)arg;
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "discard", &discard_handler, NULL);
}

static void report(struct rill_timer *t, void *arg)
{
    static uint64_t last;
    (void)t;
    (void)arg;
    uint64_t now = atomic_load_explicit(&received, memory_order_relaxed);
    fprintf(stderr, "discard: %.1f MB/s\n", (double)(now - last) / 1e6);
    last = now;
}

/* ---- client: write while writable ---- */

struct sender {
    struct rill_buf *chunk; /* one buffer of data, sent as read-only views */
    uint64_t sent;
};

static void send_while_writable(struct rill_ctx *ctx);

/* The last write of a batch went out: send the next batch. */
static void batch_sent(struct rill_promise *p, void *arg)
{
    if (rill_promise_result(p, NULL) == 0)
        send_while_writable(arg);
    rill_promise_release(p);
}

static void send_while_writable(struct rill_ctx *ctx)
{
    struct sender *s = rill_ctx_state(ctx);
    struct rill_channel *ch = rill_ctx_channel(ctx);
    /* Batches of at most 64 chunks, each started by the previous one's
     * completion, so one fast connection cannot hold the loop for ever. */
    for (int n = 0; n < 64 && rill_channel_is_writable(ch); n++) {
        /* A view shares the bytes: each write costs a small header, never
         * a copy; the chunk lives until the last view is sent. */
        struct rill_buf *view;
        if (rill_buf_readonly(s->chunk, &view) != 0)
            break;
        struct rill_promise *p = NULL;
        if (n == 63 && rill_promise_new(rill_channel_loop(ch), &p) == 0)
            rill_promise_add_listener(p, batch_sent, ctx);
        rill_ctx_write(ctx, rill_buf_msg(view), p);
        s->sent += CHUNK;
    }
    rill_ctx_flush(ctx);
}

static int sender_added(struct rill_ctx *ctx)
{
    struct sender *s = rill_ctx_state(ctx);
    int err = rill_buf_alloc(CHUNK, &s->chunk);
    if (err)
        return err;
    size_t len;
    memset(rill_buf_write_ptr(s->chunk, CHUNK, &len), 'd', CHUNK);
    return rill_buf_advance_writer(s->chunk, CHUNK);
}

static void sender_removed(struct rill_ctx *ctx)
{
    struct sender *s = rill_ctx_state(ctx);
    fprintf(stderr, "discard: sent %.1f MB\n", (double)s->sent / 1e6);
    rill_buf_release(s->chunk);
}

static void sender_active(struct rill_ctx *ctx)
{
    send_while_writable(ctx);
    rill_ctx_fire_active(ctx);
}

static void sender_writability(struct rill_ctx *ctx, bool writable)
{
    if (writable)
        send_while_writable(ctx);
    rill_ctx_fire_writability_changed(ctx, writable);
}

static const struct rill_handler sender_handler = {
    .name = "sender",
    .ctx_size = sizeof(struct sender),
    .added = sender_added,
    .removed = sender_removed,
    .active = sender_active,
    .writability_changed = sender_writability,
};

static int client_init(struct rill_channel *ch, void *arg)
{
    (void)arg;
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "sender", &sender_handler, NULL);
}

int main(int argc, char **argv)
{
    int port = 9009, seconds = 0;
    const char *connect_uri = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--connect") == 0)
            connect_uri = argv[i + 1];
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "discard";
    struct rill_loop_group *g;
    if (rill_loop_group_new(&go, &g) != 0)
        return 1;

    struct rill_server *srv = NULL;
    struct rill_channel *ch = NULL;
    struct rill_timer *timer = NULL;
    int err;
    if (connect_uri) {
        struct rill_client_opts co;
        rill_client_opts_init(&co);
        co.group = g;
        co.init = client_init;
        struct rill_promise *f;
        err = rill_client_connect(&co, connect_uri, &f);
        if (!err) {
            err = rill_promise_wait(f, -1);
            ch = err ? NULL : rill_client_channel(f);
            rill_promise_release(f);
        }
    } else {
        struct rill_server_opts so;
        rill_server_opts_init(&so);
        so.boss = g;
        so.child_init = server_child_init;
        char uri[64];
        snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
        err = rill_server_bind(&so, uri, &srv);
        if (!err)
            err = rill_promise_wait(rill_server_bound(srv), -1);
        if (!err) {
            fprintf(stderr, "discard: listening on port %d\n",
                    rill_addr_port(rill_server_local_addr(srv)));
            rill_timer_schedule(rill_loop_group_at(g, 0), RILL_NS_PER_S, RILL_NS_PER_S,
                                RILL_TIMER_FIXED_RATE, report, NULL, &timer);
        }
    }
    if (err) {
        fprintf(stderr, "discard: %s\n", rill_strerror(err));
    } else if (seconds > 0) {
        struct timespec ts = { .tv_sec = seconds };
        sigtimedwait(&stop, NULL, &ts);
    } else {
        int sig;
        sigwait(&stop, &sig);
    }

    if (timer) {
        rill_timer_cancel(timer);
        rill_timer_release(timer);
    }
    if (ch) {
        struct rill_promise *closed = rill_promise_retain(rill_channel_close_future(ch));
        rill_channel_close(ch, NULL);
        rill_promise_wait(closed, -1);
        rill_promise_release(closed);
        rill_channel_release(ch);
    }
    if (srv) {
        rill_promise_wait(rill_server_close(srv, true), -1);
        rill_server_free(srv);
    }
    rill_promise_wait(rill_loop_group_shutdown(g, 0, RILL_NS_PER_S), -1);
    rill_loop_group_free(g);
    return err ? 1 : 0;
}
