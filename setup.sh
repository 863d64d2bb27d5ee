#!/bin/sh
# setup.sh — installs what tpool needs on Debian 12 (only what is missing,
# with apt-get, printing apt's summary: what it installs and how much),
# builds it, then runs the demo or the test suite, or installs the library.
#
#   ./setup.sh run      installs the build packages below and curl, jq (the
#                       README's examples use them); builds libtpool,
#                       libtpool_http and tpool-server (no tests); starts
#                       tpool-server with ./config.ini
#   ./setup.sh test     installs the build packages, libcmocka-dev,
#                       libuv1-dev and python3; then, best effort, the test
#                       tools: prometheus (promtool and the server that the
#                       prometheus test starts) and, in a plain build only,
#                       chromium, chromium-driver and python3-selenium (the
#                       dashboard's browser test); builds everything and
#                       runs the whole test suite
#   ./setup.sh build    installs the build packages and libcmocka-dev;
#                       builds everything (tpool-bench too if libuv1-dev is
#                       installed)
#   ./setup.sh fuzz     installs the build packages, libcmocka-dev, clang
#                       and libclang-rt-14-dev; builds the fuzz targets with
#                       libFuzzer, AddressSanitizer and
#                       UndefinedBehaviorSanitizer, and runs each for
#                       FUZZ_SECONDS (default 60)
#   ./setup.sh install  installs gcc, libc6-dev, meson, ninja-build,
#                       pkg-config, libevent-dev, libinih-dev and
#                       libjansson-dev; builds libtpool and libtpool_http
#                       (release, in build-install) and installs them with
#                       their headers and pkg-config files under /usr/local
#                       (libraries in /usr/local/lib), then runs ldconfig:
#                       `pkg-config --cflags --libs tpool` works at once
#
# On a fresh Debian 12 (debootstrap --variant=minbase, as CI's fresh-root
# stage checks), `run` installed 89 packages (68 MB to download, 268 MB on
# disk); `test` after it 4 more (0.3 MB), then prometheus with 13 others
# (23 MB; 332 MB) and the browser test's 182 (215 MB; 759 MB).
#
# The build packages: gcc libc6-dev meson ninja-build pkg-config
# libevent-dev libinih-dev libjansson-dev, and libsqlite3-dev libssl-dev
# for tpool-server's demo work kinds. A required package that cannot be
# installed stops setup.sh (exit 1). A test tool that cannot be installed
# is reported and skipped: the test that needs it exits 77 (skipped) and
# says why; nothing else depends on it, except that the metrics and server
# tests check /metrics with promtool and fail without it.
#
# TPOOL_BUILD       build directory (default: build; build-fuzz for fuzz,
#                   build-install for install)
# TPOOL_SANITIZE    meson's b_sanitize: none (default), address,undefined
#                   or thread — a separate build directory for each is best
# TPOOL_MESON_ARGS  more arguments for `meson setup` and `meson configure`,
#                   split at blanks (no quoting), e.g.
#                   "-Dwerror=true --buildtype=release"
# TPOOL_JOBS        ninja's -j (default: ninja's own, CPUs + 2)
set -eu
cd "$(dirname "$0")"

cmd=${1:-build}
case $cmd in
run | test | build | fuzz | install) ;;
*)
  echo "usage: $0 [run|test|build|fuzz|install]" >&2
  exit 2
  ;;
esac
sanitize=${TPOOL_SANITIZE:-none}
[ "$cmd" != fuzz ] || sanitize=address,undefined
[ "$cmd" != install ] || sanitize=none

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# ---- packages -------------------------------------------------------------

# hiredis builds libtpool_redis (the [redis] queue); libtpool never links
# it.
required="gcc libc6-dev meson ninja-build pkg-config libevent-dev \
libinih-dev libjansson-dev libhiredis-dev"
# tpool-server's demo work kinds: SQLite ("query") and OpenSSL's SHA-256
# ("hash"); neither library of tpool links them.
[ "$cmd" = install ] || required="$required libsqlite3-dev libssl-dev"
case $cmd in
run) required="$required curl jq" ;;
# libuv builds tests/bench/tpool-bench only, which compares tpool with
# libuv's uv_queue_work(); libtpool itself never links libuv.
# The Redis tests start their own redis-server and drive it with
# Debian's python3-redis.
test) required="$required libcmocka-dev libuv1-dev python3 redis-server \
python3-redis" ;;
build) required="$required libcmocka-dev" ;;
# Fuzzing needs clang and its libFuzzer runtime.
fuzz) required="$required libcmocka-dev clang libclang-rt-14-dev" ;;
esac

# Test tools, best effort (`test` only), each group installed on its own.
prom_tools=""
browser_tools=""
if [ "$cmd" = test ]; then
  prom_tools="prometheus"
  # The dashboard's browser test runs in the plain build only.
  [ "$sanitize" != none ] ||
    browser_tools="chromium chromium-driver python3-selenium"
fi

missing() { # prints those of the packages $* that are not installed
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
      grep -q "ok installed" || printf ' %s' "$p"
  done
}

