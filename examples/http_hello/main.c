/* http_hello: an HTTP/1.1 server on rill, the one the HTTP benchmark runs
 * against nginx's `return 200 "hello"`.
 *
 *   http_hello [--host 127.0.0.1] [--port 8080] [--workers N] [--root DIR]
 *
 *   GET /             200 "hello" (text/plain); any path without --root
 *   POST /echo        the request body back (chunked uploads and
 *                     Expect: 100-continue work: the aggregator answers)
 *   GET /static/PATH  with --root: the file DIR/PATH, sent with sendfile;
 *                     HEAD too; 404 missing, 403 for "..", 400 bad paths
 *
 * Port 0 picks a free port. Once listening it prints one line,
 * "http_hello: listening on http://HOST:PORT", and flushes stdout. It runs
 * until SIGINT or SIGTERM, then closes the listener and every connection,
 * stops its loops and exits 0 with every buffer released.
 *
 * The pipeline of each connection: the server codec (requests in,
 * responses out, keep-alive, pipelining, limits), the aggregator (one FULL
 * request per request, 1 MiB at most), the routes (handler.c). With
 * --workers 1 (the default) one loop on the main thread does everything,
 * as nginx's single worker does; with N, a group of N loops accepts and
 * serves. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "hello.h"
#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/channel.h"
#include "rill/clock.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/http.h"
#include "rill/loop.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"

struct app {
    struct hello_config cfg;
    const char *host;
    struct rill_loop *loop; /* --workers 1 */
    struct rill_server *srv;
    int sfd; /* signalfd for SIGINT and SIGTERM (--workers 1) */
    int sig;
    struct rill_io sig_io;
};

static int child_init(struct rill_channel *ch, void *arg)
{
    struct app *a = arg;
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    int err = rill_pipeline_add_last(pl, "http", &rill_http_server_codec, NULL);
    if (!err)
        err = rill_pipeline_add_last(pl, "aggregator", &rill_http_aggregator, NULL);
    if (!err)
        err = rill_pipeline_add_last(pl, "hello", &hello_handler, &a->cfg);
    return err;
}

static void print_listening(struct app *a)
{
    int port = rill_addr_port(rill_server_local_addr(a->srv));
    bool v6 = strchr(a->host, ':') != NULL;
    printf("http_hello: listening on http://%s%s%s:%d\n", v6 ? "[" : "", a->host, v6 ? "]" : "",
           port);
    fflush(stdout);
}

/* ---- one loop on the main thread ---- */

static void server_closed(struct rill_promise *p, void *arg)
{
    struct app *a = arg;
    (void)p;
    rill_loop_shutdown(a->loop, 0, 0);
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
        fprintf(stderr, "http_hello: %s\n", rill_strerror(err));
        rill_loop_shutdown(a->loop, 0, 0);
        return;
    }
    print_listening(a);
}

static int run_one_loop(struct app *a, const struct rill_server_opts *base, const char *uri,
                        const sigset_t *stop)
{
    a->sfd = signalfd(-1, stop, SFD_NONBLOCK | SFD_CLOEXEC);
    struct rill_loop_opts lo;
    rill_loop_opts_init(&lo);
    lo.name = "http";
    int err = a->sfd < 0 ? -errno : rill_loop_new(&lo, &a->loop);
    if (err) {
        fprintf(stderr, "http_hello: %s\n", rill_strerror(err));
        return 1;
    }
    struct rill_server_opts so = *base;
    so.boss_loop = a->loop;
    err = rill_server_bind(&so, uri, &a->srv);
    if (err) {
        fprintf(stderr, "http_hello: %s: %s\n", uri, rill_strerror(err));
        rill_loop_free(a->loop);
        close(a->sfd);
        return 1;
    }
    rill_promise_add_listener(rill_server_bound(a->srv), bound, a);
    rill_loop_execute(a->loop, watch_signals, a);
    rill_loop_run(a->loop);
    rill_server_free(a->srv);
    rill_loop_free(a->loop);
    close(a->sfd);
    return a->sig ? 0 : 1;
}

/* ---- a group of loops ---- */

static int run_group(struct app *a, const struct rill_server_opts *base, const char *uri,
                     int workers, const sigset_t *stop)
{
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = workers;
    go.name = "http";
    struct rill_loop_group *group;
    int err = rill_loop_group_new(&go, &group);
    if (err) {
        fprintf(stderr, "http_hello: loop group: %s\n", rill_strerror(err));
        return 1;
    }
    struct rill_server_opts so = *base;
    so.boss = group;
    so.workers = group;
    err = rill_server_bind(&so, uri, &a->srv);
    if (!err)
        err = rill_promise_wait(rill_server_bound(a->srv), 10 * (int64_t)RILL_NS_PER_S);
    if (err) {
        fprintf(stderr, "http_hello: %s: %s\n", uri, rill_strerror(err));
        if (a->srv)
            rill_server_free(a->srv);
        rill_loop_group_free(group);
        return 1;
    }
    print_listening(a);
    sigwait(stop, &a->sig);
    rill_promise_wait(rill_server_close(a->srv, true), 10 * (int64_t)RILL_NS_PER_S);
    rill_server_free(a->srv);
    rill_promise_wait(rill_loop_group_shutdown(group, 0, 5 * RILL_NS_PER_S), -1);
    rill_loop_group_free(group);
    return 0;
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--host 127.0.0.1] [--port 8080] [--workers N] [--root DIR]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv)
{
    struct app a = { .cfg = { .root_fd = -1 }, .host = "127.0.0.1" };
    int port = 8080, workers = 1;
    const char *root = NULL;
    for (int i = 1; i < argc; i += 2) {
        const char *opt = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage(argv[0]);
        if (strcmp(opt, "--host") == 0)
            a.host = v;
        else if (strcmp(opt, "--port") == 0)
            port = atoi(v);
        else if (strcmp(opt, "--workers") == 0)
            workers = atoi(v);
        else if (strcmp(opt, "--root") == 0)
            root = v;
        else
            usage(argv[0]);
    }
    if (port < 0 || port > 65535 || workers < 1)
        usage(argv[0]);
    if (root) {
        a.cfg.root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (a.cfg.root_fd < 0) {
            fprintf(stderr, "http_hello: %s: %s\n", root, strerror(errno));
            return 1;
        }
    }

    /* Signals are read by this thread only: block them before any loop
     * thread starts (they inherit the mask). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.child_init = child_init;
    so.child_arg = &a;
    char uri[300];
    bool v6 = strchr(a.host, ':') != NULL;
    snprintf(uri, sizeof(uri), "tcp://%s%s%s:%d", v6 ? "[" : "", a.host, v6 ? "]" : "", port);
    int rc =
        workers == 1 ? run_one_loop(&a, &so, uri, &stop) : run_group(&a, &so, uri, workers, &stop);
    if (a.cfg.root_fd >= 0)
        close(a.cfg.root_fd);
    return rc;
}
