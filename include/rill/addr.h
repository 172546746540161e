/* Addresses as URIs, which also pick the transport:
 *   tcp://host:port      IPv4 or IPv6 ("tcp://[::1]:8080"; host names are
 *                        resolved; an empty host or "*" is the IPv4
 *                        wildcard, "tcp://[::]:8080" the IPv6 one)
 *   unix:///path         Unix stream socket at /path ("unix://rel/path" is a
 *                        relative path, "unix://@name" the abstract namespace)
 *   rdma://host:port     RDMA RC queue pairs (rdma_cm)
 *   rdma+tcp://host:port RDMA, falling back to TCP when RDMA is unavailable
 *   local://name         in-process transport
 *
 * A struct rill_addr is a plain value: copy it freely, no cleanup.
 * Every function here: Thread: any. */
#ifndef RILL_ADDR_H
#define RILL_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum rill_addr_scheme {
    RILL_ADDR_TCP = 1,
    RILL_ADDR_UNIX = 2,
    RILL_ADDR_RDMA = 3,
    RILL_ADDR_RDMA_TCP = 4,
    RILL_ADDR_LOCAL = 5,
};

#define RILL_ADDR_NAME_MAX 108

/* Longest URI rill_addr_format() writes (with its NUL), for stack buffers. */
#define RILL_ADDR_STRLEN 128

struct rill_addr {
    enum rill_addr_scheme scheme;
    socklen_t len;                 /* of sa (TCP, UNIX, RDMA) */
    struct sockaddr_storage sa;    /* the socket address */
    char name[RILL_ADDR_NAME_MAX]; /* local:// name */
};

/* Parse @uri into @out. Host names are resolved with getaddrinfo (the first
 * address it returns wins), which may block: resolve once, reuse the
 * address. Numeric hosts never block. Returns 0, -EINVAL (malformed: no
 * "://", bad port, empty path or name, with the reason logged at debug
 * level), -ENAMETOOLONG (a Unix path or local name too long for the socket
 * address), -EAFNOSUPPORT (unknown scheme) or -EHOSTUNREACH (the name does
 * not resolve). */
int rill_addr_parse(const char *uri, struct rill_addr *out);

/* Build an address from a socket address: scheme TCP for AF_INET/AF_INET6,
 * UNIX for AF_UNIX. Returns 0, -EAFNOSUPPORT (other families) or -EINVAL
 * (@len too short or too long for the family). */
int rill_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct rill_addr *out);

/* Write the URI form of @a into @buf (always NUL-terminated when @size > 0):
 * "tcp://127.0.0.1:80", "tcp://[::1]:80", "unix:///tmp/s", "unix://@name",
 * "unix://" for an unnamed Unix socket. Returns the length it needed, as
 * snprintf. */
int rill_addr_format(const struct rill_addr *a, char *buf, size_t size);

/* The port of a TCP/RDMA address, or 0. */
int rill_addr_port(const struct rill_addr *a);

/* Set the port of a TCP/RDMA address. Returns 0, -EINVAL (not an IP
 * address, or a port outside 0..65535). */
int rill_addr_set_port(struct rill_addr *a, int port);

/* The socket family of @a (AF_INET, AF_INET6, AF_UNIX), or AF_UNSPEC for
 * local:// addresses. */
int rill_addr_family(const struct rill_addr *a);

/* True when @a and @b name the same endpoint (scheme, family, address,
 * port, path). */
bool rill_addr_equal(const struct rill_addr *a, const struct rill_addr *b);

#endif /* RILL_ADDR_H */
