/*
 * fuzz_config.c — the config loader on arbitrary bytes (libFuzzer target).
 *
 * Any input up to 64 KiB goes through tpool_config_parse() over the
 * defaults, and again through tpool_config_parse_sections() with sections
 * of another layer: one key of every type, two sections sharing the name
 * [app] (a key belongs to the first that lists it), an [app.extra]
 * filling the same struct as the second, and a family [job.NAME] of at
 * most JOBS_MAX instances. Whatever the input is (over-long
 * lines, NUL bytes, byte order marks, duplicate sections), the loader must
 * not crash or leak, and:
 *   - when it refuses the text, the options and every section's data are
 *     exactly as they were, and the error is one line naming the file,
 *     with a line number inside the text;
 *   - when it accepts it, tpool_options_check() gives a verdict, and a
 *     refusal there is named the same way; with sections, every section's
 *     fields pass tpool_config_check_section(), and a key the second
 *     [app] shares with the first never reaches the second; the family
 *     took at most JOBS_MAX elements, each with a valid name unique
 *     among them, the line of a header, and fields in range, and left
 *     the elements past its count alone.
 * A broken promise aborts, which libFuzzer reports as a crash.
 */
#include "tpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_INPUT = 64 * 1024 };

/* Lines in the input, as the loader counts them (a last line may lack its
   newline). */
static int count_lines(const uint8_t *data, size_t size) {
  int n = 1;
  for (size_t i = 0; i < size; i++)
    n += data[i] == '\n';
  return n;
}

static void expect(bool ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_config: %s\n", what);
    abort();
  }
}

static void expect_named(const tpool_config_error_t *err, int lines,
                         bool names_file) {
  expect(memchr(err->text, '\0', sizeof(err->text)) != NULL,
         "error text not terminated");
  expect(err->text[0] != '\0', "empty error text");
  expect(!names_file || strncmp(err->text, "fuzz.ini:", 9) == 0,
         "error does not name the file");
  expect(strchr(err->text, '\n') == NULL, "error is not one line");
  expect(err->line >= 0 && err->line <= lines, "error line out of range");
}

/* The other layer's settings: a field of every type. */
typedef struct app {
  bool on;
  unsigned count;
  size_t items, bytes;
  double wait_s, share;
  char dir[65];
  char secret[33];
  tpool_config_address_t addr;
} app_t;

typedef struct app2 {
  unsigned count; /* shadowed by the first [app] */
  unsigned level;
  size_t extra; /* [app.extra] */
} app2_t;

#define A(f) offsetof(app_t, f)
#define B(f) offsetof(app2_t, f)
static const tpool_config_key_t app_keys[] = {
    {"on", TPOOL_CONFIG_BOOL, 0, 0, A(on), NULL, NULL},
    {"count", TPOOL_CONFIG_UINT, 1, 64, A(count), NULL, NULL},
    {"items", TPOOL_CONFIG_COUNT, 0, 1000000, A(items), NULL, NULL},
    {"bytes", TPOOL_CONFIG_SIZE, 1024, 1073741824, A(bytes), NULL, NULL},
    {"wait", TPOOL_CONFIG_SECONDS, 0.001, 3600, A(wait_s), NULL, NULL},
    {"share", TPOOL_CONFIG_RATIO, 0, 1, A(share), NULL, NULL},
    {"dir", TPOOL_CONFIG_PATH, 1, 64, A(dir), NULL, NULL},
    {"secret", TPOOL_CONFIG_TOKEN, 0, 32, A(secret), NULL, NULL},
    {"addr", TPOOL_CONFIG_ADDRESS, 0, 65535, A(addr), NULL, NULL},
};
static const tpool_config_key_t app2_keys[] = {
    {"count", TPOOL_CONFIG_UINT, 0, 3, B(count), NULL, NULL},
    {"level", TPOOL_CONFIG_UINT, 0, 9, B(level), NULL, NULL},
};
static const tpool_config_key_t extra_keys[] = {
    {"extra", TPOOL_CONFIG_COUNT, 0, 100, B(extra), NULL, NULL},
};

/* One [job.NAME]. */
typedef struct job {
  char name[TPOOL_NAME_MAX];
  int line;
  unsigned every;
  char pool[17];
} job_t;

#define J(f) offsetof(job_t, f)
static const tpool_config_key_t job_keys[] = {
    {"every", TPOOL_CONFIG_UINT, 1, 60, J(every), NULL, NULL},
    {"pool", TPOOL_CONFIG_TOKEN, 1, 16, J(pool), NULL, NULL},
};
enum { JOBS_MAX = 4 };
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void app_init(app_t *a, app2_t *b) {
  memset(a, 0, sizeof(*a));
  memset(b, 0, sizeof(*b));
  a->count = 1;
  a->bytes = 4096;
  a->wait_s = 1;
  strcpy(a->dir, "/tmp");
  strcpy(a->addr.host, "127.0.0.1");
  b->count = 3;
}

