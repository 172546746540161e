/* libFuzzer target for the RESP codec (rill/resp.h). Input:
 *
 *   byte 0   bit 0 commands mode (else any value), bit 1 no error reply,
 *            bits 2-4 max_depth - 1 (1..8), bit 5 small limits (max_bulk 64,
 *            max_elements 8, max_line 32), bits 6-7 unused
 *   byte 1   how the harness cuts the rest into reads (fuzz.h)
 *   rest     the stream
 *
 * Oracle: the values decoded (re-encoded in RESP3 by a collector after the
 * codec) and the error raised are the same whatever the cuts: the stream
 * is run once as cut and once in one piece, and the two must agree. The
 * harness checks that no message outlives the channel. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rill/buf.h"
#include "rill/pipeline.h"
#include "rill/resp.h"

struct collected {
    uint8_t *p;
    size_t n, cap;
    int err;
    size_t values;
};

static struct collected runs[2];
static int run_no;

static void keep(const void *p, size_t n)
{
    struct collected *c = &runs[run_no];
    if (c->n + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->n + n)
            cap *= 2;
        uint8_t *q = realloc(c->p, cap);
        if (!q)
            abort();
        c->p = q;
        c->cap = cap;
    }
    memcpy(c->p + c->n, p, n);
    c->n += n;
}

static void collect_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct rill_resp *r = rill_resp_from_msg(msg);
    if (r) {
        struct rill_buf *out;
        if (rill_buf_alloc(64, &out) != 0 || rill_resp_encode(&out, r, rill_resp_root(r), 3) != 0)
            abort();
        size_t n = rill_buf_readable(out);
        uint8_t *tmp = malloc(n ? n : 1);
        if (!tmp || rill_buf_get_bytes(out, rill_buf_reader_index(out), tmp, n) != 0)
            abort();
        keep(tmp, n);
        free(tmp);
        rill_buf_release(out);
        runs[run_no].values++;
    }
    rill_msg_release(msg);
}

static void collect_exception(struct rill_ctx *ctx, int err, const char *why)
{
    runs[run_no].err = err;
}

static const struct rill_handler collector = {
    .name = "collect",
    .read = collect_read,
    .exception = collect_exception,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    struct rill_resp_config cfg = {
        .mode = (flags & 1) ? RILL_RESP_MODE_COMMANDS : RILL_RESP_MODE_ANY,
        .no_error_reply = (flags & 2) != 0,
        .max_depth = 1u + ((flags >> 2) & 7u),
    };
    if (flags & 0x20) {
        cfg.max_bulk = 64;
        cfg.max_elements = 8;
        cfg.max_line = 32;
    }
    const struct rill_handler *hs[2] = { &rill_resp_codec, &collector };
    void *args[2] = { &cfg, NULL };
    for (run_no = 0; run_no < 2; run_no++) {
        runs[run_no].n = 0;
        runs[run_no].err = 0;
        runs[run_no].values = 0;
    }
    run_no = 0;
    rill_fuzz_run(hs, args, 2, data + 1, size - 1);
    /* The same stream in one piece (cut mode 0). */
    uint8_t *whole = malloc(size - 1);
    if (!whole)
        abort();
    memcpy(whole, data + 1, size - 1);
    whole[0] = 0;
    run_no = 1;
    rill_fuzz_run(hs, args, 2, whole, size - 1);
    free(whole);
    if (runs[0].values != runs[1].values || runs[0].n != runs[1].n ||
        (runs[0].n && memcmp(runs[0].p, runs[1].p, runs[0].n) != 0) || runs[0].err != runs[1].err)
        abort(); /* the cuts changed what was decoded */
    return 0;
}
