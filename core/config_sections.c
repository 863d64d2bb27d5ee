/*
 * config_sections.c — the sections of other layers (tpool_config_section_t)
 * as the loader (config.c) and tpool_config_check_section() (options.c)
 * see them: checked against the rules tpool.h states for them (a name of
 * the layer's own, known types, sane bounds, every field inside the data
 * and aligned), and their keys turned into core's own key definitions, so
 * that one parser and one checker (config_values.c) serve every section.
 *
 * DESIGN: a family ("schedule.*") is checked here as one element of
 * `size` bytes — its keys, the name and line fields its instances get,
 * and `defaults` — plus what makes `max` elements of it addressable
 * (size a multiple of every field's alignment, max * size in a size_t).
 * Whether a family's names collide with another section's is a question
 * about the whole list, which the loader asks (config.c).
 */
#include "config_keys.h"

#include <limits.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

/* The public types, for the keys of a tpool_config_section_t. */
static bool is_public_kind(tpool_config_type_t t) {
  switch (t) {
  case TPOOL_CONFIG_BOOL:
  case TPOOL_CONFIG_UINT:
  case TPOOL_CONFIG_COUNT:
  case TPOOL_CONFIG_SIZE:
  case TPOOL_CONFIG_SECONDS:
  case TPOOL_CONFIG_RATIO:
  case TPOOL_CONFIG_PATH:
  case TPOOL_CONFIG_TOKEN:
  case TPOOL_CONFIG_ADDRESS:
  case TPOOL_CONFIG_STRING:
    return true;
  }
  return false;
}

size_t tpool__keydef_field_size(const tpool__keydef_t *k) {
  switch (k->kind) {
  case TPOOL__KIND_BOOL:
    return sizeof(bool);
  case TPOOL__KIND_UINT:
  case TPOOL__KIND_WORKERS:
    return sizeof(unsigned);
  case TPOOL__KIND_COUNT:
  case TPOOL__KIND_SIZE:
    return sizeof(size_t);
  case TPOOL__KIND_SECONDS:
  case TPOOL__KIND_RATIO:
    return sizeof(double);
  case TPOOL__KIND_PATH:
  case TPOOL__KIND_TOKEN:
  case TPOOL__KIND_STRING:
    return (size_t)k->max + 1;
  case TPOOL__KIND_ADDRESS:
    return sizeof(tpool_config_address_t);
  case TPOOL__KIND_LEVEL:
    return sizeof(tpool_log_level_t);
  case TPOOL__KIND_LOG:
    return TPOOL_PATH_MAX;
  case TPOOL__KIND_THREAD_NAME:
    return TPOOL_THREAD_NAME_MAX;
  case TPOOL__KIND_AFFINITY:
    return sizeof(tpool_pool_options_t);
  }
  return 0;
}

static size_t field_align(tpool__kind_t kind) {
  switch (kind) {
  case TPOOL__KIND_UINT:
    return alignof(unsigned);
  case TPOOL__KIND_COUNT:
  case TPOOL__KIND_SIZE:
    return alignof(size_t);
  case TPOOL__KIND_SECONDS:
  case TPOOL__KIND_RATIO:
    return alignof(double);
  case TPOOL__KIND_ADDRESS:
    return alignof(tpool_config_address_t);
  default:
    return 1;
  }
}

/* The longest string field a key may ask for (PATH, TOKEN, STRING). */
#define STRING_KEY_MAX 65536.0

bool tpool__section_is_family(const tpool_config_section_t *s) {
  size_t n = s->name ? strlen(s->name) : 0;
  return n >= 2 && strcmp(s->name + n - 2, ".*") == 0;
}

/* A section name: 1..63 of A-Z a-z 0-9 _ . -, none of core's own; or a
   family's, such a name followed by ".*" (63 in all). */
static bool section_name_ok(const char *name) {
  size_t n = name ? strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "abcdefghijklmnopqrstuvwxyz0123456789_.-")
                  : 0;
  bool family = n > 1 && name[n - 1] == '.' && strcmp(name + n, "*") == 0;
  return n > 0 && n + family < 64 && (name[n] == '\0' || family) &&
         strcmp(name, "general") != 0 && strcmp(name, "routes") != 0 &&
         strncmp(name, "pool.", 5) != 0;
}

/* The largest value the field of a numeric type holds. */
static double type_max(tpool_config_type_t t) {
  switch (t) {
  case TPOOL_CONFIG_UINT:
    return (double)UINT_MAX;
  case TPOOL_CONFIG_COUNT:
  case TPOOL_CONFIG_SIZE:
    return (double)SIZE_MAX;
  case TPOOL_CONFIG_ADDRESS:
    return (double)TPOOL__PORT_MAX;
  case TPOOL_CONFIG_PATH:
  case TPOOL_CONFIG_TOKEN:
  case TPOOL_CONFIG_STRING:
    return STRING_KEY_MAX;
  default:
    return 1e300;
  }
}

void tpool__keydef_from_public(const tpool_config_key_t *k,
                               tpool__keydef_t *d) {
  d->name = k->name;
  d->kind = (tpool__kind_t)k->type;
  d->min = k->min;
  d->max = k->max;
  d->offset = k->offset;
  d->flags = 0;
  d->valid = k->type == TPOOL_CONFIG_STRING ? k->valid : NULL;
  d->expect = k->type == TPOOL_CONFIG_STRING ? k->expect : NULL;
}

