/*
 * server.c — tpool-server, the reference server: the pools of a config
 * file, tpool's HTTP routes and the demo task route on one libevent loop.
 *
 *   tpool-server [-c FILE]      FILE defaults to ./config.ini
 *
 * DESIGN
 * Who runs here: the loop thread (HTTP, signals, completions), the pools'
 * workers and monitor, and for a drain one short-lived thread that waits
 * in tpool_manager_shutdown() so the loop keeps answering meanwhile.
 * Signals are libevent signal events, so their handlers run on the loop
 * thread; tpool's workers block signals.
 * Drain (SIGTERM, SIGINT): close the listener, then shut the manager down
 * with [general] shutdown_timeout on the drain thread. Completions keep
 * arriving on the loop and are answered, with Connection: close. When the
 * drain thread reports back, requests whose tasks are still running (past
 * the deadline) get a 503; once every accepted request is answered the
 * loop turns once more, briefly, for the last replies to reach their
 * sockets, and ends.
 * Reload (SIGHUP): read the file again; on success apply what can change
 * live (tpool_manager_reconfigure(), the admin token and HTTP limits); on
 * failure keep everything and log why.
 * Demo data ([demo], demo_work.h): before the pools start, the data
 * directory, the SQLite database and the read file are made if missing
 * (atomically, so an interrupted first start leaves nothing half made).
 * Each db worker opens its own read-only connection in the pool's
 * thread_start hook; as hooks must not call into tpool, the hook only
 * counts the connection and wakes the loop, which logs it.
 */
#include "demo_work.h"
#include "server.h"

#include <arpa/inet.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The loop's last turn after the drain, for replies just handed to evhttp
   to reach their sockets. */
#define LAST_WRITES_US 100000

typedef struct server {
  struct event_base *base;
  tpool_manager_t *m;
  struct evhttp *http;
  struct evhttp_bound_socket *listener;
  tpool_http_t *routes;
  tpool__demo_t demo;
  tpool_options_t *opts; /* as last loaded */
  const char *config_path;
  bool self_check; /* --self-check */
  struct event *signals[3];
  /* The drain. */
  bool draining;
  bool drained; /* the drain thread has reported back */
  pthread_t drain_thread;
  int drain_rc;
  struct event *drained_ev;
  char address[INET6_ADDRSTRLEN + 16]; /* where it listens, as a URL */
  bool bad_log; /* [general] log cannot be opened: a config error */
  /* Demo data. db_hook is the db pool's thread_arg, so it outlives the
     manager (a hook may run after tpool_manager_free()): it lives until
     main() returns. */
  char db_path[TPOOL_PATH_MAX + 16];
  char read_path[TPOOL_PATH_MAX + 16];
  tpool__demo_db_hook_t db_hook;
  atomic_uint db_opened;      /* atomic: connections the db hook opened */
  unsigned db_logged;         /* loop thread only: how many were logged */
  struct event *db_opened_ev; /* wakes the loop to log them */
} server_t;

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
  server_t *s = arg;
  if (s->draining) /* finish this request, then let the client go */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
  tpool__demo_serve(&s->demo, req);
}

/* GET /ping: a trivial route for load balancers and for the baseline of
   tests/bench/http-load.sh. It reads no pool state. */
static void on_ping(struct evhttp_request *req, void *arg) {
  server_t *s = arg;
  if (s->draining)
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                      "close");
  if (!tpool_http_check_limits(s->routes, req))
    return;
  if (!tpool__http_method_is(req, false))
    tpool__http_reply_405(req, "GET, HEAD");
  else
    tpool__http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- drain --------------------------------------------------------------- */

/* Ends the loop once the drain is over and every reply is out. */
static void maybe_finish(void *arg) {
  server_t *s = arg;
  if (!s->drained || s->demo.nwaiting > 0)
    return;
  struct timeval tv = {0, LAST_WRITES_US};
  event_base_loopexit(s->base, &tv);
}

static void *drain_main(void *arg) {
  server_t *s = arg;
  s->drain_rc = tpool_manager_shutdown(s->m, s->opts->shutdown_timeout_s);
  event_active(s->drained_ev, 0, 0); /* back to the loop thread */
  return NULL;
}

static void on_drained(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  server_t *s = arg;
  pthread_join(s->drain_thread, NULL);
  s->drained = true;
  if (s->drain_rc == -ETIMEDOUT && s->demo.nwaiting > 0) {
    logf_(s, TPOOL_LOG_WARN,
          "%zu tasks still running at the deadline; answering their "
          "requests with 503",
          s->demo.nwaiting);
  }
  /* Completions of drained tasks may still sit in the bridge, queued
     behind this event; they are answered before maybe_finish() lets the
     loop end. Only tasks that outlived the deadline are given up on. */
  if (s->drain_rc == -ETIMEDOUT)
    tpool__demo_abandon(&s->demo);
  logf_(s, TPOOL_LOG_INFO, "Drained (%s); %zu requests still waiting",
        s->drain_rc == 0 ? "every task finished" : tpool_strerror(s->drain_rc),
        s->demo.nwaiting);
  maybe_finish(s);
}

