/* Faults over rdma://:
 *   - a peer process killed (SIGKILL) while both directions stream: the
 *     server's channel goes inactive within a bounded time with an error
 *     as its close reason, its queued write promises fail, nothing leaks,
 *     and the server goes on serving a second, healthy connection;
 *   - a client writing while the server closes the connection: its writes
 *     fail cleanly (every promise completes, none hangs), the channel closes
 *     (64 KiB writes, and 1 MiB ones that go by rendezvous);
 *   - a close right after a flushed write (SENDs, rendezvous): a write that
 *     succeeded arrived, flushed bytes arrive as over TCP, no hang;
 *   - a connect to a port nobody listens on fails (-ECONNREFUSED) quickly;
 *   - a connect to an address no RDMA device routes to fails quickly with
 *     a routing error.
 *
 * The killed peer is a child forked before the test creates any thread;
 * it connects with auto-read off (so the server's own writes stall on
 * credits and stay queued) and streams until it is killed.
 *
 * rill-test-labels: guest
 */
#include "tests/rdma/rdma_test.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "util/proc.h"

TestSuite(fault, .timeout = 240, .fini = rill_test_no_leaks);

#define CHUNK    ((size_t)64 << 10)
#define NPENDING 4

/* ---- the child process: connect, stream, never read ---- */

static void child_pump(struct rill_ctx *ctx)
{
    struct rill_channel *ch = rill_ctx_channel(ctx);
    static uint64_t sent;
    for (int i = 0; i < 64 && rill_channel_is_writable(ch) && sent < ((uint64_t)4 << 30); i++) {
        struct rill_buf *b;
        if (rill_buf_alloc(CHUNK, &b))
            _exit(3);
        size_t len;
        uint8_t *w = rill_buf_write_ptr(b, CHUNK, &len);
        memset(w, 'k', CHUNK);
        rill_buf_advance_writer(b, CHUNK);
        rill_ctx_write(ctx, rill_buf_msg(b), NULL);
        sent += CHUNK;
    }
    rill_ctx_flush(ctx);
}

static void child_active(struct rill_ctx *ctx)
{
    rill_ctx_fire_active(ctx);
    child_pump(ctx);
}

static void child_writability(struct rill_ctx *ctx, bool writable)
{
    if (writable)
        child_pump(ctx);
}

static const struct rill_handler child_handler = {
    .name = "streamer",
    .active = child_active,
    .writability_changed = child_writability,
};

static int child_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "streamer", &child_handler, NULL);
}

/* The child's life: no Criterion assertions here, exit codes only. */
static void child_main(int from_parent, int to_parent, const char *scheme, const char *ip)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int port = 0;
    if (read(from_parent, &port, sizeof(port)) != sizeof(port))
        _exit(2);
    struct rill_loop_group_opts o;
    rill_loop_group_opts_init(&o);
    o.nloops = 1;
    o.name = "victim";
    struct rill_loop_group *g;
    if (rill_loop_group_new(&o, &g))
        _exit(4);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), scheme, ip, port);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = child_init;
    rill_channel_opts_set(&co.opts, RILL_OPT_AUTO_READ, 0);
    struct rill_promise *f;
    if (rill_client_connect(&co, uri, &f) || rill_promise_wait(f, TX_WAIT_NS))
        _exit(5);
    char c = 'c';
    if (write(to_parent, &c, 1) != 1)
        _exit(6);
    sleep(200); /* killed long before */
    _exit(7);
}

/* Fork the streaming peer; returns its pid and the two pipe ends. */
static pid_t spawn_peer(const char *scheme, const char *ip, int *to_child, int *from_child)
{
    int down[2], up[2];
    cr_assert_eq(pipe(down), 0);
    cr_assert_eq(pipe(up), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        child_main(down[0], up[1], scheme, ip);
    }
    close(down[0]);
    close(up[1]);
    *to_child = down[1];
    *from_child = up[0];
    return pid;
}

/* ---- the server: the first child is the victim, later ones echo ---- */

struct victim {
    _Atomic uint64_t received;
    _Atomic int unwritable, inactive, exceptions, last_error, close_reason, children;
    _Atomic uint64_t inactive_at;
    _Atomic(struct rill_channel *) ch; /* a reference */
};

