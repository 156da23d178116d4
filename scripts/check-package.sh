#!/usr/bin/env bash
# Builds the Debian package from a built tree and checks it the way an
# operator would meet it: lintian finds no error; dpkg installs it into a
# scratch root (never the running system) with the files in their places;
# the installed retentiond validates the installed policy; the man pages
# open with `man -l`; bash completes the subcommands; dpkg purges it.
# scripts/check-package.sh [BUILD_DIR] (default build/ci, as scripts/test.sh
# leaves it). Prints one line per check and a summary; exits non-zero when
# any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build/ci}
started=$SECONDS
checks=0
failed=0

ok() {
  checks=$((checks + 1))
  echo "check-package: ok: $*"
}
bad() {
  checks=$((checks + 1))
  failed=$((failed + 1))
  echo "check-package: FAIL: $*" >&2
}
fatal() {
  echo "check-package: $*" >&2
  exit 1
}
# check DESCRIPTION COMMAND...: runs the command, quietly, as one check.
check() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}

for tool in cpack dpkg dpkg-deb dpkg-shlibdeps lintian man bash; do
  command -v "$tool" >/dev/null || fatal "$tool not found: scripts/deps.sh installs it"
done
[ -f "$build/CMakeCache.txt" ] || fatal "$build is not a configured build tree (run scripts/test.sh first)"

# The unit's ExecStart and the policy's place under /etc are fixed when the
# tree is configured, so the package needs the prefix /usr. Nothing compiled
# depends on the prefix: changing it rewrites the unit and the install
# scripts, and rebuilds nothing.
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [ "$prefix" != /usr ]; then
  echo "check-package: configuring $build with the prefix /usr (it had $prefix)"
  cmake -DCMAKE_INSTALL_PREFIX=/usr "$build" >/dev/null
fi
cmake --build "$build" --target retentiond retentionctl man >/dev/null

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# --- the package ---------------------------------------------------------
(cd "$build" && cpack -G DEB) >"$stage/cpack.log" 2>&1 || {
  cat "$stage/cpack.log" >&2
  fatal "cpack -G DEB failed"
}
deb=$(sed -n 's/^CPack: - package: \(.*\.deb\) generated\.$/\1/p' "$stage/cpack.log")
[ -f "$deb" ] || fatal "cpack wrote no .deb (see its output above)"
version=$(dpkg-deb -f "$deb" Version)
arch=$(dpkg --print-architecture)
if [ "$(basename "$deb")" = "retentiond_${version}_${arch}.deb" ]; then
  ok "package $(basename "$deb")"
else
  bad "package named $(basename "$deb"), not retentiond_${version}_${arch}.deb"
fi
for field in Maintainer Section Depends Description; do
  value=$(dpkg-deb -f "$deb" "$field")
  if [ -n "$value" ]; then ok "$field: ${value%%$'\n'*}"; else bad "no $field field"; fi
done
[ "$(dpkg-deb -f "$deb" Section)" = admin ] || bad "Section is not admin"
if dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles 2>/dev/null | grep -qx /etc/retentiond/retentiond.toml; then
  ok "conffile /etc/retentiond/retentiond.toml"
else
  bad "/etc/retentiond/retentiond.toml is not a conffile"
fi

# The dependencies shlibdeps computed must hold on this machine, whose
# libraries the installed binaries below run with (the scratch root has
# none). apt resolves them as it would for `apt install ./retentiond.deb`,
# virtual packages included (libspdlog1.10 provides libspdlog1.10-fmt9).
depends_met() {
  apt-get satisfy --simulate "$(dpkg-deb -f "$deb" Depends)" 2>&1 | grep -q ' 0 newly installed'
}
check "Depends are installed on this machine" depends_met

# --- lintian -------------------------------------------------------------
lintian_status=0
lintian --fail-on error "$deb" >"$stage/lintian.log" 2>&1 || lintian_status=$?
lintian_errors=$(grep -c '^E: ' "$stage/lintian.log" || true)
lintian_warnings=$(grep -c '^W: ' "$stage/lintian.log" || true)
sed 's/^/  lintian: /' "$stage/lintian.log"
if [ "$lintian_status" -eq 0 ] && [ "$lintian_errors" -eq 0 ]; then
  ok "lintian: $lintian_errors errors, $lintian_warnings warnings"
else
  bad "lintian: $lintian_errors errors, $lintian_warnings warnings (exit $lintian_status)"
fi

# --- install into a scratch root -----------------------------------------
# dpkg --root installs under $root with its own database there. The root has
# no libc, hence --force-depends; --force-script-chrootless runs the
# maintainer scripts without chroot(2), with DPKG_ROOT=$root, which the
# package's postinst and postrm honour: users go into $root/etc/passwd and
# the running systemd is not told.
root=$stage/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg_root() {
  dpkg --root="$root" --log="$stage/dpkg.log" --force-depends --force-script-chrootless "$@"
}
if dpkg_root -i "$deb" >"$stage/install.log" 2>&1; then
  ok "dpkg --root installs it"
else
  sed 's/^/  dpkg: /' "$stage/install.log" >&2
  bad "dpkg --root -i failed"
fi
check "dpkg says it is installed" \
  bash -c '[ "$(dpkg-query --admindir="$1/var/lib/dpkg" -W -f="\${Status}" retentiond)" = "install ok installed" ]' _ "$root"

