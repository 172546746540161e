/* Serving a protoc-c generated service with the rill RPC server: one
 * registry entry per method, all pointing at the service itself (the method
 * is found again by name, a binary search in the descriptor), so serving
 * allocates nothing that has to be tracked until unserve. */
#include "rill/rpc_protobuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "rill/buf.h"
#include "rill/rpc_server.h"
#include "rill/rpc_status.h"
#include "rpc/protobuf/pb_internal.h"

/* The closure data the implementation receives: the call to answer and
 * the type the answer must have. Freed by the answer. */
struct pb_srv_call {
    struct rill_rpc_server_call *call;
    const ProtobufCMessageDescriptor *output;
};

static void pb_srv_closure(const ProtobufCMessage *msg, void *data)
{
    struct pb_srv_call *pc = data;
    struct rill_rpc_server_call *c = pc->call;
    const ProtobufCMessageDescriptor *want = pc->output;
    free(pc);
    if (!msg) {
        rill_rpc_server_call_fail(c, RILL_RPC_UNKNOWN, "the method failed (closure got NULL)");
        return;
    }
    if (msg->descriptor != want) {
        char why[256];
        snprintf(why, sizeof(why), "the method answered a %s, not a %s", msg->descriptor->name,
                 want->name);
        rill_rpc_server_call_fail(c, RILL_RPC_INTERNAL, why);
        return;
    }
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n == 0) { /* every field at its default: an empty payload */
        rill_rpc_server_call_reply(c, NULL);
        return;
    }
    struct rill_buf *b;
    size_t room;
    uint8_t *p;
    if (rill_buf_alloc(n, &b) != 0) {
        rill_rpc_server_call_fail(c, RILL_RPC_RESOURCE_EXHAUSTED, "no memory for the response");
        return;
    }
    p = rill_buf_write_ptr(b, n, &room);
    if (!p || protobuf_c_message_pack(msg, p) != n || rill_buf_advance_writer(b, n) != 0) {
        rill_buf_release(b);
        rill_rpc_server_call_fail(c, RILL_RPC_INTERNAL, "packing the response failed");
        return;
    }
    rill_rpc_server_call_reply(c, b);
}

ProtobufCMessage *rill__pb_unpack(const ProtobufCMessageDescriptor *desc, struct rill_buf *b)
{
    static const uint8_t none[1];
    size_t len = 0;
    const uint8_t *data = b ? rill_buf_read_ptr(b, &len) : none;
    uint8_t *copy = NULL;
    ProtobufCMessage *m;
    if (!data) { /* a composite across components: decode a flat copy */
        len = rill_buf_readable(b);
        if (!(copy = malloc(len)))
            return NULL;
        if (rill_buf_get_bytes(b, rill_buf_reader_index(b), copy, len) != 0) {
            free(copy);
            return NULL;
        }
        data = copy;
    }
    m = protobuf_c_message_unpack(desc, NULL, len, len ? data : none);
    free(copy);
    return m;
}

static void pb_srv_method(struct rill_rpc_server_call *c, void *arg)
{
    ProtobufCService *svc = arg;
    const ProtobufCServiceDescriptor *d = svc->descriptor;
    const ProtobufCMethodDescriptor *m =
        protobuf_c_service_descriptor_get_method_by_name(d, rill_rpc_server_call_method(c));
    ProtobufCMessage *in;
    struct pb_srv_call *pc;
    char why[256];
    if (!m) { /* registered under a name the descriptor lacks: cannot happen via serve */
        rill_rpc_server_call_fail(c, RILL_RPC_UNIMPLEMENTED, "no such method in the descriptor");
        return;
    }
    in = rill__pb_unpack(m->input, rill_rpc_server_call_payload(c));
    if (!in) {
        snprintf(why, sizeof(why), "malformed request: not a %s", m->input->name);
        rill_rpc_server_call_fail(c, RILL_RPC_INVALID_ARGUMENT, why);
        return;
    }
    if (!(pc = malloc(sizeof(*pc)))) {
        protobuf_c_message_free_unpacked(in, NULL);
        rill_rpc_server_call_fail(c, RILL_RPC_RESOURCE_EXHAUSTED, "no memory for the call");
        return;
    }
    pc->call = c;
    pc->output = m->output;
    /* The closure may answer (and free the call) before invoke returns; only
     * the input is ours afterwards. */
    svc->invoke(svc, (unsigned)(m - d->methods), in, pb_srv_closure, pc);
    protobuf_c_message_free_unpacked(in, NULL);
}

/* A generated service (FOO__INIT) keeps its handlers right after the base,
 * and protobuf-c's invoke calls them without a NULL check: a method left
 * NULL is not registered, so clients get UNIMPLEMENTED instead of a crash. */
static bool pb_srv_has_method(const ProtobufCService *svc, unsigned i)
{
    typedef void (*generic_handler)(void);
    if (svc->invoke != protobuf_c_service_invoke_internal)
        return true;
    return ((const generic_handler *)(svc + 1))[i] != NULL;
}

static bool pb_desc_ok(const ProtobufCServiceDescriptor *d)
{
    return d && d->magic == PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC && d->name && d->name[0];
}

int rill_rpc_pb_serve(struct rill_rpc_server *s, ProtobufCService *svc, enum rill_rpc_dispatch mode)
{
    if (!s || !svc || !svc->invoke || !pb_desc_ok(svc->descriptor))
        return -EINVAL;
    const ProtobufCServiceDescriptor *d = svc->descriptor;
    for (unsigned i = 0; i < d->n_methods; i++) {
        if (!pb_srv_has_method(svc, i))
            continue;
        int rc = rill_rpc_server_register(s, d->name, d->methods[i].name, pb_srv_method, svc, mode);
        if (rc != 0) {
            while (i-- > 0)
                if (pb_srv_has_method(svc, i))
                    rill_rpc_server_unregister(s, d->name, d->methods[i].name);
            return rc;
        }
    }
    return 0;
}

int rill_rpc_pb_unserve(struct rill_rpc_server *s, const ProtobufCService *svc)
{
    if (!s || !svc || !pb_desc_ok(svc->descriptor))
        return -EINVAL;
    const ProtobufCServiceDescriptor *d = svc->descriptor;
    int removed = 0;
    for (unsigned i = 0; i < d->n_methods; i++)
        if (rill_rpc_server_unregister(s, d->name, d->methods[i].name) == 0)
            removed++;
    return removed ? 0 : -ENOENT;
}

int rill_rpc_pb_fail(void *closure_data, int status, const char *msg)
{
    struct pb_srv_call *pc = closure_data;
    struct rill_rpc_server_call *c = pc->call;
    free(pc);
    return rill_rpc_server_call_fail(c, status, msg);
}

struct rill_rpc_server_call *rill_rpc_pb_server_call(void *closure_data)
{
    return ((struct pb_srv_call *)closure_data)->call;
}
