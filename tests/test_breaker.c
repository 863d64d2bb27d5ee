/*
 * test_breaker.c — the circuit breaker: its window and states driven
 * directly with a made-up clock (breaker.c), then through a real pool:
 * opening on failures, refusing with -TPOOL_ECIRCUIT, half-opening after
 * the cooldown, closing on passed trials or reopening on a failed one,
 * and a reset by hand.
 */
#include "helpers.h"

#include <errno.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define MS 1000000ull

static void breaker_new(tpool__breaker_t *b, unsigned window, double threshold,
                        unsigned trials) {
  memset(b, 0, sizeof(*b));
  assert_true(tpool__breaker_configure(b, window, threshold, 100 * MS, trials));
}

/* Records `n` outcomes, `failed` each. */
static void record(tpool__breaker_t *b, unsigned n, bool failed, uint64_t now,
                   tpool__breaker_news_t *news) {
  for (unsigned i = 0; i < n; i++)
    tpool__breaker_record(b, failed, 0, now, news);
}

static void test_breaker_opens_only_on_a_full_window(void **state) {
  (void)state;
  tpool__breaker_t b;
  tpool__breaker_news_t news = {0};
  breaker_new(&b, 4, 0.5, 1);
  record(&b, 3, true, 0, &news); /* 3 of 3: the window is not full yet */
  assert_int_equal(b.state, TPOOL_BREAKER_CLOSED);
  record(&b, 1, false, 0, &news); /* 3 of 4 >= 0.5 */
  assert_int_equal(b.state, TPOOL_BREAKER_OPEN);
  assert_int_equal(news.why, TPOOL__BREAKER_TRIPPED);
  assert_int_equal(news.failures, 3);
  assert_int_equal(news.window, 4);
}

static void test_breaker_window_slides(void **state) {
  (void)state;
  tpool__breaker_t b;
  tpool__breaker_news_t news = {0};
  breaker_new(&b, 4, 0.75, 1);
  record(&b, 2, true, 0, &news);
  record(&b, 6, false, 0, &news); /* the failures slide out */
  assert_int_equal(b.failures, 0);
  record(&b, 2, true, 0, &news); /* 2 of the last 4 < 0.75 */
  assert_int_equal(b.state, TPOOL_BREAKER_CLOSED);
  record(&b, 1, true, 0, &news); /* 3 of 4 */
  assert_int_equal(b.state, TPOOL_BREAKER_OPEN);
}

static void test_breaker_half_opens_and_closes(void **state) {
  (void)state;
  tpool__breaker_t b;
  tpool__breaker_news_t news = {0};
  breaker_new(&b, 2, 1.0, 2);
  record(&b, 2, true, 0, &news);
  uint32_t trial;
  assert_int_equal(tpool__breaker_admit(&b, 50 * MS, &trial, &news),
                   -TPOOL_ECIRCUIT);
  assert_int_equal(b.refused, 1);
  /* After the cooldown: two trials, then refusals until they end. */
  uint32_t t1, t2, t3;
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t1, &news), 0);
  assert_int_equal(news.why, TPOOL__BREAKER_COOLED);
  assert_int_equal(b.state, TPOOL_BREAKER_HALF_OPEN);
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t2, &news), 0);
  assert_true(t1 != 0 && t1 == t2);
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t3, &news),
                   -TPOOL_ECIRCUIT);
  /* A straggler admitted before the breaker opened decides nothing. */
  tpool__breaker_record(&b, true, 0, 101 * MS, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_HALF_OPEN);
  tpool__breaker_record(&b, false, t1, 101 * MS, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_HALF_OPEN);
  tpool__breaker_record(&b, false, t2, 102 * MS, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_CLOSED);
  assert_int_equal(news.why, TPOOL__BREAKER_TRIALS_PASSED);
  assert_int_equal(b.filled, 0); /* a fresh window */
  assert_int_equal(b.opened, 1);
  assert_int_equal(b.half_opened, 1);
  assert_int_equal(b.closed, 1);
}

static void test_breaker_failed_trial_reopens(void **state) {
  (void)state;
  tpool__breaker_t b;
  tpool__breaker_news_t news = {0};
  breaker_new(&b, 1, 1.0, 3);
  record(&b, 1, true, 0, &news);
  uint32_t t1, t2;
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t1, &news), 0);
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t2, &news), 0);
  tpool__breaker_record(&b, true, t1, 110 * MS, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_OPEN);
  assert_int_equal(news.why, TPOOL__BREAKER_TRIAL_FAILED);
  assert_int_equal(b.open_until_ns, 210 * MS); /* a new cooldown */
  /* The other trial, of the old generation, cannot close it. */
  tpool__breaker_record(&b, false, t2, 120 * MS, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_OPEN);
  uint32_t t;
  assert_int_equal(tpool__breaker_admit(&b, 150 * MS, &t, &news),
                   -TPOOL_ECIRCUIT);
}

/* A trial that never runs (cancelled, expired) gives its place back. */
static void test_breaker_unrun_trial_frees_its_place(void **state) {
  (void)state;
  tpool__breaker_t b;
  tpool__breaker_news_t news = {0};
  breaker_new(&b, 1, 1.0, 1);
  record(&b, 1, true, 0, &news);
  uint32_t t1, t2;
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t1, &news), 0);
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t2, &news),
                   -TPOOL_ECIRCUIT);
  tpool__breaker_unadmit(&b, t1);
  assert_int_equal(tpool__breaker_admit(&b, 100 * MS, &t2, &news), 0);
  tpool__breaker_record(&b, false, t2, 101 * MS, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_CLOSED);
}

/* "At least threshold of the window", exactly: 0.07 * 100 is not 7 in
   floating point, yet 7 failures in 100 must open it. */
