#!/usr/bin/env bash
# The performance comparison of docs/BENCHMARKS.md, in one run on one machine.
#
# Builds release binaries, starts on free loopback ports: one memcached; twemproxy (nutcracker,
# text protocol) in front of that memcached; a mintcache server with the default configuration
# plus that memcached (telemetry on, as by default); a mintcache server on the embedded store;
# and the no-op gRPC server (examples/noop_server.rs, gRPC's own ceiling). Then runs the same
# workloads with the same concurrency against each target with mintcache-bench, records each
# server's resident memory after the load (/proc/PID/status), and prints a markdown table with
# ops/s, the ratios to memcached direct (meta protocol; pipelined like the other targets, and
# with one request per connection), latency percentiles, and each side's CPU use. Every
# process it starts is stopped on exit.
#
# Usage: bash scripts/bench-compare.sh
# Environment:
#   DURATION=10s     measured time per run          WARMUP=2s    warm-up per run
#   OUT=DIR          where the JSON reports and the table go
#                    (default: target/bench-compare/<UTC time>)
#   ONLY="unary-1 unary-64 unary-256 getmany-100"   run only these workloads (default: all)
#   SKIP_BUILD=1     use the release binaries already built
#   CROSS_CHECK=1    also measure memcached with memaslap and gRPC with h2load, next to
#                    mintcache-bench with the same settings
#   STAMPEDE=0       skip the stampede run (two mintcache replicas over the memcached)
#
# Needs: cargo, memcached, nutcracker, python3 (and memaslap, h2load for CROSS_CHECK=1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
OUT="${OUT:-target/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}"
ONLY="${ONLY:-}"
SKIP_BUILD="${SKIP_BUILD:-0}"
CROSS_CHECK="${CROSS_CHECK:-0}"
STAMPEDE="${STAMPEDE:-1}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-compare: %s\n' "$*" >&2; exit 1; }

for tool in memcached nutcracker python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install memcached nutcracker python3)"
done
if [ "$CROSS_CHECK" = 1 ]; then
    command -v memaslap >/dev/null || command -v memcaslap >/dev/null \
        || die "memaslap is needed for CROSS_CHECK=1 (apt-get install libmemcached-tools)"
    command -v h2load >/dev/null || die "h2load is needed for CROSS_CHECK=1 (apt-get install nghttp2-client)"
fi

mkdir -p "$OUT"
# release_binaries, free_port, start, start_mintcache, MC_USER; every process started is
# stopped on exit.
source "$ROOT/scripts/bench-lib.sh"

release_binaries
for bin in "$BENCH" "$SERVER" "$NOOP"; do
    [ -x "$bin" ] || die "$bin is missing (run without SKIP_BUILD=1)"
done

say "starting memcached, twemproxy, mintcache (memcached), mintcache (embedded), no-op server"
MC_PORT="$(free_port)"
start memcached "$MC_PORT" memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 1024 "${MC_USER[@]}"
MC_PID="$LAST_PID"

TW_PORT="$(free_port)"
cat >"$TMP/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$TW_PORT
  hash: fnv1a_64
  distribution: ketama
  timeout: 5000
  auto_eject_hosts: false
  servers:
    - 127.0.0.1:$MC_PORT:1
EOF
cp "$TMP/nutcracker.yml" "$OUT/nutcracker.yml"
start twemproxy "$TW_PORT" nutcracker -c "$TMP/nutcracker.yml" -s "$(free_port)" -a 127.0.0.1 \
    -p "$TMP/nutcracker.pid" -o "$OUT/twemproxy-nutcracker.log"
TW_PID="$LAST_PID"

MINT_PORT="$(free_port)"
start_mintcache mintcache "$MINT_PORT" "127.0.0.1:$MC_PORT"
MINT_PID="$LAST_PID"

EMB_PORT="$(free_port)"
start_mintcache mintcache-embedded "$EMB_PORT"
EMB_PID="$LAST_PID"

NOOP_PORT="$(free_port)"
start noop "$NOOP_PORT" "$NOOP" --listen "127.0.0.1:$NOOP_PORT"
NOOP_PID="$LAST_PID"

