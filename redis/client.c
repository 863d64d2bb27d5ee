/*
 * client.c — adding entries to the stream and reading their result
 * records, for producers and for anyone who polls an entry by id.
 */
#include "redis_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tpool_redis_client {
  tpool__redis_conn_t conn;
  char stream[TPOOL_REDIS_NAME_MAX + 1];
  char group[TPOOL_REDIS_NAME_MAX + 1];
  bool closing;
};

int tpool_redis_client_new(struct event_base *base,
                           const tpool_redis_options_t *o,
                           tpool_redis_client_t **out) {
  if (!base || !o || !out || !o->url[0] || !o->stream[0])
    return -EINVAL;
  tpool_redis_client_t *c = calloc(1, sizeof(*c));
  if (!c)
    return -ENOMEM;
  snprintf(c->stream, sizeof(c->stream), "%s", o->stream);
  snprintf(c->group, sizeof(c->group), "%s", o->group);
  int rc = tpool__redis_conn_init(&c->conn, base, o->url, "client", NULL, NULL,
                                  NULL, c);
  if (rc != 0) {
    free(c);
    return rc;
  }
  tpool__redis_conn_start(&c->conn);
  *out = c;
  return 0;
}

bool tpool_redis_client_connected(const tpool_redis_client_t *c) {
  return c && c->conn.ready;
}

typedef struct call {
  tpool_redis_client_t *c;
  void (*fn)(void);
  void *arg;
} call_t;

static void on_added(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  call_t *k = privdata;
  redisReply *r = reply;
  tpool_redis_added_fn cb = (tpool_redis_added_fn)k->fn;
  if (!r)
    cb(k->arg, k->c->closing ? -EIO : -ENOTCONN, NULL);
  else if (r->type != REDIS_REPLY_STRING)
    cb(k->arg, -EIO, NULL);
  else
    cb(k->arg, 0, r->str);
  free(k);
}

int tpool_redis_add(tpool_redis_client_t *c, const tpool_redis_field_t *fields,
                    size_t n, tpool_redis_added_fn cb, void *arg) {
  if (!c || !cb || !fields || n == 0)
    return -EINVAL;
  if (!c->conn.ready)
    return -ENOTCONN;
  size_t argc = 3 + 2 * n;
  const char **argv = malloc(argc * sizeof(*argv));
  size_t *lens = malloc(argc * sizeof(*lens));
  call_t *k = malloc(sizeof(*k));
  int rc = -ENOMEM;
  if (argv && lens && k) {
    argv[0] = "XADD";
    argv[1] = c->stream;
    argv[2] = "*";
    lens[0] = 4;
    lens[1] = strlen(c->stream);
    lens[2] = 1;
    for (size_t i = 0; i < n; i++) {
      argv[3 + 2 * i] = fields[i].name;
      lens[3 + 2 * i] = fields[i].name_len;
      argv[4 + 2 * i] = fields[i].value;
      lens[4 + 2 * i] = fields[i].value_len;
    }
    *k = (call_t){c, (void (*)(void))cb, arg};
    rc = tpool__redis_conn_send(&c->conn, on_added, k, (int)argc, argv, lens);
  }
  free(argv);
  free(lens);
  if (rc != 0)
    free(k);
  return rc;
}

/* A lookup, in one step: the record if there is one; else whether the
   entry still waits or runs: it is in the stream and either pending with a
   consumer or not yet delivered to the group (after its last-delivered
   id). An entry in the stream that is neither was acknowledged long ago and
   its record has expired: unknown. KEYS[1] the record, KEYS[2] the stream;
   ARGV[1] the id, ARGV[2] the group. Returns {1, [field, value, ...]} or
   {0, 1 (waiting) or 0 (unknown)}. */
