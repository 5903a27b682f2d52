"""``CacheDebugMiddleware``: a superuser adds ``?cache_debug=off`` or ``?cache_debug=write-only``
(or the original package's ``turn_off`` / ``write_only``) to any URL and gets that cache mode
for that request only. Everyone else's parameter is ignored.

The mode lives in a context variable (:mod:`mintcache.django.debug`) set around the view and
reset afterwards, so concurrent requests, threads and async tasks never see each other's mode
(the original kept it on the process-wide cache object). Works in sync and async stacks.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase

from ..types import DebugMode
from .debug import DebugReport, _mode, _report

__all__ = ["CacheDebugMiddleware", "QUERY_PARAMETER", "RESPONSE_HEADER"]

log = logging.getLogger("mintcache.django")

#: The query parameter a superuser adds to a URL.
QUERY_PARAMETER = "cache_debug"
#: The response header that says which mode the request ran in (superusers only).
RESPONSE_HEADER = "X-Cache-Debug"


def _requested(request: HttpRequest) -> DebugMode | None:
    """The mode asked for in the query string, if it is a known one (the user is checked
    separately: this does not touch the session)."""
    raw = request.GET.get(QUERY_PARAMETER)
    if not raw:
        return None
    try:
        return DebugMode.parse(raw)
    except ValueError:
        return None


def _check_user_attribute(request: HttpRequest) -> None:
    if not hasattr(request, "user") and not hasattr(request, "auser"):
        raise ImproperlyConfigured(
            "CacheDebugMiddleware needs django.contrib.auth.middleware.AuthenticationMiddleware "
            "before it in MIDDLEWARE"
        )


def _is_superuser(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


class CacheDebugMiddleware:
    """Applies ``?cache_debug=`` for active superusers, for the one request. Place it after
    ``AuthenticationMiddleware``. The response then says in ``X-Cache-Debug`` what became of
    the mode: ``<mode>`` when every cache operation of the request ran in it, ``ignored
    (no ADMIN_TOKEN): ...`` when the backend could not apply it, ``partial: ...`` for a mix,
    ``<mode> (no cache operations)`` when the request used no cache."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        mode = _requested(request)
        if mode is not None:
            _check_user_attribute(request)
            if not _is_superuser(request.user):
                mode = None
        if mode is None:
            return self.get_response(request)
        report = DebugReport(mode)
        token, report_token = _mode.set(mode), _report.set(report)
        try:
            response = self.get_response(request)
        finally:
            _report.reset(report_token)
            _mode.reset(token)
        return self._mark(request, response, report)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        mode = _requested(request)
        if mode is not None:
            _check_user_attribute(request)
            # request.user is lazy and loads the session synchronously; auser() is its async form.
            user = await request.auser() if hasattr(request, "auser") else request.user
            if not _is_superuser(user):
                mode = None
        if mode is None:
            return await get_response(request)
        report = DebugReport(mode)
        token, report_token = _mode.set(mode), _report.set(report)
        try:
            response = await get_response(request)
        finally:
            _report.reset(report_token)
            _mode.reset(token)
        return self._mark(request, response, report)

    @staticmethod
    def _mark(request: HttpRequest, response: Any, report: DebugReport) -> Any:
        header = report.header()
        log.info(
            "cache debug mode %s for %s %s: %s",
            report.mode.value,
            request.method,
            request.path,
            header,
        )
        response[RESPONSE_HEADER] = header
        return response
