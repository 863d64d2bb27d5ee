/*
 * test_pool.c — one pool's behaviour: a full queue fails fast, cancel,
 * start deadlines, growth to the maximum and shrink to the minimum, resize
 * under load, waking idle workers, spin before sleep, soft timeouts, and a
 * pool that cannot start threads.
 */
#include "helpers.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

/* Counts done callbacks and remembers their statuses. */
typedef struct {
  int calls;
  int ok, cancelled, expired, other;
  double last_wait_s;
} done_log_t;

static void count_done(int status, const tpool_task_info_t *info, void *arg) {
  done_log_t *d = arg;
  d->calls++;
  d->last_wait_s = info->queue_wait_s;
  if (status == 0)
    d->ok++;
  else if (status == -ECANCELED)
    d->cancelled++;
  else if (status == -ETIMEDOUT)
    d->expired++;
  else
    d->other++;
}

static bool run_until_calls(struct event_base *base, done_log_t *d, int want) {
  return th_run_until_int(base, &d->calls, want, 10.0);
}

static bool busy_is(const tpool_pool_stats_t *ps, void *arg) {
  return ps->busy_workers == *(unsigned *)arg;
}

static bool workers_are(const tpool_pool_stats_t *ps, void *arg) {
  return ps->current_workers == *(unsigned *)arg;
}

/* A work function that must never run (for cancelled/expired tasks). */
static int ran_count;
static int must_not_run(void *arg) {
  (void)arg;
  __atomic_fetch_add(&ran_count, 1, __ATOMIC_SEQ_CST);
  return 0;
}

struct fixture {
  tpool_options_t o;
  struct event_base *base;
  tpool_manager_t *m;
  th_gate_t gate;
  done_log_t d;
  th_log_t log;
};

static struct fixture *fixture_new(unsigned min, unsigned max, size_t limit) {
  struct fixture *f = calloc(1, sizeof(*f));
  th_options_logged(&f->o, &f->log);
  th_add_pool(&f->o, "work", min, max, limit);
  f->base = th_base_new();
  th_gate_init(&f->gate);
  ran_count = 0;
  return f;
}

static void fixture_free(struct fixture *f) {
  th_gate_open(&f->gate);
  assert_int_equal(tpool_manager_shutdown(f->m, 10.0), 0);
  th_assert_invariant(f->m);
  tpool_manager_free(f->m);
  event_base_free(f->base);
  th_gate_destroy(&f->gate);
  th_log_destroy(&f->log);
  free(f);
}

/* Work and done share their argument: the fixture holds both the gate
   and the done log. */
static int fixture_gate_work(void *arg) {
  th_gate_pass(&((struct fixture *)arg)->gate);
  return 0;
}

static void fixture_done(int status, const tpool_task_info_t *info, void *arg) {
  count_done(status, info, &((struct fixture *)arg)->d);
}

static int64_t submit_gate(struct fixture *f) {
  return tpool_manager_submit(f->m, "work", "blocked", fixture_gate_work,
                              fixture_done, f, NULL);
}

/* A one-worker pool whose worker is held at the gate. */
static struct fixture *fixture_held(void) {
  struct fixture *f = fixture_new(1, 1, 8);
  f->m = th_manager(&f->o, f->base);
  assert_true(submit_gate(f) > 0);
  unsigned one = 1;
  assert_true(th_wait_stats(f->m, f->base, "work", busy_is, &one, 5.0));
  return f;
}

static void test_pool_full_queue_returns_eagain(void **state) {
  (void)state;
  struct fixture *f = fixture_new(1, 1, 4);
  f->m = th_manager(&f->o, f->base);
  assert_true(submit_gate(f) > 0);
  unsigned one = 1;
  assert_true(th_wait_stats(f->m, f->base, "work", busy_is, &one, 5.0));
  for (int i = 0; i < 4; i++)
    assert_true(submit_gate(f) > 0);
  done_log_t refused = {0};
  assert_int_equal(tpool_manager_submit(f->m, "work", "extra", must_not_run,
                                        count_done, &refused, NULL),
                   -EAGAIN);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.rejected, 1);
  assert_int_equal(ps.queued, 4);
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, 5));
  assert_int_equal(f->d.ok, 5);
  assert_int_equal(refused.calls, 0); /* a refused task never completes */
  fixture_free(f);
}

