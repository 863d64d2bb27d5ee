/*
 * test_config.c — the option defaults, the INI loader and
 * tpool_options_check().
 *
 * Error cases are data: every tests/data/config/bad/<case>.ini must fail to
 * load with the message in <case>.err and leave the options untouched. The
 * data directory comes from $TPOOL_TEST_DATA (tests/data), the shipped
 * config.ini from $TPOOL_SOURCE_ROOT (the repository root).
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* $name joined with rel; fails the test if the variable is unset. */
static void env_path(char *out, size_t size, const char *name,
                     const char *rel) {
  const char *dir = getenv(name);
  int n;

  if (dir == NULL || dir[0] == '\0')
    fail_msg("set %s (see the top of tests/test_config.c)", name);
  n = snprintf(out, size, "%s/%s", dir, rel);
  assert_true(n > 0 && (size_t)n < size);
}

/* The first line of a file, without its newline. */
static void read_first_line(const char *path, char *out, size_t size) {
  FILE *f = fopen(path, "r");

  assert_non_null(f);
  if (fgets(out, (int)size, f) == NULL)
    out[0] = '\0';
  out[strcspn(out, "\n")] = '\0';
  fclose(f);
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the *.ini files in dir, sorted (caller frees each, and the
   array). */
static size_t list_ini_files(const char *dir, char ***out) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, len;

  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".ini") != 0)
      continue;
    names = realloc(names, (n + 1) * sizeof(*names));
    assert_non_null(names);
    names[n] = strdup(e->d_name);
    assert_non_null(names[n]);
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof(*names), compare_names);
  *out = names;
  return n;
}

/* Loads `path` into defaults that must come back unchanged; returns the
   loader's code and leaves its error in *err. */
static int load_expecting_no_change(const char *path,
                                    tpool_config_error_t *err) {
  tpool_options_t *o = malloc(sizeof(*o)), *copy = malloc(sizeof(*o));
  int rc;

  assert_non_null(o);
  assert_non_null(copy);
  tpool_options_init(o);
  memcpy(copy, o, sizeof(*o));
  rc = tpool_config_load(o, path, err);
  assert_memory_equal(o, copy, sizeof(*o));
  free(o);
  free(copy);
  return rc;
}

/* Runs one bad case in the current directory; returns true if it failed
   as its .err file says. */
static bool run_bad_case(const char *ini) {
  tpool_config_error_t err;
  char errfile[PATH_MAX], want[1024];
  int rc;

  snprintf(errfile, sizeof(errfile), "%.*s.err", (int)(strlen(ini) - 4), ini);
  read_first_line(errfile, want, sizeof(want));
  memset(&err, 0xa5, sizeof(err));
  rc = load_expecting_no_change(ini, &err);
  if (rc != -EINVAL || strcmp(err.text, want) != 0) {
    print_error("%s: rc %d\n  got:  %s\n  want: %s\n", ini, rc, err.text, want);
    return false;
  }
  /* The parts agree with the text. */
  assert_string_equal(err.file, ini);
  assert_non_null(strstr(err.text, err.message));
  assert_non_null(strstr(err.text, err.key));
  return true;
}

/* ------------------------------------------------------------------------
 * Defaults and the pool list
 * ------------------------------------------------------------------------ */

