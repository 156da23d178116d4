#!/usr/bin/env bash
# Fails when the man pages or the shell completions fall behind the binaries:
# every subcommand and option that `retentionctl help` lists must be in
# retentionctl(1) and completed by bash and zsh, every option of
# `retentiond --help` in retentiond(8), and every key the policy loader
# accepts (as its "unknown key" message lists them) in retentiond.toml(5).
# Usage: check_docs.sh RETENTIOND RETENTIONCTL SOURCE_DIR
set -euo pipefail

retentiond=$1
retentionctl=$2
src=$3
man=$src/docs/man
bash_completion=$src/completion/retentionctl.bash
zsh_completion=$src/completion/_retentionctl
problems=0
# `retentionctl help` also lists the methods of a daemon when one answers;
# only its own commands are wanted here, whatever runs on this machine.
export RETENTIOND_SOCKET=/nonexistent/admin.sock

missing() {
  echo "check_docs: $*" >&2
  problems=$((problems + 1))
}

# The long and short options of a --help text, one a line (--dry-run, -f).
options_of() {
  sed -n 's/^ *\(-[a-zA-Z], \)\{0,1\}\(--[a-z][a-z-]*\).*/\1\2/p' | tr -d ',' | tr ' ' '\n' | sed '/^$/d'
}

# A man page names an option or a key in bold: **--check**, **state_dir**.
in_page() {
  grep -qF -- "**$2**" "$man/$1.md"
}

# What the bash completion offers for the words given, the last one being
# completed.
bash_complete() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _retentionctl
           printf "%s\n" "${COMPREPLY[@]}"' _ "$bash_completion" retentionctl "$@"
}

commands=$("$retentionctl" help 2>/dev/null | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
[ -n "$commands" ] || missing "no commands in 'retentionctl help'"
completed_commands=$(bash_complete "")
for c in $commands; do
  in_page retentionctl.1 "$c" || missing "retentionctl.1.md: no **$c**"
  grep -qx "$c" <<<"$completed_commands" || missing "$bash_completion: does not complete the command $c"
  grep -q "^ *'$c:" "$zsh_completion" || missing "$zsh_completion: no command $c"
  completed_options=$(bash_complete "$c" -)
  for o in $("$retentionctl" help "$c" | options_of); do
    in_page retentionctl.1 "$o" || missing "retentionctl.1.md: no **$o** (retentionctl $c)"
    grep -qx -- "$o" <<<"$completed_options" || missing "$bash_completion: does not complete $o after $c"
    grep -q -- "$o[]=+[,}]" "$zsh_completion" || missing "$zsh_completion: no option $o (retentionctl $c)"
  done
done

for o in $("$retentiond" --help | options_of); do
  in_page retentiond.8 "$o" || missing "retentiond.8.md: no **$o**"
done

# A file with an unknown key at each level makes the loader list the keys
# it accepts there (and exit 1).
policy=$(mktemp --suffix=.toml)
trap 'rm -f "$policy"' EXIT
cat >"$policy" <<'TOML'
unknown_key = 1
[daemon]
state_dir = "/nonexistent"
unknown_key = 1
[[categories]]
name = "a"
purpose = "p"
legal_basis = "consent"
unknown_key = 1
phases = [ { action = "purge", at = "collected", unknown_key = 1 } ]
TOML
keys=$({ "$retentiond" --check --config "$policy" 2>&1 || true; } | sed -n 's/.*(expected one of: \(.*\))$/\1/p' | tr -d ',')
[ -n "$keys" ] || missing "retentiond --check listed no accepted keys"
for k in $keys; do
  in_page retentiond.toml.5 "$k" || missing "retentiond.toml.5.md: no **$k**"
done

if [ "$problems" -ne 0 ]; then
  echo "check_docs: $problems missing: update docs/man/*.md and completion/ with the binaries" >&2
  exit 1
fi
echo "check_docs: man pages and completions cover $(wc -w <<<"$commands") commands, their options and $(wc -w <<<"$keys") policy keys"
