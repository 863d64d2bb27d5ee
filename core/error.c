/*
 * error.c — descriptions and names of the error codes tpool returns.
 *
 * One table, TPOOL_ERRNO_MAP in tpool.h, drives both functions so a code
 * cannot have a name without a description. Codes tpool does not list (a
 * work function's own -EIO, say) fall back to the C library's wording.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

const char *tpool_strerror(int err) {
  if (err == 0)
    return "success";
  if (err > 0)
    err = -err;
  switch (-err) {
#define X(code, text)                                                          \
  case code:                                                                   \
    return text;
    TPOOL_ERRNO_MAP(X)
#undef X
  default:
    break;
  }
  /* strerrordesc_np (glibc 2.32+) returns a static string and, unlike
     strerror, is safe from any thread. */
  const char *s = strerrordesc_np(-err);
  return s ? s : "unknown error";
}

const char *tpool_err_name(int err) {
  if (err == 0)
    return "OK";
  if (err > 0)
    err = -err;
  switch (-err) {
#define X(code, text)                                                          \
  case code:                                                                   \
    return #code;
    TPOOL_ERRNO_MAP(X)
#undef X
  default:
    return "UNKNOWN";
  }
}

const char *tpool_status_word(int status) {
  switch (status) {
  case 0:
    return "ok";
  case -ECANCELED:
    return "cancelled";
  case -ETIMEDOUT:
    return "expired";
  case -TPOOL_ECIRCUIT:
    return "refused";
  default:
    return "failed";
  }
}
