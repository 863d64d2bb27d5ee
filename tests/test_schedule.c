/*
 * test_schedule.c — time: delayed tasks (scheduled until their delay has
 * passed, cancellable, counted, cancelled by a shutdown), a pool's last
 * error, and periodic schedules (runs on a grid, overlap skip and queue,
 * pause, resume, run now, missed runs counted and not bunched, refusals,
 * staleness, routes, update, cancel and release).
 * Tolerances are wide: a loaded 2-core machine under a sanitizer may run
 * a timer late by tens of milliseconds.
 */
#include "helpers.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- delayed tasks --------------------------------------------------------
 */

/* Notes when its work ran. */
typedef struct stamp {
  _Atomic uint64_t ran_ns;
  int status; /* from the done callback, on the loop */
  int calls;
  double queue_wait_s;
} stamp_t;

static int stamp_work(void *arg) {
  stamp_t *s = arg;
  atomic_store(&s->ran_ns, tpool__now_ns());
  return 0;
}

static void stamp_done(int status, const tpool_task_info_t *info, void *arg) {
  stamp_t *s = arg;
  s->status = status;
  s->queue_wait_s = info->queue_wait_s;
  s->calls++;
}

static void delayed_task_waits_then_runs(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(2, 16, base);
  tpool_pool_t *p = tpool_manager_pool(m, "w");
  stamp_t st = {0};
  tpool_task_opts_t o = {.delay_s = 0.2};
  uint64_t t0 = tpool__now_ns();
  int64_t id = tpool_submit(p, "later", stamp_work, stamp_done, &st, &o);
  assert_true(id > 0);

  tpool_task_record_t r;
  assert_int_equal(tpool_manager_task(m, id, &r), 0);
  assert_int_equal(r.state, TPOOL_TASK_SCHEDULED);
  assert_string_equal(tpool_task_state_name(r.state), "scheduled");
  tpool_pool_stats_t ps = th_pool_stats(m, "w");
  assert_int_equal(ps.scheduled, 1);
  assert_int_equal(ps.queued, 0);
  assert_int_equal(ps.submitted, 1);

  assert_true(th_run_until_int(base, &st.calls, 1, 10));
  assert_int_equal(st.status, 0);
  /* No earlier than the delay; its queue wait counts from then. */
  assert_true(atomic_load(&st.ran_ns) - t0 >= 200000000u);
  assert_true(st.queue_wait_s < 0.15);
  ps = th_pool_stats(m, "w");
  assert_int_equal(ps.scheduled, 0);
  assert_int_equal(ps.retries, 0); /* coming due is not a retry */
  th_assert_invariant(m);
  tpool_manager_free(m);
  event_base_free(base);
}

static void delayed_task_cancels(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(1, 16, base);
  tpool_pool_t *p = tpool_manager_pool(m, "w");
  stamp_t st = {0};
  tpool_task_opts_t o = {.delay_s = 30};
  int64_t id = tpool_submit(p, "never", stamp_work, stamp_done, &st, &o);
  assert_true(id > 0);
  assert_int_equal(tpool_manager_cancel(m, id), 0);
  assert_int_equal(tpool_manager_cancel(m, id), -ENOENT);
  assert_true(th_run_until_int(base, &st.calls, 1, 10));
  assert_int_equal(st.status, -ECANCELED);
  assert_int_equal(atomic_load(&st.ran_ns), 0);
  tpool_pool_stats_t ps = th_pool_stats(m, "w");
  assert_int_equal(ps.cancelled, 1);
  assert_false(ps.last_error.set); /* a cancel is not an error */
  th_assert_invariant(m);
  tpool_manager_free(m);
  event_base_free(base);
}

