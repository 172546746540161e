/* A listener checks the connect private data (rill's hello) and rejects a
 * peer that is not rill, speaks another protocol version, or asks for
 * absurd receive parameters, with a reason the peer can read; the server
 * goes on serving rill clients. The peers here are raw rdma_cm clients, so
 * the bytes on the wire are exactly what the test says.
 *
 * rill-test-labels: guest */
#include <arpa/inet.h>
#include <rdma/rdma_cma.h>

#include "tests/rdma/rdma_test.h"

TestSuite(reject, .timeout = 240, .fini = rill_test_no_leaks);

/* Wait for the next CM event on @ec (blocking, bounded by rdma_cm's own
 * timeouts); returns its type, copies private data into @pd. */
static enum rdma_cm_event_type next_event(struct rdma_event_channel *ec, uint8_t *pd,
                                          uint8_t *pdlen, int *status)
{
    struct rdma_cm_event *ev;
    cr_assert_eq(rdma_get_cm_event(ec, &ev), 0, "rdma_get_cm_event: %s", strerror(errno));
    enum rdma_cm_event_type t = ev->event;
    *status = ev->status;
    *pdlen = 0;
    if (pd && ev->param.conn.private_data && ev->param.conn.private_data_len) {
        *pdlen = ev->param.conn.private_data_len;
        memcpy(pd, ev->param.conn.private_data, *pdlen);
    }
    rdma_ack_cm_event(ev);
    return t;
}

/* Connect to @ip:@port with @hello as private data; returns the event
 * that answers the connect, with the peer's private data in @pd. */
static enum rdma_cm_event_type raw_connect(const char *ip, int port, const void *hello,
                                           uint8_t hlen, uint8_t *pd, uint8_t *pdlen)
{
    struct rdma_event_channel *ec = rdma_create_event_channel();
    cr_assert_not_null(ec);
    struct rdma_cm_id *id;
    cr_assert_eq(rdma_create_id(ec, &id, NULL, RDMA_PS_TCP), 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    int st;
    cr_assert_eq(rdma_resolve_addr(id, NULL, (struct sockaddr *)&sa, 5000), 0);
    cr_assert_eq(next_event(ec, NULL, pdlen, &st), RDMA_CM_EVENT_ADDR_RESOLVED);
    cr_assert_eq(rdma_resolve_route(id, 5000), 0);
    cr_assert_eq(next_event(ec, NULL, pdlen, &st), RDMA_CM_EVENT_ROUTE_RESOLVED);
    struct ibv_qp_init_attr qa = {
        .cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 },
        .qp_type = IBV_QPT_RC,
    };
    cr_assert_eq(rdma_create_qp(id, NULL, &qa), 0, "rdma_create_qp: %s", strerror(errno));
    struct rdma_conn_param p = {
        .private_data = hello, .private_data_len = hlen, .retry_count = 7, .rnr_retry_count = 7
    };
    cr_assert_eq(rdma_connect(id, &p), 0);
    enum rdma_cm_event_type t = next_event(ec, pd, pdlen, &st);
    if (t == RDMA_CM_EVENT_ESTABLISHED) {
        rdma_disconnect(id);
        next_event(ec, NULL, &(uint8_t){ 0 }, &st); /* DISCONNECTED */
    }
    rdma_destroy_qp(id);
    rdma_destroy_id(id);
    rdma_destroy_event_channel(ec);
    return t;
}

static void hello(uint8_t out[16], uint32_t magic, uint8_t version, uint32_t depth, uint32_t size)
{
    uint32_t v[4] = { htonl(magic), 0, htonl(depth), htonl(size) };
    memcpy(out, v, 16);
    out[4] = version;
}

/* The reject's reason: magic "RILR", -errno, a text. */
static void expect_reason(const uint8_t *pd, uint8_t len, const char *want)
{
    cr_assert_geq(len, 72, "the reject carries rill's reason (%u bytes)", len);
    uint32_t magic, err;
    memcpy(&magic, pd, 4);
    memcpy(&err, pd + 4, 4);
    cr_assert_eq(ntohl(magic), 0x52494c52u, "reject magic");
    cr_assert_lt((int32_t)ntohl(err), 0, "an error code");
    char why[65];
    memcpy(why, pd + 8, 64);
    why[64] = '\0';
    cr_assert(strstr(why, want), "reason \"%s\" names \"%s\"", why, want);
}

