"""The Celery app of Celery's integration suite, built in the supervisor's processes from the
configuration the suite's fixtures gave (written by ``conformance.supervisor``)."""

from __future__ import annotations

import json
import os

from celery.contrib.testing.app import TestApp
from kombu.utils.imports import symbol_by_name

with open(os.environ["CODA_CONFORMANCE_APP"]) as source:
    _setup = json.load(source)

app = TestApp(name="celery.tests", config=_setup["config"], enable_logging=True, set_as_current=True)
app.set_default()
for _module in _setup["includes"]:
    app.loader.import_task_module(_module)
for _class_task in _setup["class_tasks"]:
    app.register_task(symbol_by_name(_class_task))  # type: ignore[no-untyped-call]
