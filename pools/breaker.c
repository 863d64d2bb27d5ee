/*
 * breaker.c — a pool's circuit breaker: the window of recent outcomes,
 * the three states and the moves between them.
 *
 * DESIGN
 * Closed: each task that ran adds its outcome (failed or not) to a ring
 * of the last `window` outcomes, one bit each, with a running count of
 * the failures in it. Once the ring is full and the failures reach
 * `threshold` of it, the breaker opens until now + cooldown: submits are
 * refused. The first submit (or snapshot) after the cooldown half-opens
 * it: up to `trials` submits are let through, each tagged with the
 * breaker's generation, and refused beyond that. A tagged trial that
 * succeeds counts towards closing; one that fails opens the breaker
 * again; one that never ran (cancelled, expired) gives its place back.
 * Outcomes of untagged tasks — admitted before the breaker opened, still
 * finishing — are ignored while it is not closed, and a trial from an
 * older generation (the breaker was reset or reopened since) is ignored
 * too, so stragglers can neither close nor reopen it by accident.
 * Everything here runs under the pool's mu and calls no one: a move is
 * reported in a tpool__breaker_news_t, which the caller logs after
 * unlocking (breaker_log), since no log sink runs under a pool lock.
 */
#include "pools_internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>

const char *tpool_breaker_state_name(tpool_breaker_state_t state) {
  switch (state) {
  case TPOOL_BREAKER_OPEN:
    return "open";
  case TPOOL_BREAKER_HALF_OPEN:
    return "half_open";
  case TPOOL_BREAKER_CLOSED:
    break;
  }
  return "closed";
}

/* Empties the window and moves to `to`, counting the move. */
static void move(tpool__breaker_t *b, tpool_breaker_state_t to, uint64_t now,
                 tpool__breaker_news_t *news, tpool__breaker_why_t why) {
  news->why = why;
  news->from = b->state;
  news->to = to;
  news->failures = b->failures;
  news->window = b->filled;
  news->cooldown_s = tpool__ns_to_s(b->cooldown_ns);
  news->trials = b->trials;
  b->state = to;
  b->gen++;
  if (b->gen == 0) /* 0 means "not a trial" */
    b->gen = 1;
  b->trials_running = b->trials_passed = 0;
  if (to == TPOOL_BREAKER_OPEN) {
    b->open_until_ns = now + b->cooldown_ns;
    b->opened++;
  } else if (to == TPOOL_BREAKER_HALF_OPEN) {
    b->half_opened++;
  } else {
    memset(b->outcomes, 0, sizeof(b->outcomes));
    b->pos = b->filled = b->failures = 0;
    b->closed++;
  }
}

/* Half-opens a breaker whose cooldown has passed. */
static void wake(tpool__breaker_t *b, uint64_t now,
                 tpool__breaker_news_t *news) {
  if (b->state == TPOOL_BREAKER_OPEN && now >= b->open_until_ns)
    move(b, TPOOL_BREAKER_HALF_OPEN, now, news, TPOOL__BREAKER_COOLED);
}

bool tpool__breaker_configure(tpool__breaker_t *b, unsigned window,
                              double threshold, uint64_t cooldown_ns,
                              unsigned trials) {
  if (b->window == window && b->threshold == threshold &&
      b->cooldown_ns == cooldown_ns && b->trials == trials)
    return false;
  b->window = window;
  b->threshold = threshold;
  /* The failures that open it, as a whole number: the product itself can
     land just above an integer (0.07 * 100 = 7.000000000000001). */
  b->need = (unsigned)ceil(threshold * window - 1e-9);
  if (b->need == 0)
    b->need = 1;
  b->cooldown_ns = cooldown_ns;
  b->trials = trials;
  /* A new window size or rule starts afresh, closed. */
  memset(b->outcomes, 0, sizeof(b->outcomes));
  b->pos = b->filled = b->failures = 0;
  b->state = TPOOL_BREAKER_CLOSED;
  b->gen++;
  b->trials_running = b->trials_passed = 0;
  return true;
}

int tpool__breaker_admit(tpool__breaker_t *b, uint64_t now, uint32_t *trial,
                         tpool__breaker_news_t *news) {
  *trial = 0;
  if (b->window == 0)
    return 0;
  wake(b, now, news);
  switch (b->state) {
  case TPOOL_BREAKER_CLOSED:
    return 0;
  case TPOOL_BREAKER_HALF_OPEN:
    if (b->trials_running + b->trials_passed < b->trials) {
      b->trials_running++;
      *trial = b->gen;
      return 0;
    }
    break;
  case TPOOL_BREAKER_OPEN:
    break;
  }
  b->refused++;
  return -TPOOL_ECIRCUIT;
}

