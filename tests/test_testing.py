"""coda.testing's in-process mode: the same supervisor and worker code in the test's loop."""

from __future__ import annotations

import pytest

from coda.errors import WorkflowFailed
from coda.testing import in_process
from tests.e2e import app


async def test_in_process_supervisor_runs_workflows(tmp_path) -> None:
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
