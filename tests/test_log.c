/*
 * test_log.c — the verbose log: the submit, completion and status-table
 * lines match the format docs/server.md shows exactly, the table repeats
 * every status_interval while verbose is on, verbose off leaves only
 * pool-level lines, and lines written from many threads never interleave.
 */
#include "helpers.h"

#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static int fail_io(void *arg) {
  (void)arg;
  return -EIO;
}

static void count(int status, const tpool_task_info_t *info, void *arg) {
  (void)status;
  (void)info;
  (*(int *)arg)++;
}

static void run_until_count(struct event_base *base, int *n, int want) {
  assert_true(th_run_until_int(base, n, want, 10.0));
}

static bool matches(const char *text, const char *pattern) {
  regex_t re;
  assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE), 0);
  bool ok = regexec(&re, text, 0, NULL, 0) == 0;
  regfree(&re);
  return ok;
}

static void assert_matches(const char *text, const char *pattern) {
  if (!matches(text, pattern))
    fail_msg("no line matches /%s/ in:\n%s", pattern, text);
}

static tpool_manager_t *verbose_manager(tpool_options_t *o, th_log_t *log,
                                        struct event_base *base) {
  th_options_logged(o, log);
  o->verbose = true;
  th_add_pool(o, "io", 1, 50, 64);
  th_add_pool(o, "cpu", 1, 30, 64);
  return th_manager(o, base);
}

static void test_log_task_lines_match_design(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = verbose_manager(&o, &log, base);
  int done = 0;
  assert_int_equal(tpool_manager_submit(m, "cpu", "process_data", th_noop,
                                        count, &done, NULL),
                   1);
  run_until_count(base, &done, 1);
  assert_int_equal(
      tpool_manager_submit(m, "cpu", "parse", fail_io, count, &done, NULL), 2);
  run_until_count(base, &done, 2);
  char *text = th_log_copy(&log);
  assert_matches(text, "^INFO ThreadPool\\[cpu\\] Task #1: Submitting "
                       "'process_data' \\(active_threads=0, queued=0\\)$");
  assert_matches(
      text, "^INFO ThreadPool\\[cpu\\] Task #1: Completed in 0\\.[0-9]{3}s$");
  assert_matches(text, "^INFO ThreadPool\\[cpu\\] Task #2: Failed in "
                       "0\\.[0-9]{3}s: input/output error \\(-5\\)$");
  free(text);
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_log_destroy(&log);
}

/* Held at a gate in work; counted in done. */
typedef struct {
  th_gate_t *gate;
  int *done;
} held_t;

static int held_work(void *arg) {
  th_gate_pass(((held_t *)arg)->gate);
  return 0;
}

static void held_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)status;
  (void)info;
  (*((held_t *)arg)->done)++;
}

static bool busy_one(const tpool_pool_stats_t *ps, void *arg) {
  (void)arg;
  return ps->busy_workers == 1;
}

static void test_log_status_table_matches_design(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  th_options_logged(&o, &log);
  th_add_pool(&o, "io", 0, 50, 64);
  th_add_pool(&o, "cpu", 1, 30, 64);
  th_add_pool(&o, "db", 1, 1, 64);
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_manager(&o, base);
  th_gate_t gate;
  th_gate_init(&gate);
  int done = 0;
  held_t h = {&gate, &done};
  assert_int_equal(tpool_manager_submit(m, "cpu", "heavy_computation",
                                        held_work, held_done, &h, NULL),
                   1);
  assert_int_equal(
      tpool_manager_submit(m, "db", "query", held_work, held_done, &h, NULL),
      2);
  assert_true(th_wait_stats(m, base, "cpu", busy_one, NULL, 5.0));
  assert_true(th_wait_stats(m, base, "db", busy_one, NULL, 5.0));
  for (int i = 0; i < 2; i++)
    assert_true(tpool_manager_submit(m, "db", "later", held_work, held_done, &h,
                                     NULL) > 0);
  assert_int_equal(tpool_manager_log_status(m), 0);

  char *text = th_log_copy(&log);
  char *table = strstr(text, "INFO ThreadPoolManager Current Status:\n");
  assert_non_null(table);
  static const char *const lines[] = {
      "INFO ThreadPoolManager Current Status:",
      "============================================================",
      "  io           \\| Workers:   0/ 50 \\(  0\\.0%\\) \\| Queued:   0",
      "  cpu          \\| Workers:   1/ 30 \\(  3\\.3%\\) \\| Queued:   0",
      "    └─ Task #1: heavy_computation \\(running for [0-9]+\\.[0-9]s\\)",
      "  db           \\| Workers:   1/  1 \\(100\\.0%\\) \\| Queued:   2",
      "    └─ Task #2: query \\(running for [0-9]+\\.[0-9]s\\)",
      "------------------------------------------------------------",
      "  Total: 2 active threads, 2 queued tasks",
      "============================================================",
  };
  char *line = table;
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    *nl = '\0';
    char pattern[256];
    snprintf(pattern, sizeof(pattern), "^%s$", lines[i]);
    if (!matches(line, pattern))
      fail_msg("table line %zu is \"%s\", expected /%s/", i, line, pattern);
    line = nl + 1;
  }
  free(text);
  /* The same table, without its heading, from a snapshot. */
  tpool_stats_t *s;
  assert_int_equal(tpool_manager_stats(m, &s), 0);
  char *formatted = tpool_stats_format(s);
  assert_non_null(formatted);
  assert_true(strncmp(formatted, lines[1], strlen(lines[1])) == 0);
  assert_int_equal(s->total_busy, 2);
  assert_int_equal(s->total_queued, 2);
  free(formatted);
  tpool_stats_free(s);

  th_gate_open(&gate);
  run_until_count(base, &done, 4);
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_gate_destroy(&gate);
  th_log_destroy(&log);
}

