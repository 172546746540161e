/* Files from --root under /static/: the head, then the file as a file
 * region (the transport sends it with sendfile, so its bytes never enter
 * user memory), then an empty last content. The path is percent-decoded,
 * ".." segments are refused, and the file is opened beneath the root
 * (openat2 RESOLVE_BENEATH where the kernel has it), so neither ".." nor a
 * symbolic link leads out of it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hello.h"
#include "rill/file_region.h"
#include "rill/http.h"
#include "rill/pipeline.h"

#define PATH_MAX_LEN 1024

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode @in into @out (NUL-terminated). Returns 0, or the status
 * to answer: 400 (bad escape, NUL, absolute), 403 (a ".." segment), 414. */
static unsigned decode_path(const char *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            int h = i + 2 < len ? hexval(in[i + 1]) : -1;
            int l = i + 2 < len ? hexval(in[i + 2]) : -1;
            if (h < 0 || l < 0)
                return 400;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (c == '\0')
            return 400;
        if (n + 1 >= cap)
            return 414;
        out[n++] = c;
    }
    out[n] = '\0';
    if (n == 0 || out[0] == '/')
        return n == 0 ? 404 : 400;
    for (const char *seg = out; seg;) {
        const char *end = strchr(seg, '/');
        size_t sl = end ? (size_t)(end - seg) : strlen(seg);
        if (sl == 2 && seg[0] == '.' && seg[1] == '.')
            return 403;
        seg = end ? end + 1 : NULL;
    }
    return 0;
}

static int open_beneath(int root_fd, const char *path)
{
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS) /* an old kernel: the ".." check above holds */
        fd = openat(root_fd, path, O_RDONLY | O_CLOEXEC);
    return fd;
}

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".htm", "text/html; charset=utf-8" },
        { ".txt", "text/plain; charset=utf-8" },
        { ".css", "text/css" },
        { ".js", "text/javascript" },
        { ".json", "application/json" },
        { ".png", "image/png" },
        { ".jpg", "image/jpeg" },
        { ".jpeg", "image/jpeg" },
        { ".gif", "image/gif" },
        { ".svg", "image/svg+xml" },
    };
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

void hello_static(struct rill_ctx *ctx, const struct rill_http_request *req, const char *path,
                  size_t len, int root_fd)
{
    if (req->method_id != RILL_HTTP_GET && req->method_id != RILL_HTTP_HEAD) {
        hello_reply_text(ctx, 405, "method not allowed\n");
        return;
    }
    char name[PATH_MAX_LEN];
    unsigned status = decode_path(path, len, name, sizeof(name));
    if (status) {
        hello_reply_text(ctx, status, status == 403 ? "forbidden\n" : "bad path\n");
        return;
    }
    int fd = open_beneath(root_fd, name);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = fd < 0 ? errno : 0;
        if (fd >= 0)
            close(fd);
        if (err == EXDEV || err == ELOOP || err == EACCES || err == EPERM)
            hello_reply_text(ctx, 403, "forbidden\n");
        else
            hello_reply_text(ctx, 404, "not found\n");
        return;
    }
    struct rill_file_region *region = NULL;
    if (req->method_id == RILL_HTTP_GET &&
        rill_file_region_new(fd, 0, (uint64_t)st.st_size, RILL_FILE_REGION_OWN_FD, &region) != 0) {
        close(fd);
        hello_reply_text(ctx, 500, "cannot send the file\n");
        return;
    }
    if (!region)
        close(fd); /* HEAD: the size is all we needed */
    struct rill_http_response *r;
    struct rill_http_content *last;
    if (rill_http_response_new_head(200, &r) != 0) {
        if (region)
            rill_file_region_release(region);
        rill_ctx_close(ctx, NULL);
        return;
    }
    rill_http_headers_add(&r->http.headers, "Server", "rill");
    rill_http_headers_add(&r->http.headers, "Content-Type", content_type(name));
    rill_http_headers_add_u64(&r->http.headers, "Content-Length", (uint64_t)st.st_size);
    rill_ctx_write(ctx, &r->http.msg, NULL);
    if (region)
        rill_ctx_write(ctx, rill_file_region_msg(region), NULL);
    if (rill_http_content_new(NULL, true, &last) != 0) {
        rill_ctx_close(ctx, NULL);
        return;
    }
    rill_ctx_write(ctx, &last->msg, NULL);
}
