/* Listening RDMA channels: an rdma_cm id bound and listening, its own event
 * channel in the boss loop's epoll. A connect request is checked (the
 * peer's hello: magic, version, sane receive depth and size) and rejected
 * with a reason the peer logs, or handed to a worker loop as a child
 * channel, which makes its queue pair and accepts there. */
#include "transport/rdma/rdma_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "rill/error.h"
#include "rill/log.h"

struct rdma_srv {
    struct rill_channel base; /* first: the core's part */
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    struct rdma_dev *dev; /* held while bound to one device's address */
    struct rill_io io;
    bool listening, armed, want_read, closed;
    _Atomic uint64_t accepted;
    struct rill_addr local;
};

static const struct rill_transport_ops srv_ops;

static struct rdma_srv *srv(struct rill_channel *ch)
{
    return (struct rdma_srv *)ch;
}

bool rill__rdma_is_server(const struct rill_channel *ch)
{
    return ch && ch->ops == &srv_ops;
}

uint64_t rill__rdma_server_accepted(const struct rill_channel *server)
{
    return atomic_load_explicit(&((struct rdma_srv *)server)->accepted, memory_order_relaxed);
}

int rill__rdma_family(const struct rill_addr *addr)
{
    if (addr->scheme != RILL_ADDR_RDMA && addr->scheme != RILL_ADDR_RDMA_TCP)
        return -EAFNOSUPPORT;
    int f = addr->sa.ss_family;
    return f == AF_INET || f == AF_INET6 ? f : -EAFNOSUPPORT;
}

int rill__rdma_server_new(struct rill_loop *loop, struct rill_channel **out)
{
    int err = rill_rdma_available();
    if (err)
        return err;
    struct rdma_srv *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    err = rill__channel_init(&s->base, &srv_ops, loop, NULL);
    if (err) {
        free(s);
        return err;
    }
    s->local.scheme = RILL_ADDR_RDMA;
    s->base.local_addr = &s->local;
    err = rill__rdma_ec_open(&s->ec);
    if (!err && rdma_create_id(s->ec, &s->id, s, RDMA_PS_TCP) != 0)
        err = errno ? -errno : -ENOMEM;
    if (err) {
        rill_channel_release(&s->base);
        return err;
    }
    *out = &s->base;
    return 0;
}

int rill__rdma_server_listen(struct rill_channel *server, const struct rill_addr *addr)
{
    struct rdma_srv *s = srv(server);
    if (rill__rdma_family(addr) < 0)
        return -EAFNOSUPPORT;
    if (rdma_bind_addr(s->id, (struct sockaddr *)&addr->sa) != 0)
        return errno ? -errno : -EADDRNOTAVAIL;
    /* Bound to one device's address: hold the device (a wildcard address
     * is on none). */
    if (s->id->verbs) {
        int err = rill__rdma_dev_get(s->id, &s->dev);
        if (err)
            return err;
    }
    if (rdma_listen(s->id, (int)rill__channel_opt(server, RILL_OPT_BACKLOG)) != 0)
        return errno ? -errno : -EIO;
    rill__rdma_addr_of(rdma_get_local_addr(s->id), &s->local);
    s->listening = true;
    return 0;
}

static void reject(struct rdma_cm_id *id, int err, const char *why)
{
    struct rdma_reject r;
    memset(&r, 0, sizeof(r));
    r.magic = htonl(RDMA_MAGIC);
    r.err = (int32_t)htonl((uint32_t)err);
    strncpy(r.why, why, sizeof(r.why) - 1);
    rdma_reject(id, &r, sizeof(r));
    rdma_destroy_id(id);
}

