/*
 * pools_internal.h — the structures the files of pools/ share: a task
 * record, a worker, a pool (executor) and the manager, with what guards
 * each field, and the functions each file offers the others. Nothing here
 * is visible to users of tpool.
 *
 * The files, and who calls whom. Calls run one way, down this list, except
 * between the pool and its workers, which call each other:
 *   manager.c      the public manager API: new, attach, start, shutdown,
 *                  free, submit by name or route, cancel, lookup
 *   reconfigure.c  tpool_manager_reconfigure()
 *   batch.c        tpool_batch_*: bounded batches on one loop
 *   future.c       tpool_submit_future(), tpool_future_*
 *   monitor.c      the monitor thread: scans the pools, writes the table
 *   status.c       the text status table
 *   stats.c        tpool_manager_stats(): a snapshot of every pool
 *   scan.c         one pool's scan for the monitor: expiry, stuck tasks,
 *                  failed-start retries
 *   snapshot.c     one pool's snapshot, its running tasks, lookup by id
 *   pool.c         the executor: submit (delayed too), life cycle,
 *                  resize, cancel, a retry's or delayed task's arrival in
 *                  the queue
 *   worker.c       its threads: start, take work, run it, retire
 *   schedule.c     periodic tasks: a loop timer that submits runs
 *   retry.c        a task's wait on a loop timer: a retry's backoff, or
 *                  a delayed submit's delay
 *   task.c         task records and the one function that ends a task
 *   history.c      the ring of finished tasks
 *   breaker.c      the circuit breaker's state machine
 *   shared.c       what the pools need of their manager: waking a
 *                  shutdown, kicking the monitor, finding a loop's
 *                  bridge or a route's pool, the manager's reference
 *                  count
 * tests/layering.sh checks this from the compiled objects.
 *
 * Lock order (every lock tpool takes, complete; a lock may be taken while
 * holding only locks to its left, or none):
 *
 *   reconf_mu -> manager mu -> pool mu -> future mu
 *                                      -> bridge timer_mu (core)
 *                                      -> libevent's base lock
 *   sched_mu -> manager mu, pool mu, libevent's base lock
 *   mon_mu, log mu (core): leaves, taken under any of the above
 *
 * - reconf_mu (manager): serialises tpool_manager_reconfigure(), which
 *   takes pool locks (tpool__pool_configure), may start threads whose
 *   failure wakes a shutdown (manager mu), kicks the monitor and logs.
 * - manager mu: `started`, `shut` and the shutdown's wait on state_cv;
 *   wait_finished() settles each pool (pool mu) under it, and attach
 *   creates a bridge (libevent's base lock) under it.
 * - pool mu: each pool's queue, workers and counters. Under it a task may
 *   end (tpool__task_end): its end hook completes a future (future mu) and
 *   it may be posted to its loop (the bridge's timer_mu when its delivery
 *   may wait); a retry arms or fires its timer (evtimer_add, event_active:
 *   libevent's base lock). Never two pools' locks at once.
 * - sched_mu (manager): the schedules, their state and their runs
 *   (schedule.c). A tick or a run now submits under it (pool mu, and the
 *   manager mu if a worker's start fails and wakes a shutdown), a
 *   schedule's timer is set under it (libevent's base lock); no pool lock
 *   is ever held while it is taken.
 * - future mu: a future's result and waiters; nothing is taken under it.
 * - bridge timer_mu: the coalescing timer of one loop (loop_bridge.c).
 * - libevent's base lock: libevent releases it before running callbacks,
 *   so a callback (a retry coming due) may take a pool mu.
 * - mon_mu: the monitor's sleep and kicks. log mu: serialises the log
 *   sink (core/log.c); the user's sink runs under it and must not call
 *   back into tpool.
 * No user callback — work, done, thread_start, thread_stop, a batch's or
 * future's — runs under any of these locks; only the log sink runs under
 * the log mu (and under reconf_mu while a reconfiguration logs, under
 * sched_mu while a schedule submits a run or logs a refusal).
 * libtpool_http takes no lock; tpool-server's own (http_mu) is a leaf.
 */
#ifndef TPOOL_POOLS_INTERNAL_H
#define TPOOL_POOLS_INTERNAL_H

