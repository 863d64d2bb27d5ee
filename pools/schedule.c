/*
 * schedule.c — periodic tasks: a timer on one loop that submits a run of
 * the schedule's work to its pool on a grid, with jitter, an overlap
 * policy, pause, resume and run-now, and the counts the health routes
 * report (tpool_manager_schedules()).
 *
 * DESIGN
 * Who runs here: the schedule's loop thread (its timer, the done callback
 * of every run, new, update and cancel); any thread (control by name and
 * the snapshots, which the HTTP routes call from their own loops); a
 * worker (the start of a run, which notes its start time).
 * What they share: every schedule's state and the manager's list of them,
 * under the manager's sched_mu. It is taken before a pool's mu (a run is
 * submitted under it, so a run-now and a tick cannot both find no run in
 * flight and both submit) and never while a pool's mu is held; the
 * schedule's own callbacks — work, done, release — run without it.
 * Timing: runs fall on a grid, grid_ns + n * every. Each run fires at its
 * grid point plus a random part of jitter * every. A timer that fires
 * late by more than an interval (the loop stalled) makes one run, counts
 * the grid points it passed as skipped and plans the next point after
 * now: a stall is never paid back as a burst. A run that falls due while
 * another is in flight is skipped under the skip policy; a run the pool
 * refuses is skipped and logged (once, until the pool takes one again).
 * Lifetime: a schedule is freed when it is cancelled and its last run's
 * done callback has returned, or by tpool_manager_free(). A run's record
 * lives from its submit until its done callback; the work reads only the
 * schedule's fixed fields (work, arg), so it needs no lock.
 */
#include "pools_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One run: from its submit until its done callback. */
typedef struct run {
  TAILQ_ENTRY(run) link; /* on the schedule's `runs`; under sched_mu */
  tpool_schedule_t *s;
  int64_t id;                /* its task */
  uint64_t planned_ns;       /* when it was due */
  _Atomic uint64_t start_ns; /* set as its work starts; 0: it never ran */
} run_t;

struct tpool_schedule {
  TAILQ_ENTRY(tpool_schedule) link; /* on m->schedules, by name */
  /* Fixed after tpool_schedule_new(). */
  tpool_manager_t *m;
  tpool_pool_t *pool;
  struct event_base *base;
  struct event *timer;
  tpool_work_cb work;
  tpool_done_cb done;
  void (*release)(void *arg);
  void *arg;
  char name[TPOOL_NAME_MAX];
  char task_name[TPOOL_TASK_NAME_MAX];

  /* Under sched_mu. */
  tpool_schedule_opts_t o;
  uint64_t every_ns;
  uint64_t grid_ns;  /* the grid point of the next run */
  uint64_t fire_ns;  /* when the timer fires for it: grid_ns + jitter */
  uint64_t since_ns; /* a staleness count starts: made, resumed, success */
  bool cancelled;
  bool refusing; /* the last run the timer tried was refused */
  TAILQ_HEAD(, run) runs;
  unsigned nruns;
  uint64_t runs_total, ok, failed, cancelled_runs, skipped;
  bool has_last;
  int last_status;
  /* When the last run's work started (set by the work: atomic), and the
     last run that ended: whether it ran, and for how long. */
  _Atomic uint64_t last_start_ns;
  bool last_ran;
  uint64_t last_duration_ns;
  double last_success_unix;
  tpool__recent_t lateness; /* small: there may be thousands of us */
};

const char *tpool_overlap_name(tpool_overlap_t overlap) {
  return overlap == TPOOL_OVERLAP_QUEUE ? "queue" : "skip";
}

void tpool_schedule_opts_init(tpool_schedule_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->every_s = 60;
  o->overlap = TPOOL_OVERLAP_SKIP;
}

/* 1..TPOOL_NAME_MAX - 1 of a-z 0-9 _ - and '.'. */
static bool name_ok(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n >= TPOOL_NAME_MAX)
    return false;
  return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-.") == n;
}

