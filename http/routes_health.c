/*
 * routes_health.c — the bodies of the health routes: /health,
 * /health/thread-pools (all pools or one), the log-status action,
 * /health/schedules (all schedules or one) and their actions, and
 * /metrics. Each handler takes one stats snapshot and builds its whole
 * reply from it, never from live pool fields, so a reply is consistent
 * with itself and costs each pool one short lock (the schedules come
 * from a snapshot of their own, tpool_manager_schedules()). The JSON bodies are
 * written with json_out.h straight from the snapshot (no json_t tree), so
 * a request costs the loop little more than the snapshot itself; the
 * log-status answer, a fixed text, still goes through jansson. What
 * other layers report beside the pools (tpool_http_add_source()) comes
 * from their callbacks, asked once per request.
 */
#include "http_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A refused submit this recent makes /health report the pool. */
#define REJECT_WINDOW_S 10.0

static double round_to(double x, double unit) {
  return round(x / unit) * unit;
}

double tpool__utilization_percent(unsigned busy, unsigned current) {
  return current ? round_to(100.0 * busy / current, 0.1) : 0.0;
}

/* Digits after the point: ages and uptimes to the millisecond (as they
   were rounded before), latencies and the soft timeout to the nanosecond
   (what the clock gives), percentages to one decimal. */
#define MS_DIGITS 3
#define NS_DIGITS 9
#define PERCENT_DIGITS 1

/* The members of an object, key and value in one call. Keys are field
   names given as KEY("name"): quoted at compile time, so that writing one
   is a copy (see tpool__json_out_key_literal()). */
#define KEY(lit) "\"" lit "\"", sizeof(lit) + 1

static void put_uint(tpool__json_out_t *w, const char *key, size_t key_len,
                     uint64_t v) {
  tpool__json_out_key_raw(w, key, key_len);
  tpool__json_out_uint(w, v);
}

static void put_decimal(tpool__json_out_t *w, const char *key, size_t key_len,
                        double v, unsigned digits) {
  tpool__json_out_key_raw(w, key, key_len);
  tpool__json_out_decimal(w, v, digits);
}

static void put_bool(tpool__json_out_t *w, const char *key, size_t key_len,
                     bool v) {
  tpool__json_out_key_raw(w, key, key_len);
  tpool__json_out_bool(w, v);
}

static void put_string(tpool__json_out_t *w, const char *key, size_t key_len,
                       const char *v) {
  tpool__json_out_key_raw(w, key, key_len);
  tpool__json_out_string(w, v);
}

static void put_latency(tpool__json_out_t *w, const char *key, size_t key_len,
                        const tpool_latency_t *l) {
  tpool__json_out_key_raw(w, key, key_len);
  tpool__json_out_object_begin(w);
  put_uint(w, KEY("count"), l->count);
  put_decimal(w, KEY("mean"), l->count ? l->sum_s / (double)l->count : 0.0,
              NS_DIGITS);
  put_decimal(w, KEY("p50"), l->p50_s, NS_DIGITS);
  put_decimal(w, KEY("p90"), l->p90_s, NS_DIGITS);
  put_decimal(w, KEY("p99"), l->p99_s, NS_DIGITS);
  put_decimal(w, KEY("max"), l->max_s, NS_DIGITS);
  tpool__json_out_object_end(w);
}

static void put_active_tasks(tpool__json_out_t *w,
                             const tpool_pool_stats_t *ps) {
  tpool__json_out_key_literal(w, "active_tasks");
  tpool__json_out_array_begin(w);
  for (size_t i = 0; i < ps->nactive; i++) {
    const tpool_active_task_t *t = &ps->active[i];
    tpool__json_out_object_begin(w);
    tpool__json_out_key_literal(w, "id");
    tpool__json_out_int(w, t->id);
    /* The name is the submitter's text, cut to TPOOL_TASK_NAME_MAX - 1
       bytes: the writer escapes it and mends a character cut in two. */
    put_string(w, KEY("name"), t->name);
    put_decimal(w, KEY("running_for_s"), t->running_for_s, MS_DIGITS);
    put_bool(w, KEY("stuck"), t->stuck);
    tpool__json_out_object_end(w);
  }
  tpool__json_out_array_end(w);
}