#include "internal.h"

#include <event2/util.h> /* evutil_socket_t, for a retry's timer */
#include <signal.h>
#include <sys/queue.h> /* BSD lists, as libevent uses them */

#define TPOOL__BRIDGES_MAX TPOOL_BASES_MAX

/* One submitted task, from tpool_submit() until its done callback returns.
   `node` comes first so a bridge node converts back to its task. */
typedef struct tpool__task {
  tpool__node_t node;             /* link on a bridge while completing */
  TAILQ_ENTRY(tpool__task) qlink; /* protected by pool mu */
  int64_t id;
  tpool_pool_t *pool;
  tpool__bridge_t *bridge; /* NULL when done is NULL */
  tpool_work_cb work;
  tpool_done_cb done;
  void *arg;
  uint64_t submit_ns;
  uint64_t start_ns;    /* 0 if it never ran */
  uint64_t end_ns;      /* when it finished or left the queue */
  uint64_t deadline_ns; /* start deadline; 0 = none */
  int status;
  /* Called by tpool__task_end() as the task ends, whichever way, with its
     status and `arg`, before it is handed to its loop; NULL: none. A
     future completes through it (future.c). Runs under the pool's mu. */
  void (*on_end)(int status, void *arg);
  uint16_t attempt;      /* runs so far, this one included */
  uint16_t max_attempts; /* 0: the pool's retry_attempts */
  uint32_t trial_gen;    /* a breaker trial of that generation; 0: no */
  uint64_t backoff_ns;   /* first retry backoff; 0: the pool's */
  /* Set (under mu) while the task waits out a backoff; see retry.c. */
  struct tpool__retry *retry;
  char name[TPOOL_TASK_NAME_MAX];
} tpool__task_t;

/* A task's wait on a timer of its loop before it joins the queue: for
   its next attempt (a retry's backoff), or for its first (a delayed
   submit: `delayed`). From the decision until its timer fires (or the
   record is freed). Protected by its pool's mu; see retry.c. */
typedef struct tpool__retry {
  TAILQ_ENTRY(tpool__retry) link; /* on the pool's `retries` */
  tpool_pool_t *pool;
  tpool__task_t *task; /* NULL once taken (cancelled, or queued at stop) */
  struct event *ev;    /* the timer, on the task's loop */
  bool delayed;        /* a delayed submit's wait, not a retry's */
  uint64_t due_ns;     /* when the wait ends */
} tpool__retry_t;

/* The last task of a pool that ended in error (tpool_last_error_t). */
typedef struct tpool__last_error {
  bool set;
  int64_t id;
  int status;
  uint64_t end_ns;
  char name[TPOOL_TASK_NAME_MAX];
  char message[TPOOL_ERROR_MESSAGE_MAX];
} tpool__last_error_t;

/* A finished task, as the pool's history keeps it. */
typedef struct tpool__record {
  int64_t id;
  int status;
  unsigned attempts;
  uint64_t queue_wait_ns, run_ns, end_ns;
  char name[TPOOL_TASK_NAME_MAX];
} tpool__record_t;

/* A circuit breaker's state; see breaker.c. Protected by the pool's mu. */
typedef struct tpool__breaker {
  unsigned window; /* 0: off */
  double threshold;
  unsigned need; /* failures in a full window that open it */
  uint64_t cooldown_ns;
  unsigned trials;
  tpool_breaker_state_t state;
  uint32_t gen; /* bumped by every transition; tags trial tasks */
  uint64_t outcomes[TPOOL_BREAKER_WINDOW_MAX / 64]; /* ring; 1 = failed */
  unsigned pos, filled, failures;
  uint64_t open_until_ns;
  unsigned trials_running, trials_passed;
  uint64_t opened, half_opened, closed, refused;
} tpool__breaker_t;

typedef struct tpool__worker {
  LIST_ENTRY(tpool__worker) link; /* protected by pool mu */
  tpool_pool_t *pool;
  pthread_t thread;       /* set by the worker, under pool mu */
  unsigned no;            /* its number in the thread name */
  tpool__task_t *current; /* protected by pool mu */
  bool stuck_reported;    /* protected by pool mu */
} tpool__worker_t;

