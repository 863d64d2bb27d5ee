/*
 * http_client.c — the tests' HTTP client; see http_client.h.
 *
 * th_http() is libevent's evhttp client, used as a user would. The load
 * generator and the raw sockets read responses with their own small
 * parser instead, because they need what evhttp hides: whether a
 * connection was ever made (a refusal after a server closed its listener
 * is not a lost request), and requests evhttp would never send.
 */
#include "http_client.h"

#include <sys/queue.h> /* before keyvalq_struct.h, which uses it */

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- responses ------------------------------------------------------------
 */

static char *copy_bytes(const char *s, size_t n) {
  char *c = malloc(n + 1);
  assert_non_null(c);
  if (n)
    memcpy(c, s, n);
  c[n] = '\0';
  return c;
}

static void add_header(th_response_t *r, const char *key, size_t klen,
                       const char *value, size_t vlen) {
  char **keys = realloc(r->keys, (r->nheaders + 1) * sizeof(*keys));
  assert_non_null(keys);
  r->keys = keys;
  char **values = realloc(r->values, (r->nheaders + 1) * sizeof(*values));
  assert_non_null(values);
  r->values = values;
  r->keys[r->nheaders] = copy_bytes(key, klen);
  r->values[r->nheaders] = copy_bytes(value, vlen);
  r->nheaders++;
}

/* An answer with no status and an empty body. */
static void response_empty(th_response_t *r) {
  memset(r, 0, sizeof(*r));
  r->body = copy_bytes("", 0);
}

void th_response_free(th_response_t *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->nheaders; i++) {
    free(r->keys[i]);
    free(r->values[i]);
  }
  free(r->keys);
  free(r->values);
  free(r->body);
  memset(r, 0, sizeof(*r));
}

const char *th_response_header(const th_response_t *r, const char *name) {
  for (size_t i = 0; i < r->nheaders; i++)
    if (strcasecmp(r->keys[i], name) == 0)
      return r->values[i];
  return NULL;
}

json_t *th_json(const th_response_t *r) {
  json_error_t err;
  json_t *j = json_loadb(r->body ? r->body : "", r->body_len, 0, &err);
  if (!j)
    fail_msg("HTTP %d: body is not JSON (%s, line %d column %d):\n%s",
             r->status, err.text, err.line, err.column,
             r->body ? r->body : "(none)");
  return j;
}

/* ---- one request on evhttp ----------------------------------------------- */

static const struct {
  const char *name;
  enum evhttp_cmd_type cmd;
} methods[] = {
    {"GET", EVHTTP_REQ_GET},         {"POST", EVHTTP_REQ_POST},
    {"HEAD", EVHTTP_REQ_HEAD},       {"PUT", EVHTTP_REQ_PUT},
    {"DELETE", EVHTTP_REQ_DELETE},   {"PATCH", EVHTTP_REQ_PATCH},
    {"OPTIONS", EVHTTP_REQ_OPTIONS},
};

static enum evhttp_cmd_type method_cmd(const char *method) {
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (strcmp(methods[i].name, method) == 0)
      return methods[i].cmd;
  fail_msg("th_http: unsupported method \"%s\"", method);
  return EVHTTP_REQ_GET; /* not reached */
}

/* Whether a NULL-terminated "Name: value" array has header `name`. */
static bool has_header(const char *const *headers, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; headers && headers[i]; i++)
    if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
      return true;
  return false;
}

typedef struct call {
  th_response_t *r;
  bool done, timed_out;
} call_t;

static void on_answer(struct evhttp_request *req, void *arg) {
  call_t *c = arg;
  c->done = true;
  /* A failed connection reports NULL, or a request without a status. */
  int status = req ? evhttp_request_get_response_code(req) : 0;
  if (status <= 0)
    return;
  th_response_t *r = c->r;
  r->status = status;
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
    add_header(r, kv->key, strlen(kv->key), kv->value, strlen(kv->value));
  }
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  free(r->body);
  r->body = malloc(len + 1);
  assert_non_null(r->body);
  evbuffer_copyout(in, r->body, len);
  r->body[len] = '\0';
  r->body_len = len;
}

static void on_call_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ((call_t *)arg)->timed_out = true;
}

