/*
 * test_metrics.c — the Prometheus exposition of a snapshot: after a known
 * workload over two pools, every family is declared once, every counter
 * and histogram agrees with the snapshot it came from, promtool accepts
 * the text (an idle manager's too), numbers keep their decimal point in a
 * comma locale, label values are escaped, and a failed write says so. The
 * schedules' families carry a schedule and a pool label and agree with
 * the schedules' snapshot.
 */
#include "helpers.h"
#include "http_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- producing the text ------------------------------------------------ */

/* The exposition of *s with the schedules sch[0..n) (caller frees). */
static char *metrics_text_schedules(const tpool_stats_t *s,
                                    const tpool_schedule_stats_t *sch,
                                    size_t n) {
  struct evbuffer *buf = evbuffer_new();
  assert_non_null(buf);
  assert_int_equal(tpool__metrics_write_sources(buf, s, sch, n, NULL), 0);
  size_t len = evbuffer_get_length(buf);
  char *text = malloc(len + 1);
  assert_non_null(text);
  assert_int_equal(evbuffer_remove(buf, text, len), (int)len);
  text[len] = '\0';
  evbuffer_free(buf);
  return text;
}

/* The exposition of *s alone. */
static char *metrics_text(const tpool_stats_t *s) {
  return metrics_text_schedules(s, NULL, 0);
}

static bool gate_taken(void *arg) {
  return th_gate_waiting(&((th_tally_t *)arg)->gate) == 1;
}

/*
 * Runs a known workload and returns its final snapshot (caller frees with
 * tpool_stats_free()); the manager and base are gone by then, so no other
 * thread runs while a test changes the locale or forks promtool.
 * "alpha" (2 workers): 6 tasks succeed, 2 fail with -EIO.
 * "beta" (1 worker, queue of 1): one task held at a gate, one queued and
 * cancelled, one refused with -EAGAIN, then the gate opens.
 */
static tpool_stats_t *workload_snapshot(void) {
  struct event_base *base = th_base_new();
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "alpha", 2, 2, 64)->breaker_window = 100; /* stays closed */
  th_add_pool(&o, "beta", 1, 1, 1);
  tpool_manager_t *m = th_manager(&o, base);
  th_tally_t t;
  th_tally_init(&t);
  for (int i = 0; i < 8; i++)
    assert_true(tpool_manager_submit(m, "alpha", "job",
                                     i < 6 ? th_noop : th_fail_eio,
                                     th_tally_done, &t, NULL) > 0);

  assert_true(tpool_manager_submit(m, "beta", "held", th_tally_held,
                                   th_tally_done, &t, NULL) > 0);
  assert_true(th_run_until(base, gate_taken, &t, 10.0));
  int64_t queued = tpool_manager_submit(m, "beta", "queued", th_noop,
                                        th_tally_done, &t, NULL);
  assert_true(queued > 0);
  assert_int_equal(tpool_manager_submit(m, "beta", "refused", th_noop,
                                        th_tally_done, &t, NULL),
                   -EAGAIN);
  assert_int_equal(tpool_manager_cancel(m, queued), 0);
  th_gate_open(&t.gate);
  assert_true(th_run_until_int(base, &t.calls, 10, 10.0));
  assert_int_equal(t.ok, 7);
  assert_int_equal(t.failed, 2);
  assert_int_equal(t.cancelled, 1);
  th_assert_invariant(m);

  tpool_stats_t *s;
  assert_int_equal(tpool_manager_stats(m, &s), 0);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);
  th_tally_destroy(&t);
  return s;
}

/* ---- reading the text back --------------------------------------------- */

typedef struct {
  char name[96];
  char family[96]; /* the family of the last # TYPE line before it */
  char pool[96], le[96], version[96], schedule[96];
  char other[32]; /* a label other than pool, le and version, if any */
  char value[64];
} sample_t;

typedef struct {
  char name[96], type[16];
  int helps, types;
} family_t;

typedef struct {
  sample_t *samples;
  size_t nsamples;
  family_t families[64];
  size_t nfamilies;
} parsed_t;

