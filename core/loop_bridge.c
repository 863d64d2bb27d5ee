/*
 * loop_bridge.c — carries completions from worker threads back to the loop
 * thread of one event_base.
 *
 * DESIGN
 * Who runs here: any number of producer threads (workers, the monitor, a
 * thread that cancels) call tpool__bridge_post(); one loop thread runs the
 * event callbacks and tpool__bridge_drain().
 * What they share: `head`, a lock-free LIFO stack of posted nodes, and
 * `armed`, which is true from the moment a producer writes the eventfd
 * until the loop has drained everything posted. A producer pushes its
 * node, then sets `armed`; only the producer that flips it from false to
 * true writes the eventfd. So a burst of completions costs one write(2)
 * and one wakeup, and a loop that is awake, or busy delivering, is never
 * woken again.
 * How work moves: the loop callback reads the eventfd, then takes the
 * whole stack with one exchange and reverses it into `local`, a FIFO only
 * the loop thread touches, so done callbacks run in completion order. It
 * delivers at most `batch` nodes per round; if any remain it arms a
 * zero-delay timer, which libevent runs on the next loop iteration, after
 * polling for I/O, so a flood of completions cannot starve other events.
 * Only when nothing is left does it clear `armed`, and then it looks at
 * the stack once more.
 *
 * Coalescing under load: a producer may say how long its node can wait
 * (tpool__bridge_post_within). A worker does so when its task sat in the
 * queue, so the pool is saturated and the completion's own latency is
 * dominated by that wait. Such a node is pushed like any other, but
 * instead of writing the eventfd the producer makes sure a timerfd will
 * fire by then; every other node due meanwhile rides on the same wakeup.
 * Under a flood the loop then wakes once per window instead of once per
 * few completions — on two cores each wakeup preempts a worker, and that
 * cost, not the work, is what bounded throughput. A lone completion
 * (empty queue, no wait) is never delayed. `timer_mu` serialises arming
 * and disarming with `due_ns`, the time the timer is set for (0 = off),
 * so `due_ns` and the kernel's timer never disagree; the loop clears it
 * before its last look at the stack, so a producer that relied on a timer
 * the loop has just disarmed pushed in time to be seen.
 *
 * Polling while a pool spins: a pool whose workers spin before sleeping
 * trades CPU for latency, and a spinning worker starts a task at once,
 * but its completion would still wait for the loop to wake from
 * epoll_wait — the larger half of a round trip here. So when the loop
 * thread hands a task to such a pool (tpool__bridge_spin), the loop polls
 * too: `poll`, a zero-delay timer, re-adds itself for that long, so libevent
 * polls for I/O without sleeping and the callback drains the stack each
 * iteration. Meanwhile `armed` stays set and producers write nothing. The
 * poll ends like any round, clearing `armed` and looking once more.
 * Only the loop thread starts it (`tl_loop` tells which bridge's loop the
 * calling thread runs); other threads' tasks are delivered as usual.
 *
 * Why no libevent call happens off the loop thread: event_active() from a
 * worker would take the base lock and write libevent's own notify fd for
 * every completion; an eventfd we own costs less and needs no base lock.
 * The clear-then-look order on the loop side against push-then-flip on
 * the producer side (all sequentially consistent) guarantees that no node
 * is left behind: a producer that found `armed` set pushed before the
 * clear, so the look after it sees the node; one that found it clear
 * writes the eventfd.
 */
#include "internal.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct tpool__bridge {
  struct event_base *base;
  struct event *wake; /* EV_READ | EV_PERSIST on efd */
  struct event *more; /* zero-delay timer: the next round */
  struct event *late; /* EV_READ | EV_PERSIST on tfd */
  struct event *poll; /* zero-delay timer: the loop polls while pools spin */
  int efd;
  int tfd; /* timerfd for coalesced nodes */
  unsigned batch;
  tpool__deliver_fn deliver;
  void *deliver_arg;
  _Atomic(tpool__node_t *) head; /* atomic: posted, newest first */
  atomic_bool armed;             /* atomic: eventfd written, not yet read */
  atomic_uint_fast64_t wakeups;  /* atomic: eventfd writes and timer arms */
  pthread_mutex_t timer_mu;
  atomic_uint_fast64_t due_ns; /* atomic, written under timer_mu: 0 = off */
  tpool__node_t *local;        /* loop thread only: oldest first */
  tpool__node_t *local_tail;   /* loop thread only */
  uint64_t poll_until;         /* loop thread only: end of the poll */
  bool polling;                /* loop thread only: `poll` is due */
  uint64_t id;                 /* unique for the process's life */
};

