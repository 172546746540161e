/* The RDMA device removed under running channels (`rdma link delete`):
 *   - every channel on it and the listener bound to its address close with
 *     -ENODEV, the server's children go away;
 *   - rill gives back everything it holds on the device (queue pairs, the
 *     loops' CQs, including one no channel uses any more, the allocator's
 *     registrations, an exposed region's registration, the PD, and the
 *     verbs context), so the kernel's removal completes while this process
 *     goes on running: the test fails if `rdma link delete` is still
 *     blocked after 30 s;
 *   - the exposed region stays the caller's, to revoke; rill_rdma_available
 *     says -ENODEV;
 *   - the device added back (same netdev) serves a new server and client;
 *   - removed again when no channel is on it any more (a server on the
 *     wildcard address, its one client closed), rill still sees the removal
 *     (its own id on the device) and lets go, the wildcard listener stays,
 *     and after the device comes back it takes a new client.
 *
 * It removes the guest's only RDMA device, so it runs alone (RUN_SERIAL)
 * and puts the device back, also from .fini when the test failed halfway.
 *
 * rill-test-labels: guest
 */
#include "tests/rdma/rdma_test.h"

#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/util/proc.h"

#define DELETE_WAIT_S 30

static char netdev[64];

static const char *dev_name(void)
{
    const char *d = getenv("RXE_VM_DEV");
    return d && *d ? d : "rxe0";
}

static bool dev_present(void)
{
    char path[256];
    snprintf(path, sizeof(path), "/sys/class/infiniband/%s", dev_name());
    return access(path, F_OK) == 0;
}

/* The netdev under the device, from `rdma link show`. */
static void find_netdev(void)
{
    int st = 0;
    char *out = rill_test_sh(&st, "rdma link show %s/1", dev_name());
    char *p = out ? strstr(out, " netdev ") : NULL;
    cr_assert(st == 0 && p, "rdma link show %s/1: %s", dev_name(), out ? out : "(nothing)");
    sscanf(p + 8, "%63s", netdev);
    free(out);
}

/* Port 1 ACTIVE with the GID of the guest's address (::ffff:IP). */
static bool dev_ready(void)
{
    char path[256], buf[128], want[64];
    snprintf(want, sizeof(want), "::ffff:%s", rt_ip());
    snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/state", dev_name());
    FILE *f = fopen(path, "r");
    bool active = f && fgets(buf, sizeof(buf), f) && strstr(buf, "ACTIVE");
    if (f)
        fclose(f);
    if (!active)
        return false;
    /* The GID table shows addresses in full form: compare the IPv4 tail. */
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gids/%d", dev_name(), i);
        f = fopen(path, "r");
        bool got = f && fgets(buf, sizeof(buf), f);
        if (f)
            fclose(f);
        struct in6_addr a;
        if (got) {
            buf[strcspn(buf, "\n")] = '\0';
            struct in6_addr w;
            if (inet_pton(AF_INET6, buf, &a) == 1 && inet_pton(AF_INET6, want, &w) == 1 &&
                memcmp(&a, &w, sizeof(a)) == 0)
                return true;
        }
    }
    return false;
}

static void dev_add_back(void)
{
    if (dev_present() || !netdev[0])
        return;
    int st = 0;
    char *out = rill_test_sh(&st, "rdma link add %s type rxe netdev %s 2>&1", dev_name(), netdev);
    free(out);
    for (int i = 0; i < 300 && !dev_ready(); i++)
        usleep(100 * 1000);
}

static void fini(void)
{
    dev_add_back();
    rill_test_no_leaks();
}

TestSuite(removal, .timeout = 300, .fini = fini);

static int client_init(struct rill_channel *ch, void *arg)
{
    return tx_collector_init(ch, arg);
}

static void echo_once(struct rill_channel *ch, struct tx_collector *col, size_t n, unsigned seed)
{
    tx_collector_reset(col);
    struct rill_promise *w = tx_promise(NULL);
    rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(n, 0, seed)), w);
    cr_assert_eq(tx_wait_release(w), 0, "the write completed");
    cr_assert(TX_EVENTUALLY(atomic_load(&col->got) == n), "the echo came back (%zu of %zu)",
              atomic_load(&col->got), n);
    cr_assert_eq(rt_check(col->data, n, 0, seed), -1, "the echo is intact");
}

/* Delete the device in a child and wait (bounded) for the kernel to
 * finish: it can only when this process holds nothing on the device. */
static void dev_delete(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execlp("rdma", "rdma", "link", "delete", dev_name(), (char *)NULL);
        _exit(127);
    }
    uint64_t t0 = rill_clock_now_ns();
    int st = 0;
    pid_t r = 0;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 &&
           rill_clock_now_ns() - t0 < DELETE_WAIT_S * RILL_NS_PER_S)
        usleep(20 * 1000);
    /* Still blocked: the kernel waits for this process to let go; the
     * child cannot be killed (it sleeps in the kernel). */
    cr_assert_eq(r, pid,
                 "`rdma link delete %s` still blocked after %d s: this process holds the device",
                 dev_name(), DELETE_WAIT_S);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rdma link delete %s failed (status %d)",
              dev_name(), st);
    cr_log_info("rdma link delete %s took %.3f s", dev_name(),
                (double)(rill_clock_now_ns() - t0) / 1e9);
}

