/*
 * worker.c — the worker threads of a pool: starting one (with its stack
 * size, name, CPU affinity and a signal mask that leaves process signals
 * to the loop thread), its loop — take a task, run it, account for it —
 * and its retirement, after which the thread is joined by the monitor,
 * shutdown or free.
 *
 * DESIGN
 * A worker takes the pool lock once per task: it ends the task it just
 * ran (tpool__task_end, keeping it to post later), moves what direct
 * submits pushed on the intake to the queue and pops the next in the same
 * critical section, and posts the ended task to its loop's bridge after
 * unlocking; with nothing left to pop it posts before it sleeps. Before it
 * sleeps or retires it counts itself out of `nawake`, then looks at `queued`
 * once more (pool.c, submit_direct). Idle workers above the minimum wait with
 * the idle timeout and retire when it passes; at or below the minimum they wait
 * without a timeout, so a quiet pool costs no wakeups. Workers above a lowered
 * maximum retire when they next look for work; on shutdown they drain the
 * queue, then retire. A retiring worker posts its last completion before it
 * counts itself out (`nexiting`), so once a pool is finished every completion
 * is on its bridge. Threads are joinable: a retired worker's record waits on
 * the pool's zombie list until someone joins it, so "shut down" means every
 * thread has exited. Only a worker still inside a task at free is left running;
 * the last such worker frees the manager and detaches itself.
 */
#include "pools_internal.h"

#include <errno.h>
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

static void start_failed(tpool_pool_t *p, int err, const char *what);

/* The context of the calling worker thread (thread_start's *ctx). */
static _Thread_local void *thread_ctx;

void *tpool_thread_context(void) {
  return thread_ctx;
}

/* Starts one worker thread. The caller has already counted it in nthreads
   and nstarting (under mu), so concurrent submitters do not over-grow;
   this undoes that count on failure. Called without mu. */
int tpool__worker_spawn(tpool_pool_t *p) {
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
  start_failed(p, -rc, "Could not start a worker thread");
  return -rc;
}

/* Undoes the count of a worker that did not start (thread creation, or its
   pool's thread_start hook, failed with `err`): counts the failure, hands
   any task it was counted on to an idle worker, schedules a retry if the
   pool is left with queued tasks and no worker, and logs `what`. Called
   without mu. */
static void start_failed(tpool_pool_t *p, int err, const char *what) {
  tpool_manager_t *m = p->m;
  pthread_mutex_lock(&p->mu);
  p->nthreads--;
  p->nstarting--;
  p->nawake--;
  p->thread_failures++;
  unsigned now_threads = p->nthreads, max = p->max_workers;
  /* A direct submit may have counted on this thread: hand its task to an
     idle worker, if there is one (with none, the retry below covers it). */
  tpool__pool_absorb(p);
  bool wake = p->queued > 0 && tpool__wake_claim(p);
  /* Tasks accepted while this thread was expected to start must not wait
     for a submit that may never come: the monitor retries, with backoff. */
  uint64_t retry = tpool__pool_respawn_later(p);
  pthread_mutex_unlock(&p->mu);
  if (wake)
    pthread_cond_signal(&p->work_cv);
  tpool__logf(&m->log, TPOOL_LOG_WARN, "ThreadPool[%s] %s: %s (workers=%u/%u)",
              p->name, what, tpool_strerror(err), now_threads, max);
  if (retry)
    tpool__monitor_kick(m, retry);
  tpool__manager_notify(m);
}

uint64_t tpool__pool_respawn_later(tpool_pool_t *p) {
  if (p->nthreads != 0 || p->queued == 0 || p->stopping || !p->started)
    return 0;
  p->respawn_delay_ns =
      p->respawn_delay_ns ? p->respawn_delay_ns * 2 : RESPAWN_FIRST_NS;
  if (p->respawn_delay_ns > RESPAWN_MAX_NS)
    p->respawn_delay_ns = RESPAWN_MAX_NS;
  return p->respawn_at_ns = tpool__now_ns() + p->respawn_delay_ns;
}

/* Starts n workers already counted in nthreads/nstarting. Returns how many
   started. */
unsigned tpool__worker_spawn_n(tpool_pool_t *p, unsigned n) {
  unsigned ok = 0;
  for (unsigned i = 0; i < n; i++)
    ok += tpool__worker_spawn(p) == 0;
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

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/*
 * The pool's opt-in spin before sleep: polls the pool's push counter for
 * up to spin_ns without the lock, so a task submitted meanwhile starts
 * without a futex wake (a cross-core wakeup costs tens of microseconds on
 * a virtual machine). One worker per pool spins at a time, and submitters
 * signal nobody while it does. Called and returns with mu held.
 */
static void spin_for_work(tpool_pool_t *p) {
  uint64_t seen = atomic_load_explicit(&p->pushes, memory_order_relaxed);
  uint64_t until = tpool__now_ns() + p->spin_ns;
  p->nspinning++;
  pthread_mutex_unlock(&p->mu);
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(&p->pushes, memory_order_acquire) != seen ||
        atomic_load_explicit(&p->intake, memory_order_relaxed))
      break;
    if (i % 64 == 0 && tpool__now_ns() >= until)
      break;
    cpu_relax();
  }
  pthread_mutex_lock(&p->mu);
  p->nspinning--;
}

