/* The protobuf-c client stub: a ProtobufCService whose invoke packs the
 * input into a rill_buf, starts a rill call on the stub's channel and hands
 * the unpacked response (or NULL) to the caller's closure. */
#include "rill/rpc_protobuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/error.h"
#include "rill/future.h"
#include "rill/loop.h"
#include "rill/rpc_client.h"
#include "rill/rpc_status.h"
#include "rpc/protobuf/pb_internal.h"

struct pb_client {
    ProtobufCService base; /* first: the stub is handed out as the service */
    struct rill_channel *ch;
    struct rill_rpc_pb_client_opts o;
};

/* An asynchronous call waiting for its future. */
struct pb_pending {
    struct rill_rpc_call *call;
    const ProtobufCMessageDescriptor *output;
    ProtobufCClosure closure;
    void *data;
    struct rill_task hop; /* to the loop, when the call ended before invoke returned */
};

/* What rill_rpc_pb_status() reports: set only while a closure runs (the
 * closure's signature is protobuf-c's and has no room for it, so it is
 * per thread, like errno). */
struct pb_status {
    int status;
    const char *msg;
};
static _Thread_local struct pb_status pb_tls;

int rill_rpc_pb_status(void)
{
    return pb_tls.status;
}

const char *rill_rpc_pb_status_msg(void)
{
    return pb_tls.msg;
}

void rill_rpc_pb_client_opts_init(struct rill_rpc_pb_client_opts *o)
{
    o->blocking = false;
    o->timeout_ns = 0;
    o->wait_ns = -1;
}

/* The outcome of a call that ended (@call) or never started (@start_err):
 * status, message (borrowed from the call or static, or written into
 * @why) and the unpacked response when OK. */
static int pb_outcome(const ProtobufCMessageDescriptor *out, struct rill_rpc_call *call,
                      int start_err, const char **msg, char *why, size_t why_size,
                      ProtobufCMessage **resp)
{
    *resp = NULL;
    if (!call) {
        *msg = rill_strerror(start_err);
        return rill_rpc_status_from_err(start_err);
    }
    int status = rill_rpc_call_status(call);
    *msg = rill_rpc_call_status_msg(call);
    if (status != RILL_RPC_OK)
        return status;
    struct rill_buf *b = rill_rpc_call_response(call);
    *resp = rill__pb_unpack(out, b);
    if (b)
        rill_buf_release(b);
    if (!*resp) {
        snprintf(why, why_size, "malformed response: not a %s", out->name);
        *msg = why;
        return RILL_RPC_INTERNAL;
    }
    return RILL_RPC_OK;
}

static void pb_finish(const ProtobufCMessageDescriptor *out, struct rill_rpc_call *call,
                      int start_err, ProtobufCClosure closure, void *data)
{
    char why[256];
    ProtobufCMessage *resp;
    struct pb_status saved = pb_tls; /* a closure may run another call's closure */
    pb_tls.status = pb_outcome(out, call, start_err, &pb_tls.msg, why, sizeof(why), &resp);
    closure(resp, data);
    pb_tls = saved;
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
}

/* Pack @in and start method @idx. Returns 0 and the call, or an error
 * (-EINVAL: bad index or input type, -ENOMEM, the start's error). *@m gets
 * the method when the index is valid. */
static int pb_start(struct pb_client *c, unsigned idx, const ProtobufCMessage *in,
                    const ProtobufCMethodDescriptor **m, struct rill_rpc_call **call)
{
    const ProtobufCServiceDescriptor *d = c->base.descriptor;
    struct rill_buf *b = NULL;
    *m = NULL;
    *call = NULL;
    if (idx >= d->n_methods)
        return -EINVAL;
    *m = &d->methods[idx];
    if (!in || in->descriptor != (*m)->input)
        return -EINVAL;
    size_t n = protobuf_c_message_get_packed_size(in);
    if (n > 0) {
        size_t room;
        uint8_t *p;
        if (rill_buf_alloc(n, &b) != 0)
            return -ENOMEM;
        p = rill_buf_write_ptr(b, n, &room);
        if (!p || protobuf_c_message_pack(in, p) != n || rill_buf_advance_writer(b, n) != 0) {
            rill_buf_release(b);
            return -EINVAL;
        }
    }
    struct rill_rpc_call_opts o;
    rill_rpc_call_opts_init(&o);
    o.timeout_ns = c->o.timeout_ns;
    return rill_rpc_call_start(c->ch, d->name, (*m)->name, b, &o, call);
}

