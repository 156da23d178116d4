#!/usr/bin/env bash
# The test command: installs what is missing, builds with warnings as
# errors, checks the systemd units, and runs the whole test suite. CI runs
# exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset ci
cmake --build --preset ci
scripts/check-units.sh build/ci
# Two at a time, as the machine has two cores: the tests wait on daemons,
# fsyncs and child processes more than they compute.
ctest --preset ci -j2 --timeout 300 "$@"
