/*
 * test_manager.c — the manager as a whole: exactly-once completion of a
 * million tasks from four threads over the five built-in pools, shutdown
 * (drain, deadline, twice, a task that never returns), several loop
 * threads, and attaching bases.
 */
#include "helpers.h"

#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <event2/thread.h>

/* ---- exactly once ------------------------------------------------------ */

static const char *const kinds[] = {"io", "cpu", "inference", "embedding",
                                    "db"};

typedef struct {
  tpool_manager_t *m;
  struct event_base *base;
  unsigned char *seen; /* loop thread only: done calls per task */
  size_t n, done, bad_status, wrong_thread;
  pthread_t loop_thread;
  atomic_size_t retries;
} once_t;

typedef struct {
  once_t *o;
  size_t first, count;
} submitter_t;

static int once_work(void *arg) {
  (void)arg;
  return 0;
}

static void once_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  once_t *o = *(once_t **)arg;
  size_t idx = (size_t)((uintptr_t *)arg)[1];
  if (status != 0)
    o->bad_status++;
  if (!pthread_equal(pthread_self(), o->loop_thread))
    o->wrong_thread++;
  o->seen[idx]++;
  o->done++;
  free(arg);
  if (o->done == o->n)
    event_base_loopbreak(o->base);
}

static void *submit_thread(void *arg) {
  submitter_t *s = arg;
  once_t *o = s->o;
  for (size_t i = s->first; i < s->first + s->count; i++) {
    uintptr_t *ctx = malloc(2 * sizeof(*ctx));
    ctx[0] = (uintptr_t)o;
    ctx[1] = i;
    const char *pool = kinds[i % 5];
    for (;;) {
      int64_t id = tpool_manager_submit(o->m, pool, "once", once_work,
                                        once_done, ctx, NULL);
      if (id > 0)
        break;
      assert_int_equal(id, -EAGAIN); /* full: the caller still owns ctx */
      atomic_fetch_add(&o->retries, 1);
      sched_yield();
    }
  }
  return NULL;
}

static void test_manager_exactly_once_over_five_pools(void **state) {
  (void)state;
  once_t o;
  memset(&o, 0, sizeof(o));
  o.n = 1000000;
  o.seen = calloc(o.n, 1);
  o.base = th_base_new();
  o.loop_thread = pthread_self();
  tpool_options_t *opts = malloc(sizeof(*opts));
  tpool_options_init(opts); /* the five pools at their default sizes */
  for (size_t i = 0; i < opts->npools; i++)
    opts->pools[i].queue_limit = 16; /* so full queues happen too */
  o.m = th_manager(opts, o.base);

  enum { T = 4 };
  pthread_t th[T];
  submitter_t subs[T];
  for (size_t t = 0; t < T; t++) {
    subs[t] = (submitter_t){&o, t * (o.n / T), o.n / T};
    assert_int_equal(pthread_create(&th[t], NULL, submit_thread, &subs[t]), 0);
  }
  event_base_dispatch(o.base); /* until the last done breaks the loop */
  for (size_t t = 0; t < T; t++)
    pthread_join(th[t], NULL);

  print_message("%zu tasks, %zu submits refused with -EAGAIN and retried\n",
                o.n, atomic_load(&o.retries));
  assert_int_equal(o.done, o.n);
  assert_int_equal(o.bad_status, 0);
  assert_int_equal(o.wrong_thread, 0);
  for (size_t i = 0; i < o.n; i++)
    if (o.seen[i] != 1)
      fail_msg("task %zu completed %d times", i, o.seen[i]);
  th_assert_invariant(o.m);
  uint64_t completed = 0;
  for (size_t k = 0; k < 5; k++)
    completed += th_pool_stats(o.m, kinds[k]).completed;
  assert_int_equal(completed, o.n);
  assert_int_equal(tpool_manager_shutdown(o.m, 10.0), 0);
  tpool_manager_free(o.m);
  event_base_free(o.base);
  free(o.seen);
  free(opts);
}

/* ---- shutdown ---------------------------------------------------------- */

