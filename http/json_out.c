/*
 * json_out.c — the JSON writer of json_out.h, written by hand for the
 * health routes' bodies. The project uses jansson elsewhere in http/, but
 * not here, because jansson's object model allocates per value and
 * formats numbers through printf: building the 3 KB body of
 * /health/thread-pools as json_t values, dumping it piece by piece and
 * freeing it took about 60 µs of the loop thread per request (malloc and
 * hash inserts in json_pack, snprintf for every real, a callback per small
 * piece), ten times the stats snapshot it shows, and held the route to
 * under a third of the requests/s of a trivial one. Here a body is one
 * buffer that grows by doubling, numbers come from digit loops, and the
 * route hands the buffer to libevent whole: about 2 µs for the same body.
 * The output is what jansson wrote with JSON_COMPACT (or JSON_INDENT(2))
 * and JSON_ENSURE_ASCII, except for reals, which have a fixed number of
 * fraction digits and never an exponent.
 */
#include "json_out.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation: enough for /health/thread-pools of the five
   default pools with a few running tasks, so it is usually the only one. */
#define FIRST_CAP 4096

/* Room for a separator before a value: a comma, a newline and the
   indentation of the deepest level. */
#define SEP_MAX (2 + 2 * TPOOL__JSON_OUT_DEPTH_MAX)

/* Room for any number: a sign, 20 digits, a point and 9 digits. */
#define NUM_MAX 32

static const char hex[] = "0123456789ABCDEF";

static const char digit_pairs[] = "00010203040506070809"
                                  "10111213141516171819"
                                  "20212223242526272829"
                                  "30313233343536373839"
                                  "40414243444546474849"
                                  "50515253545556575859"
                                  "60616263646566676869"
                                  "70717273747576777879"
                                  "80818283848586878889"
                                  "90919293949596979899";

static const double pow10_d[] = {1e0, 1e1, 1e2, 1e3, 1e4,
                                 1e5, 1e6, 1e7, 1e8, 1e9};

void tpool__json_out_init(tpool__json_out_t *w, bool pretty) {
  memset(w, 0, sizeof(*w));
  w->pretty = pretty;
}

void tpool__json_out_destroy(tpool__json_out_t *w) {
  free(w->buf);
  tpool__json_out_init(w, w->pretty);
}

int tpool__json_out_error(const tpool__json_out_t *w) {
  return w->error;
}

static void fail(tpool__json_out_t *w, int error) {
  if (!w->error)
    w->error = error;
}

/* The slow path of reserve(): a bigger buffer. */
static bool grow(tpool__json_out_t *w, size_t n) {
  if (n > SIZE_MAX / 2 - w->len) {
    fail(w, -ENOMEM);
    return false;
  }
  size_t cap = w->cap ? w->cap * 2 : FIRST_CAP;
  if (cap < w->len + n + 1)
    cap = w->len + n + 1;
  char *buf = realloc(w->buf, cap);
  if (!buf) {
    fail(w, -ENOMEM);
    return false;
  }
  w->buf = buf;
  w->cap = cap;
  return true;
}

/* Makes room for n more bytes and a NUL; false (and -ENOMEM) if it
   cannot, or if an earlier call failed. */
static inline bool reserve(tpool__json_out_t *w, size_t n) {
  if (w->error)
    return false;
  /* cap > len whenever a buffer exists, so this cannot wrap. */
  return n < w->cap - w->len || grow(w, n);
}

/* The appenders below write into room that reserve() made. */
static inline void put(tpool__json_out_t *w, const char *s, size_t n) {
  char *d = w->buf + w->len;
  /* Keys and numbers are short: overlapping fixed-size copies, which the
     compiler turns into plain moves, cost less than a call to memcpy. */
  if (n < 4) {
    for (size_t i = 0; i < n; i++)
      d[i] = s[i];
  } else if (n < 8) {
    memcpy(d, s, 4);
    memcpy(d + n - 4, s + n - 4, 4);
  } else if (n <= 16) {
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  } else if (n <= 32) {
    memcpy(d, s, 16);
    memcpy(d + n - 16, s + n - 16, 16);
  } else {
    memcpy(d, s, n);
  }
  w->len += n;
}

