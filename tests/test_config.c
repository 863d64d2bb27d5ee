/*
 * test_config.c — the option defaults, the INI loader, tpool_options_check()
 * and the sections of other layers (tpool_config_load_sections()).
 *
 * Error cases are data: every tests/data/config/bad/<case>.ini must fail to
 * load with the message in <case>.err and leave the options untouched.
 * Here tpool's own loader runs the cases of tpool's own sections; those of
 * [http] and [demo], which the HTTP layer and tpool-server own, run
 * through the server's loader in test_server_config, with the shipped
 * config.ini and every key. The data directory comes from
 * $TPOOL_TEST_DATA (tests/data).
 */
#include "config_cases.h"
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

/* The loader under test, for cc_run_bad_cases(). */
static int core_load(const char *path, tpool_config_error_t *err) {
  return load_expecting_no_change(path, err);
}

/* The cases of the sections that tpool itself does not read ([http] and
   [demo], which the unknown-section message lists too). */
static bool needs_server_sections(const char *want) {
  return strstr(want, "[http]") != NULL || strstr(want, "[demo]") != NULL ||
         strstr(want, "[redis]") != NULL;
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
  size_t n, ran;

  (void)state;
  ran = cc_run_bad_cases(core_load, needs_server_sections, &n);
  assert_true(n >= 20);
  assert_true(ran >= 20);
}