# Targets: id | label | mintcache-bench target flags | PID of the serving process. The run's
# connections x streams apply to every target, except memcached-meta-1: the same number of
# requests in flight, but each on a connection of its own (C x S connections of one request,
# as memaslap loads memcached), the reference the throughput targets were first measured against.
TARGETS=(
    "memcached-meta|memcached direct (meta protocol)|--memcached 127.0.0.1:$MC_PORT --memcached-protocol meta|$MC_PID"
    "memcached-meta-1|memcached direct (meta), one request per connection|--memcached 127.0.0.1:$MC_PORT --memcached-protocol meta|$MC_PID"
    "memcached-text|memcached direct (text protocol)|--memcached 127.0.0.1:$MC_PORT --memcached-protocol text|$MC_PID"
    "twemproxy|twemproxy -> memcached (text protocol)|--memcached 127.0.0.1:$TW_PORT --memcached-protocol text|$TW_PID"
    "mintcache|mintcache -> memcached|--endpoint 127.0.0.1:$MINT_PORT|$MINT_PID"
    "mintcache-embedded|mintcache, embedded store|--endpoint 127.0.0.1:$EMB_PORT|$EMB_PID"
    "noop|no-op gRPC server (same proto)|--endpoint 127.0.0.1:$NOOP_PORT|$NOOP_PID"
)
# Workloads: id | label | mintcache-bench workload flags | connections | streams.
WORKLOADS=(
    "unary-1|unary Get of stored keys, 64-byte values, one call in flight (1 connection x 1 stream): latency|--workload unary --get-ratio 1 --value-size 64 --keys 10000|1|1"
    "unary-64|unary 90/10 Get/Set, 64-byte values, 4 connections x 16 streams = 64 in flight|--workload unary --get-ratio 0.9 --value-size 64 --keys 10000|4|16"
    "unary-256|unary 90/10 Get/Set, 64-byte values, 16 connections x 16 streams = 256 in flight|--workload unary --get-ratio 0.9 --value-size 64 --keys 10000|16|16"
    "getmany-100|GetMany of 100 keys (all hits), 64-byte values, 4 connections x 4 streams = 16 in flight|--workload batch --batch 100 --get-ratio 1 --value-size 64 --keys 10000|4|4"
)

# The machine, as the table's header states it.
{
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel=$(uname -sr)"
    echo "memory=$(grep -m1 MemTotal /proc/meminfo | awk '{printf "%.1f GiB", $2/1048576}')"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "memcached=$(memcached -V 2>&1 | head -1)"
    echo "twemproxy=twemproxy $(nutcracker -V 2>&1 | head -1 | sed 's/^This is nutcracker-//')"
    echo "rustc=$(rustc --version)"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+changes')"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
} >"$OUT/machine.txt"

# cpu_ticks PID: CPU time (user + system) a process has used, in clock ticks (1/100 s).
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}
now_ms() {
    date +%s%3N
}

# rss PID FILE: VmRSS and VmHWM (peak) of a process, in KiB.
rss() {
    awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {print r, h}' "/proc/$1/status" >"$2"
}

for workload in "${WORKLOADS[@]}"; do
    IFS='|' read -r wid wlabel wflags conns streams <<<"$workload"
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $wid "* ]]; then
        continue
    fi
    echo "$wlabel" >"$OUT/$wid.label"
    for target in "${TARGETS[@]}"; do
        IFS='|' read -r tid tlabel tflags tpid <<<"$target"
        if [ "$tid" = memcached-meta-1 ]; then
            concurrency="--connections $((conns * streams)) --streams 1"
        else
            concurrency="--connections $conns --streams $streams"
        fi
        say "$wid against $tid"
        echo "$tlabel" >"$OUT/$tid.label"
        rc=0
        ticks_before="$(cpu_ticks "$tpid")"
        ms_before="$(now_ms)"
        # shellcheck disable=SC2086 # the flags are word lists
        "$BENCH" $tflags $wflags $concurrency --warmup "$WARMUP" --duration "$DURATION" --json \
            >"$OUT/$wid--$tid.json" 2>"$OUT/$wid--$tid.err" || rc=$?
        # The server's CPU cores over the whole bench run (prefill, warm-up, measurement).
        echo "$ticks_before $(cpu_ticks "$tpid") $ms_before $(now_ms)" \
            | awk '{printf "%.2f\n", ($2 - $1) * 10 / ($4 - $3)}' >"$OUT/$wid--$tid.cpu"
        echo "$rc" >"$OUT/$wid--$tid.rc"
        [ "$rc" -le 1 ] || say "  failed (exit $rc): $(cat "$OUT/$wid--$tid.err")"
        rss "$tpid" "$OUT/$wid--$tid.rss"
    done
