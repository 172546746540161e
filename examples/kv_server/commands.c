/* The commands: the table (name, Redis's arity, how it is routed) and
 * their implementations. Single-key commands run on their shard's loop;
 * multi-key ones run as one part per shard (kv_part) whose results
 * kv_multi_reply gathers; keyless ones run on the connection's loop. Error
 * texts are Redis 7's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"
#include "rill/buf.h"
#include "rill/clock.h"
#include "rill/encoder.h"
#include "rill/resp.h"

#define E_NOTINT   "ERR value is not an integer or out of range"
#define E_SYNTAX   "ERR syntax error"
#define E_OVERFLOW "ERR increment or decrement would overflow"

static inline const char *arg(struct rill_resp *c, size_t i, size_t *len)
{
    return rill_resp_arg(c, i, len);
}

static bool is(const char *a, size_t len, const char *lit)
{
    return len == strlen(lit) && strncasecmp(a, lit, len) == 0;
}

static bool arg_is(struct rill_resp *c, size_t i, const char *lit)
{
    size_t len;
    const char *a = arg(c, i, &len);
    return is(a, len, lit);
}

static bool arg_ll(struct rill_resp *c, size_t i, int64_t *v)
{
    size_t len;
    const char *a = arg(c, i, &len);
    return rill_resp_parse_i64(a, len, v) == 0;
}

static void err(struct kv_exec *x, const char *s)
{
    rill_resp_put_error(*x->out, s, strlen(s));
}

static void ok(struct kv_exec *x)
{
    rill_resp_put_simple(*x->out, "OK", 2);
}

static void reply_item(struct rill_buf **out, const struct kv_item *it, int proto)
{
    if (!it)
        rill_resp_put_null(*out, proto);
    else if (it->big)
        rill_resp_put_bulk_buf(out, rill_buf_retain(it->big));
    else
        rill_resp_put_bulk(*out, kv_value(it), it->vlen);
}

/* Store the value: small ones inside the item, large ones in a buffer of
 * their own (one copy; GET then replies with it without copying). */
static int store(struct kv_shard *sh, const char *k, size_t klen, uint64_t h, const char *v,
                 size_t vlen, bool keep_ttl, int64_t exp)
{
    struct rill_buf *big = NULL;
    if (vlen >= KV_BIG_VALUE) {
        int rc = rill_buf_copy_from(v, vlen, &big);
        if (rc)
            return rc;
    }
    int rc = kv_set(sh, k, klen, h, v, vlen, big, keep_ttl, exp);
    if (rc && big)
        rill_buf_release(big);
    return rc;
}

/* ---- keyless ---- */

static void cmd_ping(struct kv_exec *x, struct rill_resp *c)
{
    size_t argc = rill_resp_argc(c), len;
    if (argc > 2) {
        err(x, "ERR wrong number of arguments for 'ping' command");
    } else if (argc == 2) {
        const char *a = arg(c, 1, &len);
        rill_resp_put_bulk(*x->out, a, len);
    } else {
        rill_resp_put_simple(*x->out, "PONG", 4);
    }
}

static void cmd_echo(struct kv_exec *x, struct rill_resp *c)
{
    size_t len;
    const char *a = arg(c, 1, &len);
    rill_resp_put_bulk(*x->out, a, len);
}

static void cmd_quit(struct kv_exec *x, struct rill_resp *c)
{
    ok(x);
    kv_conn_quit(x->conn);
}

static void cmd_select(struct kv_exec *x, struct rill_resp *c)
{
    int64_t db;
    if (!arg_ll(c, 1, &db))
        err(x, E_NOTINT);
    else if (db != 0)
        err(x, "ERR DB index is out of range");
    else
        ok(x);
}

static void put_str(struct rill_buf *out, const char *s)
{
    rill_resp_put_bulk(out, s, strlen(s));
}

