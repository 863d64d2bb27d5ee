/*
 * monitors.c — tpool-monitors, the monitors' question, measured: N
 * monitors each do a small job every second over a long-lived TCP
 * connection to a local server. Is it cheaper to run them as a process
 * each, a thread each, or a tpool schedule each on a small pool?
 *
 * The job: send a 16-byte request, read the 16-byte echo, check it, then
 * spin a few µs of CPU (--work-us, 5 by default). The server is a
 * single-threaded epoll echo server in a child process of its own, on
 * 127.0.0.1 and a port the kernel picks; it counts its open connections
 * in a page shared with the bench.
 *
 * The three ways, each run in fresh processes forked from the bench:
 *  (a) process: N children, each with its connection and a loop that
 *      sleeps until its next tick (clock_nanosleep, absolute).
 *  (b) thread: one child with N pthreads (default attributes), each with
 *      its connection and the same loop.
 *  (c) tpool: one child with one libevent loop and a pool of W workers
 *      (--workers, 4 by default); N schedules (every_s 1, jitter 0,
 *      overlap skip) submit the job to the pool; each worker holds one
 *      connection, opened in the pool's thread_start hook and closed in
 *      thread_stop, which the job finds with tpool_thread_context().
 * Forked children share the bench's pages copy-on-write, as preforked
 * workers do: (a) is the best case for a process each (a program started
 * on its own per monitor would cost more).
 *
 * Timing. (a) and (b) tick on one grid, t0 + k seconds, t0 set by the
 * bench: their runs fall due together. (c)'s schedules are made one after
 * the other, in a few ms; with jitter 0 each runs on its own grid (its
 * creation + k seconds), so they fall due together too. Lateness is
 * measured alike in all three: CLOCK_MONOTONIC read at the start of the
 * job (before the request is sent) minus the run's planned time: the tick
 * the monitor slept until in (a) and (b); in (c) the schedule's creation
 * time (read just before tpool_schedule_new()) plus the nearest whole
 * number of seconds, which the job works out from the clock. "done" is
 * the same for the job's end, when the monitor has its answer: the fair
 * comparison, as (a) and (b) start all N jobs at once and share the CPUs
 * among them, while (c) starts them W at a time. tpool's own lateness
 * histograms (tpool_manager_schedules()) are printed after the table as a
 * cross-check, with the average wait of (c)'s runs in the pool's queue.
 *
 * Measuring. After a warm-up (--warmup), a window of --duration seconds
 * opens half-way between two ticks of the (a)/(b) grid. Runs planned in
 * the window are kept (exactly, as floats, in the monitor) and sent to the
 * bench through a pipe at the end. At the window's two ends the bench
 * reads the CPU time of every process of the way (CPU % = CPU seconds /
 * wall seconds x 100: 100 = one core busy) twice: the time on a CPU of
 * each of its threads, in ns, from /proc/PID/task/TID/schedstat (the
 * table's figure), and utime + stime from /proc/PID/stat, which counts
 * whole clock ticks (10 ms) and so stays at 0 for a process that has used
 * less than one: (a)'s monitors do. At the window's end it also reads Pss
 * from /proc/PID/smaps_rollup, and Threads and VmPTE (page tables, which
 * the PSS leaves out) from /proc/PID/status, summed over the way's
 * processes (the bench and the server excluded), and the server's count
 * of open connections. The monitors keep running until the readings are
 * done, then stop by themselves. Every child dies with the bench
 * (PR_SET_PDEATHSIG), and an alarm bounds the whole run.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <tpool.h>
#include <unistd.h>

#define BENCH_NAME "tpool-monitors"
#include "bench_util.h"

#define MSG_LEN 16           /* bytes of a request, and of its reply */
#define NS_MAX 8             /* values of --n */
#define MONITORS_MAX 4000u   /* under TPOOL_SCHEDULES_MAX */
#define DURATION_MAX_S 500.0 /* a monitor's samples fit one record */
#define TAIL_S 1.5           /* after the window, before the monitors stop */
#define POOL_NAME "monitors"
#define RECORD_SAMPLES                                                         \
  ((PIPE_BUF - sizeof(record_head_t)) / sizeof(float)) /* one atomic write */

typedef enum way { WAY_PROCESS, WAY_THREAD, WAY_TPOOL, WAY_COUNT } way_t;
static const char *const way_names[WAY_COUNT] = {"process", "thread", "tpool"};