/* What next_task() found. */
typedef enum { GOT_TASK, GOT_EXPIRED, MUST_FLUSH, MUST_RETIRE } next_t;

/* What next_task() hands back besides its verdict. */
typedef struct {
  tpool__task_t *task; /* GOT_TASK, GOT_EXPIRED */
  retire_t why;        /* MUST_RETIRE */
  bool wake_next;      /* signal work_cv after unlocking: more work waits */
  bool waited;         /* it slept or spun before finding the task */
} look_t;

/*
 * Finds this worker's next task. GOT_EXPIRED: a queued task whose start
 * deadline has passed, already accounted for. MUST_FLUSH: the queue is
 * empty and the worker still holds a finished task (`holding`): it must
 * post it before it may sleep. MUST_RETIRE: the worker must leave; it is
 * already counted out of nthreads and into nexiting, so no two workers
 * retire for the same reason.
 * Called and returns with mu held.
 */
static next_t next_task(tpool_pool_t *p, bool holding, look_t *out) {
  bool spun = false;
  out->waited = false;
  out->wake_next = false;
  for (;;) {
    tpool__pool_absorb(p);
    if (p->nthreads > p->max_workers) {
      out->why = RETIRE_RESIZED;
      break;
    }
    tpool__task_t *t = TAILQ_FIRST(&p->queue);
    if (t) {
      tpool__queue_remove(p, t);
      out->task = t;
      out->wake_next = !TAILQ_EMPTY(&p->queue) && tpool__wake_claim(p);
      if (t->deadline_ns) {
        uint64_t now = tpool__now_ns();
        if (now >= t->deadline_ns) { /* posted by the caller, unlocked */
          tpool__task_end(p, t, -ETIMEDOUT, TPOOL__NOT_RUN, now, &out->task);
          return GOT_EXPIRED;
        }
      }
      return GOT_TASK;
    }
    if (p->stopping) {
      if (tpool__pool_absorb_settled(p))
        continue;
      out->why = RETIRE_STOPPED;
      break;
    }
    if (holding)
      return MUST_FLUSH;
    out->waited = true;
    if (!spun && p->spin_ns > 0 && p->nspinning == 0) {
      spun = true;
      spin_for_work(p);
      continue;
    }
    spun = false;
    /* At or below the minimum, wait without a timeout: a quiet fixed-size
       pool costs no wakeups. */
    uint64_t until = p->nthreads > tpool__pool_min(p)
                         ? tpool__now_ns() + p->idle_timeout_ns
                         : UINT64_MAX;
    /* Counted idle before the last look at `queued`: a direct submit that
       still saw this worker awake pushed before that look (pool.c). */
    p->nidle++;
    p->nawake--;
    int rc = 0;
    if (p->queued == 0)
      rc = tpool__cond_wait_until(&p->work_cv, &p->mu, until);
    p->nawake++;
    p->nidle--;
    if (p->nwakeups > 0)
      p->nwakeups--;
    if (rc == ETIMEDOUT && !p->stopping && p->nthreads > tpool__pool_min(p)) {
      /* The same order to leave: counted out, then one more look. */
      p->nawake--;
      if (p->queued == 0) {
        out->why = RETIRE_IDLE;
        goto counted_out;
      }
      p->nawake++;
    }
  }
  p->nawake--;
counted_out:
  p->nthreads--;
  p->nexiting++;
  /* Leaving for a resize with work queued (or pushed since the last look):
     the workers that stay may all be idle. */
  out->wake_next = p->queued > 0 && tpool__wake_claim(p);
  return MUST_RETIRE;
}

/* Runs the task's work; its status and end time are set when it ends
   (tpool__task_end), or kept for the next attempt. */
static void run_task(tpool_pool_t *p, tpool__task_t *t) {
  if (tpool__work_error_set) /* what an earlier task said */
    tpool__work_error_set = false;
  int status = t->work(t->arg);
  t->end_ns = tpool__now_ns();
  t->status = status;
  if (!tpool__verbose(p->m))
    return;
  double secs = tpool__ns_to_s(t->end_ns - t->start_ns);
  if (status == 0)
    tpool__log_task(p, TPOOL_LOG_INFO, t->id, "Completed in %.3fs", secs);
  else
    tpool__log_task(p, TPOOL_LOG_INFO, t->id, "Failed in %.3fs: %s (%d)", secs,
                    tpool_strerror(status), status);
}

/* Leaves the pool. The worker's record moves to the zombie list, where
   whoever reaps next (the monitor, shutdown or free) joins the thread and
   frees it; after unlocking, the thread reads only the pool's immutable
   name and touches the manager, which its reference keeps alive. */
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

/* Hands the worker's ended task to its loop. Called without mu. */
static void flush(tpool__task_t **finished) {
  if (!*finished)
    return;
  tpool__task_post(*finished);
  *finished = NULL;
}