static int short_work(void *arg) {
  th_tally_t *t = arg;
  struct timespec nap = {0, 100000}; /* 100 µs */
  nanosleep(&nap, NULL);
  pthread_mutex_lock(&t->mu);
  t->ran++;
  pthread_mutex_unlock(&t->mu);
  return 0;
}

static void test_manager_shutdown_drains_everything(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_one_pool(4, 2000, base);
  th_tally_t t;
  th_tally_init(&t);
  for (int i = 0; i < 1000; i++)
    assert_true(tpool_manager_submit(m, "w", "drain", short_work, th_tally_done,
                                     &t, NULL) > 0);
  /* Shutdown waits for the workers; the loop then runs the callbacks. */
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  assert_int_equal(t.ran, 1000);
  assert_int_equal(th_pool_stats(m, "w").completed, 1000);
  assert_int_equal(th_pool_stats(m, "w").current_workers, 0);
  assert_true(th_run_until_int(base, &t.calls, 1000, 10.0));
  assert_int_equal(t.ok, 1000);
  assert_int_equal(
      tpool_manager_submit(m, "w", "late", short_work, th_tally_done, &t, NULL),
      -ESHUTDOWN);
  assert_int_equal(tpool_manager_shutdown(m, 1.0), 0); /* twice: harmless */
  th_assert_invariant(m);
  assert_int_equal(th_pool_stats(m, "w").rejected, 1);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
}

/* A task held at a gate; work and done share it, as they share `arg`. */
typedef struct {
  th_gate_t *gate;
  atomic_bool started; /* set by the worker */
  bool called;         /* loop thread only */
  int status;
} gtask_t;

static int gtask_work(void *arg) {
  gtask_t *g = arg;
  atomic_store(&g->started, true);
  th_gate_pass(g->gate);
  return 0;
}

static void gtask_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  gtask_t *g = arg;
  assert_false(g->called);
  g->called = true;
  g->status = status;
}

static tpool_manager_t *gated_manager(tpool_options_t *o, th_log_t *log,
                                      struct event_base *base,
                                      unsigned workers) {
  th_options_logged(o, log);
  th_add_pool(o, "w", workers, workers, 64);
  return th_manager(o, base);
}

static void test_manager_shutdown_deadline_cancels_unstarted(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = gated_manager(&o, &log, base, 2);
  th_gate_t gate;
  th_gate_init(&gate);
  enum { N = 12 };
  gtask_t g[N];
  for (int i = 0; i < N; i++) {
    g[i] = (gtask_t){.gate = &gate, .called = false, .status = 1};
    atomic_init(&g[i].started, false);
    assert_true(tpool_manager_submit(m, "w", "gated", gtask_work, gtask_done,
                                     &g[i], NULL) > 0);
  }
  while (th_gate_waiting(&gate) < 2)
    sched_yield();

  struct timespec t0;
  th_now(&t0);
  assert_int_equal(tpool_manager_shutdown(m, 0.2), -ETIMEDOUT);
  assert_true(th_elapsed(&t0) < 1.2);
  assert_true(th_log_contains(&log, "still running after"));
  int delivered = 0;
  while (delivered < N - 2) { /* the cancelled ones reach the loop */
    th_run_until(base, NULL, NULL, 0.01);
    delivered = 0;
    for (int i = 0; i < N; i++)
      delivered += g[i].called;
    assert_true(th_elapsed(&t0) < 10.0);
  }
  int cancelled = 0;
  for (int i = 0; i < N; i++) {
    if (atomic_load(&g[i].started)) {
      assert_false(g[i].called); /* still running */
    } else {
      assert_true(g[i].called);
      assert_int_equal(g[i].status, -ECANCELED);
      cancelled++;
    }
  }
  assert_int_equal(cancelled, N - 2);

  th_gate_open(&gate);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  th_run_until(base, NULL, NULL, 0.05);
  for (int i = 0; i < N; i++) {
    assert_true(g[i].called);
    assert_int_equal(g[i].status, atomic_load(&g[i].started) ? 0 : -ECANCELED);
  }
  th_assert_invariant(m);
  assert_int_equal(th_pool_stats(m, "w").cancelled, N - 2);
  tpool_manager_free(m);
  event_base_free(base);
  th_gate_destroy(&gate);
  th_log_destroy(&log);
}

