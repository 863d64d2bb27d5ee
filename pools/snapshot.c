/*
 * snapshot.c — what one pool reports: its snapshot for the statistics,
 * the tasks it is running at a shutdown's deadline, and a task looked up
 * by id. Each copies what it needs under the pool's mu and formats,
 * sorts or logs after unlocking, so a reader holds the lock only as long
 * as a few list walks and counter copies take.
 */
#include "pools_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_id(const void *a, const void *b) {
  int64_t x = ((const tpool_active_task_t *)a)->id;
  int64_t y = ((const tpool_active_task_t *)b)->id;
  return x < y ? -1 : x > y;
}

int tpool__pool_snapshot(tpool_pool_t *p, tpool_pool_stats_t *ps) {
  /* Copies of the histograms, summarised after the lock is released. */
  tpool__hist_t *h = malloc(2 * sizeof(*h));
  if (!h)
    return -ENOMEM;
  memset(ps, 0, sizeof(*ps));
  int rc = 0;
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb_settled(p);  /* counted submitted, as they are */
  uint64_t now = tpool__now_ns(); /* under the lock: no task starts later */
  snprintf(ps->name, sizeof(ps->name), "%s", p->name);
  ps->min_workers = tpool__pool_min(p);
  ps->max_workers = p->max_workers;
  ps->current_workers = p->nthreads;
  ps->busy_workers = p->nbusy;
  ps->idle_workers = p->nthreads - p->nbusy;
  ps->queued = p->queued;
  ps->queue_limit = p->queue_limit;
  ps->submitted = p->submitted;
  ps->rejected = p->rejected;
  ps->completed = p->completed;
  ps->failed = p->failed;
  ps->cancelled = p->cancelled;
  ps->expired = p->expired;
  ps->stuck_total = p->stuck_total;
  ps->thread_failures = p->thread_failures;
  ps->threads_started = p->threads_started;
  ps->threads_retired = p->threads_retired;
  ps->retries = p->retries_total;
  ps->retrying = p->nretrying;
  ps->scheduled = p->nscheduled;
  const tpool__last_error_t *le = &p->last_error;
  if (le->set) {
    ps->last_error.set = true;
    ps->last_error.id = le->id;
    ps->last_error.status = le->status;
    memcpy(ps->last_error.name, le->name, sizeof(le->name));
    memcpy(ps->last_error.message, le->message, sizeof(le->message));
    ps->last_error.age_s = tpool__ns_to_s(now - le->end_ns);
  }
  tpool__breaker_news_t news = {0};
  tpool__breaker_stats(&p->breaker, now, &ps->breaker, &news);
  ps->soft_timeout_s = tpool__ns_to_s(p->soft_timeout_ns);
  ps->last_reject_age_s =
      p->last_reject_ns ? tpool__ns_to_s(now - p->last_reject_ns) : -1.0;
  h[0] = p->run_hist;
  h[1] = p->wait_hist;
  if (p->nbusy > 0) {
    ps->active = calloc(p->nbusy, sizeof(*ps->active));
    if (!ps->active)
      rc = -ENOMEM;
  }
  tpool__worker_t *w;
  LIST_FOREACH(w, &p->workers, link) {
    tpool__task_t *t = w->current;
    if (!t || !ps->active || ps->nactive == p->nbusy)
      continue;
    tpool_active_task_t *a = &ps->active[ps->nactive++];
    a->id = t->id;
    memcpy(a->name, t->name, sizeof(a->name));
    a->running_for_s = tpool__ns_to_s(now - t->start_ns);
    a->stuck = p->soft_timeout_ns && now - t->start_ns > p->soft_timeout_ns;
    ps->stuck_now += a->stuck;
  }
  pthread_mutex_unlock(&p->mu);
  tpool__breaker_log(p, &news);
  if (ps->nactive > 1)
    qsort(ps->active, ps->nactive, sizeof(*ps->active), by_id);
  tpool__hist_summary(&h[0], &ps->run);
  tpool__hist_summary(&h[1], &ps->wait);
  free(h);
  return rc;
}

