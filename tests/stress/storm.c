/*
 * storm.c — a task storm against one manager, then an audit of every task.
 *
 * Eight threads (not the loop) submit to four pools with small queues
 * (64, 1024, 256 and 8192 tasks), so submits are refused all the time. A
 * task does a little CPU work; some fail, some carry a start deadline that
 * may pass in the queue. About 10 % ask to be retried (-TPOOL_ERETRY) on
 * their first 1..4 runs, on pools that allow 1 to 4 attempts with
 * backoffs of 0.25..2 ms, some with attempts and a backoff of their own;
 * they complete on a second loop, whose timers run their backoffs. About
 * 5 % are submitted with a delay of 0.2..2 ms (scheduled until then, on
 * that loop's timers too), and must not run before it. The
 * third pool, "flaky", has a circuit breaker; its tasks fail in phases
 * (most of them, or few), so the breaker opens, half-opens and closes
 * again and again, and submits to it are refused with -TPOOL_ECIRCUIT.
 * About 30 % of accepted tasks are followed by a cancel of one of the
 * submitter's recent tasks, queued, running, waiting out a backoff or
 * already done; one cancel in sixteen first looks the task up
 * (tpool_manager_task). Another thread resizes the pools at random. At a
 * random moment a thread shuts the manager down, with a random drain
 * deadline (none, immediate, or a few milliseconds), while everything
 * else goes on.
 *
 * Afterwards, for every submit attempt:
 *   - accepted: its done callback ran exactly once, with its own id and a
 *     status the API allows, on its loop's thread, after the last run of
 *     its work; info->attempts is the number of times its work ran, and
 *     the status agrees with that count, with what the work returned and
 *     with the attempts it was allowed (a retry refused for a shutdown
 *     included); a cancel that returned 0 was for a task that ended
 *     -ECANCELED, one that returned -ENOENT for a task that never ran
 *     again; a lookup that found it done agrees with its done callback;
 *     the waits and run times it was given are sane;
 *   - refused: the error came back at once (-EAGAIN, -ESHUTDOWN, or
 *     -TPOOL_ECIRCUIT from the pool with a breaker) and no done callback
 *     ran;
 * and per pool the manager's counters match the storm's own tally and the
 * accounting invariant holds: submitted = rejected + completed + failed +
 * cancelled + expired, with nothing queued, running, retrying or
 * scheduled; no delayed task ran before its delay; the
 * retries counter lies within what the runs allow (exact unless a task
 * that had run was cancelled); the breaker refused exactly the submits
 * the storm saw refused and the retries that ended -TPOOL_ECIRCUIT (a
 * retry meets an open breaker), its transition counts fit together, and it
 * opened if its pool ran many tasks in a failing phase.
 *
 *   storm [--tasks N] [--submitters S] [--seed X] [--quiet]
 *
 * Exits 0 when the audit passes, 1 on any violation (the first ten are
 * printed, and the count), 2 on bad usage or a setup failure.
 */
#include "tpool.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { NPOOLS = 4, FLAKY = 2, RECENT = 16, MAX_SUBMITTERS = 64 };

/* retry_attempts 1 ("wide") retries only tasks whose opts allow it; the
   first backoff is the smallest a pool may have, 1 ms, doubling up to
   2 ms, less up to half of it as jitter. "flaky" has the breaker. A
   cancel looks for its task pool by pool in this order, through queues
   and retries: the long queue comes last, as before. */
static const struct {
  const char *name;
  unsigned min, max;
  size_t limit;
  double idle_s, spin_s;
  unsigned retry_attempts;
  unsigned breaker_window;
} pool_setup[NPOOLS] = {
    {"tiny", 1, 4, 64, 0.05, 0.0, 3, 0},
    {"mid", 2, 8, 1024, 0.05, 0.0001, 4, 0},
    {"flaky", 1, 4, 256, 0.05, 0.0, 2, 32},
    {"wide", 0, 16, 8192, 0.02, 0.0, 1, 0},
};

/* What became of one submit attempt. */
enum { T_NONE, T_ACCEPTED, T_REFUSED };

/* One submit attempt. Kept small (40 bytes): there are more than a
   million, touched by every thread, and ThreadSanitizer keeps four bytes
   of shadow for each. */
typedef struct {
  int64_t id;              /* the submit's return: id, or the error */
  int32_t done_id;         /* as the done callback saw it (ids stay < 2^31) */
  int32_t done_status;     /* as the done callback saw it */
  int16_t looked_status;   /* see looked_attempts */
  atomic_uchar runs;       /* times its work ran */
  atomic_uchar cancels_ok; /* cancels of it that returned 0 */
  atomic_uchar done_runs;  /* done callbacks run for it */
  unsigned char pool;      /* index into pool_setup */
  unsigned char state;     /* T_* ; written by its submitter */
  /* Chosen before the submit, read by the work: it asks for a retry on
     its first `asks` runs, then returns -EIO if `fails`, else 0. */
  unsigned char asks;
  bool fails;
  bool sick;     /* "flaky" in a failing phase */
  bool deadline; /* submitted with a start deadline */
  /* A delayed task: when it falls due, in µs from the storm's start
     (rounded up); 0: no delay. */
  uint32_t due_us;
  unsigned char attempts; /* attempts allowed: its opts', or its pool's */
  /* As the done callback saw them (counts saturated). */
  bool done_off_loop;
  bool done_after_stop; /* shutdown had begun */
  bool done_times_ok;   /* queue_wait_s and run_s within the storm's time */
  signed char done_task_runs; /* `runs` then */
  unsigned char done_attempts;
  /* The last lookup by its submitter that found it done (-1: none), and
     whether the times it gave were within the storm's. */
  signed char looked_attempts;
  bool looked_times_ok;
  /* Fewest runs seen right after a cancel of it returned -ENOENT ("not
     queued, running or waiting to retry": it had ended), or -1. */
  signed char gone_runs;
} slot_t;

