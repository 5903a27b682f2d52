"""How Python values become cached bytes and back: a serializer (pickle, JSON, msgpack), then,
above a size threshold, a compressor (zlib, zstd, lz4). Pure Python, no I/O; the Django
backend uses it, and any program can (``Codec.encode`` gives the bytes and the flags to store
them with, ``Codec.decode`` takes them back).

The flags stored with a value say how it was written, so that a reader never guesses:

====================  ===========================================================
bits 0-7              serializer: 1 pickle, 2 JSON (UTF-8), 3 msgpack
bits 8-11             compressor: 0 none, 1 zlib, 2 zstd (frame), 3 lz4 (frame)
other bits            0 (a value with others set was written by something else)
====================  ===========================================================

Flags 0 means bytes written by another client (another language, the CLI): they are not
encoded by this module. A :class:`Codec` decodes only values of its own serializer and
raises :class:`CodecError` for any other, naming both, so that a value is never unpickled by
a reader that was configured for JSON; a compressed value is decompressed whatever the
reader's own compressor (zstd and lz4 need their packages: ``pip install "mintcache[zstd]"``,
``"mintcache[lz4]"``, and ``"mintcache[msgpack]"`` for msgpack).
"""

from __future__ import annotations

import importlib
import json
import pickle
import zlib
from typing import Any, Callable

__all__ = [
    "COMPRESSORS",
    "Codec",
    "CodecError",
    "SERIALIZERS",
    "describe_flags",
]

#: Serializer names and their flag values (bits 0-7).
SERIALIZERS = {"pickle": 1, "json": 2, "msgpack": 3}
#: Compressor names and their flag values (bits 8-11).
COMPRESSORS = {"zlib": 1, "zstd": 2, "lz4": 3}

_SERIALIZER_MASK = 0xFF
_COMPRESSOR_SHIFT = 8
_COMPRESSOR_MASK = 0xF << _COMPRESSOR_SHIFT
_KNOWN_BITS = _SERIALIZER_MASK | _COMPRESSOR_MASK

_SERIALIZER_NAMES = {number: name for name, number in SERIALIZERS.items()}
_COMPRESSOR_NAMES = {number: name for name, number in COMPRESSORS.items()}

# The package each optional codec needs, and the extra that installs it.
_PACKAGES = {"msgpack": "msgpack", "zstd": "zstandard", "lz4": "lz4.frame"}


class CodecError(ValueError):
    """A cached value this codec will not decode (another serializer wrote it, or a
    compressor whose package is missing), or a setting it does not know."""


def describe_flags(flags: int) -> str:
    """What the flags of a value say, e.g. ``"pickle + zlib"``; for messages."""
    if flags == 0:
        return "raw bytes"
    if flags & ~_KNOWN_BITS:
        return f"unknown encoding (flags {flags:#x})"
    serializer = _SERIALIZER_NAMES.get(flags & _SERIALIZER_MASK, f"serializer {flags & 0xFF}")
    compressor = (flags & _COMPRESSOR_MASK) >> _COMPRESSOR_SHIFT
    if compressor == 0:
        return serializer
    return f"{serializer} + {_COMPRESSOR_NAMES.get(compressor, f'compressor {compressor}')}"