static void put_breaker(tpool__json_out_t *w, const tpool_breaker_stats_t *b) {
  tpool__json_out_key_literal(w, "circuit_breaker");
  tpool__json_out_object_begin(w);
  put_bool(w, KEY("enabled"), b->enabled);
  put_string(w, KEY("state"), tpool_breaker_state_name(b->state));
  if (b->enabled) {
    put_uint(w, KEY("window"), b->window);
    put_uint(w, KEY("in_window"), b->in_window);
    put_uint(w, KEY("failures_in_window"), b->failures_in_window);
    put_decimal(w, KEY("threshold"), b->threshold, MS_DIGITS);
    put_decimal(w, KEY("open_remaining_s"), b->open_remaining_s, MS_DIGITS);
    put_uint(w, KEY("trials"), b->trials);
    put_uint(w, KEY("trials_running"), b->trials_running);
    put_uint(w, KEY("trials_passed"), b->trials_passed);
    put_uint(w, KEY("opened"), b->opened);
    put_uint(w, KEY("half_opened"), b->half_opened);
    put_uint(w, KEY("closed"), b->closed);
    put_uint(w, KEY("refused"), b->refused);
  }
  tpool__json_out_object_end(w);
}

/* The pool's last task that ended in error, or null before any did. */
static void put_last_error(tpool__json_out_t *w, const tpool_last_error_t *e) {
  tpool__json_out_key_literal(w, "last_error");
  if (!e->set) {
    tpool__json_out_null(w);
    return;
  }
  tpool__json_out_object_begin(w);
  tpool__json_out_key_literal(w, "id");
  tpool__json_out_int(w, e->id);
  /* The name and the message are the submitter's and the work's text:
     the writer escapes them and mends a character cut in two. */
  put_string(w, KEY("name"), e->name);
  put_string(w, KEY("status"), tpool_status_word(e->status));
  put_string(w, KEY("message"), e->message);
  put_decimal(w, KEY("age_s"), e->age_s, MS_DIGITS);
  tpool__json_out_object_end(w);
}

void tpool__json_pool(tpool__json_out_t *w, const tpool_pool_stats_t *ps) {
  tpool__json_out_object_begin(w);
  put_string(w, KEY("name"), ps->name);
  put_uint(w, KEY("max_workers"), ps->max_workers);
  put_uint(w, KEY("min_workers"), ps->min_workers);
  put_uint(w, KEY("current_workers"), ps->current_workers);
  put_uint(w, KEY("active_threads"), ps->busy_workers);
  put_uint(w, KEY("idle_threads"), ps->idle_workers);
  put_uint(w, KEY("queued_tasks"), ps->queued);
  put_uint(w, KEY("queue_limit"), ps->queue_limit);
  put_decimal(w, KEY("utilization_percent"),
              tpool__utilization_percent(ps->busy_workers, ps->current_workers),
              PERCENT_DIGITS);
  put_uint(w, KEY("submitted"), ps->submitted);
  put_uint(w, KEY("rejected"), ps->rejected);
  put_uint(w, KEY("completed"), ps->completed);
  put_uint(w, KEY("failed"), ps->failed);
  put_uint(w, KEY("cancelled"), ps->cancelled);
  put_uint(w, KEY("expired"), ps->expired);
  put_uint(w, KEY("stuck_tasks"), ps->stuck_now);
  put_uint(w, KEY("stuck_total"), ps->stuck_total);
  put_uint(w, KEY("thread_failures"), ps->thread_failures);
  put_uint(w, KEY("threads_started"), ps->threads_started);
  put_uint(w, KEY("threads_retired"), ps->threads_retired);
  put_uint(w, KEY("retries"), ps->retries);
  put_uint(w, KEY("retrying"), ps->retrying);
  put_uint(w, KEY("scheduled"), ps->scheduled);
  put_breaker(w, &ps->breaker);
  put_decimal(w, KEY("soft_timeout_s"), ps->soft_timeout_s, NS_DIGITS);
  tpool__json_out_key_literal(w, "last_reject_age_s");
  if (ps->last_reject_age_s < 0)
    tpool__json_out_null(w);
  else
    tpool__json_out_decimal(w, ps->last_reject_age_s, MS_DIGITS);
  put_last_error(w, &ps->last_error);
  put_latency(w, KEY("run_time_s"), &ps->run);
  put_latency(w, KEY("queue_wait_s"), &ps->wait);
  put_active_tasks(w, ps);
  tpool__json_out_object_end(w);
}

/* Each source's health_json() as a member of the object being written,
   dumped by jansson and copied in: a source's object is small, and its
   library builds it with jansson anyway. Left out when there is none, it
   is not an object, or jansson runs out of memory. */
