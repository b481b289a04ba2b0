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
STAGES = ("preprocess", "symbolicate", "process", "save", "dropped")
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


def _counts(calls_path: str) -> dict[str, int]:
    counts = dict.fromkeys(STAGES, 0)
    if os.path.exists(calls_path):
        with open(calls_path) as f:
            for line in f:
                stage = line.split()[0]
                if stage in counts:
                    counts[stage] += 1
    return counts


def _progress(counts: dict[str, int], done: int, total: int) -> str:
    stages = "  ".join(f"{stage} {counts[stage]:>4}" for stage in STAGES)
    return f"runs {done:>4}/{total}  |  {stages}"


async def _feed(address: str, batch: list[dict[str, Any] | None], calls_path: str, tty: bool) -> dict[str, Any]:
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
        unique = len({h.run_id for h in handles})
        last = ""
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.25)
            line = _progress(_counts(calls_path), len(handles) - len(pending), len(handles))
            if tty:
                print("\r" + line, end="", flush=True)
            elif line != last:
                print(line, flush=True)
            last = line
        if tty:
            print()
        statuses = [await client.status(h.run_id) for h in handles]
    wall = time.perf_counter() - started
    return {
        "events": len(batch),
        "runs": unique,
        "saved": sum(1 for s in {s.run_id: s for s in statuses}.values() if s.state == "succeeded"),
        "reruns": sum(1 for s in {s.run_id: s for s in statuses}.values() if s.attempt > 1),
        "memo_hits": sum(s.tasks["memo_hits"] for s in {s.run_id: s for s in statuses}.values()),
        "wall": wall,
    }


def _summary(result: dict[str, Any], counts: dict[str, int], broker: str) -> str:
    from migration_guide.examples import domain

    rows = [
        ("broker", broker),
        ("events fed", result["events"]),
        ("workflow runs (duplicates share one)", result["runs"]),
        ("events stored", len(domain.saved_events())),
        *((f"tasks run: {stage}", counts[stage]) for stage in STAGES),
        ("runs that failed and reran by themselves", result["reruns"]),
        ("memo hits on those reruns (steps not run again)", result["memo_hits"]),
        ("wall time", f"{result['wall']:.2f}s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


@contextmanager
def _environment(folder: str, broker: str) -> Iterator[dict[str, str]]:
    env = {
        "PIPELINE_BROKER_URL": broker,
        "PIPELINE_BROKER_DIR": os.path.join(folder, "broker"),
        "PIPELINE_DB": os.path.join(folder, "events.sqlite3"),
        "PIPELINE_CALLS": os.path.join(folder, "calls.log"),
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
    from coda.testing import CeleryWorkerProcess, SupervisorProcess

    with tempfile.TemporaryDirectory(prefix="coda-demo-") as folder, _environment(folder, broker) as env, ExitStack() as stack:
        prefix = env["PIPELINE_QUEUE_PREFIX"]
        queues = [f"{prefix}events.symbolicate_event", f"{prefix}events.save_event"]
        try:
            print(f"starting a stock celery worker for the legacy stages (broker {broker}) ...", flush=True)
            stack.enter_context(CeleryWorkerProcess(f"{STEP}.celery_app", queues, concurrency=2, env=env,
                                                    args=["-I", f"{STEP}.legacy"]))
            print("starting coda supervisor with 2 workers ...", flush=True)
            supervisor = stack.enter_context(SupervisorProcess(
                [f"{STEP}.workflows"], workers=2, env=env, args=["--celery-app", f"{STEP}.celery_app:app"]))
            batch = make_events(args.events)
            print(f"feeding {len(batch)} events to the workflow at {supervisor.address}", flush=True)
            result = asyncio.run(_feed(supervisor.address, batch, env["PIPELINE_CALLS"], sys.stdout.isatty()))
        except KeyboardInterrupt:
            print("\ndemo: interrupted; stopping every process it started", file=sys.stderr)
            return 130
        except (RuntimeError, CodaError) as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        print("\nsummary")
        print(_summary(result, _counts(env["PIPELINE_CALLS"]), broker))
    return 0


if __name__ == "__main__":
    sys.exit(main())