static void delayed_tasks_bounded_and_checked(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(1, 2, base);
  tpool_pool_t *p = tpool_manager_pool(m, "w");
  th_tally_t t;
  th_tally_init(&t);
  tpool_task_opts_t o = {.delay_s = 30};
  int64_t a = tpool_submit(p, "a", th_noop, th_tally_done, &t, &o);
  int64_t b = tpool_submit(p, "b", th_noop, th_tally_done, &t, &o);
  assert_true(a > 0 && b > 0);
  /* As many scheduled as the queue limit: refused, and counted. */
  assert_int_equal(tpool_submit(p, "c", th_noop, th_tally_done, &t, &o),
                   -EAGAIN);
  double bad[] = {-1, NAN, TPOOL_DELAY_MAX_S * 2};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    o.delay_s = bad[i];
    assert_int_equal(tpool_submit(p, "d", th_noop, th_tally_done, &t, &o),
                     -EINVAL);
  }
  tpool_pool_stats_t ps = th_pool_stats(m, "w");
  assert_int_equal(ps.submitted, 3);
  assert_int_equal(ps.rejected, 1);
  assert_int_equal(ps.scheduled, 2);
  /* A shutdown cancels them at once: they never run early. */
  assert_int_equal(tpool_manager_shutdown(m, 5), 0);
  assert_true(th_run_until_int(base, &t.calls, 2, 10));
  assert_int_equal(t.cancelled, 2);
  th_assert_invariant(m);
  tpool_manager_free(m);
  th_tally_destroy(&t);
  event_base_free(base);

  /* No loop to wait on: a delay needs one. */
  tpool_options_t opts;
  th_options_empty(&opts);
  th_add_pool(&opts, "w", 1, 1, 4);
  tpool_manager_t *bare;
  assert_int_equal(tpool_manager_new(&opts, &bare), 0);
  assert_int_equal(tpool_manager_start(bare), 0);
  o.delay_s = 1;
  assert_int_equal(
      tpool_manager_submit(bare, "w", "x", th_noop, NULL, NULL, &o), -EINVAL);
  tpool_manager_free(bare);
}

/* ---- last error ------------------------------------------------------------
 */

static int fail_saying(void *arg) {
  tpool_task_set_error((const char *)arg);
  return -EIO;
}

static int say_then_succeed(void *arg) {
  tpool_task_set_error((const char *)arg);
  return 0;
}

static bool ended(const tpool_pool_stats_t *ps, void *arg) {
  return ps->completed + ps->failed >= (uint64_t)(uintptr_t)arg;
}

static void last_error_is_kept(void **state) {
  (void)state;
  tpool_manager_t *m = th_one_pool(1, 16, NULL);
  tpool_pool_t *p = tpool_manager_pool(m, "w");
  assert_false(th_pool_stats(m, "w").last_error.set);

  /* A message said by a task that then succeeds is not kept for the next. */
  assert_true(
      tpool_submit(p, "fine", say_then_succeed, NULL, "stale words", NULL) > 0);
  assert_true(tpool_submit(p, "plain", th_fail_eio, NULL, NULL, NULL) > 0);
  assert_true(th_wait_stats(m, NULL, "w", ended, (void *)2, 10));
  tpool_last_error_t e = th_pool_stats(m, "w").last_error;
  assert_true(e.set);
  assert_string_equal(e.name, "plain");
  assert_string_equal(e.message, tpool_strerror(-EIO));
  assert_string_equal(tpool_status_word(e.status), "failed");

  int64_t id = tpool_submit(p, "disk.check", fail_saying, NULL,
                            "disk /dev/sdz not found", NULL);
  assert_true(id > 0);
  assert_true(th_wait_stats(m, NULL, "w", ended, (void *)3, 10));
  e = th_pool_stats(m, "w").last_error;
  assert_true(e.set);
  assert_int_equal(e.id, id);
  assert_string_equal(e.name, "disk.check");
  assert_int_equal(e.status, -EIO);
  assert_string_equal(e.message, "disk /dev/sdz not found");
  assert_true(e.age_s >= 0 && e.age_s < 5);
  th_assert_invariant(m);
  tpool_manager_free(m);
}

/* ---- schedules -------------------------------------------------------------
 */

/* The work and callbacks of a schedule under test. */
typedef struct sched {
  _Atomic int runs;                        /* work functions started */
  _Atomic int inside;                      /* running now */
  _Atomic int most;                        /* most running at once */
  _Atomic int fail;                        /* return -EIO while set */
  _Atomic int hold_ms;                     /* each run takes this long */
  th_gate_t *gate;                         /* if set, each run waits in it */
  int done_calls, done_ok, done_cancelled; /* loop thread */
  int released;                            /* loop thread */
} sched_t;

