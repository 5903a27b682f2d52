# Helpers of the benchmark scripts (sourced, not run): build the release binaries, start
# processes on free loopback ports, log each to $OUT/NAME.log, and stop them all when the script
# exits. The sourcing script sets ROOT, OUT (an existing directory) and SKIP_BUILD, and defines
# `say` and `die`.

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# release_binaries: builds mintcache-bench, the server and the no-op server (unless
# SKIP_BUILD=1) and sets BENCH, SERVER and NOOP to them.
release_binaries() {
    if [ "$SKIP_BUILD" != 1 ]; then
        say "building release binaries"
        cargo build --release -p mintcache-bench
        cargo build --release --bin mintcache-server --example noop_server
    fi
    BENCH="$ROOT/target/release/mintcache-bench"
    SERVER="$ROOT/target/release/mintcache-server"
    NOOP="$ROOT/target/release/examples/noop_server"
}

# A free loopback port (bound, then released; the process started next takes it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID NAME: until something listens on PORT, failing if PID exits.
wait_port() {
    local port="$1" pid="$2" name="$3" i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup (log: $OUT/$name.log)"
        sleep 0.05
    done
    die "$name did not listen on port $port within 10 s (log: $OUT/$name.log)"
}

# start NAME PORT COMMAND...: runs COMMAND in the background, logs to $OUT/NAME.log.
LAST_PID=""
start() {
    local name="$1" port="$2"
    shift 2
    "$@" >"$OUT/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_port "$port" "$LAST_PID" "$name"
}

# start_mintcache NAME PORT [MEMCACHED_ADDR] [VAR=VALUE...]: the default configuration, plus
# memcached and the given environment (MINTCACHE_SECTION__KEY=VALUE settings).
start_mintcache() {
    local name="$1" port="$2" servers="${3:-}"
    shift $(($# < 3 ? $# : 3))
    start "$name" "$port" env \
        MINTCACHE_SERVER__LISTEN="127.0.0.1:$port" \
        MINTCACHE_ADMIN__LISTEN="127.0.0.1:$(free_port)" \
        MINTCACHE_MEMCACHED__SERVERS="$servers" \
        "$@" \
        "$SERVER"
}

MC_USER=()
[ "$(id -u)" = 0 ] && MC_USER=(-u root)
