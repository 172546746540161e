/* File regions: a message over a file range, sent with sendfile(2) or, where
 * the kernel refuses it for the pair of fds, with read + write through a
 * buffer the region keeps until its bytes are written. */
#include "rill/file_region.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rill/alloc.h"
#include "rill/log.h"

/* Bytes asked of one sendfile call (Linux caps a call at 0x7ffff000). */
#define SENDFILE_MAX (1u << 30)
/* The fallback's staging buffer. */
#define STAGE_SIZE (64u * 1024u)

struct rill_file_region {
    struct rill_msg msg; /* first: a region is a rill_msg */
    int fd;
    bool own_fd;
    bool no_sendfile; /* the kernel refused sendfile once: don't ask again */
    bool seekable;
    uint64_t offset, count, transferred;
    /* Fallback: stage[pos, len) read from the file, not yet written. */
    uint8_t *stage;
    size_t stage_pos, stage_len;
};

static void region_destroy(struct rill_msg *m)
{
    struct rill_file_region *r = (struct rill_file_region *)m;
    if (r->own_fd && r->fd >= 0)
        close(r->fd);
    if (r->stage)
        rill_free(r->stage, STAGE_SIZE);
    free(r);
}

int rill_file_region_new(int fd, uint64_t offset, uint64_t count, unsigned flags,
                         struct rill_file_region **out)
{
    if (fd < 0 || (flags & ~RILL_FILE_REGION_OWN_FD) || offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    bool regular = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    if (count == RILL_FILE_REGION_TO_END) {
        if (!S_ISREG(st.st_mode) || offset > (uint64_t)st.st_size)
            return -EINVAL;
        count = (uint64_t)st.st_size - offset;
    }
    if (count > (uint64_t)INT64_MAX - offset)
        return -EINVAL;
    struct rill_file_region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->fd = fd;
    r->own_fd = flags & RILL_FILE_REGION_OWN_FD;
    r->offset = offset;
    r->count = count;
    r->seekable = regular || lseek(fd, 0, SEEK_CUR) >= 0;
    rill_msg_init(&r->msg, RILL_MSG_FILE_REGION, region_destroy);
    *out = r;
    return 0;
}

int rill_file_region_open(const char *path, uint64_t offset, uint64_t count,
                          struct rill_file_region **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int err = rill_file_region_new(fd, offset, count, RILL_FILE_REGION_OWN_FD, out);
    if (err)
        close(fd);
    return err;
}

struct rill_file_region *rill_file_region_retain(struct rill_file_region *r)
{
    rill_msg_retain(&r->msg);
    return r;
}

bool rill_file_region_release(struct rill_file_region *r)
{
    return rill_msg_release(&r->msg);
}

int rill_file_region_fd(const struct rill_file_region *r)
{
    return r->fd;
}

uint64_t rill_file_region_offset(const struct rill_file_region *r)
{
    return r->offset;
}

uint64_t rill_file_region_count(const struct rill_file_region *r)
{
    return r->count;
}

uint64_t rill_file_region_transferred(const struct rill_file_region *r)
{
    return r->transferred;
}

uint64_t rill_file_region_remaining(const struct rill_file_region *r)
{
    return r->count - r->transferred;
}

bool rill_file_region_used_fallback(const struct rill_file_region *r)
{
    return r->no_sendfile;
}

/* Read + write through the staging buffer. */
static int64_t transfer_copy(struct rill_file_region *r, int out_fd, uint64_t max)
{
    r->no_sendfile = true;
    if (r->stage_len == r->stage_pos) {
        if (!r->stage) {
            r->stage = rill_alloc(STAGE_SIZE, NULL);
            if (!r->stage)
                return -ENOMEM;
        }
        /* Read what the file holds past the bytes already staged. */
        uint64_t want = r->count - r->transferred;
        if (want > STAGE_SIZE)
            want = STAGE_SIZE;
        ssize_t n;
        do {
            if (r->seekable)
                n = pread(r->fd, r->stage, want, (off_t)(r->offset + r->transferred));
            else
                n = read(r->fd, r->stage, want);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENODATA;
        r->stage_pos = 0;
        r->stage_len = (size_t)n;
    }
    size_t avail = r->stage_len - r->stage_pos;
    if (avail > max)
        avail = (size_t)max;
    ssize_t w;
    do
        w = send(out_fd, r->stage + r->stage_pos, avail, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno == ENOTSOCK) {
        do
            w = write(out_fd, r->stage + r->stage_pos, avail);
        while (w < 0 && errno == EINTR);
    }
    if (w < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    r->stage_pos += (size_t)w;
    r->transferred += (uint64_t)w;
    if (r->stage_pos == r->stage_len) {
        r->stage_pos = r->stage_len = 0;
        if (r->transferred == r->count) {
            rill_free(r->stage, STAGE_SIZE);
            r->stage = NULL;
        }
    }
    return w;
}

/* sendfile has no MSG_NOSIGNAL: block SIGPIPE on this thread around the
 * call and take back the signal a dead peer raised, so the caller sees
 * EPIPE and the process no signal (what send(MSG_NOSIGNAL) does). */
static ssize_t sendfile_nosigpipe(int out_fd, int in_fd, off_t *off, size_t count)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    bool was_blocked = sigismember(&old, SIGPIPE);
    sigset_t pending;
    bool was_pending = was_blocked && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    ssize_t n;
    do
        n = sendfile(out_fd, in_fd, off, count);
    while (n < 0 && errno == EINTR);
    int e = errno;
    if (n < 0 && e == EPIPE && !was_pending) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    if (!was_blocked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return n;
}

int64_t rill_file_region_transfer(struct rill_file_region *r, int out_fd, uint64_t max)
{
    uint64_t left = r->count - r->transferred;
    if (left == 0)
        return 0;
    if (max < left)
        left = max;
    if (left == 0)
        return -EINVAL;
    /* Bytes already staged go first, whatever the mode now. */
    if (r->no_sendfile || !r->seekable || r->stage_len > r->stage_pos)
        return transfer_copy(r, out_fd, left);
    if (left > SENDFILE_MAX)
        left = SENDFILE_MAX;
    off_t off = (off_t)(r->offset + r->transferred);
    ssize_t n = sendfile_nosigpipe(out_fd, r->fd, &off, (size_t)left);
    if (n > 0) {
        r->transferred += (uint64_t)n;
        return n;
    }
    if (n == 0)
        return -ENODATA; /* the file is shorter than the region now */
    if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == ESPIPE) {
        RILL_DEBUGF("file region: sendfile refused (%d), using read + write", errno);
        r->no_sendfile = true;
        return transfer_copy(r, out_fd, left);
    }
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}