static inline void put_char(tpool__json_out_t *w, char c) {
  w->buf[w->len++] = c;
}

/* A newline and the indentation of `depth` levels. */
static void put_newline(tpool__json_out_t *w, unsigned depth) {
  w->buf[w->len++] = '\n';
  memset(w->buf + w->len, ' ', 2 * (size_t)depth);
  w->len += 2 * (size_t)depth;
}

static inline bool top_is_object(const tpool__json_out_t *w) {
  return w->depth > 0 && (w->in_object >> (w->depth - 1) & 1u);
}

/*
 * Starts a value that takes at most n bytes: checks that a value may come
 * here, makes room for it and its separator, and writes the separator.
 * False if the value must not be written.
 */
static inline bool begin_value(tpool__json_out_t *w, size_t n) {
  if (w->error)
    return false;
  if (w->after_key) {
    if (!reserve(w, n))
      return false;
    w->after_key = false;
    return true;
  }
  if (top_is_object(w) || (w->depth == 0 && w->need_comma)) {
    fail(w, -EINVAL); /* a key is due, or a second top-level value */
    return false;
  }
  if (n > SIZE_MAX - SEP_MAX) {
    fail(w, -ENOMEM);
    return false;
  }
  if (!reserve(w, n + SEP_MAX))
    return false;
  if (w->need_comma)
    put_char(w, ',');
  if (w->pretty && w->depth > 0)
    put_newline(w, w->depth);
  return true;
}

/* ---- strings ------------------------------------------------------------- */

size_t tpool__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  size_t len;
  uint32_t v;
  unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    v = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    v = c & 0x0Fu;
    if (c == 0xE0)
      lo = 0xA0; /* overlong below */
    else if (c == 0xED)
      hi = 0x9F; /* surrogates above */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    v = c & 0x07u;
    if (c == 0xF0)
      lo = 0x90; /* overlong below */
    else if (c == 0xF4)
      hi = 0x8F; /* past U+10FFFF above */
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    v = v << 6 | (s[i] & 0x3Fu);
  }
  *cp = v;
  return len;
}

static void put_u16_escape(tpool__json_out_t *w, uint32_t u) {
  char e[6] = {'\\',
               'u',
               hex[u >> 12 & 0xF],
               hex[u >> 8 & 0xF],
               hex[u >> 4 & 0xF],
               hex[u & 0xF]};
  put(w, e, sizeof(e));
}

/* 1 for the bytes that need an escape: control bytes, '"', '\\', and
   every byte of a non-ASCII character (written as \uXXXX). */
static const unsigned char escaped[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x80 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x90 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xA0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xB0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xC0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xD0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xE0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xF0 */
};

/* Writes "s" escaped; the caller made room for 6 bytes per input byte and
   the quotes (no escape is longer than that: \u00XX for one byte, \uFFFD
   for one bad byte, a surrogate pair of 12 for 4 bytes). */
static void put_string(tpool__json_out_t *w, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  put_char(w, '"');
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && !escaped[s[run]])
      run++;
    put(w, str + i, run - i);
    if (run == n)
      break;
    i = run;
    unsigned char c = s[i];
    if (c < 0x80) {
      static const char short_form[128] = {
          ['"'] = '"',  ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
          ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't'};
      if (short_form[c]) {
        char e[2] = {'\\', short_form[c]};
        put(w, e, 2);
      } else {
        put_u16_escape(w, c);
      }
      i++;
      continue;
    }
    uint32_t cp;
    size_t len = tpool__utf8_decode(s + i, n - i, &cp);
    if (len == 0) {
      put_u16_escape(w, 0xFFFD);
      i++;
    } else if (cp < 0x10000) {
      put_u16_escape(w, cp);
      i += len;
    } else {
      cp -= 0x10000;
      put_u16_escape(w, 0xD800 | cp >> 10);
      put_u16_escape(w, 0xDC00 | (cp & 0x3FF));
      i += len;
    }
  }
  put_char(w, '"');
}

/* The room an escaped string of n bytes may take; for a string too long
   to write at all, more than reserve() ever grants. */
