#!/usr/bin/env python3
"""Runs `mintcache-server --check-config` on exactly what a rendered chart gives the server.

From a `helm template` output it takes the mintcache Deployment's container and rebuilds the
process environment the kubelet would give it:
  - literal `env` values; `secretKeyRef`s from a Secret in the render, or, for a Secret the chart
    does not create (auth.existingSecret), realistic placeholders (two 64-hex-digit digests for
    *_TOKEN_SHA256); `configMapKeyRef`/`envFrom` from rendered ConfigMaps; `fieldRef` stand-ins;
  - the Docker-link variables Kubernetes injects for every ClusterIP Service of the namespace
    (here: those of the render) unless the pod sets enableServiceLinks: false;
  - the config file: MINTCACHE_CONFIG must point into a volume mount of the ConfigMap that holds
    that key; its TOML is written to a temporary file.
TLS paths in the TOML must lie in mounts of Secret volumes projecting that file; since the
secrets are not part of the render, each is replaced by a temporary PEM-shaped file (the server
checks at --check-config that the files are readable PEM, not that the certificate is valid).

The server must accept it (exit 0). Then the effective configuration it prints is compared with
the manifests: listen ports vs container ports and probes, the bundled memcached StatefulSet's
pod DNS names vs memcached.servers, terminationGracePeriodSeconds vs the shutdown grace, token
digests vs the Secret, and one pod with the embedded store.

Usage: check_chart_config.py --server target/debug/mintcache-server RENDERED.yaml
Exit 0 when consistent; 1 with the problems listed otherwise.
"""

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

PLACEHOLDER_DIGESTS = (
    "3f1c6b1e0d8a4c2b9e7f5a3d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a19080",
    "a8f5f167f44f4964e6c998dee827110c0a1b2c3d4e5f60718293a4b5c6d7e8f9",
)
PEM = ("-----BEGIN CERTIFICATE-----\n"
       "placeholder written by deploy/check_chart_config.py\n"
       "-----END CERTIFICATE-----\n")
FIELD_REFS = {
    "status.podIP": "10.244.1.23",
    "status.hostIP": "10.0.0.7",
    "metadata.name": "mintcache-7d9f8b6c5-x2x4k",
    "metadata.namespace": "default",
    "spec.nodeName": "node-1",
}


class Problems(list):
    def add(self, msg):
        self.append(msg)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def named(docs, kind, name):
    for d in by_kind(docs, kind):
        if d["metadata"]["name"] == name:
            return d
    return None


def secret_data(secret):
    data = dict(secret.get("stringData") or {})
    for k, v in (secret.get("data") or {}).items():
        data.setdefault(k, base64.b64decode(v).decode())
    return data


def service_link_env(services):
    """The variables the kubelet injects for each ClusterIP Service (enableServiceLinks)."""
    env = {}
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("clusterIP") == "None" or not spec.get("ports"):
            continue
        name = svc["metadata"]["name"].upper().replace("-", "_")
        ip = "10.96.0.42"
        first = spec["ports"][0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first["port"])
        env[f"{name}_PORT"] = f"tcp://{ip}:{first['port']}"
        for p in spec["ports"]:
            proto = p.get("protocol", "TCP")
            base = f"{name}_PORT_{p['port']}_{proto}"
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
            env[base] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(p["port"])
            env[f"{base}_ADDR"] = ip
    return env


def mount_for(path, mounts, volumes, problems, what):
    """The (volume, file name) that provides `path` inside the container, or None."""
    path = Path(path)
    for m in mounts:
        mp = Path(m["mountPath"])
        if path.parent == mp:
            vol = volumes.get(m["name"])
            if vol is None:
                problems.add(f"{what}: volume mount {m['name']} has no volume")
                return None
            return vol, path.name
    problems.add(f"{what}: {path} is not inside any volume mount of the container")
    return None


def projected(vol_source, filename):
    items = vol_source.get("items")
    if items is None:
        return True  # the whole ConfigMap/Secret is projected
    return any(i["path"] == filename for i in items)


