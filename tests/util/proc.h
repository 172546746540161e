/* Processes for the integration tests that drive the example binaries:
 * start one as a server and read the line it prints when it is ready, stop
 * it and check its exit, kill it from a fixture; and shell command lines
 * (curl, redis-cli, ...) with their output. Failures are Criterion
 * assertions: they fail the calling test. */
#ifndef RILL_TEST_PROC_H
#define RILL_TEST_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* Start the program at path @argv[0] with @argv (NULL-terminated), its
 * stdout into a pipe, and read what it prints until a newline arrives (at
 * most 20 s) into @line (@size bytes, NUL-terminated; more than one line
 * when they came together). The child dies with the calling process
 * (PR_SET_PDEATHSIG), so no server outlives a test that fails hard.
 * Returns its pid. */
pid_t rill_test_proc_start(const char *const *argv, char *line, size_t size);

/* SIGTERM, then wait at most 20 s for the exit (a process still running
 * then is killed). Fails the test unless it exited with status 0 (99: the
 * leak detector found live messages). Sets *@pid to -1 once reaped. */
void rill_test_proc_stop(pid_t *pid);

/* SIGKILL and reap *@pid when it is > 0, then set it to -1: for a
 * fixture's .fini, whatever the test did. */
void rill_test_proc_kill(pid_t *pid);

/* Run the shell command line @fmt (popen) and return its standard output
 * in a malloc'd string; *@status (may be NULL) gets its exit status, -1
 * when a signal ended it. */
char *rill_test_sh(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
