/* The idle tracker shared by rill_idle_handler and
 * rill_read_timeout_handler (codec/idle.c), and the write watch that both
 * idle.c and timeout.c use to learn on the loop when a write completed.
 * Loop thread only. */
#ifndef RILL_CODEC_IDLE_INTERNAL_H
#define RILL_CODEC_IDLE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/future.h"
#include "rill/idle.h"

struct rill_ctx;
struct rill_loop;
struct rill_msg;
struct rill_timer;
struct rill__idle;

enum { RILL__IDLE_R, RILL__IDLE_W, RILL__IDLE_A, RILL__IDLE_KINDS };

/* Called when a kind went idle (@type is RILL_EVENT_IDLE_*). The tracker
 * is pinned for the call; the context may be removed inside it, after
 * which idle->ctx is NULL. */
typedef void rill__idle_fn(struct rill__idle *idle, int type, bool first);

/* Reference counted because write listeners may outlive the context: the
 * context holds one reference, each watched write one more. */
struct rill__idle {
    unsigned refs;
    struct rill_ctx *ctx; /* NULL once the handler was removed */
    struct rill_loop *loop;
    rill__idle_fn *on_idle;
    struct rill_idle_config cfg;
    uint64_t idle_ns[RILL__IDLE_KINDS];
    int state;    /* see idle.c */
    bool reading; /* between a read and its read_complete */
    bool fired;   /* free for the user of the tracker (read timeout: closed) */
    bool first[RILL__IDLE_KINDS];
    uint64_t last_read, last_write, last_check;
    size_t last_pending;
    struct rill_timer *timer[RILL__IDLE_KINDS];
};

/* Check @cfg (-EINVAL with a warning naming the problem) and make a
 * tracker for @ctx with one reference; timers start with
 * rill__idle_start. Returns 0, -EINVAL or -ENOMEM. */
int rill__idle_new(struct rill_ctx *ctx, const struct rill_idle_config *cfg, rill__idle_fn *on_idle,
                   const char *who, struct rill__idle **out);
/* Start the timers if the channel is active and they never ran. */
void rill__idle_start(struct rill__idle *idle);
/* Cancel the timers for good (inactive). */
void rill__idle_stop(struct rill__idle *idle);
/* The context is going: stop, forget it, drop its reference. */
void rill__idle_removed(struct rill__idle *idle);

/* Handler callbacks that feed the tracker found at the start of the
 * context state (struct { struct rill__idle *idle; }) and pass the event
 * on. */
int rill__idle_on_added(struct rill_ctx *ctx, const struct rill_idle_config *cfg,
                        rill__idle_fn *on_idle, const char *who);
void rill__idle_on_removed(struct rill_ctx *ctx);
void rill__idle_on_active(struct rill_ctx *ctx);
void rill__idle_on_inactive(struct rill_ctx *ctx);
void rill__idle_on_read(struct rill_ctx *ctx, struct rill_msg *msg);
void rill__idle_on_read_complete(struct rill_ctx *ctx);
void rill__idle_on_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p);

/* Arrange for fn(p, arg) to run once, on @loop's thread, when the write
 * that will carry *@down completes (success or failure). *@down receives
 * a new reference to pass with the write, released by the caller after
 * rill_ctx_write: @user itself when its listeners run on @loop, else a
 * promise of @loop that completes @user with its outcome (and is
 * cancelled when @user is). Returns 0, or -ENOMEM: then fn never runs and
 * *@down is a reference to @user (or NULL). */
int rill__write_watch(struct rill_loop *loop, struct rill_promise *user, rill_future_fn *fn,
                      void *arg, struct rill_promise **down);

/* "N ms" for log and exception texts ("1500 ms", "0.250 ms"). */
void rill__idle_fmt_ms(char *out, size_t size, uint64_t ns);

#endif /* RILL_CODEC_IDLE_INTERNAL_H */
