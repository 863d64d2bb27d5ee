/*
 * test_server_config.c — tpool-server's config file: tpool's sections, the
 * HTTP layer's part of [http] (tpool_http_config_section()) and the
 * server's own keys ([http] listen and loop_threads, [demo]), read in one
 * pass by the server's loader (server/config.c) through tpool's hook,
 * tpool_config_load_sections().
 *
 * Every tests/data/config/bad/<case>.ini must fail to load with the
 * message in <case>.err and leave all three parts untouched; the shipped
 * config.ini ($TPOOL_SOURCE_ROOT) is exactly the defaults; every key is
 * read; values set in code are checked with the loader's words.
 */
#include "config.h"
#include "config_cases.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static server_config_t *config_new(void) {
  server_config_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  server_config_init(c);
  return c;
}

/* Loads `path` over the defaults, which must come back unchanged. */
static int server_load(const char *path, tpool_config_error_t *err) {
  server_config_t *c = config_new(), *copy = config_new();
  int rc = server_config_load(c, path, err);
  assert_memory_equal(&c->core, &copy->core, sizeof(c->core));
  assert_memory_equal(&c->http, &copy->http, sizeof(c->http));
  assert_memory_equal(&c->server, &copy->server, sizeof(c->server));
  free(c);
  free(copy);
  return rc;
}

static void check_fails_with(const server_config_t *c, const char *want) {
  tpool_config_error_t err;

  assert_int_equal(server_config_check(c, &err), -EINVAL);
  assert_string_equal(err.text, want);
}

/* ------------------------------------------------------------------------ */

static void test_config_defaults(void **state) {
  server_config_t *c = config_new();
  tpool_config_error_t err;

  (void)state;
  assert_string_equal(c->server.listen.host, "127.0.0.1");
  assert_int_equal(c->server.listen.port, 8080);
  assert_string_equal(c->http.admin_token, "");
  assert_int_equal(c->http.max_header_size, 8192);
  assert_int_equal(c->http.max_body_size, 1024 * 1024);
  assert_true(c->http.timeout_s == 30.0);
  assert_int_equal(c->server.loop_threads, 1);
  assert_string_equal(c->server.demo.data_dir, "tpool-data");
  assert_int_equal(c->server.demo.embedding_dim, 384);
  assert_int_equal(c->server.demo.db_rows, 10000);
  assert_int_equal(server_config_check(c, &err), 0);
  free(c);
}

#ifndef TPOOL_SERVER_REDIS
/* Without libtpool_redis the server has no [redis], which the messages
   listing the sections name. */
static bool needs_redis(const char *want) {
  return strstr(want, "[redis]") != NULL;
}
#endif

static void test_config_bad_files_fail_with_their_message(void **state) {
  size_t n, ran;

  (void)state;
#ifdef TPOOL_SERVER_REDIS
  ran = cc_run_bad_cases(server_load, NULL, &n);
  assert_int_equal(ran, n);
#else
  ran = cc_run_bad_cases(server_load, needs_redis, &n);
#endif
  assert_true(n >= 20);
}

static void test_config_shipped_file_is_the_defaults(void **state) {
  server_config_t *c = config_new(), *defaults = config_new();
  tpool_options_t *o = &c->core;
  tpool_config_error_t err;
  char path[PATH_MAX];
  size_t i;

  (void)state;
  cc_env_path(path, sizeof(path), "TPOOL_SOURCE_ROOT", "config.ini");
  assert_int_equal(server_config_load(c, path, &err), 0);
  assert_string_equal(o->config_path, path);
  assert_false(o->verbose);
  assert_string_equal(c->server.listen.host, "127.0.0.1");
  assert_int_equal(o->npools, 5);
  assert_string_equal(o->pools[0].name, "io");
  assert_int_equal(o->pools[0].max_workers, 50);
  assert_int_equal(tpool_options_pool(o, "cpu")->max_workers, 30);
  assert_int_equal(tpool_options_pool(o, "inference")->max_workers, 20);
  assert_int_equal(tpool_options_pool(o, "embedding")->max_workers, 15);
  assert_int_equal(tpool_options_pool(o, "db")->max_workers, 25);

  /* Apart from where it came from, it is exactly the defaults. */
  memcpy(defaults->core.config_path, o->config_path, sizeof(o->config_path));
  for (i = 0; i < 5; i++) {
    assert_true(o->pools[i].line > 0);
    defaults->core.pools[i].line = o->pools[i].line;
  }
  assert_memory_equal(c, defaults, sizeof(*c));
  free(c);
  free(defaults);
}

