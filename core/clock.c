/*
 * clock.c — time for tpool: every timestamp is CLOCK_MONOTONIC nanoseconds
 * (tpool__now_ns() in internal.h), and every timed wait uses a condition
 * variable bound to the same clock, so a change of wall-clock time can
 * neither stretch nor cut an idle timeout or a shutdown deadline.
 */
#include "internal.h"

int tpool__cond_init(pthread_cond_t *cv) {
  pthread_condattr_t attr;
  int rc = pthread_condattr_init(&attr);
  if (rc != 0)
    return rc;
  rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (rc == 0)
    rc = pthread_cond_init(cv, &attr);
  pthread_condattr_destroy(&attr);
  return rc;
}

int tpool__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           uint64_t deadline_ns) {
  if (deadline_ns == UINT64_MAX)
    return pthread_cond_wait(cv, mu);
  struct timespec ts;
  tpool__ns_to_timespec(deadline_ns, &ts);
  return pthread_cond_timedwait(cv, mu, &ts);
}