/* The first tasks whose done callback got times out of range, with them
   (the slot keeps only a flag). Written by the loops, read by the audit. */
enum { ODD_MAX = 10 };
static struct {
  size_t slot;
  double wait_s, run_s;
} odd_times[ODD_MAX];
static atomic_uint nodd_times;

/* Counts kept in a slot's chars: far above any here, saturated. */
static signed char small(int n) {
  return (signed char)(n < 0 ? -1 : n > 127 ? 127 : n);
}

typedef struct {
  size_t ntasks;
  unsigned nsubmitters;
  uint64_t seed;
  bool quiet;

  slot_t *slots; /* ntasks for the submitters, then the loop's */
  size_t nslots;
  size_t loop_next;  /* loop thread only: the loop's next slot */
  bool auditing;     /* loop thread only: the counters have been read */
  uint64_t loop_rng; /* loop thread only */
  tpool_manager_t *m;
  tpool_pool_t *pools[NPOOLS];
  struct event_base *base;
  pthread_t loop_thread;
  /* The second loop, for the tasks that ask for retries: see attempt(). */
  struct event_base *base2;
  pthread_t loop2_thread; /* set by that thread itself */
  atomic_bool final_shut; /* the last shutdown has returned */
  atomic_bool loops_over; /* both loops have stopped */

  uint64_t start_ns;               /* when the submitters started */
  atomic_uint_fast64_t early_runs; /* delayed tasks that ran too soon */
  atomic_size_t attempts;          /* submit attempts so far, all threads */
  size_t shutdown_at;              /* shut down once attempts reach this */
  atomic_bool stopping;            /* shutdown is about to begin, or has */
  double drain_timeout_s;          /* the shutdown's deadline */
  atomic_bool shut;                /* shutdown has returned */
  atomic_bool submitters_done;     /* every submitter has returned */
  atomic_uint_fast64_t slowest_refusal_ns;
  atomic_uint_fast64_t cancels_tried, cancels_ok;
  atomic_uint_fast64_t cancels_between; /* of a task that had run */
  atomic_uint_fast64_t cancels_bad;     /* neither 0, -EBUSY nor -ENOENT */
  atomic_uint_fast64_t lookups, lookup_bad;
  atomic_uint_fast64_t resizes;
  int shutdown_rc; /* by the thread that shut down; read after the joins */
} storm_t;

typedef struct {
  storm_t *s;
  unsigned no;
} submitter_t;

/* ---- small helpers ----------------------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: a good, tiny generator; one state per thread. */
static uint64_t next_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void store_max(atomic_uint_fast64_t *v, uint64_t x) {
  uint64_t old = atomic_load(v);
  while (old < x && !atomic_compare_exchange_weak(v, &old, x))
    ;
}

static void quiet_log(tpool_log_level_t level, const char *msg, void *arg) {
  (void)level;
  (void)msg;
  (void)arg;
}

/* ---- tasks ------------------------------------------------------------- */

static storm_t *the_storm; /* for the work and the done callback */

/* The per-task atomics are relaxed: what orders them is the library's
   own handoff (a task's runs happen before its done callback, a cancel's
   lock before the runs it reports), and ThreadSanitizer charges every
   acquire and release with a merge of the threads' clocks. */
#define LOAD(a) atomic_load_explicit(a, memory_order_relaxed)
#define BUMP(a) atomic_fetch_add_explicit(a, 1, memory_order_relaxed)

/* The work: up to about 20 µs of CPU, then a retry request on its first
   `asks` runs, then its outcome: -EIO or 0. The slot's index is the
   task's argument. */
static int storm_work(void *arg) {
  uintptr_t i = (uintptr_t)arg;
  slot_t *sl = &the_storm->slots[i];
  int run = BUMP(&sl->runs) + 1;
  if (run == 1 && sl->due_us &&
      (now_ns() - the_storm->start_ns) / 1000 < sl->due_us)
    atomic_fetch_add(&the_storm->early_runs, 1);
  volatile uint64_t x = i;
  unsigned spins = (unsigned)((i * 2654435761u) % 4000);
  for (unsigned k = 0; k < spins; k++)
    x = x * 6364136223846793005ull + 1;
  if (run <= sl->asks)
    return -TPOOL_ERETRY;
  return sl->fails ? -EIO : 0;
}

static void storm_done(int status, const tpool_task_info_t *info, void *arg);

/* "flaky" fails in phases of 2048 slots (slots are dealt in order, so
   about in time): one phase in three most of its tasks fail. */
static bool sick_phase(const storm_t *s, size_t i) {
  return ((i >> 11) + s->seed) % 3 == 0;
}

/* One submit attempt for slot i, with random choices from r: the pool,
   now and then a start deadline, retry requests and the task's own retry
   settings, and whether it fails. Returns the id, or the error. Thread:
   any (a submitter, or the loop in a done callback). */
