"""What a durable store costs per commit and per step, backend by backend.

    python -m bench.store_commits [--seconds 1.5]

A *step* is what one finished task writes: its step record, its memo entry and its run's
record (counts updated). Two batch shapes: ``k runs x 1 step`` (many workflows moving at once,
the throughput case) and ``1 run x k steps`` (a gather of k in one workflow). Each side commits
back to back on one thread for ``--seconds``: commits/s and steps/s. Then the StoreWriter:
single-step batches submitted as fast as the loop can, group commit merging them.

Redis runs on a private redis-server (free port, a temporary folder), so ``INFO
commandstats`` and ``total_net_input_bytes`` count only this bench: commands and bytes per step,
and AOF bytes per step. SQLite runs on a file in a temporary folder (see its file system in
the output: tmpfs makes FULL look free).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import redis

from coda.store import Batch, RunRecord, StepRecord, Store, StoreWriter, open_store

SIZES = (1, 10, 100)
RUNS_IN_FLIGHT = 500  # the writer side: single steps of this many workflows, in turn
PAYLOAD = {"event_id": "0" * 32, "project_id": 1, "data": "x" * 160}


def _run(run_id: str, n: int, now: float) -> RunRecord:
    return RunRecord(run_id, "bench.process_event", {"event": PAYLOAD}, "running", 1, now,
                     counts={"spawned": n, "executed": n, "memo_hits": 0, "succeeded": n, "failed": 0, "retried": 0})


def _step(run_id: str, seq: int, now: float) -> StepRecord:
    return StepRecord(run_id, 1, seq, "task", "bench.normalize", ok=True, value=PAYLOAD, cache_key=[f"e{seq}"],
                      memo_key=seq.to_bytes(20, "big"), worker=1234, started_at=now, finished_at=now)


def put_step(batch: Batch, run_id: str, seq: int, now: float) -> None:
    """What one finished task writes: its step, its memo entry, its run's counts."""
    batch.put_step(_step(run_id, seq, now))
    batch.put_memo(run_id, seq.to_bytes(20, "big"), PAYLOAD)
    batch.put_run(_run(run_id, seq + 1, now))


def make_batch(shape: str, k: int, i: int, now: float) -> Batch:
    """Commit ``i`` of a side: the next step of each of k runs, or the next k steps of one."""
    batch = Batch()
    for j in range(k):
        if shape == "runs":
            put_step(batch, f"run-{j}", i, now)
        else:
            put_step(batch, "run", i * k + j, now)
    return batch


def commit_rate(store: Store, shape: str, k: int, seconds: float) -> tuple[float, float]:
    """(commits/s, steps/s) committing k-step batches back to back."""
    now = time.time()
    commits = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        store.commit(make_batch(shape, k, commits, now))
        commits += 1
    return commits / elapsed, commits * k / elapsed


def writer_rate(store: Store, count: int) -> tuple[float, int]:
    """(steps/s, commits) for ``count`` single-step batches (one step of one of
    RUNS_IN_FLIGHT runs each) through a StoreWriter."""

    async def main() -> tuple[float, int]:
        writer = StoreWriter(store, asyncio.get_running_loop(), sweep_every=None)
        now = time.time()
        started = time.perf_counter()
        futures = []
        for i in range(count):
            batch = Batch()
            put_step(batch, f"run-{i % RUNS_IN_FLIGHT}", i // RUNS_IN_FLIGHT, now)
            futures.append(writer.submit(batch))
            await asyncio.sleep(0)  # one batch per loop turn, as the supervisor submits them
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
        commits = writer.commits
        await writer.close()
        return count / elapsed, commits

    return asyncio.run(main())


@contextlib.contextmanager
def private_redis(directory: str, appendfsync: str) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory,
            "--appendonly", "yes", "--appendfsync", appendfsync]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def _calls(stats: dict[str, dict[str, int]]) -> dict[str, int]:
    """Calls per command, leaving out the bench's own INFO and CONFIG RESETSTAT."""
    names = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
    return {name: calls for name, calls in names.items() if not name.startswith(("info", "config"))}


def redis_traffic(port: int, prefix: str, shape: str, k: int, commits: int) -> dict[str, float]:
    """Commands, network bytes in and AOF bytes per step, counted by the server."""
    client = redis.Redis(port=port)
    store = open_store(f"redis://127.0.0.1:{port}/0", prefix=prefix)
    now = time.time()
    store.commit(make_batch(shape, k, 0, now))  # the runs' first put carries the index commands
    client.config_resetstat()
    before = client.info("persistence")["aof_current_size"]
    net_before = client.info("stats")["total_net_input_bytes"]
    for i in range(1, commits + 1):
        store.commit(make_batch(shape, k, i, now))
    net = client.info("stats")["total_net_input_bytes"] - net_before
    aof = client.info("persistence")["aof_current_size"] - before
    stats = client.info("commandstats")
    by_name = _calls(stats)
    calls = sum(by_name.values())
    store.close()
    client.close()
    steps = commits * k
    return {"commands": calls / steps, "net_bytes": net / steps, "aof_bytes": aof / steps, "by_name": by_name}  # type: ignore[dict-item]