static void test_breaker_threshold_is_exact(void **state) {
  (void)state;
  tpool__breaker_t b;
  tpool__breaker_news_t news = {0};
  breaker_new(&b, 100, 0.07, 1);
  record(&b, 93, false, 0, &news);
  record(&b, 6, true, 0, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_CLOSED);
  record(&b, 1, true, 0, &news);
  assert_int_equal(b.state, TPOOL_BREAKER_OPEN);
}

static void test_breaker_off_admits_everything(void **state) {
  (void)state;
  tpool__breaker_t b;
  tpool__breaker_news_t news = {0};
  memset(&b, 0, sizeof(b));
  record(&b, 50, true, 0, &news);
  uint32_t t;
  assert_int_equal(tpool__breaker_admit(&b, 0, &t, &news), 0);
  assert_int_equal(t, 0);
  assert_int_equal(news.why, TPOOL__BREAKER_QUIET);
}

/* ---- through a pool ----------------------------------------------------- */

static bool breaker_is(const tpool_pool_stats_t *ps, void *arg) {
  return ps->breaker.state == *(tpool_breaker_state_t *)arg;
}

static void wait_breaker(tpool_manager_t *m, struct event_base *base,
                         tpool_breaker_state_t want) {
  assert_true(th_wait_stats(m, base, "b", breaker_is, &want, 20.0));
}

static void test_breaker_in_a_pool(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_options_t o;
  th_log_t log;
  th_options_logged(&o, &log);
  tpool_pool_options_t *po = th_add_pool(&o, "b", 2, 2, 64);
  po->breaker_window = 4;
  po->breaker_threshold = 0.5;
  po->breaker_cooldown_s = 1.0; /* long enough to see it open, loaded */
  po->breaker_trials = 2;
  tpool_manager_t *m = th_manager(&o, base);
  tpool_pool_t *p = tpool_manager_pool(m, "b");
  th_tally_t t;
  th_tally_init(&t);

  /* Two failures in four runs: open. */
  for (int i = 0; i < 4; i++)
    assert_true(tpool_submit(p, "x", i % 2 ? th_fail_eio : th_noop,
                             th_tally_done, &t, NULL) > 0);
  assert_true(th_run_until_int(base, &t.calls, 4, 20.0));
  wait_breaker(m, base, TPOOL_BREAKER_OPEN);
  assert_int_equal(tpool_submit(p, "x", th_noop, th_tally_done, &t, NULL),
                   -TPOOL_ECIRCUIT);
  assert_true(
      th_log_wait_for(&log, "Circuit breaker open: 2 of the last 4", 5.0));

  /* After the cooldown it is half-open; two passing trials close it. */
  wait_breaker(m, base, TPOOL_BREAKER_HALF_OPEN);
  for (int i = 0; i < 2; i++)
    assert_true(tpool_submit(p, "trial", th_noop, th_tally_done, &t, NULL) > 0);
  assert_true(th_run_until_int(base, &t.calls, 6, 20.0));
  wait_breaker(m, base, TPOOL_BREAKER_CLOSED);
  assert_true(th_log_wait_for(&log, "Circuit breaker closed: 2 trial", 5.0));

  /* Open it again; a failed trial reopens; a reset closes it by hand. */
  for (int i = 0; i < 4; i++)
    assert_true(tpool_submit(p, "x", th_fail_eio, th_tally_done, &t, NULL) > 0);
  assert_true(th_run_until_int(base, &t.calls, 10, 20.0));
  wait_breaker(m, base, TPOOL_BREAKER_OPEN);
  wait_breaker(m, base, TPOOL_BREAKER_HALF_OPEN);
  assert_true(tpool_submit(p, "bad", th_fail_eio, th_tally_done, &t, NULL) > 0);
  assert_true(th_run_until_int(base, &t.calls, 11, 20.0));
  wait_breaker(m, base, TPOOL_BREAKER_OPEN);
  assert_true(th_log_wait_for(&log, "Circuit breaker open again", 5.0));
  assert_int_equal(tpool_pool_reset_breaker(p), 0);
  tpool_pool_stats_t ps = th_pool_stats(m, "b");
  assert_int_equal(ps.breaker.state, TPOOL_BREAKER_CLOSED);
  assert_int_equal(ps.breaker.opened, 3);
  assert_int_equal(ps.breaker.half_opened, 2);
  assert_int_equal(ps.breaker.closed, 2);
  assert_int_equal(ps.breaker.refused, 1);
  assert_true(
      th_log_contains(&log, "Circuit breaker closed by hand (was open)"));
  assert_true(tpool_submit(p, "x", th_noop, th_tally_done, &t, NULL) > 0);
  assert_true(th_run_until_int(base, &t.calls, 12, 20.0));
  th_assert_invariant(m);

  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
  th_log_destroy(&log);
}

static void test_breaker_reset_needs_a_breaker(void **state) {
  (void)state;
  tpool_manager_t *m = th_one_pool(1, 4, NULL);
  assert_int_equal(tpool_pool_reset_breaker(tpool_manager_pool(m, "w")),
                   -EINVAL);
  assert_int_equal(tpool_pool_reset_breaker(NULL), -EINVAL);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_breaker_opens_only_on_a_full_window),
      cmocka_unit_test(test_breaker_window_slides),
      cmocka_unit_test(test_breaker_half_opens_and_closes),
      cmocka_unit_test(test_breaker_failed_trial_reopens),
      cmocka_unit_test(test_breaker_unrun_trial_frees_its_place),
      cmocka_unit_test(test_breaker_threshold_is_exact),
      cmocka_unit_test(test_breaker_off_admits_everything),
      cmocka_unit_test(test_breaker_in_a_pool),
      cmocka_unit_test(test_breaker_reset_needs_a_breaker),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
