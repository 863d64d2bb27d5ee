/*
 * test_histogram.c — the latency histogram: bucket boundaries tile the
 * range without gaps, percentiles stay within 1/16 of the exact value and
 * equal a plain walk over the buckets, and merging equals recording
 * everything in one.
 */
#include "helpers.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_histogram_buckets_tile_the_range(void **state) {
  (void)state;
  assert_int_equal(tpool__hist_bucket_low(0), 0);
  for (unsigned i = 0; i + 1 < TPOOL__HIST_BUCKETS; i++) {
    uint64_t lo = tpool__hist_bucket_low(i), hi = tpool__hist_bucket_high(i);
    assert_true(hi > lo);
    assert_int_equal(tpool__hist_bucket(lo), i);
    assert_int_equal(tpool__hist_bucket(hi - 1), i);
    /* No bucket is wider than 1/16 of its lowest value (above 16 ns). */
    if (lo >= 16)
      assert_true((hi - lo) * 16 <= lo);
  }
  assert_int_equal(tpool__hist_bucket(UINT64_MAX), TPOOL__HIST_BUCKETS - 1);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void test_histogram_quantiles_within_one_sixteenth(void **state) {
  (void)state;
  enum { N = 100000 };
  uint64_t *v = malloc(N * sizeof(*v));
  tpool__hist_t *h = calloc(1, sizeof(*h));
  srand(42);
  for (int i = 0; i < N; i++) {
    /* Log-uniform from 100 ns to about 1 s. */
    double e = 2.0 + 7.0 * rand() / (double)RAND_MAX;
    v[i] = (uint64_t)pow(10.0, e);
    tpool__hist_record(h, v[i]);
  }
  qsort(v, N, sizeof(*v), cmp_u64);
  static const double qs[] = {0.5, 0.9, 0.99, 0.999};
  for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
    uint64_t exact = v[(size_t)ceil(qs[k] * N) - 1];
    uint64_t got = tpool__hist_quantile(h, qs[k]);
    double err = fabs((double)got - (double)exact) / (double)exact;
    if (err > 1.0 / 16)
      fail_msg("q%.3f: exact %llu, got %llu", qs[k], (unsigned long long)exact,
               (unsigned long long)got);
  }
  assert_int_equal(tpool__hist_quantile(h, 1.0), v[N - 1]);
  assert_int_equal(h->max_ns, v[N - 1]);
  tpool_latency_t l;
  tpool__hist_summary(h, &l);
  assert_int_equal(l.count, N);
  assert_true(l.p50_s <= l.p90_s && l.p90_s <= l.p99_s && l.p99_s <= l.max_s);
  free(h);
  free(v);
}

static void test_histogram_merge_equals_single(void **state) {
  (void)state;
  tpool__hist_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)),
                *all = calloc(1, sizeof(*all));
  for (uint64_t i = 1; i < 5000; i++) {
    uint64_t x = i * i * 37;
    tpool__hist_record(i % 2 ? a : b, x);
    tpool__hist_record(all, x);
  }
  tpool__hist_merge(a, b);
  assert_memory_equal(a, all, sizeof(*a));
  tpool__hist_t empty;
  memset(&empty, 0, sizeof(empty));
  assert_int_equal(tpool__hist_quantile(&empty, 0.5), 0);
  tpool_latency_t l;
  tpool__hist_summary(&empty, &l);
  assert_int_equal(l.count, 0);
  assert_true(l.max_s == 0.0);
  free(a);
  free(b);
  free(all);
}

static void test_histogram_prometheus_buckets_are_exact(void **state) {
  (void)state;
  assert_true(tpool_latency_bound(0) == 1e-6);
  assert_true(tpool_latency_bound(TPOOL_LATENCY_BUCKETS - 1) == 60.0);
  assert_true(isinf(tpool_latency_bound(TPOOL_LATENCY_BUCKETS)));
  for (unsigned i = 1; i < TPOOL_LATENCY_BUCKETS; i++)
    assert_true(tpool_latency_bound(i) > tpool_latency_bound(i - 1));

  /* A value on a bound counts in it ("le"); one nanosecond more does not. */
  tpool__hist_t *h = calloc(1, sizeof(*h));
  assert_non_null(h);
  for (unsigned i = 0; i < TPOOL_LATENCY_BUCKETS; i++) {
    uint64_t bound = (uint64_t)llround(tpool_latency_bound(i) * 1e9);
    tpool__hist_record(h, bound);
    tpool__hist_record(h, bound + 1);
  }
  tpool__hist_record(h, 0);
  tpool_latency_t l;
  tpool__hist_summary(h, &l);
  assert_int_equal(l.count, 2 * TPOOL_LATENCY_BUCKETS + 1);
  /* At bound i: the zero, the value on each bound up to i, and the value
     just above each bound below i. */
  for (unsigned i = 0; i < TPOOL_LATENCY_BUCKETS; i++)
    assert_int_equal(l.le_count[i], 1 + (i + 1) + i);
  free(h);
}

/* The bound a value counts under, found the slow way. */
static unsigned le_linear(uint64_t ns) {
  unsigned i = 0;
  while (i < TPOOL_LATENCY_BUCKETS &&
         (uint64_t)llround(tpool_latency_bound(i) * 1e9) < ns)
    i++;
  return i;
}

