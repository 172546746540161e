/* Framing codecs (Netty's codec-base): decoders that cut a byte stream into
 * frames, and prependers that put a length in front of outbound frames.
 *
 * Every decoder here is built on the decoder base (decoder.h): it
 * cumulates input, emits each frame as a rill_buf that is a slice of the
 * bytes the transport read (never a copy), passes other messages through,
 * and follows the base's error rules: malformed input fails the stream
 * (rill_decoder_fail: the exception event carries the code and a text, the
 * channel closes unless dec.keep_open_on_error); a frame over its limit is
 * discarded as its bytes arrive (they are never cumulated) and reported
 * with rill_decoder_raise(RILL_ETOOLARGE), which closes the channel unless
 * dec.keep_open_on_error is set, in which case decoding goes on with the
 * next frame.
 *
 * Configuration: each handler takes a pointer to its config struct as the
 * handler arg of rill_pipeline_add_*(). The config is copied when the
 * handler is added, so it may be a temporary (it must only live until the
 * add call returns). A zero field means its documented default; a NULL
 * config means all defaults, where the handler has sensible ones. An
 * invalid config makes the add fail with -EINVAL.
 *
 * Defaults: when dec.max_cumulation is 0 and a frame limit needs more
 * cumulation than the base's default (1 MiB), the decoder raises its own
 * cumulation limit to fit one whole frame. An explicit dec.max_cumulation
 * is kept as given (frames that need more fail with RILL_ETOOLARGE).
 *
 * fail_fast (Netty's failFast, false by default here because a zeroed
 * config is the default): true reports a frame over its limit as soon as
 * the decoder knows it is too long; false reports it once the whole frame
 * has been discarded.
 *
 *     struct rill_length_field_config lf = {
 *         .length_field_size = 4, .initial_bytes_to_strip = 4,
 *         .max_frame_length = 64 * 1024,
 *     };
 *     rill_pipeline_add_last(pl, "framer", &rill_length_field_decoder, &lf);
 *     rill_pipeline_add_last(pl, "prepender", &rill_length_field_prepender, NULL);
 *
 * Thread: the handlers run on their channel's loop thread, as every
 * handler does; add them from that thread (or before the channel is
 * registered). */
#ifndef RILL_FRAMING_H
#define RILL_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/decoder.h"

struct rill_handler;

/* Default frame limit of the binary decoders (length field, varint). */
#define RILL_FRAME_DEFAULT_MAX ((size_t)1024 * 1024)
/* Default line limit of the line and delimiter decoders. */
#define RILL_LINE_DEFAULT_MAX ((size_t)8192)

/* ---- length field (Netty's LengthFieldBasedFrameDecoder) ----
 *
 * A frame is [length_field_offset bytes][length field][rest]; the whole
 * frame is
 *     length_field_offset + length_field_size + value + length_adjustment
 * bytes long (value: the field, unsigned). The decoder emits that frame
 * minus its first initial_bytes_to_strip bytes (a frame may be empty).
 *
 * Errors: a value over INT64_MAX, or a computed length that overflows, is
 * less than offset + size, or less than initial_bytes_to_strip fails the
 * stream with RILL_EDECODE. A whole frame longer than max_frame_length is
 * discarded and raised as RILL_ETOOLARGE (see fail_fast above). */
struct rill_length_field_config {
    struct rill_decoder_options dec;
    size_t max_frame_length;    /* whole frame before stripping; 0: RILL_FRAME_DEFAULT_MAX */
    size_t length_field_offset; /* bytes before the length field */
    unsigned length_field_size; /* 1, 2, 3, 4 or 8 bytes; 0: 4 */
    bool little_endian;         /* default big-endian (network order) */
    int64_t length_adjustment;  /* added to the value (negative: the value counts a header) */
    size_t initial_bytes_to_strip;
    bool fail_fast;
};

/* Handler arg: const struct rill_length_field_config * (NULL: a 4-byte
 * big-endian length at offset 0 counting the bytes after it, frames
 * emitted with their length field, 1 MiB limit). -EINVAL for a field size
 * other than 1/2/3/4/8, max_frame_length over INT64_MAX or below offset +
 * size, or initial_bytes_to_strip over max_frame_length. */
extern const struct rill_handler rill_length_field_decoder;

/* ---- length-field prepender (Netty's LengthFieldPrepender) ----
 *
 * Writes each outbound rill_buf as [length][payload]: length = payload
 * bytes + length_adjustment (+ length_field_size when
 * length_includes_field). The payload is not copied when it is large (it
 * becomes a component of a composite, see rill_encoder_append). Other
 * messages pass through.
 *
 * Errors: the write fails (the message released, nothing written, its
 * promise failed, or an exception event when it has none; see encoder.h)
 * with RILL_ETOOLARGE when the length does not fit the field, or -ERANGE
 * when it is negative. */
