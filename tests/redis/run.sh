#!/bin/sh
# run.sh — the Redis Streams durable queue's system tests (meson test
# --suite redis): runs test_redis.py CASE, which starts its own
# redis-server and tpool-server(s) on 127.0.0.1 and drives them with
# redis-py and HTTP.
#
#   run.sh SERVER SANITIZE CASE
#
# SERVER is tpool-server (built with [redis]), SANITIZE the build's
# b_sanitize (counts are scaled down under a sanitizer), CASE one of
# redis_replicas, redis_poison, redis_restart, redis_burst, redis_routes.
# Needs redis-server (Debian's redis-server) and a python3 with redis-py
# (Debian's python3-redis, for /usr/bin/python3: the first python3 in PATH
# may be a pyenv or venv one without it), which `./setup.sh test`
# installs. Exits 77 (skipped), saying why, when one of them is missing.
set -eu
if [ $# -ne 3 ]; then
  echo "usage: run.sh SERVER SANITIZE CASE" >&2
  exit 2
fi
skip() {
  echo "redis test $3: skipped: $1 is not installed (./setup.sh test" \
    "installs redis-server and python3-redis)"
  exit 77
}
redis=""
for r in /usr/bin/redis-server redis-server; do
  if command -v "$r" >/dev/null 2>&1; then
    redis=$(command -v "$r")
    break
  fi
done
[ -n "$redis" ] || skip "redis-server (Debian's redis-server)" "$@"
python=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null 2>&1 &&
    "$p" -c 'import redis' >/dev/null 2>&1; then
    python=$p
    break
  fi
done
[ -n "$python" ] || skip "redis-py for python3 (Debian's python3-redis)" "$@"
TPOOL_SERVER=$1
TPOOL_SANITIZE=$2
REDIS_SERVER=$redis
export TPOOL_SERVER TPOOL_SANITIZE REDIS_SERVER
exec "$python" "$(dirname "$0")/test_redis.py" "$3"
