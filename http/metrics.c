/*
 * metrics.c — the Prometheus text exposition (format 0.0.4) of a stats
 * snapshot, the body of GET /metrics. Every per-pool family carries a
 * `pool` label and nothing finer: a task id label would create a new
 * series per task and swamp the scraper. Values are in base units
 * (seconds, ratios), counters end in `_total`, and the two latency
 * distributions are Prometheus histograms built from the cumulative
 * le_count[] of the snapshot. The schedules' families carry `schedule`
 * and `pool` labels (a schedule is configured, not per task), and their
 * lateness is a histogram with the same buckets. The writer is a pure
 * function of the snapshots, so tests and fuzzers call it without a
 * server.
 */
#include "http_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How a per-pool sample gets its value from a pool's snapshot. */
typedef enum value_kind {
  VAL_UNSIGNED,    /* an unsigned field at `offset` */
  VAL_SIZE,        /* a size_t field at `offset` */
  VAL_U64,         /* a uint64_t field at `offset` */
  VAL_UTILIZATION, /* busy / current workers; 0 with no worker */
} value_kind_t;

typedef struct pool_metric {
  const char *name;
  const char *type;
  const char *help;
  value_kind_t kind;
  size_t offset; /* of the field read; the computed kinds ignore it */
} pool_metric_t;

#define GAUGE(name, kind, field, help)                                         \
  { name, "gauge", help, kind, offsetof(tpool_pool_stats_t, field) }
#define COUNTER(name, field, help)                                             \
  { name, "counter", help, VAL_U64, offsetof(tpool_pool_stats_t, field) }

/* The per-pool gauges and counters, in the order they are written. */
static const pool_metric_t pool_metrics[] = {
    GAUGE("tpool_pool_workers", VAL_UNSIGNED, current_workers,
          "Worker threads alive, starting ones included."),
    GAUGE("tpool_pool_workers_busy", VAL_UNSIGNED, busy_workers,
          "Worker threads running a task."),
    GAUGE("tpool_pool_workers_idle", VAL_UNSIGNED, idle_workers,
          "Worker threads waiting for a task."),
    GAUGE("tpool_pool_workers_max", VAL_UNSIGNED, max_workers,
          "Most worker threads the pool may run."),
    GAUGE("tpool_pool_workers_min", VAL_UNSIGNED, min_workers,
          "Worker threads the pool keeps even when idle."),
    GAUGE("tpool_pool_queued_tasks", VAL_SIZE, queued,
          "Tasks waiting in the queue for a worker."),
    GAUGE("tpool_pool_queue_limit", VAL_SIZE, queue_limit,
          "Most tasks the queue holds before submits fail."),
    GAUGE("tpool_pool_utilization_ratio", VAL_UTILIZATION, busy_workers,
          "Busy workers divided by live workers (0 to 1)."),
    GAUGE("tpool_pool_stuck_tasks", VAL_SIZE, stuck_now,
          "Running tasks that have passed the soft timeout."),
    COUNTER("tpool_tasks_submitted_total", submitted,
            "Tasks submitted, refused ones included."),
    COUNTER("tpool_tasks_rejected_total", rejected,
            "Submits refused (queue full or shutting down)."),
    COUNTER("tpool_tasks_completed_total", completed,
            "Tasks whose work function returned 0."),
    COUNTER("tpool_tasks_failed_total", failed,
            "Tasks whose work function returned an error."),
    COUNTER("tpool_tasks_cancelled_total", cancelled,
            "Tasks cancelled before they started."),
    COUNTER("tpool_tasks_expired_total", expired,
            "Tasks whose start deadline passed while queued."),
    COUNTER("tpool_tasks_stuck_total", stuck_total,
            "Tasks that ran past the soft timeout."),
    COUNTER("tpool_threads_started_total", threads_started,
            "Worker threads started."),
    COUNTER("tpool_threads_retired_total", threads_retired,
            "Worker threads that exited."),
    COUNTER("tpool_thread_failures_total", thread_failures,
            "Worker threads that could not be created."),
    GAUGE("tpool_pool_retrying_tasks", VAL_SIZE, retrying,
          "Tasks waiting out a retry backoff before they are queued again."),
    GAUGE("tpool_pool_scheduled_tasks", VAL_SIZE, scheduled,
          "Delayed tasks waiting out their delay before they are queued."),
    COUNTER("tpool_tasks_retried_total", retries,
            "Attempts queued again after the work asked for a retry."),
};

