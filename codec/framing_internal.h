/* Helpers shared by the framing decoders (codec/length_field.c, line.c,
 * delimiter.c, fixed_length.c, varint.c). Private to codec/. */
#ifndef RILL_CODEC_FRAMING_INTERNAL_H
#define RILL_CODEC_FRAMING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "rill/buf.h"
#include "rill/common.h"
#include "rill/decoder.h"
#include "rill/error.h"

/* The base's cumulation limit when max_cumulation is 0 (decoder.h). */
#define RILL__DECODER_DEFAULT_MAX_CUMULATION ((size_t)1024 * 1024)

/* Loop thread. Copy @user (may be NULL) into @out. When its max_cumulation
 * is 0 and @need undecoded bytes (the most a decoder may have to hold for
 * one frame) are more than the base's default, raise the limit to @need. */
static inline void rill__frame_options(struct rill_decoder_options *out,
                                       const struct rill_decoder_options *user, size_t need)
{
    if (user)
        *out = *user;
    else
        memset(out, 0, sizeof(*out));
    if (out->max_cumulation == 0 && need > RILL__DECODER_DEFAULT_MAX_CUMULATION)
        out->max_cumulation = need;
}

/* Loop thread (decode step). Cut the next @len readable bytes of @in as a
 * slice (a view, no copy) and emit it. Returns 0, or fails the stream with
 * the slice's error (-ENOMEM). */
static inline int rill__frame_emit(struct rill_decoder *d, struct rill_buf *in, size_t len)
{
    struct rill_buf *frame;
    int rc = rill_buf_read_slice(in, len, &frame);
    if (RILL_UNLIKELY(rc != 0))
        return rill_decoder_fail(d, rc, "cannot slice a frame of %zu bytes", len);
    rill_decoder_emit(d, rill_buf_msg(frame));
    return 0;
}

/* A frame over its limit, skipped as its bytes arrive. */
struct rill__discard {
    bool on;
    uint64_t left;  /* bytes still to skip */
    uint64_t frame; /* the frame's length, for the report */
};

static inline int rill__discard_report(struct rill__discard *ds, struct rill_decoder *d,
                                       const char *what, size_t max)
{
    return rill_decoder_raise(d, RILL_ETOOLARGE, "%s of %llu bytes exceeds the limit of %zu%s",
                              what, (unsigned long long)ds->frame, max,
                              ds->on ? "; discarding it" : "; discarded");
}

/* Loop thread (decode step). Skip what arrived of the frame being
 * discarded; when it is gone, stop and (unless @fail_fast, which reported
 * it already) raise RILL_ETOOLARGE. Returns 0. */
static inline int rill__discard_more(struct rill__discard *ds, struct rill_decoder *d,
                                     struct rill_buf *in, const char *what, size_t max,
                                     bool fail_fast)
{
    size_t n = rill_buf_readable(in);
    if (n > ds->left)
        n = (size_t)ds->left;
    rill_buf_skip(in, n);
    ds->left -= n;
    if (ds->left)
        return 0;
    ds->on = false;
    return fail_fast ? 0 : rill__discard_report(ds, d, what, max);
}

/* Loop thread (decode step). Begin discarding a frame of @frame bytes
 * starting at @in's reader index (@what names it in the report, @max is
 * the limit it broke): skip what is readable of it, and raise
 * RILL_ETOOLARGE now when @fail_fast, or once it is gone otherwise (Netty's
 * order). Returns 0 (rill_decoder_raise's result). */
static inline int rill__discard_start(struct rill__discard *ds, struct rill_decoder *d,
                                      struct rill_buf *in, uint64_t frame, const char *what,
                                      size_t max, bool fail_fast)
{
    ds->on = true;
    ds->left = frame;
    ds->frame = frame;
    if (fail_fast) {
        /* Report first: the text says whether bytes are still to come. */
        size_t n = rill_buf_readable(in);
        ds->on = n < frame;
        rill__discard_report(ds, d, what, max);
        ds->on = true;
    }
    return rill__discard_more(ds, d, in, what, max, fail_fast);
}

/* Offset from the reader index of the first @nlen-byte @needle that
 * starts at or after @from and ends by @to (offsets from the reader index,
 * @to <= readable), or -1. @p is rill_buf_read_ptr(@in): when the readable
 * bytes are contiguous the search is a plain memchr/memmem over them,
 * otherwise it walks the composite's spans (rill_buf_index_of/find). */
static inline ssize_t rill__frame_find(const struct rill_buf *in, const uint8_t *p, size_t from,
                                       size_t to, const uint8_t *needle, size_t nlen)
{
    if (to < from || to - from < nlen)
        return -1;
    if (p) {
        const uint8_t *q = nlen == 1 ? memchr(p + from, needle[0], to - from)
                                     : memmem(p + from, to - from, needle, nlen);
        return q ? q - p : -1;
    }
    size_t rd = rill_buf_reader_index(in);
    ssize_t i = nlen == 1 ? rill_buf_index_of(in, rd + from, rd + to, needle[0])
                          : rill_buf_find(in, rd + from, rd + to, needle, nlen);
    return i < 0 ? -1 : i - (ssize_t)rd;
}

/* The byte at offset @i from the reader index (@i < readable); @p as
 * above. */
static inline uint8_t rill__frame_byte(const struct rill_buf *in, const uint8_t *p, size_t i)
{
    uint8_t c = 0;
    if (p)
        return p[i];
    rill_buf_get_u8(in, rill_buf_reader_index(in) + i, &c);
    return c;
}

#endif /* RILL_CODEC_FRAMING_INTERNAL_H */
