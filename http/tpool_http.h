/*
 * tpool_http.h — tpool's HTTP routes, attached to an evhttp you own.
 *
 * One call, tpool_http_attach(), puts these routes on your libevent HTTP
 * server (tpool-server uses the same call):
 *
 *   GET  /health                            200 {"status": "ok"}, or 503
 *                                           with the reasons
 *   GET  /health/ready                      200 {"status": "ready"}, or
 *                                           503 {"status": "draining"}
 *                                           once draining (below) or shut
 *                                           down
 *   GET  /health/thread-pools               summary and every pool
 *   GET  /health/thread-pools/{pool}        one pool; 404 if unknown
 *   POST /health/thread-pools/log-status    writes the status table to the
 *                                           log now
 *   POST /health/thread-pools/{pool}/reset-circuit-breaker
 *                                           closes the pool's breaker;
 *                                           409 if it has none
 *   GET  /health/schedules                  every schedule, by name
 *   GET  /health/schedules/{name}           one schedule; 404 if unknown
 *   POST /health/schedules/{name}/run-now   one run now: 202 with its task
 *                                           id; 409 while a run is in
 *                                           flight (overlap skip), 503 if
 *                                           the pool refuses it
 *   POST /health/schedules/{name}/pause     no run until resumed
 *   POST /health/schedules/{name}/resume    runs again, from now
 *   GET  /metrics                           Prometheus text format 0.0.4
 *   GET  /dashboard                         a self-contained HTML page
 *                                           that polls the pools' JSON
 *
 * The paths under /health/schedules/ (like those of unknown pools) have
 * no exact callback, since schedules come and go while the loop runs:
 * they are served through the generic callback, TPOOL_HTTP_NOT_FOUND's
 * or yours calling tpool_http_handle().
 *
 * Another layer (a queue consumer, say) can report in these routes beside
 * the pools, without this library depending on it: see
 * tpool_http_add_source().
 *
 * Every body is built from a stats snapshot (tpool_manager_stats()), never
 * from live pool fields. Errors are JSON: {"error": {"status": 404,
 * "message": "..."}}, and a message that quotes the request (a path, a
 * pool name) is valid UTF-8 whatever the client sent: bytes that are not
 * are written as \xNN. A known path with the wrong method gets 405 and an
 * Allow header. When an admin token is set, POST routes need
 * "Authorization: Bearer <token>" and answer 401 without it. A path that
 * cannot be decoded (a '%' not followed by two hex digits, %00, bytes that
 * are not UTF-8 once decoded) gets 400, and a request whose HTTP version
 * is not 1.0 or 1.1 gets 505 on an HTTP/1.1 status line (see
 * tpool_http_check_limits() for which requests these checks reach).
 *
 * The functions below that answer a request (tpool_http_reply_json(),
 * tpool_http_reply_error(), and the checks that answer when they fail)
 * are there for your own routes too, so they answer the way tpool's do.
 *
 * Link with libtpool_http (pkg-config: tpool-http), which needs jansson
 * and libevent_extra. All functions here run on the loop thread of the
 * evhttp's event_base unless marked otherwise. The conventions are those
 * of tpool.h.
 */
#ifndef TPOOL_HTTP_H
#define TPOOL_HTTP_H

#include "tpool.h"

