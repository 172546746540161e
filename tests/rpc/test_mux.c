/* examples/rpc_mux, HTTP and RPC on one port, driven by real clients on
 * 127.0.0.1: curl for /health, /metrics and a 404, the rill RPC client
 * (a client channel with the client pipeline) for echo calls with their
 * payloads checked, both kinds of connection open and used at the same
 * time, and foreign first bytes refused with a close while the others go
 * on. The metrics are read after known RPC calls and must count them.
 *
 * Each test starts its own server with --port 0 and reads the port from
 * its one line of output; it is stopped with SIGTERM at the end and must
 * exit 0 (a leaked buffer makes it exit 99). The suite's .fini kills it
 * when a test failed before that, and it dies with the test process
 * otherwise (PR_SET_PDEATHSIG). Every wait is bounded.
 *
 * rill-test-labels: threaded
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rill/rpc_client.h"
#include "tests/rpc/rpc_test.h"
#include "tests/transport/tx.h"
#include "util/proc.h"
#include "util/testutil.h"

#define MUX RILL_EXAMPLES_DIR "/rpc_mux"

static pid_t server_pid = -1;
static int server_port;

static void fini(void)
{
    rill_test_proc_kill(&server_pid);
    rill_test_no_leaks();
}

TestSuite(mux, .timeout = 30, .fini = fini);

static void start_server(void)
{
    const char *argv[] = { MUX, "--port", "0", "--workers", "2", NULL };
    char line[256];
    server_pid = rill_test_proc_start(argv, line, sizeof(line));
    int port = 0;
    cr_assert_eq(sscanf(line, "rpc_mux: listening on 127.0.0.1:%d\n", &port), 1,
                 "unexpected first line: '%s'", line);
    cr_assert_gt(port, 0);
    server_port = port;
}

/* ---- HTTP with curl ---- */

/* GET @path with curl: the body in a malloc'd string, the status in
 * *@code. */
static char *curl_get(const char *path, int *code)
{
    int st;
    char *out = rill_test_sh(&st,
                             "timeout 20 curl -s --max-time 10 -w '\\n%%{http_code}' "
                             "http://127.0.0.1:%d%s",
                             server_port, path);
    cr_assert_eq(st, 0, "curl %s: exit %d: %s", path, st, out);
    char *nl = strrchr(out, '\n');
    cr_assert_not_null(nl, "curl %s: %s", path, out);
    *code = atoi(nl + 1);
    *nl = '\0';
    return out;
}

/* The value of the metric line "@key VALUE" in @text, or -1. */
static long long metric(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
    return -1;
}

/* ---- RPC with the rill client ---- */

struct rpc {
    struct rill_loop_group *group;
    struct rill_channel *ch;
};

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

static void rpc_connect(struct rpc *r)
{
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", server_port);
    r->group = tx_group("cli", 1);
    r->ch = tx_connect(r->group, uri, client_init, NULL);
}

static void rpc_close(struct rpc *r)
{
    tx_close(r->ch);
    tx_group_free(r->group);
}

/* One call to echo.Echo/@method with @body; returns its status and checks
 * the echo when it is OK. */
static int call(struct rpc *r, const char *method, const char *body)
{
    struct rill_rpc_call *c;
    int rc = rill_rpc_call_sync(r->ch, "echo.Echo", method, rt_buf(body), NULL, TX_WAIT_NS, &c);
    int status = rill_rpc_call_status(c);
    if (rc == 0) {
        struct rill_buf *resp = rill_rpc_call_response(c);
        cr_assert(rt_buf_is(resp, body), "%s(%s): the payload came back", method, body);
        if (resp)
            rill_buf_release(resp);
    }
    rill_rpc_call_release(c);
    return status;
}

/* ---- raw sockets ---- */

static int raw_connect(void)
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

static void send_all(int fd, const void *p, size_t n)
{
    cr_assert_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n, "send: %s", strerror(errno));
}

/* Read one response with a Content-Length body from a keep-alive
 * connection into @buf (NUL-terminated). */
static void recv_response(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        buf[n] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            char *cl = strcasestr(buf, "\r\nContent-Length: ");
            size_t body = cl && cl < end ? strtoul(cl + 18, NULL, 10) : 0;
            if (n >= (size_t)(end + 4 - buf) + body)
                return;
        }
        cr_assert_lt(n, cap - 1, "response too large");
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        cr_assert_gt(k, 0, "recv: %s", k ? strerror(errno) : "closed");
        n += (size_t)k;
    }
}

