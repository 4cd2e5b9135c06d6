#!/usr/bin/env bash
# Starts the demo (legacy backend + streamgate) behind a WebSocket-hostile,
# buffering nginx, and prints the URL to open. On the side-by-side page the
# plain WebSocket fails while StreamgateSocket falls back to SSE and the
# counter keeps ticking.
#   bash examples/corporate-proxy/run.sh        (Ctrl-C to stop)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "install nginx first: apt-get install -y nginx" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
prefix=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$prefix"' EXIT INT TERM

STREAMGATE_LISTEN=127.0.0.1:8080 STREAMGATE_ADMIN=127.0.0.1:9090 go run ./examples/demo >"$prefix/demo.log" 2>&1 &
pids+=($!)
sed -e "s|{{PREFIX}}|$prefix|g" -e "s|{{LISTEN}}|127.0.0.1:8000|" -e "s|{{STREAMGATE}}|127.0.0.1:8080|" \
  examples/corporate-proxy/nginx.conf.tmpl >"$prefix/nginx.conf"
"$NGINX" -p "$prefix" -c "$prefix/nginx.conf" &
pids+=($!)
for _ in $(seq 100); do curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break; sleep 0.2; done
echo
echo "  through the hostile proxy: http://127.0.0.1:8000/side-by-side"
echo "  (left: plain WebSocket, refused by the proxy; right: StreamgateSocket, falls back to SSE)"
echo
wait
