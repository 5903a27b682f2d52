"""``python manage.py mintcache check | stats | flush``: what an operator of a Django site
reaches for first (needs ``"mintcache.django"`` in ``INSTALLED_APPS``).

- ``check``: for each MintCache cache (or ``--cache ALIAS``), each endpoint of its
  ``LOCATION``: gRPC health, a read in the cache's key space with its token, and the server's
  version and store from its admin port; fails (exit 1) if any endpoint does not answer.
- ``stats``: the state of each endpoint's circuit in this process, and the server's counters
  from each endpoint's admin port.
- ``flush``: drops the key space of one cache (``--cache``, default ``default``): its
  ``NAMESPACE`` + ``APP_VERSION``, and nothing else; asks first, unless ``--yes``.

``--admin HOST:PORT``: the admin port to read (default: each endpoint's host, its port + 1).
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ....errors import CacheError
from ...backend import MintCache
from ...ops import (
    admin_address,
    check_endpoint,
    endpoint_client,
    fetch_metrics,
    stats_lines,
)


class Command(BaseCommand):
    help = "Check, inspect or flush the mintcache caches of this site (check, stats, flush)."

    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["check", "stats", "flush"])
        parser.add_argument(
            "--cache",
            action="append",
            dest="aliases",
            metavar="ALIAS",
            help="a cache of settings.CACHES (repeatable; check and stats: every MintCache "
            "cache; flush: default)",
        )
        parser.add_argument(
            "--admin",
            metavar="HOST:PORT",
            help="the server's admin port (default: each endpoint's port + 1)",
        )
        parser.add_argument(
            "--yes", "--no-input", action="store_true", dest="yes", help="flush without asking"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        aliases = options["aliases"]
        if action == "flush":
            self._flush(aliases or ["default"], options["yes"])
            return
        backends = self._backends(aliases)
        if action == "check":
            self._check(backends, options["admin"])
        else:
            self._stats(backends, options["admin"])

    # --- which caches ----------------------------------------------------------------------------

    def _backends(self, aliases: list[str] | None) -> list[tuple[str, MintCache]]:
        if aliases is None:
            aliases = [
                alias
                for alias, config in settings.CACHES.items()
                if config.get("BACKEND") == "mintcache.django.MintCache"
            ]
            if not aliases:
                raise CommandError("no cache in settings.CACHES uses mintcache.django.MintCache")
        found = []
        for alias in aliases:
            if alias not in settings.CACHES:
                raise CommandError(f"no cache {alias!r} in settings.CACHES")
            cache = caches[alias]
            if not isinstance(cache, MintCache):
                raise CommandError(f"cache {alias!r} is not a MintCache ({type(cache).__name__})")
            found.append((alias, cache))
        return found

    @staticmethod
    def _key_space(cache: MintCache) -> str:
        defaults = cache._defaults
        namespace = "(server default)" if defaults.namespace is None else repr(defaults.namespace)
        version = "(server default)" if defaults.version is None else repr(defaults.version)
        return f"namespace {namespace}, version {version}"

    # --- check -----------------------------------------------------------------------------------

    def _check(self, backends: list[tuple[str, MintCache]], admin: str | None) -> None:
        failed = []
        for alias, cache in backends:
            codec = cache._codec
            self.stdout.write(
                f"cache {alias!r}: key space {self._key_space(cache)}; serializer "
                f"{codec.serializer}, compressor {codec.compressor or 'none'}; "
                f"IGNORE_EXCEPTIONS {'on' if cache._ignore_exceptions else 'off'}"
            )
            for endpoint in cache._endpoints:
                with endpoint_client(cache, endpoint) as client:
                    report = check_endpoint(client, endpoint, admin_address(endpoint, admin))
                verdict = "ok" if report.ok else "FAILED"
                self.stdout.write(f"  {endpoint}: {verdict}")
                for line in report.lines:
                    self.stdout.write(f"    {line}")
                if not report.ok:
                    failed.append(f"{alias} {endpoint}")
        if failed:
            raise CommandError(f"{len(failed)} endpoint(s) failed: {', '.join(failed)}")

    # --- stats -----------------------------------------------------------------------------------

    def _stats(self, backends: list[tuple[str, MintCache]], admin: str | None) -> None:
        for alias, cache in backends:
            self.stdout.write(f"cache {alias!r}: key space {self._key_space(cache)}")
            circuits = dict(cache._base().circuits())
            for endpoint in cache._endpoints:
                state = circuits.get(endpoint, "closed")
                self.stdout.write(f"  {endpoint}: circuit {state} (this process)")
                address = admin_address(endpoint, admin)
                if address is None:
                    self.stdout.write("    server counters: admin port unknown (pass --admin)")
                    continue
                try:
                    samples = fetch_metrics(address)
                except OSError as error:
                    self.stdout.write(f"    server counters: not readable: {error}")
                    continue
                self.stdout.write(f"    server counters (admin {address}, since it started):")
                for line in stats_lines(samples):
                    self.stdout.write(f"      {line}")

    # --- flush -----------------------------------------------------------------------------------

    def _flush(self, aliases: list[str], yes: bool) -> None:
        backends = self._backends(aliases)
        for alias, cache in backends:
            what = (
                f"every key of cache {alias!r} (key space {self._key_space(cache)} on "
                f"{', '.join(cache._endpoints)})"
            )
            if not yes:
                if not sys.stdin.isatty():
                    raise CommandError(
                        f"flush asks first; not on a terminal: pass --yes to drop {what}"
                    )
                answer = input(
                    f"Drop {what}? Other key spaces are untouched. Type 'yes' to continue: "
                )
                if answer.strip().lower() != "yes":
                    self.stdout.write(f"cache {alias!r}: not flushed")
                    continue
            try:
                flushed = cache._plain_client().flush()
            except CacheError as error:
                raise CommandError(f"cache {alias!r}: flush failed: {error}") from None
            cache._forget_leases()
            self.stdout.write(
                f"cache {alias!r}: flushed {what}" if flushed else f"cache {alias!r}: not flushed"
            )
