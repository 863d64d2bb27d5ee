/*
 * test_http.c — tpool's routes attached to a user's own evhttp, in one
 * process: the user's routes keep working beside tpool's, every body is
 * JSON that matches the stats snapshot, errors carry their status codes,
 * the admin token guards POST routes, /health degrades for stuck tasks and
 * full queues, and the limits answer 413. Task names of any bytes come
 * back through the JSON as they went in (or mended, where truncation cut
 * a character), the pool object keeps its exact field names, order and
 * number formats, and a body that cannot be written is a JSON 500. A
 * source another layer adds (tpool_http_add_source()) shows in
 * /health/thread-pools, /health, /metrics and the dashboard. The
 * client runs on the same event_base as the server, as a user's own
 * requests to itself would.
 */
#include "helpers.h"
#include "http_client.h"
#include "http_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* One manager with pools "w" (2 workers) and "q" (1 worker, queue of 1,
   soft timeout 0.2 s), a user's evhttp on a free port, and tpool's routes. */
typedef struct fixture {
  struct event_base *base;
  tpool_manager_t *m;
  th_log_t log;
  struct evhttp *http;
  tpool_http_t *routes;
  uint16_t port;
  int user_calls; /* requests the user's own callbacks saw */
} fixture_t;

static void user_hello(struct evhttp_request *req, void *arg) {
  fixture_t *f = arg;
  f->user_calls++;
  struct evbuffer *b = evbuffer_new();
  evbuffer_add_printf(b, "hello");
  evhttp_send_reply(req, 200, "OK", b);
  evbuffer_free(b);
}

/* The user's own generic callback: tpool's paths first, then its own. */
static void user_gencb(struct evhttp_request *req, void *arg) {
  fixture_t *f = arg;
  if (tpool_http_handle(f->routes, req))
    return;
  f->user_calls++;
  evhttp_send_reply(req, 418, "Teapot", NULL);
}

static fixture_t *setup(const tpool_http_options_t *ho, unsigned flags,
                        bool user_gen) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  tpool_options_t *o = malloc(sizeof(*o));
  assert_non_null(o);
  th_options_logged(o, &f->log);
  th_add_pool(o, "w", 2, 2, 64);
  th_add_pool(o, "q", 1, 1, 1)->soft_timeout_s = 0.2;
  f->base = th_base_new();
  f->m = th_manager(o, f->base);
  free(o);
  f->http = evhttp_new(f->base);
  assert_non_null(f->http);
  assert_int_equal(evhttp_set_cb(f->http, "/hello", user_hello, f), 0);
  assert_int_equal(tpool_http_attach(f->http, f->m, ho, flags, &f->routes), 0);
  if (user_gen)
    evhttp_set_gencb(f->http, user_gencb, f);
  f->port = th_evhttp_listen_local(f->http);
  return f;
}

static void teardown(fixture_t *f) {
  tpool_http_detach(f->routes);
  assert_int_equal(tpool_manager_shutdown(f->m, -1), 0);
  tpool_manager_free(f->m);
  evhttp_free(f->http);
  event_base_free(f->base);
  th_log_destroy(&f->log);
  free(f);
}

/* Sends a request and returns the answer; asserts one arrived. */
static th_response_t call(fixture_t *f, const char *method, const char *path,
                          const char *const *headers, const char *body) {
  th_response_t r;
  assert_int_equal(th_http(f->base, f->port, method, path, headers, body,
                           body ? strlen(body) : 0, 10.0, &r),
                   0);
  return r;
}

/* Asserts a JSON error body with `status` and returns its message. */
static void assert_json_error(const th_response_t *r, int status) {
  assert_int_equal(r->status, status);
  assert_string_equal(th_response_header(r, "Content-Type"),
                      "application/json");
  json_t *j = th_json(r);
  json_int_t code = 0;
  const char *msg = NULL;
  assert_int_equal(json_unpack(j, "{s:{s:I,s:s}}", "error", "status", &code,
                               "message", &msg),
                   0);
  assert_int_equal(code, status);
  assert_true(strlen(msg) > 0);
  json_decref(j);
}

static void test_http_routes_live_beside_the_users_own(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, 0, true);
  th_response_t r = call(f, "GET", "/hello", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hello");
  th_response_free(&r);

  r = call(f, "GET", "/health", NULL, NULL);
  assert_int_equal(r.status, 200);
  json_t *j = th_json(&r);
  assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
  json_decref(j);
  th_response_free(&r);

  /* Unknown pools are tpool's to answer; other paths stay the user's. */
  r = call(f, "GET", "/health/thread-pools/nope", NULL, NULL);
  assert_json_error(&r, 404);
  th_response_free(&r);
  r = call(f, "GET", "/somewhere/else", NULL, NULL);
  assert_int_equal(r.status, 418);
  th_response_free(&r);
  assert_int_equal(f->user_calls, 2);

  /* Detached, the routes are gone and the user's callback sees them. */
  tpool_http_detach(f->routes);
  f->routes = NULL;
  r = call(f, "GET", "/health", NULL, NULL);
  assert_int_equal(r.status, 418);
  th_response_free(&r);
  teardown(f);
}

static void test_http_attach_refuses_a_taken_path(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(1, 4, base);
  struct evhttp *http = evhttp_new(base);
  assert_int_equal(evhttp_set_cb(http, "/metrics", user_hello, NULL), 0);
  tpool_http_t *h = (tpool_http_t *)http;
  assert_int_equal(tpool_http_attach(http, m, NULL, 0, &h), -EEXIST);
  assert_null(h);
  /* Nothing of tpool's was left behind: /health can be taken again. */
  assert_int_equal(evhttp_set_cb(http, "/health", user_hello, NULL), 0);
  assert_int_equal(tpool_http_attach(NULL, m, NULL, 0, &h), -EINVAL);
  tpool_manager_free(m);
  evhttp_free(http);
  event_base_free(base);
}

static void test_http_errors_are_json_with_their_codes(void **state) {
  (void)state;
  tpool_http_options_t ho;
  memset(&ho, 0, sizeof(ho));
  ho.max_header_size = 1024;
  ho.max_body_size = 64;
  ho.timeout_s = 5;
  fixture_t *f = setup(&ho, TPOOL_HTTP_CONFIGURE | TPOOL_HTTP_NOT_FOUND, false);

  th_response_t r = call(f, "GET", "/no/such/path", NULL, NULL);
  assert_json_error(&r, 404);
  th_response_free(&r);

  static const struct {
    const char *method, *path, *allow;
  } wrong[] = {
      {"POST", "/health", "GET, HEAD"},
      {"DELETE", "/health/thread-pools", "GET, HEAD"},
      {"PUT", "/health/thread-pools/w", "GET, HEAD"},
      {"PATCH", "/metrics", "GET, HEAD"},
      {"GET", "/health/thread-pools/log-status", "POST"},
  };
  for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
    r = call(f, wrong[i].method, wrong[i].path, NULL, NULL);
    assert_json_error(&r, 405);
    assert_string_equal(th_response_header(&r, "Allow"), wrong[i].allow);
    th_response_free(&r);
  }

  /* HEAD answers like GET, without a body. */
  r = call(f, "HEAD", "/health/thread-pools", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  th_response_free(&r);

  /* Over the configured limits: a JSON 413. */
  char *big = malloc(2048);
  assert_non_null(big);
  memset(big, 'x', 2047);
  big[2047] = '\0';
  char *header = malloc(2100);
  assert_non_null(header);
  snprintf(header, 2100, "X-Big: %s", big);
  const char *const headers[] = {header, NULL};
  r = call(f, "GET", "/health", headers, NULL);
  assert_json_error(&r, 413);
  th_response_free(&r);
  big[100] = '\0';
  r = call(f, "POST", "/health/thread-pools/log-status", NULL, big);
  assert_json_error(&r, 413);
  th_response_free(&r);
  assert_false(th_log_contains(&f->log, "Current Status"));
  free(header);
  free(big);
  teardown(f);
}