/* The two latency distributions, written as histograms. */
static const struct {
  const char *name;
  const char *help;
  size_t offset;
} histograms[] = {
    {"tpool_task_run_seconds", "Time tasks spent in their work function.",
     offsetof(tpool_pool_stats_t, run)},
    {"tpool_task_queue_wait_seconds",
     "Time tasks waited in the queue before a worker took them.",
     offsetof(tpool_pool_stats_t, wait)},
};

/* Enough for any double, "%g" bound or 64-bit integer. */
#define NUM_MAX 40

static int put(struct evbuffer *out, const char *fmt, ...) TPOOL_PRINTF(2, 3);

static int put(struct evbuffer *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = evbuffer_add_vprintf(out, fmt, ap);
  va_end(ap);
  return n < 0 ? -ENOMEM : 0;
}

static int family(struct evbuffer *out, const char *name, const char *type,
                  const char *help) {
  return put(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Prometheus reads numbers with Go's ParseFloat, which wants "+Inf", "-Inf"
   and "NaN" where C prints "inf" and "nan". The shortest of %.15g..%.17g
   that reads back as the same double keeps 0.1 readable and stays exact. */
static void format_double(char *buf, size_t cap, double v) {
  if (isnan(v)) {
    snprintf(buf, cap, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(buf, cap, "%s", v > 0 ? "+Inf" : "-Inf");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      return;
  }
}

/* Label values escape backslash, double quote and newline, as the format
   requires. Pool names are [a-z0-9_-] today, but the exposition must stay
   parseable whatever a future name allows; a value too long for `cap` is
   cut rather than overrun. */
static void escape_label(char *dst, size_t cap, const char *src) {
  size_t n = 0;
  for (; *src && n + 3 <= cap; src++) {
    char c = *src;
    if (c == '\\' || c == '"' || c == '\n')
      dst[n++] = '\\';
    dst[n++] = c == '\n' ? 'n' : c;
  }
  dst[n] = '\0';
}

static void pool_value(const pool_metric_t *pm, const tpool_pool_stats_t *ps,
                       char *buf, size_t cap) {
  const char *field = (const char *)ps + pm->offset;
  uint64_t v = 0;
  unsigned u;
  size_t z;
  switch (pm->kind) {
  case VAL_UNSIGNED:
    memcpy(&u, field, sizeof(u));
    v = u;
    break;
  case VAL_SIZE:
    memcpy(&z, field, sizeof(z));
    v = z;
    break;
  case VAL_U64:
    memcpy(&v, field, sizeof(v));
    break;
  case VAL_UTILIZATION:
    format_double(buf, cap,
                  ps->current_workers
                      ? (double)ps->busy_workers / (double)ps->current_workers
                      : 0.0);
    return;
  }
  snprintf(buf, cap, "%" PRIu64, v);
}

/* `labels`: the series' labels without braces (pool="cpu"). */
static int write_histogram(struct evbuffer *out, const char *name,
                           const char *labels, const tpool_latency_t *l) {
  char le[NUM_MAX], sum[NUM_MAX];
  for (unsigned i = 0; i < TPOOL_LATENCY_BUCKETS; i++) {
    /* "%g" gives the bounds' short forms (1e-06, 0.25, 60), which stay
       the same from one scrape to the next as Prometheus requires. */
    snprintf(le, sizeof(le), "%g", tpool_latency_bound(i));
    if (put(out, "%s_bucket{%s,le=\"%s\"} %" PRIu64 "\n", name, labels, le,
            l->le_count[i]) < 0)
      return -ENOMEM;
  }
  format_double(sum, sizeof(sum), l->sum_s);
  return put(out,
             "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n"
             "%s_sum{%s} %s\n%s_count{%s} %" PRIu64 "\n",
             name, labels, l->count, name, labels, sum, name, labels, l->count);
}

static int write_gauge(struct evbuffer *out, const char *name, const char *help,
                       const char *labels, const char *value) {
  int rc = family(out, name, "gauge", help);
  return rc ? rc : put(out, "%s%s %s\n", name, labels, value);
}

/* The circuit breakers of the pools that have one: the state as a state
   set (one sample per state, 1 for the current one), the moves into each
   state and the submits refused while open. */
static int write_breakers(struct evbuffer *out, const tpool_stats_t *s) {
  static const tpool_breaker_state_t states[] = {
      TPOOL_BREAKER_CLOSED, TPOOL_BREAKER_OPEN, TPOOL_BREAKER_HALF_OPEN};
  char esc[2 * TPOOL_NAME_MAX];
  if (family(out, "tpool_circuit_breaker_state", "gauge",
             "1 for the state the pool's circuit breaker is in, else 0.") < 0)
    return -ENOMEM;
  for (size_t p = 0; p < s->npools; p++) {
    const tpool_breaker_stats_t *b = &s->pools[p].breaker;
    escape_label(esc, sizeof(esc), s->pools[p].name);
    for (size_t i = 0; b->enabled && i < 3; i++)
      if (put(out, "tpool_circuit_breaker_state{pool=\"%s\",state=\"%s\"} %d\n",
              esc, tpool_breaker_state_name(states[i]),
              b->state == states[i]) < 0)
        return -ENOMEM;
  }
  if (family(out, "tpool_circuit_breaker_transitions_total", "counter",
             "Moves of the pool's circuit breaker into each state.") < 0)
    return -ENOMEM;
  for (size_t p = 0; p < s->npools; p++) {
    const tpool_breaker_stats_t *b = &s->pools[p].breaker;
    const uint64_t into[] = {b->closed, b->opened, b->half_opened};
    escape_label(esc, sizeof(esc), s->pools[p].name);
    for (size_t i = 0; b->enabled && i < 3; i++)
      if (put(out,
              "tpool_circuit_breaker_transitions_total{pool=\"%s\",to=\"%s\"} "
              "%" PRIu64 "\n",
              esc, tpool_breaker_state_name(states[i]), into[i]) < 0)
        return -ENOMEM;
  }
  if (family(out, "tpool_circuit_breaker_refused_total", "counter",
             "Submits refused because the circuit breaker was open.") < 0)
    return -ENOMEM;
  for (size_t p = 0; p < s->npools; p++) {
    const tpool_breaker_stats_t *b = &s->pools[p].breaker;
    escape_label(esc, sizeof(esc), s->pools[p].name);
    if (b->enabled && put(out,
                          "tpool_circuit_breaker_refused_total{pool=\"%s\"} "
                          "%" PRIu64 "\n",
                          esc, b->refused) < 0)
      return -ENOMEM;
  }
  return 0;
}

static int write_all(struct evbuffer *out, const tpool_stats_t *s) {
  char num[NUM_MAX], esc[2 * TPOOL_NAME_MAX], labels[sizeof(esc) + 16];
  escape_label(esc, sizeof(esc), TPOOL_VERSION);
  snprintf(labels, sizeof(labels), "{version=\"%s\"}", esc);
  format_double(num, sizeof(num), s->uptime_s);
  if (write_gauge(out, "tpool_info", "Version of tpool; the value is 1.",
                  labels, "1") < 0 ||
      write_gauge(out, "tpool_uptime_seconds",
                  "Seconds since the manager was created.", "", num) < 0 ||
      write_gauge(out, "tpool_shutting_down",
                  "1 once the manager has begun shutting down, else 0.", "",
                  s->shutting_down ? "1" : "0") < 0)
    return -ENOMEM;

  for (size_t m = 0; m < sizeof(pool_metrics) / sizeof(pool_metrics[0]); m++) {
    const pool_metric_t *pm = &pool_metrics[m];
    if (family(out, pm->name, pm->type, pm->help) < 0)
      return -ENOMEM;
    for (size_t p = 0; p < s->npools; p++) {
      escape_label(esc, sizeof(esc), s->pools[p].name);
      pool_value(pm, &s->pools[p], num, sizeof(num));
      if (put(out, "%s{pool=\"%s\"} %s\n", pm->name, esc, num) < 0)
        return -ENOMEM;
    }
  }

  for (size_t h = 0; h < sizeof(histograms) / sizeof(histograms[0]); h++) {
    if (family(out, histograms[h].name, "histogram", histograms[h].help) < 0)
      return -ENOMEM;
    for (size_t p = 0; p < s->npools; p++) {
      const char *base = (const char *)&s->pools[p];
      const tpool_latency_t *l =
          (const tpool_latency_t *)(const void *)(base + histograms[h].offset);
      escape_label(esc, sizeof(esc), s->pools[p].name);
      snprintf(labels, sizeof(labels), "pool=\"%s\"", esc);
      if (write_histogram(out, histograms[h].name, labels, l) < 0)
        return -ENOMEM;
    }
  }
  return write_breakers(out, s);
}

/* The schedules' families: a series per schedule, labelled with its name
   and its pool. */
static const struct {
  const char *name;
  const char *type;
  const char *help;
  size_t offset; /* of a uint64_t counter; SIZE_MAX: the last success */
} schedule_metrics[] = {
    {"tpool_schedule_runs_total", "counter",
     "Runs the schedule submitted to its pool.",
     offsetof(tpool_schedule_stats_t, runs)},
    {"tpool_schedule_skipped_total", "counter",
     "Planned runs not made: a run still in flight, missed while the loop "
     "stalled, or refused by the pool.",
     offsetof(tpool_schedule_stats_t, skipped)},
    {"tpool_schedule_failures_total", "counter", "Runs that ended in error.",
     offsetof(tpool_schedule_stats_t, failed)},
    {"tpool_schedule_last_success_timestamp_seconds", "gauge",
     "Unix time of the schedule's last successful run; 0 before any.",
     SIZE_MAX},
};

static int write_schedules(struct evbuffer *out,
                           const tpool_schedule_stats_t *sch, size_t n) {
  /* schedule="...",pool="...", both escaped */
  char esc[2 * TPOOL_NAME_MAX], escp[2 * TPOOL_NAME_MAX];
  char labels[sizeof(esc) + sizeof(escp) + 24], num[NUM_MAX];
  for (size_t m = 0; m < sizeof(schedule_metrics) / sizeof(*schedule_metrics);
       m++) {
    if (family(out, schedule_metrics[m].name, schedule_metrics[m].type,
               schedule_metrics[m].help) < 0)
      return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
      escape_label(esc, sizeof(esc), sch[i].name);
      escape_label(escp, sizeof(escp), sch[i].pool);
      if (schedule_metrics[m].offset == SIZE_MAX) {
        format_double(num, sizeof(num), sch[i].last_success_unix);
      } else {
        uint64_t v;
        memcpy(&v, (const char *)&sch[i] + schedule_metrics[m].offset,
               sizeof(v));
        snprintf(num, sizeof(num), "%" PRIu64, v);
      }
      if (put(out, "%s{schedule=\"%s\",pool=\"%s\"} %s\n",
              schedule_metrics[m].name, esc, escp, num) < 0)
        return -ENOMEM;
    }
  }
  if (family(out, "tpool_schedule_lateness_seconds", "histogram",
             "How late the schedule's runs started, from their planned "
             "time to the start of their work.") < 0)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    escape_label(esc, sizeof(esc), sch[i].name);
    escape_label(escp, sizeof(escp), sch[i].pool);
    snprintf(labels, sizeof(labels), "schedule=\"%s\",pool=\"%s\"", esc, escp);
    if (write_histogram(out, "tpool_schedule_lateness_seconds", labels,
                        &sch[i].lateness) < 0)
      return -ENOMEM;
  }
  return 0;
}

/* The sources' own families, after tpool's. */
static int write_sources(struct evbuffer *out, const tpool__sources_t *src) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && src && i < src->n; i++) {
    const tpool_http_source_t *so = &src->at[i];
    if (so->metrics)
      rc = so->metrics(so->arg, out);
  }
  return rc;
}

int tpool__metrics_write(struct evbuffer *out, const tpool_stats_t *s) {
  return tpool__metrics_write_sources(out, s, NULL, 0, NULL);
}

int tpool__metrics_write_sources(struct evbuffer *out, const tpool_stats_t *s,
                                 const tpool_schedule_stats_t *sch, size_t nsch,
                                 const tpool__sources_t *src) {
  /* printf and strtod follow LC_NUMERIC, and a process that called
     setlocale() for a comma locale would otherwise write "0,25", which
     Prometheus rejects. uselocale() changes this thread alone, so other
     threads keep their locale. A fresh object per call costs one small
     allocation per scrape and leaves nothing to free at exit. */
  locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (c == (locale_t)0)
    return -ENOMEM;
  locale_t prev = uselocale(c);
  int rc = write_all(out, s);
  if (rc == 0)
    rc = write_schedules(out, sch, nsch);
  if (rc == 0)
    rc = write_sources(out, src);
  uselocale(prev);
  freelocale(c);
  return rc;
}