Test(reject, bad_hellos_are_rejected_with_a_reason)
{
    const char *ip = rt_ip();
    struct rill_loop_group *boss = tx_group("boss", 1), *work = tx_group("work", 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, 0);
    struct rill_server *srv = tx_server(boss, work, uri, tx_echo_init, NULL);
    int port = rt_server_port(srv);
    uint8_t h[16], pd[256], len;

    static const struct {
        uint32_t magic;
        uint8_t version;
        uint32_t depth, size;
        const char *reason;
    } bad[] = {
        { 0x12345678u, 1, 64, 16384, "magic" },
        { 0x52494c52u, 9, 64, 16384, "version" },
        { 0x52494c52u, 1, 1, 16384, "depth" },
        { 0x52494c52u, 1, 64, 8, "size" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hello(h, bad[i].magic, bad[i].version, bad[i].depth, bad[i].size);
        cr_assert_eq(raw_connect(ip, port, h, sizeof(h), pd, &len), RDMA_CM_EVENT_REJECTED,
                     "a hello with a bad %s is rejected", bad[i].reason);
        expect_reason(pd, len, bad[i].reason);
    }

    /* No private data: the CM pads the request with zeros, so it reads as a
     * wrong magic. */
    cr_assert_eq(raw_connect(ip, port, NULL, 0, pd, &len), RDMA_CM_EVENT_REJECTED);
    expect_reason(pd, len, "rill");

    /* A rill client is still served, and the rejected ones left no child. */
    rt_uri(uri, sizeof(uri), "rdma", ip, port);
    struct tx_collector *c = tx_collector_new(1000);
    struct rill_channel *ch = tx_connect(work, uri, tx_collector_init, c);
    rill_channel_write_and_flush(ch, rill_buf_msg(rt_pattern(1000, 0, 4)), NULL);
    cr_assert(TX_EVENTUALLY(atomic_load(&c->got) == 1000));
    cr_assert_eq(rt_check(c->data, 1000, 0, 4), -1);
    cr_assert_eq(rill_server_accepted(srv), 1, "only the rill client became a channel");
    tx_close(ch);
    tx_collector_free(c);
    tx_server_free(srv, true);
    tx_group_free(work);
    tx_group_free(boss);
}

Test(reject, a_rill_client_reads_the_reason)
{
    /* The same check from rill's side: a rill client whose receive size the
     * server cannot accept is never made; here the server's own limit is
     * simulated by a raw listener that rejects with rill's reason. */
    const char *ip = rt_ip();
    struct rdma_event_channel *ec = rdma_create_event_channel();
    cr_assert_not_null(ec);
    struct rdma_cm_id *lid;
    cr_assert_eq(rdma_create_id(ec, &lid, NULL, RDMA_PS_TCP), 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    cr_assert_eq(rdma_bind_addr(lid, (struct sockaddr *)&sa), 0);
    cr_assert_eq(rdma_listen(lid, 4), 0);
    int port = ntohs(rdma_get_src_port(lid));

    struct rill_loop_group *g = tx_group("client", 1);
    char uri[RILL_ADDR_STRLEN];
    rt_uri(uri, sizeof(uri), "rdma", ip, port);
    struct rill_client_opts co;
    rill_client_opts_init(&co);
    co.group = g;
    co.init = tx_echo_init;
    struct rill_promise *f;
    cr_assert_eq(rill_client_connect(&co, uri, &f), 0);

    struct rdma_cm_event *ev;
    cr_assert_eq(rdma_get_cm_event(ec, &ev), 0);
    cr_assert_eq(ev->event, RDMA_CM_EVENT_CONNECT_REQUEST);
    struct rdma_cm_id *cid = ev->id;
    cr_assert_geq(ev->param.conn.private_data_len, 16, "rill's hello is in the request");
    uint32_t magic;
    memcpy(&magic, ev->param.conn.private_data, 4);
    cr_assert_eq(ntohl(magic), 0x52494c52u);
    rdma_ack_cm_event(ev);
    uint8_t rej[72] = { 0 };
    uint32_t m = htonl(0x52494c52u), e = htonl((uint32_t)-EMSGSIZE);
    memcpy(rej, &m, 4);
    memcpy(rej + 4, &e, 4);
    strcpy((char *)rej + 8, "receive size too large for this server");
    cr_assert_eq(rdma_reject(cid, rej, sizeof(rej)), 0);
    rdma_destroy_id(cid);

    int rc = rill_promise_wait(f, TX_WAIT_NS);
    cr_assert_eq(rc, -EMSGSIZE, "the connect fails with the server's code: %s", rill_strerror(rc));
    rill_promise_release(f);
    tx_group_free(g);
    rdma_destroy_id(lid);
    rdma_destroy_event_channel(ec);
}
