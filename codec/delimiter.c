/* Delimiter framing (Netty's DelimiterBasedFrameDecoder). See
 * include/rill/framing.h.
 *
 * Each delimiter is searched with memmem (memchr for one byte) over the
 * contiguous readable bytes; a delimiter found earlier shortens the range
 * searched for the next ones. A search that finds nothing resumes later
 * where a delimiter could still start (the last longest-delimiter-minus-one
 * bytes), so bytes are not scanned again and again as a frame arrives. */
#include <errno.h>
#include <string.h>

#include "codec/framing_internal.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/pipeline.h"

struct delim_state {
    struct rill_decoder dec; /* first: the base finds it here */
    size_t max;
    bool keep, fail_fast;
    bool discarding;    /* skipping a frame over the limit up to its delimiter */
    bool ending;        /* the input ended: no delimiter can still complete */
    unsigned n;         /* delimiters */
    size_t longest;     /* longest delimiter */
    size_t scanned;     /* no delimiter starts before this offset */
    uint64_t discarded; /* bytes of that frame skipped so far */
    uint8_t len[RILL_DELIMITERS_MAX];
    uint8_t bytes[RILL_DELIMITERS_MAX][RILL_DELIMITER_MAX_LEN];
};

static int delim_too_long(struct delim_state *s, uint64_t len, bool gone)
{
    return rill_decoder_raise(
        &s->dec, RILL_ETOOLARGE,
        "frame of %s%llu bytes before its delimiter exceeds the limit of %zu%s",
        gone ? "" : "over ", (unsigned long long)len, s->max,
        gone ? "; discarded" : "; discarding it");
}

/* True when delimiter @k may begin at offset @q and run past the @n
 * readable bytes: the bytes from @q on are a prefix of it. */
static bool partial_at(const struct delim_state *s, const struct rill_buf *in, const uint8_t *p,
                       size_t n, unsigned k, size_t q)
{
    if (p)
        return memcmp(p + q, s->bytes[k], n - q) == 0;
    return rill_buf_equal_bytes(in, rill_buf_reader_index(in) + q, s->bytes[k], n - q);
}

/* Delimiter @w was found at @at, near the end of the readable bytes. Is it
 * too early to tell that it ends the shortest frame? Another delimiter may
 * begin before it (or at it, when listed first) with its rest still to
 * come: "a#" with "##" and "#" must wait for the next byte, so that frames
 * don't depend on how the input was cut into reads. */
static bool could_start_earlier(const struct delim_state *s, const struct rill_buf *in,
                                const uint8_t *p, size_t n, size_t at, unsigned w)
{
    for (unsigned k = 0; k < s->n; k++) {
        if (k == w)
            continue;
        size_t len = s->len[k];
        size_t lo = n + 1 > len ? n + 1 - len : 0; /* starts that run past the end */
        size_t end = k < w ? at + 1 : at;          /* starts that would win */
        for (size_t q = lo; q < end; q++)
            if (partial_at(s, in, p, n, k, q))
                return true;
    }
    return false;
}

/* At the end of input nothing more can complete a delimiter: decide with
 * what is there. */
static int delim_decode(struct rill_decoder *d, struct rill_buf *in);

static int delim_decode_last(struct rill_decoder *d, struct rill_buf *in)
{
    struct delim_state *s = (struct delim_state *)d;
    s->ending = true;
    for (;;) {
        size_t before = rill_buf_readable(in);
        int rc = delim_decode(d, in);
        if (rc != 0 || rill_buf_readable(in) == before || rill_decoder_error(d))
            return rc;
    }
}

