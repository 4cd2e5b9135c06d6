// Package bench holds no code. It is streamgate's load-test kit:
// compare.sh runs the same WebSocket workloads directly against an echo
// upstream and through streamgate, nginx, HAProxy and Caddy, and prints a
// table of same-run ratios (RESULTS.md is its Markdown output, results.json
// its raw numbers); idle-memory.sh measures streamgate alone holding many
// idle WebSockets. Both drive cmd/streamgate-bench.
//
// Its test runs compare.sh in quick mode, and only when STREAMGATE_BENCH=1:
// a load run takes the whole machine for about a minute and installs
// Debian packages when the peers are missing.
package bench
