/* libFuzzer target for the line decoder, optionally followed by the string
 * decoder with UTF-8 validation (rill/framing.h, rill/string_codec.h).
 * Input:
 *
 *   byte 0   bit 0 keep_delimiter, bit 1 fail_fast, bit 2 keep_open_on_error,
 *            bit 3 a string decoder (validate_utf8) after the line decoder
 *   byte 1   max_length - 1 (255: the default, 8192)
 *   byte 2   how the harness cuts the rest into reads (fuzz.h)
 *   rest     the stream
 *
 * Oracle (framing_oracle.h): the frames, strings and exceptions equal those
 * of a naive reference over the whole stream, whatever the cuts; the UTF-8
 * check is compared with a reference that decodes code points. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "framing_oracle.h"
#include "fuzz.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/string_codec.h"

/* True when @p holds valid UTF-8: decode each code point and check it is
 * in range, not a surrogate, and in its shortest form. */
static bool ref_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], min;
        size_t more;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            more = 1, c &= 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2, c &= 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            more = 3, c &= 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (p[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}

/* Deliver a frame as the pipeline should: through the string decoder when
 * there is one. Returns false when that decoder rejects it. */
static bool ref_emit(const uint8_t *p, size_t n, bool strings)
{
    if (!strings) {
        fz_frame(&fz.want, 'F', p, n);
        return true;
    }
    if (!ref_utf8(p, n)) {
        fz_error(&fz.want, RILL_EDECODE);
        return false;
    }
    fz_frame(&fz.want, 'S', p, n);
    return true;
}

static void ref_lines(const uint8_t *s, size_t len, const struct rill_line_config *c, bool strings)
{
    size_t max = c->max_length ? c->max_length : RILL_LINE_DEFAULT_MAX;
    bool keep_open = c->dec.keep_open_on_error;
    size_t at = 0;
    while (at < len) {
        const uint8_t *lf = memchr(s + at, '\n', len - at);
        if (!lf) {
            size_t rest = len - at;
            if (s[len - 1] == '\r')
                rest--;
            if (rest > max && c->fail_fast)
                fz_error(&fz.want, RILL_ETOOLARGE);
            return;
        }
        size_t end = (size_t)(lf - s), n = end - at, dl = 1;
        if (n && s[end - 1] == '\r') {
            n--;
            dl = 2;
        }
        if (n > max) {
            fz_error(&fz.want, RILL_ETOOLARGE);
            if (!keep_open)
                return;
        } else if (!ref_emit(s + at, c->keep_delimiter ? n + dl : n, strings) && !keep_open) {
            return;
        }
        at = end + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    struct rill_line_config c = {
        .keep_delimiter = data[0] & 1,
        .fail_fast = data[0] & 2,
        .dec.keep_open_on_error = data[0] & 4,
        .max_length = data[1] == 255 ? 0 : (size_t)data[1] + 1,
    };
    bool strings = data[0] & 8;
    struct rill_string_decoder_config sc = { .validate_utf8 = true,
                                             .keep_open_on_error = c.dec.keep_open_on_error };
    fz_reset();
    const struct rill_handler *hs[] = { &rill_line_decoder, &rill_string_decoder, &fz_sink };
    void *args[] = { &c, &sc, NULL };
    if (strings)
        rill_fuzz_run(hs, args, 3, data + 2, size - 2);
    else
        rill_fuzz_run((const struct rill_handler *const[]){ hs[0], hs[2] },
                      (void *const[]){ args[0], NULL }, 2, data + 2, size - 2);
    ref_lines(data + 3, size - 3, &c, strings);
    fz_check("fuzz_line", !c.dec.keep_open_on_error);
    return 0;
}