static bool opts_ok(const tpool_schedule_opts_t *o) {
  return o->every_s >= TPOOL_SCHEDULE_EVERY_MIN_S &&
         o->every_s <= TPOOL_SCHEDULE_EVERY_MAX_S && o->jitter >= 0 &&
         o->jitter <= 1 &&
         (o->overlap == TPOOL_OVERLAP_SKIP ||
          o->overlap == TPOOL_OVERLAP_QUEUE) &&
         o->task.start_timeout_s >= 0 && o->task.retry_backoff_s >= 0;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sets the timer for fire_ns. Under sched_mu. */
static void set_timer(tpool_schedule_t *s) {
  /* libevent adds the delay to the loop's cached time, taken when this
     round of callbacks began: bring it to now, or the timer fires early
     by the time the round has taken so far. */
  event_base_update_cache_time(s->base);
  uint64_t now = tpool__now_ns();
  uint64_t d = s->fire_ns > now ? s->fire_ns - now : 0;
  struct timeval tv = {(time_t)(d / 1000000000u),
                       (suseconds_t)(d % 1000000000u / 1000u)};
  evtimer_add(s->timer, &tv);
}

/* When the run of grid point grid_ns fires: the point, plus a random
   part of jitter * every. Under sched_mu. */
static uint64_t with_jitter(const tpool_schedule_t *s) {
  double j = s->o.jitter * (double)s->every_ns * tpool__random_fraction();
  return s->grid_ns + (uint64_t)j;
}

/* The grid starts again from now: its first point is now (`at_once`) or
   one interval later. Under sched_mu. */
static void restart(tpool_schedule_t *s, uint64_t now, bool at_once) {
  s->grid_ns = now + (at_once ? 0 : s->every_ns);
  /* at once means at once: no jitter */
  s->fire_ns = at_once ? now : with_jitter(s);
  set_timer(s);
}

/* After the run of grid point grid_ns was made at `now`, `late` after
   its time: plans the next run after now and sets the timer. The points
   of runs that fell due while the loop stalled (late by an interval or
   more) are passed over: the run just made stands for them. Returns how
   many. Under sched_mu. */
static uint64_t plan_next(tpool_schedule_t *s, uint64_t now, uint64_t late) {
  uint64_t e = s->every_ns, missed = 0;
  s->grid_ns += e;
  /* A point at least an interval behind now was due whatever its
     jitter (possible only after a stall). */
  if (now > s->grid_ns) {
    uint64_t k = (now - s->grid_ns) / e;
    missed += k;
    s->grid_ns += k * e;
  }
  s->fire_ns = with_jitter(s);
  if (s->fire_ns <= now && late >= e) { /* due too, after a stall */
    missed++;
    s->grid_ns += e; /* after now: the grid was within e of it */
    s->fire_ns = with_jitter(s);
  }
  /* Else a run due already (a wide jitter drew it close to the last)
     fires at once: not a stall's burst, just the jitter's spread. */
  set_timer(s);
  return missed;
}

/* ---- a run ----------------------------------------------------------------
 */

static int run_work(void *arg) {
  run_t *r = arg;
  tpool_schedule_t *s = r->s; /* its fixed fields, and last_start_ns */
  uint64_t now = tpool__now_ns(), never = 0;
  /* The first attempt's start: a retry's backoff is not lateness. */
  atomic_compare_exchange_strong_explicit(
      &r->start_ns, &never, now, memory_order_relaxed, memory_order_relaxed);
  atomic_store_explicit(&s->last_start_ns, now, memory_order_relaxed);
  return s->work(s->arg);
}

static void destroy(tpool_schedule_t *s) {
  if (s->release)
    s->release(s->arg);
  event_free(s->timer);
  free(s);
}

/* A cancelled schedule's end, on its loop, once no run is left. */
static void finish(tpool_schedule_t *s) {
  tpool_manager_t *m = s->m;
  pthread_mutex_lock(&m->sched_mu);
  TAILQ_REMOVE(&m->dying, s, link);
  pthread_mutex_unlock(&m->sched_mu);
  destroy(s);
}

static void run_done(int status, const tpool_task_info_t *info, void *arg) {
  run_t *r = arg;
  tpool_schedule_t *s = r->s;
  tpool_manager_t *m = s->m;
  uint64_t now = tpool__now_ns();
  pthread_mutex_lock(&m->sched_mu);
  TAILQ_REMOVE(&s->runs, r, link);
  s->nruns--;
  uint64_t start = atomic_load_explicit(&r->start_ns, memory_order_relaxed);
  s->last_ran = start != 0;
  if (start) {
    tpool__recent_record(&s->lateness,
                         start > r->planned_ns ? start - r->planned_ns : 0);
    s->last_duration_ns = tpool__s_to_ns(info->run_s);
  }
  s->has_last = true;
  s->last_status = status;
  if (status == 0) {
    s->ok++;
    s->since_ns = now;
    s->last_success_unix = wall_now();
  } else if (status == -ECANCELED) {
    s->cancelled_runs++;
  } else {
    s->failed++;
  }
  bool gone = s->cancelled && s->nruns == 0;
  pthread_mutex_unlock(&m->sched_mu);
  free(r);
  if (s->done)
    s->done(status, info, s->arg);
  if (gone)
    finish(s);
}

/* Submits a run planned for `planned`. A run the timer made (not `forced`
   by a run-now) that cannot go is counted skipped. Returns the task id,
   or -EBUSY (overlap skip with a run in flight) or the submit's refusal.
   Under sched_mu. */
static int64_t launch(tpool_schedule_t *s, uint64_t planned, bool forced) {
  if (s->nruns > 0 && s->o.overlap == TPOOL_OVERLAP_SKIP) {
    s->skipped += !forced;
    return -EBUSY;
  }
  run_t *r = malloc(sizeof(*r));
  int64_t id = -ENOMEM;
  if (r) {
    r->s = s;
    r->planned_ns = planned;
    atomic_init(&r->start_ns, 0);
    tpool_task_opts_t to = s->o.task;
    to.base = s->base;
    to.delay_s = 0;
    id = tpool_submit(s->pool, s->task_name, run_work, run_done, r, &to);
  }
  if (id < 0) {
    free(r);
    if (!forced) {
      s->skipped++;
      if (!s->refusing)
        tpool__logf(&s->m->log, TPOOL_LOG_WARN,
                    "Schedule[%s] Run skipped: ThreadPool[%s] refused it (%s); "
                    "runs are skipped until it takes one",
                    s->name, s->pool->name, tpool_strerror((int)id));
      s->refusing = true;
    }
    return id;
  }
  if (s->refusing && !forced) {
    tpool__logf(&s->m->log, TPOOL_LOG_INFO,
                "Schedule[%s] ThreadPool[%s] takes its runs again", s->name,
                s->pool->name);
    s->refusing = false;
  }
  r->id = id;
  TAILQ_INSERT_TAIL(&s->runs, r, link);
  s->nruns++;
  s->runs_total++;
  return id;
}

/* The timer: runs what is due, counts what was missed, plans the next. */
static void tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tpool_schedule_t *s = arg;
  tpool_manager_t *m = s->m;
  uint64_t missed = 0;
  double late_s = 0;
  pthread_mutex_lock(&m->sched_mu);
  uint64_t now = tpool__now_ns();
  if (s->cancelled || s->o.paused || atomic_load(&m->stopping)) {
    /* Quiet: a resume sets the timer again; a stopped manager takes no
       more runs. */
  } else if (now < s->fire_ns) {
    set_timer(s); /* moved later meanwhile, or woke early */
  } else {
    /* The run of grid point grid_ns, late by now - fire_ns; the points
       after it that have passed too are counted, not run. */
    uint64_t late = now - s->fire_ns;
    late_s = tpool__ns_to_s(late);
    launch(s, s->fire_ns, false);
    missed = plan_next(s, now, late);
    s->skipped += missed;
  }
  pthread_mutex_unlock(&m->sched_mu);
  if (missed)
    tpool__logf(&m->log, TPOOL_LOG_WARN,
                "Schedule[%s] Missed %" PRIu64 " run(s): the loop was %.3fs "
                "late; they are counted as skipped, not made up",
                s->name, missed, late_s);
}

