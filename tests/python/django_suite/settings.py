"""Settings of Django's test runner (tests/runtests.py) for the MintCache runs: those of
Django's own tests/test_sqlite.py, with MintCache as the ``default`` and ``other`` caches on the
server run.py started (``MINTCACHE_SUITE_LOCATION``)."""

import os

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3"},
    "other": {"ENGINE": "django.db.backends.sqlite3"},
}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False

LOCATION = os.environ["MINTCACHE_SUITE_LOCATION"]
TOKEN = os.environ.get("MINTCACHE_SUITE_TOKEN")


def mintcache(space, **params):
    """A MintCache in key space ``space`` (an APP_VERSION of its own)."""
    return {
        "BACKEND": "mintcache.django.MintCache",
        "LOCATION": LOCATION,
        **params,
        "OPTIONS": {"APP_VERSION": f"django-suite-{space}", "TOKEN": TOKEN},
    }


CACHES = {"default": mintcache("default"), "other": mintcache("other")}
