/* rill_buf: a reference-counted byte buffer with a reader and a writer index
 * (Netty's ByteBuf), the message type that carries bytes through pipelines.
 *
 *      +-------------------+------------------+------------------+
 *      | discardable bytes |  readable bytes  |  writable bytes  |
 *      +-------------------+------------------+------------------+
 *      0      <=      reader_index   <=   writer_index    <=    capacity
 *
 * Kinds, all served by the same accessors:
 *   pooled     memory from the rill allocator (alloc.h), grows on demand
 *   wrapped    user memory, handed back through a free callback at destroy
 *   slice      a view of part of another buffer; it retains the storage, so
 *              the parent may be released first. Writes through a slice
 *              change the shared bytes; call rill_buf_unshare() first when
 *              that is not wanted. A slice never grows.
 *   read-only  a slice that refuses every write (-EROFS)
 *   composite  an ordered list of components presented as one buffer
 *              without copying (composite.h)
 *
 * Indices in get/set/find/slice calls are absolute (0 .. capacity), as in
 * Netty; read/write/skip calls use and move the reader/writer index.
 * Multi-byte values come in big-endian (_be) and little-endian (_le) forms.
 *
 * Errors: -ERANGE (index or length outside the readable/settable range),
 * -EROFS (read-only), -ENOBUFS (growth past max capacity or of a slice),
 * -ENOMEM.
 *
 * Debug builds (RILL_DEBUG) check the reference count in every out-of-line
 * accessor and abort with a clear message on use after the last release.
 *
 * Thread: a buffer belongs to one thread at a time (hand it over, don't
 * share it): "Thread: any." below means any one thread that owns it.
 * retain/release are atomic and may run anywhere. */
#ifndef RILL_BUF_H
#define RILL_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "rill/msg.h"

struct rill_buf;
typedef void rill_buf_free_fn(void *mem, void *arg);

enum rill_buf_kind {
    RILL_BUF_POOLED = 1,
    RILL_BUF_WRAPPED = 2,
    RILL_BUF_SLICE = 3,
    RILL_BUF_COMPOSITE = 4,
};

#define RILL_BUF_F_READONLY 0x1u

/* One component of a composite: @len bytes at @ptr, owned through @buf. */
struct rill_buf_comp {
    struct rill_buf *buf; /* owned reference that keeps the bytes alive */
    uint8_t *ptr;
    size_t len;
    size_t off; /* offset of ptr[0] inside the composite */
};

struct rill_buf_retired; /* private: old memory kept alive for views */

/* All fields are private: use the functions below. The struct is public
 * only so the hot accessors can be inline. */
struct rill_buf {
    struct rill_msg msg; /* first: a rill_buf is a rill_msg */
    uint8_t *_data;      /* first byte of the view; NULL for a composite unless
                            it has exactly one component */
    size_t _cap;
    size_t _rd, _wr;
    size_t _max_cap;
    size_t _block_size; /* the allocator block that starts with this header */
    uint8_t _kind;
    uint8_t _flags;
    union {
        struct {              /* pooled and wrapped: the storage itself */
            uint8_t *base;    /* current memory: inline, the user's, or data_block */
            size_t base_cap;  /* usable bytes at base */
            void *data_block; /* separate block after growth, else NULL */
            size_t data_size;
            struct rill_buf_retired *retired; /* see rill_buf_ensure_writable */
            rill_buf_free_fn *free_fn;        /* wrapped */
            void *arg;
            void *mem;
        } flat;
        struct {
            struct rill_buf *storage; /* owned reference (pooled or wrapped, never a slice) */
        } slice;
        struct {
            struct rill_buf_comp *v;
            uint32_t n, alloc;
            uint32_t last;    /* index of the component found last (locality cache) */
            uint8_t *cur_ptr; /* that component's bytes, at cur_off .. cur_off + cur_len */
            size_t cur_off, cur_len;
        } comp;
    } _u;
};

/* ---- creation ---- */

/* Thread: any. A pooled buffer with capacity >= @cap (header and data share
 * one allocator block, so small buffers cost one allocation), indices at 0.
 * Returns a new reference in *@out; 0 or -ENOMEM. */
int rill_buf_alloc(size_t cap, struct rill_buf **out);

/* Thread: any. A pooled buffer holding a copy of @len bytes at @src (writer
 * index @len). Returns a new reference in *@out; 0 or -ENOMEM. */
