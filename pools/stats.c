/*
 * stats.c — tpool_manager_stats(): a snapshot of every pool, taken pool by
 * pool under each pool's lock (snapshot.c), with the manager's totals.
 * The status table, the health routes and the metrics all read these
 * snapshots, never live pool fields.
 */
#include "pools_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tpool_manager_stats(tpool_manager_t *m, tpool_stats_t **out) {
  if (!m || !out)
    return -EINVAL;
  *out = NULL;
  tpool_stats_t *s = calloc(1, sizeof(*s));
  if (!s)
    return -ENOMEM;
  s->pools = calloc(m->npools ? m->npools : 1, sizeof(*s->pools));
  if (!s->pools) {
    free(s);
    return -ENOMEM;
  }
  for (size_t i = 0; i < m->npools; i++) {
    tpool_pool_stats_t *ps = &s->pools[i];
    if (tpool__pool_snapshot(m->pools[i], ps) != 0) {
      s->npools = i + 1;
      tpool_stats_free(s);
      return -ENOMEM;
    }
    s->total_workers += ps->current_workers;
    s->total_busy += ps->busy_workers;
    s->total_queued += ps->queued;
  }
  s->npools = m->npools;
  s->uptime_s = tpool__ns_to_s(tpool__now_ns() - m->created_ns);
  s->verbose = tpool__verbose(m);
  s->shutting_down = atomic_load(&m->stopping);
  *out = s;
  return 0;
}

void tpool_stats_free(tpool_stats_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->npools; i++)
    free(s->pools[i].active);
  free(s->pools);
  free(s);
}

const tpool_pool_stats_t *tpool_stats_pool(const tpool_stats_t *s,
                                           const char *name) {
  if (!s || !name)
    return NULL;
  for (size_t i = 0; i < s->npools; i++)
    if (strcmp(s->pools[i].name, name) == 0)
      return &s->pools[i];
  return NULL;
}
