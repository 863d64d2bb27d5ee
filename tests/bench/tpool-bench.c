/*
 * tpool-bench.c — tpool-bench, which compares tpool's offload path with
 * libuv's uv_queue_work(): a task is submitted on the loop thread, runs on
 * a pool thread, and its completion callback comes back on the loop thread.
 * Both libraries are used as an application would use them, through their
 * public APIs only, and the bench allocates nothing per task on either side.
 *
 * What is measured (--mode):
 *  - throughput: K tasks in flight, each completion submitting the next.
 *    The first N/10 completions warm up; the next N are timed, together
 *    with the process's CPU time (getrusage) over the same window: tasks/s
 *    and CPU % (CPU seconds per wall second x 100; 200 = two cores busy).
 *  - latency: one task in flight, the next submitted from the completion
 *    callback. A round trip runs from just before the submit to the entry
 *    of the completion callback, both read on the loop thread. 1000 trips
 *    warm up; the next N are kept exactly and sorted for p50, p99 and
 *    p99.9. CPU % is reported too: it shows what an opt-in spin costs.
 *  - idle: what a parked worker costs. VmRSS and VmSize are read from
 *    /proc/self/status before the T workers start and again once all of
 *    them sleep; the growth divided by T is the cost per worker (tpool's
 *    includes its one monitor thread). Fixed costs spread thinner with a
 *    larger T, which makes the per-worker figures more precise: hence
 *    T = 64 by default in this mode.
 * The work is a CPU spin of W µs (W = 0: an empty task), not a wall-clock
 * wait, so that it costs the same on both sides whatever the scheduler does.
 *
 * DESIGN
 * The parent stays single-threaded. It calibrates the spin once, timing a
 * loop on a volatile counter and keeping the best of many short trials
 * (interruptions only ever make a trial slower), so that both libraries
 * spin for the same number of iterations. Then every run happens in a
 * fresh forked child, which runs one library once and writes one JSON line
 * to the parent through a pipe. A fresh process keeps libuv's
 * process-global thread pool (sized by UV_THREADPOOL_SIZE, which the child
 * sets to T before its first uv_queue_work()) from carrying over between
 * runs, and keeps the memory readings clean. A child that meets an error
 * reports it and exits non-zero; the parent then stops.
 * With --impl both the runs alternate, tpool then libuv, pair after pair,
 * so that drift in the machine's load touches both alike. The closing table
 * gives each library's median and range, and the median of the pair-by-pair
 * ratios tpool/libuv, which is steadier than a ratio of medians on a noisy
 * machine. Within a child, the run's state is touched by the loop thread
 * only, except the spin count, which the workers read.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <tpool.h>
#include <unistd.h>
#include <uv.h>

#define BENCH_NAME "tpool-bench"
#include "bench_util.h"

#define POOL_NAME "bench"
#define LATENCY_WARMUP_TRIPS 1000u
#define IDLE_SETTLE_MS 200u          /* once the workers look parked */
#define IDLE_START_TIMEOUT_S 30u     /* for tpool's workers to park */
#define CALIBRATION_TRIAL_NS 100000u /* each trial spins >= 100 µs */
#define CALIBRATION_TRIALS 500
#define SPIN_CHECK_SAMPLES 201
#define THREADS_MAX 1024u /* libuv's limit for UV_THREADPOOL_SIZE */
#define TASKS_MAX 1000000000u
#define JSON_LINE_MAX 1024 /* bytes, newline included */
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

typedef enum impl { IMPL_TPOOL, IMPL_LIBUV, IMPL_COUNT } impl_t;
static const char *const impl_names[IMPL_COUNT] = {"tpool", "libuv"};

typedef enum bench_mode {
  MODE_THROUGHPUT,
  MODE_LATENCY,
  MODE_IDLE
} bench_mode_t;
static const char *const mode_names[] = {"throughput", "latency", "idle"};

/* What the command line asked for, and the calibration. */
typedef struct config {
  bool run_impl[IMPL_COUNT];
  bench_mode_t mode;
  unsigned threads;    /* T */
  unsigned long tasks; /* N: timed completions, or latency trips */
  double work_us;      /* W */
  unsigned inflight;   /* K, throughput only */
  unsigned pairs;      /* runs of each library */
  double spin_us;      /* tpool's spin_s, in µs */
  bool json_only;
  double iterations_per_us; /* of spin(), from calibrate() */
  uint64_t spin_iterations; /* per task: W µs of spin() */
  double spin_check_us;     /* W µs of spin() (10 µs if W is 0), as timed */
} config_t;

