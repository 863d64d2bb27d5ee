/*
 * test_loop_bridge.c — the completion path back to a loop: a burst costs
 * one wakeup, order is kept, a flood is delivered in rounds that let other
 * events run, coalesced posts share a timer and are never left behind,
 * a polling loop needs no wakeup and sleeps again after it, and a base
 * that is not thread-aware is refused.
 */
#include "helpers.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
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
  uint64_t delay_ns; /* how long each may wait: 0 posts at once */
} poster_t;

static void *post_items(void *arg) {
  poster_t *p = arg;
  for (int i = 0; i < p->count; i++) {
    item_t *it = malloc(sizeof(*it));
    it->seq = p->first + i;
    tpool__bridge_post_within(p->b, &it->node, tpool__now_ns(), p->delay_ns);
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
  poster_t p = {b, 1, 1000, 0};
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

static void test_loop_bridge_coalesced_posts_share_a_timer(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  sink_t s = {0, 0, 0};
  tpool__bridge_t *b;
  assert_int_equal(tpool__bridge_new(base, 1 << 16, deliver, &s, &b), 0);
  /* 1000 completions that may each wait 1 ms: one timer, no eventfd. */
  poster_t p = {b, 1, 1000, 1000000};
  pthread_t th;
  pthread_create(&th, NULL, post_items, &p);
  pthread_join(th, NULL);
  assert_int_equal(tpool__bridge_wakeups(b), 1);
  int want = 1000;
  void *args[2] = {&s, &want};
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  assert_int_equal(s.out_of_order, 0);
  /* One that may not wait is posted at once, timer or not. */
  p.first = 1001;
  p.count = 1;
  post_items(&p);
  p.first = 1002;
  p.delay_ns = 0;
  post_items(&p);
  assert_int_equal(tpool__bridge_wakeups(b), 3);
  want = 1002;
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  assert_int_equal(s.out_of_order, 0);
  tpool__bridge_detach(b);
  tpool__bridge_free(b, NULL, NULL);
  event_base_free(base);
}

static void *spin_elsewhere(void *arg) {
  tpool__bridge_spin(arg, 1000000000); /* not its loop: does nothing */
  return NULL;
}

static void test_loop_bridge_polling_needs_no_wakeup(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  sink_t s = {0, 0, 0};
  tpool__bridge_t *b;
  assert_int_equal(tpool__bridge_new(base, 64, deliver, &s, &b), 0);
  pthread_t th;
  pthread_create(&th, NULL, spin_elsewhere, b);
  pthread_join(th, NULL);
  poster_t p = {b, 1, 1, 0};
  post_items(&p);
  assert_int_equal(tpool__bridge_wakeups(b), 1); /* no poll: woken */
  int want = 1;
  void *args[2] = {&s, &want};
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  /* The loop thread polls for 1 ms from here. Until the loop has run past
     that, posts rely on the poll and write nothing, however long the
     posting takes; the loop delivers them in rounds of 64. */
  tpool__bridge_spin(b, 1000000);
  p = (poster_t){b, 2, 1000, 0};
  pthread_create(&th, NULL, post_items, &p);
  pthread_join(th, NULL);
  assert_int_equal(tpool__bridge_wakeups(b), 1);
  want = 1001;
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  assert_int_equal(s.out_of_order, 0);
  /* 20 ms of loop later the poll is over and the loop sleeps: the next
     post must wake it. */
  th_run_until(base, NULL, NULL, 0.02);
  p = (poster_t){b, 1002, 1, 0};
  post_items(&p);
  assert_int_equal(tpool__bridge_wakeups(b), 2);
  want = 1002;
  assert_true(th_run_until(base, all_delivered, args, 5.0));
  tpool__bridge_detach(b);
  tpool__bridge_free(b, NULL, NULL);
  event_base_free(base);
}

/* Posts in bursts with pauses, so the loop keeps going idle while timers
   are armed, fire and are disarmed around it; delays are mixed. */
typedef struct {
  tpool__bridge_t *b;
  int count;
  unsigned seed;
  atomic_int *delivered;
} mixed_poster_t;

static void deliver_count(tpool__node_t *n, void *arg) {
  atomic_fetch_add((atomic_int *)arg, 1);
  free(n);
}

static void *post_mixed(void *arg) {
  mixed_poster_t *p = arg;
  static const uint64_t delays[] = {0, 20000, 60000, 200000, 1000000};
  for (int i = 0; i < p->count;) {
    int burst = 1 + (int)(rand_r(&p->seed) % 64);
    for (; burst > 0 && i < p->count; burst--, i++) {
      tpool__node_t *n = malloc(sizeof(*n));
      uint64_t d = delays[rand_r(&p->seed) % 5];
      /* Some start times in the past, as a worker's end time may be. */
      uint64_t now = tpool__now_ns() - (rand_r(&p->seed) % 2) * d;
      tpool__bridge_post_within(p->b, n, now, d);
    }
    if (rand_r(&p->seed) % 4 == 0) {
      struct timespec ts = {0, (long)(rand_r(&p->seed) % 300000)};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static bool count_reached(void *arg) {
  void **a = arg;
  return atomic_load((atomic_int *)a[0]) >= *(int *)a[1];
}

static void test_loop_bridge_coalescing_loses_nothing(void **state) {
  (void)state;
  enum { PRODUCERS = 4, EACH = 20000 };
  struct event_base *base = th_base_new();
  atomic_int delivered = 0;
  tpool__bridge_t *b;
  assert_int_equal(tpool__bridge_new(base, 256, deliver_count, &delivered, &b),
                   0);
  mixed_poster_t p[PRODUCERS];
  pthread_t th[PRODUCERS];
  for (unsigned i = 0; i < PRODUCERS; i++) {
    p[i] = (mixed_poster_t){b, EACH, 7 + i, &delivered};
    pthread_create(&th[i], NULL, post_mixed, &p[i]);
  }
  int want = PRODUCERS * EACH;
  void *args[2] = {&delivered, &want};
  /* A node left behind would leave the loop asleep: the bound is generous,
     for sanitizers on a busy machine, and never reached when all is well. */
  assert_true(th_run_until(base, count_reached, args, 60.0));
  for (unsigned i = 0; i < PRODUCERS; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&delivered), want);
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
  poster_t p = {b, 1, 1000, 0};
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
  poster_t p = {b, 1, 20, 0};
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
      cmocka_unit_test(test_loop_bridge_coalesced_posts_share_a_timer),
      cmocka_unit_test(test_loop_bridge_coalescing_loses_nothing),
      cmocka_unit_test(test_loop_bridge_polling_needs_no_wakeup),
      cmocka_unit_test(test_loop_bridge_free_discards_undelivered),
      cmocka_unit_test(test_loop_bridge_refuses_unaware_bases),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  event_base_free(unlocked_base);
  return rc;
}
