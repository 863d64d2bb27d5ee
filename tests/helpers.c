/*
 * helpers.c — shared test helpers; see helpers.h.
 */
#include "helpers.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/thread.h>
#include <unistd.h>
#include <ftw.h>

void th_gate_init(th_gate_t *g) {
  memset(g, 0, sizeof(*g));
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
}

void th_gate_destroy(th_gate_t *g) {
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
}

void th_gate_pass(th_gate_t *g) {
  pthread_mutex_lock(&g->mu);
  g->waiting++;
  while (!g->open)
    pthread_cond_wait(&g->cv, &g->mu);
  g->waiting--;
  g->passed++;
  pthread_mutex_unlock(&g->mu);
}

void th_gate_open(th_gate_t *g) {
  pthread_mutex_lock(&g->mu);
  g->open = true;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

int th_gate_waiting(th_gate_t *g) {
  pthread_mutex_lock(&g->mu);
  int n = g->waiting;
  pthread_mutex_unlock(&g->mu);
  return n;
}

int th_gate_passed(th_gate_t *g) {
  pthread_mutex_lock(&g->mu);
  int n = g->passed;
  pthread_mutex_unlock(&g->mu);
  return n;
}

int th_gate_work(void *arg) {
  th_gate_pass(arg);
  return 0;
}

void th_log_init(th_log_t *l) {
  memset(l, 0, sizeof(*l));
  pthread_mutex_init(&l->mu, NULL);
}

void th_log_destroy(th_log_t *l) {
  free(l->text);
  pthread_mutex_destroy(&l->mu);
}

void th_log_sink(tpool_log_level_t level, const char *msg, void *arg) {
  th_log_t *l = arg;
  const char *word = tpool_log_level_name(level);
  size_t need = strlen(word) + 1 + strlen(msg) + 2;
  pthread_mutex_lock(&l->mu);
  if (l->len + need > l->cap) {
    size_t cap = (l->cap + need) * 2;
    char *text = realloc(l->text, cap);
    if (!text) {
      pthread_mutex_unlock(&l->mu);
      return;
    }
    l->text = text;
    l->cap = cap;
  }
  l->len +=
      (size_t)snprintf(l->text + l->len, l->cap - l->len, "%s %s\n", word, msg);
  pthread_mutex_unlock(&l->mu);
}

bool th_log_contains(th_log_t *l, const char *needle) {
  pthread_mutex_lock(&l->mu);
  bool found = l->text && strstr(l->text, needle) != NULL;
  pthread_mutex_unlock(&l->mu);
  return found;
}

bool th_log_wait_for(th_log_t *l, const char *needle, double timeout_s) {
  struct timespec start, nap = {0, 1000000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (!th_log_contains(l, needle)) {
    if (th_elapsed(&start) >= timeout_s)
      return false;
    nanosleep(&nap, NULL);
  }
  return true;
}

char *th_log_copy(th_log_t *l) {
  pthread_mutex_lock(&l->mu);
  char *copy = strdup(l->text ? l->text : "");
  pthread_mutex_unlock(&l->mu);
  return copy;
}

struct event_base *th_base_new(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, (void (*)(void))evthread_use_pthreads);
  struct event_base *base = event_base_new();
  assert_non_null(base);
  return base;
}

void th_options_empty(tpool_options_t *o) {
  tpool_options_init(o);
  o->npools = 0;
  o->status_interval_s = 3600;
}

void th_options_logged(tpool_options_t *o, th_log_t *log) {
  th_options_empty(o);
  th_log_init(log);
  o->log_cb = th_log_sink;
  o->log_arg = log;
}

tpool_pool_options_t *th_add_pool(tpool_options_t *o, const char *name,
                                  unsigned min_workers, unsigned max_workers,
                                  size_t queue_limit) {
  tpool_pool_options_t *po;
  assert_int_equal(tpool_options_add_pool(o, name, &po), 0);
  po->min_workers = min_workers;
  po->max_workers = max_workers;
  po->queue_limit = queue_limit;
  return po;
}

tpool_manager_t *th_manager(const tpool_options_t *o, struct event_base *base) {
  tpool_manager_t *m = NULL;
  assert_int_equal(tpool_manager_new(o, &m), 0);
  if (base)
    assert_int_equal(tpool_manager_attach(m, base), 0);
  assert_int_equal(tpool_manager_start(m), 0);
  return m;
}

tpool_manager_t *th_one_pool(unsigned workers, size_t limit,
                             struct event_base *base) {
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "w", workers, workers, limit);
  return th_manager(&o, base);
}

void th_now(struct timespec *ts) {
  clock_gettime(CLOCK_MONOTONIC, ts);
}

