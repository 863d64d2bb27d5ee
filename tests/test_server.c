/*
 * test_server.c — the real tpool-server binary, driven over HTTP on
 * 127.0.0.1 as a user would: a bad config file stops it with exit status
 * 2; it logs every pool it starts; every route (GET /ping too) and every
 * error status answers as docs/server.md says, with and without an admin
 * token; 5000 requests over the five pools leave counters that match what
 * the client saw, in the JSON and in /metrics; promtool accepts /metrics
 * taken under load (the promtool run: server_promtool); SIGHUP reloads the file
 * (or keeps the running configuration when it is bad); [schedule.NAME]
 * sections run from the start and change on SIGHUP (removed, paused,
 * retimed, added, made anew; a bad one refuses the reload, or the start);
 * a task with "delay_s" is looked up as "scheduled" and answered after its
 * delay, and bad delays get 400; SIGTERM during load answers every
 * accepted request, also those of keep-alive clients that go on
 * sending through the drain, and exits 0; clients that send slowly harm nothing
 * (clients that hang up early: test_reliability.c).
 *
 * Each case writes a config file into a mkdtemp() directory, spawns the
 * server (path in $TPOOL_SERVER) with its stderr on a pipe that a reader
 * thread collects, and learns the port from the "Listening on" line. The
 * teardown kills any server a failed case left behind. Every wait is
 * bounded by WAIT_S, which only a failure reaches.
 */
#include "server_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

static const char *const pools[] = {"io", "cpu", "inference", "embedding",
                                    "db"};
#define NPOOLS 5

/* A small version of the five pools, so that loads queue up. */
#define SMALL_POOLS                                                            \
  "[pool.io]\nworkers = 4\n"                                                   \
  "[pool.cpu]\nworkers = 4\n"                                                  \
  "[pool.inference]\nworkers = 2\n"                                            \
  "[pool.embedding]\nworkers = 2\n"                                            \
  "[pool.db]\nworkers = 3\n"
static const int small_sizes[NPOOLS] = {4, 4, 2, 2, 3};

#define HTTP_LOCAL "[http]\nlisten = 127.0.0.1:0\n"

/* ---- bad configs ----------------------------------------------------------
 */

static void test_server_bad_config_exits_2(void **state) {
  fixture_t *fx = *state;
  char where[256];
  /* Line 4 holds the bad value. */
  snprintf(where, sizeof(where), "%s:4: [pool.cpu] workers", fx->config);
  expect_refused_start(
      fx, "[general]\nverbose = false\n[pool.cpu]\nworkers = abc\n" HTTP_LOCAL,
      NULL, (const char *const[]){where, "\"abc\"", NULL});

  snprintf(where, sizeof(where), "%s:4: [general] bogus", fx->config);
  expect_refused_start(fx, HTTP_LOCAL "[general]\nbogus = 1\n", NULL,
                       (const char *const[]){where, "unknown key", NULL});

  snprintf(where, sizeof(where), "%s:1: [nope]", fx->config);
  expect_refused_start(fx, "[nope]\n" HTTP_LOCAL, NULL,
                       (const char *const[]){where, "unknown section", NULL});

  /* A log file that cannot be opened: a config error too, with the key. */
  snprintf(where, sizeof(where), "%s: [general] log", fx->config);
  expect_refused_start(fx,
                       HTTP_LOCAL "[general]\nlog = /nonexistent/dir/x.log\n",
                       NULL, (const char *const[]){where, "cannot open", NULL});

  /* An unknown command-line option. */
  expect_refused_start(fx, HTTP_LOCAL, (const char *const[]){"--bogus", NULL},
                       (const char *const[]){"usage", NULL});

  /* A file that is not there. */
  char missing[192];
  snprintf(missing, sizeof(missing), "%s/missing.ini", fx->dir);
  expect_refused_start(fx, HTTP_LOCAL,
                       (const char *const[]){"-c", missing, NULL},
                       (const char *const[]){missing, NULL});
}

/* ---- startup --------------------------------------------------------------
 */

/* The shipped config.ini, on port 0. */
static void write_shipped_config(fixture_t *fx) {
  const char *root = getenv("TPOOL_SOURCE_ROOT");
  if (!root)
    fail_msg("TPOOL_SOURCE_ROOT is not set: run this test with meson test");
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/config.ini", root);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char text[16384], line[512];
  size_t len = 0;
  bool replaced = false;
  while (fgets(line, sizeof(line), f)) {
    const char *out = line;
    if (strncmp(line, "listen", 6) == 0) {
      out = "listen = 127.0.0.1:0\n";
      replaced = true;
    }
    size_t n = strlen(out);
    assert_true(len + n < sizeof(text));
    memcpy(text + len, out, n);
    len += n;
  }
  fclose(f);
  text[len] = '\0';
  assert_true(replaced);
  write_file(fx->config, text);
}

static void test_server_startup_logs_every_pool(void **state) {
  fixture_t *fx = *state;
  write_shipped_config(fx);
  server_t *s = server_start(fx);
  static const int sizes[NPOOLS] = {50, 30, 20, 15, 25};
  char *text = log_copy(s);
  for (int i = 0; i < NPOOLS; i++) {
    char any[64], line[64];
    snprintf(any, sizeof(any), "ThreadPool[%s] Started ", pools[i]);
    snprintf(line, sizeof(line), "ThreadPool[%s] Started %d workers", pools[i],
             sizes[i]);
    if (count_in(text, any) != 1 || count_in(text, line) != 1) {
      print_log(s);
      fail_msg("expected one line \"%s\"", line);
    }
  }
  free(text);

  json_t *j = get_json(fx, s, "/health/thread-pools");
  json_t *summary = jobj(j, "summary");
  assert_int_equal(jint(summary, "total_workers"), 140);
  json_t *ps = jobj(j, "pools");
  assert_int_equal(json_object_size(ps), NPOOLS);
  for (int i = 0; i < NPOOLS; i++)
    assert_int_equal(jint(jobj(ps, pools[i]), "max_workers"), sizes[i]);
  json_decref(j);
  server_stop_ok(s);
}

/* ---- routes ---------------------------------------------------------------
 */

/* Checks the fields clients rely on in one pool's JSON. */
static void check_pool_shape(const json_t *p, const char *name, int size) {
  assert_string_equal(jstr(p, "name"), name);
  assert_int_equal(jint(p, "max_workers"), size);
  assert_int_equal(jint(p, "min_workers"), size);
  json_int_t current = jint(p, "current_workers");
  json_int_t active = jint(p, "active_threads");
  json_int_t idle = jint(p, "idle_threads");
  assert_true(current >= 0 && current <= size);
  assert_true(active >= 0 && idle >= 0 && active + idle <= current);
  assert_true(jint(p, "queued_tasks") >= 0);
  assert_true(jint(p, "queue_limit") > 0);
  double util = jnum(p, "utilization_percent");
  assert_true(util >= 0 && util <= 100);
  static const char *const counters[] = {"submitted", "rejected",  "completed",
                                         "failed",    "cancelled", "expired"};
  for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
    assert_true(jint(p, counters[i]) >= 0);
  static const char *const latencies[] = {"run_time_s", "queue_wait_s"};
  for (size_t i = 0; i < 2; i++) {
    json_t *l = jobj(p, latencies[i]);
    assert_true(jint(l, "count") >= 0);
    double p50 = jnum(l, "p50"), p90 = jnum(l, "p90"), p99 = jnum(l, "p99");
    assert_true(p50 >= 0 && p50 <= p90 && p90 <= p99);
    assert_true(jnum(l, "max") >= 0 && jnum(l, "mean") >= 0);
  }
  assert_true(json_is_array(json_object_get(p, "active_tasks")));
}

static void write_small_config(fixture_t *fx, const char *extra) {
  write_config(fx, HTTP_LOCAL "%s\n" SMALL_POOLS, extra);
}

