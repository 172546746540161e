/* Line framing (Netty's LineBasedFrameDecoder): frames end at "\n" or
 * "\r\n". See include/rill/framing.h.
 *
 * The search for '\n' is a memchr over the contiguous readable bytes, and
 * it resumes where the previous call stopped (scanned), so a long line that
 * arrives in many reads is scanned once. */
#include <errno.h>

#include "codec/framing_internal.h"
#include "rill/buf.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/pipeline.h"

struct line_state {
    struct rill_decoder dec; /* first: the base finds it here */
    size_t max;
    bool keep, fail_fast;
    bool discarding;    /* skipping a line over the limit up to its end */
    size_t scanned;     /* readable bytes known to hold no '\n' */
    uint64_t discarded; /* bytes of that line skipped so far */
};

static const uint8_t LF = '\n';

static int line_too_long(struct line_state *s, uint64_t len, bool gone)
{
    return rill_decoder_raise(&s->dec, RILL_ETOOLARGE,
                              "line of %s%llu bytes exceeds the limit of %zu%s",
                              gone ? "" : "over ", (unsigned long long)len, s->max,
                              gone ? "; discarded" : "; discarding it");
}

/* No line end among the @n readable bytes. */
static int line_partial(struct line_state *s, struct rill_buf *in, const uint8_t *p, size_t n)
{
    /* A trailing '\r' may begin the line end: it is not part of the line,
     * and skipping leaves it, so the next '\n' still finds it. */
    size_t len = n && rill__frame_byte(in, p, n - 1) == '\r' ? n - 1 : n;
    if (!s->discarding && len <= s->max) {
        s->scanned = n;
        return 0;
    }
    rill_buf_skip(in, len);
    s->scanned = n - len;
    s->discarded += len;
    if (s->discarding)
        return 0;
    s->discarding = true;
    return s->fail_fast ? line_too_long(s, s->discarded, false) : 0;
}

static int line_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct line_state *s = (struct line_state *)d;
    size_t n;
    const uint8_t *p = rill_buf_read_ptr(in, &n);
    n = rill_buf_readable(in);
    ssize_t lf = rill__frame_find(in, p, s->scanned, n, &LF, 1);
    if (lf < 0)
        return line_partial(s, in, p, n);
    s->scanned = 0;
    size_t len = (size_t)lf, dlen = 1;
    if (len && rill__frame_byte(in, p, len - 1) == '\r') {
        len--;
        dlen = 2;
    }
    if (s->discarding) {
        uint64_t total = s->discarded + len;
        s->discarding = false;
        s->discarded = 0;
        rill_buf_skip(in, len + dlen);
        return s->fail_fast ? 0 : line_too_long(s, total, true);
    }
    if (len > s->max) {
        rill_buf_skip(in, len + dlen);
        return line_too_long(s, len, true);
    }
    if (s->keep)
        return rill__frame_emit(d, in, len + dlen);
    int rc = rill__frame_emit(d, in, len);
    rill_buf_skip(in, dlen);
    return rc;
}

static const struct rill_decoder_ops line_ops = { .decode = line_decode };

static int line_added(struct rill_ctx *ctx)
{
    struct line_state *s = rill_ctx_state(ctx);
    const struct rill_line_config *c = rill_ctx_arg(ctx);
    static const struct rill_line_config defaults;
    if (!c)
        c = &defaults;
    s->max = c->max_length ? c->max_length : RILL_LINE_DEFAULT_MAX;
    s->keep = c->keep_delimiter;
    s->fail_fast = c->fail_fast;
    if (s->max > SIZE_MAX - 2)
        return -EINVAL;
    struct rill_decoder_options opt;
    rill__frame_options(&opt, &c->dec, s->max + 2);
    return rill_decoder_init(&s->dec, ctx, &line_ops, &opt);
}

const struct rill_handler rill_line_decoder = {
    .name = "line-decoder",
    .ctx_size = sizeof(struct line_state),
    .added = line_added,
    RILL_DECODER_CALLBACKS,
};