struct tpool_pool {
  /* Fixed at creation, and settings: read by every submit, written
     rarely (a resize or reconfigure changes settings live, under mu). */
  tpool_manager_t *m;
  char name[TPOOL_NAME_MAX];
  unsigned max_workers;
  unsigned min_workers; /* meaningless when min_equals_max */
  bool min_equals_max;
  _Atomic size_t queue_limit; /* atomic: the direct submit reads it */
  uint64_t idle_timeout_ns;
  uint64_t soft_timeout_ns;
  /* An idle worker polls this long before sleeping. Atomic: a submit
     reads it without the lock to make its loop poll as long. */
  _Atomic uint64_t spin_ns;
  size_t stack_size;
  /* True when a breaker is on: every submit then takes the lock. */
  atomic_bool guarded;
  int (*thread_start)(const char *pool, void **ctx, void *arg);
  void (*thread_stop)(const char *pool, void *ctx, void *arg);
  void *thread_arg;
  char thread_prefix[TPOOL_THREAD_NAME_MAX];
  bool has_affinity;
  uint64_t cpu_affinity[TPOOL_CPUS_MAX / 64];

  /*
   * Cache-line groups, so that what a submitting thread reads is not on a
   * line that workers write for every task:
   * - read by every direct submit, written under mu only when a worker
   *   goes idle or wakes, starts or stops: nidle, nawake (waiting on
   *   work_cv; counted in nthreads but not waiting), `closed` (a mirror
   *   of `stopping`) and `max_direct` (of max_workers);
   * - written by every submit and by workers taking work: `queued`
   *   (accepted and not yet started or ended: the queue, the intake and
   *   direct submits about to push; changed under mu, and by direct
   *   submits without it), `intake` (a lock-free stack of tasks, newest
   *   first, linked through node.next, that workers move to `queue`
   *   under mu) and `entering` (submits between their look at `closed`
   *   and their push); see the direct submit in pool.c;
   * - the lock and what it protects, written by workers per task.
   */
  char pad_submit[TPOOL__CACHE_LINE];
  _Atomic unsigned nidle;
  _Atomic unsigned nawake;
  atomic_bool closed;
  atomic_uint max_direct;
  char pad_queued[TPOOL__CACHE_LINE];
  _Atomic size_t queued;
  _Atomic(tpool__task_t *) intake;
  atomic_uint entering;
  char pad_mu[TPOOL__CACHE_LINE];

  pthread_mutex_t mu;
  pthread_cond_t work_cv; /* idle workers wait here for tasks */

  /* State; protected by mu. */
  TAILQ_HEAD(, tpool__task) queue;
  size_t ndeadline;   /* queued tasks that have a start deadline */
  unsigned nthreads;  /* live or starting workers */
  unsigned nstarting; /* created but not yet looking for work */
  unsigned nwakeups;  /* signals sent to idle workers, not yet taken */
  unsigned nspinning; /* polling for work before they sleep (0 or 1) */
  unsigned nbusy;     /* running a task */
  unsigned nexiting;  /* retiring, last completion not yet posted */
  unsigned next_no;
  LIST_HEAD(, tpool__worker) workers; /* running */
  LIST_HEAD(, tpool__worker) zombies; /* retired, waiting to be joined */
  uint64_t respawn_at_ns;             /* retry a failed start then; 0 = none */
  uint64_t respawn_delay_ns;          /* backoff for the next retry */
  bool started;
  bool stopping;

  /* Retries, breaker, history; protected by mu. */
  _Atomic unsigned retry_attempts; /* atomic: a submit reads it unlocked */
  uint64_t retry_backoff_ns, retry_backoff_max_ns;
  TAILQ_HEAD(, tpool__retry) retries; /* waiting to be queued (again) */
  size_t nretrying;                   /* tasks of `retries` retrying */
  size_t nscheduled;                  /* tasks of `retries` delayed */
  tpool__breaker_t breaker;
  tpool__record_t *history; /* a ring of history_cap (fixed) */
  size_t history_cap, history_len, history_next;

