#include "util/testutil.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rill/clock.h"
#include "rill/leak.h"

/* Running a test binary by hand checks leaks the way ctest does. */
__attribute__((constructor)) static void leak_policy_defaults(void)
{
    setenv("RILL_LEAK", "paranoid", 0);
    setenv("RILL_LEAK_EXITCODE", "99", 0);
}

void rill_test_no_leaks(void)
{
    /* A cr_assert here would be printed but not counted by Criterion 2.4.1
     * (teardown runs after the verdict); the exit-time check fails the test. */
    size_t live = rill_leak_live();
    if (live)
        cr_log_error("%s::%s (pid %d) leaked %zu message(s); the leak report follows at exit",
                     criterion_current_test->category, criterion_current_test->name, (int)getpid(),
                     live);
}

/* Runs in the runner once every worker has exited. Criterion records a
 * worker's exit status even when it arrives after the test ended, but only
 * judges it before teardown; judge it here. Status 99 is the leak detector
 * (RILL_LEAK_EXITCODE); a sanitizer that reports at exit (TSan 66, LSan 23)
 * lands here too. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    const char *leak_code = getenv("RILL_LEAK_EXITCODE");
    for (struct criterion_suite_stats *s = stats->suites; s; s = s->next) {
        for (struct criterion_test_stats *t = s->tests; t; t = t->next) {
            if (t->test_status != CR_STATUS_PASSED || t->exit_code == t->test->data->exit_code)
                continue;
            int leaked = leak_code && atoi(leak_code) == t->exit_code;
            fprintf(stderr, "[FAIL] %s::%s: passed, but its worker exited with status %d (%s)\n",
                    s->suite->name, t->test->name, t->exit_code,
                    leaked ? "messages leaked: see the rill leak report above"
                           : "see the worker's output above");
            t->test_status = CR_STATUS_FAILED;
            s->tests_passed--;
            s->tests_failed++;
            stats->tests_passed--;
            stats->tests_failed++;
        }
    }
}

uint64_t rill_test_deadline_ms(uint64_t ms)
{
    return rill_clock_now_ns() + ms * RILL_NS_PER_MS;
}

int rill_test_before(uint64_t deadline)
{
    return rill_clock_now_ns() < deadline;
}
