"""Distributed locks over the cache, for the sync and asyncio clients and the Django backend.

A lock is a key added with ``Add`` (stored only if the key holds nothing) whose value is a
random token of its holder, with no grace period and an expiry (``timeout``), so that a
holder that dies frees it. Acquiring retries the ``Add`` every ``sleep`` seconds until it
stores, or until ``blocking_timeout``. The ``Add`` that stores answers with a lease naming the
item it stored; releasing is one ``Delete`` with that lease, which the server carries out
only if the key still holds that very item (a compare-and-delete in memcached): a lock that
expired and was taken by someone else is never released by its former holder
(:class:`LockNotOwnedError`), with no race between a look and a delete.

Against a server whose ``Add`` hands out no lease (older than leases on ``Add``), releasing
falls back to a read (a ``peek``) and a delete only if the key still holds this holder's
token; that closes the race of expiry between the two calls by deleting only while the lock
has time left (memcached's clock counts whole seconds, so an expiry may come up to one second
early) and with a deadline that ends before it could expire, but not a new holder taking the
lock within the one round trip of the release.

Locks ignore debug modes (they coordinate work; they do not cache it).

Pure decisions are :class:`LockAttempts` and :func:`release_deadline` (the fallback);
:class:`Lock` runs them over a sync client, an asyncio client, or both (``with`` /
``async with``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

from ._core import monotonic

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .client import Client
    from .types import Lookup

__all__ = ["Lock", "LockError", "LockNotOwnedError"]

#: The margin kept between a release's delete and the earliest moment the lock could expire.
RELEASE_MARGIN = 0.05
#: memcached counts expiry in whole seconds: an item may expire up to this much early.
EXPIRY_GRANULARITY = 1.0


class LockError(Exception):
    """A lock could not be acquired within its ``blocking_timeout`` (in ``with``), or is used
    wrongly (released while not held)."""


class LockNotOwnedError(LockError):
    """The lock is no longer this holder's: it expired (and maybe someone else holds it)."""


def new_token() -> bytes:
    """A holder's token: 128 random bits, as text."""
    return secrets.token_hex(16).encode("ascii")


def _check_seconds(name: str, value: Any, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"lock: {name} must be seconds >= 0" + (" or None" if allow_none else ""))


class LockAttempts:
    """The attempts of one ``acquire``: after each refused ``Add``, :meth:`wait` says how long
    to sleep before the next, or ``None``: give up (not blocking, or ``blocking_timeout``
    reached)."""

    __slots__ = ("_blocking", "_give_up_at", "_sleep")

    def __init__(self, blocking: bool, blocking_timeout: float | None, sleep: float) -> None:
        self._blocking = blocking
        self._sleep = sleep
        self._give_up_at = None if blocking_timeout is None else monotonic() + blocking_timeout

    def wait(self) -> float | None:
        if not self._blocking:
            return None
        if self._give_up_at is None:
            return self._sleep
        left = self._give_up_at - monotonic()
        if left <= 0:
            return None
        return min(self._sleep, left)


def release_deadline(
    lookup: Lookup, token: bytes, sent_at: float, timeout: float | None, now: float
) -> float | None:
    """Whether and how a holder deletes its lock without a lease (a server whose ``Add`` gives
    none), from a ``peek`` of it: the deadline (seconds) of the delete, ``0.0`` for no deadline,
    or ``None``: too close to its expiry, let it expire. ``sent_at``: when the ``Add`` that
    took the lock was sent. Raises :class:`LockNotOwnedError` when the key no longer holds
    ``token``."""
    if not lookup.usable or lookup.value != token:
        raise LockNotOwnedError("the lock is no longer held by this holder (it expired)")
    if timeout is None:
        return 0.0
    slack = sent_at + timeout - EXPIRY_GRANULARITY - now - RELEASE_MARGIN
    return slack if slack > 0 else None


def _capped(deadline: float, timeout: float | None) -> float | None:
    """The timeout of a release's delete: the lock's deadline (``0.0``: none) within the
    client's own."""
    if not deadline:
        return timeout
    return deadline if timeout is None else min(deadline, timeout)


