"""Settings of the test project: several caches on one mintcache server, showing the options."""

import os

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
ROOT_URLCONF = "django_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "mintcache.django",  # python manage.py mintcache ...
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mintcache.django.CacheDebugMiddleware",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MINTCACHE_TEST_DB", ":memory:"),
    }
}

LOCATION = os.environ.get("MINTCACHE_TEST_LOCATION", "127.0.0.1:50051")
OPTIONS = {
    "APP_VERSION": "django-tests",
    "TOKEN": os.environ.get("MINTCACHE_TEST_TOKEN"),
    "ADMIN_TOKEN": os.environ.get("MINTCACHE_TEST_ADMIN_TOKEN"),
}


def custom_key_func(key, key_prefix, version):
    """A KEY_FUNCTION that differs from Django's default."""
    return "CUSTOM-" + "-".join([key_prefix, str(version), key])


def _cache(**extra):
    options = {**OPTIONS, **extra.pop("OPTIONS", {})}
    return {
        "BACKEND": "mintcache.django.MintCache",
        "LOCATION": LOCATION,
        "OPTIONS": options,
        **extra,
    }


CACHES = {
    # Django's timeout contract exactly (GRACE 0).
    "default": _cache(),
    # Same key space, other Django-level names.
    "prefix": _cache(KEY_PREFIX="cacheprefix"),
    "v2": _cache(VERSION=2),
    "custom_key": _cache(KEY_FUNCTION=custom_key_func),
    "custom_key2": _cache(KEY_FUNCTION="django_project.settings.custom_key_func"),
    # Other key spaces on the same server: clear() of one leaves the others alone.
    "other_space": _cache(OPTIONS={"APP_VERSION": "django-tests-other"}),
    "other_namespace": _cache(OPTIONS={"NAMESPACE": "tenant-b"}),
    # The mint: values stay servable 30 s after their timeout while one caller recomputes.
    "mint": _cache(OPTIONS={"APP_VERSION": "django-tests-mint", "GRACE": 30}),
    # No ADMIN_TOKEN: the debug middleware's modes cannot apply.
    "no_admin": _cache(OPTIONS={"ADMIN_TOKEN": None}),
}