static void test_config_every_key(void **state) {
  server_config_t *c = config_new();
  tpool_options_t *o = &c->core;
  tpool_config_error_t err;
  tpool_pool_options_t *cpu, *gpu;
  char path[PATH_MAX];
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned i;

  (void)state;
  cc_env_path(path, sizeof(path), "TPOOL_TEST_DATA", "config/all_keys.ini");
  assert_int_equal(server_config_load(c, path, &err), 0);
  assert_string_equal(err.text, "");

  assert_true(o->verbose);
  assert_true(o->status_interval_s == 2.5);
  assert_int_equal(o->log_level, TPOOL_LOG_DEBUG);
  assert_true(o->shutdown_timeout_s == 0);
  assert_string_equal(o->log_path, "/var/log/tpool.log");
  assert_string_equal(c->server.listen.host, "::1");
  assert_int_equal(c->server.listen.port, 0);
  assert_string_equal(c->http.admin_token, "s3cr3t;token!");
  assert_int_equal(c->http.max_header_size, 16 * 1024);
  assert_int_equal(c->http.max_body_size, 0);
  assert_true(c->http.timeout_s == 0.5);
  assert_int_equal(c->server.loop_threads, 64);
  assert_string_equal(c->server.demo.data_dir, "/var/lib/tpool demo");
  assert_int_equal(c->server.demo.embedding_dim, 4096);
  assert_int_equal(c->server.demo.db_rows, 1);

  cpu = tpool_options_pool(o, "cpu");
  assert_non_null(cpu);
  assert_int_equal(cpu->line, 19);
  assert_int_equal(cpu->max_workers, ncpu < 1 ? 1 : ncpu);
  assert_int_equal(cpu->min_workers, 1);
  assert_int_equal(cpu->queue_limit, 10000000);
  assert_true(cpu->idle_timeout_s == 0.01);
  assert_int_equal(cpu->stack_size, 1024 * 1024 * 1024);
  assert_true(cpu->soft_timeout_s == 0.0);
  assert_true(cpu->spin_s == 0.01);
  assert_string_equal(cpu->thread_name, "cpu.W_1-x");
  assert_true(cpu->has_affinity);
  for (i = 0; i < TPOOL_CPUS_MAX; i++) {
    bool want = i <= 3 || i == 6 || i == 1023;
    assert_int_equal((cpu->cpu_affinity[i / 64] >> (i % 64)) & 1, want);
  }

  assert_false(tpool_options_pool(o, "db")->enabled);
  assert_int_equal(tpool_options_pool(o, "io")->max_workers, 7);
  assert_int_equal(tpool_options_pool(o, "io")->min_workers,
                   TPOOL_MIN_EQUALS_MAX);
  assert_int_equal(tpool_options_pool(o, "inference")->line, 0);

  assert_int_equal(o->npools, 6);
  gpu = &o->pools[5];
  assert_string_equal(gpu->name, "gpu-render_2");
  assert_true(gpu->enabled);
  assert_int_equal(gpu->max_workers, 3);
  assert_int_equal(gpu->stack_size, 65536);
  assert_int_equal(gpu->queue_limit, TPOOL__QUEUE_DEFAULT);
  assert_int_equal(gpu->retry_attempts, 100);
  assert_true(gpu->retry_backoff_s == 0.001);
  assert_true(gpu->retry_backoff_max_s == 3600);
  assert_int_equal(gpu->breaker_window, 1024);
  assert_true(gpu->breaker_threshold == 0.25);
  assert_true(gpu->breaker_cooldown_s == 7.5);
  assert_int_equal(gpu->breaker_trials, 1000);
  assert_int_equal(gpu->task_history, 0);
  /* And the defaults where nothing is set. */
  assert_int_equal(cpu->retry_attempts, 1);
  assert_int_equal(cpu->breaker_window, 0);
  assert_int_equal(cpu->task_history, TPOOL__HISTORY_DEFAULT);
  free(c);
}

