/*
 * test_reliability.c — tpool-server under faults and hostile clients, over
 * 127.0.0.1:
 *   - a task that never returns is reported stuck within twice its soft
 *     timeout, GET /health turns 503 naming its pool, and a drain with a
 *     1 s deadline ends the process (status 0) within 1.5 s;
 *   - 1000 SIGHUPs (reloads that resize a pool) during a load of task
 *     requests: every request answered once, with its own task, and the
 *     counters agree;
 *   - 10,000 malformed or mutated requests: each is refused (4xx/5xx) or
 *     the connection closed, nothing crashes, and /health then answers at
 *     once; ambiguous framing (two Content-Lengths, ...) is refused with
 *     400 and does nothing; requests on reused descriptors arrive whole;
 *   - twice the benchmark's connection count of slow clients, each
 *     trickling a byte at a time inside the idle timeout, are all cut off
 *     by the header deadline while /health keeps answering;
 *   - 10,000 task requests whose clients hang up before the answer: every
 *     task still runs, the counters agree, and the server exits 0 (under
 *     AddressSanitizer, a leak would fail that).
 * Admin tokens are covered in test_server.c and test_http.c.
 */
#include "server_harness.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define HTTP_LOCAL "[http]\nlisten = 127.0.0.1:0\n"

static const char *const pools[] = {"io", "cpu", "inference", "embedding",
                                    "db"};
#define NPOOLS 5

/* ---- a task that never returns ------------------------------------------- */

