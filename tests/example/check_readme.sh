#!/bin/sh
# Fails if the C example in README.md (the block after the line
# "<!-- readme_example.c -->") differs from tests/example/readme_example.c,
# which the build compiles: the README's example always builds. The same
# for another document and example: check_readme.sh DOC SOURCE, where the
# block follows "<!-- NAME -->", NAME being SOURCE's file name.
readme=$1
source=$2
name=$(basename "$source")
extracted=$(awk -v mark="<!-- $name -->" '$0 == mark { want = 1; next }
  want && /^```c$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }' "$readme")
if [ -z "$extracted" ]; then
  echo "$readme has no block marked <!-- $name -->" >&2
  exit 1
fi
printf '%s\n' "$extracted" | diff -u "$source" - || {
  echo "$readme's example differs from $source" >&2
  exit 1
}
