/*
 * pool.c — the executor behind one named pool: its bounded queue, submit,
 * growth and shrink, resize, cancel, and a retried task's return to the
 * queue. The worker threads themselves — how they start, take work, retire
 * and are joined — are in worker.c; how a task ends is in task.c; what
 * the monitor does to a pool in scan.c, what it reports in snapshot.c.
 *
 * DESIGN
 * Who runs here: submitters (any thread) push tasks; worker threads pop
 * and run them; the monitor thread expires overdue queued tasks and flags
 * stuck ones; cancel, resize, snapshot and shutdown come from any thread.
 * What they share: the intake and the counts a lock-free submit reads
 * (pools_internal.h), and everything under the pool's one mutex `mu` — the
 * queue (an intrusive doubly linked list, so cancel and expiry unlink in O(1)),
 * the thread counts, each worker's `current` task, the counters and the
 * histograms. The lock is held only for list and counter updates; work,
 * done callbacks and log sinks always run without it.
 * How work moves: while every worker the pool may have is busy, a submit
 * takes no lock: it pushes the task on the pool's intake, a lock-free
 * stack that workers move to the queue under the lock when they look for
 * work (submit_direct says why no task is stranded). Otherwise a submit
 * takes the lock once, queues the task and, if an idle worker is waiting
 * and has not already been signalled, signals one after unlocking. If none
 * is idle and the pool is below its maximum, the submitter starts a thread
 * first (as Java's ThreadPoolExecutor does), so a pool that cannot start
 * any thread refuses the task rather than strand it.
 * Resize only changes the limits and wakes every worker (worker.c says
 * what they do then); queued tasks stay queued, so nothing is lost.
 */
#include "pools_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- submit ------------------------------------------------------------ */

/* Refuses new work when stopping or full. Under mu. */
static int admit(const tpool_pool_t *p) {
  if (p->stopping)
    return -ESHUTDOWN;
  if (p->queued >= p->queue_limit)
    return -EAGAIN;
  return 0;
}

/* admit(), then the circuit breaker, which tags a trial task. Under mu. */
static int admit_task(tpool_pool_t *p, tpool__task_t *t,
                      tpool__breaker_news_t *news) {
  int rc = admit(p);
  if (rc == 0 && p->breaker.window)
    rc = tpool__breaker_admit(&p->breaker, t->submit_ns, &t->trial_gen, news);
  return rc;
}

/* True when one more queued task would wait with no idle worker to take it
   and the pool may grow. Under mu. */
static bool needs_thread(const tpool_pool_t *p) {
  return p->started && p->nidle <= p->nwakeups &&
         p->nthreads < p->max_workers &&
         p->queued + 1 > (size_t)p->nwakeups + p->nstarting + p->nspinning;
}

bool tpool__pool_absorb(tpool_pool_t *p) {
  if (!atomic_load_explicit(&p->intake, memory_order_relaxed))
    return false;
  tpool__task_t *t = atomic_exchange(&p->intake, NULL);
  if (!t)
    return false;
  tpool__task_t *first = NULL;
  while (t) { /* reverse the LIFO: oldest first */
    tpool__task_t *next = (tpool__task_t *)t->node.next;
    t->node.next = (tpool__node_t *)first;
    first = t;
    t = next;
  }
  for (t = first; t; t = (tpool__task_t *)t->node.next) {
    TAILQ_INSERT_TAIL(&p->queue, t, qlink); /* `queued` counts it already */
    p->submitted++;
  }
  return true;
}

bool tpool__pool_absorb_settled(tpool_pool_t *p) {
  /* A submit inside its push is a few instructions from done, unless it
     was preempted there. */
  for (unsigned spins = 0; atomic_load(&p->entering) > 0; spins++) {
    if (spins >= 100)
      sched_yield();
  }
  return tpool__pool_absorb(p);
}

/* Settles a task that went in directly, when idle workers may need a
   signal or the pool a new thread (see submit_direct). */