double th_elapsed(const struct timespec *since) {
  struct timespec now;
  th_now(&now);
  return (double)(now.tv_sec - since->tv_sec) +
         (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

bool th_run_until(struct event_base *base, bool (*pred)(void *), void *arg,
                  double timeout_s) {
  struct timespec start;
  th_now(&start);
  for (;;) {
    if (pred && pred(arg))
      return true;
    if (th_elapsed(&start) >= timeout_s)
      return pred ? pred(arg) : true;
    /* At most 5 ms per turn, so the predicate is checked often. */
    struct timeval slice = {0, 5000};
    event_base_loopexit(base, &slice);
    event_base_dispatch(base);
  }
}

typedef struct {
  const int *value;
  int want;
} int_goal_t;

static bool int_reached(void *arg) {
  int_goal_t *g = arg;
  return *g->value >= g->want;
}

bool th_run_until_int(struct event_base *base, const int *value, int want,
                      double timeout_s) {
  int_goal_t g = {value, want};
  return th_run_until(base, int_reached, &g, timeout_s);
}

bool th_wait_stats(tpool_manager_t *m, struct event_base *base,
                   const char *pool,
                   bool (*pred)(const tpool_pool_stats_t *, void *), void *arg,
                   double timeout_s) {
  struct timespec start;
  th_now(&start);
  for (;;) {
    tpool_stats_t *s;
    assert_int_equal(tpool_manager_stats(m, &s), 0);
    const tpool_pool_stats_t *ps = tpool_stats_pool(s, pool);
    assert_non_null(ps);
    bool ok = pred(ps, arg);
    tpool_stats_free(s);
    if (ok)
      return true;
    if (th_elapsed(&start) >= timeout_s)
      return false;
    if (base) {
      th_run_until(base, NULL, NULL, 0.005);
    } else {
      struct timespec nap = {0, 2000000};
      nanosleep(&nap, NULL);
    }
  }
}

tpool_pool_stats_t th_pool_stats(tpool_manager_t *m, const char *pool) {
  tpool_stats_t *s;
  assert_int_equal(tpool_manager_stats(m, &s), 0);
  const tpool_pool_stats_t *ps = tpool_stats_pool(s, pool);
  assert_non_null(ps);
  tpool_pool_stats_t copy = *ps;
  copy.active = NULL;
  copy.nactive = 0;
  tpool_stats_free(s);
  return copy;
}

void th_assert_invariant(tpool_manager_t *m) {
  tpool_stats_t *s;
  assert_int_equal(tpool_manager_stats(m, &s), 0);
  for (size_t i = 0; i < s->npools; i++) {
    const tpool_pool_stats_t *p = &s->pools[i];
    if (p->submitted != p->rejected + p->completed + p->failed + p->cancelled +
                            p->expired ||
        p->queued != 0 || p->busy_workers != 0 || p->retrying != 0 ||
        p->scheduled != 0)
      fail_msg("pool %s: submitted %llu != rejected %llu + completed %llu + "
               "failed %llu + cancelled %llu + expired %llu (queued %zu, busy "
               "%u, retrying %zu, scheduled %zu)",
               p->name, (unsigned long long)p->submitted,
               (unsigned long long)p->rejected,
               (unsigned long long)p->completed, (unsigned long long)p->failed,
               (unsigned long long)p->cancelled, (unsigned long long)p->expired,
               p->queued, p->busy_workers, p->retrying, p->scheduled);
  }
  tpool_stats_free(s);
}

void th_tally_init(th_tally_t *t) {
  memset(t, 0, sizeof(*t));
  pthread_mutex_init(&t->mu, NULL);
  th_gate_init(&t->gate);
}

void th_tally_destroy(th_tally_t *t) {
  th_gate_destroy(&t->gate);
  pthread_mutex_destroy(&t->mu);
}

void th_tally_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  th_tally_t *t = arg;
  t->calls++;
  if (status == 0)
    t->ok++;
  else if (status == -ECANCELED)
    t->cancelled++;
  else
    t->failed++;
}

int th_tally_held(void *arg) {
  th_gate_pass(&((th_tally_t *)arg)->gate);
  return 0;
}

int th_fail_eio(void *arg) {
  (void)arg;
  return -EIO;
}

int th_noop(void *arg) {
  (void)arg;
  return 0;
}

static bool promtool_run;

bool th_promtool_mode(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "promtool") != 0)
    return false;
  if (system("command -v promtool >/dev/null 2>&1") != 0) {
    printf("skipped: promtool not found in PATH (install the Debian "
           "package `prometheus`: apt-get install --no-install-recommends "
           "prometheus)\n");
    exit(77);
  }
  promtool_run = true;
  return true;
}

void th_assert_promtool_accepts(const char *text) {
  if (!promtool_run)
    return; /* checked by the promtool run of the same test */
  const char *dir = getenv("TMPDIR");
  char path[512];
  snprintf(path, sizeof(path), "%s/tpool-metrics-XXXXXX", dir ? dir : "/tmp");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  size_t len = strlen(text);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);

  char cmd[600], said[4096];
  snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' 2>&1", path);
  FILE *f = popen(cmd, "r");
  assert_non_null(f);
  size_t n = fread(said, 1, sizeof(said) - 1, f);
  said[n] = '\0';
  int status = pclose(f);
  unlink(path);
  if (n > 0 || status != 0) {
    print_message("%s\npromtool said:\n%s", text, said);
    fail_msg("promtool check metrics: exit status %d", status);
  }
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

void th_remove_tree(const char *dir) {
  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
