/* Shared by the libFuzzer targets in this folder (fuzz_<name>.c, each
 * defining LLVMFuzzerTestOneInput). Built only with -DRILL_FUZZ=ON and
 * clang (-fsanitize=fuzzer,address,undefined); see scripts/fuzz.sh.
 *
 * The leak detector runs in simple mode: after every input no rill message
 * may be alive, else the target aborts (libFuzzer records the input as a
 * crash). ASan's leak checker catches plain malloc leaks. */
#ifndef RILL_FUZZ_H
#define RILL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

struct rill_embedded;
struct rill_handler;

/* Run one input through a fresh embedded channel whose pipeline holds the
 * @n handlers (@h[i] with config @args[i]; configs are copied by their
 * handlers' added()). The first byte of @data picks how the rest is cut
 * into reads (one piece, two pieces at a derived offset, byte by byte, or
 * pieces of 1..16 bytes), each piece in a buffer right before an
 * unreadable page. Everything that reaches the tail or the head is
 * released, the channel is finished and freed, and the process aborts
 * when a message outlives it. */
void rill_fuzz_run(const struct rill_handler *const *h, void *const *args, size_t n,
                   const uint8_t *data, size_t size);

/* rill_fuzz_run with one handler. */
void rill_fuzz_run1(const struct rill_handler *h, void *arg, const uint8_t *data, size_t size);

#endif
