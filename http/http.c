/*
 * http.c — attaching tpool's routes to an evhttp: path and method
 * dispatch, the admin token and the request limits. (The replies, and the
 * checks of a request's version, method and path, are in reply.c.)
 *
 * Exact paths are registered with evhttp_set_cb() — /health,
 * /health/thread-pools, its log-status action, /health/schedules,
 * /metrics and one path per pool — so the routes work beside a user's own
 * generic callback. Paths that no exact callback claims (an unknown pool,
 * a schedule's own paths, a stray path) reach
 * tpool_http_handle() through the generic callback that
 * TPOOL_HTTP_NOT_FOUND installs, or through the user's own.
 *
 * Everything here runs on the loop thread of the evhttp's base; the only
 * shared state is the manager, read through tpool_manager_stats(), and
 * what the sources' callbacks read (theirs to make thread-safe).
 */
#include "http_internal.h"

#include <sys/queue.h> /* before keyvalq_struct.h, which uses it */

#include <event2/keyvalq_struct.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define PREFIX_POOLS "/health/thread-pools"
#define PATH_LOG_STATUS PREFIX_POOLS "/log-status"
#define SUFFIX_RESET "/reset-circuit-breaker"
#define PATH_READY "/health/ready"
#define PREFIX_SCHEDULES "/health/schedules"
#define ALLOW_GET "GET, HEAD"
#define ALLOW_POST "POST"

/* ---- the admin token ---------------------------------------------------- */

/* Compares in time that depends only on the token's length, so a client
   cannot find the token byte by byte from response times. */
static bool token_matches(const char *given, size_t glen, const char *want,
                          size_t wlen) {
  unsigned diff = glen != wlen;
  for (size_t i = 0; i < wlen; i++)
    diff |= (unsigned char)(i < glen ? given[i] : 0) ^ (unsigned char)want[i];
  return diff == 0;
}

bool tpool_http_authorize(tpool_http_t *h, struct evhttp_request *req) {
  if (h->token_len == 0)
    return true;
  const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req),
                                        "Authorization");
  static const char bearer[] = "Bearer ";
  if (auth && strncasecmp(auth, bearer, sizeof(bearer) - 1) == 0) {
    const char *t = auth + sizeof(bearer) - 1;
    if (token_matches(t, strlen(t), h->token, h->token_len))
      return true;
  }
  evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                    "Bearer realm=\"tpool\"");
  tpool_http_reply_error(req, 401,
                         auth ? "wrong admin token"
                              : "this route needs the admin token: "
                                "Authorization: Bearer <token>");
  return false;
}

int tpool_http_set_token(tpool_http_t *h, const char *token) {
  if (!h)
    return -EINVAL;
  if (!token)
    token = "";
  size_t n = strlen(token);
  if (n >= sizeof(h->token))
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)token[i] <= ' ' || token[i] == 0x7f)
      return -EINVAL;
  memcpy(h->token, token, n + 1);
  h->token_len = n;
  return 0;
}

/* ---- limits ------------------------------------------------------------- */

/*
 * libevent 2.1 answers a request over its own limits itself, with an HTML
 * body — and with 400, not 413, for oversized headers — before any route
 * runs, and offers no hook to change that. So evhttp's limits are set to a
 * hard cap well above the configured ones, and the configured limits are
 * checked here, where the answer can be a JSON 413. Only requests past the
 * hard cap (16 times the configured header limit; the body limit plus as much
 * again, at least 64 KiB more)
 * get libevent's own answer.
 */
static size_t header_cap(size_t limit) {
  return limit > SIZE_MAX / 16 ? SIZE_MAX : limit * 16;
}

static size_t body_cap(size_t limit) {
  size_t extra = limit > 65536 ? limit : 65536;
  return limit > SIZE_MAX - extra ? SIZE_MAX : limit + extra;
}