static void test_http_admin_token_guards_post_routes(void **state) {
  (void)state;
  tpool_http_options_t ho;
  memset(&ho, 0, sizeof(ho));
  strcpy(ho.admin_token, "s3cret");
  fixture_t *f = setup(&ho, TPOOL_HTTP_NOT_FOUND, false);
  const char *path = "/health/thread-pools/log-status";

  th_response_t r = call(f, "POST", path, NULL, NULL);
  assert_json_error(&r, 401);
  assert_non_null(th_response_header(&r, "WWW-Authenticate"));
  th_response_free(&r);
  const char *const wrong[] = {"Authorization: Bearer s3cre", NULL};
  r = call(f, "POST", path, wrong, NULL);
  assert_json_error(&r, 401);
  th_response_free(&r);
  const char *const longer[] = {"Authorization: Bearer s3crett", NULL};
  r = call(f, "POST", path, longer, NULL);
  assert_json_error(&r, 401);
  th_response_free(&r);
  assert_false(th_log_contains(&f->log, "Current Status"));

  /* GET routes need no token. */
  r = call(f, "GET", "/metrics", NULL, NULL);
  assert_int_equal(r.status, 200);
  th_response_free(&r);

  const char *const right[] = {"Authorization: Bearer s3cret", NULL};
  r = call(f, "POST", path, right, NULL);
  assert_int_equal(r.status, 200);
  json_t *j = th_json(&r);
  assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
  json_decref(j);
  th_response_free(&r);
  assert_true(th_log_contains(&f->log, "ThreadPoolManager Current Status:"));

  /* A reload may turn the token off, and refuses a malformed one. */
  assert_int_equal(tpool_http_set_token(f->routes, "two words"), -EINVAL);
  r = call(f, "POST", path, NULL, NULL);
  assert_int_equal(r.status, 401);
  th_response_free(&r);
  assert_int_equal(tpool_http_set_token(f->routes, ""), 0);
  r = call(f, "POST", path, NULL, NULL);
  assert_int_equal(r.status, 200);
  th_response_free(&r);
  teardown(f);
}

static bool busy_is(const tpool_pool_stats_t *ps, void *arg) {
  return ps->busy_workers == *(unsigned *)arg;
}

static bool all_done(const tpool_pool_stats_t *ps, void *arg) {
  (void)arg;
  return ps->busy_workers == 0 && ps->queued == 0;
}

static void test_http_json_matches_the_snapshot(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  for (int i = 0; i < 6; i++)
    assert_true(tpool_manager_submit(f->m, "w", "ok_task", th_noop, NULL, NULL,
                                     NULL) > 0);
  for (int i = 0; i < 3; i++)
    assert_true(tpool_manager_submit(f->m, "w", "bad_task", th_fail_eio, NULL,
                                     NULL, NULL) > 0);
  assert_true(th_wait_stats(f->m, f->base, "w", all_done, NULL, 10.0));
  th_gate_t gate;
  th_gate_init(&gate);
  int64_t id = tpool_manager_submit(f->m, "w", "heavy_computation",
                                    th_gate_work, NULL, &gate, NULL);
  assert_true(id > 0);
  unsigned one = 1;
  assert_true(th_wait_stats(f->m, f->base, "w", busy_is, &one, 10.0));

  th_response_t r = call(f, "GET", "/health/thread-pools", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_string_equal(th_response_header(&r, "Content-Type"),
                      "application/json");
  json_t *j = th_json(&r);
  json_int_t total_workers, total_active, total_queued;
  double util;
  assert_int_equal(json_unpack(j, "{s:{s:I,s:I,s:I,s:F}}", "summary",
                               "total_workers", &total_workers, "total_active",
                               &total_active, "total_queued", &total_queued,
                               "utilization_percent", &util),
                   0);
  assert_int_equal(total_workers, 3);
  assert_int_equal(total_active, 1);
  assert_int_equal(total_queued, 0);
  assert_true(util > 33.2 && util < 33.4); /* 1 of 3, one decimal */

  json_t *w = json_object_get(json_object_get(j, "pools"), "w");
  assert_non_null(w);
  json_int_t max, min, cur, active, idle, queued, limit, submitted, completed,
      failed;
  double pool_util;
  assert_int_equal(
      json_unpack(w,
                  "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:F,s:I,s:I,s:I,s:{s:F,s:F},"
                  "s:{s:F,s:F}}",
                  "max_workers", &max, "min_workers", &min, "current_workers",
                  &cur, "active_threads", &active, "idle_threads", &idle,
                  "queued_tasks", &queued, "queue_limit", &limit,
                  "utilization_percent", &pool_util, "submitted", &submitted,
                  "completed", &completed, "failed", &failed, "run_time_s",
                  "p50", &util, "p99", &util, "queue_wait_s", "p50", &util,
                  "p99", &util),
      0);
  assert_int_equal(max, 2);
  assert_int_equal(min, 2);
  assert_int_equal(cur, 2);
  assert_int_equal(active, 1);
  assert_int_equal(idle, 1);
  assert_int_equal(queued, 0);
  assert_int_equal(limit, 64);
  assert_true(pool_util == 50.0);
  assert_int_equal(submitted, 10);
  assert_int_equal(completed, 6);
  assert_int_equal(failed, 3);

  json_t *tasks = json_object_get(w, "active_tasks");
  assert_int_equal(json_array_size(tasks), 1);
  json_int_t task_id;
  const char *name;
  double running;
  int stuck;
  assert_int_equal(json_unpack(json_array_get(tasks, 0), "{s:I,s:s,s:F,s:b}",
                               "id", &task_id, "name", &name, "running_for_s",
                               &running, "stuck", &stuck),
                   0);
  assert_int_equal(task_id, id);
  assert_string_equal(name, "heavy_computation");
  assert_true(running >= 0);
  assert_false(stuck);
  json_decref(j);
  th_response_free(&r);

  /* One pool alone: the same object. */
  r = call(f, "GET", "/health/thread-pools/w", NULL, NULL);
  assert_int_equal(r.status, 200);
  j = th_json(&r);
  assert_string_equal(json_string_value(json_object_get(j, "name")), "w");
  assert_int_equal(json_integer_value(json_object_get(j, "completed")), 6);
  json_decref(j);
  th_response_free(&r);

  th_gate_open(&gate);
  assert_true(th_wait_stats(f->m, f->base, "w", all_done, NULL, 10.0));
  th_gate_destroy(&gate);
  teardown(f);
}

/* The value of sample `name{pool="w"}` in a metrics text, or -1. */
static double metric(const char *text, const char *name) {
  char key[128];
  snprintf(key, sizeof(key), "\n%s{pool=\"w\"} ", name);
  const char *p = strstr(text, key);
  return p ? strtod(p + strlen(key), NULL) : -1;
}

static void test_http_metrics_agree_with_the_json(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  for (int i = 0; i < 20; i++)
    assert_true(tpool_manager_submit(f->m, "w", "t",
                                     i % 4 ? th_noop : th_fail_eio, NULL, NULL,
                                     NULL) > 0);
  assert_true(th_wait_stats(f->m, f->base, "w", all_done, NULL, 10.0));

  th_response_t r = call(f, "GET", "/metrics", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_non_null(
      strstr(th_response_header(&r, "Content-Type"), "version=0.0.4"));
  th_response_t rj = call(f, "GET", "/health/thread-pools/w", NULL, NULL);
  json_t *j = th_json(&rj);
  static const struct {
    const char *metric, *field;
  } pairs[] = {
      {"tpool_tasks_submitted_total", "submitted"},
      {"tpool_tasks_completed_total", "completed"},
      {"tpool_tasks_failed_total", "failed"},
      {"tpool_tasks_rejected_total", "rejected"},
      {"tpool_pool_workers", "current_workers"},
      {"tpool_pool_workers_max", "max_workers"},
      {"tpool_pool_queue_limit", "queue_limit"},
  };
  for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
    assert_true(metric(r.body, pairs[i].metric) ==
                (double)json_integer_value(json_object_get(j, pairs[i].field)));
  assert_true(metric(r.body, "tpool_tasks_completed_total") == 15);
  assert_true(metric(r.body, "tpool_task_run_seconds_count") == 20);
  json_decref(j);
  th_response_free(&rj);
  th_response_free(&r);
  teardown(f);
}

/* The reason objects of a /health answer, as "pool:reason" words. */
static void health_reasons(fixture_t *f, int *status, char *out, size_t n) {
  th_response_t r = call(f, "GET", "/health", NULL, NULL);
  *status = r.status;
  json_t *j = th_json(&r);
  out[0] = '\0';
  size_t i;
  json_t *reason;
  json_array_foreach(json_object_get(j, "reasons"), i, reason) {
    const char *pool = json_string_value(json_object_get(reason, "pool"));
    const char *why = json_string_value(json_object_get(reason, "reason"));
    assert_non_null(json_string_value(json_object_get(reason, "message")));
    size_t len = strlen(out);
    snprintf(out + len, n - len, "%s:%s ", pool ? pool : "-", why);
  }
  json_decref(j);
  th_response_free(&r);
}

static bool stuck_seen(const tpool_pool_stats_t *ps, void *arg) {
  (void)arg;
  return ps->nactive == 0 ? false : ps->stuck_total > 0;
}

/* GET /health/ready: 200 while serving, 503 once a drain is announced
   or the manager shuts down; and back to 200 if a drain is called off. */
static void test_http_ready_follows_the_drain(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  th_response_t r = call(f, "GET", "/health/ready", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"status\":\"ready\""));
  th_response_free(&r);
  tpool_http_set_draining(f->routes, true);
  r = call(f, "GET", "/health/ready", NULL, NULL);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "\"status\":\"draining\""));
  th_response_free(&r);
  tpool_http_set_draining(f->routes, false);
  r = call(f, "GET", "/health/ready", NULL, NULL);
  assert_int_equal(r.status, 200);
  th_response_free(&r);
  r = call(f, "POST", "/health/ready", NULL, NULL);
  assert_int_equal(r.status, 405);
  th_response_free(&r);
  assert_int_equal(tpool_manager_shutdown(f->m, -1), 0);
  r = call(f, "GET", "/health/ready", NULL, NULL);
  assert_int_equal(r.status, 503);
  th_response_free(&r);
  teardown(f);
}

