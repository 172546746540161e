/* rdma_read_server: DISNI's ReadServer on rill. The server fills a buffer
 * with text, exposes it to the client for one-sided RDMA READ and sends the
 * buffer's descriptor (address, length, rkey) in a message. The client
 * (examples/rdma_read_client) reads the buffer straight from this process's
 * memory (the server's CPU takes no part in the reads) and then sends a
 * final message; the server revokes the buffer and closes the connection.
 *
 *   rdma_read_server [--uri rdma://192.0.2.1:1919] [--clients N]
 *
 * Where DISNI's example uses an endpoint group, a server endpoint, three
 * registered buffers and a blocking queue of completion events, rill has a
 * server bootstrap, a pipeline per connection and promises:
 *
 *   DISNI                                  rill
 *   RdmaActiveEndpointGroup                a loop (here on the main thread)
 *   serverEndpoint.bind/accept             rill_server_bind + child_init
 *   registerMemory(dataBuf)                rill_rdma_expose(REMOTE_READ)
 *   sendBuf.putLong(addr)... + postSend    rill_rdma_desc_encode + a framed write
 *   wcEvents.take() (final message)        the handler's read callback
 *   endpoint.close()                       rill_rdma_revoke + rill_ctx_close
 *
 * Messages are frames (a 4-byte big-endian length, then the payload, from
 * rill/framing.h) whose first byte says what they are:
 *
 *   server -> client  'D' + descriptor (RILL_RDMA_DESC_SIZE bytes)
 *                     'C' + the text itself, when the connection is not RDMA
 *   client -> server  'F'  the client is finished with the buffer
 *
 * With --uri rdma+tcp://... a connection may fall back to TCP (no RDMA
 * device or route). One-sided operations need a queue pair, so
 * rill_rdma_expose then fails with -ENOTSUP: the server says so and sends
 * the text in a 'C' message instead, so the client still gets it (by copy).
 *
 * It serves N clients (default 1, as DISNI's example does; 0: until a
 * signal), prints "ready port=<port> pid=<pid>" once it accepts connections
 * and exits cleanly on SIGINT or SIGTERM: connections closed, regions
 * revoked, every buffer released (run with RILL_LEAK=paranoid to check). */
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
#include "rill/rdma.h"

#define DATA_SIZE 100 /* the exposed buffer, as DISNI's buffersize */

struct app {
    struct rill_loop *loop;
    struct rill_server *srv;
    int clients; /* to serve; 0: until a signal */
    int served;
    int failed; /* connections that did not end with the client's 'F' */
    int sfd;    /* signalfd for SIGINT and SIGTERM */
    int sig;
    struct rill_io sig_io;
};

/* ---- one connection ---- */

struct conn {
    void *data; /* the exposed buffer (ours; registered by rill_rdma_expose) */
    struct rill_rdma_region *region;
    bool finished; /* the client sent 'F' */
};

static void send_frame(struct rill_ctx *ctx, char type, const void *body, size_t len)
{
    struct rill_buf *b;
    if (rill_buf_alloc(1 + len, &b) != 0) {
        rill_ctx_close(ctx, NULL);
        return;
    }
    rill_buf_write_u8(b, (uint8_t)type);
    rill_buf_write_bytes(b, body, len);
    rill_ctx_write_and_flush(ctx, rill_buf_msg(b), NULL); /* takes the buffer */
}

static void conn_active(struct rill_ctx *ctx)
{
    struct conn *c = rill_ctx_state(ctx);
    struct rill_channel *ch = rill_ctx_channel(ctx);
    char peer[RILL_ADDR_STRLEN] = "?";
    if (rill_channel_remote_addr(ch))
        rill_addr_format(rill_channel_remote_addr(ch), peer, sizeof(peer));
    printf("ReadServer::connection accepted from %s (%s)\n", peer, rill_channel_transport(ch));

    /* Any memory can be exposed: it stays ours, rill only registers it. */
    c->data = calloc(1, DATA_SIZE);
    if (!c->data) {
        rill_channel_close_with(ch, -ENOMEM, NULL);
        return;
    }
    int err = rill_rdma_expose(ch, c->data, DATA_SIZE, RILL_RDMA_REMOTE_READ, &c->region);
    if (err == 0) {
        struct rill_rdma_desc d;
        uint8_t wire[RILL_RDMA_DESC_SIZE];
        rill_rdma_region_desc(c->region, &d);
        snprintf(c->data, DATA_SIZE, "This is a RDMA/read on stag %u !", d.rkey);
        rill_rdma_desc_encode(&d, wire);
        printf("ReadServer::sending message: addr 0x%llx, length %llu, rkey %u\n",
               (unsigned long long)d.addr, (unsigned long long)d.len, d.rkey);
        send_frame(ctx, 'D', wire, sizeof(wire));
    } else if (err == -ENOTSUP) {
        /* rdma+tcp:// fell back to TCP: there is no queue pair to read
         * through. Send a copy of the text instead. */
        snprintf(c->data, DATA_SIZE, "This is a copy over %s (no RDMA, no stag) !",
                 rill_channel_transport(ch));
        printf("ReadServer::rill_rdma_expose: %s: the connection is %s, not RDMA; "
               "sending the text in a message instead\n",
               rill_strerror(err), rill_channel_transport(ch));
        send_frame(ctx, 'C', c->data, strlen(c->data));
    } else {
        fprintf(stderr, "rdma_read_server: rill_rdma_expose: %s\n", rill_strerror(err));
        rill_channel_close_with(ch, err, NULL);
    }
    rill_ctx_fire_active(ctx);
}

