/*
 * internal.h — what core/ shares with pools/ and the tests, and nothing a
 * user of tpool sees: the clock, the log sink, the latency histogram, the
 * loop bridge and the limits that options are checked against. Symbols here
 * are prefixed tpool__ and are hidden from the shared library.
 */
#ifndef TPOOL_CORE_INTERNAL_H
#define TPOOL_CORE_INTERNAL_H

#include "tpool.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Limits shared by the config loader and tpool_options_check().
 * ------------------------------------------------------------------------ */

#define TPOOL__QUEUE_LIMIT_MAX ((size_t)10000000)
/* Durations, in seconds. The status interval's minimum applies to files
   only, as a guard against typing errors: code may set anything above 0. */
#define TPOOL__SECONDS_MAX 86400.0
#define TPOOL__STATUS_INTERVAL_MIN 0.1
#define TPOOL__IDLE_TIMEOUT_MIN 0.01
#define TPOOL__SPIN_MAX 0.01 /* an idle worker's poll before it sleeps */
#define TPOOL__STACK_MIN ((size_t)64 * 1024)
#define TPOOL__STACK_MAX ((size_t)1024 * 1024 * 1024)
#define TPOOL__STACK_DEFAULT ((size_t)512 * 1024)
#define TPOOL__QUEUE_DEFAULT ((size_t)65536)
#define TPOOL__PORT_MAX 65535u
#define TPOOL__BATCH_MAX 65536u
#define TPOOL__CONFIG_LINE_MAX 198 /* bytes per line, newline excluded */
#define TPOOL__CONFIG_FILE_MAX ((size_t)1024 * 1024)
/* Retries, the circuit breaker and the task history. */
#define TPOOL__ATTEMPTS_MAX 100u
#define TPOOL__BACKOFF_MIN 0.001
#define TPOOL__BACKOFF_MAX 3600.0
#define TPOOL__BACKOFF_DEFAULT 0.1
#define TPOOL__BACKOFF_MAX_DEFAULT 30.0
#define TPOOL__THRESHOLD_MIN 0.01
#define TPOOL__COOLDOWN_MIN 0.001
#define TPOOL__TRIALS_MAX 1000u
#define TPOOL__HISTORY_MAX ((size_t)1000000)
#define TPOOL__HISTORY_DEFAULT ((size_t)1024)

/* True if `name` is a valid pool name: 1..31 of [a-z0-9_-]. */
bool tpool__pool_name_is_valid(const char *name);

/* Bytes per cache line on the machines tpool targets (x86-64, arm64).
   Fields written by one thread and read by others are kept this far apart
   from fields with other writers. */
#define TPOOL__CACHE_LINE 64

/* ------------------------------------------------------------------------
 * Clock
 * ------------------------------------------------------------------------ */

/* Monotonic nanoseconds. Thread: any. */
static inline uint64_t tpool__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double tpool__ns_to_s(uint64_t ns) {
  return (double)ns / 1e9;
}

/* Seconds to nanoseconds, saturating; negative or NaN gives 0. */
static inline uint64_t tpool__s_to_ns(double s) {
  if (!(s > 0))
    return 0;
  if (s >= 1e10)
    return (uint64_t)1e19;
  return (uint64_t)(s * 1e9);
}

/* Fills *ts with CLOCK_MONOTONIC time `ns` (for pthread_cond_timedwait on a
   condition variable set to CLOCK_MONOTONIC). */
static inline void tpool__ns_to_timespec(uint64_t ns, struct timespec *ts) {
  ts->tv_sec = (time_t)(ns / 1000000000u);
  ts->tv_nsec = (long)(ns % 1000000000u);
}

/* Initialises a condition variable that waits on CLOCK_MONOTONIC.
   Returns 0 or a positive errno from pthreads. */
int tpool__cond_init(pthread_cond_t *cv);

/* Waits on cv (made by tpool__cond_init) until signalled or until the
   monotonic time `deadline_ns`; UINT64_MAX waits without a deadline.
   Returns 0 or ETIMEDOUT, like pthread_cond_timedwait. */
int tpool__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           uint64_t deadline_ns);

/* ------------------------------------------------------------------------
 * Log sink
 *
 * Formats a message and hands it to the user's sink or writes it to a file
 * descriptor with one write(2). Calls are serialised by `mu`, so a user sink
 * never runs twice at once, and tpool__log_close() can guarantee that no
 * call is in progress or will follow.
 * ------------------------------------------------------------------------ */