/* The numeric fields of a run's JSON line, in their order after "impl"
   and "mode". */
typedef enum field {
  F_THREADS,
  F_TASKS,
  F_WORK_US,
  F_TASKS_PER_S,
  F_P50_US,
  F_P99_US,
  F_P999_US,
  F_RSS_KB,
  F_VSZ_KB,
  F_CPU_PERCENT,
  F_INFLIGHT,
  F_SPIN_US,
  F_RSS_KB_TOTAL,
  F_VSZ_KB_TOTAL,
  F_RUN,
  F_COUNT
} field_t;

static const struct {
  const char *key;
  int decimals; /* -1: %g */
} fields[F_COUNT] = {
    {"threads", 0},      {"tasks", 0},        {"work_us", -1},
    {"tasks_per_s", 1},  {"p50_us", 3},       {"p99_us", 3},
    {"p999_us", 3},      {"rss_kb", 1},       {"vsz_kb", 1},
    {"cpu_percent", 1},  {"inflight", 0},     {"spin_us", -1},
    {"rss_kb_total", 0}, {"vsz_kb_total", 0}, {"run", 0},
};

/* One run: its JSON fields. NAN, printed as null, where a mode does not
   measure a figure or a setting does not apply. */
typedef struct result {
  double v[F_COUNT];
} result_t;

/*
 * The state of a throughput or latency run. Only the loop thread touches
 * it, except spin_iterations, which the workers read: it is set before the
 * first submit, and sits alone on its cache line so that the loop
 * thread's writes to the counters do not keep evicting it from theirs.
 */
typedef struct run {
  _Alignas(64) uint64_t spin_iterations;
  _Alignas(64) const config_t *cfg;
  uint64_t warmup; /* completions before the window opens */
  uint64_t total;  /* tasks to run: warmup + N */
  uint64_t submitted, completed;
  uint64_t trip_start_ns; /* latency: when the task in flight was sent */
  double *trips_us;       /* latency: the N round trips of the window */
  uint64_t window_start_ns, window_end_ns;
  double cpu_start_s, cpu_end_s;
  struct event_base *base; /* tpool */
  tpool_pool_t *pool;      /* tpool */
  uv_loop_t *loop;         /* libuv */
} run_t;

/* ------------------------------------------------------------------------
 * Errors, clocks, the spin and memory readings
 * ------------------------------------------------------------------------ */

/* Reports a failure and ends the process: in a child, the parent then
   reports the run as failed. */

static void check_tpool(int64_t rc, const char *what) {
  if (rc < 0)
    die(what, tpool_strerror((int)rc));
}

static void check_uv(int rc, const char *what) {
  if (rc < 0)
    die(what, uv_strerror(rc));
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* User plus system CPU time of the whole process, all threads. */
static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    continue;
}

/* The work: `iterations` steps of a counter that the compiler must keep in
   memory, so that the loop can be neither folded nor vectorised away. */
static void spin(uint64_t iterations) {
  for (volatile uint64_t i = 0; i < iterations; i++)
    continue;
}

/* Iterations of spin() per µs, the best of CALIBRATION_TRIALS trials.
   Short trials are more often left uninterrupted. */
