/*
 * config.c — reading an INI config file into tpool_options_t.
 *
 * libinih splits lines into keys and values, but it has no line numbers in
 * its handler (Debian builds it with INI_HANDLER_LINENO=0), splits over-long
 * lines silently, and treats indented lines as continuations. So inih reads
 * through our own reader, which hands it one line per call and does the
 * strict part first: it counts lines, rejects over-long lines and NUL bytes,
 * skips a BOM, strips leading blanks and handles [section] headers itself.
 * The handler then knows the current section and line from the reader, and
 * hands each value to the key tables of config_values.c.
 *
 * Parsing fills a heap copy of the caller's options, and of the data of
 * every section of another layer (tpool_config_load_sections()); the
 * copies replace the originals only when the whole file and the checks
 * pass, so a bad file changes nothing. The first error (by line) is the
 * one reported.
 *
 * DESIGN: a family of sections ("schedule.*") is one extra_t whose copy
 * holds all `max` elements; each [schedule.X] takes the next one, filled
 * from the defaults, its name and its line, and keys then go into that
 * element. The elements already taken are the record of the names seen
 * (duplicates are found there), so a family needs no other bookkeeping
 * than their count. Only the elements taken are written back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the GNU strerror_r() */
#endif

#include "config_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The message for a file over TPOOL__CONFIG_FILE_MAX. */
#define TOO_LARGE "larger than 1 MiB"
_Static_assert(TPOOL__CONFIG_FILE_MAX == (size_t)1024 * 1024,
               "update TOO_LARGE");

/* The longest key table of core: a section remembers where each of its
   keys was set. */
#define KEYS_MAX TPOOL__POOL_NKEYS
_Static_assert(TPOOL__GENERAL_NKEYS <= KEYS_MAX, "raise KEYS_MAX");

/* ------------------------------------------------------------------------
 * The parser: a reader that hands inih one checked line at a time, and a
 * handler that applies each key to the copy of the options.
 * ------------------------------------------------------------------------ */

typedef enum section {
  SEC_NONE,
  SEC_GENERAL,
  SEC_POOL,
  SEC_ROUTES,
  SEC_EXTRA /* a section of another layer */
} section_t;

/* A section of another layer, parsed into a copy of its data. */
typedef struct extra {
  const tpool_config_section_t *s;
  tpool__keydef_t *keys; /* s->nkeys, converted */
  int *key_line;         /* where each key was set, or 0 */
  unsigned char *copy;   /* s->size bytes; a family's s->max * s->size */
  size_t group;          /* the first section of this name */
  int first_line;        /* the group's first: where [name] was seen */
  size_t prefix;         /* a family: strlen("schedule."), else 0 */
  size_t n;              /* a family: elements taken */
} extra_t;

typedef struct parser {
  tpool_options_t o; /* the copy being filled */
  const char *name;  /* file name for errors */
  const char *text;
  size_t len, pos;
  int line; /* of the line inih is working on */

  section_t sec;
  char label[96];              /* the section as written: "[pool.cpu]" */
  tpool_pool_options_t *pool;  /* the current [pool.NAME] */
  const tpool__keydef_t *keys; /* the current section's table */
  size_t nkeys;
  int key_line[KEYS_MAX]; /* where each key of the section was set */
  int general_line;       /* where each section started, or 0 */
  int routes_line;
  int pool_line[TPOOL_POOLS_MAX];
  extra_t *extras; /* the sections of other layers */
  size_t nextras;
  size_t group;           /* SEC_EXTRA: the current section's group */
  unsigned char *element; /* SEC_EXTRA, a family: the current element */

  bool failed;
  int code; /* of the error: -EINVAL, or -ENOMEM */
  tpool_config_error_t err;
} parser_t;

/* Records an error unless one was recorded already. */
static void fail(parser_t *p, int line, const char *key, const char *fmt, ...)
    TPOOL_PRINTF(4, 5);

static void fail(parser_t *p, int line, const char *key, const char *fmt, ...) {
  char msg[sizeof(p->err.message)];
  va_list ap;

  if (p->failed)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  tpool__config_error_set(&p->err, p->name, line, key, msg);
  p->failed = true;
  p->code = -EINVAL;
}

