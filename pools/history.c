/*
 * history.c — the tasks a pool has finished, newest first, for
 * tpool_manager_task(): a ring of task_history records, fixed in size when
 * the pool is made, written by tpool__task_end() under the pool's mu and
 * read by a lookup under the same lock.
 */
#include "pools_internal.h"

#include <string.h>

void tpool__history_add(tpool_pool_t *p, const tpool__task_t *t) {
  if (p->history_cap == 0)
    return;
  tpool__record_t *r = &p->history[p->history_next];
  if (++p->history_next == p->history_cap) /* no division per task */
    p->history_next = 0;
  if (p->history_len < p->history_cap)
    p->history_len++;
  uint64_t left_queue = t->start_ns ? t->start_ns : t->end_ns;
  r->id = t->id;
  r->status = t->status;
  r->attempts = t->attempt;
  r->queue_wait_ns = left_queue - t->submit_ns;
  r->run_ns = t->start_ns ? t->end_ns - t->start_ns : 0;
  r->end_ns = t->end_ns;
  memcpy(r->name, t->name, sizeof(r->name));
}

bool tpool__history_find(const tpool_pool_t *p, int64_t id, uint64_t now,
                         tpool_task_record_t *out) {
  for (size_t i = 1; i <= p->history_len; i++) { /* newest first */
    const tpool__record_t *h =
        &p->history[(p->history_next + p->history_cap - i) % p->history_cap];
    if (h->id != id)
      continue;
    out->state = TPOOL_TASK_DONE;
    out->status = h->status;
    out->attempts = h->attempts;
    out->queue_wait_s = tpool__ns_to_s(h->queue_wait_ns);
    out->run_s = tpool__ns_to_s(h->run_ns);
    out->ended_ago_s = tpool__ns_to_s(now - h->end_ns);
    memcpy(out->name, h->name, sizeof(out->name));
    return true;
  }
  return false;
}
