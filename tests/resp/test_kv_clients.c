/* examples/kv_server against real Redis clients: the built binary is
 * started with --port 0 --workers 2 (so keys live on two loops and
 * commands cross between them), driven with redis-cli for every command it
 * serves, with a raw socket for pipelining order and protocol errors, and
 * with a bounded redis-benchmark run. Each test stops its server with
 * SIGTERM and expects a clean exit: the server runs with the leak detector
 * in paranoid mode (inherited from ctest), so a leak fails the test. The
 * server dies with the test process (PR_SET_PDEATHSIG), and the fixture
 * kills it whatever happened, so no server outlives a test.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/proc.h"
#include "util/testutil.h"

static pid_t server_pid = -1;
static int server_port;

static void fini(void)
{
    rill_test_proc_kill(&server_pid);
    rill_test_no_leaks();
}

TestSuite(kv_clients, .timeout = 120, .fini = fini);

static bool have(const char *tool)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

static void start_server(void)
{
    if (!have("redis-cli") || !have("redis-benchmark"))
        cr_skip_test("redis-tools (redis-cli, redis-benchmark) are not installed");
    static const char *const argv[] = {
        RILL_EXAMPLES_DIR "/kv_server", "--port", "0", "--workers", "2", NULL
    };
    char line[256];
    server_pid = rill_test_proc_start(argv, line, sizeof(line));
    cr_assert_eq(sscanf(line, "kv_server: listening on 127.0.0.1:%d", &server_port), 1,
                 "the server prints its address, got \"%s\"", line);
    cr_assert_gt(server_port, 0);
}

static void stop_server(void)
{
    rill_test_proc_stop(&server_pid);
}

/* redis-cli with @args (shell words); its output. */
#define CLI(...) sh_cli(__VA_ARGS__)
static char *sh_cli(const char *args)
{
    return rill_test_sh(NULL, "timeout 10 redis-cli -p %d %s 2>&1", server_port, args);
}

/* redis-cli prints an error reply followed by an empty line. */
static void expect_cli(const char *args, const char *want)
{
    char *got = CLI(args);
    char w[512];
    bool error = strncmp(want, "ERR ", 4) == 0 || strncmp(want, "NOPROTO ", 8) == 0;
    snprintf(w, sizeof(w), "%s%s", want, error ? "\n" : "");
    cr_expect_str_eq(got, w, "redis-cli %s: got \"%s\", want \"%s\"", args, got, w);
    free(got);
}

/* Several commands on one connection (stdin of redis-cli). */
static void expect_session(const char *lines, const char *want, const char *flags)
{
    char *got = rill_test_sh(NULL, "printf '%s' | timeout 10 redis-cli %s -p %d 2>&1", lines, flags,
                             server_port);
    cr_expect_str_eq(got, want, "session %s: got \"%s\"", lines, got);
    free(got);
}

Test(kv_clients, strings_and_counters)
{
    start_server();
    expect_cli("PING", "PONG\n");
    expect_cli("PING hello", "hello\n");
    expect_cli("ECHO 'a b'", "a b\n");
    expect_cli("SET foo bar", "OK\n");
    expect_cli("GET foo", "bar\n");
    expect_cli("GET nokey", "\n");
    expect_cli("SET foo baz NX", "\n");
    expect_cli("SET foo baz XX GET", "bar\n");
    expect_cli("SET nokey v XX", "\n");
    expect_cli("SET foo qux NX GET", "baz\n");
    expect_cli("GET foo", "baz\n");
    expect_cli("SET n 10", "OK\n");
    expect_cli("INCR n", "11\n");
    expect_cli("DECR n", "10\n");
    expect_cli("INCRBY n 32", "42\n");
    expect_cli("DECRBY n 50", "-8\n");
    expect_cli("INCR newcounter", "1\n");
    expect_cli("INCR foo", "ERR value is not an integer or out of range\n");
    expect_cli("SET big 9223372036854775807", "OK\n");
    expect_cli("INCR big", "ERR increment or decrement would overflow\n");
    expect_cli("INCRBY n x", "ERR value is not an integer or out of range\n");
    /* Keys spread over both shards, in one command. */
    expect_cli("MSET k1 v1 k2 v2 k3 v3 k4 v4 k5 v5 k6 v6", "OK\n");
    expect_cli("MGET k1 k2 nokey k3 k4 k5 k6", "v1\nv2\n\nv3\nv4\nv5\nv6\n");
    expect_cli("EXISTS k1 k2 k1 nokey", "3\n");
    expect_cli("DEL k1 k2 k3 nokey", "3\n");
    expect_cli("EXISTS k1 k2 k3", "0\n");
    expect_cli("MSET a", "ERR wrong number of arguments for 'mset' command\n");
    expect_cli("MSET a 1 b", "ERR wrong number of arguments for 'mset' command\n");
    /* A value larger than the inline limit of an item, and a binary one. */
    char *big =
        rill_test_sh(NULL,
                     "head -c 100000 /dev/zero | tr '\\0' x | timeout 10 redis-cli -p %d -x SET "
                     "bigval && timeout 10 redis-cli -p %d STRLEN bigval; timeout 10 redis-cli -p "
                     "%d GET bigval | wc -c",
                     server_port, server_port, server_port);
    cr_expect(strstr(big, "OK\n") == big, "%s", big);
    cr_expect(strstr(big, "100001\n") != NULL, "GET returns 100000 bytes: %s", big);
    free(big);
    stop_server();
}