static void fail_syntax(parser_t *p, int line) {
  fail(p, line, NULL, "syntax error: expected [section] or key = value");
}

/* Finds or adds the pool of a [pool.NAME] section (s is NAME). Returns
   where the section was first seen, or NULL after an error. */
static int *pool_section(parser_t *p, const char *s, size_t n) {
  char name[TPOOL_NAME_MAX];

  if (n >= sizeof(name)) {
    name[0] = '\0'; /* too long: invalid */
  } else {
    memcpy(name, s, n);
    name[n] = '\0';
  }
  if (!tpool__pool_name_is_valid(name)) {
    fail(p, p->line, p->label, "pool name must be 1..%d of a-z, 0-9, _ and -",
         TPOOL_NAME_MAX - 1);
    return NULL;
  }
  p->pool = tpool_options_pool(&p->o, name);
  if (p->pool == NULL && tpool_options_add_pool(&p->o, name, &p->pool) != 0) {
    fail(p, p->line, p->label, "too many pools (at most %d)", TPOOL_POOLS_MAX);
    return NULL;
  }
  p->pool->line = p->line;
  return &p->pool_line[p->pool - p->o.pools];
}

/* The group of a section of another layer named s[0..n): sets p->group and
   returns where the section was first seen; NULL if there is none. */
static int *extra_section(parser_t *p, const char *s, size_t n) {
  for (size_t i = 0; i < p->nextras; i++) {
    const char *name = p->extras[i].s->name;
    if (p->extras[i].group == i && p->extras[i].prefix == 0 &&
        strlen(name) == n && memcmp(name, s, n) == 0) {
      p->group = i;
      return &p->extras[i].first_line;
    }
  }
  return NULL;
}

/* The family whose names s[0..n) is one of ("schedule." and anything),
   or p->nextras. No two families, and no other section, share names. */
static size_t family_of(parser_t *p, const char *s, size_t n) {
  size_t i;

  for (i = 0; i < p->nextras; i++) {
    const extra_t *x = &p->extras[i];
    if (x->prefix > 0 && n >= x->prefix &&
        memcmp(s, x->s->name, x->prefix) == 0)
      break;
  }
  return i;
}

/* 1..TPOOL_NAME_MAX - 1 of a-z 0-9 _ - and ., as a family's names are. */
static bool family_name_ok(const char *s, size_t n) {
  if (n == 0 || n >= TPOOL_NAME_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.'))
      return false;
  }
  return true;
}

/* Starts [schedule.X] of the family extras[e] (s[0..n) is X): takes its
   next element, or fails. */
static void family_section(parser_t *p, size_t e, const char *s, size_t n) {
  extra_t *x = &p->extras[e];
  const tpool_config_section_t *fs = x->s;
  unsigned char *el;
  int line;

  if (!family_name_ok(s, n)) {
    fail(p, p->line, p->label,
         "%.*s name must be 1..%d of a-z, 0-9, _, - and .",
         (int)(x->prefix - 1), fs->name, TPOOL_NAME_MAX - 1);
    return;
  }
  for (size_t i = 0; i < x->n; i++) {
    el = x->copy + i * fs->size;
    if (strncmp((const char *)el + fs->name_offset, s, n) == 0 &&
        el[fs->name_offset + n] == '\0') {
      memcpy(&line, el + fs->line_offset, sizeof(line));
      fail(p, p->line, p->label, "duplicate section (first at line %d)", line);
      return;
    }
  }
  if (x->n == fs->max) {
    fail(p, p->line, p->label, "too many [%s] sections (at most %zu)", fs->name,
         fs->max);
    return;
  }
  el = x->copy + x->n++ * fs->size;
  memcpy(el, fs->defaults, fs->size);
  memset(el + fs->name_offset, 0, TPOOL_NAME_MAX); /* zero-padded */
  memcpy(el + fs->name_offset, s, n);
  memcpy(el + fs->line_offset, &p->line, sizeof(p->line));
  /* Keys are set once per instance, not once per family. */
  memset(x->key_line, 0, fs->nkeys * sizeof(*x->key_line));
  p->sec = SEC_EXTRA;
  p->group = e;
  p->element = el;
}

