/* examples/http_hello against real clients on 127.0.0.1: curl (keep-alive,
 * chunked upload, 100-continue, static files and HEAD), wrk, and raw
 * sockets for the answers to bad requests (414, 431, 400, 413, request
 * smuggling) and for pipelining; other connections keep working after a
 * bad one. Each test starts its own server with --port 0, reads the port
 * from its one line of output, and stops it with SIGTERM at the end: it
 * must exit 0 (a leaked buffer would make it exit 99). The server dies
 * with the test process if a test fails hard (PR_SET_PDEATHSIG).
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/proc.h"
#include "util/testutil.h"

#define HELLO RILL_EXAMPLES_DIR "/http_hello"

static pid_t server_pid = -1;
static int server_port;
static char tmpdir[64];

static void remove_tmpdir(void)
{
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
        tmpdir[0] = '\0';
    }
}

static void fini(void)
{
    rill_test_proc_kill(&server_pid);
    remove_tmpdir();
    rill_test_no_leaks();
}

TestSuite(http_clients, .timeout = 120, .fini = fini);

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Start http_hello with @extra arguments (NULL-terminated list, may be
 * NULL) and wait for its line. */
static void start_server(const char *const *extra)
{
    const char *argv[16] = { HELLO, "--port", "0" };
    int argc = 3;
    for (int i = 0; extra && extra[i] && argc < 15; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    char line[256];
    server_pid = rill_test_proc_start(argv, line, sizeof(line));
    int port = 0;
    cr_assert_eq(sscanf(line, "http_hello: listening on http://127.0.0.1:%d\n", &port), 1,
                 "unexpected first line: '%s'", line);
    cr_assert_eq(count_lines(line), 1);
    cr_assert_gt(port, 0);
    server_port = port;
}

static void stop_server(void)
{
    rill_test_proc_stop(&server_pid);
}

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rill-http-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

/* Run a shell command (bounded by `timeout`), its output (stdout and
 * stderr) in a malloc'd string; *status gets the exit status. */
static char *run(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *run(int *status, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return rill_test_sh(status, "timeout 60 %s 2>&1", cmd);
}

static void write_file(const char *path, size_t len, unsigned seed)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (size_t i = 0; i < len; i++)
        fputc((int)((i * 131 + seed + (i >> 12)) & 0xff), f);
    cr_assert_eq(fclose(f), 0);
}

/* Byte-for-byte equality of two files. */
static bool same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* ---- raw sockets ---- */

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)server_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
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

/* Read until the server closes (bounded by the receive timeout). */
static char *recv_until_close(int fd, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *s = malloc(cap);
    for (;;) {
        if (cap - n < 4096) {
            cap *= 2;
            s = realloc(s, cap);
        }
        ssize_t k = recv(fd, s + n, cap - n - 1, 0);
        if (k <= 0) {
            cr_assert(k == 0 || errno == ECONNRESET, "recv: %s (the server did not close)",
                      strerror(errno));
            break;
        }
        n += (size_t)k;
    }
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

/* Read one response with a Content-Length body. */
static char *recv_response(int fd)
{
    size_t cap = 65536, n = 0;
    char *s = malloc(cap);
    char *end = NULL;
    size_t body = 0;
    for (;;) {
        s[n] = '\0';
        if (!end && (end = strstr(s, "\r\n\r\n"))) {
            char *cl = strcasestr(s, "\r\nContent-Length: ");
            body = cl && cl < end ? strtoul(cl + 18, NULL, 10) : 0;
        }
        if (end && n >= (size_t)(end + 4 - s) + body)
            break;
        ssize_t k = recv(fd, s + n, cap - n - 1, 0);
        cr_assert_gt(k, 0, "recv: %s", k ? strerror(errno) : "closed");
        n += (size_t)k;
    }
    return s;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- curl ---- */

Test(http_clients, curl_hello_and_keep_alive)
{
    start_server(NULL);
    int st;
    char *out = run(&st, "curl -s --max-time 20 -D - http://127.0.0.1:%d/", server_port);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(starts(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert_not_null(strstr(out, "\r\nContent-Length: 5\r\n"), "%s", out);
    cr_assert_not_null(strstr(out, "\r\nContent-Type: text/plain\r\n"), "%s", out);
    size_t len = strlen(out);
    cr_assert(len > 9 && strcmp(out + len - 9, "\r\n\r\nhello") == 0, "%s", out);
    free(out);
    /* Two URLs in one curl call: the second reuses the connection. */
    out = run(&st,
              "curl -s --max-time 20 -o /dev/null -o /dev/null -w '%%{num_connects} ' "
              "http://127.0.0.1:%d/ http://127.0.0.1:%d/any/path",
              server_port, server_port);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_str_eq(out, "1 0 ", "connects per transfer: %s", out);
    free(out);
    /* HTTP/1.0 without keep-alive: answered, then closed. */
    out = run(&st, "curl -s --max-time 20 --http1.0 -D - http://127.0.0.1:%d/", server_port);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "Connection: close\r\n"), "%s", out);
    free(out);
    stop_server();
}

Test(http_clients, curl_chunked_upload_and_expect_continue)
{
    start_server(NULL);
    make_tmpdir();
    char up[128], down[128];
    snprintf(up, sizeof(up), "%s/up.bin", tmpdir);
    snprintf(down, sizeof(down), "%s/down.bin", tmpdir);
    write_file(up, 300000, 7);
    int st;
    char *out = run(&st,
                    "curl -s --max-time 20 -H 'Transfer-Encoding: chunked' -H 'Expect:' "
                    "--data-binary @%s -o %s -w '%%{http_code}' http://127.0.0.1:%d/echo",
                    up, down, server_port);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_str_eq(out, "200");
    cr_assert(same_file(up, down), "the echoed body differs");
    free(out);
    unlink(down);

    out = run(&st,
              "curl -sv --max-time 20 -H 'Expect: 100-continue' --data-binary @%s -o %s "
              "http://127.0.0.1:%d/echo",
              up, down, server_port);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "> Expect: 100-continue"), "%s", out);
    char *cont = strstr(out, "< HTTP/1.1 100 Continue");
    cr_assert_not_null(cont, "%s", out);
    cr_assert_not_null(strstr(cont, "< HTTP/1.1 200 OK"), "%s", out);
    cr_assert(same_file(up, down), "the echoed body differs");
    free(out);

    /* Declared larger than the aggregator allows: 413 before the body. */
    char big[128];
    snprintf(big, sizeof(big), "%s/big.bin", tmpdir);
    write_file(big, 2u << 20, 3);
    out = run(&st,
              "curl -s --max-time 20 -H 'Expect: 100-continue' --data-binary @%s -o /dev/null "
              "-w '%%{http_code}' http://127.0.0.1:%d/echo",
              big, server_port);
    cr_assert_str_eq(out, "413", "%s", out);
    free(out);
    /* Sent without waiting, chunked: the 413 still arrives whole (the
     * server reads and drops the rest until the client closes). */
    out = run(&st,
              "curl -s --max-time 20 -H 'Expect:' -H 'Transfer-Encoding: chunked' "
              "--data-binary @%s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/echo",
              big, server_port);
    cr_assert_str_eq(out, "413", "%s", out);
    free(out);
    stop_server();
}

