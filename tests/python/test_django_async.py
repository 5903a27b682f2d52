"""Django's async cache API on MintCache: every a-method runs natively on grpc.aio (one client
per event loop), with the same results as the sync API."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from harness import raw_client
from mintcache.django import connections


def run(coro):
    return asyncio.run(coro)


def test_async_methods(cache):
    async def main():
        await cache.aset("key", "value")
        assert await cache.aget("key") == "value"
        assert await cache.aget("missing", "dflt") == "dflt"
        assert await cache.aadd("key", "other") is False
        assert await cache.aadd("added", [1, 2]) is True
        assert await cache.ahas_key("added") is True
        assert await cache.ahas_key("missing") is False
        assert await cache.atouch("added", None) is True
        assert await cache.atouch("missing", 10) is False
        assert await cache.aset_many({"a": 1, "b": "two", "c": None}) == []
        assert await cache.aget_many(["a", "b", "c", "d"]) == {
            "a": 1,
            "b": "two",
            "c": None,
        }
        assert await cache.aincr("a", 41) == 42
        assert await cache.adecr("a", 2) == 40
        with pytest.raises(ValueError):
            await cache.aincr("missing")
        with pytest.raises(TypeError):
            await cache.aincr("c")
        assert await cache.adelete("a") is True
        assert await cache.adelete("a") is False
        await cache.adelete_many(["b", "c"])
        assert await cache.aget_many(["b", "c"]) == {}
        assert await cache.aget_or_set("gos", 7) == 7
        assert await cache.aget_or_set("gos", 8) == 7

        async def coroutine_default():
            return "from a coroutine"

        assert await cache.aget_or_set("gos2", coroutine_default) == "from a coroutine"
        await cache.aset("v", "versioned", version=3)
        assert await cache.aincr_version("v", version=3) == 4
        assert await cache.aget("v", version=4) == "versioned"
        assert await cache.adecr_version("v", version=4) == 3
        with pytest.raises(ValueError):
            await cache.aincr_version("missing")
        await cache.aset("zero", "gone", 0)
        assert await cache.aget("zero") is None
        assert await cache.aadd("zero", "x", 0) is True
        with pytest.raises(pickle.PickleError):

            class Unpicklable:
                def __getstate__(self):
                    raise pickle.PickleError("no")

            await cache.aset("bad", Unpicklable())
        await cache.aclose()
        # Natively on grpc.aio: this loop has its own client.
        assert asyncio.get_running_loop() in connections._aio_clients
        await cache.aclear()
        assert await cache.aget("key") is None

    run(main())
    # Another event loop gets its own client; the sync API sees the same data.
    run(cache.aset("across", "loops"))
    assert run(cache.aget("across")) == "loops"
    assert cache.get("across") == "loops"


def test_async_clear_leaves_other_key_spaces(caches):
    async def main():
        await caches["default"].aset("k", 1)
        await caches["other_space"].aset("k", 2)
        await caches["default"].aclear()
        assert await caches["default"].aget("k") is None
        assert await caches["other_space"].aget("k") == 2

    run(main())


def test_aget_or_set_computes_once_under_50_tasks(cache):
    computed = []

    async def expensive():
        computed.append(1)
        await asyncio.sleep(0.05)
        return "expensive"

    async def main():
        return await asyncio.gather(*(cache.aget_or_set("hot", expensive, 60) for _ in range(50)))

    assert run(main()) == ["expensive"] * 50
    assert len(computed) == 1


def test_async_mint_with_grace(caches):
    mint = caches["mint"]

    async def main():
        await mint.aset("page", "v1", 60)
        with raw_client(mint) as c:
            c.invalidate(mint.make_key("page"))
        assert await mint.aget("page") is None  # elected
        assert await mint.aget("page") == "v1"  # stale for the others
        await mint.aset("page", "v2", 60)
        assert await mint.aget("page") == "v2"

    run(main())
