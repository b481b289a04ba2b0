"""The bridge between Coda and Celery, through kombu.

Workflow → Celery: with ``coda supervisor --celery-app proj.celery:app``, a workflow may
``spawn_task`` a plain Celery task (or its name); the supervisor publishes it with Celery's own
machinery, a stock ``celery worker`` runs it, and the result is memoized like any task's. With no
result backend, add one line to the Celery app module: ``coda.bridge.install(app)``.

Celery → Coda: with ``-Q queue1,queue2`` as well, the supervisor consumes those Celery queues in
place of ``celery worker`` (:class:`Takeover`); :func:`workflow_entry` lets Celery code start a
workflow through such a queue.
"""

from coda.bridge._celery_in import Takeover
from coda.bridge._celery_out import CeleryBridge, celery_task_id, load_celery_app
from coda.bridge._hook import ReplyOnlyBackend, install
from coda.bridge._start import WorkflowEntry, workflow_entry

__all__ = [
    "CeleryBridge",
    "ReplyOnlyBackend",
    "Takeover",
    "WorkflowEntry",
    "celery_task_id",
    "install",
    "load_celery_app",
    "workflow_entry",
]
