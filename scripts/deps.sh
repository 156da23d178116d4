#!/usr/bin/env bash
# Installs the Debian 12 packages retentiond needs to build and test, only
# those that are missing. Uses sudo when not run as root.
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libboost-dev libsqlitecpp-dev libsqlite3-dev libspdlog-dev libcxxopts-dev
  libgtest-dev libtomlplusplus-dev libyaml-cpp-dev nlohmann-json3-dev
  libssl-dev libsystemd-dev
  sqlite3
  # scripts/check-units.sh: systemd-analyze and systemd-sysusers (systemd),
  # and kill (procps), the unit's ExecReload, which verify looks up.
  systemd procps
  # scripts/fuzz.sh: clang with libFuzzer and the sanitizer runtimes.
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