int rill_buf_copy_from(const void *src, size_t len, struct rill_buf **out);

/* Thread: any. Wrap @cap bytes of user memory at @mem, of which the first
 * @len are readable. free_fn(mem, arg) runs exactly once: when the buffer is
 * destroyed, or earlier when growth moves the bytes to pooled memory while
 * no view shares them (free_fn may be NULL for memory that outlives the
 * buffer). The kind stays RILL_BUF_WRAPPED after such a move. Returns a new
 * reference in *@out; 0, -EINVAL (len > cap, or NULL @mem with cap > 0) or
 * -ENOMEM. On failure free_fn is not called and the caller keeps @mem. */
int rill_buf_wrap(void *mem, size_t cap, size_t len, rill_buf_free_fn *free_fn, void *arg,
                  struct rill_buf **out);

/* Thread: any. A view of bytes [index, index + len) of @b (any kind; the
 * range must lie below the writer index) with reader index 0, writer index
 * and capacity @len; it retains @b's storage (the root buffer, never an
 * intermediate slice), so @b may be released first. @b's indices don't
 * move. A slice of a read-only buffer is read-only. A slice of a composite
 * within one component is a flat slice of that component's storage; one
 * that spans components is itself a composite (of slices). Returns a new
 * reference in *@out; 0, -ERANGE or -ENOMEM. */
int rill_buf_slice(struct rill_buf *b, size_t index, size_t len, struct rill_buf **out);

/* Thread: any. Slice the next @len readable bytes and advance the reader
 * index past them. New reference; -ERANGE when fewer are readable. */
int rill_buf_read_slice(struct rill_buf *b, size_t len, struct rill_buf **out);

/* Thread: any. A read-only view of @b's readable bytes (a slice that refuses
 * every write with -EROFS). New reference; 0 or -ENOMEM. */
int rill_buf_readonly(struct rill_buf *b, struct rill_buf **out);

/* Thread: any. A new pooled buffer holding a copy of bytes [index, index +
 * len) (below the writer index). New reference; 0, -ERANGE or -ENOMEM. */
int rill_buf_copy(const struct rill_buf *b, size_t index, size_t len, struct rill_buf **out);

/* Thread: any. Make *@bp safe to write: if it is shared (a slice, read-only,
 * a composite, or its storage has other references) replace it with a
 * pooled copy of its readable bytes and release the old reference (takes
 * ownership of *@bp, stores a new reference). Returns 0 or -ENOMEM (then
 * *@bp is unchanged). */
int rill_buf_unshare(struct rill_buf **bp);

/* ---- references ---- */

/* Thread: any. Returns @b with one more reference. */
static inline struct rill_buf *rill_buf_retain(struct rill_buf *b)
{
    rill_msg_retain(&b->msg);
    return b;
}

/* Thread: any. Gives back one reference; true when that destroyed @b. */
static inline bool rill_buf_release(struct rill_buf *b)
{
    return rill_msg_release(&b->msg);
}

/* Thread: any. The buffer behind a message, or NULL when @m is not a
 * rill_buf. Borrowed (same reference as @m). */
static inline struct rill_buf *rill_buf_from_msg(struct rill_msg *m)
{
    return m && m->type == RILL_MSG_BUF ? (struct rill_buf *)m : NULL;
}

/* Thread: any. The message header of @b. Borrowed (same reference). */
static inline struct rill_msg *rill_buf_msg(struct rill_buf *b)
{
    return &b->msg;
}

/* ---- indices (Thread: any, for each function in this section) ---- */

/* Thread: any. */
static inline size_t rill_buf_reader_index(const struct rill_buf *b)
{
    return b->_rd;
}
/* Thread: any. */
static inline size_t rill_buf_writer_index(const struct rill_buf *b)
{
    return b->_wr;
}
/* Thread: any. */
static inline size_t rill_buf_capacity(const struct rill_buf *b)
{
    return b->_cap;
}
/* Thread: any. */
static inline size_t rill_buf_readable(const struct rill_buf *b)
{
    return b->_wr - b->_rd;
}
/* Thread: any. Bytes writable without growing (0 when read-only). */
static inline size_t rill_buf_writable(const struct rill_buf *b)
{
    return (b->_flags & RILL_BUF_F_READONLY) ? 0 : b->_cap - b->_wr;
}
/* Thread: any. How the buffer was made. */
static inline enum rill_buf_kind rill_buf_kind(const struct rill_buf *b)
{
    return (enum rill_buf_kind)b->_kind;
}
/* Thread: any. */
static inline bool rill_buf_is_readonly(const struct rill_buf *b)
{
    return b->_flags & RILL_BUF_F_READONLY;
}
/* Thread: any. The growth limit (default SSIZE_MAX). */
size_t rill_buf_max_capacity(const struct rill_buf *b);
/* Thread: any. Limit growth; -EINVAL if below the current capacity. */
int rill_buf_set_max_capacity(struct rill_buf *b, size_t max_cap);