static void test_reliability_stuck_task(void **state) {
  fixture_t *fx = *state;
  /* ThreadSanitizer sleeps a second in a process's exit by default (to
     catch races at exit), which is not the server's time: not here. */
  if (TH_TSAN) {
    const char *was = getenv("TSAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof(opts), "%s%satexit_sleep_ms=0", was ? was : "",
             was && *was ? ":" : "");
    setenv("TSAN_OPTIONS", opts, 1);
  }
  write_config(fx, "[general]\nshutdown_timeout = 1\n" HTTP_LOCAL
                   "[pool.cpu]\nworkers = 2\nsoft_timeout = 0.5\n"
                   "[pool.io]\nworkers = 1\n[pool.inference]\nworkers = 1\n"
                   "[pool.embedding]\nworkers = 1\n[pool.db]\nworkers = 1\n");
  server_t *s = server_start(fx);

  /* As good as never returning: a minute, far past every bound here. Its
     client waits for the answer on a connection of its own. */
  static const char body[] = "{\"name\":\"forever\",\"work\":\"sleep\","
                             "\"ms\":60000}";
  char req[256];
  int len = snprintf(req, sizeof(req),
                     "POST /tasks/cpu HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     sizeof(body) - 1, body);
  int fd = th_raw_connect(s->port);
  assert_true(fd >= 0);
  assert_true(th_raw_send(fd, req, (size_t)len));

  /* Stuck within twice the soft timeout, by the server's own clock: the
     first answer that marks it stuck says how long it had run. */
  double ran = -1;
  struct timespec start;
  th_now(&start);
  while (ran < 0) {
    json_t *p = get_pool(fx, s, "cpu");
    json_t *active = json_object_get(p, "active_tasks");
    json_t *t = json_array_get(active, 0);
    if (t && json_is_true(json_object_get(t, "stuck")))
      ran = jnum(t, "running_for_s");
    json_decref(p);
    if (th_elapsed(&start) > WAIT_S)
      fail_msg("the task was never reported stuck");
    nap_ms(10);
  }
  if (!(ran >= 0.5 && ran <= 1.0))
    fail_msg("reported stuck after %.3f s of a 0.5 s soft timeout", ran);

  /* /health: 503, naming the pool and why. */
  th_response_t r;
  call(fx, s, "GET", "/health", NULL, NULL, &r);
  expect_status(&r, 503);
  json_t *h = th_json(&r);
  th_response_free(&r);
  assert_string_equal(jstr(h, "status"), "degraded");
  json_t *reason = json_array_get(json_object_get(h, "reasons"), 0);
  assert_non_null(reason);
  assert_string_equal(jstr(reason, "pool"), "cpu");
  assert_string_equal(jstr(reason, "reason"), "stuck_tasks");
  json_decref(h);

  /* The drain gives up on it after 1 s; the process ends, status 0, and
     the waiting client gets its 503. */
  th_now(&start);
  assert_int_equal(kill(s->pid, SIGTERM), 0);
  assert_true(server_wait_exit(s, WAIT_S));
  double took = th_elapsed(&start);
  assert_int_equal(exit_code(s), 0);
  if (took > 1.5) {
    print_log(s);
    fail_msg("exit took %.3f s after SIGTERM with a 1 s drain deadline", took);
  }
  assert_int_equal(th_raw_read_response(fd, WAIT_S, &r), 0);
  assert_int_equal(r.status, 503);
  th_response_free(&r);
  close(fd);
  server_join_log(s);
  assert_true(log_count(s, "still running at the deadline") >= 1);
}

/* ---- task loads with answers checked ---------------------------------- */

/* Requests n = 0, 1, ...: POST /tasks/{pools[n % 5]} named "r<n>", a short
   sleep or spin; each answer must be for its own request, and no task id
   may be answered twice. */
typedef struct {
  char path[64], body[128];
  size_t total;
  int64_t *ids;      /* per request: the id answered, 0 if none */
  size_t mismatches; /* 200s whose name or pool were another request's */
  size_t ok[NPOOLS], refused[NPOOLS];
} checked_load_t;

static bool checked_next(size_t n, th_request_t *req, void *arg) {
  checked_load_t *c = arg;
  snprintf(c->path, sizeof(c->path), "/tasks/%s", pools[n % NPOOLS]);
  int len = snprintf(c->body, sizeof(c->body),
                     "{\"name\":\"r%zu\",\"work\":\"%s\",\"ms\":%zu}", n,
                     n % 2 ? "spin" : "sleep", n % 3);
  *req = (th_request_t){"POST", c->path, NULL, c->body, (size_t)len};
  return true;
}

static void checked_answer(size_t n, const th_response_t *r, void *arg) {
  checked_load_t *c = arg;
  if (r->status == 429)
    c->refused[n % NPOOLS]++;
  if (r->status != 200)
    return;
  c->ok[n % NPOOLS]++;
  json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
  char name[32];
  snprintf(name, sizeof(name), "r%zu", n);
  json_t *jn = json_object_get(j, "name"), *jp = json_object_get(j, "pool");
  if (!json_is_string(jn) || !json_is_string(jp) ||
      strcmp(json_string_value(jn), name) != 0 ||
      strcmp(json_string_value(jp), pools[n % NPOOLS]) != 0)
    c->mismatches++;
  c->ids[n] = json_integer_value(json_object_get(j, "id"));
  json_decref(j);
}

static int by_value(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Every 200 carried a distinct task id. */
static void expect_distinct_ids(const checked_load_t *c) {
  int64_t *sorted = malloc(c->total * sizeof(*sorted));
  assert_non_null(sorted);
  size_t n = 0;
  for (size_t i = 0; i < c->total; i++)
    if (c->ids[i] > 0)
      sorted[n++] = c->ids[i];
  qsort(sorted, n, sizeof(*sorted), by_value);
  for (size_t i = 1; i < n; i++)
    if (sorted[i] == sorted[i - 1])
      fail_msg("task %" PRId64 " was answered twice", sorted[i]);
  free(sorted);
}

/* Sends SIGHUP `count` times, a little apart, to `pid`. */
typedef struct {
  pid_t pid;
  int count, sent;
} hupper_t;

static void *send_hups(void *arg) {
  hupper_t *h = arg;
  for (h->sent = 0; h->sent < h->count; h->sent++) {
    if (kill(h->pid, SIGHUP) != 0)
      break;
    struct timespec ts = {0, 1000000}; /* 1 ms */
    nanosleep(&ts, NULL);
  }
  return NULL;
}

#define HUP_POOLS(cpu)                                                         \
  "[pool.io]\nworkers = 4\n[pool.cpu]\nworkers = " cpu "\n"                    \
  "[pool.inference]\nworkers = 2\n[pool.embedding]\nworkers = 2\n"             \
  "[pool.db]\nworkers = 3\n"

static void test_reliability_sighup_storm(void **state) {
  fixture_t *fx = *state;
  /* The file the reloads read resizes cpu from 4 to 6 workers. */
  write_config(fx, HTTP_LOCAL HUP_POOLS("4"));
  server_t *s = server_start(fx);
  write_config(fx, HTTP_LOCAL HUP_POOLS("6"));

  enum { TOTAL = 6000, CONCURRENCY = 16, HUPS = 1000 };
  checked_load_t c = {.total = TOTAL};
  c.ids = calloc(TOTAL, sizeof(*c.ids));
  assert_non_null(c.ids);
  th_load_t *l = th_load_start(fx->base, s->port, CONCURRENCY, TOTAL,
                               checked_next, checked_answer, &c);
  hupper_t h = {s->pid, HUPS, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, send_hups, &h), 0);
  run_load(s, l);
  pthread_join(th, NULL);
  assert_int_equal(h.sent, HUPS);

  const th_load_stats_t *st = th_load_stats(l);
  if (st->answered != TOTAL || st->lost || st->refused ||
      st->by_status[200] != TOTAL) {
    print_load(st);
    fail_msg("every request must be answered 200 through the reloads");
  }
  assert_int_equal(c.mismatches, 0);
  expect_distinct_ids(&c);
  th_load_free(l);

  /* Signals arrive as one self-pipe event: many coalesce, none is lost
     for good, and at least one reload applied the file. */
  wait_log(s, "Configuration reloaded", 1);
  json_t *all = wait_quiescent(fx, s);
  json_t *ps = jobj(all, "pools");
  for (int i = 0; i < NPOOLS; i++) {
    json_t *p = jobj(ps, pools[i]);
    assert_int_equal(jint(p, "submitted"), TOTAL / NPOOLS);
    assert_int_equal(jint(p, "completed"), (json_int_t)c.ok[i]);
    assert_int_equal(jint(p, "rejected") + jint(p, "failed") +
                         jint(p, "cancelled") + jint(p, "expired"),
                     0);
  }
  assert_int_equal(jint(jobj(ps, "cpu"), "max_workers"), 6);
  json_decref(all);
  free(c.ids);
  server_stop_ok(s);
}

/* ---- malformed requests ---------------------------------------------------
 */

/* Requests that are well formed, to be broken. */
static const char *const valid[] = {
    "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "GET /health/thread-pools/cpu HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
    "POST /tasks/io HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    "Content-Length: 35\r\n\r\n{\"work\":\"sleep\",\"ms\":1,\"name\":\"a\"}",
    "POST /health/thread-pools/log-status HTTP/1.1\r\nHost: a\r\n"
    "Content-Length: 0\r\n\r\n",
};

/* Breaks request `base` in one of many ways, chosen by r, into out.
   Every way yields a request no route may accept: a broken request line,
   header or body, an unknown route or method, or a body that is not what
   the route wants. Returns the length. */
static size_t mutate(const char *base, uint64_t r, char *out, size_t cap) {
  size_t len = strlen(base);
  const char *eol = strstr(base, "\r\n");
  const char *hdr_end = strstr(base, "\r\n\r\n");
  size_t line = (size_t)(eol - base);
  size_t n = 0;
#define PUT(p, k)                                                              \
  do {                                                                         \
    size_t k_ = (k);                                                           \
    if (n + k_ < cap) {                                                        \
      memcpy(out + n, (p), k_);                                                \
      n += k_;                                                                 \
    }                                                                          \
  } while (0)
  switch (r % 12) {
  case 0: /* a byte of the request line replaced by a control byte */
    PUT(base, len);
    out[(r >> 8) % line] = (char)((r >> 16) % 32);
    break;
  case 1: /* the request line cut short, then the headers */
    PUT(base, (r >> 8) % line);
    PUT(eol, len - line);
    break;
  case 2: /* an unknown HTTP version */
    PUT(base, line - 3);
    PUT("9.7", 3);
    PUT(eol, len - line);
    break;
  case 3: /* a header line without a colon */
    PUT(base, line + 2);
    PUT("Broken header line\r\n", 20);
    PUT(eol + 2, len - line - 2);
    break;
  case 4: /* Content-Length that is not a number */
    PUT(base, (size_t)(hdr_end - base));
    PUT("\r\nContent-Length: 12x", 21);
    PUT(hdr_end, len - (size_t)(hdr_end - base));
    break;
  case 5: /* a negative Content-Length */
    PUT(base, (size_t)(hdr_end - base));
    PUT("\r\nContent-Length: -5", 20);
    PUT(hdr_end, len - (size_t)(hdr_end - base));
    break;
  case 6: { /* a header far over max_header_size */
    PUT(base, line + 2);
    PUT("X-Big: ", 7);
    size_t big = 9000 + (r >> 8) % 4000;
    for (size_t i = 0; i < big && n < cap - 1; i++)
      out[n++] = (char)('a' + i % 26);
    PUT("\r\n", 2);
    PUT(eol + 2, len - line - 2);
    break;
  }
  case 7: /* an unknown route */
    PUT("GET /no/such/route/", 19);
    for (unsigned i = 0; i < 8; i++)
      out[n++] = (char)('a' + (r >> (8 + 4 * i)) % 26);
    PUT(" HTTP/1.1\r\nHost: a\r\n\r\n", 22);
    break;
  case 8: /* an unknown method on a real route */
    PUT("BREW", 4);
    PUT(strchr(base, ' '), len - (size_t)(strchr(base, ' ') - base));
    break;
  case 9: { /* POST /tasks with a body that is not JSON, bytes flipped */
    static const char head[] = "POST /tasks/cpu HTTP/1.1\r\nHost: a\r\n"
                               "Content-Length: 24\r\n\r\n";
    PUT(head, sizeof(head) - 1);
    char body[24] = "{\"work\":\"sleep\",\"ms\":1}";
    body[(r >> 8) % 6] = (char)(0x80 | ((r >> 16) & 0x7f));
    PUT(body, 24);
    break;
  }
  case 10: /* NUL bytes in the path */
    PUT(base, len);
    out[5] = '\0';
    out[6] = '\0';
    break;
  default: { /* POST /tasks with JSON of the wrong shape */
    static const char *const bodies[] = {
        "[]",
        "{\"work\":\"sleep\",\"ms\":-1}",
        "{\"work\":\"dance\"}",
        "{\"work\":\"sleep\",\"ms\":99999999999}",
        "{\"ms\":1}",
        "{\"work\":\"sleep\",\"name\":\"\"}",
        "{\"work\":\"sleep\",\"extra\":1}",
        "\"sleep\"",
    };
    const char *b = bodies[(r >> 8) % 8];
    char head[128];
    int k = snprintf(head, sizeof(head),
                     "POST /tasks/%s HTTP/1.1\r\nHost: a\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     pools[(r >> 16) % NPOOLS], strlen(b));
    PUT(head, (size_t)k);
    PUT(b, strlen(b));
    break;
  }
  }
#undef PUT
  return n;
}

static void test_reliability_malformed_requests(void **state) {
  fixture_t *fx = *state;
  write_config(fx,
               HTTP_LOCAL "timeout = 2\n"
                          "[pool.io]\nworkers = 2\n[pool.cpu]\nworkers = 2\n"
                          "[pool.inference]\nworkers = 1\n"
                          "[pool.embedding]\nworkers = 1\n"
                          "[pool.db]\nworkers = 1\n");
  server_t *s = server_start(fx);

  enum { TOTAL = 10000 };
  static char req[16384];
  size_t by_class[6] = {0}; /* 0: closed, 4: 4xx, 5: 5xx */
  size_t by_way[12][6] = {{0}};
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < TOTAL; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t len = mutate(valid[(x >> 40) % (sizeof(valid) / sizeof(valid[0]))],
                        x, req, sizeof(req));
    int fd = th_raw_connect(s->port);
    assert_true(fd >= 0);
    /* Sent, then the write side closed: a server waiting for more of an
       incomplete request sees the end at once. */
    th_raw_send(fd, req, len);
    shutdown(fd, SHUT_WR);
    th_response_t r;
    int rc = th_raw_read_response(fd, WAIT_S, &r);
    close(fd);
    int cls = r.status / 100;
    if (rc != 0 || !(cls == 0 || cls == 4 || cls == 5)) {
      print_message("request %d (mutation %d, %zu bytes):\n%.*s\n", i,
                    (int)(x % 12), len, (int)(len < 300 ? len : 300), req);
      print_log(s);
      fail_msg("answered %d (%s), not 4xx/5xx or a closed connection: %.300s",
               r.status, rc ? "timeout" : "read", r.body ? r.body : "");
    }
    by_class[cls]++;
    by_way[x % 12][cls]++;
    th_response_free(&r);
  }
  print_message("malformed: %zu closed, %zu 4xx, %zu 5xx\n", by_class[0],
                by_class[4], by_class[5]);
  for (int w = 0; w < 12; w++)
    print_message("  way %2d: %zu closed, %zu 4xx, %zu 5xx\n", w, by_way[w][0],
                  by_way[w][4], by_way[w][5]);

  /* Still healthy, and quick about it. */
  struct timespec start;
  th_now(&start);
  json_t *h = get_json(fx, s, "/health");
  double took = th_elapsed(&start);
  json_decref(h);
  if (took > 0.05)
    fail_msg("GET /health took %.1f ms after the malformed requests",
             took * 1e3);
  server_stop_ok(s);
}

/* ---- descriptors reused ------------------------------------------------- */

/* Found by the malformed-request test: a connection evhttp had freed kept
   its read event (the header deadline held a reference to its
   bufferevent), and when accept() gave its descriptor to the next client,
   that stale event read up to 4 KiB of the new request. Here every
   request follows one evhttp refused and closed, so descriptors are
   reused all the time, and each body (9 KB of JSON, mostly spaces, sent in
   pieces) must arrive whole: a lost piece would leave the server waiting for
   the rest, and the client's end of stream would then close the connection
   unanswered. */
static void test_reliability_reused_descriptors_lose_nothing(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL "[pool.cpu]\nworkers = 2\n");
  server_t *s = server_start(fx);
  enum { TOTAL = 2000, PAD = 9000 };
  static char req[PAD + 256];
  static const char json[] = "{\"work\":\"sleep\",\"ms\":0}";
  int head = snprintf(req, sizeof(req),
                      "POST /tasks/cpu HTTP/1.1\r\nHost: a\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      PAD + sizeof(json) - 1);
  memset(req + head, ' ', PAD);
  memcpy(req + head + PAD, json, sizeof(json) - 1);
  size_t len = (size_t)head + PAD + sizeof(json) - 1;
  static const char garbage[] = "\x01\x02 junk\r\n\r\n";
  for (int i = 0; i < TOTAL; i++) {
    /* First a request evhttp gives up on while it still reads: the
       connection it frees that way is the one whose read event lingered. */
    th_response_t bad;
    th_raw_http(s->port, garbage, sizeof(garbage) - 1, WAIT_S, &bad);
    th_response_free(&bad);
    int fd = th_raw_connect(s->port);
    assert_true(fd >= 0);
    /* In three pieces, a moment apart: the server reads each when it
       comes, and a stale event gets its chance at the later ones. */
    size_t third = len / 3;
    for (size_t at = 0; at < len; at += third) {
      size_t n = len - at < third ? len - at : third;
      assert_true(th_raw_send(fd, req + at, n));
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
    }
    shutdown(fd, SHUT_WR);
    th_response_t r;
    assert_int_equal(th_raw_read_response(fd, WAIT_S, &r), 0);
    close(fd);
    if (r.status != 200)
      fail_msg("request %d answered %d, not 200: %s", i, r.status, r.body);
    th_response_free(&r);
  }
  json_t *cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "completed"), TOTAL);
  json_decref(cpu);
  server_stop_ok(s);
}

