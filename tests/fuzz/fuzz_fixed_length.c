/* libFuzzer target for the fixed-length decoder (rill/framing.h). Input:
 *
 *   byte 0   frame_length - 1
 *   byte 1   how the harness cuts the rest into reads (fuzz.h)
 *   rest     the stream
 *
 * Oracle (framing_oracle.h): the stream's whole frames, in order, whatever
 * the cuts; the bytes after the last whole frame are dropped silently. */
#include <stdint.h>

#include "framing_oracle.h"
#include "fuzz.h"
#include "rill/framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct rill_fixed_length_config c = { .frame_length = (size_t)data[0] + 1 };
    fz_reset();
    const struct rill_handler *hs[] = { &rill_fixed_length_decoder, &fz_sink };
    void *args[] = { &c, NULL };
    rill_fuzz_run(hs, args, 2, data + 1, size - 1);
    const uint8_t *s = data + 2;
    for (size_t at = 0; size - 2 - at >= c.frame_length; at += c.frame_length)
        fz_frame(&fz.want, 'F', s + at, c.frame_length);
    fz_check("fuzz_fixed_length", false);
    return 0;
}