/* Thread: any. -ERANGE unless reader <= writer <= capacity afterwards
 * (nothing changes then). Allowed on read-only views. */
int rill_buf_set_reader_index(struct rill_buf *b, size_t index);
int rill_buf_set_writer_index(struct rill_buf *b, size_t index);
int rill_buf_set_index(struct rill_buf *b, size_t reader, size_t writer);
/* Thread: any. Both indices to 0 (the bytes stay). */
void rill_buf_clear(struct rill_buf *b);
/* Thread: any. Advance the reader index by @n; -ERANGE if fewer are readable. */
int rill_buf_skip(struct rill_buf *b, size_t n);

/* Thread: any. The readable bytes as one contiguous span, or NULL when they
 * are not contiguous (a composite whose readable bytes span components).
 * *len gets the count. Borrowed: valid until the buffer is written, grown or
 * released. */
const uint8_t *rill_buf_read_ptr(const struct rill_buf *b, size_t *len);

/* Thread: any. The contiguous writable space at the writer index (for
 * read(2) into the buffer), after making at least @min bytes writable (a
 * @min of 0 counts as 1); *len gets its size (>= min). Borrowed, like
 * read_ptr. Commit what was written with rill_buf_advance_writer(). NULL
 * with *len = 0 on failure (read-only, slice full, max capacity, no memory). */
uint8_t *rill_buf_write_ptr(struct rill_buf *b, size_t min, size_t *len);
/* Thread: any. Move the writer index by @n: -ERANGE past the capacity,
 * -EROFS on a read-only view. */
int rill_buf_advance_writer(struct rill_buf *b, size_t n);

/* ---- growth and compaction ---- */

/* Thread: any. Make at least @n bytes writable, growing (pooled:
 * reallocation with amortised doubling; wrapped: move to pooled memory;
 * composite: spare room of its last component, else a new component). When
 * the buffer has other references (slices retain their parent), the old
 * memory is kept until the buffer is destroyed, so existing views stay
 * valid (they keep seeing the old bytes); otherwise it is freed (or handed
 * back to the user) at once. Indices and the bytes below the old capacity
 * stay. Returns 0, -EROFS,
 * -ENOBUFS (past the max capacity, or a slice without room) or -ENOMEM. */
int rill_buf_ensure_writable(struct rill_buf *b, size_t n);

/* Thread: any. Drop the bytes before the reader index: an unshared pooled or
 * wrapped buffer moves the readable bytes to the front; a slice, or a buffer
 * with other references, narrows its view instead (shared bytes never move);
 * composites release fully read components and narrow the first partially
 * read one. The reader index becomes 0. Returns 0. */
int rill_buf_discard_read(struct rill_buf *b);

/* ---- integers: get/set at an absolute index, read/write at the indices ----
 *
 * Thread: any, for every function in this section. Return 0, -ERANGE
 * (get/read: past the writer index; set: past the capacity), -EROFS (set
 * and write on read-only bytes) or for write: the errors of
 * rill_buf_ensure_writable(). On failure nothing changes (*v included). */

int rill_buf_get_u8(const struct rill_buf *b, size_t index, uint8_t *v);
int rill_buf_get_u16_be(const struct rill_buf *b, size_t index, uint16_t *v);
int rill_buf_get_u16_le(const struct rill_buf *b, size_t index, uint16_t *v);
int rill_buf_get_u32_be(const struct rill_buf *b, size_t index, uint32_t *v);
int rill_buf_get_u32_le(const struct rill_buf *b, size_t index, uint32_t *v);
int rill_buf_get_u64_be(const struct rill_buf *b, size_t index, uint64_t *v);
int rill_buf_get_u64_le(const struct rill_buf *b, size_t index, uint64_t *v);

