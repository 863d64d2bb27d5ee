/*
 * server.h — what the files of tpool-server share: the server and its
 * loops (server.c runs them: requests, drain, reload), the command line
 * (main.c), the demo data made before the pools start (demo_data.c), the
 * listening sockets (listen.c) and --self-check (self_check.c).
 *
 * The server is an application of the public API: it includes tpool.h
 * and tpool_http.h and links libtpool and libtpool_http, nothing else of
 * them.
 */
#ifndef TPOOL_SERVER_SERVER_H
#define TPOOL_SERVER_SERVER_H

#include "config.h"
#include "demo_work.h"
#include "tasks.h"

#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct server server_t;

/* One of the [http] loop_threads loops. Loop 0 runs on the main thread and
   owns the signals; the others run on threads of their own. Fields are
   the loop thread's alone unless marked. */
typedef struct loop {
  server_t *s;
  unsigned index;
  struct event_base *base;
  struct evhttp *http;
  struct evhttp_bound_socket *listener;
  struct tpool_redis_client *redis; /* [redis] on: this loop's client */
  tpool_http_t *routes;
  task_route_t tasks;
  pthread_t thread;    /* main thread only: loops 1.. */
  bool thread_started; /* main thread only */
  int drain_step;      /* 0; 1: listener closed; 2: draining */
  bool drained;        /* the manager's shutdown has returned */
  size_t left; /* requests waiting when it returned; read by the loop that
                  takes server.loops_to_drain to 0, after this one's
                  decrement */
  /* Made active by loop 0 or the drain thread; they run here. */
  struct event *drain_ev;       /* the next step of the drain */
  struct event *drained_ev;     /* the shutdown returned */
  struct event *reload_ev;      /* apply server.http_next */
  atomic_uint_fast64_t applied; /* atomic: the last http_gen applied */
} loop_t;

struct server {
  tpool_manager_t *m;
  struct tpool_redis_consumer *consumer; /* [redis] on: on loop 0 */
  server_config_t *cfg; /* as last loaded; loop 0 only, and the drain
                           thread (reloads stop before it starts) */
  const char *config_path;
  bool self_check; /* --self-check */
  loop_t *loops;
  unsigned nloops;
  struct event *signals[3]; /* on loop 0 */
  /* The drain: started on loop 0, run by the drain thread, which tells
     every loop when it is over. */
  bool draining;              /* loop 0 only */
  uint64_t drain_start_ns;    /* when it began; set before the thread */
  atomic_uint loops_to_close; /* atomic: loops whose listener is open */
  struct event *closed_ev;    /* on loop 0: every listener is closed */
  pthread_t drain_thread;
  bool drain_thread_started;  /* loop 0 only */
  int drain_rc;               /* written before drained_ev is made active */
  atomic_uint loops_to_drain; /* atomic: loops yet to see the drain end */
  /* The [http] settings of the last reload, for every loop to apply. */
  pthread_mutex_t http_mu;
  tpool_http_options_t http_next;      /* under http_mu */
  uint64_t http_gen;                   /* under http_mu: reloads so far */
  atomic_uint_fast64_t announced;      /* atomic: gen logged as applied */
  char address[INET6_ADDRSTRLEN + 16]; /* where it listens, as a URL */
  bool bad_log; /* [general] log cannot be opened: a config error */
  /* Demo data. db_hook is the db pool's thread_arg, so it outlives the
     manager (a hook may run after tpool_manager_free()): it lives until
     main() returns. */
  char db_path[TPOOL_PATH_MAX + 16];
  char read_path[TPOOL_PATH_MAX + 16];
  int read_fd; /* shared by the loops (pread); -1: none */
  demo_db_hook_t db_hook;
  atomic_uint db_opened;      /* atomic: connections the db hook opened */
  unsigned db_logged;         /* loop 0 only: how many were logged */
  struct event *db_opened_ev; /* wakes loop 0 to log them */
  /* The [schedule.NAME] schedules running (schedules.c); loop 0 only. */
  struct sched *scheds;
  size_t nscheds;
};