static void test_server_health_routes(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);

  json_t *j = get_json(fx, s, "/health");
  json_t *want = json_pack("{s:s}", "status", "ok");
  assert_true(json_equal(j, want));
  json_decref(want);
  json_decref(j);

  th_response_t r;
  call(fx, s, "HEAD", "/health", NULL, NULL, &r);
  expect_status(&r, 200);
  assert_int_equal(r.body_len, 0);
  th_response_free(&r);

  j = get_json(fx, s, "/health/thread-pools");
  json_t *summary = jobj(j, "summary"), *ps = jobj(j, "pools");
  assert_int_equal(json_object_size(ps), NPOOLS);
  json_int_t workers = 0, active = 0, queued = 0;
  for (int i = 0; i < NPOOLS; i++) {
    json_t *p = jobj(ps, pools[i]);
    check_pool_shape(p, pools[i], small_sizes[i]);
    workers += jint(p, "current_workers");
    active += jint(p, "active_threads");
    queued += jint(p, "queued_tasks");
  }
  assert_int_equal(jint(summary, "total_workers"), workers);
  assert_int_equal(jint(summary, "total_active"), active);
  assert_int_equal(jint(summary, "total_queued"), queued);
  double util = jnum(summary, "utilization_percent");
  assert_true(util >= 0 && util <= 100);
  json_decref(j);

  j = get_pool(fx, s, "cpu");
  check_pool_shape(j, "cpu", 4);
  json_decref(j);

  /* ?pretty indents. */
  call(fx, s, "GET", "/health/thread-pools/db?pretty", NULL, NULL, &r);
  expect_status(&r, 200);
  assert_non_null(strstr(r.body, "\n  \"max_workers\": 3"));
  th_response_free(&r);

  call(fx, s, "GET", "/metrics", NULL, NULL, &r);
  expect_status(&r, 200);
  const char *type = th_response_header(&r, "Content-Type");
  assert_non_null(type);
  if (strncmp(type, "text/plain", 10) != 0 || !strstr(type, "version=0.0.4"))
    fail_msg("/metrics Content-Type: %s", type);
  assert_non_null(strstr(r.body, "\ntpool_pool_workers_max{pool=\"db\"} 3\n"));
  th_response_free(&r);

  size_t tables = log_count(s, "ThreadPoolManager Current Status:");
  j = call_json(fx, s, "POST", "/health/thread-pools/log-status", NULL, NULL,
                200);
  assert_string_equal(jstr(j, "status"), "ok");
  json_decref(j);
  wait_log(s, "ThreadPoolManager Current Status:", tables + 1);
  wait_log(s, "Total: ", 1);
  server_stop_ok(s);
}

static void test_server_ping_route(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);

  th_response_t r;
  call(fx, s, "GET", "/ping", NULL, NULL, &r);
  expect_status(&r, 200);
  assert_string_equal(th_response_header(&r, "Content-Type"),
                      "application/json");
  assert_string_equal(r.body, "{\"ok\":true}\n");
  json_t *j = th_json(&r);
  assert_true(json_is_true(json_object_get(j, "ok")));
  json_decref(j);
  th_response_free(&r);

  call(fx, s, "HEAD", "/ping", NULL, NULL, &r);
  expect_status(&r, 200);
  assert_int_equal(r.body_len, 0);
  th_response_free(&r);

  /* Any other method: 405 with Allow, a JSON error like every route's. */
  static const char *const wrong[] = {"POST", "DELETE"};
  for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
    call(fx, s, wrong[i], "/ping", NULL, i == 0 ? "{}" : NULL, &r);
    expect_error(&r, 405, "GET, HEAD");
    const char *allow = th_response_header(&r, "Allow");
    if (!allow || strcmp(allow, "GET, HEAD") != 0)
      fail_msg("%s /ping: Allow %s", wrong[i], allow ? allow : "missing");
    th_response_free(&r);
  }
  server_stop_ok(s);
}

/* Sends `request` as is on a raw socket; returns the answer. */
static th_response_t raw_request(server_t *s, const char *request) {
  th_response_t r;
  if (th_raw_http(s->port, request, strlen(request), WAIT_S, &r) != 0 ||
      r.status == 0) {
    print_log(s);
    fail_msg("no answer to %s", request);
  }
  return r;
}

/* Paths that cannot be decoded get a JSON 400 that says why, and versions
   other than HTTP/1.0 and 1.1 a JSON 505 on an HTTP/1.1 status line, on
   every route of the server: the task routes, /ping, tpool's routes and
   the 404 of no route. */
static void test_server_bad_paths_and_versions(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);
  char request[512];

  static const struct {
    const char *method, *path, *needle;
  } paths[] = {
      {"GET", "/tasks/%ff", "not valid UTF-8"},
      {"POST", "/tasks/cpu%zz", "bad percent-encoding at byte 10"},
      {"POST", "/tasks/%c3", "not valid UTF-8"},
      {"GET", "/tasks/1%00", "%00 (a NUL byte) at byte 8"},
      {"GET", "/ping%ff", "not valid UTF-8"},
      {"GET", "/ping%", "bad percent-encoding"},
      {"GET", "/\xff\xfe", "not valid UTF-8 at byte 1"},
      {"GET", "/nowhere/%e2%82", "not valid UTF-8"},
      {"GET", "/health/thread-pools/%c3", "not valid UTF-8"},
      {"GET", "/health%00", "%00"},
  };
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    snprintf(request, sizeof(request),
             "%s %s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
             paths[i].method, paths[i].path);
    th_response_t r = raw_request(s, request);
    expect_error(&r, 400, paths[i].needle);
    th_response_free(&r);
  }

  static const char *const routes[] = {
      "GET /ping",       "GET /health", "GET /tasks/1",
      "GET /nowhere",    "GET /%zz",    "GET /metrics",
      "POST /tasks/cpu", "POST /tasks", "POST /health/thread-pools/log-status"};
  static const char *const versions[] = {"HTTP/1.19", "HTTP/1.2", "HTTP/0.9"};
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
      snprintf(request, sizeof(request),
               "%s %s\r\nHost: a\r\nContent-Length: 23\r\n\r\n"
               "{\"work\":\"sleep\",\"ms\":0}",
               routes[i], versions[v]);
      th_response_t r = raw_request(s, request);
      if (strcmp(r.version, "HTTP/1.1") != 0)
        fail_msg("%s %s: answered on %s", routes[i], versions[v], r.version);
      assert_string_equal(th_response_header(&r, "Connection"), "close");
      expect_error(&r, 505, "is not supported");
      th_response_free(&r);
    }
  }

  /* No task ran, and the server serves on. */
  json_t *all = get_json(fx, s, "/health/thread-pools");
  json_t *summary = jobj(all, "summary");
  assert_int_equal(jint(summary, "total_active"), 0);
  json_decref(all);
  th_response_t r = raw_request(s, "GET /ping HTTP/1.0\r\n\r\n");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.version, "HTTP/1.0");
  th_response_free(&r);
  server_stop_ok(s);
}

static void test_server_error_statuses(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "max_header_size = 1K\nmax_body_size = 1K\n");
  server_t *s = server_start(fx);

  call_error(fx, s, "GET", "/health/thread-pools/nope", NULL, NULL, 404,
             "nope");
  call_error(fx, s, "GET", "/nope", NULL, NULL, 404, "/nope");
  call_error(fx, s, "GET", "/", NULL, NULL, 404, NULL);
  call_error(fx, s, "POST", "/tasks/nope", NULL, "{\"work\":\"sleep\"}", 404,
             "nope");
  /* POST /tasks picks the pool by name ([routes]): none given, none
     routed. */
  call_error(fx, s, "POST", "/tasks", NULL, "{\"work\":\"sleep\"}", 400,
             "name: required");
  call_error(fx, s, "POST", "/tasks", NULL,
             "{\"name\":\"x\",\"work\":\"sleep\"}", 404, "no route");
  call_error(fx, s, "POST", "/tasks/a/b", NULL, "{\"work\":\"sleep\"}", 404,
             "POST /tasks/{pool}");

  /* Known paths, wrong methods. */
  static const struct {
    const char *method, *path, *allow;
  } wrong[] = {
      {"POST", "/health", "GET, HEAD"},
      {"DELETE", "/metrics", "GET, HEAD"},
      {"PUT", "/health/thread-pools", "GET, HEAD"},
      {"POST", "/health/thread-pools/cpu", "GET, HEAD"},
      {"GET", "/health/thread-pools/log-status", "POST"},
      {"GET", "/tasks/cpu", "POST"},
      {"PATCH", "/tasks/cpu", "POST"},
      {"OPTIONS", "/health", "GET, HEAD"},
  };
  for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
    th_response_t r;
    call(fx, s, wrong[i].method, wrong[i].path, NULL, NULL, &r);
    expect_error(&r, 405, NULL);
    const char *allow = th_response_header(&r, "Allow");
    if (!allow || strcmp(allow, wrong[i].allow) != 0)
      fail_msg("%s %s: Allow %s, expected %s", wrong[i].method, wrong[i].path,
               allow ? allow : "missing", wrong[i].allow);
    th_response_free(&r);
  }

  /* Over [http] max_header_size: 413 in JSON. */
  char big[1600] = "X-Filler: ";
  memset(big + 10, 'a', sizeof(big) - 11);
  big[sizeof(big) - 1] = '\0';
  call_error(fx, s, "GET", "/health", (const char *const[]){big, NULL}, NULL,
             413, "max_header_size");
  /* Over max_body_size: 413 in JSON, and nothing submitted. */
  char body[1500];
  memset(body, ' ', sizeof(body) - 1);
  body[0] = '{';
  body[sizeof(body) - 2] = '}';
  body[sizeof(body) - 1] = '\0';
  call_error(fx, s, "POST", "/tasks/cpu", NULL, body, 413, "max_body_size");
  /* Far over the limits too (libevent's own caps are higher). */
  char huge_body[5000];
  memset(huge_body, ' ', sizeof(huge_body) - 1);
  huge_body[0] = '{';
  huge_body[sizeof(huge_body) - 2] = '}';
  huge_body[sizeof(huge_body) - 1] = '\0';
  th_response_t r;
  call(fx, s, "POST", "/tasks/cpu", NULL, huge_body, &r);
  expect_status(&r, 413);
  th_response_free(&r);

  json_t *cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "submitted"), 0);
  json_decref(cpu);
  server_stop_ok(s);
}

