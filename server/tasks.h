/*
 * server.h — what tpool-server's two files share: the demo task route
 * (routes_tasks.c) and the program around it (server.c), which needs to
 * know when every accepted task has been answered before it exits.
 */
#ifndef TPOOL_HTTP_SERVER_H
#define TPOOL_HTTP_SERVER_H

#include "http_internal.h"

#include <sys/queue.h>

/* Work functions accept `ms` in 0..TPOOL__DEMO_MS_MAX. (The HTTP fuzz
   target builds the route with a few milliseconds.) */
#ifndef TPOOL__DEMO_MS_MAX
#define TPOOL__DEMO_MS_MAX 60000
#endif

typedef struct tpool__demo_task tpool__demo_task_t;

/* The state of POST /tasks/{pool}. All fields: loop thread only. */
typedef struct tpool__demo {
  tpool_manager_t *m;
  tpool_http_t *routes; /* tpool's routes: limits, token, the rest */
  /* What the work kinds of demo_work.h need, set before the first
     request; each task copies what it uses. */
  unsigned embedding_dim; /* [demo] embedding_dim */
  int read_fd;            /* the read file, shared (pread); -1: none */
  size_t read_size;       /* its length */
  /* Accepted tasks whose reply has not been handed to evhttp yet. */
  TAILQ_HEAD(, tpool__demo_task) waiting;
  size_t nwaiting;
  bool draining; /* replies carry Connection: close */
  /* Called whenever nwaiting drops, so a drain can finish. */
  void (*on_progress)(void *arg);
  void *arg;
} tpool__demo_t;

/*
 * Serves POST /tasks/{pool}: validates the JSON body, submits the work to
 * the pool and answers when the task completes. The work kinds "query",
 * "dense", "embed", "hash" and "read" run demo_work.h; "query" runs on the
 * db pool only, through the connection its thread_start hook opened.
 * Returns: true if the path is /tasks or under it (answered or pending);
 * false otherwise, leaving the request alone.
 */
bool tpool__demo_handle(tpool__demo_t *d, struct evhttp_request *req);

/*
 * Serves any request the way tpool-server does: the framing and size
 * checks, POST /tasks[/{pool}], then tpool's routes, else a JSON 404.
 * The fuzz target routes through it too, so it fuzzes what the server runs.
 */
void tpool__demo_serve(tpool__demo_t *d, struct evhttp_request *req);

/*
 * Tells the demo route that the calling thread runs tpool-server's loop
 * number `index` (0-based), which every reply reports as "loop".
 * Thread: that loop's, before it runs.
 */
void tpool__demo_enter_loop(unsigned index);

/*
 * Answers with 503 every request whose task is still running (used when a
 * drain's deadline passed); their tasks' done callbacks, if they ever run,
 * then only free their state. Requests whose tasks have ended keep waiting
 * for their completions, already on the way to the loop.
 */
void tpool__demo_abandon(tpool__demo_t *d);

/*
 * Opens n listening sockets on host:port (numeric), one per loop: with
 * n > 1 they share the address through SO_REUSEPORT, after a first bind
 * without it has shown that no other socket listens there. Port 0 picks
 * a free port, the same for all. Writes "http://host:port/" to url.
 * Returns: 0 and fds[0..n) (the caller owns them); -errno (EADDRINUSE,
 * EINVAL for a host that is not numeric, ...), with nothing left open.
 * Thread: any.
 */
int tpool__listen(const char *host, uint16_t port, unsigned n, int *fds,
                  char *url, size_t url_size);

/*
 * --self-check: runs one task on every pool of m as a future and waits up
 * to 5 s in all, logging each pool that could not and then a summary.
 * With db_connections, the db pool's task queries its worker's database
 * connection. Tasks count in the statistics like any others.
 * Thread: any but a loop thread of m (it blocks), once m has started.
 */
void tpool__server_self_check(tpool_manager_t *m, bool db_connections);

#endif /* TPOOL_HTTP_SERVER_H */