/* "unknown section (expected [general], [http], ..., [pool.NAME] or
   [routes])": tpool's sections and those of the other layers. */
static void fail_unknown_section(parser_t *p) {
  char msg[sizeof(p->err.message)];
  tpool__sbuf_t b;

  tpool__sbuf_init(&b, msg, sizeof(msg));
  tpool__sbuf_addf(&b, "unknown section (expected [general], ");
  for (size_t i = 0; i < p->nextras; i++) {
    const extra_t *x = &p->extras[i];
    if (x->prefix > 0)
      tpool__sbuf_addf(&b, "[%.*sNAME], ", (int)x->prefix, x->s->name);
    else if (x->group == i)
      tpool__sbuf_addf(&b, "[%s], ", x->s->name);
  }
  tpool__sbuf_addf(&b, "[pool.NAME] or [routes])");
  fail(p, p->line, p->label, "%s", msg);
}

/* Starts the section named s[0..n) (trimmed), or fails. */
static void section_start(parser_t *p, const char *s, size_t n) {
  tpool__sbuf_t b;
  int *first;
  size_t e;

  tpool__sbuf_init(&b, p->label, sizeof(p->label));
  tpool__sbuf_addf(&b, "[");
  tpool__sbuf_echo(&b, s, n);
  tpool__sbuf_addf(&b, "]");

  p->pool = NULL;
  p->element = NULL;
  if (n == 7 && memcmp(s, "general", 7) == 0) {
    p->sec = SEC_GENERAL;
    p->keys = tpool__general_keys;
    p->nkeys = TPOOL__GENERAL_NKEYS;
    first = &p->general_line;
  } else if (n == 6 && memcmp(s, "routes", 6) == 0) {
    p->sec = SEC_ROUTES;
    p->keys = NULL;
    p->nkeys = 0;
    first = &p->routes_line;
  } else if (n >= 5 && memcmp(s, "pool.", 5) == 0) {
    p->sec = SEC_POOL;
    p->keys = tpool__pool_keys;
    p->nkeys = TPOOL__POOL_NKEYS;
    first = pool_section(p, s + 5, n - 5);
    if (first == NULL)
      return;
  } else if ((first = extra_section(p, s, n)) != NULL) {
    p->sec = SEC_EXTRA;
  } else if ((e = family_of(p, s, n)) < p->nextras) {
    family_section(p, e, s + p->extras[e].prefix, n - p->extras[e].prefix);
    return;
  } else {
    fail_unknown_section(p);
    return;
  }

  if (*first != 0) {
    fail(p, p->line, p->label, "duplicate section (first at line %d)", *first);
    return;
  }
  *first = p->line;
  memset(p->key_line, 0, sizeof(p->key_line));
}

/* A line that starts with '[': "[ name ]", then only blanks or a comment. */
static void section_line(parser_t *p, const char *s) {
  const char *close = strchr(s, ']');
  const char *rest, *start = s + 1;
  size_t n;

  if (close == NULL) {
    fail_syntax(p, p->line);
    return;
  }
  rest = close + 1 + strspn(close + 1, " \t");
  if (*rest != '\0' && *rest != ';' && *rest != '#') {
    fail_syntax(p, p->line);
    return;
  }
  start += strspn(start, " \t");
  n = (size_t)(close - start);
  while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t'))
    n--;
  section_start(p, start, n);
}

/* Takes the next line of the text: *s and *n without the "\n" or "\r\n".
   Returns false at the end of the text. */
static bool next_line(parser_t *p, const char **s, size_t *n) {
  const char *nl;
  size_t rest = p->len - p->pos;

  if (p->pos >= p->len)
    return false;
  *s = p->text + p->pos;
  nl = memchr(*s, '\n', rest);
  *n = nl ? (size_t)(nl - *s) : rest;
  p->pos += nl ? *n + 1 : *n;
  if (*n > 0 && (*s)[*n - 1] == '\r')
    (*n)--;
  return true;
}

/* The ini_reader: copies one checked line into str (with its "\n"), or an
   empty line in place of a comment or a [section] header, which inih then
   skips. Returns NULL at the end of the text or after an error. */
