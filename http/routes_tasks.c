/*
 * routes_tasks.c — tpool-server's demo route, POST /tasks/{pool}: the
 * embedding pattern end to end. The loop parses the request, offloads the
 * work to the named pool and returns at once; the reply is sent from the
 * task's done callback, back on the loop thread, so a slow task never
 * holds the loop.
 *
 * A client may disconnect before its task completes. libevent 2.1 stops
 * reading a connection once a request is complete, so it notices the
 * disconnect only when the reply is written: the request object stays
 * valid until then, the done callback can always reply, and the failed
 * write frees the request and its connection. Nothing else refers to the
 * request afterwards.
 */
#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFIX_TASKS "/tasks"

enum work_kind { WORK_SLEEP, WORK_SPIN, WORK_FAIL };
static const char *const work_names[] = {"sleep", "spin", "fail"};
#define NWORK (sizeof(work_names) / sizeof(work_names[0]))

struct tpool__demo_task {
  TAILQ_ENTRY(tpool__demo_task) link; /* on d->waiting until answered */
  tpool__demo_t *d;
  int64_t id;
  struct evhttp_request *req; /* NULL once answered without the task */
  enum work_kind kind;
  unsigned ms;
};

/* ---- the work, on a worker thread --------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms) {
  struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR)
    ;
}

/* Burns CPU for ms milliseconds of wall time. */
static void spin_ms(unsigned ms) {
  uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
  volatile uint64_t x = 0;
  while (now_ns() < end)
    for (int i = 0; i < 1000; i++)
      x += (uint64_t)i;
  (void)x; /* read once: the stores are the point */
}

static int run_work(void *arg) {
  tpool__demo_task_t *t = arg;
  switch (t->kind) {
  case WORK_SPIN:
    spin_ms(t->ms);
    return 0;
  case WORK_FAIL:
    sleep_ms(t->ms);
    return -EIO;
  case WORK_SLEEP:
    break;
  }
  sleep_ms(t->ms);
  return 0;
}

/* ---- completion, on the loop thread ------------------------------------- */

/* The outcome word and the HTTP status a task's status maps to. */
static const char *outcome(int status, int *http) {
  switch (status) {
  case 0:
    *http = 200;
    return "ok";
  case -ECANCELED:
    *http = 503;
    return "cancelled";
  case -ETIMEDOUT:
    *http = 504;
    return "expired";
  default:
    *http = 500;
    return "failed";
  }
}

static void on_done(int status, const tpool_task_info_t *info, void *arg) {
  tpool__demo_task_t *t = arg;
  tpool__demo_t *d = t->d;
  struct evhttp_request *req = t->req;
  if (req) {
    TAILQ_REMOVE(&d->waiting, t, link);
    d->nwaiting--;
    int http;
    const char *word = outcome(status, &http);
    json_t *body =
        json_pack("{s:I,s:s,s:s,s:s,s:f,s:f}", "id", (json_int_t)info->id,
                  "pool", info->pool, "name", info->name, "status", word,
                  "queue_wait_s", info->queue_wait_s, "run_s", info->run_s);
    if (body && status != 0)
      json_object_set_new(body, "error", json_string(tpool_strerror(status)));
    if (d->draining) /* this client should reconnect elsewhere */
      evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                        "close");
    tpool__http_reply_json(req, http, body);
  }
  free(t);
  if (req && d->on_progress)
    d->on_progress(d->arg);
}

/* True when task `id` is running in snapshot *s. */
static bool is_running(const tpool_stats_t *s, int64_t id) {
  for (size_t i = 0; i < s->npools; i++)
    for (size_t j = 0; j < s->pools[i].nactive; j++)
      if (s->pools[i].active[j].id == id)
        return true;
  return false;
}

void tpool__demo_abandon(tpool__demo_t *d) {
  /* Only tasks still running are given up on: one that finished or was
     cancelled at the deadline has its completion on the way to this loop
     and is answered with its real outcome. */
  tpool_stats_t *s = NULL;
  if (tpool_manager_stats(d->m, &s) != 0)
    return; /* out of memory: wait for the completions instead */
  tpool__demo_task_t *t, *next;
  for (t = TAILQ_FIRST(&d->waiting); t; t = next) {
    next = TAILQ_NEXT(t, link);
    if (!is_running(s, t->id))
      continue;
    TAILQ_REMOVE(&d->waiting, t, link);
    d->nwaiting--;
    tpool_http_reply_error(t->req, 503,
                           "the server stopped while this task was still "
                           "running (task #%lld)",
                           (long long)t->id);
    t->req = NULL; /* its done callback, if it ever runs, only frees t */
  }
  tpool_stats_free(s);
}

/* ---- the request -------------------------------------------------------- */

