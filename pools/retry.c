/*
 * retry.c — tasks whose work asked to run again (-TPOOL_ERETRY): the
 * backoff on a loop timer, and putting them back in their queue.
 *
 * DESIGN
 * The path of a retry: the worker that ran the attempt decides, under the
 * pool's mu, that another is allowed (tpool__retry_take): the task gets a
 * retry record on the pool's `retries` list and travels to its loop like
 * a completion. There, instead of its done callback, tpool__retry_arm()
 * sets a timer for the backoff; when it fires, on_due() puts the task at
 * the end of the queue. No worker waits through a backoff.
 * Who may take a waiting task: the timer (on the loop), a cancel and a
 * stop (any thread), all under mu, through the record: whoever clears
 * `task` owns it. A record whose timer is not yet set belongs to a task
 * still on its way to the loop, which no one else may touch; a cancel
 * then only marks it, and arm ends it there. The record itself is freed
 * by its loop — by on_due, or by arm — or, after the loops have stopped,
 * by tpool_manager_free(); a cancel or stop that takes the task of a set
 * timer makes that timer fire at once so that its record goes soon.
 * Stop puts every waiting task back in the queue at once, so a drain
 * runs its next attempt instead of cancelling it; a task that reaches
 * its loop after stop is queued as well while workers remain, and
 * cancelled when none does.
 * A task coming back from a backoff re-enters its queue even when the
 * queue is full: it was accepted once and is not lost now, so a queue may
 * briefly hold more than its limit by the tasks coming back.
 */
#include "pools_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>

bool tpool__retry_take(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r) {
  unsigned max = t->max_attempts ? t->max_attempts
                                 : atomic_load_explicit(&p->retry_attempts,
                                                        memory_order_relaxed);
  if (!r || t->attempt >= max || !t->bridge || p->stopping)
    return false;
  r->task = t;
  r->pool = p;
  r->ev = NULL;
  r->cancelled = false;
  TAILQ_INSERT_TAIL(&p->retries, r, link);
  p->nretrying++;
  t->retry = r;
  return true;
}

/* A random fraction in [0, 1), per thread: xorshift64*, seeded once from
   the clock and the thread's own address. Jitter needs no more. */
static double random_fraction(void) {
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
  return d - (uint64_t)((double)(d / 2) * random_fraction());
}

/* Ends a task whose retry will not happen, under mu. */
static void end_waiting(tpool_pool_t *p, tpool__task_t *t, int status) {
  t->retry = NULL;
  t->status = status;
  t->end_ns = tpool__now_ns();
  p->cancelled++;
  tpool__pool_remember(p, t);
}

static void on_due(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tpool__retry_t *r = arg;
  tpool_pool_t *p = r->pool;
  bool wake = false;
  unsigned spawn = 0;
  pthread_mutex_lock(&p->mu);
  TAILQ_REMOVE(&p->retries, r, link);
  tpool__task_t *t = r->task; /* NULL: taken by a cancel or a stop */
  if (t) {
    r->task = NULL;
    p->nretrying--;
    spawn = tpool__pool_push_again(p, t, &wake);
  }
  pthread_mutex_unlock(&p->mu);
  if (wake)
    pthread_cond_signal(&p->work_cv);
  tpool__worker_spawn_n(p, spawn);
  event_free(r->ev);
  free(r);
}

bool tpool__retry_arm(tpool__task_t *t) {
  tpool_pool_t *p = t->pool;
  tpool__retry_t *r = t->retry; /* set by the worker before posting */
  struct event *ev = event_new(tpool__bridge_base(t->bridge), -1, 0, on_due, r);
  bool ended = false, wake = false;
  unsigned spawn = 0;
  uint64_t delay = 0;
  pthread_mutex_lock(&p->mu);
  if (r->cancelled || (p->stopping && p->nthreads == 0)) {
    TAILQ_REMOVE(&p->retries, r, link);
    p->nretrying--;
    end_waiting(p, t, -ECANCELED);
    ended = true;
  } else if (p->stopping || !ev) {
    /* Draining (run it now, by the workers left), or no timer to be had:
       no backoff rather than no retry. */
    TAILQ_REMOVE(&p->retries, r, link);
    p->nretrying--;
    spawn = tpool__pool_push_again(p, t, &wake);
  } else {
    delay = backoff_ns(p, t);
    struct timeval tv = {(time_t)(delay / 1000000000u),
                         (suseconds_t)(delay % 1000000000u / 1000u)};
    r->ev = ev;
    evtimer_add(ev, &tv);
    ev = NULL;
    r = NULL; /* the timer owns it */
  }
  pthread_mutex_unlock(&p->mu);
  if (wake)
    pthread_cond_signal(&p->work_cv);
  tpool__worker_spawn_n(p, spawn);
  if (ev)
    event_free(ev);
  free(r);
  if (delay && tpool__verbose(p->m))
    tpool__log_task(p, TPOOL_LOG_INFO, t->id,
                    "Retrying in %.3fs (attempt %u next)",
                    tpool__ns_to_s(delay), (unsigned)t->attempt + 1);
  return ended;
}

tpool__task_t *tpool__retry_detach(tpool_pool_t *p, tpool__retry_t *r) {
  tpool__task_t *t = r->task;
  if (!r->ev) { /* still on its way to the loop: arm ends it there */
    r->cancelled = true;
    return NULL;
  }
  r->task = NULL;
  p->nretrying--;
  t->retry = NULL;
  event_active(r->ev, EV_TIMEOUT, 1); /* on_due frees the record */
  return t;
}

size_t tpool__retry_flush(tpool_pool_t *p) {
  size_t n = 0;
  tpool__retry_t *r;
  TAILQ_FOREACH(r, &p->retries, link) {
    if (!r->task || !r->ev)
      continue;
    tpool__task_t *t = tpool__retry_detach(p, r);
    bool wake; /* stop wakes every worker itself, and starts none */
    tpool__pool_push_again(p, t, &wake);
    n++;
  }
  return n;
}

void tpool__retry_free_all(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  tpool__retry_t *r = TAILQ_FIRST(&p->retries);
  TAILQ_INIT(&p->retries);
  pthread_mutex_unlock(&p->mu);
  while (r) {
    tpool__retry_t *next = TAILQ_NEXT(r, link);
    if (r->ev)
      event_free(r->ev);
    /* Stop queued every task whose timer was set, and arm settled every
       other one as the loops were drained: r->task is NULL here. */
    free(r);
    r = next;
  }
}
