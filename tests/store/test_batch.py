"""Batch: coalescing and merging mean the same as applying every call in order."""

from __future__ import annotations

import random
from typing import Any

from coda.store import Batch, RunQuery
from coda.store.memory import MemoryStore
from tests.store.records import key, run, step, timer

RUNS = ["r1", "r2", "r3"]


def _random_op(rng: random.Random, n: int) -> tuple[Any, ...]:
    run_id = rng.choice(RUNS)
    kind = rng.choice(["run", "run", "step", "memo", "timer", "untimer", "delete"])
    if kind == "run":
        return ("put_run", run(run_id, attempt=rng.randint(1, 2), counts={"n": n}))
    if kind == "step":
        return ("put_step", step(run_id, rng.randint(0, 3), attempt=rng.randint(1, 2), retries=n))
    if kind == "memo":
        return ("put_memo", run_id, key(str(rng.randint(0, 3))), n)
    if kind == "timer":
        return ("put_timer", timer(run_id, rng.randint(0, 3), attempt=rng.randint(1, 2), due=float(n)))
    if kind == "untimer":
        return ("delete_timer", run_id, rng.randint(1, 2), rng.randint(0, 3))
    return ("delete_run", run_id)


def _apply(batch: Batch, op: tuple[Any, ...]) -> None:
    getattr(batch, op[0])(*op[1:])


def _snapshot(store: MemoryStore) -> Any:
    return {run_id: (store.load_run(run_id), store.steps(run_id)) for run_id in RUNS}, store.list_runs(RunQuery())


def test_one_merged_batch_equals_every_call_committed_in_order() -> None:
    rng = random.Random(15)
    for _ in range(200):
        ops = [_random_op(rng, n) for n in range(rng.randint(1, 25))]
        one_by_one = MemoryStore()
        for op in ops:
            single = Batch()
            _apply(single, op)
            one_by_one.commit(single)
        # The same calls split into a few batches, merged as the writer does.
        merged = Batch()
        cut = sorted(rng.sample(range(len(ops) + 1), min(3, len(ops) + 1)))
        for start, end in zip([0, *cut], [*cut, len(ops)]):
            part = Batch()
            for op in ops[start:end]:
                _apply(part, op)
            merged.merge(part)
        together = MemoryStore()
        together.commit(merged)
        assert _snapshot(together) == _snapshot(one_by_one), ops


def test_puts_coalesce_and_len_counts_what_is_written() -> None:
    batch = Batch()
    for n in range(100):
        batch.put_run(run("r1", counts={"n": n}))
    batch.put_step(step("r1", 0))
    batch.put_step(step("r1", 0, retries=1))
    batch.put_memo("r1", key("a"), 1)
    batch.delete_timer("r1", 1, 0)
    assert len(batch) == 4
    assert batch.runs["r1"].counts == {"n": 99}
    assert list(batch.run_ids()) == ["r1"]
    assert repr(batch) == "Batch(runs=1, steps=1, memo=1, timers=1, deletes=0)"


def test_delete_run_drops_earlier_writes_of_that_run_only() -> None:
    batch = Batch()
    batch.put_run(run("r1"))
    batch.put_step(step("r1", 0))
    batch.put_memo("r1", key("a"), 1)
    batch.put_timer(timer("r1", 0))
    batch.put_step(step("r2", 0))
    batch.delete_run("r1")
    assert (batch.runs, list(batch.steps), batch.memo, batch.timers) == ({}, [("r2", 1, 0)], {}, {})
    assert list(batch.deletes) == ["r1"]
