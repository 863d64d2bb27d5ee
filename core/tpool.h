/*
 * tpool.h — the public API of tpool, a manager of named worker-thread pools
 * for libevent servers.
 *
 * A manager owns several pools ("io", "cpu", "inference", "embedding", "db"
 * and any the user names), each with its own threads, bounded queue and
 * limits. The loop thread offloads a blocking call with tpool_submit(); the
 * work function runs on a worker of that pool, and the done callback comes
 * back on the loop thread of the event_base the task was submitted for.
 *
 * Conventions, for this header and tpool_http.h:
 *  - Functions return 0 or a negative errno code; constructors take an
 *    out-parameter. tpool_strerror() describes every code.
 *  - Every function says what it returns, who owns what it hands out
 *    ("caller frees with ...", "borrowed, valid until ...") and from which
 *    thread it may be called ("Thread:").
 *  - A call that takes a callback and fails never calls that callback.
 *  - "Thread: any" may be called from any thread; "Thread: loop" only from
 *    the loop thread of an attached base (or before any loop runs);
 *    "Thread: worker" only from inside a work function.
 *  - Strings given to tpool are copied unless stated otherwise.
 *
 * Lifecycle: tpool_manager_new() → tpool_manager_attach() →
 * tpool_manager_start() → ... → tpool_manager_shutdown() →
 * tpool_manager_free(), then event_base_free(). libevent must be made
 * thread-aware with evthread_use_pthreads() before the base is created.
 */
#ifndef TPOOL_H
#define TPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

#if defined(__GNUC__)
#define TPOOL_API __attribute__((visibility("default")))
#define TPOOL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TPOOL_API
#define TPOOL_PRINTF(f, a)
#endif

#define TPOOL_VERSION "0.1.0"

/* Sizes of the fixed buffers in the structs below, terminating NUL included. */
#define TPOOL_NAME_MAX 32        /* pool name: [a-z0-9_-], 1..31 chars */
#define TPOOL_TASK_NAME_MAX 48   /* task name; longer names are truncated */
#define TPOOL_THREAD_NAME_MAX 16 /* Linux limit for thread names */
#define TPOOL_PATH_MAX 256
#define TPOOL_POOLS_MAX 64
#define TPOOL_BASES_MAX 64 /* event_bases one manager can attach */
#define TPOOL_WORKERS_MAX 4096
#define TPOOL_CPUS_MAX 1024
#define TPOOL_BREAKER_WINDOW_MAX 1024

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/*
 * The codes tpool itself returns, as negative errno values. Work functions
 * may return any other negative code; it reaches their done callback as is.
 */
#define TPOOL_ERRNO_MAP(X)                                                     \
  X(EINVAL, "invalid argument")                                                \
  X(ENOMEM, "out of memory")                                                   \
  X(EAGAIN, "queue full, or no worker thread could be started")                \
  X(ENOENT, "no such pool, task or file")                                      \
  X(EEXIST, "already exists")                                                  \
  X(ECANCELED, "task cancelled before it started")                             \
  X(ETIMEDOUT, "deadline passed")                                              \
  X(ESHUTDOWN, "the manager is shutting down")                                 \
  X(EBUSY, "the task is already running")                                      \
  X(EALREADY, "already started")                                               \
  X(ENOSPC, "limit reached")                                                   \
  X(EDEADLK, "called from one of the manager's own workers")                   \
  X(EIO, "input/output error")                                                 \
  X(EACCES, "permission denied")                                               \
  X(TPOOL_ERETRY, "the work asked to be retried")                              \
  X(TPOOL_ECIRCUIT, "circuit breaker open: the pool refuses work for now")

/*
 * tpool's own codes, beyond the range of errno values, used negated like
 * the others:
 * -TPOOL_ERETRY   returned by a work function: "run me again later". The
 *                 task is queued again after a backoff, if its pool (or
 *                 its opts) allow another attempt; when none is left, it
 *                 ends with this status (counted failed).
 * -TPOOL_ECIRCUIT a submit refused because the pool's circuit breaker is
 *                 open (or half-open with its trial tasks all out).
 */
#define TPOOL_ERETRY 4201
#define TPOOL_ECIRCUIT 4202

/*
 * Describes an error code (negative or positive errno value): tpool's own
 * wording for the codes above, the C library's for other errno values,
 * "success" for 0 and "unknown error" otherwise.
 * Returns: a static string; never NULL.
 * Thread: any.
 */
TPOOL_API const char *tpool_strerror(int err);

/*
 * The symbolic name of an error code: "EAGAIN" for -EAGAIN, "OK" for 0,
 * "UNKNOWN" for codes tpool does not list.
 * Returns: a static string; never NULL.
 * Thread: any.
 */
TPOOL_API const char *tpool_err_name(int err);

/*
 * How a task ended, in one word, as tpool's routes report it: "ok" (0),
 * "cancelled" (-ECANCELED), "expired" (-ETIMEDOUT), "refused"
 * (-TPOOL_ECIRCUIT) or "failed" (any other code).
 * Returns: a static string; never NULL.
 * Thread: any.
 */
TPOOL_API const char *tpool_status_word(int status);

/* ------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------ */

typedef enum tpool_log_level {
  TPOOL_LOG_DEBUG = 0,
  TPOOL_LOG_INFO = 1,
  TPOOL_LOG_WARN = 2,
  TPOOL_LOG_ERROR = 3
} tpool_log_level_t;

/*
 * A log sink. `msg` is one complete message without the level word and
 * without a trailing newline; it may span several lines (the status table).
 * The built-in sinks write "LEVEL msg\n" with a single write(2), so lines
 * from several threads never interleave.
 * Called from any tpool thread, never two calls at once for one manager,
 * never under a pool lock; it must not call back into tpool. `msg` is
 * borrowed for the duration of the call.
 */
typedef void (*tpool_log_cb)(tpool_log_level_t level, const char *msg,
                             void *arg);

/*
 * The word for a level: "DEBUG", "INFO", "WARN" or "ERROR".
 * Returns: a static string. Thread: any.
 */
TPOOL_API const char *tpool_log_level_name(tpool_log_level_t level);

/* ------------------------------------------------------------------------
 * Options
 *
 * Plain structs in caller storage: nothing to free. Fill them with
 * tpool_options_init() (the five built-in pools at their default sizes),
 * then change fields in code or overlay a file with tpool_config_load().
 * ------------------------------------------------------------------------ */

/* min_workers value meaning "the same as max_workers": a fixed-size pool. */
#define TPOOL_MIN_EQUALS_MAX ((unsigned)-1)