def redis_lifecycle(port: int) -> list[tuple[str, dict[str, int]]]:
    """The commands of a run's first write (it joins the indexes) and of its last (it leaves
    the active set and gets its expiry), counted by the server."""
    from dataclasses import replace

    client = redis.Redis(port=port)
    store = open_store(f"redis://127.0.0.1:{port}/0", prefix="lifecycle")
    now = time.time()
    record = _run("life", 0, now)
    found = []
    for what, put in (("first write (start)", record), ("last write (finish)", replace(record, state="succeeded", finished_at=now))):
        client.config_resetstat()
        batch = Batch()
        batch.put_run(put)
        store.commit(batch)
        found.append((what, _calls(client.info("commandstats"))))
    store.close()
    client.close()
    return found


def _label(shape: str, k: int) -> str:
    if k == 1:
        return "1 step"
    return f"{k} runs x 1 step" if shape == "runs" else f"1 run x {k} steps"


def _shapes() -> list[tuple[str, int]]:
    """(shape, k) of every side: for k = 1 the two shapes are the same batch."""
    return [("runs", k) for k in SIZES] + [("steps", k) for k in SIZES if k > 1]


def filesystem(path: str) -> str:
    try:
        out = subprocess.run(["df", "-T", path], capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        return out.split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per side (default 1.5)")
    parser.add_argument("--dir", default=None, help="folder for the SQLite files and Redis AOF (default: a temporary one)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is not installed", file=sys.stderr)
        return 1
    root = tempfile.mkdtemp(prefix="coda-store-bench-", dir=args.dir)
    print(f"# store commits ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, files on {filesystem(root)} at {root})\n")
    rows: list[tuple[str, str, int, float, float]] = []
    writer_rows: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def sqlite(sync: str, tag: str) -> Iterator[Store]:
        path = os.path.join(root, f"{tag}.db")
        store = open_store(f"sqlite://{path}?synchronous={sync}")
        try:
            yield store
        finally:
            store.close()

    @contextlib.contextmanager
    def redis_side(fsync: str, tag: str) -> Iterator[Store]:
        directory = os.path.join(root, f"redis-{fsync}-{tag}")
        os.mkdir(directory)
        with private_redis(directory, fsync) as port:
            store = open_store(f"redis://127.0.0.1:{port}/0", prefix="bench")
            try:
                yield store
            finally:
                store.close()

    sides: list[tuple[str, Callable[[str], contextlib.AbstractContextManager[Store]]]] = [
        ("sqlite NORMAL", lambda tag: sqlite("normal", tag)),
        ("sqlite FULL", lambda tag: sqlite("full", tag)),
        ("redis AOF everysec", lambda tag: redis_side("everysec", tag)),
        ("redis AOF always", lambda tag: redis_side("always", tag)),
    ]
    for name, side in sides:
        for shape, k in _shapes():
            with side(f"{shape}-{k}") as store:
                commits, steps = commit_rate(store, shape, k, args.seconds)
            rows.append((name, shape, k, commits, steps))
        with side("writer") as store:
            steps_s, commits = writer_rate(store, 5000)
            writer_rows.append((name, steps_s, commits))

    print("| store | batch | commits/s | steps/s |")
    print("|---|---|---:|---:|")
    for name, shape, k, commits, steps in rows:
        print(f"| {name} | {_label(shape, k)} | {commits:,.0f} | {steps:,.0f} |")
    print(f"\nStoreWriter, 5,000 single-step batches of {RUNS_IN_FLIGHT} runs submitted back to back (group commit):\n")
    print("| store | steps/s | commits | steps per commit |")
    print("|---|---:|---:|---:|")
    for name, steps_s, commits in writer_rows:
        print(f"| {name} | {steps_s:,.0f} | {commits:,.0f} | {5000 / max(commits, 1):,.1f} |")

    print("\nRedis traffic per step, counted by a private redis-server (after each run's first write):\n")
    print("| batch | commands/step | bytes in/step | AOF bytes/step | commands |")
    print("|---|---:|---:|---:|---|")
    directory = os.path.join(root, "redis-traffic")
    os.mkdir(directory)
    with private_redis(directory, "everysec") as port:
        for shape, k in _shapes():
            t = redis_traffic(port, f"t-{shape}-{k}", shape, k, max(20, 2000 // k))
            names = ", ".join(f"{n} {c}" for n, c in sorted(t["by_name"].items()))  # type: ignore[attr-defined]
            print(f"| {_label(shape, k)} | {t['commands']:.2f} | {t['net_bytes']:,.0f} | {t['aof_bytes']:,.0f} | {names} |")
        print()
        for what, calls in redis_lifecycle(port):
            print(f"- a run's {what}: {sum(calls.values())} commands ({', '.join(f'{n} {c}' for n, c in sorted(calls.items()))})")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
