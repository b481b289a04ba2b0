"""Length-prefixed msgpack frames: the bytes under :mod:`coda.protocol`.

A frame is a 4-byte big-endian payload length, then a msgpack array ``[TAG, *fields]``.
Decoding never trusts the peer: an oversized length, bytes that are not msgpack, an unknown
tag or the wrong number of fields all raise :class:`~coda.errors.ProtocolError`, and the
connection that sent them is dropped by its owner. A message that cannot be encoded (a value
msgpack refuses) raises it too, naming the message type. :class:`FrameStream` is the asyncio
side every Coda connection shares: bytes in, whole messages out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import struct
import types
import typing
from collections.abc import Callable
from typing import Any

import msgpack

from coda import protocol
from coda.errors import ErrorInfo, ProtocolError

__all__ = ["DEFAULT_MAX_FRAME", "FrameDecoder", "FrameStream", "decode_message", "encode_frame", "encode_message"]

DEFAULT_MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
_STRUCTS: tuple[type, ...] = (ErrorInfo, protocol.TaskSpec, protocol.WorkflowSpec)

Converter = Callable[[Any], Any]
# msgpack ships no annotations: its one encoder, typed once here.
_packb: Callable[..., bytes] = msgpack.packb


def _converters(cls: type) -> list[tuple[int, Converter]]:
    """(field index, converter) for the fields of dataclass ``cls`` that need one."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    return [(i, c) for i, f in enumerate(fields) if (c := _converter(hints[f.name])) is not None]


def _struct_from(cls: type) -> Converter:
    convs = _converters(cls)

    def convert(value: Any) -> Any:
        values = list(value)
        for i, conv in convs:
            if i < len(values):
                values[i] = conv(values[i])
        return cls(*values)

    return convert


def _converter(hint: Any) -> Converter | None:
    """How to turn a decoded msgpack value back into a field of type ``hint`` (None: as is)."""
    if hint in _STRUCTS:
        return _struct_from(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
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


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


_PLANS = {tag: (cls, len(_field_names(cls)), _converters(cls)) for tag, cls in protocol.MESSAGES.items()}
_FIELDS = {cls: _field_names(cls) for cls in protocol.MESSAGES.values()}
_STRUCT_FIELDS = {cls: _field_names(cls) for cls in _STRUCTS}


def _default(value: Any) -> Any:
    names = _STRUCT_FIELDS.get(type(value))
    if names is None:
        raise TypeError(f"cannot encode {type(value).__qualname__}")
    return [getattr(value, n) for n in names]


def encode_message(msg: protocol.Message) -> bytes:
    """The msgpack payload of ``msg`` (no length prefix); :class:`ProtocolError` when a value in
    it cannot be encoded."""
    fields = [getattr(msg, n) for n in _FIELDS[type(msg)]]
    try:
        return _packb([msg.TAG, *fields], use_bin_type=True, default=_default)
    except Exception as exc:  # msgpack raises TypeError, OverflowError, ValueError, UnicodeError
        raise ProtocolError(f"cannot encode {type(msg).__name__}: {type(exc).__name__}: {exc}") from None


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


class FrameStream(asyncio.Protocol):
    """One Coda connection as an asyncio protocol: bytes in, :meth:`message_received` once per
    whole message. Bytes that are not frames go to :meth:`frame_error`, which closes the
    connection unless a subclass does more."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.decoder = FrameDecoder(max_frame)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as exc:
            self.frame_error(exc)
            return
        for msg in messages:
            self.message_received(msg)

    def message_received(self, msg: protocol.Message) -> None:
        raise NotImplementedError

    def frame_error(self, exc: ProtocolError) -> None:
        if self.transport is not None:
            self.transport.close()

    def write(self, data: bytes) -> None:
        """Write ``data`` unless the connection is closed or closing (then it is dropped)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
