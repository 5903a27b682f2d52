"""What the sync and asyncio clients share, with no I/O: call defaults and their metadata,
endpoint parsing, request building, answer parsing, the attempts of a call (deadline from a
monotonic clock, which endpoint, circuit breaker, which failures may be retried), and the mint
protocol's decisions for ``get_or_compute``.

Nothing here holds a connection: the transports (:mod:`mintcache._transport`) own the channels
and hand over status codes.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import grpc

from ._breaker import Breaker, Permit
from .errors import CircuitOpen, DeadlineExceeded, NotFound, error_from_code
from .types import Backoff, DebugMode, ItemError, Key, Lookup, Outcome, SetItem, Value, WriteResult
from .v1 import cache_pb2 as pb

VERSION_HEADER = "x-cache-version"
NAMESPACE_HEADER = "x-cache-namespace"
DEBUG_HEADER = "x-cache-debug"
AUTHORIZATION_HEADER = "authorization"
DEGRADED_HEADER = "x-cache-degraded"
DEBUG_APPLIED_HEADER = "x-cache-debug-applied"
CONSISTENCY_HEADER = "x-cache-consistency"

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
    #: β of early refresh for reads that do not say (``None``: the server's).
    early_refresh_beta: float | None = None
    #: ``"strong"``: reads never use a replica's hot-key cache; ``"default"``; ``None``: not sent.
    consistency: str | None = None
    #: The request metadata, made (and checked) once: see :meth:`metadata`.
    headers: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    #: The metadata of a call that asks for another consistency than :attr:`consistency`.
    _by_consistency: dict[str, tuple[tuple[str, str], ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", self._headers(self.consistency))
        object.__setattr__(
            self,
            "_by_consistency",
            {c: self._headers(c) for c in CONSISTENCIES if c != self.consistency},
        )

    def __repr__(self) -> str:
        # The token never shows, not even in a traceback's locals.
        token = None if self.token is None else "<redacted>"
        return (
            f"CallDefaults(version={self.version!r}, namespace={self.namespace!r}, "
            f"token={token}, debug={self.debug!r}, timeout={self.timeout!r}, "
            f"lease_on_miss={self.lease_on_miss!r}, "
            f"early_refresh_beta={self.early_refresh_beta!r}, consistency={self.consistency!r})"
        )

    def merged(
        self,
        version: Any = UNSET,
        namespace: Any = UNSET,
        token: Any = UNSET,
        debug: Any = UNSET,
        timeout: Any = UNSET,
        lease_on_miss: Any = UNSET,
        early_refresh_beta: Any = UNSET,
        consistency: Any = UNSET,
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
        if early_refresh_beta is not UNSET:
            changes["early_refresh_beta"] = checked_beta(early_refresh_beta)
        if consistency is not UNSET:
            changes["consistency"] = checked_consistency(consistency)
        # Bad values are refused now (making the headers) rather than at the first call.
        return replace(self, **changes)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The request metadata, in a fixed order."""
        return self.headers

    def headers_for(self, consistency: str | None) -> tuple[tuple[str, str], ...]:
        """The metadata of a call that asks for ``consistency`` (``None``: the defaults')."""
        if consistency is None or consistency == self.consistency:
            return self.headers
        return self._by_consistency[checked_consistency(consistency)]

    def _headers(self, consistency: str | None) -> tuple[tuple[str, str], ...]:
        headers: list[tuple[str, str]] = []
        if self.version is not None:
            headers.append((VERSION_HEADER, label(VERSION_HEADER, self.version, empty=False)))
        if self.namespace is not None:
            headers.append((NAMESPACE_HEADER, label(NAMESPACE_HEADER, self.namespace, empty=True)))
        if self.debug is not None:
            headers.append((DEBUG_HEADER, self.debug.value))
        if self.token is not None:
            headers.append(
                (AUTHORIZATION_HEADER, "Bearer " + _ascii(AUTHORIZATION_HEADER, self.token))
            )
        if consistency is not None:
            headers.append((CONSISTENCY_HEADER, consistency))
        return tuple(headers)


#: What ``x-cache-consistency`` takes.
CONSISTENCIES = ("default", "strong")
#: The largest β of early refresh the server takes.
MAX_EARLY_REFRESH_BETA = 1000.0


def checked_consistency(value: Any) -> str | None:
    """``"strong"`` or ``"default"`` (any case), or ``None``; anything else is refused here
    rather than answered ``INVALID_ARGUMENT`` by the server on every call."""
    if value is None:
        return None
    normal = value.strip().lower() if isinstance(value, str) else None
    if normal not in CONSISTENCIES:
        raise ValueError(f"consistency: must be 'strong' or 'default' (or None), not {value!r}")
    return normal


