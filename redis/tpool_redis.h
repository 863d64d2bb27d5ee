/*
 * tpool_redis.h — durable queues for tpool: a Redis Streams consumer that
 * feeds a manager's pools, and a client that adds entries and reads their
 * results from anywhere.
 *
 * An entry of the stream is a task. A consumer (tpool_redis_consumer_new())
 * reads entries with XREADGROUP in batches, as a member of a consumer
 * group, turns each into a task with a function you give, and submits it
 * to its pool; when the task's done runs, a second function of yours turns
 * the outcome into the result to store, and the result record and the
 * XACK are written in one step (a Lua script), so that each entry gets
 * exactly one result record even when it ran twice. Entries are
 * acknowledged only after their task has ended: a consumer that dies
 * leaves its entries pending, to be read again by itself when it comes
 * back, or claimed by another consumer once they have been idle for
 * `reclaim_after_s`. An entry delivered more than `max_deliveries` times
 * goes to the dead-letter stream instead of running again.
 *
 * Delivery is at least once: the work of an entry may run more than once
 * (a consumer that died after the work and before the ack, a task that ran
 * longer than reclaim_after_s). Only one run's result is stored; the
 * others count as duplicates.
 *
 * Redis keys and fields (the names are a contract):
 *   <stream>                  the entries; the group <group> reads them
 *   tpool:result:<entry id>   hash: status (ok, failed, cancelled, expired
 *                             or dead), result (JSON text), attempts,
 *                             consumer, finished_at (Unix seconds, with
 *                             milliseconds); expires after result_ttl_s
 *   <dead_letter>             a stream: each dead entry's fields, plus
 *                             "entry" (its id), "reason" and "deliveries"
 *
 * Threads: a consumer or client belongs to the event_base it was made
 * with; call its functions on that loop's thread, except those marked
 * "Thread: any". It needs that loop running to do anything.
 *
 * Link with libtpool_redis (pkg-config: tpool-redis), which needs hiredis
 * (0.14 or later) and libtpool. Conventions are those of tpool.h: 0 or a
 * negative errno, out-parameters written on success only.
 */
#ifndef TPOOL_REDIS_H
#define TPOOL_REDIS_H

#include "tpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* Bounds of the options (what the [redis] keys accept). */
#define TPOOL_REDIS_URL_MAX 255     /* bytes of a URL */
#define TPOOL_REDIS_NAME_MAX 200    /* bytes of a key or consumer name */
#define TPOOL_REDIS_BATCH_MAX 10000 /* entries per XREADGROUP */
#define TPOOL_REDIS_DELIVERIES_MAX 1000
#define TPOOL_REDIS_TTL_MAX 31536000.0 /* seconds: a year */
#define TPOOL_REDIS_RECLAIM_MIN 0.1    /* seconds */
#define TPOOL_REDIS_RECLAIM_MAX 86400.0

/* The prefix of every result record's key. */
#define TPOOL_REDIS_RESULT_PREFIX "tpool:result:"

/* The longest entry id Redis writes: two 64-bit numbers and a '-'. */
#define TPOOL_REDIS_ID_MAX 42

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

typedef struct tpool_redis_entry tpool_redis_entry_t;
typedef struct tpool_redis_task tpool_redis_task_t;

/*
 * Turns an entry into a task: fills *t (pool or name for the route, the
 * work and its argument, options). `user` is the options' user pointer.
 * Returns: 0, and the library submits the task and later calls the
 * result function with t->arg; or a negative errno after writing why into
 * t->error: the entry can never run (bad fields), and gets a result
 * record with status "failed" and that message, and is acknowledged.
 * Thread: the consumer's loop.
 */
typedef int (*tpool_redis_task_fn)(void *user, const tpool_redis_entry_t *e,
                                   tpool_redis_task_t *t);

/*
 * Turns a task that ended into the JSON text of its result record's
 * "result" field, and frees the work's argument: it is called exactly once
 * for every task the task function made, whatever became of it. `status`
 * and `info` are those of the task's done callback (info is NULL when the
 * task was never submitted: the consumer is being freed). `e` is the entry
 * (fields valid for the call only).
 * Returns: a malloc()ed NUL-terminated string the library frees, or NULL
 * (the record's result is then "null").
 * Thread: the consumer's loop.
 */
