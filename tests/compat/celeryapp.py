"""The Celery app of the compat tests, configured from a mapping (the environment in worker
subprocesses), so the test process and its `celery worker` / `coda supervisor` agree."""

from __future__ import annotations

from collections.abc import Mapping

from celery import Celery


def make_app(env: Mapping[str, str]) -> Celery:
    """``CODA_TEST_BROKER`` (default memory://), ``CODA_TEST_BACKEND`` (default none),
    ``CODA_TEST_QUEUE`` (every task goes there), ``CODA_TEST_EAGER=1`` for task_always_eager."""
    app = Celery("coda_compat_tests", broker=env.get("CODA_TEST_BROKER", "memory://"),
                 backend=env.get("CODA_TEST_BACKEND") or None, set_as_current=True)
    app.conf.update(
        task_default_queue=env.get("CODA_TEST_QUEUE", "celery"),
        task_always_eager=env.get("CODA_TEST_EAGER") == "1",
        task_eager_propagates=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
        broker_transport_options={"visibility_timeout": 300},
        imports=["tests.compat.tasks"],
    )
    return app
