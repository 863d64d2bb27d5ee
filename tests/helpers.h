/*
 * helpers.h — what the tests share: a gate that holds tasks inside their
 * work function until the test opens it, a log sink that captures
 * messages, running a loop until a condition holds (bounded in time), and
 * the accounting invariant (docs/design.md).
 */
#ifndef TPOOL_TESTS_HELPERS_H
#define TPOOL_TESTS_HELPERS_H

#include "pools_internal.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#if defined(__SANITIZE_THREAD__)
#define TH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TH_TSAN 1
#endif
#endif
#ifndef TH_TSAN
#define TH_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TH_ASAN 1
#endif
#endif
#ifndef TH_ASAN
#define TH_ASAN 0
#endif

/* A gate: work functions wait in gate_pass() until gate_open(). */
typedef struct th_gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool open;
  int waiting; /* threads inside gate_pass() */
  int passed;
} th_gate_t;

void th_gate_init(th_gate_t *g);
void th_gate_destroy(th_gate_t *g);
void th_gate_pass(th_gate_t *g);
void th_gate_open(th_gate_t *g);
int th_gate_waiting(th_gate_t *g);
int th_gate_passed(th_gate_t *g);
/* A work function: arg is a th_gate_t. */
int th_gate_work(void *arg);

/* A log sink that keeps every message as "LEVEL msg\n". */
typedef struct th_log {
  pthread_mutex_t mu;
  char *text;
  size_t len, cap;
} th_log_t;

void th_log_init(th_log_t *l);
void th_log_destroy(th_log_t *l);
void th_log_sink(tpool_log_level_t level, const char *msg, void *arg);
/* True if the captured text contains `needle`. */
bool th_log_contains(th_log_t *l, const char *needle);
/* Waits up to timeout_s for the captured text to contain `needle` (a
   worker counts itself out before it logs why). */
bool th_log_wait_for(th_log_t *l, const char *needle, double timeout_s);
/* A copy of the captured text (caller frees). */
char *th_log_copy(th_log_t *l);

/* Makes libevent thread-aware (once) and returns a new base. */
struct event_base *th_base_new(void);

/* Options with no built-in pools: add your own with th_add_pool(). */
void th_options_empty(tpool_options_t *o);
/* th_options_empty(), with the log captured in *log (initialised here). */
void th_options_logged(tpool_options_t *o, th_log_t *log);
tpool_pool_options_t *th_add_pool(tpool_options_t *o, const char *name,
                                  unsigned min_workers, unsigned max_workers,
                                  size_t queue_limit);

/* A started manager with one fixed pool "w" of `workers` threads and a
   queue of `limit`, attached to base (if not NULL). */
tpool_manager_t *th_one_pool(unsigned workers, size_t limit,
                             struct event_base *base);

/* New manager from o, attached to base and started; asserts success. */
tpool_manager_t *th_manager(const tpool_options_t *o, struct event_base *base);

/* Runs base's loop until pred(arg) is true or timeout_s passes.
   Returns pred's final value. pred may be NULL (run for timeout_s). */
bool th_run_until(struct event_base *base, bool (*pred)(void *), void *arg,
                  double timeout_s);

/* Runs base's loop until *value >= want (a counter the loop's done
   callbacks increase) or timeout_s passes. Returns whether it got there. */
bool th_run_until_int(struct event_base *base, const int *value, int want,
                      double timeout_s);

/* Polls (running base's loop if not NULL) until the pool's snapshot
   satisfies pred, or timeout_s passes. */
bool th_wait_stats(tpool_manager_t *m, struct event_base *base,
                   const char *pool,
                   bool (*pred)(const tpool_pool_stats_t *, void *), void *arg,
                   double timeout_s);

/* A copy of one pool's snapshot (active tasks dropped). */
tpool_pool_stats_t th_pool_stats(tpool_manager_t *m, const char *pool);

/* Asserts, for every pool: nothing queued, running, retrying or
   scheduled, and
   submitted = rejected + completed + failed + cancelled + expired. */
void th_assert_invariant(tpool_manager_t *m);

/* Done callbacks counted by outcome, and work functions that ran. */
typedef struct th_tally {
  int calls, ok, failed, cancelled; /* loop thread only */
  int ran;                          /* protected by mu */
  pthread_mutex_t mu;
  th_gate_t gate; /* for work that waits, like th_tally_held() */
} th_tally_t;

/* Zeroes *t; undo with th_tally_destroy(). */
void th_tally_init(th_tally_t *t);
void th_tally_destroy(th_tally_t *t);
/* A done callback: arg is a th_tally_t. -ECANCELED counts as cancelled,
   any other non-zero status as failed. */
void th_tally_done(int status, const tpool_task_info_t *info, void *arg);
/* A work function: arg is a th_tally_t; waits in its gate. */
int th_tally_held(void *arg);

/* promtool (Debian package prometheus) checks run in tests of their own
   (metrics_promtool, server_promtool), which skip, exit 77 with the
   reason, on a machine without promtool; the other tests never need it.
   A test program's main calls th_promtool_mode(): true when its
   arguments ask for the promtool run ("promtool"), which then has
   promtool (or the process has exited 77); false otherwise.
   th_assert_promtool_accepts() runs `promtool check metrics` on text and
   fails the test on any complaint in the promtool run, and does nothing
   in the others. */
bool th_promtool_mode(int argc, char **argv);
void th_assert_promtool_accepts(const char *text);

/* Tiny work functions. */
int th_noop(void *arg);
int th_fail_eio(void *arg); /* returns -EIO */
double th_elapsed(const struct timespec *since);

/* Removes `dir` and everything under it (a test's private directory). */
void th_remove_tree(const char *dir);
void th_now(struct timespec *ts);

#endif
