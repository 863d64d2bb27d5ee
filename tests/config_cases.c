/*
 * config_cases.c — see config_cases.h.
 */
#include "config_cases.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

void cc_env_path(char *out, size_t size, const char *name, const char *rel) {
  const char *dir = getenv(name);
  int n;

  if (dir == NULL || dir[0] == '\0')
    fail_msg("set %s (run the config tests with meson test)", name);
  n = snprintf(out, size, "%s/%s", dir, rel);
  assert_true(n > 0 && (size_t)n < size);
}

void cc_read_first_line(const char *path, char *out, size_t size) {
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

/* Runs one bad case in the current directory; returns true if it failed
   as its .err file says. *skipped: left out by skip(). */
static bool run_bad_case(const char *ini, cc_load_fn load, cc_skip_fn leave_out,
                         bool *skipped) {
  tpool_config_error_t err;
  char errfile[PATH_MAX], want[1024];
  int rc;

  snprintf(errfile, sizeof(errfile), "%.*s.err", (int)(strlen(ini) - 4), ini);
  cc_read_first_line(errfile, want, sizeof(want));
  *skipped = leave_out != NULL && leave_out(want);
  if (*skipped)
    return true;
  memset(&err, 0xa5, sizeof(err));
  rc = load(ini, &err);
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

size_t cc_run_bad_cases(cc_load_fn load, cc_skip_fn leave_out, size_t *nfiles) {
  char dir[PATH_MAX], **names;
  size_t n, i, failed = 0, ran = 0;
  int home;
  bool skipped;

  cc_env_path(dir, sizeof(dir), "TPOOL_TEST_DATA", "config/bad");
  n = list_ini_files(dir, &names);

  home = open(".", O_RDONLY | O_DIRECTORY);
  assert_true(home >= 0);
  assert_int_equal(chdir(dir), 0);
  for (i = 0; i < n; i++) {
    if (!run_bad_case(names[i], load, leave_out, &skipped))
      failed++;
    ran += !skipped;
    free(names[i]);
  }
  free(names);
  assert_int_equal(fchdir(home), 0);
  close(home);
  print_message("%zu of %zu bad config files checked\n", ran, n);
  assert_int_equal(failed, 0);
  if (nfiles != NULL)
    *nfiles = n;
  return ran;
}
