/* echo_server: the smallest useful rill server, and the one the echo
 * benchmark (bench/echo) runs against the hand-written epoll server.
 *
 *   echo_server [--port N | --uri URI] [--mode raw|framed] [--loops N] [--trigger edge|level]
 *
 * --uri picks the address and so the transport: tcp://127.0.0.1:7000 (the
 * default), rdma://192.0.2.1:7000 (the same handlers over RDMA), ...
 *
 * It shows the server bootstrap (with --loops 1, the default, on one loop
 * that runs on the main thread, like the hand-written server; with more, a
 * loop group acting as boss and worker), a child-init callback that
 * installs the pipeline, and the two classic echo handlers:
 *
 *   raw     write back every buffer as it arrives, flush once per read batch
 *           (read_complete): many small requests in one read cost one write
 *   framed  4-byte big-endian length + payload; whole frames are echoed. A
 *           small frame splitter (codecs come later) keeps an incomplete
 *           frame in a composite buffer, so nothing is copied: complete
 *           frames go out as slices of the buffers they arrived in
 *
 * It prints "ready port=<port> mode=<mode> pid=<pid>" once it accepts
 * connections (port 0 picks a free port) and exits cleanly on SIGINT or
 * SIGTERM: the server closes with its connections, the loops shut down, and
 * every buffer is released (run with RILL_LEAK=paranoid to check). */
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
#include "rill/clock.h"
#include "rill/composite.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"

#define FRAME_MAX (16u * 1024 * 1024) /* a longer frame closes the connection */

/* ---- raw echo ---- */

static void raw_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    rill_ctx_write(ctx, msg, NULL); /* ownership goes with the write */
}

static void echo_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx);
}

static const struct rill_handler raw_echo = {
    .name = "raw-echo",
    .read = raw_read,
    .read_complete = echo_read_complete,
};

/* ---- framed echo ---- */

struct framed_state {
    struct rill_buf *pending; /* a composite holding an incomplete frame, or NULL */
};

/* Bytes of whole frames at the reader index of @b; -1 for an oversized one. */
static ssize_t whole_frames(const struct rill_buf *b)
{
    size_t at = rill_buf_reader_index(b), end = rill_buf_writer_index(b);
    while (end - at >= 4) {
        uint32_t len;
        rill_buf_get_u32_be(b, at, &len);
        if (len > FRAME_MAX)
            return -1;
        if (end - at - 4 < len)
            break;
        at += 4 + (size_t)len;
    }
    return (ssize_t)(at - rill_buf_reader_index(b));
}

static void framed_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct framed_state *st = rill_ctx_state(ctx);
    struct rill_buf *in = rill_buf_from_msg(msg);
    if (!in) {
        rill_msg_release(msg);
        return;
    }
    if (st->pending) {
        /* Join the new bytes to the incomplete frame without copying. */
        if (rill_buf_composite_add(st->pending, in) != 0) {
            rill_ctx_close(ctx, NULL);
            return;
        }
        in = st->pending;
        st->pending = NULL;
    }
    ssize_t k = whole_frames(in);
    if (k < 0) {
        rill_buf_release(in);
        rill_channel_close_with(rill_ctx_channel(ctx), RILL_ETOOLARGE, NULL);
        return;
    }
    if ((size_t)k == rill_buf_readable(in)) { /* the common case: whole frames only */
        rill_ctx_write(ctx, rill_buf_msg(in), NULL);
        return;
    }
    if (k > 0) {
        struct rill_buf *frames;
        if (rill_buf_read_slice(in, (size_t)k, &frames) != 0) {
            rill_buf_release(in);
            rill_ctx_close(ctx, NULL);
            return;
        }
        rill_ctx_write(ctx, rill_buf_msg(frames), NULL);
    }
    /* Keep the incomplete rest for the next read. */
    if (rill_buf_kind(in) == RILL_BUF_COMPOSITE) {
        rill_buf_discard_read(in); /* drops the components already sent */
        st->pending = in;
    } else if (rill_buf_composite_new(&st->pending) != 0 ||
               rill_buf_composite_add(st->pending, in) != 0) {
        rill_ctx_close(ctx, NULL);
    }
}

static void framed_removed(struct rill_ctx *ctx)
{
    struct framed_state *st = rill_ctx_state(ctx);
    if (st->pending)
        rill_buf_release(st->pending);
    st->pending = NULL;
}

static const struct rill_handler framed_echo = {
    .name = "framed-echo",
    .ctx_size = sizeof(struct framed_state),
    .removed = framed_removed,
    .read = framed_read,
    .read_complete = echo_read_complete,
};

/* Runs on the loop of every accepted connection. */
static int child_init(struct rill_channel *ch, void *arg)
{
    const struct rill_handler *h = arg;
    return rill_pipeline_add_last(rill_channel_pipeline(ch), h->name, h, NULL);
}

/* ---- one loop on the main thread ---- */

struct app {
    struct rill_loop *loop;
    struct rill_server *srv;
    const char *mode;
    int sfd; /* signalfd for SIGINT and SIGTERM */
    int sig;
    struct rill_io sig_io;
};

