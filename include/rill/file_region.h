/* File regions: a message that stands for @count bytes of a file starting
 * at @offset (Netty's FileRegion). Written to an epoll channel it goes out
 * with sendfile(2), without passing through user memory; where sendfile
 * cannot be used (a pipe or another fd that does not support it) the
 * transport falls back to read + write through a small pooled buffer.
 *
 * A region is a rill_msg (type RILL_MSG_FILE_REGION): it travels through the
 * pipeline like a buffer, handlers that do not know it pass it on, and the
 * ownership rules of msg.h apply. Byte-oriented codecs do not understand
 * regions: put them after the codecs (nearer the head) or write them with
 * rill_ctx_write from a handler that sits there.
 *
 * The file descriptor: a region made by rill_file_region_open() owns its fd
 * and closes it when the region is destroyed. One made from a caller's fd
 * either takes the fd over (RILL_FILE_REGION_OWN_FD) or borrows it: the
 * caller then keeps it open until the region is destroyed (watch the
 * write's promise, or the region's last release). The file is read with
 * positional reads (its file offset does not move), so several regions may
 * share one fd, except for fds that cannot seek, which are read in order.
 *
 * Thread: a region belongs to one thread at a time, like a buffer.
 * Every function here: Thread: any. */
#ifndef RILL_FILE_REGION_H
#define RILL_FILE_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rill/msg.h"

struct rill_file_region;

/* For @count: everything from @offset to the end of the file as it is when
 * the region is made. */
#define RILL_FILE_REGION_TO_END ((uint64_t)-1)

/* Flags for rill_file_region_new. */
#define RILL_FILE_REGION_OWN_FD 0x1u /* close the fd when the region is destroyed */

/* A region over @count bytes of @fd from @offset. @count may be
 * RILL_FILE_REGION_TO_END (fstat decides; @fd must then be a regular file).
 * Returns a new reference in *@out; 0, -EINVAL (negative offset, unknown
 * flags, or TO_END past the end of the file), -errno from fstat, or -ENOMEM.
 * On failure an owned fd is NOT closed: the caller still has it. */
int rill_file_region_new(int fd, uint64_t offset, uint64_t count, unsigned flags,
                         struct rill_file_region **out);

/* Open @path read-only and make a region over [offset, offset + count) of it
 * (count may be RILL_FILE_REGION_TO_END). The region owns the fd. Returns a
 * new reference in *@out; 0, -errno from open/fstat, -EINVAL or -ENOMEM. */
int rill_file_region_open(const char *path, uint64_t offset, uint64_t count,
                          struct rill_file_region **out);

/* The message header (same reference) and back. from_msg returns NULL when
 * @m is not a file region. Borrowed. */
static inline struct rill_msg *rill_file_region_msg(struct rill_file_region *r)
{
    return (struct rill_msg *)r; /* the header is the first member */
}
static inline struct rill_file_region *rill_file_region_from_msg(struct rill_msg *m)
{
    return m && m->type == RILL_MSG_FILE_REGION ? (struct rill_file_region *)m : NULL;
}

/* Reference counting (see msg.h). */
struct rill_file_region *rill_file_region_retain(struct rill_file_region *r);
bool rill_file_region_release(struct rill_file_region *r);

/* The file descriptor (borrowed), the first byte's offset, the length, and
 * how many bytes have been transferred so far. */
int rill_file_region_fd(const struct rill_file_region *r);
uint64_t rill_file_region_offset(const struct rill_file_region *r);
uint64_t rill_file_region_count(const struct rill_file_region *r);
uint64_t rill_file_region_transferred(const struct rill_file_region *r);
/* Bytes still to transfer (count - transferred). */
uint64_t rill_file_region_remaining(const struct rill_file_region *r);

/* For transports: move up to @max of the remaining bytes to the socket (or
 * any fd) @out_fd, which is non-blocking: sendfile where the kernel supports
 * it for this pair of fds, else positional read + write through a buffer
 * the region keeps between calls (bytes read but not yet written are never
 * lost). Advances rill_file_region_transferred(). Returns the bytes
 * written (> 0), 0 when nothing remains, -EAGAIN when @out_fd is full,
 * -errno from the socket (-EPIPE, -ECONNRESET, ...) or from reading the
 * file, or -ENODATA when the file ended before the region did (it was
 * truncated meanwhile). */
int64_t rill_file_region_transfer(struct rill_file_region *r, int out_fd, uint64_t max);

/* True once a transfer had to fall back to read + write (tests, stats). */
bool rill_file_region_used_fallback(const struct rill_file_region *r);

#endif /* RILL_FILE_REGION_H */