static void test_config_missing_file(void **state) {
  tpool_config_error_t err;
  char path[PATH_MAX];

  (void)state;
  cc_env_path(path, sizeof(path), "TPOOL_TEST_DATA", "config/no-such.ini");
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
  cc_env_path(path, sizeof(path), "TPOOL_TEST_DATA", "config");
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

/* ------------------------------------------------------------------------
 * Sections of other layers
 * ------------------------------------------------------------------------ */

/* A layer's settings, one field of every type. */
typedef struct layer {
  bool on;
  unsigned count;
  size_t items, bytes;
  double wait_s, share;
  char dir[33];    /* PATH, 1..32 bytes */
  char secret[17]; /* TOKEN, 4..16 characters */
  tpool_config_address_t addr;
  char name[9]; /* STRING, 0..8 characters, starting with a letter */
} layer_t;

/* A second layer that shares [layer], and has [extra] too, both filling
   this one struct. */
typedef struct other {
  unsigned count; /* also a key of the first [layer]: never reached */
  unsigned level;
  size_t extra;
} other_t;

/* The check of the STRING key "name": empty, or a letter first. */
static bool name_valid(const char *v) {
  return v[0] == '\0' || (v[0] >= 'a' && v[0] <= 'z');
}

#define L(f) offsetof(layer_t, f)
#define O(f) offsetof(other_t, f)
static const tpool_config_key_t layer_keys[] = {
    {"on", TPOOL_CONFIG_BOOL, 0, 0, L(on), NULL, NULL},
    {"count", TPOOL_CONFIG_UINT, 1, 64, L(count), NULL, NULL},
    {"items", TPOOL_CONFIG_COUNT, 0, 1000, L(items), NULL, NULL},
    {"bytes", TPOOL_CONFIG_SIZE, 1024, 1048576, L(bytes), NULL, NULL},
    {"wait", TPOOL_CONFIG_SECONDS, 0.5, 60, L(wait_s), NULL, NULL},
    {"share", TPOOL_CONFIG_RATIO, 0.1, 1, L(share), NULL, NULL},
    {"dir", TPOOL_CONFIG_PATH, 1, 32, L(dir), NULL, NULL},
    {"secret", TPOOL_CONFIG_TOKEN, 4, 16, L(secret), NULL, NULL},
    {"addr", TPOOL_CONFIG_ADDRESS, 1024, 65535, L(addr), NULL, NULL},
    {"name", TPOOL_CONFIG_STRING, 0, 8, L(name), name_valid,
     "expected a-z first, up to 8 characters"},
};
static const tpool_config_key_t other_keys[] = {
    {"count", TPOOL_CONFIG_UINT, 0, 9, O(count), NULL, NULL},
    {"level", TPOOL_CONFIG_UINT, 0, 9, O(level), NULL, NULL},
};
static const tpool_config_key_t extra_keys[] = {
    {"extra", TPOOL_CONFIG_COUNT, 0, 100, O(extra), NULL, NULL},
};
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct layers {
  tpool_options_t o;
  layer_t layer;
  other_t other;
  tpool_config_section_t s[3];
} layers_t;

/* Defaults for all of them, and the three sections. */
static void layers_init(layers_t *l) {
  memset(l, 0, sizeof(*l));
  tpool_options_init(&l->o);
  l->layer.count = 2;
  l->layer.bytes = 4096;
  l->layer.wait_s = 1;
  l->layer.share = 0.5;
  strcpy(l->layer.dir, "/tmp");
  strcpy(l->layer.secret, "abcd");
  strcpy(l->layer.addr.host, "127.0.0.1");
  l->layer.addr.port = 8000;
  l->other.count = 7;
  l->s[0] = (tpool_config_section_t){"layer",
                                     layer_keys,
                                     NELEMS(layer_keys),
                                     &l->layer,
                                     sizeof(l->layer),
                                     0,
                                     NULL,
                                     NULL,
                                     0,
                                     0};
  l->s[1] = (tpool_config_section_t){"layer",
                                     other_keys,
                                     NELEMS(other_keys),
                                     &l->other,
                                     sizeof(l->other),
                                     0,
                                     NULL,
                                     NULL,
                                     0,
                                     0};
  l->s[2] = (tpool_config_section_t){"extra",
                                     extra_keys,
                                     NELEMS(extra_keys),
                                     &l->other,
                                     sizeof(l->other),
                                     0,
                                     NULL,
                                     NULL,
                                     0,
                                     0};
}

static int layers_parse(layers_t *l, const char *text,
                        tpool_config_error_t *err) {
  return tpool_config_parse_sections(&l->o, text, strlen(text), "t.ini", l->s,
                                     3, err);
}

/* Parses text, which must fail with `want`, and checks that nothing
   changed. */
static void layers_refuse(const char *text, const char *want) {
  layers_t *l = malloc(sizeof(*l)), *before = malloc(sizeof(*l));
  tpool_config_error_t err;

  assert_non_null(l);
  assert_non_null(before);
  layers_init(l);
  memcpy(before, l, sizeof(*l));
  if (layers_parse(l, text, &err) != -EINVAL || strcmp(err.text, want) != 0)
    fail_msg("%s\n  got:  %s\n  want: %s", text, err.text, want);
  assert_memory_equal(&l->o, &before->o, sizeof(l->o));
  assert_memory_equal(&l->layer, &before->layer, sizeof(l->layer));
  assert_memory_equal(&l->other, &before->other, sizeof(l->other));
  free(l);
  free(before);
}

static void test_config_sections_fill_their_data(void **state) {
  static const char text[] = "[general]\nverbose = on\n"
                             "[ layer ]\n"
                             "on = yes\ncount = 64\nitems = 0\nbytes = 1M\n"
                             "wait = 0.5\nshare = 0.25\ndir = /var/lib/x y\n"
                             "secret = s3cr3t;!\naddr = [::1]:65535\n"
                             "level = 9\n"
                             "[pool.io]\nworkers = 3\n"
                             "[extra]\nextra = 100\n";
  layers_t *l = malloc(sizeof(*l));
  tpool_config_error_t err;

  (void)state;
  assert_non_null(l);
  layers_init(l);
  assert_int_equal(layers_parse(l, text, &err), 0);
  assert_string_equal(err.text, "");
  assert_true(l->o.verbose);
  assert_int_equal(tpool_options_pool(&l->o, "io")->max_workers, 3);
  assert_string_equal(l->o.config_path, "t.ini");
  assert_true(l->layer.on);
  assert_int_equal(l->layer.count, 64);
  assert_int_equal(l->layer.items, 0);
  assert_int_equal(l->layer.bytes, 1048576);
  assert_true(l->layer.wait_s == 0.5);
  assert_true(l->layer.share == 0.25);
  assert_string_equal(l->layer.dir, "/var/lib/x y");
  assert_string_equal(l->layer.secret, "s3cr3t;!");
  assert_string_equal(l->layer.addr.host, "::1");
  assert_int_equal(l->layer.addr.port, 65535);
  /* "count" went to the first [layer]; the second kept its own. Two
     sections filling one struct each wrote their own field. */
  assert_int_equal(l->other.count, 7);
  assert_int_equal(l->other.level, 9);
  assert_int_equal(l->other.extra, 100);

  /* A second file overlays the first, as for tpool's own sections. */
  assert_int_equal(layers_parse(l, "[layer]\ncount = 3\n", &err), 0);
  assert_int_equal(l->layer.count, 3);
  assert_int_equal(l->layer.bytes, 1048576);
  assert_int_equal(l->other.level, 9);

  /* tpool_config_load_sections() reads a file the same way. */
  char path[] = "/tmp/tpool-test-sections-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "[extra]\nextra = 5\n", 18), 18);
  close(fd);
  assert_int_equal(tpool_config_load_sections(&l->o, path, l->s, 3, &err), 0);
  assert_int_equal(l->other.extra, 5);
  assert_string_equal(l->o.config_path, path);
  unlink(path);
  free(l);
}

static void test_config_sections_are_all_or_nothing(void **state) {
  (void)state;
  /* A bad line after good ones, in another section or in tpool's. */
  layers_refuse("[layer]\ncount = 5\n[extra]\nextra = 1\n[pool.io]\n"
                "workers = x\n",
                "t.ini:6: [pool.io] workers: expected 1..4096 or auto, got "
                "\"x\"");
  layers_refuse("[general]\nverbose = on\n[layer]\nlevel = 3\ncount = 0\n",
                "t.ini:5: [layer] count: expected 1..64, got \"0\"");
  /* The first error by line wins, whichever section it is in. */
  layers_refuse("[extra]\nextra = 101\n[pool.io]\nworkers = 0\n",
                "t.ini:2: [extra] extra: expected 0..100, got \"101\"");
  /* A field set in code out of range, which the file leaves alone: the
     file is named, without a line, and nothing changes. */
  layers_t *l = malloc(sizeof(*l));
  tpool_config_error_t err;
  assert_non_null(l);
  layers_init(l);
  l->layer.share = 2;
  assert_int_equal(layers_parse(l, "[layer]\ncount = 4\n", &err), -EINVAL);
  assert_string_equal(err.text, "t.ini: [layer] share: expected a fraction "
                                "in 0.1..1, got \"2\"");
  assert_int_equal(l->layer.count, 2);
  assert_string_equal(l->o.config_path, "");
  free(l);
}

static void test_config_sections_speak_the_loaders_words(void **state) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"[layer]\non = maybe\n",
       "t.ini:2: [layer] on: expected true or false, got \"maybe\""},
      {"[layer]\ncount = 65\n",
       "t.ini:2: [layer] count: expected 1..64, got \"65\""},
      {"[layer]\nitems = -1\n",
       "t.ini:2: [layer] items: expected 0..1000, got \"-1\""},
      {"[layer]\nbytes = 2M\n",
       "t.ini:2: [layer] bytes: expected a size in 1K..1M (bytes, or with a "
       "K, M or G suffix), got \"2M\""},
      {"[layer]\nwait = 0.1\n",
       "t.ini:2: [layer] wait: expected seconds in 0.5..60, got \"0.1\""},
      {"[layer]\nshare = 1e-1\n",
       "t.ini:2: [layer] share: expected a fraction in 0.1..1, got \"1e-1\""},
      {"[layer]\ndir = /123456789012345678901234567890123\n",
       "t.ini:2: [layer] dir: expected a path of 1..32 bytes"},
      {"[layer]\nsecret = abc\n",
       "t.ini:2: [layer] secret: expected 4..16 printable characters "
       "without spaces"},
      {"[layer]\naddr = 127.0.0.1:80\n",
       "t.ini:2: [layer] addr: expected HOST:PORT with a numeric IPv4 or "
       "[IPv6] address and a port in 1024..65535, got \"127.0.0.1:80\""},
      {"[layer]\nnope = 1\n", "t.ini:2: [layer] nope: unknown key"},
      {"[layer]\ncount = 2\ncount = 3\n",
       "t.ini:3: [layer] count: set twice (first at line 2)"},
      {"[layer]\nlevel = 2\n\nlevel = 3\n",
       "t.ini:4: [layer] level: set twice (first at line 2)"},
      {"[layer]\n[extra]\n[layer]\n",
       "t.ini:3: [layer]: duplicate section (first at line 1)"},
      {"[extra]\nlevel = 1\n", "t.ini:2: [extra] level: unknown key"},
      {"[Layer]\n", "t.ini:1: [Layer]: unknown section (expected [general], "
                    "[layer], [extra], [pool.NAME] or [routes])"},
  };
  (void)state;
  for (size_t i = 0; i < NELEMS(cases); i++)
    layers_refuse(cases[i].text, cases[i].want);

  /* Without the sections, tpool's loader knows only its own. */
  tpool_options_t o;
  tpool_config_error_t err;
  tpool_options_init(&o);
  assert_int_equal(tpool_config_parse(&o, "[layer]\n", 8, "t.ini", &err),
                   -EINVAL);
  assert_string_equal(err.text, "t.ini:1: [layer]: unknown section (expected "
                                "[general], [pool.NAME] or [routes])");
}

