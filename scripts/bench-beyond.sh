#!/usr/bin/env bash
# The figures of docs/BENCHMARKS.md, "Early refresh, waiting for a fill, hot keys": two
# mintcache replicas over one memcached (release builds, default configuration otherwise).
#
# 1. stampede: 200 readers of one hot key over the two replicas, fresh 5 s, recompute 200 ms,
#    grace 30 s: with early refresh off (cache.early_refresh_beta = 0, the protocol before it)
#    and on (the default, β = 1). The share of STALE answers and the recomputes per period.
# 2. fill: rounds of 200 readers of one cold key at once over the two replicas, compute
#    100 ms: computes per round, client polls, the waiters' latency on the filler's replica and
#    on the other.
# 3. hot key: 64 calls in flight reading one key, against a replica without the hot-key cache,
#    one with it (hot_cache.max_staleness_ms = 100) and the no-op server: ops/s and the
#    commands memcached received (its cmd_get) per call.
#
# Usage: bash scripts/bench-beyond.sh
# Environment: STAMPEDE_DURATION=60s  FILL_ROUNDS=30  HOT_DURATION=10s  SKIP_BUILD=1
#              PARTS="stampede fill hot" (the parts to run; the table has what ran)
#              OUT=DIR (default: target/bench-beyond/<UTC time>)
# Needs: cargo, memcached, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STAMPEDE_DURATION="${STAMPEDE_DURATION:-60s}"
FILL_ROUNDS="${FILL_ROUNDS:-30}"
HOT_DURATION="${HOT_DURATION:-10s}"
SKIP_BUILD="${SKIP_BUILD:-0}"
PARTS="${PARTS:-stampede fill hot}"
run() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
OUT="${OUT:-target/bench-beyond/$(date -u +%Y%m%dT%H%M%SZ)}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-beyond: %s\n' "$*" >&2; exit 1; }
for tool in memcached python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install memcached python3)"
done

mkdir -p "$OUT"
source "$ROOT/scripts/bench-lib.sh"

release_binaries

MC_PORT="$(free_port)"
start memcached "$MC_PORT" memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 1024 "${MC_USER[@]}"
MC="127.0.0.1:$MC_PORT"

# memcached's cmd_get (every mg of the meta protocol counts).
cmd_get() {
    python3 - "$MC_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"stats\r\n")
data = b""
while not data.endswith(b"END\r\n"):
    data += s.recv(65536)
stats = dict(l.split()[1:3] for l in data.decode().splitlines() if l.startswith("STAT "))
print(stats["cmd_get"])
PY
}