/* ---- request framing -------------------------------------------------- */

/* Found by the malformed-request test: libevent reads the body by the
   first of two Content-Length headers, and a proxy in front may read it
   by the other. Such requests, and the other ambiguous framings, are
   refused with a JSON 400 and do nothing. */
static void test_reliability_ambiguous_framing_refused(void **state) {
  fixture_t *fx = *state;
  write_config(fx, HTTP_LOCAL "[pool.cpu]\nworkers = 1\n");
  server_t *s = server_start(fx);
  static const char *const heads[] = {
      "POST /health/thread-pools/log-status HTTP/1.1\r\nHost: a\r\n"
      "Content-Length: 0\r\nContent-Length: 12x\r\n\r\n",
      "POST /health/thread-pools/log-status HTTP/1.1\r\nHost: a\r\n"
      "Content-Length: 0\r\nContent-Length: 0\r\n\r\n",
      "POST /tasks/cpu HTTP/1.1\r\nHost: a\r\nContent-Length: 23\r\n"
      "Content-Length: 5\r\n\r\n{\"work\":\"sleep\",\"ms\":1}",
      "POST /tasks/cpu HTTP/1.1\r\nHost: a\r\nContent-Length: +23\r\n\r\n"
      "{\"work\":\"sleep\",\"ms\":1}",
      "POST /tasks/cpu HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Content-Length: 23\r\n\r\n17\r\n{\"work\":\"sleep\",\"ms\":1}\r\n"
      "0\r\n\r\n",
  };
  size_t tables = log_count(s, "ThreadPoolManager Current Status:");
  for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
    th_response_t r;
    assert_int_equal(
        th_raw_http(s->port, heads[i], strlen(heads[i]), WAIT_S, &r), 0);
    const char *type = th_response_header(&r, "Content-Type");
    if (r.status == 400 && type && strcmp(type, "application/json") == 0)
      expect_error(&r, 400, "framing");
    else if (r.status != 400 && r.status != 0)
      /* libevent refuses a Content-Length it cannot parse itself, with
         its own (HTML) 400 or by closing, before any route runs */
      fail_msg("request %zu answered %d: %s", i, r.status, r.body);
    th_response_free(&r);
  }
  /* A request smuggled behind an ambiguous one is never served: the
     refusal closes the connection (found in review). */
  static const char smuggle[] =
      "POST /tasks/cpu HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
      "Content-Length: 50\r\n\r\n"
      "POST /health/thread-pools/log-status HTTP/1.1\r\n\r\n";
  int fd = th_raw_connect(s->port);
  assert_true(fd >= 0);
  assert_true(th_raw_send(fd, smuggle, sizeof(smuggle) - 1));
  th_response_t r;
  assert_int_equal(th_raw_read_response(fd, WAIT_S, &r), 0);
  assert_int_equal(r.status, 400);
  th_response_free(&r);
  assert_int_equal(th_raw_read_response(fd, WAIT_S, &r), 0);
  assert_int_equal(r.status, 0); /* closed, nothing more answered */
  th_response_free(&r);
  close(fd);
  json_t *cpu = get_pool(fx, s, "cpu");
  assert_int_equal(jint(cpu, "submitted"), 0);
  json_decref(cpu);
  assert_int_equal(log_count(s, "ThreadPoolManager Current Status:"), tables);
  server_stop_ok(s);
}

