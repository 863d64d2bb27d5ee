/*
 * http_internal.h — what the files of http/ share: the attached routes'
 * state, the JSON and Prometheus builders (pure functions of a stats
 * snapshot, so tests and fuzzers call them directly) and the reply
 * helpers. Nothing here is visible to users of tpool.
 */
#ifndef TPOOL_HTTP_INTERNAL_H
#define TPOOL_HTTP_INTERNAL_H

#include "json_out.h"
#include "tpool_http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* ---- http.c: the attachment ---------------------------------------------- */

/* The sources of an attachment (tpool_http_add_source()), each with its
   name copied beside it. Read on the attachment's loop thread only. */
typedef struct tpool__sources {
  size_t n;
  tpool_http_source_t at[TPOOL_HTTP_SOURCES_MAX]; /* .name: into name[] */
  char name[TPOOL_HTTP_SOURCES_MAX][TPOOL_HTTP_SOURCE_NAME_MAX];
} tpool__sources_t;

/* Per-connection request deadlines on an evhttp (see deadline.c). */
typedef struct tpool__deadlines tpool__deadlines_t;

struct tpool_http {
  struct evhttp *http;
  tpool_manager_t *m;
  unsigned flags;
  char token[TPOOL_HTTP_TOKEN_MAX];
  size_t token_len;
  tpool__deadlines_t *deadlines; /* with TPOOL_HTTP_CONFIGURE */
  bool draining;                 /* answers carry Connection: close */
  bool limits; /* check the two below (TPOOL_HTTP_CONFIGURE) */
  size_t max_header_size, max_body_size;
  size_t npaths;
  char **paths; /* the exact paths registered, for detach */
  tpool__sources_t sources;
};

/* ---- metrics.c ----------------------------------------------------------- */

/* The Content-Type of /metrics. */
#define TPOOL__METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Appends the Prometheus text exposition (format 0.0.4) of snapshot *s to
 * `out`: every metric family with its # HELP and # TYPE lines, a `pool`
 * label per pool. Numbers are written in the C locale whatever the
 * process's locale is.
 * Returns: 0; -ENOMEM (out may hold part of the text).
 * Thread: any.
 */
int tpool__metrics_write(struct evbuffer *out, const tpool_stats_t *s);
/* The same with the schedules' families (labels `schedule` and `pool`)
   filled from sch[0..nsch) (their # HELP and # TYPE lines are written
   even with none), followed by the families of each source in `src`
   (NULL: none), whose callbacks also run in the C locale. */
int tpool__metrics_write_sources(struct evbuffer *out, const tpool_stats_t *s,
                                 const tpool_schedule_stats_t *sch, size_t nsch,
                                 const tpool__sources_t *src);

/* ---- deadline.c: slow clients ------------------------------------------ */

/* Installs evhttp_set_bevcb() on http: from now on each new connection
   must deliver each request within timeout_s of opening or of the
   previous response. Returns 0 and *out, or -ENOMEM. */
int tpool__deadlines_new(struct evhttp *http, double timeout_s,
                         tpool__deadlines_t **out);
/* Changes the timeout (a config reload). */
void tpool__deadlines_set(tpool__deadlines_t *d, double timeout_s);
/* Removes the hook and lets go of every connection. NULL is a no-op. */
void tpool__deadlines_free(tpool__deadlines_t *d);

/* ---- reply.c: requests and replies ------------------------------------- */

/* The same as tpool_http_reply_json() for a body written with json_out.h:
   answers with `status` and the text of *w, which it takes (w is left
   empty), or with the fixed 500 body if any write to w failed. */
void tpool__http_reply_json_out(struct evhttp_request *req, int status,
                                tpool__json_out_t *w);
/* True when the query string asks for indented JSON ("pretty"). */
bool tpool__http_wants_pretty(struct evhttp_request *req);
/* The request method as text ("GET"). */
const char *tpool__http_method_name(struct evhttp_request *req);
/* True for HTTP/1.0 and HTTP/1.1; otherwise false after answering 505
   (see tpool_http_check_limits()). */
bool tpool__http_version_ok(struct evhttp_request *req);

/* ---- options.c ----------------------------------------------------------- */

/* True when every field of *o is within the bounds of its [http] key. */
bool tpool__http_options_valid(const tpool_http_options_t *o);

/* ---- routes_health.c: bodies of the health routes ------------------------ */

/* busy / current × 100, to one decimal; 0 with no workers. */
double tpool__utilization_percent(unsigned busy, unsigned current);
/* Write into w the JSON of one pool, of /health/thread-pools, and of
   /health; the last returns the HTTP status it answers with (200, 503),
   and counts the stale schedules of sch[0..nsch) among its reasons.
   The last two call the callbacks of the sources in `src` (NULL: none).
   A failed write shows in tpool__json_out_error(w). */
void tpool__json_pool(tpool__json_out_t *w, const tpool_pool_stats_t *ps);
void tpool__json_thread_pools(tpool__json_out_t *w, const tpool_stats_t *s,
                              const tpool__sources_t *src);
int tpool__json_health(tpool__json_out_t *w, const tpool_stats_t *s,
                       const tpool_schedule_stats_t *sch, size_t nsch,
                       const tpool__sources_t *src);
/* Write into w the JSON of one schedule (GET /health/schedules/{name}),
   and of GET /health/schedules: {"schedules": {NAME: ...}} in the order
   of sch[0..n). */
void tpool__json_schedule(tpool__json_out_t *w,
                          const tpool_schedule_stats_t *st);
void tpool__json_schedules(tpool__json_out_t *w,
                           const tpool_schedule_stats_t *sch, size_t n);

/* The route handlers, called once path and method are checked. `pool`:
   the pool named in the path, or NULL (only /health/thread-pools reads
   it). */
typedef void (*tpool__route_fn)(tpool_http_t *h, struct evhttp_request *req,
                                const char *pool);
void tpool__route_health(tpool_http_t *h, struct evhttp_request *req,
                         const char *pool);
void tpool__route_thread_pools(tpool_http_t *h, struct evhttp_request *req,
                               const char *pool);
/* GET /dashboard: the page of dashboard.c. */
void tpool__route_dashboard(tpool_http_t *h, struct evhttp_request *req,
                            const char *pool);
/* POST /health/thread-pools/{pool}/reset-circuit-breaker. */
void tpool__route_reset_breaker(tpool_http_t *h, struct evhttp_request *req,
                                const char *pool);
void tpool__route_log_status(tpool_http_t *h, struct evhttp_request *req,
                             const char *pool);
/* GET /health/schedules (name NULL) and /health/schedules/{name}; the
   POST actions on a schedule. `pool` is the schedule's name for these. */
void tpool__route_schedules(tpool_http_t *h, struct evhttp_request *req,
                            const char *name);
void tpool__route_schedule_run_now(tpool_http_t *h, struct evhttp_request *req,
                                   const char *name);
void tpool__route_schedule_pause(tpool_http_t *h, struct evhttp_request *req,
                                 const char *name);
void tpool__route_schedule_resume(tpool_http_t *h, struct evhttp_request *req,
                                  const char *name);
void tpool__route_metrics(tpool_http_t *h, struct evhttp_request *req,
                          const char *pool);

/* Monotonic nanoseconds (core's clock is internal to core/ and pools/).
   Thread: any. */
static inline uint64_t tpool__http_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* TPOOL_HTTP_INTERNAL_H */
