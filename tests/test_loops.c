/*
 * test_loops.c — tpool-server with [http] loop_threads = 4: four libevent
 * loops in four threads, each with its own SO_REUSEPORT listener on the
 * same address, sharing one pool manager. Driven over 127.0.0.1 as a user
 * would:
 *   - a mixed keep-alive load on 64 connections is answered 200 in full;
 *     every task reply names the loop that answered it ("loop"), all the
 *     replies of one connection name the same loop (a completion goes back
 *     to the loop whose connection submitted the task), every loop
 *     answered some, and /health/thread-pools and /metrics count the whole
 *     process, during the load and after it, whichever loop answers;
 *     batch replies name their loop too;
 *   - a SIGHUP that sets an admin token and a body limit is in force on
 *     every loop once the server says so, and so is the next one that
 *     lifts them (and asks for 2 loops, which waits for a restart): each loop
 * is probed on connections whose loop a task reply names;
 *   - SIGTERM during a load of sleeping tasks answers every request the
 *     server accepted, drains, and exits 0;
 *   - loop_threads = 0 or 65 stops the server with exit status 2 and a
 *     message naming file, line and key; one loop (the default) is loop 0.
 *
 * The harness (server_harness.h) spawns the real binary on port 0, learns
 * the port from its "Listening on" line and reads its log. Answers seen
 * inside a load's callbacks are tallied, and asserted once the load has
 * ended: a cmocka failure must not jump out of a running event loop.
 */
#include "server_harness.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define LOOPS 4

#define HTTP_LOCAL "[http]\nlisten = 127.0.0.1:0\n"

/* Small pools, so that tasks queue up behind 64 connections. */
#define LOOP_POOLS                                                             \
  "[pool.io]\nworkers = 4\n"                                                   \
  "[pool.cpu]\nworkers = 2\n"                                                  \
  "[pool.inference]\nworkers = 1\n"                                            \
  "[pool.embedding]\nworkers = 1\n"                                            \
  "[pool.db]\nworkers = 2\n"

static const char *const pools[] = {"io", "cpu", "inference", "embedding",
                                    "db"};
#define NPOOLS 5

/* ---- helpers --------------------------------------------------------------
 */

/* What went wrong inside a load's callbacks: counted, the first kept. */
typedef struct problems {
  size_t count;
  char first[512];
} problems_t;

static void problem(problems_t *p, const char *fmt, ...) TPOOL_PRINTF(2, 3);

static void problem(problems_t *p, const char *fmt, ...) {
  if (p->count++ > 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->first, sizeof(p->first), fmt, ap);
  va_end(ap);
}

static void expect_no_problems(const problems_t *p, server_t *s,
                               const th_load_stats_t *st) {
  if (p->count == 0)
    return;
  print_load(st);
  print_log(s);
  fail_msg("%zu bad answer(s); the first: %s", p->count, p->first);
}

/* The "loop" member of a task reply: 0..LOOPS-1, or -1 if it is missing or
   out of range. */
static int reply_loop(const json_t *j) {
  json_t *v = json_object_get(j, "loop");
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) >= LOOPS)
    return -1;
  return (int)json_integer_value(v);
}

/* The loop of each connection of a load (by th_load_connection()), as its
   first task reply named it; later replies on it must name the same. */
typedef struct conn_loops {
  int *loop; /* -1: no task reply yet */
  size_t *replies;
  size_t cap;
  size_t by_loop[LOOPS]; /* task replies per loop */
} conn_loops_t;

static void conn_loops_init(conn_loops_t *c, size_t cap) {
  memset(c, 0, sizeof(*c));
  c->loop = malloc(cap * sizeof(*c->loop));
  c->replies = calloc(cap, sizeof(*c->replies));
  assert_non_null(c->loop);
  assert_non_null(c->replies);
  for (size_t i = 0; i < cap; i++)
    c->loop[i] = -1;
  c->cap = cap;
}

static void conn_loops_destroy(conn_loops_t *c) {
  free(c->loop);
  free(c->replies);
}