static char *reader(char *str, int num, void *stream) {
  parser_t *p = stream;
  const char *s;
  size_t n, key, max = TPOOL__CONFIG_LINE_MAX;

  if (p->failed || !next_line(p, &s, &n))
    return NULL;
  p->line++;
  if (p->line == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
    s += 3;
    n -= 3;
  }
  if (num < 2 || (size_t)num - 2 < max) /* an inih built with a shorter line */
    max = num < 2 ? 0 : (size_t)num - 2;
  if (n > max) {
    fail(p, p->line, NULL, "line longer than %zu bytes", max);
    return NULL;
  }
  if (memchr(s, '\0', n) != NULL) {
    fail(p, p->line, NULL, "NUL byte in line");
    return NULL;
  }

  /* Indented lines are ordinary lines here, never continuations. */
  while (n > 0 && strchr(" \t\v\f\r", *s) != NULL) {
    s++;
    n--;
  }
  memcpy(str, s, n);
  str[n] = '\0';

  if (str[0] == '[') {
    section_line(p, str);
    str[0] = '\0';
  } else if (str[0] != '\0' && str[0] != ';' && str[0] != '#') {
    /* "key = value": inih would also take "key: value", and an empty key. */
    key = strcspn(str, "=:");
    if (str[key] != '=' || key == 0)
      fail_syntax(p, p->line);
  }
  if (p->failed)
    return NULL;
  strcat(str, "\n");
  return str;
}

/* "pattern = pool" in [routes]: kept in file order. Whether the pool
   exists is checked with the whole file read (tpool_options_check()), as
   pools may come after the routes. */
static int add_route(parser_t *p, const char *key, const char *pattern,
                     const char *pool) {
  size_t plen = strlen(pattern), vlen = strlen(pool);
  if (plen >= TPOOL_TASK_NAME_MAX) {
    fail(p, p->line, key, "pattern longer than %d bytes",
         TPOOL_TASK_NAME_MAX - 1);
    return 0;
  }
  if (vlen == 0 || vlen >= TPOOL_NAME_MAX) {
    fail(p, p->line, key, "expected a pool name of 1..%d characters",
         TPOOL_NAME_MAX - 1);
    return 0;
  }
  for (size_t i = 0; i < p->o.nroutes; i++) {
    if (strcmp(p->o.routes[i].pattern, pattern) == 0) {
      fail(p, p->line, key, "set twice (first at line %d)",
           p->o.routes[i].line);
      return 0;
    }
  }
  if (p->o.nroutes == TPOOL_ROUTES_MAX) {
    fail(p, p->line, key, "too many routes (at most %d)", TPOOL_ROUTES_MAX);
    return 0;
  }
  tpool_route_t *r = &p->o.routes[p->o.nroutes++];
  memcpy(r->pattern, pattern, plen + 1);
  memcpy(r->pool, pool, vlen + 1);
  r->line = p->line;
  return 1;
}

/* The ini_handler: applies "name = value" to the current section. */
static int handler(void *user, const char *section, const char *name,
                   const char *value) {
  parser_t *p = user;
  char key[sizeof(p->err.key)];
  tpool__sbuf_t kb, mb;
  char msg[sizeof(p->err.message)];
  size_t i;
  void *base = p->sec == SEC_POOL ? (void *)p->pool : (void *)&p->o;

  (void)section; /* inih never sees a header; see reader() */
  if (p->failed)
    return 0;
  tpool__sbuf_init(&kb, key, sizeof(key));
  if (p->sec != SEC_NONE)
    tpool__sbuf_addf(&kb, "%s ", p->label);
  tpool__sbuf_echo(&kb, name, strlen(name));
  if (p->sec == SEC_NONE) {
    fail(p, p->line, key, "key outside any section");
    return 0;
  }
  if (value == NULL) {
    fail_syntax(p, p->line);
    return 0;
  }
  if (p->sec == SEC_ROUTES)
    return add_route(p, key, name, value);

  const tpool__keydef_t *def = NULL;
  int *line = NULL;
  if (p->sec == SEC_EXTRA) {
    /* The first section of the group that lists the key owns it. */
    for (size_t e = p->group; e < p->nextras && def == NULL; e++) {
      extra_t *x = &p->extras[e];
      for (i = 0; x->group == p->group && i < x->s->nkeys; i++) {
        if (strcmp(x->keys[i].name, name) == 0) {
          def = &x->keys[i];
          line = &x->key_line[i];
          base = x->prefix > 0 ? p->element : x->copy;
          break;
        }
      }
    }
  } else {
    for (i = 0; i < p->nkeys && strcmp(p->keys[i].name, name) != 0; i++)
      ;
    if (i < p->nkeys) {
      def = &p->keys[i];
      line = &p->key_line[i];
    }
  }
  if (def == NULL) {
    fail(p, p->line, key, "unknown key");
    return 0;
  }
  if (*line != 0) {
    fail(p, p->line, key, "set twice (first at line %d)", *line);
    return 0;
  }
  *line = p->line;

  tpool__sbuf_init(&mb, msg, sizeof(msg));
  if (!tpool__keydef_parse(def, value, base, &mb)) {
    fail(p, p->line, key, "%s", msg);
    return 0;
  }
  return 1;
}

