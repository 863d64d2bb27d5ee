/*
 * main.c — tpool-server's command line:
 *
 *   tpool-server [-c FILE] [--self-check]     FILE defaults to ./config.ini
 *   tpool-server --check-config FILE | --help | --version
 *
 * It reads the config file (server_config_load(): tpool's sections, the
 * HTTP layer's and the server's own), then hands over to server.c. A bad
 * file is reported as "tpool-server: file:line: [section] key: message"
 * and exits 2 before anything starts.
 */
#include "server.h"

#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --check-config FILE: what start-up would say about the file, and
   nothing else (no pool, no socket). Returns the exit status: 0 or 2. */
static int check_config(const char *path) {
  server_config_t *c = malloc(sizeof(*c));
  if (!c) {
    fprintf(stderr, "tpool-server: out of memory\n");
    return 2;
  }
  server_config_init(c);
  tpool_config_error_t err;
  int rc = server_config_load(c, path, &err) == 0 &&
                   server_config_check(c, &err) == 0
               ? 0
               : 2;
  if (rc == 0)
    printf("%s: OK\n", path);
  else
    fprintf(stderr, "tpool-server: %s\n", err.text);
  free(c);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f, "usage: tpool-server [-c FILE] [--self-check]\n"
             "       tpool-server --check-config FILE | --help | --version\n"
             "  -c, --config FILE  the config file (default ./config.ini)\n"
             "  --self-check       run one task on every pool before serving, "
             "and log the outcome\n"
             "  --check-config FILE  check FILE and exit: 0 if it is valid, "
             "2 with the error\n"
             "  -h, --help         show this help\n"
             "  -V, --version      show the version\n"
             "Signals: SIGHUP reloads the config file; SIGTERM or SIGINT "
             "drain and exit.\n");
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {"self-check", no_argument, NULL, 'S'},
      {"check-config", required_argument, NULL, 'C'},
      {NULL, 0, NULL, 0},
  };
  server_t s;
  memset(&s, 0, sizeof(s));
  s.config_path = "config.ini";
  s.read_fd = -1;
  atomic_init(&s.db_opened, 0);
  atomic_init(&s.announced, 0);
  pthread_mutex_init(&s.http_mu, NULL);
  int c;
  while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      s.config_path = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      printf("tpool-server %s\n", TPOOL_VERSION);
      return 0;
    case 'S':
      s.self_check = true;
      break;
    case 'C':
      return check_config(optarg);
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "tpool-server: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return 2;
  }

  s.cfg = malloc(sizeof(*s.cfg));
  if (!s.cfg)
    return 1;
  server_config_init(s.cfg);
  tpool_config_error_t err;
  if (server_config_load(s.cfg, s.config_path, &err) != 0 ||
      server_config_check(s.cfg, &err) != 0) {
    fprintf(stderr, "tpool-server: %s\n", err.text);
    free(s.cfg);
    return 2;
  }

  /* Before any thread or base exists: libevent must lock, and a write to
     a vanished client must not kill the process. */
  signal(SIGPIPE, SIG_IGN);
  if (evthread_use_pthreads() != 0) {
    fprintf(stderr, "tpool-server: cannot make libevent thread-aware\n");
    free(s.cfg);
    return 1;
  }
  int rc = server_start(&s);
  if (rc == 0) {
    server_serve(&s);
    server_log(&s, TPOOL_LOG_INFO, "Stopped");
  }
  server_stop(&s);
  free(s.cfg);
  pthread_mutex_destroy(&s.http_mu);
  if (s.bad_log)
    return 2; /* the config's log file: a config error */
  return rc == 0 ? 0 : 1;
}
