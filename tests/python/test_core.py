"""The package's pure parts, without a server: endpoint parsing, metadata, retry rules, the
mint decisions of get_or_compute (and its waits), debug-mode spellings, backoff bounds, ttl
conversion, the read hints (wait, early refresh, consistency)."""

from __future__ import annotations

import grpc
import pytest

from mintcache import Backoff, DebugMode, Lookup, Outcome
from mintcache._core import (
    Cached,
    CallDefaults,
    Compute,
    MintReads,
    Wait,
    channel_targets,
    checked_beta,
    checked_consistency,
    failed_before_server,
    get_request,
    held_wait,
    may_retry,
    milliseconds,
    recompute_ms,
    set_request,
    touch_request,
)

REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Failed to connect to remote host: Connection refused"
)


def test_endpoints():
    assert channel_targets("a:1", False) == (["a:1"], False)
    assert channel_targets("a:1, b:2;c:3", False) == (["a:1", "b:2", "c:3"], False)
    assert channel_targets(["http://a:1/", "b:2"], False) == (["a:1", "b:2"], False)
    assert channel_targets(["https://a:1"], False) == (["a:1"], True)
    assert channel_targets("dns:///svc:50051", True) == (["dns:///svc:50051"], True)
    for bad, tls in (
        ("", False),
        ([], False),
        ("http://a:1,https://b:2", False),
        ("http://a", True),
    ):
        with pytest.raises(ValueError):
            channel_targets(bad, tls)


def test_metadata():
    defaults = CallDefaults().merged(version="r42", namespace="shop", token="t0k", debug="turn_off")
    assert defaults.metadata() == (
        ("x-cache-version", "r42"),
        ("x-cache-namespace", "shop"),
        ("x-cache-debug", "off"),
        ("authorization", "Bearer t0k"),
    )
    assert "t0k" not in repr(defaults)
    assert CallDefaults().metadata() == ()
    for field in ("version", "namespace", "token"):
        with pytest.raises(ValueError) as error:
            CallDefaults().merged(**{field: "bad\nvalue"})
        assert "bad" not in str(error.value)  # never echoed (it may be a token)


def test_retry_rules():
    unavailable = grpc.StatusCode.UNAVAILABLE
    # Reads: any UNAVAILABLE, nothing else.
    assert may_retry(True, unavailable, "memcached is unavailable")
    assert may_retry(True, unavailable, REFUSED)
    assert not may_retry(True, grpc.StatusCode.DEADLINE_EXCEEDED, "")
    assert not may_retry(True, grpc.StatusCode.RESOURCE_EXHAUSTED, "shed")
    # Writes: only when no connection could be made.
    assert may_retry(False, unavailable, REFUSED)
    assert may_retry(False, unavailable, "errors resolving nowhere.invalid:50051: ...")
    assert not may_retry(False, unavailable, "memcached is unavailable")
    assert not may_retry(False, unavailable, "Socket closed")
    assert not may_retry(False, grpc.StatusCode.INTERNAL, REFUSED)
    assert failed_before_server(unavailable, REFUSED.upper())


def lookup(outcome, lease=None, degraded=False):
    return Lookup(key=b"k", outcome=outcome, value=b"v", lease=lease, degraded=degraded)


def test_mint_decisions():
    reads = MintReads(Backoff(3, 0.01, 0.02))
    assert isinstance(reads.decide(lookup(Outcome.HIT)), Cached)
    assert isinstance(MintReads(Backoff.PENDING).decide(lookup(Outcome.STALE)), Cached)
    refresh = MintReads(Backoff.PENDING).decide(lookup(Outcome.REFRESH, lease=b"L"))
    assert refresh == Compute(lease=b"L", write_back=True)
    miss = MintReads(Backoff.PENDING).decide(lookup(Outcome.MISS, degraded=True))
    assert miss == Compute(lease=None, write_back=False)
    pending = MintReads(Backoff(3, 0.01, 0.02))
    assert isinstance(pending.decide(lookup(Outcome.PENDING)), Wait)
    assert isinstance(pending.decide(lookup(Outcome.PENDING)), Wait)
    assert pending.decide(lookup(Outcome.PENDING)) == Compute(lease=None, write_back=True)
    # A MISS lease is a fill's (released if computing fails); a REFRESH lease is not.
    fill = MintReads(Backoff.PENDING).decide(lookup(Outcome.MISS, lease=b"F"))
    assert fill == Compute(lease=b"F", write_back=True, fill=True)
    assert not refresh.fill