Test(kv_clients, expiry)
{
    start_server();
    /* Times leave room for a loaded machine (every redis-cli is a process). */
    expect_cli("SET t v PX 1500", "OK\n");
    expect_cli("GET t", "v\n");
    char *pttl = CLI("PTTL t");
    long ms = atol(pttl);
    cr_expect(ms > 0 && ms <= 1500, "PTTL %s", pttl);
    free(pttl);
    char *ttl = CLI("TTL t"); /* seconds, rounded as Redis does */
    cr_expect(!strcmp(ttl, "1\n") || !strcmp(ttl, "2\n"), "TTL %s", ttl);
    free(ttl);
    usleep(1700 * 1000);
    expect_cli("GET t", "\n");
    expect_cli("TTL t", "-2\n");
    expect_cli("SET p v", "OK\n");
    expect_cli("TTL p", "-1\n");
    expect_cli("EXPIRE p 100", "1\n");
    expect_cli("TTL p", "100\n");
    expect_cli("EXPIRE p 50 GT", "0\n");
    expect_cli("EXPIRE p 50 LT", "1\n");
    expect_cli("EXPIRE p 50 NX", "0\n");
    expect_cli("EXPIRE p abc", "ERR value is not an integer or out of range\n");
    expect_cli("EXPIRE p 10 zz", "ERR Unsupported option zz\n");
    expect_cli("EXPIRE nokey 10", "0\n");
    expect_cli("PEXPIRE p 5000", "1\n");
    expect_cli("SET p v2 KEEPTTL", "OK\n");
    char *t = CLI("PTTL p");
    cr_expect(atol(t) > 0 && atol(t) <= 5000, "KEEPTTL keeps the TTL: %s", t);
    free(t);
    expect_cli("SET p v3", "OK\n");
    expect_cli("PTTL p", "-1\n");
    expect_cli("SET q v EX 1000", "OK\n");
    expect_cli("TTL q", "1000\n");
    expect_cli("PEXPIRE q -1", "1\n");
    expect_cli("EXISTS q", "0\n");
    expect_cli("SET q v EX 0", "ERR invalid expire time in 'set' command\n");
    expect_cli("SET q v PX abc", "ERR value is not an integer or out of range\n");
    expect_cli("SET q v EX 10 PX 10", "ERR syntax error\n");
    /* Active expiry: keys nobody touches go away on their own. */
    expect_cli("FLUSHALL", "OK\n");
    char *r = rill_test_sh(
        NULL,
        "for i in $(seq 1 50); do echo SET e$i v PX 1500; done | timeout 10 redis-cli -p "
        "%d | sort | uniq -c",
        server_port);
    cr_expect(strstr(r, "50 OK") != NULL, "%s", r);
    free(r);
    expect_cli("DBSIZE", "50\n");
    uint64_t deadline = rill_test_deadline_ms(10000);
    char *n = NULL;
    do {
        free(n);
        usleep(100 * 1000);
        n = CLI("DBSIZE");
    } while (strcmp(n, "0\n") != 0 && rill_test_before(deadline));
    cr_expect_str_eq(n, "0\n", "the expiry timer removes expired keys");
    free(n);
    stop_server();
}

