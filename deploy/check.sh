#!/usr/bin/env bash
# Deployment checks (run by .ci/run as "deploy checks"; no cluster and no Docker engine needed).
# Any problem makes it exit non-zero.
#   1. the image: hadolint on deploy/Dockerfile; deploy/check_dockerfile.py (cargo loads the
#      workspace as the build stage copies it, binaries, user, ports); the baked-in
#      deploy/mintcache.toml passes mintcache-server --check-config
#   2. the chart: helm lint --strict and helm template with the defaults, values-production.yaml
#      and ci/bundled-memcached-values.yaml (output in target/deploy-render/). Helm checks the
#      values against values.schema.json and the fail guards of templates/_validate.tpl run
#   3. every rendered manifest validated offline (kubernetes-validate --strict) against
#      Kubernetes $K8S_VERSIONS; a kind without a schema is an error, except the ServiceMonitor
#      (a CRD, none bundled)
#   4. deploy/check_chart_config.py: mintcache-server --check-config on what each render gives
#      the server (ConfigMap + environment), and the schema's config keys are the server's
#   5. NOTES.txt as helm install prints it: a warning while image.repository is the chart's
#      placeholder (no public image is published), none for an image of your own; the
#      in-cluster way to try it calls the Service from a pod, and port-forward is offered as
#      the way from a machine
#   6. self-tests: the schema must refuse a wrong type, an unknown key, a value out of range or
#      not in an enum; every fail guard must fail once; broken renders, manifests and
#      Dockerfiles must make the checks above fail
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
SERVER="${MINTCACHE_SERVER:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/mintcache-server}"

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
LABELS=()
RENDERED=()
for r in "${RENDERS[@]}"; do
    LABELS+=("${r%%|*}")
    RENDERED+=("$OUT/${r%%|*}.yaml")
done

render() { # render LABEL OUTFILE [extra helm args...]
    local label="$1" out="$2"
    shift 2
    local files=""
    for r in "${RENDERS[@]}"; do [ "${r%%|*}" = "$label" ] && files="${r#*|}"; done
    # shellcheck disable=SC2086
    helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" \
        $files "$@" >"$out"
}

kube_validate() { # kube_validate VERSION FILE... : strict, and a kind without a schema fails
    local version="$1" log="$OUT/validate-$1.log"
    shift
    kubernetes-validate --strict -k "$version" "$@" >"$log" 2>&1 || { cat "$log"; return 1; }
    if grep -E '^(WARN|ERROR)' "$log" |
        grep -vE 'schema for kind ServiceMonitor with api version monitoring\.coreos\.com/v1 '; then
        return 1
    fi
    printf '%s: %s resources passed\n' "$version" "$(grep -c ' passed for resource ' "$log")"
}

config_check() { # config_check [--schema FILE] RENDERED... : mintcache-server --check-config
    local schema="$CHART/values.schema.json"
    if [ "$1" = "--schema" ]; then schema="$2"; shift 2; fi
    "$PY" deploy/check_chart_config.py --server "$SERVER" --schema "$schema" "$@"
}

notes() { # notes OUTFILE [helm args...] : the NOTES.txt `helm install` would print (helm
    # template leaves NOTES.txt out, so a copy of the chart renders it as a value)
    local out="$1" dir="$OUT/notes-chart"
    shift
    rm -rf "$dir"
    cp -r "$CHART" "$dir"
    mv "$dir/templates/NOTES.txt" "$dir/notes.txt"
    printf '%s\n' 'notes: |' '{{ tpl (.Files.Get "notes.txt") . | indent 2 }}' \
        >"$dir/templates/zz-notes.yaml"
    helm template "$RELEASE" "$dir" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" \
        --show-only templates/zz-notes.yaml "$@" |
        "$PY" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["notes"], end="")' >"$out"
}

notes_check() { # notes_check WARNING(yes|no) FILE : the placeholder-image warning as expected,
    # and the in-cluster advice works from inside the cluster
    "$PY" - "$1" "$2" <<'PY'
import sys
want_warning, path = sys.argv[1] == "yes", sys.argv[2]
text = open(path).read()
problems = []
if ("no public mintcache image is published" in text) != want_warning:
    problems.append("the placeholder-image warning is "
                    + ("missing" if want_warning else "shown for an image of your own"))
before, _, from_machine = text.partition("Or from your machine")
inside = before[before.find("inside the cluster"):] if "inside the cluster" in before else ""
if not inside:
    problems.append("no way to try it from inside the cluster")
if "port-forward" in inside:
    problems.append("the in-cluster advice uses kubectl port-forward")
if " run " not in inside or ".svc:" not in inside:
    problems.append("the in-cluster advice does not call the Service from a pod")
if "port-forward" not in from_machine:
    problems.append("no port-forward to try it from a machine")
for problem in problems:
    print(f"FAIL {path}: {problem}")
if not problems:
    print(f"ok   {path}")
sys.exit(1 if problems else 0)
PY
}

