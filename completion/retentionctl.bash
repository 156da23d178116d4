# bash completion for retentionctl(1).
#
# The subcommands and their options are those of kCommands in
# daemon/retentionctl.cpp; tests/docs/check_docs.sh fails when a command or
# an option is missing here. Category names (--category), connector names
# (jobs, retry, discard CONNECTOR) and method names (call METHOD) come from
# the running daemon, asked through retentionctl itself, so they follow the
# policy in force.

_retentionctl_commands="status put explain event export erase hold release restore holds connectors jobs retry discard plan sweep audit verify metrics reload pubkey receipt confirm-clock import report call help"

# The options of each subcommand, after the common ones.
_retentionctl_options() {
  case $1 in
    put) echo "--subject --category -f --field -d --date" ;;
    event) echo "--subject --key" ;;
    erase) echo "--key --category --reason --dry-run --receipt" ;;
    hold) echo "--subject --category --key --reason" ;;
    release) echo "--reason" ;;
    restore) echo "--reason" ;;
    jobs) echo "--state --limit" ;;
    retry) echo "--all" ;;
    discard) echo "--reason" ;;
    plan) echo "--until --from --policy" ;;
    sweep) echo "--dry-run" ;;
    audit) echo "--limit --after --key --subject --follow --after-hash" ;;
    verify) echo "--full --checkpoint" ;;
    receipt) echo "--pubkey --out" ;;
    reload) echo "--confirm" ;;
    import) echo "--batch --rejects" ;;
    report) echo "--html --until" ;;
  esac
}

# Asks the daemon for the "name" of each entry of a method's list
# (policy.get: categories; connector.list: connectors; help: methods), all
# read methods:
# _retentionctl_names METHOD [--socket PATH]. The names are
# the keys indented by six spaces in the --json output, the entries' own; the
# deeper "name"s of anonymise tables are not. An unreachable or slow daemon
# yields nothing: a completion must never hang or print.
_retentionctl_names() {
  timeout 2 retentionctl "${@:2}" --json call "$1" 2>/dev/null |
    sed -n 's/^      "name": "\([^"]*\)",\{0,1\}$/\1/p'
}

_retentionctl() {
  # bash splits "--socket=PATH" into three words at the '='
  # (COMP_WORDBREAKS): join them again, into words and cword.
  local -a words=()
  local i cword=0
  for ((i = 0; i <= COMP_CWORD; i++)); do
    if [[ ${COMP_WORDS[i]} == = && ${words[cword - 1]} == --* && ${words[cword - 1]} != *=* ]]; then
      words[cword - 1]+="="
      if ((i < COMP_CWORD)); then
        ((i++))
        words[cword - 1]+=${COMP_WORDS[i]}
      fi
    else
      words[cword]=${COMP_WORDS[i]}
      ((cword++))
    fi
  done
  ((cword--))
  local cur=${words[cword]} prev=${words[cword - 1]}
  local cmd="" word
  local -a args=() socket=()

  # The subcommand, its arguments so far, and the socket to ask, from the
  # words before the cursor; an option's value is not an argument.
  for ((i = 1; i < cword; i++)); do
    word=${words[i]}
    case $word in
      -s | --socket)
        socket=(--socket "${words[i + 1]}")
        ((i++))
        ;;
      --socket=*) socket=("$word") ;;
      --subject | --category | -f | --field | -d | --date | --key | --reason | \
        --until | --from | --limit | --after | --batch | --rejects | --html | --receipt | --checkpoint | \
        --pubkey | --out | --after-hash | --state)
        ((i++))
        ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd=$word; else args+=("$word"); fi ;;
    esac
  done

  # An option's value, as the next word or after '=' (where only the part
  # after the '=' is replaced).
  case $cur in
    --*=*)
      prev=${cur%%=*}
      cur=${cur#*=}
      ;;
  esac
  case $prev in
    -s | --socket | --rejects | --html | --receipt | --checkpoint | --out)
      compopt -o filenames 2>/dev/null
      COMPREPLY=($(compgen -f -- "$cur"))
      return
      ;;
    --category)
      COMPREPLY=($(compgen -W "$(_retentionctl_names policy.get "${socket[@]}")" -- "$cur"))
      return
      ;;
    --state)
      COMPREPLY=($(compgen -W "pending in_flight failed" -- "$cur"))
      return
      ;;
    --subject | -f | --field | -d | --date | --key | --reason | --until | --from | \
      --limit | --after | --batch | --pubkey | --after-hash)
      return
      ;;
  esac

  if [[ $cur == -* ]]; then
    local options="-s --socket --json -h --help"
    if [[ -z $cmd ]]; then
      options+=" --version"
    else
      options+=" $(_retentionctl_options "$cmd")"
    fi
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
    return
  fi

  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W "$_retentionctl_commands" -- "$cur"))
    return
  fi
  case $cmd in
    help) ((${#args[@]} == 0)) && COMPREPLY=($(compgen -W "$_retentionctl_commands" -- "$cur")) ;;
    audit) ((${#args[@]} == 0)) && COMPREPLY=($(compgen -W "checkpoint" -- "$cur")) ;;
    receipt)
      if ((${#args[@]} == 0)); then
        COMPREPLY=($(compgen -W "verify get" -- "$cur"))
      elif [[ ${args[0]} == verify ]] && ((${#args[@]} == 1)); then
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
      fi
      ;;
    call) ((${#args[@]} == 0)) && COMPREPLY=($(compgen -W "$(_retentionctl_names help "${socket[@]}")" -- "$cur")) ;;
    jobs | retry | discard)
      ((${#args[@]} == 0)) && COMPREPLY=($(compgen -W "$(_retentionctl_names connector.list "${socket[@]}")" -- "$cur"))
      ;;
    import)
      if ((${#args[@]} == 0)); then
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
      fi
      ;;
  esac
}

complete -F _retentionctl retentionctl
