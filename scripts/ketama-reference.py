#!/usr/bin/env python3
"""Regenerates server/store/memcached/ketama_reference.txt: where twemproxy puts keys.

For each server set below, the script starts one real memcached per server on loopback, a real
nutcracker (twemproxy) over them with `distribution: ketama` and `hash: md5`, stores every
reference key through nutcracker, then asks each memcached directly which of the keys it holds.
The table it writes (server set, weights, key -> index of the server holding it) is what
`KetamaRing` is tested against (server/store/memcached/ketama.rs:
`matches_twemproxy_on_every_reference_key`, `new_over_is_twemproxys_ring_of_the_live_servers`).

Needs: python3, memcached and nutcracker on PATH (Debian: `apt-get install memcached
nutcracker`); Linux, whose loopback answers on 127.0.0.2 and up (servers listen on 127.0.0.1 to
127.0.0.27 and ::1, on port 11211 and ports 21211-21215, so nothing else may hold those); and
`localhost` resolving to 127.0.0.1. It refuses to run when a port it needs is taken.

    scripts/ketama-reference.py            # rewrites the table
    scripts/ketama-reference.py --check    # regenerates and compares with the committed table
"""

import argparse
import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TABLE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "server",
    "store",
    "memcached",
    "ketama_reference.txt",
)

KEYS = 1000

# (name, servers as mintcache's configuration writes them: host:port:weight). twemproxy leaves
# the port out of a server's point names when it is 11211 (libmemcached's default), so sets on
# 11211 and on other ports are both covered; 1,6,6,6,6 and 9,4,4,4,4 are weights where
# twemproxy's single-precision share arithmetic gives fewer points than exact arithmetic.
# A server set is named as mintcache's configuration writes it; the script writes twemproxy's
# configuration from it.
CASES = [
    ("port11211-equal", ["127.0.0.2:11211:1", "127.0.0.3:11211:1", "127.0.0.4:11211:1"]),
    ("ports-equal", ["127.0.0.2:21211:1", "127.0.0.2:21212:1", "127.0.0.2:21213:1"]),
    ("ports-1-2-3", ["127.0.0.2:21211:1", "127.0.0.2:21212:2", "127.0.0.2:21213:3"]),
    ("port11211-1-2-3", ["127.0.0.2:11211:1", "127.0.0.3:11211:2", "127.0.0.4:11211:3"]),
    (
        "port11211-1-6-6-6-6",
        [
            "127.0.0.2:11211:1",
            "127.0.0.3:11211:6",
            "127.0.0.4:11211:6",
            "127.0.0.5:11211:6",
            "127.0.0.6:11211:6",
        ],
    ),
    (
        "ports-1-6-6-6-6",
        [
            "127.0.0.3:21211:1",
            "127.0.0.3:21212:6",
            "127.0.0.3:21213:6",
            "127.0.0.3:21214:6",
            "127.0.0.3:21215:6",
        ],
    ),
    (
        "ports-9-4-4-4-4",
        [
            "127.0.0.4:21211:9",
            "127.0.0.4:21212:4",
            "127.0.0.4:21213:4",
            "127.0.0.4:21214:4",
            "127.0.0.4:21215:4",
        ],
    ),
    ("names-port11211", ["localhost:11211:1", "127.0.0.2:11211:1", "127.0.0.3:11211:2"]),
    ("names-ports", ["localhost:21211:1", "localhost:21212:2", "127.0.0.2:21211:1"]),
    ("ipv6", ["[::1]:11211:1", "[::1]:21211:2", "127.0.0.2:21211:1"]),
    (
        "mixed-ports",
        ["127.0.0.2:11211:2", "127.0.0.2:21211:1", "127.0.0.3:11211:1", "127.0.0.3:21211:3"],
    ),
    (
        "ten-servers-1-to-10",
        [f"127.0.0.{i + 2}:11211:{i + 1}" for i in range(5)]
        + [f"127.0.0.{i + 2}:21211:{i + 6}" for i in range(5)],
    ),
    # Equal weights, where single precision gives 25 servers 156 points each, 24 or 26 servers
    # 160: 26 servers without the last is a different ring from 26 with the last one skipped.
    ("twenty-five-equal", [f"127.0.0.{i + 2}:21211:1" for i in range(25)]),
    ("twenty-six-equal", [f"127.0.0.{i + 2}:21211:1" for i in range(26)]),
    # The sets above with servers removed, as twemproxy rebuilds its ring from the live servers
    # when it ejects some: what `KetamaRing::new_over` must reproduce.
    (
        "port11211-1-6-6-6-6-without-1",
        ["127.0.0.2:11211:1", "127.0.0.4:11211:6", "127.0.0.5:11211:6", "127.0.0.6:11211:6"],
    ),
    (
        "ports-1-6-6-6-6-without-0",
        ["127.0.0.3:21212:6", "127.0.0.3:21213:6", "127.0.0.3:21214:6", "127.0.0.3:21215:6"],
    ),
    ("ports-1-2-3-without-1", ["127.0.0.2:21211:1", "127.0.0.2:21213:3"]),
    (
        "ten-servers-1-to-10-without-3-7-9",
        [f"127.0.0.{i + 2}:11211:{i + 1}" for i in (0, 1, 2, 4)]
        + [f"127.0.0.{i + 2}:21211:{i + 6}" for i in (0, 1, 3)],
    ),
]