  /* Counters; protected by mu. */
  uint64_t submitted, rejected, completed, failed, cancelled, expired;
  uint64_t retries_total;
  uint64_t stuck_total, thread_failures, threads_started, threads_retired;
  uint64_t last_reject_ns; /* 0 = never */
  tpool__last_error_t last_error;
  tpool__hist_t run_hist;
  tpool__hist_t wait_hist;

  /* Bumped under mu by each push made while a worker spins (nspinning is
     counted under mu before the spinner reads it), polled without mu by
     that worker; on its own cache line so polling does not slow the lock.
     Pushes with nobody spinning leave it alone: no cost when spin is off. */
  char pad_pushes[TPOOL__CACHE_LINE];
  atomic_uint_fast64_t pushes; /* atomic */
  char pad_pushes_end[TPOOL__CACHE_LINE - sizeof(atomic_uint_fast64_t)];
};

struct tpool_manager {
  tpool__log_t log;
  atomic_bool verbose;                     /* atomic */
  atomic_uint_fast64_t status_interval_ns; /* atomic */
  atomic_int refs;                         /* atomic: user + live workers */
  void (*release)(tpool_manager_t *m);     /* frees it; fixed after new */
  atomic_bool stopping;                    /* atomic: shutdown has begun */
  uint64_t created_ns;
  unsigned completion_batch;
  /* tpool_manager_reconfigure() runs under reconf_mu, which guards opts
     and nothing else; it is taken before a pool's mu, and it may be held
     while the log sink runs (the sink never calls back into tpool). */
  pthread_mutex_t reconf_mu;
  tpool_options_t *opts; /* protected by reconf_mu */

  size_t npools;
  tpool_pool_t *pools[TPOOL_POOLS_MAX]; /* fixed after new */
  /* [routes], resolved to pools; fixed after new (a reload that changes
     them says they wait for a restart). */
  size_t nroutes;
  struct {
    char pattern[TPOOL_TASK_NAME_MAX];
    tpool_pool_t *pool;
  } routes[TPOOL_ROUTES_MAX];

  tpool__bridge_t *bridges[TPOOL__BRIDGES_MAX]; /* append-only */
  atomic_size_t nbridges;                       /* atomic: published entries */

  pthread_mutex_t mu;
  pthread_cond_t state_cv; /* shutdown waits here; signalled while stopping */
  bool started;            /* protected by mu */
  bool shut;               /* protected by mu */

  /* Schedules (schedule.c), by creation; the list, every schedule's
     state and its runs are protected by sched_mu. */
  pthread_mutex_t sched_mu;
  TAILQ_HEAD(, tpool_schedule) schedules;
  size_t nschedules;
  TAILQ_HEAD(, tpool_schedule) dying; /* cancelled, awaiting their end */

  /* The monitor thread: deadlines, stuck tasks, the periodic table. */
  pthread_t mon_thread;
  bool mon_running; /* set by start, read by free */
  pthread_mutex_t mon_mu;
  pthread_cond_t mon_cv;
  bool mon_stop;                    /* protected by mon_mu */
  bool mon_kicked;                  /* protected by mon_mu */
  atomic_uint_fast64_t mon_next_ns; /* atomic: when it next looks */

  /* Written by every submit: alone on its cache line, so submitters do not
     steal the line that workers read `verbose` and `refs` from. */
  char pad_id[TPOOL__CACHE_LINE];
  atomic_int_fast64_t next_id; /* atomic */
  char pad_id_end[TPOOL__CACHE_LINE - sizeof(atomic_int_fast64_t)];
};

/* ---- shared.c ----------------------------------------------------------- */

/* The pool [routes] give a task called `name`, or NULL (see
   tpool_manager_route()). Thread: any. */
tpool_pool_t *tpool__manager_route(tpool_manager_t *m, const char *name);

/* Wakes a shutdown waiting on state_cv, if one may be. Thread: any, with no
   pool lock held. */
void tpool__manager_notify(tpool_manager_t *m);
/* Wakes the monitor to look again now. Thread: any, with no pool lock
   held. */
void tpool__monitor_wake(tpool_manager_t *m);
/* Makes the monitor look again by time `when_ns` at the latest: wakes it
   unless it will look by then anyway, which costs one atomic load (a
   worker kicks it for every task under a soft timeout). Thread: any,
   with no pool lock held. */
