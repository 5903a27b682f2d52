#!/usr/bin/env bash
# A mintcache cluster on this machine, on loopback ports: 3 memcached servers and 2 mintcache
# replicas that share them (one key ring, one refresh election per stale key across both).
# Prints the endpoints, then runs until Ctrl-C (or SIGTERM), which stops every process it
# started. Nothing is left behind.
#
# Usage:   bash examples/local-cluster.sh
#          MINTCACHE_PORT=50161 MEMCACHED_PORT=21311 bash examples/local-cluster.sh
# Ports:   MEMCACHED_PORT, the first of 3 consecutive memcached ports (default 21211);
#          MINTCACHE_PORT, the first of 4 consecutive mintcache ports (default 50061): the
#          first replica's gRPC and admin ports (50061, 50062), then the second's (50063,
#          50064). Every port must be free; the script checks before it starts anything.
# Binary:  MINTCACHE_SERVER_BIN, else target/release/mintcache-server, else
#          target/debug/mintcache-server, else it is built (cargo build --release).
# Needs:   memcached 1.6+ (apt-get install memcached).
#
# It says `ready` once each process answers as itself: each memcached reports the process id
# it was started with (`stats`), each replica prints the `listening` line of the ports it
# bound. A process that exits is named, and the others are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEMCACHED_PORT="${MEMCACHED_PORT:-21211}"
MINTCACHE_PORT="${MINTCACHE_PORT:-50061}"

say() { printf '%s\n' "$*"; }
fail() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    "") ;;
    *) fail "unknown argument $1 (see --help; ports are set with MINTCACHE_PORT and MEMCACHED_PORT)" ;;
esac

for setting in MEMCACHED_PORT MINTCACHE_PORT; do
    value="${!setting}"
    [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -ge 1024 ] && [ "$value" -le 65531 ] ||
        fail "$setting=$value: give a port from 1024 to 65531 (the first of several consecutive ones)"
done

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

# Whether something accepts connections on 127.0.0.1:$1.
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Every port free, before anything starts: a port taken by another process is named, with
# the setting that moves it.
taken=()
for i in 0 1 2; do
    port=$((MEMCACHED_PORT + i))
    if port_answers "$port"; then taken+=("$port (memcached $((i + 1)) of 3; MEMCACHED_PORT=$MEMCACHED_PORT)"); fi
done
for i in 0 1; do
    grpc=$((MINTCACHE_PORT + 2 * i))
    if port_answers "$grpc"; then taken+=("$grpc (replica $((i + 1)) gRPC; MINTCACHE_PORT=$MINTCACHE_PORT)"); fi
    if port_answers "$((grpc + 1))"; then taken+=("$((grpc + 1)) (replica $((i + 1)) admin; MINTCACHE_PORT=$MINTCACHE_PORT)"); fi
done
if [ "${#taken[@]}" -gt 0 ]; then
    for t in "${taken[@]}"; do printf 'local-cluster: port %s is already in use\n' "$t" >&2; done
    fail "stop what holds these ports, or choose others: MINTCACHE_PORT=N (4 consecutive ports from N) and MEMCACHED_PORT=N (3), e.g. MINTCACHE_PORT=$((MINTCACHE_PORT + 100)) MEMCACHED_PORT=$((MEMCACHED_PORT + 100)) bash examples/local-cluster.sh"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mintcache-local-cluster.XXXXXX")"
PIDS=()
declare -A NAME=()
cleanup() {
    trap - INT TERM EXIT
    if [ "${#PIDS[@]}" -gt 0 ]; then
        say "stopping ${PIDS[*]} ..."
        kill "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The process id the memcached on 127.0.0.1:$1 reports (`stats`), or nothing.
memcached_pid() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
        printf 'stats\r\n' >&3
        while IFS= read -r -t 2 line <&3; do
            line="${line%$'\r'}"
            case "$line" in
                "STAT pid "*) printf '%s' "${line#STAT pid }" ;;
                END | ERROR*) break ;;
            esac
        done
    ) 2>/dev/null
}