/* 198 bytes is the longest line, also as the last line without "\n". */
static void test_config_parse_longest_line(void **state) {
  char text[256];
  server_config_t *c = config_new();
  tpool_config_error_t err;
  int n;

  (void)state;
  n = snprintf(text, sizeof(text), "[http]\nadmin_token = %0*d", 184, 7);
  assert_int_equal(n - 7, TPOOL__CONFIG_LINE_MAX);
  assert_int_equal(server_config_parse(c, text, (size_t)n, "t", &err), -EINVAL);
  assert_string_equal(err.text, "t:2: [http] admin_token: expected up to 128 "
                                "printable characters without spaces");
  n = snprintf(text, sizeof(text), "[general]\nlog = /%0*d", 191, 7);
  assert_int_equal(n - 10, TPOOL__CONFIG_LINE_MAX);
  assert_int_equal(server_config_parse(c, text, (size_t)n, "t", &err), 0);
  assert_int_equal(strlen(c->core.log_path), 192);
  text[n++] = '9';
  assert_int_equal(server_config_parse(c, text, (size_t)n, "t", &err), -EINVAL);
  assert_string_equal(err.text, "t:2: line longer than 198 bytes");
  free(c);
}

static void test_config_parse_values(void **state) {
  static const struct {
    const char *text;
    int rc;
  } cases[] = {
      {"[http]\nlisten = 0.0.0.0:65535\n", 0},
      {"[http]\nlisten = [fe80::1%eth0]:80\n", -EINVAL},
      {"[http]\nlisten = 127.1:80\n", -EINVAL},
      {"[http]\nlisten = 1.2.3.4:\n", -EINVAL},
      {"[http]\nadmin_token = \n", 0},
      {"[http]\nmax_body_size = 64M\n", 0},
      {"[http]\nmax_body_size = 64MB\n", -EINVAL},
      {"[pool.io]\n[pool.cpu]\n[pool.new]\n[general]\n[http]\n", 0},
  };
  server_config_t *c = malloc(sizeof(*c));
  tpool_config_error_t err;
  size_t i;

  (void)state;
  assert_non_null(c);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    server_config_init(c);
    if (server_config_parse(c, cases[i].text, strlen(cases[i].text), "v",
                            &err) != cases[i].rc)
      fail_msg("case %zu (%s): got \"%s\"", i, cases[i].text, err.text);
  }
  free(c);
}

/* [http] is shared: the HTTP layer's keys fill its options, the server's
   its own; a key of neither is unknown. */
static void test_config_http_is_shared(void **state) {
  static const char text[] = "[http]\nloop_threads = 3\nadmin_token = t0k\n"
                             "listen = 10.0.0.1:99\ntimeout = 2\n";
  server_config_t *c = config_new();
  tpool_config_error_t err;

  (void)state;
  assert_int_equal(server_config_parse(c, text, strlen(text), "h", &err), 0);
  assert_int_equal(c->server.loop_threads, 3);
  assert_string_equal(c->http.admin_token, "t0k");
  assert_string_equal(c->server.listen.host, "10.0.0.1");
  assert_int_equal(c->server.listen.port, 99);
  assert_true(c->http.timeout_s == 2);
  static const char twice[] = "[http]\ntimeout = 2\nlisten = 1.2.3.4:5\n"
                              "timeout = 3\n";
  assert_int_equal(server_config_parse(c, twice, strlen(twice), "h", &err),
                   -EINVAL);
  assert_string_equal(err.text, "h:4: [http] timeout: set twice (first at "
                                "line 2)");
  static const char unknown[] = "[http]\nport = 80\n";
  assert_int_equal(server_config_parse(c, unknown, strlen(unknown), "h", &err),
                   -EINVAL);
  assert_string_equal(err.text, "h:2: [http] port: unknown key");
  free(c);
}

#ifdef TPOOL_SERVER_REDIS
/* [redis]: its defaults, its values, and each bad value named with the
   file, line and key, leaving the options as they were. */
