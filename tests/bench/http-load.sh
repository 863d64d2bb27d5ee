#!/bin/sh
# http-load.sh — how fast tpool-server answers GET /health/thread-pools
# while tasks run, beside a trivial route of the same server (GET /ping).
#
# It starts tpool-server with the shipped config.ini (the five default
# pools, 140 workers) on a free loopback port, keeps a background load of
# tasks on every pool (a second wrk posting small sleep and spin tasks to
# POST /tasks/{pool}, tests/bench/http-load.lua), and meanwhile measures
# both routes with wrk in turn: /ping, /health/thread-pools, /ping, ...
# for ROUNDS pairs. It prints one line per run, then a Markdown table with
# each route's median requests/s (min–max), its p50 and p99 latency, and
# the median of the per-pair ratios thread-pools ÷ ping. It asserts no
# speed: it exits 0 when every run went through, 1 when a run saw socket
# errors or non-2xx answers, 2 on bad usage or a missing tool.
#
#   tests/bench/http-load.sh [BUILD_DIR]      BUILD_DIR defaults to build
#
# Needs wrk (Debian: apt-get install wrk) and curl. Environment:
#   DURATION        seconds per run (default 10)
#   CONNECTIONS     wrk connections of the measured runs (default 32)
#   THREADS         wrk threads of the measured runs (default 1: on a
#                   small machine the server's loop needs a core too)
#   ROUNDS          pairs of runs, one per route each (default 3)
#   BG_CONNECTIONS  connections of the background task load (default 8);
#                   0 measures an idle server
#   WARMUP          seconds of unrecorded load on each route first (default 2)
#   LOOP_THREADS    the server's [http] loop_threads (default 1)
# With the defaults it takes about 70 seconds.
set -eu

usage() {
  sed -n '2,/^set -eu$/{/^set/d;s/^# \{0,1\}//;p;}' "$0"
}

case "${1:-}" in
-h | --help)
  usage
  exit 0
  ;;
-*)
  usage >&2
  exit 2
  ;;
esac
[ $# -le 1 ] || {
  usage >&2
  exit 2
}

build=${1:-build}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
BG_CONNECTIONS=${BG_CONNECTIONS:-8}
WARMUP=${WARMUP:-2}
LOOP_THREADS=${LOOP_THREADS:-1}

die() {
  echo "http-load.sh: $*" >&2
  exit 2
}

for v in DURATION CONNECTIONS THREADS ROUNDS BG_CONNECTIONS WARMUP LOOP_THREADS; do
  n=""
  eval "n=\$$v"
  case $n in
  '' | *[!0-9]*) die "$v: expected a whole number, got \"$n\"" ;;
  esac
done
[ "$DURATION" -ge 1 ] || die "DURATION: expected 1 or more seconds"
[ "$ROUNDS" -ge 1 ] || die "ROUNDS: expected 1 or more"
[ "$THREADS" -ge 1 ] || die "THREADS: expected 1 or more"
[ "$LOOP_THREADS" -ge 1 ] && [ "$LOOP_THREADS" -le 64 ] ||
  die "LOOP_THREADS: expected 1..64"
[ "$CONNECTIONS" -ge "$THREADS" ] ||
  die "CONNECTIONS: expected at least THREADS ($THREADS)"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
server=$build/server/tpool-server
[ -x "$server" ] || die "$server: not found; build first (meson setup $build && ninja -C $build)"
command -v wrk >/dev/null || die "wrk: not found (Debian: apt-get install wrk)"
command -v curl >/dev/null || die "curl: not found (Debian: apt-get install curl)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/http-load.XXXXXX")
server_pid=""
bg_pid=""
fg_pid=""
sampler_pid=""

# Waits up to $2 seconds for process $1 to end, then kills it.
wait_for_exit() {
  i=0
  while kill -0 "$1" 2>/dev/null; do
    if [ "$i" -ge $(($2 * 10)) ]; then
      echo "http-load.sh: process $1 still running after ${2}s; killing it" >&2
      kill -KILL "$1" 2>/dev/null || true
      break
    fi
    sleep 0.1
    i=$((i + 1))
  done
  wait "$1" 2>/dev/null
}