static size_t string_room(size_t n) {
  return n > SIZE_MAX / 16 ? SIZE_MAX / 2 : 6 * n + 2;
}

void tpool__json_out_string_n(tpool__json_out_t *w, const char *s, size_t n) {
  if (begin_value(w, string_room(n))) {
    put_string(w, s, n);
    w->need_comma = true;
  }
}

void tpool__json_out_string(tpool__json_out_t *w, const char *s) {
  tpool__json_out_string_n(w, s, strlen(s));
}

/* Starts a key that takes at most n bytes: checks that a key may come
   here, makes room for it, its separator and ": ", and writes the
   separator. False if the key must not be written. */
static inline bool begin_key(tpool__json_out_t *w, size_t n) {
  if (w->error)
    return false;
  if (!top_is_object(w) || w->after_key) {
    fail(w, -EINVAL);
    return false;
  }
  if (!reserve(w, n + SEP_MAX + 2))
    return false;
  if (w->need_comma)
    put_char(w, ',');
  if (w->pretty)
    put_newline(w, w->depth);
  return true;
}

static inline void end_key(tpool__json_out_t *w) {
  put(w, ": ", w->pretty ? 2 : 1);
  w->after_key = true;
}

void tpool__json_out_key(tpool__json_out_t *w, const char *key) {
  size_t n = strlen(key);
  if (begin_key(w, string_room(n))) {
    put_string(w, key, n);
    end_key(w);
  }
}

void tpool__json_out_key_raw(tpool__json_out_t *w, const char *quoted,
                             size_t len) {
  if (begin_key(w, len)) {
    put(w, quoted, len);
    end_key(w);
  }
}

/* ---- containers --------------------------------------------------------- */

static void begin(tpool__json_out_t *w, bool object) {
  if (w->depth >= TPOOL__JSON_OUT_DEPTH_MAX) {
    fail(w, -EINVAL);
    return;
  }
  if (!begin_value(w, 1))
    return;
  put_char(w, object ? '{' : '[');
  if (object)
    w->in_object |= 1u << w->depth;
  else
    w->in_object &= ~(1u << w->depth);
  w->depth++;
  w->need_comma = false;
}

static void end(tpool__json_out_t *w, bool object) {
  if (w->error)
    return;
  if (w->depth == 0 || top_is_object(w) != object || w->after_key) {
    fail(w, -EINVAL);
    return;
  }
  if (!reserve(w, SEP_MAX + 1))
    return;
  w->depth--;
  if (w->pretty && w->need_comma) /* an empty one stays {} or [] */
    put_newline(w, w->depth);
  put_char(w, object ? '}' : ']');
  w->need_comma = true;
}

void tpool__json_out_object_begin(tpool__json_out_t *w) {
  begin(w, true);
}

void tpool__json_out_object_end(tpool__json_out_t *w) {
  end(w, true);
}

void tpool__json_out_array_begin(tpool__json_out_t *w) {
  begin(w, false);
}

void tpool__json_out_array_end(tpool__json_out_t *w) {
  end(w, false);
}

/* ---- literals and numbers ------------------------------------------------ */

static void literal(tpool__json_out_t *w, const char *text, size_t n) {
  if (begin_value(w, n)) {
    put(w, text, n);
    w->need_comma = true;
  }
}

void tpool__json_out_bool(tpool__json_out_t *w, bool v) {
  if (v)
    literal(w, "true", 4);
  else
    literal(w, "false", 5);
}

void tpool__json_out_null(tpool__json_out_t *w) {
  literal(w, "null", 4);
}

void tpool__json_out_raw(tpool__json_out_t *w, const char *text, size_t len) {
  if (!w->pretty || w->depth == 0) {
    literal(w, text, len);
    return;
  }
  if (len > SIZE_MAX / (SEP_MAX + 1)) { /* no room for its indentation */
    fail(w, -ENOMEM);
    return;
  }
  size_t lines = 0;
  for (size_t i = 0; i < len; i++)
    lines += text[i] == '\n';
  if (!begin_value(w, len + lines * 2 * (size_t)w->depth))
    return;
  /* Each line after the first moves right by this depth's indentation. */
  const char *p = text, *end = text + len, *nl;
  while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
    put(w, p, (size_t)(nl - p));
    put_newline(w, w->depth);
    p = nl + 1;
  }
  put(w, p, (size_t)(end - p));
  w->need_comma = true;
}

