/*
 * test_future.c — futures, waited on by threads that are not a loop (no
 * event_base is attached here at all): the status and result come back;
 * a wait times out while the task is held and succeeds after, as often as
 * asked; a handle freed before its task ends leaks nothing; a cancelled,
 * expired or shut-down future says so; refusals hand out no handle; and
 * four threads each wait on thousands, every one ending exactly once.
 */
#include "helpers.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

/* Doubles *(int *)arg into a new int as the result; fails for negatives. */
static int double_it(void *arg, void **result) {
  int v = *(int *)arg;
  if (v < 0)
    return -EDOM;
  int *out = malloc(sizeof(*out));
  if (!out)
    return -ENOMEM;
  *out = 2 * v;
  *result = out;
  return 0;
}

/* Holds at the gate in arg, then returns 7 as the result. */
static int gated(void *arg, void **result) {
  th_gate_pass(arg);
  *result = (void *)(uintptr_t)7;
  return 0;
}

static tpool_manager_t *manager(unsigned workers, size_t limit) {
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "f", workers, workers, limit);
  return th_manager(&o, NULL); /* no loop: futures need none */
}

static void test_future_returns_status_and_result(void **state) {
  (void)state;
  tpool_manager_t *m = manager(2, 64);
  tpool_pool_t *p = tpool_manager_pool(m, "f");
  int in = 21, bad = -1;
  tpool_future_t *f, *g;
  assert_true(tpool_submit_future(p, "double", double_it, &in, NULL, &f) > 0);
  assert_true(tpool_submit_future(p, "double", double_it, &bad, NULL, &g) > 0);
  int status = 1;
  void *result = NULL;
  assert_int_equal(tpool_future_wait(f, -1, &status, &result), 0);
  assert_int_equal(status, 0);
  assert_int_equal(*(int *)result, 42);
  free(result);
  result = (void *)1;
  assert_int_equal(tpool_future_wait(g, -1, &status, &result), 0);
  assert_int_equal(status, -EDOM);
  assert_null(result); /* set nothing: NULL */
  tpool_future_free(f);
  tpool_future_free(g);
  tpool_pool_stats_t ps = th_pool_stats(m, "f");
  assert_int_equal(ps.completed, 1);
  assert_int_equal(ps.failed, 1);
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  tpool_manager_free(m);
}

static void test_future_wait_times_out_then_succeeds(void **state) {
  (void)state;
  tpool_manager_t *m = manager(1, 64);
  th_gate_t gate;
  th_gate_init(&gate);
  tpool_future_t *f;
  assert_true(tpool_submit_future(tpool_manager_pool(m, "f"), "held", gated,
                                  &gate, NULL, &f) > 0);
  int status = 99;
  void *result = NULL;
  assert_int_equal(tpool_future_wait(f, 0, &status, &result), -ETIMEDOUT);
  assert_int_equal(tpool_future_wait(f, 0.02, &status, &result), -ETIMEDOUT);
  assert_int_equal(status, 99); /* untouched */
  th_gate_open(&gate);
  for (int i = 0; i < 3; i++) { /* the same answer every time */
    status = 99;
    result = NULL;
    assert_int_equal(tpool_future_wait(f, -1, &status, &result), 0);
    assert_int_equal(status, 0);
    assert_int_equal((uintptr_t)result, 7);
  }
  assert_int_equal(tpool_future_wait(f, 0, NULL, NULL), 0);
  tpool_future_free(f);
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  tpool_manager_free(m);
  th_gate_destroy(&gate);
}

static void test_future_freed_before_its_task_ends(void **state) {
  (void)state;
  tpool_manager_t *m = manager(1, 64);
  th_gate_t gate;
  th_gate_init(&gate);
  tpool_pool_t *p = tpool_manager_pool(m, "f");
  tpool_future_t *running, *queued;
  assert_true(tpool_submit_future(p, "held", gated, &gate, NULL, &running) > 0);
  assert_true(tpool_submit_future(p, "queued", gated, &gate, NULL, &queued) >
              0);
  while (th_gate_waiting(&gate) < 1)
    sched_yield();
  /* Both handles go first; the tasks end later, and free what is left
     (AddressSanitizer's leak check watches). */
  tpool_future_free(running);
  tpool_future_free(queued);
  th_gate_open(&gate);
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  assert_int_equal(th_pool_stats(m, "f").completed, 2);
  tpool_manager_free(m);
  th_gate_destroy(&gate);
}

