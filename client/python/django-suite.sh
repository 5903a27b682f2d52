#!/usr/bin/env bash
# Django's own cache, session and cache-middleware test suites on MintCache, run the way Django's
# CI runs them: tests/runtests.py from the sdist of the Django version installed next to
# mintcache (pip download --no-binary :all:), with MintCache as the default and other caches,
# against a real mintcache-server over real memcached processes. What runs and how:
# tests/python/django_suite/ (run.py, cache_suite.py, settings.py).
#
#   bash client/python/django-suite.sh                 # as check.sh runs it
#   bash client/python/django-suite.sh -v 2            # extra arguments go to runtests.py
#
# PYTHON: the interpreter with mintcache and Django installed (default: the venv check.sh
# makes, target/python/test). MINTCACHE_SERVER_BIN: the server binary (default: built here with
# cargo). The sdist is kept in target/django-suite/ and unpacked afresh for each run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/target/python/test/bin/python}"
WORK="$ROOT/target/django-suite"

log() { printf '[django-suite] %s\n' "$*"; }

version="$("$PYTHON" -c 'import django; print(django.__version__)')"
case "$version" in
    5.2.*) ;;
    *) log "Django 5.2 expected next to mintcache, $PYTHON has Django $version"; exit 1 ;;
esac

mkdir -p "$WORK"
sdist="$(find "$WORK" -maxdepth 1 -iname "django-$version.tar.gz" | head -n 1)"
if [ -z "$sdist" ]; then
    log "pip download --no-binary :all: django==$version"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: "django==$version" -d "$WORK"
    sdist="$(find "$WORK" -maxdepth 1 -iname "django-$version.tar.gz" | head -n 1)"
fi
if [ -z "$sdist" ]; then
    log "no sdist of Django $version in $WORK after pip download"
    exit 1
fi
source_dir="$WORK/django-$version"
rm -rf "$source_dir"
tar -xzf "$sdist" -C "$WORK"
if [ ! -f "$source_dir/tests/runtests.py" ]; then
    log "$sdist has no tests/runtests.py"
    exit 1
fi

if [ -z "${MINTCACHE_SERVER_BIN:-}" ]; then
    log "cargo build --bin mintcache-server"
    (cd "$ROOT" && cargo build --quiet --bin mintcache-server)
    MINTCACHE_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/mintcache-server"
    export MINTCACHE_SERVER_BIN
fi

log "Django $version's cache, session and cache-middleware suites on MintCache"
exec "$PYTHON" "$ROOT/tests/python/django_suite/run.py" "$source_dir" "$@"
