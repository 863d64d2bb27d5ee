/*
 * config.c — tpool-server's config file: see config.h. The HTTP layer's
 * part of [http] comes from tpool_http_config_section(); the server adds
 * a second section named "http" with its own two keys, [demo], and the
 * family [schedule.NAME], whose task is checked after the load as POST
 * /tasks checks a body (task_body.c).
 */
#include "config.h"
#include "tasks.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVER(f) offsetof(server_options_t, f)
#define DEMO(f) offsetof(demo_options_t, f)

static const tpool_config_key_t http_keys[] = {
    {"listen", TPOOL_CONFIG_ADDRESS, 0, 65535, SERVER(listen), NULL, NULL},
    {"loop_threads", TPOOL_CONFIG_UINT, 1, LOOP_THREADS_MAX,
     SERVER(loop_threads), NULL, NULL},
};

static const tpool_config_key_t demo_keys[] = {
    {"data_dir", TPOOL_CONFIG_PATH, 1, TPOOL_PATH_MAX - 1, DEMO(data_dir), NULL,
     NULL},
    {"embedding_dim", TPOOL_CONFIG_UINT, 1, DEMO_EMBEDDING_DIM_MAX,
     DEMO(embedding_dim), NULL, NULL},
    {"db_rows", TPOOL_CONFIG_COUNT, 1, (double)DEMO_DB_ROWS_MAX, DEMO(db_rows),
     NULL, NULL},
};

#define SCHED(f) offsetof(schedule_options_t, f)

/* A pool name as [pool.NAME] has one (1..31 of a-z 0-9 _ -), or nothing:
   the task's name picks the pool through [routes]. */
static bool pool_or_nothing(const char *v) {
  return strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(v);
}

static bool overlap_ok(const char *v) {
  return strcmp(v, "skip") == 0 || strcmp(v, "queue") == 0;
}

/* `task` is read as a PATH, the loader's one type that takes any bytes,
   blanks included, and never quotes them back: JSON has blanks. */
static const tpool_config_key_t schedule_keys[] = {
    {"pool", TPOOL_CONFIG_STRING, 0, TPOOL_NAME_MAX - 1, SCHED(pool),
     pool_or_nothing, "expected a pool name (a-z, 0-9, _ and -), or nothing"},
    {"every", TPOOL_CONFIG_SECONDS, TPOOL_SCHEDULE_EVERY_MIN_S,
     TPOOL_SCHEDULE_EVERY_MAX_S, SCHED(every_s), NULL, NULL},
    {"jitter", TPOOL_CONFIG_RATIO, 0, 1, SCHED(jitter), NULL, NULL},
    {"overlap", TPOOL_CONFIG_STRING, 4, 5, SCHED(overlap), overlap_ok,
     "expected skip or queue"},
    {"task", TPOOL_CONFIG_PATH, 0, SCHEDULE_TASK_MAX, SCHED(task), NULL, NULL},
    {"enabled", TPOOL_CONFIG_BOOL, 0, 1, SCHED(enabled), NULL, NULL},
    {"alert_after", TPOOL_CONFIG_UINT, 0, SCHEDULE_ALERT_AFTER_MAX,
     SCHED(alert_after), NULL, NULL},
};

const schedule_options_t schedule_defaults = {
    .every_s = 60, .jitter = 0, .overlap = "skip", .enabled = true};

tpool_overlap_t schedule_overlap(const schedule_options_t *o) {
  return strcmp(o->overlap, "queue") == 0 ? TPOOL_OVERLAP_QUEUE
                                          : TPOOL_OVERLAP_SKIP;
}

#ifdef TPOOL_SERVER_REDIS
#define NSECTIONS 5
#else
#define NSECTIONS 4
#endif
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The sections of *c besides tpool's own, in the order their keys are
   looked up and checked. */
