/*
 * test_lookup.c — tpool_manager_task(): a task found by id while queued,
 * running and done, with its status and timings; the bounded history
 * that forgets the oldest; ids never given; a pool that keeps none.
 */
#include "helpers.h"

#include <errno.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static bool gate_taken(void *arg) {
  return th_gate_waiting(&((th_tally_t *)arg)->gate) == 1;
}

static tpool_manager_t *history_pool(struct event_base *base, size_t history) {
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "h", 1, 1, 64)->task_history = history;
  return th_manager(&o, base);
}

static void test_lookup_follows_a_task(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = history_pool(base, 16);
  th_tally_t t;
  th_tally_init(&t);
  int64_t held = tpool_manager_submit(m, "h", "held", th_tally_held,
                                      th_tally_done, &t, NULL);
  assert_true(held > 0);
  assert_true(th_run_until(base, gate_taken, &t, 20.0));
  int64_t waiting = tpool_manager_submit(m, "h", "waiting", th_fail_eio,
                                         th_tally_done, &t, NULL);
  assert_true(waiting > 0);

  tpool_task_record_t r;
  assert_int_equal(tpool_manager_task(m, held, &r), 0);
  assert_int_equal(r.id, held);
  assert_string_equal(r.pool, "h");
  assert_string_equal(r.name, "held");
  assert_int_equal(r.state, TPOOL_TASK_RUNNING);
  assert_string_equal(tpool_task_state_name(r.state), "running");
  assert_int_equal(r.attempts, 1);
  assert_true(r.run_s >= 0);

  assert_int_equal(tpool_manager_task(m, waiting, &r), 0);
  assert_int_equal(r.state, TPOOL_TASK_QUEUED);
  assert_string_equal(tpool_task_state_name(r.state), "queued");
  assert_int_equal(r.attempts, 0);

  th_gate_open(&t.gate);
  assert_true(th_run_until_int(base, &t.calls, 2, 20.0));
  assert_int_equal(tpool_manager_task(m, held, &r), 0);
  assert_int_equal(r.state, TPOOL_TASK_DONE);
  assert_string_equal(tpool_task_state_name(r.state), "done");
  assert_int_equal(r.status, 0);
  assert_true(r.run_s > 0);
  assert_true(r.ended_ago_s >= 0);
  assert_int_equal(tpool_manager_task(m, waiting, &r), 0);
  assert_int_equal(r.state, TPOOL_TASK_DONE);
  assert_int_equal(r.status, -EIO);
  assert_string_equal(r.name, "waiting");
  assert_true(r.queue_wait_s > 0); /* it waited behind the held task */

  assert_int_equal(tpool_manager_task(m, 999999, &r), -ENOENT);
  assert_int_equal(tpool_manager_task(m, held, NULL), -EINVAL);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
}

/* Cancelled and expired tasks are remembered with their status too. */
static void test_lookup_remembers_unstarted_ends(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = history_pool(base, 16);
  th_tally_t t;
  th_tally_init(&t);
  assert_true(tpool_manager_submit(m, "h", "held", th_tally_held, th_tally_done,
                                   &t, NULL) > 0);
  assert_true(th_run_until(base, gate_taken, &t, 20.0));
  int64_t c = tpool_manager_submit(m, "h", "cancelled", th_noop, th_tally_done,
                                   &t, NULL);
  tpool_task_opts_t soon = {.start_timeout_s = 0.001};
  int64_t e = tpool_manager_submit(m, "h", "expired", th_noop, th_tally_done,
                                   &t, &soon);
  assert_int_equal(tpool_manager_cancel(m, c), 0);
  th_run_until(base, NULL, NULL, 0.05); /* past the start deadline */
  th_gate_open(&t.gate);
  assert_true(th_run_until_int(base, &t.calls, 3, 20.0));
  tpool_task_record_t r;
  assert_int_equal(tpool_manager_task(m, c, &r), 0);
  assert_int_equal(r.state, TPOOL_TASK_DONE);
  assert_int_equal(r.status, -ECANCELED);
  assert_int_equal(r.attempts, 0);
  assert_int_equal(tpool_manager_task(m, e, &r), 0);
  assert_int_equal(r.status, -ETIMEDOUT);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
}

static void test_lookup_forgets_the_oldest(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = history_pool(base, 4);
  th_tally_t t;
  th_tally_init(&t);
  int64_t ids[10];
  for (int i = 0; i < 10; i++) {
    ids[i] =
        tpool_manager_submit(m, "h", "n", th_noop, th_tally_done, &t, NULL);
    assert_true(ids[i] > 0);
  }
  assert_true(th_run_until_int(base, &t.calls, 10, 20.0));
  tpool_task_record_t r;
  for (int i = 0; i < 10; i++)
    assert_int_equal(tpool_manager_task(m, ids[i], &r), i < 6 ? -ENOENT : 0);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
}

static void test_lookup_without_history(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = history_pool(base, 0);
  th_tally_t t;
  th_tally_init(&t);
  int64_t id =
      tpool_manager_submit(m, "h", "n", th_noop, th_tally_done, &t, NULL);
  assert_true(th_run_until_int(base, &t.calls, 1, 20.0));
  tpool_task_record_t r;
  assert_int_equal(tpool_manager_task(m, id, &r), -ENOENT);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lookup_follows_a_task),
      cmocka_unit_test(test_lookup_remembers_unstarted_ends),
      cmocka_unit_test(test_lookup_forgets_the_oldest),
      cmocka_unit_test(test_lookup_without_history),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
