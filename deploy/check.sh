#!/usr/bin/env bash
# Deployment checks (run by .ci/run as "deploy checks"; no cluster and no Docker engine needed):
#   1. hadolint on deploy/Dockerfile, and deploy/check_dockerfile.py (paths, binaries, user, ports)
#   2. the image's baked-in config (deploy/mintcache.toml) passes mintcache-server --check-config
#   3. helm lint --strict of the chart with the defaults, values-production.yaml and the
#      bundled-memcached CI values
#   4. helm template of the same three into target/deploy-render/
#   5. every rendered manifest validated offline (kubernetes-validate, --strict) against
#      Kubernetes $K8S_VERSIONS; the ServiceMonitor CRD is skipped by name (no schema bundled)
#   6. deploy/check_chart_config.py: mintcache-server --check-config on each render's ConfigMap
#      and container environment, plus consistency of ports, probes, memcached pods, grace
#   7. self-tests: broken inputs must make the checks above fail
# Tools come from scripts/install-deploy-tools.sh (run here when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="$ROOT/target/tools"
export PATH="$TOOLS/bin:$TOOLS/venv/bin:$PATH"
PY="$TOOLS/venv/bin/python"
CHART="deploy/helm/mintcache"
OUT="target/deploy-render"
NAMESPACE="mintcache"
RELEASE="mintcache"
# Rendered for, and validated against, a current Kubernetes release; also against the newest
# schema set kubernetes-validate ships.
KUBE_VERSION="${KUBE_VERSION:-1.31.0}"
K8S_VERSIONS="${K8S_VERSIONS:-1.31.0 1.37.0}"
SERVER="${MINTCACHE_SERVER:-$ROOT/target/debug/mintcache-server}"

started=$SECONDS
step() { printf '\n--- deploy: %s\n' "$*"; }
die() { printf 'deploy/check.sh: %s\n' "$*" >&2; exit 1; }

if ! { [ -x "$TOOLS/bin/helm" ] && [ -x "$TOOLS/venv/bin/hadolint" ] &&
    "$PY" -c 'import yaml, kubernetes_validate' 2>/dev/null; }; then
    bash scripts/install-deploy-tools.sh
fi

# (values label, helm -f arguments)
RENDERS=(
    "defaults|"
    "production|-f $CHART/values-production.yaml"
    "bundled-memcached|-f $CHART/ci/bundled-memcached-values.yaml"
)

render() { # render LABEL OUTFILE [extra helm args...]
    local label="$1" out="$2"
    shift 2
    local files=""
    for r in "${RENDERS[@]}"; do [ "${r%%|*}" = "$label" ] && files="${r#*|}"; done
    # shellcheck disable=SC2086
    helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" \
        $files "$@" >"$out"
}

expect_failure() { # expect_failure DESCRIPTION COMMAND... : the command must fail
    local what="$1"
    shift
    if "$@" >"$OUT/selftest.log" 2>&1; then
        cat "$OUT/selftest.log"
        die "self-test: $what was accepted, but must fail"
    fi
    printf 'ok   fails as it must: %s (%s)\n' "$what" "$(grep -m1 -E 'FAIL|ERROR|error|Error|DL[0-9]+' "$OUT/selftest.log" | cut -c1-160)"
}

rm -rf "$OUT"
mkdir -p "$OUT"

step "hadolint deploy/Dockerfile ($(hadolint --version))"
hadolint --no-color deploy/Dockerfile
echo "hadolint: no findings"

step "Dockerfile paths and binaries"
"$PY" deploy/check_dockerfile.py

step "server binary"
cargo build --quiet --bin mintcache-server
[ -x "$SERVER" ] || die "no server binary at $SERVER"

step "image default config (deploy/mintcache.toml)"
env -i PATH="$PATH" "$SERVER" --config deploy/mintcache.toml --check-config >"$OUT/image-config.toml"
grep -E '^listen' "$OUT/image-config.toml"

