#!/usr/bin/env bash
# Latency as an application sees it (docs/BENCHMARKS.md): Django's cache API on MintCache next to
# Django's own PyMemcacheCache on the same memcached, one call at a time, and the calls under it.
#
# Builds the release server, the no-op server and mintcache-bench; installs the Python package
# of this tree (with its native transport) into target/bench-django/after, and, with BEFORE=REF,
# the package as it was at git REF into target/bench-django/before; starts on free loopback
# ports one memcached, a mintcache server over it (default configuration: telemetry on) and the
# no-op gRPC server, and (when nutcracker is installed) a twemproxy in front of the memcached;
# then, in one run:
#   - scripts/bench-django.py for each package (and each transport of this one): Django get
#     (hit, miss), set, get_many(10), get_or_set (hit), incr on both backends, 3,000 calls after
#     200 of warm-up, a small pickled dict as the value; bare Get calls over grpcio and over the
#     native transport, to mintcache and to the no-op server; with the native transport, also
#     PyMemcacheCache through twemproxy (what a proxy in C costs on the same machine);
#   - mintcache-bench --connections 1 --streams 1 (the Rust client, one call in flight) against
#     mintcache, the no-op server, and memcached directly (meta protocol);
# and prints the markdown tables. Every process it starts is stopped on exit.
#
# Usage: bash scripts/bench-django.sh
# Environment:
#   BEFORE=REF      also measure the Python package of git REF (e.g. BEFORE=f8b5628, the
#                   grpcio-only package before the native transport); default: none
#   CALLS=3000 WARMUP=200 ROUNDS=3    per row (rounds alternate the rows of one operation)
#   RUST_DURATION=5s                  per mintcache-bench row
#   SKIP_BUILD=1    use the release binaries and venvs already built
#   TWEMPROXY=0     leave twemproxy out (default: measured when nutcracker is installed)
#   OUT=DIR         where the raw rows (JSON lines) and the tables go
#                   (default: target/bench-django/<UTC time>)
# Needs: cargo, memcached, python3 (3.10+); PyPI for Django 5.2 and pymemcache; nutcracker
# (apt-get install nutcracker) for the twemproxy column.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BEFORE="${BEFORE:-}"
CALLS="${CALLS:-3000}"
WARMUP="${WARMUP:-200}"
ROUNDS="${ROUNDS:-3}"
RUST_DURATION="${RUST_DURATION:-5s}"
SKIP_BUILD="${SKIP_BUILD:-0}"
WORK="$ROOT/target/bench-django"
OUT="${OUT:-$WORK/$(date -u +%Y%m%dT%H%M%SZ)}"
PYTHON="${PYTHON:-python3}"
PIP=(--quiet --disable-pip-version-check)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-django: %s\n' "$*" >&2; exit 1; }

command -v memcached >/dev/null || die "memcached is needed (apt-get install memcached)"
mkdir -p "$OUT"
ROWS="$OUT/rows.jsonl"
: >"$ROWS"

# release_binaries, free_port, start, start_mintcache, MC_USER; every process started is
# stopped on exit.
source "$ROOT/scripts/bench-lib.sh"
release_binaries
for bin in "$BENCH" "$SERVER" "$NOOP"; do
    [ -x "$bin" ] || die "$bin is missing (run without SKIP_BUILD=1)"
done

# venv DIR PACKAGE_DIR: a venv with Django, pymemcache and the package at PACKAGE_DIR.
venv() {
    if [ "$SKIP_BUILD" = 1 ] && [ -x "$1/bin/python" ]; then
        return
    fi
    [ -x "$1/bin/python" ] || "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install "${PIP[@]}" "Django>=5.2,<5.3" "pymemcache>=4"
    "$1/bin/python" -m pip install "${PIP[@]}" "$2"
    # The same version number may already be installed from another tree: install this one.
    "$1/bin/python" -m pip install "${PIP[@]}" --force-reinstall --no-deps "$2"
}
say "installing the Python package of this tree (with its native transport)"
MINTCACHE_NATIVE=require venv "$WORK/after" "$ROOT/client/python"
if [ -n "$BEFORE" ]; then
    say "installing the Python package of $BEFORE"
    rm -rf "$WORK/before-src"
    mkdir -p "$WORK/before-src"
    git archive "$BEFORE" client/python | tar -x -C "$WORK/before-src"
    venv "$WORK/before" "$WORK/before-src/client/python"
fi

MEMCACHED_PORT="$(free_port)"
start memcached "$MEMCACHED_PORT" \
    memcached "${MC_USER[@]}" -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 256 -t 4

MINTCACHE_PORT="$(free_port)"
start_mintcache mintcache "$MINTCACHE_PORT" "127.0.0.1:$MEMCACHED_PORT" MINTCACHE_LOG__LEVEL=warn

NOOP_PORT="$(free_port)"
start noop "$NOOP_PORT" "$NOOP" --listen "127.0.0.1:$NOOP_PORT"

proxy=()
if [ "${TWEMPROXY:-1}" != 0 ] && command -v nutcracker >/dev/null; then
    PROXY_PORT="$(free_port)"
    cat >"$OUT/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$PROXY_PORT
  hash: fnv1a_64
  distribution: ketama
  timeout: 1000
  servers:
    - 127.0.0.1:$MEMCACHED_PORT:1
EOF
    start twemproxy "$PROXY_PORT" nutcracker -c "$OUT/nutcracker.yml" -s "$(free_port)"
    proxy=(--proxy "127.0.0.1:$PROXY_PORT")
fi

