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
 * The durable queue's examples need a Redis. They stand between
 * <!-- redis --> and <!-- redis: end -->, a part of the file for which
 * the test starts a redis-server of its own, on 127.0.0.1 and a free
 * port, without persistence, in the file's private directory: a part
 * starts it unless it runs, and it runs until the file is done, stopped
 * whatever happens. In a part, and only there:
 *
 *   <!-- check: redis-cli ARGS -->      + block: what `redis-cli ARGS`
 *                                         prints in a terminal, line for
 *                                         line (ARGS are quoted as in a
 *                                         shell)
 *   <!-- send: redis-cli ARGS -->       run; its output is not read
 *   <!-- redis-server: stop -->, <!-- redis-server: start -->  that Redis
 *                                         stops (SIGTERM, its data gone),
 *                                         or starts again on its port
 *   $REDIS                              in a config value: that Redis's
 *                                         URL, redis://127.0.0.1:PORT
 *   $ID                                 in a request or in ARGS: the
 *                                         newest entry id the server or
 *                                         Redis gave (the "id" of a JSON
 *                                         reply, or what XADD printed)
 *
 * In a part, a start (or restart) of the server, and a start of Redis
 * while it runs, wait until the server's queue routes answer, which may be
 * a moment later (GET /tasks/0-0 no longer 503), so that a POST /queue
 * right after is not refused.
 * A build without libtpool_redis (no hiredis) skips the parts, saying so;
 * a build with it fails, saying how to install it, when there is no
 * redis-server. A line of a redis-cli block matches as a line of a log
 * does; a read-only command (XINFO, XPENDING, XRANGE, HMGET...) is run
 * again for up to RETRY_S until its output matches, others once.
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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
  MARK_WAIT,
  MARK_REDIS,        /* a part that needs Redis begins, or ends */
  MARK_REDIS_CHECK,  /* check: redis-cli ARGS */
  MARK_REDIS_SEND,   /* send: redis-cli ARGS */
  MARK_REDIS_SERVER  /* redis-server: stop or start */
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
    {"wait", MARK_WAIT, false},      {"redis", MARK_REDIS, false},
    {"redis-server", MARK_REDIS_SERVER, false},
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
  static const char cli[] = "redis-cli ";
  if ((m->kind == MARK_CHECK || m->kind == MARK_SEND) &&
      strncmp(m->args, cli, sizeof(cli) - 1) == 0) {
    m->kind = m->kind == MARK_CHECK ? MARK_REDIS_CHECK : MARK_REDIS_SEND;
    memmove(m->args, m->args + sizeof(cli) - 1,
            strlen(m->args) - (sizeof(cli) - 1) + 1);
  }
  m->line = line;
  return true;
}

