/* The pipeline: a doubly linked list of contexts between a head (the
 * transport side) and a tail. Events walk the list and skip contexts whose
 * mask lacks the slot, so a NULL callback costs one load and a test.
 *
 * Changes during dispatch: a removed context is unlinked at once but keeps
 * its own prev/next, so an event passing through it (its own callback
 * forwarding, or its removed() flushing state) still reaches the
 * neighbours it had. Its memory goes when the pipeline's dispatch depth
 * returns to 0, never under a running callback. */
#include "channel/pipeline_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel/channel_internal.h"
#include "rill/log.h"
#include "rill/loop.h"
#include "rill/msg.h"

/* ---- contexts ---- */

static unsigned mask_of(const struct rill_handler *h)
{
    unsigned m = 0;
    m |= h->registered ? RILL__EV_REGISTERED : 0;
    m |= h->active ? RILL__EV_ACTIVE : 0;
    m |= h->read ? RILL__EV_READ : 0;
    m |= h->read_complete ? RILL__EV_READ_COMPLETE : 0;
    m |= h->writability_changed ? RILL__EV_WRITABILITY : 0;
    m |= h->user_event ? RILL__EV_USER_EVENT : 0;
    m |= h->exception ? RILL__EV_EXCEPTION : 0;
    m |= h->inactive ? RILL__EV_INACTIVE : 0;
    m |= h->unregistered ? RILL__EV_UNREGISTERED : 0;
    m |= h->bind ? RILL__EV_BIND : 0;
    m |= h->connect ? RILL__EV_CONNECT : 0;
    m |= h->disconnect ? RILL__EV_DISCONNECT : 0;
    m |= h->close ? RILL__EV_CLOSE : 0;
    m |= h->read_request ? RILL__EV_READ_REQUEST : 0;
    m |= h->write ? RILL__EV_WRITE : 0;
    m |= h->flush ? RILL__EV_FLUSH : 0;
    return m;
}

static struct rill_ctx *ctx_new(struct rill_pipeline *pl, const char *name,
                                const struct rill_handler *h, void *arg)
{
    size_t nlen = strlen(name) + 1;
    size_t state = (h->ctx_size + 15) & ~(size_t)15;
    struct rill_ctx *c = calloc(1, sizeof(*c) + state + nlen);
    if (!c)
        return NULL;
    c->pl = pl;
    c->h = h;
    c->arg = arg;
    c->mask = mask_of(h);
    char *n = (char *)c->state + state;
    memcpy(n, name, nlen);
    c->name = n;
    return c;
}

static void link_after(struct rill_ctx *pos, struct rill_ctx *c)
{
    c->prev = pos;
    c->next = pos->next;
    pos->next->prev = c;
    pos->next = c;
}

/* Unlink @c but leave its own pointers alone (see the top of the file). */
static void unlink_ctx(struct rill_ctx *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->removed = true;
    c->mask = 0;
}

static void reap(struct rill_pipeline *pl)
{
    while (pl->graveyard) {
        struct rill_ctx *c = pl->graveyard;
        pl->graveyard = c->grave_next;
        free(c);
    }
}

static void bury(struct rill_pipeline *pl, struct rill_ctx *c)
{
    c->grave_next = pl->graveyard;
    pl->graveyard = c;
    if (pl->depth == 0)
        reap(pl);
}

/* Every callback runs inside enter/leave: the depth keeps removed contexts
 * alive until the outermost callback of this pipeline has returned. */
static inline void enter(struct rill_pipeline *pl)
{
    pl->depth++;
}

static inline void leave(struct rill_pipeline *pl)
{
    if (--pl->depth == 0 && pl->graveyard)
        reap(pl);
}

