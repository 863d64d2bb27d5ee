/*
 * test_retry.c — retries with backoff: a work function returns
 * -TPOOL_ERETRY and runs again after a loop timer, up to its attempts;
 * the done callback runs once with the final status. Also: per-task
 * settings, the backoff's growth, no worker held during a backoff, a
 * cancel and a shutdown during one, futures, and a task with no loop.
 */
#include "helpers.h"

#include <errno.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define ATTEMPTS_MAX 8

/* A work function that asks for a retry until its `succeed_on`-th run
   (0: never succeeds), noting when each run started. */
typedef struct flaky {
  pthread_mutex_t mu;
  int runs;                     /* protected by mu */
  int succeed_on;               /* fixed */
  uint64_t at_ns[ATTEMPTS_MAX]; /* protected by mu */
  /* Filled by the done callback, on the loop. */
  int done_calls;
  int status;
  unsigned attempts;
} flaky_t;

static void flaky_init(flaky_t *f, int succeed_on) {
  memset(f, 0, sizeof(*f));
  pthread_mutex_init(&f->mu, NULL);
  f->succeed_on = succeed_on;
}

static int flaky_runs(flaky_t *f) {
  pthread_mutex_lock(&f->mu);
  int n = f->runs;
  pthread_mutex_unlock(&f->mu);
  return n;
}

static int flaky_work(void *arg) {
  flaky_t *f = arg;
  pthread_mutex_lock(&f->mu);
  int run = ++f->runs;
  if (run <= ATTEMPTS_MAX)
    f->at_ns[run - 1] = tpool__now_ns();
  pthread_mutex_unlock(&f->mu);
  return f->succeed_on && run >= f->succeed_on ? 0 : -TPOOL_ERETRY;
}

static void flaky_done(int status, const tpool_task_info_t *info, void *arg) {
  flaky_t *f = arg;
  f->done_calls++;
  f->status = status;
  f->attempts = info->attempts;
}

/* A started manager with one pool "r" of `workers` threads whose tasks
   may run `attempts` times, the first backoff `backoff_s`. */
static tpool_manager_t *retry_pool(struct event_base *base, unsigned workers,
                                   unsigned attempts, double backoff_s,
                                   double backoff_max_s) {
  tpool_options_t o;
  th_options_empty(&o);
  tpool_pool_options_t *po = th_add_pool(&o, "r", workers, workers, 64);
  po->retry_attempts = attempts;
  po->retry_backoff_s = backoff_s;
  po->retry_backoff_max_s = backoff_max_s;
  return th_manager(&o, base);
}

static bool retrying_one(const tpool_pool_stats_t *ps, void *arg) {
  (void)arg;
  return ps->retrying == 1 && ps->busy_workers == 0;
}

static void finish(tpool_manager_t *m, struct event_base *base) {
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
}

static void test_retry_succeeds_on_the_last_attempt(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 3, 0.01, 1.0);
  flaky_t f;
  flaky_init(&f, 3);
  int64_t id =
      tpool_manager_submit(m, "r", "flaky", flaky_work, flaky_done, &f, NULL);
  assert_true(id > 0);
  assert_true(th_run_until_int(base, &f.done_calls, 1, 20.0));
  th_run_until(base, NULL, NULL, 0.05); /* a second call would show now */
  assert_int_equal(f.done_calls, 1);
  assert_int_equal(f.status, 0);
  assert_int_equal(f.attempts, 3);
  assert_int_equal(flaky_runs(&f), 3);

  tpool_pool_stats_t ps = th_pool_stats(m, "r");
  assert_int_equal(ps.submitted, 1);
  assert_int_equal(ps.completed, 1);
  assert_int_equal(ps.failed, 0);
  assert_int_equal(ps.retries, 2);
  assert_int_equal(ps.run.count, 3); /* every attempt's run is measured */
  th_assert_invariant(m);

  tpool_task_record_t rec;
  assert_int_equal(tpool_manager_task(m, id, &rec), 0);
  assert_int_equal(rec.state, TPOOL_TASK_DONE);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.attempts, 3);
  finish(m, base);
  pthread_mutex_destroy(&f.mu);
}

