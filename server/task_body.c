/*
 * task_body.c — the JSON body of POST /tasks[/{pool}]: which work, with
 * which input, under which name, and how (attempts, a start deadline, a
 * delay, a batch of copies). Every field is checked before anything is
 * submitted, and a bad one is answered with a 400 that names it. The
 * task of a [schedule.NAME] section is the same body, with what a
 * schedule adds (task_parse_scheduled()).
 */
#include "tasks.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

const char *const work_names[NWORK] = {"sleep", "spin",  "fail",
                                       "query", "dense", "embed",
                                       "hash",  "read",  "flaky"};
#define WORK_LIST                                                              \
  "\"sleep\", \"spin\", \"fail\", \"query\", \"dense\", \"embed\", "           \
  "\"hash\", \"read\" or \"flaky\""
/* The one field each kind takes besides the fields of every kind. */
static const char *const work_fields[NWORK] = {
    "ms", "ms", "ms", "key", "size", "text", "bytes", "bytes", "failures"};
/* Every field of a body, for the message about an unknown one. */
#define FIELD_LIST                                                             \
  "name, work, start_timeout_s, delay_s, attempts, count, concurrency, ms, "   \
  "key, size, text, bytes, failures"
/* Limits of the fields every kind takes. */
#define ATTEMPTS_MAX 100
#define FAILURES_MAX 100
#define COUNT_MAX 1000

/* Writes the status and message of a body that is refused. */
static void task_fail(task_error_t *e, int status, const char *fmt, ...)
    TPOOL_PRINTF(3, 4);

static void task_fail(task_error_t *e, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  e->status = status;
  vsnprintf(e->message, sizeof(e->message), fmt, ap);
  va_end(ap);
}

