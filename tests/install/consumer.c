/* Uses an installed rill: runs one task on a loop and one buffer round trip. */
#include <stdio.h>

#include <rill/buf.h>
#include <rill/future.h>
#include <rill/loop.h>

static void task(void *arg)
{
    rill_promise_succeed(arg, NULL, NULL);
}

int main(void)
{
    struct rill_loop *loop;
    struct rill_promise *p;
    struct rill_buf *b;
    uint32_t v = 0;
    if (rill_loop_new(NULL, &loop) || rill_loop_start(loop) || rill_promise_new(loop, &p))
        return 1;
    rill_loop_execute(loop, task, p);
    int err = rill_promise_wait(p, 5000000000LL);
    rill_promise_release(p);
    rill_loop_shutdown(loop, 0, 1000000000ull);
    rill_loop_free(loop);
    if (err || rill_buf_alloc(16, &b) || rill_buf_write_u32_be(b, 0xC0FFEE) ||
        rill_buf_read_u32_be(b, &v))
        return 1;
    rill_buf_release(b);
    printf("consumer: ok (0x%x)\n", v);
    return v == 0xC0FFEE ? 0 : 1;
}
