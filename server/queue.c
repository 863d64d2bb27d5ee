/*
 * queue.c — tpool-server's durable queue: see queue.h.
 *
 * An entry's "task" field is the body POST /tasks/{pool} takes, checked
 * by the same code (task_body.c), and its task runs the same work
 * (tasks.c); its result record's "result" is the JSON that POST /tasks
 * would have answered. POST /queue checks a body the same way before it
 * adds the entry, so a bad body is a 400 now rather than a failed record
 * later.
 */
#include "queue.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFIX_QUEUE "/queue"
#define PREFIX_TASKS "/tasks/"

/* ---- entries into tasks, tasks into results ------------------------------ */

/* Where a queued task goes, as task_target() says (`pool` NULL: routed by
   `name`), and that it is one task. Returns 0, or the HTTP status after
   writing why. */
static int queue_target(task_route_t *d, const task_t *t, const char *by,
                        const char *pool, const char *name, char *why,
                        size_t size) {
  if (t->count > 1) {
    snprintf(why, size,
             "count: a queued entry is one task (add one entry per copy)");
    return 400;
  }
  if (t->delay_s > 0) {
    /* The consumer holds an entry until its task ends, and reclaim_after
       would hand a long-delayed one to another replica. */
    snprintf(why, size,
             "delay_s: a queued entry runs when a replica reads it (add it "
             "when it is due)");
    return 400;
  }
  return task_target(d, t, by, name, &pool, why, size);
}

int queue_entry_task(void *user, const tpool_redis_entry_t *e,
                     tpool_redis_task_t *out) {
  task_route_t *d = user;
  size_t len = 0, plen = 0;
  const char *body = tpool_redis_entry_get(e, "task", &len);
  const char *pool = tpool_redis_entry_get(e, "pool", &plen);
  if (!body) {
    snprintf(out->error, sizeof(out->error),
             "task: missing (the JSON body of POST /tasks/{pool})");
    return -EINVAL;
  }
  if (pool && (plen == 0 || strlen(pool) != plen)) {
    snprintf(out->error, sizeof(out->error), "pool: expected a pool name");
    return -EINVAL;
  }
  if (pool && !tpool_manager_pool(d->m, pool)) {
    snprintf(out->error, sizeof(out->error), "no pool named \"%.64s\"", pool);
    return -ENOENT;
  }
  task_t *t = calloc(1, sizeof(*t));
  if (!t) {
    snprintf(out->error, sizeof(out->error), "out of memory");
    return -ENOMEM;
  }
  const char *name = NULL;
  double start_timeout_s = 0;
  json_t *doc = NULL;
  task_error_t err;
  char why[160];
  if (!task_parse_json(d, body, len, t, &name, &start_timeout_s, &doc, &err))
    snprintf(out->error, sizeof(out->error), "task: %.240s", err.message);
  else if (queue_target(d, t, "an entry without a pool", pool, name, why,
                        sizeof(why)) != 0)
    snprintf(out->error, sizeof(out->error), "%s", why);
  if (out->error[0]) {
    json_decref(doc);
    task_free(t);
    return -EINVAL;
  }
  snprintf(t->name, sizeof(t->name), "%s", name ? name : "task");
  json_decref(doc);
  t->d = d;
  t->dim = d->embedding_dim;
  t->fd = d->read_fd;
  out->pool = pool;
  out->name = t->name;
  out->work = task_run;
  out->arg = t;
  out->start_timeout_s = start_timeout_s;
  out->max_attempts = t->max_attempts;
  return 0;
}

char *queue_entry_result(void *user, void *arg, int status,
                         const tpool_task_info_t *info,
                         const tpool_redis_entry_t *e) {
  (void)user;
  (void)e;
  task_t *t = arg;
  char *text = NULL;
  if (info)
    text = task_reply_text(t, status, info);
  task_free(t);
  return text;
}

/* ---- POST /queue[/{pool}] ------------------------------------------------ */

/* A request waiting for Redis. */
typedef struct waiting {
  task_route_t *d;
  struct evhttp_request *req;
} waiting_t;

static waiting_t *wait_for_redis(task_route_t *d, struct evhttp_request *req) {
  waiting_t *w = malloc(sizeof(*w));
  if (!w) {
    tpool_http_reply_error(req, 500, "out of memory");
    return NULL;
  }
  w->d = d;
  w->req = req;
  d->nwaiting++;
  return w;
}

/* Answers a request that waited for Redis, and lets a drain go on. */
static void answered(waiting_t *w) {
  task_route_t *d = w->d;
  d->nwaiting--;
  free(w);
  if (d->on_progress)
    d->on_progress(d->arg);
}