Test(kv_clients, keyspace_and_server_commands)
{
    start_server();
    expect_cli("MSET user:1 a user:2 b user:10 c other d u\\*x e", "OK\n");
    char *keys = rill_test_sh(NULL, "timeout 10 redis-cli -p %d KEYS 'user:*' | sort", server_port);
    cr_expect_str_eq(keys, "user:1\nuser:10\nuser:2\n");
    free(keys);
    keys = rill_test_sh(NULL, "timeout 10 redis-cli -p %d KEYS 'user:?' | sort", server_port);
    cr_expect_str_eq(keys, "user:1\nuser:2\n");
    free(keys);
    keys = rill_test_sh(NULL, "timeout 10 redis-cli -p %d KEYS 'user:[^2]*' | sort", server_port);
    cr_expect_str_eq(keys, "user:1\nuser:10\n");
    free(keys);
    keys = rill_test_sh(NULL, "timeout 10 redis-cli -p %d KEYS 'user:[0-1]' | sort", server_port);
    cr_expect_str_eq(keys, "user:1\n");
    free(keys);
    expect_cli("KEYS 'u\\*x'", "u*x\n");
    expect_cli("KEYS '[ou][t\\\\]*'", "other\n");
    expect_cli("DBSIZE", "5\n");
    char *info = CLI("INFO");
    cr_expect(strstr(info, "# Server") && strstr(info, "# Clients") && strstr(info, "# Keyspace"),
              "%s", info);
    cr_expect(strstr(info, "db0:keys=5,expires=0") != NULL, "%s", info);
    cr_expect(strstr(info, "connected_clients:1\r\n") != NULL, "%s", info);
    char port[32];
    snprintf(port, sizeof(port), "tcp_port:%d\r\n", server_port);
    cr_expect(strstr(info, port) != NULL, "%s", info);
    free(info);
    info = CLI("INFO keyspace");
    cr_expect(strstr(info, "# Server") == NULL && strstr(info, "db0:keys=5") != NULL, "%s", info);
    free(info);
    expect_cli("FLUSHALL", "OK\n");
    expect_cli("DBSIZE", "0\n");
    expect_cli("FLUSHALL bogus", "ERR syntax error\n");
    expect_cli("SELECT 0", "OK\n");
    expect_cli("SELECT 1", "ERR DB index is out of range\n");
    expect_cli("SELECT x", "ERR value is not an integer or out of range\n");
    expect_cli("CONFIG GET save", "save\n\n");
    expect_cli("CONFIG GET appendonly", "appendonly\nno\n");
    expect_cli("CONFIG GET nothing", "\n");
    expect_cli("COMMAND COUNT", "26\n");
    char *cmd = CLI("COMMAND");
    cr_expect(strstr(cmd, "get\n2\n") != NULL, "%s", cmd);
    free(cmd);
    expect_cli("COMMAND DOCS", "\n");
    expect_session("CLIENT SETNAME conn-1\\nCLIENT GETNAME\\nCLIENT SETNAME \"a b\"\\n",
                   "OK\nconn-1\nERR Client names cannot contain spaces, newlines or special "
                   "characters.\n\n",
                   "");
    expect_cli("CLIENT GETNAME", "\n");
    expect_cli("CLIENT FOO", "ERR unknown subcommand 'FOO'. Try CLIENT HELP.\n");
    expect_cli("HELLO 4", "NOPROTO unsupported protocol version\n");
    expect_cli("HELLO x", "ERR Protocol version is not an integer or out of range\n");
    char *hello = CLI("HELLO 3");
    cr_expect(strstr(hello, "proto 3\n") != NULL, "%s", hello);
    free(hello);
    /* RESP3 through redis-cli -3: maps, nulls. */
    expect_session("SET k v\\nGET nokey\\nCONFIG GET appendonly\\n",
                   "OK\n(nil)\n1# \"appendonly\" => \"no\"\n", "-3 --no-raw");
    expect_session("QUIT\\nPING\\n", "", ""); /* as with redis-server */
    stop_server();
}

Test(kv_clients, errors_like_redis)
{
    start_server();
    expect_cli("FOO a b c", "ERR unknown command 'FOO', with args beginning with: 'a' 'b' 'c' \n");
    expect_cli("GET", "ERR wrong number of arguments for 'get' command\n");
    expect_cli("GET a b", "ERR wrong number of arguments for 'get' command\n");
    expect_cli("SET k", "ERR wrong number of arguments for 'set' command\n");
    expect_cli("SET k v NX XX", "ERR syntax error\n");
    expect_cli("SET k v FOO", "ERR syntax error\n");
    expect_cli("PING a b", "ERR wrong number of arguments for 'ping' command\n");
    expect_cli("ECHO", "ERR wrong number of arguments for 'echo' command\n");
    expect_cli("TTL", "ERR wrong number of arguments for 'ttl' command\n");
    stop_server();
}

