/*
 * config_values.c — the keys of a config file and their values.
 *
 * One table per section says, for every key, how its value is parsed, the
 * range it must fall in and the field it fills. The loader (config.c)
 * parses each value through tpool__keydef_parse() and tpool_options_check()
 * (options.c) checks each field through tpool__keydef_check(); both read
 * the same tables, so a value set in code and one read from a file are
 * held to the same limits and described in the same words. The value
 * parsers are strict and hand-written: no sign where none is meant, no
 * blanks, no hex, and nothing that depends on the C locale (a program may
 * have set LC_NUMERIC to one with a decimal comma). The bounded-string
 * helpers and the error formatting that the messages share live here too.
 */
#include "config_keys.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define ECHO_MAX 40 /* bytes of a bad value quoted in a message */
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(TPOOL__PORT_MAX <= UINT16_MAX,
               "an address's port is a uint16_t");

/* ------------------------------------------------------------------------
 * Bounded strings and errors
 * ------------------------------------------------------------------------ */

void tpool__sbuf_init(tpool__sbuf_t *b, char *p, size_t size) {
  b->p = p;
  b->size = size;
  b->len = 0;
  p[0] = '\0';
}

void tpool__sbuf_addf(tpool__sbuf_t *b, const char *fmt, ...) {
  va_list ap;
  int n;

  if (b->len + 1 >= b->size)
    return;
  va_start(ap, fmt);
  n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
  va_end(ap);
  if (n > 0)
    b->len += (size_t)n < b->size - b->len ? (size_t)n : b->size - b->len - 1;
}

void tpool__sbuf_echo(tpool__sbuf_t *b, const char *s, size_t len) {
  size_t i;

  for (i = 0; i < len && i < ECHO_MAX; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f)
      tpool__sbuf_addf(b, "%c", c);
    else
      tpool__sbuf_addf(b, "\\x%02x", c);
  }
  if (len > ECHO_MAX)
    tpool__sbuf_addf(b, "...");
}

/* Shortest exact form of a byte count: 64K, 1M, 1G, or plain bytes. */
static void sbuf_add_size(tpool__sbuf_t *b, size_t v) {
  static const char units[] = "GMK";
  int i;

  for (i = 0; i < 3 && v != 0; i++) {
    size_t unit = (size_t)1 << (10 * (3 - i));
    if (v % unit == 0) {
      tpool__sbuf_addf(b, "%zu%c", v / unit, units[i]);
      return;
    }
  }
  tpool__sbuf_addf(b, "%zu", v);
}

size_t tpool__field_len(const char *s, size_t n) {
  const char *nul = memchr(s, '\0', n);
  return nul ? (size_t)(nul - s) : n;
}

void tpool__config_error_set(tpool_config_error_t *e, const char *file,
                             int line, const char *key, const char *msg) {
  tpool__sbuf_t b;

  memset(e, 0, sizeof(*e));
  snprintf(e->file, sizeof(e->file), "%s", file);
  e->line = line > 0 ? line : 0;
  snprintf(e->key, sizeof(e->key), "%s", key ? key : "");
  snprintf(e->message, sizeof(e->message), "%s", msg);

  tpool__sbuf_init(&b, e->text, sizeof(e->text));
  tpool__sbuf_addf(&b, "%s", e->file);
  if (e->line > 0)
    tpool__sbuf_addf(&b, ":%d", e->line);
  tpool__sbuf_addf(&b, ": ");
  if (e->key[0] != '\0')
    tpool__sbuf_addf(&b, "%s: ", e->key);
  tpool__sbuf_addf(&b, "%s", e->message);
}

/* ------------------------------------------------------------------------
 * The keys
 * ------------------------------------------------------------------------ */

#define GENERAL(f) offsetof(tpool_options_t, f)
#define POOL(f) offsetof(tpool_pool_options_t, f)

