"""The asyncio client (grpc.aio): the same calls, options, retries and mint protocol as
:class:`mintcache.Client`, as coroutines.

A grpc.aio channel belongs to the event loop it was created in. An :class:`AsyncClient`
therefore opens its connections in the loop of its first call and refuses calls from any
other loop (make one client per loop; the Django backend keeps one per loop for you).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable, Iterable, Sequence, Union

from . import _core, _transport
from ._breaker import Breaker
from ._core import DEFAULT_WAIT, UNSET, Cached, CallDefaults, Compute, MintReads, Wait
from .errors import CacheError, NotFound
from .lock import Lock
from .types import TLS, Backoff, DebugMode, Key, Lookup, SetItem, Value, WriteResult
from .v1 import cache_pb2 as pb

__all__ = ["AsyncClient"]

log = logging.getLogger("mintcache")


class _AioChannels:
    """The channels of one client and its copies (on the client's transport, see
    :mod:`mintcache._transport`), opened in the loop of the first call."""

    def __init__(
        self, targets: list[str], tls: TLS | None, breaker: Breaker | None, transport: str
    ) -> None:
        self._targets = targets
        self._tls = tls
        self.name = transport
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: Any = None
        self.endpoints = _core.Endpoints(targets, breaker)
        self._closed = False

    def transport(self) -> Any:
        """This loop's transport (opened on the first call)."""
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        if self._loop is None:
            options = _core.channel_options(self._tls.server_name if self._tls else None)
            self._transport = _transport.aio_transport(self.name, self._targets, self._tls, options)
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "an AsyncClient belongs to the event loop of its first call; "
                "create one client per event loop"
            )
        return self._transport

    async def close(self) -> None:
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()


ComputeResult = Union[Value, Awaitable[Value]]


