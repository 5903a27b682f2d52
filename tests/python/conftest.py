"""pytest fixtures: one shared mintcache server over two memcached processes for the session,
fresh key spaces per test, and the Django test project configured against that server."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import ADMIN_TOKEN, CLIENT_TOKEN, Memcached, Server, server_env  # noqa: E402


@pytest.fixture(scope="session")
def cluster():
    """Two memcached processes behind one server (with an admin and a client token)."""
    memcached = [Memcached(), Memcached()]
    try:
        server = Server(server_env(memcached))
        yield server
        server.stop()
    finally:
        for m in memcached:
            m.stop()


@pytest.fixture()
def endpoint(cluster) -> str:
    return cluster.addr


@pytest.fixture()
def space() -> str:
    """A key space (version) of this test's own, so tests never see each other's keys."""
    return "t-" + uuid.uuid4().hex[:16]


@pytest.fixture()
def client(endpoint, space):
    from mintcache import Client

    with Client(endpoint, version=space, token=CLIENT_TOKEN) as c:
        yield c


@pytest.fixture()
def admin(endpoint, space):
    from mintcache import Client

    with Client(endpoint, version=space, token=ADMIN_TOKEN) as c:
        yield c


@pytest.fixture(scope="session")
def django_env(cluster):
    """Configures and sets up the Django project in tests/python/django_project against the
    session's server, with a sqlite file database, its tables and three users."""
    workdir = tempfile.mkdtemp(prefix="mintcache-django-")
    os.environ["MINTCACHE_TEST_LOCATION"] = cluster.addr
    os.environ["MINTCACHE_TEST_TOKEN"] = CLIENT_TOKEN
    os.environ["MINTCACHE_TEST_ADMIN_TOKEN"] = ADMIN_TOKEN
    os.environ["MINTCACHE_TEST_DB"] = os.path.join(workdir, "db.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", "root@example.com", "pw")
    User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    User.objects.create_user("someone", "someone@example.com", "pw")
    return cluster


@pytest.fixture()
def caches(django_env, space):
    """Django's cache handler, with every configured cache moved to key spaces of this test's
    own (its APP_VERSION gets a unique suffix), so that tests never see each other's keys and
    do not depend on clear()."""
    from django.conf import settings
    from django.core.cache import caches
    from django.test import override_settings

    own = {}
    for alias, config in settings.CACHES.items():
        options = dict(config.get("OPTIONS", {}))
        options["APP_VERSION"] = f"{options.get('APP_VERSION', 'dj')}-{space}"
        own[alias] = {**config, "OPTIONS": options}
    with override_settings(CACHES=own):
        yield caches


@pytest.fixture()
def cache(caches):
    return caches["default"]
