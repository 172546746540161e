/* rdma_sendrecv_server: DISNI's SendRecvServer on rill. Two-sided
 * messaging: the client (examples/rdma_sendrecv_client) sends "Hello from
 * the client", the server prints it and answers "Hello from the server".
 *
 *   rdma_sendrecv_server [--uri rdma://192.0.2.1:1920] [--clients N]
 *
 * DISNI posts a receive into a registered buffer and a send from another,
 * and takes completion events from a queue. A rill RDMA channel is a byte
 * stream under the usual pipeline (the transport posts the receives,
 * keeps the credits and copies nothing on the way in), so the example is
 * a pipeline: a length-field frame decoder and prepender (rill/framing.h)
 * give back the message boundaries, and a handler answers each message:
 *
 *   DISNI                                  rill
 *   RdmaActiveEndpointGroup + accept()     a loop + rill_server_bind
 *   postRecv + wcEvents.take()             the handler's read callback
 *   sendBuf.asCharBuffer().put(...)        a rill_buf holding the reply
 *   postSend + wcEvents.take() (sent)      rill_ctx_write_and_flush + its promise
 *
 * Messages longer than the text (the client's --size) are answered with a
 * reply of the same size: text, a zero byte, then a byte pattern the peer
 * checks. Large ones exercise the transport's rendezvous path (buffers of
 * RILL_OPT_RDMA_RNDV bytes and more are RDMA-READ by the receiver).
 *
 * The same program works over tcp:// and rdma+tcp://: two-sided messaging
 * needs nothing RDMA-specific. It serves N clients (default 1, as DISNI's
 * example; 0: until a signal), prints "ready port=<port> pid=<pid>" once it
 * accepts connections and exits cleanly on SIGINT or SIGTERM (run with
 * RILL_LEAK=paranoid to check that every buffer was released). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/pipeline.h"

#define MAX_MESSAGE (64u * 1024 * 1024)

static const char reply_text[] = "Hello from the server";

struct app {
    struct rill_loop *loop;
    struct rill_server *srv;
    int clients; /* to serve; 0: until a signal */
    int served;
    int failed;
    int sfd; /* signalfd for SIGINT and SIGTERM */
    int sig;
    struct rill_io sig_io;
};

/* ---- messages: text, then (when longer) a zero byte and a pattern ---- */

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + 3);
}

/* A message of max(@size, strlen(@text)) bytes. */
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

/* Copy the text of message @b into @text (NUL-terminated) and check the
 * pattern after it. Returns 0 or RILL_EPROTO. */
static int message_check(const struct rill_buf *b, char *text, size_t cap)
{
    size_t at = rill_buf_reader_index(b), len = rill_buf_readable(b), i = 0;
    uint8_t c = 1;
    while (i < len && i + 1 < cap && rill_buf_get_u8(b, at + i, &c) == 0 && c != 0)
        text[i++] = (char)c;
    text[i] = '\0';
    if (i < len && c != 0)
        return RILL_EPROTO; /* text longer than @cap */
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

/* ---- one connection ---- */

struct conn {
    bool answered;
};

static void reply_sent(struct rill_promise *p, void *arg)
{
    int err = rill_promise_result(p, NULL);
    (void)arg;
    if (err)
        fprintf(stderr, "rdma_sendrecv_server: reply not sent: %s\n", rill_strerror(err));
    else
        printf("SimpleServer::message sent\n");
}

static void conn_active(struct rill_ctx *ctx)
{
    struct rill_channel *ch = rill_ctx_channel(ctx);
    char peer[RILL_ADDR_STRLEN] = "?";
    if (rill_channel_remote_addr(ch))
        rill_addr_format(rill_channel_remote_addr(ch), peer, sizeof(peer));
    printf("SimpleServer::client connection accepted from %s (%s)\n", peer,
           rill_channel_transport(ch));
    rill_ctx_fire_active(ctx);
}

static void conn_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct conn *c = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    char text[256];
    if (!b || c->answered || message_check(b, text, sizeof(text)) != 0) {
        rill_msg_release(msg);
        rill_channel_close_with(rill_ctx_channel(ctx), RILL_EPROTO, NULL);
        return;
    }
    size_t size = rill_buf_readable(b);
    rill_msg_release(msg); /* received buffers are ours to release */
    printf("SimpleServer::message received (%zu bytes)\n", size);
    printf("Message from the client: %s\n", text);

    /* Respond with a message of the same size. The promise completes
     * once the transport has handed the reply to the device. */
    struct rill_buf *reply = message_new(reply_text, size);
    struct rill_promise *sent;
    if (!reply || rill_promise_new(rill_channel_loop(rill_ctx_channel(ctx)), &sent) != 0) {
        if (reply)
            rill_buf_release(reply);
        rill_ctx_close(ctx, NULL);
        return;
    }
    c->answered = true;
    rill_promise_add_listener(sent, reply_sent, NULL);
    rill_ctx_write_and_flush(ctx, rill_buf_msg(reply), sent); /* takes the buffer */
    rill_promise_release(sent); /* the write keeps its own reference */
    /* The client closes once it has the reply (DISNI's server closes after
     * its send completion; waiting for the client's close is just as
     * quick and never cuts a reply short). */
}

