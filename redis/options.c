/*
 * options.c — tpool_redis_options_t: its defaults, and the [redis]
 * section of a config file, read by tpool's config loader with its
 * messages ("tpool.ini:42: [redis] url: expected redis://HOST:PORT[/DB],
 * got ...").
 */
#include "redis_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define FIELD(f) offsetof(tpool_redis_options_t, f)
#define URL_EXPECT "expected redis://HOST:PORT[/DB] (DB 0..15), or nothing"

static bool url_valid(const char *url) {
  char host[TPOOL_REDIS_URL_MAX + 1];
  int port;
  unsigned db;
  return url[0] == '\0' ||
         tpool__redis_parse_url(url, host, sizeof(host), &port, &db) == 0;
}

static const tpool_config_key_t redis_keys[] = {
    {"url", TPOOL_CONFIG_STRING, 0, TPOOL_REDIS_URL_MAX, FIELD(url), url_valid,
     URL_EXPECT},
    {"stream", TPOOL_CONFIG_STRING, 1, TPOOL_REDIS_NAME_MAX, FIELD(stream),
     NULL, NULL},
    {"group", TPOOL_CONFIG_STRING, 1, TPOOL_REDIS_NAME_MAX, FIELD(group), NULL,
     NULL},
    {"consumer", TPOOL_CONFIG_STRING, 0, TPOOL_REDIS_NAME_MAX, FIELD(consumer),
     NULL, NULL},
    {"dead_letter", TPOOL_CONFIG_STRING, 1, TPOOL_REDIS_NAME_MAX,
     FIELD(dead_letter), NULL, NULL},
    {"batch", TPOOL_CONFIG_UINT, 1, TPOOL_REDIS_BATCH_MAX, FIELD(batch), NULL,
     NULL},
    {"reclaim_after", TPOOL_CONFIG_SECONDS, TPOOL_REDIS_RECLAIM_MIN,
     TPOOL_REDIS_RECLAIM_MAX, FIELD(reclaim_after_s), NULL, NULL},
    {"max_deliveries", TPOOL_CONFIG_UINT, 1, TPOOL_REDIS_DELIVERIES_MAX,
     FIELD(max_deliveries), NULL, NULL},
    {"result_ttl", TPOOL_CONFIG_SECONDS, 1, TPOOL_REDIS_TTL_MAX,
     FIELD(result_ttl_s), NULL, NULL},
};

void tpool_redis_options_init(tpool_redis_options_t *o) {
  memset(o, 0, sizeof(*o)); /* padding too: equal options compare equal */
  strcpy(o->stream, "tpool:tasks");
  strcpy(o->group, "tpool");
  strcpy(o->dead_letter, "tpool:dead");
  o->batch = 64;
  o->reclaim_after_s = 30;
  o->max_deliveries = 5;
  o->result_ttl_s = 3600;
}

tpool_config_section_t tpool_redis_config_section(tpool_redis_options_t *o) {
  tpool_config_section_t s = {
      "redis", redis_keys, sizeof(redis_keys) / sizeof(redis_keys[0]),
      o,       sizeof(*o), 0,
      NULL,    NULL,       0,
      0};
  return s;
}

int tpool_redis_options_check(const tpool_redis_options_t *o, const char *file,
                              tpool_config_error_t *err) {
  if (!o)
    return -EINVAL;
  tpool_config_section_t s =
      tpool_redis_config_section((tpool_redis_options_t *)o);
  int rc = tpool_config_check_section(&s, file, err);
  if (rc == 0 && strcmp(o->dead_letter, o->stream) == 0) {
    if (err) {
      memset(err, 0, sizeof(*err));
      snprintf(err->file, sizeof(err->file), "%s", file ? file : "options");
      snprintf(err->key, sizeof(err->key), "[redis] dead_letter");
      snprintf(err->message, sizeof(err->message),
               "must not be the stream itself (\"%.200s\")", o->stream);
      snprintf(err->text, sizeof(err->text), "%s: %s: %s", err->file, err->key,
               err->message);
    }
    return -EINVAL;
  }
  return rc;
}
