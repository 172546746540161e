/* Port unification: hold the first bytes, let the user's select callback
 * install a protocol, remove the sniffer (the decoder base hands the bytes
 * over). See include/rill/sniff.h. */
#include "rill/sniff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/decoder.h"
#include "rill/error.h"
#include "rill/pipeline.h"

struct sniff_state {
    struct rill_decoder dec; /* first: the base finds it here */
    rill_sniff_select_fn *select;
    void *arg;
    size_t want; /* bytes the next call to select sees */
    bool done;   /* select chose (or removed the sniffer): nothing more to do */
};

/* @len bytes of @head as text for an error message: printable ASCII as it
 * is, the rest as \xNN, at most 16 bytes shown. */
static void show(const uint8_t *head, size_t len, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < len && i < 16 && o + 5 < size; i++) {
        uint8_t c = head[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
    }
    if (len > 16 && o + 4 < size) {
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    out[o] = '\0';
}

/* Show @len bytes of @in to the callback. Returns 0 (chosen, or more bytes
 * wanted: s->want says how many) or the stream's error. */
static int choose(struct sniff_state *s, struct rill_buf *in, size_t len, bool last)
{
    struct rill_decoder *d = &s->dec;
    struct rill_ctx *ctx = rill_decoder_ctx(d);
    uint8_t head[RILL_SNIFF_MAX_BYTES];
    int rc = rill_buf_get_bytes(in, rill_buf_reader_index(in), head, len);
    if (rc)
        return rill_decoder_fail(d, rc, "sniff: could not read the first %zu bytes", len);
    char text[80];
    rc = s->select(rill_ctx_pipeline(ctx), head, len, s->arg);
    if (rc < 0) {
        show(head, len, text, sizeof(text));
        return rill_decoder_fail(d, rc, "sniff: no protocol for the first %zu bytes \"%s\"", len,
                                 text);
    }
    if (rc == 0) {
        s->done = true;
        /* The new handlers missed the channel's active event (it went by
         * before they were added); handlers that set a connection up there
         * (the RPC server's) need it, before the first bytes. */
        struct rill_channel *ch = rill_ctx_channel(ctx);
        if (!rill_ctx_is_removed(ctx) && rill_channel_is_active(ch))
            rill_ctx_fire_active(ctx);
        /* The base sees the removal (we are inside its decode loop) and
         * hands what it holds to the handlers select installed. */
        if (!rill_ctx_is_removed(ctx))
            rc = rill_pipeline_remove_ctx(ctx);
        return rc;
    }
    size_t want = (size_t)rc > len ? (size_t)rc : len + 1;
    if (last || want > RILL_SNIFF_MAX_BYTES) {
        show(head, len, text, sizeof(text));
        return rill_decoder_fail(d, RILL_EPROTO,
                                 last ? "sniff: input ended after %zu bytes \"%s\", before a "
                                        "protocol was recognized"
                                      : "sniff: no protocol recognized in the first %zu bytes "
                                        "\"%s\"",
                                 len, text);
    }
    s->want = want;
    return 0;
}

static int sniff_decode(struct rill_decoder *d, struct rill_buf *in)
{
    struct sniff_state *s = (struct sniff_state *)d;
    /* The decode loop calls again only after progress, and "need more"
     * makes none: ask again here while enough bytes are held. */
    while (!s->done && rill_buf_readable(in) >= s->want) {
        int rc = choose(s, in, s->want, false);
        if (rc)
            return rc;
    }
    return 0;
}

static int sniff_decode_last(struct rill_decoder *d, struct rill_buf *in)
{
    struct sniff_state *s = (struct sniff_state *)d;
    size_t n = rill_buf_readable(in);
    if (s->done || n == 0)
        return 0; /* nothing came: nothing to choose */
    return choose(s, in, n < s->want ? n : s->want, true);
}

static const struct rill_decoder_ops sniff_ops = {
    .decode = sniff_decode,
    .decode_last = sniff_decode_last,
};

static int sniff_added(struct rill_ctx *ctx)
{
    struct sniff_state *s = rill_ctx_state(ctx);
    const struct rill_sniff_config *c = rill_ctx_arg(ctx);
    if (!c || !c->select || c->bytes > RILL_SNIFF_MAX_BYTES)
        return -EINVAL;
    s->select = c->select;
    s->arg = c->arg;
    s->want = c->bytes ? c->bytes : RILL_SNIFF_DEFAULT_BYTES;
    return rill_decoder_init(&s->dec, ctx, &sniff_ops, NULL);
}

const struct rill_handler rill_sniff_handler = {
    .name = "sniff",
    .ctx_size = sizeof(struct sniff_state),
    .added = sniff_added,
    RILL_DECODER_CALLBACKS,
};
