/*
 * server_harness.c — see server_harness.h.
 */
#include "server_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

/* ---- the server process -------------------------------------------------- */

static void *read_log(void *arg) {
  server_t *s = arg;
  char buf[4096];
  for (;;) {
    ssize_t n = read(s->log_fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return NULL; /* the child and its output are gone */
    pthread_mutex_lock(&s->mu);
    if (s->len + (size_t)n + 1 > s->cap) {
      size_t cap = (s->len + (size_t)n + 1) * 2;
      char *log = realloc(s->log, cap);
      if (!log) {
        pthread_mutex_unlock(&s->mu);
        continue; /* keep draining the pipe so the child never blocks */
      }
      s->log = log;
      s->cap = cap;
    }
    memcpy(s->log + s->len, buf, (size_t)n);
    s->len += (size_t)n;
    s->log[s->len] = '\0';
    pthread_mutex_unlock(&s->mu);
  }
}

/* A copy of the log so far (caller frees). */
char *log_copy(server_t *s) {
  pthread_mutex_lock(&s->mu);
  char *copy = strdup(s->log ? s->log : "");
  pthread_mutex_unlock(&s->mu);
  assert_non_null(copy);
  return copy;
}

size_t count_in(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

size_t log_count(server_t *s, const char *needle) {
  char *text = log_copy(s);
  size_t n = count_in(text, needle);
  free(text);
  return n;
}

void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Prints the log; for failure messages. */
void print_log(server_t *s) {
  char *text = log_copy(s);
  size_t len = strlen(text);
  const char *tail = len > 6000 ? text + len - 6000 : text;
  print_message("---- tpool-server log%s ----\n%s\n---- end of log ----\n",
                tail == text ? "" : " (its end)", tail);
  free(text);
}

/* Waits until `needle` occurs at least `times` times in the log. */
void wait_log(server_t *s, const char *needle, size_t times) {
  struct timespec start;
  th_now(&start);
  while (log_count(s, needle) < times) {
    if (th_elapsed(&start) > WAIT_S) {
      print_log(s);
      fail_msg("the log never showed \"%s\" %zu time(s)", needle, times);
    }
    nap_ms(2);
  }
}

/* Reaps the child if it has exited, or waits up to timeout_s for it.
   Returns whether it has exited. */
bool server_wait_exit(server_t *s, double timeout_s) {
  struct timespec start;
  th_now(&start);
  while (!s->reaped) {
    pid_t r = waitpid(s->pid, &s->wstatus, WNOHANG);
    if (r == s->pid) {
      s->reaped = true;
      break;
    }
    assert_true(r == 0 || errno == EINTR);
    if (th_elapsed(&start) >= timeout_s)
      return false;
    nap_ms(5);
  }
  return true;
}

/* The child's exit status; fails the test if it was killed by a signal. */
int exit_code(server_t *s) {
  assert_true(s->reaped);
  if (!WIFEXITED(s->wstatus)) {
    print_log(s);
    fail_msg("tpool-server died of signal %d", WTERMSIG(s->wstatus));
  }
  return WEXITSTATUS(s->wstatus);
}

/* Waits for the rest of the output of a child that has exited. */
void server_join_log(server_t *s) {
  assert_true(s->reaped);
  if (!s->reader_joined)
    pthread_join(s->reader, NULL); /* the pipe ends with the child */
  s->reader_joined = true;
}

/* Kills the child if it still runs, reaps it and frees *s. */
void server_free(server_t *s) {
  if (!s)
    return;
  if (!s->reaped) {
    kill(s->pid, SIGKILL);
    while (waitpid(s->pid, &s->wstatus, 0) < 0 && errno == EINTR)
      ;
    s->reaped = true;
  }
  server_join_log(s);
  close(s->log_fd);
  pthread_mutex_destroy(&s->mu);
  free(s->log);
  free(s);
}

/* ---- the fixture --------------------------------------------------------- */

int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  fx->base = th_base_new();
  const char *tmp = getenv("TMPDIR");
  snprintf(fx->dir, sizeof(fx->dir), "%s/tpool-server-XXXXXX",
           tmp && strlen(tmp) < 32 ? tmp : "/tmp");
  assert_non_null(mkdtemp(fx->dir));
  snprintf(fx->config, sizeof(fx->config), "%s/config.ini", fx->dir);
  *state = fx;
  return 0;
}

int teardown(void **state) {
  fixture_t *fx = *state;
  for (size_t i = 0; i < fx->nservers; i++)
    server_free(fx->servers[i]);
  /* The directory and what servers made in it (tpool-data/). */
  th_remove_tree(fx->dir);
  event_base_free(fx->base);
  free(fx);
  return 0;
}

/* Writes `text` to `path` whole: through a temporary file and rename(), so
   a server reloading meanwhile never reads half of it. */
void write_file(const char *path, const char *text) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(rename(tmp, path), 0);
}