static void sections(server_config_t *c, tpool_config_section_t s[NSECTIONS]) {
  s[0] = (tpool_config_section_t){"http",
                                  http_keys,
                                  NELEMS(http_keys),
                                  &c->server,
                                  sizeof(c->server),
                                  0,
                                  NULL,
                                  NULL,
                                  0,
                                  0};
  s[1] = tpool_http_config_section(&c->http);
  s[2] = (tpool_config_section_t){"demo",
                                  demo_keys,
                                  NELEMS(demo_keys),
                                  &c->server.demo,
                                  sizeof(c->server.demo),
                                  0,
                                  NULL,
                                  NULL,
                                  0,
                                  0};
#ifdef TPOOL_SERVER_REDIS
  s[3] = tpool_redis_config_section(&c->redis);
#endif
  s[NSECTIONS - 1] = (tpool_config_section_t){
      "schedule.*",   schedule_keys,           NELEMS(schedule_keys),
      c->schedules,   sizeof(c->schedules[0]), SCHEDULES_MAX,
      &c->nschedules, &schedule_defaults,      SCHED(name),
      SCHED(line)};
}

void server_config_init(server_config_t *c) {
  memset(c, 0, sizeof(*c));
  tpool_options_init(&c->core);
  tpool_http_options_init(&c->http);
#ifdef TPOOL_SERVER_REDIS
  tpool_redis_options_init(&c->redis);
#endif
  strcpy(c->server.listen.host, "127.0.0.1");
  c->server.listen.port = 8080;
  c->server.loop_threads = 1;
  strcpy(c->server.demo.data_dir, "tpool-data");
  c->server.demo.embedding_dim = 384;
  c->server.demo.db_rows = 10000;
}

void schedule_error(tpool_config_error_t *err, const char *file,
                    const schedule_options_t *o, const char *key,
                    const char *fmt, ...) {
  if (!err)
    return;
  memset(err, 0, sizeof(*err));
  snprintf(err->file, sizeof(err->file), "%s", file ? file : "options");
  err->line = o->line;
  snprintf(err->key, sizeof(err->key), "[schedule.%s] %s", o->name, key);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof(err->message), fmt, ap);
  va_end(ap);
  if (o->line > 0)
    snprintf(err->text, sizeof(err->text), "%s:%d: %s: %s", err->file, o->line,
             err->key, err->message);
  else
    snprintf(err->text, sizeof(err->text), "%s: %s: %s", err->file, err->key,
             err->message);
}

/* The pool the file gives schedule *o, whose task is called `name`: its
   `pool`, or the one of the first [routes] pattern that matches the name.
   Returns the pool's name, or NULL after filling *err. */
static const char *schedule_pool(const server_config_t *c,
                                 const schedule_options_t *o, const char *name,
                                 const char *file, tpool_config_error_t *err) {
  if (o->pool[0]) {
    const tpool_pool_options_t *po =
        tpool_options_pool((tpool_options_t *)&c->core, o->pool);
    if (po && po->enabled)
      return po->name;
    schedule_error(err, file, o, "pool",
                   po ? "pool \"%s\" is disabled" : "no pool named \"%s\"",
                   o->pool);
    return NULL;
  }
  char kept[TPOOL_TASK_NAME_MAX]; /* routed as tpool keeps it */
  snprintf(kept, sizeof(kept), "%s", name);
  for (size_t i = 0; i < c->core.nroutes; i++)
    if (fnmatch(c->core.routes[i].pattern, kept, 0) == 0)
      return c->core.routes[i].pool; /* checked: it exists and runs */
  schedule_error(err, file, o, "pool",
                 "none set, and no [routes] pattern matches the task's name "
                 "\"%s\"",
                 kept);
  return NULL;
}

/* The checks of the [schedule.NAME] sections that need more than one key
   or section: a task, valid as a schedule's, on a pool that runs. Errors
   name the section's line. */
