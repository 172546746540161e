/* pipeline_compose: handlers composed into a pipeline, and a pipeline that
 * changes while it runs.
 *
 *   pipeline_compose
 *
 * One program, both ends: a server whose connections start with
 *
 *   head <-> log <-> echo <-> tail
 *
 * and a client that sends a few lines and prints the answers. The echo
 * handler understands two commands: "+upper" adds a transforming handler
 * ("upper", which upper-cases what it reads) in front of itself, at run
 * time, from inside its own read callback; "-upper" removes it again:
 *
 *   head <-> log <-> upper <-> echo <-> tail
 *
 * It shows:
 *   - a logging handler that watches inbound reads and outbound writes and
 *     passes both on (the same handler object sits in every connection's
 *     pipeline; its per-connection state lives in the context)
 *   - a transforming handler that replaces each message with a new one
 *     (releasing what it received, forwarding what it made)
 *   - rill_pipeline_add_before / rill_pipeline_remove from a callback
 *     of the same pipeline
 *
 * Lines: on loopback each short line the client sends arrives as one read
 * here; a real line protocol would put a line decoder (codec) first. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"

/* ---- log: print what goes in and out ---- */

struct log_state {
    unsigned reads, writes;
};

static void print_msg(const char *dir, struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_buf *b = rill_buf_from_msg(msg);
    size_t len = 0;
    const uint8_t *p = b ? rill_buf_read_ptr(b, &len) : NULL;
    const uint8_t *nl = p ? memchr(p, '\n', len) : NULL;
    int shown = p ? (int)(nl ? (size_t)(nl - p) : len) : 0;
    printf("  [log ch%llu] %s %zu bytes: %.*s\n",
           (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)), dir, len, shown,
           p ? (const char *)p : "");
}

static void log_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct log_state *st = rill_ctx_state(ctx);
    st->reads++;
    print_msg("in ", ctx, msg);
    rill_ctx_fire_read(ctx, msg); /* pass it on: ownership moves with it */
}

static void log_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct log_state *st = rill_ctx_state(ctx);
    st->writes++;
    print_msg("out", ctx, msg);
    rill_ctx_write(ctx, msg, p);
}

static void log_inactive(struct rill_ctx *ctx)
{
    struct log_state *st = rill_ctx_state(ctx);
    printf("  [log ch%llu] closed after %u reads and %u writes\n",
           (unsigned long long)rill_channel_id(rill_ctx_channel(ctx)), st->reads, st->writes);
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler log_handler = {
    .name = "log",
    .ctx_size = sizeof(struct log_state),
    .read = log_read,
    .write = log_write,
    .inactive = log_inactive,
};

/* ---- upper: a transforming handler ---- */

static void upper_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_buf *in = rill_buf_from_msg(msg), *out;
    if (!in || rill_buf_copy(in, rill_buf_reader_index(in), rill_buf_readable(in), &out) != 0) {
        rill_ctx_fire_read(ctx, msg); /* not bytes (or no memory): pass it unchanged */
        return;
    }
    rill_msg_release(msg); /* done with the input */
    size_t len;
    uint8_t *p = (uint8_t *)rill_buf_read_ptr(out, &len);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)toupper(p[i]);
    rill_ctx_fire_read(ctx, rill_buf_msg(out));
}

static const struct rill_handler upper_handler = { .name = "upper", .read = upper_read };

/* ---- echo, with the two commands ---- */

static bool is_command(struct rill_buf *b, const char *cmd)
{
    size_t n = strlen(cmd);
    return rill_buf_readable(b) >= n && rill_buf_equal_bytes(b, rill_buf_reader_index(b), cmd, n);
}

static void reply(struct rill_ctx *ctx, const char *text)
{
    struct rill_buf *b;
    if (rill_buf_copy_from(text, strlen(text), &b) == 0)
        rill_ctx_write_and_flush(ctx, rill_buf_msg(b), NULL);
}

