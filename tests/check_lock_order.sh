#!/bin/sh
# check_lock_order.sh HEADER DESIGN — fails if the lock order in
# docs/design.md (the block after "<!-- lock order: ... -->") differs from
# the one the code states at the top of pools/pools_internal.h.
set -u
header=$1
design=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^ \* Lock order \(every lock/ { on = 1 }
  on && /^ \*\/$/ { exit }
  on { sub(/^ \* ?/, ""); print }' "$header" >"$tmp/code"
awk '/<!-- lock order: / { want = 1; next }
  want && /^```/ && !inside { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }' "$design" >"$tmp/doc"
if [ ! -s "$tmp/code" ] || [ ! -s "$tmp/doc" ]; then
  echo "check_lock_order.sh: no lock order found in $header or $design" >&2
  exit 1
fi
diff -u "$tmp/code" "$tmp/doc" || {
  echo "the lock order in $design differs from $header" >&2
  exit 1
}