static int64_t attempt(storm_t *s, size_t i, uint64_t r) {
  slot_t *sl = &s->slots[i];
  uint64_t r2 = r; /* a second draw, as fixed by r as the first */
  r2 = next_rand(&r2);
  sl->pool = (unsigned char)(r % NPOOLS);
  tpool_task_opts_t opts = {0};
  if ((r >> 8) % 20 == 0) /* may expire in the queue */
    opts.start_timeout_s = 0.0005 * (double)((r >> 16) % 4);
  sl->deadline = opts.start_timeout_s > 0;
  if (r2 % 100 < 10) /* about 10 %: a retry on the first 1..4 runs */
    sl->asks = (unsigned char)(1 + (r2 >> 8) % 4);
  if ((r2 >> 16) % 4 == 0) { /* a quarter: attempts of its own, 1..5 */
    opts.max_attempts = 1 + (unsigned)((r2 >> 24) % 5);
    if ((r2 >> 32) % 2) /* below the 1 ms a pool may have */
      opts.retry_backoff_s = 0.0005;
  }
  /* Tasks that ask for retries complete on a second loop: their backoff
     timers and done callbacks run there, clear of the main loop's flood
     of completions, so backoffs last about what they say and cancels
     often meet a task waiting one out; and a second base is stormed. */
  if ((r2 >> 44) % 20 == 0) /* about 5 %: delayed by 0.2..2 ms */
    opts.delay_s = 0.0002 * (double)(1 + (r2 >> 48) % 10);
  if (sl->asks || opts.delay_s > 0)
    opts.base = s->base2;
  sl->attempts =
      (unsigned char)(opts.max_attempts ? opts.max_attempts
                                        : pool_setup[sl->pool].retry_attempts);
  if (sl->pool == FLAKY) {
    sl->sick = sick_phase(s, i);
    sl->fails = (r2 >> 40) % 100 < (sl->sick ? 60u : 2u);
  } else {
    sl->fails = i % 50 == 7; /* every 50th task fails */
  }
  sl->looked_attempts = -1;
  sl->gone_runs = -1;
  uint64_t t0 = now_ns();
  if (opts.delay_s > 0) /* due no earlier than this, rounded up */
    sl->due_us =
        (uint32_t)((t0 - s->start_ns) / 1000 + (uint64_t)(opts.delay_s * 1e6));
  int64_t id = tpool_submit(s->pools[sl->pool], "storm", storm_work, storm_done,
                            (void *)(uintptr_t)i, &opts);
  uint64_t took = now_ns() - t0;
  sl->id = id;
  sl->state = id > 0 ? T_ACCEPTED : T_REFUSED;
  if (id <= 0)
    store_max(&s->slowest_refusal_ns, took);
  /* Shut down at the chosen attempt, from whichever thread made it: a
     submitter, or the loop inside a done callback. */
  if (atomic_fetch_add(&s->attempts, 1) + 1 == s->shutdown_at) {
    atomic_store(&s->stopping, true);
    s->shutdown_rc = tpool_manager_shutdown(s->m, s->drain_timeout_s);
    atomic_store(&s->shut, true);
  }
  return id;
}

static void storm_done(int status, const tpool_task_info_t *info, void *arg) {
  storm_t *s = the_storm;
  uintptr_t i = (uintptr_t)arg;
  slot_t *sl = &s->slots[i];
  if (atomic_fetch_add(&sl->done_runs, 1) == 0) {
    int runs = LOAD(&sl->runs);
    sl->done_id = (int32_t)info->id;
    sl->done_status = status;
    sl->done_task_runs = small(runs);
    sl->done_attempts =
        (unsigned char)(info->attempts > 255 ? 255 : info->attempts);
    /* The last attempt's wait and run: within the storm's time (a negative
       difference of clock readings would show as centuries), and no run
       time if the work never ran. */
    double storm_s = (double)(now_ns() - s->start_ns) / 1e9;
    sl->done_times_ok = info->queue_wait_s >= 0 &&
                        info->queue_wait_s <= storm_s && info->run_s >= 0 &&
                        info->run_s <= storm_s &&
                        (runs > 0 || info->run_s == 0);
    if (!sl->done_times_ok) {
      unsigned k = atomic_fetch_add(&nodd_times, 1);
      if (k < ODD_MAX) {
        odd_times[k].slot = i;
        odd_times[k].wait_s = info->queue_wait_s;
        odd_times[k].run_s = info->run_s;
      }
    }
    /* On its base's loop; or, for the second loop, on this thread once
       both have stopped, in tpool_manager_free(). */
    pthread_t self = pthread_self();
    sl->done_off_loop =
        !pthread_equal(self, sl->asks || sl->due_us ? s->loop2_thread
                                                    : s->loop_thread) &&
        !(LOAD(&s->loops_over) && pthread_equal(self, s->loop_thread));
    sl->done_after_stop = LOAD(&s->stopping);
  }
  /* Every eighth completion on the main loop submits a task from there (the
     slots after the submitters'), as servers do: the path of a submit made
     on the loop, which polls for completions when a pool spins. */
  if (i % 8 == 0 && !sl->asks && !sl->due_us && s->loop_next < s->nslots &&
      !s->auditing)
    attempt(s, s->loop_next++, next_rand(&s->loop_rng));
}

/* ---- the threads --------------------------------------------------------- */

/* Looks task `victim` (slot v) up before its cancel: a live task is where
   its runs say, a finished one is kept for the audit to compare with its
   done callback. Returns false if the record cannot be right. */
static bool look_up(storm_t *s, size_t v) {
  slot_t *sl = &s->slots[v];
  tpool_task_record_t rec;
  int before = LOAD(&sl->runs);
  int rc = tpool_manager_task(s->m, sl->id, &rec);
  int after = LOAD(&sl->runs);
  atomic_fetch_add(&s->lookups, 1);
  if (rc == -ENOENT) /* done and forgotten (or never in a history) */
    return true;
  if (rc != 0 || rec.id != sl->id ||
      strcmp(rec.pool, pool_setup[sl->pool].name) != 0 ||
      (int)rec.attempts < before || (int)rec.attempts > after + 1)
    return false;
  if (rec.state == TPOOL_TASK_DONE) {
    double storm_s = (double)(now_ns() - s->start_ns) / 1e9;
    sl->looked_attempts = small((int)rec.attempts);
    sl->looked_status = (int16_t)rec.status;
    sl->looked_times_ok = rec.queue_wait_s >= 0 &&
                          rec.queue_wait_s <= storm_s && rec.run_s >= 0 &&
                          rec.run_s <= storm_s;
  } else if (rec.state == TPOOL_TASK_SCHEDULED) {
    return sl->due_us && before == 0 && rec.attempts == 0;
  } else if (rec.state != TPOOL_TASK_QUEUED &&
             rec.state != TPOOL_TASK_RUNNING) {
    return false;
  }
  return true;
}

