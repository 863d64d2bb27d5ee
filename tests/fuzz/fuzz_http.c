/*
 * fuzz_http.c — tpool's HTTP face on arbitrary bytes (libFuzzer target).
 *
 * Each input is sent as is, as one client's whole byte stream, to an
 * evhttp server on 127.0.0.1 that routes exactly as tpool-server does
 * (tasks_serve(), compiled in from server/): the version, framing and size
 * checks, the path's decoding, the task routes (built here with tasks of
 * at most a few milliseconds), tpool's health routes with an admin token,
 * then a JSON 404. libevent's parser, the
 * path and header handling, the JSON body parser and the route handlers
 * all see the input. Every answer that says it is JSON must parse back
 * with jansson, and none may be the fixed 500 "out of memory" (memory is
 * plentiful here: such an answer means a body could not be built, as when
 * a message quoted bytes that are not UTF-8); a crash, a sanitizer report
 * or a leak is a finding.
 *
 * One process-wide server is set up on the first input. The client is a
 * nonblocking socket driven by the same loop, so each input runs to its
 * answer (or the server closing) without threads; a task it started is
 * waited for before the next input.
 */
#include "tasks.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_INPUT = 64 * 1024, MAX_ANSWER = 4 * 1024 * 1024 };
#define INPUT_BUDGET_S 2.0 /* one input may take this long, at most */

typedef struct {
  struct event_base *base;
  tpool_manager_t *m;
  struct evhttp *http;
  tpool_http_t *routes;
  task_route_t demo;
  uint16_t port;
} fuzz_server_t;

static fuzz_server_t srv;

static void quiet(tpool_log_level_t level, const char *msg, void *arg) {
  (void)level;
  (void)msg;
  (void)arg;
}

/* Routed exactly as tpool-server routes (tasks_serve()). */
static void on_request(struct evhttp_request *req, void *arg) {
  fuzz_server_t *s = arg;
  tasks_serve(&s->demo, req);
}

static void die(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

static void server_setup(void) {
  if (evthread_use_pthreads() != 0 || !(srv.base = event_base_new()))
    die("no event base");
  tpool_options_t *o = malloc(sizeof(*o));
  if (!o)
    die("out of memory");
  tpool_options_init(o);
  o->log_cb = quiet;
  for (size_t i = 0; i < o->npools; i++) { /* the five, small */
    o->pools[i].max_workers = 1;
    o->pools[i].min_workers = TPOOL_MIN_EQUALS_MAX;
    o->pools[i].queue_limit = 4;
  }
  tpool_http_options_t ho;
  tpool_http_options_init(&ho);
  ho.max_header_size = 4096;
  ho.max_body_size = 16384;
  snprintf(ho.admin_token, sizeof(ho.admin_token), "fuzz-token");
  if (tpool_manager_new(o, &srv.m) != 0 ||
      tpool_manager_attach(srv.m, srv.base) != 0 ||
      tpool_manager_start(srv.m) != 0)
    die("no manager");
  srv.http = evhttp_new(srv.base);
  if (!srv.http || tpool_http_attach(srv.http, srv.m, &ho, TPOOL_HTTP_CONFIGURE,
                                     &srv.routes) != 0)
    die("no HTTP routes");
  free(o);
  srv.demo.m = srv.m;
  srv.demo.routes = srv.routes;
  /* The work kinds without files: "embed" small; "read" has no file and
     "query" no connection (their tasks fail), but their bodies are
     parsed as in the server. */
  srv.demo.embedding_dim = 16;
  srv.demo.read_fd = -1;
  TAILQ_INIT(&srv.demo.waiting);
  evhttp_set_gencb(srv.http, on_request, &srv);
  evhttp_set_timeout(srv.http, 1);
  struct evhttp_bound_socket *bs =
      evhttp_bind_socket_with_handle(srv.http, "127.0.0.1", 0);
  if (!bs)
    die("cannot listen on 127.0.0.1");
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa,
                  &len) != 0)
    die("getsockname");
  srv.port = ntohs(sa.sin_port);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Where `pat` (2 or 4 bytes) first occurs in s[from, to), or `to`. */
static size_t find(const char *s, size_t from, size_t to, const char *pat,
                   size_t plen) {
  for (size_t i = from; i + plen <= to; i++)
    if (memcmp(s + i, pat, plen) == 0)
      return i;
  return to;
}

/* Checks every answer in `buf` whose headers say application/json: its
   body (by Content-Length) must parse. The stream may hold several
   answers (pipelined requests); a truncated last one is not checked. */
static void check_answers(const char *buf, size_t len) {
  size_t at = 0;
  while (at < len) {
    size_t end = find(buf, at, len, "\r\n\r\n", 4);
    if (end == len || len - at < 7 || memcmp(buf + at, "HTTP/1.", 7) != 0)
      return;
    size_t body = end + 4;
    long clen = -1;
    bool json = false;
    for (size_t l = at; l < end;) {
      size_t eol = find(buf, l, end + 2, "\r\n", 2);
      if (eol - l > 15 && strncasecmp(buf + l, "Content-Length:", 15) == 0)
        clen = strtol(buf + l + 15, NULL, 10);
      if (eol - l >= 30 &&
          strncasecmp(buf + l, "Content-Type: application/json", 30) == 0)
        json = true;
      l = eol + 2;
    }
    if (clen < 0 || (size_t)clen > len - body)
      return;
    if (json && clen > 0) {
      json_error_t err;
      json_t *j = json_loadb(buf + body, (size_t)clen, 0, &err);
      if (!j) {
        fprintf(stderr, "fuzz_http: a JSON answer does not parse (%s):\n%.*s\n",
                err.text, (int)(clen < 2000 ? clen : 2000), buf + body);
        abort();
      }
      json_t *msg = json_object_get(json_object_get(j, "error"), "message");
      if (memcmp(buf + at + 8, " 500", 4) == 0 &&
          strcmp(json_string_value(msg) ? json_string_value(msg) : "",
                 "out of memory") == 0) {
        fprintf(stderr, "fuzz_http: a 500 \"out of memory\" answer\n");
        abort();
      }
      json_decref(j);
    }
    at = body + (size_t)clen;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_INPUT)
    return 0;
  if (!srv.base)
    server_setup();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons(srv.port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
      errno != EINPROGRESS)
    die("connect");
  static char answer[MAX_ANSWER];
  size_t sent = 0, got = 0;
  bool shut = false, eof = false;
  double deadline = now_s() + INPUT_BUDGET_S;
  while (!eof && now_s() < deadline) {
    event_base_loop(srv.base, EVLOOP_NONBLOCK);
    if (sent < size) {
      ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0)
        sent += (size_t)n;
      else if (n < 0 && errno != EAGAIN && errno != EINPROGRESS &&
               errno != ENOTCONN)
        sent = size; /* the server hung up: read what it said */
    }
    if (sent == size && !shut) {
      shutdown(fd, SHUT_WR); /* the whole input: the server sees its end */
      shut = true;
    }
    ssize_t n = recv(fd, answer + got, sizeof(answer) - 1 - got, 0);
    if (n > 0)
      got += (size_t)n;
    else if (n == 0 || (n < 0 && errno != EAGAIN && errno != ENOTCONN))
      eof = true;
    if (got == sizeof(answer) - 1)
      eof = true;
  }
  close(fd);
  check_answers(answer, got);
  /* Let a task this input started finish and its request be forgotten,
     so inputs do not pile up on the small queues. */
  while (srv.demo.nwaiting > 0 && now_s() < deadline + INPUT_BUDGET_S)
    event_base_loop(srv.base, EVLOOP_NONBLOCK);
  return 0;
}