/* Read into @buf (NUL-terminated) until @needle has arrived. */
static void recv_until(int fd, char *buf, size_t cap, const char *needle)
{
    size_t n = 0;
    buf[0] = '\0';
    while (!strstr(buf, needle)) {
        cr_assert_lt(n, cap - 1, "no '%s' in %s", needle, buf);
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        cr_assert_gt(k, 0, "recv: %s", k ? strerror(errno) : "closed");
        n += (size_t)k;
        buf[n] = '\0';
    }
}

/* Send @len bytes, then expect the server to close without answering
 * (bounded by the receive timeout). */
static void expect_refused(const void *data, size_t len, bool shut_wr)
{
    int fd = raw_connect();
    send_all(fd, data, len);
    if (shut_wr)
        shutdown(fd, SHUT_WR);
    char buf[256];
    ssize_t k = recv(fd, buf, sizeof(buf), 0);
    cr_assert(k == 0 || (k < 0 && errno == ECONNRESET), "%zu bytes: got %zd (%s), not a close", len,
              k, k < 0 ? strerror(errno) : "data");
    close(fd);
}

/* ---- tests ---- */

Test(mux, health_metrics_and_rpc_on_one_port)
{
    start_server();
    int code;
    char *out = curl_get("/health", &code);
    cr_assert_eq(code, 200);
    cr_assert_str_eq(out, "ok\n");
    free(out);
    out = curl_get("/nope", &code);
    cr_assert_eq(code, 404, "%s", out);
    free(out);

    struct rpc r;
    rpc_connect(&r);
    for (int i = 0; i < 5; i++) {
        char body[32];
        snprintf(body, sizeof(body), "inline %d", i);
        cr_assert_eq(call(&r, "say", body), RILL_RPC_OK);
    }
    for (int i = 0; i < 3; i++)
        cr_assert_eq(call(&r, "say_pool", "on a handler thread"), RILL_RPC_OK);
    cr_assert_eq(call(&r, "fail", "x"), RILL_RPC_INVALID_ARGUMENT);
    cr_assert_eq(call(&r, "fail", "y"), RILL_RPC_INVALID_ARGUMENT);
    cr_assert_eq(call(&r, "nosuch", "z"), RILL_RPC_UNIMPLEMENTED);

    /* The answers are counted when they are sent, so before the client
     * could see them: the counts are there at once. */
    out = curl_get("/metrics", &code);
    cr_assert_eq(code, 200, "%s", out);
    cr_assert_eq(metric(out, "rpc_method_calls_total{method=\"echo.Echo/say\"}"), 5, "%s", out);
    cr_assert_eq(metric(out, "rpc_method_status_total{method=\"echo.Echo/say\",status=\"OK\"}"), 5,
                 "%s", out);
    cr_assert_eq(metric(out, "rpc_method_errors_total{method=\"echo.Echo/say\"}"), 0, "%s", out);
    cr_assert_eq(metric(out, "rpc_method_calls_total{method=\"echo.Echo/say_pool\"}"), 3, "%s",
                 out);
    cr_assert_eq(metric(out, "rpc_method_calls_total{method=\"echo.Echo/fail\"}"), 2, "%s", out);
    cr_assert_eq(metric(out, "rpc_method_errors_total{method=\"echo.Echo/fail\"}"), 2, "%s", out);
    cr_assert_eq(metric(out, "rpc_method_status_total{method=\"echo.Echo/fail\",status="
                             "\"INVALID_ARGUMENT\"}"),
                 2, "%s", out);
    cr_assert_eq(metric(out, "rpc_calls_total"), 11, "%s", out);
    cr_assert_eq(metric(out, "rpc_unimplemented_total"), 1, "%s", out);
    cr_assert_eq(metric(out, "rpc_connections"), 1, "the RPC connection is open: %s", out);
    cr_assert_eq(metric(out, "rpc_connections_total"), 1, "%s", out);
    cr_assert_eq(metric(out, "mux_connections_total{protocol=\"rpc\"}"), 1, "%s", out);
    cr_assert_eq(metric(out, "mux_connections_total{protocol=\"http\"}"), 3, "%s", out);
    cr_assert_gt(metric(out, "rpc_bytes_in_total"), 11 * 14, "%s", out);
    cr_assert_gt(metric(out, "rpc_bytes_out_total"), 11 * 14, "%s", out);
    cr_assert_not_null(
        strstr(out, "rpc_method_latency_seconds{method=\"echo.Echo/say\",quantile=\"0.99\"} "),
        "%s", out);
    free(out);

    rpc_close(&r);
    rill_test_proc_stop(&server_pid);
}

