/*
 * listen.c — tpool-server's listening sockets: one per loop, all on the
 * [http] listen address.
 *
 * With several loops each gets its own socket with SO_REUSEPORT, and the
 * kernel spreads new connections over them by a hash of their addresses:
 * every loop accepts its share without a lock and without waking the
 * others. (One socket watched by every loop would wake them all for each
 * connection and let whichever is quickest take it.) libevent's
 * evhttp_bind_socket() cannot set SO_REUSEPORT, hence the sockets are made
 * here and handed to evhttp_accept_socket_with_handle().
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listening socket on host:port. Returns it, or -errno. */
static int listen_one(const char *host, uint16_t port, bool reuseport) {
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  char service[8];
  snprintf(service, sizeof(service), "%u", (unsigned)port);
  int rc = getaddrinfo(host, service, &hints, &ai);
  if (rc != 0)
    return rc == EAI_SYSTEM ? -errno : -EINVAL;
  int one = 1;
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (reuseport &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
      listen(fd, SOMAXCONN) != 0) {
    rc = -errno;
    if (fd >= 0)
      close(fd);
  } else {
    rc = fd;
  }
  freeaddrinfo(ai);
  return rc;
}

/* Writes fd's address to url as "http://host:port/"; returns the port. */
static uint16_t address_of(int fd, char *url, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      port = ntohs(a->sin6_port);
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      port = ntohs(a->sin_port);
    }
  }
  bool v6 = ss.ss_family == AF_INET6;
  snprintf(url, size, "http://%s%s%s:%u/", v6 ? "[" : "", host, v6 ? "]" : "",
           (unsigned)port);
  return port;
}

int server_listen(const char *host, uint16_t port, unsigned n, int *fds,
                  char *url, size_t url_size) {
  bool group = n > 1;
  if (group) {
    /* Bound once alone first, and let go: a port another process listens
       on fails here as it would with one loop, rather than being shared
       with that process, and port 0 becomes the one the kernel picked. */
    int probe = listen_one(host, port, false);
    if (probe < 0)
      return probe;
    port = address_of(probe, url, url_size);
    close(probe);
  }
  for (unsigned i = 0; i < n; i++) {
    fds[i] = listen_one(host, port, group);
    if (fds[i] < 0) {
      int rc = fds[i];
      while (i-- > 0)
        close(fds[i]);
      return rc;
    }
    if (i == 0)
      port = address_of(fds[0], url, url_size);
  }
  return 0;
}
