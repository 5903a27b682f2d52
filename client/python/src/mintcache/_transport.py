"""How a call reaches the server: one attempt of one unary call, on one endpoint, and nothing
more (retries, deadlines across attempts and the circuit breaker are the clients', in
:mod:`mintcache._core`). Two transports with the same interface:

- ``native`` (the default when the package was built with its Rust extension,
  ``mintcache._native``): the ``mintcache-client`` crate's connections (tonic, HTTP/2), the GIL
  released during the call; the sync client's calls run on the calling thread, the asyncio
  client's on one I/O thread, whose answers wake the event loop through a pipe.
- ``grpcio``: grpcio's channels (``grpc`` and ``grpc.aio``), always available.

Both send the messages this package serializes and hand back the answer and whether the
server flagged it degraded (``x-cache-degraded``); a failure is a :class:`Failed` with the gRPC
code, the details and whether the request cannot have left (no connection could be made).

The transport of a client is ``transport=`` (``"native"``, ``"grpcio"``, or ``"auto"``), else
the environment variable ``MINTCACHE_TRANSPORT``, else ``auto``: native when it is built and
takes every endpoint (``host:port``, ``dns:///host:port``), grpcio otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Sequence

import grpc
import grpc.aio

from ._core import failed_before_server, grpc_timeout
from .types import TLS
from .v1 import cache_pb2 as pb

try:
    from . import _native
except ImportError:  # built without Rust: the grpcio transport only
    _native = None

__all__ = ["DEFAULT", "Failed", "choose", "sync_transport", "aio_transport"]

#: The transport an ``auto`` client gets for ``host:port`` endpoints in this installation.
DEFAULT = "native" if _native is not None else "grpcio"

#: The methods of ``mintcache.v1.Cache``: path and answer type.
METHODS: dict[str, tuple[str, Any]] = {
    name: (f"/mintcache.v1.Cache/{name}", getattr(pb, f"{name}Response"))
    for name in (
        "Get",
        "GetMany",
        "Set",
        "SetMany",
        "Add",
        "Delete",
        "DeleteMany",
        "Touch",
        "Invalidate",
        "Increment",
        "Flush",
    )
}
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

_CODES = {code.value[0]: code for code in grpc.StatusCode}
_DEGRADED = "x-cache-degraded"


class Failed(Exception):
    """One attempt failed: ``code`` (:class:`grpc.StatusCode`), ``details``, and
    ``never_sent``: no connection could be made, so the request cannot have been applied."""

    def __init__(self, code: grpc.StatusCode, details: str, never_sent: bool) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details
        self.never_sent = never_sent


def choose(requested: str | None, targets: Sequence[str]) -> str:
    """The transport for a client of ``targets``: ``"native"`` or ``"grpcio"``."""
    name = (requested or os.environ.get("MINTCACHE_TRANSPORT") or "auto").strip().lower()
    if name == "grpcio":
        return name
    if name not in ("auto", "native"):
        raise ValueError(f"unknown transport {name!r} (auto, native, grpcio)")
    if _native is None:
        if name == "native":
            raise ValueError(
                "the native transport is not built in this installation (no Rust toolchain "
                "when it was installed?); use transport='grpcio' or reinstall with Rust"
            )
        return "grpcio"
    unsupported = [t for t in targets if not _native_target(t)]
    if unsupported:
        if name == "native":
            raise ValueError(
                "the native transport takes host:port or dns:///host:port endpoints, not "
                + ", ".join(repr(t) for t in unsupported)
            )
        return "grpcio"
    return "native"


def _native_target(target: str) -> bool:
    """``host:port``, ``[v6]:port`` or ``dns:///`` one of them (what the Rust side takes)."""
    authority = target[len("dns:///") :] if target.startswith("dns:///") else target
    if any(c in authority for c in "/?#@, "):
        return False
    if authority.startswith("["):
        host, sep, port = authority[1:].partition("]:")
        return bool(sep and host and port.isdigit())
    host, sep, port = authority.rpartition(":")
    return bool(sep and host and ":" not in host and port.isdigit())


def _tls_settings(tls: TLS) -> tuple[Any, ...]:
    from .types import _pem

    if (tls.cert is None) != (tls.key is None):
        raise ValueError("TLS: a client certificate needs both cert and key")
    return (_pem(tls.ca), _pem(tls.cert), _pem(tls.key), tls.server_name)


