#!/usr/bin/env bash
# Latency of calls on one memcached server's keys while the other server hangs (SIGSTOP: it
# accepts connections and never answers), as docs/OPERATIONS.md reports it.
#
# Starts two memcached (ports 23001, 23002) and a mintcache server over both (gRPC 50151,
# admin 50152; defaults otherwise), finds a key prefix whose 4 bench keys all live on the first
# server, then runs twice for 10 s: a load on those 4 keys (measured) beside a load on 1,000
# keys of both servers; the second time the other server is stopped 1.5 s into the run.
#
# Usage: bash scripts/bench-hung-server.sh [SERVER_BINARY]
#   (default target/release/mintcache-server; needs target/release/mintcache-bench, memcached,
#   python3; build both with `cargo build --release --workspace --bin mintcache-server
#   --bin mintcache-bench` or run scripts/bench-compare.sh once)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER="${1:-$ROOT/target/release/mintcache-server}"
BENCH="$ROOT/target/release/mintcache-bench"
OUT="$(mktemp -d)"
MC_USER=()
[ "$(id -u)" = 0 ] && MC_USER=(-u root)

memcached "${MC_USER[@]}" -l 127.0.0.1 -p 23001 -U 0 -m 64 & HEALTHY=$!
memcached "${MC_USER[@]}" -l 127.0.0.1 -p 23002 -U 0 -m 64 & OTHER=$!
MINTCACHE_SERVER__LISTEN=127.0.0.1:50151 MINTCACHE_ADMIN__LISTEN=127.0.0.1:50152 \
    MINTCACHE_MEMCACHED__SERVERS=127.0.0.1:23001,127.0.0.1:23002 "$SERVER" >"$OUT/server.log" 2>&1 &
MINT=$!
trap 'kill -CONT $OTHER 2>/dev/null; kill $MINT $HEALTHY $OTHER 2>/dev/null; wait 2>/dev/null; rm -rf "$OUT"' EXIT
sleep 1

# Items held by the other server.
items() {
    python3 - <<'PY'
import socket
s = socket.create_connection(("127.0.0.1", 23002))
s.sendall(b"stats\r\n")
b = b""
while not b.endswith(b"END\r\n"):
    b += s.recv(65536)
print([l.split()[2] for l in b.decode().splitlines() if l.startswith("STAT curr_items ")][0])
PY
}

PREFIX=""
for i in $(seq 1 200); do
    before="$(items)"
    "$BENCH" -e http://127.0.0.1:50151 --keys 4 --key-prefix "healthy$i:" --count 1 --warmup 0s \
        -c 1 -s 1 --json >/dev/null 2>&1
    if [ "$(items)" = "$before" ]; then
        PREFIX="healthy$i:"
        break
    fi
done
[ -n "$PREFIX" ] || { echo "no key prefix with all keys on one server" >&2; exit 1; }

run() {
    "$BENCH" -e http://127.0.0.1:50151 --keys 1000 --hit-ratio 0 -c 1 -s 8 --warmup 0s \
        --duration 13s --timeout 5s --json >/dev/null 2>&1 &
    local both=$!
    "$BENCH" -e http://127.0.0.1:50151 --keys 4 --key-prefix "$PREFIX" -c 2 -s 8 --warmup 1s \
        --duration 10s --json >"$OUT/$1.json" 2>/dev/null &
    local healthy=$!
    if [ "$1" = hung ]; then
        sleep 1.5
        kill -STOP "$OTHER"
    fi
    wait "$healthy" || true
    wait "$both" || true
    python3 - "$OUT/$1.json" "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_us"]
print(f"{sys.argv[2]:>4}: {d['ops_per_second']:,.0f} calls/s, p50 {l['p50'] / 1000:.2f} ms, "
      f"p99 {l['p99'] / 1000:.2f} ms, p99.9 {l['p999'] / 1000:.2f} ms, max {l['max'] / 1000:.2f} ms, "
      f"failed {sum(d['errors'].values())}")
PY
}
echo "keys $PREFIX* live on 127.0.0.1:23001; 127.0.0.1:23002 hangs in the second run"
run up
run hung
