"""Celery compatibility: ``coda.compat.task`` is a drop-in for ``@shared_task`` that is also a
Coda task, with a per-task rollout switch that moves ``delay()`` calls onto Coda;
``coda.compat.install()`` makes every ``@shared_task``/``@app.task`` one, with no decorator edited.

    from coda.compat import task

    @task(name="sentry.tasks.store.save_event", queue="events.save_event", bind=True, max_retries=5)
    def save_event(self, cache_key=None, event_id=None, project_id=None, **kwargs): ...

    legacy = task(existing_celery_task)        # wrap a task Celery already registered

    coda.compat.install()                      # or: every task of the codebase, in one line

Importing this package registers the ``coda.compat.run_task`` workflow that routed calls run
as; it opens no connection, starts no thread and patches nothing (``install()`` does).
"""

from coda.compat._install import install, installed, uninstall
from coda.compat._result import RUN_TASK, CodaAsyncResult, run_task
from coda.compat._rollout import ENV_ROLLOUT, ENV_SEED, configure_rollout, share_for
from coda.compat._task import CodaTaskMixin, CompatTask, CompatTaskProxy, task

__all__ = [
    "CodaAsyncResult",
    "CodaTaskMixin",
    "CompatTask",
    "CompatTaskProxy",
    "ENV_ROLLOUT",
    "ENV_SEED",
    "RUN_TASK",
    "configure_rollout",
    "install",
    "installed",
    "run_task",
    "share_for",
    "task",
    "uninstall",
]
