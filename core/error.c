/* Names and descriptions for 0, -errno and the rill error range. */
#include "rill/error.h"

#include <string.h>

struct rill_err_desc {
    int code;
    const char *name;
    const char *text;
};

static const struct rill_err_desc rill_errors[] = {
    { RILL_ECLOSED, "RILL_ECLOSED", "channel or loop is closed" },
    { RILL_EPROTO, "RILL_EPROTO", "protocol violation by the peer" },
    { RILL_ETOOLARGE, "RILL_ETOOLARGE", "frame or message exceeds its limit" },
    { RILL_EDECODE, "RILL_EDECODE", "input could not be decoded" },
    { RILL_ENOTLOOP, "RILL_ENOTLOOP", "loop-thread-only call made from another thread" },
    { RILL_EREJECTED, "RILL_EREJECTED", "refused: shut down or queue full" },
    { RILL_EBADVERSION, "RILL_EBADVERSION", "peer speaks another protocol version" },
    { RILL_EUNAVAILABLE, "RILL_EUNAVAILABLE", "remote side unavailable" },
    { RILL_EDEADLINE, "RILL_EDEADLINE", "deadline exceeded" },
    { RILL_EBUSY, "RILL_EBUSY", "peer is overloaded" },
};

static const struct rill_err_desc *find(int err)
{
    for (size_t i = 0; i < sizeof(rill_errors) / sizeof(rill_errors[0]); i++)
        if (rill_errors[i].code == err)
            return &rill_errors[i];
    return NULL;
}

const char *rill_strerror(int err)
{
    if (err == 0)
        return "success";
    const struct rill_err_desc *d = find(err);
    if (d)
        return d->text;
    if (err < 0 && err > -RILL_ERRNO_BASE) {
        /* strerrordesc_np is thread-safe and returns static storage. */
        const char *s = strerrordesc_np(-err);
        if (s)
            return s;
    }
    return "unknown error";
}

const char *rill_errname(int err)
{
    if (err == 0)
        return "OK";
    const struct rill_err_desc *d = find(err);
    if (d)
        return d->name;
    if (err < 0 && err > -RILL_ERRNO_BASE) {
        const char *s = strerrorname_np(-err);
        if (s)
            return s;
    }
    return "UNKNOWN";
}