static struct rill_ctx *find(struct rill_pipeline *pl, const char *name)
{
    for (struct rill_ctx *c = pl->head->next; c != pl->tail; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* ---- construction ---- */

int rill__pipeline_new(struct rill_channel *ch, const struct rill_handler *head,
                       const struct rill_handler *tail, struct rill_pipeline **out)
{
    struct rill_pipeline *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return -ENOMEM;
    pl->ch = ch;
    pl->head = ctx_new(pl, "head", head, NULL);
    pl->tail = ctx_new(pl, "tail", tail, NULL);
    if (!pl->head || !pl->tail) {
        free(pl->head);
        free(pl->tail);
        free(pl);
        return -ENOMEM;
    }
    /* Walks stop here whatever the tables say: the head takes every
     * outbound operation, the tail every inbound event. */
    pl->head->mask = RILL__EV_OUTBOUND;
    pl->tail->mask = RILL__EV_INBOUND;
    pl->head->next = pl->tail;
    pl->tail->prev = pl->head;
    pl->head->prev = NULL;
    pl->tail->next = NULL;
    *out = pl;
    return 0;
}

static void call_removed(struct rill_pipeline *pl, struct rill_ctx *c)
{
    if (c->h->removed) {
        enter(pl);
        c->h->removed(c);
        leave(pl);
    }
}

static void remove_ctx(struct rill_pipeline *pl, struct rill_ctx *c)
{
    unlink_ctx(c);
    enter(pl); /* keep @c alive through removed() even at depth 0 */
    call_removed(pl, c);
    bury(pl, c);
    leave(pl);
}

void rill__pipeline_remove_all(struct rill_pipeline *pl)
{
    while (pl->tail->prev != pl->head)
        remove_ctx(pl, pl->tail->prev);
}

void rill__pipeline_free(struct rill_pipeline *pl)
{
    if (!pl)
        return;
    rill__pipeline_remove_all(pl);
    reap(pl);
    free(pl->head);
    free(pl->tail);
    free(pl);
}

/* ---- building ---- */

static void assert_loop(struct rill_pipeline *pl)
{
    rill__assert_loop_or_idle(pl->ch->loop);
}

/* Insert a new context after @pos and run its added(); undone on failure. */
static int insert(struct rill_pipeline *pl, struct rill_ctx *pos, const char *name,
                  const struct rill_handler *h, void *arg, const struct rill_ctx *replacing)
{
    char gen[64];
    if (!h)
        return -EINVAL;
    if (!name) {
        snprintf(gen, sizeof(gen), "%s#%u", h->name ? h->name : "handler", pl->name_seq++);
        name = gen;
    }
    struct rill_ctx *dup = find(pl, name);
    if (dup && dup != replacing)
        return -EEXIST;
    struct rill_ctx *c = ctx_new(pl, name, h, arg);
    if (!c)
        return -ENOMEM;
    c->user = true;
    link_after(pos, c);
    if (h->added) {
        enter(pl);
        int err = h->added(c);
        if (err) {
            /* The handler cleans up its own state when added() fails; it
             * gets no removed(). */
            unlink_ctx(c);
            bury(pl, c);
            leave(pl);
            return err < 0 ? err : -EINVAL;
        }
        leave(pl);
    }
    return 0;
}

int rill_pipeline_add_first(struct rill_pipeline *pl, const char *name,
                            const struct rill_handler *h, void *arg)
{
    assert_loop(pl);
    return insert(pl, pl->head, name, h, arg, NULL);
}

int rill_pipeline_add_last(struct rill_pipeline *pl, const char *name, const struct rill_handler *h,
                           void *arg)
{
    assert_loop(pl);
    return insert(pl, pl->tail->prev, name, h, arg, NULL);
}

int rill_pipeline_add_before(struct rill_pipeline *pl, const char *base, const char *name,
                             const struct rill_handler *h, void *arg)
{
    assert_loop(pl);
    struct rill_ctx *b = base ? find(pl, base) : NULL;
    if (!b)
        return -ENOENT;
    return insert(pl, b->prev, name, h, arg, NULL);
}

int rill_pipeline_add_after(struct rill_pipeline *pl, const char *base, const char *name,
                            const struct rill_handler *h, void *arg)
{
    assert_loop(pl);
    struct rill_ctx *b = base ? find(pl, base) : NULL;
    if (!b)
        return -ENOENT;
    return insert(pl, b, name, h, arg, NULL);
}

int rill_pipeline_remove(struct rill_pipeline *pl, const char *name)
{
    assert_loop(pl);
    struct rill_ctx *c = name ? find(pl, name) : NULL;
    if (!c)
        return -ENOENT;
    remove_ctx(pl, c);
    return 0;
}

int rill_pipeline_remove_ctx(struct rill_ctx *ctx)
{
    struct rill_pipeline *pl = ctx->pl;
    assert_loop(pl);
    if (!ctx->user || ctx->removed)
        return -ENOENT;
    remove_ctx(pl, ctx);
    return 0;
}

int rill_pipeline_replace(struct rill_pipeline *pl, const char *old, const char *name,
                          const struct rill_handler *h, void *arg)
{
    assert_loop(pl);
    struct rill_ctx *o = old ? find(pl, old) : NULL;
    if (!o)
        return -ENOENT;
    /* The new context goes in right after the old one and gets added()
     * first, so the old one forwards straight into it (Netty's order). */
    int err = insert(pl, o, name ? name : o->name, h, arg, o);
    if (err)
        return err;
    if (!o->removed) /* the new handler's added() may have removed it */
        remove_ctx(pl, o);
    return 0;
}

struct rill_ctx *rill_pipeline_get(struct rill_pipeline *pl, const char *name)
{
    assert_loop(pl);
    return name ? find(pl, name) : NULL;
}

int rill_pipeline_names(struct rill_pipeline *pl, const char **names, int max)
{
    assert_loop(pl);
    int n = 0;
    for (struct rill_ctx *c = pl->head->next; c != pl->tail; c = c->next) {
        if (n < max)
            names[n] = c->name;
        n++;
    }
    return n;
}

struct rill_channel *rill_pipeline_channel(struct rill_pipeline *pl)
{
    return pl->ch;
}

/* ---- context accessors ---- */

void *rill_ctx_state(struct rill_ctx *ctx)
{
    return ctx->state;
}

void *rill_ctx_arg(struct rill_ctx *ctx)
{
    return ctx->arg;
}

struct rill_channel *rill_ctx_channel(struct rill_ctx *ctx)
{
    return ctx->pl->ch;
}

struct rill_pipeline *rill_ctx_pipeline(struct rill_ctx *ctx)
{
    return ctx->pl;
}

const char *rill_ctx_name(struct rill_ctx *ctx)
{
    return ctx->name;
}

bool rill_ctx_is_removed(struct rill_ctx *ctx)
{
    return ctx->removed;
}

/* ---- inbound: toward the tail ---- */

static inline struct rill_ctx *next_in(struct rill_ctx *c, unsigned bit)
{
    do
        c = c->next;
    while (!(c->mask & bit));
    return c;
}

static inline struct rill_ctx *next_out(struct rill_ctx *c, unsigned bit)
{
    do
        c = c->prev;
    while (!(c->mask & bit));
    return c;
}

/* Dispatch one callback of context @n with the depth held. */
#define DISPATCH(n, slot, ...)                                                                     \
    do {                                                                                           \
        struct rill_pipeline *pl_ = (n)->pl;                                                       \
        enter(pl_);                                                                                \
        (n)->h->slot(__VA_ARGS__);                                                                 \
        leave(pl_);                                                                                \
    } while (0)

void rill_ctx_fire_registered(struct rill_ctx *ctx)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_REGISTERED);
    if (n->h->registered)
        DISPATCH(n, registered, n);
}

