/*
 * test_docs.c — the replies and log lines that the docs show, checked
 * against a live tpool-server, so that the docs cannot drift from it.
 *
 *   test_docs FILE.md...
 *
 * Each file that holds a marker gets a server of its own, started in a
 * private directory with the shipped config.ini (on a free port, with
 * verbose logging on), and its markers are replayed in order. A marker is
 * an HTML comment alone on its line; those followed by a block take the
 * next fenced block:
 *
 *   <!-- check: METHOD PATH [BODY] -->  + block: the reply (see below)
 *   <!-- check: METHOD PATH | KEY... --> + block: only those members of
 *                                         the reply's object ("| .KEY":
 *                                         that member's value)
 *   <!-- check-lines: METHOD PATH -->   + block: each line is a line of
 *                                         the reply's (text) body
 *   <!-- check: log -->                 + block: each line is a line of
 *                                         the server's log
 *   <!-- run: METHOD PATH [BODY] -->    sent; its reply is read later
 *   <!-- reply[: N] -->                 + block: the reply of the oldest
 *                                         (N-th oldest) `run` not yet read
 *   <!-- send: METHOD PATH [BODY] -->   sent; its reply is awaited, unread
 *   <!-- header: NAME: VALUE -->        sent with every later request
 *                                         ("NAME:" alone stops sending it)
 *   <!-- config: [SECTION] KEY = VALUE --> written into the config file,
 *                                         for the next start or reload
 *   <!-- signal: HUP -->, <!-- signal: TERM -->  HUP waits for the reload
 *                                         to be logged, TERM for exit 0
 *   <!-- start -->, <!-- restart -->    a server on the file as it is now
 *                                         (restart: SIGTERM first)
 *   <!-- wait: SECONDS -->
 *
 * A reply block is JSON (the body), or HTTP: a status line, the headers
 * that must be there, a blank line and the body. A JSON body matches when
 * it has the same object keys at every level (none missing, none extra),
 * the same JSON types, equal booleans, and equal strings but for numbers
 * in them; numbers may differ.
 * An array matches element by element when both have the same length;
 * otherwise every live element must match the doc's first one, and an
 * empty doc array means an empty live one. A status line and a header
 * match with any number in place of each number (Content-Length,
 * Retry-After). A GET is asked again for up to RETRY_S until it matches
 * (a task sent by an earlier `run` may take a moment to start); other
 * methods are sent once. A line of a log or text block matches a line of
 * the log or body with any number in place of each number, and any run of
 * blanks for a run of blanks (the status table pads its columns); the
 * logs of every server the file started are searched, for up to RETRY_S.
 */
#include "server_harness.h"

#include <errno.h>
#include <poll.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define RETRY_S 10.0
#define RUNS_MAX 32
#define HEADERS_MAX 8

/* ---- reading a docs file --------------------------------------------------- */

typedef enum {
  MARK_CHECK,
  MARK_LINES,
  MARK_LOG,
  MARK_RUN,
  MARK_REPLY,
  MARK_SEND,
  MARK_HEADER,
  MARK_CONFIG,
  MARK_SIGNAL,
  MARK_START,
  MARK_RESTART,
  MARK_WAIT
} mark_kind_t;

static const struct {
  const char *word;
  mark_kind_t kind;
  bool block; /* takes the next fenced block */
} kinds[] = {
    {"check", MARK_CHECK, true},     {"check-lines", MARK_LINES, true},
    {"run", MARK_RUN, false},        {"reply", MARK_REPLY, true},
    {"send", MARK_SEND, false},      {"header", MARK_HEADER, false},
    {"config", MARK_CONFIG, false},  {"signal", MARK_SIGNAL, false},
    {"start", MARK_START, false},    {"restart", MARK_RESTART, false},
    {"wait", MARK_WAIT, false},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

typedef struct mark {
  mark_kind_t kind;
  int line;       /* of the marker, for messages */
  char args[1400]; /* what follows "NAME:" */
  char *block;     /* the fenced block's text; malloc'd */
} mark_t;

typedef struct doc {
  const char *file;
  mark_t *marks;
  size_t n;
} doc_t;

static char *read_all(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    fail_msg("cannot open %s", path);
  char *text = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = (len + 4096 + 1) * 2;
      text = realloc(text, cap);
      assert_non_null(text);
    }
    size_t n = fread(text + len, 1, 4096, f);
    len += n;
    if (n == 0)
      break;
  }
  fclose(f);
  text[len] = '\0';
  return text;
}

