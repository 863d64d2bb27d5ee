/*
 * fuzz_config.c — the config loader on arbitrary bytes (libFuzzer target).
 *
 * Any input up to 64 KiB goes through tpool_config_parse() over the
 * defaults. Whatever it is (over-long lines, NUL bytes, byte order marks,
 * duplicate sections), the loader must not crash or leak, and:
 *   - when it refuses the text, the options are exactly as they were and
 *     the error is one line naming the file, with a line number inside the
 *     text;
 *   - when it accepts it, tpool_options_check() gives a verdict, and a
 *     refusal there is named the same way.
 * A broken promise aborts, which libFuzzer reports as a crash.
 */
#include "tpool.h"

#include <stdbool.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_INPUT)
    return 0;
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
