"""The sync client against a real server over real memcached: every call, key spaces, the mint
(REFRESH / STALE / leases), counters, expiry flags, batches, errors, debug modes, deadlines,
retries and get_or_compute."""

from __future__ import annotations

import threading
import uuid

import pytest

import mintcache
from harness import ADMIN_TOKEN, CLIENT_TOKEN, Memcached, Server, server_env, wait_until
from mintcache import (
    Backoff,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Outcome,
    PermissionDenied,
    SetItem,
    Unauthenticated,
    Unavailable,
)


def test_set_get_delete(client):
    assert client.set("user:42", b'{"name":"Ada"}', 60) is True
    hit = client.get("user:42")
    assert hit.outcome == Outcome.HIT and hit.usable
    assert hit.value == b'{"name":"Ada"}'
    assert 0 < hit.ttl_seconds <= 60
    assert hit.lease is None and not hit.degraded and not hit.counter
    assert client.delete("user:42") is True
    assert client.delete("user:42") is False
    miss = client.get("user:42")
    assert miss.outcome == Outcome.MISS and not miss.usable and miss.value == b""


def test_flags_round_trip(client):
    client.set("flagged", b"x", 60, flags=0xABCD)
    assert client.get("flagged").flags == 0xABCD


def test_versions_and_namespaces_are_separate_key_spaces(endpoint, space):
    with Client(endpoint, version=space) as a:
        b = a.with_options(version=space + "-b")
        n = a.with_options(namespace="tenant-x")
        a.set("k", "in a", 60)
        b.set("k", "in b", 60)
        assert a.get("k").value == b"in a"
        assert b.get("k").value == b"in b"
        assert n.get("k").outcome == Outcome.MISS
        n.set("k", "in n", 60)
        assert a.get("k").value == b"in a"


def test_add_only_when_absent(client):
    assert client.add("once", "first", 60) is True
    assert client.add("once", "second", 60) is False
    assert client.get("once").value == b"first"


def test_touch(client):
    assert client.touch("absent", 60) is False
    client.set("t", "v", 5)
    assert client.touch("t", 3600) is True
    assert client.get("t").ttl_seconds > 5


def test_invalidate_elects_one_refresher_and_leases_protect_the_value(client):
    client.set("page", "v1", 300)
    assert client.invalidate("page") is True
    won = client.get("page")
    assert won.outcome == Outcome.REFRESH and won.value == b"v1" and won.lease
    others = [client.get("page") for _ in range(5)]
    assert all(o.outcome == Outcome.STALE and o.value == b"v1" for o in others)
    assert client.set("page", "v2", 300, lease=won.lease) is True
    assert client.get("page").outcome == Outcome.HIT
    # The same lease again: the key was set since, the late value is refused.
    assert client.set("page", "v3", 300, lease=won.lease) is False
    assert client.get("page").value == b"v2"
    assert client.invalidate("absent") is False


def test_increment(client):
    with pytest.raises(NotFound):
        client.increment("hits")
    assert client.increment("hits", 5, initial=10, ttl=3600) == 10
    assert client.increment("hits", 5) == 15
    assert client.increment("hits", -20) == 0  # never below zero
    hit = client.get("hits")
    assert hit.value == b"0" and hit.counter
    client.set("text", "not a number", 60)
    with pytest.raises(FailedPrecondition):
        client.increment("text")


def test_counter_writes(client):
    assert client.set("n", b"41", 60, counter=True) is True
    lookup = client.get("n")
    assert lookup.counter and lookup.value == b"41" and lookup.outcome == Outcome.HIT
    assert client.increment("n") == 42
    assert client.add("m", b"7", 60, counter=True) is True
    assert client.increment("m", 3) == 10
    results = client.set_many([SetItem("c1", b"1", 60, counter=True), SetItem("c2", b"2", 60)])
    assert [r.ok for r in results] == [True, True]
    assert client.increment("c1") == 2
    with pytest.raises(FailedPrecondition):
        client.increment("c2")  # stored as a plain value
    with pytest.raises(InvalidArgument):
        client.set("bad", b"-1", 60, counter=True)


def test_no_expiry(client):
    assert client.set("forever", "v", None) is True
    lookup = client.get("forever")
    assert lookup.outcome == Outcome.HIT and lookup.no_expiry and lookup.ttl_seconds == 0
    client.set("soon", "v", 60)
    assert client.touch("soon", None) is True
    assert client.get("soon").no_expiry
    assert client.increment("count", initial=1, ttl=None) == 1
    assert client.get("count").no_expiry