static int check_schedules(const server_config_t *c, const char *file,
                           tpool_config_error_t *err) {
  task_route_t d; /* what parsing reads of a route: the read file's size */
  memset(&d, 0, sizeof(d));
  d.read_size = DEMO_READ_FILE_SIZE;
  d.read_fd = -1;
  for (size_t i = 0; i < c->nschedules; i++) {
    const schedule_options_t *o = &c->schedules[i];
    /* Each key in range, for values set in code (tpool checks a family's
       defaults only): the element as a section of its own. */
    char label[sizeof("schedule.") + TPOOL_NAME_MAX];
    snprintf(label, sizeof(label), "schedule.%.*s", TPOOL_NAME_MAX - 1,
             o->name);
    tpool_config_section_t one = {
        label,     schedule_keys, NELEMS(schedule_keys),
        (void *)o, sizeof(*o),    0,
        NULL,      NULL,          0,
        0};
    if (tpool_config_check_section(&one, file, err) != 0)
      return -EINVAL;
    if (!o->task[0]) {
      schedule_error(err, file, o, "task",
                     "missing (the JSON body of POST /tasks/{pool}, on one "
                     "line)");
      return -EINVAL;
    }
    task_t t;
    memset(&t, 0, sizeof(t));
    const char *name = NULL;
    double start_timeout_s = 0;
    json_t *doc = NULL;
    task_error_t e;
    bool ok = task_parse_scheduled(&d, o->task, strlen(o->task), &t, &name,
                                   &start_timeout_s, &doc, &e);
    const char *pool = NULL;
    if (!ok)
      schedule_error(err, file, o, "task", "%s", e.message);
    else
      pool = schedule_pool(c, o, name ? name : o->name, file, err);
    char why[160];
    if (pool && task_pool_allows(&t, pool, why, sizeof(why)) != 0) {
      schedule_error(err, file, o, "task", "%s", why);
      pool = NULL;
    }
    json_decref(doc);
    free(t.text);
    if (!pool)
      return -EINVAL;
  }
  return 0;
}

/* What the loader's per-key checks cannot see: [redis] dead_letter must
   differ from stream; the [schedule.NAME] tasks and their pools. On
   failure *c is put back as it was (*was). */
static int check_across(server_config_t *c, const server_config_t *was,
                        const char *file, tpool_config_error_t *err) {
  int rc = 0;
#ifdef TPOOL_SERVER_REDIS
  rc = tpool_redis_options_check(&c->redis, file, err);
#endif
  if (rc == 0)
    rc = check_schedules(c, file, err);
  if (rc != 0) {
    *c = *was;
    return -EINVAL;
  }
  return 0;
}

int server_config_load(server_config_t *c, const char *path,
                       tpool_config_error_t *err) {
  tpool_config_section_t s[NSECTIONS];
  server_config_t was = *c;
  sections(c, s);
  int rc = tpool_config_load_sections(&c->core, path, s, NSECTIONS, err);
  return rc == 0 ? check_across(c, &was, path, err) : rc;
}

int server_config_parse(server_config_t *c, const char *text, size_t len,
                        const char *name, tpool_config_error_t *err) {
  tpool_config_section_t s[NSECTIONS];
  server_config_t was = *c;
  sections(c, s);
  int rc =
      tpool_config_parse_sections(&c->core, text, len, name, s, NSECTIONS, err);
  return rc == 0 ? check_across(c, &was, name ? name : "config", err) : rc;
}

int server_config_check(const server_config_t *c, tpool_config_error_t *err) {
  int rc = tpool_options_check(&c->core, err);
  if (rc != 0)
    return rc;
  tpool_config_section_t s[NSECTIONS];
  sections((server_config_t *)c, s); /* only read */
  const char *file = NULL;
  if (c->core.config_path[0] &&
      memchr(c->core.config_path, '\0', sizeof(c->core.config_path)))
    file = c->core.config_path;
  for (size_t i = 0; i < NSECTIONS && rc == 0; i++)
    rc = tpool_config_check_section(&s[i], file, err);
#ifdef TPOOL_SERVER_REDIS
  if (rc == 0)
    rc = tpool_redis_options_check(&c->redis, file, err);
#endif
  if (rc == 0)
    rc = check_schedules(c, file, err);
  return rc;
}