/* Never destroyed: the abandoned worker may still be leaving it when the
   test ends. */
static th_gate_t forever_gate;

static void test_manager_never_returning_task_is_abandoned(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  struct event_base *base = th_base_new();
  tpool_manager_t *m = gated_manager(&o, &log, base, 1);
  th_gate_init(&forever_gate);
  static gtask_t g;
  g = (gtask_t){.gate = &forever_gate, .called = false, .status = 1};
  atomic_init(&g.started, false);
  assert_true(tpool_manager_submit(m, "w", "never", gtask_work, gtask_done, &g,
                                   NULL) > 0);
  while (th_gate_waiting(&forever_gate) < 1)
    sched_yield();

  struct timespec t0;
  th_now(&t0);
  assert_int_equal(tpool_manager_shutdown(m, 0.2), -ETIMEDOUT);
  assert_true(th_elapsed(&t0) < 1.2);
  assert_true(th_log_contains(&log, "'never' still running after"));
  /* free() does not wait for it either, and says so. */
  th_now(&t0);
  tpool_manager_free(m);
  assert_true(th_elapsed(&t0) < 1.0);
  assert_true(th_log_contains(&log, "Freed with 1 task(s) still running"));
  event_base_free(base);
  th_log_destroy(&log);

  /* The task returns later; its thread frees the manager's memory and
     never calls done, since its loop is gone. */
  th_gate_open(&forever_gate);
  while (th_gate_passed(&forever_gate) < 1)
    sched_yield();
  struct timespec nap = {0, 50000000};
  nanosleep(&nap, NULL);
  assert_false(g.called);
}

/* ---- several loops ----------------------------------------------------- */

typedef struct {
  tpool_manager_t *m;
  struct event_base *base;
  pthread_t self;
  int n, done, wrong_thread, bad;
} loop_t;

static void loop_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  loop_t *l = arg;
  if (!pthread_equal(pthread_self(), l->self))
    l->wrong_thread++;
  if (status != 0)
    l->bad++;
  if (++l->done == l->n)
    event_base_loopbreak(l->base);
}

static void *loop_thread(void *arg) {
  loop_t *l = arg;
  l->self = pthread_self();
  assert_int_equal(tpool_manager_attach(l->m, l->base), 0);
  tpool_task_opts_t opts = {.base = l->base};
  for (int i = 0; i < l->n; i++) {
    int64_t id;
    while ((id = tpool_manager_submit(l->m, kinds[i % 5], "loop", th_noop,
                                      loop_done, l, &opts)) == -EAGAIN)
      event_base_loop(l->base, EVLOOP_NONBLOCK);
    assert_true(id > 0);
  }
  if (l->done < l->n)
    event_base_dispatch(l->base);
  return NULL;
}

static void test_manager_several_loops_get_their_own_completions(void **s) {
  (void)s;
  tpool_options_t *o = malloc(sizeof(*o));
  tpool_options_init(o);
  tpool_manager_t *m = NULL;
  assert_int_equal(tpool_manager_new(o, &m), 0);
  assert_int_equal(tpool_manager_start(m), 0);
  enum { L = 4 };
  loop_t loops[L];
  pthread_t th[L];
  for (int i = 0; i < L; i++) {
    loops[i] =
        (loop_t){.m = m, .base = th_base_new(), .n = TH_TSAN ? 5000 : 50000};
    assert_int_equal(pthread_create(&th[i], NULL, loop_thread, &loops[i]), 0);
  }
  for (int i = 0; i < L; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < L; i++) {
    assert_int_equal(loops[i].done, loops[i].n);
    assert_int_equal(loops[i].wrong_thread, 0);
    assert_int_equal(loops[i].bad, 0);
  }
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  th_assert_invariant(m);
  tpool_manager_free(m);
  for (int i = 0; i < L; i++)
    event_base_free(loops[i].base);
  free(o);
}

