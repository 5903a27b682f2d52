"""What the sync and asyncio clients share, with no I/O: call defaults and their metadata,
endpoint parsing, request building, answer parsing, which failures may be retried, and the mint
protocol's decisions for ``get_or_compute``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import grpc

from .errors import DeadlineExceeded, error_from_rpc
from .types import Backoff, DebugMode, ItemError, Key, Lookup, Outcome, SetItem, Value, WriteResult
from .v1 import cache_pb2 as pb

VERSION_HEADER = "x-cache-version"
NAMESPACE_HEADER = "x-cache-namespace"
DEBUG_HEADER = "x-cache-debug"
AUTHORIZATION_HEADER = "authorization"
DEGRADED_HEADER = "x-cache-degraded"
DEBUG_APPLIED_HEADER = "x-cache-debug-applied"

#: grpcio's default is 4 MiB; the server's largest message is configurable, and a batched
#: read of large values can exceed the default.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024

#: Marks "argument not given" in ``with_options`` (``None`` is a meaningful value there).
UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class CallDefaults:
    """What every call sends unless overridden."""

    version: str | None = None
    namespace: str | None = None
    token: str | None = None
    debug: DebugMode | None = None
    timeout: float | None = 5.0
    lease_on_miss: bool | None = None

    def __repr__(self) -> str:
        # The token never shows, not even in a traceback's locals.
        token = None if self.token is None else "<redacted>"
        return (
            f"CallDefaults(version={self.version!r}, namespace={self.namespace!r}, "
            f"token={token}, debug={self.debug!r}, timeout={self.timeout!r}, "
            f"lease_on_miss={self.lease_on_miss!r})"
        )

    def merged(
        self,
        version: Any = UNSET,
        namespace: Any = UNSET,
        token: Any = UNSET,
        debug: Any = UNSET,
        timeout: Any = UNSET,
        lease_on_miss: Any = UNSET,
    ) -> CallDefaults:
        changes: dict[str, Any] = {}
        for name, value in (
            ("version", version),
            ("namespace", namespace),
            ("token", token),
            ("timeout", timeout),
            ("lease_on_miss", lease_on_miss),
        ):
            if value is not UNSET:
                changes[name] = value
        if debug is not UNSET:
            changes["debug"] = None if debug is None else DebugMode.parse(debug)
        merged = replace(self, **changes)
        merged.metadata()  # refuse bad values now rather than at the first call
        return merged

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The request metadata, in a fixed order."""
        headers: list[tuple[str, str]] = []
        if self.version is not None:
            headers.append((VERSION_HEADER, _ascii(VERSION_HEADER, self.version)))
        if self.namespace is not None:
            headers.append((NAMESPACE_HEADER, _ascii(NAMESPACE_HEADER, self.namespace)))
        if self.debug is not None:
            headers.append((DEBUG_HEADER, self.debug.value))
        if self.token is not None:
            headers.append(
                (AUTHORIZATION_HEADER, "Bearer " + _ascii(AUTHORIZATION_HEADER, self.token))
            )
        return tuple(headers)


def _ascii(header: str, text: str) -> str:
    # gRPC text metadata is printable ASCII; say which setting is wrong without echoing it
    # (it may be a token).
    if not isinstance(text, str) or not all(" " <= c <= "~" for c in text):
        raise ValueError(f"{header}: metadata must be printable ASCII text")
    return text


def channel_targets(endpoints: str | Sequence[str], tls: bool) -> tuple[list[str], bool]:
    """Splits the endpoints (a list, or one string separated by ``,`` or ``;``) into grpcio
    targets, and says whether TLS is on: ``https://`` endpoints turn it on, ``http://`` ones
    must not be mixed with TLS. Other targets (``host:port``, ``dns:///host:port``,
    ``unix:/path``) pass through."""
    if isinstance(endpoints, str):
        items = [e for part in endpoints.replace(";", ",").split(",") if (e := part.strip())]
    else:
        items = [str(e).strip() for e in endpoints if str(e).strip()]
    if not items:
        raise ValueError("at least one endpoint is needed (host:port)")
    targets = []
    schemes = set()
    for item in items:
        lower = item.lower()
        for scheme in ("https://", "http://"):
            if lower.startswith(scheme):
                schemes.add(scheme)
                item = item[len(scheme) :].rstrip("/")
                break
        targets.append(item)
    if "https://" in schemes:
        if "http://" in schemes:
            raise ValueError("endpoints mix http:// and https://")
        tls = True
    elif "http://" in schemes and tls:
        raise ValueError("http:// endpoint with TLS settings; use https:// or host:port")
    return targets, tls