/* ---- slow clients ----------------------------------------------------------
 */

static void test_reliability_slow_clients_cut_off(void **state) {
  fixture_t *fx = *state;
  /* A request may take 3 s to arrive; each client sends a byte every
     second, inside the idle timeout, so only the header deadline can end
     them. 64: twice the 32 connections of the HTTP benchmark. */
  write_config(fx, HTTP_LOCAL "timeout = 3\n[pool.cpu]\nworkers = 2\n");
  server_t *s = server_start(fx);
  enum { SLOW = 64 };
  static const char slow[] = "GET /health HTTP/1.1\r\nX-Slow: "
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  int fds[SLOW];
  bool open_[SLOW];
  for (int i = 0; i < SLOW; i++) {
    fds[i] = th_raw_connect(s->port);
    assert_true(fds[i] >= 0);
    open_[i] = true;
  }
  struct timespec start;
  th_now(&start);
  size_t sent = 0, health_ok = 0;
  int still = SLOW;
  while (still > 0 && sent < sizeof(slow) - 1) {
    for (int i = 0; i < SLOW; i++)
      if (open_[i] && !th_raw_send(fds[i], slow + sent, 1)) {
        open_[i] = false; /* the server hung up */
        still--;
      }
    sent++;
    /* Meanwhile the server answers others. */
    json_t *h = get_json(fx, s, "/health");
    json_decref(h);
    health_ok++;
    nap_ms(1000);
  }
  double took = th_elapsed(&start);
  for (int i = 0; i < SLOW; i++)
    close(fds[i]);
  if (still > 0)
    fail_msg("%d of %d slow clients still connected after %.1f s", still, SLOW,
             took);
  assert_true(took >= 2.5); /* ended by the deadline, not before */
  assert_true(health_ok >= 3);
  server_stop_ok(s);
}

