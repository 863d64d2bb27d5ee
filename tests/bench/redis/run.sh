#!/bin/bash
# tests/bench/redis/run.sh BUILD_DIR [N] — end-to-end throughput of empty
# tasks through Redis: tpool-server's Redis Streams consumer against a
# Celery 5 worker, on this machine, in one run, against one redis-server
# that the script starts itself (127.0.0.1, a free port, no persistence)
# and stops at exit, with every other process it started.
#
# 1. Ceiling: redis-benchmark's XADD, 50 clients, unpipelined and -P 32.
# 2. tpool-server: N entries (default 100000) are preloaded into the stream
#    tpool:tasks (task = {"work":"sleep","ms":0}, pool = cpu) with the group
#    tpool created at its start; then tpool-server starts with the repo's
#    config.ini plus a [redis] section. XINFO GROUPS is polled every 50 ms,
#    by a poller already polling when the server starts: the time counted
#    runs from the first poll that sees the group's entries-read > 0 (the
#    server has connected and read: its start-up is left out) to the first
#    that sees lag == 0 and pending == 0 (every entry read, run, its result
#    record written and acknowledged). tasks/s = N / that time. SCAN then
#    checks N result records tpool:result:*, all "ok", and their
#    finished_at span is shown as a cross-check of the window. Three runs
#    (BENCH_TPOOL_REPS), each with a fresh stream and server; their median
#    is the one compared.
#    Latency: the last run's server still up, entries are added at half the
#    median rate (BENCH_LAT_RATE), then at 1000/s (BENCH_LAT_LIGHT), for
#    10 s each, paced each ms; an entry's latency is its result's
#    finished_at minus its id's ms part (Redis's clock at the XADD), at
#    1 ms resolution. The producer is Python, on the same 2 cores.
# 3. Celery: N_CELERY noop() tasks (default min(N, 20000)) are queued once
#    (broker db 1) and kept (COPY to db 3), to be put back before each
#    setting: pool prefork or threads (concurrency 2), or solo (one task at
#    a time, in the worker's process: no concurrency, no IPC), times
#    prefetch multiplier 1, 4, 16 or 64; task_acks_late. The time counted
#    runs from the first poll that sees the queue shorter than N_CELERY to
#    the first that sees N_CELERY results in db 2, the queue empty and
#    nothing unacknowledged. (With few tasks reserved, Celery's late acks
#    wait for its event loop to wake: a few tasks per second.)
#    A run (tpool's too) still going after BENCH_TIMEOUT s (120), or whose
#    rate after BENCH_STALL_CHECK s (15) would need more than that, is cut
#    and reported as stalled: tasks done so far / elapsed.
# 4. One table, with the best Celery setting and the ratio of tpool-server's
#    median to it.
#
# Polling at 50 ms: each window may be up to 50 ms long or short at each
# end. Takes about 5 minutes. Everything shares the 2 cores: redis-server,
# the server or worker, and the pollers (light). Needs redis-server,
# redis-benchmark, redis-cli, and Debian's python3-redis and
# python3-celery for /usr/bin/python3.
#
# Environment: BENCH_N (N, when not given), BENCH_CELERY_N,
# BENCH_CELERY_POOLS ("prefork threads solo"), BENCH_CELERY_PREFETCH
# ("1 4 16 64"), BENCH_TIMEOUT, BENCH_STALL_CHECK, BENCH_LAT_SECONDS (10),
# BENCH_LAT_RATE, BENCH_LAT_LIGHT, BENCH_TPOOL_REPS (3), BENCH_SKIP
# ("ceiling", "tpool", "celery", blank-separated), BENCH_TPOOL_REDIS
# ("KEY=VALUE ..." added to the server's [redis] section: "batch=256").
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ ! -d "$1" ]; then
  echo "usage: $0 BUILD_DIR [N]" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
N=${2:-${BENCH_N:-100000}}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PY=/usr/bin/python3
TOOLS="$HERE/bench_tools.py"
SERVER=$BUILD/server/tpool-server
N_CELERY=${BENCH_CELERY_N:-$((N < 20000 ? N : 20000))}
CELERY_POOLS=${BENCH_CELERY_POOLS:-prefork threads solo}
CELERY_PREFETCH=${BENCH_CELERY_PREFETCH:-1 4 16 64}
RUN_TIMEOUT=${BENCH_TIMEOUT:-120}
STALL_CHECK=${BENCH_STALL_CHECK:-15}
LAT_SECONDS=${BENCH_LAT_SECONDS:-10}
LAT_LIGHT=${BENCH_LAT_LIGHT:-1000}
REPS=${BENCH_TPOOL_REPS:-3}
SKIP=" ${BENCH_SKIP:-} "
export PYTHONDONTWRITEBYTECODE=1