static void direct_wake(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb(p);
  unsigned spawn = 0;
  bool wake = false;
  if (needs_thread(p)) {
    tpool__pool_count_new(p, 1);
    spawn = 1;
  } else {
    wake = tpool__wake_claim(p);
  }
  pthread_mutex_unlock(&p->mu);
  if (wake)
    pthread_cond_signal(&p->work_cv);
  /* On failure the task stays queued: the remaining workers run it, or,
     with none left, the monitor retries starting one. */
  tpool__worker_spawn_n(p, spawn);
}

/*
 * The direct submit: when every worker the pool may have is awake (busy,
 * or about to look for work) and none is idle, a task is pushed on the
 * intake without the pool's lock and without signalling anyone. The loop
 * thread then never contends with the workers for the lock, which at a
 * million tasks a second is where the time went.
 * Why nothing is stranded: `queued`, `nidle` and `nawake` are sequentially
 * consistent. The submit counts the task in `queued` and pushes it, then
 * reads nidle and nawake; a worker that stops being awake (to sleep, or
 * to retire) first changes those counts, then reads `queued`. So either
 * the submit sees the change and settles under the lock (direct_wake),
 * or the worker sees the task and does not go. Tasks with a start
 * deadline, pools that may still grow and any refusal take the locked
 * path, which counts rejections and starts threads.
 * Returns true if the task went in.
 */
static bool submit_direct(tpool_pool_t *p, tpool__task_t *t) {
  if (t->deadline_ns || p->nidle != 0 ||
      atomic_load_explicit(&p->guarded, memory_order_relaxed) ||
      p->nawake < atomic_load_explicit(&p->max_direct, memory_order_relaxed))
    return false;
  bool in = false;
  p->entering++;
  if (!atomic_load(&p->closed)) {
    if (p->queued++ < p->queue_limit) {
      tpool__task_t *old =
          atomic_load_explicit(&p->intake, memory_order_relaxed);
      do {
        t->node.next = (tpool__node_t *)old;
      } while (!atomic_compare_exchange_weak(&p->intake, &old, t));
      in = true;
    } else {
      p->queued--;
    }
  }
  p->entering--;
  if (in && (p->nidle != 0 || p->nawake == 0))
    direct_wake(p);
  return in;
}

static int enqueue(tpool_pool_t *p, tpool__task_t *t) {
  if (submit_direct(p, t))
    return 0;
  tpool__breaker_news_t news = {0};
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb(p); /* keeps submission order */
  p->submitted++;
  int rc = admit_task(p, t, &news);
  if (rc == 0 && needs_thread(p)) {
    tpool__pool_count_new(p, 1);
    pthread_mutex_unlock(&p->mu);
    int spawned = tpool__worker_spawn(p);
    pthread_mutex_lock(&p->mu);
    int again = admit(p);
    if (again == 0 && spawned != 0 && p->nthreads == 0)
      again = -EAGAIN; /* nobody could ever run it: refuse, don't strand it */
    if (again != 0) {
      tpool__breaker_unadmit(&p->breaker, t->trial_gen);
      rc = again;
    }
  }
  if (rc != 0) {
    p->rejected++;
    p->last_reject_ns = tpool__now_ns();
    pthread_mutex_unlock(&p->mu);
    tpool__breaker_log(p, &news);
    return rc;
  }
  tpool__queue_push(p, t);
  bool wake = tpool__wake_claim(p);
  /* The worker started for this task may already have failed its start
     (a thread_start hook), before the task was queued: then nothing else
     would start one. */
  uint64_t retry = tpool__pool_respawn_later(p);
  pthread_mutex_unlock(&p->mu);
  /* Signalled after unlocking, so the woken worker does not block on the
     mutex we still hold. */
  if (wake)
    pthread_cond_signal(&p->work_cv);
  if (retry)
    tpool__monitor_kick(p->m, retry);
  tpool__breaker_log(p, &news);
  return 0;
}

/* A delayed submit: counted submitted, refused while stopping or when as
   many tasks as the queue limit are scheduled already, else held on a
   timer (r) until it comes due. */
