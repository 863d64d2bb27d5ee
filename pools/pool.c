/*
 * pool.c — the executor behind one named pool: its worker threads, its
 * bounded queue, growth and shrink, the per-worker current-task slot and
 * the counters and histograms its snapshot reports.
 *
 * DESIGN
 * Who runs here: submitters (any thread) push tasks; worker threads pop
 * and run them; the monitor thread expires overdue queued tasks and flags
 * stuck ones; cancel, resize, snapshot and shutdown come from any thread.
 * What they share: everything under the pool's one mutex `mu` — the queue
 * (an intrusive doubly linked list, so cancel and expiry unlink in O(1)),
 * the thread counts, each worker's `current` task, the counters and the
 * histograms. The lock is held only for list and counter updates; work,
 * done callbacks and log sinks always run without it.
 * How work moves: a submit takes the lock once, queues the task and, if an
 * idle worker is waiting and has not already been signalled, signals one
 * after unlocking. If none is idle and the pool is below its maximum, the
 * submitter starts a thread first (as Java's ThreadPoolExecutor does), so
 * a pool that cannot start any thread refuses the task rather than strand
 * it. A worker takes the lock once per task: it accounts for the task it
 * just ran and pops the next in the same critical section, then posts the
 * finished task to its loop's bridge after unlocking.
 * Idle workers above the minimum wait with the idle timeout and retire when
 * it passes; workers at or below the minimum wait without a timeout, so a
 * quiet pool costs no wakeups. Resize only changes the limits and wakes
 * everyone: workers above the new maximum retire when they next look for
 * work, and queued tasks stay queued, so nothing is lost.
 * Shutdown sets `stopping`: workers drain the queue, then retire. A worker
 * posts its last completion before it counts itself out (`nexiting`), so
 * once a pool is finished every completion is on its bridge.
 */
#include "pools_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tpool__thread_create_fn tpool__thread_create = NULL;

/* Retries of a failed thread start, for a pool left with work and no
   worker: 50 ms, doubling up to 5 s. */
#define RESPAWN_FIRST_NS 50000000ull
#define RESPAWN_MAX_NS 5000000000ull

/* The manager whose worker the calling thread is, if any. */
static _Thread_local const tpool_manager_t *worker_of;

bool tpool__is_worker_of(const tpool_manager_t *m) {
  return worker_of == m;
}

/* Why a worker leaves. */
typedef enum { RETIRE_IDLE, RETIRE_RESIZED, RETIRE_STOPPED } retire_t;

static tpool__task_t *task_new(void) {
  return malloc(sizeof(tpool__task_t));
}
static void task_free(tpool__task_t *t) {
  free(t);
}

static unsigned effective_min(const tpool_pool_t *p) {
  return p->min_equals_max ? p->max_workers : p->min_workers;
}

static void log_task(tpool_pool_t *p, tpool_log_level_t lv, int64_t id,
                     const char *fmt, ...) TPOOL_PRINTF(4, 5);

/* "ThreadPool[cpu] Task #42: <message>" */
static void log_task(tpool_pool_t *p, tpool_log_level_t lv, int64_t id,
                     const char *fmt, ...) {
  tpool__log_t *log = &p->m->log;
  if (!tpool__log_enabled(log, lv))
    return;
  char msg[512];
  int n = snprintf(msg, sizeof(msg), "ThreadPool[%s] Task #%" PRId64 ": ",
                   p->name, id);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
  va_end(ap);
  tpool__log_write(log, lv, msg);
}

/* ---- queue (all under mu) ---------------------------------------------- */

static void queue_push(tpool_pool_t *p, tpool__task_t *t) {
  TAILQ_INSERT_TAIL(&p->queue, t, qlink);
  p->queued++;
  if (t->deadline_ns)
    p->ndeadline++;
}

static void queue_remove(tpool_pool_t *p, tpool__task_t *t) {
  TAILQ_REMOVE(&p->queue, t, qlink);
  p->queued--;
  if (t->deadline_ns)
    p->ndeadline--;
}

/* Ends a queued task that will never run, with `status`. Called under mu:
   posting does not call user code, and doing it under the lock means a
   pool never looks finished while a completion is still on its way. */
static void end_unstarted(tpool_pool_t *p, tpool__task_t *t, int status,
                          uint64_t now) {
  queue_remove(p, t);
  t->status = status;
  t->end_ns = now;
  if (status == -ETIMEDOUT)
    p->expired++;
  else
    p->cancelled++;
  tpool__task_finish(t);
}