/* The answer of a task must name its pool and say how it went. */
static void check_task_answer(const th_response_t *r, int status,
                              const char *pool, const char *name,
                              const char *word) {
  expect_status(r, status);
  json_t *j = th_json(r);
  assert_true(jint(j, "id") > 0);
  assert_string_equal(jstr(j, "pool"), pool);
  assert_string_equal(jstr(j, "name"), name);
  assert_string_equal(jstr(j, "status"), word);
  assert_true(jnum(j, "queue_wait_s") >= 0);
  assert_true(jnum(j, "run_s") >= 0);
  json_decref(j);
}

static void test_server_task_route(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);

  th_response_t r;
  call(fx, s, "POST", "/tasks/cpu", NULL,
       "{\"name\":\"resize_image\",\"work\":\"sleep\",\"ms\":20}", &r);
  check_task_answer(&r, 200, "cpu", "resize_image", "ok");
  json_t *j = th_json(&r);
  assert_true(jnum(j, "run_s") >= 0.019); /* it slept 20 ms */
  json_decref(j);
  th_response_free(&r);

  call(fx, s, "POST", "/tasks/cpu", NULL, "{\"work\":\"spin\",\"ms\":3}", &r);
  check_task_answer(&r, 200, "cpu", "task", "ok");
  th_response_free(&r);

  /* A failing work function: 500, and the outcome says so. */
  call(fx, s, "POST", "/tasks/cpu", NULL,
       "{\"name\":\"doomed\",\"work\":\"fail\",\"ms\":1}", &r);
  check_task_answer(&r, 500, "cpu", "doomed", "failed");
  th_response_free(&r);

  /* Bad requests name the field at fault; none is submitted. */
  static const struct {
    const char *body, *field;
  } bad[] = {
      {"{\"work\":", "body"},
      {"not json", "body"},
      {"[1,2]", "body"},
      {"", "body"},
      {"{\"work\":\"sleep\",\"ms\":60001}", "ms"},
      {"{\"work\":\"sleep\",\"ms\":-1}", "ms"},
      {"{\"work\":\"sleep\",\"ms\":\"5\"}", "ms"},
      {"{\"work\":\"sleep\",\"ms\":1.5}", "ms"},
      {"{\"work\":\"nap\"}", "work"},
      {"{\"ms\":5}", "work"},
      {"{\"work\":\"sleep\",\"name\":\"\"}", "name"},
      {"{\"work\":\"sleep\",\"colour\":\"red\"}", "colour"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    call_error(fx, s, "POST", "/tasks/cpu", NULL, bad[i].body, 400,
               bad[i].field);

  json_t *cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "submitted"), 3);
  assert_int_equal(jint(cpu, "completed"), 2);
  assert_int_equal(jint(cpu, "failed"), 1);
  assert_int_equal(jint(jobj(cpu, "run_time_s"), "count"), 3);
  json_decref(cpu);
  server_stop_ok(s);
}

/* ---- loads ----------------------------------------------------------------
 */

/* One task request per call, as described by the load's fields. */
typedef struct task_load {
  const char *const *pools; /* request n goes to pools[n % npools] */
  size_t npools;
  unsigned sleep_ms; /* when set, every task sleeps this long */
  bool short_mixed;  /* else: sleep or spin 0..2 ms */
  const char *const *headers;
  char body[128]; /* of the request being made */
  char path[64];
  /* What the client saw, per pool (by index in `pools`). */
  size_t started[NPOOLS + 1];
  size_t ok[NPOOLS + 1];
  size_t bad_answers; /* 200s whose JSON did not match the request */
  size_t retry_after; /* 429s that carried Retry-After */
} task_load_t;

static bool task_next(size_t n, th_request_t *req, void *arg) {
  task_load_t *t = arg;
  size_t p = n % t->npools;
  unsigned ms = t->sleep_ms;
  const char *work = "sleep";
  if (t->short_mixed) {
    ms = (unsigned)(n / 7 % 3);
    work = n / t->npools % 2 ? "spin" : "sleep";
  }
  snprintf(t->path, sizeof(t->path), "/tasks/%s", t->pools[p]);
  int len = snprintf(t->body, sizeof(t->body),
                     "{\"name\":\"load_%zu\",\"work\":\"%s\",\"ms\":%u}", n,
                     work, ms);
  req->method = "POST";
  req->path = t->path;
  req->headers = t->headers;
  req->body = t->body;
  req->body_len = (size_t)len;
  t->started[p]++;
  return true;
}

static void task_answer(size_t n, const th_response_t *r, void *arg) {
  task_load_t *t = arg;
  size_t p = n % t->npools;
  if (r->status == 429 && th_response_header(r, "Retry-After"))
    t->retry_after++;
  if (r->status != 200)
    return;
  t->ok[p]++;
  json_error_t err;
  json_t *j = json_loadb(r->body, r->body_len, 0, &err);
  char name[32];
  snprintf(name, sizeof(name), "load_%zu", n);
  json_t *jp = json_object_get(j, "pool"), *jn = json_object_get(j, "name"),
         *js = json_object_get(j, "status");
  if (!j || !json_is_string(jp) || !json_is_string(jn) || !json_is_string(js) ||
      strcmp(json_string_value(jp), t->pools[p]) != 0 ||
      strcmp(json_string_value(jn), name) != 0 ||
      strcmp(json_string_value(js), "ok") != 0)
    t->bad_answers++;
  json_decref(j);
}

/* Polls /health/thread-pools/{pool}, running the loop between polls, until
   a task runs there; returns that answer (caller json_decref()s). */
static json_t *wait_running_task(fixture_t *fx, server_t *s, const char *pool) {
  struct timespec start;
  th_now(&start);
  for (;;) {
    json_t *p = get_pool(fx, s, pool);
    json_t *active = json_object_get(p, "active_tasks");
    assert_true(json_is_array(active));
    if (json_array_size(active) > 0)
      return p;
    json_decref(p);
    if (th_elapsed(&start) > WAIT_S) {
      print_log(s);
      fail_msg("no task ever ran in pool %s", pool);
    }
    th_run_until(fx->base, NULL, NULL, 0.005);
  }
}