/* Records that task reply `j` of request n came on connection `conn`. */
static void conn_loops_add(conn_loops_t *c, problems_t *p, size_t n,
                           size_t conn, const json_t *j) {
  int loop = reply_loop(j);
  if (loop < 0) {
    char *text = json_dumps(j, JSON_COMPACT);
    problem(p, "request %zu: no \"loop\" in 0..%d: %s", n, LOOPS - 1,
            text ? text : "?");
    free(text);
    return;
  }
  if (conn >= c->cap) {
    problem(p, "request %zu came on connection %zu, past the %zu expected", n,
            conn, c->cap);
    return;
  }
  if (c->loop[conn] < 0)
    c->loop[conn] = loop;
  else if (c->loop[conn] != loop)
    problem(p,
            "request %zu: connection %zu was answered by loop %d before, "
            "now by loop %d",
            n, conn, c->loop[conn], loop);
  c->replies[conn]++;
  c->by_loop[loop]++;
}

/* The value of sample `name{labels}` in a /metrics text, or -1 if it is
   missing. */
static double metric_or(const char *text, const char *name,
                        const char *labels) {
  char head[256];
  snprintf(head, sizeof(head), "\n%s{%s} ", name, labels);
  const char *at = strstr(text, head);
  return at ? strtod(at + strlen(head), NULL) : -1;
}

/* The n-th (1-based) occurrence of needle in text, or NULL. */
static const char *nth(const char *text, const char *needle, size_t n) {
  const char *at = text;
  for (size_t i = 0; at && i < n; i++) {
    at = strstr(i ? at + 1 : at, needle);
  }
  return at;
}

/* ---- a mixed load on four loops ------------------------------------------ */

enum kind { K_CPU, K_IO, K_POOLS, K_METRICS };

/* Request n: 3 in 8 spin 1 ms on cpu, 3 in 8 sleep 2 ms on io, 1 in 8
   reads /health/thread-pools, 1 in 8 reads /metrics. */
static enum kind kind_of(size_t n) {
  switch (n % 8) {
  case 0:
  case 2:
  case 4:
    return K_CPU;
  case 1:
  case 3:
  case 5:
    return K_IO;
  case 6:
    return K_POOLS;
  default:
    return K_METRICS;
  }
}

typedef struct mixed {
  th_load_t *l;
  char body[128];
  size_t ok[2];       /* task replies 200, by kind (K_CPU, K_IO) */
  size_t (*floor)[2]; /* per request: ok[] when it was sent */
  size_t reads;       /* GETs whose counters were checked */
  conn_loops_t conns;
  problems_t bad;
} mixed_t;

static const char *const kind_pool[] = {"cpu", "io"};

static bool mixed_next(size_t n, th_request_t *req, void *arg) {
  mixed_t *m = arg;
  enum kind k = kind_of(n);
  memcpy(m->floor[n], m->ok, sizeof(m->ok));
  switch (k) {
  case K_CPU:
  case K_IO: {
    int len = snprintf(m->body, sizeof(m->body),
                       "{\"name\":\"mix_%zu\",\"work\":\"%s\",\"ms\":%d}", n,
                       k == K_CPU ? "spin" : "sleep", k == K_CPU ? 1 : 2);
    *req = (th_request_t){"POST", k == K_CPU ? "/tasks/cpu" : "/tasks/io", NULL,
                          m->body, (size_t)len};
    break;
  }
  case K_POOLS:
    *req = (th_request_t){"GET", "/health/thread-pools", NULL, NULL, 0};
    break;
  case K_METRICS:
    *req = (th_request_t){"GET", "/metrics", NULL, NULL, 0};
    break;
  }
  return true;
}