static void test_config_sections_check_fields_set_in_code(void **state) {
  layers_t *l = malloc(sizeof(*l));
  tpool_config_error_t err;

  (void)state;
  assert_non_null(l);
  layers_init(l);
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, &err), 0);
  l->layer.count = 0;
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, &err), -EINVAL);
  assert_string_equal(err.text, "options: [layer] count: expected 1..64, got "
                                "\"0\"");
  l->layer.count = 1;
  strcpy(l->layer.addr.host, "localhost");
  assert_int_equal(tpool_config_check_section(&l->s[0], "app.ini", &err),
                   -EINVAL);
  assert_string_equal(err.text,
                      "app.ini: [layer] addr: expected HOST:PORT with a "
                      "numeric IPv4 or [IPv6] address and a port in "
                      "1024..65535, got \"localhost:8000\"");
  strcpy(l->layer.addr.host, "::");
  l->layer.addr.port = 80;
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, &err), -EINVAL);
  assert_non_null(strstr(err.text, "got \"[::]:80\""));
  l->layer.addr.port = 1024;
  strcpy(l->layer.secret, "a b c");
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, NULL), -EINVAL);
  strcpy(l->layer.secret, "abcd");
  memset(l->layer.dir, 'x', sizeof(l->layer.dir)); /* unterminated */
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, &err), -EINVAL);
  assert_string_equal(err.text, "options: [layer] dir: expected a path of "
                                "1..32 bytes");
  l->layer.dir[0] = '\0';
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, &err), -EINVAL);
  strcpy(l->layer.dir, "/");
  l->layer.wait_s = 61;
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, &err), -EINVAL);
  assert_string_equal(err.text, "options: [layer] wait: expected seconds in "
                                "0.5..60, got \"61\"");
  l->layer.wait_s = 60;
  assert_int_equal(tpool_config_check_section(&l->s[0], NULL, &err), 0);
  free(l);
}

