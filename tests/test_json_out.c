/*
 * test_json_out.c — the JSON writer of the health routes (http/json_out.c):
 * commas and nesting, indentation as jansson's JSON_INDENT(2) writes it,
 * strings escaped as jansson's JSON_ENSURE_ASCII does (and invalid UTF-8
 * mended), integers at their limits, decimals with a fixed number of
 * fraction digits and never an exponent, non-finite values as null, and
 * errors that stick: misuse is -EINVAL, a buffer that cannot grow -ENOMEM.
 * jansson reads every text back, as clients will.
 */
#include "helpers.h"
#include "json_out.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Ends w and returns its text (caller frees); fails unless it succeeds. */
static char *take(tpool__json_out_t *w) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(tpool__json_out_take(w, NULL, &text, &len), 0);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  return text;
}

/* Asserts that w's text is `want`, then frees it. */
static void assert_text(tpool__json_out_t *w, const char *want) {
  char *text = take(w);
  if (strcmp(text, want) != 0)
    fail_msg("wrote  %s\nwanted %s", text, want);
  free(text);
}

/* The text of one string value. Caller frees. */
static char *string_text(const char *s, size_t len) {
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_string_n(&w, s, len);
  return take(&w);
}

/* The text of one decimal value. Caller frees. */
static char *decimal_text(double v, unsigned digits) {
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_decimal(&w, v, digits);
  return take(&w);
}

static void test_json_out_nesting_and_commas(void **state) {
  (void)state;
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_object_begin(&w);
  tpool__json_out_key(&w, "a");
  tpool__json_out_uint(&w, 1);
  tpool__json_out_key_literal(&w, "b");
  tpool__json_out_array_begin(&w);
  tpool__json_out_bool(&w, true);
  tpool__json_out_bool(&w, false);
  tpool__json_out_null(&w);
  tpool__json_out_object_begin(&w);
  tpool__json_out_object_end(&w);
  tpool__json_out_array_begin(&w);
  tpool__json_out_array_end(&w);
  tpool__json_out_string(&w, "s");
  tpool__json_out_array_end(&w);
  tpool__json_out_key(&w, "c");
  tpool__json_out_object_begin(&w);
  tpool__json_out_key(&w, "d");
  tpool__json_out_int(&w, -2);
  tpool__json_out_object_end(&w);
  tpool__json_out_object_end(&w);
  assert_text(&w, "{\"a\":1,\"b\":[true,false,null,{},[],\"s\"],"
                  "\"c\":{\"d\":-2}}");

  /* A lone value is a text too; the suffix comes after it. */
  tpool__json_out_init(&w, false);
  tpool__json_out_array_begin(&w);
  tpool__json_out_array_end(&w);
  char *text;
  size_t len;
  assert_int_equal(tpool__json_out_take(&w, "\n", &text, &len), 0);
  assert_string_equal(text, "[]\n");
  assert_int_equal(len, 3);
  free(text);
}

/* The text jansson writes for the compact text `compact`, with flags. */
static char *jansson_dump(const char *compact, size_t flags) {
  json_error_t err;
  json_t *j = json_loads(compact, 0, &err);
  if (!j)
    fail_msg("jansson cannot read %s: %s", compact, err.text);
  char *text = json_dumps(j, flags | JSON_ENCODE_ANY);
  assert_non_null(text);
  json_decref(j);
  return text;
}

/* Writes the same document compact and pretty. */
static void write_sample(tpool__json_out_t *w) {
  tpool__json_out_object_begin(w);
  tpool__json_out_key(w, "summary");
  tpool__json_out_object_begin(w);
  tpool__json_out_key(w, "total");
  tpool__json_out_uint(w, 140);
  tpool__json_out_key(w, "verbose");
  tpool__json_out_bool(w, false);
  tpool__json_out_object_end(w);
  tpool__json_out_key(w, "empty_object");
  tpool__json_out_object_begin(w);
  tpool__json_out_object_end(w);
  tpool__json_out_key(w, "empty_array");
  tpool__json_out_array_begin(w);
  tpool__json_out_array_end(w);
  tpool__json_out_key(w, "tasks");
  tpool__json_out_array_begin(w);
  for (int i = 0; i < 2; i++) {
    tpool__json_out_object_begin(w);
    tpool__json_out_key(w, "id");
    tpool__json_out_int(w, i);
    tpool__json_out_key(w, "name");
    tpool__json_out_string(w, "t\"1\"");
    tpool__json_out_key(w, "last");
    tpool__json_out_null(w);
    tpool__json_out_object_end(w);
  }
  tpool__json_out_array_begin(w);
  tpool__json_out_uint(w, 7);
  tpool__json_out_array_end(w);
  tpool__json_out_array_end(w);
  tpool__json_out_object_end(w);
}

