"""Steps 0 and 1 run on stock Celery workers only. Step 1 wraps every task in coda.compat.task
and must pass step 0's acceptance test unchanged: wrapping changes nothing."""

from __future__ import annotations

import pytest

from coda.testing import CeleryWorkerProcess
from migration_guide.examples import domain
from tests.migration_guide.conftest import Pipeline, assert_acceptance

QUEUES = ["events.preprocess_event", "events.symbolicate_event", "events.process_event", "events.save_event"]


@pytest.mark.parametrize("step", ["step0", "step1"])
def test_acceptance_on_celery_workers(pipeline: Pipeline, step: str) -> None:
    package = f"migration_guide.examples.{step}"
    queues = [pipeline.env["PIPELINE_QUEUE_PREFIX"] + q for q in QUEUES]
    with CeleryWorkerProcess(f"{package}.celery_app", queues, concurrency=2, env=pipeline.env,
                             args=["-I", f"{package}.tasks"]):
        pipeline.feed(f"{package}.consumer")
        pipeline.wait_settled()
    assert_acceptance(domain.saved_events())
