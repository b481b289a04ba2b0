"""Starting a workflow from Celery code, through the broker: :func:`workflow_entry`.

``entry.delay(**args)`` publishes a Celery protocol-2 message for the reserved task name
:data:`~coda.bridge._settings.START_WORKFLOW` to a queue a ``coda supervisor -Q`` consumes; the
supervisor starts the run and acknowledges the message once the run is recorded. The run id is
chosen here, so a message delivered twice (after a crash) starts one run, not two.
"""

from __future__ import annotations

import uuid
from typing import Any

from coda.bridge._settings import START_WORKFLOW
from coda.data import check_data
from coda.errors import DataError
from coda.registry import Workflow

__all__ = ["WorkflowEntry", "workflow_entry"]


class WorkflowEntry:
    """A workflow's Celery-style entry; each call returns the run id (for ``SyncClient.result``)."""

    def __init__(self, workflow: Workflow[Any, Any] | str, app: Any, queue: str) -> None:
        self.name = workflow if isinstance(workflow, str) else workflow.name
        self.workflow = None if isinstance(workflow, str) else workflow
        self.app = app
        self.queue = queue

    def __repr__(self) -> str:
        return f"<coda workflow entry {self.name} via queue {self.queue}>"

    def delay(self, **args: Any) -> str:
        return self.apply_async(kwargs=args)

    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, *,
                    run_id: str | None = None, queue: str | None = None, **options: Any) -> str:
        if args:
            raise DataError(f"workflow {self.name!r} takes keyword arguments only")
        kwargs = dict(kwargs or {})
        if self.workflow is not None:
            self.workflow.check_args(kwargs)
        check_data(kwargs, "args")
        run_id = run_id or uuid.uuid4().hex
        self.app.send_task(
            START_WORKFLOW, kwargs={"workflow": self.name, "args": kwargs, "run_id": run_id},
            queue=queue or self.queue, ignore_result=True, **options,
        )
        return run_id


def workflow_entry(workflow: Workflow[Any, Any] | str, app: Any, queue: str) -> WorkflowEntry:
    """``workflow_entry(process_event, app, "events").delay(project_id=1)`` starts a run of
    ``process_event`` on the supervisor consuming ``events``; returns its run id."""
    return WorkflowEntry(workflow, app, queue)
