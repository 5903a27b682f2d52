"""Waiting for a fill instead of polling, early refresh, the hot-key cache's bypass and the
lock's leases, from the Python clients and the Django backend, against real servers over real
memcached (tests/beyond.rs is the server's side of the same).

Waiting callers are counted where the server sees them: its ``/metrics`` (finished ``Get``
calls, and ``mintcache_rpc_in_flight``: calls it is holding). A compute function that must run
while every other caller waits blocks until the servers hold exactly that many reads, so no
test depends on a sleep being long enough."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from harness import Memcached, Server, server_env, wait_until
from mintcache import AsyncClient, Backoff, Client, LockNotOwnedError, Outcome, SetItem

#: Callers of one cold key in the concurrency tests.
CALLERS = 12


@pytest.fixture(scope="module")
def pair():
    """Two servers over one memcached: a waiter may be on the filler's replica or the other.
    The fill timeout is long, so that only a released lease hands a fill over."""
    memcached = Memcached()
    servers = []
    try:
        env = server_env([memcached], MINTCACHE_CACHE__FILL_TIMEOUT_SECONDS="60")
        servers = [Server(env), Server(env)]
        yield servers
    finally:
        for server in servers:
            server.stop()
        memcached.stop()


def gets(servers) -> int:
    return sum(s.rpc_count("Get") for s in servers)


def held(servers) -> int:
    """Calls the servers are answering now: here, reads held for a fill."""
    return int(sum(s.metric("mintcache_rpc_in_flight") for s in servers))


def until_held(servers, count: int) -> None:
    wait_until(lambda: held(servers) >= count, f"{count} reads held by the servers", step=0.01)


async def until_held_async(servers, count: int) -> None:
    deadline = time.monotonic() + 30
    while held(servers) < count:
        assert time.monotonic() < deadline, f"{count} reads held by the servers"
        await asyncio.sleep(0.01)


class Computations:
    """The compute functions of one test: counts them, and makes the first one wait until every
    other caller is held by a server, then return ``first`` (or raise it)."""

    def __init__(self, servers, waiters: int, first, then: bytes = b"") -> None:
        self.servers = servers
        self.waiters = waiters
        self.first = first
        self.then = then
        self.calls = 0
        self._lock = threading.Lock()

    def _turn(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls

    def __call__(self):
        if self._turn() > 1:
            return self.then
        until_held(self.servers, self.waiters)
        if isinstance(self.first, BaseException):
            raise self.first
        return self.first

    async def coroutine(self):
        if self._turn() > 1:
            return self.then
        await until_held_async(self.servers, self.waiters)
        if isinstance(self.first, BaseException):
            raise self.first
        return self.first


def run_threads(work, count: int) -> list:
    """``work(i)`` on ``count`` threads started together; their results (or exceptions)."""
    results: list = [None] * count
    start = threading.Barrier(count)

    def run(i):
        start.wait(timeout=30)
        try:
            results[i] = work(i)
        except Exception as error:  # the test looks at it
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


# --- get_or_compute waits for the fill ---------------------------------------------------------


def test_concurrent_callers_of_a_cold_key_compute_once_and_read_once(pair, space):
    """One caller computes; every other one waits in one read, on either replica, and gets the
    value when it lands. No client-side polling: exactly one Get per caller."""
    clients = [Client(s.addr, version=space) for s in pair]
    compute = Computations(pair, CALLERS - 1, b"the value")
    before = gets(pair)
    try:
        results = run_threads(
            lambda i: clients[i % 2].get_or_compute("cold", compute, 60), CALLERS
        )
    finally:
        for c in clients:
            c.close()
    assert results == [b"the value"] * CALLERS
    assert compute.calls == 1
    assert gets(pair) - before == CALLERS


def test_a_compute_that_raises_hands_the_fill_to_one_waiter(pair, space):
    """The filler's compute raises: its lease is released, exactly one waiter is elected and
    computes, the others get that value, and the filler's error is not a value."""
    clients = [Client(s.addr, version=space) for s in pair]
    compute = Computations(pair, CALLERS - 1, RuntimeError("backend down"), b"second")
    before = gets(pair)
    deletes = sum(s.rpc_count("Delete") for s in pair)
    try:
        results = run_threads(
            lambda i: clients[i % 2].get_or_compute("cold", compute, 60), CALLERS
        )
        reads = gets(pair) - before
        stored = clients[0].get("cold")
    finally:
        for c in clients:
            c.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and str(errors[0]) == "backend down"
    assert [r for r in results if not isinstance(r, Exception)] == [b"second"] * (CALLERS - 1)
    assert compute.calls == 2
    assert reads == CALLERS  # one read each, the elected waiter's included
    assert sum(s.rpc_count("Delete") for s in pair) == deletes + 1  # the release
    assert stored.outcome == Outcome.HIT and stored.value == b"second"