static void test_http_health_degrades_and_recovers(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  th_gate_t gate;
  th_gate_init(&gate);
  /* Pool q: one worker held past its 0.2 s soft timeout, one task queued
     (the queue of 1 is full), one refused. */
  assert_true(tpool_manager_submit(f->m, "q", "held", th_gate_work, NULL, &gate,
                                   NULL) > 0);
  unsigned one = 1;
  assert_true(th_wait_stats(f->m, f->base, "q", busy_is, &one, 10.0));
  assert_true(
      tpool_manager_submit(f->m, "q", "waits", th_noop, NULL, NULL, NULL) > 0);
  assert_int_equal(
      tpool_manager_submit(f->m, "q", "refused", th_noop, NULL, NULL, NULL),
      -EAGAIN);
  assert_true(th_wait_stats(f->m, f->base, "q", stuck_seen, NULL, 10.0));

  int status;
  char reasons[512];
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 503);
  assert_non_null(strstr(reasons, "q:stuck_tasks"));
  assert_non_null(strstr(reasons, "q:queue_full"));
  assert_null(strstr(reasons, "w:"));

  /* Released: nothing stuck or full, but the refusal is recent. */
  th_gate_open(&gate);
  assert_true(th_wait_stats(f->m, f->base, "q", all_done, NULL, 10.0));
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 503);
  assert_string_equal(reasons, "q:rejecting ");
  th_gate_destroy(&gate);

  /* Draining is a reason of the whole process. */
  assert_int_equal(tpool_manager_shutdown(f->m, -1), 0);
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 503);
  assert_non_null(strstr(reasons, "-:shutting_down"));
  teardown(f);
}

static void test_http_healthy_manager_answers_ok(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  int status;
  char reasons[256];
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 200);
  assert_string_equal(reasons, "");
  teardown(f);
}

/* The active task of pool `pool` with id `id` in a /health/thread-pools
   answer (borrowed from j). */
static json_t *active_task(json_t *j, const char *pool, json_int_t id) {
  json_t *p = json_object_get(json_object_get(j, "pools"), pool);
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(p, "active_tasks"), i, t) {
    if (json_integer_value(json_object_get(t, "id")) == id)
      return t;
  }
  fail_msg("task %" JSON_INTEGER_FORMAT " is not listed in pool %s", id, pool);
  return NULL;
}

static void test_http_task_names_round_trip(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  /* Task names are the submitter's text: quotes, backslashes, control
     bytes and UTF-8 of every length must come back as they went in. */
  static const char odd[] =
      "q\"uote\\back\x01\x1f\t\n/caf\xc3\xa9 \xe2\x82\xac "
      "\xf0\x9f\x98\x80\x7f";
  /* Truncation to TPOOL_TASK_NAME_MAX - 1 bytes cuts this one inside its
     last character; the JSON shows U+FFFD there rather than failing. */
  char cut[TPOOL_TASK_NAME_MAX + 8];
  memset(cut, 'a', TPOOL_TASK_NAME_MAX - 2);
  strcpy(cut + TPOOL_TASK_NAME_MAX - 2, "\xc3\xa9");
  char cut_want[TPOOL_TASK_NAME_MAX + 8];
  memcpy(cut_want, cut, TPOOL_TASK_NAME_MAX - 2);
  strcpy(cut_want + TPOOL_TASK_NAME_MAX - 2, "\xef\xbf\xbd");

  th_gate_t gate;
  th_gate_init(&gate);
  int64_t id_odd =
      tpool_manager_submit(f->m, "w", odd, th_gate_work, NULL, &gate, NULL);
  int64_t id_cut =
      tpool_manager_submit(f->m, "w", cut, th_gate_work, NULL, &gate, NULL);
  assert_true(id_odd > 0 && id_cut > 0);
  unsigned two = 2;
  assert_true(th_wait_stats(f->m, f->base, "w", busy_is, &two, 10.0));

  static const char *const paths[] = {"/health/thread-pools",
                                      "/health/thread-pools?pretty"};
  for (size_t i = 0; i < 2; i++) {
    th_response_t r = call(f, "GET", paths[i], NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *j = th_json(&r);
    json_t *name = json_object_get(active_task(j, "w", id_odd), "name");
    assert_int_equal(json_string_length(name), sizeof(odd) - 1);
    assert_memory_equal(json_string_value(name), odd, sizeof(odd) - 1);
    assert_string_equal(
        json_string_value(json_object_get(active_task(j, "w", id_cut), "name")),
        cut_want);
    /* The body is ASCII, as jansson's JSON_ENSURE_ASCII wrote it. */
    for (size_t k = 0; k < r.body_len; k++)
      assert_true((unsigned char)r.body[k] < 0x80);
    json_decref(j);
    th_response_free(&r);
  }
  /* One pool alone writes its tasks the same way. */
  th_response_t r = call(f, "GET", "/health/thread-pools/w", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "\"name\":\"q\\\"uote\\\\back\\u0001\\u001F"
                                 "\\t\\n/caf\\u00E9 \\u20AC \\uD83D\\uDE00"));
  th_response_free(&r);

  th_gate_open(&gate);
  assert_true(th_wait_stats(f->m, f->base, "w", all_done, NULL, 10.0));
  th_gate_destroy(&gate);
  teardown(f);
}

/* A snapshot with every kind of value the pool object holds. */
static void sample_snapshot(tpool_stats_t *s, tpool_pool_stats_t *ps,
                            tpool_active_task_t *t) {
  memset(s, 0, sizeof(*s));
  memset(ps, 0, sizeof(*ps));
  memset(t, 0, sizeof(*t));
  strcpy(ps->name, "cpu");
  ps->min_workers = 2;
  ps->max_workers = 30;
  ps->current_workers = 3;
  ps->busy_workers = 1;
  ps->idle_workers = 2;
  ps->queued = 4;
  ps->queue_limit = 65536;
  ps->submitted = 12345678901ull;
  ps->rejected = 1;
  ps->completed = 12345678890ull;
  ps->failed = 2;
  ps->cancelled = 3;
  ps->expired = 0;
  ps->stuck_total = 5;
  ps->thread_failures = 0;
  ps->threads_started = 3;
  ps->threads_retired = 0;
  ps->soft_timeout_s = 60;
  ps->last_reject_age_s = 1.23456;
  ps->run.count = 4;
  ps->run.sum_s = 10.0;
  ps->run.p50_s = 2.50014834;
  ps->run.p90_s = 9.8708e-5;
  ps->run.p99_s = 3;
  ps->run.max_s = 3.1;
  ps->nactive = 1;
  ps->active = t;
  ps->stuck_now = 1;
  t->id = 45;
  strcpy(t->name, "heavy_computation");
  t->running_for_s = 1.2;
  t->stuck = true;
  s->uptime_s = 133.14;
  s->total_workers = 3;
  s->total_busy = 1;
  s->total_queued = 4;
  s->npools = 1;
  s->pools = ps;
}

