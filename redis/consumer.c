/*
 * consumer.c — a member of a Redis Streams consumer group that feeds a
 * manager's pools, acknowledging each entry only once its task has ended.
 *
 * Two connections: `rd` does nothing but XREADGROUP ... BLOCK, which holds
 * its connection while it waits; `wr` carries the rest (the group's
 * creation, result records with their acks, claims, the dead letters, the
 * group's figures), so an ack never waits behind a blocked read.
 *
 * An entry the consumer holds (held_t) is on exactly one list:
 *   waiting  read, not yet taken by its pool (it was full): submitted again
 *            as tasks end, and reading stops meanwhile
 *   running  its task is in a pool
 *   done     its task ended; its result record and ack are to be written
 *   acking   sent in a script call whose reply has not come
 * A lost connection puts `acking` back on `done`; `done` is written once
 * the connection is back. Nothing held is ever acknowledged before its
 * result is written, in the same script.
 *
 * When a connection comes back (and at start) the consumer asks Redis for
 * its own pending entries (XPENDING ... <consumer>) and claims those it
 * does not hold: a read whose reply was lost, or a previous run under the
 * same name. Every tick it also claims entries that other consumers left
 * idle for reclaim_after_s, and touches its own long-running entries so
 * that nobody claims those. Claims go through XPENDING then XCLAIM rather
 * than XAUTOCLAIM, because XPENDING gives each entry's delivery count,
 * which decides whether it is dead-lettered instead.
 */
#include "redis_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

/* Entries per result-and-ack script call. */
#define ACKS_PER_CALL 256
/* How long XREADGROUP waits for new entries, in ms: also how long a stop
   may wait for a read in progress. */
#define READ_BLOCK_MS "1000"
/* Entries asked of XPENDING per page. */
#define PENDING_PAGE 100
/* How soon a task a full pool refused is offered again, when no task of
   this consumer ends before then. */
#define RESUBMIT_S 0.02

/* The result record and the ack of each entry, in one step. XACK says
   whether this run is the one that counts: 1, the entry was pending and is
   acknowledged now, so the record is written; 0, another run already
   acknowledged it (or it was dead-lettered), so nothing is written.
   KEYS[1] stream; ARGV group, ttl, consumer, then per entry: id, status,
   result, attempts, finished_at. Returns 1 or 0 per entry. */
static const char ack_script[] =
    "local s, g, ttl, who = KEYS[1], ARGV[1], ARGV[2], ARGV[3]\n"
    "local out = {}\n"
    "for i = 4, #ARGV, 5 do\n"
    "  local id = ARGV[i]\n"
    "  if redis.call('XACK', s, g, id) == 1 then\n"
    "    local k = '" TPOOL_REDIS_RESULT_PREFIX "' .. id\n"
    "    redis.call('HSET', k, 'status', ARGV[i + 1], 'result', ARGV[i + 2],\n"
    "               'attempts', ARGV[i + 3], 'consumer', who,\n"
    "               'finished_at', ARGV[i + 4])\n"
    "    redis.call('EXPIRE', k, ttl)\n"
    "    out[#out + 1] = 1\n"
    "  else\n"
    "    out[#out + 1] = 0\n"
    "  end\n"
    "end\n"
    "return out\n";

/* An entry to the dead-letter stream, with its fields plus entry, reason
   and deliveries, its result record "dead", and its ack, in one step; only
   if it is still pending. KEYS[1] stream, KEYS[2] dead-letter stream; ARGV
   group, ttl, consumer, id, deliveries, reason, result, finished_at.
   Returns 1, or 0 when the entry was no longer pending. */
static const char dead_script[] =
    "local s, d = KEYS[1], KEYS[2]\n"
    "local g, ttl, who, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "if redis.call('XACK', s, g, id) == 0 then return 0 end\n"
    "local args = {}\n"
    "local e = redis.call('XRANGE', s, id, id)\n"
    "if e[1] then for _, v in ipairs(e[1][2]) do args[#args + 1] = v end end\n"
    "args[#args + 1] = 'entry'; args[#args + 1] = id\n"
    "args[#args + 1] = 'reason'; args[#args + 1] = ARGV[6]\n"
    "args[#args + 1] = 'deliveries'; args[#args + 1] = ARGV[5]\n"
    "redis.call('XADD', d, '*', unpack(args))\n"
    "local k = '" TPOOL_REDIS_RESULT_PREFIX "' .. id\n"
    "redis.call('HSET', k, 'status', 'dead', 'result', ARGV[7],\n"
    "           'attempts', '0', 'consumer', who, 'finished_at', ARGV[8])\n"
    "redis.call('EXPIRE', k, ttl)\n"
    "return 1\n";

typedef struct held held_t;
TAILQ_HEAD(held_list, held);

struct held {
  TAILQ_ENTRY(held) link;
  struct held_list *on;      /* the list it is on */
  tpool_redis_consumer_t *c; /* NULL once the consumer is freed */
  tpool__redis_copy_t copy;  /* the entry */
  /* The task, as the task function made it. */
  char pool[TPOOL_NAME_MAX];
  char name[TPOOL_TASK_NAME_MAX];
  tpool_work_cb work;
  void *arg;
  bool has_arg; /* the result function is still owed a call */
  double start_timeout_s;
  unsigned max_attempts;
  tpool_redis_result_fn to_result; /* for after the consumer is gone */
  void *user;
  /* The outcome, for the record. */
  const char *status;
  char *result;
  unsigned attempts;
  double finished_at;
  bool resent;         /* its ack was sent on a connection that dropped */
  uint64_t touched_ns; /* last delivered, claimed or touched */
};