/* A STRING is quoted back, and its key's own check has the last word. */
static void test_config_sections_string(void **state) {
  layers_t *l = malloc(sizeof(*l));
  tpool_config_error_t err;

  (void)state;
  assert_non_null(l);
  layers_init(l);
  assert_int_equal(layers_parse(l, "[layer]\nname = abc:1\n", &err), 0);
  assert_string_equal(l->layer.name, "abc:1");
  assert_int_equal(layers_parse(l, "[layer]\nname =\n", &err), 0);
  assert_string_equal(l->layer.name, "");
  free(l);
  layers_refuse("[layer]\nname = 9lives\n",
                "t.ini:2: [layer] name: expected a-z first, up to 8 "
                "characters, got \"9lives\"");
  layers_refuse("[layer]\nname = abcdefghi\n",
                "t.ini:2: [layer] name: expected a-z first, up to 8 "
                "characters, got \"abcdefghi\"");
  /* Set in code: the same words. */
  layers_t *c = malloc(sizeof(*c));
  assert_non_null(c);
  layers_init(c);
  strcpy(c->layer.name, "Zed");
  assert_int_equal(tpool_config_check_section(&c->s[0], "f.ini", &err),
                   -EINVAL);
  assert_string_equal(err.text, "f.ini: [layer] name: expected a-z first, up "
                                "to 8 characters, got \"Zed\"");
  /* valid without expect (or the reverse) is a bad definition. */
  tpool_config_key_t half = {"k",     TPOOL_CONFIG_STRING, 0,   8,
                             L(name), name_valid,          NULL};
  tpool_config_section_t bad = {"x", &half, 1,    &c->layer, sizeof(c->layer),
                                0,   NULL,  NULL, 0,         0};
  assert_int_equal(tpool_config_check_section(&bad, NULL, &err), -EINVAL);
  assert_non_null(strstr(err.text, "valid and expect go together"));
  free(c);
}

static void test_config_sections_refuse_bad_definitions(void **state) {
  layers_t *l = malloc(sizeof(*l));
  tpool_config_error_t err;
  tpool_config_key_t keys[1];
  tpool_config_section_t bad;

  (void)state;
  assert_non_null(l);
  layers_init(l);
  static const char *const names[] = {"general", "routes", "pool.x", "",
                                      "a b",     "a]",     NULL};
  for (size_t i = 0; i < NELEMS(names); i++) {
    bad = l->s[0];
    bad.name = names[i];
    assert_int_equal(
        tpool_config_parse_sections(&l->o, "", 0, "t.ini", &bad, 1, &err),
        -EINVAL);
    assert_non_null(strstr(err.text, "t.ini: invalid argument: invalid "
                                     "section name"));
    assert_int_equal(tpool_config_check_section(&bad, NULL, &err), -EINVAL);
  }
  /* A field outside the data, misaligned, of no known type, with bounds
     out of order or beyond its field. */
  static const tpool_config_key_t wrong[] = {
      {"k", TPOOL_CONFIG_COUNT, 0, 1, sizeof(other_t), NULL, NULL},
      {"k", TPOOL_CONFIG_UINT, 0, 1, 1, NULL, NULL},
      {"k", (tpool_config_type_t)64, 0, 1, 0, NULL, NULL},
      {"k", TPOOL_CONFIG_UINT, 2, 1, 0, NULL, NULL},
      {"k", TPOOL_CONFIG_UINT, 0, 1e10, 0, NULL, NULL},
      {"k", TPOOL_CONFIG_ADDRESS, 0, 70000, 0, NULL, NULL},
      {"k", TPOOL_CONFIG_PATH, 1, 1e9, 0, NULL, NULL},
      {NULL, TPOOL_CONFIG_BOOL, 0, 0, 0, NULL, NULL},
  };
  for (size_t i = 0; i < NELEMS(wrong); i++) {
    keys[0] = wrong[i];
    bad = (tpool_config_section_t){"x", keys, 1,    &l->other, sizeof(l->other),
                                   0,   NULL, NULL, 0,         0};
    if (tpool_config_parse_sections(&l->o, "", 0, "t.ini", &bad, 1, &err) !=
        -EINVAL)
      fail_msg("key %zu accepted", i);
    assert_non_null(strstr(err.text, "invalid argument: [x]"));
  }
  bad = (tpool_config_section_t){"x", other_keys, 2,    NULL, 0,
                                 0,   NULL,       NULL, 0,    0};
  assert_int_equal(
      tpool_config_parse_sections(&l->o, "", 0, "t.ini", &bad, 1, &err),
      -EINVAL);
  assert_int_equal(
      tpool_config_parse_sections(&l->o, "", 0, "t.ini", NULL, 1, &err),
      -EINVAL);
  /* Refused before the file is read: a missing file is not the error. */
  assert_int_equal(
      tpool_config_load_sections(&l->o, "/nonexistent/t.ini", &bad, 1, &err),
      -EINVAL);
  /* A section with no keys is a valid section that takes none. */
  bad =
      (tpool_config_section_t){"empty", NULL, 0, NULL, 0, 0, NULL, NULL, 0, 0};
  assert_int_equal(tpool_config_parse_sections(&l->o, "[empty]\n", 8, "t.ini",
                                               &bad, 1, &err),
                   0);
  assert_int_equal(tpool_config_parse_sections(&l->o, "[empty]\nk = 1\n", 14,
                                               "t.ini", &bad, 1, &err),
                   -EINVAL);
  assert_string_equal(err.text, "t.ini:2: [empty] k: unknown key");
  free(l);
}