/* Logs "Server " and the message through the manager's log. Thread: any. */
void server_log(server_t *s, tpool_log_level_t lv, const char *fmt, ...)
    TPOOL_PRINTF(3, 4);

/* ---- server.c ------------------------------------------------------------ */

/* Sets up and starts everything: the pools of s->cfg, the demo data, the
   loops with their routes and listening sockets, the signals. Returns 0,
   or a negative errno after logging why (what was made is left for
   server_stop()). Thread: main. */
int server_start(server_t *s);

/* Runs loop 0 here until the drain is over, then waits for the others.
   Thread: main. */
void server_serve(server_t *s);

/* Frees what server_start() made, whatever it got to. Thread: main. */
void server_stop(server_t *s);

/* ---- demo_data.c ----------------------------------------------------------
 */

/* The db pool of o, if it is enabled: it gets a connection per worker. */
tpool_pool_options_t *demo_db_pool(tpool_options_t *o);

/* Sets the db pool's thread hooks (before the manager copies the
   options), which open the database as the workers start and wake loop 0
   through s->db_opened_ev to log each connection. */
void demo_data_hooks(server_t *s);

/* Makes [demo] data_dir, the database (when the db pool runs) and the
   read file, and opens the read file for the routes (s->read_fd).
   Returns 0, or a negative errno after logging why. Before the pools
   start: the db workers open the database as they start. */
int demo_data_prepare(server_t *s);

/* On loop 0: logs the connections the db hooks opened since last time. */
void demo_data_on_opened(evutil_socket_t fd, short what, void *arg);

/* ---- listen.c -------------------------------------------------------------
 */

/*
 * Opens n listening sockets on host:port (numeric), one per loop: with
 * n > 1 they share the address through SO_REUSEPORT, after a first bind
 * without it has shown that no other socket listens there. Port 0 picks
 * a free port, the same for all. Writes "http://host:port/" to url.
 * Returns: 0 and fds[0..n) (the caller owns them); -errno (EADDRINUSE,
 * EINVAL for a host that is not numeric, ...), with nothing left open.
 * Thread: any.
 */
int server_listen(const char *host, uint16_t port, unsigned n, int *fds,
                  char *url, size_t url_size);

/* ---- schedules.c ----------------------------------------------------------
 */

/* Checks the [schedule.NAME] sections of c against the running manager
   (its pools and routes, which a reload does not change) and loop 0's
   task routes, as schedules_start() and schedules_reload() will make
   them. Returns 0, or -EINVAL with *err filled ("FILE:LINE:
   [schedule.NAME] pool: ..."). Thread: loop 0. */
int schedules_check(server_t *s, const server_config_t *c,
                    tpool_config_error_t *err);

/* Makes a schedule of every [schedule.NAME] of s->cfg on loop 0's base
   (tpool logs each). Returns 0, or a negative errno after logging why.
   Thread: main, once the manager runs and before loop 0 does. */
int schedules_start(server_t *s);

/* Makes the running schedules those of `next` (checked by
   schedules_check()): cancels, makes and updates them, and logs "Config
   reload: schedules: A added, R removed, C changed, U unchanged" when
   either file has any. Thread: loop 0. */
void schedules_reload(server_t *s, const server_config_t *next);

/* Frees the server's list, once the manager (which frees the schedules
   themselves) is gone. Thread: main. */
void schedules_free(server_t *s);

/* ---- self_check.c ---------------------------------------------------------
 */

/*
 * --self-check: runs one task on every pool of m as a future and waits up
 * to 5 s in all, logging each pool that could not and then a summary.
 * With db_connections, the db pool's task queries its worker's database
 * connection. Tasks count in the statistics like any others.
 * Thread: any but a loop thread of m (it blocks), once m has started.
 */
void server_self_check(tpool_manager_t *m, bool db_connections);

#endif /* TPOOL_SERVER_SERVER_H */
