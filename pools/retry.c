/*
 * retry.c — a task's wait on a timer of its loop before it joins its
 * queue: for its next attempt, after its work asked to run again
 * (-TPOOL_ERETRY): the backoff; or for its first, when it was submitted
 * with a delay (tpool_task_opts_t.delay_s): a *scheduled* task.
 *
 * DESIGN
 * The worker that ran the attempt decides, under the pool's mu, that
 * another is allowed (tpool__retry_take), and sets a timer for the
 * backoff on the task's loop right there: libevent, made thread-aware,
 * lets any thread add a timer to a base and wakes its loop to notice.
 * The task then waits on the pool's `retries` list, held by its record;
 * no worker waits through a backoff. When the timer fires, the callback
 * the worker gave (tpool__pool_retry_due, in pool.c) takes the task back
 * (tpool__retry_due) and puts it at the end of its queue: this file
 * knows nothing of queues and calls no other file of pools/.
 * Who may take a waiting task: the timer, a cancel and a stop, all under
 * mu, through the record: whoever clears `task` owns it. The record is
 * freed by its timer's callback — a cancel or stop that took its task
 * makes the timer fire at once for that — or, after the loops have
 * stopped, by tpool_manager_free(). Timers are armed and fired under the
 * pool's mu, which is taken before libevent's base lock (the lock order
 * is in pools_internal.h); libevent runs callbacks without its base lock,
 * so the callback may take mu.
 * A stop puts every waiting task back in the queue at once (pool.c), so a
 * drain runs its next attempt instead of waiting out the backoff; an
 * attempt that asks for a retry after stop ends the task.
 * A delayed submit waits the same way, on a record marked `delayed` and
 * counted in `nscheduled` rather than `nretrying`, set by the submitting
 * thread (tpool__retry_delay); it differs only where it ends: a stop
 * cancels it rather than queue it early (a delayed task never runs before
 * its time), and its coming due is not a retry.
 * A task coming back re-enters its queue even when the queue is full: it
 * was accepted once and is not lost now (the queue may briefly hold more
 * than its limit by the tasks coming back). It is subject to the circuit
 * breaker like a new submit: refused while the breaker is open, it ends
 * with -TPOOL_ECIRCUIT; half-open, it may be a trial. Its start deadline
 * counts again from its return to the queue.
 */
#include "pools_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>

/* A random fraction in [0, 1), per thread: xorshift64*, seeded once from
   the clock and the thread's own address. Jitter needs no more. */
double tpool__random_fraction(void) {
  static _Thread_local uint64_t state;
  if (state == 0)
    state = (tpool__now_ns() ^ (uint64_t)(uintptr_t)&state) | 1;
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return (double)((state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* The wait before the next attempt: the first backoff doubled per
   attempt so far, capped, less a random part of up to half. Under mu. */
static uint64_t backoff_ns(const tpool_pool_t *p, const tpool__task_t *t) {
  uint64_t first = t->backoff_ns ? t->backoff_ns : p->retry_backoff_ns;
  uint64_t cap =
      p->retry_backoff_max_ns > first ? p->retry_backoff_max_ns : first;
  uint64_t d = first;
  for (unsigned n = 1; n < t->attempt && d < cap; n++)
    d *= 2;
  if (d > cap)
    d = cap;
  return d - (uint64_t)((double)(d / 2) * tpool__random_fraction());
}

/* Takes the task of waiting record r, which still holds one. Under mu. */
static tpool__task_t *take(tpool_pool_t *p, tpool__retry_t *r) {
  tpool__task_t *t = r->task;
  r->task = NULL;
  t->retry = NULL;
  t->trial_gen = 0; /* its last run decided its trial, if it was one */
  if (r->delayed)
    p->nscheduled--;
  else
    p->nretrying--;
  return t;
}

tpool__task_t *tpool__retry_due(tpool_pool_t *p, tpool__retry_t *r) {
  TAILQ_REMOVE(&p->retries, r, link);
  return r->task ? take(p, r) : NULL; /* NULL: a cancel or a stop took it */
}

/* Arms r's timer for d ns and puts t on `retries`. Under mu. */
static bool wait_on_timer(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r,
                          uint64_t d);

bool tpool__retry_early(tpool__retry_t *r, uint64_t now) {
  if (!r->task || now >= r->due_ns)
    return false;
  /* libevent counts a timer from the loop's cached time, which may be
     older than the moment it was set: wait out the rest. */
  uint64_t d = r->due_ns - now;
  struct timeval tv = {(time_t)(d / 1000000000u),
                       (suseconds_t)(d % 1000000000u / 1000u + 1)};
  return evtimer_add(r->ev, &tv) == 0;
}

/* Arms r's timer for d ns and puts t on `retries`. Under mu. */
static bool wait_on_timer(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r,
                          uint64_t d) {
  struct timeval tv = {(time_t)(d / 1000000000u),
                       (suseconds_t)(d % 1000000000u / 1000u)};
  /* Filled before the timer is set: its `due` reads r->pool before it can
     take mu, which this thread holds. */
  r->pool = p;
  r->task = t;
  r->due_ns = tpool__now_ns() + d;
  if (evtimer_add(r->ev, &tv) != 0)
    return false;
  t->retry = r;
  TAILQ_INSERT_TAIL(&p->retries, r, link);
  return true;
}

bool tpool__retry_delay(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r,
                        uint64_t delay_ns) {
  r->delayed = true;
  if (!wait_on_timer(p, t, r, delay_ns))
    return false;
  p->nscheduled++;
  return true;
}

bool tpool__retry_take(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r,
                       uint64_t *delay_ns) {
  unsigned max = t->max_attempts ? t->max_attempts
                                 : atomic_load_explicit(&p->retry_attempts,
                                                        memory_order_relaxed);
  if (!r || !r->ev || t->attempt >= max || p->stopping)
    return false;
  uint64_t d = backoff_ns(p, t);
  if (!wait_on_timer(p, t, r, d))
    return false;
  p->nretrying++;
  *delay_ns = d;
  return true;
}

tpool__retry_t *tpool__retry_new(const tpool__task_t *t,
                                 void (*due)(evutil_socket_t, short, void *)) {
  if (!t->bridge)
    return NULL; /* no loop to wait on */
  tpool__retry_t *r = calloc(1, sizeof(*r));
  if (r)
    r->ev = evtimer_new(tpool__bridge_base(t->bridge), due, r);
  if (r && !r->ev) {
    free(r);
    r = NULL;
  }
  return r;
}

void tpool__retry_discard(tpool__retry_t *r) {
  if (!r)
    return;
  event_free(r->ev);
  free(r);
}

tpool__task_t *tpool__retry_detach(tpool_pool_t *p, tpool__retry_t *r) {
  tpool__task_t *t = take(p, r);
  event_active(r->ev, EV_TIMEOUT, 1); /* its `due` frees the record */
  return t;
}

void tpool__retry_free_all(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  tpool__retry_t *r = TAILQ_FIRST(&p->retries);
  TAILQ_INIT(&p->retries);
  pthread_mutex_unlock(&p->mu);
  while (r) {
    tpool__retry_t *next = TAILQ_NEXT(r, link);
    /* Stop queued every waiting task before the loops stopped: only the
       records of their timers are left. */
    event_free(r->ev);
    free(r);
    r = next;
  }
}
