#!/usr/bin/env bash
# Run CI as CI runs it (a fresh clone of HEAD, CI=true, no standard input) several times in a row
# while CPU-bound processes compete for the cores, the way a shared machine does.
#
#   scripts/ci-under-load.sh [RUNS=3] [BURNERS=2]
#
# Prints the wall time and the pytest summary of each run; exits non-zero at the first red run.
set -euo pipefail
runs="${1:-3}"
burners="${2:-2}"
top="$(git rev-parse --show-toplevel)"
work="$(mktemp -d -t convlens-ci-XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 "$burners"); do
  python3 -c 'while True: pass' &
  pids+=("$!")
done
echo "== $burners CPU-bound processes running: ${pids[*]}"

for run in $(seq 1 "$runs"); do
  clone="$work/run-$run"
  git clone --quiet "$top" "$clone"
  start=$(date +%s)
  if (cd "$clone" && CI=true bash .ci/run </dev/null >"$work/run-$run.log" 2>&1); then
    status=passed
  else
    status=FAILED
  fi
  seconds=$(( $(date +%s) - start ))
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$work/run-$run.log" | tail -n 1 || true)
  printf '== run %s: %s in %dm%02ds (%s)\n' "$run" "$status" $((seconds / 60)) $((seconds % 60)) "$summary"
  if [ "$status" != passed ]; then
    cp "$work/run-$run.log" "$top/ci-under-load-run-$run.log"
    echo "   log kept at $top/ci-under-load-run-$run.log"
    exit 1
  fi
  rm -rf "$clone"
done
