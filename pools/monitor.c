/*
 * monitor.c — the manager's housekeeping thread: it expires queued tasks
 * whose start deadline has passed, flags (and logs, once) tasks running
 * past their pool's soft timeout, and writes the status table every
 * status_interval seconds while verbose logging is on.
 *
 * DESIGN
 * Who runs here: the monitor thread alone, plus whoever calls
 * tpool__monitor_kick() (shared.c: submitters with a start deadline,
 * workers starting a task under a soft timeout, tpool_manager_set_verbose()).
 * What they share: `mon_next_ns`, the time the monitor will next look, read
 * without a lock so a kick costs one atomic load when it is not needed;
 * and `mon_kicked`/`mon_stop` under `mon_mu`.
 * How it runs: it sleeps until the earliest moment something can change —
 * a queued deadline, a running task crossing its soft timeout, the next
 * status table — and not at all when there is nothing to watch, so an idle
 * manager costs no wakeups. While it scans, `mon_next_ns` reads as "never",
 * so any kick during the scan forces another pass: a task that starts
 * after its pool was scanned is never missed.
 */
#include "pools_internal.h"

#include <errno.h>

/* When the status table was last due, kept by the monitor thread. The
   next one is due one interval after it, with the interval read afresh
   on every pass, so a new interval takes effect at once. */
typedef struct status_clock {
  bool verbose;  /* at the previous pass */
  uint64_t last; /* the last table, or when verbose turned on */
} status_clock_t;

static uint64_t scan_all(tpool_manager_t *m, status_clock_t *sc) {
  uint64_t now = tpool__now_ns();
  uint64_t next = UINT64_MAX;
  for (size_t i = 0; i < m->npools; i++) {
    uint64_t t = tpool__pool_scan(m->pools[i], now);
    if (t < next)
      next = t;
  }
  bool verbose = tpool__verbose(m);
  if (verbose && !sc->verbose)
    sc->last = now; /* the first table comes one period on */
  sc->verbose = verbose;
  if (!verbose)
    return next;
  uint64_t interval = atomic_load(&m->status_interval_ns);
  if (now - sc->last >= interval) {
    tpool__status_log(m);
    sc->last = now;
  }
  uint64_t due = sc->last + interval;
  return due < next ? due : next;
}

static void *monitor_main(void *arg) {
  tpool_manager_t *m = arg;
  status_clock_t sc = {false, tpool__now_ns()};

  pthread_mutex_lock(&m->mon_mu);
  while (!m->mon_stop) {
    m->mon_kicked = false;
    atomic_store(&m->mon_next_ns, 0); /* scanning: every kick counts */
    pthread_mutex_unlock(&m->mon_mu);

    uint64_t next = scan_all(m, &sc);

    pthread_mutex_lock(&m->mon_mu);
    atomic_store(&m->mon_next_ns, next);
    if (!m->mon_kicked && !m->mon_stop)
      tpool__cond_wait_until(&m->mon_cv, &m->mon_mu, next);
  }
  pthread_mutex_unlock(&m->mon_mu);
  return NULL;
}

int tpool__monitor_start(tpool_manager_t *m) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, TPOOL__STACK_MIN * 4);
  sigset_t old;
  tpool__signals_block(&old);
  m->mon_stop = false;
  int rc = pthread_create(&m->mon_thread, &attr, monitor_main, m);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0)
    return -rc;
  /* Named here rather than by the thread, so the name is there as soon as
     start returns. */
  pthread_setname_np(m->mon_thread, "tpool-monitor");
  m->mon_running = true;
  return 0;
}

void tpool__monitor_stop(tpool_manager_t *m) {
  if (!m->mon_running)
    return;
  pthread_mutex_lock(&m->mon_mu);
  m->mon_stop = true;
  pthread_cond_signal(&m->mon_cv);
  pthread_mutex_unlock(&m->mon_mu);
  pthread_join(m->mon_thread, NULL);
  m->mon_running = false;
}