Test(removal, channels_close_and_the_device_goes)
{
    find_netdev();
    cr_assert(dev_ready(), "%s is ready", dev_name());
    char uri[96];
    struct rill_loop_group *boss = tx_group("boss", 1), *workers = tx_group("work", 2);
    struct rill_loop_group *clients = tx_group("client", 2);
    rt_uri(uri, sizeof(uri), "rdma", rt_ip(), 0);
    struct rill_server *srv = tx_server(boss, workers, uri, tx_echo_init, NULL);
    rt_uri(uri, sizeof(uri), "rdma", rt_ip(), rt_server_port(srv));

    /* Two channels on the two client loops, then one closed: its loop keeps
     * a CQ on the device that no channel uses. */
    struct tx_collector *ca = tx_collector_new(1 << 20), *cb = tx_collector_new(1 << 16);
    struct rill_channel *a = tx_connect(clients, uri, client_init, ca);
    struct rill_channel *b = tx_connect(clients, uri, client_init, cb);
    cr_assert_neq(rill_channel_loop(a), rill_channel_loop(b), "one channel per client loop");
    echo_once(a, ca, 4096, 1);
    echo_once(b, cb, 40000, 2); /* more than one receive buffer */
    tx_close(b);

    /* An exposed region: released with the device, still the caller's. */
    static uint8_t mem[8192];
    struct rill_rdma_region *region = NULL;
    cr_assert_eq(rill_rdma_expose(a, mem, sizeof(mem), RILL_RDMA_REMOTE_READ, &region), 0);
    struct rill_rdma_desc before, after;
    rill_rdma_region_desc(region, &before);
    struct rill_channel *listener = rill_server_listener(srv, 0);
    cr_assert_not_null(listener);

    dev_delete();

    struct rill_promise *closed = rill_channel_close_future(a);
    cr_assert_eq(rill_promise_wait(closed, TX_WAIT_NS), 0, "the channel closed");
    cr_assert_eq(rill_channel_close_reason(a), -ENODEV, "closed with %s",
                 rill_strerror(rill_channel_close_reason(a)));
    cr_assert_eq(atomic_load(&ca->inactive), 1);
    cr_assert(TX_EVENTUALLY(!rill_channel_is_open(listener)), "the listener closed");
    cr_assert_eq(rill_channel_close_reason(listener), -ENODEV, "listener closed with %s",
                 rill_strerror(rill_channel_close_reason(listener)));
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0), "the server's children closed");

    /* Writes now fail with the close, they do not hang. */
    struct rill_promise *w = tx_promise(NULL);
    rill_channel_write_and_flush(a, rill_buf_msg(rt_pattern(100, 0, 3)), w);
    cr_assert_neq(tx_wait_release(w), 0, "a write after the removal fails");
    cr_assert_eq(rill_rdma_available(), -ENODEV, "no device now");

    cr_assert_eq(rill_rdma_region_count(), 1, "the region is still the caller's");
    rill_rdma_region_desc(region, &after);
    cr_assert_eq(after.addr, before.addr);
    cr_assert_eq(after.len, before.len);
    rill_rdma_revoke(region);
    cr_assert_eq(rill_rdma_region_count(), 0);

    rill_channel_release(a);
    tx_server_free(srv, true);

    /* Back again: a new context. This time the server listens on the
     * wildcard address (no device) and the one client closes before the
     * removal: no channel is on the device then, only what is kept for the
     * next one (the loops' CQs, the PD, the registrations). rill must still
     * see the removal and let go. */
    dev_add_back();
    cr_assert(dev_ready(), "%s came back on %s", dev_name(), netdev);
    cr_assert(TX_EVENTUALLY(rill_rdma_available() == 0), "the device is seen again");
    srv = tx_server(boss, workers, "rdma://0.0.0.0:0", tx_echo_init, NULL);
    rt_uri(uri, sizeof(uri), "rdma", rt_ip(), rt_server_port(srv));
    tx_collector_reset(ca);
    atomic_store(&ca->inactive, 0);
    a = tx_connect(clients, uri, client_init, ca);
    cr_assert(rill_channel_is_rdma(a));
    echo_once(a, ca, 4096, 4);
    echo_once(a, ca, 300000, 5); /* a rendezvous: registrations on the new device */
    tx_close(a);
    cr_assert(TX_EVENTUALLY(rill_server_child_count(srv) == 0), "the server's child closed");

    dev_delete();
    cr_assert(rill_channel_is_open(rill_server_listener(srv, 0)),
              "the wildcard listener is on no device: it stays");

    /* And back once more: the wildcard server takes a new client. */
    dev_add_back();
    cr_assert(dev_ready(), "%s came back on %s", dev_name(), netdev);
    tx_collector_reset(ca);
    a = tx_connect(clients, uri, client_init, ca);
    echo_once(a, ca, 4096, 6);
    tx_close(a);
    tx_server_free(srv, true);

    tx_group_free(clients);
    tx_group_free(workers);
    tx_group_free(boss);
    tx_collector_free(ca);
    tx_collector_free(cb);
}
