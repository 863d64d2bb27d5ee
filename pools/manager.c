/*
 * manager.c — the pool manager: the name → pool table, the attached loops,
 * submit by name or route, cancel, lookup, start, shutdown and the
 * manager's lifetime.
 *
 * DESIGN
 * Who runs here: the user's threads (any of them for submit, cancel,
 * lookup and shutdown; a loop thread for attach and free), and, through
 * shared.c, the workers (which notify a waiting shutdown) and the monitor
 * thread.
 * What they share: the pools, fixed after tpool_manager_new(); the bridges,
 * an append-only array published through `nbridges`, so a submit finds its
 * loop without a lock (shared.c); `started`/`shut` under `mu`; and
 * `state_cv`, which workers broadcast while a shutdown runs, whenever a
 * worker leaves or a queue is emptied by cancellation.
 * Lifetime: the manager is reference-counted — one reference for the user,
 * one per live worker thread. tpool_manager_free() does everything that
 * touches the user's world (drains and detaches the bridges from their
 * event_bases, closes the log sink) and drops the user's reference. A
 * worker still inside a task that never returned keeps the memory alive
 * and frees it (m->release, manager_destroy() here) when the task finally
 * returns; it can no longer reach the user's loop or log.
 */
#include "pools_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void manager_destroy(tpool_manager_t *m) {
  for (size_t i = 0; i < m->npools; i++)
    tpool__pool_free(m->pools[i]);
  size_t nb = atomic_load(&m->nbridges);
  for (size_t i = 0; i < nb; i++)
    tpool__bridge_free(m->bridges[i], tpool__task_discard, NULL);
  pthread_cond_destroy(&m->mon_cv);
  pthread_mutex_destroy(&m->mon_mu);
  pthread_cond_destroy(&m->state_cv);
  pthread_mutex_destroy(&m->reconf_mu);
  pthread_mutex_destroy(&m->sched_mu);
  pthread_mutex_destroy(&m->mu);
  tpool__log_destroy(&m->log);
  free(m->opts);
  free(m);
}

/* ---- creation ---------------------------------------------------------- */

static int init_sync(tpool_manager_t *m) {
  if (pthread_mutex_init(&m->mu, NULL) != 0)
    return -ENOMEM;
  if (pthread_mutex_init(&m->reconf_mu, NULL) != 0)
    goto no_reconf_mu;
  if (pthread_mutex_init(&m->sched_mu, NULL) != 0)
    goto no_sched_mu;
  if (tpool__cond_init(&m->state_cv) != 0)
    goto no_state_cv;
  if (pthread_mutex_init(&m->mon_mu, NULL) != 0)
    goto no_mon_mu;
  if (tpool__cond_init(&m->mon_cv) != 0)
    goto no_mon_cv;
  return 0;
no_mon_cv:
  pthread_mutex_destroy(&m->mon_mu);
no_mon_mu:
  pthread_cond_destroy(&m->state_cv);
no_state_cv:
  pthread_mutex_destroy(&m->sched_mu);
no_sched_mu:
  pthread_mutex_destroy(&m->reconf_mu);
no_reconf_mu:
  pthread_mutex_destroy(&m->mu);
  return -ENOMEM;
}