typedef struct tpool__log {
  pthread_mutex_t mu;
  tpool_log_cb cb;  /* protected by mu; NULL = write to fd */
  void *cb_arg;     /* protected by mu */
  int fd;           /* protected by mu; -1 once closed */
  bool own_fd;      /* fd was opened here and is closed here */
  bool closed;      /* protected by mu */
  atomic_int level; /* atomic: lowest level written */
} tpool__log_t;

/* Sets up the sink from o (log_cb, else log_path). Returns 0, -EIO if the
   file cannot be opened (errno-based text in the log is not possible yet,
   so the caller reports it), or -ENOMEM. */
int tpool__log_init(tpool__log_t *l, const tpool_options_t *o);

/* Stops the sink: no call to the user's sink is in progress when this
   returns, and none follows. Idempotent. Thread: any. */
void tpool__log_close(tpool__log_t *l);

/* Releases what tpool__log_init() took. Call after tpool__log_close(). */
void tpool__log_destroy(tpool__log_t *l);

static inline bool tpool__log_enabled(tpool__log_t *l, tpool_log_level_t lv) {
  return (int)lv >= atomic_load_explicit(&l->level, memory_order_relaxed);
}

/* Writes one complete message (may be multi-line). Thread: any. */
void tpool__log_write(tpool__log_t *l, tpool_log_level_t lv, const char *msg);

/* printf-style tpool__log_write(); messages are truncated at 4 KiB. */
void tpool__logf(tpool__log_t *l, tpool_log_level_t lv, const char *fmt, ...)
    TPOOL_PRINTF(3, 4);
void tpool__vlogf(tpool__log_t *l, tpool_log_level_t lv, const char *fmt,
                  va_list ap) TPOOL_PRINTF(3, 0);

/* ------------------------------------------------------------------------
 * Latency histogram
 *
 * Log-linear buckets over nanoseconds (HdrHistogram's layout): values below
 * 16 ns are exact; above, each power of two is split into 16 buckets, so a
 * bucket is never wider than 1/16 of its values. Values of 2^40 ns (about
 * 18 minutes) and more share the last bucket; max stays exact.
 * Not synchronised: the owner guards it.
 * ------------------------------------------------------------------------ */

#define TPOOL__HIST_SUB_BITS 4
#define TPOOL__HIST_SUB (1u << TPOOL__HIST_SUB_BITS)
#define TPOOL__HIST_TOP_BIT 40
#define TPOOL__HIST_BUCKETS                                                    \
  (TPOOL__HIST_SUB +                                                           \
   (TPOOL__HIST_TOP_BIT - TPOOL__HIST_SUB_BITS) * TPOOL__HIST_SUB)
#define TPOOL__HIST_GROUPS (TPOOL__HIST_BUCKETS / TPOOL__HIST_SUB)

typedef struct tpool__hist {
  uint64_t count;
  uint64_t sum_ns;
  uint64_t max_ns;
  uint64_t buckets[TPOOL__HIST_BUCKETS];
  /* Sums of each run of TPOOL__HIST_SUB buckets (one power of two), so a
     quantile is found in a few dozen steps instead of hundreds. */
  uint64_t groups[TPOOL__HIST_GROUPS];
  /* Exact counts per fixed bound of tpool_latency_bound() (the last entry:
     above every bound), kept beside the log-linear buckets because those
     edges are powers of two and Prometheus wants decimal ones. */
  uint64_t le[TPOOL_LATENCY_BUCKETS + 1];
} tpool__hist_t;

void tpool__hist_record(tpool__hist_t *h, uint64_t ns);
void tpool__hist_merge(tpool__hist_t *into, const tpool__hist_t *from);
/* Index of the bucket that holds `ns`. */
unsigned tpool__hist_bucket(uint64_t ns);
/* Lowest value of bucket `i`, and the lowest value of the next one. */
uint64_t tpool__hist_bucket_low(unsigned i);
uint64_t tpool__hist_bucket_high(unsigned i);
/* Value at quantile q (0..1): the middle of the bucket that holds it,
   clamped to max. 0 when empty. */
uint64_t tpool__hist_quantile(const tpool__hist_t *h, double q);
/* Count, sum, p50, p90, p99, max in seconds and the cumulative counts. */
void tpool__hist_summary(const tpool__hist_t *h, tpool_latency_t *out);

/* A small latency record, for where there are many of them (a
   schedule's lateness): since the start, the count, sum, max and the
   counts per fixed bound of tpool_latency_bound(), exactly as
   tpool__hist_t keeps them; and the last TPOOL__RECENT values, over which
   percentiles are exact. About 750 bytes, where a tpool__hist_t takes
   5 KiB. */
