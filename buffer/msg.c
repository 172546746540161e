/* Reference counting for every message type, with the leak detector's
 * hooks. The count is atomic; the destroy function runs exactly once. */
#include "rill/msg.h"

#include "rill/leak.h"
#include "rill/log.h"

static inline bool leak_on(void)
{
    /* rill__leak_mode is -1 until the first message initialises it. */
    return RILL_UNLIKELY(atomic_load_explicit(&rill__leak_mode, memory_order_relaxed) != 0);
}

void rill_msg_init(struct rill_msg *m, uint16_t type, rill_msg_destroy_fn *destroy)
{
    atomic_init(&m->_refcnt, 1);
    m->type = type;
    m->_flags = 0;
    m->_destroy = destroy;
    m->_leak = NULL;
    if (leak_on())
        rill__leak_track(m, __builtin_return_address(0));
}

struct rill_msg *rill_msg_retain(struct rill_msg *m)
{
    unsigned old = atomic_fetch_add_explicit(&m->_refcnt, 1, memory_order_relaxed);
#if RILL_DEBUG
    if (RILL_UNLIKELY(old == 0))
        RILL_PANIC("use after release: retain of message %p (type %u) whose count is 0", (void *)m,
                   m->type);
#else
    (void)old;
#endif
    if (RILL_UNLIKELY(m->_leak != NULL))
        rill__leak_touch(m, "retain", NULL, 0, __builtin_return_address(0));
    return m;
}

bool rill_msg_release_n(struct rill_msg *m, unsigned n)
{
    if (RILL_UNLIKELY(m->_leak != NULL))
        rill__leak_touch(m, "release", NULL, 0, __builtin_return_address(0));
    /* Sole owner: nobody else can retain concurrently (that would need a
     * reference), so skip the locked decrement, as the kernel's skb_unref
     * does for users == 1. */
    unsigned old = atomic_load_explicit(&m->_refcnt, memory_order_acquire);
    if (old == n)
        atomic_store_explicit(&m->_refcnt, 0, memory_order_relaxed);
    else
        /* acq_rel rather than release + a fence: the same instruction on
         * x86, and ThreadSanitizer does not model standalone fences. */
        old = atomic_fetch_sub_explicit(&m->_refcnt, n, memory_order_acq_rel);
#if RILL_DEBUG
    if (RILL_UNLIKELY(old < n))
        RILL_PANIC("double release: message %p (type %u) released %u time(s) with count %u",
                   (void *)m, m->type, n, old);
#endif
    if (old != n)
        return false;
    if (m->_leak)
        rill__leak_untrack(m);
    m->_destroy(m);
    return true;
}

bool rill_msg_release(struct rill_msg *m)
{
    return rill_msg_release_n(m, 1);
}

unsigned rill_msg_refcnt(const struct rill_msg *m)
{
    /* Acquire, for callers that decide "sole owner" from it (see buf_internal.h). */
    return atomic_load_explicit(&((struct rill_msg *)m)->_refcnt, memory_order_acquire);
}

void rill_msg_touch_at(struct rill_msg *m, const char *hint, const char *file, int line)
{
#if RILL_DEBUG
    if (RILL_UNLIKELY(rill_msg_refcnt(m) == 0))
        RILL_PANIC("use after release: touch (%s) of message %p whose count is 0", hint, (void *)m);
#endif
    if (RILL_UNLIKELY(m->_leak != NULL))
        rill__leak_touch(m, hint, file, line, __builtin_return_address(0));
}