struct tpool_redis_consumer {
  tpool_manager_t *m;
  struct event_base *base;
  tpool_redis_options_t o;
  char ttl[24];
  tpool__redis_conn_t rd, wr;
  struct held_list waiting, running, done, acking;
  size_t nheld;
  bool reading;       /* an XREADGROUP is out on rd */
  bool group_ok;      /* the group exists, as far as wr knows */
  bool creating;      /* XGROUP CREATE is out */
  bool need_recovery; /* own pending entries are to be read again */
  bool recovering;    /* an XPENDING/XCLAIM of them is out */
  bool reaping;       /* a reaper round is out */
  bool stopping;
  bool closing; /* being freed: callbacks only free their data */
  void (*stop_done)(void *arg);
  void *stop_arg;
  uint64_t next_reap_ns, next_touch_ns;
  struct event *flush_ev, *tick_ev, *stop_ev, *resubmit_ev;
  /* For tpool_redis_consumer_stats(), on any thread. */
  atomic_bool connected;
  atomic_uint_fast64_t received, acked, reclaimed, dead_lettered, duplicates,
      failed_entries, in_flight, down_since_ns;
  atomic_int_fast64_t lag, pending;
};

/* ---- small things -------------------------------------------------------- */

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void move(held_t *h, struct held_list *to) {
  if (h->on)
    TAILQ_REMOVE(h->on, h, link);
  h->on = to;
  if (to)
    TAILQ_INSERT_TAIL(to, h, link);
}

static bool holds(const tpool_redis_consumer_t *c, const char *id) {
  const struct held_list *lists[] = {&c->waiting, &c->running, &c->done,
                                     &c->acking};
  for (size_t i = 0; i < 4; i++) {
    const held_t *h;
    TAILQ_FOREACH(h, lists[i], link)
    if (strcmp(h->copy.entry.id, id) == 0)
      return true;
  }
  return false;
}

/* Calls the result function if it is still owed a call. */
static char *settle(held_t *h, int status, const tpool_task_info_t *info) {
  if (!h->has_arg)
    return NULL;
  h->has_arg = false;
  return h->to_result(h->user, h->arg, status, info, &h->copy.entry);
}

static void held_free(held_t *h) {
  free(settle(h, -ECANCELED, NULL));
  free(h->result);
  free(h->copy.mem);
  free(h);
}

/* Forgets an entry this consumer holds: acknowledged, or left pending in
   Redis for a later run. */
static void release(tpool_redis_consumer_t *c, held_t *h) {
  move(h, NULL);
  held_free(h);
  c->nheld--;
  atomic_store(&c->in_flight, c->nheld);
}

static void update_connected(tpool_redis_consumer_t *c) {
  bool up = c->rd.ready && c->wr.ready;
  atomic_store(&c->connected, up);
  uint64_t since = c->rd.down_since_ns;
  if (!since || (c->wr.down_since_ns && c->wr.down_since_ns < since))
    since = c->wr.down_since_ns;
  atomic_store(&c->down_since_ns, up ? 0 : since);
}

static void maybe_read(tpool_redis_consumer_t *c);
static void maybe_stopped(tpool_redis_consumer_t *c);
static void recover(tpool_redis_consumer_t *c, const char *from);

static void schedule_flush(tpool_redis_consumer_t *c) {
  if (!TAILQ_EMPTY(&c->done))
    event_active(c->flush_ev, EV_TIMEOUT, 1);
}

/* ---- an entry becomes a task --------------------------------------------- */

/* Records the end of an entry that did not run or whose task ended, for
   the next flush. `result` is taken (NULL: "null"). */
static void finish(tpool_redis_consumer_t *c, held_t *h, const char *status,
                   char *result, unsigned attempts) {
  h->status = status;
  h->result = result;
  h->attempts = attempts;
  h->finished_at = wall_s();
  move(h, &c->done);
  schedule_flush(c);
}

/* Finishes an entry that cannot run, with {"error": why}. */
static void refuse(tpool_redis_consumer_t *c, held_t *h, const char *why) {
  tpool__redis_buf_t b = {0};
  tpool__redis_buf_add(&b, "{\"error\":", 9);
  tpool__redis_buf_json(&b, why, strlen(why));
  tpool__redis_buf_add(&b, "}", 1);
  if (b.failed) {
    free(b.s);
    b.s = NULL;
  }
  atomic_fetch_add(&c->failed_entries, 1);
  free(settle(h, -EINVAL, NULL));
  finish(c, h, "failed", b.s, 0);
}

/* A record's status: tpool's word, but for a task the breaker refused,
   which a record calls failed (records say ok, failed, cancelled, expired
   or dead). */
static const char *status_word(int status) {
  return status == -TPOOL_ECIRCUIT ? "failed" : tpool_status_word(status);
}

