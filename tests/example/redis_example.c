/* Run the entries of the Redis stream tpool:tasks on tpool's "cpu" pool. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tpool_redis.h>

struct job {
  long n, square;
};

/* A worker of the "cpu" pool: blocking is fine here. */
static int square(void *arg) {
  struct job *job = arg;
  job->square = job->n * job->n;
  return 0;
}

/* The loop thread: an entry {n: "12"} becomes a task. */
static int to_task(void *user, const tpool_redis_entry_t *e,
                   tpool_redis_task_t *t) {
  (void)user;
  size_t len = 0;
  const char *n = tpool_redis_entry_get(e, "n", &len); /* not NUL-ended */
  char text[24] = "", *end = text;
  if (n && len < sizeof(text))
    memcpy(text, n, len);
  long v = strtol(text, &end, 10);
  if (end == text || *end != '\0') {
    snprintf(t->error, sizeof(t->error), "n: expected an integer");
    return -EINVAL; /* never runs: a "failed" record, and acknowledged */
  }
  struct job *job = calloc(1, sizeof(*job));
  if (!job) {
    snprintf(t->error, sizeof(t->error), "out of memory");
    return -ENOMEM;
  }
  job->n = v;
  t->pool = "cpu";
  t->name = "square";
  t->work = square;
  t->arg = job;
  return 0;
}

/* The loop thread, once for every task to_task() made: the record's
   "result" (JSON text), and the job freed. */
static char *to_result(void *user, void *arg, int status,
                       const tpool_task_info_t *info,
                       const tpool_redis_entry_t *e) {
  (void)user;
  (void)info;
  struct job *job = arg;
  char *json = malloc(64);
  if (json && status == 0)
    snprintf(json, 64, "{\"square\":%ld}", job->square);
  else if (json)
    snprintf(json, 64, "{\"error\":\"%s\"}", tpool_strerror(status));
  printf("%s: %s\n", e->id, json ? json : "null");
  free(job);
  return json;
}

struct app {
  struct event_base *base;
  tpool_redis_consumer_t *c;
};

static void stopped(void *arg) { event_base_loopbreak(arg); }

/* SIGTERM: read no more, finish the entries held (for at most 30 s). */
static void on_term(evutil_socket_t sig, short what, void *arg) {
  (void)sig;
  (void)what;
  struct app *app = arg;
  tpool_redis_consumer_stop(app->c, 30.0, stopped, app->base);
}

int main(void) {
  static tpool_options_t opts; /* large: keep it off the stack */
  tpool_options_init(&opts);
  tpool_redis_options_t ro;
  tpool_redis_options_init(&ro); /* tpool:tasks, group tpool, ... */
  strcpy(ro.url, "redis://127.0.0.1:6379");
  ro.to_task = to_task;
  ro.to_result = to_result;

  evthread_use_pthreads(); /* before the first event_base */
  struct app app = {event_base_new(), NULL};
  if (!app.base)
    return 1;
  tpool_manager_t *m = NULL;
  int rc = tpool_manager_new(&opts, &m);
  if (rc == 0)
    rc = tpool_manager_attach(m, app.base);
  if (rc == 0)
    rc = tpool_manager_start(m);
  if (rc == 0)
    rc = tpool_redis_consumer_new(m, app.base, &ro, &app.c);
  struct event *term = evsignal_new(app.base, SIGTERM, on_term, &app);
  if (rc == 0 && term && evsignal_add(term, NULL) == 0)
    event_base_dispatch(app.base); /* until SIGTERM and the stop's end */
  if (rc != 0)
    fprintf(stderr, "tpool: %s\n", tpool_strerror(rc));
  if (m)
    tpool_manager_shutdown(m, 5.0); /* stop intake, drain: at most 5 s */
  tpool_redis_consumer_free(app.c);
  tpool_manager_free(m);
  if (term)
    event_free(term);
  event_base_free(app.base);
  return rc == 0 ? 0 : 1;
}