static void victim_pump(struct rill_ctx *ctx)
{
    struct rill_channel *ch = rill_ctx_channel(ctx);
    for (int i = 0; i < 256 && rill_channel_is_writable(ch); i++)
        rill_ctx_write(ctx, rill_buf_msg(rt_pattern(CHUNK, 0, 3)), NULL);
    rill_ctx_flush(ctx);
}

static void victim_active(struct rill_ctx *ctx)
{
    struct victim *v = rill_ctx_arg(ctx);
    atomic_store(&v->ch, rill_channel_retain(rill_ctx_channel(ctx)));
    rill_ctx_fire_active(ctx);
    victim_pump(ctx);
}

static void victim_writability(struct rill_ctx *ctx, bool writable)
{
    struct victim *v = rill_ctx_arg(ctx);
    if (writable)
        victim_pump(ctx);
    else
        atomic_fetch_add(&v->unwritable, 1);
}

static void victim_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct victim *v = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    if (b)
        atomic_fetch_add(&v->received, rill_buf_readable(b));
    rill_msg_release(msg);
}

static void victim_exception(struct rill_ctx *ctx, int err, const char *why)
{
    struct victim *v = rill_ctx_arg(ctx);
    fprintf(stderr, "victim: exception %s (%s)\n", rill_strerror(err), why ? why : "");
    atomic_store(&v->last_error, err);
    atomic_fetch_add(&v->exceptions, 1);
}

static void victim_inactive(struct rill_ctx *ctx)
{
    struct victim *v = rill_ctx_arg(ctx);
    atomic_store(&v->close_reason, rill_channel_close_reason(rill_ctx_channel(ctx)));
    atomic_store(&v->inactive_at, rill_clock_now_ns());
    atomic_fetch_add(&v->inactive, 1);
    rill_ctx_fire_inactive(ctx);
}

static const struct rill_handler victim_handler = {
    .name = "victim",
    .active = victim_active,
    .read = victim_read,
    .writability_changed = victim_writability,
    .exception = victim_exception,
    .inactive = victim_inactive,
};

static int fault_child_init(struct rill_channel *ch, void *arg)
{
    struct victim *v = arg;
    if (atomic_fetch_add(&v->children, 1) == 0)
        return rill_pipeline_add_last(rill_channel_pipeline(ch), "victim", &victim_handler, v);
    return tx_echo_init(ch, NULL);
}

static bool wait_byte(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;
    return poll(&p, 1, ms) == 1 && read(fd, &c, 1) == 1;
}