static inline void tpool__monitor_kick(tpool_manager_t *m, uint64_t when_ns) {
  /* `mon_next_ns`: the monitor's next look; 0 while it scans. */
  uint64_t next = atomic_load_explicit(&m->mon_next_ns, memory_order_acquire);
  if (next == 0 || when_ns < next)
    tpool__monitor_wake(m);
}
/* The bridge for `base` (NULL = the first one), or NULL. Thread: any. */
tpool__bridge_t *tpool__manager_bridge(tpool_manager_t *m,
                                       struct event_base *base);
/* The manager's reference count: one for the user, one per live worker.
   The last unref calls m->release, which frees it (manager.c sets it). */
void tpool__manager_ref(tpool_manager_t *m);
void tpool__manager_unref(tpool_manager_t *m);

static inline bool tpool__verbose(tpool_manager_t *m) {
  return atomic_load_explicit(&m->verbose, memory_order_relaxed);
}

/* ---- history.c ---------------------------------------------------------- */

/* Remembers a task that has ended (status and times set). Under mu. */
void tpool__history_add(tpool_pool_t *p, const tpool__task_t *t);
/* Fills *out from the newest record of task `id`; false if the pool has
   forgotten it, or never ran it. Under mu. */
bool tpool__history_find(const tpool_pool_t *p, int64_t id, uint64_t now,
                         tpool_task_record_t *out);

/* ---- breaker.c ---------------------------------------------------------- */

/* Why a breaker moved, for the log line after unlocking. */
typedef enum {
  TPOOL__BREAKER_QUIET, /* it did not */
  TPOOL__BREAKER_TRIPPED,
  TPOOL__BREAKER_TRIAL_FAILED,
  TPOOL__BREAKER_COOLED,
  TPOOL__BREAKER_TRIALS_PASSED,
  TPOOL__BREAKER_BY_HAND
} tpool__breaker_why_t;

/* A move of a breaker, filled under mu, logged after unlocking. Start it
   zeroed: the last move wins if there were several. */
typedef struct tpool__breaker_news {
  tpool__breaker_why_t why;
  tpool_breaker_state_t from, to;
  unsigned failures, window, trials;
  double cooldown_s;
} tpool__breaker_news_t;

/* All under the pool's mu. */
/* Sets the rule (window 0: off); a change starts closed with an empty
   window. Returns whether anything changed. */
bool tpool__breaker_configure(tpool__breaker_t *b, unsigned window,
                              double threshold, uint64_t cooldown_ns,
                              unsigned trials);
/* 0, with *trial the generation if the task is a half-open trial (else
   0); or -TPOOL_ECIRCUIT. */
int tpool__breaker_admit(tpool__breaker_t *b, uint64_t now, uint32_t *trial,
                         tpool__breaker_news_t *news);
/* An admitted task that will never run gives its trial place back. */
void tpool__breaker_unadmit(tpool__breaker_t *b, uint32_t trial);
/* A task ran: `failed` if its work returned non-zero. */
void tpool__breaker_record(tpool__breaker_t *b, bool failed, uint32_t trial,
                           uint64_t now, tpool__breaker_news_t *news);
void tpool__breaker_reset(tpool__breaker_t *b, uint64_t now,
                          tpool__breaker_news_t *news);
void tpool__breaker_stats(tpool__breaker_t *b, uint64_t now,
                          tpool_breaker_stats_t *out,
                          tpool__breaker_news_t *news);
/* Logs a move, if there was one. Without mu. Inline: every submit that
   takes the lock calls it, and there is rarely a move. */
void tpool__breaker_log_move(tpool_pool_t *p, const tpool__breaker_news_t *n);
static inline void tpool__breaker_log(tpool_pool_t *p,
                                      const tpool__breaker_news_t *n) {
  if (n->why != TPOOL__BREAKER_QUIET)
    tpool__breaker_log_move(p, n);
}

/* ---- task.c ------------------------------------------------------------- */

/* A task record from the calling thread's cache, or malloc; NULL if out of
   memory. Its fields are the caller's to fill. */
tpool__task_t *tpool__task_new(void);
/* Gives back a record that was never accepted (its submit failed). */
void tpool__task_free(tpool__task_t *t);

