/* URI addresses: parsing (numeric hosts without a resolver call, names
 * through getaddrinfo), formatting, comparison. */
#include "rill/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "rill/log.h"

static const struct {
    const char *prefix;
    enum rill_addr_scheme scheme;
} schemes[] = {
    { "tcp://", RILL_ADDR_TCP },           { "unix://", RILL_ADDR_UNIX },
    { "rdma+tcp://", RILL_ADDR_RDMA_TCP }, { "rdma://", RILL_ADDR_RDMA },
    { "local://", RILL_ADDR_LOCAL },
};

static const char *scheme_prefix(enum rill_addr_scheme s)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (schemes[i].scheme == s)
            return schemes[i].prefix;
    return "?://";
}

static int bad(const char *uri, const char *why)
{
    RILL_DEBUGF("address '%s': %s", uri, why);
    return -EINVAL;
}

/* Decimal port 0..65535, the whole of @s. */
static int parse_port(const char *s, int *port)
{
    if (*s == '\0' || strlen(s) > 5)
        return -EINVAL;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = (int)v;
    return 0;
}

/* host:port, host being "[v6]", an IPv4 literal, a name, "" or "*". */
static int parse_inet(const char *uri, const char *rest, struct rill_addr *out)
{
    char host[256];
    const char *colon;
    bool bracketed = rest[0] == '[';

    if (bracketed) {
        const char *close = strchr(rest, ']');
        if (!close)
            return bad(uri, "missing ']'");
        if (close[1] != ':')
            return bad(uri, "missing port");
        size_t n = (size_t)(close - rest - 1);
        if (n == 0 || n >= sizeof(host))
            return bad(uri, "bad IPv6 host");
        memcpy(host, rest + 1, n);
        host[n] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (!colon)
            return bad(uri, "missing port");
        size_t n = (size_t)(colon - rest);
        if (n >= sizeof(host))
            return bad(uri, "host too long");
        memcpy(host, rest, n);
        host[n] = '\0';
        if (strchr(host, ':'))
            return bad(uri, "IPv6 hosts go in brackets");
        if (strchr(host, '/'))
            return bad(uri, "unexpected '/' in host");
    }
    int port;
    if (parse_port(colon + 1, &port))
        return bad(uri, "bad port");

    memset(&out->sa, 0, sizeof(out->sa));
    if (!bracketed && (host[0] == '\0' || strcmp(host, "*") == 0)) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
        return 0;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (!bracketed && inet_pton(AF_INET, host, &a4) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
        sin->sin_family = AF_INET;
        sin->sin_addr = a4;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
        return 0;
    }
    if (bracketed) {
        /* "[fe80::1%eth0]": the scope goes through getaddrinfo below. */
        if (!strchr(host, '%')) {
            if (inet_pton(AF_INET6, host, &a6) != 1)
                return bad(uri, "bad IPv6 address");
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = a6;
            sin6->sin6_port = htons((uint16_t)port);
            out->len = sizeof(*sin6);
            return 0;
        }
    }

    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
    struct addrinfo *res = NULL;
    hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME) {
        /* AI_ADDRCONFIG hides loopback-only families on a host without
         * other interfaces: ask again without it. */
        hints.ai_flags = 0;
        rc = getaddrinfo(host, NULL, &hints, &res);
    }
    if (rc != 0 || !res) {
        RILL_DEBUGF("address '%s': cannot resolve '%s': %s", uri, host, gai_strerror(rc));
        if (rc == EAI_MEMORY)
            return -ENOMEM;
        return -EHOSTUNREACH;
    }
    if (res->ai_addrlen > sizeof(out->sa) ||
        (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
        freeaddrinfo(res);
        return -EHOSTUNREACH;
    }
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    if (out->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&out->sa)->sin6_port = htons((uint16_t)port);
    return 0;
}

