"""Django's cache API on MintCache (sync), against a real server: the behaviours Django's own
backend test-suite checks (timeouts, versions, key prefix, key functions, key warnings, data
types, incr/decr errors, get_or_set, set_many's failed keys), plus what MintCache adds:
counters, the mint with GRACE, clear() by key space, get_or_set under 50 threads."""

from __future__ import annotations

import pickle
import threading
import time
import warnings
import zlib

import pytest
from django.core.cache import CacheKeyWarning
from django.core.exceptions import ImproperlyConfigured

from harness import raw_client as raw
from harness import wait_until
from mintcache import Outcome
from mintcache.django import MintCache


class Unpicklable:
    def __getstate__(self):
        raise pickle.PickleError("not picklable")


def f():
    return 42


class C:
    def m(n):
        return 24


def test_simple_and_defaults(cache):
    cache.set("key", "value")
    assert cache.get("key") == "value"
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None


def test_add(cache):
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_prefix_and_versions_are_separate(caches):
    cache, prefixed, v2 = caches["default"], caches["prefix"], caches["v2"]
    cache.set("somekey", "value")
    assert prefixed.has_key("somekey") is False
    prefixed.set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert prefixed.get("somekey") == "value2"
    cache.set("answer1", 42)
    assert cache.get("answer1", version=1) == 42
    assert cache.get("answer1", version=2) is None
    assert v2.get("answer1") is None
    assert v2.get("answer1", version=1) == 42
    v2.set("answer3", 42)
    assert cache.get("answer3", version=2) == 42
    assert cache.add("answer4", 1, version=2) is True
    assert v2.add("answer4", 2) is False
    assert v2.has_key("answer4") and not cache.has_key("answer4")
    cache.set("answer5", 37, version=1)
    cache.set("answer5", 42, version=2)
    assert v2.delete("answer5") is True
    assert cache.get("answer5") == 37 and cache.get("answer5", version=2) is None
    cache.set_many({"ford": 37, "arthur": 42}, version=2)
    assert cache.get_many(["ford", "arthur"]) == {}
    assert v2.get_many(["ford", "arthur"]) == {"ford": 37, "arthur": 42}


def test_custom_key_functions(caches):
    cache = caches["default"]
    cache.set("answer1", 42)
    assert caches["custom_key"].get("answer1") is None
    assert caches["custom_key2"].get("answer1") is None
    caches["custom_key"].set("answer2", 42)
    assert cache.get("answer2") is None
    assert caches["custom_key"].get("answer2") == 42
    assert caches["custom_key2"].get("answer2") == 42  # same function, by dotted path


def test_get_many_delete_many_set_many(cache):
    assert cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"}) == []
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}
    assert cache.delete_many(["a", "b"]) is None
    assert cache.get_many(["a", "b", "c"]) == {"c": "c"}
    assert cache.delete_many([]) is None
    assert cache.set_many({}) == []
    assert cache.get_many([]) == {}


def test_delete_and_has_key(cache):
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.delete("key1") is True
    assert cache.delete("key1") is False
    assert cache.get("key1") is None and cache.get("key2") == "eggs"
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("no_expiry", "here", None)
    assert cache.has_key("no_expiry") is True
    cache.set("null", None)
    assert cache.has_key("null") is True
    assert "null" in cache and "goodbye1" not in cache


def test_incr_decr(cache):
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    assert cache.decr("answer") == 41
    assert cache.decr("answer", 10) == 31
    assert cache.decr("answer", -10) == 41
    for call in (cache.incr, cache.decr):
        with pytest.raises(ValueError):
            call("does_not_exist")
        with pytest.raises(ValueError):
            call("does_not_exist", -1)
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.incr("null")
    with pytest.raises(TypeError):
        cache.decr("null")
    cache.set("text", "abc")
    with pytest.raises(TypeError):
        cache.incr("text")


def test_integers_are_counters_and_the_rest_is_pickled(cache):
    cache.set("small", 5)
    cache.set("negative", -5)
    cache.set("flag", True)
    cache.set("huge", 2**70)
    with raw(cache) as c:
        small = c.get(cache.make_key("small"))
        assert small.counter and small.value == b"5"
        for key in ("negative", "flag", "huge"):
            lookup = c.get(cache.make_key(key))
            assert not lookup.counter and lookup.flags == 1
    assert cache.get("flag") is True and type(cache.get("flag")) is bool
    assert cache.get("huge") == 2**70
    # Pickled integers still add up (Django's generic read-modify-write).
    assert cache.incr("negative", 2) == -3
    assert cache.decr("negative", -10) == 7
    assert cache.get("negative") == 7
    # A counter never goes below zero, as with Django's memcached backends.
    assert cache.decr("small", 10) == 0