/* Frees what extras_prepare() made. */
static void extras_free(parser_t *p) {
  for (size_t i = 0; p->extras && i < p->nextras; i++) {
    free(p->extras[i].keys);
    free(p->extras[i].key_line);
    free(p->extras[i].copy);
  }
  free(p->extras);
}

/* Checks sections[0..n) against the rules of tpool_config_section_t, each
   on its own and, for a family, against the others: the loader must know
   which section a header names. Returns 0, or -EINVAL with *err (if not
   NULL) naming `file`. */
static int check_sections(const char *file,
                          const tpool_config_section_t *sections, size_t n,
                          tpool_config_error_t *err) {
  char why[sizeof(err->message)], msg[sizeof(err->message)];
  tpool__sbuf_t wb, mb;
  bool ok = true;

  tpool__sbuf_init(&wb, why, sizeof(why));
  if (n > 0 && sections == NULL) {
    tpool__sbuf_addf(&wb, "no sections");
    ok = false;
  }
  for (size_t i = 0; ok && i < n; i++)
    ok = tpool__section_prepare(&sections[i], NULL, &wb);
  /* [schedule.x] must name one section: no other section's name starts
     with a family's "schedule.", another family's included. */
  for (size_t i = 0; ok && i < n; i++) {
    if (!tpool__section_is_family(&sections[i]))
      continue;
    size_t prefix = strlen(sections[i].name) - 1;
    for (size_t j = 0; ok && j < n; j++) {
      if (j != i && strncmp(sections[j].name, sections[i].name, prefix) == 0) {
        tpool__sbuf_addf(&wb,
                         "[%s] and [%s] share names: a family shares "
                         "its names with no other section",
                         sections[i].name, sections[j].name);
        ok = false;
      }
    }
  }
  if (!ok && err != NULL) {
    tpool__sbuf_init(&mb, msg, sizeof(msg));
    tpool__sbuf_addf(&mb, "invalid argument: %s", why);
    tpool__config_error_set(err, file, 0, NULL, msg);
  }
  return ok ? 0 : -EINVAL;
}

/* Checks sections[0..n) (see tpool_config_section_t) and makes the copies
   they are parsed into. Returns 0, or -EINVAL or -ENOMEM with p->err. */
