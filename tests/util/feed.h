/* Feeding bytes to codecs under test: input placed right before an
 * unreadable page (so reading one byte past the input faults), and split at
 * chosen offsets (so every byte boundary can be tried).
 *
 * Ownership: every buffer made here is a new reference; the feed functions
 * hand theirs to the embedded channel. Thread: the test's. */
#ifndef RILL_TEST_FEED_H
#define RILL_TEST_FEED_H

#include <stddef.h>

struct rill_buf;
struct rill_embedded;

/* A wrapped buffer holding a copy of @len bytes of @data whose last byte
 * sits right before a PROT_NONE page (its capacity is @len: nothing can be
 * appended). Aborts the test on mmap failure. */
struct rill_buf *rill_test_guard_buf(const void *data, size_t len);

/* Push @len bytes of @data into @e as pieces cut at @cuts (ascending
 * offsets in (0, len); others are ignored), each piece a guard buffer and
 * its own read + read_complete. Returns the last write_inbound result (a
 * count of messages at the tail, or RILL_ECLOSED once the channel closed:
 * then the rest is not pushed). */
int rill_test_feed_cuts(struct rill_embedded *e, const void *data, size_t len, const size_t *cuts,
                        size_t ncuts);

/* Push @data in two pieces split at @at (0 or @len: one piece). */
int rill_test_feed_split(struct rill_embedded *e, const void *data, size_t len, size_t at);

/* Push @data one byte per read. */
int rill_test_feed_bytes(struct rill_embedded *e, const void *data, size_t len);

/* Push @data as one piece. */
int rill_test_feed(struct rill_embedded *e, const void *data, size_t len);

/* A NUL-terminated copy of the readable bytes of @b (malloc'd: free() it).
 * @b is borrowed. */
char *rill_test_buf_str(const struct rill_buf *b);

#endif
