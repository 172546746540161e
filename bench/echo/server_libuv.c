/* libuv echo server: uv_tcp_t, uv_read_start with an alloc_cb, uv_write.
 *
 *   echo_server_libuv <port> <raw|framed> [--no-pool]
 *
 * The textbook libuv echo mallocs a 64 KiB buffer in alloc_cb and frees it in
 * the write callback; that measures brk/free more than libuv. This one does
 * what a user who cares about the hot path does: buffers ("blocks", with the
 * uv_write_t inside) come from a free list, are handed to alloc_cb, written
 * back with uv_write without a copy, and return to the free list in the write
 * callback. In steady state nothing is allocated.
 *
 * raw:    alloc_cb hands out a block (reads of at most 64 KiB); read_cb writes
 *         the bytes it got straight back from that block.
 * framed: the connection keeps one block that accumulates input; alloc_cb
 *         hands out its free space (at most 64 KiB). After a read the whole
 *         frames at its front go out in one uv_write from that block, and the
 *         incomplete tail (if any) is copied to a fresh block that becomes
 *         the accumulator. A frame larger than a block gets a larger one.
 *
 * --no-pool frees every block in the write callback and mallocs a new one in
 * alloc_cb: the textbook version, kept to compare with.
 *
 * Back-pressure: when more than 1 MiB waits in the write queue the
 * connection stops reading until it drops below 256 KiB. One loop, one
 * thread, TCP_NODELAY; SIGINT/SIGTERM close every handle and the loop ends. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "echo_common.h"

#define BLOCK_RAW    ECHO_READ_MAX
#define BLOCK_FRAMED (2 * ECHO_READ_MAX + 4096) /* an incomplete 64 KiB frame + one read */
#define WQ_HIGH      (1024 * 1024)
#define WQ_LOW       (256 * 1024)

struct block {
    uv_write_t req; /* req.data points back to the block */
    struct block *next;
    size_t cap;
    uint8_t data[];
};

struct conn {
    uv_tcp_t tcp;      /* first: the handle pointer is the conn pointer */
    struct block *acc; /* framed: accumulated input */
    size_t acc_len;
    bool paused;
    struct conn *prev, *next;
};

static uv_loop_t *loop;
static enum echo_mode mode;
static size_t block_size;
static struct block *free_blocks;
static struct conn *conns;
static uv_tcp_t server;
static uv_signal_t sigint, sigterm;
static unsigned long accepted, blocks_made;
static bool no_pool;

static struct block *block_get(size_t cap)
{
    struct block *b = free_blocks;

    if (cap <= block_size && b && !no_pool) {
        free_blocks = b->next;
        return b;
    }
    if (cap < block_size)
        cap = block_size;
    b = malloc(sizeof(*b) + cap);
    if (!b) {
        fprintf(stderr, "echo_server_libuv: out of memory\n");
        exit(1);
    }
    b->req.data = b;
    b->cap = cap;
    blocks_made++;
    return b;
}

static void block_put(struct block *b)
{
    if (b->cap != block_size || no_pool) { /* an oversized block for a large frame */
        free(b);
        return;
    }
    b->next = free_blocks;
    free_blocks = b;
}