/* Checks the body and fills *t and *name; false after answering 400. */
static bool parse_body(struct evhttp_request *req, tpool__demo_task_t *t,
                       const char **name, double *start_timeout_s,
                       json_t **doc) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  const char *data = (const char *)evbuffer_pullup(in, -1);
  json_error_t err;
  json_t *o = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES, &err);
  *doc = o;
  if (!o) {
    tpool_http_reply_error(req, 400,
                           "body: invalid JSON at line %d, column %d: %s",
                           err.line, err.column, err.text);
    return false;
  }
  if (!json_is_object(o)) {
    tpool_http_reply_error(req, 400, "body: expected a JSON object");
    return false;
  }
  const char *key;
  json_t *v;
  bool has_work = false;
  json_object_foreach(o, key, v) {
    if (strcmp(key, "name") == 0) {
      size_t n = json_string_length(v);
      if (!json_is_string(v) || n == 0 || n >= TPOOL_TASK_NAME_MAX ||
          strlen(json_string_value(v)) != n) {
        tpool_http_reply_error(req, 400,
                               "name: expected a string of 1..%d characters",
                               TPOOL_TASK_NAME_MAX - 1);
        return false;
      }
      *name = json_string_value(v);
    } else if (strcmp(key, "work") == 0) {
      const char *w = json_string_value(v);
      size_t k = 0;
      while (w && k < NWORK && strcmp(w, work_names[k]) != 0)
        k++;
      if (!w || k == NWORK) {
        tpool_http_reply_error(
            req, 400, "work: expected \"sleep\", \"spin\" or \"fail\"");
        return false;
      }
      t->kind = (enum work_kind)k;
      has_work = true;
    } else if (strcmp(key, "ms") == 0) {
      json_int_t ms = json_integer_value(v);
      if (!json_is_integer(v) || ms < 0 || ms > TPOOL__DEMO_MS_MAX) {
        tpool_http_reply_error(req, 400, "ms: expected an integer 0..%d",
                               TPOOL__DEMO_MS_MAX);
        return false;
      }
      t->ms = (unsigned)ms;
    } else if (strcmp(key, "start_timeout_s") == 0) {
      double s = json_number_value(v);
      if (!json_is_number(v) || !(s > 0 && s <= 86400)) {
        tpool_http_reply_error(
            req, 400, "start_timeout_s: expected seconds above 0, up to 86400");
        return false;
      }
      *start_timeout_s = s;
    } else {
      tpool_http_reply_error(req, 400,
                             "%.64s: unknown field (expected name, work, ms, "
                             "start_timeout_s)",
                             key);
      return false;
    }
  }
  if (!has_work) {
    tpool_http_reply_error(req, 400,
                           "work: missing (\"sleep\", \"spin\" or \"fail\")");
    return false;
  }
  return true;
}

/* Submits the request's task to `pool`, or, when `pool` is NULL, to the
   pool [routes] give its name. */
static void submit(tpool__demo_t *d, struct evhttp_request *req,
                   const char *pool) {
  tpool__demo_task_t *t = calloc(1, sizeof(*t));
  if (!t) {
    tpool_http_reply_error(req, 500, "out of memory");
    return;
  }
  const char *name = NULL;
  double start_timeout_s = 0;
  json_t *doc = NULL;
  if (!parse_body(req, t, &name, &start_timeout_s, &doc)) {
    json_decref(doc);
    free(t);
    return;
  }
  if (!pool) { /* POST /tasks: the name picks the pool, through [routes] */
    tpool_pool_t *p = name ? tpool_manager_route(d->m, name) : NULL;
    if (!p) {
      if (name)
        tpool_http_reply_error(req, 404, "no route for task name \"%.64s\"",
                               name);
      else
        tpool_http_reply_error(req, 400,
                               "name: required by POST /tasks, where it "
                               "picks the pool ([routes])");
      json_decref(doc);
      free(t);
      return;
    }
    pool = tpool_pool_name(p);
  }
  if (!name)
    name = "task";
  t->d = d;
  t->req = req;
  tpool_task_opts_t opts = {0};
  opts.base = evhttp_connection_get_base(evhttp_request_get_connection(req));
  opts.start_timeout_s = start_timeout_s;
  int64_t id =
      tpool_manager_submit(d->m, pool, name, run_work, on_done, t, &opts);
  json_decref(doc); /* after submit: it copied the name */
  if (id > 0) {
    t->id = id;
    TAILQ_INSERT_TAIL(&d->waiting, t, link);
    d->nwaiting++;
    return;
  }
  free(t);
  struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
  switch (id) {
  case -EAGAIN:
    evhttp_add_header(headers, "Retry-After", "1");
    tpool_http_reply_error(req, 429, "pool \"%s\" is full: %s", pool,
                           tpool_strerror((int)id));
    break;
  case -ESHUTDOWN:
    evhttp_add_header(headers, "Retry-After", "5");
    tpool_http_reply_error(req, 503, "the server is shutting down");
    break;
  case -ENOENT:
    tpool_http_reply_error(req, 404, "no pool named \"%s\"", pool);
    break;
  default:
    tpool_http_reply_error(req, 500, "submit failed: %s",
                           tpool_strerror((int)id));
  }
}

bool tpool__demo_handle(tpool__demo_t *d, struct evhttp_request *req) {
  char *path = tpool__http_path(req);
  if (!path)
    return false;
  size_t n = sizeof(PREFIX_TASKS) - 1;
  if (strncmp(path, PREFIX_TASKS, n) != 0 ||
      (path[n] != '\0' && path[n] != '/')) {
    free(path);
    return false;
  }
  const char *pool = path[n] ? path + n + 1 : "";
  if (!tpool__http_method_is(req, true))
    tpool__http_reply_405(req, "POST");
  else if (!tpool_http_authorize(d->routes, req))
    ;                /* answered 401 */
  else if (!path[n]) /* POST /tasks: routed by name */
    submit(d, req, NULL);
  else if (!*pool || strchr(pool, '/'))
    tpool_http_reply_error(req, 404,
                           "expected POST /tasks or POST /tasks/{pool}");
  else if (!tpool_manager_pool(d->m, pool))
    tpool_http_reply_error(req, 404, "no pool named \"%.64s\"", pool);
  else
    submit(d, req, pool);
  free(path);
  return true;
}

void tpool__demo_serve(tpool__demo_t *d, struct evhttp_request *req) {
  if (!tpool_http_check_limits(d->routes, req) || tpool__demo_handle(d, req) ||
      tpool_http_handle(d->routes, req))
    return;
  char *path = tpool__http_path(req);
  tpool_http_reply_error(req, 404, "no route for %.200s",
                         path ? path : "this path");
  free(path);
}
