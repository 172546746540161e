/* Leak detector for every rill_msg (see include/rill/leak.h).
 *
 * msg.c calls rill__leak_track while rill__leak_mode is non-zero, so the
 * first message initialises the mode from $RILL_LEAK and, in off mode, every
 * later message skips the detector after one relaxed load.
 *
 * simple:   atomic counts (total and per type). Each tracked message points
 *           at a shared sentinel record, so msg.c's "m->_leak != NULL" test
 *           routes the final release to untrack, and touches cost a compare.
 * paranoid: one malloc'd record per message (not from rill's pool, so the
 *           detector never recurses into the allocator it watches) holding
 *           the allocation backtrace and a ring of the last touches, on a
 *           global list under a mutex. Slow on purpose; correct under
 *           concurrency.
 *
 * The counts are kept in both modes, and paranoid falls back to the sentinel
 * when a record cannot be allocated, so rill_leak_live() is exact either way.
 */
#include "rill/leak.h"

#include "rill/clock.h"
#include "rill/common.h"
#include "rill/list.h"
#include "rill/log.h"
#include "rill/msg.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BT_DEPTH 16 /* frames kept from the allocation site outwards */
#define BT_OWN   4  /* frames above the site we may capture (ours, msg.c's) */

struct touch {
    const char *what; /* "retain", "release" or the caller's hint */
    const char *file; /* NULL for retain/release */
    int line;
    pid_t tid;
    void *site; /* return address into the caller */
    uint64_t ns;
};

struct rill_leak_rec {
    struct rill_list node;
    struct rill_msg *msg;
    uint16_t type;
    pid_t tid;
    uint64_t born_ns;
    int nframes;
    unsigned ntouches; /* ever recorded; the ring keeps the last RILL_LEAK_TOUCHES */
    struct touch touches[RILL_LEAK_TOUCHES];
    void *frames[BT_DEPTH];
};

_Atomic int rill__leak_mode = -1;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_bool armed; /* exit check and fork handlers registered */

/* Marks a message that is counted but has no record (simple mode, or a
 * paranoid record that could not be allocated). */
static struct rill_leak_rec sentinel;

static atomic_size_t live;
/* Per-type counts: rill's types index directly; user types (>= 256) claim
 * a slot in a small open-addressed table (a slot's type never changes once
 * claimed, so increment and decrement always find the same counter); when
 * the table is full they share one bucket. */
#define USER_SLOTS 64
static atomic_size_t rill_types[256];
static struct {
    _Atomic uint32_t type; /* 0: free (user types are >= 256) */
    atomic_size_t n;
} user_types[USER_SLOTS];
static atomic_size_t other_types;

/* Guards the record list and every record's touch ring. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rill_list records = { &records, &records };

static const char *const mode_names[] = { "off", "simple", "paranoid" };

static atomic_size_t *type_counter(uint16_t type)
{
    if (type < 256)
        return &rill_types[type];
    unsigned start = (type * 2654435761u) % USER_SLOTS;
    for (unsigned i = 0; i < USER_SLOTS; i++) {
        unsigned s = (start + i) % USER_SLOTS;
        uint32_t t = atomic_load_explicit(&user_types[s].type, memory_order_acquire);
        if (t == 0) {
            uint32_t expect = 0;
            if (atomic_compare_exchange_strong(&user_types[s].type, &expect, type))
                return &user_types[s].n;
            t = expect;
        }
        if (t == type)
            return &user_types[s].n;
    }
    return &other_types;
}

static void count(uint16_t type, int delta)
{
    if (delta > 0) {
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(type_counter(type), 1, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(type_counter(type), 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    }
}

/* A child forked while another thread held the lock would deadlock on it. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&lock);
}

static void fork_after(void)
{
    pthread_mutex_unlock(&lock);
}

static int exit_code_from_env(void)
{
    const char *s = getenv("RILL_LEAK_EXITCODE");
    if (!s || !*s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1 || v > 255) {
        RILL_WARN("RILL_LEAK_EXITCODE=%s is not a number in 1..255; ignored", s);
        return 0;
    }
    return (int)v;
}

/* Runs at exit() in every process that enabled the detector. Leaks make the
 * process fail with $RILL_LEAK_EXITCODE; _exit because calling exit() again
 * from an atexit handler is undefined. The handlers registered before this
 * one (the test framework's, LeakSanitizer's) are skipped in that case. */
static void exit_check(void)
{
    if (atomic_load(&live) == 0)
        return;
    fprintf(stderr, "rill: messages still alive at exit (pid %d)\n", (int)getpid());
    rill_leak_report(stderr);
    int code = exit_code_from_env();
    if (code) {
        fflush(NULL);
        _exit(code);
    }
}