static family_t *family_get(parsed_t *p, const char *name) {
  for (size_t i = 0; i < p->nfamilies; i++)
    if (strcmp(p->families[i].name, name) == 0)
      return &p->families[i];
  assert_true(p->nfamilies < 64);
  family_t *f = &p->families[p->nfamilies++];
  memset(f, 0, sizeof(*f));
  snprintf(f->name, sizeof(f->name), "%s", name);
  return f;
}

/* Reads `key="value",...}` into *sm, undoing the format's escapes. */
static const char *parse_labels(const char *c, sample_t *sm) {
  while (*c != '}') {
    char key[32], val[96];
    size_t k = 0, v = 0;
    while (*c && *c != '=' && k + 1 < sizeof(key))
      key[k++] = *c++;
    key[k] = '\0';
    if (c[0] != '=' || c[1] != '"')
      fail_msg("malformed label near \"%s\"", c);
    for (c += 2; *c != '"'; c++) {
      if (!*c || v + 1 >= sizeof(val))
        fail_msg("unterminated label value");
      if (*c == '\\') {
        c++;
        val[v++] = *c == 'n' ? '\n' : *c;
      } else {
        val[v++] = *c;
      }
    }
    val[v] = '\0';
    c++;
    char *dst = strcmp(key, "pool") == 0       ? sm->pool
                : strcmp(key, "le") == 0       ? sm->le
                : strcmp(key, "version") == 0  ? sm->version
                : strcmp(key, "schedule") == 0 ? sm->schedule
                                               : NULL;
    if (dst)
      snprintf(dst, sizeof(sm->pool), "%s", val);
    else
      snprintf(sm->other, sizeof(sm->other), "%s", key);
    if (*c == ',')
      c++;
  }
  return c + 1;
}

static void parse(const char *text, parsed_t *p) {
  memset(p, 0, sizeof(*p));
  char current[96] = "";
  size_t cap = 0;
  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    assert_non_null(end); /* every line ends with a newline */
    char buf[512], a[96], b[16];
    assert_true((size_t)(end - line) < sizeof(buf));
    memcpy(buf, line, (size_t)(end - line));
    buf[end - line] = '\0';
    line = end + 1;
    if (sscanf(buf, "# HELP %95s", a) == 1) {
      family_get(p, a)->helps++;
    } else if (sscanf(buf, "# TYPE %95s %15s", a, b) == 2) {
      family_t *f = family_get(p, a);
      f->types++;
      snprintf(f->type, sizeof(f->type), "%s", b);
      snprintf(current, sizeof(current), "%s", a);
    } else {
      if (p->nsamples == cap) {
        cap = cap ? 2 * cap : 64;
        p->samples = realloc(p->samples, cap * sizeof(*p->samples));
        assert_non_null(p->samples);
      }
      sample_t *sm = &p->samples[p->nsamples++];
      memset(sm, 0, sizeof(*sm));
      size_t n = strcspn(buf, "{ ");
      assert_true(n > 0 && n < sizeof(sm->name));
      memcpy(sm->name, buf, n);
      const char *c = buf + n;
      if (*c == '{')
        c = parse_labels(c + 1, sm);
      if (*c != ' ')
        fail_msg("no value in \"%s\"", buf);
      snprintf(sm->value, sizeof(sm->value), "%s", c + 1);
      snprintf(sm->family, sizeof(sm->family), "%s", current);
    }
  }
}

/* The samples called `name` for `pool`, in text order; returns how many. */
static size_t find(const parsed_t *p, const char *name, const char *pool,
                   const sample_t **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < p->nsamples; i++)
    if (strcmp(p->samples[i].name, name) == 0 &&
        strcmp(p->samples[i].pool, pool) == 0) {
      if (n < max)
        out[n] = &p->samples[i];
      n++;
    }
  return n;
}

static uint64_t as_u64(const char *value) {
  if (!*value || strspn(value, "0123456789") != strlen(value))
    fail_msg("\"%s\" is not an integer", value);
  return strtoull(value, NULL, 10);
}

/* A sample that must occur once; returns its value text. */
static const char *one(const parsed_t *p, const char *name, const char *pool) {
  const sample_t *sm = NULL; /* set when n == 1; fail_msg() does not return */
  size_t n = find(p, name, pool, &sm, 1);
  if (n != 1)
    fail_msg("%s{pool=\"%s\"}: %zu samples, want 1", name, pool, n);
  return sm->value;
}

