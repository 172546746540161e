/* Composite buffers: several buffers presented as one, without copying.
 * Every accessor of buf.h works on a composite, across component
 * boundaries. The composite owns one reference to each component.
 *
 * Thread: as buf.h (one thread at a time). */
#ifndef RILL_COMPOSITE_H
#define RILL_COMPOSITE_H

#include <stddef.h>

#include "rill/buf.h"

/* An empty composite (capacity 0). New reference. */
int rill_buf_composite_new(struct rill_buf **out);

/* Append the readable bytes of @component at the composite's end and move
 * the writer index past them. Takes ownership of @component on every path:
 * an empty component is released at once, a composite component has its
 * components moved in one by one, and on failure (-ENOMEM, -EROFS) it is
 * released. Bytes the composite has not yet read stay where they are. */
int rill_buf_composite_add(struct rill_buf *c, struct rill_buf *component);

/* Number of components. */
unsigned rill_buf_composite_count(const struct rill_buf *c);

/* Component @i (0-based) as its underlying buffer; borrowed. Its readable
 * range is what the composite holds unless the composite was written. */
struct rill_buf *rill_buf_composite_component(const struct rill_buf *c, unsigned i);

/* Copy all bytes into one pooled component, so later reads are flat.
 * Indices don't move. Returns 0 or -ENOMEM (then nothing changed). */
int rill_buf_consolidate(struct rill_buf *c);

#endif /* RILL_COMPOSITE_H */