def _code(number: int) -> grpc.StatusCode:
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


def _grpcio_failed(error: grpc.RpcError) -> Failed:
    code = error.code() or grpc.StatusCode.UNKNOWN
    details = error.details() or ""
    return Failed(code, details, failed_before_server(code, details))


def _native_failed(error: Exception) -> Failed:
    number, details, never_sent = error.args
    return Failed(_code(number), details, never_sent)


def _is_degraded(metadata: Any) -> bool:
    for key, value in metadata or ():
        if key == _DEGRADED and value in ("1", b"1"):
            return True
    return False


class _NativeMetadata:
    """``_native.Metadata`` objects, made once per set of headers."""

    def __init__(self) -> None:
        self._made: dict[tuple[tuple[str, str], ...], Any] = {}

    def __call__(self, headers: tuple[tuple[str, str], ...]) -> Any:
        made = self._made.get(headers)
        if made is None:
            if len(self._made) > 64:  # a program making endless tokens must not grow this
                self._made.clear()
            made = self._made[headers] = _native.Metadata(list(headers))
        return made


# --- sync ----------------------------------------------------------------------------------------


class GrpcioTransport:
    """grpcio channels, one per endpoint."""

    name = "grpcio"

    def __init__(self, targets: list[str], tls: TLS | None, options: list[tuple[str, Any]]) -> None:
        if tls is not None:
            credentials = tls.credentials()
            self.channels = [grpc.secure_channel(t, credentials, options=options) for t in targets]
        else:
            self.channels = [grpc.insecure_channel(t, options=options) for t in targets]
        self._calls = [
            {
                name: channel.unary_unary(
                    path,
                    request_serializer=_serialize,
                    response_deserializer=answer.FromString,
                )
                for name, (path, answer) in METHODS.items()
            }
            for channel in self.channels
        ]
        self._health = [
            c.unary_unary(HEALTH_CHECK, request_serializer=None, response_deserializer=None)
            for c in self.channels
        ]

    def call(
        self, index: int, method: str, request: Any, timeout: float | None, headers: Any
    ) -> tuple[Any, bool]:
        try:
            answer, call = self._calls[index][method].with_call(
                request, timeout=grpc_timeout(timeout), metadata=headers
            )
        except grpc.RpcError as error:
            raise _grpcio_failed(error) from error
        return answer, _is_degraded(call.initial_metadata())

    def health(self, index: int, body: bytes, timeout: float | None, headers: Any) -> bytes:
        try:
            return self._health[index](body, timeout=grpc_timeout(timeout), metadata=headers)
        except grpc.RpcError as error:
            raise _grpcio_failed(error) from error

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


class NativeTransport:
    """``mintcache._native`` channels, one per endpoint."""

    name = "native"

    def __init__(self, targets: list[str], tls: TLS | None) -> None:
        settings = None if tls is None else _tls_settings(tls)
        self.channels = [_native.Channel(t, settings) for t in targets]
        self._metadata = _NativeMetadata()

    def call(
        self, index: int, method: str, request: Any, timeout: float | None, headers: Any
    ) -> tuple[Any, bool]:
        path, answer = METHODS[method]
        try:
            body, degraded = self.channels[index].call(
                path, request.SerializeToString(), self._metadata(headers), timeout
            )
        except _native.RpcError as error:
            raise _native_failed(error) from None
        return answer.FromString(body), degraded

    def health(self, index: int, body: bytes, timeout: float | None, headers: Any) -> bytes:
        try:
            return self.channels[index].call(HEALTH_CHECK, body, self._metadata(headers), timeout)[
                0
            ]
        except _native.RpcError as error:
            raise _native_failed(error) from None

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def sync_transport(
    name: str, targets: list[str], tls: TLS | None, options: list[tuple[str, Any]]
) -> GrpcioTransport | NativeTransport:
    if name == "native":
        return NativeTransport(targets, tls)
    return GrpcioTransport(targets, tls, options)


# --- asyncio -------------------------------------------------------------------------------------