typedef struct tpool_pool_options {
  char name[TPOOL_NAME_MAX];
  bool enabled;          /* false: the pool is not created */
  unsigned max_workers;  /* 1..TPOOL_WORKERS_MAX ("workers" in config) */
  unsigned min_workers;  /* 0..max_workers, or TPOOL_MIN_EQUALS_MAX */
  size_t queue_limit;    /* tasks waiting; a full queue fails submits */
  double idle_timeout_s; /* an idle worker above the minimum retires */
  size_t stack_size;     /* bytes per worker stack */
  double soft_timeout_s; /* a task running longer is "stuck"; 0 = off */
  /* An idle worker polls for work this long before it sleeps, so a task
     submitted meanwhile starts without a thread wakeup; and a loop thread
     that submits to the pool polls for completions this long after each
     submit instead of sleeping in epoll_wait, so the completion needs no
     wakeup either. Lower latency, for the CPU of one spinning worker per
     pool and of the loop while it polls (it keeps serving its other
     events meanwhile). 0..0.01 ("spin"); 0 = off. */
  double spin_s;
  char
      thread_name[TPOOL_THREAD_NAME_MAX]; /* prefix; "": "tpool-" + 5 of name */
  bool has_affinity;
  uint64_t cpu_affinity[TPOOL_CPUS_MAX / 64]; /* bit n = CPU n */
  int line; /* config line of the [pool.NAME] section; 0 if set in code */
  /* Retries: a work function that returns -TPOOL_ERETRY is queued again
     after a backoff, up to retry_attempts attempts in all (1 = never
     again). The n-th retry waits retry_backoff_s * 2^(n-1), at most
     retry_backoff_max_s, then a random part of it is taken off (between
     none and half: "jitter", so tasks that failed together do not come
     back together). The wait is a timer on the task's loop (a task with
     no done callback uses the first attached loop; with none attached it
     cannot be retried); no worker sleeps through it. A task coming back
     re-enters its queue even when it is full, but is refused by an open
     circuit breaker (it then ends with -TPOOL_ECIRCUIT); its start
     timeout counts again from its return. tpool_task_opts_t may set
     attempts and the first backoff per task. */
  unsigned retry_attempts;    /* 1..100 */
  double retry_backoff_s;     /* 0.001..3600 */
  double retry_backoff_max_s; /* 0.001..3600; below retry_backoff_s: that */
  /* Circuit breaker, off while breaker_window is 0. When at least
     breaker_threshold of the last breaker_window tasks that ran failed
     (returned non-zero, retry requests included), the breaker opens: the
     pool refuses submits with -TPOOL_ECIRCUIT for breaker_cooldown_s.
     Then it is half-open: breaker_trials submits are let through as
     trials; when they all succeed it closes (the window starts afresh),
     and one failure opens it again. tpool_pool_reset_breaker() closes it
     by hand. */
  unsigned breaker_window;   /* 0 (off) or 1..TPOOL_BREAKER_WINDOW_MAX */
  double breaker_threshold;  /* failure ratio, 0.01..1 */
  double breaker_cooldown_s; /* 0.001..86400 */
  unsigned breaker_trials;   /* 1..1000 */
  /* Finished tasks the pool remembers for tpool_manager_task(), newest
     first; 0 = none. */
  size_t task_history; /* 0..1000000 */
  /* Per-thread resources (set in code; a config file leaves them alone).
     thread_start runs on each worker thread as it starts, before its first
     task: it returns 0 and may set *ctx (a connection, a model, a
     scratch buffer), which that thread's work functions get from
     tpool_thread_context(); or it returns a negative code, and the thread
     ends at once, counted and logged as a failed start (the pool serves
     with the threads it has and retries as for any failed start).
     thread_stop runs on the thread as it leaves (retired idle, resized
     away or stopped), with its ctx, after its last task. Both may be NULL;
     `thread_arg` is passed to both. Neither may call into tpool.
     A start that fails only after its thread was created, so submits are
     accepted meanwhile (not refused as when no thread can be created) and
     wait for a later start; a hook that always fails leaves them queued
     until shutdown cancels them, while /health reports "no_workers".
     A worker still running a task past a shutdown's deadline runs
     thread_stop when that task returns, which may be after
     tpool_manager_free(): keep `thread_arg` valid until then. */
  int (*thread_start)(const char *pool, void **ctx, void *arg);
  void (*thread_stop)(const char *pool, void *ctx, void *arg);
  void *thread_arg;
} tpool_pool_options_t;

/* One line of [routes]: "pattern = pool". The pattern is a shell glob
   (fnmatch(3): `*`, `?`, `[...]`) over the whole task name, so
   "reports.*" matches "reports.daily" and "*" matches every name. In a
   config file a pattern cannot begin with `[` (that line would be a
   section header) nor contain `=`, `:` or `;`; set such routes in code. */
#define TPOOL_ROUTES_MAX 64
typedef struct tpool_route {
  char pattern[TPOOL_TASK_NAME_MAX];
  char pool[TPOOL_NAME_MAX];
  int line; /* where it was set in the config file; 0 if set in code */
} tpool_route_t;

typedef struct tpool_options {
  bool verbose;             /* per-task log lines and the periodic table */
  double status_interval_s; /* period of the status table when verbose */
  tpool_log_level_t log_level;
  char log_path[TPOOL_PATH_MAX]; /* "stderr", "stdout" or a file to append */
  tpool_log_cb log_cb; /* if set, replaces log_path; see tpool_log_cb */
  void *log_arg;
  unsigned completion_batch; /* done callbacks per loop round, 1..65536 */
  double shutdown_timeout_s; /* how long a server's drain may take */
  char config_path[TPOOL_PATH_MAX]; /* file the options came from, or "" */
  size_t npools;
  tpool_pool_options_t pools[TPOOL_POOLS_MAX];
  /* [routes]: task-name patterns to pools, in order; the first pattern
     that matches a name picks its pool (tpool_manager_route()). */
  size_t nroutes;
  tpool_route_t routes[TPOOL_ROUTES_MAX];
} tpool_options_t;

/*
 * Fills *o with the defaults: verbose off, status table every 10 s, level
 * info to stderr, the five built-in pools io 50, cpu 30, inference 20,
 * embedding 15, db 25 workers (fixed size, queue limit 65536, 512 KiB
 * stacks, soft timeout 60 s), no routes and a 30 s shutdown timeout.
 * Thread: any.
 */
TPOOL_API void tpool_options_init(tpool_options_t *o);

/*
 * Fills *po with the defaults of a pool called `name` (a built-in pool gets
 * its preset size; any other name gets 4 workers). `name` is copied,
 * truncated to TPOOL_NAME_MAX - 1 bytes.
 * Thread: any.
 */
TPOOL_API void tpool_pool_options_init(tpool_pool_options_t *po,
                                       const char *name);

/*
 * Finds the pool called `name` in *o.
 * Returns: a pointer into o->pools (borrowed, valid while *o is), or NULL.
 * Thread: any.
 */
TPOOL_API tpool_pool_options_t *tpool_options_pool(tpool_options_t *o,
                                                   const char *name);

/*
 * Appends a pool called `name` with the defaults of
 * tpool_pool_options_init(), and stores a pointer to it in *out
 * (borrowed, valid while *o is).
 * Returns: 0; -EINVAL for a name that is empty, too long or not made of
 * [a-z0-9_-]; -EEXIST if o already has that pool; -ENOSPC past
 * TPOOL_POOLS_MAX pools.
 * Thread: any.
 */
TPOOL_API int tpool_options_add_pool(tpool_options_t *o, const char *name,
                                     tpool_pool_options_t **out);

/* ------------------------------------------------------------------------
 * Configuration files (INI, read with libinih)
 *
 * tpool's own sections are [general], [pool.NAME] and [routes]
 * (docs/server.md, "Configuration reference", lists every key). Syntax:
 * "[section]" headers and "key = value" lines; a line starting with ';' or '#'
 * is a comment, and so is what follows a blank and ';' after a value. Lines are
 * at most 198 bytes, files at most 1 MiB. Unknown sections or keys, a section
 * or key given twice and values out of range are errors.
 *
 * The layers built on tpool keep their settings in the same file, in
 * sections of their own, read through the same loader with
 * tpool_config_load_sections(): same syntax, same limits, errors in the
 * same words ("file:line: [section] key: message"), and all or nothing.
 * ------------------------------------------------------------------------ */

