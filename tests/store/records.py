"""Record builders for the store tests."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Any

from coda.protocol import ErrorInfo
from coda.store import Batch, RunRecord, StepRecord, TimerRecord

# Now, not a fixed date: Redis expires a finished run at finished_at + retention by its clock.
T0 = float(int(time.time()))
ERROR = ErrorInfo("builtins.ValueError", "bad value ü", "Traceback (most recent call last):\n  ...", "error")
VALUE = {"event": {"id": "e-1", "tags": ["a", "b"], "n": 2**40, "ratio": 0.25, "ok": True, "none": None}, "raw": b"\x00\xffbytes"}


def run(run_id: str, *, state: str = "running", created_at: float = T0, **changes: Any) -> RunRecord:
    record = RunRecord(
        run_id, "app.process_event", {"project_id": 1, "event": VALUE}, state, 1, created_at,
        counts={"spawned": 0, "executed": 0, "memo_hits": 0, "succeeded": 0, "failed": 0, "retried": 0},
    )
    if state in ("succeeded", "failed", "cancelled") and "finished_at" not in changes:
        changes["finished_at"] = created_at + 1
    return replace(record, **changes)


def step(run_id: str, seq: int, *, attempt: int = 1, ok: bool | None = True, **changes: Any) -> StepRecord:
    record = StepRecord(
        run_id, attempt, seq, "task", "app.normalize", ok=ok,
        value={"seq": seq, "attempt": attempt} if ok else None,
        error=ERROR if ok is False else None,
        cache_key=["e-1", seq], memo_key=key(f"{run_id}/{seq}"), worker=4242,
        started_at=T0 + seq, finished_at=None if ok is None else T0 + seq + 0.5,
    )
    return replace(record, **changes)


def timer(run_id: str, seq: int, *, attempt: int = 1, due: float = T0 + 30) -> TimerRecord:
    return TimerRecord(run_id, attempt, seq, "app.flaky", 2, due)


def key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=20).digest()


def batch(*records: RunRecord | StepRecord | TimerRecord) -> Batch:
    made = Batch()
    for record in records:
        if isinstance(record, RunRecord):
            made.put_run(record)
        elif isinstance(record, StepRecord):
            made.put_step(record)
        else:
            made.put_timer(record)
    return made