/* ------------------------------------------------------------------------
 * Families of sections: [schedule.NAME]
 * ------------------------------------------------------------------------ */

/* One [schedule.NAME]: its name and line, and a field of a few types. */
typedef struct sched {
  char name[TPOOL_NAME_MAX];
  int line;
  unsigned every;
  double jitter_s;
  char pool[17]; /* TOKEN, 1..16 characters */
  bool on;
} sched_t;

#define S(f) offsetof(sched_t, f)
static const tpool_config_key_t sched_keys[] = {
    {"every", TPOOL_CONFIG_UINT, 1, 3600, S(every), NULL, NULL},
    {"jitter", TPOOL_CONFIG_SECONDS, 0, 60, S(jitter_s), NULL, NULL},
    {"pool", TPOOL_CONFIG_TOKEN, 1, 16, S(pool), NULL, NULL},
    {"on", TPOOL_CONFIG_BOOL, 0, 0, S(on), NULL, NULL},
};
#define SCHED_MAX 3

/* The sections of layers_t and the family [schedule.*] beside them. */
typedef struct family {
  layers_t l;
  sched_t sched[SCHED_MAX];
  size_t nsched;
  sched_t defaults;
  tpool_config_section_t s[4];
} family_t;

static void family_init(family_t *f) {
  memset(f, 0, sizeof(*f));
  layers_init(&f->l);
  /* Elements the file does not take must stay as they are. */
  memset(f->sched, 0x5a, sizeof(f->sched));
  f->nsched = 99;
  f->defaults.every = 60;
  f->defaults.jitter_s = 0.5;
  strcpy(f->defaults.pool, "io");
  f->defaults.on = true;
  memcpy(f->s, f->l.s, sizeof(f->l.s));
  f->s[3] = (tpool_config_section_t){
      "schedule.*", sched_keys, NELEMS(sched_keys), f->sched, sizeof(sched_t),
      SCHED_MAX,    &f->nsched, &f->defaults,       S(name),  S(line)};
}

static int family_parse(family_t *f, const char *text,
                        tpool_config_error_t *err) {
  return tpool_config_parse_sections(&f->l.o, text, strlen(text), "t.ini", f->s,
                                     4, err);
}

/* Parses text, which must fail with `want`, and checks that nothing
   changed: the options, the other sections, the elements and the count. */
static void family_refuse(const char *text, const char *want) {
  family_t *f = malloc(sizeof(*f)), *before = malloc(sizeof(*f));
  tpool_config_error_t err;

  assert_non_null(f);
  assert_non_null(before);
  family_init(f);
  memcpy(before, f, sizeof(*f));
  if (family_parse(f, text, &err) != -EINVAL || strcmp(err.text, want) != 0)
    fail_msg("%s\n  got:  %s\n  want: %s", text, err.text, want);
  assert_memory_equal(&f->l.o, &before->l.o, sizeof(f->l.o));
  assert_memory_equal(&f->l.layer, &before->l.layer, sizeof(f->l.layer));
  assert_memory_equal(&f->l.other, &before->l.other, sizeof(f->l.other));
  assert_memory_equal(f->sched, before->sched, sizeof(f->sched));
  assert_int_equal(f->nsched, 99);
  free(f);
  free(before);
}

