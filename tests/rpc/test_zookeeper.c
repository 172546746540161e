/* Discovery through a real ZooKeeper started by the test (temp data dir,
 * free loopback port, killed at the end even on failure): two server
 * processes (examples/rpc_discover server) register ephemeral nodes, a
 * pool sees both, one is killed with -9, its node goes when its session
 * times out, and calls keep succeeding on the other all along.
 *
 * rill-test-labels: threaded
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>

#include "rill/rpc_discovery.h"
#include "tests/rpc/pool_test.h"
#include "util/testutil.h"

static pid_t pids[3]; /* ZooKeeper, two servers */
static char datadir[64];

static void kill_all(void)
{
    for (int i = 0; i < 3; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
    }
    if (datadir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", datadir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", datadir);
        datadir[0] = 0;
    }
}

static void zk_fini(void)
{
    kill_all();
    rill_test_no_leaks();
}

TestSuite(rpc_zookeeper, .timeout = 120, .fini = zk_fini);

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    socklen_t sl = sizeof(sin);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static pid_t spawn(char *const argv[], int out_fd)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (out_fd >= 0)
            dup2(out_fd, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int zk_start(void)
{
    snprintf(datadir, sizeof(datadir), "/tmp/rill-zk-XXXXXX");
    cr_assert_not_null(mkdtemp(datadir));
    int port = free_port();
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "%s/zoo.cfg", datadir);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    /* minSessionTimeout lets the servers ask for a short session. */
    fprintf(f,
            "tickTime=500\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
            "minSessionTimeout=1000\nmaxSessionTimeout=10000\nadmin.enableServer=false\n",
            datadir, port);
    fclose(f);
    char *argv[] = { "/usr/bin/java",
                     "-Xmx256m",
                     "-Dzookeeper.admin.enableServer=false",
                     "-cp",
                     "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
                     "org.apache.zookeeper.server.ZooKeeperServerMain",
                     cfg,
                     NULL };
    int devnull = open("/dev/null", O_WRONLY);
    pids[0] = spawn(argv, devnull);
    close(devnull);
    /* Up when the port accepts. */
    uint64_t until = rill_clock_now_ns() + 60 * RILL_NS_PER_S;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
        int ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        close(fd);
        if (ok)
            return port;
        cr_assert_eq(waitpid(pids[0], NULL, WNOHANG), 0, "ZooKeeper exited");
        cr_assert_lt(rill_clock_now_ns(), until, "ZooKeeper did not start within 60 s");
        usleep(100 * 1000);
    }
}

/* Start examples/rpc_discover server; returns its port once it printed
 * "ready port=N". */
static int server_start(int slot, const char *zk)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    char exe[512];
    snprintf(exe, sizeof(exe), "%s/rpc_discover", RILL_EXAMPLES_DIR);
    char *argv[] = { exe, "server", "--zk", (char *)zk, "--session-ms", "2000", NULL };
    pids[slot] = spawn(argv, p[1]);
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    char line[128] = "";
    int port = 0;
    if (fgets(line, sizeof(line), f))
        sscanf(line, "ready port=%d", &port);
    fclose(f);
    cr_assert_gt(port, 0, "server did not start: \"%s\"", line);
    return port;
}

Test(rpc_zookeeper, servers_register_and_a_dead_one_goes_away)
{
    if (access("/usr/share/java/zookeeper.jar", R_OK) != 0 || access("/usr/bin/java", X_OK) != 0)
        cr_skip_test("*** ZooKeeper server (zookeeper package) or java not installed: SKIPPED ***");
    struct rill_rpc_registry *reg = NULL;
    int rc = rill_rpc_registry_zookeeper_new("", 1000, &reg); /* -EINVAL when built with it */
    if (rc == -ENOTSUP)
        cr_skip_test("*** rill was built WITHOUT ZooKeeper (RILL_ZOOKEEPER=OFF): the ZooKeeper "
                     "discovery test is SKIPPED ***");
    int zport = zk_start();
    char zk[32];
    snprintf(zk, sizeof(zk), "127.0.0.1:%d", zport);
    int port1 = server_start(1, zk);
    int port2 = server_start(2, zk);

    cr_assert_eq(rill_rpc_registry_zookeeper_new(zk, 4000, &reg), 0);
    struct rill_loop_group *g = tx_group("pool", 1);
    struct rill_rpc_pool_opts o;
    rill_rpc_pool_opts_init(&o);
    o.max_attempts = 4;
    o.backoff_initial_ns = 20 * RILL_NS_PER_MS;
    o.backoff_max_ns = 200 * RILL_NS_PER_MS;
    struct rill_rpc_pool *p = pt_pool(g, &o);
    struct rill_rpc_watch *w;
    cr_assert_eq(rill_rpc_pool_watch(p, reg, "echo.Echo", "v1", &w), 0);
    cr_assert(TX_EVENTUALLY(rill_rpc_pool_endpoints(p, NULL, 0) == 2), "the pool sees both");

    char u1[64], u2[64];
    snprintf(u1, sizeof(u1), "tcp://127.0.0.1:%d", port1);
    snprintf(u2, sizeof(u2), "tcp://127.0.0.1:%d", port2);
    int hits[2] = { 0, 0 };
    struct rill_rpc_call_opts co;
    rill_rpc_call_opts_init(&co);
    co.idempotent = true;
    co.timeout_ns = 10 * RILL_NS_PER_S;
    for (int i = 0; i < 10; i++) {
        struct rill_rpc_pool_call *c;
        cr_assert_eq(
            rill_rpc_pool_call_sync(p, NULL, "echo.Echo", "say", rt_buf("hi"), &co, TX_WAIT_NS, &c),
            0);
        hits[0] += !strcmp(rill_rpc_pool_call_endpoint(c), u1);
        hits[1] += !strcmp(rill_rpc_pool_call_endpoint(c), u2);
        rill_rpc_pool_call_release(c);
    }
    cr_assert_eq(hits[0], 5);
    cr_assert_eq(hits[1], 5);

    kill(pids[1], SIGKILL);
    waitpid(pids[1], NULL, 0);
    pids[1] = 0;
    /* Calls go on while the node is still there (session not yet timed
     * out): the dead endpoint is marked down or retried elsewhere. */
    uint64_t until = rill_clock_now_ns() + 30 * RILL_NS_PER_S;
    int calls = 0;
    while (rill_rpc_pool_endpoints(p, NULL, 0) != 1) {
        cr_assert_lt(rill_clock_now_ns(), until, "the ephemeral node did not go away");
        struct rill_rpc_pool_call *c;
        cr_assert_eq(
            rill_rpc_pool_call_sync(p, NULL, "echo.Echo", "say", rt_buf("hi"), &co, TX_WAIT_NS, &c),
            0, "call %d during the failover", calls);
        cr_assert_str_eq(rill_rpc_pool_call_endpoint(c), u2);
        rill_rpc_pool_call_release(c);
        calls++;
        usleep(50 * 1000);
    }
    char buf[128];
    rill_rpc_pool_endpoints(p, buf, sizeof(buf));
    cr_assert_str_eq(buf, u2);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(pt_call(p, NULL, "say", true, NULL, 0, NULL), -ENOSYS,
                     "service t is not there: UNIMPLEMENTED from the survivor");
    rill_rpc_registry_unwatch(reg, w);
    rill_rpc_registry_free(reg);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    kill_all();
}
