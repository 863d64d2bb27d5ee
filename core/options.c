/*
 * options.c — the default options, the list of pools in them, and
 * tpool_options_check().
 *
 * tpool_options_t is a plain struct in caller storage; this file fills it
 * with the defaults, finds pools in it by name, appends new ones, and
 * checks that a filled struct is usable: every field against the key
 * tables of config_values.c (the limits and wording a config file gets),
 * then what no single key can say (min_workers above workers, duplicate
 * pool names, no pool enabled).
 *
 * The built-in pool sizes live here, in core, rather than with the pool
 * presets in pools/: the config loader must be able to create a pool with
 * its defaults when a file names it, and core may not call into pools/.
 */
#include "config_keys.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The built-in kinds of work and their default sizes. */
static const struct preset {
  const char *name;
  unsigned workers;
} presets[] = {
    {"io", 50}, {"cpu", 30}, {"inference", 20}, {"embedding", 15}, {"db", 25},
};

/* Workers of a pool that has no preset. */
#define OTHER_POOL_WORKERS 4u

bool tpool__pool_name_is_valid(const char *name) {
  size_t n;

  if (name == NULL)
    return false;
  for (n = 0; name[n] != '\0'; n++) {
    char c = name[n];
    if (n >= TPOOL_NAME_MAX - 1)
      return false;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  }
  return n > 0;
}

void tpool_pool_options_init(tpool_pool_options_t *po, const char *name) {
  size_t i;

  /* Zero everything, padding included, so that two option structs built
     the same way compare equal with memcmp(). */
  memset(po, 0, sizeof(*po));
  if (name != NULL) {
    size_t n = strlen(name);
    if (n > TPOOL_NAME_MAX - 1)
      n = TPOOL_NAME_MAX - 1;
    memcpy(po->name, name, n);
  }

  po->enabled = true;
  po->max_workers = OTHER_POOL_WORKERS;
  for (i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
    if (strcmp(po->name, presets[i].name) == 0) {
      po->max_workers = presets[i].workers;
      break;
    }
  }
  po->min_workers = TPOOL_MIN_EQUALS_MAX;
  po->queue_limit = TPOOL__QUEUE_DEFAULT;
  po->idle_timeout_s = 60.0;
  po->stack_size = TPOOL__STACK_DEFAULT;
  po->soft_timeout_s = 60.0;
  po->retry_attempts = 1;
  po->retry_backoff_s = TPOOL__BACKOFF_DEFAULT;
  po->retry_backoff_max_s = TPOOL__BACKOFF_MAX_DEFAULT;
  po->breaker_window = 0;
  po->breaker_threshold = 0.5;
  po->breaker_cooldown_s = 30.0;
  po->breaker_trials = 3;
  po->task_history = TPOOL__HISTORY_DEFAULT;
  po->has_affinity = false;
  po->line = 0;
}