/* ---- attaching --------------------------------------------------------- */

static void test_manager_attach_rejects_bad_bases(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  th_options_logged(&o, &log);
  th_add_pool(&o, "w", 1, 1, 8);
  tpool_manager_t *m = NULL;
  assert_int_equal(tpool_manager_new(&o, &m), 0);
  assert_int_equal(tpool_manager_start(m), 0);
  assert_int_equal(tpool_manager_start(m), -EALREADY);
  /* No base yet: a task with a done callback has nowhere to complete. */
  assert_int_equal(
      tpool_manager_submit(m, "w", "x", th_noop, gtask_done, NULL, NULL),
      -EINVAL);
  assert_int_equal(tpool_manager_attach(m, NULL), -EINVAL);

  struct event_base *base = th_base_new();
  assert_int_equal(tpool_manager_attach(m, base), 0);
  assert_int_equal(tpool_manager_attach(m, base), -EINVAL);

  struct event_config *cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  struct event_base *nolock = event_base_new_with_config(cfg);
  event_config_free(cfg);
  assert_int_equal(tpool_manager_attach(m, nolock), -EINVAL);
  assert_true(th_log_contains(&log, "evthread_use_pthreads()"));

  assert_int_equal(tpool_manager_shutdown(m, 1.0), 0);
  assert_int_equal(tpool_manager_start(m), -ESHUTDOWN);
  tpool_manager_free(m);
  event_base_free(nolock);
  event_base_free(base);
  th_log_destroy(&log);
}

static void test_manager_rejects_invalid_options(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  th_options_logged(&o, &log);
  th_add_pool(&o, "w", 5, 2, 8);
  tpool_manager_t *m = (tpool_manager_t *)&o; /* must be reset to NULL */
  assert_int_equal(tpool_manager_new(&o, &m), -EINVAL);
  assert_null(m);
  assert_true(th_log_contains(&log, "min_workers"));
  tpool_manager_free(NULL);
  th_log_destroy(&log);
}

static void test_manager_reconfigure_applies_live_settings(void **state) {
  (void)state;
  tpool_options_t *o = malloc(sizeof(*o));
  tpool_options_t *next = malloc(sizeof(*next));
  assert_non_null(o);
  assert_non_null(next);
  th_log_t log;
  th_options_logged(o, &log);
  th_add_pool(o, "a", 2, 2, 8);
  th_add_pool(o, "b", 1, 1, 4);
  tpool_manager_t *m = th_manager(o, NULL);

  /* Live: verbose, sizes, queue limit. Fixed: a's stack, a new pool c,
     pool b dropped. */
  th_options_empty(next);
  next->log_cb = th_log_sink;
  next->log_arg = &log;
  th_add_pool(next, "a", 1, 4, 2)->stack_size = 1024 * 1024;
  th_add_pool(next, "c", 1, 1, 4);
  next->verbose = true;
  next->status_interval_s = 0.2;
  tpool_config_error_t err;
  assert_int_equal(tpool_manager_reconfigure(m, next, &err), 0);
  /* The periodic table now comes at the new interval. */
  assert_true(th_log_wait_for(&log, "ThreadPoolManager Current Status:", 5.0));
  tpool_pool_stats_t a = th_pool_stats(m, "a");
  assert_int_equal(a.max_workers, 4);
  assert_int_equal(a.min_workers, 1);
  assert_int_equal(a.queue_limit, 2);
  tpool_stats_t *s;
  assert_int_equal(tpool_manager_stats(m, &s), 0);
  assert_true(s->verbose);
  assert_int_equal(s->npools, 2);
  tpool_stats_free(s);
  assert_null(tpool_manager_pool(m, "c"));
  assert_true(th_log_contains(&log, "[pool.a] stack_size changes at restart"));
  assert_true(th_log_contains(&log, "a new pool [pool.c] changes at restart"));
  assert_true(th_log_contains(&log, "removing pool [pool.b] changes at"));

  /* Invalid options change nothing. */
  next->pools[0].min_workers = 9;
  next->verbose = false;
  assert_int_equal(tpool_manager_reconfigure(m, next, &err), -EINVAL);
  assert_non_null(strstr(err.text, "min_workers"));
  assert_int_equal(th_pool_stats(m, "a").min_workers, 1);
  assert_true(th_log_contains(&log, "Configuration reloaded"));

  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  assert_int_equal(tpool_manager_reconfigure(m, o, &err), -ESHUTDOWN);
  tpool_manager_free(m);
  th_log_destroy(&log);
  free(o);
  free(next);
}