def test_incr_is_atomic_across_threads(cache):
    cache.set("hits", 0)
    start = threading.Barrier(10)

    def worker():
        start.wait(timeout=30)
        for _ in range(50):
            cache.incr("hits")

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert cache.get("hits") == 500


def test_incr_keeps_the_expiry(cache):
    cache.set("counted", 1, 3600)
    assert cache.incr("counted") == 2
    with raw(cache) as c:
        lookup = c.get(cache.make_key("counted"))
    assert 3500 < lookup.ttl_seconds <= 3600


def test_data_types_unicode_binary(cache):
    values = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "function": f,
        "class": C,
        "bytes": b"\x00\xff raw",
        "unicode": "Iñtërnâtiônàlizætiøn2",
        "Iñtërnâtiônàlizætiøn": {"x": 1},
    }
    for key, value in values.items():
        cache.set(key, value)
        assert cache.get(key) == value
    for key, value in values.items():
        assert cache.delete(key) is True
        assert cache.add(key, value) is True
        assert cache.get(key) == value
    cache.delete_many(list(values))
    cache.set_many(values)
    assert cache.get_many(list(values)) == values
    compressed = zlib.compress(b"value_to_be_compressed")
    cache.set("binary1", compressed)
    assert zlib.decompress(cache.get("binary1")) == b"value_to_be_compressed"


def test_unpicklable_values_raise(cache):
    with pytest.raises(pickle.PickleError):
        cache.add("unpicklable", Unpicklable())
    with pytest.raises(pickle.PickleError):
        cache.set("unpicklable", Unpicklable())


def test_timeouts(cache):
    # 0 or negative: expire at once.
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set("key2b", "held")
    assert cache.add("key2b", "ham", 0) is False
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get_many(["key3", "key4"]) == {}
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None
    cache.set("key6", "gone", -1)
    assert cache.get("key6") is None
    # None: forever.
    cache.set("f1", "eggs", None)
    assert cache.add("f2", "ham", None) is True
    assert cache.add("f1", "new eggs", None) is False
    cache.set_many({"f3": "sausage", "f4": "lobster"}, None)
    assert cache.get_many(["f1", "f2", "f3", "f4"]) == {
        "f1": "eggs",
        "f2": "ham",
        "f3": "sausage",
        "f4": "lobster",
    }
    with raw(cache) as c:
        assert c.get(cache.make_key("f1")).no_expiry
        assert c.get(cache.make_key("f3")).no_expiry
    # Long and fractional timeouts.
    cache.set("long", "eggs", 60 * 60 * 24 * 30 + 1)
    assert cache.get("long") == "eggs"
    assert cache.add("long2", "ham", 60 * 60 * 24 * 365 * 50) is True  # capped to 10 years
    assert cache.get("long2") == "ham"
    cache.set("float", "spam", 100.2)
    assert cache.get("float") == "spam"
    # DEFAULT_TIMEOUT: the cache's TIMEOUT (300 s).
    cache.set("default", "x")
    with raw(cache) as c:
        assert 290 < c.get(cache.make_key("default")).ttl_seconds <= 300


def test_expiration_and_touch(cache):
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set_many({"expire3": "x"}, 1)
    cache.set("kept", "for long", 1)
    assert cache.touch("kept", None) is True
    assert cache.touch("nonexistent") is False
    # memcached's clock ticks in whole seconds: poll rather than sleep a guessed amount.
    wait_until(lambda: cache.get("expire1") is None, "expire1 expired")
    wait_until(lambda: not cache.has_key("expire3"), "expire3 expired")
    wait_until(lambda: cache.add("expire2", "newvalue"), "expire2 expired")
    assert cache.get("expire2") == "newvalue"
    assert cache.get("kept") == "for long"