static void test_server_full_queue_answers_429(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "[pool.tiny]\nworkers = 1\nqueue_limit = 1\n");
  server_t *s = server_start(fx);

  /* One task runs; of five more sent at once, one waits in the queue and
     four are refused at once. */
  static const char *const tiny[] = {"tiny"};
  task_load_t first = {.pools = tiny, .npools = 1, .sleep_ms = 800};
  th_load_t *l1 =
      th_load_start(fx->base, s->port, 1, 1, task_next, task_answer, &first);
  json_decref(wait_running_task(fx, s, "tiny"));
  task_load_t t = {.pools = tiny, .npools = 1, .sleep_ms = 800};
  th_load_t *l =
      th_load_start(fx->base, s->port, 5, 5, task_next, task_answer, &t);
  run_load(s, l);
  run_load(s, l1);
  assert_int_equal(th_load_stats(l1)->by_status[200], 1);
  const th_load_stats_t *st = th_load_stats(l);
  if (st->answered != 5 || st->by_status[200] != 1 || st->by_status[429] != 4) {
    print_load(st);
    fail_msg("expected one 200 and four 429s");
  }
  assert_int_equal(t.retry_after, 4);
  assert_int_equal(t.bad_answers + first.bad_answers, 0);
  th_load_free(l);
  th_load_free(l1);

  json_t *p = get_pool(fx, s, "tiny");
  assert_int_equal(jint(p, "submitted"), 6);
  assert_int_equal(jint(p, "rejected"), 4);
  assert_int_equal(jint(p, "completed"), 2);
  assert_int_equal(jint(p, "queue_limit"), 1);
  json_decref(p);

  /* A pool that refused work just now makes /health degraded. */
  json_t *h = call_json(fx, s, "GET", "/health", NULL, NULL, 503);
  assert_string_equal(jstr(h, "status"), "degraded");
  json_t *reasons = json_object_get(h, "reasons");
  assert_true(json_is_array(reasons) && json_array_size(reasons) >= 1);
  json_t *reason = json_array_get(reasons, 0);
  assert_string_equal(jstr(reason, "pool"), "tiny");
  assert_string_equal(jstr(reason, "reason"), "rejecting");
  json_decref(h);
  server_stop_ok(s);
}

static void test_server_running_task_is_listed(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);

  static const char *const db[] = {"db"};
  task_load_t t = {.pools = db, .npools = 1, .sleep_ms = 1000};
  th_load_t *l =
      th_load_start(fx->base, s->port, 1, 1, task_next, task_answer, &t);
  /* th_http() runs the loop, so the load goes on while we look. */
  json_t *p = wait_running_task(fx, s, "db");
  json_t *task = json_array_get(json_object_get(p, "active_tasks"), 0);
  assert_true(jint(task, "id") > 0);
  assert_string_equal(jstr(task, "name"), "load_0");
  double running = jnum(task, "running_for_s");
  assert_true(running >= 0 && running < WAIT_S);
  assert_true(json_is_false(json_object_get(task, "stuck")));
  assert_int_equal(jint(p, "active_threads"), 1);
  assert_true(jnum(p, "utilization_percent") > 0);
  char line[64];
  snprintf(line, sizeof(line), "Task #%" JSON_INTEGER_FORMAT ": load_0",
           jint(task, "id"));
  json_decref(p);

  json_t *all = get_json(fx, s, "/health/thread-pools");
  assert_true(jint(jobj(all, "summary"), "total_active") >= 1);
  json_decref(all);
  /* The status table lists it too. */
  json_decref(call_json(fx, s, "POST", "/health/thread-pools/log-status", NULL,
                        NULL, 200));
  wait_log(s, line, 1);

  run_load(s, l);
  assert_int_equal(th_load_stats(l)->by_status[200], 1);
  th_load_free(l);
  server_stop_ok(s);
}

/* ---- the admin token ------------------------------------------------------
 */

static void test_server_admin_token(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "admin_token = s3cret\n");
  server_t *s = server_start(fx);
  const char *const none[] = {NULL};
  const char *const wrong[] = {"Authorization: Bearer s3cre", NULL};
  const char *const basic[] = {"Authorization: Basic s3cret", NULL};
  const char *const right[] = {"Authorization: Bearer s3cret", NULL};
  static const char task[] = "{\"work\":\"sleep\",\"ms\":1}";

  /* Refused without the token, and the refusal does nothing. */
  const char *const *refused[] = {none, wrong, basic};
  for (size_t i = 0; i < 3; i++) {
    th_response_t r;
    call(fx, s, "POST", "/health/thread-pools/log-status", refused[i], NULL,
         &r);
    expect_error(&r, 401, NULL);
    assert_non_null(th_response_header(&r, "WWW-Authenticate"));
    th_response_free(&r);
    call(fx, s, "POST", "/tasks/cpu", refused[i], task, &r);
    expect_error(&r, 401, NULL);
    th_response_free(&r);
  }
  /* Anything a refused request logged would come before this line. */
  assert_int_equal(kill(s->pid, SIGHUP), 0);
  wait_log(s, "Configuration reloaded", 1);
  assert_int_equal(log_count(s, "Current Status:"), 0);
  json_t *cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "submitted"), 0);
  json_decref(cpu);

  /* Accepted with it. */
  json_decref(call_json(fx, s, "POST", "/health/thread-pools/log-status", right,
                        NULL, 200));
  wait_log(s, "ThreadPoolManager Current Status:", 1);
  json_int_t id = 0;
  assert_int_equal(post_task(fx, s, "cpu", task, right, &id), 200);
  assert_true(id > 0);

  /* Reading needs no token. */
  static const char *const reads[] = {"/health", "/health/thread-pools",
                                      "/health/thread-pools/cpu", "/metrics"};
  for (size_t i = 0; i < 4; i++) {
    th_response_t r;
    call(fx, s, "GET", reads[i], NULL, NULL, &r);
    expect_status(&r, 200);
    th_response_free(&r);
  }
  cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "submitted"), 1);
  json_decref(cpu);
  server_stop_ok(s);
}

/* ---- counters under load --------------------------------------------------
 */

/* The value of sample `name{labels}` in a /metrics text; fails the test if
   it is missing. */
static double metric(const char *text, const char *name, const char *labels) {
  char head[256];
  snprintf(head, sizeof(head), "\n%s{%s} ", name, labels);
  const char *at = strstr(text, head);
  if (!at)
    fail_msg("/metrics has no sample %s{%s}", name, labels);
  return strtod(at + strlen(head), NULL);
}

/* Asserts that /metrics says what the JSON of the same idle server says. */
static void check_metrics_match(const char *text, const json_t *all) {
  static const struct {
    const char *metric, *field;
  } same[] = {
      {"tpool_pool_workers", "current_workers"},
      {"tpool_pool_workers_busy", "active_threads"},
      {"tpool_pool_workers_idle", "idle_threads"},
      {"tpool_pool_workers_max", "max_workers"},
      {"tpool_pool_workers_min", "min_workers"},
      {"tpool_pool_queued_tasks", "queued_tasks"},
      {"tpool_pool_queue_limit", "queue_limit"},
      {"tpool_tasks_submitted_total", "submitted"},
      {"tpool_tasks_rejected_total", "rejected"},
      {"tpool_tasks_completed_total", "completed"},
      {"tpool_tasks_failed_total", "failed"},
      {"tpool_tasks_cancelled_total", "cancelled"},
      {"tpool_tasks_expired_total", "expired"},
  };
  json_t *ps = jobj(all, "pools");
  for (int i = 0; i < NPOOLS; i++) {
    json_t *p = jobj(ps, pools[i]);
    char label[64], inf[96];
    snprintf(label, sizeof(label), "pool=\"%s\"", pools[i]);
    snprintf(inf, sizeof(inf), "pool=\"%s\",le=\"+Inf\"", pools[i]);
    for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); k++) {
      double m = metric(text, same[k].metric, label);
      json_int_t v = jint(p, same[k].field);
      if (m != (double)v)
        fail_msg(
            "pool %s: %s is %.17g but the JSON's %s is %" JSON_INTEGER_FORMAT,
            pools[i], same[k].metric, m, same[k].field, v);
    }
    static const struct {
      const char *metric, *field;
    } hist[] = {{"tpool_task_run_seconds", "run_time_s"},
                {"tpool_task_queue_wait_seconds", "queue_wait_s"}};
    for (size_t k = 0; k < 2; k++) {
      char count[96], bucket[96], sum[96];
      snprintf(count, sizeof(count), "%s_count", hist[k].metric);
      snprintf(bucket, sizeof(bucket), "%s_bucket", hist[k].metric);
      snprintf(sum, sizeof(sum), "%s_sum", hist[k].metric);
      json_t *l = jobj(p, hist[k].field);
      json_int_t n = jint(l, "count");
      assert_true(metric(text, count, label) == (double)n);
      assert_true(metric(text, bucket, inf) == (double)n);
      double s = metric(text, sum, label), mean = jnum(l, "mean");
      assert_true(fabs(s - mean * (double)n) <= 1e-6 + 1e-6 * s);
    }
    double util = metric(text, "tpool_pool_utilization_ratio", label);
    assert_true(fabs(util * 100 - jnum(p, "utilization_percent")) <= 0.051);
  }
}

