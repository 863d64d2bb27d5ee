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
      cmocka_unit_test(test_config_check_ranges),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
