/* Channel options (validated, stored atomically, handed to the transport),
 * typed attributes, and adaptive receive-buffer sizing. */
#include "channel/channel_priv.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "channel/pipeline_internal.h"
#include "rill/loop.h"

/* ---- options ---- */

static const int64_t defaults[RILL_OPT__COUNT] = {
    [RILL_OPT_TCP_NODELAY] = 1,
    [RILL_OPT_SO_KEEPALIVE] = 0,
    [RILL_OPT_SO_RCVBUF] = 0, /* 0: the kernel's */
    [RILL_OPT_SO_SNDBUF] = 0,
    [RILL_OPT_SO_REUSEADDR] = 0, /* 1 for server channels */
    [RILL_OPT_SO_REUSEPORT] = 0,
    [RILL_OPT_BACKLOG] = 1024,
    [RILL_OPT_CONNECT_TIMEOUT_MS] = 30000,
    [RILL_OPT_WRITE_HIGH_WATER] = 64 * 1024,
    [RILL_OPT_WRITE_LOW_WATER] = 32 * 1024,
    [RILL_OPT_AUTO_READ] = 1,
    [RILL_OPT_RECV_BUF_MIN] = 64,
    [RILL_OPT_RECV_BUF_INIT] = 2048,
    [RILL_OPT_RECV_BUF_MAX] = 65536,
    [RILL_OPT_WRITE_SPIN] = 16,
    [RILL_OPT_EDGE_TRIGGERED] = 1,
    [RILL_OPT_ALLOW_HALF_CLOSURE] = 0,
    [RILL_OPT_MAX_READS] = 16,
    [RILL_OPT_RDMA_RECV_DEPTH] = 64,
    [RILL_OPT_RDMA_RECV_SIZE] = 16 * 1024,
    [RILL_OPT_RDMA_RNDV] = 256 * 1024,
    [RILL_OPT_RDMA_INLINE] = 64,
};

#define RECV_BUF_LIMIT (16 * 1024 * 1024)

void rill__channel_opts_init(struct rill_channel *ch)
{
    for (int i = 0; i < RILL_OPT__COUNT; i++)
        atomic_init(&ch->opt[i], defaults[i]);
    if (ch->ops->flags & RILL_TRANSPORT_F_SERVER)
        atomic_init(&ch->opt[RILL_OPT_SO_REUSEADDR], 1);
    ch->recv.guess = (size_t)defaults[RILL_OPT_RECV_BUF_INIT];
}

static bool in_range(int64_t v, int64_t lo, int64_t hi)
{
    return v >= lo && v <= hi;
}

/* Whether @v is acceptable for @opt given the other stored values. */
static bool valid(const struct rill_channel *ch, enum rill_option opt, int64_t v)
{
    switch (opt) {
    case RILL_OPT_TCP_NODELAY:
    case RILL_OPT_SO_KEEPALIVE:
    case RILL_OPT_SO_REUSEADDR:
    case RILL_OPT_SO_REUSEPORT:
    case RILL_OPT_AUTO_READ:
    case RILL_OPT_EDGE_TRIGGERED:
    case RILL_OPT_ALLOW_HALF_CLOSURE:
        return v == 0 || v == 1;
    case RILL_OPT_SO_RCVBUF:
    case RILL_OPT_SO_SNDBUF:
        return in_range(v, 1, INT_MAX);
    case RILL_OPT_BACKLOG:
    case RILL_OPT_WRITE_SPIN:
    case RILL_OPT_MAX_READS:
        return in_range(v, 1, INT_MAX);
    case RILL_OPT_CONNECT_TIMEOUT_MS:
        return in_range(v, 0, INT64_MAX / 1000000);
    case RILL_OPT_WRITE_HIGH_WATER:
        return in_range(v, rill__channel_opt(ch, RILL_OPT_WRITE_LOW_WATER), SSIZE_MAX);
    case RILL_OPT_WRITE_LOW_WATER:
        return in_range(v, 0, rill__channel_opt(ch, RILL_OPT_WRITE_HIGH_WATER));
    case RILL_OPT_RECV_BUF_MIN:
        return in_range(v, 1, rill__channel_opt(ch, RILL_OPT_RECV_BUF_INIT));
    case RILL_OPT_RECV_BUF_INIT:
        return in_range(v, rill__channel_opt(ch, RILL_OPT_RECV_BUF_MIN),
                        rill__channel_opt(ch, RILL_OPT_RECV_BUF_MAX));
    case RILL_OPT_RECV_BUF_MAX:
        return in_range(v, rill__channel_opt(ch, RILL_OPT_RECV_BUF_INIT), RECV_BUF_LIMIT);
    case RILL_OPT_RDMA_RECV_DEPTH:
        return in_range(v, 4, 4096);
    case RILL_OPT_RDMA_RECV_SIZE:
        return in_range(v, 256, RECV_BUF_LIMIT);
    case RILL_OPT_RDMA_RNDV:
        return v == 0 || in_range(v, 4096, SSIZE_MAX);
    case RILL_OPT_RDMA_INLINE:
        return in_range(v, 0, 1024);
    default:
        return false;
    }
}