/* No delimiter in the @n readable bytes. */
static int delim_partial(struct delim_state *s, struct rill_buf *in, size_t n)
{
    /* A delimiter may still start in the last longest - 1 bytes: they are
     * neither counted nor skipped. */
    size_t tail = s->longest - 1;
    size_t len = n > tail ? n - tail : 0;
    if (!s->discarding && len <= s->max) {
        s->scanned = len;
        return 0;
    }
    rill_buf_skip(in, len);
    s->scanned = 0;
    s->discarded += len;
    if (s->discarding)
        return 0;
    s->discarding = true;
    return s->fail_fast ? delim_too_long(s, s->discarded, false) : 0;
}

static int delim_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct delim_state *s = (struct delim_state *)d;
    size_t n;
    const uint8_t *p = rill_buf_read_ptr(in, &n);
    n = rill_buf_readable(in);
    /* The shortest frame wins: once a delimiter was found at @at, a later
     * one only matters if it starts before @at. */
    ssize_t at = -1;
    size_t dlen = 0;
    unsigned w = 0;
    for (unsigned i = 0; i < s->n; i++) {
        /* A match that starts before at ends by at - 1 + len. */
        size_t to = at < 0 ? n : (size_t)at - 1 + s->len[i];
        if (to > n)
            to = n;
        ssize_t j = rill__frame_find(in, p, s->scanned, to, s->bytes[i], s->len[i]);
        if (j >= 0) {
            at = j;
            w = i;
            dlen = s->len[i];
        }
    }
    if (at < 0)
        return delim_partial(s, in, n);
    if (!s->ending && (size_t)at + s->longest > n && could_start_earlier(s, in, p, n, at, w)) {
        /* Nothing complete starts before at, nothing partial before the
         * last longest - 1 bytes: the next search starts there. */
        s->scanned = n > s->longest - 1 ? n - (s->longest - 1) : 0;
        return 0;
    }
    s->scanned = 0;
    size_t len = (size_t)at;
    if (s->discarding) {
        uint64_t total = s->discarded + len;
        s->discarding = false;
        s->discarded = 0;
        rill_buf_skip(in, len + dlen);
        return s->fail_fast ? 0 : delim_too_long(s, total, true);
    }
    if (len > s->max) {
        rill_buf_skip(in, len + dlen);
        return delim_too_long(s, len, true);
    }
    if (s->keep)
        return rill__frame_emit(d, in, len + dlen);
    int rc = rill__frame_emit(d, in, len);
    rill_buf_skip(in, dlen);
    return rc;
}

static const struct rill_decoder_ops delim_ops = {
    .decode = delim_decode,
    .decode_last = delim_decode_last,
};

static int delim_added(struct rill_ctx *ctx)
{
    struct delim_state *s = rill_ctx_state(ctx);
    const struct rill_delimiter_config *c = rill_ctx_arg(ctx);
    if (!c)
        return -EINVAL;
    s->max = c->max_frame_length ? c->max_frame_length : RILL_LINE_DEFAULT_MAX;
    s->keep = c->keep_delimiter;
    s->fail_fast = c->fail_fast;
    for (s->n = 0; s->n < RILL_DELIMITERS_MAX && c->delimiters[s->n].len; s->n++) {
        const struct rill_delimiter *dl = &c->delimiters[s->n];
        if (!dl->bytes || dl->len > RILL_DELIMITER_MAX_LEN)
            return -EINVAL;
        memcpy(s->bytes[s->n], dl->bytes, dl->len);
        s->len[s->n] = (uint8_t)dl->len;
        if (dl->len > s->longest)
            s->longest = dl->len;
    }
    if (s->n == 0 || s->max > SIZE_MAX - 2 * RILL_DELIMITER_MAX_LEN)
        return -EINVAL;
    struct rill_decoder_options opt;
    rill__frame_options(&opt, &c->dec, s->max + 2 * s->longest);
    return rill_decoder_init(&s->dec, ctx, &delim_ops, &opt);
}

const struct rill_handler rill_delimiter_decoder = {
    .name = "delimiter-decoder",
    .ctx_size = sizeof(struct delim_state),
    .added = delim_added,
    RILL_DECODER_CALLBACKS,
};
