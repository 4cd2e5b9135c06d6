#!/usr/bin/env bash
# Compares streamgate with nginx, HAProxy and Caddy as plain WebSocket
# reverse proxies in front of the same upstream (`streamgate-bench
# upstream`), and with no proxy at all ("direct"), on one machine over
# loopback only.
#
# Workloads, each run against every target in one interleaved run, ROUNDS
# times, with a fresh proxy process per measurement:
#   (a) closed-loop echo, 64 conns x 1 KiB for D seconds -> round trips/s and
#       the ratio to a direct run measured right beside it (direct, proxy on
#       odd rounds; proxy, direct on even ones), so load from other work on
#       the machine hits both sides of a ratio alike;
#   (b) echo, 1 conn x 64 B for D seconds -> p50 latency added to the paired
#       direct run's;
#   (c) proxy CPU seconds (utime+stime of the proxy's process tree, from
#       /proc) over (a), per 100k relayed messages (a round trip is 2);
#   (d) VmRSS of the proxy's processes before and after IDLE_CONNS idle
#       WebSockets (clients in 3 processes, from 127.0.0.2-4) held IDLE_HOLD
#       seconds, per connection; every connection must then carry a message
#       end to end, or the row says how many did;
#   (e) streamgate only: SSE_CONNS event streams (one client process, from
#       127.0.0.2-4) on a bridged route whose upstream pushes SSE_RATE
#       timestamped messages/s to each -> events/s, one-way latency after
#       SSE_WARMUP seconds (the ramp), lost messages; the proxy's VmRSS per
#       session at the end of the warm-up and SSE_HOLD seconds later (every
#       session then holds all its messages so far for replay, ~rate x time
#       of them), and its CPU per 100k events over the hold (SSE=0 skips it).
#
# Workers: every proxy may use every core (WORKERS=auto: nginx
# `worker_processes auto`, HAProxy's default nbthread = cores, GOMAXPROCS =
# cores for streamgate and Caddy), as each ships. WORKERS=1 pins them all to
# one worker/thread instead. The load client and the upstream share the same
# cores, so absolute numbers are modest; the same-round ratios carry over.
#
# Usage:
#   bash examples/bench/compare.sh                      # table on stdout, JSON in $OUT
#   bash examples/bench/compare.sh --markdown > examples/bench/RESULTS.md
#   bash examples/bench/compare.sh --report results.json [--markdown]   # re-render, no run
#   bash examples/bench/compare.sh --markdown --readme > examples/bench/RESULTS.md
#       # --readme also rewrites README.md's Performance table (between its
#       # compare.sh:begin and compare.sh:end markers) from the results
#   QUICK=1 bash examples/bench/compare.sh              # smoke test, ~1 minute
#
# Environment: ROUNDS (3), D (5, seconds per echo run), IDLE_CONNS (9000),
# IDLE_HOLD (30, past streamgate's 25s ping), IDLE_RATE (1000 conns/s per
# client process), WORKERS (auto), TARGETS ("direct streamgate nginx haproxy
# caddy"), SSE (1), SSE_CONNS (9000), SSE_RATE (1), SSE_SIZE (256),
# SSE_WARMUP (20), SSE_HOLD (30),
# SG_ENV (empty; VAR=value words put in streamgate's environment only, e.g.
# SG_ENV="GOGC=50" or SG_ENV="GOMEMLIMIT=200MiB"; recorded in the results' notes),
# OUT (examples/bench/results.json), INSTALL (1: apt-get install missing
# peers; 0: leave missing ones out), KEEP_WORK (0; 1 keeps configs and logs),
# QUICK (0; 1 = ROUNDS=1 D=2 IDLE_CONNS=1000 IDLE_HOLD=3 SSE_CONNS=300
# SSE_WARMUP=2 SSE_HOLD=3).
# PROFILE (empty; a folder: after the rounds, one extra streamgate run of
# each of (a) and (e), left out of the results, with Go's profiles taken
# from its admin listener: echo-cpu.pprof and sse-heap.pprof, sse-goroutines.txt, and
# their `go tool pprof -top` as *.top.txt).
#
# Needs: go, bash, iproute2 (ss), curl for PROFILE, root for apt-get (Debian's nginx, haproxy
# and caddy packages; a peer Debian does not package is left out, with a
# note). Cleans up every process it started on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

