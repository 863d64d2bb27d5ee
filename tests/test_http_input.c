/*
 * test_http_input.c — what tpool's HTTP layer does with requests it cannot
 * serve as they are, on a user's own evhttp in this process, with a raw
 * socket client (th_raw_http_on()) that sends bytes libevent's own client
 * would not:
 *   - a path that cannot be decoded (bad percent-encoding, %00, bytes that
 *     are not UTF-8, raw or decoded) gets a JSON 400 that says why, on
 *     tpool's routes, on the TPOOL_HTTP_NOT_FOUND callback and through
 *     tpool_http_handle() from the user's own generic callback; never the
 *     500 "out of memory" that jansson's refusal of such a message used to
 *     cause;
 *   - an error message that quotes the request stays valid JSON when a
 *     character is cut in two;
 *   - a request whose version is not HTTP/1.0 or 1.1 gets a JSON 505 on an
 *     HTTP/1.1 status line, with Connection: close;
 * and the public helpers for a user's own routes: tpool_http_reply_json(),
 * tpool_http_check_method(), tpool_http_path(), tpool_http_check_limits()
 * (version included) and tpool_http_configure().
 */
#include "helpers.h"
#include "http_client.h"
#include "http_internal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define WAIT_S 10.0

typedef struct fixture {
  struct event_base *base;
  tpool_manager_t *m;
  th_log_t log;
  struct evhttp *http;
  tpool_http_t *routes;
  uint16_t port;
} fixture_t;

/* The user's generic callback: tpool's paths first, then a 418. */
static void user_gencb(struct evhttp_request *req, void *arg) {
  fixture_t *f = arg;
  if (!tpool_http_handle(f->routes, req))
    evhttp_send_reply(req, 418, "Teapot", NULL);
}

/* A user's route built on the public helpers: GET or HEAD only, answers
   the decoded path as JSON. */
static void user_echo(struct evhttp_request *req, void *arg) {
  fixture_t *f = arg;
  char *path;
  if (!tpool_http_check_limits(f->routes, req) ||
      !tpool_http_check_method(req, "GET, HEAD") ||
      tpool_http_path(req, &path) != 0)
    return;
  tpool_http_reply_json(req, 200, json_pack("{s:s}", "path", path));
  free(path);
}

/* A user's route whose body could not be built. */
static void user_null(struct evhttp_request *req, void *arg) {
  (void)arg;
  tpool_http_reply_json(req, 200, NULL);
}

static fixture_t *setup(unsigned flags, bool user_gen) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  tpool_options_t *o = malloc(sizeof(*o));
  assert_non_null(o);
  th_options_logged(o, &f->log);
  th_add_pool(o, "w", 2, 2, 64);
  f->base = th_base_new();
  f->m = th_manager(o, f->base);
  free(o);
  f->http = evhttp_new(f->base);
  assert_non_null(f->http);
  tpool_http_options_t ho;
  tpool_http_options_init(&ho);
  assert_int_equal(tpool_http_attach(f->http, f->m, &ho, flags, &f->routes), 0);
  assert_int_equal(evhttp_set_cb(f->http, "/echo", user_echo, f), 0);
  assert_int_equal(evhttp_set_cb(f->http, "/null", user_null, f), 0);
  if (user_gen)
    evhttp_set_gencb(f->http, user_gencb, f);
  f->port = th_evhttp_listen_local(f->http);
  return f;
}

static void teardown(fixture_t *f) {
  tpool_http_detach(f->routes);
  assert_int_equal(tpool_manager_shutdown(f->m, -1), 0);
  tpool_manager_free(f->m);
  evhttp_free(f->http);
  event_base_free(f->base);
  th_log_destroy(&f->log);
  free(f);
}

/* Sends `request` (a C string: NUL-free) as is; returns the answer. */
static th_response_t raw(fixture_t *f, const char *request) {
  th_response_t r;
  assert_int_equal(
      th_raw_http_on(f->base, f->port, request, strlen(request), WAIT_S, &r),
      0);
  if (r.status == 0)
    fail_msg("no answer to %s", request);
  return r;
}

/* Asserts a JSON error with `status` whose message holds `needle`; returns
   nothing, frees r. */
static void expect_error(th_response_t *r, const char *request, int status,
                         const char *needle) {
  if (r->status != status)
    fail_msg("%s: answered %d, want %d: %s", request, r->status, status,
             r->body);
  assert_string_equal(th_response_header(r, "Content-Type"),
                      "application/json");
  json_t *j = th_json(r);
  json_int_t code = 0;
  const char *msg = NULL;
  assert_int_equal(json_unpack(j, "{s:{s:I,s:s}}", "error", "status", &code,
                               "message", &msg),
                   0);
  assert_int_equal(code, status);
  if (!strstr(msg, needle))
    fail_msg("%s: message \"%s\" does not say \"%s\"", request, msg, needle);
  json_decref(j);
  th_response_free(r);
}