static void test_config_redis(void **state) {
  static const char good[] =
      "[redis]\nurl = redis://10.0.0.5:6380/2\nstream = jobs\n"
      "group = workers\nconsumer = host-a:1\nbatch = 500\n"
      "reclaim_after = 2.5\nmax_deliveries = 3\ndead_letter = jobs:dead\n"
      "result_ttl = 60\n";
  static const struct {
    const char *text, *want;
  } bad[] = {
      {"[redis]\nurl = http://x:1\n",
       "r:2: [redis] url: expected redis://HOST:PORT[/DB] (DB 0..15), or "
       "nothing, got \"http://x:1\""},
      {"[redis]\nurl = redis://h:0\n",
       "r:2: [redis] url: expected redis://HOST:PORT[/DB] (DB 0..15), or "
       "nothing, got \"redis://h:0\""},
      {"[redis]\nurl = redis://h:6379/16\n",
       "r:2: [redis] url: expected redis://HOST:PORT[/DB] (DB 0..15), or "
       "nothing, got \"redis://h:6379/16\""},
      {"[redis]\nbatch = 0\n",
       "r:2: [redis] batch: expected 1..10000, got \"0\""},
      {"[redis]\nmax_deliveries = 0\n",
       "r:2: [redis] max_deliveries: expected 1..1000, got \"0\""},
      {"[redis]\n\nreclaim_after = abc\n",
       "r:3: [redis] reclaim_after: expected seconds in 0.1..86400, got "
       "\"abc\""},
      {"[redis]\nresult_ttl = 0\n",
       "r:2: [redis] result_ttl: expected seconds in 1..3.1536e+07, got "
       "\"0\""},
      {"[redis]\nstream =\n",
       "r:2: [redis] stream: expected 1..200 printable characters without "
       "spaces, got \"\""},
      {"[redis]\nhost = x\n", "r:2: [redis] host: unknown key"},
  };
  server_config_t *c = config_new(), *copy = config_new();
  tpool_config_error_t err;

  (void)state;
  assert_string_equal(c->redis.url, "");
  assert_string_equal(c->redis.stream, "tpool:tasks");
  assert_string_equal(c->redis.group, "tpool");
  assert_string_equal(c->redis.consumer, "");
  assert_string_equal(c->redis.dead_letter, "tpool:dead");
  assert_int_equal(c->redis.batch, 64);
  assert_true(c->redis.reclaim_after_s == 30);
  assert_int_equal(c->redis.max_deliveries, 5);
  assert_true(c->redis.result_ttl_s == 3600);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (server_config_parse(c, bad[i].text, strlen(bad[i].text), "r", &err) !=
            -EINVAL ||
        strcmp(err.text, bad[i].want) != 0)
      fail_msg("case %zu: got \"%s\"", i, err.text);
    assert_memory_equal(&c->redis, &copy->redis, sizeof(c->redis));
  }
  assert_int_equal(server_config_parse(c, good, strlen(good), "r", &err), 0);
  assert_string_equal(c->redis.url, "redis://10.0.0.5:6380/2");
  assert_string_equal(c->redis.stream, "jobs");
  assert_string_equal(c->redis.group, "workers");
  assert_string_equal(c->redis.consumer, "host-a:1");
  assert_string_equal(c->redis.dead_letter, "jobs:dead");
  assert_int_equal(c->redis.batch, 500);
  assert_true(c->redis.reclaim_after_s == 2.5);
  assert_int_equal(c->redis.max_deliveries, 3);
  assert_true(c->redis.result_ttl_s == 60);
  assert_int_equal(server_config_check(c, NULL), 0);
  strcpy(c->redis.url, "redis://[::1]:6379");
  assert_int_equal(server_config_check(c, NULL), 0);
  static const char same[] = "[redis]\nstream = q\ndead_letter = q\n";
  assert_int_equal(server_config_parse(c, same, strlen(same), "d", &err),
                   -EINVAL);
  assert_string_equal(err.text, "d: [redis] dead_letter: must not be the "
                                "stream itself (\"q\")");
  assert_string_equal(c->redis.stream, "jobs"); /* unchanged */
  strcpy(c->redis.url, "redis://a b:1");
  check_fails_with(c, "r: [redis] url: expected redis://HOST:PORT[/DB] "
                      "(DB 0..15), or nothing, got \"redis://a b:1\"");
  free(c);
  free(copy);
}
#endif

