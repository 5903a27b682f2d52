"""What the clients do when time or the service misbehaves: deadlines that ignore a patched
``time.time`` (as Django's own suite patches it), and the circuit breaker against a service
that is down (connection refused) or hung (a real server stopped with SIGSTOP: it accepts,
and never answers), per endpoint, sync and asyncio; plus the circuit's state machine on its
own, with the time passed in."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from unittest import mock

import pytest

import mintcache
from harness import Memcached, Server, free_port, server_env, stop_process, wait_until
from mintcache import AsyncClient, Backoff, Breaker, CircuitOpen, Client, DeadlineExceeded
from mintcache._breaker import Circuit

WALL_2016 = 1468749600.0  # the value Django's test_cache_control_max_age gives time.time()


@pytest.fixture()
def own_server():
    """A server of its own over one memcached, that the test may stop (SIGSTOP) and resume."""
    memcached = Memcached()
    server = Server(server_env([memcached]))
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
        memcached.stop()


@contextmanager
def hung(server):
    """The server stops answering (its socket still accepts) for the block."""
    stop_process(server.process.pid)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def _silent_port():
    """A socket that accepts connections and never speaks."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    return silent


# --- deadlines against a patched wall clock ------------------------------------------------------


@pytest.mark.parametrize("wall", [WALL_2016, 4102444800.0])  # 2016, and 2100
def test_calls_work_with_time_time_patched(client, wall):
    """grpcio makes deadlines from time.time(): frozen in the past, every call used to die
    with DEADLINE_EXCEEDED (Django's test_cache_control_max_age); frozen in the future, calls
    had no working deadline."""
    with mock.patch.object(time, "time", return_value=wall):
        assert client.set("k", "v", 60) is True
        assert client.get("k").value == b"v"
        assert client.get_many(["k"])[0].value == b"v"


def test_async_calls_work_with_time_time_patched(endpoint, space):
    async def main():
        async with AsyncClient(endpoint, version=space, token=_token()) as c:
            with mock.patch.object(time, "time", return_value=WALL_2016):
                assert await c.set("k", "v", 60) is True
                return (await c.get("k")).value

    assert asyncio.run(main()) == b"v"


def test_deadline_holds_with_time_time_patched():
    """The deadline of a call nobody answers still ends it, on time, whatever time.time says."""
    with _silent_port() as silent:
        port = silent.getsockname()[1]
        with Client(f"127.0.0.1:{port}", timeout=0.3, retry=Backoff.NONE, breaker=None) as c:
            for wall in (WALL_2016, 4102444800.0):
                with mock.patch.object(time, "time", return_value=wall):
                    started = time.monotonic()
                    with pytest.raises(DeadlineExceeded):
                        c.get("k")
                    elapsed = time.monotonic() - started
                assert 0.25 <= elapsed < 3.0, elapsed

        async def main():
            async with AsyncClient(
                f"127.0.0.1:{port}", timeout=0.3, retry=Backoff.NONE, breaker=None
            ) as c:
                with mock.patch.object(time, "time", return_value=WALL_2016):
                    started = time.monotonic()
                    with pytest.raises(DeadlineExceeded):
                        await c.get("k")
                    return time.monotonic() - started

        elapsed = asyncio.run(main())
        assert 0.25 <= elapsed < 3.0, elapsed


def _token():
    from harness import CLIENT_TOKEN

    return CLIENT_TOKEN


# --- the circuit breaker against real failures -------------------------------------------------


def test_service_down_fails_fast_once_the_circuit_opens(caplog):
    """Connection refused: the first call fails after its few retries and opens the circuit;
    the calls after it fail at once (CircuitOpen, an Unavailable) without touching the
    network, and the log says so once."""
    caplog.set_level(logging.WARNING, logger="mintcache.circuit")
    dead = f"127.0.0.1:{free_port()}"
    with Client(dead, breaker=Breaker(failures=3, cool_off=30)) as c:
        with pytest.raises(mintcache.Unavailable) as first:
            c.get("k")
        assert not isinstance(first.value, CircuitOpen)
        assert c.circuits() == [(dead, "open")]
        started = time.monotonic()
        for _ in range(200):
            with pytest.raises(CircuitOpen) as fast:
                c.get("k")
        assert time.monotonic() - started < 2.0  # 200 calls, no waits: a few ms in all
        assert dead in str(fast.value) and "UNAVAILABLE" in str(fast.value)
        # Writes too: nothing is sent while the circuit is open.
        with pytest.raises(CircuitOpen):
            c.set("k", "v", 60)
    opened = [r for r in caplog.records if "open after" in r.getMessage()]
    assert len(opened) == 1 and dead in opened[0].getMessage()