/* ---- the public API --------------------------------------------------------
 */

/* The schedule called `name`, or NULL. Under sched_mu. */
static tpool_schedule_t *find(tpool_manager_t *m, const char *name) {
  tpool_schedule_t *s;
  TAILQ_FOREACH(s, &m->schedules, link) {
    if (strcmp(s->name, name) == 0)
      return s;
  }
  return NULL;
}

int tpool_schedule_new(tpool_manager_t *m, const char *name, tpool_pool_t *pool,
                       const char *task_name, tpool_work_cb work,
                       tpool_done_cb done, void (*release)(void *arg),
                       void *arg, const tpool_schedule_opts_t *o,
                       tpool_schedule_t **out) {
  tpool_schedule_opts_t defaults;
  if (!o) {
    tpool_schedule_opts_init(&defaults);
    o = &defaults;
  }
  if (!m || !name_ok(name) || !work || !opts_ok(o) || (pool && pool->m != m))
    return -EINVAL;
  tpool__bridge_t *bridge = tpool__manager_bridge(m, o->base);
  if (!bridge)
    return -EINVAL;
  if (!task_name || !*task_name)
    task_name = name;
  if (!pool)
    pool = tpool__manager_route(m, task_name);
  if (!pool)
    return -ENOENT;
  if (atomic_load(&m->stopping))
    return -ESHUTDOWN;
  tpool_schedule_t *s = calloc(1, sizeof(*s));
  if (!s)
    return -ENOMEM;
  s->m = m;
  s->pool = pool;
  s->base = tpool__bridge_base(bridge);
  s->timer = evtimer_new(s->base, tick, s);
  if (!s->timer) {
    free(s);
    return -ENOMEM;
  }
  s->work = work;
  s->done = done;
  s->release = release;
  s->arg = arg;
  snprintf(s->name, sizeof(s->name), "%s", name);
  snprintf(s->task_name, sizeof(s->task_name), "%s", task_name);
  s->o = *o;
  s->o.base = s->base;
  s->every_ns = tpool__s_to_ns(o->every_s);
  TAILQ_INIT(&s->runs);

  pthread_mutex_lock(&m->sched_mu);
  int rc = find(m, name)                          ? -EEXIST
           : m->nschedules >= TPOOL_SCHEDULES_MAX ? -ENOSPC
                                                  : 0;
  if (rc == 0) {
    tpool_schedule_t *after = TAILQ_FIRST(&m->schedules);
    while (after && strcmp(after->name, name) < 0)
      after = TAILQ_NEXT(after, link);
    if (after)
      TAILQ_INSERT_BEFORE(after, s, link);
    else
      TAILQ_INSERT_TAIL(&m->schedules, s, link);
    m->nschedules++;
    uint64_t now = tpool__now_ns();
    s->since_ns = now; /* staleness counts from the start */
    if (!o->paused)
      restart(s, now, o->first_now);
  }
  pthread_mutex_unlock(&m->sched_mu);
  if (rc != 0) {
    event_free(s->timer);
    free(s);
    return rc;
  }
  tpool__logf(&m->log, TPOOL_LOG_INFO,
              "Schedule[%s] Every %.3fs on ThreadPool[%s] (task '%s', jitter "
              "%.2f, overlap %s%s)",
              s->name, o->every_s, pool->name, s->task_name, o->jitter,
              tpool_overlap_name(o->overlap), o->paused ? ", paused" : "");
  if (out)
    *out = s;
  return 0;
}