/* A task reply: its own, ok, and from the loop of its connection. */
static void mixed_task_answer(mixed_t *m, size_t n, enum kind k,
                              const th_response_t *r) {
  json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
  char name[32];
  snprintf(name, sizeof(name), "mix_%zu", n);
  json_t *jp = json_object_get(j, "pool"), *jn = json_object_get(j, "name"),
         *js = json_object_get(j, "status");
  if (!json_is_string(jp) || !json_is_string(jn) || !json_is_string(js) ||
      strcmp(json_string_value(jp), kind_pool[k]) != 0 ||
      strcmp(json_string_value(jn), name) != 0 ||
      strcmp(json_string_value(js), "ok") != 0) {
    problem(&m->bad, "request %zu (%s): not its answer: %.300s", n,
            kind_pool[k], r->body);
  } else {
    m->ok[k]++;
    conn_loops_add(&m->conns, &m->bad, n, th_load_connection(m->l), j);
  }
  json_decref(j);
}

/* A read while the load runs: the whole process's counters, so at least
   what this client had seen answered when it sent the request. */
static void mixed_read_answer(mixed_t *m, size_t n, enum kind k,
                              const th_response_t *r) {
  for (int p = 0; p < 2; p++) {
    double seen;
    if (k == K_POOLS) {
      json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
      json_t *c = json_object_get(
          json_object_get(json_object_get(j, "pools"), kind_pool[p]),
          "completed");
      seen = json_is_integer(c) ? (double)json_integer_value(c) : -1;
      json_decref(j);
    } else {
      char label[64];
      snprintf(label, sizeof(label), "pool=\"%s\"", kind_pool[p]);
      seen = metric_or(r->body, "tpool_tasks_completed_total", label);
    }
    if (seen < 0)
      problem(&m->bad, "request %zu (%s): no completed count for %s: %.300s", n,
              k == K_POOLS ? "GET /health/thread-pools" : "GET /metrics",
              kind_pool[p], r->body);
    else if (seen < (double)m->floor[n][p])
      problem(&m->bad,
              "request %zu (%s): %s completed %.0f, but %zu of its tasks had "
              "been answered before it was sent: not the whole process",
              n, k == K_POOLS ? "GET /health/thread-pools" : "GET /metrics",
              kind_pool[p], seen, m->floor[n][p]);
  }
  m->reads++;
}

static void mixed_answer(size_t n, const th_response_t *r, void *arg) {
  mixed_t *m = arg;
  enum kind k = kind_of(n);
  if (r->status != 200) {
    problem(&m->bad, "request %zu answered %d: %.300s", n, r->status, r->body);
    return;
  }
  if (k == K_CPU || k == K_IO)
    mixed_task_answer(m, n, k, r);
  else
    mixed_read_answer(m, n, k, r);
}

/* /health/thread-pools and /metrics, each asked `times` times on fresh
   connections (so the kernel spreads them over the loops), must count
   `completed[i]` tasks submitted and completed in pools[i]. */
static void expect_process_counters(fixture_t *fx, server_t *s,
                                    const size_t completed[NPOOLS], int times) {
  for (int t = 0; t < times; t++) {
    json_t *all = get_json(fx, s, "/health/thread-pools");
    json_t *ps = jobj(all, "pools");
    for (int i = 0; i < NPOOLS; i++) {
      json_t *p = jobj(ps, pools[i]);
      if (jint(p, "completed") != (json_int_t)completed[i] ||
          jint(p, "submitted") != (json_int_t)completed[i]) {
        print_log(s);
        fail_msg("ask %d: pool %s: the client got %zu answers 200, but "
                 "/health/thread-pools says %" JSON_INTEGER_FORMAT
                 " submitted, %" JSON_INTEGER_FORMAT " completed",
                 t, pools[i], completed[i], jint(p, "submitted"),
                 jint(p, "completed"));
      }
    }
    json_decref(all);

    th_response_t r;
    call(fx, s, "GET", "/metrics", NULL, NULL, &r);
    expect_status(&r, 200);
    for (int i = 0; i < NPOOLS; i++) {
      char label[64];
      snprintf(label, sizeof(label), "pool=\"%s\"", pools[i]);
      double v = metric_or(r.body, "tpool_tasks_completed_total", label);
      if (v != (double)completed[i])
        fail_msg("ask %d: tpool_tasks_completed_total{%s} is %.0f, the "
                 "client got %zu answers 200",
                 t, label, v, completed[i]);
    }
    th_response_free(&r);
  }
}

