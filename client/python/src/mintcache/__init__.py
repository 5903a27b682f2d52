"""Python client for mintcache, a versioned mint cache over memcached served over gRPC.

- :class:`Client` (sync) and :class:`AsyncClient` (asyncio, grpc.aio): one typed method per
  RPC, default and per-call version / namespace / token / debug mode / deadline, several
  endpoints, TLS, bounded retries where a retry cannot change the answer, and
  ``get_or_compute``, which follows the mint protocol so that an expiring key is recomputed
  once, fleet-wide.
- :class:`Breaker`: the circuit breaker's settings (one circuit per endpoint: after a few
  consecutive ``UNAVAILABLE`` / ``DEADLINE_EXCEEDED`` failures, calls fail at once for a
  cool-off, then one probe goes through).
- :mod:`mintcache.lock`: :class:`Lock`, a distributed lock (``client.lock(key, timeout)``).
- :mod:`mintcache.codecs`: :class:`~mintcache.codecs.Codec`, values to bytes (pickle, JSON,
  msgpack; zlib, zstd, lz4), as the Django backend stores them.
- :mod:`mintcache.types`: :class:`Outcome`, :class:`Lookup`, :class:`DebugMode`,
  :class:`SetItem`, :class:`WriteResult`, :class:`ItemError`, :class:`Backoff`, :class:`TLS`.
- :mod:`mintcache.errors`: :class:`CacheError` and one subclass per gRPC status code
  (and :class:`CircuitOpen`, an :class:`Unavailable` raised without a call).
- :mod:`mintcache.django`: the Django cache backend ``MintCache`` and ``CacheDebugMiddleware``.
- :mod:`mintcache.v1`: the generated protobuf messages and gRPC stubs.
- ``TRANSPORT``: how calls reach the server by default here: ``"native"`` (the Rust
  extension ``mintcache._native``, on the ``mintcache-client`` crate) or ``"grpcio"``; any
  client takes ``transport="grpcio"`` (or the environment ``MINTCACHE_TRANSPORT``).

>>> from mintcache import Client
>>> cache = Client("127.0.0.1:50051", version="r42")        # doctest: +SKIP
>>> cache.set("user:42", b"Ada", ttl=60)                      # doctest: +SKIP
True
>>> cache.get("user:42").value                                # doctest: +SKIP
b'Ada'
"""

from . import _transport
from ._breaker import Breaker
from ._core import (
    AUTHORIZATION_HEADER,
    DEBUG_APPLIED_HEADER,
    DEBUG_HEADER,
    DEGRADED_HEADER,
    NAMESPACE_HEADER,
    VERSION_HEADER,
)
from .aio import AsyncClient
from .client import Client
from .errors import (
    CacheError,
    CircuitOpen,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from .lock import Lock, LockError, LockNotOwnedError
from .types import TLS, Backoff, DebugMode, ItemError, Lookup, Outcome, SetItem, WriteResult

__version__ = "0.1.0"

#: The transport clients use by default in this installation: ``"native"`` (the package was
#: built with its Rust extension) or ``"grpcio"``. See :mod:`mintcache._transport`.
TRANSPORT = _transport.DEFAULT

__all__ = [
    "AUTHORIZATION_HEADER",
    "DEBUG_APPLIED_HEADER",
    "DEBUG_HEADER",
    "DEGRADED_HEADER",
    "NAMESPACE_HEADER",
    "VERSION_HEADER",
    "AsyncClient",
    "Backoff",
    "Breaker",
    "CacheError",
    "CircuitOpen",
    "Client",
    "DeadlineExceeded",
    "DebugMode",
    "FailedPrecondition",
    "InvalidArgument",
    "ItemError",
    "Lock",
    "LockError",
    "LockNotOwnedError",
    "Lookup",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "ResourceExhausted",
    "SetItem",
    "TLS",
    "Unauthenticated",
    "TRANSPORT",
    "Unavailable",
    "Unimplemented",
    "WriteResult",
]