def reference_keys():
    """Keys shaped like the ones mintcache stores: `<namespace>:<version>[~<gen>]:<key>`, and
    `<namespace>:<version>#<sha256 in base64url>` for long ones."""
    keys = []
    for i in range(KEYS):
        form = i % 4
        if form == 0:
            keys.append(f"app:1:user:{i}")
        elif form == 1:
            keys.append(f":v2:session-{i * 7919}")
        elif form == 2:
            keys.append(f"shop:2024.1~{i % 5 + 1}:cart/{i}?page={i % 13}")
        else:
            digest = hashlib.sha256(str(i).encode()).digest()
            keys.append("search:9#" + base64.urlsafe_b64encode(digest).decode().rstrip("="))
    return keys


def split_server(spec):
    host, port, weight = spec.rsplit(":", 2)
    return host, int(port), int(weight)


def wait_listening(host, port, proc, what):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} is not listening on {host}:{port} after 10 s")


def ensure_free(host, port):
    for family, _, _, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind(addr)
        except OSError as e:
            sys.exit(f"{addr[0]}:{addr[1]} is not free ({e}); stop what holds it and retry")
        finally:
            s.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def store_all(port, keys):
    """Sets every key through nutcracker; the value is the key's position in the list."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        batch = 100
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            out = b"".join(
                f"set {k} 0 0 {len(str(start + i))}\r\n{start + i}\r\n".encode()
                for i, k in enumerate(chunk)
            )
            s.sendall(out)
            buf = b""
            while buf.count(b"\r\n") < len(chunk):
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("nutcracker closed the connection")
                buf += data
            replies = buf.split(b"\r\n")[: len(chunk)]
            if any(r != b"STORED" for r in replies):
                sys.exit(f"nutcracker did not store every key: {replies[:5]}")


def held_keys(host, port, keys):
    """The positions of `keys` that the memcached at host:port holds."""
    held = set()
    with socket.create_connection((host, port), timeout=10) as s:
        batch = 50
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            s.sendall(("get " + " ".join(chunk) + "\r\n").encode())
            buf = b""
            # Values are digits, so the reply ends at the first END line that ends the buffer.
            while not buf.endswith(b"END\r\n"):
                data = s.recv(65536)
                if not data:
                    raise ConnectionError(f"{host}:{port} closed the connection")
                buf += data
            lines = buf.split(b"\r\n")
            i = 0
            while lines[i] != b"END":
                _, key, _, _ = lines[i].split(b" ")
                position = int(lines[i + 1])
                if keys[position] != key.decode():
                    sys.exit(f"{host}:{port} holds {key!r} with the value of another key")
                held.add(position)
                i += 2
    return held


def twemproxy_server(spec):
    """A server as twemproxy's configuration writes it (IPv6 addresses without brackets)."""
    host, port, weight = split_server(spec)
    return f"{host.strip('[]')}:{port}:{weight}"


