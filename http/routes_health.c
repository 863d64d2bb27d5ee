/*
 * routes_health.c — the bodies of the health routes: /health,
 * /health/thread-pools (all pools or one), the log-status action and
 * /metrics. Each handler takes one stats snapshot and builds its whole
 * reply from it, never from live pool fields, so a reply is consistent
 * with itself and costs each pool one short lock.
 */
#include "http_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

/* A refused submit this recent makes /health report the pool. */
#define REJECT_WINDOW_S 10.0

static double round_to(double x, double unit) {
  return round(x / unit) * unit;
}

double tpool__utilization_percent(unsigned busy, unsigned current) {
  return current ? round_to(100.0 * busy / current, 0.1) : 0.0;
}

static json_t *json_latency(const tpool_latency_t *l) {
  return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f}", "count", (json_int_t)l->count,
                   "mean", l->count ? l->sum_s / (double)l->count : 0.0, "p50",
                   l->p50_s, "p90", l->p90_s, "p99", l->p99_s, "max", l->max_s);
}

static json_t *json_active_tasks(const tpool_pool_stats_t *ps) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < ps->nactive; i++) {
    const tpool_active_task_t *t = &ps->active[i];
    if (json_array_append_new(a, json_pack("{s:I,s:s,s:f,s:b}", "id",
                                           (json_int_t)t->id, "name", t->name,
                                           "running_for_s",
                                           round_to(t->running_for_s, 0.001),
                                           "stuck", t->stuck)) != 0) {
      json_decref(a);
      return NULL;
    }
  }
  return a;
}

