#!/usr/bin/env python3
"""Checks deploy/Dockerfile against the workspace without a Docker engine.

- every path a build-context COPY names exists, and Dockerfile.dockerignore lets it through;
- every workspace member and every target file the root manifest declares is copied into the
  build stage (cargo loads all manifests of the workspace, so a missing one breaks the build);
- the packages (-p) exist in the workspace, and the binaries (--bin) are declared: the server
  in the root Cargo.toml with an existing source file, the CLI `mintcache` in client/Cargo.toml
  or as client/src/bin/mintcache.rs (the client crate is checked on paper only: it may be
  mid-change and need not compile for this check);
- every binary installed into /out is built, the runtime stage copies them, and ENTRYPOINT runs
  one of them;
- the runtime user is numeric and not root; the EXPOSEd ports are those the baked-in config
  (deploy/mintcache.toml) listens on.

Usage: check_dockerfile.py [--root DIR] [--dockerfile PATH]   (exit 1 and a list on problems)
"""

import argparse
import fnmatch
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path


def instructions(text):
    """(keyword, argument string) per instruction; continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        keyword, _, rest = buf.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    return out


def dockerignore_allows(patterns, path):
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    allowed = True
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        # A pattern matching a parent directory matches the path too.
        if any(fnmatch.fnmatch(pre, p) for pre in prefixes):
            allowed = neg
    return allowed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--dockerfile", default=None)
    args = ap.parse_args()
    root = Path(args.root)
    dockerfile = Path(args.dockerfile) if args.dockerfile else root / "deploy" / "Dockerfile"
    problems = []
    notes = []

    instrs = instructions(dockerfile.read_text())
    ignore_file = root / "deploy" / "Dockerfile.dockerignore"
    ignore = []
    if ignore_file.exists():
        ignore = [
            ln.strip()
            for ln in ignore_file.read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#")
        ]

    # Stages.
    stages, stage = [], None
    for kw, rest in instrs:
        if kw == "FROM":
            m = re.search(r"\bAS\s+(\S+)", rest, re.I)
            stage = {"name": m.group(1) if m else str(len(stages)), "instrs": []}
            stages.append(stage)
        elif stage is not None:
            stage["instrs"].append((kw, rest))
    if len(stages) < 2:
        problems.append("not a multi-stage build (fewer than two FROM)")

    # COPY sources from the build context.
    copied = []
    for st in stages:
        for kw, rest in st["instrs"]:
            if kw not in ("COPY", "ADD"):
                continue
            words = shlex.split(rest)
            if any(w.startswith("--from") for w in words):
                continue
            srcs = [w for w in words if not w.startswith("--")][:-1]
            for src in srcs:
                p = root / src
                copied.append(src.rstrip("/"))
                if not p.exists():
                    problems.append(f"{kw} {src}: no such path in the workspace")
                elif not dockerignore_allows(ignore, src):
                    problems.append(f"{kw} {src}: excluded by deploy/Dockerfile.dockerignore")
                else:
                    notes.append(f"copy source exists: {src}")

    def is_copied(rel):
        rel = rel.rstrip("/")
        return any(rel == c or rel.startswith(c + "/") for c in copied)

    # The workspace as cargo will load it inside the build stage.
    manifest = tomllib.loads((root / "Cargo.toml").read_text())
    members = manifest.get("workspace", {}).get("members", ["."])
    packages = {}
    for member in members:
        mdir = root / member
        mfile = mdir / "Cargo.toml"
        rel = "Cargo.toml" if member == "." else f"{member}/Cargo.toml"
        if not is_copied(rel):
            problems.append(f"workspace member {member}: {rel} is not copied into the build stage")
        if not mfile.exists():
            problems.append(f"workspace member {member}: {rel} does not exist")
            continue
        packages[tomllib.loads(mfile.read_text())["package"]["name"]] = member
    root_pkg = manifest.get("package", {})
    declared = []
    if "build" in root_pkg:
        declared.append(root_pkg["build"])
    elif (root / "build.rs").exists():
        declared.append("build.rs")
    if "lib" in manifest and "path" in manifest["lib"]:
        declared.append(manifest["lib"]["path"])
    # Test, bench and example targets are not built by `cargo build --bin`, but cargo checks
    # that every declared target file exists when it loads the manifest.
    for section in ("bin", "test", "bench", "example"):
        for target in manifest.get(section, []):
            if "path" in target:
                declared.append(target["path"])
    for path in declared:
        if not (root / path).exists():
            problems.append(f"Cargo.toml declares {path}, which does not exist")
        elif not is_copied(path):
            problems.append(f"Cargo.toml declares {path}, which the Dockerfile does not copy")

    # cargo build: packages and binaries.
    run_text = " ".join(rest for st in stages for kw, rest in st["instrs"] if kw == "RUN")
    builds = re.findall(r"cargo build[^&;]*", run_text)
    if not builds:
        problems.append("no `cargo build` in any RUN")
    pkgs = [p for b in builds for p in re.findall(r"(?:-p|--package)\s+(\S+)", b)]
    bins = [b_ for b in builds for b_ in re.findall(r"--bin\s+(\S+)", b)]
    for pkg in pkgs:
        if pkg not in packages:
            problems.append(f"cargo build -p {pkg}: no such workspace package ({sorted(packages)})")
    if "--release" not in " ".join(builds):
        problems.append("cargo build is not --release")
    if "--locked" not in " ".join(builds):
        problems.append("cargo build is not --locked (Cargo.lock would not be enforced)")
    for b in ("mintcache-server", "mintcache"):
        if b not in bins:
            problems.append(f"binary {b} is not built (--bin {b})")
    root_bins = {t["name"]: t.get("path") for t in manifest.get("bin", [])}
    if "mintcache-server" in bins:
        path = root_bins.get("mintcache-server")
        if path is None:
            problems.append("root Cargo.toml declares no [[bin]] mintcache-server")
        elif not (root / path).exists():
            problems.append(f"mintcache-server source {path} does not exist")
        else:
            notes.append(f"bin mintcache-server declared in Cargo.toml ({path})")
    if "mintcache" in bins:
        client_manifest = tomllib.loads((root / "client" / "Cargo.toml").read_text())
        client_bins = {t["name"] for t in client_manifest.get("bin", [])}
        if "mintcache" in client_bins:
            notes.append("bin mintcache declared in client/Cargo.toml")
        elif (root / "client" / "src" / "bin" / "mintcache.rs").exists():
            notes.append("bin mintcache: client/src/bin/mintcache.rs exists")
        else:
            problems.append("the CLI `mintcache` is neither declared in client/Cargo.toml "
                            "nor present as client/src/bin/mintcache.rs")
        if pkgs and "mintcache-client" not in pkgs:
            problems.append("the CLI is built without -p mintcache-client")
    installed = re.findall(r"target/release/(\S+)\s+/out/(\S+)", run_text)
    for src, dst in installed:
        if src not in bins:
            problems.append(f"/out/{dst} comes from target/release/{src}, which is not built")
    out_names = {dst for _, dst in installed}

    # Runtime stage.
    runtime = stages[-1]["instrs"] if stages else []
    rt_copies = " ".join(rest for kw, rest in runtime if kw == "COPY" and "--from" in rest)
    for name in ("mintcache-server", "mintcache"):
        if f"/out/{name}" not in rt_copies:
            problems.append(f"the runtime stage does not copy /out/{name}")
        if name not in out_names:
            problems.append(f"/out/{name} is never installed in the build stage")
    entry = [rest for kw, rest in runtime if kw == "ENTRYPOINT"]
    if not entry:
        problems.append("no ENTRYPOINT in the runtime stage")
    else:
        argv = json.loads(entry[-1])
        if Path(argv[0]).name not in out_names:
            problems.append(f"ENTRYPOINT {argv[0]} is not one of the built binaries")
    users = [rest for kw, rest in runtime if kw == "USER"]
    if not users:
        problems.append("the runtime stage sets no USER (it would run as root)")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            problems.append(f"USER {users[-1]}: must be a numeric non-root uid "
                            "(Kubernetes runAsNonRoot can only verify numeric users)")
    exposed = {int(p.split("/")[0]) for kw, rest in runtime if kw == "EXPOSE" for p in rest.split()}
    baked = root / "deploy" / "mintcache.toml"
    if baked.exists():
        cfg = tomllib.loads(baked.read_text())
        for key, section in (("server.listen", "server"), ("admin.listen", "admin")):
            listen = cfg.get(section, {}).get("listen")
            if listen is None:
                problems.append(f"deploy/mintcache.toml sets no {key}")
                continue
            host, _, port = listen.rpartition(":")
            if host != "0.0.0.0":
                problems.append(f"deploy/mintcache.toml {key} = {listen}: unreachable from "
                                "outside the container (use 0.0.0.0)")
            if int(port) not in exposed:
                problems.append(f"{key} port {port} is not EXPOSEd ({sorted(exposed)})")

    for n in notes:
        print(f"ok   {n}")
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"{dockerfile}: {len(problems)} problem(s)")
        return 1
    print(f"{dockerfile}: paths, packages, binaries, user and ports check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
