"""Views that read and write the cache, for the debug middleware tests.

``probe`` / ``aprobe``: read ``?key=``, then write ``?write=`` into ``<key>:written``, and report
what they saw. ``together`` / ``atogether``: wait at a barrier the test set up, so that many
requests (superusers with a debug mode and everyone else) are inside their views at the same
time, then read ``?key=`` and wait again before answering.
"""

import asyncio
import threading

from django.core.cache import cache, caches
from django.http import JsonResponse

from mintcache.django import current_debug_mode

#: Set by the tests before concurrent requests: threading.Barrier / asyncio.Barrier.
barrier: threading.Barrier | None = None
abarrier: asyncio.Barrier | None = None


def _mode():
    mode = current_debug_mode()
    return None if mode is None else mode.value


def _alias(request):
    return caches[request.GET.get("cache", "default")]


def probe(request):
    c = _alias(request)
    key = request.GET["key"]
    seen = c.get(key)
    if "write" in request.GET:
        c.set(key + ":written", request.GET["write"])
    if "also" in request.GET:
        caches[request.GET["also"]].get(key)
    return JsonResponse({"value": seen, "mode": _mode()})


def nocache(request):
    return JsonResponse({"mode": _mode()})


async def aprobe(request):
    c = _alias(request)
    key = request.GET["key"]
    seen = await c.aget(key)
    if "write" in request.GET:
        await c.aset(key + ":written", request.GET["write"])
    return JsonResponse({"value": seen, "mode": _mode()})


def together(request):
    barrier.wait(timeout=60)
    seen = cache.get(request.GET["key"])
    mode = _mode()
    barrier.wait(timeout=60)
    return JsonResponse({"value": seen, "mode": mode})


async def atogether(request):
    async with asyncio.timeout(60):
        await abarrier.wait()
    seen = await cache.aget(request.GET["key"])
    mode = _mode()
    async with asyncio.timeout(60):
        await abarrier.wait()
    return JsonResponse({"value": seen, "mode": mode})
