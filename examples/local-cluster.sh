#!/usr/bin/env bash
# A mintcache cluster on this machine, on loopback ports: 3 memcached servers and 2 mintcache
# replicas that share them (one key ring, one refresh election per stale key across both).
# Prints the endpoints, then runs until Ctrl-C (or SIGTERM), which stops every process it
# started. Nothing is left behind.
#
# Usage:   bash examples/local-cluster.sh
# Ports:   MEMCACHED_PORT (first of 3, default 21211), MINTCACHE_PORT (first replica's gRPC
#          port, default 50061; each replica's admin port is its gRPC port + 1, and the second
#          replica takes the next two ports: 50061/50062 and 50063/50064).
# Binary:  MINTCACHE_SERVER_BIN, else target/release/mintcache-server, else
#          target/debug/mintcache-server, else it is built (cargo build --release).
# Needs:   memcached 1.6+ (apt-get install memcached).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEMCACHED_PORT="${MEMCACHED_PORT:-21211}"
MINTCACHE_PORT="${MINTCACHE_PORT:-50061}"

say() { printf '%s\n' "$*"; }
fail() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }

command -v memcached >/dev/null 2>&1 || fail "memcached is not installed (apt-get install memcached)"

SERVER="${MINTCACHE_SERVER_BIN:-}"
if [ -z "$SERVER" ]; then
    for candidate in "$ROOT/target/release/mintcache-server" "$ROOT/target/debug/mintcache-server"; do
        if [ -x "$candidate" ]; then SERVER="$candidate"; break; fi
    done
fi
if [ -z "$SERVER" ]; then
    say "building mintcache-server (cargo build --release) ..."
    (cd "$ROOT" && cargo build --release --locked --bin mintcache-server)
    SERVER="$ROOT/target/release/mintcache-server"
fi

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    if [ "${#PIDS[@]}" -gt 0 ]; then
        say "stopping ${PIDS[*]} ..."
        kill "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until 127.0.0.1:$1 accepts connections, or fails if process $2 died first.
wait_for_port() {
    local port="$1" pid="$2" what="$3" tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "$what exited during startup"
        tries=$((tries + 1))
        [ "$tries" -lt 200 ] || fail "$what did not listen on 127.0.0.1:$port within 10 s"
        sleep 0.05
    done
}

AS_ROOT=()
if [ "$(id -u)" -eq 0 ]; then AS_ROOT=(-u root); fi

SERVERS=()
for i in 0 1 2; do
    port=$((MEMCACHED_PORT + i))
    memcached -l 127.0.0.1 -p "$port" -U 0 -m 64 -t 2 "${AS_ROOT[@]}" &
    PIDS+=("$!")
    wait_for_port "$port" "$!" "memcached on port $port"
    SERVERS+=("127.0.0.1:$port")
done
MEMCACHED_LIST="$(IFS=,; printf '%s' "${SERVERS[*]}")"

ENDPOINTS=()
for i in 0 1; do
    grpc=$((MINTCACHE_PORT + 2 * i))
    admin=$((grpc + 1))
    MINTCACHE_SERVER__LISTEN="127.0.0.1:$grpc" \
    MINTCACHE_ADMIN__LISTEN="127.0.0.1:$admin" \
    MINTCACHE_MEMCACHED__SERVERS="$MEMCACHED_LIST" \
    MINTCACHE_LOG__LEVEL="${MINTCACHE_LOG__LEVEL:-warn}" \
        "$SERVER" &
    PIDS+=("$!")
    wait_for_port "$grpc" "$!" "mintcache replica on port $grpc"
    ENDPOINTS+=("127.0.0.1:$grpc")
done

say "mintcache local cluster (Ctrl-C stops it):"
say "  memcached  ${SERVERS[*]}"
for endpoint in "${ENDPOINTS[@]}"; do
    say "  mintcache  $endpoint (admin 127.0.0.1:$(( ${endpoint##*:} + 1 )))"
done
say "  pids       ${PIDS[*]}"
say "Try:"
say "  export MINTCACHECLI_ENDPOINT=$(IFS=,; printf '%s' "${ENDPOINTS[*]}")"
say "  mintcache set user:42 Ada --ttl 60"
say "  mintcache -e ${ENDPOINTS[1]} get user:42     # the other replica sees it"
say "  mintcache -e ${ENDPOINTS[0]} stats"
say "ready"

# Runs until a signal arrives (the traps stop everything) or a process dies.
if ! wait -n "${PIDS[@]}"; then
    fail "a process of the cluster exited; stopping the others"
fi
fail "a process of the cluster exited; stopping the others"
