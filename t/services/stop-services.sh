#!/usr/bin/env bash
# t/services/stop-services.sh -- stop what start-services.sh started, by the pids
# it recorded.
#
#   usage: stop-services.sh STATE_DIR [component ...]
#
# For each STATE_DIR/pids/<name>.pid: if that pid is alive and still runs the
# program recorded in <name>.cmd, send SIGTERM, wait up to STOP_WAIT seconds
# (default 15), then SIGKILL.  Never kills anything by name.  Exit 1 only if
# something had to be SIGKILLed.
set -uo pipefail
if [ $# -lt 1 ]; then sed -n '2,11p' "$0" >&2; exit 2; fi
STATE=$(realpath -m "$1"); shift
STOP_WAIT=${STOP_WAIT:-15}
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

alive() {  # exists and is not a zombie (pid 1 here reaps late, so kill -0 is not enough)
  local p=$1 st
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
  st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ]
}

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  # reverse start order: postfix before the sink it relays to, etc.
  for n in redis geoip postfix sink milter checkpw pam mysql imap ldap clamd spamd dns; do
    [ -e "$STATE/pids/$n.pid" ] && names+=("$n")
  done
  for f in "$STATE"/pids/*.pid; do   # anything else recorded there
    [ -e "$f" ] || continue; n=$(basename "$f" .pid)
    [[ " ${names[*]} " == *" $n "* ]] || names+=("$n")
  done
fi

rc=0
for n in "${names[@]}"; do
  pf=$STATE/pids/$n.pid; cf=$STATE/pids/$n.cmd
  [ -e "$pf" ] || { log "$n: no pid file"; continue; }
  pid=$(tr -dc '0-9' < "$pf"); want=$(cat "$cf" 2>/dev/null || true)
  if ! alive "$pid"; then log "$n: pid $pid not running"; rm -f "$pf" "$cf"; continue; fi
  if [ -n "$want" ] && ! tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$want"; then
    log "$n: pid $pid is not '$want' any more; left alone"; rm -f "$pf" "$cf"; continue
  fi
  t0=$(date +%s.%N)
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < STOP_WAIT * 10; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    log "$n: pid $pid ignored SIGTERM for ${STOP_WAIT}s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null; rc=1
  fi
  log "$n: stopped pid $pid in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s"
  rm -f "$pf" "$cf"
done
exit $rc
