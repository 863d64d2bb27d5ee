/*
 * self_check.c — tpool-server --self-check: before serving, every pool
 * runs one task, submitted as a future and waited on by the main thread,
 * whose loop does not run yet. A pool whose workers cannot start (a db
 * connection that cannot be opened, say) is reported before the first
 * request finds it. A pool that does not answer within SELF_CHECK_S is
 * logged and left to go on trying.
 */
#include "server.h"

#include <errno.h>
#include <string.h>

#define SELF_CHECK_S 5.0

/* A self-check task: nothing, or on the db pool a query through the
   worker's own connection (key 1 always exists). */
static int probe(void *arg, void **result) {
  (void)result;
  if (!arg)
    return 0;
  void *db = tpool_thread_context();
  demo_row_t row;
  return db ? demo_db_query(db, 1, &row) : -EIO;
}

/* Seconds since t0_ns. */
static double since(uint64_t t0_ns) {
  return (double)(server_now_ns() - t0_ns) / 1e9;
}

void server_self_check(tpool_manager_t *m, bool db_connections) {
  tpool_stats_t *st = NULL;
  if (tpool_manager_stats(m, &st) != 0)
    return;
  tpool_future_t *f[TPOOL_POOLS_MAX] = {0};
  uint64_t t0 = server_now_ns();
  for (size_t i = 0; i < st->npools; i++) {
    tpool_pool_t *p = tpool_manager_pool(m, st->pools[i].name);
    bool db = db_connections && strcmp(st->pools[i].name, "db") == 0;
    if (tpool_submit_future(p, "self-check", probe, db ? p : NULL, NULL,
                            &f[i]) < 0)
      f[i] = NULL;
  }
  size_t ok = 0;
  for (size_t i = 0; i < st->npools; i++) {
    double left = SELF_CHECK_S - since(t0);
    int status = -ENOMEM;
    if (!f[i] ||
        tpool_future_wait(f[i], left > 0 ? left : 0, &status, NULL) != 0)
      tpool_manager_log(m, TPOOL_LOG_WARN,
                        "Server Self-check: pool %s ran no task within %.0fs "
                        "(can its workers start?); serving anyway",
                        st->pools[i].name, SELF_CHECK_S);
    else if (status != 0)
      tpool_manager_log(m, TPOOL_LOG_WARN, "Server Self-check: pool %s: %s",
                        st->pools[i].name, tpool_strerror(status));
    else
      ok++;
    tpool_future_free(f[i]);
  }
  tpool_manager_log(m, TPOOL_LOG_INFO,
                    "Server Self-check: %zu of %zu pools ran a task in %.3fs",
                    ok, st->npools, since(t0));
  tpool_stats_free(st);
}