static bool takes_block(mark_kind_t kind) {
  if (kind == MARK_LOG || kind == MARK_REDIS_CHECK)
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

/* The file's own redis-server. */
typedef struct redis {
  pid_t pid;          /* 0 while none runs */
  uint16_t port;      /* kept across a stop, for the start after it */
  char dir[PATH_MAX]; /* its working directory and log */
  char server[PATH_MAX], cli[PATH_MAX]; /* the programs, once found */
} redis_t;

typedef struct run {
  const doc_t *doc;
  fixture_t *fx;
  redis_t *redis;
  char last_id[64]; /* $ID: the newest entry id seen, "" before any */
  bool in_redis;    /* in a <!-- redis --> part, in a build that runs it */
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

/* True for an entry id as Redis writes them: DIGITS-DIGITS. */
static bool is_entry_id(const char *s) {
  size_t a = strspn(s, "0123456789");
  if (a == 0 || a > 20 || s[a] != '-')
    return false;
  size_t b = strspn(s + a + 1, "0123456789");
  return b > 0 && b <= 20 && s[a + 1 + b] == '\0';
}

/* Keeps the "id" of a JSON reply, when it is an entry id, as $ID. */
static void remember_id(run_t *r, const reply_t *got) {
  json_t *v = json_loads(got->body, 0, NULL);
  const char *id = json_string_value(json_object_get(v, "id"));
  if (id && is_entry_id(id) && strlen(id) < sizeof(r->last_id))
    snprintf(r->last_id, sizeof(r->last_id), "%s", id);
  json_decref(v);
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
    remember_id(r, &got);
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
  remember_id(r, &got);
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

/* A server that has just started answers the queue's routes 503 until its
   connections to Redis are up, which may come a moment after it listens:
   in a Redis part, wait until GET /tasks/0-0 (an entry never added) has
   been answered other than 503 eight times in a row, whichever loop took
   it, for up to RETRY_S (a doc may show a server whose Redis is away). */
static void wait_queue_ready(run_t *r) {
  struct timespec since;
  th_now(&since);
  int in_row = 0;
  while (in_row < 8 && th_elapsed(&since) < RETRY_S) {
    reply_t got;
    exchange(r, "GET", "/tasks/0-0", "", &got);
    in_row = got.status != 0 && got.status != 503 ? in_row + 1 : 0;
    free(got.raw);
    if (in_row == 0)
      nap_ms(20);
  }
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
  if (r->in_redis)
    wait_queue_ready(r);
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

/* ---- the file's own Redis ------------------------------------------------------- */

#ifdef TPOOL_SERVER_REDIS
static const bool have_redis = true; /* this build has libtpool_redis */
#else
static const bool have_redis = false;
#endif

/* Finds `name` as Debian installs it (/usr/bin), else in PATH. */
static bool find_program(const char *name, char *out, size_t size) {
  snprintf(out, size, "/usr/bin/%s", name);
  if (access(out, X_OK) == 0)
    return true;
  const char *path = getenv("PATH");
  char dirs[4096];
  snprintf(dirs, sizeof(dirs), "%s", path ? path : "");
  for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
       d = strtok_r(NULL, ":", &save)) {
    snprintf(out, size, "%s/%s", d, name);
    if (access(out, X_OK) == 0)
      return true;
  }
  out[0] = '\0';
  return false;
}

/* A port of 127.0.0.1 that nothing listens on now. */
static uint16_t free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sa);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

/* True if a Redis on `port` answers PING. */
static bool redis_ping(uint16_t port) {
  int fd = th_raw_connect(port);
  if (fd < 0)
    return false;
  char buf[64] = {0};
  size_t n = 0;
  if (th_raw_send(fd, "PING\r\n", 6)) {
    struct pollfd p = {fd, POLLIN, 0};
    while (n < 7 && poll(&p, 1, 1000) > 0) {
      ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
      if (k <= 0)
        break;
      n += (size_t)k;
    }
  }
  close(fd);
  return strncmp(buf, "+PONG\r\n", 7) == 0;
}

static void print_redis_log(const redis_t *rd) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof(path), "%s/redis.log", rd->dir);
  FILE *f = fopen(path, "r");
  char line[1024];
  while (f && fgets(line, sizeof(line), f))
    print_message("redis-server: %s", line);
  if (f)
    fclose(f);
}

/* Starts the file's redis-server: on 127.0.0.1 and a free port (the
   same one again after a stop), without persistence, in a directory of
   the fixture's; returns once it answers. */
static void redis_start(const run_t *r, int line) {
  redis_t *rd = r->redis;
  if (rd->pid)
    fail_msg("%s:%d: redis-server: start, but it runs", r->doc->file, line);
  if (!rd->server[0] &&
      !find_program("redis-server", rd->server, sizeof(rd->server)))
    fail_msg("%s:%d: the durable queue's examples need redis-server, which "
             "is not installed: `./setup.sh test` installs it (Debian's "
             "redis-server)",
             r->doc->file, line);
  if (!rd->cli[0] && !find_program("redis-cli", rd->cli, sizeof(rd->cli)))
    fail_msg("%s:%d: the durable queue's examples need redis-cli, which is "
             "not installed: `./setup.sh test` installs it (with Debian's "
             "redis-server)",
             r->doc->file, line);
  if (!rd->dir[0]) {
    snprintf(rd->dir, sizeof(rd->dir), "%s/redis", r->fx->dir);
    assert_int_equal(mkdir(rd->dir, 0700), 0);
  }
  if (!rd->port)
    rd->port = free_port();
  char port[8], log[PATH_MAX + 16];
  snprintf(port, sizeof(port), "%u", (unsigned)rd->port);
  snprintf(log, sizeof(log), "%s/redis.log", rd->dir);
  pid_t parent = getpid();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* It never outlives the test, however the test ends. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
        dup2(out, 2) < 0 || chdir(rd->dir) != 0)
      _exit(127);
    execl(rd->server, rd->server, "--bind", "127.0.0.1", "--port", port,
          "--save", "", "--appendonly", "no", "--dir", rd->dir,
          "--daemonize", "no", (char *)NULL);
    _exit(127);
  }
  rd->pid = pid;
  struct timespec since;
  th_now(&since);
  while (!redis_ping(rd->port)) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      rd->pid = 0;
      print_redis_log(rd);
      fail_msg("%s:%d: redis-server (port %s) exited as it started",
               r->doc->file, line, port);
    }
    if (th_elapsed(&since) > WAIT_S) {
      print_redis_log(rd);
      fail_msg("%s:%d: redis-server (port %s) did not answer", r->doc->file,
               line, port);
    }
    nap_ms(20);
  }
}