static int extras_prepare(parser_t *p, const tpool_config_section_t *sections,
                          size_t n) {
  char why[sizeof(p->err.message)];
  tpool__sbuf_t wb;
  int rc;

  if (n == 0)
    return 0;
  rc = check_sections(p->name, sections, n, &p->err);
  if (rc != 0)
    return rc;
  tpool__sbuf_init(&wb, why, sizeof(why));
  p->extras = calloc(n, sizeof(*p->extras));
  if (p->extras == NULL)
    goto oom;
  p->nextras = n;
  for (size_t i = 0; i < n; i++) {
    extra_t *x = &p->extras[i];
    const tpool_config_section_t *s = &sections[i];
    x->s = s;
    x->group = i;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(sections[j].name, s->name) == 0) {
        x->group = p->extras[j].group;
        break;
      }
    }
    if (tpool__section_is_family(s))
      x->prefix = strlen(s->name) - 1;
    x->keys = calloc(s->nkeys + 1, sizeof(*x->keys));
    x->key_line = calloc(s->nkeys + 1, sizeof(*x->key_line));
    /* A family's elements are filled from its defaults as they are taken;
       check_sections() saw that max * size fits. */
    x->copy = malloc((x->prefix > 0 ? s->max * s->size : s->size) + 1);
    if (x->keys == NULL || x->key_line == NULL || x->copy == NULL)
      goto oom;
    tpool__section_prepare(s, x->keys, &wb);
    if (s->size > 0 && x->prefix == 0)
      memcpy(x->copy, s->data, s->size);
  }
  return 0;
oom:
  tpool__config_error_set(&p->err, p->name, 0, NULL, "out of memory");
  return -ENOMEM;
}

/* Writes back every field a key of each section fills: sections that share
   their data (or parts of it) change only their own fields. A family
   shares nothing: its elements taken are written whole, and its count. */
static void extras_commit(parser_t *p) {
  for (size_t i = 0; i < p->nextras; i++) {
    extra_t *x = &p->extras[i];
    if (x->prefix > 0) {
      if (x->n > 0)
        memcpy(x->s->data, x->copy, x->n * x->s->size);
      *x->s->count = x->n;
      continue;
    }
    for (size_t k = 0; k < x->s->nkeys; k++) {
      size_t off = x->keys[k].offset;
      memcpy((unsigned char *)x->s->data + off, x->copy + off,
             tpool__keydef_field_size(&x->keys[k]));
    }
  }
}

/* The checks of tpool_options_check() over the copies, the sections' fields
   included. Returns 0 or -EINVAL (p->err), or -ENOMEM. */
static int check_copies(parser_t *p) {
  tpool__check_section_t *cs = NULL;
  int rc;

  if (p->nextras > 0) {
    cs = calloc(p->nextras, sizeof(*cs));
    if (cs == NULL) {
      tpool__config_error_set(&p->err, p->name, 0, NULL, "out of memory");
      return -ENOMEM;
    }
  }
  for (size_t i = 0; i < p->nextras; i++) {
    cs[i].name = p->extras[i].s->name;
    cs[i].keys = p->extras[i].keys;
    cs[i].nkeys = p->extras[i].s->nkeys;
    /* A family's fields set in code are its defaults; those the file set
       were checked as they were parsed. */
    cs[i].data =
        p->extras[i].prefix > 0 ? p->extras[i].s->defaults : p->extras[i].copy;
  }
  rc = tpool__options_check(&p->o, cs, p->nextras, &p->err);
  free(cs);
  return rc;
}

/* Parses text into copies of *o and of the sections' data; on success
   commits them all. */
static int parse(tpool_options_t *o, const char *text, size_t len,
                 const char *name, const tpool_config_section_t *sections,
                 size_t n, tpool_config_error_t *err) {
  parser_t *p;
  int rc;

  if (name == NULL)
    name = "config";
  if (o == NULL || (text == NULL && len > 0)) {
    if (err != NULL)
      tpool__config_error_set(err, name, 0, NULL, "invalid argument");
    return -EINVAL;
  }
  if (len > TPOOL__CONFIG_FILE_MAX) {
    if (err != NULL)
      tpool__config_error_set(err, name, 0, NULL, TOO_LARGE);
    return -EINVAL;
  }
  p = calloc(1, sizeof(*p));
  if (p == NULL) {
    if (err != NULL)
      tpool__config_error_set(err, name, 0, NULL, "out of memory");
    return -ENOMEM;
  }
  memcpy(&p->o, o, sizeof(*o));
  p->name = name;
  p->text = text;
  p->len = len;
  rc = extras_prepare(p, sections, n);
  if (rc != 0) {
    if (err != NULL)
      *err = p->err;
    extras_free(p);
    free(p);
    return rc;
  }

  rc = ini_parse_stream(reader, p, handler, p);
  /* inih's own complaints (a line it cannot split) come back as the line
     of its first error; an earlier line than ours wins. */
  if (rc > 0 && (!p->failed || rc < p->err.line)) {
    p->failed = false;
    fail_syntax(p, rc);
  } else if (rc < 0 && !p->failed) {
    fail(p, 0, NULL, "out of memory"); /* inih's -2 */
    p->code = -ENOMEM;
  }

  if (!p->failed) {
    snprintf(p->o.config_path, sizeof(p->o.config_path), "%s", name);
    rc = check_copies(p);
    if (rc != 0) {
      p->failed = true;
      p->code = rc;
    }
  }
  if (p->failed) {
    rc = p->code;
    if (err != NULL)
      *err = p->err;
  } else {
    rc = 0;
    memcpy(o, &p->o, sizeof(*o));
    extras_commit(p);
    if (err != NULL)
      memset(err, 0, sizeof(*err));
  }
  extras_free(p);
  free(p);
  return rc;
}