static void cmd_hello(struct kv_exec *x, struct rill_resp *c)
{
    size_t argc = rill_resp_argc(c), len;
    int proto = x->proto;
    size_t i = 1;
    if (argc >= 2) {
        int64_t v;
        if (!arg_ll(c, 1, &v)) {
            err(x, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (v < 2 || v > 3) {
            err(x, "NOPROTO unsupported protocol version");
            return;
        }
        proto = (int)v;
        i = 2;
    }
    const char *name = NULL;
    size_t nlen = 0;
    for (; i < argc; i++) {
        if (arg_is(c, i, "AUTH") && i + 2 < argc) {
            i += 2; /* no passwords here: any credentials are fine */
        } else if (arg_is(c, i, "SETNAME") && i + 1 < argc) {
            name = arg(c, ++i, &nlen);
        } else {
            const char *a = arg(c, i, &len);
            rill_resp_put_errorf(*x->out, "ERR Syntax error in HELLO option '%.*s'", (int)len, a);
            return;
        }
    }
    if (name && kv_conn_set_name(x->conn, name, nlen) != 0) {
        err(x, "ERR Client names cannot contain spaces, newlines or special characters.");
        return;
    }
    kv_conn_set_proto(x->conn, proto);
    x->proto = proto;
    struct rill_buf *o = *x->out;
    rill_resp_put_agg(o, proto, RILL_RESP_MAP, 7);
    put_str(o, "server");
    put_str(o, "redis");
    put_str(o, "version");
    put_str(o, "7.0.15");
    put_str(o, "proto");
    rill_resp_put_int(o, proto);
    put_str(o, "id");
    rill_resp_put_int(o, (int64_t)kv_conn_id(x->conn));
    put_str(o, "mode");
    put_str(o, "standalone");
    put_str(o, "role");
    put_str(o, "master");
    put_str(o, "modules");
    rill_resp_put_agg(o, proto, RILL_RESP_ARRAY, 0);
}

static void cmd_client(struct kv_exec *x, struct rill_resp *c)
{
    size_t argc = rill_resp_argc(c), len;
    const char *sub = arg(c, 1, &len);
    if (is(sub, len, "SETNAME")) {
        if (argc != 3) {
            err(x, "ERR wrong number of arguments for 'client|setname' command");
            return;
        }
        size_t nlen;
        const char *name = arg(c, 2, &nlen);
        if (kv_conn_set_name(x->conn, name, nlen) != 0)
            err(x, "ERR Client names cannot contain spaces, newlines or special characters.");
        else
            ok(x);
    } else if (is(sub, len, "GETNAME")) {
        size_t nlen;
        const char *name = kv_conn_name(x->conn, &nlen);
        if (argc != 2)
            err(x, "ERR wrong number of arguments for 'client|getname' command");
        else if (nlen)
            rill_resp_put_bulk(*x->out, name, nlen);
        else
            rill_resp_put_null(*x->out, x->proto);
    } else if (is(sub, len, "ID") && argc == 2) {
        rill_resp_put_int(*x->out, (int64_t)kv_conn_id(x->conn));
    } else if (is(sub, len, "SETINFO") && argc == 4) {
        ok(x); /* newer clients announce their library; nothing to keep */
    } else {
        rill_resp_put_errorf(*x->out, "ERR unknown subcommand '%.*s'. Try CLIENT HELP.", (int)len,
                             sub);
    }
}

static void cmd_config(struct kv_exec *x, struct rill_resp *c)
{
    size_t argc = rill_resp_argc(c), len;
    const char *sub = arg(c, 1, &len);
    if (is(sub, len, "GET")) {
        if (argc < 3) {
            err(x, "ERR wrong number of arguments for 'config|get' command");
            return;
        }
        char port[16];
        snprintf(port, sizeof(port), "%d", kv_conn_server(x->conn)->port);
        const char *params[][2] = { { "save", "" },       { "appendonly", "no" },
                                    { "databases", "1" }, { "maxmemory", "0" },
                                    { "port", port },     { "proto-max-bulk-len", "536870912" } };
        size_t n = RILL_ARRAY_SIZE(params);
        bool hit[RILL_ARRAY_SIZE(params)] = { false };
        size_t nhit = 0;
        for (size_t i = 2; i < argc; i++) {
            size_t plen;
            const char *pat = arg(c, i, &plen);
            char low[128];
            if (plen >= sizeof(low))
                continue;
            for (size_t k = 0; k < plen; k++)
                low[k] = (char)(pat[k] >= 'A' && pat[k] <= 'Z' ? pat[k] + 32 : pat[k]);
            for (size_t k = 0; k < n; k++)
                if (!hit[k] && kv_glob(low, plen, params[k][0], strlen(params[k][0])))
                    hit[k] = true, nhit++;
        }
        rill_resp_put_agg(*x->out, x->proto, RILL_RESP_MAP, nhit);
        for (size_t k = 0; k < n; k++) {
            if (hit[k]) {
                put_str(*x->out, params[k][0]);
                put_str(*x->out, params[k][1]);
            }
        }
    } else if (is(sub, len, "SET") && argc >= 4) {
        size_t plen;
        const char *p = arg(c, 2, &plen);
        rill_resp_put_errorf(*x->out,
                             "ERR Unknown option or number of arguments for CONFIG SET - '%.*s'",
                             (int)plen, p);
    } else if (is(sub, len, "RESETSTAT") && argc == 2) {
        ok(x);
    } else {
        rill_resp_put_errorf(*x->out, "ERR unknown subcommand '%.*s'. Try CONFIG HELP.", (int)len,
                             sub);
    }
}

static void command_entry(struct rill_buf *o, int proto, const struct kv_cmd *k)
{
    rill_resp_put_agg(o, proto, RILL_RESP_ARRAY, 6);
    put_str(o, k->name);
    rill_resp_put_int(o, k->arity);
    rill_resp_put_agg(o, proto, RILL_RESP_SET, 0);
    int first = k->kind == KV_KEYLESS ? 0 : 1;
    rill_resp_put_int(o, first);
    rill_resp_put_int(o, k->kind == KV_MULTI && k->step ? -1 : first);
    rill_resp_put_int(o, k->kind == KV_MULTI && k->step ? k->step : first);
}

static void cmd_command(struct kv_exec *x, struct rill_resp *c)
{
    size_t argc = rill_resp_argc(c), len;
    struct rill_buf *o = *x->out;
    if (argc == 1) {
        rill_resp_put_agg(o, x->proto, RILL_RESP_ARRAY, kv_cmd_count());
        for (size_t i = 0; i < kv_cmd_count(); i++)
            command_entry(o, x->proto, kv_cmd_at(i));
        return;
    }
    const char *sub = arg(c, 1, &len);
    if (is(sub, len, "COUNT") && argc == 2) {
        rill_resp_put_int(o, (int64_t)kv_cmd_count());
    } else if (is(sub, len, "DOCS")) {
        rill_resp_put_agg(o, x->proto, RILL_RESP_MAP, 0); /* no docs: clients do without */
    } else if (is(sub, len, "INFO")) {
        rill_resp_put_agg(o, x->proto, RILL_RESP_ARRAY, argc - 2);
        for (size_t i = 2; i < argc; i++) {
            size_t nlen;
            const char *name = arg(c, i, &nlen);
            const struct kv_cmd *k = kv_cmd_find(name, nlen);
            if (k)
                command_entry(o, x->proto, k);
            else
                rill_resp_put_null(o, x->proto);
        }
    } else {
        rill_resp_put_errorf(o, "ERR unknown subcommand '%.*s'. Try COMMAND HELP.", (int)len, sub);
    }
}

static bool want(const char *sec, size_t slen, const char *name, bool dflt)
{
    if (!sec)
        return dflt;
    return is(sec, slen, name) || is(sec, slen, "all") || is(sec, slen, "everything") ||
           (dflt && is(sec, slen, "default"));
}

static void cmd_info(struct kv_exec *x, struct rill_resp *c)
{
    struct kv_server *s = kv_conn_server(x->conn);
    size_t slen = 0;
    const char *sec = rill_resp_argc(c) > 1 ? arg(c, 1, &slen) : NULL;
    char text[2048];
    size_t n = 0;
#define ADD(...)                                                                                   \
    n += (size_t)snprintf(text + n, n < sizeof(text) ? sizeof(text) - n : 0, __VA_ARGS__)
    if (want(sec, slen, "server", true)) {
        struct utsname u;
        uname(&u);
        uint64_t up = (rill_clock_now_ns() - s->start_ns) / RILL_NS_PER_S;
        ADD("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"
            "server_name:rill-kv_server\r\nos:%s %s %s\r\narch_bits:%d\r\n"
            "multiplexing_api:epoll\r\nprocess_id:%d\r\ntcp_port:%d\r\n"
            "uptime_in_seconds:%llu\r\nuptime_in_days:%llu\r\nworker_loops:%d\r\n\r\n",
            u.sysname, u.release, u.machine, (int)(sizeof(void *) * 8), (int)getpid(), s->port,
            (unsigned long long)up, (unsigned long long)(up / 86400), s->nshards);
    }
    if (want(sec, slen, "clients", true)) {
        ADD("# Clients\r\nconnected_clients:%llu\r\n\r\n",
            (unsigned long long)atomic_load_explicit(&s->clients, memory_order_relaxed));
    }
    if (want(sec, slen, "stats", true)) {
        uint64_t cmds = 0;
        for (int i = 0; i < s->nshards; i++)
            cmds += atomic_load_explicit(&s->shards[i].ncmds, memory_order_relaxed);
        ADD("# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n\r\n",
            (unsigned long long)atomic_load_explicit(&s->connections, memory_order_relaxed),
            (unsigned long long)cmds);
    }
    if (want(sec, slen, "keyspace", true)) {
        uint64_t keys = 0, exp = 0;
        for (int i = 0; i < s->nshards; i++) {
            keys += atomic_load_explicit(&s->shards[i].nkeys, memory_order_relaxed);
            exp += atomic_load_explicit(&s->shards[i].nexp, memory_order_relaxed);
        }
        ADD("# Keyspace\r\n");
        if (keys)
            ADD("db0:keys=%llu,expires=%llu,avg_ttl=0\r\n", (unsigned long long)keys,
                (unsigned long long)exp);
    }
#undef ADD
    if (n >= sizeof(text))
        n = sizeof(text) - 1;
    while (n >= 2 && text[n - 1] == '\n' && text[n - 3] == '\n')
        n -= 2; /* no blank line at the end */
    rill_resp_put_verbatim(*x->out, x->proto, "txt", text, n);
}

/* ---- one key ---- */

static void cmd_get(struct kv_exec *x, struct rill_resp *c)
{
    size_t klen;
    const char *k = arg(c, 1, &klen);
    reply_item(x->out, kv_get(x->sh, k, klen, x->h), x->proto);
}

/* Milliseconds from now for EX/PX/EXAT/PXAT (absolute ones are Unix
 * time); false when out of range. */
static bool expire_at(struct kv_shard *sh, int64_t v, bool secs, bool abs, int64_t *out)
{
    if (v <= 0 || (secs && v > INT64_MAX / 1000))
        return false;
    int64_t ms = secs ? v * 1000 : v, now = kv_now_ms(sh);
    if (abs) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        ms -= unix_ms;
        if (ms <= 0)
            ms = -1; /* already past: expired at once */
    }
    if (ms > INT64_MAX - now)
        return false;
    *out = ms == -1 ? now : now + ms;
    return true;
}

static void cmd_set(struct kv_exec *x, struct rill_resp *c)
{
    size_t argc = rill_resp_argc(c), klen, vlen;
    const char *k = arg(c, 1, &klen), *v = arg(c, 2, &vlen);
    bool nx = false, xx = false, get = false, keep = false;
    size_t expi = 0; /* index of the EX/PX/EXAT/PXAT argument */
    for (size_t i = 3; i < argc; i++) {
        if (arg_is(c, i, "NX") && !xx) {
            nx = true;
        } else if (arg_is(c, i, "XX") && !nx) {
            xx = true;
        } else if (arg_is(c, i, "GET")) {
            get = true;
        } else if (arg_is(c, i, "KEEPTTL") && !expi) {
            keep = true;
        } else if ((arg_is(c, i, "EX") || arg_is(c, i, "PX") || arg_is(c, i, "EXAT") ||
                    arg_is(c, i, "PXAT")) &&
                   !keep && !expi && i + 1 < argc) {
            expi = i++;
        } else {
            err(x, E_SYNTAX);
            return;
        }
    }
    int64_t exp = 0;
    if (expi) {
        int64_t n;
        size_t ulen;
        const char *u = arg(c, expi, &ulen);
        if (!arg_ll(c, expi + 1, &n)) {
            err(x, E_NOTINT);
            return;
        }
        bool secs = u[0] == 'e' || u[0] == 'E', abs = ulen == 4;
        if (!expire_at(x->sh, n, secs, abs, &exp)) {
            err(x, "ERR invalid expire time in 'set' command");
            return;
        }
    }
    struct kv_item *it = kv_get(x->sh, k, klen, x->h);
    if (get)
        reply_item(x->out, it, x->proto); /* before the value is overwritten in place */
    if ((nx && it) || (xx && !it)) {
        if (!get)
            rill_resp_put_null(*x->out, x->proto);
        return;
    }
    if (store(x->sh, k, klen, x->h, v, vlen, keep, exp) != 0) {
        if (!get)
            err(x, "ERR out of memory");
        return;
    }
    if (!get)
        ok(x);
}

static void incr_by(struct kv_exec *x, struct rill_resp *c, int64_t by)
{
    size_t klen;
    const char *k = arg(c, 1, &klen);
    struct kv_item *it = kv_get(x->sh, k, klen, x->h);
    int64_t v = 0;
    if (it && (it->big || rill_resp_parse_i64(kv_value(it), it->vlen, &v) != 0)) {
        err(x, E_NOTINT);
        return;
    }
    if ((by > 0 && v > INT64_MAX - by) || (by < 0 && v < INT64_MIN - by)) {
        err(x, E_OVERFLOW);
        return;
    }
    v += by;
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", (long long)v);
    if (kv_set(x->sh, k, klen, x->h, num, (size_t)n, NULL, true, 0) != 0) {
        err(x, "ERR out of memory");
        return;
    }
    rill_resp_put_int(*x->out, v);
}

static void cmd_incr(struct kv_exec *x, struct rill_resp *c)
{
    incr_by(x, c, 1);
}

static void cmd_decr(struct kv_exec *x, struct rill_resp *c)
{
    incr_by(x, c, -1);
}

static void cmd_incrby(struct kv_exec *x, struct rill_resp *c)
{
    int64_t by;
    if (!arg_ll(c, 2, &by))
        err(x, E_NOTINT);
    else
        incr_by(x, c, by);
}

static void cmd_decrby(struct kv_exec *x, struct rill_resp *c)
{
    int64_t by;
    if (!arg_ll(c, 2, &by))
        err(x, E_NOTINT);
    else if (by == INT64_MIN)
        err(x, "ERR decrement would overflow");
    else
        incr_by(x, c, -by);
}

static void expire_generic(struct kv_exec *x, struct rill_resp *c, bool secs, const char *name)
{
    size_t argc = rill_resp_argc(c), klen;
    const char *k = arg(c, 1, &klen);
    int64_t n;
    if (!arg_ll(c, 2, &n)) {
        err(x, E_NOTINT);
        return;
    }
    bool nx = false, xx = false, gt = false, lt = false;
    for (size_t i = 3; i < argc; i++) {
        size_t len;
        const char *a = arg(c, i, &len);
        if (is(a, len, "NX"))
            nx = true;
        else if (is(a, len, "XX"))
            xx = true;
        else if (is(a, len, "GT"))
            gt = true;
        else if (is(a, len, "LT"))
            lt = true;
        else {
            rill_resp_put_errorf(*x->out, "ERR Unsupported option %.*s", (int)len, a);
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        err(x, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if (gt && lt) {
        err(x, "ERR GT and LT options at the same time are not compatible");
        return;
    }
    int64_t now = kv_now_ms(x->sh);
    if ((secs && (n > INT64_MAX / 1000 || n < INT64_MIN / 1000))) {
        rill_resp_put_errorf(*x->out, "ERR invalid expire time in '%s' command", name);
        return;
    }
    int64_t ms = secs ? n * 1000 : n;
    if (ms > INT64_MAX - now) {
        rill_resp_put_errorf(*x->out, "ERR invalid expire time in '%s' command", name);
        return;
    }
    struct kv_item *it = kv_get(x->sh, k, klen, x->h);
    if (!it) {
        rill_resp_put_int(*x->out, 0);
        return;
    }
    int64_t when = now + ms, cur = it->expire_ms;
    if ((nx && cur) || (xx && !cur) || (gt && (!cur || when <= cur)) ||
        (lt && cur && when >= cur)) {
        rill_resp_put_int(*x->out, 0);
        return;
    }
    if (ms <= 0)
        kv_del(x->sh, k, klen, x->h);
    else
        kv_set_expire(x->sh, it, when);
    rill_resp_put_int(*x->out, 1);
}

static void cmd_expire(struct kv_exec *x, struct rill_resp *c)
{
    expire_generic(x, c, true, "expire");
}

static void cmd_pexpire(struct kv_exec *x, struct rill_resp *c)
{
    expire_generic(x, c, false, "pexpire");
}

static void ttl_generic(struct kv_exec *x, struct rill_resp *c, bool secs)
{
    size_t klen;
    const char *k = arg(c, 1, &klen);
    struct kv_item *it = kv_get(x->sh, k, klen, x->h);
    int64_t r;
    if (!it)
        r = -2;
    else if (!it->expire_ms)
        r = -1;
    else {
        r = it->expire_ms - kv_now_ms(x->sh);
        if (r < 0)
            r = 0;
        if (secs)
            r = (r + 500) / 1000;
    }
    rill_resp_put_int(*x->out, r);
}

static void cmd_ttl(struct kv_exec *x, struct rill_resp *c)
{
    ttl_generic(x, c, true);
}

static void cmd_pttl(struct kv_exec *x, struct rill_resp *c)
{
    ttl_generic(x, c, false);
}

/* ---- multi-key parts (each runs on its shard's loop) ---- */

static uint64_t key_hash(struct rill_resp *c, uint32_t i, const char **k, size_t *klen)
{
    *k = arg(c, i, klen);
    return kv_hash(*k, *klen);
}

static void part_del(struct kv_part *p, struct rill_resp *c, int proto)
{
    for (uint32_t j = 0; j < p->nkeys; j++) {
        const char *k;
        size_t klen;
        uint64_t h = key_hash(c, p->keys[j], &k, &klen);
        p->count += kv_del(p->sh, k, klen, h);
    }
}

static void part_exists(struct kv_part *p, struct rill_resp *c, int proto)
{
    for (uint32_t j = 0; j < p->nkeys; j++) {
        const char *k;
        size_t klen;
        uint64_t h = key_hash(c, p->keys[j], &k, &klen);
        p->count += kv_get(p->sh, k, klen, h) != NULL;
    }
}

static int part_buf(struct kv_part *p)
{
    return p->out ? 0 : rill_buf_alloc(256, &p->out);
}

static void part_mget(struct kv_part *p, struct rill_resp *c, int proto)
{
    if (part_buf(p) != 0)
        return;
    for (uint32_t j = 0; j < p->nkeys; j++) {
        const char *k;
        size_t klen;
        uint64_t h = key_hash(c, p->keys[j], &k, &klen);
        reply_item(&p->out, kv_get(p->sh, k, klen, h), proto);
        p->ends[j] = (uint32_t)rill_buf_writer_index(p->out);
    }
}

static void part_mset(struct kv_part *p, struct rill_resp *c, int proto)
{
    for (uint32_t j = 0; j < p->nkeys; j++) {
        const char *k, *v;
        size_t klen, vlen;
        uint64_t h = key_hash(c, p->keys[j], &k, &klen);
        v = arg(c, p->keys[j] + 1, &vlen);
        if (store(p->sh, k, klen, h, v, vlen, false, 0) != 0)
            p->count = -1;
    }
}

static void keys_one(void *arg_, const char *key, size_t klen)
{
    struct kv_part *p = arg_;
    if (rill_resp_put_bulk(p->out, key, klen) == 0)
        p->count++;
}

static void part_keys(struct kv_part *p, struct rill_resp *c, int proto)
{
    if (part_buf(p) != 0)
        return;
    size_t plen;
    const char *pat = arg(c, 1, &plen);
    kv_keys(p->sh, pat, plen, keys_one, p);
}

static void part_dbsize(struct kv_part *p, struct rill_resp *c, int proto)
{
    p->count = (int64_t)p->sh->t.count;
}

static void part_flushall(struct kv_part *p, struct rill_resp *c, int proto)
{
    kv_flush(p->sh);
}

void kv_multi_reply(const struct kv_cmd *k, struct rill_resp *c, struct kv_part *parts, int nparts,
                    struct rill_buf **out, int proto)
{
    int64_t sum = 0;
    for (int i = 0; i < nparts; i++)
        sum += parts[i].count;
    if (k->part == part_del || k->part == part_exists || k->part == part_dbsize) {
        rill_resp_put_int(*out, sum);
    } else if (k->part == part_mset || k->part == part_flushall) {
        for (int i = 0; i < nparts; i++)
            if (parts[i].count < 0) {
                rill_resp_put_error(*out, "ERR out of memory", 17);
                return;
            }
        rill_resp_put_simple(*out, "OK", 2);
    } else if (k->part == part_keys) {
        rill_resp_put_agg(*out, proto, RILL_RESP_ARRAY, (size_t)sum);
        for (int i = 0; i < nparts; i++)
            if (parts[i].out)
                rill_encoder_append(out, rill_buf_retain(parts[i].out));
    } else { /* MGET: elements in key order; each part holds its keys in order */
        size_t argc = rill_resp_argc(c);
        uint32_t next[64] = { 0 };
        rill_resp_put_agg(*out, proto, RILL_RESP_ARRAY, argc - 1);
        for (uint32_t i = 1; i < argc; i++) {
            int pi = 0;
            if (nparts > 1) {
                const char *kk;
                size_t klen;
                uint64_t h = key_hash(c, i, &kk, &klen);
                struct kv_shard *sh = kv_shard_of(parts[0].sh->srv, h);
                while (pi < nparts && parts[pi].sh != sh)
                    pi++;
            }
            struct kv_part *p = &parts[pi];
            uint32_t j = next[pi]++;
            if (!p->out) {
                rill_resp_put_null(*out, proto);
                continue;
            }
            size_t from = j ? p->ends[j - 1] : 0, len = p->ends[j] - from;
            size_t avail;
            uint8_t *dst = rill_buf_write_ptr(*out, len, &avail);
            if (!dst || rill_buf_get_bytes(p->out, from, dst, len) != 0)
                return;
            rill_buf_advance_writer(*out, len);
        }
    }
}

/* Argument checks of multi-key commands, made before any part runs. */
static bool check_mset(struct rill_buf *out, struct rill_resp *c)
{
    if (rill_resp_argc(c) % 2 == 1)
        return true;
    rill_resp_put_errorf(out, "ERR wrong number of arguments for 'mset' command");
    return false;
}

static bool check_flushall(struct rill_buf *out, struct rill_resp *c)
{
    size_t argc = rill_resp_argc(c);
    if (argc == 1 || (argc == 2 && (arg_is(c, 1, "ASYNC") || arg_is(c, 1, "SYNC"))))
        return true;
    rill_resp_put_error(out, E_SYNTAX, strlen(E_SYNTAX));
    return false;
}

/* ---- the table ---- */

#define ONE(n, a, f)                                                                               \
    {                                                                                              \
        .name = n, .arity = a, .kind = KV_ONEKEY, .run = f                                         \
    }
#define NOKEY(n, a, f)                                                                             \
    {                                                                                              \
        .name = n, .arity = a, .kind = KV_KEYLESS, .run = f                                        \
    }
#define MULTI(n, a, p, s, chk)                                                                     \
    {                                                                                              \
        .name = n, .arity = a, .kind = KV_MULTI, .part = p, .first = 1, .step = s, .check = chk    \
    }

/* Hot commands first: lookup is a scan by length and first letter. */
static const struct kv_cmd table[] = {
    ONE("get", 2, cmd_get),
    ONE("set", -3, cmd_set),
    ONE("incr", 2, cmd_incr),
    NOKEY("ping", -1, cmd_ping),
    MULTI("mget", -2, part_mget, 1, NULL),
    MULTI("mset", -3, part_mset, 2, check_mset),
    MULTI("del", -2, part_del, 1, NULL),
    MULTI("exists", -2, part_exists, 1, NULL),
    ONE("decr", 2, cmd_decr),
    ONE("incrby", 3, cmd_incrby),
    ONE("decrby", 3, cmd_decrby),
    ONE("expire", -3, cmd_expire),
    ONE("pexpire", -3, cmd_pexpire),
    ONE("ttl", 2, cmd_ttl),
    ONE("pttl", 2, cmd_pttl),
    MULTI("keys", 2, part_keys, 0, NULL),
    MULTI("dbsize", 1, part_dbsize, 0, NULL),
    MULTI("flushall", -1, part_flushall, 0, check_flushall),
    NOKEY("echo", 2, cmd_echo),
    NOKEY("info", -1, cmd_info),
    NOKEY("quit", -1, cmd_quit),
    NOKEY("client", -2, cmd_client),
    NOKEY("hello", -1, cmd_hello),
    NOKEY("select", 2, cmd_select),
    NOKEY("config", -2, cmd_config),
    NOKEY("command", -1, cmd_command),
};

const struct kv_cmd *kv_cmd_find(const char *name, size_t len)
{
    char first = (char)(name[0] | 0x20);
    for (size_t i = 0; i < RILL_ARRAY_SIZE(table); i++) {
        const char *n = table[i].name;
        if (n[0] == first && strlen(n) == len && strncasecmp(n, name, len) == 0)
            return &table[i];
    }
    return NULL;
}

size_t kv_cmd_count(void)
{
    return RILL_ARRAY_SIZE(table);
}

const struct kv_cmd *kv_cmd_at(size_t i)
{
    return &table[i];
}

void kv_reply_arity(struct rill_buf *out, const struct kv_cmd *c)
{
    rill_resp_put_errorf(out, "ERR wrong number of arguments for '%s' command", c->name);
}

void kv_reply_unknown(struct rill_buf *out, struct rill_resp *cmd)
{
    char args[160];
    size_t n = 0, argc = rill_resp_argc(cmd), len;
    args[0] = '\0';
    for (size_t i = 1; i < argc && n < 128; i++) {
        const char *a = arg(cmd, i, &len);
        int w = snprintf(args + n, sizeof(args) - n, "'%.*s' ",
                         (int)(len < 128 - n ? len : 128 - n), a);
        if (w > 0)
            n += (size_t)w < sizeof(args) - n ? (size_t)w : sizeof(args) - n - 1;
    }
    const char *name = arg(cmd, 0, &len);
    rill_resp_put_errorf(out, "ERR unknown command '%.*s', with args beginning with: %s",
                         (int)(len < 128 ? len : 128), name, args);
}