/* The bytes of the request line and header lines, as they came in. */
static size_t header_bytes(struct evhttp_request *req) {
  const char *uri = evhttp_request_get_uri(req);
  size_t n = strlen(tpool__http_method_name(req)) + (uri ? strlen(uri) : 0) +
             sizeof(" HTTP/1.1\r\n") - 1 + 2;
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
    n += strlen(kv->key) + 2 + strlen(kv->value) + 2;
  }
  return n;
}

/*
 * libevent reads the body by the first Content-Length header and ignores
 * any other, and takes Transfer-Encoding over Content-Length. A proxy in
 * front may pick differently and see another request boundary (request
 * smuggling, RFC 9112 section 6.3), so a request whose framing is not
 * plain is refused: more than one Content-Length, one that is not all
 * digits, or one beside Transfer-Encoding. Returns the problem, or NULL.
 */
static const char *framing_problem(struct evhttp_request *req) {
  struct evkeyval *kv;
  int lengths = 0;
  bool chunked = false;
  TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
    if (strcasecmp(kv->key, "Transfer-Encoding") == 0)
      chunked = true;
    if (strcasecmp(kv->key, "Content-Length") != 0)
      continue;
    if (++lengths > 1)
      return "more than one Content-Length header";
    const char *v = kv->value;
    if (!*v || strspn(v, "0123456789") != strlen(v))
      return "Content-Length is not a decimal number";
  }
  if (chunked && lengths)
    return "both Content-Length and Transfer-Encoding";
  return NULL;
}

bool tpool_http_check_limits(tpool_http_t *h, struct evhttp_request *req) {
  if (!tpool__http_version_ok(req))
    return false;
  const char *framing = framing_problem(req);
  if (framing) {
    /* Where this request ends is in doubt, so nothing after it on this
       connection can be trusted as a request of its own: close it. */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
    tpool_http_reply_error(req, 400, "ambiguous request framing: %s", framing);
    return false;
  }
  if (!h || !h->limits)
    return true;
  if (header_bytes(req) > h->max_header_size) {
    tpool_http_reply_error(req, 413,
                           "request headers are over the %zu-byte limit "
                           "([http] max_header_size)",
                           h->max_header_size);
    return false;
  }
  size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(req));
  if (body > h->max_body_size) {
    tpool_http_reply_error(req, 413,
                           "request body of %zu bytes is over the %zu-byte "
                           "limit ([http] max_body_size)",
                           body, h->max_body_size);
    return false;
  }
  return true;
}

/* ---- routing ------------------------------------------------------------ */

/* The GET routes at fixed paths. */
static const struct {
  const char *path;
  tpool__route_fn serve;
} fixed_routes[] = {
    {"/health", tpool__route_health},
    {"/metrics", tpool__route_metrics},
    {PREFIX_POOLS, tpool__route_thread_pools},
    {PATH_READY, NULL}, /* needs the attachment's state: see route() */
    {"/dashboard", tpool__route_dashboard},
    {PREFIX_SCHEDULES, tpool__route_schedules},
};
#define NFIXED (sizeof(fixed_routes) / sizeof(fixed_routes[0]))

/* True for POST when `post`, else for GET or HEAD. */
static bool method_is(struct evhttp_request *req, bool post) {
  enum evhttp_cmd_type c = evhttp_request_get_command(req);
  if (post)
    return c == EVHTTP_REQ_POST;
  return c == EVHTTP_REQ_GET || c == EVHTTP_REQ_HEAD;
}

/* Checks the method, then serves: GET and HEAD, or POST with the token. */
static void serve(tpool_http_t *h, struct evhttp_request *req, bool post,
                  tpool__route_fn fn, const char *pool) {
  if (tpool_http_check_method(req, post ? ALLOW_POST : ALLOW_GET) &&
      (!post || tpool_http_authorize(h, req)))
    fn(h, req, pool);
}

/* True for the paths route() serves. */
static bool owns(const char *path) {
  for (size_t i = 0; i < NFIXED; i++)
    if (strcmp(path, fixed_routes[i].path) == 0)
      return true;
  return strncmp(path, PREFIX_POOLS "/", sizeof(PREFIX_POOLS)) == 0 ||
         strncmp(path, PREFIX_SCHEDULES "/", sizeof(PREFIX_SCHEDULES)) == 0;
}