void write_config(fixture_t *fx, const char *fmt, ...) {
  char text[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  assert_true(n > 0 && (size_t)n < sizeof(text));
  write_file(fx->config, text);
}

/* Spawns tpool-server -c <config> plus `extra` arguments (NULL-terminated,
   may be NULL), its stdout and stderr on the log pipe. */
server_t *server_spawn(fixture_t *fx, const char *const *extra) {
  const char *exe = getenv("TPOOL_SERVER");
  if (!exe)
    fail_msg("TPOOL_SERVER is not set: run this test with meson test");
  assert_true(fx->nservers < MAX_SERVERS);
  server_t *s = calloc(1, sizeof(*s));
  assert_non_null(s);
  pthread_mutex_init(&s->mu, NULL);
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);

  const char *argv[16] = {exe, "-c", fx->config};
  size_t argc = 3;
  for (size_t i = 0; extra && extra[i]; i++) {
    assert_true(argc < 15);
    argv[argc++] = extra[i];
  }
  argv[argc] = NULL;
  posix_spawn_file_actions_t fa;
  assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
  assert_int_equal(
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0), 0);
  assert_int_equal(posix_spawn_file_actions_adddup2(&fa, p[1], 1), 0);
  assert_int_equal(posix_spawn_file_actions_adddup2(&fa, p[1], 2), 0);
  /* In the private directory, so relative paths in a config ([demo]
     data_dir's default) land there and go with it. */
  if (fx->dir[0] == '/')
    assert_int_equal(posix_spawn_file_actions_addchdir_np(&fa, fx->dir), 0);
  int rc = posix_spawn(&s->pid, exe, &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    free(s);
    fail_msg("cannot run %s: %s", exe, strerror(rc));
  }
  s->log_fd = p[0];
  assert_int_equal(pthread_create(&s->reader, NULL, read_log, s), 0);
  fx->servers[fx->nservers++] = s;
  return s;
}

/* Spawns the server on the config file as written and waits for its
   "Listening on" line. */
server_t *server_start(fixture_t *fx) {
  return server_start_args(fx, NULL);
}

server_t *server_start_args(fixture_t *fx, const char *const *extra) {
  static const char needle[] = "INFO Server Listening on http://127.0.0.1:";
  server_t *s = server_spawn(fx, extra);
  struct timespec start;
  th_now(&start);
  for (;;) {
    char *text = log_copy(s);
    const char *at = strstr(text, needle);
    unsigned long port = at ? strtoul(at + sizeof(needle) - 1, NULL, 10) : 0;
    free(text);
    if (port > 0 && port <= 65535) {
      s->port = (uint16_t)port;
      return s;
    }
    if (server_wait_exit(s, 0) || th_elapsed(&start) > WAIT_S) {
      print_log(s);
      fail_msg("tpool-server did not start listening");
    }
    nap_ms(2);
  }
}

/* SIGTERM, then a bounded wait; fails the test unless the server exits 0
   by itself. */
void server_stop_ok(server_t *s) {
  assert_int_equal(kill(s->pid, SIGTERM), 0);
  if (!server_wait_exit(s, WAIT_S)) {
    print_log(s);
    fail_msg("tpool-server did not exit within %.0fs of SIGTERM", WAIT_S);
  }
  int code = exit_code(s);
  if (code != 0) {
    print_log(s);
    fail_msg("tpool-server exited with status %d, not 0", code);
  }
}