def checked_beta(value: Any) -> float | None:
    """β of early refresh as the server takes it: a number in 0..=1000, or ``None`` (the
    server's)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= MAX_EARLY_REFRESH_BETA
    ):
        raise ValueError(
            "early_refresh_beta: must be a number in 0..=1000 (0: no early refresh) or None"
        )
    return float(value)


#: The largest ``uint32`` of the wire (``wait_ms``, ``recompute_ms``).
_MAX_U32 = 2**32 - 1


def milliseconds(value: Any, what: str) -> int:
    """Seconds (``None`` or 0: none) as whole milliseconds for a ``uint32`` field, rounded up
    so that a short wait is not turned into none, and capped at the field's largest."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{what}: must be seconds >= 0")
    if math.isinf(value):
        return _MAX_U32
    return min(math.ceil(value * 1000), _MAX_U32)


def checked_recompute_ms(value: Any) -> int:
    """``recompute_ms``: milliseconds >= 0 (0: the server measures), capped at ``uint32``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError("recompute_ms: must be milliseconds >= 0")
    if math.isinf(value):
        return _MAX_U32
    return min(math.ceil(value), _MAX_U32)


#: The longest version or namespace the server takes.
MAX_LABEL_BYTES = 64
_LABEL = re.compile(r"[A-Za-z0-9._-]*\Z")


def label(header: str, text: str, empty: bool) -> str:
    """A version (``empty=False``) or namespace, checked as the server checks it: up to 64
    characters of ``A-Z a-z 0-9 . _ -``. Refused here, a bad one is a configuration error at
    start-up rather than ``INVALID_ARGUMENT`` on every call."""
    if not isinstance(text, str):
        raise ValueError(f"{header}: must be text, not {type(text).__name__}")
    if not text and not empty:
        raise ValueError(f"{header}: must not be empty")
    if len(text) > MAX_LABEL_BYTES:
        raise ValueError(f"{header}: must be at most {MAX_LABEL_BYTES} characters, got {len(text)}")
    if not _LABEL.match(text):
        at = next(i for i, c in enumerate(text) if not _LABEL.match(c))
        raise ValueError(
            f"{header}: may only contain A-Z, a-z, 0-9, '.', '_' and '-' "
            f"(character {at + 1} is not one of them)"
        )
    return text


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
    recompute_ms: int = 0,
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
        "recompute_ms": checked_recompute_ms(recompute_ms),
    }


def get_request(
    key: Key,
    peek: bool,
    lease_on_miss: bool | None,
    wait: float | None = None,
    early_refresh_beta: float | None = None,
) -> pb.GetRequest:
    request = pb.GetRequest(key=as_bytes(key, "key"), peek=peek, wait_ms=milliseconds(wait, "wait"))
    if lease_on_miss is not None:
        request.lease_on_miss = lease_on_miss
    if early_refresh_beta is not None:
        request.early_refresh_beta = checked_beta(early_refresh_beta)
    return request


def get_many_request(
    keys: Iterable[Key],
    peek: bool,
    lease_on_miss: bool | None,
    early_refresh_beta: float | None = None,
) -> pb.GetManyRequest:
    request = pb.GetManyRequest(keys=[as_bytes(k, "key") for k in keys], peek=peek)
    if lease_on_miss is not None:
        request.lease_on_miss = lease_on_miss
    if early_refresh_beta is not None:
        request.early_refresh_beta = checked_beta(early_refresh_beta)
    return request


def set_request(
    key: Key,
    value: Value,
    ttl: float | None,
    grace: float | None,
    flags: int,
    lease: bytes | None,
    counter: bool,
    recompute_ms: int = 0,
) -> pb.SetRequest:
    return pb.SetRequest(
        lease_token=lease or b"",
        **set_fields(key, value, ttl, grace, flags, counter, recompute_ms),
    )


def add_request(
    key: Key,
    value: Value,
    ttl: float | None,
    grace: float | None,
    flags: int,
    counter: bool,
    recompute_ms: int = 0,
) -> pb.AddRequest:
    return pb.AddRequest(**set_fields(key, value, ttl, grace, flags, counter, recompute_ms))


def delete_request(key: Key, lease: bytes | None) -> pb.DeleteRequest:
    return pb.DeleteRequest(key=as_bytes(key, "key"), lease_token=lease or b"")


def set_many_request(items: Iterable[SetItem]) -> pb.SetManyRequest:
    return pb.SetManyRequest(
        items=[
            pb.SetManyItem(
                lease_token=item.lease or b"",
                **set_fields(
                    item.key,
                    item.value,
                    item.ttl,
                    item.grace,
                    item.flags,
                    item.counter,
                    item.recompute_ms,
                ),
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


def increment_not_found(error: NotFound) -> NotFound:
    """The server's ``NOT_FOUND`` for ``Increment`` names the proto field (``initial_value``);
    a Python caller passes ``initial=``."""
    details = error.details.replace("pass initial_value", "pass initial=")
    return NotFound(details)


#: gRPC's health service (grpc.health.v1), called without its generated stubs: the request
#: and the answer are one field each.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def health_request(service: str) -> bytes:
    """A serialized ``HealthCheckRequest{service}``."""
    name = service.encode("utf-8")
    if not name:
        return b""
    if len(name) > 127:
        raise ValueError("health: service name too long")
    return b"\x0a" + bytes([len(name)]) + name


def health_status(answer: bytes) -> str:
    """The status of a serialized ``HealthCheckResponse`` (field 1, an enum; absent = 0)."""
    if len(answer) >= 2 and answer[0] == 0x08 and answer[1] < 0x80:
        return _HEALTH_STATUS.get(answer[1], str(answer[1]))
    if not answer:
        return "UNKNOWN"
    raise ProtocolError("unexpected health answer")


_OUTCOMES = {int(o): o for o in Outcome}


def _outcome(wire: int) -> Outcome | None:
    return _OUTCOMES.get(wire)


def _item_error(result: Any) -> ItemError | None:
    if not result.HasField("error"):
        return None
    return ItemError(code=_status_code(result.error.code), message=result.error.message)


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(number: int) -> grpc.StatusCode:
    return _STATUS_CODES.get(number, grpc.StatusCode.UNKNOWN)


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
    """Compute the value; store it with ``lease`` unless ``write_back`` is false. ``fill``: the
    lease is a cold-miss fill's (``MISS``): if computing fails, release it (``Delete`` with the
    lease) so that one waiting reader takes the fill over at once."""

    lease: bytes | None
    write_back: bool
    fill: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    """Another caller is filling the key: read again after ``seconds``."""

    seconds: float


#: How long ``get_or_compute`` waits, in all, for another caller's fill (seconds): longer than
#: the server's default fill timeout (5 s), after which the server hands the fill to one waiter.
DEFAULT_WAIT = 10.0


def checked_wait(value: Any) -> float:
    """``get_or_compute``'s wait budget: seconds >= 0 (0: never ask the server to hold a read)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError("wait: must be seconds >= 0")
    return float(value)


