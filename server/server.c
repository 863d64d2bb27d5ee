/*
 * server.c — tpool-server, the reference server: the pools of a config
 * file, tpool's HTTP routes and the task routes on [http] loop_threads
 * libevent loops; its start, drain, reload and stop. (main.c reads the
 * command line and the file.)
 *
 * DESIGN
 * Who runs here: the loops (HTTP, completions; loop 0 on the main thread
 * also takes the signals), the pools' workers and monitor, and for a
 * drain one short-lived thread that waits in tpool_manager_shutdown() so
 * the loops keep answering meanwhile. Signals are libevent signal events
 * on loop 0, so their handlers run on the main thread; the other loop
 * threads and tpool's workers block them.
 * Several loops: each has its own event_base, attached to the one
 * manager, its own evhttp with tpool's routes and the task routes, and its
 * own listening socket on the same address (SO_REUSEPORT), so the kernel
 * spreads connections over the loops. A request's task is submitted for
 * the base of its connection, so its completion, and the reply, run on
 * the loop that read the request. The routes read the manager, so every
 * loop reports the whole process. Loop 0 reaches the others only through
 * events it makes active on their bases (drain, reload): each loop's
 * state is its own thread's.
 * Drain (SIGTERM, SIGINT): every loop closes its listener; once all have
 * (on_drain() says why it waits), replies carry Connection: close and the
 * drain thread shuts the manager down with [general] shutdown_timeout.
 * Completions keep arriving on the loops and are answered, with
 * Connection: close. When the drain thread reports back to every loop,
 * requests whose tasks are still running (past the deadline) get a 503;
 * once every accepted request of a loop is answered, that loop turns once
 * more, briefly, for the last replies to reach their sockets, and ends.
 * The process exits when every loop has.
 * Reload (SIGHUP): read the file again; on success apply what can change
 * live (tpool_manager_reconfigure() and the schedules here, the admin
 * token and HTTP limits on each loop); on failure keep everything and log
 * why.
 * Schedules ([schedule.NAME], schedules.c): timers on loop 0, made once
 * the pools run, changed by a reload, left to the manager's shutdown
 * (which makes them quiet) and free.
 * Demo data ([demo], demo_work.h; demo_data.c): before the pools start,
 * the data directory, the SQLite database and the read file are made if
 * missing (atomically, so an interrupted first start leaves nothing half
 * made). Each db worker opens its own read-only connection in the pool's
 * thread_start hook; as hooks must not call into tpool, the hook only
 * counts the connection and wakes loop 0, which logs it.
 */
#include "server.h"
#ifdef TPOOL_SERVER_REDIS
#include "queue.h"
#endif

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Each loop's last turn after the drain, for replies just handed to evhttp
   to reach their sockets. */
#define LAST_WRITES_US 100000

void server_log(server_t *s, tpool_log_level_t lv, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  tpool_manager_log(s->m, lv, "Server %s", msg);
}

/* ---- requests ------------------------------------------------------------ */

static void on_request(struct evhttp_request *req, void *arg) {
  loop_t *l = arg;
  if (l->tasks.draining) /* finish this request, then let the client go */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
  tasks_serve(&l->tasks, req);
}

/* GET /ping: a trivial route for load balancers and for the baseline of
   tests/bench/http-load.sh. It reads no pool state. */