/* The id of the bridge whose loop the calling thread runs (set by every
   callback and by tpool__bridge_new), so a submit can tell it is on that
   loop. Ids, unlike addresses, are never reused. */
static _Thread_local uint64_t tl_loop;
static atomic_uint_fast64_t next_id = 1;

/* ---- thread-awareness check ------------------------------------------- */

struct probe {
  event_callback_fn notify_cb; /* the callback of libevent's notify event */
  bool found;
};

static int find_notify_cb(const struct event_base *base, const struct event *ev,
                          void *arg) {
  (void)base;
  struct probe *p = arg;
  p->notify_cb = event_get_callback(ev);
  return 1;
}

static int match_notify_cb(const struct event_base *base,
                           const struct event *ev, void *arg) {
  struct probe *p = arg;
  if (event_get_callback(ev) == p->notify_cb &&
      event_get_callback_arg(ev) == (const void *)base) {
    p->found = true;
    return 1;
  }
  return 0;
}

/*
 * libevent has no call that says whether a base has locks. But a base made
 * while threading is on gets an internal "notify" event at creation, whose
 * argument is the base itself. So: make a throwaway base now — if it has no
 * event at all, evthread_use_pthreads() was never called; otherwise learn
 * the notify callback from it and look for it among the user's base's
 * events, which is missing if that base predates threading or was made with
 * EVENT_BASE_FLAG_NOLOCK.
 */
int tpool__base_check(struct event_base *base) {
  struct event_base *probe_base = event_base_new();
  if (!probe_base)
    return -ENOMEM;
  struct probe p = {NULL, false};
  event_base_foreach_event(probe_base, find_notify_cb, &p);
  event_base_free(probe_base);
  if (p.notify_cb == NULL)
    return -EINVAL;
  event_base_foreach_event(base, match_notify_cb, &p);
  return p.found ? 0 : -EINVAL;
}

/* ---- delivery ---------------------------------------------------------- */

/* Moves every posted node, oldest first, to the end of `local`. */
static bool take_posted(tpool__bridge_t *b) {
  tpool__node_t *n = atomic_exchange(&b->head, NULL);
  if (!n)
    return false;
  tpool__node_t *first = NULL, *last = n;
  while (n) { /* reverse the LIFO */
    tpool__node_t *next = n->next;
    n->next = first;
    first = n;
    n = next;
  }
  if (b->local_tail)
    b->local_tail->next = first;
  else
    b->local = first;
  b->local_tail = last;
  return true;
}

size_t tpool__bridge_drain(tpool__bridge_t *b, size_t max) {
  size_t n = 0;
  while (n < max) {
    if (!b->local && !take_posted(b))
      break;
    tpool__node_t *node = b->local;
    b->local = node->next;
    if (!b->local)
      b->local_tail = NULL;
    node->next = NULL;
    b->deliver(node, b->deliver_arg);
    n++;
  }
  return n;
}

static bool has_pending(tpool__bridge_t *b) {
  return b->local != NULL || atomic_load(&b->head) != NULL;
}

/* Sets the coalescing timer to fire at `due_ns` (CLOCK_MONOTONIC), or
   disarms it when 0. Under timer_mu. `due_ns` is stored before the
   kernel's timer is set: the timer cannot fire, and its tick cannot be
   consumed, while `due_ns` still says 0 — the loop's lock-free look in
   timer_cancel() would then miss a timer that producers count on. */
static void timer_set(tpool__bridge_t *b, uint64_t due_ns) {
  struct itimerspec its = {{0, 0}, {0, 0}};
  if (due_ns)
    tpool__ns_to_timespec(due_ns, &its.it_value);
  atomic_store(&b->due_ns, due_ns);
  /* Cannot fail with a valid fd and time; a failure would leave the node
     for the next wakeup, which the caller cannot help either. */
  (void)timerfd_settime(b->tfd, due_ns ? TFD_TIMER_ABSTIME : 0, &its, NULL);
}

