/*
 * demo_work.c — the work of tpool-server's demo kinds; see demo_work.h.
 *
 * Everything here is deterministic: the numbers come from splitmix64 of
 * fixed seeds and positions (counter-based, so any part of a stream can be
 * generated on its own), and the files are made once and atomically (built
 * under a temporary name, synced, renamed into place). Nothing here keeps
 * state between calls; the one per-thread resource, a SQLite connection
 * with its prepared statement, lives in the context the db pool's
 * thread_start hook returns.
 */
#include "demo_work.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes generated, digested or read per step. */
#define CHUNK ((size_t)64 * 1024)

/* Seeds of the streams: the bytes, the dense layer's W, x and b, the
   database's rows, and the feature kinds of the embedding. */
#define SEED_BYTES 0x7470006c62797465ull
#define SEED_W 0x7470006c2d772d31ull
#define SEED_X 0x7470006c2d782d32ull
#define SEED_B 0x7470006c2d622d33ull
#define SEED_ROWS 0x7470006c2d64622dull
#define TAG_WORD 'w'
#define TAG_TRIGRAM 't'

/* ---- numbers ------------------------------------------------------------- */

/* The splitmix64 finaliser: a bijection that spreads every input bit. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The i-th value of the splitmix64 stream that starts at `seed`. */
static uint64_t splitmix(uint64_t seed, uint64_t i) {
  return mix64(seed + (i + 1) * 0x9e3779b97f4a7c15ull);
}