def test_no_grace_means_gone_at_expiry(client):
    client.set("plain", "v", 1, grace=None)
    client.set("minted", "v", 1, grace=60)
    assert client.get("plain").grace_seconds == 0
    assert client.get("minted").grace_seconds == 60
    # memcached's clock ticks in whole seconds: wait until the values are past their ttl.
    wait_until(lambda: client.get("plain").outcome == Outcome.MISS, "plain value gone")
    wait_until(lambda: client.get("minted", peek=True).outcome == Outcome.STALE, "minted stale")
    # The minted one stays servable during its grace: one refresher, the others get it stale.
    assert client.get("minted").outcome == Outcome.REFRESH
    assert client.get("minted").outcome == Outcome.STALE


def test_peek_does_not_join_the_election(client):
    client.set("p", "v", 300)
    client.invalidate("p")
    peeked = client.get("p", peek=True)
    assert peeked.outcome == Outcome.STALE and peeked.value == b"v" and peeked.lease is None
    assert client.get("p").outcome == Outcome.REFRESH  # the election is still open
    assert client.get("absent", peek=True, lease_on_miss=True).outcome == Outcome.MISS
    # No cold-miss placeholder was created by the peek.
    assert client.get("absent", lease_on_miss=True).outcome == Outcome.MISS
    many = client.get_many(["p", "also-absent"], peek=True)
    assert [m.outcome for m in many] == [Outcome.STALE, Outcome.MISS]


def test_flush_drops_only_its_key_space(endpoint, space):
    with Client(endpoint, version=space) as a:
        other_version = a.with_options(version=space + "-other")
        other_namespace = a.with_options(namespace="tenant-y")
        for c in (a, other_version, other_namespace):
            c.set_many([SetItem(f"k{i}", "v", 300) for i in range(20)])
        assert a.flush() is True
        assert all(m.outcome == Outcome.MISS for m in a.get_many([f"k{i}" for i in range(20)]))
        for c in (other_version, other_namespace):
            assert all(m.usable for m in c.get_many([f"k{i}" for i in range(20)]))
        # The key space works again after its flush.
        a.set("k0", "again", 60)
        assert a.get("k0").value == b"again"


def test_batches(client):
    results = client.set_many(
        [SetItem("a", "1", 60), SetItem(b"", "x", 60), SetItem("b", b"2", 60, flags=7)]
    )
    assert [r.key for r in results] == [b"a", b"", b"b"]
    assert results[0].ok and results[2].ok and not results[1].ok
    assert results[1].error.code.name == "INVALID_ARGUMENT"
    assert isinstance(results[1].error.as_exception(), InvalidArgument)
    lookups = client.get_many(["a", "missing", "b", ""])
    assert [lk.outcome for lk in lookups[:3]] == [
        Outcome.HIT,
        Outcome.MISS,
        Outcome.HIT,
    ]
    assert lookups[2].flags == 7 and lookups[2].value == b"2"
    assert lookups[3].error is not None and not lookups[3].usable
    deleted = client.delete_many(["a", "missing", "b"])
    assert [d.ok for d in deleted] == [True, False, True]
    assert client.get_many([]) == [] and client.set_many([]) == [] and client.delete_many([]) == []


def test_unicode_and_binary_keys_and_values(client):
    pairs = {
        "Iñtërnâtiônàlizætiøn": "välue ✓",
        "key with spaces\r\nand CRLF": b"\x00\xff\r\n binary",
        b"\x00\x01\xfe\xff": b"\x00",
        "清" * 300: "long unicode key (900 bytes)",
    }
    for key, value in pairs.items():
        assert client.set(key, value, 60)
    for key, value in pairs.items():
        expected = value.encode() if isinstance(value, str) else value
        assert client.get(key).value == expected
    got = client.get_many(list(pairs))
    assert all(lk.usable for lk in got)


def test_large_values(client):
    big = bytes(range(256)) * 3900  # 998,400 bytes: under the default 1,047,552 limit
    assert client.set("big", big, 60)
    assert client.get("big").value == big
    with pytest.raises(InvalidArgument) as too_big:
        client.set("huge", b"x" * 1_100_000, 60)
    assert "max_value_bytes" in too_big.value.details