int tpool_manager_new(const tpool_options_t *o, tpool_manager_t **out) {
  if (!o || !out)
    return -EINVAL;
  *out = NULL;
  tpool_manager_t *m = calloc(1, sizeof(*m));
  if (!m)
    return -ENOMEM;
  int rc = tpool__log_init(&m->log, o);
  if (rc != 0) {
    free(m);
    return rc;
  }
  tpool_config_error_t err;
  if (tpool_options_check(o, &err) != 0) {
    tpool__logf(&m->log, TPOOL_LOG_ERROR, "ThreadPoolManager %s", err.text);
    tpool__log_destroy(&m->log);
    free(m);
    return -EINVAL;
  }
  m->opts = malloc(sizeof(*m->opts));
  if (!m->opts || init_sync(m) != 0) {
    tpool__log_destroy(&m->log);
    free(m->opts);
    free(m);
    return -ENOMEM;
  }
  *m->opts = *o;
  atomic_init(&m->verbose, o->verbose);
  atomic_init(&m->status_interval_ns, tpool__s_to_ns(o->status_interval_s));
  atomic_init(&m->next_id, 1);
  atomic_init(&m->refs, 1);
  m->release = manager_destroy;
  atomic_init(&m->stopping, false);
  atomic_init(&m->nbridges, 0);
  atomic_init(&m->mon_next_ns, UINT64_MAX);
  m->created_ns = tpool__now_ns();
  m->completion_batch = o->completion_batch;
  TAILQ_INIT(&m->schedules);
  TAILQ_INIT(&m->dying);
  for (size_t i = 0; i < o->npools; i++) {
    if (!o->pools[i].enabled)
      continue;
    rc = tpool__pool_new(m, &o->pools[i], &m->pools[m->npools]);
    if (rc != 0) {
      manager_destroy(m);
      return rc;
    }
    m->npools++;
  }
  for (size_t i = 0; i < o->nroutes; i++) { /* checked: every pool exists */
    memcpy(m->routes[i].pattern, o->routes[i].pattern,
           sizeof(m->routes[i].pattern));
    m->routes[i].pool = tpool_manager_pool(m, o->routes[i].pool);
  }
  m->nroutes = o->nroutes;
  *out = m;
  return 0;
}

int tpool_manager_new_from_file(const char *path, tpool_manager_t **out,
                                tpool_config_error_t *err) {
  if (err)
    memset(err, 0, sizeof(*err));
  if (!path || !out)
    return -EINVAL;
  *out = NULL;
  tpool_options_t *o = malloc(sizeof(*o));
  if (!o)
    return -ENOMEM;
  tpool_options_init(o);
  int rc = tpool_config_load(o, path, err);
  if (rc == 0)
    rc = tpool_manager_new(o, out);
  if (rc == -EIO && err && !err->text[0]) /* the log file, after loading */
    snprintf(err->text, sizeof(err->text),
             "%s: [general] log: cannot open "
             "\"%s\" for appending",
             path, o->log_path);
  free(o);
  return rc;
}

/* ---- loops ------------------------------------------------------------- */

int tpool_manager_attach(tpool_manager_t *m, struct event_base *base) {
  if (!m || !base)
    return -EINVAL;
  pthread_mutex_lock(&m->mu);
  size_t n = atomic_load(&m->nbridges);
  int rc = 0;
  if (tpool__manager_bridge(m, base))
    rc = -EINVAL;
  else if (n == TPOOL__BRIDGES_MAX)
    rc = -ENOSPC;
  else
    rc = tpool__bridge_new(base, m->completion_batch, tpool__task_deliver, m,
                           &m->bridges[n]);
  if (rc == 0)
    atomic_store_explicit(&m->nbridges, n + 1, memory_order_release);
  pthread_mutex_unlock(&m->mu);
  if (rc == -EINVAL)
    tpool__logf(&m->log, TPOOL_LOG_ERROR,
                "ThreadPoolManager Cannot attach event_base %p: it is already "
                "attached, or not thread-aware (call evthread_use_pthreads() "
                "before event_base_new(), without EVENT_BASE_FLAG_NOLOCK)",
                (void *)base);
  return rc;
}

/* ---- start and shutdown ------------------------------------------------ */

/* Stops intake (submits fail with -ESHUTDOWN); workers drain their queues
   and leave. Returns false if a shutdown had already begun. */
static bool begin_shutdown(tpool_manager_t *m) {
  pthread_mutex_lock(&m->mu);
  bool first = !m->shut;
  bool started = m->started;
  m->shut = true;
  pthread_mutex_unlock(&m->mu);
  if (!first)
    return false;
  atomic_store(&m->stopping, true);
  for (size_t i = 0; i < m->npools; i++) {
    tpool__pool_stop(m->pools[i]);
    if (!started) /* no worker will ever take them */
      tpool__pool_cancel_queued(m->pools[i]);
  }
  return true;
}

static size_t cancel_all_queued(tpool_manager_t *m) {
  size_t n = 0;
  for (size_t i = 0; i < m->npools; i++)
    n += tpool__pool_cancel_queued(m->pools[i]);
  return n;
}