/* ---- raw sockets ---- */

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)server_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        cr_assert_gt(k, 0, "send: %s", strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

/* Read until @want bytes arrived or EOF; returns the count (buf has room). */
static size_t recv_upto(int fd, char *buf, size_t want)
{
    size_t n = 0;
    while (n < want) {
        ssize_t k = recv(fd, buf + n, want - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    return n;
}

Test(kv_clients, pipelined_replies_keep_request_order_across_shards)
{
    start_server();
    size_t cap = 1 << 20;
    char *req = malloc(cap), *want = malloc(cap), *got = malloc(cap + 1);
    size_t rn = 0, wn = 0;
    for (int i = 0; i < 500; i++) {
        char k[32], v[32];
        int kl = snprintf(k, sizeof(k), "key:%d", i), vl = snprintf(v, sizeof(v), "val-%d", i);
        rn += (size_t)snprintf(req + rn, cap - rn,
                               "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                               "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n"
                               "*3\r\n$4\r\nMGET\r\n$%d\r\n%s\r\n$5\r\nkey:0\r\n",
                               kl, k, vl, v, kl, k, kl, k);
        wn += (size_t)snprintf(want + wn, cap - wn,
                               "+OK\r\n$%d\r\n%s\r\n:%d\r\n*2\r\n$%d\r\n%s\r\n$5\r\nval-0\r\n", vl,
                               v, i + 1, vl, v);
    }
    int fd = connect_server();
    send_all(fd, req, rn);
    size_t n = recv_upto(fd, got, wn);
    cr_assert_eq(n, wn, "all replies arrive");
    cr_assert_eq(memcmp(got, want, wn), 0, "replies come in request order");
    close(fd);
    free(req);
    free(want);
    free(got);
    stop_server();
}

Test(kv_clients, protocol_errors_close_only_that_connection)
{
    start_server();
    int good = connect_server();
    send_all(good, "SET k v\r\n", 9);
    char buf[256];
    cr_assert_eq(recv_upto(good, buf, 5), 5);
    cr_assert_str_eq(buf, "+OK\r\n");

    const char *bad[][2] = {
        { "PING\r\n*1\r\n:1\r\n", "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n" },
        { "set \"a\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n" },
        { "*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n" },
        { "*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = connect_server();
        send_all(fd, bad[i][0], strlen(bad[i][0]));
        size_t n = recv_upto(fd, buf, sizeof(buf) - 1);
        cr_expect_str_eq(buf, bad[i][1], "reply to %s", bad[i][0]);
        char c;
        cr_expect_eq(recv(fd, &c, 1, 0), 0, "then the server closes the connection (%zu)", n);
        close(fd);
    }
    send_all(good, "GET k\r\n", 7);
    cr_assert_eq(recv_upto(good, buf, 7), 7);
    cr_assert_str_eq(buf, "$1\r\nv\r\n", "other connections go on");
    close(good);
    stop_server();
}

Test(kv_clients, redis_benchmark)
{
    start_server();
    char *out = rill_test_sh(
        NULL,
        "timeout 100 redis-benchmark -p %d -t ping,set,get,incr,mset -P 16 -n 20000 -q "
        "2>&1 | tr '\\r' '\\n' | grep -v 'rps='",
        server_port);
    const char *tests[] = { "PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)" };
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        char key[64];
        snprintf(key, sizeof(key), "%s: ", tests[i]);
        const char *at = strstr(out, key);
        cr_expect_not_null(at, "%s ran:\n%s", tests[i], out);
        if (at) {
            double rps = atof(at + strlen(key));
            cr_expect_gt(rps, 0, "%s", at);
            fprintf(stderr, "kv_server --workers 2, redis-benchmark -P 16: %s %.0f requests/s\n",
                    tests[i], rps);
        }
    }
    cr_expect_null(strstr(out, "rror"), "no errors:\n%s", out);
    free(out);
    expect_cli("DBSIZE", "2\n"); /* as redis-server: key:__rand_int__, counter:__rand_int__ */
    stop_server();
}