def item_key(vol_source, filename):
    for i in vol_source.get("items") or []:
        if i["path"] == filename:
            return i["key"]
    return filename


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("rendered")
    args = ap.parse_args()
    docs = load(args.rendered)
    problems = Problems()
    label = Path(args.rendered).name

    deployments = [d for d in by_kind(docs, "Deployment")
                   if d["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]
    if len(deployments) != 1:
        print(f"FAIL {label}: expected one mintcache Deployment, found {len(deployments)}")
        return 1
    dep = deployments[0]
    pod = dep["spec"]["template"]["spec"]
    containers = [c for c in pod["containers"] if c["name"] == "mintcache"]
    if len(containers) != 1:
        print(f"FAIL {label}: the Deployment has no container named mintcache")
        return 1
    ctr = containers[0]
    namespace = dep["metadata"].get("namespace", "default")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = ctr.get("volumeMounts", [])

    # --- environment ---------------------------------------------------------------------
    env = {}
    if pod.get("enableServiceLinks", True):
        links = service_link_env([s for s in by_kind(docs, "Service")
                                  if s["metadata"].get("namespace", namespace) == namespace])
        env.update(links)
        print(f"note: enableServiceLinks is not false: {len(links)} service-link variables added")
    for src in ctr.get("envFrom", []):
        if "configMapRef" in src:
            cm = named(docs, "ConfigMap", src["configMapRef"]["name"])
            if cm is None:
                problems.add(f"envFrom configMap {src['configMapRef']['name']} is not rendered")
                continue
            for k, v in (cm.get("data") or {}).items():
                env[src.get("prefix", "") + k] = v
        else:
            problems.add(f"envFrom {src}: cannot reproduce it offline")
    placeholders = {}
    for e in ctr.get("env", []):
        name = e["name"]
        if "value" in e:
            env[name] = str(e["value"])
            continue
        ref = e.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            secret = named(docs, "Secret", r["name"])
            if secret is not None:
                data = secret_data(secret)
                if r["key"] in data:
                    env[name] = data[r["key"]]
                elif not r.get("optional"):
                    problems.add(f"env {name}: key {r['key']} missing in rendered Secret {r['name']}")
            elif name.endswith("_TOKEN_SHA256"):
                env[name] = ",".join(PLACEHOLDER_DIGESTS)
                placeholders[name] = r["name"]
            else:
                problems.add(f"env {name}: Secret {r['name']} is not rendered and no realistic "
                             "placeholder is known for it")
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            cm = named(docs, "ConfigMap", r["name"])
            if cm is None or r["key"] not in (cm.get("data") or {}):
                problems.add(f"env {name}: ConfigMap {r['name']} key {r['key']} is not rendered")
            else:
                env[name] = cm["data"][r["key"]]
        elif "fieldRef" in ref:
            fp = ref["fieldRef"]["fieldPath"]
            if fp not in FIELD_REFS:
                problems.add(f"env {name}: no stand-in for fieldRef {fp}")
            else:
                env[name] = FIELD_REFS[fp]
        else:
            problems.add(f"env {name}: unsupported valueFrom {ref}")
    for name, secret in placeholders.items():
        print(f"note: {name} comes from Secret {secret} (not rendered): placeholder digests used")

    # --- config file -----------------------------------------------------------------------
    cfg_path = env.get("MINTCACHE_CONFIG")
    toml_text = None
    if not cfg_path:
        problems.add("MINTCACHE_CONFIG is not set: the server would run on defaults only")
    else:
        found = mount_for(cfg_path, mounts, volumes, problems, "MINTCACHE_CONFIG")
        if found:
            vol, fname = found
            if "configMap" not in vol:
                problems.add(f"MINTCACHE_CONFIG {cfg_path}: volume {vol['name']} is not a ConfigMap")
            elif not projected(vol["configMap"], fname):
                problems.add(f"MINTCACHE_CONFIG {cfg_path}: {fname} is not projected by volume {vol['name']}")
            else:
                cm = named(docs, "ConfigMap", vol["configMap"]["name"])
                key = item_key(vol["configMap"], fname)
                if cm is None:
                    problems.add(f"ConfigMap {vol['configMap']['name']} is not rendered")
                elif key not in (cm.get("data") or {}):
                    problems.add(f"ConfigMap {cm['metadata']['name']} has no key {key}")
                else:
                    toml_text = cm["data"][key]
    if toml_text is None:
        return report(label, problems)
    rendered_cfg = tomllib.loads(toml_text)

    with tempfile.TemporaryDirectory(prefix="mintcache-chart-") as tmp:
        tmp = Path(tmp)
        # TLS files: they must come from mounted Secrets; stand-ins replace them.
        for key in ("cert", "key", "client_ca"):
            path = (rendered_cfg.get("tls") or {}).get(key)
            if path is None:
                continue
            found = mount_for(path, mounts, volumes, problems, f"tls.{key}")
            if not found:
                continue
            vol, fname = found
            if "secret" not in vol:
                problems.add(f"tls.{key} {path}: volume {vol['name']} is not a Secret")
                continue
            if not projected(vol["secret"], fname):
                problems.add(f"tls.{key} {path}: {fname} is not projected by volume {vol['name']}")
                continue
            stand_in = tmp / f"{key}.pem"
            stand_in.write_text(PEM)
            old = f'"{path}"'
            if old not in toml_text:
                problems.add(f"tls.{key}: cannot rewrite {old} in the TOML")
                continue
            toml_text = toml_text.replace(old, f'"{stand_in}"')
            print(f"note: tls.{key} = {path} (Secret {vol['secret']['secretName']}, "
                  f"key {item_key(vol['secret'], fname)}) replaced by a PEM stand-in")
        cfg_file = tmp / "mintcache.toml"
        cfg_file.write_text(toml_text)
        env["MINTCACHE_CONFIG"] = str(cfg_file)
        proc_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        proc = subprocess.run([args.server, "--check-config"], env=proc_env,
                              capture_output=True, text=True)
    shown = {k: (v if not k.endswith("_SHA256") else f"<{len(v.split(','))} digest(s)>")
             for k, v in sorted(env.items()) if k.startswith("MINTCACHE_")}
    print(f"environment given to the server: {shown}")
    if proc.returncode != 0:
        problems.add(f"mintcache-server --check-config exited {proc.returncode}: "
                     f"{proc.stderr.strip()}")
        return report(label, problems)
    print(proc.stdout.rstrip())
    effective = tomllib.loads(proc.stdout)

    # --- cross-checks ----------------------------------------------------------------------
    ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
    for section, port_name in (("server", "grpc"), ("admin", "admin")):
        host, _, port = effective[section]["listen"].rpartition(":")
        if host != "0.0.0.0":
            problems.add(f"{section}.listen {host}: not reachable from outside the pod")
        if ports.get(port_name) != int(port):
            problems.add(f"{section}.listen port {port} != container port {port_name} "
                         f"({ports.get(port_name)})")
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = ctr.get(probe_name)
        if not probe:
            if probe_name != "startupProbe":
                problems.add(f"no {probe_name}")
            continue
        if "grpc" in probe:
            if effective["tls"].get("cert"):
                problems.add(f"{probe_name} is a gRPC probe but the gRPC port uses TLS")
            if probe["grpc"]["port"] != ports.get("grpc"):
                problems.add(f"{probe_name} probes port {probe['grpc']['port']}, not the gRPC port")
        elif "httpGet" in probe:
            p = probe["httpGet"]["port"]
            if p not in ("admin", ports.get("admin")):
                problems.add(f"{probe_name} probes {p}, not the admin port")
        else:
            problems.add(f"{probe_name}: neither grpc nor httpGet")
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"].get("selector") or {}
        if sel.get("app.kubernetes.io/component") != "server":
            continue
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports and p["targetPort"] not in ports.values():
                problems.add(f"Service {svc['metadata']['name']} port {p['name']} targets "
                             f"{p['targetPort']}, not a container port")
    grace = effective["server"]["shutdown_grace_seconds"]
    sleep = (((ctr.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps < grace + sleep:
        problems.add(f"terminationGracePeriodSeconds {tgps} < preStop sleep {sleep} + "
                     f"shutdown_grace_seconds {grace}: pods would be killed mid-drain")
    servers = effective["memcached"]["servers"]
    sts_list = [s for s in by_kind(docs, "StatefulSet")
                if s["metadata"]["labels"].get("app.kubernetes.io/component") == "memcached"]
    if sts_list:
        sts = sts_list[0]
        svc = named(docs, "Service", sts["spec"]["serviceName"])
        if svc is None or svc["spec"].get("clusterIP") != "None":
            problems.add(f"StatefulSet {sts['metadata']['name']}: serviceName "
                         f"{sts['spec']['serviceName']} is not a rendered headless Service")
        mc_port = sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        ns = sts["metadata"].get("namespace", namespace)
        expected = [f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}.{ns}"
                    f".svc.cluster.local:{mc_port}:1" for i in range(sts["spec"]["replicas"])]
        if servers != expected:
            problems.add(f"memcached.servers {servers} != the StatefulSet's pods {expected}")
        else:
            print(f"note: memcached.servers = the {len(expected)} pods of StatefulSet "
                  f"{sts['metadata']['name']} via headless Service {sts['spec']['serviceName']}")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    replicas = dep["spec"].get("replicas", 1)
    if not servers and (hpa or replicas > 1):
        problems.add(f"{'an HPA' if hpa else f'{replicas} replicas'} with the embedded store: "
                     "pods would not share keys or invalidations")
    for var, key in (("MINTCACHE_AUTH__ADMIN_TOKEN_SHA256", "admin_token_sha256"),
                     ("MINTCACHE_AUTH__CLIENT_TOKEN_SHA256", "client_token_sha256")):
        want = [d for d in env.get(var, "").split(",") if d]
        got = effective["auth"][key]
        if len(got) != len(want):
            problems.add(f"auth.{key}: {len(got)} digest(s) in effect, {len(want)} given in {var}")
    return report(label, problems)


def report(label, problems):
    for p in problems:
        print(f"FAIL {label}: {p}")
    if problems:
        return 1
    print(f"ok   {label}: the server accepts the chart's configuration and it matches the manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