done

if [ "$STAMPEDE" = 1 ]; then
    say "stampede: 200 readers of one hot key over two mintcache replicas on the same memcached"
    MINT2_PORT="$(free_port)"
    start_mintcache mintcache-replica "$MINT2_PORT" "127.0.0.1:$MC_PORT"
    "$BENCH" --endpoint "127.0.0.1:$MINT_PORT" --endpoint "127.0.0.1:$MINT2_PORT" \
        --workload stampede --connections 8 --streams 25 --duration "$DURATION" --json \
        >"$OUT/stampede.json" 2>"$OUT/stampede.err" || true
fi

if [ "$CROSS_CHECK" = 1 ]; then
    MEMASLAP="$(command -v memaslap || command -v memcaslap)"
    say "cross-check: memaslap, 64 connections, 90/10 get/set, 64-byte values, against memcached"
    # Keys of 23 bytes, as mintcache-bench's `bench:<run id>:<index>`.
    cat >"$TMP/memaslap.cfg" <<'EOF'
key
23 23 1
value
64 64 1
cmd
0 0.1
1 0.9
EOF
    "$MEMASLAP" -s "127.0.0.1:$MC_PORT" -T "$(nproc)" -c 64 -t "${DURATION}" -F "$TMP/memaslap.cfg" \
        >"$OUT/cross-memaslap.txt" 2>&1 || true
    "$BENCH" --memcached "127.0.0.1:$MC_PORT" --memcached-protocol text --connections 64 --streams 1 \
        --get-ratio 0.9 --value-size 64 --warmup "$WARMUP" --duration "$DURATION" --json \
        >"$OUT/cross-bench-memcached.json" 2>&1 || true

    say "cross-check: h2load, unary Get of one stored key, 4 connections x 16 streams"
    # One gRPC message: no compression flag, 4-byte length, GetRequest{key = "h2:00000000"}.
    printf '\x00\x00\x00\x00\x0d\x0a\x0bh2:00000000' >"$TMP/get.bin"
    for target in "mintcache|$MINT_PORT" "noop|$NOOP_PORT"; do
        IFS='|' read -r tid port <<<"$target"
        # mintcache-bench stores h2:00000000 (under version "bench") and reads it back.
        "$BENCH" --endpoint "127.0.0.1:$port" --key-prefix h2: --keys 1 --get-ratio 1 \
            --connections 4 --streams 16 --warmup "$WARMUP" --duration "$DURATION" --json \
            >"$OUT/cross-bench-$tid.json" 2>&1 || true
        h2load --duration="$DURATION" --warm-up-time="$WARMUP" -c 4 -m 16 -t 1 \
            -H 'content-type: application/grpc' -H 'te: trailers' -H 'x-cache-version: bench' \
            -d "$TMP/get.bin" "http://127.0.0.1:$port/mintcache.v1.Cache/Get" \
            >"$OUT/cross-h2load-$tid.txt" 2>&1 || true
    done
fi

python3 - "$OUT" <<'PY' | tee "$OUT/results.md"
import json, os, re, sys

out = sys.argv[1]
def read(name, default=""):
    try:
        with open(os.path.join(out, name)) as f:
            return f.read().strip()
    except OSError:
        return default

machine = dict(line.split("=", 1) for line in read("machine.txt").splitlines() if "=" in line)
print(f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu')}), {machine.get('memory')}, "
      f"{machine.get('kernel')}; load average before the run {machine.get('loadavg_before')}.")
print(f"Run: {machine.get('date_utc')}, commit {machine.get('commit')}, {machine.get('rustc')}, "
      f"{machine.get('memcached')}, {machine.get('twemproxy')}; "
      f"{machine.get('duration')} measured after {machine.get('warmup')} of warm-up per row; "
      "load generator, servers and memcached on the same machine.")
print()

targets = ["memcached-meta", "memcached-meta-1", "memcached-text", "twemproxy", "mintcache", "mintcache-embedded", "noop"]
workloads = [w for w in ["unary-64", "unary-256", "getmany-100"] if os.path.exists(os.path.join(out, w + ".label"))]

def ms(us):
    return f"{us / 1000:.2f}"

