"""The Django app of mintcache: add ``"mintcache.django"`` to ``INSTALLED_APPS`` for the
``python manage.py mintcache`` command (the backend and the middleware work without it)."""

from django.apps import AppConfig


class MintCacheConfig(AppConfig):
    name = "mintcache.django"
    label = "mintcache"
    verbose_name = "mintcache"
