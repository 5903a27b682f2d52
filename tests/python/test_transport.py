"""The transports under the clients (mintcache._transport): which one a client gets, that the
native one (the Rust extension, on the mintcache-client crate) answers exactly as grpcio does,
maps failures to the same errors, releases the GIL while it waits, and cancels cleanly under
asyncio. The rest of the suite runs once per transport (client/python/check.sh sets
MINTCACHE_TRANSPORT); these tests use both explicitly, so they need the extension built."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

import mintcache
from harness import CLIENT_TOKEN, free_port
from mintcache import (
    AsyncClient,
    Backoff,
    Client,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Outcome,
    SetItem,
    Unauthenticated,
    Unavailable,
)
from mintcache._transport import choose

TRANSPORTS = ("native", "grpcio")


def test_the_extension_is_built_and_the_default():
    from mintcache import _native

    assert mintcache.TRANSPORT == "native"
    assert {"Channel", "Metadata", "RpcError"} <= set(dir(_native))


def test_clients_follow_the_environment_and_their_argument(endpoint, monkeypatch):
    wanted = os.environ.get("MINTCACHE_TRANSPORT") or "native"
    with Client(endpoint) as c:
        assert c.transport == (wanted if wanted != "auto" else "native")
    for name in TRANSPORTS:
        with Client(endpoint, transport=name) as c:
            assert c.transport == name and name in repr(c)
        assert AsyncClient(endpoint, transport=name).transport == name
    monkeypatch.setenv("MINTCACHE_TRANSPORT", "grpcio")
    with Client(endpoint) as c:
        assert c.transport == "grpcio"


def test_choose(monkeypatch):
    monkeypatch.delenv("MINTCACHE_TRANSPORT", raising=False)
    assert choose(None, ["127.0.0.1:1", "dns:///svc.local:50051", "[::1]:5"]) == "native"
    assert choose("auto", ["127.0.0.1:1"]) == "native"
    assert choose("grpcio", ["127.0.0.1:1"]) == "grpcio"
    assert choose("NATIVE", ["127.0.0.1:1"]) == "native"
    # Targets only grpcio takes: auto falls back, native refuses.
    assert choose("auto", ["unix:/tmp/mintcache.sock"]) == "grpcio"
    assert choose(None, ["127.0.0.1:1", "ipv4:127.0.0.1:1,127.0.0.2:1"]) == "grpcio"
    with pytest.raises(ValueError, match="unix"):
        choose("native", ["unix:/tmp/mintcache.sock"])
    with pytest.raises(ValueError, match="unknown transport"):
        choose("http2", ["127.0.0.1:1"])
    monkeypatch.setenv("MINTCACHE_TRANSPORT", "grpcio")
    assert choose(None, ["127.0.0.1:1"]) == "grpcio"
    assert choose("native", ["127.0.0.1:1"]) == "native"


def _answers(c: Client) -> list:
    """Every kind of call, and what it answered, with the parts that vary per run left out."""
    out = []
    out.append(c.set("k", b"v1", 60, flags=7))
    hit = c.get("k")
    out.append((hit.outcome, hit.value, hit.flags, hit.lease, hit.degraded, hit.counter))
    out.append(c.get("absent").outcome)
    out.append(c.add("k", b"other", 60))
    out.append(c.add("added", b"a", 60))
    out.append(c.touch("k", 120))
    out.append(c.invalidate("k"))
    won = c.get("k")
    out.append((won.outcome, won.value, won.lease is not None))
    out.append(c.set("k", b"v2", 60, lease=won.lease))
    out.append(c.get("k", peek=True).value)
    out.append(c.increment("n", initial=5))
    out.append(c.increment("n", 3))
    out.append([(r.ok, r.error) for r in c.set_many([SetItem("a", b"1"), SetItem("b", b"2")])])
    out.append([(x.key, x.outcome, x.value) for x in c.get_many(["a", "b", "zz"])])
    out.append([(r.key, r.ok) for r in c.delete_many(["a", "zz"])])
    out.append(c.delete("k"))
    out.append(c.health())
    out.append(c.get_or_compute("computed", lambda: b"made", 60))
    out.append(c.flush())
    return out


def test_both_transports_answer_alike(endpoint, space):
    answers = {}
    for name in TRANSPORTS:
        with Client(endpoint, version=f"{space}-{name}", token=CLIENT_TOKEN, transport=name) as c:
            answers[name] = _answers(c)
    assert answers["native"] == answers["grpcio"]
    assert answers["native"][1] == (Outcome.HIT, b"v1", 7, None, False, False)
    assert answers["native"][7] == (Outcome.REFRESH, b"v1", True)


def test_both_transports_raise_alike(endpoint, space):
    for name in TRANSPORTS:
        with Client(endpoint, version=space, token=CLIENT_TOKEN, transport=name) as c:
            with pytest.raises(NotFound, match="initial="):
                c.increment("no-counter")
            c.set("text", b"not a number", 60)
            with pytest.raises(FailedPrecondition):
                c.increment("text")
            with pytest.raises(InvalidArgument) as empty:
                c.get(b"")
            assert empty.value.details
        with Client(endpoint, version=space, token="wrong-token", transport=name) as bad:
            with pytest.raises(Unauthenticated):
                bad.get("k")
        with Client(
            f"127.0.0.1:{free_port()}", transport=name, retry=Backoff(2, 0.01, 0.02)
        ) as nowhere:
            with pytest.raises(Unavailable):
                nowhere.get("k")


def test_native_writes_go_to_the_next_endpoint_when_a_connection_is_refused(endpoint, space):
    """A refused connection cannot have applied a write: the native transport says so, and
    the write is sent to the next endpoint (an increment counted once)."""
    dead = f"127.0.0.1:{free_port()}"
    with Client(
        [dead, endpoint],
        version=space,
        token=CLIENT_TOKEN,
        transport="native",
        retry=Backoff(4, 0.01, 0.05),
        breaker=None,
    ) as c:
        assert c.increment("once", initial=0) == 0
        for _ in range(6):
            c.increment("once")
        assert c.get("once").value == b"6"


def _silent_port() -> socket.socket:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    return silent


def test_native_releases_the_gil_while_a_call_waits():
    """While one thread's call waits for a server that never answers, other Python threads
    run: the count below stays at 0 if the call held the GIL."""
    with _silent_port() as silent:
        port = silent.getsockname()[1]
        with Client(
            f"127.0.0.1:{port}", transport="native", timeout=1.0, retry=Backoff.NONE, breaker=None
        ) as c:
            failed = []

            def call() -> None:
                try:
                    c.get("k")
                except DeadlineExceeded as error:
                    failed.append(error)

            waiting = threading.Thread(target=call)
            waiting.start()
            time.sleep(0.1)  # the call is in flight
            counted = 0
            while waiting.is_alive():
                counted += 1
            waiting.join()
            assert failed, "the call to a silent server ended without DeadlineExceeded"
            assert counted > 10_000


def test_native_calls_from_many_threads(endpoint, space):
    with Client(endpoint, version=space, token=CLIENT_TOKEN, transport="native") as c:
        c.set_many([SetItem(f"k{i}", str(i)) for i in range(8)])
        seen: dict[int, list[bytes]] = {}

        def reader(i: int) -> None:
            seen[i] = [c.get(f"k{i}").value for _ in range(50)]

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == {i: [str(i).encode()] * 50 for i in range(8)}


def test_native_asyncio_concurrency_and_cancellation(endpoint, space):
    async def main():
        async with AsyncClient(
            endpoint, version=space, token=CLIENT_TOKEN, transport="native"
        ) as c:
            assert c.transport == "native"
            await c.set_many([SetItem(f"k{i}", str(i)) for i in range(20)])
            values = await asyncio.gather(*(c.get(f"k{i}") for i in range(20)))
            assert [v.value for v in values] == [str(i).encode() for i in range(20)]
        with _silent_port() as silent:
            port = silent.getsockname()[1]
            async with AsyncClient(
                f"127.0.0.1:{port}",
                transport="native",
                timeout=5,
                retry=Backoff.NONE,
                breaker=None,
            ) as hung:
                started = time.monotonic()
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(hung.get("k"), 0.2)
                assert time.monotonic() - started < 2
        # The loop is fine after the cancelled call.
        async with AsyncClient(endpoint, version=space, transport="native") as c:
            return (await c.get("k3")).value

    assert asyncio.run(main()) == b"3"
