/* Helpers shared by the Criterion suites. */
#ifndef RILL_TESTUTIL_H
#define RILL_TESTUTIL_H

#include <stdint.h>

/* Criterion .fini for every suite: fail the test if any message is still
 * alive (the leak detector runs paranoid under ctest). */
void rill_test_no_leaks(void);

/* Wall-clock deadline helpers for bounded loops in tests. */
uint64_t rill_test_deadline_ms(uint64_t ms);
int rill_test_before(uint64_t deadline);

#endif