class Lock:
    """A lock on ``key``: ``with lock:`` / ``async with lock:``, or :meth:`acquire` /
    :meth:`release` (and :meth:`aacquire` / :meth:`arelease`).

    ``client`` / ``aclient``: functions returning the sync / asyncio client to use (either
    may be missing; the methods that need it then raise :class:`TypeError`). ``timeout``:
    seconds the lock lives unless released (``None``: until released; fractions round up to
    whole seconds). ``sleep``: seconds between attempts while blocked. ``blocking``: whether
    ``acquire`` waits. ``blocking_timeout``: the longest wait (``None``: no limit).
    """

    def __init__(
        self,
        key: bytes,
        *,
        client: Callable[[], Client] | None = None,
        aclient: Callable[[], AsyncClient] | None = None,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
    ) -> None:
        _check_seconds("timeout", timeout, allow_none=True)
        _check_seconds("sleep", sleep, allow_none=False)
        _check_seconds("blocking_timeout", blocking_timeout, allow_none=True)
        if timeout == 0:
            raise ValueError("lock: a timeout of 0 would expire at once; use None for no expiry")
        self.key = key
        self.timeout = timeout
        self.sleep = sleep
        self.blocking = blocking
        self.blocking_timeout = blocking_timeout
        self._client = client
        self._aclient = aclient
        self._token: bytes | None = None
        self._lease: bytes | None = None
        self._sent_at = 0.0

    def __repr__(self) -> str:
        return f"Lock({self.key!r}, timeout={self.timeout!r}, held={self._token is not None})"

    @property
    def token(self) -> bytes | None:
        """This holder's token while it holds the lock (what the key holds)."""
        return self._token

    # --- shared steps --------------------------------------------------------------------------

    def _attempts(self, blocking: bool | None, blocking_timeout: float | None) -> LockAttempts:
        _check_seconds("blocking_timeout", blocking_timeout, allow_none=True)
        return LockAttempts(
            self.blocking if blocking is None else blocking,
            self.blocking_timeout if blocking_timeout is None else blocking_timeout,
            self.sleep,
        )

    def _add_args(self, token: bytes) -> tuple[Any, ...]:
        """The arguments of the ``Add`` that takes the lock: no grace period, so that it is
        gone at its expiry."""
        self._sent_at = monotonic()
        return (self.key, token, self.timeout, None)

    def _took(self, token: bytes, lease: bytes) -> None:
        self._token = token
        self._lease = lease or None

    def _released(self, deleted: bool) -> None:
        """After the ``Delete`` with the lease: the lock is no longer held either way."""
        self._token = self._lease = None
        if not deleted:
            raise LockNotOwnedError("the lock is no longer held by this holder (it expired)")

    def _held(self) -> bytes:
        if self._token is None:
            raise LockError("cannot release a lock that is not held")
        return self._token

    def _release_deadline(self, lookup: Lookup, token: bytes) -> float | None:
        """:func:`release_deadline`, capped by the client's own; a lock found not owned is
        forgotten."""
        try:
            deadline = release_deadline(lookup, token, self._sent_at, self.timeout, monotonic())
        except LockNotOwnedError:
            self._token = self._lease = None
            raise
        return deadline

    def _sync(self) -> Client:
        if self._client is None:
            raise TypeError("this lock belongs to an asyncio client: use async with / aacquire")
        return self._client().with_options(debug=None)

    def _async(self) -> AsyncClient:
        if self._aclient is None:
            raise TypeError("this lock belongs to a sync client: use with / acquire")
        return self._aclient().with_options(debug=None)

    @staticmethod
    def _not_acquired(key: bytes) -> LockError:
        return LockError(f"lock {key!r} not acquired within its blocking_timeout")

    # --- sync ----------------------------------------------------------------------------------

    def acquire(self, blocking: bool | None = None, blocking_timeout: float | None = None) -> bool:
        """Takes the lock; ``False`` if it could not (not blocking, or ``blocking_timeout``
        passed). The arguments override the lock's own for this call."""
        if self._token is not None:
            raise LockError("this lock is already held by this holder")
        attempts = self._attempts(blocking, blocking_timeout)
        client = self._sync()
        token = new_token()
        while True:
            added = client._add(*self._add_args(token))
            if added.stored:
                self._took(token, added.lease_token)
                return True
            wait = attempts.wait()
            if wait is None:
                return False
            time.sleep(wait)

    def release(self) -> None:
        """Frees the lock; :class:`LockNotOwnedError` if it is no longer this holder's."""
        token = self._held()
        client = self._sync()
        if self._lease is not None:
            self._released(client.delete(self.key, lease=self._lease))
            return
        lookup = client.get(self.key, peek=True)
        deadline = self._release_deadline(lookup, token)
        if deadline is not None:
            client.with_options(timeout=_capped(deadline, client.timeout)).delete(self.key)
        self._token = None

    def locked(self) -> bool:
        """Whether anyone holds the lock now."""
        return self._sync().get(self.key, peek=True).usable

    def owned(self) -> bool:
        """Whether this holder holds it now (it may have expired)."""
        if self._token is None:
            return False
        lookup = self._sync().get(self.key, peek=True)
        return lookup.usable and lookup.value == self._token

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise self._not_acquired(self.key)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- asyncio -------------------------------------------------------------------------------

    async def aacquire(
        self, blocking: bool | None = None, blocking_timeout: float | None = None
    ) -> bool:
        """See :meth:`acquire`."""
        if self._token is not None:
            raise LockError("this lock is already held by this holder")
        attempts = self._attempts(blocking, blocking_timeout)
        client = self._async()
        token = new_token()
        while True:
            added = await client._add(*self._add_args(token))
            if added.stored:
                self._took(token, added.lease_token)
                return True
            wait = attempts.wait()
            if wait is None:
                return False
            await asyncio.sleep(wait)

    async def arelease(self) -> None:
        """See :meth:`release`."""
        token = self._held()
        client = self._async()
        if self._lease is not None:
            self._released(await client.delete(self.key, lease=self._lease))
            return
        lookup = await client.get(self.key, peek=True)
        deadline = self._release_deadline(lookup, token)
        if deadline is not None:
            await client.with_options(timeout=_capped(deadline, client.timeout)).delete(self.key)
        self._token = None

    async def alocked(self) -> bool:
        """See :meth:`locked`."""
        return (await self._async().get(self.key, peek=True)).usable

    async def aowned(self) -> bool:
        """See :meth:`owned`."""
        if self._token is None:
            return False
        lookup = await self._async().get(self.key, peek=True)
        return lookup.usable and lookup.value == self._token

    async def __aenter__(self) -> Lock:
        if not await self.aacquire():
            raise self._not_acquired(self.key)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.arelease()