static double calibrate(void) {
  uint64_t n = 1000;
  double best = 0.0;

  while (true) {
    uint64_t start = now_ns();
    spin(n);
    if (now_ns() - start >= CALIBRATION_TRIAL_NS)
      break;
    n *= 2;
  }
  for (int trial = 0; trial < CALIBRATION_TRIALS; trial++) {
    uint64_t start = now_ns();
    spin(n);
    double rate = (double)n * 1e3 / (double)(now_ns() - start);
    if (rate > best)
      best = rate;
  }
  return best;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v[0..n-1] and returns its median. */
static double median(double *v, size_t n) {
  qsort(v, n, sizeof(v[0]), compare_double);
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* How long one spin of `iterations` takes: the median of many, in µs. */
static double spin_duration_us(uint64_t iterations) {
  double samples[SPIN_CHECK_SAMPLES];

  for (int i = 0; i < SPIN_CHECK_SAMPLES; i++) {
    uint64_t start = now_ns();
    spin(iterations);
    samples[i] = (double)(now_ns() - start) / 1e3;
  }
  return median(samples, SPIN_CHECK_SAMPLES);
}

/* The machine's own ceiling for a throughput run: as many plain threads
   as there are CPUs (at most T) run the run's spins back to back, with no
   pool, no loop and no handoff. A sustained spin is slower than its short
   calibration on a shared virtual machine, so "cores / W" overstates what
   any implementation can reach; this says what it was at the time. */
typedef struct {
  uint64_t spins, iterations;
} ceiling_part_t;

static void *ceiling_thread(void *arg) {
  const ceiling_part_t *part = arg;
  for (uint64_t i = 0; i < part->spins; i++)
    spin(part->iterations);
  return NULL;
}

static double ceiling_tasks_per_s(const config_t *cfg) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned n = cpus > 0 && (unsigned long)cpus < cfg->threads ? (unsigned)cpus
                                                              : cfg->threads;
  pthread_t *th = xcalloc(n, sizeof(th[0]));
  ceiling_part_t part = {cfg->tasks / n, cfg->spin_iterations};
  uint64_t start = now_ns();
  for (unsigned i = 0; i < n; i++) {
    if (pthread_create(&th[i], NULL, ceiling_thread, &part) != 0)
      die("pthread_create", "failed");
  }
  for (unsigned i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  double secs = (double)(now_ns() - start) / 1e9;
  free(th);
  return (double)(part.spins * n) / secs;
}

typedef struct memory {
  unsigned long rss_kb, vsz_kb;
} memory_t;

/* VmRSS and VmSize of this process, from /proc/self/status. */
static memory_t memory_read(void) {
  memory_t mem = {0, 0};
  char line[256];
  int found = 0;
  FILE *f = fopen("/proc/self/status", "r");

  if (f == NULL)
    die("/proc/self/status", strerror(errno));
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "VmRSS: %lu kB", &mem.rss_kb) == 1 ||
        sscanf(line, "VmSize: %lu kB", &mem.vsz_kb) == 1)
      found++;
  }
  fclose(f);
  if (found != 2)
    die("/proc/self/status", "no VmRSS or VmSize");
  return mem;
}

/* Waits for the workers to settle, then fills the idle figures: the
   growth since `before`, per worker, and the totals. */
static void idle_result(const config_t *cfg, memory_t before, result_t *res) {
  sleep_ms(IDLE_SETTLE_MS);
  memory_t after = memory_read();
  res->v[F_RSS_KB] =
      ((double)after.rss_kb - (double)before.rss_kb) / cfg->threads;
  res->v[F_VSZ_KB] =
      ((double)after.vsz_kb - (double)before.vsz_kb) / cfg->threads;
  res->v[F_RSS_KB_TOTAL] = (double)after.rss_kb;
  res->v[F_VSZ_KB_TOTAL] = (double)after.vsz_kb;
}

/* ------------------------------------------------------------------------
 * A throughput or latency run, whichever the library
 * ------------------------------------------------------------------------ */

static void run_init(run_t *r, const config_t *cfg) {
  memset(r, 0, sizeof(*r));
  r->cfg = cfg;
  r->spin_iterations = cfg->spin_iterations;
  if (cfg->mode == MODE_LATENCY) {
    r->warmup = LATENCY_WARMUP_TRIPS;
    r->trips_us = xcalloc(cfg->tasks, sizeof(r->trips_us[0]));
  } else {
    r->warmup = cfg->tasks / 10;
  }
  r->total = r->warmup + cfg->tasks;
}

static void window_open(run_t *r, uint64_t now) {
  r->window_start_ns = now;
  r->cpu_start_s = cpu_seconds();
}

/* Called just before the first submit: opens the window now if there is no
   warm-up. Returns: how many tasks to submit before the loop runs, K (at
   most all of them), or one for latency. */
static uint64_t run_start(run_t *r) {
  if (r->warmup == 0)
    window_open(r, now_ns());
  if (r->cfg->mode == MODE_LATENCY)
    return 1;
  return r->cfg->inflight < r->total ? r->cfg->inflight : r->total;
}

/*
 * Records a completion; called first thing in the completion callback.
 * Returns: whether another task should be submitted in its place.
 * Thread: loop.
 */
static bool run_complete_one(run_t *r) {
  /* The clock is read only where a figure needs it: on every trip in
     latency mode (first thing, as the trip ends on entry to the callback),
     at the window's two edges in throughput mode. Both libraries' loops
     then spend the same, and little, on measuring themselves. */
  bool latency = r->cfg->mode == MODE_LATENCY;
  bool edge = r->completed + 1 == r->warmup || r->completed + 1 == r->total;
  uint64_t now = latency || edge ? now_ns() : 0;
  if (latency && r->completed >= r->warmup)
    r->trips_us[r->completed - r->warmup] =
        (double)(now - r->trip_start_ns) / 1e3;
  r->completed++;
  if (r->completed == r->warmup)
    window_open(r, now);
  if (r->completed == r->total) {
    r->window_end_ns = now;
    r->cpu_end_s = cpu_seconds();
  }
  return r->submitted < r->total;
}