format=text report_from="" readme=0
while [ $# -gt 0 ]; do
  case $1 in
    --markdown) format=markdown ;;
    --readme) readme=1 ;;
    --report) report_from=${2:?--report needs a results file}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "${QUICK:-0}" = 1 ]; then
  ROUNDS=${ROUNDS:-1} D=${D:-2} IDLE_CONNS=${IDLE_CONNS:-1000} IDLE_HOLD=${IDLE_HOLD:-3}
  SSE_CONNS=${SSE_CONNS:-300} SSE_WARMUP=${SSE_WARMUP:-2} SSE_HOLD=${SSE_HOLD:-3}
fi
ROUNDS=${ROUNDS:-3}
D=${D:-5}
IDLE_CONNS=${IDLE_CONNS:-9000}
IDLE_HOLD=${IDLE_HOLD:-30}
IDLE_RATE=${IDLE_RATE:-1000}
IDLE_PROCS=3
WORKERS=${WORKERS:-auto}
TARGETS=${TARGETS:-direct streamgate nginx haproxy caddy}
SSE=${SSE:-1}
SSE_CONNS=${SSE_CONNS:-9000}
SSE_RATE=${SSE_RATE:-1}
SSE_SIZE=${SSE_SIZE:-256}
SSE_WARMUP=${SSE_WARMUP:-20}
SSE_HOLD=${SSE_HOLD:-30}
OUT=${OUT:-$here/results.json}
INSTALL=${INSTALL:-1}
ECHO_CONNS=64 ECHO_SIZE=1024 LAT_SIZE=64

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[compare] FAILED: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d /tmp/streamgate-compare.XXXXXX)
chmod 755 "$work" # nginx workers run as nobody
mkdir -p "$work/log"