static int sched_work(void *arg) {
  sched_t *s = arg;
  atomic_fetch_add(&s->runs, 1);
  int in = atomic_fetch_add(&s->inside, 1) + 1;
  int most = atomic_load(&s->most);
  while (in > most && !atomic_compare_exchange_weak(&s->most, &most, in))
    ;
  if (s->gate)
    th_gate_pass(s->gate);
  int ms = atomic_load(&s->hold_ms);
  if (ms)
    usleep((useconds_t)ms * 1000u);
  atomic_fetch_sub(&s->inside, 1);
  return atomic_load(&s->fail) ? -EIO : 0;
}

static void sched_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  sched_t *s = arg;
  s->done_calls++;
  s->done_ok += status == 0;
  s->done_cancelled += status == -ECANCELED;
}

static void sched_release(void *arg) {
  ((sched_t *)arg)->released++;
}

static tpool_schedule_stats_t stats_of(tpool_manager_t *m, const char *name) {
  tpool_schedule_stats_t st;
  assert_int_equal(tpool_manager_schedule_stats(m, name, &st), 0);
  return st;
}

static tpool_schedule_t *make(tpool_manager_t *m, const char *name, sched_t *s,
                              const tpool_schedule_opts_t *o) {
  tpool_schedule_t *h = NULL;
  assert_int_equal(tpool_schedule_new(m, name, tpool_manager_pool(m, "w"), NULL,
                                      sched_work, sched_done, sched_release, s,
                                      o, &h),
                   0);
  return h;
}

static void schedule_runs_on_its_grid(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(2, 16, base);
  sched_t s = {0};
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 0.05;
  o.first_now = true;
  tpool_schedule_t *h = make(m, "tick", &s, &o);
  th_run_until(base, NULL, NULL, 0.6);
  tpool_schedule_stats_t st = stats_of(m, "tick");
  /* About 12; a loaded machine loses some to lateness (counted skipped),
     and never makes more than the grid has points. */
  assert_true(st.runs >= 4 && st.runs <= 14);
  assert_true(st.runs + st.skipped <= 14);
  assert_string_equal(st.pool, "w");
  assert_string_equal(st.task_name, "tick");
  assert_true(st.next_run_in_s >= 0 && st.next_run_in_s <= 0.05 + 1e-9);
  assert_true(st.has_last);
  assert_int_equal(st.last_status, 0);
  assert_true(st.last_run_age_s >= 0 && st.last_run_age_s < 1);
  assert_true(st.last_success_unix > 1.7e9);
  assert_false(st.paused);
  assert_false(st.stale);
  assert_true(st.lateness.count >= st.ok);
  assert_int_equal(st.ok + st.failed + st.cancelled + st.running, st.runs);

  tpool_schedule_cancel(h);
  assert_int_equal(tpool_manager_schedule_stats(m, "tick", &st), -ENOENT);
  assert_true(th_run_until_int(base, &s.released, 1, 10));
  assert_int_equal(s.done_calls, (int)st.runs);
  th_assert_invariant(m);
  tpool_manager_free(m);
  event_base_free(base);
}

static void overlap_skip_and_queue(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(4, 64, base);
  sched_t skip = {0}, queue = {0};
  atomic_store(&skip.hold_ms, 120);
  atomic_store(&queue.hold_ms, 120);
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 0.03;
  o.first_now = true;
  make(m, "skipper", &skip, &o);
  o.overlap = TPOOL_OVERLAP_QUEUE;
  make(m, "queuer", &queue, &o);
  th_run_until(base, NULL, NULL, 0.6);
  tpool_schedule_stats_t a = stats_of(m, "skipper");
  tpool_schedule_stats_t b = stats_of(m, "queuer");
  assert_string_equal(tpool_overlap_name(a.overlap), "skip");
  assert_string_equal(tpool_overlap_name(b.overlap), "queue");
  assert_int_equal(atomic_load(&skip.most), 1);
  assert_true(a.skipped >= 4);
  assert_true(a.running <= 1);
  assert_true(atomic_load(&queue.most) >= 2);
  assert_true(b.runs > a.runs);
  tpool_manager_shutdown(m, 10);
  tpool_manager_free(m); /* runs what is left, and releases both */
  assert_int_equal(skip.released, 1);
  assert_int_equal(queue.released, 1);
  event_base_free(base);
}