static void
test_histogram_prometheus_buckets_match_linear_search(void **state) {
  (void)state;
  tpool__hist_t *h = calloc(1, sizeof(*h));
  assert_non_null(h);
  uint64_t want[TPOOL_LATENCY_BUCKETS + 1] = {0};
  /* Around every power of two, where the fast lookup changes its table
     entry, and a log-uniform sweep from 1 ns to about 2^40 ns. */
  for (unsigned e = 0; e < 64; e++) {
    uint64_t v = 1ull << e;
    uint64_t around[] = {v - 1, v, v + 1};
    for (unsigned k = 0; k < 3; k++) {
      tpool__hist_record(h, around[k]);
      want[le_linear(around[k])]++;
    }
  }
  uint64_t x = 88172645463325252ull; /* xorshift64 */
  for (unsigned n = 0; n < 200000; n++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t v = (x >> 24) >> (x % 40);
    tpool__hist_record(h, v);
    want[le_linear(v)]++;
  }
  tpool_latency_t l;
  tpool__hist_summary(h, &l);
  uint64_t below = 0;
  for (unsigned i = 0; i < TPOOL_LATENCY_BUCKETS; i++) {
    below += want[i];
    assert_int_equal(l.le_count[i], below);
  }
  free(h);
}

/* The value at quantile q found the slow way: every bucket in turn. */
static uint64_t quantile_linear(const tpool__hist_t *h, double q) {
  uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999), seen = 0;
  if (rank == 0)
    rank = 1;
  if (rank >= h->count)
    return h->max_ns;
  for (unsigned i = 0; i < TPOOL__HIST_BUCKETS; i++) {
    seen += h->buckets[i];
    if (seen >= rank) {
      uint64_t lo = tpool__hist_bucket_low(i), hi = tpool__hist_bucket_high(i);
      uint64_t mid = hi == UINT64_MAX ? lo : lo + (hi - lo) / 2;
      return mid < h->max_ns ? mid : h->max_ns;
    }
  }
  return h->max_ns;
}

static void test_histogram_quantiles_match_linear_walk(void **state) {
  (void)state;
  /* Wide spreads, and narrow ones where several quantiles fall in one
     power of two (the quick walk then steps into one group for all). */
  static const unsigned spreads[] = {40, 20, 8, 2, 1, 0};
  uint64_t x = 2463534242ull; /* xorshift64 */
  for (size_t s = 0; s < sizeof(spreads) / sizeof(spreads[0]); s++) {
    tpool__hist_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    for (unsigned n = 0; n < 1 + 5000 * (unsigned)s; n++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      uint64_t v =
          (1ull << 20) + ((x >> 30) >> (spreads[s] ? x % spreads[s] : 34));
      tpool__hist_record(h, v);
    }
    tpool_latency_t l;
    tpool__hist_summary(h, &l);
    assert_int_equal(llround(l.p50_s * 1e9), quantile_linear(h, 0.50));
    assert_int_equal(llround(l.p90_s * 1e9), quantile_linear(h, 0.90));
    assert_int_equal(llround(l.p99_s * 1e9), quantile_linear(h, 0.99));
    assert_int_equal(tpool__hist_quantile(h, 0.999), quantile_linear(h, 0.999));
    free(h);
  }
}

/* The small record: exact counts, sum, max and bounds since the start,
   and percentiles exact over the last TPOOL__RECENT values. */
static void test_recent_keeps_the_last_values(void **state) {
  (void)state;
  tpool__recent_t r;
  memset(&r, 0, sizeof(r));
  tpool_latency_t l;
  tpool__recent_summary(&r, &l);
  assert_int_equal(l.count, 0);
  assert_true(l.p99_s == 0);
  for (uint64_t v = 1; v <= 3; v++) /* fewer than the ring holds */
    tpool__recent_record(&r, v * 1000000);
  tpool__recent_summary(&r, &l);
  assert_true(fabs(l.p50_s - 0.002) < 1e-12);
  assert_true(fabs(l.p99_s - 0.003) < 1e-12);
  memset(&r, 0, sizeof(r));
  /* 1..100 µs, in a shuffled order; the ring keeps the last 64. */
  uint64_t last[TPOOL__RECENT];
  for (uint64_t i = 0; i < 100; i++) {
    uint64_t v = (i * 37 % 100 + 1) * 1000;
    tpool__recent_record(&r, v);
    if (i >= 100 - TPOOL__RECENT)
      last[i - (100 - TPOOL__RECENT)] = v;
  }
  for (int i = 0; i < TPOOL__RECENT; i++) /* sort the expected window */
    for (int j = i + 1; j < TPOOL__RECENT; j++)
      if (last[j] < last[i]) {
        uint64_t t = last[i];
        last[i] = last[j];
        last[j] = t;
      }
  tpool__recent_summary(&r, &l);
  assert_int_equal(l.count, 100);
  assert_true(fabs(l.sum_s - 5050e-6) < 1e-9);
  assert_true(fabs(l.max_s - 100e-6) < 1e-12);
  assert_true(fabs(l.p50_s - (double)last[31] / 1e9) < 1e-12);
  assert_true(fabs(l.p90_s - (double)last[57] / 1e9) < 1e-12);
  assert_true(fabs(l.p99_s - (double)last[63] / 1e9) < 1e-12);
  /* The bounds count everything since the start, like tpool__hist_t. */
  tpool__hist_t h;
  memset(&h, 0, sizeof(h));
  for (uint64_t v = 1; v <= 100; v++)
    tpool__hist_record(&h, v * 1000);
  tpool_latency_t hl;
  tpool__hist_summary(&h, &hl);
  assert_memory_equal(l.le_count, hl.le_count, sizeof(l.le_count));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_histogram_buckets_tile_the_range),
      cmocka_unit_test(test_histogram_quantiles_within_one_sixteenth),
      cmocka_unit_test(test_histogram_quantiles_match_linear_walk),
      cmocka_unit_test(test_histogram_merge_equals_single),
      cmocka_unit_test(test_histogram_prometheus_buckets_are_exact),
      cmocka_unit_test(test_histogram_prometheus_buckets_match_linear_search),
      cmocka_unit_test(test_recent_keeps_the_last_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
