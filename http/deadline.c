/*
 * deadline.c — cutting off slow clients. evhttp's own timeout is an idle
 * timer that every received byte resets, so a client sending one byte a
 * second holds a connection forever. Here every connection gets a
 * deadline instead: a request must arrive complete within the configured
 * timeout of the connection opening, or of the previous response.
 *
 * libevent 2.1 has no per-connection hook but evhttp_set_bevcb(), which
 * lets us make each connection's bufferevent. We keep a reference to it
 * and watch its output buffer: data added there is a response, which
 * re-arms the deadline. A sweep timer then looks at every connection:
 *  - evhttp has freed it (bufferevent_free() clears the callbacks): drop
 *    our reference, which frees the last of it: its events are deleted,
 *    then its socket is closed. The bufferevent is made with
 *    BEV_OPT_CLOSE_ON_FREE, so evhttp only shuts the socket down (the
 *    client sees the end at once) and leaves the close to that last
 *    reference: a descriptor is never closed while an event of ours still
 *    watches it, whose number another loop's accept() (or any socket of
 *    the process) could be given meanwhile. Freed ones are dropped at
 *    each sweep and whenever a connection is accepted, so a closed
 *    connection keeps its descriptor for a second at most;
 *  - reading is disabled: evhttp is handling a request (a slow task is
 *    not a slow client), so the deadline waits for the response;
 *  - the deadline has passed: shut the socket down; evhttp sees the end
 *    of the stream and frees the connection as for any closed client.
 * Everything here runs on the loop thread of the evhttp's base.
 */
#include "http_internal.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

typedef struct guard {
  LIST_ENTRY(guard) link;
  struct bufferevent *bev; /* our reference */
  struct evbuffer_cb_entry *watch;
  uint64_t deadline_ns; /* 0: a request is being answered */
} guard_t;

struct tpool__deadlines {
  struct evhttp *http;
  uint64_t timeout_ns;
  struct timeval period;
  struct event *sweep; /* made with the first connection: evhttp 2.1 does
                          not tell its base */
  LIST_HEAD(, guard) guards;
};

static void release(guard_t *g) {
  LIST_REMOVE(g, link);
  evbuffer_remove_cb_entry(bufferevent_get_output(g->bev), g->watch);
  bufferevent_decref(g->bev);
  free(g);
}

/* Data added to the output is a response: the next request's time starts
   when it has been written. */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                      void *arg) {
  guard_t *g = arg;
  if (info->n_added > 0)
    g->deadline_ns = 0; /* answering; re-armed once written out */
  else if (evbuffer_get_length(buf) == 0)
    g->deadline_ns = UINT64_MAX; /* written out: the sweep arms it */
}

/* True once evhttp has freed the connection: bufferevent_free() clears
   every callback, where evhttp itself only ever swaps the read or the
   write one. */
static bool freed_by_evhttp(struct bufferevent *bev) {
  bufferevent_data_cb readcb, writecb;
  bufferevent_event_cb eventcb;
  bufferevent_getcb(bev, &readcb, &writecb, &eventcb, NULL);
  return !readcb && !writecb && !eventcb;
}

/* Drops our reference to every connection evhttp has freed. Until then
   its bufferevent lives on with its read event still added (a socket
   bufferevent deletes its events only when the last reference goes) on
   its socket, shut down but still open: the descriptor's number cannot
   be handed out again before the events are gone. */
static void release_freed(tpool__deadlines_t *d) {
  guard_t *g, *next;
  for (g = LIST_FIRST(&d->guards); g; g = next) {
    next = LIST_NEXT(g, link);
    if (freed_by_evhttp(g->bev))
      release(g);
  }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  tpool__deadlines_t *d = arg;
  uint64_t now = tpool__http_now_ns();
  release_freed(d);
  guard_t *g, *next;
  for (g = LIST_FIRST(&d->guards); g; g = next) {
    next = LIST_NEXT(g, link);
    if (g->deadline_ns == UINT64_MAX)
      g->deadline_ns = now + d->timeout_ns;
    if (!(bufferevent_get_enabled(g->bev) & EV_READ) || g->deadline_ns == 0)
      continue; /* a request is being handled or answered */
    if (now >= g->deadline_ns) {
      evutil_socket_t s = bufferevent_getfd(g->bev);
      if (s >= 0)
        shutdown(s, SHUT_RDWR);
      g->deadline_ns = now + d->timeout_ns; /* evhttp frees it shortly */
    }
  }
}

static struct bufferevent *new_connection(struct event_base *base, void *arg) {
  tpool__deadlines_t *d = arg;
  /* Closes what evhttp has finished with, so descriptors do not pile up
     while connections come and go. */
  release_freed(d);
  if (!d->sweep) {
    d->sweep = event_new(base, -1, EV_PERSIST, on_sweep, d);
    if (d->sweep)
      event_add(d->sweep, &d->period);
  }
  guard_t *g = d->sweep ? calloc(1, sizeof(*g)) : NULL;
  /* BEV_OPT_CLOSE_ON_FREE: evhttp then shuts the socket down when it
     frees the connection and leaves the close to the last reference
     (ours), after the events are deleted. */
  struct bufferevent *bev =
      bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (!g || !bev) {
    free(g);
    return bev; /* evhttp copes with NULL; without g, no deadline */
  }
  g->watch = evbuffer_add_cb(bufferevent_get_output(bev), on_output, g);
  if (!g->watch) {
    free(g);
    return bev;
  }
  bufferevent_incref(bev);
  g->bev = bev;
  g->deadline_ns = tpool__http_now_ns() + d->timeout_ns;
  LIST_INSERT_HEAD(&d->guards, g, link);
  return bev;
}

int tpool__deadlines_new(struct evhttp *http, double timeout_s,
                         tpool__deadlines_t **out) {
  tpool__deadlines_t *d = calloc(1, sizeof(*d));
  if (!d)
    return -ENOMEM;
  d->http = http;
  LIST_INIT(&d->guards);
  tpool__deadlines_set(d, timeout_s);
  evhttp_set_bevcb(http, new_connection, d);
  *out = d;
  return 0;
}

void tpool__deadlines_set(tpool__deadlines_t *d, double timeout_s) {
  d->timeout_ns = (uint64_t)(timeout_s * 1e9);
  /* Sweep four times per timeout, at most once every 50 ms and at least
     once a second, so a cut-off comes at most a quarter late. */
  double period = timeout_s / 4;
  if (period < 0.05)
    period = 0.05;
  if (period > 1)
    period = 1;
  d->period.tv_sec = (time_t)period;
  d->period.tv_usec = (suseconds_t)((period - (double)d->period.tv_sec) * 1e6);
  if (d->sweep)
    event_add(d->sweep, &d->period);
}

void tpool__deadlines_free(tpool__deadlines_t *d) {
  if (!d)
    return;
  evhttp_set_bevcb(d->http, NULL, NULL);
  while (!LIST_EMPTY(&d->guards))
    release(LIST_FIRST(&d->guards));
  if (d->sweep)
    event_free(d->sweep);
  free(d);
}
