/* file_server: files sent with sendfile(2) through file regions.
 *
 *   file_server [--root DIR] [--port N]             serve the files in DIR
 *   file_server --get NAME [--uri tcp://host:port]  fetch one, write it to stdout
 *
 * Protocol: the client sends "GET <name>\n"; the server answers
 * "OK <size>\n" followed by the file's bytes, or "ERR <reason>\n". Several
 * requests may follow on one connection. Names are plain file names inside
 * DIR (no '/', no "..").
 *
 * It shows:
 *   - rill_file_region_open: a message that stands for a file range; the
 *     transport sends it with sendfile, so the file's bytes never enter
 *     user memory (it falls back to read + write where sendfile cannot be
 *     used), interleaved in order with ordinary buffers (the header line)
 *   - a small line splitter that keeps a partial line across reads
 *   - the client side reading a length-prefixed body off a stream
 * Try: file_server --root /usr/share/common-licenses & file_server --get GPL-3 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rill/addr.h"
#include "rill/bootstrap.h"
#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/error.h"
#include "rill/file_region.h"
#include "rill/future.h"
#include "rill/loop_group.h"
#include "rill/pipeline.h"

#define LINE_MAX_LEN 1024

static int root_fd = -1; /* the served directory, opened once */

static void send_text(struct rill_ctx *ctx, const char *text)
{
    struct rill_buf *b;
    if (rill_buf_copy_from(text, strlen(text), &b) == 0)
        rill_ctx_write(ctx, rill_buf_msg(b), NULL);
}

/* Answer one request line (without its newline). */
static void serve(struct rill_ctx *ctx, const char *line)
{
    char text[64];
    const char *name = strncmp(line, "GET ", 4) == 0 ? line + 4 : NULL;
    if (!name || !*name || strchr(name, '/') || strcmp(name, "..") == 0 || strcmp(name, ".") == 0) {
        send_text(ctx, "ERR bad request\n");
        return;
    }
    int fd = openat(root_fd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(text, sizeof(text), "ERR %s\n", fd < 0 ? strerror(errno) : "not a file");
        if (fd >= 0)
            close(fd);
        send_text(ctx, text);
        return;
    }
    struct rill_file_region *r;
    int err = rill_file_region_new(fd, 0, (uint64_t)st.st_size, RILL_FILE_REGION_OWN_FD, &r);
    if (err) {
        close(fd);
        snprintf(text, sizeof(text), "ERR %s\n", rill_strerror(err));
        send_text(ctx, text);
        return;
    }
    snprintf(text, sizeof(text), "OK %lld\n", (long long)st.st_size);
    send_text(ctx, text);
    rill_ctx_write(ctx, rill_file_region_msg(r), NULL); /* sent with sendfile */
}

/* ---- the line splitter and request handler ---- */

struct lines {
    char buf[LINE_MAX_LEN];
    size_t len;
};

static void lines_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct lines *st = rill_ctx_state(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    uint8_t c;
    while (b && rill_buf_read_u8(b, &c) == 0) {
        if (c == '\r')
            continue;
        if (c != '\n') {
            if (st->len + 1 >= sizeof(st->buf)) {
                rill_msg_release(msg);
                send_text(ctx, "ERR line too long\n");
                rill_ctx_flush(ctx);
                rill_ctx_close(ctx, NULL);
                return;
            }
            st->buf[st->len++] = (char)c;
            continue;
        }
        st->buf[st->len] = '\0';
        st->len = 0;
        serve(ctx, st->buf);
    }
    rill_msg_release(msg);
}

static void lines_read_complete(struct rill_ctx *ctx)
{
    rill_ctx_flush(ctx); /* one flush for all the answers of this read */
}

static const struct rill_handler file_handler = {
    .name = "file",
    .ctx_size = sizeof(struct lines),
    .read = lines_read,
    .read_complete = lines_read_complete,
};

static int child_init(struct rill_channel *ch, void *arg)
{
    (void)arg;
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "file", &file_handler, NULL);
}

/* ---- the client (--get) ---- */

struct fetch {
    char header[64];
    size_t hlen;
    long long size, got; /* body: expected (-1: header not complete) and received */
    int result;
    struct rill_promise *done;
};

