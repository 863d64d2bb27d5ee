/*
 * config_cases.h — what the config tests share: paths from the
 * environment, and the bad-config cases of tests/data/config/bad/, each a
 * <case>.ini that must fail to load with the message of <case>.err and
 * leave everything as it was. test_config runs them through tpool's own
 * loader, test_server_config through tpool-server's, which also reads the
 * sections of the HTTP layer and of the server.
 */
#ifndef TPOOL_TESTS_CONFIG_CASES_H
#define TPOOL_TESTS_CONFIG_CASES_H

#include "tpool.h"

#include <stdbool.h>
#include <stddef.h>

/* $name joined with rel; fails the test if the variable is unset. */
void cc_env_path(char *out, size_t size, const char *name, const char *rel);

/* The first line of a file, without its newline. */
void cc_read_first_line(const char *path, char *out, size_t size);

/* Loads the file `path` over defaults, asserts that they are unchanged
   afterwards (the case is a bad one), and returns the loader's code with
   its error in *err. */
typedef int (*cc_load_fn)(const char *path, tpool_config_error_t *err);

/* True for a case the loader under test cannot judge; `want` is the
   expected message. */
typedef bool (*cc_skip_fn)(const char *want);

/*
 * Runs every case of $TPOOL_TEST_DATA/config/bad through `load`, in that
 * directory, so that messages carry the bare file name; `leave_out` (may be
 * NULL) leaves cases out. Prints each mismatch, and fails the test if
 * there was one.
 * Returns: the number of cases run; *nfiles (if not NULL) gets the
 * number of cases there are.
 */
size_t cc_run_bad_cases(cc_load_fn load, cc_skip_fn leave_out, size_t *nfiles);

#endif /* TPOOL_TESTS_CONFIG_CASES_H */
