/*
 * test_demo.c — the demo work kinds of the real tpool-server binary, over
 * HTTP on 127.0.0.1, with a small [demo] (embedding_dim 16, db_rows 100)
 * and two workers per pool: "query" reads its row on the db pool (404 for
 * a key with no row, 400 on another pool); "dense", "embed", "hash" and
 * "read" answer what server/demo_work.c computes in this process for the
 * same input; every out-of-range value, a field of another kind and an
 * unknown kind answer 400 naming the field; the data directory is made on
 * the first start and reused, not rebuilt, on the second; and the db pool
 * opens one connection per worker, however many queries it serves.
 *
 * The server runs in the fixture's directory (server_harness.c), so its
 * data directory goes away with it.
 */
#include "demo_work.h"
#include "server_harness.h"

#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define DB_WORKERS 2
#define DEMO_CONFIG                                                            \
  "[http]\nlisten = 127.0.0.1:0\n"                                             \
  "[pool.io]\nworkers = 2\n"                                                   \
  "[pool.cpu]\nworkers = 2\n"                                                  \
  "[pool.inference]\nworkers = 2\n"                                            \
  "[pool.embedding]\nworkers = 2\n"                                            \
  "[pool.db]\nworkers = 2\n"
_Static_assert(DB_WORKERS == 2, "DEMO_CONFIG's [pool.db] workers");

/* The small config, its data directory at fx->dir/data. */
static void write_demo_config(fixture_t *fx) {
  write_config(fx,
               DEMO_CONFIG "[demo]\ndata_dir = %s/data\nembedding_dim = 16\n"
                           "db_rows = 100\n",
               fx->dir);
}

/* POST /tasks/{pool} with `body`, which must answer 200 with status "ok";
   returns its "result" (caller json_decref()s). */
static json_t *run_ok(fixture_t *fx, server_t *s, const char *pool,
                      const char *body) {
  char path[64];
  snprintf(path, sizeof(path), "/tasks/%s", pool);
  json_t *j = call_json(fx, s, "POST", path, NULL, body, 200);
  assert_string_equal(jstr(j, "pool"), pool);
  assert_string_equal(jstr(j, "status"), "ok");
  assert_true(jnum(j, "queue_wait_s") >= 0 && jnum(j, "run_s") >= 0);
  json_t *result = json_incref(jobj(j, "result"));
  json_decref(j);
  return result;
}

static void hex64(char out[17], uint64_t v) {
  snprintf(out, 17, "%016" PRIx64, v);
}

/* ---- the kinds ----------------------------------------------------------- */

static void check_query(fixture_t *fx, server_t *s) {
  json_t *r = run_ok(fx, s, "db", "{\"work\":\"query\",\"key\":42}");
  char want[DEMO_VALUE_MAX];
  demo_db_value(42, want, sizeof(want));
  assert_int_equal(jint(r, "key"), 42);
  assert_string_equal(jstr(r, "value"), want);
  assert_true(jint(r, "weight") >= 0 && jint(r, "weight") < 1000);
  json_decref(r);

  call_error(fx, s, "POST", "/tasks/db", NULL,
             "{\"work\":\"query\",\"key\":99999}", 404, "key: no row 99999");
  call_error(fx, s, "POST", "/tasks/db", NULL,
             "{\"work\":\"query\",\"key\":101}", 404, "key: no row 101");
  /* Only the db pool's workers hold a connection. */
  call_error(fx, s, "POST", "/tasks/cpu", NULL,
             "{\"work\":\"query\",\"key\":42}", 400,
             "work: \"query\" runs on the db pool");
}

static void check_dense(fixture_t *fx, server_t *s) {
  demo_dense_t want;
  assert_int_equal(demo_dense(200, &want), 0);
  char fnv[17];
  hex64(fnv, want.fnv1a);
  for (int i = 0; i < 2; i++) { /* the same answer twice */
    json_t *r = run_ok(fx, s, "inference", "{\"work\":\"dense\",\"size\":200}");
    assert_int_equal(jint(r, "size"), 200);
    assert_string_equal(jstr(r, "fnv1a64"), fnv);
    assert_int_equal(jint(r, "nonzero"), want.nonzero);
    assert_true(fabs(jnum(r, "sum") - want.sum) <= 1e-8 * fabs(want.sum));
    json_decref(r);
  }
  json_t *r = run_ok(fx, s, "inference", "{\"work\":\"dense\",\"size\":1}");
  assert_int_equal(jint(r, "size"), 1);
  json_decref(r);
  r = run_ok(fx, s, "inference", "{\"work\":\"dense\",\"size\":2048}");
  assert_int_equal(jint(r, "size"), 2048);
  json_decref(r);
}