/* Waits for a server that should stop by itself; returns its exit code. */
int server_exit_code(server_t *s) {
  if (!server_wait_exit(s, WAIT_S)) {
    print_log(s);
    fail_msg("tpool-server did not exit within %.0fs", WAIT_S);
  }
  return exit_code(s);
}

void expect_refused_start(fixture_t *fx, const char *config,
                          const char *const *extra,
                          const char *const *needles) {
  write_file(fx->config, config);
  server_t *s = server_spawn(fx, extra);
  int code = server_exit_code(s);
  server_join_log(s);
  char *text = log_copy(s);
  bool ok = code == 2 && !strstr(text, "Listening");
  for (size_t i = 0; ok && needles[i]; i++)
    ok = strstr(text, needles[i]) != NULL;
  if (!ok) {
    print_log(s);
    fail_msg("expected exit status 2 and a message naming %s; got status %d",
             needles[0], code);
  }
  free(text);
}

/* ---- requests -------------------------------------------------------------
 */

/* One request; fails the test if no answer came in time. */
void call(fixture_t *fx, server_t *s, const char *method, const char *path,
          const char *const *headers, const char *body, th_response_t *r) {
  if (th_http(fx->base, s->port, method, path, headers, body,
              body ? strlen(body) : 0, WAIT_S, r) != 0) {
    print_log(s);
    fail_msg("%s %s: no answer within %.0fs", method, path, WAIT_S);
  }
  if (r->status == 0) {
    print_log(s);
    fail_msg("%s %s: the connection failed or closed without an answer", method,
             path);
  }
}

/* Asserts the status, printing the body when it is not. */
void expect_status(const th_response_t *r, int status) {
  if (r->status != status)
    fail_msg("expected HTTP %d, got %d: %s", status, r->status, r->body);
}

/* A request whose JSON answer must have `status`; returns the JSON. */
json_t *call_json(fixture_t *fx, server_t *s, const char *method,
                  const char *path, const char *const *headers,
                  const char *body, int status) {
  th_response_t r;
  call(fx, s, method, path, headers, body, &r);
  expect_status(&r, status);
  const char *type = th_response_header(&r, "Content-Type");
  if (!type || strcmp(type, "application/json") != 0)
    fail_msg("%s %s: Content-Type %s", method, path, type ? type : "missing");
  json_t *j = th_json(&r);
  th_response_free(&r);
  return j;
}

json_t *get_json(fixture_t *fx, server_t *s, const char *path) {
  return call_json(fx, s, "GET", path, NULL, NULL, 200);
}

/* Asserts that a JSON error answer has the shape {"error": {"status": N,
   "message": "... <needle> ..."}}. */
void expect_error(const th_response_t *r, int status, const char *needle) {
  expect_status(r, status);
  json_t *j = th_json(r);
  json_t *e = json_object_get(j, "error");
  if (!json_is_object(e) ||
      json_integer_value(json_object_get(e, "status")) != status ||
      !json_is_string(json_object_get(e, "message")))
    fail_msg("not a JSON error for %d: %s", status, r->body);
  const char *msg = json_string_value(json_object_get(e, "message"));
  if (needle && !strstr(msg, needle))
    fail_msg("error message \"%s\" does not name \"%s\"", msg, needle);
  json_decref(j);
}

/* A request that must fail with a JSON error of `status`. */
void call_error(fixture_t *fx, server_t *s, const char *method,
                const char *path, const char *const *headers, const char *body,
                int status, const char *needle) {
  th_response_t r;
  call(fx, s, method, path, headers, body, &r);
  expect_error(&r, status, needle);
  th_response_free(&r);
}

/* The members a test reads, asserted to exist with the right type. */
json_int_t jint(const json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_integer(v))
    fail_msg("\"%s\" is missing or not an integer", key);
  return json_integer_value(v);
}

double jnum(const json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_number(v))
    fail_msg("\"%s\" is missing or not a number", key);
  return json_number_value(v);
}