def test_async_callers_wait_and_a_failed_fill_passes_on(pair, space):
    async def main():
        clients = [AsyncClient(s.addr, version=space) for s in pair]
        try:
            compute = Computations(pair, CALLERS - 1, b"async value")
            before = gets(pair)
            values = await asyncio.gather(
                *(
                    clients[i % 2].get_or_compute("cold", compute.coroutine, 60)
                    for i in range(CALLERS)
                )
            )
            assert values == [b"async value"] * CALLERS
            assert compute.calls == 1
            assert gets(pair) - before == CALLERS

            failing = Computations(pair, CALLERS - 1, ValueError("no"), b"taken over")
            before = gets(pair)
            outcomes = await asyncio.gather(
                *(
                    clients[i % 2].get_or_compute("cold2", failing.coroutine, 60)
                    for i in range(CALLERS)
                ),
                return_exceptions=True,
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(errors) == 1 and isinstance(errors[0], ValueError)
            assert [o for o in outcomes if not isinstance(o, BaseException)] == [
                b"taken over"
            ] * (CALLERS - 1)
            assert failing.calls == 2
            assert gets(pair) - before == CALLERS
        finally:
            for c in clients:
                await c.close()

    asyncio.run(main())


def test_a_waiter_reads_again_when_its_hold_ends(pair, space):
    """A read held until its deadline answers PENDING (not DEADLINE_EXCEEDED); the waiter reads
    again within its budget, and gets the value once it lands."""
    a, b = pair
    with Client(a.addr, version=space, timeout=0.5) as short, Client(b.addr, version=space) as c:
        filler = c.get("slow", lease_on_miss=True)
        assert filler.outcome == Outcome.MISS and filler.lease
        started = time.monotonic()
        lookup = short.get("slow", lease_on_miss=True, wait=10)
        assert lookup.outcome == Outcome.PENDING
        assert time.monotonic() - started >= 0.3  # held (and answered, within its deadline)
        before = gets(pair)
        result = {}
        thread = threading.Thread(
            target=lambda: result.update(value=short.get_or_compute("slow", lambda: b"x", 60))
        )
        thread.start()
        # Its first read is held and ends PENDING; the next one is held again.
        wait_until(lambda: gets(pair) - before >= 2 and held(pair) == 1, "a second held read")
        assert c.set("slow", "filled", 60, lease=filler.lease) is True
        thread.join(timeout=30)
        assert result["value"] == b"filled"
        reads = gets(pair) - before
        assert 2 <= reads <= 4  # a read per half second, not a poll every few milliseconds


def test_without_waiting_a_caller_polls_and_then_computes(pair, space):
    """``wait=0``: reads are never held; the pending schedule paces them, and after its last
    read the caller computes and stores without a lease (as before waiting existed)."""
    with Client(pair[0].addr, version=space, pending=Backoff(4, 0.01, 0.02)) as c:
        assert c.get("k", lease_on_miss=True).outcome == Outcome.MISS
        before = gets(pair)
        assert c.get_or_compute("k", lambda: b"mine", 60, wait=0) == b"mine"
        assert gets(pair) - before == 4
        assert c.get("k").value == b"mine"


def test_get_or_compute_reports_its_recompute_time(client, monkeypatch):
    seen = {}
    original = client.set

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(client, "set", spy)

    def compute():
        time.sleep(0.05)
        return b"v"

    assert client.get_or_compute("timed", compute, 60) == b"v"
    assert 50 <= seen["recompute_ms"] < 5000
    assert seen["lease"]  # the MISS's lease


def test_a_failed_fill_is_released_with_its_lease(client):
    """The lease of a MISS deletes only what it names: released by a filler that gives up, it
    leaves the key to the next caller; an outdated one removes nothing."""
    first = client.get("k", lease_on_miss=True)
    assert first.outcome == Outcome.MISS and first.lease
    assert client.get("k", lease_on_miss=True).outcome == Outcome.PENDING

    with pytest.raises(ZeroDivisionError):
        client.get_or_compute("k2", lambda: 1 / 0, 60)
    assert client.get("k2", lease_on_miss=True).outcome == Outcome.MISS  # not PENDING

    assert client.delete("k", lease=first.lease) is True
    second = client.get("k", lease_on_miss=True)
    assert second.outcome == Outcome.MISS and second.lease
    assert client.set("k", "v", 60, lease=second.lease) is True
    assert client.delete("k", lease=first.lease) is False
    assert client.get("k").value == b"v"


# --- Django's get_or_set ---------------------------------------------------------------------


def _backend(pair, space):
    from mintcache.django import MintCache

    return MintCache(",".join(s.addr for s in pair), {"OPTIONS": {"APP_VERSION": space}})


def test_django_get_or_set_waits_for_the_fill(django_env, pair, space):
    cache = _backend(pair, space)
    compute = Computations(pair, CALLERS - 1, {"computed": 1})
    before = gets(pair)
    results = run_threads(lambda i: cache.get_or_set("page", compute, 60), CALLERS)
    assert results == [{"computed": 1}] * CALLERS
    assert compute.calls == 1
    assert gets(pair) - before == CALLERS


def test_django_get_or_set_failure_hands_the_fill_over(django_env, pair, space):
    cache = _backend(pair, space)
    compute = Computations(pair, CALLERS - 1, KeyError("gone"), "second")
    before = gets(pair)
    results = run_threads(lambda i: cache.get_or_set("page", compute, 60), CALLERS)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], KeyError)
    assert [r for r in results if not isinstance(r, Exception)] == ["second"] * (CALLERS - 1)
    assert compute.calls == 2
    assert gets(pair) - before == CALLERS
    assert cache.get("page") == "second"