static void on_task_done(int status, const tpool_task_info_t *info, void *arg) {
  held_t *h = arg;
  tpool_redis_consumer_t *c = h->c;
  char *result = settle(h, status, info);
  if (!c) { /* the consumer is gone: its entry stays pending in Redis */
    free(result);
    held_free(h);
    return;
  }
  finish(c, h, status_word(status), result, info->attempts);
  if (!TAILQ_EMPTY(&c->waiting))
    event_active(c->resubmit_ev, EV_TIMEOUT, 1);
}

/* The work of a held entry's task, on a worker: the task function's work
   on its argument (neither changes while the task runs). */
static int run_held(void *arg) {
  const held_t *h = arg;
  return h->work(h->arg);
}

/* Offers h's task to its pool. Returns 0 when the pool took it or the
   entry was finished; -EAGAIN when it should be offered again later. */
static int submit(tpool_redis_consumer_t *c, held_t *h) {
  tpool_task_opts_t opts = {0};
  opts.base = c->base;
  opts.start_timeout_s = h->start_timeout_s;
  opts.max_attempts = h->max_attempts;
  int64_t id = h->pool[0]
                   ? tpool_manager_submit(c->m, h->pool, h->name, run_held,
                                          on_task_done, h, &opts)
                   : tpool_manager_submit_routed(c->m, h->name, run_held,
                                                 on_task_done, h, &opts);
  if (id > 0) {
    move(h, &c->running);
    return 0;
  }
  char why[TPOOL_REDIS_ERROR_MAX];
  switch ((int)id) {
  case -EAGAIN:         /* full */
  case -TPOOL_ECIRCUIT: /* its breaker is open */
  case -ENOMEM:
    return -EAGAIN;
  case -ESHUTDOWN: /* left pending, for the next run */
    release(c, h);
    return 0;
  case -ENOENT:
    if (h->pool[0])
      snprintf(why, sizeof(why), "no pool named \"%s\"", h->pool);
    else
      snprintf(why, sizeof(why), "no route for task name \"%s\"", h->name);
    refuse(c, h, why);
    return 0;
  default:
    snprintf(why, sizeof(why), "submit: %s", tpool_strerror((int)id));
    refuse(c, h, why);
    return 0;
  }
}

/* Offers the waiting entries again in RESUBMIT_S, unless that is due
   already. */
static void resubmit_later(tpool_redis_consumer_t *c) {
  if (!evtimer_pending(c->resubmit_ev, NULL)) {
    struct timeval tv = tpool__redis_timeval(RESUBMIT_S);
    evtimer_add(c->resubmit_ev, &tv);
  }
}

/* Offers the waiting entries again, in order, until a pool refuses. */
static void resubmit(tpool_redis_consumer_t *c) {
  held_t *h;
  while ((h = TAILQ_FIRST(&c->waiting)) != NULL)
    if (submit(c, h) != 0)
      break;
  if (!TAILQ_EMPTY(&c->waiting))
    resubmit_later(c);
  else
    maybe_read(c);
  maybe_stopped(c);
}

static void on_resubmit(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  resubmit(arg);
}

/* Takes an entry delivered to this consumer (the `deliveries`th time). */
static void accept_entry(tpool_redis_consumer_t *c, const redisReply *r,
                         unsigned deliveries) {
  tpool__redis_copy_t copy;
  if (tpool__redis_copy_entry(r, &copy) != 0)
    return; /* deleted, or out of memory: it stays pending, for a claim */
  held_t *h = calloc(1, sizeof(*h));
  if (!h) {
    free(copy.mem);
    return;
  }
  h->c = c;
  h->copy = copy;
  h->copy.entry.deliveries = deliveries;
  h->to_result = c->o.to_result;
  h->user = c->o.user;
  h->touched_ns = tpool__redis_now_ns();
  c->nheld++;
  atomic_store(&c->in_flight, c->nheld);
  atomic_fetch_add(&c->received, 1);
  move(h, &c->waiting); /* for now */
  tpool_redis_task_t t;
  memset(&t, 0, sizeof(t));
  if (c->o.to_task(c->o.user, &h->copy.entry, &t) != 0) {
    refuse(c, h, t.error[0] ? t.error : "the entry cannot run");
    return;
  }
  h->arg = t.arg;
  h->has_arg = true;
  if (!t.work) {
    refuse(c, h, "the task function gave no work");
    return;
  }
  h->work = t.work;
  snprintf(h->pool, sizeof(h->pool), "%s", t.pool ? t.pool : "");
  snprintf(h->name, sizeof(h->name), "%s", t.name ? t.name : "task");
  h->start_timeout_s = t.start_timeout_s;
  h->max_attempts = t.max_attempts;
  /* Behind the ones already waiting, so order holds. */
  TAILQ_REMOVE(&c->waiting, h, link);
  h->on = NULL;
  if (TAILQ_EMPTY(&c->waiting) && submit(c, h) == 0)
    return;
  move(h, &c->waiting);
  resubmit_later(c);
}

/* ---- reading ------------------------------------------------------------- */

/* The entries of an XREADGROUP or XCLAIM reply's stream part. */
static void accept_all(tpool_redis_consumer_t *c, const redisReply *entries,
                       unsigned deliveries) {
  for (size_t i = 0;
       entries && entries->type == REDIS_REPLY_ARRAY && i < entries->elements;
       i++)
    accept_entry(c, entries->element[i], deliveries);
}

static void ensure_group(tpool_redis_consumer_t *c);