/* Whether the work of the task's current attempt ran, for
   tpool__task_end(): it decides the counter the task ends in. */
typedef enum {
  TPOOL__RAN,    /* its work returned `status`: completed, or failed */
  TPOOL__NOT_RUN /* it never started this attempt: cancelled (-ECANCELED),
                    expired (-ETIMEDOUT), or failed (a retry refused by
                    the breaker, -TPOOL_ECIRCUIT) */
} tpool__run_t;

/*
 * Ends task t, which the caller has already taken out of the queue, a
 * worker's hands or a retry's wait: the one place where a task ends. It
 * sets the status and end time, counts the task in exactly one of
 * completed, failed, cancelled or expired, gives back an unstarted
 * trial's place in the circuit breaker, remembers the task in the history
 * and runs its end hook. Then the task is handed over — to its loop, where
 * its done callback runs, or freed when it has none — at once, or, if
 * `later` is not NULL, by the caller with tpool__task_post(*later) once it
 * has unlocked (a worker posts after unlocking). Under the pool's mu.
 */
void tpool__task_end(tpool_pool_t *p, tpool__task_t *t, int status,
                     tpool__run_t ran, uint64_t now, tpool__task_t **later);
/* tpool__task_end() for a task still in the queue: takes it out first. */
void tpool__task_end_queued(tpool_pool_t *p, tpool__task_t *t, int status,
                            uint64_t now);
/* Hands an ended task over: to its loop's bridge, or frees it when it has
   no done callback. Thread: any; no lock needed. */
void tpool__task_post(tpool__task_t *t);
/* The bridge's deliver function: runs the task's done callback on the loop
   thread, then frees the task. */
void tpool__task_deliver(tpool__node_t *node, void *arg);
/* Frees a task whose done callback will never run. */
void tpool__task_discard(tpool__node_t *node, void *arg);
/* What the running work said with tpool_task_set_error(), for the
   pool's last error; cleared before each attempt (worker.c). */
extern _Thread_local bool tpool__work_error_set;
extern _Thread_local char tpool__work_error[TPOOL_ERROR_MESSAGE_MAX];

/* Logs "ThreadPool[name] Task #id: <message>". Without mu. */
void tpool__log_task(tpool_pool_t *p, tpool_log_level_t lv, int64_t id,
                     const char *fmt, ...) TPOOL_PRINTF(4, 5);

/* ---- retry.c ------------------------------------------------------------ */

/* A record and timer for a retry of t, allocated without mu by the worker
   whose attempt asked for one; NULL if t has no loop or out of memory
   (then it cannot be retried). When the timer fires, `due` runs on the
   task's loop with the record as its argument. */
tpool__retry_t *tpool__retry_new(const tpool__task_t *t,
                                 void (*due)(evutil_socket_t, short, void *));
/* Frees a record that holds no task: one tpool__retry_take() did not use,
   or one whose timer has fired. */
void tpool__retry_discard(tpool__retry_t *r);
/* A delayed submit's wait: sets r's timer for delay_ns and holds t on
   `retries` until it fires. Returns false if the timer cannot be set.
   Under mu. */
bool tpool__retry_delay(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r,
                        uint64_t delay_ns);
/* The worker's verdict on a task whose work returned -TPOOL_ERETRY: true
   if it may run again — then its timer is set for the backoff (*delay_ns)
   and r, which the pool now owns, holds it on `retries`; false if it ends
   now. Under mu. */
bool tpool__retry_take(tpool_pool_t *p, tpool__task_t *t, tpool__retry_t *r,
                       uint64_t *delay_ns);
/* Takes the task of waiting retry r (for a cancel or a stop) and makes its
   timer fire at once, so that its `due` frees r. Under mu. */
tpool__task_t *tpool__retry_detach(tpool_pool_t *p, tpool__retry_t *r);
/* In the timer's `due`, first: true if it fired before r's time (it has
   been set again for the rest). Under mu. */
bool tpool__retry_early(tpool__retry_t *r, uint64_t now);
/* In the timer's `due`: takes r off the pool's list and returns its task,
   or NULL if a cancel or a stop took it. Under mu. */
