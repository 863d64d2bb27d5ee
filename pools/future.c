/*
 * future.c — tasks whose outcome a thread that is not a loop waits for.
 *
 * DESIGN
 * A future is submitted as an ordinary task with no done callback (so no
 * event_base is involved) whose work is future_run(), and with the task's
 * end hook set to future_ended(), so that whoever ends the task — the
 * worker that ran it, a cancel, an expired start deadline, a shutdown —
 * completes the future through tpool__task_end() with the task's status,
 * exactly once, under the pool's mu (which is taken before the future's
 * own mu). Waiters sleep on the future's own condition variable.
 * Two references keep it alive: the caller's handle and the task. The
 * last of tpool_future_free() and the completion frees it, so a handle
 * may be dropped before the task ends and nothing leaks.
 * The work's result is written by the worker into `ran_result` before the
 * task ends, and published under `mu` by the completion, which runs on
 * that same worker when the task ran; a task that never ran leaves it
 * NULL.
 */
#include "pools_internal.h"

#include <errno.h>
#include <stdlib.h>

struct tpool_future {
  pthread_mutex_t mu;
  pthread_cond_t ended_cv;
  atomic_int refs; /* atomic: the handle and the task */
  tpool_future_work_cb work;
  void *arg;
  void *ran_result; /* the worker's, until the completion publishes it */
  /* Protected by mu. */
  bool ended;
  int status;
  void *result;
};

static void unref(tpool_future_t *f) {
  if (atomic_fetch_sub(&f->refs, 1) != 1)
    return;
  pthread_cond_destroy(&f->ended_cv);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

static int future_run(void *arg) {
  tpool_future_t *f = arg;
  return f->work(f->arg, &f->ran_result);
}

/* The task's end hook: publishes its status and wakes the waiters. */
static void future_ended(int status, void *arg) {
  tpool_future_t *f = arg;
  pthread_mutex_lock(&f->mu);
  f->status = status;
  f->result = f->ran_result;
  f->ended = true;
  pthread_mutex_unlock(&f->mu);
  pthread_cond_broadcast(&f->ended_cv);
  unref(f);
}

int64_t tpool_submit_future(tpool_pool_t *pool, const char *name,
                            tpool_future_work_cb work, void *arg,
                            const tpool_task_opts_t *opts,
                            tpool_future_t **out) {
  if (!pool || !work || !out)
    return -EINVAL;
  tpool_future_t *f = calloc(1, sizeof(*f));
  if (!f)
    return -ENOMEM;
  if (pthread_mutex_init(&f->mu, NULL) != 0) {
    free(f);
    return -ENOMEM;
  }
  if (tpool__cond_init(&f->ended_cv) != 0) {
    pthread_mutex_destroy(&f->mu);
    free(f);
    return -ENOMEM;
  }
  atomic_init(&f->refs, 2);
  f->work = work;
  f->arg = arg;
  tpool_task_opts_t o = {0};
  if (opts) {
    o = *opts;
    o.base = NULL; /* no done callback: retries borrow the first loop */
  }
  int64_t id = tpool__submit(pool, name, future_run, NULL, f, &o, future_ended);
  if (id < 0) { /* refused: no task holds it */
    atomic_store(&f->refs, 1);
    unref(f);
    return id;
  }
  *out = f;
  return id;
}

int tpool_future_wait(tpool_future_t *f, double timeout_s, int *status,
                      void **result) {
  if (!f)
    return -EINVAL;
  uint64_t until =
      timeout_s < 0 ? UINT64_MAX : tpool__now_ns() + tpool__s_to_ns(timeout_s);
  pthread_mutex_lock(&f->mu);
  while (!f->ended &&
         tpool__cond_wait_until(&f->ended_cv, &f->mu, until) != ETIMEDOUT)
    ;
  bool ended = f->ended;
  if (ended) {
    if (status)
      *status = f->status;
    if (result)
      *result = f->result;
  }
  pthread_mutex_unlock(&f->mu);
  return ended ? 0 : -ETIMEDOUT;
}

void tpool_future_free(tpool_future_t *f) {
  if (f)
    unref(f);
}
