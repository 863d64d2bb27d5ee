#!/bin/sh
# setup.sh — installs what tpool needs on Debian 12 (only what is missing),
# builds it, then runs the demo or the test suite.
#
#   ./setup.sh run     install, build, start tpool-server with ./config.ini
#   ./setup.sh test    install, build, run the whole test suite
#   ./setup.sh build   install and build only
#   ./setup.sh fuzz    install clang, build the fuzz targets with libFuzzer,
#                      AddressSanitizer and UndefinedBehaviorSanitizer, and
#                      run each for FUZZ_SECONDS (default 60)
#
# TPOOL_BUILD     build directory (default: build; build-fuzz for fuzz)
# TPOOL_SANITIZE  meson's b_sanitize: none (default), address,undefined or
#                 thread — a separate build directory for each is best
set -eu
cd "$(dirname "$0")"

packages="gcc libc6-dev meson ninja-build pkg-config libevent-dev \
libinih-dev libjansson-dev libcmocka-dev"
# tpool-server's demo work kinds: SQLite ("query") and OpenSSL's SHA-256
# ("hash"); libtpool itself links neither.
packages="$packages libsqlite3-dev libssl-dev"
# libuv builds tests/bench/tpool-bench only, which compares tpool with
# libuv's uv_queue_work(); libtpool itself never links libuv.
packages="$packages libuv1-dev"
# The tests check /metrics with promtool, from Debian's prometheus package.
[ "${1:-build}" = test ] && packages="$packages prometheus"
# Fuzzing needs clang and its libFuzzer runtime.
[ "${1:-build}" = fuzz ] && packages="$packages clang libclang-rt-14-dev"
# The dashboard's browser test (plain build only): Chromium, driven from
# node by playwright-core (from npm, below).
browser=no
[ "${1:-build}" = test ] && [ "${TPOOL_SANITIZE:-none}" = none ] && browser=yes
[ "$browser" = yes ] && packages="$packages chromium"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
# node and npm may come from elsewhere than Debian (nodesource): only
# missing commands are installed.
if [ "$browser" = yes ]; then
  command -v node >/dev/null || missing="$missing nodejs"
  command -v npm >/dev/null || missing="$missing npm"
fi
if [ -n "$missing" ]; then
  echo "setup.sh: installing$missing"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  # Only promtool is wanted from prometheus: a policy-rc.d that says no
  # keeps the package's daemon from starting during the install.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null
    $sudo chmod 755 "$guard"
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
    --no-install-recommends $missing || {
    [ -z "$guard" ] || $sudo rm -f "$guard"
    exit 1
  }
  [ -z "$guard" ] || $sudo rm -f "$guard"
  case "$missing" in
  *prometheus*)
    if [ -d /run/systemd/system ]; then
      $sudo systemctl disable prometheus >/dev/null 2>&1 || true
    fi
    ;;
  esac
fi

if [ "${1:-build}" = fuzz ]; then
  build=${TPOOL_BUILD:-build-fuzz}
  # Shared libraries cannot refer to clang's sanitizer runtime, which only
  # executables link: hence b_lundef=false.
  [ -f "$build/build.ninja" ] ||
    CC=clang meson setup "$build" -Dfuzz=true -Db_lundef=false \
      -Db_sanitize=address,undefined -Dbench=disabled
  ninja -C "$build"
  exec meson test -C "$build" --suite fuzz --print-errorlogs
fi

build=${TPOOL_BUILD:-build}
sanitize=${TPOOL_SANITIZE:-none}
if [ -f "$build/build.ninja" ]; then
  meson configure "$build" -Db_sanitize="$sanitize"
else
  meson setup "$build" -Db_sanitize="$sanitize"
fi
ninja -C "$build"

if [ "$browser" = yes ] &&
  [ ! -d "$build/tests/browser/node_modules/playwright-core" ]; then
  mkdir -p "$build/tests/browser"
  npm install --prefix "$build/tests/browser" --no-audit --no-fund \
    --loglevel=error playwright-core@1
fi

# Sanitizers slow the stress tests down several times over.
multiplier=1
[ "$sanitize" = none ] || multiplier=4

case "${1:-build}" in
run) exec "$build/http/tpool-server" -c config.ini ;;
test) exec meson test -C "$build" --print-errorlogs \
  --timeout-multiplier "$multiplier" ;;
build) ;;
*)
  echo "usage: $0 [run|test|build|fuzz]" >&2
  exit 2
  ;;
esac