for w in workloads:
    print(f"**{read(w + '.label')}**")
    print()
    print("| target | ops/s | keys/s | x memcached direct | x memcached, 1 request per connection | p50 ms | p99 ms | p99.9 ms | max ms | failed calls | server RSS after (peak), MiB | server CPU, cores | load generator CPU, cores |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    reports = {}
    for t in targets:
        try:
            reports[t] = json.loads(read(f"{w}--{t}.json"))
        except ValueError:
            reports[t] = None
    def rate(t):
        r = reports.get(t)
        return r["keys_per_second"] if r else 0
    base_rate, base1_rate = rate("memcached-meta"), rate("memcached-meta-1")
    for t in targets:
        r = reports[t]
        label = read(t + ".label", t)
        if r is None:
            err = read(f"{w}--{t}.err").splitlines()
            print(f"| {label} | run failed: {err[-1] if err else 'no report'} | | | | | | | | | | | |")
            continue
        rss = read(f"{w}--{t}.rss").split()
        rss_text = f"{int(rss[0]) / 1024:.0f} ({int(rss[1]) / 1024:.0f})" if len(rss) == 2 else "?"
        ratio = f"{r['keys_per_second'] / base_rate:.2f}" if base_rate else "-"
        ratio1 = f"{r['keys_per_second'] / base1_rate:.2f}" if base1_rate else "-"
        lat = r["latency_us"]
        failed = r["calls"] - r["ok"]
        client = r.get("client_cpu_cores")
        client_text = f"{client:.2f}" if client is not None else "?"
        print(f"| {label} | {r['ops_per_second']:,.0f} | {r['keys_per_second']:,.0f} | {ratio} | {ratio1} | "
              f"{ms(lat['p50'])} | {ms(lat['p99'])} | {ms(lat['p999'])} | {ms(lat['max'])} | {failed} | {rss_text} | "
              f"{read(f'{w}--{t}.cpu', '?')} | {client_text} |")
    print()

try:
    s = json.loads(read("stampede.json"))
    v = s["stampede"]
    dist = ", ".join(f"{n} recompute(s) in {p} period(s)" for n, p in v["recomputes_per_period"].items())
    print(f"**Stampede**: {v['readers']} readers of one hot key over {v['endpoints']} mintcache replicas "
          f"(fresh {v['ttl_seconds']} s, recompute {v['recompute_ms']:.0f} ms): {v['periods']} stale periods, "
          f"{dist or 'none'}; REFRESH {v['refreshes']}, MISS {v['misses']}, STALE {v['stale']}; "
          f"exactly one recompute per stale period: {'yes' if v['exactly_one_recompute_per_period'] else 'NO'}; "
          f"{s['calls'] - s['ok']} failed calls.")
    print()
except (ValueError, KeyError):
    if read("stampede.err"):
        print(f"**Stampede**: run failed: {read('stampede.err')}")
        print()

if os.path.exists(os.path.join(out, "cross-memaslap.txt")):
    print("**Cross-checks** (same settings, back to back):")
    print()
    text = read("cross-memaslap.txt")
    m = re.findall(r"Run time: \S+ Ops: (\d+) TPS: (\d+)", text)
    memaslap = f"{int(m[-1][1]):,} ops/s" if m else "no result"
    try:
        b = json.loads(read("cross-bench-memcached.json"))
        bench = f"{b['ops_per_second']:,.0f} ops/s"
    except (ValueError, KeyError):
        bench = "no result"
    print(f"- memcached, text protocol, 64 connections x 1 request, 90/10 get/set, 64-byte values: "
          f"memaslap {memaslap}; mintcache-bench {bench}.")
    for t in ["mintcache", "noop"]:
        text = read(f"cross-h2load-{t}.txt")
        m = re.search(r"finished in \S+, ([\d.]+) req/s", text)
        ok = re.search(r"requests: .*? (\d+) succeeded, (\d+) failed", text)
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text)
        h2 = f"{float(m.group(1)):,.0f} req/s" if m else "no result"
        if ok:
            h2 += f" ({ok.group(1)} succeeded, {ok.group(2)} failed; mean {mean.group(1) if mean else '?'})"
        try:
            b = json.loads(read(f"cross-bench-{t}.json"))
            bench = f"{b['ops_per_second']:,.0f} ops/s (p50 {ms(b['latency_us']['p50'])} ms, mean {b['latency_us']['mean'] / 1000:.2f} ms)"
        except (ValueError, KeyError):
            bench = "no result"
        print(f"- unary Get of one stored key on {t}, 4 connections x 16 streams: h2load {h2}; mintcache-bench {bench}.")
    print()
PY
say "reports and table: $OUT"
