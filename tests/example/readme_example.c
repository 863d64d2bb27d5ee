/* Offload a blocking call from a libevent loop to tpool's "cpu" pool. */
#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <tpool.h>

struct job {
  struct event_base *base;
  int pixels;
};

/* Runs on a worker thread of the "cpu" pool: blocking is fine here. */
static int resize_image(void *arg) {
  struct job *job = arg;
  job->pixels *= 2;
  return 0; /* or a negative errno, which the done callback receives */
}

/* Runs on the loop thread, exactly once, after the task has ended. */
static void resized(int status, const tpool_task_info_t *info, void *arg) {
  struct job *job = arg;
  printf("task #%lld on %s: %s, %d pixels (queued %.6fs, ran %.6fs)\n",
         (long long)info->id, info->pool, tpool_strerror(status), job->pixels,
         info->queue_wait_s, info->run_s);
  event_base_loopbreak(job->base);
}

int main(int argc, char **argv) {
  static tpool_options_t opts; /* large: keep it off the stack */
  tpool_options_init(&opts);   /* the five built-in pools, no file needed */
  tpool_config_error_t err;
  if (argc > 1 && tpool_config_load(&opts, argv[1], &err) != 0) {
    fprintf(stderr, "%s\n", err.text); /* file:line: [section] key: why */
    return 2;
  }

  evthread_use_pthreads(); /* before the first event_base */
  struct event_base *base = event_base_new();
  if (!base)
    return 1;
  tpool_manager_t *m = NULL;
  struct job job = {base, 21};
  int rc = tpool_manager_new(&opts, &m);
  if (rc == 0)
    rc = tpool_manager_attach(m, base);
  if (rc == 0)
    rc = tpool_manager_start(m);
  if (rc == 0) {
    int64_t id = tpool_manager_submit(m, "cpu", "resize_image", resize_image,
                                      resized, &job, NULL);
    if (id > 0)
      event_base_dispatch(base); /* until resized() breaks the loop */
    else
      rc = (int)id; /* refused: resized() will not run */
    tpool_manager_shutdown(m, 5.0); /* stop intake, drain: at most 5 s */
  }
  if (rc != 0)
    fprintf(stderr, "tpool: %s\n", tpool_strerror(rc));
  tpool_manager_free(m); /* before event_base_free(); NULL is a no-op */
  event_base_free(base);
  return rc == 0 ? 0 : 1;
}