const tpool__keydef_t tpool__general_keys[] = {
    {"verbose", TPOOL__KIND_BOOL, 0, 0, GENERAL(verbose), 0, NULL, NULL},
    {"status_interval", TPOOL__KIND_SECONDS, TPOOL__STATUS_INTERVAL_MIN,
     TPOOL__SECONDS_MAX, GENERAL(status_interval_s), TPOOL__KEY_CODE_ABOVE_ZERO,
     NULL, NULL},
    {"log_level", TPOOL__KIND_LEVEL, 0, 0, GENERAL(log_level), 0, NULL, NULL},
    {"log", TPOOL__KIND_LOG, 0, 0, GENERAL(log_path), 0, NULL, NULL},
    {"shutdown_timeout", TPOOL__KIND_SECONDS, 0, TPOOL__SECONDS_MAX,
     GENERAL(shutdown_timeout_s), 0, NULL, NULL},
};

const tpool__keydef_t tpool__pool_keys[] = {
    {"enabled", TPOOL__KIND_BOOL, 0, 0, POOL(enabled), 0, NULL, NULL},
    {"workers", TPOOL__KIND_WORKERS, 1, TPOOL_WORKERS_MAX, POOL(max_workers), 0,
     NULL, NULL},
    {"min_workers", TPOOL__KIND_UINT, 0, TPOOL_WORKERS_MAX, POOL(min_workers),
     TPOOL__KEY_CODE_UINT_MAX, NULL, NULL},
    {"queue_limit", TPOOL__KIND_COUNT, 1, (double)TPOOL__QUEUE_LIMIT_MAX,
     POOL(queue_limit), 0, NULL, NULL},
    {"idle_timeout", TPOOL__KIND_SECONDS, TPOOL__IDLE_TIMEOUT_MIN,
     TPOOL__SECONDS_MAX, POOL(idle_timeout_s), 0, NULL, NULL},
    {"stack_size", TPOOL__KIND_SIZE, (double)TPOOL__STACK_MIN,
     (double)TPOOL__STACK_MAX, POOL(stack_size), 0, NULL, NULL},
    {"soft_timeout", TPOOL__KIND_SECONDS, 0, TPOOL__SECONDS_MAX,
     POOL(soft_timeout_s), 0, NULL, NULL},
    {"spin", TPOOL__KIND_SECONDS, 0, TPOOL__SPIN_MAX, POOL(spin_s), 0, NULL,
     NULL},
    {"thread_name", TPOOL__KIND_THREAD_NAME, 1, TPOOL_THREAD_NAME_MAX - 1,
     POOL(thread_name), 0, NULL, NULL},
    {"cpu_affinity", TPOOL__KIND_AFFINITY, 0, TPOOL_CPUS_MAX - 1, 0, 0, NULL,
     NULL},
    {"retry_attempts", TPOOL__KIND_UINT, 1, TPOOL__ATTEMPTS_MAX,
     POOL(retry_attempts), TPOOL__KEY_CODE_UINT_MAX, NULL, NULL},
    {"retry_backoff", TPOOL__KIND_SECONDS, TPOOL__BACKOFF_MIN,
     TPOOL__BACKOFF_MAX, POOL(retry_backoff_s), 0, NULL, NULL},
    {"retry_backoff_max", TPOOL__KIND_SECONDS, TPOOL__BACKOFF_MIN,
     TPOOL__BACKOFF_MAX, POOL(retry_backoff_max_s), 0, NULL, NULL},
    {"breaker_window", TPOOL__KIND_UINT, 0, TPOOL_BREAKER_WINDOW_MAX,
     POOL(breaker_window), TPOOL__KEY_CODE_UINT_MAX, NULL, NULL},
    {"breaker_threshold", TPOOL__KIND_RATIO, TPOOL__THRESHOLD_MIN, 1,
     POOL(breaker_threshold), 0, NULL, NULL},
    {"breaker_cooldown", TPOOL__KIND_SECONDS, TPOOL__COOLDOWN_MIN,
     TPOOL__SECONDS_MAX, POOL(breaker_cooldown_s), 0, NULL, NULL},
    {"breaker_trials", TPOOL__KIND_UINT, 1, TPOOL__TRIALS_MAX,
     POOL(breaker_trials), TPOOL__KEY_CODE_UINT_MAX, NULL, NULL},
    {"task_history", TPOOL__KIND_COUNT, 0, (double)TPOOL__HISTORY_MAX,
     POOL(task_history), 0, NULL, NULL},
};

