#!/usr/bin/env python3
"""Runs `mintcache-server --check-config` on exactly what rendered charts give the server.

The chart's values.schema.json and fail guards decide what values the chart accepts; this is
the one check they cannot make: whether the server accepts what the chart renders. For each
`helm template` output it takes the mintcache container of the Deployment and rebuilds what the
kubelet would give it: the ConfigMap's TOML at MINTCACHE_CONFIG (found through the volume
mount), the literal `env` values, and `secretKeyRef`s from a rendered Secret, or placeholder
digests for a Secret the chart does not create (auth.existingSecret). TLS files, which come
from Secrets outside the render, are replaced by PEM-shaped stand-ins (the server only checks
that they are readable PEM). The server must accept that configuration, listen on the
container's ports, and print no key that values.schema.json does not know (so the schema keeps
up with the server's configuration).

Usage: check_chart_config.py --server PATH --schema values.schema.json RENDERED.yaml...
Exit 0 when the server accepts every render; 1 with the problems listed otherwise.
"""

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

PLACEHOLDER_DIGEST = "3f1c6b1e0d8a4c2b9e7f5a3d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a19080"
PEM = "-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n"


def find(docs, kind, name):
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def server_input(docs, tmp):
    """(environment, container ports) of the mintcache container, its config file and TLS
    stand-ins written under `tmp`; raises ValueError (or KeyError) when the render is unclear."""
    [dep] = [d for d in docs if d["kind"] == "Deployment"
             and d["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]
    pod = dep["spec"]["template"]["spec"]
    [ctr] = [c for c in pod["containers"] if c["name"] == "mintcache"]
    if pod.get("enableServiceLinks", True) or ctr.get("envFrom"):
        raise ValueError("service links or envFrom: the environment cannot be rebuilt offline")
    env = {}
    for e in ctr.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = e["valueFrom"]["secretKeyRef"]
        secret = find(docs, "Secret", ref["name"])
        if secret is None:
            # auth.existingSecret: created outside the chart, it can only hold token digests.
            if not e["name"].endswith("_TOKEN_SHA256"):
                raise ValueError(f"{e['name']} comes from Secret {ref['name']}, not rendered")
            env[e["name"]] = PLACEHOLDER_DIGEST
        else:
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            env[e["name"]] = {**data, **(secret.get("stringData") or {})}[ref["key"]]
    path = Path(env["MINTCACHE_CONFIG"])
    [mount] = [m for m in ctr["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    [item] = [i for i in volume["configMap"]["items"] if i["path"] == path.name]
    toml = find(docs, "ConfigMap", volume["configMap"]["name"])["data"][item["key"]]
    for key, value in tomllib.loads(toml).get("tls", {}).items():
        if isinstance(value, str):
            stand_in = tmp / f"{key}.pem"
            stand_in.write_text(PEM)
            toml = toml.replace(json.dumps(value), json.dumps(str(stand_in)))
    cfg = tmp / "mintcache.toml"
    cfg.write_text(toml)
    env["MINTCACHE_CONFIG"] = str(cfg)
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    return env, ports


def check(server, rendered, schema_keys, seen_keys):
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    with tempfile.TemporaryDirectory(prefix="mintcache-chart-") as tmp:
        try:
            env, ports = server_input(docs, Path(tmp))
        except (ValueError, KeyError, TypeError) as e:
            return [f"cannot rebuild the server's input: {e!r}"]
        proc = subprocess.run([server, "--check-config"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return [f"mintcache-server --check-config exited {proc.returncode}: {proc.stderr.strip()}"]
    print(proc.stdout.rstrip())
    effective = tomllib.loads(proc.stdout)
    problems = []
    for section, port_name in (("server", "grpc"), ("admin", "admin")):
        listen = effective[section]["listen"]
        if listen != f"0.0.0.0:{ports[port_name]}":
            problems.append(f"{section}.listen is {listen}, the container port {port_name} is "
                            f"{ports[port_name]}")
    for section, body in effective.items():
        for key in body:
            seen_keys.add((section, key))
            if (section, key) not in schema_keys:
                problems.append(f"the server has {section}.{key}; values.schema.json has no "
                                f"config.{section}.{key}")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("rendered", nargs="+")
    args = ap.parse_args()
    config = json.loads(Path(args.schema).read_text())["properties"]["config"]["properties"]
    schema_keys = {(s, k) for s, body in config.items() for k in body["properties"]}
    seen_keys = set()
    failed = False
    for rendered in args.rendered:
        print(f"[{rendered}]")
        problems = check(args.server, rendered, schema_keys, seen_keys)
        for p in problems:
            print(f"FAIL {rendered}: {p}")
        if not problems:
            print(f"ok   {rendered}: the server accepts the chart's configuration")
        failed |= bool(problems)
    if not failed:
        # Keys the schema offers that no render's effective configuration had.
        for section, key in sorted(schema_keys - seen_keys):
            print(f"FAIL values.schema.json has config.{section}.{key}; the server printed no "
                  "such key for any render")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