static void killed_peer(const char *scheme, const char *ip)
{
    /* Fork first: no thread exists yet. */
    int to_child, from_child;
    pid_t pid = spawn_peer(scheme, ip, &to_child, &from_child);

    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct victim v = { 0 };
    struct rill_promise *pending[NPENDING];
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), scheme, ip, 0);
    struct rill_server *srv = tx_server(boss, workers, uri, fault_child_init, &v);
    int port = rt_server_port(srv);
    cr_assert_eq(write(to_child, &port, sizeof(port)), (ssize_t)sizeof(port));
    if (!wait_byte(from_child, 60000)) {
        rill_test_proc_kill(&pid);
        cr_assert_fail("the peer process did not connect");
    }

    /* Both directions are moving: the peer streams; the server writes until
     * the peer, which reads nothing, has no receive buffer left (credits),
     * and then stays unwritable. */
    bool streaming = TX_WITHIN(60 * RILL_NS_PER_S, atomic_load(&v.received) >= ((uint64_t)1 << 20));
    bool stalled = false;
    uint64_t dl = rill_test_deadline_ms(60000), since = 0;
    while (!stalled && rill_test_before(dl)) {
        struct rill_channel *vc = atomic_load(&v.ch);
        if (vc && !rill_channel_is_writable(vc)) {
            if (!since)
                since = rill_clock_now_ns();
            stalled = rill_clock_now_ns() - since > RILL_NS_PER_S;
        } else {
            since = 0;
        }
        usleep(10000);
    }
    /* Writes queued now cannot go anywhere: the test keeps their promises. */
    struct rill_channel *vc = atomic_load(&v.ch);
    cr_assert_not_null(vc);
    for (int i = 0; i < NPENDING; i++) {
        pending[i] = tx_promise(NULL);
        rill_channel_write_and_flush(vc, rill_buf_msg(rt_pattern(CHUNK, 0, 3)), pending[i]);
    }
    usleep(1000 * 1000);
    int done = 0;
    for (int i = 0; i < NPENDING; i++)
        done += rill_promise_is_done(pending[i]);
    if (!streaming || !stalled || done)
        rill_test_proc_kill(&pid);
    cr_assert(streaming, "the peer's stream arrives (%llu B)",
              (unsigned long long)atomic_load(&v.received));
    cr_assert(stalled,
              "the server's writes to a peer that reads nothing (auto-read off) never stall "
              "(%d unwritable events): the peer takes data without bound",
              atomic_load(&v.unwritable));
    cr_assert_eq(done, 0, "%d of the %d writes queued on a stalled channel completed", done,
                 NPENDING);

    uint64_t t_kill = rill_clock_now_ns();
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the peer died of SIGKILL");
    close(to_child);
    close(from_child);

    bool gone = TX_WITHIN(90 * RILL_NS_PER_S, atomic_load(&v.inactive) == 1);
    cr_assert(gone, "the server's channel is still active %.0f s after the peer died",
              (double)(rill_clock_now_ns() - t_kill) / 1e9);
    double secs = (double)(atomic_load(&v.inactive_at) - t_kill) / 1e9;
    fprintf(stderr, "fault: %s: the server's channel went inactive %.2f s after SIGKILL (%s)\n",
            scheme, secs, rill_strerror(atomic_load(&v.close_reason)));
    /* An expectation, so the rest is still checked when it fails. */
    cr_expect_lt(atomic_load(&v.close_reason), 0,
                 "a peer that died without closing is an error (as TCP's reset), not %d (%s)",
                 atomic_load(&v.close_reason), rill_strerror(atomic_load(&v.close_reason)));
    for (int i = 0; i < NPENDING; i++) {
        int rc = rill_promise_wait(pending[i], TX_WAIT_NS);
        cr_assert_lt(rc, 0, "queued write %d failed (%s)", i, rill_strerror(rc));
        rill_promise_release(pending[i]);
    }
    cr_assert_not(rill_channel_is_open(vc));
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    rill_channel_release(vc);

    /* A healthy connection is served as before. */
    rt_uri(uri, sizeof(uri), scheme, ip, port);
    struct tx_collector *c = tx_collector_new(1 << 20);
    struct rill_channel *ch = tx_connect(workers, uri, tx_collector_init, c);
    rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(1 << 20, 0, 9)), NULL);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == (1u << 20)), "%zu B echoed",
              atomic_load(&c->got));
    cr_assert_eq(rt_check(c->data, 1 << 20, 0, 9), -1);
    tx_close(ch);
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    tx_collector_free(c);
    rt_no_regions();
}

Test(fault, killed_peer_closes_the_channel_and_the_server_goes_on)
{
    killed_peer("rdma", rt_ip());
}

/* The same over TCP, for comparison (the peer dies with data unread: the
 * kernel resets the connection). */
Test(fault, killed_peer_over_tcp_for_comparison)
{
    rt_ip();
    killed_peer("tcp", "127.0.0.1");
}

/* ---- the server closes while the client writes ---- */

struct closer {
    _Atomic uint64_t received;
};

static void closer_read(struct rill_ctx *ctx, struct rill_msg *msg)
{
    struct closer *k = rill_ctx_arg(ctx);
    struct rill_buf *b = rill_buf_from_msg(msg);
    uint64_t before = atomic_fetch_add(&k->received, b ? rill_buf_readable(b) : 0);
    rill_msg_release(msg);
    if (before < (256u << 10) && atomic_load(&k->received) >= (256u << 10))
        rill_ctx_close(ctx, NULL);
}

static const struct rill_handler closer_handler = { .name = "closer", .read = closer_read };

static int closer_init(struct rill_channel *ch, void *arg)
{
    return rill_pipeline_add_last(rill_channel_pipeline(ch), "closer", &closer_handler, arg);
}

