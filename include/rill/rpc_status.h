/* RPC status codes: what a call ended with, carried in response and goaway
 * frames (u16 on the wire). 0..16 are gRPC's codes with gRPC's meanings, so
 * a future gRPC bridge maps them one to one; rill adds BUSY (the server's
 * call queue was full: retry later, maybe elsewhere). Codes from
 * RILL_RPC_USER up are the application's own.
 *
 * A status maps to a rill error code (0 or < 0, error.h) where one matches,
 * so a call's future fails with an ordinary error; the exact status and its
 * message stay readable on the call object (rpc_client.h).
 *
 * Every function here: Thread: any (pure functions, static strings). */
#ifndef RILL_RPC_STATUS_H
#define RILL_RPC_STATUS_H

enum rill_rpc_status {
    RILL_RPC_OK = 0,
    RILL_RPC_CANCELLED = 1,           /* -ECANCELED */
    RILL_RPC_UNKNOWN = 2,             /* -EIO */
    RILL_RPC_INVALID_ARGUMENT = 3,    /* -EINVAL */
    RILL_RPC_DEADLINE_EXCEEDED = 4,   /* RILL_EDEADLINE */
    RILL_RPC_NOT_FOUND = 5,           /* -ENOENT */
    RILL_RPC_ALREADY_EXISTS = 6,      /* -EEXIST */
    RILL_RPC_PERMISSION_DENIED = 7,   /* -EPERM */
    RILL_RPC_RESOURCE_EXHAUSTED = 8,  /* RILL_ETOOLARGE (frame over the limit), -ENOMEM */
    RILL_RPC_FAILED_PRECONDITION = 9, /* -EBADE */
    RILL_RPC_ABORTED = 10,            /* -ECONNABORTED */
    RILL_RPC_OUT_OF_RANGE = 11,       /* -ERANGE */
    RILL_RPC_UNIMPLEMENTED = 12,      /* -ENOSYS (no such service or method) */
    RILL_RPC_INTERNAL = 13,           /* RILL_EPROTO (broken protocol), -EFAULT */
    RILL_RPC_UNAVAILABLE = 14,        /* RILL_EUNAVAILABLE (connection lost, server going away) */
    RILL_RPC_DATA_LOSS = 15,          /* RILL_EDECODE */
    RILL_RPC_UNAUTHENTICATED = 16,    /* -EACCES */
    RILL_RPC_BUSY = 17,               /* RILL_EBUSY (call queue full) */
    RILL_RPC_STATUS_COUNT = 18,       /* rill's codes are below this */
    RILL_RPC_USER = 1000,             /* application codes: RILL_RPC_USER .. 65535 */
};

/* The error code for @status: 0 for OK, the code listed above, or -EIO for
 * application and unknown codes. */
int rill_rpc_status_to_err(int status);

/* The status for a rill error code (inverse of the above where it is one to
 * one): 0 -> OK, RILL_ETIMEDOUT/-ETIMEDOUT -> DEADLINE_EXCEEDED, RILL_ECLOSED
 * and connection errors -> UNAVAILABLE, unknown codes -> UNKNOWN. */
int rill_rpc_status_from_err(int err);

/* "OK", "CANCELLED", ..., "BUSY", or "USER" / "UNKNOWN_STATUS". */
const char *rill_rpc_status_name(int status);

#endif /* RILL_RPC_STATUS_H */