/* A manager attached to *base but not started, with three short tasks
   already queued in pool "w". */
static tpool_manager_t *early_manager(struct event_base **base, th_tally_t *t) {
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "w", 2, 2, 8);
  *base = th_base_new();
  tpool_manager_t *m = NULL;
  assert_int_equal(tpool_manager_new(&o, &m), 0);
  assert_int_equal(tpool_manager_attach(m, *base), 0);
  th_tally_init(t);
  for (int i = 0; i < 3; i++)
    assert_true(tpool_manager_submit(m, "w", "early", short_work, th_tally_done,
                                     t, NULL) > 0);
  assert_int_equal(th_pool_stats(m, "w").queued, 3);
  return m;
}

static void test_manager_tasks_before_start_wait(void **state) {
  (void)state;
  struct event_base *base;
  th_tally_t t;
  tpool_manager_t *m = early_manager(&base, &t);
  assert_int_equal(tpool_manager_start(m), 0);
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  assert_true(th_run_until_int(base, &t.calls, 3, 10.0));
  assert_int_equal(t.ok, 3);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
}

static void test_manager_shutdown_before_start_cancels(void **state) {
  (void)state;
  struct event_base *base;
  th_tally_t t;
  tpool_manager_t *m = early_manager(&base, &t);
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  th_assert_invariant(m);
  tpool_manager_free(m); /* the loop never ran: free runs the callbacks */
  assert_int_equal(t.cancelled, 3);
  assert_int_equal(t.ran, 0);
  event_base_free(base);
  th_tally_destroy(&t);
}

/* A work function that tries to shut down its own manager. */
typedef struct {
  tpool_manager_t *m;
  int rc_shutdown;
} selfstop_t;

static int selfstop_work(void *arg) {
  selfstop_t *s = arg;
  s->rc_shutdown = tpool_manager_shutdown(s->m, 1.0);
  return 0;
}

static void test_manager_shutdown_from_worker_is_refused(void **state) {
  (void)state;
  tpool_manager_t *m = th_one_pool(1, 8, NULL);
  selfstop_t s = {m, 0};
  assert_true(tpool_manager_submit(m, "w", "selfstop", selfstop_work, NULL, &s,
                                   NULL) > 0);
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  assert_int_equal(s.rc_shutdown, -EDEADLK);
  tpool_manager_free(m);
}

/* Thread creation fails from the `fail_from`-th call on. */
static atomic_int creations;
static int fail_from;
static int flaky_create(pthread_t *t, const pthread_attr_t *a,
                        void *(*fn)(void *), void *arg) {
  if (atomic_fetch_add(&creations, 1) + 1 >= fail_from)
    return EAGAIN;
  return pthread_create(t, a, fn, arg);
}

