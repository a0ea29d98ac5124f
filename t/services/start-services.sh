#!/usr/bin/env bash
# t/services/start-services.sh -- start the real external components that the
# qpsmtpd_py tests talk to, all on loopback, with every file (config, data, logs,
# sockets, pids) under one state directory.  Debian 12 (bookworm), as root, no systemd.
#
#   usage: start-services.sh [--install] STATE_DIR [component ...]
#          start-services.sh --install-only [STATE_DIR]
#
#   components (default: all, in this order):
#     dns spamd clamd ldap imap lmtp mysql pam checkpw milter sink postfix geoip exim redis
#
#   --install       first make sure the Debian packages are there (policy-rc.d
#                   guard + at most one apt-get update + apt-get install of the
#                   missing ones only), then start.
#   --install-only  only that install step; start nothing (STATE_DIR, if given,
#                   receives apt.log).  scripts/test uses it before creating .venv.
#
# Idempotent: a component whose recorded pid is alive and whose port answers is
# left alone; a stale one is cleaned and started again.  Pids go to
# STATE_DIR/pids/<name>.pid (with the expected program in <name>.cmd) and are
# stopped by t/services/stop-services.sh STATE_DIR.  Connection details for the
# tests are written to STATE_DIR/services.env (sourceable by sh, KEY=VALUE).
# Exit status 1 if any component failed (the log says which and where to look).
#
# Ports (override with the environment):
#   DNS_PORT=5353 SPAMD_PORT=7830 CLAMD_PORT=3310 LDAP_PORT=3389 IMAP_PORT=1143
#   MYSQL_PORT=3306 MILTER_PORT=8891 SINK_PORT=2526 POSTFIX_PORT=2527 REDIS_PORT=6390 LMTP_PORT=2424
# Other knobs: TEST_USER=qptest TEST_PASS=qptestpw PAM_SERVICE=qpsmtpd
#   SINK_DUMP=1 (0: smtp-sink keeps no copies)  PYTHON=<repo>/.venv/bin/python if
#   that exists, else python3 (geoip: mmdb-writer must be importable by it, or geoip FAILS)
set -uo pipefail

INSTALL=0; START=1
while [ $# -gt 0 ]; do
  case $1 in
    --install) INSTALL=1; shift ;;
    --install-only) INSTALL=1; START=0; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    --) shift; break ;;
    -*) echo "start-services.sh: unknown option $1" >&2; sed -n '2,30p' "$0" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 1 ] && [ $START = 1 ]; then sed -n '2,30p' "$0" >&2; exit 2; fi
STATE=""; [ $# -ge 1 ] && { STATE=$(realpath -m "$1"); shift; }
ALL="dns spamd clamd ldap imap lmtp mysql pam checkpw milter sink postfix geoip exim redis"
COMPONENTS=${*:-$ALL}

DNS_PORT=${DNS_PORT:-5353}; SPAMD_PORT=${SPAMD_PORT:-7830}; CLAMD_PORT=${CLAMD_PORT:-3310}
LDAP_PORT=${LDAP_PORT:-3389}; IMAP_PORT=${IMAP_PORT:-1143}; MYSQL_PORT=${MYSQL_PORT:-3306}
MILTER_PORT=${MILTER_PORT:-8891}; SINK_PORT=${SINK_PORT:-2526}; POSTFIX_PORT=${POSTFIX_PORT:-2527}
REDIS_PORT=${REDIS_PORT:-6390}; LMTP_PORT=${LMTP_PORT:-2424}
TEST_USER=${TEST_USER:-qptest}; TEST_PASS=${TEST_PASS:-qptestpw}; PAM_SERVICE=${PAM_SERVICE:-qpsmtpd}
SINK_DUMP=${SINK_DUMP:-1}
# geoip needs mmdb-writer: default to the project's .venv when there is one
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "${PYTHON:-}" ]; then PYTHON=python3; [ -x "$REPO/.venv/bin/python" ] && PYTHON=$REPO/.venv/bin/python; fi
H=127.0.0.1
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

# tinycdb, python3-venv: used by the project itself (cdb maps, .venv).
# qpsmtpd: the original Perl daemon, for differential tests and benchmarks; never
# started by apt (policy-rc.d below), only by the tests that want it.
# libnet-ip-perl: Net::IP, which Debian's qpsmtpd needs but does not declare.
# fortune-mod: /usr/games/fortune for the quit_fortune plugin; fortunes-min: its database
# (a recommends only: without it `fortune` says "No fortunes found").
# systemd: only for `systemd-analyze verify` of systemd/*.{service,socket} (never booted;
# installing it in a container without systemd as PID 1 just adds the tools).
# swaks, msmtp: real SMTP clients for the client tests.
# man-db, groff-base: `man -l` renders the manual pages scripts/install makes (t/test_install.py).
# dovecot-lmtpd: the lmtp component (queue/lmtp). haproxy: started by the PROXY protocol
# tests themselves (their own config on loopback), never as a service.
# nmap (its smtp-open-relay script), testssl.sh: run by t/test_open_relay_nmap.py and
# t/test_testssl.py against a server the test starts.
# scripts/test probes all of them for *working* before pytest (t/services/check-services.py).
PKGS="nsd bind9-dnsutils spamassassin spamd spamc clamav clamav-daemon clamdscan
      slapd ldap-utils dovecot-imapd mariadb-server libpam-pwdfile opendkim opendkim-tools
      postfix checkpw swaks msmtp openssl mmdb-bin tinycdb python3-venv qpsmtpd libnet-ip-perl
      fortune-mod fortunes-min systemd redis-server dovecot-lmtpd haproxy nmap testssl.sh
      man-db groff-base"