const char *jstr(const json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v))
    fail_msg("\"%s\" is missing or not a string", key);
  return json_string_value(v);
}

json_t *jobj(const json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_object(v))
    fail_msg("\"%s\" is missing or not an object", key);
  return v;
}

/* A pool of /health/thread-pools, the object of /health/thread-pools/{pool}
   or NULL for all of them. Caller json_decref()s. */
json_t *get_pool(fixture_t *fx, server_t *s, const char *pool) {
  char path[128];
  snprintf(path, sizeof(path), "/health/thread-pools/%s", pool);
  return get_json(fx, s, path);
}

/* POST /tasks/{pool} with `body`; returns the HTTP status, and the task id
   when it is 200. */
int post_task(fixture_t *fx, server_t *s, const char *pool, const char *body,
              const char *const *headers, json_int_t *id) {
  char path[128];
  snprintf(path, sizeof(path), "/tasks/%s", pool);
  th_response_t r;
  call(fx, s, "POST", path, headers, body, &r);
  int status = r.status;
  if (status == 200 && id) {
    json_t *j = th_json(&r);
    *id = jint(j, "id");
    json_decref(j);
  }
  th_response_free(&r);
  return status;
}

void print_load(const th_load_stats_t *st) {
  print_message("load: started %zu, sent %zu, answered %zu, lost %zu, "
                "refused %zu\n",
                st->started, st->sent, st->answered, st->lost, st->refused);
  for (int i = 0; i < 600; i++)
    if (st->by_status[i])
      print_message("  HTTP %d: %zu\n", i, st->by_status[i]);
}

/* Runs a load to its end; fails the test if it does not end in time. */
void run_load(server_t *s, th_load_t *l) {
  if (!th_load_run(l, WAIT_S)) {
    print_load(th_load_stats(l));
    print_log(s);
    fail_msg("the load did not finish within %.0fs", WAIT_S);
  }
}

static bool load_started_at_least(void *arg) {
  void **a = arg;
  return th_load_stats(a[0])->started >= *(size_t *)a[1];
}

void run_load_until_started(fixture_t *fx, server_t *s, th_load_t *l,
                            size_t n) {
  void *a[2] = {l, &n};
  if (!th_run_until(fx->base, load_started_at_least, a, WAIT_S)) {
    print_load(th_load_stats(l));
    print_log(s);
    fail_msg("the load never started %zu requests", n);
  }
}

void sigterm_during_load(server_t *s, th_load_t *l, size_t total,
                         unsigned concurrency) {
  size_t before = th_load_stats(l)->started;
  assert_int_equal(kill(s->pid, SIGTERM), 0);
  run_load(s, l);
  const th_load_stats_t *st = th_load_stats(l);
  bool ok = st->lost == 0 && st->answered == st->sent &&
            st->sent + st->refused == total &&
            st->by_status[200] + st->by_status[503] == st->answered &&
            /* all but those still in flight were accepted before it */
            st->by_status[200] + concurrency >= before;
  if (!ok) {
    print_load(st);
    print_log(s);
    fail_msg("requests were lost or wrongly answered across SIGTERM");
  }
  if (!server_wait_exit(s, WAIT_S)) {
    print_log(s);
    fail_msg("tpool-server did not exit within %.0fs of SIGTERM", WAIT_S);
  }
  if (exit_code(s) != 0) {
    print_log(s);
    fail_msg("tpool-server exited with status %d", exit_code(s));
  }
}

/* Polls /health/thread-pools until no pool has work queued or running, and
   returns that answer (caller json_decref()s). */
json_t *wait_quiescent(fixture_t *fx, server_t *s) {
  struct timespec start;
  th_now(&start);
  for (;;) {
    json_t *j = get_json(fx, s, "/health/thread-pools");
    json_t *summary = jobj(j, "summary");
    if (jint(summary, "total_active") == 0 &&
        jint(summary, "total_queued") == 0)
      return j;
    json_decref(j);
    if (th_elapsed(&start) > WAIT_S) {
      print_log(s);
      fail_msg("the pools never went idle");
    }
    nap_ms(5);
  }
}