# --- processes: every one we start is recorded with its start time, so a
# --- recycled pid is never signalled.
declare -A live=()
# starttime PID: the process's start time, empty once it is gone or a zombie.
starttime() { awk '{sub(/.*\) /, ""); if ($1 != "Z") print $20}' "/proc/$1/stat" 2>/dev/null || true; }
track() { live[$1]=$(starttime "$1"); }
ours() { [ -n "${2:-}" ] && [ "$(starttime "$1")" = "$2" ]; }
descendants() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$c:$(starttime "$c")"
    descendants "$c"
  done
}
# stop_proc PID: TERM the process, KILL it (and any descendant it left)
# after 10 s.
stop_proc() {
  local pid=$1 st=${live[$1]:-} kids k i
  unset "live[$pid]"
  ours "$pid" "$st" || { wait "$pid" 2>/dev/null || true; return 0; }
  kids=$(descendants "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do
    ours "$pid" "$st" || break
    sleep 0.1
  done
  ours "$pid" "$st" && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for k in $kids; do
    ours "${k%%:*}" "${k#*:}" && kill -KILL "${k%%:*}" 2>/dev/null || true
  done
}
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${!live[@]}"; do stop_proc "$p"; done
  if [ "${KEEP_WORK:-0}" = 1 ] || [ $rc -ne 0 ]; then
    log "configs and logs kept in $work"
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

go build -o "$work/bench" ./cmd/streamgate-bench
bench=$work/bench

render() { # render FILE: the table (text on stdout, or Markdown with the text on stderr)
  if [ "$format" = markdown ]; then
    "$bench" report -in "$1" -format text >&2
    "$bench" report -in "$1" -format markdown
  else
    "$bench" report -in "$1" -format text
  fi
  [ "$readme" = 0 ] || update_readme "$1"
}
# update_readme FILE: README.md's block between the markers, from FILE.
update_readme() {
  local block=$work/readme.block
  "$bench" report -in "$1" -format readme >"$block"
  grep -q '^<!-- compare.sh:begin -->$' "$root/README.md" && grep -q '^<!-- compare.sh:end -->$' "$root/README.md" ||
    die "README.md has no <!-- compare.sh:begin --> ... <!-- compare.sh:end --> block"
  awk -v block="$block" '
    /^<!-- compare.sh:begin -->$/ { print; while ((getline l < block) > 0) print l; skip = 1; next }
    /^<!-- compare.sh:end -->$/ { skip = 0 }
    !skip' "$root/README.md" >"$work/README.md"
  cat "$work/README.md" >"$root/README.md"
  log "README.md's Performance table rewritten from $1"
}
if [ -n "$report_from" ]; then
  render "$report_from"
  exit 0
fi
log "building streamgate from $root"
go build -o "$work/streamgate" ./cmd/streamgate

# --- file descriptors: a proxied WebSocket holds 2 in the proxy.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=20000
nofile=$((hard < 20000 ? hard : 20000))
ulimit -n "$nofile"
max_idle=$(((nofile - 200) / 2))
[ "$IDLE_CONNS" -le "$max_idle" ] ||
  die "IDLE_CONNS=$IDLE_CONNS needs $((2 * IDLE_CONNS + 200)) open files in the proxy; the limit is $nofile (at most $max_idle)"
[ "$SSE" != 1 ] || [ "$SSE_CONNS" -le "$max_idle" ] ||
  die "SSE_CONNS=$SSE_CONNS needs $((2 * SSE_CONNS + 200)) open files in the proxy; the limit is $nofile (at most $max_idle)"

# --- peers: Debian's packages, installed if missing.
pkg_bin() { case $1 in nginx) echo /usr/sbin/nginx ;; haproxy) echo /usr/sbin/haproxy ;; caddy) echo /usr/bin/caddy ;; esac; }
notes=()
missing=()
for t in $TARGETS; do
  case $t in direct | streamgate) continue ;; nginx | haproxy | caddy) ;; *) die "unknown target $t" ;; esac
  command -v "$t" >/dev/null || [ -x "$(pkg_bin "$t")" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$INSTALL" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root (or INSTALL=0 to leave them out)"
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq >&2
    avail=()
    for p in "${missing[@]}"; do
      cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
      if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
        notes+=("$p: this Debian has no $p package, so it is left out.")
      else
        avail+=("$p")
      fi
    done
    [ ${#avail[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${avail[@]}" >&2
  fi
  for p in "${missing[@]}"; do
    command -v "$p" >/dev/null || [ -x "$(pkg_bin "$p")" ] || {
      log "leaving $p out: not installed"
      [ "$INSTALL" = 1 ] || notes+=("$p: not installed (INSTALL=0), left out.")
      TARGETS=$(echo " $TARGETS " | sed "s/ $p / /; s/^ //; s/ $//")
    }
  done
fi
export PATH=$PATH:/usr/sbin:/sbin
read -r -a targets <<<"$TARGETS"

# --- loopback ports, below the ephemeral range, checked free.
next_port=$((${BASE_PORT:-21000 + RANDOM % 8000}))
port_busy() {
  if command -v ss >/dev/null; then ss -Htln "sport = :$1" | grep -q .; else (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; fi
}
alloc_port() { # alloc_port VAR
  while port_busy "$next_port"; do next_port=$((next_port + 1)); done
  printf -v "$1" %d "$next_port"
  next_port=$((next_port + 1))
}
alloc_port UP_PORT; alloc_port EMIT_PORT; alloc_port SG_PORT; alloc_port SG_ADMIN
alloc_port NGINX_PORT; alloc_port HAPROXY_PORT; alloc_port CADDY_PORT

# --- configs.
gomaxprocs=()
[ "$WORKERS" = auto ] || gomaxprocs=(env "GOMAXPROCS=$WORKERS")
sg_env=()
if [ -n "${SG_ENV:-}" ]; then
  read -ra sg_env <<<"$SG_ENV"
  for kv in "${sg_env[@]}"; do
    case $kv in
      [A-Za-z_]*=*) ;;
      *) echo "compare.sh: SG_ENV: $kv is not VAR=value" >&2; exit 2 ;;
    esac
  done
  sg_env=(env "${sg_env[@]}")
  notes+=("streamgate ran with $SG_ENV in its environment.")
fi
cat >"$work/streamgate.yaml" <<YAML
listen: "127.0.0.1:$SG_PORT"
admin: "127.0.0.1:$SG_ADMIN"
upstream: "http://127.0.0.1:$UP_PORT"
timeouts: { shutdown: "5s" }
routes:
  - path: "/sse/"
    upstream: "http://127.0.0.1:$EMIT_PORT"
    sse: true
log: { level: "warn" }
YAML
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
user nobody nogroup;
worker_processes $WORKERS;
worker_rlimit_nofile $nofile;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/log/nginx.error.log warn;
events { worker_connections $nofile; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; "" close; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://127.0.0.1:$UP_PORT;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
NGINX
haproxy_maxconn=$(((nofile - 200) / 2))
cat >"$work/haproxy.cfg" <<HAPROXY
global
  maxconn $haproxy_maxconn
$([ "$WORKERS" = auto ] || echo "  nbthread $WORKERS")
defaults
  mode http
  maxconn $haproxy_maxconn
  timeout connect 10s
  timeout http-request 10s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend ws
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend echo
backend echo
  server upstream 127.0.0.1:$UP_PORT
HAPROXY
mkdir -p "$work/caddy"
cat >"$work/caddy/Caddyfile" <<CADDY
{
	admin off
	auto_https off
	grace_period 2s
	storage file_system $work/caddy/data
}
:$CADDY_PORT {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$UP_PORT
}
CADDY
caddy_env=(env "XDG_DATA_HOME=$work/caddy/data" "XDG_CONFIG_HOME=$work/caddy/config" "HOME=$work/caddy")

for t in "${targets[@]}"; do # each config checked by its own tool first
  case $t in
    streamgate) "$work/streamgate" validate -config "$work/streamgate.yaml" >"$work/log/validate.streamgate" 2>&1 ;;
    nginx) nginx -t -q -e "$work/log/nginx.startup.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/log/validate.nginx" 2>&1 ;;
    haproxy) haproxy -c -q -f "$work/haproxy.cfg" >"$work/log/validate.haproxy" 2>&1 ;;
    caddy) "${caddy_env[@]}" caddy validate --adapter caddyfile --config "$work/caddy/Caddyfile" >"$work/log/validate.caddy" 2>&1 ;;
    *) true ;;
  esac || { cat "$work/log/validate.$t" >&2; die "$t rejects its generated config"; }
