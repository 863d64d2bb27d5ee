/*
 * test_docs.c — the replies and log lines that the docs show, checked
 * against a live tpool-server, so that the docs cannot drift from it.
 *
 *   test_docs FILE.md...
 *
 * Each file that holds a marked example gets a fresh server, started
 * with the shipped config.ini on a free port with verbose logging on, and
 * its markers are replayed in order. A marker is an HTML comment on the
 * line before a fenced block:
 *
 *   <!-- check: METHOD PATH [BODY] -->   the block is the JSON reply body
 *   <!-- run: METHOD PATH [BODY] -->     sent, not waited for (no block)
 *   <!-- check: log -->                  the block's lines are log lines
 *
 * A reply matches when it has the same object keys at every level (none
 * missing, none extra), the same JSON types, and equal strings and
 * booleans; numbers may differ. Every element of a live array must match
 * the doc array's first element, and an empty doc array means an empty
 * live one. A GET is asked again, for up to RETRY_S, until it matches (a
 * task sent by an earlier `run` may take a moment to start); other
 * methods are sent once. A log line matches a line of the server's log
 * with every number in it taken as any number and a run of blanks as any
 * run of blanks (the status table pads its columns); the log is watched
 * for up to RETRY_S.
 */
#include "server_harness.h"

#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define RETRY_S 10.0
#define RUNS_MAX 16

/* ---- reading a docs file --------------------------------------------------- */

typedef enum { MARK_CHECK, MARK_RUN, MARK_LOG } mark_kind_t;