/* Work an option change implies on the loop: auto-read on asks for a
 * read, off tells the transport; new watermarks may flip writability. */
struct opt_task {
    struct rill_task task;
    struct rill_channel *ch;
    enum rill_option opt;
};

static void opt_followup(struct rill_channel *ch, enum rill_option opt)
{
    if (ch->closing)
        return;
    switch (opt) {
    case RILL_OPT_AUTO_READ:
        if (rill__channel_auto_read(ch))
            rill_ctx_read_request(ch->pipeline->tail);
        else if (ch->ops->stop_read && rill_channel_is_active(ch))
            ch->ops->stop_read(ch);
        break;
    case RILL_OPT_WRITE_HIGH_WATER:
    case RILL_OPT_WRITE_LOW_WATER:
        rill__outbound_check_watermarks(ch);
        break;
    case RILL_OPT_RECV_BUF_MIN:
    case RILL_OPT_RECV_BUF_MAX:
        (void)rill__channel_recv_size(ch); /* clamps the guess */
        break;
    default:
        break;
    }
}

static void opt_task_run(void *arg)
{
    struct opt_task *t = arg;
    opt_followup(t->ch, t->opt);
    rill_channel_release(t->ch);
    free(t);
}

static bool needs_followup(enum rill_option opt)
{
    return opt == RILL_OPT_AUTO_READ || opt == RILL_OPT_WRITE_HIGH_WATER ||
           opt == RILL_OPT_WRITE_LOW_WATER;
}

static void followup(struct rill_channel *ch, enum rill_option opt)
{
    if (!needs_followup(opt))
        return;
    /* Before registration nothing runs yet: activation reads the stored
     * values. */
    if (rill_loop_in_thread(ch->loop)) {
        opt_followup(ch, opt);
        return;
    }
    struct opt_task *t = malloc(sizeof(*t));
    if (!t)
        return;
    t->ch = rill_channel_retain(ch);
    t->opt = opt;
    rill_task_init(&t->task, opt_task_run, t);
    if (rill_loop_post(ch->loop, &t->task) != 0) {
        rill_channel_release(ch);
        free(t);
    }
}

int rill_channel_set_option(struct rill_channel *ch, enum rill_option opt, int64_t value)
{
    if ((int)opt <= 0 || opt >= RILL_OPT__COUNT || !valid(ch, opt, value))
        return -EINVAL;
    int64_t old = atomic_exchange(&ch->opt[opt], value);
    if (ch->ops->set_option) {
        int err = ch->ops->set_option(ch, opt, value);
        if (err) {
            atomic_store(&ch->opt[opt], old);
            return err > 0 ? -EINVAL : err;
        }
    }
    if (old != value)
        followup(ch, opt);
    return 0;
}

int rill_channel_get_option(struct rill_channel *ch, enum rill_option opt, int64_t *value)
{
    if ((int)opt <= 0 || opt >= RILL_OPT__COUNT || !value)
        return -EINVAL;
    *value = rill__channel_opt(ch, opt);
    return 0;
}

int rill_channel_set_watermarks(struct rill_channel *ch, size_t low, size_t high)
{
    if (low > high || high > SSIZE_MAX)
        return -EINVAL;
    /* Order the two stores so the pair is valid in between. */
    if ((int64_t)high >= rill__channel_opt(ch, RILL_OPT_WRITE_HIGH_WATER)) {
        atomic_store(&ch->opt[RILL_OPT_WRITE_HIGH_WATER], (int64_t)high);
        atomic_store(&ch->opt[RILL_OPT_WRITE_LOW_WATER], (int64_t)low);
    } else {
        atomic_store(&ch->opt[RILL_OPT_WRITE_LOW_WATER], (int64_t)low);
        atomic_store(&ch->opt[RILL_OPT_WRITE_HIGH_WATER], (int64_t)high);
    }
    followup(ch, RILL_OPT_WRITE_HIGH_WATER);
    return 0;
}