static void test_config_defaults(void **state) {
  tpool_options_t o;
  static const struct {
    const char *name;
    unsigned workers;
  } want[] = {{"io", 50},
              {"cpu", 30},
              {"inference", 20},
              {"embedding", 15},
              {"db", 25}};
  size_t i;
  tpool_config_error_t err;

  (void)state;
  tpool_options_init(&o);
  assert_false(o.verbose);
  assert_true(o.status_interval_s == 10.0);
  assert_int_equal(o.log_level, TPOOL_LOG_INFO);
  assert_string_equal(o.log_path, "stderr");
  assert_null(o.log_cb);
  assert_int_equal(o.completion_batch, 256);
  assert_string_equal(o.http.listen_host, "127.0.0.1");
  assert_int_equal(o.http.listen_port, 8080);
  assert_string_equal(o.http.admin_token, "");
  assert_int_equal(o.http.max_header_size, 8192);
  assert_int_equal(o.http.max_body_size, 1024 * 1024);
  assert_true(o.http.timeout_s == 30.0);
  assert_int_equal(o.http.loop_threads, 1);
  assert_string_equal(o.config_path, "");
  assert_int_equal(o.npools, 5);
  for (i = 0; i < 5; i++) {
    const tpool_pool_options_t *po = &o.pools[i];
    assert_string_equal(po->name, want[i].name);
    assert_int_equal(po->max_workers, want[i].workers);
    assert_true(po->enabled);
    assert_int_equal(po->min_workers, TPOOL_MIN_EQUALS_MAX);
    assert_int_equal(po->queue_limit, TPOOL__QUEUE_DEFAULT);
    assert_true(po->idle_timeout_s == 60.0);
    assert_int_equal(po->stack_size, TPOOL__STACK_DEFAULT);
    assert_true(po->soft_timeout_s == 60.0);
    assert_string_equal(po->thread_name, "");
    assert_false(po->has_affinity);
    assert_int_equal(po->line, 0);
  }
  assert_int_equal(tpool_options_check(&o, &err), 0);
}

static void test_config_pool_list(void **state) {
  tpool_options_t o;
  tpool_pool_options_t *po = NULL, other;
  char name[16];
  int i;

  (void)state;
  tpool_options_init(&o);
  assert_ptr_equal(tpool_options_pool(&o, "db"), &o.pools[4]);
  assert_null(tpool_options_pool(&o, "gpu"));
  assert_null(tpool_options_pool(&o, NULL));

  assert_int_equal(tpool_options_add_pool(&o, "gpu", &po), 0);
  assert_ptr_equal(po, &o.pools[5]);
  assert_int_equal(po->max_workers, 4);
  assert_int_equal(po->min_workers, TPOOL_MIN_EQUALS_MAX);
  assert_ptr_equal(tpool_options_pool(&o, "gpu"), po);

  assert_int_equal(tpool_options_add_pool(&o, "gpu", &po), -EEXIST);
  assert_int_equal(tpool_options_add_pool(&o, "cpu", NULL), -EEXIST);
  assert_int_equal(tpool_options_add_pool(&o, "", &po), -EINVAL);
  assert_int_equal(tpool_options_add_pool(&o, "GPU", &po), -EINVAL);
  assert_int_equal(tpool_options_add_pool(&o, NULL, &po), -EINVAL);
  assert_int_equal(
      tpool_options_add_pool(&o, "a23456789012345678901234567890123", &po),
      -EINVAL);
  assert_int_equal(
      tpool_options_add_pool(&o, "a234567890123456789012345678901", &po), 0);
  for (i = (int)o.npools; i < TPOOL_POOLS_MAX; i++) {
    snprintf(name, sizeof(name), "p%d", i);
    assert_int_equal(tpool_options_add_pool(&o, name, NULL), 0);
  }
  assert_int_equal(tpool_options_add_pool(&o, "one-more", &po), -ENOSPC);
  assert_int_equal(o.npools, TPOOL_POOLS_MAX);

  /* A long name is truncated; a preset is found by name. */
  tpool_pool_options_init(&other, "a234567890123456789012345678901234567");
  assert_int_equal(strlen(other.name), TPOOL_NAME_MAX - 1);
  tpool_pool_options_init(&other, "inference");
  assert_int_equal(other.max_workers, 20);

  assert_true(tpool__pool_name_is_valid("a-b_c9"));
  assert_false(tpool__pool_name_is_valid("a.b"));
  assert_false(tpool__pool_name_is_valid(NULL));
}

/* ------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------ */

