/* Error convention: every function that can fail returns int, 0 on success
 * and a negative value on failure: -errno for system errors, or a code from
 * the rill range below for protocol and framework errors. The rill range
 * (-4000 .. -4999) cannot collide with errno values. */
#ifndef RILL_ERROR_H
#define RILL_ERROR_H

enum {
    RILL_ERRNO_BASE = 4000,
    RILL_ECLOSED = -4001,      /* the channel or loop is closed */
    RILL_EPROTO = -4002,       /* the peer broke the protocol */
    RILL_ETOOLARGE = -4003,    /* a frame or message exceeds its configured limit */
    RILL_EDECODE = -4004,      /* input could not be decoded */
    RILL_ENOTLOOP = -4005,     /* loop-only call made from another thread */
    RILL_EREJECTED = -4006,    /* a task or call was refused (shut down, queue full) */
    RILL_EBADVERSION = -4007,  /* peer speaks another version of the protocol */
    RILL_EUNAVAILABLE = -4008, /* the remote side is not reachable */
    RILL_EDEADLINE = -4009,    /* the deadline passed before completion */
    RILL_EBUSY = -4010,        /* the peer is overloaded */
    RILL_ERRNO_LAST = -4999,
};

/* Thread: any. Returns a static string describing @err (0, -errno or a rill
 * code); never NULL, never allocates. Unknown codes get a generic text. */
const char *rill_strerror(int err);

/* Thread: any. Returns the symbolic name ("ECONNRESET", "RILL_EPROTO") or
 * "UNKNOWN". Static storage. */
const char *rill_errname(int err);

#endif /* RILL_ERROR_H */
