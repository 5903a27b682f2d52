"""TLS and mutual TLS: the clients (sync, asyncio) and the Django backend against a server with
TLS on, admin rights by client-certificate subject, and the failures a wrong setup gives."""

from __future__ import annotations

import asyncio

import pytest

from harness import Memcached, Server, server_env
from mintcache import TLS, AsyncClient, Client, Outcome, PermissionDenied, Unavailable
from pki import ThrowawayCA


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = ThrowawayCA()
    server_pem = ca.server()
    files = {
        "ca.pem": ca.pem,
        "server.pem": server_pem.cert,
        "server.key": server_pem.key,
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    memcached = Memcached()
    try:
        server = Server(
            server_env(
                [memcached],
                MINTCACHE_TLS__CERT=str(directory / "server.pem"),
                MINTCACHE_TLS__KEY=str(directory / "server.key"),
                MINTCACHE_TLS__CLIENT_CA=str(directory / "ca.pem"),
                MINTCACHE_TLS__CLIENT_CERT_OPTIONAL="true",
                MINTCACHE_AUTH__ADMIN_SUBJECTS="CN=ops-admin",
            )
        )
        yield server, ca, directory
        server.stop()
    finally:
        memcached.stop()


def test_tls_with_the_ca(tls_server, space):
    server, ca, directory = tls_server
    with Client(server.addr, version=space, tls=TLS(ca=ca.pem)) as c:
        assert c.set("k", "over tls", 60)
        assert c.get("k").value == b"over tls"
    # https:// endpoint, CA from a file.
    with Client(f"https://{server.addr}", version=space, tls=TLS(ca=directory / "ca.pem")) as c:
        assert c.get("k").value == b"over tls"


def test_wrong_tls_setups_fail(tls_server, space):
    server, _, _ = tls_server
    with Client(server.addr, version=space, timeout=3) as plain:
        with pytest.raises(Unavailable):
            plain.get("k")
    with Client(server.addr, version=space, tls=True, timeout=3) as system_roots:
        with pytest.raises(Unavailable):
            system_roots.get("k")
    other_ca = ThrowawayCA()
    with Client(server.addr, version=space, tls=TLS(ca=other_ca.pem), timeout=3) as wrong:
        with pytest.raises(Unavailable):
            wrong.get("k")
    with pytest.raises(ValueError):
        Client(server.addr, tls=TLS(ca=other_ca.pem, cert=b"only a cert"))


def test_admin_rights_by_client_certificate(tls_server, space):
    server, ca, _ = tls_server
    admin_pem, other_pem = ca.client("ops-admin"), ca.client("someone")
    admin_tls = TLS(ca=ca.pem, cert=admin_pem.cert, key=admin_pem.key)
    with Client(server.addr, version=space, tls=admin_tls) as admin:
        admin.set("k", "cached", 60)
        assert admin.with_options(debug="off").get("k").outcome == Outcome.MISS
        assert admin.get("k").value == b"cached"
    other_tls = TLS(ca=ca.pem, cert=other_pem.cert, key=other_pem.key)
    with Client(server.addr, version=space, tls=other_tls) as other:
        assert other.get("k").value == b"cached"
        with pytest.raises(PermissionDenied):
            other.with_options(debug="off").get("k")


def test_async_client_over_tls(tls_server, space):
    server, ca, _ = tls_server

    async def main():
        async with AsyncClient(server.addr, version=space, tls=TLS(ca=ca.pem)) as c:
            await c.set("a", "async over tls", 60)
            return (await c.get("a")).value

    assert asyncio.run(main()) == b"async over tls"


def test_django_backend_over_tls(tls_server, django_env, space):
    from mintcache.django import MintCache

    server, _, directory = tls_server
    backend = MintCache(
        server.addr,
        {"OPTIONS": {"APP_VERSION": space, "TLS_CA": str(directory / "ca.pem")}},
    )
    backend.set("k", "django over tls")
    assert backend.get("k") == "django over tls"
    assert asyncio.run(backend.aget("k")) == "django over tls"
