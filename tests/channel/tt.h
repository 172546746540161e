/* A test transport ("tt") built on the transport contract
 * (channel/channel_internal.h) the way a real one is: it embeds struct
 * rill_channel, counts every op the core calls, and writes into a fake
 * kernel that accepts @budget bytes per write call (SIZE_MAX: everything),
 * so tests can stage partial writes, a full socket, slow connects and
 * failures. Also a trace recorder handler shared by the channel tests. */
#ifndef RILL_TEST_TT_H
#define RILL_TEST_TT_H

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "channel/channel_internal.h"
#include "core/loop_internal.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/msg.h"
#include "rill/pipeline.h"

/* ---- trace ---- */

static char tt_trace[8192];

static inline void tt_log(const char *fmt, ...)
{
    size_t len = strlen(tt_trace);
    if (len && len < sizeof(tt_trace) - 1)
        tt_trace[len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tt_trace + len, sizeof(tt_trace) - len, fmt, ap);
    va_end(ap);
}

static inline void tt_trace_reset(void)
{
    tt_trace[0] = '\0';
}

/* ---- messages ---- */

static inline struct rill_msg *tt_msg(const char *s)
{
    struct rill_buf *b = NULL;
    cr_assert_eq(rill_buf_copy_from(s, strlen(s), &b), 0);
    return rill_buf_msg(b);
}

/* True when @m is a buffer holding exactly @s (readable bytes). */
static inline bool tt_msg_is(struct rill_msg *m, const char *s)
{
    struct rill_buf *b = rill_buf_from_msg(m);
    return b && rill_buf_readable(b) == strlen(s) &&
           rill_buf_equal_bytes(b, rill_buf_reader_index(b), s, strlen(s));
}

/* The readable bytes of @m as a string in @out (for traces). */
static inline const char *tt_msg_str(struct rill_msg *m, char *out, size_t size)
{
    struct rill_buf *b = rill_buf_from_msg(m);
    size_t n = b ? rill_buf_readable(b) : 0;
    if (n >= size)
        n = size - 1;
    if (b)
        rill_buf_get_bytes(b, rill_buf_reader_index(b), out, n);
    out[n] = '\0';
    return out;
}

/* ---- the transport ---- */

struct tt {
    struct rill_channel base;
    size_t budget;      /* bytes the fake kernel takes per write call */
    bool manual_write;  /* ops->write does nothing: the test drives iov/advance */
    bool waiting_out;   /* "EAGAIN": waiting for a pretend EPOLLOUT */
    int connect_result; /* what ops->connect returns */
    int bind_result, register_result, shutdown_result, option_result;
    int writes, begin_reads, stop_reads, closes, registers, deregisters, shutdowns, binds;
    int connects, options;
    char sink[65536]; /* bytes the fake kernel took */
    size_t sunk;
    int *destroyed; /* set to 1 at destroy when not NULL */
};

static inline struct tt *tt_of(struct rill_channel *ch)
{
    return (struct tt *)ch;
}

static inline int tt_do_register(struct rill_channel *ch)
{
    tt_of(ch)->registers++;
    return tt_of(ch)->register_result;
}

static inline void tt_do_deregister(struct rill_channel *ch)
{
    tt_of(ch)->deregisters++;
}

static inline int tt_bind(struct rill_channel *ch, const struct rill_addr *a)
{
    (void)a;
    tt_of(ch)->binds++;
    return tt_of(ch)->bind_result;
}

static inline int tt_connect(struct rill_channel *ch, const struct rill_addr *r,
                             const struct rill_addr *l)
{
    (void)r;
    (void)l;
    tt_of(ch)->connects++;
    return tt_of(ch)->connect_result;
}

static inline void tt_begin_read(struct rill_channel *ch)
{
    tt_of(ch)->begin_reads++;
}

static inline void tt_stop_read(struct rill_channel *ch)
{
    tt_of(ch)->stop_reads++;
}

/* What an epoll transport does: gather, "writev", advance, up to the spin
 * limit; a short write means the socket is full. */
