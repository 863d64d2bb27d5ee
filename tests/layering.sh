#!/bin/sh
# layering.sh — checks that the files of pools/ call each other one way.
#
#   layering.sh ARCHIVE [DIR]
#
# ARCHIVE is the static library the pools/ and core/ objects are compiled
# into (libtpool_internal.a). Every object is a node; a symbol one object
# uses and another defines is an edge between them. Calls between two
# files of pools/ must run one way, except between pool.c and worker.c
# (the pool and its workers), and the files of pools/ with those two
# counted as one must form no cycle. core/ files may be called by pools/
# but must call nothing in pools/. Prints the edges it found, and each
# violation; exits 1 if there is one. DIR (default: pools) names the
# folder whose objects are checked.
set -eu
archive=$1
[ -f "$archive" ] || {
  echo "layering.sh: no archive $archive" >&2
  exit 1
}
command -v nm >/dev/null || {
  echo "layering.sh: needs nm (binutils)" >&2
  exit 77
}

# "object symbol kind" for every global symbol; meson names objects
# after their source: pools_pool.c.o.
nm -A "$archive" 2>/dev/null | awk '
  {
    n = split($1, part, ":"); obj = part[n - 1]
    sub(/^.*\//, "", obj); sub(/\.o$/, "", obj)
    dir = obj; sub(/_.*$/, "", dir); sub(/^[a-z]+_/, "", obj)
    obj = dir "/" obj
    if (NF == 3 && $2 ~ /^[TDBR]$/) print obj, $3, "def"
    else if (NF == 3 && $2 == "U") print obj, $3, "use"
    else if (NF == 2 && $1 ~ /U$/) print obj, $2, "use"
  }' | awk '
  $3 == "def" { owner[$2] = $1; next }
  { uses[NR] = $1 " " $2 }
  END {
    for (i in uses) {
      split(uses[i], u, " ")
      o = owner[u[2]]
      if (o != "" && o != u[1]) print u[1], o
    }
  }' | sort -u >"${TMPDIR:-/tmp}/layering.$$"
edges="${TMPDIR:-/tmp}/layering.$$"
trap 'rm -f "$edges"' EXIT

echo "calls between files (caller -> callee):"
sed 's/ / -> /' "$edges"

awk '
  function unit(f) { return (f == "pools/pool.c" || f == "pools/worker.c") ? "pools/pool.c+worker.c" : f }
  { edge[$1, $2] = 1; from[NR] = $1; to[NR] = $2; n = NR }
  END {
    bad = 0
    for (i = 1; i <= n; i++) {
      a = from[i]; b = to[i]
      if (a ~ /^core\// && b ~ /^pools\//) {
        print "core calls pools/: " a " -> " b; bad = 1
      }
      pair = (a == "pools/pool.c" && b == "pools/worker.c") ||
             (a == "pools/worker.c" && b == "pools/pool.c")
      if (!pair && (b, a) in edge && a < b) {
        print "both ways: " a " <-> " b; bad = 1
      }
      ua = unit(a); ub = unit(b)
      if (ua != ub) { g[ua, ub] = 1; node[ua] = 1; node[ub] = 1 }
    }
    # A cycle among the units: repeatedly drop units with no outgoing edge.
    do {
      changed = 0
      for (v in node) {
        out = 0
        for (w in node) if ((v, w) in g) { out = 1; break }
        if (!out) { delete node[v]; changed = 1 }
      }
    } while (changed)
    left = ""
    for (v in node) left = left " " v
    if (left != "") { print "a cycle among, or above, these:" left; bad = 1 }
    exit bad
  }' "$edges"