typedef struct tpool_config_error {
  char file[TPOOL_PATH_MAX]; /* the file (or name) that was read */
  int line;                  /* 1-based; 0 when no line is involved */
  char key[96];              /* "[pool.cpu] workers", or "" */
  char message[256]; /* what is wrong, e.g. expected 1..4096, got "abc" */
  char text[720];    /* file:line: key: message, as one line */
} tpool_config_error_t;

/*
 * Reads the INI file at `path` and overlays it on *o (which the caller has
 * filled, usually with tpool_options_init()). On success o->config_path is
 * set to `path`. On failure *o is left exactly as it was and *err (if not
 * NULL) holds the first error, naming file, line and key.
 * Same as tpool_config_load_sections() with no sections of other layers:
 * a section that is not tpool's is an error.
 * Returns: 0; -ENOENT missing file; -EACCES or -EIO unreadable file;
 * -EINVAL bad content; -ENOMEM.
 * Thread: any.
 */
TPOOL_API int tpool_config_load(tpool_options_t *o, const char *path,
                                tpool_config_error_t *err);

/*
 * Like tpool_config_load() for `len` bytes of INI text in memory; `name` is
 * used as the file name in errors (NULL: "config").
 * Returns: 0; -EINVAL bad content; -ENOMEM.
 * Thread: any.
 */
TPOOL_API int tpool_config_parse(tpool_options_t *o, const char *text,
                                 size_t len, const char *name,
                                 tpool_config_error_t *err);

/*
 * Checks the relations between fields that a single key cannot (min above
 * max, no pool enabled, a value out of range set in code). Errors name the
 * config file and the line of the pool's section when o came from a file.
 * Returns: 0, or -EINVAL with *err filled (if not NULL).
 * Thread: any.
 */
TPOOL_API int tpool_options_check(const tpool_options_t *o,
                                  tpool_config_error_t *err);

/* ---- Sections of other layers ------------------------------------------- */

/*
 * How a key's value is written in the file, and the type of the field it
 * fills (at tpool_config_key_t.offset in the section's data). `min` and
 * `max` bound the value as each type says; a value outside them is an
 * error such as "expected 1..64, got \"65\"".
 */
typedef enum tpool_config_type {
  /* bool. true, yes, on, 1 / false, no, off, 0, in any case. min, max:
     unused. */
  TPOOL_CONFIG_BOOL,
  /* unsigned. Decimal digits only (no sign, no blanks), min..max; max at
     most UINT_MAX. */
  TPOOL_CONFIG_UINT,
  /* size_t. Decimal digits only, min..max. */
  TPOOL_CONFIG_COUNT,
  /* size_t, bytes. Digits with an optional K, M or G suffix (powers of
     1024, either case), min..max. */
  TPOOL_CONFIG_SIZE,
  /* double, seconds. DIGITS or DIGITS.DIGITS (no sign, no exponent, a '.'
     whatever the locale), min..max. */
  TPOOL_CONFIG_SECONDS,
  /* double. Written as SECONDS; described as a fraction. */
  TPOOL_CONFIG_RATIO,
  /* char[max + 1], a file path: min..max bytes, stored NUL-terminated and
     zero-padded. Never quoted back in a message. */
  TPOOL_CONFIG_PATH,
  /* char[max + 1], a secret: min..max printable ASCII characters without
     blanks, stored NUL-terminated and zero-padded. Never quoted back in a
     message. */
  TPOOL_CONFIG_TOKEN,
  /* tpool_config_address_t. HOST:PORT with a numeric IPv4 address, or
     [IPV6]:PORT; the port in min..max (max at most 65535). */
  TPOOL_CONFIG_ADDRESS,
  /* char[max + 1], a name or a URL: min..max printable ASCII characters
     without blanks, stored NUL-terminated and zero-padded, and accepted
     by the key's `valid` function when it has one. Quoted back in a
     message. */
  TPOOL_CONFIG_STRING
} tpool_config_type_t;

/* The field of a TPOOL_CONFIG_ADDRESS key. */
#define TPOOL_CONFIG_HOST_MAX 64
typedef struct tpool_config_address {
  char host[TPOOL_CONFIG_HOST_MAX]; /* numeric, without brackets; zero-padded */
  uint16_t port;
} tpool_config_address_t;

/* One key of a section: "name = value" fills the field at `offset` bytes
   into the section's data, of the type `type` says. */
typedef struct tpool_config_key {
  const char *name; /* as written in the file; case matters */
  tpool_config_type_t type;
  double min, max; /* bounds, as the type describes */
  size_t offset;   /* of the field in the section's data (offsetof()) */
  /* TPOOL_CONFIG_STRING only, optional (NULL: any string the type takes):
     `valid` says whether a value (NUL-terminated, already within the
     type's rules) is acceptable, and `expect` says what is, for the
     message ("expected redis://HOST:PORT[/DB]"). Both or neither. */
  bool (*valid)(const char *value);
  const char *expect;
} tpool_config_key_t;

/*
 * A section of another layer: "[name]" and its keys, which fill fields of
 * the caller's struct at `data` (`size` bytes). Several sections may have
 * the same name, so that two layers share one section of the file (the
 * HTTP layer and a server both read [http]): a key then belongs to the
 * first of them that lists it. Every field a key names must lie inside
 * data[0..size), aligned for its type.
 * A name is 1..63 of A-Z a-z 0-9 _ . -, and not one of tpool's own:
 * "general", "routes" or "pool." followed by anything.
 */
typedef struct tpool_config_section {
  const char *name;
  const tpool_config_key_t *keys;
  size_t nkeys;
  void *data;  /* the caller's; written only on success */
  size_t size; /* bytes at data (a family: of one element) */
  /* A family of sections, when `name` ends in ".*" ("schedule.*"): it
     matches every [schedule.X], X being 1..TPOOL_NAME_MAX - 1 of a-z 0-9
     _ - and . (and X unique in the file). `data` then holds `max` elements
     of `size` bytes: the i-th such section of the file fills element i,
     which starts as a copy of `defaults` (`size` bytes), gets X,
     NUL-terminated, in the char[TPOOL_NAME_MAX] at `name_offset` and the
     line of its header in the int at `line_offset`; *count gets how many
     sections the file had (elements past it are left alone). More than
     `max` sections is an error. A family shares its name with no other
     section. All zero (NULL) for a section that is not a family. */
  size_t max;
  size_t *count;
  const void *defaults;
  size_t name_offset;
  size_t line_offset;
} tpool_config_section_t;

/*
 * Reads the INI file at `path` as tpool_config_load() does, where the
 * `n` sections of sections[] are known too and fill their data. Parsing
 * fills copies: on success *o and every field the file sets are updated
 * together, after tpool_options_check() and a check of every section's
 * fields as tpool_config_check_section() does them (a value set in code
 * that is out of range names the file, without a line); on failure
 * neither *o nor any section's data changes, and *err holds the first
 * error by line. An unknown section's message lists tpool's sections and
 * these. `sections` is read during the call only.
 * Returns: 0; -ENOENT missing file; -EACCES or -EIO unreadable file;
 * -EINVAL bad content, or a section that breaks the rules above (*err
 * says which); -ENOMEM.
 * Thread: any (the caller keeps o and every section's data to itself
 * meanwhile).
 */
TPOOL_API int tpool_config_load_sections(tpool_options_t *o, const char *path,
                                         const tpool_config_section_t *sections,
                                         size_t n, tpool_config_error_t *err);

/*
 * Like tpool_config_load_sections() for `len` bytes of INI text in memory;
 * `name` is used as the file name in errors (NULL: "config").
 * Returns: 0; -EINVAL bad content or sections; -ENOMEM.
 * Thread: any (as tpool_config_load_sections()).
 */