class AioGrpcioTransport:
    """grpc.aio channels, one per endpoint, of the event loop they were opened in."""

    name = "grpcio"

    def __init__(self, targets: list[str], tls: TLS | None, options: list[tuple[str, Any]]) -> None:
        if tls is not None:
            credentials = tls.credentials()
            self.channels = [
                grpc.aio.secure_channel(t, credentials, options=options) for t in targets
            ]
        else:
            self.channels = [grpc.aio.insecure_channel(t, options=options) for t in targets]
        self._calls = [
            {
                name: channel.unary_unary(
                    path,
                    request_serializer=_serialize,
                    response_deserializer=answer.FromString,
                )
                for name, (path, answer) in METHODS.items()
            }
            for channel in self.channels
        ]
        self._health = [
            c.unary_unary(HEALTH_CHECK, request_serializer=None, response_deserializer=None)
            for c in self.channels
        ]

    async def call(
        self, index: int, method: str, request: Any, timeout: float | None, headers: Any
    ) -> tuple[Any, bool]:
        try:
            call = self._calls[index][method](
                request, timeout=grpc_timeout(timeout), metadata=headers
            )
            answer = await call
            metadata = await call.initial_metadata()
        except grpc.RpcError as error:
            raise _grpcio_failed(error) from error
        return answer, _is_degraded(metadata)

    async def health(self, index: int, body: bytes, timeout: float | None, headers: Any) -> bytes:
        try:
            return await self._health[index](body, timeout=grpc_timeout(timeout), metadata=headers)
        except grpc.RpcError as error:
            raise _grpcio_failed(error) from error

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


class AioNativeTransport:
    """``mintcache._native`` channels for asyncio, one per endpoint, and the event loop's side
    of their answers: calls run on the extension's I/O thread, which queues each answer and
    wakes the loop through a pipe (``loop.add_reader``); the loop then hands every queued answer
    to its waiting future. Made in the event loop it serves."""

    name = "native"

    def __init__(self, targets: list[str], tls: TLS | None) -> None:
        settings = None if tls is None else _tls_settings(tls)
        self.channels = [_native.Channel(t, settings, asyncio=True) for t in targets]
        self._metadata = _NativeMetadata()
        self._loop = asyncio.get_running_loop()
        self._completions = _native.Completions()
        self._fd = self._completions.fileno()
        os.set_blocking(self._fd, False)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tokens = itertools.count()
        self._loop.add_reader(self._fd, self._answered)

    def _answered(self) -> None:
        try:
            while len(os.read(self._fd, 4096)) == 4096:
                pass
        except BlockingIOError:
            pass
        for answer in self._completions.take():
            waiting = self._waiting.pop(answer[0], None)
            if waiting is not None and not waiting.done():
                waiting.set_result(answer)

    async def _call(
        self, index: int, path: str, body: bytes, timeout: float | None, headers: Any
    ) -> tuple[Any, ...]:
        token = next(self._tokens)
        answer = self._waiting[token] = self._loop.create_future()
        try:
            call = self.channels[index].start(
                path, body, self._metadata(headers), timeout, self._completions, token
            )
        except BaseException:
            del self._waiting[token]
            raise
        try:
            return await answer
        except BaseException:  # cancelled: the call stops, its answer is never queued
            self._waiting.pop(token, None)
            call.abort()
            raise

    async def call(
        self, index: int, method: str, request: Any, timeout: float | None, headers: Any
    ) -> tuple[Any, bool]:
        path, answer = METHODS[method]
        done = await self._call(index, path, request.SerializeToString(), timeout, headers)
        if not done[1]:
            raise Failed(_code(done[2]), done[3], done[4])
        return answer.FromString(done[2]), done[3]

    async def health(self, index: int, body: bytes, timeout: float | None, headers: Any) -> bytes:
        done = await self._call(index, HEALTH_CHECK, body, timeout, headers)
        if not done[1]:
            raise Failed(_code(done[2]), done[3], done[4])
        return done[2]

    async def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        for channel in self.channels:
            channel.close()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.cancel()


def aio_transport(
    name: str, targets: list[str], tls: TLS | None, options: list[tuple[str, Any]]
) -> AioGrpcioTransport | AioNativeTransport:
    if name == "native":
        return AioNativeTransport(targets, tls)
    return AioGrpcioTransport(targets, tls, options)