static int parse_unix(const char *uri, const char *rest, struct rill_addr *out)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->sa;
    size_t n = strlen(rest);

    if (n == 0)
        return bad(uri, "empty path");
    memset(&out->sa, 0, sizeof(out->sa));
    sun->sun_family = AF_UNIX;
    if (rest[0] == '@') {
        /* Abstract: a leading NUL, then the name, no terminator counted. */
        if (n > sizeof(sun->sun_path))
            return -ENAMETOOLONG;
        sun->sun_path[0] = '\0';
        memcpy(sun->sun_path + 1, rest + 1, n - 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return 0;
    }
    if (n >= sizeof(sun->sun_path))
        return -ENAMETOOLONG;
    memcpy(sun->sun_path, rest, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int rill_addr_parse(const char *uri, struct rill_addr *out)
{
    if (!uri || !out)
        return -EINVAL;
    const char *sep = strstr(uri, "://");
    if (!sep)
        return bad(uri, "no scheme (expected scheme://...)");

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t plen = strlen(schemes[i].prefix);
        if (strncmp(uri, schemes[i].prefix, plen) != 0)
            continue;
        const char *rest = uri + plen;
        out->scheme = schemes[i].scheme;
        switch (out->scheme) {
        case RILL_ADDR_UNIX:
            return parse_unix(uri, rest, out);
        case RILL_ADDR_LOCAL: {
            size_t n = strlen(rest);
            if (n == 0)
                return bad(uri, "empty name");
            if (n >= sizeof(out->name))
                return -ENAMETOOLONG;
            memcpy(out->name, rest, n + 1);
            return 0;
        }
        default:
            return parse_inet(uri, rest, out);
        }
    }
    RILL_DEBUGF("address '%s': unknown scheme", uri);
    return -EAFNOSUPPORT;
}

int rill_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct rill_addr *out)
{
    if (!sa || !out || len < (socklen_t)sizeof(sa_family_t) || len > sizeof(out->sa))
        return -EINVAL;
    switch (sa->sa_family) {
    case AF_INET:
        if (len < (socklen_t)sizeof(struct sockaddr_in))
            return -EINVAL;
        len = sizeof(struct sockaddr_in);
        break;
    case AF_INET6:
        if (len < (socklen_t)sizeof(struct sockaddr_in6))
            return -EINVAL;
        len = sizeof(struct sockaddr_in6);
        break;
    case AF_UNIX:
        break;
    default:
        return -EAFNOSUPPORT;
    }
    memset(out, 0, sizeof(*out));
    out->scheme = sa->sa_family == AF_UNIX ? RILL_ADDR_UNIX : RILL_ADDR_TCP;
    memcpy(&out->sa, sa, len);
    out->len = len;
    return 0;
}

int rill_addr_format(const struct rill_addr *a, char *buf, size_t size)
{
    const char *prefix = scheme_prefix(a->scheme);

    if (a->scheme == RILL_ADDR_LOCAL)
        return snprintf(buf, size, "%s%s", prefix, a->name);

    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;
    char host[INET6_ADDRSTRLEN];
    switch (a->len ? sa->sa_family : AF_UNSPEC) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        return snprintf(buf, size, "%s%s:%u", prefix, host, ntohs(sin->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        return snprintf(buf, size, "%s[%s]:%u", prefix, host, ntohs(sin6->sin6_port));
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = a->len > off ? a->len - off : 0;
        if (n == 0)
            return snprintf(buf, size, "%s", prefix); /* unnamed */
        if (sun->sun_path[0] == '\0')                 /* abstract: exactly n - 1 name bytes */
            return snprintf(buf, size, "%s@%.*s", prefix, (int)(n - 1), sun->sun_path + 1);
        return snprintf(buf, size, "%s%.*s", prefix, (int)strnlen(sun->sun_path, n), sun->sun_path);
    }
    default:
        return snprintf(buf, size, "%s", prefix);
    }
}

int rill_addr_port(const struct rill_addr *a)
{
    if (a->scheme == RILL_ADDR_UNIX || a->scheme == RILL_ADDR_LOCAL || a->len == 0)
        return 0;
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    if (a->sa.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
    return 0;
}

int rill_addr_set_port(struct rill_addr *a, int port)
{
    if (port < 0 || port > 65535 || a->len == 0)
        return -EINVAL;
    if (a->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
    else if (a->sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons((uint16_t)port);
    else
        return -EINVAL;
    return 0;
}

int rill_addr_family(const struct rill_addr *a)
{
    if (a->scheme == RILL_ADDR_LOCAL || a->len == 0)
        return AF_UNSPEC;
    return a->sa.ss_family;
}

bool rill_addr_equal(const struct rill_addr *a, const struct rill_addr *b)
{
    if (a->scheme != b->scheme)
        return false;
    if (a->scheme == RILL_ADDR_LOCAL)
        return strcmp(a->name, b->name) == 0;
    if (a->len != b->len || a->sa.ss_family != b->sa.ss_family)
        return false;
    switch (a->sa.ss_family) {
    case AF_INET: {
        const struct sockaddr_in *x = (const void *)&a->sa, *y = (const void *)&b->sa;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *x = (const void *)&a->sa, *y = (const void *)&b->sa;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    default:
        return memcmp(&a->sa, &b->sa, a->len) == 0;
    }
}
