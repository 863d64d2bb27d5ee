/*
 * json_out.h — a small JSON writer for the bodies of the health routes:
 * values appended in order to one growable buffer, commas and (for
 * ?pretty) indentation placed by the writer. Errors are sticky, as with
 * stdio's ferror(): once a call fails every later call does nothing and
 * tpool__json_out_error() says why, so a builder writes its whole body
 * and checks once at the end. See json_out.c for why it is not jansson.
 *
 * Everything here works on caller storage and touches nothing shared.
 * Thread: any (one writer per thread at a time).
 */
#ifndef TPOOL_JSON_OUT_H
#define TPOOL_JSON_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How deep objects and arrays may nest; deeper is -EINVAL. */
#define TPOOL__JSON_OUT_DEPTH_MAX 32

typedef struct tpool__json_out {
  char *buf; /* malloc()ed; the text so far, not NUL-terminated */
  size_t len, cap;
  int error;          /* 0, -ENOMEM or -EINVAL; sticky */
  bool pretty;        /* indent by two spaces, as jansson's JSON_INDENT(2) */
  bool need_comma;    /* a value precedes at this level */
  bool after_key;     /* a key was written and waits for its value */
  unsigned depth;     /* open objects and arrays */
  uint32_t in_object; /* bit d: the container at depth d+1 is an object */
} tpool__json_out_t;

/* Starts an empty writer; nothing is allocated until the first value.
   `pretty`: indent as jansson does with JSON_INDENT(2). */
void tpool__json_out_init(tpool__json_out_t *w, bool pretty);
/* Frees the buffer (unless taken with tpool__json_out_take()). */
void tpool__json_out_destroy(tpool__json_out_t *w);

/* 0 while every call so far succeeded; else the first error: -ENOMEM, or
   -EINVAL for misuse (a key outside an object, a value where a key is
   due, an unbalanced end, nesting past TPOOL__JSON_OUT_DEPTH_MAX). */
int tpool__json_out_error(const tpool__json_out_t *w);

/* Objects and arrays. Commas between members are written for you. */
void tpool__json_out_object_begin(tpool__json_out_t *w);
void tpool__json_out_object_end(tpool__json_out_t *w);
void tpool__json_out_array_begin(tpool__json_out_t *w);
void tpool__json_out_array_end(tpool__json_out_t *w);

/* The key of the next member of the current object; `key` is escaped as
   any string is. */
void tpool__json_out_key(tpool__json_out_t *w, const char *key);
/* The same for a key that is a string literal needing no escape (ASCII
   letters, digits, '_'), as the field names of a body are: the quotes are
   added at compile time and nothing is scanned or measured at run time.
   Anything but a string literal fails to compile. */
#define tpool__json_out_key_literal(w, lit)                                    \
  tpool__json_out_key_raw((w), "\"" lit "\"", sizeof(lit) + 1)
/* A key written as it is: `len` bytes that already hold the quotes and
   any escapes. For tpool__json_out_key_literal(). */
void tpool__json_out_key_raw(tpool__json_out_t *w, const char *quoted,
                             size_t len);

/*
 * A string value, NUL-terminated. Written in ASCII, as jansson's
 * JSON_ENSURE_ASCII does: `"` and `\` escaped, \b \f \n \r \t in their
 * short forms, other control bytes as \u00XX, every non-ASCII character as
 * \uXXXX (a surrogate pair above U+FFFF). Bytes that are not valid UTF-8
 * (a name cut in the middle of a character, say) are each written as
 * U+FFFD, so the body stays valid JSON whatever the text. `s` is not
 * NULL.
 */
void tpool__json_out_string(tpool__json_out_t *w, const char *s);
/* The same for `len` bytes, which may hold NUL (written as \u0000). */
void tpool__json_out_string_n(tpool__json_out_t *w, const char *s, size_t len);

/* The length of the valid UTF-8 sequence at s (n >= 1 bytes available),
   and its code point in *cp; 0 if the bytes there are not one. The rules
   are those of RFC 3629: no overlong forms, no surrogates, nothing past
   U+10FFFF. (The writer mends strings with it; the HTTP layer checks
   paths and messages with it.) */
size_t tpool__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/*
 * A value that is already JSON text (an object jansson dumped), copied as
 * it is: `len` bytes holding one complete value, compact or as jansson's
 * JSON_INDENT(2) writes it on its own. With `pretty`, each of its lines
 * after the first is indented further to the writer's depth, so that the
 * body reads as one indented document. The text is not checked: it must
 * be valid JSON, with a newline only between tokens (as jansson writes
 * it), and ASCII if the body must be (JSON_ENSURE_ASCII).
 */
void tpool__json_out_raw(tpool__json_out_t *w, const char *text, size_t len);

void tpool__json_out_bool(tpool__json_out_t *w, bool v);
void tpool__json_out_null(tpool__json_out_t *w);
void tpool__json_out_uint(tpool__json_out_t *w, uint64_t v);
void tpool__json_out_int(tpool__json_out_t *w, int64_t v);

/*
 * A number with at most `frac_digits` (0..9) digits after the decimal
 * point, rounded half away from zero: trailing zeros are dropped, but one
 * fraction digit always stays, so the value reads back as a real and not
 * an integer (0.000125, 60.0, 33.3). Never exponent form, whatever the
 * locale. NaN and the infinities, which JSON cannot write, are written as
 * null. Magnitudes too large for `frac_digits` digits in 64 bits lose
 * fraction digits; at 2^64 and above they are clamped to
 * 18446744073709551615.0 (no duration or percentage gets near either).
 * -0 and negatives that round to zero are written as 0.0.
 */
void tpool__json_out_decimal(tpool__json_out_t *w, double v,
                             unsigned frac_digits);

/*
 * Ends the text: checks that every object and array was closed, appends
 * `suffix` (NULL for none; "\n" for an HTTP body) and hands the buffer
 * over. The writer is left empty, as after init.
 * Returns: 0, *text (caller frees with free(), NUL-terminated) and *len
 * (without the NUL); or the writer's error (-ENOMEM, -EINVAL), with *text
 * NULL and nothing to free.
 */
int tpool__json_out_take(tpool__json_out_t *w, const char *suffix, char **text,
                         size_t *len);

#endif /* TPOOL_JSON_OUT_H */
