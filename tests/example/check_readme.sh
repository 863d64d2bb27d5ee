#!/bin/sh
# Fails if the C example in README.md (the block after the line
# "<!-- readme_example.c -->") differs from tests/example/readme_example.c,
# which the build compiles: the README's example always builds.
readme=$1
source=$2
extracted=$(awk '/<!-- readme_example.c -->/ { want = 1; next }
  want && /^```c$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }' "$readme")
if [ -z "$extracted" ]; then
  echo "README.md has no block marked <!-- readme_example.c -->" >&2
  exit 1
fi
printf '%s\n' "$extracted" | diff -u "$source" - || {
  echo "README.md's example differs from $source" >&2
  exit 1
}
