/*
 * demo_data.c — the files behind tpool-server's demo work kinds, made
 * before the pools start: [demo] data_dir, the SQLite database (when the
 * db pool runs) and the read file (demo_work.h makes each atomically).
 * Each db worker opens its own read-only connection in the pool's
 * thread_start hook; as hooks must not call into tpool, the hook only
 * counts the connection and wakes loop 0, which logs it.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* On a db worker, after it opened its connection: count it and wake the
   loop, which logs it (a hook must not call into tpool). */
static void db_opened(void *arg) {
  server_t *s = arg;
  atomic_fetch_add(&s->db_opened, 1);
  event_active(s->db_opened_ev, 0, 0);
}

void demo_data_on_opened(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  server_t *s = arg;
  unsigned n = atomic_load(&s->db_opened);
  for (; s->db_logged < n; s->db_logged++)
    server_log(s, TPOOL_LOG_INFO, "Opened SQLite connection %u to %s (pool db)",
               s->db_logged + 1, s->db_path);
}

tpool_pool_options_t *demo_db_pool(tpool_options_t *o) {
  tpool_pool_options_t *db = tpool_options_pool(o, "db");
  return db && db->enabled ? db : NULL;
}

void demo_data_hooks(server_t *s) {
  s->db_hook.path = s->db_path;
  s->db_hook.opened = db_opened;
  s->db_hook.arg = s;
  tpool_pool_options_t *db = demo_db_pool(&s->cfg->core);
  if (db) {
    db->thread_start = demo_db_open;
    db->thread_stop = demo_db_close;
    db->thread_arg = &s->db_hook;
  }
}

/* mkdir -p: `path` and its missing parents. */
static int make_dirs(const char *path) {
  char p[TPOOL_PATH_MAX];
  snprintf(p, sizeof(p), "%s", path);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/')
      continue;
    *c = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
      return -errno;
    *c = '/';
  }
  if (mkdir(p, 0755) != 0 && errno != EEXIST)
    return -errno;
  struct stat st;
  if (stat(p, &st) != 0)
    return -errno;
  return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int demo_data_prepare(server_t *s) {
  const demo_options_t *o = &s->cfg->server.demo;
  bool created;
  int rc = make_dirs(o->data_dir);
  if (rc != 0) {
    server_log(s, TPOOL_LOG_ERROR, "[demo] data_dir: cannot create \"%s\": %s",
               o->data_dir, strerror(-rc));
    return rc;
  }
  snprintf(s->db_path, sizeof(s->db_path), "%s/%s", o->data_dir, DEMO_DB_FILE);
  snprintf(s->read_path, sizeof(s->read_path), "%s/%s", o->data_dir,
           DEMO_READ_FILE);
  if (demo_db_pool(&s->cfg->core)) {
    rc = demo_db_prepare(s->db_path, o->db_rows, &created);
    if (rc != 0) {
      server_log(s, TPOOL_LOG_ERROR, "cannot make the demo database %s: %s",
                 s->db_path, strerror(-rc));
      return rc;
    }
    server_log(s, TPOOL_LOG_INFO, "%s the demo database %s (%zu rows)",
               created ? "Seeded" : "Reusing", s->db_path, o->db_rows);
  }
  rc = demo_file_prepare(s->read_path, DEMO_READ_FILE_SIZE, &created);
  s->read_fd = rc == 0 ? open(s->read_path, O_RDONLY | O_CLOEXEC) : -1;
  if (rc == 0 && s->read_fd < 0)
    rc = -errno;
  if (rc != 0) {
    server_log(s, TPOOL_LOG_ERROR, "cannot make the demo read file %s: %s",
               s->read_path, strerror(-rc));
    return rc;
  }
  server_log(s, TPOOL_LOG_INFO, "%s the demo read file %s (%zu bytes)",
             created ? "Wrote" : "Reusing", s->read_path, DEMO_READ_FILE_SIZE);
  return 0;
}