def test_key_warnings(cache):
    def key_func(key, *args):
        return key

    old = cache.key_func
    cache.key_func = key_func
    try:
        for key, text in (
            ("key with spaces and 清", "characters that will cause errors"),
            ("a" * 250 + "清", "longer than 250"),
        ):
            for operation, args in (
                ("add", [key, 1]),
                ("get", [key]),
                ("set", [key, 1]),
                ("incr", [key]),
                ("touch", [key]),
                ("delete", [key]),
                ("get_many", [[key, "b"]]),
                ("set_many", [{key: 1, "b": 2}]),
                ("delete_many", [[key, "b"]]),
            ):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    getattr(cache, operation)(*args)
                assert any(
                    issubclass(w.category, CacheKeyWarning) and text in str(w.message)
                    for w in caught
                ), operation
        # Such keys still work: the server maps any bytes safely.
        with pytest.warns(CacheKeyWarning):
            cache.set("key with spaces and 清", "stored")
        with pytest.warns(CacheKeyWarning):
            assert cache.get("key with spaces and 清") == "stored"
    finally:
        cache.key_func = old


def test_incr_and_decr_version(caches):
    cache, v2 = caches["default"], caches["v2"]
    cache.set("answer", 42, version=2)
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42
    v2.set("answer2", 42)
    assert v2.incr_version("answer2") == 3
    assert v2.get("answer2") is None and v2.get("answer2", version=3) == 42
    assert cache.decr_version("answer", version=3) == 2
    assert cache.get("answer", version=2) == 42
    with pytest.raises(ValueError):
        cache.incr_version("does_not_exist")
    with pytest.raises(ValueError):
        cache.decr_version("does_not_exist", version=2)
    cache.set("null", None)
    assert cache.incr_version("null") == 2
    assert cache.has_key("null", version=2)


def test_get_or_set(cache):
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("null", None) is None
    assert cache.get("null", "default") is None
    assert cache.get_or_set("mykey", lambda: "value") == "value"
    assert cache.get_or_set("mykey", "other") == "value"
    assert cache.get_or_set("brian", 1979, version=2) == 1979
    with pytest.raises(TypeError):
        cache.get_or_set("brian")
    assert cache.get("brian", version=1) is None
    assert cache.get_or_set("brian", 42, version=1) == 42
    assert cache.get_or_set("brian", 1979, version=2) == 1979
    assert cache.get_or_set("zero", "not kept", timeout=0) == "not kept"
    assert cache.get("zero") is None


def test_get_or_set_computes_once_under_50_threads(cache):
    computed = []
    lock = threading.Lock()
    start = threading.Barrier(50)
    results = []

    def expensive():
        with lock:
            computed.append(1)
        time.sleep(0.05)  # long enough for every other thread to find the key being filled
        return {"report": "expensive"}

    def worker():
        start.wait(timeout=60)
        results.append(cache.get_or_set("report", expensive, 60))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [{"report": "expensive"}] * 50
    assert len(computed) == 1


def test_clear_drops_only_its_key_space(caches):
    cache, prefixed = caches["default"], caches["prefix"]
    other_space, other_ns = caches["other_space"], caches["other_namespace"]
    for c in (cache, prefixed, other_space, other_ns):
        c.set_many({"key1": "spam", "key2": "eggs"})
    cache.clear()
    assert cache.get_many(["key1", "key2"]) == {}
    # KEY_PREFIX lives inside the same key space: cleared too.
    assert prefixed.get_many(["key1", "key2"]) == {}
    assert other_space.get_many(["key1", "key2"]) == {"key1": "spam", "key2": "eggs"}
    assert other_ns.get_many(["key1", "key2"]) == {"key1": "spam", "key2": "eggs"}


def test_large_values(cache):
    big = b"x" * 900_000
    cache.set("big", big)
    assert cache.get("big") == big
    # Over the server's value limit: as Django's memcached backends, set() does not raise and
    # the key does not keep its old value; set_many() reports the key; add() says False.
    cache.set("big", b"y" * 1_100_000)
    assert cache.get("big") is None
    assert cache.set_many({"ok": 1, "too-big": b"z" * 1_100_000}) == ["too-big"]
    assert cache.get("ok") == 1 and cache.get("too-big") is None
    assert cache.add("big", b"y" * 1_100_000) is False


def test_close_keeps_working(cache):
    cache.set("k", "v")
    cache.close()
    assert cache.get("k") == "v"