int th_http(struct event_base *base, uint16_t port, const char *method,
            const char *path, const char *const *headers, const char *body,
            size_t body_len, double timeout_s, th_response_t *r) {
  response_empty(r);
  enum evhttp_cmd_type cmd = method_cmd(method);
  call_t c = {.r = r};
  struct evhttp_connection *evcon =
      evhttp_connection_base_new(base, NULL, "127.0.0.1", port);
  assert_non_null(evcon);
  struct evhttp_request *req = evhttp_request_new(on_answer, &c);
  assert_non_null(req);

  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  for (size_t i = 0; headers && headers[i]; i++) {
    const char *colon = strchr(headers[i], ':');
    assert_non_null(colon);
    char *name = copy_bytes(headers[i], (size_t)(colon - headers[i]));
    const char *value = colon + 1;
    while (*value == ' ')
      value++;
    assert_int_equal(evhttp_add_header(out, name, value), 0);
    free(name);
  }
  if (!has_header(headers, "Host"))
    evhttp_add_header(out, "Host", "127.0.0.1");
  if (body) {
    if (!has_header(headers, "Content-Length")) {
      char n[32];
      snprintf(n, sizeof(n), "%zu", body_len);
      evhttp_add_header(out, "Content-Length", n);
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
  }

  struct event *timer = evtimer_new(base, on_call_timeout, &c);
  assert_non_null(timer);
  struct timeval tv = {
      (time_t)timeout_s,
      (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
  evtimer_add(timer, &tv);
  /* On failure evhttp_make_request() frees the request without calling
     back, so this counts as an answer without a status. */
  if (evhttp_make_request(evcon, req, cmd, path) != 0)
    c.done = true;
  while (!c.done && !c.timed_out)
    event_base_loop(base, EVLOOP_ONCE);
  event_free(timer);
  /* Frees a request still pending without calling back. */
  evhttp_connection_free(evcon);
  return c.done ? 0 : -1;
}

/* ---- parsing a response from raw bytes ------------------------------------
 */

/*
 * Parses the response at the start of buf[0..len). `eof`: the connection
 * has ended, so a body without Content-Length ends at len.
 * Returns: the bytes it spans, with *r filled (the caller frees it); 0 if
 * it is incomplete (more bytes are needed, or at eof: it was cut off); -1
 * if it is not an HTTP/1.x response this parser reads (a chunked one,
 * say). *r holds nothing unless it returned > 0.
 */
static ssize_t parse_response(const char *buf, size_t len, bool eof,
                              th_response_t *r) {
  memset(r, 0, sizeof(*r));
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  if (!end)
    return 0;
  size_t head = (size_t)(end - buf) + 4;
  /* "HTTP/" DIGITS "." DIGITS, a blank, three digits. */
  size_t major = head > 5 ? strspn(buf + 5, "0123456789") : 0;
  size_t minor = major ? strspn(buf + 6 + major, "0123456789") : 0;
  size_t sp = 6 + major + minor; /* where the blank is */
  if (memcmp(buf, "HTTP/", 5) != 0 || !major || buf[5 + major] != '.' ||
      !minor || sp >= sizeof(r->version) || head < sp + 6 || buf[sp] != ' ')
    return -1;
  int status = 0;
  for (size_t i = sp + 1; i < sp + 4; i++) {
    if (buf[i] < '0' || buf[i] > '9')
      return -1;
    status = status * 10 + (buf[i] - '0');
  }
  memcpy(r->version, buf, sp);
  r->version[sp] = '\0';
  bool has_length = false, chunked = false;
  unsigned long long content_length = 0;
  const char *p = (const char *)memmem(buf, head, "\r\n", 2) + 2;
  while (p < end + 2) {
    const char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon) {
      th_response_free(r);
      return -1;
    }
    const char *value = colon + 1, *vend = eol;
    while (value < vend && (*value == ' ' || *value == '\t'))
      value++;
    while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
      vend--;
    add_header(r, p, (size_t)(colon - p), value, (size_t)(vend - value));
    const char *key = r->keys[r->nheaders - 1], *v = r->values[r->nheaders - 1];
    if (strcasecmp(key, "Content-Length") == 0) {
      has_length = true;
      content_length = strtoull(v, NULL, 10);
    } else if (strcasecmp(key, "Transfer-Encoding") == 0 &&
               strcasestr(v, "chunked")) {
      chunked = true;
    }
    p = eol + 2;
  }
  size_t body_len;
  if (chunked) {
    th_response_free(r);
    return -1;
  } else if (has_length && len - head >= content_length) {
    body_len = (size_t)content_length;
  } else if (!has_length && eof) {
    body_len = len - head;
  } else {
    th_response_free(r);
    return 0;
  }
  r->status = status;
  r->body = copy_bytes(buf + head, body_len);
  r->body_len = body_len;
  return (ssize_t)(head + body_len);
}

static bool wants_close(const th_response_t *r) {
  const char *c = th_response_header(r, "Connection");
  return c && strcasecmp(c, "close") == 0;
}

/* Writes the request line, headers and body of *req to `out`. */
static void write_request(struct evbuffer *out, uint16_t port,
                          const th_request_t *req) {
  evbuffer_add_printf(out, "%s %s HTTP/1.1\r\n", req->method, req->path);
  if (!has_header(req->headers, "Host"))
    evbuffer_add_printf(out, "Host: 127.0.0.1:%u\r\n", (unsigned)port);
  for (size_t i = 0; req->headers && req->headers[i]; i++)
    evbuffer_add_printf(out, "%s\r\n", req->headers[i]);
  if (req->body && !has_header(req->headers, "Content-Length"))
    evbuffer_add_printf(out, "Content-Length: %zu\r\n", req->body_len);
  evbuffer_add(out, "\r\n", 2);
  if (req->body)
    evbuffer_add(out, req->body, req->body_len);
}

/* ---- load ---------------------------------------------------------------- */

/* One connection of a load. */
typedef struct slot {
  th_load_t *l;
  struct bufferevent *bev; /* NULL until a request needs a connection */
  bool connected;          /* bev reported BEV_EVENT_CONNECTED */
  bool busy;               /* request `n` is in flight */
  size_t n;
  size_t conn; /* serial number of bev's connection (th_load_connection) */
} slot_t;

struct th_load {
  struct event_base *base;
  uint16_t port;
  size_t total;
  bool exhausted; /* next() said there are no more */
  th_load_next_cb next;
  th_load_answer_cb answer;
  void *arg;
  unsigned nslots;
  slot_t *slots;
  size_t nbusy;
  th_load_stats_t stats;
  struct event *kick; /* starts the slots once the loop runs */
  bool kicked;
  size_t nconns;           /* connections opened (or tried) so far */
  const slot_t *reporting; /* the slot whose outcome answer() is given */
};

static void slot_close(slot_t *s) {
  if (s->bev)
    bufferevent_free(s->bev);
  s->bev = NULL;
  s->connected = false;
}

/* Ends the request in flight on s: counts it and reports it. */
static void slot_end(slot_t *s, const th_response_t *r, size_t *counter) {
  th_load_t *l = s->l;
  s->busy = false;
  l->nbusy--;
  (*counter)++;
  if (r && r->status > 0 && r->status < 600)
    l->stats.by_status[r->status]++;
  if (l->answer) {
    th_response_t none;
    response_empty(&none);
    const slot_t *was = l->reporting;
    l->reporting = s;
    l->answer(s->n, r ? r : &none, l->arg);
    l->reporting = was;
    th_response_free(&none);
  }
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* Opens s's connection. Returns false if it was refused at once. */
static bool slot_connect(slot_t *s) {
  th_load_t *l = s->l;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(l->port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  s->conn = l->nconns++;
  /* connect() here rather than in bufferevent_socket_connect(), so a
     refusal is known for certain rather than guessed from errno. */
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  if (rc != 0 && errno != EINPROGRESS) {
    close(fd);
    return false;
  }
  s->bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
  assert_non_null(s->bev);
  bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
  s->connected = rc == 0;
  if (!s->connected) /* reports BEV_EVENT_CONNECTED or an error */
    assert_int_equal(bufferevent_socket_connect(s->bev, NULL, 0), 0);
  bufferevent_enable(s->bev, EV_READ | EV_WRITE);
  return true;
}

/* Sends the next request on s, if any is left. */
static void slot_next(slot_t *s) {
  th_load_t *l = s->l;
  while (!s->busy && !l->exhausted && l->stats.started < l->total) {
    th_request_t req;
    memset(&req, 0, sizeof(req));
    if (!l->next(l->stats.started, &req, l->arg)) {
      l->exhausted = true;
      break;
    }
    s->n = l->stats.started++;
    s->busy = true;
    l->nbusy++;
    if (!s->bev && !slot_connect(s)) {
      slot_end(s, NULL, &l->stats.refused); /* then try the next one */
      continue;
    }
    write_request(bufferevent_get_output(s->bev), l->port, &req);
    if (s->connected)
      l->stats.sent++;
  }
}

static void on_read(struct bufferevent *bev, void *arg) {
  slot_t *s = arg;
  th_load_t *l = s->l;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t len = evbuffer_get_length(in);
  th_response_t r;
  ssize_t used =
      parse_response((const char *)evbuffer_pullup(in, -1), len, false, &r);
  if (used == 0)
    return;
  if (used < 0 || !s->busy) {
    /* Garbage, or an answer to nothing: this connection is done for. */
    if (used > 0)
      th_response_free(&r);
    slot_close(s);
    if (s->busy) {
      slot_end(s, NULL, &l->stats.lost);
      slot_next(s);
    }
    return;
  }
  evbuffer_drain(in, (size_t)used);
  bool close_after = wants_close(&r);
  slot_end(s, &r, &l->stats.answered);
  th_response_free(&r);
  if (close_after)
    slot_close(s);
  slot_next(s);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  slot_t *s = arg;
  th_load_t *l = s->l;
  if (what & BEV_EVENT_CONNECTED) {
    s->connected = true;
    if (s->busy)
      l->stats.sent++;
    return;
  }
  /* EOF or an error. A body that runs to the end of the connection is
     complete now. */
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t len = evbuffer_get_length(in);
  th_response_t r;
  ssize_t used =
      s->busy && len > 0
          ? parse_response((const char *)evbuffer_pullup(in, -1), len, true, &r)
          : -1;
  bool was_connected = s->connected;
  slot_close(s);
  if (!s->busy)
    return;
  if (used > 0) {
    slot_end(s, &r, &l->stats.answered);
    th_response_free(&r);
  } else {
    slot_end(s, NULL, was_connected ? &l->stats.lost : &l->stats.refused);
  }
  slot_next(s);
}

static void on_kick(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  th_load_t *l = arg;
  l->kicked = true;
  for (unsigned i = 0; i < l->nslots; i++)
    slot_next(&l->slots[i]);
}

th_load_t *th_load_start(struct event_base *base, uint16_t port,
                         unsigned concurrency, size_t total,
                         th_load_next_cb next, th_load_answer_cb answer,
                         void *arg) {
  assert_true(concurrency > 0);
  th_load_t *l = calloc(1, sizeof(*l));
  assert_non_null(l);
  l->slots = calloc(concurrency, sizeof(*l->slots));
  assert_non_null(l->slots);
  l->base = base;
  l->port = port;
  l->total = total;
  l->next = next;
  l->answer = answer;
  l->arg = arg;
  l->nslots = concurrency;
  for (unsigned i = 0; i < concurrency; i++)
    l->slots[i].l = l;
  l->kick = event_new(base, -1, 0, on_kick, l);
  assert_non_null(l->kick);
  event_active(l->kick, EV_TIMEOUT, 1);
  return l;
}

bool th_load_is_done(const th_load_t *l) {
  return l->kicked && (l->exhausted || l->stats.started >= l->total) &&
         l->nbusy == 0;
}

const th_load_stats_t *th_load_stats(const th_load_t *l) {
  return &l->stats;
}

size_t th_load_connection(const th_load_t *l) {
  if (!l->reporting)
    fail_msg("th_load_connection() called outside a th_load_answer_cb");
  return l->reporting->conn;
}

bool th_load_run(th_load_t *l, double timeout_s) {
  call_t c = {.r = NULL};
  struct event *timer = evtimer_new(l->base, on_call_timeout, &c);
  assert_non_null(timer);
  struct timeval tv = {
      (time_t)timeout_s,
      (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
  evtimer_add(timer, &tv);
  while (!th_load_is_done(l) && !c.timed_out)
    event_base_loop(l->base, EVLOOP_ONCE);
  event_free(timer);
  return th_load_is_done(l);
}

void th_load_free(th_load_t *l) {
  if (!l)
    return;
  for (unsigned i = 0; i < l->nslots; i++)
    slot_close(&l->slots[i]);
  event_free(l->kick);
  free(l->slots);
  free(l);
}

/* ---- raw sockets -----------------------------------------------------------
 */

int th_raw_connect(uint16_t port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

bool th_raw_send(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int th_raw_read_response(int fd, double timeout_s, th_response_t *r) {
  double deadline = now_s() + timeout_s;
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  assert_non_null(buf);
  int rc = -1;
  for (;;) {
    double left = deadline - now_s();
    if (left <= 0)
      break;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ready = poll(&pfd, 1, (int)(left * 1000) + 1);
    if (ready < 0 && errno != EINTR)
      break;
    if (ready <= 0)
      continue; /* the deadline check ends the wait */
    if (len == cap) {
      cap *= 2;
      char *bigger = realloc(buf, cap);
      assert_non_null(bigger);
      buf = bigger;
    }
    ssize_t n = recv(fd, buf + len, cap - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    bool eof = n <= 0; /* closed, or reset */
    if (n > 0)
      len += (size_t)n;
    ssize_t used = parse_response(buf, len, eof, r);
    if (used > 0) {
      free(buf);
      return 0;
    }
    if (used < 0 || eof) {
      /* Garbage is an error; an answer cut off is no answer. */
      rc = used < 0 ? -1 : 0;
      break;
    }
  }
  free(buf);
  response_empty(r);
  return rc;
}

int th_raw_http(uint16_t port, const void *request, size_t len,
                double timeout_s, th_response_t *r) {
  int fd = th_raw_connect(port);
  if (fd < 0) {
    response_empty(r);
    return 0;
  }
  int rc;
  if (th_raw_send(fd, request, len)) {
    rc = th_raw_read_response(fd, timeout_s, r);
  } else {
    /* The server may have answered and closed before taking it all. */
    rc = th_raw_read_response(fd, 1.0, r);
  }
  close(fd);
  return rc;
}

int th_raw_http_on(struct event_base *base, uint16_t port, const void *request,
                   size_t len, double timeout_s, th_response_t *r) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  memset(r, 0, sizeof(*r));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
                 errno != EINPROGRESS)) {
    if (fd >= 0)
      close(fd);
    response_empty(r);
    return 0;
  }
  double deadline = now_s() + timeout_s;
  size_t sent = 0, got = 0, cap = 4096;
  char *buf = malloc(cap);
  assert_non_null(buf);
  int rc = -1; /* a timeout, unless an answer or the end comes first */
  bool answered = false;
  while (now_s() < deadline) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    bool progress = false;
    if (sent < len) {
      ssize_t n =
          send(fd, (const char *)request + sent, len - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += (size_t)n;
        progress = true;
      } else if (n < 0 && errno != EAGAIN && errno != EINPROGRESS &&
                 errno != ENOTCONN) {
        sent = len; /* the server hung up: read what it said */
      }
    }
    if (got == cap) {
      cap *= 2;
      char *bigger = realloc(buf, cap);
      assert_non_null(bigger);
      buf = bigger;
    }
    ssize_t n = recv(fd, buf + got, cap - got, 0);
    bool eof = n == 0 || (n < 0 && errno != EAGAIN && errno != ENOTCONN &&
                          errno != EINTR);
    if (n > 0) {
      got += (size_t)n;
      progress = true;
    }
    if (n > 0 || eof) {
      ssize_t used = parse_response(buf, got, eof, r);
      if (used > 0) {
        rc = 0;
        answered = true;
        break;
      }
      if (used < 0 || eof) { /* garbage; or cut off: no answer */
        rc = used < 0 ? -1 : 0;
        break;
      }
    }
    if (!progress) {
      struct timespec pause = {0, 200000};
      nanosleep(&pause, NULL);
    }
  }
  if (!answered)
    response_empty(r);
  free(buf);
  close(fd);
  return rc;
}

uint16_t th_evhttp_listen_local(struct evhttp *http) {
  struct evhttp_bound_socket *bs =
      evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
  assert_non_null(bs);
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  assert_int_equal(
      getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &len),
      0);
  return ntohs(sa.sin_port);
}
