/* Monotonic time in nanoseconds. Loops cache the time once per iteration
 * (rill_loop_now); this is the uncached source. */
#ifndef RILL_CLOCK_H
#define RILL_CLOCK_H

#include <stdint.h>

#define RILL_NS_PER_US 1000ull
#define RILL_NS_PER_MS 1000000ull
#define RILL_NS_PER_S  1000000000ull

/* Thread: any. CLOCK_MONOTONIC in ns; never goes backwards. */
uint64_t rill_clock_now_ns(void);

#endif /* RILL_CLOCK_H */