Test(mux, http_and_rpc_connections_at_the_same_time)
{
    start_server();
    /* An HTTP keep-alive connection, used before, during and after the
     * RPC calls. */
    int http = raw_connect();
    static const char get[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    char resp[4096];
    send_all(http, get, sizeof(get) - 1);
    recv_response(http, resp, sizeof(resp));
    cr_assert(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", resp);

    struct rpc r;
    rpc_connect(&r);
    enum { N = 200 };
    struct rill_rpc_call *calls[N];
    for (int i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof(body), "call %d", i);
        cr_assert_eq(rill_rpc_call_start(r.ch, "echo.Echo", i % 2 ? "say" : "say_pool",
                                         rt_buf(body), NULL, &calls[i]),
                     0);
    }
    /* While they are in flight: curl, and the open HTTP connection (two
     * pipelined requests). */
    int code;
    char *out = curl_get("/health", &code);
    cr_assert_eq(code, 200);
    free(out);
    static const char two[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(http, two, sizeof(two) - 1);
    recv_until(http, resp, sizeof(resp), "\r\n\r\nnot found\n");
    cr_assert(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", resp);
    char *second = strstr(resp, "\r\n\r\nok\n");
    cr_assert_not_null(second, "%s", resp);
    cr_assert(strncmp(second + 7, "HTTP/1.1 404 Not Found\r\n", 24) == 0, "in order: %s", resp);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rill_rpc_call_wait(calls[i], TX_WAIT_NS), 0, "call %d", i);
        char body[32];
        snprintf(body, sizeof(body), "call %d", i);
        struct rill_buf *b = rill_rpc_call_response(calls[i]);
        cr_assert(rt_buf_is(b, body), "call %d: its own payload came back", i);
        rill_buf_release(b);
        rill_rpc_call_release(calls[i]);
    }
    out = curl_get("/metrics", &code);
    cr_assert_eq(metric(out, "rpc_calls_total"), N, "%s", out);
    cr_assert_eq(metric(out, "rpc_method_calls_total{method=\"echo.Echo/say\"}"), N / 2, "%s", out);
    cr_assert_eq(metric(out, "rpc_method_calls_total{method=\"echo.Echo/say_pool\"}"), N / 2, "%s",
                 out);
    cr_assert_eq(metric(out, "rpc_connections"), 1, "%s", out);
    cr_assert_eq(metric(out, "mux_http_requests_total"), 5, "%s", out);
    free(out);
    close(http);
    rpc_close(&r);
    rill_test_proc_stop(&server_pid);
}

Test(mux, foreign_first_bytes_are_closed_and_others_go_on)
{
    start_server();
    struct rpc r;
    rpc_connect(&r);
    cr_assert_eq(call(&r, "say", "before"), RILL_RPC_OK);

    static const unsigned char tls[] = { 0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00 };
    expect_refused(tls, sizeof(tls), false);
    expect_refused("hello there\r\n", 13, false);
    expect_refused("RILX\x01\x00\x00\x00", 8, false);     /* almost the magic */
    expect_refused("GETX / HTTP/1.1\r\n\r\n", 19, false); /* almost a method */
    expect_refused("GE", 2, true);                        /* a method cut short by the end */
    cr_assert_eq(call(&r, "say", "after"), RILL_RPC_OK);

    int code;
    char *out = curl_get("/metrics", &code);
    cr_assert_eq(code, 200);
    cr_assert_eq(metric(out, "mux_connections_total{protocol=\"refused\"}"), 4,
                 "the select refused four (the cut one ended first): %s", out);
    cr_assert_eq(metric(out, "mux_connections_total{protocol=\"rpc\"}"), 1, "%s", out);
    cr_assert_eq(metric(out, "rpc_connections_total"), 1, "%s", out);
    free(out);
    out = curl_get("/health", &code);
    cr_assert_eq(code, 200);
    free(out);
    rpc_close(&r);
    rill_test_proc_stop(&server_pid);
}
