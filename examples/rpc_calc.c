/* rpc_calc: a calculator service over raw payloads. A request is two
 * signed 64-bit integers, big-endian (16 bytes); the answer is one (8
 * bytes). Division by zero is a handler error: status INVALID_ARGUMENT
 * with the message "division by zero". A payload of the wrong size is
 * INVALID_ARGUMENT too.
 *
 *   rpc_calc            server and client in one process: runs a few sums
 *                       and prints them, then the server's metrics */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"
#include "rill/rpc_client.h"
#include "rill/rpc_server.h"

enum op { ADD, SUB, MUL, DIV };

static void calc(struct rill_rpc_server_call *c, void *arg)
{
    enum op op = (enum op)(intptr_t)arg;
    struct rill_buf *p = rill_rpc_server_call_payload(c);
    uint64_t a, b;
    if (!p || rill_buf_readable(p) != 16 || rill_buf_read_u64_be(p, &a) ||
        rill_buf_read_u64_be(p, &b)) {
        rill_rpc_server_call_fail(c, RILL_RPC_INVALID_ARGUMENT,
                                  "expected two 64-bit big-endian integers (16 bytes)");
        return;
    }
    int64_t x = (int64_t)a, y = (int64_t)b, r;
    switch (op) {
    case ADD:
        r = (int64_t)((uint64_t)x + (uint64_t)y);
        break;
    case SUB:
        r = (int64_t)((uint64_t)x - (uint64_t)y);
        break;
    case MUL:
        r = (int64_t)((uint64_t)x * (uint64_t)y);
        break;
    default:
        if (y == 0 || (x == INT64_MIN && y == -1)) {
            rill_rpc_server_call_fail(c, RILL_RPC_INVALID_ARGUMENT,
                                      y ? "quotient overflows" : "division by zero");
            return;
        }
        r = x / y;
    }
    struct rill_buf *out;
    if (rill_buf_alloc(8, &out) != 0) {
        rill_rpc_server_call_fail(c, RILL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    rill_buf_write_u64_be(out, (uint64_t)r);
    rill_rpc_server_call_reply(c, out);
}

static int child_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_server_install(arg, rill_channel_pipeline(ch));
}

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_rpc_client_install(rill_channel_pipeline(ch), NULL, NULL);
}

static void ask(struct rill_channel *ch, const char *method, int64_t x, int64_t y)
{
    struct rill_buf *req;
    rill_buf_alloc(16, &req);
    rill_buf_write_u64_be(req, (uint64_t)x);
    rill_buf_write_u64_be(req, (uint64_t)y);
    struct rill_rpc_call *c;
    int rc = rill_rpc_call_sync(ch, "calc", method, req, NULL, 10 * (int64_t)1000000000, &c);
    if (rc == 0) {
        struct rill_buf *r = rill_rpc_call_response(c);
        uint64_t v = 0;
        if (r)
            rill_buf_read_u64_be(r, &v);
        printf("%s(%" PRId64 ", %" PRId64 ") = %" PRId64 "\n", method, x, y, (int64_t)v);
        if (r)
            rill_buf_release(r);
    } else {
        printf("%s(%" PRId64 ", %" PRId64 ") failed: %s: %s\n", method, x, y,
               rill_rpc_status_name(rill_rpc_call_status(c)),
               rill_rpc_call_status_msg(c) ? rill_rpc_call_status_msg(c) : rill_strerror(rc));
    }
    rill_rpc_call_release(c);
}

int main(void)
{
    struct rill_loop_group *g;
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 2;
    if (rill_loop_group_new(&go, &g) != 0)
        return 1;
    struct rill_rpc_server *rs;
    if (rill_rpc_server_new(NULL, &rs) != 0)
        return 1;
    const char *names[] = { "add", "sub", "mul", "div" };
    for (intptr_t i = 0; i < 4; i++)
        rill_rpc_server_register(rs, "calc", names[i], calc, (void *)i, RILL_RPC_INLINE);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = g;
    so.child_init = child_init;
    so.child_arg = rs;
    struct rill_server *srv;
    if (rill_server_bind(&so, "tcp://127.0.0.1:0", &srv) != 0)
        return 1;
    rill_promise_wait(rill_server_bound(srv), -1);
    char uri[RILL_ADDR_STRLEN];
    rill_addr_format(rill_server_local_addr(srv), uri, sizeof(uri));

    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    struct rill_promise *f;
    int rc = rill_client_connect(&co, uri, &f);
    if (rc == 0 && (rc = rill_promise_wait(f, -1)) == 0) {
        struct rill_channel *ch = rill_client_channel(f);
        ask(ch, "add", 2, 40);
        ask(ch, "sub", 2, 40);
        ask(ch, "mul", -6, 7);
        ask(ch, "div", 84, 2);
        ask(ch, "div", 1, 0);
        ask(ch, "pow", 2, 10);
        rill_channel_close(ch, NULL);
        rill_channel_release(ch);
    }
    if (rc == 0)
        rill_promise_release(f);
    for (int i = 0; i < 4; i++) {
        struct rill_rpc_method_stats ms;
        if (rill_rpc_server_method_stats(rs, "calc", names[i], &ms) == 0)
            printf("calc/%s calls=%llu errors=%llu\n", names[i], (unsigned long long)ms.calls,
                   (unsigned long long)ms.errors);
    }
    rill_promise_wait(rill_server_close(srv, true), -1);
    rill_server_free(srv);
    rill_loop_group_free(g);
    rill_rpc_server_free(rs);
    return rc ? 1 : 0;
}