static void test_loops_load_answered_by_the_submitting_loop(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL "loop_threads = %d\n" LOOP_POOLS, LOOPS);
  server_t *s = server_start(fx);
  char line[64];
  snprintf(line, sizeof(line), "/ (%d loop threads)", LOOPS);
  if (log_count(s, line) != 1) {
    print_log(s);
    fail_msg("the \"Listening on\" line does not end with \"%s\"", line);
  }

  enum { TOTAL = 2000, CONCURRENCY = 64 };
  mixed_t m;
  memset(&m, 0, sizeof(m));
  m.floor = calloc(TOTAL, sizeof(*m.floor));
  assert_non_null(m.floor);
  /* A connection per slot, and one more for each request at most. */
  conn_loops_init(&m.conns, TOTAL + CONCURRENCY);
  m.l = th_load_start(fx->base, s->port, CONCURRENCY, TOTAL, mixed_next,
                      mixed_answer, &m);
  run_load(s, m.l);
  const th_load_stats_t *st = th_load_stats(m.l);
  if (st->answered != TOTAL || st->by_status[200] != TOTAL) {
    print_load(st);
    print_log(s);
    fail_msg("every request must be answered 200");
  }
  expect_no_problems(&m.bad, s, st);
  assert_int_equal(m.ok[K_CPU] + m.ok[K_IO] + m.reads, TOTAL);

  /* Each loop answered some; most connections carried many replies, so
     "one loop per connection" was put to the test. */
  size_t busy_conns = 0, conns = 0;
  for (size_t i = 0; i < m.conns.cap; i++) {
    conns += m.conns.loop[i] >= 0;
    busy_conns += m.conns.replies[i] >= 2;
  }
  print_message("%zu connections; task replies by loop: %zu %zu %zu %zu\n",
                conns, m.conns.by_loop[0], m.conns.by_loop[1],
                m.conns.by_loop[2], m.conns.by_loop[3]);
  for (int i = 0; i < LOOPS; i++)
    if (m.conns.by_loop[i] == 0) {
      print_log(s);
      fail_msg("loop %d answered none of %d connections' task requests", i,
               CONCURRENCY);
    }
  assert_true(busy_conns >= CONCURRENCY / 2);
  th_load_free(m.l);

  /* Afterwards, whichever loop answers, the counters are the process's. */
  json_decref(wait_quiescent(fx, s));
  size_t completed[NPOOLS] = {m.ok[K_IO], m.ok[K_CPU], 0, 0, 0};
  expect_process_counters(fx, s, completed, 8);

  /* A batch reply names its loop too. */
  enum { BATCHES = 8, COUNT = 8 };
  for (int i = 0; i < BATCHES; i++) {
    json_t *j = call_json(fx, s, "POST", "/tasks/db", NULL,
                          "{\"name\":\"batch\",\"work\":\"sleep\",\"ms\":1,"
                          "\"count\":8}",
                          200);
    assert_string_equal(jstr(j, "status"), "ok");
    assert_int_equal(jint(j, "count"), COUNT);
    if (reply_loop(j) < 0) {
      char *text = json_dumps(j, JSON_COMPACT);
      fail_msg("a batch reply without \"loop\" in 0..%d: %s", LOOPS - 1, text);
    }
    json_decref(j);
  }
  json_decref(wait_quiescent(fx, s));
  completed[4] = BATCHES * COUNT;
  expect_process_counters(fx, s, completed, 4);

  conn_loops_destroy(&m.conns);
  free(m.floor);
  server_stop_ok(s);
}

/* ---- SIGHUP applies [http] on every loop --------------------------------- */

#define TOKEN "r3load-t0ken"

/* Sends a request on the raw connection fd and reads its answer (HTTP/1.1,
   kept alive). `auth`: send the admin token. */