files=(
  /usr/sbin/retentiond
  /usr/bin/retentionctl
  /etc/retentiond/retentiond.toml
  /usr/lib/systemd/system/retentiond.service
  /usr/lib/systemd/system/retentiond.socket
  /usr/lib/sysusers.d/retentiond.conf
  /usr/share/man/man8/retentiond.8.gz
  /usr/share/man/man1/retentionctl.1.gz
  /usr/share/man/man5/retentiond.toml.5.gz
  /usr/share/bash-completion/completions/retentionctl
  /usr/share/zsh/vendor-completions/_retentionctl
  /usr/share/doc/retentiond/copyright
  /usr/share/doc/retentiond/changelog.gz
  /usr/share/doc/retentiond/README.md
  /usr/share/doc/retentiond/docs/operations.md
  /usr/share/doc/retentiond/examples/retentiond.toml
)
for f in "${files[@]}"; do
  check "installed $f" test -f "$root$f"
done
check "/usr/sbin/retentiond is executable" test -x "$root/usr/sbin/retentiond"
check "/usr/bin/retentionctl is executable" test -x "$root/usr/bin/retentionctl"
check "postinst created the user retentiond (sysusers, in the root)" grep -q '^retentiond:' "$root/etc/passwd"
check "postinst created the group retention-admin" grep -q '^retention-admin:' "$root/etc/group"

# The unit must run the binary and read the policy that the package ships.
service=$root/usr/lib/systemd/system/retentiond.service
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$service" 2>/dev/null || true)
config_path=$(sed -n 's/^ExecStart=.* --config \([^ ]*\).*/\1/p' "$service" 2>/dev/null || true)
check "ExecStart runs $exec_path, which the package ships" test -x "$root$exec_path"
check "ExecStart reads $config_path, which the package ships" test -f "$root$config_path"

# --check reads only the policy file: the state directory, socket and secret
# it names are not opened, so the file's /var/lib and /run paths need no
# prefix. The config is given by its path in the root.
if out=$("$root/usr/sbin/retentiond" --check --config "$root/etc/retentiond/retentiond.toml" 2>&1); then
  ok "installed retentiond --check on the installed policy: $(grep -o '[0-9]* categories' <<<"$out")"
else
  echo "$out" | sed 's/^/  retentiond: /' >&2
  bad "installed retentiond --check on the installed policy"
fi
check "installed retentionctl --version" "$root/usr/bin/retentionctl" --version

# --- man pages -----------------------------------------------------------
for page in man8/retentiond.8.gz man1/retentionctl.1.gz man5/retentiond.toml.5.gz; do
  file=$root/usr/share/man/$page
  if text=$(MANWIDTH=80 man -l "$file" 2>/dev/null) && grep -q '^NAME' <<<"$text" &&
    [ "$(wc -l <<<"$text")" -gt 40 ]; then
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$file" 2>&1 >/dev/null || true)
    if [ -z "$warnings" ]; then
      ok "man -l $(basename "$page" .gz): $(wc -l <<<"$text") lines"
    else
      bad "man -l $(basename "$page" .gz): groff warns: $warnings"
    fi
  else
    bad "man -l $(basename "$page" .gz) failed or is nearly empty"
  fi
done

# --- completion ----------------------------------------------------------
bash_completion=$root/usr/share/bash-completion/completions/retentionctl
# complete WORD...: what the installed bash completion offers for the last word.
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _retentionctl
           printf "%s\n" "${COMPREPLY[@]}"' _ "$bash_completion" retentionctl "$@"
}
words=$(complete_words "" 2>&1 || true)
if grep -qx status <<<"$words" && grep -qx plan <<<"$words"; then
  ok "bash completes the subcommands: $(tr '\n' ' ' <<<"$words")"
else
  bad "bash completion of 'retentionctl ': got '$(tr '\n' ' ' <<<"$words")'"
fi
check "bash completes 'retentionctl pl' to plan" bash -c '[ "$1" = plan ]' _ "$(complete_words pl)"
check "bash completes --reason after erase" grep -qx -- --reason <<<"$(complete_words erase --)"
# bash-completion loads completions/<command> from XDG_DATA_DIRS on first
# use: pointed at the root, it must find the package's file by its name.
if [ -f /usr/share/bash-completion/bash_completion ]; then
  check "bash-completion loads the file for retentionctl from the package's directory" \
    env XDG_DATA_DIRS="$root/usr/share" bash -c \
    'source /usr/share/bash-completion/bash_completion; __load_completion retentionctl && complete -p retentionctl | grep -q _retentionctl'
fi
zsh_completion=$root/usr/share/zsh/vendor-completions/_retentionctl
check "zsh completion starts with #compdef retentionctl" grep -qx '#compdef retentionctl' "$zsh_completion"
if command -v zsh >/dev/null; then
  check "zsh parses the zsh completion" zsh -n "$zsh_completion"
fi

# --- removal -------------------------------------------------------------
if dpkg_root --purge retentiond >"$stage/purge.log" 2>&1; then
  ok "dpkg --root --purge removes it"
else
  sed 's/^/  dpkg: /' "$stage/purge.log" >&2
  bad "dpkg --root --purge failed"
fi
check "purge removed /usr/sbin/retentiond" test ! -e "$root/usr/sbin/retentiond"
check "purge removed the conffile /etc/retentiond/retentiond.toml" test ! -e "$root/etc/retentiond/retentiond.toml"

echo "check-package: $deb"
echo "check-package: lintian $lintian_errors errors, $lintian_warnings warnings"
echo "check-package: $checks checks, $failed failed, $((SECONDS - started)) s"
[ "$failed" -eq 0 ]
