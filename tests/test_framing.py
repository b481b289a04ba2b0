from __future__ import annotations

import struct

import msgpack
import pytest

from coda import protocol as p
from coda.errors import ErrorKind, ProtocolError
from coda.framing import FrameDecoder, decode_message, encode_frame, encode_message

SAMPLES: list[p.Message] = [
    p.WorkerHello(1, 42, (p.TaskSpec("t", 1.5, 2, 0.5, True),), (p.WorkflowSpec("w", 1, 0.0),)),
    p.SpawnTask(1, "run", "t", {"a": [1, 2.5, None, b"\x00", {"b": True}]}, ["k", 1], 3),
    p.SpawnTask(2, "run", "t", {}, None, 4, True),
    p.SpawnWorkflow(2, "run", "w", {}),
    p.TaskReturned(3, {"x": "y"}),
    p.TaskReturned(None, 1, 7),
    p.TaskRaised(4, p.ErrorInfo("ValueError", "boom", "tb", ErrorKind.ERROR), 1.5),
    p.TaskRaised(None, p.ErrorInfo("ValueError", "boom"), None, 8),
    p.WorkflowReturned(5, None),
    p.WorkflowRaised(6, p.ErrorInfo("E", "m")),
    p.Welcome(1),
    p.ExecuteTask(7, "run", "t", {"a": 1}, 2),
    p.ExecuteWorkflow(8, "run", "w", {}, 1),
    p.SpawnSucceeded(9, [1]),
    p.SpawnFailed(10, "t", p.ErrorInfo("E", "m", "", ErrorKind.TIMEOUT)),
    p.CancelExecution(11),
    p.ClientHello(1, None),
    p.StartRun(12, "w", {"a": 1}, "rid"),
    p.AwaitRun(13, "rid"),
    p.GetRunStatus(14, "rid"),
    p.RerunRun(15, "rid"),
    p.CancelRun(16, "rid"),
    p.GetSupervisorStatus(17),
    p.RunStarted(18, "rid", True),
    p.RunFinished(19, "rid", "failed", None, p.ErrorInfo("E", "m")),
    p.RunFinished(19, "rid", "succeeded", 3, None),
    p.StatusReply(20, {"a": 1}),
    p.Ack(21),
    p.ErrorReply(22, p.ErrorInfo("E", "m", "", ErrorKind.AUTH)),
]


def test_every_message_type_is_sampled() -> None:
    assert {type(m) for m in SAMPLES} == set(p.MESSAGES.values())


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: p.Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_decoder_handles_split_and_joined_frames() -> None:
    data = b"".join(encode_frame(m) for m in SAMPLES)
    decoder = FrameDecoder()
    out: list[p.Message] = []
    for i in range(0, len(data), 7):
        out += decoder.feed(data[i : i + 7])
    assert out == SAMPLES
    assert FrameDecoder().feed(data) == SAMPLES


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xc1", "undecodable frame"),
        (msgpack.packb({"a": 1}), r"not a \[tag, \.\.\.\] array"),
        (msgpack.packb([999, 1]), "unknown message tag 999"),
        (msgpack.packb([p.Ack.TAG]), "Ack has 1 fields, frame has 0"),
        (msgpack.packb([p.TaskRaised.TAG, 1, 5, None, None]), "malformed TaskRaised"),
        (msgpack.packb([p.ErrorReply.TAG, 1, ["E", "m", "", "no-such-kind"]]), "malformed ErrorReply"),
    ],
)
def test_bad_payloads_raise_protocol_error(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        FrameDecoder().feed(struct.pack(">I", len(payload)) + payload)


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(ProtocolError, match="frame of 2000 bytes is over the limit of 1024"):
        FrameDecoder(max_frame=1024).feed(struct.pack(">I", 2000) + b"x")


def test_error_kinds_decode_as_the_enum() -> None:
    decoded = decode_message(encode_message(p.SpawnFailed(1, "t", p.ErrorInfo("E", "m", "", ErrorKind.TIMEOUT))))
    assert type(decoded) is p.SpawnFailed and decoded.error.kind is ErrorKind.TIMEOUT


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (p.SpawnSucceeded(1, "\ud800"), "cannot encode SpawnSucceeded: UnicodeEncodeError"),
        (p.TaskReturned(1, 2**70), "cannot encode TaskReturned: TypeError: cannot encode int"),
        (p.StatusReply(1, {"when": object()}), "cannot encode StatusReply: TypeError: cannot encode object"),
    ],
)
def test_a_value_msgpack_refuses_raises_protocol_error_naming_the_message(msg: p.Message, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        encode_frame(msg)