/* The POST actions on a schedule, the last segment of their path. */
static const struct {
  const char *action;
  tpool__route_fn serve;
} schedule_actions[] = {
    {"run-now", tpool__route_schedule_run_now},
    {"pause", tpool__route_schedule_pause},
    {"resume", tpool__route_schedule_resume},
};

/* Serves /health/schedules/{name} and /health/schedules/{name}/{action}
   (rest: the path after the prefix and its '/'). Schedules come and go
   while the server runs, so their paths have no exact callback: they
   reach here through the generic callback, as unknown pools do. */
static void route_schedule(tpool_http_t *h, struct evhttp_request *req,
                           const char *path, const char *rest) {
  const char *slash = strchr(rest, '/');
  size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
  tpool__route_fn fn = tpool__route_schedules;
  bool post = false;
  if (slash) {
    fn = NULL;
    for (size_t i = 0; i < sizeof(schedule_actions) / sizeof(*schedule_actions);
         i++)
      if (strcmp(slash + 1, schedule_actions[i].action) == 0)
        fn = schedule_actions[i].serve;
    post = true;
  }
  if (n == 0 || !fn) {
    tpool_http_reply_error(req, 404, "no route for %.200s", path);
    return;
  }
  char name[TPOOL_NAME_MAX];
  tpool_schedule_stats_t st;
  bool known = n < sizeof(name);
  if (known) {
    memcpy(name, rest, n);
    name[n] = '\0';
    known = tpool_manager_schedule_stats(h->m, name, &st) == 0;
  }
  if (!known) {
    tpool_http_reply_error(req, 404, "no schedule named \"%.*s\"",
                           (int)(n < 64 ? n : 64), rest);
    return;
  }
  serve(h, req, post, fn, name);
}

/* The pool of ".../{pool}/reset-circuit-breaker" (name: the path after
   the prefix), copied into pool[TPOOL_NAME_MAX]; false if it is not one. */
static bool reset_path(const char *name, char *pool) {
  size_t n = strlen(name), sn = sizeof(SUFFIX_RESET) - 1;
  if (n <= sn || n - sn >= TPOOL_NAME_MAX ||
      strcmp(name + n - sn, SUFFIX_RESET) != 0)
    return false;
  memcpy(pool, name, n - sn);
  pool[n - sn] = '\0';
  return true;
}

/* GET /health/ready: 200 while serving; 503 from the moment a drain
   begins (tpool_http_set_draining()) or the manager shuts down, so a load
   balancer stops sending work before the process goes. */
static void ready(tpool_http_t *h, struct evhttp_request *req) {
  bool draining = h->draining;
  tpool_stats_t *s = NULL;
  if (!draining && tpool_manager_stats(h->m, &s) == 0)
    draining = s->shutting_down;
  tpool_stats_free(s);
  tpool_http_reply_json(
      req, draining ? 503 : 200,
      json_pack("{s:s}", "status", draining ? "draining" : "ready"));
}

/* Serves a path that owns() accepted. */
static void route(tpool_http_t *h, struct evhttp_request *req,
                  const char *path) {
  if (strcmp(path, PATH_READY) == 0) {
    if (tpool_http_check_method(req, ALLOW_GET))
      ready(h, req);
    return;
  }
  for (size_t i = 0; i < NFIXED; i++) {
    if (strcmp(path, fixed_routes[i].path) == 0) {
      serve(h, req, false, fixed_routes[i].serve, NULL);
      return;
    }
  }
  if (strncmp(path, PREFIX_SCHEDULES "/", sizeof(PREFIX_SCHEDULES)) == 0) {
    route_schedule(h, req, path, path + sizeof(PREFIX_SCHEDULES));
    return;
  }
  const char *name = path + sizeof(PREFIX_POOLS);
  char pool[TPOOL_NAME_MAX];
  if (reset_path(name, pool)) {
    if (!tpool_manager_pool(h->m, pool))
      tpool_http_reply_error(req, 404, "no pool named \"%.64s\"", pool);
    else
      serve(h, req, true, tpool__route_reset_breaker, pool);
    return;
  }
  /* "log-status" is also a valid pool name: GET reads such a pool. */
  bool is_pool = tpool_manager_pool(h->m, name) != NULL;
  if (strcmp(path, PATH_LOG_STATUS) == 0 && (method_is(req, true) || !is_pool))
    serve(h, req, true, tpool__route_log_status, NULL);
  else if (!is_pool)
    tpool_http_reply_error(req, 404, "no pool named \"%.64s\"", name);
  else
    serve(h, req, false, tpool__route_thread_pools, name);
}

