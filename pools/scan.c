/*
 * scan.c — what the monitor thread does to one pool on each pass: end the
 * queued tasks whose start deadline has passed, flag (once) the running
 * tasks past the soft timeout, join retired workers, and try again to
 * start a worker for a pool left with queued tasks and none. It returns
 * the earliest moment the pool next needs a look, so that the monitor
 * sleeps until then and not at all when nothing is watched.
 */
#include "pools_internal.h"

#include <errno.h>
#include <string.h>

static uint64_t earlier(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

/* Under mu: ends queued tasks whose start deadline has passed. Returns the
   earliest deadline still ahead. */
static uint64_t expire_overdue(tpool_pool_t *p, uint64_t now,
                               size_t *nexpired) {
  uint64_t next = UINT64_MAX;
  if (p->ndeadline == 0)
    return next;
  tpool__task_t *t = TAILQ_FIRST(&p->queue);
  while (t) {
    tpool__task_t *following = TAILQ_NEXT(t, qlink);
    if (t->deadline_ns && t->deadline_ns <= now) {
      tpool__task_end_queued(p, t, -ETIMEDOUT, now);
      (*nexpired)++;
    } else if (t->deadline_ns) {
      next = earlier(next, t->deadline_ns);
    }
    t = following;
  }
  return next;
}

/* Under mu: flags running tasks that crossed the soft timeout, once each,
   copying up to TPOOL__REPORT_MAX of them for the log. Returns the
   earliest crossing still ahead. */
static uint64_t flag_stuck(tpool_pool_t *p, uint64_t now,
                           tpool__running_t *stuck, unsigned *nstuck) {
  uint64_t next = UINT64_MAX;
  if (p->soft_timeout_ns == 0)
    return next;
  tpool__worker_t *w;
  LIST_FOREACH(w, &p->workers, link) {
    tpool__task_t *t = w->current;
    if (!t || w->stuck_reported)
      continue;
    uint64_t cross = t->start_ns + p->soft_timeout_ns;
    if (cross > now) {
      next = earlier(next, cross);
      continue;
    }
    w->stuck_reported = true;
    p->stuck_total++;
    if (*nstuck < TPOOL__REPORT_MAX) {
      tpool__running_t *r = &stuck[(*nstuck)++];
      r->id = t->id;
      memcpy(r->name, t->name, sizeof(r->name));
      r->running_s = tpool__ns_to_s(now - t->start_ns);
    }
  }
  return next;
}

/* Under mu: true when a pool left with queued tasks and no worker is due
   for another try at starting one (then counted as starting); otherwise
   *next gets the time of a pending retry. */
static bool respawn_due(tpool_pool_t *p, uint64_t now, uint64_t *next) {
  if (p->respawn_at_ns == 0)
    return false;
  if (p->nthreads > 0 || p->queued == 0 || p->stopping) {
    p->respawn_at_ns = 0; /* a worker started meanwhile, or no need */
    return false;
  }
  if (now < p->respawn_at_ns) {
    *next = earlier(*next, p->respawn_at_ns);
    return false;
  }
  p->respawn_at_ns = 0;
  tpool__pool_count_new(p, 1);
  return true;
}

uint64_t tpool__pool_scan(tpool_pool_t *p, uint64_t now) {
  tpool__running_t stuck[TPOOL__REPORT_MAX];
  unsigned nstuck = 0;
  size_t nexpired = 0;

  pthread_mutex_lock(&p->mu);
  uint64_t next = expire_overdue(p, now, &nexpired);
  next = earlier(next, flag_stuck(p, now, stuck, &nstuck));
  bool respawn = respawn_due(p, now, &next);
  double soft_s = tpool__ns_to_s(p->soft_timeout_ns);
  pthread_mutex_unlock(&p->mu);

  tpool__pool_reap(p);
  if (respawn)
    tpool__worker_spawn(p); /* on failure it schedules the next try */
  for (unsigned i = 0; i < nstuck; i++)
    tpool__log_task(p, TPOOL_LOG_WARN, stuck[i].id,
                    "'%s' is stuck: running for %.1fs, soft timeout %.1fs (a "
                    "thread cannot be killed; the task keeps its worker)",
                    stuck[i].name, stuck[i].running_s, soft_s);
  if (nexpired > 0) {
    if (tpool__verbose(p->m))
      tpool__logf(&p->m->log, TPOOL_LOG_INFO,
                  "ThreadPool[%s] %zu queued task(s) expired: start "
                  "deadline passed",
                  p->name, nexpired);
    tpool__manager_notify(p->m);
  }
  return next;
}