/* Stops the file's redis-server, if it runs. */
static void redis_stop(redis_t *rd) {
  if (!rd->pid)
    return;
  kill(rd->pid, SIGTERM);
  struct timespec since;
  th_now(&since);
  int st;
  while (waitpid(rd->pid, &st, WNOHANG) == 0) {
    if (th_elapsed(&since) > 10) {
      kill(rd->pid, SIGKILL);
      waitpid(rd->pid, &st, 0);
      break;
    }
    nap_ms(10);
  }
  rd->pid = 0;
}

/* Writes `in` into out with $REDIS and $ID replaced. */
static void expand(const run_t *r, const mark_t *m, const char *in, char *out,
                   size_t size) {
  size_t o = 0;
  for (const char *p = in; *p;) {
    char url[64];
    const char *with = NULL;
    size_t skip = 0;
    if (strncmp(p, "$REDIS", 6) == 0) {
      snprintf(url, sizeof(url), "redis://127.0.0.1:%u",
               (unsigned)r->redis->port);
      with = url;
      skip = 6;
    } else if (strncmp(p, "$ID", 3) == 0) {
      if (!r->last_id[0])
        fail_msg("%s:%d: $ID, but no entry id was given yet", r->doc->file,
                 m->line);
      with = r->last_id;
      skip = 3;
    }
    size_t k = with ? strlen(with) : 1;
    if (o + k >= size)
      fail_msg("%s:%d: marker too long", r->doc->file, m->line);
    memcpy(out + o, with ? with : p, k);
    o += k;
    p += with ? skip : 1;
  }
  out[o] = '\0';
}

/* Splits ARGS into words as a shell would for the quoting the docs use:
   blanks separate words, '...' is taken as it is, "..." takes \" and \\.
   Returns how many. */
static size_t split_words(const run_t *r, const mark_t *m, char *buf,
                          size_t size, char **words, size_t max) {
  size_t n = 0, o = 0;
  const char *p = m->args;
  for (;;) {
    p += strspn(p, " \t");
    if (!*p)
      break;
    if (n == max)
      fail_msg("%s:%d: too many words", r->doc->file, m->line);
    words[n++] = buf + o;
    while (*p && *p != ' ' && *p != '\t') {
      if (o + 2 >= size)
        fail_msg("%s:%d: marker too long", r->doc->file, m->line);
      if (*p == '\'') {
        const char *end = strchr(p + 1, '\'');
        if (!end)
          fail_msg("%s:%d: a ' is not closed", r->doc->file, m->line);
        memcpy(buf + o, p + 1, (size_t)(end - p - 1));
        o += (size_t)(end - p - 1);
        p = end + 1;
      } else if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
          if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
          buf[o++] = *p;
        }
        if (!*p)
          fail_msg("%s:%d: a \" is not closed", r->doc->file, m->line);
        p++;
      } else {
        buf[o++] = *p++;
      }
    }
    buf[o++] = '\0';
  }
  return n;
}

/* Runs redis-cli against the file's Redis with `words`, formatted as in a
   terminal; returns what it printed (caller frees). */