/* True for the types whose field is a char array of max + 1 bytes. */
static bool is_string_type(tpool_config_type_t t) {
  return t == TPOOL_CONFIG_PATH || t == TPOOL_CONFIG_TOKEN ||
         t == TPOOL_CONFIG_STRING;
}

/* Whether [a, a + an) and [b, b + bn) share a byte. */
static bool overlaps(size_t a, size_t an, size_t b, size_t bn) {
  return a < b + bn && b < a + an;
}

/* The rules of a family's own members (tpool.h); a section that is not a
   family has them all 0. */
static bool family_ok(const tpool_config_section_t *s, tpool__sbuf_t *why) {
  const char *problem = NULL;

  if (!tpool__section_is_family(s)) {
    if (s->max != 0 || s->count != NULL || s->defaults != NULL ||
        s->name_offset != 0 || s->line_offset != 0)
      problem = "max, count, defaults, name_offset and line_offset are for "
                "a family (a name ending in .*) only";
  } else if (s->max < 1 || s->count == NULL || s->defaults == NULL ||
             s->data == NULL) {
    problem = "a family needs max >= 1, count, defaults and data";
  } else if (s->name_offset > s->size ||
             s->size - s->name_offset < TPOOL_NAME_MAX ||
             s->line_offset > s->size ||
             s->size - s->line_offset < sizeof(int) ||
             overlaps(s->name_offset, TPOOL_NAME_MAX, s->line_offset,
                      sizeof(int))) {
    problem = "its name (char[TPOOL_NAME_MAX]) and line (int) fields lie "
              "outside an element, or over each other";
  } else if (s->line_offset % alignof(int) != 0 ||
             s->size % alignof(int) != 0 ||
             (uintptr_t)s->data % alignof(int) != 0) {
    problem = "its line field is not aligned for an int";
  } else if (s->max > SIZE_MAX / s->size) {
    problem = "max elements of size bytes are more than a size_t counts";
  }
  if (problem != NULL)
    tpool__sbuf_addf(why, "[%s]: %s", s->name, problem);
  return problem == NULL;
}

bool tpool__section_prepare(const tpool_config_section_t *s,
                            tpool__keydef_t *defs, tpool__sbuf_t *why) {
  size_t i;

  if (s == NULL || !section_name_ok(s->name)) {
    tpool__sbuf_addf(why, "invalid section name ");
    if (s == NULL || s->name == NULL) {
      tpool__sbuf_addf(why, "(none)");
    } else {
      tpool__sbuf_addf(why, "\"");
      tpool__sbuf_echo(why, s->name, strlen(s->name));
      tpool__sbuf_addf(why, "\"");
    }
    tpool__sbuf_addf(why, " (1..63 of A-Z a-z 0-9 _ . -, or such a name "
                          "and .* for a family; not general, routes or "
                          "pool.*)");
    return false;
  }
  if (s->nkeys > 0 && (s->keys == NULL || s->data == NULL)) {
    tpool__sbuf_addf(why, "[%s]: keys or data missing", s->name);
    return false;
  }
  if (!family_ok(s, why))
    return false;
  for (i = 0; i < s->nkeys; i++) {
    const tpool_config_key_t *k = &s->keys[i];
    tpool__keydef_t d;
    const char *problem = NULL;

    tpool__keydef_from_public(k, &d);
    if (k->name == NULL || k->name[0] == '\0')
      problem = "a key without a name";
    else if (!is_public_kind(k->type))
      problem = "unknown type";
    else if (!(k->min >= 0 && k->min <= k->max &&
               k->max <= type_max(k->type)) ||
             (is_string_type(k->type) && k->max != (double)(size_t)k->max))
      problem = "bounds out of order or beyond what its field holds";
    else if (k->type == TPOOL_CONFIG_STRING &&
             (k->valid == NULL) != (k->expect == NULL))
      problem = "valid and expect go together";
    else if (s->max > 0 && (overlaps(k->offset, tpool__keydef_field_size(&d),
                                     s->name_offset, TPOOL_NAME_MAX) ||
                            overlaps(k->offset, tpool__keydef_field_size(&d),
                                     s->line_offset, sizeof(int))))
      problem = "its field overlaps the name or line of the family";
    else if (k->offset > s->size ||
             tpool__keydef_field_size(&d) > s->size - k->offset)
      problem = "its field lies outside the section's data";
    else if (k->offset % field_align(d.kind) != 0 ||
             (uintptr_t)s->data % field_align(d.kind) != 0 ||
             (s->max > 0 &&
              (s->size % field_align(d.kind) != 0 ||
               (uintptr_t)s->defaults % field_align(d.kind) != 0)))
      problem = "its field is not aligned for its type";
    if (problem != NULL) {
      tpool__sbuf_addf(why, "[%s] ", s->name);
      tpool__sbuf_echo(why, k->name ? k->name : "",
                       k->name ? strlen(k->name) : 0);
      tpool__sbuf_addf(why, ": %s", problem);
      return false;
    }
    if (defs != NULL)
      defs[i] = d;
  }
  return true;
}
