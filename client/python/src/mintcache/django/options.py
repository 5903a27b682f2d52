"""The Django backend's configuration: ``LOCATION`` and ``OPTIONS`` checked once, when Django
makes the cache, into :class:`Settings`. Everything that would fail every call (an unknown
option, a bad version label, a bad token, a bad codec) is refused here with
``ImproperlyConfigured``."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from .. import _transport
from .._breaker import Breaker
from .._core import CallDefaults, channel_targets, checked_beta, label
from ..codecs import Codec, CodecError
from ..types import TLS

#: Every ``OPTIONS`` key the backend takes.
OPTION_NAMES = frozenset(
    {
        "APP_VERSION",
        "NAMESPACE",
        "TOKEN",
        "ADMIN_TOKEN",
        "GRACE",
        "CALL_TIMEOUT",
        "TLS",
        "TLS_CA",
        "TLS_CERT",
        "TLS_KEY",
        "TLS_SERVER_NAME",
        "PICKLE_PROTOCOL",
        "SERIALIZER",
        "COMPRESSOR",
        "COMPRESS_MIN_BYTES",
        "COMPRESS_LEVEL",
        "IGNORE_EXCEPTIONS",
        "BREAKER_FAILURES",
        "BREAKER_COOL_OFF",
        "BREAKER_MAX_COOL_OFF",
        "TRANSPORT",
        "EARLY_REFRESH_BETA",
    }
)
# The original package's names, with what they are here.
_RENAMED = {
    "MINT_DELAY": "OPTIONS['GRACE']",
    "VERSION": "OPTIONS['APP_VERSION'] (the top-level VERSION stays Django's per-key version)",
}



@dataclass(frozen=True)
class Settings:
    """What a ``MintCache`` runs with."""

    endpoints: tuple[str, ...]
    #: ``OPTIONS["GRACE"]``, whole seconds.
    grace: int
    ignore_exceptions: bool
    #: The circuit breaker's (failures, cool-off, longest cool-off).
    breaker: tuple[int, float, float]
    codec: Codec
    tls: TLS | None
    transport: str
    #: What identifies the shared connections and their circuits (tokens are call metadata,
    #: not connection settings, so they are not part of it).
    connection: tuple[Any, ...]
    #: Version, namespace, token, deadline and β of every call.
    defaults: CallDefaults
    admin_token: str | None

    @classmethod
    def of(cls, server: str | list[str], params: dict[str, Any]) -> Settings:
        options = dict(params.get("OPTIONS") or {})
        _check_names(options)
        endpoints = _endpoints(server)
        breaker = _breaker(options)
        tls_files = tuple(
            options.get(name) for name in ("TLS_CA", "TLS_CERT", "TLS_KEY", "TLS_SERVER_NAME")
        )
        use_tls = bool(options.get("TLS")) or any(f is not None for f in tls_files)
        try:
            transport = _transport.choose(
                options.get("TRANSPORT"), _core_targets(endpoints, use_tls)
            )
        except ValueError as error:
            raise ImproperlyConfigured(f"MintCache: OPTIONS['TRANSPORT']: {error}") from None
        admin_token = options.get("ADMIN_TOKEN")
        return cls(
            endpoints=endpoints,
            grace=_grace(options),
            ignore_exceptions=_flag(options, "IGNORE_EXCEPTIONS"),
            breaker=breaker,
            codec=_codec(options),
            tls=TLS(*tls_files) if use_tls else None,
            transport=transport,
            connection=(endpoints, tls_files if use_tls else None, breaker, transport),
            defaults=_defaults(options, admin_token),
            admin_token=admin_token,
        )


def _check_names(options: dict[str, Any]) -> None:
    for name in options:
        if name in _RENAMED:
            raise ImproperlyConfigured(f"MintCache: OPTIONS[{name!r}] is {_RENAMED[name]} here")
        if name not in OPTION_NAMES:
            raise ImproperlyConfigured(
                f"MintCache: unknown OPTIONS key {name!r} "
                f"(known: {', '.join(sorted(OPTION_NAMES))})"
            )


def _endpoints(server: str | list[str]) -> tuple[str, ...]:
    if isinstance(server, str):
        endpoints = [e.strip() for e in server.replace(";", ",").split(",") if e.strip()]
    else:
        endpoints = [str(e).strip() for e in server]
    if not endpoints:
        raise ImproperlyConfigured("MintCache: LOCATION needs at least one host:port")
    return tuple(endpoints)


def _grace(options: dict[str, Any]) -> int:
    grace = options.get("GRACE", 0)
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
        raise ImproperlyConfigured("MintCache: OPTIONS['GRACE'] must be whole seconds >= 0")
    return grace


def _flag(options: dict[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"MintCache: OPTIONS[{name!r}] must be True or False")
    return value


def _seconds(options: dict[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ImproperlyConfigured(f"MintCache: OPTIONS[{name!r}] must be seconds > 0")
    return float(value)


def _breaker(options: dict[str, Any]) -> tuple[int, float, float]:
    failures = options.get("BREAKER_FAILURES", 3)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
        raise ImproperlyConfigured(
            "MintCache: OPTIONS['BREAKER_FAILURES'] must be a whole number >= 1"
        )
    cool_off = _seconds(options, "BREAKER_COOL_OFF", 1.0)
    max_cool_off = _seconds(options, "BREAKER_MAX_COOL_OFF", 30.0)
    try:
        Breaker(failures, cool_off, max_cool_off)
    except ValueError as error:
        raise ImproperlyConfigured(f"MintCache: OPTIONS: {error}") from None
    return (failures, cool_off, max_cool_off)


def _codec(options: dict[str, Any]) -> Codec:
    try:
        return Codec(
            serializer=options.get("SERIALIZER", "pickle"),
            compressor=options.get("COMPRESSOR"),
            min_bytes=options.get("COMPRESS_MIN_BYTES", 1024),
            level=options.get("COMPRESS_LEVEL"),
            pickle_protocol=options.get("PICKLE_PROTOCOL", pickle.HIGHEST_PROTOCOL),
            json_encoder=DjangoJSONEncoder,
        )
    except CodecError as error:
        raise ImproperlyConfigured(f"MintCache: OPTIONS: {error}") from None


def _defaults(options: dict[str, Any], admin_token: Any) -> CallDefaults:
    """The calls' metadata and deadline, checked as the server checks them: a bad one would
    fail every call."""
    call_timeout = options.get("CALL_TIMEOUT", 5.0)
    if call_timeout is not None:
        call_timeout = _seconds(options, "CALL_TIMEOUT", 5.0)
    try:
        beta = checked_beta(options.get("EARLY_REFRESH_BETA"))
    except ValueError:
        raise ImproperlyConfigured(
            "MintCache: OPTIONS['EARLY_REFRESH_BETA'] must be a number in 0..=1000 "
            "(0: no early refresh) or None (the server's)"
        ) from None
    app_version = options.get("APP_VERSION")
    namespace = options.get("NAMESPACE")
    try:
        if app_version is not None:
            label("OPTIONS['APP_VERSION']", str(app_version), empty=False)
        if namespace is not None:
            label("OPTIONS['NAMESPACE']", str(namespace), empty=True)
        defaults = CallDefaults().merged(
            version=None if app_version is None else str(app_version),
            namespace=None if namespace is None else str(namespace),
            token=options.get("TOKEN"),
            timeout=call_timeout,
            early_refresh_beta=beta,
        )
        if admin_token is not None:
            CallDefaults().merged(token=admin_token)
    except ValueError as error:
        raise ImproperlyConfigured(f"MintCache: {error}") from None
    return defaults


def _core_targets(endpoints: tuple[str, ...], tls: bool) -> list[str]:
    try:
        return channel_targets(list(endpoints), tls)[0]
    except ValueError:
        return list(endpoints)  # refused with its own message when the client is made
