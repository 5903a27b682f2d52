"""The asyncio client against a real server: every call, get_or_compute with sync and async
compute functions, concurrency within one loop, and the one-loop rule of grpc.aio channels."""

from __future__ import annotations

import asyncio

import pytest

from harness import ADMIN_TOKEN
from mintcache import (
    AsyncClient,
    Backoff,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Outcome,
    PermissionDenied,
    SetItem,
    Unavailable,
)


def run(coro):
    return asyncio.run(coro)


def test_every_call(endpoint, space):
    async def main():
        async with AsyncClient(endpoint, version=space) as c:
            assert await c.set("k", "v", 60) is True
            hit = await c.get("k")
            assert hit.outcome == Outcome.HIT and hit.value == b"v"
            assert await c.add("k", "other", 60) is False
            assert await c.add("k2", b"\x00\xff", 60) is True
            assert await c.touch("k", 120) is True
            assert await c.invalidate("k") is True
            assert (await c.get("k")).outcome == Outcome.REFRESH
            assert (await c.get("k")).outcome == Outcome.STALE
            with pytest.raises(NotFound):
                await c.increment("n")
            assert await c.increment("n", initial=3) == 3
            assert await c.increment("n", 2) == 5
            with pytest.raises(FailedPrecondition):
                await c.increment("k2")
            results = await c.set_many([SetItem("a", "1", 60), SetItem("", "x", 60)])
            assert results[0].ok and results[1].error is not None
            lookups = await c.get_many(["a", "k2", "absent"])
            assert [lk.outcome for lk in lookups] == [
                Outcome.HIT,
                Outcome.HIT,
                Outcome.MISS,
            ]
            assert lookups[1].value == b"\x00\xff"
            deleted = await c.delete_many(["a", "absent"])
            assert [d.ok for d in deleted] == [True, False]
            assert await c.delete("k2") is True
            with pytest.raises(InvalidArgument):
                await c.get("")
            with pytest.raises(PermissionDenied):
                await c.with_options(debug="off").get("k")

    run(main())


def test_new_api_fields(endpoint, space):
    async def main():
        async with AsyncClient(endpoint, version=space, token=ADMIN_TOKEN) as c:
            assert await c.set("forever", "v", None, grace=None) is True
            assert (await c.get("forever")).no_expiry
            assert await c.set("n", b"1", 60, counter=True) is True
            assert await c.increment("n") == 2
            # Without a grace period there is no stale phase: invalidating removes the value.
            await c.invalidate("forever")
            assert (await c.get("forever", peek=True)).outcome == Outcome.MISS
            # With one, the value stays servable as STALE, and a peek does not take the
            # refresh election.
            assert await c.set("graceful", "v", None, grace=60) is True
            await c.invalidate("graceful")
            assert (await c.get("graceful", peek=True)).outcome == Outcome.STALE
            assert (await c.get("graceful")).outcome == Outcome.REFRESH
            assert await c.with_options(debug="off").flush() is False
            assert (await c.get("n")).value == b"2"
            assert await c.flush() is True
            assert (await c.get("n")).outcome == Outcome.MISS

    run(main())


def test_get_or_compute(endpoint, space):
    async def main():
        async with AsyncClient(endpoint, version=space) as c:
            calls = []

            async def compute_async():
                calls.append("async")
                await asyncio.sleep(0)
                return b"from a coroutine"

            assert await c.get_or_compute("a", compute_async, 60) == b"from a coroutine"
            assert await c.get_or_compute("a", compute_async, 60) == b"from a coroutine"
            assert await c.get_or_compute("s", lambda: "from a function", 60) == b"from a function"
            assert calls == ["async"]

            # Twenty tasks at once on one key: cold-miss protection, one computation.
            computed = []

            async def slow():
                computed.append(1)
                await asyncio.sleep(0.05)
                return b"hot"

            results = await asyncio.gather(
                *(c.get_or_compute("hot", slow, 60, lease_on_miss=True) for _ in range(20))
            )
            assert results == [b"hot"] * 20
            assert len(computed) == 1

    run(main())


def test_a_client_belongs_to_one_event_loop(endpoint, space):
    client = AsyncClient(endpoint, version=space)

    async def use():
        return await client.set("k", "v", 60)

    assert run(use()) is True
    with pytest.raises(RuntimeError, match="event loop"):
        run(use())

    async def fresh():
        async with AsyncClient(endpoint, version=space) as c:
            return (await c.get("k")).value

    assert run(fresh()) == b"v"


def test_retries_and_errors(endpoint, space):
    from harness import free_port

    async def main():
        dead = f"127.0.0.1:{free_port()}"
        async with AsyncClient([dead, endpoint], version=space, retry=Backoff(4, 0.01, 0.05)) as c:
            assert await c.increment("once", initial=0) == 0
            for _ in range(4):
                await c.increment("once")
            assert (await c.get("once")).value == b"4"
        async with AsyncClient(dead, retry=Backoff(2, 0.01, 0.02)) as nowhere:
            with pytest.raises(Unavailable):
                await nowhere.get("k")

    run(main())