class AsyncClient:
    """The asyncio twin of :class:`mintcache.Client` (same arguments, same methods, as
    coroutines). Use it from one event loop; ``async with AsyncClient(...) as cache:`` closes it.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        version: str | None = None,
        namespace: str | None = None,
        token: str | None = None,
        tls: TLS | bool | None = None,
        timeout: float | None = 5.0,
        retry: Backoff = Backoff.UNAVAILABLE,
        pending: Backoff = Backoff.PENDING,
        wait: float = DEFAULT_WAIT,
        lease_on_miss: bool | None = None,
        early_refresh_beta: float | None = None,
        consistency: str | None = None,
        breaker: Breaker | None = UNSET,
        transport: str | None = None,
    ) -> None:
        targets, use_tls = _core.channel_targets(endpoints, bool(tls))
        tls_config = tls if isinstance(tls, TLS) else (TLS() if use_tls else None)
        if tls_config is not None:
            tls_config.credentials()  # read the files now: a wrong path fails here, not later
        chosen = _transport.choose(transport, targets)
        self._defaults = CallDefaults().merged(
            version=version,
            namespace=namespace,
            token=token,
            timeout=timeout,
            lease_on_miss=lease_on_miss,
            early_refresh_beta=early_refresh_beta,
            consistency=consistency,
        )
        self._wait = _core.checked_wait(wait)
        self._channels = _AioChannels(
            targets, tls_config, Breaker() if breaker is UNSET else breaker, chosen
        )
        self._retry = retry
        self._pending = pending

    def __repr__(self) -> str:
        return f"AsyncClient({self._channels.name}, {self._defaults!r})"

    @property
    def transport(self) -> str:
        """How calls reach the server: ``"native"`` (the Rust extension) or ``"grpcio"``."""
        return self._channels.name

    @property
    def timeout(self) -> float | None:
        """The deadline of each call, in seconds (``None``: none)."""
        return self._defaults.timeout

    @property
    def endpoints(self) -> list[str]:
        """The endpoints, as grpcio targets."""
        return list(self._channels.endpoints.targets)

    def circuits(self) -> list[tuple[str, str]]:
        """See :meth:`mintcache.Client.circuits`."""
        found = self._channels.endpoints.circuits
        if found is None:
            return [(t, "none") for t in self._channels.endpoints.targets]
        return [(c.endpoint, c.state) for c in found]

    def with_options(
        self,
        *,
        version: str | None = UNSET,
        namespace: str | None = UNSET,
        token: str | None = UNSET,
        debug: DebugMode | str | None = UNSET,
        timeout: float | None = UNSET,
        lease_on_miss: bool | None = UNSET,
        early_refresh_beta: float | None = UNSET,
        consistency: str | None = UNSET,
    ) -> AsyncClient:
        """A copy sharing this client's connections, with other call options."""
        copy = object.__new__(AsyncClient)
        copy._defaults = self._defaults.merged(
            version=version,
            namespace=namespace,
            token=token,
            debug=debug,
            timeout=timeout,
            lease_on_miss=lease_on_miss,
            early_refresh_beta=early_refresh_beta,
            consistency=consistency,
        )
        copy._channels = self._channels
        copy._retry = self._retry
        copy._pending = self._pending
        copy._wait = self._wait
        return copy

    async def close(self) -> None:
        """Closes the connections (shared with every copy from :meth:`with_options`)."""
        await self._channels.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _invoke(
        self, method: str, request: Any, *, read: bool, consistency: str | None = None
    ) -> tuple[Any, bool]:
        headers = self._defaults.headers_for(consistency)
        attempts = _core.Attempts(
            self._channels.endpoints, self._defaults.timeout, self._retry, read
        )
        while True:
            transport = self._channels.transport()
            index, timeout, probe = attempts.start()
            if probe:
                ok, timeout = await self._probe(transport, attempts, index, timeout, headers)
                if not ok:
                    continue
            try:
                answer = await transport.call(index, method, request, timeout, headers)
            except _transport.Failed as failed:
                await asyncio.sleep(
                    attempts.failed(
                        failed.code, failed.details, failed.__cause__ or failed, failed.never_sent
                    )
                )
            except BaseException:
                attempts.abandoned()
                raise
            else:
                attempts.succeeded()
                return answer

    async def _probe(
        self,
        transport: Any,
        attempts: _core.Attempts,
        index: int,
        timeout: float | None,
        headers: Any,
    ) -> tuple[bool, float | None]:
        """See :meth:`mintcache.Client._probe`."""
        try:
            await transport.health(index, b"", timeout, headers)
        except _transport.Failed as failed:
            return attempts.probed(failed.code, failed.details)
        except BaseException:
            attempts.abandoned()
            raise
        return attempts.probed(None)

    async def get(
        self,
        key: Key,
        *,
        peek: bool = False,
        lease_on_miss: bool | None = None,
        wait: float | None = None,
        early_refresh_beta: float | None = None,
        consistency: str | None = None,
    ) -> Lookup:
        """See :meth:`mintcache.Client.get`."""
        if lease_on_miss is None:
            lease_on_miss = self._defaults.lease_on_miss
        if early_refresh_beta is None:
            early_refresh_beta = self._defaults.early_refresh_beta
        wait = _core.held_wait(wait, self._defaults.timeout)
        request = _core.get_request(key, peek, lease_on_miss, wait, early_refresh_beta)
        response, degraded = await self._invoke("Get", request, read=True, consistency=consistency)
        return _core.lookup_from(request.key, response, degraded)

    async def get_many(
        self,
        keys: Iterable[Key],
        *,
        peek: bool = False,
        lease_on_miss: bool | None = None,
        early_refresh_beta: float | None = None,
        consistency: str | None = None,
    ) -> list[Lookup]:
        """See :meth:`mintcache.Client.get_many`."""
        if lease_on_miss is None:
            lease_on_miss = self._defaults.lease_on_miss
        if early_refresh_beta is None:
            early_refresh_beta = self._defaults.early_refresh_beta
        request = _core.get_many_request(keys, peek, lease_on_miss, early_refresh_beta)
        if not request.keys:
            return []
        response, degraded = await self._invoke(
            "GetMany", request, read=True, consistency=consistency
        )
        return _core.lookups_from(response, degraded)

    async def set(
        self,
        key: Key,
        value: Value,
        ttl: float | None = 0,
        *,
        grace: float | None = 0,
        flags: int = 0,
        lease: bytes | None = None,
        counter: bool = False,
        recompute_ms: int = 0,
    ) -> bool:
        """See :meth:`mintcache.Client.set`."""
        request = _core.set_request(key, value, ttl, grace, flags, lease, counter, recompute_ms)
        response, _ = await self._invoke("Set", request, read=False)
        return response.stored

    async def add(
        self,
        key: Key,
        value: Value,
        ttl: float | None = 0,
        *,
        grace: float | None = 0,
        flags: int = 0,
        counter: bool = False,
        recompute_ms: int = 0,
    ) -> bool:
        """See :meth:`mintcache.Client.add`."""
        return (await self._add(key, value, ttl, grace, flags, counter, recompute_ms)).stored

    async def _add(
        self,
        key: Key,
        value: Value,
        ttl: float | None,
        grace: float | None,
        flags: int = 0,
        counter: bool = False,
        recompute_ms: int = 0,
    ) -> pb.AddResponse:
        """See :meth:`mintcache.Client._add`."""
        request = _core.add_request(key, value, ttl, grace, flags, counter, recompute_ms)
        response, _ = await self._invoke("Add", request, read=False)
        return response

    async def set_many(self, items: Iterable[SetItem]) -> list[WriteResult]:
        """See :meth:`mintcache.Client.set_many`."""
        request = _core.set_many_request(items)
        if not request.items:
            return []
        response, _ = await self._invoke("SetMany", request, read=False)
        return _core.write_results(response, "stored")

    async def delete(self, key: Key, *, lease: bytes | None = None) -> bool:
        """See :meth:`mintcache.Client.delete`."""
        response, _ = await self._invoke("Delete", _core.delete_request(key, lease), read=False)
        return response.deleted

    async def delete_many(self, keys: Iterable[Key]) -> list[WriteResult]:
        """See :meth:`mintcache.Client.delete_many`."""
        request = pb.DeleteManyRequest(keys=[_core.as_bytes(k, "key") for k in keys])
        if not request.keys:
            return []
        response, _ = await self._invoke("DeleteMany", request, read=False)
        return _core.write_results(response, "deleted")

    async def touch(self, key: Key, ttl: float | None = 0) -> bool:
        """See :meth:`mintcache.Client.touch`."""
        response, _ = await self._invoke("Touch", _core.touch_request(key, ttl), read=False)
        return response.touched

    async def invalidate(self, key: Key) -> bool:
        """See :meth:`mintcache.Client.invalidate`."""
        request = pb.InvalidateRequest(key=_core.as_bytes(key, "key"))
        response, _ = await self._invoke("Invalidate", request, read=False)
        return response.invalidated

    async def increment(
        self, key: Key, delta: int = 1, *, initial: int | None = None, ttl: float | None = 0
    ) -> int:
        """See :meth:`mintcache.Client.increment`."""
        request = _core.increment_request(key, delta, initial, ttl)
        try:
            response, _ = await self._invoke("Increment", request, read=False)
        except NotFound as error:
            raise _core.increment_not_found(error) from None
        return response.value

    async def flush(self) -> bool:
        """See :meth:`mintcache.Client.flush`."""
        response, _ = await self._invoke("Flush", pb.FlushRequest(), read=False)
        return response.flushed

    async def health(self, service: str = "") -> str:
        """See :meth:`mintcache.Client.health`."""
        request = _core.health_request(service)
        attempts = _core.Attempts(
            self._channels.endpoints, self._defaults.timeout, Backoff.NONE, read=True
        )
        transport = self._channels.transport()
        index, timeout, _ = attempts.start()  # a health check is its own probe
        try:
            answer = await transport.health(index, request, timeout, self._defaults.headers)
        except _transport.Failed as failed:
            # Raises: one attempt.
            attempts.failed(failed.code, failed.details, failed.__cause__ or failed, False)
            raise
        except BaseException:
            attempts.abandoned()
            raise
        attempts.succeeded()
        return _core.health_status(answer)

    def lock(
        self,
        key: Key,
        timeout: float | None = None,
        *,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
    ) -> Lock:
        """See :meth:`mintcache.Client.lock`: ``async with client.lock("job", timeout=30):``."""
        return Lock(
            _core.as_bytes(key, "key"),
            aclient=lambda: self,
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
        )

    async def get_or_compute(
        self,
        key: Key,
        compute: Callable[[], ComputeResult],
        ttl: float | None = 0,
        *,
        grace: float | None = 0,
        flags: int = 0,
        lease_on_miss: bool | None = None,
        wait: float | None = None,
        early_refresh_beta: float | None = None,
        consistency: str | None = None,
    ) -> bytes:
        """See :meth:`mintcache.Client.get_or_compute`. ``compute`` may be a plain function or
        return an awaitable (e.g. an ``async def`` function). A computation that is cancelled
        releases a ``MISS`` lease as one that raises does."""
        key_bytes = _core.as_bytes(key, "key")
        protect = _core.fill_protection(lease_on_miss, self._defaults.lease_on_miss)
        reads = MintReads(self._pending, self._wait if wait is None else _core.checked_wait(wait))
        while True:
            lookup = await self.get(
                key_bytes,
                lease_on_miss=protect,
                wait=reads.next_wait(),
                early_refresh_beta=early_refresh_beta,
                consistency=consistency,
            )
            decision = reads.decide(lookup)
            if isinstance(decision, Cached):
                return decision.lookup.value
            if isinstance(decision, Wait):
                await asyncio.sleep(decision.seconds)
                continue
            break
        assert isinstance(decision, Compute)
        started = _core.monotonic()
        try:
            result = compute()
            if inspect.isawaitable(result):
                result = await result
            value = _core.as_bytes(result, "computed value")
        except BaseException:
            if decision.fill:
                await self._release_fill(key_bytes, decision.lease)
            raise
        took = _core.recompute_ms(_core.monotonic() - started)
        if decision.write_back:
            try:
                await self.set(
                    key_bytes,
                    value,
                    ttl,
                    grace=grace,
                    flags=flags,
                    lease=decision.lease,
                    recompute_ms=took,
                )
            except CacheError as error:
                # The computed value is still the answer; the cache is best-effort here.
                log.warning("mintcache: storing a computed value failed: %s", error)
        return value

    async def _release_fill(self, key: bytes, lease: bytes | None) -> None:
        """See :meth:`mintcache.Client._release_fill`."""
        try:
            await self.delete(key, lease=lease)
        except CacheError as error:
            log.warning("mintcache: releasing the lease of a failed fill failed: %s", error)
