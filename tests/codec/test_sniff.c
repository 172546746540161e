/* Tests for the port-unification sniffer (include/rill/sniff.h) through the
 * embedded channel, with a select callback that knows two toy protocols:
 *
 *   "RILL..."  binary: a capture handler gets the raw bytes
 *   "GET ..."  text: a line decoder, then a capture handler gets the lines
 *
 * Anything else is refused with the test's error code. Every way of cutting
 * the first bytes into reads picks the same protocol after the same select
 * calls, and the new handlers get every byte, in order; "need more" waits
 * for exactly the bytes asked for; an error closes the channel with its
 * code and a text naming the bytes; the end of input before a choice; the
 * 64-byte limit; bad configs. The handlers installed see active once,
 * before the bytes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/buf.h"
#include "rill/channel.h"
#include "rill/embedded.h"
#include "rill/error.h"
#include "rill/framing.h"
#include "rill/pipeline.h"
#include "rill/sniff.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(sniff, .timeout = 30, .fini = rill_test_no_leaks);

/* ---- what the handlers saw ---- */

enum mode { PICK, ALWAYS_MORE };

static struct {
    enum mode mode;
    int err;         /* what select returns for foreign bytes */
    size_t lens[80]; /* @len of each select call */
    int calls;
    char proto[16]; /* the protocol installed */
    char got[512];  /* bytes the capture handler received ('|' after each line) */
    size_t ngot;
    int reads, read_completes;
    int actives;           /* active events the capture handler saw */
    size_t ngot_at_active; /* bytes it had then */
} S;

static void reset(void)
{
    memset(&S, 0, sizeof(S));
    S.err = RILL_EPROTO;
}

struct cap_arg {
    bool lines; /* messages are lines: mark the end of each */
};

static const struct cap_arg CAP_RAW = { false }, CAP_LINES = { true };

static void cap_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    const struct cap_arg *a = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    cr_assert_not_null(b, "only buffers arrive");
    size_t n = rill_buf_readable(b);
    cr_assert_lt(S.ngot + n + 1, sizeof(S.got));
    cr_assert_eq(rill_buf_get_bytes(b, rill_buf_reader_index(b), S.got + S.ngot, n), 0);
    S.ngot += n;
    if (a->lines)
        S.got[S.ngot++] = '|';
    S.reads++;
    rill_msg_release(msg);
}

static void cap_read_complete(struct rill_ctx *ctx)
{
    S.read_completes++;
}

static void cap_active(struct rill_ctx *ctx)
{
    S.actives++;
    S.ngot_at_active = S.ngot;
    rill_ctx_fire_active(ctx);
}

static const struct rill_handler capture = {
    .name = "capture",
    .active = cap_active,
    .read = cap_read,
    .read_complete = cap_read_complete,
};

static bool is_prefix(const uint8_t *head, size_t len, const char *lit)
{
    return len <= strlen(lit) && memcmp(head, lit, len) == 0;
}

static int pick(struct rill_pipeline *pl, const uint8_t *head, size_t len, void *arg)
{
    cr_assert_eq(arg, &S, "the config's arg is passed");
    cr_assert_lt(S.calls, 80);
    S.lens[S.calls++] = len;
    if (S.mode == ALWAYS_MORE)
        return (int)len + 1;
    if (len >= 4 && memcmp(head, "RILL", 4) == 0) {
        snprintf(S.proto, sizeof(S.proto), "bin");
        return rill_pipeline_add_after(pl, "sniff", "bin", &capture, (void *)&CAP_RAW);
    }
    if (len >= 4 && memcmp(head, "GET ", 4) == 0) {
        snprintf(S.proto, sizeof(S.proto), "text");
        int rc = rill_pipeline_add_after(pl, "sniff", "lines", &rill_line_decoder, NULL);
        return rc ? rc : rill_pipeline_add_after(pl, "lines", "cap", &capture, (void *)&CAP_LINES);
    }
    if (is_prefix(head, len, "RILL"))
        return 4; /* jump to the whole magic */
    if (is_prefix(head, len, "GET "))
        return (int)len + 1; /* one byte at a time */
    return S.err;
}