static void test_manager_failed_start_cancels_queued(void **state) {
  (void)state;
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "a", 1, 1, 8);
  th_add_pool(&o, "b", 1, 1, 8);
  struct event_base *base = th_base_new();
  tpool_manager_t *m = NULL;
  assert_int_equal(tpool_manager_new(&o, &m), 0);
  assert_int_equal(tpool_manager_attach(m, base), 0);
  th_tally_t t;
  th_tally_init(&t);
  for (int i = 0; i < 3; i++)
    assert_true(tpool_manager_submit(m, "a", "early", short_work, th_tally_done,
                                     &t, NULL) > 0);
  atomic_store(&creations, 0);
  fail_from = 2; /* pool a's worker starts, pool b's cannot */
  tpool__thread_create = flaky_create;
  assert_int_equal(tpool_manager_start(m), -EAGAIN);
  tpool__thread_create = NULL;
  /* Whatever ran has finished; whatever waited is cancelled, and no task
     is left to a thread after start returns. */
  assert_int_equal(th_pool_stats(m, "a").current_workers, 0);
  assert_int_equal(
      tpool_manager_submit(m, "a", "late", short_work, th_tally_done, &t, NULL),
      -ESHUTDOWN);
  tpool_manager_free(m);
  assert_int_equal(t.calls, 3);
  assert_int_equal(t.ok, t.ran);
  assert_int_equal(t.ok + t.cancelled, 3);
  event_base_free(base);
  th_tally_destroy(&t);
}

/* The first creation waits for the test's signal, then fails: meanwhile a
   second submit sees a thread "starting" and queues behind it. */
static th_gate_t create_gate;
static int gated_failing_create(pthread_t *t, const pthread_attr_t *a,
                                void *(*fn)(void *), void *arg) {
  if (atomic_fetch_add(&creations, 1) == 0) {
    th_gate_pass(&create_gate);
    return EAGAIN;
  }
  return pthread_create(t, a, fn, arg);
}

typedef struct {
  tpool_manager_t *m;
  th_tally_t *t;
  int64_t id;
} first_submit_t;

static void *first_submit(void *arg) {
  first_submit_t *f = arg;
  f->id = tpool_manager_submit(f->m, "w", "first", short_work, th_tally_done,
                               f->t, NULL);
  return NULL;
}

static void test_manager_stranded_queue_gets_a_worker(void **state) {
  (void)state;
  tpool_options_t o;
  th_log_t log;
  th_options_logged(&o, &log);
  th_add_pool(&o, "w", 0, 2, 8);
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_manager(&o, base);
  th_tally_t t;
  th_tally_init(&t);
  th_gate_init(&create_gate);
  atomic_store(&creations, 0);
  tpool__thread_create = gated_failing_create;

  first_submit_t f = {m, &t, 0};
  pthread_t th;
  pthread_create(&th, NULL, first_submit, &f);
  while (th_gate_waiting(&create_gate) < 1)
    sched_yield();
  /* A thread is "starting": this one queues without starting another. */
  assert_true(tpool_manager_submit(m, "w", "second", short_work, th_tally_done,
                                   &t, NULL) > 0);
  th_gate_open(&create_gate);
  pthread_join(th, NULL);
  assert_int_equal(f.id, -EAGAIN); /* its own task was refused */
  /* The accepted task is not stranded: the monitor starts a worker. */
  assert_true(th_run_until_int(base, &t.calls, 1, 10.0));
  assert_int_equal(t.ok, 1);
  assert_true(th_log_contains(&log, "Could not start a worker thread"));
  tpool__thread_create = NULL;
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  th_assert_invariant(m);
  tpool_manager_free(m);
  event_base_free(base);
  th_gate_destroy(&create_gate);
  th_log_destroy(&log);
  th_tally_destroy(&t);
}

static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_manager_shutdown_joins_every_worker(void **state) {
  (void)state;
  int before = thread_count();
  tpool_manager_t *m = th_one_pool(3, 8, NULL);
  assert_int_equal(thread_count(), before + 4); /* 3 workers, the monitor */
  assert_int_equal(tpool_manager_shutdown(m, 5.0), 0);
  /* Joined, not merely counted out: only the monitor is left. A joined
     thread may still be listed for a moment: the kernel wakes its joiner
     before it takes the thread out of /proc (seen once under TSan). */
  struct timespec ms = {0, 1000000};
  for (int i = 0; i < 1000 && thread_count() > before + 1; i++)
    nanosleep(&ms, NULL);
  assert_int_equal(thread_count(), before + 1);
  tpool_manager_free(m);
  assert_int_equal(thread_count(), before);
}

/* ---- routes ------------------------------------------------------------ */