tpool__task_t *tpool__retry_due(tpool_pool_t *p, tpool__retry_t *r);
/* Frees the records left (their loops have stopped). Called by
   tpool_manager_free() on its thread, without mu. */
void tpool__retry_free_all(tpool_pool_t *p);

/* A random fraction in [0, 1), from a per-thread generator: for jitter. */
double tpool__random_fraction(void);

/* ---- pool.c ------------------------------------------------------------- */

/* The pool's minimum, resolving "the same as the maximum". Under mu. */
static inline unsigned tpool__pool_min(const tpool_pool_t *p) {
  return p->min_equals_max ? p->max_workers : p->min_workers;
}

/* Queue operations, under mu. */
static inline void tpool__queue_push(tpool_pool_t *p, tpool__task_t *t) {
  TAILQ_INSERT_TAIL(&p->queue, t, qlink);
  p->queued++;
  if (p->nspinning > 0) /* only a spinner reads it; we are its one writer */
    atomic_store_explicit(
        &p->pushes, atomic_load_explicit(&p->pushes, memory_order_relaxed) + 1,
        memory_order_release);
  if (t->deadline_ns)
    p->ndeadline++;
}

static inline void tpool__queue_remove(tpool_pool_t *p, tpool__task_t *t) {
  TAILQ_REMOVE(&p->queue, t, qlink);
  p->queued--;
  if (t->deadline_ns)
    p->ndeadline--;
}

/* True when an idle worker should be signalled for queued work, counting
   the signal as sent; the caller signals work_cv after unlocking. At most
   one signal is outstanding and none is sent while a worker spins: the
   worker that wakes (or stops spinning) takes a task and, if more wait,
   wakes the next, so a burst wakes workers one by one as they are needed
   instead of all at once to fight over the lock. Under mu. */
static inline bool tpool__wake_claim(tpool_pool_t *p) {
  if (p->nidle <= p->nwakeups || p->nwakeups > 0 || p->nspinning > 0)
    return false;
  p->nwakeups++;
  return true;
}

/* Counts n workers as started (not yet running: the caller spawns them
   after unlocking). Under mu. */
static inline void tpool__pool_count_new(tpool_pool_t *p, unsigned n) {
  p->nthreads += n;
  p->nstarting += n;
  p->nawake += n;
}

/* Moves the intake's tasks, oldest first, to the end of the queue, and
   counts them submitted (they are already counted in `queued`). Returns
   true if it moved any. Under mu. */
bool tpool__pool_absorb(tpool_pool_t *p);
/* The same, after waiting out the direct submits inside their push: once
   `closed` is set, nothing reaches the intake after this. Under mu. */
bool tpool__pool_absorb_settled(tpool_pool_t *p);

/* tpool_submit() for a task whose `on_end` (may be NULL) runs when it
   ends, whatever the way (see tpool__task_t). */
int64_t tpool__submit(tpool_pool_t *p, const char *name, tpool_work_cb work,
                      tpool_done_cb done, void *arg,
                      const tpool_task_opts_t *opts,
                      void (*on_end)(int status, void *arg));

int tpool__pool_new(tpool_manager_t *m, const tpool_pool_options_t *po,
                    tpool_pool_t **out);
/* Frees a pool whose workers have all exited; tasks still queued end
   cancelled (their loops have stopped: their done callbacks never run). */
void tpool__pool_free(tpool_pool_t *p);
/* Starts the minimum number of workers (more if tasks already wait).
   Returns 0, or -EAGAIN if workers were needed and none could start. */
int tpool__pool_start(tpool_pool_t *p);
/* Stops intake, and puts every task waiting to retry back in the queue
   for the drain; workers drain the queue and exit. */
void tpool__pool_stop(tpool_pool_t *p);
/* Ends every queued task with -ECANCELED. Returns how many. */
size_t tpool__pool_cancel_queued(tpool_pool_t *p);
/* 0 cancelled, -EBUSY running, -ENOENT not in this pool. */
int tpool__pool_cancel(tpool_pool_t *p, int64_t id);
/* True when no worker is left. Tasks still queued then (no worker could be
   started for them) will never run: they end with -ECANCELED first. */