json_t *tpool__json_pool(const tpool_pool_stats_t *ps) {
  json_t *o = json_pack(
      "{s:s,s:i,s:i,s:i,s:i,s:i,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:"
      "I,"
      "s:I,s:I,s:f}",
      "name", ps->name, "max_workers", (int)ps->max_workers, "min_workers",
      (int)ps->min_workers, "current_workers", (int)ps->current_workers,
      "active_threads", (int)ps->busy_workers, "idle_threads",
      (int)ps->idle_workers, "queued_tasks", (json_int_t)ps->queued,
      "queue_limit", (json_int_t)ps->queue_limit, "utilization_percent",
      tpool__utilization_percent(ps->busy_workers, ps->current_workers),
      "submitted", (json_int_t)ps->submitted, "rejected",
      (json_int_t)ps->rejected, "completed", (json_int_t)ps->completed,
      "failed", (json_int_t)ps->failed, "cancelled", (json_int_t)ps->cancelled,
      "expired", (json_int_t)ps->expired, "stuck_tasks",
      (json_int_t)ps->stuck_now, "stuck_total", (json_int_t)ps->stuck_total,
      "thread_failures", (json_int_t)ps->thread_failures, "threads_started",
      (json_int_t)ps->threads_started, "threads_retired",
      (json_int_t)ps->threads_retired, "soft_timeout_s", ps->soft_timeout_s);
  if (!o)
    return NULL;
  if (json_object_set_new(
          o, "last_reject_age_s",
          ps->last_reject_age_s < 0
              ? json_null()
              : json_real(round_to(ps->last_reject_age_s, 0.001))) ||
      json_object_set_new(o, "run_time_s", json_latency(&ps->run)) ||
      json_object_set_new(o, "queue_wait_s", json_latency(&ps->wait)) ||
      json_object_set_new(o, "active_tasks", json_active_tasks(ps))) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *tpool__json_thread_pools(const tpool_stats_t *s) {
  json_t *pools = json_object();
  for (size_t i = 0; pools && i < s->npools; i++) {
    if (json_object_set_new(pools, s->pools[i].name,
                            tpool__json_pool(&s->pools[i])) != 0) {
      json_decref(pools);
      return NULL;
    }
  }
  json_t *summary = json_pack(
      "{s:i,s:i,s:I,s:f,s:i,s:f,s:b,s:b}", "total_workers",
      (int)s->total_workers, "total_active", (int)s->total_busy, "total_queued",
      (json_int_t)s->total_queued, "utilization_percent",
      tpool__utilization_percent(s->total_busy, s->total_workers), "pool_count",
      (int)s->npools, "uptime_s", round_to(s->uptime_s, 0.001), "verbose",
      s->verbose, "shutting_down", s->shutting_down);
  return json_pack("{s:o,s:o}", "summary", summary, "pools", pools);
}

/* Appends one reason the process is degraded; false if out of memory. */
static bool add_reason(json_t *reasons, const char *pool, const char *reason,
                       const char *fmt, ...) TPOOL_PRINTF(4, 5);

static bool add_reason(json_t *reasons, const char *pool, const char *reason,
                       const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  json_t *r = pool ? json_pack("{s:s,s:s,s:s}", "pool", pool, "reason", reason,
                               "message", msg)
                   : json_pack("{s:s,s:s}", "reason", reason, "message", msg);
  return json_array_append_new(reasons, r) == 0;
}

json_t *tpool__json_health(const tpool_stats_t *s, int *status) {
  json_t *reasons = json_array();
  bool ok = reasons != NULL;
  if (ok && s->shutting_down)
    ok = add_reason(reasons, NULL, "shutting_down",
                    "the server is draining and refuses new tasks");
  for (size_t i = 0; ok && i < s->npools; i++) {
    const tpool_pool_stats_t *ps = &s->pools[i];
    size_t stuck = ps->stuck_now;
    if (stuck)
      ok = add_reason(reasons, ps->name, "stuck_tasks",
                      "%zu task(s) running longer than the soft timeout "
                      "(%gs)",
                      stuck, ps->soft_timeout_s);
    if (ok && ps->queued >= ps->queue_limit)
      ok = add_reason(reasons, ps->name, "queue_full",
                      "queue full (%zu of %zu): new tasks are refused",
                      ps->queued, ps->queue_limit);
    else if (ok && ps->last_reject_age_s >= 0 &&
             ps->last_reject_age_s < REJECT_WINDOW_S && !s->shutting_down)
      ok = add_reason(reasons, ps->name, "rejecting",
                      "refused a task %.1fs ago (%g s window)",
                      ps->last_reject_age_s, REJECT_WINDOW_S);
    if (ok && ps->current_workers == 0 && ps->queued > 0)
      ok = add_reason(reasons, ps->name, "no_workers",
                      "%zu task(s) queued and no worker thread (%" PRIu64
                      " thread creation failures)",
                      ps->queued, ps->thread_failures);
  }
  if (!ok) {
    json_decref(reasons);
    return NULL;
  }
  if (json_array_size(reasons) == 0) {
    json_decref(reasons);
    *status = 200;
    return json_pack("{s:s}", "status", "ok");
  }
  *status = 503;
  return json_pack("{s:s,s:o}", "status", "degraded", "reasons", reasons);
}

/* ---- the routes --------------------------------------------------------- */

static tpool_stats_t *snapshot(tpool_manager_t *m, struct evhttp_request *req) {
  tpool_stats_t *s = NULL;
  if (tpool_manager_stats(m, &s) != 0)
    tpool_http_reply_error(req, 500, "out of memory taking a snapshot");
  return s;
}

void tpool__route_health(tpool_manager_t *m, struct evhttp_request *req,
                         const char *pool) {
  (void)pool;
  tpool_stats_t *s = snapshot(m, req);
  if (!s)
    return;
  int status = 500;
  json_t *body = tpool__json_health(s, &status);
  tpool_stats_free(s);
  tpool__http_reply_json(req, status, body);
}

void tpool__route_thread_pools(tpool_manager_t *m, struct evhttp_request *req,
                               const char *pool) {
  tpool_stats_t *s = snapshot(m, req);
  if (!s)
    return;
  json_t *body;
  if (pool) {
    const tpool_pool_stats_t *ps = tpool_stats_pool(s, pool);
    body = ps ? tpool__json_pool(ps) : NULL;
  } else {
    body = tpool__json_thread_pools(s);
  }
  tpool_stats_free(s);
  tpool__http_reply_json(req, 200, body);
}

void tpool__route_log_status(tpool_manager_t *m, struct evhttp_request *req,
                             const char *pool) {
  (void)pool;
  if (tpool_manager_log_status(m) != 0) {
    tpool_http_reply_error(req, 500, "out of memory writing the status table");
    return;
  }
  tpool__http_reply_json(req, 200,
                         json_pack("{s:s,s:s}", "status", "ok", "message",
                                   "status table written to the log"));
}

void tpool__route_metrics(tpool_manager_t *m, struct evhttp_request *req,
                          const char *pool) {
  (void)pool;
  tpool_stats_t *s = snapshot(m, req);
  if (!s)
    return;
  struct evbuffer *out = evbuffer_new();
  int rc = out ? tpool__metrics_write(out, s) : -ENOMEM;
  tpool_stats_free(s);
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
