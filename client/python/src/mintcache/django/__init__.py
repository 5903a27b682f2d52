"""Django integration of mintcache.

- :class:`MintCache` (``mintcache.django.MintCache``): the cache backend, for ``CACHES``.
- :class:`CacheDebugMiddleware`: ``?cache_debug=off|write-only`` for superusers, per request.
- :func:`cache_debug` / :func:`current_debug_mode`: the same debug modes outside requests.
"""

from .backend import MintCache
from .debug import cache_debug, current_debug_mode
from .middleware import CacheDebugMiddleware

__all__ = ["CacheDebugMiddleware", "MintCache", "cache_debug", "current_debug_mode"]