void tpool__task_finish(tpool__task_t *t) {
  if (t->bridge)
    tpool__bridge_post(t->bridge, &t->node);
  else
    task_free(t);
}

void tpool__task_discard(tpool__node_t *node, void *arg) {
  (void)arg;
  task_free((tpool__task_t *)node);
}

void tpool__task_deliver(tpool__node_t *node, void *arg) {
  (void)arg;
  tpool__task_t *t = (tpool__task_t *)node;
  uint64_t left_queue = t->start_ns ? t->start_ns : t->end_ns;
  tpool_task_info_t info = {
      .id = t->id,
      .pool = t->pool->name,
      .name = t->name,
      .queue_wait_s = tpool__ns_to_s(left_queue - t->submit_ns),
      .run_s = t->start_ns ? tpool__ns_to_s(t->end_ns - t->start_ns) : 0.0,
  };
  t->done(t->status, &info, t->arg);
  task_free(t);
}

/* ---- worker threads ---------------------------------------------------- */

void tpool__signals_block(sigset_t *old) {
  static const int faults[] = {SIGSEGV, SIGBUS,  SIGFPE, SIGILL,
                               SIGTRAP, SIGABRT, SIGSYS};
  sigset_t all;
  sigfillset(&all);
  for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
    sigdelset(&all, faults[i]);
  pthread_sigmask(SIG_SETMASK, &all, old);
}

static void *worker_main(void *arg);

/* Starts one worker thread. The caller has already counted it in nthreads
   and nstarting (under mu), so concurrent submitters do not over-grow;
   this undoes that count on failure. Called without mu. */
static int spawn(tpool_pool_t *p) {
  tpool_manager_t *m = p->m;
  tpool__worker_t *w = calloc(1, sizeof(*w));
  int rc = ENOMEM;
  if (w) {
    w->pool = p;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    size_t stack = p->stack_size < (size_t)PTHREAD_STACK_MIN
                       ? (size_t)PTHREAD_STACK_MIN
                       : p->stack_size;
    pthread_attr_setstacksize(&attr, stack);
    sigset_t old;
    tpool__signals_block(&old);
    tpool__manager_ref(m);
    pthread_t th;
    rc = (tpool__thread_create ? tpool__thread_create
                               : pthread_create)(&th, &attr, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc == 0)
      return 0;
    tpool__manager_unref(m); /* never the last: the caller holds one */
    free(w);
  }
  pthread_mutex_lock(&p->mu);
  p->nthreads--;
  p->nstarting--;
  p->thread_failures++;
  unsigned now_threads = p->nthreads, max = p->max_workers;
  /* Tasks accepted while this thread was expected to start must not wait
     for a submit that may never come: the monitor retries, with backoff. */
  uint64_t retry = 0;
  if (p->nthreads == 0 && p->queued > 0 && !p->stopping) {
    p->respawn_delay_ns =
        p->respawn_delay_ns ? p->respawn_delay_ns * 2 : RESPAWN_FIRST_NS;
    if (p->respawn_delay_ns > RESPAWN_MAX_NS)
      p->respawn_delay_ns = RESPAWN_MAX_NS;
    retry = p->respawn_at_ns = tpool__now_ns() + p->respawn_delay_ns;
  }
  pthread_mutex_unlock(&p->mu);
  tpool__logf(&m->log, TPOOL_LOG_WARN,
              "ThreadPool[%s] Could not start a worker thread: %s "
              "(workers=%u/%u)",
              p->name, tpool_strerror(-rc), now_threads, max);
  if (retry)
    tpool__monitor_kick(m, retry);
  tpool__manager_notify(m);
  return -rc;
}

/* Starts n workers already counted in nthreads/nstarting. Returns how many
   started. */
static unsigned spawn_n(tpool_pool_t *p, unsigned n) {
  unsigned ok = 0;
  for (unsigned i = 0; i < n; i++)
    ok += spawn(p) == 0;
  return ok;
}