static void test_pool_cancel_queued_and_running(void **state) {
  (void)state;
  struct fixture *f = fixture_new(2, 2, 64);
  f->m = th_manager(&f->o, f->base);
  int64_t running[2];
  for (int i = 0; i < 2; i++)
    running[i] = submit_gate(f);
  unsigned two = 2;
  assert_true(th_wait_stats(f->m, f->base, "work", busy_is, &two, 5.0));
  int64_t ids[16];
  for (int i = 0; i < 16; i++) {
    ids[i] = tpool_manager_submit(f->m, "work", "victim", must_not_run,
                                  count_done, &f->d, NULL);
    assert_true(ids[i] > 0);
  }
  for (int i = 0; i < 16; i++)
    assert_int_equal(tpool_manager_cancel(f->m, ids[i]), 0);
  assert_int_equal(tpool_manager_cancel(f->m, ids[3]), -ENOENT);
  assert_int_equal(tpool_manager_cancel(f->m, running[0]), -EBUSY);
  assert_int_equal(tpool_manager_cancel(f->m, 999999), -ENOENT);
  assert_true(run_until_calls(f->base, &f->d, 16));
  assert_int_equal(f->d.cancelled, 16);
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, 18));
  assert_int_equal(f->d.ok, 2); /* the running ones complete normally */
  assert_int_equal(ran_count, 0);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.cancelled, 16);
  assert_int_equal(ps.completed, 2);
  fixture_free(f);
}

/* The loop must wake for a single cancellation: dispatch blocks until the
   bridge's eventfd is written (the 5 s exit is only a guard). */
static void test_pool_cancel_only_task_wakes_loop(void **state) {
  (void)state;
  struct fixture *f = fixture_held();
  int64_t id = tpool_manager_submit(f->m, "work", "only", must_not_run,
                                    count_done, &f->d, NULL);
  assert_int_equal(tpool_manager_cancel(f->m, id), 0);
  struct timeval guard = {5, 0};
  event_base_loopexit(f->base, &guard);
  struct timespec t0;
  th_now(&t0);
  assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
  assert_true(th_elapsed(&t0) < 4.0);
  assert_int_equal(f->d.cancelled, 1);
  assert_int_equal(ran_count, 0);
  fixture_free(f);
}

static void test_pool_start_deadline_expires_queued_task(void **state) {
  (void)state;
  struct fixture *f = fixture_held();
  tpool_task_opts_t opts = {.base = NULL, .start_timeout_s = 0.05};
  assert_true(tpool_manager_submit(f->m, "work", "late", must_not_run,
                                   count_done, &f->d, &opts) > 0);
  /* Expired by the monitor while the only worker is still blocked. */
  assert_true(run_until_calls(f->base, &f->d, 1));
  assert_int_equal(f->d.expired, 1);
  assert_true(f->d.last_wait_s >= 0.05);
  assert_int_equal(th_gate_waiting(&f->gate), 1);
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, 2));
  assert_int_equal(ran_count, 0);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.expired, 1);
  fixture_free(f);
}

static void test_pool_grows_to_max_and_shrinks_to_min(void **state) {
  (void)state;
  struct fixture *f = fixture_new(1, 8, 64);
  f->o.pools[0].idle_timeout_s = 0.1;
  f->m = th_manager(&f->o, f->base);
  unsigned n = 1;
  assert_true(th_wait_stats(f->m, f->base, "work", workers_are, &n, 5.0));
  for (int i = 0; i < 8; i++)
    assert_true(submit_gate(f) > 0);
  n = 8;
  assert_true(th_wait_stats(f->m, f->base, "work", busy_is, &n, 5.0));
  assert_int_equal(th_pool_stats(f->m, "work").current_workers, 8);
  /* At the maximum a ninth task waits instead of growing the pool. */
  assert_true(submit_gate(f) > 0);
  assert_int_equal(th_pool_stats(f->m, "work").current_workers, 8);
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, 9));
  n = 1;
  assert_true(th_wait_stats(f->m, f->base, "work", workers_are, &n, 5.0));
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.threads_started, 8);
  assert_int_equal(ps.threads_retired, 7);
  assert_true(
      th_log_wait_for(&f->log, "ThreadPool[work] Shrank to 1 workers", 5.0));
  fixture_free(f);
}

typedef struct {
  int done;
  int bad;
  unsigned char *seen;
} seen_t;

static void mark_seen(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  seen_t *s = arg;
  s->done++;
  if (status != 0)
    s->bad++;
  (void)s;
}

static int seen_work(void *arg) {
  (void)arg;
  return 0;
}