static void raw_call(server_t *s, int fd, const char *path, bool auth,
                     const char *body, th_response_t *r) {
  size_t blen = body ? strlen(body) : 0;
  size_t cap = blen + 512;
  char *req = malloc(cap);
  assert_non_null(req);
  int len = snprintf(req, cap,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     path, auth ? "Authorization: Bearer " TOKEN "\r\n" : "",
                     blen, body ? body : "");
  assert_true(len > 0 && (size_t)len < cap);
  bool sent = th_raw_send(fd, req, (size_t)len);
  free(req);
  if (!sent || th_raw_read_response(fd, WAIT_S, r) != 0 || r->status == 0) {
    if (sent)
      th_response_free(r);
    print_log(s);
    fail_msg("POST %s: no answer", path);
  }
}

/* A task body of about 1500 bytes: over a 1K max_body_size. */
static void big_body(char *out, size_t size) {
  static const char json[] = "{\"name\":\"big\",\"work\":\"sleep\",\"ms\":0}";
  assert_true(size > sizeof(json) + 1400);
  memset(out, ' ', size - 1);
  memcpy(out + size - sizeof(json), json, sizeof(json)); /* with its NUL */
}

/*
 * Probes connections until every loop has been probed at least twice (and
 * at least 32 connections were): on each, a task (sent with the token)
 * names the connection's loop, then log-status without the token must
 * answer `without`, with it 200, and a 1.5 KB task body `big`. Returns the
 * number of connections probed.
 */
static int probe_loops(server_t *s, int without, int big) {
  enum { MIN_CONNS = 32, MAX_CONNS = 400, PER_LOOP = 2 };
  static const char task[] = "{\"name\":\"probe\",\"work\":\"sleep\",\"ms\":0}";
  char body[1500];
  big_body(body, sizeof(body));
  int probed[LOOPS] = {0};
  int conns = 0;
  for (;;) {
    bool all = conns >= MIN_CONNS;
    for (int i = 0; i < LOOPS; i++)
      all = all && probed[i] >= PER_LOOP;
    if (all)
      break;
    if (conns == MAX_CONNS) {
      print_log(s);
      fail_msg("after %d connections, loops probed %d %d %d %d times", conns,
               probed[0], probed[1], probed[2], probed[3]);
    }
    int fd = th_raw_connect(s->port);
    assert_true(fd >= 0);
    conns++;
    th_response_t r;
    raw_call(s, fd, "/tasks/cpu", true, task, &r);
    expect_status(&r, 200);
    json_t *j = th_json(&r);
    int loop = reply_loop(j);
    if (loop < 0)
      fail_msg("a task reply without \"loop\" in 0..%d: %s", LOOPS - 1, r.body);
    json_decref(j);
    th_response_free(&r);

    raw_call(s, fd, "/health/thread-pools/log-status", false, NULL, &r);
    if (r.status != without) {
      print_log(s);
      fail_msg("connection %d, loop %d: log-status without the token "
               "answered %d, not %d: %s",
               conns, loop, r.status, without, r.body);
    }
    th_response_free(&r);
    raw_call(s, fd, "/health/thread-pools/log-status", true, NULL, &r);
    if (r.status != 200)
      fail_msg("connection %d, loop %d: log-status with the token answered "
               "%d: %s",
               conns, loop, r.status, r.body);
    th_response_free(&r);
    raw_call(s, fd, "/tasks/cpu", true, body, &r);
    if (r.status != big)
      fail_msg("connection %d, loop %d: a %zu-byte body answered %d, not %d: "
               "%s",
               conns, loop, strlen(body), r.status, big, r.body);
    th_response_free(&r);
    close(fd);
    probed[loop]++;
  }
  print_message("probed %d connections: loops %d %d %d %d\n", conns, probed[0],
                probed[1], probed[2], probed[3]);
  return conns;
}

/* Asserts that the n-th "HTTP settings applied on all 4 loops" comes after
   the n-th "Configuration reloaded". */
