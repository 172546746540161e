/* Private to the epoll transport: socket system calls with rill's error
 * convention (0 or -errno), non-blocking and close-on-exec everywhere. */
#ifndef RILL_EPOLL_SOCK_H
#define RILL_EPOLL_SOCK_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rill/channel.h"

struct rill_addr;

/* A non-blocking, close-on-exec stream socket of @family. Returns the fd
 * or -errno. */
int rill__sock_open(int family);

/* setsockopt of an int. Returns 0 or -errno. */
int rill__sock_set_int(int fd, int level, int name, int value);
int rill__sock_get_int(int fd, int level, int name, int *value);

/* Apply a channel option that maps to a socket option on @fd (of @family).
 * Options without a socket counterpart return 0 and do nothing; socket
 * options that do not apply to the family (TCP_NODELAY on a Unix socket)
 * are skipped too. Returns 0 or -errno. */
int rill__sock_apply_option(int fd, int family, enum rill_option opt, int64_t value);
/* Read a socket option back; -ENOPROTOOPT when @opt is not a socket option. */
int rill__sock_read_option(int fd, int family, enum rill_option opt, int64_t *value);

/* The pending error of @fd (SO_ERROR) as 0 or -errno. */
int rill__sock_error(int fd);

/* Local and peer addresses of @fd. Return 0 or -errno. */
int rill__sock_local_addr(int fd, struct rill_addr *out);
int rill__sock_peer_addr(int fd, struct rill_addr *out);

/* Bind @fd to @addr and listen with @backlog. A Unix path that exists and
 * is a socket nobody listens on (left by a dead process) is removed first;
 * anything else there gives -EADDRINUSE. Returns 0 or -errno. */
int rill__sock_listen(int fd, const struct rill_addr *addr, int backlog);

/* Start a non-blocking connect: 0 when already connected (Unix sockets
 * often are), -EINPROGRESS while it runs, or -errno. */
int rill__sock_connect(int fd, const struct rill_addr *addr);

/* accept4 one connection (non-blocking, close-on-exec). Returns the fd, or
 * -EAGAIN when none is pending, or another -errno. EINTR and the errors
 * that concern only the connection being accepted (ECONNABORTED, EPROTO,
 * the network errors accept(2) lists) are retried inside. */
int rill__sock_accept(int lfd, struct sockaddr_storage *ss, socklen_t *len);

/* True for accept errors that mean "out of file descriptors or memory":
 * the listener must back off instead of retrying at once. */
static inline bool rill__sock_accept_exhausted(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* The reserved descriptor of the EMFILE trick (libev, libuv, Netty users):
 * an fd on /dev/null kept open so that, when accept fails for want of
 * descriptors, closing it frees exactly one slot. Returns the fd or -errno. */
int rill__sock_reserve_fd(void);

/* Shed connections waiting in @lfd's backlog while the process is out of
 * descriptors: close the reserved fd *@reserve, accept one connection and
 * close it at once (the client sees its connection closed instead of
 * hanging), repeated at most @max times or until none is waiting; then
 * reopen the reserve. Returns the number of connections shed. */
int rill__sock_shed(int lfd, int *reserve, int max);

#endif /* RILL_EPOLL_SOCK_H */