/* The text a builder wrote (caller frees). */
static char *written(tpool__json_out_t *w) {
  char *text;
  size_t len;
  assert_int_equal(tpool__json_out_take(w, NULL, &text, &len), 0);
  return text;
}

static void test_http_pool_json_keeps_its_shape(void **state) {
  (void)state;
  tpool_stats_t s;
  tpool_pool_stats_t ps;
  tpool_active_task_t t;
  sample_snapshot(&s, &ps, &t);
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_thread_pools(&w, &s, NULL);
  char *text = written(&w);
  /* Field names, order and nesting as docs/server.md shows them;
     integers without a point, reals with one, never an exponent. */
  static const char want[] =
      "{\"summary\":{\"total_workers\":3,\"total_active\":1,"
      "\"total_queued\":4,\"utilization_percent\":33.3,\"pool_count\":1,"
      "\"uptime_s\":133.14,\"verbose\":false,\"shutting_down\":false},"
      "\"pools\":{\"cpu\":{\"name\":\"cpu\",\"max_workers\":30,"
      "\"min_workers\":2,\"current_workers\":3,\"active_threads\":1,"
      "\"idle_threads\":2,\"queued_tasks\":4,\"queue_limit\":65536,"
      "\"utilization_percent\":33.3,\"submitted\":12345678901,"
      "\"rejected\":1,\"completed\":12345678890,\"failed\":2,"
      "\"cancelled\":3,\"expired\":0,\"stuck_tasks\":1,\"stuck_total\":5,"
      "\"thread_failures\":0,\"threads_started\":3,\"threads_retired\":0,"
      "\"retries\":0,\"retrying\":0,\"scheduled\":0,"
      "\"circuit_breaker\":{\"enabled\":false,\"state\":\"closed\"},"
      "\"soft_timeout_s\":60.0,\"last_reject_age_s\":1.235,"
      "\"last_error\":null,"
      "\"run_time_s\":{\"count\":4,\"mean\":2.5,\"p50\":2.50014834,"
      "\"p90\":0.000098708,\"p99\":3.0,\"max\":3.1},"
      "\"queue_wait_s\":{\"count\":0,\"mean\":0.0,\"p50\":0.0,\"p90\":0.0,"
      "\"p99\":0.0,\"max\":0.0},"
      "\"active_tasks\":[{\"id\":45,\"name\":\"heavy_computation\","
      "\"running_for_s\":1.2,\"stuck\":true}]}}}";
  if (strcmp(text, want) != 0)
    fail_msg("wrote  %s\nwanted %s", text, want);

  /* jansson reads back the types the contract has. */
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  assert_non_null(j);
  json_t *p = json_object_get(json_object_get(j, "pools"), "cpu");
  static const char *const reals[] = {"utilization_percent", "soft_timeout_s",
                                      "last_reject_age_s"};
  for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++)
    assert_true(json_is_real(json_object_get(p, reals[i])));
  assert_true(json_is_integer(json_object_get(p, "queue_limit")));
  json_t *run = json_object_get(p, "run_time_s");
  assert_true(json_is_integer(json_object_get(run, "count")));
  assert_true(json_is_real(json_object_get(run, "p99")));
  assert_true(json_is_real(json_object_get(json_object_get(p, "queue_wait_s"),
                                           "max"))); /* 0.0, not 0 */
  assert_true(json_is_real(json_object_get(
      json_array_get(json_object_get(p, "active_tasks"), 0), "running_for_s")));

  /* ?pretty is the same document, indented. */
  tpool__json_out_init(&w, true);
  tpool__json_thread_pools(&w, &s, NULL);
  char *pretty = written(&w);
  json_t *jp = json_loads(pretty, 0, &err);
  assert_non_null(jp);
  assert_true(json_equal(j, jp));
  assert_non_null(strstr(pretty, "\n      \"max_workers\": 30,\n"));
  json_decref(jp);
  free(pretty);
  json_decref(j);
  free(text);

  /* A pool never refused has null there; one pool alone is its object;
     a pool's last error is an object of five members once there is one. */
  ps.last_reject_age_s = -1;
  ps.scheduled = 2;
  ps.last_error.set = true;
  ps.last_error.id = 42;
  ps.last_error.status = -ETIMEDOUT;
  strcpy(ps.last_error.name, "fetch");
  strcpy(ps.last_error.message, "upstream said \"no\"");
  ps.last_error.age_s = 1.25;
  tpool__json_out_init(&w, false);
  tpool__json_pool(&w, &ps);
  text = written(&w);
  assert_non_null(strstr(text, ",\"last_reject_age_s\":null,"));
  assert_non_null(strstr(text, ",\"retrying\":0,\"scheduled\":2,"));
  assert_non_null(
      strstr(text, ",\"last_error\":{\"id\":42,\"name\":\"fetch\",\"status\":"
                   "\"expired\",\"message\":\"upstream said \\\"no\\\"\","
                   "\"age_s\":1.25},\"run_time_s\":"));
  assert_int_equal(strncmp(text, "{\"name\":\"cpu\",\"max_workers\":30,", 31),
                   0);
  free(text);

  /* /health: the reasons, in the order and words they had. */
  s.shutting_down = true;
  tpool__json_out_init(&w, false);
  assert_int_equal(tpool__json_health(&w, &s, NULL, 0, NULL), 503);
  text = written(&w);
  assert_string_equal(
      text, "{\"status\":\"degraded\",\"reasons\":["
            "{\"reason\":\"shutting_down\",\"message\":\"the server is "
            "draining and refuses new tasks\"},"
            "{\"pool\":\"cpu\",\"reason\":\"stuck_tasks\",\"message\":\"1 "
            "task(s) running longer than the soft timeout (60s)\"}]}");
  free(text);
  s.shutting_down = false;
  ps.stuck_now = 0;
  tpool__json_out_init(&w, false);
  assert_int_equal(tpool__json_health(&w, &s, NULL, 0, NULL), 200);
  text = written(&w);
  assert_string_equal(text, "{\"status\":\"ok\"}");
  free(text);
}

/* A route whose body cannot be written: out of memory, or a builder that
   wrote something that is not JSON. */
static void broken_route(struct evhttp_request *req, void *arg) {
  (void)arg;
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_object_begin(&w);
  if (strstr(evhttp_request_get_uri(req), "nomem")) {
    tpool__json_out_key(&w, "k");
    tpool__json_out_string_n(&w, "x", SIZE_MAX / 4); /* cannot be room */
  }
  /* Otherwise left unclosed. Either way the reply takes w and frees it. */
  tpool__http_reply_json_out(req, 200, &w);
}

static void test_http_failed_body_answers_json_500(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  assert_int_equal(evhttp_set_cb(f->http, "/broken/nomem", broken_route, f), 0);
  assert_int_equal(evhttp_set_cb(f->http, "/broken/unclosed", broken_route, f),
                   0);
  th_response_t r = call(f, "GET", "/broken/nomem", NULL, NULL);
  assert_json_error(&r, 500);
  assert_non_null(strstr(r.body, "out of memory"));
  th_response_free(&r);
  r = call(f, "GET", "/broken/unclosed", NULL, NULL);
  assert_json_error(&r, 500);
  th_response_free(&r);
  teardown(f);
}

/* ---- sources: another layer beside the pools ----------------------------- */

/* What a Redis consumer would report: state its own threads change (here,
   tasks on pool "w"), read with atomics from the loop. */
typedef struct test_source {
  atomic_bool connected;
  atomic_bool hidden;       /* health_json() returns NULL */
  atomic_bool metrics_fail; /* metrics() returns -ENOMEM */
  atomic_uint_fast64_t received;
} test_source_t;

static json_t *source_health(void *arg) {
  test_source_t *t = arg;
  if (atomic_load(&t->hidden))
    return NULL;
  return json_pack("{s:b,s:s,s:I}", "connected", atomic_load(&t->connected),
                   "stream", "jobs", "received",
                   (json_int_t)atomic_load(&t->received));
}