static void on_read(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  tpool_redis_consumer_t *c = privdata;
  redisReply *r = reply;
  if (c->closing)
    return;
  c->reading = false;
  if (!r) { /* lost: the entries, if any, are pending for us */
    c->need_recovery = true;
  } else if (r->type == REDIS_REPLY_ERROR) {
    if (strncmp(r->str, "NOGROUP", 7) == 0) {
      c->group_ok = false;
      ensure_group(c);
    } else {
      tpool_manager_log(c->m, TPOOL_LOG_ERROR, "Redis XREADGROUP %s: %s",
                        c->o.stream, r->str);
    }
    return; /* the tick reads again */
  } else if (r->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->elements; i++) {
      const redisReply *s = r->element[i];
      if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
        accept_all(c, s->element[1], 1);
    }
  }
  maybe_read(c);
  maybe_stopped(c);
}

static void maybe_read(tpool_redis_consumer_t *c) {
  size_t limit = c->o.max_in_flight;
  if (c->closing || c->stopping || c->reading || !c->rd.ready || !c->group_ok ||
      c->need_recovery || c->recovering || !TAILQ_EMPTY(&c->waiting) ||
      c->nheld >= limit)
    return;
  size_t n = limit - c->nheld < c->o.batch ? limit - c->nheld : c->o.batch;
  char count[24];
  snprintf(count, sizeof(count), "%zu", n);
  const char *argv[] = {"XREADGROUP", "GROUP",     c->o.group, c->o.consumer,
                        "COUNT",      count,       "BLOCK",    READ_BLOCK_MS,
                        "STREAMS",    c->o.stream, ">"};
  size_t lens[11];
  for (size_t i = 0; i < 11; i++)
    lens[i] = strlen(argv[i]);
  if (tpool__redis_conn_send(&c->rd, on_read, c, 11, argv, lens) == 0)
    c->reading = true;
}

/* ---- the group ----------------------------------------------------------- */

static void on_group(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  tpool_redis_consumer_t *c = privdata;
  redisReply *r = reply;
  if (c->closing)
    return;
  c->creating = false;
  if (!r)
    return; /* lost: done again once back */
  if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
    tpool_manager_log(c->m, TPOOL_LOG_ERROR, "Redis XGROUP CREATE %s %s: %s",
                      c->o.stream, c->o.group, r->str);
    return; /* the tick tries again */
  }
  c->group_ok = true;
  if (c->need_recovery)
    recover(c, "-");
  maybe_read(c);
}

static void ensure_group(tpool_redis_consumer_t *c) {
  if (c->group_ok || c->creating || !c->wr.ready)
    return;
  /* From the stream's start, so that entries added before any consumer
     ran are not skipped. */
  const char *argv[] = {"XGROUP",   "CREATE", c->o.stream,
                        c->o.group, "0",      "MKSTREAM"};
  size_t lens[6];
  for (size_t i = 0; i < 6; i++)
    lens[i] = strlen(argv[i]);
  if (tpool__redis_conn_send(&c->wr, on_group, c, 6, argv, lens) == 0)
    c->creating = true;
}

/* ---- claims: own pending entries, others' idle ones, dead letters ------- */

/* What a claim needs to know of the entries it asked for. */
typedef struct claim {
  tpool_redis_consumer_t *c;
  bool recovery;                     /* own entries, at (re)connect */
  char last[TPOOL_REDIS_ID_MAX + 2]; /* the page's last id, "(" first */
  bool full_page;
  size_t n;
  struct {
    char id[TPOOL_REDIS_ID_MAX];
    unsigned deliveries;
    bool other; /* pending with another consumer */
  } e[];
} claim_t;

static void on_dead(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  tpool_redis_consumer_t *c = privdata;
  redisReply *r = reply;
  if (c->closing || !r)
    return; /* not done: still pending, found again by the next round */
  if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
    atomic_fetch_add(&c->dead_lettered, 1);
  else if (r->type == REDIS_REPLY_ERROR)
    tpool_manager_log(c->m, TPOOL_LOG_ERROR, "Redis dead letter: %s", r->str);
}

/* Moves entry id, delivered `deliveries` times, to the dead-letter
   stream. */
static void dead_letter(tpool_redis_consumer_t *c, const char *id,
                        unsigned deliveries) {
  char dl[16], fin[32], result[160];
  snprintf(dl, sizeof(dl), "%u", deliveries);
  snprintf(fin, sizeof(fin), "%.3f", wall_s());
  snprintf(result, sizeof(result),
           "{\"error\":\"delivered %u times without completing "
           "(max_deliveries %u)\",\"deliveries\":%u}",
           deliveries, c->o.max_deliveries, deliveries);
  const char *argv[] = {
      "EVAL", dead_script,   "2", c->o.stream, c->o.dead_letter, c->o.group,
      c->ttl, c->o.consumer, id,  dl,          "max_deliveries", result,
      fin};
  size_t lens[13];
  for (size_t i = 0; i < 13; i++)
    lens[i] = strlen(argv[i]);
  tpool_manager_log(c->m, TPOOL_LOG_WARN,
                    "Redis entry %s delivered %u times: to %s", id, deliveries,
                    c->o.dead_letter);
  tpool__redis_conn_send(&c->wr, on_dead, c, 13, argv, lens);
}