static const char lookup_script[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "if #h > 0 then return {1, h} end\n"
    "local id = ARGV[1]\n"
    "if #redis.call('XRANGE', KEYS[2], id, id, 'COUNT', 1) == 0 then\n"
    "  return {0, 0}\n"
    "end\n"
    "local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[2])\n"
    "local last = nil\n"
    "if ok then\n"
    "  for _, g in ipairs(groups) do\n"
    "    local f = {}\n"
    "    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
    "    if f['name'] == ARGV[2] then last = f['last-delivered-id'] end\n"
    "  end\n"
    "end\n"
    "if not last then return {0, 1} end\n"
    "if #redis.call('XPENDING', KEYS[2], ARGV[2], id, id, 1) > 0 then\n"
    "  return {0, 1}\n"
    "end\n"
    "local function split(x)\n"
    "  local a, b = string.match(x, '^(%d+)-(%d+)$')\n"
    "  return tonumber(a), tonumber(b)\n"
    "end\n"
    "local im, is = split(id)\n"
    "local lm, ls = split(last)\n"
    "if im > lm or (im == lm and is > ls) then return {0, 1} end\n"
    "return {0, 0}\n";

static const char *hash_get(const redisReply *h, const char *name) {
  for (size_t i = 0; i + 1 < h->elements; i += 2)
    if (h->element[i]->type == REDIS_REPLY_STRING &&
        strcmp(h->element[i]->str, name) == 0 &&
        h->element[i + 1]->type == REDIS_REPLY_STRING)
      return h->element[i + 1]->str;
  return NULL;
}

/* Reads the script's reply into *rec; false for another shape. */
static bool read_record(const redisReply *r, tpool_redis_record_t *rec) {
  memset(rec, 0, sizeof(*rec));
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_INTEGER)
    return false;
  const redisReply *v = r->element[1];
  if (r->element[0]->integer == 0) {
    if (v->type != REDIS_REPLY_INTEGER)
      return false;
    rec->state = v->integer > 0 ? TPOOL_REDIS_WAITING : TPOOL_REDIS_UNKNOWN;
    return true;
  }
  if (v->type != REDIS_REPLY_ARRAY || !(rec->status = hash_get(v, "status")))
    return false;
  const char *attempts = hash_get(v, "attempts");
  const char *fin = hash_get(v, "finished_at");
  rec->state = TPOOL_REDIS_DONE;
  rec->result = hash_get(v, "result");
  rec->consumer = hash_get(v, "consumer");
  rec->attempts = attempts ? (unsigned)strtoul(attempts, NULL, 10) : 0;
  rec->finished_at = fin ? strtod(fin, NULL) : 0;
  if (!rec->result)
    rec->result = "null";
  if (!rec->consumer)
    rec->consumer = "";
  return true;
}

static void on_lookup(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  call_t *k = privdata;
  tpool_redis_lookup_fn cb = (tpool_redis_lookup_fn)k->fn;
  tpool_redis_record_t rec;
  if (!reply)
    cb(k->arg, k->c->closing ? -EIO : -ENOTCONN, NULL);
  else if (!read_record(reply, &rec))
    cb(k->arg, -EIO, NULL);
  else
    cb(k->arg, 0, &rec);
  free(k);
}

int tpool_redis_lookup(tpool_redis_client_t *c, const char *id,
                       tpool_redis_lookup_fn cb, void *arg) {
  if (!c || !cb || !tpool_redis_is_entry_id(id))
    return -EINVAL;
  if (!c->conn.ready)
    return -ENOTCONN;
  call_t *k = malloc(sizeof(*k));
  if (!k)
    return -ENOMEM;
  *k = (call_t){c, (void (*)(void))cb, arg};
  char key[sizeof(TPOOL_REDIS_RESULT_PREFIX) + TPOOL_REDIS_ID_MAX];
  snprintf(key, sizeof(key), TPOOL_REDIS_RESULT_PREFIX "%s", id);
  const char *argv[] = {"EVAL", lookup_script, "2", key, c->stream,
                        id,     c->group};
  size_t lens[7];
  for (size_t i = 0; i < 7; i++)
    lens[i] = strlen(argv[i]);
  int rc = tpool__redis_conn_send(&c->conn, on_lookup, k, 7, argv, lens);
  if (rc != 0)
    free(k);
  return rc;
}

void tpool_redis_client_free(tpool_redis_client_t *c) {
  if (!c)
    return;
  c->closing = true;
  tpool__redis_conn_close(&c->conn);
  free(c);
}
