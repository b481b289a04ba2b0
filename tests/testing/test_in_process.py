"""coda.testing's in-process mode: the same supervisor and worker code in the test's process;
and what the README says a unit test can do with a decorated function."""

from __future__ import annotations

import asyncio

import pytest

from coda.errors import CodaError, NotInWorkflow, WorkflowFailed
from coda.testing import in_process, run_workflow
from examples import readme
from tests.e2e import app


async def test_in_process_supervisor_runs_workflows(tmp_path) -> None:  # noqa: ANN001
    async with in_process(workers=2) as client:
        assert await client.run(app.fan_out, {"n": 10}, timeout=30) == 90
        (tmp_path / "flag-c").touch()
        handle = await client.start(app.manual_rerun, {"dir": str(tmp_path), "tag": "x"})
        with pytest.raises(WorkflowFailed):
            await handle.result(timeout=30)
        (tmp_path / "flag-c").unlink()
        await client.rerun(handle.run_id)
        assert await handle.result(timeout=30) == [1, 2, "c", 2]
        assert (await client.status(handle.run_id)).tasks["memo_hits"] == 2


def test_run_workflow_runs_one_workflow_from_a_plain_test(tmp_path) -> None:  # noqa: ANN001
    assert run_workflow(app.fan_out, {"n": 4}) == 12
    # Reruns by itself as under a real supervisor: the memoized steps do not run again.
    (tmp_path / "flag-c").touch()
    assert run_workflow(app.auto_rerun, {"dir": str(tmp_path), "tag": "t"})[:4] == [1, 2, 3, 2]
    assert (app.count(str(tmp_path), "a"), app.count(str(tmp_path), "b")) == (1, 1)
    with pytest.raises(WorkflowFailed, match="c is flagged to fail"):
        run_workflow(app.manual_rerun, {"dir": str(tmp_path), "tag": "u"})


async def test_run_workflow_inside_a_loop_says_what_to_use_instead() -> None:
    with pytest.raises(CodaError, match="async with coda.testing.in_process"):
        run_workflow(app.fan_out, {"n": 1})


def test_the_readme_unit_test_story_is_true() -> None:
    """Tasks are the plain functions; a workflow called directly needs a running workflow;
    run_workflow runs it."""
    event = {"event_id": "e1", "message": "  hi  "}
    assert asyncio.run(readme.normalize_event(1, event)) == {"event_id": "e1", "message": "hi", "project_id": 1}
    assert readme.store_event({"event_id": "e1"}) == {"event_id": "e1", "stored": True}
    with pytest.raises(NotInWorkflow):
        asyncio.run(readme.process_event(1, event))
    assert run_workflow(readme.process_event, {"project_id": 1, "event_data": event}) == {"event_id": "e1", "stored": True}