int tpool_schedule_update(tpool_schedule_t *s, const tpool_schedule_opts_t *o) {
  if (!s || !o || !opts_ok(o))
    return -EINVAL;
  tpool_manager_t *m = s->m;
  pthread_mutex_lock(&m->sched_mu);
  uint64_t now = tpool__now_ns();
  bool was_paused = s->o.paused;
  bool timing = s->o.every_s != o->every_s || s->o.jitter != o->jitter;
  s->o = *o;
  s->o.base = s->base;
  s->every_ns = tpool__s_to_ns(o->every_s);
  if (!o->paused && was_paused)
    s->since_ns = now; /* resumed: staleness counts again from now */
  if (!o->paused && (was_paused || timing))
    restart(s, now, false);
  pthread_mutex_unlock(&m->sched_mu);
  return 0;
}

static void finish_later(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  finish(arg);
}

void tpool_schedule_cancel(tpool_schedule_t *s) {
  if (!s)
    return;
  tpool_manager_t *m = s->m;
  pthread_mutex_lock(&m->sched_mu);
  s->cancelled = true;
  TAILQ_REMOVE(&m->schedules, s, link);
  m->nschedules--;
  /* Kept on `dying` until its end, so that tpool_manager_free() finds it
     if the loop stops first. */
  TAILQ_INSERT_TAIL(&m->dying, s, link);
  event_del(s->timer); /* on its loop: its callback is not running */
  unsigned n = s->nruns;
  if (n == 0) { /* its end, on a later turn of the loop */
    event_assign(s->timer, s->base, -1, 0, finish_later, s);
    event_active(s->timer, EV_TIMEOUT, 1);
  }
  int64_t *ids = n ? malloc(n * sizeof(*ids)) : NULL;
  unsigned i = 0;
  run_t *r;
  TAILQ_FOREACH(r, &s->runs, link) {
    if (ids)
      ids[i++] = r->id;
  }
  pthread_mutex_unlock(&m->sched_mu);
  tpool__logf(&m->log, TPOOL_LOG_INFO, "Schedule[%s] Cancelled", s->name);
  /* Runs still queued end cancelled; their done callbacks, on this loop,
     free the schedule after the last one. Without ids (out of memory)
     they simply run. */
  for (unsigned k = 0; k < i; k++)
    tpool__pool_cancel(s->pool, ids[k]);
  free(ids);
}

