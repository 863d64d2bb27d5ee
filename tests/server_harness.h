/*
 * server_harness.h — runs the real tpool-server binary for a test and
 * talks to it over HTTP on 127.0.0.1: spawn it on a config file written
 * to a private directory, collect its log from a pipe, learn its port,
 * make requests, check JSON answers, stop it and check how it exited.
 * Shared by test_server.c and test_reliability.c. Every wait is bounded
 * by WAIT_S, which only a failure reaches. The helpers fail the running
 * cmocka test on any surprise, so a test reads as a plain sequence.
 */
#ifndef TPOOL_TESTS_SERVER_HARNESS_H
#define TPOOL_TESTS_SERVER_HARNESS_H

#include "helpers.h"
#include "http_client.h"

#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The bound of every wait; generous for sanitizer builds on 2 cores. */
#define WAIT_S 60.0

typedef struct server {
  pid_t pid;
  bool reaped;
  int wstatus; /* from waitpid(), once reaped */
  uint16_t port;
  int log_fd; /* read end of the child's stdout and stderr */
  pthread_t reader;
  bool reader_joined;
  pthread_mutex_t mu;
  char *log; /* protected by mu: everything the child wrote */
  size_t len, cap;
} server_t;

#define MAX_SERVERS 16

typedef struct fixture {
  struct event_base *base; /* the client's loop */
  char dir[64];            /* mkdtemp(): config files and metrics dumps */
  char config[128];        /* dir/config.ini */
  server_t *servers[MAX_SERVERS];
  size_t nservers;
} fixture_t;

/* A copy of the log so far (caller frees). */
char *log_copy(server_t *s);

/* How often `needle` occurs in `text` (overlaps counted). */
size_t count_in(const char *text, const char *needle);

/* How often `needle` occurs in the log so far. */
size_t log_count(server_t *s, const char *needle);

/* Sleeps `ms` milliseconds. */
void nap_ms(long ms);

/* Prints the log; for failure messages. */
void print_log(server_t *s);

/* Waits until `needle` occurs at least `times` times in the log. */
void wait_log(server_t *s, const char *needle, size_t times);

/* Reaps the child if it has exited, or waits up to timeout_s for it.
   Returns whether it has exited. */
bool server_wait_exit(server_t *s, double timeout_s);

/* The child's exit status; fails the test if it was killed by a signal. */
int exit_code(server_t *s);

/* Waits for the rest of the output of a child that has exited. */
void server_join_log(server_t *s);

/* Kills the child if it still runs, reaps it and frees *s. */
void server_free(server_t *s);

/* cmocka fixture: a client loop and a private directory (setup); every
   server a case left running killed, the directory and everything in it
   removed (teardown). */
int setup(void **state);
int teardown(void **state);

/* Writes `text` to `path` whole: through a temporary file and rename(), so
   a server reloading meanwhile never reads half of it. */
void write_file(const char *path, const char *text);

/* Writes the fixture's config.ini from a printf format, whole. */
void write_config(fixture_t *fx, const char *fmt, ...) TPOOL_PRINTF(2, 3);

/* Spawns tpool-server -c <config> plus `extra` arguments (NULL-terminated,
   may be NULL), its stdout and stderr on the log pipe, in the fixture's
   directory (so its default [demo] data_dir is made there). */
server_t *server_spawn(fixture_t *fx, const char *const *extra);

/* Spawns the server on the config file as written and waits for its
   "Listening on" line. */
server_t *server_start(fixture_t *fx);

/* server_start() with `extra` arguments (NULL-terminated, may be NULL). */
server_t *server_start_args(fixture_t *fx, const char *const *extra);

/* SIGTERM, then a bounded wait; fails the test unless the server exits 0
   by itself. */
void server_stop_ok(server_t *s);

/* Waits for a server that should stop by itself; returns its exit code. */
int server_exit_code(server_t *s);

/* Runs the server on `config` (and `extra` arguments, NULL-terminated, may
   be NULL); it must exit 2 without listening, its output naming every one
   of `needles` (NULL-terminated). */
void expect_refused_start(fixture_t *fx, const char *config,
                          const char *const *extra, const char *const *needles);

/* One request; fails the test if no answer came in time. */
void call(fixture_t *fx, server_t *s, const char *method, const char *path,
          const char *const *headers, const char *body, th_response_t *r);

/* Asserts the status, printing the body when it is not. */
void expect_status(const th_response_t *r, int status);

/* A request whose JSON answer must have `status`; returns the JSON. */
json_t *call_json(fixture_t *fx, server_t *s, const char *method,
                  const char *path, const char *const *headers,
                  const char *body, int status);

/* GET `path`, which must answer 200 with JSON. Caller json_decref()s. */
json_t *get_json(fixture_t *fx, server_t *s, const char *path);

/* Asserts that a JSON error answer has the shape {"error": {"status": N,
   "message": "... <needle> ..."}}. */
void expect_error(const th_response_t *r, int status, const char *needle);

/* A request that must fail with a JSON error of `status`. */
void call_error(fixture_t *fx, server_t *s, const char *method,
                const char *path, const char *const *headers, const char *body,
                int status, const char *needle);

/* The members a test reads, asserted to exist with the right type. */
json_int_t jint(const json_t *o, const char *key);

double jnum(const json_t *o, const char *key);

const char *jstr(const json_t *o, const char *key);

json_t *jobj(const json_t *o, const char *key);

/* A pool of /health/thread-pools, the object of /health/thread-pools/{pool}
   or NULL for all of them. Caller json_decref()s. */
json_t *get_pool(fixture_t *fx, server_t *s, const char *pool);

/* POST /tasks/{pool} with `body`; returns the HTTP status, and the task id
   when it is 200. */
int post_task(fixture_t *fx, server_t *s, const char *pool, const char *body,
              const char *const *headers, json_int_t *id);

/* Prints a load's tally; for failure messages. */
void print_load(const th_load_stats_t *st);

/* Runs a load to its end; fails the test if it does not end in time. */
void run_load(server_t *s, th_load_t *l);

/* Runs the client loop until the load has started `n` requests; fails
   the test, with the load's tally and the log, if it never does. */
void run_load_until_started(fixture_t *fx, server_t *s, th_load_t *l, size_t n);

/* Sends SIGTERM during load l (of `total` requests on `concurrency`
   connections) and runs it to its end; fails the test unless every
   request sent was answered, 200 or 503, with at least every request
   started before the signal (less those in flight) answered 200, and the
   server then exits 0 by itself. */
void sigterm_during_load(server_t *s, th_load_t *l, size_t total,
                         unsigned concurrency);

/* Polls /health/thread-pools until no pool has work queued or running, and
   returns that answer (caller json_decref()s). */
json_t *wait_quiescent(fixture_t *fx, server_t *s);

#endif /* TPOOL_TESTS_SERVER_HARNESS_H */
