/*
 * test_batch.c — batches with bounded concurrency: never more than K of a
 * batch's tasks queued or running; one callback, on the loop, after the
 * close and the last task, with every status in the order added (failures,
 * refusals and cancellations included); an empty batch and a K larger than
 * the batch; adding after the close is refused; a shutdown still ends the
 * batch.
 */
#include "helpers.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

/* Counts how many of a batch's tasks run at once. */
typedef struct {
  atomic_int now, most;
} gauge_t;

typedef struct {
  gauge_t *g;
  int status; /* what the work returns */
} job_t;

static int job_work(void *arg) {
  job_t *j = arg;
  int n = atomic_fetch_add(&j->g->now, 1) + 1;
  int most = atomic_load(&j->g->most);
  while (n > most && !atomic_compare_exchange_weak(&j->g->most, &most, n))
    ;
  struct timespec ts = {0, 200000}; /* long enough to overlap if allowed */
  nanosleep(&ts, NULL);
  atomic_fetch_sub(&j->g->now, 1);
  return j->status;
}

typedef struct {
  int calls;
  size_t n;
  int statuses[64];
  bool on_loop;
  pthread_t loop;
} result_t;

static void batch_done(const int *statuses, size_t n, void *arg) {
  result_t *r = arg;
  r->calls++;
  r->n = n;
  for (size_t i = 0; i < n && i < 64; i++)
    r->statuses[i] = statuses[i];
  r->on_loop = pthread_equal(pthread_self(), r->loop);
}

static tpool_manager_t *manager(struct event_base *base, unsigned workers,
                                size_t limit) {
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "b", workers, workers, limit);
  return th_manager(&o, base);
}

/* Drains and frees the manager, then its base. */
static void manager_done(tpool_manager_t *m, struct event_base *base) {
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  tpool_manager_free(m);
  event_base_free(base);
}

static void test_batch_bounded_concurrency_and_statuses(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = manager(base, 8, 64);
  gauge_t g = {0, 0};
  job_t jobs[20];
  result_t r = {.loop = pthread_self()};
  tpool_batch_t *b;
  assert_int_equal(
      tpool_batch_new(tpool_manager_pool(m, "b"), 3, batch_done, &r, NULL, &b),
      0);
  for (int i = 0; i < 20; i++) {
    jobs[i] = (job_t){&g, i % 5 == 4 ? -EIO : 0};
    assert_int_equal(tpool_batch_add(b, "job", job_work, &jobs[i]), i);
  }
  assert_int_equal(tpool_batch_close(b), 0);
  assert_int_equal(r.calls, 0); /* never from inside close */
  assert_true(th_run_until_int(base, &r.calls, 1, 30.0));
  assert_int_equal(r.n, 20);
  for (int i = 0; i < 20; i++)
    assert_int_equal(r.statuses[i], jobs[i].status);
  assert_true(r.on_loop);
  assert_true(atomic_load(&g.most) <= 3); /* 8 workers, 3 at a time */
  assert_true(atomic_load(&g.most) >= 1);
  tpool_pool_stats_t ps = th_pool_stats(m, "b");
  assert_int_equal(ps.completed, 16);
  assert_int_equal(ps.failed, 4);
  manager_done(m, base);
}