/* [schedule.NAME]: the family's defaults and values, each bad value named
   with the file, line and key, too many sections, and the checks made
   after the load, which name the section's line; a refused file changes
   nothing. */
#define TASK_SLEEP "task = {\"work\": \"sleep\", \"ms\": 1}\n"

/* Whether the text is refused with `want`, changing nothing; says why
   not. */
static bool schedule_refuse(const char *text, const char *want) {
  server_config_t *c = config_new(), *copy = config_new();
  tpool_config_error_t err;
  bool ok = server_config_parse(c, text, strlen(text), "s", &err) == -EINVAL &&
            strcmp(err.text, want) == 0;

  if (!ok)
    print_error("%s\n  got:  %s\n  want: %s\n", text, err.text, want);
  assert_memory_equal(c, copy, sizeof(*c));
  free(c);
  free(copy);
  return ok;
}

static void test_config_schedules(void **state) {
  static const char good[] =
      "[schedule.backup]\npool = io\nevery = 0.001\njitter = 0.25\n"
      "overlap = queue\nenabled = false\nalert_after = 3\n"
      "task = {\"name\": \"nightly\", \"work\": \"hash\", \"bytes\": 64, "
      "\"attempts\": 2, \"start_timeout_s\": 5} ; a comment\n"
      "[routes]\nreports.* = cpu\n"
      "[schedule.reports.daily]\n" TASK_SLEEP
      "[schedule.q]\npool = db\nevery = 2592000\njitter = 1\n"
      "alert_after = 1000000\n"
      "task = {\"work\":\"query\",\"key\":1}\n";
  server_config_t *c = config_new();
  tpool_config_error_t err;

  (void)state;
  assert_int_equal(c->nschedules, 0);
  assert_true(schedule_defaults.every_s == 60);
  assert_true(schedule_defaults.jitter == 0);
  assert_string_equal(schedule_defaults.overlap, "skip");
  assert_true(schedule_defaults.enabled);
  assert_int_equal(schedule_defaults.alert_after, 0);
  assert_string_equal(schedule_defaults.pool, "");
  assert_string_equal(schedule_defaults.task, "");

  assert_int_equal(server_config_parse(c, good, strlen(good), "s", &err), 0);
  assert_int_equal(c->nschedules, 3);
  schedule_options_t *b = &c->schedules[0], *r = &c->schedules[1],
                     *q = &c->schedules[2];
  assert_string_equal(b->name, "backup");
  assert_int_equal(b->line, 1);
  assert_string_equal(b->pool, "io");
  assert_true(b->every_s == 0.001);
  assert_true(b->jitter == 0.25);
  assert_string_equal(b->overlap, "queue");
  assert_int_equal(schedule_overlap(b), TPOOL_OVERLAP_QUEUE);
  assert_false(b->enabled);
  assert_int_equal(b->alert_after, 3);
  assert_string_equal(b->task,
                      "{\"name\": \"nightly\", \"work\": \"hash\", \"bytes\": "
                      "64, \"attempts\": 2, \"start_timeout_s\": 5}");
  /* Only a task: the defaults, and the pool its name is routed to. */
  assert_string_equal(r->name, "reports.daily");
  assert_int_equal(r->line, 11);
  assert_string_equal(r->pool, "");
  assert_true(r->every_s == 60);
  assert_true(r->jitter == 0);
  assert_string_equal(r->overlap, "skip");
  assert_int_equal(schedule_overlap(r), TPOOL_OVERLAP_SKIP);
  assert_true(r->enabled);
  assert_int_equal(r->alert_after, 0);
  assert_string_equal(q->name, "q");
  assert_true(q->every_s == 2592000);
  assert_true(q->jitter == 1);
  assert_int_equal(q->alert_after, 1000000);
  assert_int_equal(server_config_check(c, &err), 0);
  /* A second file replaces the family. */
  static const char one[] = "[schedule.x]\npool = io\n" TASK_SLEEP;
  assert_int_equal(server_config_parse(c, one, strlen(one), "s", &err), 0);
  assert_int_equal(c->nschedules, 1);
  assert_string_equal(c->schedules[0].name, "x");
  assert_int_equal(c->schedules[0].line, 1);
  free(c);

  static const struct {
    const char *text, *want;
  } bad[] = {
      /* The loader's own checks, on the key's line. */
      {"[schedule.a]\nevery = 0\n" TASK_SLEEP,
       "s:2: [schedule.a] every: expected seconds in 0.001..2.592e+06, got "
       "\"0\""},
      {"[schedule.a]\nevery = 2592000.5\n" TASK_SLEEP,
       "s:2: [schedule.a] every: expected seconds in 0.001..2.592e+06, got "
       "\"2592000.5\""},
      {"[schedule.a]\nevery = 1m\n" TASK_SLEEP,
       "s:2: [schedule.a] every: expected seconds in 0.001..2.592e+06, got "
       "\"1m\""},
      {"[schedule.a]\njitter = 1.5\n" TASK_SLEEP,
       "s:2: [schedule.a] jitter: expected a fraction in 0..1, got \"1.5\""},
      {"[schedule.a]\noverlap = wait\n" TASK_SLEEP,
       "s:2: [schedule.a] overlap: expected skip or queue, got \"wait\""},
      {"[schedule.a]\noverlap = queued\n" TASK_SLEEP,
       "s:2: [schedule.a] overlap: expected skip or queue, got \"queued\""},
      {"[schedule.a]\noverlap =\n" TASK_SLEEP,
       "s:2: [schedule.a] overlap: expected skip or queue, got \"\""},
      {"[schedule.a]\nenabled = maybe\n" TASK_SLEEP,
       "s:2: [schedule.a] enabled: expected true or false, got \"maybe\""},
      {"[schedule.a]\nalert_after = 1000001\n" TASK_SLEEP,
       "s:2: [schedule.a] alert_after: expected 0..1000000, got \"1000001\""},
      {"[schedule.a]\nalert_after = -1\n" TASK_SLEEP,
       "s:2: [schedule.a] alert_after: expected 0..1000000, got \"-1\""},
      {"[schedule.a]\npool = GPU\n" TASK_SLEEP,
       "s:2: [schedule.a] pool: expected a pool name (a-z, 0-9, _ and -), or "
       "nothing, got \"GPU\""},
      {"[schedule.a]\npool = a-very-long-pool-name-of-32-chars\n" TASK_SLEEP,
       "s:2: [schedule.a] pool: expected a pool name (a-z, 0-9, _ and -), or "
       "nothing, got \"a-very-long-pool-name-of-32-chars\""},
      {"[schedule.a]\ncount = 1\n", "s:2: [schedule.a] count: unknown key"},
      {"[schedule.a]\n" TASK_SLEEP "every = 1\nevery = 2\n",
       "s:4: [schedule.a] every: set twice (first at line 3)"},
      {"[schedule.a]\n" TASK_SLEEP "[schedule.a]\n" TASK_SLEEP,
       "s:3: [schedule.a]: duplicate section (first at line 1)"},
      {"[schedule.Big]\n" TASK_SLEEP,
       "s:1: [schedule.Big]: schedule name must be 1..31 of a-z, 0-9, _, - "
       "and ."},
      /* After the load, on the section's line. */
      {"[general]\n\n[schedule.a]\nevery = 1\n",
       "s:3: [schedule.a] task: missing (the JSON body of POST "
       "/tasks/{pool}, on one line)"},
      {"[schedule.a]\ntask = {\"work\": \"sleep\"\n",
       "s:1: [schedule.a] task: body: invalid JSON at line 1, column 16: "
       "'}' expected near end of file"},
      {"[schedule.a]\ntask = [1]\n",
       "s:1: [schedule.a] task: body: expected a JSON object"},
      {"[schedule.a]\ntask = {\"work\": \"nap\"}\n",
       "s:1: [schedule.a] task: work: expected \"sleep\", \"spin\", \"fail\", "
       "\"query\", \"dense\", \"embed\", \"hash\", \"read\" or \"flaky\""},
      {"[schedule.a]\ntask = {\"work\": \"read\", \"bytes\": 16777217}\n",
       "s:1: [schedule.a] task: bytes: expected an integer 0..16777216"},
      {"[schedule.a]\ntask = {\"work\": \"sleep\", \"count\": 2}\n",
       "s:1: [schedule.a] task: count: a schedule runs one task per run "
       "(expected 1, got 2)"},
      {"[schedule.a]\ntask = {\"work\": \"sleep\", \"delay_s\": 1}\n",
       "s:1: [schedule.a] task: delay_s: not for a schedule (its runs "
       "follow every)"},
      {"[schedule.a]\ntask = {\"work\": \"flaky\", \"failures\": 1}\n",
       "s:1: [schedule.a] task: work: \"flaky\" cannot be scheduled (it "
       "counts its runs across the attempts of one task, which a scheduled "
       "run does not keep); use \"fail\" for runs that fail"},
      {"[schedule.a]\npool = gpu\n" TASK_SLEEP,
       "s:1: [schedule.a] pool: no pool named \"gpu\""},
      {"[pool.db]\nenabled = false\n[schedule.a]\npool = db\n" TASK_SLEEP,
       "s:3: [schedule.a] pool: pool \"db\" is disabled"},
      {"[schedule.a]\n" TASK_SLEEP,
       "s:1: [schedule.a] pool: none set, and no [routes] pattern matches "
       "the task's name \"a\""},
      {"[routes]\nr.* = io\n[schedule.r.x]\n"
       "task = {\"name\": \"other\", \"work\": \"sleep\"}\n",
       "s:3: [schedule.r.x] pool: none set, and no [routes] pattern matches "
       "the task's name \"other\""},
      {"[schedule.a]\npool = cpu\ntask = {\"work\": \"query\", \"key\": 1}\n",
       "s:1: [schedule.a] task: work: \"query\" runs on the db pool, not on "
       "\"cpu\""},
      {"[routes]\n* = io\n[schedule.a]\n"
       "task = {\"work\": \"query\", \"key\": 1}\n",
       "s:3: [schedule.a] task: work: \"query\" runs on the db pool, not on "
       "\"io\""},
      /* The first error by line, and all or nothing. */
      {"[schedule.a]\npool = io\n" TASK_SLEEP "[schedule.b]\nevery = x\n",
       "s:5: [schedule.b] every: expected seconds in 0.001..2.592e+06, got "
       "\"x\""},
      {"[schedule.a]\npool = io\n" TASK_SLEEP "[schedule.b]\npool = io\n"
       "[pool.cpu]\nworkers = 2\n",
       "s:4: [schedule.b] task: missing (the JSON body of POST "
       "/tasks/{pool}, on one line)"},
  };
  size_t failed = 0;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    failed += !schedule_refuse(bad[i].text, bad[i].want);
  assert_int_equal(failed, 0);
}

