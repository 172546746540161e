/* Logging: a global level and sink, both replaceable at run time. The
 * level starts from $RILL_LOG. Formatting happens on the caller's stack. */
#include "rill/log.h"

#include "rill/common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic int log_level = -1; /* -1: not read from the environment yet */

struct sink {
    rill_log_sink_fn *fn;
    void *arg;
    struct sink *retired_next;
};
static _Atomic(struct sink *) log_sink;
/* Replaced sink records stay reachable (another thread may still be calling
 * through one); sinks are replaced rarely, so the list stays short. */
static struct sink *retired_sinks;
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF" };

static int level_from_env(void)
{
    const char *s = getenv("RILL_LOG");
    if (!s)
        return RILL_LOG_WARN;
    for (int i = 0; i <= RILL_LOG_OFF; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    return RILL_LOG_WARN;
}

enum rill_log_level rill_log_get_level(void)
{
    int l = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (RILL_UNLIKELY(l < 0)) {
        int want = level_from_env();
        int expect = -1;
        atomic_compare_exchange_strong(&log_level, &expect, want);
        l = atomic_load(&log_level);
    }
    return (enum rill_log_level)l;
}

void rill_log_set_level(enum rill_log_level level)
{
    atomic_store(&log_level, (int)level);
}

int rill_log_enabled(enum rill_log_level level)
{
    return (int)level >= (int)rill_log_get_level() && level < RILL_LOG_OFF;
}

static void default_sink(void *arg, enum rill_log_level level, const char *file, int line,
                         const char *msg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char thread[16] = "?";
    pthread_getname_np(pthread_self(), thread, sizeof(thread));
    const char *base = strrchr(file, '/');
    /* One fprintf per message so lines from different threads don't mix. */
    fprintf(stderr, "%02d:%02d:%02d.%06ld %-5s [%s] %s:%d: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000, level_names[level], thread, base ? base + 1 : file, line, msg);
}

void rill_log_set_sink(rill_log_sink_fn *fn, void *arg)
{
    struct sink *s = NULL;
    if (fn) {
        s = malloc(sizeof(*s));
        if (!s)
            return;
        s->fn = fn;
        s->arg = arg;
    }
    struct sink *old = atomic_exchange(&log_sink, s);
    if (old) {
        pthread_mutex_lock(&retired_lock);
        old->retired_next = retired_sinks;
        retired_sinks = old;
        pthread_mutex_unlock(&retired_lock);
    }
}

void rill_log_vwrite(enum rill_log_level level, const char *file, int line, const char *fmt,
                     va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    struct sink *s = atomic_load_explicit(&log_sink, memory_order_acquire);
    if (s)
        s->fn(s->arg, level, file, line, buf);
    else
        default_sink(NULL, level, file, line, buf);
}

void rill_log_write(enum rill_log_level level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rill_log_vwrite(level, file, line, fmt, ap);
    va_end(ap);
}

void rill_panic(const char *file, int line, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    /* Straight to stderr: the sink may be the thing that is broken. */
    fprintf(stderr, "rill: fatal: %s (%s:%d)\n", buf, file, line);
    fflush(stderr);
    abort();
}
