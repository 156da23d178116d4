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
ctest --preset ci --timeout 300 "$@"
