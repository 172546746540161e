/* Shared by the protobuf-c server and client stubs. Private to rill. */
#ifndef RILL_RPC_PB_INTERNAL_H
#define RILL_RPC_PB_INTERNAL_H

#include <protobuf-c/protobuf-c.h>

struct rill_buf;

/* Unpack @b's readable bytes (borrowed; NULL: empty) as @desc. Returns the
 * message (free it with protobuf_c_message_free_unpacked) or NULL when the
 * bytes do not decode (or no memory). */
ProtobufCMessage *rill__pb_unpack(const ProtobufCMessageDescriptor *desc, struct rill_buf *b);

#endif /* RILL_RPC_PB_INTERNAL_H */