static char *get_metrics(fixture_t *fx, server_t *s) {
  th_response_t r;
  call(fx, s, "GET", "/metrics", NULL, NULL, &r);
  expect_status(&r, 200);
  char *text = r.body;
  r.body = NULL;
  th_response_free(&r);
  return text;
}

static void test_server_load_counters_match(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);

  enum { TOTAL = 5000, CONCURRENCY = 20 };
  task_load_t t = {.pools = pools, .npools = NPOOLS, .short_mixed = true};
  th_load_t *l = th_load_start(fx->base, s->port, CONCURRENCY, TOTAL, task_next,
                               task_answer, &t);
  run_load(s, l);
  const th_load_stats_t *st = th_load_stats(l);
  if (st->sent != TOTAL || st->answered != TOTAL ||
      st->by_status[200] != TOTAL) {
    print_load(st);
    fail_msg("expected %d requests sent and answered 200", TOTAL);
  }
  assert_int_equal(t.bad_answers, 0);
  th_load_free(l);

  json_t *all = wait_quiescent(fx, s);
  json_t *ps = jobj(all, "pools");
  for (int i = 0; i < NPOOLS; i++) {
    json_t *p = jobj(ps, pools[i]);
    assert_int_equal(t.started[i], TOTAL / NPOOLS);
    if (jint(p, "submitted") != (json_int_t)t.started[i] ||
        jint(p, "completed") != (json_int_t)t.ok[i] ||
        jint(p, "rejected") != 0 || jint(p, "failed") != 0 ||
        jint(p, "cancelled") != 0 || jint(p, "expired") != 0 ||
        jint(p, "queued_tasks") != 0 || jint(p, "active_threads") != 0 ||
        jint(jobj(p, "run_time_s"), "count") != (json_int_t)t.ok[i] ||
        jint(jobj(p, "queue_wait_s"), "count") != (json_int_t)t.ok[i])
      fail_msg("pool %s: sent %zu, answered 200 %zu, but the server says "
               "%s",
               pools[i], t.started[i], t.ok[i],
               json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(6)));
  }
  char *text = get_metrics(fx, s);
  check_metrics_match(text, all);
  free(text);
  json_decref(all);
  server_stop_ok(s);
}

/* ---- promtool -------------------------------------------------------------
 */

static void test_server_promtool_accepts_metrics_under_load(void **state) {
  fixture_t *fx = *state;
  write_config(fx,
               HTTP_LOCAL "[pool.io]\nworkers = 2\n[pool.cpu]\nworkers = 2\n"
                          "[pool.inference]\nworkers = 2\n"
                          "[pool.embedding]\nworkers = 2\n"
                          "[pool.db]\nworkers = 2\n");
  server_t *s = server_start(fx);

  /* 20 connections on 10 workers: tasks run and queue while we scrape. */
  enum { TOTAL = 1000 };
  task_load_t t = {.pools = pools, .npools = NPOOLS, .sleep_ms = 5};
  th_load_t *l =
      th_load_start(fx->base, s->port, 20, TOTAL, task_next, task_answer, &t);
  double busy_seen = 0;
  for (size_t at = 200; at < TOTAL; at += 300) {
    run_load_until_started(fx, s, l, at);
    char *text = get_metrics(fx, s);
    for (int i = 0; i < NPOOLS; i++) {
      char label[64];
      snprintf(label, sizeof(label), "pool=\"%s\"", pools[i]);
      busy_seen += metric(text, "tpool_pool_workers_busy", label) +
                   metric(text, "tpool_pool_queued_tasks", label);
    }
    th_assert_promtool_accepts(text);
    free(text);
  }
  assert_true(busy_seen > 0); /* the scrapes did see work in progress */
  run_load(s, l);
  assert_int_equal(th_load_stats(l)->by_status[200], TOTAL);
  th_load_free(l);

  char *text = get_metrics(fx, s);
  th_assert_promtool_accepts(text);
  free(text);
  server_stop_ok(s);
}

/* ---- SIGHUP ---------------------------------------------------------------
 */

#define RELOAD_POOLS(cpu)                                                      \
  "[pool.io]\nworkers = 4\n[pool.cpu]\nworkers = " cpu "\n"                    \
  "[pool.inference]\nworkers = 2\n[pool.embedding]\nworkers = 2\n"             \
  "[pool.db]\nworkers = 3\n"

/* Sends SIGHUP and waits for the reload's log line (the n-th of its kind). */
static void reload(server_t *s, const char *line, size_t n) {
  assert_int_equal(kill(s->pid, SIGHUP), 0);
  wait_log(s, line, n);
}

/* Posts a task to cpu and returns its id; then makes sure everything its
   request logged is in our copy of the log, by waiting for a status table
   written after it. */
static json_int_t task_then_mark(fixture_t *fx, server_t *s) {
  json_int_t id = 0;
  assert_int_equal(
      post_task(fx, s, "cpu", "{\"work\":\"sleep\",\"ms\":1}", NULL, &id), 200);
  size_t tables = log_count(s, "ThreadPoolManager Current Status:");
  json_decref(call_json(fx, s, "POST", "/health/thread-pools/log-status", NULL,
                        NULL, 200));
  wait_log(s, "ThreadPoolManager Current Status:", tables + 1);
  return id;
}

static bool summary_verbose(fixture_t *fx, server_t *s) {
  json_t *j = get_json(fx, s, "/health/thread-pools");
  bool v = json_is_true(json_object_get(jobj(j, "summary"), "verbose"));
  json_decref(j);
  return v;
}

static void test_server_sighup_reloads_config(void **state) {
  fixture_t *fx = *state;
  write_config(fx, "[general]\nverbose = false\n" HTTP_LOCAL RELOAD_POOLS("4"));
  server_t *s = server_start(fx);
  char line[96];

  /* A task logs nothing while verbose is off. */
  json_int_t id = task_then_mark(fx, s);
  snprintf(line, sizeof(line),
           "ThreadPool[cpu] Task #%" JSON_INTEGER_FORMAT ":", id);
  assert_int_equal(log_count(s, line), 0);

  /* verbose = true: task lines appear. */
  write_config(fx, "[general]\nverbose = true\n" HTTP_LOCAL RELOAD_POOLS("4"));
  reload(s, "Configuration reloaded", 1);
  assert_true(summary_verbose(fx, s));
  id = task_then_mark(fx, s);
  snprintf(line, sizeof(line),
           "INFO ThreadPool[cpu] Task #%" JSON_INTEGER_FORMAT ": Submitting",
           id);
  wait_log(s, line, 1);
  snprintf(line, sizeof(line),
           "ThreadPool[cpu] Task #%" JSON_INTEGER_FORMAT ": Completed in", id);
  wait_log(s, line, 1);

  /* verbose = false again, and cpu resized from 4 to 6 workers. */
  write_config(fx, "[general]\nverbose = false\n" HTTP_LOCAL RELOAD_POOLS("6"));
  reload(s, "Configuration reloaded", 2);
  assert_false(summary_verbose(fx, s));
  id = task_then_mark(fx, s);
  snprintf(line, sizeof(line),
           "ThreadPool[cpu] Task #%" JSON_INTEGER_FORMAT ":", id);
  assert_int_equal(log_count(s, line), 0);
  json_t *cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "max_workers"), 6);
  json_decref(cpu);

  /* A bad file: logged, and nothing changes (verbose stays off). */
  write_config(fx,
               "[general]\nverbose = true\n" HTTP_LOCAL RELOAD_POOLS("abc"));
  reload(s, "Config reload failed", 1);
  char where[256];
  snprintf(where, sizeof(where), "%s:8: [pool.cpu] workers", fx->config);
  wait_log(s, where, 1);
  assert_int_equal(log_count(s, "Configuration reloaded"), 2);
  json_t *h = get_json(fx, s, "/health");
  assert_string_equal(jstr(h, "status"), "ok");
  json_decref(h);
  assert_false(summary_verbose(fx, s));
  cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "max_workers"), 6);
  json_decref(cpu);
  id = task_then_mark(fx, s);
  snprintf(line, sizeof(line),
           "ThreadPool[cpu] Task #%" JSON_INTEGER_FORMAT ":", id);
  assert_int_equal(log_count(s, line), 0);
  server_stop_ok(s);
}

