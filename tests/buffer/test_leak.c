/* Leak detector: counts, the paranoid report, the exit-time check in a child
 * process, simple mode, concurrency and the debug-build contract checks.
 *
 * The mode is per process, and Criterion runs every test in a fresh worker,
 * so each test sets the mode it needs. Tests that must leak, or need the
 * environment to choose the mode, do it in a forked child whose stderr comes
 * back through a pipe.
 *
 * rill-test-labels: threaded */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rill/buf.h"
#include "rill/leak.h"
#include "rill/msg.h"
#include "util/testutil.h"

TestSuite(leak, .timeout = 30, .fini = rill_test_no_leaks);

enum { TYPE_A = RILL_MSG_USER + 44, TYPE_B = RILL_MSG_USER + 45 };

/* A user message type: a header and a payload, freed by its destroy. */
struct obj {
    struct rill_msg hdr;
    int payload;
};

static void obj_destroy(struct rill_msg *m)
{
    free(rill_container_of(m, struct obj, hdr));
}

/* noinline: the allocation site stays one frame below the test function in
 * every build type. */
__attribute__((noinline)) static struct rill_msg *obj_new(uint16_t type)
{
    struct obj *o = malloc(sizeof(*o));
    cr_assert_not_null(o);
    rill_msg_init(&o->hdr, type, obj_destroy);
    return &o->hdr;
}

/* ---- helpers for child processes ---- */

struct child {
    int status;
    char out[64 * 1024]; /* the child's stderr, NUL-terminated */
    size_t len;
};

/* Fork, run @fn in the child with stderr going into a pipe, and let the
 * child exit(0) normally so atexit handlers (the leak check) run. The parent
 * collects stderr and the exit status within 20 s, killing the child
 * otherwise. No cr_* calls in the child: it is not a Criterion worker. */
static void run_child(void (*fn)(void), struct child *c)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], STDERR_FILENO);
        close(p[1]);
        fn();
        exit(0);
    }
    close(p[1]);
    c->len = 0;
    uint64_t deadline = rill_test_deadline_ms(20000);
    while (rill_test_before(deadline)) {
        struct pollfd pfd = { .fd = p[0], .events = POLLIN };
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = read(p[0], c->out + c->len, sizeof(c->out) - 1 - c->len);
        if (n <= 0 || c->len + (size_t)n >= sizeof(c->out) - 1) {
            if (n > 0)
                c->len += (size_t)n;
            break;
        }
        c->len += (size_t)n;
    }
    c->out[c->len] = '\0';
    close(p[0]);
    if (!rill_test_before(deadline))
        kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &c->status, 0), pid);
}

static struct child child; /* static: a failed assertion must not leak it */

static int exit_status(const struct child *c)
{
    return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
}

#define assert_contains(hay, needle)                                                               \
    cr_assert_not_null(strstr((hay), (needle)), "expected \"%s\" in:\n%s", (needle), (hay))

/* ---- counts ---- */

Test(leak, live_count_follows_retain_and_release)
{
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_PARANOID), 0);
    cr_assert_eq(rill_leak_mode(), RILL_LEAK_PARANOID);
    cr_assert_eq(rill_leak_live(), 0);

    struct rill_msg *a = obj_new(TYPE_A);
    struct rill_msg *b = obj_new(TYPE_B);
    cr_assert_eq(rill_leak_live(), 2);

    /* References don't change the count; only the final release does. */
    cr_assert_eq(rill_msg_retain(a), a);
    cr_assert_eq(rill_msg_release(a), false);
    cr_assert_eq(rill_leak_live(), 2);
    cr_assert_eq(rill_msg_release(a), true);
    cr_assert_eq(rill_leak_live(), 1);
    rill_msg_retain(b);
    rill_msg_retain(b);
    cr_assert_eq(rill_msg_release_n(b, 3), true);
    cr_assert_eq(rill_leak_live(), 0);
}

Test(leak, set_mode_refuses_while_messages_live)
{
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_SIMPLE), 0);
    struct rill_msg *m = obj_new(TYPE_A);
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_PARANOID), -EBUSY);
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_OFF), -EBUSY);
    cr_assert_eq(rill_leak_mode(), RILL_LEAK_SIMPLE);
    cr_assert_eq(rill_leak_set_mode((enum rill_leak_mode)7), -EINVAL);
    rill_msg_release(m);
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_PARANOID), 0);
}

Test(leak, off_mode_tracks_nothing)
{
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_OFF), 0);
    struct rill_msg *m = obj_new(TYPE_A);
    cr_assert_eq(rill_leak_live(), 0);
    cr_assert_null(m->_leak);
    rill_msg_touch(m, "ignored");
    rill_msg_release(m);
}

