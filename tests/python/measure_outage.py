"""What a Django site sees from MintCache when the service is down or hung, measured (the
figures in docs/OPERATIONS.md, "Python and Django clients when the service fails"):

- down (connection refused): 1,000 ``cache.get`` in a row, IGNORE_EXCEPTIONS off and on, and
  for comparison 20 calls of a client without circuit breaker;
- hung (a real server stopped with SIGSTOP: it accepts connections and never answers): three
  "requests" in a row, each making 30 cache calls (10 get, 10 set, 10 get_or_set), with
  IGNORE_EXCEPTIONS on and CALL_TIMEOUT 5 (the default) and 1; then, after the circuit's
  cool-off, a request that carries the probe.

    MINTCACHE_SERVER_BIN=target/debug/mintcache-server \\
        target/python/test/bin/python tests/python/measure_outage.py

Not a test: it prints a table and asserts nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(USE_TZ=True)
django.setup()
logging.disable(logging.WARNING)  # the breaker's and IGNORE_EXCEPTIONS's lines, not timed here

import mintcache  # noqa: E402
from harness import Memcached, Server, free_port, server_env  # noqa: E402
from mintcache import Client  # noqa: E402
from mintcache.django import MintCache  # noqa: E402


def backend(location: str, **options) -> MintCache:
    return MintCache(location, {"OPTIONS": {"APP_VERSION": "outage", **options}})


def timed_page(cache: MintCache) -> float:
    started = time.monotonic()
    page(cache)
    return time.monotonic() - started


def gets(cache: MintCache, count: int) -> tuple[float, float]:
    """Total seconds of ``count`` gets, and the first one's."""
    first = 0.0
    started = time.monotonic()
    for i in range(count):
        t = time.monotonic()
        try:
            cache.get("k")
        except mintcache.CacheError:
            pass
        if i == 0:
            first = time.monotonic() - t
    return time.monotonic() - started, first


def page(cache: MintCache) -> None:
    """One request's cache calls: 10 reads, 10 writes, 10 get_or_set."""
    for i in range(10):
        cache.get(f"fragment:{i}")
    for i in range(10):
        cache.set(f"fragment:{i}", "html")
    for i in range(10):
        cache.get_or_set(f"query:{i}", lambda: "rows from the database")


def down() -> None:
    print("## down: connection refused, 1,000 cache.get in a row\n")
    print("| configuration | first call | 1,000 calls in all |")
    print("|---|---:|---:|")
    for ignore in (False, True):
        location = f"127.0.0.1:{free_port()}"
        total, first = gets(backend(location, IGNORE_EXCEPTIONS=ignore), 1000)
        print(
            f"| IGNORE_EXCEPTIONS {ignore} | {first * 1000:.0f} ms | {total * 1000:.0f} ms |"
        )
    location = f"127.0.0.1:{free_port()}"
    with Client(location, breaker=None) as client:
        each = []
        for _ in range(20):
            t = time.monotonic()
            try:
                client.get("k")
            except mintcache.CacheError:
                pass
            each.append(time.monotonic() - t)
    print(
        f"| no circuit breaker (Client(breaker=None)), 20 calls | median "
        f"{statistics.median(each) * 1000:.0f} ms per call | "
        f"(x 1,000 = {statistics.median(each) * 1000:.0f} s) |"
    )
    print()


def hung() -> None:
    print("## hung: the server accepts and never answers; requests of 30 cache calls\n")
    print("| CALL_TIMEOUT | 1st request | 2nd | 3rd | after the cool-off (the probe) |")
    print("|---:|---:|---:|---:|---:|")
    for call_timeout in (5.0, 1.0):
        memcached = Memcached()
        server = Server(server_env([memcached]))
        try:
            cache = backend(server.addr, IGNORE_EXCEPTIONS=True, CALL_TIMEOUT=call_timeout)
            page(cache)  # connected and warm
            os.kill(server.process.pid, signal.SIGSTOP)
            requests = [timed_page(cache) for _ in range(3)]
            circuit = cache._base()._channels.endpoints.circuits[0]
            time.sleep(circuit.retry_in(time.monotonic()) + 0.05)
            probe = timed_page(cache)
            cells = " | ".join(f"{t:.2f} s" for t in requests)
            print(f"| {call_timeout:.0f} s | {cells} | {probe:.2f} s |")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
            server.stop()
            memcached.stop()
    print()


if __name__ == "__main__":
    down()
    hung()