/* Reads the value of "work" into t->kind; false after answering 400. */
static bool parse_work(task_error_t *e, json_t *v, task_t *t) {
  const char *w = json_string_value(v);
  size_t k = 0;
  while (w && k < NWORK && strcmp(w, work_names[k]) != 0)
    k++;
  if (!w || k == NWORK) {
    task_fail(e, 400, "work: expected " WORK_LIST);
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
static bool parse_param(task_route_t *d, task_error_t *e, json_t *v,
                        task_t *t) {
  json_int_t n;
  switch (t->kind) {
  case WORK_SLEEP:
  case WORK_SPIN:
  case WORK_FAIL:
    if (!int_in(v, 0, DEMO_MS_MAX, &n)) {
      task_fail(e, 400, "ms: expected an integer 0..%d", DEMO_MS_MAX);
      return false;
    }
    t->ms = (unsigned)n;
    return true;
  case WORK_QUERY:
    if (!json_is_integer(v)) {
      task_fail(e, 400, "key: expected an integer");
      return false;
    }
    t->key = (int64_t)json_integer_value(v);
    return true;
  case WORK_DENSE:
    if (!int_in(v, 1, DEMO_DENSE_MAX, &n)) {
      task_fail(e, 400, "size: expected an integer 1..%u", DEMO_DENSE_MAX);
      return false;
    }
    t->n = (uint64_t)n;
    return true;
  case WORK_EMBED:
    t->text_len = json_string_length(v);
    if (!json_is_string(v) || t->text_len < 1 || t->text_len > DEMO_TEXT_MAX) {
      task_fail(e, 400, "text: expected a string of 1..%u bytes",
                DEMO_TEXT_MAX);
      return false;
    }
    t->text = malloc(t->text_len);
    if (!t->text) {
      task_fail(e, 500, "out of memory");
      return false;
    }
    memcpy(t->text, json_string_value(v), t->text_len);
    return true;
  case WORK_HASH:
    if (!int_in(v, 0, (json_int_t)DEMO_HASH_MAX, &n)) {
      task_fail(e, 400, "bytes: expected an integer 0..%" PRIu64,
                (uint64_t)DEMO_HASH_MAX);
      return false;
    }
    t->n = (uint64_t)n;
    return true;
  case WORK_FLAKY:
    if (!int_in(v, 0, FAILURES_MAX, &n)) {
      task_fail(e, 400, "failures: expected an integer 0..%d", FAILURES_MAX);
      return false;
    }
    t->failures = (unsigned)n;
    return true;
  case WORK_READ:
    if (!int_in(v, 0, (json_int_t)d->read_size, &n)) {
      task_fail(e, 400, "bytes: expected an integer 0..%zu", d->read_size);
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
static bool parse_common(task_error_t *e, const char *key, const json_t *v,
                         task_t *t) {
  static const struct {
    const char *key;
    json_int_t max;
    size_t offset;
  } fields[] = {
      {"attempts", ATTEMPTS_MAX, offsetof(task_t, max_attempts)},
      {"count", COUNT_MAX, offsetof(task_t, count)},
      {"concurrency", COUNT_MAX, offsetof(task_t, concurrency)},
  };
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    if (strcmp(key, fields[i].key) != 0)
      continue;
    json_int_t n;
    if (!int_in(v, 1, fields[i].max, &n)) {
      task_fail(e, 400, "%s: expected an integer 1..%lld", key,
                (long long)fields[i].max);
      return false;
    }
    *(unsigned *)(void *)((char *)t + fields[i].offset) = (unsigned)n;
  }
  return true;
}

bool task_parse_json(task_route_t *d, const char *data, size_t len, task_t *t,
                     const char **name, double *start_timeout_s, json_t **doc,
                     task_error_t *e) {
  json_error_t err;
  json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
  *doc = o;
  if (!o) {
    task_fail(e, 400, "body: invalid JSON at line %d, column %d: %s", err.line,
              err.column, err.text);
    return false;
  }
  if (!json_is_object(o)) {
    task_fail(e, 400, "body: expected a JSON object");
    return false;
  }
  json_t *work = json_object_get(o, "work");
  if (!work) {
    task_fail(e, 400, "work: missing (" WORK_LIST ")");
    return false;
  }
  if (!parse_work(e, work, t))
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
        task_fail(e, 400, "name: expected a string of 1..%d characters",
                  TPOOL_TASK_NAME_MAX - 1);
        return false;
      }
      *name = json_string_value(v);
    } else if (strcmp(key, "start_timeout_s") == 0) {
      double s = json_number_value(v);
      if (!json_is_number(v) || !(s > 0 && s <= 86400)) {
        task_fail(e, 400,
                  "start_timeout_s: expected seconds above 0, up to 86400");
        return false;
      }
      *start_timeout_s = s;
    } else if (strcmp(key, "delay_s") == 0) {
      double s = json_number_value(v);
      if (!json_is_number(v) || !(s > 0 && s <= TASK_DELAY_MAX_S)) {
        task_fail(e, 400, "delay_s: expected seconds above 0, up to %.0f",
                  TASK_DELAY_MAX_S);
        return false;
      }
      t->delay_s = s;
    } else if (!parse_common(e, key, v, t)) {
      return false;
    } else if (strcmp(key, "attempts") == 0 || strcmp(key, "count") == 0 ||
               strcmp(key, "concurrency") == 0) {
      continue; /* read by parse_common() */
    } else if (!is_work_field(key)) {
      task_fail(e, 400, "%.64s: unknown field (expected " FIELD_LIST ")", key);
      return false;
    } else if (strcmp(key, own) != 0) {
      task_fail(e, 400, "%s: not a field of \"%s\" work (it takes %s)", key,
                work_names[t->kind], own);
      return false;
    } else {
      if (!parse_param(d, e, v, t))
        return false;
      has_own = true;
    }
  }
  if (!has_own && t->kind > WORK_FAIL) { /* ms alone has a default */
    task_fail(e, 400, "%s: missing (\"%s\" work needs it)", own,
              work_names[t->kind]);
    return false;
  }
  if (t->delay_s > 0 && t->count > 1) {
    task_fail(e, 400,
              "delay_s: not with count above 1 (a batch starts at once)");
    return false;
  }
  return true;
}

bool task_parse_scheduled(task_route_t *d, const char *data, size_t len,
                          task_t *t, const char **name, double *start_timeout_s,
                          json_t **doc, task_error_t *e) {
  if (!task_parse_json(d, data, len, t, name, start_timeout_s, doc, e))
    return false;
  if (t->count > 1) {
    task_fail(e, 400,
              "count: a schedule runs one task per run (expected 1, got %u)",
              t->count);
    return false;
  }
  if (t->delay_s > 0) {
    task_fail(e, 400, "delay_s: not for a schedule (its runs follow every)");
    return false;
  }
  if (t->kind == WORK_FLAKY) {
    task_fail(e, 400,
              "work: \"flaky\" cannot be scheduled (it counts its runs "
              "across the attempts of one task, which a scheduled run does "
              "not keep); use \"fail\" for runs that fail");
    return false;
  }
  return true;
}

int task_pool_allows(const task_t *t, const char *pool, char *why,
                     size_t size) {
  if (t->kind == WORK_QUERY && strcmp(pool, DB_POOL) != 0) {
    /* Only the db pool's threads open a connection (server.c). */
    snprintf(why, size,
             "work: \"query\" runs on the " DB_POOL " pool, not on \"%.64s\"",
             pool);
    return 400;
  }
  return 0;
}

void task_free(task_t *t) {
  for (unsigned i = 0; t->copies && i < t->count; i++)
    task_free(t->copies[i]);
  free(t->copies);
  free(t->text);
  free(t->vector);
  free(t);
}

task_t *task_copy(const task_t *t) {
  task_t *c = malloc(sizeof(*c));
  if (!c)
    return NULL;
  memcpy(c, t, sizeof(*c));
  c->copies = NULL;
  c->count = 0;
  c->req = NULL;
  c->why = NULL;
  c->vector = NULL;
  c->ntokens = 0;
  c->runs = 0;
  memset(&c->out, 0, sizeof(c->out));
  c->text = t->text_len ? malloc(t->text_len) : NULL;
  if (t->text_len && !c->text) {
    free(c);
    return NULL;
  }
  if (c->text)
    memcpy(c->text, t->text, t->text_len);
  return c;
}

bool task_parse_body(task_route_t *d, struct evhttp_request *req, task_t *t,
                     const char **name, double *start_timeout_s, json_t **doc) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  const char *data = (const char *)evbuffer_pullup(in, -1);
  task_error_t e;
  if (task_parse_json(d, data ? data : "", len, t, name, start_timeout_s, doc,
                      &e))
    return true;
  tpool_http_reply_error(req, e.status, "%s", e.message);
  return false;
}