def test_hung_service_opens_the_circuit_and_a_probe_closes_it(own_server, space, caplog):
    """A server that accepts and never answers (SIGSTOP): each call waits its deadline until
    `failures` of them opened the circuit; then calls fail at once; once the server answers
    again, the first call after the cool-off is the probe and closes the circuit."""
    caplog.set_level(logging.WARNING, logger="mintcache.circuit")
    breaker = Breaker(failures=2, cool_off=0.4, max_cool_off=0.4)
    with Client(own_server.addr, version=space, timeout=0.3, breaker=breaker) as c:
        c.set("k", "v", 60)
        with hung(own_server):
            for _ in range(2):
                with pytest.raises(DeadlineExceeded):
                    c.get("k")
            assert c.circuits()[0][1] == "open"
            started = time.monotonic()
            for _ in range(100):
                with pytest.raises(CircuitOpen):
                    c.get("k")
            assert time.monotonic() - started < 1.0  # a deadline each would be 30 s
        # Answering again. The first call after the cool-off probes and closes the circuit.
        assert wait_until(lambda: _answers(c), "the probe closed the circuit", limit=20) == b"v"
        assert c.circuits()[0][1] == "closed"
    messages = [r.getMessage() for r in caplog.records]
    assert any("open after 2 consecutive" in m and "DEADLINE_EXCEEDED" in m for m in messages)
    assert any("closed: it answered again" in m for m in messages)


def _answers(c):
    try:
        return c.get("k").value
    except (CircuitOpen, DeadlineExceeded):
        return None


def test_only_one_probe_goes_while_half_open(own_server, space):
    """When the cool-off ends, one caller probes (the endpoint's health, within the breaker's
    probe_timeout, not the call's whole deadline); concurrent calls fail at once meanwhile."""
    breaker = Breaker(failures=1, cool_off=0.2, max_cool_off=0.2, probe_timeout=1.0)
    with Client(own_server.addr, version=space, timeout=4.0, breaker=breaker) as c:
        with hung(own_server):
            with pytest.raises(DeadlineExceeded):
                c.with_options(timeout=0.3).get("k")  # a copy: same channels, same circuit
            time.sleep(0.3)  # the cool-off (at most 0.2 s) has ended: the next call probes
            results = []

            def call():
                started = time.monotonic()
                try:
                    c.get("k")
                    results.append(("ok", time.monotonic() - started))
                except mintcache.CacheError as error:
                    results.append((type(error).__name__, time.monotonic() - started))

            probe = threading.Thread(target=call)
            probe.start()
            wait_until(lambda: c.circuits()[0][1] == "half-open", "the probe is out", step=0.01)
            others = [threading.Thread(target=call) for _ in range(5)]
            for t in others:
                t.start()
            for t in others:
                t.join()
            probe.join()
    assert [name for name, _ in results] == ["CircuitOpen"] * 6, results
    others_took = [elapsed for _, elapsed in results[:5]]
    probe_took = results[5][1]
    assert max(others_took) < 0.8, results  # at once, while the probe waits
    assert 0.95 <= probe_took < 3.0, results  # the probe's 1 s, not the call's 4 s


def test_circuits_are_per_endpoint(cluster, space):
    """One dead endpoint of two: its circuit opens, every call goes to the live one."""
    dead = f"127.0.0.1:{free_port()}"
    with Client([dead, cluster.addr], version=space, token=_token()) as c:
        for i in range(20):
            assert c.set(f"k{i}", "v", 60) is True
            assert c.get(f"k{i}").value == b"v"
        assert dict(c.circuits()) == {dead: "open", cluster.addr: "closed"}


def test_async_client_breaker(own_server, space):
    """The asyncio client: the circuit opens on a hung server, calls fail at once, and once
    the server answers again the probe after the cool-off closes it."""
    breaker = Breaker(failures=2, cool_off=0.3, max_cool_off=0.3)

    async def main():
        async with AsyncClient(own_server.addr, version=space, timeout=0.3, breaker=breaker) as c:
            await c.set("k", "v", 60)
            with hung(own_server):
                for _ in range(2):
                    with pytest.raises(DeadlineExceeded):
                        await c.get("k")
                started = time.monotonic()
                for _ in range(100):
                    with pytest.raises(CircuitOpen):
                        await c.get("k")
                elapsed = time.monotonic() - started
                opened = c.circuits()
            deadline = time.monotonic() + 20
            while True:
                try:
                    value = (await c.get("k")).value
                    break
                except (CircuitOpen, DeadlineExceeded):
                    assert time.monotonic() < deadline, "the probe never closed the circuit"
                    await asyncio.sleep(0.05)
            return elapsed, opened, value, c.circuits()

    elapsed, opened, value, closed = asyncio.run(main())
    assert elapsed < 1.0 and opened == [(own_server.addr, "open")]
    assert value == b"v" and closed == [(own_server.addr, "closed")]