/* ---- checks ------------------------------------------------------------ */

static const struct {
  const char *name, *type;
} families[] = {
    {"tpool_info", "gauge"},
    {"tpool_uptime_seconds", "gauge"},
    {"tpool_shutting_down", "gauge"},
    {"tpool_pool_workers", "gauge"},
    {"tpool_pool_workers_busy", "gauge"},
    {"tpool_pool_workers_idle", "gauge"},
    {"tpool_pool_workers_max", "gauge"},
    {"tpool_pool_workers_min", "gauge"},
    {"tpool_pool_queued_tasks", "gauge"},
    {"tpool_pool_queue_limit", "gauge"},
    {"tpool_pool_utilization_ratio", "gauge"},
    {"tpool_pool_stuck_tasks", "gauge"},
    {"tpool_tasks_submitted_total", "counter"},
    {"tpool_tasks_rejected_total", "counter"},
    {"tpool_tasks_completed_total", "counter"},
    {"tpool_tasks_failed_total", "counter"},
    {"tpool_tasks_cancelled_total", "counter"},
    {"tpool_tasks_expired_total", "counter"},
    {"tpool_tasks_stuck_total", "counter"},
    {"tpool_threads_started_total", "counter"},
    {"tpool_threads_retired_total", "counter"},
    {"tpool_thread_failures_total", "counter"},
    {"tpool_pool_retrying_tasks", "gauge"},
    {"tpool_pool_scheduled_tasks", "gauge"},
    {"tpool_tasks_retried_total", "counter"},
    {"tpool_task_run_seconds", "histogram"},
    {"tpool_task_queue_wait_seconds", "histogram"},
    {"tpool_circuit_breaker_state", "gauge"},
    {"tpool_circuit_breaker_transitions_total", "counter"},
    {"tpool_circuit_breaker_refused_total", "counter"},
    {"tpool_schedule_runs_total", "counter"},
    {"tpool_schedule_skipped_total", "counter"},
    {"tpool_schedule_failures_total", "counter"},
    {"tpool_schedule_last_success_timestamp_seconds", "gauge"},
    {"tpool_schedule_lateness_seconds", "histogram"},
};
#define NFAMILIES (sizeof(families) / sizeof(families[0]))

/* Every family declared once with its type; every sample inside the
   family declared just before it, labelled only with pool, le or version. */
static void check_structure(parsed_t *p) {
  assert_int_equal(p->nfamilies, NFAMILIES);
  for (size_t i = 0; i < NFAMILIES; i++) {
    family_t *f = family_get(p, families[i].name);
    if (f->helps != 1 || f->types != 1 || strcmp(f->type, families[i].type))
      fail_msg("%s: %d HELP, %d TYPE lines, type \"%s\"", f->name, f->helps,
               f->types, f->type);
  }
  for (size_t i = 0; i < p->nsamples; i++) {
    const sample_t *sm = &p->samples[i];
    bool hist = strcmp(family_get(p, sm->family)->type, "histogram") == 0;
    size_t flen = strlen(sm->family);
    const char *suffix = sm->name + flen;
    if (strncmp(sm->name, sm->family, flen) != 0 ||
        (hist ? strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") &&
                    strcmp(suffix, "_count")
              : *suffix != '\0'))
      fail_msg("sample %s outside its family %s", sm->name, sm->family);
    /* The breaker's state set and transitions name a state too. */
    bool breaker = strncmp(sm->name, "tpool_circuit_breaker_", 22) == 0;
    if (sm->other[0] && !(breaker && (strcmp(sm->other, "state") == 0 ||
                                      strcmp(sm->other, "to") == 0)))
      fail_msg("%s has a label \"%s\"", sm->name, sm->other);
    bool schedule = strncmp(sm->name, "tpool_schedule_", 15) == 0;
    assert_true((sm->schedule[0] != '\0') == schedule);
    bool process = strncmp(sm->name, "tpool_pool_", 11) != 0 &&
                   strncmp(sm->name, "tpool_task", 10) != 0 &&
                   strncmp(sm->name, "tpool_thread", 12) != 0 && !breaker &&
                   !schedule;
    assert_true(process ? sm->pool[0] == '\0' : sm->pool[0] != '\0');
    assert_true((sm->le[0] != '\0') == (strcmp(suffix, "_bucket") == 0));
    assert_true((sm->version[0] != '\0') ==
                (strcmp(sm->name, "tpool_info") == 0));
  }
}