def test_errors(client, endpoint, space):
    with pytest.raises(InvalidArgument):
        client.get("")
    # A version or namespace the server would refuse on every call is refused up front.
    for bad in ("not valid!", "", "v" * 65):
        with pytest.raises(ValueError, match="x-cache-version"):
            client.with_options(version=bad)
    with pytest.raises(ValueError, match="x-cache-namespace"):
        Client(endpoint, namespace="a/b")
    assert client.with_options(namespace="").with_options(version="v" * 64) is not None
    with pytest.raises(InvalidArgument):
        client.set("k", "v", -1)
    with pytest.raises(ValueError):
        client.with_options(version="vérsion")  # not ASCII: refused before any call
    with pytest.raises(TypeError):
        client.set("k", 42, 60)  # values are bytes or text
    with Client(endpoint, version=space, token="wrong") as wrong:
        with pytest.raises(Unauthenticated):
            wrong.get("k")
    with pytest.raises(PermissionDenied):
        client.with_options(debug="off").get("k")
    err = None
    try:
        client.get("")
    except mintcache.CacheError as e:
        err = e
    assert err is not None and err.code.name == "INVALID_ARGUMENT" and err.details


def test_debug_modes_for_admins(admin):
    admin.set("k", "cached", 60)
    off = admin.with_options(debug="turn_off")  # the original's spelling
    assert off.get("k").outcome == Outcome.MISS
    assert off.set("k", "ignored", 60) is False
    assert off.delete("k") is False
    assert off.flush() is False
    with pytest.raises(FailedPrecondition):
        off.increment("k")
    assert admin.get("k").value == b"cached"
    write_only = admin.with_options(debug="write-only")
    assert write_only.get("k").outcome == Outcome.MISS
    assert write_only.set("k", "fixed", 60) is True
    assert admin.get("k").value == b"fixed"
    with pytest.raises(ValueError):
        admin.with_options(debug="sideways")


def test_deadline(client):
    """A deadline that has passed is DeadlineExceeded, never an answer (a zero timeout has
    always passed by the time the call would be sent)."""
    with pytest.raises(mintcache.DeadlineExceeded):
        client.with_options(timeout=0).get("k")
    with pytest.raises(mintcache.DeadlineExceeded):
        client.with_options(timeout=0).set("k", "v", 60)


