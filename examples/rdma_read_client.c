/* rdma_read_client: DISNI's ReadClient on rill. It connects to
 * examples/rdma_read_server, receives the descriptor (address, length,
 * rkey) of a buffer the server exposed, and reads that buffer with
 * one-sided RDMA READs, in growing pieces as DISNI's example does (10
 * bytes, 20, ... up to the whole buffer), printing what it got each time.
 * Then it checks the text, tells the server it is finished and closes.
 *
 *   rdma_read_client [--uri rdma://192.0.2.1:1919] [--step BYTES]
 *
 *   DISNI                                  rill
 *   endpointGroup.createEndpoint/connect   rill_client_connect (a future)
 *   registerMemory(dataBuf)                a pooled rill_buf: all of rill's
 *                                          I/O memory is registered already
 *   wcEvents.take() + recvBuf.getLong()..  a handler that completes a promise
 *                                          with the decoded descriptor
 *   sendWR IBV_WR_RDMA_READ + execute      rill_rdma_read(ch, &desc, 0, ...)
 *   wcEvents.take() (READ completion)      rill_promise_wait on its promise
 *   final IBV_WR_SEND                      a framed write of 'F'
 *
 * The handler runs on the client's loop; the main thread drives the steps
 * and waits on promises, which is the closest to DISNI's blocking style
 * (rill_rdma_read may be called from any thread; it completes on the loop).
 *
 * Over rdma+tcp:// the connection may fall back to TCP; the server then
 * cannot expose memory (rill_rdma_expose fails with -ENOTSUP) and sends the
 * text in a message instead, which this client prints and checks. A READ
 * on a channel that is not RDMA fails with -ENOTSUP too, which is reported.
 *
 * Exit status 0 when the text was read and checked. SIGINT or SIGTERM
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
#include "rill/rdma.h"

#define TIMEOUT_S 30

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

/* ---- the handler: turns the server's first message into a promise ---- */

struct session {
    struct rill_promise *first; /* completed by the server's first message */
    bool have_desc;             /* 'D': desc is valid */
    struct rill_rdma_desc desc;
    char text[128]; /* 'C': the server sent the text itself */
};

static void client_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct session *s = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    uint8_t body[128];
    size_t n = b ? rill_buf_readable(b) : 0;
    if (n == 0 || n > sizeof(body) || rill_promise_is_done(s->first)) {
        rill_msg_release(msg);
        rill_channel_close_with(rill_ctx_channel(ctx), RILL_EPROTO, NULL);
        return;
    }
    rill_buf_get_bytes(b, rill_buf_reader_index(b), body, n);
    rill_msg_release(msg);
    if (body[0] == 'D' && rill_rdma_desc_decode(body + 1, n - 1, &s->desc) == 0) {
        s->have_desc = true;
    } else if (body[0] == 'C') {
        memcpy(s->text, body + 1, n - 1);
        s->text[n - 1] = '\0';
    } else {
        rill_channel_close_with(rill_ctx_channel(ctx), RILL_EPROTO, NULL);
        return;
    }
    rill_promise_succeed(s->first, NULL, NULL);
}