void tpool__breaker_unadmit(tpool__breaker_t *b, uint32_t trial) {
  if (trial != 0 && trial == b->gen && b->trials_running > 0)
    b->trials_running--;
}

void tpool__breaker_record(tpool__breaker_t *b, bool failed, uint32_t trial,
                           uint64_t now, tpool__breaker_news_t *news) {
  if (b->window == 0)
    return;
  if (b->state == TPOOL_BREAKER_HALF_OPEN) {
    if (trial == 0 || trial != b->gen)
      return; /* a straggler from before */
    b->trials_running--;
    if (failed)
      move(b, TPOOL_BREAKER_OPEN, now, news, TPOOL__BREAKER_TRIAL_FAILED);
    else if (++b->trials_passed >= b->trials)
      move(b, TPOOL_BREAKER_CLOSED, now, news, TPOOL__BREAKER_TRIALS_PASSED);
    return;
  }
  if (b->state == TPOOL_BREAKER_OPEN)
    return;
  /* Closed: the outcome replaces the oldest in the ring. */
  uint64_t *word = &b->outcomes[b->pos / 64], bit = 1ull << (b->pos % 64);
  if (b->filled == b->window)
    b->failures -= (*word & bit) != 0;
  else
    b->filled++;
  if (failed) {
    *word |= bit;
    b->failures++;
  } else {
    *word &= ~bit;
  }
  b->pos = (b->pos + 1) % b->window;
  if (b->filled == b->window && b->failures >= b->need)
    move(b, TPOOL_BREAKER_OPEN, now, news, TPOOL__BREAKER_TRIPPED);
}

void tpool__breaker_reset(tpool__breaker_t *b, uint64_t now,
                          tpool__breaker_news_t *news) {
  move(b, TPOOL_BREAKER_CLOSED, now, news, TPOOL__BREAKER_BY_HAND);
}

void tpool__breaker_stats(tpool__breaker_t *b, uint64_t now,
                          tpool_breaker_stats_t *out,
                          tpool__breaker_news_t *news) {
  memset(out, 0, sizeof(*out));
  if (b->window == 0)
    return;
  wake(b, now, news);
  out->enabled = true;
  out->state = b->state;
  out->window = b->window;
  out->in_window = b->filled;
  out->failures_in_window = b->failures;
  out->threshold = b->threshold;
  if (b->state == TPOOL_BREAKER_OPEN)
    out->open_remaining_s = tpool__ns_to_s(b->open_until_ns - now);
  out->trials = b->trials;
  out->trials_running = b->trials_running;
  out->trials_passed = b->trials_passed;
  out->opened = b->opened;
  out->half_opened = b->half_opened;
  out->closed = b->closed;
  out->refused = b->refused;
}

void tpool__breaker_log_move(tpool_pool_t *p, const tpool__breaker_news_t *n) {
  tpool__log_t *log = &p->m->log;
  switch (n->why) {
  case TPOOL__BREAKER_QUIET:
    return;
  case TPOOL__BREAKER_TRIPPED:
    tpool__logf(log, TPOOL_LOG_WARN,
                "ThreadPool[%s] Circuit breaker open: %u of the last %u tasks "
                "failed; refusing work for %.3fs",
                p->name, n->failures, n->window, n->cooldown_s);
    return;
  case TPOOL__BREAKER_TRIAL_FAILED:
    tpool__logf(log, TPOOL_LOG_WARN,
                "ThreadPool[%s] Circuit breaker open again: a trial task "
                "failed; refusing work for %.3fs",
                p->name, n->cooldown_s);
    return;
  case TPOOL__BREAKER_COOLED:
    tpool__logf(log, TPOOL_LOG_INFO,
                "ThreadPool[%s] Circuit breaker half_open: letting %u trial "
                "task(s) through",
                p->name, n->trials);
    return;
  case TPOOL__BREAKER_TRIALS_PASSED:
    tpool__logf(log, TPOOL_LOG_INFO,
                "ThreadPool[%s] Circuit breaker closed: %u trial task(s) "
                "succeeded",
                p->name, n->trials);
    return;
  case TPOOL__BREAKER_BY_HAND:
    tpool__logf(log, TPOOL_LOG_INFO,
                "ThreadPool[%s] Circuit breaker closed by hand (was %s)",
                p->name, tpool_breaker_state_name(n->from));
    return;
  }
}