/* The histogram `name` of pool `pool` against its distribution *l. */
static void check_histogram(const parsed_t *p, const char *name,
                            const char *pool, const tpool_latency_t *l) {
  char full[128], want[32];
  const sample_t *b[TPOOL_LATENCY_BUCKETS + 2];
  snprintf(full, sizeof(full), "%s_bucket", name);
  assert_int_equal(find(p, full, pool, b, TPOOL_LATENCY_BUCKETS + 2),
                   TPOOL_LATENCY_BUCKETS + 1);
  uint64_t prev = 0;
  for (unsigned i = 0; i <= TPOOL_LATENCY_BUCKETS; i++) {
    uint64_t v = as_u64(b[i]->value);
    if (i < TPOOL_LATENCY_BUCKETS) {
      snprintf(want, sizeof(want), "%g", tpool_latency_bound(i));
      assert_int_equal(v, l->le_count[i]);
    } else {
      snprintf(want, sizeof(want), "+Inf");
    }
    assert_string_equal(b[i]->le, want);
    assert_true(v >= prev); /* cumulative buckets never decrease */
    prev = v;
  }
  snprintf(full, sizeof(full), "%s_count", name);
  assert_int_equal(prev, l->count);
  assert_int_equal(as_u64(one(p, full, pool)), l->count);
  snprintf(full, sizeof(full), "%s_sum", name);
  double sum = strtod(one(p, full, pool), NULL);
  assert_true(fabs(sum - l->sum_s) <= 1e-12 * (1 + l->sum_s));
}

/* Every integer sample of every pool, and the histograms, equal *s. */
static void check_values(const parsed_t *p, const tpool_stats_t *s) {
  for (size_t i = 0; i < s->npools; i++) {
    const tpool_pool_stats_t *ps = &s->pools[i];
    const struct {
      const char *name;
      uint64_t want;
    } ints[] = {
        {"tpool_pool_workers", ps->current_workers},
        {"tpool_pool_workers_busy", ps->busy_workers},
        {"tpool_pool_workers_idle", ps->idle_workers},
        {"tpool_pool_workers_max", ps->max_workers},
        {"tpool_pool_workers_min", ps->min_workers},
        {"tpool_pool_queued_tasks", ps->queued},
        {"tpool_pool_queue_limit", ps->queue_limit},
        {"tpool_pool_scheduled_tasks", ps->scheduled},
        {"tpool_tasks_submitted_total", ps->submitted},
        {"tpool_tasks_rejected_total", ps->rejected},
        {"tpool_tasks_completed_total", ps->completed},
        {"tpool_tasks_failed_total", ps->failed},
        {"tpool_tasks_cancelled_total", ps->cancelled},
        {"tpool_tasks_expired_total", ps->expired},
        {"tpool_tasks_stuck_total", ps->stuck_total},
        {"tpool_threads_started_total", ps->threads_started},
        {"tpool_threads_retired_total", ps->threads_retired},
        {"tpool_thread_failures_total", ps->thread_failures},
    };
    for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++)
      if (as_u64(one(p, ints[k].name, ps->name)) != ints[k].want)
        fail_msg("%s{pool=\"%s\"} is %s, want %" PRIu64, ints[k].name, ps->name,
                 one(p, ints[k].name, ps->name), ints[k].want);
    double util = ps->current_workers
                      ? (double)ps->busy_workers / (double)ps->current_workers
                      : 0.0;
    assert_true(
        strtod(one(p, "tpool_pool_utilization_ratio", ps->name), NULL) == util);
    check_histogram(p, "tpool_task_run_seconds", ps->name, &ps->run);
    check_histogram(p, "tpool_task_queue_wait_seconds", ps->name, &ps->wait);
  }
  assert_string_equal(one(p, "tpool_info", ""), "1");
  assert_string_equal(one(p, "tpool_shutting_down", ""),
                      s->shutting_down ? "1" : "0");
}

