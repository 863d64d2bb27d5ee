/*
 * options.c — tpool_http_options_t: its defaults, and its part of a
 * config file's [http] section, read through tpool's config loader
 * (tpool_config_load_sections()) with tpool's limits and messages.
 */
#include "http_internal.h"

#include <stddef.h>
#include <string.h>

#define FIELD(f) offsetof(tpool_http_options_t, f)

static const tpool_config_key_t http_keys[] = {
    {"admin_token", TPOOL_CONFIG_TOKEN, 0, TPOOL_HTTP_TOKEN_MAX - 1,
     FIELD(admin_token), NULL, NULL},
    {"max_header_size", TPOOL_CONFIG_SIZE, (double)TPOOL_HTTP_HEADER_MIN,
     (double)TPOOL_HTTP_HEADER_MAX, FIELD(max_header_size), NULL, NULL},
    {"max_body_size", TPOOL_CONFIG_SIZE, 0, (double)TPOOL_HTTP_BODY_MAX,
     FIELD(max_body_size), NULL, NULL},
    {"timeout", TPOOL_CONFIG_SECONDS, TPOOL_HTTP_TIMEOUT_MIN,
     TPOOL_HTTP_TIMEOUT_MAX, FIELD(timeout_s), NULL, NULL},
};

void tpool_http_options_init(tpool_http_options_t *o) {
  /* Zeroed whole, padding included, so equal options compare equal. */
  memset(o, 0, sizeof(*o));
  o->max_header_size = 8192;
  o->max_body_size = (size_t)1024 * 1024;
  o->timeout_s = 30.0;
}

tpool_config_section_t tpool_http_config_section(tpool_http_options_t *o) {
  tpool_config_section_t s = {
      "http", http_keys,  sizeof(http_keys) / sizeof(http_keys[0]),
      o,      sizeof(*o), 0,
      NULL,   NULL,       0,
      0};
  return s;
}

bool tpool__http_options_valid(const tpool_http_options_t *o) {
  tpool_config_section_t s =
      tpool_http_config_section((tpool_http_options_t *)o);
  return tpool_config_check_section(&s, NULL, NULL) == 0;
}
