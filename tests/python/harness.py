"""Test harness for the Python package: real memcached processes and real mintcache-server
processes on free loopback ports, and a reader of the server's Prometheus metrics.

memcached or the server binary missing is a test failure, never a skip. The server binary is
``$MINTCACHE_SERVER_BIN``, else ``$CARGO_TARGET_DIR/debug/mintcache-server``, else
``target/debug/mintcache-server`` (``cargo build --bin mintcache-server``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: How long a process gets to start listening.
STARTUP_SECONDS = 15.0
#: memcached operation timeout of test servers: generous, so that a loaded machine does not
#: turn reads into fail-open misses. Tests about failures stop memcached instead.
MEMCACHED_TIMEOUT_MS = 5000

ADMIN_TOKEN = "admin-token-used-by-the-python-tests"
CLIENT_TOKEN = "client-token-used-by-the-python-tests"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited during startup with status {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{what} did not listen on port {port} within {STARTUP_SECONDS} s")
        time.sleep(0.02)


def server_binary() -> Path:
    explicit = os.environ.get("MINTCACHE_SERVER_BIN")
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
        path = target / "debug" / "mintcache-server"
    if not path.is_file():
        raise RuntimeError(
            f"mintcache-server not found at {path}: run `cargo build --bin mintcache-server` "
            "(or set MINTCACHE_SERVER_BIN)"
        )
    return path


class Memcached:
    """A memcached process on a free port (64 MiB, TCP only, loopback)."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            raise RuntimeError(
                "memcached is not installed (apt-get install memcached, or "
                "scripts/install-test-deps.sh): these tests need real memcached processes"
            )
        self.port = port or free_port()
        args = [
            binary,
            "-l",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "0",
            "-m",
            "64",
            "-t",
            "2",
        ]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.process, "memcached")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class Server:
    """A mintcache-server process on free ports, configured with ``MINTCACHE_*`` variables."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "MINTCACHE_SERVER__LISTEN": f"127.0.0.1:{self.port}",
            "MINTCACHE_ADMIN__LISTEN": f"127.0.0.1:{self.admin_port}",
            "MINTCACHE_LOG__LEVEL": "warn",
            "MINTCACHE_MEMCACHED__TIMEOUT_MS": str(MEMCACHED_TIMEOUT_MS),
            **env,
        }
        self.process = subprocess.Popen(
            [str(server_binary())], env=full_env, stdout=subprocess.DEVNULL
        )
        _wait_for_port(self.port, self.process, "mintcache-server")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> str:
        """The server's ``/metrics`` (Prometheus text)."""
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def metric(self, name: str) -> float:
        """The sum of the samples of ``name`` (every label set), 0 when it has none."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def rpc_count(self, rpc: str, code: str | None = None, outcome: str | None = None) -> int:
        """Finished calls of ``rpc`` (optionally with status ``code`` and read ``outcome``),
        from the server's ``/metrics``."""
        text = self.metrics()
        total = 0
        for line in text.splitlines():
            if not line.startswith("mintcache_rpc_requests_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if (
                labels.get("rpc") == rpc
                and (code is None or labels.get("code") == code)
                and (outcome is None or labels.get("outcome") == outcome)
            ):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def server_env(memcached: list[Memcached], **extra: str) -> dict[str, str]:
    """The usual test configuration: these memcached servers, an admin and a client token."""
    env = {
        "MINTCACHE_MEMCACHED__SERVERS": ",".join(m.addr for m in memcached),
        "MINTCACHE_AUTH__ADMIN_TOKEN_SHA256": sha256_hex(ADMIN_TOKEN),
        "MINTCACHE_AUTH__CLIENT_TOKEN_SHA256": sha256_hex(CLIENT_TOKEN),
    }
    env.update(extra)
    return env


def wait_until(condition, what: str, limit: float = 15.0, step: float = 0.1):
    """Polls ``condition`` until it returns a true value (returned), failing after ``limit``
    seconds. For effects that take wall-clock time (memcached's one-second clock); the limit is
    a generous bound, not a measurement."""
    deadline = time.monotonic() + limit
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {limit} s")
        time.sleep(step)


def stop_process(pid: int) -> None:
    """SIGSTOP, then wait until every thread of the process is stopped (state ``T``): the
    signal takes effect as each thread next enters the kernel, which on a busy machine can be
    after the process answered a call or two."""
    os.kill(pid, signal.SIGSTOP)

    def stopped() -> bool:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/stat") as stat:
                    states.append(stat.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
        return bool(states) and all(state == "T" for state in states)

    wait_until(stopped, f"process {pid} stopped", step=0.001)


def raw_client(cache):
    """A plain client in the same key space as a MintCache backend, to look at what it stored
    (Django-made keys: ``cache.make_key(key)``)."""
    from mintcache import Client

    defaults = cache._defaults
    return Client(
        cache._endpoints[0],
        version=defaults.version,
        namespace=defaults.namespace,
        token=CLIENT_TOKEN,
    )
