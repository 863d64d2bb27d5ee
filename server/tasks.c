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
 *
 * A task carries its input, copied from the request, to the worker, and
 * its output back to the done callback, which turns it into JSON: the
 * worker never touches the request, the JSON or the route's state.
 */
#include "demo_work.h"
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFIX_TASKS "/tasks"

enum work_kind {
  WORK_SLEEP,
  WORK_SPIN,
  WORK_FAIL,
  WORK_QUERY,
  WORK_DENSE,
  WORK_EMBED,
  WORK_HASH,
  WORK_READ,
  WORK_FLAKY
};
static const char *const work_names[] = {"sleep", "spin",  "fail",
                                         "query", "dense", "embed",
                                         "hash",  "read",  "flaky"};
#define NWORK (sizeof(work_names) / sizeof(work_names[0]))
#define WORK_LIST                                                              \
  "\"sleep\", \"spin\", \"fail\", \"query\", \"dense\", \"embed\", "           \
  "\"hash\", \"read\" or \"flaky\""
/* The one field each kind takes besides name, work and start_timeout_s. */
static const char *const work_fields[NWORK] = {
    "ms", "ms", "ms", "key", "size", "text", "bytes", "bytes", "failures"};
/* Every field of a body, for the message about an unknown one. */
#define FIELD_LIST                                                             \
  "name, work, start_timeout_s, attempts, count, concurrency, ms, key, "       \
  "size, text, bytes, failures"
/* Limits of the fields every kind takes. */
#define ATTEMPTS_MAX 100
#define FAILURES_MAX 100
#define COUNT_MAX 1000
/* The pool whose workers hold the database connections. */
#define DB_POOL "db"

struct tpool__demo_task {
  TAILQ_ENTRY(tpool__demo_task) link; /* on d->waiting until answered */
  tpool__demo_t *d;
  int64_t id;
  struct evhttp_request *req; /* NULL once answered without the task */
  enum work_kind kind;
  /* The input, for the worker. */
  unsigned ms;       /* sleep, spin, fail */
  int64_t key;       /* query */
  uint64_t n;        /* dense: size; hash, read: bytes */
  char *text;        /* embed: text_len bytes, not NUL-terminated */
  size_t text_len;   /* embed */
  unsigned dim;      /* embed */
  int fd;            /* read */
  unsigned failures; /* flaky: runs that ask for a retry before success */
  unsigned runs;     /* flaky: runs so far (one worker at a time) */
  /* A batch ("count" > 1): copies of this task run with at most
     `concurrency` in flight, and the request is answered once. */
  unsigned count, concurrency;
  unsigned max_attempts; /* "attempts"; 0: the pool's retry_attempts */
  uint64_t start_ns;
  const char *pool_name; /* a batch's, for its reply */
  char name[TPOOL_TASK_NAME_MAX];
  tpool__demo_task_t **copies;
  /* The output, written by the worker, read by on_done() on the loop. */
  const char *why; /* what went wrong, when tpool_strerror() would not say */
  union {
    tpool__demo_row_t row;
    tpool__demo_dense_t dense;
    char sha256[65];
    uint64_t fnv1a; /* read */
  } out;
  double *vector; /* embed: dim values */
  size_t ntokens; /* embed */
};

/* The index of the tpool-server loop the calling thread runs, set as each
   loop thread starts (0 on any other thread). Replies carry it as "loop":
   the loop that answered, which is the one the request came in on. */
static _Thread_local unsigned current_loop;

void tpool__demo_enter_loop(unsigned index) {
  current_loop = index;
}

static void task_free(tpool__demo_task_t *t) {
  for (unsigned i = 0; t->copies && i < t->count; i++)
    task_free(t->copies[i]);
  free(t->copies);
  free(t->text);
  free(t->vector);
  free(t);
}

/* ---- the work, on a worker thread --------------------------------------- */

static void sleep_ms(unsigned ms) {
  struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR)
    ;
}

/* Burns CPU for ms milliseconds of wall time. */
static void spin_ms(unsigned ms) {
  uint64_t end = tpool__http_now_ns() + (uint64_t)ms * 1000000u;
  volatile uint64_t x = 0;
  while (tpool__http_now_ns() < end)
    for (int i = 0; i < 1000; i++)
      x += (uint64_t)i;
  (void)x; /* read once: the stores are the point */
}

/* The row of t->key, through this worker's connection (the db pool's
   thread_start hook opened it). */
static int run_query(tpool__demo_task_t *t) {
  void *db = tpool_thread_context();
  if (!db) {
    t->why = "no database connection on this worker";
    return -EIO;
  }
  return tpool__demo_db_query(db, t->key, &t->out.row);
}

