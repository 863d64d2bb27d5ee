/*
 * shared.c — what the pools and their workers need of their manager, kept
 * apart from manager.c so that calls run one way (pools_internal.h): wake
 * a shutdown that waits for the pools to finish, make the monitor thread
 * look sooner, find the bridge of a loop or the pool of a route, and hold
 * the manager alive.
 *
 * Each function touches only the manager's fields named in its comment
 * and calls nothing else in pools/. The last reference frees the manager
 * through m->release, which manager.c sets: the worker that drops it (a
 * task that outlived tpool_manager_free()) need not know how.
 */
#include "pools_internal.h"

#include <fnmatch.h>

void tpool__manager_notify(tpool_manager_t *m) {
  /* `mu` and `state_cv`: a shutdown waits there (manager.c). */
  if (!atomic_load(&m->stopping))
    return;
  pthread_mutex_lock(&m->mu);
  pthread_cond_broadcast(&m->state_cv);
  pthread_mutex_unlock(&m->mu);
}

void tpool__monitor_wake(tpool_manager_t *m) {
  /* `mon_mu`, `mon_kicked`, `mon_cv` (monitor.c). */
  pthread_mutex_lock(&m->mon_mu);
  m->mon_kicked = true;
  pthread_cond_signal(&m->mon_cv);
  pthread_mutex_unlock(&m->mon_mu);
}

tpool__bridge_t *tpool__manager_bridge(tpool_manager_t *m,
                                       struct event_base *base) {
  /* `bridges`, published by tpool_manager_attach() through `nbridges`. */
  size_t n = atomic_load_explicit(&m->nbridges, memory_order_acquire);
  if (n == 0)
    return NULL;
  if (!base)
    return m->bridges[0];
  for (size_t i = 0; i < n; i++)
    if (tpool__bridge_base(m->bridges[i]) == base)
      return m->bridges[i];
  return NULL;
}

void tpool__manager_ref(tpool_manager_t *m) {
  atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void tpool__manager_unref(tpool_manager_t *m) {
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
    m->release(m);
}

tpool_pool_t *tpool__manager_route(tpool_manager_t *m, const char *name) {
  /* `routes`, fixed after tpool_manager_new(). */
  for (size_t i = 0; i < m->nroutes; i++)
    if (fnmatch(m->routes[i].pattern, name, 0) == 0)
      return m->routes[i].pool;
  return NULL;
}