done

# --- the upstreams, shared by all measurements.
"$bench" upstream -listen "127.0.0.1:$UP_PORT" 2>"$work/log/upstream.log" &
up_pid=$!; track $up_pid
"$bench" upstream -listen "127.0.0.1:$EMIT_PORT" -emit "$SSE_RATE" -size "$SSE_SIZE" 2>"$work/log/emit-upstream.log" &
track $!

# wait_listen PORT PID NAME: until PORT accepts, or NAME died / 15 s passed.
wait_listen() {
  local i
  for i in $(seq 150); do
    port_busy "$1" && return 0
    kill -0 "$2" 2>/dev/null || { tail -20 "$work/log/$3".* >&2 2>/dev/null; die "$3 exited during startup"; }
    sleep 0.1
  done
  tail -20 "$work/log/$3".* >&2 2>/dev/null
  die "$3 did not listen on 127.0.0.1:$1 within 15 s"
}
wait_listen "$UP_PORT" "$up_pid" upstream

# start_target NAME TAG: a fresh proxy; sets proxy_pid (empty for direct) and
# url, and checks a message goes through end to end.
start_target() {
  local t=$1 tag=$2 port lf="$work/log/$1.$2.log"
  proxy_pid=""
  case $t in
    direct) port=$UP_PORT ;;
    streamgate) port=$SG_PORT; "${sg_env[@]}" "${gomaxprocs[@]}" "$work/streamgate" -config "$work/streamgate.yaml" 2>"$lf" & ;;
    nginx) port=$NGINX_PORT; nginx -e "$lf" -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>>"$lf" & ;;
    haproxy) port=$HAPROXY_PORT; haproxy -db -f "$work/haproxy.cfg" 2>"$lf" & ;;
    caddy) port=$CADDY_PORT; "${caddy_env[@]}" "${gomaxprocs[@]}" caddy run --adapter caddyfile --config "$work/caddy/Caddyfile" 2>"$lf" & ;;
  esac
  if [ "$t" != direct ]; then
    proxy_pid=$!; track "$proxy_pid"
    wait_listen "$port" "$proxy_pid" "$t"
  fi
  url=ws://127.0.0.1:$port/
  local out
  out=$("$bench" echo -url "$url" -conns 1 -size 16 -for 200ms 2>&1) ||
    { tail -20 "$lf" >&2 2>/dev/null; die "$t does not relay WebSocket messages: $out"; }
  case $out in *'"errors":0'*) ;; *) die "$t: echo check failed: $out" ;; esac
}
stop_target() { [ -z "$proxy_pid" ] || stop_proc "$proxy_pid"; proxy_pid=""; }

