/*
 * test_toolkit.c — the pool toolkit through the real tpool-server, as a
 * client sees it: retries (a "flaky" task that asks to run again), the
 * circuit breaker (503 while open, its state in the JSON, /metrics,
 * /health and the log, the reset route and its token), task lookup
 * (GET /tasks/{id} while running, when done, 404 once forgotten),
 * batches (a "count" of tasks run with bounded concurrency, one reply)
 * and futures (the --self-check the server runs before it listens).
 * Routing by name is in test_server.c; the demo work kinds in
 * test_demo.c.
 */
#include "server_harness.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define HTTP_LOCAL "[http]\nlisten = 127.0.0.1:0\n"
#define TOKEN "t0ken"
static const char *const auth[] = {"Authorization: Bearer " TOKEN, NULL};

/* Before it listens, the server runs a task on every pool as a future,
   waited on from its main thread (the loop does not run yet). */
static void test_toolkit_self_check_with_futures(void **state) {
  fixture_t *fx = *state;
  write_config(fx,
               HTTP_LOCAL "[pool.io]\nworkers = 2\n[pool.db]\nworkers = 2\n");
  static const char *const flag[] = {"--self-check", NULL};
  server_t *s = server_start_args(fx, flag);
  assert_int_equal(log_count(s, "Self-check: 5 of 5 pools ran a task"), 1);
  assert_int_equal(log_count(s, "WARN"), 0);
  /* The futures count in their pools like any task. */
  json_t *db = get_pool(fx, s, "db");
  assert_int_equal(jint(db, "completed"), 1);
  json_decref(db);
  server_stop_ok(s);
}

static void test_toolkit_retries(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL "[pool.io]\nworkers = 2\nretry_attempts = 3\n"
                              "retry_backoff = 0.01\n");
  server_t *s = server_start(fx);
  /* Two requests for a retry, then success: three attempts. */
  json_t *j = call_json(fx, s, "POST", "/tasks/io", NULL,
                        "{\"work\":\"flaky\",\"failures\":2}", 200);
  assert_string_equal(jstr(j, "status"), "ok");
  assert_int_equal(jint(j, "attempts"), 3);
  json_decref(j);
  /* More than the pool allows: the last status is the retry request. */
  th_response_t r;
  call(fx, s, "POST", "/tasks/io", NULL, "{\"work\":\"flaky\",\"failures\":5}",
       &r);
  expect_status(&r, 500);
  j = th_json(&r);
  assert_string_equal(jstr(j, "status"), "failed");
  assert_int_equal(jint(j, "attempts"), 3);
  assert_non_null(strstr(jstr(j, "error"), "retried"));
  json_decref(j);
  th_response_free(&r);
  /* The task's own limit. */
  j = call_json(fx, s, "POST", "/tasks/io", NULL,
                "{\"work\":\"flaky\",\"failures\":5,\"attempts\":6}", 200);
  assert_int_equal(jint(j, "attempts"), 6);
  json_decref(j);
  call_error(fx, s, "POST", "/tasks/io", NULL,
             "{\"work\":\"sleep\",\"attempts\":0}", 400, "attempts:");
  json_t *io = get_pool(fx, s, "io");
  assert_int_equal(jint(io, "retries"), 2 + 2 + 5);
  assert_int_equal(jint(io, "retrying"), 0);
  assert_int_equal(jint(io, "completed"), 2);
  assert_int_equal(jint(io, "failed"), 1);
  json_decref(io);
  server_stop_ok(s);
}

/* The db pool's breaker state, from its JSON. */
static char *breaker_state(fixture_t *fx, server_t *s) {
  json_t *db = get_pool(fx, s, "db");
  char *state = strdup(jstr(jobj(db, "circuit_breaker"), "state"));
  json_decref(db);
  return state;
}

static void wait_breaker(fixture_t *fx, server_t *s, const char *want) {
  for (int i = 0; i < (int)(WAIT_S * 20); i++) {
    char *state = breaker_state(fx, s);
    bool ok = strcmp(state, want) == 0;
    free(state);
    if (ok)
      return;
    nap_ms(50);
  }
  fail_msg("the breaker never became %s", want);
}

static void fail_db_tasks(fixture_t *fx, server_t *s, int n) {
  for (int i = 0; i < n; i++) {
    th_response_t r;
    call(fx, s, "POST", "/tasks/db", auth, "{\"work\":\"fail\"}", &r);
    expect_status(&r, 500);
    th_response_free(&r);
  }
}

