/*
 * task.c — task records: where they come from, how a task ends, and how
 * an ended task reaches its loop.
 *
 * Every path that ends a task — its work returned, it was cancelled, its
 * start deadline passed, a shutdown cancelled it, a retry was refused, the
 * pool was freed with it still queued — goes through tpool__task_end(),
 * under the pool's lock. So the accounting invariant
 *   submitted = rejected + completed + failed + cancelled + expired
 * depends on this one function counting each accepted task exactly once,
 * and on submit (pool.c) counting it submitted.
 * The hand-over to the loop (tpool__task_post) is separate only in time: a
 * worker ends its task under the lock and posts it after unlocking, so
 * that the post — a push on the loop's bridge and at times an eventfd
 * write — stays out of the critical section. Every other path posts at
 * once, under the lock, so a pool never looks finished while a completion
 * is still on its way.
 */
#include "pools_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Task records are recycled through a small free list per thread instead
 * of going back to malloc: a record is usually allocated by the loop
 * thread (a submit from a done callback or a request handler) and freed
 * by the same thread after its done callback, so the list stays warm and
 * neither side touches the allocator's locks. Hand-written because it is
 * a dozen lines; a general allocator would have to be thread-safe.
 */
#define TASK_CACHE_MAX 256

typedef struct {
  tpool__task_t *head; /* linked through node.next */
  unsigned n;
  bool registered; /* the exit destructor knows about this thread */
} task_cache_t;

static _Thread_local task_cache_t task_cache;
static pthread_key_t task_cache_key;
static pthread_once_t task_cache_once = PTHREAD_ONCE_INIT;
static bool task_cache_key_ok;

/* Frees the calling thread's cached records; runs as the thread exits. */
static void task_cache_release(void *unused) {
  (void)unused;
  tpool__task_t *t;
  while ((t = task_cache.head)) {
    task_cache.head = (tpool__task_t *)t->node.next;
    free(t);
  }
  task_cache.n = 0;
  task_cache.registered = false;
}

static void task_cache_init(void) {
  task_cache_key_ok =
      pthread_key_create(&task_cache_key, task_cache_release) == 0;
}

tpool__task_t *tpool__task_new(void) {
  tpool__task_t *t = task_cache.head;
  if (!t)
    return malloc(sizeof(tpool__task_t));
  task_cache.head = (tpool__task_t *)t->node.next;
  task_cache.n--;
  return t;
}

void tpool__task_free(tpool__task_t *t) {
  if (task_cache.n == TASK_CACHE_MAX) {
    free(t);
    return;
  }
  if (!task_cache.registered) { /* once per thread: free the list at exit */
    pthread_once(&task_cache_once, task_cache_init);
    if (!task_cache_key_ok ||
        pthread_setspecific(task_cache_key, &task_cache) != 0) {
      free(t);
      return;
    }
    task_cache.registered = true;
  }
  t->node.next = (tpool__node_t *)task_cache.head; /* node comes first */
  task_cache.head = t;
  task_cache.n++;
}

/* "ThreadPool[cpu] Task #42: <message>" */
void tpool__log_task(tpool_pool_t *p, tpool_log_level_t lv, int64_t id,
                     const char *fmt, ...) {
  tpool__log_t *log = &p->m->log;
  if (!tpool__log_enabled(log, lv))
    return;
  char msg[512];
  int n = snprintf(msg, sizeof(msg), "ThreadPool[%s] Task #%" PRId64 ": ",
                   p->name, id);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
  va_end(ap);
  tpool__log_write(log, lv, msg);
}

/* ---- ending ------------------------------------------------------------- */

_Thread_local bool tpool__work_error_set;
_Thread_local char tpool__work_error[TPOOL_ERROR_MESSAGE_MAX];

void tpool_task_set_error(const char *message) {
  tpool__work_error_set = message != NULL;
  if (message)
    snprintf(tpool__work_error, sizeof(tpool__work_error), "%s", message);
}

/* Remembers t as the pool's last error: what its work said if it ran and
   said something, else the status's own words. Under mu. */
static void note_error(tpool_pool_t *p, const tpool__task_t *t,
                       tpool__run_t ran) {
  tpool__last_error_t *e = &p->last_error;
  e->set = true;
  e->id = t->id;
  e->status = t->status;
  e->end_ns = t->end_ns;
  memcpy(e->name, t->name, sizeof(e->name));
  const char *msg = ran == TPOOL__RAN && tpool__work_error_set
                        ? tpool__work_error
                        : tpool_strerror(t->status);
  snprintf(e->message, sizeof(e->message), "%s", msg);
}

void tpool__task_end(tpool_pool_t *p, tpool__task_t *t, int status,
                     tpool__run_t ran, uint64_t now, tpool__task_t **later) {
  t->status = status;
  t->end_ns = now;
  if (ran == TPOOL__RAN) {
    if (status == 0)
      p->completed++;
    else
      p->failed++;
  } else {
    if (status == -ECANCELED)
      p->cancelled++;
    else if (status == -ETIMEDOUT)
      p->expired++;
    else
      p->failed++;
    /* A trial admitted for an attempt that never ran gives its place back
       (a task waiting out a backoff holds none: its last run decided). */
    tpool__breaker_unadmit(&p->breaker, t->trial_gen);
  }
  if (status != 0 && status != -ECANCELED)
    note_error(p, t, ran);
  tpool__history_add(p, t);
  if (t->on_end)
    t->on_end(status, t->arg);
  if (later)
    *later = t;
  else
    tpool__task_post(t);
}

void tpool__task_end_queued(tpool_pool_t *p, tpool__task_t *t, int status,
                            uint64_t now) {
  tpool__queue_remove(p, t);
  tpool__task_end(p, t, status, TPOOL__NOT_RUN, now, NULL);
}

/* ---- to the loop -------------------------------------------------------- */

/*
 * A task that waited in the queue ran on a saturated pool: its done
 * callback may wait a little more, an eighth of that queue wait and at
 * most 1 ms, so that a flood of completions shares one loop wakeup (see
 * loop_bridge.c). A task that started at once, the common case below
 * saturation and always with one task in flight, is posted at once.
 */
#define COALESCE_SHARE 8
#define COALESCE_MAX_NS 1000000ull

void tpool__task_post(tpool__task_t *t) {
  if (!t->done) { /* its loop, if it has one, was only for retries */
    free(t);      /* on a worker, which rarely submits: caching would hoard */
    return;
  }
  uint64_t delay = 0;
  if (t->start_ns > t->submit_ns) {
    delay = (t->start_ns - t->submit_ns) / COALESCE_SHARE;
    if (delay > COALESCE_MAX_NS)
      delay = COALESCE_MAX_NS;
  }
  tpool__bridge_post_within(t->bridge, &t->node, t->end_ns, delay);
}

void tpool__task_discard(tpool__node_t *node, void *arg) {
  (void)arg;
  tpool__task_free((tpool__task_t *)node);
}

void tpool__task_deliver(tpool__node_t *node, void *arg) {
  (void)arg;
  tpool__task_t *t = (tpool__task_t *)node;
  uint64_t left_queue = t->start_ns ? t->start_ns : t->end_ns;
  tpool_task_info_t info = {
      .id = t->id,
      .pool = t->pool->name,
      .name = t->name,
      .queue_wait_s = tpool__ns_to_s(left_queue - t->submit_ns),
      .run_s = t->start_ns ? tpool__ns_to_s(t->end_ns - t->start_ns) : 0.0,
      .attempts = t->attempt,
  };
  t->done(t->status, &info, t->arg);
  tpool__task_free(t);
}
