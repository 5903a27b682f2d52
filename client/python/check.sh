#!/usr/bin/env bash
# The Python package's checks, as CI runs them (`bash client/python/check.sh` from anywhere):
#   1. the committed stubs match proto/ (regenerated with the pinned grpcio-tools, then diffed);
#   2. `pip install ./client/python` into a fresh-enough venv, like a user would;
#   3. pytest tests/python against that installed package, a real mintcache-server (built here
#      with cargo unless MINTCACHE_SERVER_BIN is set) and real memcached processes;
#   4. Django's own cache, session and cache-middleware suites on MintCache (django-suite.sh:
#      tests/runtests.py from Django's sdist, against the same server binary).
# Venvs live under target/python/ (git-ignored): gen/ for the generator, test/ for the tests.
# Extra arguments go to pytest (e.g. `-k django -x`). Any failure, or no test run, fails.
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

log "pip install ./client/python"
venv "$VENVS/test"
"$VENVS/test/bin/python" -m pip install "${PIP_FLAGS[@]}" -r "$HERE/requirements-test.txt" "$HERE"
# The same version number may already be installed from an older tree: install this one.
"$VENVS/test/bin/python" -m pip install "${PIP_FLAGS[@]}" --no-deps --force-reinstall "$HERE"
installed="$(cd /tmp && "$VENVS/test/bin/python" -c 'import mintcache, os; print(os.path.dirname(mintcache.__file__))')"
case "$installed" in
    "$VENVS/test/"*) log "testing the installed package at $installed" ;;
    *) log "mintcache imports from $installed, not from the venv"; exit 1 ;;
esac

if [ -z "${MINTCACHE_SERVER_BIN:-}" ]; then
    log "cargo build --bin mintcache-server"
    (cd "$ROOT" && cargo build --quiet --bin mintcache-server)
    MINTCACHE_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/mintcache-server"
    export MINTCACHE_SERVER_BIN
fi

log "pytest tests/python"
cd "$ROOT/tests/python"
status=0
"$VENVS/test/bin/python" -m pytest -p no:cacheprovider -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    log "pytest collected no tests"
    status=1
fi

log "Django's own suites on MintCache"
suite=0
PYTHON="$VENVS/test/bin/python" bash "$HERE/django-suite.sh" || suite=$?
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
exit "$suite"