static void reply_unreachable(task_route_t *d, struct evhttp_request *req) {
  (void)d;
  evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
  tpool_http_reply_error(req, 503, "Redis is unreachable; try again");
}

static void on_added(void *arg, int rc, const char *id) {
  waiting_t *w = arg;
  if (rc == 0)
    tpool_http_reply_json(w->req, 202, json_pack("{s:s}", "id", id));
  else if (rc == -ENOTCONN)
    reply_unreachable(w->d, w->req);
  else
    tpool_http_reply_error(w->req, 503, "Redis refused the entry");
  answered(w);
}

static void enqueue(task_route_t *d, struct evhttp_request *req,
                    const char *pool) {
  task_t *t = calloc(1, sizeof(*t));
  if (!t) {
    tpool_http_reply_error(req, 500, "out of memory");
    return;
  }
  const char *name = NULL;
  double start_timeout_s = 0;
  json_t *doc = NULL;
  char why[160];
  bool ok = task_parse_body(d, req, t, &name, &start_timeout_s, &doc);
  int status =
      ok ? queue_target(d, t, "POST /queue", pool, name, why, sizeof(why)) : 0;
  if (status != 0) {
    tpool_http_reply_error(req, status, "%s", why);
    ok = false;
  }
  json_decref(doc);
  task_free(t);
  if (!ok)
    return; /* answered */
  if (!tpool_redis_client_connected(d->queue)) {
    reply_unreachable(d, req);
    return;
  }
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  tpool_redis_field_t fields[2] = {{"task", 4,
                                    (const char *)evbuffer_pullup(in, -1),
                                    evbuffer_get_length(in)},
                                   {"pool", 4, pool, pool ? strlen(pool) : 0}};
  waiting_t *w = wait_for_redis(d, req);
  if (!w)
    return;
  int rc = tpool_redis_add(d->queue, fields, pool ? 2 : 1, on_added, w);
  if (rc != 0) {
    if (rc == -ENOTCONN)
      reply_unreachable(d, req);
    else
      tpool_http_reply_error(req, 500, "cannot add the entry: %s",
                             tpool_strerror(rc));
    answered(w);
  }
}

/* ---- GET /tasks/{entry id} ----------------------------------------------- */

typedef struct lookup {
  waiting_t *w;
  char id[TPOOL_REDIS_ID_MAX];
} lookup_t;

static void on_found(void *arg, int rc, const tpool_redis_record_t *r) {
  lookup_t *l = arg;
  struct evhttp_request *req = l->w->req;
  if (rc == -ENOTCONN) {
    reply_unreachable(l->w->d, req);
  } else if (rc != 0) {
    tpool_http_reply_error(req, 503, "Redis lookup failed");
  } else if (r->state == TPOOL_REDIS_UNKNOWN) {
    tpool_http_reply_error(req, 404,
                           "no entry %s: never added, or its result record "
                           "expired ([redis] result_ttl)",
                           l->id);
  } else if (r->state == TPOOL_REDIS_WAITING) {
    tpool_http_reply_json(
        req, 202, json_pack("{s:s,s:s}", "id", l->id, "state", "waiting"));
  } else {
    /* finished_at in whole seconds (a reply's numbers carry 9 digits),
       and how long ago, to the millisecond. */
    json_t *result = json_loads(r->result, JSON_DECODE_ANY, NULL);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double age =
        (double)now.tv_sec + (double)now.tv_nsec / 1e9 - r->finished_at;
    tpool_http_reply_json(req, 200,
                          json_pack("{s:s,s:s,s:s,s:o,s:I,s:s,s:I,s:f}", "id",
                                    l->id, "state", "done", "status", r->status,
                                    "result", result ? result : json_null(),
                                    "attempts", (json_int_t)r->attempts,
                                    "consumer", r->consumer, "finished_at",
                                    (json_int_t)r->finished_at, "age_s",
                                    age > 0 ? floor(age * 1000) / 1000 : 0.0));
  }
  answered(l->w);
  free(l);
}

static void look_up(task_route_t *d, struct evhttp_request *req,
                    const char *id) {
  if (!tpool_http_check_method(req, "GET, HEAD"))
    return;
  if (!tpool_redis_client_connected(d->queue)) {
    reply_unreachable(d, req);
    return;
  }
  lookup_t *l = malloc(sizeof(*l));
  if (!l || !(l->w = wait_for_redis(d, req))) {
    if (l)
      free(l);
    else
      tpool_http_reply_error(req, 500, "out of memory");
    return;
  }
  snprintf(l->id, sizeof(l->id), "%s", id);
  int rc = tpool_redis_lookup(d->queue, id, on_found, l);
  if (rc != 0)
    on_found(l, rc, NULL);
}