def held_wait(wait: float | None, timeout: float | None) -> float | None:
    """The wait a read asks for (``wait_ms``), within a call of ``timeout`` seconds: the server
    cuts a wait to the call's deadline less a few milliseconds of its own; this keeps a tenth of
    the deadline, at most 100 ms, so that the ``PENDING`` answer reaches a busy client in time
    rather than ``DEADLINE_EXCEEDED``."""
    if wait is None:
        return None
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
        raise ValueError("wait: must be seconds >= 0")
    if timeout is None:
        return wait
    return max(min(wait, timeout - min(timeout / 10, 0.1)), 0.0)


class MintReads:
    """Decides, read after read, what ``get_or_compute`` does:

    - ``HIT``, ``STALE`` → the cached (possibly stale) value;
    - ``REFRESH`` (this caller won the refresh) and ``MISS`` → compute, store with the lease
      (a ``MISS`` lease is a fill's: released if computing fails);
    - ``PENDING`` → read again. Each read asks the server to hold it until the fill lands
      (:meth:`next_wait`: what is left of ``wait`` seconds; the read cuts it to its deadline),
      so a waiter usually makes one read; a read that still answers ``PENDING`` (its hold ended,
      or a server that does not hold) is followed by another no sooner than the ``pending``
      schedule says after it was sent. After ``wait`` seconds, or ``pending.attempts`` reads,
      compute and store without a lease (the filler's lease is not ours);
    - a degraded read (the server's memcached failed) → compute, and do not write back.

    ``wait`` 0: reads are never held, and ``pending`` alone paces them (polling).
    """

    __slots__ = ("_pending", "_wait", "_reads", "_until", "_sent_at")

    def __init__(self, pending: Backoff, wait: float = 0.0) -> None:
        self._pending = pending
        self._wait = wait
        self._reads = 0
        now = monotonic()
        self._until = now + wait
        self._sent_at = now

    def next_wait(self) -> float:
        """Seconds the next read may be held for the fill (``GetRequest.wait_ms``); call it
        just before sending that read."""
        now = self._sent_at = monotonic()
        if self._wait <= 0:
            return 0.0
        return max(self._until - now, 0.0)

    def decide(self, lookup: Lookup) -> Cached | Compute | Wait:
        self._reads += 1
        if lookup.usable:
            return Cached(lookup)
        if lookup.outcome == Outcome.PENDING:
            now = monotonic()
            spent = self._wait > 0 and now >= self._until
            if spent or self._reads >= max(self._pending.attempts, 1):
                return Compute(lease=None, write_back=True)
            return Wait(max(self._sent_at + self._pending.delay(self._reads) - now, 0.0))
        fill = lookup.outcome == Outcome.MISS and lookup.lease is not None
        return Compute(lease=lookup.lease, write_back=not lookup.degraded, fill=fill)


