/*
 * server.c — tpool-server, the reference server: the pools of a config
 * file, tpool's HTTP routes and the demo task route on [http] loop_threads
 * libevent loops.
 *
 *   tpool-server [-c FILE]      FILE defaults to ./config.ini
 *
 * DESIGN
 * Who runs here: the loops (HTTP, completions; loop 0 on the main thread
 * also takes the signals), the pools' workers and monitor, and for a
 * drain one short-lived thread that waits in tpool_manager_shutdown() so
 * the loops keep answering meanwhile. Signals are libevent signal events
 * on loop 0, so their handlers run on the main thread; the other loop
 * threads and tpool's workers block them.
 * Several loops: each has its own event_base, attached to the one
 * manager, its own evhttp with tpool's routes and the demo route, and its
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
 * live (tpool_manager_reconfigure() here, the admin token and HTTP limits
 * on each loop); on failure keep everything and log why.
 * Demo data ([demo], demo_work.h): before the pools start, the data
 * directory, the SQLite database and the read file are made if missing
 * (atomically, so an interrupted first start leaves nothing half made).
 * Each db worker opens its own read-only connection in the pool's
 * thread_start hook; as hooks must not call into tpool, the hook only
 * counts the connection and wakes loop 0, which logs it.
 */
#include "demo_work.h"
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Each loop's last turn after the drain, for replies just handed to evhttp
   to reach their sockets. */
#define LAST_WRITES_US 100000

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
  tpool_http_t *routes;
  tpool__demo_t demo;
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
  tpool_options_t *opts; /* as last loaded; loop 0 only, and the drain
                            thread (reloads stop before it starts) */
  const char *config_path;
  bool self_check; /* --self-check */
  loop_t *loops;
  unsigned nloops;
  struct event *signals[3]; /* on loop 0 */
  /* The drain: started on loop 0, run by the drain thread, which tells
     every loop when it is over. */
  bool draining;              /* loop 0 only */
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
  tpool__demo_db_hook_t db_hook;
  atomic_uint db_opened;      /* atomic: connections the db hook opened */
  unsigned db_logged;         /* loop 0 only: how many were logged */
  struct event *db_opened_ev; /* wakes loop 0 to log them */
};

static void logf_(server_t *s, tpool_log_level_t lv, const char *fmt, ...)
    TPOOL_PRINTF(3, 4);

static void logf_(server_t *s, tpool_log_level_t lv, const char *fmt, ...) {
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
  if (l->demo.draining) /* finish this request, then let the client go */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
  tpool__demo_serve(&l->demo, req);
}

/* GET /ping: a trivial route for load balancers and for the baseline of
   tests/bench/http-load.sh. It reads no pool state. */
static void on_ping(struct evhttp_request *req, void *arg) {
  loop_t *l = arg;
  if (l->demo.draining)
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
  if (!tpool_http_check_limits(l->routes, req))
    return;
  if (!tpool__http_method_is(req, false))
    tpool__http_reply_405(req, "GET, HEAD");
  else
    tpool__http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- drain --------------------------------------------------------------- */

/* Ends this loop once the drain is over and every reply is out. */
static void maybe_finish(void *arg) {
  loop_t *l = arg;
  if (!l->drained || l->demo.nwaiting > 0)
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
    l->demo.draining = true;
    tpool_http_set_draining(l->routes, true);
  }
}

static void *drain_main(void *arg) {
  server_t *s = arg;
  s->drain_rc = tpool_manager_shutdown(s->m, s->opts->shutdown_timeout_s);
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
  if (s->drain_rc == -ETIMEDOUT && l->demo.nwaiting > 0) {
    logf_(s, TPOOL_LOG_WARN,
          "%zu tasks still running at the deadline; answering their "
          "requests with 503",
          l->demo.nwaiting);
    tpool__demo_abandon(&l->demo);
  }
  /* The last loop to get here reports for all of them. */
  l->left = l->demo.nwaiting;
  if (atomic_fetch_sub(&s->loops_to_drain, 1) == 1) {
    size_t left = 0;
    for (unsigned i = 0; i < s->nloops; i++)
      left += s->loops[i].left;
    logf_(s, TPOOL_LOG_INFO, "Drained (%s); %zu requests still waiting",
          s->drain_rc == 0 ? "every task finished"
                           : tpool_strerror(s->drain_rc),
          left);
  }
  maybe_finish(l);
}

