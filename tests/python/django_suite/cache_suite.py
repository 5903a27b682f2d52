"""Django's cache tests (tests/cache/tests.py) on MintCache: the backend-agnostic suite
(``BaseCacheTests``) as Django runs it for its memcached backends, and the cache-middleware and
cache-utility suites with every cache they configure moved from LocMemCache to MintCache.

Copied into Django's tests/cache/ as ``mintcache_suite.py`` by run.py; label
``cache.mintcache_suite``.
"""

import re

from cache import tests as django_tests
from django.conf import settings
from django.test import TestCase, override_settings

BASE = {
    "BACKEND": "mintcache.django.MintCache",
    "LOCATION": settings.CACHES["default"]["LOCATION"],
    "OPTIONS": {"APP_VERSION": "django-suite-base", "TOKEN": settings.TOKEN},
}


@override_settings(
    CACHES=django_tests.caches_setting_for_tests(
        base=BASE,
        # As for Django's memcached backends: a server-side cache has no MAX_ENTRIES culling.
        exclude=django_tests.memcached_excluded_caches,
    )
)
class MintCacheTests(django_tests.BaseCacheTests, TestCase):
    base_params = BASE


def on_mintcache(test_class):
    """``test_class`` with each cache of its ``CACHES`` override moved to MintCache: caches that
    shared a LocMemCache store (the same LOCATION) share a key space, the others do not; every
    other setting (TIMEOUT, KEY_PREFIX, VERSION, ...) is kept."""
    caches = {}
    for alias, config in test_class._overridden_settings["CACHES"].items():
        store = re.sub(r"[^A-Za-z0-9._-]", "_", str(config.get("LOCATION") or "default"))
        caches[alias] = {
            **{k: v for k, v in config.items() if k not in ("BACKEND", "LOCATION", "OPTIONS")},
            "BACKEND": "mintcache.django.MintCache",
            "LOCATION": settings.CACHES["default"]["LOCATION"],
            "OPTIONS": {
                "APP_VERSION": f"django-suite-{test_class.__name__}-{store}",
                "TOKEN": settings.TOKEN,
            },
        }
    name = "MintCache" + test_class.__name__
    subclass = type(name, (test_class,), {"__module__": __name__, "__qualname__": name})
    return override_settings(CACHES=caches)(subclass)


MintCacheCacheUtils = on_mintcache(django_tests.CacheUtils)
MintCachePrefixedCacheUtils = on_mintcache(django_tests.PrefixedCacheUtils)
MintCacheCacheHEADTest = on_mintcache(django_tests.CacheHEADTest)
MintCacheCacheI18nTest = on_mintcache(django_tests.CacheI18nTest)
MintCachePrefixedCacheI18nTest = on_mintcache(django_tests.PrefixedCacheI18nTest)
MintCacheCacheMiddlewareTest = on_mintcache(django_tests.CacheMiddlewareTest)
MintCacheTestWithTemplateResponse = on_mintcache(django_tests.TestWithTemplateResponse)
