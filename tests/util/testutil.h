/* Helpers shared by the Criterion suites.
 *
 * Leak policy. Test binaries default to RILL_LEAK=paranoid and
 * RILL_LEAK_EXITCODE=99 (ctest sets the same; an explicit value wins), so a
 * worker that ends with live messages prints the leak report and exits 99.
 * Criterion 2.4.1 ignores failures after a test body returns (an assertion
 * in .fini, or the worker's exit status), so testutil.c also installs a
 * runner-side hook that turns "passed, but the worker exited non-zero" into a
 * failure. The check therefore runs after every .fini: fixtures may release
 * what they hold there. */
#ifndef RILL_TESTUTIL_H
#define RILL_TESTUTIL_H

#include <stdint.h>

/* Criterion .fini for every suite: names the test when messages are still
 * alive (the report itself follows when the worker exits, and that exit
 * fails the test). Runs last, after the test's own .fini. */
void rill_test_no_leaks(void);

/* Wall-clock deadline helpers for bounded loops in tests. */
uint64_t rill_test_deadline_ms(uint64_t ms);
int rill_test_before(uint64_t deadline);

#endif
