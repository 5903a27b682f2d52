#!/usr/bin/env bash
# Generates the gRPC stubs of the Python package (src/mintcache/v1/cache_pb2*.py, .pyi) from
# proto/ with the grpcio-tools pinned in requirements-gen.txt.
#
#   bash client/python/gen-stubs.sh           regenerate in place (commit the result)
#   bash client/python/gen-stubs.sh --check   regenerate into a temporary directory and fail
#                                             if the committed stubs differ (CI runs this)
#
# PYTHON (default: python3) must have that grpcio-tools installed:
#   pip install -r client/python/requirements-gen.txt
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
STUBS="$HERE/src/mintcache/v1"
FILES=(cache_pb2.py cache_pb2.pyi cache_pb2_grpc.py)

want="$(sed -n 's/^grpcio-tools==//p' "$HERE/requirements-gen.txt")"
have="$("$PYTHON" -c 'from importlib.metadata import version; print(version("grpcio-tools"))' 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
    echo "gen-stubs: $PYTHON has grpcio-tools '${have:-none}', the stubs are made with $want" >&2
    echo "gen-stubs: pip install -r client/python/requirements-gen.txt" >&2
    exit 1
fi

generate() {
    "$PYTHON" -m grpc_tools.protoc -I "$ROOT/proto" \
        --python_out="$1" --pyi_out="$1" --grpc_python_out="$1" \
        "$ROOT/proto/mintcache/v1/cache.proto"
}

if [ "${1:-}" = "--check" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    generate "$tmp"
    status=0
    for f in "${FILES[@]}"; do
        if ! diff -u "$STUBS/$f" "$tmp/mintcache/v1/$f"; then
            status=1
        fi
    done
    if [ "$status" -ne 0 ]; then
        echo "gen-stubs: client/python stubs are out of date with proto/; run bash client/python/gen-stubs.sh" >&2
        exit 1
    fi
    echo "gen-stubs: stubs match proto/ (grpcio-tools $want)"
else
    generate "$HERE/src"
    echo "gen-stubs: wrote ${FILES[*]} into $STUBS"
fi