static int run_embed(tpool__demo_task_t *t) {
  t->vector = malloc(t->dim * sizeof(*t->vector));
  if (!t->vector)
    return -ENOMEM;
  return tpool__demo_embed(t->text, t->text_len, t->dim, t->vector,
                           &t->ntokens);
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
  case WORK_QUERY:
    return run_query(t);
  case WORK_DENSE:
    return tpool__demo_dense((unsigned)t->n, &t->out.dense);
  case WORK_EMBED:
    return run_embed(t);
  case WORK_HASH:
    return tpool__demo_hash(t->n, t->out.sha256);
  case WORK_READ:
    return tpool__demo_read(t->fd, (size_t)t->n, &t->out.fnv1a);
  case WORK_FLAKY: /* the runs of one task never overlap */
    return ++t->runs <= t->failures ? -TPOOL_ERETRY : 0;
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
  case -TPOOL_ECIRCUIT: /* a retry refused by the circuit breaker */
    *http = 503;
    return "refused";
  default:
    *http = 500;
    return "failed";
  }
}

/* A 64-bit checksum as 16 hex digits (JSON integers stop at 2^53). */
static void hex64(char out[17], uint64_t v) {
  snprintf(out, 17, "%016" PRIx64, v);
}

/* The "result" object of a task that succeeded, or NULL for the kinds
   without one (sleep, spin, fail) and when out of memory. */