typedef char *(*tpool_redis_result_fn)(void *user, void *arg, int status,
                                       const tpool_task_info_t *info,
                                       const tpool_redis_entry_t *e);

typedef struct tpool_redis_options {
  /* redis://HOST:PORT[/DB]: HOST a name or a numeric address, PORT
     1..65535, DB 0..15 (default 0). "" = off (a consumer refuses it).
     [redis] url */
  char url[TPOOL_REDIS_URL_MAX + 1];
  /* The stream of tasks, default "tpool:tasks". [redis] stream */
  char stream[TPOOL_REDIS_NAME_MAX + 1];
  /* The consumer group, created (at the stream's start, with the stream
     if missing) when absent; default "tpool". [redis] group */
  char group[TPOOL_REDIS_NAME_MAX + 1];
  /* This consumer's name in the group: "" = HOSTNAME:PID. Two live
     consumers must not share a name. [redis] consumer */
  char consumer[TPOOL_REDIS_NAME_MAX + 1];
  /* Where dead entries go, default "tpool:dead". [redis] dead_letter */
  char dead_letter[TPOOL_REDIS_NAME_MAX + 1];
  /* Entries per XREADGROUP, 1..TPOOL_REDIS_BATCH_MAX, default 64.
     [redis] batch */
  unsigned batch;
  /* Entries held at once (read and not yet acknowledged), 0 = four
     batches. Reading stops at this many, and whenever a pool refuses a
     task for being full: entries stay in the stream until a pool can take
     them. */
  unsigned max_in_flight;
  /* Seconds an entry may sit pending with a consumer that does not touch
     it before another consumer claims it, default 30. A consumer touches
     its own running entries every reclaim_after_s / 3, so a long task is
     not claimed from a live consumer. [redis] reclaim_after */
  double reclaim_after_s;
  /* Deliveries before an entry is dead-lettered instead of run, 1..1000,
     default 5. [redis] max_deliveries */
  unsigned max_deliveries;
  /* Seconds a result record lives, 1..TPOOL_REDIS_TTL_MAX, default 3600.
     [redis] result_ttl */
  double result_ttl_s;
  /* The consumer's functions (see above) and their first argument. */
  tpool_redis_task_fn to_task;
  tpool_redis_result_fn to_result;
  void *user;
} tpool_redis_options_t;

/*
 * Fills *o with the defaults above (url "", off; no functions).
 * Thread: any.
 */
TPOOL_API void tpool_redis_options_init(tpool_redis_options_t *o);

/*
 * The [redis] keys of these options (url, stream, group, consumer, batch,
 * reclaim_after, max_deliveries, dead_letter, result_ttl), as a section
 * for tpool_config_load_sections(), with the bounds above; a bad value
 * gets the loader's "file:line: [redis] key: ..." error. The result points
 * into *o and at static tables: o must outlive its use.
 * Thread: any.
 */
TPOOL_API tpool_config_section_t
tpool_redis_config_section(tpool_redis_options_t *o);

/*
 * Checks *o as set in code, with the loader's messages (file names where
 * the values came from; NULL: "options").
 * Returns: 0; -EINVAL with *err filled (if not NULL).
 * Thread: any.
 */
TPOOL_API int tpool_redis_options_check(const tpool_redis_options_t *o,
                                        const char *file,
                                        tpool_config_error_t *err);

/* ------------------------------------------------------------------------
 * Entries and tasks
 * ------------------------------------------------------------------------ */

/* One field of an entry: binary-safe, not NUL-terminated. */
typedef struct tpool_redis_field {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} tpool_redis_field_t;

/* An entry, as the task and result functions see it. */
struct tpool_redis_entry {
  const char *id; /* "1700000000000-0", NUL-terminated */
  const tpool_redis_field_t *fields;
  size_t nfields;
  unsigned deliveries; /* 1 on the first delivery */
};

/*
 * Returns the value of the field called `name` (the first, if several),
 * with its length in *len; NULL if there is none.
 * Thread: any.
 */