log()  { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now()  { date +%s.%N; }
since(){ awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

# ---------------------------------------------------------------- install
if [ $INSTALL = 1 ]; then
  t=$(now)
  missing=""
  for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "install:$missing"
    [ "$(id -u)" = 0 ] || { log "install: missing packages and not root"; exit 1; }
    # Without this, the packages' postinst scripts start the *system* instances
    # (mariadb on 3306, nsd on 53, postfix on 25, qpsmtpd ...) through /etc/init.d.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
      log "install: wrote /usr/sbin/policy-rc.d (deny service starts during apt-get)"
    fi
    if [ -n "$STATE" ]; then mkdir -p "$STATE"; APTLOG=$STATE/apt.log; else APTLOG=$(mktemp /tmp/qpt-apt.XXXXXX); fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$APTLOG" 2>&1 || { log "apt-get update failed, see $APTLOG"; exit 1; }
    apt-get install -y -q --no-install-recommends $missing >>"$APTLOG" 2>&1 \
      || { log "apt-get install failed, see $APTLOG"; exit 1; }
    # spamassassin's postinst imports the sa-update keys and leaves a gpg-agent
    # (user debian-spamd) running; end exactly that agent, through its own socket.
    if [ -S /var/lib/spamassassin/sa-update-keys/S.gpg-agent ] && command -v gpgconf >/dev/null; then
      gpgconf --homedir /var/lib/spamassassin/sa-update-keys --kill gpg-agent >/dev/null 2>&1 || true
    fi
  fi
  log "install: done in $(since "$t")s"
fi
[ $START = 1 ] || exit 0

# ---------------------------------------------------------------- helpers
mkdir -p "$STATE/pids"
chmod 755 "$STATE"
# daemons that drop privileges (spamd, dovecot, smtp-sink, postfix) must reach STATE
d="$STATE"; while [ "$d" != / ]; do d=$(dirname "$d")
  [ "$(stat -c %A "$d" | cut -c10)" = x ] || [ "$(stat -c %A "$d" | cut -c10)" = t ] \
    || log "WARNING: $d is not world-searchable; unprivileged daemons cannot reach $STATE"; done
[ ${#STATE} -le 70 ] || log "WARNING: long STATE path; unix socket paths must stay under 108 bytes"

FAILED=""
alive() {  # pid exists and is not a zombie
  local p=$1 st
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
  st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ]
}
ours() {   # name -> 0 when its recorded pid is alive and runs the expected program
  local n=$1 p c
  [ -r "$STATE/pids/$n.pid" ] && [ -r "$STATE/pids/$n.cmd" ] || return 1
  p=$(tr -dc '0-9' < "$STATE/pids/$n.pid"); c=$(cat "$STATE/pids/$n.cmd")
  alive "$p" && tr '\0' ' ' < "/proc/$p/cmdline" | grep -qF -- "$c"
}
record() { echo "$2" > "$STATE/pids/$1.pid"; echo "$3" > "$STATE/pids/$1.cmd"; }
port_busy() { (exec 3<>"/dev/tcp/$H/$1") 2>/dev/null; }
banner() {  # port prefix -> 0 if the server greets with prefix
  local line
  exec 3<>"/dev/tcp/$H/$1" || return 1
  IFS= read -r -t 2 line <&3; exec 3<&- 3>&-
  [[ "$line" == "$2"* ]]
}
wait_for() {  # seconds description command... ; polls every 0.1s
  local secs=$1 what=$2; shift 2
  local n=$((secs * 10)) i
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "TIMEOUT waiting for $what"; return 1
}
pid_from_file() {  # file seconds -> echo pid once the daemon wrote it
  local f=$1 n=$(( $2 * 10 )) i p
  for ((i = 0; i < n; i++)); do
    p=""; [ -r "$f" ] && p=$(tr -dc '0-9' < "$f"); [ -n "$p" ] && alive "$p" && { echo "$p"; return 0; }
    sleep 0.1
  done; return 1
}
begin() {  # name port -> 0: go on and start it; 1: skip (already up, or port taken)
  local n=$1 port=${2:-}
  if ours "$n"; then log "$n: already running (pid $(cat "$STATE/pids/$n.pid"))"; return 1; fi
  rm -f "$STATE/pids/$n.pid" "$STATE/pids/$n.cmd"
  if [ -n "$port" ] && port_busy "$port"; then
    log "$n: FAILED: 127.0.0.1:$port is already taken by another process"; FAILED="$FAILED $n"; return 1
  fi
  T0=$(now); return 0
}
ok()   { log "$1: up in $(since "$T0")s${2:+ ($2)}"; }
fail() { log "$1: FAILED${2:+: $2}"; FAILED="$FAILED $1"; }

# ---------------------------------------------------------------- 1. DNS (nsd)
start_dns() {
  # Running already: the zone files and nsd.conf are written afresh; unchanged -> left
  # alone; only zone files changed -> SIGHUP (nsd rereads them); nsd.conf changed (a new
  # zone) -> a second nsd binds the port too (reuseport) before the old one is stopped,
  # so tests using the running server never see it gone.
  local D=$STATE/dns old="" before="" before_conf="" old_reuse=0
  if ours dns; then
    old=$(tr -dc '0-9' < "$STATE/pids/dns.pid"); T0=$(now)
    before=$(cd "$D" && cat nsd.conf *.zone 2>/dev/null | md5sum)
    before_conf=$(md5sum < "$D/nsd.conf" 2>/dev/null)
    grep -q 'reuseport: yes' "$D/nsd.conf" 2>/dev/null && old_reuse=1
  else
    begin dns "$DNS_PORT" || return 0
  fi
  mkdir -p "$D"
  # DKIM key shared by the zone (public half) and opendkim/dkimpy (private half)
  if [ ! -s "$D/dkim-sel.private" ]; then
    openssl genrsa -out "$D/dkim-sel.private" 1024 2>/dev/null; chmod 600 "$D/dkim-sel.private"
  fi
  local P SOA
  P=$(openssl rsa -in "$D/dkim-sel.private" -pubout -outform DER 2>/dev/null | base64 -w0)
  # auth.test (sender authentication tests): two DKIM keys (selectors s1, s2: rotation)
  local k; declare -A AP
  for k in s1 s2; do
    [ -s "$D/auth-$k.private" ] || { openssl genrsa -out "$D/auth-$k.private" 1024 2>/dev/null; chmod 600 "$D/auth-$k.private"; }
    AP[$k]=$(openssl rsa -in "$D/auth-$k.private" -pubout -outform DER 2>/dev/null | base64 -w0)
  done
  SOA='@ SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@ NS ns.example.test.'
  cat > "$D/example.test.zone" <<EOF
\$ORIGIN example.test.
\$TTL 300
$SOA
@              A     127.0.0.1
@              MX    10 mx.example.test.
@              TXT   "v=spf1 ip4:127.0.0.1 ip4:127.0.0.2 -all"
_dmarc         TXT   "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"
ns             A     127.0.0.1
mx             A     127.0.0.1
host2          A     127.0.0.2
nomatch        A     127.0.0.33
softfail       TXT   "v=spf1 ip4:127.0.0.1 ~all"
softfail       MX    10 mx.example.test.
neutral        TXT   "v=spf1 ?all"
incl           TXT   "v=spf1 include:example.test -all"
nomx           A     127.0.0.9
nullmx         MX    0 .
sel._domainkey TXT   "v=DKIM1; k=rsa; p=$P"
EOF
  cat > "$D/127.in-addr.arpa.zone" <<EOF
\$ORIGIN 127.in-addr.arpa.
\$TTL 300
$SOA
1.0.0          PTR   mx.example.test.
2.0.0          PTR   host2.example.test.
3.0.0          PTR   nomatch.example.test.
; 127.0.0.4 deliberately has no PTR
5.0.0          PTR   dynamic-127-0-0-5.pool.example.test.
; dnscheck.test (fcrdns, helo, nodialup): A in another /24; a name that does not exist;
; a dialup-looking name that resolves back
6.0.0          PTR   fail6.dnscheck.test.
7.0.0          PTR   nxname.dnscheck.test.
8.0.0          PTR   adsl-127-0-0-8.dyn.dnscheck.test.
EOF
  cat > "$D/dnsbl.test.zone" <<EOF
\$ORIGIN dnsbl.test.
\$TTL 300
$SOA
2.0.0.127      A     127.0.0.2
2.0.0.127      TXT   "127.0.0.2 is listed in dnsbl.test"
10.0.0.127     A     127.0.0.10
10.0.0.127     TXT   "127.0.0.10 is listed in dnsbl.test (policy)"
; a second list under the zone (b.dnsbl.test) for several-zone tests
3.0.0.127.b    A     127.0.0.2
3.0.0.127.b    TXT   "127.0.0.3 is listed in b.dnsbl.test"
; malformed TXT answers: CR LF inside, two strings, bytes that are not UTF-8 and a
; NUL, empty, over 700 characters
20.0.0.127     TXT   "injected\013\010250 2.0.0 pretend OK"
21.0.0.127     TXT   "two " "strings"
22.0.0.127     TXT   "bad \255\254 bytes \000 nul"
23.0.0.127     TXT   ""
24.0.0.127     TXT   "$(printf 'L%.0s' {1..250})" "$(printf 'M%.0s' {1..250})" "$(printf 'N%.0s' {1..250})"
; a list's error code (Spamhaus-style 127.255.255.x) and an answer outside 127/8: not listings
25.0.0.127     A     127.255.255.254
26.0.0.127     A     192.0.2.1
; the IPv6 client 2001:db8::2 in RFC 5782 nibble form
2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 A 127.0.0.2
2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2 TXT "2001:db8::2 is listed in dnsbl.test"
EOF
  cat > "$D/rhsbl.test.zone" <<EOF
\$ORIGIN rhsbl.test.
\$TTL 300
$SOA
spam.test      A     127.0.0.2
spam.test      TXT   "spam.test is listed in rhsbl.test"
badhelo.test   A     127.0.0.2
badhelo.test   TXT   "badhelo.test is listed in rhsbl.test"
EOF
  cat > "$D/dnscheck.test.zone" <<EOF
\$ORIGIN dnscheck.test.
\$TTL 300
$SOA
; resolvable_fromhost: MX to a private address, MX to a name that does not exist, null
; MX (RFC 7505), A only, AAAA only, one bad and one good MX
privmx         MX    10 priv.dnscheck.test.
priv           A     192.168.1.25
badmx          MX    10 nowhere.dnscheck.test.
nullmx         MX    0 .
aonly          A     127.0.0.9
aaaaonly       AAAA  2001:db8::25
mixmx          MX    10 priv.dnscheck.test.
mixmx          MX    20 mx.example.test.
; helo: a name with an address that is not the client's, a name without addresses
elsewhere      A     192.0.2.50
noaddr         TXT   "no address here"
; fcrdns: the forward name of 127.0.0.6 lies in another /24
fail6          A     127.0.1.6
adsl-127-0-0-8.dyn A 127.0.0.8
; check_dns_user: users.dnscheck.test lists <user>.<domain>; a wildcard is a catch-all
alice.example.test.users   A  127.0.0.2
*.catchall.test.users      A  127.0.0.2
EOF
  cat > "$D/uribl.test.zone" <<EOF
\$ORIGIN uribl.test.
\$TTL 300
$SOA
spam-site.test     A     127.0.0.2
spam-site.test     TXT   "spam-site.test is listed in uribl.test"
only4.test         A     127.0.0.4
evil.co.uk         A     127.0.0.2
whitelisted.test   A     127.0.0.2
2.0.0.127          A     127.0.0.2
2.0.0.127          TXT   "127.0.0.2 is listed in uribl.test"
EOF
  cat > "$D/dnswl.test.zone" <<EOF
\$ORIGIN dnswl.test.
\$TTL 300
$SOA
2.0.0.127      A     127.0.10.0
2.0.0.127      TXT   "127.0.0.2 is whitelisted in dnswl.test"
3.0.0.127      A     127.0.10.0
EOF
  cat > "$D/spam.test.zone" <<EOF
\$ORIGIN spam.test.
\$TTL 300
$SOA
@              A     127.0.0.2
@              MX    10 mx.spam.test.
mx             A     127.0.0.2
@              TXT   "v=spf1 -all"
EOF
  # auth.test: SPF, DKIM, DomainKeys and DMARC cases (sender_permitted_from, dkim,
  # domainkeys, dmarc; t/test_spf.py, t/test_dkim.py, t/test_dmarc.py). Test clients
  # come from 192.0.2.10. nopolicy.test: an organizational domain without DMARC.
  cat > "$D/auth.test.zone" <<EOF
\$ORIGIN auth.test.
\$TTL 300
$SOA
@              TXT   "v=spf1 ip4:192.0.2.10 -all"
@              MX    10 mx.auth.test.
mx             A     192.0.2.10
pass           TXT   "v=spf1 ip4:192.0.2.0/24 -all"
fail           TXT   "v=spf1 -all exp=explain.auth.test"
explain        TXT   "%{i} may not send mail for %{d}"
softfail       TXT   "v=spf1 ~all"
neutral        TXT   "v=spf1 ?all"
none           A     192.0.2.10
mxpass         TXT   "v=spf1 mx -all"
mxpass         MX    10 mx.auth.test.
inclpass       TXT   "v=spf1 include:pass.auth.test -all"
redir          TXT   "v=spf1 redirect=pass.auth.test"
exists         TXT   "v=spf1 exists:%{i}.ok.auth.test -all"
192.0.2.10.ok  A     127.0.0.2
helo           TXT   "v=spf1 ip4:192.0.2.10 -all"
badhelo        TXT   "v=spf1 -all"
strict         TXT   "v=spf1 ip4:192.0.2.10 -all"
v6             TXT   "v=spf1 ip6:2001:db8::/32 -all"
; malformed: two records, a bad address, an unknown mechanism, non-ASCII, a control
; character, a record split into strings (fine), a TXT that is not SPF, an include of a
; domain without SPF, a lookup loop, too many void lookups, an unserved zone (temperror)
two            TXT   "v=spf1 +all"
two            TXT   "v=spf1 -all"
badip          TXT   "v=spf1 ip4:192.0.2.300 -all"
badmech        TXT   "v=spf1 frobnicate -all"
nonascii       TXT   "v=spf1 a:\195\164.auth.test -all"
ctrl           TXT   "v=spf1 ip4:192.0.2.10\009-all"
split          TXT   "v=spf1 ip4:192.0.2.10 " "-all"
notspf         TXT   "v=spf10 ip4:192.0.2.10 -all"
notspf         TXT   "some other text"
inclnone       TXT   "v=spf1 include:none.auth.test -all"
loop           TXT   "v=spf1 include:loop.auth.test -all"
voids          TXT   "v=spf1 a:n1.auth.test a:n2.auth.test a:n3.auth.test ip4:192.0.2.10 -all"
unserved       TXT   "v=spf1 include:spf.unserved-zone.test -all"
; DKIM keys: s1 and s2 (rotation), a broken key, a revoked key; DomainKeys: dk and policy
s1._domainkey  TXT   "v=DKIM1; k=rsa; p=${AP[s1]}"
s2._domainkey  TXT   "v=DKIM1; k=rsa; p=${AP[s2]}"
badkey._domainkey TXT "v=DKIM1; k=rsa; p=AAAAnotakeyAAAA"
revoked._domainkey TXT "v=DKIM1; k=rsa; p="
dk._domainkey  TXT   "k=rsa; p=${AP[s1]}"
_domainkey     TXT   "t=y; o=~"
_domainkey.signall TXT "o=-"
; DMARC: the organizational policy (sp for subdomains), per-domain policies, broken ones
_dmarc         TXT   "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@auth.test"
_dmarc.none    TXT   "v=DMARC1; p=none"
_dmarc.quarantine TXT "v=DMARC1; p=quarantine"
_dmarc.strict  TXT   "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.pct0    TXT   "v=DMARC1; p=reject; pct=0"
_dmarc.bogus   TXT   "v=DMARC1; p=bogus"
_dmarc.nov     TXT   "p=reject"
_dmarc.twice   TXT   "v=DMARC1; p=reject"
_dmarc.twice   TXT   "v=DMARC1; p=none"
EOF
  cat > "$D/nopolicy.test.zone" <<EOF
\$ORIGIN nopolicy.test.
\$TTL 300
$SOA
@              TXT   "v=spf1 ip4:192.0.2.10 -all"
soft           TXT   "v=spf1 ~all"
hard           TXT   "v=spf1 -all"
EOF
  # rfc7208.test: a subset of the RFC 7208 test suite (t/services/rfc7208.zone, made by
  # t/services/rfc7208_subset.py from pyspf's rfc7208-tests.yml)
  { printf '$ORIGIN rfc7208.test.\n$TTL 300\n%s\n' "$SOA"; cat "$REPO/t/services/rfc7208.zone"; } \
    > "$D/rfc7208.test.zone"
  { cat <<EOF
server:
    ip-address: $H@$DNS_PORT
    port: $DNS_PORT
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$D"
    database: ""
    zonelistfile: "$D/zone.list"
    xfrdfile: "$D/xfrd.state"
    xfrdir: "$D"
    pidfile: "$D/nsd.pid"
    logfile: "$D/nsd.log"
    server-count: 2
    reuseport: yes
    verbosity: 1
    hide-version: yes
remote-control:
    control-enable: no
EOF
    for z in example.test 127.in-addr.arpa dnsbl.test rhsbl.test dnswl.test spam.test \
             dnscheck.test uribl.test auth.test nopolicy.test rfc7208.test; do
      printf 'zone:\n    name: "%s"\n    zonefile: "%s.zone"\n' "$z" "$z"; done
  } > "$D/nsd.conf"
  nsd-checkconf "$D/nsd.conf" || { fail dns "bad nsd.conf"; return; }
  if [ -n "$old" ]; then
    if [ "$(cd "$D" && cat nsd.conf *.zone 2>/dev/null | md5sum)" = "$before" ]; then
      log "dns: already running (pid $old), zones unchanged"; return 0
    fi
    if [ "$(md5sum < "$D/nsd.conf")" = "$before_conf" ]; then
      kill -HUP "$old"
      wait_for 10 "nsd answers after reload" dig +time=1 +tries=1 +short -p "$DNS_PORT" @$H example.test SOA \
        && ok dns "pid $old, zone files reloaded (SIGHUP)" || fail dns "see $D/nsd.log"
      return
    fi
    if [ $old_reuse = 0 ]; then   # the old nsd holds the port alone: stop it first
      kill "$old"; wait_for 10 "old nsd to stop" eval '! alive '"$old"
    fi
  fi
  rm -f "$D/nsd.pid"
  nsd -c "$D/nsd.conf" </dev/null >>"$D/nsd.log" 2>&1 || { fail dns "nsd exited, see $D/nsd.log"; return; }
  local pid; pid=$(pid_from_file "$D/nsd.pid" 10) || { fail dns "no pid, see $D/nsd.log"; return; }
  record dns "$pid" "nsd -c $D/nsd.conf"
  if [ -n "$old" ] && alive "$old"; then   # the new one answers on the port too: retire the old
    kill "$old"; wait_for 10 "old nsd to stop" eval '! alive '"$old"
    log "dns: replaced nsd pid $old with pid $pid (new zones)"
  fi
  wait_for 10 "nsd answers" dig +time=1 +tries=1 +short -p "$DNS_PORT" @$H example.test SOA \
    && [ "$(dig +short -p "$DNS_PORT" @$H 2.0.0.127.dnsbl.test A)" = 127.0.0.2 ] \
    && ok dns "pid $pid" || fail dns "see $D/nsd.log"
}

# ---------------------------------------------------------------- 2. spamd
spamd_ping() {
  local line
  exec 3<>"/dev/tcp/$H/$SPAMD_PORT" || return 1
  printf 'PING SPAMC/1.5\r\n\r\n' >&3; IFS= read -r -t 2 line <&3; exec 3<&- 3>&-
  [[ "$line" == SPAMD/*PONG* ]]
}
start_spamd() {
  local D=$STATE/spamd
  begin spamd "$SPAMD_PORT" || return 0
  mkdir -p "$D"; chown debian-spamd:debian-spamd "$D"; rm -f "$D/spamd.pid" "$D/spamd.sock"
  # --local: no network tests (RBL/URIBL/DCC/razor) -> no DNS timeouts on a closed network.
  # as root spamd needs -u; debian-spamd is created by the spamassassin package.
  spamd --listen "$H:$SPAMD_PORT" --listen "$D/spamd.sock" --socketmode=0666 \
        --allowed-ips=127.0.0.1 --local --max-children=2 --min-children=1 \
        --username=debian-spamd --groupname=debian-spamd --helper-home-dir="$D" \
        --pidfile="$D/spamd.pid" --syslog="$D/spamd.log" --daemonize </dev/null >>"$D/spamd.out" 2>&1 \
    || { fail spamd "see $D/spamd.out"; return; }
  local pid; pid=$(pid_from_file "$D/spamd.pid" 30) || { fail spamd "no pid, see $D/spamd.log"; return; }
  record spamd "$pid" "spamd"
  wait_for 60 "spamd PONG" spamd_ping && ok spamd "pid $pid" || fail spamd "see $D/spamd.log"
}

# ---------------------------------------------------------------- 3. clamd (local db)
clamd_ping() {
  local line
  exec 3<>"/dev/tcp/$H/$CLAMD_PORT" || return 1
  printf 'zPING\0' >&3; IFS= read -r -d '' -t 2 line <&3; exec 3<&- 3>&-
  [ "$line" = PONG ]
}
start_clamd() {
  local D=$STATE/clamav
  begin clamd "$CLAMD_PORT" || return 0
  mkdir -p "$D/db"; rm -f "$D/clamd.pid" "$D/clamd.sock"
  local EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
  # .ndb: body signature (matches anywhere, also inside decoded MIME parts)
  printf 'Local.Test.EICAR-NDB:0:*:%s\n' "$(printf '%s' "$EICAR" | od -An -tx1 -v | tr -d ' \n')" > "$D/db/local-eicar.ndb"
  # .hdb: md5:size:name of the exact 68-byte file
  printf '%s:68:Local.Test.EICAR-HDB\n' "$(printf '%s' "$EICAR" | md5sum | cut -d' ' -f1)" > "$D/db/local-eicar.hdb"
  printf '%s' "$EICAR" > "$D/eicar.com"
  cat > "$D/clamd.conf" <<EOF
LocalSocket $D/clamd.sock
LocalSocketMode 666
FixStaleSocket yes
TCPSocket $CLAMD_PORT
TCPAddr $H
DatabaseDirectory $D/db
PidFile $D/clamd.pid
LogFile $D/clamd.log
LogTime yes
Foreground yes
SelfCheck 0
MaxThreads 4
StreamMaxLength 25M
ScanMail yes
EOF
  setsid clamd -c "$D/clamd.conf" </dev/null >>"$D/clamd.out" 2>&1 &
  local pid=$!
  record clamd "$pid" "clamd -c $D/clamd.conf"
  wait_for 60 "clamd PONG" clamd_ping && ok clamd "pid $pid" || fail clamd "see $D/clamd.log"
}

# ---------------------------------------------------------------- 4. slapd
start_ldap() {
  local D=$STATE/ldap
  begin ldap "$LDAP_PORT" || return 0
  rm -rf "$D/data"; mkdir -p "$D/data"; rm -f "$D/slapd.pid" "$D/ldapi"
  local AH UH
  AH=$(slappasswd -s adminpw); UH=$(slappasswd -s alicepw)
  cat > "$D/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile  $D/slapd.pid
argsfile $D/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 67108864
suffix "dc=example,dc=test"
rootdn "cn=admin,dc=example,dc=test"
rootpw $AH
directory $D/data
index objectClass eq
index uid,mail eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
EOF
  cat > "$D/base.ldif" <<EOF
dn: dc=example,dc=test
objectClass: dcObject
objectClass: organization
o: Example Test
dc: example

dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice Test
sn: Test
mail: alice@example.test
userPassword: $UH

dn: uid=bob,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob Test
sn: Test
mail: bob@example.test
userPassword: bobpw
EOF
  slapadd -q -f "$D/slapd.conf" -l "$D/base.ldif" >"$D/slapadd.log" 2>&1 || { fail ldap "slapadd, see $D/slapadd.log"; return; }
  local ldapi="ldapi://$(printf '%s' "$D/ldapi" | sed 's|/|%2F|g')"
  echo "$ldapi" > "$D/ldapi.uri"
  slapd -f "$D/slapd.conf" -h "ldap://$H:$LDAP_PORT/ $ldapi" </dev/null >>"$D/slapd.out" 2>&1 \
    || { fail ldap "see $D/slapd.out (slapd logs to syslog; run by hand with -d 256 to see why)"; return; }
  local pid; pid=$(pid_from_file "$D/slapd.pid" 10) || { fail ldap "no pid"; return; }
  record ldap "$pid" "slapd -f $D/slapd.conf"
  wait_for 10 "slapd" ldapsearch -x -H "ldap://$H:$LDAP_PORT" -b '' -s base namingContexts \
    && ok ldap "pid $pid" || fail ldap
}

# ---------------------------------------------------------------- 5. dovecot imap
start_imap() {
  local D=$STATE/dovecot
  begin imap "$IMAP_PORT" || return 0
  mkdir -p "$D/run" "$D/state" "$D/mail"; chown -R mail:mail "$D/mail"
  local PH; PH=$(doveadm pw -s SHA512-CRYPT -p alicepw 2>/dev/null || openssl passwd -6 alicepw | sed 's/^/{SHA512-CRYPT}/')
  { printf 'alice@example.test:%s::::::\n' "$PH"; printf 'bob@example.test:{PLAIN}bobpw::::::\n'; } > "$D/passwd"
  chmod 644 "$D/passwd"
  cat > "$D/dovecot.conf" <<EOF
# standalone test config: nothing from /etc/dovecot is included
base_dir = $D/run
state_dir = $D/state
instance_name = dovecot-qptest
protocols = imap
listen = $H
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
log_path = $D/dovecot.log
info_log_path = $D/dovecot.log
mail_location = maildir:$D/mail/%d/%n/Maildir
first_valid_uid = 8
first_valid_gid = 8
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/passwd
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$D/mail/%d/%n
}
service imap-login {
  inet_listener imap {
    address = $H
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service auth {
  unix_listener auth-client {
    mode = 0666
  }
}
EOF
  dovecot -c "$D/dovecot.conf" </dev/null >>"$D/dovecot.out" 2>&1 || { fail imap "see $D/dovecot.out"; return; }
  local pid; pid=$(pid_from_file "$D/run/master.pid" 10) || { fail imap "no pid, see $D/dovecot.log"; return; }
  record imap "$pid" "dovecot -c $D/dovecot.conf"
  wait_for 10 "imap banner" banner "$IMAP_PORT" '* OK' && ok imap "pid $pid" || fail imap "see $D/dovecot.log"
}

# ---------------------------------------------------------------- 5b. dovecot lmtp
# A second Dovecot instance of its own for queue/lmtp: LMTP on a loopback port and a unix
# socket, delivering into STATE/lmtp/mail/<domain>/<user>/Maildir. Users (any other address
# is refused at RCPT, 550 5.1.1): alice, bob; full (quota of 1 byte: every message is refused
# after DATA, 552 5.2.2); busy and later (the same, but temporarily: 452 4.2.2; a test lifts
# later's quota for a while by editing its line in STATE/lmtp/users, re-read at once).
start_lmtp() {
  local D=$STATE/lmtp
  begin lmtp "$LMTP_PORT" || return 0
  [ -x /usr/lib/dovecot/lmtp ] || { fail lmtp "apt-get install dovecot-lmtpd"; return; }
  mkdir -p "$D/run" "$D/state" "$D/mail"; chown -R mail:mail "$D/mail"
  { printf 'alice@example.test::::::\nbob@example.test::::::\n'
    printf 'full@example.test:::::::userdb_quota_rule=*:storage=1B\n'
    printf 'busy@example.test:::::::userdb_quota_rule=*:storage=1B userdb_quota_full_tempfail=yes\n'
    printf 'later@example.test:::::::userdb_quota_rule=*:storage=1B userdb_quota_full_tempfail=yes\n'; } > "$D/users"
  chmod 644 "$D/users"
  cat > "$D/dovecot.conf" <<EOF
# standalone test config: nothing from /etc/dovecot is included
base_dir = $D/run
state_dir = $D/state
instance_name = dovecot-qptest-lmtp
protocols = lmtp
listen = $H
ssl = no
log_path = $D/dovecot.log
info_log_path = $D/dovecot.log
mail_location = maildir:$D/mail/%d/%n/Maildir
first_valid_uid = 8
first_valid_gid = 8
mail_plugins = quota
lmtp_rcpt_check_quota = no
plugin {
  quota = maildir:User quota
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $D/users
  default_fields = uid=mail gid=mail home=$D/mail/%d/%n
}
service lmtp {
  inet_listener lmtp {
    address = $H
    port = $LMTP_PORT
  }
  unix_listener lmtp {
    mode = 0666
  }
}
EOF
  dovecot -c "$D/dovecot.conf" </dev/null >>"$D/dovecot.out" 2>&1 || { fail lmtp "see $D/dovecot.out"; return; }
  local pid; pid=$(pid_from_file "$D/run/master.pid" 10) || { fail lmtp "no pid, see $D/dovecot.log"; return; }
  record lmtp "$pid" "dovecot -c $D/dovecot.conf"
  wait_for 10 "lmtp banner" banner "$LMTP_PORT" 220 && ok lmtp "pid $pid" || fail lmtp "see $D/dovecot.log"
}

# ---------------------------------------------------------------- 6. mariadb
start_mysql() {
  local D=$STATE/mysql
  begin mysql "$MYSQL_PORT" || return 0
  mkdir -p "$D"; rm -f "$D/mysqld.sock" "$D/mysqld.pid"
  if [ ! -d "$D/data/mysql" ]; then
    rm -rf "$D/data"
    mariadb-install-db --no-defaults --datadir="$D/data" --user=root --auth-root-authentication-method=socket \
      --skip-test-db >"$D/install-db.log" 2>&1 || { fail mysql "mariadb-install-db, see $D/install-db.log"; return; }
  fi
  setsid mariadbd --no-defaults --datadir="$D/data" --socket="$D/mysqld.sock" --port="$MYSQL_PORT" \
    --bind-address=$H --user=root --pid-file="$D/mysqld.pid" --log-error="$D/mysqld.err" \
    --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=32M </dev/null >/dev/null 2>&1 &
  local pid=$!
  record mysql "$pid" "mariadbd --no-defaults --datadir=$D/data"
  wait_for 60 "mariadb" mariadb-admin --no-defaults -S "$D/mysqld.sock" -uroot ping || { fail mysql "see $D/mysqld.err"; return; }
  local H1 H2
  H1=$(openssl passwd -1 -salt abcdefgh alicepw); H2=$(openssl passwd -6 -salt saltsalt bobpw)
  cat > "$D/vpopmail.sql" <<EOF
CREATE DATABASE IF NOT EXISTS vpopmail;
CREATE USER IF NOT EXISTS 'vpopmailuser'@'localhost' IDENTIFIED BY 'vpoppasswd';
CREATE USER IF NOT EXISTS 'vpopmailuser'@'127.0.0.1' IDENTIFIED BY 'vpoppasswd';
GRANT ALL PRIVILEGES ON vpopmail.* TO 'vpopmailuser'@'localhost';
GRANT ALL PRIVILEGES ON vpopmail.* TO 'vpopmailuser'@'127.0.0.1';
USE vpopmail;
CREATE TABLE IF NOT EXISTS vpopmail (
  pw_name char(32) NOT NULL,
  pw_domain char(96) NOT NULL,
  pw_passwd char(128),
  pw_uid int,
  pw_gid int,
  pw_gecos char(48),
  pw_dir char(160),
  pw_shell char(20),
  pw_clear_passwd char(128),
  PRIMARY KEY (pw_name, pw_domain)
);
REPLACE INTO vpopmail VALUES
 ('alice','example.test','$H1',89,89,'Alice','/home/vpopmail/domains/example.test/alice','NOQUOTA','alicepw'),
 ('bob','example.test','$H2',89,89,'Bob','/home/vpopmail/domains/example.test/bob','NOQUOTA','');
EOF
  mariadb --no-defaults -S "$D/mysqld.sock" -uroot < "$D/vpopmail.sql" >"$D/sql.log" 2>&1 \
    && ok mysql "pid $pid" || fail mysql "schema, see $D/sql.log"
}

# ---------------------------------------------------------------- 7. PAM (+ system user)
start_pam() {
  local D=$STATE/pam; T0=$(now)
  mkdir -p "$D"
  id "$TEST_USER" >/dev/null 2>&1 || useradd -M -d "$STATE/home/$TEST_USER" -s /usr/sbin/nologin "$TEST_USER" \
    || { fail pam "useradd"; return; }
  echo "$TEST_USER:$TEST_PASS" | chpasswd || { fail pam "chpasswd"; return; }
  # pam_unix as root reads /etc/shadow; as non-root only the caller's own password
  # can be checked (unix_chkpwd) unless the process is in group 'shadow'.
  printf 'auth    required pam_unix.so nodelay\naccount required pam_unix.so\n' > "/etc/pam.d/$PAM_SERVICE"
  # pam_pwdfile: users that are not system users; works without root if the file is readable
  printf 'carol:%s\n' "$(openssl passwd -1 -salt pwdfsalt carolpw)" > "$D/pwdfile"; chmod 644 "$D/pwdfile"
  printf 'auth    required pam_pwdfile.so nodelay pwdfile=%s\naccount required pam_permit.so\n' "$D/pwdfile" \
    > "/etc/pam.d/$PAM_SERVICE-pwdfile"
  ok pam "service $PAM_SERVICE: $TEST_USER/$TEST_PASS, service $PAM_SERVICE-pwdfile: carol/carolpw"
}

# ---------------------------------------------------------------- 10. checkpassword (checkpw)
start_checkpw() {
  T0=$(now)
  command -v checkpw >/dev/null || { fail checkpw "apt-get install checkpw"; return; }
  id "$TEST_USER" >/dev/null 2>&1 || start_pam
  local HOME_D=$STATE/home/$TEST_USER
  usermod -d "$HOME_D" "$TEST_USER" >/dev/null 2>&1
  mkdir -p "$HOME_D/Maildir"; printf '%s' "$TEST_PASS" > "$HOME_D/Maildir/.password"
  chown -R "$TEST_USER:" "$HOME_D"; chmod 700 "$HOME_D/Maildir"; chmod 600 "$HOME_D/Maildir/.password"
  printf '%s\0%s\0Y123456\0' "$TEST_USER" "$TEST_PASS" | checkpw /bin/true 3<&0 \
    && ok checkpw "checkpw /bin/true, $TEST_USER/$TEST_PASS" || fail checkpw
}

# ---------------------------------------------------------------- 8. opendkim milter
start_milter() {
  local D=$STATE/opendkim
  begin milter "$MILTER_PORT" || return 0
  mkdir -p "$D"; rm -f "$D/opendkim.pid"
  [ -s "$STATE/dns/dkim-sel.private" ] || { fail milter "needs the dns component first (DKIM key)"; return; }
  cp "$STATE/dns/dkim-sel.private" "$D/sel.private"; chmod 600 "$D/sel.private"
  # opendkim is built with libunbound; point it at nsd.  unbound answers test. and
  # 127.in-addr.arpa. itself (RFC 6761) unless those local zones are switched off.
  cat > "$D/unbound.conf" <<EOF
server:
    do-not-query-localhost: no
    do-ip6: no
    module-config: "iterator"
    local-zone: "test." nodefault
    local-zone: "127.in-addr.arpa." nodefault
stub-zone:
    name: "test."
    stub-addr: $H@$DNS_PORT
stub-zone:
    name: "127.in-addr.arpa."
    stub-addr: $H@$DNS_PORT
EOF
  cat > "$D/opendkim.conf" <<EOF
Syslog                  no
LogWhy                  yes
Background              no
Socket                  inet:$MILTER_PORT@$H
PidFile                 $D/opendkim.pid
Mode                    sv
Domain                  example.test
Selector                sel
KeyFile                 $D/sel.private
Canonicalization        relaxed/simple
InternalHosts           127.0.0.1
ResolverConfiguration   $D/unbound.conf
On-BadSignature         reject
AlwaysAddARHeader       yes
AuthservID              mx.example.test
RequireSafeKeys         no
EOF
  setsid opendkim -x "$D/opendkim.conf" </dev/null >>"$D/opendkim.out" 2>&1 &
  local pid=$!
  record milter "$pid" "opendkim -x $D/opendkim.conf"
  wait_for 10 "opendkim port" port_busy "$MILTER_PORT" && alive "$pid" && ok milter "pid $pid" \
    || fail milter "see $D/opendkim.out"
}

# ---------------------------------------------------------------- 9. smtp-sink
start_sink() {
  local D=$STATE/sink
  begin sink "$SINK_PORT" || return 0
  mkdir -p "$D/msgs"; chown nobody "$D/msgs"
  local dump=(); [ "$SINK_DUMP" = 1 ] && dump=(-d "$D/msgs/%Y%m%d%H%M%S.")
  # -u is mandatory when started as root
  setsid smtp-sink -u nobody -h sink.example.test "${dump[@]}" "$H:$SINK_PORT" 256 </dev/null >>"$D/sink.log" 2>&1 &
  local pid=$!
  record sink "$pid" "smtp-sink -u nobody"
  wait_for 10 "smtp-sink banner" banner "$SINK_PORT" 220 && ok sink "pid $pid" || fail sink "see $D/sink.log"
}

# ---------------------------------------------------------------- 9b. full postfix relay -> sink
start_postfix() {
  local D=$STATE/postfix
  begin postfix "$POSTFIX_PORT" || return 0
  mkdir -p "$D/etc" "$D/spool" "$D/data"; chown postfix "$D/data"
  cp /etc/postfix/master.cf "$D/etc/master.cf"
  cat > "$D/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $D/spool
data_directory = $D/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.example.test
mydomain = example.test
myorigin = \$mydomain
mydestination =
inet_interfaces = $H
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks reject
relayhost = [$H]:$SINK_PORT
smtp_dns_support_level = disabled
smtp_host_lookup = native
local_transport = error:local delivery disabled
alias_maps =
alias_database =
biff = no
maillog_file_prefixes = /var, /dev/stdout, $D
maillog_file = $D/maillog
smtpd_banner = \$myhostname ESMTP Postfix-test
EOF
  postconf -c "$D/etc" -M# smtp/inet
  postconf -c "$D/etc" -Me "$H:$POSTFIX_PORT/inet = $H:$POSTFIX_PORT inet n - n - - smtpd"
  postconf -c "$D/etc" -F '*/*/chroot = n'
  # postfix only reports fatal errors to syslog / a tty; the reason lands in $D/maillog
  postfix -c "$D/etc" start </dev/null >>"$D/postfix.out" 2>&1 || { fail postfix "see $D/maillog"; return; }
  local pid; pid=$(pid_from_file "$D/spool/pid/master.pid" 10) || { fail postfix "no pid, see $D/maillog"; return; }
  record postfix "$pid" "postfix/sbin/master"
  wait_for 10 "postfix banner" banner "$POSTFIX_PORT" 220 && ok postfix "pid $pid, relays to $H:$SINK_PORT" \
    || fail postfix "see $D/maillog"
}

# ---------------------------------------------------------------- 11. GeoIP test databases
start_geoip() {
  local D=$STATE/geoip; T0=$(now)
  mkdir -p "$D"
  if ! "$PYTHON" -c 'import mmdb_writer, netaddr' 2>/dev/null; then
    fail geoip "$PYTHON cannot import mmdb_writer (pip install mmdb-writer, or set PYTHON=.venv/bin/python)"; return
  fi
  "$PYTHON" - "$D" <<'EOF' || { fail geoip; return; }
import sys
from netaddr import IPSet
from mmdb_writer import MMDBWriter, MmdbF64, MmdbU32
out = sys.argv[1]
def rec(cc, name, cont, cname, geoname, lat, lon):
    country = {'geoname_id': MmdbU32(geoname), 'iso_code': cc, 'names': {'en': name}}
    return {'continent': {'code': cont, 'geoname_id': MmdbU32(6255148), 'names': {'en': cname}},
            'country': country, 'registered_country': country,
            'location': {'latitude': MmdbF64(lat), 'longitude': MmdbF64(lon), 'accuracy_radius': 100},
            'city': {'geoname_id': MmdbU32(geoname + 1), 'names': {'en': name + ' City'}}}
for dbtype in ('GeoLite2-Country', 'GeoLite2-City'):
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=dbtype, languages=['en'],
                   description={'en': 'qpsmtpd_py test database'})
    w.insert_network(IPSet(['127.0.0.0/24']), rec('US', 'United States', 'NA', 'North America', 6252001, 37.751, -97.822))
    w.insert_network(IPSet(['127.0.0.2/32']), rec('DE', 'Germany', 'EU', 'Europe', 2921044, 51.2993, 9.491))
    w.insert_network(IPSet(['127.0.0.3/32']), rec('CN', 'China', 'AS', 'Asia', 1814991, 34.7732, 113.722))
    w.insert_network(IPSet(['2001:db8::/32']), rec('JP', 'Japan', 'AS', 'Asia', 1861060, 35.69, 139.69))
    w.to_db_file(f'{out}/{dbtype}.mmdb')
w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoLite2-ASN', languages=['en'],
               description={'en': 'qpsmtpd_py test database'})
w.insert_network(IPSet(['127.0.0.0/24']), {'autonomous_system_number': MmdbU32(64500),
                                            'autonomous_system_organization': 'Test Net US'})
w.insert_network(IPSet(['127.0.0.2/32']), {'autonomous_system_number': MmdbU32(64502),
                                            'autonomous_system_organization': 'Test Net DE'})
w.to_db_file(f'{out}/GeoLite2-ASN.mmdb')
EOF
  ok geoip "$D/GeoLite2-Country.mmdb, $D/GeoLite2-City.mmdb, $D/GeoLite2-ASN.mmdb"
}

# ---------------------------------------------------------------- 12. exim (unpacked only)
# exim4-daemon-light conflicts with postfix, so it is not installed: its .deb is
# unpacked once into STATE/exim-root (apt-get download + dpkg-deb -x), and the tests
# run that binary with a config of their own (-C).  The binary needs its compiled-in
# user Debian-exim to exist and its shared libraries (the package's lib* Depends).
start_exim() {
  local R=$STATE/exim-root X=$STATE/exim-root/usr/sbin/exim4 dl libs p missing=""; T0=$(now)
  id Debian-exim >/dev/null 2>&1 || useradd --system --user-group -M -d /nonexistent -s /usr/sbin/nologin Debian-exim \
    || { fail exim "useradd Debian-exim"; return; }
  if [ ! -x "$X" ] || [ ! -s "$R/depends" ]; then
    dl=$(mktemp -d /tmp/qpt-exim-dl.XXXXXX)
    if ! (cd "$dl" && apt-get download exim4-daemon-light) >>"$STATE/exim-apt.log" 2>&1; then
      apt-get update -q >>"$STATE/exim-apt.log" 2>&1
      (cd "$dl" && apt-get download exim4-daemon-light) >>"$STATE/exim-apt.log" 2>&1 \
        || { rm -rf "$dl"; fail exim "apt-get download exim4-daemon-light, see $STATE/exim-apt.log"; return; }
    fi
    rm -rf "$R"; mkdir -p "$R"
    dpkg-deb -x "$dl"/exim4-daemon-light_*.deb "$R" && dpkg-deb -f "$dl"/exim4-daemon-light_*.deb Depends > "$R/depends" \
      || { rm -rf "$dl"; fail exim "dpkg-deb -x"; return; }
    rm -rf "$dl"
  fi
  libs=$(tr ',|' '\n\n' < "$R/depends" | awk '$1 ~ /^lib/ {print $1}')
  for p in $libs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "exim: installing its libraries:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >>"$STATE/exim-apt.log" 2>&1 \
      || { fail exim "apt-get install$missing, see $STATE/exim-apt.log"; return; }
  fi
  # works, not just exists: it reads a config and reports its version
  printf 'primary_hostname = exim.example.test\nspool_directory = %s/spool\n' "$R" > "$R/probe.conf"
  "$X" -C "$R/probe.conf" -bV 2>&1 | grep -q '^Exim version' \
    && ok exim "$X" || fail exim "$X -C $R/probe.conf -bV: $("$X" -C "$R/probe.conf" -bV 2>&1 | head -3)"
}

# ---------------------------------------------------------------- 13. redis
# The second store backend (store_backend redis): state shared by several MX hosts.
# No persistence (--save ''): the tests need a live server, not its files.
redis_ping() {
  local line
  exec 3<>"/dev/tcp/$H/$REDIS_PORT" || return 1
  printf 'PING\r\n' >&3; IFS= read -r -t 2 line <&3; exec 3<&- 3>&-
  [[ "$line" == "+PONG"* ]]
}
start_redis() {
  local D=$STATE/redis
  begin redis "$REDIS_PORT" || return 0
  mkdir -p "$D"; rm -f "$D/redis.pid"
  redis-server --bind "$H" --port "$REDIS_PORT" --dir "$D" --pidfile "$D/redis.pid" \
      --logfile "$D/redis.log" --daemonize yes --save '' --appendonly no </dev/null >>"$D/redis.out" 2>&1 \
    || { fail redis "see $D/redis.out"; return; }
  local pid; pid=$(pid_from_file "$D/redis.pid" 10) || { fail redis "no pid, see $D/redis.log"; return; }
  record redis "$pid" "redis-server $H:$REDIS_PORT"
  wait_for 10 "redis PONG" redis_ping && ok redis "pid $pid" || fail redis "see $D/redis.log"
}

# ---------------------------------------------------------------- run
TALL=$(now)
for c in $COMPONENTS; do
  case $c in
    dns|spamd|clamd|ldap|imap|lmtp|mysql|pam|checkpw|milter|sink|postfix|geoip|exim|redis) "start_$c" ;;
    *) log "unknown component: $c"; FAILED="$FAILED $c" ;;
  esac
done

cat > "$STATE/services.env" <<EOF
# written by t/services/start-services.sh; all services listen on loopback only
QPT_STATE=$STATE
QPT_DNS_HOST=$H
QPT_DNS_PORT=$DNS_PORT
QPT_DKIM_DOMAIN=example.test
QPT_DKIM_SELECTOR=sel
QPT_DKIM_KEY=$STATE/dns/dkim-sel.private
QPT_SPAMD_HOST=$H
QPT_SPAMD_PORT=$SPAMD_PORT
QPT_SPAMD_SOCKET=$STATE/spamd/spamd.sock
QPT_CLAMD_HOST=$H
QPT_CLAMD_PORT=$CLAMD_PORT
QPT_CLAMD_SOCKET=$STATE/clamav/clamd.sock
QPT_CLAMD_CONF=$STATE/clamav/clamd.conf
QPT_CLAMAV_DB=$STATE/clamav/db
QPT_LDAP_URI=ldap://$H:$LDAP_PORT
QPT_LDAP_BASE=dc=example,dc=test
QPT_LDAP_ADMIN_DN=cn=admin,dc=example,dc=test
QPT_LDAP_ADMIN_PW=adminpw
QPT_LDAP_USER_DN=uid=alice,ou=people,dc=example,dc=test
QPT_LDAP_USER_PW=alicepw
QPT_IMAP_HOST=$H
QPT_IMAP_PORT=$IMAP_PORT
QPT_IMAP_USER=alice@example.test
QPT_IMAP_PW=alicepw
QPT_LMTP_HOST=$H
QPT_LMTP_PORT=$LMTP_PORT
QPT_LMTP_SOCKET=$STATE/lmtp/run/lmtp
QPT_LMTP_MAIL=$STATE/lmtp/mail
QPT_LMTP_USERS=$STATE/lmtp/users
QPT_MYSQL_HOST=$H
QPT_MYSQL_PORT=$MYSQL_PORT
QPT_MYSQL_SOCKET=$STATE/mysql/mysqld.sock
QPT_MYSQL_DB=vpopmail
QPT_MYSQL_USER=vpopmailuser
QPT_MYSQL_PW=vpoppasswd
QPT_PAM_SERVICE=$PAM_SERVICE
QPT_PAM_PWDFILE_SERVICE=$PAM_SERVICE-pwdfile
QPT_TEST_USER=$TEST_USER
QPT_TEST_PASS=$TEST_PASS
QPT_CHECKPW=/usr/bin/checkpw
QPT_MILTER_HOST=$H
QPT_MILTER_PORT=$MILTER_PORT
QPT_SINK_HOST=$H
QPT_SINK_PORT=$SINK_PORT
QPT_SINK_DIR=$STATE/sink/msgs
QPT_POSTFIX_HOST=$H
QPT_POSTFIX_PORT=$POSTFIX_PORT
QPT_GEOIP_DIR=$STATE/geoip
QPT_EXIM_BIN=$STATE/exim-root/usr/sbin/exim4
QPT_REDIS_HOST=$H
QPT_REDIS_PORT=$REDIS_PORT
EOF

log "all done in $(since "$TALL")s; env: $STATE/services.env"
if [ -n "$FAILED" ]; then log "FAILED:$FAILED"; exit 1; fi
exit 0