static void test_json_out_pretty_indents_as_jansson_does(void **state) {
  (void)state;
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  write_sample(&w);
  char *compact = take(&w);
  /* The compact form is jansson's compact form... */
  char *want = jansson_dump(compact, JSON_COMPACT | JSON_ENSURE_ASCII);
  assert_string_equal(compact, want);
  free(want);
  /* ...and the pretty one its JSON_INDENT(2), byte for byte. */
  tpool__json_out_init(&w, true);
  write_sample(&w);
  char *pretty = take(&w);
  want = jansson_dump(compact, JSON_INDENT(2) | JSON_ENSURE_ASCII);
  if (strcmp(pretty, want) != 0)
    fail_msg("pretty:\n%s\njansson:\n%s", pretty, want);
  assert_non_null(strstr(pretty, "\n  \"summary\": {\n    \"total\": 140,"));
  free(want);
  free(pretty);
  free(compact);

  /* Indented scalars at the top level get no newline before them. */
  tpool__json_out_init(&w, true);
  tpool__json_out_uint(&w, 5);
  assert_text(&w, "5");
}

static void test_json_out_escapes_strings(void **state) {
  (void)state;
  static const struct {
    const char *in;
    size_t len;
    const char *want;
  } cases[] = {
#define CASE(in, want) {in, sizeof(in) - 1, want}
      CASE("plain text / 100%", "\"plain text / 100%\""),
      CASE("", "\"\""),
      CASE("a\"b\\c", "\"a\\\"b\\\\c\""),
      CASE("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\""),
      CASE("\x01\x1f\x7f", "\"\\u0001\\u001F\x7f\""),
      CASE("nul\0inside", "\"nul\\u0000inside\""),
      /* UTF-8 of 2, 3 and 4 bytes; the last as a surrogate pair. */
      CASE("caf\xc3\xa9", "\"caf\\u00E9\""),
      CASE("\xe2\x82\xac 5", "\"\\u20AC 5\""),
      CASE("\xf0\x9f\x98\x80", "\"\\uD83D\\uDE00\""),
      CASE("\xef\xbf\xbf\xf4\x8f\xbf\xbf", "\"\\uFFFF\\uDBFF\\uDFFF\""),
      /* Not UTF-8: every bad byte becomes U+FFFD. */
      CASE("cut \xc3", "\"cut \\uFFFD\""),               /* cut short */
      CASE("\xe2\x82", "\"\\uFFFD\\uFFFD\""),            /* cut short */
      CASE("\x80x", "\"\\uFFFDx\""),                     /* continuation */
      CASE("\xc0\xaf", "\"\\uFFFD\\uFFFD\""),            /* overlong */
      CASE("\xe0\x80\xaf", "\"\\uFFFD\\uFFFD\\uFFFD\""), /* overlong */
      CASE("\xed\xa0\x80", "\"\\uFFFD\\uFFFD\\uFFFD\""), /* surrogate */
      CASE("\xf4\x90\x80\x80", "\"\\uFFFD\\uFFFD\\uFFFD\\uFFFD\""), /* big */
      CASE("\xff\xfe", "\"\\uFFFD\\uFFFD\""),
      CASE("\xc3\xa9\xc3", "\"\\u00E9\\uFFFD\""),
#undef CASE
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *text = string_text(cases[i].in, cases[i].len);
    if (strcmp(text, cases[i].want) != 0)
      fail_msg("case %zu: wrote %s, wanted %s", i, text, cases[i].want);
    free(text);
  }

  /* Every valid string reads back as itself, and is what jansson writes
     with JSON_ENSURE_ASCII. */
  static const char valid[] =
      "k\xc3\xa9y \"q\" \\ \x01\x02\n\t\x1f \xe2\x82\xac"
      " \xf0\x9f\x98\x80 \x7f /";
  char *text = string_text(valid, sizeof(valid) - 1);
  json_t *j = json_stringn(valid, sizeof(valid) - 1);
  assert_non_null(j);
  char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
  assert_string_equal(text, want);
  free(want);
  json_decref(j);
  json_error_t err;
  j = json_loads(text, JSON_DECODE_ANY, &err);
  assert_non_null(j);
  assert_int_equal(json_string_length(j), sizeof(valid) - 1);
  assert_memory_equal(json_string_value(j), valid, sizeof(valid) - 1);
  json_decref(j);
  free(text);

  /* Keys are escaped as values are. */
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_object_begin(&w);
  tpool__json_out_key(&w, "a\"b\n");
  tpool__json_out_uint(&w, 1);
  tpool__json_out_object_end(&w);
  assert_text(&w, "{\"a\\\"b\\n\":1}");
}

