/* rxe_open: verbs-level check of an RDMA device, meant for the rxe guest
 * (scripts/rxe-vm/run.sh BUILD_DIR/tests/rdma/rxe_open).
 *
 * Lists the verbs devices, opens $RXE_VM_DEV (default: the first one),
 * queries it and port 1 (must be ACTIVE), then connects two RC QPs on that one
 * device to each other (GID index $RXE_VM_GID_INDEX, default 1: on rxe the
 * IPv4-mapped GID) and does one RDMA WRITE and one SEND/RECV between them,
 * checking the bytes.  Everything is destroyed before exit.
 *
 * Exit 0 on success; 1 with "rxe_open: FAIL: <verb>: <errno text>" otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <infiniband/verbs.h>

enum {
    BUF_SIZE = 4096,
    WRITE_OFF = 0, /* RDMA WRITE: a.buf[0..1023] -> b.buf[0..1023] */
    WRITE_LEN = 1024,
    SEND_OFF = 2048, /* SEND: a.buf[2048..] -> RECV into b.buf[2048..] */
    SEND_LEN = 512,
    CQ_DEPTH = 16,
    POLL_TIMEOUT_MS = 30000, /* TCG under load is slow; this is a hang guard */
};

enum { WR_WRITE = 1, WR_SEND = 2, WR_RECV = 3 };

struct side {
    const char *name;
    unsigned char *buf;
    struct ibv_mr *mr;
    struct ibv_qp *qp;
    uint32_t psn;
};

static const char *verb_failed;
static int verb_errno;

/* Record the first failure: which verb, which errno. */
static int fail(const char *verb, int err)
{
    if (!verb_failed) {
        verb_failed = verb;
        verb_errno = err ? err : EIO;
    }
    return -1;
}

/* Verbs that return an int: 0 ok, a positive errno (the documented
 * convention), or -1 with errno set (some providers / older libibverbs). */
static int check_rc(const char *verb, int rc)
{
    if (rc == 0)
        return 0;
    return fail(verb, rc > 0 ? rc : errno);
}

