/*
 * histogram.c — latency distributions for run time and queue wait.
 *
 * The layout is HdrHistogram's log-linear one, over nanoseconds: a value
 * below 16 has its own bucket; above, the power of two that holds it is
 * cut into 16 equal buckets. Recording is a count-leading-zeros and an
 * increment, the error of any percentile is under 1/16, and one histogram
 * is under 5 KiB, small enough to copy under a pool lock for a snapshot.
 * Written here rather than taken from a library because it is fifty lines
 * and must sit inside tpool's own locking.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUB TPOOL__HIST_SUB
#define SUB_BITS TPOOL__HIST_SUB_BITS

unsigned tpool__hist_bucket(uint64_t ns) {
  if (ns < SUB)
    return (unsigned)ns;
  unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* ns in [2^e, 2^(e+1)) */
  if (e >= TPOOL__HIST_TOP_BIT)
    return TPOOL__HIST_BUCKETS - 1;
  unsigned mant = (unsigned)(ns >> (e - SUB_BITS)) & (SUB - 1);
  return SUB + (e - SUB_BITS) * SUB + mant;
}

uint64_t tpool__hist_bucket_low(unsigned i) {
  if (i < SUB)
    return i;
  unsigned e = (i - SUB) / SUB + SUB_BITS;
  uint64_t mant = (i - SUB) % SUB;
  return (SUB + mant) << (e - SUB_BITS);
}

uint64_t tpool__hist_bucket_high(unsigned i) {
  if (i + 1 >= TPOOL__HIST_BUCKETS)
    return UINT64_MAX;
  return tpool__hist_bucket_low(i + 1);
}

/* The bounds of tpool_latency_t.le_count in nanoseconds: 1, 2.5 and 5
   per decade from 1 µs to 10 s, then 30 s and 60 s. */
static const uint64_t le_bounds_ns[TPOOL_LATENCY_BUCKETS] = {
    1000,       2500,       5000,       10000,       25000,       50000,
    100000,     250000,     500000,     1000000,     2500000,     5000000,
    10000000,   25000000,   50000000,   100000000,   250000000,   500000000,
    1000000000, 2500000000, 5000000000, 10000000000, 30000000000, 60000000000};

double tpool_latency_bound(unsigned i) {
  if (i >= TPOOL_LATENCY_BUCKETS)
    return HUGE_VAL;
  return tpool__ns_to_s(le_bounds_ns[i]);
}

/* The first bound at or above 2^e, for each power of two e. Between two
   powers of two there is at most one bound (neighbouring bounds are at
   least twice apart), so with this table a value finds its bound with one
   comparison. Filled before main() runs. */
static uint8_t le_first[64];

__attribute__((constructor)) static void le_first_init(void) {
  unsigned k = 0;
  for (unsigned e = 0; e < 64; e++) {
    while (k < TPOOL_LATENCY_BUCKETS && le_bounds_ns[k] < (1ull << e))
      k++;
    le_first[e] = (uint8_t)k;
  }
}

/* Index of the first bound at or above ns (TPOOL_LATENCY_BUCKETS: none). */
static unsigned le_index(uint64_t ns) {
  if (ns == 0)
    return 0;
  unsigned k = le_first[63u - (unsigned)__builtin_clzll(ns)];
  if (k < TPOOL_LATENCY_BUCKETS && le_bounds_ns[k] < ns)
    k++;
  return k;
}

void tpool__hist_record(tpool__hist_t *h, uint64_t ns) {
  unsigned b = tpool__hist_bucket(ns);
  h->buckets[b]++;
  h->groups[b / SUB]++;
  h->le[le_index(ns)]++;
  h->count++;
  h->sum_ns += ns;
  if (ns > h->max_ns)
    h->max_ns = ns;
}

void tpool__hist_merge(tpool__hist_t *into, const tpool__hist_t *from) {
  for (unsigned i = 0; i < TPOOL__HIST_BUCKETS; i++)
    into->buckets[i] += from->buckets[i];
  for (unsigned i = 0; i < TPOOL__HIST_GROUPS; i++)
    into->groups[i] += from->groups[i];
  for (unsigned i = 0; i <= TPOOL_LATENCY_BUCKETS; i++)
    into->le[i] += from->le[i];
  into->count += from->count;
  into->sum_ns += from->sum_ns;
  if (from->max_ns > into->max_ns)
    into->max_ns = from->max_ns;
}

/* The rank of quantile q (0..1), 1-based: the smallest value with at least
   q of all values at or below it. */
