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
  # The PostgreSQL backend: libpq (client), and the server whose initdb and
  # pg_ctl the tests run in a temporary directory (tests/support/pg_cluster).
  libpq-dev postgresql
  # scripts/check-units.sh: systemd-analyze and systemd-sysusers (systemd),
  # and kill (procps), the unit's ExecReload, which verify looks up.
  systemd procps
  # scripts/fuzz.sh: clang with libFuzzer and the sanitizer runtimes.
  clang libclang-rt-14-dev
  # The man pages are built from docs/man/*.md by pandoc; man-db's `man -l`
  # opens them in scripts/check-package.sh.
  pandoc man-db
  # scripts/check-package.sh: cpack's shlibdeps (dpkg-shlibdeps, in dpkg-dev),
  # lintian, bash-completion, whose loader must find the completion file, and
  # zsh, which must parse the zsh completion.
  dpkg-dev lintian bash-completion zsh
  # tests/ctl/report_browser_test.cpp renders `retentionctl report`'s HTML
  # in headless Chromium: screenshot, DOM (bars counted) and console errors.
  chromium
  # tests/integration/metrics_test.cpp checks the /metrics text with
  # promtool, which Debian ships in the prometheus package (the server comes
  # with it; the tests never start it).
  prometheus
  # tests/integration/proof_test.cpp verifies receipts and checkpoints with
  # an Ed25519 implementation other than the daemon's: Python's
  # `cryptography` package, and the `openssl` command line.
  python3 python3-cryptography openssl
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
