"""``MintCache``: a Django cache backend over mintcache, keeping Django's documented cache contract.

How Django's cache API maps onto the service:

- keys: ``make_and_validate_key`` (``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``; warnings for
  keys memcached could not take, as Django's own non-memcached backends do), sent as UTF-8. The
  server maps any key safely; ``OPTIONS["APP_VERSION"]`` and ``["NAMESPACE"]`` choose the key
  space (``x-cache-version`` / ``x-cache-namespace``).
- values: non-negative integers below 2**64 are stored as counters (decimal digits), so that
  ``incr``/``decr`` are atomic on the server; everything else (bools, negative or huge ints
  included) goes through :class:`mintcache.codecs.Codec`: ``SERIALIZER`` (pickle by default,
  flags = 1, as Django's memcached and redis backends do; JSON; msgpack), then ``COMPRESSOR``
  above ``COMPRESS_MIN_BYTES``. The flags say which; a value of another serializer is refused
  (:class:`~mintcache.codecs.CodecError`), never deserialized by accident.
- timeouts: ``DEFAULT_TIMEOUT`` → ``TIMEOUT``; ``None`` → never expires; ``0`` or negative →
  expire at once (the key is deleted); fractions round up to whole seconds; longer than the
  server's 10-year limit → 10 years.
- ``OPTIONS["GRACE"]``: 0 (default) stores values with no grace period, so a value is gone when
  its timeout ends, exactly as with Django's memcached backends. Above 0, a value stays
  servable for that long after its timeout while one caller recomputes it (the mint): ``get``
  returns the stale value to everyone except the one caller the server elects, which gets a
  miss, and that caller's next ``set`` of the key carries the election's lease.
- ``OPTIONS["IGNORE_EXCEPTIONS"]``: when the service fails (unreachable, hung, shedding load),
  reads answer a miss and writes report failure as Django's memcached backends do, each
  failure logged (rate-limited) on the ``mintcache.django`` logger. Off by default: the
  errors (:class:`mintcache.Unavailable`, ...) reach the caller.

Each operation is written once, as a generator of steps (``Call`` a client method, ``Sleep``,
``CallDefault`` the caller's default) with no I/O of its own; ``_run`` drives it over the sync
client and ``_arun`` over the asyncio one, so the sync and async APIs cannot drift apart.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import threading
import time
from typing import Any, Callable, Iterable

import grpc
from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    MEMCACHE_MAX_KEY_LENGTH,
    BaseCache,
)

from .._breaker import Breaker
from .._core import (
    DEFAULT_WAIT,
    Cached,
    Compute,
    MintReads,
    Wait,
    monotonic,
    recompute_ms,
)
from ..aio import AsyncClient
from ..client import Client
from ..codecs import CodecError
from ..errors import CacheError, FailedPrecondition, InvalidArgument, NotFound
from ..lock import Lock
from ..types import Backoff, Lookup, Outcome, SetItem
from . import connections
from .debug import current_debug_mode, note_debug
from .steps import (
    FALSE,
    NONE,
    ZERO,
    Call,
    CallDefault,
    Fallback,
    Sleep,
    Steps,
    call,
    raise_not_found,
    remaining,
)
from .options import Settings

__all__ = ["MintCache", "PICKLE_FLAG", "MAX_TIMEOUT"]

log = logging.getLogger("mintcache.django")

#: The flags value of pickled, uncompressed values (counters have none).
PICKLE_FLAG = 1
#: The longest ttl the server takes (10 years); longer Django timeouts are capped to it.
MAX_TIMEOUT = 10 * 365 * 24 * 60 * 60
#: Counters are unsigned 64-bit numbers on the server.
_COUNTER_LIMIT = 2**64
# What Django's memcache_key_warnings looks for (django.core.cache.backends.base).
_MEMCACHED_MAX_KEY = MEMCACHE_MAX_KEY_LENGTH
_MEMCACHED_BAD = re.compile(r"[\x00-\x20\x7f]")

# A REFRESH lease is kept until the next write of its key, for at most this long and for at
# most this many keys per backend instance (a caller that never sets must not grow memory).
_LEASE_MAX_AGE = 300.0
_LEASE_MAX_KEYS = 10_000

#: One log line per failure code and cache every this many seconds under IGNORE_EXCEPTIONS.
IGNORED_LOG_INTERVAL = 10.0

# Failures that mean the service is not there (or not answering) and that IGNORE_EXCEPTIONS
# turns into misses. Refusals (bad key, bad token, no rights) stay errors: they are bugs or
# misconfiguration, and a cache that hides them hides them forever.
_SERVICE_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)

def _too_large(error: Exception) -> bool:
    return isinstance(error, InvalidArgument) and "max_value_bytes" in error.details


class _IgnoredLog:
    """Logs the failures IGNORE_EXCEPTIONS turns into misses: the first of each status code
    (per cache location) at once, then at most one line per ``interval`` seconds, saying how
    many were left out. Shared by every backend instance of the process."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[tuple[Any, grpc.StatusCode], tuple[float, int]] = {}

    def note(self, where: Any, operation: str, answer: str, error: CacheError) -> None:
        now = monotonic()
        key = (where, error.code)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval:
                self._last[key] = (last[0], last[1] + 1)
                return
            left_out = 0 if last is None else last[1]
            self._last[key] = (now, 0)
        more = f" ({left_out} more like it in the last {self.interval:.0f} s)" if left_out else ""
        log.warning(
            "MintCache %s: %s failed and answered %s (IGNORE_EXCEPTIONS): %s: %s%s",
            ",".join(where),
            operation,
            answer,
            error.code.name,
            error.details,
            more,
        )


