"""The bridge between Coda and Celery, through kombu.

Workflow → Celery: with ``coda supervisor --celery-app proj.celery:app``, a workflow may
``spawn_task`` a plain Celery task (or its name); the supervisor publishes it with Celery's own
machinery, a stock ``celery worker`` runs it, and the result is memoized like any task's. With no
result backend, add one line to the Celery app module: ``coda.bridge.install(app)``.

Celery → Coda: with ``-Q queue1,queue2`` as well, the supervisor consumes those Celery queues in
place of ``celery worker`` (:class:`Takeover`); :func:`workflow_entry` lets Celery code start a
workflow through such a queue.

Nothing here imports :mod:`coda.supervisor`: the supervisor's server builds the
:class:`BridgeSettings` and talks to the bridge with the messages of :mod:`coda.inprocess`.

::

    _settings    names and settings every side shares; loading the Celery app
    _publisher   workflow → Celery: CeleryBridge, a virtual worker that publishes tasks
    _results     results back from Celery: Redis pub/sub or a reply queue, no polling
    _hook        install(app): the one line for Celery workers without a result backend
    _takeover    Celery → Coda, the event-loop side: eta, rate limits, submit, ack decisions
    _consumer    Celery → Coda, the kombu consumer thread: parse once, ack, requeue, reconnect
    _handoff     the typed records the two halves of the takeover exchange across threads
    _redis_acks  the Redis transport's ack and visibility tricks, fenced
    _execute     the worker side: one Celery message through Celery's own Request.execute
    _entry       workflow_entry: start a workflow from Celery code through a queue
"""

from coda.bridge._entry import WorkflowEntry, workflow_entry
from coda.bridge._hook import ReplyOnlyBackend, install
from coda.bridge._publisher import CeleryBridge, celery_task_id
from coda.bridge._settings import CELERY_APP_ENV, EXECUTE_MODULE, BridgeSettings, load_celery_app
from coda.bridge._takeover import Takeover

__all__ = [
    "BridgeSettings",
    "CELERY_APP_ENV",
    "CeleryBridge",
    "EXECUTE_MODULE",
    "ReplyOnlyBackend",
    "Takeover",
    "WorkflowEntry",
    "celery_task_id",
    "install",
    "load_celery_app",
    "workflow_entry",
]
