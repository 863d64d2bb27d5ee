#!/bin/sh
# run.sh — the dashboard's browser test (meson test "dashboard"): starts
# tpool-server on 127.0.0.1 with an admin token and small pools, runs
# dashboard.py (Selenium driving Debian's headless Chromium through
# chromedriver) against it, stops and restarts the server when the script
# asks (through a control file), and leaves the screenshot at
# BUILD/tests/browser/dashboard.png.
#
#   run.sh SERVER BUILD SANITIZE
#
# Runs in the plain build only. Needs /usr/bin/chromium and
# /usr/bin/chromedriver (Debian's chromium and chromium-driver) and a
# python3 with Selenium (Debian's python3-selenium, for /usr/bin/python3),
# which `./setup.sh test` installs, best effort. Exits 77 (skipped), saying
# why, under a sanitizer (the browser adds nothing there) or when one of
# them is missing.
set -eu
server=$1
build=$2
if [ "$3" != none ]; then
  echo "dashboard test: skipped: plain build only (b_sanitize=$3)"
  exit 77
fi
here=$(cd "$(dirname "$0")" && pwd)
dir=$build/tests/browser
skip() {
  echo "dashboard test: skipped: $* is not installed (./setup.sh test" \
    "installs chromium, chromium-driver and python3-selenium)"
  exit 77
}
[ -x /usr/bin/chromium ] || skip "/usr/bin/chromium (Debian's chromium)"
[ -x /usr/bin/chromedriver ] ||
  skip "/usr/bin/chromedriver (Debian's chromium-driver)"
# Debian's python3-selenium is for Debian's python3, which may not be the
# first python3 in PATH (pyenv, a venv).
python=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null 2>&1 &&
    "$p" -c 'import selenium.webdriver' >/dev/null 2>&1; then
    python=$p
    break
  fi
done
[ -n "$python" ] || skip "Selenium for python3 (Debian's python3-selenium)"
mkdir -p "$dir"
work=$(mktemp -d)
pid=""
browser=""
cleanup() {
  [ -z "$browser" ] || kill "$browser" 2>/dev/null || true
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
"$python" "$here/dashboard.py" "http://127.0.0.1:$port/" browser-test-token \
  "$dir/dashboard.png" "$control" &
browser=$!
while kill -0 "$browser" 2>/dev/null; do
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
wait "$browser" || status=$?
browser=""
[ -z "$pid" ] || stop
# The button wrote the status table into the log of the first server.
if [ "$status" -eq 0 ] &&
  ! grep -q "ThreadPoolManager Current Status" "$work/all.log"; then
  echo "run.sh: no status table in the server's log" >&2
  status=1
fi
[ "$status" -eq 0 ] || cat "$work/all.log" >&2
exit "$status"