static void pause_resume_run_now(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(2, 16, base);
  th_gate_t gate;
  th_gate_init(&gate);
  sched_t s = {.gate = &gate};
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 30; /* no run of its own during the test */
  make(m, "manual", &s, &o);
  tpool_schedule_stats_t st = stats_of(m, "manual");
  assert_int_equal(st.runs, 0);
  assert_true(st.next_run_in_s > 29 && st.next_run_in_s <= 30);

  int64_t id = 0;
  assert_int_equal(
      tpool_manager_schedule_control(m, "manual", TPOOL_SCHEDULE_RUN_NOW, &id),
      0);
  assert_true(id > 0);
  tpool_task_record_t r;
  assert_int_equal(tpool_manager_task(m, id, &r), 0);
  assert_string_equal(r.name, "manual");
  /* Skip: a second run now while the first is in flight is refused. */
  assert_int_equal(
      tpool_manager_schedule_control(m, "manual", TPOOL_SCHEDULE_RUN_NOW, NULL),
      -EBUSY);
  th_gate_open(&gate);
  assert_true(th_run_until_int(base, &s.done_calls, 1, 10));

  assert_int_equal(
      tpool_manager_schedule_control(m, "manual", TPOOL_SCHEDULE_PAUSE, NULL),
      0);
  st = stats_of(m, "manual");
  assert_true(st.paused);
  assert_true(st.next_run_in_s < 0);
  /* Paused: a run now still runs. */
  assert_int_equal(
      tpool_manager_schedule_control(m, "manual", TPOOL_SCHEDULE_RUN_NOW, NULL),
      0);
  assert_true(th_run_until_int(base, &s.done_calls, 2, 10));
  assert_int_equal(
      tpool_manager_schedule_control(m, "manual", TPOOL_SCHEDULE_RESUME, NULL),
      0);
  st = stats_of(m, "manual");
  assert_false(st.paused);
  assert_true(st.next_run_in_s > 29);
  assert_int_equal(st.runs, 2);
  assert_int_equal(st.ok, 2);
  assert_int_equal(st.skipped, 0);

  assert_int_equal(
      tpool_manager_schedule_control(m, "nope", TPOOL_SCHEDULE_PAUSE, NULL),
      -ENOENT);
  assert_int_equal(tpool_manager_schedule_control(
                       m, "manual", (tpool_schedule_action_t)42, NULL),
                   -EINVAL);
  tpool_manager_free(m);
  assert_int_equal(s.released, 1);
  th_gate_destroy(&gate);
  event_base_free(base);
}

/* A started manager with one pool "w" of `workers` and a queue of
   `limit`, its log captured in *log, attached to a new *base. */
static tpool_manager_t *logged_pool(th_log_t *log, unsigned workers,
                                    size_t limit, struct event_base **base) {
  tpool_options_t opts;
  th_options_logged(&opts, log);
  th_add_pool(&opts, "w", workers, workers, limit);
  *base = th_base_new();
  return th_manager(&opts, *base);
}

static void stalled_loop_counts_missed_runs(void **state) {
  (void)state;
  th_log_t log;
  struct event_base *base;
  tpool_manager_t *m = logged_pool(&log, 2, 16, &base);
  sched_t s = {0};
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 0.05;
  make(m, "stalled", &s, &o);
  usleep(600000); /* the loop does not run: about 12 grid points pass */
  th_run_until(base, NULL, NULL, 0.02);
  tpool_schedule_stats_t st = stats_of(m, "stalled");
  /* One run for the stall, not a burst of twelve. */
  assert_int_equal(st.runs, 1);
  assert_true(st.skipped >= 9 && st.skipped <= 13);
  assert_true(th_log_contains(&log, "Schedule[stalled] Missed"));
  assert_true(th_log_contains(&log, "counted as skipped, not made up"));
  tpool_manager_free(m);
  event_base_free(base);
  th_log_destroy(&log);
}

/* A wide jitter spreads runs, some close together; none of that is a
   stall, so nothing is counted missed. */
