/* kv_server's command semantics and reply ordering through embedded
 * channels (the example's sources are compiled into this test, h2o
 * style). Shard 0 lives on the connection's loop; with two shards, shard 1
 * lives on a second embedded loop whose tasks the test runs by hand, so a
 * command for a remote key, its reply, and the order of replies around it
 * are stepped through deterministically. Expiry runs on the manual clock. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/kv_server/commands.c"
#include "examples/kv_server/conn.c"
#include "examples/kv_server/store.c"
#include "rill/embedded.h"
#include "rill/timer.h"
#include "util/feed.h"
#include "util/testutil.h"

TestSuite(resp_kv, .timeout = 30, .fini = rill_test_no_leaks);

static const struct rill_resp_config kv_codec_cfg = { .mode = RILL_RESP_MODE_COMMANDS };

struct fixture {
    struct kv_server srv;
    struct kv_shard shards[2];
    struct rill_embedded *conn, *other;
};

static void setup(struct fixture *f, int nshards)
{
    memset(f, 0, sizeof(*f));
    cr_assert_eq(rill_embedded_new(NULL, 0, &f->conn), 0);
    if (nshards == 2)
        cr_assert_eq(rill_embedded_new(NULL, 0, &f->other), 0);
    f->srv.nshards = nshards;
    f->srv.shards = f->shards;
    for (int i = 0; i < nshards; i++) {
        f->shards[i].idx = i;
        f->shards[i].srv = &f->srv;
        f->shards[i].loop = rill_embedded_loop(i == 0 ? f->conn : f->other);
        cr_assert_eq(kv_table_init(&f->shards[i].t), 0);
    }
    struct rill_pipeline *pl = rill_embedded_pipeline(f->conn);
    cr_assert_eq(rill_pipeline_add_last(pl, "resp", &rill_resp_codec, (void *)&kv_codec_cfg), 0);
    cr_assert_eq(rill_pipeline_add_last(pl, "kv", &kv_handler, &f->srv), 0);
}

static void teardown(struct fixture *f)
{
    rill_embedded_free(f->conn);
    if (f->other)
        rill_embedded_free(f->other);
    for (int i = 0; i < f->srv.nshards; i++)
        kv_table_free(&f->shards[i].t);
}

/* Everything written to the connection so far, as one string. */
static char *replies(struct fixture *f)
{
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    struct rill_msg *m;
    while ((m = rill_embedded_read_outbound(f->conn))) {
        struct rill_buf *b = rill_buf_from_msg(m);
        size_t k = rill_buf_readable(b);
        cr_assert_lt(n + k, cap);
        rill_buf_get_bytes(b, rill_buf_reader_index(b), s + n, k);
        n += k;
        rill_msg_release(m);
    }
    s[n] = '\0';
    return s;
}

static void send_cmds(struct fixture *f, const char *in)
{
    rill_test_feed(f->conn, in, strlen(in));
}

static void expect_prefix(struct fixture *f, const char *in, const char *want)
{
    send_cmds(f, in);
    char *got = replies(f);
    cr_expect_eq(strncmp(got, want, strlen(want)), 0, "for %s: got %s", in, got);
    free(got);
}

static void expect(struct fixture *f, const char *in, const char *want)
{
    send_cmds(f, in);
    char *got = replies(f);
    cr_expect_str_eq(got, want, "for %s", in);
    free(got);
}

