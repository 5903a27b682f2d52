"""The typed values of the clients' API: outcomes, lookups, debug modes, batch items and
results, retry schedules and TLS settings. Pure data: no I/O happens here (TLS files are read
when a client is built)."""

from __future__ import annotations

import enum
import os
import random
from dataclasses import dataclass
from typing import ClassVar, Union

import grpc

from .errors import CacheError, error_from_code

__all__ = [
    "Outcome",
    "DebugMode",
    "Lookup",
    "ItemError",
    "SetItem",
    "WriteResult",
    "Backoff",
    "TLS",
    "Key",
    "Value",
]

#: A key: bytes, or text (sent as UTF-8).
Key = Union[bytes, bytearray, memoryview, str]
#: A value: bytes, or text (sent as UTF-8).
Value = Union[bytes, bytearray, memoryview, str]


class Outcome(enum.IntEnum):
    """What a read found, and what the caller should do about it (the wire enum's values)."""

    #: A fresh value: use it.
    HIT = 1
    #: Past its soft expiry (or invalidated) and another caller is refreshing it: use the value.
    STALE = 2
    #: Stale, and this caller won the refresh: recompute and set with the lease. The stale value
    #: comes along. At most one caller per stale period gets it, fleet-wide.
    REFRESH = 3
    #: Nothing cached: compute and set (with the lease, if one came).
    MISS = 4
    #: Nothing cached and another caller is filling it (cold-miss protection): read again,
    #: asking the server to hold the read until the fill lands (``get(..., wait=...)``).
    PENDING = 5

    @property
    def usable(self) -> bool:
        """Whether a Django-style get returns the value: ``HIT`` and ``STALE``."""
        return self in (Outcome.HIT, Outcome.STALE)

    @property
    def has_value(self) -> bool:
        """Whether the answer carries a (possibly stale) value: ``HIT``, ``STALE``, ``REFRESH``."""
        return self in (Outcome.HIT, Outcome.STALE, Outcome.REFRESH)


class DebugMode(str, enum.Enum):
    """A per-call debug mode (``x-cache-debug``), honoured for admin callers only.

    ``OFF``: reads miss without touching the cache, writes are accepted and not performed.
    ``WRITE_ONLY``: reads miss, writes go through.
    """

    OFF = "off"
    WRITE_ONLY = "write-only"

    @classmethod
    def parse(cls, text: str | DebugMode) -> DebugMode:
        """Accepts ``off`` / ``write-only`` and the original package's ``turn_off`` /
        ``write_only``, in any case. Raises :class:`ValueError` for anything else."""
        if isinstance(text, DebugMode):
            return text
        normal = text.strip().lower().replace("_", "-")
        if normal in ("off", "turn-off"):
            return cls.OFF
        if normal == "write-only":
            return cls.WRITE_ONLY
        raise ValueError(f"unknown debug mode {text!r} (off, write-only, turn_off, write_only)")


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one key of a batched call failed (the rest of the batch is unaffected)."""

    code: grpc.StatusCode
    message: str

    def as_exception(self) -> CacheError:
        """The error this would be as a single call."""
        return error_from_code(self.code, self.message)


@dataclass(frozen=True, slots=True)
class Lookup:
    """The answer to a read of one key.

    ``value`` is set for ``HIT``, ``STALE`` and ``REFRESH``. ``lease`` (``REFRESH``, ``MISS``)
    goes back in ``set(..., lease=...)``. ``degraded`` means the server's memcached failed and
    the read was answered as a miss: do not write a computed value back. In batched reads,
    ``error`` is set when this key failed (the other fields are then empty).
    """

    key: bytes
    outcome: Outcome | None
    value: bytes = b""
    flags: int = 0
    ttl_seconds: int = 0
    lease: bytes | None = None
    no_expiry: bool = False
    grace_seconds: int = 0
    counter: bool = False
    degraded: bool = False
    error: ItemError | None = None

    @property
    def usable(self) -> bool:
        """``HIT`` or ``STALE`` (and no error): the value is the answer."""
        return self.error is None and self.outcome is not None and self.outcome.usable


@dataclass(frozen=True, slots=True)
class SetItem:
    """One value of ``set_many``. ``ttl``/``grace`` as in ``set``: ``0`` is the server's default,
    ``None`` means never expires / no grace period. ``recompute_ms`` as in ``set``."""

    key: Key
    value: Value
    ttl: float | None = 0
    grace: float | None = 0
    flags: int = 0
    lease: bytes | None = None
    counter: bool = False
    recompute_ms: int = 0


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The result of one key of ``set_many`` / ``delete_many``: ``ok`` is ``stored`` /
    ``deleted``; ``error`` is set when this key failed."""

    key: bytes
    ok: bool
    error: ItemError | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """A bounded retry schedule: at most ``attempts`` tries, waiting ``initial``,
    ``2 * initial``, ... seconds between them, capped at ``max``, each wait jittered down to
    between half and all of it (so that clients that failed together do not retry together)."""

    attempts: int
    initial: float
    max: float

    #: No retries.
    NONE: ClassVar[Backoff]
    #: The default for ``UNAVAILABLE``: 4 attempts, waits from 50 ms up to 1 s.
    UNAVAILABLE: ClassVar[Backoff]
    #: The default for ``PENDING`` in ``get_or_compute``: at most 20 reads, each sent no sooner
    #: than 25 ms, 50 ms, ... up to 250 ms after the one before. Reads the server holds for the
    #: fill (``wait``) take longer than that by themselves; against a server that answers
    #: ``PENDING`` at once (``wait`` 0), this is polling for about 2.5 to 4.5 s, then the
    #: caller computes the value itself.
    PENDING: ClassVar[Backoff]

    def delay(self, failed: int) -> float:
        """The wait (seconds) after failed attempt number ``failed`` (1-based)."""
        exponent = min(max(failed - 1, 0), 31)
        base = min(self.initial * (2**exponent), self.max)
        return base * (0.5 + random.random() / 2)


Backoff.NONE = Backoff(attempts=1, initial=0.0, max=0.0)
Backoff.UNAVAILABLE = Backoff(attempts=4, initial=0.05, max=1.0)
Backoff.PENDING = Backoff(attempts=20, initial=0.025, max=0.25)


PemSource = Union[bytes, str, "os.PathLike[str]", None]


@dataclass(frozen=True, slots=True)
class TLS:
    """TLS settings. Each PEM is given as bytes (the PEM itself) or a path to a file.

    ``ca``: the CA bundle that signed the server's certificate (default: the system roots).
    ``cert`` and ``key``: a client certificate for mutual TLS. ``server_name``: the name to
    check the server's certificate against, when it differs from the endpoint's host.
    """

    ca: PemSource = None
    cert: PemSource = None
    key: PemSource = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Reads the files and builds grpcio's channel credentials."""
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLS: a client certificate needs both cert and key")
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca),
            private_key=_pem(self.key),
            certificate_chain=_pem(self.cert),
        )


def _pem(source: PemSource) -> bytes | None:
    if source is None:
        return None
    if isinstance(source, bytes):
        return source
    with open(source, "rb") as f:
        return f.read()
