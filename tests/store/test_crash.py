"""SIGKILL of a process in the middle of committing: every batch whose commit returned is in
the store after a reopen, and no batch is there in part."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis

from coda.store import RunQuery, open_store
from tests.store import crash_writer
from tests.store.conftest import subprocess_env
from tests.store.records import key

SCRIPT = str(Path(crash_writer.__file__).resolve())


def _kill_while_committing(url: str, prefix: str, first: int, acknowledged_before_kill: int) -> set[int]:
    """Run a writer from batch ``first`` until it has acknowledged that many batches, SIGKILL
    it, and return the numbers of the batches it acknowledged."""
    argv = [sys.executable, SCRIPT, url, prefix, str(first)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=subprocess_env())
    assert proc.stdout is not None
    acknowledged: set[int] = set()
    try:
        while len(acknowledged) < acknowledged_before_kill:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the writer exited early with code {proc.wait()}")
            acknowledged.add(int(line))
        proc.send_signal(signal.SIGKILL)  # while the next commits are in flight
        # What it printed before dying was acknowledged too.
        acknowledged.update(int(line) for line in proc.stdout.read().split())
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acknowledged


def _check(url: str, prefix: str, acknowledged: set[int]) -> int:
    store = open_store(url, prefix=prefix)
    try:
        steps = store.steps("crash")
        per_batch = Counter(s.seq // crash_writer.STEPS for s in steps)
        present = set(per_batch)
        assert all(n == crash_writer.STEPS for n in per_batch.values()), f"a batch is there in part: {per_batch}"
        assert acknowledged <= present, f"acknowledged but lost: {sorted(acknowledged - present)}"
        assert present == set(range(len(present))), "batches are committed in order"
        loaded = store.load_run("crash")
        assert loaded is not None
        assert loaded.run.counts == {"batch": max(present)}
        assert set(loaded.memo) == {key(str(i)) for i in present}
        assert {r.run_id for r in store.list_runs(RunQuery(limit=100_000))} == {"crash", *(f"b-{i}" for i in present)}
        return len(present)
    finally:
        store.close()


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_sigkill_while_committing_to_sqlite(tmp_path: Path, synchronous: str) -> None:
    url = f"sqlite://{tmp_path}/coda.db?synchronous={synchronous}"
    rng = random.Random()
    acknowledged: set[int] = set()
    committed = 0
    for _ in range(3):  # killed; the next writer reopens the file, goes on, and is killed too
        acknowledged |= _kill_while_committing(url, "", committed, rng.randint(10, 60))
        committed = _check(url, "", acknowledged)
    assert committed >= len(acknowledged) >= 30


def test_sigkill_while_committing_to_redis(redis_url: str, run_tag: str) -> None:
    prefix = f"coda-test:{run_tag}"
    client = redis.Redis.from_url(redis_url)
    try:
        acknowledged: set[int] = set()
        committed = 0
        for _ in range(2):
            acknowledged |= _kill_while_committing(redis_url, prefix, committed, random.Random().randint(10, 60))
            committed = _check(redis_url, prefix, acknowledged)
        assert committed >= len(acknowledged) >= 20
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