def test_mint_waits(monkeypatch):
    from mintcache import _core

    now = [100.0]
    monkeypatch.setattr(_core, "monotonic", lambda: now[0])
    reads = MintReads(Backoff(20, 0.1, 0.1), wait=10.0)
    assert reads.next_wait() == 10.0  # the whole budget for the first read
    now[0] += 4.9  # held until its deadline, then PENDING
    assert reads.decide(lookup(Outcome.PENDING)) == Wait(0.0)  # no pause after a held read
    assert reads.next_wait() == pytest.approx(5.1)
    now[0] += 0.01  # answered at once (a server that does not hold)
    wait = reads.decide(lookup(Outcome.PENDING))
    assert isinstance(wait, Wait) and 0.04 <= wait.seconds <= 0.09  # paced by the schedule
    now[0] += 5.1
    reads.next_wait()
    assert reads.decide(lookup(Outcome.PENDING)) == Compute(lease=None, write_back=True)
    # wait 0: never held, the schedule alone (its attempts) bounds the reads.
    polling = MintReads(Backoff(2, 0.1, 0.1))
    assert polling.next_wait() == 0.0
    assert isinstance(polling.decide(lookup(Outcome.PENDING)), Wait)
    assert polling.decide(lookup(Outcome.PENDING)) == Compute(lease=None, write_back=True)


def test_read_hints():
    assert held_wait(None, 5.0) is None
    assert held_wait(10.0, None) == 10.0
    assert held_wait(10.0, 5.0) == pytest.approx(4.9)  # within the deadline, 100 ms kept
    assert held_wait(10.0, 0.5) == pytest.approx(0.45)
    assert held_wait(0.2, 5.0) == 0.2
    with pytest.raises(ValueError):
        held_wait(-1, 5.0)
    assert milliseconds(None, "wait") == 0
    assert milliseconds(0.0001, "wait") == 1  # a short wait is not turned into none
    assert milliseconds(1e12, "wait") == 2**32 - 1
    request = get_request("k", False, True, 2.5, 1.5)
    assert (request.wait_ms, request.early_refresh_beta, request.lease_on_miss) == (2500, 1.5, True)
    assert not get_request("k", False, None).HasField("early_refresh_beta")
    assert checked_beta(0) == 0.0 and checked_beta(1000) == 1000.0 and checked_beta(None) is None
    for bad in (-1, 1000.1, float("nan"), "2", True):
        with pytest.raises(ValueError):
            checked_beta(bad)
    assert checked_consistency(" Strong ") == "strong" and checked_consistency(None) is None
    with pytest.raises(ValueError):
        checked_consistency("linearizable")
    assert recompute_ms(0.0) == 1 and recompute_ms(0.2504) == 251
    assert set_request("k", "v", 1, 0, 0, None, False, 42).recompute_ms == 42


def test_consistency_metadata():
    plain = CallDefaults(version="v1")
    assert ("x-cache-consistency", "strong") in plain.headers_for("strong")
    assert plain.headers_for(None) == plain.headers == (("x-cache-version", "v1"),)
    strong = plain.merged(consistency="strong")
    assert strong.headers[-1] == ("x-cache-consistency", "strong")
    assert strong.headers_for("default")[-1] == ("x-cache-consistency", "default")
    assert strong.headers_for("strong") is strong.headers


def test_debug_mode_spellings():
    for text in ("off", "OFF", "turn_off", "turn-off", " Off "):
        assert DebugMode.parse(text) is DebugMode.OFF
    for text in ("write-only", "write_only", "WRITE_ONLY"):
        assert DebugMode.parse(text) is DebugMode.WRITE_ONLY
    for text in ("", "on", "write"):
        with pytest.raises(ValueError):
            DebugMode.parse(text)


