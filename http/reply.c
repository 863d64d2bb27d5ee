/*
 * reply.c — what every route of the HTTP layer, and every route of a
 * program built on it, does with a request: the check of its method, the
 * decoding of its path, and the JSON replies, errors included.
 *
 * Everything here runs on the loop thread of the request's evhttp.
 */
#include "http_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- replies ------------------------------------------------------------ */

static int add_to_evbuffer(const char *buf, size_t size, void *data) {
  return evbuffer_add(data, buf, size);
}

/* Adds the JSON headers and sends the request's output buffer as the body.
   The body goes straight into that buffer, so no reply needs an evbuffer
   of its own. */
static void send_json(struct evhttp_request *req, int status) {
  struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", "application/json");
  evhttp_add_header(headers, "Cache-Control", "no-store");
  /* libevent 2.1 knows no phrase for 429 (RFC 6585). */
  evhttp_send_reply(req, status, status == 429 ? "Too Many Requests" : NULL,
                    NULL);
}

/* Out of memory: a fixed body still tells the client what happened. */
static void send_oom(struct evhttp_request *req) {
  static const char oom[] =
      "{\"error\":{\"status\":500,\"message\":\"out of memory\"}}\n";
  struct evbuffer *out = evhttp_request_get_output_buffer(req);
  evbuffer_drain(out, evbuffer_get_length(out));
  if (evbuffer_add_reference(out, oom, sizeof(oom) - 1, NULL, NULL) != 0) {
    evhttp_send_error(req, 500, NULL);
    return;
  }
  send_json(req, 500);
}

bool tpool__http_wants_pretty(struct evhttp_request *req) {
  /* ?pretty indents the body for people reading it in a terminal. */
  const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
  return query && strstr(query, "pretty");
}

void tpool_http_reply_json(struct evhttp_request *req, int status,
                           struct json_t *body) {
  struct evbuffer *out = evhttp_request_get_output_buffer(req);
  size_t flags = JSON_REAL_PRECISION(9) | JSON_ENSURE_ASCII;
  flags |= tpool__http_wants_pretty(req) ? JSON_INDENT(2) : JSON_COMPACT;
  bool ok = body &&
            json_dump_callback(body, add_to_evbuffer, out, flags) == 0 &&
            evbuffer_add(out, "\n", 1) == 0;
  json_decref(body);
  if (ok)
    send_json(req, status);
  else
    send_oom(req);
}

static void free_text(const void *data, size_t len, void *arg) {
  (void)len;
  (void)arg;
  free((void *)data);
}

void tpool__http_reply_json_out(struct evhttp_request *req, int status,
                                tpool__json_out_t *w) {
  char *text;
  size_t len;
  int rc = tpool__json_out_take(w, "\n", &text, &len);
  if (rc == -ENOMEM) {
    send_oom(req);
    return;
  }
  if (rc != 0) { /* a builder wrote something that is not JSON: a bug */
    tpool_http_reply_error(req, 500, "cannot write the body: %s",
                           tpool_strerror(rc));
    return;
  }
  /* The buffer becomes the body as it is; libevent frees it once sent. */
  if (evbuffer_add_reference(evhttp_request_get_output_buffer(req), text, len,
                             free_text, NULL) != 0) {
    free(text);
    send_oom(req);
    return;
  }
  send_json(req, status);
}

static void vreply_error(struct evhttp_request *req, int status,
                         const char *fmt, va_list ap) TPOOL_PRINTF(3, 0);

static void vreply_error(struct evhttp_request *req, int status,
                         const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  json_t *body =
      json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", msg);
  tpool_http_reply_json(req, status, body);
}

void tpool_http_reply_error(struct evhttp_request *req, int status,
                            const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreply_error(req, status, fmt, ap);
  va_end(ap);
}

/* ---- the request line --------------------------------------------------- */

const char *tpool__http_method_name(struct evhttp_request *req) {
  switch (evhttp_request_get_command(req)) {
  case EVHTTP_REQ_GET:
    return "GET";
  case EVHTTP_REQ_POST:
    return "POST";
  case EVHTTP_REQ_HEAD:
    return "HEAD";
  case EVHTTP_REQ_PUT:
    return "PUT";
  case EVHTTP_REQ_DELETE:
    return "DELETE";
  case EVHTTP_REQ_OPTIONS:
    return "OPTIONS";
  case EVHTTP_REQ_TRACE:
    return "TRACE";
  case EVHTTP_REQ_CONNECT:
    return "CONNECT";
  case EVHTTP_REQ_PATCH:
    return "PATCH";
  }
  return "?";
}

bool tpool_http_check_method(struct evhttp_request *req, const char *allow) {
  const char *method = tpool__http_method_name(req);
  size_t mlen = strlen(method);
  for (const char *p = allow ? allow : ""; *p;) {
    p += strspn(p, ", \t");
    size_t n = strcspn(p, ", \t");
    if (n == mlen && memcmp(p, method, n) == 0)
      return true;
    p += n;
  }
  evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                    allow ? allow : "");
  tpool_http_reply_error(req, 405, "method %s not allowed here; allowed: %s",
                         method, allow ? allow : "none");
  return false;
}

/* ---- the path ------------------------------------------------------------ */

int tpool_http_path(struct evhttp_request *req, char **out) {
  *out = NULL;
  const char *raw = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  if (!raw || !*raw)
    raw = "/";
  size_t len = 0;
  char *path = evhttp_uridecode(raw, 0, &len);
  if (path && strlen(path) != len) { /* a %00 inside */
    free(path);
    tpool_http_reply_error(req, 400, "malformed path");
    return -EINVAL;
  }
  if (!path) {
    tpool_http_reply_error(req, 500, "out of memory");
    return -ENOMEM;
  }
  *out = path;
  return 0;
}