static inline void tt_write(struct rill_channel *ch)
{
    struct tt *t = tt_of(ch);
    t->writes++;
    if (t->manual_write || t->waiting_out)
        return;
    int64_t spin = rill__channel_opt(ch, RILL_OPT_WRITE_SPIN);
    for (int64_t i = 0; i < spin && rill__outbound_has_flushed(ch); i++) {
        struct iovec iov[IOV_MAX];
        size_t bytes = 0;
        int n = rill__outbound_iov(ch, iov, IOV_MAX, &bytes);
        if (n == 0 && bytes == 0) {
            size_t written;
            struct rill_msg *m = rill__outbound_current(ch, &written);
            struct rill_buf *b = rill_buf_from_msg(m);
            if (m && (!b || rill_buf_readable(b) == written)) {
                rill__outbound_advance(ch, 0); /* empty buffer or non-buffer message */
                continue;
            }
            break;
        }
        size_t take = bytes < t->budget ? bytes : t->budget;
        size_t left = take;
        for (int k = 0; k < n && left; k++) {
            size_t c = iov[k].iov_len < left ? iov[k].iov_len : left;
            cr_assert_leq(t->sunk + c, sizeof(t->sink));
            memcpy(t->sink + t->sunk, iov[k].iov_base, c);
            t->sunk += c;
            left -= c;
        }
        rill__outbound_advance(ch, take);
        if (!rill_channel_is_open(ch))
            return;
        if (take < bytes) {
            t->waiting_out = true;
            return;
        }
    }
    if (rill__outbound_has_flushed(ch))
        rill__channel_flush_later(ch);
}

/* The pretend EPOLLOUT: the socket drained. */
static inline void tt_epollout(struct tt *t)
{
    t->waiting_out = false;
    rill__channel_flush_now(&t->base);
}

static inline int tt_shutdown_output(struct rill_channel *ch)
{
    tt_of(ch)->shutdowns++;
    return tt_of(ch)->shutdown_result;
}

static inline void tt_close(struct rill_channel *ch)
{
    tt_of(ch)->closes++;
}

static inline void tt_destroy(struct rill_channel *ch)
{
    if (tt_of(ch)->destroyed)
        *tt_of(ch)->destroyed = 1;
    free(ch);
}

static inline int tt_set_option(struct rill_channel *ch, enum rill_option opt, int64_t v)
{
    (void)opt;
    (void)v;
    tt_of(ch)->options++;
    return tt_of(ch)->option_result;
}

static const struct rill_transport_ops tt_ops = {
    .name = "tt",
    .do_register = tt_do_register,
    .do_deregister = tt_do_deregister,
    .bind = tt_bind,
    .connect = tt_connect,
    .begin_read = tt_begin_read,
    .stop_read = tt_stop_read,
    .write = tt_write,
    .shutdown_output = tt_shutdown_output,
    .close = tt_close,
    .destroy = tt_destroy,
    .set_option = tt_set_option,
};

static const struct rill_transport_ops tt_server_ops = {
    .name = "tt-server",
    .flags = RILL_TRANSPORT_F_SERVER,
    .do_register = tt_do_register,
    .bind = tt_bind,
    .begin_read = tt_begin_read,
    .close = tt_close,
    .destroy = tt_destroy,
};

static inline struct tt *tt_new_ops(struct rill_loop *loop, const struct rill_transport_ops *ops,
                                    struct rill_channel *parent)
{
    struct tt *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    cr_assert_eq(rill__channel_init(&t->base, ops, loop, parent), 0);
    t->budget = SIZE_MAX;
    return t;
}

static inline struct tt *tt_new(struct rill_loop *loop)
{
    return tt_new_ops(loop, &tt_ops, NULL);
}

/* ---- driving a manual loop from the test thread ---- */

static inline struct rill_loop *tt_manual_loop(void)
{
    struct rill_loop_opts o;
    rill_loop_opts_init(&o);
    o.name = "tt";
    o.manual_clock = true;
    struct rill_loop *loop = NULL;
    cr_assert_eq(rill_loop_new(&o, &loop), 0);
    return loop;
}

static struct rill_loop *tt_saved;

/* Act as @loop's thread (so pipeline calls run inline) until tt_leave. */
static inline void tt_enter(struct rill_loop *loop)
{
    cr_assert_eq(rill__loop_enter(loop, &tt_saved), 0);
}