TPOOL_API int
tpool_config_parse_sections(tpool_options_t *o, const char *text, size_t len,
                            const char *name,
                            const tpool_config_section_t *sections, size_t n,
                            tpool_config_error_t *err);

/*
 * Checks the fields of section *s as they are (set in code) against the
 * bounds of its keys, with the loader's words: "FILE: [name] key:
 * expected 1..64, got \"0\"". `file` names where they came from (NULL:
 * "options"). The first key that fails is reported.
 * Returns: 0; -EINVAL with *err filled (if not NULL): a field out of
 * range, or a section that breaks the rules of tpool_config_section_t.
 * Thread: any.
 */
TPOOL_API int tpool_config_check_section(const tpool_config_section_t *s,
                                         const char *file,
                                         tpool_config_error_t *err);

/* ------------------------------------------------------------------------
 * Tasks
 * ------------------------------------------------------------------------ */

/*
 * Runs on a worker thread. Returns 0 for success or a negative code, which
 * is counted as a failure and passed to the done callback as is.
 * It must not touch the event loop.
 */
typedef int (*tpool_work_cb)(void *arg);

/* What a done callback learns about its task. */
typedef struct tpool_task_info {
  int64_t id;
  const char *pool; /* borrowed for the duration of the callback */
  const char *name; /* borrowed for the duration of the callback */
  /* Of the last attempt: from submit (or the retry's return to the
     queue) until a worker took it (or it ended), and in the work. */
  double queue_wait_s;
  double run_s;      /* 0 if it never ran */
  unsigned attempts; /* times the work ran (more than 1 after retries) */
} tpool_task_info_t;

/*
 * Runs on the loop thread of the task's base, exactly once for every
 * accepted task, with the status: 0; the work function's own negative
 * code (-TPOOL_ERETRY when it asked for a retry and no attempt was
 * left); -ECANCELED (cancelled, or shut down before it started, or while
 * waiting out a retry's backoff); or -ETIMEDOUT (its start deadline passed
 * while it was queued). It is the place to release `arg`.
 */
typedef void (*tpool_done_cb)(int status, const tpool_task_info_t *info,
                              void *arg);

typedef struct tpool_task_opts {
  /* The base whose loop runs `done`; NULL = the first attached base. */
  struct event_base *base;
  /* If > 0: a task still queued this many seconds after submit is not
     started; it completes with -ETIMEDOUT. */
  double start_timeout_s;
  /* Attempts in all for a work function that returns -TPOOL_ERETRY, and
     the first backoff; 0 = the pool's retry_attempts, retry_backoff_s. */
  unsigned max_attempts;
  double retry_backoff_s;
  /* If > 0: the task is *scheduled*: it waits this many seconds (at most
     TPOOL_DELAY_MAX_S) before it joins its pool's queue, on a timer of
     its loop (opts->base, or the first attached base: one must be
     attached). It runs no earlier than that; meanwhile it can be
     cancelled (tpool_manager_cancel()), counts in its pool's `scheduled`
     and is looked up as TPOOL_TASK_SCHEDULED. When it comes due it joins
     the queue even if the queue is full (it was accepted once), unless
     the circuit breaker is open then: it ends with -TPOOL_ECIRCUIT.
     Its start timeout counts from then. A shutdown ends scheduled tasks
     with -ECANCELED at once: they never run early. */
  double delay_s;
} tpool_task_opts_t;

/* The longest delay tpool_task_opts_t.delay_s takes: 30 days. */
#define TPOOL_DELAY_MAX_S (30.0 * 86400.0)

/* ------------------------------------------------------------------------
 * Manager and pools
 * ------------------------------------------------------------------------ */

typedef struct tpool_manager tpool_manager_t;
typedef struct tpool_pool tpool_pool_t;

/*
 * Creates a manager with the pools of *o (enabled ones), validated with
 * tpool_options_check(). No thread runs until tpool_manager_start(). *o is
 * copied; the log sink, if set, must stay valid until tpool_manager_free().
 * Returns: 0 and *out (caller frees with tpool_manager_free());
 * -EINVAL invalid options (the reason is logged); -ENOMEM; -EIO if the log
 * file cannot be opened.
 * Thread: any.
 */
TPOOL_API int tpool_manager_new(const tpool_options_t *o,
                                tpool_manager_t **out);

/*
 * tpool_options_init() + tpool_config_load(path) + tpool_manager_new().
 * Returns: 0 and *out (caller frees with tpool_manager_free()); the codes
 * of tpool_config_load() with *err filled; those of tpool_manager_new().
 * Thread: any.
 */
TPOOL_API int tpool_manager_new_from_file(const char *path,
                                          tpool_manager_t **out,
                                          tpool_config_error_t *err);

/*
 * Attaches an event_base: completions of tasks submitted for it run on its
 * loop thread, at most options.completion_batch per loop round. Several
 * bases may be attached, each run by its own thread. The first one attached
 * is the default for submits that name no base.
 * Call before the base's loop runs, or from its loop thread. The base must
 * outlive the manager: call tpool_manager_free() before event_base_free().
 * Returns: 0; -EINVAL if base is NULL, was created before
 * evthread_use_pthreads() (or with EVENT_BASE_FLAG_NOLOCK), or is already
 * attached; -ENOSPC past TPOOL_BASES_MAX bases; -ENOMEM; -EIO if an eventfd
 * cannot be made. Thread: loop (of that base).
 */
TPOOL_API int tpool_manager_attach(tpool_manager_t *m, struct event_base *base);

/*
 * Starts each pool's minimum number of workers and the monitor thread.
 * Tasks submitted before start wait in their queues.
 * Returns: 0; -EALREADY if started; -ESHUTDOWN after shutdown; -EAGAIN if
 * a pool could not start a single worker: then the manager is shut down —
 * tasks already running finish normally, queued ones complete with
 * -ECANCELED — and only tpool_manager_free() remains to be called.
 * Thread: any.
 */
TPOOL_API int tpool_manager_start(tpool_manager_t *m);

/*
 * Stops accepting tasks (submits fail with -ESHUTDOWN) and drains: queued
 * tasks keep running until all are done or `timeout_s` passes (< 0: no
 * limit). At the deadline, tasks that never started complete with
 * -ECANCELED; a task still running is reported in the log and left to its
 * thread (threads cannot be killed); shutdown does not wait for it.
 * It only waits for the workers: the done callbacks of the tasks it
 * drained run on their loops as usual, or in tpool_manager_free() for a
 * loop that no longer runs. It may be called from a done callback or any
 * other thread; calling it again waits again, for what is still running.
 * Returns: 0 when every task has finished and every worker thread has
 * exited; -ETIMEDOUT if workers were still running tasks at the deadline;
 * -EDEADLK from a work function of this manager (it would wait for
 * itself).
 * Thread: any.
 */
TPOOL_API int tpool_manager_shutdown(tpool_manager_t *m, double timeout_s);

/*
 * Frees the manager. If tpool_manager_shutdown() was never called, it
 * shuts down first, with no deadline. Then it runs on the calling thread
 * every done callback still pending, detaches from the bases and releases
 * everything. Tasks still running after an earlier shutdown's deadline are
 * abandoned: their done callbacks never run, and their threads release
 * what they hold when the tasks return. Call it once the loops of the
 * attached bases have stopped, and before event_base_free(), never from a
 * done callback or a work function. NULL is a no-op.
 * Thread: loop (once every loop has stopped).
 */
TPOOL_API void tpool_manager_free(tpool_manager_t *m);

