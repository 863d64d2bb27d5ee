/*
 * config.h — tpool-server's settings: tpool's own sections ([general],
 * [pool.NAME], [routes]), the HTTP layer's part of [http] (admin_token,
 * the limits, timeout) and the server's own keys ([http] listen and
 * loop_threads, all of [demo]), read from one file in one pass through
 * tpool's config loader (tpool_config_load_sections()), so every section
 * gets the same syntax, limits and messages, and a bad file changes
 * nothing.
 */
#ifndef TPOOL_SERVER_CONFIG_H
#define TPOOL_SERVER_CONFIG_H

#include "tpool.h"
#include "tpool_http.h"
#ifdef TPOOL_SERVER_REDIS
#include "tpool_redis.h"
#endif

#include <stddef.h>

/* Bounds of the server's keys. */
#define LOOP_THREADS_MAX TPOOL_BASES_MAX    /* [http] loop_threads */
#define DEMO_EMBEDDING_DIM_MAX 4096u        /* [demo] embedding_dim */
#define DEMO_DB_ROWS_MAX ((size_t)10000000) /* [demo] db_rows */
#define SCHEDULES_MAX 256                   /* [schedule.NAME] sections */
#define SCHEDULE_ALERT_AFTER_MAX 1000000u   /* [schedule.NAME] alert_after */
/* [schedule.NAME] task: no line of a config file is longer (198 bytes),
   so the loader never refuses a task for its length; the JSON is checked
   after the load, as POST /tasks checks a body. */
#define SCHEDULE_TASK_MAX 198

/* [demo]: the demo work kinds (docs/server.md, "Work kinds"). Read at start
   only. */
typedef struct demo_options {
  /* Where the demo database and read file are kept; relative paths are
     relative to the working directory. Created if missing. */
  char data_dir[TPOOL_PATH_MAX];
  unsigned embedding_dim; /* 1..DEMO_EMBEDDING_DIM_MAX */
  size_t db_rows;         /* demo database rows, 1..DEMO_DB_ROWS_MAX */
} demo_options_t;

/* [schedule.NAME]: a task run every `every_s` seconds (docs/server.md,
   "[schedule.NAME]: periodic tasks"). Each section fills one element,
   which starts as the defaults. Changes live on SIGHUP. */
typedef struct schedule_options {
  char name[TPOOL_NAME_MAX]; /* NAME, as the loader read it */
  int line;                  /* of the section's header */
  char pool[TPOOL_NAME_MAX]; /* "": the pool [routes] give the task's name */
  double every_s;            /* TPOOL_SCHEDULE_EVERY_MIN_S..MAX_S */
  double jitter;             /* 0..1, a fraction of every_s */
  char overlap[6];           /* "skip" or "queue" */
  bool enabled;              /* false: made paused */
  unsigned alert_after;      /* intervals without a success; 0 = never */
  /* The JSON body of POST /tasks/{pool}; "" when the section has none
     (an error, reported after the load). */
  char task[SCHEDULE_TASK_MAX + 1];
} schedule_options_t;

/* The server's own keys. */
typedef struct server_options {
  tpool_config_address_t listen; /* [http] listen; port 0: any free port */
  /* [http] loop_threads: event loops, each in its own thread and serving
     the listen address, 1..LOOP_THREADS_MAX. Restart only. */
  unsigned loop_threads;
  demo_options_t demo;
} server_options_t;

typedef struct server_config {
  tpool_options_t core;      /* [general], [pool.NAME], [routes] */
  tpool_http_options_t http; /* [http]: the routes' token and limits */
  server_options_t server;   /* [http] listen, loop_threads; [demo] */
  /* [schedule.NAME], in file order: the first nschedules elements. */
  size_t nschedules;
  schedule_options_t schedules[SCHEDULES_MAX];
#ifdef TPOOL_SERVER_REDIS
  tpool_redis_options_t redis; /* [redis]: url "" = off */
#endif
} server_config_t;

/* The defaults of all three: tpool_options_init(),
   tpool_http_options_init(), listen 127.0.0.1:8080, one loop, [demo]
   data_dir "tpool-data", embedding_dim 384, db_rows 10000. */
void server_config_init(server_config_t *c);

/* The defaults of a [schedule.NAME] section: every 60 s, no jitter,
   overlap skip, enabled, alert_after 0, no pool, no task. */
extern const schedule_options_t schedule_defaults;

/* What a scheduled run does with overlap `o` ("skip" or "queue"). */
tpool_overlap_t schedule_overlap(const schedule_options_t *o);

/* Fills *err (if not NULL) in the loader's words, for a check made after
   the load: "FILE:LINE: [schedule.NAME] KEY: message", LINE being the
   section's (FILE NULL: "options"). */
void schedule_error(tpool_config_error_t *err, const char *file,
                    const schedule_options_t *o, const char *key,
                    const char *fmt, ...) TPOOL_PRINTF(5, 6);

/* Overlays the file at `path` (or `len` bytes of `text`, called `name` in
   errors) on *c, as tpool_config_load_sections() does: 0, or a negative
   errno with *err filled and *c unchanged. After the load, each
   [schedule.NAME] must have a task that POST /tasks would take, and that
   a schedule can run (task_parse_scheduled()), on a pool of the file
   that is enabled: its `pool`, or the one its task's name (the task's
   "name", else NAME) is routed to; "query" on the db pool only. These
   errors name the section's line. */
int server_config_load(server_config_t *c, const char *path,
                       tpool_config_error_t *err);
int server_config_parse(server_config_t *c, const char *text, size_t len,
                        const char *name, tpool_config_error_t *err);

/* Checks *c as set in code: tpool_options_check(), then every section's
   fields, named as the loader names them ("options: [http] listen: ..."
   when c came from no file), then the [schedule.NAME] sections as
   server_config_load() does. Returns 0, or -EINVAL with *err filled. */
int server_config_check(const server_config_t *c, tpool_config_error_t *err);

#endif /* TPOOL_SERVER_CONFIG_H */