proc_field() { "$bench" proc -pid "$1" -hz "$hz" | sed -E "s/.*\"$2\":([0-9.eE+-]+).*/\1/"; }
hz=$(getconf CLK_TCK)
raw=$work/raw.jsonl
record() { printf '%s\n' "$1" >>"$raw"; }
jstr() { local s=$1; s=${s//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

# --- the workloads.
measure_echo() { # measure_echo KIND ROUND TARGET CONNS SIZE [PAIR]
  local kind=$1 r=$2 t=$3 pair=${6:+,\"pair\":\"$6\"} out cpu0 cpu1 cpu=""
  start_target "$t" "$r.$kind"
  [ -z "$proxy_pid" ] || cpu0=$(proc_field "$proxy_pid" cpu_s)
  out=$("$bench" echo -url "$url" -conns "$4" -size "$5" -for "${D}s" 2>>"$work/log/client.log") ||
    die "$t: echo client failed (see $work/log/client.log)"
  if [ -n "$proxy_pid" ]; then
    cpu1=$(proc_field "$proxy_pid" cpu_s)
    cpu=",\"cpu_s\":$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.3f", b - a}')"
  fi
  stop_target
  record "{\"kind\":\"$kind\",\"round\":$r,\"target\":\"$t\"$pair,\"echo\":$out$cpu}"
  log "round $r $kind $t${6:+ (beside $6)}: $(sed -E 's/.*"rt_per_sec":([0-9]+)[.0-9]*.*"p50_us":([0-9]+)[.0-9]*.*"p99_us":([0-9]+)[.0-9]*.*/\1 rt\/s, p50 \2 µs, p99 \3 µs/' <<<"$out")${cpu:+, proxy CPU ${cpu#*:} s}"
}

measure_idle() { # measure_idle ROUND TARGET
  local r=$1 t=$2 rss0 rss1 i n per pids=() err="" est=0 alive=0 f deadline
  start_target "$t" "$r.idle"
  sleep 1
  rss0=$(proc_field "$proxy_pid" rss_kib)
  per=$((IDLE_CONNS / IDLE_PROCS))
  rm -f "$work"/ready.* "$work"/idle.*
  for i in $(seq "$IDLE_PROCS"); do
    n=$per; [ "$i" -lt "$IDLE_PROCS" ] || n=$((IDLE_CONNS - per * (IDLE_PROCS - 1)))
    "$bench" idle -url "$url" -conns "$n" -sources "127.0.0.$((i + 1))" -rate "$IDLE_RATE" -hold 0 \
      -ready "$work/ready.$i" >"$work/idle.$i.json" 2>"$work/idle.$i.err" &
    pids+=($!); track $!
  done
  deadline=$((SECONDS + IDLE_CONNS / IDLE_RATE / IDLE_PROCS + 60))
  for i in $(seq "$IDLE_PROCS"); do
    while [ ! -f "$work/ready.$i" ]; do
      kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { err="idle client $i exited: $(tail -1 "$work/idle.$i.err")"; break 2; }
      [ $SECONDS -lt $deadline ] || { err="idle clients not all connected in time"; break 2; }
      sleep 0.2
    done
  done
  if [ -z "$err" ]; then
    sleep "$IDLE_HOLD"
    rss1=$(proc_field "$proxy_pid" rss_kib)
    for f in "${pids[@]}"; do kill -USR1 "$f" 2>/dev/null || true; done
  fi
  for f in "${pids[@]}"; do
    if [ -n "$err" ]; then stop_proc "$f"; else wait "$f" 2>/dev/null || true; unset "live[$f]"; fi
  done
  stop_target
  if [ -n "$err" ]; then
    record "{\"kind\":\"idle\",\"round\":$r,\"target\":\"$t\",\"error\":$(jstr "$err")}"
    log "round $r idle $t: FAILED: $err"
    return
  fi
  for i in $(seq "$IDLE_PROCS"); do
    f=$work/idle.$i.json
    grep -q '"established"' "$f" || die "$t: idle client $i printed no result: $(cat "$work/idle.$i.err")"
    est=$((est + $(sed -E 's/.*"established":([0-9]+).*/\1/' "$f")))
    alive=$((alive + $(sed -E 's/.*"alive":([0-9]+).*/\1/' "$f")))
  done
  record "{\"kind\":\"idle\",\"round\":$r,\"target\":\"$t\",\"idle\":{\"rss_kib_before\":$rss0,\"rss_kib_after\":$rss1,\"wanted\":$IDLE_CONNS,\"established\":$est,\"alive\":$alive,\"hold_s\":$IDLE_HOLD}}"
  log "round $r idle $t: $est/$IDLE_CONNS open, $alive alive after ${IDLE_HOLD}s, RSS $rss0 -> $rss1 KiB ($(awk -v a="$rss0" -v b="$rss1" -v c="$est" 'BEGIN {printf "%.1f", c ? (b - a) / c : 0}') KiB/conn)"
}

# start_sse_client OUT: SSE_CONNS streams on streamgate's bridged route in
# the background, for SSE_WARMUP + SSE_HOLD seconds, results to OUT; sets
# client. One client process: its percentiles are exact, and 9,000
# streams fit its open-file limit (the proxy holds two sockets a session).
start_sse_client() {
  "$bench" sse -url "http://127.0.0.1:$SG_PORT/sse/feed" -conns "$SSE_CONNS" -sources 127.0.0.2,127.0.0.3,127.0.0.4 \
    -rate 1000 -warmup "${SSE_WARMUP}s" -for "$((SSE_WARMUP + SSE_HOLD))s" >"$1" 2>>"$work/log/client.log" &
  client=$!; track $client
}

measure_sse() { # measure_sse ROUND
  local r=$1 out rss0 rss1 rss2 cpu1 cpu2 client
  local end_s=$((SSE_WARMUP + (SSE_HOLD > 2 ? SSE_HOLD - 1 : 1))) # the last sample before the streams end
  start_target streamgate "$r.sse"
  sleep 1
  rss0=$(proc_field "$proxy_pid" rss_kib)
  start_sse_client "$work/sse.json"
  sleep "$SSE_WARMUP"
  rss1=$(proc_field "$proxy_pid" rss_kib) cpu1=$(proc_field "$proxy_pid" cpu_s)
  sleep "$((end_s - SSE_WARMUP))"
  rss2=$(proc_field "$proxy_pid" rss_kib) cpu2=$(proc_field "$proxy_pid" cpu_s)
  wait "$client" || die "sse client failed (see $work/log/client.log)"
  unset "live[$client]"
  out=$(cat "$work/sse.json")
  stop_target
  record "{\"kind\":\"sse\",\"round\":$r,\"target\":\"streamgate\",\"sse\":$out,\"sse_mem\":{\"rss_kib_before\":$rss0,\"rss_kib_warm\":$rss1,\"rss_kib_end\":$rss2,\"rate\":$SSE_RATE,\"warm_s\":$SSE_WARMUP,\"end_s\":$end_s,\"cpu_s\":$(awk -v a="$cpu1" -v b="$cpu2" 'BEGIN {printf "%.3f", b - a}')}}"
  log "round $r sse streamgate: $out; RSS $rss0 -> $rss1 (at ${SSE_WARMUP}s) -> $rss2 KiB"
}

# --- meta, then the rounds.
version() {
  case $1 in
    nginx) nginx -v 2>&1 | sed 's/.*nginx\///' ;;
    haproxy) haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p' ;;
    caddy) caddy version | cut -d' ' -f1 ;;
    streamgate) go version | cut -d' ' -f3 | sed 's/^/built with /' ;;
  esac
}
versions=""
for t in "${targets[@]}"; do
  [ "$t" = direct ] || versions+="${versions:+,}\"$t\":$(jstr "$(version "$t")")"
