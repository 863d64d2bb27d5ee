/*
 * fuzz_queue_entry.c — a queued entry, as Redis would deliver it, on
 * arbitrary bytes (libFuzzer target).
 *
 * Each input is read as the RESP text of one stream entry ([id, [name,
 * value, ...]], what XREADGROUP and XCLAIM give for each entry) by
 * hiredis's own reply reader, then goes where tpool-server sends an entry:
 * libtpool_redis copies it out of the reply (tpool__redis_copy_entry()),
 * and the server's task function (queue_entry_task()) reads its "task" and
 * "pool" fields into a task, as POST /tasks reads a body. A task it makes
 * is then given to the result function as if it had been cancelled, which
 * writes the record's JSON and frees it: that JSON must parse back. A
 * refused entry must say why. A crash, a sanitizer report or a leak is a
 * finding.
 */
#include "queue.h"
#include "redis_internal.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tpool_manager_t *m;
static task_route_t route;

static void quiet(tpool_log_level_t level, const char *msg, void *arg) {
  (void)level;
  (void)msg;
  (void)arg;
}

static void setup(void) {
  tpool_options_t *o = malloc(sizeof(*o));
  if (!o)
    abort();
  tpool_options_init(o);
  o->log_cb = quiet;
  /* Routes as the shipped config.ini has them, for entries without
     "pool". */
  snprintf(o->routes[0].pattern, sizeof(o->routes[0].pattern), "embed*");
  snprintf(o->routes[0].pool, sizeof(o->routes[0].pool), "embedding");
  snprintf(o->routes[1].pattern, sizeof(o->routes[1].pattern), "*");
  snprintf(o->routes[1].pool, sizeof(o->routes[1].pool), "cpu");
  o->nroutes = 2;
  if (tpool_manager_new(o, &m) != 0)
    abort();
  free(o);
  route.m = m;
  route.embedding_dim = 16;
  route.read_fd = -1;
  route.read_size = 4096;
  TAILQ_INIT(&route.waiting);
}

/* False for an input announcing an array or string longer than any input
   can hold: hiredis 0.14's reader allocates what the header says before
   the bytes arrive (Redis never sends such a header for an entry). */
static bool sizes_plausible(const uint8_t *data, size_t size) {
  for (size_t i = 0; i < size; i++) {
    if (data[i] != '*' && data[i] != '$')
      continue;
    unsigned long long n = 0;
    for (size_t j = i + 1; j < size && data[j] >= '0' && data[j] <= '9'; j++)
      if ((n = n * 10 + (data[j] - '0')) > 65536)
        return false;
  }
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!m)
    setup();
  if (!sizes_plausible(data, size))
    return 0;
  redisReader *r = redisReaderCreate();
  if (!r)
    abort();
  void *reply = NULL;
  if (redisReaderFeed(r, (const char *)data, size) != REDIS_OK ||
      redisReaderGetReply(r, &reply) != REDIS_OK || !reply) {
    redisReaderFree(r);
    return 0; /* not a whole reply: Redis never sends that */
  }
  tpool__redis_copy_t copy;
  if (tpool__redis_copy_entry(reply, &copy) == 0) {
    tpool_redis_task_t t;
    memset(&t, 0, sizeof(t));
    if (queue_entry_task(&route, &copy.entry, &t) == 0) {
      if (!t.work || !t.arg || !t.name)
        abort();
      /* Ended without running (its outputs are unset): the record says
         what POST /tasks would have answered. */
      static const int statuses[] = {-ECANCELED, -ETIMEDOUT, -EIO};
      int status = statuses[size % 3];
      tpool_task_info_t info = {
          (int64_t)size + 1, t.pool ? t.pool : "cpu", t.name, 0.000123, 0, 1};
      int http;
      json_t *want = task_reply_json(t.arg, status, &info, &http);
      char *text =
          queue_entry_result(&route, t.arg, status, &info, &copy.entry);
      json_t *back = text ? json_loads(text, 0, NULL) : NULL;
      if (!text || !back || !want)
        abort(); /* no record, or a result that is not JSON */
      if (!json_equal(back, want)) {
        fprintf(stderr, "record %s differs from the reply\n", text);
        abort();
      }
      json_decref(want);
      json_decref(back);
      free(text);
    } else if (!t.error[0]) {
      abort(); /* refused without saying why */
    }
    free(copy.mem);
  }
  freeReplyObject(reply);
  redisReaderFree(r);
  return 0;
}
