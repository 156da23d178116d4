#!/usr/bin/env bash
# Installs what is missing, builds, and runs retentiond in the foreground on
# the bundled example policy, with its state in ./.state (embedded SQLite).
# Stop it with Ctrl-C. Extra arguments go to retentiond (e.g. --now 2030-01-01).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release

state="$PWD/.state"
socket="$state/admin.sock"
mkdir -p "$state"
chmod 700 "$state"
cat <<MSG

retentiond is starting on config/retentiond.toml, state in $state.
In another terminal:

  export RETENTIOND_SOCKET=$socket
  build/release/daemon/retentionctl status
  build/release/daemon/retentionctl put crm-42 --subject alice@example.com --category l360.prospect -d last_contact=2025-06-01
  build/release/daemon/retentionctl explain crm-42
  build/release/daemon/retentionctl sweep

MSG
exec build/release/daemon/retentiond --config config/retentiond.toml --state-dir "$state" --socket "$socket" "$@"