static const char *source_degraded(void *arg, char *msg, size_t cap) {
  test_source_t *t = arg;
  if (atomic_load(&t->connected))
    return NULL;
  snprintf(msg, cap, "cannot reach 127.0.0.1:6379");
  return "redis_unreachable";
}

static int source_metrics(void *arg, struct evbuffer *out) {
  test_source_t *t = arg;
  if (atomic_load(&t->metrics_fail))
    return -ENOMEM;
  int n = evbuffer_add_printf(
      out,
      "# HELP test_redis_received_total Messages read from the stream.\n"
      "# TYPE test_redis_received_total counter\n"
      "test_redis_received_total %" PRIu64 "\n"
      "# HELP test_redis_connected 1 while connected to Redis, else 0.\n"
      "# TYPE test_redis_connected gauge\n"
      "test_redis_connected %d\n",
      (uint64_t)atomic_load(&t->received), atomic_load(&t->connected) ? 1 : 0);
  return n < 0 ? -ENOMEM : 0;
}

static tpool_http_source_t source_of(test_source_t *t) {
  tpool_http_source_t s = {.name = "redis",
                           .health_json = source_health,
                           .degraded = source_degraded,
                           .metrics = source_metrics,
                           .arg = t};
  return s;
}

static int receive(void *arg) {
  atomic_fetch_add(&((test_source_t *)arg)->received, 1);
  return 0;
}

/* The /health/thread-pools answer's text, checked to be valid JSON. */
static json_t *thread_pools(fixture_t *f, const char *path, char **text) {
  th_response_t r = call(f, "GET", path, NULL, NULL);
  assert_int_equal(r.status, 200);
  json_t *j = th_json(&r);
  *text = strdup(r.body);
  th_response_free(&r);
  return j;
}

static void test_http_source_reports_beside_the_pools(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  test_source_t t = {0};
  atomic_store(&t.connected, true);
  tpool_http_source_t src = source_of(&t);
  assert_int_equal(tpool_http_add_source(f->routes, &src), 0);
  for (int i = 0; i < 3; i++)
    assert_true(tpool_manager_submit(f->m, "w", "receive", receive, NULL, &t,
                                     NULL) > 0);
  assert_true(th_wait_stats(f->m, f->base, "w", all_done, NULL, 10.0));

  /* The summary: a top-level member after the pools, as the source wrote
     it; ?pretty is the same document. */
  char *text, *pretty;
  json_t *j = thread_pools(f, "/health/thread-pools", &text);
  json_t *jp = thread_pools(f, "/health/thread-pools?pretty", &pretty);
  assert_true(
      json_equal(json_object_get(j, "redis"), json_object_get(jp, "redis")));
  const char *tail = ",\"redis\":{\"connected\":true,\"stream\":\"jobs\","
                     "\"received\":3}}\n";
  assert_string_equal(text + strlen(text) - strlen(tail), tail);
  assert_non_null(strstr(text, "{\"summary\":"));
  assert_non_null(strstr(pretty, "\n  \"redis\": {\n    \"connected\": "
                                 "true,\n    \"stream\": \"jobs\",\n"));
  json_decref(jp);
  json_decref(j);
  free(pretty);
  free(text);
  /* One pool alone is unchanged; a NULL object leaves the member out. */
  j = thread_pools(f, "/health/thread-pools/w", &text);
  assert_null(strstr(text, "redis"));
  json_decref(j);
  free(text);
  atomic_store(&t.hidden, true);
  j = thread_pools(f, "/health/thread-pools", &text);
  assert_null(json_object_get(j, "redis"));
  assert_non_null(json_object_get(j, "pools"));
  json_decref(j);
  free(text);

  /* /health: ok, degraded while the source says so, then ok again. */
  int status;
  char reasons[256];
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 200);
  atomic_store(&t.connected, false);
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 503);
  assert_string_equal(reasons, "-:redis_unreachable ");
  th_response_t r = call(f, "GET", "/health", NULL, NULL);
  assert_string_equal(r.body, "{\"status\":\"degraded\",\"reasons\":["
                              "{\"reason\":\"redis_unreachable\",\"message\":"
                              "\"cannot reach 127.0.0.1:6379\"}]}\n");
  th_response_free(&r);
  atomic_store(&t.connected, true);
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 200);

  /* /metrics: the source's families after tpool's, and promtool reads the
     whole text. */
  r = call(f, "GET", "/metrics", NULL, NULL);
  assert_int_equal(r.status, 200);
  const char *own = strstr(r.body, "# HELP tpool_circuit_breaker_refused");
  const char *theirs = strstr(r.body, "\ntest_redis_received_total 3\n");
  assert_true(own && theirs && own < theirs);
  assert_non_null(strstr(r.body, "\ntest_redis_connected 1\n"));
  th_assert_promtool_accepts(r.body);
  th_response_free(&r);
  atomic_store(&t.metrics_fail, true);
  r = call(f, "GET", "/metrics", NULL, NULL);
  assert_json_error(&r, 500);
  th_response_free(&r);
  teardown(f);
}

static void test_http_add_source_refuses_bad_ones(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  test_source_t t = {0};
  tpool_http_source_t src = source_of(&t);
  assert_int_equal(tpool_http_add_source(NULL, &src), -EINVAL);
  assert_int_equal(tpool_http_add_source(f->routes, NULL), -EINVAL);
  char longest[TPOOL_HTTP_SOURCE_NAME_MAX + 1];
  memset(longest, 'a', TPOOL_HTTP_SOURCE_NAME_MAX);
  longest[TPOOL_HTTP_SOURCE_NAME_MAX] = '\0';
  const char *const bad[] = {NULL,          "",     "Redis", "re-dis", "re dis",
                             "caf\xc3\xa9", longest};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    src.name = bad[i];
    assert_int_equal(tpool_http_add_source(f->routes, &src), -EINVAL);
  }
  src.name = "redis";
  assert_int_equal(tpool_http_add_source(f->routes, &src), 0);
  static const char *const taken[] = {"redis", "summary", "pools"};
  for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
    src.name = taken[i];
    assert_int_equal(tpool_http_add_source(f->routes, &src), -EEXIST);
  }
  /* The name is copied; sources without callbacks add nothing. */
  longest[TPOOL_HTTP_SOURCE_NAME_MAX - 1] = '\0';
  tpool_http_source_t quiet = {.name = longest};
  assert_int_equal(tpool_http_add_source(f->routes, &quiet), 0);
  longest[0] = 'b';
  for (int i = 2; i < TPOOL_HTTP_SOURCES_MAX; i++) {
    char name[8];
    snprintf(name, sizeof(name), "s%d", i);
    quiet.name = name;
    assert_int_equal(tpool_http_add_source(f->routes, &quiet), 0);
  }
  quiet.name = "one_more";
  assert_int_equal(tpool_http_add_source(f->routes, &quiet), -ENOSPC);
  char *text;
  json_t *j = thread_pools(f, "/health/thread-pools", &text);
  assert_int_equal(json_object_size(j), 3); /* summary, pools, redis */
  json_decref(j);
  free(text);
  teardown(f);
}

/* The builders with a source: its object and reason, compact and pretty. */
static void test_http_source_json_keeps_its_shape(void **state) {
  (void)state;
  tpool_stats_t s;
  tpool_pool_stats_t ps;
  tpool_active_task_t at;
  sample_snapshot(&s, &ps, &at);
  ps.stuck_now = 0;
  ps.last_reject_age_s = -1;
  test_source_t t = {0};
  atomic_store(&t.received, 7);
  tpool__sources_t src = {.n = 1};
  src.at[0] = source_of(&t);

  tpool__json_out_t w;
  tpool__json_out_init(&w, true);
  tpool__json_thread_pools(&w, &s, &src);
  char *text = written(&w);
  const char *tail = "\n  },\n  \"redis\": {\n    \"connected\": false,\n"
                     "    \"stream\": \"jobs\",\n    \"received\": 7\n  }\n}";
  assert_string_equal(text + strlen(text) - strlen(tail), tail);
  free(text);

  tpool__json_out_init(&w, false);
  assert_int_equal(tpool__json_health(&w, &s, NULL, 0, &src), 503);
  text = written(&w);
  assert_string_equal(text, "{\"status\":\"degraded\",\"reasons\":["
                            "{\"reason\":\"redis_unreachable\",\"message\":"
                            "\"cannot reach 127.0.0.1:6379\"}]}");
  free(text);
}