/*
 * Finds a pool by name.
 * Returns: the pool (borrowed, valid until tpool_manager_free()), or NULL.
 * Thread: any.
 */
TPOOL_API tpool_pool_t *tpool_manager_pool(tpool_manager_t *m,
                                           const char *name);

/*
 * The pool's name. Returns: borrowed, valid until tpool_manager_free().
 * Thread: any.
 */
TPOOL_API const char *tpool_pool_name(const tpool_pool_t *pool);

/*
 * Submits a task: `work(arg)` runs on a worker of `pool`, then
 * `done(status, info, arg)` on the loop thread of opts->base (or of the
 * first attached base). `name` (may be NULL) labels the task in logs and
 * stats; it is copied and truncated to TPOOL_TASK_NAME_MAX - 1 bytes.
 * `done` may be NULL when nothing needs to happen on the loop; then no
 * base is needed. `opts` may be NULL.
 * The caller owns `arg` until this returns a task id; after that `done`
 * runs exactly once and is the place to release it. On failure `done` is
 * never called and the caller still owns `arg`.
 * Returns: the task id (> 0); -EAGAIN queue full (or no worker could be
 * started; for a delayed task: as many tasks already scheduled in the pool
 * as its queue limit); -TPOOL_ECIRCUIT the pool's circuit breaker is open
 * (or half-open with its trials out; a delayed task meets the breaker
 * when it comes due instead); -ESHUTDOWN after shutdown; -EINVAL if work
 * is NULL, the base is not attached, no base is attached while done is
 * set or a delay is asked for, or delay_s is not a number in
 * 0..TPOOL_DELAY_MAX_S; -ENOMEM. Every call fails at once. The pool counts a
 * task it refuses
 * (-EAGAIN, -TPOOL_ECIRCUIT, -ESHUTDOWN) as submitted and rejected; calls that
 * never reach it
 * (-EINVAL, -ENOMEM) are not counted.
 * Thread: any.
 */
TPOOL_API int64_t tpool_submit(tpool_pool_t *pool, const char *name,
                               tpool_work_cb work, tpool_done_cb done,
                               void *arg, const tpool_task_opts_t *opts);

/*
 * tpool_submit() to the pool called `pool`.
 * Returns: as tpool_submit(); -ENOENT for an unknown pool.
 * Thread: any.
 */
TPOOL_API int64_t tpool_manager_submit(tpool_manager_t *m, const char *pool,
                                       const char *name, tpool_work_cb work,
                                       tpool_done_cb done, void *arg,
                                       const tpool_task_opts_t *opts);

/*
 * The pool the [routes] give a task of this name: the pool of the first
 * pattern that matches the whole name (fnmatch(3)), or NULL when none does.
 * Returns: borrowed, valid until tpool_manager_free().
 * Thread: any.
 */
TPOOL_API tpool_pool_t *tpool_manager_route(tpool_manager_t *m,
                                            const char *name);

/*
 * tpool_submit() to the pool tpool_manager_route() picks for `name`
 * (routed by the name as kept: cut to TPOOL_TASK_NAME_MAX - 1 bytes).
 * Returns: as tpool_submit(); -ENOENT if no route matches; -EINVAL if
 * `name` is NULL or empty.
 * Thread: any.
 */
TPOOL_API int64_t tpool_manager_submit_routed(tpool_manager_t *m,
                                              const char *name,
                                              tpool_work_cb work,
                                              tpool_done_cb done, void *arg,
                                              const tpool_task_opts_t *opts);

/*
 * The context the pool's thread_start hook gave the calling worker thread,
 * or NULL (no hook, or not a worker thread). For a work function: a
 * resource opened once per worker, not once per task.
 * Thread: a worker (any other thread gets NULL).
 */
TPOOL_API void *tpool_thread_context(void);

/*
 * Says why the calling work function is failing: if the attempt it is
 * running ends in error (it returns non-zero), `message` becomes its
 * pool's last error message (tpool_last_error_t) instead of
 * tpool_strerror(status). Copied, cut to TPOOL_ERROR_MESSAGE_MAX - 1
 * bytes; NULL clears it. A worker forgets it before its next attempt.
 * Thread: worker (called elsewhere it has no effect on any pool).
 */
TPOOL_API void tpool_task_set_error(const char *message);

/* ------------------------------------------------------------------------
 * Batches: a set of tasks with bounded concurrency and one callback
 * ------------------------------------------------------------------------ */

typedef struct tpool_batch tpool_batch_t;

/*
 * Runs on the batch's loop thread once the batch is closed and every task
 * added to it has ended: statuses[i] is the status of the i-th task added
 * (as a done callback would get it: 0, the work's own code, -ECANCELED,
 * -ETIMEDOUT), or the error its submit was refused with (-EAGAIN: the
 * pool's queue was full; -ESHUTDOWN). `statuses` is borrowed for the call;
 * the batch is freed when the callback returns.
 */
typedef void (*tpool_batch_done_cb)(const int *statuses, size_t n, void *arg);

/*
 * Starts an empty batch of tasks for `pool`, at most `max_in_flight` of
 * them queued or running at once (like asyncio.gather over a semaphore):
 * the rest wait in the batch and are submitted as earlier ones end.
 * `opts` (may be NULL) gives the loop (`base`) and a start deadline for
 * every task. The batch belongs to that loop until `done` has run.
 * Returns: 0 and *out; -EINVAL (NULL pool, done or out, max_in_flight 0,
 * or no such base attached); -ENOMEM.
 * Thread: loop of the batch's base.
 */
TPOOL_API int tpool_batch_new(tpool_pool_t *pool, unsigned max_in_flight,
                              tpool_batch_done_cb done, void *arg,
                              const tpool_task_opts_t *opts,
                              tpool_batch_t **out);

/*
 * Adds a task; it is submitted at once if fewer than max_in_flight of the
 * batch's tasks are queued or running. `arg` is the caller's until the
 * batch's done callback runs.
 * Returns: the task's index in the batch (>= 0); -EINVAL after
 * tpool_batch_close() or for a NULL work; -ENOMEM.
 * Thread: loop of the batch's base.
 */
TPOOL_API long tpool_batch_add(tpool_batch_t *b, const char *name,
                               tpool_work_cb work, void *arg);

/*
 * Says no more tasks will be added. The done callback runs when the last
 * task has ended — on a later turn of the loop, never inside this call,
 * even for an empty batch or one already finished.
 * Returns: 0; -EINVAL if already closed (or b is NULL); -ENOMEM if the
 * loop could not be asked to run the callback (the batch stays open).
 * Thread: loop of the batch's base.
 */
TPOOL_API int tpool_batch_close(tpool_batch_t *b);

/* ------------------------------------------------------------------------
 * Futures: tasks that a thread other than a loop waits for
 * ------------------------------------------------------------------------ */

typedef struct tpool_future tpool_future_t;

/*
 * The work of a future: runs on a worker with the `arg` given at submit,
 * returns the task's status (0, or a negative error code of your own) and
 * may set *result to anything the waiter should get (it starts as NULL).
 */
typedef int (*tpool_future_work_cb)(void *arg, void **result);

/*
 * Submits a task whose outcome a thread (not a loop) collects with
 * tpool_future_wait(). No event_base is involved: it works with no base
 * attached. `name`, `opts` (its base is ignored) and the refusals are as
 * for tpool_submit(); a future's task counts in its pool like any other
 * and can be cancelled by its id.
 * On success *out is a handle the caller owns: free it with
 * tpool_future_free(), waited on or not. `arg` stays the caller's; the
 * work may use it until it returns (wait for the future before freeing
 * what `arg` points to).
 * Returns: the task id (> 0), or what tpool_submit() returns on failure
 * (then *out is untouched); -EINVAL also when `out` is NULL.
 * Thread: any.
 */
