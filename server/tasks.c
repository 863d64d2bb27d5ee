/*
 * tasks.c — tpool-server's task routes, POST /tasks/{pool}: the
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
 *
 * A task carries its input, copied from the request (task_body.c reads
 * it), to the worker, and its output back to the done callback, which
 * turns it into JSON: the worker never touches the request, the JSON or
 * the route's state.
 */
#include "tasks.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFIX_TASKS "/tasks"
#define ALLOW_GET "GET, HEAD"
#define ALLOW_POST "POST"

/* The index of the tpool-server loop the calling thread runs, set as each
   loop thread starts (0 on any other thread). Replies carry it as "loop":
   the loop that answered, which is the one the request came in on. */
static _Thread_local unsigned current_loop;

void tasks_enter_loop(unsigned index) {
  current_loop = index;
}

/* ---- the work, on a worker thread --------------------------------------- */

static void sleep_ms(unsigned ms) {
  if (ms == 0)
    return; /* nanosleep(0) would still enter the kernel and yield */
  struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR)
    ;
}

/* Burns CPU for ms milliseconds of wall time. */
static void spin_ms(unsigned ms) {
  uint64_t end = server_now_ns() + (uint64_t)ms * 1000000u;
  volatile uint64_t x = 0;
  while (server_now_ns() < end)
    for (int i = 0; i < 1000; i++)
      x += (uint64_t)i;
  (void)x; /* read once: the stores are the point */
}

/* The row of t->key, through this worker's connection (the db pool's
   thread_start hook opened it). */
static int run_query(task_t *t) {
  void *db = tpool_thread_context();
  if (!db) {
    t->why = "no database connection on this worker";
    return -EIO;
  }
  int rc = demo_db_query(db, t->key, &t->out.row);
  if (rc == -ENOENT)
    t->why = "key: no row with this key";
  return rc;
}

static int run_embed(task_t *t) {
  t->vector = malloc(t->dim * sizeof(*t->vector));
  if (!t->vector)
    return -ENOMEM;
  return demo_embed(t->text, t->text_len, t->dim, t->vector, &t->ntokens);
}

static int run_kind(task_t *t) {
  switch (t->kind) {
  case WORK_SPIN:
    spin_ms(t->ms);
    return 0;
  case WORK_FAIL:
    sleep_ms(t->ms);
    return -EIO;
  case WORK_QUERY:
    return run_query(t);
  case WORK_DENSE:
    return demo_dense((unsigned)t->n, &t->out.dense);
  case WORK_EMBED:
    return run_embed(t);
  case WORK_HASH:
    return demo_hash(t->n, t->out.sha256);
  case WORK_READ:
    return demo_read(t->fd, (size_t)t->n, &t->out.fnv1a);
  case WORK_FLAKY: /* the runs of one task never overlap */
    return ++t->runs <= t->failures ? -TPOOL_ERETRY : 0;
  case WORK_SLEEP:
    break;
  }
  sleep_ms(t->ms);
  return 0;
}

int task_run(void *arg) {
  task_t *t = arg;
  int rc = run_kind(t);
  if (rc != 0 && t->why)
    tpool_task_set_error(t->why);
  return rc;
}

/* ---- completion, on the loop thread ------------------------------------- */

/* The outcome word (tpool's, as its routes say it) and the HTTP status a
   task's status maps to. */
static const char *outcome(int status, int *http) {
  switch (status) {
  case 0:
    *http = 200;
    break;
  case -ECANCELED:
  case -TPOOL_ECIRCUIT: /* a retry refused by the circuit breaker */
    *http = 503;
    break;
  case -ETIMEDOUT:
    *http = 504;
    break;
  default:
    *http = 500;
  }
  return tpool_status_word(status);
}

/* A 64-bit checksum as 16 hex digits (JSON integers stop at 2^53). */
static void hex64(char out[17], uint64_t v) {
  snprintf(out, 17, "%016" PRIx64, v);
}

/* The "result" object of a task that succeeded, or NULL for the kinds
   without one (sleep, spin, fail) and when out of memory. */