int tpool_manager_schedule_control(tpool_manager_t *m, const char *name,
                                   tpool_schedule_action_t action,
                                   int64_t *task_id) {
  if (!m || !name)
    return -EINVAL;
  int64_t rc = 0;
  pthread_mutex_lock(&m->sched_mu);
  tpool_schedule_t *s = find(m, name);
  uint64_t now = tpool__now_ns();
  if (!s) {
    rc = -ENOENT;
  } else if (action == TPOOL_SCHEDULE_PAUSE) {
    s->o.paused = true; /* its timer, if set, fires and does nothing */
  } else if (action == TPOOL_SCHEDULE_RESUME) {
    if (s->o.paused) {
      s->o.paused = false;
      s->since_ns = now; /* staleness counts again from now */
      restart(s, now, false);
    }
  } else if (action == TPOOL_SCHEDULE_RUN_NOW) {
    rc = launch(s, now, true);
    if (rc > 0 && task_id)
      *task_id = rc;
  } else {
    rc = -EINVAL;
  }
  pthread_mutex_unlock(&m->sched_mu);
  if (s && rc >= 0)
    tpool__logf(&m->log, TPOOL_LOG_INFO, "Schedule[%s] %s", name,
                action == TPOOL_SCHEDULE_PAUSE    ? "Paused"
                : action == TPOOL_SCHEDULE_RESUME ? "Resumed"
                                                  : "Run now");
  return rc > 0 ? 0 : (int)rc;
}