/* ---- the paranoid report ---- */

static char *report_to_string(size_t *count)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    cr_assert_not_null(f);
    *count = rill_leak_report(f);
    fclose(f);
    return s;
}

Test(leak, report_names_type_site_and_touches)
{
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_PARANOID), 0);
    struct rill_msg *m = obj_new(TYPE_A);
    rill_msg_retain(m);
    rill_msg_touch(m, "queued for the peer");
    int touch_line = __LINE__ - 1;

    size_t n;
    char *r = report_to_string(&n);
    cr_assert_eq(n, 1);
    char want[128];
    snprintf(want, sizeof(want), "LEAK: message %p type %u (user) refcount 2", (void *)m, TYPE_A);
    assert_contains(r, want);
    snprintf(want, sizeof(want), "user(%u)=1", TYPE_A);
    assert_contains(r, want);
    /* The test function is the frame below obj_new (exported by -rdynamic). */
    assert_contains(r, "allocated at:");
    assert_contains(r, "leak_report_names_type_site_and_touches_impl+0x");
    /* The backtrace starts at the allocation site, not inside rill. */
    cr_assert_null(strstr(r, "rill__leak_track"), "%s", r);
    cr_assert_null(strstr(r, "rill_msg_init"), "%s", r);
    assert_contains(r, "last 2 of 2 touch(es), oldest first:");
    snprintf(want, sizeof(want), "queued for the peer at test_leak.c:%d", touch_line);
    assert_contains(r, want);
    /* Oldest first: the retain comes before the hint. */
    cr_assert_lt(strstr(r, " retain from "), strstr(r, "queued for the peer"), "%s", r);
    free(r);

    rill_msg_release_n(m, 2);
    r = report_to_string(&n);
    cr_assert_eq(n, 0);
    cr_assert_null(strstr(r, "LEAK:"), "%s", r);
    free(r);
}

Test(leak, report_keeps_only_the_last_touches)
{
    static const char *const hints[] = { "h0", "h1", "h2", "h3", "h4",  "h5",
                                         "h6", "h7", "h8", "h9", "h10", "h11" };
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_PARANOID), 0);
    struct rill_msg *m = obj_new(TYPE_A);
    for (size_t i = 0; i < RILL_ARRAY_SIZE(hints); i++)
        rill_msg_touch(m, hints[i]);

    size_t n;
    char *r = report_to_string(&n);
    char want[64];
    snprintf(want, sizeof(want), "last %d of %zu touch(es)", RILL_LEAK_TOUCHES,
             RILL_ARRAY_SIZE(hints));
    assert_contains(r, want);
    cr_assert_null(strstr(r, " h3 at "), "%s", r); /* dropped from the ring */
    assert_contains(r, " h4 at ");
    assert_contains(r, " h11 at ");
    cr_assert_lt(strstr(r, " h4 at "), strstr(r, " h11 at "), "%s", r);
    free(r);
    rill_msg_release(m);
}

/* ---- the exit-time check, in child processes ---- */

static void child_leaks_one(void)
{
    setenv("RILL_LEAK_EXITCODE", "77", 1);
    rill_leak_set_mode(RILL_LEAK_PARANOID);
    struct rill_msg *m = obj_new(TYPE_B);
    rill_msg_touch(m, "handed to nobody");
    struct rill_msg *freed = obj_new(TYPE_A);
    rill_msg_release(freed);
}

Test(leak, child_with_a_leak_exits_with_the_code_and_a_report)
{
    struct child *c = &child;
    run_child(child_leaks_one, c);
    cr_assert_eq(exit_status(c), 77, "status %#x, output:\n%s", c->status, c->out);
    assert_contains(c->out, "messages still alive at exit");
    assert_contains(c->out, "rill leak report (RILL_LEAK=paranoid): 1 live message(s)");
    char want[64];
    snprintf(want, sizeof(want), "type %u (user) refcount 1", TYPE_B);
    assert_contains(c->out, want);
    assert_contains(c->out, "handed to nobody at test_leak.c:");
    assert_contains(c->out, "leak_child_with_a_leak_exits_with_the_code_and_a_report_impl+0x");
    /* The released message is not reported. */
    snprintf(want, sizeof(want), "type %u (user)", TYPE_A);
    cr_assert_null(strstr(c->out, want), "%s", c->out);
}

static void child_releases_everything(void)
{
    setenv("RILL_LEAK_EXITCODE", "77", 1);
    rill_leak_set_mode(RILL_LEAK_PARANOID);
    rill_msg_release(obj_new(TYPE_A));
}

