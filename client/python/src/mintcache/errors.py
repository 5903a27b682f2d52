"""Errors raised by the mintcache clients: one class per gRPC status code the service documents.

Every error is a :class:`CacheError` carrying the status ``code`` and the server's ``details``;
catching :class:`CacheError` catches them all. Tokens never appear in these messages: the server
never echoes them, and the client builds no message from its metadata.
"""

from __future__ import annotations

import grpc

__all__ = [
    "CacheError",
    "InvalidArgument",
    "NotFound",
    "FailedPrecondition",
    "Unauthenticated",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "CircuitOpen",
    "DeadlineExceeded",
    "Unimplemented",
    "error_from_rpc",
]


class CacheError(Exception):
    """A call failed. ``code`` is the gRPC status code, ``details`` the server's message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: grpc.StatusCode | None = None) -> None:
        if code is not None:
            self.code = code
        self.details = details
        super().__init__(f"{self.code.name}: {details}")


class InvalidArgument(CacheError):
    """Empty key, key or value over the server's limits, bad ttl, bad lease token or metadata."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CacheError):
    """``increment`` of a missing counter without an initial value."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(CacheError):
    """``increment`` of a value that is not a counter, or under the debug mode ``off``."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(CacheError):
    """Unknown or malformed token, or no token where the server requires one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CacheError):
    """A debug mode asked for by a caller without admin rights."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(CacheError):
    """The server shed the call (overload) or the message was over its size limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(CacheError):
    """The server could not be reached, or its memcached failed on a write."""

    code = grpc.StatusCode.UNAVAILABLE


class CircuitOpen(Unavailable):
    """Not sent: the circuit breaker is open for every endpoint of the client (they failed
    with ``UNAVAILABLE`` or ``DEADLINE_EXCEEDED`` several times in a row and their cool-off
    has not ended). An :class:`Unavailable`, raised at once, without touching the network."""


class DeadlineExceeded(CacheError):
    """The call's deadline passed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(CacheError):
    """The server does not know this call or field (an older server)."""

    code = grpc.StatusCode.UNIMPLEMENTED


_BY_CODE: dict[grpc.StatusCode, type[CacheError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Unimplemented,
    )
}


def error_from_code(code: grpc.StatusCode, details: str) -> CacheError:
    """The error class for ``code`` (plain :class:`CacheError` for codes the API does not use)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return CacheError(details, code)
    return cls(details)


def error_from_rpc(error: grpc.RpcError) -> CacheError:
    """Converts a failed call of grpcio (sync or asyncio) into a :class:`CacheError`."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or ""
    return error_from_code(code or grpc.StatusCode.UNKNOWN, details)
