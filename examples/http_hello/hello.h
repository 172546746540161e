/* http_hello: the pieces shared by its files (main.c: options, server,
 * signals; handler.c: the routes; static.c: files from --root). */
#ifndef HTTP_HELLO_H
#define HTTP_HELLO_H

#include <stddef.h>

struct rill_ctx;
struct rill_handler;
struct rill_http_request;

struct hello_config {
    int root_fd; /* the --root directory, or -1 */
};

/* The application handler; its arg is a struct hello_config (borrowed). */
extern const struct rill_handler hello_handler;

/* Write a FULL response with a text body (and Content-Type text/plain). */
void hello_reply_text(struct rill_ctx *ctx, unsigned status, const char *text);

/* Serve @path (the part of the target after "/static/", @len bytes, not
 * yet percent-decoded) from @root_fd for a GET or HEAD request. */
void hello_static(struct rill_ctx *ctx, const struct rill_http_request *req, const char *path,
                  size_t len, int root_fd);

#endif