static void claim_done(claim_t *k) {
  tpool_redis_consumer_t *c = k->c;
  if (k->recovery) {
    c->recovering = false;
    if (k->full_page && c->wr.ready) {
      char from[sizeof(k->last)];
      memcpy(from, k->last, sizeof(from));
      free(k);
      recover(c, from);
      return;
    }
    if (c->wr.ready)
      c->need_recovery = false;
  } else {
    c->reaping = false;
  }
  free(k);
  maybe_read(c);
}

static void on_claim(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  claim_t *k = privdata;
  tpool_redis_consumer_t *c = k->c;
  redisReply *r = reply;
  if (c->closing) {
    free(k);
    return;
  }
  if (r && r->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->elements; i++) {
      const redisReply *e = r->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
          e->element[0]->type != REDIS_REPLY_STRING)
        continue;
      for (size_t j = 0; j < k->n; j++) {
        if (strcmp(k->e[j].id, e->element[0]->str) != 0)
          continue;
        if (k->e[j].other)
          atomic_fetch_add(&c->reclaimed, 1);
        accept_entry(c, e, k->e[j].deliveries + 1);
        break;
      }
    }
  } else if (r && r->type == REDIS_REPLY_ERROR) {
    tpool_manager_log(c->m, TPOOL_LOG_ERROR, "Redis XCLAIM %s: %s", c->o.stream,
                      r->str);
  }
  claim_done(k);
}

static void on_pending(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  claim_t *k = privdata;
  tpool_redis_consumer_t *c = k->c;
  redisReply *r = reply;
  if (c->closing) {
    free(k);
    return;
  }
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    if (r && r->type == REDIS_REPLY_ERROR) {
      tpool_manager_log(c->m, TPOOL_LOG_ERROR, "Redis XPENDING %s: %s",
                        c->o.stream, r->str);
      if (strncmp(r->str, "NOGROUP", 7) == 0) {
        c->group_ok = false;
        ensure_group(c);
      }
    }
    k->full_page = false;
    claim_done(k);
    return;
  }
  /* Rows: [id, consumer, idle ms, deliveries]. */
  claim_t *grown = realloc(k, sizeof(*k) + r->elements * sizeof(k->e[0]));
  if (!grown) {
    claim_done(k);
    return;
  }
  k = grown;
  k->full_page = r->elements == (size_t)PENDING_PAGE;
  size_t room =
      c->o.max_in_flight > c->nheld ? c->o.max_in_flight - c->nheld : 0;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *row = r->element[i];
    if (row->type != REDIS_REPLY_ARRAY || row->elements != 4 ||
        row->element[0]->type != REDIS_REPLY_STRING ||
        row->element[0]->len >= sizeof(k->e[0].id) ||
        row->element[1]->type != REDIS_REPLY_STRING ||
        row->element[3]->type != REDIS_REPLY_INTEGER)
      continue;
    const char *id = row->element[0]->str;
    snprintf(k->last, sizeof(k->last), "(%s", id);
    if (holds(c, id))
      continue; /* ours, running: never claimed from ourselves */
    unsigned deliveries = (unsigned)row->element[3]->integer;
    if (deliveries >= c->o.max_deliveries) {
      dead_letter(c, id, deliveries);
      continue;
    }
    if (k->n >= room)
      continue; /* no room: left for a later round */
    snprintf(k->e[k->n].id, sizeof(k->e[0].id), "%s", id);
    k->e[k->n].deliveries = deliveries;
    k->e[k->n].other = strcmp(row->element[1]->str, c->o.consumer) != 0;
    k->n++;
  }
  if (k->n == 0) {
    claim_done(k);
    return;
  }
  /* XCLAIM stream group me min-idle id... : min-idle is checked again by
     Redis, so two consumers never both claim an entry. */
  size_t argc = 5 + k->n;
  const char **argv = malloc(argc * sizeof(*argv));
  size_t *lens = malloc(argc * sizeof(*lens));
  char idle[24];
  snprintf(idle, sizeof(idle), "%.0f",
           k->recovery ? 0.0 : c->o.reclaim_after_s * 1000);
  if (!argv || !lens) {
    free(argv);
    free(lens);
    claim_done(k);
    return;
  }
  argv[0] = "XCLAIM";
  argv[1] = c->o.stream;
  argv[2] = c->o.group;
  argv[3] = c->o.consumer;
  argv[4] = idle;
  for (size_t i = 0; i < k->n; i++)
    argv[5 + i] = k->e[i].id;
  for (size_t i = 0; i < argc; i++)
    lens[i] = strlen(argv[i]);
  int rc = tpool__redis_conn_send(&c->wr, on_claim, k, (int)argc, argv, lens);
  free(argv);
  free(lens);
  if (rc != 0)
    claim_done(k);
}

/* Asks for pending entries from `from` on: this consumer's own (recovery)
   or anyone's idle for reclaim_after_s (the reaper). */
static void ask_pending(tpool_redis_consumer_t *c, bool recovery,
                        const char *from) {
  claim_t *k = calloc(1, sizeof(*k));
  if (!k)
    return;
  k->c = c;
  k->recovery = recovery;
  char idle[24], count[16];
  snprintf(idle, sizeof(idle), "%.0f",
           recovery ? 0.0 : c->o.reclaim_after_s * 1000);
  snprintf(count, sizeof(count), "%d", PENDING_PAGE);
  const char *argv[] = {"XPENDING", c->o.stream, c->o.group, "IDLE",       idle,
                        from,       "+",         count,      c->o.consumer};
  int argc = recovery ? 9 : 8;
  size_t lens[9];
  for (int i = 0; i < argc; i++)
    lens[i] = strlen(argv[i]);
  if (tpool__redis_conn_send(&c->wr, on_pending, k, argc, argv, lens) != 0) {
    free(k);
    return;
  }
  if (recovery)
    c->recovering = true;
  else
    c->reaping = true;
}