Test(resp_kv, strings_counters_and_errors)
{
    struct fixture f;
    setup(&f, 1);
    expect(&f, "SET k v\r\nGET k\r\nGET nokey\r\n", "+OK\r\n$1\r\nv\r\n$-1\r\n");
    expect(&f, "SET k longer-value\r\nGET k\r\nSET k s\r\nGET k\r\n",
           "+OK\r\n$12\r\nlonger-value\r\n+OK\r\n$1\r\ns\r\n");
    expect(&f, "SET k x NX\r\nSET k y XX GET\r\nSET z 1 XX\r\n", "$-1\r\n$1\r\ns\r\n$-1\r\n");
    expect(&f, "INCR c\r\nINCRBY c 10\r\nDECR c\r\nDECRBY c -5\r\n", ":1\r\n:11\r\n:10\r\n:15\r\n");
    expect(&f, "INCR k\r\n", "-ERR value is not an integer or out of range\r\n");
    expect(
        &f, "SET m -9223372036854775808\r\nDECR m\r\nDECRBY m -9223372036854775808\r\n",
        "+OK\r\n-ERR increment or decrement would overflow\r\n-ERR decrement would overflow\r\n");
    expect(&f, "MSET a 1 b 2\r\nMGET a nokey b\r\nDEL a b nokey\r\nEXISTS a b k k\r\n",
           "+OK\r\n*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n:2\r\n:2\r\n");
    expect_prefix(&f, "DBSIZE\r\nKEYS c\r\nKEYS [ck]\r\n", ":3\r\n*1\r\n$1\r\nc\r\n*2\r\n");
    expect(&f, "FLUSHALL\r\nDBSIZE\r\n", "+OK\r\n:0\r\n");
    expect(&f, "NOPE x\r\nGET\r\nSET k v EX\r\nMSET a\r\n",
           "-ERR unknown command 'NOPE', with args beginning with: 'x' \r\n"
           "-ERR wrong number of arguments for 'get' command\r\n-ERR syntax error\r\n"
           "-ERR wrong number of arguments for 'mset' command\r\n");
    /* A big value: stored in a buffer of its own, replied without a copy. */
    size_t n = KV_BIG_VALUE + 10;
    char *big = malloc(n + 64);
    int h = snprintf(big, 64, "*3\r\n$3\r\nSET\r\n$1\r\nB\r\n$%zu\r\n", n);
    memset(big + h, 'q', n);
    memcpy(big + h + n, "\r\n", 2);
    rill_test_feed(f.conn, big, (size_t)h + n + 2);
    char *got = replies(&f);
    cr_expect_str_eq(got, "+OK\r\n");
    free(got);
    send_cmds(&f, "GET B\r\n");
    struct rill_msg *m = rill_embedded_read_outbound(f.conn);
    cr_assert_eq(rill_buf_kind(rill_buf_from_msg(m)), RILL_BUF_COMPOSITE, "not copied");
    char head[32];
    size_t hl = (size_t)snprintf(head, sizeof(head), "$%zu\r\n", n);
    cr_assert_eq(rill_buf_readable(rill_buf_from_msg(m)), hl + n + 2);
    rill_msg_release(m);
    free(big);
    teardown(&f);
}

static void tick(struct rill_timer *t, void *arg)
{
    kv_expire_step(arg, 4096);
}

Test(resp_kv, expiry_lazy_and_active_on_the_loop_clock)
{
    struct fixture f;
    setup(&f, 1);
    rill_embedded_advance_clock(f.conn, 1000 * RILL_NS_PER_MS); /* a clock that is not 0 */
    expect(&f, "SET t v PX 100\r\nPTTL t\r\nTTL t\r\nTTL nokey\r\n",
           "+OK\r\n:100\r\n:0\r\n:-2\r\n");
    rill_embedded_advance_clock(f.conn, 60 * RILL_NS_PER_MS);
    expect(&f, "PTTL t\r\nGET t\r\n", ":40\r\n$1\r\nv\r\n");
    rill_embedded_advance_clock(f.conn, 40 * RILL_NS_PER_MS);
    expect(&f, "GET t\r\nEXISTS t\r\n", "$-1\r\n:0\r\n");
    expect(&f,
           "SET p v\r\nEXPIRE p 10\r\nTTL p\r\nSET p w KEEPTTL\r\nTTL p\r\nSET p x\r\nTTL p\r\n",
           "+OK\r\n:1\r\n:10\r\n+OK\r\n:10\r\n+OK\r\n:-1\r\n");
    /* Active expiry removes keys nobody touches. */
    struct rill_timer *t;
    cr_assert_eq(rill_timer_schedule(rill_embedded_loop(f.conn), 100 * RILL_NS_PER_MS,
                                     100 * RILL_NS_PER_MS, RILL_TIMER_FIXED_RATE, tick,
                                     &f.shards[0], &t),
                 0);
    for (int i = 0; i < 20; i++) {
        char c[64];
        snprintf(c, sizeof(c), "SET e%d v PX %d\r\n", i, 50 + i);
        send_cmds(&f, c);
    }
    free(replies(&f));
    expect(&f, "DBSIZE\r\n", ":21\r\n");
    rill_embedded_advance_clock(f.conn, 200 * RILL_NS_PER_MS);
    expect(&f, "DBSIZE\r\n", ":1\r\n");
    rill_timer_cancel(t);
    rill_timer_release(t);
    teardown(&f);
}