static void test_future_cancel_expiry_and_shutdown(void **state) {
  (void)state;
  tpool_manager_t *m = manager(1, 64);
  th_gate_t gate;
  th_gate_init(&gate);
  tpool_pool_t *p = tpool_manager_pool(m, "f");
  tpool_future_t *held, *cancelled, *expired, *unstarted;
  assert_true(tpool_submit_future(p, "held", gated, &gate, NULL, &held) > 0);
  while (th_gate_waiting(&gate) < 1)
    sched_yield();
  int in = 1;
  int64_t id =
      tpool_submit_future(p, "cancelled", double_it, &in, NULL, &cancelled);
  assert_true(id > 0);
  tpool_task_opts_t soon = {.start_timeout_s = 0.001};
  assert_true(
      tpool_submit_future(p, "expired", double_it, &in, &soon, &expired) > 0);
  assert_true(tpool_submit_future(p, "unstarted", double_it, &in, NULL,
                                  &unstarted) > 0);
  assert_int_equal(tpool_manager_cancel(m, id), 0);
  int status = 0;
  void *result = (void *)1;
  assert_int_equal(tpool_future_wait(cancelled, -1, &status, &result), 0);
  assert_int_equal(status, -ECANCELED);
  assert_null(result);
  /* The monitor expires the one with a 1 ms start deadline. */
  assert_int_equal(tpool_future_wait(expired, -1, &status, NULL), 0);
  assert_int_equal(status, -ETIMEDOUT);
  /* A shutdown whose deadline passes while the worker is held cancels
     what never started. */
  assert_int_equal(tpool_manager_shutdown(m, 0.05), -ETIMEDOUT);
  assert_int_equal(tpool_future_wait(unstarted, -1, &status, NULL), 0);
  assert_int_equal(status, -ECANCELED);
  /* Refused after shutdown: no handle. */
  tpool_future_t *none = NULL;
  assert_int_equal(tpool_submit_future(p, "late", double_it, &in, NULL, &none),
                   -ESHUTDOWN);
  assert_null(none);
  th_gate_open(&gate);
  assert_int_equal(tpool_future_wait(held, -1, &status, NULL), 0);
  assert_int_equal(status, 0);
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  tpool_future_free(held);
  tpool_future_free(cancelled);
  tpool_future_free(expired);
  tpool_future_free(unstarted);
  th_assert_invariant(m);
  tpool_manager_free(m);
  th_gate_destroy(&gate);
}

static void test_future_bad_arguments(void **state) {
  (void)state;
  tpool_manager_t *m = manager(1, 1);
  tpool_pool_t *p = tpool_manager_pool(m, "f");
  tpool_future_t *f = NULL;
  int in = 1;
  assert_int_equal(tpool_submit_future(NULL, "x", double_it, &in, NULL, &f),
                   -EINVAL);
  assert_int_equal(tpool_submit_future(p, "x", NULL, &in, NULL, &f), -EINVAL);
  assert_int_equal(tpool_submit_future(p, "x", double_it, &in, NULL, NULL),
                   -EINVAL);
  assert_null(f);
  assert_int_equal(tpool_future_wait(NULL, 0, NULL, NULL), -EINVAL);
  tpool_future_free(NULL);
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  tpool_manager_free(m);
}

/* Each waiter submits and waits on its own futures, some freed unwaited. */
typedef struct {
  tpool_pool_t *pool;
  int n, ok, bad;
} waiter_t;

static void *waiter_main(void *arg) {
  waiter_t *w = arg;
  for (int i = 0; i < w->n; i++) {
    int in = i;
    tpool_future_t *f;
    int64_t id;
    while ((id = tpool_submit_future(w->pool, "w", double_it, &in, NULL, &f)) ==
           -EAGAIN)
      sched_yield();
    if (id <= 0) {
      w->bad++;
      continue;
    }
    int status = 1;
    void *result = NULL;
    if (tpool_future_wait(f, -1, &status, &result) == 0 && status == 0 &&
        *(int *)result == 2 * i)
      w->ok++;
    else
      w->bad++;
    free(result);
    tpool_future_free(f);
  }
  return NULL;
}

static void test_future_many_waiting_threads(void **state) {
  (void)state;
  enum { THREADS = 4, EACH = TH_TSAN ? 2000 : 20000 };
  tpool_manager_t *m = manager(2, 16);
  waiter_t w[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (waiter_t){tpool_manager_pool(m, "f"), EACH, 0, 0};
    pthread_create(&th[i], NULL, waiter_main, &w[i]);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(w[i].ok, EACH);
    assert_int_equal(w[i].bad, 0);
  }
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  assert_int_equal(th_pool_stats(m, "f").completed, THREADS * EACH);
  th_assert_invariant(m);
  tpool_manager_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_future_returns_status_and_result),
      cmocka_unit_test(test_future_wait_times_out_then_succeeds),
      cmocka_unit_test(test_future_freed_before_its_task_ends),
      cmocka_unit_test(test_future_cancel_expiry_and_shutdown),
      cmocka_unit_test(test_future_bad_arguments),
      cmocka_unit_test(test_future_many_waiting_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
