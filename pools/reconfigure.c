/*
 * reconfigure.c — applying new options to a running manager (a server's
 * SIGHUP reload).
 *
 * What can change live: verbose, the status interval, the log level, and
 * per pool the worker limits, queue limit, idle and soft timeouts, spin,
 * retries and the circuit breaker (a changed breaker starts closed, with
 * an empty window). What a running manager cannot change — the set of
 * pools, a pool's stack size, thread names, CPU affinity and task history,
 * the log destination, the completion batch
 * — is left alone and named in a warning, so an operator who edits it
 * learns that it waits for a restart instead of believing it applied.
 *
 * It runs under `reconf_mu` (serialises reconfigurations and guards
 * m->opts; its place in the lock order is in pools_internal.h), not under
 * the manager's `mu`: starting workers and logging happen in here, and
 * attach or shutdown must not wait for them. The log sink does run under
 * reconf_mu; it never calls back into tpool, and nothing but another
 * reconfiguration waits for this lock.
 */
#include "pools_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Logs a setting that needs a restart. */
static void needs_restart(tpool_manager_t *m, const char *what) {
  tpool__logf(&m->log, TPOOL_LOG_WARN,
              "ThreadPoolManager Config reload: %s changes at restart only; "
              "keeping the running value",
              what);
}

/* The index of pool `name` in o->pools, or -1. */
static long pool_index(const tpool_options_t *o, const char *name) {
  for (size_t i = 0; i < o->npools; i++)
    if (strcmp(o->pools[i].name, name) == 0)
      return (long)i;
  return -1;
}

/* Warns about the fixed settings of pool `cur` that `next` changes. */
static void check_fixed(tpool_manager_t *m, const tpool_pool_options_t *cur,
                        const tpool_pool_options_t *next) {
  const char *changed[4];
  size_t n = 0;
  if (cur->task_history != next->task_history)
    changed[n++] = "task_history";
  if (cur->stack_size != next->stack_size)
    changed[n++] = "stack_size";
  if (strncmp(cur->thread_name, next->thread_name, TPOOL_THREAD_NAME_MAX))
    changed[n++] = "thread_name";
  if (cur->has_affinity != next->has_affinity ||
      memcmp(cur->cpu_affinity, next->cpu_affinity, sizeof(cur->cpu_affinity)))
    changed[n++] = "cpu_affinity";
  for (size_t i = 0; i < n; i++) {
    char what[TPOOL_NAME_MAX + 32];
    snprintf(what, sizeof(what), "[pool.%s] %s", cur->name, changed[i]);
    needs_restart(m, what);
  }
}

int tpool_manager_reconfigure(tpool_manager_t *m, const tpool_options_t *o,
                              tpool_config_error_t *err) {
  if (err)
    memset(err, 0, sizeof(*err));
  if (!m || !o)
    return -EINVAL;
  if (tpool_options_check(o, err) != 0)
    return -EINVAL;
  if (atomic_load(&m->stopping))
    return -ESHUTDOWN;
  pthread_mutex_lock(&m->reconf_mu);
  tpool_options_t *cur = m->opts;
  char what[TPOOL_NAME_MAX + 64];

  tpool_manager_set_verbose(m, o->verbose, o->status_interval_s);
  atomic_store(&m->log.level, (int)o->log_level);
  if (strcmp(cur->log_path, o->log_path) != 0 && !cur->log_cb)
    needs_restart(m, "[general] log");
  if (cur->completion_batch != o->completion_batch)
    needs_restart(m, "completion_batch");
  bool routes_same = cur->nroutes == o->nroutes;
  for (size_t i = 0; routes_same && i < o->nroutes; i++)
    routes_same = strcmp(cur->routes[i].pattern, o->routes[i].pattern) == 0 &&
                  strcmp(cur->routes[i].pool, o->routes[i].pool) == 0;
  if (!routes_same)
    needs_restart(m, "[routes]");
  cur->verbose = o->verbose;
  cur->status_interval_s = o->status_interval_s;
  cur->log_level = o->log_level;
  cur->shutdown_timeout_s = o->shutdown_timeout_s;

  for (size_t i = 0; i < o->npools; i++) {
    const tpool_pool_options_t *next = &o->pools[i];
    long at = pool_index(cur, next->name);
    tpool_pool_options_t *was = at < 0 ? NULL : &cur->pools[at];
    bool running = was && was->enabled;
    if (next->enabled != running) {
      snprintf(what, sizeof(what), "%s pool [pool.%s]",
               next->enabled ? "a new" : "disabling", next->name);
      needs_restart(m, what);
      continue;
    }
    if (!running)
      continue;
    check_fixed(m, was, next);
    tpool__pool_configure(tpool_manager_pool(m, next->name), next);
    was->max_workers = next->max_workers;
    was->min_workers = next->min_workers;
    was->queue_limit = next->queue_limit;
    was->idle_timeout_s = next->idle_timeout_s;
    was->soft_timeout_s = next->soft_timeout_s;
    was->spin_s = next->spin_s;
    was->retry_attempts = next->retry_attempts;
    was->retry_backoff_s = next->retry_backoff_s;
    was->retry_backoff_max_s = next->retry_backoff_max_s;
    was->breaker_window = next->breaker_window;
    was->breaker_threshold = next->breaker_threshold;
    was->breaker_cooldown_s = next->breaker_cooldown_s;
    was->breaker_trials = next->breaker_trials;
  }
  for (size_t j = 0; j < cur->npools; j++) {
    if (cur->pools[j].enabled && pool_index(o, cur->pools[j].name) < 0) {
      snprintf(what, sizeof(what), "removing pool [pool.%s]",
               cur->pools[j].name);
      needs_restart(m, what);
    }
  }
  pthread_mutex_unlock(&m->reconf_mu);
  tpool__logf(&m->log, TPOOL_LOG_INFO,
              "ThreadPoolManager Configuration reloaded%s%s (verbose=%s, "
              "status_interval=%.1fs)",
              o->config_path[0] ? " from " : "", o->config_path,
              o->verbose ? "on" : "off", o->status_interval_s);
  return 0;
}
