/* Functions shared by the channel core's own files (channel.c, outbound.c,
 * channel_opts.c, channel_ops.c). Not part of the transport contract. */
#ifndef RILL_CHANNEL_PRIV_H
#define RILL_CHANNEL_PRIV_H

#include "channel/channel_internal.h"

/* channel.c: the operations the head performs (loop thread). */
void rill__channel_bind(struct rill_channel *ch, const struct rill_addr *local,
                        struct rill_promise *p);
void rill__channel_connect(struct rill_channel *ch, const struct rill_addr *remote,
                           const struct rill_addr *local, struct rill_promise *p);
/* Close with @reason (0 or < 0); @p completes with the close future. */
void rill__channel_close_p(struct rill_channel *ch, int reason, struct rill_promise *p);
void rill__channel_shutdown_output(struct rill_channel *ch, struct rill_promise *p);
/* Fail a pending connect (and stop its timer). */
void rill__channel_connect_abort(struct rill_channel *ch, int err);
/* The flushed entries are all written: a pending shutdown_output may go. */
void rill__channel_flushed_drained(struct rill_channel *ch);
/* Post fn(ch) holding a channel reference for the task; false (and the
 * reference given back) when the loop refused it. */
bool rill__channel_post(struct rill_channel *ch, struct rill_task *t, rill_task_fn *fn);

/* outbound.c */
void rill__outbound_add(struct rill_channel *ch, struct rill_msg *msg, struct rill_promise *p);
void rill__outbound_flush(struct rill_channel *ch);
void rill__outbound_fail_all(struct rill_channel *ch, int err);
void rill__outbound_fail_flushed(struct rill_channel *ch, int err);
void rill__outbound_fail_unflushed(struct rill_channel *ch, int err);
/* Re-check the watermarks (after they changed). */
void rill__outbound_check_watermarks(struct rill_channel *ch);

/* channel_opts.c */
void rill__channel_opts_init(struct rill_channel *ch);
void rill__channel_attrs_free(struct rill_channel *ch);

#endif /* RILL_CHANNEL_PRIV_H */
