/* Tests for URI addresses (include/rill/addr.h): every scheme, numeric and
 * resolved hosts, wildcards, Unix paths and abstract names, malformed input,
 * formatting round trips, ports and comparison. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "rill/addr.h"
#include "util/testutil.h"

TestSuite(addr, .timeout = 60, .fini = rill_test_no_leaks);

static void roundtrip(const char *uri, const char *expect)
{
    struct rill_addr a;
    char buf[RILL_ADDR_STRLEN];
    cr_assert_eq(rill_addr_parse(uri, &a), 0, "parse %s", uri);
    int n = rill_addr_format(&a, buf, sizeof(buf));
    cr_assert_str_eq(buf, expect ? expect : uri);
    cr_assert_eq(n, (int)strlen(buf));
}

Test(addr, tcp_ipv4)
{
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse("tcp://127.0.0.1:8080", &a), 0);
    cr_assert_eq(a.scheme, RILL_ADDR_TCP);
    cr_assert_eq(rill_addr_family(&a), AF_INET);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in));
    const struct sockaddr_in *sin = (const void *)&a.sa;
    cr_assert_eq(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    cr_assert_eq(rill_addr_port(&a), 8080);
    roundtrip("tcp://127.0.0.1:8080", NULL);
    roundtrip("tcp://10.1.2.3:0", NULL);
}

Test(addr, tcp_ipv6)
{
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse("tcp://[::1]:443", &a), 0);
    cr_assert_eq(rill_addr_family(&a), AF_INET6);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
    cr_assert_eq(rill_addr_port(&a), 443);
    const struct sockaddr_in6 *sin6 = (const void *)&a.sa;
    cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    roundtrip("tcp://[::1]:443", NULL);
    roundtrip("tcp://[::]:80", NULL);
    roundtrip("tcp://[2001:db8::5]:65535", NULL);
}

Test(addr, tcp_wildcards)
{
    roundtrip("tcp://:9000", "tcp://0.0.0.0:9000");
    roundtrip("tcp://*:9000", "tcp://0.0.0.0:9000");
}

Test(addr, tcp_resolves_names)
{
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse("tcp://localhost:7000", &a), 0);
    cr_assert(rill_addr_family(&a) == AF_INET || rill_addr_family(&a) == AF_INET6);
    cr_assert_eq(rill_addr_port(&a), 7000);
    cr_assert_eq(rill_addr_parse("tcp://no-such-host.invalid:1", &a), -EHOSTUNREACH);
}

Test(addr, rdma_schemes)
{
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse("rdma://192.168.1.2:4791", &a), 0);
    cr_assert_eq(a.scheme, RILL_ADDR_RDMA);
    cr_assert_eq(rill_addr_port(&a), 4791);
    cr_assert_eq(rill_addr_parse("rdma+tcp://[::1]:7", &a), 0);
    cr_assert_eq(a.scheme, RILL_ADDR_RDMA_TCP);
    roundtrip("rdma://192.168.1.2:4791", NULL);
    roundtrip("rdma+tcp://[::1]:7", NULL);
}

Test(addr, unix_paths)
{
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse("unix:///tmp/rill.sock", &a), 0);
    cr_assert_eq(a.scheme, RILL_ADDR_UNIX);
    cr_assert_eq(rill_addr_family(&a), AF_UNIX);
    const struct sockaddr_un *sun = (const void *)&a.sa;
    cr_assert_str_eq(sun->sun_path, "/tmp/rill.sock");
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/tmp/rill.sock") + 1);
    cr_assert_eq(rill_addr_port(&a), 0);
    roundtrip("unix:///tmp/rill.sock", NULL);
    roundtrip("unix://relative/sock", NULL);
}

Test(addr, unix_abstract)
{
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse("unix://@rill-test", &a), 0);
    const struct sockaddr_un *sun = (const void *)&a.sa;
    cr_assert_eq(sun->sun_path[0], '\0');
    cr_assert_eq(memcmp(sun->sun_path + 1, "rill-test", 9), 0);
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + 10);
    roundtrip("unix://@rill-test", NULL);
}

Test(addr, unix_too_long)
{
    char uri[300];
    struct rill_addr a;
    memset(uri, 'x', sizeof(uri));
    memcpy(uri, "unix:///", 8);
    uri[8 + 108] = '\0'; /* a 109-byte path: one byte too long with its NUL */
    cr_assert_eq(rill_addr_parse(uri, &a), -ENAMETOOLONG);
    uri[8 + 106] = '\0'; /* "/" + 106 = 107 bytes + NUL fits */
    cr_assert_eq(rill_addr_parse(uri, &a), 0);
}