static json_t *result_json(const tpool__demo_task_t *t) {
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

/* The reply to a task that ran (or was given up on by the pool). */
static json_t *task_json(const tpool__demo_task_t *t, int status,
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

/* Removes an answered request from the waiting list. */
static void answered(tpool__demo_t *d, tpool__demo_task_t *t) {
  TAILQ_REMOVE(&d->waiting, t, link);
  d->nwaiting--;
  struct evkeyvalq *h = evhttp_request_get_output_headers(t->req);
  /* This client should reconnect elsewhere (the server may have said so
     already, when the request came in during the drain). */
  if (d->draining && !evhttp_find_header(h, "Connection"))
    evhttp_add_header(h, "Connection", "close");
}

static void on_done(int status, const tpool_task_info_t *info, void *arg) {
  tpool__demo_task_t *t = arg;
  tpool__demo_t *d = t->d;
  struct evhttp_request *req = t->req;
  if (req) {
    answered(d, t);
    if (t->kind == WORK_QUERY && status == -ENOENT) {
      tpool_http_reply_error(req, 404, "key: no row %lld", (long long)t->key);
    } else {
      int http;
      json_t *body = task_json(t, status, info, &http);
      tpool__http_reply_json(req, http, body);
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

/* Reads the value of "work" into t->kind; false after answering 400. */
static bool parse_work(struct evhttp_request *req, json_t *v,
                       tpool__demo_task_t *t) {
  const char *w = json_string_value(v);
  size_t k = 0;
  while (w && k < NWORK && strcmp(w, work_names[k]) != 0)
    k++;
  if (!w || k == NWORK) {
    tpool_http_reply_error(req, 400, "work: expected " WORK_LIST);
    return false;
  }
  t->kind = (enum work_kind)k;
  return true;
}

/* An integer in lo..hi, or false. */
static bool int_in(const json_t *v, json_int_t lo, json_int_t hi,
                   json_int_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < lo ||
      json_integer_value(v) > hi)
    return false;
  *out = json_integer_value(v);
  return true;
}

/* Reads the field of t->kind (work_fields) into t; false after answering
   400. */
static bool parse_param(tpool__demo_t *d, struct evhttp_request *req, json_t *v,
                        tpool__demo_task_t *t) {
  json_int_t n;
  switch (t->kind) {
  case WORK_SLEEP:
  case WORK_SPIN:
  case WORK_FAIL:
    if (!int_in(v, 0, TPOOL__DEMO_MS_MAX, &n)) {
      tpool_http_reply_error(req, 400, "ms: expected an integer 0..%d",
                             TPOOL__DEMO_MS_MAX);
      return false;
    }
    t->ms = (unsigned)n;
    return true;
  case WORK_QUERY:
    if (!json_is_integer(v)) {
      tpool_http_reply_error(req, 400, "key: expected an integer");
      return false;
    }
    t->key = (int64_t)json_integer_value(v);
    return true;
  case WORK_DENSE:
    if (!int_in(v, 1, TPOOL__DEMO_DENSE_MAX, &n)) {
      tpool_http_reply_error(req, 400, "size: expected an integer 1..%u",
                             TPOOL__DEMO_DENSE_MAX);
      return false;
    }
    t->n = (uint64_t)n;
    return true;
  case WORK_EMBED:
    t->text_len = json_string_length(v);
    if (!json_is_string(v) || t->text_len < 1 ||
        t->text_len > TPOOL__DEMO_TEXT_MAX) {
      tpool_http_reply_error(req, 400, "text: expected a string of 1..%u bytes",
                             TPOOL__DEMO_TEXT_MAX);
      return false;
    }
    t->text = malloc(t->text_len);
    if (!t->text) {
      tpool_http_reply_error(req, 500, "out of memory");
      return false;
    }
    memcpy(t->text, json_string_value(v), t->text_len);
    return true;
  case WORK_HASH:
    if (!int_in(v, 0, (json_int_t)TPOOL__DEMO_HASH_MAX, &n)) {
      tpool_http_reply_error(req, 400, "bytes: expected an integer 0..%" PRIu64,
                             (uint64_t)TPOOL__DEMO_HASH_MAX);
      return false;
    }
    t->n = (uint64_t)n;
    return true;
  case WORK_FLAKY:
    if (!int_in(v, 0, FAILURES_MAX, &n)) {
      tpool_http_reply_error(req, 400, "failures: expected an integer 0..%d",
                             FAILURES_MAX);
      return false;
    }
    t->failures = (unsigned)n;
    return true;
  case WORK_READ:
    if (!int_in(v, 0, (json_int_t)d->read_size, &n)) {
      tpool_http_reply_error(req, 400, "bytes: expected an integer 0..%zu",
                             d->read_size);
      return false;
    }
    t->n = (uint64_t)n;
    return true;
  }
  return false;
}

/* True for the fields some kind of work takes. */
static bool is_work_field(const char *key) {
  for (size_t k = 0; k < NWORK; k++)
    if (strcmp(key, work_fields[k]) == 0)
      return true;
  return false;
}

/* Reads "attempts", "count" and "concurrency", which every kind takes,
   into t; true for any other key; false after answering 400. */
static bool parse_common(struct evhttp_request *req, const char *key,
                         const json_t *v, tpool__demo_task_t *t) {
  static const struct {
    const char *key;
    json_int_t max;
    size_t offset;
  } fields[] = {
      {"attempts", ATTEMPTS_MAX, offsetof(tpool__demo_task_t, max_attempts)},
      {"count", COUNT_MAX, offsetof(tpool__demo_task_t, count)},
      {"concurrency", COUNT_MAX, offsetof(tpool__demo_task_t, concurrency)},
  };
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    if (strcmp(key, fields[i].key) != 0)
      continue;
    json_int_t n;
    if (!int_in(v, 1, fields[i].max, &n)) {
      tpool_http_reply_error(req, 400, "%s: expected an integer 1..%lld", key,
                             (long long)fields[i].max);
      return false;
    }
    *(unsigned *)(void *)((char *)t + fields[i].offset) = (unsigned)n;
  }
  return true;
}

/* Checks the body and fills *t and *name; false after answering 400.
   "work" is read first: the other fields are checked against its kind. */
static bool parse_body(tpool__demo_t *d, struct evhttp_request *req,
                       tpool__demo_task_t *t, const char **name,
                       double *start_timeout_s, json_t **doc) {
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
  json_t *work = json_object_get(o, "work");
  if (!work) {
    tpool_http_reply_error(req, 400, "work: missing (" WORK_LIST ")");
    return false;
  }
  if (!parse_work(req, work, t))
    return false;
  const char *own = work_fields[t->kind];
  bool has_own = false;
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    if (strcmp(key, "work") == 0) {
      continue;
    } else if (strcmp(key, "name") == 0) {
      size_t n = json_string_length(v);
      if (!json_is_string(v) || n == 0 || n >= TPOOL_TASK_NAME_MAX ||
          strlen(json_string_value(v)) != n) {
        tpool_http_reply_error(req, 400,
                               "name: expected a string of 1..%d characters",
                               TPOOL_TASK_NAME_MAX - 1);
        return false;
      }
      *name = json_string_value(v);
    } else if (strcmp(key, "start_timeout_s") == 0) {
      double s = json_number_value(v);
      if (!json_is_number(v) || !(s > 0 && s <= 86400)) {
        tpool_http_reply_error(
            req, 400, "start_timeout_s: expected seconds above 0, up to 86400");
        return false;
      }
      *start_timeout_s = s;
    } else if (!parse_common(req, key, v, t)) {
      return false;
    } else if (strcmp(key, "attempts") == 0 || strcmp(key, "count") == 0 ||
               strcmp(key, "concurrency") == 0) {
      continue; /* read by parse_common() */
    } else if (!is_work_field(key)) {
      tpool_http_reply_error(
          req, 400, "%.64s: unknown field (expected " FIELD_LIST ")", key);
      return false;
    } else if (strcmp(key, own) != 0) {
      tpool_http_reply_error(req, 400,
                             "%s: not a field of \"%s\" work (it takes %s)",
                             key, work_names[t->kind], own);
      return false;
    } else {
      if (!parse_param(d, req, v, t))
        return false;
      has_own = true;
    }
  }
  if (!has_own && t->kind > WORK_FAIL) { /* ms alone has a default */
    tpool_http_reply_error(req, 400, "%s: missing (\"%s\" work needs it)", own,
                           work_names[t->kind]);
    return false;
  }
  return true;
}

static void reply_refused(tpool__demo_t *d, struct evhttp_request *req,
                          const char *pool, int rc);
static void submit_batch(tpool__demo_t *d, struct evhttp_request *req,
                         tpool_pool_t *pool, const char *name,
                         tpool__demo_task_t *t, const tpool_task_opts_t *opts);

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
  if (!parse_body(d, req, t, &name, &start_timeout_s, &doc)) {
    json_decref(doc);
    task_free(t);
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
      task_free(t);
      return;
    }
    pool = tpool_pool_name(p);
  }
  if (t->kind == WORK_QUERY && strcmp(pool, DB_POOL) != 0) {
    /* Only the db pool's threads open a connection (server.c). */
    tpool_http_reply_error(
        req, 400,
        "work: \"query\" runs on the " DB_POOL " pool, not on \"%.64s\"", pool);
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
  if (t->count > 1) {
    submit_batch(d, req, tpool_manager_pool(d->m, pool), name, t, &opts);
    json_decref(doc);
    return;
  }
  int64_t id =
      tpool_manager_submit(d->m, pool, name, run_work, on_done, t, &opts);
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
static void reply_refused(tpool__demo_t *d, struct evhttp_request *req,
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
  tpool__demo_task_t *t = arg;
  tpool__demo_t *d = t->d;
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
    tpool__http_reply_json(
        req, http,
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:o,s:f,s:I}", "pool", t->pool_name,
                  "name", t->name, "status", http == 200 ? "ok" : "failed",
                  "count", (json_int_t)t->count, "concurrency",
                  (json_int_t)t->concurrency, "statuses", words, "elapsed_s",
                  (double)(tpool__http_now_ns() - t->start_ns) / 1e9, "loop",
                  (json_int_t)current_loop));
  }
  task_free(t);
  if (req && d->on_progress)
    d->on_progress(d->arg);
}