/* Wait for a started call; past @wait_ns it is cancelled (and ends at once). */
static void pb_wait(struct rill_rpc_call *call, int64_t wait_ns)
{
    if (rill_rpc_call_wait(call, wait_ns) == -ETIMEDOUT) {
        rill_rpc_call_cancel(call);
        rill_rpc_call_wait(call, -1);
    }
}

static void pb_done_task(void *arg)
{
    struct pb_pending *pp = arg;
    pb_finish(pp->output, pp->call, 0, pp->closure, pp->data);
    rill_rpc_call_release(pp->call);
    free(pp);
}

static void pb_on_done(struct rill_promise *p, void *arg)
{
    struct pb_pending *pp = arg;
    struct rill_loop *loop = rill_channel_loop(rill_rpc_call_channel(pp->call));
    /* A call that ended before the listener was added runs it here, on the
     * invoking thread: hop to the loop so closures always run there (only a
     * loop that is gone leaves us where we are). */
    if (!rill_loop_in_thread(loop)) {
        rill_task_init(&pp->hop, pb_done_task, pp);
        if (rill_loop_post(loop, &pp->hop) == 0)
            return;
    }
    pb_done_task(pp);
}

static bool pb_on_loop(const struct pb_client *c)
{
    return rill_loop_in_thread(rill_channel_loop(c->ch));
}

static void pb_invoke(ProtobufCService *svc, unsigned idx, const ProtobufCMessage *in,
                      ProtobufCClosure closure, void *data)
{
    struct pb_client *c = (struct pb_client *)svc;
    const ProtobufCMethodDescriptor *m;
    struct rill_rpc_call *call;
    int rc;
    if (c->o.blocking && pb_on_loop(c)) { /* the wait could never end */
        pb_finish(NULL, NULL, -EDEADLK, closure, data);
        return;
    }
    if ((rc = pb_start(c, idx, in, &m, &call)) != 0) {
        pb_finish(m ? m->output : NULL, NULL, rc, closure, data);
        return;
    }
    if (c->o.blocking) {
        pb_wait(call, c->o.wait_ns);
        pb_finish(m->output, call, 0, closure, data);
        rill_rpc_call_release(call);
        return;
    }
    /* Filled in before the listener is added: it runs at once when the call
     * has ended already. */
    struct pb_pending *pp = malloc(sizeof(*pp));
    if (pp) {
        pp->call = call;
        pp->output = m->output;
        pp->closure = closure;
        pp->data = data;
    }
    if (!pp || rill_promise_add_listener(rill_rpc_call_future(call), pb_on_done, pp) != 0) {
        /* Nobody would hear of it: cancel, and report the failure here. */
        free(pp);
        rill_rpc_call_cancel(call);
        rill_rpc_call_release(call);
        pb_finish(m->output, NULL, -ENOMEM, closure, data);
    }
}

static void pb_destroy(ProtobufCService *svc)
{
    struct pb_client *c = (struct pb_client *)svc;
    rill_channel_release(c->ch);
    free(c);
}

int rill_rpc_pb_client_new(struct rill_channel *ch, const ProtobufCServiceDescriptor *desc,
                           const struct rill_rpc_pb_client_opts *o, ProtobufCService **out)
{
    if (!ch || !desc || desc->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC || !desc->name || !out)
        return -EINVAL;
    struct pb_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->base.descriptor = desc;
    c->base.invoke = pb_invoke;
    c->base.destroy = pb_destroy;
    c->ch = rill_channel_retain(ch);
    if (o)
        c->o = *o;
    else
        rill_rpc_pb_client_opts_init(&c->o);
    *out = &c->base;
    return 0;
}

int rill_rpc_pb_call_sync(ProtobufCService *client, unsigned method_index,
                          const ProtobufCMessage *input, ProtobufCMessage **out, int *status,
                          struct rill_rpc_call **callp)
{
    struct pb_client *c = (struct pb_client *)client;
    const ProtobufCMethodDescriptor *m;
    struct rill_rpc_call *call = NULL;
    const char *msg;
    char why[256];
    int rc, st;
    *out = NULL;
    if (callp)
        *callp = NULL;
    if (!client || client->invoke != pb_invoke)
        rc = -EINVAL;
    else if (pb_on_loop(c))
        rc = -EDEADLK;
    else if ((rc = pb_start(c, method_index, input, &m, &call)) == 0)
        pb_wait(call, c->o.wait_ns);
    if (rc != 0) {
        if (status)
            *status = rill_rpc_status_from_err(rc);
        return rc;
    }
    st = pb_outcome(m->output, call, 0, &msg, why, sizeof(why), out);
    if (status)
        *status = st;
    if (callp)
        *callp = call;
    else
        rill_rpc_call_release(call);
    return rill_rpc_status_to_err(st);
}