static void test_toolkit_circuit_breaker(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL "admin_token = " TOKEN "\n"
                              "[pool.db]\nworkers = 2\nbreaker_window = 4\n"
                              "breaker_threshold = 0.5\nbreaker_cooldown = 3\n"
                              "breaker_trials = 1\n");
  server_t *s = server_start(fx);
  json_t *db = get_pool(fx, s, "db");
  json_t *cb = jobj(db, "circuit_breaker");
  assert_true(json_is_true(json_object_get(cb, "enabled")));
  assert_string_equal(jstr(cb, "state"), "closed");
  assert_int_equal(jint(cb, "window"), 4);
  json_decref(db);

  /* Four failures open it: the next task is refused with 503. */
  fail_db_tasks(fx, s, 4);
  wait_log(s, "Circuit breaker open: 4 of the last 4 tasks failed", 1);
  th_response_t r;
  call(fx, s, "POST", "/tasks/db", auth, "{\"work\":\"sleep\"}", &r);
  expect_error(&r, 503, "circuit breaker open");
  assert_non_null(th_response_header(&r, "Retry-After"));
  th_response_free(&r);
  db = get_pool(fx, s, "db");
  cb = jobj(db, "circuit_breaker");
  if (strcmp(jstr(cb, "state"), "open") == 0) /* unless 3 s have passed */
    assert_true(jnum(cb, "open_remaining_s") > 0);
  assert_int_equal(jint(cb, "refused"), 1);
  assert_int_equal(jint(cb, "opened"), 1);
  assert_int_equal(jint(db, "rejected"), 1);
  json_decref(db);
  call(fx, s, "GET", "/metrics", NULL, NULL, &r);
  expect_status(&r, 200);
  assert_non_null(strstr(
      r.body,
      "tpool_circuit_breaker_transitions_total{pool=\"db\",to=\"open\"} 1\n"));
  assert_non_null(
      strstr(r.body, "tpool_circuit_breaker_refused_total{pool=\"db\"} 1\n"));
  th_response_free(&r);

  /* After the cooldown one trial passes and closes it. */
  wait_breaker(fx, s, "half_open");
  call(fx, s, "GET", "/health", NULL, NULL, &r);
  expect_status(&r, 503);
  assert_non_null(strstr(r.body, "circuit_open"));
  th_response_free(&r);
  json_decref(call_json(fx, s, "POST", "/tasks/db", auth,
                        "{\"work\":\"sleep\",\"ms\":1}", 200));
  wait_breaker(fx, s, "closed");
  wait_log(s, "Circuit breaker closed: 1 trial task(s) succeeded", 1);

  /* Open again, then closed by hand: the token is needed. */
  fail_db_tasks(fx, s, 4);
  call(fx, s, "POST", "/health/thread-pools/db/reset-circuit-breaker", NULL,
       NULL, &r);
  expect_status(&r, 401);
  th_response_free(&r);
  json_t *j =
      call_json(fx, s, "POST", "/health/thread-pools/db/reset-circuit-breaker",
                auth, NULL, 200);
  assert_string_equal(jstr(j, "state"), "closed");
  assert_string_equal(jstr(j, "pool"), "db");
  json_decref(j);
  wait_log(s, "Circuit breaker closed by hand", 1);
  json_decref(call_json(fx, s, "POST", "/tasks/db", auth,
                        "{\"work\":\"sleep\",\"ms\":1}", 200));
  call_error(fx, s, "POST", "/health/thread-pools/cpu/reset-circuit-breaker",
             auth, NULL, 409, "no circuit breaker");
  call_error(fx, s, "POST", "/health/thread-pools/nope/reset-circuit-breaker",
             auth, NULL, 404, "no pool named");
  call_error(fx, s, "GET", "/health/thread-pools/db/reset-circuit-breaker",
             NULL, NULL, 405, NULL);
  server_stop_ok(s);
}

/* One POST of a long sleep on cpu, sent by a load so the loop can look
   at the task while it runs. */
static bool one_long_task(size_t n, th_request_t *req, void *arg) {
  (void)arg;
  if (n > 0)
    return false;
  static const char body[] =
      "{\"name\":\"long\",\"work\":\"sleep\",\"ms\":800}";
  req->method = "POST";
  req->path = "/tasks/cpu";
  req->headers = NULL;
  req->body = body;
  req->body_len = sizeof(body) - 1;
  return true;
}