Test(leak, child_without_leaks_exits_cleanly)
{
    struct child *c = &child;
    run_child(child_releases_everything, c);
    cr_assert_eq(exit_status(c), 0, "status %#x, output:\n%s", c->status, c->out);
    cr_assert_null(strstr(c->out, "leak report"), "%s", c->out);
}

static void child_simple_counts(void)
{
    setenv("RILL_LEAK_EXITCODE", "78", 1);
    if (rill_leak_set_mode(RILL_LEAK_SIMPLE) != 0)
        return;
    struct rill_msg *a1 = obj_new(TYPE_A), *a2 = obj_new(TYPE_A), *b = obj_new(TYPE_B);
    struct rill_msg *tagged_buf = obj_new(RILL_MSG_BUF); /* a rill type tag */
    fprintf(stderr, "live=%zu\n", rill_leak_live());
    rill_leak_report(stderr);
    rill_msg_touch(b, "cheap in simple mode");
    rill_msg_release(a1);
    rill_msg_release(tagged_buf);
    rill_msg_release(b);
    fprintf(stderr, "after=%zu\n", rill_leak_live());
    (void)a2; /* leaked: the exit check must count it */
}

Test(leak, simple_mode_counts_per_type)
{
    struct child *c = &child;
    run_child(child_simple_counts, c);
    cr_assert_eq(exit_status(c), 78, "status %#x, output:\n%s", c->status, c->out);
    assert_contains(c->out, "live=4\n");
    assert_contains(c->out, "rill leak report (RILL_LEAK=simple): 4 live message(s)");
    char want[96];
    assert_contains(c->out, "by type: buf(1)=1 user(");
    snprintf(want, sizeof(want), " user(%u)=2", TYPE_A);
    assert_contains(c->out, want);
    snprintf(want, sizeof(want), " user(%u)=1", TYPE_B);
    assert_contains(c->out, want);
    assert_contains(c->out, "after=1\n");
    /* At exit: the one leak, by type, without per-message detail. */
    assert_contains(c->out, "rill leak report (RILL_LEAK=simple): 1 live message(s)");
    snprintf(want, sizeof(want), "by type: user(%u)=1\n", TYPE_A);
    assert_contains(c->out, want);
    cr_assert_null(strstr(c->out, "LEAK:"), "%s", c->out);
}

static void child_unknown_mode(void)
{
    setenv("RILL_LEAK", "bogus", 1);
    setenv("RILL_LEAK_EXITCODE", "79", 1);
    struct rill_msg *m = obj_new(TYPE_A); /* first message: reads the mode */
    fprintf(stderr, "mode=%d live=%zu\n", (int)rill_leak_mode(), rill_leak_live());
    rill_msg_release(m);
}

Test(leak, unknown_mode_warns_and_means_off)
{
    /* The worker has not touched the detector yet, so the child's first
     * message reads $RILL_LEAK. */
    struct child *c = &child;
    run_child(child_unknown_mode, c);
    cr_assert_eq(exit_status(c), 0, "status %#x, output:\n%s", c->status, c->out);
    assert_contains(c->out, "RILL_LEAK=bogus");
    assert_contains(c->out, "mode=0 live=0\n");
}

/* ---- rill_buf, the main customer ---- */

Test(leak, buffers_and_slices_are_tracked)
{
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_PARANOID), 0);
    struct rill_buf *b, *s;
    cr_assert_eq(rill_buf_alloc(64, &b), 0);
    cr_assert_eq(rill_buf_copy_from("hello world", 11, &s), 0);
    rill_buf_release(s);
    cr_assert_eq(rill_leak_live(), 1);

    cr_assert_eq(rill_buf_write_bytes(b, "payload", 7), 0);
    cr_assert_eq(rill_buf_slice(b, 0, 4, &s), 0); /* a new header: tracked too */
    cr_assert_eq(rill_leak_live(), 2);
    size_t n;
    char *r = report_to_string(&n);
    cr_assert_eq(n, 2);
    assert_contains(r, "buf(1)=2");
    assert_contains(r, "type 1 (buf)");
    assert_contains(r, "leak_buffers_and_slices_are_tracked_impl+0x");
    free(r);

    /* The slice holds a reference to its parent (the storage), so releasing
     * the parent first keeps both alive. */
    rill_buf_release(b);
    cr_assert_eq(rill_leak_live(), 2);
    rill_buf_release(s);
    cr_assert_eq(rill_leak_live(), 0);
}

static void child_leaks_a_slice(void)
{
    setenv("RILL_LEAK_EXITCODE", "77", 1);
    rill_leak_set_mode(RILL_LEAK_PARANOID);
    struct rill_buf *b, *s;
    if (rill_buf_alloc(64, &b) || rill_buf_write_bytes(b, "payload", 7) ||
        rill_buf_slice(b, 0, 4, &s))
        return;
    rill_msg_touch(rill_buf_msg(s), "parsed header");
    rill_buf_release(b); /* the parent, but its storage stays with the slice */
}