static void test_retry_gives_up_after_its_attempts(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 2, 2, 0.005, 1.0);
  flaky_t f;
  flaky_init(&f, 0); /* never succeeds */
  assert_true(tpool_manager_submit(m, "r", "hopeless", flaky_work, flaky_done,
                                   &f, NULL) > 0);
  assert_true(th_run_until_int(base, &f.done_calls, 1, 20.0));
  th_run_until(base, NULL, NULL, 0.05);
  assert_int_equal(f.done_calls, 1);
  assert_int_equal(f.status, -TPOOL_ERETRY);
  assert_int_equal(f.attempts, 2);
  assert_int_equal(flaky_runs(&f), 2);
  tpool_pool_stats_t ps = th_pool_stats(m, "r");
  assert_int_equal(ps.failed, 1);
  assert_int_equal(ps.retries, 1);
  th_assert_invariant(m);
  assert_string_equal(tpool_err_name(-TPOOL_ERETRY), "TPOOL_ERETRY");
  finish(m, base);
  pthread_mutex_destroy(&f.mu);
}

/* Without retries configured, -TPOOL_ERETRY is an ordinary failure; the
   task's own options turn them on. */
static void test_retry_per_task_settings(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 1, 10.0, 10.0);
  flaky_t plain, own;
  flaky_init(&plain, 2);
  flaky_init(&own, 4);
  assert_true(tpool_manager_submit(m, "r", "plain", flaky_work, flaky_done,
                                   &plain, NULL) > 0);
  tpool_task_opts_t opts = {.max_attempts = 4, .retry_backoff_s = 0.002};
  assert_true(tpool_manager_submit(m, "r", "own", flaky_work, flaky_done, &own,
                                   &opts) > 0);
  assert_true(th_run_until_int(base, &own.done_calls, 1, 20.0));
  assert_int_equal(plain.done_calls, 1);
  assert_int_equal(plain.status, -TPOOL_ERETRY);
  assert_int_equal(plain.attempts, 1);
  assert_int_equal(own.status, 0);
  assert_int_equal(own.attempts, 4);
  th_assert_invariant(m);
  finish(m, base);
  pthread_mutex_destroy(&plain.mu);
  pthread_mutex_destroy(&own.mu);
}

/* The n-th retry waits between half and all of backoff * 2^(n-1), capped:
   only the lower bounds are checked, as a loaded machine may run late. */
static void test_retry_backoff_doubles_with_jitter(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 5, 0.02, 0.05);
  flaky_t f;
  flaky_init(&f, 5);
  assert_true(tpool_manager_submit(m, "r", "slow", flaky_work, flaky_done, &f,
                                   NULL) > 0);
  /* During a backoff the task holds no worker. */
  assert_true(th_wait_stats(m, base, "r", retrying_one, NULL, 20.0));
  assert_true(th_run_until_int(base, &f.done_calls, 1, 30.0));
  assert_int_equal(f.status, 0);
  const double want_s[] = {0.02, 0.04, 0.05, 0.05}; /* capped at 0.05 */
  for (int i = 1; i < 5; i++) {
    double gap = tpool__ns_to_s(f.at_ns[i] - f.at_ns[i - 1]);
    if (gap < want_s[i - 1] / 2 - 0.001)
      fail_msg("retry %d came after %.4fs, before half its backoff %.3fs", i,
               gap, want_s[i - 1]);
  }
  finish(m, base);
  pthread_mutex_destroy(&f.mu);
}