/* ---- schedules and delayed tasks ------------------------------------------
 */

/* A pool's counter from /health/thread-pools/{pool}. */
static json_int_t pool_count(fixture_t *fx, server_t *s, const char *pool,
                             const char *key) {
  json_t *p = get_pool(fx, s, pool);
  json_int_t n = jint(p, key);
  json_decref(p);
  return n;
}

/* Waits until the pool's counter `key` reaches `want`. */
static void wait_count(fixture_t *fx, server_t *s, const char *pool,
                       const char *key, json_int_t want) {
  struct timespec since;
  th_now(&since);
  json_int_t n;
  while ((n = pool_count(fx, s, pool, key)) < want) {
    if (th_elapsed(&since) > WAIT_S) {
      print_log(s);
      fail_msg("%s %s: %" JSON_INTEGER_FORMAT
               " after %.0fs, want %" JSON_INTEGER_FORMAT,
               pool, key, n, WAIT_S, want);
    }
    nap_ms(50);
  }
}

/* The pool's counter `key` does not move for a while (nothing of it is
   submitted any more); returns its value. */
static json_int_t steady_count(fixture_t *fx, server_t *s, const char *pool,
                               const char *key) {
  nap_ms(300); /* a run submitted just before may still end */
  json_int_t n = pool_count(fx, s, pool, key);
  nap_ms(800); /* four intervals of 0.2 s */
  assert_int_equal(pool_count(fx, s, pool, key), n);
  return n;
}

#define SCHEDULE_A                                                             \
  "[schedule.a]\npool = cpu\nevery = 0.2\n"                                    \
  "task = {\"work\": \"sleep\", \"ms\": 1}\n"
#define SCHEDULE_B(every, enabled)                                             \
  "[schedule.b]\nevery = " every "\nenabled = " enabled "\n"                   \
  "task = {\"name\": \"reports.b\", \"work\": \"spin\", \"ms\": 1}\n"
#define SCHEDULE_C(ms)                                                         \
  "[schedule.c]\npool = inference\nevery = 0.2\njitter = 0.5\n"                \
  "task = {\"work\": \"fail\", \"ms\": " ms "}\n"

/* Two schedules run from the start, on a pool and on a route; SIGHUP
   removes one, pauses and retimes the other, adds a third, then makes one
   anew when its task changes; a bad section refuses the whole reload. */
static void test_server_schedules_run_and_reload(void **state) {
  fixture_t *fx = *state;
  write_config(
      fx, HTTP_LOCAL SMALL_POOLS
      "[routes]\nreports.* = io\n" SCHEDULE_A SCHEDULE_B("0.2", "true"));
  server_t *s = server_start(fx);
  assert_int_equal(log_count(s, "INFO Schedule[a] Every 0.200s on "
                                "ThreadPool[cpu] (task 'a', jitter 0.00, "
                                "overlap skip)"),
                   1);
  assert_int_equal(log_count(s, "INFO Schedule[b] Every 0.200s on "
                                "ThreadPool[io] (task 'reports.b', jitter "
                                "0.00, overlap skip)"),
                   1);
  /* Both run, every 0.2 s: three runs each within WAIT_S. */
  wait_count(fx, s, "cpu", "completed", 3);
  wait_count(fx, s, "io", "completed", 3);
  assert_int_equal(pool_count(fx, s, "cpu", "failed"), 0);

  /* a removed, b paused (enabled = false) and every 0.3, c added. */
  write_config(fx, HTTP_LOCAL SMALL_POOLS
               "[routes]\nreports.* = io\n" SCHEDULE_B("0.3", "false")
                   SCHEDULE_C("0"));
  reload(s,
         "Server Config reload: schedules: 1 added, 1 removed, 1 changed, "
         "0 unchanged",
         1);
  wait_log(s, "INFO Schedule[a] Cancelled", 1);
  wait_log(s,
           "INFO Server Config reload: [schedule.b] now every 0.300s, "
           "jitter 0.00, overlap skip, alert_after 0, paused",
           1);
  wait_log(s,
           "INFO Schedule[c] Every 0.200s on ThreadPool[inference] (task "
           "'c', jitter 0.50, overlap skip)",
           1);
  steady_count(fx, s, "cpu", "submitted");
  steady_count(fx, s, "io", "submitted");
  wait_count(fx, s, "inference", "failed", 3);

  /* c's task changes: made anew; b is left as it is. */
  write_config(fx, HTTP_LOCAL SMALL_POOLS
               "[routes]\nreports.* = io\n" SCHEDULE_B("0.3", "false")
                   SCHEDULE_C("2"));
  reload(s,
         "Server Config reload: schedules: 0 added, 0 removed, 1 changed, "
         "1 unchanged",
         1);
  wait_log(s, "INFO Schedule[c] Cancelled", 1);
  wait_log(s, "INFO Schedule[c] Every 0.200s", 2);
  assert_int_equal(log_count(s, "[schedule.b] now"), 1);
  json_int_t failed = pool_count(fx, s, "inference", "failed");
  wait_count(fx, s, "inference", "failed", failed + 2);

  /* A bad section refuses the whole reload: c keeps running, b paused. */
  char where[512];
  write_config(fx,
               HTTP_LOCAL "[pool.cpu]\nworkers = 9\n"
                          "[routes]\nreports.* = io\n" SCHEDULE_B(
                              "0.2", "true") "[schedule.c]\npool = gpu\n"
                                             "task = {\"work\": \"fail\"}\n");
  reload(s, "Config reload failed", 1);
  snprintf(where, sizeof(where),
           "ERROR Server Config reload failed, keeping the running "
           "configuration: %s:11: [schedule.c] pool: no pool named \"gpu\"",
           fx->config);
  wait_log(s, where, 1);
  assert_int_equal(pool_count(fx, s, "cpu", "max_workers"), 4);
  failed = pool_count(fx, s, "inference", "failed");
  wait_count(fx, s, "inference", "failed", failed + 2);
  steady_count(fx, s, "io", "submitted");

  /* A pool the reload adds runs only after a restart: refused too. */
  write_config(fx, HTTP_LOCAL SMALL_POOLS "[pool.extra]\nworkers = 1\n"
                                          "[schedule.x]\npool = extra\n"
                                          "task = {\"work\": \"sleep\"}\n");
  reload(s, "Config reload failed", 2);
  snprintf(where, sizeof(where),
           "%s:15: [schedule.x] pool: no pool named \"extra\" runs (pools "
           "added by a reload start at a restart)",
           fx->config);
  wait_log(s, where, 1);
  server_stop_ok(s);
}

/* A schedule's JSON from GET /health/schedules/{name}. */
static json_t *get_schedule(fixture_t *fx, server_t *s, const char *name) {
  char path[96];
  snprintf(path, sizeof(path), "/health/schedules/%s", name);
  return get_json(fx, s, path);
}

/* Waits until /health answers `status`; returns its JSON. */
static json_t *wait_health(fixture_t *fx, server_t *s, int status) {
  struct timespec since;
  th_now(&since);
  for (;;) {
    th_response_t r;
    call(fx, s, "GET", "/health", NULL, NULL, &r);
    if (r.status == status) {
      json_t *j = json_loads(r.body, 0, NULL);
      th_response_free(&r);
      assert_non_null(j);
      return j;
    }
    th_response_free(&r);
    if (th_elapsed(&since) > WAIT_S) {
      print_log(s);
      fail_msg("/health did not answer %d in %.0fs", status, WAIT_S);
    }
    nap_ms(50);
  }
}

/* The schedules as a client sees them: GET /health/schedules, the three
   POSTs, a failing schedule going stale (/health 503 schedule_stale) with
   its message as the pool's last_error, and a pause made over HTTP that
   outlives a reload leaving `enabled` alone. */
