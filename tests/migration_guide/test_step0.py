"""Step 0, the pipeline as it is today: stock Celery workers, the Redis processing store."""

from __future__ import annotations

from coda.testing import CeleryWorkerProcess
from migration_guide.examples import domain, events
from tests.migration_guide.conftest import Pipeline, assert_acceptance

STEP = "migration_guide.examples.step0"
QUEUES = ["events.preprocess_event", "events.symbolicate_event", "events.process_event", "events.save_event"]


def test_step0_acceptance(pipeline: Pipeline) -> None:
    queues = [pipeline.env["PIPELINE_QUEUE_PREFIX"] + q for q in QUEUES]
    with CeleryWorkerProcess(f"{STEP}.celery_app", queues, concurrency=2, env=pipeline.env,
                             args=["-I", f"{STEP}.tasks"]):
        pipeline.feed(f"{STEP}.consumer")
        saved = pipeline.wait_saved(len(events.EVENTS))
        pipeline.wait_for(lambda: domain.count_calls("save", "ev-python") == 2, "the duplicate's save")
        pipeline.wait_for(lambda: domain.count_calls("preprocess", events.MISSING_ID) == 1, "the missing event's drop")
    assert_acceptance(saved)