static void test_config_bad_files_fail_with_their_message(void **state) {
  char dir[PATH_MAX], **names;
  size_t n, i, failed = 0;
  int home;

  (void)state;
  env_path(dir, sizeof(dir), "TPOOL_TEST_DATA", "config/bad");
  n = list_ini_files(dir, &names);
  assert_true(n >= 20);

  /* Run in the directory so that messages carry the bare file name. */
  home = open(".", O_RDONLY | O_DIRECTORY);
  assert_true(home >= 0);
  assert_int_equal(chdir(dir), 0);
  for (i = 0; i < n; i++) {
    if (!run_bad_case(names[i]))
      failed++;
    free(names[i]);
  }
  free(names);
  assert_int_equal(fchdir(home), 0);
  close(home);
  print_message("%zu bad config files checked\n", n);
  assert_int_equal(failed, 0);
}

static void test_config_missing_file(void **state) {
  tpool_config_error_t err;
  char path[PATH_MAX];

  (void)state;
  env_path(path, sizeof(path), "TPOOL_TEST_DATA", "config/no-such.ini");
  assert_int_equal(load_expecting_no_change(path, &err), -ENOENT);
  assert_string_equal(err.file, path);
  assert_int_equal(err.line, 0);
  assert_string_equal(err.message, "cannot open: No such file or directory");
  assert_string_equal(strchr(err.text, ' ') + 1, err.message);
  assert_int_equal(load_expecting_no_change(path, NULL), -ENOENT);
}

static void test_config_directory_is_unreadable(void **state) {
  tpool_config_error_t err;
  char path[PATH_MAX], want[PATH_MAX + 64];

  (void)state;
  env_path(path, sizeof(path), "TPOOL_TEST_DATA", "config");
  assert_int_equal(load_expecting_no_change(path, &err), -EIO);
  snprintf(want, sizeof(want), "%s: cannot read: Is a directory", path);
  assert_string_equal(err.text, want);
}

static void test_config_too_large(void **state) {
  tpool_options_t o;
  tpool_config_error_t err;
  size_t len = TPOOL__CONFIG_FILE_MAX + 1;
  char *text = malloc(len), path[] = "/tmp/tpool-test-config-XXXXXX";
  int fd;

  (void)state;
  assert_non_null(text);
  memset(text, '\n', len);
  tpool_options_init(&o);
  assert_int_equal(tpool_config_parse(&o, text, len, "big.ini", &err), -EINVAL);
  assert_string_equal(err.text, "big.ini: larger than 1 MiB");
  /* Exactly the limit is fine. */
  assert_int_equal(tpool_config_parse(&o, text, len - 1, "big.ini", &err), 0);

  fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
  assert_int_equal(load_expecting_no_change(path, &err), -EINVAL);
  assert_int_equal(strcmp(err.message, "larger than 1 MiB"), 0);
  unlink(path);
  free(text);
}

static void test_config_shipped_file_is_the_defaults(void **state) {
  tpool_options_t o, defaults;
  tpool_config_error_t err;
  char path[PATH_MAX];
  size_t i;

  (void)state;
  env_path(path, sizeof(path), "TPOOL_SOURCE_ROOT", "config.ini");
  tpool_options_init(&o);
  assert_int_equal(tpool_config_load(&o, path, &err), 0);
  assert_string_equal(o.config_path, path);
  assert_false(o.verbose);
  assert_string_equal(o.http.listen_host, "127.0.0.1");
  assert_int_equal(o.npools, 5);
  assert_string_equal(o.pools[0].name, "io");
  assert_int_equal(o.pools[0].max_workers, 50);
  assert_int_equal(tpool_options_pool(&o, "cpu")->max_workers, 30);
  assert_int_equal(tpool_options_pool(&o, "inference")->max_workers, 20);
  assert_int_equal(tpool_options_pool(&o, "embedding")->max_workers, 15);
  assert_int_equal(tpool_options_pool(&o, "db")->max_workers, 25);

  /* Apart from where it came from, it is exactly tpool_options_init(). */
  tpool_options_init(&defaults);
  memcpy(defaults.config_path, o.config_path, sizeof(o.config_path));
  for (i = 0; i < 5; i++) {
    assert_true(o.pools[i].line > 0);
    defaults.pools[i].line = o.pools[i].line;
  }
  assert_memory_equal(&o, &defaults, sizeof(o));
}