typedef struct config {
  unsigned ns[NS_MAX];
  size_t nn;
  bool ways[WAY_COUNT];
  unsigned workers;
  double warmup_s, duration_s, work_us;
} config_t;

/* What the children of one run share with the bench, set before the
   fork. Times are CLOCK_MONOTONIC seconds. */
typedef struct plan {
  way_t way;
  unsigned n;
  unsigned workers;
  double work_us;
  double t0;     /* origin of the (a)/(b) grid */
  double m0, m1; /* the measured window: runs planned in [m0, m1) */
  double stop;   /* the monitors stop then */
  unsigned samples_max;
  struct sockaddr_in addr;
  int out_fd; /* write end of the pipe to the bench */
} plan_t;

/* One monitor: its connection ((a), (b)), its grid ((c)) and the lateness
   of its runs in the window, in µs. */
typedef struct monitor {
  const plan_t *plan;
  unsigned id;
  int fd;
  uint32_t seq;
  double grid0;
  unsigned nsamples;
  /* Per run in the window, µs after its planned time: its start, then
     its end. 2 * plan->samples_max. */
  float *lateness_us;
} monitor_t;

/* A message on the pipe, one write(2) of at most PIPE_BUF bytes. */
typedef enum record_type { REC_SAMPLES, REC_TPOOL_STATS } record_type_t;
typedef struct record_head {
  uint32_t type;
  uint32_t n; /* floats that follow */
} record_head_t;

/* REC_TPOOL_STATS fields. */
enum {
  TS_RUNS,
  TS_SKIPPED,
  TS_FAILED,
  TS_MEAN_MS,
  TS_MAX_MS,
  TS_P99_MS,
  TS_WAIT_MEAN_MS, /* queue wait of the runs that ended in the window */
  TS_WAIT_MAX_MS,
  TS_N
};

/* The server's count, in a page shared with the bench. */
typedef struct shared {
  atomic_long open_connections;
} shared_t;

/* One row of the table. */
typedef struct row {
  way_t way;
  unsigned n;
  bool ok;
  unsigned processes;
  double pss_kib;
  double pte_kib; /* page tables, outside the PSS */
  unsigned long threads;
  double cpu_percent;      /* schedstat */
  double cpu_stat_percent; /* utime + stime */
  long connections;
  size_t runs, planned;
  double p50_ms, p99_ms;         /* of the runs' starts */
  double end_p50_ms, end_p99_ms; /* of their ends */
  bool has_tpool_stats;
  float tpool_stats[TS_N];
} row_t;

static shared_t *shared;

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
    ;
}

/* A child ends with the bench, whatever way the bench ends. */
static void die_with_parent(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(1);
}

static void raise_fd_limit(rlim_t needed) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= needed)
    return;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < needed)
    die("RLIMIT_NOFILE", "the hard limit is below the descriptors needed");
  rl.rlim_cur = needed;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    die("setrlimit(RLIMIT_NOFILE)", strerror(errno));
}

/* ------------------------------------------------------------------------
 * The server: an epoll echo server that counts its open connections
 * ------------------------------------------------------------------------ */

static void server_close(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  atomic_fetch_sub(&shared->open_connections, 1);
}

_Noreturn static void server_main(int lfd) {
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  struct epoll_event evs[256];
  char buf[4096];
  int ep = epoll_create1(EPOLL_CLOEXEC);

  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
    die("server: epoll", strerror(errno));
  for (;;) {
    int n = epoll_wait(ep, evs, (int)(sizeof evs / sizeof evs[0]), -1);
    if (n < 0 && errno != EINTR)
      die("server: epoll_wait", strerror(errno));
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
               0) {
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0)
            die("server: epoll_ctl", strerror(errno));
          atomic_fetch_add(&shared->open_connections, 1);
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
            errno != ECONNABORTED)
          die("server: accept", strerror(errno));
        continue;
      }
      ssize_t got = recv(fd, buf, sizeof buf, 0);
      if (got > 0) {
        /* A reply of 16 bytes always fits the socket's send buffer. */
        if (send(fd, buf, (size_t)got, MSG_NOSIGNAL) != got)
          server_close(ep, fd);
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        server_close(ep, fd);
      }
    }
  }
}

