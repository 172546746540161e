/* Private to codec/resp: the codec's per-connection state and the parser
 * shared by the decode step (resp_decode.c) and the handler (resp_codec.c). */
#ifndef RILL_CODEC_RESP_INTERNAL_H
#define RILL_CODEC_RESP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/decoder.h"
#include "rill/resp.h"

/* An aggregate being filled: its node and the children still to come. */
struct rill__resp_frame {
    uint32_t idx;
    uint32_t left;
};

/* Parse state kept across reads: a frame that arrives in pieces is never
 * parsed again from its start. Offsets are relative to the cumulation's
 * reader index, which does not move until the frame is complete. */
struct rill__resp_parser {
    struct rill_resp_val *vals; /* nodes so far; strings hold offsets until the end */
    uint32_t nvals, avals;
    struct rill__resp_frame *stack;
    uint32_t depth, astack;
    size_t off;  /* bytes of the frame parsed so far */
    size_t scan; /* where the search for the end of the current line resumes */
    size_t need; /* P_BULK: bytes the payload (with its CRLF) ends at */
    uint8_t state;
    bool strings; /* some node points into the input */
    char *line;   /* inline commands: scratch for the split arguments */
    size_t aline;
};

struct rill__resp_codec {
    struct rill_decoder dec; /* first: the base finds it at the start of the state */
    struct rill_resp_config cfg;
    struct rill__resp_parser ps;
    struct rill_buf *out; /* replies not yet written (rill_resp_out) */
    int proto;
    uint32_t magic;
};

#define RILL__RESP_MAGIC 0x52455350u /* "RESP": marks a codec context */

/* The decode step and the parser's cleanup (resp_decode.c). */
int rill__resp_decode(struct rill_decoder *d, struct rill_buf *in);
void rill__resp_parser_free(struct rill__resp_parser *ps);

/* Write the pending replies toward the head, and flush when asked
 * (resp_codec.c). */
void rill__resp_write_out(struct rill__resp_codec *c, bool flush);

/* A message of @nvals nodes and @nbytes of storage (resp_value.c). */
int rill__resp_alloc(size_t nvals, size_t nbytes, struct rill_resp **out);

/* 0 when aggregate @v's count fits its type (a map holds pairs, an
 * attribute pairs and then the value it annotates; arrays, sets and
 * pushes anything), -EINVAL for an odd count or a type that is not an
 * aggregate (resp_value.c). */
int rill__resp_agg_check(const struct rill_resp_val *v);

#endif
