"""Length-prefixed msgpack frames: the bytes under :mod:`coda.protocol`.

A frame is a 4-byte big-endian payload length, then a msgpack array ``[TAG, *fields]``.
Decoding never trusts the peer: an oversized length, bytes that are not msgpack, an unknown
tag or the wrong number of fields all raise :class:`~coda.errors.ProtocolError`, and the
connection that sent them is dropped by its owner.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from collections.abc import Callable
from typing import Any

import msgpack

from coda import protocol
from coda.errors import ProtocolError

__all__ = ["DEFAULT_MAX_FRAME", "FrameDecoder", "decode_message", "encode_frame", "encode_message"]

DEFAULT_MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
_STRUCTS = (protocol.ErrorInfo, protocol.TaskSpec, protocol.WorkflowSpec)

Converter = Callable[[Any], Any]


def _struct_from(cls: type) -> Converter:
    def convert(value: Any) -> Any:
        return cls(*value)

    return convert


def _converter(hint: Any) -> Converter | None:
    """How to turn a decoded msgpack value back into a field of type ``hint`` (None: as is)."""
    if hint in _STRUCTS:
        return _struct_from(hint)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        conv = _converter(inner[0]) if len(inner) == 1 else None
        if conv is None:
            return None
        return lambda v: None if v is None else conv(v)
    if origin is tuple:
        item = _converter(typing.get_args(hint)[0])
        if item is None:
            return tuple
        return lambda v: tuple(item(x) for x in v)
    return None


def _plan(cls: type) -> tuple[int, list[tuple[int, Converter]]]:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    convs = [(i, c) for i, f in enumerate(fields) if (c := _converter(hints[f.name])) is not None]
    return len(fields), convs


_PLANS = {tag: (cls, *_plan(cls)) for tag, cls in protocol.MESSAGES.items()}
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in protocol.MESSAGES.values()}  # type: ignore[arg-type]
_STRUCT_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _STRUCTS}


def _default(value: Any) -> Any:
    names = _STRUCT_FIELDS.get(type(value))
    if names is None:
        raise TypeError(f"cannot encode {type(value).__qualname__}")
    return [getattr(value, n) for n in names]


def encode_message(msg: protocol.Message) -> bytes:
    """The msgpack payload of ``msg`` (no length prefix)."""
    fields = [getattr(msg, n) for n in _FIELDS[type(msg)]]
    return msgpack.packb([msg.TAG, *fields], use_bin_type=True, default=_default)  # type: ignore[no-any-return]


def encode_frame(msg: protocol.Message) -> bytes:
    """``msg`` as one frame: length prefix and payload."""
    payload = encode_message(msg)
    return _HEADER.pack(len(payload)) + payload


def decode_message(payload: bytes) -> protocol.Message:
    """The message in one frame's payload; :class:`ProtocolError` when it is not one."""
    try:
        raw = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"undecodable frame ({type(exc).__name__}: {exc})") from None
    if type(raw) is not list or not raw or type(raw[0]) is not int:
        raise ProtocolError("frame is not a [tag, ...] array")
    plan = _PLANS.get(raw[0])
    if plan is None:
        raise ProtocolError(f"unknown message tag {raw[0]}")
    cls, count, convs = plan
    if len(raw) != count + 1:
        raise ProtocolError(f"{cls.__name__} has {count} fields, frame has {len(raw) - 1}")
    values = raw[1:]
    try:
        for i, conv in convs:
            values[i] = conv(values[i])
        return cls(*values)
    except Exception as exc:
        raise ProtocolError(f"malformed {cls.__name__}: {exc}") from None


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole messages back."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[protocol.Message]:
        buffer = self._buffer
        buffer += data
        out: list[protocol.Message] = []
        pos = 0
        end = len(buffer)
        while end - pos >= 4:
            (size,) = _HEADER.unpack_from(buffer, pos)
            if size > self.max_frame:
                raise ProtocolError(f"frame of {size} bytes is over the limit of {self.max_frame}")
            if end - pos - 4 < size:
                break
            out.append(decode_message(bytes(buffer[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        if pos:
            del buffer[:pos]
        return out
