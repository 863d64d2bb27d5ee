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
 *   GET  /metrics                           Prometheus text format 0.0.4
 *   GET  /dashboard                         a self-contained HTML page
 *                                           that polls the pools' JSON
 *
 * Every body is built from a stats snapshot (tpool_manager_stats()), never
 * from live pool fields. Errors are JSON: {"error": {"status": 404,
 * "message": "..."}}. A known path with the wrong method gets 405 and an
 * Allow header. When an admin token is set, POST routes need
 * "Authorization: Bearer <token>" and answer 401 without it.
 *
 * Link with libtpool_http (pkg-config: tpool-http), which needs jansson
 * and libevent_extra. All functions here run on the loop thread of the
 * evhttp's event_base unless marked otherwise.
 */
#ifndef TPOOL_HTTP_H
#define TPOOL_HTTP_H

#include "tpool.h"

#ifdef __cplusplus
extern "C" {
#endif

struct evhttp;
struct evhttp_request;

typedef struct tpool_http tpool_http_t;

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
 * limits. The token is copied.
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
 * Returns: 0; -EINVAL for a token longer than TPOOL_TOKEN_MAX - 1 bytes
 * or holding a blank or control character (the token stays as it was).
 * Thread: loop.
 */
TPOOL_API int tpool_http_set_token(tpool_http_t *h, const char *token);

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
 * /metrics), for servers with their own generic callback. Unknown pools
 * under /health/thread-pools/ get the JSON 404 here.
 * Returns: true if it answered the request; false if the path is not
 * tpool's (the request is untouched and still yours to answer).
 * Thread: loop.
 */
TPOOL_API bool tpool_http_handle(tpool_http_t *h, struct evhttp_request *req);

/*
 * Checks that `req` is framed plainly (at most one Content-Length, all
 * digits, and not beside Transfer-Encoding: anything else could be read
 * differently by a proxy in front); and, with TPOOL_HTTP_CONFIGURE,
 * against the configured header and body limits. For your own routes,
 * which otherwise see only evhttp's raised caps. `h` may be NULL (the
 * framing check only).
 * Returns: true when the request passes; false after answering 400
 * (framing) or 413 (limits) with a JSON body.
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

/*
 * Answers `req` with `status` and the JSON error body
 * {"error": {"status": N, "message": "..."}}, the message formatted
 * printf-style. Useful so your own routes fail the way tpool's do.
 * Thread: loop.
 */
TPOOL_API void tpool_http_reply_error(struct evhttp_request *req, int status,
                                      const char *fmt, ...) TPOOL_PRINTF(3, 4);

#ifdef __cplusplus
}
#endif

#endif /* TPOOL_HTTP_H */