#define TPOOL__RECENT 64
typedef struct tpool__recent {
  uint64_t count;
  uint64_t sum_ns;
  uint64_t max_ns;
  uint64_t le[TPOOL_LATENCY_BUCKETS + 1];
  uint64_t last_ns[TPOOL__RECENT]; /* a ring; count % TPOOL__RECENT next */
} tpool__recent_t;

void tpool__recent_record(tpool__recent_t *r, uint64_t ns);
/* As tpool__hist_summary(): p50, p90 and p99 of the last TPOOL__RECENT
   values (or of all, when fewer). */
void tpool__recent_summary(const tpool__recent_t *r, tpool_latency_t *out);

/* ------------------------------------------------------------------------
 * Loop bridge: completions from any thread back to one event_base.
 *
 * Producers push nodes on a lock-free stack and write the eventfd only when
 * the loop is not already woken, so a burst costs one wakeup. The loop's
 * callback takes the whole stack, restores submission order, and delivers
 * at most `batch` nodes per round; the rest wait for the next round (a
 * zero-delay timer) so completions cannot starve the loop's I/O.
 * ------------------------------------------------------------------------ */

typedef struct tpool__node {
  struct tpool__node *next;
} tpool__node_t;

/* Delivers one node on the loop thread; owns it from then on. */
typedef void (*tpool__deliver_fn)(tpool__node_t *node, void *arg);

typedef struct tpool__bridge tpool__bridge_t;

/* Returns 0 if `base` was made thread-aware (created after
   evthread_use_pthreads() and without EVENT_BASE_FLAG_NOLOCK), else
   -EINVAL. Thread: loop of base (or before it runs). */
int tpool__base_check(struct event_base *base);

/* Creates a bridge on `base` and registers its event. Returns 0, -EINVAL
   (see tpool__base_check), -EIO (no eventfd) or -ENOMEM.
   Thread: loop of base. */
int tpool__bridge_new(struct event_base *base, unsigned batch,
                      tpool__deliver_fn deliver, void *arg,
                      tpool__bridge_t **out);

struct event_base *tpool__bridge_base(const tpool__bridge_t *b);

/* Queues a node for delivery on the loop. Thread: any. */
void tpool__bridge_post(tpool__bridge_t *b, tpool__node_t *node);

/* Coalescing bounds for tpool__bridge_post_within(): a delay shorter than
   the minimum is not worth a timer (a wakeup costs about as much). */
#define TPOOL__COALESCE_MIN_NS 50000ull

/* Queues a node that may wait up to `delay_ns` after `now_ns` before the
   loop sees it, so a flood of completions shares one wakeup; delays under
   TPOOL__COALESCE_MIN_NS post at once. Thread: any. */
void tpool__bridge_post_within(tpool__bridge_t *b, tpool__node_t *node,
                               uint64_t now_ns, uint64_t delay_ns);

/* Delivers up to `max` pending nodes on the calling thread. Returns how
   many were delivered. Only one thread may drain a bridge: its loop thread
   (the event callback does), or another thread once that loop has
   stopped for good (tpool_manager_free() does).
   Thread: loop of the bridge's base. */
size_t tpool__bridge_drain(tpool__bridge_t *b, size_t max);

/* Called after a task was handed to a pool whose workers spin before
   sleeping: if the calling thread is this bridge's loop thread, the loop
   polls for completions instead of sleeping for `spin_ns` from now (each
   call extends it); on any other thread it does nothing.
   Thread: any. */
void tpool__bridge_spin(tpool__bridge_t *b, uint64_t spin_ns);

/* Number of eventfd writes and coalescing timer arms so far (wakeups
   asked of the loop). Thread: any. */
uint64_t tpool__bridge_wakeups(const tpool__bridge_t *b);

/* Removes the bridge's events from its base. Posting stays safe; nodes
   posted later are only reachable through tpool__bridge_free().
   Thread: loop of base, or any thread once its loop has stopped. */
void tpool__bridge_detach(tpool__bridge_t *b);

/* Frees the bridge and hands every undelivered node to `discard` (if not
   NULL). Must follow tpool__bridge_detach(). Thread: any, once no thread
   can post any more. */
void tpool__bridge_free(tpool__bridge_t *b, tpool__deliver_fn discard,
                        void *arg);

#endif /* TPOOL_CORE_INTERNAL_H */