static void test_pool_resize_under_load_loses_nothing(void **state) {
  (void)state;
  struct fixture *f = fixture_new(1, 4, 100000);
  f->o.pools[0].idle_timeout_s = 0.02;
  f->m = th_manager(&f->o, f->base);
  tpool_pool_t *p = tpool_manager_pool(f->m, "work");
  enum { N = 20000 };
  seen_t s = {0, 0, NULL};
  for (int i = 0; i < N; i++)
    assert_true(tpool_submit(p, NULL, seen_work, mark_seen, &s, NULL) > 0);
  static const unsigned sizes[][2] = {
      {1, 8}, {0, 2}, {2, 6}, {0, 1}, {TPOOL_MIN_EQUALS_MAX, 3}, {1, 4}};
  int step = 0;
  while (s.done < N) {
    unsigned min = sizes[step % 6][0], max = sizes[step % 6][1];
    assert_int_equal(tpool_pool_resize(p, min, max), 0);
    int want = s.done + 1000 > N ? N : s.done + 1000;
    assert_true(th_run_until_int(f->base, &s.done, want, 30.0));
    step++;
  }
  assert_int_equal(s.done, N);
  assert_int_equal(s.bad, 0);
  assert_int_equal(tpool_pool_resize(p, 5, 4), -EINVAL);
  assert_int_equal(tpool_pool_resize(p, 0, 0), -EINVAL);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.completed, N);
  assert_true(ps.current_workers <= ps.max_workers);
  fixture_free(f);
}

static void test_pool_burst_wakes_every_idle_worker(void **state) {
  (void)state;
  /* Workers are woken one at a time, each handing on to the next while
     work waits: a burst must still reach all of them. */
  enum { W = 6 };
  struct fixture *f = fixture_new(W, W, 64);
  f->m = th_manager(&f->o, f->base);
  unsigned idle = W;
  assert_true(th_wait_stats(f->m, f->base, "work", workers_are, &idle, 5.0));
  for (int i = 0; i < W; i++)
    assert_true(submit_gate(f) > 0);
  unsigned busy = W;
  assert_true(th_wait_stats(f->m, f->base, "work", busy_is, &busy, 10.0));
  assert_int_equal(th_gate_waiting(&f->gate), W);
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, W));
  assert_int_equal(f->d.ok, W);
  fixture_free(f);
}

/* A chain of tasks, each submitted by the previous one's done callback. */
typedef struct {
  tpool_pool_t *pool;
  int left, done, bad;
} chain_t;

static void chain_next(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  chain_t *c = arg;
  c->done++;
  c->bad += status != 0;
  if (c->left > 0 &&
      tpool_submit(c->pool, "link", th_noop, chain_next, c, NULL) > 0)
    c->left--;
}

static void test_pool_spin_before_sleep(void **state) {
  (void)state;
  struct fixture *f = fixture_new(1, 3, 64);
  f->o.pools[0].spin_s = 0.002;
  f->o.pools[0].idle_timeout_s = 0.05;
  f->m = th_manager(&f->o, f->base);
  tpool_pool_t *p = tpool_manager_pool(f->m, "work");
  enum { N = 3000 };
  chain_t c = {p, N - 1, 0, 0};
  assert_true(tpool_submit(p, "link", th_noop, chain_next, &c, NULL) > 0);
  int step = 0;
  while (c.done < N) { /* resized and reconfigured while it spins */
    int want = c.done + 500 > N ? N : c.done + 500;
    assert_true(th_run_until_int(f->base, &c.done, want, 30.0));
    assert_int_equal(tpool_pool_resize(p, step % 2, 1 + step % 3), 0);
    step++;
  }
  assert_int_equal(c.bad, 0);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.completed, N);
  /* Shut down while a worker spins: it notices within its spin. */
  fixture_free(f);
}

/* A few microseconds of work. */
static int short_spin(void *arg) {
  (void)arg;
  volatile unsigned x = 0;
  for (unsigned i = 0; i < 2000; i++)
    x += i;
  (void)x; /* read once: the stores are the point */
  return 0;
}

static void chain_spin_next(int status, const tpool_task_info_t *info,
                            void *arg) {
  (void)info;
  chain_t *c = arg;
  c->done++;
  c->bad += status != 0;
  if (c->left > 0 &&
      tpool_submit(c->pool, "link", short_spin, chain_spin_next, c, NULL) > 0)
    c->left--;
}