void tpool_options_init(tpool_options_t *o) {
  size_t i;

  memset(o, 0, sizeof(*o));
  o->verbose = false;
  o->status_interval_s = 10.0;
  o->log_level = TPOOL_LOG_INFO;
  strcpy(o->log_path, "stderr");
  o->log_cb = NULL;
  o->log_arg = NULL;
  o->completion_batch = 256;
  o->shutdown_timeout_s = 30.0;

  o->config_path[0] = '\0';
  for (i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
    tpool_pool_options_init(&o->pools[o->npools++], presets[i].name);
}

tpool_pool_options_t *tpool_options_pool(tpool_options_t *o, const char *name) {
  size_t i;

  if (o == NULL || name == NULL)
    return NULL;
  for (i = 0; i < o->npools && i < TPOOL_POOLS_MAX; i++) {
    if (strncmp(o->pools[i].name, name, TPOOL_NAME_MAX) == 0)
      return &o->pools[i];
  }
  return NULL;
}

int tpool_options_add_pool(tpool_options_t *o, const char *name,
                           tpool_pool_options_t **out) {
  tpool_pool_options_t *po;

  if (o == NULL || !tpool__pool_name_is_valid(name))
    return -EINVAL;
  if (tpool_options_pool(o, name) != NULL)
    return -EEXIST;
  if (o->npools >= TPOOL_POOLS_MAX)
    return -ENOSPC;

  po = &o->pools[o->npools++];
  tpool_pool_options_init(po, name);
  if (out != NULL)
    *out = po;
  return 0;
}

/* ------------------------------------------------------------------------
 * tpool_options_check(): the key tables, applied to values set in code.
 * ------------------------------------------------------------------------ */

typedef struct checker {
  const char *file;
  bool from_file;
  bool failed;
  tpool_config_error_t err;
} checker_t;

/* Keeps the error on the earliest line; one without a line comes first. */
static void check_fail(checker_t *c, int line, const char *key, const char *fmt,
                       ...) TPOOL_PRINTF(4, 5);

static void check_fail(checker_t *c, int line, const char *key, const char *fmt,
                       ...) {
  char msg[sizeof(c->err.message)];
  va_list ap;

  if (!c->from_file)
    line = 0;
  if (c->failed && (c->err.line == 0 || line >= c->err.line))
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  tpool__config_error_set(&c->err, c->file, line, key, msg);
  c->failed = true;
}

/* Checks every field of one section against its table. */
static void check_keys(checker_t *c, const tpool__keydef_t *keys, size_t nkeys,
                       const void *base, const char *label, int line,
                       bool skip_log) {
  char key[sizeof(c->err.key)], msg[sizeof(c->err.message)];
  tpool__sbuf_t mb;
  size_t i;

  for (i = 0; i < nkeys; i++) {
    if (skip_log && keys[i].kind == TPOOL__KIND_LOG)
      continue;
    tpool__sbuf_init(&mb, msg, sizeof(msg));
    if (tpool__keydef_check(&keys[i], base, &mb))
      continue;
    snprintf(key, sizeof(key), "%s %s", label, keys[i].name);
    check_fail(c, line, key, "%s", msg);
  }
}

static void check_pools(checker_t *c, const tpool_options_t *o) {
  char label[64];
  tpool__sbuf_t b;
  size_t i, j, n;

  for (i = 0; i < o->npools; i++) {
    const tpool_pool_options_t *po = &o->pools[i];

    n = tpool__field_len(po->name, sizeof(po->name));
    tpool__sbuf_init(&b, label, sizeof(label));
    tpool__sbuf_addf(&b, "[pool.");
    tpool__sbuf_echo(&b, po->name, n);
    tpool__sbuf_addf(&b, "]");
    if (n == sizeof(po->name) || !tpool__pool_name_is_valid(po->name)) {
      check_fail(c, po->line, label,
                 "pool name must be 1..%d of a-z, 0-9, _ and -",
                 TPOOL_NAME_MAX - 1);
      continue;
    }
    for (j = 0; j < i; j++) {
      if (strncmp(o->pools[j].name, po->name, sizeof(po->name)) == 0) {
        check_fail(c, po->line, label, "duplicate pool name");
        break;
      }
    }
    check_keys(c, tpool__pool_keys, TPOOL__POOL_NKEYS, po, label, po->line,
               false);
    if (po->min_workers != TPOOL_MIN_EQUALS_MAX &&
        po->min_workers > po->max_workers && po->max_workers >= 1 &&
        po->max_workers <= TPOOL_WORKERS_MAX) {
      char key[sizeof(c->err.key)];
      snprintf(key, sizeof(key), "%s min_workers", label);
      check_fail(c, po->line, key, "%u is above workers (%u)", po->min_workers,
                 po->max_workers);
    }
  }
}

/* Every route names an enabled pool, and its pattern is a string. */
static void check_routes(checker_t *c, const tpool_options_t *o) {
  char key[sizeof(c->err.key)];
  tpool__sbuf_t b;
  if (o->nroutes > TPOOL_ROUTES_MAX) {
    check_fail(c, 0, "[routes]", "too many routes (at most %d)",
               TPOOL_ROUTES_MAX);
    return;
  }
  for (size_t i = 0; i < o->nroutes; i++) {
    const tpool_route_t *r = &o->routes[i];
    size_t plen = tpool__field_len(r->pattern, sizeof(r->pattern));
    size_t vlen = tpool__field_len(r->pool, sizeof(r->pool));
    tpool__sbuf_init(&b, key, sizeof(key));
    tpool__sbuf_addf(&b, "[routes] ");
    tpool__sbuf_echo(&b, r->pattern, plen);
    if (plen == sizeof(r->pattern) || vlen == sizeof(r->pool)) {
      check_fail(c, r->line, key, "not a terminated string");
      continue;
    }
    size_t j = 0;
    while (j < o->npools &&
           (strcmp(o->pools[j].name, r->pool) != 0 || !o->pools[j].enabled))
      j++;
    if (j == o->npools)
      check_fail(c, r->line, key, "no enabled pool named \"%.*s\"", (int)vlen,
                 r->pool);
  }
}

int tpool__options_check(const tpool_options_t *o,
                         const tpool__check_section_t *sections, size_t n,
                         tpool_config_error_t *err) {
  checker_t c;
  size_t i;
  bool enabled = false;

  memset(&c, 0, sizeof(c));
  c.file = "options";
  if (o != NULL && tpool__field_len(o->config_path, TPOOL_PATH_MAX) > 0 &&
      tpool__field_len(o->config_path, TPOOL_PATH_MAX) < TPOOL_PATH_MAX) {
    c.file = o->config_path;
    c.from_file = true;
  }
  if (o == NULL) {
    check_fail(&c, 0, NULL, "invalid argument");
  } else if (o->npools > TPOOL_POOLS_MAX) {
    check_fail(&c, 0, NULL, "too many pools (at most %d)", TPOOL_POOLS_MAX);
  } else {
    check_keys(&c, tpool__general_keys, TPOOL__GENERAL_NKEYS, o, "[general]", 0,
               o->log_cb != NULL);
    if (o->completion_batch < 1 || o->completion_batch > TPOOL__BATCH_MAX)
      check_fail(&c, 0, "completion_batch", "expected 1..%u, got \"%u\"",
                 TPOOL__BATCH_MAX, o->completion_batch);
    for (i = 0; i < n; i++) {
      char label[72];
      snprintf(label, sizeof(label), "[%s]", sections[i].name);
      check_keys(&c, sections[i].keys, sections[i].nkeys, sections[i].data,
                 label, 0, false);
    }
    check_pools(&c, o);
    check_routes(&c, o);
    for (i = 0; i < o->npools; i++)
      enabled = enabled || o->pools[i].enabled;
    if (!c.failed && !enabled)
      check_fail(&c, 0, NULL, "no pool is enabled");
  }

  if (c.failed && err != NULL)
    *err = c.err;
  return c.failed ? -EINVAL : 0;
}

int tpool_options_check(const tpool_options_t *o, tpool_config_error_t *err) {
  return tpool__options_check(o, NULL, 0, err);
}

int tpool_config_check_section(const tpool_config_section_t *s,
                               const char *file, tpool_config_error_t *err) {
  checker_t c;
  char why[sizeof(c.err.message)], label[72];
  tpool__sbuf_t wb;
  tpool__keydef_t def;
  size_t i;

  memset(&c, 0, sizeof(c));
  c.file = file ? file : "options";
  tpool__sbuf_init(&wb, why, sizeof(why));
  if (!tpool__section_prepare(s, NULL, &wb)) {
    check_fail(&c, 0, NULL, "invalid argument: %s", why);
  } else {
    /* A family's elements are copies of its defaults until a file fills
       them: the defaults are what is set in code. */
    const void *base = tpool__section_is_family(s) ? s->defaults : s->data;
    snprintf(label, sizeof(label), "[%s]", s->name);
    for (i = 0; i < s->nkeys && !c.failed; i++) {
      tpool__keydef_from_public(&s->keys[i], &def);
      check_keys(&c, &def, 1, base, label, 0, false);
    }
  }
  if (c.failed && err != NULL)
    *err = c.err;
  return c.failed ? -EINVAL : 0;
}
