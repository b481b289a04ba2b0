"""Coda: workflows that spawn memoized tasks through a supervisor, next to Celery.

    import coda

    @coda.task
    async def normalize(event): ...

    @coda.workflow
    async def process(event):
        return await coda.context.spawn_task(normalize, args={"event": event}, cache_key=[event["id"]])
"""

from coda import context
from coda.client import Client, RunHandle, RunStatus, SyncClient, SyncRunHandle
from coda.errors import CodaError, TaskFailed, TaskTimeout, WorkflowFailed
from coda.registry import Task, Workflow, task, workflow

__all__ = [
    "Client",
    "CodaError",
    "RunHandle",
    "RunStatus",
    "SyncClient",
    "SyncRunHandle",
    "Task",
    "TaskFailed",
    "TaskTimeout",
    "Workflow",
    "WorkflowFailed",
    "context",
    "task",
    "workflow",
]

__version__ = "0.1.0"