static void worker_setup(tpool__worker_t *w) {
  tpool_pool_t *p = w->pool;
  pthread_mutex_lock(&p->mu);
  w->thread = pthread_self(); /* for the reaper, which reads it under mu */
  w->no = ++p->next_no;
  LIST_INSERT_HEAD(&p->workers, w, link);
  p->threads_started++;
  p->respawn_delay_ns = 0;
  pthread_mutex_unlock(&p->mu);

  /* "tpool-cpu-3"; the prefix is cut so the number always fits Linux's
     15 characters. */
  char suffix[16], name[TPOOL_THREAD_NAME_MAX];
  size_t slen = (size_t)snprintf(suffix, sizeof(suffix), "-%u", w->no);
  size_t plen = strlen(p->thread_prefix);
  if (plen > sizeof(name) - 1 - slen)
    plen = sizeof(name) - 1 - slen;
  memcpy(name, p->thread_prefix, plen);
  memcpy(name + plen, suffix, slen + 1);
  pthread_setname_np(pthread_self(), name);

  if (p->has_affinity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned c = 0; c < TPOOL_CPUS_MAX && c < CPU_SETSIZE; c++)
      if (p->cpu_affinity[c / 64] >> (c % 64) & 1)
        CPU_SET(c, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0)
      tpool__logf(&p->m->log, TPOOL_LOG_WARN,
                  "ThreadPool[%s] Could not set the CPU affinity of %s: %s",
                  p->name, name, tpool_strerror(-rc));
  }
}

/* What next_task() found. */
typedef enum { GOT_TASK, GOT_EXPIRED, MUST_FLUSH, MUST_RETIRE } next_t;

/*
 * Finds this worker's next task. GOT_EXPIRED: a queued task whose start
 * deadline has passed, already accounted for. MUST_FLUSH: the queue is
 * empty and the worker still holds a finished task (`holding`): it must
 * post it before it may sleep. MUST_RETIRE: the worker must leave; it is
 * already counted out of nthreads and into nexiting, so no two workers
 * retire for the same reason.
 * Called and returns with mu held.
 */
static next_t next_task(tpool_pool_t *p, bool holding, tpool__task_t **out,
                        retire_t *why) {
  for (;;) {
    if (p->nthreads > p->max_workers) {
      *why = RETIRE_RESIZED;
      break;
    }
    tpool__task_t *t = TAILQ_FIRST(&p->queue);
    if (t) {
      queue_remove(p, t);
      *out = t;
      if (t->deadline_ns) {
        uint64_t now = tpool__now_ns();
        if (now >= t->deadline_ns) {
          t->status = -ETIMEDOUT;
          t->end_ns = now;
          p->expired++;
          return GOT_EXPIRED;
        }
      }
      return GOT_TASK;
    }
    if (p->stopping) {
      *why = RETIRE_STOPPED;
      break;
    }
    if (holding)
      return MUST_FLUSH;
    /* At or below the minimum, wait without a timeout: a quiet fixed-size
       pool costs no wakeups. */
    uint64_t until = p->nthreads > effective_min(p)
                         ? tpool__now_ns() + p->idle_timeout_ns
                         : UINT64_MAX;
    p->nidle++;
    int rc = tpool__cond_wait_until(&p->work_cv, &p->mu, until);
    p->nidle--;
    if (p->nwakeups > 0)
      p->nwakeups--;
    if (rc == ETIMEDOUT && p->queued == 0 && !p->stopping &&
        p->nthreads > effective_min(p)) {
      *why = RETIRE_IDLE;
      break;
    }
  }
  p->nthreads--;
  p->nexiting++;
  return MUST_RETIRE;
}

static void run_task(tpool_pool_t *p, tpool__task_t *t) {
  int status = t->work(t->arg);
  t->end_ns = tpool__now_ns();
  t->status = status;
  if (!tpool__verbose(p->m))
    return;
  double secs = tpool__ns_to_s(t->end_ns - t->start_ns);
  if (status == 0)
    log_task(p, TPOOL_LOG_INFO, t->id, "Completed in %.3fs", secs);
  else
    log_task(p, TPOOL_LOG_INFO, t->id, "Failed in %.3fs: %s (%d)", secs,
             tpool_strerror(status), status);
}

/* Leaves the pool. The worker's record moves to the zombie list, where
   whoever reaps next (the monitor, shutdown or free) joins the thread and
   frees it; the thread touches no pool state after unlocking. */