static char *redis_cli(const run_t *r, const mark_t *m, char **words,
                       size_t n) {
  const redis_t *rd = r->redis;
  if (!rd->pid)
    fail_msg("%s:%d: redis-cli, but redis-server is stopped", r->doc->file,
             m->line);
  char port[8];
  snprintf(port, sizeof(port), "%u", (unsigned)rd->port);
  const char *argv[80] = {rd->cli, "-h", "127.0.0.1", "-p", port, "--no-raw"};
  size_t argc = 6;
  for (size_t i = 0; i < n && argc + 1 < 80; i++)
    argv[argc++] = words[i];
  argv[argc] = NULL;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
  assert_int_equal(
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0), 0);
  assert_int_equal(posix_spawn_file_actions_adddup2(&fa, p[1], 1), 0);
  assert_int_equal(posix_spawn_file_actions_adddup2(&fa, p[1], 2), 0);
  pid_t pid;
  int rc = posix_spawn(&pid, rd->cli, &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    fail_msg("cannot run %s: %s", rd->cli, strerror(rc));
  }
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  assert_non_null(out);
  struct timespec since;
  th_now(&since);
  for (;;) {
    if (len + 1024 + 1 > cap) {
      cap *= 2;
      out = realloc(out, cap);
      assert_non_null(out);
    }
    struct pollfd pf = {p[0], POLLIN, 0};
    int ready = poll(&pf, 1, 100);
    if (ready == 0) {
      if (th_elapsed(&since) > WAIT_S)
        break;
      continue;
    }
    ssize_t k = read(p[0], out + len, cap - len - 1);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    len += (size_t)k;
  }
  out[len] = '\0';
  close(p[0]);
  int st;
  if (waitpid(pid, &st, WNOHANG) == 0) { /* it never ended its output */
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
  }
  return out;
}

/* True if the output has the block's lines, one for one (each as a log
   line matches); else false with why in msg. */
static bool cli_matches(const char *block, const char *out, char *msg,
                        size_t size) {
  char *want = strdup(block), *got = strdup(out);
  assert_true(want && got);
  char *ws = NULL, *gs = NULL;
  char *w = strtok_r(want, "\n", &ws), *g = strtok_r(got, "\n", &gs);
  bool ok = true;
  for (size_t i = 1; ok && (w || g); i++) {
    if (!w || !g) {
      snprintf(msg, size, "line %zu: the docs show %s, redis-cli printed %s",
               i, w ? "more lines" : "no more lines",
               g ? "more lines" : "no more lines");
      ok = false;
    } else if (!line_matches(w, g)) {
      snprintf(msg, size, "line %zu: the docs show \"%s\", redis-cli printed "
               "\"%s\"", i, w, g);
      ok = false;
    }
    w = strtok_r(NULL, "\n", &ws);
    g = strtok_r(NULL, "\n", &gs);
  }
  free(want);
  free(got);
  return ok;
}

/* Commands that change nothing: asked again until their output matches. */
static bool read_only(const char *command) {
  static const char *const words[] = {
      "XINFO", "XPENDING", "XRANGE", "XREVRANGE", "XLEN",   "HGET",
      "HMGET", "HGETALL",  "HLEN",   "TTL",       "EXISTS", "GET",
      "TYPE",  "PING",     "SCAN",   "KEYS"};
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
    if (strcasecmp(command, words[i]) == 0)
      return true;
  return false;
}

/* check: redis-cli ARGS (check true) and send: redis-cli ARGS. */
static void do_redis_cli(run_t *r, const mark_t *m, bool check) {
  char buf[sizeof(m->args) + 1];
  char *words[64];
  size_t n = split_words(r, m, buf, sizeof(buf), words, 64);
  if (n == 0)
    fail_msg("%s:%d: expected redis-cli ARGS", r->doc->file, m->line);
  bool again = read_only(words[0]);
  struct timespec since;
  th_now(&since);
  char msg[2048];
  for (;;) {
    char *out = redis_cli(r, m, words, n);
    if (strcasecmp(words[0], "XADD") == 0) { /* "1700000000000-0" */
      char id[64];
      if (sscanf(out, "\"%63[0-9-]\"", id) == 1 && is_entry_id(id))
        snprintf(r->last_id, sizeof(r->last_id), "%s", id);
    }
    bool ok = !check || cli_matches(m->block, out, msg, sizeof(msg));
    const char *want = getenv("TPOOL_DOCS_SHOW");
    if (ok && want && *want == '1')
      printf("%s:%d: redis-cli %s\n%s", r->doc->file, m->line, m->args, out);
    if (!ok && (!again || th_elapsed(&since) >= RETRY_S)) {
      print_message("%s:%d: redis-cli %s printed:\n%s\n", r->doc->file,
                    m->line, m->args, out);
      fail_msg("%s:%d: %s", r->doc->file, m->line, msg);
    }
    free(out);
    if (ok)
      return;
    nap_ms(100);
  }
}

