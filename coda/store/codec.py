"""Records ⇄ bytes for the durable stores, in Coda's wire encoding (msgpack, ``use_bin_type``).

Every blob starts with one codec version byte, then a msgpack array of the record's fields in
a fixed order, so that a later Coda can still read what this one wrote (it dispatches on the
byte) and this one refuses what a later one wrote instead of misreading it. Steps and timers
leave out ``run_id``, ``attempt`` and ``seq``: the store keeps them in its keys, and the
decoder takes them back from there.

Undecodable bytes raise :class:`~coda.errors.StoreIncompatible`; the store that read them adds
its name.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from coda.errors import StoreIncompatible
from coda.protocol import ErrorInfo
from coda.store.base import RunRecord, StepRecord, TimerRecord

__all__ = [
    "CODEC_VERSION",
    "decode_run",
    "decode_step",
    "decode_timer",
    "decode_value",
    "encode_run",
    "encode_step",
    "encode_timer",
    "encode_value",
]

CODEC_VERSION = 1
_V1 = b"\x01"
_RUN_FIELDS = 17
_STEP_FIELDS = 13
_TIMER_FIELDS = 3


_local = threading.local()


def _pack(fields: Any) -> bytes:
    # One Packer per thread: msgpack.packb makes a new one per call, 3-4x the cost of a pack.
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    try:
        return _V1 + packer.pack(fields)  # type: ignore[no-any-return]
    except BaseException:
        packer.reset()  # a failed pack may leave bytes behind in the packer's buffer
        raise


def _unpack(blob: bytes, what: str, count: int | None) -> Any:
    if not blob:
        raise StoreIncompatible(f"{what} is empty")
    version = blob[0]
    if version != CODEC_VERSION:
        newer = " (written by a newer Coda)" if version > CODEC_VERSION else ""
        raise StoreIncompatible(f"{what} has codec version {version}{newer}; this Coda reads version {CODEC_VERSION}")
    try:
        fields = msgpack.unpackb(memoryview(blob)[1:], raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise StoreIncompatible(f"{what} is not readable ({type(exc).__name__}: {exc})") from None
    if count is not None and (type(fields) is not list or len(fields) != count):
        raise StoreIncompatible(f"{what} does not have the {count} fields of codec version {CODEC_VERSION}")
    return fields


def _error_out(error: ErrorInfo | None) -> list[str] | None:
    return None if error is None else [error.exc_type, error.message, error.traceback, error.kind]


def _error_in(raw: Any) -> ErrorInfo | None:
    return None if raw is None else ErrorInfo(*raw)


def encode_run(run: RunRecord) -> bytes:
    return _pack([
        run.run_id, run.workflow, run.args, run.state, run.attempt, run.created_at, run.parent,
        run.finished_at, run.value, _error_out(run.error), run.max_retries, run.retry_delay,
        run.rerun_at, list(run.children), run.counts, run.owner, run.fence,
    ])


def decode_run(blob: bytes) -> RunRecord:
    f = _unpack(blob, "a run record", _RUN_FIELDS)
    try:
        return RunRecord(
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], _error_in(f[9]), f[10], f[11],
            f[12], tuple(f[13]), f[14], f[15], f[16],
        )
    except (TypeError, ValueError) as exc:
        raise StoreIncompatible(f"a run record is malformed: {exc}") from None


def encode_step(step: StepRecord) -> bytes:
    return _pack([
        step.kind, step.name, step.ok, step.value, _error_out(step.error), step.how, step.cache_key,
        step.memo_key, step.worker, step.started_at, step.finished_at, step.retries, step.child_run_id,
    ])


def decode_step(run_id: str, attempt: int, seq: int, blob: bytes) -> StepRecord:
    f = _unpack(blob, f"step {attempt}/{seq} of run {run_id!r}", _STEP_FIELDS)
    try:
        return StepRecord(
            run_id, attempt, seq, f[0], f[1], f[2], f[3], _error_in(f[4]), f[5], f[6], f[7], f[8],
            f[9], f[10], f[11], f[12],
        )
    except (TypeError, ValueError) as exc:
        raise StoreIncompatible(f"step {attempt}/{seq} of run {run_id!r} is malformed: {exc}") from None


def encode_timer(timer: TimerRecord) -> bytes:
    return _pack([timer.task, timer.exec_attempt, timer.due])


def decode_timer(run_id: str, attempt: int, seq: int, blob: bytes) -> TimerRecord:
    f = _unpack(blob, f"timer {attempt}/{seq} of run {run_id!r}", _TIMER_FIELDS)
    return TimerRecord(run_id, attempt, seq, f[0], f[1], f[2])


def encode_value(value: Any) -> bytes:
    """A memo value (any data)."""
    return _pack(value)


def decode_value(blob: bytes) -> Any:
    return _unpack(blob, "a memo value", None)