TPOOL_API const char *tpool_redis_entry_get(const tpool_redis_entry_t *e,
                                            const char *name, size_t *len);

/* Longest message a task function can give (with its NUL). */
#define TPOOL_REDIS_ERROR_MAX 256

/* What a task function fills in. The library zeroes it first. */
struct tpool_redis_task {
  /* The pool to submit to; NULL (or "") = route by `name` ([routes]). The
     string must live until the task function returns. */
  const char *pool;
  /* The task's name (copied by the submit); NULL = "task". */
  const char *name;
  tpool_work_cb work; /* required */
  void *arg;          /* the work's argument, given to the result function */
  /* Start deadline and attempts, as tpool_task_opts_t (base is the
     consumer's, whatever is set here). */
  double start_timeout_s;
  unsigned max_attempts;
  /* Why the entry cannot run, when the function fails. */
  char error[TPOOL_REDIS_ERROR_MAX];
};

/* ------------------------------------------------------------------------
 * The consumer
 * ------------------------------------------------------------------------ */

typedef struct tpool_redis_consumer tpool_redis_consumer_t;

/*
 * Makes a consumer of o->stream in group o->group for manager `m`, on
 * `base` (attached to m: the tasks' done callbacks run there), and starts
 * connecting. *o is copied. Once connected it creates the group if
 * missing, reads its own pending entries again (those a previous run
 * under the same name left), then new ones; it reconnects with a backoff
 * of 0.1 s doubling to 5 s whenever the connection drops. Running tasks
 * keep running while it is down; their results and acks are written once
 * it is back.
 * Returns: 0 and *out (free with tpool_redis_consumer_free()); -EINVAL if
 * an argument is NULL, o->url is "" or *o fails
 * tpool_redis_options_check(), or to_task or to_result is NULL; -ENOMEM.
 * Thread: base's loop, or before it runs.
 */
TPOOL_API int tpool_redis_consumer_new(tpool_manager_t *m,
                                       struct event_base *base,
                                       const tpool_redis_options_t *o,
                                       tpool_redis_consumer_t **out);

/* The consumer's counters, read together. */
typedef struct tpool_redis_stats {
  bool connected;          /* the connection is up and ready */
  uint64_t received;       /* entries delivered to this consumer */
  uint64_t acked;          /* entries acknowledged with their result */
  uint64_t reclaimed;      /* entries claimed from idle consumers */
  uint64_t dead_lettered;  /* entries moved to the dead-letter stream */
  uint64_t duplicates;     /* runs whose entry was already acknowledged */
  uint64_t failed_entries; /* entries the task function refused */
  size_t in_flight;        /* entries held: submitted, or waiting to be */
  /* The group's, as Redis last said (every second): entries not yet
     delivered to the group (-1: unknown), entries delivered and not
     acknowledged by any consumer (-1: unknown). */
  int64_t lag, pending;
  /* Seconds since the connection went down (0 when connected). */
  double down_s;
} tpool_redis_stats_t;

/*
 * Reads the consumer's counters.
 * Thread: any (health routes on other loops), while the consumer lives.
 */
TPOOL_API void tpool_redis_consumer_stats(const tpool_redis_consumer_t *c,
                                          tpool_redis_stats_t *out);

/* The options the consumer runs with (consumer filled in). Thread: any. */
TPOOL_API const tpool_redis_options_t *
tpool_redis_consumer_options(const tpool_redis_consumer_t *c);

/*
 * Stops reading new entries and calls done(arg) on the consumer's loop
 * once every entry it holds has ended and its result and ack are written,
 * or when timeout_s passes (entries not yet acknowledged then stay
 * pending in Redis, for this consumer's next run or another consumer).
 * The manager must keep running the held tasks meanwhile. Calling it
 * again replaces done.
 * Returns: 0; -EINVAL for a NULL c.
 * Thread: the consumer's loop.
 */
TPOOL_API int tpool_redis_consumer_stop(tpool_redis_consumer_t *c,
                                        double timeout_s,
                                        void (*done)(void *arg), void *arg);

/*
 * Frees the consumer: disconnects (what is not acknowledged stays pending
 * in Redis). Tasks it submitted that have not ended keep their entries;
 * their completions, when they come, only free their argument (through
 * the result function, with info NULL). NULL is a no-op.
 * Thread: the consumer's loop, not inside one of its callbacks.
 */
