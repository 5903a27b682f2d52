from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_HIT: _ClassVar[Outcome]
    OUTCOME_STALE: _ClassVar[Outcome]
    OUTCOME_REFRESH: _ClassVar[Outcome]
    OUTCOME_MISS: _ClassVar[Outcome]
    OUTCOME_PENDING: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_HIT: Outcome
OUTCOME_STALE: Outcome
OUTCOME_REFRESH: Outcome
OUTCOME_MISS: Outcome
OUTCOME_PENDING: Outcome

class GetRequest(_message.Message):
    __slots__ = ("key", "lease_on_miss", "peek", "early_refresh_beta", "wait_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_ON_MISS_FIELD_NUMBER: _ClassVar[int]
    PEEK_FIELD_NUMBER: _ClassVar[int]
    EARLY_REFRESH_BETA_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    lease_on_miss: bool
    peek: bool
    early_refresh_beta: float
    wait_ms: int
    def __init__(self, key: _Optional[bytes] = ..., lease_on_miss: bool = ..., peek: bool = ..., early_refresh_beta: _Optional[float] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("outcome", "value", "flags", "ttl_seconds", "lease_token", "no_expiry", "grace_seconds", "counter")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    value: bytes
    flags: int
    ttl_seconds: int
    lease_token: bytes
    no_expiry: bool
    grace_seconds: int
    counter: bool
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., value: _Optional[bytes] = ..., flags: _Optional[int] = ..., ttl_seconds: _Optional[int] = ..., lease_token: _Optional[bytes] = ..., no_expiry: bool = ..., grace_seconds: _Optional[int] = ..., counter: bool = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ("key", "value", "ttl_seconds", "grace_seconds", "flags", "lease_token", "no_expiry", "no_grace", "counter", "recompute_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    NO_GRACE_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_seconds: int
    grace_seconds: int
    flags: int
    lease_token: bytes
    no_expiry: bool
    no_grace: bool
    counter: bool
    recompute_ms: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_seconds: _Optional[int] = ..., grace_seconds: _Optional[int] = ..., flags: _Optional[int] = ..., lease_token: _Optional[bytes] = ..., no_expiry: bool = ..., no_grace: bool = ..., counter: bool = ..., recompute_ms: _Optional[int] = ...) -> None: ...

class SetResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    def __init__(self, stored: bool = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key", "lease_token")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    lease_token: bytes
    def __init__(self, key: _Optional[bytes] = ..., lease_token: _Optional[bytes] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: bool = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("key", "value", "ttl_seconds", "grace_seconds", "flags", "no_expiry", "no_grace", "counter", "recompute_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    NO_GRACE_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_seconds: int
    grace_seconds: int
    flags: int
    no_expiry: bool
    no_grace: bool
    counter: bool
    recompute_ms: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_seconds: _Optional[int] = ..., grace_seconds: _Optional[int] = ..., flags: _Optional[int] = ..., no_expiry: bool = ..., no_grace: bool = ..., counter: bool = ..., recompute_ms: _Optional[int] = ...) -> None: ...

class AddResponse(_message.Message):
    __slots__ = ("stored", "lease_token")
    STORED_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    lease_token: bytes
    def __init__(self, stored: bool = ..., lease_token: _Optional[bytes] = ...) -> None: ...

class TouchRequest(_message.Message):
    __slots__ = ("key", "ttl_seconds", "no_expiry")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    ttl_seconds: int
    no_expiry: bool
    def __init__(self, key: _Optional[bytes] = ..., ttl_seconds: _Optional[int] = ..., no_expiry: bool = ...) -> None: ...

class TouchResponse(_message.Message):
    __slots__ = ("touched",)
    TOUCHED_FIELD_NUMBER: _ClassVar[int]
    touched: bool
    def __init__(self, touched: bool = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("invalidated",)
    INVALIDATED_FIELD_NUMBER: _ClassVar[int]
    invalidated: bool
    def __init__(self, invalidated: bool = ...) -> None: ...

class IncrementRequest(_message.Message):
    __slots__ = ("key", "delta", "initial_value", "ttl_seconds", "no_expiry")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    INITIAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    delta: int
    initial_value: int
    ttl_seconds: int
    no_expiry: bool
    def __init__(self, key: _Optional[bytes] = ..., delta: _Optional[int] = ..., initial_value: _Optional[int] = ..., ttl_seconds: _Optional[int] = ..., no_expiry: bool = ...) -> None: ...

class IncrementResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class FlushRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FlushResponse(_message.Message):
    __slots__ = ("flushed",)
    FLUSHED_FIELD_NUMBER: _ClassVar[int]
    flushed: bool
    def __init__(self, flushed: bool = ...) -> None: ...

class KeyError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class GetManyRequest(_message.Message):
    __slots__ = ("keys", "lease_on_miss", "peek", "early_refresh_beta")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LEASE_ON_MISS_FIELD_NUMBER: _ClassVar[int]
    PEEK_FIELD_NUMBER: _ClassVar[int]
    EARLY_REFRESH_BETA_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    lease_on_miss: bool
    peek: bool
    early_refresh_beta: float
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ..., lease_on_miss: bool = ..., peek: bool = ..., early_refresh_beta: _Optional[float] = ...) -> None: ...

class GetManyResult(_message.Message):
    __slots__ = ("key", "error", "outcome", "value", "flags", "ttl_seconds", "lease_token", "no_expiry", "grace_seconds", "counter")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    error: KeyError
    outcome: Outcome
    value: bytes
    flags: int
    ttl_seconds: int
    lease_token: bytes
    no_expiry: bool
    grace_seconds: int
    counter: bool
    def __init__(self, key: _Optional[bytes] = ..., error: _Optional[_Union[KeyError, _Mapping]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., value: _Optional[bytes] = ..., flags: _Optional[int] = ..., ttl_seconds: _Optional[int] = ..., lease_token: _Optional[bytes] = ..., no_expiry: bool = ..., grace_seconds: _Optional[int] = ..., counter: bool = ...) -> None: ...

class GetManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GetManyResult]
    def __init__(self, results: _Optional[_Iterable[_Union[GetManyResult, _Mapping]]] = ...) -> None: ...

class SetManyItem(_message.Message):
    __slots__ = ("key", "value", "ttl_seconds", "grace_seconds", "flags", "lease_token", "no_expiry", "no_grace", "counter", "recompute_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NO_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    NO_GRACE_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    RECOMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    ttl_seconds: int
    grace_seconds: int
    flags: int
    lease_token: bytes
    no_expiry: bool
    no_grace: bool
    counter: bool
    recompute_ms: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., ttl_seconds: _Optional[int] = ..., grace_seconds: _Optional[int] = ..., flags: _Optional[int] = ..., lease_token: _Optional[bytes] = ..., no_expiry: bool = ..., no_grace: bool = ..., counter: bool = ..., recompute_ms: _Optional[int] = ...) -> None: ...

class SetManyRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SetManyItem]
    def __init__(self, items: _Optional[_Iterable[_Union[SetManyItem, _Mapping]]] = ...) -> None: ...

class SetManyResult(_message.Message):
    __slots__ = ("key", "error", "stored")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    error: KeyError
    stored: bool
    def __init__(self, key: _Optional[bytes] = ..., error: _Optional[_Union[KeyError, _Mapping]] = ..., stored: bool = ...) -> None: ...

class SetManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SetManyResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SetManyResult, _Mapping]]] = ...) -> None: ...

class DeleteManyRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class DeleteManyResult(_message.Message):
    __slots__ = ("key", "error", "deleted")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    error: KeyError
    deleted: bool
    def __init__(self, key: _Optional[bytes] = ..., error: _Optional[_Union[KeyError, _Mapping]] = ..., deleted: bool = ...) -> None: ...

class DeleteManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DeleteManyResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DeleteManyResult, _Mapping]]] = ...) -> None: ...
