/* Socket helpers of the epoll transport: option mapping, listen, connect,
 * accept4 with the per-connection errors retried, and the reserved-fd trick
 * for running out of descriptors. */
#include "transport/epoll/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/log.h"

int rill__sock_open(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int rill__sock_set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

int rill__sock_get_int(int fd, int level, int name, int *value)
{
    socklen_t len = sizeof(*value);
    return getsockopt(fd, level, name, value, &len) < 0 ? -errno : 0;
}

static bool is_inet(int family)
{
    return family == AF_INET || family == AF_INET6;
}

/* The (level, name) of a socket option, or false. */
static bool map_option(int family, enum rill_option opt, int *level, int *name)
{
    switch (opt) {
    case RILL_OPT_TCP_NODELAY:
        *level = IPPROTO_TCP;
        *name = TCP_NODELAY;
        return is_inet(family);
    case RILL_OPT_SO_KEEPALIVE:
        *level = SOL_SOCKET;
        *name = SO_KEEPALIVE;
        return is_inet(family);
    case RILL_OPT_SO_RCVBUF:
        *level = SOL_SOCKET;
        *name = SO_RCVBUF;
        return true;
    case RILL_OPT_SO_SNDBUF:
        *level = SOL_SOCKET;
        *name = SO_SNDBUF;
        return true;
    case RILL_OPT_SO_REUSEADDR:
        *level = SOL_SOCKET;
        *name = SO_REUSEADDR;
        return is_inet(family);
    case RILL_OPT_SO_REUSEPORT:
        *level = SOL_SOCKET;
        *name = SO_REUSEPORT;
        return is_inet(family);
    default:
        return false;
    }
}

int rill__sock_apply_option(int fd, int family, enum rill_option opt, int64_t value)
{
    int level, name;
    if (!map_option(family, opt, &level, &name))
        return 0;
    if (value < 0 || value > INT32_MAX)
        return -EINVAL;
    return rill__sock_set_int(fd, level, name, (int)value);
}

int rill__sock_read_option(int fd, int family, enum rill_option opt, int64_t *value)
{
    int level, name, v;
    if (!map_option(family, opt, &level, &name))
        return -ENOPROTOOPT;
    int err = rill__sock_get_int(fd, level, name, &v);
    if (err)
        return err;
    *value = v;
    return 0;
}

int rill__sock_error(int fd)
{
    int soerr = 0;
    int err = rill__sock_get_int(fd, SOL_SOCKET, SO_ERROR, &soerr);
    return err ? err : -soerr;
}

int rill__sock_local_addr(int fd, struct rill_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    return rill_addr_from_sockaddr((struct sockaddr *)&ss, len, out);
}

int rill__sock_peer_addr(int fd, struct rill_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    return rill_addr_from_sockaddr((struct sockaddr *)&ss, len, out);
}

/* A Unix socket file nobody accepts on (its server died) is stale: connect
 * answers ECONNREFUSED. Remove it so bind can take the path. */
static void remove_stale_unix(const struct rill_addr *addr)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->sa;
    struct stat st;
    if (sun->sun_path[0] == '\0' || stat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return;
    if (connect(probe, (const struct sockaddr *)&addr->sa, addr->len) < 0 &&
        errno == ECONNREFUSED) {
        RILL_DEBUGF("removing stale Unix socket %s", sun->sun_path);
        unlink(sun->sun_path);
    }
    close(probe);
}

int rill__sock_listen(int fd, const struct rill_addr *addr, int backlog)
{
    if (addr->sa.ss_family == AF_UNIX)
        remove_stale_unix(addr);
    if (bind(fd, (const struct sockaddr *)&addr->sa, addr->len) < 0)
        return -errno;
    if (listen(fd, backlog) < 0)
        return -errno;
    return 0;
}

int rill__sock_connect(int fd, const struct rill_addr *addr)
{
    int rc;
    do
        rc = connect(fd, (const struct sockaddr *)&addr->sa, addr->len);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return 0;
    /* A Unix socket whose backlog is full answers EAGAIN: report it as
     * refused rather than as "try again" (there is no event to wait for). */
    if (errno == EAGAIN && addr->sa.ss_family == AF_UNIX)
        return -ECONNREFUSED;
    return -errno;
}

int rill__sock_accept(int lfd, struct sockaddr_storage *ss, socklen_t *len)
{
    for (;;) {
        socklen_t l = sizeof(*ss);
        int fd = accept4(lfd, (struct sockaddr *)ss, &l, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            *len = l;
            return fd;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM: /* firewall rules */
        /* accept(2): pending network errors of the new socket come out
         * of accept; they concern that connection only. */
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            continue;
        case EWOULDBLOCK:
            return -EAGAIN;
        default:
            return -errno;
        }
    }
}

int rill__sock_reserve_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int rill__sock_shed(int lfd, int *reserve, int max)
{
    int shed = 0;
    if (*reserve < 0)
        return 0;
    while (shed < max) {
        close(*reserve);
        *reserve = -1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int aerr = fd < 0 ? errno : 0;
        if (fd >= 0) {
            close(fd);
            shed++;
        }
        int r = rill__sock_reserve_fd();
        if (r < 0)
            break; /* another thread took the slot: no reserve until later */
        *reserve = r;
        if (fd < 0 && aerr != EINTR && aerr != ECONNABORTED)
            break;
    }
    return shed;
}
