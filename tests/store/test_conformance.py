"""The one conformance suite: every test here runs against every backend (see conftest)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from coda.errors import StoreIncompatible
from coda.store import Batch, LoadedRun, RunQuery, Store
from coda.store.base import SCHEMA_VERSION
from tests.store.conftest import Backend
from tests.store.records import ERROR, T0, VALUE, batch, key, run, step, timer


def test_commit_and_load_round_trip(store: Store) -> None:
    record = run("r1", parent="p0", children=("c1", "c2"), max_retries=3, retry_delay=1.5, rerun_at=T0 + 9,
                 counts={"spawned": 3, "executed": 2, "memo_hits": 1, "succeeded": 2, "failed": 0, "retried": 1})
    steps = [step("r1", 0), step("r1", 1, ok=False), step("r1", 2, ok=None),
             step("r1", 3, kind="workflow", name="app.child", how="child", child_run_id="c1", cache_key=None, memo_key=None, worker=None)]
    made = batch(record, *steps, timer("r1", 1))
    made.put_memo("r1", key("a"), VALUE)
    made.put_memo("r1", key("b"), None)
    store.commit(made)

    loaded = store.load_run("r1")
    assert loaded == LoadedRun(record, {key("a"): VALUE, key("b"): None}, tuple(steps), (timer("r1", 1),))
    assert loaded.memo[key("a")]["raw"] == b"\x00\xffbytes"  # bytes stay bytes, str stays str
    assert loaded.steps[1].error == ERROR
    assert store.load_run("nope") is None


def test_last_put_in_a_batch_wins(store: Store) -> None:
    made = batch(run("r1", counts={"spawned": 1}), step("r1", 0, ok=None))
    made.put_memo("r1", key("k"), "first")
    made.put_run(run("r1", counts={"spawned": 2}))
    made.put_step(step("r1", 0, ok=True))
    made.put_memo("r1", key("k"), "second")
    assert len(made) == 3
    store.commit(made)
    loaded = store.load_run("r1")
    assert loaded is not None
    assert loaded.run.counts == {"spawned": 2}
    assert [s.ok for s in loaded.steps] == [True]
    assert loaded.memo == {key("k"): "second"}


def test_later_commits_overwrite_and_add(store: Store) -> None:
    store.commit(batch(run("r1"), step("r1", 0, ok=None)))
    store.commit(batch(run("r1", counts={"spawned": 1}), step("r1", 0), step("r1", 1)))
    loaded = store.load_run("r1")
    assert loaded is not None and loaded.run.counts == {"spawned": 1}
    assert [(s.seq, s.ok) for s in loaded.steps] == [(0, True), (1, True)]


def test_load_active_returns_unfinished_runs_oldest_first_with_their_current_attempt(store: Store) -> None:
    store.commit(batch(
        run("old", state="pending", created_at=T0 - 10),
        run("new", created_at=T0 + 10, attempt=2),
        run("done", state="succeeded"), run("failed", state="failed", error=ERROR), run("gone", state="cancelled"),
        step("new", 0, attempt=1), step("new", 1, attempt=1), step("new", 0, attempt=2),
        timer("new", 1, attempt=1), timer("new", 5, attempt=2),
        step("done", 0),
    ))
    memo = Batch()
    memo.put_memo("new", key("m"), {"kept": "across attempts"})
    store.commit(memo)

    active = store.load_active()
    assert [r.run.run_id for r in active] == ["old", "new"]
    new = active[1]
    assert [(s.attempt, s.seq) for s in new.steps] == [(2, 0)]  # the replay table of attempt 2
    assert [(t.attempt, t.seq) for t in new.timers] == [(2, 5)]
    assert new.memo == {key("m"): {"kept": "across attempts"}}
    assert active[0] == LoadedRun(run("old", state="pending", created_at=T0 - 10), {})


def test_a_finished_run_loads_with_its_memo_and_result_but_no_replay_table(store: Store) -> None:
    done = run("r1", state="failed", error=ERROR, attempt=2)
    made = batch(done, step("r1", 0, attempt=2), timer("r1", 3, attempt=2))
    made.put_memo("r1", key("k"), 7)
    store.commit(made)
    assert store.load_run("r1") == LoadedRun(done, {key("k"): 7})
    assert [s.seq for s in store.steps("r1")] == [0]  # the views still see the steps


def test_steps_are_ordered_by_attempt_then_seq(store: Store) -> None:
    # 12 steps and attempts 1, 2, 10: numeric order, not the order of their names as text.
    order = [(a, s) for a in (10, 2, 1) for s in (11, 2, 10, 0, 1)]
    made = batch(run("r1", attempt=10), *(step("r1", s, attempt=a) for a, s in order))
    store.commit(made)
    store.commit(batch(step("r1", 3, attempt=2)))
    assert [(s.attempt, s.seq) for s in store.steps("r1")] == sorted([*order, (2, 3)])
    assert store.steps("unknown") == []


def test_timers_are_deleted_one_by_one_and_with_their_run(store: Store) -> None:
    store.commit(batch(run("r1"), timer("r1", 1), timer("r1", 2), timer("r1", 3)))
    later = Batch()
    later.delete_timer("r1", 1, 2)
    later.put_timer(timer("r1", 3, due=T0 + 99))
    store.commit(later)
    loaded = store.load_run("r1")
    assert loaded is not None
    assert [(t.seq, t.due) for t in loaded.timers] == [(1, T0 + 30), (3, T0 + 99)]
    store.commit(batch(run("r1", state="cancelled")))
    store.commit(batch(run("r1", attempt=2)))  # rerun: the old attempt's timers do not come back
    loaded = store.load_run("r1")
    assert loaded is not None and loaded.timers == ()


def test_list_runs_filters_and_orders_newest_first(store: Store) -> None:
    runs = [
        run("a", created_at=T0 + 1, state="succeeded"),
        run("b", created_at=T0 + 2, state="failed", workflow="app.other"),
        run("c", created_at=T0 + 3),
        run("d", created_at=T0 + 3, state="succeeded"),  # same time as c: ties by run id, descending
        run("e", created_at=T0 + 5, state="pending", workflow="app.other"),
    ]
    store.commit(batch(*runs))

    def ids(**query: object) -> list[str]:
        return [r.run_id for r in store.list_runs(RunQuery(**query))]  # type: ignore[arg-type]

    assert ids() == ["e", "d", "c", "b", "a"]
    assert ids(limit=2) == ["e", "d"]
    assert ids(state="succeeded") == ["d", "a"]
    assert ids(workflow="app.other") == ["e", "b"]
    assert ids(workflow="app.other", state="failed") == ["b"]
    assert ids(since=T0 + 2, until=T0 + 5) == ["d", "c", "b"]  # since inclusive, until exclusive
    assert ids(since=T0 + 3, state="succeeded", limit=1) == ["d"]
    assert ids(state="cancelled") == []
    assert store.list_runs(RunQuery(state="failed"))[0] == runs[1]


def test_list_runs_pages_past_many_filtered_out_runs(store: Store) -> None:
    # More non-matching runs than one read chunk: the filter must keep reading.
    made = batch(*(run(f"s{i:04}", created_at=T0 + i, state="succeeded") for i in range(450)))
    made.put_run(run("old-failure", created_at=T0 - 1, state="failed"))
    store.commit(made)
    assert [r.run_id for r in store.list_runs(RunQuery(state="failed"))] == ["old-failure"]
    assert len(store.list_runs(RunQuery(limit=1000))) == 451


def test_delete_run_removes_everything_of_it(store: Store) -> None:
    made = batch(run("r1"), step("r1", 0), timer("r1", 1), run("r2"))
    made.put_memo("r1", key("k"), 1)
    store.commit(made)
    gone = Batch()
    gone.delete_run("r1")
    store.commit(gone)
    assert store.load_run("r1") is None
    assert store.steps("r1") == []
    assert [r.run.run_id for r in store.load_active()] == ["r2"]
    assert [r.run_id for r in store.list_runs(RunQuery())] == ["r2"]


def test_a_delete_then_a_put_of_the_same_run_in_one_batch_keeps_only_the_new_run(store: Store) -> None:
    made = batch(run("r1"), step("r1", 0))
    made.put_memo("r1", key("old"), 1)
    store.commit(made)
    again = Batch()
    again.delete_run("r1")
    again.put_run(run("r1", created_at=T0 + 100))
    again.put_step(step("r1", 5))
    store.commit(again)
    loaded = store.load_run("r1")
    assert loaded is not None
    assert loaded.run.created_at == T0 + 100
    assert loaded.memo == {}
    assert [s.seq for s in loaded.steps] == [5]


def test_sweep_deletes_finished_runs_past_retention_only(backend: Backend) -> None:
    store = backend.open(retention=600)
    now = time.time()
    store.commit(batch(
        run("expired", state="succeeded", created_at=now - 2000, finished_at=now - 601),
        run("kept", state="failed", created_at=now - 2000, finished_at=now - 60),
        run("active", created_at=now - 10**6),
        step("expired", 0), step("kept", 0),
    ))
    # Redis dropped "expired" itself (its expiry time had passed); sweep tidies its indexes.
    assert store.sweep(now) == 1
    assert store.load_run("expired") is None
    assert store.steps("expired") == []
    assert {r.run_id for r in store.list_runs(RunQuery())} == {"kept", "active"}
    assert [r.run.run_id for r in store.load_active()] == ["active"]
    assert store.sweep(now) == 0
    assert store.sweep(now + 600) == 1  # "kept" is past retention now
    assert store.load_run("kept") is None
    assert store.load_run("active") is not None


def test_a_rerun_of_a_finished_run_is_not_swept(backend: Backend) -> None:
    store = backend.open(retention=10)
    now = time.time()
    store.commit(batch(run("r1", state="failed", created_at=now - 100, finished_at=now - 50)))
    store.commit(batch(run("r1", attempt=2, created_at=now - 100)))
    store.sweep(now)
    loaded = store.load_run("r1")
    assert loaded is not None and loaded.run.attempt == 2
    assert [r.run.run_id for r in store.load_active()] == ["r1"]


def test_reopen_after_close_keeps_everything(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store keeps nothing past its process")
    store = backend.open()
    made = batch(run("r1", attempt=2), step("r1", 0, attempt=2), timer("r1", 1, attempt=2), run("r2", state="succeeded", value=VALUE))
    made.put_memo("r1", key("k"), VALUE)
    store.commit(made)
    before = (store.load_active(), store.load_run("r2"), store.steps("r1"), store.list_runs(RunQuery()))
    store.close()
    store.close()  # idempotent
    again = backend.open()
    assert (again.load_active(), again.load_run("r2"), again.steps("r1"), again.list_runs(RunQuery())) == before


def test_a_newer_schema_version_is_refused_naming_both_versions(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store has no schema")
    store = backend.open()
    store.commit(batch(run("r1")))
    store.close()
    backend.forge_schema_version(SCHEMA_VERSION + 98)
    with pytest.raises(StoreIncompatible) as info:
        backend.open()
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 98}" in message
    assert f"reads schema version {SCHEMA_VERSION}" in message
    assert backend.make(1).describe() in message
    backend.forge_schema_version(SCHEMA_VERSION)  # nothing was reset: the run is still there
    assert backend.open().load_run("r1") is not None


def test_a_record_from_a_newer_codec_is_refused_not_misread(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store encodes nothing")
    store = backend.open()
    store.commit(batch(run("r1")))
    if backend.path is not None:
        import sqlite3

        conn = sqlite3.connect(backend.path)
        with conn:
            conn.execute("UPDATE runs SET record = X'02c0' WHERE run_id = 'r1'")
        conn.close()
    else:
        backend.redis.hset(f"{backend.prefix}:run:{{r1}}", "r", b"\x02\xc0")
    with pytest.raises(StoreIncompatible, match="codec version 2 .written by a newer Coda"):
        store.load_active()
    with pytest.raises(StoreIncompatible, match=r"load run 'r1'"):
        store.load_run("r1")


def test_records_keep_what_the_views_read(store: Store) -> None:
    record = step("r1", 0, how="memo_hit", retries=2, worker=None)
    store.commit(batch(run("r1"), record, replace(record, seq=1, how="replayed")))
    assert [(s.how, s.retries, s.started_at, s.finished_at) for s in store.steps("r1")] == [
        ("memo_hit", 2, T0, T0 + 0.5), ("replayed", 2, T0, T0 + 0.5),
    ]