int tpool_config_parse(tpool_options_t *o, const char *text, size_t len,
                       const char *name, tpool_config_error_t *err) {
  return parse(o, text, len, name, NULL, 0, err);
}

int tpool_config_parse_sections(tpool_options_t *o, const char *text,
                                size_t len, const char *name,
                                const tpool_config_section_t *sections,
                                size_t n, tpool_config_error_t *err) {
  return parse(o, text, len, name, sections, n, err);
}

/* ------------------------------------------------------------------------
 * Reading a file
 * ------------------------------------------------------------------------ */

static int io_error(tpool_config_error_t *err, const char *path,
                    const char *what, int e) {
  char buf[128], msg[256];

  if (err != NULL) {
    snprintf(msg, sizeof(msg), "%s: %s", what, strerror_r(e, buf, sizeof(buf)));
    tpool__config_error_set(err, path, 0, NULL, msg);
  }
  if (e == ENOENT)
    return -ENOENT;
  return e == EACCES || e == EPERM ? -EACCES : -EIO;
}

/* Reads the whole file into a new buffer (*out, caller frees). */
static int read_file(const char *path, char **out, size_t *len,
                     tpool_config_error_t *err) {
  size_t cap = 0, n = 0;
  char *buf = NULL, *nb;
  ssize_t r;
  int fd, rc = 0;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return io_error(err, path, "cannot open", errno);
  for (;;) {
    if (n == cap) {
      cap = cap == 0 ? 8192 : cap * 2;
      if (cap > TPOOL__CONFIG_FILE_MAX + 1)
        cap = TPOOL__CONFIG_FILE_MAX + 1;
      nb = realloc(buf, cap);
      if (nb == NULL) {
        if (err != NULL)
          tpool__config_error_set(err, path, 0, NULL, "out of memory");
        rc = -ENOMEM;
        break;
      }
      buf = nb;
    }
    r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = io_error(err, path, "cannot read", errno);
      break;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (n > TPOOL__CONFIG_FILE_MAX) {
      if (err != NULL)
        tpool__config_error_set(err, path, 0, NULL, TOO_LARGE);
      rc = -EINVAL;
      break;
    }
  }
  close(fd);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = n;
  return 0;
}

static int load(tpool_options_t *o, const char *path,
                const tpool_config_section_t *sections, size_t n,
                tpool_config_error_t *err) {
  char *text = NULL;
  size_t len = 0;
  int rc;

  if (o == NULL || path == NULL) {
    if (err != NULL)
      tpool__config_error_set(err, path ? path : "config", 0, NULL,
                              "invalid argument");
    return -EINVAL;
  }
  rc = check_sections(path, sections, n, err);
  if (rc != 0)
    return rc;
  rc = read_file(path, &text, &len, err);
  if (rc != 0)
    return rc;
  rc = parse(o, text, len, path, sections, n, err);
  free(text);
  return rc;
}

int tpool_config_load(tpool_options_t *o, const char *path,
                      tpool_config_error_t *err) {
  return load(o, path, NULL, 0, err);
}

int tpool_config_load_sections(tpool_options_t *o, const char *path,
                               const tpool_config_section_t *sections, size_t n,
                               tpool_config_error_t *err) {
  return load(o, path, sections, n, err);
}
