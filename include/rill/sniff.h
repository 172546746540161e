/* Port unification (Netty's PortUnificationServerHandler): one listening
 * port, several protocols, told apart by the first bytes a client sends.
 *
 * The sniffer is the only handler of a new connection's pipeline (or the
 * last one: TLS may come before it). It holds the first bytes, shows them
 * to a select callback, which installs the handlers of the protocol it
 * recognizes after the sniffer, and then removes itself: the bytes it held
 * go to the new handlers as one rill_buf (the decoder base's hand-over),
 * followed by read_complete, so nothing is lost or reordered.
 *
 *     static int pick(struct rill_pipeline *pl, const uint8_t *head, size_t len, void *arg)
 *     {
 *         if (len < 4)
 *             return 4;                            // need more bytes
 *         if (memcmp(head, "RILL", 4) == 0)
 *             return rill_rpc_server_install(arg, pl);
 *         if (memcmp(head, "GET ", 4) == 0)
 *             return install_http(pl);
 *         return RILL_EPROTO;                      // close the connection
 *     }
 *
 *     struct rill_sniff_config sc = { .select = pick, .arg = rs, .bytes = 4 };
 *     rill_pipeline_add_last(pl, "sniff", &rill_sniff_handler, &sc);   // child_init
 *
 * The select callback gets the pipeline, the first @len bytes (borrowed,
 * valid during the call) and the config's arg. It returns:
 *
 *   0     it installed the protocol's handlers after the sniffer (by name
 *         with rill_pipeline_add_after, or rill_pipeline_add_last when the
 *         sniffer is the last handler). The sniffer then fires `active` at
 *         the handlers after it while the channel is active (they were added
 *         after the channel's own active event, and some set a connection
 *         up there: the RPC server counts and caps connections in it),
 *         removes itself and hands the bytes over. Returning 0 without
 *         installing anything hands the bytes to whatever follows. Handlers
 *         that were after the sniffer before the choice see active twice:
 *         keep the sniffer last.
 *   > 0   it needs more bytes: at least this many (a value <= @len means
 *         len + 1). It is called again, with exactly that many bytes, once
 *         they have arrived.
 *   < 0   an error: the stream fails with it (the decoder base's rules:
 *         an exception event with the code and a text that names the bytes
 *         seen travels down the pipeline, then the channel closes with that
 *         reason, seen by rill_channel_close_reason). RILL_EPROTO is the
 *         usual "no protocol of ours".
 *
 * @len is the same whatever way the bytes were cut into reads: the first
 * call sees exactly `bytes` bytes, later calls exactly as many as asked
 * for. The one exception is the end of input (the peer closed, or shut its
 * output down) before that many arrived: the callback then sees what there
 * is (fewer bytes than it waited for), and "need more" fails the stream
 * with RILL_EPROTO. A peer that closes without sending anything is not
 * shown to the callback (nothing to choose; the channel just closes).
 * Asking for more than RILL_SNIFF_MAX_BYTES also fails with RILL_EPROTO: no
 * protocol was recognized in that many bytes.
 *
 * The callback may also close the channel or change the pipeline in other
 * ways; if it removed the sniffer itself, the hand-over happens all the
 * same. On error it should leave the pipeline as it found it (the channel
 * closes anyway).
 *
 * Ownership: the config is copied in added(), so it may be a temporary;
 * its arg is borrowed and must outlive every pipeline the sniffer is in.
 * The bytes held belong to the sniffer until they are handed over (or
 * released when the stream fails or the channel closes first).
 *
 * Thread: the handler runs on its channel's loop thread, and so does the
 * select callback (it may call the loop-only pipeline functions directly).
 * One config may serve every connection of a server at once: the state of
 * each connection lives in its own context, so @arg must be safe to use
 * from all the worker loops at the same time. */
#ifndef RILL_SNIFF_H
#define RILL_SNIFF_H

#include <stddef.h>
#include <stdint.h>

struct rill_handler;
struct rill_pipeline;

/* The most bytes the sniffer holds and shows to the callback. */
#define RILL_SNIFF_MAX_BYTES 64
/* Bytes the first call waits for when the config leaves `bytes` 0. */
#define RILL_SNIFF_DEFAULT_BYTES 8

/* Thread: the channel's loop thread. See above for @head, @len and the
 * return value. */
typedef int rill_sniff_select_fn(struct rill_pipeline *pl, const uint8_t *head, size_t len,
                                 void *arg);

/* The handler's arg (copied in added(); NULL or a NULL select make the add
 * fail with -EINVAL). */
struct rill_sniff_config {
    rill_sniff_select_fn *select; /* required */
    void *arg;                    /* passed to select; borrowed */
    /* Bytes the first call waits for: 1 .. RILL_SNIFF_MAX_BYTES (more:
     * -EINVAL); 0: RILL_SNIFF_DEFAULT_BYTES. A small value with "need more"
     * answers refuses foreign peers sooner; either way a client that sends
     * fewer bytes and then waits for an answer gets none. */
    size_t bytes;
};

/* The sniffer (name "sniff" in logs). Add it with a
 * `const struct rill_sniff_config *` as arg. */
extern const struct rill_handler rill_sniff_handler;

#endif /* RILL_SNIFF_H */