# On any exit, Ctrl-C included: stop the load, then drain the server.
# shellcheck disable=SC2317 # reached through the trap
cleanup() {
  status=$?
  trap - EXIT INT TERM HUP
  for p in $sampler_pid $fg_pid $bg_pid; do
    kill -TERM "$p" 2>/dev/null || true
    wait_for_exit "$p" 5 || true
  done
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    # The drain waits for running tasks: the background's are short.
    wait_for_exit "$server_pid" 40 || {
      echo "http-load.sh: tpool-server did not exit cleanly; its log:" >&2
      tail -n 20 "$tmp/server.log" >&2 || true
    }
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- the server ------------------------------------------------------------

# The shipped pools as they are; only where it listens (port 0: the kernel
# picks a free one), its loops, verbose, the log (read for that port) and
# the demo data (made in the temporary directory) are set.
sed -e 's/^listen *=.*/listen = 127.0.0.1:0/' \
  -e "s/^loop_threads *=.*/loop_threads = $LOOP_THREADS/" \
  -e "s|^data_dir *=.*|data_dir = $tmp/data|" \
  -e 's/^verbose *=.*/verbose = false/' \
  -e 's/^log *=.*/log = stderr/' "$root/config.ini" >"$tmp/config.ini"
"$server" -c "$tmp/config.ini" 2>"$tmp/server.log" &
server_pid=$!

port=""
i=0
while [ -z "$port" ]; do
  if ! kill -0 "$server_pid" 2>/dev/null || [ "$i" -ge 100 ]; then
    echo "http-load.sh: tpool-server did not start; its log:" >&2
    cat "$tmp/server.log" >&2
    exit 1
  fi
  sleep 0.1
  i=$((i + 1))
  port=$(sed -n 's|.*Listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' \
    "$tmp/server.log")
done
base=http://127.0.0.1:$port
i=0
until curl -fsS -o /dev/null "$base/health" 2>/dev/null; do
  [ "$i" -lt 50 ] || die "GET $base/health does not answer"
  sleep 0.1
  i=$((i + 1))
done
curl -fsS -o /dev/null "$base/ping" 2>/dev/null ||
  die "GET /ping does not answer 200: is $server older than the route?"

# ---- helpers ---------------------------------------------------------------

# The server's CPU time so far, in clock ticks (user + system, all threads).
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() {
  sed 's/.*) //' "/proc/$server_pid/stat" 2>/dev/null |
    awk '{ print $12 + $13 } END { if (!NR) print 0 }'
}
now_ms() {
  date +%s%3N
}

# A wrk latency ("812.00us", "1.20ms", "2.00s", "1.00m") in milliseconds.
to_ms() {
  awk -v t="$1" 'BEGIN {
    n = t + 0; u = t; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000
    else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

# Median, min and max of the numbers on stdin: "median min max".
stats() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "0 0 0"; exit }
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    print m, v[1], v[NR] }'
}

# Samples /health/thread-pools about once a second into $1 until killed,
# one line each: the time in ms, busy workers, queued tasks and tasks
# submitted so far, all pools together.
sample_pools() {
  while :; do
    t=$(now_ms)
    curl -fsS "$base/health/thread-pools" 2>/dev/null | awk -v t="$t" '{
      n = split($0, f, /[{},]/)
      for (i = 1; i <= n; i++) {
        split(f[i], kv, ":")
        if (kv[1] == "\"total_active\"") a = kv[2]
        else if (kv[1] == "\"total_queued\"") q = kv[2]
        else if (kv[1] == "\"submitted\"") s += kv[2]
      }
      print t, a, q, s }' >>"$1" || true
    sleep 1
  done
}

errors=0

# Checks a wrk report for socket errors and non-2xx answers; prints a
# warning and counts the run as failed if there are any.
check_report() {
  bad=$(grep -E '^ *(Socket errors|Non-2xx or 3xx responses):' "$1" |
    tr -s ' \n' ' ' || true)
  if [ -n "$bad" ]; then
    echo "WARNING: $2:$bad" >&2
    errors=$((errors + 1))
  fi
  grep -q '^Requests/sec:' "$1" || {
    echo "WARNING: $2: no Requests/sec in wrk's report:" >&2
    cat "$1" >&2
    errors=$((errors + 1))
  }
}

# ---- the background load ---------------------------------------------------

cores=$(nproc 2>/dev/null || echo "?")
echo "# tpool-server HTTP load: $(date -u '+%Y-%m-%d %H:%M UTC'), $cores CPUs, $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
echo "# tpool-server $("$server" --version | cut -d' ' -f2) on $base, pools of $root/config.ini"
echo "# measured: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS pairs"

bg_total=$((2 * WARMUP + ROUNDS * 2 * (DURATION + 2) + 30))
if [ "$BG_CONNECTIONS" -gt 0 ]; then
  echo "# background: wrk -t1 -c$BG_CONNECTIONS -s http-load.lua: POST /tasks/{pool}, sleep 10-30 ms or spin 2 ms, every pool"
  wrk -t1 -c"$BG_CONNECTIONS" -d"${bg_total}s" -s "$here/http-load.lua" \
    "$base" >"$tmp/bg.out" 2>&1 &
  bg_pid=$!