static void connect_request(struct rdma_srv *s, struct rdma_cm_id *id, const void *pdata,
                            uint8_t plen)
{
    struct rdma_hello h;
    const char *why = NULL;
    int err = rill__rdma_hello_decode(pdata, plen, &h, &why);
    if (err) {
        RILL_WARN("rdma: server %" PRIu64 ": rejected a connection: %s", s->base.id, why);
        reject(id, err, why);
        return;
    }
    struct rill_channel *child;
    err = rill__rdma_child_new(&s->base, rill__channel_child_loop(&s->base), id, &h, &child);
    if (err) {
        RILL_WARN("rdma: server %" PRIu64 ": cannot take a connection: %s", s->base.id,
                  rill_strerror(err));
        reject(id, err, "the server cannot take the connection");
        return;
    }
    atomic_fetch_add_explicit(&s->accepted, 1, memory_order_relaxed);
    rill__channel_accepted(&s->base, child);
}

static void on_io(struct rill_io *io, uint32_t events)
{
    (void)events;
    struct rdma_srv *s = io->data;
    struct rdma_ev ev;
    while (!s->closed && s->want_read && rill__rdma_ev_take(s->ec, &ev)) {
        if (ev.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
            connect_request(s, ev.id, ev.plen ? ev.pdata : NULL, ev.plen);
        } else if (ev.type == RDMA_CM_EVENT_DEVICE_REMOVAL && ev.id == s->id) {
            /* (A request's id not yet handed over gets it too: not ours.) */
            RILL_WARN("rdma: server %" PRIu64 ": the RDMA device was removed", s->base.id);
            if (s->dev)
                rill__rdma_dev_removed(s->dev);
            rill__channel_close(&s->base, -ENODEV);
        }
    }
}

static void update_events(struct rdma_srv *s)
{
    if (s->armed)
        rill_io_modify(&s->io, s->want_read ? EPOLLIN : 0);
}

static int sv_bind(struct rill_channel *ch, const struct rill_addr *local)
{
    struct rdma_srv *s = srv(ch);
    if (!s->listening) {
        if (!local)
            return -EINVAL;
        int err = rill__rdma_server_listen(ch, local);
        if (err)
            return err;
    }
    if (s->armed)
        return 0;
    rill_io_init(&s->io, s->ec->fd, on_io, s);
    int err = rill_io_start(ch->loop, &s->io, s->want_read ? EPOLLIN : 0);
    if (err)
        return err;
    s->armed = true;
    return 0;
}

static void sv_begin_read(struct rill_channel *ch)
{
    struct rdma_srv *s = srv(ch);
    s->want_read = true;
    update_events(s);
}

static void sv_stop_read(struct rill_channel *ch)
{
    struct rdma_srv *s = srv(ch);
    s->want_read = false;
    update_events(s);
}

static void sv_close(struct rill_channel *ch)
{
    struct rdma_srv *s = srv(ch);
    if (s->closed)
        return;
    s->closed = true;
    if (s->armed) {
        rill_io_stop(&s->io);
        s->armed = false;
    }
    if (s->ec) {
        /* Connect requests still queued here are rejected with a reason
         * (their ids die with the listener's event channel otherwise). */
        struct rdma_ev ev;
        while (rill__rdma_ev_take(s->ec, &ev))
            if (ev.type == RDMA_CM_EVENT_CONNECT_REQUEST)
                reject(ev.id, RILL_ECLOSED, "the server is closing");
    }
    if (s->id) {
        rdma_destroy_id(s->id);
        s->id = NULL;
    }
    if (s->ec) {
        rdma_destroy_event_channel(s->ec);
        s->ec = NULL;
    }
    if (s->dev) {
        rill__rdma_dev_put(s->dev);
        s->dev = NULL;
    }
}

static void sv_destroy(struct rill_channel *ch)
{
    free(srv(ch));
}

static const struct rill_transport_ops srv_ops = {
    .name = "rdma",
    .flags = RILL_TRANSPORT_F_SERVER,
    .bind = sv_bind,
    .begin_read = sv_begin_read,
    .stop_read = sv_stop_read,
    .close = sv_close,
    .destroy = sv_destroy,
};