static void start_drain(server_t *s, const char *why) {
  if (s->draining) {
    logf_(s, TPOOL_LOG_INFO, "%s: already draining", why);
    return;
  }
  s->draining = true;
  s->demo.draining = true;
  tpool_http_set_draining(s->routes, true);
  logf_(s, TPOOL_LOG_INFO,
        "%s: draining; no new connections, deadline %.3gs for running tasks",
        why, s->opts->shutdown_timeout_s);
  if (s->listener) {
    evhttp_del_accept_socket(s->http, s->listener);
    s->listener = NULL;
  }
  int rc = pthread_create(&s->drain_thread, NULL, drain_main, s);
  if (rc != 0) {
    /* No thread: drain here. The loop stalls meanwhile, but the replies
       are sent once it runs again. */
    logf_(s, TPOOL_LOG_WARN, "cannot start the drain thread (%s)",
          strerror(rc));
    s->drain_rc = tpool_manager_shutdown(s->m, s->opts->shutdown_timeout_s);
    s->drained = true;
    if (s->drain_rc == -ETIMEDOUT)
      tpool__demo_abandon(&s->demo);
    maybe_finish(s);
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
  tpool_http_set_token(s->routes, next->http.admin_token);
  tpool__http_apply_limits(s->routes, &next->http);
  free(s->opts);
  s->opts = next;
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

/* Binds [http] listen and notes the address (the real port when 0). */
static int listen_http(server_t *s) {
  const tpool_http_options_t *o = &s->opts->http;
  s->listener =
      evhttp_bind_socket_with_handle(s->http, o->listen_host, o->listen_port);
  if (!s->listener) {
    logf_(s, TPOOL_LOG_ERROR, "cannot listen on %s port %u: %s", o->listen_host,
          (unsigned)o->listen_port, strerror(errno));
    return -1;
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  evutil_socket_t fd = evhttp_bound_socket_get_fd(s->listener);
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = o->listen_port;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      port = ntohs(a->sin6_port);
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      port = ntohs(a->sin_port);
    }
  }
  snprintf(s->address, sizeof(s->address), "http://%s%s%s:%u/",
           ss.ss_family == AF_INET6 ? "[" : "", host,
           ss.ss_family == AF_INET6 ? "]" : "", port);
  return 0;
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
  s->demo.read_fd = rc == 0 ? open(s->read_path, O_RDONLY | O_CLOEXEC) : -1;
  if (rc == 0 && s->demo.read_fd < 0)
    rc = -errno;
  if (rc != 0) {
    logf_(s, TPOOL_LOG_ERROR, "cannot make the demo read file %s: %s",
          s->read_path, strerror(-rc));
    return rc;
  }
  logf_(s, TPOOL_LOG_INFO, "%s the demo read file %s (%zu bytes)",
        created ? "Wrote" : "Reusing", s->read_path,
        TPOOL__DEMO_READ_FILE_SIZE);
  s->demo.read_size = TPOOL__DEMO_READ_FILE_SIZE;
  s->demo.embedding_dim = o->embedding_dim;
  return 0;
}

/* ---- self-check ---------------------------------------------------------- */

#define SELF_CHECK_S 5.0

/* A self-check task: nothing, or on the db pool a query through the
   worker's own connection (key 1 always exists). */
static int probe(void *arg, void **result) {
  (void)result;
  if (!arg)
    return 0;
  void *db = tpool_thread_context();
  tpool__demo_row_t row;
  return db ? tpool__demo_db_query(db, 1, &row) : -EIO;
}

/*
 * Before serving, every pool runs one task, submitted as a future and
 * waited on here, on the main thread, whose loop does not run yet: a pool
 * whose workers cannot start (a db connection that cannot be opened, say)
 * is reported before the first request finds it. A pool that does not
 * answer within SELF_CHECK_S is logged and left to go on trying.
 */
static void self_check(server_t *s) {
  tpool_stats_t *st = NULL;
  if (tpool_manager_stats(s->m, &st) != 0)
    return;
  tpool_future_t *f[TPOOL_POOLS_MAX] = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (size_t i = 0; i < st->npools; i++) {
    tpool_pool_t *p = tpool_manager_pool(s->m, st->pools[i].name);
    /* The db pool's workers hold connections (db_pool()): use one. */
    bool db = strcmp(st->pools[i].name, "db") == 0 && db_pool(s->opts);
    if (tpool_submit_future(p, "self-check", probe, db ? p : NULL, NULL,
                            &f[i]) < 0)
      f[i] = NULL;
  }
  size_t ok = 0;
  for (size_t i = 0; i < st->npools; i++) {
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double left = SELF_CHECK_S - ((double)(t1.tv_sec - t0.tv_sec) +
                                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    int status = -ENOMEM;
    if (!f[i] ||
        tpool_future_wait(f[i], left > 0 ? left : 0, &status, NULL) != 0)
      logf_(s, TPOOL_LOG_WARN,
            "Self-check: pool %s ran no task within %.0fs (can its workers "
            "start?); serving anyway",
            st->pools[i].name, SELF_CHECK_S);
    else if (status != 0)
      logf_(s, TPOOL_LOG_WARN, "Self-check: pool %s: %s", st->pools[i].name,
            tpool_strerror(status));
    else
      ok++;
    tpool_future_free(f[i]);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  logf_(s, TPOOL_LOG_INFO, "Self-check: %zu of %zu pools ran a task in %.3fs",
        ok, st->npools,
        (double)(t1.tv_sec - t0.tv_sec) +
            (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  tpool_stats_free(st);
}

static int start(server_t *s) {
  s->base = event_base_new();
  if (!s->base)
    return -ENOMEM;
  /* The db pool's hooks, set in code before the manager copies the
     options. The database they open is made below, before the start. */
  s->db_opened_ev = event_new(s->base, -1, 0, on_db_opened, s);
  if (!s->db_opened_ev)
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
  rc = tpool_manager_attach(s->m, s->base);
  s->http = rc == 0 ? evhttp_new(s->base) : NULL;
  if (rc == 0 && !s->http)
    rc = -ENOMEM;
  if (rc == 0)
    rc = tpool_http_attach(s->http, s->m, &s->opts->http, TPOOL_HTTP_CONFIGURE,
                           &s->routes);
  /* A trivial route for load balancers and the benchmark's baseline. */
  if (rc == 0 && evhttp_set_cb(s->http, "/ping", on_ping, s) != 0)
    rc = -ENOMEM;
  if (rc != 0) {
    logf_(s, TPOOL_LOG_ERROR, "cannot set up: %s", tpool_strerror(rc));
    return rc;
  }
  evhttp_set_gencb(s->http, on_request, s);
  s->demo.m = s->m;
  s->demo.routes = s->routes;
  TAILQ_INIT(&s->demo.waiting);
  s->demo.on_progress = maybe_finish;
  s->demo.arg = s;

  static const int sigs[3] = {SIGHUP, SIGTERM, SIGINT};
  for (int i = 0; i < 3; i++) {
    s->signals[i] = evsignal_new(s->base, sigs[i], on_signal, s);
    if (!s->signals[i] || evsignal_add(s->signals[i], NULL) != 0)
      return -ENOMEM;
  }
  s->drained_ev = event_new(s->base, -1, 0, on_drained, s);
  if (!s->drained_ev)
    return -ENOMEM;
  /* The address first: a port in use fails before any thread starts. */
  if (listen_http(s) != 0)
    return -EADDRNOTAVAIL;
  rc = tpool_manager_start(s->m);
  if (rc != 0) {
    logf_(s, TPOOL_LOG_ERROR, "cannot start the pools: %s", tpool_strerror(rc));
    return rc;
  }
  if (s->self_check)
    self_check(s);
  logf_(s, TPOOL_LOG_INFO, "Listening on %s", s->address);
  return 0;
}

static void stop(server_t *s) {
  /* The manager first: its last completions still reply through evhttp. */
  if (s->m)
    tpool_manager_free(s->m);
  tpool_http_detach(s->routes);
  if (s->http)
    evhttp_free(s->http);
  for (int i = 0; i < 3; i++)
    if (s->signals[i])
      event_free(s->signals[i]);
  if (s->drained_ev)
    event_free(s->drained_ev);
  if (s->db_opened_ev)
    event_free(s->db_opened_ev);
  if (s->demo.read_fd >= 0)
    close(s->demo.read_fd);
  if (s->base)
    event_base_free(s->base);
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
  s.demo.read_fd = -1;
  atomic_init(&s.db_opened, 0);
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
    event_base_dispatch(s.base);
    logf_(&s, TPOOL_LOG_INFO, "Stopped");
  }
  stop(&s);
  if (s.bad_log)
    return 2; /* the config's log file: a config error */
  return rc == 0 ? 0 : 1;
}