/* A float in [-1, 1) from the top 24 bits of u (exact in a float). */
static float unit(uint64_t u) {
  return (float)(u >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

uint64_t demo_fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void demo_bytes(uint64_t offset, void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    uint64_t w = splitmix(SEED_BYTES, offset / 8);
    unsigned at = (unsigned)(offset % 8);
    size_t n = 8 - at < len ? 8 - at : len;
    for (size_t k = 0; k < n; k++)
      p[k] = (unsigned char)(w >> (8 * (at + k)));
    p += n;
    offset += n;
    len -= n;
  }
}

/* ---- dense --------------------------------------------------------------- */

int demo_dense(unsigned size, demo_dense_t *out) {
  if (size < 1 || size > DEMO_DENSE_MAX)
    return -EINVAL;
  float *x = malloc(size * sizeof(*x));
  float *w = malloc(size * sizeof(*w)); /* one row of W at a time */
  if (!x || !w) {
    free(x);
    free(w);
    return -ENOMEM;
  }
  for (unsigned j = 0; j < size; j++)
    x[j] = unit(splitmix(SEED_X, j));
  float scale = 1.0f / sqrtf((float)size);
  memset(out, 0, sizeof(*out));
  out->size = size;
  out->fnv1a = DEMO_FNV_INIT;
  for (unsigned i = 0; i < size; i++) {
    uint64_t row = (uint64_t)i * size;
    for (unsigned j = 0; j < size; j++)
      w[j] = unit(splitmix(SEED_W, row + j)) * scale;
    double acc = 0.1 * (double)unit(splitmix(SEED_B, i));
    for (unsigned j = 0; j < size; j++)
      acc += (double)w[j] * (double)x[j];
    float y = acc > 0 ? (float)acc : 0.0f;
    uint32_t bits;
    memcpy(&bits, &y, sizeof(bits));
    unsigned char le[4] = {(unsigned char)bits, (unsigned char)(bits >> 8),
                           (unsigned char)(bits >> 16),
                           (unsigned char)(bits >> 24)};
    out->fnv1a = demo_fnv1a(out->fnv1a, le, sizeof(le));
    out->sum += y;
    out->nonzero += y > 0;
  }
  free(x);
  free(w);
  return 0;
}

/* ---- embed --------------------------------------------------------------- */

static bool is_token_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static unsigned char lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Adds the feature of hash h: to a bucket, with a sign, both from h. */
static void add_feature(double *out, unsigned dim, uint64_t h, double weight) {
  uint64_t m = mix64(h);
  out[(m & 0x7fffffffffffffffull) % dim] += (m >> 63) ? -weight : weight;
}

/* Adds the features of the token t[0..n): the word and its trigrams. */
static void add_token(double *out, unsigned dim, const unsigned char *t,
                      size_t n) {
  unsigned char tag = TAG_WORD;
  uint64_t h = demo_fnv1a(DEMO_FNV_INIT, &tag, 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = lower(t[i]);
    h = demo_fnv1a(h, &c, 1);
  }
  add_feature(out, dim, h, 1.0);
  /* The trigrams of "<token>": n of them, as the padding adds two. */
  for (size_t k = 0; k < n; k++) {
    unsigned char g[4] = {TAG_TRIGRAM};
    for (size_t q = 0; q < 3; q++) {
      size_t at = k + q; /* in "<token>" */
      g[1 + q] = at == 0 ? '<' : at == n + 1 ? '>' : lower(t[at - 1]);
    }
    add_feature(out, dim, demo_fnv1a(DEMO_FNV_INIT, g, 4), 0.5);
  }
}

int demo_embed(const char *text, size_t len, unsigned dim, double *out,
               size_t *ntokens) {
  if (dim < 1 || dim > DEMO_EMBEDDING_DIM_MAX || len > DEMO_TEXT_MAX)
    return -EINVAL;
  const unsigned char *s = (const unsigned char *)text;
  memset(out, 0, dim * sizeof(*out));
  *ntokens = 0;
  for (size_t i = 0; i < len;) {
    if (!is_token_byte(s[i])) {
      i++;
      continue;
    }
    size_t start = i;
    while (i < len && is_token_byte(s[i]))
      i++;
    add_token(out, dim, s + start, i - start);
    (*ntokens)++;
  }
  double norm = 0;
  for (unsigned k = 0; k < dim; k++)
    norm += out[k] * out[k];
  norm = sqrt(norm);
  if (norm > 0)
    for (unsigned k = 0; k < dim; k++)
      out[k] /= norm;
  return 0;
}

/* ---- hash ---------------------------------------------------------------- */

int demo_hash(uint64_t nbytes, char hex[65]) {
  if (nbytes > DEMO_HASH_MAX)
    return -EINVAL;
  unsigned char *buf = malloc(CHUNK);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int rc = buf && ctx ? 0 : -ENOMEM;
  if (rc == 0 && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
    rc = -EIO;
  for (uint64_t at = 0; rc == 0 && at < nbytes; at += CHUNK) {
    size_t n = nbytes - at < CHUNK ? (size_t)(nbytes - at) : CHUNK;
    demo_bytes(at, buf, n);
    if (EVP_DigestUpdate(ctx, buf, n) != 1)
      rc = -EIO;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (rc == 0 && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32))
    rc = -EIO;
  EVP_MD_CTX_free(ctx);
  free(buf);
  if (rc == 0)
    for (unsigned i = 0; i < 32; i++)
      snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return rc;
}

/* ---- files --------------------------------------------------------------- */

/* `path` with ".tmp.PID" appended, in tmp[PATH_MAX]. */
static int temp_name(const char *path, char *tmp) {
  int n = snprintf(tmp, PATH_MAX, "%s.tmp.%ld", path, (long)getpid());
  return n > 0 && n < PATH_MAX ? 0 : -ENAMETOOLONG;
}

/* fsync()s the file at `path`. */
static int sync_path(const char *path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

/* Syncs the directory of `path`, so a rename into it survives a crash.
   Best effort: some file systems cannot sync a directory. */
static void sync_parent(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  (void)sync_path(dir, O_RDONLY | O_DIRECTORY);
}

/* Renames the finished temporary file into place, or removes it. */
static int put_in_place(const char *tmp, const char *path, int rc) {
  if (rc == 0)
    rc = sync_path(tmp, O_RDONLY);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = -errno;
  if (rc != 0) {
    unlink(tmp);
    return rc;
  }
  sync_parent(path);
  return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int demo_file_prepare(const char *path, size_t size, bool *created) {
  *created = false;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
      (uint64_t)st.st_size == (uint64_t)size)
    return 0;
  char tmp[PATH_MAX];
  int rc = temp_name(path, tmp);
  if (rc != 0)
    return rc;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  unsigned char *buf = malloc(CHUNK);
  rc = buf ? 0 : -ENOMEM;
  for (size_t at = 0; rc == 0 && at < size; at += CHUNK) {
    size_t n = size - at < CHUNK ? size - at : CHUNK;
    demo_bytes(at, buf, n);
    rc = write_all(fd, buf, n);
  }
  free(buf);
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  rc = put_in_place(tmp, path, rc);
  *created = rc == 0;
  return rc;
}

int demo_read(int fd, size_t nbytes, uint64_t *fnv1a) {
  uint64_t h = DEMO_FNV_INIT;
  if (nbytes == 0) {
    *fnv1a = h;
    return 0;
  }
  unsigned char *buf = malloc(CHUNK);
  if (!buf)
    return -ENOMEM;
  int rc = 0;
  for (size_t at = 0; at < nbytes;) {
    size_t want = nbytes - at < CHUNK ? nbytes - at : CHUNK;
    ssize_t r = pread(fd, buf, want, (off_t)at);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      rc = r < 0 ? -errno : -EIO; /* 0: the file ends early */
      break;
    }
    h = demo_fnv1a(h, buf, (size_t)r);
    at += (size_t)r;
  }
  free(buf);
  if (rc == 0)
    *fnv1a = h;
  return rc;
}

/* ---- query --------------------------------------------------------------- */

/* A worker's connection, and the query prepared on it once. */
typedef struct demo_db {
  sqlite3 *db;
  sqlite3_stmt *get;
} demo_db_t;

/* Bumped when the layout of the database changes: older files are
   rebuilt. */
#define DB_FORMAT 1

static int sqlite_errno(int rc) {
  return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
}

void demo_db_value(int64_t key, char *buf, size_t size) {
  static const char *const adjectives[16] = {
      "amber", "brisk", "calm", "dusky", "eager",  "fierce", "gentle", "hazy",
      "icy",   "jolly", "keen", "lucid", "mellow", "noble",  "odd",    "proud"};
  static const char *const nouns[16] = {
      "falcon", "harbor", "meadow",  "comet",  "lantern", "willow",
      "canyon", "ember",  "glacier", "orchid", "pebble",  "quarry",
      "river",  "summit", "thicket", "valley"};
  uint64_t m = splitmix(SEED_ROWS, (uint64_t)key);
  snprintf(buf, size, "%s-%s-%06x", adjectives[m & 15], nouns[(m >> 4) & 15],
           (unsigned)((m >> 8) & 0xffffff));
}

/* The row's weight, 0..999. */
static int64_t db_weight(int64_t key) {
  return (int64_t)((splitmix(SEED_ROWS, (uint64_t)key) >> 32) % 1000);
}

/* True when `path` is a demo database of this format with `rows` rows. */
static bool db_is_ready(const char *path, size_t rows) {
  if (access(path, F_OK) != 0)
    return false;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  bool ok =
      sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(
          db,
          "SELECT (SELECT value FROM meta WHERE name = 'format'),"
          " (SELECT value FROM meta WHERE name = 'rows')",
          -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW &&
      sqlite3_column_int64(st, 0) == DB_FORMAT &&
      sqlite3_column_int64(st, 1) == (sqlite3_int64)rows;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return ok;
}

/* Builds the database in the new file `tmp`, in one transaction. No
   journal and no syncs while building: the file is not in place yet, and
   is synced once before it is. */
static int db_build(const char *tmp, size_t rows) {
  sqlite3 *db = NULL;
  sqlite3_stmt *ins = NULL;
  char meta[160];
  snprintf(meta, sizeof(meta),
           "INSERT INTO meta VALUES ('format', %d), ('rows', %zu); COMMIT;",
           DB_FORMAT, rows);
  int rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                           NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db,
                      "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                      "BEGIN;"
                      "CREATE TABLE items(key INTEGER PRIMARY KEY,"
                      " value TEXT NOT NULL, weight INTEGER NOT NULL);"
                      "CREATE TABLE meta(name TEXT PRIMARY KEY,"
                      " value INTEGER NOT NULL);",
                      NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db, "INSERT INTO items VALUES (?1, ?2, ?3)", -1,
                            &ins, NULL);
  for (size_t k = 1; rc == SQLITE_OK && k <= rows; k++) {
    char value[DEMO_VALUE_MAX];
    demo_db_value((int64_t)k, value, sizeof(value));
    sqlite3_bind_int64(ins, 1, (sqlite3_int64)k);
    sqlite3_bind_text(ins, 2, value, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(ins, 3, db_weight((int64_t)k));
    rc = sqlite3_step(ins);
    rc = rc == SQLITE_DONE ? sqlite3_reset(ins) : rc;
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, meta, NULL, NULL, NULL);
  sqlite3_finalize(ins);
  int crc = sqlite3_close(db);
  if (rc == SQLITE_OK)
    rc = crc;
  return rc == SQLITE_OK ? 0 : sqlite_errno(rc);
}

int demo_db_prepare(const char *path, size_t rows, bool *created) {
  *created = false;
  if (rows < 1 || rows > DEMO_DB_ROWS_MAX)
    return -EINVAL;
  if (db_is_ready(path, rows))
    return 0;
  char tmp[PATH_MAX];
  int rc = temp_name(path, tmp);
  if (rc != 0)
    return rc;
  if (unlink(tmp) != 0 && errno != ENOENT) /* left by an earlier crash */
    return -errno;
  rc = put_in_place(tmp, path, db_build(tmp, rows));
  *created = rc == 0;
  return rc;
}

int demo_db_open(const char *pool, void **ctx, void *arg) {
  (void)pool;
  const demo_db_hook_t *h = arg;
  demo_db_t *c = calloc(1, sizeof(*c));
  if (!c)
    return -ENOMEM;
  /* One thread uses the connection: no SQLite mutex needed on it. */
  int rc = sqlite3_open_v2(h->path, &c->db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(
        c->db, "SELECT key, value, weight FROM items WHERE key = ?1", -1,
        SQLITE_PREPARE_PERSISTENT, &c->get, NULL);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(c->get);
    sqlite3_close(c->db);
    free(c);
    return sqlite_errno(rc);
  }
  *ctx = c;
  if (h->opened)
    h->opened(h->arg);
  return 0;
}

void demo_db_close(const char *pool, void *ctx, void *arg) {
  (void)pool;
  (void)arg;
  demo_db_t *c = ctx;
  if (!c)
    return;
  sqlite3_finalize(c->get);
  sqlite3_close(c->db);
  free(c);
}

int demo_db_query(void *ctx, int64_t key, demo_row_t *row) {
  demo_db_t *c = ctx;
  if (!c)
    return -EINVAL;
  sqlite3_bind_int64(c->get, 1, (sqlite3_int64)key);
  int rc = sqlite3_step(c->get), out;
  if (rc == SQLITE_ROW) {
    const unsigned char *v = sqlite3_column_text(c->get, 1);
    row->key = (int64_t)sqlite3_column_int64(c->get, 0);
    snprintf(row->value, sizeof(row->value), "%s", v ? (const char *)v : "");
    row->weight = (int64_t)sqlite3_column_int64(c->get, 2);
    out = 0;
  } else {
    out = rc == SQLITE_DONE ? -ENOENT : sqlite_errno(rc);
  }
  sqlite3_reset(c->get);
  return out;
}