def test_django_get_or_set_failure_is_not_hidden_by_ignore_exceptions(django_env, pair, space):
    """The caller's own exception propagates even with IGNORE_EXCEPTIONS (which hides only the
    service's failures), after the lease is released."""
    from mintcache import Unavailable
    from mintcache.django import MintCache

    cache = MintCache(
        pair[0].addr, {"OPTIONS": {"APP_VERSION": space, "IGNORE_EXCEPTIONS": True}}
    )

    def failing():
        raise Unavailable("the caller's own service is down")

    with pytest.raises(Unavailable, match="caller's own"):
        cache.get_or_set("k", failing, 60)
    with Client(pair[0].addr, version=space) as c:
        assert c.get(cache.make_key("k"), lease_on_miss=True).outcome == Outcome.MISS

    async def main():
        with pytest.raises(Unavailable, match="caller's own"):
            await cache.aget_or_set("a", failing, 60)
        assert await cache.aget_or_set("a", lambda: "after", 60) == "after"

    asyncio.run(main())


def test_django_early_refresh_beta_option(django_env, pair, space):
    from django.core.exceptions import ImproperlyConfigured

    from mintcache.django import MintCache

    for bad in (-1, "1", True, float("nan"), 1001):
        with pytest.raises(ImproperlyConfigured, match="EARLY_REFRESH_BETA"):
            MintCache(pair[0].addr, {"OPTIONS": {"EARLY_REFRESH_BETA": bad}})
    eager = MintCache(
        pair[0].addr, {"OPTIONS": {"APP_VERSION": space, "EARLY_REFRESH_BETA": 1000}}
    )
    never = MintCache(pair[0].addr, {"OPTIONS": {"APP_VERSION": space, "EARLY_REFRESH_BETA": 0}})
    with Client(pair[0].addr, version=space) as c:
        # A fresh value whose recomputation is known to take ~46 days: with β = 1000 a read
        # is all but certain to be elected early; with β = 0 never.
        key = eager.make_key("early")
        c.set(key, b"raw", 60, recompute_ms=4_000_000_000)
        assert never.get("early") == b"raw"
        assert eager.get("early") is None  # the elected reader recomputes: a miss
        assert never.get("early") == b"raw"