/* Parses a marker line into *m; false if the line is not one. */
static bool parse_marker(const char *s, int line, const char *file,
                         mark_t *m) {
  if (strncmp(s, "<!-- ", 5) != 0)
    return false;
  const char *name = s + 5;
  size_t n = strcspn(name, ": ");
  size_t k = 0;
  while (k < NKINDS &&
         (strlen(kinds[k].word) != n || strncmp(kinds[k].word, name, n) != 0))
    k++;
  if (k == NKINDS)
    return false; /* another comment */
  const char *end = strstr(name, " -->");
  if (!end || end[4] != '\0')
    fail_msg("%s:%d: a marker ends with \" -->\" at the end of its line", file,
             line);
  const char *args = name + n;
  if (*args == ':')
    args++;
  args += strspn(args, " ");
  size_t len = args < end ? (size_t)(end - args) : 0;
  if (len >= sizeof(m->args))
    fail_msg("%s:%d: marker too long", file, line);
  memcpy(m->args, args, len);
  m->args[len] = '\0';
  m->kind = kinds[k].kind;
  if (m->kind == MARK_CHECK && strcmp(m->args, "log") == 0)
    m->kind = MARK_LOG;
  m->line = line;
  return true;
}

static bool takes_block(mark_kind_t kind) {
  if (kind == MARK_LOG)
    return true;
  for (size_t k = 0; k < NKINDS; k++)
    if (kinds[k].kind == kind)
      return kinds[k].block;
  return false;
}

/* The markers of `file`, each with the fenced block that follows it. */
static void doc_read(const char *file, doc_t *d) {
  char *text = read_all(file);
  d->file = file;
  d->marks = NULL;
  d->n = 0;
  size_t pending = SIZE_MAX; /* the marker waiting for its block */
  char *block = NULL;        /* inside a fence: its text so far */
  size_t blen = 0;
  int lineno = 0;
  for (char *line = text; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    lineno++;
    if (block) {
      if (strncmp(line, "```", 3) == 0) {
        d->marks[pending].block = block;
        pending = SIZE_MAX;
        block = NULL;
      } else {
        size_t n = strlen(line);
        block = realloc(block, blen + n + 2);
        assert_non_null(block);
        memcpy(block + blen, line, n);
        blen += n;
        block[blen++] = '\n';
        block[blen] = '\0';
      }
    } else if (pending != SIZE_MAX && strncmp(line, "```", 3) == 0) {
      block = calloc(1, 1);
      assert_non_null(block);
      blen = 0;
    } else {
      mark_t m = {0};
      if (parse_marker(line, lineno, file, &m)) {
        if (pending != SIZE_MAX)
          fail_msg("%s:%d: the marker at line %d has no block after it",
                   file, lineno, d->marks[pending].line);
        d->marks = realloc(d->marks, (d->n + 1) * sizeof(*d->marks));
        assert_non_null(d->marks);
        d->marks[d->n] = m;
        if (takes_block(m.kind))
          pending = d->n;
        d->n++;
      } else if (pending != SIZE_MAX && *line) {
        fail_msg("%s:%d: expected the fenced block of the marker at line %d",
                 file, lineno, d->marks[pending].line);
      }
    }
    line = nl ? nl + 1 : NULL;
  }
  if (pending != SIZE_MAX || block)
    fail_msg("%s: the marker at line %d has no complete block", file,
             pending != SIZE_MAX ? d->marks[pending].line : 0);
  free(text);
}

static void doc_free(doc_t *d) {
  for (size_t i = 0; i < d->n; i++)
    free(d->marks[i].block);
  free(d->marks);
}