static void close_cb(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;

    if (c->acc)
        block_put(c->acc);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void conn_close(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = (struct conn *)h;

    if (mode == ECHO_RAW) {
        struct block *b = block_get(block_size);
        *buf = uv_buf_init((char *)b->data, ECHO_READ_MAX);
        return;
    }
    if (!c->acc) {
        c->acc = block_get(block_size);
        c->acc_len = 0;
    }
    size_t room = c->acc->cap - c->acc_len;
    *buf =
        uv_buf_init((char *)c->acc->data + c->acc_len, room > ECHO_READ_MAX ? ECHO_READ_MAX : room);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status)
{
    struct conn *c = (struct conn *)req->handle;

    block_put(req->data);
    if (c->paused && status == 0 && c->tcp.write_queue_size < WQ_LOW &&
        !uv_is_closing((uv_handle_t *)&c->tcp)) {
        c->paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    }
}

static void send_block(struct conn *c, struct block *b, size_t len)
{
    uv_buf_t wb = uv_buf_init((char *)b->data, (unsigned)len);

    if (uv_write(&b->req, (uv_stream_t *)&c->tcp, &wb, 1, write_cb) < 0) {
        block_put(b);
        conn_close(c);
        return;
    }
    if (c->tcp.write_queue_size > WQ_HIGH) {
        c->paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void read_framed(struct conn *c, size_t nread)
{
    size_t need, k;

    c->acc_len += nread;
    k = echo_frames_len(c->acc->data, c->acc_len, &need);
    if (need == (size_t)-1) {
        conn_close(c);
        return;
    }
    if (k > 0) {
        struct block *full = c->acc;
        size_t tail = c->acc_len - k;
        c->acc = NULL;
        c->acc_len = 0;
        if (tail) {
            c->acc = block_get(need);
            memcpy(c->acc->data, full->data + k, tail);
            c->acc_len = tail;
        }
        send_block(c, full, k);
    } else if (need > c->acc->cap) { /* a frame larger than the block */
        struct block *big = block_get(need + ECHO_READ_MAX);
        memcpy(big->data, c->acc->data, c->acc_len);
        block_put(c->acc);
        c->acc = big;
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)s;

    if (mode == ECHO_RAW) {
        struct block *b =
            buf->base ? (struct block *)((char *)buf->base - offsetof(struct block, data)) : NULL;
        if (nread > 0) {
            send_block(c, b, (size_t)nread);
            return;
        }
        if (b)
            block_put(b);
    } else if (nread > 0) {
        read_framed(c, (size_t)nread);
        return;
    }
    if (nread < 0) /* UV_EOF or an error; 0 is EAGAIN */
        conn_close(c);
}

static void on_connection(uv_stream_t *srv, int status)
{
    struct conn *c;

    if (status < 0)
        return;
    if (!(c = calloc(1, sizeof(*c)))) {
        fprintf(stderr, "echo_server_libuv: out of memory\n");
        exit(1);
    }
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void signal_cb(uv_signal_t *h, int sig)
{
    for (struct conn *c = conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&server, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
}

int main(int argc, char **argv)
{
    struct echo_args a;
    struct sockaddr_in sin;
    int slen = sizeof(sin), r;

    for (int i = echo_parse_args(argc, argv, &a, "[--no-pool]"); i < argc; i++) {
        if (strcmp(argv[i], "--no-pool") != 0) {
            fprintf(stderr, "echo_server_libuv: unknown option %s\n", argv[i]);
            return 2;
        }
        no_pool = true;
    }
    mode = a.mode;
    block_size = mode == ECHO_RAW ? BLOCK_RAW : BLOCK_FRAMED;
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", a.port, &sin);
    if ((r = uv_tcp_bind(&server, (const struct sockaddr *)&sin, 0)) < 0 ||
        (r = uv_listen((uv_stream_t *)&server, ECHO_BACKLOG, on_connection)) < 0 ||
        (r = uv_tcp_getsockname(&server, (struct sockaddr *)&sin, &slen)) < 0) {
        fprintf(stderr, "echo_server_libuv: listen on port %d: %s\n", a.port, uv_strerror(r));
        return 1;
    }
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, signal_cb, SIGINT);
    uv_signal_start(&sigterm, signal_cb, SIGTERM);
    fprintf(stderr, "echo_server_libuv: libuv %s, block %zu bytes%s\n", uv_version_string(),
            block_size, no_pool ? ", malloc per read" : "");
    echo_ready(ntohs(sin.sin_port), a.mode);

    uv_run(loop, UV_RUN_DEFAULT);

    while (free_blocks) {
        struct block *b = free_blocks;
        free_blocks = b->next;
        free(b);
    }
    uv_loop_close(loop);
    fprintf(stderr, "echo_server_libuv: %lu connections accepted, %lu blocks made, exiting\n",
            accepted, blocks_made);
    return 0;
}