static void recover(tpool_redis_consumer_t *c, const char *from) {
  if (!c->recovering && c->group_ok && c->wr.ready)
    ask_pending(c, true, from);
}

/* Sends XCLAIM ... JUSTID for argv[5..argc): resets those entries' idle
   time without counting a delivery. */
static void send_touch(tpool_redis_consumer_t *c, const char **argv,
                       size_t *lens, int argc) {
  argv[argc++] = "JUSTID";
  for (int i = 0; i < argc; i++)
    lens[i] = strlen(argv[i]);
  tpool__redis_conn_send(&c->wr, NULL, NULL, argc, argv, lens);
}

/* Resets the idle time of this consumer's entries that have waited for
   a pool or run for a while, so that no reaper takes them from a live
   consumer. */
static void touch_held(tpool_redis_consumer_t *c, uint64_t now) {
  enum { PER_CALL = 64 };
  uint64_t age = (uint64_t)(c->o.reclaim_after_s / 3 * 1e9);
  const char *argv[5 + PER_CALL + 1] = {"XCLAIM", c->o.stream, c->o.group,
                                        c->o.consumer, "0"};
  size_t lens[5 + PER_CALL + 1];
  int argc = 5;
  struct held_list *lists[] = {&c->running, &c->waiting};
  held_t *h;
  for (size_t i = 0; i < 2; i++)
    TAILQ_FOREACH(h, lists[i], link) {
      if (now - h->touched_ns < age)
        continue;
      h->touched_ns = now;
      argv[argc++] = h->copy.entry.id;
      if (argc == 5 + PER_CALL) {
        send_touch(c, argv, lens, argc);
        argc = 5;
      }
    }
  if (argc > 5)
    send_touch(c, argv, lens, argc);
}

/* ---- result records and acks --------------------------------------------- */

/* Writes v in decimal into out (32 bytes), with a '.' before its last
   `decimals` digits: the script call's numbers, written for every entry,
   where snprintf() would cost more than the rest of the record. */
static void format_uint(char out[32], uint64_t v, unsigned decimals) {
  char d[32];
  size_t i = sizeof(d), k = 0;
  d[--i] = '\0';
  do {
    if (decimals && k++ == decimals)
      d[--i] = '.';
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0 || (decimals && k <= decimals));
  memcpy(out, d + i, sizeof(d) - i);
}

typedef struct ack_call {
  tpool_redis_consumer_t *c;
  size_t n;
  held_t *h[];
} ack_call_t;

static void on_acked(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  ack_call_t *a = privdata;
  tpool_redis_consumer_t *c = a->c;
  redisReply *r = reply;
  if (c->closing) {
    free(a);
    return;
  }
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != a->n) {
    /* Lost, or refused: written again once the connection is back (the
       script acknowledges only what is still pending, so a call that did
       land is not written twice). */
    if (r)
      tpool_manager_log(c->m, TPOOL_LOG_ERROR, "Redis result records: %s",
                        r->type == REDIS_REPLY_ERROR ? r->str
                                                     : "unexpected reply");
    for (size_t i = a->n; i-- > 0;) {
      a->h[i]->resent = true;
      TAILQ_REMOVE(&c->acking, a->h[i], link);
      a->h[i]->on = &c->done;
      TAILQ_INSERT_HEAD(&c->done, a->h[i], link);
    }
    free(a);
    return; /* the tick or the reconnect flushes them */
  }
  for (size_t i = 0; i < a->n; i++) {
    const redisReply *e = r->element[i];
    bool first = e->type == REDIS_REPLY_INTEGER && e->integer == 1;
    /* A resent ack that finds the entry acknowledged most likely found
       its own first send: not a duplicate run. */
    if (first || a->h[i]->resent)
      atomic_fetch_add(&c->acked, 1);
    else
      atomic_fetch_add(&c->duplicates, 1);
    release(c, a->h[i]);
  }
  free(a);
  maybe_read(c);
  maybe_stopped(c);
}

/* Writes up to ACKS_PER_CALL done entries' records and acks in one script
   call. Returns false when nothing more can be sent now. */