static void wide_jitter_misses_nothing(void **state) {
  (void)state;
  th_log_t log;
  struct event_base *base;
  tpool_manager_t *m = logged_pool(&log, 2, 64, &base);
  sched_t s = {0};
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 0.02;
  o.jitter = 1;
  o.overlap = TPOOL_OVERLAP_QUEUE;
  make(m, "spread", &s, &o);
  th_run_until(base, NULL, NULL, 1.0);
  tpool_schedule_stats_t st = stats_of(m, "spread");
  assert_int_equal(st.skipped, 0);
  assert_true(st.runs >= 25 && st.runs <= 51);
  assert_false(th_log_contains(&log, "Missed"));
  tpool_manager_free(m);
  event_base_free(base);
  th_log_destroy(&log);
}

static void refused_runs_are_skipped(void **state) {
  (void)state;
  th_log_t log;
  struct event_base *base;
  tpool_manager_t *m = logged_pool(&log, 1, 1, &base);
  th_tally_t t;
  th_tally_init(&t);
  tpool_pool_t *p = tpool_manager_pool(m, "w");
  /* One task holds the worker, one fills the queue. */
  assert_true(tpool_submit(p, "hold", th_tally_held, th_tally_done, &t, NULL) >
              0);
  while (th_gate_waiting(&t.gate) < 1)
    usleep(1000);
  assert_true(tpool_submit(p, "fill", th_noop, th_tally_done, &t, NULL) > 0);
  sched_t s = {0};
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 0.02;
  o.first_now = true;
  o.overlap = TPOOL_OVERLAP_QUEUE;
  make(m, "refused", &s, &o);
  th_run_until(base, NULL, NULL, 0.2);
  tpool_schedule_stats_t st = stats_of(m, "refused");
  assert_int_equal(st.runs, 0);
  assert_true(st.skipped >= 3);
  assert_true(th_log_contains(&log, "Schedule[refused] Run skipped: "
                                    "ThreadPool[w] refused it"));
  /* Logged once while it lasts, and again when it ends. */
  char *text = th_log_copy(&log);
  assert_null(strstr(strstr(text, "Run skipped") + 1, "Run skipped"));
  free(text);
  assert_int_equal(tpool_manager_schedule_control(m, "refused",
                                                  TPOOL_SCHEDULE_RUN_NOW, NULL),
                   -EAGAIN);
  th_gate_open(&t.gate);
  assert_true(th_run_until_int(base, &s.done_calls, 1, 10));
  assert_true(th_log_wait_for(&log, "takes its runs again", 5));
  tpool_manager_free(m);
  th_tally_destroy(&t);
  event_base_free(base);
  th_log_destroy(&log);
}

static void stale_until_a_success(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(2, 16, base);
  sched_t s = {0};
  atomic_store(&s.fail, 1);
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 0.04;
  o.first_now = true;
  o.alert_after = 2;
  make(m, "flaky", &s, &o);
  th_run_until(base, NULL, NULL, 0.3);
  tpool_schedule_stats_t st = stats_of(m, "flaky");
  assert_true(st.stale);
  assert_true(st.failed >= 2);
  assert_int_equal(st.last_status, -EIO);
  assert_int_equal(st.last_success_unix, 0);
  assert_true(th_pool_stats(m, "w").last_error.set);
  atomic_store(&s.fail, 0);
  int ok = s.done_ok;
  th_run_until_int(base, &s.done_ok, ok + 1, 5);
  st = stats_of(m, "flaky");
  assert_false(st.stale);
  assert_int_equal(st.last_status, 0);
  /* Paused is never stale. */
  tpool_manager_schedule_control(m, "flaky", TPOOL_SCHEDULE_PAUSE, NULL);
  atomic_store(&s.fail, 1);
  th_run_until(base, NULL, NULL, 0.2);
  assert_false(stats_of(m, "flaky").stale);
  tpool_manager_free(m);
  event_base_free(base);
}

/* Asks for a retry on its first attempt of each run. */
static _Atomic int retry_attempts;
static int retry_once(void *arg) {
  (void)arg;
  return atomic_fetch_add(&retry_attempts, 1) % 2 == 0 ? -TPOOL_ERETRY : 0;
}