/* Listens on 127.0.0.1, a port the kernel picks, and forks the server. */
static pid_t server_start(struct sockaddr_in *addr) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  socklen_t len = sizeof *addr;
  pid_t parent = getpid();

  memset(addr, 0, sizeof *addr);
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr->sin_port = 0;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)addr, sizeof *addr) != 0 ||
      listen(lfd, 4096) != 0 ||
      getsockname(lfd, (struct sockaddr *)addr, &len) != 0)
    die("server: listen on 127.0.0.1", strerror(errno));
  pid_t pid = fork();
  if (pid < 0)
    die("fork", strerror(errno));
  if (pid == 0) {
    die_with_parent(parent);
    server_main(lfd);
  }
  close(lfd);
  return pid;
}

/* ------------------------------------------------------------------------
 * The monitors' job
 * ------------------------------------------------------------------------ */

static int connect_server(const struct sockaddr_in *addr) {
  int one = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

static void spin_us(double us) {
  double end = mono_now() + us / 1e6;
  while (mono_now() < end)
    ;
}

/* The small job: a request, its echo, a few µs of CPU. 0 or -errno. */
static int job(int fd, uint32_t *seq, double work_us) {
  char req[MSG_LEN], rep[MSG_LEN];
  size_t got = 0;

  snprintf(req, sizeof req, "ping %010u", (unsigned)++*seq);
  if (send(fd, req, MSG_LEN, MSG_NOSIGNAL) != MSG_LEN)
    return -EIO;
  while (got < MSG_LEN) {
    ssize_t r = recv(fd, rep + got, MSG_LEN - got, 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR)
        continue;
      return -EIO;
    }
    got += (size_t)r;
  }
  if (memcmp(req, rep, MSG_LEN) != 0)
    return -EIO;
  spin_us(work_us);
  return 0;
}

static void monitor_record(monitor_t *m, double planned, double started,
                           double ended) {
  const plan_t *p = m->plan;
  if (planned >= p->m0 && planned < p->m1 && m->nsamples < p->samples_max) {
    m->lateness_us[2 * m->nsamples] = (float)((started - planned) * 1e6);
    m->lateness_us[2 * m->nsamples + 1] = (float)((ended - planned) * 1e6);
    m->nsamples++;
  }
}

/* Sends a monitor's samples to the bench: one atomic write. */
static void monitor_report(const monitor_t *m) {
  char buf[PIPE_BUF];
  record_head_t h = {REC_SAMPLES, 2 * m->nsamples};
  size_t len = sizeof h + h.n * sizeof(float);

  memcpy(buf, &h, sizeof h);
  memcpy(buf + sizeof h, m->lateness_us, h.n * sizeof(float));
  if (write(m->plan->out_fd, buf, len) != (ssize_t)len)
    die("write to the bench", strerror(errno));
}

static void monitor_init(monitor_t *m, const plan_t *p, unsigned id) {
  memset(m, 0, sizeof *m);
  m->plan = p;
  m->id = id;
  m->fd = -1;
  m->lateness_us = xcalloc(2 * (size_t)p->samples_max, sizeof(float));
}

/* (a) and (b): connect, then sleep until each tick of the grid and run the
   job, until the window has passed. A tick missed while a job ran late is
   skipped, as a schedule skips it. */
static void monitor_loop(monitor_t *m) {
  const plan_t *p = m->plan;
  int fd = connect_server(&p->addr);

  if (fd < 0)
    die("connect", strerror(-fd));
  m->fd = fd;
  double planned = p->t0 + fmax(0.0, ceil(mono_now() - p->t0));
  while (planned < p->m1) {
    sleep_until(planned);
    double started = mono_now();
    int rc = job(fd, &m->seq, p->work_us);
    if (rc != 0)
      die("job", strerror(-rc));
    monitor_record(m, planned, started, mono_now());
    planned += 1.0;
    double now = mono_now();
    if (planned < now)
      planned = p->t0 + ceil(now - p->t0);
  }
  sleep_until(p->stop);
}

/* ------------------------------------------------------------------------
 * (a) a process each, (b) a thread each
 * ------------------------------------------------------------------------ */

_Noreturn static void process_monitor_main(const plan_t *p, unsigned id) {
  monitor_t m;
  monitor_init(&m, p, id);
  monitor_loop(&m);
  monitor_report(&m);
  close(m.fd);
  _exit(0);
}

static void *thread_monitor_main(void *arg) {
  monitor_loop(arg);
  return NULL;
}

_Noreturn static void thread_way_main(const plan_t *p) {
  monitor_t *ms = xcalloc(p->n, sizeof *ms);
  pthread_t *ts = xcalloc(p->n, sizeof *ts);

  for (unsigned i = 0; i < p->n; i++) {
    monitor_init(&ms[i], p, i);
    int rc = pthread_create(&ts[i], NULL, thread_monitor_main, &ms[i]);
    if (rc != 0)
      die("pthread_create", strerror(rc));
  }
  for (unsigned i = 0; i < p->n; i++) {
    pthread_join(ts[i], NULL);
    monitor_report(&ms[i]);
    close(ms[i].fd);
  }
  _exit(0);
}