def test_clients_sharing_a_breaker_share_circuits(endpoint):
    """A Breaker keeps the circuit of each endpoint: given to several clients (the Django
    backend gives one to its sync and asyncio clients), they see one state."""
    dead = f"127.0.0.1:{free_port()}"
    breaker = Breaker(failures=1, cool_off=30)
    with Client(dead, breaker=breaker, retry=Backoff.NONE) as one:
        with pytest.raises(mintcache.Unavailable):
            one.get("k")

    async def other():
        async with AsyncClient(dead, breaker=breaker) as c:
            with pytest.raises(CircuitOpen):
                await c.get("k")

    asyncio.run(other())
    with Client(dead, retry=Backoff.NONE) as unshared:  # a breaker of its own: closed
        with pytest.raises(mintcache.Unavailable) as error:
            unshared.get("k")
        assert not isinstance(error.value, CircuitOpen)


def test_errors_from_the_server_do_not_open_the_circuit(client):
    """INVALID_ARGUMENT and the like are answers: the endpoint is alive."""
    for _ in range(10):
        with pytest.raises(mintcache.InvalidArgument):
            client.get("")
    assert client.circuits()[0][1] == "closed"


def test_no_breaker(endpoint):
    dead = f"127.0.0.1:{free_port()}"
    with Client(dead, breaker=None, retry=Backoff.NONE) as c:
        for _ in range(5):
            with pytest.raises(mintcache.Unavailable) as error:
                c.get("k")
            assert not isinstance(error.value, CircuitOpen)
        assert c.circuits() == [(dead, "none")]


# --- the circuit on its own ----------------------------------------------------------------------


def _circuit(**settings):
    return Breaker(**settings).circuit("e:1")


def test_circuit_opens_after_consecutive_failures_only():
    c = _circuit(failures=3, cool_off=10, max_cool_off=40)
    for now in (0.0, 1.0):
        c.record(c.allow(now), failed=True, now=now, error="UNAVAILABLE: x")
    c.record(c.allow(2.0), failed=False, now=2.0)  # an answer: the count starts again
    for now in (3.0, 4.0):
        c.record(c.allow(now), failed=True, now=now)
    assert c.state == "closed"
    c.record(c.allow(5.0), failed=True, now=5.0, error="DEADLINE_EXCEEDED: y")
    assert c.state == "open" and c.last_error == "DEADLINE_EXCEEDED: y"
    assert 5.0 <= c.retry_in(5.0) <= 10.0  # cool_off 10, jittered to half..all of it
    assert c.allow(5.1) is None


def test_circuit_probe_closes_or_reopens_with_a_longer_cool_off():
    c = _circuit(failures=1, cool_off=10, max_cool_off=25)
    c.record(c.allow(0.0), failed=True, now=0.0)
    opened_until = c.retry_in(0.0)
    probe = c.allow(opened_until)
    assert probe is not None and probe.probe and c.state == "half-open"
    assert c.allow(opened_until) is None  # one probe at a time
    c.record(probe, failed=True, now=opened_until)
    second = c.retry_in(opened_until)
    assert 10.0 <= second <= 20.0  # doubled: 20, jittered
    now = opened_until + second
    third_probe = c.allow(now)
    c.record(third_probe, failed=True, now=now)
    assert 12.5 <= c.retry_in(now) <= 25.0  # capped at max_cool_off
    now += c.retry_in(now)
    c.record(c.allow(now), failed=False, now=now)
    assert c.state == "closed" and c.allow(now) is not None


def test_circuit_abandoned_probe_frees_the_slot():
    c = _circuit(failures=1, cool_off=1, max_cool_off=1)
    c.record(c.allow(0.0), failed=True, now=0.0)
    probe = c.allow(1.0)
    assert probe is not None and c.allow(1.0) is None
    c.abandon(probe)
    assert c.allow(1.0) is not None  # the next caller probes at once


def test_circuit_probe_that_never_reports_is_replaced():
    c = _circuit(failures=1, cool_off=1, max_cool_off=5)
    c.record(c.allow(0.0), failed=True, now=0.0)
    assert c.allow(1.0) is not None
    assert c.allow(5.0) is None
    assert c.allow(6.5) is not None  # the first probe is gone: after max_cool_off, another


def test_breaker_settings_are_checked():
    for bad in (
        {"failures": 0},
        {"failures": 1.5},
        {"cool_off": 0},
        {"cool_off": 2, "max_cool_off": 1},
    ):
        with pytest.raises(ValueError):
            Breaker(**bad)
    assert isinstance(Breaker().circuit("a"), Circuit)
