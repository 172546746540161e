/* libFuzzer target for the delimiter decoder (rill/framing.h). Input:
 *
 *   byte 0   bits 0-2 delimiters - 1, bit 3 keep_delimiter, bit 4 fail_fast,
 *            bit 5 keep_open_on_error
 *   byte 1   max_frame_length - 1 (255: the default, 8192)
 *   then     per delimiter: a byte whose low 2 bits are its length - 1,
 *            then that many bytes
 *   then     how the harness cuts the rest into reads (fuzz.h)
 *   rest     the stream
 *
 * Oracle (framing_oracle.h): the frames and exceptions equal those of a
 * naive reference that sees the whole stream at once (the earliest
 * delimiter wins, ties to the one listed first), whatever the cuts. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "framing_oracle.h"
#include "fuzz.h"
#include "rill/error.h"
#include "rill/framing.h"

static void ref_delimiters(const uint8_t *s, size_t len, const struct rill_delimiter_config *c,
                           size_t nd)
{
    size_t max = c->max_frame_length ? c->max_frame_length : RILL_LINE_DEFAULT_MAX;
    size_t longest = 0;
    for (size_t k = 0; k < nd; k++)
        if (c->delimiters[k].len > longest)
            longest = c->delimiters[k].len;
    size_t at = 0;
    while (at < len) {
        size_t best = SIZE_MAX, dlen = 0;
        for (size_t k = 0; k < nd; k++) {
            const struct rill_delimiter *d = &c->delimiters[k];
            for (size_t q = at; q + d->len <= len && q < best; q++) {
                if (memcmp(s + q, d->bytes, d->len) == 0) {
                    best = q;
                    dlen = d->len;
                    break;
                }
            }
        }
        if (best == SIZE_MAX) {
            /* Known too long only once more than max bytes can't start a
             * delimiter. */
            if (c->fail_fast && len - at > max + longest - 1)
                fz_error(&fz.want, RILL_ETOOLARGE);
            return;
        }
        size_t n = best - at;
        if (n > max) {
            fz_error(&fz.want, RILL_ETOOLARGE);
            if (!c->dec.keep_open_on_error)
                return;
        } else {
            fz_frame(&fz.want, 'F', s + at, c->keep_delimiter ? n + dlen : n);
        }
        at = best + dlen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct rill_delimiter_config c = {
        .keep_delimiter = data[0] & 8,
        .fail_fast = data[0] & 16,
        .dec.keep_open_on_error = data[0] & 32,
        .max_frame_length = data[1] == 255 ? 0 : (size_t)data[1] + 1,
    };
    size_t nd = (data[0] & 7) + 1, off = 2;
    for (size_t k = 0; k < nd; k++) {
        if (off >= size)
            return 0;
        size_t n = (data[off] & 3) + 1;
        if (size - off - 1 < n)
            return 0;
        c.delimiters[k] = (struct rill_delimiter){ data + off + 1, n };
        off += 1 + n;
    }
    if (off >= size)
        return 0;
    fz_reset();
    const struct rill_handler *hs[] = { &rill_delimiter_decoder, &fz_sink };
    void *args[] = { &c, NULL };
    rill_fuzz_run(hs, args, 2, data + off, size - off);
    ref_delimiters(data + off + 1, size - off - 1, &c, nd);
    fz_check("fuzz_delimiter", !c.dec.keep_open_on_error);
    return 0;
}