/* ---- matching -------------------------------------------------------------- */

/* A doc line as a regular expression: numbers match any number, a run of
   blanks any run of blanks, everything else itself. */
static void line_pattern(const char *line, char *out, size_t size) {
  size_t o = 0;
  out[o++] = '^';
  for (const char *c = line; *c && o + 32 < size;) {
    if (*c >= '0' && *c <= '9') {
      c += strspn(c, "0123456789");
      if (c[0] == '.' && c[1] >= '0' && c[1] <= '9') {
        c++;
        c += strspn(c, "0123456789");
      }
      o += (size_t)snprintf(out + o, size - o, "[0-9]+(\\.[0-9]+)?");
    } else if (*c == ' ') {
      c += strspn(c, " ");
      o += (size_t)snprintf(out + o, size - o, " *");
    } else {
      if (strchr(".[]()*+?{}|^$\\", *c))
        out[o++] = '\\';
      out[o++] = *c++;
    }
  }
  out[o++] = '$';
  out[o] = '\0';
}

/* Compiles the pattern of doc line `want` into *re. */
static void line_compile(const char *want, regex_t *re) {
  char pattern[4096];
  line_pattern(want, pattern, sizeof(pattern));
  if (regcomp(re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
    fail_msg("cannot make a pattern of \"%s\"", want);
}

static bool line_matches(const char *want, const char *got) {
  regex_t re;
  line_compile(want, &re);
  bool ok = regexec(&re, got, 0, NULL, 0) == 0;
  regfree(&re);
  return ok;
}

/* True if some line of `text` matches the doc line `want`. */
static bool has_line(const char *text, const char *want) {
  regex_t re;
  line_compile(want, &re); /* once, not per line of a long log */
  bool found = false;
  char line[8192];
  for (const char *p = text; *p && !found;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    if (n < sizeof(line)) {
      memcpy(line, p, n);
      line[n] = '\0';
      if (n > 0 && line[n - 1] == '\r')
        line[n - 1] = '\0';
      found = regexec(&re, line, 0, NULL, 0) == 0;
    }
    p += n + (nl != NULL);
  }
  regfree(&re);
  return found;
}

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
    break;
  }
  return "null";
}

/* True if live has the shape of doc (see the top); else false, with where
   and why in msg. */
static bool same_shape(const json_t *doc, const json_t *live, const char *at,
                       char *msg, size_t size) {
  if (strcmp(type_name(doc), type_name(live)) != 0) {
    snprintf(msg, size, "%s: the docs show %s, the server sent %s", at,
             type_name(doc), type_name(live));
    return false;
  }
  char sub[512];
  const char *key;
  const json_t *v;
  size_t nd = json_array_size(doc), nl = json_array_size(live);
  switch (json_typeof(doc)) {
  case JSON_OBJECT:
    json_object_foreach((json_t *)doc, key, v) {
      snprintf(sub, sizeof(sub), "%s.%s", at, key);
      const json_t *w = json_object_get(live, key);
      if (!w) {
        snprintf(msg, size, "%s: in the docs, not sent by the server", sub);
        return false;
      }
      if (!same_shape(v, w, sub, msg, size))
        return false;
    }
    json_object_foreach((json_t *)live, key, v) {
      if (!json_object_get(doc, key)) {
        snprintf(msg, size, "%s.%s: sent by the server, missing in the docs",
                 at, key);
        return false;
      }
    }
    return true;
  case JSON_ARRAY:
    if (nd == 0 || nl == 0) {
      if (nd == nl)
        return true;
      snprintf(msg, size, "%s: the docs show %zu elements, the server sent %zu",
               at, nd, nl);
      return false;
    }
    for (size_t i = 0; i < nl; i++) {
      snprintf(sub, sizeof(sub), "%s[%zu]", at, i);
      if (!same_shape(json_array_get(doc, nd == nl ? i : 0),
                      json_array_get(live, i), sub, msg, size))
        return false;
    }
    return true;
  case JSON_STRING: /* any number in place of each number ("task #23") */
    if (line_matches(json_string_value(doc), json_string_value(live)))
      return true;
    snprintf(msg, size, "%s: the docs show \"%s\", the server sent \"%s\"", at,
             json_string_value(doc), json_string_value(live));
    return false;
  case JSON_TRUE:
  case JSON_FALSE:
    if (json_typeof(doc) == json_typeof(live))
      return true;
    snprintf(msg, size, "%s: the docs show %s, the server sent %s", at,
             json_is_true(doc) ? "true" : "false",
             json_is_true(live) ? "true" : "false");
    return false;
  default:
    return true; /* numbers and null */
  }
}