static void check_embed(fixture_t *fx, server_t *s) {
  static const char text[] = "Thread pools keep the loop free";
  double want[16];
  size_t ntok;
  assert_int_equal(demo_embed(text, strlen(text), 16, want, &ntok), 0);
  char body[128];
  snprintf(body, sizeof(body), "{\"work\":\"embed\",\"text\":\"%s\"}", text);
  json_t *r = run_ok(fx, s, "embedding", body);
  assert_int_equal(jint(r, "dimension"), 16);
  assert_int_equal(jint(r, "tokens"), (json_int_t)ntok);
  json_t *v = json_object_get(r, "vector");
  assert_true(json_is_array(v));
  assert_int_equal(json_array_size(v), 16);
  double norm = 0;
  for (size_t i = 0; i < 16; i++) {
    double x = json_number_value(json_array_get(v, i));
    assert_true(fabs(x - want[i]) <= 1e-8); /* 9 digits in JSON */
    norm += x * x;
  }
  assert_true(fabs(sqrt(norm) - 1.0) < 1e-6);
  json_decref(r);
}

static void check_hash(fixture_t *fx, server_t *s) {
  json_t *r = run_ok(fx, s, "cpu", "{\"work\":\"hash\",\"bytes\":0}");
  assert_int_equal(jint(r, "bytes"), 0);
  assert_string_equal(
      jstr(r, "sha256"),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  json_decref(r);
  char want[65];
  assert_int_equal(demo_hash(100000, want), 0);
  r = run_ok(fx, s, "cpu", "{\"work\":\"hash\",\"bytes\":100000}");
  assert_int_equal(jint(r, "bytes"), 100000);
  assert_string_equal(jstr(r, "sha256"), want);
  json_decref(r);
}

static void check_read(fixture_t *fx, server_t *s) {
  unsigned char *bytes = malloc(65536);
  assert_non_null(bytes);
  demo_bytes(0, bytes, 65536);
  char want[17];
  hex64(want, demo_fnv1a(DEMO_FNV_INIT, bytes, 65536));
  free(bytes);
  json_t *r = run_ok(fx, s, "io", "{\"work\":\"read\",\"bytes\":65536}");
  assert_int_equal(jint(r, "bytes"), 65536);
  assert_int_equal(jint(r, "offset"), 0);
  assert_string_equal(jstr(r, "fnv1a64"), want);
  json_decref(r);
  r = run_ok(fx, s, "io", "{\"work\":\"read\",\"bytes\":0}");
  assert_int_equal(jint(r, "bytes"), 0);
  json_decref(r);
  char body[64];
  snprintf(body, sizeof(body), "{\"work\":\"read\",\"bytes\":%zu}",
           DEMO_READ_FILE_SIZE);
  r = run_ok(fx, s, "io", body);
  assert_int_equal(jint(r, "bytes"), (json_int_t)DEMO_READ_FILE_SIZE);
  json_decref(r);
}

static void check_bad_bodies(fixture_t *fx, server_t *s) {
  static const struct {
    const char *pool, *body, *needle;
  } bad[] = {
      {"inference", "{\"work\":\"dense\",\"size\":0}",
       "size: expected an integer 1..2048"},
      {"inference", "{\"work\":\"dense\",\"size\":2049}",
       "size: expected an integer 1..2048"},
      {"inference", "{\"work\":\"dense\",\"size\":\"8\"}", "size: expected"},
      {"inference", "{\"work\":\"dense\"}", "size: missing"},
      {"embedding", "{\"work\":\"embed\",\"text\":\"\"}",
       "text: expected a string of 1..65536 bytes"},
      {"embedding", "{\"work\":\"embed\",\"text\":7}", "text: expected"},
      {"cpu", "{\"work\":\"hash\",\"bytes\":-1}",
       "bytes: expected an integer 0..67108864"},
      {"cpu", "{\"work\":\"hash\",\"bytes\":67108865}",
       "bytes: expected an integer 0..67108864"},
      {"io", "{\"work\":\"read\",\"bytes\":16777217}",
       "bytes: expected an integer 0..16777216"},
      {"io", "{\"work\":\"read\",\"bytes\":-1}", "bytes: expected"},
      {"db", "{\"work\":\"query\",\"key\":\"42\"}", "key: expected an integer"},
      {"db", "{\"work\":\"query\"}", "key: missing"},
      /* A field of another kind names itself. */
      {"cpu", "{\"work\":\"sleep\",\"size\":3}",
       "size: not a field of \"sleep\" work"},
      {"cpu", "{\"work\":\"hash\",\"ms\":3,\"bytes\":1}",
       "ms: not a field of \"hash\" work"},
      {"db", "{\"key\":1,\"work\":\"query\",\"text\":\"x\"}",
       "text: not a field of \"query\" work"},
      {"cpu", "{\"work\":\"hash\",\"bytes\":1,\"colour\":1}",
       "colour: unknown field"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char path[64];
    snprintf(path, sizeof(path), "/tasks/%s", bad[i].pool);
    call_error(fx, s, "POST", path, NULL, bad[i].body, 400, bad[i].needle);
  }
  /* 65537 bytes of text: one too many. */
  size_t n = DEMO_TEXT_MAX + 1;
  char *body = malloc(n + 64);
  assert_non_null(body);
  int at = snprintf(body, 64, "{\"work\":\"embed\",\"text\":\"");
  memset(body + at, 'a', n);
  strcpy(body + at + n, "\"}");
  call_error(fx, s, "POST", "/tasks/embedding", NULL, body, 400,
             "text: expected a string of 1..65536 bytes");
  free(body);

  /* An unknown kind: the message lists every kind. */
  th_response_t r;
  call(fx, s, "POST", "/tasks/cpu", NULL, "{\"work\":\"nap\"}", &r);
  expect_error(&r, 400, "work: expected");
  static const char *const kinds[] = {"sleep", "spin",  "fail", "query",
                                      "dense", "embed", "hash", "read"};
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    char quoted[16];
    snprintf(quoted, sizeof(quoted), "\\\"%s\\\"", kinds[i]);
    if (!strstr(r.body, quoted))
      fail_msg("%s is not listed in %s", kinds[i], r.body);
  }
  th_response_free(&r);
}

static void test_demo_work_kinds_answer_their_results(void **state) {
  fixture_t *fx = *state;
  write_demo_config(fx);
  server_t *s = server_start(fx);
  check_query(fx, s);
  check_dense(fx, s);
  check_embed(fx, s);
  check_hash(fx, s);
  check_read(fx, s);
  check_bad_bodies(fx, s);

  /* The old kinds still answer as before, without a result. */
  json_t *j = call_json(fx, s, "POST", "/tasks/cpu", NULL,
                        "{\"work\":\"sleep\",\"ms\":1,\"name\":\"nap\"}", 200);
  assert_string_equal(jstr(j, "name"), "nap");
  assert_null(json_object_get(j, "result"));
  json_decref(j);
  server_stop_ok(s);
}

/* ---- the data directory -------------------------------------------------- */

static void stat_file(fixture_t *fx, const char *name, struct stat *st) {
  char path[256];
  snprintf(path, sizeof(path), "%s/tpool-data/%s", fx->dir, name);
  if (stat(path, st) != 0)
    fail_msg("%s is missing", path);
}

static void test_demo_data_made_once_then_reused(void **state) {
  fixture_t *fx = *state;
  /* No data_dir: the default, tpool-data in the working directory. */
  write_config(fx, DEMO_CONFIG "[demo]\nembedding_dim = 16\ndb_rows = 100\n");
  server_t *s = server_start(fx);
  wait_log(s,
           "INFO Server Seeded the demo database tpool-data/items.db "
           "(100 rows)",
           1);
  wait_log(s, "INFO Server Wrote the demo read file tpool-data/read.bin", 1);
  json_t *r = run_ok(fx, s, "db", "{\"work\":\"query\",\"key\":100}");
  json_decref(r);
  server_stop_ok(s);
  struct stat db1, rd1, db2, rd2;
  stat_file(fx, "items.db", &db1);
  stat_file(fx, "read.bin", &rd1);
  assert_int_equal(rd1.st_size, (off_t)DEMO_READ_FILE_SIZE);

  s = server_start(fx);
  wait_log(s,
           "INFO Server Reusing the demo database tpool-data/items.db "
           "(100 rows)",
           1);
  wait_log(s, "INFO Server Reusing the demo read file tpool-data/read.bin", 1);
  assert_int_equal(log_count(s, "Seeded"), 0);
  assert_int_equal(log_count(s, "Wrote"), 0);
  r = run_ok(fx, s, "db", "{\"work\":\"query\",\"key\":100}");
  json_decref(r);
  server_stop_ok(s);
  /* The same files, untouched. */
  stat_file(fx, "items.db", &db2);
  stat_file(fx, "read.bin", &rd2);
  assert_int_equal(db2.st_ino, db1.st_ino);
  assert_int_equal(db2.st_mtim.tv_sec, db1.st_mtim.tv_sec);
  assert_int_equal(db2.st_mtim.tv_nsec, db1.st_mtim.tv_nsec);
  assert_int_equal(rd2.st_ino, rd1.st_ino);
}

static void test_demo_data_dir_that_cannot_be_made(void **state) {
  fixture_t *fx = *state;
  char file[160];
  snprintf(file, sizeof(file), "%s/plain-file", fx->dir);
  write_file(file, "not a directory\n");
  write_config(fx, DEMO_CONFIG "[demo]\ndata_dir = %s/sub\n", file);
  server_t *s = server_spawn(fx, NULL);
  assert_int_equal(server_exit_code(s), 1);
  server_join_log(s);
  assert_int_equal(log_count(s, "ERROR Server [demo] data_dir: cannot create"),
                   1);
  assert_int_equal(log_count(s, "Listening"), 0);
}

/* ---- connections --------------------------------------------------------- */

typedef struct query_load {
  char body[64];
  size_t ok, missing, other;
} query_load_t;

static bool query_next(size_t n, th_request_t *req, void *arg) {
  query_load_t *q = arg;
  int len = snprintf(q->body, sizeof(q->body),
                     "{\"work\":\"query\",\"key\":%zu}", n % 120 + 1);
  req->method = "POST";
  req->path = "/tasks/db";
  req->headers = NULL;
  req->body = q->body;
  req->body_len = (size_t)len;
  return true;
}

static void query_answer(size_t n, const th_response_t *r, void *arg) {
  query_load_t *q = arg;
  bool exists = n % 120 + 1 <= 100;
  if (r->status == 200 && exists)
    q->ok++;
  else if (r->status == 404 && !exists)
    q->missing++;
  else
    q->other++;
}

static void test_demo_db_pool_opens_one_connection_per_worker(void **state) {
  fixture_t *fx = *state;
  enum { QUERIES = 600 };
  write_demo_config(fx);
  server_t *s = server_start(fx);
  query_load_t q = {0};
  th_load_t *l = th_load_start(fx->base, s->port, 8, QUERIES, query_next,
                               query_answer, &q);
  run_load(s, l);
  th_load_free(l);
  assert_int_equal(q.ok, QUERIES / 120 * 100);
  assert_int_equal(q.missing, QUERIES / 120 * 20);
  assert_int_equal(q.other, 0);

  json_t *db = get_pool(fx, s, "db");
  assert_int_equal(jint(db, "completed"), QUERIES / 120 * 100);
  json_decref(db);
  server_stop_ok(s);
  /* One line per connection: as many as workers, not as queries. */
  assert_int_equal(log_count(s, "INFO Server Opened SQLite connection "),
                   DB_WORKERS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_demo_work_kinds_answer_their_results,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_demo_data_made_once_then_reused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_demo_data_dir_that_cannot_be_made,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_demo_db_pool_opens_one_connection_per_worker, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