static void *submitter_main(void *arg) {
  submitter_t *me = arg;
  storm_t *s = me->s;
  uint64_t rng = s->seed * 1000003u + me->no;
  /* Slots of recently accepted tasks, and of those that ask for retries:
     one cancel in four aims at one of those, to meet more of them between
     attempts. */
  size_t recent[RECENT] = {0}, retrying[RECENT] = {0};
  unsigned nrecent = 0, nretrying = 0;
  /* Attempts are dealt round-robin: submitter k takes k, k + S, ... */
  for (size_t i = me->no; i < s->ntasks; i += s->nsubmitters) {
    uint64_t r = next_rand(&rng);
    int64_t id = attempt(s, i, r);
    if (id <= 0)
      continue;
    recent[nrecent++ % RECENT] = i;
    if (s->slots[i].asks)
      retrying[nretrying++ % RECENT] = i;
    if ((r >> 24) % 10 < 3) { /* about 30 % */
      unsigned n = nrecent < RECENT ? nrecent : RECENT;
      size_t v = recent[(r >> 32) % n];
      if ((r >> 48) % 4 == 0 && nretrying > 0)
        v = retrying[(r >> 52) % (nretrying < RECENT ? nretrying : RECENT)];
      slot_t *victim = &s->slots[v];
      if ((r >> 40) % 16 == 0 && !look_up(s, v))
        atomic_fetch_add(&s->lookup_bad, 1);
      int before = LOAD(&victim->runs);
      atomic_fetch_add(&s->cancels_tried, 1);
      int rc = tpool_manager_cancel(s->m, victim->id);
      if (rc == 0) {
        atomic_fetch_add(&s->cancels_ok, 1);
        BUMP(&victim->cancels_ok);
        if (before > 0) /* between attempts: in a backoff, or queued again */
          atomic_fetch_add(&s->cancels_between, 1);
      } else if (rc == -ENOENT) {
        int after = LOAD(&victim->runs);
        if (victim->gone_runs < 0 || after < victim->gone_runs)
          victim->gone_runs = small(after);
      } else if (rc != -EBUSY) {
        atomic_fetch_add(&s->cancels_bad, 1);
      }
    }
  }
  return NULL;
}

