/*
 * tasks.h — tpool-server's task routes, POST /tasks[/{pool}] and GET
 * /tasks/{id} (tasks.c, with the request body read by task_body.c), and
 * the way the server serves every request (tasks_serve()). The program
 * around them (server.c) needs to know when every accepted task has been
 * answered before it exits.
 */
#ifndef TPOOL_SERVER_TASKS_H
#define TPOOL_SERVER_TASKS_H

#include "clock.h"
#include "demo_work.h"
#include "tpool.h"
#include "tpool_http.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Work functions accept `ms` in 0..DEMO_MS_MAX. (The HTTP fuzz target
   builds the route with a few milliseconds.) */
#ifndef DEMO_MS_MAX
#define DEMO_MS_MAX 60000
#endif

/* The pool whose workers hold the database connections: "query" runs
   there only. */
#define DB_POOL "db"

/* The longest "delay_s": tpool's own bound, 30 days. */
#define TASK_DELAY_MAX_S TPOOL_DELAY_MAX_S

/* The kinds of work a task runs. */
enum work_kind {
  WORK_SLEEP,
  WORK_SPIN,
  WORK_FAIL,
  WORK_QUERY,
  WORK_DENSE,
  WORK_EMBED,
  WORK_HASH,
  WORK_READ,
  WORK_FLAKY
};
#define NWORK 9
/* Their names, as "work" gives them ("sleep", ...). */
extern const char *const work_names[NWORK];

typedef struct task task_t;

/* The state of the task routes on one loop. All fields: loop thread only. */
typedef struct task_route {
  tpool_manager_t *m;
  tpool_http_t *routes; /* tpool's routes: limits, token, the rest */
  /* What the work kinds of demo_work.h need, set before the first
     request; each task copies what it uses. */
  unsigned embedding_dim; /* [demo] embedding_dim */
  int read_fd;            /* the read file, shared (pread); -1: none */
  size_t read_size;       /* its length */
  /* Accepted tasks whose reply has not been handed to evhttp yet. */
  TAILQ_HEAD(, task) waiting;
  size_t nwaiting;
  bool draining; /* replies carry Connection: close */
  /* The durable queue, when [redis] is on (queue.c): this loop's Redis
     client, and the handler tasks_serve() offers every request first. */
  void *queue;
  bool (*queue_handle)(struct task_route *d, struct evhttp_request *req,
                       const char *path);
  /* Called whenever nwaiting drops, so a drain can finish. */
  void (*on_progress)(void *arg);
  void *arg;
} task_route_t;

/* One request's task (or batch of copies of it). */
struct task {
  TAILQ_ENTRY(task) link; /* on d->waiting until answered */
  task_route_t *d;
  int64_t id;
  struct evhttp_request *req; /* NULL once answered without the task */
  enum work_kind kind;
  /* The input, for the worker. */
  unsigned ms;       /* sleep, spin, fail */
  int64_t key;       /* query */
  uint64_t n;        /* dense: size; hash, read: bytes */
  char *text;        /* embed: text_len bytes, not NUL-terminated */
  size_t text_len;   /* embed */
  unsigned dim;      /* embed */
  int fd;            /* read */
  unsigned failures; /* flaky: runs that ask for a retry before success */
  unsigned runs;     /* flaky: runs so far (one worker at a time) */
  /* A batch ("count" > 1): copies of this task run with at most
     `concurrency` in flight, and the request is answered once. */
  unsigned count, concurrency;
  unsigned max_attempts; /* "attempts"; 0: the pool's retry_attempts */
  double delay_s;        /* "delay_s"; 0: none (tpool_task_opts_t) */
  uint64_t start_ns;
  const char *pool_name; /* a batch's, for its reply */
  char name[TPOOL_TASK_NAME_MAX];
  task_t **copies;
  /* The output, written by the worker, read by on_done() on the loop. */
  const char *why; /* what went wrong, when tpool_strerror() would not say */
  union {
    demo_row_t row;
    demo_dense_t dense;
    char sha256[65];
    uint64_t fnv1a; /* read */
  } out;
  double *vector; /* embed: dim values */
  size_t ntokens; /* embed */
};

/* Why a body was refused: the HTTP status (400, or 500 when out of
   memory) and a message naming the field. */
typedef struct task_error {
  int status;
  char message[256];
} task_error_t;

/*
 * task_body.c: checks `len` bytes of JSON, the body of a POST /tasks
 * request or the "task" field of a queued entry, and fills *t, *name and
 * *start_timeout_s as task_parse_body() below does.
 * Returns: true; false with *e filled. *doc as below.
 */
bool task_parse_json(task_route_t *d, const char *data, size_t len, task_t *t,
                     const char **name, double *start_timeout_s, json_t **doc,
                     task_error_t *e);

