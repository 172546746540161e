/* Stream behaviour of epoll channels over loopback TCP: half-close in both
 * directions (with and without RILL_OPT_ALLOW_HALF_CLOSURE), writability
 * with a reader that stops reading (memory bounded by the watermark), a
 * peer that resets the connection in the middle of a large write (every
 * promise completes, nothing leaks), auto-read switched off and on, socket
 * options, and file regions sent with sendfile.
 *
 * rill-test-labels: threaded
 */
#include "tests/transport/tx.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "rill/file_region.h"
#include "transport/epoll/epoll_internal.h"
#include "util/testutil.h"

TestSuite(stream, .timeout = 60, .fini = rill_test_no_leaks);

struct env {
    struct rill_loop_group *g;
    struct rill_server *srv;
    char uri[RILL_ADDR_STRLEN];
};

static void env_start(struct env *e, rill_channel_init_fn *init, void *arg,
                      const struct rill_channel_opts *child_opts)
{
    e->g = tx_group("loop", 2);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = e->g;
    so.child_init = init;
    so.child_arg = arg;
    if (child_opts)
        so.child_opts = *child_opts;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &e->srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(e->srv), TX_WAIT_NS), 0);
    tx_server_uri(e->srv, e->uri, sizeof(e->uri));
}

static void env_stop(struct env *e)
{
    tx_server_free(e->srv, true);
    tx_group_free(e->g);
}

static int sock_fd(struct rill_channel *ch)
{
    return ((struct rill_epoll_channel *)ch)->fd;
}

/* ---- half-close ---- */

/* Server side: collect, and when the peer's output ends, answer "bye" and
 * shut our output too. */
struct half {
    struct tx_collector *col;
    _Atomic int replied;
};

static void half_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct half *h = rill_ctx_arg(ctx);
    if (ev->type == RILL_EVENT_INPUT_SHUTDOWN) {
        rill_ctx_write_and_flush(ctx, rill_buf_msg(tx_buf("bye", 3)), NULL);
        rill_channel_shutdown_output(rill_ctx_channel(ctx), NULL);
        atomic_store(&h->replied, 1);
    }
    rill_ctx_fire_user_event(ctx, ev);
}

static const struct rill_handler half_handler = { .name = "half", .user_event = half_event };

static int half_init(struct rill_channel *ch, void *arg)
{
    struct half *h = arg;
    int err = rill_pipeline_add_last(rill_channel_pipeline(ch), "half", &half_handler, h);
    return err ? err : tx_collector_init(ch, h->col);
}

Test(stream, half_close_both_ways)
{
    struct half h = { .col = tx_collector_new(64) };
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_ALLOW_HALF_CLOSURE, 1);
    struct env e;
    env_start(&e, half_init, &h, &o);

    struct tx_collector *c = tx_collector_new(64);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = e.g;
    co.init = tx_collector_init;
    co.arg = c;
    co.opts = o;
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, e.uri, &err);
    cr_assert_not_null(ch);

    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf("hello", 5)), NULL);
    struct rill_promise *p = tx_promise(NULL);
    rill_channel_shutdown_output(ch, p);
    cr_assert_eq(tx_wait_release(p), 0);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->output_shutdown) == 1));

    /* The server saw the data, then the end of input, and could still write. */
    cr_assert(TX_EVENTUALLY(atomic_load(&h.replied) == 1));
    cr_assert_eq(atomic_load(&h.col->got), 5);
    cr_assert_eq(memcmp(h.col->data, "hello", 5), 0);
    cr_assert_eq(atomic_load(&h.col->input_shutdown), 1);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == 3));
    cr_assert_eq(memcmp(c->data, "bye", 3), 0);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->input_shutdown) == 1));
    /* Both directions are shut now: both channels close. */
    cr_assert(TX_EVENTUALLY(!rill_channel_is_open(ch)));
    cr_assert(TX_EVENTUALLY(atomic_load(&h.col->inactive) == 1));
    cr_assert_eq(atomic_load(&c->exceptions), 0);
    rill_channel_release(ch);
    env_stop(&e);
    tx_collector_free(c);
    tx_collector_free(h.col);
}

