/*
 * log.c — the log sink every tpool message goes through.
 *
 * The library never prints on its own: messages go to the user's
 * tpool_log_cb, or to a file descriptor (stderr, stdout or an appended
 * file) as "LEVEL message\n". Each message is written with one write(2) of
 * a fully formatted buffer, and calls are serialised by the sink's mutex,
 * so lines from workers, the monitor and the loop never interleave.
 * The mutex also lets tpool__log_close() promise that the user's sink is
 * not running and will not be called again — a worker that outlives the
 * manager (a task that never returned) must not call into freed user state.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_MSG_MAX 4096

const char *tpool_log_level_name(tpool_log_level_t level) {
  switch (level) {
  case TPOOL_LOG_DEBUG:
    return "DEBUG";
  case TPOOL_LOG_INFO:
    return "INFO";
  case TPOOL_LOG_WARN:
    return "WARN";
  case TPOOL_LOG_ERROR:
    return "ERROR";
  }
  return "INFO";
}

int tpool__log_init(tpool__log_t *l, const tpool_options_t *o) {
  memset(l, 0, sizeof(*l));
  l->fd = -1;
  atomic_init(&l->level, (int)o->log_level);
  if (o->log_cb) {
    l->cb = o->log_cb;
    l->cb_arg = o->log_arg;
  } else if (o->log_path[0] == '\0' || strcmp(o->log_path, "stderr") == 0) {
    l->fd = STDERR_FILENO;
  } else if (strcmp(o->log_path, "stdout") == 0) {
    l->fd = STDOUT_FILENO;
  } else {
    l->fd = open(o->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0)
      return -EIO;
    l->own_fd = true;
  }
  if (pthread_mutex_init(&l->mu, NULL) != 0) {
    if (l->own_fd)
      close(l->fd);
    return -ENOMEM;
  }
  return 0;
}

void tpool__log_close(tpool__log_t *l) {
  pthread_mutex_lock(&l->mu);
  l->closed = true;
  pthread_mutex_unlock(&l->mu);
}

void tpool__log_destroy(tpool__log_t *l) {
  if (l->own_fd && l->fd >= 0)
    close(l->fd);
  l->fd = -1;
  pthread_mutex_destroy(&l->mu);
}

/* Writes all of buf, retrying on EINTR and short writes. A log that cannot
   be written is dropped: there is nowhere left to report it. */
static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    buf += n;
    len -= (size_t)n;
  }
}

static void write_line(int fd, tpool_log_level_t lv, const char *msg) {
  const char *word = tpool_log_level_name(lv);
  size_t wlen = strlen(word), mlen = strlen(msg);
  size_t len = wlen + 1 + mlen + 1;
  char stackbuf[LOG_MSG_MAX + 16];
  char *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
  if (!buf)
    return;
  memcpy(buf, word, wlen);
  buf[wlen] = ' ';
  memcpy(buf + wlen + 1, msg, mlen);
  buf[len - 1] = '\n';
  write_all(fd, buf, len);
  if (buf != stackbuf)
    free(buf);
}

void tpool__log_write(tpool__log_t *l, tpool_log_level_t lv, const char *msg) {
  if (!tpool__log_enabled(l, lv))
    return;
  pthread_mutex_lock(&l->mu);
  if (!l->closed) {
    if (l->cb)
      l->cb(lv, msg, l->cb_arg);
    else if (l->fd >= 0)
      write_line(l->fd, lv, msg);
  }
  pthread_mutex_unlock(&l->mu);
}

void tpool__vlogf(tpool__log_t *l, tpool_log_level_t lv, const char *fmt,
                  va_list ap) {
  if (!tpool__log_enabled(l, lv))
    return;
  char msg[LOG_MSG_MAX];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  tpool__log_write(l, lv, msg);
}

void tpool__logf(tpool__log_t *l, tpool_log_level_t lv, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tpool__vlogf(l, lv, fmt, ap);
  va_end(ap);
}