static void start_drain(server_t *s, const char *why) {
  if (s->draining) {
    logf_(s, TPOOL_LOG_INFO, "%s: already draining", why);
    return;
  }
  s->draining = true;
  logf_(s, TPOOL_LOG_INFO,
        "%s: draining; no new connections, deadline %.3gs for running tasks",
        why, s->opts->shutdown_timeout_s);
  for (unsigned i = 0; i < s->nloops; i++) /* step 1 */
    event_active(s->loops[i].drain_ev, 0, 0);
}

/* On loop 0, once every listener is closed: step 2 on every loop, and the
   manager's shutdown on the drain thread. */
static void on_closed(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  server_t *s = arg;
  for (unsigned i = 0; i < s->nloops; i++)
    event_active(s->loops[i].drain_ev, 0, 0);
  int rc = pthread_create(&s->drain_thread, NULL, drain_main, s);
  s->drain_thread_started = rc == 0;
  if (rc != 0) {
    /* No thread: drain here. The loops' replies wait meanwhile, and are
       sent once the drain is over. */
    logf_(s, TPOOL_LOG_WARN, "cannot start the drain thread (%s)",
          strerror(rc));
    drain_main(s);
  }
}

/* ---- reload -------------------------------------------------------------- */

static void reload(server_t *s) {
  tpool_options_t *next = malloc(sizeof(*next));
  if (!next) {
    logf_(s, TPOOL_LOG_ERROR, "Config reload: out of memory");
    return;
  }
  tpool_options_init(next);
  tpool_config_error_t err;
  int rc = tpool_config_load(next, s->config_path, &err);
  if (rc == 0)
    rc = tpool_manager_reconfigure(s->m, next, &err);
  if (rc != 0) {
    logf_(s, TPOOL_LOG_ERROR,
          "Config reload failed, keeping the running configuration: %s",
          err.text[0] ? err.text : tpool_strerror(rc));
    free(next);
    return;
  }
  if (strcmp(next->http.listen_host, s->opts->http.listen_host) != 0 ||
      next->http.listen_port != s->opts->http.listen_port) {
    logf_(s, TPOOL_LOG_WARN,
          "Config reload: [http] listen changes at restart only; keeping "
          "the running value");
    next->http.listen_port = s->opts->http.listen_port;
    memcpy(next->http.listen_host, s->opts->http.listen_host,
           sizeof(next->http.listen_host));
  }
  const tpool_demo_options_t *run = &s->opts->demo;
  if (strcmp(next->demo.data_dir, run->data_dir) != 0 ||
      next->demo.embedding_dim != run->embedding_dim ||
      next->demo.db_rows != run->db_rows) {
    logf_(s, TPOOL_LOG_WARN,
          "Config reload: [demo] changes at restart only; keeping the "
          "running values");
    next->demo = *run;
  }
  if (next->http.loop_threads != s->opts->http.loop_threads) {
    logf_(s, TPOOL_LOG_WARN,
          "Config reload: [http] loop_threads changes at restart only; "
          "keeping %u",
          s->opts->http.loop_threads);
    next->http.loop_threads = s->opts->http.loop_threads;
  }
  /* The admin token and the limits: every loop applies them itself. */
  pthread_mutex_lock(&s->http_mu);
  s->http_next = next->http;
  s->http_gen++;
  pthread_mutex_unlock(&s->http_mu);
  for (unsigned i = 0; i < s->nloops; i++)
    event_active(s->loops[i].reload_ev, 0, 0);
  free(s->opts);
  s->opts = next;
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
  tpool_http_set_token(l->routes, o.admin_token);
  tpool__http_apply_limits(l->routes, &o);
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
      logf_(s, TPOOL_LOG_INFO,
            "Config reload: HTTP settings applied on all %u loops", s->nloops);
      break;
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  server_t *s = arg;
  if (sig == SIGHUP) {
    if (s->draining)
      logf_(s, TPOOL_LOG_INFO, "SIGHUP while draining: ignored");
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
  const tpool_http_options_t *o = &s->opts->http;
  int fds[TPOOL_BASES_MAX];
  int rc = tpool__listen(o->listen_host, o->listen_port, s->nloops, fds,
                         s->address, sizeof(s->address));
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
    logf_(s, TPOOL_LOG_ERROR, "cannot listen on %s port %u: %s", o->listen_host,
          (unsigned)o->listen_port, strerror(-rc));
  return rc;
}

/* ---- demo data ----------------------------------------------------------- */

/* On a db worker, after it opened its connection: count it and wake the
   loop, which logs it (a hook must not call into tpool). */
static void db_opened(void *arg) {
  server_t *s = arg;
  atomic_fetch_add(&s->db_opened, 1);
  event_active(s->db_opened_ev, 0, 0);
}

static void on_db_opened(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  server_t *s = arg;
  unsigned n = atomic_load(&s->db_opened);
  for (; s->db_logged < n; s->db_logged++)
    logf_(s, TPOOL_LOG_INFO, "Opened SQLite connection %u to %s (pool db)",
          s->db_logged + 1, s->db_path);
}

/* The db pool, if enabled, gets a connection per worker thread. */
static tpool_pool_options_t *db_pool(tpool_options_t *o) {
  tpool_pool_options_t *db = tpool_options_pool(o, "db");
  return db && db->enabled ? db : NULL;
}

/* mkdir -p: `path` and its missing parents. */
static int make_dirs(const char *path) {
  char p[TPOOL_PATH_MAX];
  snprintf(p, sizeof(p), "%s", path);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/')
      continue;
    *c = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
      return -errno;
    *c = '/';
  }
  if (mkdir(p, 0755) != 0 && errno != EEXIST)
    return -errno;
  struct stat st;
  if (stat(p, &st) != 0)
    return -errno;
  return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Makes [demo] data_dir, the database (when the db pool runs) and the read
   file, and opens the read file for the route. Before the pools start:
   the db workers open the database as they start. */
static int prepare_demo(server_t *s) {
  const tpool_demo_options_t *o = &s->opts->demo;
  bool created;
  int rc = make_dirs(o->data_dir);
  if (rc != 0) {
    logf_(s, TPOOL_LOG_ERROR, "[demo] data_dir: cannot create \"%s\": %s",
          o->data_dir, strerror(-rc));
    return rc;
  }
  snprintf(s->db_path, sizeof(s->db_path), "%s/%s", o->data_dir,
           TPOOL__DEMO_DB_FILE);
  snprintf(s->read_path, sizeof(s->read_path), "%s/%s", o->data_dir,
           TPOOL__DEMO_READ_FILE);
  if (db_pool(s->opts)) {
    rc = tpool__demo_db_prepare(s->db_path, o->db_rows, &created);
    if (rc != 0) {
      logf_(s, TPOOL_LOG_ERROR, "cannot make the demo database %s: %s",
            s->db_path, strerror(-rc));
      return rc;
    }
    logf_(s, TPOOL_LOG_INFO, "%s the demo database %s (%zu rows)",
          created ? "Seeded" : "Reusing", s->db_path, o->db_rows);
  }
  rc = tpool__demo_file_prepare(s->read_path, TPOOL__DEMO_READ_FILE_SIZE,
                                &created);
  s->read_fd = rc == 0 ? open(s->read_path, O_RDONLY | O_CLOEXEC) : -1;
  if (rc == 0 && s->read_fd < 0)
    rc = -errno;
  if (rc != 0) {
    logf_(s, TPOOL_LOG_ERROR, "cannot make the demo read file %s: %s",
          s->read_path, strerror(-rc));
    return rc;
  }
  logf_(s, TPOOL_LOG_INFO, "%s the demo read file %s (%zu bytes)",
        created ? "Wrote" : "Reusing", s->read_path,
        TPOOL__DEMO_READ_FILE_SIZE);
  return 0;
}

/* Sets up loop l: its base, attached to the manager, its evhttp with
   tpool's routes, /ping and the demo route, and the events through which
   loop 0 and the drain thread reach it. */
static int loop_init(server_t *s, loop_t *l) {
  if (!l->base) /* loop 0's is made first, for the db hook's event */
    l->base = event_base_new();
  if (!l->base)
    return -ENOMEM;
  int rc = tpool_manager_attach(s->m, l->base);
  l->http = rc == 0 ? evhttp_new(l->base) : NULL;
  if (rc == 0 && !l->http)
    rc = -ENOMEM;
  if (rc == 0)
    rc = tpool_http_attach(l->http, s->m, &s->opts->http, TPOOL_HTTP_CONFIGURE,
                           &l->routes);
  /* A trivial route for load balancers and the benchmark's baseline. */
  if (rc == 0 && evhttp_set_cb(l->http, "/ping", on_ping, l) != 0)
    rc = -ENOMEM;
  if (rc != 0)
    return rc;
  evhttp_set_gencb(l->http, on_request, l);
  l->demo.m = s->m;
  l->demo.routes = l->routes;
  l->demo.read_fd = s->read_fd;
  l->demo.read_size = TPOOL__DEMO_READ_FILE_SIZE;
  l->demo.embedding_dim = s->opts->demo.embedding_dim;
  TAILQ_INIT(&l->demo.waiting);
  l->demo.on_progress = maybe_finish;
  l->demo.arg = l;
  l->drain_ev = event_new(l->base, -1, 0, on_drain, l);
  l->drained_ev = event_new(l->base, -1, 0, on_drained, l);
  l->reload_ev = event_new(l->base, -1, 0, on_reload, l);
  return l->drain_ev && l->drained_ev && l->reload_ev ? 0 : -ENOMEM;
}

static void *loop_main(void *arg) {
  loop_t *l = arg;
  tpool__demo_enter_loop(l->index);
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
    logf_(s, TPOOL_LOG_ERROR, "cannot start a loop thread: %s", strerror(rc));
  return -rc;
}

static int start(server_t *s) {
  s->nloops = s->opts->http.loop_threads;
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
  l0->base = event_base_new();
  if (!l0->base)
    return -ENOMEM;
  /* The db pool's hooks, set in code before the manager copies the
     options. The database they open is made below, before the start. */
  s->db_opened_ev = event_new(l0->base, -1, 0, on_db_opened, s);
  s->closed_ev = event_new(l0->base, -1, 0, on_closed, s);
  if (!s->db_opened_ev || !s->closed_ev)
    return -ENOMEM;
  s->db_hook.path = s->db_path;
  s->db_hook.opened = db_opened;
  s->db_hook.arg = s;
  tpool_pool_options_t *db = db_pool(s->opts);
  if (db) {
    db->thread_start = tpool__demo_db_open;
    db->thread_stop = tpool__demo_db_close;
    db->thread_arg = &s->db_hook;
  }
  int rc = tpool_manager_new(s->opts, &s->m);
  s->bad_log = rc == -EIO; /* the one setting only opening it can check */
  if (s->bad_log)
    fprintf(stderr,
            "tpool-server: %s: [general] log: cannot open \"%s\" for "
            "appending\n",
            s->config_path, s->opts->log_path);
  else if (rc != 0)
    fprintf(stderr, "tpool-server: cannot create the pools: %s\n",
            tpool_strerror(rc));
  if (rc != 0)
    return rc;
  rc = prepare_demo(s);
  if (rc != 0)
    return rc;
  for (unsigned i = 0; i < s->nloops && rc == 0; i++)
    rc = loop_init(s, &s->loops[i]);
  if (rc != 0) {
    logf_(s, TPOOL_LOG_ERROR, "cannot set up: %s", tpool_strerror(rc));
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
    logf_(s, TPOOL_LOG_ERROR, "cannot start the pools: %s", tpool_strerror(rc));
    return rc;
  }
  if (s->self_check)
    tpool__server_self_check(s->m, db_pool(s->opts) != NULL);
  rc = start_loop_threads(s);
  if (rc != 0)
    return rc;
  if (s->nloops == 1)
    logf_(s, TPOOL_LOG_INFO, "Listening on %s", s->address);
  else
    logf_(s, TPOOL_LOG_INFO, "Listening on %s (%u loop threads)", s->address,
          s->nloops);
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

/* Runs loop 0 here until the drain is over, then waits for the others. */
static void serve(server_t *s) {
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

static void stop(server_t *s) {
  /* A failed start may have left loop threads running. */
  for (unsigned i = 1; s->loops && i < s->nloops; i++)
    if (s->loops[i].thread_started)
      end_loop_thread(&s->loops[i]);
  /* The manager first: its last completions still reply through evhttp. */
  if (s->m)
    tpool_manager_free(s->m);
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
  free(s->opts);
}

/* ---- main ---------------------------------------------------------------- */

/* --check-config FILE: what start-up would say about the file, and
   nothing else (no pool, no socket). Returns the exit status: 0 or 2. */
static int check_config(const char *path) {
  tpool_options_t *o = malloc(sizeof(*o));
  if (!o) {
    fprintf(stderr, "tpool-server: out of memory\n");
    return 2;
  }
  tpool_options_init(o);
  tpool_config_error_t err;
  int rc =
      tpool_config_load(o, path, &err) == 0 && tpool_options_check(o, &err) == 0
          ? 0
          : 2;
  if (rc == 0)
    printf("%s: OK\n", path);
  else
    fprintf(stderr, "tpool-server: %s\n", err.text);
  free(o);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f, "usage: tpool-server [-c FILE] [--self-check]\n"
             "       tpool-server --check-config FILE | --help | --version\n"
             "  -c, --config FILE  the config file (default ./config.ini)\n"
             "  --self-check       run one task on every pool before serving, "
             "and log the outcome\n"
             "  --check-config FILE  check FILE and exit: 0 if it is valid, "
             "2 with the error\n"
             "  -h, --help         show this help\n"
             "  -V, --version      show the version\n"
             "Signals: SIGHUP reloads the config file; SIGTERM or SIGINT "
             "drain and exit.\n");
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {"self-check", no_argument, NULL, 'S'},
      {"check-config", required_argument, NULL, 'C'},
      {NULL, 0, NULL, 0},
  };
  server_t s;
  memset(&s, 0, sizeof(s));
  s.config_path = "config.ini";
  s.read_fd = -1;
  atomic_init(&s.db_opened, 0);
  atomic_init(&s.announced, 0);
  pthread_mutex_init(&s.http_mu, NULL);
  int c;
  while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      s.config_path = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      printf("tpool-server %s\n", TPOOL_VERSION);
      return 0;
    case 'S':
      s.self_check = true;
      break;
    case 'C':
      return check_config(optarg);
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "tpool-server: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return 2;
  }

  s.opts = malloc(sizeof(*s.opts));
  if (!s.opts)
    return 1;
  tpool_options_init(s.opts);
  tpool_config_error_t err;
  if (tpool_config_load(s.opts, s.config_path, &err) != 0 ||
      tpool_options_check(s.opts, &err) != 0) {
    fprintf(stderr, "tpool-server: %s\n", err.text);
    free(s.opts);
    return 2;
  }

  /* Before any thread or base exists: libevent must lock, and a write to
     a vanished client must not kill the process. */
  signal(SIGPIPE, SIG_IGN);
  if (evthread_use_pthreads() != 0) {
    fprintf(stderr, "tpool-server: cannot make libevent thread-aware\n");
    free(s.opts);
    return 1;
  }
  int rc = start(&s);
  if (rc == 0) {
    serve(&s);
    logf_(&s, TPOOL_LOG_INFO, "Stopped");
  }
  stop(&s);
  pthread_mutex_destroy(&s.http_mu);
  if (s.bad_log)
    return 2; /* the config's log file: a config error */
  return rc == 0 ? 0 : 1;
}
