/*
 * conn.c — one hiredis connection on a libevent loop, kept up: it
 * connects, selects the database, and when the connection drops (or a
 * connect attempt fails or takes longer than CONNECT_TIMEOUT_S) tries
 * again after a backoff that doubles from BACKOFF_MIN_S to BACKOFF_MAX_S.
 *
 * hiredis calls every pending command's callback with a NULL reply when a
 * connection is lost, before its disconnect callback; the owners of the
 * connection (consumer.c, client.c) treat a NULL reply as "not done" and
 * send again once on_ready says the connection is back.
 */
#include "redis_internal.h"

#include <hiredis/adapters/libevent.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 5.0
#define CONNECT_TIMEOUT_S 3.0

uint64_t tpool__redis_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int tpool__redis_parse_url(const char *url, char *host, size_t host_size,
                           int *port, unsigned *db) {
  static const char scheme[] = "redis://";
  if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
    return -EINVAL;
  const char *h = url + sizeof(scheme) - 1;
  const char *end;
  size_t hlen;
  if (*h == '[') { /* [IPv6] */
    end = strchr(h, ']');
    if (!end || end[1] != ':')
      return -EINVAL;
    hlen = (size_t)(end - h - 1);
    h++;
    end++;
  } else {
    end = strchr(h, ':');
    if (!end)
      return -EINVAL;
    hlen = (size_t)(end - h);
  }
  if (hlen == 0 || hlen >= host_size || memchr(h, '/', hlen) ||
      memchr(h, '@', hlen))
    return -EINVAL;
  const char *p = end + 1;
  size_t plen = strspn(p, "0123456789");
  if (plen == 0 || plen > 5 || (p[plen] != '\0' && p[plen] != '/'))
    return -EINVAL;
  long pv = strtol(p, NULL, 10);
  if (pv < 1 || pv > 65535)
    return -EINVAL;
  unsigned dbv = 0;
  if (p[plen] == '/') {
    const char *d = p + plen + 1;
    size_t dlen = strspn(d, "0123456789");
    if (dlen == 0 || dlen > 2 || d[dlen] != '\0')
      return -EINVAL;
    dbv = (unsigned)strtoul(d, NULL, 10);
    if (dbv > 15)
      return -EINVAL;
  }
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  *port = (int)pv;
  *db = dbv;
  return 0;
}

struct timeval tpool__redis_timeval(double s) {
  struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
  return tv;
}

static void connect_now(tpool__redis_conn_t *c);

static void retry_later(tpool__redis_conn_t *c) {
  struct timeval tv = tpool__redis_timeval(c->backoff_s);
  c->backoff_s =
      c->backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : c->backoff_s * 2;
  evtimer_add(c->retry, &tv);
}

/* The connection is gone (or never came): note it, tell the owner once,
   try again later. */
static void lost(tpool__redis_conn_t *c, const char *why) {
  bool was_ready = c->ready;
  c->ac = NULL;
  c->ready = false;
  if (!c->down_since_ns)
    c->down_since_ns = tpool__redis_now_ns();
  if (c->log && !c->logged_down) {
    tpool_manager_log(c->log, TPOOL_LOG_WARN,
                      "Redis %s:%d (%s) unreachable: %s; reconnecting", c->host,
                      c->port, c->what, why);
    c->logged_down = true;
  }
  retry_later(c);
  if (was_ready && c->on_down)
    c->on_down(c->arg);
}

