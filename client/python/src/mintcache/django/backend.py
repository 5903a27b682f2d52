"""``MintCache``: a Django cache backend over mintcache, keeping Django's documented cache contract.

How Django's cache API maps onto the service:

- keys: ``make_and_validate_key`` (``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``; warnings for
  keys memcached could not take, as Django's own non-memcached backends do), sent as UTF-8. The
  server maps any key safely; ``OPTIONS["APP_VERSION"]`` and ``["NAMESPACE"]`` choose the key
  space (``x-cache-version`` / ``x-cache-namespace``).
- values: non-negative integers below 2**64 are stored as counters (decimal digits), so that
  ``incr``/``decr`` are atomic on the server; everything else (bools, negative or huge ints
  included) is pickled (flags = 1), as Django's memcached and redis backends do.
- timeouts: ``DEFAULT_TIMEOUT`` → ``TIMEOUT``; ``None`` → never expires; ``0`` or negative →
  expire at once (the key is deleted); fractions round up to whole seconds; longer than the
  server's 10-year limit → 10 years.
- ``OPTIONS["GRACE"]``: 0 (default) stores values with no grace period, so a value is gone when
  its timeout ends, exactly as with Django's memcached backends. Above 0, a value stays
  servable for that long after its timeout while one caller recomputes it (the mint): ``get``
  returns the stale value to everyone except the one caller the server elects, which gets a
  miss, and that caller's next ``set`` of the key carries the election's lease.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pickle
import threading
import time
import weakref
from typing import Any, Iterable

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from .._core import Cached, CallDefaults, MintReads, Wait
from ..aio import AsyncClient
from ..client import Client
from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..types import TLS, Backoff, Lookup, Outcome, SetItem
from .debug import current_debug_mode

__all__ = ["MintCache", "PICKLE_FLAG", "MAX_TIMEOUT"]

log = logging.getLogger("mintcache.django")

#: The flags value of pickled values (counters have none).
PICKLE_FLAG = 1
#: The longest ttl the server takes (10 years); longer Django timeouts are capped to it.
MAX_TIMEOUT = 10 * 365 * 24 * 60 * 60
#: Counters are unsigned 64-bit numbers on the server.
_COUNTER_LIMIT = 2**64

# A REFRESH lease is kept until the next write of its key, for at most this long and for at
# most this many keys per backend instance (a caller that never sets must not grow memory).
_LEASE_MAX_AGE = 300.0
_LEASE_MAX_KEYS = 10_000

_OPTIONS = {
    "APP_VERSION",
    "NAMESPACE",
    "TOKEN",
    "ADMIN_TOKEN",
    "GRACE",
    "CALL_TIMEOUT",
    "TLS",
    "TLS_CA",
    "TLS_CERT",
    "TLS_KEY",
    "TLS_SERVER_NAME",
    "PICKLE_PROTOCOL",
}
# The original package's names, with what they are here.
_RENAMED = {
    "MINT_DELAY": "OPTIONS['GRACE']",
    "VERSION": "OPTIONS['APP_VERSION'] (the top-level VERSION stays Django's per-key version)",
}

# Clients are shared by every backend instance with the same connection settings (Django makes
# one instance per thread and per async context), per process (a forked worker must not use
# its parent's channels) and, for asyncio, per event loop (a grpc.aio channel belongs to one).
_clients: dict[tuple[Any, ...], Client] = {}
_clients_lock = threading.Lock()
_aio_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], AsyncClient]
]
_aio_clients = weakref.WeakKeyDictionary()


def _shared_client(settings: tuple[Any, ...], make: Any) -> Client:
    key = (os.getpid(), settings)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make()
        return client


def _shared_aio_client(settings: tuple[Any, ...], make: Any) -> AsyncClient:
    loop = asyncio.get_running_loop()
    with _clients_lock:
        per_loop = _aio_clients.get(loop)
        if per_loop is None:
            # A loop that ended cannot run its channels' cleanup any more; drop them.
            for old in [old for old in list(_aio_clients.keys()) if old.is_closed()]:
                del _aio_clients[old]
            per_loop = _aio_clients[loop] = {}
        client = per_loop.get(settings)
        if client is None:
            client = per_loop[settings] = make()
        return client


def _too_large(error: Exception) -> bool:
    return isinstance(error, InvalidArgument) and "max_value_bytes" in error.details


class MintCache(BaseCache):
    """Django cache backend over a mintcache server.

    ``LOCATION``: ``"host:port"``, several separated by ``,`` or ``;``, or a list (``https://``
    endpoints turn TLS on). ``OPTIONS``: ``APP_VERSION``, ``NAMESPACE``, ``TOKEN``,
    ``ADMIN_TOKEN``, ``GRACE`` (seconds, default 0), ``CALL_TIMEOUT`` (seconds per call,
    default 5), ``TLS`` (bool), ``TLS_CA``, ``TLS_CERT``, ``TLS_KEY``, ``TLS_SERVER_NAME``,
    ``PICKLE_PROTOCOL``.
    """

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        for name in options:
            if name in _RENAMED:
                raise ImproperlyConfigured(f"MintCache: OPTIONS[{name!r}] is {_RENAMED[name]} here")
            if name not in _OPTIONS:
                raise ImproperlyConfigured(
                    f"MintCache: unknown OPTIONS key {name!r} "
                    f"(known: {', '.join(sorted(_OPTIONS))})"
                )
        # BaseCache would read MAX_ENTRIES / CULL_FREQUENCY from OPTIONS; they do not apply.
        super().__init__({**params, "OPTIONS": {}})

        if isinstance(server, str):
            endpoints = [e.strip() for e in server.replace(";", ",").split(",") if e.strip()]
        else:
            endpoints = [str(e).strip() for e in server]
        if not endpoints:
            raise ImproperlyConfigured("MintCache: LOCATION needs at least one host:port")

        grace = options.get("GRACE", 0)
        if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
            raise ImproperlyConfigured("MintCache: OPTIONS['GRACE'] must be whole seconds >= 0")
        self._grace = grace
        call_timeout = options.get("CALL_TIMEOUT", 5.0)
        if call_timeout is not None and (
            isinstance(call_timeout, bool)
            or not isinstance(call_timeout, (int, float))
            or call_timeout <= 0
        ):
            raise ImproperlyConfigured(
                "MintCache: OPTIONS['CALL_TIMEOUT'] must be seconds > 0 or None"
            )
        self._pickle_protocol = int(options.get("PICKLE_PROTOCOL", pickle.HIGHEST_PROTOCOL))

        tls_files = tuple(
            options.get(name) for name in ("TLS_CA", "TLS_CERT", "TLS_KEY", "TLS_SERVER_NAME")
        )
        use_tls = bool(options.get("TLS")) or any(f is not None for f in tls_files)
        self._tls = TLS(*tls_files) if use_tls else None
        self._endpoints = tuple(endpoints)
        # What identifies the shared connections (tokens are call metadata, not connection
        # settings, so they are not part of it).
        self._connection = (self._endpoints, tls_files if use_tls else None)

        app_version = options.get("APP_VERSION")
        namespace = options.get("NAMESPACE")
        admin_token = options.get("ADMIN_TOKEN")
        try:
            self._defaults = CallDefaults().merged(
                version=None if app_version is None else str(app_version),
                namespace=None if namespace is None else str(namespace),
                token=options.get("TOKEN"),
                timeout=call_timeout,
            )
            if admin_token is not None:
                CallDefaults().merged(token=admin_token)
        except ValueError as error:
            raise ImproperlyConfigured(f"MintCache: {error}") from None
        self._admin_token: str | None = admin_token
        self._warned_no_admin = False
        self._pending = Backoff.PENDING
        self._leases: dict[bytes, tuple[bytes, float]] = {}
        self._leases_lock = threading.Lock()

    # --- connections -----------------------------------------------------------------------------

    def _options_now(self) -> dict[str, Any]:
        """The call options for this moment: the defaults, or the debug mode of the current
        request with the admin token."""
        options: dict[str, Any] = {
            "version": self._defaults.version,
            "namespace": self._defaults.namespace,
            "token": self._defaults.token,
            "timeout": self._defaults.timeout,
        }
        mode = current_debug_mode()
        if mode is not None:
            if self._admin_token is None:
                if not self._warned_no_admin:
                    self._warned_no_admin = True
                    log.warning(
                        "cache debug mode %s ignored: MintCache has no ADMIN_TOKEN", mode.value
                    )
            else:
                options.update(debug=mode, token=self._admin_token)
        return options

    def _make_base(self) -> Client:
        return Client(list(self._endpoints), tls=self._tls or None, timeout=None)

    def _client(self) -> Client:
        base = _shared_client(self._connection, self._make_base)
        return base.with_options(**self._options_now())

    def _aclient(self) -> AsyncClient:
        base = _shared_aio_client(
            self._connection,
            lambda: AsyncClient(list(self._endpoints), tls=self._tls or None, timeout=None),
        )
        return base.with_options(**self._options_now())

    # --- encoding ------------------------------------------------------------------------------

    def _key(self, key: Any, version: int | None) -> bytes:
        made = self.make_and_validate_key(key, version=version)
        return made if isinstance(made, bytes) else str(made).encode("utf-8")

    def _encode(self, value: Any) -> tuple[bytes, int, bool]:
        """(data, flags, counter). ``type(...) is int``: bools and int subclasses are pickled."""
        if type(value) is int and 0 <= value < _COUNTER_LIMIT:
            return str(value).encode("ascii"), 0, True
        return pickle.dumps(value, self._pickle_protocol), PICKLE_FLAG, False

    @staticmethod
    def _decode(lookup: Lookup) -> Any:
        if lookup.counter:
            return int(lookup.value)
        if lookup.flags == PICKLE_FLAG:
            return pickle.loads(lookup.value)
        # Written by another client of the service: the raw bytes.
        return lookup.value

    def _ttl(self, timeout: Any) -> float | None | bool:
        """The ttl for the client (``None``: never expires), or ``False``: expire at once."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        if timeout <= 0:
            return False
        return min(math.ceil(timeout), MAX_TIMEOUT)

    def _grace_arg(self, counter: bool) -> float | None:
        if counter:
            return 0  # counters are not minted: no grace either way
        return self._grace if self._grace > 0 else None

    # --- REFRESH leases ------------------------------------------------------------------------

    def _note(self, key: bytes, lookup: Lookup) -> None:
        """After a read: with GRACE, remember the lease of a REFRESH for the next set."""
        if self._grace > 0 and lookup.outcome == Outcome.REFRESH and lookup.lease:
            now = time.monotonic()
            with self._leases_lock:
                if len(self._leases) >= _LEASE_MAX_KEYS:
                    for k in [
                        k for k, (_, at) in self._leases.items() if now - at > _LEASE_MAX_AGE
                    ]:
                        del self._leases[k]
                    if len(self._leases) >= _LEASE_MAX_KEYS:
                        self._leases.pop(next(iter(self._leases)))
                self._leases[key] = (lookup.lease, now)

    def _take_lease(self, key: bytes) -> bytes | None:
        with self._leases_lock:
            entry = self._leases.pop(key, None)
        if entry is None or time.monotonic() - entry[1] > _LEASE_MAX_AGE:
            return None
        return entry[0]

    def _forget_leases(self, keys: Iterable[bytes] | None = None) -> None:
        with self._leases_lock:
            if keys is None:
                self._leases.clear()
            else:
                for key in keys:
                    self._leases.pop(key, None)

    def _read(self, key: bytes, lookup: Lookup, default: Any) -> Any:
        if lookup.usable:
            return self._decode(lookup)
        self._note(key, lookup)
        return default

    # --- the cache API (sync) ------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        k = self._key(key, version)
        return self._read(k, self._client().get(k, lease_on_miss=False), default)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        k = self._key(key, version)
        data, flags, counter = self._encode(value)
        ttl = self._ttl(timeout)
        lease = self._take_lease(k)
        client = self._client()
        if ttl is False:
            client.delete(k)
            return
        try:
            client.set(
                k,
                data,
                ttl,
                grace=self._grace_arg(counter),
                flags=flags,
                lease=None if counter else lease,
                counter=counter,
            )
        except InvalidArgument as error:
            if not _too_large(error):
                raise
            # As Django's memcached backends do: the key must not keep its old value.
            log.warning("MintCache: value of %d bytes not stored: %s", len(data), error.details)
            client.delete(k)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        k = self._key(key, version)
        data, flags, counter = self._encode(value)
        ttl = self._ttl(timeout)
        self._forget_leases([k])
        client = self._client()
        if ttl is False:
            # Stored and expired at once: it "stores" exactly when the key holds nothing.
            return not client.get(k, peek=True).usable
        try:
            return client.add(
                k, data, ttl, grace=self._grace_arg(counter), flags=flags, counter=counter
            )
        except InvalidArgument as error:
            if not _too_large(error):
                raise
            log.warning("MintCache: value of %d bytes not added: %s", len(data), error.details)
            return False

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl is False:
            self._forget_leases([k])
            return self._client().delete(k)
        return self._client().touch(k, ttl)

    def delete(self, key: Any, version: int | None = None) -> bool:
        k = self._key(key, version)
        self._forget_leases([k])
        return self._client().delete(k)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        # peek: looking must not take part in (or win) a refresh election.
        return self._client().get(self._key(key, version), peek=True).usable

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        key_map = {self._key(key, version): key for key in keys}
        if not key_map:
            return {}
        found = {}
        for lookup in self._client().get_many(list(key_map), lease_on_miss=False):
            if lookup.error is not None:
                raise lookup.error.as_exception()
            if lookup.usable:
                found[key_map[lookup.key]] = self._decode(lookup)
            else:
                self._note(lookup.key, lookup)
        return found

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        if not data:
            return []
        items, originals = self._set_many_items(data, timeout, version)
        client = self._client()
        if items is None:
            client.delete_many(list(originals))
            return []
        failed, too_large = self._set_many_failures(client.set_many(items), originals)
        if too_large:
            client.delete_many(too_large)
        return failed

    def _set_many_items(
        self, data: dict[Any, Any], timeout: Any, version: int | None
    ) -> tuple[list[SetItem] | None, dict[bytes, Any]]:
        originals = {}
        encoded = []
        for key, value in data.items():
            k = self._key(key, version)
            originals[k] = key
            encoded.append((k, self._encode(value)))
        self._forget_leases(originals)
        ttl = self._ttl(timeout)
        if ttl is False:
            return None, originals
        items = [
            SetItem(k, v, ttl, grace=self._grace_arg(counter), flags=flags, counter=counter)
            for k, (v, flags, counter) in encoded
        ]
        return items, originals

    @staticmethod
    def _set_many_failures(
        results: Any, originals: dict[bytes, Any]
    ) -> tuple[list[Any], list[bytes]]:
        failed, too_large = [], []
        for result in results:
            if result.error is not None or not result.ok:
                failed.append(originals[result.key])
                if result.error is not None and _too_large(result.error.as_exception()):
                    too_large.append(result.key)
        return failed, too_large

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        made = [self._key(key, version) for key in keys]
        if not made:
            return
        self._forget_leases(made)
        for result in self._client().delete_many(made):
            if result.error is not None:
                raise result.error.as_exception()

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        k = self._key(key, version)
        self._forget_leases([k])
        client = self._client()
        try:
            return client.increment(k, delta)
        except NotFound:
            raise ValueError(f"Key '{key}' not found") from None
        except FailedPrecondition:
            pass
        # Not a counter (a pickled value, e.g. a negative int or a bool), or the debug mode
        # `off`: Django's generic read-modify-write, with its errors (TypeError for values
        # that do not add up). Not atomic, as in Django's non-memcached backends.
        lookup = client.get(k, peek=True)
        if not lookup.usable:
            raise ValueError(f"Key '{key}' not found")
        new_value = self._decode(lookup) + delta
        self.set(key, new_value, version=version)
        return new_value

    def clear(self) -> None:
        """Drops every key of this cache's key space (``NAMESPACE`` + ``APP_VERSION``: every
        ``KEY_PREFIX`` and Django ``VERSION`` in it), with the service's ``Flush``; other key
        spaces on the same memcached are untouched."""
        self._forget_leases()
        self._client().flush()

    def close(self, **kwargs: Any) -> None:
        """Keeps the connections: they are shared process-wide and multiplexed (HTTP/2), so
        closing them after every request, as Django asks, would only add reconnects."""

    def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        if version is None:
            version = self.version
        client = self._client()
        lookup = client.get(self._key(key, version), peek=True)
        if not lookup.usable:
            raise ValueError(f"Key '{key}' not found")
        self.set(key, self._decode(lookup), version=version + delta)
        self.delete(key, version=version)
        return version + delta

    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """The mint protocol with cold-miss protection: one caller computes (``default()``)
        while concurrent callers wait for its value (``PENDING``) or keep the stale one."""
        k = self._key(key, version)
        client = self._client()
        reads = MintReads(self._pending)
        while True:
            decision = reads.decide(client.get(k, lease_on_miss=True))
            if isinstance(decision, Cached):
                return self._decode(decision.lookup)
            if isinstance(decision, Wait):
                time.sleep(decision.seconds)
                continue
            break
        if callable(default):
            default = default()
        if not decision.write_back:
            return default
        self._forget_leases([k])
        ttl = self._ttl(timeout)
        if ttl is False:
            if decision.lease is not None:
                client.delete(k)  # release the cold-miss placeholder: nothing is coming
            return default
        data, flags, counter = self._encode(default)
        stored = client.set(
            k,
            data,
            ttl,
            grace=self._grace_arg(counter),
            flags=flags,
            lease=None if counter else decision.lease,
            counter=counter,
        )
        if not stored:
            # Someone stored the key since our read: theirs is the value now.
            current = client.get(k, peek=True)
            if current.usable:
                return self._decode(current)
        return default

    # --- the cache API (async, natively on grpc.aio) -------------------------------------------

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        k = self._key(key, version)
        return self._read(k, await self._aclient().get(k, lease_on_miss=False), default)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        k = self._key(key, version)
        data, flags, counter = self._encode(value)
        ttl = self._ttl(timeout)
        lease = self._take_lease(k)
        client = self._aclient()
        if ttl is False:
            await client.delete(k)
            return
        try:
            await client.set(
                k,
                data,
                ttl,
                grace=self._grace_arg(counter),
                flags=flags,
                lease=None if counter else lease,
                counter=counter,
            )
        except InvalidArgument as error:
            if not _too_large(error):
                raise
            log.warning("MintCache: value of %d bytes not stored: %s", len(data), error.details)
            await client.delete(k)

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        k = self._key(key, version)
        data, flags, counter = self._encode(value)
        ttl = self._ttl(timeout)
        self._forget_leases([k])
        client = self._aclient()
        if ttl is False:
            return not (await client.get(k, peek=True)).usable
        try:
            return await client.add(
                k, data, ttl, grace=self._grace_arg(counter), flags=flags, counter=counter
            )
        except InvalidArgument as error:
            if not _too_large(error):
                raise
            log.warning("MintCache: value of %d bytes not added: %s", len(data), error.details)
            return False

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl is False:
            self._forget_leases([k])
            return await self._aclient().delete(k)
        return await self._aclient().touch(k, ttl)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        k = self._key(key, version)
        self._forget_leases([k])
        return await self._aclient().delete(k)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return (await self._aclient().get(self._key(key, version), peek=True)).usable

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        key_map = {self._key(key, version): key for key in keys}
        if not key_map:
            return {}
        found = {}
        for lookup in await self._aclient().get_many(list(key_map), lease_on_miss=False):
            if lookup.error is not None:
                raise lookup.error.as_exception()
            if lookup.usable:
                found[key_map[lookup.key]] = self._decode(lookup)
            else:
                self._note(lookup.key, lookup)
        return found

    async def aset_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        if not data:
            return []
        items, originals = self._set_many_items(data, timeout, version)
        client = self._aclient()
        if items is None:
            await client.delete_many(list(originals))
            return []
        failed, too_large = self._set_many_failures(await client.set_many(items), originals)
        if too_large:
            await client.delete_many(too_large)
        return failed

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        made = [self._key(key, version) for key in keys]
        if not made:
            return
        self._forget_leases(made)
        for result in await self._aclient().delete_many(made):
            if result.error is not None:
                raise result.error.as_exception()

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        k = self._key(key, version)
        self._forget_leases([k])
        client = self._aclient()
        try:
            return await client.increment(k, delta)
        except NotFound:
            raise ValueError(f"Key '{key}' not found") from None
        except FailedPrecondition:
            pass
        lookup = await client.get(k, peek=True)
        if not lookup.usable:
            raise ValueError(f"Key '{key}' not found")
        new_value = self._decode(lookup) + delta
        await self.aset(key, new_value, version=version)
        return new_value

    async def aclear(self) -> None:
        self._forget_leases()
        await self._aclient().flush()

    async def aclose(self, **kwargs: Any) -> None:
        """See :meth:`close`."""

    async def aincr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        if version is None:
            version = self.version
        lookup = await self._aclient().get(self._key(key, version), peek=True)
        if not lookup.usable:
            raise ValueError(f"Key '{key}' not found")
        await self.aset(key, self._decode(lookup), version=version + delta)
        await self.adelete(key, version=version)
        return version + delta

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """See :meth:`get_or_set`. A callable ``default`` may be a coroutine function."""
        k = self._key(key, version)
        client = self._aclient()
        reads = MintReads(self._pending)
        while True:
            decision = reads.decide(await client.get(k, lease_on_miss=True))
            if isinstance(decision, Cached):
                return self._decode(decision.lookup)
            if isinstance(decision, Wait):
                await asyncio.sleep(decision.seconds)
                continue
            break
        if callable(default):
            default = default()
            if asyncio.iscoroutine(default):
                default = await default
        if not decision.write_back:
            return default
        self._forget_leases([k])
        ttl = self._ttl(timeout)
        if ttl is False:
            if decision.lease is not None:
                await client.delete(k)
            return default
        data, flags, counter = self._encode(default)
        stored = await client.set(
            k,
            data,
            ttl,
            grace=self._grace_arg(counter),
            flags=flags,
            lease=None if counter else decision.lease,
            counter=counter,
        )
        if not stored:
            current = await client.get(k, peek=True)
            if current.usable:
                return self._decode(current)
        return default
