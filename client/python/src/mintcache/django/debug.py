"""The debug mode of the current request (or task): a context variable, so that one request's
mode never leaks into another one, whatever threads or event loops serve them.

:class:`~mintcache.django.CacheDebugMiddleware` sets it for a superuser's request; code outside
requests (a management command, a test) can use :func:`cache_debug`. The backend reads it on
every call and then sends ``x-cache-debug`` with its ``ADMIN_TOKEN``.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Iterator

from ..types import DebugMode

__all__ = ["DebugReport", "cache_debug", "current_debug_mode"]

_mode: contextvars.ContextVar[DebugMode | None] = contextvars.ContextVar(
    "mintcache_debug_mode", default=None
)


class DebugReport:
    """What became of a debug mode during one request: how many cache operations ran in it
    (``applied``: the backend sent it with its ``ADMIN_TOKEN``) and how many ran normally
    because their backend has no ``ADMIN_TOKEN`` (``ignored``). :meth:`header` is what the
    middleware answers in ``X-Cache-Debug``."""

    def __init__(self, mode: DebugMode) -> None:
        self.mode = mode
        self.applied = 0
        self.ignored = 0
        self._lock = threading.Lock()  # a view may use the cache from several threads

    def note(self, applied: bool) -> None:
        with self._lock:
            if applied:
                self.applied += 1
            else:
                self.ignored += 1

    def header(self) -> str:
        """``<mode>`` only when every cache operation of the request ran in that mode."""
        mode = self.mode.value
        if self.ignored and self.applied:
            return (
                f"partial: {mode} on {self.applied} cache operation(s), ignored on "
                f"{self.ignored} (no ADMIN_TOKEN)"
            )
        if self.ignored:
            return f"ignored (no ADMIN_TOKEN): {self.ignored} cache operation(s) ran normally"
        if not self.applied:
            return f"{mode} (no cache operations)"
        return mode


_report: contextvars.ContextVar[DebugReport | None] = contextvars.ContextVar(
    "mintcache_debug_report", default=None
)


def note_debug(applied: bool) -> None:
    """Called by the backend for each operation run while a debug mode is in force."""
    report = _report.get()
    if report is not None:
        report.note(applied)


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