static void runs_take_their_task_options(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(1, 16, base);
  tpool_pool_t *p = tpool_manager_pool(m, "w");
  /* Retries: a run that asks for one runs again and ends once, ok; the
     backoff is not counted as lateness. */
  atomic_store(&retry_attempts, 0);
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 30;
  o.task.max_attempts = 2;
  o.task.retry_backoff_s = 0.2;
  assert_int_equal(tpool_schedule_new(m, "retried", p, NULL, retry_once, NULL,
                                      NULL, NULL, &o, NULL),
                   0);
  assert_int_equal(tpool_manager_schedule_control(m, "retried",
                                                  TPOOL_SCHEDULE_RUN_NOW, NULL),
                   0);
  th_run_until(base, NULL, NULL, 0.6);
  tpool_schedule_stats_t st = stats_of(m, "retried");
  assert_int_equal(st.runs, 1);
  assert_int_equal(st.ok, 1);
  assert_int_equal(atomic_load(&retry_attempts), 2);
  assert_true(st.lateness.max_s < 0.15);
  assert_int_equal(th_pool_stats(m, "w").retries, 1);

  /* A start deadline: a run that waits too long in the queue expires. */
  th_tally_t t;
  th_tally_init(&t);
  assert_true(tpool_submit(p, "hold", th_tally_held, th_tally_done, &t, NULL) >
              0);
  while (th_gate_waiting(&t.gate) < 1)
    usleep(1000);
  sched_t s = {0};
  o.task.start_timeout_s = 0.05;
  make(m, "late", &s, &o);
  assert_int_equal(
      tpool_manager_schedule_control(m, "late", TPOOL_SCHEDULE_RUN_NOW, NULL),
      0);
  th_run_until(base, NULL, NULL, 0.3);
  th_gate_open(&t.gate);
  assert_true(th_run_until_int(base, &s.done_calls, 1, 10));
  st = stats_of(m, "late");
  assert_int_equal(st.failed, 1);
  assert_int_equal(st.last_status, -ETIMEDOUT);
  assert_true(st.last_duration_s < 0); /* it never started */
  assert_int_equal(th_pool_stats(m, "w").expired, 1);
  tpool_manager_free(m);
  th_tally_destroy(&t);
  event_base_free(base);
}

