/* Reading a composite buffer against a flat buffer holding the same 64 KiB:
 * as 16 components of 4 KiB and as 1024 components of 64 B. Measures
 * sequential read_u32_be over all bytes, read_bytes in 1 KiB chunks,
 * index_of a byte near the end, find of a 4-byte needle near the end
 * (straddling a 64 B component boundary) and iovec export; prints ns per
 * call, GB/s where bytes are touched, and the composite/flat time ratio.
 * Each figure is the median of 9 repetitions of a ~20 ms timed loop; the
 * repetitions alternate between the three buffers.
 *
 * Build Release and run pinned to one CPU (see BENCHMARKING notes: the two
 * vCPUs disturb each other):
 *     cmake -S . -B build-rel -G Ninja -DCMAKE_BUILD_TYPE=Release
 *     ninja -C build-rel bench_composite
 *     taskset -c 0 build-rel/bench/bench_composite
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "rill/buf.h"
#include "rill/clock.h"
#include "rill/composite.h"

#define TOTAL      (64 * 1024)
#define REPS       9
#define RUN_NS     (20 * RILL_NS_PER_MS)
#define MARK_POS   (TOTAL - 100)
#define NEEDLE_POS (TOTAL - 66) /* 65470 % 64 == 62: straddles a 64 B boundary */

static const uint8_t needle[4] = { 0xFE, 0xFD, 0xFC, 0xFB };
static volatile uint64_t sink;

typedef uint64_t op_fn(struct rill_buf *b);

static uint64_t op_read_u32(struct rill_buf *b)
{
    uint64_t sum = 0;
    uint32_t v;
    rill_buf_set_reader_index(b, 0);
    while (rill_buf_read_u32_be(b, &v) == 0)
        sum += v;
    return sum;
}

static uint64_t op_read_bytes(struct rill_buf *b)
{
    static uint8_t chunk[1024];
    uint64_t sum = 0;
    rill_buf_set_reader_index(b, 0);
    while (rill_buf_read_bytes(b, chunk, sizeof(chunk)) == 0)
        sum += chunk[17];
    return sum;
}

static uint64_t op_index_of(struct rill_buf *b)
{
    return (uint64_t)rill_buf_index_of(b, 0, TOTAL, 0xFF);
}

static uint64_t op_find(struct rill_buf *b)
{
    return (uint64_t)rill_buf_find(b, 0, TOTAL, needle, sizeof(needle));
}

static uint64_t op_iovec(struct rill_buf *b)
{
    static struct iovec iov[1024];
    size_t covered;
    int n = rill_buf_iovec(b, 0, TOTAL, iov, 1024, &covered);
    return (uint64_t)n + covered;
}

static struct {
    const char *name;
    op_fn *fn;
    unsigned calls; /* accessor calls per op (for ns per call) */
    size_t bytes;   /* bytes touched per op (0: not a data rate) */
} ops[] = {
    { "read_u32_be x16384", op_read_u32, TOTAL / 4, TOTAL },
    { "read_bytes 1 KiB x64", op_read_bytes, TOTAL / 1024, TOTAL },
    { "index_of (byte at end)", op_index_of, 1, MARK_POS },
    { "find 4-byte needle", op_find, 1, NEEDLE_POS },
    { "iovec export 64 KiB", op_iovec, 1, 0 },
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Iterations of @fn on @b that take about RUN_NS. */
static uint64_t calibrate(op_fn *fn, struct rill_buf *b)
{
    for (uint64_t iters = 1;; iters *= 2) {
        uint64_t t0 = rill_clock_now_ns();
        for (uint64_t i = 0; i < iters; i++)
            sink += fn(b);
        uint64_t dt = rill_clock_now_ns() - t0;
        if (dt > RUN_NS / 4)
            return iters * RUN_NS / dt + 1;
    }
}

/* Median ns per op of @fn on each of the @n buffers; the repetitions
 * alternate between the buffers (A B C A B C ...) so drift in the machine's
 * speed hits all of them alike. */
static void measure(op_fn *fn, struct rill_buf **bufs, int n, double *ns)
{
    uint64_t iters[8], per[8][REPS];
    for (int k = 0; k < n; k++)
        iters[k] = calibrate(fn, bufs[k]);
    for (int r = 0; r < REPS; r++)
        for (int k = 0; k < n; k++) {
            uint64_t t0 = rill_clock_now_ns();
            for (uint64_t i = 0; i < iters[k]; i++)
                sink += fn(bufs[k]);
            per[k][r] = (rill_clock_now_ns() - t0) * 1000 / iters[k]; /* ps per op */
        }
    for (int k = 0; k < n; k++) {
        qsort(per[k], REPS, sizeof(per[k][0]), cmp_u64);
        ns[k] = per[k][REPS / 2] / 1000.0;
    }
}

static struct rill_buf *composite_of(const uint8_t *data, size_t piece)
{
    struct rill_buf *c, *p;
    if (rill_buf_composite_new(&c))
        abort();
    for (size_t off = 0; off < TOTAL; off += piece) {
        if (rill_buf_copy_from(data + off, piece, &p) || rill_buf_composite_add(c, p))
            abort();
    }
    return c;
}

int main(void)
{
    static uint8_t data[TOTAL];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < TOTAL; i++) { /* bytes 0..127: the markers never occur */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (uint8_t)(x & 0x7F);
    }
    data[MARK_POS] = 0xFF;
    memcpy(data + NEEDLE_POS, needle, sizeof(needle));

    struct rill_buf *flat, *c4k = composite_of(data, 4096), *c64 = composite_of(data, 64);
    if (rill_buf_copy_from(data, TOTAL, &flat))
        abort();
    struct rill_buf *bufs[3] = { flat, c4k, c64 };
    for (int k = 1; k < 3; k++) /* same answers everywhere */
        for (unsigned o = 0; o < sizeof(ops) / sizeof(ops[0]); o++)
            if (o != 4 && ops[o].fn(bufs[k]) != ops[o].fn(flat))
                abort();

    printf("rill composite vs flat, 64 KiB (median of %d runs; ns per call, GB/s of bytes "
           "touched)\n\n",
           REPS);
    printf("| operation | flat ns/call | flat GB/s | 16x4KiB ns/call | GB/s | ratio | "
           "1024x64B ns/call | GB/s | ratio |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (unsigned o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
        double ns[3];
        measure(ops[o].fn, bufs, 3, ns);
        printf("| %s |", ops[o].name);
        for (int k = 0; k < 3; k++) {
            double per_call = ns[k] / ops[o].calls;
            printf(" %.2f |", per_call);
            if (ops[o].bytes)
                printf(" %.2f |", ops[o].bytes / ns[k]);
            else
                printf(" - |");
            if (k)
                printf(" %.2fx |", ns[k] / ns[0]);
        }
        printf("\n");
    }
    for (int k = 0; k < 3; k++)
        rill_buf_release(bufs[k]);
    return 0;
}
