/* What both load clients of bench/rpc share (C and C++): the clock, the
 * server's CPU time from /proc/PID/stat, latency percentiles from every
 * sample, and the result line run.sh parses. */
#ifndef RILL_BENCH_RPC_COMMON_H
#define RILL_BENCH_RPC_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t brpc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* utime + stime of @pid in nanoseconds (0 when unreadable). */
static inline uint64_t brpc_proc_cpu_ns(int pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the command name, which may hold spaces: start after ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long long ut = 0, st = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

static inline int brpc_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Samples in nanoseconds (capped at ~4.29 s), kept up to a cap. */
struct brpc_samples {
    uint32_t *v;
    size_t n, cap;
};

static inline void brpc_add(struct brpc_samples *s, uint64_t ns)
{
    if (s->n < s->cap)
        s->v[s->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static inline double brpc_pct_us(struct brpc_samples *s, double q)
{
    if (!s->n)
        return 0;
    size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return s->v[i] / 1e3;
}

/* The line run.sh reads. */
static inline void brpc_report(const char *peer, size_t payload, int depth, uint64_t calls,
                               uint64_t errors, uint64_t elapsed_ns, struct brpc_samples *s,
                               uint64_t server_cpu_ns)
{
    qsort(s->v, s->n, sizeof(*s->v), brpc_cmp_u32);
    double secs = elapsed_ns / 1e9;
    printf("result peer=%s payload=%zu depth=%d calls=%llu errors=%llu secs=%.3f cps=%.0f "
           "p50_us=%.1f p99_us=%.1f server_cpu_us_per_call=%.3f\n",
           peer, payload, depth, (unsigned long long)calls, (unsigned long long)errors, secs,
           calls / secs, brpc_pct_us(s, 0.50), brpc_pct_us(s, 0.99),
           calls ? server_cpu_ns / 1e3 / (double)calls : 0.0);
    fflush(stdout);
}

#endif /* RILL_BENCH_RPC_COMMON_H */