#ifdef __cplusplus
extern "C" {
#endif

struct evhttp;
struct evhttp_request;
struct evbuffer;
struct json_t; /* jansson's json_t */

typedef struct tpool_http tpool_http_t;

/* ------------------------------------------------------------------------
 * Options: the [http] settings of the routes
 * ------------------------------------------------------------------------ */

/* Bounds of the options below (what tpool_http_configure() and the
   [http] keys accept). */
#define TPOOL_HTTP_TOKEN_MAX 129 /* admin token: up to 128 characters */
#define TPOOL_HTTP_HEADER_MIN ((size_t)256)
#define TPOOL_HTTP_HEADER_MAX ((size_t)1024 * 1024)
#define TPOOL_HTTP_BODY_MAX ((size_t)64 * 1024 * 1024)
#define TPOOL_HTTP_TIMEOUT_MIN 0.1
#define TPOOL_HTTP_TIMEOUT_MAX 3600.0

typedef struct tpool_http_options {
  /* "" = POST routes need no token; else up to TPOOL_HTTP_TOKEN_MAX - 1
     printable ASCII characters without blanks. [http] admin_token */
  char admin_token[TPOOL_HTTP_TOKEN_MAX];
  /* Request line and headers, TPOOL_HTTP_HEADER_MIN..MAX bytes.
     [http] max_header_size */
  size_t max_header_size;
  /* Request body, 0..TPOOL_HTTP_BODY_MAX bytes. [http] max_body_size */
  size_t max_body_size;
  /* Seconds (TPOOL_HTTP_TIMEOUT_MIN..MAX) a request may take to arrive,
     from the connection opening or the previous response, and a
     connection may sit idle. [http] timeout */
  double timeout_s;
} tpool_http_options_t;

/*
 * Fills *o with the defaults: no admin token, 8 KiB of headers, a 1 MiB
 * body, a 30 s timeout.
 * Thread: any.
 */
TPOOL_API void tpool_http_options_init(tpool_http_options_t *o);

/*
 * The [http] keys of these options (admin_token, max_header_size,
 * max_body_size, timeout), as a section for tpool_config_load_sections(),
 * which fills *o from a config file; the limits and messages are the
 * ones above. A program that has [http] keys of its own (a listen
 * address, say) passes another section named "http" beside this one.
 * The result points into *o (its data) and at a static key table: o must
 * outlive its use.
 * Thread: any.
 */
TPOOL_API tpool_config_section_t
tpool_http_config_section(tpool_http_options_t *o);

/* ------------------------------------------------------------------------
 * The routes
 * ------------------------------------------------------------------------ */

/* Flags of tpool_http_attach(). */
enum {
  /* Enforce the header and body limits of the options with a JSON 413,
     apply their timeout to the evhttp, and let every method through to
     the routes (so a wrong one gets 405 with Allow, not libevent's 501).
     libevent 2.1 can only answer over-limit requests itself, with HTML
     and (for headers) 400, so evhttp's own caps are raised — to 16 times
     the header limit and the body limit plus max(limit, 64 KiB) — and the
     configured limits are checked when a route runs: by tpool's routes,
     and by yours if they call tpool_http_check_limits(). It also installs
     evhttp_set_bevcb() so that a client trickling its request is cut off:
     each request must arrive whole within the timeout of the connection
     opening or of the previous response (evhttp's own timeout only
     notices silence). Detaching removes that hook but does not undo the
     other settings (libevent cannot read them back). Leave the flag out
     when your server sets its own limits or its own bufferevents. */
  TPOOL_HTTP_CONFIGURE = 1u << 0,
  /* Install a generic callback (evhttp_set_gencb()) that answers every
     path no route claims with a JSON 404. Leave it out when you have your
     own generic callback; call tpool_http_handle() from it instead. */
  TPOOL_HTTP_NOT_FOUND = 1u << 1,
};

/*
 * Attaches the routes above to `http`, whose event_base must be attached
 * to `m` or at least run by the same loop. `o` gives the admin token and,
 * with TPOOL_HTTP_CONFIGURE, the limits; NULL means no token and no
 * limits. *o is copied.
 * Returns: 0 and *out (caller frees with tpool_http_detach(), before
 * evhttp_free(); `m` must stay alive while the loop may still run the
 * routes); -EINVAL if http, m or out is
 * NULL; -EEXIST if one of the paths already has a callback on `http`;
 * -ENOMEM.
 * Thread: loop (of the evhttp's base), or before the loop runs.
 */
TPOOL_API int tpool_http_attach(struct evhttp *http, tpool_manager_t *m,
                                const tpool_http_options_t *o, unsigned flags,
                                tpool_http_t **out);

/*
 * Removes the routes (and the generic callback, if attach installed it)
 * and frees *h. NULL is a no-op.
 * Thread: loop.
 */
TPOOL_API void tpool_http_detach(tpool_http_t *h);

/*
 * Replaces the admin token: "" or NULL turns the check off. Used by a
 * config reload. The token is copied.
 * Returns: 0; -EINVAL for a token longer than TPOOL_HTTP_TOKEN_MAX - 1
 * bytes or holding a blank or control character (the token stays as it
 * was).
 * Thread: loop.
 */
TPOOL_API int tpool_http_set_token(tpool_http_t *h, const char *token);

/*
 * Applies new options to attached routes, as a config reload does: the
 * admin token, and with TPOOL_HTTP_CONFIGURE the header and body limits
 * and the timeout (connections opened from then on get the timeout;
 * requests from then on are held to the limits). *o is copied.
 * Returns: 0; -EINVAL if h or o is NULL or a field of *o is out of the
 * bounds above (nothing changes).
 * Thread: loop.
 */
TPOOL_API int tpool_http_configure(tpool_http_t *h,
                                   const tpool_http_options_t *o);

/*
 * Marks the server as draining (or not): every response of tpool's routes,
 * and of tpool_http_handle(), then carries "Connection: close", so
 * keep-alive clients finish their current request and reconnect — to
 * another replica — instead of sending more on a connection that is about
 * to close, and GET /health/ready answers 503 so that a load balancer
 * stops sending work. Your own routes should do the same while you drain.
 * Thread: loop.
 */
TPOOL_API void tpool_http_set_draining(tpool_http_t *h, bool draining);

/*
 * Serves `req` if its path belongs to tpool (/health, /health/...,
 * /metrics, /dashboard), for servers with their own generic callback.
 * Unknown pools under /health/thread-pools/ get the JSON 404 here, and
 * the paths of schedules (/health/schedules/{name}...) are served here. A
 * request that is not HTTP/1.0 or 1.1 (505) or whose path cannot be
 * decoded (400, see tpool_http_path()) is answered whatever its path.
 * Returns: true if it answered the request; false if the path is not
 * tpool's (the request is untouched and still yours to answer).
 * Thread: loop.
 */
TPOOL_API bool tpool_http_handle(tpool_http_t *h, struct evhttp_request *req);

/*
 * Checks that `req` is HTTP/1.0 or HTTP/1.1; that it is framed plainly (at
 * most one Content-Length, all digits, and not beside Transfer-Encoding:
 * anything else could be read differently by a proxy in front); and, with
 * TPOOL_HTTP_CONFIGURE, against the configured header and body limits.
 * For your own routes, which otherwise see only evhttp's raised caps and
 * any version libevent lets through. `h` may be NULL (the version and
 * framing checks only).
 * tpool's routes, tpool_http_handle() and the TPOOL_HTTP_NOT_FOUND
 * callback make these checks themselves; a route you register with
 * evhttp_set_cb() is reached before any of them (libevent 2.1 offers no
 * hook in front of its dispatch), so it should call this first. Versions
 * with a major number above 1 (HTTP/2.0) never reach a route: libevent
 * refuses them itself with its own 400. libevent keeps the version as two
 * chars, so HTTP/1.257 reads as 1.1.
 * Returns: true when the request passes; false after answering 505 (the
 * version, with Connection: close, on an HTTP/1.1 status line whatever
 * the request said), 400 (framing) or 413 (limits) with a JSON body.
 * Thread: loop.
 */
TPOOL_API bool tpool_http_check_limits(tpool_http_t *h,
                                       struct evhttp_request *req);

/*
 * For your own routes that change state: checks the request's
 * Authorization header against the admin token in constant time.
 * Returns: true when no token is set or the request carries it; false
 * after answering the request with 401 (and a WWW-Authenticate header).
 * Thread: loop.
 */
TPOOL_API bool tpool_http_authorize(tpool_http_t *h,
                                    struct evhttp_request *req);

/* ------------------------------------------------------------------------
 * Sources: other layers reported beside the pools
 * ------------------------------------------------------------------------ */

/* Bounds of tpool_http_add_source(). */
#define TPOOL_HTTP_SOURCES_MAX 8      /* sources per attachment */
#define TPOOL_HTTP_SOURCE_NAME_MAX 64 /* a name: up to 63 characters */

/*
 * A source of more health and metrics, reported by the routes beside the
 * pools: another library (a queue consumer, a database client) shows up
 * in them without libtpool_http depending on it. Every callback may be
 * NULL (that part is left out), and each runs on the loop thread of an
 * attachment it was added to, while the routes answer a request — so with
 * the same source added to several attachments on several loops, on any
 * of them, concurrently. A callback must therefore be thread-safe (read
 * atomics or take a lock of your own), quick (the loop waits for it) and
 * must not call back into the routes.
 */
typedef struct tpool_http_source {
  /* The member of GET /health/thread-pools's top-level object: 1 to
     TPOOL_HTTP_SOURCE_NAME_MAX - 1 of [a-z0-9_], neither "summary" nor
     "pools" ("redis", say). Copied by tpool_http_add_source(). */
  const char *name;
  /* Returns a new JSON object (the routes take the reference) written as
     that member, after the pools; NULL, or anything but an object, leaves
     the member out of that answer. */
  struct json_t *(*health_json)(void *arg);
  /* Returns NULL when the source does not degrade GET /health; otherwise
     a reason word in static storage ("redis_unreachable") after writing
     a message for people into msg[0..cap) (NUL-terminated; it is cut at
     cap - 1 bytes). Called once per GET /health. */
  const char *(*degraded)(void *arg, char *msg, size_t cap);
  /* Appends complete Prometheus text-format families (# HELP and # TYPE
     lines, then the samples, each line ending in '\n') to `out`, after
     tpool's own; names must not be those of tpool's own families. Runs with
     LC_NUMERIC set to "C" on its thread, so printf writes 0.25 whatever
     the process's locale. Returns 0, or -ENOMEM (GET /metrics then
     answers 500). */
  int (*metrics)(void *arg, struct evbuffer *out);
  void *arg; /* passed to every callback; must outlive the attachment */
} tpool_http_source_t;

/*
 * Adds a source to the routes of h: from the next request on,
 * GET /health/thread-pools carries its health_json() as a top-level
 * member named s->name (after "summary" and "pools"; the per-pool route
 * is unchanged), GET /health lists its degraded() reason as
 * {"reason": ..., "message": ...} — without "pool", as for the
 * process-wide reasons — and answers 503, and GET /metrics ends with its
 * metrics(). *s and the name are copied; sources stay until
 * tpool_http_detach().
 * Returns: 0; -EINVAL if h or s is NULL or the name is not 1 to
 * TPOOL_HTTP_SOURCE_NAME_MAX - 1 of [a-z0-9_]; -EEXIST if the name is
 * "summary", "pools" or that of a source already added; -ENOSPC if h
 * has TPOOL_HTTP_SOURCES_MAX sources already.
 * Thread: loop (of h's evhttp), or before the loop runs.
 */
TPOOL_API int tpool_http_add_source(tpool_http_t *h,
                                    const tpool_http_source_t *s);

/* ------------------------------------------------------------------------
 * Helpers for your own routes
 * ------------------------------------------------------------------------ */

/*
 * Answers `req` with `status` and the JSON error body
 * {"error": {"status": N, "message": "..."}}, the message formatted
 * printf-style (at most 511 bytes; a character cut there is escaped).
 * Bytes of the message that are not valid UTF-8 (a path or a name from
 * the request, quoted) are written as the four characters \xNN, so the
 * body is always valid JSON.
 * Thread: loop.
 */
TPOOL_API void tpool_http_reply_error(struct evhttp_request *req, int status,
                                      const char *fmt, ...) TPOOL_PRINTF(3, 4);

/*
 * Answers `req` with `status` and `body` as JSON (Content-Type
 * application/json, Cache-Control: no-store), written in ASCII, compact,
 * or indented by two spaces when the query string holds "pretty"
 * (?pretty). Takes over the reference to `body` (it is released here,
 * whatever happens), so a json_pack() result may be passed as is: NULL
 * (a json_pack() that failed for want of memory) answers a fixed 500
 * {"error": {"status": 500, "message": "out of memory"}}. `body` is a
 * jansson json_t; include <jansson.h> to build one.
 * Thread: loop.
 */
TPOOL_API void tpool_http_reply_json(struct evhttp_request *req, int status,
                                     struct json_t *body);

/*
 * Checks the request's method against `allow`, a list of methods as the
 * Allow header writes it ("GET, HEAD", "POST").
 * Returns: true if the method is in the list; false after answering 405
 * with `allow` as the Allow header and a JSON error body.
 * Thread: loop.
 */
TPOOL_API bool tpool_http_check_method(struct evhttp_request *req,
                                       const char *allow);

/*
 * Decodes the request's path (without the query string) strictly: every
 * '%' must start a %XX escape of two hex digits, none may decode to a NUL
 * byte, and the result must be valid UTF-8 (so must raw bytes above 0x7f).
 * '+' stays '+'. An empty path is "/".
 * Returns: 0 and *out, a NUL-terminated string the caller frees with
 * free(); -EINVAL after answering 400 with a JSON body that says what is
 * wrong and where; -ENOMEM after answering 500. *out is NULL on failure.
 * Thread: loop.
 */
TPOOL_API int tpool_http_path(struct evhttp_request *req, char **out);

#ifdef __cplusplus
}
#endif

#endif /* TPOOL_HTTP_H */