static int tables_in(th_log_t *log) {
  char *text = th_log_copy(log);
  int n = 0;
  for (char *p = text; (p = strstr(p, "Current Status:")); p++)
    n++;
  free(text);
  return n;
}

static void test_log_periodic_table_only_when_verbose(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = verbose_manager(&o, &log, base);
  tpool_manager_set_verbose(m, false, 0.05);
  th_run_until(base, NULL, NULL, 0.3);
  assert_int_equal(tables_in(&log), 0);
  tpool_manager_set_verbose(m, true, 0.05);
  th_run_until(base, NULL, NULL, 0.5);
  assert_true(tables_in(&log) >= 2);
  tpool_manager_set_verbose(m, false, 0);
  int before = tables_in(&log);
  th_run_until(base, NULL, NULL, 0.3);
  assert_true(tables_in(&log) <= before + 1); /* one may be in flight */

  /* Verbose off: no task lines, but pool-level lines remain. */
  int done = 0;
  assert_true(
      tpool_manager_submit(m, "io", "quiet", th_noop, count, &done, NULL) > 0);
  run_until_count(base, &done, 1);
  assert_false(th_log_contains(&log, "'quiet'"));
  assert_true(th_log_contains(&log, "ThreadPool[io] Started 1 workers"));
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_log_destroy(&log);
}

typedef struct {
  tpool_manager_t *m;
  int n;
} spammer_t;

static void *spam(void *arg) {
  spammer_t *s = arg;
  for (int i = 0; i < s->n; i++)
    while (tpool_manager_submit(s->m, "w", "spam", th_noop, NULL, NULL, NULL) ==
           -EAGAIN)
      ;
  return NULL;
}

static void test_log_lines_never_interleave(void **state) {
  (void)state;
  char path[] = "/tmp/tpool-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  tpool_options_t o;
  th_options_empty(&o);
  o.verbose = true;
  snprintf(o.log_path, sizeof(o.log_path), "%s", path);
  th_add_pool(&o, "w", 4, 4, 1 << 16);
  tpool_manager_t *m = th_manager(&o, NULL);
  enum { T = 4, N = TH_TSAN ? 500 : 2000 };
  pthread_t th[T];
  spammer_t s = {m, N};
  for (int i = 0; i < T; i++)
    pthread_create(&th[i], NULL, spam, &s);
  for (int i = 0; i < T; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);

  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[1024];
  int submits = 0, completions = 0;
  while (fgets(line, sizeof(line), f)) {
    if (matches(line, "^INFO ThreadPool\\[w\\] Task #[0-9]+: Submitting "
                      "'spam' \\(active_threads=[0-9]+, queued=[0-9]+\\)\n$"))
      submits++;
    else if (matches(line, "^INFO ThreadPool\\[w\\] Task #[0-9]+: Completed "
                           "in [0-9]+\\.[0-9]{3}s\n$"))
      completions++;
    else if (!matches(line, "^INFO ThreadPool(Manager|\\[w\\]) [^\n]*\n$"))
      fail_msg("mangled line: %s", line);
  }
  fclose(f);
  unlink(path);
  assert_int_equal(submits, T * N);
  assert_int_equal(completions, T * N);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_task_lines_match_design),
      cmocka_unit_test(test_log_status_table_matches_design),
      cmocka_unit_test(test_log_periodic_table_only_when_verbose),
      cmocka_unit_test(test_log_lines_never_interleave),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
