/*
 * redis_internal.h — what the files of libtpool_redis share: a connection
 * that reconnects by itself (conn.c), entries copied out of replies
 * (entry.c), and the small JSON and number writers the records need.
 *
 * Everything here runs on the loop thread of the connection's event_base.
 */
#ifndef TPOOL_REDIS_INTERNAL_H
#define TPOOL_REDIS_INTERNAL_H

#include "tpool_redis.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- conn.c: one connection, kept up ------------------------------------ */

typedef struct tpool__redis_conn tpool__redis_conn_t;

/* Called when the connection is ready (connected, database selected), and
   when it is lost (every command sent on it has had its callback, with a
   NULL reply, before this runs). */
typedef void (*tpool__redis_conn_fn)(void *arg);

struct tpool__redis_conn {
  struct event_base *base;
  char host[TPOOL_REDIS_URL_MAX + 1];
  int port;
  unsigned db;
  const char *what;      /* for the log: "consumer reads", ... */
  redisAsyncContext *ac; /* NULL while down */
  bool ready;            /* ac connected and SELECTed */
  struct event *retry;   /* the next connect attempt, or its timeout */
  double backoff_s;
  uint64_t down_since_ns; /* 0 while ready */
  tpool_manager_t *log;   /* where to log (may be NULL) */
  bool logged_down;       /* the loss was logged */
  tpool__redis_conn_fn on_ready, on_down;
  void *arg;
};

/* Parses url into c's host, port and db. Returns 0 or -EINVAL. */
int tpool__redis_parse_url(const char *url, char *host, size_t host_size,
                           int *port, unsigned *db);

/* Sets c up (nothing connects until tpool__redis_conn_start()).
   Returns 0, -EINVAL (bad url), -ENOMEM. */
int tpool__redis_conn_init(tpool__redis_conn_t *c, struct event_base *base,
                           const char *url, const char *what,
                           tpool_manager_t *log, tpool__redis_conn_fn on_ready,
                           tpool__redis_conn_fn on_down, void *arg);

/* Starts connecting. */
void tpool__redis_conn_start(tpool__redis_conn_t *c);

/* Sends a command (argv, binary safe). Returns 0, or -ENOTCONN when the
   connection is not ready (cb not called). */
int tpool__redis_conn_send(tpool__redis_conn_t *c, redisCallbackFn *cb,
                           void *privdata, int argc, const char **argv,
                           const size_t *lens);

/* Disconnects for good and frees what init made: pending callbacks run
   first with a NULL reply; on_down does not. */
void tpool__redis_conn_close(tpool__redis_conn_t *c);

/* Monotonic nanoseconds. */
uint64_t tpool__redis_now_ns(void);

/* `s` seconds (>= 0) as a struct timeval, for event_add(). */
struct timeval tpool__redis_timeval(double s);

/* ---- entry.c: entries out of replies ------------------------------------ */

/* An entry held by a consumer, with its own copy of the id and fields. */
typedef struct tpool__redis_held tpool__redis_held_t;

/*
 * Copies an entry reply ([id, [name, value, ...]]) into a new
 * allocation: *out->entry points into it. Returns 0; -EINVAL for a reply
 * of another shape (a nil entry, deleted from the stream, is -ENOENT);
 * -ENOMEM.
 */
typedef struct tpool__redis_copy {
  tpool_redis_entry_t entry;
  void *mem; /* free() this to free the copy */
} tpool__redis_copy_t;
int tpool__redis_copy_entry(const redisReply *r, tpool__redis_copy_t *out);

/* ---- text ---------------------------------------------------------------- */

/* A growable string. */
typedef struct tpool__redis_buf {
  char *s;
  size_t len, cap;
  bool failed; /* out of memory: s is whatever fitted */
} tpool__redis_buf_t;

void tpool__redis_buf_add(tpool__redis_buf_t *b, const char *s, size_t n);
/* Adds s as a JSON string, quotes included. */
void tpool__redis_buf_json(tpool__redis_buf_t *b, const char *s, size_t n);

#endif /* TPOOL_REDIS_INTERNAL_H */