static void test_batch_empty_and_wider_than_itself(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = manager(base, 4, 64);
  tpool_pool_t *p = tpool_manager_pool(m, "b");
  result_t r = {.loop = pthread_self()};
  tpool_batch_t *b;
  /* A batch of zero: its callback still comes, on the loop. */
  assert_int_equal(tpool_batch_new(p, 4, batch_done, &r, NULL, &b), 0);
  assert_int_equal(tpool_batch_close(b), 0);
  assert_int_equal(r.calls, 0);
  assert_true(th_run_until_int(base, &r.calls, 1, 10.0));
  assert_int_equal(r.n, 0);
  /* K larger than the batch: all at once; closed after they ended. */
  gauge_t g = {0, 0};
  job_t jobs[3] = {{&g, 0}, {&g, 0}, {&g, -EDOM}};
  result_t r2 = {.loop = pthread_self()};
  assert_int_equal(tpool_batch_new(p, 100, batch_done, &r2, NULL, &b), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(tpool_batch_add(b, NULL, job_work, &jobs[i]), i);
  th_run_until(base, NULL, NULL, 0.2); /* the three end meanwhile */
  assert_int_equal(tpool_batch_close(b), 0);
  assert_int_equal(tpool_batch_add(b, "late", job_work, &jobs[0]), -EINVAL);
  assert_int_equal(tpool_batch_close(b), -EINVAL);
  assert_true(th_run_until_int(base, &r2.calls, 1, 10.0));
  assert_int_equal(r2.n, 3);
  assert_int_equal(r2.statuses[2], -EDOM);
  /* Bad arguments. */
  assert_int_equal(tpool_batch_new(p, 0, batch_done, &r, NULL, &b), -EINVAL);
  assert_int_equal(tpool_batch_new(p, 1, NULL, &r, NULL, &b), -EINVAL);
  assert_int_equal(tpool_batch_new(NULL, 1, batch_done, &r, NULL, &b), -EINVAL);
  manager_done(m, base);
}

static void test_batch_refusals_and_shutdown_end_it(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = manager(base, 1, 2);
  tpool_pool_t *p = tpool_manager_pool(m, "b");
  th_gate_t gate;
  th_gate_init(&gate);
  /* The one worker held and the queue of two full, outside the batch. */
  assert_true(tpool_submit(p, "held", th_gate_work, NULL, &gate, NULL) > 0);
  while (th_gate_waiting(&gate) < 1)
    sched_yield();
  for (int i = 0; i < 2; i++)
    assert_true(tpool_submit(p, "queued", th_gate_work, NULL, &gate, NULL) > 0);
  gauge_t g = {0, 0};
  job_t job = {&g, 0};
  result_t r = {.loop = pthread_self()};
  tpool_batch_t *b;
  assert_int_equal(tpool_batch_new(p, 2, batch_done, &r, NULL, &b), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(tpool_batch_add(b, "refused", job_work, &job), i);
  /* Every submit was refused at once: the batch ended already. */
  assert_int_equal(tpool_batch_close(b), 0);
  assert_true(th_run_until_int(base, &r.calls, 1, 10.0));
  assert_int_equal(r.n, 4);
  for (int i = 0; i < 4; i++)
    assert_int_equal(r.statuses[i], -EAGAIN);
  /* A batch cut short by a shutdown whose deadline passes: its queued
     task is cancelled, the rest refused, and the callback still comes. */
  th_gate_open(&gate);
  assert_true(th_run_until(base, NULL, NULL, 0.1));
  th_gate_t gate2;
  th_gate_init(&gate2);
  result_t r2 = {.loop = pthread_self()};
  assert_int_equal(tpool_batch_new(p, 2, batch_done, &r2, NULL, &b), 0);
  for (int i = 0; i < 4; i++)
    assert_true(tpool_batch_add(b, "gated", th_gate_work, &gate2) >= 0);
  assert_int_equal(tpool_batch_close(b), 0);
  while (th_gate_waiting(&gate2) < 1)
    sched_yield();
  assert_int_equal(tpool_manager_shutdown(m, 0.05), -ETIMEDOUT);
  th_gate_open(&gate2);
  assert_true(th_run_until_int(base, &r2.calls, 1, 10.0));
  assert_int_equal(r2.n, 4);
  assert_int_equal(r2.statuses[0], 0);          /* ran */
  assert_int_equal(r2.statuses[1], -ECANCELED); /* queued at the deadline */
  assert_int_equal(r2.statuses[2], -ESHUTDOWN); /* refused after it */
  assert_int_equal(r2.statuses[3], -ESHUTDOWN);
  manager_done(m, base);
  th_gate_destroy(&gate);
  th_gate_destroy(&gate2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batch_bounded_concurrency_and_statuses),
      cmocka_unit_test(test_batch_empty_and_wider_than_itself),
      cmocka_unit_test(test_batch_refusals_and_shutdown_end_it),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
