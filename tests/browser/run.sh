#!/bin/sh
# run.sh — the dashboard's browser test (meson test "dashboard"): starts
# tpool-server on 127.0.0.1 with an admin token and small pools, runs
# dashboard.mjs in headless Chromium against it, stops and restarts the
# server when the script asks (through a control file), and leaves the
# screenshot at BUILD/tests/browser/dashboard.png.
#
#   run.sh SERVER BUILD SANITIZE
#
# Runs in the plain build only (exit 77, skipped, under a sanitizer: the
# browser adds nothing there). Needs node, /usr/bin/chromium and
# playwright-core in BUILD/tests/browser/node_modules, which
# `./setup.sh test` installs.
set -eu
server=$1
build=$2
[ "$3" = none ] || exit 77
here=$(cd "$(dirname "$0")" && pwd)
dir=$build/tests/browser
if ! command -v node >/dev/null || [ ! -x /usr/bin/chromium ] ||
  [ ! -d "$dir/node_modules/playwright-core" ]; then
  echo "run.sh: needs node, chromium and playwright-core: run ./setup.sh test" >&2
  exit 1
fi
work=$(mktemp -d)
pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# ESM finds packages next to the script: run a copy beside node_modules.
cp "$here/dashboard.mjs" "$dir/dashboard.mjs"

config() { # $1: the listen port
  cat >"$work/config.ini" <<EOF
[http]
listen = 127.0.0.1:$1
admin_token = browser-test-token
[demo]
data_dir = $work/data
db_rows = 100
[pool.io]
workers = 2
[pool.cpu]
workers = 4
[pool.inference]
workers = 1
[pool.embedding]
workers = 1
[pool.db]
workers = 1
EOF
}

start() { # starts the server, waits for its port (at most 30 s)
  : >"$work/server.log"
  "$server" -c "$work/config.ini" >>"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    port=$(sed -n 's|.*Listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' \
      "$work/server.log")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  cat "$work/server.log" >&2
  echo "run.sh: the server did not start" >&2
  exit 1
}

stop() {
  kill "$pid"
  wait "$pid" || true
  pid=""
  cat "$work/server.log" >>"$work/all.log"
}

config 0
start
config "$port" # a restart comes back on the same address
control=$work/control
: >"$control"
node "$dir/dashboard.mjs" "http://127.0.0.1:$port/" browser-test-token \
  "$dir/dashboard.png" "$control" &
node=$!
while kill -0 "$node" 2>/dev/null; do
  case $(cat "$control") in
  stop)
    stop
    echo stopped >"$control"
    ;;
  start)
    start
    echo started >"$control"
    ;;
  esac
  sleep 0.05
done
status=0
wait "$node" || status=$?
[ -z "$pid" ] || stop
# The button wrote the status table into the log of the first server.
if [ "$status" -eq 0 ] &&
  ! grep -q "ThreadPoolManager Current Status" "$work/all.log"; then
  echo "run.sh: no status table in the server's log" >&2
  status=1
fi
[ "$status" -eq 0 ] || cat "$work/all.log" >&2
exit "$status"
