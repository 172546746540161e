/* The header of everything that travels through a pipeline: an atomic
 * reference count, a type tag and a destroy function.
 *
 * Ownership (Netty's rule, in the kernel's words): a new message has one
 * reference, owned by its creator. A callback that receives a message owns
 * one reference and must forward it, release it, or keep it and release it
 * later. A call that takes a message consumes it, even when it fails.
 *
 * Every function here: Thread: any (the count is atomic; the message's
 * contents are not protected: hand a message to another thread, don't
 * share it). */
#ifndef RILL_MSG_H
#define RILL_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rill/common.h"

struct rill_msg;
struct rill_leak_rec;

/* Frees the message's memory and what it holds. Called once, when the last
 * reference is released. */
typedef void rill_msg_destroy_fn(struct rill_msg *m);

/* Type tags below 256 are rill's; applications use RILL_MSG_USER and up. */
enum rill_msg_type {
    RILL_MSG_BUF = 1,
    RILL_MSG_FILE_REGION = 2,
    RILL_MSG_STRING = 3, /* codec: a string message (string_codec.h) */
    RILL_MSG_HTTP = 16,  /* codec: HTTP messages (http.h), 16..23 */
    RILL_MSG_RESP = 24,  /* codec: a RESP value (resp.h) */
    RILL_MSG_RPC = 32,   /* rpc: frames and calls, 32..39 */
    RILL_MSG_USER = 256,
};

struct rill_msg {
    atomic_uint _refcnt;
    uint16_t type;
    uint16_t _flags;
    rill_msg_destroy_fn *_destroy;
    struct rill_leak_rec *_leak; /* set by the leak detector (simple/paranoid) */
};

/* Initialise @m with one reference. The leak detector starts tracking it
 * here; the caller's return address is recorded as the allocation site in
 * paranoid mode. */
void rill_msg_init(struct rill_msg *m, uint16_t type, rill_msg_destroy_fn *destroy);

/* Returns @m with one more reference. In debug builds retaining a released
 * message aborts with a clear message. */
struct rill_msg *rill_msg_retain(struct rill_msg *m);

/* Give back one reference; the last one calls the destroy function. Returns
 * true when the message was destroyed. In debug builds a double release
 * aborts with a clear message. */
bool rill_msg_release(struct rill_msg *m);

/* Release @n references at once (n >= 1). */
bool rill_msg_release_n(struct rill_msg *m, unsigned n);

/* The current count (racy unless the caller holds the only reference). */
unsigned rill_msg_refcnt(const struct rill_msg *m);

/* Record a touch point for the paranoid leak report (no-op otherwise):
 * where the message was last seen, with a short hint (static string). */
void rill_msg_touch_at(struct rill_msg *m, const char *hint, const char *file, int line);
#define rill_msg_touch(m, hint) rill_msg_touch_at((m), (hint), __FILE__, __LINE__)

/* Release @m if not NULL; convenient on cleanup paths. */
static inline void rill_msg_release_safe(struct rill_msg *m)
{
    if (m)
        rill_msg_release(m);
}

#endif /* RILL_MSG_H */