void rill_ctx_fire_active(struct rill_ctx *ctx)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_ACTIVE);
    if (n->h->active)
        DISPATCH(n, active, n);
}

void rill_ctx_fire_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_READ);
    if (n->h->read)
        DISPATCH(n, read, n, msg);
    else
        rill_msg_release(msg); /* a tail without a read slot */
}

void rill_ctx_fire_read_complete(struct rill_ctx *ctx)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_READ_COMPLETE);
    if (n->h->read_complete)
        DISPATCH(n, read_complete, n);
}

void rill_ctx_fire_writability_changed(struct rill_ctx *ctx, bool writable)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_WRITABILITY);
    if (n->h->writability_changed)
        DISPATCH(n, writability_changed, n, writable);
}

void rill_ctx_fire_user_event(struct rill_ctx *ctx, const struct rill_event *ev)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_USER_EVENT);
    if (n->h->user_event)
        DISPATCH(n, user_event, n, ev);
}

void rill_ctx_fire_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_EXCEPTION);
    if (n->h->exception)
        DISPATCH(n, exception, n, err, why);
}

void rill_ctx_fire_inactive(struct rill_ctx *ctx)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_INACTIVE);
    if (n->h->inactive)
        DISPATCH(n, inactive, n);
}

void rill_ctx_fire_unregistered(struct rill_ctx *ctx)
{
    struct rill_ctx *n = next_in(ctx, RILL__EV_UNREGISTERED);
    if (n->h->unregistered)
        DISPATCH(n, unregistered, n);
}