void tpool_http_set_draining(tpool_http_t *h, bool draining) {
  if (h)
    h->draining = draining;
}

bool tpool_http_handle(tpool_http_t *h, struct evhttp_request *req) {
  if (!h || !req)
    return false;
  char *path;
  if (!tpool__http_version_ok(req) || tpool_http_path(req, &path) != 0)
    return true; /* answered: 505, 400 or 500 */
  if (!owns(path)) {
    free(path);
    return false;
  }
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  if (h->draining && !evhttp_find_header(out, "Connection"))
    evhttp_add_header(out, "Connection", "close");
  if (tpool_http_check_limits(h, req))
    route(h, req, path);
  free(path);
  return true;
}

static void on_route(struct evhttp_request *req, void *arg) {
  if (!tpool_http_handle(arg, req))
    tpool_http_reply_error(req, 404, "no such path");
}

static void on_unknown(struct evhttp_request *req, void *arg) {
  char *path;
  if (!tpool_http_handle(arg, req) && tpool_http_path(req, &path) == 0) {
    tpool_http_reply_error(req, 404, "no route for %.200s", path);
    free(path);
  }
}

/* ---- sources ------------------------------------------------------------ */

/* True for 1 to TPOOL_HTTP_SOURCE_NAME_MAX - 1 of [a-z0-9_]: a JSON key
   and a word that need no escape anywhere. */