/* Verbs that return a pointer: NULL with errno set. */
static void *check_ptr(const char *verb, void *p)
{
    if (!p)
        fail(verb, errno);
    return p;
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rxe_open: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void gid_str(const union ibv_gid *gid, char *out, size_t n)
{
    const uint8_t *r = gid->raw;
    snprintf(out, n, "%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

/* Completions seen so far: one CQ serves both QPs, so a wait for one WR
 * may reap another's completion first; remember it by WR id. */
struct wc_log {
    unsigned seen; /* bit per WR id */
    uint32_t byte_len[4];
};

/* Wait (bounded) until the completion of WR id `want` has been seen. */
static int wait_wc(struct ibv_cq *cq, unsigned want, struct wc_log *log)
{
    long deadline = now_ms() + POLL_TIMEOUT_MS;

    while (!(log->seen & (1u << want))) {
        struct ibv_wc wc;
        int n = ibv_poll_cq(cq, 1, &wc);

        if (n < 0)
            return fail("ibv_poll_cq", n == -1 ? errno : -n);
        if (n == 0) {
            if (now_ms() > deadline) {
                fprintf(stderr, "rxe_open: no completion for wr_id %u after %d ms\n", want,
                        POLL_TIMEOUT_MS);
                return fail("ibv_poll_cq (timeout)", ETIMEDOUT);
            }
            struct timespec ts = { 0, 100000 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (wc.status != IBV_WC_SUCCESS) {
            fprintf(stderr,
                    "rxe_open: completion wr_id %" PRIu64
                    " failed: %s (status %d, vendor_err 0x%x)\n",
                    wc.wr_id, ibv_wc_status_str(wc.status), (int)wc.status, wc.vendor_err);
            return fail("work completion", EIO);
        }
        if (wc.wr_id < 4) {
            log->seen |= 1u << wc.wr_id;
            log->byte_len[wc.wr_id] = wc.byte_len;
        }
    }
    return 0;
}

static int to_init(struct ibv_qp *qp)
{
    struct ibv_qp_attr a = {
        .qp_state = IBV_QPS_INIT,
        .pkey_index = 0,
        .port_num = 1,
        .qp_access_flags =
            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ,
    };
    return check_rc("ibv_modify_qp(INIT)", ibv_modify_qp(qp, &a,
                                                         IBV_QP_STATE | IBV_QP_PKEY_INDEX |
                                                             IBV_QP_PORT | IBV_QP_ACCESS_FLAGS));
}

static int to_rtr(struct ibv_qp *qp, uint32_t dest_qpn, uint32_t dest_psn,
                  const union ibv_gid *dgid, int gid_index, enum ibv_mtu mtu)
{
    struct ibv_qp_attr a = {
        .qp_state = IBV_QPS_RTR,
        .path_mtu = mtu,
        .dest_qp_num = dest_qpn,
        .rq_psn = dest_psn,
        .max_dest_rd_atomic = 1,
        .min_rnr_timer = 12,
        .ah_attr = {
            .is_global = 1,
            .grh = { .dgid = *dgid, .sgid_index = (uint8_t)gid_index, .hop_limit = 1 },
            .sl = 0,
            .port_num = 1,
        },
    };
    return check_rc("ibv_modify_qp(RTR)",
                    ibv_modify_qp(qp, &a,
                                  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                      IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
                                      IBV_QP_MIN_RNR_TIMER));
}

static int to_rts(struct ibv_qp *qp, uint32_t psn)
{
    struct ibv_qp_attr a = {
        .qp_state = IBV_QPS_RTS,
        .timeout = 14,
        .retry_cnt = 7,
        .rnr_retry = 7,
        .sq_psn = psn,
        .max_rd_atomic = 1,
    };
    return check_rc("ibv_modify_qp(RTS)",
                    ibv_modify_qp(qp, &a,
                                  IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                      IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC));
}

static int create_side(struct side *s, struct ibv_pd *pd, struct ibv_cq *cq)
{
    s->buf = aligned_alloc(4096, BUF_SIZE);
    if (!s->buf)
        return fail("aligned_alloc", errno);
    memset(s->buf, 0, BUF_SIZE);

    s->mr = check_ptr("ibv_reg_mr", ibv_reg_mr(pd, s->buf, BUF_SIZE,
                                               IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                                                   IBV_ACCESS_REMOTE_READ));
    if (!s->mr)
        return -1;
    say("registered %d-byte MR for QP %s: lkey 0x%x rkey 0x%x", BUF_SIZE, s->name, s->mr->lkey,
        s->mr->rkey);

    struct ibv_qp_init_attr qa = {
        .send_cq = cq,
        .recv_cq = cq,
        .cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 },
        .qp_type = IBV_QPT_RC,
        .sq_sig_all = 0,
    };
    s->qp = check_ptr("ibv_create_qp", ibv_create_qp(pd, &qa));
    if (!s->qp)
        return -1;
    say("created RC QP %s: qp_num 0x%06x", s->name, s->qp->qp_num);
    return 0;
}

static int destroy_side(struct side *s)
{
    int rc = 0;
    if (s->qp && check_rc("ibv_destroy_qp", ibv_destroy_qp(s->qp)))
        rc = -1;
    if (s->mr && check_rc("ibv_dereg_mr", ibv_dereg_mr(s->mr)))
        rc = -1;
    free(s->buf);
    s->qp = NULL;
    s->mr = NULL;
    s->buf = NULL;
    return rc;
}

static int exchange(struct side *a, struct side *b, struct ibv_cq *cq)
{
    struct wc_log log = { 0 };

    /* Distinct patterns so a misplaced or stale byte shows. */
    for (int i = 0; i < WRITE_LEN; i++)
        a->buf[WRITE_OFF + i] = (unsigned char)(0x5a ^ (i * 7));
    for (int i = 0; i < SEND_LEN; i++)
        a->buf[SEND_OFF + i] = (unsigned char)(0xa5 ^ (i * 13));
    memset(b->buf, 0xee, BUF_SIZE);

    /* RDMA WRITE a -> b: the responder's CPU is not involved. */
    struct ibv_sge wsge = {
        .addr = (uintptr_t)(a->buf + WRITE_OFF),
        .length = WRITE_LEN,
        .lkey = a->mr->lkey,
    };
    struct ibv_send_wr wwr = {
        .wr_id = WR_WRITE,
        .sg_list = &wsge,
        .num_sge = 1,
        .opcode = IBV_WR_RDMA_WRITE,
        .send_flags = IBV_SEND_SIGNALED,
        .wr.rdma = { .remote_addr = (uintptr_t)(b->buf + WRITE_OFF), .rkey = b->mr->rkey },
    };
    struct ibv_send_wr *bad = NULL;
    if (check_rc("ibv_post_send(RDMA_WRITE)", ibv_post_send(a->qp, &wwr, &bad)))
        return -1;
    if (wait_wc(cq, WR_WRITE, &log))
        return -1;
    /* RC: the write completion means the responder acked it, so the data is
     * in b's memory. */
    if (memcmp(b->buf + WRITE_OFF, a->buf + WRITE_OFF, WRITE_LEN) != 0)
        return fail("RDMA WRITE data check", EBADMSG);
    say("RDMA WRITE %d bytes A -> B: ok, data verified", WRITE_LEN);

    /* SEND a -> RECV b. */
    struct ibv_sge rsge = {
        .addr = (uintptr_t)(b->buf + SEND_OFF),
        .length = BUF_SIZE - SEND_OFF,
        .lkey = b->mr->lkey,
    };
    struct ibv_recv_wr rwr = { .wr_id = WR_RECV, .sg_list = &rsge, .num_sge = 1 };
    struct ibv_recv_wr *rbad = NULL;
    if (check_rc("ibv_post_recv", ibv_post_recv(b->qp, &rwr, &rbad)))
        return -1;

    struct ibv_sge ssge = {
        .addr = (uintptr_t)(a->buf + SEND_OFF),
        .length = SEND_LEN,
        .lkey = a->mr->lkey,
    };
    struct ibv_send_wr swr = {
        .wr_id = WR_SEND,
        .sg_list = &ssge,
        .num_sge = 1,
        .opcode = IBV_WR_SEND,
        .send_flags = IBV_SEND_SIGNALED,
    };
    if (check_rc("ibv_post_send(SEND)", ibv_post_send(a->qp, &swr, &bad)))
        return -1;
    if (wait_wc(cq, WR_SEND, &log) || wait_wc(cq, WR_RECV, &log))
        return -1;
    uint32_t len = log.byte_len[WR_RECV];
    if (len != SEND_LEN) {
        fprintf(stderr, "rxe_open: RECV completion byte_len %u, expected %d\n", len, SEND_LEN);
        return fail("SEND/RECV length check", EBADMSG);
    }
    if (memcmp(b->buf + SEND_OFF, a->buf + SEND_OFF, SEND_LEN) != 0)
        return fail("SEND/RECV data check", EBADMSG);
    /* The WRITE region must be untouched by the RECV. */
    if (memcmp(b->buf + WRITE_OFF, a->buf + WRITE_OFF, WRITE_LEN) != 0)
        return fail("RDMA WRITE data re-check", EBADMSG);
    say("SEND/RECV %d bytes A -> B: ok, byte_len %u, data verified", SEND_LEN, len);
    return 0;
}

static int run(void)
{
    int ndev = 0, rc = -1;
    struct ibv_device **list = NULL;
    struct ibv_device *dev = NULL;
    struct ibv_context *ctx = NULL;
    struct ibv_pd *pd = NULL;
    struct ibv_cq *cq = NULL;
    struct side a = { .name = "A", .psn = 0x1a2b3c }, b = { .name = "B", .psn = 0x4d5e6f };
    const char *want = getenv("RXE_VM_DEV");
    const char *gi = getenv("RXE_VM_GID_INDEX");
    int gid_index = 1;

    if (gi && *gi) {
        char *end;
        long v = strtol(gi, &end, 10);
        if (*end || v < 0 || v > 255) {
            fprintf(stderr, "rxe_open: bad RXE_VM_GID_INDEX '%s'\n", gi);
            return fail("argument check", EINVAL);
        }
        gid_index = (int)v;
    }

    list = check_ptr("ibv_get_device_list", ibv_get_device_list(&ndev));
    if (!list)
        return -1;
    say("%d verbs device(s)", ndev);
    for (int i = 0; i < ndev; i++) {
        __be64 guid = ibv_get_device_guid(list[i]); /* network byte order */
        const uint8_t *g = (const uint8_t *)&guid;
        say("  %s (node GUID %02x%02x:%02x%02x:%02x%02x:%02x%02x)", ibv_get_device_name(list[i]),
            g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
        if (!dev && (!want || !*want || strcmp(want, ibv_get_device_name(list[i])) == 0))
            dev = list[i];
    }
    if (!dev) {
        fprintf(stderr, "rxe_open: device '%s' not found\n", want && *want ? want : "(any)");
        fail("ibv_get_device_list (device lookup)", ENODEV);
        goto out;
    }

    ctx = check_ptr("ibv_open_device", ibv_open_device(dev));
    if (!ctx)
        goto out;
    say("opened %s", ibv_get_device_name(dev));

    struct ibv_device_attr da;
    if (check_rc("ibv_query_device", ibv_query_device(ctx, &da)))
        goto out;
    say("device: fw %s, %u port(s), max_qp %d, max_cq %d, max_mr %d, max_mr_size %" PRIu64,
        da.fw_ver[0] ? da.fw_ver : "-", da.phys_port_cnt, da.max_qp, da.max_cq, da.max_mr,
        (uint64_t)da.max_mr_size);

    struct ibv_port_attr pa;
    if (check_rc("ibv_query_port", ibv_query_port(ctx, 1, &pa)))
        goto out;
    say("port 1: %s, active_mtu %d, link_layer %s, gid_tbl_len %d", ibv_port_state_str(pa.state),
        128 << pa.active_mtu, pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand",
        pa.gid_tbl_len);
    if (pa.state != IBV_PORT_ACTIVE) {
        fprintf(stderr, "rxe_open: port 1 is %s, not ACTIVE\n", ibv_port_state_str(pa.state));
        fail("ibv_query_port (port state)", ENETDOWN);
        goto out;
    }

    union ibv_gid gid;
    if (check_rc("ibv_query_gid", ibv_query_gid(ctx, 1, gid_index, &gid)))
        goto out;
    char gs[40];
    gid_str(&gid, gs, sizeof gs);
    say("GID[%d] = %s", gid_index, gs);
    static const uint8_t zero[16];
    if (memcmp(gid.raw, zero, sizeof zero) == 0) {
        fprintf(stderr, "rxe_open: GID index %d is empty (set RXE_VM_GID_INDEX)\n", gid_index);
        fail("ibv_query_gid (empty GID)", ENOENT);
        goto out;
    }

    pd = check_ptr("ibv_alloc_pd", ibv_alloc_pd(ctx));
    if (!pd)
        goto out;
    say("allocated PD");
    cq = check_ptr("ibv_create_cq", ibv_create_cq(ctx, CQ_DEPTH, NULL, NULL, 0));
    if (!cq)
        goto out;
    say("created CQ (%d entries)", cq->cqe);

    if (create_side(&a, pd, cq) || create_side(&b, pd, cq))
        goto out;

    /* rxe: loopback through the same port; MTU capped so the path works on
     * any RoCE link. */
    enum ibv_mtu mtu = pa.active_mtu < IBV_MTU_1024 ? pa.active_mtu : IBV_MTU_1024;
    if (to_init(a.qp) || to_init(b.qp) || to_rtr(a.qp, b.qp->qp_num, b.psn, &gid, gid_index, mtu) ||
        to_rtr(b.qp, a.qp->qp_num, a.psn, &gid, gid_index, mtu) || to_rts(a.qp, a.psn) ||
        to_rts(b.qp, b.psn))
        goto out;
    say("QPs A 0x%06x <-> B 0x%06x connected (INIT -> RTR -> RTS, GID index %d, MTU %d)",
        a.qp->qp_num, b.qp->qp_num, gid_index, 128 << mtu);

    if (exchange(&a, &b, cq))
        goto out;
    rc = 0;

out:
    /* Tear down in reverse, recording (but not stopping at) failures. */
    if (destroy_side(&b) | destroy_side(&a))
        rc = -1;
    if (cq && check_rc("ibv_destroy_cq", ibv_destroy_cq(cq)))
        rc = -1;
    if (pd && check_rc("ibv_dealloc_pd", ibv_dealloc_pd(pd)))
        rc = -1;
    if (ctx && check_rc("ibv_close_device", ibv_close_device(ctx)))
        rc = -1;
    if (list)
        ibv_free_device_list(list);
    if (rc == 0)
        say("destroyed QPs, MRs, CQ, PD; closed device");
    return rc;
}

int main(void)
{
    if (run() != 0 || verb_failed) {
        fprintf(stderr, "rxe_open: FAIL: %s: %s (errno %d)\n",
                verb_failed ? verb_failed : "unknown step", strerror(verb_errno), verb_errno);
        return 1;
    }
    say("PASS");
    return 0;
}
