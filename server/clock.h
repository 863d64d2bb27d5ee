/*
 * clock.h — the server's monotonic clock (tpool's own is internal to the
 * library).
 */
#ifndef TPOOL_SERVER_CLOCK_H
#define TPOOL_SERVER_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds. Thread: any. */
static inline uint64_t server_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* TPOOL_SERVER_CLOCK_H */