/* ------------------------------------------------------------------------
 * (c) tpool: N schedules on a pool of W workers, a connection per worker
 * ------------------------------------------------------------------------ */

typedef struct worker_conn {
  int fd;
  uint32_t seq;
} worker_conn_t;

static int conn_open(const char *pool, void **ctx, void *arg) {
  const plan_t *p = arg;
  (void)pool;
  int fd = connect_server(&p->addr);
  if (fd < 0)
    return fd;
  worker_conn_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    return -ENOMEM;
  }
  c->fd = fd;
  *ctx = c;
  return 0;
}

static void conn_close(const char *pool, void *ctx, void *arg) {
  worker_conn_t *c = ctx;
  (void)pool;
  (void)arg;
  if (c != NULL) {
    close(c->fd);
    free(c);
  }
}

static int schedule_work(void *arg) {
  monitor_t *m = arg;
  double started = mono_now();
  worker_conn_t *c = tpool_thread_context();

  if (c == NULL)
    return -EIO;
  /* The planned time: the nearest grid point (tpool's timer may read a
     coarser clock and fire a hair early; a run more than half a second
     late would be counted a second early). */
  double planned = m->grid0 + floor(started - m->grid0 + 0.5);
  int rc = job(c->fd, &c->seq, m->plan->work_us);
  monitor_record(m, planned, started, mono_now());
  return rc;
}

/* The queue waits of the runs that ended in the window: the part of the
   lateness spent in the pool's queue. Loop thread only. */
static double wait_sum_s, wait_max_s;
static size_t nwaits;

static void schedule_done(int status, const tpool_task_info_t *info,
                          void *arg) {
  const monitor_t *m = arg;
  double now = mono_now();
  (void)status;
  if (now >= m->plan->m0 && now < m->plan->m1) {
    nwaits++;
    wait_sum_s += info->queue_wait_s;
    wait_max_s = fmax(wait_max_s, info->queue_wait_s);
  }
}