bool tpool__pool_settle(tpool_pool_t *p);
/* Applies the live settings of *po (limits, queue limit, idle and soft
   timeouts, spin, retries, breaker) and logs what changed. Without mu. */
void tpool__pool_configure(tpool_pool_t *p, const tpool_pool_options_t *po);
/* The timer callback of a retry or a delayed submit (tpool__retry_new's
   `due`): puts the task at the end of its queue, unless the breaker
   refuses it. Runs on the task's loop. */
void tpool__pool_retry_due(evutil_socket_t fd, short what, void *arg);
/* ---- worker.c ----------------------------------------------------------- */

/* Starts one worker thread, which the caller has already counted in
   nthreads and nstarting (under mu); undoes that count on failure, logs it,
   and has the monitor retry if the pool is left with work and no worker.
   Returns 0 or a negative errno. Called without mu. */
int tpool__worker_spawn(tpool_pool_t *p);
/* tpool__worker_spawn() n times. Returns how many started. */
unsigned tpool__worker_spawn_n(tpool_pool_t *p, unsigned n);
/* With tasks queued and no worker left (every start failed), schedules the
   monitor to start one later, with backoff, and returns when (the caller
   kicks the monitor after unlocking); else returns 0. Under mu. */
uint64_t tpool__pool_respawn_later(tpool_pool_t *p);
/* Joins and frees the workers that have retired. Called without mu,
   never from a worker of this pool for itself. */
void tpool__pool_reap(tpool_pool_t *p);
/* True when the calling thread is a worker of one of m's pools. */
bool tpool__is_worker_of(const tpool_manager_t *m);

/* Blocks every asynchronous signal in the calling thread, saving the old
   mask in *old, so a thread created now inherits the block: process
   signals belong to the loop thread (libevent's signal events), never to a
   worker or the monitor. Faults stay unblocked so they reach their
   handlers (sanitizers, core dumps). Restore with pthread_sigmask(). */
void tpool__signals_block(sigset_t *old);

/* Test hook: replaces pthread_create for worker threads (fault injection).
   NULL restores pthread_create. Not thread-safe; set it before starting. */
typedef int (*tpool__thread_create_fn)(pthread_t *, const pthread_attr_t *,
                                       void *(*)(void *), void *);
extern tpool__thread_create_fn tpool__thread_create;

/* ---- snapshot.c --------------------------------------------------------- */

/* A running task, copied under the lock to be logged without it; at most
   TPOOL__REPORT_MAX of them per pool and per report. */
typedef struct tpool__running {
  int64_t id;
  char name[TPOOL_TASK_NAME_MAX];
  double running_s;
} tpool__running_t;
#define TPOOL__REPORT_MAX 16

/* Fills *ps under the lock (caller frees ps->active). Returns 0/-ENOMEM. */
int tpool__pool_snapshot(tpool_pool_t *p, tpool_pool_stats_t *ps);
/* Number of tasks running now; logs each of them when `report` is set. */
unsigned tpool__pool_report_running(tpool_pool_t *p, bool report);
/* tpool_manager_task() for one pool: 0 and *out, or -ENOENT. Without mu. */
int tpool__pool_find(tpool_pool_t *p, int64_t id, tpool_task_record_t *out);

/* ---- scan.c ------------------------------------------------------------- */

/* Expires overdue queued tasks, reports newly stuck ones, joins retired
   workers and retries starting a worker for a pool left with queued tasks
   and none (after failed thread creations). Returns the time at which it
   next needs to look (UINT64_MAX: nothing to watch). Without mu. */
uint64_t tpool__pool_scan(tpool_pool_t *p, uint64_t now);

/* ---- schedule.c --------------------------------------------------------- */

/* Frees every schedule left, running each one's release callback: called
   by tpool_manager_free() on its thread once the loops' last done
   callbacks have run. */
void tpool__schedules_free_all(tpool_manager_t *m);

/* ---- stats.c, status.c, monitor.c --------------------------------------- */

/* Logs the status table at INFO. Returns 0 or -ENOMEM. */
int tpool__status_log(tpool_manager_t *m);
int tpool__monitor_start(tpool_manager_t *m);
void tpool__monitor_stop(tpool_manager_t *m);

#endif /* TPOOL_POOLS_INTERNAL_H */