guard=""
unguard() {
  [ -z "$guard" ] || $sudo rm -f "$guard"
  guard=""
}
trap unguard EXIT
trap 'unguard; exit 130' INT
trap 'unguard; exit 143' TERM

updated=no
apt_install() { # $1: what for; the rest: packages. Returns apt's status.
  what=$1
  shift
  echo "setup.sh: installing ($what):$*"
  if [ -z "$guard" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    # No package's daemon starts during the install (prometheus's among
    # them: only promtool and the binary the test starts are wanted).
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null
    $sudo chmod 755 "$guard"
  fi
  if [ "$updated" = no ]; then
    $sudo apt-get update -q || echo "setup.sh: apt-get update failed" >&2
    updated=yes
  fi
  # No -q: apt's summary says how many packages and how many MB.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y \
    --no-install-recommends "$@"
}

need=$(missing $required)
if [ -n "$need" ]; then
  apt_install required $need || {
    echo "setup.sh: could not install:$need" >&2
    exit 1
  }
fi
if [ -n "$prom_tools" ]; then
  need=$(missing $prom_tools)
  if [ -n "$need" ]; then
    if apt_install "test tools, for promtool and the prometheus test" $need
    then
      if [ -d /run/systemd/system ]; then
        $sudo systemctl disable prometheus >/dev/null 2>&1 || true
      fi
    else
      echo "setup.sh: could not install$need: the prometheus test will" \
        "be skipped, and the metrics and server tests fail without" \
        "promtool" >&2
    fi
  fi
fi
if [ -n "$browser_tools" ]; then
  need=$(missing $browser_tools)
  if [ -n "$need" ]; then
    apt_install "test tools, for the dashboard's browser test" $need ||
      echo "setup.sh: could not install$need: the dashboard test will" \
        "be skipped" >&2
  fi
fi
unguard

# ---- build ----------------------------------------------------------------

set -f # TPOOL_MESON_ARGS is split at blanks, never globbed
extra=${TPOOL_MESON_ARGS:-}
case $cmd in
run) opts="-Dhttp=enabled -Dredis=enabled -Dserver=enabled -Dtests=disabled -Dbench=disabled" ;;
test) opts="-Dhttp=enabled -Dredis=enabled -Dserver=enabled -Dtests=enabled -Dbench=enabled" ;;
build)
  opts="-Dhttp=enabled -Dredis=enabled -Dserver=enabled -Dtests=enabled"
  if [ -z "$(missing libuv1-dev)" ]; then
    opts="$opts -Dbench=enabled"
  else
    opts="$opts -Dbench=disabled"
  fi
  ;;
# Shared libraries cannot refer to clang's sanitizer runtime, which only
# executables link: hence b_lundef=false.
fuzz) opts="-Dhttp=enabled -Dredis=enabled -Dserver=enabled -Dtests=enabled -Dbench=disabled \
-Dfuzz=true -Db_lundef=false" ;;
install) opts="--buildtype=release --prefix=/usr/local --libdir=lib \
-Dhttp=enabled -Dredis=enabled -Dserver=disabled -Dtests=disabled -Dbench=disabled" ;;
esac

case $cmd in
fuzz) build=${TPOOL_BUILD:-build-fuzz} ;;
install) build=${TPOOL_BUILD:-build-install} ;;
*) build=${TPOOL_BUILD:-build} ;;
esac
if [ -f "$build/build.ninja" ]; then
  meson configure "$build" $opts -Db_sanitize="$sanitize" $extra
elif [ "$cmd" = fuzz ]; then
  CC=clang meson setup "$build" $opts -Db_sanitize="$sanitize" $extra
else
  meson setup "$build" $opts -Db_sanitize="$sanitize" $extra
fi
ninja -C "$build" ${TPOOL_JOBS:+-j "$TPOOL_JOBS"}
set +f

# Sanitizers slow the stress tests down several times over.
multiplier=1
[ "$sanitize" = none ] || multiplier=4

case $cmd in
run) exec "$build/server/tpool-server" -c config.ini ;;
test) exec meson test -C "$build" --print-errorlogs \
  --timeout-multiplier "$multiplier" ;;
fuzz) exec meson test -C "$build" --suite fuzz --print-errorlogs ;;
install)
  $sudo meson install -C "$build"
  $sudo ldconfig
  # /usr/local/lib is in the loader's and pkg-config's default paths on
  # Debian; say so if it is not here.
  if ! pkg-config --exists tpool; then
    echo "setup.sh: pkg-config does not find tpool.pc in" \
      "/usr/local/lib/pkgconfig: add it to PKG_CONFIG_PATH" >&2
    exit 1
  fi
  if ! /sbin/ldconfig -p | grep -q 'libtpool\.so\.0 '; then
    echo "setup.sh: the loader does not find libtpool.so.0 in" \
      "/usr/local/lib: add it to /etc/ld.so.conf.d" >&2
    exit 1
  fi
  echo "setup.sh: installed libtpool, libtpool_http and libtpool_redis in /usr/local/lib;" \
    "build with: cc app.c \$(pkg-config --cflags --libs tpool)"
  ;;
esac