/* A key that lives on shard @want of @f. */
static void key_on(struct fixture *f, int want, int skip, char *out, size_t size)
{
    for (int i = 0;; i++) {
        snprintf(out, size, "key%d", i);
        if (kv_shard_of(&f->srv, kv_hash(out, strlen(out)))->idx == want && skip-- == 0)
            return;
    }
}

Test(resp_kv, remote_commands_reply_in_request_order)
{
    struct fixture f;
    setup(&f, 2);
    char r1[16], r2[16], l1[16], in[512], want[512];
    key_on(&f, 1, 0, r1, sizeof(r1));
    key_on(&f, 1, 1, r2, sizeof(r2));
    key_on(&f, 0, 0, l1, sizeof(l1));
    snprintf(in, sizeof(in),
             "SET %s remote\r\nSET %s local\r\nGET %s\r\nPING\r\nGET %s\r\nMGET %s %s %s\r\n"
             "INCR %s\r\nDBSIZE\r\n",
             r1, l1, r1, l1, r2, r1, l1, r2);
    send_cmds(&f, in);
    cr_assert_eq(rill_embedded_outbound_count(f.conn), 0, "the first reply waits for shard 1");
    /* Shard 1 runs its commands; the replies come back as tasks. */
    rill_embedded_run_pending(f.other);
    rill_embedded_run_pending(f.conn);
    rill_embedded_run_pending(f.other);
    rill_embedded_run_pending(f.conn);
    snprintf(want, sizeof(want),
             "+OK\r\n+OK\r\n$6\r\nremote\r\n+PONG\r\n$5\r\nlocal\r\n"
             "*3\r\n$-1\r\n$6\r\nremote\r\n$5\r\nlocal\r\n:1\r\n:3\r\n");
    char *got = replies(&f);
    cr_expect_str_eq(got, want);
    free(got);
    cr_assert_eq(atomic_load(&f.srv.inflight), 0);
    /* All-local multi-key commands and keyless ones need no hop. */
    snprintf(in, sizeof(in), "MGET %s\r\nEXISTS %s\r\n", l1, l1);
    expect(&f, in, "*1\r\n$5\r\nlocal\r\n:1\r\n");
    teardown(&f);
}

Test(resp_kv, connection_closed_while_a_remote_command_runs)
{
    struct fixture f;
    setup(&f, 2);
    char r1[16], in[64];
    key_on(&f, 1, 0, r1, sizeof(r1));
    snprintf(in, sizeof(in), "SET %s v\r\nPING\r\nMGET %s %s\r\n", r1, r1, "x");
    send_cmds(&f, in);
    rill_embedded_close(f.conn); /* the connection goes first */
    rill_embedded_run_pending(f.other);
    rill_embedded_run_pending(f.conn); /* replies find a closed connection: dropped */
    rill_embedded_run_pending(f.other);
    rill_embedded_run_pending(f.conn);
    cr_assert_eq(atomic_load(&f.srv.inflight), 0);
    teardown(&f);
}

Test(resp_kv, resp3_hello_and_keyless_commands)
{
    struct fixture f;
    setup(&f, 1);
    expect(&f, "GET nokey\r\nHELLO 3\r\n",
           "$-1\r\n%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"
           "$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n"
           "$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
           "$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
    expect_prefix(&f, "GET nokey\r\nCONFIG GET appendonly\r\nHELLO 2\r\n",
                  "_\r\n%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n*14\r\n");
    expect(&f, "GET nokey\r\nSELECT 0\r\nECHO hi\r\nPING x\r\n",
           "$-1\r\n+OK\r\n$2\r\nhi\r\n$1\r\nx\r\n");
    expect(&f, "CLIENT SETNAME n1\r\nCLIENT GETNAME\r\nCLIENT ID\r\n", "+OK\r\n$2\r\nn1\r\n:1\r\n");
    expect(&f, "QUIT\r\nPING\r\n", "+OK\r\n");
    cr_assert_not(rill_embedded_is_open(f.conn), "QUIT closes after its reply");
    teardown(&f);
}