/* ---- cases ------------------------------------------------------------- */

static void test_metrics_text_matches_snapshot(void **state) {
  (void)state;
  tpool_stats_t *s = workload_snapshot();
  const tpool_pool_stats_t *a = tpool_stats_pool(s, "alpha");
  const tpool_pool_stats_t *b = tpool_stats_pool(s, "beta");
  assert_int_equal(a->submitted, 8);
  assert_int_equal(a->completed, 6);
  assert_int_equal(a->failed, 2);
  assert_int_equal(a->run.count, 8);
  assert_int_equal(b->submitted, 3);
  assert_int_equal(b->rejected, 1);
  assert_int_equal(b->cancelled, 1);
  assert_int_equal(b->run.count, 1);

  char *text = metrics_text(s);
  parsed_t p;
  parse(text, &p);
  check_structure(&p);
  check_values(&p, s);
  /* The bounds in their short, stable forms. */
  const char *les[] = {"1e-06", "2.5e-06", "0.001", "0.25", "1", "2.5", "60"};
  for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
    char needle[96];
    snprintf(needle, sizeof(needle),
             "tpool_task_run_seconds_bucket{pool=\"alpha\",le=\"%s\"} ",
             les[i]);
    assert_non_null(strstr(text, needle));
  }
  /* A breaker's lines for the pool that has one, none for the other. */
  assert_non_null(strstr(
      text,
      "tpool_circuit_breaker_state{pool=\"alpha\",state=\"closed\"} 1\n"));
  assert_non_null(strstr(
      text, "tpool_circuit_breaker_state{pool=\"alpha\",state=\"open\"} 0\n"));
  assert_non_null(
      strstr(text, "tpool_circuit_breaker_refused_total{pool=\"alpha\"} 0\n"));
  assert_null(strstr(text, "tpool_circuit_breaker_state{pool=\"beta\""));
  free(p.samples);
  free(text);
  tpool_stats_free(s);
}

static void test_metrics_workload_passes_promtool(void **state) {
  (void)state;
  tpool_stats_t *s = workload_snapshot();
  char *text = metrics_text(s);
  th_assert_promtool_accepts(text);
  free(text);
  tpool_stats_free(s);
}

static void test_metrics_empty_snapshot_passes_promtool(void **state) {
  (void)state;
  struct event_base *base = th_base_new();
  tpool_options_t o;
  th_options_empty(&o);
  th_add_pool(&o, "idle", 1, 1, 16);
  tpool_manager_t *m = th_manager(&o, base);
  tpool_stats_t *s;
  assert_int_equal(tpool_manager_stats(m, &s), 0);
  assert_int_equal(tpool_manager_shutdown(m, 10.0), 0);
  tpool_manager_free(m);
  event_base_free(base);

  char *text = metrics_text(s);
  parsed_t p;
  parse(text, &p);
  check_structure(&p);
  check_values(&p, s);
  assert_string_equal(one(&p, "tpool_task_run_seconds_sum", "idle"), "0");
  th_assert_promtool_accepts(text);
  free(p.samples);
  free(text);
  tpool_stats_free(s);
}

/* True if text holds a number written with a decimal comma ("0,25"). No
   other digit-comma-digit can occur: label pairs are separated by `",`. */
static bool has_decimal_comma(const char *text) {
  for (const char *c = strchr(text, ','); c; c = strchr(c + 1, ','))
    if (c > text && c[-1] >= '0' && c[-1] <= '9' && c[1] >= '0' && c[1] <= '9')
      return true;
  return false;
}