/* Writes what a key accepts: "expected 1..4096 or auto". */
static void describe(tpool__sbuf_t *b, const tpool__keydef_t *k) {
  switch (k->kind) {
  case TPOOL__KIND_BOOL:
    tpool__sbuf_addf(b, "expected true or false");
    break;
  case TPOOL__KIND_SECONDS:
    tpool__sbuf_addf(b, "expected seconds in %g..%g", k->min, k->max);
    break;
  case TPOOL__KIND_RATIO:
    tpool__sbuf_addf(b, "expected a fraction in %g..%g", k->min, k->max);
    break;
  case TPOOL__KIND_LEVEL:
    tpool__sbuf_addf(b, "expected debug, info, warn or error");
    break;
  case TPOOL__KIND_LOG:
    tpool__sbuf_addf(b, "expected stderr, stdout or a path of up to %d bytes",
                     TPOOL_PATH_MAX - 1);
    break;
  case TPOOL__KIND_PATH:
    if (k->min > 0)
      tpool__sbuf_addf(b, "expected a path of %.0f..%.0f bytes", k->min,
                       k->max);
    else
      tpool__sbuf_addf(b, "expected a path of up to %.0f bytes", k->max);
    break;
  case TPOOL__KIND_ADDRESS:
    tpool__sbuf_addf(b,
                     "expected HOST:PORT with a numeric IPv4 or [IPv6] "
                     "address and a port in %.0f..%.0f",
                     k->min, k->max);
    break;
  case TPOOL__KIND_TOKEN:
    if (k->min > 0)
      tpool__sbuf_addf(b,
                       "expected %.0f..%.0f printable characters without "
                       "spaces",
                       k->min, k->max);
    else
      tpool__sbuf_addf(
          b, "expected up to %.0f printable characters without spaces", k->max);
    break;
  case TPOOL__KIND_STRING:
    if (k->expect)
      tpool__sbuf_addf(b, "%s", k->expect);
    else
      tpool__sbuf_addf(b,
                       "expected %.0f..%.0f printable characters without "
                       "spaces",
                       k->min, k->max);
    break;
  case TPOOL__KIND_SIZE:
    tpool__sbuf_addf(b, "expected a size in ");
    sbuf_add_size(b, (size_t)k->min);
    tpool__sbuf_addf(b, "..");
    sbuf_add_size(b, (size_t)k->max);
    tpool__sbuf_addf(b, " (bytes, or with a K, M or G suffix)");
    break;
  case TPOOL__KIND_WORKERS:
    tpool__sbuf_addf(b, "expected %.0f..%.0f or auto", k->min, k->max);
    break;
  case TPOOL__KIND_UINT:
  case TPOOL__KIND_COUNT:
    tpool__sbuf_addf(b, "expected %.0f..%.0f", k->min, k->max);
    break;
  case TPOOL__KIND_THREAD_NAME:
    tpool__sbuf_addf(b, "expected %.0f..%.0f of A-Z a-z 0-9 _ . -", k->min,
                     k->max);
    break;
  case TPOOL__KIND_AFFINITY:
    tpool__sbuf_addf(
        b, "expected CPU numbers or ranges in 0..%.0f such as 0-3,6", k->max);
    break;
  }
}

/* False for the keys whose value is never echoed: a secret, or a path
   that may be long. */
static bool echoes_value(const tpool__keydef_t *k) {
  return k->kind != TPOOL__KIND_TOKEN && k->kind != TPOOL__KIND_LOG &&
         k->kind != TPOOL__KIND_PATH;
}