static void put_sources(tpool__json_out_t *w, const tpool__sources_t *src) {
  size_t flags =
      JSON_ENSURE_ASCII | (w->pretty ? JSON_INDENT(2) : JSON_COMPACT);
  for (size_t i = 0; src && i < src->n; i++) {
    const tpool_http_source_t *so = &src->at[i];
    json_t *j = so->health_json ? so->health_json(so->arg) : NULL;
    char *text = json_is_object(j) ? json_dumps(j, flags) : NULL;
    json_decref(j);
    if (text) {
      tpool__json_out_key(w, so->name);
      tpool__json_out_raw(w, text, strlen(text));
      free(text);
    }
  }
}

void tpool__json_thread_pools(tpool__json_out_t *w, const tpool_stats_t *s,
                              const tpool__sources_t *src) {
  tpool__json_out_object_begin(w);
  tpool__json_out_key_literal(w, "summary");
  tpool__json_out_object_begin(w);
  put_uint(w, KEY("total_workers"), s->total_workers);
  put_uint(w, KEY("total_active"), s->total_busy);
  put_uint(w, KEY("total_queued"), s->total_queued);
  put_decimal(w, KEY("utilization_percent"),
              tpool__utilization_percent(s->total_busy, s->total_workers),
              PERCENT_DIGITS);
  put_uint(w, KEY("pool_count"), s->npools);
  put_decimal(w, KEY("uptime_s"), s->uptime_s, MS_DIGITS);
  put_bool(w, KEY("verbose"), s->verbose);
  put_bool(w, KEY("shutting_down"), s->shutting_down);
  tpool__json_out_object_end(w);
  tpool__json_out_key_literal(w, "pools");
  tpool__json_out_object_begin(w);
  for (size_t i = 0; i < s->npools; i++) {
    tpool__json_out_key(w, s->pools[i].name);
    tpool__json_pool(w, &s->pools[i]);
  }
  tpool__json_out_object_end(w);
  put_sources(w, src);
  tpool__json_out_object_end(w);
}

/* A seconds value that is null when negative (never, or not planned). */
static void put_seconds_or_null(tpool__json_out_t *w, const char *key,
                                size_t key_len, double v, unsigned digits) {
  tpool__json_out_key_raw(w, key, key_len);
  if (v < 0)
    tpool__json_out_null(w);
  else
    tpool__json_out_decimal(w, v, digits);
}

void tpool__json_schedule(tpool__json_out_t *w,
                          const tpool_schedule_stats_t *st) {
  tpool__json_out_object_begin(w);
  put_string(w, KEY("pool"), st->pool);
  put_string(w, KEY("task"), st->task_name);
  put_decimal(w, KEY("every_s"), st->every_s, NS_DIGITS);
  put_decimal(w, KEY("jitter"), st->jitter, NS_DIGITS);
  put_string(w, KEY("overlap"), tpool_overlap_name(st->overlap));
  put_seconds_or_null(w, KEY("next_run_in_s"),
                      st->paused ? -1.0 : st->next_run_in_s, MS_DIGITS);
  put_uint(w, KEY("runs"), st->runs);
  put_uint(w, KEY("ok"), st->ok);
  put_uint(w, KEY("skipped"), st->skipped);
  put_uint(w, KEY("failed"), st->failed);
  put_uint(w, KEY("cancelled"), st->cancelled);
  tpool__json_out_key_literal(w, "last_status");
  if (st->has_last)
    tpool__json_out_string(w, tpool_status_word(st->last_status));
  else
    tpool__json_out_null(w);
  put_seconds_or_null(w, KEY("last_duration_s"),
                      st->has_last ? st->last_duration_s : -1.0, NS_DIGITS);
  put_seconds_or_null(w, KEY("last_run_age_s"), st->last_run_age_s, MS_DIGITS);
  put_uint(w, KEY("running"), st->running);
  put_bool(w, KEY("paused"), st->paused);
  put_uint(w, KEY("alert_after"), st->alert_after);
  put_bool(w, KEY("stale"), st->stale);
  put_latency(w, KEY("lateness_s"), &st->lateness);
  tpool__json_out_object_end(w);
}

void tpool__json_schedules(tpool__json_out_t *w,
                           const tpool_schedule_stats_t *sch, size_t n) {
  tpool__json_out_object_begin(w);
  tpool__json_out_key_literal(w, "schedules");
  tpool__json_out_object_begin(w);
  for (size_t i = 0; i < n; i++) {
    tpool__json_out_key(w, sch[i].name);
    tpool__json_schedule(w, &sch[i]);
  }
  tpool__json_out_object_end(w);
  tpool__json_out_object_end(w);
}