static void test_pool_saturated_completions_all_arrive(void **state) {
  (void)state;
  /* 1024 chains in flight keep the queue long, so completions wait in
     the queue and are coalesced onto shared loop wakeups (timer armed,
     fired and disarmed by workers and the loop all the time): every one
     must still reach the loop. */
  enum { K = 1024, N = TH_TSAN ? 30000 : 200000 };
  struct fixture *f = fixture_new(8, 8, 2 * K);
  f->m = th_manager(&f->o, f->base);
  tpool_pool_t *p = tpool_manager_pool(f->m, "work");
  chain_t c = {p, N - K, 0, 0};
  for (int i = 0; i < K; i++)
    assert_true(tpool_submit(p, "link", short_spin, chain_spin_next, &c, NULL) >
                0);
  assert_true(th_run_until_int(f->base, &c.done, N, 120.0));
  assert_int_equal(c.bad, 0);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.completed, N);
  fixture_free(f);
}

static bool stuck_seen(const tpool_pool_stats_t *ps, void *arg) {
  (void)arg;
  return ps->stuck_total == 1 && ps->nactive == 1 && ps->active[0].stuck &&
         ps->stuck_now == 1;
}

static void test_pool_soft_timeout_flags_stuck_task(void **state) {
  (void)state;
  struct fixture *f = fixture_new(1, 1, 8);
  f->o.pools[0].soft_timeout_s = 0.1;
  f->m = th_manager(&f->o, f->base);
  assert_true(submit_gate(f) > 0);
  assert_true(th_wait_stats(f->m, f->base, "work", stuck_seen, NULL, 5.0));
  assert_true(th_log_wait_for(&f->log, "'blocked' is stuck", 5.0));
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, 1));
  fixture_free(f);
}

/* Thread creation that fails from the `fail_from`-th call on. */
static int creations, fail_from;
static int flaky_create(pthread_t *t, const pthread_attr_t *a,
                        void *(*fn)(void *), void *arg) {
  if (__atomic_add_fetch(&creations, 1, __ATOMIC_SEQ_CST) >= fail_from)
    return EAGAIN;
  return pthread_create(t, a, fn, arg);
}

static void test_pool_thread_failure_keeps_serving(void **state) {
  (void)state;
  struct fixture *f = fixture_new(1, 6, 64);
  creations = 0;
  fail_from = 3; /* the start's worker and one more, then failures */
  tpool__thread_create = flaky_create;
  f->m = th_manager(&f->o, f->base);
  for (int i = 0; i < 6; i++)
    assert_true(submit_gate(f) > 0);
  unsigned two = 2;
  assert_true(th_wait_stats(f->m, f->base, "work", busy_is, &two, 5.0));
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.current_workers, 2);
  assert_true(ps.thread_failures >= 1);
  assert_true(th_log_contains(&f->log, "Could not start a worker thread"));
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, 6));
  assert_int_equal(f->d.ok, 6);
  fixture_free(f);
  tpool__thread_create = NULL;
}

static void test_pool_without_threads_refuses_work(void **state) {
  (void)state;
  struct fixture *f = fixture_new(0, 2, 64);
  creations = 0;
  fail_from = 1; /* every creation fails */
  tpool__thread_create = flaky_create;
  f->m = th_manager(&f->o, f->base);
  assert_int_equal(submit_gate(f), -EAGAIN);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_int_equal(ps.rejected, 1);
  assert_int_equal(ps.queued, 0);
  assert_true(ps.thread_failures >= 1);
  tpool__thread_create = NULL;
  /* Creation works again: the pool grows on the next submit. */
  assert_true(submit_gate(f) > 0);
  th_gate_open(&f->gate);
  assert_true(run_until_calls(f->base, &f->d, 1));
  fixture_free(f);
}

static void test_pool_submit_bad_arguments(void **state) {
  (void)state;
  struct fixture *f = fixture_new(1, 1, 8);
  f->m = th_manager(&f->o, f->base);
  tpool_pool_t *p = tpool_manager_pool(f->m, "work");
  assert_non_null(p);
  assert_string_equal(tpool_pool_name(p), "work");
  assert_null(tpool_manager_pool(f->m, "nope"));
  assert_int_equal(tpool_submit(p, "x", NULL, count_done, &f->d, NULL),
                   -EINVAL);
  assert_int_equal(
      tpool_manager_submit(f->m, "nope", "x", th_noop, count_done, &f->d, NULL),
      -ENOENT);
  struct event_base *other = th_base_new();
  tpool_task_opts_t opts = {.base = other};
  assert_int_equal(tpool_submit(p, "x", th_noop, count_done, &f->d, &opts),
                   -EINVAL);
  event_base_free(other);
  /* done == NULL: fire and forget, no loop involved. */
  assert_true(tpool_submit(p, "fire", th_noop, NULL, NULL, NULL) > 0);
  assert_int_equal(f->d.calls, 0);
  fixture_free(f);
}