static void add_route(tpool_options_t *o, const char *pattern,
                      const char *pool) {
  tpool_route_t *r = &o->routes[o->nroutes++];
  snprintf(r->pattern, sizeof(r->pattern), "%s", pattern);
  snprintf(r->pool, sizeof(r->pool), "%s", pool);
}

static void test_manager_routes_pick_pools(void **state) {
  (void)state;
  tpool_options_t *o = malloc(sizeof(*o));
  assert_non_null(o);
  th_options_empty(o);
  th_add_pool(o, "cpu", 1, 1, 64);
  th_add_pool(o, "embedding", 1, 1, 64);
  th_add_pool(o, "io", 1, 1, 64);
  add_route(o, "reports.*", "cpu");
  add_route(o, "*.embed", "embedding");
  add_route(o, "reports.*.embed", "io"); /* never: an earlier one matches */
  tpool_manager_t *m = th_manager(o, NULL);
  assert_string_equal(tpool_pool_name(tpool_manager_route(m, "reports.daily")),
                      "cpu");
  assert_string_equal(
      tpool_pool_name(tpool_manager_route(m, "reports.daily.embed")), "cpu");
  assert_string_equal(tpool_pool_name(tpool_manager_route(m, "doc.embed")),
                      "embedding");
  /* Whole names only, and nothing matches without a catch-all. */
  assert_null(tpool_manager_route(m, "xreports.daily"));
  assert_null(tpool_manager_route(m, "doc.embedding"));
  assert_int_equal(
      tpool_manager_submit_routed(m, "other", th_noop, NULL, NULL, NULL),
      -ENOENT);
  assert_int_equal(
      tpool_manager_submit_routed(m, "", th_noop, NULL, NULL, NULL), -EINVAL);
  assert_true(tpool_manager_submit_routed(m, "reports.weekly", th_noop, NULL,
                                          NULL, NULL) > 0);
  assert_true(
      tpool_manager_submit_routed(m, "a.embed", th_noop, NULL, NULL, NULL) > 0);
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  assert_int_equal(th_pool_stats(m, "cpu").completed, 1);
  assert_int_equal(th_pool_stats(m, "embedding").completed, 1);
  assert_int_equal(th_pool_stats(m, "io").submitted, 0);
  tpool_manager_free(m);

  /* A catch-all last routes everything else; a route to a pool that does
     not exist (or is disabled) is refused. */
  add_route(o, "*", "io");
  tpool_config_error_t err;
  assert_int_equal(tpool_options_check(o, &err), 0);
  m = th_manager(o, NULL);
  assert_string_equal(tpool_pool_name(tpool_manager_route(m, "other")), "io");
  assert_int_equal(tpool_manager_shutdown(m, -1), 0);
  tpool_manager_free(m);
  add_route(o, "late.*", "gpu");
  assert_int_equal(tpool_options_check(o, &err), -EINVAL);
  assert_non_null(strstr(err.text, "[routes] late.*: no enabled pool named "
                                   "\"gpu\""));
  free(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_manager_exactly_once_over_five_pools),
      cmocka_unit_test(test_manager_routes_pick_pools),
      cmocka_unit_test(test_manager_shutdown_drains_everything),
      cmocka_unit_test(test_manager_shutdown_deadline_cancels_unstarted),
      cmocka_unit_test(test_manager_never_returning_task_is_abandoned),
      cmocka_unit_test(test_manager_several_loops_get_their_own_completions),
      cmocka_unit_test(test_manager_attach_rejects_bad_bases),
      cmocka_unit_test(test_manager_rejects_invalid_options),
      cmocka_unit_test(test_manager_reconfigure_applies_live_settings),
      cmocka_unit_test(test_manager_tasks_before_start_wait),
      cmocka_unit_test(test_manager_shutdown_before_start_cancels),
      cmocka_unit_test(test_manager_shutdown_from_worker_is_refused),
      cmocka_unit_test(test_manager_failed_start_cancels_queued),
      cmocka_unit_test(test_manager_stranded_queue_gets_a_worker),
      cmocka_unit_test(test_manager_shutdown_joins_every_worker),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
