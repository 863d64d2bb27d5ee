/*
 * http_client.h — an HTTP client for tests: one request at a time on
 * libevent's evhttp client (th_http), a load generator that keeps a fixed
 * number of keep-alive connections busy (th_load_*), and raw blocking
 * sockets for requests libevent's client cannot send, such as a header
 * that never ends (th_raw_*). Everything talks to 127.0.0.1 only.
 *
 * th_http() and the load generator run the caller's event_base, so they
 * work in-process beside a server whose evhttp runs on the same base. None
 * of them may be called from inside a callback of that base (libevent
 * loops do not nest). All of it: test thread only.
 */
#ifndef TPOOL_TESTS_HTTP_CLIENT_H
#define TPOOL_TESTS_HTTP_CLIENT_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- one request --------------------------------------------------------- */

typedef struct th_response {
  int status; /* HTTP status; 0 if the connection failed or closed without
                 an answer */
  /* The status line's version, "HTTP/1.1" (raw sockets only: th_raw_*;
     "" otherwise). */
  char version[16];
  char *body; /* NUL-terminated copy of the body (malloc'd, "" when empty) */
  size_t body_len;
  size_t nheaders;
  char **keys, **values; /* copies of the response headers */
} th_response_t;

/*
 * Sends one request to 127.0.0.1:port with a new connection on `base` and
 * runs the loop until the answer arrives, the connection fails, or
 * timeout_s passes. `method`: "GET", "POST", "HEAD", "PUT", "DELETE",
 * "PATCH" or "OPTIONS" (anything else fails the test). `headers`: NULL or
 * a NULL-terminated array of "Name: value" strings; Host is added unless
 * given. `body` may be NULL; with a body, Content-Length is added unless
 * given.
 * Returns: 0 with *r filled (free with th_response_free()), -1 on timeout
 * (*r then holds an empty answer with status 0, which is safe to free).
 */
int th_http(struct event_base *base, uint16_t port, const char *method,
            const char *path, const char *const *headers, const char *body,
            size_t body_len, double timeout_s, th_response_t *r);

/* Frees what *r holds and zeroes it. NULL is a no-op. */
void th_response_free(th_response_t *r);

/* The value of a response header (case-insensitive name), or NULL.
   Borrowed: valid until th_response_free(r). */
const char *th_response_header(const th_response_t *r, const char *name);

/* r->body parsed with jansson; fails the cmocka test (with the body
   printed) if it is not valid JSON. Caller json_decref()s. */
json_t *th_json(const th_response_t *r);

/* ---- load ---------------------------------------------------------------- */

/* One request of a load. The strings are borrowed: they need to stay valid
   until the th_load_next_cb that filled them is called again (the request
   is serialised as soon as it returns). `headers` as in th_http(). */
typedef struct th_request {
  const char *method; /* any token, written as is */
  const char *path;
  const char *const *headers;
  const char *body; /* NULL: no body */
  size_t body_len;
} th_request_t;

/* Fills *req with request number n (0, 1, ...). Return false when there
   are no more requests. */
typedef bool (*th_load_next_cb)(size_t n, th_request_t *req, void *arg);

/* Reports how request n ended: r->status is its HTTP status, or 0 when it
   got no answer (see th_load_stats_t for why). *r is borrowed for the
   call. */
typedef void (*th_load_answer_cb)(size_t n, const th_response_t *r, void *arg);

/* The tally of a load so far. Every request ends up in exactly one of
   answered, lost and refused. */
typedef struct th_load_stats {
  size_t started;        /* requests taken from the th_load_next_cb */
  size_t sent;           /* of those, written to a connected socket */
  size_t answered;       /* got a complete HTTP response */
  size_t lost;           /* sent, but the connection ended without an answer */
  size_t refused;        /* the connection could not be made (nothing sent) */
  size_t by_status[600]; /* answered, per HTTP status (0..599) */
} th_load_stats_t;

typedef struct th_load th_load_t;

/*
 * Starts a load on `base` with `concurrency` connections to
 * 127.0.0.1:port. Each connection sends its next request (HTTP/1.1, kept
 * alive) when the previous answer arrives, so at most `concurrency` are in
 * flight; a connection the server closes is opened again for the next
 * request. Requests come from next() until it returns false or `total`
 * were taken; `answer` (may be NULL) sees each outcome. Nothing happens
 * until the loop runs: th_load_run(), th_run_until() or th_http().
 * Responses must carry Content-Length or end with the connection (no
 * chunked bodies, no HEAD). Returns the load (caller frees with
 * th_load_free()); fails the test if out of memory.
 */
th_load_t *th_load_start(struct event_base *base, uint16_t port,
                         unsigned concurrency, size_t total,
                         th_load_next_cb next, th_load_answer_cb answer,
                         void *arg);

/* True once every request has been taken and has ended. */
bool th_load_is_done(const th_load_t *l);

/* The tally so far. Borrowed: valid until th_load_free(l). */
const th_load_stats_t *th_load_stats(const th_load_t *l);

/*
 * Which connection the outcome being reported came on: the serial number
 * (0, 1, 2, ...) the load gave it when it opened it. Every connection the
 * load opens gets the next number, including one opened again after the
 * server closed the previous one, and one that was then refused (so a
 * refused request has a number of its own). Answers with the same number
 * came on the same TCP connection, one after the other. Valid only inside
 * the load's th_load_answer_cb; called anywhere else it fails the test.
 */
size_t th_load_connection(const th_load_t *l);

/* Runs the loop until the load is done or timeout_s passes. Returns
   th_load_is_done(). */
bool th_load_run(th_load_t *l, double timeout_s);

/* Closes the load's connections (requests in flight are dropped without a
   report) and frees it. NULL is a no-op. */
void th_load_free(th_load_t *l);

/* ---- raw sockets -----------------------------------------------------------
 */

/* A blocking TCP connection to 127.0.0.1:port. Returns the socket (close
   it with close()), or -1 with errno set. */
int th_raw_connect(uint16_t port);

/* Writes all `len` bytes of `data` (without SIGPIPE). Returns false if the
   connection failed first. */
bool th_raw_send(int fd, const void *data, size_t len);

/*
 * Reads one HTTP response from `fd`, waiting at most timeout_s in all.
 * The response must carry Content-Length or end with the connection.
 * Returns: 0 with *r filled — r->status is 0 if the connection closed (or
 * was reset) before a complete answer; -1 on timeout or a response that
 * cannot be parsed (*r then holds status 0). Free *r with
 * th_response_free() either way.
 */
int th_raw_read_response(int fd, double timeout_s, th_response_t *r);

/* Connects, sends request[0..len) as is, reads the answer and closes;
   returns as th_raw_read_response(), and 0 with status 0 if the connection
   could not be made or the request not sent. */
int th_raw_http(uint16_t port, const void *request, size_t len,
                double timeout_s, th_response_t *r);

/*
 * th_raw_http() for a server that runs on `base` in this process: the
 * request is sent, and the answer read, on a nonblocking socket while the
 * loop runs (with EVLOOP_NONBLOCK), so the server answers meanwhile.
 * Returns as th_raw_http().
 */
int th_raw_http_on(struct event_base *base, uint16_t port, const void *request,
                   size_t len, double timeout_s, th_response_t *r);

/* Binds `http` (a server under test) to 127.0.0.1 on a free port and
   returns the port; fails the test if it cannot. */
struct evhttp;
uint16_t th_evhttp_listen_local(struct evhttp *http);

#endif
