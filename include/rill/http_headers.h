/* HTTP header fields: an ordered list of (name, value) pairs with
 * case-insensitive lookup (Netty's HttpHeaders).
 *
 * Repeated names are kept, in the order they were received or added; get()
 * returns the first, find() walks the others. Names keep their case;
 * values are stored without the whitespace around them. Every name and
 * value is NUL-terminated, so it can be used as a C string (the length is
 * there too, and a value never contains NUL).
 *
 * Storage: the text of all names and values sits in one block and the
 * entries are offsets into it, so headers cost no allocation per field. A
 * message allocates both with itself (a decoded head in one allocation, a
 * new one with room for a few fields); adding past that room grows the
 * block by doubling. Removing leaves the text in place until the block
 * grows; pointers from get()/at() are borrowed: valid until the headers
 * are changed (add/set/remove/clear) or their message is released.
 *
 * Adding validates: a name must be an RFC 9110 token, a value must not
 * contain CR, LF, NUL or another control byte except HTAB (so a header can
 * never smuggle a line break into the head). -EINVAL otherwise.
 *
 * Thread: a headers object belongs to the thread that owns its message
 * (one thread at a time, like a buffer); every function here: Thread: any
 * (that one thread). */
#ifndef RILL_HTTP_HEADERS_H
#define RILL_HTTP_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One field, borrowed from the headers (see above for how long). */
struct rill_http_field {
    const char *name; /* NUL-terminated, as received or added */
    const char *value;
    size_t name_len, value_len;
};

/* Private: one entry, offsets into the text block. */
struct rill__http_hent {
    uint32_t name, value;
    uint32_t name_len, value_len;
};

/* The fields are private: use the functions below. */
struct rill_http_headers {
    struct rill__http_hent *_ent;
    char *_text;
    uint32_t _n, _ent_cap;
    uint32_t _len, _text_cap;
    uint8_t _heap; /* which of _ent/_text were malloc'd here (1, 2) */
};

/* Initialise empty headers that own nothing yet (for headers outside a
 * message; a message's own are ready to use). */
void rill_http_headers_init(struct rill_http_headers *h);

/* Free what standalone headers allocated (messages do this themselves). */
void rill_http_headers_fini(struct rill_http_headers *h);

/* Number of fields. */
static inline size_t rill_http_headers_count(const struct rill_http_headers *h)
{
    return h->_n;
}

/* Field @i (0-based, in order) into *@f. Returns 0 or -ERANGE. */
int rill_http_headers_at(const struct rill_http_headers *h, size_t i, struct rill_http_field *f);

/* The value of the first field named @name (any case), or NULL; its length
 * in *@len (may be NULL). Borrowed. */
const char *rill_http_headers_get(const struct rill_http_headers *h, const char *name, size_t *len);
/* As get(), with a name of @nlen bytes (not NUL-terminated). */
const char *rill_http_headers_getn(const struct rill_http_headers *h, const char *name, size_t nlen,
                                   size_t *len);

/* Index of the first field named @name at or after index @from, or
 * -ENOENT. Walk repeated fields with find(h, name, i + 1). */
ssize_t rill_http_headers_find(const struct rill_http_headers *h, const char *name, size_t from);

/* True when a field named @name holds @token as one element of its
 * comma-separated list (any case, whitespace around elements ignored),
 * looking at every field of that name: has_token(h, "Connection", "close"). */
bool rill_http_headers_has_token(const struct rill_http_headers *h, const char *name,
                                 const char *token);

/* Add a field at the end (copies both). Returns 0, -EINVAL (bad name or
 * value, see above; or longer than 64 KiB) or -ENOMEM. */
int rill_http_headers_add(struct rill_http_headers *h, const char *name, const char *value);
int rill_http_headers_addn(struct rill_http_headers *h, const char *name, size_t nlen,
                           const char *value, size_t vlen);
/* Add a decimal number as the value. */
int rill_http_headers_add_u64(struct rill_http_headers *h, const char *name, uint64_t value);

/* Remove every field named @name, then add one. Returns as add. */
int rill_http_headers_set(struct rill_http_headers *h, const char *name, const char *value);
int rill_http_headers_set_u64(struct rill_http_headers *h, const char *name, uint64_t value);

/* Remove every field named @name; returns how many were removed. */
int rill_http_headers_remove(struct rill_http_headers *h, const char *name);

/* Remove every field (the storage stays for reuse). */
void rill_http_headers_clear(struct rill_http_headers *h);

/* Append a copy of every field of @src to @dst. Returns 0 or -ENOMEM (then
 * @dst holds a prefix of the copies). */
int rill_http_headers_copy(struct rill_http_headers *dst, const struct rill_http_headers *src);

#endif /* RILL_HTTP_HEADERS_H */
