/* libevent 2.1 echo server, written the way the libevent book teaches it:
 * an evconnlistener accepts, each connection is a socket bufferevent, and the
 * read callback moves input to output.
 *
 *   echo_server_libevent <port> <raw|framed>
 *
 * raw:    evbuffer_add_buffer(output, input) moves the chains without copying.
 * framed: while the input holds a whole frame (4-byte big-endian length +
 *         payload), evbuffer_remove_buffer() moves that frame to the output.
 *         All the frames of one read land in the output before libevent
 *         writes it, so writes are batched per read as in the other servers.
 * One event_base (epoll backend), one thread; TCP_NODELAY on every
 * connection. libevent 2.1 reads at most 4096 bytes per read() (its
 * EVBUFFER_MAX_READ; raised in 2.2) and allocates evbuffer chains as data
 * arrives: both are how a libevent user runs, so they stay. Back-pressure:
 * a high read watermark is not needed here because the output is drained as
 * fast as the client reads; bufferevents keep buffering otherwise (as
 * libevent users usually accept). SIGINT/SIGTERM leave the loop cleanly. */
#define _GNU_SOURCE
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include "echo_common.h"

struct conn {
    struct bufferevent *bev;
    struct conn *prev, *next;
};

static struct conn *conns;
static enum echo_mode mode;
static unsigned long accepted;

static void conn_free(struct conn *c)
{
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE closes the socket */
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(bev);
    uint8_t hdr[4];

    if (mode == ECHO_RAW) {
        evbuffer_add_buffer(out, in);
        return;
    }
    for (;;) {
        size_t have = evbuffer_get_length(in);
        if (have < 4 || evbuffer_copyout(in, hdr, 4) != 4)
            return;
        uint32_t n = echo_be32(hdr);
        if (n > ECHO_FRAME_MAX) {
            conn_free(arg);
            return;
        }
        if (have - 4 < n)
            return;
        evbuffer_remove_buffer(in, out, 4 + (size_t)n);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct event_base *base = arg;
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!c || !(c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        free(c);
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    accepted++;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    struct echo_args a;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t slen = sizeof(sin);
    struct event_base *base;
    struct evconnlistener *l;
    struct event *sigint, *sigterm;

    if (echo_parse_args(argc, argv, &a, NULL) != argc) {
        fprintf(stderr, "echo_server_libevent: no options after the mode\n");
        return 2;
    }
    mode = a.mode;
    signal(SIGPIPE, SIG_IGN);
    if (!(base = event_base_new())) {
        fprintf(stderr, "echo_server_libevent: event_base_new failed\n");
        return 1;
    }
    sin.sin_port = htons((uint16_t)a.port);
    l = evconnlistener_new_bind(base, accept_cb, base,
                                LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                ECHO_BACKLOG, (struct sockaddr *)&sin, sizeof(sin));
    if (!l) {
        fprintf(stderr, "echo_server_libevent: listen on port %d: %s\n", a.port, strerror(errno));
        return 1;
    }
    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen) < 0) {
        perror("echo_server_libevent: getsockname");
        return 1;
    }
    sigint = evsignal_new(base, SIGINT, signal_cb, base);
    sigterm = evsignal_new(base, SIGTERM, signal_cb, base);
    evsignal_add(sigint, NULL);
    evsignal_add(sigterm, NULL);
    fprintf(stderr, "echo_server_libevent: libevent %s, backend %s\n", event_get_version(),
            event_base_get_method(base));
    echo_ready(ntohs(sin.sin_port), a.mode);

    event_base_dispatch(base);

    while (conns)
        conn_free(conns);
    evconnlistener_free(l);
    event_free(sigint);
    event_free(sigterm);
    event_base_free(base);
    fprintf(stderr, "echo_server_libevent: %lu connections accepted, exiting\n", accepted);
    return 0;
}
