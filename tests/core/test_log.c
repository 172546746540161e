/* Tests for logging (include/rill/log.h): level filtering, custom sinks,
 * the default sink, RILL_LOG parsing (in a re-executed child), panics.
 *
 * rill-test-labels: threaded
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rill/log.h"
#include "util/testutil.h"

TestSuite(log, .timeout = 30, .fini = rill_test_no_leaks);

struct captured {
    atomic_int calls;
    enum rill_log_level level;
    char file[256];
    int line;
    char msg[2048];
    void *arg;
};

static struct captured cap;

static void capture_sink(void *arg, enum rill_log_level level, const char *file, int line,
                         const char *msg)
{
    cap.arg = arg;
    cap.level = level;
    snprintf(cap.file, sizeof(cap.file), "%s", file);
    cap.line = line;
    snprintf(cap.msg, sizeof(cap.msg), "%s", msg);
    atomic_fetch_add(&cap.calls, 1);
}

/* Each test runs in its own process and leaves its sink installed. */
static void install_capture(void)
{
    memset(&cap, 0, sizeof(cap));
    rill_log_set_sink(capture_sink, &cap);
}

Test(log, level_get_and_set)
{
    enum rill_log_level old = rill_log_get_level();
    for (int l = RILL_LOG_TRACE; l <= RILL_LOG_OFF; l++) {
        rill_log_set_level((enum rill_log_level)l);
        cr_assert_eq(rill_log_get_level(), (enum rill_log_level)l);
    }
    rill_log_set_level(old);
}

Test(log, enabled_follows_the_level)
{
    rill_log_set_level(RILL_LOG_WARN);
    cr_assert_not(rill_log_enabled(RILL_LOG_TRACE));
    cr_assert_not(rill_log_enabled(RILL_LOG_DEBUG));
    cr_assert_not(rill_log_enabled(RILL_LOG_INFO));
    cr_assert(rill_log_enabled(RILL_LOG_WARN));
    cr_assert(rill_log_enabled(RILL_LOG_ERROR));
    cr_assert_not(rill_log_enabled(RILL_LOG_OFF), "OFF is not a level to log at");
    rill_log_set_level(RILL_LOG_TRACE);
    cr_assert(rill_log_enabled(RILL_LOG_TRACE));
    rill_log_set_level(RILL_LOG_OFF);
    cr_assert_not(rill_log_enabled(RILL_LOG_ERROR));
}

static int side_effects;

static int bump(void)
{
    return ++side_effects;
}

Test(log, sink_not_called_below_the_level)
{
    install_capture();
    rill_log_set_level(RILL_LOG_WARN);
    side_effects = 0;
    RILL_TRACE("t %d", bump());
    RILL_DEBUGF("d %d", bump());
    RILL_INFO("i %d", bump());
    cr_assert_eq(atomic_load(&cap.calls), 0);
    cr_assert_eq(side_effects, 0, "arguments evaluated for a disabled level");
    RILL_WARN("w");
    cr_assert_eq(atomic_load(&cap.calls), 1);
    cr_assert_eq(cap.level, RILL_LOG_WARN);
    RILL_ERROR("e");
    cr_assert_eq(atomic_load(&cap.calls), 2);
    cr_assert_eq(cap.level, RILL_LOG_ERROR);

    rill_log_set_level(RILL_LOG_OFF);
    RILL_ERROR("nothing");
    cr_assert_eq(atomic_load(&cap.calls), 2);

    rill_log_set_level(RILL_LOG_TRACE);
    RILL_TRACE("t");
    RILL_DEBUGF("d");
    RILL_INFO("i");
    cr_assert_eq(atomic_load(&cap.calls), 5);
}

Test(log, custom_sink_gets_level_origin_and_message)
{
    install_capture();
    rill_log_set_level(RILL_LOG_INFO);
    int line = __LINE__ + 1;
    RILL_WARN("hello %d %s", 42, "world");
    cr_assert_eq(atomic_load(&cap.calls), 1);
    cr_assert_eq(cap.arg, &cap);
    cr_assert_eq(cap.level, RILL_LOG_WARN);
    cr_assert_str_eq(cap.file, __FILE__);
    cr_assert_eq(cap.line, line);
    cr_assert_str_eq(cap.msg, "hello 42 world");

    rill_log_write(RILL_LOG_ERROR, "some/where.c", 7, "direct %s", "call");
    cr_assert_eq(cap.level, RILL_LOG_ERROR);
    cr_assert_str_eq(cap.file, "some/where.c");
    cr_assert_eq(cap.line, 7);
    cr_assert_str_eq(cap.msg, "direct call");
}

Test(log, long_messages_are_truncated_not_overflowed)
{
    install_capture();
    rill_log_set_level(RILL_LOG_INFO);
    char big[4096];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    RILL_INFO("%s", big);
    cr_assert_eq(atomic_load(&cap.calls), 1);
    size_t n = strlen(cap.msg);
    cr_assert_gt(n, 100);
    cr_assert_lt(n, sizeof(big) - 1);
}

