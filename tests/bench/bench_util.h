/*
 * bench_util.h — what the bench programs share: dying with a message that
 * names the program and the process (they fork children), and an
 * allocation that cannot fail. A program defines BENCH_NAME before
 * including it.
 */
#ifndef TPOOL_BENCH_UTIL_H
#define TPOOL_BENCH_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn static inline void die(const char *what, const char *why) {
  fprintf(stderr, BENCH_NAME "[%ld]: %s: %s\n", (long)getpid(), what, why);
  exit(1);
}

static inline void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL)
    die("calloc", strerror(ENOMEM));
  return p;
}

#endif /* TPOOL_BENCH_UTIL_H */