/* At most SCHEDULES_MAX sections; a task as long as a line allows. */
static void test_config_schedules_limits(void **state) {
  size_t cap = (SCHEDULES_MAX + 1) * 64 + 256;
  char *text = malloc(cap);
  server_config_t *c = config_new();
  tpool_config_error_t err;
  size_t n = 0;

  (void)state;
  assert_non_null(text);
  for (unsigned i = 0; i < SCHEDULES_MAX; i++)
    n += (size_t)snprintf(text + n, cap - n,
                          "[schedule.s%u]\npool = io\n" TASK_SLEEP, i);
  assert_int_equal(server_config_parse(c, text, n, "m", &err), 0);
  assert_int_equal(c->nschedules, SCHEDULES_MAX);
  assert_string_equal(c->schedules[SCHEDULES_MAX - 1].name, "s255");
  n += (size_t)snprintf(text + n, cap - n, "[schedule.one-more]\n");
  server_config_init(c);
  assert_int_equal(server_config_parse(c, text, n, "m", &err), -EINVAL);
  assert_string_equal(err.text, "m:769: [schedule.one-more]: too many "
                                "[schedule.*] sections (at most 256)");
  assert_int_equal(c->nschedules, 0);

  /* 198 bytes: "task = " and 191 bytes of JSON. */
  n = (size_t)snprintf(text, cap,
                       "[schedule.long]\npool = io\n"
                       "task = {\"work\": \"embed\", \"text\": \"%0*d\"}",
                       191 - 29, 7);
  assert_int_equal(server_config_parse(c, text, n, "m", &err), 0);
  assert_int_equal(strlen(c->schedules[0].task), 191);
  text[n++] = ' ';
  assert_int_equal(server_config_parse(c, text, n, "m", &err), -EINVAL);
  assert_string_equal(err.text, "m:3: line longer than 198 bytes");
  free(text);
  free(c);
}