static void echo_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_buf *b = rill_buf_from_msg(msg);
    struct rill_pipeline *pl = rill_ctx_pipeline(ctx);
    if (b && (is_command(b, "+upper") || is_command(b, "+UPPER"))) {
        rill_msg_release(msg);
        /* Insert in front of ourselves; the next read goes through it. */
        int err = rill_pipeline_add_before(pl, "echo", "upper", &upper_handler, NULL);
        reply(ctx, err ? "upper: already on\n" : "upper: on\n");
        return;
    }
    if (b && (is_command(b, "-upper") || is_command(b, "-UPPER"))) {
        rill_msg_release(msg);
        int err = rill_pipeline_remove(pl, "upper");
        reply(ctx, err ? "upper: was off\n" : "upper: off\n");
        return;
    }
    rill_ctx_write_and_flush(ctx, msg, NULL);
}

static const struct rill_handler echo_handler = { .name = "echo", .read = echo_read };

static int server_child_init(struct rill_channel *ch, void *arg)
{
    (void)arg;
    struct rill_pipeline *pl = rill_channel_pipeline(ch);
    int err = rill_pipeline_add_last(pl, "log", &log_handler, NULL);
    return err ? err : rill_pipeline_add_last(pl, "echo", &echo_handler, NULL);
}

/* ---- the client: send a line, print the answer, repeat ---- */

static const char *const script[] = {
    "hello\n", "+upper\n", "hello again\n", "still upper\n", "-upper\n", "bye\n",
};
#define NLINES (sizeof(script) / sizeof(script[0]))

struct client {
    size_t next;
    struct rill_promise *done;
};

static void send_line(struct rill_ctx *ctx, struct client *c)
{
    printf("client> %s", script[c->next]);
    reply(ctx, script[c->next++]);
}

static void client_active(struct rill_ctx *ctx)
{
    send_line(ctx, rill_ctx_arg(ctx));
    rill_ctx_fire_active(ctx);
}

static void client_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct client *c = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    size_t len = 0;
    const uint8_t *p = b ? rill_buf_read_ptr(b, &len) : NULL;
    printf("server> %.*s", (int)len, p ? (const char *)p : "");
    rill_msg_release(msg);
    if (c->next < NLINES) {
        send_line(ctx, c);
    } else {
        rill_promise_succeed(c->done, NULL, NULL);
        rill_ctx_close(ctx, NULL);
    }
}

static const struct rill_handler client_handler = {
    .name = "client",
    .active = client_active,
    .read = client_read,
};

static int client_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "client", &client_handler, arg);
}

int main(void)
{
    struct rill_loop_group *g;
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 2;
    if (rill_loop_group_new(&go, &g) != 0)
        return 1;

    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = g;
    so.child_init = server_child_init;
    struct rill_server *srv;
    int err = rill_server_bind(&so, "tcp://127.0.0.1:0", &srv);
    if (!err)
        err = rill_promise_wait(rill_server_bound(srv), -1);
    if (err) {
        fprintf(stderr, "pipeline_compose: %s\n", rill_strerror(err));
        return 1;
    }
    char uri[RILL_ADDR_STRLEN];
    rill_addr_format(rill_server_local_addr(srv), uri, sizeof(uri));
    printf("server on %s; pipeline per connection: log -> echo\n", uri);

    struct client c = { 0 };
    rill_promise_new(NULL, &c.done);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = client_init;
    co.arg = &c;
    struct rill_promise *f;
    err = rill_client_connect(&co, uri, &f);
    if (!err) {
        err = rill_promise_wait(f, -1);
        rill_promise_release(f);
    }
    if (!err)
        err = rill_promise_wait(c.done, 10 * (int64_t)1000000000);
    if (err)
        fprintf(stderr, "pipeline_compose: %s\n", rill_strerror(err));

    rill_promise_wait(rill_server_close(srv, true), -1);
    rill_server_free(srv);
    rill_promise_wait(rill_loop_group_shutdown(g, 0, 1000000000), -1);
    rill_loop_group_free(g);
    rill_promise_release(c.done);
    return err ? 1 : 0;
}