/* ---- talking to the server -------------------------------------------------- */

typedef struct reply {
  char *raw;         /* the whole response as read; malloc'd */
  int status;        /* 0 if none came */
  char *head;        /* status line and headers (points into raw) */
  const char *body;  /* points into raw */
} reply_t;

typedef struct run {
  const doc_t *doc;
  fixture_t *fx;
  char config_path[256]; /* where this file's config is written */
  char *config;          /* its text; malloc'd */
  server_t *server;      /* NULL while none runs */
  char *headers[HEADERS_MAX];
  size_t nheaders;
  int fds[RUNS_MAX]; /* `run` requests whose reply is not read yet */
  size_t nfds;
} run_t;

/* Reads a response until the server closes the connection. */
static void read_reply(int fd, reply_t *r) {
  size_t cap = 8192, len = 0;
  r->raw = malloc(cap);
  assert_non_null(r->raw);
  struct timespec since;
  th_now(&since);
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap *= 2;
      r->raw = realloc(r->raw, cap);
      assert_non_null(r->raw);
    }
    struct pollfd p = {fd, POLLIN, 0};
    int ready = poll(&p, 1, 100);
    if (ready == 0) {
      if (th_elapsed(&since) > WAIT_S)
        break;
      continue;
    }
    ssize_t n = read(fd, r->raw + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  r->raw[len] = '\0';
  r->status = 0;
  r->head = r->raw;
  char *split = strstr(r->raw, "\r\n\r\n");
  r->body = split ? split + 4 : "";
  if (split)
    *split = '\0';
  sscanf(r->raw, "HTTP/1.%*d %d", &r->status);
}

/* Opens a connection and sends a request that closes it once answered. */
static int send_request(run_t *r, const char *method, const char *path,
                        const char *body) {
  if (!r->server || r->server->reaped)
    fail_msg("%s: a request, but no server runs (start it first)",
             r->doc->file);
  char req[4096];
  size_t blen = strlen(body);
  int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     "Connection: close\r\n",
                   method, path);
  for (size_t i = 0; i < r->nheaders; i++)
    n += snprintf(req + n, sizeof(req) - (size_t)n, "%s\r\n", r->headers[i]);
  if (blen > 0 || strcmp(method, "POST") == 0)
    n += snprintf(req + n, sizeof(req) - (size_t)n,
                  "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                  blen);
  n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n%s", body);
  assert_true(n > 0 && (size_t)n < sizeof(req));
  int fd = th_raw_connect(r->server->port);
  if (fd < 0 || !th_raw_send(fd, req, (size_t)n))
    fail_msg("%s: could not send %s %s", r->doc->file, method, path);
  return fd;
}

/* Splits "METHOD PATH [BODY]" (and, for checks, " | SELECT"). */
static void request_args(const run_t *r, const mark_t *m, char *method,
                         char *path, char **body, char **select) {
  char *args = (char *)m->args;
  *select = NULL;
  char *bar = strstr(args, " | ");
  if (bar) {
    *bar = '\0';
    *select = bar + 3;
  }
  int off = 0;
  if (sscanf(args, "%15s %1023s %n", method, path, &off) < 2)
    fail_msg("%s:%d: expected METHOD PATH [BODY]", r->doc->file, m->line);
  *body = args + off;
}

static void exchange(run_t *r, const char *method, const char *path,
                     const char *body, reply_t *out) {
  int fd = send_request(r, method, path, body);
  read_reply(fd, out);
  close(fd);
}