static int enqueue_delayed(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r,
                           uint64_t delay_ns) {
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb(p); /* keeps the counts in step */
  p->submitted++;
  int rc = p->stopping                       ? -ESHUTDOWN
           : p->nscheduled >= p->queue_limit ? -EAGAIN
                                             : 0;
  if (rc == 0 && !tpool__retry_delay(p, t, r, delay_ns)) {
    p->submitted--; /* out of memory for the timer: not the pool's refusal */
    pthread_mutex_unlock(&p->mu);
    return -ENOMEM;
  }
  if (rc != 0) {
    p->rejected++;
    p->last_reject_ns = tpool__now_ns();
  }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

/* Puts a task coming back from a wait on its timer at the end of the
   queue (whatever the queue limit; see retry.c), its start deadline
   counted again from now; `retry` when the wait was a retry's backoff
   (not a delayed submit's). *wake: signal work_cv after unlocking;
   *deadline: the new deadline to kick the monitor with (0: none).
   Returns how many workers the caller must spawn after unlocking
   (already counted). Under mu. */
static unsigned push_again(tpool_pool_t *p, tpool__task_t *t, bool retry,
                           bool *wake, uint64_t *deadline) {
  unsigned spawn = 0;
  uint64_t now = tpool__now_ns();
  t->retry = NULL;
  if (t->deadline_ns) /* the same start timeout, from now */
    t->deadline_ns = now + (t->deadline_ns - t->submit_ns);
  *deadline = t->deadline_ns;
  t->submit_ns = now;          /* this attempt's wait starts now */
  t->start_ns = t->end_ns = 0; /* and it has not run yet */
  if (!p->stopping && needs_thread(p)) {
    tpool__pool_count_new(p, 1);
    spawn = 1;
  }
  tpool__queue_push(p, t);
  p->retries_total += retry;
  *wake = tpool__wake_claim(p);
  return spawn;
}

/* The rest of tpool__submit() for a task with a delay: its timer record
   is made here, outside the lock. Returns the id, or the refusal (t is
   freed then). */
static int64_t submit_delayed(tpool_pool_t *p, tpool__task_t *t,
                              uint64_t delay_ns, bool verbose) {
  int64_t id = t->id;
  if (verbose) /* before: once scheduled, `t` may come due and end */
    tpool__log_task(p, TPOOL_LOG_INFO, id, "Scheduling '%s' in %.3fs", t->name,
                    tpool__ns_to_s(delay_ns));
  tpool__retry_t *r = tpool__retry_new(t, tpool__pool_retry_due);
  int rc = r ? enqueue_delayed(p, t, r, delay_ns) : -ENOMEM;
  if (rc != 0) {
    tpool__retry_discard(r);
    tpool__task_free(t);
    if (verbose)
      tpool__log_task(p, TPOOL_LOG_INFO, id, "Rejected: %s",
                      tpool_strerror(rc));
    return rc;
  }
  return id;
}

int64_t tpool_submit(tpool_pool_t *p, const char *name, tpool_work_cb work,
                     tpool_done_cb done, void *arg,
                     const tpool_task_opts_t *opts) {
  return tpool__submit(p, name, work, done, arg, opts, NULL);
}

int64_t tpool__submit(tpool_pool_t *p, const char *name, tpool_work_cb work,
                      tpool_done_cb done, void *arg,
                      const tpool_task_opts_t *opts,
                      void (*on_end)(int status, void *arg)) {
  if (!p || !work)
    return -EINVAL;
  tpool_manager_t *m = p->m;
  tpool__bridge_t *bridge = NULL;
  unsigned max_attempts = opts ? opts->max_attempts : 0;
  /* One test on the common path; NaN and negatives fail the range. */
  bool delayed = opts && opts->delay_s != 0;
  if (delayed && !(opts->delay_s > 0 && opts->delay_s <= TPOOL_DELAY_MAX_S))
    return -EINVAL;
  if (done) {
    bridge = tpool__manager_bridge(m, opts ? opts->base : NULL);
    if (!bridge)
      return -EINVAL;
  } else if ((max_attempts ? max_attempts
                           : atomic_load_explicit(&p->retry_attempts,
                                                  memory_order_relaxed)) > 1) {
    /* Retries wait on a loop's timer: borrow the first one, if any. */
    bridge = tpool__manager_bridge(m, NULL);
  }
  if (delayed && !bridge) { /* so does a delay, which needs one */
    bridge = tpool__manager_bridge(m, NULL);
    if (!bridge)
      return -EINVAL;
  }
  tpool__task_t *t = tpool__task_new();
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
  t->on_end = on_end;
  t->attempt = 0;
  t->max_attempts =
      (uint16_t)(max_attempts > TPOOL__ATTEMPTS_MAX ? TPOOL__ATTEMPTS_MAX
                                                    : max_attempts);
  t->trial_gen = 0;
  t->backoff_ns = opts && opts->retry_backoff_s > 0
                      ? tpool__s_to_ns(opts->retry_backoff_s)
                      : 0;
  t->retry = NULL;
  uint64_t deadline = 0;
  if (opts && opts->start_timeout_s > 0)
    deadline = t->submit_ns + tpool__s_to_ns(opts->start_timeout_s);
  t->deadline_ns = deadline;
  if (!name || !*name)
    name = "task";
  size_t len = strnlen(name, sizeof(t->name) - 1);
  memcpy(t->name, name, len); /* not snprintf: this is the hot path */
  t->name[len] = '\0';

  bool verbose = tpool__verbose(m);
  if (delayed)
    return submit_delayed(p, t, tpool__s_to_ns(opts->delay_s), verbose);
  if (verbose) {
    /* Logged before the task is queued, so its "Completed" line cannot
       come first. The counts are read under the lock but may have moved
       by the time the line is written, as in any live log. */
    pthread_mutex_lock(&p->mu);
    unsigned busy = p->nbusy;
    size_t queued = p->queued;
    pthread_mutex_unlock(&p->mu);
    tpool__log_task(p, TPOOL_LOG_INFO, id,
                    "Submitting '%s' (active_threads=%u, queued=%zu)", t->name,
                    busy, queued);
  }
  int rc = enqueue(p, t);
  if (rc != 0) {
    if (verbose)
      tpool__log_task(p, TPOOL_LOG_INFO, id, "Rejected: %s",
                      tpool_strerror(rc));
    tpool__task_free(t);
    return rc;
  }
  if (deadline)
    tpool__monitor_kick(m, deadline);
  uint64_t spin_ns = atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
  if (spin_ns && bridge) /* `t` may be gone: read nothing from it */
    tpool__bridge_spin(bridge, spin_ns);
  return id;
}

/* ---- a retry or a delayed task comes due -------------------------------- */

void tpool__pool_retry_due(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tpool__retry_t *r = arg;
  tpool_pool_t *p = r->pool;
  bool wake = false;
  unsigned spawn = 0;
  uint64_t deadline = 0;
  tpool__breaker_news_t news = {0};
  pthread_mutex_lock(&p->mu);
  uint64_t now = tpool__now_ns();
  if (tpool__retry_early(r, now)) {
    pthread_mutex_unlock(&p->mu);
    return;
  }
  tpool__task_t *t = tpool__retry_due(p, r); /* NULL: cancelled, or stopped */
  if (t) {
    if (p->breaker.window &&
        tpool__breaker_admit(&p->breaker, now, &t->trial_gen, &news) != 0)
      tpool__task_end(p, t, -TPOOL_ECIRCUIT, TPOOL__NOT_RUN, now, NULL);
    else
      spawn = push_again(p, t, !r->delayed, &wake, &deadline);
  }
  pthread_mutex_unlock(&p->mu);
  if (wake)
    pthread_cond_signal(&p->work_cv);
  tpool__worker_spawn_n(p, spawn);
  if (deadline)
    tpool__monitor_kick(p->m, deadline);
  tpool__breaker_log(p, &news);
  tpool__manager_notify(p->m);
  tpool__retry_discard(r);
}

/* ---- life cycle, resize ------------------------------------------------ */

/* Applies the retry and breaker settings of *po. Returns whether the
   breaker's rule changed. Under mu (or before the pool is shared). */
static bool configure_retries(tpool_pool_t *p, const tpool_pool_options_t *po) {
  atomic_store_explicit(&p->retry_attempts, po->retry_attempts,
                        memory_order_relaxed);
  p->retry_backoff_ns = tpool__s_to_ns(po->retry_backoff_s);
  p->retry_backoff_max_ns = tpool__s_to_ns(po->retry_backoff_max_s);
  bool changed = tpool__breaker_configure(
      &p->breaker, po->breaker_window, po->breaker_threshold,
      tpool__s_to_ns(po->breaker_cooldown_s), po->breaker_trials);
  atomic_store(&p->guarded, po->breaker_window > 0);
  return changed;
}

int tpool__pool_new(tpool_manager_t *m, const tpool_pool_options_t *po,
                    tpool_pool_t **out) {
  tpool_pool_t *p = calloc(1, sizeof(*p));
  if (!p)
    return -ENOMEM;
  /* Adaptive: a thread finding the lock taken spins a little before it
     sleeps, as critical sections here are a few list and counter updates
     and a futex sleep and wake cost far more than waiting them out. */
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
  int rc = pthread_mutex_init(&p->mu, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) {
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
  atomic_init(&p->max_direct, po->max_workers);
  p->min_equals_max = po->min_workers == TPOOL_MIN_EQUALS_MAX;
  p->min_workers = p->min_equals_max ? po->max_workers : po->min_workers;
  p->queue_limit = po->queue_limit;
  p->idle_timeout_ns = tpool__s_to_ns(po->idle_timeout_s);
  p->soft_timeout_ns = tpool__s_to_ns(po->soft_timeout_s);
  p->spin_ns = tpool__s_to_ns(po->spin_s);
  p->stack_size = po->stack_size;
  p->thread_start = po->thread_start;
  p->thread_stop = po->thread_stop;
  p->thread_arg = po->thread_arg;
  if (po->thread_name[0])
    snprintf(p->thread_prefix, sizeof(p->thread_prefix), "%s", po->thread_name);
  else
    snprintf(p->thread_prefix, sizeof(p->thread_prefix), "tpool-%.5s",
             po->name); /* tpool-embed-12 fits Linux's 15 characters */
  p->has_affinity = po->has_affinity;
  memcpy(p->cpu_affinity, po->cpu_affinity, sizeof(p->cpu_affinity));
  TAILQ_INIT(&p->retries);
  configure_retries(p, po);
  p->history_cap = po->task_history;
  if (p->history_cap > 0) {
    p->history = calloc(p->history_cap, sizeof(*p->history));
    if (!p->history) {
      pthread_cond_destroy(&p->work_cv);
      pthread_mutex_destroy(&p->mu);
      free(p);
      return -ENOMEM;
    }
  }
  *out = p;
  return 0;
}

void tpool__pool_free(tpool_pool_t *p) {
  if (!p)
    return;
  tpool__pool_reap(p);
  /* Abandoned: their loops have stopped, so their done callbacks never
     run (the bridges discard them), but a future's waiter is still told. */
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb(p);
  uint64_t now = tpool__now_ns();
  tpool__task_t *t;
  while ((t = TAILQ_FIRST(&p->queue)))
    tpool__task_end_queued(p, t, -ECANCELED, now);
  pthread_mutex_unlock(&p->mu);
  free(p->history);
  pthread_cond_destroy(&p->work_cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int tpool__pool_start(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  p->started = true;
  unsigned want = p->stopping ? 0 : tpool__pool_min(p);
  if (!p->stopping && p->queued > want)
    want = p->queued < p->max_workers ? (unsigned)p->queued : p->max_workers;
  unsigned n = want > p->nthreads ? want - p->nthreads : 0;
  tpool__pool_count_new(p, n);
  unsigned min = tpool__pool_min(p), max = p->max_workers;
  size_t limit = p->queue_limit;
  pthread_mutex_unlock(&p->mu);

  unsigned ok = tpool__worker_spawn_n(p, n);
  tpool__logf(&p->m->log, TPOOL_LOG_INFO,
              "ThreadPool[%s] Started %u workers (min %u, max %u, queue "
              "limit %zu)",
              p->name, ok, min, max, limit);
  return n > 0 && ok == 0 ? -EAGAIN : 0;
}

void tpool__pool_stop(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  atomic_store(&p->closed, true);
  /* Every task waiting out a backoff goes back to the queue now, for the
     drain to run; a delayed task is cancelled: it never runs early. */
  uint64_t deadline = 0, now = tpool__now_ns();
  size_t cancelled = 0;
  tpool__retry_t *r;
  TAILQ_FOREACH(r, &p->retries, link) {
    if (!r->task)
      continue;
    tpool__task_t *t = tpool__retry_detach(p, r);
    if (r->delayed) {
      tpool__task_end(p, t, -ECANCELED, TPOOL__NOT_RUN, now, NULL);
      cancelled++;
      continue;
    }
    bool wake; /* every worker is woken below; none is started */
    uint64_t d = 0;
    push_again(p, t, true, &wake, &d);
    if (d && (!deadline || d < deadline))
      deadline = d;
  }
  pthread_mutex_unlock(&p->mu);
  if (cancelled > 0)
    tpool__logf(&p->m->log, TPOOL_LOG_INFO,
                "ThreadPool[%s] Cancelled %zu scheduled task(s) at shutdown",
                p->name, cancelled);
  if (deadline)
    tpool__monitor_kick(p->m, deadline);
  pthread_cond_broadcast(&p->work_cv);
}

int tpool_pool_resize(tpool_pool_t *p, unsigned min_workers,
                      unsigned max_workers) {
  if (!p || max_workers == 0 || max_workers > TPOOL_WORKERS_MAX ||
      (min_workers != TPOOL_MIN_EQUALS_MAX && min_workers > max_workers))
    return -EINVAL;
  pthread_mutex_lock(&p->mu);
  p->max_workers = max_workers;
  atomic_store_explicit(&p->max_direct, max_workers, memory_order_relaxed);
  p->min_equals_max = min_workers == TPOOL_MIN_EQUALS_MAX;
  p->min_workers = p->min_equals_max ? max_workers : min_workers;
  unsigned n = 0;
  if (p->started && !p->stopping) {
    /* Grow to the new minimum, and further for queued tasks that no idle
       or starting worker is about to take. */
    size_t soon = (size_t)(p->nidle - p->nwakeups) + p->nstarting;
    size_t want = tpool__pool_min(p);
    if (p->queued > soon && p->nthreads + (p->queued - soon) > want)
      want = p->nthreads + (p->queued - soon);
    if (want > max_workers)
      want = max_workers;
    n = want > p->nthreads ? (unsigned)want - p->nthreads : 0;
    tpool__pool_count_new(p, n);
  }
  unsigned now_threads = p->nthreads;
  pthread_mutex_unlock(&p->mu);
  /* Everyone re-checks: above the new maximum they retire; below a lowered
     minimum an untimed idle wait becomes a timed one. */
  pthread_cond_broadcast(&p->work_cv);
  tpool__worker_spawn_n(p, n);
  tpool__logf(&p->m->log, TPOOL_LOG_INFO,
              "ThreadPool[%s] Resized to min %u, max %u (workers=%u)", p->name,
              min_workers == TPOOL_MIN_EQUALS_MAX ? max_workers : min_workers,
              max_workers, now_threads);
  return 0;
}

void tpool__pool_configure(tpool_pool_t *p, const tpool_pool_options_t *po) {
  uint64_t idle_ns = tpool__s_to_ns(po->idle_timeout_s);
  uint64_t soft_ns = tpool__s_to_ns(po->soft_timeout_s);
  uint64_t spin_ns = tpool__s_to_ns(po->spin_s);
  pthread_mutex_lock(&p->mu);
  bool limits =
      p->max_workers != po->max_workers ||
      p->min_equals_max != (po->min_workers == TPOOL_MIN_EQUALS_MAX) ||
      (!p->min_equals_max && p->min_workers != po->min_workers);
  bool others = p->queue_limit != po->queue_limit ||
                p->idle_timeout_ns != idle_ns ||
                p->soft_timeout_ns != soft_ns || p->spin_ns != spin_ns;
  bool breaker = configure_retries(p, po);
  /* A lower queue limit keeps what is queued; only new submits see it. */
  p->queue_limit = po->queue_limit;
  p->idle_timeout_ns = idle_ns;
  p->soft_timeout_ns = soft_ns;
  p->spin_ns = spin_ns;
  pthread_mutex_unlock(&p->mu);
  if (breaker)
    tpool__logf(&p->m->log, TPOOL_LOG_INFO,
                "ThreadPool[%s] Circuit breaker %s: window=%u threshold=%.2f "
                "cooldown=%.3fs trials=%u (closed, window emptied)",
                p->name, po->breaker_window ? "set" : "off", po->breaker_window,
                po->breaker_threshold, po->breaker_cooldown_s,
                po->breaker_trials);
  if (limits)
    tpool_pool_resize(p, po->min_workers, po->max_workers);
  if (!others)
    return;
  /* Idle workers re-arm their timed waits; the monitor re-reads the soft
     timeout. */
  pthread_cond_broadcast(&p->work_cv);
  tpool__monitor_kick(p->m, tpool__now_ns());
  tpool__logf(&p->m->log, TPOOL_LOG_INFO,
              "ThreadPool[%s] Reconfigured: queue_limit=%zu idle_timeout=%.3fs "
              "soft_timeout=%.3fs spin=%.6fs",
              p->name, po->queue_limit, po->idle_timeout_s, po->soft_timeout_s,
              po->spin_s);
}

/* ---- cancel, shutdown helpers ------------------------------------------ */

int tpool__pool_cancel(tpool_pool_t *p, int64_t id) {
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb_settled(p);
  tpool__task_t *t;
  TAILQ_FOREACH(t, &p->queue, qlink) {
    if (t->id != id)
      continue;
    tpool__task_end_queued(p, t, -ECANCELED, tpool__now_ns());
    pthread_mutex_unlock(&p->mu);
    if (tpool__verbose(p->m))
      tpool__log_task(p, TPOOL_LOG_INFO, id, "Cancelled");
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
  tpool__retry_t *r;
  TAILQ_FOREACH(r, &p->retries, link) {
    if (!r->task || r->task->id != id)
      continue;
    bool delayed = r->delayed;
    t = tpool__retry_detach(p, r); /* waiting on its timer: ends now */
    /* A retry's times stay those of its last run. */
    tpool__task_end(p, t, -ECANCELED, TPOOL__NOT_RUN,
                    delayed ? tpool__now_ns() : t->end_ns, NULL);
    pthread_mutex_unlock(&p->mu);
    if (tpool__verbose(p->m))
      tpool__log_task(p, TPOOL_LOG_INFO, id,
                      delayed ? "Cancelled while scheduled"
                              : "Cancelled while waiting to retry");
    tpool__manager_notify(p->m);
    return 0;
  }
  pthread_mutex_unlock(&p->mu);
  return -ENOENT;
}

size_t tpool__pool_cancel_queued(tpool_pool_t *p) {
  uint64_t now = tpool__now_ns();
  pthread_mutex_lock(&p->mu);
  tpool__pool_absorb_settled(p);
  size_t n = p->queued;
  tpool__task_t *t;
  while ((t = TAILQ_FIRST(&p->queue)))
    tpool__task_end_queued(p, t, -ECANCELED, now);
  pthread_mutex_unlock(&p->mu);
  if (n > 0)
    tpool__manager_notify(p->m);
  return n;
}

bool tpool__pool_settle(tpool_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  bool finished = p->nthreads == 0 && p->nexiting == 0;
  if (finished) { /* no worker is left to run what is still queued */
    tpool__pool_absorb_settled(p);
    uint64_t now = tpool__now_ns();
    tpool__task_t *t;
    while ((t = TAILQ_FIRST(&p->queue)))
      tpool__task_end_queued(p, t, -ECANCELED, now);
  }
  pthread_mutex_unlock(&p->mu);
  return finished;
}

const char *tpool_pool_name(const tpool_pool_t *p) {
  return p->name;
}

int tpool_pool_reset_breaker(tpool_pool_t *p) {
  if (!p)
    return -EINVAL;
  tpool__breaker_news_t news = {0};
  pthread_mutex_lock(&p->mu);
  bool on = p->breaker.window > 0;
  if (on)
    tpool__breaker_reset(&p->breaker, tpool__now_ns(), &news);
  pthread_mutex_unlock(&p->mu);
  tpool__breaker_log(p, &news);
  return on ? 0 : -EINVAL;
}