TPOOL_API int64_t tpool_submit_future(tpool_pool_t *pool, const char *name,
                                      tpool_future_work_cb work, void *arg,
                                      const tpool_task_opts_t *opts,
                                      tpool_future_t **out);

/*
 * Waits up to `timeout_s` (< 0: no limit; 0: just looks) for the task to
 * end. Then *status (if not NULL) gets its status — the work's return, or
 * -ECANCELED (cancelled, or shut down before it started), or -ETIMEDOUT
 * (its start deadline passed in the queue) — and *result (if not NULL)
 * what the work set, or NULL if it never ran. A future may be waited on
 * any number of times, from several threads, and answers the same each
 * time once ended.
 * Returns: 0 when ended; -ETIMEDOUT if still queued or running at the
 * timeout (*status and *result untouched); -EINVAL if f is NULL.
 * Thread: any but a loop thread that must keep serving, and never from
 * the future's own work function (it would wait for itself).
 */
TPOOL_API int tpool_future_wait(tpool_future_t *f, double timeout_s,
                                int *status, void **result);

/*
 * Releases the handle. If the task has not ended it still runs (or is
 * cancelled) as usual, and what remains of the future is freed when it
 * ends; a result the work sets after that is not seen by anyone. NULL is
 * a no-op.
 * Thread: any, once, and after every wait on it has returned.
 */
TPOOL_API void tpool_future_free(tpool_future_t *f);

/*
 * Cancels a task that has not started: queued, scheduled (a delay) or
 * waiting out a retry's backoff. It leaves the queue, its work never runs
 * and its done callback runs with -ECANCELED (on its loop, as always).
 * Takes time proportional to the number of queued tasks.
 * Returns: 0; -EBUSY if the task is running (it completes normally);
 * -ENOENT if no queued or running task has this id.
 * Thread: any.
 */
TPOOL_API int tpool_manager_cancel(tpool_manager_t *m, int64_t id);

/* Where a task is, for tpool_manager_task(). */
typedef enum tpool_task_state {
  TPOOL_TASK_QUEUED,   /* waiting for a worker, or out a retry's backoff */
  TPOOL_TASK_RUNNING,  /* in its work function */
  TPOOL_TASK_DONE,     /* ended: `status` says how */
  TPOOL_TASK_SCHEDULED /* waiting out its delay (tpool_task_opts_t) */
} tpool_task_state_t;

typedef struct tpool_task_record {
  int64_t id;
  char pool[TPOOL_NAME_MAX];
  char name[TPOOL_TASK_NAME_MAX];
  tpool_task_state_t state;
  int status;        /* TPOOL_TASK_DONE: as its done callback got it */
  unsigned attempts; /* times the work has run or is running */
  /* Of the current (or last) attempt: time queued (so far, while queued),
     time running (so far, while running); 0 if not reached. */
  double queue_wait_s;
  double run_s;
  double ended_ago_s; /* TPOOL_TASK_DONE: seconds since it ended */
} tpool_task_record_t;

/*
 * Looks a task up by id: scheduled, queued (or waiting out a retry's
 * backoff), running, or among the last task_history tasks its pool finished.
 * Takes time proportional to the queued tasks and the history.
 * Returns: 0 and *out; -ENOENT if no pool knows the id (never submitted,
 * or forgotten); -EINVAL for a NULL argument.
 * Thread: any.
 */
TPOOL_API int tpool_manager_task(tpool_manager_t *m, int64_t id,
                                 tpool_task_record_t *out);

/*
 * The word for a state: "queued", "running", "done" or "scheduled".
 * Returns: a static string. Thread: any.
 */
TPOOL_API const char *tpool_task_state_name(tpool_task_state_t state);

/*
 * Closes the pool's circuit breaker by hand, with an empty window, as an
 * operator does once the cause of the failures is fixed.
 * Returns: 0; -EINVAL if pool is NULL or its breaker is off
 * (breaker_window 0).
 * Thread: any.
 */
TPOOL_API int tpool_pool_reset_breaker(tpool_pool_t *pool);

/*
 * Changes a pool's worker limits while it runs. Extra workers retire as
 * soon as they finish their current task; no queued task is lost. If the
 * new minimum is above the current count, workers are started now.
 * `min_workers` may be TPOOL_MIN_EQUALS_MAX.
 * Returns: 0; -EINVAL if max is 0 or above TPOOL_WORKERS_MAX, or min > max.
 * Thread: any.
 */
TPOOL_API int tpool_pool_resize(tpool_pool_t *pool, unsigned min_workers,
                                unsigned max_workers);

/*
 * Turns per-task log lines and the periodic status table on or off, and
 * sets the table's period (seconds, raised to at least 0.1; 0 or less
 * keeps the current one).
 * Thread: any.
 */
TPOOL_API void tpool_manager_set_verbose(tpool_manager_t *m, bool verbose,
                                         double status_interval_s);

/*
 * Applies new options to a running manager, as a server does when it
 * re-reads its config file. *o is checked first with tpool_options_check();
 * if it is invalid, nothing changes.
 * Applied live: verbose, status_interval_s and log_level; for every pool
 * in both: max_workers and min_workers (as tpool_pool_resize()),
 * queue_limit (a lower limit keeps what is already queued), idle_timeout_s,
 * soft_timeout_s, spin_s, the retry_* settings (for attempts that end
 * from then on) and the breaker_* settings (a changed breaker starts
 * closed, with an empty window). Fixed until a restart, and logged as a
 * warning when *o differs: pools added, removed, enabled or disabled; a
 * pool's stack_size, thread_name, cpu_affinity and task_history;
 * log_path; completion_batch; [routes]. The sections of other layers
 * (tpool_config_load_sections()) are theirs to apply.
 * Returns: 0; -EINVAL invalid options (*err filled if not NULL), with
 * nothing changed; -ESHUTDOWN once shutdown has begun.
 * Thread: any.
 */
TPOOL_API int tpool_manager_reconfigure(tpool_manager_t *m,
                                        const tpool_options_t *o,
                                        tpool_config_error_t *err);

/*
 * Writes a message through the manager's log sink, if `level` passes the
 * configured log level. Thread: any.
 */
TPOOL_API void tpool_manager_log(tpool_manager_t *m, tpool_log_level_t level,
                                 const char *fmt, ...) TPOOL_PRINTF(3, 4);

/* ------------------------------------------------------------------------
 * Statistics
 *
 * A snapshot is copied under each pool's lock and read without locks.
 * ------------------------------------------------------------------------ */

/* Number of fixed bounds of a latency distribution, 1 µs to 60 s. */
#define TPOOL_LATENCY_BUCKETS 24

/* A latency distribution, in seconds. Percentiles are within 1/16 of the
   true value; max, sum and the bucket counts are exact. All zero when
   count is 0. */
typedef struct tpool_latency {
  uint64_t count;
  double sum_s;
  double p50_s, p90_s, p99_s, max_s;
  /* le_count[i]: values at or below tpool_latency_bound(i), cumulative as
     in a Prometheus histogram; `count` is the +Inf bucket. */
  uint64_t le_count[TPOOL_LATENCY_BUCKETS];
} tpool_latency_t;

/*
 * The i-th bound of tpool_latency_t.le_count, in seconds: 1e-06, 2.5e-06,
 * 5e-06, 1e-05, ... 10, 30, 60 (ascending).
 * Returns: the bound, or +infinity for i >= TPOOL_LATENCY_BUCKETS.
 * Thread: any.
 */