done
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain 2>/dev/null | head -1)" ] || commit+=" + local changes"
notes_json=""
for n in "${notes[@]+"${notes[@]}"}"; do notes_json+="${notes_json:+,}$(jstr "$n")"; done
. /etc/os-release 2>/dev/null || PRETTY_NAME=unknown
record "{\"kind\":\"meta\",\"meta\":{\"date\":\"$(date -u +%Y-%m-%dT%H:%MZ)\",\"nproc\":$(nproc),\"cpu_model\":$(jstr "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"),\"kernel\":$(jstr "$(uname -r)"),\"os\":$(jstr "$PRETTY_NAME"),\"commit\":$(jstr "$commit"),\"versions\":{$versions},\"rounds\":$ROUNDS,\"seconds\":$D,\"echo_conns\":$ECHO_CONNS,\"echo_size\":$ECHO_SIZE,\"lat_size\":$LAT_SIZE,\"idle_conns\":$IDLE_CONNS,\"idle_hold_s\":$IDLE_HOLD,\"idle_procs\":$IDLE_PROCS,\"workers\":$(jstr "$WORKERS"),\"loadavg_before\":$(jstr "$(cut -d' ' -f1-3 /proc/loadavg)"),\"sse_conns\":$([ "$SSE" = 1 ] && echo "$SSE_CONNS" || echo 0),\"sse_rate\":$SSE_RATE,\"sse_size\":$SSE_SIZE,\"sse_warmup_s\":$SSE_WARMUP,\"sse_hold_s\":$SSE_HOLD,\"quick\":$([ "${QUICK:-0}" = 1 ] && echo true || echo false),\"notes\":[$notes_json]}}"

