/* Composite buffers: several buffers presented as one, without copying.
 * Every accessor of buf.h works on a composite, across component
 * boundaries. The composite owns one reference to each component; it never
 * nests (adding a composite moves its components in).
 *
 * Writing to a composite appends into spare room of its last component when
 * that is a pooled buffer the composite owns alone, else into a new pooled
 * component (sized by growth). set_* into a read-only component fails with
 * -EROFS; write_* never does (room past the writer index that lies in a
 * read-only component is dropped first). rill_buf_discard_read() releases
 * fully read components.
 *
 * Thread: as buf.h (one thread at a time). Even reads update a lookup cache
 * inside the composite, so two threads must not read one composite at once
 * (give each its own slice or read-only view instead). */
#ifndef RILL_COMPOSITE_H
#define RILL_COMPOSITE_H

#include <stddef.h>

#include "rill/buf.h"

/* Thread: any. An empty composite (capacity 0). Returns a new reference in
 * *@out; 0 or -ENOMEM. */
int rill_buf_composite_new(struct rill_buf **out);

/* Thread: any. Append the readable bytes of @component at the composite's
 * end and move the writer index past them (writable room the composite had
 * past its writer index is dropped first, so no unwritten bytes become
 * readable). Takes ownership of @component on every path: an empty
 * component is released at once, a composite component has its components
 * moved in one by one, and on failure (-ENOMEM, -EROFS when @c is
 * read-only, -ENOBUFS past @c's max capacity, -EINVAL when @c is not a
 * composite or is @component) it is released. Bytes the composite has not
 * yet read stay where they are. */
int rill_buf_composite_add(struct rill_buf *c, struct rill_buf *component);

/* Thread: any. Number of components (0 when @c is not a composite). */
unsigned rill_buf_composite_count(const struct rill_buf *c);

/* Thread: any. Component @i (0-based) as its underlying buffer, or NULL when
 * out of range. Borrowed: valid until @c changes. Its readable range is what
 * the composite holds unless the composite was written or discarded. */
struct rill_buf *rill_buf_composite_component(const struct rill_buf *c, unsigned i);

/* Thread: any. Copy bytes [0, writer index) into one pooled component, so
 * later accesses take the flat path. Indices don't move; the capacity
 * becomes the writer index (writes then grow in place). Returns 0 or
 * -ENOMEM (then nothing changed). */
int rill_buf_consolidate(struct rill_buf *c);

#endif /* RILL_COMPOSITE_H */