/*
 * Waits until every pool is finished — no worker left, nothing queued — or
 * the deadline passes. A pool whose queue has no worker left (none could
 * be started) will never run it: those tasks are cancelled. Returns true
 * if finished, and then every worker thread has been joined.
 */
static bool wait_finished(tpool_manager_t *m, uint64_t deadline) {
  for (;;) {
    pthread_mutex_lock(&m->mu);
    bool finished = true;
    for (size_t i = 0; i < m->npools && finished; i++)
      finished = tpool__pool_settle(m->pools[i]);
    uint64_t now = tpool__now_ns();
    if (!finished && now < deadline)
      tpool__cond_wait_until(&m->state_cv, &m->mu, deadline);
    pthread_mutex_unlock(&m->mu);
    if (finished) {
      for (size_t i = 0; i < m->npools; i++)
        tpool__pool_reap(m->pools[i]);
      return true;
    }
    if (now >= deadline)
      return false;
  }
}

static unsigned count_running(tpool_manager_t *m, bool report) {
  unsigned n = 0;
  for (size_t i = 0; i < m->npools; i++)
    n += tpool__pool_report_running(m->pools[i], report);
  return n;
}

int tpool_manager_start(tpool_manager_t *m) {
  if (!m)
    return -EINVAL;
  pthread_mutex_lock(&m->mu);
  int rc = m->shut ? -ESHUTDOWN : m->started ? -EALREADY : 0;
  if (rc == 0)
    m->started = true;
  pthread_mutex_unlock(&m->mu);
  if (rc != 0)
    return rc;
  rc = tpool__monitor_start(m);
  for (size_t i = 0; i < m->npools && rc == 0; i++)
    rc = tpool__pool_start(m->pools[i]);
  if (rc == 0)
    return 0;
  /* Nothing new starts; what already runs finishes and completes
     normally; what waits completes with -ECANCELED. */
  tpool__logf(&m->log, TPOOL_LOG_ERROR,
              "ThreadPoolManager Could not start: %s; shutting down",
              rc == -EAGAIN ? "a pool could not start any worker thread"
                            : tpool_strerror(rc));
  begin_shutdown(m);
  cancel_all_queued(m);
  wait_finished(m, UINT64_MAX);
  return -EAGAIN;
}

int tpool_manager_shutdown(tpool_manager_t *m, double timeout_s) {
  if (!m)
    return -EINVAL;
  if (tpool__is_worker_of(m))
    return -EDEADLK; /* it would wait for its own task */
  uint64_t deadline =
      timeout_s < 0 ? UINT64_MAX : tpool__now_ns() + tpool__s_to_ns(timeout_s);
  if (begin_shutdown(m)) {
    if (timeout_s < 0)
      tpool__logf(&m->log, TPOOL_LOG_INFO,
                  "ThreadPoolManager Shutting down: draining, no deadline");
    else
      tpool__logf(&m->log, TPOOL_LOG_INFO,
                  "ThreadPoolManager Shutting down: draining, deadline %.3fs",
                  timeout_s);
  }
  if (wait_finished(m, deadline))
    return 0;

  /* Deadline: what never started is cancelled; what runs is reported. */
  size_t cancelled = cancel_all_queued(m);
  if (cancelled > 0)
    tpool__logf(&m->log, TPOOL_LOG_WARN,
                "ThreadPoolManager Shutdown deadline passed: cancelled %zu "
                "queued task(s) that never started",
                cancelled);
  /* With the queues empty and intake stopped, no task can start any more:
     if none runs, the remaining workers are idle and leave at once. */
  if (count_running(m, true) == 0 && wait_finished(m, UINT64_MAX))
    return 0;
  return -ETIMEDOUT;
}