def run_case(name, servers, keys, workdir):
    procs = []
    try:
        for spec in servers:
            host, port, _ = split_server(spec)
            ensure_free(host.strip("[]"), port)
            proc = subprocess.Popen(
                ["memcached", "-U", "0", "-l", host.strip("[]"), "-p", str(port), "-m", "16"]
                + (["-u", "nobody"] if os.geteuid() == 0 else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)
            wait_listening(host.strip("[]"), port, proc, f"memcached {host}:{port}")
        listen = free_port()
        conf = os.path.join(workdir, f"{name}.yml")
        with open(conf, "w") as f:
            f.write(
                "reference:\n"
                f"  listen: 127.0.0.1:{listen}\n"
                "  hash: md5\n"
                "  distribution: ketama\n"
                "  auto_eject_hosts: false\n"
                "  timeout: 5000\n"
                "  servers:\n"
                + "".join(f"   - {twemproxy_server(s)}\n" for s in servers)
            )
        nutcracker = subprocess.Popen(
            [
                "nutcracker",
                "-c",
                conf,
                "-s",
                str(free_port()),
                "-a",
                "127.0.0.1",
                "-o",
                os.path.join(workdir, f"{name}.log"),
                "-p",
                os.path.join(workdir, f"{name}.pid"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(nutcracker)
        wait_listening("127.0.0.1", listen, nutcracker, "nutcracker")
        store_all(listen, keys)
        owner = [None] * len(keys)
        for index, spec in enumerate(servers):
            host, port, _ = split_server(spec)
            for position in held_keys(host.strip("[]"), port, keys):
                if owner[position] is not None:
                    sys.exit(f"{name}: key {keys[position]} is on two servers")
                owner[position] = index
        missing = [keys[p] for p, o in enumerate(owner) if o is None]
        if missing:
            sys.exit(f"{name}: {len(missing)} keys on no server, e.g. {missing[0]}")
        return owner
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def version():
    out = subprocess.run(["nutcracker", "-V"], capture_output=True, text=True)
    line = (out.stdout + out.stderr).strip().splitlines()[0]
    return line.removeprefix("This is ")


def render(keys, owners):
    lines = [
        "# Where twemproxy (ketama, md5) puts keys: written by scripts/ketama-reference.py,",
        f"# {version()}, from the keys each memcached held after storing them through it.",
        "# `case <name> <server>...` lines list a server set as mintcache's configuration writes",
        "# it (host:port:weight); then one line per key: the key, and for each case in order the",
        "# index of the server holding it.",
    ]
    for name, servers in CASES:
        lines.append(f"case {name} " + " ".join(servers))
    for position, key in enumerate(keys):
        lines.append(key + " " + " ".join(str(o[position]) for o in owners))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    for tool in ("memcached", "nutcracker"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH")
    keys = reference_keys()
    owners = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, servers in CASES:
            owners.append(run_case(name, servers, keys, workdir))
            print(f"{name}: {len(keys)} keys placed", file=sys.stderr)
    text = render(keys, owners)
    if args.check:
        with open(TABLE) as f:
            if f.read() != text:
                sys.exit(f"{TABLE} differs from what twemproxy does now")
        print("the committed table matches twemproxy", file=sys.stderr)
    else:
        with open(TABLE, "w") as f:
            f.write(text)
        print(f"wrote {os.path.normpath(TABLE)}", file=sys.stderr)


if __name__ == "__main__":
    main()
