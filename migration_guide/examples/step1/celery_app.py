"""The Celery app of the pipeline, configured from the environment.

PIPELINE_BROKER_URL    broker (default: Redis on loopback)
PIPELINE_BROKER_PREFIX Redis broker: prefix of every key kombu writes, its queues included, so
                       that several copies of the pipeline share one Redis (the guide's test)
PIPELINE_QUEUE_PREFIX  prepended to every queue name (tests give each run its own queues)
"""

from __future__ import annotations

import os

from celery import Celery

STAGES = ("preprocess_event", "symbolicate_event", "process_event", "save_event")


def queue(name: str) -> str:
    return os.environ.get("PIPELINE_QUEUE_PREFIX", "") + name


QUEUES = [queue(f"events.{stage}") for stage in STAGES]

app = Celery("pipeline")
app.conf.update(
    broker_url=os.environ.get("PIPELINE_BROKER_URL", "redis://127.0.0.1:6379/0"),
    # One queue per stage, routed by name (Celery 5.7 deprecates the task's own queue=).
    task_routes={f"pipeline.{stage}": {"queue": queue(f"events.{stage}")} for stage in STAGES},
    # Like Sentry: no result backend; tasks hand off to each other with .delay().
    result_backend=None,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if os.environ.get("PIPELINE_BROKER_PREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["PIPELINE_BROKER_PREFIX"]}
