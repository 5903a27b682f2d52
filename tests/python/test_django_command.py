"""``python manage.py mintcache check | stats | flush`` against the real server (its admin
port read for the version, the store and the counters), a dead endpoint, and the questions
flush asks."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from harness import CLIENT_TOKEN, free_port


def run(*args):
    out = io.StringIO()
    call_command("mintcache", *args, stdout=out)
    return out.getvalue()


def test_check_reports_every_endpoint(caches, cluster):
    out = run(
        "check",
        "--cache",
        "default",
        "--cache",
        "mint",
        "--admin",
        f"127.0.0.1:{cluster.admin_port}",
    )
    assert "cache 'default': key space namespace (server default), version 'django-tests-" in out
    assert "serializer pickle, compressor none; IGNORE_EXCEPTIONS off" in out
    assert f"{cluster.addr}: ok" in out
    assert "gRPC health: SERVING" in out and "read in the key space: ok" in out
    assert "server: mintcache 0.1.0 (debug, " in out
    assert "store: memcached, 2 server(s): 127.0.0.1:" in out
    assert out.count(f"{cluster.addr}: ok") == 2
    assert CLIENT_TOKEN not in out


def test_check_without_admin_port_still_checks_the_endpoint(caches, cluster):
    # The derived admin address (port + 1) is not this server's: said, not a failure.
    out = run("check", "--cache", "default")
    assert f"{cluster.addr}: ok" in out
    assert "admin port not readable" in out and "--admin" in out


def _dead_caches(caches, space):
    from django.conf import settings

    dead = f"127.0.0.1:{free_port()}"
    config = dict(settings.CACHES)
    config["dead"] = {
        "BACKEND": "mintcache.django.MintCache",
        "LOCATION": f"{settings.CACHES['default']['LOCATION']},{dead}",
        "OPTIONS": {"APP_VERSION": space, "TOKEN": CLIENT_TOKEN},
    }
    return dead, config


def test_check_fails_on_a_dead_endpoint(caches, cluster, space):
    dead, config = _dead_caches(caches, space)
    with override_settings(CACHES=config):
        with pytest.raises(CommandError, match=f"1 endpoint\\(s\\) failed: dead {dead}"):
            run("check", "--cache", "dead")


def test_check_refuses_other_backends(caches):
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=locmem):
        with pytest.raises(CommandError, match="no cache in settings.CACHES uses"):
            run("check")
        with pytest.raises(CommandError, match="not a MintCache"):
            run("check", "--cache", "default")
    with pytest.raises(CommandError, match="no cache 'nope'"):
        run("check", "--cache", "nope")


def test_stats(caches, cluster):
    cache = caches["default"]
    cache.set("k", "v")
    cache.get("k")
    cache.get("missing")
    out = run("stats", "--cache", "default", "--admin", f"127.0.0.1:{cluster.admin_port}")
    assert f"{cluster.addr}: circuit closed (this process)" in out
    assert "server counters (admin 127.0.0.1:" in out
    calls = next(line for line in out.splitlines() if "calls:" in line)
    assert "Get " in calls and "Set " in calls
    assert "reads: " in out and "hit ratio" in out
    assert out.count("memcached 127.0.0.1:") == 2


def test_flush_asks_first(caches, monkeypatch):
    cache, other = caches["default"], caches["other_space"]
    cache.set("k", "v")
    other.set("k", "other")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    with pytest.raises(CommandError, match="pass --yes"):
        run("flush")
    assert cache.get("k") == "v"
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert "not flushed" in run("flush")
    assert cache.get("k") == "v"
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "yes")
    assert "flushed every key of cache 'default'" in run("flush")
    assert "Other key spaces are untouched" in asked[0]
    assert cache.get("k") is None
    assert other.get("k") == "other"  # another key space: untouched


def test_flush_yes(caches):
    cache = caches["default"]
    cache.set("k", "v")
    assert "flushed" in run("flush", "--yes", "--cache", "default")
    assert cache.get("k") is None