/* Fills the figures of a finished run, and frees what it holds. */
static void run_finish(run_t *r, result_t *res) {
  double wall_s = (double)(r->window_end_ns - r->window_start_ns) / 1e9;
  size_t n = r->cfg->tasks;

  if (r->completed != r->total)
    die("loop", "returned before the last completion");
  res->v[F_CPU_PERCENT] = (r->cpu_end_s - r->cpu_start_s) / wall_s * 100.0;
  if (r->cfg->mode == MODE_THROUGHPUT) {
    res->v[F_TASKS_PER_S] = (double)n / wall_s;
  } else {
    /* Nearest rank: the smallest sample with at least a fraction p of all
       samples at or below it, in integer arithmetic. */
    qsort(r->trips_us, n, sizeof(r->trips_us[0]), compare_double);
    res->v[F_P50_US] = r->trips_us[(n * 500 + 999) / 1000 - 1];
    res->v[F_P99_US] = r->trips_us[(n * 990 + 999) / 1000 - 1];
    res->v[F_P999_US] = r->trips_us[(n * 999 + 999) / 1000 - 1];
  }
  free(r->trips_us);
}

/* ------------------------------------------------------------------------
 * tpool, set up as the README shows
 * ------------------------------------------------------------------------ */

static int tpool_work(void *arg) {
  const run_t *r = arg;
  spin(r->spin_iterations);
  return 0;
}

static void tpool_done(int status, const tpool_task_info_t *info, void *arg);

/* Marks the start of a trip, in latency mode (see run_complete_one()). */
static void trip_start(run_t *r) {
  if (r->cfg->mode == MODE_LATENCY)
    r->trip_start_ns = now_ns();
}

static void tpool_submit_one(run_t *r) {
  trip_start(r);
  check_tpool(tpool_submit(r->pool, POOL_NAME, tpool_work, tpool_done, r, NULL),
              "tpool_submit");
  r->submitted++;
}

static void tpool_done(int status, const tpool_task_info_t *info, void *arg) {
  run_t *r = arg;
  bool more = run_complete_one(r);

  (void)info;
  check_tpool(status, "tpool task");
  if (more)
    tpool_submit_one(r);
  else if (r->completed == r->total)
    event_base_loopexit(r->base, NULL);
}

/* Waits until all T workers of the pool exist and none is busy. */
static void tpool_wait_parked(tpool_manager_t *m, unsigned threads) {
  uint64_t deadline = now_ns() + IDLE_START_TIMEOUT_S * (uint64_t)1000000000;

  while (true) {
    tpool_stats_t *s;
    check_tpool(tpool_manager_stats(m, &s), "tpool_manager_stats");
    const tpool_pool_stats_t *ps = tpool_stats_pool(s, POOL_NAME);
    bool parked = ps != NULL && ps->current_workers == threads &&
                  ps->idle_workers == threads;
    tpool_stats_free(s);
    if (parked)
      return;
    if (now_ns() > deadline)
      die("waiting for the workers to start", tpool_strerror(-ETIMEDOUT));
    sleep_ms(1);
  }
}

/* One run of tpool: a manager with a single pool of T workers, attached to
   the event_base whose loop submits and completes. */
