#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers and the request handler (fuzz/,
# fuzz/README.md): builds the libFuzzer targets with clang, ASan and UBSan in
# build/fuzz, runs each for FUZZ_SECONDS (default 60) over a scratch copy of
# its seed corpus, and prints one summary line per target. Exits non-zero
# when any target found a crash, a leak or a timeout; the input that did it
# is kept under build/fuzz/artifacts/ and its path printed.
#
#   scripts/fuzz.sh                      # every target, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh expr protocol
#
# Environment: FUZZ_SECONDS (per target), FUZZ_JOBS (build parallelism, 2),
# FUZZ_TIMEOUT (seconds one input may take before it counts as a hang, 25).
# New inputs the fuzzer finds stay in the scratch copy, never in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(calendar expr policy_toml policy_yaml protocol)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
timeout=${FUZZ_TIMEOUT:-25}
build=build/fuzz

scripts/deps.sh
# Line tables only (-g1): crash reports keep file:line, and the build,
# most of this script's time, compiles less debug info.
CC=clang CXX=clang++ cmake -S . -B "$build" -DRETENTIOND_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]/#/fuzz_}"

# Scratch space in memory when there is some: the protocol target's SQLite
# commits cost an fsync each on a disk.
scratch_base=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && scratch_base=/dev/shm
scratch=$(mktemp -d "$scratch_base/retentiond-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
artifacts=$PWD/$build/artifacts
mkdir -p "$artifacts"

summary=()
failed=0
for name in "${targets[@]}"; do
  corpus=$scratch/$name/corpus
  mkdir -p "$corpus" "$scratch/$name/tmp"
  cp fuzz/corpus/"$name"/* "$corpus"/
  seeds=$(find "$corpus" -type f | wc -l)
  args=(-max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1
        -artifact_prefix="$artifacts/$name-")
  [ -f fuzz/"$name".dict ] && args+=(-dict=fuzz/"$name".dict)
  log=$scratch/$name/log
  echo "== fuzz_$name: ${seconds}s from $seeds seeds"
  status=0
  # The protocol target's state directory goes to the scratch space too.
  TMPDIR=$scratch/$name/tmp "$build"/fuzz/fuzz_"$name" "${args[@]}" "$corpus" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  size=$(find "$corpus" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    # The report, without libFuzzer's progress and dictionary lines.
    grep -v -E '^#[0-9]+|# Uses: |NEW_FUNC' "$log" | tail -n 100 || true
    failed=1
    kind=crash
    grep -q -E 'ERROR: libFuzzer: timeout|ALARM: working on the last Unit for' "$log" && kind=timeout
    grep -q -E 'ERROR: LeakSanitizer' "$log" && kind=leak
    grep -q -E 'ERROR: libFuzzer: out-of-memory' "$log" && kind=out-of-memory
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    result="FAILED ($kind, exit $status): ${artifact:-no artifact written}"
  fi
  summary+=("fuzz_$name: ${execs:-?} executions, corpus $size inputs ($seeds seeds), $result")
done

echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
