"""The debug mode of the current request (or task): a context variable, so that one request's
mode never leaks into another one, whatever threads or event loops serve them.

:class:`~mintcache.django.CacheDebugMiddleware` sets it for a superuser's request; code outside
requests (a management command, a test) can use :func:`cache_debug`. The backend reads it on
every call and then sends ``x-cache-debug`` with its ``ADMIN_TOKEN``.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from ..types import DebugMode

__all__ = ["cache_debug", "current_debug_mode"]

_mode: contextvars.ContextVar[DebugMode | None] = contextvars.ContextVar(
    "mintcache_debug_mode", default=None
)


def current_debug_mode() -> DebugMode | None:
    """The debug mode in force here, if any."""
    return _mode.get()


@contextlib.contextmanager
def cache_debug(mode: DebugMode | str | None) -> Iterator[DebugMode | None]:
    """Runs the block with a debug mode (``"off"``, ``"write-only"``, or ``None`` for normal):

    >>> with cache_debug("write-only"):                   # doctest: +SKIP
    ...     cache.set("page", fixed_page)                   # reads miss, the write goes through
    """
    parsed = None if mode is None else DebugMode.parse(mode)
    token = _mode.set(parsed)
    try:
        yield parsed
    finally:
        _mode.reset(token)
