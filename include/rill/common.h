/* Small helpers shared by every rill header: container_of, branch hints,
 * the debug-check switch. Nothing here allocates or has state. */
#ifndef RILL_COMMON_H
#define RILL_COMMON_H

#include <stddef.h>

/* Recover the enclosing object from a pointer to one of its members. The
 * __typeof__ assignment makes the compiler check that @ptr really points to
 * the member's type (liburcu's caa_container_of does the same). */
#define rill_container_of(ptr, type, member)                                                       \
    __extension__({                                                                                \
        const __typeof__(((type *)0)->member) *rill__mptr = (ptr);                                 \
        (type *)((char *)rill__mptr - offsetof(type, member));                                     \
    })

#define RILL_LIKELY(x)   __builtin_expect(!!(x), 1)
#define RILL_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define RILL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* RILL_DEBUG turns on the contract checks (loop-thread asserts, double
 * release, use after release). CMake defines it for Debug builds. */
#ifndef RILL_DEBUG
#define RILL_DEBUG 0
#endif

#endif /* RILL_COMMON_H */