Test(stream, peer_eof_closes_without_half_closure)
{
    struct tx_collector *sc = tx_collector_new(64);
    struct env e;
    env_start(&e, tx_collector_init, sc, NULL);
    struct tx_collector *c = tx_collector_new(64);
    struct rill_channel *ch = tx_connect(e.g, e.uri, tx_collector_init, c);
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf("abc", 3)), NULL);
    rill_channel_shutdown_output(ch, NULL);
    cr_assert(TX_EVENTUALLY(atomic_load(&sc->inactive) == 1));
    cr_assert_eq(atomic_load(&sc->got), 3, "data before the EOF is read first");
    cr_assert_eq(atomic_load(&sc->input_shutdown), 0, "no event: the channel closed");
    /* The server's close reaches us as EOF, which closes our side. */
    cr_assert(TX_EVENTUALLY(!rill_channel_is_open(ch)));
    cr_assert_eq(rill_channel_close_reason(ch), 0);
    rill_channel_release(ch);
    env_stop(&e);
    tx_collector_free(c);
    tx_collector_free(sc);
}

/* ---- writability with a reader that stops reading ---- */

#define CHUNK 16384

struct flood {
    _Atomic size_t written, max_pending, completed;
    _Atomic int stopped_by_watermark, resumed, failed;
    size_t limit;
};

static void flood_done(struct rill_promise *p, void *arg)
{
    struct flood *f = arg;
    if (rill_promise_result(p, NULL) == 0)
        atomic_fetch_add(&f->completed, 1);
    else
        atomic_fetch_add(&f->failed, 1);
}

/* Write while writable (checked after each write), as a well-behaved
 * handler does; resume when writability comes back. */
static void flood_some(struct rill_ctx *ctx)
{
    struct flood *f = rill_ctx_arg(ctx);
    struct rill_channel *ch = rill_ctx_channel(ctx);
    static uint8_t zeros[CHUNK];
    while (rill_channel_is_writable(ch) && atomic_load(&f->written) < f->limit) {
        struct rill_promise *p = tx_promise(rill_channel_loop(ch));
        rill_promise_add_listener(p, flood_done, f);
        rill_ctx_write(ctx, rill_buf_msg(tx_buf(zeros, CHUNK)), p);
        rill_promise_release(p);
        atomic_fetch_add(&f->written, CHUNK);
        size_t pend = rill_channel_pending_bytes(ch);
        if (pend > atomic_load(&f->max_pending))
            atomic_store(&f->max_pending, pend);
        rill_ctx_flush(ctx);
    }
    if (!rill_channel_is_writable(ch))
        atomic_store(&f->stopped_by_watermark, 1);
}

static void flood_active(struct rill_ctx *ctx)
{
    flood_some(ctx);
    rill_ctx_fire_active(ctx);
}

static void flood_writability(struct rill_ctx *ctx, bool writable)
{
    struct flood *f = rill_ctx_arg(ctx);
    if (writable) {
        atomic_fetch_add(&f->resumed, 1);
        flood_some(ctx);
    }
    rill_ctx_fire_writability_changed(ctx, writable);
}

static const struct rill_handler flood_handler = {
    .name = "flood",
    .active = flood_active,
    .writability_changed = flood_writability,
};

static int flood_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "flood", &flood_handler, arg);
}

Test(stream, stalled_reader_bounds_memory_by_the_watermark)
{
    struct flood f = { .limit = 64u << 20 };
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_WRITE_HIGH_WATER, 256 * 1024);
    rill_channel_opts_set(&o, RILL_OPT_WRITE_LOW_WATER, 64 * 1024);
    struct env e;
    env_start(&e, flood_init, &f, &o);

    /* The client does not read: auto-read off. */
    struct tx_collector *c = tx_collector_new(0);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = e.g;
    co.init = tx_collector_init;
    co.arg = c;
    rill_channel_opts_set(&co.opts, RILL_OPT_AUTO_READ, 0);
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, e.uri, &err);
    cr_assert_not_null(ch);

    cr_assert(TX_EVENTUALLY(atomic_load(&f.stopped_by_watermark) == 1));
    usleep(200 * 1000);
    size_t stuck = atomic_load(&f.written);
    usleep(200 * 1000);
    cr_assert_eq(atomic_load(&f.written), stuck, "the writer stopped");
    cr_assert_lt(stuck, 16u << 20, "only socket buffers + watermark were filled (%zu)", stuck);
    cr_assert_leq(atomic_load(&f.max_pending), 256 * 1024 + CHUNK);
    cr_assert_eq(atomic_load(&c->reads), 0);

    /* The reader resumes: everything arrives, the writer finishes. */
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_AUTO_READ, 1), 0);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == f.limit), "got %zu", atomic_load(&c->got));
    cr_assert_gt(atomic_load(&f.resumed), 0);
    cr_assert_eq(atomic_load(&f.completed), f.limit / CHUNK, "every write promise succeeded");
    cr_assert_eq(atomic_load(&f.failed), 0);
    tx_close(ch);
    env_stop(&e);
    tx_collector_free(c);
}

