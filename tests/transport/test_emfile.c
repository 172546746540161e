/* Running out of file descriptors while accepting (EMFILE): the test lowers
 * its own RLIMIT_NOFILE (each Criterion test is a child process of the
 * runner, so the limit dies with it). The server must not spin (CPU time
 * is measured), must raise one exception on its pipeline, keep serving the
 * connections it has, accept the waiting ones once descriptors are free
 * again, and shed the backlog with its reserved descriptor when the
 * shortage lasts.
 *
 * rill-test-labels: threaded
 */
#include "tests/transport/tx.h"

#include <dirent.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "util/testutil.h"

TestSuite(emfile, .timeout = 60, .fini = rill_test_no_leaks);

#define NCLIENTS 8

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

static uint64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void set_soft_limit(rlim_t n)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = n;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* 1: echoed, 0: nothing within @ms, -1: closed or reset by the server. */
static int poll_echo(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, ms) <= 0)
        return 0;
    char buf[16];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n > 0 ? 1 : n == 0 || errno != EAGAIN ? -1 : 0;
}

struct fixture {
    struct rill_loop_group *boss, *workers;
    struct rill_server *srv;
    struct tx_collector *listener_events;
    struct rill_addr addr;
    int fds[NCLIENTS];
    rlim_t old_limit;
};

static void start(struct fixture *f)
{
    f->boss = tx_group("boss", 1);
    f->workers = tx_group("work", 1);
    f->listener_events = tx_collector_new(0);
    struct rill_server_opts so;
    rill_server_opts_init(&so);
    so.boss = f->boss;
    so.workers = f->workers;
    so.child_init = tx_echo_init;
    so.server_init = tx_collector_init;
    so.server_arg = f->listener_events;
    cr_assert_eq(rill_server_bind(&so, "tcp://127.0.0.1:0", &f->srv), 0);
    cr_assert_eq(rill_promise_wait(rill_server_bound(f->srv), TX_WAIT_NS), 0);
    f->addr = *rill_server_local_addr(f->srv);
    /* The client sockets exist before the limit drops. */
    for (int i = 0; i < NCLIENTS; i++)
        f->fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    f->old_limit = rl.rlim_cur;
    /* Room for two accepted connections, no more. */
    set_soft_limit((rlim_t)open_fds() + 2);
    for (int i = 0; i < NCLIENTS; i++) {
        cr_assert_eq(connect(f->fds[i], (struct sockaddr *)&f->addr.sa, f->addr.len), 0);
        cr_assert_eq(send(f->fds[i], "ping", 4, 0), 4);
    }
}

static void stop(struct fixture *f)
{
    set_soft_limit(f->old_limit);
    for (int i = 0; i < NCLIENTS; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    tx_server_free(f->srv, true);
    tx_group_free(f->workers);
    tx_group_free(f->boss);
    tx_collector_free(f->listener_events);
}

Test(emfile, pauses_without_spinning_then_accepts_the_backlog)
{
    struct fixture f;
    start(&f);

    /* Two connections are served; the others wait in the backlog. */
    int served = 0;
    for (int i = 0; i < NCLIENTS; i++)
        served += poll_echo(f.fds[i], i < 2 ? 2000 : 50) == 1;
    cr_assert_eq(served, 2);
    cr_assert(TX_EVENTUALLY(atomic_load(&f.listener_events->exceptions) == 1));
    cr_assert_eq(atomic_load(&f.listener_events->last_error), -EMFILE);

    /* No busy loop while descriptors are short. */
    uint64_t c0 = cpu_us(), t0 = rill_clock_now_ns();
    usleep(600 * 1000);
    uint64_t cpu = cpu_us() - c0, wall = (rill_clock_now_ns() - t0) / 1000;
    cr_assert_lt(cpu, wall / 5, "%llu us of CPU in %llu us", (unsigned long long)cpu,
                 (unsigned long long)wall);
    cr_assert_eq(atomic_load(&f.listener_events->exceptions), 1, "one exception per shortage");

    /* Descriptors come back: the waiting connections are accepted. */
    set_soft_limit(f.old_limit);
    for (int i = 2; i < NCLIENTS; i++)
        cr_assert_eq(poll_echo(f.fds[i], 5000), 1, "connection %d", i);
    cr_assert_eq(rill_server_shed(f.srv), 0);
    cr_assert(TX_EVENTUALLY(rill_server_accepted(f.srv) == NCLIENTS));
    stop(&f);
}

Test(emfile, a_lasting_shortage_sheds_the_backlog)
{
    struct fixture f;
    start(&f);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(poll_echo(f.fds[i], 2000), 1);

    /* After about 1.5 s of pauses the server closes what waits. */
    int shed = 0;
    for (int i = 2; i < NCLIENTS; i++)
        shed += poll_echo(f.fds[i], 4000) == -1;
    cr_assert_eq(shed, NCLIENTS - 2);
    cr_assert(TX_EVENTUALLY(rill_server_shed(f.srv) == NCLIENTS - 2));

    /* The served connections still work, and new ones are accepted once
     * descriptors are back. */
    cr_assert_eq(send(f.fds[0], "more", 4, 0), 4);
    cr_assert_eq(poll_echo(f.fds[0], 2000), 1);
    set_soft_limit(f.old_limit);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&f.addr.sa, f.addr.len), 0);
    cr_assert_eq(send(fd, "late", 4, 0), 4);
    cr_assert_eq(poll_echo(fd, 5000), 1);
    close(fd);
    stop(&f);
}