/* Counts this process's threads whose name starts with `prefix`. */
static int threads_named(const char *prefix) {
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[300], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue; /* the thread has just exited */
    if (fgets(comm, sizeof(comm), f) &&
        strncmp(comm, prefix, strlen(prefix)) == 0)
      n++;
    fclose(f);
  }
  closedir(d);
  return n;
}

static void test_pool_threads_are_named(void **state) {
  (void)state;
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "embedding", 3, 3, 8);
  tpool_pool_options_t *named = th_add_pool(&o, "render", 2, 2, 8);
  snprintf(named->thread_name, sizeof(named->thread_name), "gfx");
  tpool_manager_t *m = th_manager(&o, NULL);
  unsigned three = 3, two = 2;
  assert_true(th_wait_stats(m, NULL, "embedding", workers_are, &three, 5.0));
  assert_true(th_wait_stats(m, NULL, "render", workers_are, &two, 5.0));
  /* Started counts a worker before it names itself: allow it a moment. */
  for (int i = 0; i < 500 && (threads_named("tpool-embed-") < 3 ||
                              threads_named("gfx-") < 2);
       i++)
    usleep(1000);
  assert_int_equal(threads_named("tpool-embed-"), 3);
  assert_int_equal(threads_named("gfx-"), 2);
  assert_int_equal(threads_named("tpool-monitor"), 1);
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  tpool_manager_free(m);
}

/* What a worker sees of its own thread. */
typedef struct {
  size_t stack;
  int ncpus;
  bool on_cpu0;
  bool signals_blocked; /* SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGPIPE */
} self_t;

static int inspect_self(void *arg) {
  self_t *me = arg;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstacksize(&attr, &me->stack);
    pthread_attr_destroy(&attr);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    me->ncpus = CPU_COUNT(&set);
    me->on_cpu0 = CPU_ISSET(0, &set);
  }
  /* A process signal is never handled on a worker: a server's handlers
     (SIGHUP reloads, SIGTERM drains) run on its loop thread. */
  sigset_t mask;
  static const int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGPIPE};
  me->signals_blocked = pthread_sigmask(SIG_BLOCK, NULL, &mask) == 0;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
    me->signals_blocked = me->signals_blocked && sigismember(&mask, sigs[i]);
  return 0;
}

static void test_pool_stack_affinity_and_signal_mask_apply(void **state) {
  (void)state;
  tpool_options_t o;
  th_options_empty(&o);
  tpool_pool_options_t *po = th_add_pool(&o, "pinned", 1, 1, 8);
  /* Larger than any stack so far: glibc may hand a smaller request a
     cached stack of an exited thread, never a smaller one. */
  po->stack_size = 1536 * 1024;
  po->has_affinity = true;
  po->cpu_affinity[0] = 1; /* CPU 0 only */
  tpool_manager_t *m = th_manager(&o, NULL);
  self_t me = {0, 0, false, false};
  assert_true(tpool_manager_submit(m, "pinned", "inspect", inspect_self, NULL,
                                   &me, NULL) > 0);
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  assert_true(me.stack >= 1536 * 1024);
  assert_int_equal(me.ncpus, 1);
  assert_true(me.on_cpu0);
  assert_true(me.signals_blocked);
  tpool_manager_free(m);
}

/* ---- per-thread resources ------------------------------------------------ */

/* A "connection" per worker thread: opened by the start hook, closed by
   the stop hook; the first `fail_first` opens are refused. */
typedef struct {
  atomic_int opened, closed, refused, fail_first;
} conns_t;

typedef struct {
  pthread_t owner; /* the thread that opened it */
  int uses;
} conn_t;

static int conn_open(const char *pool, void **ctx, void *arg) {
  conns_t *c = arg;
  if (strcmp(pool, "work") != 0)
    return -EINVAL; /* its tasks would then never run: the test fails */
  if (atomic_fetch_sub(&c->fail_first, 1) > 0) {
    atomic_fetch_add(&c->refused, 1);
    return -ECONNREFUSED;
  }
  conn_t *conn = calloc(1, sizeof(*conn));
  conn->owner = pthread_self();
  *ctx = conn;
  atomic_fetch_add(&c->opened, 1);
  return 0;
}

