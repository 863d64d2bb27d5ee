/*
 * config_keys.h — what the config loader (config.c) and
 * tpool_options_check() (options.c) share, and nothing else: the tables
 * that say for every key of a section how its value is parsed, the range
 * it must fall in and the field it fills; the functions that parse one
 * value into its field or check one field set in code, both describing
 * what is wrong in the same words; and the bounded-string helpers their
 * messages are built with. All of it lives in config_values.c, but for
 * the sections of other layers (config_sections.c).
 */
#ifndef TPOOL_CORE_CONFIG_KEYS_H
#define TPOOL_CORE_CONFIG_KEYS_H

#include "internal.h"

/* ------------------------------------------------------------------------
 * Bounded strings: appends truncate and always leave a terminating NUL.
 * ------------------------------------------------------------------------ */

typedef struct tpool__sbuf {
  char *p;
  size_t size;
  size_t len;
} tpool__sbuf_t;

/* Starts an empty string in p[0..size); size must be at least 1. */
void tpool__sbuf_init(tpool__sbuf_t *b, char *p, size_t size);

/* Appends printf-style. */
void tpool__sbuf_addf(tpool__sbuf_t *b, const char *fmt, ...)
    TPOOL_PRINTF(2, 3);

/* Appends s[0..len) as a value is quoted in a message: up to 40 bytes,
   printable ASCII as is and other bytes as \xNN, then "..." if s was
   longer. */
void tpool__sbuf_echo(tpool__sbuf_t *b, const char *s, size_t len);

/* Length of a string stored in a fixed array of n bytes, or n if it is
   unterminated. */
size_t tpool__field_len(const char *s, size_t n);

/* Fills *e and its one-line text: FILE:LINE: KEY: MESSAGE, where the line
   is left out when 0 and the key when NULL or empty. */
void tpool__config_error_set(tpool_config_error_t *e, const char *file,
                             int line, const char *key, const char *msg);

/* ------------------------------------------------------------------------
 * The keys
 * ------------------------------------------------------------------------ */

/* How a value is parsed, and the type of the field it fills: the public
   types of tpool_config_type_t, with the same numbers, then core's own,
   numbered above them, which only core's tables use. */
typedef enum tpool__kind {
  TPOOL__KIND_BOOL = TPOOL_CONFIG_BOOL,       /* bool */
  TPOOL__KIND_UINT = TPOOL_CONFIG_UINT,       /* unsigned */
  TPOOL__KIND_COUNT = TPOOL_CONFIG_COUNT,     /* size_t */
  TPOOL__KIND_SIZE = TPOOL_CONFIG_SIZE,       /* size_t, bytes */
  TPOOL__KIND_SECONDS = TPOOL_CONFIG_SECONDS, /* double */
  TPOOL__KIND_RATIO = TPOOL_CONFIG_RATIO,     /* double, a fraction */
  TPOOL__KIND_PATH = TPOOL_CONFIG_PATH,       /* char[max + 1] */
  TPOOL__KIND_TOKEN = TPOOL_CONFIG_TOKEN,     /* char[max + 1] */
  TPOOL__KIND_ADDRESS = TPOOL_CONFIG_ADDRESS, /* tpool_config_address_t */
  TPOOL__KIND_STRING = TPOOL_CONFIG_STRING,   /* char[max + 1] */
  TPOOL__KIND_LEVEL = 64,                     /* tpool_log_level_t */
  TPOOL__KIND_LOG,         /* char[TPOOL_PATH_MAX]: stderr, stdout, a path */
  TPOOL__KIND_WORKERS,     /* unsigned, or "auto" */
  TPOOL__KIND_THREAD_NAME, /* char[TPOOL_THREAD_NAME_MAX] */
  TPOOL__KIND_AFFINITY     /* tpool_pool_options_t: has_affinity, bitmap */
} tpool__kind_t;

/* In code, any positive value is accepted (the file's minimum is a guard
   against typing errors, not a limit of the library). */
#define TPOOL__KEY_CODE_ABOVE_ZERO 1u
/* In code, TPOOL_MIN_EQUALS_MAX (UINT_MAX) passes too, as it always has for
   the unsigned keys of [pool.NAME]. */
#define TPOOL__KEY_CODE_UINT_MAX 2u

typedef struct tpool__keydef {
  const char *name;
  tpool__kind_t kind;
  double min, max;
  size_t offset; /* of the field in the section's struct */
  unsigned flags;
  bool (*valid)(const char *value); /* STRING: optional */
  const char *expect;               /* STRING: with valid */
} tpool__keydef_t;

/* The keys of [general] (fields of tpool_options_t) and of [pool.NAME]
   (fields of tpool_pool_options_t), in the order that
   tpool_options_check() checks them. */
#define TPOOL__GENERAL_NKEYS 5
#define TPOOL__POOL_NKEYS 18
extern const tpool__keydef_t tpool__general_keys[TPOOL__GENERAL_NKEYS];
extern const tpool__keydef_t tpool__pool_keys[TPOOL__POOL_NKEYS];

/*
 * Parses the value v of key k and stores it in the field at base +
 * k->offset (base: the struct of the key's section).
 * Returns true; or false, leaving the field alone, unless the whole value
 * is valid and in range, with what the key accepts and the value quoted
 * ("expected 1..4096 or auto, got \"x\"") appended to *msg.
 */
bool tpool__keydef_parse(const tpool__keydef_t *k, const char *v, void *base,
                         tpool__sbuf_t *msg);

/*
 * Checks the field of key k at base + k->offset, as set in code.
 * Returns true; or false with what the key accepts and the value found
 * appended to *msg.
 */
bool tpool__keydef_check(const tpool__keydef_t *k, const void *base,
                         tpool__sbuf_t *msg);

/* ------------------------------------------------------------------------
 * Sections of other layers (tpool_config_section_t)
 * ------------------------------------------------------------------------ */

/*
 * Checks section *s against the rules of tpool_config_section_t (its name,
 * every key's type, bounds and field inside data[0..size), aligned, and
 * a family's own members)
 * and, if defs is not NULL, converts its keys into defs[0..s->nkeys).
 * Returns true; or false with what is wrong appended to *why.
 */
bool tpool__section_prepare(const tpool_config_section_t *s,
                            tpool__keydef_t *defs, tpool__sbuf_t *why);

/* Whether *s is a family of sections: its name ends in ".*". */
bool tpool__section_is_family(const tpool_config_section_t *s);

/* The internal form of a public key (no flags). */
void tpool__keydef_from_public(const tpool_config_key_t *k, tpool__keydef_t *d);

/* The bytes of the field that key k fills. */
size_t tpool__keydef_field_size(const tpool__keydef_t *k);

/* A section's keys and the data they are checked against, for
   tpool__options_check(). */
typedef struct tpool__check_section {
  const char *name;
  const tpool__keydef_t *keys;
  size_t nkeys;
  const void *data;
} tpool__check_section_t;

/*
 * tpool_options_check(), with the fields of sections[0..n) checked after
 * [general] and before the pools, as "[name] key" with no line.
 * Returns: 0, or -EINVAL with *err filled (if not NULL).
 */
int tpool__options_check(const tpool_options_t *o,
                         const tpool__check_section_t *sections, size_t n,
                         tpool_config_error_t *err);

#endif /* TPOOL_CORE_CONFIG_KEYS_H */
