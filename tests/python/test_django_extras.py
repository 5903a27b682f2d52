"""What MintCache offers beyond Django's cache API, against a real server: IGNORE_EXCEPTIONS
and the circuit breaker when the service is down or hung, ttl / expire / persist, lock (sync
and async), SERIALIZER and COMPRESSOR (and a value of one serializer refused by another),
sync and async alike."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import threading
import time

import pytest
from django.core.cache.backends.base import DEFAULT_TIMEOUT

import mintcache
from harness import (
    CLIENT_TOKEN,
    Memcached,
    Server,
    free_port,
    raw_client,
    server_env,
    stop_process,
)
from mintcache import CircuitOpen, LockError, LockNotOwnedError, Outcome
from mintcache.codecs import CodecError
from mintcache.django import MintCache, cache_debug


def make(location, space, **options):
    return MintCache(
        location,
        {"OPTIONS": {"APP_VERSION": space, "TOKEN": CLIENT_TOKEN, **options}},
    )


# --- IGNORE_EXCEPTIONS and the breaker -----------------------------------------------------------

# Every operation with what it answers when the service is gone and IGNORE_EXCEPTIONS is on:
# reads a miss, writes what Django's memcached backends report for a failed write.
FALLBACKS = [
    ("get", ("k",), None),
    ("get", ("k", "dflt"), "dflt"),
    ("get_many", (["a", "b"],), {}),
    ("has_key", ("k",), False),
    ("set", ("k", "v"), None),
    ("add", ("k", "v"), False),
    ("touch", ("k", 10), False),
    ("delete", ("k",), False),
    ("set_many", ({"a": 1, "b": 2},), ["a", "b"]),
    ("delete_many", (["a", "b"],), None),
    ("clear", (), None),
    ("get_or_set", ("k", lambda: "computed"), "computed"),
    ("ttl", ("k",), 0),
    ("expire", ("k", 10), False),
    ("persist", ("k",), False),
]


@pytest.fixture()
def down(space):
    """Caches pointing at a port where nothing listens (connection refused)."""
    location = f"127.0.0.1:{free_port()}"
    return location, space


def test_service_down_without_ignore_exceptions_raises_at_once(down):
    location, space = down
    cache = make(location, space)
    with pytest.raises(mintcache.Unavailable):
        cache.get("k")
    # The circuit is open now: the next calls raise without touching the network.
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(CircuitOpen):
            cache.get("k")
    assert time.monotonic() - started < 2.0


def test_service_down_with_ignore_exceptions(down, caplog):
    caplog.set_level(logging.WARNING, logger="mintcache.django")
    location, space = down
    cache = make(location, space, IGNORE_EXCEPTIONS=True)
    for name, args, expected in FALLBACKS:
        assert getattr(cache, name)(*args) == expected, name
    for name in ("incr", "decr"):
        with pytest.raises(ValueError, match="not found"):
            getattr(cache, name)("k")
    with pytest.raises(ValueError, match="not found"):
        cache.incr_version("k")
    # Each failure is logged with the real code and details, once per interval per code:
    # the first UNAVAILABLE (a refused connection), then the open circuit's (CircuitOpen is
    # UNAVAILABLE too) are folded into the next line after the interval.
    lines = [r.getMessage() for r in caplog.records if r.name == "mintcache.django"]
    assert len(lines) == 1, lines
    assert "UNAVAILABLE" in lines[0] and "IGNORE_EXCEPTIONS" in lines[0]
    assert location in lines[0] and "answered" in lines[0]
    assert CLIENT_TOKEN not in lines[0]


def test_ignore_exceptions_async(down):
    location, space = down
    cache = make(location, space, IGNORE_EXCEPTIONS=True)

    async def main():
        seen = []
        for name, args, _ in FALLBACKS:
            seen.append(await getattr(cache, "a" + name)(*args))
        with pytest.raises(ValueError):
            await cache.aincr("k")
        return seen

    seen = asyncio.run(main())
    assert seen == [expected for _, _, expected in FALLBACKS]


def test_ignore_exceptions_keeps_refusals(endpoint, space):
    """A wrong token, a bad key: refusals, not an absent service. They stay errors."""
    wrong = MintCache(
        endpoint,
        {"OPTIONS": {"APP_VERSION": space, "TOKEN": "wrong", "IGNORE_EXCEPTIONS": True}},
    )
    with pytest.raises(mintcache.Unauthenticated):
        wrong.get("k")
    with pytest.raises(mintcache.Unauthenticated):
        wrong.set("k", "v")


@pytest.fixture()
def hung_server():
    memcached = Memcached()
    server = Server(server_env([memcached]))
    try:
        yield server
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
        memcached.stop()


def test_hung_service_page_renders_at_database_speed(hung_server, space, caplog):
    """A page making 30 cache calls while the service accepts and never answers: the first
    calls wait their deadline until the circuit opens, the rest answer misses at once."""
    caplog.set_level(logging.WARNING)
    cache = make(hung_server.addr, space, IGNORE_EXCEPTIONS=True, CALL_TIMEOUT=0.3)
    cache.set("k", "v")
    stop_process(hung_server.process.pid)
    try:
        started = time.monotonic()
        answers = [cache.get_or_set(f"k{i}", lambda: "from the database") for i in range(30)]
        elapsed = time.monotonic() - started
    finally:
        os.kill(hung_server.process.pid, signal.SIGCONT)
    assert answers == ["from the database"] * 30
    # 3 deadlines of 0.3 s open the circuit; without it, 30 x 0.3 = 9 s.
    assert elapsed < 3.0, elapsed
    messages = [r.getMessage() for r in caplog.records]
    assert any("DEADLINE_EXCEEDED" in m and "IGNORE_EXCEPTIONS" in m for m in messages)
    assert any("circuit" in m and "open after 3" in m for m in messages)


def test_sync_and_async_share_the_circuit(down):
    location, space = down
    cache = make(location, space)
    with pytest.raises(mintcache.Unavailable):
        cache.get("k")

    async def main():
        with pytest.raises(CircuitOpen):
            await cache.aget("k")

    asyncio.run(main())
    # And another backend instance (Django makes one per thread) shares it too.
    with pytest.raises(CircuitOpen):
        make(location, space).get("k")


# --- ttl, expire, persist ------------------------------------------------------------------------


def test_ttl_expire_persist(cache):
    assert cache.ttl("missing") == 0
    cache.set("k", "v", 100)
    assert 98 <= cache.ttl("k") <= 100
    assert cache.expire("k", 20) is True
    assert 18 <= cache.ttl("k") <= 20
    assert cache.persist("k") is True
    assert cache.ttl("k") is None
    assert cache.get("k") == "v"
    assert cache.expire("missing", 10) is False
    assert cache.persist("missing") is False
    cache.set("forever", 1, None)
    assert cache.ttl("forever") is None
    cache.set("counter", 5, 50)  # counters too
    assert 48 <= cache.ttl("counter") <= 50
    assert cache.expire("k", 0) is True  # 0: expire now (deleted), as touch does
    assert cache.get("k") is None and cache.ttl("k") == 0
    cache.set("default", "v")  # the cache's TIMEOUT (Django's default, 300 s)
    assert 298 <= cache.ttl("default") <= 300


def test_ttl_of_a_stale_value_is_zero(caches):
    mint = caches["mint"]  # GRACE 30
    mint.set("page", "v1", 60)
    with raw_client(mint) as c:
        c.invalidate(mint.make_key("page"))
    assert mint.get("page") is None  # this caller won the refresh election
    assert mint.get("page") == "v1"  # served stale to everyone else...
    assert mint.ttl("page") == 0  # ...but past its timeout


def test_ttl_expire_persist_async(cache):
    async def main():
        await cache.aset("k", "v", 100)
        first = await cache.attl("k")
        assert await cache.aexpire("k", 20) is True
        second = await cache.attl("k")
        assert await cache.apersist("k") is True
        return first, second, await cache.attl("k"), await cache.attl("missing")

    first, second, third, missing = asyncio.run(main())
    assert 98 <= first <= 100 and 18 <= second <= 20 and third is None and missing == 0


# --- lock ----------------------------------------------------------------------------------------


def test_lock_excludes_and_is_released_by_its_holder(cache):
    lock = cache.lock("job", timeout=30)
    assert lock.acquire() is True and lock.owned()
    other = cache.lock("job", timeout=30)
    assert other.acquire(blocking=False) is False
    started = time.monotonic()
    assert other.acquire(blocking_timeout=0.3) is False
    assert 0.25 <= time.monotonic() - started < 5
    assert other.locked() and not other.owned()
    with pytest.raises(LockError):
        other.release()  # never held
    lock.release()
    assert not lock.locked()
    with other:
        assert other.owned()
        with pytest.raises(LockError, match="not acquired"):
            with cache.lock("job", timeout=30, blocking_timeout=0.1):
                pass
    assert not cache.lock("job").locked()
    # The lock's key is made as every key of the cache (KEY_PREFIX, VERSION).
    assert cache.lock("job").key == cache.make_key("job").encode()


def test_lock_serializes_threads(cache):
    """Eight threads add to a shared total under the lock with a read-modify-write that would
    lose updates without it."""
    cache.set("total", "0")

    def work():
        for _ in range(5):
            with cache.lock("total-lock", timeout=30, sleep=0.01):
                value = int(cache.get("total"))
                time.sleep(0.005)
                cache.set("total", str(value + 1))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get("total") == "40"


def test_lock_that_expired_is_not_released_by_its_former_holder(cache):
    lock = cache.lock("short", timeout=1)
    assert lock.acquire()
    with raw_client(cache) as c:
        key = cache.make_key("short")
        # Wait until it expired, then someone else takes it.
        deadline = time.monotonic() + 10
        while c.get(key, peek=True).usable:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    thief = cache.lock("short", timeout=30)
    assert thief.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert thief.owned()  # untouched
    thief.release()
    assert not thief.locked()


def test_lock_expires_when_its_holder_dies(cache):
    abandoned = cache.lock("crash", timeout=1)
    assert abandoned.acquire()
    started = time.monotonic()
    assert cache.lock("crash", timeout=5).acquire(blocking_timeout=10) is True
    assert time.monotonic() - started < 5


def test_lock_ignores_debug_modes(caches):
    cache = caches["default"]
    with cache_debug("off"):
        with cache.lock("debugged", timeout=30) as lock:
            assert lock.owned()
            assert cache.get("x") is None  # the cache itself is off
    assert not cache.lock("debugged").locked()


def test_lock_async(cache):
    async def main():
        order = []

        async def worker(name):
            async with cache.lock("alock", timeout=30, sleep=0.01):
                order.append(f"{name} in")
                await asyncio.sleep(0.05)
                order.append(f"{name} out")

        await asyncio.gather(*(worker(n) for n in "abc"))
        lock = cache.lock("alock", timeout=30)
        assert await lock.aacquire(blocking=False)
        assert await lock.aowned() and await lock.alocked()
        assert not await cache.lock("alock").aacquire(blocking_timeout=0.1)
        await lock.arelease()
        assert not await lock.alocked()
        return order

    order = asyncio.run(main())
    # Never two inside at once: each "in" is followed by its own "out".
    assert [o.split()[1] for o in order] == ["in", "out"] * 3
    assert all(order[i].split()[0] == order[i + 1].split()[0] for i in range(0, 6, 2))


def test_client_lock(client):
    with client.lock("k", timeout=10) as lock:
        assert client.get("k", peek=True).value == lock.token
        assert not client.lock("k").acquire(blocking=False)
    assert client.get("k", peek=True).outcome == Outcome.MISS
    with pytest.raises(TypeError):
        client.lock("k").__aenter__().send(None)
    with pytest.raises(ValueError):
        client.lock("k", timeout=-1)


# --- serializers and compressors -----------------------------------------------------------------


VALUES = [
    "text",
    {"a": [1, 2.5, None, True], "b": "ü"},
    -5,  # not a counter: the serializer's
    True,
    [1, "two"],
]


@pytest.mark.parametrize("serializer", ["pickle", "json", "msgpack"])
def test_serializers_round_trip(endpoint, space, serializer):
    cache = make(endpoint, space, SERIALIZER=serializer)
    for i, value in enumerate(VALUES):
        cache.set(f"k{i}", value)
        assert cache.get(f"k{i}") == value, (serializer, value)
    cache.set("n", 41)  # a counter, whatever the serializer
    assert cache.incr("n") == 42
    assert cache.get_many(["k0", "n"]) == {"k0": "text", "n": 42}
    with raw_client(cache) as c:
        lookup = c.get(cache.make_key("k1"), peek=True)
    assert lookup.flags == {"pickle": 1, "json": 2, "msgpack": 3}[serializer]
    if serializer == "json":  # readable by any language
        assert lookup.value == '{"a":[1,2.5,null,true],"b":"ü"}'.encode()


def test_json_keeps_what_json_can_hold(endpoint, space):
    import datetime

    cache = make(endpoint, space, SERIALIZER="json")
    cache.set("t", ("a", 1))
    assert cache.get("t") == ["a", 1]  # tuples come back as lists
    cache.set("d", datetime.date(2024, 5, 1))  # Django's encoder: dates as ISO text
    assert cache.get("d") == "2024-05-01"
    with pytest.raises(TypeError):
        cache.set("o", object())


class Tripwire:
    """Unpickling this records that it happened."""

    fired: list[str] = []

    def __reduce__(self):
        return (Tripwire.fired.append, ("unpickled!",))


def test_a_value_of_another_serializer_is_refused_never_unpickled(endpoint, space):
    pickled = make(endpoint, space)  # SERIALIZER pickle
    as_json = make(endpoint, space, SERIALIZER="json")
    as_msgpack = make(endpoint, space, SERIALIZER="msgpack")
    pickled.set("trap", Tripwire())
    Tripwire.fired.clear()
    for reader in (as_json, as_msgpack):
        with pytest.raises(CodecError, match="written with the pickle serializer") as error:
            reader.get("trap")
        assert "trap" in str(error.value) and "this reader uses" in str(error.value)
        with pytest.raises(CodecError):
            reader.get_many(["trap"])

        async def aread(reader=reader):
            return await reader.aget("trap")

        with pytest.raises(CodecError):
            asyncio.run(aread())
    assert Tripwire.fired == []
    as_json.set("j", {"x": 1})
    with pytest.raises(CodecError, match="written with the json serializer"):
        pickled.get("j")
    # Bytes written by another client (flags 0) are returned as they are, to any reader.
    with raw_client(pickled) as c:
        c.set(pickled.make_key("raw"), b"\x80\x04 not a pickle", 60)
        c.set(pickled.make_key("odd"), b"x", 60, flags=0x10000)
    assert pickled.get("raw") == b"\x80\x04 not a pickle" == as_json.get("raw")
    with pytest.raises(CodecError, match="unknown encoding"):
        pickled.get("odd")


@pytest.mark.parametrize("compressor", ["zlib", "zstd", "lz4"])
def test_compressors(endpoint, space, compressor):
    cache = make(endpoint, space, COMPRESSOR=compressor, COMPRESS_MIN_BYTES=100)
    big = {"rows": ["the same line of text, again and again"] * 500}
    cache.set("big", big)
    cache.set("small", "tiny")
    assert cache.get("big") == big and cache.get("small") == "tiny"
    with raw_client(cache) as c:
        stored_big = c.get(cache.make_key("big"), peek=True)
        stored_small = c.get(cache.make_key("small"), peek=True)
    number = {"zlib": 1, "zstd": 2, "lz4": 3}[compressor]
    assert stored_big.flags == 1 | (number << 8)
    assert len(stored_big.value) < len(pickle.dumps(big)) // 10
    assert stored_small.flags == 1  # under the threshold: not compressed
    # Any reader of the same serializer decompresses by the flags, whatever its compressor.
    plain = make(endpoint, space)
    assert plain.get("big") == big
    assert plain.get_many(["big", "small"]) == {"big": big, "small": "tiny"}

    async def aread():
        return await plain.aget("big")

    assert asyncio.run(aread()) == big


def test_compressed_value_is_kept_only_when_smaller(endpoint, space):
    cache = make(endpoint, space, COMPRESSOR="zlib", COMPRESS_MIN_BYTES=0)
    noise = os.urandom(4000)
    cache.set("noise", noise)
    with raw_client(cache) as c:
        assert c.get(cache.make_key("noise"), peek=True).flags == 1
    assert cache.get("noise") == noise


def test_codec_options_through_settings(caches):
    """set_many / get_or_set / incr's read-modify-write use the codec too."""
    cache = caches["default"]
    cache.set_many({"a": [1], "b": {"x": "y"}})
    assert cache.get_many(["a", "b"]) == {"a": [1], "b": {"x": "y"}}
    assert cache.get_or_set("c", lambda: ("t",)) == ("t",)
    cache.set("neg", -3)
    assert cache.incr("neg", 5) == 2
    assert cache.get("missing", DEFAULT_TIMEOUT) is DEFAULT_TIMEOUT