static void worker_retire(tpool__worker_t *w, retire_t why) {
  tpool_pool_t *p = w->pool;
  tpool_manager_t *m = p->m;
  pthread_mutex_lock(&p->mu);
  LIST_REMOVE(w, link);
  LIST_INSERT_HEAD(&p->zombies, w, link);
  p->nexiting--;
  p->threads_retired++;
  unsigned left = p->nthreads, max = p->max_workers;
  pthread_mutex_unlock(&p->mu);
  if (why != RETIRE_STOPPED) {
    tpool__logf(&m->log, TPOOL_LOG_INFO,
                "ThreadPool[%s] Shrank to %u workers (%s, max %u)", p->name,
                left, why == RETIRE_IDLE ? "idle" : "resized", max);
    tpool__monitor_kick(m, 0); /* to join this thread */
  }
  tpool__manager_notify(m);
  tpool__manager_unref(m);
}

/* Joins (or, for the calling thread itself, detaches) every worker from
   `w` on along the list and frees their records. */
static void join_all(tpool__worker_t *w) {
  while (w) {
    tpool__worker_t *next = LIST_NEXT(w, link);
    if (pthread_equal(w->thread, pthread_self()))
      pthread_detach(w->thread); /* the last worker freeing the manager */
    else
      pthread_join(w->thread, NULL);
    free(w);
    w = next;
  }
}

void tpool__pool_reap(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  tpool__worker_t *z = LIST_FIRST(&p->zombies);
  LIST_INIT(&p->zombies);
  pthread_mutex_unlock(&p->mu);
  join_all(z);
}

/* Hands the worker's finished task to its loop. Called without mu. */
static void flush(tpool__task_t **finished) {
  if (!*finished)
    return;
  tpool__task_finish(*finished);
  *finished = NULL;
}

static void *worker_main(void *arg) {
  tpool__worker_t *w = arg;
  tpool_pool_t *p = w->pool;
  tpool_manager_t *m = p->m;
  worker_of = m;
  worker_setup(w);

  /* The task this worker last ran, posted once the lock is released: the
     accounting for one task and the pop of the next share a lock. */
  tpool__task_t *finished = NULL;
  tpool__task_t *t = NULL;
  retire_t why = RETIRE_STOPPED;
  pthread_mutex_lock(&p->mu);
  /* Counted as starting until now, under the same lock as its first look
     for work, so a burst of submits does not start threads it needs not. */
  p->nstarting--;
  for (;;) {
    next_t got = next_task(p, finished != NULL, &t, &why);
    if (got == MUST_RETIRE)
      break;
    if (got == MUST_FLUSH) {
      pthread_mutex_unlock(&p->mu);
      flush(&finished);
      pthread_mutex_lock(&p->mu);
      continue;
    }
    if (got == GOT_TASK) {
      w->current = t;
      w->stuck_reported = false;
      t->start_ns = tpool__now_ns();
      p->nbusy++;
      tpool__hist_record(&p->wait_hist, t->start_ns - t->submit_ns);
    }
    uint64_t soft = p->soft_timeout_ns;
    pthread_mutex_unlock(&p->mu);

    flush(&finished);
    finished = t;
    if (got == GOT_EXPIRED) {
      if (tpool__verbose(m))
        log_task(p, TPOOL_LOG_INFO, t->id, "Expired after %.3fs in queue",
                 tpool__ns_to_s(t->end_ns - t->submit_ns));
      pthread_mutex_lock(&p->mu);
      continue;
    }
    if (soft)
      tpool__monitor_kick(m, t->start_ns + soft);
    run_task(p, t);

    pthread_mutex_lock(&p->mu);
    p->nbusy--;
    w->current = NULL;
    if (t->status == 0)
      p->completed++;
    else
      p->failed++;
    tpool__hist_record(&p->run_hist, t->end_ns - t->start_ns);
  }
  pthread_mutex_unlock(&p->mu);
  flush(&finished);
  worker_retire(w, why);
  return NULL;
}

/* ---- submit ------------------------------------------------------------ */

/* Refuses new work when stopping or full. Under mu. */
static int admit(const tpool_pool_t *p) {
  if (p->stopping)
    return -ESHUTDOWN;
  if (p->queued >= p->queue_limit)
    return -EAGAIN;
  return 0;
}

/* True when one more queued task would wait with no idle worker to take it
   and the pool may grow. Under mu. */
static bool needs_thread(const tpool_pool_t *p) {
  return p->started && p->nidle <= p->nwakeups &&
         p->nthreads < p->max_workers &&
         p->queued + 1 > (size_t)p->nwakeups + p->nstarting;
}

