"""What ``python manage.py mintcache`` reports, without Django's command machinery: the check of
one endpoint (gRPC health, a read in the cache's key space with its token, the server's build
and store from its admin port), and the server's counters from that port's ``/metrics``.

What a client can see of a server: gRPC health (``grpc.health.v1``) and the answers to its own
calls on the gRPC port; the version, the store and the counters are on the admin port
(``admin.listen``, by default the gRPC port + 1, often not reachable from applications: then
the report says so and the check still passes on what the gRPC port answered).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .._core import monotonic
from ..client import Client
from ..errors import CacheError
from ..types import Backoff

__all__ = [
    "EndpointCheck",
    "Sample",
    "admin_address",
    "check_endpoint",
    "fetch_metrics",
    "parse_metrics",
    "server_build",
    "server_store",
    "stats_lines",
]

#: The key the check reads (a peek: no placeholder, no election; nothing is written).
CHECK_KEY = b"mintcache-check"
#: Seconds each network step of a check or stats may take.
STEP_TIMEOUT = 3.0

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Prometheus text format: one :class:`Sample` per line that is not a comment."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        samples.append(Sample(match.group(1), labels, value))
    return samples


def admin_address(endpoint: str, override: str | None) -> str | None:
    """The admin port to read: ``override``, else the endpoint's host with the next port (the
    server's default admin port is next to its gRPC port), else ``None``."""
    if override:
        return override.strip().removeprefix("http://").rstrip("/")
    authority = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = authority.rpartition(":")
    if not host or not port.isdigit() or int(port) >= 65535:
        return None
    return f"{host}:{int(port) + 1}"


def fetch_metrics(address: str, timeout: float = STEP_TIMEOUT) -> list[Sample]:
    """The admin port's ``/metrics``; raises :class:`OSError` (with the reason) when it
    cannot be read or holds no mintcache metrics."""
    url = f"http://{address}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise OSError(f"{url}: {reason}") from None
    samples = parse_metrics(text)
    if not any(s.name.startswith("mintcache_") for s in samples):
        raise OSError(f"{url} answered with no mintcache metrics (not a mintcache admin port?)")
    return samples


def server_build(samples: list[Sample]) -> str:
    """``mintcache 0.1.0 (release, x86_64-linux)`` from ``mintcache_build_info``."""
    for s in samples:
        if s.name == "mintcache_build_info":
            labels = s.labels
            extra = ", ".join(v for v in (labels.get("profile"), labels.get("target")) if v)
            return f"mintcache {labels.get('version', '?')}" + (f" ({extra})" if extra else "")
    return "mintcache (version not reported)"


def server_store(samples: list[Sample]) -> str:
    """Which store the server runs on: memcached (its servers) or the embedded store."""
    nodes = sorted(
        {
            s.labels["node"]
            for s in samples
            if s.name.startswith(("mintcache_pool_", "mintcache_backend_")) and "node" in s.labels
        }
    )
    if nodes:
        return f"memcached, {len(nodes)} server(s): {', '.join(nodes)}"
    if any(s.name.startswith("mintcache_embedded_") for s in samples):
        return "embedded in-process store (not shared between replicas)"
    return "unknown"


def _total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def stats_lines(samples: list[Sample]) -> list[str]:
    """The server's counters, summed up for reading."""
    lines = []
    requests = [s for s in samples if s.name == "mintcache_rpc_requests_total"]
    by_rpc: dict[str, float] = {}
    errors: dict[str, float] = {}
    for s in requests:
        by_rpc[s.labels.get("rpc", "?")] = by_rpc.get(s.labels.get("rpc", "?"), 0) + s.value
        code = s.labels.get("code", "OK")
        if code != "OK" and s.value:
            errors[code] = errors.get(code, 0) + s.value
    calls = ", ".join(f"{rpc} {int(n)}" for rpc, n in sorted(by_rpc.items()) if n)
    lines.append(f"calls: {int(sum(by_rpc.values()))}" + (f" ({calls})" if calls else ""))
    lines.append(
        "errors: " + (", ".join(f"{code} {int(n)}" for code, n in sorted(errors.items())) or "none")
    )
    outcomes = {
        name: _total(samples, "mintcache_mint_outcomes_total", outcome=name)
        for name in ("hit", "stale", "refresh", "miss", "pending")
    }
    reads = sum(outcomes.values())
    served = outcomes["hit"] + outcomes["stale"]
    ratio = f", hit ratio {100 * served / reads:.1f}%" if reads else ""
    lines.append(
        f"reads: {int(reads)} ("
        + ", ".join(f"{name.upper()} {int(n)}" for name, n in outcomes.items())
        + f"){ratio}"
    )
    lines.append(
        f"degraded reads: {int(_total(samples, 'mintcache_reads_degraded_total'))}, "
        f"shed calls: {int(_total(samples, 'mintcache_rpc_shed_total'))}"
    )
    nodes = sorted({s.labels["node"] for s in samples if "node" in s.labels})
    for node in nodes:
        node_errors = _total(samples, "mintcache_backend_errors_total", node=node)
        ejections = _total(samples, "mintcache_backend_ejections_total", node=node)
        lines.append(f"memcached {node}: {int(node_errors)} error(s), {int(ejections)} ejection(s)")
    return lines


@dataclass(slots=True)
class EndpointCheck:
    """The check of one endpoint: ``ok`` when its gRPC port answered health and the read."""

    endpoint: str
    ok: bool = False
    lines: list[str] = field(default_factory=list)


def check_endpoint(
    client: Client, endpoint: str, admin: str | None, with_admin: bool = True
) -> EndpointCheck:
    """Checks one endpoint with a client of that endpoint alone (the cache's TLS, token and key
    space, no retries, no circuit breaker)."""
    report = EndpointCheck(endpoint)
    try:
        health = client.health()
    except CacheError as error:
        report.lines.append(f"gRPC health: failed: {error}")
        return report
    report.lines.append(f"gRPC health: {health}")
    started = monotonic()
    try:
        lookup = client.get(CHECK_KEY, peek=True)
    except CacheError as error:
        report.lines.append(f"read in the key space: failed: {error}")
        return report
    took = (monotonic() - started) * 1000
    state = "memcached failed: the read was answered as a miss" if lookup.degraded else "ok"
    report.lines.append(f"read in the key space: {state} ({took:.1f} ms)")
    report.ok = health == "SERVING" and not lookup.degraded
    if with_admin:
        report.lines.extend(_admin_lines(admin))
    return report


def _admin_lines(admin: str | None) -> list[str]:
    if admin is None:
        return ["server: admin port unknown (pass --admin HOST:PORT for version and store)"]
    try:
        samples = fetch_metrics(admin)
    except OSError as error:
        return [
            f"server: admin port not readable ({error}); pass --admin HOST:PORT for the "
            "version and the store"
        ]
    return [f"server: {server_build(samples)} (admin {admin})", f"store: {server_store(samples)}"]


def endpoint_client(cache: Any, endpoint: str) -> Client:
    """A client of one endpoint of a MintCache backend: its TLS, token and key space, a short
    deadline, no retries, no circuit breaker (a check must see the endpoint as it is)."""
    defaults = cache._defaults
    timeout = STEP_TIMEOUT if defaults.timeout is None else min(defaults.timeout, STEP_TIMEOUT)
    return Client(
        endpoint,
        version=defaults.version,
        namespace=defaults.namespace,
        token=defaults.token,
        tls=cache._tls or None,
        timeout=timeout,
        retry=Backoff.NONE,
        breaker=None,
    )