/* Capture this process's stderr into a pipe while fn runs. */
static void with_stderr_captured(void (*fn)(void), char *out, size_t outsz)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(p[1], 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    ssize_t n = read(p[0], out, outsz - 1);
    out[n > 0 ? n : 0] = '\0';
    close(p[0]);
}

static void log_one(void)
{
    RILL_ERROR("to the default sink %d", 7);
}

static void check_default_line(const char *out)
{
    cr_assert_not_null(strstr(out, "to the default sink 7"), "stderr got: %s", out);
    cr_assert_not_null(strstr(out, "ERROR"), "stderr got: %s", out);
    cr_assert_not_null(strstr(out, "[log-test]"), "no thread name in: %s", out);
    cr_assert_not_null(strstr(out, "test_log.c:"), "no origin in: %s", out);
    size_t len = strlen(out);
    cr_assert_eq(out[len - 1], '\n');
    cr_assert_eq(strchr(out, '\n'), out + len - 1, "one message, one line: %s", out);
}

Test(log, default_sink_writes_one_line_to_stderr)
{
    rill_log_set_level(RILL_LOG_INFO);
    pthread_setname_np(pthread_self(), "log-test");
    char out[1024];
    with_stderr_captured(log_one, out, sizeof(out));
    check_default_line(out);
}

/* Replaced sink records must stay reachable (another thread may still call
 * through one) without LeakSanitizer reporting them under ASan. */
Test(log, restoring_the_default_sink_does_not_leak_the_old_record)
{
    install_capture();
    rill_log_set_level(RILL_LOG_INFO);
    rill_log_set_sink(NULL, NULL); /* back to stderr */
    pthread_setname_np(pthread_self(), "log-test");
    char out[1024];
    with_stderr_captured(log_one, out, sizeof(out));
    cr_assert_eq(atomic_load(&cap.calls), 0, "old sink still called");
    check_default_line(out);
}

#define LOG_THREADS 4
#define LOG_EACH    500
static atomic_int mt_calls;

static void count_sink(void *arg, enum rill_log_level level, const char *file, int line,
                       const char *msg)
{
    (void)level;
    (void)file;
    (void)line;
    if (strncmp(msg, "mt ", 3) == 0)
        atomic_fetch_add((atomic_int *)arg, 1);
}

static void *log_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < LOG_EACH; i++)
        RILL_WARN("mt %d", i);
    return NULL;
}

Test(log, sink_called_from_many_threads)
{
    rill_log_set_level(RILL_LOG_WARN);
    rill_log_set_sink(count_sink, &mt_calls);
    pthread_t th[LOG_THREADS];
    for (int i = 0; i < LOG_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, log_thread, NULL), 0);
    for (int i = 0; i < LOG_THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&mt_calls), LOG_THREADS * LOG_EACH);
}

Test(log, panic_aborts, .signal = SIGABRT)
{
    RILL_PANIC("broken contract %d", 1);
}

/* ---- RILL_LOG from the environment ----
 * The level is read once per process, so each case re-executes this test
 * binary to run only env_probe with RILL_LOG set; the probe asserts the
 * level it was told to expect. */

Test(log, env_probe)
{
    const char *want = getenv("RILL_TEST_LOG_EXPECT");
    if (!want)
        return; /* only meaningful when re-executed by env_parsing */
    cr_assert_eq((int)rill_log_get_level(), atoi(want), "RILL_LOG=%s",
                 getenv("RILL_LOG") ? getenv("RILL_LOG") : "(unset)");
}

static int run_probe(const char *value, int expect)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (value)
            setenv("RILL_LOG", value, 1);
        else
            unsetenv("RILL_LOG");
        char e[16];
        snprintf(e, sizeof(e), "%d", expect);
        setenv("RILL_TEST_LOG_EXPECT", e, 1);
        /* Criterion's sandbox finds its worker through BXFI_MAP: without
         * it the re-executed binary is a plain runner again. */
        unsetenv("BXFI_MAP");
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl("/proc/self/exe", "test_core_log", "--filter=log/env_probe", "--jobs=1",
              (char *)NULL);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(log, env_parsing)
{
    static const struct {
        const char *value;
        int level;
    } cases[] = {
        { "trace", RILL_LOG_TRACE }, { "debug", RILL_LOG_DEBUG }, { "info", RILL_LOG_INFO },
        { "warn", RILL_LOG_WARN },   { "error", RILL_LOG_ERROR }, { "off", RILL_LOG_OFF },
        { "DEBUG", RILL_LOG_DEBUG }, { "Error", RILL_LOG_ERROR }, { "bogus", RILL_LOG_WARN },
        { "", RILL_LOG_WARN },       { NULL, RILL_LOG_WARN },
    };
    /* The probe fails (non-zero exit) on a wrong level; check that it can. */
    cr_assert_neq(run_probe("trace", RILL_LOG_ERROR), 0, "the probe cannot fail: test is broken");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(run_probe(cases[i].value, cases[i].level), 0, "RILL_LOG=%s",
                     cases[i].value ? cases[i].value : "(unset)");
}
