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
  return 0; /* or a negative errno, passed to the done callback */
}

/* Runs on the loop thread, exactly once, when the task has finished. */
static void resized(int status, const tpool_task_info_t *info, void *arg) {
  struct job *job = arg;
  printf("task #%lld %s: %d pixels (queued %.6fs, ran %.6fs)\n",
         (long long)info->id, tpool_strerror(status), job->pixels,
         info->queue_wait_s, info->run_s);
  event_base_loopbreak(job->base);
}

int main(int argc, char **argv) {
  evthread_use_pthreads(); /* before the first event_base */
  struct event_base *base = event_base_new();

  tpool_manager_t *m;
  tpool_config_error_t err;
  int rc =
      tpool_manager_new_from_file(argc > 1 ? argv[1] : "config.ini", &m, &err);
  if (rc != 0) {
    fprintf(stderr, "%s\n", err.text[0] ? err.text : tpool_strerror(rc));
    return 2;
  }
  tpool_manager_attach(m, base);
  tpool_manager_start(m);

  struct job job = {base, 21};
  int64_t id = tpool_manager_submit(m, "cpu", "resize_image", resize_image,
                                    resized, &job, NULL);
  if (id < 0)
    fprintf(stderr, "submit: %s\n", tpool_strerror((int)id));
  else
    event_base_dispatch(base); /* until resized() breaks the loop */

  tpool_manager_shutdown(m, 5.0); /* drain, at most 5 seconds */
  tpool_manager_free(m);
  event_base_free(base);
  return 0;
}