static void arm(void)
{
    if (atomic_exchange(&armed, true))
        return;
    atexit(exit_check);
    pthread_atfork(fork_prepare, fork_after, fork_after);
}

static void init_mode(void)
{
    int mode = RILL_LEAK_OFF;
    const char *s = getenv("RILL_LEAK");
    if (s && *s) {
        mode = -1;
        for (int i = 0; i < (int)RILL_ARRAY_SIZE(mode_names); i++)
            if (strcasecmp(s, mode_names[i]) == 0)
                mode = i;
        if (mode < 0) {
            RILL_WARN("RILL_LEAK=%s is not off, simple or paranoid; leak detection is off", s);
            mode = RILL_LEAK_OFF;
        }
    }
    if (mode != RILL_LEAK_OFF)
        arm();
    atomic_store(&rill__leak_mode, mode);
}

static int current_mode(void)
{
    int mode = atomic_load_explicit(&rill__leak_mode, memory_order_relaxed);
    if (RILL_UNLIKELY(mode < 0)) {
        pthread_once(&init_once, init_mode);
        mode = atomic_load(&rill__leak_mode);
    }
    return mode;
}

enum rill_leak_mode rill_leak_mode(void)
{
    return (enum rill_leak_mode)current_mode();
}

int rill_leak_set_mode(enum rill_leak_mode mode)
{
    if (mode < RILL_LEAK_OFF || mode > RILL_LEAK_PARANOID)
        return -EINVAL;
    current_mode(); /* the environment must not override us later */
    pthread_mutex_lock(&lock);
    int rc = -EBUSY;
    if (atomic_load(&live) == 0) {
        if (mode != RILL_LEAK_OFF)
            arm();
        atomic_store(&rill__leak_mode, (int)mode);
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

size_t rill_leak_live(void)
{
    return atomic_load(&live);
}

void rill__leak_track(struct rill_msg *m, void *site)
{
    int mode = current_mode();
    if (mode == RILL_LEAK_OFF)
        return;
    struct rill_leak_rec *r = NULL;
    if (mode == RILL_LEAK_PARANOID)
        r = malloc(sizeof(*r));
    if (!r) {
        count(m->type, +1);
        m->_leak = &sentinel;
        return;
    }
    r->msg = m;
    r->type = m->type;
    r->tid = gettid();
    r->born_ns = rill_clock_now_ns();
    r->ntouches = 0;

    /* Start the backtrace at the allocation site: drop our own frame and
     * rill_msg_init's (absent when it tail-called us). */
    void *bt[BT_DEPTH + BT_OWN];
    int n = backtrace(bt, (int)RILL_ARRAY_SIZE(bt));
    int skip = n > 1 ? 1 : 0;
    for (int i = 0; i < n && i < BT_OWN; i++) {
        if (bt[i] == site) {
            skip = i;
            break;
        }
    }
    r->nframes = n - skip < BT_DEPTH ? n - skip : BT_DEPTH;
    memcpy(r->frames, bt + skip, (size_t)r->nframes * sizeof(void *));

    /* Counted under the lock so a report's count matches its list. */
    pthread_mutex_lock(&lock);
    rill_list_push_back(&records, &r->node);
    count(r->type, +1);
    pthread_mutex_unlock(&lock);
    m->_leak = r;
}

void rill__leak_untrack(struct rill_msg *m)
{
    struct rill_leak_rec *r = m->_leak;
    m->_leak = NULL;
    if (r == &sentinel) {
        count(m->type, -1);
        return;
    }
    if (RILL_UNLIKELY(r->msg != m))
        RILL_PANIC("leak detector: message %p carries the record of %p (header overwritten?)",
                   (void *)m, (void *)r->msg);
    pthread_mutex_lock(&lock);
    rill_list_remove(&r->node);
    count(r->type, -1);
    pthread_mutex_unlock(&lock);
    free(r);
}

void rill__leak_touch(struct rill_msg *m, const char *what, const char *file, int line, void *site)
{
    struct rill_leak_rec *r = m->_leak;
    if (r == &sentinel || r == NULL)
        return;
    struct touch t = {
        .what = what ? what : "touch",
        .file = file,
        .line = line,
        .tid = gettid(),
        .site = site,
        .ns = rill_clock_now_ns(),
    };
    pthread_mutex_lock(&lock);
    r->touches[r->ntouches++ % RILL_LEAK_TOUCHES] = t;
    pthread_mutex_unlock(&lock);
}

/* ---- the report ---- */

static const char *type_name(unsigned type)
{
    switch (type) {
    case RILL_MSG_BUF:
        return "buf";
    case RILL_MSG_FILE_REGION:
        return "file_region";
    default:
        return type >= RILL_MSG_USER ? "user" : "rill";
    }
}

/* The main program's file, for addr2line. Called under the lock. */
static const char *exe_path(void)
{
    static char path[4096];
    if (!path[0]) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
        if (n <= 0)
            n = snprintf(path, sizeof(path), "(main program)");
        path[n] = '\0';
    }
    return path;
}

/* "function+0xoff (module+0xoff)". Return addresses point after the call,
 * so step back one byte to name the calling line. Static functions are not
 * in the dynamic symbol table: they print as "??" (or as the nearest
 * exported symbol), and the module offset resolves them with
 * `addr2line -f -e module 0xoff`. */
static void print_frame(FILE *out, void *addr)
{
    uintptr_t pc = (uintptr_t)addr - 1;
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1((void *)pc, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm) {
        fprintf(out, "%p\n", addr);
        return;
    }
    const char *module = info.dli_fname && *info.dli_fname ? info.dli_fname : "?";
    if (lm->l_name == NULL || lm->l_name[0] == '\0')
        module = exe_path(); /* dli_fname is argv[0] here, which need not be a path */
    if (info.dli_sname && info.dli_saddr)
        fprintf(out, "%s+0x%lx", info.dli_sname, (unsigned long)(pc - (uintptr_t)info.dli_saddr));
    else
        fprintf(out, "??");
    /* l_addr is the load bias (0 for non-PIE executables), so the offset is
     * the address addr2line expects in either case. */
    fprintf(out, " (%s+0x%lx)\n", module, (unsigned long)(pc - (uintptr_t)lm->l_addr));
}

static void print_record(FILE *out, const struct rill_leak_rec *r, uint64_t now)
{
    fprintf(out, "LEAK: message %p type %u (%s) refcount %u, allocated by thread %d %.3f ms ago\n",
            (void *)r->msg, r->type, type_name(r->type), rill_msg_refcnt(r->msg), (int)r->tid,
            (double)(now - r->born_ns) / 1e6);
    fprintf(out, "  allocated at:\n");
    for (int i = 0; i < r->nframes; i++) {
        fprintf(out, "    #%d ", i);
        print_frame(out, r->frames[i]);
    }
    unsigned kept = r->ntouches < RILL_LEAK_TOUCHES ? r->ntouches : RILL_LEAK_TOUCHES;
    if (kept == 0) {
        fprintf(out, "  never touched after allocation\n");
        return;
    }
    fprintf(out, "  last %u of %u touch(es), oldest first:\n", kept, r->ntouches);
    for (unsigned i = r->ntouches - kept; i < r->ntouches; i++) {
        const struct touch *t = &r->touches[i % RILL_LEAK_TOUCHES];
        fprintf(out, "    %u: +%.3f ms thread %d %s", i + 1, (double)(t->ns - r->born_ns) / 1e6,
                (int)t->tid, t->what);
        if (t->file) {
            const char *base = strrchr(t->file, '/');
            fprintf(out, " at %s:%d", base ? base + 1 : t->file, t->line);
        }
        fprintf(out, " from ");
        print_frame(out, t->site);
    }
}

size_t rill_leak_report(FILE *out)
{
    int mode = current_mode();
    pthread_mutex_lock(&lock);
    size_t n = atomic_load(&live);
    fprintf(out, "rill leak report (RILL_LEAK=%s): %zu live message(s)\n", mode_names[mode], n);
    if (n) {
        fprintf(out, "  by type:");
        for (unsigned t = 0; t < 256; t++) {
            size_t c = atomic_load(&rill_types[t]);
            if (c)
                fprintf(out, " %s(%u)=%zu", type_name(t), t, c);
        }
        for (unsigned s = 0; s < USER_SLOTS; s++) {
            size_t c = atomic_load(&user_types[s].n);
            if (c)
                fprintf(out, " user(%u)=%zu", (unsigned)atomic_load(&user_types[s].type), c);
        }
        size_t c = atomic_load(&other_types);
        if (c)
            fprintf(out, " other-user-types=%zu", c);
        fprintf(out, "\n");
    }
    size_t detailed = 0;
    if (!rill_list_empty(&records)) {
        fprintf(out, "  frames read function+offset (module+offset); resolve static functions "
                     "and lines with addr2line -f -e <module> <offset>\n");
        uint64_t now = rill_clock_now_ns();
        struct rill_list *it;
        rill_list_foreach(it, &records)
        {
            print_record(out, rill_container_of(it, struct rill_leak_rec, node), now);
            detailed++;
        }
    }
    if (n > detailed && mode == RILL_LEAK_PARANOID)
        fprintf(out,
                "  %zu message(s) without details (created before paranoid mode, or their "
                "record could not be allocated)\n",
                n - detailed);
    pthread_mutex_unlock(&lock);
    fflush(out);
    return n;
}