/* Writes one reason the process is degraded as an object of the reasons
   array; with w NULL, does nothing (the reasons are being counted). */
static void add_reason(tpool__json_out_t *w, const char *pool,
                       const char *reason, const char *fmt, ...)
    TPOOL_PRINTF(4, 5);

static void add_reason(tpool__json_out_t *w, const char *pool,
                       const char *reason, const char *fmt, ...) {
  if (!w)
    return;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  tpool__json_out_object_begin(w);
  if (pool)
    put_string(w, KEY("pool"), pool);
  put_string(w, KEY("reason"), reason);
  put_string(w, KEY("message"), msg);
  tpool__json_out_object_end(w);
}

/* What a source's degraded() said: asked once per answer, before the
   reasons are counted and written, so that they agree. */
typedef struct verdict {
  const char *reason; /* NULL: not degraded */
  char msg[256];
} verdict_t;

static void ask_sources(const tpool__sources_t *src, verdict_t *v) {
  for (size_t i = 0; src && i < src->n; i++) {
    const tpool_http_source_t *so = &src->at[i];
    v[i].msg[0] = '\0';
    v[i].reason =
        so->degraded ? so->degraded(so->arg, v[i].msg, sizeof(v[i].msg)) : NULL;
    v[i].msg[sizeof(v[i].msg) - 1] = '\0';
  }
}

/* Every reason the process is degraded, written into w (NULL: only
   counted): the pools' from the snapshot, then the sources' from their
   verdicts v. Returns how many there are. One function both counts and
   writes them, so the status and the list cannot disagree. */
static size_t health_reasons(tpool__json_out_t *w, const tpool_stats_t *s,
                             const tpool_schedule_stats_t *sch, size_t nsch,
                             const tpool__sources_t *src, const verdict_t *v) {
  size_t n = 0;
  if (s->shutting_down) {
    add_reason(w, NULL, "shutting_down",
               "the server is draining and refuses new tasks");
    n++;
  }
  for (size_t i = 0; i < s->npools; i++) {
    const tpool_pool_stats_t *ps = &s->pools[i];
    size_t stuck = ps->stuck_now;
    if (stuck) {
      add_reason(w, ps->name, "stuck_tasks",
                 "%zu task(s) running longer than the soft timeout "
                 "(%gs)",
                 stuck, ps->soft_timeout_s);
      n++;
    }
    if (ps->queued >= ps->queue_limit) {
      add_reason(w, ps->name, "queue_full",
                 "queue full (%zu of %zu): new tasks are refused", ps->queued,
                 ps->queue_limit);
      n++;
    } else if (ps->last_reject_age_s >= 0 &&
               ps->last_reject_age_s < REJECT_WINDOW_S && !s->shutting_down) {
      add_reason(w, ps->name, "rejecting",
                 "refused a task %.1fs ago (%g s window)",
                 ps->last_reject_age_s, REJECT_WINDOW_S);
      n++;
    }
    if (ps->breaker.enabled && ps->breaker.state != TPOOL_BREAKER_CLOSED) {
      if (ps->breaker.state == TPOOL_BREAKER_OPEN)
        add_reason(w, ps->name, "circuit_open",
                   "circuit breaker open: refusing work for %.1fs more",
                   ps->breaker.open_remaining_s);
      else
        add_reason(w, ps->name, "circuit_open",
                   "circuit breaker half_open: %u trial task(s) decide",
                   ps->breaker.trials);
      n++;
    }
    if (ps->current_workers == 0 && ps->queued > 0) {
      add_reason(w, ps->name, "no_workers",
                 "%zu task(s) queued and no worker thread (%" PRIu64
                 " thread creation failures)",
                 ps->queued, ps->thread_failures);
      n++;
    }
  }
  for (size_t i = 0; i < nsch; i++) {
    const tpool_schedule_stats_t *st = &sch[i];
    if (st->stale) {
      add_reason(w, st->pool, "schedule_stale",
                 "schedule \"%s\" has had no successful run in %u "
                 "intervals of %gs",
                 st->name, st->alert_after, st->every_s);
      n++;
    }
  }
  for (size_t i = 0; src && i < src->n; i++) {
    if (v[i].reason) {
      add_reason(w, NULL, v[i].reason, "%s", v[i].msg);
      n++;
    }
  }
  return n;
}

