/* Tests for error names and descriptions (include/rill/error.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "rill/error.h"
#include "util/testutil.h"

TestSuite(error, .timeout = 30, .fini = rill_test_no_leaks);

static const struct {
    int code;
    const char *name;
} rill_codes[] = {
    { RILL_ECLOSED, "RILL_ECLOSED" },         { RILL_EPROTO, "RILL_EPROTO" },
    { RILL_ETOOLARGE, "RILL_ETOOLARGE" },     { RILL_EDECODE, "RILL_EDECODE" },
    { RILL_ENOTLOOP, "RILL_ENOTLOOP" },       { RILL_EREJECTED, "RILL_EREJECTED" },
    { RILL_EBADVERSION, "RILL_EBADVERSION" }, { RILL_EUNAVAILABLE, "RILL_EUNAVAILABLE" },
    { RILL_EDEADLINE, "RILL_EDEADLINE" },     { RILL_EBUSY, "RILL_EBUSY" },
};

Test(error, success)
{
    cr_assert_str_eq(rill_strerror(0), "success");
    cr_assert_str_eq(rill_errname(0), "OK");
}

Test(error, errno_values)
{
    cr_assert_str_eq(rill_errname(-EAGAIN), "EAGAIN");
    cr_assert_str_eq(rill_errname(-ECONNRESET), "ECONNRESET");
    cr_assert_str_eq(rill_errname(-ENOMEM), "ENOMEM");
    cr_assert_str_eq(rill_errname(-ECANCELED), "ECANCELED");
    cr_assert_str_eq(rill_strerror(-EPIPE), "Broken pipe");
    cr_assert_str_eq(rill_strerror(-ETIMEDOUT), "Connection timed out");
    /* Every errno the C library knows maps to its own name and text. */
    for (int e = 1; e < 134; e++) {
        const char *name = strerrorname_np(e);
        const char *text = strerrordesc_np(e);
        const char *n = rill_errname(-e);
        const char *t = rill_strerror(-e);
        cr_assert_not_null(n);
        cr_assert_not_null(t);
        if (name)
            cr_assert_str_eq(n, name, "errno %d", e);
        if (text)
            cr_assert_str_eq(t, text, "errno %d", e);
    }
}

Test(error, every_rill_code_has_a_name_and_a_text)
{
    for (size_t i = 0; i < sizeof(rill_codes) / sizeof(rill_codes[0]); i++) {
        int c = rill_codes[i].code;
        cr_assert(c <= -RILL_ERRNO_BASE && c >= RILL_ERRNO_LAST, "%d outside the rill range", c);
        cr_assert_str_eq(rill_errname(c), rill_codes[i].name);
        const char *t = rill_strerror(c);
        cr_assert_not_null(t);
        cr_assert_gt(strlen(t), 0);
        cr_assert_str_neq(t, rill_strerror(-4998), "%s has the generic text", rill_codes[i].name);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(t, rill_strerror(rill_codes[j].code), "%s and %s share a text",
                              rill_codes[i].name, rill_codes[j].name);
    }
}

Test(error, unknown_codes)
{
    const int unknown[] = {
        1, 42, 4001, INT_MAX, -3999, -RILL_ERRNO_BASE, -4500, RILL_ERRNO_LAST, -5000, INT_MIN
    };
    const char *generic = rill_strerror(-4998);
    cr_assert_not_null(generic);
    cr_assert_gt(strlen(generic), 0);
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        cr_assert_str_eq(rill_errname(unknown[i]), "UNKNOWN", "code %d", unknown[i]);
        const char *t = rill_strerror(unknown[i]);
        cr_assert_not_null(t);
        cr_assert_str_eq(t, generic, "code %d", unknown[i]);
    }
}

Test(error, results_are_static_storage)
{
    cr_assert_eq(rill_strerror(RILL_EPROTO), rill_strerror(RILL_EPROTO));
    cr_assert_eq(rill_errname(-EINVAL), rill_errname(-EINVAL));
    cr_assert_eq(rill_strerror(-EINVAL), rill_strerror(-EINVAL));
}