static inline void tt_leave(struct rill_loop *loop)
{
    rill__loop_leave(loop, tt_saved);
}

/* Leave, run every queued task, enter again. */
static inline int tt_run_pending(struct rill_loop *loop)
{
    tt_leave(loop);
    int total = 0, n;
    while ((n = rill_loop_run_once(loop, 0)) > 0)
        total += n;
    tt_enter(loop);
    return total;
}

/* ---- a recording handler: every slot logs "<arg>:<event>" and passes on ---- */

static inline const char *rec_name(struct rill_ctx *ctx)
{
    return rill_ctx_arg(ctx) ? (const char *)rill_ctx_arg(ctx) : rill_ctx_name(ctx);
}

static inline int rec_added(struct rill_ctx *ctx)
{
    tt_log("%s:added", rec_name(ctx));
    return 0;
}
static inline void rec_removed(struct rill_ctx *ctx)
{
    tt_log("%s:removed", rec_name(ctx));
}
static inline void rec_registered(struct rill_ctx *ctx)
{
    tt_log("%s:registered", rec_name(ctx));
    rill_ctx_fire_registered(ctx);
}
static inline void rec_active(struct rill_ctx *ctx)
{
    tt_log("%s:active", rec_name(ctx));
    rill_ctx_fire_active(ctx);
}
static inline void rec_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    char s[64];
    tt_log("%s:read(%s)", rec_name(ctx), tt_msg_str(msg, s, sizeof(s)));
    rill_ctx_fire_read(ctx, msg);
}
static inline void rec_read_complete(struct rill_ctx *ctx)
{
    tt_log("%s:read_complete", rec_name(ctx));
    rill_ctx_fire_read_complete(ctx);
}
static inline void rec_writability(struct rill_ctx *ctx, bool w)
{
    tt_log("%s:writable(%d)", rec_name(ctx), (int)w);
    rill_ctx_fire_writability_changed(ctx, w);
}
static inline void rec_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    tt_log("%s:event(%d)", rec_name(ctx), ev->type);
    rill_ctx_fire_user_event(ctx, ev);
}
static inline void rec_exception(struct rill_ctx *ctx, int err, const char *why)
{
    tt_log("%s:exception(%s,%s)", rec_name(ctx), rill_errname(err), why ? why : "-");
    rill_ctx_fire_exception(ctx, err, why);
}
static inline void rec_inactive(struct rill_ctx *ctx)
{
    tt_log("%s:inactive", rec_name(ctx));
    rill_ctx_fire_inactive(ctx);
}
static inline void rec_unregistered(struct rill_ctx *ctx)
{
    tt_log("%s:unregistered", rec_name(ctx));
    rill_ctx_fire_unregistered(ctx);
}
static inline void rec_close(struct rill_ctx *ctx, struct rill_promise *p)
{
    tt_log("%s:close", rec_name(ctx));
    rill_ctx_close(ctx, p);
}
static inline void rec_read_request(struct rill_ctx *ctx)
{
    tt_log("%s:read_request", rec_name(ctx));
    rill_ctx_read_request(ctx);
}
static inline void rec_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    char s[64];
    tt_log("%s:write(%s)", rec_name(ctx), tt_msg_str(msg, s, sizeof(s)));
    rill_ctx_write(ctx, msg, p);
}
static inline void rec_flush(struct rill_ctx *ctx)
{
    tt_log("%s:flush", rec_name(ctx));
    rill_ctx_flush(ctx);
}

/* Lifecycle, reads and writes; no read_request (auto-read would clutter
 * traces). */
static const struct rill_handler rec_handler = {
    .name = "rec",
    .added = rec_added,
    .removed = rec_removed,
    .registered = rec_registered,
    .active = rec_active,
    .read = rec_read,
    .read_complete = rec_read_complete,
    .writability_changed = rec_writability,
    .user_event = rec_user_event,
    .exception = rec_exception,
    .inactive = rec_inactive,
    .unregistered = rec_unregistered,
    .close = rec_close,
    .write = rec_write,
    .flush = rec_flush,
};

#endif /* RILL_TEST_TT_H */