bool queue_handle(task_route_t *d, struct evhttp_request *req,
                  const char *path) {
  size_t n = sizeof(PREFIX_QUEUE) - 1;
  if (strncmp(path, PREFIX_TASKS, sizeof(PREFIX_TASKS) - 1) == 0 &&
      tpool_redis_is_entry_id(path + sizeof(PREFIX_TASKS) - 1)) {
    look_up(d, req, path + sizeof(PREFIX_TASKS) - 1);
    return true;
  }
  if (strncmp(path, PREFIX_QUEUE, n) != 0 ||
      (path[n] != '\0' && path[n] != '/'))
    return false;
  const char *pool = path[n] ? path + n + 1 : NULL;
  if (!tpool_http_check_method(req, "POST") ||
      !tpool_http_authorize(d->routes, req))
    return true; /* answered 405 or 401 */
  if (pool && (!*pool || strchr(pool, '/')))
    tpool_http_reply_error(req, 404,
                           "expected POST /queue or POST /queue/{pool}");
  else if (pool && !tpool_manager_pool(d->m, pool))
    tpool_http_reply_error(req, 404, "no pool named \"%.64s\"", pool);
  else
    enqueue(d, req, pool);
  return true;
}

/* ---- health and metrics -------------------------------------------------- */

static json_t *health_json(void *arg) {
  const tpool_redis_consumer_t *c = arg;
  const tpool_redis_options_t *o = tpool_redis_consumer_options(c);
  tpool_redis_stats_t st;
  tpool_redis_consumer_stats(c, &st);
  return json_pack(
      "{s:b,s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I}", "connected",
      st.connected, "stream", o->stream, "group", o->group, "consumer",
      o->consumer, "lag", st.lag >= 0 ? json_integer(st.lag) : json_null(),
      "pending", st.pending >= 0 ? json_integer(st.pending) : json_null(),
      "in_flight", (json_int_t)st.in_flight, "received",
      (json_int_t)st.received, "acked", (json_int_t)st.acked, "reclaimed",
      (json_int_t)st.reclaimed, "dead_lettered", (json_int_t)st.dead_lettered,
      "duplicates", (json_int_t)st.duplicates);
}

static const char *degraded(void *arg, char *msg, size_t cap) {
  const tpool_redis_consumer_t *c = arg;
  tpool_redis_stats_t st;
  tpool_redis_consumer_stats(c, &st);
  if (st.connected)
    return NULL;
  snprintf(msg, cap, "Redis at %s unreachable for %.1f s",
           tpool_redis_consumer_options(c)->url, st.down_s);
  return "redis_unreachable";
}

static int metrics(void *arg, struct evbuffer *out) {
  const tpool_redis_consumer_t *c = arg;
  tpool_redis_stats_t st;
  tpool_redis_consumer_stats(c, &st);
  static const struct {
    const char *name, *type, *help;
  } m[] = {
      {"tpool_redis_connected", "gauge",
       "1 while the consumer's connections to Redis are up"},
      {"tpool_redis_received_total", "counter",
       "Entries delivered to this consumer"},
      {"tpool_redis_acked_total", "counter",
       "Entries acknowledged with their result record"},
      {"tpool_redis_reclaimed_total", "counter",
       "Entries claimed from consumers that left them idle"},
      {"tpool_redis_dead_lettered_total", "counter",
       "Entries moved to the dead-letter stream"},
      {"tpool_redis_duplicate_runs_total", "counter",
       "Runs whose entry was already acknowledged by another run"},
      {"tpool_redis_lag", "gauge",
       "Entries of the stream not yet delivered to the group"},
      {"tpool_redis_pending", "gauge",
       "Entries delivered to the group and not yet acknowledged"},
  };
  double v[] = {st.connected ? 1 : 0,     (double)st.received,
                (double)st.acked,         (double)st.reclaimed,
                (double)st.dead_lettered, (double)st.duplicates,
                (double)st.lag,           (double)st.pending};
  for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
    if (v[i] < 0)
      continue; /* not known yet */
    if (evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n",
                            m[i].name, m[i].help, m[i].name, m[i].type,
                            m[i].name, v[i]) < 0)
      return -ENOMEM;
  }
  return 0;
}

tpool_http_source_t queue_http_source(tpool_redis_consumer_t *c) {
  tpool_http_source_t src = {"redis", health_json, degraded, metrics, c};
  return src;
}
