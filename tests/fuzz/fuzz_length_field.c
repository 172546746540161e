/* libFuzzer target for the length-field decoder (rill/framing.h). Input:
 *
 *   byte 0   bits 0-2 the field size (1, 2, 3, 4, 8 by the value mod 5),
 *            bit 3 little-endian, bit 4 fail_fast, bit 5 keep_open_on_error,
 *            bits 6-7 what to strip: nothing, the header up to the end of
 *            the field, the low 4 bits of byte 1, or the bytes before the
 *            field
 *   byte 1   bits 4-6 length_field_offset
 *   byte 2   length_adjustment (signed)
 *   byte 3   max_frame_length / 4 (0: the default, 1 MiB); raised to fit
 *            the header and the bytes to strip
 *   byte 4   how the harness cuts the rest into reads (fuzz.h)
 *   rest     the stream
 *
 * Oracle (framing_oracle.h): the frames and exceptions equal those of a
 * naive reference that sees the whole stream at once and does its length
 * arithmetic in 128 bits, whatever the cuts. */
#include <stdbool.h>
#include <stdint.h>

#include "framing_oracle.h"
#include "fuzz.h"
#include "rill/error.h"
#include "rill/framing.h"

static void ref_length_field(const uint8_t *s, size_t len, const struct rill_length_field_config *c)
{
    size_t max = c->max_frame_length ? c->max_frame_length : RILL_FRAME_DEFAULT_MAX;
    size_t end = c->length_field_offset + c->length_field_size;
    bool keep_open = c->dec.keep_open_on_error;
    size_t at = 0;
    while (len - at >= end) {
        const uint8_t *f = s + at + c->length_field_offset;
        unsigned __int128 v = 0;
        for (unsigned i = 0; i < c->length_field_size; i++)
            v = v << 8 | f[c->little_endian ? c->length_field_size - 1 - i : i];
        __int128 total = (__int128)v + c->length_adjustment + (__int128)end;
        if (v > INT64_MAX || total > INT64_MAX || total < (__int128)end) {
            fz_error(&fz.want, RILL_EDECODE);
            return;
        }
        size_t left = len - at;
        if (total > (__int128)max) {
            /* Reported when seen (fail-fast) or once skipped. */
            if (c->fail_fast || total <= (__int128)left)
                fz_error(&fz.want, RILL_ETOOLARGE);
            if (total > (__int128)left || !keep_open)
                return;
            at += (size_t)total;
            continue;
        }
        if (total < (__int128)c->initial_bytes_to_strip) {
            fz_error(&fz.want, RILL_EDECODE);
            return;
        }
        if (total > (__int128)left)
            return;
        size_t strip = c->initial_bytes_to_strip;
        fz_frame(&fz.want, 'F', s + at + strip, (size_t)total - strip);
        at += (size_t)total;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned sizes[] = { 1, 2, 3, 4, 8 };
    if (size < 5)
        return 0;
    struct rill_length_field_config c = {
        .length_field_size = sizes[(data[0] & 7) % 5],
        .little_endian = data[0] & 8,
        .fail_fast = data[0] & 16,
        .dec.keep_open_on_error = data[0] & 32,
        .length_field_offset = (data[1] >> 4) & 7,
        .length_adjustment = (int8_t)data[2],
        .max_frame_length = (size_t)data[3] * 4,
    };
    size_t end = c.length_field_offset + c.length_field_size;
    switch (data[0] >> 6) {
    case 1:
        c.initial_bytes_to_strip = end;
        break;
    case 2:
        c.initial_bytes_to_strip = data[1] & 15;
        break;
    case 3:
        c.initial_bytes_to_strip = c.length_field_offset;
        break;
    }
    if (c.max_frame_length && c.max_frame_length < end)
        c.max_frame_length = end;
    if (c.max_frame_length && c.max_frame_length < c.initial_bytes_to_strip)
        c.max_frame_length = c.initial_bytes_to_strip;
    fz_reset();
    const struct rill_handler *hs[] = { &rill_length_field_decoder, &fz_sink };
    void *args[] = { &c, NULL };
    rill_fuzz_run(hs, args, 2, data + 4, size - 4);
    ref_length_field(data + 5, size - 5, &c);
    fz_check("fuzz_length_field", !c.dec.keep_open_on_error);
    return 0;
}