static void tpool_run(const config_t *cfg, result_t *res) {
  tpool_options_t o;
  tpool_pool_options_t *po;
  tpool_config_error_t err;
  tpool_manager_t *m;

  if (evthread_use_pthreads() != 0)
    die("evthread_use_pthreads", "failed");
  tpool_options_init(&o);
  o.verbose = false;
  o.log_level = TPOOL_LOG_WARN;
  for (size_t i = 0; i < o.npools; i++)
    o.pools[i].enabled = false; /* the five built-in pools */
  check_tpool(tpool_options_add_pool(&o, POOL_NAME, &po),
              "tpool_options_add_pool");
  po->max_workers = cfg->threads;
  po->min_workers = TPOOL_MIN_EQUALS_MAX;
  if (po->queue_limit < cfg->inflight)
    po->queue_limit = cfg->inflight;
  po->spin_s = cfg->spin_us / 1e6;
  if (tpool_options_check(&o, &err) != 0)
    die("tpool_options_check", err.text);

  struct event_base *base = event_base_new();
  if (base == NULL)
    die("event_base_new", "failed");
  check_tpool(tpool_manager_new(&o, &m), "tpool_manager_new");
  check_tpool(tpool_manager_attach(m, base), "tpool_manager_attach");
  memory_t before = memory_read();
  check_tpool(tpool_manager_start(m), "tpool_manager_start");

  if (cfg->mode == MODE_IDLE) {
    tpool_wait_parked(m, cfg->threads);
    idle_result(cfg, before, res);
  } else {
    run_t r;
    run_init(&r, cfg);
    r.base = base;
    r.pool = tpool_manager_pool(m, POOL_NAME);
    if (r.pool == NULL)
      die("tpool_manager_pool", "no pool \"" POOL_NAME "\"");
    uint64_t initial = run_start(&r);
    for (uint64_t i = 0; i < initial; i++)
      tpool_submit_one(&r);
    if (event_base_dispatch(base) != 0)
      die("event_base_dispatch", "failed");
    run_finish(&r, res);
  }

  check_tpool(tpool_manager_shutdown(m, 10.0), "tpool_manager_shutdown");
  tpool_manager_free(m);
  event_base_free(base);
}

/* ------------------------------------------------------------------------
 * libuv
 * ------------------------------------------------------------------------ */

static void libuv_work(uv_work_t *req) {
  const run_t *r = req->data;
  spin(r->spin_iterations);
}

static void libuv_after_work(uv_work_t *req, int status);

/* Queues `req`, a request that is new or whose task has completed. */
static void libuv_submit_one(run_t *r, uv_work_t *req) {
  req->data = r;
  trip_start(r);
  check_uv(uv_queue_work(r->loop, req, libuv_work, libuv_after_work),
           "uv_queue_work");
  r->submitted++;
}

static void libuv_after_work(uv_work_t *req, int status) {
  run_t *r = req->data;
  bool more = run_complete_one(r);

  check_uv(status, "libuv task");
  if (more)
    libuv_submit_one(r, req);
}

static void libuv_noop(uv_work_t *req) {
  (void)req;
}

static void libuv_noop_done(uv_work_t *req, int status) {
  check_uv(status, "libuv task");
  *(bool *)req->data = true;
}

/* One run of libuv on a private loop. uv_run() returns once no request is
   pending, so after the last completion. */
