/* libFuzzer target for the varint32 decoder (rill/framing.h). Input:
 *
 *   byte 0   bit 0 fail_fast, bit 1 keep_open_on_error
 *   byte 1   max_frame_length / 8 (0: the default, 1 MiB)
 *   byte 2   how the harness cuts the rest into reads (fuzz.h)
 *   rest     the stream
 *
 * Oracle (framing_oracle.h): the frames and exceptions equal those of a
 * naive reference that sees the whole stream at once, whatever the cuts. */
#include <stdbool.h>
#include <stdint.h>

#include "framing_oracle.h"
#include "fuzz.h"
#include "rill/error.h"
#include "rill/framing.h"

static void ref_varint(const uint8_t *s, size_t len, const struct rill_varint_config *c)
{
    size_t max = c->max_frame_length ? c->max_frame_length : RILL_FRAME_DEFAULT_MAX;
    size_t at = 0;
    while (at < len) {
        uint64_t v = 0;
        size_t hdr = 0;
        for (size_t i = 0; i < 5 && at + i < len; i++) {
            v += (uint64_t)(s[at + i] & 0x7f) << (7 * i);
            if (s[at + i] < 0x80) {
                hdr = i + 1;
                break;
            }
        }
        if (hdr == 0) {
            if (len - at >= 5)
                fz_error(&fz.want, RILL_EDECODE); /* six bytes or more */
            return;
        }
        if (v > INT32_MAX) {
            fz_error(&fz.want, RILL_EDECODE);
            return;
        }
        size_t left = len - at - hdr;
        if (v > max) {
            /* Reported when seen (fail-fast) or once skipped. */
            if (c->fail_fast || v <= left)
                fz_error(&fz.want, RILL_ETOOLARGE);
            if (v > left || !c->dec.keep_open_on_error)
                return;
        } else {
            if (v > left)
                return;
            fz_frame(&fz.want, 'F', s + at + hdr, (size_t)v);
        }
        at += hdr + (size_t)v;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    struct rill_varint_config c = {
        .fail_fast = data[0] & 1,
        .dec.keep_open_on_error = data[0] & 2,
        .max_frame_length = (size_t)data[1] * 8,
    };
    fz_reset();
    const struct rill_handler *hs[] = { &rill_varint_decoder, &fz_sink };
    void *args[] = { &c, NULL };
    rill_fuzz_run(hs, args, 2, data + 2, size - 2);
    ref_varint(data + 3, size - 3, &c);
    fz_check("fuzz_varint", !c.dec.keep_open_on_error);
    return 0;
}