void rill_pipeline_fire_read(struct rill_pipeline *pl, struct rill_msg *msg)
{
    rill_ctx_fire_read(pl->head, msg);
}

void rill_pipeline_fire_read_complete(struct rill_pipeline *pl)
{
    rill_ctx_fire_read_complete(pl->head);
}

void rill_pipeline_fire_user_event(struct rill_pipeline *pl, const struct rill_event *ev)
{
    rill_ctx_fire_user_event(pl->head, ev);
}

void rill_pipeline_fire_exception(struct rill_pipeline *pl, int err, const char *why)
{
    rill_ctx_fire_exception(pl->head, err, why);
}

void rill__pipeline_fire_registered(struct rill_pipeline *pl)
{
    rill_ctx_fire_registered(pl->head);
}

void rill__pipeline_fire_active(struct rill_pipeline *pl)
{
    rill_ctx_fire_active(pl->head);
}

void rill__pipeline_fire_inactive(struct rill_pipeline *pl)
{
    rill_ctx_fire_inactive(pl->head);
}

void rill__pipeline_fire_unregistered(struct rill_pipeline *pl)
{
    rill_ctx_fire_unregistered(pl->head);
}

void rill__pipeline_fire_writability(struct rill_pipeline *pl, bool writable)
{
    rill_ctx_fire_writability_changed(pl->head, writable);
}

/* ---- outbound: toward the head ---- */

void rill_ctx_bind(struct rill_ctx *ctx, const struct rill_addr *local, struct rill_promise *p)
{
    struct rill_ctx *n = next_out(ctx, RILL__EV_BIND);
    DISPATCH(n, bind, n, local, p);
}

void rill_ctx_connect(struct rill_ctx *ctx, const struct rill_addr *remote,
                      const struct rill_addr *local, struct rill_promise *p)
{
    struct rill_ctx *n = next_out(ctx, RILL__EV_CONNECT);
    DISPATCH(n, connect, n, remote, local, p);
}

void rill_ctx_disconnect(struct rill_ctx *ctx, struct rill_promise *p)
{
    struct rill_ctx *n = next_out(ctx, RILL__EV_DISCONNECT);
    DISPATCH(n, disconnect, n, p);
}

void rill_ctx_close(struct rill_ctx *ctx, struct rill_promise *p)
{
    struct rill_ctx *n = next_out(ctx, RILL__EV_CLOSE);
    DISPATCH(n, close, n, p);
}

void rill_ctx_read_request(struct rill_ctx *ctx)
{
    struct rill_ctx *n = next_out(ctx, RILL__EV_READ_REQUEST);
    DISPATCH(n, read_request, n);
}

void rill_ctx_write(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    struct rill_ctx *n = next_out(ctx, RILL__EV_WRITE);
    DISPATCH(n, write, n, msg, p);
}

void rill_ctx_flush(struct rill_ctx *ctx)
{
    struct rill_ctx *n = next_out(ctx, RILL__EV_FLUSH);
    DISPATCH(n, flush, n);
}

void rill_ctx_write_and_flush(struct rill_ctx *ctx, struct rill_msg *msg, struct rill_promise *p)
{
    rill_ctx_write(ctx, msg, p);
    rill_ctx_flush(ctx);
}