static void client_inactive(struct rill_ctx *ctx)
{
    struct session *s = rill_ctx_arg(ctx);
    rill_promise_fail(s->first, RILL_ECLOSED); /* no-op once complete */
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler read_client_handler = {
    .name = "read-client",
    .read = client_read,
    .inactive = client_inactive,
};

static int client_init(struct rill_channel *ch, void *arg)
{
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    struct rill_length_field_config lf = {
        .length_field_size = 4,
        .initial_bytes_to_strip = 4,
        .max_frame_length = 4 + 128,
    };
    int err = rill_pipeline_add_last(pl, "framer", &rill_length_field_decoder, &lf);
    if (!err)
        err = rill_pipeline_add_last(pl, "prepender", &rill_length_field_prepender, NULL);
    if (!err)
        err = rill_pipeline_add_last(pl, "read-client", &read_client_handler, arg);
    return err;
}

/* ---- the steps ---- */

/* The printable prefix of @p (the buffer holds a C string padded with zeros). */
static int printable(const char *p, size_t len)
{
    return (int)strnlen(p, len);
}

/* READ the server's buffer in growing pieces into @local. Returns 0 when
 * the whole buffer arrived and holds the expected text. */
static int read_pieces(struct rill_channel *ch, const struct rill_rdma_desc *d, size_t step)
{
    struct rill_buf *local;
    size_t len = (size_t)d->len, room;
    if (len == 0 || len > 1024 * 1024 || rill_buf_alloc(len, &local) != 0)
        return -EINVAL;
    /* The READ lands in the buffer's writable bytes: rill's own memory is
     * registered with the device, so no registration is needed here. */
    char *p = (char *)rill_buf_write_ptr(local, len, &room);
    memset(p, 0, len);
    int err = 0;
    for (size_t i = step; err == 0; i += step) {
        size_t n = i < len ? i : len;
        struct rill_promise *done;
        if ((err = rill_promise_new(NULL, &done)) != 0)
            break;
        rill_rdma_read(ch, d, 0, p, n, done);
        err = wait_for(done, TIMEOUT_S);
        if (err == -EINTR || err == -ETIMEDOUT) {
            /* The buffer is lent to the READ until it completes: close the
             * channel, which fails the READ, and wait for that. */
            rill_channel_close(ch, NULL);
            rill_promise_wait(done, -1);
        }
        rill_promise_release(done);
        if (err == -ENOTSUP) {
            fprintf(stderr,
                    "rdma_read_client: rill_rdma_read: %s: the channel is %s; one-sided "
                    "operations need an RDMA queue pair\n",
                    rill_strerror(err), rill_channel_transport(ch));
        } else if (err) {
            fprintf(stderr, "rdma_read_client: rill_rdma_read(%zu bytes): %s\n", n,
                    rill_strerror(err));
        } else {
            printf("ReadClient::read memory from server (%3zu bytes): %.*s\n", n, printable(p, n),
                   p);
        }
        if (n == len)
            break;
    }
    if (err == 0) {
        char want[64];
        snprintf(want, sizeof(want), "This is a RDMA/read on stag %u !", d->rkey);
        if (strncmp(p, want, len) != 0) {
            fprintf(stderr, "rdma_read_client: read \"%.*s\", expected \"%s\"\n", printable(p, len),
                    p, want);
            err = RILL_EPROTO;
        }
    }
    rill_buf_release(local);
    return err;
}

static int send_final(struct rill_channel *ch)
{
    struct rill_buf *b;
    struct rill_promise *sent;
    if (rill_buf_copy_from("F", 1, &b) != 0)
        return -ENOMEM;
    if (rill_promise_new(NULL, &sent) != 0) {
        rill_buf_release(b);
        return -ENOMEM;
    }
    rill_channel_write_and_flush(ch, rill_buf_msg(b), sent); /* takes the buffer */
    int err = wait_for(sent, TIMEOUT_S);
    rill_promise_release(sent);
    return err;
}

int main(int argc, char **argv)
{
    const char *uri = "rdma://192.0.2.1:1919";
    int step = 10;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 < argc && strcmp(argv[i], "--uri") == 0) {
            uri = argv[i + 1];
        } else if (i + 1 < argc && strcmp(argv[i], "--step") == 0) {
            step = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "usage: %s [--uri rdma://HOST:PORT] [--step BYTES]\n", argv[0]);
            return 2;
        }
    }
    if (step < 1)
        step = 10;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct session s = { 0 };
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "read-client";
    struct rill_loop_group *g;
    int err = rill_loop_group_new(&go, &g);
    if (err || (err = rill_promise_new(NULL, &s.first)) != 0) {
        fprintf(stderr, "rdma_read_client: %s\n", rill_strerror(err));
        return 1;
    }

    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    co.arg = &s;
    rill_channel_opts_set(&co.opts, RILL_OPT_CONNECT_TIMEOUT_MS, 5000);
    struct rill_promise *connected = NULL;
    struct rill_channel *ch = NULL;
    err = rill_client_connect(&co, uri, &connected);
    if (!err)
        err = wait_for(connected, TIMEOUT_S);
    if (err) {
        fprintf(stderr, "rdma_read_client: connect %s: %s\n", uri, rill_strerror(err));
        goto out;
    }
    ch = rill_client_channel(connected);
    char peer[RILL_ADDR_STRLEN] = "?";
    if (rill_channel_remote_addr(ch))
        rill_addr_format(rill_channel_remote_addr(ch), peer, sizeof(peer));
    printf("ReadClient::client connected, address %s (%s)\n", peer, rill_channel_transport(ch));

    /* The server's first message: a descriptor, or the text itself. */
    if ((err = wait_for(s.first, TIMEOUT_S)) != 0) {
        fprintf(stderr, "rdma_read_client: no message from the server: %s\n", rill_strerror(err));
        goto out;
    }
    if (s.have_desc) {
        printf("ReadClient::receiving rdma information, addr 0x%llx, length %llu, key %u\n",
               (unsigned long long)s.desc.addr, (unsigned long long)s.desc.len, s.desc.rkey);
        printf("ReadClient::preparing read operation...\n");
        err = read_pieces(ch, &s.desc, (size_t)step);
    } else {
        printf("ReadClient::the connection is %s, not RDMA: the server could not expose its "
               "buffer (-ENOTSUP) and sent the text: %s\n",
               rill_channel_transport(ch), s.text);
        err = strncmp(s.text, "This is a ", 10) == 0 ? 0 : RILL_EPROTO;
    }
    if (err == 0 && (err = send_final(ch)) != 0)
        fprintf(stderr, "rdma_read_client: final message: %s\n", rill_strerror(err));

out:
    if (ch) {
        struct rill_promise *closed;
        printf("closing endpoint\n");
        if (rill_promise_new(NULL, &closed) == 0) {
            rill_channel_close(ch, closed);
            rill_promise_wait(closed, 10 * (int64_t)RILL_NS_PER_S);
            rill_promise_release(closed);
        }
        rill_channel_release(ch);
        printf("closing endpoint, done\n");
    }
    if (connected)
        rill_promise_release(connected);
    rill_promise_wait(rill_loop_group_shutdown(g, 0, RILL_NS_PER_S), -1);
    rill_loop_group_free(g);
    rill_promise_release(s.first);
    if (err == -EINTR)
        fprintf(stderr, "rdma_read_client: interrupted\n");
    return err ? 1 : 0;
}