static void test_config_family_fills_its_elements(void **state) {
  static const char text[] = "[schedule.nightly]\n"
                             "every = 3600\npool = db\n"
                             "[layer]\ncount = 5\n"
                             "[schedule.a-b.c_1]\n"
                             "every = 7\non = no\njitter = 0\n"
                             "[extra]\nextra = 9\n"
                             "[ schedule.x ]\n";
  family_t *f = malloc(sizeof(*f));
  tpool_config_error_t err;
  sched_t untouched;

  (void)state;
  assert_non_null(f);
  family_init(f);
  assert_int_equal(family_parse(f, text, &err), 0);
  assert_string_equal(err.text, "");
  assert_int_equal(f->nsched, 3);
  /* In file order, each with its header's line; "every" is set in two
     instances, once in each. */
  assert_string_equal(f->sched[0].name, "nightly");
  assert_int_equal(f->sched[0].line, 1);
  assert_int_equal(f->sched[0].every, 3600);
  assert_string_equal(f->sched[0].pool, "db");
  assert_true(f->sched[0].jitter_s == 0.5); /* the defaults */
  assert_true(f->sched[0].on);
  assert_string_equal(f->sched[1].name, "a-b.c_1");
  assert_int_equal(f->sched[1].line, 6);
  assert_int_equal(f->sched[1].every, 7);
  assert_false(f->sched[1].on);
  assert_true(f->sched[1].jitter_s == 0);
  assert_string_equal(f->sched[1].pool, "io");
  /* An instance without keys is its defaults, its name and its line;
     the name is zero-padded, as pool names are. */
  memcpy(&untouched, &f->defaults, sizeof(untouched));
  strcpy(untouched.name, "x");
  untouched.line = 12;
  assert_memory_equal(&f->sched[2], &untouched, sizeof(untouched));
  /* The other sections of the same file. */
  assert_int_equal(f->l.layer.count, 5);
  assert_int_equal(f->l.other.extra, 9);
  assert_string_equal(f->l.o.config_path, "t.ini");

  /* A second file: the count is its own, the elements past it are left
     as the first file made them. */
  sched_t second = f->sched[1], third = f->sched[2];
  assert_int_equal(family_parse(f, "[schedule.only]\n", &err), 0);
  assert_int_equal(f->nsched, 1);
  assert_string_equal(f->sched[0].name, "only");
  assert_int_equal(f->sched[0].every, 60);
  assert_memory_equal(&f->sched[1], &second, sizeof(second));
  assert_memory_equal(&f->sched[2], &third, sizeof(third));
  assert_int_equal(family_parse(f, "[layer]\n", &err), 0);
  assert_int_equal(f->nsched, 0);
  assert_string_equal(f->sched[0].name, "only");

  /* The longest name, and the most instances. */
  family_init(f);
  assert_int_equal(family_parse(f,
                                "[schedule.a]\n[schedule.b]\n"
                                "[schedule.0123456789012345678901234567890]\n",
                                &err),
                   0);
  assert_int_equal(f->nsched, 3);
  assert_string_equal(f->sched[2].name, "0123456789012345678901234567890");

  /* tpool_config_load_sections() reads a file the same way. */
  char path[] = "/tmp/tpool-test-family-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "\n[schedule.f]\nevery = 2\n", 24), 24);
  close(fd);
  assert_int_equal(tpool_config_load_sections(&f->l.o, path, f->s, 4, &err), 0);
  assert_int_equal(f->nsched, 1);
  assert_int_equal(f->sched[0].every, 2);
  assert_int_equal(f->sched[0].line, 2);
  unlink(path);
  free(f);
}

static void test_config_family_errors(void **state) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"[schedule.Nightly]\n",
       "t.ini:1: [schedule.Nightly]: schedule name must be 1..31 of a-z, "
       "0-9, _, - and ."},
      {"[schedule.]\n", "t.ini:1: [schedule.]: schedule name must be 1..31 "
                        "of a-z, 0-9, _, - and ."},
      {"[schedule.a b]\n", "t.ini:1: [schedule.a b]: schedule name must be "
                           "1..31 of a-z, 0-9, _, - and ."},
      {"[schedule.*]\n", "t.ini:1: [schedule.*]: schedule name must be 1..31 "
                         "of a-z, 0-9, _, - and ."},
      /* 32 characters (the label is cut short, as every long key is). */
      {"[schedule.01234567890123456789012345678901]\n",
       "t.ini:1: [schedule.0123456789012345678901234567890...]: schedule name "
       "must be 1..31 of a-z, 0-9, _, - and ."},
      {"[schedule.a]\n[schedule.b]\n\n[schedule.a]\n",
       "t.ini:4: [schedule.a]: duplicate section (first at line 1)"},
      {"[schedule.a]\n[schedule.b]\n[schedule.c]\n[schedule.d]\n",
       "t.ini:4: [schedule.d]: too many [schedule.*] sections (at most 3)"},
      {"[schedule.a]\nnope = 1\n", "t.ini:2: [schedule.a] nope: unknown key"},
      {"[schedule.a]\nevery = 1\nevery = 2\n",
       "t.ini:3: [schedule.a] every: set twice (first at line 2)"},
      {"[schedule.a]\nevery = 1\n[schedule.b]\nevery = 2\nevery = 3\n",
       "t.ini:5: [schedule.b] every: set twice (first at line 4)"},
      {"[schedule.a]\nevery = 0\n",
       "t.ini:2: [schedule.a] every: expected 1..3600, got \"0\""},
      {"[schedule.a]\n[schedule.b]\njitter = 61\n",
       "t.ini:3: [schedule.b] jitter: expected seconds in 0..60, got \"61\""},
      /* The keys of another section are not a family's. */
      {"[schedule.a]\ncount = 1\n", "t.ini:2: [schedule.a] count: unknown key"},
      /* All or nothing: a later error, in the family or elsewhere. */
      {"[schedule.a]\nevery = 5\n[schedule.b]\n[pool.io]\nworkers = x\n",
       "t.ini:5: [pool.io] workers: expected 1..4096 or auto, got \"x\""},
      {"[schedule.a]\nevery = 5\n[layer]\ncount = 0\n",
       "t.ini:4: [layer] count: expected 1..64, got \"0\""},
      {"[schedule.a]\nevery = 5\n[schedule.b]\non = maybe\n",
       "t.ini:4: [schedule.b] on: expected true or false, got \"maybe\""},
      /* Neither a family's name nor another section's. */
      {"[schedule]\n", "t.ini:1: [schedule]: unknown section (expected "
                       "[general], [layer], [extra], [schedule.NAME], "
                       "[pool.NAME] or [routes])"},
      {"[sched.a]\n", "t.ini:1: [sched.a]: unknown section (expected "
                      "[general], [layer], [extra], [schedule.NAME], "
                      "[pool.NAME] or [routes])"},
  };
  (void)state;
  for (size_t i = 0; i < NELEMS(cases); i++)
    family_refuse(cases[i].text, cases[i].want);
}

