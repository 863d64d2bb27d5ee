/*
 * test_loop_bridge.c — the completion path back to a loop: a burst costs
 * one wakeup, order is kept, a flood is delivered in rounds that let other
 * events run, and a base that is not thread-aware is refused.
 */
#include "helpers.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/thread.h>

/* Made before evthread_use_pthreads(): libevent gave it no locks. */
static struct event_base *unlocked_base;

typedef struct {
  tpool__node_t node;
  int seq;
} item_t;

typedef struct {
  int delivered;
  int out_of_order;
  int last;
} sink_t;

static void deliver(tpool__node_t *n, void *arg) {
  sink_t *s = arg;
  item_t *it = (item_t *)n;
  if (it->seq != s->last + 1)
    s->out_of_order++;
  s->last = it->seq;
  s->delivered++;
  free(it);
}

typedef struct {
  tpool__bridge_t *b;
  int first, count;
} poster_t;

static void *post_items(void *arg) {
  poster_t *p = arg;
  for (int i = 0; i < p->count; i++) {
    item_t *it = malloc(sizeof(*it));
    it->seq = p->first + i;
    tpool__bridge_post(p->b, &it->node);
  }
  return NULL;
}

static bool all_delivered(void *arg) {
  void **a = arg;
  return ((sink_t *)a[0])->delivered >= *(int *)a[1];
}

static void test_loop_bridge_burst_costs_one_wakeup(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  sink_t s = {0, 0, 0};
  tpool__bridge_t *b;
  assert_int_equal(tpool__bridge_new(base, 1 << 16, deliver, &s, &b), 0);
  poster_t p = {b, 1, 1000};
  pthread_t th;
  pthread_create(&th, NULL, post_items, &p);
  pthread_join(th, NULL);
  assert_int_equal(tpool__bridge_wakeups(b), 1);
  int want = 1000;
  void *args[2] = {&s, &want};
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  assert_int_equal(s.out_of_order, 0); /* delivered in posting order */
  assert_int_equal(tpool__bridge_wakeups(b), 1);
  /* After the loop read it, the next post wakes the loop again. */
  p.first = 1001;
  p.count = 1;
  post_items(&p);
  assert_int_equal(tpool__bridge_wakeups(b), 2);
  want = 1001;
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  tpool__bridge_detach(b);
  tpool__bridge_free(b, NULL, NULL);
  event_base_free(base);
}

/* A pipe that always has data: its event runs on every loop iteration. */
typedef struct {
  sink_t *s;
  int calls_mid_flood; /* iterations seen while deliveries were under way */
} ticker_t;

static void on_tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ticker_t *t = arg;
  if (t->s->delivered > 0 && t->s->delivered < 1000)
    t->calls_mid_flood++;
}

static void test_loop_bridge_flood_yields_to_other_events(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  sink_t s = {0, 0, 0};
  tpool__bridge_t *b;
  assert_int_equal(tpool__bridge_new(base, 16, deliver, &s, &b), 0);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(write(fds[1], "x", 1), 1);
  ticker_t t = {&s, 0};
  struct event *tick =
      event_new(base, fds[0], EV_READ | EV_PERSIST, on_tick, &t);
  event_add(tick, NULL);
  poster_t p = {b, 1, 1000};
  post_items(&p);
  int want = 1000;
  void *args[2] = {&s, &want};
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  assert_int_equal(s.out_of_order, 0);
  /* 1000 completions at 16 per round: the other event ran between rounds. */
  assert_true(t.calls_mid_flood >= 1000 / 16 - 2);
  event_free(tick);
  close(fds[0]);
  close(fds[1]);
  tpool__bridge_detach(b);
  tpool__bridge_free(b, NULL, NULL);
  event_base_free(base);
}

static void discard(tpool__node_t *n, void *arg) {
  (*(int *)arg)++;
  free(n);
}

static void test_loop_bridge_free_discards_undelivered(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  sink_t s = {0, 0, 0};
  tpool__bridge_t *b;
  assert_int_equal(tpool__bridge_new(base, 8, deliver, &s, &b), 0);
  poster_t p = {b, 1, 20};
  post_items(&p);
  assert_int_equal(tpool__bridge_drain(b, 5), 5);
  tpool__bridge_detach(b);
  int discarded = 0;
  tpool__bridge_free(b, discard, &discarded);
  assert_int_equal(discarded, 15);
  event_base_free(base);
}

static void test_loop_bridge_refuses_unaware_bases(void **state) {
  (void)state;
  assert_int_equal(tpool__base_check(unlocked_base), -EINVAL);
  struct event_config *cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  struct event_base *nolock = event_base_new_with_config(cfg);
  event_config_free(cfg);
  assert_int_equal(tpool__base_check(nolock), -EINVAL);
  struct event_base *good = th_base_new();
  assert_int_equal(tpool__base_check(good), 0);
  tpool__bridge_t *b;
  sink_t s = {0, 0, 0};
  assert_int_equal(tpool__bridge_new(unlocked_base, 8, deliver, &s, &b),
                   -EINVAL);
  event_base_free(nolock);
  event_base_free(good);
}

int main(void) {
  /* Before anything makes libevent thread-aware. */
  unlocked_base = event_base_new();
  evthread_use_pthreads();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_bridge_burst_costs_one_wakeup),
      cmocka_unit_test(test_loop_bridge_flood_yields_to_other_events),
      cmocka_unit_test(test_loop_bridge_free_discards_undelivered),
      cmocka_unit_test(test_loop_bridge_refuses_unaware_bases),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  event_base_free(unlocked_base);
  return rc;
}
