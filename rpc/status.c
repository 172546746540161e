/* RPC status codes and their mapping to rill error codes. */
#include "rill/rpc_status.h"

#include <errno.h>

#include "rill/error.h"

static const struct {
    const char *name;
    int err;
} table[RILL_RPC_STATUS_COUNT] = {
    [RILL_RPC_OK] = { "OK", 0 },
    [RILL_RPC_CANCELLED] = { "CANCELLED", -ECANCELED },
    [RILL_RPC_UNKNOWN] = { "UNKNOWN", -EIO },
    [RILL_RPC_INVALID_ARGUMENT] = { "INVALID_ARGUMENT", -EINVAL },
    [RILL_RPC_DEADLINE_EXCEEDED] = { "DEADLINE_EXCEEDED", RILL_EDEADLINE },
    [RILL_RPC_NOT_FOUND] = { "NOT_FOUND", -ENOENT },
    [RILL_RPC_ALREADY_EXISTS] = { "ALREADY_EXISTS", -EEXIST },
    [RILL_RPC_PERMISSION_DENIED] = { "PERMISSION_DENIED", -EPERM },
    [RILL_RPC_RESOURCE_EXHAUSTED] = { "RESOURCE_EXHAUSTED", RILL_ETOOLARGE },
    [RILL_RPC_FAILED_PRECONDITION] = { "FAILED_PRECONDITION", -EBADE },
    [RILL_RPC_ABORTED] = { "ABORTED", -ECONNABORTED },
    [RILL_RPC_OUT_OF_RANGE] = { "OUT_OF_RANGE", -ERANGE },
    [RILL_RPC_UNIMPLEMENTED] = { "UNIMPLEMENTED", -ENOSYS },
    [RILL_RPC_INTERNAL] = { "INTERNAL", RILL_EPROTO },
    [RILL_RPC_UNAVAILABLE] = { "UNAVAILABLE", RILL_EUNAVAILABLE },
    [RILL_RPC_DATA_LOSS] = { "DATA_LOSS", RILL_EDECODE },
    [RILL_RPC_UNAUTHENTICATED] = { "UNAUTHENTICATED", -EACCES },
    [RILL_RPC_BUSY] = { "BUSY", RILL_EBUSY },
};

int rill_rpc_status_to_err(int status)
{
    if (status >= 0 && status < RILL_RPC_STATUS_COUNT)
        return table[status].err;
    return -EIO;
}

int rill_rpc_status_from_err(int err)
{
    if (err == 0)
        return RILL_RPC_OK;
    for (int s = 1; s < RILL_RPC_STATUS_COUNT; s++)
        if (table[s].err == err)
            return s;
    switch (err) {
    case -ETIMEDOUT:
        return RILL_RPC_DEADLINE_EXCEEDED;
    case -ENOMEM:
        return RILL_RPC_RESOURCE_EXHAUSTED;
    case -EFAULT:
        return RILL_RPC_INTERNAL;
    case RILL_ECLOSED:
    case RILL_EREJECTED:
    case -ECONNRESET:
    case -ECONNREFUSED:
    case -EPIPE:
    case -ENOTCONN:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
        return RILL_RPC_UNAVAILABLE;
    case RILL_EBADVERSION:
        return RILL_RPC_UNIMPLEMENTED;
    default:
        return RILL_RPC_UNKNOWN;
    }
}

const char *rill_rpc_status_name(int status)
{
    if (status >= 0 && status < RILL_RPC_STATUS_COUNT)
        return table[status].name;
    if (status >= RILL_RPC_USER && status <= 65535)
        return "USER";
    return "UNKNOWN_STATUS";
}
