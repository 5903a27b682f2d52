"""The synchronous client: one typed method per RPC, default and per-call options (version,
namespace, token, debug mode, deadline), bounded retries where a retry cannot change the
answer, a circuit breaker per endpoint, :meth:`Client.get_or_compute`, which follows the mint
protocol, and :meth:`Client.lock`.

A :class:`Client` is thread-safe: grpcio channels are, the circuits lock their state, and the
client keeps no per-call state.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Sequence

from . import _core, _transport
from ._breaker import Breaker
from ._core import DEFAULT_WAIT, UNSET, Cached, CallDefaults, Compute, MintReads, Wait
from .errors import CacheError, NotFound
from .lock import Lock
from .types import TLS, Backoff, DebugMode, Key, Lookup, SetItem, Value, WriteResult
from .v1 import cache_pb2 as pb

__all__ = ["Client"]

log = logging.getLogger("mintcache")


class _Channels:
    """The connections of one client and its copies: one channel per endpoint (on the
    client's transport, see :mod:`mintcache._transport`); calls go round robin over them
    (skipping endpoints whose circuit is open), and a retry goes to the next one (so a refused
    connection moves on to another replica)."""

    def __init__(
        self, targets: list[str], tls: TLS | None, breaker: Breaker | None, transport: str
    ) -> None:
        options = _core.channel_options(tls.server_name if tls else None)
        self.transport = _transport.sync_transport(transport, targets, tls, options)
        self.endpoints = _core.Endpoints(targets, breaker)

    def close(self) -> None:
        self.transport.close()


class Client:
    """A mintcache client.

    ``endpoints``: ``host:port`` (or ``http://`` / ``https://host:port``, ``dns:///host:port``),
    one or several (a list, or one string separated by commas); several are used round robin,
    e.g. one per server replica. ``version`` / ``namespace``: the key space of every call
    (default: the server's). ``token``: sent as ``authorization: Bearer``. ``tls``: a
    :class:`~mintcache.TLS` (or ``True`` for the system roots). ``timeout``: the deadline of
    each call in seconds, retries included (``None``: no deadline). ``retry``: the schedule for
    failed calls that may be repeated (reads on ``UNAVAILABLE``; writes only when no connection
    could be made). ``wait``: how long, in all, ``get_or_compute`` waits for another caller's
    fill (seconds; its reads are held by the server until the fill lands), and ``pending``:
    the fewest seconds between its reads, and the most reads. ``lease_on_miss``: cold-miss
    protection for reads that do not say (default: the server's; ``get_or_compute``'s: on).
    ``early_refresh_beta``: β of early refresh for reads that do not say (default: the
    server's; 0: off). ``consistency``: ``"strong"`` makes reads skip the replicas' hot-key
    cache (``x-cache-consistency``; default: not sent, the server's ``default``).
    ``breaker``: the circuit breaker (:class:`~mintcache.Breaker`; default: 3 consecutive
    ``UNAVAILABLE`` / ``DEADLINE_EXCEEDED`` attempts open an endpoint's circuit for about a
    second, doubling up to 30 s; ``None``: no breaker). While every endpoint's circuit is
    open, calls raise :class:`~mintcache.CircuitOpen` at once.

    :meth:`with_options` returns a copy that shares the connections and differs in call
    options, e.g. ``client.with_options(debug="write-only").set(...)``.
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
        self._channels = _Channels(
            targets,
            tls_config,
            Breaker() if breaker is UNSET else breaker,
            _transport.choose(transport, targets),
        )
        self._retry = retry
        self._pending = pending

    def __repr__(self) -> str:
        return (
            f"Client({len(self._channels.endpoints.targets)} endpoint(s), "
            f"{self._channels.transport.name}, {self._defaults!r})"
        )

    @property
    def transport(self) -> str:
        """How calls reach the server: ``"native"`` (the Rust extension) or ``"grpcio"``."""
        return self._channels.transport.name

    @property
    def timeout(self) -> float | None:
        """The deadline of each call, in seconds (``None``: none)."""
        return self._defaults.timeout

    @property
    def endpoints(self) -> list[str]:
        """The endpoints, as grpcio targets."""
        return list(self._channels.endpoints.targets)

    def circuits(self) -> list[tuple[str, str]]:
        """The circuit of each endpoint: ``(endpoint, "closed" | "open" | "half-open")``
        (``"none"`` without a circuit breaker)."""
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
    ) -> Client:
        """A copy sharing this client's connections, with other call options. ``debug``
        (``"off"``, ``"write-only"``) is honoured by the server for admin callers only, and
        answered ``PERMISSION_DENIED`` to anyone else."""
        copy = object.__new__(Client)
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

    def close(self) -> None:
        """Closes the connections (shared with every copy from :meth:`with_options`)."""
        self._channels.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the calls -----------------------------------------------------------------------------

    def _invoke(
        self, method: str, request: Any, *, read: bool, consistency: str | None = None
    ) -> tuple[Any, bool]:
        """Sends one call with the defaults' metadata (asking for ``consistency`` when given)
        and deadline, retrying as :class:`mintcache._core.Attempts` decides; returns the answer
        and whether the server flagged it degraded."""
        headers = self._defaults.headers_for(consistency)
        attempts = _core.Attempts(
            self._channels.endpoints, self._defaults.timeout, self._retry, read
        )
        transport = self._channels.transport
        while True:
            index, timeout, probe = attempts.start()
            if probe:
                ok, timeout = self._probe(attempts, index, timeout, headers)
                if not ok:
                    continue
            try:
                answer = transport.call(index, method, request, timeout, headers)
            except _transport.Failed as failed:
                time.sleep(
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

    def _probe(
        self, attempts: _core.Attempts, index: int, timeout: float | None, headers: Any
    ) -> tuple[bool, float | None]:
        """The probe of a half-open circuit: the endpoint's health, within ``timeout``."""
        try:
            self._channels.transport.health(index, b"", timeout, headers)
        except _transport.Failed as failed:
            return attempts.probed(failed.code, failed.details)
        except BaseException:
            attempts.abandoned()
            raise
        return attempts.probed(None)

    def get(
        self,
        key: Key,
        *,
        peek: bool = False,
        lease_on_miss: bool | None = None,
        wait: float | None = None,
        early_refresh_beta: float | None = None,
        consistency: str | None = None,
    ) -> Lookup:
        """Reads a key. ``peek``: look without joining the refresh election (never ``REFRESH``,
        no lease, no cold-miss placeholder; for inspection, not for callers that recompute).
        ``lease_on_miss``: cold-miss protection for this read. ``wait``: seconds the server may
        hold a read that would answer ``PENDING`` until the fill lands (then ``HIT``; ``MISS``
        with a lease if the filler gave up and this caller is elected to fill instead; still
        ``PENDING`` when the wait, cut to the call's deadline, runs out). ``early_refresh_beta``:
        β of early refresh for this read (0: off). ``consistency``: ``"strong"`` skips the
        replica's hot-key cache for this read."""
        if lease_on_miss is None:
            lease_on_miss = self._defaults.lease_on_miss
        if early_refresh_beta is None:
            early_refresh_beta = self._defaults.early_refresh_beta
        wait = _core.held_wait(wait, self._defaults.timeout)
        request = _core.get_request(key, peek, lease_on_miss, wait, early_refresh_beta)
        response, degraded = self._invoke("Get", request, read=True, consistency=consistency)
        return _core.lookup_from(request.key, response, degraded)

    def get_many(
        self,
        keys: Iterable[Key],
        *,
        peek: bool = False,
        lease_on_miss: bool | None = None,
        early_refresh_beta: float | None = None,
        consistency: str | None = None,
    ) -> list[Lookup]:
        """Reads many keys in one call; one :class:`~mintcache.Lookup` per key, in order (a
        key that failed has ``error`` set). Options as in :meth:`get`."""
        if lease_on_miss is None:
            lease_on_miss = self._defaults.lease_on_miss
        if early_refresh_beta is None:
            early_refresh_beta = self._defaults.early_refresh_beta
        request = _core.get_many_request(keys, peek, lease_on_miss, early_refresh_beta)
        if not request.keys:
            return []
        response, degraded = self._invoke("GetMany", request, read=True, consistency=consistency)
        return _core.lookups_from(response, degraded)

    def set(
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
        """Stores a value: fresh for ``ttl`` seconds (``0``: the server's default; ``None``:
        never expires), then servable as ``STALE`` for ``grace`` seconds (``0``: the server's
        default; ``None``: no grace period, gone at the end of ``ttl``). ``lease``: from the
        ``REFRESH`` / ``MISS`` this value answers; the value is then not stored (``False``) if
        the key changed since. ``counter``: ``value`` is the decimal digits of an unsigned
        64-bit number that :meth:`increment` can change atomically. ``recompute_ms``: how long
        computing the value took, when the caller measured it (early refresh uses it; 0: the
        server measures it from the lease)."""
        request = _core.set_request(key, value, ttl, grace, flags, lease, counter, recompute_ms)
        response, _ = self._invoke("Set", request, read=False)
        return response.stored

    def add(
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
        """Stores a value only if the key holds none; says whether it stored."""
        return self._add(key, value, ttl, grace, flags, counter, recompute_ms).stored

    def _add(
        self,
        key: Key,
        value: Value,
        ttl: float | None,
        grace: float | None,
        flags: int = 0,
        counter: bool = False,
        recompute_ms: int = 0,
    ) -> pb.AddResponse:
        """``Add``'s answer: ``stored``, and the ``lease_token`` naming what it stored (the
        lock releases with it)."""
        request = _core.add_request(key, value, ttl, grace, flags, counter, recompute_ms)
        response, _ = self._invoke("Add", request, read=False)
        return response

    def set_many(self, items: Iterable[SetItem]) -> list[WriteResult]:
        """Stores many values in one call; one :class:`~mintcache.WriteResult` per item."""
        request = _core.set_many_request(items)
        if not request.items:
            return []
        response, _ = self._invoke("SetMany", request, read=False)
        return _core.write_results(response, "stored")

    def delete(self, key: Key, *, lease: bytes | None = None) -> bool:
        """Removes a key; says whether it held a value. ``lease``: remove only the item this
        lease names (from a ``MISS`` or ``REFRESH`` read): ``False`` when the key holds
        something else now. A caller that got ``MISS`` and gives up filling releases the fill
        this way, and one waiting reader is elected to fill instead."""
        response, _ = self._invoke("Delete", _core.delete_request(key, lease), read=False)
        return response.deleted

    def delete_many(self, keys: Iterable[Key]) -> list[WriteResult]:
        """Removes many keys in one call; one :class:`~mintcache.WriteResult` per key."""
        request = pb.DeleteManyRequest(keys=[_core.as_bytes(k, "key") for k in keys])
        if not request.keys:
            return []
        response, _ = self._invoke("DeleteMany", request, read=False)
        return _core.write_results(response, "deleted")

    def touch(self, key: Key, ttl: float | None = 0) -> bool:
        """Gives an existing key a new fresh ttl (``None``: never expires); says whether the
        key existed."""
        response, _ = self._invoke("Touch", _core.touch_request(key, ttl), read=False)
        return response.touched

    def invalidate(self, key: Key) -> bool:
        """Soft purge: the next reader gets ``REFRESH``, the others ``STALE`` until the grace
        period ends or a new value is set. Says whether the key held a value."""
        request = pb.InvalidateRequest(key=_core.as_bytes(key, "key"))
        response, _ = self._invoke("Invalidate", request, read=False)
        return response.invalidated

    def increment(
        self, key: Key, delta: int = 1, *, initial: int | None = None, ttl: float | None = 0
    ) -> int:
        """Adds ``delta`` (negative to subtract; never below 0) to a counter and returns the new
        value. A missing counter raises :class:`~mintcache.NotFound`, unless ``initial`` is
        given: it is then created with that value (``delta`` not applied), living ``ttl``
        seconds (``None``: never expires). A value that is not a counter raises
        :class:`~mintcache.FailedPrecondition`. Never retried once it may have reached the
        server: it would count twice."""
        request = _core.increment_request(key, delta, initial, ttl)
        try:
            response, _ = self._invoke("Increment", request, read=False)
        except NotFound as error:
            raise _core.increment_not_found(error) from None
        return response.value

    def flush(self) -> bool:
        """Drops every key of this client's key space (namespace + version) and nothing else.
        ``False`` only under the debug mode ``off``."""
        response, _ = self._invoke("Flush", pb.FlushRequest(), read=False)
        return response.flushed

    def health(self, service: str = "") -> str:
        """Asks the server's gRPC health service (``grpc.health.v1.Health/Check``) of the
        first endpoint whose circuit allows a call: ``"SERVING"``, ``"NOT_SERVING"``, ...
        (``service``: ``""`` for the server as a whole, or ``"mintcache.v1.Cache"``)."""
        request = _core.health_request(service)
        attempts = _core.Attempts(
            self._channels.endpoints, self._defaults.timeout, Backoff.NONE, read=True
        )
        index, timeout, _ = attempts.start()  # a health check is its own probe
        try:
            answer = self._channels.transport.health(
                index, request, timeout, self._defaults.headers
            )
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
        """A distributed lock on ``key`` in this client's key space (see
        :class:`mintcache.lock.Lock`): ``with client.lock("job", timeout=30): ...``.
        ``timeout``: seconds the lock lives unless released (``None``: until released)."""
        return Lock(
            _core.as_bytes(key, "key"),
            client=lambda: self,
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
        )

    # --- the mint protocol ---------------------------------------------------------------------

    def get_or_compute(
        self,
        key: Key,
        compute: Callable[[], Value],
        ttl: float | None = 0,
        *,
        grace: float | None = 0,
        flags: int = 0,
        lease_on_miss: bool | None = None,
        wait: float | None = None,
        early_refresh_beta: float | None = None,
        consistency: str | None = None,
    ) -> bytes:
        """Returns the cached value of ``key``, computing and caching it when the server says so:

        - ``HIT``, ``STALE`` → the cached (possibly stale) value; ``compute`` is not called;
        - ``REFRESH`` (this caller won the refresh of a stale value, or of a fresh one close to
          its expiry: early refresh) and ``MISS`` → calls ``compute()``, stores the result for
          ``ttl`` / ``grace`` with the read's lease and the time computing took
          (``recompute_ms``), and returns it;
        - ``PENDING`` (another caller is filling the key) → the read is held by the server
          until the fill lands, and answered with the value: one read per waiting caller.
          If the filler gives up, the server elects one waiter (``MISS`` with a lease), which
          computes instead. A read still ``PENDING`` when its hold ends is followed by another,
          within ``wait`` seconds in all (default: the client's, 10 s) and the ``pending``
          schedule; after that the caller computes and stores the value itself;
        - a degraded read (the server's memcached failed) → computes and returns the value
          without writing it back.

        Cold-miss protection is on for these reads unless ``lease_on_miss`` (or the client's)
        says ``False``. However many callers (and server replicas) ask for a key at once,
        ``compute`` runs once per stale period. If ``compute`` raises, a ``MISS`` lease is
        released (``Delete`` with it), so that one waiting caller takes the fill over at once,
        and the exception propagates: a failed fill is never a value. Storing is best-effort:
        a failed or refused store is logged and the computed value is still returned.
        """
        key_bytes = _core.as_bytes(key, "key")
        protect = _core.fill_protection(lease_on_miss, self._defaults.lease_on_miss)
        reads = MintReads(self._pending, self._wait if wait is None else _core.checked_wait(wait))
        while True:
            lookup = self.get(
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
                time.sleep(decision.seconds)
                continue
            break
        assert isinstance(decision, Compute)
        started = _core.monotonic()
        try:
            value = _core.as_bytes(compute(), "computed value")
        except BaseException:
            if decision.fill:
                self._release_fill(key_bytes, decision.lease)
            raise
        took = _core.recompute_ms(_core.monotonic() - started)
        if decision.write_back:
            try:
                self.set(
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

    def _release_fill(self, key: bytes, lease: bytes | None) -> None:
        """Gives a fill's lease back after its computation failed (best-effort: if this fails
        too, the server's fill timeout hands the fill to a waiter)."""
        try:
            self.delete(key, lease=lease)
        except CacheError as error:
            log.warning("mintcache: releasing the lease of a failed fill failed: %s", error)
