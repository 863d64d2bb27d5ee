/*
 * storm.c — a task storm against one manager, then an audit of every task.
 *
 * Eight threads (not the loop) submit to three pools with small queues
 * (64, 1024 and 8192 tasks), so submits are refused all the time. A task
 * does a little CPU work; some fail, some carry a start deadline that
 * may pass in the queue. About 30 % of accepted tasks are followed by a
 * cancel of one of the submitter's recent tasks, queued, running or
 * already done. Another thread resizes the pools at random. At a random
 * moment a thread shuts the manager down, with a random drain deadline
 * (none, immediate, or a few milliseconds), while everything else goes on.
 *
 * Afterwards, for every submit attempt:
 *   - accepted: its done callback ran exactly once, with its own id and a
 *     status the API allows, on the loop thread;
 *   - refused: the error came back at once (-EAGAIN or -ESHUTDOWN) and no
 *     done callback ran;
 * and per pool the manager's counters match the storm's own tally and the
 * accounting invariant holds: submitted = rejected + completed + failed +
 * cancelled + expired.
 *
 *   storm [--tasks N] [--submitters S] [--seed X] [--quiet]
 *
 * Exits 0 when the audit passes, 1 on any violation (each is printed),
 * 2 on bad usage or a setup failure.
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

enum { NPOOLS = 3, RECENT = 16, MAX_SUBMITTERS = 64 };

static const struct {
  const char *name;
  unsigned min, max;
  size_t limit;
  double idle_s, spin_s;
} pool_setup[NPOOLS] = {
    {"tiny", 1, 4, 64, 0.05, 0.0},
    {"mid", 2, 8, 1024, 0.05, 0.0001},
    {"wide", 0, 16, 8192, 0.02, 0.0},
};

/* What became of one submit attempt. */
enum { T_NONE, T_ACCEPTED, T_REFUSED };

typedef struct {
  int64_t id;           /* the submit's return: id, or the error */
  unsigned char pool;   /* index into pool_setup */
  unsigned char state;  /* T_* ; written by its submitter */
  atomic_int done_runs; /* done callbacks run for it */
  int64_t done_id;      /* as the done callback saw it */
  int done_status;
  bool done_off_loop;
} slot_t;

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

  atomic_size_t attempts;      /* submit attempts so far, all threads */
  size_t shutdown_at;          /* shut down once attempts reach this */
  double drain_timeout_s;      /* the shutdown's deadline */
  atomic_bool shut;            /* shutdown has returned */
  atomic_bool submitters_done; /* every submitter has returned */
  atomic_uint_fast64_t slowest_refusal_ns;
  atomic_uint_fast64_t cancels_tried, cancels_ok;
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

/* The work: up to about 20 µs of CPU; every 50th task fails. The slot's
   index is the task's argument. */
static int storm_work(void *arg) {
  uintptr_t i = (uintptr_t)arg;
  volatile uint64_t x = i;
  unsigned spins = (unsigned)((i * 2654435761u) % 4000);
  for (unsigned k = 0; k < spins; k++)
    x = x * 6364136223846793005ull + 1;
  return i % 50 == 7 ? -EIO : 0;
}

static storm_t *the_storm; /* for the done callback, which gets the index */

static void storm_done(int status, const tpool_task_info_t *info, void *arg);

/* One submit attempt for slot i, with random choices from r: the pool, and
   now and then a start deadline. Returns the id, or the error. Thread:
   any (a submitter, or the loop in a done callback). */
static int64_t attempt(storm_t *s, size_t i, uint64_t r) {
  slot_t *sl = &s->slots[i];
  sl->pool = (unsigned char)(r % NPOOLS);
  tpool_task_opts_t opts = {0};
  if ((r >> 8) % 20 == 0) /* may expire in the queue */
    opts.start_timeout_s = 0.0005 * (double)((r >> 16) % 4);
  uint64_t t0 = now_ns();
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
    sl->done_id = info->id;
    sl->done_status = status;
    sl->done_off_loop = !pthread_equal(pthread_self(), s->loop_thread);
  }
  /* Every eighth completion submits a task from the loop thread (the
     slots after the submitters'), as servers do: the path of a submit made
     on the loop, which polls for completions when a pool spins. */
  if (i % 8 == 0 && s->loop_next < s->nslots && !s->auditing)
    attempt(s, s->loop_next++, next_rand(&s->loop_rng));
}