load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START="$(load)"
say "load average before the run: $LOAD_START"
common=(--memcached "127.0.0.1:$MEMCACHED_PORT" --mintcache "127.0.0.1:$MINTCACHE_PORT"
    --noop "127.0.0.1:$NOOP_PORT" --calls "$CALLS" --warmup "$WARMUP" --rounds "$ROUNDS")

if [ -n "$BEFORE" ]; then
    say "Django on the package of $BEFORE (grpcio)"
    "$WORK/before/bin/python" scripts/bench-django.py "${common[@]}" --label "before ($BEFORE)" \
        >>"$ROWS"
fi
say "Django on this package, native transport (and the bare calls)"
"$WORK/after/bin/python" scripts/bench-django.py "${common[@]}" --label "after, native" \
    --transport native --bare "${proxy[@]}" >>"$ROWS"
say "Django on this package, grpcio transport"
"$WORK/after/bin/python" scripts/bench-django.py "${common[@]}" --label "after, grpcio" \
    --transport grpcio >>"$ROWS"

say "the Rust client, one call in flight"
rust_row() {
    local name="$1"
    shift
    "$BENCH" "$@" --workload unary --get-ratio 1 --keys 1 --value-size 64 \
        --connections 1 --streams 1 --warmup 1s --duration "$RUST_DURATION" --json \
        >"$OUT/rust-$name.json"
    "$PYTHON" - "$name" "$OUT/rust-$name.json" >>"$ROWS" <<'EOF'
import json, sys
name, path = sys.argv[1], sys.argv[2]
report = json.load(open(path))
latency = report["latency_us"]
print(json.dumps({"label": "rust", "what": "mintcache-bench -c 1 -s 1 Get", "target": name,
                  "calls": report["ok"], "p50_us": latency["p50"], "p99_us": latency["p99"]}))
EOF
}
rust_row mintcache --endpoint "127.0.0.1:$MINTCACHE_PORT"
rust_row "no-op server" --endpoint "127.0.0.1:$NOOP_PORT"
rust_row "memcached direct" --memcached "127.0.0.1:$MEMCACHED_PORT" --memcached-protocol meta

LOAD_END="$(load)"
"$PYTHON" - "$ROWS" "$LOAD_START" "$LOAD_END" >"$OUT/results.md" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
packages = [r for r in rows if r["what"] == "package"]
rows = [r for r in rows if r["what"] != "package"]
out = []
out.append(f"load average (1, 5, 15 min): {sys.argv[2]} before, {sys.argv[3]} after\n")
for p in packages:
    out.append(f"- {p['label']}: mintcache from {p['mintcache']} (default transport {p['transport']})")
out.append("")
ops = []
for r in rows:
    if "op" in r and r["op"] not in ops:
        ops.append(r["op"])
labels = []
for r in rows:
    if "op" in r and r["label"] not in labels:
        labels.append(r["label"])
PROXY = "PyMemcacheCache through twemproxy"
proxied = [r for r in rows if r.get("op") and r["target"] == PROXY]
header = "| Django call | PyMemcacheCache p50 / p99 µs |"
if proxied:
    header += " through twemproxy p50 / p99 µs | ratio p50 |"
for label in labels:
    header += f" MintCache {label} p50 / p99 µs | ratio p50 |"
out.append(header)
out.append("|---|---:|" + "---:|---:|" * (len(labels) + bool(proxied)))
for op in ops:
    base = [r for r in rows if r.get("op") == op and r["target"] == "PyMemcacheCache"]
    # PyMemcacheCache is measured next to each package: the first run's figures head the row,
    # each ratio is to the PyMemcacheCache of its own run.
    line = f"| `{op}` | {base[0]['p50_us']:,.0f} / {base[0]['p99_us']:,.0f} |"
    if proxied:
        # To PyMemcacheCache of the same run (the run that measured twemproxy).
        p = [r for r in proxied if r["op"] == op][0]
        b = [r for r in rows if r.get("op") == op and r["label"] == p["label"]
             and r["target"] == "PyMemcacheCache"][0]
        line += f" {p['p50_us']:,.0f} / {p['p99_us']:,.0f} | {p['p50_us'] / b['p50_us']:.2f}x |"
    for label in labels:
        mint = [r for r in rows if r.get("op") == op and r["label"] == label and r["target"] == "MintCache"]
        own = [r for r in rows if r.get("op") == op and r["label"] == label and r["target"] == "PyMemcacheCache"]
        if not mint:
            line += " | |"
            continue
        m, b = mint[0], own[0]
        line += f" {m['p50_us']:,.0f} / {m['p99_us']:,.0f} | {m['p50_us'] / b['p50_us']:.2f}x |"
    out.append(line)
out.append("")
out.append("PyMemcacheCache next to each MintCache run (p50 / p99 µs): " + "; ".join(
    f"{label}: " + ", ".join(
        f"{r['op']} {r['p50_us']:,.0f} / {r['p99_us']:,.0f}"
        for r in rows if r.get("op") and r["label"] == label and r["target"] == "PyMemcacheCache"
    ) for label in labels))
out.append("")
out.append("| package | call, one in flight | target | p50 µs | p99 µs | process CPU µs per call |")
out.append("|---|---|---|---:|---:|---:|")
for r in rows:
    if "op" not in r:
        digits = 1 if "own" in r else 0
        cpu = f"{r['cpu_us']:,.0f}" if "cpu_us" in r else ""
        out.append(
            f"| {r['label']} | {r['what']} | {r['target']} | {r['p50_us']:,.{digits}f} "
            f"| {r['p99_us']:,.{digits}f} | {cpu} |"
        )
print("\n".join(out))
EOF
cat "$OUT/results.md"
say "rows and tables in $OUT"
