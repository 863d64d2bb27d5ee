#!/bin/sh
# run.sh — the prometheus test (meson test "prometheus"): runs scrape.py
# with python3, or exits 77 (skipped) saying why: under a sanitizer (plain
# build only: a real Prometheus adds nothing there), or when python3 or
# Prometheus (Debian's prometheus, which `./setup.sh test` installs, best
# effort) is missing.
#
#   run.sh SERVER SANITIZE
set -eu
if [ "$2" != none ]; then
  echo "prometheus test: skipped: plain build only (b_sanitize=$2)"
  exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "prometheus test: skipped: python3 is not installed" \
    "(./setup.sh test installs it)"
  exit 77
fi
exec python3 "$(dirname "$0")/scrape.py" "$@"