/* A family's defaults are its fields set in code. */
static void test_config_family_checks_its_defaults(void **state) {
  family_t *f = malloc(sizeof(*f));
  tpool_config_error_t err;

  (void)state;
  assert_non_null(f);
  family_init(f);
  assert_int_equal(tpool_config_check_section(&f->s[3], NULL, &err), 0);
  f->defaults.every = 0;
  assert_int_equal(tpool_config_check_section(&f->s[3], NULL, &err), -EINVAL);
  assert_string_equal(err.text, "options: [schedule.*] every: expected "
                                "1..3600, got \"0\"");
  /* The loader checks them too, with the file's name and no line, and
     changes nothing. */
  assert_int_equal(family_parse(f, "[schedule.a]\nevery = 5\n", &err), -EINVAL);
  assert_string_equal(err.text, "t.ini: [schedule.*] every: expected "
                                "1..3600, got \"0\"");
  assert_int_equal(f->nsched, 99);
  f->defaults.every = 1;
  f->defaults.pool[0] = '\0';
  assert_int_equal(tpool_config_check_section(&f->s[3], "a.ini", &err),
                   -EINVAL);
  assert_string_equal(err.text, "a.ini: [schedule.*] pool: expected 1..16 "
                                "printable characters without spaces");
  free(f);
}

/* Parses an empty text with sections s[0..n), which must be refused with
   a message that contains `want`. */
static void family_refuse_definition(const tpool_config_section_t *s, size_t n,
                                     const char *want) {
  tpool_options_t o;
  tpool_config_error_t err;

  tpool_options_init(&o);
  if (tpool_config_parse_sections(&o, "", 0, "t.ini", s, n, &err) != -EINVAL ||
      strstr(err.text, want) == NULL)
    fail_msg("%s: got \"%s\", want \"%s\"", s[n - 1].name, err.text, want);
  /* Before the file is read: a missing file is not the error. */
  if (tpool_config_load_sections(&o, "/nonexistent/t.ini", s, n, &err) !=
          -EINVAL ||
      strstr(err.text, want) == NULL)
    fail_msg("%s (load): got \"%s\"", s[n - 1].name, err.text);
}

