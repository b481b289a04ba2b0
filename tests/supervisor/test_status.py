"""What ``coda status`` is built from: the dispatcher's summary counts what an operator acts on
(tasks waiting for a slot or a retry, workflows waiting, runs waiting to rerun), not internals."""

from __future__ import annotations

from coda import protocol as p
from tests.supervisor.test_dispatch import C, setup, spawn, start_run


def test_summary_counts_what_is_queued_and_why() -> None:
    d = setup(queues=("events",), celery_app="proj:app")
    assert d.state.summary(0.0, d.config.queues)["queues"] == {"tasks_waiting": 0, "tasks_retrying": 0, "workflows_waiting": 0, "runs_rerunning": 0}
    assert d.state.summary(0.0, d.config.queues)["celery_queues"] == ["events"]
    wf = start_run(d)
    for worker in d.state.workers.values():
        worker.capacity = 1
    (peer, first), = spawn(d, wf, 1, task="r")
    other = spawn(d, wf, 2, task="t")  # the other worker's slot
    assert len(other) == 1
    assert spawn(d, wf, 3, task="t") == []  # no room anywhere: waits for a slot
    assert d.state.summary(0.0, d.config.queues)["queues"]["tasks_waiting"] == 1
    # The first fails with a retry in 2s: it waits out the delay, then queues again.
    d.handle(peer, p.TaskRaised(first.exec_id, p.ErrorInfo("ConnectionError", "down"), 2.0), 0.0)
    queues = d.state.summary(0.5)["queues"]
    assert queues["tasks_retrying"] == 1 and queues["tasks_waiting"] == 0  # the slot it freed went to task 3
    d.tick(2.5)
    assert d.state.summary(2.5)["queues"]["tasks_retrying"] == 0


def test_summary_counts_runs_waiting_to_rerun_and_hides_internal_counters() -> None:
    d = setup()
    wf = start_run(d)  # workflow "w": max_retries 1, retry_delay 5
    exec_id = d.state.runs["r1"].exec_id
    assert exec_id is not None
    d.handle(wf, p.WorkflowRaised(exec_id, p.ErrorInfo("ValueError", "boom")), 1.0)
    summary = d.state.summary(2.0)
    assert summary["queues"]["runs_rerunning"] == 1 and summary["runs"] == {"running": 1}
    d.tick(6.0)
    assert d.state.summary(6.0)["queues"]["runs_rerunning"] == 0
    assert d.handle(C, p.GetSupervisorStatus(9), 6.0)[0][1].status["queues"] == d.state.summary(6.0)["queues"]
    assert not {"timers", "executions", "pending_tasks"} & set(summary["queues"])
