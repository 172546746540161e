#include "util/testutil.h"

#include <criterion/criterion.h>
#include <stdio.h>

#include "rill/clock.h"
#include "rill/leak.h"

void rill_test_no_leaks(void)
{
    size_t live = rill_leak_live();
    if (live)
        rill_leak_report(stderr);
    cr_assert_eq(live, 0, "%zu message(s) leaked (see the report above)", live);
}

uint64_t rill_test_deadline_ms(uint64_t ms)
{
    return rill_clock_now_ns() + ms * RILL_NS_PER_MS;
}

int rill_test_before(uint64_t deadline)
{
    return rill_clock_now_ns() < deadline;
}