static json_t *result_json(const task_t *t) {
  char hex[17];
  switch (t->kind) {
  case WORK_QUERY:
    return json_pack("{s:I,s:s,s:I}", "key", (json_int_t)t->out.row.key,
                     "value", t->out.row.value, "weight",
                     (json_int_t)t->out.row.weight);
  case WORK_DENSE:
    hex64(hex, t->out.dense.fnv1a);
    return json_pack("{s:I,s:f,s:I,s:s}", "size", (json_int_t)t->out.dense.size,
                     "sum", t->out.dense.sum, "nonzero",
                     (json_int_t)t->out.dense.nonzero, "fnv1a64", hex);
  case WORK_EMBED: {
    json_t *v = json_array();
    for (unsigned k = 0; v && k < t->dim; k++)
      if (json_array_append_new(v, json_real(t->vector[k])) != 0) {
        json_decref(v);
        v = NULL;
      }
    return json_pack("{s:I,s:I,s:o}", "dimension", (json_int_t)t->dim, "tokens",
                     (json_int_t)t->ntokens, "vector", v);
  }
  case WORK_HASH:
    return json_pack("{s:I,s:s}", "bytes", (json_int_t)t->n, "sha256",
                     t->out.sha256);
  case WORK_READ:
    hex64(hex, t->out.fnv1a);
    return json_pack("{s:I,s:I,s:s}", "bytes", (json_int_t)t->n, "offset",
                     (json_int_t)0, "fnv1a64", hex);
  case WORK_FLAKY:
    return json_pack("{s:I}", "runs", (json_int_t)t->runs);
  case WORK_SLEEP:
  case WORK_SPIN:
  case WORK_FAIL:
    break;
  }
  return NULL;
}

json_t *task_reply_json(const task_t *t, int status,
                        const tpool_task_info_t *info, int *http) {
  const char *word = outcome(status, http);
  json_t *body = json_pack(
      "{s:I,s:s,s:s,s:s,s:I,s:f,s:f,s:I}", "id", (json_int_t)info->id, "pool",
      info->pool, "name", info->name, "status", word, "attempts",
      (json_int_t)info->attempts, "queue_wait_s", info->queue_wait_s, "run_s",
      info->run_s, "loop", (json_int_t)current_loop);
  if (body && status != 0)
    json_object_set_new(body, "error",
                        json_string(t->why ? t->why : tpool_strerror(status)));
  if (body && status == 0 && t->kind > WORK_FAIL) {
    json_t *result = result_json(t);
    if (!result || json_object_set_new(body, "result", result) != 0) {
      json_decref(body);
      body = NULL; /* answered with the fixed out-of-memory 500 */
    }
  }
  return body;
}

/* A record's text, built in a fixed buffer; `full` once something did not
   fit. */
typedef struct text {
  char buf[1024];
  size_t len;
  bool full;
} text_t;

static void put(text_t *x, const char *s, size_t n) {
  if (x->full || n >= sizeof(x->buf) - x->len) {
    x->full = true;
    return;
  }
  memcpy(x->buf + x->len, s, n);
  x->len += n;
}

#define PUT_LITERAL(x, s) put((x), (s), sizeof(s) - 1)

static void put_uint(text_t *x, uint64_t v) {
  char d[24];
  size_t i = sizeof(d);
  do
    d[--i] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  put(x, d + i, sizeof(d) - i);
}

/* A JSON string, quotes included; s is valid UTF-8 (a task name, an
   error message). */
static void put_string(text_t *x, const char *s) {
  static const char hex[] = "0123456789abcdef";
  PUT_LITERAL(x, "\"");
  for (const char *run = s;; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    put(x, run, (size_t)(s - run));
    if (c == '\0')
      break;
    char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
    if (c < 0x20) {
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
    }
    put(x, esc, c < 0x20 ? 6 : 2);
    run = s + 1;
  }
  PUT_LITERAL(x, "\"");
}

/* A number as jansson writes a real: 9 digits, and ".0" where %g alone
   would read back as an integer. */
static void put_real(text_t *x, double v) {
  char d[32];
  int n = snprintf(d, sizeof(d), "%.9g", v);
  put(x, d, n > 0 ? (size_t)n : 0);
  if (n > 0 && strcspn(d, ".eEn") == (size_t)n)
    PUT_LITERAL(x, ".0");
}

