#!/usr/bin/env bash
# Checks the systemd files as `cmake --install` writes them, in a scratch
# DESTDIR: ExecStart and --config name files the install put there;
# `systemd-analyze verify` prints nothing (it exits 0 even on unknown keys, so
# any output fails); `systemd-analyze security --offline=true` rates the
# service's exposure at 2.0 or lower; systemd-sysusers accepts the sysusers
# file. Needs a built tree: scripts/check-units.sh [BUILD_DIR] (default
# build/ci). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build/ci}
max_exposure=20 # tenths, as --threshold counts: 2.0

fail() {
  echo "check-units: $*" >&2
  exit 1
}

for tool in systemd-analyze systemd-sysusers; do
  command -v "$tool" >/dev/null || fail "$tool not found: scripts/deps.sh installs it (package systemd)"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage/root" cmake --install "$build" >/dev/null

service=$(find "$stage/root" -path '*/systemd/system/retentiond.service')
[ -n "$service" ] || fail "cmake --install put no retentiond.service under $stage/root"
unitdir=$(dirname "$service")
sysusers=$(find "$stage/root" -path '*/sysusers.d/retentiond.conf')
[ -n "$sysusers" ] || fail "cmake --install put no sysusers.d/retentiond.conf"

# The paths in ExecStart must be where the install put the files.
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$service")
config_path=$(sed -n 's/^ExecStart=.* --config \([^ ]*\).*/\1/p' "$service")
[ -x "$stage/root$exec_path" ] || fail "ExecStart runs $exec_path, which the install did not put there"
[ -f "$stage/root$config_path" ] || fail "ExecStart reads $config_path, which the install did not put there"

# verify checks that ExecStart is executable on this machine, so it gets a
# copy of the units whose ExecStart points into the scratch install.
mkdir "$stage/verify"
sed "s|^ExecStart=$exec_path|ExecStart=$stage/root$exec_path|" "$service" >"$stage/verify/retentiond.service"
cp "$unitdir/retentiond.socket" "$stage/verify/"
out=$(systemd-analyze verify "$stage/verify/retentiond.service" "$stage/verify/retentiond.socket" 2>&1) ||
  fail "systemd-analyze verify failed:"$'\n'"$out"
[ -z "$out" ] || fail "systemd-analyze verify is not clean:"$'\n'"$out"
echo "check-units: systemd-analyze verify: clean"

if ! out=$(systemd-analyze security --offline=true --threshold="$max_exposure" --no-pager "$service" 2>&1); then
  echo "$out" >&2
  fail "exposure above ${max_exposure%?}.${max_exposure: -1} (see the table above)"
fi
echo "check-units: $(grep -o 'Overall exposure level.*' <<<"$out")"

mkdir "$stage/sysroot"
out=$(systemd-sysusers --dry-run --root="$stage/sysroot" - <"$sysusers" 2>&1) ||
  fail "systemd-sysusers rejects $(basename "$sysusers"):"$'\n'"$out"
echo "check-units: sysusers.d file: OK"