/* Runs t->count copies of t as a tpool batch and answers once, when all
   have ended, with each one's outcome. */
static void submit_batch(tpool__demo_t *d, struct evhttp_request *req,
                         tpool_pool_t *pool, const char *name,
                         tpool__demo_task_t *t, const tpool_task_opts_t *opts) {
  unsigned k = t->concurrency ? t->concurrency : t->count;
  bool whole = (t->copies = calloc(t->count, sizeof(*t->copies))) != NULL;
  for (unsigned i = 0; whole && i < t->count; i++) {
    tpool__demo_task_t *c = malloc(sizeof(*c));
    if (c) {
      memcpy(c, t, sizeof(*c));
      c->copies = NULL;
      c->count = 0;
      c->req = NULL;
      c->text = t->text_len ? malloc(t->text_len) : NULL;
      if (c->text)
        memcpy(c->text, t->text, t->text_len);
    }
    if (!c || (t->text_len && !c->text)) {
      free(c);
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
    tpool_batch_add(b, name, run_work, t->copies[i]);
  t->d = d;
  t->req = req;
  t->start_ns = tpool__http_now_ns();
  TAILQ_INSERT_TAIL(&d->waiting, t, link);
  d->nwaiting++;
  tpool_batch_close(b);
}

/* ---- GET /tasks/{id} ---------------------------------------------------- */

static void lookup(tpool__demo_t *d, struct evhttp_request *req,
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
  tpool__http_reply_json(req, 200, o);
}

/* True for a path segment that can only be a task id: all digits. (Pool
   names may hold digits, but GET is not a pool route.) */
static bool looks_like_id(const char *s) {
  return *s && strspn(s, "0123456789") == strlen(s);
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
  bool is_get = tpool__http_method_is(req, false);
  if (path[n] && *pool && !strchr(pool, '/') &&
      !tpool_manager_pool(d->m, pool) && (is_get || looks_like_id(pool))) {
    /* GET /tasks/{id}, for any segment that is not a pool's name; another
       method on an id is refused. */
    if (!is_get)
      tpool__http_reply_405(req, "GET, HEAD");
    else
      lookup(d, req, pool);
  } else if (!tpool__http_method_is(req, true))
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