schema_described() { # schema_described SCHEMA : every property has a description
    "$PY" - "$1" <<'PY'
import json, sys
def undescribed(node, path):
    for key, sub in node.get("properties", {}).items():
        if "description" not in sub:
            yield path + key
        yield from undescribed(sub, path + key + ".")
missing = list(undescribed(json.load(open(sys.argv[1])), ""))
for path in missing:
    print(f"FAIL values.schema.json: {path} has no description")
sys.exit(1 if missing else 0)
PY
}

selftests=0
expect_failure() { # expect_failure DESCRIPTION PATTERN COMMAND... : must fail, saying PATTERN
    local what="$1" pattern="$2"
    shift 2
    selftests=$((selftests + 1))
    if "$@" >"$OUT/selftest.log" 2>&1; then
        cat "$OUT/selftest.log"
        die "self-test: $what was accepted, but must fail"
    fi
    grep -qF -- "$pattern" "$OUT/selftest.log" || {
        cat "$OUT/selftest.log"
        die "self-test: $what failed, but not with: $pattern"
    }
    printf 'ok   refused: %-58s %s\n' "$what" \
        "$(grep -m1 -F -- "$pattern" "$OUT/selftest.log" | cut -c1-150)"
}

schema_edit() { # schema_edit OUTFILE PYTHON : values.schema.json changed by PYTHON, in which
    # props("a.b") is the properties of the value a.b
    "$PY" -c "import json, sys
s = json.load(open(sys.argv[1]))
def props(path):
    node = s
    for key in path.split('.'):
        node = node['properties'][key]
    return node['properties']
$2
json.dump(s, open(sys.argv[2], 'w'))" "$CHART/values.schema.json" "$1"
}

rm -rf "$OUT"
mkdir -p "$OUT"

step "hadolint deploy/Dockerfile ($(hadolint --version))"
hadolint --no-color deploy/Dockerfile
echo "hadolint: no findings"

step "server binary"
cargo build --quiet --bin mintcache-server
[ -x "$SERVER" ] || die "no server binary at $SERVER"

step "Dockerfile against the workspace"
"$PY" deploy/check_dockerfile.py

step "image default config (deploy/mintcache.toml)"
env -i PATH="$PATH" "$SERVER" --config deploy/mintcache.toml --check-config >"$OUT/image-config.toml"
grep -E '^listen' "$OUT/image-config.toml"

step "values.schema.json: every value described"
schema_described "$CHART/values.schema.json"
echo "every property has a description"