static void expect_applied_after_reload(server_t *s, const char *applied,
                                        size_t n) {
  char *text = log_copy(s);
  const char *reloaded = nth(text, "Configuration reloaded", n);
  const char *all = nth(text, applied, n);
  if (!reloaded || !all || all < reloaded) {
    print_log(s);
    fail_msg("expected \"%s\" after \"Configuration reloaded\" (reload %zu)",
             applied, n);
  }
  free(text);
}

static void
test_loops_sighup_applies_http_settings_on_every_loop(void **state) {
  fixture_t *fx = *state;
  char applied[64];
  snprintf(applied, sizeof(applied), "HTTP settings applied on all %d loops",
           LOOPS);
  write_config(fx, HTTP_LOCAL "loop_threads = %d\n" LOOP_POOLS, LOOPS);
  server_t *s = server_start(fx);

  /* No token yet: open to all. */
  probe_loops(s, 200, 200);

  /* A token and a 1K body limit. */
  write_config(fx,
               HTTP_LOCAL "loop_threads = %d\nadmin_token = " TOKEN
                          "\nmax_body_size = 1K\n" LOOP_POOLS,
               LOOPS);
  assert_int_equal(kill(s->pid, SIGHUP), 0);
  wait_log(s, applied, 1);
  expect_applied_after_reload(s, applied, 1);
  probe_loops(s, 401, 413);

  /* On fresh connections of the plain client too, however they are
     spread: refused without the token every time. */
  for (int i = 0; i < 32; i++) {
    th_response_t r;
    call(fx, s, "POST", "/health/thread-pools/log-status", NULL, NULL, &r);
    expect_error(&r, 401, NULL);
    th_response_free(&r);
    call(fx, s, "POST", "/health/thread-pools/log-status",
         (const char *const[]){"Authorization: Bearer " TOKEN, NULL}, NULL, &r);
    expect_status(&r, 200);
    th_response_free(&r);
  }

  /* Lifted again, on every loop; a new loop count waits for a restart,
     and the four loops serve on. */
  write_config(fx, HTTP_LOCAL "loop_threads = 2\n" LOOP_POOLS);
  assert_int_equal(kill(s->pid, SIGHUP), 0);
  wait_log(s, applied, 2);
  expect_applied_after_reload(s, applied, 2);
  assert_int_equal(log_count(s, "WARN Server Config reload: [http] "
                                "loop_threads changes at restart only; "
                                "keeping 4"),
                   1);
  probe_loops(s, 200, 200);
  server_stop_ok(s);
}

/* ---- SIGTERM drains every loop ------------------------------------------- */

typedef struct drain {
  th_load_t *l;
  char body[128];
  conn_loops_t conns;
  problems_t bad;
} drain_t;

static bool drain_next(size_t n, th_request_t *req, void *arg) {
  drain_t *d = arg;
  int len =
      snprintf(d->body, sizeof(d->body),
               "{\"name\":\"drain_%zu\",\"work\":\"sleep\",\"ms\":200}", n);
  *req = (th_request_t){"POST", n % 2 ? "/tasks/cpu" : "/tasks/io", NULL,
                        d->body, (size_t)len};
  return true;
}

static void drain_answer(size_t n, const th_response_t *r, void *arg) {
  drain_t *d = arg;
  if (r->status != 200)
    return; /* the tally has it; checked after the load */
  json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
  char name[32];
  snprintf(name, sizeof(name), "drain_%zu", n);
  json_t *jn = json_object_get(j, "name"), *js = json_object_get(j, "status");
  if (!json_is_string(jn) || !json_is_string(js) ||
      strcmp(json_string_value(jn), name) != 0 ||
      strcmp(json_string_value(js), "ok") != 0)
    problem(&d->bad, "request %zu: not its answer: %.300s", n, r->body);
  else
    conn_loops_add(&d->conns, &d->bad, n, th_load_connection(d->l), j);
  json_decref(j);
}