static void on_select(redisAsyncContext *ac, void *reply, void *privdata) {
  tpool__redis_conn_t *c = privdata;
  redisReply *r = reply;
  if (!r || c->ac != ac)
    return; /* lost meanwhile: the disconnect callback handles it */
  if (r->type == REDIS_REPLY_ERROR) {
    if (c->log)
      tpool_manager_log(c->log, TPOOL_LOG_ERROR, "Redis SELECT %u: %s", c->db,
                        r->str);
    redisAsyncDisconnect(ac);
    return;
  }
  c->ready = true;
  c->backoff_s = BACKOFF_MIN_S;
  c->down_since_ns = 0;
  if (c->log && c->logged_down)
    tpool_manager_log(c->log, TPOOL_LOG_INFO, "Redis %s:%d (%s) reconnected",
                      c->host, c->port, c->what);
  c->logged_down = false;
  if (c->on_ready)
    c->on_ready(c->arg);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  tpool__redis_conn_t *c = ac->data;
  if (!c || c->ac != ac)
    return;
  evtimer_del(c->retry); /* the connect timeout */
  if (status != REDIS_OK) {
    lost(c, ac->errstr); /* hiredis frees ac after this returns */
    return;
  }
  char db[16];
  snprintf(db, sizeof(db), "%u", c->db);
  const char *argv[] = {"SELECT", db};
  size_t lens[] = {6, strlen(db)};
  if (redisAsyncCommandArgv(c->ac, on_select, c, 2, argv, lens) != REDIS_OK)
    redisAsyncDisconnect(c->ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  tpool__redis_conn_t *c = ac->data;
  if (!c || c->ac != ac)
    return; /* closed on purpose */
  lost(c, status == REDIS_OK ? "closed" : ac->errstr);
}

static void connect_now(tpool__redis_conn_t *c) {
  redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
  if (!ac) {
    lost(c, "out of memory");
    return;
  }
  if (ac->err) {
    char why[128];
    snprintf(why, sizeof(why), "%s", ac->errstr);
    redisAsyncFree(ac);
    lost(c, why);
    return;
  }
  ac->data = c;
  c->ac = ac;
  redisLibeventAttach(ac, c->base);
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  struct timeval tv = tpool__redis_timeval(CONNECT_TIMEOUT_S);
  evtimer_add(c->retry, &tv); /* the connect timeout, until on_connect */
}

/* The retry timer: a reconnect is due, or a connect attempt timed out. */
static void on_retry(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tpool__redis_conn_t *c = arg;
  if (c->ac && !c->ready) { /* the attempt took too long */
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    redisAsyncFree(ac); /* not connected: no callbacks run */
    lost(c, "connect timed out");
    return;
  }
  if (!c->ac)
    connect_now(c);
}

int tpool__redis_conn_init(tpool__redis_conn_t *c, struct event_base *base,
                           const char *url, const char *what,
                           tpool_manager_t *log, tpool__redis_conn_fn on_ready,
                           tpool__redis_conn_fn on_down, void *arg) {
  memset(c, 0, sizeof(*c));
  if (tpool__redis_parse_url(url, c->host, sizeof(c->host), &c->port, &c->db))
    return -EINVAL;
  c->retry = evtimer_new(base, on_retry, c);
  if (!c->retry)
    return -ENOMEM;
  c->base = base;
  c->what = what;
  c->log = log;
  c->on_ready = on_ready;
  c->on_down = on_down;
  c->arg = arg;
  c->backoff_s = BACKOFF_MIN_S;
  c->down_since_ns = tpool__redis_now_ns();
  return 0;
}

void tpool__redis_conn_start(tpool__redis_conn_t *c) {
  connect_now(c);
}

int tpool__redis_conn_send(tpool__redis_conn_t *c, redisCallbackFn *cb,
                           void *privdata, int argc, const char **argv,
                           const size_t *lens) {
  if (!c->ready || !c->ac)
    return -ENOTCONN;
  if (redisAsyncCommandArgv(c->ac, cb, privdata, argc, argv, lens) != REDIS_OK)
    return -ENOTCONN; /* disconnecting */
  return 0;
}

void tpool__redis_conn_close(tpool__redis_conn_t *c) {
  if (c->retry) {
    event_free(c->retry);
    c->retry = NULL;
  }
  redisAsyncContext *ac = c->ac;
  c->ac = NULL; /* on_disconnect now ignores it */
  c->ready = false;
  c->on_ready = c->on_down = NULL;
  if (ac)
    redisAsyncFree(ac); /* pending callbacks get a NULL reply */
}