# Waits until CHECK (a command) succeeds, or fails naming process $1 if it exits first.
wait_until_ready() {
    local pid="$1" tries=0
    shift
    until "$@"; do
        kill -0 "$pid" 2>/dev/null ||
            fail "${NAME[$pid]} (pid $pid) exited during startup (its error is above; the cluster's ports are set with MINTCACHE_PORT and MEMCACHED_PORT)"
        tries=$((tries + 1))
        [ "$tries" -lt 200 ] || fail "${NAME[$pid]} (pid $pid) did not get ready within 10 s"
        sleep 0.05
    done
}

is_our_memcached() { [ "$(memcached_pid "$1")" = "$2" ]; }

AS_ROOT=()
if [ "$(id -u)" -eq 0 ]; then AS_ROOT=(-u root); fi

SERVERS=()
for i in 0 1 2; do
    port=$((MEMCACHED_PORT + i))
    memcached -l 127.0.0.1 -p "$port" -U 0 -m 64 -t 2 "${AS_ROOT[@]}" &
    pid="$!"
    PIDS+=("$pid")
    NAME[$pid]="memcached $((i + 1)) on 127.0.0.1:$port"
    wait_until_ready "$pid" is_our_memcached "$port" "$pid"
    SERVERS+=("127.0.0.1:$port")
done
MEMCACHED_LIST="$(IFS=,; printf '%s' "${SERVERS[*]}")"

ENDPOINTS=()
for i in 0 1; do
    grpc=$((MINTCACHE_PORT + 2 * i))
    admin=$((grpc + 1))
    # The replica prints `listening grpc=ADDR admin=ADDR` once it has bound both ports: that
    # line, from this process, is its readiness (its logs go to stderr, here).
    MINTCACHE_SERVER__LISTEN="127.0.0.1:$grpc" \
    MINTCACHE_ADMIN__LISTEN="127.0.0.1:$admin" \
    MINTCACHE_MEMCACHED__SERVERS="$MEMCACHED_LIST" \
    MINTCACHE_LOG__LEVEL="${MINTCACHE_LOG__LEVEL:-warn}" \
        "$SERVER" >"$WORK/replica-$i.out" &
    pid="$!"
    PIDS+=("$pid")
    NAME[$pid]="mintcache replica $((i + 1)) on 127.0.0.1:$grpc (admin $admin)"
    wait_until_ready "$pid" grep -qx "listening grpc=127.0.0.1:$grpc admin=127.0.0.1:$admin" "$WORK/replica-$i.out"
    ENDPOINTS+=("127.0.0.1:$grpc")
done

say "mintcache local cluster (Ctrl-C stops it):"
say "  memcached  ${SERVERS[*]}"
for endpoint in "${ENDPOINTS[@]}"; do
    say "  mintcache  $endpoint (admin 127.0.0.1:$(( ${endpoint##*:} + 1 )))"
done
say "  pids       ${PIDS[*]}"
say "  ports      MINTCACHE_PORT=$MINTCACHE_PORT MEMCACHED_PORT=$MEMCACHED_PORT (set them to use others)"
say "Try:"
say "  export MINTCACHECLI_ENDPOINT=$(IFS=,; printf '%s' "${ENDPOINTS[*]}")"
say "  mintcache set user:42 Ada --ttl 60"
say "  mintcache -e ${ENDPOINTS[1]} get user:42     # the other replica sees it"
say "  mintcache -e ${ENDPOINTS[0]} stats"
say "ready"

# Runs until a signal arrives (the traps stop everything) or a process exits: that one is
# named, and the others are stopped.
status=0
wait -n "${PIDS[@]}" || status=$?
for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        printf 'local-cluster: %s (pid %s) exited (status %s)\n' "${NAME[$pid]}" "$pid" "$status" >&2
    fi
done
fail "a process of the cluster exited; stopping the others"
