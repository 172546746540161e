/* Private to the epoll transport and the bootstraps that create its
 * channels: TCP (IPv4, IPv6) and Unix stream sockets on the loop's epoll.
 *
 * Two channel kinds share this header: stream channels (epoll_channel.c:
 * connected sockets, accepted or connecting) and server channels
 * (epoll_server.c: listening sockets that accept children onto the loops
 * their acceptor picks).
 *
 * Creation is "Thread: any" (the socket is made at once, so options apply
 * to a live fd and bind errors are synchronous); everything after
 * registration runs on the channel's loop. */
#ifndef RILL_EPOLL_INTERNAL_H
#define RILL_EPOLL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel/channel_internal.h"
#include "rill/addr.h"
#include "rill/loop.h"

struct rill_timer;

/* A connected (or connecting) stream socket. */
struct rill_epoll_channel {
    struct rill_channel base; /* first: the core's part */
    struct rill_io io;
    int fd;
    int family;
    bool edge;        /* EPOLLET mode, fixed when the watcher starts */
    bool armed;       /* the watcher is started */
    bool connecting;  /* a non-blocking connect is in progress */
    bool connected;   /* the socket is connected (accepted, or connect done) */
    bool in_ready;    /* input may be waiting (an event came, no read drained it) */
    bool rdhup;       /* the peer's FIN was seen: read to EOF regardless of sizes */
    bool input_done;  /* read EOF: input shut down (mirrors the core's flag) */
    bool want_read;   /* reading requested (auto-read, or one begin_read) */
    bool in_read;     /* inside a read batch */
    bool out_wait;    /* the kernel was full: waiting for EPOLLOUT */
    bool closed;      /* ops->close ran */
    bool read_queued; /* read_task posted */
    bool hup_parked;  /* level mode: unwatched after a hang-up while reads were off */
    struct rill_task read_task;
    struct rill_addr local, remote;
};

/* A listening socket. */
struct rill_epoll_server {
    struct rill_channel base; /* first: the core's part */
    struct rill_io io;
    int fd;
    int family;
    int reserve_fd; /* the spare descriptor for the EMFILE trick, or -1 */
    bool listening; /* bind + listen done */
    bool armed;
    bool want_read;
    bool paused;         /* out of descriptors: accepting waits for the timer */
    bool closed;         /* ops->close ran */
    bool unlink_path;    /* remove the Unix socket file on close */
    unsigned backoff_ms; /* the current pause; doubles while the shortage lasts */
    struct rill_timer *resume_timer;
    _Atomic uint64_t accepted, shed; /* read by other threads (statistics) */
    struct rill_addr local;
};

/* Thread: any. A stream channel for @family (AF_INET, AF_INET6, AF_UNIX)
 * on @loop with a new non-blocking socket, to be connected. Returns 0 and
 * the channel (one reference: the caller's) in *out, or -errno. */
int rill__epoll_channel_new(struct rill_loop *loop, int family, struct rill_channel **out);

/* Thread: the server's loop. Wrap an accepted socket @fd (takes it over,
 * even on failure) from @server as a connected, active channel on @loop.
 * @peer is its address (from accept), @local the listener's (NULL: ask the
 * socket). Returns 0 and the channel (the creator's reference) or -errno. */
int rill__epoll_channel_accepted(struct rill_channel *server, struct rill_loop *loop, int fd,
                                 const struct rill_addr *peer, const struct rill_addr *local,
                                 struct rill_channel **out);

/* Thread: any. A server channel for @family on @loop with a new socket.
 * Returns 0 and the channel (the caller's reference) in *out, or -errno. */
int rill__epoll_server_new(struct rill_loop *loop, int family, struct rill_channel **out);

/* Thread: any, before registration. Apply the stored socket options, bind
 * @server to @addr and listen with its backlog, at once, so errors
 * (EADDRINUSE, EACCES) and the real port are known before any loop runs.
 * The bind operation that later reaches the transport (through the
 * pipeline) then only starts accepting. Returns 0 or -errno. */
int rill__epoll_server_listen(struct rill_channel *server, const struct rill_addr *addr);

/* Connections accepted and shed (EMFILE trick) by @server so far
 * (loop thread; racy elsewhere). */
uint64_t rill__epoll_server_accepted(const struct rill_channel *server);
uint64_t rill__epoll_server_shed(const struct rill_channel *server);

/* True when @ch is an epoll stream or server channel. */
bool rill__epoll_is_stream(const struct rill_channel *ch);
bool rill__epoll_is_server(const struct rill_channel *ch);

/* The socket family an address maps to for this transport: AF_INET,
 * AF_INET6 or AF_UNIX; -EAFNOSUPPORT for other schemes. */
int rill__epoll_family(const struct rill_addr *addr);

#endif /* RILL_EPOLL_INTERNAL_H */