struct rill_length_prepender_config {
    unsigned length_field_size; /* 1, 2, 3, 4 or 8 bytes; 0: 4 */
    bool little_endian;
    int64_t length_adjustment;
    bool length_includes_field;
};

/* Handler arg: const struct rill_length_prepender_config * (NULL: a 4-byte
 * big-endian length of the payload alone). -EINVAL for a bad field size. */
extern const struct rill_handler rill_length_field_prepender;

/* ---- line (Netty's LineBasedFrameDecoder) ----
 *
 * A frame ends at "\n" or "\r\n". The limit counts the bytes before the
 * line end. A line over it is discarded up to its line end and raised as
 * RILL_ETOOLARGE (see fail_fast above). Bytes after the last line end when
 * the input ends are dropped. */
struct rill_line_config {
    struct rill_decoder_options dec;
    size_t max_length;   /* 0: RILL_LINE_DEFAULT_MAX */
    bool keep_delimiter; /* default: frames without their line end */
    bool fail_fast;
};

/* Handler arg: const struct rill_line_config * (NULL: all defaults). */
extern const struct rill_handler rill_line_decoder;

/* ---- delimiters (Netty's DelimiterBasedFrameDecoder) ----
 *
 * A frame ends at any of up to RILL_DELIMITERS_MAX delimiters. When
 * several occur, the one giving the shortest frame wins (on a tie, the one
 * listed first). A frame is cut only once no delimiter that would win can
 * still complete with bytes to come ("a#" with "##" listed before "#"
 * waits for the next byte), so frames never depend on how the input was
 * split into reads; when the input ends, what is left is decided as it is.
 * The limit counts the bytes before the delimiter; frames over it are
 * discarded up to their delimiter and raised as RILL_ETOOLARGE (see
 * fail_fast above). Bytes after the last delimiter when the input ends are
 * dropped. */
#define RILL_DELIMITERS_MAX    8
#define RILL_DELIMITER_MAX_LEN 32

struct rill_delimiter {
    const void *bytes; /* borrowed until the handler is added (copied then) */
    size_t len;        /* 1 .. RILL_DELIMITER_MAX_LEN; 0 ends the list */
};

/* An initializer from a string literal: .delimiters = { RILL_DELIMITER("\r\n") }. */
#define RILL_DELIMITER(lit)                                                                        \
    {                                                                                              \
        (lit), sizeof(lit) - 1                                                                     \
    }

struct rill_delimiter_config {
    struct rill_decoder_options dec;
    /* In order of preference on ties; the list ends at the first entry
     * with len 0 (or after RILL_DELIMITERS_MAX). */
    struct rill_delimiter delimiters[RILL_DELIMITERS_MAX];
    size_t max_frame_length; /* 0: RILL_LINE_DEFAULT_MAX */
    bool keep_delimiter;     /* default: frames without their delimiter */
    bool fail_fast;
};

/* Handler arg: const struct rill_delimiter_config * (required). -EINVAL
 * without delimiters, or for a delimiter with NULL bytes or longer than
 * RILL_DELIMITER_MAX_LEN. */
extern const struct rill_handler rill_delimiter_decoder;

/* ---- fixed length (Netty's FixedLengthFrameDecoder) ----
 *
 * Every frame is frame_length bytes. Bytes left over when the input ends
 * are dropped. */
struct rill_fixed_length_config {
    struct rill_decoder_options dec;
    size_t frame_length; /* > 0 */
};

/* Handler arg: const struct rill_fixed_length_config * (required). -EINVAL
 * for NULL or a frame_length of 0. */
extern const struct rill_handler rill_fixed_length_decoder;

/* ---- varint32 (Netty's ProtobufVarint32FrameDecoder and
 * ProtobufVarint32LengthFieldPrepender) ----
 *
 * A frame is a base-128 varint length (protobuf's encoding: 7 bits per
 * byte, least significant group first, high bit set on every byte but the
 * last; at most 5 bytes) followed by that many payload bytes. The decoder
 * emits the payload (possibly empty) without the length.
 *
 * Errors: a length of more than 5 bytes, or a value over INT32_MAX, fails
 * the stream with RILL_EDECODE. A payload over max_frame_length is
 * discarded and raised as RILL_ETOOLARGE (see fail_fast above). */
struct rill_varint_config {
    struct rill_decoder_options dec;
    size_t max_frame_length; /* payload bytes; 0: RILL_FRAME_DEFAULT_MAX */
    bool fail_fast;
};

/* Handler arg: const struct rill_varint_config * (NULL: all defaults). */
extern const struct rill_handler rill_varint_decoder;

/* Writes each outbound rill_buf as [varint length][payload] (payload not
 * copied when large); other messages pass through. A payload over
 * INT32_MAX bytes fails the write with RILL_ETOOLARGE. Handler arg:
 * unused (NULL). */
extern const struct rill_handler rill_varint_prepender;

#endif /* RILL_FRAMING_H */