static struct rill_embedded *sniffer(size_t bytes)
{
    struct rill_sniff_config c = { .select = pick, .arg = &S, .bytes = bytes };
    struct rill_embedded_handler h = { "sniff", &rill_sniff_handler, &c };
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(&h, 1, &e), 0);
    memset(&c, 0xff, sizeof(c)); /* copied in added(): a temporary is fine */
    return e;
}

static void expect_names(struct rill_embedded *e, const char *const *want, int n, const char *what)
{
    const char *names[8];
    int got = rill_pipeline_names(rill_embedded_pipeline(e), names, 8);
    cr_assert_eq(got, n, "%s: %d handlers", what, got);
    for (int i = 0; i < n; i++)
        cr_assert_str_eq(names[i], want[i], "%s: handler %d", what, i);
}

/* ---- the inputs ---- */

static const uint8_t BIN[] = { 'R', 'I', 'L', 'L', 1, 0, 0, 0, 0, 0,    0,    10, 4,
                               0,   0,   0,   0,   0, 0, 0, 0, 7, 0xff, '\n', 0 };
static const char TEXT[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\nsecond line\n";
static const char TEXT_LINES[] = "GET /health HTTP/1.1|Host: x||second line|";

struct proto_case {
    const void *in;
    size_t len;
    const char *proto;
    const void *got;
    size_t ngot;
    const char *const *names;
    int nnames;
    const size_t *lens; /* select calls with bytes = 1 */
    int calls;
};

static const char *const BIN_NAMES[] = { "bin" };
static const char *const TEXT_NAMES[] = { "lines", "cap" };
static const size_t BIN_LENS[] = { 1, 4 };
static const size_t TEXT_LENS[] = { 1, 2, 3, 4 };

static const struct proto_case CASES[] = {
    { BIN, sizeof(BIN), "bin", BIN, sizeof(BIN), BIN_NAMES, 1, BIN_LENS, 2 },
    { TEXT, sizeof(TEXT) - 1, "text", TEXT_LINES, sizeof(TEXT_LINES) - 1, TEXT_NAMES, 2, TEXT_LENS,
      4 },
};

static void expect_chosen(struct rill_embedded *e, const struct proto_case *c, const char *what)
{
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0, "%s: no exception", what);
    cr_assert(rill_embedded_is_open(e), "%s: still open", what);
    cr_assert_str_eq(S.proto, c->proto, "%s: protocol", what);
    cr_assert_eq(S.calls, c->calls, "%s: %d select calls", what, S.calls);
    for (int i = 0; i < c->calls; i++)
        cr_assert_eq(S.lens[i], c->lens[i], "%s: call %d saw %zu bytes", what, i, S.lens[i]);
    cr_assert_eq(S.ngot, c->ngot, "%s: %zu bytes arrived", what, S.ngot);
    cr_assert(memcmp(S.got, c->got, c->ngot) == 0, "%s: bytes intact and in order", what);
    cr_assert_geq(S.read_completes, 1, "%s: read_complete follows the hand-over", what);
    cr_assert_eq(S.actives, 1, "%s: the new handlers see active once", what);
    cr_assert_eq(S.ngot_at_active, 0, "%s: active comes before the bytes", what);
    cr_assert_null(rill_pipeline_get(rill_embedded_pipeline(e), "sniff"), "%s: sniffer gone", what);
    expect_names(e, c->names, c->nnames, what);
    cr_assert_eq(rill_embedded_inbound_count(e), 0, "%s: nothing reached the tail", what);
}

static void run_cuts(const struct proto_case *c, const size_t *cuts, size_t ncuts, const char *what)
{
    reset();
    struct rill_embedded *e = sniffer(1);
    rill_test_feed_cuts(e, c->in, c->len, cuts, ncuts);
    expect_chosen(e, c, what);
    rill_embedded_free(e);
}