def fill_protection(per_call: bool | None, default: bool | None) -> bool:
    """Cold-miss protection of ``get_or_compute``'s reads: on unless the call (or, failing
    that, the client) says ``False``: the waiting it enables is what makes one caller compute."""
    if per_call is not None:
        return per_call
    return default is not False


def recompute_ms(seconds: float) -> int:
    """A measured computation as ``recompute_ms``: at least 1 (0 would mean "not measured")."""
    return max(1, checked_recompute_ms(seconds * 1000))


# --- the attempts of a call ---------------------------------------------------------------------

#: The clock of every deadline, wait and cool-off: monotonic, and taken at import so that a
#: test patching ``time.monotonic`` or ``time.time`` (Django's own suite patches ``time.time``)
#: cannot move the deadlines of calls.
monotonic = time.monotonic
_wall = time.time

#: Failures that say an endpoint is gone (they count towards opening its circuit). Any other
#: answer, errors included, came from a server.
ENDPOINT_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def deadline_after(timeout: float | None) -> float | None:
    """The :func:`monotonic` time at which a call with this timeout ends (``None``: never)."""
    return None if timeout is None else monotonic() + timeout


def time_left(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` for the next attempt (``None``: no deadline). A call
    whose deadline has passed is never sent: sent, it could still race the reply past gRPC's
    own timer."""
    if deadline is None:
        return None
    left = deadline - monotonic()
    if left <= 0:
        raise DeadlineExceeded("deadline passed before the call was sent")
    return left


def grpc_timeout(left: float | None) -> float | None:
    """The ``timeout`` to give grpcio for ``left`` seconds. grpcio turns a timeout into a
    deadline with ``time.time() + timeout`` (its C core then keeps it on its own clock); when
    ``time.time`` is patched (a test freezing time), that would be a deadline years away or
    long past, so the difference between the patched and the real clock is added back."""
    if left is None or time.time is _wall:
        return left
    return left + (_wall() - time.time())


class Endpoints:
    """The endpoints of a client, in turn, with the circuit of each (``breaker`` ``None``: no
    circuit breaker). Pure: the client keeps the channel of endpoint ``i`` at index ``i``."""

    __slots__ = ("targets", "circuits", "_turn")

    def __init__(self, targets: list[str], breaker: Breaker | None) -> None:
        self.targets = targets
        self.circuits = None if breaker is None else [breaker.circuit(t) for t in targets]
        self._turn = itertools.count()

    def pick(self, now: float) -> tuple[int, Permit | None]:
        """The next endpoint whose circuit lets a call go (round robin), with its permit.
        Raises :class:`~mintcache.CircuitOpen` when every circuit is open."""
        start = next(self._turn)
        count = len(self.targets)
        if self.circuits is None:
            return start % count, None
        for step in range(count):
            index = (start + step) % count
            permit = self.circuits[index].allow(now)
            if permit is not None:
                return index, permit
        raise CircuitOpen(self._open_details(now))

    def any_callable(self, now: float) -> bool:
        """Whether an attempt could be sent now (some circuit closed, or due a probe)."""
        if self.circuits is None:
            return True
        return any(c.state != "open" or c.retry_in(now) == 0 for c in self.circuits)

    def _open_details(self, now: float) -> str:
        assert self.circuits is not None
        parts = [
            f"{c.endpoint} (last: {c.last_error or 'unknown'}; next probe in "
            f"{c.retry_in(now):.2f} s)"
            for c in self.circuits
        ]
        return "not sent: the circuit breaker is open for " + ", ".join(parts)


class Attempts:
    """The attempts of one call: its deadline (monotonic), the endpoint and timeout of each
    attempt, the circuit breaker's bookkeeping, and what follows a failure (a retry after a
    jittered wait, or the error). The clients' call loops are this, around one transport call::

        attempts = Attempts(endpoints, timeout, retry, read)
        while True:
            index, timeout, probe = attempts.start()
            if probe:  # half-open: ask the endpoint's health first, briefly
                ok, timeout = attempts.probed(code of health(index, timeout) or None)
                if not ok: continue
            try: answer = call(index, timeout)
            except Failed as e: sleep(attempts.failed(e.code, e.details, e, e.never_sent))
            except BaseException: attempts.abandoned(); raise
            else: attempts.succeeded(); return answer
    """

    __slots__ = ("_endpoints", "_retry", "_read", "_deadline", "_failed", "_permit")

    def __init__(
        self, endpoints: Endpoints, timeout: float | None, retry: Backoff, read: bool
    ) -> None:
        self._endpoints = endpoints
        self._retry = retry
        self._read = read
        self._deadline = deadline_after(timeout)
        self._failed = 0
        self._permit: Permit | None = None

    def start(self) -> tuple[int, float | None, bool]:
        """The endpoint (index) and grpcio timeout of the next attempt, and whether the caller
        must probe that endpoint first (its circuit is half-open: ask its health with this
        timeout, then report with :meth:`probed`). Raises
        :class:`~mintcache.DeadlineExceeded` when the deadline has passed and
        :class:`~mintcache.CircuitOpen` when no endpoint may be called."""
        left = time_left(self._deadline)
        index, self._permit = self._endpoints.pick(monotonic())
        if self._permit is not None and self._permit.probe:
            probe = self._permit.circuit.probe_timeout
            return index, probe if left is None else min(left, probe), True
        return index, left, False

    def probed(self, code: grpc.StatusCode | None, details: str = "") -> tuple[bool, float | None]:
        """The probe ended: ``code`` ``None`` when it was answered (or any code but an endpoint
        failure: an error is an answer too). Returns ``(True, timeout)``: the circuit is
        closed, send the call with this timeout; or ``(False, None)``: the circuit opened
        again, call :meth:`start` for another endpoint (or :class:`~mintcache.CircuitOpen`)."""
        permit, self._permit = self._permit, None
        if permit is None:
            return True, time_left(self._deadline)
        failed = code is not None and code in ENDPOINT_FAILURES
        error = "" if code is None else f"{code.name}: {details} (health probe)"
        permit.circuit.record(permit, failed, monotonic(), error)
        if failed:
            return False, None
        left = time_left(self._deadline)
        self._permit = permit.circuit.allow(monotonic())
        return True, left

    def succeeded(self) -> None:
        """The attempt got an answer."""
        self._end(failed=False)

    def abandoned(self) -> None:
        """The attempt ended without telling anything about its endpoint (cancelled)."""
        permit, self._permit = self._permit, None
        if permit is not None:
            permit.circuit.abandon(permit)

    def failed(
        self,
        code: grpc.StatusCode | None,
        details: str | None,
        cause: BaseException | None = None,
        never_sent: bool | None = None,
    ) -> float:
        """The attempt failed with ``code``: returns the seconds to wait before the next
        attempt, or raises the error the caller gets. ``never_sent``: the transport knows
        that no connection could be made (``None``: judge by grpcio's ``details``)."""
        code = code or grpc.StatusCode.UNKNOWN
        details = details or ""
        counted = code in ENDPOINT_FAILURES
        self._end(failed=counted, error=f"{code.name}: {details}")
        self._failed += 1
        if never_sent is None:
            retry = may_retry(self._read, code, details)
        else:
            retry = code == grpc.StatusCode.UNAVAILABLE and (self._read or never_sent)
        if self._failed >= self._retry.attempts or not retry:
            raise error_from_code(code, details) from cause
        if not self._endpoints.any_callable(monotonic()):
            # Every circuit is open: a retry could only fail without being sent.
            raise error_from_code(code, details) from cause
        delay = self._retry.delay(self._failed)
        if self._deadline is not None and monotonic() + delay >= self._deadline:
            raise DeadlineExceeded(
                f"deadline passed while retrying ({code.name}: {details})"
            ) from cause
        return delay

    def _end(self, failed: bool, error: str = "") -> None:
        permit, self._permit = self._permit, None
        if permit is not None:
            permit.circuit.record(permit, failed, monotonic(), error)
