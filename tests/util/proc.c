#include "util/proc.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/testutil.h"

pid_t rill_test_proc_start(const char *const *argv, char *line, size_t size)
{
    cr_assert_eq(access(argv[0], X_OK), 0, "%s is not built", argv[0]);
    int out[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(out[1], STDOUT_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    size_t n = 0;
    uint64_t deadline = rill_test_deadline_ms(20000);
    while (n < size - 1 && !memchr(line, '\n', n) && rill_test_before(deadline)) {
        struct pollfd p = { .fd = out[0], .events = POLLIN };
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t k = read(out[0], line + n, size - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(out[0]);
    line[n] = '\0';
    return pid;
}

void rill_test_proc_stop(pid_t *pid)
{
    cr_assert_gt(*pid, 0);
    kill(*pid, SIGTERM);
    int status = 0;
    pid_t r = 0;
    uint64_t deadline = rill_test_deadline_ms(20000);
    while ((r = waitpid(*pid, &status, WNOHANG)) == 0 && rill_test_before(deadline))
        usleep(10000);
    if (r == 0)
        rill_test_proc_kill(pid);
    else
        *pid = -1;
    cr_assert_neq(r, 0, "the server did not stop within 20 s");
    cr_assert(WIFEXITED(status), "the server died of signal %d", WTERMSIG(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "the server exited with %d (99: leaked buffers)",
                 WEXITSTATUS(status));
}

void rill_test_proc_kill(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = -1;
    }
}

char *rill_test_sh(int *status, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    cr_assert_not_null(s);
    size_t k;
    while ((k = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n < 1024) {
            cap *= 2;
            s = realloc(s, cap);
            cr_assert_not_null(s);
        }
    }
    s[n] = '\0';
    int st = pclose(f);
    if (status)
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return s;
}