static void test_server_schedules_over_http(void **state) {
  fixture_t *fx = *state;
  const char *config = HTTP_LOCAL SMALL_POOLS
      "[schedule.broken]\npool = inference\nevery = 0.1\nalert_after = 2\n"
      "task = {\"name\": \"nightly\", \"work\": \"fail\"}\n"
      "[schedule.fine]\npool = cpu\nevery = 30\n"
      "task = {\"work\": \"sleep\", \"ms\": 1}\n";
  write_config(fx, "%s", config);
  server_t *s = server_start(fx);

  json_t *all = get_json(fx, s, "/health/schedules");
  json_t *sch = jobj(all, "schedules");
  assert_int_equal(json_object_size(sch), 2);
  json_t *fine = jobj(sch, "fine");
  assert_string_equal(jstr(fine, "pool"), "cpu");
  assert_true(jnum(fine, "every_s") == 30);
  assert_int_equal(jint(fine, "runs"), 0);
  assert_true(json_is_null(json_object_get(fine, "last_status")));
  assert_false(json_is_true(json_object_get(fine, "paused")));
  json_decref(all);

  /* The failing one goes stale; /health says so, the pool shows why. */
  json_t *h = wait_health(fx, s, 503);
  json_t *reasons = json_object_get(h, "reasons");
  bool stale = false;
  for (size_t i = 0; i < json_array_size(reasons); i++)
    stale |= strcmp(jstr(json_array_get(reasons, i), "reason"),
                    "schedule_stale") == 0;
  assert_true(stale);
  json_decref(h);
  json_t *broken = get_schedule(fx, s, "broken");
  assert_true(jint(broken, "failed") >= 2);
  assert_string_equal(jstr(broken, "last_status"), "failed");
  assert_true(json_is_true(json_object_get(broken, "stale")));
  json_decref(broken);
  json_t *p = get_pool(fx, s, "inference");
  json_t *le = jobj(p, "last_error");
  assert_string_equal(jstr(le, "name"), "nightly");
  assert_string_equal(jstr(le, "status"), "failed");
  assert_string_equal(jstr(le, "message"), "input/output error");
  json_decref(p);

  /* Pausing the failing one: not stale while paused, /health is ok. */
  json_t *j = call_json(fx, s, "POST", "/health/schedules/broken/pause", NULL,
                        NULL, 200);
  assert_true(json_is_true(json_object_get(j, "paused")));
  json_decref(j);
  json_decref(wait_health(fx, s, 200));

  /* Run now: an ordinary task of its pool, looked up by its id. */
  j = call_json(fx, s, "POST", "/health/schedules/fine/run-now", NULL, NULL,
                202);
  json_int_t id = jint(j, "task_id");
  json_decref(j);
  char path[64];
  snprintf(path, sizeof(path), "/tasks/%" JSON_INTEGER_FORMAT, id);
  struct timespec since;
  th_now(&since);
  for (;;) {
    j = get_json(fx, s, path);
    bool done = strcmp(jstr(j, "state"), "done") == 0;
    json_decref(j);
    if (done)
      break;
    assert_true(th_elapsed(&since) < WAIT_S);
    nap_ms(20);
  }
  fine = get_schedule(fx, s, "fine");
  assert_int_equal(jint(fine, "runs"), 1);
  assert_int_equal(jint(fine, "ok"), 1);
  json_decref(fine);
  call_error(fx, s, "POST", "/health/schedules/nope/run-now", NULL, NULL, 404,
             "no schedule named \"nope\"");

  /* A reload that leaves `enabled` alone keeps the pause. */
  reload(s,
         "Server Config reload: schedules: 0 added, 0 removed, 0 changed, "
         "2 unchanged",
         1);
  broken = get_schedule(fx, s, "broken");
  assert_true(json_is_true(json_object_get(broken, "paused")));
  assert_true(json_is_null(json_object_get(broken, "next_run_in_s")));
  json_decref(broken);
  char *metrics = get_metrics(fx, s);
  assert_non_null(strstr(metrics, "tpool_schedule_runs_total{schedule=\"fine\","
                                  "pool=\"cpu\"} 1"));
  assert_non_null(strstr(metrics, "tpool_schedule_lateness_seconds_count{"
                                  "schedule=\"fine\",pool=\"cpu\"} 1"));
  free(metrics);
  server_stop_ok(s);
}

/* A bad [schedule.NAME] stops the start, naming the file, line and key. */
static void test_server_schedules_bad_config(void **state) {
  fixture_t *fx = *state;
  char where[512];
  const char *const needles[] = {where, NULL};
  snprintf(where, sizeof(where),
           "%s:3: [schedule.nightly] task: count: a schedule runs one task "
           "per run (expected 1, got 3)",
           fx->config);
  expect_refused_start(fx,
                       HTTP_LOCAL
                       "[schedule.nightly]\npool = cpu\n"
                       "task = {\"work\": \"sleep\", \"count\": 3}\n",
                       NULL, needles);
  snprintf(where, sizeof(where),
           "%s:5: [schedule.nightly] every: expected seconds in "
           "0.001..2.592e+06, got \"0.0001\"",
           fx->config);
  expect_refused_start(fx,
                       HTTP_LOCAL "[schedule.nightly]\npool = cpu\n"
                                  "every = 0.0001\n",
                       NULL, needles);
}

/* "delay_s": the task waits, looked up as "scheduled", then runs and is
   answered; bad values are refused naming the field. */
static void test_server_delayed_task(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL SMALL_POOLS);
  server_t *s = server_start(fx);

  /* The first task of this server is #1: sent, not awaited. */
  static const char body[] = "{\"work\":\"sleep\",\"delay_s\":1.5}";
  char req[256];
  int n = snprintf(req, sizeof(req),
                   "POST /tasks/cpu HTTP/1.1\r\nHost: x\r\nContent-Length: "
                   "%zu\r\n\r\n%s",
                   strlen(body), body);
  struct timespec since;
  th_now(&since);
  int fd = th_raw_connect(s->port);
  assert_true(fd >= 0);
  assert_true(th_raw_send(fd, req, (size_t)n));
  json_t *j = NULL;
  for (;;) { /* 404 until the request has been read */
    th_response_t r;
    call(fx, s, "GET", "/tasks/1", NULL, NULL, &r);
    if (r.status == 200) {
      j = th_json(&r);
      th_response_free(&r);
      break;
    }
    th_response_free(&r);
    assert_true(th_elapsed(&since) < WAIT_S);
    nap_ms(20);
  }
  if (th_elapsed(&since) < 1.0) /* else too slow a box to tell */
    assert_string_equal(jstr(j, "state"), "scheduled");
  json_decref(j);
  json_t *cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "completed"), 0);
  json_decref(cpu);
  th_response_t r;
  assert_int_equal(th_raw_read_response(fd, WAIT_S, &r), 0);
  close(fd);
  expect_status(&r, 200);
  assert_true(th_elapsed(&since) >= 1.5);
  j = th_json(&r);
  assert_int_equal(jint(j, "id"), 1);
  assert_string_equal(jstr(j, "status"), "ok");
  json_decref(j);
  th_response_free(&r);

  /* A shorter one, awaited: it takes its delay. */
  th_now(&since);
  j = call_json(fx, s, "POST", "/tasks/cpu", NULL,
                "{\"name\":\"later\",\"work\":\"sleep\",\"ms\":1,"
                "\"delay_s\":0.3}",
                200);
  assert_true(th_elapsed(&since) >= 0.3);
  assert_string_equal(jstr(j, "name"), "later");
  json_decref(j);
  j = get_json(fx, s, "/tasks/2");
  assert_string_equal(jstr(j, "state"), "done");
  json_decref(j);

  static const char *const bad[] = {
      "{\"work\":\"sleep\",\"delay_s\":0}",
      "{\"work\":\"sleep\",\"delay_s\":-1}",
      "{\"work\":\"sleep\",\"delay_s\":2592000.5}",
      "{\"work\":\"sleep\",\"delay_s\":\"1\"}",
      "{\"work\":\"sleep\",\"delay_s\":null}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    call_error(fx, s, "POST", "/tasks/cpu", NULL, bad[i], 400,
               "delay_s: expected seconds above 0, up to 2592000");
  call_error(fx, s, "POST", "/tasks/cpu", NULL,
             "{\"work\":\"sleep\",\"delay_s\":1,\"count\":2}", 400,
             "delay_s: not with count above 1 (a batch starts at once)");
  call_error(fx, s, "POST", "/tasks/cpu", NULL,
             "{\"work\":\"sleep\",\"wait_s\":1}", 400,
             "wait_s: unknown field (expected name, work, start_timeout_s, "
             "delay_s, attempts, count, concurrency, ms, key, size, text, "
             "bytes, failures)");
  /* The longest delay is taken (and ends cancelled by the drain). */
  server_stop_ok(s);
}

/* ---- SIGTERM --------------------------------------------------------------
 */