static void server_closed(struct rill_promise *p, void *arg)
{
    struct app *a = arg;
    (void)p;
    rill_loop_shutdown(a->loop, 0, 0); /* rill_loop_run returns once it has drained */
}

static void on_signal(struct rill_io *io, uint32_t events)
{
    struct app *a = io->data;
    struct signalfd_siginfo si;
    (void)events;
    if (read(a->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    a->sig = (int)si.ssi_signo;
    rill_io_stop(io);
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
        fprintf(stderr, "echo_server: %s\n", rill_strerror(err));
        rill_loop_shutdown(a->loop, 0, 0);
        return;
    }
    printf("ready port=%d mode=%s pid=%d\n", rill_addr_port(rill_server_local_addr(a->srv)),
           a->mode, (int)getpid());
    fflush(stdout);
}

/* With one loop the whole server runs on this thread, as a hand-written
 * epoll server does: the loop runs here (rill_loop_run) and watches a
 * signalfd for the exit signals. */
static int run_on_main_thread(const struct rill_server_opts *base, const char *uri, bool framed)
{
    struct app a = { .mode = framed ? "framed" : "raw" };
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    a.sfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    struct rill_loop_opts lo;
    rill_loop_opts_init(&lo);
    lo.name = "echo";
    int err = a.sfd < 0 ? -errno : rill_loop_new(&lo, &a.loop);
    if (err) {
        fprintf(stderr, "echo_server: %s\n", rill_strerror(err));
        return 1;
    }
    struct rill_server_opts so = *base;
    so.boss_loop = a.loop;
    err = rill_server_bind(&so, uri, &a.srv);
    if (err) {
        fprintf(stderr, "echo_server: %s: %s\n", uri, rill_strerror(err));
        rill_loop_free(a.loop);
        return 1;
    }
    rill_promise_add_listener(rill_server_bound(a.srv), bound, &a);
    rill_loop_execute(a.loop, watch_signals, &a);
    rill_loop_run(a.loop);
    if (a.sig)
        fprintf(stderr, "echo_server: %s, %llu connection(s) served, exiting\n", strsignal(a.sig),
                (unsigned long long)rill_server_accepted(a.srv));
    rill_server_free(a.srv);
    rill_loop_free(a.loop);
    close(a.sfd);
    return a.sig ? 0 : 1;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--port N | --uri URI] [--mode raw|framed] [--loops N] "
            "[--trigger edge|level]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 7000, loops = 1;
    bool framed = false, edge = true;
    const char *uri_arg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--port") == 0 && v) {
            port = atoi(v);
        } else if (strcmp(a, "--uri") == 0 && v) {
            uri_arg = v;
        } else if (strcmp(a, "--mode") == 0 && v) {
            if (strcmp(v, "framed") == 0)
                framed = true;
            else if (strcmp(v, "raw") != 0)
                usage(argv[0]);
        } else if (strcmp(a, "--loops") == 0 && v) {
            loops = atoi(v);
        } else if (strcmp(a, "--trigger") == 0 && v) {
            edge = strcmp(v, "level") != 0;
        } else {
            usage(argv[0]);
        }
        i++;
    }
    if (port < 0 || port > 65535 || loops < 1)
        usage(argv[0]);

    /* Signals go to this thread only: block them before any loop starts
     * (loop threads inherit the mask); they are read with sigwait or a
     * signalfd. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.child_init = child_init;
    so.child_arg = (void *)(framed ? &framed_echo : &raw_echo);
    rill_channel_opts_set(&so.child_opts, RILL_OPT_EDGE_TRIGGERED, edge);
    char uri[256];
    if (uri_arg)
        snprintf(uri, sizeof(uri), "%s", uri_arg);
    else
        snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
    if (loops == 1)
        return run_on_main_thread(&so, uri, framed);

    /* Several loops: a group plays both roles (boss and worker); this
     * thread only waits for a signal. */
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = loops;
    go.name = "echo";
    struct rill_loop_group *group;
    int err = rill_loop_group_new(&go, &group);
    if (err) {
        fprintf(stderr, "echo_server: loop group: %s\n", rill_strerror(err));
        return 1;
    }

    so.boss = group;
    so.workers = group;
    struct rill_server *srv;
    err = rill_server_bind(&so, uri, &srv);
    if (!err)
        err = rill_promise_wait(rill_server_bound(srv), 10 * (int64_t)RILL_NS_PER_S);
    if (err) {
        fprintf(stderr, "echo_server: %s: %s\n", uri, rill_strerror(err));
        return 1;
    }
    printf("ready port=%d mode=%s pid=%d\n", rill_addr_port(rill_server_local_addr(srv)),
           framed ? "framed" : "raw", (int)getpid());
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);

    /* Close the listener and every connection, then stop the loops. */
    rill_promise_wait(rill_server_close(srv, true), 10 * (int64_t)RILL_NS_PER_S);
    fprintf(stderr, "echo_server: %s, %llu connection(s) served, exiting\n", strsignal(sig),
            (unsigned long long)rill_server_accepted(srv));
    rill_server_free(srv);
    rill_promise_wait(rill_loop_group_shutdown(group, 0, 5 * RILL_NS_PER_S), -1);
    rill_loop_group_free(group);
    return 0;
}