static void test_config_every_key(void **state) {
  tpool_options_t o;
  tpool_config_error_t err;
  tpool_pool_options_t *cpu, *gpu;
  char path[PATH_MAX];
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned c;

  (void)state;
  env_path(path, sizeof(path), "TPOOL_TEST_DATA", "config/all_keys.ini");
  tpool_options_init(&o);
  assert_int_equal(tpool_config_load(&o, path, &err), 0);
  assert_string_equal(err.text, "");

  assert_true(o.verbose);
  assert_true(o.status_interval_s == 2.5);
  assert_int_equal(o.log_level, TPOOL_LOG_DEBUG);
  assert_true(o.shutdown_timeout_s == 0);
  assert_string_equal(o.log_path, "/var/log/tpool.log");
  assert_string_equal(o.http.listen_host, "::1");
  assert_int_equal(o.http.listen_port, 0);
  assert_string_equal(o.http.admin_token, "s3cr3t;token!");
  assert_int_equal(o.http.max_header_size, 16 * 1024);
  assert_int_equal(o.http.max_body_size, 0);
  assert_true(o.http.timeout_s == 0.5);
  assert_int_equal(o.http.loop_threads, 64);
  assert_string_equal(o.demo.data_dir, "/var/lib/tpool demo");
  assert_int_equal(o.demo.embedding_dim, 4096);
  assert_int_equal(o.demo.db_rows, 1);

  cpu = tpool_options_pool(&o, "cpu");
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
  for (c = 0; c < TPOOL_CPUS_MAX; c++) {
    bool want = c <= 3 || c == 6 || c == 1023;
    assert_int_equal((cpu->cpu_affinity[c / 64] >> (c % 64)) & 1, want);
  }

  assert_false(tpool_options_pool(&o, "db")->enabled);
  assert_int_equal(tpool_options_pool(&o, "io")->max_workers, 7);
  assert_int_equal(tpool_options_pool(&o, "io")->min_workers,
                   TPOOL_MIN_EQUALS_MAX);
  assert_int_equal(tpool_options_pool(&o, "inference")->line, 0);

  assert_int_equal(o.npools, 6);
  gpu = &o.pools[5];
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
}

/* A file overlays what is there: a second load keeps the first's pools. */
static void test_config_parse_overlays(void **state) {
  static const char first[] = "[pool.gpu]\nworkers = 2\n[general]\n"
                              "verbose = on\n";
  static const char second[] = "\r\n[pool.gpu]\r\nmin_workers = 1\r\n"
                               "[pool.cpu]\r\nworkers = 3";
  tpool_options_t o;
  tpool_config_error_t err;

  (void)state;
  tpool_options_init(&o);
  assert_int_equal(
      tpool_config_parse(&o, first, strlen(first), "one.ini", &err), 0);
  assert_int_equal(
      tpool_config_parse(&o, second, strlen(second), "two.ini", NULL), 0);
  assert_string_equal(o.config_path, "two.ini");
  assert_true(o.verbose);
  assert_int_equal(tpool_options_pool(&o, "gpu")->max_workers, 2);
  assert_int_equal(tpool_options_pool(&o, "gpu")->min_workers, 1);
  assert_int_equal(tpool_options_pool(&o, "gpu")->line, 2);
  assert_int_equal(tpool_options_pool(&o, "cpu")->max_workers, 3);
  assert_int_equal(o.npools, 6);

  /* Empty text changes nothing but the name. */
  assert_int_equal(tpool_config_parse(&o, NULL, 0, NULL, &err), 0);
  assert_string_equal(o.config_path, "config");
}

static void test_config_parse_rejects_nul(void **state) {
  static const char text[] = "[general]\nverbose = tr\0ue\n";
  tpool_options_t o, copy;
  tpool_config_error_t err;

  (void)state;
  tpool_options_init(&o);
  copy = o;
  assert_int_equal(tpool_config_parse(&o, text, sizeof(text) - 1, "mem", &err),
                   -EINVAL);
  assert_memory_equal(&o, &copy, sizeof(o));
  assert_string_equal(err.text, "mem:2: NUL byte in line");
  assert_string_equal(err.file, "mem");
  assert_int_equal(err.line, 2);
  assert_string_equal(err.key, "");
  assert_string_equal(err.message, "NUL byte in line");
}

