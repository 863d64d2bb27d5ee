/*
 * config.c — tpool-server's config file: see config.h. The HTTP layer's
 * part of [http] comes from tpool_http_config_section(); the server adds
 * a second section named "http" with its own two keys, and [demo].
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#define SERVER(f) offsetof(server_options_t, f)
#define DEMO(f) offsetof(demo_options_t, f)

static const tpool_config_key_t http_keys[] = {
    {"listen", TPOOL_CONFIG_ADDRESS, 0, 65535, SERVER(listen), NULL, NULL},
    {"loop_threads", TPOOL_CONFIG_UINT, 1, LOOP_THREADS_MAX,
     SERVER(loop_threads), NULL, NULL},
};

static const tpool_config_key_t demo_keys[] = {
    {"data_dir", TPOOL_CONFIG_PATH, 1, TPOOL_PATH_MAX - 1, DEMO(data_dir), NULL,
     NULL},
    {"embedding_dim", TPOOL_CONFIG_UINT, 1, DEMO_EMBEDDING_DIM_MAX,
     DEMO(embedding_dim), NULL, NULL},
    {"db_rows", TPOOL_CONFIG_COUNT, 1, (double)DEMO_DB_ROWS_MAX, DEMO(db_rows),
     NULL, NULL},
};

#ifdef TPOOL_SERVER_REDIS
#define NSECTIONS 4
#else
#define NSECTIONS 3
#endif
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The sections of *c besides tpool's own, in the order their keys are
   looked up and checked. */
static void sections(server_config_t *c, tpool_config_section_t s[NSECTIONS]) {
  s[0] = (tpool_config_section_t){"http",
                                  http_keys,
                                  NELEMS(http_keys),
                                  &c->server,
                                  sizeof(c->server),
                                  0,
                                  NULL,
                                  NULL,
                                  0,
                                  0};
  s[1] = tpool_http_config_section(&c->http);
  s[2] = (tpool_config_section_t){"demo",
                                  demo_keys,
                                  NELEMS(demo_keys),
                                  &c->server.demo,
                                  sizeof(c->server.demo),
                                  0,
                                  NULL,
                                  NULL,
                                  0,
                                  0};
#ifdef TPOOL_SERVER_REDIS
  s[3] = tpool_redis_config_section(&c->redis);
#endif
}

void server_config_init(server_config_t *c) {
  memset(c, 0, sizeof(*c));
  tpool_options_init(&c->core);
  tpool_http_options_init(&c->http);
#ifdef TPOOL_SERVER_REDIS
  tpool_redis_options_init(&c->redis);
#endif
  strcpy(c->server.listen.host, "127.0.0.1");
  c->server.listen.port = 8080;
  c->server.loop_threads = 1;
  strcpy(c->server.demo.data_dir, "tpool-data");
  c->server.demo.embedding_dim = 384;
  c->server.demo.db_rows = 10000;
}

/* What the loader's per-key checks cannot see: [redis] dead_letter must
   differ from stream. On failure *c is put back as it was (*was). */
static int check_across(server_config_t *c, const server_config_t *was,
                        const char *file, tpool_config_error_t *err) {
#ifdef TPOOL_SERVER_REDIS
  if (tpool_redis_options_check(&c->redis, file, err) != 0) {
    *c = *was;
    return -EINVAL;
  }
#else
  (void)c;
  (void)was;
  (void)file;
  (void)err;
#endif
  return 0;
}

int server_config_load(server_config_t *c, const char *path,
                       tpool_config_error_t *err) {
  tpool_config_section_t s[NSECTIONS];
  server_config_t was = *c;
  sections(c, s);
  int rc = tpool_config_load_sections(&c->core, path, s, NSECTIONS, err);
  return rc == 0 ? check_across(c, &was, path, err) : rc;
}

int server_config_parse(server_config_t *c, const char *text, size_t len,
                        const char *name, tpool_config_error_t *err) {
  tpool_config_section_t s[NSECTIONS];
  server_config_t was = *c;
  sections(c, s);
  int rc =
      tpool_config_parse_sections(&c->core, text, len, name, s, NSECTIONS, err);
  return rc == 0 ? check_across(c, &was, name ? name : "config", err) : rc;
}

int server_config_check(const server_config_t *c, tpool_config_error_t *err) {
  int rc = tpool_options_check(&c->core, err);
  if (rc != 0)
    return rc;
  tpool_config_section_t s[NSECTIONS];
  sections((server_config_t *)c, s); /* only read */
  const char *file = NULL;
  if (c->core.config_path[0] &&
      memchr(c->core.config_path, '\0', sizeof(c->core.config_path)))
    file = c->core.config_path;
  for (size_t i = 0; i < NSECTIONS && rc == 0; i++)
    rc = tpool_config_check_section(&s[i], file, err);
#ifdef TPOOL_SERVER_REDIS
  if (rc == 0)
    rc = tpool_redis_options_check(&c->redis, file, err);
#endif
  return rc;
}