static void writes_while_closing(const char *ip, size_t chunk)
{
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct closer k = { 0 };
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(boss, workers, uri, closer_init, &k);
    rt_uri(uri, sizeof(uri), "rdma", ip, rt_server_port(srv));
    struct tx_collector *c = tx_collector_new(0);
    struct rill_channel *ch = tx_connect(workers, uri, tx_collector_init, c);

    enum { MAXW = 2000 };
    struct rill_promise **p = calloc(MAXW, sizeof(*p));
    int n = 0;
    uint64_t dl = rill_test_deadline_ms(60000);
    while (n < MAXW && rill_test_before(dl) && rill_channel_is_open(ch)) {
        if (!rill_channel_is_writable(ch)) {
            usleep(1000);
            continue;
        }
        p[n] = tx_promise(NULL);
        rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(chunk, 0, 4)), p[n]);
        n++;
    }
    /* A few more after the close. */
    for (int i = 0; i < 3 && n < MAXW; i++, n++) {
        p[n] = tx_promise(NULL);
        rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(chunk, 0, 4)), p[n]);
    }
    cr_assert(TX_EVENTUALLY(atomic_load(&c->inactive) == 1), "the client's channel closed");
    int ok = 0, failed = 0, first_failed = -1;
    for (int i = 0; i < n; i++) {
        int rc = rill_promise_wait(p[i], TX_WAIT_NS);
        cr_assert_neq(rc, -ETIMEDOUT, "write %d of %d never completed", i, n);
        if (rc == 0) {
            ok++;
            cr_assert_eq(first_failed, -1, "write %d succeeded after write %d failed", i,
                         first_failed);
        } else {
            failed++;
            if (first_failed < 0)
                first_failed = i;
        }
        rill_promise_release(p[i]);
    }
    free(p);
    fprintf(stderr, "fault: %zu B writes: %d, %d succeeded, %d failed, close reason %s\n", chunk, n,
            ok, failed, rill_strerror(rill_channel_close_reason(ch)));
    fprintf(stderr, "fault: the server received %llu B before it closed\n",
            (unsigned long long)atomic_load(&k.received));
    cr_assert_geq(atomic_load(&k.received), 256u << 10);
    /* Every write the server received in full was handed over: its
     * promise must not report a failure. */
    cr_expect_geq((uint64_t)ok * chunk, atomic_load(&k.received) / chunk * chunk,
                  "%d writes of %zu B succeeded, but the server received %llu B", ok, chunk,
                  (unsigned long long)atomic_load(&k.received));
    cr_assert_geq(failed, 3, "writes after the close failed");
    rill_channel_release(ch);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    tx_collector_free(c);
    rt_no_regions();
}

Test(fault, writes_fail_cleanly_when_the_server_closes)
{
    writes_while_closing(rt_ip(), CHUNK);
}

/* The same with 1 MiB writes: each goes by rendezvous (the server READs it). */
Test(fault, rendezvous_writes_fail_cleanly_when_the_server_closes)
{
    writes_while_closing(rt_ip(), (size_t)1 << 20);
}

/* Close right after a write was flushed: 8 KiB and 100 KiB (SENDs) and
 * 4 MiB (rendezvous), the close sooner and later. A write that succeeded
 * must have arrived; flushed bytes that a TCP close delivers (the kernel
 * sends them before the FIN) should arrive over RDMA too. Whatever arrived
 * is a correct prefix; nothing hangs or leaks. */