/* ---- peer reset in the middle of a write ---- */

Test(stream, peer_reset_mid_write_fails_promises_without_leaks)
{
    struct flood f = { .limit = 256u << 20 };
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_WRITE_HIGH_WATER, 4u << 20);
    rill_channel_opts_set(&o, RILL_OPT_WRITE_LOW_WATER, 1u << 20);
    struct env e;
    env_start(&e, flood_init, &f, &o);

    /* A raw client that reads a little, then resets (SO_LINGER 0). */
    struct rill_addr a;
    cr_assert_eq(rill_addr_parse(e.uri, &a), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a.sa, a.len), 0);
    char buf[65536];
    size_t got = 0;
    while (got < (1u << 20)) {
        ssize_t n = read(fd, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    cr_assert(TX_EVENTUALLY(atomic_load(&f.stopped_by_watermark) == 1));
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);

    /* Every promise completes: the sent ones succeed, the queued ones fail. */
    cr_assert(TX_EVENTUALLY(rill_server_child_count(e.srv) == 0));
    size_t n = atomic_load(&f.written) / CHUNK;
    cr_assert(TX_EVENTUALLY(atomic_load(&f.completed) + atomic_load(&f.failed) == n),
              "%zu + %d of %zu", atomic_load(&f.completed), atomic_load(&f.failed), n);
    cr_assert_gt(atomic_load(&f.failed), 0);
    env_stop(&e);
}

/* ---- auto-read off: one buffer per read request ---- */

Test(stream, auto_read_off_reads_on_request)
{
    struct env e;
    env_start(&e, tx_echo_init, NULL, NULL);
    struct tx_collector *c = tx_collector_new(100000);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = e.g;
    co.init = tx_collector_init;
    co.arg = c;
    rill_channel_opts_set(&co.opts, RILL_OPT_AUTO_READ, 0);
    rill_channel_opts_set(&co.opts, RILL_OPT_RECV_BUF_MAX, 1024);
    rill_channel_opts_set(&co.opts, RILL_OPT_RECV_BUF_INIT, 1024);
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, e.uri, &err);
    cr_assert_not_null(ch);
    static uint8_t data[20000];
    memset(data, 'q', sizeof(data));
    rill_channel_write_and_flush(ch, rill_buf_msg(tx_buf(data, sizeof(data))), NULL);
    usleep(100 * 1000);
    cr_assert_eq(atomic_load(&c->reads), 0, "nothing is read before a request");
    rill_channel_read(ch);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->reads) == 1));
    usleep(50 * 1000);
    cr_assert_eq(atomic_load(&c->reads), 1, "one buffer per request");
    for (int i = 0; i < 200 && atomic_load(&c->got) < sizeof(data); i++) {
        int before = atomic_load(&c->reads);
        rill_channel_read(ch);
        cr_assert(TX_EVENTUALLY(atomic_load(&c->reads) == before + 1));
    }
    cr_assert_eq(atomic_load(&c->got), sizeof(data));
    tx_close(ch);
    env_stop(&e);
    tx_collector_free(c);
}

/* ---- options ---- */

static int get_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    cr_assert_eq(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

Test(stream, socket_options)
{
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_SO_KEEPALIVE, 1);
    rill_channel_opts_set(&o, RILL_OPT_SO_RCVBUF, 65536);
    struct tx_collector *sc = tx_collector_new(0);
    struct env e;
    env_start(&e, tx_collector_init, sc, &o);
    struct rill_channel *ch = tx_connect(e.g, e.uri, NULL, NULL);
    int fd = sock_fd(ch);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 1, "TCP_NODELAY is on by default");
    cr_assert_eq(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_TCP_NODELAY, 0), 0);
    cr_assert_eq(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_SO_SNDBUF, 32768), 0);
    cr_assert_geq(get_int(fd, SOL_SOCKET, SO_SNDBUF), 32768);
    cr_assert_eq(rill_channel_set_option(ch, RILL_OPT_EDGE_TRIGGERED, 0), -EBUSY,
                 "the trigger mode is fixed once the socket is watched");

    /* The child got the server's child options. */
    cr_assert(TX_EVENTUALLY(atomic_load(&sc->active) == 1));
    struct rill_channel *listener = rill_server_listener(e.srv, 0);
    cr_assert_eq(get_int(((struct rill_epoll_server *)listener)->fd, SOL_SOCKET, SO_REUSEADDR), 1,
                 "servers reuse addresses by default");
    tx_close(ch);
    env_stop(&e);
    tx_collector_free(sc);
}

/* ---- file regions over TCP ---- */

struct file_send {
    const char *path;
    _Atomic int done, result;
};

