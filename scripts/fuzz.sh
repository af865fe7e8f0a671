#!/usr/bin/env bash
# Runs moec's libFuzzer targets.
#
#   bash scripts/fuzz.sh [SECONDS]       every target for SECONDS each
#                                        (default 600), from the build tree
#   bash scripts/fuzz.sh --run FUZZER SEEDS WORK SECONDS
#                                        one target (what ctest calls)
#
# New inputs go to build/test/fuzz/corpus-NAME; crashes to
# build/test/fuzz/crash-NAME-*. Prints executions and new coverage at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

run_one() {
  local fuzzer=$1 seeds=$2 work=$3 seconds=$4
  local name
  name=$(basename "$fuzzer")
  mkdir -p "$work"
  local log
  log=$(mktemp)
  # -rss_limit_mb: an allocation sized by an unchecked field shows up here.
  if ! "$fuzzer" "$work" "$seeds" -max_total_time="$seconds" \
      -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$(dirname "$work")/crash-${name#fuzz-}-" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "$name: FAILED (see the crash input above)"
    rm -f "$log"
    return 1
  fi
  local execs cov
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo '?')
  echo "$name: ${execs} executions in ${seconds} s, coverage ${cov} edges, corpus $(ls "$work" | wc -l) inputs, no failures"
  rm -f "$log"
}

if [[ ${1:-} == --run ]]; then
  shift
  run_one "$@"
  exit
fi

seconds=${1:-600}
build_dir=${MOEC_BUILD_DIR:-$root/build}
cmake --build "$build_dir" --target fuzz-gguf fuzz-safetensors fuzz-hf-config fuzz-bundle
status=0
for fuzzer in "$build_dir"/bin/fuzz-*; do
  name=$(basename "$fuzzer")
  name=${name#fuzz-}
  run_one "$fuzzer" "$root/test/fuzz/corpus/$name" \
    "$build_dir/test/fuzz/corpus-$name" "$seconds" || status=1
done
exit $status
