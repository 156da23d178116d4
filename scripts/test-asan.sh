#!/usr/bin/env bash
# The whole test suite again, built with AddressSanitizer and
# UndefinedBehaviorSanitizer (any report fails the test: -fno-sanitize-recover).
# CI runs it after scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset asan
cmake --build --preset asan
# Line tables only (-g1, CMAKE_CXX_FLAGS_DEBUG of the preset): reports keep
# file:line, and the build, CI's longest stage, compiles less debug info.
# -O1, as the ASan documentation advises: at -O0 a 5,000-record put_many took
# over 10 s and the suite most of CI's time budget. The crash harness runs 50
# kill points here, and so does the PostgreSQL one (200 each in scripts/test.sh): under ASan it looks for memory
# errors in the restart paths, which 50 kills cover. The bench label is left
# out: its figures mean nothing under ASan, and scripts/test.sh runs
# bench_quick on the optimised build.
ctest --test-dir build/asan -j2 --timeout 300 --output-on-failure -LE bench "$@"