static void tpool_check(int rc, const char *what) {
  if (rc < 0)
    die(what, tpool_strerror(rc));
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* tpool's own view of the schedules' lateness, for the cross-check. */
static void tpool_report_stats(tpool_manager_t *mgr, const plan_t *p) {
  tpool_schedule_stats_t *ss;
  size_t n;
  float v[TS_N] = {0};
  double sum = 0, count = 0, max = 0;

  tpool_check(tpool_manager_schedules(mgr, &ss, &n), "tpool_manager_schedules");
  double *p99 = xcalloc(n + 1, sizeof *p99);
  for (size_t i = 0; i < n; i++) {
    v[TS_RUNS] += (float)ss[i].runs;
    v[TS_SKIPPED] += (float)ss[i].skipped;
    v[TS_FAILED] += (float)ss[i].failed;
    sum += ss[i].lateness.sum_s;
    count += (double)ss[i].lateness.count;
    max = fmax(max, ss[i].lateness.max_s);
    p99[i] = ss[i].lateness.p99_s;
  }
  qsort(p99, n, sizeof *p99, cmp_double);
  v[TS_MEAN_MS] = count > 0 ? (float)(sum / count * 1e3) : 0;
  v[TS_MAX_MS] = (float)(max * 1e3);
  v[TS_P99_MS] = n > 0 ? (float)(p99[n / 2] * 1e3) : 0;
  free(p99);
  free(ss);
  v[TS_WAIT_MEAN_MS] = nwaits > 0 ? (float)(wait_sum_s / nwaits * 1e3) : 0;
  v[TS_WAIT_MAX_MS] = (float)(wait_max_s * 1e3);

  char buf[sizeof(record_head_t) + sizeof v];
  record_head_t h = {REC_TPOOL_STATS, TS_N};
  memcpy(buf, &h, sizeof h);
  memcpy(buf + sizeof h, v, sizeof v);
  if (write(p->out_fd, buf, sizeof buf) != (ssize_t)sizeof buf)
    die("write to the bench", strerror(errno));
}

_Noreturn static void tpool_way_main(const plan_t *p) {
  tpool_options_t o;
  tpool_pool_options_t *po;
  tpool_config_error_t err;
  tpool_manager_t *mgr;
  monitor_t *ms = xcalloc(p->n, sizeof *ms);

  if (evthread_use_pthreads() != 0)
    die("evthread_use_pthreads", "failed");
  tpool_options_init(&o);
  o.verbose = false;
  o.log_level = TPOOL_LOG_WARN;
  for (size_t i = 0; i < o.npools; i++)
    o.pools[i].enabled = false; /* the built-in pools */
  tpool_check(tpool_options_add_pool(&o, POOL_NAME, &po),
              "tpool_options_add_pool");
  po->max_workers = p->workers;
  po->min_workers = TPOOL_MIN_EQUALS_MAX;
  if (po->queue_limit < p->n)
    po->queue_limit = p->n;
  po->thread_start = conn_open;
  po->thread_stop = conn_close;
  po->thread_arg = (void *)p;
  if (tpool_options_check(&o, &err) != 0)
    die("tpool_options_check", err.text);

  /* The precise monotonic clock, as tpool-server's loops use: libevent's
     default on Linux ticks in about 4 ms, which the schedules' runs would
     start late by (docs/api.md, "Schedules"). */
  struct event_config *cfg = event_config_new();
  if (cfg == NULL ||
      event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) != 0)
    die("event_config", "failed");
  struct event_base *base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (base == NULL)
    die("event_base_new", "failed");
  tpool_check(tpool_manager_new(&o, &mgr), "tpool_manager_new");
  tpool_check(tpool_manager_attach(mgr, base), "tpool_manager_attach");
  tpool_check(tpool_manager_start(mgr), "tpool_manager_start");
  tpool_pool_t *pool = tpool_manager_pool(mgr, POOL_NAME);
  if (pool == NULL)
    die("tpool_manager_pool", "no pool");

  for (unsigned i = 0; i < p->n; i++) {
    tpool_schedule_opts_t so;
    char name[TPOOL_NAME_MAX];

    monitor_init(&ms[i], p, i);
    tpool_schedule_opts_init(&so);
    so.base = base;
    so.every_s = 1.0;
    so.jitter = 0.0;
    snprintf(name, sizeof name, "monitor-%u", i);
    ms[i].grid0 = mono_now();
    tpool_check(tpool_schedule_new(mgr, name, pool, NULL, schedule_work,
                                   schedule_done, NULL, &ms[i], &so, NULL),
                "tpool_schedule_new");
  }

  double left = p->stop - mono_now();
  struct timeval tv = {(time_t)left, (suseconds_t)((left - floor(left)) * 1e6)};
  if (left > 0)
    event_base_loopexit(base, &tv);
  if (left > 0 && event_base_dispatch(base) < 0)
    die("event_base_dispatch", "failed");

  tpool_report_stats(mgr, p);
  tpool_check(tpool_manager_shutdown(mgr, 5.0), "tpool_manager_shutdown");
  tpool_manager_free(mgr);
  event_base_free(base);
  for (unsigned i = 0; i < p->n; i++)
    monitor_report(&ms[i]);
  _exit(0);
}

/* ------------------------------------------------------------------------
 * Readings from /proc
 * ------------------------------------------------------------------------ */

/* utime + stime of a process, all its threads, in seconds; -1 if gone. */
static double proc_cpu_s(pid_t pid) {
  char path[64], buf[1024];
  unsigned long ut, st;

  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = '\0';
  const char *s = strrchr(buf, ')');
  if (s == NULL || sscanf(s + 1,
                          " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                          "%lu %lu",
                          &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The number after `key` in a /proc file of "Key: value" lines; -1. */
static double proc_field(pid_t pid, const char *file, const char *key) {
  char path[64], line[256];
  size_t klen = strlen(key);
  double v = -1;

  snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, file);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, key, klen) == 0) {
      v = strtod(line + klen, NULL);
      break;
    }
  fclose(f);
  return v;
}

/* Time on a CPU of every thread of a process, in seconds, from the
   first field of /proc/PID/task/TID/schedstat (nanoseconds); -1. */
static double proc_sched_s(pid_t pid) {
  char path[96];
  struct dirent *e;
  double sum = 0;

  snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    unsigned long long ns;
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "/proc/%ld/task/%.20s/schedstat", (long)pid,
             e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue; /* a thread that just left */
    if (fscanf(f, "%llu", &ns) == 1)
      sum += (double)ns / 1e9;
    fclose(f);
  }
  closedir(d);
  return sum;
}

