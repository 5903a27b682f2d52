"""CacheDebugMiddleware through Django's test clients (full request cycle: sessions, auth,
middleware, views, the backend, the server): superuser / staff / anonymous requests, both
spellings of each mode, concurrent requests in threads and in asyncio, the async stack, and
the backend without an ADMIN_TOKEN."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import AsyncClient, Client


def browser(username: str | None) -> Client:
    client = Client()
    if username is not None:
        from django.contrib.auth.models import User

        client.force_login(User.objects.get(username=username))
    return client


def probe(
    client: Client,
    key: str,
    mode: str | None,
    write: str | None = None,
    path: str = "probe",
    alias: str = "default",
    also: str | None = None,
):
    query = {"key": key, "cache": alias}
    if also is not None:
        query["also"] = also
    if mode is not None:
        query["cache_debug"] = mode
    if write is not None:
        query["write"] = write
    response = client.get(f"/{path}/", query)
    assert response.status_code == 200, response.content
    return response


@pytest.mark.parametrize("spelling", ["off", "turn_off", "OFF"])
def test_superuser_turns_the_cache_off_for_one_request(cache, spelling):
    cache.set("k", "cached")
    root = browser("root")
    response = probe(root, "k", spelling, write="new")
    assert response.json() == {"value": None, "mode": "off"}
    assert response["X-Cache-Debug"] == "off"
    assert cache.get("k:written") is None  # the write was accepted and not performed
    # The next request of the same user, without the parameter: normal again.
    response = probe(root, "k", None)
    assert response.json() == {"value": "cached", "mode": None}
    assert "X-Cache-Debug" not in response


@pytest.mark.parametrize("spelling", ["write-only", "write_only"])
def test_superuser_write_only(cache, spelling):
    cache.set("k", "bad value")
    response = probe(browser("root"), "k", spelling, write="fixed")
    assert response.json() == {"value": None, "mode": "write-only"}
    assert cache.get("k:written") == "fixed"  # writes go through


@pytest.mark.parametrize("user", ["staff", "someone", None])
def test_everyone_else_is_ignored(cache, user):
    cache.set("k", "cached")
    response = probe(browser(user), "k", "off", write="w")
    assert response.json() == {"value": "cached", "mode": None}
    assert "X-Cache-Debug" not in response
    assert cache.get("k:written") == "w"


def test_unknown_mode_is_ignored(cache):
    cache.set("k", "cached")
    response = probe(browser("root"), "k", "sideways")
    assert response.json() == {"value": "cached", "mode": None}


def test_async_stack(cache):
    cache.set("k", "cached")

    async def main():
        from django.contrib.auth.models import User

        root = AsyncClient()
        user = await User.objects.aget(username="root")
        await root.aforce_login(user)
        off = await root.get("/aprobe/", {"key": "k", "cache_debug": "off", "write": "x"})
        anonymous = await AsyncClient().get("/aprobe/", {"key": "k", "cache_debug": "off"})
        return off, anonymous

    off, anonymous = asyncio.run(main())
    assert off.json() == {"value": None, "mode": "off"} and off["X-Cache-Debug"] == "off"
    assert anonymous.json() == {"value": "cached", "mode": None}
    assert cache.get("k:written") is None


def test_concurrent_requests_do_not_share_modes(cache):
    """Twelve requests inside their views at the same moment (a barrier in the view): only the
    superusers who asked get the mode; the others, in other threads, read normally."""
    from django_project import views

    cache.set("shared", "cached")
    people = [
        ("root", "off"),
        ("root", "write-only"),
        ("root", None),
        ("staff", "off"),
        ("someone", "off"),
        (None, "off"),
    ] * 2
    clients = [browser(user) for user, _ in people]
    views.barrier = threading.Barrier(len(people))
    try:
        with ThreadPoolExecutor(len(people)) as pool:
            responses = list(
                pool.map(
                    lambda pair: probe(pair[0], "shared", pair[1], path="together").json(),
                    zip(clients, [mode for _, mode in people]),
                )
            )
    finally:
        views.barrier = None
    for (user, mode), seen in zip(people, responses):
        if user == "root" and mode is not None:
            assert seen == {"value": None, "mode": mode.replace("_", "-")}, (user, mode)
        else:
            assert seen == {"value": "cached", "mode": None}, (user, mode)


def test_concurrent_async_requests_do_not_share_modes(cache):
    from django.contrib.auth.models import User

    from django_project import views

    cache.set("shared", "cached")
    people = [("root", "off"), ("root", None), ("staff", "off"), (None, "off")] * 2

    async def main():
        views.abarrier = asyncio.Barrier(len(people))
        clients = []
        for user, _ in people:
            client = AsyncClient()
            if user is not None:
                await client.aforce_login(await User.objects.aget(username=user))
            clients.append(client)
        responses = await asyncio.gather(
            *(
                c.get(
                    "/atogether/",
                    {"key": "shared", **({"cache_debug": m} if m else {})},
                )
                for c, (_, m) in zip(clients, people)
            )
        )
        return [r.json() for r in responses]

    try:
        seen = asyncio.run(main())
    finally:
        views.abarrier = None
    for (user, mode), answer in zip(people, seen):
        if user == "root" and mode is not None:
            assert answer == {"value": None, "mode": "off"}
        else:
            assert answer == {"value": "cached", "mode": None}


def test_backend_without_admin_token_ignores_the_mode(caches, caplog):
    caches["no_admin"].set("k", "cached")
    response = probe(browser("root"), "k", "write-only", write="w", alias="no_admin")
    # The request runs in the mode, but this cache has no admin token to apply it with: it
    # answers normally, says so in the log, and the header does not claim the mode.
    assert response.json() == {"value": "cached", "mode": "write-only"}
    assert any("ADMIN_TOKEN" in r.getMessage() for r in caplog.records)
    assert response["X-Cache-Debug"] == (
        "ignored (no ADMIN_TOKEN): 2 cache operation(s) ran normally"
    )


def test_debug_header_tells_what_was_applied(caches):
    """X-Cache-Debug names the mode only when every cache operation ran in it."""
    caches["default"].set("k", "cached")
    root = browser("root")
    mixed = probe(root, "k", "off", also="no_admin")
    assert mixed["X-Cache-Debug"] == (
        "partial: off on 1 cache operation(s), ignored on 1 (no ADMIN_TOKEN)"
    )
    response = root.get("/nocache/", {"cache_debug": "off"})
    assert response.json() == {"mode": "off"}
    assert response["X-Cache-Debug"] == "off (no cache operations)"


def test_cache_debug_context_manager(cache):
    from mintcache.django import cache_debug, current_debug_mode

    cache.set("k", "cached")
    with cache_debug("off"):
        assert current_debug_mode().value == "off"
        assert cache.get("k") is None
        cache.set("k", "ignored")
    assert current_debug_mode() is None
    assert cache.get("k") == "cached"
    with cache_debug("write_only"):
        cache.set("k", "fixed")
    assert cache.get("k") == "fixed"