static void test_toolkit_task_lookup(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL "[pool.cpu]\nworkers = 1\ntask_history = 4\n");
  server_t *s = server_start(fx);
  th_load_t *l =
      th_load_start(fx->base, s->port, 1, 1, one_long_task, NULL, NULL);
  json_int_t id = 0;
  for (int i = 0; i < (int)(WAIT_S * 20) && id == 0; i++) {
    json_t *cpu = get_pool(fx, s, "cpu"); /* runs the loop: the load goes */
    json_t *task = json_array_get(json_object_get(cpu, "active_tasks"), 0);
    if (task)
      id = jint(task, "id");
    json_decref(cpu);
    if (!id)
      nap_ms(10);
  }
  assert_true(id > 0);
  char path[64];
  snprintf(path, sizeof(path), "/tasks/%" JSON_INTEGER_FORMAT, id);
  json_t *j = get_json(fx, s, path);
  assert_int_equal(jint(j, "id"), id);
  assert_string_equal(jstr(j, "pool"), "cpu");
  assert_string_equal(jstr(j, "name"), "long");
  assert_string_equal(jstr(j, "state"), "running");
  assert_true(jnum(j, "run_s") >= 0);
  json_decref(j);
  run_load(s, l);
  assert_int_equal(th_load_stats(l)->by_status[200], 1);
  th_load_free(l);

  j = get_json(fx, s, path);
  assert_string_equal(jstr(j, "state"), "done");
  assert_string_equal(jstr(j, "status"), "ok");
  assert_int_equal(jint(j, "attempts"), 1);
  assert_true(jnum(j, "run_s") >= 0.7);
  json_decref(j);

  /* Four more finished tasks push it out of a history of four. */
  for (int i = 0; i < 4; i++)
    json_decref(call_json(fx, s, "POST", "/tasks/cpu", NULL,
                          "{\"work\":\"fail\"}", 500));
  call_error(fx, s, "GET", path, NULL, NULL, 404, "no task #");
  call_error(fx, s, "GET", "/tasks/abc", NULL, NULL, 400, "id:");
  call_error(fx, s, "GET", "/tasks/0", NULL, NULL, 400, "id:");
  call_error(fx, s, "DELETE", path, NULL, NULL, 405, NULL);
  server_stop_ok(s);
}

static void test_toolkit_batch(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL "[pool.io]\nworkers = 4\n");
  server_t *s = server_start(fx);
  json_t *j = call_json(fx, s, "POST", "/tasks/io", NULL,
                        "{\"work\":\"sleep\",\"ms\":20,\"count\":12,"
                        "\"concurrency\":3}",
                        200);
  assert_string_equal(jstr(j, "status"), "ok");
  json_t *st = json_object_get(j, "statuses");
  assert_true(json_is_array(st));
  assert_int_equal(json_array_size(st), 12);
  for (size_t i = 0; i < 12; i++)
    assert_string_equal(json_string_value(json_array_get(st, i)), "ok");
  /* At most 3 at a time: 12 tasks of 20 ms take 4 rounds or more. */
  assert_true(jnum(j, "elapsed_s") >= 0.075);
  json_decref(j);
  j = call_json(fx, s, "POST", "/tasks/io", NULL,
                "{\"work\":\"fail\",\"count\":3,\"concurrency\":8}", 500);
  assert_string_equal(jstr(j, "status"), "failed");
  assert_int_equal(json_array_size(json_object_get(j, "statuses")), 3);
  json_decref(j);
  json_t *io = get_pool(fx, s, "io");
  assert_int_equal(jint(io, "completed"), 12);
  assert_int_equal(jint(io, "failed"), 3);
  json_decref(io);
  call_error(fx, s, "POST", "/tasks/io", NULL,
             "{\"work\":\"sleep\",\"count\":0}", 400, "count:");
  call_error(fx, s, "POST", "/tasks/io", NULL,
             "{\"work\":\"sleep\",\"count\":2,\"concurrency\":0}", 400,
             "concurrency:");
  server_stop_ok(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_toolkit_self_check_with_futures,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_toolkit_retries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_toolkit_circuit_breaker, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_toolkit_task_lookup, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_toolkit_batch, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