static void test_json_out_writes_integers(void **state) {
  (void)state;
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_array_begin(&w);
  static const uint64_t u[] = {
      0,         1, 9, 10, 99, 100, 101, 999, 1000, 65536, 1234567890123ull,
      UINT64_MAX};
  for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
    tpool__json_out_uint(&w, u[i]);
  static const int64_t s[] = {0, -1, -10, 42, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
    tpool__json_out_int(&w, s[i]);
  tpool__json_out_array_end(&w);
  assert_text(&w, "[0,1,9,10,99,100,101,999,1000,65536,1234567890123,"
                  "18446744073709551615,0,-1,-10,42,9223372036854775807,"
                  "-9223372036854775808]");

  /* Every uint64 prints as %llu does. */
  char want[32];
  for (uint64_t v = 1, i = 0; i < 200; i++, v = v * 3 + i) {
    tpool__json_out_init(&w, false);
    tpool__json_out_uint(&w, v);
    char *text = take(&w);
    snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
    assert_string_equal(text, want);
    free(text);
  }
}

static void test_json_out_writes_decimals(void **state) {
  (void)state;
  static const struct {
    double v;
    unsigned digits;
    const char *want;
  } cases[] = {
      {0.000125, 9, "0.000125"},
      {60, 9, "60.0"},
      {60, 0, "60.0"},
      {0, 3, "0.0"},
      {-0.0, 3, "0.0"},
      {-0.0004, 3, "0.0"}, /* never -0.0 */
      {33.3, 1, "33.3"},
      {50, 1, "50.0"},
      {100.0 / 3.0, 1, "33.3"},
      {200.0 / 3.0, 1, "66.7"},
      {1.23456, 3, "1.235"},
      {0.9996, 3, "1.0"}, /* the carry reaches the units */
      {2.5, 0, "3.0"},    /* half away from zero, as round() */
      {-2.5, 0, "-3.0"},
      {-1.5, 1, "-1.5"},
      {9.8708e-5, 9, "0.000098708"},
      {2.4267e-5, 9, "0.000024267"},
      {2.50014834, 9, "2.50014834"},
      {1e-6, 9, "0.000001"},
      {1e-10, 9, "0.0"},
      {0.1, 9, "0.1"},
      {123456789.125, 3, "123456789.125"},
      {86400.5, 3, "86400.5"},
      /* Past 2^64 units the fraction digits give way, then it clamps. */
      {1e15, 9, "1000000000000000.0"},
      {1.5e19, 3, "15000000000000000000.0"},
      {1e30, 3, "18446744073709551615.0"},
      {-1e30, 3, "-18446744073709551615.0"},
      /* JSON has no NaN or infinity. */
      {NAN, 3, "null"},
      {INFINITY, 9, "null"},
      {-INFINITY, 1, "null"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *text = decimal_text(cases[i].v, cases[i].digits);
    if (strcmp(text, cases[i].want) != 0)
      fail_msg("case %zu (%.17g, %u digits): wrote %s, wanted %s", i,
               cases[i].v, cases[i].digits, text, cases[i].want);
    free(text);
  }

  /* Against printf: within one unit of the last place (printf rounds the
     exact binary value, the writer v × 10^d), never an exponent, always a
     real to jansson. */
  uint64_t seed = 12345;
  for (int i = 0; i < 20000; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    unsigned digits = (unsigned)(seed >> 60) % 10;
    double scale = pow(10.0, (double)((seed >> 40) % 12) - 6);
    double v = (double)(seed >> 11) / 9007199254740992.0 * scale;
    char *text = decimal_text(v, digits);
    assert_null(strpbrk(text, "eE"));
    char want[64];
    snprintf(want, sizeof(want), "%.*f", (int)digits, v);
    double got = strtod(text, NULL), ref = strtod(want, NULL);
    if (fabs(got - ref) >
        1.000001 * pow(10.0, -(double)digits) + fabs(ref) * 1e-15)
      fail_msg("%.17g to %u digits: wrote %s, printf %s", v, digits, text,
               want);
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    assert_true(json_is_real(j));
    json_decref(j);
    free(text);
  }

  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_decimal(&w, 1.0, 10);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);
}

static void test_json_out_misuse_is_einval_and_sticks(void **state) {
  (void)state;
  tpool__json_out_t w;
  char *text;
  size_t len;

  /* A key outside an object. */
  tpool__json_out_init(&w, false);
  tpool__json_out_key(&w, "k");
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  /* Later calls change nothing, and the first error stays. */
  tpool__json_out_uint(&w, 1);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  assert_int_equal(tpool__json_out_take(&w, "\n", &text, &len), -EINVAL);
  assert_null(text);
  assert_int_equal(len, 0);

  /* A value where a key is due, and a key in an array. */
  tpool__json_out_init(&w, false);
  tpool__json_out_object_begin(&w);
  tpool__json_out_uint(&w, 1);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);
  tpool__json_out_init(&w, false);
  tpool__json_out_array_begin(&w);
  tpool__json_out_key_literal(&w, "k");
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);

  /* Ends that do not match, a key without its value, an unclosed text,
     two top-level values, no value at all. */
  tpool__json_out_init(&w, false);
  tpool__json_out_array_begin(&w);
  tpool__json_out_object_end(&w);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);
  tpool__json_out_init(&w, false);
  tpool__json_out_object_begin(&w);
  tpool__json_out_key(&w, "k");
  tpool__json_out_object_end(&w);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);
  tpool__json_out_init(&w, false);
  tpool__json_out_object_begin(&w);
  assert_int_equal(tpool__json_out_take(&w, NULL, &text, &len), -EINVAL);
  assert_null(text);
  tpool__json_out_init(&w, false);
  tpool__json_out_uint(&w, 1);
  tpool__json_out_uint(&w, 2);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);
  tpool__json_out_init(&w, false);
  assert_int_equal(tpool__json_out_take(&w, NULL, &text, &len), -EINVAL);
  tpool__json_out_init(&w, false);
  tpool__json_out_array_end(&w);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);

  /* Nesting: TPOOL__JSON_OUT_DEPTH_MAX levels, and not one more. */
  tpool__json_out_init(&w, false);
  for (int i = 0; i < TPOOL__JSON_OUT_DEPTH_MAX; i++)
    tpool__json_out_array_begin(&w);
  assert_int_equal(tpool__json_out_error(&w), 0);
  for (int i = 0; i < TPOOL__JSON_OUT_DEPTH_MAX; i++)
    tpool__json_out_array_end(&w);
  text = take(&w);
  assert_int_equal(strlen(text), 2 * TPOOL__JSON_OUT_DEPTH_MAX);
  free(text);
  tpool__json_out_init(&w, true);
  for (int i = 0; i < TPOOL__JSON_OUT_DEPTH_MAX; i++) {
    tpool__json_out_object_begin(&w);
    tpool__json_out_key(&w, "k");
  }
  assert_int_equal(tpool__json_out_error(&w), 0);
  tpool__json_out_object_begin(&w);
  assert_int_equal(tpool__json_out_error(&w), -EINVAL);
  tpool__json_out_destroy(&w);
}