static void *worker_main(void *arg) {
  tpool__worker_t *w = arg;
  tpool_pool_t *p = w->pool;
  tpool_manager_t *m = p->m;
  worker_of = m;
  if (p->thread_start) {
    /* The pool's per-thread resources, before anything else: a thread
       that cannot have them never joins the pool. */
    void *ctx = NULL;
    int rc = p->thread_start(p->name, &ctx, p->thread_arg);
    if (rc != 0) {
      /* Joined by the next reap (shutdown reaps once no worker is counted),
         so this thread never outlives a shutdown that says all have gone. */
      pthread_mutex_lock(&p->mu);
      w->thread = pthread_self();
      LIST_INSERT_HEAD(&p->zombies, w, link);
      pthread_mutex_unlock(&p->mu);
      start_failed(p, rc < 0 ? rc : -EIO, "Worker thread start hook failed");
      tpool__monitor_kick(m, 0); /* to join this thread */
      tpool__manager_unref(m);
      return NULL;
    }
    thread_ctx = ctx;
  }
  worker_setup(w);

  /* The task this worker last ran, posted once the lock is released: the
     accounting for one task and the pop of the next share a lock. */
  tpool__task_t *finished = NULL;
  look_t look = {0};
  tpool__breaker_news_t news = {0};
  pthread_mutex_lock(&p->mu);
  /* Counted as starting until now, under the same lock as its first look
     for work, so a burst of submits does not start threads it needs not. */
  p->nstarting--;
  for (;;) {
    next_t got = next_task(p, finished != NULL, &look);
    if (got == MUST_RETIRE)
      break;
    if (got == MUST_FLUSH) {
      pthread_mutex_unlock(&p->mu);
      flush(&finished);
      pthread_mutex_lock(&p->mu);
      continue;
    }
    tpool__task_t *t = look.task;
    if (got == GOT_TASK) {
      /* Back to back, the task starts when the last one ended (a clock
         read saved per task); after a wait, or if it was queued after
         that, the clock is read. */
      uint64_t last_end = finished && !look.waited ? finished->end_ns : 0;
      w->current = t;
      w->stuck_reported = false;
      t->attempt++;
      t->start_ns = last_end > t->submit_ns ? last_end : tpool__now_ns();
      p->nbusy++;
      tpool__hist_record(&p->wait_hist, t->start_ns - t->submit_ns);
    }
    uint64_t soft = p->soft_timeout_ns;
    pthread_mutex_unlock(&p->mu);
    if (look.wake_next) /* more work waits: hand it to an idle worker */
      pthread_cond_signal(&p->work_cv);

    flush(&finished);
    if (got == GOT_EXPIRED) {
      finished = t; /* already ended by next_task() */
      if (tpool__verbose(m))
        tpool__log_task(p, TPOOL_LOG_INFO, t->id,
                        "Expired after %.3fs in queue",
                        tpool__ns_to_s(t->end_ns - t->submit_ns));
      pthread_mutex_lock(&p->mu);
      continue;
    }
    if (soft)
      tpool__monitor_kick(m, t->start_ns + soft);
    run_task(p, t);
    /* A retry's record and timer are made here, outside the lock. */
    tpool__retry_t *retry = t->status == -TPOOL_ERETRY
                                ? tpool__retry_new(t, tpool__pool_retry_due)
                                : NULL;
    uint64_t backoff = 0;

    pthread_mutex_lock(&p->mu);
    p->nbusy--;
    w->current = NULL;
    tpool__hist_record(&p->run_hist, t->end_ns - t->start_ns);
    if (p->breaker.window)
      tpool__breaker_record(&p->breaker, t->status != 0, t->trial_gen,
                            t->end_ns, &news);
    int64_t id = t->id;
    unsigned attempt = t->attempt;
    if (retry && tpool__retry_take(p, t, retry, &backoff))
      retry = NULL; /* it waits for its timer, not for its loop */
    else /* posted after unlocking, with the next task's pop or by flush */
      tpool__task_end(p, t, t->status, TPOOL__RAN, t->end_ns, &finished);
    if (retry || backoff || news.why != TPOOL__BREAKER_QUIET) {
      pthread_mutex_unlock(&p->mu);
      tpool__retry_discard(retry); /* not taken: the task ended */
      if (backoff && tpool__verbose(m))
        tpool__log_task(p, TPOOL_LOG_INFO, id,
                        "Retrying in %.3fs (attempt %u next)",
                        tpool__ns_to_s(backoff), attempt + 1);
      tpool__breaker_log(p, &news);
      news.why = TPOOL__BREAKER_QUIET;
      pthread_mutex_lock(&p->mu);
    }
  }
  pthread_mutex_unlock(&p->mu);
  if (look.wake_next)
    pthread_cond_signal(&p->work_cv);
  flush(&finished);
  if (p->thread_stop)
    p->thread_stop(p->name, thread_ctx, p->thread_arg);
  thread_ctx = NULL;
  worker_retire(w, look.why);
  return NULL;
}