Test(sniff, every_split_of_the_first_bytes_picks_the_protocol_and_hands_over_intact)
{
    for (size_t k = 0; k < sizeof(CASES) / sizeof(CASES[0]); k++) {
        const struct proto_case *c = &CASES[k];
        char what[64];
        run_cuts(c, NULL, 0, "whole");
        for (size_t a = 1; a < c->len; a++) {
            snprintf(what, sizeof(what), "%s cut at %zu", c->proto, a);
            run_cuts(c, &a, 1, what);
            for (size_t b = a + 1; b < 12; b++) {
                size_t cuts[2] = { a, b };
                snprintf(what, sizeof(what), "%s cut at %zu, %zu", c->proto, a, b);
                run_cuts(c, cuts, 2, what);
            }
        }
        reset();
        struct rill_embedded *e = sniffer(1);
        rill_test_feed_bytes(e, c->in, c->len);
        snprintf(what, sizeof(what), "%s byte by byte", c->proto);
        expect_chosen(e, c, what);
        rill_embedded_free(e);
    }
}

Test(sniff, the_first_call_waits_for_the_configured_bytes)
{
    static const size_t eight[] = { 8 };
    for (size_t k = 0; k < sizeof(CASES) / sizeof(CASES[0]); k++) {
        struct proto_case c = CASES[k];
        c.lens = eight;
        c.calls = 1;
        for (size_t a = 0; a < 12; a++) {
            reset();
            struct rill_embedded *e = sniffer(0); /* the default: 8 */
            rill_test_feed_split(e, c.in, c.len, a);
            expect_chosen(e, &c, c.proto);
            rill_embedded_free(e);
        }
    }
}

Test(sniff, need_more_waits_for_exactly_the_bytes_asked_for)
{
    reset();
    struct rill_embedded *e = sniffer(1);
    cr_assert_eq(rill_test_feed(e, "R", 1), 0);
    cr_assert_eq(S.calls, 1);
    cr_assert_eq(rill_test_feed(e, "I", 1), 0);
    cr_assert_eq(rill_test_feed(e, "L", 1), 0);
    cr_assert_eq(S.calls, 1, "not called again before 4 bytes are held");
    cr_assert_not_null(rill_pipeline_get(rill_embedded_pipeline(e), "sniff"));
    cr_assert_eq(S.ngot, 0, "nothing is passed on before the choice");
    cr_assert(rill_embedded_is_open(e));
    rill_test_feed(e, BIN + 3, sizeof(BIN) - 3);
    expect_chosen(e, &CASES[0], "RIL + the rest");
    /* Later reads go straight to the protocol's handlers. */
    rill_test_feed(e, "more", 4);
    cr_assert_eq(S.ngot, sizeof(BIN) + 4);
    cr_assert(memcmp(S.got + sizeof(BIN), "more", 4) == 0);
    cr_assert_eq(S.calls, 2);
    rill_embedded_free(e);
}

static void expect_refused(struct rill_embedded *e, int err, const char *text, const char *what)
{
    const char *why = NULL;
    cr_assert_eq(rill_embedded_take_exception(e, &why), err, "%s: the exception carries the code",
                 what);
    cr_assert_not_null(why, "%s", what);
    cr_assert_not_null(strstr(why, text), "%s: text '%s'", what, why);
    cr_assert_not(rill_embedded_is_open(e), "%s: closed", what);
    cr_assert_eq(rill_channel_close_reason(rill_embedded_channel(e)), err, "%s: close reason",
                 what);
    cr_assert_eq(S.ngot, 0, "%s: nothing passed on", what);
    cr_assert_eq(rill_embedded_inbound_count(e), 0, "%s", what);
}

Test(sniff, foreign_bytes_close_the_channel_with_the_select_error)
{
    static const uint8_t tls[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc };
    for (size_t a = 0; a < sizeof(tls); a++) {
        reset();
        struct rill_embedded *e = sniffer(1);
        rill_test_feed_split(e, tls, sizeof(tls), a);
        expect_refused(e, RILL_EPROTO, "no protocol for the first 1 bytes \"\\x16\"", "tls");
        cr_assert_eq(S.calls, 1);
        rill_embedded_free(e);
    }
    /* Refused after a few bytes that looked right, with the callback's own
     * code. */
    reset();
    S.err = -EACCES;
    struct rill_embedded *e = sniffer(1);
    rill_test_feed_bytes(e, "GEX /", 5);
    expect_refused(e, -EACCES, "first 3 bytes \"GEX\"", "GEX");
    cr_assert_eq(S.calls, 3);
    cr_assert(rill_test_feed(e, "more", 4) < 0, "later input is refused");
    rill_embedded_free(e);
}

