/* Levelled logging with a replaceable sink. The level check happens before
 * any formatting, so disabled levels cost one load and one compare. */
#ifndef RILL_LOG_H
#define RILL_LOG_H

#include <stdarg.h>

enum rill_log_level {
    RILL_LOG_TRACE = 0,
    RILL_LOG_DEBUG = 1,
    RILL_LOG_INFO = 2,
    RILL_LOG_WARN = 3,
    RILL_LOG_ERROR = 4,
    RILL_LOG_OFF = 5,
};

/* A sink receives one formatted message (no trailing newline) with its
 * origin. It may be called from any thread, concurrently. */
typedef void rill_log_sink_fn(void *arg, enum rill_log_level level, const char *file, int line,
                              const char *msg);

/* Thread: any. The level starts from $RILL_LOG (trace|debug|info|warn|error|off),
 * default warn. */
void rill_log_set_level(enum rill_log_level level);
enum rill_log_level rill_log_get_level(void);

/* Thread: any. Replace the sink; NULL restores the default (stderr, one line
 * per message with time, level, thread name and origin). @arg is borrowed and
 * must stay valid while the sink is installed. */
void rill_log_set_sink(rill_log_sink_fn *sink, void *arg);

/* Thread: any. Prefer the RILL_LOG_* macros, which skip formatting when the
 * level is disabled. */
void rill_log_write(enum rill_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rill_log_vwrite(enum rill_log_level level, const char *file, int line, const char *fmt,
                     va_list ap);

/* Thread: any. True when a message at @level would be emitted. */
int rill_log_enabled(enum rill_log_level level);

#define RILL_LOG(level, ...)                                                                       \
    do {                                                                                           \
        if (rill_log_enabled(level))                                                               \
            rill_log_write(level, __FILE__, __LINE__, __VA_ARGS__);                                \
    } while (0)
#define RILL_TRACE(...)  RILL_LOG(RILL_LOG_TRACE, __VA_ARGS__)
#define RILL_DEBUGF(...) RILL_LOG(RILL_LOG_DEBUG, __VA_ARGS__)
#define RILL_INFO(...)   RILL_LOG(RILL_LOG_INFO, __VA_ARGS__)
#define RILL_WARN(...)   RILL_LOG(RILL_LOG_WARN, __VA_ARGS__)
#define RILL_ERROR(...)  RILL_LOG(RILL_LOG_ERROR, __VA_ARGS__)

/* Print a message naming the broken contract and abort. Used by the debug
 * checks; Thread: any. */
_Noreturn void rill_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define RILL_PANIC(...) rill_panic(__FILE__, __LINE__, __VA_ARGS__)

#endif /* RILL_LOG_H */