def channel_options(tls_server_name: str | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        ("grpc.primary_user_agent", "mintcache-python"),
    ]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return options


def as_bytes(data: Key | Value, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


def _seconds(value: float | None, what: str) -> tuple[int, bool]:
    """``None`` → (0, True): the "never" flag; a number → whole seconds, rounded up so that a
    fraction of a second is not turned into the server's default (0)."""
    if value is None:
        return 0, True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None")
    if value <= 0:
        return int(value) if value == int(value) else math.floor(value), False
    return math.ceil(value), False


def set_fields(
    key: Key,
    value: Value,
    ttl: float | None,
    grace: float | None,
    flags: int,
    counter: bool,
) -> dict[str, Any]:
    ttl_seconds, no_expiry = _seconds(ttl, "ttl")
    grace_seconds, no_grace = _seconds(grace, "grace")
    return {
        "key": as_bytes(key, "key"),
        "value": as_bytes(value, "value"),
        "ttl_seconds": ttl_seconds,
        "no_expiry": no_expiry,
        "grace_seconds": grace_seconds,
        "no_grace": no_grace,
        "flags": flags,
        "counter": counter,
    }


def get_request(key: Key, peek: bool, lease_on_miss: bool | None) -> pb.GetRequest:
    request = pb.GetRequest(key=as_bytes(key, "key"), peek=peek)
    if lease_on_miss is not None:
        request.lease_on_miss = lease_on_miss
    return request


def get_many_request(
    keys: Iterable[Key], peek: bool, lease_on_miss: bool | None
) -> pb.GetManyRequest:
    request = pb.GetManyRequest(keys=[as_bytes(k, "key") for k in keys], peek=peek)
    if lease_on_miss is not None:
        request.lease_on_miss = lease_on_miss
    return request


def set_request(
    key: Key,
    value: Value,
    ttl: float | None,
    grace: float | None,
    flags: int,
    lease: bytes | None,
    counter: bool,
) -> pb.SetRequest:
    return pb.SetRequest(
        lease_token=lease or b"", **set_fields(key, value, ttl, grace, flags, counter)
    )


def add_request(
    key: Key, value: Value, ttl: float | None, grace: float | None, flags: int, counter: bool
) -> pb.AddRequest:
    return pb.AddRequest(**set_fields(key, value, ttl, grace, flags, counter))


def set_many_request(items: Iterable[SetItem]) -> pb.SetManyRequest:
    return pb.SetManyRequest(
        items=[
            pb.SetManyItem(
                lease_token=item.lease or b"",
                **set_fields(item.key, item.value, item.ttl, item.grace, item.flags, item.counter),
            )
            for item in items
        ]
    )


def touch_request(key: Key, ttl: float | None) -> pb.TouchRequest:
    ttl_seconds, no_expiry = _seconds(ttl, "ttl")
    return pb.TouchRequest(key=as_bytes(key, "key"), ttl_seconds=ttl_seconds, no_expiry=no_expiry)


def increment_request(
    key: Key, delta: int, initial: int | None, ttl: float | None
) -> pb.IncrementRequest:
    ttl_seconds, no_expiry = _seconds(ttl, "ttl")
    request = pb.IncrementRequest(
        key=as_bytes(key, "key"), delta=delta, ttl_seconds=ttl_seconds, no_expiry=no_expiry
    )
    if initial is not None:
        request.initial_value = initial
    return request


def _outcome(wire: int) -> Outcome | None:
    try:
        return Outcome(wire)
    except ValueError:
        return None


def _item_error(result: Any) -> ItemError | None:
    if not result.HasField("error"):
        return None
    return ItemError(code=_status_code(result.error.code), message=result.error.message)


def _status_code(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def lookup_from(key: bytes, answer: Any, degraded: bool) -> Lookup:
    """A :class:`Lookup` from a ``GetResponse`` or a ``GetManyResult``."""
    outcome = _outcome(answer.outcome)
    if outcome is None:
        raise ProtocolError(f"unknown outcome {answer.outcome}")
    return Lookup(
        key=key,
        outcome=outcome,
        value=answer.value,
        flags=answer.flags,
        ttl_seconds=answer.ttl_seconds,
        lease=answer.lease_token or None,
        no_expiry=answer.no_expiry,
        grace_seconds=answer.grace_seconds,
        counter=answer.counter,
        degraded=degraded,
    )


def lookups_from(response: pb.GetManyResponse, degraded: bool) -> list[Lookup]:
    lookups = []
    for result in response.results:
        error = _item_error(result)
        if error is not None:
            lookups.append(Lookup(key=result.key, outcome=None, error=error))
        else:
            lookups.append(lookup_from(result.key, result, degraded))
    return lookups


def write_results(response: Any, flag: str) -> list[WriteResult]:
    return [
        WriteResult(key=r.key, ok=bool(getattr(r, flag)), error=_item_error(r))
        for r in response.results
    ]


def is_degraded(metadata: Any) -> bool:
    for key, value in metadata or ():
        if key == DEGRADED_HEADER and value in ("1", b"1"):
            return True
    return False


class ProtocolError(Exception):
    """The server sent something this client does not understand."""


# --- retries -----------------------------------------------------------------------------------

_CONNECT_FAILURES = (
    "failed to connect to all addresses",
    "errors resolving",
    "dns resolution failed",
)


def failed_before_server(code: grpc.StatusCode | None, details: str | None) -> bool:
    """Whether a failure happened before the call reached any server (no connection could be
    made), so that even a write may be sent again: it cannot have been applied."""
    if code != grpc.StatusCode.UNAVAILABLE:
        return False
    text = (details or "").lower()
    return any(marker in text for marker in _CONNECT_FAILURES)


def may_retry(is_read: bool, code: grpc.StatusCode | None, details: str | None) -> bool:
    """Reads are retried on any ``UNAVAILABLE``: repeating one cannot change what is stored.
    Writes only when they never reached a server: a write that may have been applied (a
    ``Set`` with a lease, an ``Increment``, a ``Delete`` whose answer would change) is never
    sent twice."""
    if is_read:
        return code == grpc.StatusCode.UNAVAILABLE
    return failed_before_server(code, details)


# --- the mint protocol, from the caller's side -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cached:
    """Use this lookup's value."""

    lookup: Lookup


@dataclass(frozen=True, slots=True)
class Compute:
    """Compute the value; store it with ``lease`` unless ``write_back`` is false."""

    lease: bytes | None
    write_back: bool


@dataclass(frozen=True, slots=True)
class Wait:
    """Another caller is filling the key: read again after ``seconds``."""

    seconds: float


class MintReads:
    """Decides, read after read, what ``get_or_compute`` does:

    - ``HIT``, ``STALE`` → the cached (possibly stale) value;
    - ``REFRESH`` (this caller won the refresh) and ``MISS`` → compute, store with the lease;
    - ``PENDING`` → wait (jittered backoff) and read again; after the last read, compute and
      store without a lease (the filler's lease is not ours);
    - a degraded read (the server's memcached failed) → compute, and do not write back.
    """

    def __init__(self, pending: Backoff) -> None:
        self._pending = pending
        self._reads = 0

    def decide(self, lookup: Lookup) -> Cached | Compute | Wait:
        self._reads += 1
        if lookup.usable:
            return Cached(lookup)
        if lookup.outcome == Outcome.PENDING:
            if self._reads >= max(self._pending.attempts, 1):
                return Compute(lease=None, write_back=True)
            return Wait(self._pending.delay(self._reads))
        return Compute(lease=lookup.lease, write_back=not lookup.degraded)


def deadline_after(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` at which a call with this timeout ends (``None``: never)."""
    return None if timeout is None else time.monotonic() + timeout


def time_left(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` for the next attempt (``None``: no deadline). A call
    whose deadline has passed is never sent: sent, it could still race the reply past gRPC's
    own timer."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("deadline passed before the call was sent")
    return left


def retry_delay(
    rpc_error: grpc.RpcError, failed: int, retry: Backoff, read: bool, deadline: float | None
) -> float:
    """Seconds to wait before the next attempt, after ``failed`` attempts ended with
    ``rpc_error``; raises what the caller gets when there is no next attempt."""
    code, details = rpc_error.code(), rpc_error.details()
    if failed >= retry.attempts or not may_retry(read, code, details):
        raise error_from_rpc(rpc_error) from rpc_error
    delay = retry.delay(failed)
    if deadline is not None and time.monotonic() + delay >= deadline:
        raise DeadlineExceeded(
            f"deadline passed while retrying ({code.name}: {details})"
        ) from rpc_error
    return delay