static void test_retry_cancel_during_backoff(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 3, 30.0, 30.0);
  flaky_t f;
  flaky_init(&f, 0);
  int64_t id =
      tpool_manager_submit(m, "r", "waits", flaky_work, flaky_done, &f, NULL);
  assert_true(id > 0);
  assert_true(th_wait_stats(m, base, "r", retrying_one, NULL, 20.0));
  tpool_task_record_t rec;
  assert_int_equal(tpool_manager_task(m, id, &rec), 0);
  assert_int_equal(rec.state, TPOOL_TASK_QUEUED);
  assert_int_equal(rec.attempts, 1);
  assert_int_equal(tpool_manager_cancel(m, id), 0);
  assert_int_equal(tpool_manager_cancel(m, id), -ENOENT);
  assert_true(th_run_until_int(base, &f.done_calls, 1, 20.0));
  th_run_until(base, NULL, NULL, 0.05);
  assert_int_equal(f.done_calls, 1);
  assert_int_equal(f.status, -ECANCELED);
  assert_int_equal(flaky_runs(&f), 1);
  tpool_pool_stats_t ps = th_pool_stats(m, "r");
  assert_int_equal(ps.cancelled, 1);
  assert_int_equal(ps.retries, 0);
  th_assert_invariant(m);
  finish(m, base);
  pthread_mutex_destroy(&f.mu);
}

/* A drain does not wait out a backoff, nor drop the task: the next
   attempt runs at once. */
static void test_retry_shutdown_runs_the_waiting_attempt(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 3, 30.0, 30.0);
  flaky_t f;
  flaky_init(&f, 2);
  assert_true(tpool_manager_submit(m, "r", "drained", flaky_work, flaky_done,
                                   &f, NULL) > 0);
  assert_true(th_wait_stats(m, base, "r", retrying_one, NULL, 20.0));
  struct timespec t0;
  th_now(&t0);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  assert_true(th_elapsed(&t0) < 10.0); /* not the 30 s backoff */
  assert_true(th_run_until_int(base, &f.done_calls, 1, 20.0));
  assert_int_equal(f.status, 0);
  assert_int_equal(f.attempts, 2);
  th_assert_invariant(m);
  tpool_manager_free(m);
  event_base_free(base);
  pthread_mutex_destroy(&f.mu);
}

/* A loop that stops with a task in its backoff: tpool_manager_free()
   (shutdown inside it) still ends the task once. */
static void test_retry_free_with_a_waiting_task(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 3, 30.0, 30.0);
  flaky_t f;
  flaky_init(&f, 0);
  assert_true(tpool_manager_submit(m, "r", "left", flaky_work, flaky_done, &f,
                                   NULL) > 0);
  assert_true(th_wait_stats(m, base, "r", retrying_one, NULL, 20.0));
  tpool_manager_free(m); /* drains: the next attempt runs, and fails */
  assert_int_equal(f.done_calls, 1);
  assert_int_equal(f.status, -TPOOL_ERETRY); /* no more after a stop */
  assert_int_equal(flaky_runs(&f), 2);
  event_base_free(base);
  pthread_mutex_destroy(&f.mu);
}

static int future_flaky(void *arg, void **result) {
  *result = arg;
  return flaky_work(arg);
}

static void test_retry_future_gets_the_final_status(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 3, 0.005, 1.0);
  flaky_t f;
  flaky_init(&f, 3);
  tpool_future_t *fut;
  assert_true(tpool_submit_future(tpool_manager_pool(m, "r"), "fut",
                                  future_flaky, &f, NULL, &fut) > 0);
  /* The backoff timers run on the loop; the future is waited on here. */
  int status = 1;
  void *result = NULL;
  for (int i = 0; i < 2000 && tpool_future_wait(fut, 0, &status, &result); i++)
    th_run_until(base, NULL, NULL, 0.01);
  assert_int_equal(status, 0);
  assert_ptr_equal(result, &f);
  assert_int_equal(flaky_runs(&f), 3);
  tpool_future_free(fut);
  th_assert_invariant(m);
  finish(m, base);
  pthread_mutex_destroy(&f.mu);
}

/* With no loop attached there is no timer to wait on: the request for a
   retry is the final status. */
