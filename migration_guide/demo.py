"""The main job: the guide's step-3 pipeline end to end, on real processes.

It starts a ``coda supervisor`` (two Coda workers), a stock ``celery worker`` for the legacy
stages, feeds a batch of events through the ``pipeline.ingest_event`` workflow, shows a live
count per stage, and prints a summary. Some events break once in processing, so their runs
rerun by themselves: the memo hits show the stages that did not run twice.

With no configuration the broker is kombu's filesystem transport in a temporary folder (no
server needed); ``CODA_BROKER_URL=redis://...`` or ``amqp://...`` uses that broker instead.

    python -m migration_guide.demo [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

STEP = "migration_guide.examples.step3"
STAGES = ("preprocess", "symbolicate", "process", "save")
PLATFORMS = ("python", "native", "cocoa", "javascript", "go")


def make_events(count: int) -> list[dict[str, Any] | None]:
    """A batch like production's: mixed platforms, a flaky symbolicator, processing that breaks
    once, a duplicate delivery and a payload that has gone missing (None)."""
    batch: list[dict[str, Any] | None] = []
    for i in range(count):
        event: dict[str, Any] = {"event_id": f"demo-{i:04d}", "platform": PLATFORMS[i % len(PLATFORMS)],
                                 "message": f"  error number {i}  ", "received": float(i),
                                 "frames": [{"addr": hex(16 + i)}, {"addr": hex(32 + i)}]}
        if i % 7 == 1:
            event["flaky_symbolicator"] = 1
        if i % 10 == 3:
            event["fail_processing_once"] = True
        batch.append(event)
    if count:
        batch.append(dict(batch[0]))  # delivered twice
    batch.append(None)  # its payload is gone
    return batch


def _check_broker(url: str) -> str | None:
    """Why ``url`` cannot be used, or None."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # kombu raises a different type per transport
        return f"cannot reach the broker at {url}: {exc}"
    return None


def _calls() -> dict[str, int]:
    """Calls so far per stage (each stage records its calls in the events database)."""
    from migration_guide.examples import domain

    return {stage: domain.count_calls(stage) for stage in STAGES}


def _progress(calls: dict[str, int], done: int, total: int) -> str:
    stages = "  ".join(f"{stage} {calls[stage]:>4}" for stage in STAGES)
    return f"runs {done:>4}/{total}  |  calls: {stages}"


async def _feed(address: str, batch: list[dict[str, Any] | None], tty: bool) -> dict[str, Any]:
    import coda

    started = time.perf_counter()
    async with coda.Client(address) as client:
        handles = []
        for i, event in enumerate(batch):
            event_id = event["event_id"] if event else f"demo-missing-{i}"
            handles.append(await client.start("pipeline.ingest_event",
                                              {"event": event, "event_id": event_id, "project_id": 1},
                                              run_id=f"demo-{event_id}"))
        pending = {asyncio.ensure_future(h.result(timeout=300)) for h in handles}
        last = ""
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.25)
            line = _progress(_calls(), len(handles) - len(pending), len(handles))
            if tty:
                print("\r" + line, end="", flush=True)
            elif line != last:
                print(line, flush=True)
            last = line
        if tty:
            print()
        statuses = {h.run_id: await client.status(h.run_id) for h in handles}
    wall = time.perf_counter() - started
    return {
        "events": len(batch),
        "runs": len(statuses),
        "reruns": sum(1 for s in statuses.values() if s.attempt > 1),
        "memo_hits": sum(s.tasks["memo_hits"] for s in statuses.values()),
        "wall": wall,
    }


def _where(pid: int, ppid: int, places: dict[int, str]) -> str:
    return places.get(pid) or places.get(ppid) or f"pid {pid}"


