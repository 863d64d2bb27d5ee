/*
 * schedules.c — the [schedule.NAME] sections as tpool schedules: made at
 * start, on loop 0, once the pools run; on SIGHUP, compared with the new
 * file's and cancelled, made or updated to match.
 *
 * DESIGN
 * Who runs here: loop 0 (start, before its loop runs; reload, from the
 * SIGHUP handler), which is every schedule's base, so that new, update
 * and cancel are called where tpool wants them; the workers (a run's
 * work).
 * A schedule's argument is its task, parsed once (task_parse_scheduled())
 * and read only from then on. A run's work makes a copy of it and runs
 * the copy (task_copy(), task_run()): the worker writes its task (output,
 * why), and under overlap = queue two runs of one schedule may run at
 * once. The copy lives for one attempt; what it says goes to the pool's
 * last error (task_run() calls tpool_task_set_error()), and the outcome
 * to the schedule's counters, which tpool keeps: no run needs a done
 * callback. The release callback frees the parsed task once tpool is done
 * with the schedule (after a cancel's last run, or in
 * tpool_manager_free()).
 * Reload: a schedule whose pool or task changed is cancelled and made
 * again (from a new grid and new counters); one whose timing, overlap,
 * alert_after or enabled changed is updated in place. `enabled` sets
 * paused only when it changes, so a pause made over HTTP outlives a
 * reload that leaves `enabled` alone.
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sched {
  schedule_options_t o;    /* the section it was made from */
  tpool_schedule_opts_t t; /* what it was given */
  tpool_schedule_t *h;     /* tpool's, until cancelled or the manager ends */
};

/* ---- a run, on a worker -------------------------------------------------- */

static int run_scheduled(void *arg) {
  task_t *c = task_copy(arg);
  if (!c)
    return -ENOMEM;
  int rc = task_run(c);
  task_free(c);
  return rc;
}

static void release_task(void *arg) {
  task_free(arg);
}

/* ---- checks -------------------------------------------------------------- */

/* Parses schedule *o's task for loop 0's routes and finds its pool in the
   running manager (*pool NULL: routed by the task's name). Returns the
   new task (its name in t->name), or NULL after filling *err. */
static task_t *parse(server_t *s, const schedule_options_t *o,
                     tpool_pool_t **pool, double *start_timeout_s,
                     tpool_config_error_t *err) {
  task_route_t *d = &s->loops[0].tasks;
  task_t *t = calloc(1, sizeof(*t));
  if (!t) {
    schedule_error(err, s->config_path, o, "task", "out of memory");
    return NULL;
  }
  const char *name = NULL;
  json_t *doc = NULL;
  task_error_t e;
  *start_timeout_s = 0;
  bool ok = task_parse_scheduled(d, o->task, strlen(o->task), t, &name,
                                 start_timeout_s, &doc, &e);
  if (ok)
    snprintf(t->name, sizeof(t->name), "%s", name ? name : o->name);
  json_decref(doc);
  if (!ok) {
    schedule_error(err, s->config_path, o, "task", "%s", e.message);
    task_free(t);
    return NULL;
  }
  /* Pools and routes change at restart only: the running ones count. */
  tpool_pool_t *p = o->pool[0] ? tpool_manager_pool(s->m, o->pool)
                               : tpool_manager_route(s->m, t->name);
  char why[160];
  if (!p) {
    if (o->pool[0])
      schedule_error(err, s->config_path, o, "pool",
                     "no pool named \"%s\" runs (pools added by a reload "
                     "start at a restart)",
                     o->pool);
    else
      schedule_error(err, s->config_path, o, "pool",
                     "none set, and no [routes] pattern matches the task's "
                     "name \"%s\"",
                     t->name);
  } else if (task_pool_allows(t, tpool_pool_name(p), why, sizeof(why)) != 0) {
    schedule_error(err, s->config_path, o, "task", "%s", why);
    p = NULL;
  }
  if (!p) {
    task_free(t);
    return NULL;
  }
  *pool = o->pool[0] ? p : NULL;
  t->d = d;
  t->dim = d->embedding_dim;
  t->fd = d->read_fd;
  return t;
}

int schedules_check(server_t *s, const server_config_t *c,
                    tpool_config_error_t *err) {
  for (size_t i = 0; i < c->nschedules; i++) {
    tpool_pool_t *pool;
    double start_timeout_s;
    task_t *t = parse(s, &c->schedules[i], &pool, &start_timeout_s, err);
    if (!t)
      return -EINVAL;
    task_free(t);
  }
  return 0;
}

/* ---- making, updating, cancelling ---------------------------------------- */

/* The timing part of a schedule's options from its section. */
static void timing(const schedule_options_t *o, tpool_schedule_opts_t *t) {
  t->every_s = o->every_s;
  t->jitter = o->jitter;
  t->overlap = schedule_overlap(o);
  t->alert_after = o->alert_after;
}

/* Makes schedule *o into *x, paused unless it is enabled. Returns 0, or a
   negative errno after logging why. */
