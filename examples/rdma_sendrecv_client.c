/* rdma_sendrecv_client: DISNI's SendRecvClient on rill. It connects to
 * examples/rdma_sendrecv_server, sends "Hello from the client", waits for
 * the send to complete and for the server's answer, prints it and closes.
 *
 *   rdma_sendrecv_client [--uri rdma://192.0.2.1:1920] [--size BYTES] [--count N]
 *
 *   DISNI                                  rill
 *   endpointGroup.createEndpoint/connect   rill_client_connect (a future)
 *   sendBuf.asCharBuffer().put(...)        a rill_buf holding the message
 *   postSend (wr_id 4444) + wcEvents.take  rill_channel_write_and_flush + its promise
 *   wcEvents.take() (receive completion)   a handler completes a promise with
 *                                          the received buffer as its value
 *   endpoint.close(), group.close()        rill_channel_close, group shutdown
 *
 * --size BYTES pads the message to that size (text, a zero byte, then a
 * byte pattern; the server answers with the same size and both check the
 * pattern): 1 MiB and more go by the transport's rendezvous path. --count
 * N repeats the exchange on new connections (the server needs
 * --clients N or 0).
 *
 * Works over rdma://, rdma+tcp:// (also when that falls back to TCP) and
 * tcp://. Exit status 0 when every answer arrived intact. SIGINT or SIGTERM
 * close the connection and exit (status 1) with every buffer released. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"

#define TIMEOUT_S   60
#define MAX_MESSAGE (64u * 1024 * 1024)

static const char hello_text[] = "Hello from the client";

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* rill_promise_wait, giving up after @timeout_s seconds (-ETIMEDOUT) or at
 * SIGINT/SIGTERM (-EINTR). */
static int wait_for(struct rill_promise *p, int timeout_s)
{
    uint64_t deadline = rill_clock_now_ns() + (uint64_t)timeout_s * RILL_NS_PER_S;
    for (;;) {
        if (rill_promise_is_done(p))
            return rill_promise_result(p, NULL);
        if (stop)
            return -EINTR;
        if (rill_clock_now_ns() >= deadline)
            return -ETIMEDOUT;
        rill_promise_wait(p, 50 * (int64_t)RILL_NS_PER_MS);
    }
}

/* ---- messages: text, then (when longer) a zero byte and a pattern ---- */

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + 3);
}

static struct rill_buf *message_new(const char *text, size_t size)
{
    size_t tlen = strlen(text), len = size > tlen ? size : tlen, room;
    struct rill_buf *b;
    if (rill_buf_alloc(len, &b) != 0)
        return NULL;
    uint8_t *p = rill_buf_write_ptr(b, len, &room);
    memcpy(p, text, tlen);
    for (size_t i = tlen; i < len; i++)
        p[i] = i == tlen ? 0 : pattern(i);
    rill_buf_advance_writer(b, len);
    return b;
}

static int message_check(const struct rill_buf *b, char *text, size_t cap)
{
    size_t at = rill_buf_reader_index(b), len = rill_buf_readable(b), i = 0;
    uint8_t c = 1;
    while (i < len && i + 1 < cap && rill_buf_get_u8(b, at + i, &c) == 0 && c != 0)
        text[i++] = (char)c;
    text[i] = '\0';
    if (i < len && c != 0)
        return RILL_EPROTO;
    uint8_t chunk[4096];
    for (size_t off = i + 1; off < len;) {
        size_t n = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
        rill_buf_get_bytes(b, at + off, chunk, n);
        for (size_t k = 0; k < n; k++)
            if (chunk[k] != pattern(off + k))
                return RILL_EPROTO;
        off += n;
    }
    return 0;
}

/* ---- the handler: the server's answer completes a promise ---- */

static void buf_free(void *value)
{
    rill_buf_release(value);
}

static void client_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_promise *answer = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (!b) {
        rill_msg_release(msg);
        return;
    }
    /* The promise owns the buffer from here (released with the promise);
     * a second message is released at once (-EALREADY). */
    rill_promise_succeed(answer, b, buf_free);
}

