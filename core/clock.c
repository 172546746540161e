#include "rill/clock.h"

#include <time.h>

uint64_t rill_clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * RILL_NS_PER_S + (uint64_t)ts.tv_nsec;
}
