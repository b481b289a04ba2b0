"""What the pipeline does to an event, shared by every step of the guide: only the plumbing
(Celery hand-offs, Redis processing store, Coda workflow) changes from step to step.

The saved events live in SQLite (one file, ``PIPELINE_DB``, default
``pipeline-events.sqlite3`` in the current folder): a stand-in for Sentry's Postgres that needs
no server. ``save`` is idempotent per event id, like Sentry's. The same file records which
stage ran for which event in which process (``record_call``): the flaky symbolicator counts
its calls there, and ``python -m migration_guide.examples.show`` reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from typing import Any

__all__ = [
    "NEEDS_SYMBOLICATION",
    "ProcessingFailed",
    "SymbolicatorUnavailable",
    "calls",
    "count_calls",
    "db_path",
    "enrich",
    "needs_symbolication",
    "normalize",
    "record_call",
    "save",
    "saved_events",
    "symbolicate",
]

NEEDS_SYMBOLICATION = frozenset({"native", "cocoa", "javascript"})


class SymbolicatorUnavailable(Exception):
    """The symbolication service did not answer; retrying later helps."""


class ProcessingFailed(Exception):
    """Processing broke on this event (the guide provokes it to show a rerun)."""


def db_path() -> str:
    """The events database: ``$PIPELINE_DB``, else ``pipeline-events.sqlite3`` here."""
    return os.environ.get("PIPELINE_DB", "pipeline-events.sqlite3")


def _connect() -> sqlite3.Connection:
    db = sqlite3.connect(db_path(), timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, project_id INTEGER, data TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS calls (stage TEXT, event_id TEXT, pid INTEGER, ppid INTEGER)")
    return db


def record_call(stage: str, event_id: str) -> int:
    """Note that ``stage`` ran for ``event_id`` (in the events database, with the process that
    ran it); how many times it has run for that event so far, this call included. The flaky
    symbolicator and the processing that breaks once count their calls with it."""
    with contextlib.closing(_connect()) as db, db:
        # One transaction: the insert takes the write lock, so the count is this call's own.
        db.execute("INSERT INTO calls VALUES (?, ?, ?, ?)", (stage, event_id, os.getpid(), os.getppid()))
        (count,) = db.execute("SELECT COUNT(*) FROM calls WHERE stage = ? AND event_id = ?", (stage, event_id)).fetchone()
    return int(count)


def count_calls(stage: str, event_id: str | None = None) -> int:
    """How often ``stage`` ran (for ``event_id``, or for every event)."""
    return sum(1 for call in calls(stage) if event_id is None or call[0] == event_id)


def calls(stage: str) -> list[tuple[str, int, int]]:
    """Every recorded call of ``stage``: (event id, pid, parent pid), oldest first."""
    if not os.path.exists(db_path()):
        return []
    with contextlib.closing(_connect()) as db:
        return db.execute("SELECT event_id, pid, ppid FROM calls WHERE stage = ? ORDER BY rowid", (stage,)).fetchall()


def normalize(data: dict[str, Any], project_id: int) -> dict[str, Any]:
    """Preprocess: fill defaults, trim the message, stamp the project."""
    return {
        **data,
        "project_id": project_id,
        "platform": data.get("platform", "other"),
        "message": str(data.get("message", "")).strip(),
        "received": data.get("received", time.time()),
    }


def needs_symbolication(data: dict[str, Any]) -> bool:
    return data.get("platform") in NEEDS_SYMBOLICATION


def symbolicate(data: dict[str, Any]) -> dict[str, Any]:
    """Turn frame addresses into function names. An event with ``flaky_symbolicator: n``
    finds the service down for its first ``n`` calls."""
    calls = record_call("symbolicate", data["event_id"])
    if calls <= int(data.get("flaky_symbolicator", 0)):
        raise SymbolicatorUnavailable(f"symbolicator unavailable (call {calls})")
    frames = [{**frame, "function": f"fn_{frame['addr']}"} for frame in data.get("frames", [])]
    return {**data, "frames": frames, "symbolicated": True}


def enrich(data: dict[str, Any]) -> dict[str, Any]:
    """Process: group the event by a hash of its message and frames, derive tags. An event with
    ``fail_processing_once`` breaks the first time it is processed."""
    if data.get("fail_processing_once") and record_call("processing-failure", data["event_id"]) == 1:
        raise ProcessingFailed(f"processing {data['event_id']} failed once, on purpose")
    basis = json.dumps([data["message"], [f.get("function", f.get("addr")) for f in data.get("frames", [])]])
    return {**data, "grouping_hash": hashlib.sha1(basis.encode()).hexdigest()[:12],
            "tags": sorted({f"platform:{data['platform']}", f"project:{data['project_id']}"})}


def save(data: dict[str, Any]) -> bool:
    """Store the event; False when it was stored before (a duplicate)."""
    with contextlib.closing(_connect()) as db, db:
        cursor = db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?)",
            (data["event_id"], data["project_id"], json.dumps(data, sort_keys=True)),
        )
        return cursor.rowcount == 1


def saved_events() -> dict[str, dict[str, Any]]:
    """Every stored event by id (what the acceptance test compares across steps)."""
    if not os.path.exists(db_path()):
        return {}
    with contextlib.closing(_connect()) as db:
        return {row[0]: json.loads(row[1]) for row in db.execute("SELECT event_id, data FROM events")}