/* Writes the digits of v so that they end at `end`; returns the first. */
static char *digits(char *end, uint64_t v) {
  char *p = end;
  while (v >= 100) {
    unsigned i = (unsigned)(v % 100) * 2;
    v /= 100;
    *--p = digit_pairs[i + 1];
    *--p = digit_pairs[i];
  }
  if (v >= 10) {
    unsigned i = (unsigned)v * 2;
    *--p = digit_pairs[i + 1];
    *--p = digit_pairs[i];
  } else {
    *--p = (char)('0' + v);
  }
  return p;
}

/* Writes a number made of an optional sign and the digits of v. */
static void integer(tpool__json_out_t *w, bool negative, uint64_t v) {
  char tmp[NUM_MAX];
  char *end = tmp + sizeof(tmp);
  char *p = digits(end, v);
  if (negative)
    *--p = '-';
  literal(w, p, (size_t)(end - p));
}

void tpool__json_out_uint(tpool__json_out_t *w, uint64_t v) {
  integer(w, false, v);
}

void tpool__json_out_int(tpool__json_out_t *w, int64_t v) {
  /* The magnitude in unsigned arithmetic, which INT64_MIN survives. */
  integer(w, v < 0, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

void tpool__json_out_decimal(tpool__json_out_t *w, double v,
                             unsigned frac_digits) {
  if (frac_digits > 9) {
    fail(w, -EINVAL);
    return;
  }
  if (v == 0) { /* idle pools are full of zeros */
    literal(w, "0.0", 3);
    return;
  }
  if (!isfinite(v)) {
    tpool__json_out_null(w);
    return;
  }
  /* q = |v| × 10^d rounded half away from zero, with as many of the
     fraction digits asked for as 64 bits hold. */
  double a = fabs(v);
  unsigned d = frac_digits;
  uint64_t q;
  for (;;) {
    double scaled = a * pow10_d[d];
    if (scaled < 0x1p64) {
      q = (uint64_t)scaled;
      /* The subtraction is exact (Sterbenz; 0 once scaled >= 2^53), so
         this rounds as round() does, without a call into libm. */
      if (scaled - (double)q >= 0.5 && q < UINT64_MAX)
        q++;
      break;
    }
    if (d == 0) {
      q = UINT64_MAX;
      break;
    }
    d--;
  }
  bool minus = v < 0 && q != 0; /* never "-0.0" */
  /* Trailing zeros of the fraction go, but one fraction digit stays. */
  while (d > 1 && q % 10 == 0) {
    q /= 10;
    d--;
  }
  char tmp[NUM_MAX];
  char *end = tmp + sizeof(tmp);
  char *p = end;
  if (d == 0)
    *--p = '0';
  unsigned i = d;
  for (; i >= 2; i -= 2) {
    unsigned pair = (unsigned)(q % 100) * 2;
    q /= 100;
    *--p = digit_pairs[pair + 1];
    *--p = digit_pairs[pair];
  }
  if (i) {
    *--p = (char)('0' + q % 10);
    q /= 10;
  }
  *--p = '.';
  p = digits(p, q);
  if (minus)
    *--p = '-';
  literal(w, p, (size_t)(end - p));
}

/* ---- the result --------------------------------------------------------- */

int tpool__json_out_take(tpool__json_out_t *w, const char *suffix, char **text,
                         size_t *len) {
  *text = NULL;
  *len = 0;
  if (!w->error && (w->depth != 0 || w->after_key || !w->need_comma))
    fail(w, -EINVAL); /* unclosed, or no value at all */
  size_t n = suffix ? strlen(suffix) : 0;
  if (reserve(w, n) && n) /* room for the NUL, in any case */
    put(w, suffix, n);
  int rc = w->error;
  if (rc == 0) {
    w->buf[w->len] = '\0';
    *text = w->buf;
    *len = w->len;
    w->buf = NULL;
  }
  tpool__json_out_destroy(w);
  return rc;
}