/* The loop is about to look at the stack for the last time in a round:
   a pending coalescing timer is no longer needed for what it will see. */
static void timer_cancel(tpool__bridge_t *b) {
  if (atomic_load(&b->due_ns) == 0)
    return;
  pthread_mutex_lock(&b->timer_mu);
  if (atomic_load(&b->due_ns) != 0)
    timer_set(b, 0);
  pthread_mutex_unlock(&b->timer_mu);
}

/* Nothing is left: producers must write (or arm the timer) again. */
static void round_end(tpool__bridge_t *b) {
  static const struct timeval now = {0, 0};
  timer_cancel(b);
  atomic_store(&b->armed, false);
  /* A node pushed before the stores above found `armed` (or the timer)
     set and wrote nothing: look once more. If one is there, re-arm,
     unless its producer already did and wrote the eventfd, which will
     wake us. */
  if (has_pending(b) && !atomic_exchange(&b->armed, true))
    evtimer_add(b->more, &now);
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
  tpool__bridge_t *b = arg;
  static const struct timeval now = {0, 0};
  if (what & EV_READ) {
    uint64_t count;
    /* Nonblocking; EAGAIN only means another round already read it. */
    if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
      return;
  }
  /* `armed` stays set through the round: nodes posted meanwhile are
     picked up by this round or the next without another eventfd write. */
  tl_loop = b->id;
  tpool__bridge_drain(b, b->batch);
  if (has_pending(b)) {
    evtimer_add(b->more, &now); /* still armed: producers stay quiet */
    return;
  }
  if (!b->polling) /* else the poll ends the round */
    round_end(b);
}

/* A polling round: deliver what is there, and poll again until the time
   is up and nothing is left. */
static void on_poll(evutil_socket_t fd, short what, void *arg) {
  tpool__bridge_t *b = arg;
  static const struct timeval now = {0, 0};
  (void)fd;
  (void)what;
  tl_loop = b->id;
  tpool__bridge_drain(b, b->batch);
  if (has_pending(b) || tpool__now_ns() < b->poll_until) {
    evtimer_add(b->poll, &now);
    return;
  }
  b->polling = false;
  round_end(b);
}

/* The coalescing timer fired. */
static void on_late(evutil_socket_t fd, short what, void *arg) {
  tpool__bridge_t *b = arg;
  uint64_t ticks;
  (void)what;
  if (read(fd, &ticks, sizeof(ticks)) < 0)
    return; /* EAGAIN: re-armed since it fired, or already handled */
  if (atomic_exchange(&b->armed, true))
    return; /* a round is already due: it will see every node */
  /* Producers now see `armed` and rely on this round. The timer is
     one-shot: if it is not set for later (re-armed since it fired), it is
     off, and says so without a system call. */
  pthread_mutex_lock(&b->timer_mu);
  if (atomic_load(&b->due_ns) <= tpool__now_ns())
    atomic_store(&b->due_ns, 0);
  pthread_mutex_unlock(&b->timer_mu);
  on_wake(-1, 0, b);
}

static void push(tpool__bridge_t *b, tpool__node_t *node) {
  tpool__node_t *old = atomic_load_explicit(&b->head, memory_order_relaxed);
  do {
    node->next = old;
  } while (!atomic_compare_exchange_weak(&b->head, &old, node));
}

void tpool__bridge_post(tpool__bridge_t *b, tpool__node_t *node) {
  push(b, node);
  if (!atomic_exchange(&b->armed, true)) {
    static const uint64_t one = 1;
    atomic_fetch_add_explicit(&b->wakeups, 1, memory_order_relaxed);
    /* Cannot fail short of a counter overflow (2^64 - 1 writes); EAGAIN
       would mean the loop is already due to wake, which is all we want. */
    ssize_t rc = write(b->efd, &one, sizeof(one));
    (void)rc;
  }
}