/* CPU seconds of the processes: [0] utime + stime, [1] schedstat. */
static void sum_cpu_s(const pid_t *pids, unsigned n, double sum[2], bool *ok) {
  sum[0] = sum[1] = 0;
  for (unsigned i = 0; i < n; i++) {
    double c = proc_cpu_s(pids[i]), r = proc_sched_s(pids[i]);
    if (c < 0 || r < 0)
      *ok = false;
    sum[0] += c;
    sum[1] += r;
  }
}

/* ------------------------------------------------------------------------
 * One run: a way, N monitors
 * ------------------------------------------------------------------------ */

static void run_way(const config_t *cfg, way_t way, unsigned n,
                    const struct sockaddr_in *addr, row_t *row) {
  plan_t p;
  int fds[2];
  pid_t parent = getpid();
  unsigned nproc = way == WAY_PROCESS ? n : 1;
  pid_t *pids = xcalloc(nproc, sizeof *pids);

  memset(row, 0, sizeof *row);
  row->way = way;
  row->n = n;
  row->processes = nproc;
  row->ok = true;

  memset(&p, 0, sizeof p);
  p.way = way;
  p.n = n;
  p.workers = cfg->workers;
  p.work_us = cfg->work_us;
  p.addr = *addr;
  p.t0 = mono_now() + 0.5 + n / 1000.0; /* time to start them all */
  p.m0 = p.t0 + cfg->warmup_s + 0.5;
  p.m1 = p.m0 + cfg->duration_s;
  p.stop = p.m1 + TAIL_S;
  p.samples_max = (unsigned)ceil(cfg->duration_s) + 2;
  if (pipe2(fds, O_CLOEXEC) != 0)
    die("pipe", strerror(errno));
  p.out_fd = fds[1];

  for (unsigned i = 0; i < nproc; i++) {
    pids[i] = fork();
    if (pids[i] < 0)
      die("fork", strerror(errno));
    if (pids[i] == 0) {
      die_with_parent(parent);
      close(fds[0]);
      munmap(shared, sizeof *shared);
      if (way == WAY_PROCESS)
        process_monitor_main(&p, i);
      else if (way == WAY_THREAD)
        thread_way_main(&p);
      else
        tpool_way_main(&p);
    }
  }
  close(fds[1]);

  /* The window. */
  sleep_until(p.m0);
  double c0[2], c1[2];
  double w0 = mono_now();
  sum_cpu_s(pids, nproc, c0, &row->ok);
  w0 = (w0 + mono_now()) / 2;
  sleep_until(p.m1);
  double w1 = mono_now();
  sum_cpu_s(pids, nproc, c1, &row->ok);
  w1 = (w1 + mono_now()) / 2;
  row->cpu_stat_percent = (c1[0] - c0[0]) / (w1 - w0) * 100.0;
  row->cpu_percent = (c1[1] - c0[1]) / (w1 - w0) * 100.0;
  row->connections = atomic_load(&shared->open_connections);
  for (unsigned i = 0; i < nproc; i++) {
    double pss = proc_field(pids[i], "smaps_rollup", "Pss:");
    double th = proc_field(pids[i], "status", "Threads:");
    double pte = proc_field(pids[i], "status", "VmPTE:");
    if (pss < 0 || th < 0 || pte < 0)
      row->ok = false;
    row->pss_kib += pss;
    row->pte_kib += pte;
    row->threads += (unsigned long)th;
  }

  /* The samples, until every writer has closed the pipe. */
  size_t cap = (size_t)n * p.samples_max, count = 0;
  double *lat = xcalloc(cap + 1, sizeof *lat),
         *end = xcalloc(cap + 1, sizeof *end);
  FILE *in = fdopen(fds[0], "r");
  record_head_t h;
  float v[RECORD_SAMPLES];
  while (fread(&h, sizeof h, 1, in) == 1) {
    if (h.n > RECORD_SAMPLES || fread(v, sizeof(float), h.n, in) != h.n)
      die("read from a monitor", "a short record");
    if (h.type == REC_TPOOL_STATS && h.n == TS_N) {
      row->has_tpool_stats = true;
      memcpy(row->tpool_stats, v, sizeof row->tpool_stats);
    } else {
      for (uint32_t i = 0; i + 1 < h.n && count < cap; i += 2) {
        lat[count] = v[i] / 1e3; /* ms */
        end[count++] = v[i + 1] / 1e3;
      }
    }
  }
  fclose(in);
  for (unsigned i = 0; i < nproc; i++) {
    int status;
    if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
      row->ok = false;
  }
  free(pids);

  qsort(lat, count, sizeof *lat, cmp_double);
  qsort(end, count, sizeof *end, cmp_double);
  row->runs = count;
  row->planned = (size_t)n * (size_t)llround(cfg->duration_s);
  if (count > 0) {
    size_t i50 = (size_t)ceil(0.50 * (double)count) - 1;
    size_t i99 = (size_t)ceil(0.99 * (double)count) - 1;
    row->p50_ms = lat[i50];
    row->p99_ms = lat[i99];
    row->end_p50_ms = end[i50];
    row->end_p99_ms = end[i99];
  } else {
    row->ok = false;
  }
  free(lat);
  free(end);
}