/* 198 bytes is the longest line, also as the last line without "\n". */
static void test_config_parse_longest_line(void **state) {
  char text[256];
  tpool_options_t o;
  tpool_config_error_t err;
  int n;

  (void)state;
  tpool_options_init(&o);
  n = snprintf(text, sizeof(text), "[http]\nadmin_token = %0*d", 184, 7);
  assert_int_equal(n - 7, TPOOL__CONFIG_LINE_MAX);
  assert_int_equal(tpool_config_parse(&o, text, (size_t)n, "t", &err), -EINVAL);
  assert_string_equal(err.text, "t:2: [http] admin_token: expected up to 128 "
                                "printable characters without spaces");
  n = snprintf(text, sizeof(text), "[general]\nlog = /%0*d", 191, 7);
  assert_int_equal(n - 10, TPOOL__CONFIG_LINE_MAX);
  assert_int_equal(tpool_config_parse(&o, text, (size_t)n, "t", &err), 0);
  assert_int_equal(strlen(o.log_path), 192);
  text[n++] = '9';
  assert_int_equal(tpool_config_parse(&o, text, (size_t)n, "t", &err), -EINVAL);
  assert_string_equal(err.text, "t:2: line longer than 198 bytes");
}

static void test_config_parse_values(void **state) {
  static const struct {
    const char *text;
    int rc;
  } cases[] = {
      {"[general]\nverbose = TRUE\n", 0},
      {"[general]\nverbose = 1\n", 0},
      {"[general]\nstatus_interval = 007.50\n", 0},
      {"[general]\nstatus_interval = 1e2\n", -EINVAL},
      {"[general]\nstatus_interval = 0x10\n", -EINVAL},
      {"[general]\nstatus_interval = inf\n", -EINVAL},
      {"[general]\nstatus_interval = 86400.1\n", -EINVAL},
      {"[general]\nstatus_interval = 1.\n", -EINVAL},
      {"[general]\nstatus_interval = .5\n", -EINVAL},
      {"[general]\nstatus_interval = +1\n", -EINVAL},
      {"[general]\nstatus_interval = 1.2.3\n", -EINVAL},
      {"[general]\nstatus_interval = 0,5\n", -EINVAL},
      {"[pool.io]\nsoft_timeout = -0\n", -EINVAL},
      {"[general]\nlog = stdout\n", 0},
      {"[http]\nlisten = 0.0.0.0:65535\n", 0},
      {"[http]\nlisten = [fe80::1%eth0]:80\n", -EINVAL},
      {"[http]\nlisten = 127.1:80\n", -EINVAL},
      {"[http]\nlisten = 1.2.3.4:\n", -EINVAL},
      {"[http]\nadmin_token = \n", 0},
      {"[http]\nmax_body_size = 64M\n", 0},
      {"[http]\nmax_body_size = 64MB\n", -EINVAL},
      {"[pool.io]\nstack_size = 1g\n", 0},
      {"[pool.io]\nstack_size = 17179869184G\n", -EINVAL},
      {"[pool.io]\nworkers = 4096\n", 0},
      {"[pool.io]\nworkers = AUTO\n", -EINVAL},
      {"[pool.io]\nmin_workers = 0\n", 0},
      {"[pool.io]\nsoft_timeout = 86400\n", 0},
      {"[pool.io]\nspin = 0.00005\n", 0},
      {"[pool.io]\nspin = 0.01\n", 0},
      {"[pool.io]\nspin = 0.011\n", -EINVAL},
      {"[pool.io]\ncpu_affinity = 1023\n", 0},
      {"[pool.io]\ncpu_affinity =\n", -EINVAL},
      {"[pool.io]\ncpu_affinity = 1--2\n", -EINVAL},
      {"[pool.io]\n[pool.cpu]\n[pool.new]\n[general]\n[http]\n", 0},
      {"  [ pool.io ]  # comment\n", 0},
      {"[pool.io]\nworkers=4;not a comment\n", -EINVAL},
  };
  tpool_options_t o;
  tpool_config_error_t err;
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tpool_options_init(&o);
    if (tpool_config_parse(&o, cases[i].text, strlen(cases[i].text), "v",
                           &err) != cases[i].rc)
      fail_msg("case %zu (%s): got \"%s\"", i, cases[i].text, err.text);
  }
}