static void test_http_dashboard_draws_sources(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  th_response_t r = call(f, "GET", "/dashboard", NULL, NULL);
  assert_int_equal(r.status, 200);
  static const char *const parts[] = {"<div id=\"sources\"></div>",
                                      "function drawSources(data)",
                                      "drawSources(data);",
                                      "redis: ['connected', 'stream', 'group'",
                                      "'dead_lettered', 'duplicates']",
                                      "k === 'connected' && !v ? 'bad'",
                                      "<section id=\"schedules\" hidden>",
                                      "fetch('/health/schedules'",
                                      "function drawSchedules(data)",
                                      "$('schedules').hidden = !all.length;",
                                      "['run-now', s.paused ? 'resume'",
                                      "const e = p.last_error;"};
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
    if (!strstr(r.body, parts[i]))
      fail_msg("the dashboard lacks %s", parts[i]);
  th_response_free(&r);
  teardown(f);
}

/* ---- schedules and a pool's last error ---------------------------------- */

/* A hand-built schedule snapshot with every kind of value. */
static void sample_schedule(tpool_schedule_stats_t *st) {
  memset(st, 0, sizeof(*st));
  strcpy(st->name, "nightly");
  strcpy(st->pool, "io");
  strcpy(st->task_name, "cleanup");
  st->every_s = 5;
  st->jitter = 0.1;
  st->overlap = TPOOL_OVERLAP_SKIP;
  st->alert_after = 3;
  st->next_run_in_s = 1.2344;
  st->running = 1;
  st->runs = 10;
  st->ok = 7;
  st->failed = 1;
  st->cancelled = 1;
  st->skipped = 2;
  st->has_last = true;
  st->last_status = -ETIMEDOUT;
  st->last_duration_s = 0.25;
  st->last_run_age_s = 3.5;
  st->last_success_unix = 1765152000.0;
}

static void test_http_schedule_json_keeps_its_shape(void **state) {
  (void)state;
  tpool_schedule_stats_t st[2];
  sample_schedule(&st[0]);
  sample_schedule(&st[1]);
  strcpy(st[1].name, "new");
  st[1].paused = true;
  st[1].overlap = TPOOL_OVERLAP_QUEUE;
  st[1].has_last = false;
  st[1].last_run_age_s = -1;
  st[1].next_run_in_s = -1;
  st[1].running = 0;
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_schedules(&w, st, 2);
  char *text = written(&w);
  static const char want[] =
      "{\"schedules\":{\"nightly\":{\"pool\":\"io\",\"task\":\"cleanup\","
      "\"every_s\":5.0,\"jitter\":0.1,\"overlap\":\"skip\","
      "\"next_run_in_s\":1.234,\"runs\":10,\"ok\":7,\"skipped\":2,"
      "\"failed\":1,\"cancelled\":1,\"last_status\":\"expired\","
      "\"last_duration_s\":0.25,\"last_run_age_s\":3.5,\"running\":1,"
      "\"paused\":false,\"alert_after\":3,\"stale\":false,"
      "\"lateness_s\":{\"count\":0,\"mean\":0.0,\"p50\":0.0,\"p90\":0.0,"
      "\"p99\":0.0,\"max\":0.0}},"
      "\"new\":{\"pool\":\"io\",\"task\":\"cleanup\","
      "\"every_s\":5.0,\"jitter\":0.1,\"overlap\":\"queue\","
      "\"next_run_in_s\":null,\"runs\":10,\"ok\":7,\"skipped\":2,"
      "\"failed\":1,\"cancelled\":1,\"last_status\":null,"
      "\"last_duration_s\":null,\"last_run_age_s\":null,\"running\":0,"
      "\"paused\":true,\"alert_after\":3,\"stale\":false,"
      "\"lateness_s\":{\"count\":0,\"mean\":0.0,\"p50\":0.0,\"p90\":0.0,"
      "\"p99\":0.0,\"max\":0.0}}}}";
  if (strcmp(text, want) != 0)
    fail_msg("wrote  %s\nwanted %s", text, want);
  free(text);
  tpool__json_out_init(&w, false);
  tpool__json_schedules(&w, NULL, 0);
  text = written(&w);
  assert_string_equal(text, "{\"schedules\":{}}");
  free(text);

  /* A stale schedule degrades /health, with its pool, beside the pools'
     own reasons. */
  tpool_stats_t s;
  tpool_pool_stats_t ps;
  tpool_active_task_t at;
  sample_snapshot(&s, &ps, &at);
  ps.stuck_now = 0;
  ps.last_reject_age_s = -1;
  st[0].stale = true;
  tpool__json_out_init(&w, false);
  assert_int_equal(tpool__json_health(&w, &s, st, 2, NULL), 503);
  text = written(&w);
  assert_string_equal(text, "{\"status\":\"degraded\",\"reasons\":["
                            "{\"pool\":\"io\",\"reason\":\"schedule_stale\","
                            "\"message\":\"schedule \\\"nightly\\\" has had no "
                            "successful run in 3 intervals of 5s\"}]}");
  free(text);
  st[0].stale = false;
  tpool__json_out_init(&w, false);
  assert_int_equal(tpool__json_health(&w, &s, st, 2, NULL), 200);
  tpool__json_out_destroy(&w);
}

/* What the schedules' work functions share with the test. */
typedef struct sched_work {
  atomic_int ran;
  atomic_bool fail; /* return -EIO with a message */
  th_gate_t *gate;  /* when set, each run waits there */
} sched_work_t;

static int sched_work(void *arg) {
  sched_work_t *sw = arg;
  atomic_fetch_add(&sw->ran, 1);
  if (sw->gate)
    th_gate_pass(sw->gate);
  if (atomic_load(&sw->fail)) {
    tpool_task_set_error("the backup disk is full");
    return -EIO;
  }
  return 0;
}

static tpool_schedule_t *make_schedule(fixture_t *f, const char *name,
                                       const char *pool, double every_s,
                                       bool first_now, unsigned alert_after,
                                       sched_work_t *sw) {
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.base = f->base;
  o.every_s = every_s;
  o.first_now = first_now;
  o.alert_after = alert_after;
  tpool_schedule_t *s = NULL;
  assert_int_equal(
      tpool_schedule_new(f->m, name, tpool_manager_pool(f->m, pool),
                         "sched_task", sched_work, NULL, NULL, sw, &o, &s),
      0);
  return s;
}

static tpool_schedule_stats_t schedule_stats(fixture_t *f, const char *name) {
  tpool_schedule_stats_t st;
  assert_int_equal(tpool_manager_schedule_stats(f->m, name, &st), 0);
  return st;
}

/* Waits for a schedule's snapshot to pass a test. */
typedef struct sched_wait {
  fixture_t *f;
  const char *name;
  uint64_t runs, ended; /* runs >= runs and ok + failed >= ended */
  int running;          /* >= 0: running == this */
  bool stale;
} sched_wait_t;

static bool sched_reached(void *arg) {
  sched_wait_t *w = arg;
  tpool_schedule_stats_t st = schedule_stats(w->f, w->name);
  return st.runs >= w->runs && st.ok + st.failed >= w->ended &&
         (w->running < 0 || st.running == (unsigned)w->running) &&
         (!w->stale || st.stale);
}

static void wait_schedule(fixture_t *f, const char *name, uint64_t runs,
                          uint64_t ended, int running, bool stale) {
  sched_wait_t w = {f, name, runs, ended, running, stale};
  if (!th_run_until(f->base, sched_reached, &w, 20.0)) {
    tpool_schedule_stats_t st = schedule_stats(f, name);
    fail_msg("schedule %s: runs %" PRIu64 ", ok %" PRIu64 ", failed %" PRIu64
             ", running %u, stale %d",
             name, st.runs, st.ok, st.failed, st.running, st.stale);
  }
}

/* A JSON answer's body with `status`; the caller releases it. */
static json_t *json_call(fixture_t *f, const char *method, const char *path,
                         const char *const *headers, int status) {
  th_response_t r = call(f, method, path, headers, NULL);
  if (r.status != status)
    fail_msg("%s %s: %d, want %d: %s", method, path, r.status, status, r.body);
  json_t *j = th_json(&r);
  th_response_free(&r);
  return j;
}