/* ------------------------------------------------------------------------
 * The table, the command line
 * ------------------------------------------------------------------------ */

static void print_table(const config_t *cfg, const row_t *rows, size_t nrows) {
  printf("\n| way | N | processes | threads | memory (PSS, MiB) | "
         "PSS per monitor (KiB) | page tables (MiB) | CPU %% of a core | CPU "
         "%% (stat) | "
         "connections | "
         "runs in window | lateness p50 (ms) | lateness p99 (ms) | "
         "done p50 (ms) | done p99 (ms) |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < nrows; i++) {
    const row_t *r = &rows[i];
    char way[64];
    if (r->way == WAY_TPOOL)
      snprintf(way, sizeof way, "tpool schedules, W=%u", cfg->workers);
    else
      snprintf(way, sizeof way, "a %s each", way_names[r->way]);
    if (!r->ok) {
      printf("| %s | %u | failed | | | | | | | | | | | | |\n", way, r->n);
      continue;
    }
    printf("| %s | %u | %u | %lu | %.1f | %.1f | %.1f | %.2f | %.2f | %ld | "
           "%zu/%zu | "
           "%.3f | %.3f | %.3f | %.3f |\n",
           way, r->n, r->processes, r->threads, r->pss_kib / 1024.0,
           r->pss_kib / r->n, r->pte_kib / 1024.0, r->cpu_percent,
           r->cpu_stat_percent, r->connections, r->runs, r->planned, r->p50_ms,
           r->p99_ms, r->end_p50_ms, r->end_p99_ms);
  }
  for (size_t i = 0; i < nrows; i++) {
    const row_t *r = &rows[i];
    if (!r->has_tpool_stats)
      continue;
    const float *v = r->tpool_stats;
    printf("\ntpool's own lateness histograms, N=%u, all runs since the "
           "start: mean %.3f ms, max %.3f ms, median of the schedules' p99 "
           "%.3f ms; runs %.0f, skipped %.0f, failed %.0f. The window's "
           "runs waited in the pool's queue %.3f ms on average, %.3f ms at "
           "most.",
           r->n, (double)v[TS_MEAN_MS], (double)v[TS_MAX_MS],
           (double)v[TS_P99_MS], (double)v[TS_RUNS], (double)v[TS_SKIPPED],
           (double)v[TS_FAILED], (double)v[TS_WAIT_MEAN_MS],
           (double)v[TS_WAIT_MAX_MS]);
  }
  printf("\n");
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: tpool-monitors [options]\n"
          "N monitors each run a small job every second over a TCP connection\n"
          "to a local echo server: as a process each, a thread each, and as\n"
          "tpool schedules on a pool of W workers. Prints a Markdown table.\n"
          "  --n LIST         monitors, comma-separated (default 100,1000)\n"
          "  --ways LIST      of process,thread,tpool (default all three)\n"
          "  --workers W      tpool's pool size (default 4)\n"
          "  --warmup S       seconds before the window (default 3)\n"
          "  --duration S     seconds measured (default 20)\n"
          "  --work-us US     CPU spin of each job, µs (default 5)\n");
}

static double parse_num(const char *s, double lo, double hi, const char *opt) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
    fprintf(stderr, "tpool-monitors: %s: out of range [%g, %g]: %s\n", opt, lo,
            hi, s);
    exit(2);
  }
  return v;
}

