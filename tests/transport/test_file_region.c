/* Tests for file regions (include/rill/file_region.h): sendfile over a
 * socket, partial transfers against a full socket, the read + write
 * fallback for fds sendfile refuses (a pipe), a file truncated under a
 * region, fd ownership, and the message type. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rill/file_region.h"
#include "util/testutil.h"

TestSuite(file_region, .timeout = 60, .fini = rill_test_no_leaks);

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 131u + (i >> 8));
}

/* A temporary file of @size pattern bytes, already unlinked. */
static int temp_file(size_t size)
{
    char path[] = "/tmp/rill-fr-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    uint8_t *b = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        b[i] = pattern(i);
    cr_assert_eq(write(fd, b, size), (ssize_t)size);
    free(b);
    return fd;
}

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Move the whole region into sv[0], draining sv[1]; check the bytes.
 * *eagains counts the transfers the socket cut short. */
static size_t pump(struct rill_file_region *r, int sv[2], uint64_t first, uint64_t max,
                   int *eagains)
{
    size_t got = 0;
    uint8_t buf[8192];
    for (int guard = 0; guard < 1000000; guard++) {
        uint64_t left = rill_file_region_remaining(r);
        int64_t n = rill_file_region_transfer(r, sv[0], max);
        if (n == -EAGAIN || (n > 0 && (uint64_t)n < left && (uint64_t)n < max)) {
            (*eagains)++; /* the socket was full, or took part of what was asked */
        } else {
            cr_assert_geq(n, 0, "transfer: %lld", (long long)n);
            if (n == 0 && got == rill_file_region_count(r))
                break;
        }
        ssize_t k;
        while ((k = read(sv[1], buf, sizeof(buf))) > 0) {
            for (ssize_t i = 0; i < k; i++)
                cr_assert_eq(buf[i], pattern(first + got + (size_t)i), "byte %zu", got + (size_t)i);
            got += (size_t)k;
        }
        if (rill_file_region_remaining(r) == 0 && got == rill_file_region_count(r))
            break;
    }
    return got;
}

Test(file_region, sendfile_whole_file_through_full_socket)
{
    size_t size = 3 * 1024 * 1024 + 17;
    int fd = temp_file(size);
    struct rill_file_region *r;
    cr_assert_eq(rill_file_region_new(fd, 0, RILL_FILE_REGION_TO_END, RILL_FILE_REGION_OWN_FD, &r),
                 0);
    cr_assert_eq(rill_file_region_msg(r)->type, RILL_MSG_FILE_REGION);
    cr_assert_eq(rill_file_region_from_msg(rill_file_region_msg(r)), r);
    cr_assert_eq(rill_file_region_count(r), size);

    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblock(sv[0]);
    nonblock(sv[1]);
    int eagains = 0;
    cr_assert_eq(pump(r, sv, 0, UINT64_MAX, &eagains), size);
    cr_assert_gt(eagains, 0, "the socket never filled up");
    cr_assert_eq(rill_file_region_transferred(r), size);
    cr_assert_not(rill_file_region_used_fallback(r));
    cr_assert_eq(rill_file_region_transfer(r, sv[0], 100), 0);
    cr_assert(rill_file_region_release(r));
    cr_assert_eq(fcntl(fd, F_GETFD), -1, "an owned fd is closed with the region");
    close(sv[0]);
    close(sv[1]);
}

Test(file_region, middle_range_with_small_steps)
{
    int fd = temp_file(100000);
    struct rill_file_region *r;
    cr_assert_eq(rill_file_region_new(fd, 1234, 50000, 0, &r), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblock(sv[0]);
    nonblock(sv[1]);
    int eagains = 0;
    cr_assert_eq(pump(r, sv, 1234, 777, &eagains), 50000);
    rill_file_region_release(r);
    cr_assert_eq(fcntl(fd, F_GETFD), 0, "a borrowed fd stays open");
    cr_assert_eq(lseek(fd, 0, SEEK_CUR), 100000, "positional reads leave the offset alone");
    close(fd);
    close(sv[0]);
    close(sv[1]);
}

Test(file_region, pipe_source_falls_back_without_losing_bytes)
{
    size_t size = 200000;
    int p[2];
    cr_assert_eq(pipe(p), 0);
    /* Feed the pipe from a child so it never blocks us. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        uint8_t b[4096];
        for (size_t off = 0; off < size;) {
            size_t n = size - off < sizeof(b) ? size - off : sizeof(b);
            for (size_t i = 0; i < n; i++)
                b[i] = pattern(off + i);
            if (write(p[1], b, n) != (ssize_t)n)
                _exit(1);
            off += n;
        }
        _exit(0);
    }
    close(p[1]);
    struct rill_file_region *r;
    cr_assert_eq(rill_file_region_new(p[0], 0, size, RILL_FILE_REGION_OWN_FD, &r), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    nonblock(sv[0]);
    nonblock(sv[1]);
    int eagains = 0;
    cr_assert_eq(pump(r, sv, 0, UINT64_MAX, &eagains), size);
    cr_assert(rill_file_region_used_fallback(r));
    cr_assert_gt(eagains, 0);
    rill_file_region_release(r);
    close(sv[0]);
    close(sv[1]);
}

Test(file_region, truncated_file_reports_nodata)
{
    int fd = temp_file(10000);
    struct rill_file_region *r;
    cr_assert_eq(rill_file_region_new(fd, 0, 10000, RILL_FILE_REGION_OWN_FD, &r), 0);
    cr_assert_eq(ftruncate(fd, 4000), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblock(sv[0]);
    cr_assert_eq(rill_file_region_transfer(r, sv[0], UINT64_MAX), 4000);
    cr_assert_eq(rill_file_region_transfer(r, sv[0], UINT64_MAX), -ENODATA);
    rill_file_region_release(r);
    close(sv[0]);
    close(sv[1]);
}

Test(file_region, open_and_argument_errors)
{
    struct rill_file_region *r;
    cr_assert_eq(rill_file_region_open("/nonexistent/rill", 0, 1, &r), -ENOENT);
    int fd = temp_file(10);
    cr_assert_eq(rill_file_region_new(fd, 11, RILL_FILE_REGION_TO_END, 0, &r), -EINVAL);
    cr_assert_eq(rill_file_region_new(fd, 0, 1, 0x80, &r), -EINVAL);
    cr_assert_eq(rill_file_region_new(-1, 0, 1, 0, &r), -EINVAL);
    cr_assert_eq(rill_file_region_new(fd, 10, RILL_FILE_REGION_TO_END, 0, &r), 0);
    cr_assert_eq(rill_file_region_count(r), 0);
    cr_assert_eq(rill_file_region_transfer(r, fd, 10), 0, "an empty region is done at once");
    rill_file_region_retain(r);
    cr_assert_not(rill_file_region_release(r));
    cr_assert(rill_file_region_release(r));
    close(fd);
}