/* ------------------------------------------------------------------------
 * Values. Each parser returns false, leaving its output alone, unless the
 * whole value is valid and in range.
 * ------------------------------------------------------------------------ */

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Decimal digits only, at least one, no overflow. */
static bool parse_u64(const char *v, uint64_t *out) {
  uint64_t n = 0;

  if (*v == '\0')
    return false;
  for (; *v != '\0'; v++) {
    if (!is_digit(*v) || n > (UINT64_MAX - (uint64_t)(*v - '0')) / 10)
      return false;
    n = n * 10 + (uint64_t)(*v - '0');
  }
  *out = n;
  return true;
}

static bool in_range(const tpool__keydef_t *k, uint64_t n) {
  return (double)n >= k->min && (double)n <= k->max;
}

static bool parse_bool(const char *v, bool *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  size_t i;

  for (i = 0; i < NELEMS(yes); i++) {
    if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
      *out = strcasecmp(v, yes[i]) == 0;
      return true;
    }
  }
  return false;
}

/* Significant digits kept by parse_decimal(): 10^19 - 1 fits a uint64_t. */
#define DECIMAL_DIGITS_MAX 19
/* The largest power of ten a double holds exactly. */
#define EXACT_POW10_MAX 22

/* 10^n for 0 <= n <= EXACT_POW10_MAX: every product here is exact. */
static double pow10_exact(int n) {
  double p = 1.0;

  while (n-- > 0)
    p *= 10.0;
  return p;
}

/* DIGITS or DIGITS.DIGITS, and nothing else: no sign, exponent, hex,
   inf, nan or blanks. Read by hand because strtod() takes its decimal
   point from LC_NUMERIC. With at most 15 significant digits and 22
   decimals (any sensible duration) the result is one correctly rounded
   division of exact values, so the double nearest the decimal, as from
   strtod(); longer forms may land an ulp away. */
static bool parse_decimal(const char *v, double *out) {
  size_t nint = strspn(v, "0123456789"), nfrac = 0;
  uint64_t m = 0; /* the value is m * 10^scale */
  int scale = 0, nsig = 0;
  bool frac = false;
  double d;

  if (nint == 0)
    return false;
  if (v[nint] == '.') {
    nfrac = strspn(v + nint + 1, "0123456789");
    if (nfrac == 0 || v[nint + 1 + nfrac] != '\0')
      return false;
  } else if (v[nint] != '\0') {
    return false;
  }

  for (; *v != '\0'; v++) {
    if (*v == '.') {
      frac = true;
    } else if (nsig < DECIMAL_DIGITS_MAX) {
      m = m * 10 + (uint64_t)(*v - '0');
      if (m != 0) /* leading zeros are not significant */
        nsig++;
      if (frac)
        scale--;
    } else if (!frac) {
      scale++; /* an integer digit past the ones kept */
    }
  }

  d = (double)m;
  for (; scale < -EXACT_POW10_MAX; scale += EXACT_POW10_MAX)
    d /= pow10_exact(EXACT_POW10_MAX);
  for (; scale > EXACT_POW10_MAX; scale -= EXACT_POW10_MAX)
    d *= pow10_exact(EXACT_POW10_MAX);
  *out = scale < 0 ? d / pow10_exact(-scale) : d * pow10_exact(scale);
  return true;
}

static bool parse_seconds(const tpool__keydef_t *k, const char *v,
                          double *out) {
  double d;

  if (!parse_decimal(v, &d) || d < k->min || d > k->max)
    return false;
  *out = d;
  return true;
}

/* Bytes, with an optional K, M or G suffix (powers of 1024). */
static bool parse_size(const tpool__keydef_t *k, const char *v, size_t *out) {
  static const char units[] = "KMGkmg"; /* 1024^1..3, in either case */
  char digits[32];
  size_t n = strlen(v);
  uint64_t val, mult = 1;
  const char *unit = n > 0 ? strchr(units, v[n - 1]) : NULL;

  if (unit != NULL) {
    mult = (uint64_t)1 << (10 * (1 + (unit - units) % 3));
    n--;
  }
  if (n == 0 || n >= sizeof(digits))
    return false;
  memcpy(digits, v, n);
  digits[n] = '\0';
  if (!parse_u64(digits, &val) || val > UINT64_MAX / mult)
    return false;
  val *= mult;
  if (!in_range(k, val))
    return false;
  *out = (size_t)val;
  return true;
}

