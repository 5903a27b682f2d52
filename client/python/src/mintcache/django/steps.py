"""The steps of a Django cache operation, as ``MintCache`` writes each operation once: a
generator that yields steps (:class:`Call` a client method, :class:`Sleep`,
:class:`CallDefault` the caller's default) and does no I/O of its own, driven over the sync
client or the asyncio one. :class:`Fallback` is what an operation answers under
``IGNORE_EXCEPTIONS`` when the service failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from ..types import Lookup, Outcome


@dataclass(frozen=True, slots=True)
class Call:
    """Call ``method`` of the client; the step receives its answer, or its CacheError."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def call(method: str, *args: Any, **kwargs: Any) -> Call:
    return Call(method, args, kwargs)


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class CallDefault:
    """Call the caller's ``default`` (awaited when it returns a coroutine, in async methods)."""

    function: Callable[[], Any]


Steps = Generator[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Fallback:
    """What an operation answers under IGNORE_EXCEPTIONS when the service failed."""

    answer: str  # for the log
    value: Callable[[], Any]


def raise_not_found(key: Any) -> Callable[[], Any]:
    def fail() -> Any:
        raise ValueError(f"Key '{key}' not found")

    return fail


NONE = Fallback("nothing", lambda: None)
FALSE = Fallback("False", lambda: False)
ZERO = Fallback("0", lambda: 0)


def remaining(lookup: Lookup) -> int | None:
    """``ttl()``: seconds left in the value's timeout, ``None`` for no expiry, 0 when missing
    or past its timeout (a stale value served during GRACE)."""
    if not lookup.usable or lookup.outcome != Outcome.HIT:
        return 0
    if lookup.no_expiry:
        return None
    return max(lookup.ttl_seconds, 1)