for p in redis-server redis-benchmark redis-cli; do
  command -v $p >/dev/null || { echo "run.sh: $p not found" >&2; exit 2; }
done
$PY -c 'import redis, celery' 2>/dev/null ||
  { echo "run.sh: $PY lacks python3-redis or python3-celery" >&2; exit 2; }

TMP=$(mktemp -d /tmp/tpool-bench-redis.XXXXXX)
OUT=$TMP/results.tsv
: >"$OUT"
PIDS=""

# stop PID: SIGTERM to its process group (each is started by setsid, so
# the group is its own and holds only its children), SIGKILL after 15 s.
stop() {
  local pid=$1 i=0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  PIDS=$(echo " $PIDS " | sed "s/ $pid / /")
}
cleanup() {
  local rc=$?
  for pid in $PIDS; do stop "$pid"; done
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# start LOG CMD...: CMD in the background, in its own session; sets PID.
start() {
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 &
  PID=$!
  PIDS="$PID $PIDS"
}
tools() { "$PY" "$TOOLS" "$@"; }
# measure LOG POLL-ARGS... -- CMD...: starts the poller (bench_tools.py
# POLL-ARGS), and CMD (as start LOG CMD) only once the poller polls, so
# that Python's start-up cannot hide the window's start; then waits for
# the poller. Returns its status; PID is CMD's.
measure() {
  local log=$1 args=() poller i=0 rc=0
  shift
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  shift
  rm -f "$TMP/ready"
  "$PY" "$TOOLS" "${args[@]}" --ready "$TMP/ready" &
  poller=$!
  PIDS="$poller $PIDS"
  while [ ! -s "$TMP/ready" ] && kill -0 $poller 2>/dev/null &&
    [ $i -lt 500 ]; do
    sleep 0.01
    i=$((i + 1))
  done
  if [ -s "$TMP/ready" ]; then
    start "$log" "$@"
  else
    PID=""
  fi
  wait $poller || rc=$?
  PIDS=$(echo " $PIDS " | sed "s/ $poller / /")
  [ -n "$PID" ] || rc=1
  return $rc
}
log() { echo "== $*" >&2; }

# ---- redis-server --------------------------------------------------------
PORT=$(tools freeport)
start "$TMP/redis.out" redis-server --bind 127.0.0.1 --port "$PORT" \
  --save '' --appendonly no --daemonize no --dir "$TMP"
REDIS_PID=$PID
cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
for _ in $(seq 100); do
  [ "$(cli ping 2>/dev/null)" = PONG ] && break
  sleep 0.05
done
[ "$(cli ping)" = PONG ] || { cat "$TMP/redis.out" >&2; exit 1; }
version=$(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')
log "redis-server $version on 127.0.0.1:$PORT"

# ---- 1. ceiling ----------------------------------------------------------
if [[ $SKIP != *" ceiling "* ]]; then
  for pipe in 1 32; do
    log "ceiling: redis-benchmark XADD, -c 50 -P $pipe"
    rps=$(redis-benchmark -h 127.0.0.1 -p "$PORT" -n 200000 -c 50 -P $pipe \
      --csv XADD benchstream '*' f v | awk -F'"' 'NR == 2 { print $4 }')
    setting="-n 200000 -c 50, unpipelined"
    [ $pipe = 1 ] || setting="-n 200000 -c 50 -P $pipe"
    printf 'ceiling\tredis\t%s\t200000\t0\t%s\t\n' "$setting" "$rps" >>"$OUT"
  done
  cli del benchstream >/dev/null
fi

# ---- 2. tpool-server -----------------------------------------------------
if [[ $SKIP != *" tpool "* ]]; then
  [ -x "$SERVER" ] || { echo "run.sh: no $SERVER (build first)" >&2; exit 2; }
  cfg=$TMP/tpool.ini
  extra=()
  for kv in ${BENCH_TPOOL_REDIS:-}; do extra+=(--redis "$kv"); done
  tools config --src "$ROOT/config.ini" --dst "$cfg" --port "$PORT" \
    --dir "$TMP" ${extra[@]+"${extra[@]}"}
  if ! "$SERVER" --check-config "$cfg" >"$TMP/check.out" 2>&1; then
    echo "run.sh: $SERVER does not take the [redis] section:" >&2
    cat "$TMP/check.out" >&2
    printf 'run\ttpool-server\t%s\t%s\t0\t0\tNOT RUN\n' \
      "no [redis] support in this build" "$N" >>"$OUT"
  else
    base="shipped config.ini"
    [ -z "${BENCH_TPOOL_REDIS:-}" ] || base="$base + $BENCH_TPOOL_REDIS"
    ok=1
    SERVER_PID=""
    for rep in $(seq "$REPS"); do
      setting=$base
      [ "$REPS" = 1 ] || setting="$base, run $rep/$REPS"
      cli flushdb >/dev/null
      log "tpool: run $rep/$REPS: preloading $N entries"
      tools preload --port "$PORT" --n "$N"
      log "tpool: run $rep/$REPS: tpool-server, until all is acknowledged"
      measure "$TMP/server.out" poll-stream --port "$PORT" --n "$N" \
        --out "$OUT" --timeout "$RUN_TIMEOUT" --check "$STALL_CHECK" \
        --setting "$setting" -- "$SERVER" --config "$cfg" || ok=0
      SERVER_PID=$PID
      [ -z "$SERVER_PID" ] || kill -0 "$SERVER_PID" 2>/dev/null || ok=0
      [ $ok = 1 ] || break
      # the last run's server stays up for the latency runs
      if [ "$rep" -lt "$REPS" ]; then
        stop "$SERVER_PID"
        SERVER_PID=""
      fi
    done
    if [ $ok = 1 ]; then
      half=$(awk -F'\t' '$1 == "run" && $2 == "tpool-server" { print $6 }' \
        "$OUT" | sort -n | awk '{ r[NR] = $1 }
                                END { print int(r[int((NR + 1) / 2)] / 2) }')
      for rate in "${BENCH_LAT_RATE:-$half}" "$LAT_LIGHT"; do
        label="enqueue to result at $rate/s"
        [ "$rate" != "$half" ] || label="$label (half the median rate)"
        [ "$rate" != "$LAT_LIGHT" ] || label="$label (light load)"
        log "tpool: latency, $rate entries/s for $LAT_SECONDS s"
        tools latency --port "$PORT" --rate "$rate" --seconds "$LAT_SECONDS" \
          --label "$label" --out "$OUT" --timeout "$RUN_TIMEOUT" || ok=0
      done
    fi
    if [ -n "$SERVER_PID" ]; then
      kill -0 "$SERVER_PID" 2>/dev/null || ok=0
      stop "$SERVER_PID"
    fi
    if [ $ok = 0 ]; then
      echo "run.sh: tpool-server's part failed; its log:" >&2
      tail -n 30 "$TMP/server.out" "$TMP/server.log" 2>/dev/null >&2 || true
    fi
  fi
fi

# ---- 3. Celery -----------------------------------------------------------
if [[ $SKIP != *" celery "* ]]; then
  for db in 1 2 3; do cli -n $db flushdb >/dev/null; done
  log "celery: queueing $N_CELERY noop tasks (once, kept in db 3)"
  tools celery-preload --port "$PORT" --n "$N_CELERY"
  for key in celery _kombu.binding.celery; do
    cli -n 1 copy "$key" "$key" db 3 >/dev/null
  done
  for pool in $CELERY_POOLS; do
    for pf in $CELERY_PREFETCH; do
      setting="--pool $pool, prefetch $pf"
      [ "$pool" != solo ] || setting="--pool solo (1 process), prefetch $pf"
      for db in 1 2; do cli -n $db flushdb >/dev/null; done
      for key in celery _kombu.binding.celery; do
        cli -n 3 copy "$key" "$key" db 1 >/dev/null
      done
      log "celery: $setting"
      measure "$TMP/celery.out" poll-celery --port "$PORT" --n "$N_CELERY" \
        --setting "$setting" --out "$OUT" --timeout "$RUN_TIMEOUT" \
        --check "$STALL_CHECK" -- env BENCH_REDIS_PORT="$PORT" \
        PYTHONPATH="$HERE" "$PY" -m celery -A celery_app worker \
        --concurrency 2 --pool "$pool" --prefetch-multiplier "$pf" \
        --without-gossip --without-mingle --without-heartbeat -Q celery \
        --loglevel WARNING || tail -n 20 "$TMP/celery.out" >&2
      WORKER_PID=$PID
      [ -z "$WORKER_PID" ] || stop "$WORKER_PID"
    done
  done
fi

# ---- 4. the table --------------------------------------------------------
echo
echo "tpool-server vs Celery through Redis ($(nproc) cores, $(date -u +%F))"
tools report "$OUT"