static void routed_named_updated_cancelled(void **state) {
  (void)state;
  tpool_options_t opts;
  th_options_empty(&opts);
  th_add_pool(&opts, "w", 1, 1, 16);
  th_add_pool(&opts, "reports", 1, 1, 16);
  opts.nroutes = 1;
  snprintf(opts.routes[0].pattern, sizeof(opts.routes[0].pattern), "report.*");
  snprintf(opts.routes[0].pool, sizeof(opts.routes[0].pool), "reports");
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_manager(&opts, base);
  sched_t s = {0};
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 30;
  tpool_schedule_t *h = NULL;
  /* By the task's name, through [routes]. */
  assert_int_equal(tpool_schedule_new(m, "daily", NULL, "report.daily",
                                      sched_work, sched_done, sched_release, &s,
                                      &o, &h),
                   0);
  assert_string_equal(stats_of(m, "daily").pool, "reports");
  assert_int_equal(tpool_schedule_new(m, "other", NULL, "misc", sched_work,
                                      NULL, NULL, NULL, &o, NULL),
                   -ENOENT);
  assert_int_equal(tpool_schedule_new(m, "daily", NULL, "report.x", sched_work,
                                      NULL, NULL, NULL, &o, NULL),
                   -EEXIST);
  const char *bad_names[] = {"", "Upper", "with space",
                             "a-name-that-is-far-too-long-for-it"};
  for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
    assert_int_equal(tpool_schedule_new(m, bad_names[i],
                                        tpool_manager_pool(m, "w"), NULL,
                                        sched_work, NULL, NULL, NULL, &o, NULL),
                     -EINVAL);
  tpool_schedule_opts_t bad = o;
  bad.every_s = 0;
  assert_int_equal(tpool_schedule_new(m, "x", tpool_manager_pool(m, "w"), NULL,
                                      sched_work, NULL, NULL, NULL, &bad, NULL),
                   -EINVAL);
  bad = o;
  bad.jitter = 1.5;
  assert_int_equal(tpool_schedule_update(h, &bad), -EINVAL);

  /* Live: a shorter interval plans from now. */
  o.every_s = 0.03;
  o.jitter = 0.5;
  assert_int_equal(tpool_schedule_update(h, &o), 0);
  th_run_until_int(base, &s.done_calls, 3, 5);
  tpool_schedule_stats_t st = stats_of(m, "daily");
  assert_true(st.runs >= 3);
  assert_true(st.jitter == 0.5);

  /* A cancel ends a queued run cancelled, then releases, on the loop. */
  th_tally_t t;
  th_tally_init(&t);
  tpool_pool_t *rp = tpool_manager_pool(m, "reports");
  assert_true(tpool_submit(rp, "hold", th_tally_held, th_tally_done, &t, NULL) >
              0);
  while (th_gate_waiting(&t.gate) < 1)
    usleep(1000);
  int calls = s.done_calls;
  assert_int_equal(
      tpool_manager_schedule_control(m, "daily", TPOOL_SCHEDULE_RUN_NOW, NULL),
      0);
  tpool_schedule_cancel(h);
  assert_int_equal(s.released, 0); /* never inside the call */
  assert_true(th_run_until_int(base, &s.released, 1, 10));
  assert_int_equal(s.done_calls, calls + 1);
  assert_int_equal(s.done_cancelled, 1);
  /* The name is free again. */
  assert_int_equal(tpool_schedule_new(m, "daily", NULL, "report.daily",
                                      sched_work, NULL, NULL, NULL, &o, NULL),
                   0);
  size_t n = 0;
  tpool_schedule_stats_t *all = NULL;
  assert_int_equal(tpool_manager_schedules(m, &all, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(all[0].runs, 0);
  free(all);
  th_gate_open(&t.gate);
  tpool_manager_free(m);
  th_tally_destroy(&t);
  event_base_free(base);
}

/* Many schedules under load on a small pool: every run ends once, the
   counts add up, and the pools' invariant holds at the end. */
static void schedules_under_load(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(2, 4096, base);
  enum { N = 200 };
  static sched_t s[N];
  memset(s, 0, sizeof(s));
  tpool_schedule_opts_t o;
  tpool_schedule_opts_init(&o);
  o.every_s = 0.05;
  o.jitter = 0.2;
  o.first_now = true;
  for (int i = 0; i < N; i++) {
    char name[16];
    snprintf(name, sizeof(name), "s%d", i);
    atomic_store(&s[i].hold_ms, i % 10 == 0 ? 2 : 0);
    o.overlap = i % 2 ? TPOOL_OVERLAP_QUEUE : TPOOL_OVERLAP_SKIP;
    make(m, name, &s[i], &o);
  }
  th_run_until(base, NULL, NULL, 0.8);
  size_t n = 0;
  tpool_schedule_stats_t *all = NULL;
  assert_int_equal(tpool_manager_schedules(m, &all, &n), 0);
  assert_int_equal(n, N);
  uint64_t runs = 0;
  for (size_t i = 0; i < n; i++) {
    runs += all[i].runs;
    if (i > 0)
      assert_true(strcmp(all[i - 1].name, all[i].name) < 0);
  }
  free(all);
  assert_true(runs >= N * 3);
  tpool_manager_shutdown(m, 10);
  tpool_manager_free(m);
  int released = 0;
  for (int i = 0; i < N; i++) {
    released += s[i].released;
    assert_int_equal(s[i].done_calls,
                     atomic_load(&s[i].runs) + s[i].done_cancelled);
  }
  assert_int_equal(released, N);
  event_base_free(base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(delayed_task_waits_then_runs),
      cmocka_unit_test(delayed_task_cancels),
      cmocka_unit_test(delayed_tasks_bounded_and_checked),
      cmocka_unit_test(last_error_is_kept),
      cmocka_unit_test(schedule_runs_on_its_grid),
      cmocka_unit_test(overlap_skip_and_queue),
      cmocka_unit_test(pause_resume_run_now),
      cmocka_unit_test(stalled_loop_counts_missed_runs),
      cmocka_unit_test(wide_jitter_misses_nothing),
      cmocka_unit_test(refused_runs_are_skipped),
      cmocka_unit_test(stale_until_a_success),
      cmocka_unit_test(runs_take_their_task_options),
      cmocka_unit_test(routed_named_updated_cancelled),
      cmocka_unit_test(schedules_under_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