/* Fills *out from s. Under sched_mu. */
static void describe(const tpool_schedule_t *s, uint64_t now, bool stopping,
                     tpool_schedule_stats_t *out) {
  memset(out, 0, sizeof(*out));
  memcpy(out->name, s->name, sizeof(out->name));
  memcpy(out->pool, s->pool->name, sizeof(out->pool));
  memcpy(out->task_name, s->task_name, sizeof(out->task_name));
  out->every_s = s->o.every_s;
  out->jitter = s->o.jitter;
  out->overlap = s->o.overlap;
  out->alert_after = s->o.alert_after;
  out->paused = s->o.paused;
  out->next_run_in_s =
      s->o.paused || stopping
          ? -1
          : tpool__ns_to_s(s->fire_ns > now ? s->fire_ns - now : 0);
  out->running = s->nruns;
  out->runs = s->runs_total;
  out->ok = s->ok;
  out->failed = s->failed;
  out->cancelled = s->cancelled_runs;
  out->skipped = s->skipped;
  out->has_last = s->has_last;
  out->last_status = s->last_status;
  out->last_duration_s = s->last_ran ? tpool__ns_to_s(s->last_duration_ns) : -1;
  uint64_t started =
      atomic_load_explicit(&s->last_start_ns, memory_order_relaxed);
  out->last_run_age_s =
      started ? tpool__ns_to_s(now > started ? now - started : 0) : -1;
  out->last_success_unix = s->last_success_unix;
  out->stale = s->o.alert_after > 0 && !s->o.paused &&
               (now > s->since_ns ? now - s->since_ns : 0) / s->every_ns >=
                   s->o.alert_after;
  tpool__recent_summary(&s->lateness, &out->lateness);
}

int tpool_manager_schedules(tpool_manager_t *m, tpool_schedule_stats_t **out,
                            size_t *n) {
  if (!m || !out || !n)
    return -EINVAL;
  bool stopping = atomic_load(&m->stopping);
  pthread_mutex_lock(&m->sched_mu);
  size_t count = m->nschedules;
  tpool_schedule_stats_t *v = count ? malloc(count * sizeof(*v)) : NULL;
  if (count && !v) {
    pthread_mutex_unlock(&m->sched_mu);
    return -ENOMEM;
  }
  uint64_t now = tpool__now_ns();
  size_t i = 0;
  tpool_schedule_t *s;
  TAILQ_FOREACH(s, &m->schedules, link) /* kept in name order */
  describe(s, now, stopping, &v[i++]);
  pthread_mutex_unlock(&m->sched_mu);
  *out = v;
  *n = count;
  return 0;
}

int tpool_manager_schedule_stats(tpool_manager_t *m, const char *name,
                                 tpool_schedule_stats_t *out) {
  if (!m || !name || !out)
    return -EINVAL;
  bool stopping = atomic_load(&m->stopping);
  pthread_mutex_lock(&m->sched_mu);
  tpool_schedule_t *s = find(m, name);
  if (s)
    describe(s, tpool__now_ns(), stopping, out);
  pthread_mutex_unlock(&m->sched_mu);
  return s ? 0 : -ENOENT;
}

/* Frees the schedules of one list that tpool__schedules_free_all() took. */
static void free_list(tpool_manager_t *m, tpool_schedule_t *s) {
  while (s) {
    tpool_schedule_t *next = TAILQ_NEXT(s, link);
    if (s->nruns > 0) /* a run outlived the shutdown: it may still read s */
      tpool__logf(&m->log, TPOOL_LOG_WARN,
                  "Schedule[%s] Freed with %u run(s) still running: its "
                  "release callback will not run",
                  s->name, s->nruns);
    else
      destroy(s);
    s = next;
  }
}

void tpool__schedules_free_all(tpool_manager_t *m) {
  pthread_mutex_lock(&m->sched_mu);
  tpool_schedule_t *live = TAILQ_FIRST(&m->schedules);
  tpool_schedule_t *dying = TAILQ_FIRST(&m->dying);
  TAILQ_INIT(&m->schedules);
  TAILQ_INIT(&m->dying);
  m->nschedules = 0;
  pthread_mutex_unlock(&m->sched_mu);
  free_list(m, live);
  free_list(m, dying);
}