/* ---- one file ----------------------------------------------------------------- */

typedef struct doc_state {
  const char *file;
  fixture_t *fx;
  redis_t redis;
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
  redis_stop(&ds->redis); /* before its directory goes */
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
  run_t r = {.doc = &d, .fx = ds->fx, .redis = &ds->redis};
  config_init(&r);
  start(&r);
  size_t checked = 0, skipped = 0;
  int part = 0; /* the line of the <!-- redis --> part we are in, or 0 */
  for (size_t i = 0; i < d.n; i++) {
    const mark_t *m = &d.marks[i];
    char method[16], path[1024], *body, *select;
    if (m->kind == MARK_REDIS) {
      if (m->args[0] == '\0') {
        if (part)
          fail_msg("%s:%d: a <!-- redis --> part in the one of line %d",
                   d.file, m->line, part);
        part = m->line;
        r.in_redis = have_redis;
        if (have_redis && !r.redis->pid)
          redis_start(&r, m->line);
      } else if (strcmp(m->args, "end") == 0) {
        if (!part)
          fail_msg("%s:%d: <!-- redis: end --> outside a part", d.file,
                   m->line);
        part = 0;
        r.in_redis = false;
      } else {
        fail_msg("%s:%d: expected <!-- redis --> or <!-- redis: end -->",
                 d.file, m->line);
      }
      continue;
    }
    bool uses_redis = m->kind == MARK_REDIS_CHECK ||
                      m->kind == MARK_REDIS_SEND ||
                      m->kind == MARK_REDIS_SERVER ||
                      strstr(m->args, "$REDIS") != NULL;
    if (uses_redis && !part)
      fail_msg("%s:%d: Redis outside a <!-- redis --> part", d.file, m->line);
    if (part && !have_redis) {
      skipped += takes_block(m->kind);
      continue;
    }
    mark_t em = *m; /* with $REDIS and $ID replaced */
    if (m->kind != MARK_LOG && m->kind != MARK_REPLY)
      expand(&r, m, m->args, em.args, sizeof(em.args));
    m = &em;
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
      remember_id(&r, &got);
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
    case MARK_REDIS_CHECK:
    case MARK_REDIS_SEND:
      do_redis_cli(&r, m, m->kind == MARK_REDIS_CHECK);
      break;
    case MARK_REDIS_SERVER:
      if (strcmp(m->args, "stop") == 0)
        redis_stop(r.redis);
      else if (strcmp(m->args, "start") == 0) {
        redis_start(&r, m->line);
        if (r.server && !r.server->reaped)
          wait_queue_ready(&r); /* its connections come back */
      }
      else
        fail_msg("%s:%d: expected redis-server: stop or start", d.file,
                 m->line);
      break;
    case MARK_REDIS:
      break; /* handled above */
    }
    checked += takes_block(m->kind);
  }
  if (part)
    fail_msg("%s:%d: the <!-- redis --> part has no <!-- redis: end -->",
             d.file, part);
  print_message("%s: %zu examples match the live server\n", ds->file,
                checked);
  if (skipped)
    print_message("%s: %zu examples of the durable queue skipped: this build "
                  "has no libtpool_redis (hiredis is missing)\n",
                  ds->file, skipped);
  for (size_t i = 0; i < r.nfds; i++)
    close(r.fds[i]);
  if (r.server && !r.server->reaped && !server_wait_exit(r.server, 0))
    server_stop_ok(r.server);
  redis_stop(r.redis); /* after the server, which drains into it */
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
