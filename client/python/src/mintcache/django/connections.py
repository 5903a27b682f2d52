"""The clients Django's ``MintCache`` instances call through, shared per connection settings.

Clients are shared by every backend instance with the same connection settings (Django makes
one instance per thread and per async context), per process (a forked worker must not use its
parent's channels) and, for asyncio, per event loop (a grpc.aio channel belongs to one). The
circuit breaker of those settings is shared by the sync client and every loop's client.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any, Callable

from .._breaker import Breaker
from ..aio import AsyncClient
from ..client import Client

_clients: dict[tuple[Any, ...], Client] = {}
_breakers: dict[tuple[Any, ...], Breaker] = {}
_clients_lock = threading.Lock()
_aio_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], AsyncClient]
]
_aio_clients = weakref.WeakKeyDictionary()

# Bumped in a forked child: backend instances drop the clients they kept (the parent's).
_generation = 0


def generation() -> int:
    """How many times this process was forked since the module loaded: a backend instance
    that kept clients of another generation drops them (they are its parent's)."""
    return _generation


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def _shared_breaker(settings: tuple[Any, ...], make: Callable[[], Breaker]) -> Breaker:
    # Called with _clients_lock held.
    key = (os.getpid(), settings)
    breaker = _breakers.get(key)
    if breaker is None:
        breaker = _breakers[key] = make()
    return breaker


def shared_client(
    settings: tuple[Any, ...], make: Callable[[Breaker], Client], make_breaker: Any
) -> Client:
    key = (os.getpid(), settings)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make(_shared_breaker(settings, make_breaker))
        return client


def shared_aio_client(
    settings: tuple[Any, ...], make: Callable[[Breaker], AsyncClient], make_breaker: Any
) -> AsyncClient:
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
            client = per_loop[settings] = make(_shared_breaker(settings, make_breaker))
        return client
