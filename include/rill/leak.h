/* Leak detector for messages (buffers and every other rill_msg).
 *
 * The mode comes from $RILL_LEAK once, at the first message:
 *   off       nothing is tracked (the default; costs one predictable branch)
 *   simple    live messages are counted per type; the count is reported at exit
 *   paranoid  every message records its allocation site (a backtrace) and its
 *             last touches (retain, release, rill_msg_touch); every message
 *             still alive at exit is reported with them
 *
 * At process exit (simple and paranoid) a report goes to stderr when
 * anything leaked; with $RILL_LEAK_EXITCODE=N set, the process then exits
 * with status N so test runs fail on any leak (later atexit handlers are
 * skipped then). A forked child that calls exit() checks the messages it
 * inherited too: children should _exit() or exec. Unknown $RILL_LEAK values
 * log a warning and mean off.
 *
 * Every function here: Thread: any. */
#ifndef RILL_LEAK_H
#define RILL_LEAK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

enum rill_leak_mode {
    RILL_LEAK_OFF = 0,
    RILL_LEAK_SIMPLE = 1,
    RILL_LEAK_PARANOID = 2,
};

/* The mode in force (read from the environment on first use). */
enum rill_leak_mode rill_leak_mode(void);

/* Override the mode (tests; the environment is not read again afterwards).
 * Only while no tracked message is alive: returns 0, -EBUSY when
 * rill_leak_live() != 0, or -EINVAL for an unknown mode. Messages created
 * while the mode was off stay untracked. Don't race it against threads
 * that create messages. */
int rill_leak_set_mode(enum rill_leak_mode mode);

/* Messages alive now (0 in off mode). */
size_t rill_leak_live(void);

/* Write a report of every live message to @out (paranoid: with allocation
 * backtrace and last touches; simple: counts per type). Returns the number
 * of live messages. Frames print as function+offset (module+offset): static
 * functions are not in the dynamic symbol table and print as "??" (link
 * executables with -rdynamic to name their global functions); resolve any
 * frame with `addr2line -f -e module offset`. */
size_t rill_leak_report(FILE *out);

/* Maximum number of touches kept per message in paranoid mode. */
#define RILL_LEAK_TOUCHES 8

/* Internal hooks called by rill_msg_*; not for applications. */
struct rill_msg;
void rill__leak_track(struct rill_msg *m, void *site);
void rill__leak_untrack(struct rill_msg *m);
void rill__leak_touch(struct rill_msg *m, const char *what, const char *file, int line, void *site);
extern _Atomic int rill__leak_mode; /* -1 until initialised; read via rill_leak_mode() */

#endif /* RILL_LEAK_H */