static void close_after_write(const char *scheme, const char *ip)
{
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    const size_t max = (size_t)4 << 20;
    struct tx_collector *sc = tx_collector_new(max);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), scheme, ip, 0);
    struct rill_server *srv = tx_server(boss, workers, uri, tx_collector_init, sc);
    rt_uri(uri, sizeof(uri), scheme, ip, rt_server_port(srv));
    static const struct {
        size_t n;
        unsigned delay_us;
    } cases[] = {
        { 8192, 0 },
        { 100000, 0 },
        { (size_t)4 << 20, 0 },
        { (size_t)4 << 20, 1000 },
        { (size_t)4 << 20, 50000 },
    };
    int lost_small = 0;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t n = cases[k].n;
        tx_collector_reset(sc);
        int inactive0 = atomic_load(&sc->inactive);
        struct rill_channel *ch = tx_connect(workers, uri, NULL, NULL);
        struct rill_promise *w = tx_promise(NULL), *c = tx_promise(NULL);
        rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(n, 0, 8)), w);
        if (cases[k].delay_us)
            usleep(cases[k].delay_us);
        rill_channel_close(ch, c);
        cr_assert_eq(tx_wait_release(c), 0, "%s: the close completed", scheme);
        int rc = rill_promise_wait(w, TX_WAIT_NS);
        cr_assert_neq(rc, -ETIMEDOUT, "%s: the write of %zu B never completed", scheme, n);
        rill_promise_release(w);
        cr_assert(TX_EVENTUALLY(atomic_load(&sc->inactive) == inactive0 + 1),
                  "%s: the server's child closed", scheme);
        usleep(20000);
        size_t got = atomic_load(&sc->got);
        fprintf(stderr, "fault: %s: close %u us after a %zu B write: write %s, server got %zu B\n",
                scheme, cases[k].delay_us, n, rill_strerror(rc), got);
        cr_assert_leq(got, n);
        pthread_mutex_lock(&sc->lock);
        ssize_t bad = rt_check(sc->data, got, 0, 8);
        pthread_mutex_unlock(&sc->lock);
        cr_assert_eq(bad, -1, "%s: byte %zd of what arrived differs", scheme, bad);
        cr_expect(rc != 0 || got == n, "%s: the %zu B write succeeded but %zu B arrived", scheme, n,
                  got);
        if (n < (256u << 10) && got != n)
            lost_small++;
        rill_channel_release(ch);
    }
    cr_expect_eq(lost_small, 0,
                 "%s: %d flushed writes below the rendezvous size were lost by the close (a TCP "
                 "close delivers them)",
                 scheme, lost_small);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0));
    tx_server_free(srv, true);
    tx_group_free(workers);
    tx_group_free(boss);
    tx_collector_free(sc);
    rt_no_regions();
}

Test(fault, close_right_after_a_write)
{
    close_after_write("rdma", rt_ip());
}

Test(fault, close_right_after_a_write_over_tcp_for_comparison)
{
    rt_ip();
    close_after_write("tcp", "127.0.0.1");
}

/* ---- connects that cannot succeed ---- */

static int connect_error(const char *uri, uint64_t *ms)
{
    struct rill_loop_group *g = tx_group("loop", 1);
    struct tx_collector *c = tx_collector_new(0);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = tx_collector_init;
    co.arg = c;
    rill_channel_opts_set(&co.opts, RILL_OPT_CONNECT_TIMEOUT_MS, 40000);
    int err = 0;
    uint64_t t0 = rill_clock_now_ns();
    struct rill_channel *ch = tx_connect_opts(&co, uri, &err);
    *ms = (rill_clock_now_ns() - t0) / RILL_NS_PER_MS;
    if (ch)
        tx_close(ch);
    cr_assert_null(ch, "%s connected", uri);
    cr_assert_eq(atomic_load(&c->active), 0);
    tx_group_free(g);
    tx_collector_free(c);
    fprintf(stderr, "fault: %s failed with %s (%s) after %llu ms\n", uri, rill_errname(err),
            rill_strerror(err), (unsigned long long)*ms);
    return err;
}

Test(fault, connect_to_a_port_without_listener_is_refused)
{
    const char *ip = rt_ip();
    /* A port that was just free: bind a server, note its port, close it. */
    struct rill_loop_group *g = tx_group("loop", 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(g, NULL, uri, tx_echo_init, NULL);
    int port = rt_server_port(srv);
    tx_server_free(srv, true);
    tx_group_free(g);
    rt_uri(uri, sizeof(uri), "rdma", ip, port);
    uint64_t ms;
    int err = connect_error(uri, &ms);
    cr_assert_eq(err, -ECONNREFUSED, "%s: %s", uri, rill_strerror(err));
    cr_assert_lt(ms, 20000);
    rt_no_regions();
}

Test(fault, connect_without_an_rdma_route_fails_quickly)
{
    rt_ip();
    /* TEST-NET-2: the guest has no route there at all. */
    uint64_t ms;
    int err = connect_error("rdma://198.51.100.1:7471", &ms);
    cr_assert(err == -ENETUNREACH || err == -EHOSTUNREACH || err == -EADDRNOTAVAIL ||
                  err == -ENODEV,
              "a routing error, not %s (%s)", rill_errname(err), rill_strerror(err));
    cr_assert_lt(ms, 20000);
    rt_no_regions();
}