static bool flush_some(tpool_redis_consumer_t *c) {
  size_t n = 0;
  held_t *h;
  TAILQ_FOREACH(h, &c->done, link)
  if (++n == ACKS_PER_CALL)
    break;
  if (n == 0 || !c->wr.ready)
    return false;
  size_t argc = 7 + 5 * n;
  ack_call_t *a = malloc(sizeof(*a) + n * sizeof(a->h[0]));
  const char **argv = malloc(argc * sizeof(*argv));
  size_t *lens = malloc(argc * sizeof(*lens));
  char(*nums)[2][32] = malloc(n * sizeof(*nums));
  bool sent = false;
  if (a && argv && lens && nums) {
    a->c = c;
    a->n = n;
    argv[0] = "EVAL";
    argv[1] = ack_script;
    argv[2] = "1";
    argv[3] = c->o.stream;
    argv[4] = c->o.group;
    argv[5] = c->ttl;
    argv[6] = c->o.consumer;
    h = TAILQ_FIRST(&c->done);
    for (size_t i = 0; i < n; i++, h = TAILQ_NEXT(h, link)) {
      a->h[i] = h;
      format_uint(nums[i][0], h->attempts, 0);
      format_uint(nums[i][1], (uint64_t)(h->finished_at * 1000 + 0.5), 3);
      const char **p = &argv[7 + 5 * i];
      p[0] = h->copy.entry.id;
      p[1] = h->status;
      p[2] = h->result ? h->result : "null";
      p[3] = nums[i][0];
      p[4] = nums[i][1];
    }
    for (size_t i = 0; i < argc; i++)
      lens[i] = strlen(argv[i]);
    sent =
        tpool__redis_conn_send(&c->wr, on_acked, a, (int)argc, argv, lens) == 0;
  }
  free(argv);
  free(lens);
  free(nums);
  if (!sent) {
    free(a);
    return false;
  }
  for (size_t i = 0; i < n; i++)
    move(a->h[i], &c->acking);
  return true;
}

static void on_flush(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tpool_redis_consumer_t *c = arg;
  while (flush_some(c))
    ;
}

/* ---- the group's figures ------------------------------------------------- */

static int64_t field_int(const redisReply *kv, const char *name) {
  for (size_t i = 0; i + 1 < kv->elements; i += 2) {
    const redisReply *k = kv->element[i], *v = kv->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || strcmp(k->str, name) != 0)
      continue;
    return v->type == REDIS_REPLY_INTEGER ? (int64_t)v->integer : -1;
  }
  return -1;
}

static void on_info(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  tpool_redis_consumer_t *c = privdata;
  redisReply *r = reply;
  if (c->closing || !r || r->type != REDIS_REPLY_ARRAY)
    return;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *g = r->element[i];
    if (g->type != REDIS_REPLY_ARRAY)
      continue;
    for (size_t j = 0; j + 1 < g->elements; j += 2) {
      const redisReply *k = g->element[j], *v = g->element[j + 1];
      if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "name") == 0 &&
          v->type == REDIS_REPLY_STRING && strcmp(v->str, c->o.group) == 0) {
        atomic_store(&c->pending, field_int(g, "pending"));
        atomic_store(&c->lag, field_int(g, "lag"));
      }
    }
  }
}

/* ---- the tick ------------------------------------------------------------ */

static void on_tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tpool_redis_consumer_t *c = arg;
  if (!c->wr.ready)
    return;
  ensure_group(c);
  const char *argv[] = {"XINFO", "GROUPS", c->o.stream};
  size_t lens[] = {5, 6, strlen(c->o.stream)};
  tpool__redis_conn_send(&c->wr, on_info, c, 3, argv, lens);
  uint64_t now = tpool__redis_now_ns();
  if (now >= c->next_touch_ns) {
    touch_held(c, now);
    c->next_touch_ns = now + (uint64_t)(c->o.reclaim_after_s / 3 * 1e9);
  }
  if (c->need_recovery)
    recover(c, "-");
  else if (now >= c->next_reap_ns && !c->reaping && !c->stopping &&
           c->group_ok) {
    ask_pending(c, false, "-");
    c->next_reap_ns = now + (uint64_t)(c->o.reclaim_after_s / 2 * 1e9);
  }
  on_flush(-1, 0, c);
  maybe_read(c);
}

/* ---- connections --------------------------------------------------------- */

static void on_ready(void *arg) {
  tpool_redis_consumer_t *c = arg;
  update_connected(c);
  if (c->wr.ready) {
    ensure_group(c);
    if (c->need_recovery)
      recover(c, "-");
    on_flush(-1, 0, c);
    on_tick(-1, 0, c);
  }
  maybe_read(c);
}

static void on_down(void *arg) {
  tpool_redis_consumer_t *c = arg;
  update_connected(c);
  /* A read whose reply was lost left entries pending for us; a lost wr
     may have lost a claim's reply the same way. */
  c->need_recovery = true;
  if (!c->wr.ready)
    c->group_ok = false;
  /* The group's figures are Redis's: unknown until it answers again. */
  atomic_store(&c->lag, -1);
  atomic_store(&c->pending, -1);
}

/* ---- stop ---------------------------------------------------------------- */

static void on_stop(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  tpool_redis_consumer_t *c = arg;
  if (!c->stop_done)
    return;
  if (what & EV_TIMEOUT && c->nheld > 0)
    tpool_manager_log(c->m, TPOOL_LOG_WARN,
                      "Redis consumer stopped with %zu entries not "
                      "acknowledged: they stay pending for the next run",
                      c->nheld);
  void (*done)(void *) = c->stop_done;
  c->stop_done = NULL;
  event_del(c->stop_ev);
  done(c->stop_arg);
}

static void maybe_stopped(tpool_redis_consumer_t *c) {
  if (c->stopping && c->stop_done && c->nheld == 0 && !c->reading)
    event_active(c->stop_ev, EV_READ, 1); /* not from inside a callback */
}