TPOOL_API void tpool_redis_consumer_free(tpool_redis_consumer_t *c);

/* ------------------------------------------------------------------------
 * The client: add entries, read results
 * ------------------------------------------------------------------------ */

typedef struct tpool_redis_client tpool_redis_client_t;

/*
 * Makes a client of o->url, o->stream and o->group on `base` and starts
 * connecting (reconnecting as a consumer does). *o is copied; the other
 * fields are not used.
 * Returns: 0 and *out; -EINVAL (NULL argument, url "" or invalid);
 * -ENOMEM.
 * Thread: base's loop, or before it runs.
 */
TPOOL_API int tpool_redis_client_new(struct event_base *base,
                                     const tpool_redis_options_t *o,
                                     tpool_redis_client_t **out);

/* True while the client's connection is up. Thread: client's loop. */
TPOOL_API bool tpool_redis_client_connected(const tpool_redis_client_t *c);

/*
 * Called once with the outcome of tpool_redis_add(): rc 0 and the new
 * entry's id, or a negative errno (-ENOTCONN: Redis unreachable; -EIO: an
 * error reply, or the client freed) and id NULL.
 */
typedef void (*tpool_redis_added_fn)(void *arg, int rc, const char *id);

/*
 * Adds an entry with the `n` fields of fields[] to the stream (XADD
 * <stream> * ...). cb is called later on the loop, exactly once, unless
 * this returns an error.
 * Returns: 0; -ENOTCONN at once when disconnected (cb not called);
 * -EINVAL (NULL c or cb, n == 0); -ENOMEM.
 * Thread: the client's loop.
 */
TPOOL_API int tpool_redis_add(tpool_redis_client_t *c,
                              const tpool_redis_field_t *fields, size_t n,
                              tpool_redis_added_fn cb, void *arg);

/* Where an entry is, as tpool_redis_lookup() found it. */
typedef enum tpool_redis_state {
  /* No result record, and the entry is not waiting: never added, or
     finished so long ago that its record expired */
  TPOOL_REDIS_UNKNOWN,
  /* No result yet: not yet delivered to the group, or pending with a
     consumer (queued or running there) */
  TPOOL_REDIS_WAITING,
  TPOOL_REDIS_DONE /* its result record, below */
} tpool_redis_state_t;

/* An entry's result record; strings valid during the callback only. */
typedef struct tpool_redis_record {
  tpool_redis_state_t state;
  const char *status;   /* DONE: ok, failed, cancelled, expired or dead */
  const char *result;   /* DONE: JSON text */
  unsigned attempts;    /* DONE */
  const char *consumer; /* DONE: who wrote it */
  double finished_at;   /* DONE: Unix seconds */
} tpool_redis_record_t;

/*
 * Called once with the outcome of tpool_redis_lookup(): rc 0 and *r, or a
 * negative errno (-ENOTCONN, -EIO) and r NULL.
 */
typedef void (*tpool_redis_lookup_fn)(void *arg, int rc,
                                      const tpool_redis_record_t *r);

/*
 * Looks up entry `id` (as XADD gave it): its result record, else whether
 * it is still in the stream.
 * Returns: 0 (cb called later, exactly once); -ENOTCONN at once when
 * disconnected; -EINVAL for a NULL argument or an id that is not
 * DIGITS-DIGITS; -ENOMEM.
 * Thread: the client's loop.
 */
TPOOL_API int tpool_redis_lookup(tpool_redis_client_t *c, const char *id,
                                 tpool_redis_lookup_fn cb, void *arg);

/*
 * Frees the client; callbacks still due are called first with -EIO.
 * NULL is a no-op.
 * Thread: the client's loop, not inside one of its callbacks.
 */
TPOOL_API void tpool_redis_client_free(tpool_redis_client_t *c);

/*
 * True for an entry id as Redis writes them: DIGITS-DIGITS, each part a
 * number of 64 bits (at most 18446744073709551615).
 * Thread: any.
 */
TPOOL_API bool tpool_redis_is_entry_id(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* TPOOL_REDIS_H */