/* Resizes a random pool every few hundred microseconds until shutdown. */
static void *resizer_main(void *arg) {
  storm_t *s = arg;
  uint64_t rng = s->seed ^ 0x5bd1e995u;
  while (!atomic_load(&s->shut) && !atomic_load(&s->submitters_done)) {
    uint64_t r = next_rand(&rng);
    unsigned p = (unsigned)(r % NPOOLS);
    unsigned max = 1 + (unsigned)((r >> 8) % pool_setup[p].max);
    unsigned min = (unsigned)((r >> 16) % (max + 1));
    if (tpool_pool_resize(s->pools[p], min, max) == 0)
      atomic_fetch_add(&s->resizes, 1);
    struct timespec ts = {0, (long)(100000 + (r >> 24) % 400000)};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

/* Stops the loop once the storm is over; the rest of the completions are
   then delivered by tpool_manager_free(), as for any stopped loop. */
static void on_check(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  storm_t *s = arg;
  if (atomic_load(&s->submitters_done))
    event_base_loopbreak(s->base);
}

/* The second loop runs until the last shutdown has returned and no pool
   counts a task waiting for a retry, or 10 s after that, for the audit
   to tell. Then tpool_manager_free() delivers
   the rest of its completions on the main thread. */
static void on_check2(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  storm_t *s = arg;
  static uint64_t give_up;
  if (!atomic_load(&s->final_shut))
    return;
  if (give_up == 0)
    give_up = now_ns() + 10000000000u;
  tpool_stats_t *st;
  size_t retrying = SIZE_MAX;
  if (tpool_manager_stats(s->m, &st) == 0) {
    retrying = 0;
    for (size_t p = 0; p < st->npools; p++)
      retrying += st->pools[p].retrying;
    tpool_stats_free(st);
  }
  if (retrying == 0 || now_ns() > give_up)
    event_base_loopbreak(s->base2);
}

static void *loop2_main(void *arg) {
  storm_t *s = arg;
  s->loop2_thread = pthread_self();
  struct event *check = event_new(s->base2, -1, EV_PERSIST, on_check2, s);
  struct timeval every = {0, 10000};
  event_add(check, &every);
  event_base_dispatch(s->base2);
  event_free(check);
  return NULL;
}

typedef struct {
  storm_t *s;
  pthread_t *threads;
  pthread_t resizer;
} joiner_t;

/* Joins the submitters, then the resizer, and says the storm is over. */
static void *joiner_main(void *arg) {
  joiner_t *j = arg;
  for (unsigned i = 0; i < j->s->nsubmitters; i++)
    pthread_join(j->threads[i], NULL);
  atomic_store(&j->s->submitters_done, true);
  pthread_join(j->resizer, NULL);
  return NULL;
}

/* ---- the audit ----------------------------------------------------------- */

typedef struct {
  uint64_t attempts, accepted, refused_again, refused_shutdown;
  uint64_t refused_circuit;
  uint64_t circuit_ended; /* retries the breaker refused: ended ECIRCUIT */
  uint64_t ok, failed, cancelled, expired;
  uint64_t gave_up;        /* ended -TPOOL_ERETRY */
  uint64_t retried;        /* tasks that ran more than once */
  uint64_t reruns;         /* sum of runs - 1 over tasks that ran */
  uint64_t requeued;       /* expired after a run: queued again first */
  uint64_t maybe_requeued; /* cancelled after a run: perhaps queued again */
  uint64_t runs, failed_runs, sick_runs;
} tally_t;

/* Counts a violation in the caller's `bad`; prints the first few. */
static int reported;
#define BAD(...)                                                               \
  do {                                                                         \
    bad++;                                                                     \
    if (reported++ < 10)                                                       \
      fprintf(stderr, __VA_ARGS__);                                            \
  } while (0)

/* Checks an accepted task that ended, and tallies it; returns the number of
   violations. */
static int audit_task(storm_t *s, size_t i, tally_t *pt) {
  slot_t *sl = &s->slots[i];
  int bad = 0;
  int runs = atomic_load(&sl->runs);
  int asks = sl->asks, allowed = sl->attempts;
  int cancels = atomic_load(&sl->cancels_ok);
  int status = sl->done_status;
  pt->runs += (uint64_t)runs;
  /* Every run but the last, and the last unless it succeeded, failed:
     the breaker saw each as a failure. */
  pt->failed_runs += (uint64_t)(runs - (status == 0));
  if (sl->sick)
    pt->sick_runs += (uint64_t)runs;
  if (runs > 1)
    pt->retried++;
  if (runs > 0)
    pt->reruns += (uint64_t)(runs - 1);
  if (sl->done_task_runs != runs || (int)sl->done_attempts != runs)
    BAD("storm: task %zu (id %" PRId64 "): ran %d times, %d before its done "
        "callback, which says %u attempts\n",
        i, sl->id, runs, sl->done_task_runs, sl->done_attempts);
  /* What the status must agree with: the runs, the retry requests (the
     first `asks` runs), the attempts allowed, and a shutdown, which
     refuses any further retry. */
  bool ok;
  switch (status) {
  case 0:
  case -EIO:
    ok = runs == asks + 1 && runs <= allowed && sl->fails == (status != 0);
    if (status == 0)
      pt->ok++;
    else
      pt->failed++;
    break;
  case -TPOOL_ERETRY:
    ok = runs >= 1 && runs <= asks && runs <= allowed &&
         (runs == allowed || sl->done_after_stop);
    pt->failed++;
    pt->gave_up++;
    break;
  case -TPOOL_ECIRCUIT:
    /* Its last run asked for a retry and was allowed one, but the pool's
       breaker was open when the backoff ended; or it was delayed, and the
       breaker was open when it fell due. */
    ok = pool_setup[sl->pool].breaker_window &&
         ((runs >= 1 && runs <= asks && runs < allowed) ||
          (runs == 0 && sl->due_us));
    pt->failed++;
    pt->circuit_ended++;
    break;
  case -ECANCELED:
  case -ETIMEDOUT:
    /* Every run it had asked for a retry, and got one. A cancel ends it,
       a shutdown, or its start deadline, which was set at submit. */
    ok = runs <= asks && runs < allowed &&
         (status == -ECANCELED ? cancels == 1 || sl->done_after_stop
                               : sl->deadline);
    if (status == -ECANCELED) {
      pt->cancelled++;
      pt->maybe_requeued += runs > 0;
    } else {
      pt->expired++;
      pt->requeued += runs > 0;
    }
    break;
  default:
    ok = false;
  }
  if (!ok)
    BAD("storm: task %zu (id %" PRId64 ", pool %s): status %s after %d "
        "run(s); it asked for a retry on %d, was allowed %d attempt(s), "
        "%s%s%s, %d cancel(s) took\n",
        i, sl->id, pool_setup[sl->pool].name, tpool_err_name(status), runs,
        asks, allowed, sl->fails ? "fails" : "succeeds",
        sl->deadline ? ", start deadline" : "",
        sl->done_after_stop ? ", ended after shutdown began" : "", cancels);
  if (cancels > 1 || (cancels == 1 && status != -ECANCELED))
    BAD("storm: task %zu (id %" PRId64 "): %d cancels returned 0, then it "
        "ended %s\n",
        i, sl->id, cancels, tpool_err_name(status));
  if (!sl->done_times_ok) {
    unsigned k = 0, n = atomic_load(&nodd_times);
    while (k < n && k < ODD_MAX && odd_times[k].slot != i)
      k++;
    if (k < n && k < ODD_MAX)
      bad++; /* printed with its times by audit() */
    else
      BAD("storm: task %zu (id %" PRId64 ", pool %s): %s after %d run(s), "
          "info says queue_wait_s or run_s out of range\n",
          i, sl->id, pool_setup[sl->pool].name, tpool_err_name(status), runs);
  }
  if (sl->gone_runs >= 0 && sl->gone_runs != runs)
    BAD("storm: task %zu (id %" PRId64 "): a cancel found no such task after "
        "%d run(s), yet it ran %d times\n",
        i, sl->id, sl->gone_runs, runs);
  if (sl->looked_attempts >= 0 &&
      (sl->looked_attempts != runs || sl->looked_status != status ||
       !sl->looked_times_ok))
    BAD("storm: task %zu (id %" PRId64 "): looked up done with %s after %d "
        "attempt(s)%s; it ended %s after %d\n",
        i, sl->id, tpool_err_name(sl->looked_status), sl->looked_attempts,
        sl->looked_times_ok ? ""
                            : ", queue_wait_s or run_s beyond the storm's time",
        tpool_err_name(status), runs);
  return bad;
}

/* Checks a pool's counters against the storm's tally. */
static int audit_pool(storm_t *s, unsigned p, const tpool_pool_stats_t *ps,
                      const tally_t *pt) {
  int bad = 0;
  uint64_t refused =
      pt->refused_again + pt->refused_shutdown + pt->refused_circuit;
  bool match = ps->submitted == pt->attempts && ps->rejected == refused &&
               ps->completed == pt->ok && ps->failed == pt->failed &&
               ps->cancelled == pt->cancelled && ps->expired == pt->expired;
  bool invariant = ps->submitted == ps->rejected + ps->completed + ps->failed +
                                        ps->cancelled + ps->expired &&
                   ps->queued == 0 && ps->busy_workers == 0 &&
                   ps->retrying == 0 && ps->scheduled == 0;
  if (!match || !invariant)
    BAD("storm: pool %s: counters submitted %" PRIu64 " rejected %" PRIu64
        " completed %" PRIu64 " failed %" PRIu64 " cancelled %" PRIu64
        " expired %" PRIu64 " queued %zu busy %u retrying %zu; the storm saw "
        "%" PRIu64 " attempts, %" PRIu64 " refused, %" PRIu64 " ok, %" PRIu64
        " failed, %" PRIu64 " cancelled, %" PRIu64 " expired\n",
        ps->name, ps->submitted, ps->rejected, ps->completed, ps->failed,
        ps->cancelled, ps->expired, ps->queued, ps->busy_workers, ps->retrying,
        pt->attempts, refused, pt->ok, pt->failed, pt->cancelled, pt->expired);
  /* Each run after the first was preceded by a return to the queue, and
     so was the expiry of a task that had run (a task expires only from
     the queue). A task cancelled after a run was taken either while it
     waited out its backoff or after it was queued again: one more, or
     not. */
  uint64_t least = pt->reruns + pt->requeued;
  if (ps->retries < least || ps->retries > least + pt->maybe_requeued)
    BAD("storm: pool %s: %" PRIu64 " retries counted; the runs allow %" PRIu64
        "..%" PRIu64 "\n",
        ps->name, ps->retries, least, least + pt->maybe_requeued);
  const tpool_breaker_stats_t *b = &ps->breaker;
  if (pool_setup[p].breaker_window == 0) {
    if (b->enabled || pt->refused_circuit)
      BAD("storm: pool %s has no breaker, yet %s\n", ps->name,
          b->enabled ? "its stats say it has" : "refused with ECIRCUIT");
  } else {
    /* opened = half_opened (+ 1 while open): every open period but the
       current one ended half-open; each half-open period but the current
       one ended closed or open again. A storm that ran a thousand tasks in
       a phase where 60 % of them fail must have tripped it. */
    bool is_open = b->state == TPOOL_BREAKER_OPEN;
    bool is_half = b->state == TPOOL_BREAKER_HALF_OPEN;
    if (!b->enabled || b->refused != pt->refused_circuit + pt->circuit_ended ||
        b->opened != b->half_opened + is_open ||
        b->half_opened < b->closed + is_half || b->trials_running != 0 ||
        b->trials_passed >= b->trials || b->in_window > b->window ||
        b->failures_in_window > b->in_window ||
        (pt->sick_runs >= 1000 && b->opened == 0))
      BAD("storm: pool %s: breaker %s refused %" PRIu64
          " (the storm saw %" PRIu64 "), opened %" PRIu64
          " half_opened %" PRIu64 " closed %" PRIu64
          ", trials running %u passed %u of %u, window %u/%u with %u "
          "failures; %" PRIu64 " runs in failing phases\n",
          ps->name, tpool_breaker_state_name(b->state), b->refused,
          pt->refused_circuit, b->opened, b->half_opened, b->closed,
          b->trials_running, b->trials_passed, b->trials, b->in_window,
          b->window, b->failures_in_window, pt->sick_runs);
  }
  if (!s->quiet) {
    printf("pool %-5s attempts %8" PRIu64 "  accepted %8" PRIu64
           "  refused full %7" PRIu64 " shut %7" PRIu64 " circuit %7" PRIu64
           "  ok %8" PRIu64 "  failed %6" PRIu64 " (gave up %5" PRIu64
           ")  cancelled %7" PRIu64 "  expired %5" PRIu64 "\n",
           ps->name, pt->attempts, pt->accepted, pt->refused_again,
           pt->refused_shutdown, pt->refused_circuit, pt->ok, pt->failed,
           pt->gave_up, pt->cancelled, pt->expired);
    printf("           runs %8" PRIu64 " (%" PRIu64
           " failed)  retried tasks %6" PRIu64 "  retries %7" PRIu64 "",
           pt->runs, pt->failed_runs, pt->retried, ps->retries);
    if (b->enabled)
      printf("  breaker opened %" PRIu64 " half_opened %" PRIu64
             " closed %" PRIu64 " (now %s)",
             b->opened, b->half_opened, b->closed,
             tpool_breaker_state_name(b->state));
    printf("\n");
  }
  return bad;
}

static int audit(storm_t *s, const tpool_stats_t *st) {
  int bad = 0;
  tally_t t[NPOOLS];
  memset(t, 0, sizeof(t));
  /* The first tasks given times out of range, in the order they ended;
     audit_task() counts them. */
  unsigned nodd = atomic_load(&nodd_times);
  for (unsigned k = 0; k < nodd && k < ODD_MAX && reported < 10; k++) {
    const slot_t *sl = &s->slots[odd_times[k].slot];
    reported++;
    fprintf(stderr,
            "storm: task %zu (id %" PRId64 ", pool %s): %s after %d run(s), "
            "info says queue_wait_s %g, run_s %g\n",
            odd_times[k].slot, sl->id, pool_setup[sl->pool].name,
            tpool_err_name(sl->done_status), atomic_load(&sl->runs),
            odd_times[k].wait_s, odd_times[k].run_s);
  }
  for (size_t i = 0; i < s->nslots; i++) {
    slot_t *sl = &s->slots[i];
    tally_t *pt = &t[sl->pool];
    if (sl->state == T_NONE && i >= s->ntasks)
      continue; /* the loop stopped submitting before this slot */
    int calls = atomic_load(&sl->done_runs);
    pt->attempts++;
    if (sl->state == T_ACCEPTED) {
      pt->accepted++;
      if (calls != 1 || sl->done_id != (int32_t)sl->id || sl->done_off_loop) {
        BAD("storm: task %zu (id %" PRId64 "): done ran %d times, "
            "saw id %" PRId32 "%s\n",
            i, sl->id, calls, sl->done_id,
            sl->done_off_loop ? ", off the loop thread" : "");
        continue;
      }
      bad += audit_task(s, i, pt);
    } else if (sl->state == T_REFUSED) {
      if (sl->id == -EAGAIN)
        pt->refused_again++;
      else if (sl->id == -ESHUTDOWN)
        pt->refused_shutdown++;
      else if (sl->id == -TPOOL_ECIRCUIT)
        pt->refused_circuit++;
      else
        BAD("storm: task %zu: refused with %s\n", i,
            tpool_err_name((int)sl->id));
      if (calls != 0)
        BAD("storm: refused task %zu: done ran %d times\n", i, calls);
      if (atomic_load(&sl->runs) != 0)
        BAD("storm: refused task %zu: its work ran\n", i);
    } else {
      BAD("storm: task %zu was never attempted\n", i);
    }
  }
  for (unsigned p = 0; p < NPOOLS; p++) {
    const tpool_pool_stats_t *ps = tpool_stats_pool(st, pool_setup[p].name);
    if (!ps) {
      BAD("storm: pool %s missing from the stats\n", pool_setup[p].name);
      continue;
    }
    bad += audit_pool(s, p, ps, &t[p]);
  }
  if (atomic_load(&s->early_runs))
    BAD("storm: %" PRIu64 " delayed task(s) ran before their delay\n",
        (uint64_t)atomic_load(&s->early_runs));
  if (atomic_load(&s->cancels_bad))
    BAD("storm: %" PRIu64 " cancels returned neither 0, EBUSY nor ENOENT\n",
        (uint64_t)atomic_load(&s->cancels_bad));
  if (atomic_load(&s->lookup_bad))
    BAD("storm: %" PRIu64 " of %" PRIu64 " lookups found a wrong record\n",
        (uint64_t)atomic_load(&s->lookup_bad),
        (uint64_t)atomic_load(&s->lookups));
  /* A refusal must not wait for room: a second is far beyond any lock
     hold here, and far below what blocking until a task finishes takes
     under load. */
  uint64_t slowest = atomic_load(&s->slowest_refusal_ns);
  if (slowest > 1000000000u)
    BAD("storm: a refused submit took %.3f s\n", (double)slowest / 1e9);
  return bad;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f, "usage: storm [--tasks N] [--submitters S] [--seed X] "
             "[--quiet]\n"
             "  --tasks N       submit attempts in all (default 1000000)\n"
             "  --submitters S  submitting threads, 1..64 (default 8)\n"
             "  --seed X        seeds every random choice (default: the "
             "clock)\n"
             "  --quiet         print the verdict line only\n");
}

static bool parse_u64(const char *text, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-')
    return false;
  *out = v;
  return true;
}

static int parse_args(int argc, char **argv, storm_t *s) {
  s->ntasks = 1000000;
  s->nsubmitters = 8;
  s->seed = now_ns();
  for (int i = 1; i < argc; i++) {
    uint64_t v;
    bool has_value = i + 1 < argc;
    if (!strcmp(argv[i], "--help")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(argv[i], "--quiet")) {
      s->quiet = true;
    } else if (!strcmp(argv[i], "--tasks") && has_value &&
               parse_u64(argv[++i], &v) && v >= 1) {
      s->ntasks = (size_t)v;
    } else if (!strcmp(argv[i], "--submitters") && has_value &&
               parse_u64(argv[++i], &v) && v >= 1 && v <= MAX_SUBMITTERS) {
      s->nsubmitters = (unsigned)v;
    } else if (!strcmp(argv[i], "--seed") && has_value &&
               parse_u64(argv[++i], &v)) {
      s->seed = v;
    } else {
      fprintf(stderr, "storm: bad argument \"%s\"\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  return 0;
}

static int setup(storm_t *s) {
  tpool_options_t *o = malloc(sizeof(*o));
  if (!o)
    return 2;
  tpool_options_init(o);
  o->npools = 0;
  o->log_cb = quiet_log; /* resizes log a line each */
  for (unsigned p = 0; p < NPOOLS; p++) {
    tpool_pool_options_t *po;
    if (tpool_options_add_pool(o, pool_setup[p].name, &po) != 0)
      return 2;
    po->min_workers = pool_setup[p].min;
    po->max_workers = pool_setup[p].max;
    po->queue_limit = pool_setup[p].limit;
    po->idle_timeout_s = pool_setup[p].idle_s;
    po->spin_s = pool_setup[p].spin_s;
    po->retry_attempts = pool_setup[p].retry_attempts;
    po->retry_backoff_s = 0.001;
    po->retry_backoff_max_s = 0.002;
    if (pool_setup[p].breaker_window) {
      po->breaker_window = pool_setup[p].breaker_window;
      po->breaker_threshold = 0.5;
      po->breaker_cooldown_s = 0.002;
      po->breaker_trials = 2;
    }
  }
  int rc = tpool_manager_new(o, &s->m);
  free(o);
  if (rc != 0 || tpool_manager_attach(s->m, s->base) != 0 ||
      tpool_manager_attach(s->m, s->base2) != 0 ||
      tpool_manager_start(s->m) != 0) {
    fprintf(stderr, "storm: cannot start the manager: %s\n",
            tpool_strerror(rc));
    return 2;
  }
  for (unsigned p = 0; p < NPOOLS; p++)
    s->pools[p] = tpool_manager_pool(s->m, pool_setup[p].name);
  return 0;
}

int main(int argc, char **argv) {
  static storm_t s;
  int rc = parse_args(argc, argv, &s);
  if (rc != 0)
    return rc;
  the_storm = &s;
  uint64_t rng = s.seed;
  /* Shut down somewhere in the second half, with no deadline, at once,
     or after a few milliseconds. */
  s.shutdown_at = s.ntasks / 2 + next_rand(&rng) % (s.ntasks / 2 + 1);
  static const double drains[] = {-1.0, 0.0, 0.002, 0.02};
  s.drain_timeout_s = drains[next_rand(&rng) % 4];
  s.nslots = s.ntasks + s.ntasks / 8;
  s.loop_next = s.ntasks;
  s.loop_rng = next_rand(&rng);
  s.slots = calloc(s.nslots, sizeof(*s.slots));
  if (!s.slots || evthread_use_pthreads() != 0 ||
      !(s.base = event_base_new()) || !(s.base2 = event_base_new())) {
    fprintf(stderr, "storm: out of memory\n");
    return 2;
  }
  s.loop_thread = pthread_self();
  if (setup(&s) != 0)
    return 2;

  uint64_t start = s.start_ns = now_ns();
  submitter_t subs[MAX_SUBMITTERS];
  pthread_t threads[MAX_SUBMITTERS], resizer;
  for (unsigned i = 0; i < s.nsubmitters; i++) {
    subs[i] = (submitter_t){&s, i};
    pthread_create(&threads[i], NULL, submitter_main, &subs[i]);
  }
  pthread_create(&resizer, NULL, resizer_main, &s);

  /* The loop delivers completions while the storm runs; a timer looks
     every 10 ms whether it is over. A joiner thread marks the end. */
  struct event *check = event_new(s.base, -1, EV_PERSIST, on_check, &s);
  struct timeval every = {0, 10000};
  event_add(check, &every);
  joiner_t ja = {&s, threads, resizer};
  pthread_t joiner;
  pthread_create(&joiner, NULL, joiner_main, &ja);
  pthread_t loop2;
  pthread_create(&loop2, NULL, loop2_main, &s);
  event_base_dispatch(s.base);
  pthread_join(joiner, NULL);
  event_free(check);
  /* A shutdown that hit its deadline left tasks running (a worker can be
     preempted for longer than the deadline): wait for them, as a careful
     user would before freeing, so that every accepted task must have
     completed. Without a deadline, it must have finished them all. */
  int again = tpool_manager_shutdown(s.m, -1.0);

  /* The loop has stopped, and shutdown has waited for every worker:
     nothing runs any more. The second loop stops too once no pool counts
     a retry in flight. tpool_manager_free() delivers what
     is still pending on this thread, which is the loop thread; the
     counters are final already, so they are read first. */
  s.auditing = true; /* no more submits: the pools would count them */
  atomic_store(&s.final_shut, true);
  pthread_join(loop2, NULL);
  atomic_store(&s.loops_over, true);
  tpool_stats_t *st = NULL;
  if (tpool_manager_stats(s.m, &st) != 0) {
    fprintf(stderr, "storm: no stats\n");
    return 2;
  }
  tpool_manager_free(s.m);
  double secs = (double)(now_ns() - start) / 1e9;
  int bad = audit(&s, st);
  if (!atomic_load(&s.shut) || again != 0 ||
      (s.shutdown_rc != 0 &&
       (s.drain_timeout_s < 0 || s.shutdown_rc != -ETIMEDOUT))) {
    bad++;
    fprintf(stderr, "storm: shutdown returned %s (deadline %g s), then %s%s\n",
            tpool_err_name(s.shutdown_rc), s.drain_timeout_s,
            tpool_err_name(again),
            atomic_load(&s.shut) ? "" : "; the planned one never ran");
  }
  tpool_stats_free(st);
  event_base_free(s.base);
  event_base_free(s.base2);
  printf("storm: %zu + %zu attempts, %u submitters, seed %" PRIu64
         ", shutdown after %zu (deadline %g s, %s), %" PRIu64
         " cancels (%" PRIu64 " took, %" PRIu64 " between attempts), %" PRIu64
         " lookups, %" PRIu64 " resizes, slowest refusal %.1f us, %.1f s: %s",
         s.ntasks, s.loop_next - s.ntasks, s.nsubmitters, s.seed, s.shutdown_at,
         s.drain_timeout_s, tpool_err_name(s.shutdown_rc),
         atomic_load(&s.cancels_tried), atomic_load(&s.cancels_ok),
         atomic_load(&s.cancels_between), atomic_load(&s.lookups),
         atomic_load(&s.resizes),
         (double)atomic_load(&s.slowest_refusal_ns) / 1e3, secs,
         bad ? "FAILED" : "ok");
  if (bad)
    printf(" (%d violations)", bad);
  printf("\n");
  free(s.slots);
  return bad ? 1 : 0;
}