TPOOL_API double tpool_latency_bound(unsigned i);

typedef struct tpool_active_task {
  int64_t id;
  char name[TPOOL_TASK_NAME_MAX];
  double running_for_s;
  bool stuck; /* running longer than the pool's soft timeout */
} tpool_active_task_t;

typedef enum tpool_breaker_state {
  TPOOL_BREAKER_CLOSED,   /* work flows; outcomes fill the window */
  TPOOL_BREAKER_OPEN,     /* submits refused with -TPOOL_ECIRCUIT */
  TPOOL_BREAKER_HALF_OPEN /* a few trial tasks decide */
} tpool_breaker_state_t;

/*
 * The word for a breaker state: "closed", "open" or "half_open".
 * Returns: a static string. Thread: any.
 */
TPOOL_API const char *tpool_breaker_state_name(tpool_breaker_state_t state);

typedef struct tpool_breaker_stats {
  bool enabled; /* breaker_window > 0; the rest is zero when off */
  tpool_breaker_state_t state;
  unsigned window, in_window, failures_in_window;
  double threshold;
  double open_remaining_s; /* OPEN: seconds until it half-opens */
  unsigned trials, trials_running, trials_passed; /* HALF_OPEN */
  uint64_t opened, half_opened, closed; /* transitions into each state */
  /* Submits refused while open (also in `rejected`), and retries (their
     tasks end with -TPOOL_ECIRCUIT, counted in `failed`). */
  uint64_t refused;
} tpool_breaker_stats_t;

/* The last task of a pool that ended in error: its work returned
   non-zero (retry requests with no attempt left included), its start
   deadline passed, or a retry or delayed task was refused by the circuit
   breaker. Cancelled tasks are not errors. */
#define TPOOL_ERROR_MESSAGE_MAX 128
typedef struct tpool_last_error {
  bool set; /* false: no task has failed yet; the rest is zero */
  int64_t id;
  char name[TPOOL_TASK_NAME_MAX];
  int status; /* as its done callback got it */
  /* What the work said with tpool_task_set_error(), else
     tpool_strerror(status). */
  char message[TPOOL_ERROR_MESSAGE_MAX];
  double age_s; /* seconds since it ended */
} tpool_last_error_t;

typedef struct tpool_pool_stats {
  char name[TPOOL_NAME_MAX];
  unsigned min_workers, max_workers;
  unsigned current_workers; /* live threads, starting ones included */
  unsigned busy_workers;    /* running a task */
  unsigned idle_workers;    /* current - busy */
  size_t queued, queue_limit;
  /* Counters since start. At any moment with nothing in flight (queued,
     running, retrying or scheduled)
     submitted = rejected + completed + failed + cancelled + expired. */
  uint64_t submitted, rejected, completed, failed, cancelled, expired;
  uint64_t stuck_total;     /* tasks that crossed the soft timeout */
  uint64_t thread_failures; /* worker threads that could not be created */
  uint64_t threads_started, threads_retired;
  /* Retries: attempts queued again after a -TPOOL_ERETRY (`retries`), and
     tasks waiting out a backoff now (`retrying`, in flight like queued). */
  uint64_t retries;
  size_t retrying;
  /* Tasks waiting out their delay (tpool_task_opts_t.delay_s): accepted,
     counted in `submitted`, in flight like queued ones. */
  size_t scheduled;
  tpool_breaker_stats_t breaker;
  tpool_last_error_t last_error;
  double soft_timeout_s;
  double last_reject_age_s; /* seconds since a submit was refused; -1: never */
  tpool_latency_t run;      /* time in the work function */
  tpool_latency_t wait;     /* time in the queue */
  size_t nactive;
  tpool_active_task_t *active; /* nactive entries, borrowed from the snapshot */
  size_t stuck_now;            /* how many of them are stuck */
} tpool_pool_stats_t;

typedef struct tpool_stats {
  double uptime_s;
  bool verbose;
  bool shutting_down;     /* tpool_manager_shutdown() has begun */
  unsigned total_workers; /* sum of current_workers */
  unsigned total_busy;
  size_t total_queued;
  size_t npools;
  tpool_pool_stats_t *pools; /* in configuration order */
} tpool_stats_t;

/*
 * Takes a snapshot of every pool.
 * Returns: 0 and *out (caller frees with tpool_stats_free()); -ENOMEM.
 * Thread: any.
 */
TPOOL_API int tpool_manager_stats(tpool_manager_t *m, tpool_stats_t **out);

/* Frees a snapshot. NULL is a no-op. Thread: any. */
TPOOL_API void tpool_stats_free(tpool_stats_t *s);

/*
 * Finds a pool in a snapshot.
 * Returns: borrowed from *s, or NULL. Thread: any.
 */
TPOOL_API const tpool_pool_stats_t *tpool_stats_pool(const tpool_stats_t *s,
                                                     const char *name);

/*
 * Formats a snapshot as the status table that the verbose log prints
 * (without its "ThreadPoolManager Current Status:" heading line): a rule
 * of '=', a line per pool with its busy and maximum workers, busy ÷
 * maximum and the queued tasks, such as
 *   "  cpu          | Workers:   8/ 30 ( 26.7%) | Queued:   2",
 * each followed by a line per running task ("    └─ Task #45: NAME
 * (running for 1.2s)", ", stuck" added past the soft timeout), a rule of
 * '-', a "  Total: N active threads, N queued tasks" line and a rule of
 * '='. Every line ends with "\n".
 * Returns: a NUL-terminated string (caller frees with free()), or NULL if
 * out of memory. Thread: any.
 */
TPOOL_API char *tpool_stats_format(const tpool_stats_t *s);

/*
 * Writes the status table to the log now, at INFO, whatever the verbose
 * setting. Returns: 0; -ENOMEM. Thread: any.
 */
TPOOL_API int tpool_manager_log_status(tpool_manager_t *m);

/* ------------------------------------------------------------------------
 * Schedules: periodic tasks
 *
 * A schedule submits a task to a pool every `every_s` seconds from a
 * timer on one loop (its base). Each run is an ordinary task of its pool:
 * routes, start deadlines, retries and the breaker apply, and its done
 * callback runs on the schedule's loop. The manager keeps schedules by
 * name, so a health route can list and drive them without holding
 * handles (tpool_manager_schedules(), tpool_manager_schedule_control()).
 *
 * Timing: runs are planned on a grid, start + n * every_s (start is the
 * moment of tpool_schedule_new(), or of resume), each moved later by a
 * random part of jitter * every_s, so that schedules made together do
 * not fire together. A run that falls due while the loop was stalled is
 * not made up for: the timer runs once, counts
 * the grid points it missed as skipped, and plans the next run on the
 * grid again — never a burst. A run the pool refuses (queue full, breaker
 * open, shutting down) is skipped and counted too, and logged.
 * ------------------------------------------------------------------------ */

typedef struct tpool_schedule tpool_schedule_t;

/* What a run that falls due does while an earlier run is still queued or
   running. */
typedef enum tpool_overlap {
  TPOOL_OVERLAP_SKIP, /* it is skipped and counted (the default) */
  TPOOL_OVERLAP_QUEUE /* it is submitted anyway, behind the earlier one */
} tpool_overlap_t;

/* The word for a policy: "skip" or "queue". Returns: a static string.
   Thread: any. */
TPOOL_API const char *tpool_overlap_name(tpool_overlap_t overlap);