static bool parse_level(const char *v, tpool_log_level_t *out) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  size_t i;

  for (i = 0; i < NELEMS(names); i++) {
    if (strcasecmp(v, names[i]) == 0) {
      *out = (tpool_log_level_t)i;
      return true;
    }
  }
  return false;
}

static bool host_is_numeric(const char *host) {
  unsigned char addr[16];
  return inet_pton(AF_INET, host, addr) == 1 ||
         inet_pton(AF_INET6, host, addr) == 1;
}

/* 1.2.3.4:80 or [::1]:80, the port in the key's range. */
static bool parse_address(const tpool__keydef_t *k, const char *v,
                          tpool_config_address_t *a) {
  char host[sizeof(a->host)];
  const char *start = v, *end, *port;
  uint64_t p;
  int family = AF_INET;
  unsigned char addr[16];

  if (*v == '[') {
    start = v + 1;
    end = strchr(start, ']');
    if (end == NULL || end[1] != ':')
      return false;
    port = end + 2;
    family = AF_INET6;
  } else {
    end = strrchr(v, ':');
    if (end == NULL)
      return false;
    port = end + 1;
  }
  if (end == start || (size_t)(end - start) >= sizeof(host))
    return false;
  memset(host, 0, sizeof(host));
  memcpy(host, start, (size_t)(end - start));
  if (inet_pton(family, host, addr) != 1 || !parse_u64(port, &p) ||
      !in_range(k, p) || p > TPOOL__PORT_MAX)
    return false;
  memcpy(a->host, host, sizeof(host)); /* zero-padded, like init */
  a->port = (uint16_t)p;
  return true;
}

/* Printable ASCII without spaces, at most `max` bytes. */
static bool token_is_valid(const char *v, size_t len, size_t max) {
  size_t i;

  if (len > max)
    return false;
  for (i = 0; i < len; i++) {
    if (v[i] < 0x21 || v[i] > 0x7e)
      return false;
  }
  return true;
}

/* [A-Za-z0-9_.-], at most max bytes (Linux thread names hold 15). */
static bool thread_name_is_valid(const char *v, size_t len, size_t max) {
  size_t i;

  if (len > max)
    return false;
  for (i = 0; i < len; i++) {
    char c = v[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) ||
          c == '_' || c == '.' || c == '-'))
      return false;
  }
  return true;
}

/* A CPU number 0..TPOOL_CPUS_MAX - 1; advances *s past it. */
static bool parse_cpu(const char **s, unsigned *out) {
  unsigned n = 0;

  if (!is_digit(**s))
    return false;
  for (; is_digit(**s); (*s)++) {
    n = n * 10 + (unsigned)(**s - '0');
    if (n >= TPOOL_CPUS_MAX)
      return false;
  }
  *out = n;
  return true;
}

/* A list of CPUs and ranges, "0-3,6"; blanks are allowed around items. */
static bool parse_affinity(const char *s, tpool_pool_options_t *po) {
  uint64_t bits[TPOOL_CPUS_MAX / 64] = {0};
  unsigned lo, hi, c;

  for (;;) {
    s += strspn(s, " \t");
    if (!parse_cpu(&s, &lo))
      return false;
    hi = lo;
    if (*s == '-') {
      s++;
      if (!parse_cpu(&s, &hi) || hi < lo)
        return false;
    }
    for (c = lo; c <= hi; c++)
      bits[c / 64] |= (uint64_t)1 << (c % 64);
    s += strspn(s, " \t");
    if (*s == '\0')
      break;
    if (*s++ != ',')
      return false;
  }
  po->has_affinity = true;
  memcpy(po->cpu_affinity, bits, sizeof(bits));
  return true;
}