int tpool__json_health(tpool__json_out_t *w, const tpool_stats_t *s,
                       const tpool_schedule_stats_t *sch, size_t nsch,
                       const tpool__sources_t *src) {
  verdict_t v[TPOOL_HTTP_SOURCES_MAX];
  ask_sources(src, v);
  bool degraded = health_reasons(NULL, s, sch, nsch, src, v) > 0;
  tpool__json_out_object_begin(w);
  put_string(w, KEY("status"), degraded ? "degraded" : "ok");
  if (degraded) {
    tpool__json_out_key_literal(w, "reasons");
    tpool__json_out_array_begin(w);
    health_reasons(w, s, sch, nsch, src, v);
    tpool__json_out_array_end(w);
  }
  tpool__json_out_object_end(w);
  return degraded ? 503 : 200;
}

/* ---- the routes --------------------------------------------------------- */

static tpool_stats_t *snapshot(tpool_manager_t *m, struct evhttp_request *req) {
  tpool_stats_t *s = NULL;
  if (tpool_manager_stats(m, &s) != 0)
    tpool_http_reply_error(req, 500, "out of memory taking a snapshot");
  return s;
}

/* Every schedule of the manager (*sch NULL when there are none); false
   after answering 500. */
static bool schedules_snapshot(tpool_manager_t *m, struct evhttp_request *req,
                               tpool_schedule_stats_t **sch, size_t *n) {
  *sch = NULL;
  *n = 0;
  if (tpool_manager_schedules(m, sch, n) == 0)
    return true;
  tpool_http_reply_error(req, 500, "out of memory taking a snapshot");
  return false;
}

void tpool__route_health(tpool_http_t *h, struct evhttp_request *req,
                         const char *pool) {
  (void)pool;
  tpool_schedule_stats_t *sch;
  size_t nsch;
  if (!schedules_snapshot(h->m, req, &sch, &nsch))
    return;
  tpool_stats_t *s = snapshot(h->m, req);
  if (!s) {
    free(sch);
    return;
  }
  tpool__json_out_t w;
  tpool__json_out_init(&w, tpool__http_wants_pretty(req));
  int status = tpool__json_health(&w, s, sch, nsch, &h->sources);
  tpool_stats_free(s);
  free(sch);
  tpool__http_reply_json_out(req, status, &w);
}

void tpool__route_schedules(tpool_http_t *h, struct evhttp_request *req,
                            const char *name) {
  tpool__json_out_t w;
  tpool__json_out_init(&w, tpool__http_wants_pretty(req));
  if (name) {
    tpool_schedule_stats_t st;
    int rc = tpool_manager_schedule_stats(h->m, name, &st);
    if (rc != 0) { /* cancelled since the route was chosen */
      tpool__json_out_destroy(&w);
      tpool_http_reply_error(req, 404, "no schedule named \"%.64s\"", name);
      return;
    }
    tpool__json_schedule(&w, &st);
  } else {
    tpool_schedule_stats_t *sch;
    size_t n;
    if (!schedules_snapshot(h->m, req, &sch, &n)) {
      tpool__json_out_destroy(&w);
      return;
    }
    tpool__json_schedules(&w, sch, n);
    free(sch);
  }
  tpool__http_reply_json_out(req, 200, &w);
}

/* POST /health/schedules/{name}/{run-now,pause,resume}. */
static void schedule_action(tpool_http_t *h, struct evhttp_request *req,
                            const char *name, tpool_schedule_action_t action) {
  int64_t id = 0;
  int rc = tpool_manager_schedule_control(h->m, name, action, &id);
  switch (rc) {
  case 0:
    if (action == TPOOL_SCHEDULE_RUN_NOW)
      tpool_http_reply_json(
          req, 202,
          json_pack("{s:s,s:I}", "schedule", name, "task_id", (json_int_t)id));
    else
      tpool_http_reply_json(req, 200,
                            json_pack("{s:s,s:b}", "schedule", name, "paused",
                                      action == TPOOL_SCHEDULE_PAUSE));
    return;
  case -ENOENT:
    tpool_http_reply_error(req, 404, "no schedule named \"%.64s\"", name);
    return;
  case -EBUSY:
    tpool_http_reply_error(req, 409,
                           "schedule \"%.64s\" has a run queued or running "
                           "(overlap = skip)",
                           name);
    return;
  case -EAGAIN:
  case -TPOOL_ECIRCUIT:
  case -ESHUTDOWN:
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                      "1");
    tpool_http_reply_error(req, 503,
                           "the pool of schedule \"%.64s\" refused the run: "
                           "%s",
                           name, tpool_strerror(rc));
    return;
  default:
    tpool_http_reply_error(req, 500, "schedule \"%.64s\": %s", name,
                           tpool_strerror(rc));
    return;
  }
}

