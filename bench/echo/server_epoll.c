/* Hand-written epoll echo server: the limit the other servers are measured
 * against. One thread, one epoll instance, non-blocking sockets, TCP_NODELAY.
 *
 *   echo_server_epoll <port> <raw|framed> [--trigger=edge|level] [--corrupt=N]
 *
 * Buffers come from a LIFO free list shared by all connections: a connection
 * takes one when it has something to read and gives it back as soon as it
 * holds no data, so a few hot buffers serve every connection (a buffer per
 * connection was measured slower: 8 x 64 KiB echo spent a quarter more CPU per
 * request, copying into cold memory). A read appends to the connection's
 * buffer; the complete part (raw: everything, framed: the whole frames at its
 * front) is written straight back with one write() per read, so a read that
 * brings 16 frames costs one write. What the socket does not take stays in
 * the buffer as pending output: the connection stops reading and waits for
 * EPOLLOUT, so a client that does not read costs one buffer, never more. An
 * incomplete frame left at the end moves to the front (memmove of the tail
 * only) and the buffer stays with the connection. Nothing is allocated per
 * message: buffers are made only while the free list is empty, and a frame
 * larger than a buffer gets a larger one of its own.
 *
 * --trigger: edge (default) registers EPOLLIN|EPOLLOUT|EPOLLET once and never
 * calls epoll_ctl again; level registers EPOLLIN and switches to EPOLLOUT
 * while output is pending. Both were measured (README.md); edge was not slower.
 * A read shorter than asked means the socket is drained, so neither mode
 * issues a read that would only return EAGAIN.
 *
 * --corrupt=N flips one byte in every Nth write: a broken server for testing
 * that the load generator notices (selftest.sh). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "echo_common.h"

#define MAX_EVENTS 256

/* Where a buffer's data starts inside its page-aligned block. Reads into
 * data at or just after a page start were measured 1.5x more expensive in
 * server CPU for 64 KiB messages (the kernel's copy to user space runs into
 * 4K aliasing with the socket's page-aligned source); half a page in, they
 * are not. The header sits in the otherwise unused first bytes. */
#define BLOCK_DATA_OFFSET 2048

struct block {
    struct block *next; /* on the free list */
    size_t cap;         /* bytes of data */
};

static inline uint8_t *block_data(struct block *b)
{
    return (uint8_t *)b + BLOCK_DATA_OFFSET;
}

struct conn {
    int fd;
    bool read_ready;  /* edge mode: the socket may hold more input */
    bool writing;     /* data[wpos..wend) is pending output; reading paused */
    struct block *in; /* NULL while the connection holds no data */
    size_t have, wpos, wend;
    struct conn *prev, *next;
};

struct server {
    int ep, lfd, sfd;
    bool edge, stop;
    enum echo_mode mode;
    size_t block_size;
    struct block *free_blocks;
    unsigned long corrupt_every, writes;
    unsigned long accepted, blocks_made;
    struct conn *conns; /* all open connections, for the clean exit */
};

static void die(const char *what)
{
    fprintf(stderr, "echo_server_epoll: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct block *block_get(struct server *s, size_t cap)
{
    struct block *b = s->free_blocks;

    if (b && cap <= s->block_size) {
        s->free_blocks = b->next;
        return b;
    }
    if (cap < s->block_size)
        cap = s->block_size;
    if (posix_memalign((void **)&b, 4096, BLOCK_DATA_OFFSET + cap) != 0)
        return NULL;
    b->cap = cap;
    s->blocks_made++;
    return b;
}

static void block_put(struct server *s, struct block *b)
{
    if (b->cap != s->block_size) { /* one made for a large frame */
        free(b);
        return;
    }
    b->next = s->free_blocks;
    s->free_blocks = b;
}

static void conn_close(struct server *s, struct conn *c)
{
    close(c->fd);
    if (c->in)
        block_put(s, c->in);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void set_out_interest(struct server *s, struct conn *c, bool out)
{
    struct epoll_event ev = { .events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c };

    if (!s->edge && epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl(MOD)");
}

/* Writes data[wpos..wend). Returns 0 when all is written (the sent bytes
 * leave the buffer; an empty buffer goes back to the free list), 1 when output
 * is still pending, -1 when the connection died. */
static int conn_flush(struct server *s, struct conn *c)
{
    uint8_t *d = block_data(c->in);

    while (c->wpos < c->wend) {
        ssize_t n = write(c->fd, d + c->wpos, c->wend - c->wpos);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->writing) {
                    c->writing = true;
                    set_out_interest(s, c, true);
                }
                return 1;
            }
            return -1;
        }
        c->wpos += (size_t)n;
    }
    if (c->have > c->wend)
        memmove(d, d + c->wend, c->have - c->wend);
    c->have -= c->wend;
    c->wpos = c->wend = 0;
    if (c->have == 0) {
        block_put(s, c->in);
        c->in = NULL;
    }
    if (c->writing) {
        c->writing = false;
        set_out_interest(s, c, false);
    }
    return 0;
}

/* One read and the write it triggers. Returns 1 to read again, 0 when the
 * socket is drained or output is pending, -1 when the connection is done. */
static int conn_read_once(struct server *s, struct conn *c)
{
    size_t room, k, need = 0;
    ssize_t n;

    if (!c->in && !(c->in = block_get(s, s->block_size)))
        return -1;
    room = c->in->cap - c->have;
    if (room > ECHO_READ_MAX)
        room = ECHO_READ_MAX;
    n = read(c->fd, block_data(c->in) + c->have, room);
    if (n <= 0) {
        if (n < 0 && errno == EINTR)
            return 1;
        if (n < 0 && errno == EAGAIN) {
            c->read_ready = false;
            n = 0;
        } else {
            return -1; /* EOF or error */
        }
    }
    c->have += (size_t)n;
    if ((size_t)n < room)
        c->read_ready = false; /* short read: drained; the next arrival is a new edge */
    if (c->have == 0) {
        block_put(s, c->in);
        c->in = NULL;
        return 0;
    }

    k = s->mode == ECHO_RAW ? c->have : echo_frames_len(block_data(c->in), c->have, &need);
    if (need == (size_t)-1)
        return -1;
    if (need > c->in->cap) { /* a frame larger than the buffer */
        struct block *b = block_get(s, need + ECHO_READ_MAX);
        if (!b)
            return -1;
        memcpy(block_data(b), block_data(c->in), c->have);
        block_put(s, c->in);
        c->in = b;
    }
    if (k == 0)
        return c->read_ready;
    if (s->corrupt_every && ++s->writes % s->corrupt_every == 0)
        block_data(c->in)[k - 1] ^= 0x5a;
    c->wpos = 0;
    c->wend = k;
    switch (conn_flush(s, c)) {
    case 0:
        return c->read_ready;
    case 1:
        return 0;
    default:
        return -1;
    }
}

static void conn_event(struct server *s, struct conn *c, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP)) {
        conn_close(s, c);
        return;
    }
    if (events & EPOLLIN)
        c->read_ready = true; /* even while writing: in edge mode this edge comes once */
    if (c->writing) {
        if (!(events & EPOLLOUT))
            return;
        int r = conn_flush(s, c);
        if (r < 0) {
            conn_close(s, c);
            return;
        }
        if (r > 0)
            return;
    }
    if (!s->edge) {
        /* level: one read per wake-up; epoll reports the rest */
        if (c->read_ready && !c->writing && conn_read_once(s, c) < 0)
            conn_close(s, c);
        return;
    }
    while (c->read_ready && !c->writing) {
        int r = conn_read_once(s, c);
        if (r < 0) {
            conn_close(s, c);
            return;
        }
        if (r == 0)
            break;
    }
}