/* ---- comparing a reply ------------------------------------------------------ */

/* Keeps only the members `select` names ("a b c"), or the value of one
   (".a"). Returns a new reference. */
static json_t *project(json_t *got, const char *select) {
  if (!select)
    return json_incref(got);
  if (select[0] == '.')
    return json_incref(json_object_get(got, select + 1));
  json_t *o = json_object();
  char copy[512];
  snprintf(copy, sizeof(copy), "%s", select);
  for (char *save = NULL, *k = strtok_r(copy, " ", &save); k;
       k = strtok_r(NULL, " ", &save)) {
    json_t *v = json_object_get(got, k);
    if (v)
      json_object_set(o, k, v);
  }
  return o;
}

/* True if the reply matches the doc's block (JSON, or HTTP with a JSON
   body); else false with why in msg. */
static bool reply_matches(const reply_t *got, const char *block,
                          const char *select, char *msg, size_t size) {
  const char *want_body = block;
  if (strncmp(block, "HTTP/", 5) == 0) {
    /* The status line, then each header the docs show. */
    const char *end = strstr(block, "\n\n");
    want_body = end ? end + 2 : "";
    char head[4096];
    size_t n = end ? (size_t)(end - block) : strlen(block);
    assert_true(n < sizeof(head));
    memcpy(head, block, n);
    head[n] = '\0';
    char *save = NULL;
    char *status = strtok_r(head, "\n", &save);
    size_t slen = strcspn(got->head, "\r\n");
    if (!status || strlen(status) != slen ||
        strncmp(status, got->head, slen) != 0) {
      snprintf(msg, size, "the docs show \"%s\", the server sent \"%.*s\"",
               status ? status : "", (int)slen, got->head);
      return false;
    }
    for (char *line = strtok_r(NULL, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
      if (!has_line(got->head, line)) {
        snprintf(msg, size, "no \"%s\" in the reply's head:\n%s", line,
                 got->head);
        return false;
      }
    }
  }
  if (!*want_body)
    return true;
  json_error_t jerr;
  json_t *want = json_loads(want_body, 0, &jerr);
  if (!want) {
    snprintf(msg, size, "the docs' body is not JSON (line %d: %s)", jerr.line,
             jerr.text);
    return false;
  }
  json_t *live = json_loads(got->body, 0, NULL);
  bool ok = false;
  if (!live) {
    snprintf(msg, size, "the reply (%d) is not JSON: %s", got->status,
             got->body);
  } else {
    json_t *part = project(live, select);
    ok = part && same_shape(want, part, "$", msg, size);
    if (!part)
      snprintf(msg, size, "the reply has no %s", select);
    json_decref(part);
  }
  json_decref(live);
  json_decref(want);
  return ok;
}

static void fail_reply(const run_t *r, const mark_t *m, const reply_t *got,
                       const char *msg) {
  print_message("%s:%d: the server answered %d:\n%s\n\n%s\n", r->doc->file,
                m->line, got->status, got->head, got->body);
  fail_msg("%s:%d: %s", r->doc->file, m->line, msg);
}

/* TPOOL_DOCS_SHOW=1 prints every reply the docs are checked against, for
   whoever writes an example. */
static void show(const run_t *r, const mark_t *m, const reply_t *got) {
  const char *want = getenv("TPOOL_DOCS_SHOW");
  if (want && *want == '1')
    printf("%s:%d: %s\n%s\n", r->doc->file, m->line, got->head, got->body);
}

static void do_check(run_t *r, const mark_t *m) {
  char method[16], path[1024], *body, *select;
  request_args(r, m, method, path, &body, &select);
  bool idempotent = strcmp(method, "GET") == 0;
  struct timespec since;
  th_now(&since);
  char msg[2048];
  for (;;) {
    reply_t got;
    exchange(r, method, path, body, &got);
    bool ok = reply_matches(&got, m->block, select, msg, sizeof(msg));
    if (ok)
      show(r, m, &got);
    if (!ok && (!idempotent || th_elapsed(&since) >= RETRY_S))
      fail_reply(r, m, &got, msg);
    free(got.raw);
    if (ok)
      return;
    nap_ms(100);
  }
}

static void do_lines(run_t *r, const mark_t *m) {
  char method[16], path[1024], *body, *select;
  request_args(r, m, method, path, &body, &select);
  reply_t got;
  exchange(r, method, path, body, &got);
  char *lines = strdup(m->block);
  assert_non_null(lines);
  for (char *save = NULL, *line = strtok_r(lines, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    if (!has_line(got.body, line)) {
      char msg[1024];
      snprintf(msg, sizeof(msg), "no line like \"%s\" in the reply", line);
      fail_reply(r, m, &got, msg);
    }
  }
  free(lines);
  free(got.raw);
}

static void do_reply(run_t *r, const mark_t *m) {
  /* "reply: N": the N-th oldest unread (default 1); those before it stay
     unread. */
  size_t nth = m->args[0] ? (size_t)strtoul(m->args, NULL, 10) : 1;
  size_t at = nth - 1;
  if (nth == 0 || at >= r->nfds)
    fail_msg("%s:%d: a reply, but no such `run` waits for one", r->doc->file,
             m->line);
  int fd = r->fds[at];
  memmove(&r->fds[at], &r->fds[at + 1], (r->nfds - at - 1) * sizeof(int));
  r->nfds--;
  reply_t got;
  read_reply(fd, &got);
  close(fd);
  show(r, m, &got);
  char msg[2048];
  if (!reply_matches(&got, m->block, NULL, msg, sizeof(msg)))
    fail_reply(r, m, &got, msg);
  free(got.raw);
}

static void do_log(run_t *r, const mark_t *m) {
  if (!r->server)
    fail_msg("%s:%d: a log check, but no server ran", r->doc->file, m->line);
  char *lines = strdup(m->block);
  assert_non_null(lines);
  for (char *save = NULL, *line = strtok_r(lines, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    struct timespec since;
    th_now(&since);
    bool seen;
    for (;;) { /* the logs of every server this file started */
      seen = false;
      for (size_t i = 0; !seen && i < r->fx->nservers; i++) {
        char *log = log_copy(r->fx->servers[i]);
        seen = has_line(log, line);
        free(log);
      }
      if (seen || th_elapsed(&since) >= RETRY_S)
        break;
      nap_ms(100);
    }
    if (!seen) {
      print_log(r->server);
      fail_msg("%s (block of line %d): no log line like \"%s\"", r->doc->file,
               m->line, line);
    }
  }
  free(lines);
}

/* ---- the server and its config ----------------------------------------------- */

/* Sets `key = value` in [section] of the config text (adds the key, or
   the section and the key, where missing). */
static void config_set(run_t *r, const mark_t *m) {
  char section[128], key[128], value[512];
  if (sscanf(m->args, "[%127[^]]] %127[^= ] = %511[^\n]", section, key,
             value) != 3)
    fail_msg("%s:%d: expected [SECTION] KEY = VALUE", r->doc->file, m->line);
  size_t cap = strlen(r->config) + strlen(section) + strlen(key) +
               strlen(value) + 64;
  char *out = malloc(cap);
  assert_non_null(out);
  size_t o = 0;
  bool in = false, done = false;
  char *text = r->config;
  for (char *line = text; *line;) {
    char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
    bool header = line[0] == '[';
    if (header && in && !done) { /* the section ends: add the key */
      o += (size_t)snprintf(out + o, cap - o, "%s = %s\n", key, value);
      done = true;
    }
    if (header) {
      char name[128];
      in = sscanf(line, "[%127[^]]]", name) == 1 && strcmp(name, section) == 0;
    }
    size_t klen = strlen(key);
    if (in && !done && strncmp(line, key, klen) == 0 &&
        (line[klen] == ' ' || line[klen] == '=')) {
      o += (size_t)snprintf(out + o, cap - o, "%s = %s\n", key, value);
      done = true;
    } else {
      memcpy(out + o, line, n);
      o += n;
    }
    line += n;
  }
  if (!done && in)
    o += (size_t)snprintf(out + o, cap - o, "%s = %s\n", key, value);
  else if (!done)
    o += (size_t)snprintf(out + o, cap - o, "\n[%s]\n%s = %s\n", section, key,
                          value);
  out[o] = '\0';
  free(r->config);
  r->config = out;
  write_file(r->config_path, r->config);
}

/* The shipped config.ini, on a free port, with verbose logging. */
static void config_init(run_t *r) {
  const char *root = getenv("TPOOL_SOURCE_ROOT");
  assert_non_null(root);
  char path[512];
  snprintf(path, sizeof(path), "%s/config.ini", root);
  r->config = read_all(path);
  snprintf(r->config_path, sizeof(r->config_path), "%s/config.ini",
           r->fx->dir);
  mark_t m = {.line = 0};
  snprintf(m.args, sizeof(m.args), "[http] listen = 127.0.0.1:0");
  config_set(r, &m);
  snprintf(m.args, sizeof(m.args), "[general] verbose = true");
  config_set(r, &m);
  /* Started in its directory with a relative path, as a user starts it:
     its messages name "config.ini", as the docs show. */
  snprintf(r->fx->config, sizeof(r->fx->config), "config.ini");
}

static void stop(run_t *r) {
  if (r->server)
    server_stop_ok(r->server);
}

static void start(run_t *r) {
  if (r->server && !r->server->reaped && !server_wait_exit(r->server, 0))
    fail_msg("%s: start, but a server still runs", r->doc->file);
  /* Replies of the last server that nobody read: no `reply` can ask for
     them any more. */
  for (size_t i = 0; i < r->nfds; i++)
    close(r->fds[i]);
  r->nfds = 0;
  r->server = server_start(r->fx);
}

static void do_signal(run_t *r, const mark_t *m) {
  if (!r->server)
    fail_msg("%s:%d: a signal, but no server runs", r->doc->file, m->line);
  if (strcmp(m->args, "HUP") == 0) {
    /* Waits for the reload's outcome, so later requests see it. */
    static const char *const outcomes[] = {
        "ThreadPoolManager Configuration reloaded",
        "Server Config reload failed"};
    size_t before = log_count(r->server, outcomes[0]) +
                    log_count(r->server, outcomes[1]);
    assert_int_equal(kill(r->server->pid, SIGHUP), 0);
    struct timespec since;
    th_now(&since);
    while (log_count(r->server, outcomes[0]) +
               log_count(r->server, outcomes[1]) ==
           before) {
      if (th_elapsed(&since) > WAIT_S) {
        print_log(r->server);
        fail_msg("%s:%d: the server logged no reload", r->doc->file, m->line);
      }
      nap_ms(10);
    }
  } else if (strcmp(m->args, "TERM") == 0)
    stop(r);
  else
    fail_msg("%s:%d: expected HUP or TERM", r->doc->file, m->line);
}

static void do_header(run_t *r, const mark_t *m) {
  const char *colon = strchr(m->args, ':');
  if (!colon)
    fail_msg("%s:%d: expected NAME: VALUE", r->doc->file, m->line);
  size_t nlen = (size_t)(colon - m->args);
  for (size_t i = 0; i < r->nheaders; i++) {
    if (strncmp(r->headers[i], m->args, nlen + 1) == 0) {
      free(r->headers[i]);
      r->headers[i--] = r->headers[--r->nheaders];
    }
  }
  if (colon[1 + strspn(colon + 1, " ")] == '\0')
    return; /* "NAME:" alone: no longer sent */
  assert_true(r->nheaders < HEADERS_MAX);
  r->headers[r->nheaders] = strdup(m->args);
  assert_non_null(r->headers[r->nheaders++]);
}

/* ---- one file ----------------------------------------------------------------- */

typedef struct doc_state {
  const char *file;
  fixture_t *fx;
} doc_state_t;

static int doc_setup(void **state) {
  doc_state_t *ds = *state;
  void *fx = NULL;
  setup(&fx);
  ds->fx = fx;
  return 0;
}

static int doc_teardown(void **state) {
  doc_state_t *ds = *state;
  void *fx = ds->fx;
  teardown(&fx);
  ds->fx = NULL;
  return 0;
}

static void check_doc(void **state) {
  doc_state_t *ds = *state;
  doc_t d;
  doc_read(ds->file, &d);
  if (d.n == 0) {
    print_message("%s: no marked examples\n", ds->file);
    doc_free(&d);
    return;
  }
  run_t r = {.doc = &d, .fx = ds->fx};
  config_init(&r);
  start(&r);
  size_t checked = 0;
  for (size_t i = 0; i < d.n; i++) {
    const mark_t *m = &d.marks[i];
    char method[16], path[1024], *body, *select;
    switch (m->kind) {
    case MARK_CHECK:
      do_check(&r, m);
      break;
    case MARK_LINES:
      do_lines(&r, m);
      break;
    case MARK_LOG:
      do_log(&r, m);
      break;
    case MARK_RUN:
      request_args(&r, m, method, path, &body, &select);
      assert_true(r.nfds < RUNS_MAX);
      r.fds[r.nfds++] = send_request(&r, method, path, body);
      break;
    case MARK_REPLY:
      do_reply(&r, m);
      break;
    case MARK_SEND: {
      request_args(&r, m, method, path, &body, &select);
      reply_t got;
      exchange(&r, method, path, body, &got);
      if (got.status == 0)
        fail_msg("%s:%d: no reply", d.file, m->line);
      free(got.raw);
      break;
    }
    case MARK_HEADER:
      do_header(&r, m);
      break;
    case MARK_CONFIG:
      config_set(&r, m);
      break;
    case MARK_SIGNAL:
      do_signal(&r, m);
      break;
    case MARK_START:
      start(&r);
      break;
    case MARK_RESTART:
      stop(&r);
      start(&r);
      break;
    case MARK_WAIT:
      nap_ms((long)(atof(m->args) * 1000));
      break;
    }
    checked += takes_block(m->kind);
  }
  print_message("%s: %zu examples match the live server\n", ds->file,
                checked);
  for (size_t i = 0; i < r.nfds; i++)
    close(r.fds[i]);
  if (r.server && !r.server->reaped && !server_wait_exit(r.server, 0))
    server_stop_ok(r.server);
  for (size_t i = 0; i < r.nheaders; i++)
    free(r.headers[i]);
  free(r.config);
  doc_free(&d);
}

/* ---- main ---------------------------------------------------------------- */

/* How many check markers `path` holds; -1 if it cannot be read. */
static long count_checks(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long n = 0;
  char line[4096];
  while (fgets(line, sizeof(line), f))
    n += strncmp(line, "<!-- check", 10) == 0 ||
         strncmp(line, "<!-- reply", 10) == 0;
  fclose(f);
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_docs FILE.md...\n");
    return 2;
  }
  /* Docs that lost every marker would pass here unchecked. */
  long total = 0;
  for (int i = 1; i < argc; i++) {
    long n = count_checks(argv[i]);
    if (n < 0) {
      fprintf(stderr, "test_docs: cannot read %s\n", argv[i]);
      return 1;
    }
    total += n;
  }
  if (total == 0) {
    fprintf(stderr, "test_docs: no <!-- check: --> marker in any file\n");
    return 1;
  }
  size_t n = (size_t)argc - 1;
  struct CMUnitTest *tests = calloc(n, sizeof(*tests));
  doc_state_t *states = calloc(n, sizeof(*states));
  if (!tests || !states)
    return 1;
  for (size_t i = 0; i < n; i++) {
    states[i].file = argv[i + 1];
    const char *base = strrchr(argv[i + 1], '/');
    tests[i].name = base ? base + 1 : argv[i + 1];
    tests[i].test_func = check_doc;
    tests[i].setup_func = doc_setup;
    tests[i].teardown_func = doc_teardown;
    tests[i].initial_state = &states[i];
  }
  int rc = _cmocka_run_group_tests("docs", tests, n, NULL, NULL);
  free(tests);
  free(states);
  return rc;
}
