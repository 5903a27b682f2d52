#!/usr/bin/env python3
"""Checks deploy/Dockerfile against the workspace without a Docker engine.

hadolint judges the Dockerfile as a Dockerfile; this checks that it builds this workspace:
  - every COPY source exists and Dockerfile.dockerignore lets it through; what the build stage
    copies is copied into a scratch directory as the stage would see it, and there
    `cargo metadata --locked` must load the workspace (every member manifest copied,
    Cargo.lock up to date) with every library, binary and build script of the real one;
  - `cargo build` is --release --locked, and its -p packages and --bin binaries exist there
    (each --bin in one of the packages selected with -p);
  - the runtime stage copies binaries that the build stage installs into /out from what it
    built, its ENTRYPOINT is one of them, its USER is a numeric non-root uid (Kubernetes'
    runAsNonRoot can only verify numeric users), and it EXPOSEs exactly the ports the baked-in
    deploy/mintcache.toml listens on.

Usage: check_dockerfile.py [--dockerfile PATH]   (exit 1 with the problems listed)
"""

import argparse
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stages(text):
    """[(stage name, [(KEYWORD, arguments)])], continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") or not (line or buf):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        keyword, _, rest = (buf + line).partition(" ")
        buf = ""
        if keyword.upper() == "FROM":
            out.append((rest.split()[-1], []))
        elif out:
            out[-1][1].append((keyword.upper(), rest.strip()))
    return out


def ignored(patterns, path):
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            excluded = not negated
    return excluded


def context_copies(instrs):
    """(source, destination) of each COPY from the build context, destinations made absolute."""
    workdir = "/"
    for keyword, rest in instrs:
        if keyword == "WORKDIR":
            workdir = str(Path(workdir, rest))
        words = shlex.split(rest)
        if keyword != "COPY" or any(w.startswith("--from") for w in words):
            continue
        *sources, dest = [w for w in words if not w.startswith("--")]
        absolute = str(Path(workdir, dest)) + ("/" if dest.endswith("/") else "")
        for src in sources:
            yield src, absolute


def stage_build_context(parsed, scratch, problems):
    """Checks every COPY from the build context; copies what the build stage's WORKDIR gets
    into `scratch`, as the build stage would see it."""
    lines = (ROOT / "deploy/Dockerfile.dockerignore").read_text().splitlines()
    patterns = [ln for ln in map(str.strip, lines) if ln and not ln.startswith("#")]
    workdir = next((str(Path("/", rest)) for k, rest in parsed[0][1] if k == "WORKDIR"), "/")
    for index, (_, instrs) in enumerate(parsed):
        for src, dest in context_copies(instrs):
            if not (ROOT / src).exists():
                problems.append(f"COPY {src}: no such path in the workspace")
            elif ignored(patterns, src.rstrip("/")):
                problems.append(f"COPY {src}: excluded by deploy/Dockerfile.dockerignore")
            elif index == 0 and Path(dest).is_relative_to(workdir):
                into = scratch / Path(dest).relative_to(workdir)
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, into, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("target"))
                else:
                    target = into / Path(src).name if dest.endswith("/") else into
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / src, target)


NEEDED = {"lib", "bin", "custom-build", "proc-macro"}


def host_triple():
    rustc = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(ln.split()[1] for ln in rustc.splitlines() if ln.startswith("host:"))


def workspace_targets(root, problems):
    """{(package, kind, target name): source path relative to root} of the workspace members,
    as `cargo metadata --locked` loads them (it fails on a missing member manifest or a
    Cargo.lock that is not up to date). Limited to the host's platform: the dependencies of
    other platforms, which no build here downloads, are not needed."""
    root = root.resolve()
    meta = subprocess.run(["cargo", "metadata", "--locked", "--format-version", "1",
                           "--filter-platform", host_triple(),
                           "--manifest-path", str(root / "Cargo.toml")],
                          capture_output=True, text=True)
    if meta.returncode != 0:
        problems.append(f"cargo cannot load the workspace in {root}: {meta.stderr.strip()}")
        return {}
    meta = json.loads(meta.stdout)
    found = {}
    for package in meta["packages"]:
        if package["id"] not in meta["workspace_members"]:
            continue
        for target in package["targets"]:
            src = Path(target["src_path"])
            if src.exists():
                for kind in target["kind"]:
                    found[(package["name"], kind, target["name"])] = src.relative_to(root)
    return found


def check_cargo_build(parsed, problems):
    """The build stage's `cargo build` against the workspace it copies; returns the binaries
    it builds and what it installs into /out ({name in /out: binary})."""
    with tempfile.TemporaryDirectory(prefix="mintcache-image-") as scratch:
        scratch = Path(scratch)
        stage_build_context(parsed, scratch, problems)
        staged = workspace_targets(scratch, problems)
    # What `cargo build` needs (libraries, binaries, build scripts) must be in the copy, as in
    # the workspace; tests, benches and examples need not be.
    for (package, kind, name), src in workspace_targets(ROOT, problems).items():
        if staged and kind in NEEDED and (package, kind, name) not in staged:
            problems.append(f"{package} {kind} target {name}: {src} is not copied")
    runs = " ".join(rest for keyword, rest in parsed[0][1] if keyword == "RUN")
    builds = re.findall(r"cargo build[^&;]*", runs)
    if not builds:
        problems.append("no `cargo build` in the build stage")
    for flag in ("--release", "--locked"):
        if any(flag not in b for b in builds):
            problems.append(f"cargo build without {flag}")
    built = set(re.findall(r"--bin\s+(\S+)", " ".join(builds)))
    if staged:
        packages = {package for package, _, _ in staged}
        for name in re.findall(r"(?:-p|--package)\s+(\S+)", " ".join(builds)):
            if name not in packages:
                problems.append(f"cargo build -p {name}: no such workspace package")
        bins = {name for _, kind, name in staged if kind == "bin"}
        for name in sorted(built - bins):
            problems.append(f"cargo build --bin {name}: no such binary in the workspace")
        # With -p, cargo looks for each --bin in the selected packages only.
        for build in builds:
            chosen = set(re.findall(r"(?:-p|--package)\s+(\S+)", build))
            owned = {name for package, kind, name in staged if kind == "bin" and package in chosen}
            for name in sorted(set(re.findall(r"--bin\s+(\S+)", build)) & bins - owned):
                if chosen:
                    problems.append(f"cargo build --bin {name}: not in the packages it selects "
                                    f"({', '.join(sorted(chosen))})")
    installed = {dst: src for src, dst in re.findall(r"target/release/(\S+)\s+/out/(\S+)", runs)}
    for dst, src in installed.items():
        if src not in built:
            problems.append(f"/out/{dst} is installed from target/release/{src}, not built")
    return built, installed


def check_runtime_stage(parsed, installed, problems):
    """Binaries, entrypoint, user and ports of the last stage; returns (user, exposed ports)."""
    build_name, runtime = parsed[0][0], parsed[-1][1]
    copied = set()
    for keyword, rest in runtime:
        words = shlex.split(rest)
        if keyword == "COPY" and f"--from={build_name}" in words:
            for src in [w for w in words if not w.startswith("--")][:-1]:
                if not src.startswith("/out/") or src[len("/out/"):] not in installed:
                    problems.append(f"the runtime stage copies {src}, which is not installed")
                copied.add(Path(src).name)
    entry = [json.loads(rest) for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    if not entry or Path(entry[-1][0]).name not in copied:
        problems.append(f"ENTRYPOINT {entry[-1:]} is not a binary the runtime stage copies")
    user = ([rest for keyword, rest in runtime if keyword == "USER"] or ["(none)"])[-1]
    uid = user.split(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"USER {user}: must be a numeric non-root uid")
    exposed = {int(port.split("/")[0])
               for keyword, rest in runtime if keyword == "EXPOSE" for port in rest.split()}
    baked = tomllib.loads((ROOT / "deploy/mintcache.toml").read_text())
    listening = set()
    for section in ("server", "admin"):
        host, _, port = baked[section]["listen"].rpartition(":")
        listening.add(int(port))
        if host != "0.0.0.0":
            problems.append(f"deploy/mintcache.toml {section}.listen is on {host}: unreachable "
                            "from outside the container")
    if exposed != listening:
        problems.append(f"EXPOSE {sorted(exposed)}, but deploy/mintcache.toml listens on "
                        f"{sorted(listening)}")
    return user, exposed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dockerfile", default=str(ROOT / "deploy/Dockerfile"))
    args = ap.parse_args()
    parsed = stages(Path(args.dockerfile).read_text())
    if len(parsed) < 2:
        print("FAIL not a multi-stage build")
        return 1
    problems = []
    built, installed = check_cargo_build(parsed, problems)
    user, exposed = check_runtime_stage(parsed, installed, problems)
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        return 1
    print(f"ok   {args.dockerfile}: cargo loads the workspace as copied, builds {sorted(built)}; "
          f"the runtime stage runs {sorted(installed)} as USER {user}, EXPOSE {sorted(exposed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