_ignored_log = _IgnoredLog(IGNORED_LOG_INTERVAL)


class MintCache(BaseCache):
    """Django cache backend over a mintcache server.

    ``LOCATION``: ``"host:port"``, several separated by ``,`` or ``;``, or a list (``https://``
    endpoints turn TLS on). ``OPTIONS``: ``APP_VERSION``, ``NAMESPACE``, ``TOKEN``,
    ``ADMIN_TOKEN``, ``GRACE`` (seconds, default 0), ``CALL_TIMEOUT`` (seconds per call,
    default 5), ``TLS`` (bool), ``TLS_CA``, ``TLS_CERT``, ``TLS_KEY``, ``TLS_SERVER_NAME``,
    ``SERIALIZER`` (``pickle``, ``json``, ``msgpack``), ``PICKLE_PROTOCOL``, ``COMPRESSOR``
    (``zlib``, ``zstd``, ``lz4``), ``COMPRESS_MIN_BYTES`` (default 1024), ``COMPRESS_LEVEL``,
    ``IGNORE_EXCEPTIONS`` (default False), ``BREAKER_FAILURES`` (3), ``BREAKER_COOL_OFF``
    (1 s), ``BREAKER_MAX_COOL_OFF`` (30 s), ``TRANSPORT`` (``auto``, ``native``, ``grpcio``;
    see :mod:`mintcache._transport`), ``EARLY_REFRESH_BETA`` (β of early refresh for every
    read; default: the server's). See the README's Django section.

    Beyond Django's API (as django-redis offers them): :meth:`ttl`, :meth:`expire`,
    :meth:`persist`, :meth:`lock`, and their async forms.
    """

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        settings = Settings.of(server, params)
        # BaseCache would read MAX_ENTRIES / CULL_FREQUENCY from OPTIONS; they do not apply.
        super().__init__({**params, "OPTIONS": {}})
        self._grace = settings.grace
        self._ignore_exceptions = settings.ignore_exceptions
        self._breaker_settings = settings.breaker
        self._codec = settings.codec
        self._tls = settings.tls
        self._endpoints = settings.endpoints
        self._transport = settings.transport
        self._connection = settings.connection
        self._defaults = settings.defaults
        admin_token = settings.admin_token
        self._admin_token: str | None = admin_token
        self._warned_no_admin = False
        self._pending = Backoff.PENDING
        self._leases: dict[bytes, tuple[bytes, float]] = {}
        self._leases_lock = threading.Lock()
        # The clients this instance calls through, per debug mode (None: normal), made once:
        # (fork generation, {mode: client}). Django makes one instance per thread.
        self._made: tuple[int, dict[Any, Client]] = (-1, {})

    # --- connections -----------------------------------------------------------------------------

    def _plain_options(self) -> dict[str, Any]:
        return {
            "version": self._defaults.version,
            "namespace": self._defaults.namespace,
            "token": self._defaults.token,
            "timeout": self._defaults.timeout,
            "early_refresh_beta": self._defaults.early_refresh_beta,
        }

    def _mode_now(self) -> Any:
        """The debug mode to send now: the current request's, when this cache has an admin
        token to send it with (the request's debug report is told which), else ``None``."""
        mode = current_debug_mode()
        if mode is None:
            return None
        if self._admin_token is None:
            note_debug(applied=False)
            if not self._warned_no_admin:
                self._warned_no_admin = True
                log.warning("cache debug mode %s ignored: MintCache has no ADMIN_TOKEN", mode.value)
            return None
        note_debug(applied=True)
        return mode

    def _options_for(self, mode: Any) -> dict[str, Any]:
        options = self._plain_options()
        if mode is not None:
            options.update(debug=mode, token=self._admin_token)
        return options

    def _new_breaker(self) -> Breaker:
        return Breaker(*self._breaker_settings)

    def _base(self) -> Client:
        return connections.shared_client(
            self._connection,
            lambda breaker: Client(
                list(self._endpoints),
                tls=self._tls or None,
                timeout=None,
                breaker=breaker,
                transport=self._transport,
            ),
            self._new_breaker,
        )

    def _abase(self) -> AsyncClient:
        return connections.shared_aio_client(
            self._connection,
            lambda breaker: AsyncClient(
                list(self._endpoints),
                tls=self._tls or None,
                timeout=None,
                breaker=breaker,
                transport=self._transport,
            ),
            self._new_breaker,
        )

    def _client(self) -> Client:
        mode = self._mode_now()
        generation, made = self._made
        if generation != connections.generation():
            made = {}
            self._made = (connections.generation(), made)
        client = made.get(mode)
        if client is None:
            client = made[mode] = self._base().with_options(**self._options_for(mode))
        return client

    def _aclient(self) -> AsyncClient:
        return self._abase().with_options(**self._options_for(self._mode_now()))

    def _plain_client(self) -> Client:
        """The client without debug mode (locks, management commands)."""
        return self._base().with_options(**self._plain_options())

    def _plain_aclient(self) -> AsyncClient:
        return self._abase().with_options(**self._plain_options())

    # --- driving the steps ---------------------------------------------------------------------

    def _run(self, operation: str, steps: Steps, fallback: Fallback, client: Any = None) -> Any:
        """Runs an operation's steps over the sync client."""
        client = client or self._client()
        send: Callable[[Any], Any] = steps.send
        value: Any = None
        callers: BaseException | None = None
        while True:
            try:
                step = send(value)
            except StopIteration as stop:
                return stop.value
            except CacheError as error:
                if error is callers:
                    raise
                return self._failed(operation, error, fallback)
            send = steps.send
            kind = type(step)
            if kind is Call:
                try:
                    value = getattr(client, step.method)(*step.args, **step.kwargs)
                except CacheError as error:
                    send, value = steps.throw, error
            elif kind is Sleep:
                time.sleep(step.seconds)
                value = None
            else:
                try:
                    value = step.function()
                except BaseException as error:
                    # The caller's code: its errors are the caller's. The steps see it (to
                    # clean up) and must raise it again; IGNORE_EXCEPTIONS never hides it.
                    send, value, callers = steps.throw, error, error

    async def _arun(
        self, operation: str, steps: Steps, fallback: Fallback, client: Any = None
    ) -> Any:
        """Runs an operation's steps over the asyncio client of the running loop."""
        client = client or self._aclient()
        send: Callable[[Any], Any] = steps.send
        value: Any = None
        callers: BaseException | None = None
        while True:
            try:
                step = send(value)
            except StopIteration as stop:
                return stop.value
            except CacheError as error:
                if error is callers:
                    raise
                return self._failed(operation, error, fallback)
            send = steps.send
            kind = type(step)
            if kind is Call:
                try:
                    value = await getattr(client, step.method)(*step.args, **step.kwargs)
                except CacheError as error:
                    send, value = steps.throw, error
            elif kind is Sleep:
                await asyncio.sleep(step.seconds)
                value = None
            else:
                try:
                    value = step.function()
                    if inspect.isawaitable(value):
                        value = await value
                except BaseException as error:  # see _run
                    send, value, callers = steps.throw, error, error

    def _ignores(self, operation: str, answer: str, error: CacheError) -> bool:
        """Whether IGNORE_EXCEPTIONS turns this failure into ``answer`` (and logs it)."""
        if not self._ignore_exceptions or error.code not in _SERVICE_FAILURES:
            return False
        _ignored_log.note(self._endpoints, operation, answer, error)
        return True

    def _failed(self, operation: str, error: CacheError, fallback: Fallback) -> Any:
        if not self._ignores(operation, fallback.answer, error):
            raise error
        return fallback.value()

    # --- encoding ------------------------------------------------------------------------------

    def _key(self, key: Any, version: int | None) -> bytes:
        made = self.make_and_validate_key(key, version=version)
        return made if isinstance(made, bytes) else str(made).encode("utf-8")

    def validate_key(self, key: Any) -> None:
        """Django's key warnings (``CacheKeyWarning``), checked first with one compiled
        expression: Django's own check runs only for a key it would warn about."""
        if type(key) is not str or len(key) > _MEMCACHED_MAX_KEY or _MEMCACHED_BAD.search(key):
            super().validate_key(key)

    def _encode(self, value: Any) -> tuple[bytes, int, bool]:
        """(data, flags, counter). ``type(...) is int``: bools and int subclasses are encoded
        by the serializer."""
        if type(value) is int and 0 <= value < _COUNTER_LIMIT:
            return str(value).encode("ascii"), 0, True
        data, flags = self._codec.encode(value)
        return data, flags, False

    def _decode(self, lookup: Lookup) -> Any:
        if lookup.counter:
            return int(lookup.value)
        if lookup.flags == 0:
            # Written by another client of the service (another language, the CLI): the bytes.
            return lookup.value
        try:
            return self._codec.decode(lookup.value, lookup.flags)
        except CodecError as error:
            raise CodecError(f"MintCache: key {lookup.key!r}: {error}") from None

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
            now = monotonic()
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
        if entry is None or monotonic() - entry[1] > _LEASE_MAX_AGE:
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

    # --- the operations, once ------------------------------------------------------------------

    def _get_steps(self, key: Any, default: Any, version: int | None) -> Steps:
        k = self._key(key, version)
        lookup = yield call("get", k, lease_on_miss=False)
        return self._read(k, lookup, default)

    def _set_steps(self, key: Any, value: Any, timeout: Any, version: int | None) -> Steps:
        k = self._key(key, version)
        data, flags, counter = self._encode(value)
        ttl = self._ttl(timeout)
        lease = self._take_lease(k)
        if ttl is False:
            yield call("delete", k)
            return None
        try:
            yield call(
                "set",
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
            yield call("delete", k)
        return None

    def _add_steps(self, key: Any, value: Any, timeout: Any, version: int | None) -> Steps:
        k = self._key(key, version)
        data, flags, counter = self._encode(value)
        ttl = self._ttl(timeout)
        self._forget_leases([k])
        if ttl is False:
            # Stored and expired at once: it "stores" exactly when the key holds nothing.
            lookup = yield call("get", k, peek=True)
            return not lookup.usable
        try:
            return (
                yield call(
                    "add",
                    k,
                    data,
                    ttl,
                    grace=self._grace_arg(counter),
                    flags=flags,
                    counter=counter,
                )
            )
        except InvalidArgument as error:
            if not _too_large(error):
                raise
            log.warning("MintCache: value of %d bytes not added: %s", len(data), error.details)
            return False

    def _touch_steps(self, key: Any, timeout: Any, version: int | None) -> Steps:
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl is False:
            self._forget_leases([k])
            return (yield call("delete", k))
        return (yield call("touch", k, ttl))

    def _delete_steps(self, key: Any, version: int | None) -> Steps:
        k = self._key(key, version)
        self._forget_leases([k])
        return (yield call("delete", k))

    def _has_key_steps(self, key: Any, version: int | None) -> Steps:
        # peek: looking must not take part in (or win) a refresh election.
        lookup = yield call("get", self._key(key, version), peek=True)
        return lookup.usable

    def _get_many_steps(self, keys: Iterable[Any], version: int | None) -> Steps:
        key_map = {self._key(key, version): key for key in keys}
        if not key_map:
            return {}
        found = {}
        for lookup in (yield call("get_many", list(key_map), lease_on_miss=False)):
            if lookup.error is not None:
                raise lookup.error.as_exception()
            if lookup.usable:
                found[key_map[lookup.key]] = self._decode(lookup)
            else:
                self._note(lookup.key, lookup)
        return found

    def _set_many_steps(self, data: dict[Any, Any], timeout: Any, version: int | None) -> Steps:
        if not data:
            return []
        originals = {}
        encoded = []
        for key, value in data.items():
            k = self._key(key, version)
            originals[k] = key
            encoded.append((k, self._encode(value)))
        self._forget_leases(originals)
        ttl = self._ttl(timeout)
        if ttl is False:
            yield call("delete_many", list(originals))
            return []
        items = [
            SetItem(k, v, ttl, grace=self._grace_arg(counter), flags=flags, counter=counter)
            for k, (v, flags, counter) in encoded
        ]
        failed, too_large = [], []
        for result in (yield call("set_many", items)):
            if result.error is not None or not result.ok:
                failed.append(originals[result.key])
                if result.error is not None and _too_large(result.error.as_exception()):
                    too_large.append(result.key)
        if too_large:
            yield call("delete_many", too_large)
        return failed

    def _delete_many_steps(self, keys: Iterable[Any], version: int | None) -> Steps:
        made = [self._key(key, version) for key in keys]
        if not made:
            return None
        self._forget_leases(made)
        for result in (yield call("delete_many", made)):
            if result.error is not None:
                raise result.error.as_exception()
        return None

    def _incr_steps(self, key: Any, delta: int, version: int | None) -> Steps:
        k = self._key(key, version)
        self._forget_leases([k])
        try:
            return (yield call("increment", k, delta))
        except NotFound:
            raise ValueError(f"Key '{key}' not found") from None
        except FailedPrecondition:
            pass
        # Not a counter (a value of the serializer, e.g. a negative int or a bool), or the
        # debug mode `off`: Django's generic read-modify-write, with its errors (TypeError for
        # values that do not add up). Not atomic, as in Django's non-memcached backends.
        lookup = yield call("get", k, peek=True)
        if not lookup.usable:
            raise ValueError(f"Key '{key}' not found")
        new_value = self._decode(lookup) + delta
        yield from self._set_steps(key, new_value, DEFAULT_TIMEOUT, version)
        return new_value

    def _clear_steps(self) -> Steps:
        self._forget_leases()
        yield call("flush")
        return None

    def _incr_version_steps(self, key: Any, delta: int, version: int | None) -> Steps:
        if version is None:
            version = self.version
        lookup = yield call("get", self._key(key, version), peek=True)
        if not lookup.usable:
            raise ValueError(f"Key '{key}' not found")
        yield from self._set_steps(key, self._decode(lookup), DEFAULT_TIMEOUT, version + delta)
        yield from self._delete_steps(key, version)
        return version + delta

    def _get_or_set_steps(
        self, key: Any, default: Any, timeout: Any, version: int | None
    ) -> Steps:
        k = self._key(key, version)
        reads = MintReads(self._pending, DEFAULT_WAIT)
        while True:
            try:
                lookup = yield call("get", k, lease_on_miss=True, wait=reads.next_wait())
            except CacheError as error:
                if not self._ignores("get_or_set", "the default", error):
                    raise
                decision: Cached | Compute | Wait = Compute(lease=None, write_back=False)
                break
            decision = reads.decide(lookup)
            if isinstance(decision, Cached):
                return self._decode(decision.lookup)
            if isinstance(decision, Wait):
                yield Sleep(decision.seconds)
                continue
            break
        assert isinstance(decision, Compute)
        took = 0
        if callable(default):
            started = monotonic()
            try:
                default = yield CallDefault(default)
            except BaseException:
                # A failed fill is never a value: give the lease back, so that one waiting
                # caller is elected to fill instead, and raise the caller's error.
                if decision.fill:
                    try:
                        yield call("delete", k, lease=decision.lease)
                    except CacheError as error:
                        log.warning("MintCache: releasing a failed fill's lease failed: %s", error)
                raise
            took = recompute_ms(monotonic() - started)
        if not decision.write_back:
            return default
        self._forget_leases([k])
        ttl = self._ttl(timeout)
        try:
            if ttl is False:
                if decision.lease is not None:
                    # Release the cold-miss placeholder (or the stale value): nothing is coming.
                    yield call("delete", k, lease=decision.lease)
                return default
            data, flags, counter = self._encode(default)
            stored = yield call(
                "set",
                k,
                data,
                ttl,
                grace=self._grace_arg(counter),
                flags=flags,
                lease=None if counter else decision.lease,
                counter=counter,
                recompute_ms=took,
            )
            if not stored:
                # Someone stored the key since our read: theirs is the value now.
                current = yield call("get", k, peek=True)
                if current.usable:
                    return self._decode(current)
        except CacheError as error:
            if not self._ignores("get_or_set", "the default", error):
                raise
        return default

    def _ttl_steps(self, key: Any, version: int | None) -> Steps:
        lookup = yield call("get", self._key(key, version), peek=True)
        return remaining(lookup)

    # --- the cache API (sync) ------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._run(
            "get", self._get_steps(key, default, version), Fallback("a miss", lambda: default)
        )

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._run("set", self._set_steps(key, value, timeout, version), NONE)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._run("add", self._add_steps(key, value, timeout, version), FALSE)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._run("touch", self._touch_steps(key, timeout, version), FALSE)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._run("delete", self._delete_steps(key, version), FALSE)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._run("has_key", self._has_key_steps(key, version), FALSE)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return self._run("get_many", self._get_many_steps(keys, version), Fallback("{}", dict))

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        return self._run(
            "set_many",
            self._set_many_steps(data, timeout, version),
            Fallback("every key as failed", lambda: list(data)),
        )

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self._run("delete_many", self._delete_many_steps(keys, version), NONE)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        return self._run(
            "incr",
            self._incr_steps(key, delta, version),
            Fallback("ValueError", raise_not_found(key)),
        )

    def clear(self) -> None:
        """Drops every key of this cache's key space (``NAMESPACE`` + ``APP_VERSION``: every
        ``KEY_PREFIX`` and Django ``VERSION`` in it), with the service's ``Flush``; other key
        spaces on the same memcached are untouched."""
        self._run("clear", self._clear_steps(), NONE)

    def close(self, **kwargs: Any) -> None:
        """Keeps the connections: they are shared process-wide and multiplexed (HTTP/2), so
        closing them after every request, as Django asks, would only add reconnects."""

    def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self._run(
            "incr_version",
            self._incr_version_steps(key, delta, version),
            Fallback("ValueError", raise_not_found(key)),
        )

    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """The mint protocol with cold-miss protection: one caller computes (``default()``)
        while concurrent callers keep the stale value, or wait for its value (``PENDING``: the
        server holds their read until the value lands, for up to 10 s in all). If
        ``default()`` raises, another waiting caller is elected to compute at once, and the
        error propagates."""
        return self._run(
            "get_or_set", self._get_or_set_steps(key, default, timeout, version), NONE
        )

    def ttl(self, key: Any, version: int | None = None) -> int | None:
        """Seconds left before the key's timeout (at least 1 while it is fresh), ``None`` if
        it never expires, 0 if it is missing or past its timeout (with ``GRACE``, a stale
        value ``get`` still serves)."""
        return self._run("ttl", self._ttl_steps(key, version), ZERO)

    def expire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        """Gives an existing key a new timeout (``None``: never expires; ``0`` or less:
        deletes it); says whether the key existed."""
        return self._run("expire", self._touch_steps(key, timeout, version), FALSE)

    def persist(self, key: Any, version: int | None = None) -> bool:
        """Makes an existing key never expire; says whether it existed."""
        return self._run("persist", self._touch_steps(key, None, version), FALSE)

    def lock(
        self,
        key: Any,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        version: int | None = None,
    ) -> Lock:
        """A distributed lock on ``key`` (made as every key of this cache), for ``with`` and
        ``async with``: ``with cache.lock("report", timeout=60): ...``. ``timeout``: seconds
        the lock lives unless released (``None``: until released); ``blocking_timeout``: the
        longest wait to acquire (``LockError`` from ``with`` after it). Locks ignore debug
        modes and IGNORE_EXCEPTIONS. See :mod:`mintcache.lock`."""
        return Lock(
            self._key(key, version),
            client=self._plain_client,
            aclient=self._plain_aclient,
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
        )

    # --- the cache API (async, natively on grpc.aio) -------------------------------------------

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await self._arun(
            "get", self._get_steps(key, default, version), Fallback("a miss", lambda: default)
        )

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        await self._arun("set", self._set_steps(key, value, timeout, version), NONE)

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await self._arun("add", self._add_steps(key, value, timeout, version), FALSE)

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return await self._arun("touch", self._touch_steps(key, timeout, version), FALSE)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await self._arun("delete", self._delete_steps(key, version), FALSE)

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await self._arun("has_key", self._has_key_steps(key, version), FALSE)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return await self._arun(
            "get_many", self._get_many_steps(keys, version), Fallback("{}", dict)
        )

    async def aset_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        return await self._arun(
            "set_many",
            self._set_many_steps(data, timeout, version),
            Fallback("every key as failed", lambda: list(data)),
        )

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await self._arun("delete_many", self._delete_many_steps(keys, version), NONE)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        return await self._arun(
            "incr",
            self._incr_steps(key, delta, version),
            Fallback("ValueError", raise_not_found(key)),
        )

    async def aclear(self) -> None:
        await self._arun("clear", self._clear_steps(), NONE)

    async def aclose(self, **kwargs: Any) -> None:
        """See :meth:`close`."""

    async def aincr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return await self._arun(
            "incr_version",
            self._incr_version_steps(key, delta, version),
            Fallback("ValueError", raise_not_found(key)),
        )

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        """See :meth:`get_or_set`. A callable ``default`` may be a coroutine function."""
        return await self._arun(
            "get_or_set", self._get_or_set_steps(key, default, timeout, version), NONE
        )

    async def attl(self, key: Any, version: int | None = None) -> int | None:
        """See :meth:`ttl`."""
        return await self._arun("ttl", self._ttl_steps(key, version), ZERO)

    async def aexpire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        """See :meth:`expire`."""
        return await self._arun("expire", self._touch_steps(key, timeout, version), FALSE)

    async def apersist(self, key: Any, version: int | None = None) -> bool:
        """See :meth:`persist`."""
        return await self._arun("persist", self._touch_steps(key, None, version), FALSE)