char *task_reply_text(const task_t *t, int status,
                      const tpool_task_info_t *info) {
  /* The same members as task_reply_json() (the fuzz target of queued
     entries checks that both say the same), written straight to text:
     a queued task's record is made on the loop for every entry, and
     building jansson objects to print them costs more than the task. */
  int http;
  text_t x;
  x.len = 0;
  x.full = false;
  PUT_LITERAL(&x, "{\"id\":");
  put_uint(&x, (uint64_t)info->id);
  PUT_LITERAL(&x, ",\"pool\":");
  put_string(&x, info->pool);
  PUT_LITERAL(&x, ",\"name\":");
  put_string(&x, info->name);
  PUT_LITERAL(&x, ",\"status\":");
  put_string(&x, outcome(status, &http));
  PUT_LITERAL(&x, ",\"attempts\":");
  put_uint(&x, info->attempts);
  PUT_LITERAL(&x, ",\"queue_wait_s\":");
  put_real(&x, info->queue_wait_s);
  PUT_LITERAL(&x, ",\"run_s\":");
  put_real(&x, info->run_s);
  PUT_LITERAL(&x, ",\"loop\":");
  put_uint(&x, current_loop);
  if (status != 0) {
    PUT_LITERAL(&x, ",\"error\":");
    put_string(&x, t->why ? t->why : tpool_strerror(status));
  }
  char *rest = NULL;
  if (status == 0 && t->kind > WORK_FAIL) {
    json_t *result = result_json(t);
    rest = result ? json_dumps(result, JSON_COMPACT | JSON_REAL_PRECISION(9))
                  : NULL;
    json_decref(result);
    if (!rest)
      return NULL;
  }
  size_t rlen = rest ? strlen(rest) : 0;
  char *out = x.full ? NULL : malloc(x.len + rlen + sizeof(",\"result\":}"));
  if (out) {
    size_t n = x.len;
    memcpy(out, x.buf, n);
    if (rest) {
      memcpy(out + n, ",\"result\":", 10);
      memcpy(out + n + 10, rest, rlen);
      n += 10 + rlen;
    }
    memcpy(out + n, "}", 2);
  }
  free(rest);
  return out;
}

/* Removes an answered request from the waiting list. */
static void answered(task_route_t *d, task_t *t) {
  TAILQ_REMOVE(&d->waiting, t, link);
  d->nwaiting--;
  struct evkeyvalq *h = evhttp_request_get_output_headers(t->req);
  /* This client should reconnect elsewhere (the server may have said so
     already, when the request came in during the drain). */
  if (d->draining && !evhttp_find_header(h, "Connection"))
    evhttp_add_header(h, "Connection", "close");
}

