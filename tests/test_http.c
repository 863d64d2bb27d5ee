/*
 * test_http.c — tpool's routes attached to a user's own evhttp, in one
 * process: the user's routes keep working beside tpool's, every body is
 * JSON that matches the stats snapshot, errors carry their status codes,
 * the admin token guards POST routes, /health degrades for stuck tasks and
 * full queues, and the limits answer 413. The client runs on the same
 * event_base as the server, as a user's own requests to itself would.
 */
#include "helpers.h"
#include "http_client.h"
#include "http_internal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>

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

static uint16_t bound_port(struct evhttp_bound_socket *bs) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  assert_int_equal(
      getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &len),
      0);
  return ntohs(sa.sin_port);
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
  struct evhttp_bound_socket *bs =
      evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
  assert_non_null(bs);
  f->port = bound_port(bs);
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_routes_live_beside_the_users_own),
      cmocka_unit_test(test_http_attach_refuses_a_taken_path),
      cmocka_unit_test(test_http_errors_are_json_with_their_codes),
      cmocka_unit_test(test_http_admin_token_guards_post_routes),
      cmocka_unit_test(test_http_json_matches_the_snapshot),
      cmocka_unit_test(test_http_metrics_agree_with_the_json),
      cmocka_unit_test(test_http_healthy_manager_answers_ok),
      cmocka_unit_test(test_http_health_degrades_and_recovers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
