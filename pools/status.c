/*
 * status.c — the text status report: a table with one line per pool
 * (busy/max workers, utilisation, queue) and its running tasks under it,
 * then the totals, as docs/server.md shows it. It is built from a snapshot,
 * never from live pool fields, and written to the log as one message so its
 * lines stay together.
 */
#include "pools_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_HEAVY                                                             \
  "============================================================"
#define RULE_LIGHT                                                             \
  "------------------------------------------------------------"

static void format_pool(FILE *f, const tpool_pool_stats_t *ps) {
  double pct = ps->max_workers
                   ? 100.0 * (double)ps->busy_workers / (double)ps->max_workers
                   : 0.0;
  fprintf(f, "  %-12s | Workers: %3u/%3u (%5.1f%%) | Queued: %3zu\n", ps->name,
          ps->busy_workers, ps->max_workers, pct, ps->queued);
  for (size_t i = 0; i < ps->nactive; i++) {
    const tpool_active_task_t *a = &ps->active[i];
    fprintf(f, "    └─ Task #%" PRId64 ": %s (running for %.1fs%s)\n", a->id,
            a->name, a->running_for_s, a->stuck ? ", stuck" : "");
  }
}

char *tpool_stats_format(const tpool_stats_t *s) {
  if (!s)
    return NULL;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f)
    return NULL;
  fputs(RULE_HEAVY "\n", f);
  for (size_t i = 0; i < s->npools; i++)
    format_pool(f, &s->pools[i]);
  fputs(RULE_LIGHT "\n", f);
  fprintf(f, "  Total: %u active threads, %zu queued tasks\n", s->total_busy,
          s->total_queued);
  fputs(RULE_HEAVY "\n", f);
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

int tpool__status_log(tpool_manager_t *m) {
  if (!tpool__log_enabled(&m->log, TPOOL_LOG_INFO))
    return 0;
  tpool_stats_t *s;
  int rc = tpool_manager_stats(m, &s);
  if (rc != 0)
    return rc;
  char *table = tpool_stats_format(s);
  tpool_stats_free(s);
  if (!table)
    return -ENOMEM;
  static const char heading[] = "ThreadPoolManager Current Status:\n";
  size_t tlen = strlen(table);
  char *msg = malloc(sizeof(heading) + tlen);
  if (!msg) {
    free(table);
    return -ENOMEM;
  }
  memcpy(msg, heading, sizeof(heading) - 1);
  memcpy(msg + sizeof(heading) - 1, table, tlen);
  msg[sizeof(heading) - 1 + tlen - 1] = '\0'; /* the sink ends the line */
  tpool__log_write(&m->log, TPOOL_LOG_INFO, msg);
  free(msg);
  free(table);
  return 0;
}

int tpool_manager_log_status(tpool_manager_t *m) {
  return m ? tpool__status_log(m) : -EINVAL;
}