# replicas NAME_A NAME_B [VAR=VALUE...]: two replicas over the memcached; sets A and B.
replicas() {
    local a="$1" b="$2"
    shift 2
    A="$(free_port)"
    start_mintcache "$a" "$A" "$MC" "$@"
    B="$(free_port)"
    start_mintcache "$b" "$B" "$MC" "$@"
}
stop_last_two() {
    local n=${#PIDS[@]}
    kill "${PIDS[$((n - 1))]}" "${PIDS[$((n - 2))]}"
    wait "${PIDS[$((n - 1))]}" "${PIDS[$((n - 2))]}" 2>/dev/null || true
}

STAMPEDE=(--workload stampede --connections 8 --streams 25 --stampede-ttl 5 --grace 30
    --recompute 200ms --duration "$STAMPEDE_DURATION" --json)
if run stampede; then
    say "stampede, early refresh off (beta 0), $STAMPEDE_DURATION"
    replicas beta0-a beta0-b MINTCACHE_CACHE__EARLY_REFRESH_BETA=0
    "$BENCH" -e "127.0.0.1:$A" -e "127.0.0.1:$B" "${STAMPEDE[@]}" >"$OUT/stampede-beta0.json"
    stop_last_two
    say "stampede, early refresh on (beta 1, the default), $STAMPEDE_DURATION"
    replicas beta1-a beta1-b
    "$BENCH" -e "127.0.0.1:$A" -e "127.0.0.1:$B" "${STAMPEDE[@]}" >"$OUT/stampede-beta1.json"
    stop_last_two
fi

if run fill; then
    say "fill: $FILL_ROUNDS rounds of 200 readers of a cold key, compute 100 ms"
    replicas fill-a fill-b
    "$BENCH" -e "127.0.0.1:$A" -e "127.0.0.1:$B" --workload fill --connections 8 --streams 25 \
        --recompute 100ms --count "$FILL_ROUNDS" --json >"$OUT/fill.json"
    stop_last_two
fi

if run hot; then
    say "hot key: 64 calls in flight reading one key, $HOT_DURATION each"
    PLAIN="$(free_port)"
    start_mintcache plain "$PLAIN" "$MC"
    HOT="$(free_port)"
    start_mintcache hot "$HOT" "$MC" MINTCACHE_HOT_CACHE__MAX_STALENESS_MS=100
    NOOP_PORT="$(free_port)"
    start noop "$NOOP_PORT" "$NOOP" --listen "127.0.0.1:$NOOP_PORT"
    HOT_LOAD=(--workload unary --get-ratio 1 --keys 1 --connections 4 --streams 16 --warmup 2s
        --duration "$HOT_DURATION" --json)
    for target in plain:$PLAIN hot:$HOT noop:$NOOP_PORT; do
        name="${target%%:*}"
        before="$(cmd_get)"
        "$BENCH" -e "127.0.0.1:${target#*:}" "${HOT_LOAD[@]}" >"$OUT/hot-$name.json"
        echo "$(($(cmd_get) - before))" >"$OUT/hot-$name.cmd_get"
    done
fi

python3 - "$OUT" <<'PY' | tee "$OUT/results.md"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
load = lambda name: json.loads((out / name).read_text())
exists = lambda name: (out / name).exists()

if exists("stampede-beta1.json"):
    print("| early refresh | periods | recomputes per period | reads | STALE | STALE share | failed calls |")
    print("|---|---|---|---|---|---|---|")
    for beta in ("0", "1"):
        r = load(f"stampede-beta{beta}.json")
        s = r["stampede"]
        dist = ", ".join(f"{n} in {p}" for n, p in s["recomputes_per_period"].items())
        print(f"| β = {beta} | {s['periods']} | {dist} | {s['reads']:,} | {s['stale']:,} "
              f"| {s['stale_percent']:.2f}% | {r['calls'] - r['ok']} |")
    print()
if exists("fill.json"):
    v = load("fill.json")["fill"]
    dist = ", ".join(f"{n} in {r}" for n, r in v["computes_per_round"].items())
    print("| fill | rounds | computes per round | without the value | client polls | p50 / p99 / max ms |")
    print("|---|---|---|---|---|---|")
    for group, label in (("filler", "the fillers"),
                         ("same_replica", "waiters, filler's replica"),
                         ("other_replica", "waiters, other replica"),
                         ("same_replica_after_fill", "waiters, filler's replica, from the filler's Set answered")):
        l = v[group]
        print(f"| {label} ({l['waiters']}) | {v['rounds']} | {dist} "
              f"| {v['without_value']} | {v['polls']} | {l['p50_ms']:.1f} / {l['p99_ms']:.1f} / {l['max_ms']:.1f} |")
    print()
if exists("hot-noop.json"):
    print("| one hot key, 64 in flight | ops/s | p50 / p99 µs | memcached cmd_get | per call | failed |")
    print("|---|---|---|---|---|---|")
    for name, label in (("plain", "mintcache, no hot-key cache"),
                        ("hot", "mintcache, hot_cache.max_staleness_ms = 100"),
                        ("noop", "no-op server")):
        r = load(f"hot-{name}.json")
        gets = int((out / f"hot-{name}.cmd_get").read_text())
        calls = r["calls"]
        print(f"| {label} | {r['ops_per_second']:,.0f} | {r['latency_us']['p50']:,} / {r['latency_us']['p99']:,} "
              f"| {gets:,} | {gets / calls if calls else 0:.3f} | {calls - r['ok']} |")
PY
