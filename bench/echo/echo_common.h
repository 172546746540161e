/* Shared bits of the C echo servers in bench/echo: command line, framing
 * constants and the "ready" line that run.sh waits for.
 *
 * Every server takes the same arguments:
 *   <server> <port> <raw|framed> [server-specific options]
 * Port 0 asks the kernel for a free port; the ready line names the real one:
 *   ready port=<port> mode=<raw|framed> pid=<pid>
 *
 * Framed echo: each frame is a 4-byte big-endian payload length followed by
 * the payload; the server echoes whole frames, unchanged. */
#ifndef ECHO_COMMON_H
#define ECHO_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ECHO_READ_MAX  (64 * 1024)        /* bytes asked of one read(): same for every server */
#define ECHO_FRAME_MAX (16 * 1024 * 1024) /* a larger length closes the connection */
#define ECHO_BACKLOG   1024

enum echo_mode { ECHO_RAW, ECHO_FRAMED };

struct echo_args {
    int port;
    enum echo_mode mode;
};

static inline uint32_t echo_be32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Parses argv[1] (port) and argv[2] (mode); returns the index of the first
 * unparsed argument, or exits with a usage message. */
static inline int echo_parse_args(int argc, char **argv, struct echo_args *a, const char *extra)
{
    char *end;
    long port;

    if (argc < 3)
        goto usage;
    port = strtol(argv[1], &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        goto usage;
    a->port = (int)port;
    if (strcmp(argv[2], "raw") == 0)
        a->mode = ECHO_RAW;
    else if (strcmp(argv[2], "framed") == 0)
        a->mode = ECHO_FRAMED;
    else
        goto usage;
    return 3;
usage:
    fprintf(stderr, "usage: %s <port> <raw|framed>%s%s\n", argv[0], extra ? " " : "",
            extra ? extra : "");
    exit(2);
}

static inline void echo_ready(int port, enum echo_mode mode)
{
    printf("ready port=%d mode=%s pid=%d\n", port, mode == ECHO_RAW ? "raw" : "framed",
           (int)getpid());
    fflush(stdout);
}

/* Length of the complete frames at the start of buf[0..len); *need is set to
 * the byte count of the first incomplete frame when its header is known
 * (0 otherwise), and to (size_t)-1 when a length exceeds ECHO_FRAME_MAX. */
static inline size_t echo_frames_len(const uint8_t *buf, size_t len, size_t *need)
{
    size_t p = 0;

    *need = 0;
    while (len - p >= 4) {
        uint32_t n = echo_be32(buf + p);
        if (n > ECHO_FRAME_MAX) {
            *need = (size_t)-1;
            return p;
        }
        if (len - p - 4 < n) {
            *need = 4 + (size_t)n;
            break;
        }
        p += 4 + (size_t)n;
    }
    return p;
}

#endif /* ECHO_COMMON_H */