def stages(places: dict[int, str]) -> list[tuple[str, str, int, int]]:
    """Per stage: where it ran, for how many events (its first call for each), and how many
    calls came on top (retries). ``places`` names the processes: the Celery worker's pid and
    the supervisor's, whose children are the Coda workers."""
    from migration_guide.examples import domain

    rows = []
    for stage in STAGES:
        calls = domain.calls(stage)
        where = sorted({_where(pid, ppid, places) for _, pid, ppid in calls})
        events = len({event_id for event_id, _, _ in calls})
        rows.append((stage, " + ".join(where) or "-", events, len(calls) - events))
    return rows


def _summary(result: dict[str, Any], broker: str, places: dict[int, str]) -> str:
    from migration_guide.examples import domain

    rows = [
        ("broker", broker),
        ("events fed", result["events"]),
        ("workflow runs (duplicates share one)", result["runs"]),
        ("events stored", len(domain.saved_events())),
        ("events dropped (payload missing)", domain.count_calls("dropped")),
        ("runs that failed and reran by themselves", result["reruns"]),
        ("memo hits on those reruns (steps not run again)", result["memo_hits"]),
        ("wall time", f"{result['wall']:.2f}s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k:<{width}}  {v}" for k, v in rows]
    table = [("stage", "ran on", "runs", "retries"), *((s, w, str(e), str(r)) for s, w, e, r in stages(places))]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines.append("")
    for row in table:
        lines.append(f"  {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}")
    lines.append("  runs: events a stage ran for; retries: its further calls for the same events (symbolicate")
    lines.append("  retried by Celery while the symbolicator was down; process again in a run that reran,")
    lines.append("  the stages before it taken from the memo)")
    return "\n".join(lines)


@contextmanager
def _environment(folder: str, broker: str) -> Iterator[dict[str, str]]:
    env = {
        "PIPELINE_BROKER_URL": broker,
        "PIPELINE_BROKER_DIR": os.path.join(folder, "broker"),
        "PIPELINE_DB": os.path.join(folder, "events.sqlite3"),
        "PIPELINE_QUEUE_PREFIX": f"demo-{os.getpid()}.",
    }
    os.makedirs(env["PIPELINE_BROKER_DIR"], exist_ok=True)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migration_guide.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60, help="how many events to feed [60]")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    broker = os.environ.get("CODA_BROKER_URL") or "filesystem://"
    if broker != "filesystem://":
        problem = _check_broker(broker)
        if problem:
            print(f"demo: {problem} (unset CODA_BROKER_URL to use the embedded default)", file=sys.stderr)
            return 2

    from coda.errors import CodaError
    from coda.supervisor.launcher import CeleryWorkerProcess, SupervisorProcess

    with tempfile.TemporaryDirectory(prefix="coda-demo-") as folder, _environment(folder, broker) as env, ExitStack() as stack:
        prefix = env["PIPELINE_QUEUE_PREFIX"]
        queues = [f"{prefix}events.symbolicate_event", f"{prefix}events.save_event"]
        try:
            print(f"starting a stock celery worker for the legacy stages (broker {broker}) ...", flush=True)
            celery = stack.enter_context(CeleryWorkerProcess(f"{STEP}.celery_app", queues, concurrency=2, env=env,
                                                             args=["-I", f"{STEP}.legacy"]))
            print("starting coda supervisor with 2 workers ...", flush=True)
            supervisor = stack.enter_context(SupervisorProcess(
                [f"{STEP}.workflows"], workers=2, env=env, args=["--celery-app", f"{STEP}.celery_app:app"]))
            batch = make_events(args.events)
            print(f"feeding {len(batch)} events to the workflow at {supervisor.address}", flush=True)
            result = asyncio.run(_feed(supervisor.address, batch, sys.stdout.isatty()))
        except KeyboardInterrupt:
            print("\ndemo: interrupted; stopping every process it started", file=sys.stderr)
            return 130
        except (RuntimeError, CodaError) as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        assert celery.proc is not None and supervisor.proc is not None
        places = {celery.proc.pid: "celery worker", supervisor.proc.pid: "coda workers"}
        print("\nsummary")
        print(_summary(result, broker, places))
    return 0


if __name__ == "__main__":
    sys.exit(main())