static void test_http_schedules_routes(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  json_t *j = json_call(f, "GET", "/health/schedules", NULL, 200);
  assert_int_equal(json_object_size(json_object_get(j, "schedules")), 0);
  assert_int_equal(json_object_size(j), 1);
  json_decref(j);

  sched_work_t tick = {0}, other = {0};
  make_schedule(f, "tick", "w", 0.05, true, 0, &tick);
  make_schedule(f, "a-first", "w", 600, false, 0, &other);
  wait_schedule(f, "tick", 3, 3, -1, false);

  /* The list, in name order, each with the members of the contract and
     their types. */
  j = json_call(f, "GET", "/health/schedules", NULL, 200);
  json_t *all = json_object_get(j, "schedules");
  assert_int_equal(json_object_size(all), 2);
  const char *first = json_object_iter_key(json_object_iter(all));
  assert_string_equal(first, "a-first");
  json_t *t = json_object_get(all, "tick");
  static const char *const members[] = {"pool",
                                        "task",
                                        "every_s",
                                        "jitter",
                                        "overlap",
                                        "next_run_in_s",
                                        "runs",
                                        "ok",
                                        "skipped",
                                        "failed",
                                        "cancelled",
                                        "last_status",
                                        "last_duration_s",
                                        "last_run_age_s",
                                        "running",
                                        "paused",
                                        "alert_after",
                                        "stale",
                                        "lateness_s"};
  assert_int_equal(json_object_size(t), sizeof(members) / sizeof(*members));
  for (size_t i = 0; i < sizeof(members) / sizeof(*members); i++)
    if (!json_object_get(t, members[i]))
      fail_msg("no member %s", members[i]);
  assert_string_equal(json_string_value(json_object_get(t, "pool")), "w");
  assert_string_equal(json_string_value(json_object_get(t, "task")),
                      "sched_task");
  assert_true(json_real_value(json_object_get(t, "every_s")) == 0.05);
  assert_string_equal(json_string_value(json_object_get(t, "overlap")), "skip");
  assert_true(json_is_real(json_object_get(t, "next_run_in_s")));
  assert_true(json_integer_value(json_object_get(t, "runs")) >= 3);
  assert_true(json_integer_value(json_object_get(t, "ok")) >= 3);
  assert_true(json_is_integer(json_object_get(t, "skipped")));
  assert_int_equal(json_integer_value(json_object_get(t, "failed")), 0);
  assert_string_equal(json_string_value(json_object_get(t, "last_status")),
                      "ok");
  assert_true(json_is_real(json_object_get(t, "last_duration_s")));
  assert_true(json_is_real(json_object_get(t, "last_run_age_s")));
  assert_true(json_is_integer(json_object_get(t, "running")));
  assert_true(json_is_false(json_object_get(t, "paused")));
  assert_true(json_is_false(json_object_get(t, "stale")));
  assert_true(json_integer_value(json_object_get(
                  json_object_get(t, "lateness_s"), "count")) >= 3);
  /* One that has not run yet: nulls. */
  json_t *a = json_object_get(all, "a-first");
  assert_true(json_is_null(json_object_get(a, "last_status")));
  assert_true(json_is_null(json_object_get(a, "last_duration_s")));
  assert_true(json_is_null(json_object_get(a, "last_run_age_s")));
  assert_int_equal(json_integer_value(json_object_get(a, "runs")), 0);
  json_decref(j);

  /* One schedule alone is its object; an unknown one a 404 naming it. */
  j = json_call(f, "GET", "/health/schedules/tick", NULL, 200);
  assert_int_equal(json_object_size(j), sizeof(members) / sizeof(*members));
  assert_string_equal(json_string_value(json_object_get(j, "task")),
                      "sched_task");
  json_decref(j);
  th_response_t r = call(f, "GET", "/health/schedules/nope", NULL, NULL);
  assert_json_error(&r, 404);
  assert_non_null(strstr(r.body, "no schedule named \\\"nope\\\""));
  th_response_free(&r);
  r = call(f, "POST", "/health/schedules/nope/pause", NULL, NULL);
  assert_json_error(&r, 404);
  assert_non_null(strstr(r.body, "\\\"nope\\\""));
  th_response_free(&r);
  r = call(f, "POST", "/health/schedules/tick/explode", NULL, NULL);
  assert_json_error(&r, 404);
  th_response_free(&r);

  /* Wrong methods: 405 with Allow. */
  r = call(f, "GET", "/health/schedules/tick/run-now", NULL, NULL);
  assert_json_error(&r, 405);
  assert_string_equal(th_response_header(&r, "Allow"), "POST");
  th_response_free(&r);
  r = call(f, "POST", "/health/schedules/tick", NULL, NULL);
  assert_json_error(&r, 405);
  assert_string_equal(th_response_header(&r, "Allow"), "GET, HEAD");
  th_response_free(&r);
  r = call(f, "POST", "/health/schedules", NULL, NULL);
  assert_json_error(&r, 405);
  th_response_free(&r);

  /* Pause: no more runs once those in flight are over. */
  j = json_call(f, "POST", "/health/schedules/tick/pause", NULL, 200);
  assert_string_equal(json_string_value(json_object_get(j, "schedule")),
                      "tick");
  assert_true(json_is_true(json_object_get(j, "paused")));
  json_decref(j);
  wait_schedule(f, "tick", 0, 0, 0, false);
  tpool_schedule_stats_t st = schedule_stats(f, "tick");
  assert_true(st.paused);
  th_run_until(f->base, NULL, NULL, 0.3);
  assert_int_equal(schedule_stats(f, "tick").runs, st.runs);
  j = json_call(f, "GET", "/health/schedules/tick", NULL, 200);
  assert_true(json_is_true(json_object_get(j, "paused")));
  assert_true(json_is_null(json_object_get(j, "next_run_in_s")));
  json_decref(j);

  /* Run now, paused or not: one run, its task id in the answer. */
  j = json_call(f, "POST", "/health/schedules/tick/run-now", NULL, 202);
  assert_string_equal(json_string_value(json_object_get(j, "schedule")),
                      "tick");
  assert_true(json_integer_value(json_object_get(j, "task_id")) > 0);
  json_decref(j);
  wait_schedule(f, "tick", st.runs + 1, st.ok + st.failed + 1, 0, false);
  th_run_until(f->base, NULL, NULL, 0.2);
  assert_int_equal(schedule_stats(f, "tick").runs, st.runs + 1);

  /* Resume: runs again. */
  j = json_call(f, "POST", "/health/schedules/tick/resume", NULL, 200);
  assert_true(json_is_false(json_object_get(j, "paused")));
  json_decref(j);
  wait_schedule(f, "tick", st.runs + 3, 0, -1, false);
  assert_false(schedule_stats(f, "tick").paused);

  /* /metrics: the schedules' series, labelled. */
  r = call(f, "GET", "/metrics", NULL, NULL);
  assert_int_equal(r.status, 200);
  static const char *const series[] = {
      "\ntpool_schedule_runs_total{schedule=\"tick\",pool=\"w\"} ",
      "\ntpool_schedule_skipped_total{schedule=\"tick\",pool=\"w\"} ",
      "\ntpool_schedule_failures_total{schedule=\"tick\",pool=\"w\"} 0\n",
      "\ntpool_schedule_last_success_timestamp_seconds{schedule=\"tick\","
      "pool=\"w\"} 1",
      "\ntpool_schedule_last_success_timestamp_seconds{schedule=\"a-first\","
      "pool=\"w\"} 0\n",
      "\ntpool_schedule_lateness_seconds_bucket{schedule=\"tick\",pool=\"w\","
      "le=\"+Inf\"} ",
      "\ntpool_schedule_lateness_seconds_count{schedule=\"tick\",pool=\"w\"} ",
      "\ntpool_pool_scheduled_tasks{pool=\"w\"} 0\n",
      "# TYPE tpool_schedule_lateness_seconds histogram\n"};
  for (size_t i = 0; i < sizeof(series) / sizeof(*series); i++)
    if (!strstr(r.body, series[i]))
      fail_msg("/metrics lacks %s", series[i]);
  th_response_free(&r);
  teardown(f);
}

/* run-now refused: 409 while a run is in flight (overlap skip), 503 with
   Retry-After when the pool refuses it; the token guards the POSTs. */