/*
 * task_body.c: checks `len` bytes of JSON, the task of a [schedule.NAME]
 * section, as task_parse_json() does, and what a schedule adds: a
 * schedule runs one task per run (no "count" above 1), when `every` says
 * (no "delay_s"), and a run's attempts share no state ("flaky" counts its
 * runs across the attempts of one task, which a scheduled run does not
 * keep: each attempt works on a copy).
 * Returns: true; false with *e filled. *doc as task_parse_json().
 */
bool task_parse_scheduled(task_route_t *d, const char *data, size_t len,
                          task_t *t, const char **name, double *start_timeout_s,
                          json_t **doc, task_error_t *e);

/*
 * task_body.c: whether a parsed task may run on the pool called `pool`
 * ("query" runs on the db pool only).
 * Returns: 0; or 400 after writing why[0..size).
 */
int task_pool_allows(const task_t *t, const char *pool, char *why, size_t size);

/*
 * task_body.c: checks the JSON body of a POST /tasks request and fills *t
 * (its kind and input), *name (borrowed from *doc; NULL when the body has
 * none) and *start_timeout_s. "work" is read first: the other fields are
 * checked against its kind.
 * Returns: true; false after answering 400 naming the field (or 500 when
 * out of memory). *doc gets the parsed body either way (caller
 * json_decref()s; NULL if it did not parse).
 */
bool task_parse_body(task_route_t *d, struct evhttp_request *req, task_t *t,
                     const char **name, double *start_timeout_s, json_t **doc);

/*
 * The pool a parsed task goes to: *pool, or when *pool is NULL the one
 * [routes] give `name` (then written to *pool); and whether the task may
 * run there ("query" runs on the db pool only). `by` names what asked,
 * for the message when a name is needed ("POST /tasks").
 * Returns: 0; or the HTTP status (400, 404) after writing why[0..size).
 */
int task_target(task_route_t *d, const task_t *t, const char *by,
                const char *name, const char **pool, char *why, size_t size);

/* task_body.c: frees a task and its copies. */
void task_free(task_t *t);

/* A new copy of parsed task t for one run of its work (its own text, no
   output yet, no copies): what a schedule's attempt works on, since runs
   may overlap and the worker writes the task. NULL when out of memory. */
task_t *task_copy(const task_t *t);

/* The work of a task, on a worker thread: what its kind says. A failure
   with a message (t->why) gives it to tpool_task_set_error(), so the
   pool's last error says it. */
int task_run(void *arg);

/*
 * The reply to a task that ran (or was given up on by the pool), as POST
 * /tasks answers it, with the HTTP status its outcome maps to in *http.
 * Returns: a new object; NULL when out of memory.
 * Thread: the loop the task's done ran on.
 */
json_t *task_reply_json(const task_t *t, int status,
                        const tpool_task_info_t *info, int *http);

/*
 * The same reply as task_reply_json(), as JSON text: for a queued entry's
 * result record.
 * Returns: malloc()ed text; NULL when out of memory.
 * Thread: as task_reply_json().
 */
char *task_reply_text(const task_t *t, int status,
                      const tpool_task_info_t *info);

/*
 * Serves `req`, whose decoded path is `path`, if it is /tasks or under it:
 * POST /tasks/{pool} validates the body, submits the work to the pool and
 * answers when the task completes; POST /tasks submits to the pool
 * [routes] give its name; GET /tasks/{id} looks a task up. The work kinds
 * "query", "dense", "embed", "hash" and "read" run demo_work.h; "query"
 * runs on the db pool only, through the connection its thread_start hook
 * opened.
 * Returns: true if the path is /tasks or under it (answered or pending);
 * false otherwise, leaving the request alone.
 */
bool tasks_handle(task_route_t *d, struct evhttp_request *req,
                  const char *path);

/*
 * Serves any request the way tpool-server does: the version, framing and
 * size checks, the path's decoding, the task routes, then tpool's routes,
 * else a JSON 404. The fuzz target routes through it too, so it fuzzes
 * what the server runs.
 */
void tasks_serve(task_route_t *d, struct evhttp_request *req);

/*
 * Tells the task routes that the calling thread runs tpool-server's loop
 * number `index` (0-based), which every reply reports as "loop".
 * Thread: that loop's, before it runs.
 */
void tasks_enter_loop(unsigned index);

/*
 * Answers with 503 every request whose task is still running (used when a
 * drain's deadline passed); their tasks' done callbacks, if they ever run,
 * then only free their state. Requests whose tasks have ended keep waiting
 * for their completions, already on the way to the loop.
 */
void tasks_abandon(task_route_t *d);

#endif /* TPOOL_SERVER_TASKS_H */