static void on_ping(struct evhttp_request *req, void *arg) {
  loop_t *l = arg;
  if (l->tasks.draining)
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
  if (tpool_http_check_limits(l->routes, req) &&
      tpool_http_check_method(req, "GET, HEAD"))
    tpool_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- drain --------------------------------------------------------------- */

/* Ends this loop once the drain is over and every reply is out. */
static void maybe_finish(void *arg) {
  loop_t *l = arg;
  if (!l->drained || l->tasks.nwaiting > 0)
    return;
  struct timeval tv = {0, LAST_WRITES_US};
  event_base_loopexit(l->base, &tv);
}

/*
 * The drain's steps on every loop. Step 1: close the listener. Step 2,
 * once every loop has closed its own: replies say Connection: close and
 * /health/ready says 503. In that order because a client told to close
 * reconnects at once, and the kernel may hand the new connection to any
 * loop's listener: one still open, but about to close, would reset it
 * with the request already sent.
 */
static void on_drain(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  loop_t *l = arg;
  server_t *s = l->s;
  if (l->drain_step == 0) {
    l->drain_step = 1;
    if (l->listener) {
      evhttp_del_accept_socket(l->http, l->listener);
      l->listener = NULL;
    }
    if (atomic_fetch_sub(&s->loops_to_close, 1) == 1)
      event_active(s->closed_ev, 0, 0);
  } else if (l->drain_step == 1) {
    l->drain_step = 2;
    l->tasks.draining = true;
    tpool_http_set_draining(l->routes, true);
  }
}

/* Seconds left of [general] shutdown_timeout since the drain began: the
   consumer's stop and the pools' drain share the one deadline. */
static double drain_left_s(const server_t *s) {
  double left = s->cfg->core.shutdown_timeout_s -
                (double)(server_now_ns() - s->drain_start_ns) / 1e9;
  return left > 0 ? left : 0;
}

static void *drain_main(void *arg) {
  server_t *s = arg;
  s->drain_rc = tpool_manager_shutdown(s->m, drain_left_s(s));
  for (unsigned i = 0; i < s->nloops; i++) /* back to every loop */
    event_active(s->loops[i].drained_ev, 0, 0);
  return NULL;
}

static void on_drained(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  loop_t *l = arg;
  server_t *s = l->s;
  if (l->index == 0 && s->drain_thread_started)
    pthread_join(s->drain_thread, NULL);
  l->drained = true;
  /* Completions of drained tasks may still sit in the bridge, queued
     behind this event; they are answered before maybe_finish() lets the
     loop end. Only tasks that outlived the deadline are given up on. */
  if (s->drain_rc == -ETIMEDOUT && l->tasks.nwaiting > 0) {
    server_log(s, TPOOL_LOG_WARN,
               "%zu tasks still running at the deadline; answering their "
               "requests with 503",
               l->tasks.nwaiting);
    tasks_abandon(&l->tasks);
  }
  /* The last loop to get here reports for all of them. */
  l->left = l->tasks.nwaiting;
  if (atomic_fetch_sub(&s->loops_to_drain, 1) == 1) {
    size_t left = 0;
    for (unsigned i = 0; i < s->nloops; i++)
      left += s->loops[i].left;
    server_log(s, TPOOL_LOG_INFO, "Drained (%s); %zu requests still waiting",
               s->drain_rc == 0 ? "every task finished"
                                : tpool_strerror(s->drain_rc),
               left);
  }
  maybe_finish(l);
}

static void start_drain(server_t *s, const char *why) {
  if (s->draining) {
    server_log(s, TPOOL_LOG_INFO, "%s: already draining", why);
    return;
  }
  s->draining = true;
  s->drain_start_ns = server_now_ns();
  server_log(
      s, TPOOL_LOG_INFO,
      "%s: draining; no new connections, deadline %.3gs for running tasks", why,
      s->cfg->core.shutdown_timeout_s);
  for (unsigned i = 0; i < s->nloops; i++) /* step 1 */
    event_active(s->loops[i].drain_ev, 0, 0);
}

/* The manager's shutdown, on the drain thread. */
static void start_drain_thread(void *arg) {
  server_t *s = arg;
  int rc = pthread_create(&s->drain_thread, NULL, drain_main, s);
  s->drain_thread_started = rc == 0;
  if (rc != 0) {
    /* No thread: drain here. The loops' replies wait meanwhile, and are
       sent once the drain is over. */
    server_log(s, TPOOL_LOG_WARN, "cannot start the drain thread (%s)",
               strerror(rc));
    drain_main(s);
  }
}

/* On loop 0, once every listener is closed: step 2 on every loop; then,
   once the Redis consumer (if any) has stopped reading and written the
   results of what it held, the manager's shutdown. */
static void on_closed(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  server_t *s = arg;
  for (unsigned i = 0; i < s->nloops; i++)
    event_active(s->loops[i].drain_ev, 0, 0);
#ifdef TPOOL_SERVER_REDIS
  if (s->consumer) {
    server_log(s, TPOOL_LOG_INFO,
               "Redis: no more entries read; finishing the ones held");
    tpool_redis_consumer_stop(s->consumer, drain_left_s(s), start_drain_thread,
                              s);
    return;
  }
#endif
  start_drain_thread(s);
}

/* ---- reload -------------------------------------------------------------- */

static void reload(server_t *s) {
  server_config_t *next = malloc(sizeof(*next));
  if (!next) {
    server_log(s, TPOOL_LOG_ERROR, "Config reload: out of memory");
    return;
  }
  server_config_init(next);
  tpool_config_error_t err;
  int rc = server_config_load(next, s->config_path, &err);
  if (rc == 0)
    rc = schedules_check(s, next, &err);
  if (rc == 0)
    rc = tpool_manager_reconfigure(s->m, &next->core, &err);
  if (rc != 0) {
    server_log(s, TPOOL_LOG_ERROR,
               "Config reload failed, keeping the running configuration: %s",
               err.text[0] ? err.text : tpool_strerror(rc));
    free(next);
    return;
  }
  server_options_t *run = &s->cfg->server, *want = &next->server;
  if (strcmp(want->listen.host, run->listen.host) != 0 ||
      want->listen.port != run->listen.port) {
    server_log(s, TPOOL_LOG_WARN,
               "Config reload: [http] listen changes at restart only; "
               "keeping the running value");
    want->listen = run->listen;
  }
  if (strcmp(want->demo.data_dir, run->demo.data_dir) != 0 ||
      want->demo.embedding_dim != run->demo.embedding_dim ||
      want->demo.db_rows != run->demo.db_rows) {
    server_log(s, TPOOL_LOG_WARN,
               "Config reload: [demo] changes at restart only; keeping the "
               "running values");
    want->demo = run->demo;
  }
  if (want->loop_threads != run->loop_threads) {
    server_log(s, TPOOL_LOG_WARN,
               "Config reload: [http] loop_threads changes at restart only; "
               "keeping %u",
               run->loop_threads);
    want->loop_threads = run->loop_threads;
  }
#ifdef TPOOL_SERVER_REDIS
  if (memcmp(&next->redis, &s->cfg->redis, sizeof(next->redis)) != 0) {
    server_log(s, TPOOL_LOG_WARN,
               "Config reload: [redis] changes at restart only; keeping the "
               "running values");
    next->redis = s->cfg->redis;
  }
#endif
  schedules_reload(s, next);
  /* The admin token and the limits: every loop applies them itself. */
  pthread_mutex_lock(&s->http_mu);
  s->http_next = next->http;
  s->http_gen++;
  pthread_mutex_unlock(&s->http_mu);
  for (unsigned i = 0; i < s->nloops; i++)
    event_active(s->loops[i].reload_ev, 0, 0);
  free(s->cfg);
  s->cfg = next;
}

/* On every loop after a reload: the newest [http] settings. Two reloads
   in a row may make this run once; it applies the latest. */
static void on_reload(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  loop_t *l = arg;
  server_t *s = l->s;
  tpool_http_options_t o;
  pthread_mutex_lock(&s->http_mu);
  o = s->http_next;
  uint64_t gen = s->http_gen;
  pthread_mutex_unlock(&s->http_mu);
  tpool_http_configure(l->routes, &o); /* checked by the loader */
  atomic_store(&l->applied, gen);
  if (s->nloops == 1)
    return;
  /* Whichever loop completes a generation says so, once. */
  for (unsigned i = 0; i < s->nloops; i++)
    if (atomic_load(&s->loops[i].applied) < gen)
      return;
  uint_fast64_t seen = atomic_load(&s->announced);
  while (seen < gen)
    if (atomic_compare_exchange_weak(&s->announced, &seen, gen)) {
      server_log(s, TPOOL_LOG_INFO,
                 "Config reload: HTTP settings applied on all %u loops",
                 s->nloops);
      break;
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  server_t *s = arg;
  if (sig == SIGHUP) {
    if (s->draining)
      server_log(s, TPOOL_LOG_INFO, "SIGHUP while draining: ignored");
    else
      reload(s);
    return;
  }
  start_drain(s, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start --------------------------------------------------------------- */

/* Binds [http] listen, a socket for every loop, and notes the address
   (the real port when 0). */
static int listen_http(server_t *s) {
  const tpool_config_address_t *o = &s->cfg->server.listen;
  int fds[LOOP_THREADS_MAX];
  int rc = server_listen(o->host, o->port, s->nloops, fds, s->address,
                         sizeof(s->address));
  for (unsigned i = 0; i < s->nloops && rc == 0; i++) {
    loop_t *l = &s->loops[i];
    l->listener = evhttp_accept_socket_with_handle(l->http, fds[i]);
    if (!l->listener) {
      rc = -ENOMEM;
      for (unsigned j = i; j < s->nloops; j++) /* the rest are not evhttp's */
        close(fds[j]);
    }
  }
  if (rc != 0)
    server_log(s, TPOOL_LOG_ERROR, "cannot listen on %s port %u: %s", o->host,
               (unsigned)o->port, strerror(-rc));
  return rc;
}

/* A loop's base, timed with the precise monotonic clock: libevent's
   default on Linux is the coarse one (a tick of about 4 ms), which would
   make schedules and delayed tasks that much late. NULL if out of memory. */
static struct event_base *base_new(void) {
  struct event_config *cfg = event_config_new();
  if (!cfg)
    return NULL;
  struct event_base *base = NULL;
  if (event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) == 0)
    base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  return base;
}

/* Sets up loop l: its base, attached to the manager, its evhttp with
   tpool's routes, /ping and the task routes, and the events through which
   loop 0 and the drain thread reach it. */
static int loop_init(server_t *s, loop_t *l) {
  if (!l->base) /* loop 0's is made first, for the db hook's event */
    l->base = base_new();
  if (!l->base)
    return -ENOMEM;
  int rc = tpool_manager_attach(s->m, l->base);
  l->http = rc == 0 ? evhttp_new(l->base) : NULL;
  if (rc == 0 && !l->http)
    rc = -ENOMEM;
  if (rc == 0)
    rc = tpool_http_attach(l->http, s->m, &s->cfg->http, TPOOL_HTTP_CONFIGURE,
                           &l->routes);
  /* A trivial route for load balancers and the benchmark's baseline. */
  if (rc == 0 && evhttp_set_cb(l->http, "/ping", on_ping, l) != 0)
    rc = -ENOMEM;
  if (rc != 0)
    return rc;
  evhttp_set_gencb(l->http, on_request, l);
  l->tasks.m = s->m;
  l->tasks.routes = l->routes;
  l->tasks.read_fd = s->read_fd;
  l->tasks.read_size = DEMO_READ_FILE_SIZE;
  l->tasks.embedding_dim = s->cfg->server.demo.embedding_dim;
  TAILQ_INIT(&l->tasks.waiting);
  l->tasks.on_progress = maybe_finish;
  l->tasks.arg = l;
  l->drain_ev = event_new(l->base, -1, 0, on_drain, l);
  l->drained_ev = event_new(l->base, -1, 0, on_drained, l);
  l->reload_ev = event_new(l->base, -1, 0, on_reload, l);
  return l->drain_ev && l->drained_ev && l->reload_ev ? 0 : -ENOMEM;
}

#ifdef TPOOL_SERVER_REDIS
/* [redis]: the consumer on loop 0, a client on every loop for POST /queue
   and GET /tasks/{entry id}, and the "redis" part of the health routes.
   Before the loop threads start. */
static int redis_start(server_t *s) {
  tpool_redis_options_t o = s->cfg->redis;
  if (!o.url[0])
    return 0;
  o.to_task = queue_entry_task;
  o.to_result = queue_entry_result;
  o.user = &s->loops[0].tasks;
  int rc = tpool_redis_consumer_new(s->m, s->loops[0].base, &o, &s->consumer);
  for (unsigned i = 0; i < s->nloops && rc == 0; i++) {
    loop_t *l = &s->loops[i];
    rc = tpool_redis_client_new(l->base, &o, &l->redis);
    if (rc != 0)
      break;
    l->tasks.queue = l->redis;
    l->tasks.queue_handle = queue_handle;
    tpool_http_source_t src = queue_http_source(s->consumer);
    rc = tpool_http_add_source(l->routes, &src);
  }
  if (rc != 0) {
    server_log(s, TPOOL_LOG_ERROR, "cannot start the Redis consumer: %s",
               tpool_strerror(rc));
    return rc;
  }
  const tpool_redis_options_t *run = tpool_redis_consumer_options(s->consumer);
  server_log(s, TPOOL_LOG_INFO,
             "Redis: consuming %s in group %s as %s, from %s", run->stream,
             run->group, run->consumer, run->url);
  return 0;
}

static void redis_stop(server_t *s) {
  tpool_redis_consumer_free(s->consumer);
  s->consumer = NULL;
  for (unsigned i = 0; s->loops && i < s->nloops; i++) {
    tpool_redis_client_free(s->loops[i].redis); /* answers what waits */
    s->loops[i].redis = NULL;
  }
}
#endif

static void *loop_main(void *arg) {
  loop_t *l = arg;
  tasks_enter_loop(l->index);
  event_base_dispatch(l->base);
  return NULL;
}

/* Starts loops 1.. on their own threads, with the signals blocked there:
   loop 0, on the main thread, handles them. */
static int start_loop_threads(server_t *s) {
  sigset_t block, was;
  sigemptyset(&block);
  sigaddset(&block, SIGHUP);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &was);
  int rc = 0;
  for (unsigned i = 1; i < s->nloops && rc == 0; i++) {
    loop_t *l = &s->loops[i];
    rc = pthread_create(&l->thread, NULL, loop_main, l);
    l->thread_started = rc == 0;
  }
  pthread_sigmask(SIG_SETMASK, &was, NULL);
  if (rc != 0)
    server_log(s, TPOOL_LOG_ERROR, "cannot start a loop thread: %s",
               strerror(rc));
  return -rc;
}

int server_start(server_t *s) {
  s->nloops = s->cfg->server.loop_threads;
  s->loops = calloc(s->nloops, sizeof(*s->loops));
  if (!s->loops)
    return -ENOMEM;
  atomic_init(&s->loops_to_drain, s->nloops);
  atomic_init(&s->loops_to_close, s->nloops);
  for (unsigned i = 0; i < s->nloops; i++) {
    s->loops[i].s = s;
    s->loops[i].index = i;
    atomic_init(&s->loops[i].applied, 0);
  }
  loop_t *l0 = &s->loops[0];
  l0->base = base_new();
  if (!l0->base)
    return -ENOMEM;
  /* The db pool's hooks, set in code before the manager copies the
     options. The database they open is made below, before the start. */
  s->db_opened_ev = event_new(l0->base, -1, 0, demo_data_on_opened, s);
  s->closed_ev = event_new(l0->base, -1, 0, on_closed, s);
  if (!s->db_opened_ev || !s->closed_ev)
    return -ENOMEM;
  demo_data_hooks(s);
  int rc = tpool_manager_new(&s->cfg->core, &s->m);
  s->bad_log = rc == -EIO; /* the one setting only opening it can check */
  if (s->bad_log)
    fprintf(stderr,
            "tpool-server: %s: [general] log: cannot open \"%s\" for "
            "appending\n",
            s->config_path, s->cfg->core.log_path);
  else if (rc != 0)
    fprintf(stderr, "tpool-server: cannot create the pools: %s\n",
            tpool_strerror(rc));
  if (rc != 0)
    return rc;
  rc = demo_data_prepare(s);
  if (rc != 0)
    return rc;
  for (unsigned i = 0; i < s->nloops && rc == 0; i++)
    rc = loop_init(s, &s->loops[i]);
  if (rc != 0) {
    server_log(s, TPOOL_LOG_ERROR, "cannot set up: %s", tpool_strerror(rc));
    return rc;
  }
  static const int sigs[3] = {SIGHUP, SIGTERM, SIGINT};
  for (int i = 0; i < 3; i++) {
    s->signals[i] = evsignal_new(l0->base, sigs[i], on_signal, s);
    if (!s->signals[i] || evsignal_add(s->signals[i], NULL) != 0)
      return -ENOMEM;
  }
  /* The address first: a port in use fails before any thread starts. */
  if (listen_http(s) != 0)
    return -EADDRNOTAVAIL;
  rc = tpool_manager_start(s->m);
  if (rc != 0) {
    server_log(s, TPOOL_LOG_ERROR, "cannot start the pools: %s",
               tpool_strerror(rc));
    return rc;
  }
  if (s->self_check)
    server_self_check(s->m, demo_db_pool(&s->cfg->core) != NULL);
  rc = schedules_start(s);
  if (rc != 0)
    return rc;
#ifdef TPOOL_SERVER_REDIS
  rc = redis_start(s);
  if (rc != 0)
    return rc;
#endif
  rc = start_loop_threads(s);
  if (rc != 0)
    return rc;
  if (s->nloops == 1)
    server_log(s, TPOOL_LOG_INFO, "Listening on %s", s->address);
  else
    server_log(s, TPOOL_LOG_INFO, "Listening on %s (%u loop threads)",
               s->address, s->nloops);
  return 0;
}

static void on_break(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  event_base_loopbreak(arg);
}

/* Ends loop l's thread: it leaves its loop as soon as it runs it (a
   loopbreak called before the loop starts would be forgotten). */
static void end_loop_thread(loop_t *l) {
  static const struct timeval now = {0, 0};
  if (event_base_once(l->base, -1, EV_TIMEOUT, on_break, l->base, &now) != 0)
    event_base_loopbreak(l->base); /* out of memory: the best left */
  pthread_join(l->thread, NULL);
  l->thread_started = false;
}

void server_serve(server_t *s) {
  event_base_dispatch(s->loops[0].base);
  for (unsigned i = 1; i < s->nloops; i++) {
    loop_t *l = &s->loops[i];
    if (!l->thread_started)
      continue;
    if (!s->loops[0].drained) /* loop 0 failed: nothing will end them */
      end_loop_thread(l);
    else
      pthread_join(l->thread, NULL);
    l->thread_started = false;
  }
}

void server_stop(server_t *s) {
  /* A failed start may have left loop threads running. */
  for (unsigned i = 1; s->loops && i < s->nloops; i++)
    if (s->loops[i].thread_started)
      end_loop_thread(&s->loops[i]);
#ifdef TPOOL_SERVER_REDIS
  redis_stop(s); /* its requests waiting for Redis are answered here */
#endif
  /* The manager first: its last completions still reply through evhttp. */
  if (s->m)
    tpool_manager_free(s->m);
  schedules_free(s);
  for (int i = 0; i < 3; i++)
    if (s->signals[i])
      event_free(s->signals[i]);
  if (s->db_opened_ev)
    event_free(s->db_opened_ev);
  if (s->closed_ev)
    event_free(s->closed_ev);
  for (unsigned i = 0; s->loops && i < s->nloops; i++) {
    loop_t *l = &s->loops[i];
    tpool_http_detach(l->routes);
    if (l->http)
      evhttp_free(l->http);
    struct event *evs[3] = {l->drain_ev, l->drained_ev, l->reload_ev};
    for (int j = 0; j < 3; j++)
      if (evs[j])
        event_free(evs[j]);
    if (l->base)
      event_base_free(l->base);
  }
  free(s->loops);
  if (s->read_fd >= 0)
    close(s->read_fd);
}