/* Online CPUs, clamped to 1..TPOOL_WORKERS_MAX. */
static unsigned online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);

  if (n < 1)
    return 1;
  return n > TPOOL_WORKERS_MAX ? TPOOL_WORKERS_MAX : (unsigned)n;
}

/* Stores a string in a fixed array of `size` bytes, zero-padded as
   tpool_options_init() leaves it, so equal options compare equal. */
static void set_string(char *dst, size_t size, const char *s, size_t len) {
  memset(dst, 0, size);
  memcpy(dst, s, len);
}

/* Parses v for key k and stores it in the field at base + k->offset. */
static bool parse_value(const tpool__keydef_t *k, const char *v, void *base) {
  void *f = (char *)base + k->offset;
  size_t len = strlen(v);
  uint64_t n;

  switch (k->kind) {
  case TPOOL__KIND_BOOL:
    return parse_bool(v, f);
  case TPOOL__KIND_SECONDS:
  case TPOOL__KIND_RATIO:
    return parse_seconds(k, v, f);
  case TPOOL__KIND_LEVEL:
    return parse_level(v, f);
  case TPOOL__KIND_LOG:
    if (len == 0 || len >= TPOOL_PATH_MAX)
      return false;
    set_string(f, TPOOL_PATH_MAX, v, len);
    return true;
  case TPOOL__KIND_PATH:
    if ((double)len < k->min || (double)len > k->max)
      return false;
    set_string(f, (size_t)k->max + 1, v, len);
    return true;
  case TPOOL__KIND_ADDRESS:
    return parse_address(k, v, f);
  case TPOOL__KIND_TOKEN:
  case TPOOL__KIND_THREAD_NAME:
    if ((double)len < k->min ||
        !(k->kind == TPOOL__KIND_TOKEN
              ? token_is_valid(v, len, (size_t)k->max)
              : thread_name_is_valid(v, len, (size_t)k->max)))
      return false;
    set_string(f, (size_t)k->max + 1, v, len);
    return true;
  case TPOOL__KIND_STRING:
    if ((double)len < k->min || !token_is_valid(v, len, (size_t)k->max) ||
        (k->valid && !k->valid(v)))
      return false;
    set_string(f, (size_t)k->max + 1, v, len);
    return true;
  case TPOOL__KIND_SIZE:
    return parse_size(k, v, f);
  case TPOOL__KIND_WORKERS:
  case TPOOL__KIND_UINT:
    if (k->kind == TPOOL__KIND_WORKERS && strcmp(v, "auto") == 0)
      n = online_cpus();
    else if (!parse_u64(v, &n) || !in_range(k, n))
      return false;
    *(unsigned *)f = (unsigned)n;
    return true;
  case TPOOL__KIND_COUNT:
    if (!parse_u64(v, &n) || !in_range(k, n))
      return false;
    *(size_t *)f = (size_t)n;
    return true;
  case TPOOL__KIND_AFFINITY:
    return parse_affinity(v, f);
  }
  return false;
}

bool tpool__keydef_parse(const tpool__keydef_t *k, const char *v, void *base,
                         tpool__sbuf_t *msg) {
  if (parse_value(k, v, base))
    return true;
  describe(msg, k);
  if (echoes_value(k)) {
    tpool__sbuf_addf(msg, ", got \"");
    tpool__sbuf_echo(msg, v, strlen(v));
    tpool__sbuf_addf(msg, "\"");
  }
  return false;
}

/* ------------------------------------------------------------------------
 * Fields set in code
 * ------------------------------------------------------------------------ */

/* Checks the field of key k at base; on failure writes the value as it
   would be quoted in a message to *got and returns false. */