# --- early refresh and consistency -------------------------------------------------------------


SLOW = 4_000_000_000  # recompute_ms: about 46 days, so that β = 1000 elects at once


def test_early_refresh_beta_per_call_and_per_client(client, endpoint, space):
    client.set("a", "v", 60, recompute_ms=SLOW)
    assert client.get("a", early_refresh_beta=0).outcome == Outcome.HIT
    early = client.get("a", early_refresh_beta=1000)
    assert early.outcome == Outcome.REFRESH and early.value == b"v" and early.ttl_seconds > 0
    # One reader per period: the next one is a hit.
    assert client.get("a", early_refresh_beta=1000).outcome == Outcome.HIT

    with Client(endpoint, version=space, early_refresh_beta=1000) as eager:
        eager.set_many([SetItem("b", "v", 60, recompute_ms=SLOW), SetItem("c", "v", 60)])
        assert eager.with_options(early_refresh_beta=0).get("b").outcome == Outcome.HIT
        assert eager.get("b").outcome == Outcome.REFRESH
        eager.set("d", "v", 60, recompute_ms=SLOW)
        found = {lookup.key: lookup.outcome for lookup in eager.get_many(["c", "d"])}
        # "c" has no recompute time: nothing to draw with.
        assert found == {b"c": Outcome.HIT, b"d": Outcome.REFRESH}
        assert eager.add("e", "v", 60, recompute_ms=SLOW)
        assert eager.get("e").outcome == Outcome.REFRESH

    async def main():
        async with AsyncClient(endpoint, version=space) as c:
            await c.set("f", "v", 60, recompute_ms=SLOW)
            assert (await c.get("f", early_refresh_beta=0)).outcome == Outcome.HIT
            assert (await c.get("f", early_refresh_beta=1000)).outcome == Outcome.REFRESH
            await c.set("g", "v", 60, recompute_ms=SLOW)
            many = await c.get_many(["g"], early_refresh_beta=1000)
            assert many[0].outcome == Outcome.REFRESH

    asyncio.run(main())


def test_bad_options_are_refused_before_any_call(endpoint):
    for bad in (-0.5, 1000.5, float("inf"), "1", True):
        with pytest.raises(ValueError, match="early_refresh_beta"):
            Client(endpoint, early_refresh_beta=bad)
    with pytest.raises(ValueError, match="consistency"):
        Client(endpoint, consistency="eventual")
    with Client(endpoint) as c:
        with pytest.raises(ValueError, match="consistency"):
            c.get("k", consistency="STRONGER")
        with pytest.raises(ValueError, match="wait"):
            c.get("k", wait=-1)
        with pytest.raises(ValueError, match="recompute_ms"):
            c.set("k", "v", recompute_ms=-1)
        with pytest.raises(ValueError, match="wait"):
            c.get_or_compute("k", lambda: b"", wait=-1)


@pytest.fixture(scope="module")
def hot_pair():
    """Two servers over one memcached with the hot-key cache on, bounded at a minute."""
    memcached = Memcached()
    servers = []
    try:
        env = server_env([memcached], MINTCACHE_HOT_CACHE__MAX_STALENESS_MS="60000")
        servers = [Server(env), Server(env)]
        yield servers
    finally:
        for server in servers:
            server.stop()
        memcached.stop()