static bool source_name_ok(const char *name) {
  size_t n = name ? strlen(name) : 0;
  return n > 0 && n < TPOOL_HTTP_SOURCE_NAME_MAX &&
         strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int tpool_http_add_source(tpool_http_t *h, const tpool_http_source_t *s) {
  if (!h || !s || !source_name_ok(s->name))
    return -EINVAL;
  tpool__sources_t *src = &h->sources;
  /* The members /health/thread-pools writes before the sources. */
  if (strcmp(s->name, "summary") == 0 || strcmp(s->name, "pools") == 0)
    return -EEXIST;
  for (size_t i = 0; i < src->n; i++)
    if (strcmp(s->name, src->name[i]) == 0)
      return -EEXIST;
  if (src->n == TPOOL_HTTP_SOURCES_MAX)
    return -ENOSPC;
  strcpy(src->name[src->n], s->name);
  src->at[src->n] = *s;
  src->at[src->n].name = src->name[src->n];
  src->n++;
  return 0;
}

/* ---- attach and detach -------------------------------------------------- */

static int add_path(tpool_http_t *h, const char *path) {
  char *copy = strdup(path);
  if (!copy)
    return -ENOMEM;
  int rc = evhttp_set_cb(h->http, copy, on_route, h);
  if (rc != 0) {
    free(copy);
    return rc == -1 ? -EEXIST : -ENOMEM;
  }
  h->paths[h->npaths++] = copy;
  return 0;
}

/* With TPOOL_HTTP_CONFIGURE, applies the limits and timeout of *o. */
static void apply_limits(tpool_http_t *h, const tpool_http_options_t *o) {
  if (!(h->flags & TPOOL_HTTP_CONFIGURE))
    return;
  h->limits = true;
  h->max_header_size = o->max_header_size;
  h->max_body_size = o->max_body_size;
  evhttp_set_max_headers_size(h->http,
                              (ev_ssize_t)header_cap(o->max_header_size));
  evhttp_set_max_body_size(h->http, (ev_ssize_t)body_cap(o->max_body_size));
  struct timeval tv;
  tv.tv_sec = (time_t)o->timeout_s;
  tv.tv_usec = (suseconds_t)((o->timeout_s - (double)tv.tv_sec) * 1e6);
  evhttp_set_timeout_tv(h->http, &tv);
  if (h->deadlines)
    tpool__deadlines_set(h->deadlines, o->timeout_s);
}

int tpool_http_attach(struct evhttp *http, tpool_manager_t *m,
                      const tpool_http_options_t *o, unsigned flags,
                      tpool_http_t **out) {
  if (!http || !m || !out)
    return -EINVAL;
  *out = NULL;
  tpool_http_t *h = calloc(1, sizeof(*h));
  tpool_stats_t *s = NULL;
  int rc = h ? tpool_manager_stats(m, &s) : -ENOMEM;
  if (rc == 0 &&
      !(h->paths = calloc(NFIXED + 1 + 2 * s->npools, sizeof(*h->paths))))
    rc = -ENOMEM;
  if (rc != 0) {
    free(h);
    tpool_stats_free(s);
    return rc;
  }
  h->http = http;
  h->m = m;
  h->flags = flags;
  if (o && tpool_http_set_token(h, o->admin_token) != 0)
    rc = -EINVAL;
  static const char *const fixed[] = {
      "/health",  PREFIX_POOLS, PATH_LOG_STATUS, "/metrics",
      PATH_READY, "/dashboard", PREFIX_SCHEDULES};
  for (size_t i = 0; rc == 0 && i < sizeof(fixed) / sizeof(fixed[0]); i++)
    rc = add_path(h, fixed[i]);
  for (size_t i = 0; rc == 0 && i < s->npools; i++) {
    char path[sizeof(PREFIX_POOLS) + TPOOL_NAME_MAX];
    snprintf(path, sizeof(path), PREFIX_POOLS "/%s", s->pools[i].name);
    if (strcmp(path, PATH_LOG_STATUS) != 0) /* already there */
      rc = add_path(h, path);
    char reset[sizeof(path) + sizeof(SUFFIX_RESET)];
    snprintf(reset, sizeof(reset), "%s" SUFFIX_RESET, path);
    if (rc == 0)
      rc = add_path(h, reset);
  }
  tpool_stats_free(s);
  if (rc == 0 && o && (flags & TPOOL_HTTP_CONFIGURE))
    rc = tpool__deadlines_new(http, o->timeout_s, &h->deadlines);
  if (rc != 0) {
    tpool_http_detach(h);
    return rc;
  }
  if (o && (flags & TPOOL_HTTP_CONFIGURE)) {
    apply_limits(h, o);
    /* Every method reaches the routes, so a wrong one gets 405 and Allow
       rather than libevent's bare 501. */
    evhttp_set_allowed_methods(
        http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                  EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                  EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  }
  if (flags & TPOOL_HTTP_NOT_FOUND)
    evhttp_set_gencb(http, on_unknown, h);
  *out = h;
  return 0;
}

int tpool_http_configure(tpool_http_t *h, const tpool_http_options_t *o) {
  if (!h || !o || !tpool__http_options_valid(o))
    return -EINVAL;
  int rc = tpool_http_set_token(h, o->admin_token);
  if (rc != 0)
    return rc;
  apply_limits(h, o);
  return 0;
}

void tpool_http_detach(tpool_http_t *h) {
  if (!h)
    return;
  for (size_t i = 0; i < h->npaths; i++) {
    evhttp_del_cb(h->http, h->paths[i]);
    free(h->paths[i]);
  }
  if (h->flags & TPOOL_HTTP_NOT_FOUND)
    evhttp_set_gencb(h->http, NULL, NULL);
  tpool__deadlines_free(h->deadlines);
  free(h->paths);
  free(h);
}