static void test_server_sigterm_during_load_answers_all(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);

  /* 40 connections on 15 workers: tasks are running and queued at the
     signal. */
  enum { TOTAL = 200, CONCURRENCY = 40 };
  task_load_t t = {.pools = pools, .npools = NPOOLS, .sleep_ms = 200};
  th_load_t *l = th_load_start(fx->base, s->port, CONCURRENCY, TOTAL, task_next,
                               task_answer, &t);
  run_load_until_started(fx, s, l, TOTAL / 2);
  sigterm_during_load(s, l, TOTAL, CONCURRENCY);
  assert_int_equal(t.bad_answers, 0);
  th_load_free(l);
  char *text = log_copy(s);
  assert_non_null(strstr(text, "SIGTERM: draining"));
  assert_non_null(strstr(text, "Drained (every task finished)"));
  free(text);
}

/* Keep-alive clients that go on sending through a drain, until the server
   closes their connections and refuses new ones, or exits. */
typedef struct drain_clients {
  server_t *s;
  th_load_t *l;
  char path[64];
} drain_clients_t;

static bool drain_next(size_t n, th_request_t *req, void *arg) {
  drain_clients_t *d = arg;
  const th_load_stats_t *st = th_load_stats(d->l);
  if (st->lost + st->refused > 0 || server_wait_exit(d->s, 0))
    return false;
  static const char body[] = "{\"work\":\"sleep\",\"ms\":0}";
  snprintf(d->path, sizeof(d->path), "/tasks/%s", pools[n % NPOOLS]);
  req->method = "POST";
  req->path = d->path;
  req->body = body;
  req->body_len = sizeof(body) - 1;
  return true;
}

static void test_server_sigterm_answers_keepalive_clients(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "");
  server_t *s = server_start(fx);

  /* A long task holds the drain open while 4 clients keep sending on their
     connections: each request must get an answer (200 before the drain,
     503 during it), or find its connection closed after the previous
     answer; none may be left unanswered when the server exits. */
  static const char *const cpu[] = {"cpu"};
  task_load_t hold = {.pools = cpu, .npools = 1, .sleep_ms = 500};
  th_load_t *h =
      th_load_start(fx->base, s->port, 1, 1, task_next, task_answer, &hold);
  drain_clients_t d = {.s = s};
  d.l = th_load_start(fx->base, s->port, 4, 1000000, drain_next, NULL, &d);
  run_load_until_started(fx, s, d.l, 50);
  assert_int_equal(kill(s->pid, SIGTERM), 0);
  run_load(s, d.l);
  run_load(s, h);
  assert_int_equal(th_load_stats(h)->by_status[200], 1);
  const th_load_stats_t *st = th_load_stats(d.l);
  if (st->lost != 0 ||
      st->by_status[200] + st->by_status[503] != st->answered) {
    print_load(st);
    fail_msg("%zu request(s) sent on open connections got no answer before "
             "the server exited",
             st->lost);
  }
  th_load_free(d.l);
  th_load_free(h);
  if (!server_wait_exit(s, WAIT_S) || exit_code(s) != 0) {
    print_log(s);
    fail_msg("tpool-server did not exit 0 after SIGTERM");
  }
}

/* ---- clients that misbehave ---------------------------------------------- */

static void test_server_slow_client_is_cut_off(void **state) {
  fixture_t *fx = *state;
  write_small_config(fx, "timeout = 1\n");
  server_t *s = server_start(fx);

  /* A header that never ends: the server hangs up after its timeout. */
  int fd = th_raw_connect(s->port);
  assert_true(fd >= 0);
  static const char partial[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  assert_true(th_raw_send(fd, partial, sizeof(partial) - 1));
  th_response_t r;
  assert_int_equal(th_raw_read_response(fd, WAIT_S, &r), 0);
  assert_true(r.status == 0 || r.status == 408);
  th_response_free(&r);
  close(fd);

  /* A client trickling a byte every 200 ms never goes silent, yet is cut
     off once its request has taken longer than the timeout; a task that
     runs longer than the timeout is not a slow client and is answered. */
  fd = th_raw_connect(s->port);
  assert_true(fd >= 0);
  static const char slow[] = "GET /health HTTP/1.1\r\nX-Slow: "
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  struct timespec start;
  th_now(&start);
  size_t sent = 0;
  while (sent < sizeof(slow) - 1 && th_raw_send(fd, slow + sent, 1)) {
    sent++;
    struct timespec nap = {0, 200 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  double cut = th_elapsed(&start);
  assert_true(sent < sizeof(slow) - 1); /* the server hung up first */
  assert_true(cut >= 0.9 && cut < 5.0);
  close(fd);
  th_response_t task;
  call(fx, s, "POST", "/tasks/cpu", NULL,
       "{\"name\":\"long\",\"work\":\"sleep\",\"ms\":1500}", &task);
  assert_int_equal(task.status, 200);
  th_response_free(&task);

  /* The server still serves the next client. */
  json_t *h = get_json(fx, s, "/health");
  assert_string_equal(jstr(h, "status"), "ok");
  json_decref(h);
  server_stop_ok(s);
}

static void test_server_tasks_routed_by_name(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL SMALL_POOLS "[routes]\nreports.* = cpu\n"
                                          "*.embed = embedding\n");
  server_t *s = server_start(fx);
  json_t *j = call_json(fx, s, "POST", "/tasks", NULL,
                        "{\"name\":\"reports.daily\",\"work\":\"sleep\","
                        "\"ms\":1}",
                        200);
  assert_string_equal(jstr(j, "pool"), "cpu");
  assert_string_equal(jstr(j, "name"), "reports.daily");
  json_decref(j);
  j = call_json(fx, s, "POST", "/tasks", NULL,
                "{\"name\":\"doc.embed\",\"work\":\"spin\",\"ms\":1}", 200);
  assert_string_equal(jstr(j, "pool"), "embedding");
  json_decref(j);
  call_error(fx, s, "POST", "/tasks", NULL,
             "{\"name\":\"other\",\"work\":\"sleep\"}", 404,
             "no route for task name \"other\"");
  call_error(fx, s, "POST", "/tasks", NULL, "{\"work\":\"sleep\"}", 400,
             "name: required");
  call_error(fx, s, "GET", "/tasks", NULL, NULL, 405, NULL);
  json_t *io = get_pool(fx, s, "io");
  assert_int_equal(jint(io, "submitted"), 0);
  json_decref(io);
  server_stop_ok(s);
}

/* --check-config says whether a file would start the server, starting
   nothing; a live server is ready. */
static void test_server_check_config_and_ready(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL SMALL_POOLS);
  const char *const good[] = {"--check-config", fx->config, NULL};
  server_t *s = server_spawn(fx, good);
  assert_int_equal(server_exit_code(s), 0);
  server_join_log(s);
  assert_int_equal(log_count(s, ": OK"), 1);
  assert_int_equal(log_count(s, "Listening"), 0);
  write_config(fx, HTTP_LOCAL "[pool.cpu]\nworkers = lots\n");
  s = server_spawn(fx, good);
  assert_int_equal(server_exit_code(s), 2);
  server_join_log(s);
  assert_int_equal(log_count(s, "[pool.cpu] workers: expected 1..4096"), 1);

  write_config(fx, HTTP_LOCAL SMALL_POOLS);
  s = server_start(fx);
  json_t *j = get_json(fx, s, "/health/ready");
  assert_string_equal(jstr(j, "status"), "ready");
  json_decref(j);
  server_stop_ok(s);
}

int main(int argc, char **argv) {
  /* "promtool": /metrics under load through promtool (server_promtool). */
  if (th_promtool_mode(argc, argv)) {
    const struct CMUnitTest promtool[] = {
        cmocka_unit_test_setup_teardown(
            test_server_promtool_accepts_metrics_under_load, setup, teardown),
    };
    return cmocka_run_group_tests(promtool, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_server_bad_config_exits_2, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_startup_logs_every_pool,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_health_routes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_ping_route, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_bad_paths_and_versions, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_error_statuses, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_task_route, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_tasks_routed_by_name, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_check_config_and_ready, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_full_queue_answers_429, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_running_task_is_listed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_admin_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_load_counters_match, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_sighup_reloads_config, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_schedules_run_and_reload,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_schedules_over_http, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_schedules_bad_config, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_delayed_task, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_server_sigterm_during_load_answers_all, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_server_sigterm_answers_keepalive_clients, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_slow_client_is_cut_off, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