static void conn_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct conn *c = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    uint8_t type = 0;
    if (b)
        rill_buf_get_u8(b, rill_buf_reader_index(b), &type);
    rill_msg_release(msg); /* the type byte is all we need */
    if (type != 'F') {
        rill_channel_close_with(rill_ctx_channel(ctx), RILL_EPROTO, NULL);
        return;
    }
    /* As in DISNI, the final message only says "done": the client has
     * read the buffer, so it can go. */
    printf("ReadServer::final message\n");
    c->finished = true;
    rill_ctx_close(ctx, NULL);
}

/* Give the buffer back: after revoke, a READ with the old descriptor fails. */
static void conn_cleanup(struct conn *c)
{
    if (c->region)
        rill_rdma_revoke(c->region);
    c->region = NULL;
    free(c->data);
    c->data = NULL;
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
    conn_cleanup(c);
    a->served++;
    if (!c->finished) {
        a->failed++;
        fprintf(stderr, "rdma_read_server: connection closed before the final message (%s)\n",
                why ? rill_strerror(why) : "peer closed");
    }
    if (a->clients > 0 && a->served == a->clients && !a->sig)
        rill_promise_add_listener(rill_server_close(a->srv, true), server_closed, a);
    rill_ctx_fire_inactive(ctx);
}

static void conn_removed(struct rill_ctx *ctx)
{
    conn_cleanup(rill_ctx_state(ctx)); /* a connection that never became active */
}

static const struct rill_handler read_server_handler = {
    .name = "read-server",
    .ctx_size = sizeof(struct conn),
    .removed = conn_removed,
    .active = conn_active,
    .read = conn_read,
    .inactive = conn_inactive,
};

/* Runs on the loop for every accepted connection: framing, then our handler. */
static int child_init(struct rill_channel *ch, void *arg)
{
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    struct rill_length_field_config lf = {
        .length_field_size = 4,
        .initial_bytes_to_strip = 4,
        .max_frame_length = 4 + 64,
    };
    int err = rill_pipeline_add_last(pl, "framer", &rill_length_field_decoder, &lf);
    if (!err)
        err = rill_pipeline_add_last(pl, "prepender", &rill_length_field_prepender, NULL);
    if (!err)
        err = rill_pipeline_add_last(pl, "read-server", &read_server_handler, arg);
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
        fprintf(stderr, "rdma_read_server: %s\n", rill_strerror(err));
        server_closed(p, a);
        return;
    }
    char addr[RILL_ADDR_STRLEN];
    rill_addr_format(rill_server_local_addr(a->srv), addr, sizeof(addr));
    printf("ReadServer::server bound to address %s\n", addr);
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
    const char *uri = "rdma://192.0.2.1:1919";
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

    /* SIGINT and SIGTERM arrive through a signalfd the loop watches. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    a.sfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    struct rill_loop_opts lo;
    rill_loop_opts_init(&lo);
    lo.name = "read-server";
    int err = a.sfd < 0 ? -errno : rill_loop_new(&lo, &a.loop);
    if (err) {
        fprintf(stderr, "rdma_read_server: %s\n", rill_strerror(err));
        return 1;
    }

    /* One loop accepts the connections and runs them. */
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss_loop = a.loop;
    so.child_init = child_init;
    so.child_arg = &a;
    err = rill_server_bind(&so, uri, &a.srv);
    if (err) {
        fprintf(stderr, "rdma_read_server: %s: %s\n", uri, rill_strerror(err));
        if (err == -ENODEV)
            fprintf(stderr, "rdma_read_server: no RDMA device here (try rdma+tcp://)\n");
        rill_loop_free(a.loop);
        close(a.sfd);
        return 1;
    }
    rill_promise_add_listener(rill_server_bound(a.srv), bound, &a);
    rill_loop_execute(a.loop, watch_signals, &a);
    rill_loop_run(a.loop); /* until the server has closed */

    if (a.sig)
        fprintf(stderr, "rdma_read_server: %s, exiting\n", strsignal(a.sig));
    printf("ReadServer::%d connection(s) served, %d without the final message\n", a.served,
           a.failed);
    rill_server_free(a.srv);
    rill_loop_free(a.loop);
    close(a.sfd);
    if (rill_rdma_region_count() != 0)
        fprintf(stderr, "rdma_read_server: %zu region(s) still exposed\n",
                rill_rdma_region_count());
    return a.failed == 0 && (a.sig || a.served == a.clients) ? 0 : 1;
}