static void test_retry_without_a_loop_ends_the_task(void **state) {
  (void)state;
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "r", 1, 1, 8)->retry_attempts = 3;
  tpool_manager_t *m = th_manager(&o, NULL);
  flaky_t f;
  flaky_init(&f, 0);
  int64_t id =
      tpool_manager_submit(m, "r", "loopless", flaky_work, NULL, &f, NULL);
  assert_true(id > 0);
  tpool_task_record_t rec = {0};
  for (int i = 0; i < 2000; i++) {
    if (tpool_manager_task(m, id, &rec) == 0 && rec.state == TPOOL_TASK_DONE)
      break;
    nanosleep(&(struct timespec){0, 5000000}, NULL);
  }
  assert_int_equal(rec.state, TPOOL_TASK_DONE);
  assert_int_equal(rec.status, -TPOOL_ERETRY);
  assert_int_equal(rec.attempts, 1);
  th_assert_invariant(m);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  pthread_mutex_destroy(&f.mu);
}

/* A start timeout counts from the task's return to the queue: a backoff
   longer than the timeout does not expire the retry. */
static void test_retry_start_timeout_counts_again(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = retry_pool(base, 1, 2, 0.2, 1.0);
  flaky_t f;
  flaky_init(&f, 2);
  tpool_task_opts_t opts = {.start_timeout_s = 0.05};
  assert_true(tpool_manager_submit(m, "r", "timed", flaky_work, flaky_done, &f,
                                   &opts) > 0);
  assert_true(th_run_until_int(base, &f.done_calls, 1, 20.0));
  assert_int_equal(f.status, 0);
  assert_int_equal(f.attempts, 2);
  th_assert_invariant(m);
  finish(m, base);
  pthread_mutex_destroy(&f.mu);
}

/* A retry meets the circuit breaker like a new submit: while it is open
   the task ends with -TPOOL_ECIRCUIT instead of running again. */
static void test_retry_refused_by_an_open_breaker(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_options_t o;
  th_options_empty(&o);
  tpool_pool_options_t *po = th_add_pool(&o, "r", 1, 1, 64);
  po->retry_attempts = 5;
  po->retry_backoff_s = 0.01;
  po->breaker_window = 1; /* the first failed run opens it */
  po->breaker_threshold = 1;
  po->breaker_cooldown_s = 60;
  tpool_manager_t *m = th_manager(&o, base);
  flaky_t f;
  flaky_init(&f, 0);
  assert_true(tpool_manager_submit(m, "r", "blocked", flaky_work, flaky_done,
                                   &f, NULL) > 0);
  assert_true(th_run_until_int(base, &f.done_calls, 1, 20.0));
  assert_int_equal(f.status, -TPOOL_ECIRCUIT);
  assert_int_equal(flaky_runs(&f), 1);
  tpool_pool_stats_t ps = th_pool_stats(m, "r");
  assert_int_equal(ps.failed, 1);
  assert_int_equal(ps.breaker.state, TPOOL_BREAKER_OPEN);
  th_assert_invariant(m);
  finish(m, base);
  pthread_mutex_destroy(&f.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retry_succeeds_on_the_last_attempt),
      cmocka_unit_test(test_retry_gives_up_after_its_attempts),
      cmocka_unit_test(test_retry_per_task_settings),
      cmocka_unit_test(test_retry_backoff_doubles_with_jitter),
      cmocka_unit_test(test_retry_cancel_during_backoff),
      cmocka_unit_test(test_retry_shutdown_runs_the_waiting_attempt),
      cmocka_unit_test(test_retry_free_with_a_waiting_task),
      cmocka_unit_test(test_retry_future_gets_the_final_status),
      cmocka_unit_test(test_retry_without_a_loop_ends_the_task),
      cmocka_unit_test(test_retry_start_timeout_counts_again),
      cmocka_unit_test(test_retry_refused_by_an_open_breaker),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