def _import(name: str) -> Any:
    module = _PACKAGES[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CodecError(
            f'{name} needs the {module.split(".")[0]} package: pip install "mintcache[{name}]"'
        ) from None


class Codec:
    """Encodes values with one serializer and, from ``min_bytes`` serialized bytes up, one
    compressor (``None``: never compress); decodes what it encodes.

    ``serializer``: ``"pickle"`` (any picklable value; never use it for data others can
    write), ``"json"`` (what JSON can hold: tuples come back as lists; other languages read
    it), ``"msgpack"`` (compact, other languages read it; what msgpack can hold).
    ``compressor``: ``"zlib"`` (standard library), ``"zstd"``, ``"lz4"``; a compressed value
    is kept only when it is smaller. ``level``: the compressor's level (its default if
    ``None``). ``pickle_protocol``: for pickle. ``json_encoder``: a :class:`json.JSONEncoder`
    subclass for types JSON does not know (the Django backend passes Django's).
    """

    def __init__(
        self,
        serializer: str = "pickle",
        compressor: str | None = None,
        min_bytes: int = 1024,
        level: int | None = None,
        pickle_protocol: int = pickle.HIGHEST_PROTOCOL,
        json_encoder: type[json.JSONEncoder] | None = None,
    ) -> None:
        if serializer not in SERIALIZERS:
            raise CodecError(f"unknown serializer {serializer!r} (known: {', '.join(SERIALIZERS)})")
        if compressor is not None and compressor not in COMPRESSORS:
            raise CodecError(
                f"unknown compressor {compressor!r} (known: {', '.join(COMPRESSORS)}, or None)"
            )
        if isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 0:
            raise CodecError("the compression threshold must be a whole number of bytes >= 0")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise CodecError("the compression level must be a whole number or None")
        if not isinstance(pickle_protocol, int) or not (
            0 <= pickle_protocol <= pickle.HIGHEST_PROTOCOL
        ):
            raise CodecError(
                f"the pickle protocol must be 0 to {pickle.HIGHEST_PROTOCOL}, "
                f"not {pickle_protocol!r}"
            )
        self.serializer = serializer
        self.compressor = compressor
        self.min_bytes = min_bytes
        self.level = level
        self._serializer_flag = SERIALIZERS[serializer]
        self._dumps, self._loads = self._serializer_functions(
            serializer, pickle_protocol, json_encoder
        )
        self._compress: Callable[[bytes], bytes] | None = None
        if compressor is not None:
            self._compress = self._compressor_function(compressor, level)
        self._decompressors: dict[int, Callable[[bytes], bytes]] = {}

    def __repr__(self) -> str:
        return (
            f"Codec(serializer={self.serializer!r}, compressor={self.compressor!r}, "
            f"min_bytes={self.min_bytes})"
        )

    @staticmethod
    def _serializer_functions(
        name: str, protocol: int, encoder: type[json.JSONEncoder] | None
    ) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
        if name == "pickle":
            return (lambda value: pickle.dumps(value, protocol)), pickle.loads
        if name == "json":
            dump = json.JSONEncoder if encoder is None else encoder
            text = dump(separators=(",", ":"), ensure_ascii=False)
            return (lambda value: text.encode(value).encode("utf-8")), json.loads
        msgpack = _import("msgpack")
        return (
            lambda value: msgpack.packb(value, use_bin_type=True),
            lambda data: msgpack.unpackb(data, raw=False, strict_map_key=False),
        )

    @staticmethod
    def _compressor_function(name: str, level: int | None) -> Callable[[bytes], bytes]:
        if name == "zlib":
            return lambda data: zlib.compress(data, -1 if level is None else level)
        if name == "zstd":
            zstandard = _import("zstd")
            compressor = zstandard.ZstdCompressor(level=3 if level is None else level)
            return compressor.compress
        lz4_frame = _import("lz4")
        return lambda data: lz4_frame.compress(data, compression_level=level or 0)

    def _decompressor(self, number: int, flags: int) -> Callable[[bytes], bytes]:
        found = self._decompressors.get(number)
        if found is not None:
            return found
        name = _COMPRESSOR_NAMES.get(number)
        if name == "zlib":
            found = zlib.decompress
        elif name == "zstd":
            # Content size is in the frame header (ZstdCompressor.compress writes it).
            found = _import("zstd").ZstdDecompressor().decompress
        elif name == "lz4":
            found = _import("lz4").decompress
        else:
            raise CodecError(f"unknown encoding ({describe_flags(flags)}, flags {flags:#x})")
        self._decompressors[number] = found
        return found

    def encode(self, value: Any) -> tuple[bytes, int]:
        """The bytes to store and their flags."""
        data = self._dumps(value)
        flags = self._serializer_flag
        if self._compress is not None and len(data) >= self.min_bytes:
            packed = self._compress(data)
            if len(packed) < len(data):
                return packed, flags | (COMPRESSORS[self.compressor] << _COMPRESSOR_SHIFT)
        return data, flags

    def decode(self, data: bytes, flags: int) -> Any:
        """The value of bytes stored with ``flags``. Raises :class:`CodecError` for a value of
        another serializer (it is never deserialized) or an unknown encoding."""
        if flags & ~_KNOWN_BITS or (flags & _SERIALIZER_MASK) not in _SERIALIZER_NAMES:
            raise CodecError(f"unknown encoding (flags {flags:#x}): not decoded")
        if flags & _SERIALIZER_MASK != self._serializer_flag:
            raise CodecError(
                f"the value was written with the {_SERIALIZER_NAMES[flags & _SERIALIZER_MASK]} "
                f"serializer (flags {flags:#x}), this reader uses {self.serializer}: not "
                "decoded (give each serializer its own key space)"
            )
        compressor = (flags & _COMPRESSOR_MASK) >> _COMPRESSOR_SHIFT
        if compressor:
            data = self._decompressor(compressor, flags)(data)
        return self._loads(data)