static void conn_close(const char *pool, void *ctx, void *arg) {
  conns_t *c = arg;
  (void)pool;
  conn_t *conn = ctx;
  if (conn && pthread_equal(conn->owner, pthread_self()))
    atomic_fetch_add(&c->closed, 1);
  free(conn);
}

/* A task that uses its worker's connection: fails unless it is there and
   was opened on this very thread. */
static int use_conn(void *arg) {
  (void)arg;
  conn_t *conn = tpool_thread_context();
  if (!conn || !pthread_equal(conn->owner, pthread_self()))
    return -EBADF;
  conn->uses++;
  return 0;
}

static tpool_manager_t *hooked_manager(struct fixture *f, conns_t *c) {
  f->o.pools[0].thread_start = conn_open;
  f->o.pools[0].thread_stop = conn_close;
  f->o.pools[0].thread_arg = c;
  return th_manager(&f->o, f->base);
}

static void test_pool_thread_hooks_open_once_per_worker(void **state) {
  (void)state;
  struct fixture *f = fixture_new(3, 3, 1024);
  conns_t c = {0, 0, 0, 0};
  f->m = hooked_manager(f, &c);
  tpool_pool_t *p = tpool_manager_pool(f->m, "work");
  enum { N = 500 };
  for (int i = 0; i < N; i++)
    assert_true(tpool_submit(p, "q", use_conn, count_done, &f->d, NULL) > 0);
  assert_true(run_until_calls(f->base, &f->d, N));
  assert_int_equal(f->d.ok, N); /* every task had its connection */
  /* Once per worker: the three started at start, though one may still be
     opening if the other two ran all the tasks (a slow sanitizer build). */
  for (int i = 0; i < 2000 && atomic_load(&c.opened) < 3; i++)
    th_run_until(f->base, NULL, NULL, 0.005);
  assert_int_equal(atomic_load(&c.opened), 3);
  assert_null(tpool_thread_context());         /* not a worker */
  fixture_free(f);                             /* stops the workers */
  assert_int_equal(atomic_load(&c.closed), 3); /* each on its own thread */
}

static void test_pool_failed_thread_hook_is_retried(void **state) {
  (void)state;
  struct fixture *f = fixture_new(0, 2, 64);
  conns_t c = {0, 0, 0, 2}; /* the first two opens are refused */
  f->m = hooked_manager(f, &c);
  tpool_pool_t *p = tpool_manager_pool(f->m, "work");
  /* Accepted: a worker is started for it, whose hook fails; the pool
     retries with backoff until one opens. */
  assert_true(tpool_submit(p, "q", use_conn, count_done, &f->d, NULL) > 0);
  assert_true(run_until_calls(f->base, &f->d, 1));
  assert_int_equal(f->d.ok, 1);
  assert_int_equal(atomic_load(&c.refused), 2);
  tpool_pool_stats_t ps = th_pool_stats(f->m, "work");
  assert_true(ps.thread_failures >= 2);
  assert_true(th_log_contains(&f->log, "Worker thread start hook failed"));
  fixture_free(f);
  assert_int_equal(atomic_load(&c.closed), atomic_load(&c.opened));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_full_queue_returns_eagain),
      cmocka_unit_test(test_pool_cancel_queued_and_running),
      cmocka_unit_test(test_pool_cancel_only_task_wakes_loop),
      cmocka_unit_test(test_pool_start_deadline_expires_queued_task),
      cmocka_unit_test(test_pool_grows_to_max_and_shrinks_to_min),
      cmocka_unit_test(test_pool_resize_under_load_loses_nothing),
      cmocka_unit_test(test_pool_burst_wakes_every_idle_worker),
      cmocka_unit_test(test_pool_spin_before_sleep),
      cmocka_unit_test(test_pool_saturated_completions_all_arrive),
      cmocka_unit_test(test_pool_soft_timeout_flags_stuck_task),
      cmocka_unit_test(test_pool_thread_failure_keeps_serving),
      cmocka_unit_test(test_pool_without_threads_refuses_work),
      cmocka_unit_test(test_pool_submit_bad_arguments),
      cmocka_unit_test(test_pool_threads_are_named),
      cmocka_unit_test(test_pool_thread_hooks_open_once_per_worker),
      cmocka_unit_test(test_pool_failed_thread_hook_is_retried),
      cmocka_unit_test(test_pool_stack_affinity_and_signal_mask_apply),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
