"""The Celery app, now serving only the stages still on Celery workers.

PIPELINE_BROKER_URL    broker (default: Redis on loopback; ``filesystem://`` needs no server)
PIPELINE_BROKER_DIR    the folder a ``filesystem://`` broker keeps its messages in
PIPELINE_BROKER_PREFIX Redis broker: prefix of every key kombu writes, its queues included, so
                       that several copies of the pipeline share one Redis (the guide's test)
PIPELINE_QUEUE_PREFIX  prepended to every queue name (tests give each run its own queues)
"""

from __future__ import annotations

import os

from celery import Celery

import coda.bridge

STAGES = ("symbolicate_event", "save_event")


def queue(name: str) -> str:
    return os.environ.get("PIPELINE_QUEUE_PREFIX", "") + name


QUEUES = [queue(f"events.{stage}") for stage in STAGES]

app = Celery("pipeline")
app.conf.update(
    broker_url=os.environ.get("PIPELINE_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_routes={f"pipeline.legacy.{stage}": {"queue": queue(f"events.{stage}")} for stage in STAGES},
    result_backend=None,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if os.environ.get("PIPELINE_BROKER_PREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["PIPELINE_BROKER_PREFIX"]}
if app.conf.broker_url.startswith("filesystem://"):
    # kombu's filesystem transport: messages are files in one folder (the demo's default).
    folder = os.environ.get("PIPELINE_BROKER_DIR", "pipeline-broker")
    app.conf.broker_transport_options = {"data_folder_in": folder, "data_folder_out": folder,
                                         "control_folder": os.path.join(folder, "control")}
# Still no result backend: this one line lets the Celery workers report the outcome of the
# tasks a workflow spawns back to the supervisor.
coda.bridge.install(app)