Test(addr, local_names)
{
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse("local://svc", &a), 0);
    cr_assert_eq(a.scheme, RILL_ADDR_LOCAL);
    cr_assert_str_eq(a.name, "svc");
    cr_assert_eq(rill_addr_family(&a), AF_UNSPEC);
    roundtrip("local://svc", NULL);
}

Test(addr, malformed)
{
    struct rill_addr a;
    const char *bad[] = {
        "127.0.0.1:80",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:-1",
        "tcp://127.0.0.1:8x",
        "tcp://::1:80",
        "tcp://[::1]80",
        "tcp://[::1:80",
        "tcp://[zz::1]:80",
        "tcp://[]:80",
        "unix://",
        "local://",
        "tcp://1.2.3.4:80/path",
        "tcp://1.2.3.4:123456",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(rill_addr_parse(bad[i], &a), -EINVAL, "%s", bad[i]);
    cr_assert_eq(rill_addr_parse("udp://1.2.3.4:5", &a), -EAFNOSUPPORT);
    cr_assert_eq(rill_addr_parse(NULL, &a), -EINVAL);
}

Test(addr, from_sockaddr)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(99) };
    sin.sin_addr.s_addr = htonl(0x7f000001);
    struct rill_addr a, b;
    cr_assert_eq(rill_addr_from_sockaddr((struct sockaddr *)&sin, sizeof(sin), &a), 0);
    cr_assert_eq(a.scheme, RILL_ADDR_TCP);
    cr_assert_eq(rill_addr_parse("tcp://127.0.0.1:99", &b), 0);
    cr_assert(rill_addr_equal(&a, &b));

    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    cr_assert_eq(rill_addr_from_sockaddr((struct sockaddr *)&sun, sizeof(sa_family_t), &a), 0);
    char buf[RILL_ADDR_STRLEN];
    rill_addr_format(&a, buf, sizeof(buf));
    cr_assert_str_eq(buf, "unix://"); /* unnamed (a socketpair end, a client) */

    struct sockaddr sa = { .sa_family = AF_PACKET };
    cr_assert_eq(rill_addr_from_sockaddr(&sa, sizeof(sa), &a), -EAFNOSUPPORT);
    cr_assert_eq(rill_addr_from_sockaddr((struct sockaddr *)&sin, 4, &a), -EINVAL);
}

Test(addr, ports_and_equality)
{
    struct rill_addr a, b;
    cr_assert_eq(rill_addr_parse("tcp://[::1]:0", &a), 0);
    cr_assert_eq(rill_addr_set_port(&a, 5555), 0);
    cr_assert_eq(rill_addr_port(&a), 5555);
    cr_assert_eq(rill_addr_set_port(&a, 70000), -EINVAL);
    cr_assert_eq(rill_addr_parse("tcp://[::1]:5555", &b), 0);
    cr_assert(rill_addr_equal(&a, &b));
    cr_assert_eq(rill_addr_parse("tcp://[::1]:5556", &b), 0);
    cr_assert_not(rill_addr_equal(&a, &b));
    cr_assert_eq(rill_addr_parse("unix:///x", &b), 0);
    cr_assert_not(rill_addr_equal(&a, &b));
    cr_assert_eq(rill_addr_set_port(&b, 1), -EINVAL);
}

Test(addr, format_truncates)
{
    struct rill_addr a;
    char small[8];
    cr_assert_eq(rill_addr_parse("tcp://127.0.0.1:8080", &a), 0);
    int n = rill_addr_format(&a, small, sizeof(small));
    cr_assert_eq(n, (int)strlen("tcp://127.0.0.1:8080"));
    cr_assert_str_eq(small, "tcp://1");
}