has_direct=0
[[ " ${targets[*]} " != *" direct "* ]] || has_direct=1
log "targets: ${targets[*]}; $ROUNDS round(s), D=${D}s, IDLE_CONNS=$IDLE_CONNS held ${IDLE_HOLD}s, WORKERS=$WORKERS; work dir $work"
for r in $(seq "$ROUNDS"); do
  # Rotate the order each round, so drift on a shared machine spreads evenly.
  order=("${targets[@]:$(((r - 1) % ${#targets[@]}))}" "${targets[@]:0:$(((r - 1) % ${#targets[@]}))}")
  for w in "throughput $ECHO_CONNS $ECHO_SIZE" "latency 1 $LAT_SIZE"; do
    read -r kind conns size <<<"$w"
    for t in "${order[@]}"; do
      if [ "$t" = direct ]; then
        [ ${#targets[@]} -gt 1 ] || measure_echo "$kind" "$r" direct "$conns" "$size" # else paired below
      elif [ "$has_direct" = 0 ]; then
        measure_echo "$kind" "$r" "$t" "$conns" "$size"
      elif [ $((r % 2)) = 1 ]; then
        measure_echo "$kind" "$r" direct "$conns" "$size" "$t"
        measure_echo "$kind" "$r" "$t" "$conns" "$size"
      else
        measure_echo "$kind" "$r" "$t" "$conns" "$size"
        measure_echo "$kind" "$r" direct "$conns" "$size" "$t"
      fi
    done
  done
  if [ "$SSE" = 1 ] && [[ " ${targets[*]} " == *" streamgate "* ]]; then measure_sse "$r"; fi
  for t in "${order[@]}"; do [ "$t" = direct ] || measure_idle "$r" "$t"; done
done

profile_runs() { # profile_runs DIR
  local dir=$1 client admin=http://127.0.0.1:$SG_ADMIN
  mkdir -p "$dir"
  log "profiling streamgate: (a) echo $ECHO_CONNS conns x $ECHO_SIZE B, CPU"
  start_target streamgate profile.echo
  "$bench" echo -url "$url" -conns "$ECHO_CONNS" -size "$ECHO_SIZE" -for "$((D + 2))s" >/dev/null 2>>"$work/log/client.log" &
  client=$!; track $client
  sleep 1
  curl -fsS "$admin/debug/pprof/profile?seconds=$D" -o "$dir/echo-cpu.pprof" || die "CPU profile failed"
  wait "$client" || true; unset "live[$client]"
  stop_target
  if [ "$SSE" = 1 ]; then
    log "profiling streamgate: (e) $SSE_CONNS SSE sessions, heap and goroutines"
    start_target streamgate profile.sse
    start_sse_client /dev/null
    sleep "$SSE_WARMUP"
    curl -fsS "$admin/debug/pprof/heap?gc=1" -o "$dir/sse-heap.pprof" || die "heap profile failed"
    curl -fsS "$admin/debug/pprof/goroutine?debug=1" -o "$dir/sse-goroutines.txt" || die "goroutine profile failed"
    wait "$client" || true; unset "live[$client]"
    stop_target
  fi
  for f in "$dir"/*.pprof; do
    go tool pprof -top -nodecount=40 "$work/streamgate" "$f" >"${f%.pprof}.top.txt" 2>/dev/null || true
  done
  log "profiles in $dir"
}
[ -z "${PROFILE:-}" ] || profile_runs "$PROFILE"

sed -i "1s|\"loadavg_before\"|\"loadavg_after\":$(jstr "$(cut -d' ' -f1-3 /proc/loadavg)"),&|" "$raw"
"$bench" report -in "$raw" -json "$OUT" -format none
log "results: $OUT"
render "$OUT"