int rill_buf_set_u8(struct rill_buf *b, size_t index, uint8_t v);
int rill_buf_set_u16_be(struct rill_buf *b, size_t index, uint16_t v);
int rill_buf_set_u16_le(struct rill_buf *b, size_t index, uint16_t v);
int rill_buf_set_u32_be(struct rill_buf *b, size_t index, uint32_t v);
int rill_buf_set_u32_le(struct rill_buf *b, size_t index, uint32_t v);
int rill_buf_set_u64_be(struct rill_buf *b, size_t index, uint64_t v);
int rill_buf_set_u64_le(struct rill_buf *b, size_t index, uint64_t v);

int rill_buf_read_u8(struct rill_buf *b, uint8_t *v);
int rill_buf_read_u16_be(struct rill_buf *b, uint16_t *v);
int rill_buf_read_u16_le(struct rill_buf *b, uint16_t *v);
int rill_buf_read_u32_be(struct rill_buf *b, uint32_t *v);
int rill_buf_read_u32_le(struct rill_buf *b, uint32_t *v);
int rill_buf_read_u64_be(struct rill_buf *b, uint64_t *v);
int rill_buf_read_u64_le(struct rill_buf *b, uint64_t *v);

int rill_buf_write_u8(struct rill_buf *b, uint8_t v);
int rill_buf_write_u16_be(struct rill_buf *b, uint16_t v);
int rill_buf_write_u16_le(struct rill_buf *b, uint16_t v);
int rill_buf_write_u32_be(struct rill_buf *b, uint32_t v);
int rill_buf_write_u32_le(struct rill_buf *b, uint32_t v);
int rill_buf_write_u64_be(struct rill_buf *b, uint64_t v);
int rill_buf_write_u64_le(struct rill_buf *b, uint64_t v);

/* ---- byte ranges ----
 *
 * Thread: any, for every function in this section; errors as for integers.
 * get: bytes [index, index + len) must lie below the writer index;
 * set: below the capacity. Indices don't move. */
int rill_buf_get_bytes(const struct rill_buf *b, size_t index, void *dst, size_t len);
int rill_buf_set_bytes(struct rill_buf *b, size_t index, const void *src, size_t len);
int rill_buf_read_bytes(struct rill_buf *b, void *dst, size_t len);
int rill_buf_write_bytes(struct rill_buf *b, const void *src, size_t len);
/* Copy @len readable bytes of @src into @dst, advancing both (borrows both;
 * @src's reference is not taken). -ERANGE when @src has fewer readable. */
int rill_buf_write_buf(struct rill_buf *dst, struct rill_buf *src, size_t len);

/* ---- search and compare (Thread: any, for every function here) ---- */

/* Thread: any. First index in [from, to) holding @byte, or -ENOENT. -ERANGE
 * when the range goes past the writer index or from > to. */
ssize_t rill_buf_index_of(const struct rill_buf *b, size_t from, size_t to, uint8_t byte);

/* Thread: any. First index in [from, to) where the @nlen bytes at @needle
 * start (the match must end by @to), or -ENOENT; -ERANGE as index_of. An
 * empty needle matches at @from. */
ssize_t rill_buf_find(const struct rill_buf *b, size_t from, size_t to, const void *needle,
                      size_t nlen);

/* Thread: any. True when bytes [index, index + len) exist (below the writer
 * index) and equal @mem. */
bool rill_buf_equal_bytes(const struct rill_buf *b, size_t index, const void *mem, size_t len);

/* Thread: any. True when the readable bytes of @a and @b are equal. */
bool rill_buf_equal(const struct rill_buf *a, const struct rill_buf *b);

/* ---- gather export ---- */

/* Thread: any. Describe bytes [index, index + len) (below the writer index)
 * as up to @max iovecs, without copying: one per contiguous span (one for
 * flat buffers, one per touched component for composites). Returns the
 * number of iovecs filled (0 for len 0); *covered (may be NULL) gets how
 * many bytes they cover, which is less than @len only when @max ran out.
 * -ERANGE for a bad range. The iov_base pointers are borrowed: valid while
 * @b is unchanged and referenced. With rill_alloc_lookup() they give RDMA
 * SGEs too. */
int rill_buf_iovec(const struct rill_buf *b, size_t index, size_t len, struct iovec *iov, int max,
                   size_t *covered);

#endif /* RILL_BUF_H */