/* Seconds are read with a '.' whatever LC_NUMERIC says, and only with it:
   under a decimal-comma locale strtod() would refuse "0.25". */
static void test_config_seconds_ignore_locale(void **state) {
  static const char *const comma_locales[] = {"de_DE.UTF-8", "fr_FR.UTF-8"};
  static const char dot[] = "[pool.io]\nidle_timeout = 0.25\n";
  static const char comma[] = "[pool.io]\nidle_timeout = 0,25\n";
  const char *used = NULL;
  char point[8];
  tpool_options_t o, copy;
  tpool_config_error_t err;
  int rc_dot, rc_comma;
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(comma_locales) / sizeof(comma_locales[0]); i++) {
    if (setlocale(LC_NUMERIC, comma_locales[i]) != NULL) {
      used = comma_locales[i];
      break;
    }
  }
  snprintf(point, sizeof(point), "%s", localeconv()->decimal_point);
  tpool_options_init(&o);
  rc_dot = tpool_config_parse(&o, dot, strlen(dot), "dot.ini", &err);
  copy = o;
  rc_comma = tpool_config_parse(&copy, comma, strlen(comma), "comma.ini", NULL);
  /* Back to "C" before any assertion can end the test. */
  assert_non_null(setlocale(LC_NUMERIC, "C"));

  if (used != NULL) {
    print_message("LC_NUMERIC was %s\n", used);
    assert_string_equal(point, ",");
  } else {
    print_message("no decimal-comma locale installed; default locale only\n");
  }
  assert_int_equal(rc_dot, 0);
  assert_true(tpool_options_pool(&o, "io")->idle_timeout_s == 0.25);
  assert_int_equal(rc_comma, -EINVAL);
  assert_memory_equal(&copy, &o, sizeof(o));
}

/* ------------------------------------------------------------------------
 * tpool_options_check() on options built in code
 * ------------------------------------------------------------------------ */

static void check_fails_with(const tpool_options_t *o, const char *want) {
  tpool_config_error_t err;

  assert_int_equal(tpool_options_check(o, &err), -EINVAL);
  assert_string_equal(err.text, want);
}

static void test_config_check_min_above_max(void **state) {
  tpool_options_t o;

  (void)state;
  tpool_options_init(&o);
  tpool_options_pool(&o, "cpu")->min_workers = 40;
  check_fails_with(&o,
                   "options: [pool.cpu] min_workers: 40 is above workers (30)");

  /* From a file: the file and the pool's section line. */
  strcpy(o.config_path, "/etc/tpool.ini");
  tpool_options_pool(&o, "cpu")->line = 9;
  check_fails_with(&o, "/etc/tpool.ini:9: [pool.cpu] min_workers: 40 is above "
                       "workers (30)");

  /* The earliest line wins. */
  tpool_options_pool(&o, "db")->line = 4;
  tpool_options_pool(&o, "db")->queue_limit = 0;
  check_fails_with(&o, "/etc/tpool.ini:4: [pool.db] queue_limit: expected "
                       "1..10000000, got \"0\"");
  tpool_options_pool(&o, "cpu")->min_workers = 30;
  tpool_options_pool(&o, "db")->queue_limit = 1;
  assert_int_equal(tpool_options_check(&o, NULL), 0);
}