/* ---- clients that hang up -------------------------------------------------
 */

static void test_reliability_hangups_lose_nothing(void **state) {
  fixture_t *fx = *state;
  write_config(fx,
               HTTP_LOCAL "[pool.io]\nworkers = 8\n[pool.cpu]\nworkers = 8\n"
                          "[pool.inference]\nworkers = 8\n"
                          "[pool.embedding]\nworkers = 8\n"
                          "[pool.db]\nworkers = 8\n");
  server_t *s = server_start(fx);

  enum { TOTAL = 10000 };
  static const char body[] =
      "{\"name\":\"orphan\",\"work\":\"sleep\",\"ms\":5}";
  for (int i = 0; i < TOTAL; i++) {
    char req[512];
    int len = snprintf(req, sizeof(req),
                       "POST /tasks/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       pools[i % NPOOLS], sizeof(body) - 1, body);
    int fd = th_raw_connect(s->port);
    assert_true(fd >= 0);
    assert_true(th_raw_send(fd, req, (size_t)len));
    close(fd); /* long before the 5 ms task ends */
  }

  /* Every request is submitted and every task runs, once: the requests
     arrived whole before their clients hung up. */
  struct timespec start;
  th_now(&start);
  for (;;) {
    json_t *all = wait_quiescent(fx, s);
    json_t *ps = jobj(all, "pools");
    json_int_t submitted = 0, completed = 0, other = 0;
    for (int i = 0; i < NPOOLS; i++) {
      json_t *p = jobj(ps, pools[i]);
      submitted += jint(p, "submitted");
      completed += jint(p, "completed");
      other += jint(p, "rejected") + jint(p, "failed") + jint(p, "cancelled") +
               jint(p, "expired");
    }
    json_decref(all);
    assert_int_equal(other, 0);
    assert_true(completed <= submitted && submitted <= TOTAL);
    if (completed == TOTAL)
      break;
    if (th_elapsed(&start) > WAIT_S) {
      print_log(s);
      fail_msg("%" JSON_INTEGER_FORMAT " of %d tasks submitted, "
               "%" JSON_INTEGER_FORMAT " completed",
               submitted, TOTAL, completed);
    }
    nap_ms(20);
  }
  for (int i = 0; i < NPOOLS; i++) { /* each its share, none elsewhere */
    json_t *p = get_pool(fx, s, pools[i]);
    assert_int_equal(jint(p, "completed"), TOTAL / NPOOLS);
    json_decref(p);
  }
  json_t *h = get_json(fx, s, "/health");
  assert_string_equal(jstr(h, "status"), "ok");
  json_decref(h);
  server_stop_ok(s); /* under ASan, a leak would make this non-zero */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_reliability_stuck_task, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_reliability_sighup_storm, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_reliability_malformed_requests,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_reliability_reused_descriptors_lose_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_reliability_ambiguous_framing_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reliability_slow_clients_cut_off,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_reliability_hangups_lose_nothing,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
