/*
 * demo.c — tpool-demo, the program the README's quick start runs: it embeds
 * a tpool manager in a libevent loop, offloads a burst of blocking work of
 * five kinds to the five pools, prints the status table while the work
 * runs and again when it is done, and shuts down cleanly.
 *
 * Usage: tpool-demo [-c config.ini]
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <tpool.h>
#include <unistd.h>

/* The work of each kind: a pool, a task name and how long it blocks. */
static const struct {
  const char *pool, *task;
  int ms;
  bool spin; /* burn CPU rather than sleep */
} kinds[] = {
    {"io", "read_file", 40, false},
    {"cpu", "compute_hash", 15, true},
    {"inference", "run_model", 250, false},
    {"embedding", "embed_text", 60, false},
    {"db", "query_users", 30, false},
};
enum { PER_KIND = 12 };

struct demo {
  struct event_base *base;
  tpool_manager_t *m;
  int pending, ok, failed;
};

struct job {
  struct demo *demo;
  int kind;
};

static int do_work(void *arg) {
  struct job *job = arg;
  int ms = kinds[job->kind].ms;
  if (!kinds[job->kind].spin) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
  }
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  do
    clock_gettime(CLOCK_MONOTONIC, &now);
  while ((now.tv_sec - start.tv_sec) * 1000 +
             (now.tv_nsec - start.tv_nsec) / 1000000 <
         ms);
  return 0;
}

static void on_done(int status, const tpool_task_info_t *info, void *arg) {
  struct job *job = arg;
  struct demo *demo = job->demo;
  if (status == 0)
    demo->ok++;
  else
    demo->failed++;
  if (info->id % PER_KIND == 0)
    printf("  done: %-10s %-13s #%-3lld %s (queued %.3fs, ran %.3fs)\n",
           info->pool, info->name, (long long)info->id, tpool_strerror(status),
           info->queue_wait_s, info->run_s);
  if (--demo->pending == 0)
    event_base_loopbreak(demo->base);
}

static void show_status(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct demo *demo = arg;
  tpool_manager_log_status(demo->m);
}

int main(int argc, char **argv) {
  const char *config = "config.ini";
  int opt;
  while ((opt = getopt(argc, argv, "c:h")) != -1) {
    if (opt == 'c') {
      config = optarg;
    } else {
      fprintf(stderr, "usage: %s [-c config.ini]\n", argv[0]);
      return opt == 'h' ? 0 : 2;
    }
  }

  setvbuf(stdout, NULL, _IOLBF, 0); /* in step with the log on stderr */
  evthread_use_pthreads();
  struct demo demo = {event_base_new(), NULL, 0, 0, 0};
  tpool_config_error_t err;
  int rc = tpool_manager_new_from_file(config, &demo.m, &err);
  if (rc != 0) {
    fprintf(stderr, "tpool-demo: %s\n",
            err.text[0] ? err.text : tpool_strerror(rc));
    event_base_free(demo.base);
    return 2;
  }
  tpool_manager_attach(demo.m, demo.base);
  if ((rc = tpool_manager_start(demo.m)) != 0) {
    fprintf(stderr, "tpool-demo: start: %s\n", tpool_strerror(rc));
    tpool_manager_free(demo.m);
    event_base_free(demo.base);
    return 1;
  }

  static struct job jobs[sizeof(kinds) / sizeof(kinds[0])][PER_KIND];
  printf("tpool-demo: offloading %d tasks to 5 pools\n",
         (int)(PER_KIND * (sizeof(kinds) / sizeof(kinds[0]))));
  for (int i = 0; i < PER_KIND; i++) {
    for (int k = 0; k < (int)(sizeof(kinds) / sizeof(kinds[0])); k++) {
      jobs[k][i] = (struct job){&demo, k};
      int64_t id = tpool_manager_submit(demo.m, kinds[k].pool, kinds[k].task,
                                        do_work, on_done, &jobs[k][i], NULL);
      if (id > 0)
        demo.pending++;
      else
        fprintf(stderr, "tpool-demo: submit to %s: %s\n", kinds[k].pool,
                tpool_strerror((int)id));
    }
  }

  /* The table while every kind still runs, then once all are done. */
  struct event *status = evtimer_new(demo.base, show_status, &demo);
  struct timeval at = {0, 20000};
  evtimer_add(status, &at);
  if (demo.pending > 0)
    event_base_dispatch(demo.base);
  printf("tpool-demo: %d completed, %d failed\n", demo.ok, demo.failed);
  tpool_manager_log_status(demo.m);

  rc = tpool_manager_shutdown(demo.m, 5.0);
  event_free(status);
  tpool_manager_free(demo.m);
  event_base_free(demo.base);
  return rc == 0 && demo.failed == 0 ? 0 : 1;
}
