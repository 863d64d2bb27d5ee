/*
 * reply.c — what every route of the HTTP layer, and every route of a
 * program built on it, does with a request: the checks of its version and
 * method, the strict decoding of its path, and the JSON replies, errors
 * included.
 *
 * A reply that quotes the request must stay valid JSON whatever the
 * client sent. jansson refuses to make a string of bytes that are not
 * UTF-8 (json_pack() returns NULL, which the reply would take for a lack
 * of memory), so error messages are mended before they reach it: a byte
 * that does not belong to a valid UTF-8 character is written as the text
 * \xNN. Paths are decoded strictly, so a route never sees one that is not
 * UTF-8 at all.
 *
 * Everything here runs on the loop thread of the request's evhttp.
 */
#include "http_internal.h"

#include <event2/http_struct.h> /* the request's version (major, minor) */

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

/* Copies s into out (size bytes, NUL-terminated), each byte that is not
   part of a valid UTF-8 character written as \xNN; stops before a piece
   that would not fit. */
static void mend_utf8(const char *s, char *out, size_t size) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0, n = strlen(s);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = p[i] < 0x80 ? 1 : tpool__utf8_decode(p + i, n - i, &cp);
    if (len == 0) { /* a stray byte */
      if (o + 4 >= size)
        break;
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[p[i] >> 4];
      out[o++] = hex[p[i] & 0xf];
      i++;
      continue;
    }
    if (o + len >= size)
      break;
    memcpy(out + o, p + i, len);
    o += len;
    i += len;
  }
  out[o] = '\0';
}

static void vreply_error(struct evhttp_request *req, int status,
                         const char *fmt, va_list ap) TPOOL_PRINTF(3, 0);

static void vreply_error(struct evhttp_request *req, int status,
                         const char *fmt, va_list ap) {
  char msg[512], mended[4 * sizeof(msg)];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  mend_utf8(msg, mended, sizeof(mended));
  json_t *body =
      json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", mended);
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

bool tpool__http_version_ok(struct evhttp_request *req) {
  if (req->major == 1 && (req->minor == 0 || req->minor == 1))
    return true;
  char version[32];
  snprintf(version, sizeof(version), "%d.%d", req->major, req->minor);
  /* The answer speaks HTTP/1.1, whatever the request claimed, and ends
     the connection: how such a client frames what follows is unknown. */
  req->major = 1;
  req->minor = 1;
  evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                    "close");
  tpool_http_reply_error(req, 505,
                         "HTTP version %s is not supported; use HTTP/1.1 "
                         "or HTTP/1.0",
                         version);
  return false;
}

/* ---- the path ------------------------------------------------------------ */

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes raw into out (strlen(raw) + 1 bytes). Returns true; or false
   with what is wrong, and where, in why[0..size). */
static bool decode_path(const char *raw, char *out, char *why, size_t size) {
  size_t o = 0;
  for (size_t i = 0; raw[i]; i++) {
    if (raw[i] != '%') {
      out[o++] = raw[i];
      continue;
    }
    int hi = hex_value(raw[i + 1]);
    int lo = hi < 0 ? -1 : hex_value(raw[i + 2]);
    if (lo < 0) {
      snprintf(why, size,
               "bad percent-encoding at byte %zu (a %% starts %%XX, two hex "
               "digits)",
               i);
      return false;
    }
    if (hi == 0 && lo == 0) {
      snprintf(why, size, "%%00 (a NUL byte) at byte %zu", i);
      return false;
    }
    out[o++] = (char)(hi << 4 | lo);
    i += 2;
  }
  out[o] = '\0';
  const unsigned char *p = (const unsigned char *)out;
  for (size_t i = 0; i < o;) {
    uint32_t cp;
    size_t len = p[i] < 0x80 ? 1 : tpool__utf8_decode(p + i, o - i, &cp);
    if (len == 0) {
      snprintf(why, size, "not valid UTF-8 at byte %zu of the decoded path", i);
      return false;
    }
    i += len;
  }
  return true;
}

int tpool_http_path(struct evhttp_request *req, char **out) {
  *out = NULL;
  const char *raw = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  if (!raw || !*raw)
    raw = "/";
  char *path = malloc(strlen(raw) + 1);
  if (!path) {
    tpool_http_reply_error(req, 500, "out of memory");
    return -ENOMEM;
  }
  char why[128];
  if (!decode_path(raw, path, why, sizeof(why))) {
    free(path);
    tpool_http_reply_error(req, 400, "malformed path: %s", why);
    return -EINVAL;
  }
  *out = path;
  return 0;
}