else
  echo "# background: none"
fi
echo

# Unrecorded: connections, caches and the background's pace settle.
if [ "$WARMUP" -gt 0 ]; then
  for route in /ping /health/thread-pools; do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "$base$route" \
      >"$tmp/run.out" 2>&1 &
    fg_pid=$!
    wait "$fg_pid" || true
    fg_pid=""
  done
fi

# ---- the runs --------------------------------------------------------------

: >"$tmp/results"
run=0
runs=$((ROUNDS * 2))
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for route in /ping /health/thread-pools; do
    run=$((run + 1))
    : >"$tmp/samples"
    cpu0=$(cpu_ticks)
    t0=$(now_ms)
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
      "$base$route" >"$tmp/run.out" 2>&1 &
    fg_pid=$!
    sample_pools "$tmp/samples" &
    sampler_pid=$!
    wait "$fg_pid" || true
    fg_pid=""
    t1=$(now_ms)
    cpu1=$(cpu_ticks)
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""

    check_report "$tmp/run.out" "run $run, GET $route"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/run.out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$tmp/run.out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$tmp/run.out")")
    cpu=$(awk -v d=$((cpu1 - cpu0)) -v hz="$hz" -v ms=$((t1 - t0)) \
      'BEGIN { printf "%.0f", (ms > 0 ? d / hz * 100000 / ms : 0) }')
    # Three words to split: busy workers, queued tasks, tasks/s.
    # shellcheck disable=SC2046
    set -- $(awk 'NR == 1 { t0 = $1; s0 = $4 }
      { b += $2; if ($3 > q) q = $3; t1 = $1; s1 = $4 }
      END { printf "%.1f %d %.0f", (NR ? b / NR : 0), q,
                   (t1 > t0 ? (s1 - s0) * 1000 / (t1 - t0) : 0) }' \
      "$tmp/samples")
    printf 'run %d/%d  GET %-21s %6.0f req/s  p50 %6.3f ms  p99 %6.3f ms  server CPU %3s%%  tasks %s/s, busy workers %s (mean), queued %s (max)\n' \
      "$run" "$runs" "$route" "${rps:-0}" "$p50" "$p99" "$cpu" "$3" "$1" "$2"
    echo "$r $route ${rps:-0} $p50 $p99" >>"$tmp/results"
  done
  r=$((r + 1))
done

# ---- the background's figures ----------------------------------------------

bg_line="none"
if [ -n "$bg_pid" ]; then
  kill -INT "$bg_pid" 2>/dev/null || true # wrk reports what it did so far
  wait_for_exit "$bg_pid" 5 || true
  bg_pid=""
  check_report "$tmp/bg.out" "background load"
  bg_rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/bg.out")
  bg_line="$bg_rps tasks/s (POST /tasks/{pool}, $BG_CONNECTIONS connections, all five pools)"
fi

# ---- the table -------------------------------------------------------------

col() { # route column: the column's values over the runs of that route
  awk -v r="$1" -v c="$2" '$2 == r { print $c }' "$tmp/results"
}
echo
echo "| route | req/s, median (min–max) | p50 | p99 | ÷ /ping |"
echo "|---|---|---|---|---|"
# stats prints three words to split: "median min max".
# shellcheck disable=SC2046,SC2016
for route in /ping /health/thread-pools; do
  set -- $(col "$route" 3 | stats)
  rps="$(printf '%.0f (%.0f–%.0f)' "$1" "$2" "$3")"
  set -- $(col "$route" 4 | stats)
  p50=$1
  set -- $(col "$route" 5 | stats)
  p99=$1
  ratio="—"
  if [ "$route" != /ping ]; then
    awk '$2 == "/ping" { t[$1] = $3 } $2 != "/ping" { h[$1] = $3 }
      END { for (r in h) if (t[r] > 0) print h[r] / t[r] * 100 }' \
      "$tmp/results" >"$tmp/ratios"
    set -- $(stats <"$tmp/ratios")
    ratio=$(printf '%.1f%% (%.1f–%.1f)' "$1" "$2" "$3")
  fi
  printf '| `GET %s` | %s | %.2f ms | %.2f ms | %s |\n' \
    "$route" "$rps" "$p50" "$p99" "$ratio"
done
echo
echo "Ratio: median of the $ROUNDS per-pair ratios thread-pools ÷ ping (min–max)."
echo "Background load: $bg_line."

if [ "$errors" -gt 0 ]; then
  echo "http-load.sh: $errors runs had socket errors or non-2xx answers" >&2
  exit 1
fi
exit 0