/* Values set in code: named "options" and the section. */
static void test_config_schedules_set_in_code(void **state) {
  server_config_t *c = config_new();
  tpool_config_error_t err;

  (void)state;
  c->nschedules = 1;
  c->schedules[0] = schedule_defaults;
  strcpy(c->schedules[0].name, "coded");
  strcpy(c->schedules[0].pool, "cpu");
  check_fails_with(c, "options: [schedule.coded] task: missing (the JSON "
                      "body of POST /tasks/{pool}, on one line)");
  strcpy(c->schedules[0].task, "{\"work\":\"spin\",\"ms\":5}");
  assert_int_equal(server_config_check(c, &err), 0);
  c->schedules[0].every_s = 0;
  check_fails_with(c, "options: [schedule.coded] every: expected seconds in "
                      "0.001..2.592e+06, got \"0\"");
  c->schedules[0].every_s = 1;
  strcpy(c->schedules[0].overlap, "both");
  check_fails_with(c, "options: [schedule.coded] overlap: expected skip or "
                      "queue, got \"both\"");
  free(c);
}

/* Values set in code, with the loader's words. */
static void test_config_check_ranges(void **state) {
  server_config_t *c = config_new();

  (void)state;
  strcpy(c->server.listen.host, "localhost");
  check_fails_with(c,
                   "options: [http] listen: expected HOST:PORT with a numeric "
                   "IPv4 or [IPv6] address and a port in 0..65535, got "
                   "\"localhost:8080\"");
  strcpy(c->server.listen.host, "::");
  c->server.listen.port = 0;
  strcpy(c->http.admin_token, "tab\there");
  check_fails_with(c,
                   "options: [http] admin_token: expected up to 128 printable "
                   "characters without spaces");
  c->http.admin_token[0] = '\0';
  c->http.max_body_size = TPOOL_HTTP_BODY_MAX + 1;
  check_fails_with(c,
                   "options: [http] max_body_size: expected a size in 0..64M "
                   "(bytes, or with a K, M or G suffix), got \"67108865\"");
  c->http.max_body_size = 0;
  assert_int_equal(server_config_check(c, NULL), 0);
  c->server.demo.embedding_dim = 0;
  check_fails_with(
      c, "options: [demo] embedding_dim: expected 1..4096, got \"0\"");
  c->server.demo.embedding_dim = DEMO_EMBEDDING_DIM_MAX;
  c->server.demo.db_rows = DEMO_DB_ROWS_MAX + 1;
  check_fails_with(c, "options: [demo] db_rows: expected 1..10000000, got "
                      "\"10000001\"");
  c->server.demo.db_rows = 1;
  c->server.demo.data_dir[0] = '\0';
  check_fails_with(c,
                   "options: [demo] data_dir: expected a path of 1..255 bytes");
  strcpy(c->server.demo.data_dir, "/");
  assert_int_equal(server_config_check(c, NULL), 0);
  /* From a file: named by it. */
  strcpy(c->core.config_path, "/etc/tpool.ini");
  c->server.loop_threads = 0;
  check_fails_with(c, "/etc/tpool.ini: [http] loop_threads: expected 1..64, "
                      "got \"0\"");
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_bad_files_fail_with_their_message),
      cmocka_unit_test(test_config_shipped_file_is_the_defaults),
      cmocka_unit_test(test_config_every_key),
      cmocka_unit_test(test_config_parse_longest_line),
      cmocka_unit_test(test_config_parse_values),
      cmocka_unit_test(test_config_http_is_shared),
#ifdef TPOOL_SERVER_REDIS
      cmocka_unit_test(test_config_redis),
#endif
      cmocka_unit_test(test_config_schedules),
      cmocka_unit_test(test_config_schedules_limits),
      cmocka_unit_test(test_config_schedules_set_in_code),
      cmocka_unit_test(test_config_check_ranges),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