/* Paths that cannot be decoded, and what the 400 says. */
static const struct {
  const char *path, *needle;
} bad_paths[] = {
    {"/%zz", "bad percent-encoding at byte 1"},
    {"/health/%", "bad percent-encoding at byte 8"},
    {"/health/thread-pools/%4", "bad percent-encoding"},
    {"/health%00", "malformed path: %00 (a NUL byte) at byte 7"},
    {"/a%00b", "%00 (a NUL byte)"},
    {"/\xff", "not valid UTF-8 at byte 1 of the decoded path"},
    {"/health/thread-pools/%c3", "not valid UTF-8"},
    {"/health/thread-pools/w%ed%a0%80", "not valid UTF-8"}, /* a surrogate */
    {"/metrics%c0%af", "not valid UTF-8"},                  /* overlong */
    {"/dashboard/\xc3(", "not valid UTF-8"},
};

static void check_bad_paths(fixture_t *f) {
  char request[256];
  for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
    snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n",
             bad_paths[i].path);
    th_response_t r = raw(f, request);
    expect_error(&r, request, 400, bad_paths[i].needle);
  }
}

static void test_http_input_bad_paths_answer_400(void **state) {
  (void)state;
  /* tpool's routes and its not-found callback. */
  fixture_t *f = setup(TPOOL_HTTP_CONFIGURE | TPOOL_HTTP_NOT_FOUND, false);
  check_bad_paths(f);
  /* A path that decodes to valid UTF-8 is served as any other. */
  th_response_t r = raw(f, "GET /health/thread-pools/%C3%A9t%C3%A9 HTTP/1.1"
                           "\r\nHost: a\r\n\r\n");
  expect_error(&r, "é", 404, "no pool named \"\xc3\xa9t\xc3\xa9\"");
  r = raw(f, "GET /health/thread-pools/%77 HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 200);
  th_response_free(&r);
  teardown(f);

  /* The user's generic callback, through tpool_http_handle(). */
  f = setup(0, true);
  check_bad_paths(f);
  r = raw(f, "GET /teapot HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 418);
  th_response_free(&r);
  teardown(f);
}

/* A message that quotes the request is cut at 200 bytes of the path: a
   character cut in two is escaped, and the answer stays JSON. */
static void test_http_input_messages_stay_utf8(void **state) {
  (void)state;
  fixture_t *f = setup(TPOOL_HTTP_NOT_FOUND, false);
  char request[1024] = "GET /";
  for (int i = 0; i < 150; i++)
    strcat(request, "%C3%A9"); /* é, two bytes */
  strcat(request, " HTTP/1.1\r\n\r\n");
  th_response_t r = raw(f, request);
  assert_int_equal(r.status, 404);
  json_t *j = th_json(&r);
  const char *msg = json_string_value(
      json_object_get(json_object_get(j, "error"), "message"));
  assert_non_null(msg);
  size_t n = strlen(msg);
  /* "no route for /" and 99 é whole, then the first byte of the 100th. */
  assert_true(n > 4);
  assert_string_equal(msg + n - 4, "\\xc3");
  assert_memory_equal(msg, "no route for /\xc3\xa9", 16);
  json_decref(j);
  th_response_free(&r);

  /* The same for a pool name in tpool's own 404, cut at 64 bytes: "x"
     and 31 é whole, then the first byte of the 32nd. */
  char name[128] = "GET /health/thread-pools/x";
  for (int i = 0; i < 33; i++)
    strcat(name, "\xc3\xa9");
  char req2[256];
  snprintf(req2, sizeof(req2), "%s HTTP/1.1\r\n\r\n", name);
  r = raw(f, req2);
  expect_error(&r, "a long pool name", 404, "\\xc3\"");
  teardown(f);
}

/* Requests of HTTP versions other than 1.0 and 1.1 that libevent lets
   through. */
static const char *const odd_versions[] = {
    "HTTP/1.19", "HTTP/1.2", "HTTP/0.9", "HTTP/1.-1", "HTTP/-1.1",
};

static void check_versions(fixture_t *f, const char *const *paths,
                           size_t npaths) {
  char request[256];
  for (size_t i = 0; i < npaths; i++) {
    for (size_t v = 0; v < sizeof(odd_versions) / sizeof(odd_versions[0]);
         v++) {
      snprintf(request, sizeof(request), "GET %s %s\r\nHost: a\r\n\r\n",
               paths[i], odd_versions[v]);
      th_response_t r = raw(f, request);
      assert_string_equal(r.version, "HTTP/1.1");
      assert_string_equal(th_response_header(&r, "Connection"), "close");
      expect_error(&r, request, 505, "is not supported");
    }
  }
}

static void test_http_input_versions_answer_505(void **state) {
  (void)state;
  static const char *const paths[] = {
      "/health",  "/health/ready", "/health/thread-pools/w",
      "/metrics", "/nowhere",      "/%zz",
      "/echo"};
  fixture_t *f = setup(TPOOL_HTTP_CONFIGURE | TPOOL_HTTP_NOT_FOUND, false);
  check_versions(f, paths, sizeof(paths) / sizeof(paths[0]));
  /* The message names the version asked for. */
  th_response_t r = raw(f, "GET /health HTTP/1.19\r\n\r\n");
  expect_error(&r, "1.19", 505, "HTTP version 1.19 is not supported");
  /* POST with a body, and the token route. */
  r = raw(f, "POST /health/thread-pools/log-status HTTP/1.2\r\n"
             "Content-Length: 2\r\n\r\nab");
  expect_error(&r, "POST", 505, "not supported");
  assert_false(th_log_contains(&f->log, "Current Status"));
  /* 1.0 and 1.1 are served, each on its own status line. */
  r = raw(f, "GET /health HTTP/1.0\r\n\r\n");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.version, "HTTP/1.0");
  th_response_free(&r);
  r = raw(f, "GET /health HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.version, "HTTP/1.1");
  th_response_free(&r);
  teardown(f);

  /* Through the user's generic callback, whatever the path. */
  static const char *const user_paths[] = {"/health", "/teapot"};
  f = setup(0, true);
  check_versions(f, user_paths, 2);
  teardown(f);
}

static void test_http_input_helpers_for_own_routes(void **state) {
  (void)state;
  fixture_t *f = setup(TPOOL_HTTP_CONFIGURE, false);
  th_response_t r = raw(f, "GET /echo?pretty HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 200);
  assert_string_equal(th_response_header(&r, "Content-Type"),
                      "application/json");
  assert_string_equal(th_response_header(&r, "Cache-Control"), "no-store");
  assert_string_equal(r.body, "{\n  \"path\": \"/echo\"\n}\n");
  th_response_free(&r);
  r = raw(f, "GET /echo HTTP/1.1\r\n\r\n");
  assert_string_equal(r.body, "{\"path\":\"/echo\"}\n");
  th_response_free(&r);
  /* libevent matches the decoded path; the route sees it decoded too. */
  r = raw(f, "GET /ech%6f HTTP/1.1\r\n\r\n");
  assert_string_equal(r.body, "{\"path\":\"/echo\"}\n");
  th_response_free(&r);

  /* A method the route does not take: 405 with Allow. */
  r = raw(f, "DELETE /echo HTTP/1.1\r\n\r\n");
  assert_string_equal(th_response_header(&r, "Allow"), "GET, HEAD");
  expect_error(&r, "DELETE", 405,
               "method DELETE not allowed here; allowed: "
               "GET, HEAD");
  /* A body that could not be built: the fixed 500. */
  r = raw(f, "GET /null HTTP/1.1\r\n\r\n");
  assert_string_equal(r.body, "{\"error\":{\"status\":500,\"message\":"
                              "\"out of memory\"}}\n");
  expect_error(&r, "NULL", 500, "out of memory");

  /* tpool_http_configure(): out-of-range options change nothing. */
  tpool_http_options_t ho;
  tpool_http_options_init(&ho);
  strcpy(ho.admin_token, "s3cret");
  ho.max_body_size = TPOOL_HTTP_BODY_MAX + 1;
  assert_int_equal(tpool_http_configure(f->routes, &ho), -EINVAL);
  assert_int_equal(tpool_http_configure(NULL, &ho), -EINVAL);
  assert_int_equal(tpool_http_configure(f->routes, NULL), -EINVAL);
  const char *log_status = "POST /health/thread-pools/log-status HTTP/1.1\r\n"
                           "Content-Length: 0\r\n\r\n";
  r = raw(f, log_status);
  assert_int_equal(r.status, 200);
  th_response_free(&r);
  /* Valid ones apply the token and the limits. */
  ho.max_body_size = 4;
  assert_int_equal(tpool_http_configure(f->routes, &ho), 0);
  r = raw(f, log_status);
  expect_error(&r, "no token", 401, "admin token");
  r = raw(f, "POST /health/thread-pools/log-status HTTP/1.1\r\n"
             "Authorization: Bearer s3cret\r\nContent-Length: 5\r\n\r\n12345");
  expect_error(&r, "body", 413, "max_body_size");
  teardown(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_input_bad_paths_answer_400),
      cmocka_unit_test(test_http_input_messages_stay_utf8),
      cmocka_unit_test(test_http_input_versions_answer_505),
      cmocka_unit_test(test_http_input_helpers_for_own_routes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