static void test_metrics_numbers_ignore_comma_locale(void **state) {
  (void)state;
  tpool_stats_t *s = workload_snapshot(); /* no other thread is left */
  static const char *const candidates[] = {
      "de_DE.UTF-8", "de_DE.utf8",  "fr_FR.UTF-8", "fr_FR.utf8",
      "nl_NL.UTF-8", "it_IT.UTF-8", "es_ES.UTF-8", "ru_RU.UTF-8",
      "pt_BR.UTF-8", "de_DE",       "fr_FR"};
  char *saved = strdup(setlocale(LC_NUMERIC, NULL));
  const char *comma = NULL;
  for (size_t i = 0; !comma && i < sizeof(candidates) / sizeof(*candidates);
       i++) {
    char probe[16];
    if (setlocale(LC_NUMERIC, candidates[i]) &&
        snprintf(probe, sizeof(probe), "%g", 0.5) > 0 &&
        strcmp(probe, "0,5") == 0)
      comma = candidates[i];
  }
  char *text;
  if (comma) {
    print_message("formatting under LC_NUMERIC=%s\n", comma);
    text = metrics_text(s);
    /* The writer must put the process's locale back as it found it. */
    char probe[16];
    snprintf(probe, sizeof(probe), "%g", 0.5);
    assert_string_equal(probe, "0,5");
  } else {
    /* No comma-decimal locale is installed, so independence from the
       process locale cannot be shown here; this only checks that the
       text is right with "C" selected through uselocale(), the way the
       writer itself selects it. */
    print_message("no comma-decimal locale installed: checked under the "
                  "\"C\" locale only\n");
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    assert_true(c != (locale_t)0);
    locale_t prev = uselocale(c);
    text = metrics_text(s);
    uselocale(prev);
    freelocale(c);
  }
  setlocale(LC_NUMERIC, saved);
  free(saved);
  assert_false(has_decimal_comma(text));
  assert_non_null(strstr(text, "le=\"0.001\""));
  assert_non_null(strstr(text, "le=\"2.5e-06\""));
  parsed_t p;
  parse(text, &p);
  check_values(&p, s);
  free(p.samples);
  free(text);
  tpool_stats_free(s);
}

static void test_metrics_label_values_are_escaped(void **state) {
  (void)state;
  /* Built by hand: no manager accepts such a name, but the writer must
     not rely on that. Two of the three active tasks are stuck. */
  tpool_active_task_t active[3] = {{.stuck = true}, {0}, {.stuck = true}};
  tpool_pool_stats_t ps = {.current_workers = 4,
                           .busy_workers = 3,
                           .nactive = 3,
                           .active = active,
                           .stuck_now = 2};
  snprintf(ps.name, sizeof(ps.name), "a\"b\\c\nd");
  tpool_stats_t s = {
      .uptime_s = 1.5, .shutting_down = true, .npools = 1, .pools = &ps};
  char *text = metrics_text(&s);
  assert_non_null(
      strstr(text, "tpool_pool_stuck_tasks{pool=\"a\\\"b\\\\c\\nd\"} 2\n"));
  assert_non_null(strstr(
      text, "tpool_pool_utilization_ratio{pool=\"a\\\"b\\\\c\\nd\"} 0.75\n"));
  assert_non_null(strstr(text, "tpool_uptime_seconds 1.5\n"));
  parsed_t p;
  parse(text, &p);
  check_structure(&p);
  check_values(&p, &s);
  th_assert_promtool_accepts(text);
  free(p.samples);
  free(text);
}