struct file_job {
    struct file_send *fs;
    struct rill_channel *ch; /* a reference */
};

/* Close once the region is handed to the kernel (Netty's CLOSE listener). */
static void file_written(struct rill_promise *p, void *arg)
{
    struct file_job *j = arg;
    atomic_store(&j->fs->result, rill_promise_result(p, NULL));
    atomic_store(&j->fs->done, 1);
    rill_channel_close(j->ch, NULL);
    rill_channel_release(j->ch);
    free(j);
}

static void file_active(struct rill_ctx *ctx)
{
    struct file_send *fs = rill_ctx_arg(ctx);
    struct rill_channel *ch = rill_ctx_channel(ctx);
    struct rill_file_region *r;
    cr_assert_eq(rill_file_region_open(fs->path, 100, RILL_FILE_REGION_TO_END, &r), 0);
    struct file_job *j = malloc(sizeof(*j));
    j->fs = fs;
    j->ch = rill_channel_retain(ch);
    struct rill_promise *p = tx_promise(rill_channel_loop(ch));
    rill_promise_add_listener(p, file_written, j);
    rill_ctx_write(ctx, rill_buf_msg(tx_buf("HDR:", 4)), NULL);
    rill_ctx_write_and_flush(ctx, rill_file_region_msg(r), p);
    rill_promise_release(p);
    rill_ctx_fire_active(ctx);
}

static const struct rill_handler file_handler = { .name = "file", .active = file_active };

static int file_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "file", &file_handler, arg);
}

static void file_region_roundtrip(bool edge)
{
    char path[] = "/tmp/rill-sendfile-XXXXXX";
    int fd = mkstemp(path);
    size_t size = 3u << 20;
    uint8_t *b = malloc(size);
    for (size_t i = 0; i < size; i++)
        b[i] = (uint8_t)(i ^ (i >> 9));
    cr_assert_eq(write(fd, b, size), (ssize_t)size);
    close(fd);

    struct file_send fs = { .path = path };
    struct rill_channel_opts o;
    rill_channel_opts_init(&o);
    rill_channel_opts_set(&o, RILL_OPT_EDGE_TRIGGERED, edge);
    rill_channel_opts_set(&o, RILL_OPT_SO_SNDBUF, 65536);
    struct env e;
    env_start(&e, file_init, &fs, &o);
    size_t expect = 4 + size - 100;
    struct tx_collector *c = tx_collector_new(expect);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = e.g;
    co.init = tx_collector_init;
    co.arg = c;
    co.opts = o;
    int err;
    struct rill_channel *ch = tx_connect_opts(&co, e.uri, &err);
    cr_assert_not_null(ch);
    cr_assert(TX_EVENTUALLY(!rill_channel_is_open(ch)), "the server closes after the file");
    cr_assert_eq(atomic_load(&fs.done), 1);
    cr_assert_eq(atomic_load(&fs.result), 0);
    cr_assert_eq(atomic_load(&c->got), expect);
    cr_assert_eq(memcmp(c->data, "HDR:", 4), 0);
    cr_assert_eq(memcmp(c->data + 4, b + 100, size - 100), 0);
    unlink(path);
    rill_channel_release(ch);
    env_stop(&e);
    tx_collector_free(c);
    free(b);
}

Test(stream, file_region_sendfile_edge)
{
    file_region_roundtrip(true);
}

Test(stream, file_region_sendfile_level)
{
    file_region_roundtrip(false);
}

Test(stream, empty_writes_complete_in_order)
{
    struct env e;
    env_start(&e, tx_echo_init, NULL, NULL);
    struct tx_collector *c = tx_collector_new(64);
    struct rill_channel *ch = tx_connect(e.g, e.uri, tx_collector_init, c);
    struct rill_promise *p1 = tx_promise(NULL), *p2 = tx_promise(NULL), *p3 = tx_promise(NULL);
    struct rill_buf *empty;
    cr_assert_eq(rill_buf_alloc(16, &empty), 0);
    rill_channel_write(ch, rill_buf_msg(empty), p1);
    rill_channel_write(ch, rill_buf_msg(tx_buf("ab", 2)), p2);
    cr_assert_eq(rill_buf_alloc(16, &empty), 0);
    rill_channel_write_and_flush(ch, rill_buf_msg(empty), p3);
    cr_assert_eq(tx_wait_release(p1), 0);
    cr_assert_eq(tx_wait_release(p2), 0);
    cr_assert_eq(tx_wait_release(p3), 0);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == 2));
    cr_assert(rill_channel_is_open(ch));
    tx_close(ch);
    env_stop(&e);
    tx_collector_free(c);
}