static void libuv_run(const config_t *cfg, result_t *res) {
  uv_loop_t loop;

  check_uv(uv_loop_init(&loop), "uv_loop_init");
  if (cfg->mode == MODE_IDLE) {
    /* libuv starts all of its threads at the first uv_queue_work() and
       waits until each one runs; after one no-op task all are parked. */
    memory_t before = memory_read();
    bool done = false;
    uv_work_t req = {.data = &done};
    check_uv(uv_queue_work(&loop, &req, libuv_noop, libuv_noop_done),
             "uv_queue_work");
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!done)
      die("uv_run", "returned before the completion");
    idle_result(cfg, before, res);
  } else {
    run_t r;
    run_init(&r, cfg);
    r.loop = &loop;
    uv_work_t *reqs = xcalloc(cfg->inflight, sizeof(reqs[0]));
    uint64_t initial = run_start(&r);
    for (uint64_t i = 0; i < initial; i++)
      libuv_submit_one(&r, &reqs[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    run_finish(&r, res);
    free(reqs);
  }
  check_uv(uv_loop_close(&loop), "uv_loop_close");
}

/* ------------------------------------------------------------------------
 * One run in a child process, and its JSON line
 * ------------------------------------------------------------------------ */

/* Writes a run's JSON line to `out`. */
static void write_json(FILE *out, impl_t impl, bench_mode_t mode,
                       const result_t *res) {
  fprintf(out, "{\"impl\":\"%s\",\"mode\":\"%s\"", impl_names[impl],
          mode_names[mode]);
  for (field_t f = 0; f < F_COUNT; f++) {
    if (isnan(res->v[f]))
      fprintf(out, ",\"%s\":null", fields[f].key);
    else if (fields[f].decimals < 0)
      fprintf(out, ",\"%s\":%g", fields[f].key, res->v[f]);
    else
      fprintf(out, ",\"%s\":%.*f", fields[f].key, fields[f].decimals,
              res->v[f]);
  }
  fputs("}\n", out);
}

/* The child's whole life: runs `impl` once and writes its line to `fd`. */
_Noreturn static void child_main(const config_t *cfg, impl_t impl, unsigned run,
                                 int fd) {
  bool tasks_run = cfg->mode != MODE_IDLE;
  result_t res;

  for (field_t f = 0; f < F_COUNT; f++)
    res.v[f] = NAN;
  res.v[F_THREADS] = cfg->threads;
  res.v[F_TASKS] = tasks_run ? (double)cfg->tasks : NAN;
  res.v[F_WORK_US] = tasks_run ? cfg->work_us : NAN;
  if (cfg->mode == MODE_THROUGHPUT)
    res.v[F_INFLIGHT] = cfg->inflight;
  else if (cfg->mode == MODE_LATENCY)
    res.v[F_INFLIGHT] = 1;
  res.v[F_RUN] = run;

  if (impl == IMPL_TPOOL) {
    res.v[F_SPIN_US] = cfg->spin_us;
    tpool_run(cfg, &res);
  } else {
    char size[16];
    snprintf(size, sizeof(size), "%u", cfg->threads);
    setenv("UV_THREADPOOL_SIZE", size, 1);
    libuv_run(cfg, &res);
  }

  FILE *out = fdopen(fd, "w");
  if (out == NULL)
    die("fdopen", strerror(errno));
  write_json(out, impl, cfg->mode, &res);
  if (fclose(out) != 0)
    die("write to the parent", strerror(errno));
  exit(0);
}

/* The value of "key" in a line of write_json(); NAN if null or absent. */
static double json_value(const char *line, const char *key) {
  char pattern[64];

  snprintf(pattern, sizeof(pattern), "\"%s\":", key);
  const char *at = strstr(line, pattern);
  if (at == NULL || strncmp(at + strlen(pattern), "null", 4) == 0)
    return NAN;
  return strtod(at + strlen(pattern), NULL);
}

/* Runs `impl` once in a fresh child, prints its JSON line and reads the
   figures back from it into *res. */
static void run_child(const config_t *cfg, impl_t impl, unsigned run,
                      result_t *res) {
  char line[JSON_LINE_MAX];
  int fds[2], status;

  if (pipe(fds) != 0)
    die("pipe", strerror(errno));
  fflush(NULL); /* or the child would write the parent's buffers again */
  pid_t pid = fork();
  if (pid < 0)
    die("fork", strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    child_main(cfg, impl, run, fds[1]);
  }

  close(fds[1]);
  FILE *in = fdopen(fds[0], "r");
  if (in == NULL)
    die("fdopen", strerror(errno));
  if (fgets(line, sizeof(line), in) == NULL)
    line[0] = '\0';
  fclose(in);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    continue;

  if (WIFSIGNALED(status)) {
    fprintf(stderr, "tpool-bench: %s run %u killed: %s\n", impl_names[impl],
            run, strsignal(WTERMSIG(status)));
    exit(1);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      strchr(line, '\n') == NULL) {
    fprintf(stderr, "tpool-bench: %s run %u failed\n", impl_names[impl], run);
    exit(1);
  }
  fputs(line, stdout);
  fflush(stdout);
  for (field_t f = 0; f < F_COUNT; f++)
    res->v[f] = json_value(line, fields[f].key);
}

/* ------------------------------------------------------------------------
 * The closing table
 * ------------------------------------------------------------------------ */

/* A row of the table: a figure, its label and its decimals. */
typedef struct row {
  field_t field;
  const char *label;
  int decimals;
} row_t;

static const row_t throughput_rows[] = {
    {F_TASKS_PER_S, "tasks/s (higher is better)", 0},
    {F_CPU_PERCENT, "CPU % (200 = 2 cores busy)", 0},
};
static const row_t latency_rows[] = {
    {F_P50_US, "p50 µs (lower is better)", 1},
    {F_P99_US, "p99 µs (lower is better)", 1},
    {F_P999_US, "p99.9 µs (lower is better)", 1},
    {F_CPU_PERCENT, "CPU % (200 = 2 cores busy)", 0},
};
static const row_t idle_rows[] = {
    {F_RSS_KB, "RSS KiB per worker (lower is better)", 1},
    {F_VSZ_KB, "VSZ KiB per worker (lower is better)", 1},
};

/* Prints " median (min–max) |" of a row's figure over one library's runs. */
static void print_summary(const result_t *runs, unsigned n, const row_t *row,
                          double *scratch) {
  for (unsigned i = 0; i < n; i++)
    scratch[i] = runs[i].v[row->field];
  double mid = median(scratch, n);
  printf(" %.*f (%.*f–%.*f) |", row->decimals, mid, row->decimals, scratch[0],
         row->decimals, scratch[n - 1]);
}

/* Prints the configuration and a Markdown table of the runs' figures. */
static void print_table(const config_t *cfg, result_t *const results[]) {
  bool both = cfg->run_impl[IMPL_TPOOL] && cfg->run_impl[IMPL_LIBUV];
  double *scratch = xcalloc(cfg->pairs, sizeof(scratch[0]));
  const row_t *rows = throughput_rows;
  size_t nrows = COUNT_OF(throughput_rows);

  if (cfg->mode == MODE_LATENCY) {
    rows = latency_rows;
    nrows = COUNT_OF(latency_rows);
  } else if (cfg->mode == MODE_IDLE) {
    rows = idle_rows;
    nrows = COUNT_OF(idle_rows);
  }

  printf("\nmode %s, %u threads", mode_names[cfg->mode], cfg->threads);
  if (cfg->mode != MODE_IDLE)
    printf(", %lu tasks, work %g µs", cfg->tasks, cfg->work_us);
  if (cfg->mode == MODE_THROUGHPUT)
    printf(", %u in flight", cfg->inflight);
  printf(", tpool spin %g µs, runs of each: %u; calibrated: %.1f iterations "
         "per µs (a %g µs spin takes %.2f µs)\n\n",
         cfg->spin_us, cfg->pairs, cfg->iterations_per_us,
         cfg->work_us > 0 ? cfg->work_us : 10.0, cfg->spin_check_us);
  printf("| metric |");
  for (impl_t impl = 0; impl < IMPL_COUNT; impl++) {
    if (cfg->run_impl[impl])
      printf(" %s median (min–max) |", impl_names[impl]);
  }
  printf(both ? " ratio tpool/libuv (median of pairs) |\n|---|---|---|---|\n"
              : "\n|---|---|\n");

  for (size_t r = 0; r < nrows; r++) {
    printf("| %s |", rows[r].label);
    for (impl_t impl = 0; impl < IMPL_COUNT; impl++) {
      if (cfg->run_impl[impl])
        print_summary(results[impl], cfg->pairs, &rows[r], scratch);
    }
    if (both) {
      for (unsigned i = 0; i < cfg->pairs; i++)
        scratch[i] = results[IMPL_TPOOL][i].v[rows[r].field] /
                     results[IMPL_LIBUV][i].v[rows[r].field];
      printf(" %.2f |", median(scratch, cfg->pairs));
    }
    printf("\n");
  }
  free(scratch);
}

/* ------------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------------ */

static const char usage_text[] =
    "usage: tpool-bench [options]\n"
    "Compares tpool_submit() with libuv's uv_queue_work(), each run in a\n"
    "fresh process; prints one JSON line per run, then a Markdown table.\n"
    "  --impl tpool|libuv|both  (default both: alternate, tpool first)\n"
    "  --mode throughput|latency|idle  (default throughput)\n"
    "  --threads T   pool threads (default 2; 64 in idle mode)\n"
    "  --tasks N     timed tasks, after N/10 warm-up (default 1000000);\n"
    "                latency: trips, after 1000 warm-up (default 100000)\n"
    "  --work-us W   CPU spin per task in µs (default 0: empty task)\n"
    "  --inflight K  tasks in flight in throughput mode (default 1024)\n"
    "  --pairs P     runs of each library (default 5)\n"
    "  --spin-us S   tpool's spin_s in µs (default 0; libuv has none)\n"
    "  --json-only   the JSON lines only, no table\n"
    "  --help        this text\n";

_Noreturn static void bad_usage(const char *fmt, ...) TPOOL_PRINTF(1, 2);

_Noreturn static void bad_usage(const char *fmt, ...) {
  va_list ap;

  fputs("tpool-bench: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\nTry 'tpool-bench --help'.\n", stderr);
  exit(2);
}

static unsigned long parse_count(const char *flag, const char *text,
                                 unsigned long min, unsigned long max) {
  char *end;

  errno = 0;
  unsigned long v = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min ||
      v > max)
    bad_usage("--%s: expected a whole number from %lu to %lu, got \"%s\"", flag,
              min, max, text);
  return v;
}