static void test_config_check_bad_names(void **state) {
  tpool_options_t o;

  (void)state;
  tpool_options_init(&o);
  strcpy(o.pools[1].name, "Bad!");
  check_fails_with(
      &o, "options: [pool.Bad!]: pool name must be 1..31 of a-z, 0-9, _ and -");
  strcpy(o.pools[1].name, "io");
  check_fails_with(&o, "options: [pool.io]: duplicate pool name");
  memset(o.pools[1].name, 'a', sizeof(o.pools[1].name));
  check_fails_with(&o, "options: [pool.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]: pool "
                       "name must be 1..31 of a-z, 0-9, _ and -");
}

static void ignore_log(tpool_log_level_t level, const char *msg, void *arg) {
  (void)level;
  (void)msg;
  (void)arg;
}

static void test_config_check_ranges(void **state) {
  tpool_options_t o;
  tpool_pool_options_t *io;

  (void)state;
  tpool_options_init(&o);
  io = &o.pools[0];
  io->max_workers = 0;
  check_fails_with(
      &o, "options: [pool.io] workers: expected 1..4096 or auto, got \"0\"");
  io->max_workers = 4;
  io->stack_size = 1000;
  check_fails_with(&o,
                   "options: [pool.io] stack_size: expected a size in 64K..1G "
                   "(bytes, or with a K, M or G suffix), got \"1000\"");
  io->stack_size = TPOOL__STACK_MIN;
  io->idle_timeout_s = -1;
  check_fails_with(&o, "options: [pool.io] idle_timeout: expected seconds in "
                       "0.01..86400, got \"-1\"");
  io->idle_timeout_s = 1;
  strcpy(io->thread_name, "a b");
  check_fails_with(&o,
                   "options: [pool.io] thread_name: expected 1..15 of A-Z a-z "
                   "0-9 _ . -, got \"a b\"");
  io->thread_name[0] = '\0';
  io->has_affinity = true;
  check_fails_with(&o,
                   "options: [pool.io] cpu_affinity: expected CPU numbers or "
                   "ranges in 0..1023 such as 0-3,6, got \"\"");
  io->cpu_affinity[15] = (uint64_t)1 << 63;
  assert_int_equal(tpool_options_check(&o, NULL), 0);

  o.completion_batch = 0;
  check_fails_with(&o,
                   "options: completion_batch: expected 1..65536, got \"0\"");
  o.completion_batch = TPOOL__BATCH_MAX;
  o.status_interval_s = 0;
  check_fails_with(&o,
                   "options: [general] status_interval: expected seconds above "
                   "0 and up to 86400, got \"0\"");
  o.status_interval_s = 0.001; /* code may go below the file's minimum */
  o.log_level = (tpool_log_level_t)7;
  check_fails_with(&o,
                   "options: [general] log_level: expected debug, info, warn "
                   "or error, got \"7\"");
  o.log_level = TPOOL_LOG_ERROR;
  o.log_path[0] = '\0';
  check_fails_with(&o,
                   "options: [general] log: expected stderr, stdout or a path "
                   "of up to 255 bytes");
  o.log_cb = ignore_log; /* a sink replaces the path */
  assert_int_equal(tpool_options_check(&o, NULL), 0);
  o.log_cb = NULL;
  strcpy(o.log_path, "stdout");
  strcpy(o.http.listen_host, "localhost");
  check_fails_with(&o,
                   "options: [http] listen: expected HOST:PORT with a numeric "
                   "IPv4 or [IPv6] address and a port in 0..65535, got "
                   "\"localhost:8080\"");
  strcpy(o.http.listen_host, "::");
  o.http.listen_port = 0;
  strcpy(o.http.admin_token, "tab\there");
  check_fails_with(&o,
                   "options: [http] admin_token: expected up to 128 printable "
                   "characters without spaces");
  o.http.admin_token[0] = '\0';
  o.http.max_body_size = TPOOL__BODY_MAX + 1;
  check_fails_with(&o,
                   "options: [http] max_body_size: expected a size in 0..64M "
                   "(bytes, or with a K, M or G suffix), got \"67108865\"");
  o.http.max_body_size = 0;
  assert_int_equal(tpool_options_check(&o, NULL), 0);
  o.demo.embedding_dim = 0;
  check_fails_with(
      &o, "options: [demo] embedding_dim: expected 1..4096, got \"0\"");
  o.demo.embedding_dim = TPOOL_DEMO_EMBEDDING_DIM_MAX;
  o.demo.db_rows = TPOOL_DEMO_DB_ROWS_MAX + 1;
  check_fails_with(&o, "options: [demo] db_rows: expected 1..10000000, got "
                       "\"10000001\"");
  o.demo.db_rows = 1;
  o.demo.data_dir[0] = '\0';
  check_fails_with(&o,
                   "options: [demo] data_dir: expected a path of 1..255 bytes");
  strcpy(o.demo.data_dir, "/");
  assert_int_equal(tpool_options_check(&o, NULL), 0);
}