static void on_done(int status, const tpool_task_info_t *info, void *arg) {
  task_t *t = arg;
  task_route_t *d = t->d;
  struct evhttp_request *req = t->req;
  if (req) {
    answered(d, t);
    if (t->kind == WORK_QUERY && status == -ENOENT) {
      tpool_http_reply_error(req, 404, "key: no row %lld", (long long)t->key);
    } else {
      int http;
      json_t *body = task_reply_json(t, status, info, &http);
      tpool_http_reply_json(req, http, body);
    }
  }
  task_free(t);
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

void tasks_abandon(task_route_t *d) {
  /* Only tasks still running are given up on: one that finished or was
     cancelled at the deadline has its completion on the way to this loop
     and is answered with its real outcome. */
  tpool_stats_t *s = NULL;
  if (tpool_manager_stats(d->m, &s) != 0)
    return; /* out of memory: wait for the completions instead */
  task_t *t, *next;
  for (t = TAILQ_FIRST(&d->waiting); t; t = next) {
    next = TAILQ_NEXT(t, link);
    if (t->count <= 1 && !is_running(s, t->id))
      continue; /* a batch, whose tasks may outlive this, is given up on */
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

static void reply_refused(task_route_t *d, struct evhttp_request *req,
                          const char *pool, int rc);
static void submit_batch(task_route_t *d, struct evhttp_request *req,
                         tpool_pool_t *pool, const char *name, task_t *t,
                         const tpool_task_opts_t *opts);

int task_target(task_route_t *d, const task_t *t, const char *by,
                const char *name, const char **pool, char *why, size_t size) {
  if (!*pool) { /* the name picks the pool, through [routes] */
    tpool_pool_t *p = name ? tpool_manager_route(d->m, name) : NULL;
    if (!p) {
      if (name)
        snprintf(why, size, "no route for task name \"%.64s\"", name);
      else
        snprintf(why, size,
                 "name: required by %s, where it picks the pool ([routes])",
                 by);
      return name ? 404 : 400;
    }
    *pool = tpool_pool_name(p);
  }
  return task_pool_allows(t, *pool, why, size);
}

/* Submits the request's task to `pool`, or, when `pool` is NULL, to the
   pool [routes] give its name. */
static void submit(task_route_t *d, struct evhttp_request *req,
                   const char *pool) {
  task_t *t = calloc(1, sizeof(*t));
  if (!t) {
    tpool_http_reply_error(req, 500, "out of memory");
    return;
  }
  const char *name = NULL;
  double start_timeout_s = 0;
  json_t *doc = NULL;
  if (!task_parse_body(d, req, t, &name, &start_timeout_s, &doc)) {
    json_decref(doc);
    task_free(t);
    return;
  }
  char why[160];
  int status = task_target(d, t, "POST /tasks", name, &pool, why, sizeof(why));
  if (status != 0) {
    tpool_http_reply_error(req, status, "%s", why);
    json_decref(doc);
    task_free(t);
    return;
  }
  if (!name)
    name = "task";
  t->d = d;
  t->req = req;
  t->dim = d->embedding_dim;
  t->fd = d->read_fd;
  tpool_task_opts_t opts = {0};
  opts.base = evhttp_connection_get_base(evhttp_request_get_connection(req));
  opts.start_timeout_s = start_timeout_s;
  opts.max_attempts = t->max_attempts;
  opts.delay_s = t->delay_s;
  if (t->count > 1) {
    submit_batch(d, req, tpool_manager_pool(d->m, pool), name, t, &opts);
    json_decref(doc);
    return;
  }
  int64_t id =
      tpool_manager_submit(d->m, pool, name, task_run, on_done, t, &opts);
  json_decref(doc); /* after submit: it copied the name */
  if (id > 0) {
    t->id = id;
    TAILQ_INSERT_TAIL(&d->waiting, t, link);
    d->nwaiting++;
    return;
  }
  task_free(t);
  reply_refused(d, req, pool, (int)id);
}

/* Answers a submit the pool refused with `rc`. */
static void reply_refused(task_route_t *d, struct evhttp_request *req,
                          const char *pool, int rc) {
  struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
  switch (rc) {
  case -TPOOL_ECIRCUIT: {
    /* Retry when the breaker lets trials in. */
    tpool_stats_t *s = NULL;
    const tpool_pool_stats_t *ps =
        tpool_manager_stats(d->m, &s) == 0 ? tpool_stats_pool(s, pool) : NULL;
    char after[32];
    snprintf(after, sizeof(after), "%.0f",
             ps ? ceil(ps->breaker.open_remaining_s) + 1 : 1.0);
    tpool_stats_free(s);
    evhttp_add_header(headers, "Retry-After", after);
    tpool_http_reply_error(req, 503, "pool \"%s\": %s", pool,
                           tpool_strerror(rc));
    break;
  }
  case -EAGAIN:
    evhttp_add_header(headers, "Retry-After", "1");
    tpool_http_reply_error(req, 429, "pool \"%s\" is full: %s", pool,
                           tpool_strerror(rc));
    break;
  case -ESHUTDOWN:
    evhttp_add_header(headers, "Retry-After", "5");
    tpool_http_reply_error(req, 503, "the server is shutting down");
    break;
  case -ENOENT:
    tpool_http_reply_error(req, 404, "no pool named \"%s\"", pool);
    break;
  default:
    tpool_http_reply_error(req, 500, "submit failed: %s", tpool_strerror(rc));
  }
}

/* ---- a batch: "count" copies, "concurrency" at a time, one reply ------- */

static void on_batch_done(const int *statuses, size_t n, void *arg) {
  task_t *t = arg;
  task_route_t *d = t->d;
  struct evhttp_request *req = t->req;
  if (req) {
    answered(d, t);
    int http = 200, each;
    json_t *words = json_array();
    for (size_t i = 0; words && i < n; i++) {
      json_array_append_new(words, json_string(outcome(statuses[i], &each)));
      if (each != 200)
        http = 500;
    }
    tpool_http_reply_json(
        req, http,
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:o,s:f,s:I}", "pool", t->pool_name,
                  "name", t->name, "status", http == 200 ? "ok" : "failed",
                  "count", (json_int_t)t->count, "concurrency",
                  (json_int_t)t->concurrency, "statuses", words, "elapsed_s",
                  (double)(server_now_ns() - t->start_ns) / 1e9, "loop",
                  (json_int_t)current_loop));
  }
  task_free(t);
  if (req && d->on_progress)
    d->on_progress(d->arg);
}

/* Runs t->count copies of t as a tpool batch and answers once, when all
   have ended, with each one's outcome. */
static void submit_batch(task_route_t *d, struct evhttp_request *req,
                         tpool_pool_t *pool, const char *name, task_t *t,
                         const tpool_task_opts_t *opts) {
  unsigned k = t->concurrency ? t->concurrency : t->count;
  bool whole = (t->copies = calloc(t->count, sizeof(*t->copies))) != NULL;
  for (unsigned i = 0; whole && i < t->count; i++) {
    task_t *c = task_copy(t);
    if (!c) {
      t->count = i; /* the copies task_free() is to free */
      whole = false;
      break;
    }
    t->copies[i] = c;
  }
  tpool_batch_t *b = NULL;
  if (!whole || tpool_batch_new(pool, k, on_batch_done, t, opts, &b) != 0) {
    task_free(t);
    tpool_http_reply_error(req, 500, "out of memory starting a batch");
    return;
  }
  t->pool_name = tpool_pool_name(pool); /* lives as long as the manager */
  snprintf(t->name, sizeof(t->name), "%s", name);
  for (unsigned i = 0; i < t->count; i++)
    tpool_batch_add(b, name, task_run, t->copies[i]);
  t->d = d;
  t->req = req;
  t->start_ns = server_now_ns();
  TAILQ_INSERT_TAIL(&d->waiting, t, link);
  d->nwaiting++;
  tpool_batch_close(b);
}

/* ---- GET /tasks/{id} ---------------------------------------------------- */

static void lookup(task_route_t *d, struct evhttp_request *req,
                   const char *idtext) {
  char *end = NULL;
  errno = 0;
  long long id = strtoll(idtext, &end, 10);
  if (!*idtext || *end || errno || id <= 0 || idtext[0] == '+' ||
      idtext[0] == ' ') {
    tpool_http_reply_error(req, 400,
                           "id: expected a task id (a positive integer), got "
                           "\"%.32s\"",
                           idtext);
    return;
  }
  tpool_task_record_t r;
  if (tpool_manager_task(d->m, id, &r) != 0) {
    tpool_http_reply_error(req, 404,
                           "no task #%lld: never submitted, or forgotten "
                           "(each pool remembers its last task_history "
                           "finished tasks)",
                           id);
    return;
  }
  json_t *o = json_pack(
      "{s:I,s:s,s:s,s:s,s:I,s:f,s:f}", "id", (json_int_t)id, "pool", r.pool,
      "name", r.name, "state", tpool_task_state_name(r.state), "attempts",
      (json_int_t)r.attempts, "queue_wait_s", r.queue_wait_s, "run_s", r.run_s);
  if (o && r.state == TPOOL_TASK_DONE) {
    int http;
    json_object_set_new(o, "status", json_string(outcome(r.status, &http)));
    json_object_set_new(o, "code", json_string(tpool_err_name(r.status)));
    if (r.status != 0)
      json_object_set_new(o, "error", json_string(tpool_strerror(r.status)));
    json_object_set_new(o, "ended_ago_s", json_real(r.ended_ago_s));
  }
  tpool_http_reply_json(req, 200, o);
}

/* True for a path segment that can only be a task id: all digits. (Pool
   names may hold digits, but GET is not a pool route.) */
static bool looks_like_id(const char *s) {
  return *s && strspn(s, "0123456789") == strlen(s);
}

bool tasks_handle(task_route_t *d, struct evhttp_request *req,
                  const char *path) {
  size_t n = sizeof(PREFIX_TASKS) - 1;
  if (strncmp(path, PREFIX_TASKS, n) != 0 ||
      (path[n] != '\0' && path[n] != '/'))
    return false;
  const char *pool = path[n] ? path + n + 1 : "";
  enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
  bool is_get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
  if (path[n] && *pool && !strchr(pool, '/') &&
      !tpool_manager_pool(d->m, pool) && (is_get || looks_like_id(pool))) {
    /* GET /tasks/{id}, for any segment that is not a pool's name; another
       method on an id is refused. */
    if (tpool_http_check_method(req, ALLOW_GET))
      lookup(d, req, pool);
  } else if (!tpool_http_check_method(req, ALLOW_POST) ||
             !tpool_http_authorize(d->routes, req)) {
    ;                    /* answered 405 or 401 */
  } else if (!path[n]) { /* POST /tasks: routed by name */
    submit(d, req, NULL);
  } else if (!*pool || strchr(pool, '/')) {
    tpool_http_reply_error(req, 404,
                           "expected POST /tasks or POST /tasks/{pool}");
  } else if (!tpool_manager_pool(d->m, pool)) {
    tpool_http_reply_error(req, 404, "no pool named \"%.64s\"", pool);
  } else {
    submit(d, req, pool);
  }
  return true;
}

void tasks_serve(task_route_t *d, struct evhttp_request *req) {
  char *path;
  if (!tpool_http_check_limits(d->routes, req) ||
      tpool_http_path(req, &path) != 0)
    return; /* answered */
  if (!(d->queue_handle && d->queue_handle(d, req, path)) &&
      !tasks_handle(d, req, path) && !tpool_http_handle(d->routes, req))
    tpool_http_reply_error(req, 404, "no route for %.200s", path);
  free(path);
}