static double parse_us(const char *flag, const char *text) {
  char *end;

  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(v >= 0 && v <= 1e6))
    bad_usage("--%s: expected microseconds from 0 to 1000000, got \"%s\"", flag,
              text);
  return v;
}

/* The index of `text` among the three `names`; anything else ends the
   program. */
static unsigned parse_word(const char *flag, const char *text,
                           const char *const names[3]) {
  for (unsigned i = 0; i < 3; i++) {
    if (strcmp(text, names[i]) == 0)
      return i;
  }
  bad_usage("--%s: expected %s, %s or %s, got \"%s\"", flag, names[0], names[1],
            names[2], text);
}

static void parse_args(int argc, char **argv, config_t *cfg) {
  /* In the order of impl_t, then "both". */
  static const char *const impl_words[] = {"tpool", "libuv", "both"};
  static const struct option options[] = {
      {"impl", required_argument, NULL, 'i'},
      {"mode", required_argument, NULL, 'm'},
      {"threads", required_argument, NULL, 't'},
      {"tasks", required_argument, NULL, 'n'},
      {"work-us", required_argument, NULL, 'w'},
      {"inflight", required_argument, NULL, 'k'},
      {"pairs", required_argument, NULL, 'p'},
      {"spin-us", required_argument, NULL, 's'},
      {"json-only", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  unsigned impl = IMPL_COUNT; /* both */
  int opt;

  memset(cfg, 0, sizeof(*cfg));
  cfg->inflight = 1024;
  cfg->pairs = 5;
  while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
    switch (opt) {
    case 'i':
      impl = parse_word("impl", optarg, impl_words);
      break;
    case 'm':
      cfg->mode = (bench_mode_t)parse_word("mode", optarg, mode_names);
      break;
    case 't':
      cfg->threads = (unsigned)parse_count("threads", optarg, 1, THREADS_MAX);
      break;
    case 'n':
      cfg->tasks = parse_count("tasks", optarg, 1, TASKS_MAX);
      break;
    case 'w':
      cfg->work_us = parse_us("work-us", optarg);
      break;
    case 'k':
      cfg->inflight = (unsigned)parse_count("inflight", optarg, 1, 1000000);
      break;
    case 'p':
      cfg->pairs = (unsigned)parse_count("pairs", optarg, 1, 1000);
      break;
    case 's':
      cfg->spin_us = parse_us("spin-us", optarg);
      break;
    case 'j':
      cfg->json_only = true;
      break;
    case 'h':
      fputs(usage_text, stdout);
      exit(0);
    default: /* getopt_long() has already named the flag */
      fputs("Try 'tpool-bench --help'.\n", stderr);
      exit(2);
    }
  }
  if (optind < argc)
    bad_usage("unexpected argument \"%s\"", argv[optind]);
  cfg->run_impl[IMPL_TPOOL] = impl != IMPL_LIBUV;
  cfg->run_impl[IMPL_LIBUV] = impl != IMPL_TPOOL;
  if (cfg->threads == 0)
    cfg->threads = cfg->mode == MODE_IDLE ? 64 : 2;
  if (cfg->tasks == 0)
    cfg->tasks = cfg->mode == MODE_LATENCY ? 100000 : 1000000;
}

int main(int argc, char **argv) {
  result_t *results[IMPL_COUNT];
  config_t cfg;

  parse_args(argc, argv, &cfg);
  cfg.iterations_per_us = calibrate();
  cfg.spin_iterations = (uint64_t)llround(cfg.work_us * cfg.iterations_per_us);
  cfg.spin_check_us = spin_duration_us(
      cfg.work_us > 0 ? cfg.spin_iterations
                      : (uint64_t)llround(10.0 * cfg.iterations_per_us));

  for (impl_t impl = 0; impl < IMPL_COUNT; impl++)
    results[impl] = xcalloc(cfg.pairs, sizeof(result_t));
  for (unsigned i = 0; i < cfg.pairs; i++) {
    for (impl_t impl = 0; impl < IMPL_COUNT; impl++) {
      if (cfg.run_impl[impl])
        run_child(&cfg, impl, i, &results[impl][i]);
    }
  }
  if (!cfg.json_only) {
    print_table(&cfg, results);
    if (cfg.mode == MODE_THROUGHPUT && cfg.work_us > 0)
      printf("\nceiling now: %.0f tasks/s (the same spins on plain threads, "
             "one per CPU, no pool)\n",
             ceiling_tasks_per_s(&cfg));
  }
  for (impl_t impl = 0; impl < IMPL_COUNT; impl++)
    free(results[impl]);
  return 0;
}