def test_locations_and_options(django_env):
    addr = django_env.addr
    for location in (
        [addr, addr],
        f"{addr};{addr}",
        f"{addr},{addr}",
        f"http://{addr}",
    ):
        c = MintCache(location, {"OPTIONS": {"APP_VERSION": "django-locations"}})
        c.set("k", "v")
        assert c.get("k") == "v"
    for options, text in (
        ({"MINT_DELAY": 30}, "GRACE"),
        ({"VERSION": "r1"}, "APP_VERSION"),
        ({"SURPRISE": 1}, "unknown OPTIONS key 'SURPRISE'"),
        ({"GRACE": -1}, "GRACE"),
        ({"GRACE": "30"}, "GRACE"),
        ({"CALL_TIMEOUT": 0}, "CALL_TIMEOUT"),
        # A key space the server refuses would fail every call: refused at configuration.
        ({"APP_VERSION": "vérsion"}, r"APP_VERSION.*may only contain"),
        ({"APP_VERSION": "bad version"}, r"APP_VERSION.*may only contain"),
        ({"APP_VERSION": ""}, r"APP_VERSION.*must not be empty"),
        ({"APP_VERSION": "r" * 65}, r"APP_VERSION.*at most 64"),
        ({"NAMESPACE": "shop/eu"}, r"NAMESPACE.*may only contain"),
        ({"TOKEN": "two\nlines"}, "authorization"),
        ({"SERIALIZER": "yaml"}, "unknown serializer 'yaml'"),
        ({"COMPRESSOR": "bz2"}, "unknown compressor 'bz2'"),
        ({"COMPRESS_MIN_BYTES": -1}, "threshold"),
        ({"PICKLE_PROTOCOL": 99}, "pickle protocol"),
        ({"IGNORE_EXCEPTIONS": "yes"}, "IGNORE_EXCEPTIONS"),
        ({"BREAKER_FAILURES": 0}, "BREAKER_FAILURES"),
        ({"BREAKER_COOL_OFF": 0}, "BREAKER_COOL_OFF"),
        ({"BREAKER_COOL_OFF": 60}, "max_cool_off"),
    ):
        with pytest.raises(ImproperlyConfigured, match=text):
            MintCache(addr, {"OPTIONS": options})
    with pytest.raises(ImproperlyConfigured):
        MintCache("", {})


def test_mint_with_grace(caches):
    """GRACE > 0: after its timeout a value stays servable; one caller is elected to recompute
    (its get misses) and its next set carries the election's lease."""
    mint = caches["mint"]
    mint.set("page", "v1", 1)
    with raw(mint) as c:
        key = mint.make_key("page")
        assert c.get(key, peek=True).grace_seconds == 30
        wait_until(lambda: c.get(key, peek=True).outcome == Outcome.STALE, "page went stale")
    assert mint.get("page") is None  # this caller won the refresh
    assert mint.get("page") == "v1"  # everyone else gets the stale value
    assert mint.has_key("page") is True
    mint.set("page", "v2", 60)  # carries the lease: stored
    assert mint.get("page") == "v2"

    # A lease that is out of date (the key was written since the election) is refused, so a
    # slow recomputation cannot overwrite a newer value.
    with raw(mint) as c:
        c.invalidate(key)
        assert mint.get("page") is None  # won again
        c.set(key, pickle.dumps("v3 from elsewhere"), 60, flags=1)
        mint.set("page", "v2 recomputed late", 60)
        assert mint.get("page") == "v3 from elsewhere"


def test_mint_get_or_set_serves_stale_while_one_recomputes(caches):
    mint = caches["mint"]
    mint.set("report", "old", 60)
    with raw(mint) as c:
        c.invalidate(mint.make_key("report"))
    assert mint.get_or_set("report", lambda: "new") == "new"  # the elected caller computes
    assert mint.get("report") == "new"
    with raw(mint) as c:
        c.invalidate(mint.make_key("report"))
        assert c.get(mint.make_key("report")).outcome == Outcome.REFRESH  # someone else won

    def must_not_run():
        raise AssertionError("a stale value is served while another caller recomputes")

    assert mint.get_or_set("report", must_not_run) == "new"


def test_grace_zero_keeps_djangos_contract(cache):
    cache.set("plain", "v", 1)
    with raw(cache) as c:
        lookup = c.get(cache.make_key("plain"), peek=True)
        assert lookup.grace_seconds == 0
        wait_until(
            lambda: c.get(cache.make_key("plain"), peek=True).outcome == Outcome.MISS,
            "value gone at its timeout, no stale phase",
        )
    assert cache.get("plain") is None