static void fetch_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct fetch *f = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    uint8_t c;
    while (b && f->size < 0 && rill_buf_read_u8(b, &c) == 0) {
        if (c != '\n' && f->hlen + 1 < sizeof(f->header)) {
            f->header[f->hlen++] = (char)c;
            continue;
        }
        f->header[f->hlen] = '\0';
        if (strncmp(f->header, "OK ", 3) != 0) {
            fprintf(stderr, "file_server: %s\n", f->header);
            f->result = -ENOENT;
            rill_promise_succeed(f->done, NULL, NULL);
            rill_msg_release(msg);
            return;
        }
        f->size = atoll(f->header + 3);
    }
    if (b && f->size >= 0) {
        size_t len;
        const uint8_t *p = rill_buf_read_ptr(b, &len);
        if (p && len && fwrite(p, 1, len, stdout) != len)
            f->result = -EIO;
        f->got += (long long)len;
    }
    rill_msg_release(msg);
    if (f->size >= 0 && f->got >= f->size)
        rill_promise_succeed(f->done, NULL, NULL);
}

static void fetch_inactive(struct rill_ctx *ctx)
{
    struct fetch *f = rill_ctx_arg(ctx);
    if (rill_promise_fail(f->done, RILL_ECLOSED) == 0)
        f->result = RILL_ECLOSED;
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler fetch_handler = {
    .name = "fetch",
    .read = fetch_read,
    .inactive = fetch_inactive,
};

static int fetch_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "fetch", &fetch_handler, arg);
}

static int get(struct rill_loop_group *g, const char *uri, const char *name)
{
    struct fetch f = { .size = -1 };
    rill_promise_new(NULL, &f.done);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = fetch_init;
    co.arg = &f;
    struct rill_promise *cf;
    int err = rill_client_connect(&co, uri, &cf);
    struct rill_channel *ch = NULL;
    if (!err) {
        err = rill_promise_wait(cf, -1);
        ch = err ? NULL : rill_client_channel(cf);
        rill_promise_release(cf);
    }
    if (ch) {
        char req[LINE_MAX_LEN];
        snprintf(req, sizeof(req), "GET %s\n", name);
        struct rill_buf *b;
        if (rill_buf_copy_from(req, strlen(req), &b) == 0)
            rill_channel_write_and_flush(ch, rill_buf_msg(b), NULL);
        rill_promise_wait(f.done, -1);
        err = f.result;
        rill_channel_close(ch, NULL);
        rill_promise_wait(rill_channel_close_future(ch), -1);
        rill_channel_release(ch);
        if (!err)
            fprintf(stderr, "file_server: %lld bytes\n", f.got);
    }
    rill_promise_release(f.done);
    if (err)
        fprintf(stderr, "file_server: %s: %s\n", uri, rill_strerror(err));
    return err;
}

int main(int argc, char **argv)
{
    const char *root = ".", *get_name = NULL, *uri = "tcp://127.0.0.1:8070";
    int port = 8070;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--root") == 0)
            root = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--get") == 0)
            get_name = argv[i + 1];
        else if (strcmp(argv[i], "--uri") == 0)
            uri = argv[i + 1];
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct rill_loop_group *g;
    struct rill_loop_group_opts go;
    rill_loop_group_opts_init(&go);
    go.nloops = 1;
    go.name = "files";
    if (rill_loop_group_new(&go, &g) != 0)
        return 1;
    int err = 0;
    if (get_name) {
        err = get(g, uri, get_name);
    } else {
        root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0) {
            perror(root);
            return 1;
        }
        struct rill_server_opts so;
        rill_server_opts_init(&so);
        so.boss = g;
        so.child_init = child_init;
        char bind_uri[64];
        snprintf(bind_uri, sizeof(bind_uri), "tcp://127.0.0.1:%d", port);
        struct rill_server *srv;
        err = rill_server_bind(&so, bind_uri, &srv);
        if (!err)
            err = rill_promise_wait(rill_server_bound(srv), -1);
        if (err) {
            fprintf(stderr, "file_server: %s: %s\n", bind_uri, rill_strerror(err));
        } else {
            printf("serving %s on port %d\n", root, rill_addr_port(rill_server_local_addr(srv)));
            fflush(stdout);
            int sig;
            sigwait(&stop, &sig);
            rill_promise_wait(rill_server_close(srv, true), -1);
            rill_server_free(srv);
        }
        close(root_fd);
    }
    rill_promise_wait(rill_loop_group_shutdown(g, 0, 1000000000), -1);
    rill_loop_group_free(g);
    return err ? 1 : 0;
}