typedef struct mark {
  mark_kind_t kind;
  int line;           /* of the marker, for messages */
  char method[16];
  char path[256];
  char body[1024];    /* "" when none */
  char *block;        /* the fenced block's text (check, log); malloc'd */
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

/* Parses "<!-- check: ... -->" or "<!-- run: ... -->" at s; false if s is
   not a marker. */
static bool parse_marker(const char *s, int line, const char *file,
                         mark_t *m) {
  const char *open = "<!-- ", *close = " -->";
  if (strncmp(s, open, strlen(open)) != 0)
    return false;
  s += strlen(open);
  if (strncmp(s, "check:", 6) == 0) {
    m->kind = MARK_CHECK;
    s += 6;
  } else if (strncmp(s, "run:", 4) == 0) {
    m->kind = MARK_RUN;
    s += 4;
  } else {
    return false;
  }
  const char *end = strstr(s, close);
  if (!end)
    fail_msg("%s:%d: a marker must end with \" -->\" on its line", file, line);
  char text[1400];
  size_t len = (size_t)(end - s);
  assert_true(len < sizeof(text));
  memcpy(text, s, len);
  text[len] = '\0';
  m->line = line;
  char *p = text + strspn(text, " ");
  if (m->kind == MARK_CHECK && strcmp(p, "log") == 0) {
    m->kind = MARK_LOG;
    return true;
  }
  int off = 0;
  if (sscanf(p, "%15s %255s %n", m->method, m->path, &off) < 2)
    fail_msg("%s:%d: expected METHOD PATH [BODY] in the marker", file, line);
  snprintf(m->body, sizeof(m->body), "%s", p + off);
  return true;
}

/* The markers of `file`, each with the fenced block that follows it. */
static void doc_read(const char *file, doc_t *d) {
  char *text = read_all(file);
  d->file = file;
  d->marks = NULL;
  d->n = 0;
  mark_t *pending = NULL; /* waiting for its block */
  char *block = NULL;     /* inside a fence: its text so far */
  size_t blen = 0;
  int lineno = 0;
  for (char *line = text; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    lineno++;
    if (block) {
      if (strncmp(line, "```", 3) == 0) {
        pending->block = block;
        pending = NULL;
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
    } else if (pending && strncmp(line, "```", 3) == 0) {
      block = calloc(1, 1);
      assert_non_null(block);
      blen = 0;
    } else {
      mark_t m = {0};
      if (parse_marker(line, lineno, file, &m)) {
        if (pending)
          fail_msg("%s:%d: the marker at line %d has no block after it",
                   file, lineno, pending->line);
        d->marks = realloc(d->marks, (d->n + 1) * sizeof(*d->marks));
        assert_non_null(d->marks);
        d->marks[d->n] = m;
        if (m.kind != MARK_RUN)
          pending = &d->marks[d->n];
        d->n++;
      } else if (pending && *line && strncmp(line, "<!--", 4) != 0) {
        fail_msg("%s:%d: expected the fenced block of the marker at line %d",
                 file, lineno, pending->line);
      }
    }
    line = nl ? nl + 1 : NULL;
  }
  if (pending || block)
    fail_msg("%s: the marker at line %d has no complete block", file,
             pending ? pending->line : 0);
  free(text);
}

static void doc_free(doc_t *d) {
  for (size_t i = 0; i < d->n; i++)
    free(d->marks[i].block);
  free(d->marks);
}

/* ---- comparing a reply with the doc's ------------------------------------ */

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
    if (json_array_size(doc) == 0) {
      if (json_array_size(live) == 0)
        return true;
      snprintf(msg, size, "%s: the docs show an empty array, the server "
                          "sent %zu elements", at, json_array_size(live));
      return false;
    }
    if (json_array_size(live) == 0) {
      snprintf(msg, size, "%s: the docs show elements, the server sent none",
               at);
      return false;
    }
    for (size_t i = 0; i < json_array_size(live); i++) {
      snprintf(sub, sizeof(sub), "%s[%zu]", at, i);
      if (!same_shape(json_array_get(doc, 0), json_array_get(live, i), sub,
                      msg, size))
        return false;
    }
    return true;
  case JSON_STRING:
    if (strcmp(json_string_value(doc), json_string_value(live)) == 0)
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

/* ---- replaying ----------------------------------------------------------- */

typedef struct run {
  fixture_t *fx;
  server_t *server;
  int fds[RUNS_MAX]; /* connections of `run` markers, closed at the end */
  size_t nfds;
} run_t;

static void do_run(run_t *r, const doc_t *d, const mark_t *m) {
  char req[2048];
  size_t blen = strlen(m->body);
  int n = snprintf(req, sizeof(req),
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                   "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                   m->method, m->path, blen, m->body);
  assert_true(n > 0 && (size_t)n < sizeof(req));
  assert_true(r->nfds < RUNS_MAX);
  int fd = th_raw_connect(r->server->port);
  if (fd < 0 || !th_raw_send(fd, req, (size_t)n))
    fail_msg("%s:%d: could not send %s %s", d->file, m->line, m->method,
             m->path);
  r->fds[r->nfds++] = fd;
}

static void do_check(run_t *r, const doc_t *d, const mark_t *m) {
  json_error_t jerr;
  json_t *want = json_loads(m->block, 0, &jerr);
  if (!want)
    fail_msg("%s:%d: the block is not JSON (line %d of it: %s)", d->file,
             m->line, jerr.line, jerr.text);
  bool idempotent = strcmp(m->method, "GET") == 0;
  struct timespec since;
  th_now(&since);
  char msg[1024];
  for (;;) {
    th_response_t resp;
    call(r->fx, r->server, m->method, m->path, NULL,
         m->body[0] ? m->body : NULL, &resp);
    json_t *got = json_loads(resp.body, 0, NULL);
    bool ok = got && same_shape(want, got, "$", msg, sizeof(msg));
    if (!got)
      snprintf(msg, sizeof(msg), "the reply (%d) is not JSON: %s", resp.status,
               resp.body);
    if (ok || !idempotent || th_elapsed(&since) >= RETRY_S) {
      if (!ok) {
        print_message("%s:%d: %s %s answered %d:\n%s\n", d->file, m->line,
                      m->method, m->path, resp.status, resp.body);
        json_decref(got);
        json_decref(want);
        th_response_free(&resp);
        fail_msg("%s:%d: %s", d->file, m->line, msg);
      }
      json_decref(got);
      th_response_free(&resp);
      break;
    }
    json_decref(got);
    th_response_free(&resp);
    nap_ms(100);
  }
  json_decref(want);
}

/* A doc log line as a regular expression: numbers match any number, a run
   of blanks any run of blanks, everything else itself. */
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

/* True if some line of `log` matches the compiled pattern. */
static bool log_has(const char *log, const regex_t *re) {
  char line[4096];
  for (const char *p = log; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    if (n < sizeof(line)) {
      memcpy(line, p, n);
      line[n] = '\0';
      if (regexec(re, line, 0, NULL, 0) == 0)
        return true;
    }
    p += n + (nl != NULL);
  }
  return false;
}

static void do_log(run_t *r, const doc_t *d, const mark_t *m) {
  char *lines = strdup(m->block);
  assert_non_null(lines);
  int at = m->line + 1;
  for (char *save = NULL, *line = strtok_r(lines, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save), at++) {
    char pattern[4096];
    line_pattern(line, pattern, sizeof(pattern));
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
      fail_msg("%s: cannot make a pattern of \"%s\"", d->file, line);
    struct timespec since;
    th_now(&since);
    bool seen;
    for (;;) {
      char *log = log_copy(r->server);
      seen = log_has(log, &re);
      free(log);
      if (seen || th_elapsed(&since) >= RETRY_S)
        break;
      nap_ms(100);
    }
    regfree(&re);
    if (!seen) {
      print_log(r->server);
      fail_msg("%s (block of line %d): no log line like \"%s\"", d->file,
               m->line, line);
    }
  }
  free(lines);
}

/* The shipped config.ini, on a free port, with verbose logging. */
static void write_shipped_config(fixture_t *fx) {
  const char *root = getenv("TPOOL_SOURCE_ROOT");
  assert_non_null(root);
  char path[512];
  snprintf(path, sizeof(path), "%s/config.ini", root);
  char *text = read_all(path);
  size_t cap = strlen(text) + 256, o = 0;
  char *out = malloc(cap);
  assert_non_null(out);
  bool listen = false, verbose = false;
  for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "listen ", 7) == 0 || strncmp(line, "listen=", 7) == 0) {
      line = "listen = 127.0.0.1:0";
      listen = true;
    } else if (strncmp(line, "verbose ", 8) == 0 ||
               strncmp(line, "verbose=", 8) == 0) {
      line = "verbose = true";
      verbose = true;
    }
    o += (size_t)snprintf(out + o, cap - o, "%s\n", line);
    assert_true(o < cap);
  }
  assert_true(listen && verbose);
  write_file(fx->config, out);
  free(out);
  free(text);
}

/* ---- main ---------------------------------------------------------------- */

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
  run_t r = {.fx = ds->fx};
  write_shipped_config(ds->fx);
  r.server = server_start(ds->fx);
  size_t checked = 0;
  for (size_t i = 0; i < d.n; i++) {
    const mark_t *m = &d.marks[i];
    if (m->kind == MARK_RUN)
      do_run(&r, &d, m);
    else if (m->kind == MARK_CHECK)
      do_check(&r, &d, m);
    else
      do_log(&r, &d, m);
    checked += m->kind != MARK_RUN;
  }
  print_message("%s: %zu examples match the live server\n", ds->file,
                checked);
  for (size_t i = 0; i < r.nfds; i++)
    close(r.fds[i]);
  server_stop_ok(r.server);
  doc_free(&d);
}

/* How many check markers `path` holds; -1 if it cannot be read. */
static long count_checks(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long n = 0;
  char line[4096];
  while (fgets(line, sizeof(line), f))
    n += strncmp(line, "<!-- check:", 11) == 0;
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