static void client_inactive(struct rill_ctx *ctx)
{
    rill_promise_fail(rill_ctx_arg(ctx), RILL_ECLOSED); /* no-op once answered */
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler sendrecv_client_handler = {
    .name = "sendrecv-client",
    .read = client_read,
    .inactive = client_inactive,
};

static int client_init(struct rill_channel *ch, void *arg)
{
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    struct rill_length_field_config lf = {
        .length_field_size = 4,
        .initial_bytes_to_strip = 4,
        .max_frame_length = 4 + MAX_MESSAGE,
    };
    int err = rill_pipeline_add_last(pl, "framer", &rill_length_field_decoder, &lf);
    if (!err)
        err = rill_pipeline_add_last(pl, "prepender", &rill_length_field_prepender, NULL);
    if (!err)
        err = rill_pipeline_add_last(pl, "sendrecv-client", &sendrecv_client_handler, arg);
    return err;
}

/* One exchange on a new connection. */
static int exchange(struct rill_loop_group *g, const char *uri, size_t size)
{
    struct rill_promise *answer, *sent = NULL, *connected = NULL;
    struct rill_channel *ch = NULL;
    int err = rill_promise_new(NULL, &answer);
    if (err)
        return err;
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    co.arg = answer; /* borrowed by the handler; outlives the channel */
    rill_channel_opts_set(&co.opts, RILL_OPT_CONNECT_TIMEOUT_MS, 5000);
    err = rill_client_connect(&co, uri, &connected);
    if (!err)
        err = wait_for(connected, TIMEOUT_S);
    if (err) {
        fprintf(stderr, "rdma_sendrecv_client: connect %s: %s\n", uri, rill_strerror(err));
        goto out;
    }
    ch = rill_client_channel(connected);
    printf("SimpleClient::client channel set up (%s)\n", rill_channel_transport(ch));

    struct rill_buf *hello = message_new(hello_text, size);
    if (!hello || (err = rill_promise_new(NULL, &sent)) != 0) {
        err = -ENOMEM;
        if (hello)
            rill_buf_release(hello);
        goto out;
    }
    size_t len = rill_buf_readable(hello);
    rill_channel_write_and_flush(ch, rill_buf_msg(hello), sent); /* takes the buffer */
    if ((err = wait_for(sent, TIMEOUT_S)) != 0) {
        fprintf(stderr, "rdma_sendrecv_client: send: %s\n", rill_strerror(err));
        goto out;
    }
    printf("SimpleClient::message sent (%zu bytes)\n", len);

    if ((err = wait_for(answer, TIMEOUT_S)) != 0) {
        fprintf(stderr, "rdma_sendrecv_client: no answer: %s\n", rill_strerror(err));
        goto out;
    }
    void *value;
    rill_promise_result(answer, &value); /* borrowed while we hold the promise */
    struct rill_buf *reply = value;
    char text[256];
    printf("SimpleClient::message received (%zu bytes)\n", rill_buf_readable(reply));
    if (message_check(reply, text, sizeof(text)) != 0 || rill_buf_readable(reply) != len) {
        fprintf(stderr, "rdma_sendrecv_client: the answer is damaged\n");
        err = RILL_EPROTO;
    }
    printf("Message from the server: %s\n", text);

out:
    if (ch) {
        struct rill_promise *closed;
        if (rill_promise_new(NULL, &closed) == 0) {
            rill_channel_close(ch, closed);
            rill_promise_wait(closed, 10 * (int64_t)RILL_NS_PER_S);
            rill_promise_release(closed);
        }
        rill_channel_release(ch);
        printf("endpoint closed\n");
    }
    if (sent)
        rill_promise_release(sent);
    if (connected)
        rill_promise_release(connected);
    rill_promise_release(answer); /* and the answer buffer with it */
    return err;
}

int main(int argc, char **argv)
{
    const char *uri = "rdma://192.0.2.1:1920";
    long size = 0, count = 1;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && strcmp(argv[i], "--uri") == 0) {
            uri = v;
        } else if (v && strcmp(argv[i], "--size") == 0) {
            size = atol(v);
        } else if (v && strcmp(argv[i], "--count") == 0) {
            count = atol(v);
        } else {
            fprintf(stderr, "usage: %s [--uri rdma://HOST:PORT] [--size BYTES] [--count N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (size < 0 || (unsigned long)size > MAX_MESSAGE || count < 1) {
        fprintf(stderr, "rdma_sendrecv_client: --size 0..%u, --count >= 1\n", MAX_MESSAGE);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "sendrecv-client";
    struct rill_loop_group *g;
    int err = rill_loop_group_new(&go, &g);
    if (err) {
        fprintf(stderr, "rdma_sendrecv_client: %s\n", rill_strerror(err));
        return 1;
    }
    for (long i = 0; i < count && !err; i++)
        err = exchange(g, uri, (size_t)size);
    rill_promise_wait(rill_loop_group_shutdown(g, 0, RILL_NS_PER_S), -1);
    rill_loop_group_free(g);
    printf("group closed\n");
    if (err == -EINTR)
        fprintf(stderr, "rdma_sendrecv_client: interrupted\n");
    return err ? 1 : 0;
}