static int make(server_t *s, const schedule_options_t *o, struct sched *x) {
  tpool_config_error_t err;
  tpool_pool_t *pool = NULL;
  double start_timeout_s = 0;
  task_t *t = parse(s, o, &pool, &start_timeout_s, &err);
  if (!t) {
    server_log(s, TPOOL_LOG_ERROR, "%s", err.text);
    return -EINVAL;
  }
  x->o = *o;
  tpool_schedule_opts_init(&x->t);
  x->t.base = s->loops[0].base;
  timing(o, &x->t);
  x->t.paused = !o->enabled;
  x->t.task.start_timeout_s = start_timeout_s;
  x->t.task.max_attempts = t->max_attempts;
  int rc = tpool_schedule_new(s->m, o->name, pool, t->name, run_scheduled, NULL,
                              release_task, t, &x->t, &x->h);
  if (rc != 0) {
    server_log(s, TPOOL_LOG_ERROR, "cannot make [schedule.%s]: %s", o->name,
               tpool_strerror(rc));
    task_free(t);
    x->h = NULL;
  }
  return rc;
}

int schedules_start(server_t *s) {
  const server_config_t *c = s->cfg;
  s->scheds = c->nschedules ? calloc(c->nschedules, sizeof(*s->scheds)) : NULL;
  if (c->nschedules && !s->scheds)
    return -ENOMEM;
  for (size_t i = 0; i < c->nschedules; i++) {
    int rc = make(s, &c->schedules[i], &s->scheds[i]);
    if (rc != 0)
      return rc;
    s->nscheds++;
  }
  return 0;
}

static struct sched *find(struct sched *v, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (v[i].h && strcmp(v[i].o.name, name) == 0)
      return &v[i];
  return NULL;
}

static const schedule_options_t *find_options(const server_config_t *c,
                                              const char *name) {
  for (size_t i = 0; i < c->nschedules; i++)
    if (strcmp(c->schedules[i].name, name) == 0)
      return &c->schedules[i];
  return NULL;
}

/* Applies the timing, overlap, alert_after and enabled of *o to x.
   Returns whether any of them changed. */
static bool update(server_t *s, struct sched *x, const schedule_options_t *o) {
  const schedule_options_t *was = &x->o;
  bool enabled = o->enabled != was->enabled;
  if (o->every_s == was->every_s && o->jitter == was->jitter &&
      strcmp(o->overlap, was->overlap) == 0 &&
      o->alert_after == was->alert_after && !enabled)
    return false;
  tpool_schedule_opts_t t = x->t;
  timing(o, &t);
  tpool_schedule_stats_t now;
  if (enabled)
    t.paused = !o->enabled;
  else /* as it is now: paused or resumed over HTTP, maybe */
    t.paused = tpool_manager_schedule_stats(s->m, o->name, &now) == 0
                   ? now.paused
                   : x->t.paused;
  int rc = tpool_schedule_update(x->h, &t);
  if (rc != 0) { /* checked by the loader: not expected */
    server_log(s, TPOOL_LOG_ERROR, "Config reload: [schedule.%s]: %s", o->name,
               tpool_strerror(rc));
    return false;
  }
  x->t = t;
  server_log(s, TPOOL_LOG_INFO,
             "Config reload: [schedule.%s] now every %.3fs, jitter %.2f, "
             "overlap %s, alert_after %u%s",
             o->name, t.every_s, t.jitter, tpool_overlap_name(t.overlap),
             t.alert_after, t.paused ? ", paused" : "");
  return true;
}

void schedules_reload(server_t *s, const server_config_t *next) {
  /* `failed`: could not be made (logged by make()), old one gone. */
  size_t added = 0, removed = 0, changed = 0, same = 0, failed = 0;
  struct sched *v =
      next->nschedules ? calloc(next->nschedules, sizeof(*v)) : NULL;
  if (next->nschedules && !v) {
    server_log(s, TPOOL_LOG_ERROR,
               "Config reload: schedules: out of memory; keeping the "
               "running ones");
    return;
  }
  /* Gone from the file: cancelled. */
  for (size_t i = 0; i < s->nscheds; i++) {
    struct sched *x = &s->scheds[i];
    if (x->h && !find_options(next, x->o.name)) {
      tpool_schedule_cancel(x->h);
      x->h = NULL;
      removed++;
    }
  }
  size_t n = 0;
  for (size_t i = 0; i < next->nschedules; i++) {
    const schedule_options_t *o = &next->schedules[i];
    struct sched *x = find(s->scheds, s->nscheds, o->name);
    if (x &&
        (strcmp(x->o.pool, o->pool) != 0 || strcmp(x->o.task, o->task) != 0)) {
      tpool_schedule_cancel(x->h); /* its name is free at once */
      x->h = NULL;
      if (make(s, o, &v[n]) == 0) {
        n++;
        changed++;
      } else {
        failed++;
      }
    } else if (x) {
      if (update(s, x, o))
        changed++;
      else
        same++;
      v[n] = *x;
      v[n].o = *o;
      x->h = NULL;
      n++;
    } else if (make(s, o, &v[n]) == 0) {
      n++;
      added++;
    } else {
      failed++;
    }
  }
  if (failed > 0) /* each named by make()'s own line */
    server_log(s, TPOOL_LOG_WARN,
               "Config reload: schedules: %zu added, %zu removed, %zu "
               "changed, %zu unchanged, %zu could not be made",
               added, removed, changed, same, failed);
  else if (s->nscheds > 0 || next->nschedules > 0)
    server_log(s, TPOOL_LOG_INFO,
               "Config reload: schedules: %zu added, %zu removed, %zu "
               "changed, %zu unchanged",
               added, removed, changed, same);
  free(s->scheds);
  s->scheds = v;
  s->nscheds = n;
}

void schedules_free(server_t *s) {
  free(s->scheds); /* the schedules themselves are the manager's */
  s->scheds = NULL;
  s->nscheds = 0;
}