static uint64_t rank_of(const tpool__hist_t *h, double q) {
  if (q < 0)
    q = 0;
  if (q > 1)
    q = 1;
  uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
  return rank == 0 ? 1 : rank;
}

/* The value reported for bucket i: its middle, clamped to max. */
static uint64_t bucket_value(const tpool__hist_t *h, unsigned i) {
  uint64_t lo = tpool__hist_bucket_low(i);
  uint64_t hi = tpool__hist_bucket_high(i);
  uint64_t mid = hi == UINT64_MAX ? lo : lo + (hi - lo) / 2;
  return mid < h->max_ns ? mid : h->max_ns;
}

/* Values at n (at most QUANTILES_MAX) quantiles given in increasing
   order, in one walk (a snapshot asks for three per histogram, and every
   health request for ten histograms): over the groups, and into the
   buckets of a group only where a quantile falls. */
#define QUANTILES_MAX 4
static void quantiles(const tpool__hist_t *h, const double *q, uint64_t *out,
                      unsigned n) {
  uint64_t rank[QUANTILES_MAX];
  for (unsigned k = 0; k < n; k++)
    rank[k] = rank_of(h, q[k]);
  unsigned k = 0;
  uint64_t seen = 0;
  for (unsigned g = 0; g < TPOOL__HIST_GROUPS && k < n; g++) {
    if (seen + h->groups[g] < rank[k]) {
      seen += h->groups[g];
      continue;
    }
    for (unsigned i = g * SUB; i < (g + 1) * SUB && k < n; i++) {
      seen += h->buckets[i];
      while (k < n && seen >= rank[k]) {
        /* The largest value is known exactly. */
        out[k] = rank[k] >= h->count ? h->max_ns : bucket_value(h, i);
        k++;
      }
    }
  }
  for (; k < n; k++)
    out[k] = h->max_ns;
}

uint64_t tpool__hist_quantile(const tpool__hist_t *h, double q) {
  if (h->count == 0)
    return 0;
  uint64_t v;
  quantiles(h, &q, &v, 1);
  return v;
}

/* The cumulative counts of tpool_latency_t from per-bound counts. */
static void le_cumulative(const uint64_t *le, tpool_latency_t *out) {
  uint64_t below = 0;
  for (unsigned i = 0; i < TPOOL_LATENCY_BUCKETS; i++) {
    below += le[i];
    out->le_count[i] = below;
  }
}

void tpool__hist_summary(const tpool__hist_t *h, tpool_latency_t *out) {
  memset(out, 0, sizeof(*out));
  out->count = h->count;
  if (h->count == 0)
    return;
  out->sum_s = tpool__ns_to_s(h->sum_ns);
  static const double q[3] = {0.50, 0.90, 0.99};
  uint64_t v[3];
  quantiles(h, q, v, 3);
  out->p50_s = tpool__ns_to_s(v[0]);
  out->p90_s = tpool__ns_to_s(v[1]);
  out->p99_s = tpool__ns_to_s(v[2]);
  out->max_s = tpool__ns_to_s(h->max_ns);
  le_cumulative(h->le, out);
}

/* ---- the small record --------------------------------------------------- */

void tpool__recent_record(tpool__recent_t *r, uint64_t ns) {
  r->last_ns[r->count % TPOOL__RECENT] = ns;
  r->le[le_index(ns)]++;
  r->count++;
  r->sum_ns += ns;
  if (ns > r->max_ns)
    r->max_ns = ns;
}

static int by_value(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

void tpool__recent_summary(const tpool__recent_t *r, tpool_latency_t *out) {
  memset(out, 0, sizeof(*out));
  out->count = r->count;
  if (r->count == 0)
    return;
  out->sum_s = tpool__ns_to_s(r->sum_ns);
  out->max_s = tpool__ns_to_s(r->max_ns);
  size_t n = r->count < TPOOL__RECENT ? (size_t)r->count : TPOOL__RECENT;
  uint64_t v[TPOOL__RECENT];
  memcpy(v, r->last_ns, n * sizeof(v[0]));
  qsort(v, n, sizeof(v[0]), by_value);
  /* The smallest value with at least q of them at or below it. */
  static const double q[3] = {0.50, 0.90, 0.99};
  double *p[3] = {&out->p50_s, &out->p90_s, &out->p99_s};
  for (unsigned k = 0; k < 3; k++) {
    size_t rank = (size_t)(q[k] * (double)n + 0.999999);
    *p[k] = tpool__ns_to_s(v[rank ? rank - 1 : 0]);
  }
  le_cumulative(r->le, out);
}
