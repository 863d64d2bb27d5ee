/*
 * batch.c — a set of tasks on one pool with at most K queued or running at
 * once, and one callback when all have ended.
 *
 * DESIGN
 * Everything here runs on the batch's loop thread: adds, the tasks' done
 * callbacks (which is where each next task is submitted) and the final
 * callback. Only the work functions run on workers, and each touches its
 * own task record alone, allocated at add and never moved, so the batch
 * needs no lock. A refused submit ends its task at once with the refusal
 * as its status; the batch goes on with the rest.
 * The final callback runs from a task's done callback when the last one
 * ends after the close, or, when close finds nothing left to wait for, from
 * a one-shot event on the next turn of the loop, so a caller is never
 * called back from inside its own tpool_batch_close().
 */
#include "pools_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

typedef struct batch_task {
  tpool_batch_t *b;
  size_t index;
  tpool_work_cb work;
  void *arg;
  char name[TPOOL_TASK_NAME_MAX];
} batch_task_t;

struct tpool_batch {
  tpool_pool_t *pool;
  struct event_base *base;
  tpool_task_opts_t opts;
  unsigned max_in_flight;
  tpool_batch_done_cb done;
  void *arg;
  batch_task_t **tasks; /* n of them; entries freed as tasks end */
  int *statuses;
  size_t n, cap;
  size_t next;      /* the next task to submit */
  size_t in_flight; /* submitted, not yet ended */
  size_t ended;
  bool closed;
};

static void batch_free(tpool_batch_t *b) {
  for (size_t i = 0; i < b->n; i++)
    free(b->tasks[i]);
  free(b->tasks);
  free(b->statuses);
  free(b);
}

/* Calls the final callback and frees the batch. */
static void finish(tpool_batch_t *b) {
  b->done(b->statuses, b->n, b->arg);
  batch_free(b);
}

static void on_closed_empty(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  finish(arg);
}

static int run_task(void *arg) {
  batch_task_t *t = arg;
  return t->work(t->arg);
}

static void task_ended(tpool_batch_t *b, size_t index, int status) {
  b->statuses[index] = status;
  free(b->tasks[index]);
  b->tasks[index] = NULL;
  b->ended++;
}

static void on_task_done(int status, const tpool_task_info_t *info, void *arg);

/* Submits waiting tasks while fewer than max_in_flight are out. Returns
   true if the batch then finished (and is freed). */
static bool pump(tpool_batch_t *b) {
  while (b->in_flight < b->max_in_flight && b->next < b->n) {
    batch_task_t *t = b->tasks[b->next++];
    int64_t id =
        tpool_submit(b->pool, t->name, run_task, on_task_done, t, &b->opts);
    if (id > 0)
      b->in_flight++;
    else
      task_ended(b, t->index, (int)id);
  }
  if (b->closed && b->ended == b->n) {
    finish(b);
    return true;
  }
  return false;
}

static void on_task_done(int status, const tpool_task_info_t *info, void *arg) {
  (void)info;
  batch_task_t *t = arg;
  tpool_batch_t *b = t->b;
  b->in_flight--;
  task_ended(b, t->index, status);
  pump(b);
}

int tpool_batch_new(tpool_pool_t *pool, unsigned max_in_flight,
                    tpool_batch_done_cb done, void *arg,
                    const tpool_task_opts_t *opts, tpool_batch_t **out) {
  if (!pool || !done || !out || max_in_flight == 0)
    return -EINVAL;
  tpool__bridge_t *bridge =
      tpool__manager_bridge(pool->m, opts ? opts->base : NULL);
  if (!bridge)
    return -EINVAL;
  tpool_batch_t *b = calloc(1, sizeof(*b));
  if (!b)
    return -ENOMEM;
  b->pool = pool;
  b->base = tpool__bridge_base(bridge);
  if (opts)
    b->opts = *opts;
  b->opts.base = b->base;
  b->max_in_flight = max_in_flight;
  b->done = done;
  b->arg = arg;
  *out = b;
  return 0;
}

long tpool_batch_add(tpool_batch_t *b, const char *name, tpool_work_cb work,
                     void *arg) {
  if (!b || b->closed || !work)
    return -EINVAL;
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 16;
    batch_task_t **tasks = realloc(b->tasks, cap * sizeof(*tasks));
    if (!tasks)
      return -ENOMEM;
    b->tasks = tasks;
    int *statuses = realloc(b->statuses, cap * sizeof(*statuses));
    if (!statuses)
      return -ENOMEM;
    b->statuses = statuses;
    b->cap = cap;
  }
  batch_task_t *t = calloc(1, sizeof(*t));
  if (!t)
    return -ENOMEM;
  t->b = b;
  t->index = b->n;
  t->work = work;
  t->arg = arg;
  snprintf(t->name, sizeof(t->name), "%s", name && *name ? name : "batch");
  size_t index = b->n;
  b->tasks[index] = t;
  b->statuses[index] = 0;
  b->n++;
  pump(b); /* may end `t` at once (a refusal); cannot finish the batch */
  return (long)index;
}

int tpool_batch_close(tpool_batch_t *b) {
  if (!b || b->closed)
    return -EINVAL;
  if (b->ended == b->n) {
    static const struct timeval now = {0, 0};
    if (event_base_once(b->base, -1, EV_TIMEOUT, on_closed_empty, b, &now) != 0)
      return -ENOMEM;
  }
  b->closed = true; /* the last task's done callback finishes it */
  return 0;
}