static void test_metrics_schedules(void **state) {
  (void)state;
  /* Built by hand, as a snapshot of tpool_manager_schedules() would be:
     one that ran, on "alpha"; one that never succeeded, on "beta", whose
     name no manager accepts (the labels are escaped all the same). */
  tpool_pool_stats_t ps[2] = {{.name = "alpha", .scheduled = 3},
                              {.name = "beta"}};
  tpool_stats_t s = {.npools = 2, .pools = ps};
  tpool_schedule_stats_t sch[2];
  memset(sch, 0, sizeof(sch));
  snprintf(sch[0].name, sizeof(sch[0].name), "nightly");
  snprintf(sch[0].pool, sizeof(sch[0].pool), "alpha");
  sch[0].runs = 7;
  sch[0].ok = 5;
  sch[0].failed = 2;
  sch[0].skipped = 4;
  sch[0].last_success_unix = 1765152000.25;
  sch[0].lateness.count = 7;
  sch[0].lateness.sum_s = 0.0125;
  for (unsigned i = 0; i < TPOOL_LATENCY_BUCKETS; i++)
    sch[0].lateness.le_count[i] = tpool_latency_bound(i) >= 0.001  ? 7
                                  : tpool_latency_bound(i) >= 1e-4 ? 3
                                                                   : 0;
  snprintf(sch[1].name, sizeof(sch[1].name), "we\"ird\\");
  snprintf(sch[1].pool, sizeof(sch[1].pool), "beta");
  sch[1].runs = 1;
  sch[1].skipped = 9;

  char *text = metrics_text_schedules(&s, sch, 2);
  static const char *const lines[] = {
      "tpool_pool_scheduled_tasks{pool=\"alpha\"} 3\n",
      "tpool_schedule_runs_total{schedule=\"nightly\",pool=\"alpha\"} 7\n",
      "tpool_schedule_skipped_total{schedule=\"nightly\",pool=\"alpha\"} "
      "4\n",
      "tpool_schedule_failures_total{schedule=\"nightly\",pool=\"alpha\"} "
      "2\n",
      "tpool_schedule_last_success_timestamp_seconds{schedule=\"nightly\","
      "pool=\"alpha\"} 1765152000.25\n",
      "tpool_schedule_lateness_seconds_bucket{schedule=\"nightly\","
      "pool=\"alpha\",le=\"0.001\"} 7\n",
      "tpool_schedule_lateness_seconds_count{schedule=\"nightly\","
      "pool=\"alpha\"} 7\n",
      "tpool_schedule_runs_total{schedule=\"we\\\"ird\\\\\",pool=\"beta\"} "
      "1\n",
      "tpool_schedule_last_success_timestamp_seconds{schedule=\"we\\\"ird"
      "\\\\\",pool=\"beta\"} 0\n",
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
    if (!strstr(text, lines[i]))
      fail_msg("no line %s", lines[i]);
  parsed_t p;
  parse(text, &p);
  check_structure(&p);
  check_values(&p, &s);
  check_histogram(&p, "tpool_schedule_lateness_seconds", "alpha",
                  &sch[0].lateness);
  check_histogram(&p, "tpool_schedule_lateness_seconds", "beta",
                  &sch[1].lateness);
  /* The schedules' samples come after the pools' families, and each
     family is declared even with no schedule. */
  assert_true(strstr(text, "# TYPE tpool_schedule_runs_total counter\n") >
              strstr(text, "# TYPE tpool_circuit_breaker_refused_total"));
  th_assert_promtool_accepts(text);
  free(p.samples);
  free(text);

  text = metrics_text_schedules(&s, NULL, 0);
  parse(text, &p);
  check_structure(&p);
  for (size_t i = 0; i < p.nsamples; i++)
    assert_true(strncmp(p.samples[i].name, "tpool_schedule_", 15) != 0);
  free(p.samples);
  free(text);
}

static void test_metrics_failed_write_returns_enomem(void **state) {
  (void)state;
  tpool_pool_stats_t ps = {.name = "w"};
  tpool_stats_t s = {.npools = 1, .pools = &ps};
  struct evbuffer *buf = evbuffer_new();
  assert_non_null(buf);
  evbuffer_freeze(buf, 0); /* every append now fails */
  assert_int_equal(tpool__metrics_write(buf, &s), -ENOMEM);
  evbuffer_free(buf);
}

int main(int argc, char **argv) {
  /* "promtool": the cases whose text promtool checks (metrics_promtool). */
  if (th_promtool_mode(argc, argv)) {
    const struct CMUnitTest promtool[] = {
        cmocka_unit_test(test_metrics_workload_passes_promtool),
        cmocka_unit_test(test_metrics_empty_snapshot_passes_promtool),
        cmocka_unit_test(test_metrics_label_values_are_escaped),
        cmocka_unit_test(test_metrics_schedules),
    };
    return cmocka_run_group_tests(promtool, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_text_matches_snapshot),
      cmocka_unit_test(test_metrics_workload_passes_promtool),
      cmocka_unit_test(test_metrics_empty_snapshot_passes_promtool),
      cmocka_unit_test(test_metrics_numbers_ignore_comma_locale),
      cmocka_unit_test(test_metrics_label_values_are_escaped),
      cmocka_unit_test(test_metrics_schedules),
      cmocka_unit_test(test_metrics_failed_write_returns_enomem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