static void test_config_check_needs_an_enabled_pool(void **state) {
  tpool_options_t o;
  size_t i;

  (void)state;
  tpool_options_init(&o);
  for (i = 0; i < o.npools; i++)
    o.pools[i].enabled = false;
  check_fails_with(&o, "options: no pool is enabled");
  o.npools = 0;
  check_fails_with(&o, "options: no pool is enabled");
  strcpy(o.config_path, "x.ini");
  check_fails_with(&o, "x.ini: no pool is enabled");
  o.npools = TPOOL_POOLS_MAX + 1;
  check_fails_with(&o, "x.ini: too many pools (at most 64)");
}

static void test_config_routes_keep_file_order(void **state) {
  (void)state;
  static const char text[] = "[routes]\n"
                             "reports.* = cpu\n"
                             "*.embed = embedding ; vectors\n"
                             "* = io\n"
                             "[pool.cpu]\n"
                             "workers = 2\n";
  tpool_options_t o;
  tpool_options_init(&o);
  tpool_config_error_t err;
  assert_int_equal(
      tpool_config_parse(&o, text, sizeof(text) - 1, "routes.ini", &err), 0);
  assert_int_equal(o.nroutes, 3);
  assert_string_equal(o.routes[0].pattern, "reports.*");
  assert_string_equal(o.routes[0].pool, "cpu");
  assert_int_equal(o.routes[0].line, 2);
  assert_string_equal(o.routes[1].pattern, "*.embed");
  assert_string_equal(o.routes[1].pool, "embedding");
  assert_string_equal(o.routes[2].pattern, "*");
  assert_string_equal(o.routes[2].pool, "io");
  assert_int_equal(o.routes[2].line, 4);
  /* A second [routes] is a duplicate section, as for any other. */
  static const char twice[] = "[routes]\n* = io\n[routes]\n";
  tpool_options_init(&o);
  assert_int_equal(
      tpool_config_parse(&o, twice, sizeof(twice) - 1, "twice.ini", &err),
      -EINVAL);
  assert_string_equal(err.text, "twice.ini:3: [routes]: duplicate section "
                                "(first at line 1)");
  assert_int_equal(o.nroutes, 0); /* unchanged */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_pool_list),
      cmocka_unit_test(test_config_routes_keep_file_order),
      cmocka_unit_test(test_config_bad_files_fail_with_their_message),
      cmocka_unit_test(test_config_missing_file),
      cmocka_unit_test(test_config_directory_is_unreadable),
      cmocka_unit_test(test_config_too_large),
      cmocka_unit_test(test_config_shipped_file_is_the_defaults),
      cmocka_unit_test(test_config_every_key),
      cmocka_unit_test(test_config_parse_overlays),
      cmocka_unit_test(test_config_parse_rejects_nul),
      cmocka_unit_test(test_config_parse_longest_line),
      cmocka_unit_test(test_config_parse_values),
      cmocka_unit_test(test_config_seconds_ignore_locale),
      cmocka_unit_test(test_config_check_min_above_max),
      cmocka_unit_test(test_config_check_bad_names),
      cmocka_unit_test(test_config_check_ranges),
      cmocka_unit_test(test_config_check_needs_an_enabled_pool),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
