/* Discovery through the static registry: names are checked, watchers see
 * every change, and a pool fed by a watch follows the list while calls go
 * on (two servers, one withdrawn, then back).
 *
 * rill-test-labels: threaded
 */
#include "rill/rpc_discovery.h"
#include "tests/rpc/pool_test.h"
#include "util/testutil.h"

TestSuite(rpc_discovery, .timeout = 60, .fini = rill_test_no_leaks);

struct seen {
    int calls;
    size_t n;
    char eps[4][64];
};

static void record(void *arg, const char *const *eps, size_t n)
{
    struct seen *s = arg;
    s->calls++;
    s->n = n;
    for (size_t i = 0; i < n && i < 4; i++)
        snprintf(s->eps[i], sizeof(s->eps[i]), "%s", eps[i]);
}

Test(rpc_discovery, static_registry_tells_watchers)
{
    struct rill_rpc_registry *r;
    cr_assert_eq(rill_rpc_registry_static_new(&r), 0);
    cr_assert_eq(rill_rpc_registry_register(r, "echo", "v1", "127.0.0.1:7000"), 0);
    struct seen a = { 0 }, b = { 0 };
    struct rill_rpc_watch *wa, *wb;
    cr_assert_eq(rill_rpc_registry_watch(r, "echo", "v1", record, &a, &wa), 0);
    cr_assert_eq(rill_rpc_registry_watch(r, "echo", "v2", record, &b, &wb), 0);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.n, 1);
    cr_assert_str_eq(a.eps[0], "127.0.0.1:7000");
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(b.n, 0);
    cr_assert_eq(rill_rpc_registry_register(r, "echo", "v1", "127.0.0.1:7001"), 0);
    cr_assert_eq(rill_rpc_registry_register(r, "echo", "v1", "127.0.0.1:7001"), -EEXIST);
    cr_assert_eq(a.calls, 2);
    cr_assert_eq(a.n, 2);
    cr_assert_str_eq(a.eps[1], "127.0.0.1:7001");
    cr_assert_eq(b.calls, 1, "another version is another list");
    cr_assert_eq(rill_rpc_registry_unregister(r, "echo", "v1", "127.0.0.1:7000"), 0);
    cr_assert_eq(rill_rpc_registry_unregister(r, "echo", "v1", "127.0.0.1:7000"), -ENOENT);
    cr_assert_eq(a.n, 1);
    cr_assert_str_eq(a.eps[0], "127.0.0.1:7001");
    rill_rpc_registry_unwatch(r, wa);
    cr_assert_eq(rill_rpc_registry_register(r, "echo", "v1", "127.0.0.1:7002"), 0);
    cr_assert_eq(a.calls, 3, "no call after unwatch");
    /* Bad names. */
    cr_assert_eq(rill_rpc_registry_register(r, "", "v1", "127.0.0.1:1"), -EINVAL);
    cr_assert_eq(rill_rpc_registry_register(r, "a/b", "v1", "127.0.0.1:1"), -EINVAL);
    cr_assert_eq(rill_rpc_registry_register(r, "echo", "v1", "127.0.0.1"), -EINVAL);
    cr_assert_eq(rill_rpc_registry_register(r, "echo", "v1", "127.0.0.1:x"), -EINVAL);
    cr_assert_eq(rill_rpc_registry_watch(r, "echo", NULL, record, &a, &wa), -EINVAL);
    rill_rpc_registry_free(r); /* frees wb too */
}

static int count_eps(struct rill_rpc_pool *p)
{
    return (int)rill_rpc_pool_endpoints(p, NULL, 0);
}

Test(rpc_discovery, pool_follows_the_registry)
{
    struct pt_srv s[2];
    pt_srv_up(&s[0], "A");
    pt_srv_up(&s[1], "B");
    char hp[2][64];
    for (int i = 0; i < 2; i++)
        snprintf(hp[i], sizeof(hp[i]), "127.0.0.1:%d", s[i].port);
    struct rill_rpc_registry *r;
    cr_assert_eq(rill_rpc_registry_static_new(&r), 0);
    struct rill_loop_group *g = tx_group("pool", 1);
    struct rill_rpc_pool *p = pt_pool(g, NULL);
    struct rill_rpc_watch *w;
    cr_assert_eq(rill_rpc_pool_watch(p, r, "t", "v1", &w), 0);
    cr_assert_eq(count_eps(p), 0);
    cr_assert_eq(rill_rpc_registry_register(r, "t", "v1", hp[0]), 0);
    cr_assert_eq(rill_rpc_registry_register(r, "t", "v1", hp[1]), 0);
    cr_assert_eq(count_eps(p), 2);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(pt_call(p, NULL, "who", true, NULL, 0, NULL), 0);
    cr_assert_eq(atomic_load(&s[0].who_calls), 5);
    cr_assert_eq(atomic_load(&s[1].who_calls), 5);
    cr_assert_eq(rill_rpc_registry_unregister(r, "t", "v1", hp[0]), 0);
    cr_assert_eq(count_eps(p), 1);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(pt_call(p, NULL, "who", true, NULL, 0, NULL), 0);
    cr_assert_eq(atomic_load(&s[0].who_calls), 5, "A left the list");
    cr_assert_eq(atomic_load(&s[1].who_calls), 15);
    cr_assert_eq(rill_rpc_registry_register(r, "t", "v1", hp[0]), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(pt_call(p, NULL, "who", true, NULL, 0, NULL), 0);
    cr_assert_eq(atomic_load(&s[0].who_calls), 10, "A is back");
    rill_rpc_registry_unwatch(r, w);
    rill_rpc_registry_free(r);
    rill_rpc_pool_free(p);
    tx_group_free(g);
    pt_srv_down(&s[0]);
    pt_srv_down(&s[1]);
}
