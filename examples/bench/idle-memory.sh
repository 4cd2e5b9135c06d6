#!/usr/bin/env bash
# Measures streamgate's resident memory per idle proxied WebSocket.
#
# Starts the bench upstream, streamgate and CLIENTS load-client processes
# (each from its own loopback source address), opens CONNS WebSockets
# through the proxy, holds them HOLD seconds (past a ping cycle), then checks
# each still carries a message end to end. Prints the proxy's VmRSS and Go
# heap before and after, per connection.
#
#   CONNS=9000 CLIENTS=3 HOLD=30 bash examples/bench/idle-memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-9000}
CLIENTS=${CLIENTS:-3}
HOLD=${HOLD:-30}
PING=${PING:-10s}
ulimit -n 20000

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/streamgate" ./cmd/streamgate
go build -o "$work/bench" ./cmd/streamgate-bench

"$work/bench" upstream -listen 127.0.0.1:13000 2>/dev/null & pids+=($!)
cat > "$work/proxy.yaml" <<YAML
listen: "127.0.0.1:18080"
admin: "127.0.0.1:19090"
upstream: "http://127.0.0.1:13000"
websocket: { ping_interval: "$PING", pong_timeout: "5s" }
log: { level: "warn" }
YAML
"$work/streamgate" -config "$work/proxy.yaml" 2>"$work/proxy.log" & proxy=$!; pids+=($proxy)
for _ in $(seq 100); do curl -fs http://127.0.0.1:19090/readyz >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' "/proc/$proxy/status"; }
heap() { curl -fs http://127.0.0.1:19090/metrics | awk '/^go_memstats_heap_inuse_bytes/ {printf "%d", $2/1024}'; }
stack() { curl -fs http://127.0.0.1:19090/metrics | awk '/^go_memstats_stack_inuse_bytes/ {printf "%d", $2/1024}'; }
goroutines() { curl -fs http://127.0.0.1:19090/metrics | awk '/^go_goroutines/ {print $2}'; }
rss0=$(rss); heap0=$(heap); stack0=$(stack)

per=$((CONNS / CLIENTS))
clients=()
for i in $(seq 1 "$CLIENTS"); do
  "$work/bench" idle -url ws://127.0.0.1:18080/ -conns "$per" -sources "127.0.0.$((i + 1))" \
    -rate 3000 -hold 0 -ready "$work/ready.$i" >"$work/client.$i.json" 2>"$work/client.$i.err" &
  clients+=($!); pids+=($!)
done
for i in $(seq 1 "$CLIENTS"); do
  while [ ! -f "$work/ready.$i" ]; do sleep 0.2; done
done
sleep "$HOLD"
rss1=$(rss); heap1=$(heap); stack1=$(stack); g1=$(goroutines)
kill -USR1 "${clients[@]}"
wait "${clients[@]}" || true
established=0; alive=0
for i in $(seq 1 "$CLIENTS"); do
  established=$((established + $(sed -E 's/.*"established":([0-9]+).*/\1/' "$work/client.$i.json")))
  alive=$((alive + $(sed -E 's/.*"alive":([0-9]+).*/\1/' "$work/client.$i.json")))
done
awk -v c="$established" -v a="$alive" -v r0="$rss0" -v r1="$rss1" -v h0="$heap0" -v h1="$heap1" -v g="$g1" -v s0="$stack0" -v s1="$stack1" -v hold="$HOLD" 'BEGIN {
  printf "{\"mode\":\"idle-memory\",\"connections\":%d,\"alive_after_hold\":%d,\"hold_s\":%d,\"goroutines\":%d,", c, a, hold, g
  printf "\"rss_kib_before\":%d,\"rss_kib_after\":%d,\"rss_kib_per_conn\":%.1f,", r0, r1, (r1-r0)/c
  printf "\"heap_kib_before\":%d,\"heap_kib_after\":%d,\"heap_kib_per_conn\":%.1f,", h0, h1, (h1-h0)/c
  printf "\"stack_kib_per_conn\":%.1f}\n", (s1-s0)/c
}'
