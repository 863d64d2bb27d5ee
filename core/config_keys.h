/*
 * config_keys.h — what the config loader (config.c) and
 * tpool_options_check() (options.c) share, and nothing else: the tables
 * that say for every key of a section how its value is parsed, the range
 * it must fall in and the field it fills; the functions that parse one
 * value into its field or check one field set in code, both describing
 * what is wrong in the same words; and the bounded-string helpers their
 * messages are built with. All of it lives in config_values.c.
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

/* How a value is parsed, and the type of the field it fills. */
typedef enum tpool__kind {
  TPOOL__KIND_BOOL,        /* bool */
  TPOOL__KIND_SECONDS,     /* double */
  TPOOL__KIND_RATIO,       /* double, a fraction */
  TPOOL__KIND_LEVEL,       /* tpool_log_level_t */
  TPOOL__KIND_LOG,         /* char[TPOOL_PATH_MAX] */
  TPOOL__KIND_PATH,        /* char[TPOOL_PATH_MAX], not empty */
  TPOOL__KIND_LISTEN,      /* tpool_http_options_t: host and port */
  TPOOL__KIND_TOKEN,       /* char[TPOOL_TOKEN_MAX] */
  TPOOL__KIND_SIZE,        /* size_t, bytes */
  TPOOL__KIND_WORKERS,     /* unsigned, or "auto" */
  TPOOL__KIND_UINT,        /* unsigned */
  TPOOL__KIND_COUNT,       /* size_t */
  TPOOL__KIND_THREAD_NAME, /* char[TPOOL_THREAD_NAME_MAX] */
  TPOOL__KIND_AFFINITY     /* tpool_pool_options_t: has_affinity, bitmap */
} tpool__kind_t;

/* In code, any positive value is accepted (the file's minimum is a guard
   against typing errors, not a limit of the library). */
#define TPOOL__KEY_CODE_ABOVE_ZERO 1u

typedef struct tpool__keydef {
  const char *name;
  tpool__kind_t kind;
  double min, max;
  size_t offset; /* of the field in tpool_options_t or tpool_pool_options_t */
  unsigned flags;
} tpool__keydef_t;

/* The keys of [general], [http] and [demo] (fields of tpool_options_t)
   and of [pool.NAME] (fields of tpool_pool_options_t), in the order that
   tpool_options_check() checks them. */
#define TPOOL__GENERAL_NKEYS 5
#define TPOOL__HTTP_NKEYS 6
#define TPOOL__DEMO_NKEYS 3
#define TPOOL__POOL_NKEYS 18
extern const tpool__keydef_t tpool__general_keys[TPOOL__GENERAL_NKEYS];
extern const tpool__keydef_t tpool__http_keys[TPOOL__HTTP_NKEYS];
extern const tpool__keydef_t tpool__demo_keys[TPOOL__DEMO_NKEYS];
extern const tpool__keydef_t tpool__pool_keys[TPOOL__POOL_NKEYS];

/*
 * Parses the value v of key k and stores it in the field at base +
 * k->offset (base: the tpool_options_t or tpool_pool_options_t).
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

#endif /* TPOOL_CORE_CONFIG_KEYS_H */
