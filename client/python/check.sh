#!/usr/bin/env bash
# The Python package's checks, as CI runs them (`bash client/python/check.sh` from anywhere):
#   1. the committed stubs match proto/ (regenerated with the pinned grpcio-tools, then diffed);
#   2. `pip install ./client/python` into a fresh-enough venv, like a user would, with its native
#      transport (MINTCACHE_NATIVE=require: the Rust extension must build);
#   3. pytest tests/python against that installed package, a real mintcache-server (built here
#      with cargo unless MINTCACHE_SERVER_BIN is set) and real memcached processes: once on the
#      native transport (the default), once on grpcio (MINTCACHE_TRANSPORT=grpcio, the fallback);
#   4. Django's own cache, session and cache-middleware suites on MintCache (django-suite.sh:
#      tests/runtests.py from Django's sdist, against the same server binary);
#   5. `pip install ./client/python` without a Rust toolchain on the PATH: the package installs
#      without the extension, says grpcio, and its client tests pass (the user without Rust).
# Venvs live under target/python/ (git-ignored): gen/ for the generator, test/ for the tests,
# pure/ for the install without Rust. Extra arguments go to pytest (e.g. `-k django -x`). Any
# failure, or no test run, fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENVS="$ROOT/target/python"
PYTHON="${PYTHON:-python3}"
PIP_FLAGS=(--quiet --disable-pip-version-check)

log() { printf '[python-checks] %s\n' "$*"; }

venv() {
    if [ ! -x "$1/bin/python" ]; then
        "$PYTHON" -m venv "$1"
    fi
}

log "stubs are up to date with proto/"
venv "$VENVS/gen"
"$VENVS/gen/bin/python" -m pip install "${PIP_FLAGS[@]}" -r "$HERE/requirements-gen.txt"
PYTHON="$VENVS/gen/bin/python" bash "$HERE/gen-stubs.sh" --check

log "pip install ./client/python (with its native transport)"
venv "$VENVS/test"
export MINTCACHE_NATIVE=require
"$VENVS/test/bin/python" -m pip install "${PIP_FLAGS[@]}" -r "$HERE/requirements-test.txt" "$HERE"
# The same version number may already be installed from an older tree: install this one.
"$VENVS/test/bin/python" -m pip install "${PIP_FLAGS[@]}" --no-deps --force-reinstall "$HERE"
unset MINTCACHE_NATIVE
installed="$(cd /tmp && "$VENVS/test/bin/python" -c 'import mintcache, os; print(os.path.dirname(mintcache.__file__), mintcache.TRANSPORT)')"
case "$installed" in
    "$VENVS/test/"*" native") log "testing the installed package at $installed" ;;
    *) log "mintcache imports from $installed, not from the venv with its native transport"; exit 1 ;;
esac

if [ -z "${MINTCACHE_SERVER_BIN:-}" ]; then
    log "cargo build --bin mintcache-server"
    (cd "$ROOT" && cargo build --quiet --bin mintcache-server)
    MINTCACHE_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/mintcache-server"
    export MINTCACHE_SERVER_BIN
fi

cd "$ROOT/tests/python"
status=0
# pytest PYTHON TRANSPORT [ARGS...]: the tests with clients on TRANSPORT.
run_pytest() {
    local python="$1" transport="$2" code=0
    shift 2
    MINTCACHE_TRANSPORT="$transport" "$python" -m pytest -p no:cacheprovider -q "$@" || code=$?
    if [ "$code" -eq 5 ]; then
        log "pytest collected no tests"
        code=1
    fi
    if [ "$code" -ne 0 ]; then
        status="$code"
    fi
}

log "pytest tests/python, native transport"
run_pytest "$VENVS/test/bin/python" native "$@"
log "pytest tests/python, grpcio transport"
run_pytest "$VENVS/test/bin/python" grpcio "$@"

log "Django's own suites on MintCache"
PYTHON="$VENVS/test/bin/python" bash "$HERE/django-suite.sh" || status=$?

log "pip install ./client/python without a Rust toolchain on the PATH"
rm -rf "$VENVS/pure"
no_rust_path="$(printf '%s' "$PATH" | tr ':' '\n' \
    | while read -r dir; do [ -n "$dir" ] && [ ! -x "$dir/cargo" ] && [ ! -x "$dir/rustc" ] && printf '%s:' "$dir"; done)"
env PATH="$no_rust_path" MINTCACHE_NATIVE=auto \
    "$VENVS/test/bin/python" -m pip install "${PIP_FLAGS[@]}" --no-deps --target "$VENVS/pure" "$HERE"
pure="$(cd /tmp && PYTHONPATH="$VENVS/pure" "$VENVS/test/bin/python" -c 'import mintcache, os; print(os.path.dirname(mintcache.__file__), mintcache.TRANSPORT)')"
case "$pure" in
    "$VENVS/pure/"*" grpcio") log "installed without the extension: $pure" ;;
    *) log "the install without Rust is not the pure package: $pure"; exit 1 ;;
esac
PYTHONPATH="$VENVS/pure" run_pytest "$VENVS/test/bin/python" auto test_client.py test_aio.py
exit "$status"