static void test_loops_sigterm_drains_every_loop(void **state) {
  fixture_t *fx = *state;
  /* 16 connections on the 6 workers of io and cpu: at the signal, tasks
     are running and queued, submitted from every loop. */
  write_config(fx, HTTP_LOCAL "loop_threads = %d\n" LOOP_POOLS, LOOPS);
  server_t *s = server_start(fx);
  enum { TOTAL = 96, CONCURRENCY = 16 };
  drain_t d;
  memset(&d, 0, sizeof(d));
  conn_loops_init(&d.conns, TOTAL + CONCURRENCY);
  d.l = th_load_start(fx->base, s->port, CONCURRENCY, TOTAL, drain_next,
                      drain_answer, &d);
  run_load_until_started(fx, s, d.l, TOTAL / 2);
  /* Every request sent was answered: 200 for those the pools took, 503
     for any a loop received once intake had stopped; the rest found the
     listeners closed. */
  sigterm_during_load(s, d.l, TOTAL, CONCURRENCY);
  const th_load_stats_t *st = th_load_stats(d.l);
  expect_no_problems(&d.bad, s, st);
  print_load(st);
  th_load_free(d.l);
  conn_loops_destroy(&d.conns);
  server_join_log(s);
  char *text = log_copy(s);
  if (!strstr(text, "SIGTERM: draining") ||
      !strstr(text, "Drained (every task finished)")) {
    print_log(s);
    fail_msg("the log does not show the drain");
  }
  free(text);
}

/* ---- the key itself ------------------------------------------------------ */

static void test_loops_bad_loop_threads_exits_2(void **state) {
  fixture_t *fx = *state;
  static const char *const bad[] = {"0", "65"};
  const char *const check[] = {"--check-config", fx->config, NULL};
  for (size_t i = 0; i < 2; i++) {
    char config[256], where[256], got[32];
    snprintf(config, sizeof(config),
             HTTP_LOCAL "loop_threads = %s\n" LOOP_POOLS, bad[i]);
    /* Line 3 holds the bad value. */
    snprintf(where, sizeof(where), "%s:3: [http] loop_threads: expected 1..64",
             fx->config);
    snprintf(got, sizeof(got), "\"%s\"", bad[i]);
    expect_refused_start(fx, config, NULL,
                         (const char *const[]){where, got, NULL});
    expect_refused_start(fx, config, check, (const char *const[]){where, NULL});
  }
  /* The bounds themselves are fine. */
  static const char *const good[] = {"1", "64"};
  for (size_t i = 0; i < 2; i++) {
    write_config(fx, HTTP_LOCAL "loop_threads = %s\n" LOOP_POOLS, good[i]);
    server_t *s = server_spawn(fx, check);
    assert_int_equal(server_exit_code(s), 0);
    server_join_log(s);
    assert_int_equal(log_count(s, ": OK"), 1);
  }
}

/* One loop, the default: every reply is loop 0's. */
static void test_loops_one_loop_is_loop_0(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL LOOP_POOLS);
  server_t *s = server_start(fx);
  for (int i = 0; i < 4; i++) {
    json_t *j = call_json(fx, s, "POST", i % 2 ? "/tasks/cpu" : "/tasks/io",
                          NULL, "{\"work\":\"sleep\",\"ms\":1}", 200);
    assert_int_equal(jint(j, "loop"), 0);
    json_decref(j);
  }
  json_t *j = call_json(
      fx, s, "POST", "/tasks/db", NULL,
      "{\"work\":\"sleep\",\"ms\":1,\"count\":4,\"concurrency\":2}", 200);
  assert_int_equal(jint(j, "count"), 4);
  assert_int_equal(jint(j, "loop"), 0);
  json_decref(j);
  server_stop_ok(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_loops_bad_loop_threads_exits_2,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_loops_one_loop_is_loop_0, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_loops_load_answered_by_the_submitting_loop, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_loops_sighup_applies_http_settings_on_every_loop, setup,
          teardown),
      cmocka_unit_test_setup_teardown(test_loops_sigterm_drains_every_loop,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
