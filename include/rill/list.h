/* Intrusive circular doubly-linked list. Objects embed a struct rill_list
 * and are recovered with rill_container_of. A list head is a rill_list whose
 * prev/next point to itself when empty. No locking: callers synchronise. */
#ifndef RILL_LIST_H
#define RILL_LIST_H

#include <stdbool.h>
#include "rill/common.h"

struct rill_list {
    struct rill_list *prev, *next;
};

static inline void rill_list_init(struct rill_list *h)
{
    h->prev = h;
    h->next = h;
}

static inline bool rill_list_empty(const struct rill_list *h)
{
    return h->next == h;
}

static inline void rill_list__link(struct rill_list *n, struct rill_list *prev,
                                   struct rill_list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

/* Insert @n right after @pos (at the front when @pos is the head). */
static inline void rill_list_insert_after(struct rill_list *pos, struct rill_list *n)
{
    rill_list__link(n, pos, pos->next);
}

/* Insert @n right before @pos (at the back when @pos is the head). */
static inline void rill_list_insert_before(struct rill_list *pos, struct rill_list *n)
{
    rill_list__link(n, pos->prev, pos);
}

static inline void rill_list_push_back(struct rill_list *h, struct rill_list *n)
{
    rill_list_insert_before(h, n);
}

static inline void rill_list_push_front(struct rill_list *h, struct rill_list *n)
{
    rill_list_insert_after(h, n);
}

/* Unlink @n and leave it self-linked, so a second remove is harmless. */
static inline void rill_list_remove(struct rill_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    rill_list_init(n);
}

static inline struct rill_list *rill_list_pop_front(struct rill_list *h)
{
    struct rill_list *n = h->next;
    if (n == h)
        return NULL;
    rill_list_remove(n);
    return n;
}

/* Iterate; the _safe form allows removing @it inside the body. */
#define rill_list_foreach(it, head) for ((it) = (head)->next; (it) != (head); (it) = (it)->next)
#define rill_list_foreach_safe(it, tmp, head)                                                      \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

#endif /* RILL_LIST_H */