/* Bounds of tpool_schedule_opts_t.every_s. */
#define TPOOL_SCHEDULE_EVERY_MIN_S 0.001
#define TPOOL_SCHEDULE_EVERY_MAX_S (30.0 * 86400.0)
#define TPOOL_SCHEDULES_MAX 4096 /* per manager */

typedef struct tpool_schedule_opts {
  /* The loop whose timer drives the schedule and where the runs' done
     callbacks run; NULL = the first attached base. */
  struct event_base *base;
  double every_s; /* TPOOL_SCHEDULE_EVERY_MIN_S..MAX_S */
  double jitter;  /* 0..1, a fraction of every_s */
  bool first_now; /* first run at once; false: after every_s */
  tpool_overlap_t overlap;
  bool paused; /* made paused: no run until resumed */
  /* Intervals without a successful run (counted from the last success,
     or from the schedule's start) after which the schedule is stale
     (tpool_schedule_stats_t.stale); 0 = never. */
  unsigned alert_after;
  /* For each run, as tpool_task_opts_t (base and delay_s are ignored). */
  tpool_task_opts_t task;
} tpool_schedule_opts_t;

/*
 * Fills *o with the defaults: every 60 s, no jitter, first run after one
 * interval, overlap skip, not paused, never stale, default task options.
 * Thread: any.
 */
TPOOL_API void tpool_schedule_opts_init(tpool_schedule_opts_t *o);

/*
 * Makes a schedule called `name` (1..TPOOL_NAME_MAX - 1 of a-z 0-9 _ - .)
 * that runs work(arg) as a task called `task_name` (NULL: `name`) on
 * `pool`, or, when `pool` is NULL, on the pool [routes] give task_name.
 * `done` (may be NULL) runs after every run on the schedule's loop, with
 * the run's status and `arg`, as a task's done callback does; runs share
 * `arg`. `release` (may be NULL) runs once on that loop when the
 * schedule is gone — after tpool_schedule_cancel() and its last run's
 * done callback, or in tpool_manager_free() — and is the place to free
 * `arg`; not at all if a run outlived a shutdown's deadline and still
 * runs at tpool_manager_free() (its work may still use `arg`: the
 * schedule is then left, and logged). The manager keeps the schedule under its
 * name until cancelled. On failure neither callback runs and `arg` stays the
 * caller's. Returns: 0 and *out (borrowed: valid until tpool_schedule_cancel()
 * or tpool_manager_free(); may be NULL if not wanted); -EINVAL (bad name, NULL
 * work, options out of range, base not attached or none attached); -ENOENT no
 * pool (or no route for task_name); -EEXIST a schedule of that name exists;
 * -ENOSPC past TPOOL_SCHEDULES_MAX; -ESHUTDOWN after shutdown; -ENOMEM. Thread:
 * loop of the schedule's base (or before any loop runs).
 */
TPOOL_API int tpool_schedule_new(tpool_manager_t *m, const char *name,
                                 tpool_pool_t *pool, const char *task_name,
                                 tpool_work_cb work, tpool_done_cb done,
                                 void (*release)(void *arg), void *arg,
                                 const tpool_schedule_opts_t *o,
                                 tpool_schedule_t **out);

/*
 * Changes a schedule's timing, overlap, alert_after, paused and task
 * options live (o->base is ignored: a schedule keeps its loop). A new
 * every_s or jitter plans the next run from now; counters are kept.
 * Returns: 0; -EINVAL options out of range (nothing changes).
 * Thread: loop of the schedule's base.
 */
TPOOL_API int tpool_schedule_update(tpool_schedule_t *s,
                                    const tpool_schedule_opts_t *o);

/*
 * Ends a schedule: no run is made from now on, a run still queued is
 * cancelled (its done callback gets -ECANCELED), a running one finishes.
 * Its name is free again at once. `release` runs once its last run's done
 * callback has returned (on a later turn of the loop, never inside this
 * call). s must not be used after this call.
 * Thread: loop of the schedule's base.
 */
TPOOL_API void tpool_schedule_cancel(tpool_schedule_t *s);

/* What tpool_manager_schedule_control() does. */
typedef enum tpool_schedule_action {
  TPOOL_SCHEDULE_PAUSE,  /* no run falls due until resumed */
  TPOOL_SCHEDULE_RESUME, /* the grid starts again from now */
  TPOOL_SCHEDULE_RUN_NOW /* one run now, paused or not; the grid stays */
} tpool_schedule_action_t;

/*
 * Pauses, resumes or runs now the schedule called `name`. Pausing a
 * paused schedule, or resuming a running one, is not an error. A run now
 * counts as any run; it is refused while a run is queued or running and
 * the overlap policy is skip.
 * Returns: 0 (for RUN_NOW, the submitted run's task id is in *task_id
 * when it is not NULL); -ENOENT no such schedule; -EBUSY (RUN_NOW) a run
 * is in flight and overlap is skip; what tpool_submit() returns when the
 * pool refuses the run now; -EINVAL bad action or NULL name.
 * Thread: any.
 */
TPOOL_API int tpool_manager_schedule_control(tpool_manager_t *m,
                                             const char *name,
                                             tpool_schedule_action_t action,
                                             int64_t *task_id);

typedef struct tpool_schedule_stats {
  char name[TPOOL_NAME_MAX];
  char pool[TPOOL_NAME_MAX];
  char task_name[TPOOL_TASK_NAME_MAX];
  double every_s, jitter;
  tpool_overlap_t overlap;
  unsigned alert_after;
  bool paused;
  double next_run_in_s; /* until the next planned run; -1 while paused */
  unsigned running;     /* runs submitted and not yet ended */
  /* Counters since the schedule was made: runs submitted (runs = ok +
     failed + cancelled + runs still running or queued), runs that ended
     in error (failed), and planned runs that were not made (skipped:
     overlap, missed while the loop stalled, refused by the pool; the
     time spent paused counts nowhere). */
  uint64_t runs, ok, failed, cancelled, skipped;
  bool has_last;   /* a run has ended; the last_* fields say how */
  int last_status; /* as its done callback got it */
  /* The last run that ended: its time in the work function (its last
     attempt's); -1 if it never started (cancelled, expired). */
  double last_duration_s;
  /* Since the work of the latest run started (it may still be running);
     -1: none has started yet. */
  double last_run_age_s;
  double last_success_unix; /* of the last success (time(2)); 0: none yet */
  /* True when alert_after > 0 and alert_after intervals have passed with
     no success, counted from the last success or from the start. */
  bool stale;
  /* How late runs started: from the time their timer was set for (grid
     point plus jitter) to the start of their work's first attempt (a
     retry's backoff is not lateness; a stalled loop is). count, sum, max and
     the bucket counts cover every run since the schedule was made; p50, p90 and
     p99 are exact over its last 64 runs (a schedule keeps no more, so that
     thousands of them stay small). */
  tpool_latency_t lateness;
} tpool_schedule_stats_t;

/*
 * Takes a snapshot of every schedule of the manager, sorted by name.
 * Returns: 0, *out (an array the caller frees with free(); NULL when
 * there are none) and *n; -ENOMEM; -EINVAL for a NULL argument.
 * Thread: any.
 */
TPOOL_API int tpool_manager_schedules(tpool_manager_t *m,
                                      tpool_schedule_stats_t **out, size_t *n);

/*
 * A snapshot of one schedule, by name.
 * Returns: 0 and *out; -ENOENT no such schedule; -EINVAL NULL argument.
 * Thread: any.
 */
TPOOL_API int tpool_manager_schedule_stats(tpool_manager_t *m, const char *name,
                                           tpool_schedule_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TPOOL_H */