/* What an accepted file left in the family: jobs[0..n) taken, the rest
   as before (j0). */
static void check_jobs(const job_t *jobs, const job_t *j0, size_t n,
                       int lines) {
  expect(n <= JOBS_MAX, "more jobs than the family holds");
  for (size_t i = 0; i < n; i++) {
    const job_t *j = &jobs[i];
    size_t len = strnlen(j->name, sizeof(j->name));
    expect(len >= 1 && len < sizeof(j->name) &&
               strspn(j->name, "abcdefghijklmnopqrstuvwxyz0123456789_-.") ==
                   len,
           "a job with a bad name");
    expect(j->line >= 1 && j->line <= lines, "a job's line out of range");
    for (size_t k = 0; k < i; k++)
      expect(strcmp(jobs[k].name, j->name) != 0, "two jobs of one name");
    /* Each element's fields, as a section of its own. */
    tpool_config_section_t one = {
        "job", job_keys, NELEMS(job_keys), (void *)j, sizeof(*j), 0, NULL, NULL,
        0,     0};
    tpool_config_error_t err;
    expect(tpool_config_check_section(&one, "fuzz.ini", &err) == 0,
           "a job's field out of range");
  }
  expect(memcmp(jobs + n, j0 + n, (JOBS_MAX - n) * sizeof(*jobs)) == 0,
         "an element past the count changed");
}

/* The same input through tpool_config_parse_sections(). */
static void fuzz_sections(const uint8_t *data, size_t size, int lines) {
  static tpool_options_t o, before;
  static app_t a, a0;
  static app2_t b, b0;
  static job_t jobs[JOBS_MAX], j0[JOBS_MAX];
  static const job_t job_defaults = {"", 0, 5, "io"};
  size_t njobs = 99;
  tpool_config_section_t s[4] = {
      {"app", app_keys, NELEMS(app_keys), &a, sizeof(a), 0, NULL, NULL, 0, 0},
      {"app", app2_keys, NELEMS(app2_keys), &b, sizeof(b), 0, NULL, NULL, 0, 0},
      {"app.extra", extra_keys, NELEMS(extra_keys), &b, sizeof(b), 0, NULL,
       NULL, 0, 0},
      {"job.*", job_keys, NELEMS(job_keys), jobs, sizeof(job_t), JOBS_MAX,
       &njobs, &job_defaults, J(name), J(line)},
  };
  tpool_options_init(&o);
  memcpy(&before, &o, sizeof(o));
  app_init(&a, &b);
  memcpy(&a0, &a, sizeof(a));
  memcpy(&b0, &b, sizeof(b));
  memset(jobs, 0x5a, sizeof(jobs));
  memcpy(j0, jobs, sizeof(jobs));
  tpool_config_error_t err;
  memset(&err, 0, sizeof(err));
  int rc = tpool_config_parse_sections(&o, (const char *)data, size, "fuzz.ini",
                                       s, 4, &err);
  if (rc != 0) {
    expect(rc == -22 /* -EINVAL */ || rc == -12 /* -ENOMEM */,
           "unexpected return code (sections)");
    expect(memcmp(&o, &before, sizeof(o)) == 0 &&
               memcmp(&a, &a0, sizeof(a)) == 0 &&
               memcmp(&b, &b0, sizeof(b)) == 0 &&
               memcmp(jobs, j0, sizeof(jobs)) == 0 && njobs == 99,
           "a refusal changed options or a section's data");
    expect_named(&err, lines, true);
    return;
  }
  for (size_t i = 0; i < 4; i++)
    expect(tpool_config_check_section(&s[i], "fuzz.ini", &err) == 0,
           "an accepted file left a field out of range");
  expect(b.count == 3, "a key of the first [app] reached the second");
  check_jobs(jobs, j0, njobs, lines);
  memset(&err, 0, sizeof(err));
  if (tpool_options_check(&o, &err) != 0)
    expect_named(&err, lines, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_INPUT)
    return 0;
  fuzz_sections(data, size, count_lines(data, size));
  static tpool_options_t o, before;
  tpool_options_init(&o);
  memcpy(&before, &o, sizeof(o));
  tpool_config_error_t err;
  memset(&err, 0, sizeof(err));
  int lines = count_lines(data, size);
  int rc = tpool_config_parse(&o, (const char *)data, size, "fuzz.ini", &err);
  if (rc != 0) {
    expect(rc == -22 /* -EINVAL */ || rc == -12 /* -ENOMEM */,
           "unexpected return code");
    expect(memcmp(&o, &before, sizeof(o)) == 0, "a refusal changed options");
    expect_named(&err, lines, true);
    return 0;
  }
  memset(&err, 0, sizeof(err));
  if (tpool_options_check(&o, &err) != 0)
    expect_named(&err, lines, false);
  return 0;
}