def test_backoff_bounds():
    backoff = Backoff(attempts=40, initial=0.01, max=1.0)
    for failed in range(1, 40):
        base = min(0.01 * 2 ** (failed - 1), 1.0)
        for _ in range(20):
            assert base / 2 <= backoff.delay(failed) <= base
    assert Backoff.NONE.delay(1) == 0


def test_ttl_conversion():
    request = set_request("k", "v", 1.2, None, 0, None, False)
    assert (request.ttl_seconds, request.no_expiry) == (2, False)  # a fraction rounds up
    assert (request.grace_seconds, request.no_grace) == (0, True)
    request = set_request("k", b"v", None, 30, 5, b"lease", False)
    assert (request.ttl_seconds, request.no_expiry, request.grace_seconds) == (0, True, 30)
    assert request.lease_token == b"lease" and request.flags == 5
    assert touch_request("k", None).no_expiry
    assert touch_request("k", 0).ttl_seconds == 0
    with pytest.raises(TypeError):
        set_request("k", "v", "60", 0, 0, None, False)


def test_lock_release_decisions():
    from mintcache.lock import LockNotOwnedError, release_deadline

    mine = Lookup(key=b"k", outcome=Outcome.HIT, value=b"tok")
    theirs = Lookup(key=b"k", outcome=Outcome.HIT, value=b"other")
    gone = Lookup(key=b"k", outcome=Outcome.MISS)
    for lookup in (theirs, gone):
        with pytest.raises(LockNotOwnedError):
            release_deadline(lookup, b"tok", sent_at=0.0, timeout=30, now=1.0)
    assert release_deadline(mine, b"tok", sent_at=0.0, timeout=None, now=500.0) == 0.0
    # Taken at 0 for 30 s: memcached may expire it from 29 s; the delete must land before.
    assert release_deadline(mine, b"tok", sent_at=0.0, timeout=30, now=10.0) == pytest.approx(
        18.95
    )
    assert release_deadline(mine, b"tok", sent_at=0.0, timeout=30, now=28.96) is None
    assert release_deadline(mine, b"tok", sent_at=0.0, timeout=1, now=0.0) is None


def test_lock_attempts():
    from mintcache.lock import LockAttempts

    assert LockAttempts(blocking=False, blocking_timeout=None, sleep=0.1).wait() is None
    assert LockAttempts(blocking=True, blocking_timeout=None, sleep=0.1).wait() == 0.1
    assert LockAttempts(blocking=True, blocking_timeout=0, sleep=0.1).wait() is None
    assert 0 < LockAttempts(blocking=True, blocking_timeout=0.05, sleep=0.1).wait() <= 0.05


def test_codec_flags_and_refusals():
    from mintcache.codecs import Codec, CodecError, describe_flags

    pickled = Codec()
    data, flags = pickled.encode({"a": 1})
    assert flags == 1 and pickled.decode(data, flags) == {"a": 1}
    as_json = Codec("json", "zlib", min_bytes=10)
    data, flags = as_json.encode(["x" * 100])
    assert flags == 0x102 and describe_flags(flags) == "json + zlib"
    assert as_json.decode(data, flags) == ["x" * 100]
    assert Codec("json").decode(data, flags) == ["x" * 100]  # any compressor is read
    with pytest.raises(CodecError, match="written with the json serializer"):
        pickled.decode(data, flags)
    with pytest.raises(CodecError, match="unknown encoding"):
        pickled.decode(b"x", 0x10001)
    with pytest.raises(CodecError, match="unknown encoding"):
        pickled.decode(b"x", 0x901)
    with pytest.raises(CodecError, match="unknown encoding"):
        pickled.decode(b"x", 7)
    for bad in ({"serializer": "yaml"}, {"compressor": "bz2"}, {"min_bytes": -1}):
        with pytest.raises(CodecError):
            Codec(**bad)


def test_labels_are_checked_as_the_server_checks_them():
    from mintcache._core import label

    assert label("v", "r42.1_b-c", empty=False) == "r42.1_b-c"
    assert label("ns", "", empty=True) == ""
    for bad, empty in (("", False), ("a b", True), ("é", True), ("x" * 65, True)):
        with pytest.raises(ValueError):
            label("v", bad, empty=empty)