static void test_http_schedule_actions_refused(void **state) {
  (void)state;
  tpool_http_options_t ho;
  memset(&ho, 0, sizeof(ho));
  strcpy(ho.admin_token, "s3cret");
  fixture_t *f = setup(&ho, TPOOL_HTTP_NOT_FOUND, false);
  const char *const right[] = {"Authorization: Bearer s3cret", NULL};
  th_gate_t gate;
  th_gate_init(&gate);
  sched_work_t slow = {.gate = &gate}, onq = {0};
  make_schedule(f, "slow", "w", 600, true, 0, &slow);
  make_schedule(f, "onq", "q", 600, false, 0, &onq);
  wait_schedule(f, "slow", 1, 0, 1, false);

  th_response_t r =
      call(f, "POST", "/health/schedules/slow/run-now", NULL, NULL);
  assert_json_error(&r, 401);
  th_response_free(&r);
  r = call(f, "POST", "/health/schedules/slow/pause", NULL, NULL);
  assert_json_error(&r, 401);
  th_response_free(&r);
  assert_false(schedule_stats(f, "slow").paused);
  json_t *j = json_call(f, "GET", "/health/schedules/slow", NULL, 200);
  json_decref(j);

  r = call(f, "POST", "/health/schedules/slow/run-now", right, NULL);
  assert_json_error(&r, 409);
  assert_non_null(strstr(r.body, "slow"));
  th_response_free(&r);

  /* Pool "q" (one worker, a queue of one) full: the run is refused. */
  th_gate_t hold;
  th_gate_init(&hold);
  assert_true(tpool_manager_submit(f->m, "q", "hold", th_gate_work, NULL, &hold,
                                   NULL) > 0);
  unsigned one = 1;
  assert_true(th_wait_stats(f->m, f->base, "q", busy_is, &one, 10.0));
  assert_true(
      tpool_manager_submit(f->m, "q", "queued", th_noop, NULL, NULL, NULL) > 0);
  r = call(f, "POST", "/health/schedules/onq/run-now", right, NULL);
  assert_json_error(&r, 503);
  assert_string_equal(th_response_header(&r, "Retry-After"), "1");
  th_response_free(&r);
  th_gate_open(&hold);
  assert_true(th_wait_stats(f->m, f->base, "q", all_done, NULL, 10.0));
  j = json_call(f, "POST", "/health/schedules/onq/run-now", right, 202);
  json_decref(j);
  wait_schedule(f, "onq", 1, 1, 0, false);

  j = json_call(f, "POST", "/health/schedules/slow/pause", right, 200);
  assert_true(json_is_true(json_object_get(j, "paused")));
  json_decref(j);
  assert_true(schedule_stats(f, "slow").paused);
  th_gate_open(&gate);
  wait_schedule(f, "slow", 1, 1, 0, false);
  teardown(f);
  th_gate_destroy(&hold);
  th_gate_destroy(&gate);
}

static bool sched_fresh(void *arg) {
  sched_wait_t *w = arg;
  tpool_schedule_stats_t st = schedule_stats(w->f, w->name);
  return st.ok > 0 && !st.stale;
}

/* A schedule that keeps failing goes stale and degrades /health; a
   failing task is its pool's last error, null before. */
static void test_http_stale_schedule_and_last_error(void **state) {
  (void)state;
  fixture_t *f = setup(NULL, TPOOL_HTTP_NOT_FOUND, false);
  json_t *j = json_call(f, "GET", "/health/thread-pools/w", NULL, 200);
  assert_true(json_is_null(json_object_get(j, "last_error")));
  assert_int_equal(json_integer_value(json_object_get(j, "scheduled")), 0);
  json_decref(j);

  /* A delayed task counts as scheduled until cancelled. */
  tpool_task_opts_t to = {.delay_s = 60};
  int64_t later =
      tpool_manager_submit(f->m, "w", "later", th_noop, NULL, NULL, &to);
  assert_true(later > 0);
  j = json_call(f, "GET", "/health/thread-pools", NULL, 200);
  assert_int_equal(
      json_integer_value(json_object_get(
          json_object_get(json_object_get(j, "pools"), "w"), "scheduled")),
      1);
  json_decref(j);
  th_response_t r = call(f, "GET", "/metrics", NULL, NULL);
  assert_non_null(
      strstr(r.body, "\ntpool_pool_scheduled_tasks{pool=\"w\"} 1\n"));
  th_response_free(&r);
  assert_int_equal(tpool_manager_cancel(f->m, later), 0);

  sched_work_t bad = {0};
  atomic_store(&bad.fail, true);
  tpool_schedule_t *s = make_schedule(f, "backup", "w", 0.05, true, 2, &bad);
  wait_schedule(f, "backup", 0, 0, -1, true);
  int status;
  char reasons[256];
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 503);
  assert_non_null(strstr(reasons, "w:schedule_stale "));
  r = call(f, "GET", "/health", NULL, NULL);
  assert_non_null(strstr(r.body, "\"reason\":\"schedule_stale\",\"message\":"
                                 "\"schedule \\\"backup\\\" has had no"));
  th_response_free(&r);
  j = json_call(f, "GET", "/health/schedules/backup", NULL, 200);
  assert_true(json_is_true(json_object_get(j, "stale")));
  assert_string_equal(json_string_value(json_object_get(j, "last_status")),
                      "failed");
  assert_true(json_integer_value(json_object_get(j, "failed")) >= 1);
  json_decref(j);

  /* The pool's last error: the run's task, its word and its message. */
  j = json_call(f, "GET", "/health/thread-pools/w", NULL, 200);
  json_t *e = json_object_get(j, "last_error");
  assert_int_equal(json_object_size(e), 5);
  assert_true(json_integer_value(json_object_get(e, "id")) > 0);
  assert_string_equal(json_string_value(json_object_get(e, "name")),
                      "sched_task");
  assert_string_equal(json_string_value(json_object_get(e, "status")),
                      "failed");
  assert_string_equal(json_string_value(json_object_get(e, "message")),
                      "the backup disk is full");
  double age = json_real_value(json_object_get(e, "age_s"));
  assert_true(json_is_real(json_object_get(e, "age_s")) && age >= 0 &&
              age < 30);
  json_decref(j);

  /* Once it succeeds it is fresh again. */
  atomic_store(&bad.fail, false);
  sched_wait_t fresh = {f, "backup", 0, 0, -1, false};
  assert_true(th_run_until(f->base, sched_fresh, &fresh, 20.0));
  /* Gone, it degrades nothing. */
  tpool_schedule_cancel(s);
  health_reasons(f, &status, reasons, sizeof(reasons));
  assert_int_equal(status, 200);
  teardown(f);
}

int main(int argc, char **argv) {
  /* "promtool": the cases whose /metrics promtool checks (http_promtool). */
  if (th_promtool_mode(argc, argv)) {
    const struct CMUnitTest promtool[] = {
        cmocka_unit_test(test_http_source_reports_beside_the_pools),
    };
    return cmocka_run_group_tests(promtool, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_routes_live_beside_the_users_own),
      cmocka_unit_test(test_http_attach_refuses_a_taken_path),
      cmocka_unit_test(test_http_errors_are_json_with_their_codes),
      cmocka_unit_test(test_http_admin_token_guards_post_routes),
      cmocka_unit_test(test_http_json_matches_the_snapshot),
      cmocka_unit_test(test_http_metrics_agree_with_the_json),
      cmocka_unit_test(test_http_healthy_manager_answers_ok),
      cmocka_unit_test(test_http_health_degrades_and_recovers),
      cmocka_unit_test(test_http_ready_follows_the_drain),
      cmocka_unit_test(test_http_task_names_round_trip),
      cmocka_unit_test(test_http_pool_json_keeps_its_shape),
      cmocka_unit_test(test_http_failed_body_answers_json_500),
      cmocka_unit_test(test_http_source_reports_beside_the_pools),
      cmocka_unit_test(test_http_add_source_refuses_bad_ones),
      cmocka_unit_test(test_http_source_json_keeps_its_shape),
      cmocka_unit_test(test_http_dashboard_draws_sources),
      cmocka_unit_test(test_http_schedule_json_keeps_its_shape),
      cmocka_unit_test(test_http_schedules_routes),
      cmocka_unit_test(test_http_schedule_actions_refused),
      cmocka_unit_test(test_http_stale_schedule_and_last_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