step "helm lint --strict ($(helm version --short)): values.schema.json and fail guards"
for r in "${RENDERS[@]}"; do
    # shellcheck disable=SC2086
    helm lint --strict "$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" ${r#*|} |
        sed "s/^/[${r%%|*}] /"
done

step "helm template -> $OUT/"
for label in "${LABELS[@]}"; do
    render "$label" "$OUT/$label.yaml"
    printf '%-18s %s\n' "$label:" "$(grep -E '^kind: ' "$OUT/$label.yaml" | cut -d' ' -f2 | sort | uniq -c | awk '{printf "%s%s×%s", (NR>1?", ":""), $2, $1}')"
done

step "kubernetes-validate $(kubernetes-validate --version) --strict"
for v in $K8S_VERSIONS; do
    kube_validate "$v" "${RENDERED[@]}" || die "validation against $v failed"
done

step "chart <-> server: mintcache-server --check-config on each render"
config_check "${RENDERED[@]}" >"$OUT/config-check.log" ||
    { cat "$OUT/config-check.log"; die "the server refuses what the chart renders"; }
grep -E '^(ok|FAIL)' "$OUT/config-check.log"

step "NOTES.txt: what helm install prints"
notes "$OUT/notes-defaults.txt"
notes_check yes "$OUT/notes-defaults.txt"
notes "$OUT/notes-own-image.txt" --set image.repository=registry.example.com/mintcache
notes_check no "$OUT/notes-own-image.txt"
notes "$OUT/notes-bundled-memcached.txt" -f "$CHART/ci/bundled-memcached-values.yaml"
notes_check no "$OUT/notes-bundled-memcached.txt"
notes "$OUT/notes-tls.txt" --set image.repository=registry.example.com/mintcache \
    --set tls.enabled=true --set tls.secretName=mintcache-tls
notes_check no "$OUT/notes-tls.txt"

step "self-tests: values.schema.json refuses bad values"
schema_refuses() { # schema_refuses DESCRIPTION PATTERN HELM-ARGS...
    local what="$1" pattern="$2"
    shift 2
    expect_failure "$what" "$pattern" render defaults "$OUT/refused.yaml" "$@"
}
schema_refuses "a wrong type" "config.cache.default_ttl_seconds: Invalid type" \
    --set config.cache.default_ttl_seconds=abc
schema_refuses "an unknown top-level value" "Additional property bogus is not allowed" \
    --set bogus=1
schema_refuses "an unknown server key" "Additional property bogus_key is not allowed" \
    --set config.cache.bogus_key=1
schema_refuses "a value out of range" \
    "config.cache.default_ttl_seconds: Must be greater than or equal to 1" \
    --set config.cache.default_ttl_seconds=0
schema_refuses "a value not in the enum" "probes.mode must be one of the following" \
    --set probes.mode=tcp
schema_refuses "a malformed token digest" "auth.adminTokenSha256.0: Does not match pattern" \
    --set 'auth.adminTokenSha256[0]=abc'
schema_refuses "a version outside [A-Za-z0-9._-]" \
    "config.cache.default_version: Does not match pattern" --set config.cache.default_version=a:b
expect_failure "an unknown value, at helm lint" "Additional property bogus is not allowed" \
    helm lint --strict "$CHART" --set bogus=1

step "self-tests: each fail guard of templates/_validate.tpl"
guards=0
guard_refuses() { # guard_refuses DESCRIPTION PATTERN HELM-ARGS...
    guards=$((guards + 1))
    schema_refuses "$@"
}
MC=(--set 'memcached.servers[0]=memcached:11211')
BUNDLED=(--set memcached.bundled.enabled=true)
guard_refuses "a managed key in config" "config.server.listen is managed by the chart" \
    --set config.server.listen=0.0.0.0:1
guard_refuses "a managed key in extraEnv" "extraEnv MINTCACHE_ADMIN__LISTEN sets admin.listen" \
    --set 'extraEnv[0].name=MINTCACHE_ADMIN__LISTEN,extraEnv[0].value=0.0.0.0:1'
guard_refuses "MINTCACHE_CONFIG in extraEnv" "extraEnv MINTCACHE_CONFIG: the chart points it" \
    --set 'extraEnv[0].name=MINTCACHE_CONFIG,extraEnv[0].value=/tmp/x.toml'
guard_refuses "external and bundled memcached" "are exclusive" "${MC[@]}" "${BUNDLED[@]}"
guard_refuses "two pods on the embedded store" "more than one mintcache pod without memcached" \
    --set replicaCount=2
guard_refuses "TLS without a Secret" "tls.enabled needs tls.secretName" --set tls.enabled=true
guard_refuses "mutual TLS without TLS" "tls.clientCA.enabled needs tls.enabled" \
    --set tls.clientCA.enabled=true
guard_refuses "admin subjects without mutual TLS" "config.auth.admin_subjects needs tls.clientCA" \
    --set 'config.auth.admin_subjects[0]=CN=ops'
guard_refuses "gRPC probes with TLS" "probes.mode grpc with tls.enabled" \
    --set tls.enabled=true --set tls.secretName=tls --set probes.mode=grpc
guard_refuses "one port for gRPC and admin" "containerPorts.grpc and containerPorts.admin must" \
    --set containerPorts.admin=50051
guard_refuses "a termination grace shorter than the drain" \
    "terminationGracePeriodSeconds (10) must be at least" --set terminationGracePeriodSeconds=10
guard_refuses "a message limit below the value limit" \
    "config.server.max_message_bytes (1000000) must be at least" \
    --set config.server.max_message_bytes=1000000
guard_refuses "a memcached item size beyond 1024m" "memcached takes 1k to 1024m" "${BUNDLED[@]}" \
    --set memcached.bundled.maxItemSize=2000m --set memcached.bundled.memoryMB=8192
guard_refuses "a memcached item size over half its memory" "more than half of memoryMB" \
    "${BUNDLED[@]}" --set memcached.bundled.maxItemSize=2m --set memcached.bundled.memoryMB=3
guard_refuses "a memcached item size below the value limit" \
    "must hold config.limits.max_value_bytes + 1024" \
    "${BUNDLED[@]}" --set memcached.bundled.maxItemSize=512k
guard_refuses "a PodDisruptionBudget without a bound" \
    "podDisruptionBudget: set minAvailable or maxUnavailable" \
    --set podDisruptionBudget.maxUnavailable=null
guard_refuses "an HPA without a metric" "autoscaling: set targetCPUUtilizationPercentage" \
    "${MC[@]}" --set autoscaling.enabled=true --set autoscaling.targetCPUUtilizationPercentage=null
declared="$(grep -c '{{- fail ' "$CHART/templates/_validate.tpl")"
[ "$guards" -eq "$declared" ] ||
    die "self-test: _validate.tpl has $declared fail guards, $guards are tested here"
echo "all $declared fail guards tested"

step "self-tests: broken renders, manifests and Dockerfiles"
render defaults "$OUT/unknown-env.yaml" \
    --set 'extraEnv[0].name=MINTCACHE_CACHE__BOGUS,extraEnv[0].value=1'
expect_failure "a server key the server does not know (extraEnv)" "--check-config exited" \
    config_check "$OUT/unknown-env.yaml"
sed 's/containerPort: 50052/containerPort: 50053/' "$OUT/defaults.yaml" >"$OUT/bad-port.yaml"
expect_failure "admin.listen not on the container port" "the container port admin is 50053" \
    config_check "$OUT/bad-port.yaml"
schema_edit "$OUT/schema-without-key.json" 'del props("config.cache")["lease_on_miss"]'
expect_failure "a server key missing from the schema" \
    "values.schema.json has no config.cache.lease_on_miss" \
    config_check --schema "$OUT/schema-without-key.json" "$OUT/defaults.yaml"
schema_edit "$OUT/schema-extra-key.json" 'props("config.cache")["retired_key"] = {}'
expect_failure "a schema key the server does not have" \
    "values.schema.json has config.cache.retired_key" \
    config_check --schema "$OUT/schema-extra-key.json" "${RENDERED[@]}"
schema_edit "$OUT/schema-undescribed.json" 'del props("probes")["mode"]["description"]'
expect_failure "a schema value without a description" "probes.mode has no description" \
    schema_described "$OUT/schema-undescribed.json"
sed 's/^  revisionHistoryLimit: 10$/  revisionHistoryLimit: 10\n  revisionHistoryLimitt: 10/' \
    "$OUT/defaults.yaml" >"$OUT/bad-field.yaml"
expect_failure "an unknown field in a Deployment" "'revisionHistoryLimitt' was unexpected" \
    kube_validate "$KUBE_VERSION" "$OUT/bad-field.yaml"
sed 's#^apiVersion: policy/v1$#apiVersion: policy/v1beta7#' "$OUT/defaults.yaml" >"$OUT/bad-api.yaml"
expect_failure "an unknown apiVersion for a built-in kind" \
    "kind PodDisruptionBudget with api version policy/v1beta7" \
    kube_validate "$KUBE_VERSION" "$OUT/bad-api.yaml"
sed 's#^COPY client/ client/$#COPY clients/ client/#' deploy/Dockerfile >"$OUT/Dockerfile.missing"
expect_failure "a Dockerfile copying a missing path" "COPY clients/: no such path" \
    "$PY" deploy/check_dockerfile.py --dockerfile "$OUT/Dockerfile.missing"
sed 's#-p mintcache-cli #-p mintcache-client #' deploy/Dockerfile >"$OUT/Dockerfile.wrong-package"
expect_failure "a Dockerfile building a binary outside the packages it selects" \
    "cargo build --bin mintcache: not in the packages it selects" \
    "$PY" deploy/check_dockerfile.py --dockerfile "$OUT/Dockerfile.wrong-package"
sed 's#^COPY Cargo.toml Cargo.lock build.rs ./#COPY Cargo.toml Cargo.lock ./#' deploy/Dockerfile \
    >"$OUT/Dockerfile.nobuild"
expect_failure "a Dockerfile leaving out build.rs" "build.rs is not copied" \
    "$PY" deploy/check_dockerfile.py --dockerfile "$OUT/Dockerfile.nobuild"
printf 'Try it from inside the cluster:\n  kubectl port-forward svc/mintcache 50051\n' \
    >"$OUT/notes-port-forward.txt"
expect_failure "NOTES sending in-cluster users to port-forward" \
    "the in-cluster advice uses kubectl port-forward" notes_check no "$OUT/notes-port-forward.txt"
expect_failure "NOTES without the placeholder-image warning" \
    "the placeholder-image warning is missing" notes_check yes "$OUT/notes-own-image.txt"
printf 'FROM debian\nRUN apt-get install curl\n' >"$OUT/Dockerfile.lint"
expect_failure "hadolint on a sloppy Dockerfile" "DL3008" hadolint --no-color "$OUT/Dockerfile.lint"

step "deploy checks passed in $((SECONDS - started)) s ($selftests self-tests)"
