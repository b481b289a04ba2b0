"""What every side of the bridge shares, and nothing heavy: the settings the server builds for
it, the reserved names the supervisor, its workers and Celery code agree on, and how a
``--celery-app`` spec becomes the app object. No Celery, kombu or supervisor import here:
a worker of a takeover, and user Celery code that starts workflows, import this module.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from coda.errors import BridgeError

__all__ = [
    "BridgeSettings",
    "CELERY_APP_ENV",
    "EXECUTE_MODULE",
    "HOSTNAME",
    "START_WORKFLOW",
    "TASK_NAME",
    "load_celery_app",
]

# The one Coda task a takeover's workers register: its args are a Celery message.
TASK_NAME = "coda.bridge.celery_message"
# The -A module that registers TASK_NAME in those workers, and the variable naming the app to it.
EXECUTE_MODULE = "coda.bridge._execute"
CELERY_APP_ENV = "CODA_CELERY_APP"
# The reserved Celery task name of a workflow start published by coda.bridge.workflow_entry.
START_WORKFLOW = "coda.bridge.start_workflow"
# Celery's request.hostname for what runs under Coda.
HOSTNAME = f"coda@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """The bridge's own settings; the supervisor's server builds them from its config.

    ``slots`` is how many tasks the supervisor's workers run at once (the takeover's prefetch
    follows it, as Celery's follows its pool); ``token`` is what the takeover presents to the
    dispatcher as a client; ``apps`` are the modules that define the tasks of the queues."""

    celery_app: str
    broker: str | None = None
    queues: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    slots: int = 1
    token: str | None = None
    pickup_timeout: float = 60.0
    result_timeout: float = 3600.0


def load_celery_app(spec: str) -> Any:
    """``module:attribute`` → the Celery app object (``module`` alone finds ``app``/``celery``)."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise BridgeError(f"--celery-app {spec!r}: cannot import {module_name!r}: {exc}") from exc
    names = [attr] if attr else ["app", "celery"]
    for name in names:
        app = getattr(module, name, None)
        if app is not None:
            if not hasattr(app, "send_task") or not hasattr(app, "backend"):
                raise BridgeError(f"--celery-app {spec!r}: {name!r} is not a Celery app but {app!r}")
            return app
    raise BridgeError(f"--celery-app {spec!r}: module {module_name!r} has no attribute {' or '.join(names)}")