static void test_json_out_grows_and_fails_cleanly(void **state) {
  (void)state;
  /* Far past the first allocation: reads back whole. */
  tpool__json_out_t w;
  tpool__json_out_init(&w, false);
  tpool__json_out_array_begin(&w);
  for (uint64_t i = 0; i < 50000; i++)
    tpool__json_out_uint(&w, i * 1000003);
  tpool__json_out_array_end(&w);
  char *text = take(&w);
  json_error_t err;
  json_t *j = json_loads(text, 0, &err);
  assert_non_null(j);
  assert_int_equal(json_array_size(j), 50000);
  assert_int_equal(json_integer_value(json_array_get(j, 49999)),
                   49999ll * 1000003);
  json_decref(j);
  free(text);

  /* A string too long for any buffer is -ENOMEM, before a byte of it is
     read; the writer holds nothing afterwards. */
  tpool__json_out_init(&w, false);
  tpool__json_out_array_begin(&w);
  tpool__json_out_string_n(&w, "x", SIZE_MAX / 4);
  assert_int_equal(tpool__json_out_error(&w), -ENOMEM);
  tpool__json_out_array_end(&w);
  size_t len;
  assert_int_equal(tpool__json_out_take(&w, "\n", &text, &len), -ENOMEM);
  assert_null(text);
  assert_null(w.buf);
  /* Destroying an empty or failed writer is harmless. */
  tpool__json_out_destroy(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_out_nesting_and_commas),
      cmocka_unit_test(test_json_out_pretty_indents_as_jansson_does),
      cmocka_unit_test(test_json_out_escapes_strings),
      cmocka_unit_test(test_json_out_writes_integers),
      cmocka_unit_test(test_json_out_writes_decimals),
      cmocka_unit_test(test_json_out_misuse_is_einval_and_sticks),
      cmocka_unit_test(test_json_out_grows_and_fails_cleanly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