Test(leak, child_leaking_a_slice_reports_both_buffers)
{
    struct child *c = &child;
    run_child(child_leaks_a_slice, c);
    cr_assert_eq(exit_status(c), 77, "status %#x, output:\n%s", c->status, c->out);
    assert_contains(c->out, "rill leak report (RILL_LEAK=paranoid): 2 live message(s)");
    assert_contains(c->out, "by type: buf(1)=2");
    assert_contains(c->out, "parsed header at test_leak.c:");
    assert_contains(c->out, " retain from "); /* the slice's reference to its parent */
    assert_contains(c->out, "leak_child_leaking_a_slice_reports_both_buffers_impl+0x");
}

/* ---- concurrency ---- */

#define THREADS 4
#define ROUNDS  500

/* Messages cross threads through these slots, so the final release (and
 * untrack) often runs on another thread than the allocation. */
static _Atomic(struct rill_msg *) slots[8];
static atomic_bool stop_reporting;

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        struct rill_msg *m = obj_new(i % 2 ? TYPE_A : TYPE_B);
        rill_msg_retain(m);
        rill_msg_touch(m, "churn");
        rill_msg_release(m);
        struct rill_msg *old = atomic_exchange(&slots[rand_r(&seed) % 8], m);
        if (old) {
            rill_msg_touch(old, "taken");
            rill_msg_release(old);
        }
    }
    return NULL;
}

static void *reporter(void *arg)
{
    FILE *sink = fopen("/dev/null", "w");
    while (!atomic_load(&stop_reporting)) {
        rill_leak_report(sink);
        (void)rill_leak_live();
    }
    fclose(sink);
    return NULL;
}

static void churn_in_threads(void)
{
    pthread_t t[THREADS], rep;
    cr_assert_eq(pthread_create(&rep, NULL, reporter, NULL), 0);
    for (uintptr_t i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop_reporting, true);
    pthread_join(rep, NULL);

    size_t parked = 0;
    for (int i = 0; i < 8; i++)
        parked += atomic_load(&slots[i]) != NULL;
    cr_assert_eq(rill_leak_live(), parked);
    for (int i = 0; i < 8; i++) {
        struct rill_msg *m = atomic_exchange(&slots[i], NULL);
        if (m)
            rill_msg_release(m);
    }
    cr_assert_eq(rill_leak_live(), 0);
}

Test(leak, threads_paranoid_count_returns_to_zero)
{
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_PARANOID), 0);
    churn_in_threads();
}

Test(leak, threads_simple_count_returns_to_zero)
{
    cr_assert_eq(rill_leak_set_mode(RILL_LEAK_SIMPLE), 0);
    churn_in_threads();
}

/* ---- debug-build contract checks ---- */

#if RILL_DEBUG
/* Storage that outlives the message, so a second release reaches msg.c's
 * debug check instead of freed memory. */
struct static_obj {
    struct rill_msg hdr;
    int destroyed;
};

static void static_obj_destroy(struct rill_msg *m)
{
    rill_container_of(m, struct static_obj, hdr)->destroyed++;
}

Test(leak, double_release_aborts, .signal = SIGABRT)
{
    static struct static_obj o;
    rill_msg_init(&o.hdr, TYPE_A, static_obj_destroy);
    rill_msg_release(&o.hdr);
    cr_assert_eq(o.destroyed, 1);
    rill_msg_release(&o.hdr);
}

static void child_double_release(void)
{
    static struct static_obj o;
    rill_msg_init(&o.hdr, TYPE_A, static_obj_destroy);
    rill_msg_release(&o.hdr);
    rill_msg_release(&o.hdr);
}

static void child_retain_after_release(void)
{
    static struct static_obj o;
    rill_msg_init(&o.hdr, TYPE_A, static_obj_destroy);
    rill_msg_release(&o.hdr);
    rill_msg_retain(&o.hdr);
}

Test(leak, double_release_and_use_after_release_say_so)
{
    struct child *c = &child;
    run_child(child_double_release, c);
    cr_assert(WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGABRT, "status %#x:\n%s",
              c->status, c->out);
    assert_contains(c->out, "double release: message");

    run_child(child_retain_after_release, c);
    cr_assert(WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGABRT, "status %#x:\n%s",
              c->status, c->out);
    assert_contains(c->out, "use after release: retain of message");
}
#else
Test(leak, double_release_aborts)
{
    cr_skip_test("contract checks are compiled out (RILL_DEBUG=0)");
}
#endif