def test_deadline_of_a_call_nobody_answers():
    """A peer that accepts TCP connections and never speaks HTTP/2: the deadline ends the
    call as DeadlineExceeded (gRPC's own deadline, not the client's pre-send check)."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        with Client(f"127.0.0.1:{port}", timeout=0.3, retry=Backoff(1, 0.01, 0.01)) as c:
            with pytest.raises(mintcache.DeadlineExceeded):
                c.get("k")


def test_connection_failures_move_to_the_next_endpoint(cluster, space):
    """A refused connection never reached a server, so even writes are retried (on the next
    endpoint), and a counter is incremented exactly once."""
    dead = f"127.0.0.1:{_closed_port()}"
    with Client([dead, cluster.addr], version=space, retry=Backoff(4, 0.01, 0.05)) as c:
        assert c.increment("once", initial=0) == 0
        for _ in range(4):  # round robin: half of these start on the dead endpoint
            c.increment("once")
            c.set("k", "v", 60)
            c.get("k")
        assert c.get("once").value == b"4"
    with Client(dead, retry=Backoff(3, 0.01, 0.05)) as nowhere:
        with pytest.raises(Unavailable):
            nowhere.get("k")


def _closed_port() -> int:
    from harness import free_port

    return free_port()


@pytest.fixture()
def fragile():
    """A server of its own over one memcached that the test may stop."""
    memcached = Memcached()
    try:
        server = Server(server_env([memcached], MINTCACHE_MEMCACHED__TIMEOUT_MS="1000"))
        yield memcached, server
        server.stop()
    finally:
        memcached.stop()


def test_writes_that_reached_the_server_are_not_retried(fragile):
    memcached, server = fragile
    with Client(server.addr, retry=Backoff(4, 0.01, 0.05)) as c:
        c.set("k", "v", 60)
        memcached.stop()
        sets_before = server.rpc_count("Set")
        incr_before = server.rpc_count("Increment")
        with pytest.raises(Unavailable):
            c.set("k", "v2", 60)
        with pytest.raises(Unavailable):
            c.increment("n", initial=1)
        # Reads fail open: a miss flagged degraded, not an error.
        lookup = c.get("k")
        assert lookup.outcome == Outcome.MISS and lookup.degraded
        # Every call above has finished (and a retry would have been sent before its error):
        # once the read is counted, the writes' counts are final.
        wait_until(lambda: server.rpc_count("Get", outcome="miss") >= 1, "the read counted")
        assert server.rpc_count("Set") == sets_before + 1
        assert server.rpc_count("Increment") == incr_before + 1


def test_get_or_compute_degraded_read_is_not_written_back(fragile):
    memcached, server = fragile
    with Client(server.addr) as c:
        memcached.stop()
        assert c.get_or_compute("k", lambda: b"computed", 60) == b"computed"
        wait_until(lambda: server.rpc_count("Get") >= 1, "the read counted")
        assert server.rpc_count("Set") == 0


def test_get_or_compute_miss_then_hit(client):
    calls = []

    def compute():
        calls.append(1)
        return b"value"

    assert client.get_or_compute("k", compute, 60) == b"value"
    assert client.get_or_compute("k", compute, 60) == b"value"
    assert len(calls) == 1
    assert client.get("k").value == b"value"


def test_get_or_compute_refresh_and_stale(client):
    client.set("k", "old", 300, grace=60)
    client.invalidate("k")
    # The first reader wins the refresh: it computes, and the others keep the stale value.
    assert client.get_or_compute("k", lambda: b"new", 300) == b"new"
    assert client.get("k").value == b"new"
    client.invalidate("k")
    winner = client.get("k")
    assert winner.outcome == Outcome.REFRESH

    def must_not_run():
        raise AssertionError("a STALE read must not compute")

    assert client.get_or_compute("k", must_not_run, 300) == b"new"


def test_get_or_compute_waits_for_the_filler(cluster, space):
    """PENDING: a second caller waits for the first one's value instead of computing, in one
    read that the server holds until the value lands."""
    with Client(cluster.addr, version=space) as c:
        filler = c.get("k", lease_on_miss=True)
        assert filler.outcome == Outcome.MISS and filler.lease
        assert c.get("k", lease_on_miss=True).outcome == Outcome.PENDING
        reads_before = cluster.rpc_count("Get")
        result = {}

        def waiter():
            result["value"] = c.get_or_compute("k", lambda: b"computed by the waiter", 60)

        thread = threading.Thread(target=waiter)
        thread.start()
        # Fill only once the server holds the waiter's read.
        wait_until(
            lambda: cluster.metric("mintcache_rpc_in_flight") >= 1, "waiter held", step=0.01
        )
        assert c.set("k", "filled", 60, lease=filler.lease) is True
        thread.join(timeout=60)
        assert result["value"] == b"filled"
        assert cluster.rpc_count("Get") == reads_before + 1


def test_get_or_compute_computes_once_under_concurrency(endpoint, space):
    computed = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def compute():
        with lock:
            computed.append(1)
        return b"expensive"

    results = []

    def worker():
        start.wait(timeout=30)
        results.append(c.get_or_compute("hot", compute, 60, lease_on_miss=True))

    with Client(endpoint, version=space) as c:
        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert results == [b"expensive"] * 20
    assert len(computed) == 1


def test_repr_hides_the_token(endpoint):
    with Client(endpoint, token=CLIENT_TOKEN) as c:
        assert CLIENT_TOKEN not in repr(c)
        assert CLIENT_TOKEN not in repr(c.with_options(token=ADMIN_TOKEN))
        assert ADMIN_TOKEN not in repr(c.with_options(token=ADMIN_TOKEN))


def test_endpoint_forms(cluster, space):
    for endpoints in (
        f"http://{cluster.addr}",
        f"{cluster.addr},{cluster.addr}",
        [cluster.addr, f"http://{cluster.addr}/"],
    ):
        with Client(endpoints, version=space) as c:
            c.set("e", "v", 60)
            assert c.get("e").value == b"v"
    with pytest.raises(ValueError):
        Client("")
    with pytest.raises(ValueError):
        Client([f"http://{cluster.addr}", f"https://{cluster.addr}"])


def test_unique_space_fixture_isolation(client, space):
    # Guards the other tests' assumption: a fresh version holds nothing.
    assert client.get(uuid.uuid4().hex).outcome == Outcome.MISS
    assert space.startswith("t-")