static void test_config_family_refuses_bad_definitions(void **state) {
  family_t *f = malloc(sizeof(*f));
  tpool_config_section_t s[2];
  tpool_config_key_t key;
  tpool_config_error_t err;
  const char *rule = "t.ini: invalid argument: [schedule.*]: ";

  (void)state;
  assert_non_null(f);
  family_init(f);
  /* Each member of a family is checked. */
  s[0] = f->s[3];
  s[0].max = 0;
  family_refuse_definition(s, 1, rule);
  s[0] = f->s[3];
  s[0].count = NULL;
  family_refuse_definition(s, 1, rule);
  s[0] = f->s[3];
  s[0].defaults = NULL;
  family_refuse_definition(s, 1, rule);
  s[0] = f->s[3];
  s[0].data = NULL;
  family_refuse_definition(s, 1, rule);
  s[0] = f->s[3];
  s[0].name_offset = sizeof(sched_t) - TPOOL_NAME_MAX + 1;
  family_refuse_definition(s, 1, rule);
  s[0] = f->s[3];
  s[0].line_offset = sizeof(sched_t);
  family_refuse_definition(s, 1, rule);
  s[0] = f->s[3];
  s[0].line_offset = S(line) + 1; /* misaligned */
  family_refuse_definition(s, 1, "not aligned");
  s[0] = f->s[3];
  s[0].line_offset = S(name) + 4; /* over the name */
  family_refuse_definition(s, 1, "over each other");
  s[0] = f->s[3];
  s[0].size = sizeof(sched_t) - 1; /* elements misaligned */
  s[0].keys = sched_keys;
  s[0].nkeys = 1;
  family_refuse_definition(s, 1, "not aligned");
  s[0] = f->s[3];
  s[0].max = SIZE_MAX / 2;
  family_refuse_definition(s, 1, rule);
  /* A key over the name or the line. */
  key = sched_keys[0];
  key.offset = S(line);
  s[0] = f->s[3];
  s[0].keys = &key;
  s[0].nkeys = 1;
  family_refuse_definition(s, 1,
                           "invalid argument: [schedule.*] every: its "
                           "field overlaps the name or line");
  /* The members of a family in a section that is not one. */
  s[0] = f->l.s[0];
  s[0].max = 1;
  family_refuse_definition(s, 1, "invalid argument: [layer]: max, count");
  s[0] = f->l.s[0];
  s[0].name_offset = 8;
  family_refuse_definition(s, 1, "invalid argument: [layer]: max, count");
  /* Names: "prefix.*" and nothing else. */
  static const char *const names[] = {
      ".*", "*", "schedule*", "schedule.**", "schedule.*.a", "pool.*", NULL};
  for (size_t i = 0; i < NELEMS(names); i++) {
    s[0] = f->s[3];
    s[0].name = names[i];
    family_refuse_definition(s, 1, "invalid section name");
  }
  /* A family shares its names with no other section. */
  s[0] = f->s[3];
  s[1] = f->s[3];
  family_refuse_definition(s, 2, "[schedule.*] and [schedule.*] share names");
  s[1] = f->l.s[2];
  s[1].name = "schedule.x";
  family_refuse_definition(s, 2, "[schedule.*] and [schedule.x] share names");
  s[1] = s[0];
  s[1].name = "schedule.x.*";
  family_refuse_definition(s, 2,
                           "[schedule.*] and [schedule.x.*] share "
                           "names");
  /* The rules hold for tpool_config_check_section() too. */
  s[0] = f->s[3];
  s[0].count = NULL;
  assert_int_equal(tpool_config_check_section(&s[0], NULL, &err), -EINVAL);
  assert_non_null(strstr(err.text, "options: invalid argument: "
                                   "[schedule.*]: "));

  /* Fine: a family beside a section named as its prefix, another family,
     one of a single element without keys, a name of 63 characters. */
  s[0] = f->s[3];
  s[1] = f->l.s[2];
  s[1].name = "schedule";
  assert_int_equal(tpool_config_parse_sections(&f->l.o, "[schedule]\n", 11,
                                               "t.ini", s, 2, &err),
                   0);
  s[1] = f->s[3];
  s[1].name = "sched.*";
  assert_int_equal(
      tpool_config_parse_sections(&f->l.o, "", 0, "t.ini", s, 2, &err), 0);
  s[0] = f->s[3];
  s[0].keys = NULL;
  s[0].nkeys = 0;
  s[0].max = 1;
  s[0].name = "a234567890123456789012345678901234567890123456789012345678901.*";
  assert_int_equal(strlen(s[0].name), 63);
  assert_int_equal(
      tpool_config_parse_sections(&f->l.o, "[a2345", 6, "t.ini", s, 1, &err),
      -EINVAL); /* a syntax error: the definition passed */
  assert_non_null(strstr(err.text, "t.ini:1: syntax error"));
  free(f);
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
      cmocka_unit_test(test_config_parse_overlays),
      cmocka_unit_test(test_config_parse_rejects_nul),
      cmocka_unit_test(test_config_parse_values),
      cmocka_unit_test(test_config_seconds_ignore_locale),
      cmocka_unit_test(test_config_check_min_above_max),
      cmocka_unit_test(test_config_check_bad_names),
      cmocka_unit_test(test_config_check_ranges),
      cmocka_unit_test(test_config_check_needs_an_enabled_pool),
      cmocka_unit_test(test_config_sections_fill_their_data),
      cmocka_unit_test(test_config_sections_are_all_or_nothing),
      cmocka_unit_test(test_config_sections_speak_the_loaders_words),
      cmocka_unit_test(test_config_sections_check_fields_set_in_code),
      cmocka_unit_test(test_config_sections_refuse_bad_definitions),
      cmocka_unit_test(test_config_sections_string),
      cmocka_unit_test(test_config_family_fills_its_elements),
      cmocka_unit_test(test_config_family_errors),
      cmocka_unit_test(test_config_family_checks_its_defaults),
      cmocka_unit_test(test_config_family_refuses_bad_definitions),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