static void server_closed(struct rill_promise *p, void *arg)
{
    struct app *a = arg;
    (void)p;
    if (rill_io_active(&a->sig_io))
        rill_io_stop(&a->sig_io);
    rill_loop_shutdown(a->loop, 0, 0); /* rill_loop_run returns once it has drained */
}

static void conn_inactive(struct rill_ctx *ctx)
{
    struct conn *c = rill_ctx_state(ctx);
    struct app *a = rill_ctx_arg(ctx);
    int why = rill_channel_close_reason(rill_ctx_channel(ctx));
    printf("SimpleServer::client endpoint closed\n");
    a->served++;
    if (!c->answered || why != 0) {
        a->failed++;
        fprintf(stderr, "rdma_sendrecv_server: connection ended %s (%s)\n",
                c->answered ? "after the reply" : "before a message",
                why ? rill_strerror(why) : "peer closed");
    }
    if (a->clients > 0 && a->served == a->clients && !a->sig)
        rill_promise_add_listener(rill_server_close(a->srv, true), server_closed, a);
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler sendrecv_server_handler = {
    .name = "sendrecv-server",
    .ctx_size = sizeof(struct conn),
    .active = conn_active,
    .read = conn_read,
    .inactive = conn_inactive,
};

static int child_init(struct rill_channel *ch, void *arg)
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
        err = rill_pipeline_add_last(pl, "sendrecv-server", &sendrecv_server_handler, arg);
    return err;
}

/* ---- the loop, on the main thread ---- */

static void on_signal(struct rill_io *io, uint32_t events)
{
    struct app *a = io->data;
    struct signalfd_siginfo si;
    (void)events;
    if (read(a->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    a->sig = (int)si.ssi_signo;
    /* Close the listener and every connection, then stop the loop. */
    rill_promise_add_listener(rill_server_close(a->srv, true), server_closed, a);
}

static void watch_signals(void *arg)
{
    struct app *a = arg;
    rill_io_init(&a->sig_io, a->sfd, on_signal, a);
    rill_io_start(a->loop, &a->sig_io, EPOLLIN);
}

static void bound(struct rill_promise *p, void *arg)
{
    struct app *a = arg;
    int err = rill_promise_result(p, NULL);
    if (err) {
        fprintf(stderr, "rdma_sendrecv_server: %s\n", rill_strerror(err));
        server_closed(p, a);
        return;
    }
    char addr[RILL_ADDR_STRLEN];
    rill_addr_format(rill_server_local_addr(a->srv), addr, sizeof(addr));
    printf("SimpleServer::servers bound to address %s\n", addr);
    printf("ready port=%d pid=%d\n", rill_addr_port(rill_server_local_addr(a->srv)), (int)getpid());
    fflush(stdout);
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--uri rdma://HOST:PORT] [--clients N]\n", prog);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *uri = "rdma://192.0.2.1:1920";
    struct app a = { .clients = 1, .sfd = -1 };
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage(argv[0]);
        if (strcmp(argv[i], "--uri") == 0)
            uri = argv[i + 1];
        else if (strcmp(argv[i], "--clients") == 0)
            a.clients = atoi(argv[i + 1]);
        else
            usage(argv[0]);
    }
    if (a.clients < 0)
        usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    a.sfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    struct rill_loop_opts lo;
    rill_loop_opts_init(&lo);
    lo.name = "sendrecv-server";
    int err = a.sfd < 0 ? -errno : rill_loop_new(&lo, &a.loop);
    if (err) {
        fprintf(stderr, "rdma_sendrecv_server: %s\n", rill_strerror(err));
        return 1;
    }

    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss_loop = a.loop;
    so.child_init = child_init;
    so.child_arg = &a;
    err = rill_server_bind(&so, uri, &a.srv);
    if (err) {
        fprintf(stderr, "rdma_sendrecv_server: %s: %s\n", uri, rill_strerror(err));
        if (err == -ENODEV)
            fprintf(stderr, "rdma_sendrecv_server: no RDMA device here (try rdma+tcp://)\n");
        rill_loop_free(a.loop);
        close(a.sfd);
        return 1;
    }
    rill_promise_add_listener(rill_server_bound(a.srv), bound, &a);
    rill_loop_execute(a.loop, watch_signals, &a);
    rill_loop_run(a.loop); /* until the server has closed */

    if (a.sig)
        fprintf(stderr, "rdma_sendrecv_server: %s, exiting\n", strsignal(a.sig));
    rill_server_free(a.srv);
    printf("SimpleServer::server endpoint closed\n");
    rill_loop_free(a.loop);
    close(a.sfd);
    printf("SimpleServer::group closed (%d connection(s), %d failed)\n", a.served, a.failed);
    return a.failed == 0 && (a.sig || a.served == a.clients) ? 0 : 1;
}
