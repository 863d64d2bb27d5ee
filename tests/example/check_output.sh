#!/bin/sh
# check_output.sh README PROGRAM — runs the README's example with no
# argument and fails unless every line the README shows as its output
# (the block after "<!-- readme_example.c output -->") is a line of what
# it printed, with any number in place of each number (timings differ).
set -u
readme=$1
program=$2
want=$(awk '/<!-- readme_example.c output -->/ { want = 1; next }
  want && /^```/ && !inside { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }' "$readme")
if [ -z "$want" ]; then
  echo "check_output.sh: $readme shows no output of its example" >&2
  exit 1
fi
got=$("$program" 2>/dev/null) || {
  echo "check_output.sh: $program failed" >&2
  exit 1
}
printf '%s\n' "$want" | while IFS= read -r line; do
  pattern=$(printf '%s' "$line" |
    sed -e 's/[][\.*^$+?(){}|/]/\\&/g' -e 's/[0-9][0-9]*\(\\\.[0-9][0-9]*\)\{0,1\}/[0-9]+(\\.[0-9]+)?/g')
  printf '%s\n' "$got" | grep -Eqx -- "$pattern" || {
    echo "the example printed no line like: $line" >&2
    printf 'it printed:\n%s\n' "$got" >&2
    exit 1
  }
done