int rill__channel_apply_options(struct rill_channel *ch)
{
    if (!ch->ops->set_option)
        return 0;
    static const enum rill_option sock_opts[] = {
        RILL_OPT_TCP_NODELAY, RILL_OPT_SO_KEEPALIVE, RILL_OPT_SO_RCVBUF,
        RILL_OPT_SO_SNDBUF,   RILL_OPT_SO_REUSEADDR, RILL_OPT_SO_REUSEPORT,
    };
    for (size_t i = 0; i < RILL_ARRAY_SIZE(sock_opts); i++) {
        enum rill_option o = sock_opts[i];
        int64_t v = rill__channel_opt(ch, o);
        if ((o == RILL_OPT_SO_RCVBUF || o == RILL_OPT_SO_SNDBUF) && v == 0)
            continue; /* the kernel's default */
        int err = ch->ops->set_option(ch, o, v);
        if (err)
            return err > 0 ? -EINVAL : err;
    }
    return 0;
}

/* ---- adaptive receive sizing ---- */

static size_t clamp_guess(struct rill_channel *ch, size_t g)
{
    size_t lo = (size_t)rill__channel_opt(ch, RILL_OPT_RECV_BUF_MIN);
    size_t hi = (size_t)rill__channel_opt(ch, RILL_OPT_RECV_BUF_MAX);
    return g < lo ? lo : g > hi ? hi : g;
}

size_t rill__channel_recv_size(struct rill_channel *ch)
{
    ch->recv.guess = clamp_guess(ch, ch->recv.guess);
    return ch->recv.guess;
}

void rill__channel_recv_record(struct rill_channel *ch, size_t batch_bytes, bool filled)
{
    size_t g = rill__channel_recv_size(ch);
    if (filled || batch_bytes >= g) {
        ch->recv.guess = clamp_guess(ch, g * 2);
        ch->recv.shrink_armed = false;
    } else if (batch_bytes < g / 2) {
        /* Shrink only on the second small batch in a row, as Netty does,
         * so one short read does not undo the growth. */
        if (ch->recv.shrink_armed) {
            ch->recv.guess = clamp_guess(ch, g / 2);
            ch->recv.shrink_armed = false;
        } else {
            ch->recv.shrink_armed = true;
        }
    } else {
        ch->recv.shrink_armed = false;
    }
}

/* ---- attributes ---- */

struct rill__attr {
    struct rill__attr *next;
    const struct rill_attr_key *key;
    void *value;
};

static struct rill__attr *attr_find(struct rill_channel *ch, const struct rill_attr_key *key,
                                    struct rill__attr ***link)
{
    struct rill__attr **l = &ch->attrs;
    for (; *l; l = &(*l)->next)
        if ((*l)->key == key)
            break;
    if (link)
        *link = l;
    return *l;
}

static void attr_value_free(const struct rill_attr_key *key, void *value)
{
    if (key->free && value)
        key->free(value);
}

int rill_channel_attr_set(struct rill_channel *ch, const struct rill_attr_key *key, void *value)
{
    if (!key)
        return -EINVAL;
    struct rill__attr *a = attr_find(ch, key, NULL);
    if (a) {
        void *old = a->value;
        a->value = value;
        if (old != value)
            attr_value_free(key, old);
        return 0;
    }
    a = malloc(sizeof(*a));
    if (!a)
        return -ENOMEM; /* the caller still owns @value */
    a->key = key;
    a->value = value;
    a->next = ch->attrs;
    ch->attrs = a;
    return 0;
}

void *rill_channel_attr_get(struct rill_channel *ch, const struct rill_attr_key *key)
{
    struct rill__attr *a = key ? attr_find(ch, key, NULL) : NULL;
    return a ? a->value : NULL;
}

int rill_channel_attr_remove(struct rill_channel *ch, const struct rill_attr_key *key)
{
    struct rill__attr **link;
    struct rill__attr *a = key ? attr_find(ch, key, &link) : NULL;
    if (!a)
        return -ENOENT;
    *link = a->next;
    attr_value_free(a->key, a->value);
    free(a);
    return 0;
}

void rill__channel_attrs_free(struct rill_channel *ch)
{
    while (ch->attrs) {
        struct rill__attr *a = ch->attrs;
        ch->attrs = a->next;
        attr_value_free(a->key, a->value);
        free(a);
    }
}