Test(sniff, no_protocol_in_the_first_64_bytes_fails)
{
    reset();
    S.mode = ALWAYS_MORE;
    struct rill_embedded *e = sniffer(1);
    char in[100];
    memset(in, 'z', sizeof(in));
    rill_test_feed(e, in, sizeof(in));
    expect_refused(e, RILL_EPROTO, "no protocol recognized in the first 64 bytes", "limit");
    cr_assert_eq(S.calls, RILL_SNIFF_MAX_BYTES);
    cr_assert_eq(S.lens[RILL_SNIFF_MAX_BYTES - 1], RILL_SNIFF_MAX_BYTES);
    rill_embedded_free(e);
}

static void shutdown_input(struct rill_embedded *e)
{
    struct rill_event ev = { .type = RILL_EVENT_INPUT_SHUTDOWN };
    rill_pipeline_fire_user_event(rill_embedded_pipeline(e), &ev);
    rill_embedded_run_pending(e);
}

Test(sniff, input_ending_before_a_choice)
{
    /* Too few bytes for the callback to decide: refused. */
    reset();
    struct rill_embedded *e = sniffer(1);
    rill_test_feed(e, "RI", 2);
    cr_assert_eq(S.calls, 1);
    shutdown_input(e);
    expect_refused(e, RILL_EPROTO, "input ended after 2 bytes \"RI\"", "RI then EOF");
    cr_assert_eq(S.calls, 2);
    cr_assert_eq(S.lens[1], 2, "the callback sees what there is");
    rill_embedded_free(e);

    /* Fewer bytes than the first call waits for, but enough to choose:
     * chosen at the end, and the new handlers get them (and the end). */
    reset();
    e = sniffer(8);
    rill_test_feed(e, "GET /\n", 6);
    cr_assert_eq(S.calls, 0);
    shutdown_input(e);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    cr_assert_str_eq(S.proto, "text");
    cr_assert_eq(S.calls, 1);
    cr_assert_eq(S.lens[0], 6);
    cr_assert_eq(S.ngot, 6);
    cr_assert(memcmp(S.got, "GET /|", 6) == 0);
    cr_assert_eq(S.actives, 1, "the output is still open: active");
    rill_embedded_free(e);

    /* A peer that sends nothing: the callback is not called. */
    reset();
    e = sniffer(1);
    rill_embedded_close(e);
    cr_assert_eq(S.calls, 0);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), 0);
    cr_assert_eq(rill_channel_close_reason(rill_embedded_channel(e)), 0);
    rill_embedded_free(e);

    /* Closed with part of a magic: refused, nothing leaks. */
    reset();
    e = sniffer(1);
    rill_test_feed(e, "RIL", 3);
    rill_embedded_close(e);
    cr_assert_eq(rill_embedded_take_exception(e, NULL), RILL_EPROTO);
    cr_assert_eq(S.calls, 2);
    rill_embedded_free(e);
}

Test(sniff, bad_configs_are_refused)
{
    struct rill_embedded *e = NULL;
    cr_assert_eq(rill_embedded_new(NULL, 0, &e), 0);
    struct rill_pipeline *pl = rill_embedded_pipeline(e);
    cr_assert_eq(rill_pipeline_add_last(pl, "s", &rill_sniff_handler, NULL), -EINVAL);
    struct rill_sniff_config c = { .select = NULL };
    cr_assert_eq(rill_pipeline_add_last(pl, "s", &rill_sniff_handler, &c), -EINVAL);
    c.select = pick;
    c.bytes = RILL_SNIFF_MAX_BYTES + 1;
    cr_assert_eq(rill_pipeline_add_last(pl, "s", &rill_sniff_handler, &c), -EINVAL);
    c.bytes = RILL_SNIFF_MAX_BYTES;
    cr_assert_eq(rill_pipeline_add_last(pl, "s", &rill_sniff_handler, &c), 0);
    rill_embedded_free(e);
}