static void parse_args(int argc, char **argv, config_t *cfg) {
  static const struct option opts[] = {
      {"n", required_argument, NULL, 'n'},
      {"ways", required_argument, NULL, 'w'},
      {"workers", required_argument, NULL, 'W'},
      {"warmup", required_argument, NULL, 'u'},
      {"duration", required_argument, NULL, 'd'},
      {"work-us", required_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  char *list, *tok, *save;
  int c;

  memset(cfg, 0, sizeof *cfg);
  cfg->ns[0] = 100;
  cfg->ns[1] = 1000;
  cfg->nn = 2;
  for (int w = 0; w < WAY_COUNT; w++)
    cfg->ways[w] = true;
  cfg->workers = 4;
  cfg->warmup_s = 3;
  cfg->duration_s = 20;
  cfg->work_us = 5;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'n':
      cfg->nn = 0;
      list = strdup(optarg);
      for (tok = strtok_r(list, ",", &save); tok != NULL;
           tok = strtok_r(NULL, ",", &save)) {
        if (cfg->nn == NS_MAX) {
          fprintf(stderr, "tpool-monitors: --n: at most %d values\n", NS_MAX);
          exit(2);
        }
        cfg->ns[cfg->nn++] = (unsigned)parse_num(tok, 1, MONITORS_MAX, "--n");
      }
      free(list);
      break;
    case 'w':
      memset(cfg->ways, 0, sizeof cfg->ways);
      list = strdup(optarg);
      for (tok = strtok_r(list, ",", &save); tok != NULL;
           tok = strtok_r(NULL, ",", &save)) {
        int w = 0;
        while (w < WAY_COUNT && strcmp(tok, way_names[w]) != 0)
          w++;
        if (w == WAY_COUNT) {
          fprintf(stderr, "tpool-monitors: --ways: no way %s\n", tok);
          exit(2);
        }
        cfg->ways[w] = true;
      }
      free(list);
      break;
    case 'W':
      cfg->workers = (unsigned)parse_num(optarg, 1, 256, "--workers");
      break;
    case 'u':
      cfg->warmup_s = parse_num(optarg, 0, 60, "--warmup");
      break;
    case 'd':
      cfg->duration_s = parse_num(optarg, 1, DURATION_MAX_S, "--duration");
      cfg->duration_s = round(cfg->duration_s);
      break;
    case 'j':
      cfg->work_us = parse_num(optarg, 0, 100000, "--work-us");
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      usage(stderr);
      exit(2);
    }
  }
  if (optind != argc || cfg->nn == 0) {
    usage(stderr);
    exit(2);
  }
}

int main(int argc, char **argv) {
  config_t cfg;
  struct sockaddr_in addr;
  row_t rows[NS_MAX * WAY_COUNT];
  size_t nrows = 0;
  unsigned nmax = 0;
  double total_s = 0;

  parse_args(argc, argv, &cfg);
  for (size_t i = 0; i < cfg.nn; i++) {
    if (cfg.ns[i] > nmax)
      nmax = cfg.ns[i];
    for (int w = 0; w < WAY_COUNT; w++)
      if (cfg.ways[w])
        total_s += 2.5 + cfg.warmup_s + cfg.duration_s + TAIL_S + 10;
  }
  /* The server holds N connections, the thread way N more, and the tpool
     way N schedules' worth of timers. */
  raise_fd_limit((rlim_t)nmax + 64);
  alarm((unsigned)total_s + 60); /* a bound: the children die with us */
  signal(SIGPIPE, SIG_IGN);

  shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED)
    die("mmap", strerror(errno));
  atomic_init(&shared->open_connections, 0);
  pid_t server = server_start(&addr);

  printf("tpool-monitors: server on 127.0.0.1:%u; warm-up %g s, window %g s, "
         "job: %d-byte echo + %g µs of CPU; tpool: W=%u, jitter 0\n",
         (unsigned)ntohs(addr.sin_port), cfg.warmup_s, cfg.duration_s, MSG_LEN,
         cfg.work_us, cfg.workers);
  fflush(stdout);
  bool all_ok = true;
  for (size_t i = 0; i < cfg.nn; i++)
    for (int w = 0; w < WAY_COUNT; w++) {
      if (!cfg.ways[w])
        continue;
      row_t *r = &rows[nrows++];
      run_way(&cfg, (way_t)w, cfg.ns[i], &addr, r);
      fprintf(stderr, "tpool-monitors: %s, N=%u: %s\n", way_names[w], cfg.ns[i],
              r->ok ? "done" : "FAILED");
      all_ok = all_ok && r->ok;
      /* Let the server see the last connections close. */
      for (int k = 0; k < 100 && atomic_load(&shared->open_connections) > 0;
           k++)
        usleep(10000);
    }
  print_table(&cfg, rows, nrows);
  kill(server, SIGTERM);
  waitpid(server, NULL, 0);
  return all_ok ? 0 : 1;
}
