/* Lets Criterion run under ThreadSanitizer (linked into TSan test builds
 * only). Criterion's sandbox (BoxFort) maps its shared arena at a random
 * fixed address in [0x2000_0000_0000, 0x7f00_0000_0000) and gives up after
 * ten probes, but TSan reserves most of that range for its shadow memory, so
 * it always fails ("Could not initialize inheritable arena", upstream
 * Criterion issue #274). Probes outside TSan's application range are told
 * "unmapped", and the fixed mapping that follows is placed inside the
 * application range instead; the worker processes then inherit it at the
 * same address, as BoxFort requires. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/types.h>

/* TSan's own wrappers, which the definitions below sit in front of. */
void *__interceptor_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __interceptor_mincore(void *addr, size_t len, unsigned char *vec);

int mincore(void *addr, size_t len, unsigned char *vec);
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);

#define BXF_LO 0x200000000000ull /* BoxFort's window */
#define BXF_HI 0x7f0000000000ull
#define APP_LO 0x550000000000ull /* TSan's x86-64 application range for PIE binaries */
#define APP_HI 0x568000000000ull

static int outside_app_range(void *a)
{
    uintptr_t x = (uintptr_t)a;
    return x >= BXF_LO && x < BXF_HI && !(x >= APP_LO && x < APP_HI);
}

int mincore(void *addr, size_t len, unsigned char *vec)
{
    if (outside_app_range(addr)) {
        errno = ENOMEM; /* "not mapped": BoxFort goes on to mmap there */
        return -1;
    }
    return __interceptor_mincore(addr, len, vec);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if ((flags & MAP_FIXED) && outside_app_range(addr)) {
        /* The parent's arena only: workers map at the address it got here. */
        static uintptr_t next = 0x566000000000ull;
        for (int i = 0; i < 64; i++, next += 1ull << 30) {
            void *p = __interceptor_mmap64((void *)next, len, prot,
                                           (flags & ~MAP_FIXED) | MAP_FIXED_NOREPLACE, fd, off);
            if (p != MAP_FAILED) {
                next += 1ull << 30;
                return p;
            }
        }
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return __interceptor_mmap64(addr, len, prot, flags, fd, off);
}