step "helm lint --strict ($(helm version --short))"
for r in "${RENDERS[@]}"; do
    label="${r%%|*}"
    # shellcheck disable=SC2086
    helm lint --strict "$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" ${r#*|} |
        sed "s/^/[$label] /"
done

step "helm template -> $OUT/"
for r in "${RENDERS[@]}"; do
    label="${r%%|*}"
    render "$label" "$OUT/$label.yaml"
    printf '%-18s %s\n' "$label:" "$(grep -E '^kind: ' "$OUT/$label.yaml" | cut -d' ' -f2 | sort | uniq -c | awk '{printf "%s%s×%s", (NR>1?", ":""), $2, $1}')"
done

step "kubernetes-validate $("$TOOLS/venv/bin/kubernetes-validate" --version) (strict) against $K8S_VERSIONS"
kv_args=()
for v in $K8S_VERSIONS; do kv_args+=(-k "$v"); done
"$PY" deploy/validate_manifests.py "${kv_args[@]}" "$OUT"/defaults.yaml "$OUT"/production.yaml \
    "$OUT"/bundled-memcached.yaml >"$OUT/validate.log" || { cat "$OUT/validate.log"; die "validation failed"; }
grep -vE '^PASSED' "$OUT/validate.log" || true

step "chart <-> server: mintcache-server --check-config on each render"
for r in "${RENDERS[@]}"; do
    label="${r%%|*}"
    printf '\n[%s]\n' "$label"
    "$PY" deploy/check_chart_config.py --server "$SERVER" "$OUT/$label.yaml" >"$OUT/$label.check.log" ||
        { cat "$OUT/$label.check.log"; die "chart and server disagree ($label)"; }
    grep -E '^(ok|note)' "$OUT/$label.check.log"
done

step "self-tests: broken inputs must fail"
render defaults "$OUT/bad-key.yaml" --set config.cache.bogus_key=1
expect_failure "an unknown server key in config" \
    "$PY" deploy/check_chart_config.py --server "$SERVER" "$OUT/bad-key.yaml"
render defaults "$OUT/bad-value.yaml" --set config.cache.default_ttl_seconds=0
expect_failure "an invalid value (ttl 0)" \
    "$PY" deploy/check_chart_config.py --server "$SERVER" "$OUT/bad-value.yaml"
# Service links are off in the chart, but a pod that has them (MINTCACHE_SERVICE_HOST, ...) must
# still start: the server only reads MINTCACHE_<SECTION>__<KEY> variables.
sed 's/enableServiceLinks: false/enableServiceLinks: true/' "$OUT/defaults.yaml" >"$OUT/service-links.yaml"
"$PY" deploy/check_chart_config.py --server "$SERVER" "$OUT/service-links.yaml" >"$OUT/service-links.check.log" ||
    { cat "$OUT/service-links.check.log"; die "service-link variables must not stop the server"; }
printf 'ok   accepted as it must: service-link variables (MINTCACHE_SERVICE_HOST, ...) are not settings\n'
sed 's/containerPort: 9090/containerPort: 9091/' "$OUT/defaults.yaml" >"$OUT/bad-port.yaml"
expect_failure "admin.listen not matching the container port" \
    "$PY" deploy/check_chart_config.py --server "$SERVER" "$OUT/bad-port.yaml"
sed 's/\(mintcache-memcached-2\.\)/\1x-/' "$OUT/bundled-memcached.yaml" >"$OUT/bad-servers.yaml"
expect_failure "memcached.servers not matching the StatefulSet" \
    "$PY" deploy/check_chart_config.py --server "$SERVER" "$OUT/bad-servers.yaml"
expect_failure "a managed key set in config (server.listen)" \
    render defaults "$OUT/managed.yaml" --set config.server.listen=0.0.0.0:1
expect_failure "two pods on the embedded store" \
    render defaults "$OUT/embedded.yaml" --set replicaCount=2
expect_failure "a malformed token digest" \
    render defaults "$OUT/digest.yaml" --set 'auth.adminTokenSha256[0]=abc'
sed 's/^  revisionHistoryLimit: 10$/  revisionHistoryLimit: 10\n  revisionHistoryLimitt: 10/' \
    "$OUT/defaults.yaml" >"$OUT/bad-field.yaml"
grep -q revisionHistoryLimitt "$OUT/bad-field.yaml" || die "self-test: could not inject a field"
expect_failure "an unknown field in a Deployment" \
    "$PY" deploy/validate_manifests.py -k "$KUBE_VERSION" "$OUT/bad-field.yaml"
sed 's#^apiVersion: policy/v1$#apiVersion: policy/v1beta7#' "$OUT/defaults.yaml" >"$OUT/bad-api.yaml"
expect_failure "an unknown apiVersion for a built-in kind" \
    "$PY" deploy/validate_manifests.py -k "$KUBE_VERSION" "$OUT/bad-api.yaml"
sed 's#^COPY client/ client/$#COPY clients/ client/#' deploy/Dockerfile >"$OUT/Dockerfile.bad"
expect_failure "a Dockerfile copying a missing path" \
    "$PY" deploy/check_dockerfile.py --dockerfile "$OUT/Dockerfile.bad"
printf 'FROM debian\nRUN apt-get install curl\n' >"$OUT/Dockerfile.lint"
expect_failure "hadolint on a sloppy Dockerfile" hadolint --no-color "$OUT/Dockerfile.lint"

step "deploy checks passed in $((SECONDS - started)) s"