def test_strong_consistency_reads_past_the_hot_key_cache(hot_pair, space):
    a, b = hot_pair
    with Client(a.addr, version=space) as ca, Client(b.addr, version=space) as cb:
        ca.set("viral", "v1", 300)
        hits = a.metric("mintcache_hot_cache_hits_total")
        # Read until replica a answers it from its own memory.
        wait_until(
            lambda: ca.get("viral").value == b"v1"
            and a.metric("mintcache_hot_cache_hits_total") > hits,
            "the key served by a's hot-key cache",
            step=0.01,
        )
        cb.set("viral", "v2", 300)  # through the other replica: a keeps its copy
        assert ca.get("viral").value == b"v1"
        assert ca.get("viral", consistency="strong").value == b"v2"
        strong = ca.with_options(consistency="strong")
        assert strong.get("viral").value == b"v2"
        assert strong.get("viral", consistency="default").value == b"v1"
        with Client(a.addr, version=space, consistency="strong") as cs:
            assert cs.get("viral").value == b"v2"
            assert cs.get_or_compute("viral", lambda: b"unused", 60) == b"v2"

        async def main():
            async with AsyncClient(a.addr, version=space, consistency="strong") as c:
                assert (await c.get("viral")).value == b"v2"
                assert (await c.get("viral", consistency="default")).value == b"v1"

        asyncio.run(main())


# --- the lock's lease ---------------------------------------------------------------------------


def test_lock_release_is_one_delete_with_its_lease(cluster, client):
    lock = client.lock("job", timeout=30)
    assert lock.acquire()
    assert lock._lease  # Add answered with the lease of what it stored
    reads = cluster.rpc_count("Get")
    deletes = cluster.rpc_count("Delete")
    lock.release()
    # One Delete, no read: the server compares and deletes in one step.
    wait_until(lambda: cluster.rpc_count("Delete") == deletes + 1, "the release counted")
    assert cluster.rpc_count("Get") == reads
    assert client.get("job", peek=True).outcome == Outcome.MISS  # the key is free
    assert client.lock("job", timeout=30).acquire(blocking=False)


def test_a_lock_taken_over_cannot_be_released_by_its_former_holder(client):
    """The first holder's lock expired (here: it was removed) and another holder took it: the
    first holder's release fails and leaves the other's lock in place."""
    first = client.lock("job", timeout=30)
    assert first.acquire()
    client.delete("job")  # as if it expired
    second = client.lock("job", timeout=30)
    assert second.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError):
        first.release()
    assert not first.owned() and second.owned()
    assert client.get("job", peek=True).value == second.token
    second.release()
    assert not second.locked()


def test_async_lock_leases(endpoint, space):
    async def main():
        async with AsyncClient(endpoint, version=space) as c:
            first = c.lock("job", timeout=30)
            assert await first.aacquire()
            assert first._lease
            await c.delete("job")
            second = c.lock("job", timeout=30)
            assert await second.aacquire(blocking=False)
            with pytest.raises(LockNotOwnedError):
                await first.arelease()
            assert await second.aowned()
            await second.arelease()
            assert (await c.get("job", peek=True)).outcome == Outcome.MISS

    asyncio.run(main())


def test_lock_without_a_lease_falls_back_to_read_then_delete(client):
    """A server that hands out no lease for Add (older than them): the release reads the key and
    deletes it only if it still holds this holder's token."""
    lock = client.lock("old", timeout=30)
    assert lock.acquire()
    lock._lease = None  # what such a server's answer leaves
    lock.release()
    assert not lock.locked()
    stolen = client.lock("old", timeout=30)
    assert stolen.acquire()
    stolen._lease = None
    client.delete("old")
    assert client.lock("old", timeout=30).acquire()
    with pytest.raises(LockNotOwnedError):
        stolen.release()
    assert client.lock("old").locked()