unsigned tpool__pool_report_running(tpool_pool_t *p, bool report) {
  tpool__running_t r[TPOOL__REPORT_MAX];
  unsigned n = 0;
  pthread_mutex_lock(&p->mu);
  uint64_t now = tpool__now_ns(); /* under the lock: no task starts later */
  unsigned busy = p->nbusy;
  tpool__worker_t *w;
  LIST_FOREACH(w, &p->workers, link) {
    if (!w->current || n == TPOOL__REPORT_MAX)
      continue;
    r[n].id = w->current->id;
    memcpy(r[n].name, w->current->name, sizeof(r[n].name));
    r[n].running_s = tpool__ns_to_s(now - w->current->start_ns);
    n++;
  }
  pthread_mutex_unlock(&p->mu);
  for (unsigned i = 0; report && i < n; i++)
    tpool__log_task(
        p, TPOOL_LOG_WARN, r[i].id,
        "'%s' still running after %.1fs at the shutdown deadline; its "
        "thread is left to finish it",
        r[i].name, r[i].running_s);
  return busy;
}

/* ---- lookup by id ---------------------------------------------------------
 */

/* Fills *out from a live task of p. Under mu. */
static void describe_live(const tpool__task_t *t, tpool_task_state_t state,
                          uint64_t now, tpool_task_record_t *out) {
  out->state = state;
  out->attempts = t->attempt;
  memcpy(out->name, t->name, sizeof(out->name));
  if (state == TPOOL_TASK_RUNNING) {
    out->queue_wait_s = tpool__ns_to_s(t->start_ns - t->submit_ns);
    out->run_s = tpool__ns_to_s(now - t->start_ns);
  } else if (!t->retry) { /* queued; a retry's wait has no queue time yet */
    out->queue_wait_s = tpool__ns_to_s(now - t->submit_ns);
  }
}

/* The live task `id` of p, and its state; NULL if none. Under mu. */
static const tpool__task_t *find_live(tpool_pool_t *p, int64_t id,
                                      tpool_task_state_t *state) {
  tpool__task_t *t;
  *state = TPOOL_TASK_QUEUED;
  TAILQ_FOREACH(t, &p->queue, qlink) {
    if (t->id == id)
      return t;
  }
  tpool__retry_t *r;
  TAILQ_FOREACH(r, &p->retries, link) {
    if (r->task && r->task->id == id) {
      if (r->delayed)
        *state = TPOOL_TASK_SCHEDULED;
      return r->task;
    }
  }
  tpool__worker_t *w;
  *state = TPOOL_TASK_RUNNING;
  LIST_FOREACH(w, &p->workers, link) {
    if (w->current && w->current->id == id)
      return w->current;
  }
  return NULL;
}

int tpool__pool_find(tpool_pool_t *p, int64_t id, tpool_task_record_t *out) {
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb_settled(p);
  uint64_t now = tpool__now_ns();
  tpool_task_state_t state;
  const tpool__task_t *t = find_live(p, id, &state);
  bool found = t != NULL;
  if (t)
    describe_live(t, state, now, out);
  else
    found = tpool__history_find(p, id, now, out);
  pthread_mutex_unlock(&p->mu);
  if (!found)
    return -ENOENT;
  out->id = id;
  snprintf(out->pool, sizeof(out->pool), "%s", p->name);
  return 0;
}

const char *tpool_task_state_name(tpool_task_state_t state) {
  switch (state) {
  case TPOOL_TASK_RUNNING:
    return "running";
  case TPOOL_TASK_DONE:
    return "done";
  case TPOOL_TASK_SCHEDULED:
    return "scheduled";
  case TPOOL_TASK_QUEUED:
    break;
  }
  return "queued";
}
