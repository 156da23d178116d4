#!/usr/bin/env bash
# The whole test suite again, built with AddressSanitizer and
# UndefinedBehaviorSanitizer (any report fails the test: -fno-sanitize-recover).
# CI runs it after scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset asan
cmake --build --preset asan
ctest --test-dir build/asan -j2 --timeout 300 --output-on-failure "$@"