static int enqueue(tpool_pool_t *p, tpool__task_t *t) {
  pthread_mutex_lock(&p->mu);
  p->submitted++;
  int rc = admit(p);
  if (rc == 0 && needs_thread(p)) {
    p->nthreads++;
    p->nstarting++;
    pthread_mutex_unlock(&p->mu);
    int spawned = spawn(p);
    pthread_mutex_lock(&p->mu);
    rc = admit(p);
    if (rc == 0 && spawned != 0 && p->nthreads == 0)
      rc = -EAGAIN; /* nobody could ever run it: refuse, don't strand it */
  }
  if (rc != 0) {
    p->rejected++;
    pthread_mutex_unlock(&p->mu);
    return rc;
  }
  queue_push(p, t);
  bool wake = p->nidle > p->nwakeups;
  if (wake)
    p->nwakeups++;
  pthread_mutex_unlock(&p->mu);
  /* Signalled after unlocking, so the woken worker does not block on the
     mutex we still hold. */
  if (wake)
    pthread_cond_signal(&p->work_cv);
  return 0;
}

int64_t tpool_submit(tpool_pool_t *p, const char *name, tpool_work_cb work,
                     tpool_done_cb done, void *arg,
                     const tpool_task_opts_t *opts) {
  if (!p || !work)
    return -EINVAL;
  tpool_manager_t *m = p->m;
  tpool__bridge_t *bridge = NULL;
  if (done) {
    bridge = tpool__manager_bridge(m, opts ? opts->base : NULL);
    if (!bridge)
      return -EINVAL;
  }
  tpool__task_t *t = task_new();
  if (!t)
    return -ENOMEM;
  int64_t id = atomic_fetch_add_explicit(&m->next_id, 1, memory_order_relaxed);
  t->id = id;
  t->pool = p;
  t->bridge = bridge;
  t->work = work;
  t->done = done;
  t->arg = arg;
  t->submit_ns = tpool__now_ns();
  t->start_ns = t->end_ns = 0;
  t->status = 0;
  uint64_t deadline = 0;
  if (opts && opts->start_timeout_s > 0)
    deadline = t->submit_ns + tpool__s_to_ns(opts->start_timeout_s);
  t->deadline_ns = deadline;
  snprintf(t->name, sizeof(t->name), "%s", name && *name ? name : "task");

  bool verbose = tpool__verbose(m);
  if (verbose) {
    /* Logged before the task is queued, so its "Completed" line cannot
       come first. The counts are read under the lock but may have moved
       by the time the line is written, as in any live log. */
    pthread_mutex_lock(&p->mu);
    unsigned busy = p->nbusy;
    size_t queued = p->queued;
    pthread_mutex_unlock(&p->mu);
    log_task(p, TPOOL_LOG_INFO, id,
             "Submitting '%s' (active_threads=%u, queued=%zu)", t->name, busy,
             queued);
  }
  int rc = enqueue(p, t);
  if (rc != 0) {
    if (verbose)
      log_task(p, TPOOL_LOG_INFO, id, "Rejected: %s", tpool_strerror(rc));
    task_free(t);
    return rc;
  }
  if (deadline)
    tpool__monitor_kick(m, deadline);
  return id;
}

/* ---- life cycle, resize ------------------------------------------------ */

int tpool__pool_new(tpool_manager_t *m, const tpool_pool_options_t *po,
                    tpool_pool_t **out) {
  tpool_pool_t *p = calloc(1, sizeof(*p));
  if (!p)
    return -ENOMEM;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p);
    return -ENOMEM;
  }
  if (tpool__cond_init(&p->work_cv) != 0) {
    pthread_mutex_destroy(&p->mu);
    free(p);
    return -ENOMEM;
  }
  p->m = m;
  TAILQ_INIT(&p->queue);
  LIST_INIT(&p->workers);
  LIST_INIT(&p->zombies);
  snprintf(p->name, sizeof(p->name), "%s", po->name);
  p->max_workers = po->max_workers;
  p->min_equals_max = po->min_workers == TPOOL_MIN_EQUALS_MAX;
  p->min_workers = p->min_equals_max ? po->max_workers : po->min_workers;
  p->queue_limit = po->queue_limit;
  p->idle_timeout_ns = tpool__s_to_ns(po->idle_timeout_s);
  p->soft_timeout_ns = tpool__s_to_ns(po->soft_timeout_s);
  p->stack_size = po->stack_size;
  if (po->thread_name[0])
    snprintf(p->thread_prefix, sizeof(p->thread_prefix), "%s", po->thread_name);
  else
    snprintf(p->thread_prefix, sizeof(p->thread_prefix), "tpool-%.5s",
             po->name); /* tpool-embed-12 fits Linux's 15 characters */
  p->has_affinity = po->has_affinity;
  memcpy(p->cpu_affinity, po->cpu_affinity, sizeof(p->cpu_affinity));
  *out = p;
  return 0;
}

