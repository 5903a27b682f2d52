"""The package's pure parts, without a server: endpoint parsing, metadata, retry rules, the
mint decisions of get_or_compute, debug-mode spellings, backoff bounds, ttl conversion."""

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
    failed_before_server,
    may_retry,
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