int tpool_redis_consumer_stop(tpool_redis_consumer_t *c, double timeout_s,
                              void (*done)(void *arg), void *arg) {
  if (!c)
    return -EINVAL;
  c->stopping = true;
  c->stop_done = done;
  c->stop_arg = arg;
  struct timeval tv = tpool__redis_timeval(timeout_s > 0 ? timeout_s : 0);
  event_add(c->stop_ev, &tv);
  maybe_stopped(c);
  return 0;
}

/* ---- life ---------------------------------------------------------------- */

static void default_consumer(char *out, size_t size) {
  char host[128] = "localhost";
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  snprintf(out, size, "%s:%ld", host, (long)getpid());
}

int tpool_redis_consumer_new(tpool_manager_t *m, struct event_base *base,
                             const tpool_redis_options_t *o,
                             tpool_redis_consumer_t **out) {
  if (!m || !base || !o || !out || !o->url[0] || !o->to_task || !o->to_result ||
      tpool_redis_options_check(o, NULL, NULL) != 0)
    return -EINVAL;
  tpool_redis_consumer_t *c = calloc(1, sizeof(*c));
  if (!c)
    return -ENOMEM;
  c->m = m;
  c->base = base;
  c->o = *o;
  if (!c->o.consumer[0])
    default_consumer(c->o.consumer, sizeof(c->o.consumer));
  if (!c->o.max_in_flight)
    c->o.max_in_flight = 4 * c->o.batch;
  snprintf(c->ttl, sizeof(c->ttl), "%.0f", c->o.result_ttl_s);
  TAILQ_INIT(&c->waiting);
  TAILQ_INIT(&c->running);
  TAILQ_INIT(&c->done);
  TAILQ_INIT(&c->acking);
  c->need_recovery = true;
  atomic_init(&c->lag, -1);
  atomic_init(&c->pending, -1);
  double tick_s = c->o.reclaim_after_s / 3 < 1 ? c->o.reclaim_after_s / 3 : 1;
  struct timeval tick = tpool__redis_timeval(tick_s);
  int rc = -ENOMEM;
  c->flush_ev = event_new(base, -1, 0, on_flush, c);
  c->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, c);
  c->stop_ev = event_new(base, -1, 0, on_stop, c);
  c->resubmit_ev = evtimer_new(base, on_resubmit, c);
  if (c->flush_ev && c->tick_ev && c->stop_ev && c->resubmit_ev &&
      (rc = tpool__redis_conn_init(&c->rd, base, c->o.url, "reads", m, on_ready,
                                   on_down, c)) == 0 &&
      (rc = tpool__redis_conn_init(&c->wr, base, c->o.url, "writes", m,
                                   on_ready, on_down, c)) == 0) {
    event_add(c->tick_ev, &tick);
    tpool__redis_conn_start(&c->wr);
    tpool__redis_conn_start(&c->rd);
    update_connected(c);
    *out = c;
    return 0;
  }
  c->closing = true;
  tpool__redis_conn_close(&c->rd);
  tpool__redis_conn_close(&c->wr);
  if (c->flush_ev)
    event_free(c->flush_ev);
  if (c->tick_ev)
    event_free(c->tick_ev);
  if (c->stop_ev)
    event_free(c->stop_ev);
  if (c->resubmit_ev)
    event_free(c->resubmit_ev);
  free(c);
  return rc;
}

void tpool_redis_consumer_stats(const tpool_redis_consumer_t *c,
                                tpool_redis_stats_t *out) {
  tpool_redis_consumer_t *w = (tpool_redis_consumer_t *)c;
  memset(out, 0, sizeof(*out));
  out->connected = atomic_load(&w->connected);
  out->received = atomic_load(&w->received);
  out->acked = atomic_load(&w->acked);
  out->reclaimed = atomic_load(&w->reclaimed);
  out->dead_lettered = atomic_load(&w->dead_lettered);
  out->duplicates = atomic_load(&w->duplicates);
  out->failed_entries = atomic_load(&w->failed_entries);
  out->in_flight = (size_t)atomic_load(&w->in_flight);
  out->lag = atomic_load(&w->lag);
  out->pending = atomic_load(&w->pending);
  uint64_t since = atomic_load(&w->down_since_ns);
  uint64_t now = tpool__redis_now_ns();
  out->down_s = since && now > since ? (double)(now - since) / 1e9 : 0;
}

const tpool_redis_options_t *
tpool_redis_consumer_options(const tpool_redis_consumer_t *c) {
  return &c->o;
}

void tpool_redis_consumer_free(tpool_redis_consumer_t *c) {
  if (!c)
    return;
  c->closing = true;
  tpool__redis_conn_close(&c->rd);
  tpool__redis_conn_close(&c->wr);
  event_free(c->flush_ev);
  event_free(c->tick_ev);
  event_free(c->stop_ev);
  event_free(c->resubmit_ev);
  held_t *h;
  /* Running tasks keep their entry: their done frees it. */
  while ((h = TAILQ_FIRST(&c->running)) != NULL) {
    TAILQ_REMOVE(&c->running, h, link);
    h->on = NULL;
    h->c = NULL;
  }
  struct held_list *lists[] = {&c->waiting, &c->done, &c->acking};
  for (size_t i = 0; i < 3; i++)
    while ((h = TAILQ_FIRST(lists[i])) != NULL) {
      TAILQ_REMOVE(lists[i], h, link);
      held_free(h);
    }
  free(c);
}
