/*
 * test_fork.c — fork() while a manager's workers are busy, 100 times: in
 * each child (which has only the forking thread) a new manager starts,
 * runs a task through its own loop and shuts down, and the child exits 0.
 * The parent's manager goes on as if nothing happened.
 *
 * Skipped under ThreadSanitizer, which cannot follow a multi-threaded
 * fork, and under AddressSanitizer, whose allocator is not fork-safe (see
 * the test). The children's asserts are plain checks with an exit status: a
 * cmocka failure in a child would unwind into the parent's copy of the
 * test runner.
 */
#include "helpers.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

enum { FORKS = 100, CHILD_WAIT_S = 30 };

/* About a millisecond of CPU: keeps the parent's workers busy (and their
   locks in use) while it forks. */
static int busy_work(void *arg) {
  (void)arg;
  volatile uint64_t x = 1;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do {
    for (int i = 0; i < 1000; i++)
      x = x * 6364136223846793005ull + 1;
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while ((now.tv_sec - start.tv_sec) * 1000000000L +
               (now.tv_nsec - start.tv_nsec) <
           1000000L);
  return 0;
}

/* The parent's tasks end on its loop (this thread), so their workers never
   free memory while a fork happens: glibc's malloc is safe across fork(),
   but the sanitizers' allocators in this compiler are not all so. */
static void busy_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  if (status == 0)
    ++*(int *)arg;
}

typedef struct {
  struct event_base *base;
  int result; /* set by the work, on the child's worker */
  int status, calls;
} child_done_t;

static int child_work(void *arg) {
  ((child_done_t *)arg)->result = 42;
  return 0;
}

static void child_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  child_done_t *d = arg;
  d->status = status;
  d->calls++;
  event_base_loopbreak(d->base);
}

/* The child's life: a fresh base and manager, one task, a clean stop.
   Returns its exit status: 0 when all went as it should. */
static int child_main(void) {
  struct event_base *base = event_base_new();
  if (!base)
    return 10;
  tpool_options_t *o = malloc(sizeof(*o));
  if (!o)
    return 11;
  tpool_options_init(o);
  o->npools = 0;
  o->log_level = TPOOL_LOG_WARN; /* a hundred start lines say nothing */
  tpool_pool_options_t *po;
  if (tpool_options_add_pool(o, "child", &po) != 0)
    return 12;
  po->min_workers = po->max_workers = 1;
  tpool_manager_t *m = NULL;
  int rc = tpool_manager_new(o, &m);
  free(o);
  if (rc != 0 || tpool_manager_attach(m, base) != 0 ||
      tpool_manager_start(m) != 0)
    return 13;
  child_done_t d = {base, 0, 1, 0};
  if (tpool_manager_submit(m, "child", "in-child", child_work, child_done, &d,
                           NULL) <= 0)
    return 14;
  /* Bounded: a hang ends in the parent's kill after CHILD_WAIT_S. */
  event_base_dispatch(base);
  if (tpool_manager_shutdown(m, 5.0) != 0)
    return 15;
  tpool_manager_free(m);
  event_base_free(base);
  return d.calls == 1 && d.status == 0 && d.result == 42 ? 0 : 16;
}

/* Waits for the child up to CHILD_WAIT_S; kills it after that. Returns
   its wait status, or -1 if it had to be killed. */
static int reap(pid_t pid) {
  struct timespec start;
  th_now(&start);
  for (;;) {
    int ws;
    pid_t r = waitpid(pid, &ws, WNOHANG);
    if (r == pid)
      return ws;
    assert_true(r == 0 || errno == EINTR);
    if (th_elapsed(&start) > CHILD_WAIT_S) {
      kill(pid, SIGKILL);
      waitpid(pid, &ws, 0);
      return -1;
    }
    struct timespec nap = {0, 1000000};
    nanosleep(&nap, NULL);
  }
}

static void test_fork_while_workers_are_busy(void **state) {
  (void)state;
  /* ThreadSanitizer cannot follow a multi-threaded fork; AddressSanitizer's
     allocator (GCC 12) is not locked across fork(), so a child can inherit
     its lock held by a thread of the parent and hang in its first malloc
     (seen here: both child threads waiting in SizeClassAllocator64). glibc's
     own malloc is fork-safe: the plain build is the one that counts. */
  if (TH_TSAN || TH_ASAN)
    skip();
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "busy", 2, 2, 1024);
  struct event_base *base = th_base_new();
  tpool_manager_t *m = th_manager(&o, base);
  tpool_pool_t *p = tpool_manager_pool(m, "busy");
  int done = 0;

  for (int i = 0; i < FORKS; i++) {
    /* Work queued and running on both workers as the fork happens. */
    for (int k = 0; k < 4; k++)
      assert_true(tpool_submit(p, "busy", busy_work, busy_done, &done, NULL) >
                  0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
      _exit(child_main()); /* no atexit handlers of the test runner */
    int ws = reap(pid);
    event_base_loop(base, EVLOOP_NONBLOCK); /* deliver what has ended */
    if (ws == -1)
      fail_msg("fork %d: the child hung", i);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
      fail_msg("fork %d: the child %s %d", i,
               WIFEXITED(ws) ? "exited with status" : "died of signal",
               WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
  }
  /* The parent's manager is untouched: all its work ran. */
  assert_true(th_run_until_int(base, &done, 4 * FORKS, 60.0));
  assert_int_equal(tpool_manager_shutdown(m, 30.0), 0);
  tpool_pool_stats_t ps = th_pool_stats(m, "busy");
  assert_int_equal(ps.completed, 4 * FORKS);
  th_assert_invariant(m);
  tpool_manager_free(m);
  event_base_free(base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_while_workers_are_busy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