void tpool__bridge_post_within(tpool__bridge_t *b, tpool__node_t *node,
                               uint64_t now_ns, uint64_t delay_ns) {
  if (delay_ns < TPOOL__COALESCE_MIN_NS) {
    tpool__bridge_post(b, node);
    return;
  }
  push(b, node);
  if (atomic_load(&b->armed))
    return; /* the loop is awake or woken: it will see the node */
  uint64_t want = now_ns + delay_ns;
  uint64_t due = atomic_load(&b->due_ns);
  if (due != 0 && due <= want)
    return; /* a timer due soon enough is set and still counted on */
  pthread_mutex_lock(&b->timer_mu);
  due = atomic_load(&b->due_ns);
  if (due == 0 || due > want) {
    atomic_fetch_add_explicit(&b->wakeups, 1, memory_order_relaxed);
    timer_set(b, want);
  }
  pthread_mutex_unlock(&b->timer_mu);
}

void tpool__bridge_spin(tpool__bridge_t *b, uint64_t spin_ns) {
  static const struct timeval now = {0, 0};
  if (tl_loop != b->id || !b->poll)
    return; /* not this bridge's loop thread, or detached */
  b->poll_until = tpool__now_ns() + spin_ns;
  if (b->polling)
    return;
  b->polling = true;
  /* Producers stay quiet from now on: the poll sees what they push. */
  atomic_store(&b->armed, true);
  evtimer_add(b->poll, &now);
}

uint64_t tpool__bridge_wakeups(const tpool__bridge_t *b) {
  return atomic_load_explicit(&b->wakeups, memory_order_relaxed);
}

struct event_base *tpool__bridge_base(const tpool__bridge_t *b) {
  return b->base;
}

/* ---- life cycle -------------------------------------------------------- */

int tpool__bridge_new(struct event_base *base, unsigned batch,
                      tpool__deliver_fn deliver, void *arg,
                      tpool__bridge_t **out) {
  int rc = tpool__base_check(base);
  if (rc != 0)
    return rc;
  tpool__bridge_t *b = calloc(1, sizeof(*b));
  if (!b)
    return -ENOMEM;
  b->base = base;
  b->batch = batch ? batch : 1;
  b->deliver = deliver;
  b->deliver_arg = arg;
  b->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
  atomic_init(&b->head, NULL);
  atomic_init(&b->armed, false);
  atomic_init(&b->wakeups, 0);
  atomic_init(&b->due_ns, 0);
  b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (b->efd < 0 || b->tfd < 0) {
    rc = -EIO;
    goto fail_fds;
  }
  if (pthread_mutex_init(&b->timer_mu, NULL) != 0) {
    rc = -ENOMEM;
    goto fail_fds;
  }
  b->wake = event_new(base, b->efd, EV_READ | EV_PERSIST, on_wake, b);
  b->late = event_new(base, b->tfd, EV_READ | EV_PERSIST, on_late, b);
  b->more = evtimer_new(base, on_wake, b);
  b->poll = evtimer_new(base, on_poll, b);
  if (b->wake && b->late && b->more && b->poll &&
      event_add(b->wake, NULL) == 0 && event_add(b->late, NULL) == 0) {
    tl_loop = b->id;
    *out = b;
    return 0;
  }
  tpool__bridge_detach(b);
  pthread_mutex_destroy(&b->timer_mu);
  rc = -ENOMEM;
fail_fds:
  if (b->efd >= 0)
    close(b->efd);
  if (b->tfd >= 0)
    close(b->tfd);
  free(b);
  return rc;
}

void tpool__bridge_detach(tpool__bridge_t *b) {
  if (b->wake) {
    event_free(b->wake);
    b->wake = NULL;
  }
  if (b->more) {
    event_free(b->more);
    b->more = NULL;
  }
  if (b->late) {
    event_free(b->late);
    b->late = NULL;
  }
  if (b->poll) {
    event_free(b->poll);
    b->poll = NULL;
  }
  b->polling = false;
  if (tl_loop == b->id)
    tl_loop = 0;
}

void tpool__bridge_free(tpool__bridge_t *b, tpool__deliver_fn discard,
                        void *arg) {
  if (!b)
    return;
  take_posted(b);
  while (b->local) {
    tpool__node_t *node = b->local;
    b->local = node->next;
    if (discard)
      discard(node, arg);
  }
  close(b->efd);
  close(b->tfd);
  pthread_mutex_destroy(&b->timer_mu);
  free(b);
}
