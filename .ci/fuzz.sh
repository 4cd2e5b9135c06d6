#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 20s), one
# after the other. `go test` alone runs only the seed corpora (the f.Add
# seeds and testdata/fuzz/); this explores further. A failing input is
# written to the package's testdata/fuzz/<Target>/ and the script stops:
# commit that file with the fix, so the case stays in the seed corpus.
#
#   bash .ci/fuzz.sh                     # every target, 20s each
#   FUZZTIME=5m bash .ci/fuzz.sh FuzzParse FuzzCloseMessage
#
# FUZZMINIMIZE bounds how long each new interesting input is minimised:
# go test's default, 60s, would eat a short FUZZTIME whole.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-20s}
FUZZMINIMIZE=${FUZZMINIMIZE:-5s}

# Targets are found in the sources: func FuzzXxx(f *testing.F) in a
# _test.go file, per package directory.
found=0
while IFS= read -r dir; do
  for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' "$dir"/*_test.go); do
    if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then
      continue
    fi
    found=$((found + 1))
    echo "== $name ($dir) for $FUZZTIME"
    if ! go test "$dir" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE"; then
      # A real failure leaves its input in testdata/fuzz, so the target
      # fails again on its seed corpus. If it passes, the fuzzing engine
      # itself gave up (a worker hung on a loaded machine): say so, go on.
      go test "$dir" -run "^${name}\$" -count=1
      echo "warning: $name: the fuzzing engine failed but no failing input was found" >&2
    fi
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)

if [ "$found" -eq 0 ]; then
  echo "no fuzz target matched: $*" >&2
  exit 1
fi