static void accept_all(struct server *s)
{
    for (;;) {
        int one = 1, fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN)
                return;
            fprintf(stderr, "echo_server_epoll: accept: %s\n", strerror(errno));
            return; /* EMFILE and friends: try again on the next event */
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = { .data.ptr = c };
        ev.events = s->edge ? EPOLLIN | EPOLLOUT | EPOLLET : EPOLLIN;
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl(ADD)");
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->accepted++;
    }
}

int main(int argc, char **argv)
{
    struct server s = { .edge = true };
    struct echo_args a;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t slen = sizeof(sin);
    struct epoll_event ev, evs[MAX_EVENTS];
    sigset_t mask;
    int one = 1;

    for (int i = echo_parse_args(argc, argv, &a, "[--trigger=edge|level] [--corrupt=N]"); i < argc;
         i++) {
        if (strcmp(argv[i], "--trigger=edge") == 0) {
            s.edge = true;
        } else if (strcmp(argv[i], "--trigger=level") == 0) {
            s.edge = false;
        } else if (strncmp(argv[i], "--corrupt=", 10) == 0) {
            s.corrupt_every = strtoul(argv[i] + 10, NULL, 10);
        } else {
            fprintf(stderr, "echo_server_epoll: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    s.mode = a.mode;
    /* framed: room for an incomplete 64 KiB frame plus one full read */
    s.block_size = s.mode == ECHO_RAW ? ECHO_READ_MAX : 2 * ECHO_READ_MAX + 4096;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        die("sigprocmask");
    if ((s.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        die("signalfd");

    s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.lfd < 0)
        die("socket");
    setsockopt(s.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sin.sin_port = htons((uint16_t)a.port);
    if (bind(s.lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        die("bind");
    if (listen(s.lfd, ECHO_BACKLOG) < 0)
        die("listen");
    if (getsockname(s.lfd, (struct sockaddr *)&sin, &slen) < 0)
        die("getsockname");

    if ((s.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");
    ev.events = EPOLLIN;
    ev.data.ptr = &s.lfd;
    if (epoll_ctl(s.ep, EPOLL_CTL_ADD, s.lfd, &ev) < 0)
        die("epoll_ctl(listen)");
    ev.data.ptr = &s.sfd;
    if (epoll_ctl(s.ep, EPOLL_CTL_ADD, s.sfd, &ev) < 0)
        die("epoll_ctl(signalfd)");
    echo_ready(ntohs(sin.sin_port), a.mode);

    while (!s.stop) {
        int n = epoll_wait(s.ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &s.lfd)
                accept_all(&s);
            else if (p == &s.sfd)
                s.stop = true;
            else
                conn_event(&s, p, evs[i].events);
        }
    }
    while (s.conns)
        conn_close(&s, s.conns);
    while (s.free_blocks) {
        struct block *b = s.free_blocks;
        s.free_blocks = b->next;
        free(b);
    }
    close(s.lfd);
    close(s.sfd);
    close(s.ep);
    fprintf(stderr, "echo_server_epoll: %lu connections accepted, %lu buffers made, exiting\n",
            s.accepted, s.blocks_made);
    return 0;
}