Test(http_clients, curl_static_files)
{
    make_tmpdir();
    char root[128], file[160], sub[160], down[160];
    snprintf(root, sizeof(root), "%s/root", tmpdir);
    cr_assert_eq(mkdir(root, 0755), 0);
    snprintf(sub, sizeof(sub), "%s/dir", root);
    cr_assert_eq(mkdir(sub, 0755), 0);
    snprintf(file, sizeof(file), "%s/dir/data file.bin", root);
    write_file(file, 3u << 20, 11);
    snprintf(down, sizeof(down), "%s/down.bin", tmpdir);
    char secret[160];
    snprintf(secret, sizeof(secret), "%s/secret.txt", tmpdir);
    write_file(secret, 10, 1);
    const char *args[] = { "--root", root, NULL };
    start_server(args);
    int st;
    char *out = run(&st,
                    "curl -s --max-time 30 -o %s -w '%%{http_code} %%{content_type}' "
                    "'http://127.0.0.1:%d/static/dir/data%%20file.bin'",
                    down, server_port);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_str_eq(out, "200 application/octet-stream");
    cr_assert(same_file(file, down), "the downloaded file differs");
    free(out);

    out = run(&st, "curl -s --max-time 20 -I 'http://127.0.0.1:%d/static/dir/data%%20file.bin'",
              server_port);
    cr_assert(starts(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert_not_null(strstr(out, "\r\nContent-Length: 3145728\r\n"), "%s", out);
    cr_assert(strlen(out) < 300, "HEAD has no body: %s", out);
    free(out);

    struct {
        const char *path;
        const char *code;
    } cases[] = {
        { "/static/missing", "404" },
        { "/static/dir", "404" },
        { "/static/../secret.txt", "403" },
        { "/static/dir/../../secret.txt", "403" },
        { "/static/%2e%2e/secret.txt", "403" },
        { "/static/a%00b", "400" },
        { "/static/%zz", "400" },
        { "/static//etc/passwd", "400" },
        { "/elsewhere", "404" },
        { "/", "200" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        out = run(&st,
                  "curl -s --max-time 20 --path-as-is -o /dev/null -w '%%{http_code}' "
                  "'http://127.0.0.1:%d%s'",
                  server_port, cases[i].path);
        cr_assert_str_eq(out, cases[i].code, "%s", cases[i].path);
        free(out);
    }
    /* A symbolic link out of the root is not followed out of it. */
    char link[160];
    snprintf(link, sizeof(link), "%s/escape", root);
    cr_assert_eq(symlink(secret, link), 0);
    out = run(&st,
              "curl -s --max-time 20 -o /dev/null -w '%%{http_code}' "
              "'http://127.0.0.1:%d/static/escape'",
              server_port);
    cr_assert(strcmp(out, "403") == 0 || strcmp(out, "404") == 0, "%s", out);
    free(out);
    stop_server();
}

/* ---- wrk ---- */

static void wrk_run(const char *const *args)
{
    start_server(args);
    int st;
    char *out = run(&st, "wrk -t1 -c8 -d2s --timeout 5s http://127.0.0.1:%d/", server_port);
    cr_assert_eq(st, 0, "%s", out);
    unsigned long requests = 0;
    char *at = strstr(out, " requests in ");
    cr_assert_not_null(at, "%s", out);
    while (at > out && at[-1] >= '0' && at[-1] <= '9')
        at--;
    requests = strtoul(at, NULL, 10);
    cr_assert_gt(requests, 0, "%s", out);
    cr_assert_null(strstr(out, "Socket errors"), "%s", out);
    cr_assert_null(strstr(out, "Non-2xx"), "%s", out);
    free(out);
    stop_server();
}

Test(http_clients, wrk_one_loop)
{
    wrk_run(NULL);
}

Test(http_clients, wrk_two_loops)
{
    const char *args[] = { "--workers", "2", NULL };
    wrk_run(args);
}

/* ---- raw sockets ---- */

static char *exchange_until_close(const char *req, size_t len)
{
    int fd = connect_server();
    send_all(fd, req, len);
    char *out = recv_until_close(fd, NULL);
    close(fd);
    return out;
}

static char *padded(const char *prefix, size_t n, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + n + sl + 1);
    memcpy(s, prefix, pl);
    memset(s + pl, 'a', n);
    memcpy(s + pl + n, suffix, sl + 1);
    return s;
}

Test(http_clients, raw_bad_requests_and_other_connections)
{
    start_server(NULL);
    /* A keep-alive connection opened before the bad ones. */
    int keep = connect_server();
    const char *get = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(keep, get, strlen(get));
    char *r = recv_response(keep);
    cr_assert(starts(r, "HTTP/1.1 200 OK\r\n"), "%s", r);
    free(r);

    char *long_line = padded("GET /", 9000, " HTTP/1.1\r\nHost: t\r\n\r\n");
    char *big_field = padded("GET / HTTP/1.1\r\nHost: t\r\nX-Big: ", 17000, "\r\n\r\n");
    struct {
        const char *req;
        const char *status;
    } cases[] = {
        { long_line, "HTTP/1.1 414 URI Too Long\r\n" },
        { big_field, "HTTP/1.1 431 Request Header Fields Too Large\r\n" },
        { "GET / HTTP/1.1\r\nHost: t\r\nBad Field: 1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n" },
        { "G@T / HTTP/1.1\r\nHost: t\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n" },
        { "GET / HTTP/3.0\r\nHost: t\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n" },
        { "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
          "HTTP/1.1 413 Content Too Large\r\n" },
        /* Request smuggling: every ambiguous framing is refused. */
        { "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
          "\r\n0\r\n\r\n",
          "HTTP/1.1 400 Bad Request\r\n" },
        { "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
          "HTTP/1.1 400 Bad Request\r\n" },
        { "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
          "HTTP/1.1 400 Bad Request\r\n" },
        { "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n",
          "HTTP/1.1 400 Bad Request\r\n" },
        { "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n",
          "HTTP/1.1 400 Bad Request\r\n" },
        { "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x10\r\n\r\n",
          "HTTP/1.1 400 Bad Request\r\n" },
        { "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
          "HTTP/1.1 400 Bad Request\r\n" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = exchange_until_close(cases[i].req, strlen(cases[i].req));
        cr_assert(starts(out, cases[i].status), "case %zu: %.80s", i, out);
        cr_assert_not_null(strstr(out, "\r\nConnection: close\r\n"), "case %zu: %s", i, out);
        free(out);
        /* The connection opened before goes on. */
        send_all(keep, get, strlen(get));
        r = recv_response(keep);
        cr_assert(starts(r, "HTTP/1.1 200 OK\r\n"), "%s", r);
        cr_assert(strstr(r, "\r\n\r\nhello") != NULL, "%s", r);
        free(r);
    }
    free(long_line);
    free(big_field);
    close(keep);

    /* So do new connections. */
    char *out = exchange_until_close("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 47);
    cr_assert(starts(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    free(out);
    stop_server();
}

Test(http_clients, raw_pipelining)
{
    start_server(NULL);
    int fd = connect_server();
    const char *reqs = "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst"
                       "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "6\r\nsecond\r\n0\r\n\r\n"
                       "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    send_all(fd, reqs, strlen(reqs));
    size_t len;
    char *out = recv_until_close(fd, &len);
    close(fd);
    const char *want[] = { "\r\n\r\nhello", "\r\n\r\nfirst", "Content-Length: 5\r\n\r\nHTTP",
                           "\r\n\r\nsecond", "Connection: close\r\n\r\nhello" };
    const char *at = out;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *next = strstr(at, want[i]);
        cr_assert_not_null(next, "answer %zu out of order or missing: %s", i, out);
        at = next + 1;
    }
    int answers = 0;
    for (const char *p = strstr(out, "HTTP/1.1 200 OK"); p; p = strstr(p + 1, "HTTP/1.1 200 OK"))
        answers++;
    cr_assert_eq(answers, 5, "%s", out);
    free(out);
    stop_server();
}