void tpool__pool_free(tpool_pool_t *p) {
  if (!p)
    return;
  join_all(LIST_FIRST(&p->zombies));
  tpool__task_t *t;
  while ((t = TAILQ_FIRST(&p->queue))) { /* abandoned: done cannot run */
    queue_remove(p, t);
    task_free(t);
  }
  pthread_cond_destroy(&p->work_cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int tpool__pool_start(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  p->started = true;
  unsigned want = p->stopping ? 0 : effective_min(p);
  if (!p->stopping && p->queued > want)
    want = p->queued < p->max_workers ? (unsigned)p->queued : p->max_workers;
  unsigned n = want > p->nthreads ? want - p->nthreads : 0;
  p->nthreads += n;
  p->nstarting += n;
  unsigned min = effective_min(p), max = p->max_workers;
  size_t limit = p->queue_limit;
  pthread_mutex_unlock(&p->mu);

  unsigned ok = spawn_n(p, n);
  tpool__logf(&p->m->log, TPOOL_LOG_INFO,
              "ThreadPool[%s] Started %u workers (min %u, max %u, queue "
              "limit %zu)",
              p->name, ok, min, max, limit);
  return n > 0 && ok == 0 ? -EAGAIN : 0;
}

void tpool__pool_stop(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_mutex_unlock(&p->mu);
  pthread_cond_broadcast(&p->work_cv);
}

int tpool_pool_resize(tpool_pool_t *p, unsigned min_workers,
                      unsigned max_workers) {
  if (!p || max_workers == 0 || max_workers > TPOOL_WORKERS_MAX ||
      (min_workers != TPOOL_MIN_EQUALS_MAX && min_workers > max_workers))
    return -EINVAL;
  pthread_mutex_lock(&p->mu);
  p->max_workers = max_workers;
  p->min_equals_max = min_workers == TPOOL_MIN_EQUALS_MAX;
  p->min_workers = p->min_equals_max ? max_workers : min_workers;
  unsigned n = 0;
  if (p->started && !p->stopping) {
    /* Grow to the new minimum, and further for queued tasks that no idle
       or starting worker is about to take. */
    size_t soon = (size_t)(p->nidle - p->nwakeups) + p->nstarting;
    size_t want = effective_min(p);
    if (p->queued > soon && p->nthreads + (p->queued - soon) > want)
      want = p->nthreads + (p->queued - soon);
    if (want > max_workers)
      want = max_workers;
    n = want > p->nthreads ? (unsigned)want - p->nthreads : 0;
    p->nthreads += n;
    p->nstarting += n;
  }
  unsigned now_threads = p->nthreads;
  pthread_mutex_unlock(&p->mu);
  /* Everyone re-checks: above the new maximum they retire; below a lowered
     minimum an untimed idle wait becomes a timed one. */
  pthread_cond_broadcast(&p->work_cv);
  spawn_n(p, n);
  tpool__logf(&p->m->log, TPOOL_LOG_INFO,
              "ThreadPool[%s] Resized to min %u, max %u (workers=%u)", p->name,
              min_workers == TPOOL_MIN_EQUALS_MAX ? max_workers : min_workers,
              max_workers, now_threads);
  return 0;
}

/* ---- cancel, shutdown helpers ------------------------------------------ */

int tpool__pool_cancel(tpool_pool_t *p, int64_t id) {
  pthread_mutex_lock(&p->mu);
  tpool__task_t *t;
  TAILQ_FOREACH(t, &p->queue, qlink) {
    if (t->id != id)
      continue;
    end_unstarted(p, t, -ECANCELED, tpool__now_ns());
    pthread_mutex_unlock(&p->mu);
    if (tpool__verbose(p->m))
      log_task(p, TPOOL_LOG_INFO, id, "Cancelled");
    tpool__manager_notify(p->m);
    return 0;
  }
  tpool__worker_t *w;
  LIST_FOREACH(w, &p->workers, link) {
    if (w->current && w->current->id == id) {
      pthread_mutex_unlock(&p->mu);
      return -EBUSY;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return -ENOENT;
}

size_t tpool__pool_cancel_queued(tpool_pool_t *p) {
  uint64_t now = tpool__now_ns();
  pthread_mutex_lock(&p->mu);
  size_t n = p->queued;
  tpool__task_t *t;
  while ((t = TAILQ_FIRST(&p->queue)))
    end_unstarted(p, t, -ECANCELED, now);
  pthread_mutex_unlock(&p->mu);
  if (n > 0)
    tpool__manager_notify(p->m);
  return n;
}

bool tpool__pool_is_finished(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  bool done = p->nthreads == 0 && p->nexiting == 0 && p->queued == 0;
  pthread_mutex_unlock(&p->mu);
  return done;
}

bool tpool__pool_is_stranded(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  bool stranded = p->nthreads == 0 && p->nexiting == 0 && p->queued > 0;
  pthread_mutex_unlock(&p->mu);
  return stranded;
}

/* A running task, copied under the lock to be logged without it. */
typedef struct {
  int64_t id;
  char name[TPOOL_TASK_NAME_MAX];
  double running_s;
} running_t;

#define REPORT_MAX 16

unsigned tpool__pool_report_running(tpool_pool_t *p, bool report) {
  running_t r[REPORT_MAX];
  unsigned n = 0;
  pthread_mutex_lock(&p->mu);
  uint64_t now = tpool__now_ns(); /* under the lock: no task starts later */
  unsigned busy = p->nbusy;
  tpool__worker_t *w;
  LIST_FOREACH(w, &p->workers, link) {
    if (!w->current || n == REPORT_MAX)
      continue;
    r[n].id = w->current->id;
    memcpy(r[n].name, w->current->name, sizeof(r[n].name));
    r[n].running_s = tpool__ns_to_s(now - w->current->start_ns);
    n++;
  }
  pthread_mutex_unlock(&p->mu);
  for (unsigned i = 0; report && i < n; i++)
    log_task(p, TPOOL_LOG_WARN, r[i].id,
             "'%s' still running after %.1fs at the shutdown deadline; its "
             "thread is left to finish it",
             r[i].name, r[i].running_s);
  return busy;
}

/* ---- monitor scan and snapshot ---------------------------------------- */

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
      end_unstarted(p, t, -ETIMEDOUT, now);
      (*nexpired)++;
    } else if (t->deadline_ns) {
      next = earlier(next, t->deadline_ns);
    }
    t = following;
  }
  return next;
}

/* Under mu: flags running tasks that crossed the soft timeout, once each,
   copying up to REPORT_MAX of them for the log. Returns the earliest
   crossing still ahead. */
static uint64_t flag_stuck(tpool_pool_t *p, uint64_t now, running_t *stuck,
                           unsigned *nstuck) {
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
    if (*nstuck < REPORT_MAX) {
      running_t *r = &stuck[(*nstuck)++];
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
  p->nthreads++;
  p->nstarting++;
  return true;
}

uint64_t tpool__pool_scan(tpool_pool_t *p, uint64_t now) {
  running_t stuck[REPORT_MAX];
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
    spawn(p); /* on failure it schedules the next try */
  for (unsigned i = 0; i < nstuck; i++)
    log_task(p, TPOOL_LOG_WARN, stuck[i].id,
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
  uint64_t now = tpool__now_ns(); /* under the lock: no task starts later */
  snprintf(ps->name, sizeof(ps->name), "%s", p->name);
  ps->min_workers = effective_min(p);
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
  ps->soft_timeout_s = tpool__ns_to_s(p->soft_timeout_ns);
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
  }
  pthread_mutex_unlock(&p->mu);
  if (ps->nactive > 1)
    qsort(ps->active, ps->nactive, sizeof(*ps->active), by_id);
  tpool__hist_summary(&h[0], &ps->run);
  tpool__hist_summary(&h[1], &ps->wait);
  free(h);
  return rc;
}

const char *tpool_pool_name(const tpool_pool_t *p) {
  return p->name;
}