static bool check_field(const tpool__keydef_t *k, const void *base,
                        tpool__sbuf_t *got) {
  const void *f = (const char *)base + k->offset;
  const tpool_config_address_t *a = f;
  const tpool_pool_options_t *po = f;
  double d;
  size_t n, i;
  bool v6;
  int lv;

  switch (k->kind) {
  case TPOOL__KIND_BOOL:
    return true;
  case TPOOL__KIND_SECONDS:
  case TPOOL__KIND_RATIO:
    d = *(const double *)f;
    tpool__sbuf_addf(got, "%g", d);
    if (k->flags & TPOOL__KEY_CODE_ABOVE_ZERO)
      return d > 0 && d <= k->max;
    return d >= k->min && d <= k->max;
  case TPOOL__KIND_LEVEL:
    lv = (int)*(const tpool_log_level_t *)f;
    tpool__sbuf_addf(got, "%d", lv);
    return lv >= (int)TPOOL_LOG_DEBUG && lv <= (int)TPOOL_LOG_ERROR;
  case TPOOL__KIND_LOG:
    n = tpool__field_len(f, TPOOL_PATH_MAX);
    return n > 0 && n < TPOOL_PATH_MAX;
  case TPOOL__KIND_PATH:
    n = tpool__field_len(f, (size_t)k->max + 1);
    return (double)n >= k->min && (double)n <= k->max;
  case TPOOL__KIND_ADDRESS:
    n = tpool__field_len(a->host, sizeof(a->host));
    v6 = memchr(a->host, ':', n) != NULL;
    tpool__sbuf_addf(got, "%s", v6 ? "[" : "");
    tpool__sbuf_echo(got, a->host, n);
    tpool__sbuf_addf(got, "%s:%u", v6 ? "]" : "", (unsigned)a->port);
    return n < sizeof(a->host) && host_is_numeric(a->host) &&
           in_range(k, a->port);
  case TPOOL__KIND_TOKEN:
    n = tpool__field_len(f, (size_t)k->max + 1);
    return (double)n >= k->min && token_is_valid(f, n, (size_t)k->max);
  case TPOOL__KIND_STRING:
    n = tpool__field_len(f, (size_t)k->max + 1);
    tpool__sbuf_echo(got, f, n);
    return (double)n >= k->min && n <= (size_t)k->max &&
           token_is_valid(f, n, (size_t)k->max) && (!k->valid || k->valid(f));
  case TPOOL__KIND_SIZE:
  case TPOOL__KIND_COUNT:
    tpool__sbuf_addf(got, "%zu", *(const size_t *)f);
    return in_range(k, *(const size_t *)f);
  case TPOOL__KIND_WORKERS:
  case TPOOL__KIND_UINT:
    tpool__sbuf_addf(got, "%u", *(const unsigned *)f);
    return in_range(k, *(const unsigned *)f) ||
           ((k->flags & TPOOL__KEY_CODE_UINT_MAX) &&
            *(const unsigned *)f == TPOOL_MIN_EQUALS_MAX);
  case TPOOL__KIND_THREAD_NAME: /* "" means the default name */
    n = tpool__field_len(f, TPOOL_THREAD_NAME_MAX);
    tpool__sbuf_echo(got, f, n);
    return n < TPOOL_THREAD_NAME_MAX &&
           thread_name_is_valid(f, n, (size_t)k->max);
  case TPOOL__KIND_AFFINITY:
    for (i = 0; po->has_affinity && i < TPOOL_CPUS_MAX / 64; i++) {
      if (po->cpu_affinity[i] != 0)
        return true;
    }
    return !po->has_affinity; /* an empty set: got "" */
  }
  return true;
}

bool tpool__keydef_check(const tpool__keydef_t *k, const void *base,
                         tpool__sbuf_t *msg) {
  char got[128];
  tpool__sbuf_t gb;

  tpool__sbuf_init(&gb, got, sizeof(got));
  if (check_field(k, base, &gb))
    return true;
  if (k->flags & TPOOL__KEY_CODE_ABOVE_ZERO)
    tpool__sbuf_addf(msg, "expected seconds above 0 and up to %g", k->max);
  else
    describe(msg, k);
  if (echoes_value(k))
    tpool__sbuf_addf(msg, ", got \"%s\"", got);
  return false;
}
