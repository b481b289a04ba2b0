"""Entry module for `celery -A tests.compat.worker_app worker` and `coda supervisor -A`: the
test app from the environment, and the test tasks."""

from __future__ import annotations

import os

from tests.compat import tasks as tasks  # noqa: F401 - registers the tasks
from tests.compat import workflows as workflows  # noqa: F401 - registers the workflows
from tests.compat.celeryapp import make_app

app = make_app(os.environ)