void tpool_manager_free(tpool_manager_t *m) {
  if (!m)
    return;
  if (tpool__is_worker_of(m)) {
    tpool__logf(&m->log, TPOOL_LOG_ERROR,
                "ThreadPoolManager tpool_manager_free() called from one of "
                "its own workers: ignored");
    return;
  }
  pthread_mutex_lock(&m->mu);
  bool shut = m->shut;
  pthread_mutex_unlock(&m->mu);
  if (!shut)
    tpool_manager_shutdown(m, -1);
  tpool__monitor_stop(m);
  for (size_t i = 0; i < m->npools; i++)
    tpool__pool_reap(m->pools[i]);
  unsigned running = count_running(m, false);
  if (running > 0)
    tpool__logf(&m->log, TPOOL_LOG_WARN,
                "ThreadPoolManager Freed with %u task(s) still running: "
                "their done callbacks will not run",
                running);
  /* The loops have stopped: what they did not run, this thread runs. */
  size_t nb = atomic_load(&m->nbridges);
  for (size_t i = 0; i < nb; i++) {
    tpool__bridge_drain(m->bridges[i], SIZE_MAX);
    tpool__bridge_detach(m->bridges[i]);
  }
  for (size_t i = 0; i < m->npools; i++) /* timers on the stopped loops */
    tpool__retry_free_all(m->pools[i]);
  tpool__schedules_free_all(m); /* after their runs' done callbacks */
  tpool__log_close(&m->log);
  tpool__manager_unref(m);
}

/* ---- pools, submit, cancel --------------------------------------------- */

tpool_pool_t *tpool_manager_pool(tpool_manager_t *m, const char *name) {
  if (!m || !name)
    return NULL;
  for (size_t i = 0; i < m->npools; i++)
    if (strcmp(m->pools[i]->name, name) == 0)
      return m->pools[i];
  return NULL;
}

tpool_pool_t *tpool_manager_route(tpool_manager_t *m, const char *name) {
  return m && name ? tpool__manager_route(m, name) : NULL;
}

int64_t tpool_manager_submit_routed(tpool_manager_t *m, const char *name,
                                    tpool_work_cb work, tpool_done_cb done,
                                    void *arg, const tpool_task_opts_t *opts) {
  if (!m || !name || !*name)
    return -EINVAL;
  /* Routed by the name as it will be kept, cut to TPOOL_TASK_NAME_MAX - 1
     bytes like every task name, so a log line and the route agree. */
  char kept[TPOOL_TASK_NAME_MAX];
  size_t len = strnlen(name, sizeof(kept) - 1);
  memcpy(kept, name, len);
  kept[len] = '\0';
  tpool_pool_t *p = tpool_manager_route(m, kept);
  if (!p)
    return -ENOENT;
  return tpool_submit(p, kept, work, done, arg, opts);
}

int64_t tpool_manager_submit(tpool_manager_t *m, const char *pool,
                             const char *name, tpool_work_cb work,
                             tpool_done_cb done, void *arg,
                             const tpool_task_opts_t *opts) {
  tpool_pool_t *p = tpool_manager_pool(m, pool);
  if (!p)
    return m && pool ? -ENOENT : -EINVAL;
  return tpool_submit(p, name, work, done, arg, opts);
}

int tpool_manager_cancel(tpool_manager_t *m, int64_t id) {
  if (!m)
    return -EINVAL;
  for (size_t i = 0; i < m->npools; i++) {
    int rc = tpool__pool_cancel(m->pools[i], id);
    if (rc != -ENOENT)
      return rc;
  }
  return -ENOENT;
}

/* ---- logging and stats ------------------------------------------------- */

int tpool_manager_task(tpool_manager_t *m, int64_t id,
                       tpool_task_record_t *out) {
  if (!m || !out)
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  for (size_t i = 0; i < m->npools; i++)
    if (tpool__pool_find(m->pools[i], id, out) == 0)
      return 0;
  return -ENOENT;
}

void tpool_manager_set_verbose(tpool_manager_t *m, bool verbose,
                               double status_interval_s) {
  if (!m)
    return;
  atomic_store(&m->verbose, verbose);
  if (status_interval_s > 0) {
    if (status_interval_s < TPOOL__STATUS_INTERVAL_MIN)
      status_interval_s = TPOOL__STATUS_INTERVAL_MIN;
    atomic_store(&m->status_interval_ns, tpool__s_to_ns(status_interval_s));
  }
  tpool__monitor_kick(m, 0);
}

void tpool_manager_log(tpool_manager_t *m, tpool_log_level_t level,
                       const char *fmt, ...) {
  if (!m || !fmt)
    return;
  va_list ap;
  va_start(ap, fmt);
  tpool__vlogf(&m->log, level, fmt, ap);
  va_end(ap);
}