/* ---- the threads --------------------------------------------------------- */

static void *submitter_main(void *arg) {
  submitter_t *me = arg;
  storm_t *s = me->s;
  uint64_t rng = s->seed * 1000003u + me->no;
  int64_t recent[RECENT] = {0};
  unsigned nrecent = 0;
  /* Attempts are dealt round-robin: submitter k takes k, k + S, ... */
  for (size_t i = me->no; i < s->ntasks; i += s->nsubmitters) {
    uint64_t r = next_rand(&rng);
    int64_t id = attempt(s, i, r);
    if (id <= 0)
      continue;
    recent[nrecent++ % RECENT] = id;
    if ((r >> 24) % 10 < 3) { /* about 30 % */
      unsigned n = nrecent < RECENT ? nrecent : RECENT;
      int64_t victim = recent[(r >> 32) % n];
      atomic_fetch_add(&s->cancels_tried, 1);
      if (tpool_manager_cancel(s->m, victim) == 0)
        atomic_fetch_add(&s->cancels_ok, 1);
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
  uint64_t ok, failed, cancelled, expired;
} tally_t;

static int audit(storm_t *s, const tpool_stats_t *st) {
  int bad = 0;
  tally_t t[NPOOLS];
  memset(t, 0, sizeof(t));
  for (size_t i = 0; i < s->nslots; i++) {
    slot_t *sl = &s->slots[i];
    tally_t *pt = &t[sl->pool];
    if (sl->state == T_NONE && i >= s->ntasks)
      continue; /* the loop stopped submitting before this slot */
    int runs = atomic_load(&sl->done_runs);
    pt->attempts++;
    if (sl->state == T_ACCEPTED) {
      pt->accepted++;
      if (runs != 1 || sl->done_id != sl->id || sl->done_off_loop) {
        if (bad++ < 10)
          fprintf(stderr,
                  "storm: task %zu (id %" PRId64 "): done ran %d times, "
                  "saw id %" PRId64 "%s\n",
                  i, sl->id, runs, sl->done_id,
                  sl->done_off_loop ? ", off the loop thread" : "");
        continue;
      }
      switch (sl->done_status) {
      case 0:
        pt->ok++;
        break;
      case -EIO:
        pt->failed++;
        break;
      case -ECANCELED:
        pt->cancelled++;
        break;
      case -ETIMEDOUT:
        pt->expired++;
        break;
      default:
        if (bad++ < 10)
          fprintf(stderr, "storm: task %zu: unexpected status %d\n", i,
                  sl->done_status);
      }
    } else if (sl->state == T_REFUSED) {
      if (sl->id == -EAGAIN)
        pt->refused_again++;
      else if (sl->id == -ESHUTDOWN)
        pt->refused_shutdown++;
      else if (bad++ < 10)
        fprintf(stderr, "storm: task %zu: refused with %s\n", i,
                tpool_err_name((int)sl->id));
      if (runs != 0 && bad++ < 10)
        fprintf(stderr, "storm: refused task %zu: done ran %d times\n", i,
                runs);
    } else if (bad++ < 10) {
      fprintf(stderr, "storm: task %zu was never attempted\n", i);
    }
  }
  for (unsigned p = 0; p < NPOOLS; p++) {
    const tpool_pool_stats_t *ps = tpool_stats_pool(st, pool_setup[p].name);
    const tally_t *pt = &t[p];
    uint64_t refused = pt->refused_again + pt->refused_shutdown;
    if (!ps) {
      fprintf(stderr, "storm: pool %s missing from the stats\n",
              pool_setup[p].name);
      bad++;
      continue;
    }
    bool match = ps->submitted == pt->attempts && ps->rejected == refused &&
                 ps->completed == pt->ok && ps->failed == pt->failed &&
                 ps->cancelled == pt->cancelled && ps->expired == pt->expired;
    bool invariant = ps->submitted == ps->rejected + ps->completed +
                                          ps->failed + ps->cancelled +
                                          ps->expired &&
                     ps->queued == 0 && ps->busy_workers == 0;
    if (!match || !invariant) {
      bad++;
      fprintf(stderr,
              "storm: pool %s: counters submitted %" PRIu64 " rejected %" PRIu64
              " completed %" PRIu64 " failed %" PRIu64 " cancelled %" PRIu64
              " expired %" PRIu64 " queued %zu busy %u; the storm saw %" PRIu64
              " attempts, %" PRIu64 " refused, %" PRIu64 " ok, %" PRIu64
              " failed, %" PRIu64 " cancelled, %" PRIu64 " expired\n",
              ps->name, ps->submitted, ps->rejected, ps->completed, ps->failed,
              ps->cancelled, ps->expired, ps->queued, ps->busy_workers,
              pt->attempts, refused, pt->ok, pt->failed, pt->cancelled,
              pt->expired);
    }
    if (!s->quiet)
      printf("pool %-4s attempts %9" PRIu64 "  accepted %9" PRIu64
             "  refused full %8" PRIu64 " shut %8" PRIu64 "  ok %9" PRIu64
             "  failed %7" PRIu64 "  cancelled %8" PRIu64 "  expired %6" PRIu64
             "\n",
             ps->name, pt->attempts, pt->accepted, pt->refused_again,
             pt->refused_shutdown, pt->ok, pt->failed, pt->cancelled,
             pt->expired);
  }
  /* A refusal must not wait for room: a second is far beyond any lock
     hold here, and far below what blocking until a task finishes takes
     under load. */
  uint64_t slowest = atomic_load(&s->slowest_refusal_ns);
  if (slowest > 1000000000u) {
    bad++;
    fprintf(stderr, "storm: a refused submit took %.3f s\n",
            (double)slowest / 1e9);
  }
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
  }
  int rc = tpool_manager_new(o, &s->m);
  free(o);
  if (rc != 0 || tpool_manager_attach(s->m, s->base) != 0 ||
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
      !(s.base = event_base_new())) {
    fprintf(stderr, "storm: out of memory\n");
    return 2;
  }
  s.loop_thread = pthread_self();
  if (setup(&s) != 0)
    return 2;

  uint64_t start = now_ns();
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
  event_base_dispatch(s.base);
  pthread_join(joiner, NULL);
  event_free(check);
  /* A shutdown that hit its deadline left tasks running (a worker can be
     preempted for longer than the deadline): wait for them, as a careful
     user would before freeing, so that every accepted task must have
     completed. Without a deadline, it must have finished them all. */
  int again = tpool_manager_shutdown(s.m, -1.0);

  /* The loop has stopped, and shutdown has waited for every worker:
     nothing runs any more. tpool_manager_free() delivers what is still
     pending on this thread, which is the loop thread; the counters are
     final already, so they are read first. */
  tpool_stats_t *st = NULL;
  s.auditing = true; /* no more submits: the pools would count them */
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
  printf(
      "storm: %zu + %zu attempts, %u submitters, seed %" PRIu64
      ", shutdown after %zu (deadline %g s, %s), %" PRIu64 " cancels (%" PRIu64
      " took), %" PRIu64 " resizes, slowest refusal %.1f us, %.1f s: %s\n",
      s.ntasks, s.loop_next - s.ntasks, s.nsubmitters, s.seed, s.shutdown_at,
      s.drain_timeout_s, tpool_err_name(s.shutdown_rc),
      atomic_load(&s.cancels_tried), atomic_load(&s.cancels_ok),
      atomic_load(&s.resizes), (double)atomic_load(&s.slowest_refusal_ns) / 1e3,
      secs, bad ? "FAILED" : "ok");
  free(s.slots);
  return bad ? 1 : 0;
}