void tpool__route_schedule_run_now(tpool_http_t *h, struct evhttp_request *req,
                                   const char *name) {
  schedule_action(h, req, name, TPOOL_SCHEDULE_RUN_NOW);
}

void tpool__route_schedule_pause(tpool_http_t *h, struct evhttp_request *req,
                                 const char *name) {
  schedule_action(h, req, name, TPOOL_SCHEDULE_PAUSE);
}

void tpool__route_schedule_resume(tpool_http_t *h, struct evhttp_request *req,
                                  const char *name) {
  schedule_action(h, req, name, TPOOL_SCHEDULE_RESUME);
}

void tpool__route_thread_pools(tpool_http_t *h, struct evhttp_request *req,
                               const char *pool) {
  tpool_stats_t *s = snapshot(h->m, req);
  if (!s)
    return;
  tpool__json_out_t w;
  tpool__json_out_init(&w, tpool__http_wants_pretty(req));
  const tpool_pool_stats_t *ps = pool ? tpool_stats_pool(s, pool) : NULL;
  if (pool && !ps) { /* removed by a reload since the route was chosen */
    tpool_http_reply_error(req, 404, "no pool named \"%.64s\"", pool);
    tpool_stats_free(s);
    return;
  }
  if (ps)
    tpool__json_pool(&w, ps);
  else
    tpool__json_thread_pools(&w, s, &h->sources);
  tpool_stats_free(s);
  tpool__http_reply_json_out(req, 200, &w);
}

void tpool__route_log_status(tpool_http_t *h, struct evhttp_request *req,
                             const char *pool) {
  (void)pool;
  if (tpool_manager_log_status(h->m) != 0) {
    tpool_http_reply_error(req, 500, "out of memory writing the status table");
    return;
  }
  tpool_http_reply_json(req, 200,
                        json_pack("{s:s,s:s}", "status", "ok", "message",
                                  "status table written to the log"));
}

void tpool__route_reset_breaker(tpool_http_t *h, struct evhttp_request *req,
                                const char *pool) {
  tpool_pool_t *p = tpool_manager_pool(h->m, pool);
  tpool_stats_t *s = p ? snapshot(h->m, req) : NULL;
  if (!p || !s) {
    if (!p)
      tpool_http_reply_error(req, 404, "no pool named \"%.64s\"", pool);
    return;
  }
  const tpool_pool_stats_t *before = tpool_stats_pool(s, pool);
  tpool_breaker_state_t was = before ? before->breaker.state : 0;
  if (tpool_pool_reset_breaker(p) != 0) {
    tpool_stats_free(s);
    tpool_http_reply_error(req, 409,
                           "pool \"%.64s\" has no circuit breaker "
                           "(breaker_window = 0)",
                           pool);
    return;
  }
  tpool_stats_free(s);
  tpool_http_reply_json(req, 200,
                        json_pack("{s:s,s:s,s:s}", "pool", pool, "state",
                                  "closed", "was",
                                  tpool_breaker_state_name(was)));
}

void tpool__route_metrics(tpool_http_t *h, struct evhttp_request *req,
                          const char *pool) {
  (void)pool;
  tpool_schedule_stats_t *sch;
  size_t nsch;
  if (!schedules_snapshot(h->m, req, &sch, &nsch))
    return;
  tpool_stats_t *s = snapshot(h->m, req);
  if (!s) {
    free(sch);
    return;
  }
  struct evbuffer *out = evbuffer_new();
  int rc = out ? tpool__metrics_write_sources(out, s, sch, nsch, &h->sources)
               : -ENOMEM;
  tpool_stats_free(s);
  free(sch);
  if (rc != 0) {
    evbuffer_free(out);
    tpool_http_reply_error(req, 500, "out of memory formatting metrics");
    return;
  }
  struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", TPOOL__METRICS_CONTENT_TYPE);
  evhttp_add_header(headers, "Cache-Control", "no-store");
  evhttp_send_reply(req, 200, NULL, out);
  evbuffer_free(out);
}
